/** `aquakv generate` and `aquakv logits`. */
import { AquaError } from '../errors.js';
import { loadTokenizer } from '../io/tokenizer.js';
import { DEFAULT_CACHE_OPTIONS, type CacheMode } from '../kv/compressed.js';
import { createCache } from '../kv/factory.js';
import { FullCache } from '../kv/full.js';
import { checkMethod, parseMethod } from '../kv/method.js';
import { predictorsFor } from './predictors.js';
import { DEFAULT_GENERATION, generate } from '../model/generate.js';
import { fp16CacheBytes } from '../model/kv-cache.js';
import { intOpt, MAX_SEED, numOpt, opt, parse } from './args.js';
import { bufferOption, calibrationDataOption, jsonOption, modelOption, predictorsOption, sinksOption } from './common-options.js';
import type { Command } from './command.js';
import { openModel, resolveModelDir } from './model-dir.js';

const g = DEFAULT_GENERATION;

const generateOptions = {
  model: modelOption,
  prompt: opt('TEXT', 'the prompt', undefined, true),
  method: opt('SPEC', 'the cache method (fp, aquakv, aquakv[bits=B], higgs, kivi2, …)', 'fp'),
  predictors: predictorsOption,
  'calibration-data': calibrationDataOption,
  sinks: sinksOption,
  buffer: bufferOption,
  mode: opt('materialized|compact', 'compressed chunks kept rebuilt in f32, or rebuilt from codes at every step', DEFAULT_CACHE_OPTIONS.mode),
  'max-new-tokens': opt('N', 'tokens to generate', g.maxNewTokens),
  temperature: opt('T', 'sampling temperature; 0 is greedy', g.temperature),
  'top-p': opt('P', 'nucleus sampling mass', g.topP),
  seed: opt('S', 'sampling seed', g.seed),
  json: jsonOption,
};

const logitsOptions = {
  model: modelOption,
  text: opt('TEXT', 'text to tokenize and run (or --ids)'),
  ids: opt('1,2,3', 'token ids to run (or --text)'),
  json: { ...jsonOption, required: true },
};

