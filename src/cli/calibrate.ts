/** `aquakv calibrate`: fit AQUA-KV predictors for a model and a cache method, and save them. */
import { AquaError } from '../errors.js';
import { readText } from '../eval/texts.js';
import { loadTokenizer } from '../io/tokenizer.js';
import { formatMethod, parseMethod } from '../kv/method.js';
import { AUTO_ALLOCATION_WINDOWS } from '../predictors/allocate.js';
import { calibrate, DEFAULT_CALIBRATION } from '../predictors/calibrate.js';
import { savePredictors } from '../predictors/file.js';
import { platform } from '../platform/index.js';
import { intOpt, MAX_SEED, numOpt, opt, parse } from './args.js';
import { jsonOption, modelOption } from './common-options.js';
import type { Command } from './command.js';
import { formatLayerErrors } from './format.js';
import { isEmbedded, openModel, resolveModelDir } from './model-dir.js';
import { progress } from './progress.js';

const d = DEFAULT_CALIBRATION;

const options = {
  model: modelOption,
  data: opt('FILE', 'calibration text (a file, or @sotu-train)', '@sotu-train for the embedded model'),
  bits: opt('B', 'budgeted AQUA-KV: bits per value to allocate (same as --method aquakv[bits=B])'),
  method: opt('SPEC', 'the aquakv method to fit predictors for (see README: cache method specs)', formatMethod(d.method)),
  samples: opt('N', 'calibration windows (the last eighth held out for validation)', d.samples),
  'seq-len': opt('L', 'tokens per window', `min(${d.seqLen}, the model's context)`),
  allocation: opt('auto|measured|modelled', 'budgeted methods: how the plan is searched (measured: KL at every step; modelled: KL of each slot once, for large models; auto: by model size)', d.allocationSearch),
  'allocation-windows': opt('N', 'budgeted methods: held-out windows KL is measured on', `${AUTO_ALLOCATION_WINDOWS.measured} for the measured search, ${AUTO_ALLOCATION_WINDOWS.modelled} for the modelled one`),
  predict: opt('both|keys|values', 'which predictors to fit (ablation)', d.predict),
  'fit-on': opt('reconstructed|original', 'inputs the predictors are fitted on (ablation)', d.fitOn),
  damp: opt('X', 'ridge damping, a fraction of the mean diagonal of XᵀX', d.damp),
  seed: opt('S', 'seed of the window offsets', d.seed),
  out: opt('FILE', 'where to write the predictor file', 'predictors.safetensors'),
  json: jsonOption,
};

export const calibrateCommand: Command = {
  summary: 'fit AQUA-KV predictors for a cache method (ridge, layer by layer on reconstructed inputs) and save them',
  options,
  run(argv) {
    const o = parse(argv, options);
    const dir = resolveModelDir(o.model);
    const source = o.data ?? (isEmbedded(dir) ? '@sotu-train' : undefined);
    if (!source) throw new AquaError('calibrate needs --data FILE for a model other than the embedded one');
    if (o.bits !== undefined && o.method !== undefined) throw new AquaError('give --bits B or --method SPEC, not both (--bits B is --method aquakv[bits=B])');
    const method = o.bits !== undefined ? parseMethod(`aquakv[bits=${o.bits}]`) : o.method === undefined ? d.method : parseMethod(o.method);
    if (!method.usesPredictors) throw new AquaError(`--method ${o.method}: only aquakv methods use predictors`);
    const predict = (o.predict ?? d.predict) as typeof d.predict;
    if (!['both', 'keys', 'values'].includes(predict)) throw new AquaError(`--predict must be both, keys or values, got '${predict}'`);
    const fitOn = (o['fit-on'] ?? d.fitOn) as typeof d.fitOn;
    if (!['reconstructed', 'original'].includes(fitOn)) throw new AquaError(`--fit-on must be reconstructed or original, got '${fitOn}'`);
    const allocationSearch = (o.allocation ?? d.allocationSearch) as typeof d.allocationSearch;
    if (!['auto', 'measured', 'modelled'].includes(allocationSearch)) throw new AquaError(`--allocation must be auto, measured or modelled, got '${allocationSearch}'`);
    const out = o.out ?? 'predictors.safetensors';
    platform.checkWritable(out);
    const model = openModel(dir);
    const seqLen = intOpt(o['seq-len'], 'seq-len', Math.min(d.seqLen, model.config.maxPositionEmbeddings), 2);
    if (seqLen > model.config.maxPositionEmbeddings) throw new AquaError(`--seq-len ${seqLen} exceeds the model's context of ${model.config.maxPositionEmbeddings}`);
    const tok = loadTokenizer(dir);
    const text = readText(source);
    const bar = progress('calibrate', o.json);
    const p = calibrate(model, text, tok, {
      method, predict, fitOn, allocationSearch,
      allocationWindows: o['allocation-windows'] === undefined ? 'auto' : intOpt(o['allocation-windows'], 'allocation-windows', 1, 1, 1024),
      damp: numOpt(o.damp, 'damp', d.damp, 0),
      dataSource: source,
      samples: intOpt(o.samples, 'samples', d.samples, 2, 4096),
      seqLen,
      seed: intOpt(o.seed, 'seed', d.seed, 0, MAX_SEED),
      onProgress: (stage, done, total) => bar.update(done, total, stage),
    });
    bar.stop();
    savePredictors(out, p);
    if (o.json) {
      console.log(JSON.stringify({ out, seconds: p.seconds, ...p.info }, null, 2));
      return;
    }
    console.log(formatLayerErrors(p.info.layers));
    const a = p.info.allocation;
    if (a) {
      console.log(`budget ${a.budget} bits per value → plan ${p.info.method}: ${a.bitsPerValue.toFixed(3)} bits`);
      const modelled = a.search === 'modelled';
      console.log(`KL from fp on ${a.tokens} held-out calibration positions: ${a.klBase.toFixed(5)} with every slot at ${a.ladder[0]}, ${a.klPlan.toFixed(5)} with the plan (${a.measurements} measurements${a.replays ? `, ${a.replays} of them replayed from their slot's layer` : ''}, ${modelled ? 'modelled' : 'measured'} search)`);
      // the modelled search adds each step's modelled gain; gains overlap, so their running total
      // can pass below zero: print the gains, not a KL that never was (the plan's KL is measured)
      for (const s of a.steps) {
        const change = modelled ? `KL gain ${(s.klBefore - s.klAfter).toFixed(5)} (modelled)` : `KL ${s.klBefore.toFixed(5)} → ${s.klAfter.toFixed(5)}`;
        console.log(`  ${s.slot} → ${s.to}: ${s.bitsPerValue.toFixed(3)} bits, ${change}`);
      }
      for (const s of a.withoutPredictor ?? []) console.log(`  ${s.slot} without a predictor: KL ${s.klBefore.toFixed(5)} → ${s.klAfter.toFixed(5)}`);
    }
    console.log(`calibrated ${p.info.method} on ${p.info.data.trainTokens} train / ${p.info.data.validTokens} validation tokens from ${source} in ${(p.seconds ?? 0).toFixed(1)} s; saved ${out}`);
  },
};
