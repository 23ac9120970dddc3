/** `aquakv retrieval`: pass-key retrieval accuracy at several distances, per cache method. */
import { loadTokenizer } from '../io/tokenizer.js';
import { createCache } from '../kv/factory.js';
import { checkMethod } from '../kv/factory.js';
import { parseMethodList } from '../kv/method.js';
import { readText } from '../eval/texts.js';
import { retrievalDistanceRange } from '../eval/retrieval.js';
import { retrievalAccuracy, type RetrievalResult } from '../eval/retrieval-eval.js';
import { AquaError } from '../errors.js';
import { intOpt, parse } from './args.js';
import type { Command } from './commands.js';
import { openModel, resolveModelDir } from './model-dir.js';
import { predictorsFor } from './eval.js';
import { progress } from './progress.js';

export const retrievalCommand: Command = {
  summary: 'pass-key retrieval accuracy at several distances for each cache method',
  usage: '[--model DIR] [--filler FILE|@moby-dick] [--methods fp,aquakv,...] [--predictors FILE] [--distances 64,256,512,960] [--samples N] [--length T] [--chunk C] [--seed S] [--json]',
  run(argv) {
    const o = parse(argv, {
      model: { type: 'string' }, filler: { type: 'string' }, methods: { type: 'string' }, predictors: { type: 'string' },
      distances: { type: 'string' }, samples: { type: 'string' }, length: { type: 'string' }, chunk: { type: 'string' },
      seed: { type: 'string' }, json: { type: 'boolean' }, 'calibration-data': { type: 'string' },
    });
    const dir = resolveModelDir(o.model);
    const model = openModel(dir);
    const tok = loadTokenizer(dir);
    const total = intOpt(o.length, 'length', model.config.maxPositionEmbeddings, 32);
    // the question must fit after the fact and the fact before it, in this tokenizer's tokens
    const range = retrievalDistanceRange((s) => tok.encode(s), total);
    const lo = Math.max(20, range.nearest), hi = Math.min(total - 20, range.farthest);
    if (lo > hi) throw new AquaError(`--length ${total} is too short for a pass-key sample with this tokenizer`);
    const distances = (o.distances ?? `64,256,512,${total - 64}`).split(',').map((s) => {
      const d = Number(s);
      if (!Number.isInteger(d) || d < lo || d > hi) throw new AquaError(`--distances: ${s} must be an integer in [${lo}, ${hi}] for --length ${total}`);
      return d;
    });
    const methods = parseMethodList(o.methods ?? 'fp,aquakv');
    for (const m of methods) checkMethod(m, model.config.kvDim);
    const predictors = predictorsFor(model, dir, methods, o.predictors, o['calibration-data'], !!o.json);
    const filler = tok.encode(readText(o.filler ?? '@moby-dick'));
    const samples = intOpt(o.samples, 'samples', 20, 1);
    const rows: { method: string; distance: number; accuracy: number; correct: number; samples: number }[] = [];
    for (const m of methods) {
      const bar = progress(`retrieval ${m.name}`, !!o.json);
      const res = retrievalAccuracy(model, (s) => tok.encode(s), filler, () => createCache(model, m, m.usesPredictors ? predictors(m) : null), {
        distances, samples, total, chunk: intOpt(o.chunk, 'chunk', 32, 1), seed: intOpt(o.seed, 'seed', 0),
        onProgress: (d, t) => bar.update(d, t),
      });
      bar.stop();
      for (const r of res) rows.push({ method: m.name, ...r });
    }
    if (o.json) {
      console.log(JSON.stringify({ length: total, results: rows }, null, 2));
      return;
    }
    console.log(`pass-key retrieval in sequences of ${total} tokens (${samples} samples per distance)`);
    console.log(formatRetrieval(methods.map((m) => ({ method: m.name, results: rows.filter((r) => r.method === m.name) }))));
  },
};

/** A table of accuracy per method (rows) and distance (columns). */
export function formatRetrieval(rows: { method: string; results: RetrievalResult[] }[]): string {
  const distances = [...new Set(rows.flatMap((r) => r.results.map((x) => x.distance)))];
  const width = Math.max(8, ...rows.map((r) => r.method.length)) + 2;
  const lines = ['method'.padEnd(width) + distances.map((d) => `d=${d}`.padStart(9)).join('')];
  for (const r of rows) {
    lines.push(r.method.padEnd(width) + distances.map((d) => {
      const x = r.results.find((y) => y.distance === d);
      return (x ? `${(100 * x.accuracy).toFixed(0)}%` : '–').padStart(9);
    }).join(''));
  }
  return lines.join('\n');
}
