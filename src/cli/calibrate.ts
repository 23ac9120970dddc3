/** `aquakv calibrate`: fit AQUA-KV predictors for a model and save them. */
import { AquaError } from '../errors.js';
import { loadTokenizer } from '../io/tokenizer.js';
import { calibrateOnText, DEFAULT_CALIBRATION } from '../predictors/from-text.js';
import { savePredictors, type LayerErrors } from '../predictors/file.js';
import { parseQuantizer } from '../quant/spec.js';
import { readText } from '../eval/texts.js';
import { intOpt, numOpt, parse } from './args.js';
import type { Command } from './commands.js';
import { EMBEDDED_MODEL_DIR, openModel, resolveModelDir } from './model-dir.js';
import { progress } from './progress.js';

export function formatLayerErrors(layers: LayerErrors[]): string {
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : '-');
  const lines = ['layer  keys: train relMSE  valid relMSE  equiv. bits   values: train relMSE  valid relMSE  equiv. bits'];
  for (const l of layers) {
    const k = l.keys, v = l.values;
    lines.push(
      `${String(l.layer).padStart(5)}  ${(k ? f(k.trainRelMse) : 'none').padStart(18)}  ${(k ? f(k.validRelMse) : '-').padStart(12)}  ${(k ? k.equivalentBits.toFixed(2) : '-').padStart(11)}   ` +
        `${(v ? f(v.trainRelMse) : 'none').padStart(20)}  ${(v ? f(v.validRelMse) : '-').padStart(12)}  ${(v ? v.equivalentBits.toFixed(2) : '-').padStart(11)}`,
    );
  }
  return lines.join('\n');
}

export const calibrateCommand: Command = {
  summary: 'fit AQUA-KV predictors (ridge, layer by layer on reconstructed inputs) and save them',
  usage: '[--model DIR] [--data FILE|@sotu-train] [--samples N] [--seq-len L] [--quantizer SPEC] [--first-layer-quantizer SPEC] [--predict both|keys|values] [--fit-on reconstructed|original] [--damp X] [--seed S] [--out FILE] [--json]',
  run(argv) {
    const o = parse(argv, {
      model: { type: 'string' }, data: { type: 'string' }, samples: { type: 'string' }, 'seq-len': { type: 'string' },
      quantizer: { type: 'string' }, 'first-layer-quantizer': { type: 'string' }, predict: { type: 'string' },
      'fit-on': { type: 'string' }, damp: { type: 'string' }, seed: { type: 'string' }, out: { type: 'string' }, json: { type: 'boolean' },
    });
    const dir = resolveModelDir(o.model);
    const source = o.data ?? (dir === EMBEDDED_MODEL_DIR ? '@sotu-train' : undefined);
    if (!source) throw new AquaError('calibrate needs --data FILE for a model other than the embedded one');
    const model = openModel(dir);
    const C = model.config.kvDim;
    const d = DEFAULT_CALIBRATION;
    const predict = (o.predict ?? d.predict) as typeof d.predict;
    if (!['both', 'keys', 'values'].includes(predict)) throw new AquaError(`--predict must be both, keys or values, got '${predict}'`);
    const fitOn = (o['fit-on'] ?? d.fitOn) as typeof d.fitOn;
    if (!['reconstructed', 'original'].includes(fitOn)) throw new AquaError(`--fit-on must be reconstructed or original, got '${fitOn}'`);
    const quantizer = o.quantizer ?? d.quantizer;
    const first = o['first-layer-quantizer'] ?? d.firstLayerQuantizer;
    parseQuantizer(quantizer, C);
    parseQuantizer(first, C);
    const seqLen = intOpt(o['seq-len'], 'seq-len', Math.min(d.seqLen, model.config.maxPositionEmbeddings), 2);
    const tok = loadTokenizer(dir);
    const text = readText(source);
    const bar = progress('calibrate', o.json);
    const { set, info } = calibrateOnText(model, text, (s) => tok.encode(s), {
      quantizer, firstLayerQuantizer: first, predict, fitOn,
      damp: numOpt(o.damp, 'damp', d.damp, 0),
      dataSource: source,
      samples: intOpt(o.samples, 'samples', d.samples, 2),
      seqLen,
      seed: intOpt(o.seed, 'seed', d.seed),
      onProgress: (stage, done, total) => bar.update(done, total, stage),
    });
    bar.stop();
    const out = o.out ?? 'predictors.safetensors';
    savePredictors(out, set, info);
    if (o.json) {
      console.log(JSON.stringify({ out, ...info }, null, 2));
      return;
    }
    console.log(formatLayerErrors(info.layers));
    console.log(`calibrated on ${info.data.trainTokens} train / ${info.data.validTokens} validation tokens from ${source} in ${info.seconds.toFixed(1)} s; saved ${out}`);
  },
};