export const generateCommand: Command = {
  summary: 'stream a continuation of a prompt through any cache method, then print cache bytes and tokens/s',
  options: generateOptions,
  run(argv) {
    const o = parse(argv, generateOptions);
    if (o.prompt === undefined) throw new AquaError('generate needs --prompt TEXT');
    const dir = resolveModelDir(o.model);
    const tok = loadTokenizer(dir);
    const model = openModel(dir);
    const prompt = tok.encode(o.prompt);
    if (prompt.length === 0) throw new AquaError('--prompt encodes to no tokens');
    const maxNew = intOpt(o['max-new-tokens'], 'max-new-tokens', g.maxNewTokens, 1);
    const limit = model.config.maxPositionEmbeddings;
    if (prompt.length + maxNew > limit) {
      throw new AquaError(`prompt (${prompt.length} tokens) + --max-new-tokens ${maxNew} exceeds the model's context of ${limit}`);
    }
    const method = parseMethod(o.method ?? 'fp');
    checkMethod(method, model.config.kvDim, model.config.nLayers);
    const mode = (o.mode ?? DEFAULT_CACHE_OPTIONS.mode) as CacheMode;
    if (mode !== 'materialized' && mode !== 'compact') throw new AquaError(`--mode must be materialized or compact, got '${o.mode}'`);
    const cacheOptions = {
      sinks: intOpt(o.sinks, 'sinks', DEFAULT_CACHE_OPTIONS.sinks, 0),
      buffer: intOpt(o.buffer, 'buffer', DEFAULT_CACHE_OPTIONS.buffer, 1),
      mode,
    };
    const predictors = predictorsFor(model, dir, () => tok, [method], o.predictors, o['calibration-data'], !!o.json);
    const cache = createCache(model, method, predictors(method), cacheOptions);
    const out = o.json ? null : process.stdout;
    const res = generate(model, prompt, cache, {
      maxNewTokens: maxNew,
      temperature: numOpt(o.temperature, 'temperature', g.temperature, 0),
      topP: numOpt(o['top-p'], 'top-p', g.topP, 0, 1),
      seed: intOpt(o.seed, 'seed', g.seed, 0, MAX_SEED),
      stopIds: model.config.eosTokenIds,
      // decode the whole continuation each time so multi-byte characters split over tokens print whole
      onToken: (() => {
        const ids: number[] = [];
        let printed = '';
        return (id: number) => {
          ids.push(id);
          const text = tok.decode(ids);
          if (!text.endsWith('\uFFFD')) {
            out?.write(text.slice(printed.length));
            printed = text;
          }
        };
      })(),
    });
    const mem = cache.memory();
    const cfg = model.config;
    const fp16Bytes = fp16CacheBytes(cfg, cache.length);
    const rate = (n: number, sec: number) => (sec > 0 ? n / sec : NaN);
    const summary = {
      method: method.name, text: tok.decode(res.ids), ids: res.ids, cachedTokens: cache.length,
      storedBytes: mem.stored, fp16Bytes, residentBytes: mem.total, bitsPerValue: mem.bitsPerValue,
      prefillTokensPerSecond: rate(res.prefillTokens, res.prefillSeconds), decodeTokensPerSecond: rate(res.decodeTokens, res.decodeSeconds),
    };
    if (o.json) {
      console.log(JSON.stringify(summary, null, 2));
      return;
    }
    process.stdout.write('\n');
    console.error(
      `${method.name} cache: ${summary.storedBytes.toLocaleString('en-US')} bytes stored for ${summary.cachedTokens} tokens (16-bit keys and values: ${fp16Bytes.toLocaleString('en-US')}, ${(fp16Bytes / summary.storedBytes).toFixed(2)}×); ` +
        `prefill ${summary.prefillTokensPerSecond.toFixed(1)} tokens/s, decode ${Number.isFinite(summary.decodeTokensPerSecond) ? summary.decodeTokensPerSecond.toFixed(1) : '-'} tokens/s`,
    );
  },
};

export const logitsCommand: Command = {
  summary: 'print the logits of one prefill as JSON (conformance checks against other runtimes)',
  options: logitsOptions,
  run(argv) {
    const o = parse(argv, logitsOptions);
    if ((o.text === undefined) === (o.ids === undefined)) throw new AquaError('logits needs exactly one of --text TEXT or --ids 1,2,3');
    if (!o.json) throw new AquaError('logits prints JSON only; pass --json');
    const dir = resolveModelDir(o.model);
    let ids: number[];
    if (o.ids !== undefined) {
      ids = o.ids.split(',').map((s) => {
        const n = Number(s.trim());
        if (s.trim() === '' || !Number.isInteger(n)) throw new AquaError(`--ids: '${s}' is not an integer token id`);
        return n;
      });
    } else {
      ids = loadTokenizer(dir).encode(o.text!);
    }
    if (ids.length === 0) throw new AquaError('no tokens to run');
    const model = openModel(dir);
    const V = model.config.vocabSize;
    const bad = ids.find((id) => id < 0 || id >= V);
    if (bad !== undefined) throw new AquaError(`token id ${bad} is outside the vocabulary [0, ${V})`);
    if (ids.length > model.config.maxPositionEmbeddings) throw new AquaError(`${ids.length} tokens exceed the model's context of ${model.config.maxPositionEmbeddings}`);
    const logits = model.forward(ids, new FullCache(model), { logits: 'all' });
    const rows: number[][] = [];
    for (let t = 0; t < ids.length; t++) rows.push(Array.from(logits.subarray(t * V, (t + 1) * V)));
    process.stdout.write(JSON.stringify({ ids, logits: rows }) + '\n');
  },
};
