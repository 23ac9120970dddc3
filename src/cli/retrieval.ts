/** `aquakv retrieval`: pass-key retrieval accuracy at several distances, per cache method. */
import { AquaError } from '../errors.js';
import { retrievalDistanceRange } from '../eval/retrieval.js';
import { DEFAULT_RETRIEVAL, defaultRetrievalDistances, retrievalAccuracy } from '../eval/retrieval-eval.js';
import { encodeUpTo, MAX_FILLER_TOKENS, readText } from '../eval/texts.js';
import { loadTokenizer } from '../io/tokenizer.js';
import { createCache } from '../kv/factory.js';
import { checkMethod, parseMethodList } from '../kv/method.js';
import { intOpt, MAX_SEED, opt, parse } from './args.js';
import { calibrationDataOption, jsonOption, modelOption, predictorsOption } from './common-options.js';
import type { Command } from './command.js';
import { formatRetrieval } from './format.js';
import { openModel, resolveModelDir } from './model-dir.js';
import { predictorsFor } from './predictors.js';
import { progress } from './progress.js';

const options = {
  model: modelOption,
  filler: opt('FILE', 'text the key is hidden in', '@moby-dick'),
  methods: opt('LIST', 'comma-separated cache method specs', 'fp,aquakv'),
  predictors: predictorsOption,
  'calibration-data': calibrationDataOption,
  distances: opt('LIST', 'tokens between the stated key and the end of the question', 'near, middle and far in the window'),
  samples: opt('N', 'keys per distance', DEFAULT_RETRIEVAL.samples),
  length: opt('T', 'tokens per sequence', "the model's context"),
  chunk: opt('C', 'tokens per forward step while reading', DEFAULT_RETRIEVAL.chunk),
  seed: opt('S', 'seed of the keys and their places', DEFAULT_RETRIEVAL.seed),
  json: jsonOption,
};

export const retrievalCommand: Command = {
  summary: 'pass-key retrieval accuracy at several distances for each cache method',
  options,
  run(argv) {
    const o = parse(argv, options);
    const dir = resolveModelDir(o.model);
    const model = openModel(dir);
    const tok = loadTokenizer(dir);
    const total = intOpt(o.length, 'length', model.config.maxPositionEmbeddings, 32);
    if (total > model.config.maxPositionEmbeddings) throw new AquaError(`--length ${total} exceeds the model's context of ${model.config.maxPositionEmbeddings}`);
    // the question must fit after the fact and the fact before it, in this tokenizer's tokens
    const range = retrievalDistanceRange((s) => tok.encode(s), total);
    const lo = Math.max(20, range.nearest), hi = Math.min(total - 20, range.farthest);
    if (lo > hi) throw new AquaError(`--length ${total} is too short for a pass-key sample with this tokenizer`);
    const encode = (s: string) => tok.encode(s);
    const distances = o.distances === undefined ? defaultRetrievalDistances(total, encode) : o.distances.split(',').map((s) => {
      const d = Number(s);
      if (!Number.isInteger(d) || d < lo || d > hi) throw new AquaError(`--distances: ${s} must be an integer in [${lo}, ${hi}] for --length ${total}`);
      return d;
    });
    const methods = parseMethodList(o.methods ?? 'fp,aquakv');
    for (const m of methods) checkMethod(m, model.config.kvDim, model.config.nLayers);
    const predictors = predictorsFor(model, dir, () => tok, methods, o.predictors, o['calibration-data'], !!o.json);
    // keys are hidden at random places of the filler: up to its first million tokens (Moby Dick has ~300k)
    const filler = encodeUpTo(readText(o.filler ?? '@moby-dick'), encode, MAX_FILLER_TOKENS);
    const samples = intOpt(o.samples, 'samples', DEFAULT_RETRIEVAL.samples, 1);
    const rows: { method: string; distance: number; accuracy: number; correct: number; samples: number }[] = [];
    for (const m of methods) {
      const bar = progress(`retrieval ${m.name}`, !!o.json);
      const res = retrievalAccuracy(model, encode, filler, () => createCache(model, m, predictors(m)), {
        distances, samples, total, chunk: intOpt(o.chunk, 'chunk', DEFAULT_RETRIEVAL.chunk, 1), seed: intOpt(o.seed, 'seed', DEFAULT_RETRIEVAL.seed, 0, MAX_SEED),
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
