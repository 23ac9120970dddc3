/** `aquakv eval`: perplexity and KL divergence of each cache method against full precision. */
import { AquaError } from '../errors.js';
import { loadTokenizer } from '../io/tokenizer.js';
import { checkMethod } from '../kv/factory.js';
import { parseMethodList, type CacheMethod } from '../kv/method.js';
import { evaluatePerplexity, type MethodResult } from '../eval/perplexity.js';
import { readText } from '../eval/texts.js';
import { loadPredictors } from '../predictors/file.js';
import { calibrateOnText, DEFAULT_CALIBRATION } from '../predictors/from-text.js';
import type { PredictorSet } from '../predictors/linear.js';
import type { LlamaModel } from '../model/llama.js';
import { intOpt, parse } from './args.js';
import type { Command } from './commands.js';
import { EMBEDDED_MODEL_DIR, openModel, resolveModelDir } from './model-dir.js';
import { progress } from './progress.js';

export function formatResults(results: MethodResult[]): string {
  const lines = ['method                                bits/value  perplexity  rel. change  KL (nats)   cache bytes (1 window)'];
  for (const r of results) {
    lines.push(
      `${r.method.padEnd(36)}  ${r.bitsPerValue.toFixed(3).padStart(10)}  ${r.perplexity.toFixed(3).padStart(10)}  ${((r.relativeChange >= 0 ? '+' : '') + r.relativeChange.toFixed(4)).padStart(11)}  ${r.klDivergence.toFixed(5).padStart(9)}  ${String(r.cacheBytes).padStart(12)}`,
    );
  }
  return lines.join('\n');
}

/**
 * Predictors for the AQUA-KV methods: the given file for all of them, or else one calibration
 * (with defaults) per residual quantizer, on --calibration-data or the embedded model's training
 * text.
 */
export function predictorsFor(
  model: LlamaModel, dir: string, methods: CacheMethod[], file: string | undefined, calibrationText: string | undefined, quiet: boolean,
): (m: CacheMethod) => PredictorSet | null {
  if (!methods.some((m) => m.usesPredictors)) return () => null;
  if (file) {
    const set = loadPredictors(file, model.config, model.weightsDigest).set;
    return () => set;
  }
  const source = calibrationText ?? (dir === EMBEDDED_MODEL_DIR ? '@sotu-train' : undefined);
  if (!source) throw new AquaError('aquakv methods need predictors: pass --predictors FILE (from aquakv calibrate) or --calibration-data FILE');
  const tok = loadTokenizer(dir);
  const text = readText(source);
  const sets = new Map<string, PredictorSet>();
  for (const q of new Set(methods.filter((m) => m.usesPredictors).map((m) => m.keyQuantizer))) {
    const bar = progress(`calibrate ${q}`, quiet);
    const { set } = calibrateOnText(model, text, (s) => tok.encode(s), {
      ...DEFAULT_CALIBRATION,
      quantizer: q,
      seqLen: Math.min(DEFAULT_CALIBRATION.seqLen, model.config.maxPositionEmbeddings),
      dataSource: source,
      onProgress: (stage, d, t) => bar.update(d, t, stage),
    });
    bar.stop();
    sets.set(q, set);
  }
  return (m) => sets.get(m.keyQuantizer) ?? null;
}

export const evalCommand: Command = {
  summary: 'perplexity (simulated generation) and KL divergence of cache methods against fp',
  usage: '[--model DIR] --text FILE|@moby-dick|@sotu-heldout [--methods fp,aquakv,higgs,kivi2,kivi4] [--predictors FILE] [--calibration-data FILE] [--seq-len L] [--chunk C] [--max-tokens N] [--sinks P] [--buffer B] [--json]',
  run(argv) {
    const o = parse(argv, {
      model: { type: 'string' }, text: { type: 'string' }, methods: { type: 'string' }, predictors: { type: 'string' },
      'calibration-data': { type: 'string' }, 'seq-len': { type: 'string' }, chunk: { type: 'string' }, 'max-tokens': { type: 'string' },
      sinks: { type: 'string' }, buffer: { type: 'string' }, json: { type: 'boolean' },
    });
    if (!o.text) throw new AquaError('eval needs --text FILE (or @moby-dick, @sotu-heldout)');
    const dir = resolveModelDir(o.model);
    const methods: CacheMethod[] = parseMethodList(o.methods ?? 'fp,aquakv,higgs,kivi2,kivi4');
    const model = openModel(dir);
    for (const m of methods) checkMethod(m, model.config.kvDim);
    const ids = loadTokenizer(dir).encode(readText(o.text));
    const predictors = predictorsFor(model, dir, methods, o.predictors, o['calibration-data'], !!o.json);
    const bar = progress('eval', !!o.json);
    const results = evaluatePerplexity(model, ids, methods, predictors, {
      seqLen: intOpt(o['seq-len'], 'seq-len', model.config.maxPositionEmbeddings, 2),
      chunk: intOpt(o.chunk, 'chunk', 32, 1),
      maxTokens: intOpt(o['max-tokens'], 'max-tokens', 16384, 2),
      cache: { sinks: intOpt(o.sinks, 'sinks', 4, 0), buffer: intOpt(o.buffer, 'buffer', 128, 1), mode: 'materialized' },
      onProgress: (d, t, label) => bar.update(d, t, label),
    });
    bar.stop();
    if (o.json) {
      console.log(JSON.stringify({ results: results.map(({ method, bitsPerValue, perplexity, relativeChange, klDivergence, cacheBytes }) => ({ method, bitsPerValue, perplexity, relativeChange, klDivergence, cacheBytes })) }, null, 2));
      return;
    }
    console.log(formatResults(results));
    const r0 = results[0];
    console.log(`${r0.windows} windows of ${r0.tokens / r0.windows + 1} tokens from ${o.text}, fed ${o.chunk ?? 32} at a time`);
  },
};
