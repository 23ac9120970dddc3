/** `aquakv generate` and `aquakv logits`. */
import { AquaError } from '../errors.js';
import { loadTokenizer } from '../io/tokenizer.js';
import { DEFAULT_CACHE_OPTIONS, type CacheMode } from '../kv/compressed.js';
import { createCache } from '../kv/factory.js';
import { FullCache } from '../kv/full.js';
import { checkSavedMethod, deserializeCache, saveCache, savedCacheInfo } from '../kv/cache-file.js';
import { checkMethod, parseMethod } from '../kv/method.js';
import { predictorsFor } from './predictors.js';
import { DEFAULT_GENERATION } from '../model/generate.js';
import { fp16CacheBytes, type KVCache } from '../model/kv-cache.js';
import { stream } from '../model/stream.js';
import { platform } from '../platform/index.js';
import { flag, intOpt, MAX_SEED, numOpt, opt, parse } from './args.js';
import { bufferOption, calibrationDataOption, jsonOption, modelOption, predictorsOption, sinksOption } from './common-options.js';
import type { Command } from './command.js';
import { openModel, resolveModelDir } from './model-dir.js';

const g = DEFAULT_GENERATION;

const generateOptions = {
  model: modelOption,
  prompt: opt('TEXT', 'the prompt (with --resume-cache: the text that continues the saved conversation)', undefined, true),
  method: opt('SPEC', 'the cache method (fp, aquakv, aquakv[bits=B], higgs, kivi2, …); with --resume-cache, the saved one', 'fp'),
  predictors: predictorsOption,
  'calibration-data': calibrationDataOption,
  sinks: sinksOption,
  buffer: bufferOption,
  mode: opt('materialized|compact', 'compressed chunks kept rebuilt in f32, or rebuilt from codes at every step', DEFAULT_CACHE_OPTIONS.mode),
  'max-new-tokens': opt('N', 'tokens to generate', g.maxNewTokens),
  temperature: opt('T', 'sampling temperature; 0 is greedy', g.temperature),
  'top-p': opt('P', 'nucleus sampling mass', g.topP),
  seed: opt('S', 'sampling seed', g.seed),
  stop: opt('TEXT', 'stop before this text appears in the continuation', 'none'),
  'save-cache': opt('FILE', 'save the conversation (prompt and continuation) as a compressed cache file'),
  'resume-cache': opt('FILE', 'continue a conversation saved with --save-cache, without re-reading it'),
  json: jsonOption,
};

const logitsOptions = {
  model: modelOption,
  text: opt('TEXT', 'text to tokenize and run (or --ids)'),
  ids: opt('1,2,3', 'token ids to run (or --text)'),
  last: flag('only the last position\'s row'),
  'top-k': opt('K', 'each row as its K largest logits with their token ids', 'every logit'),
  json: { ...jsonOption, required: true },
};

export const generateCommand: Command = {
  summary: 'stream a continuation of a prompt through any cache method (and save or resume the conversation), then print cache bytes and tokens/s',
  options: generateOptions,
  async run(argv) {
    const o = parse(argv, generateOptions);
    if (o.prompt === undefined) throw new AquaError('generate needs --prompt TEXT');
    const dir = resolveModelDir(o.model);
    const tokenizer = loadTokenizer(dir);
    const model = openModel(dir);
    const prompt = tokenizer.encode(o.prompt);
    if (prompt.length === 0) throw new AquaError('--prompt encodes to no tokens');
    const maxNew = intOpt(o['max-new-tokens'], 'max-new-tokens', g.maxNewTokens, 1);
    const mode = o.mode as CacheMode | undefined;
    if (mode !== undefined && mode !== 'materialized' && mode !== 'compact') throw new AquaError(`--mode must be materialized or compact, got '${o.mode}'`);
    const sampling = {
      maxNewTokens: maxNew,
      temperature: numOpt(o.temperature, 'temperature', g.temperature, 0),
      topP: numOpt(o['top-p'], 'top-p', g.topP, 0, 1),
      seed: intOpt(o.seed, 'seed', g.seed, 0, MAX_SEED),
    };
    if (o['save-cache']) platform.checkWritable(o['save-cache']);

    // the cache: a saved conversation, or a fresh cache of --method
    let cache: KVCache;
    let methodName: string;
    if (o['resume-cache']) {
      const file = o['resume-cache'];
      if (o.sinks !== undefined || o.buffer !== undefined) throw new AquaError('--sinks and --buffer are those of the saved cache; leave them out with --resume-cache');
      platform.checkFile(file);
      const bytes = platform.readFile(file);
      const saved = savedCacheInfo(bytes, file).method;
      // --method only confirms the saved one: another is refused before any calibration
      const method = o.method === undefined ? undefined : parseMethod(o.method);
      if (method) checkSavedMethod(saved, method, model.config.kvDim, file);
      const predictors = predictorsFor(model, dir, () => tokenizer, [saved], o.predictors, o['calibration-data'], !!o.json)(saved);
      cache = deserializeCache(bytes, model, { predictors, mode, method }, file);
      methodName = saved.name;
    } else {
      const method = parseMethod(o.method ?? 'fp');
      checkMethod(method, model.config.kvDim, model.config.nLayers);
      const cacheOptions = {
        sinks: intOpt(o.sinks, 'sinks', DEFAULT_CACHE_OPTIONS.sinks, 0),
        buffer: intOpt(o.buffer, 'buffer', DEFAULT_CACHE_OPTIONS.buffer, 1),
        mode: mode ?? DEFAULT_CACHE_OPTIONS.mode,
      };
      const predictors = predictorsFor(model, dir, () => tokenizer, [method], o.predictors, o['calibration-data'], !!o.json);
      cache = createCache(model, method, predictors(method), cacheOptions);
      methodName = method.name;
    }
    const resumed = cache.length;
    const limit = model.config.maxPositionEmbeddings;
    if (resumed + prompt.length + maxNew > limit) {
      const held = resumed > 0 ? `the saved conversation (${resumed} tokens) + ` : '';
      throw new AquaError(`${held}prompt (${prompt.length} tokens) + --max-new-tokens ${maxNew} exceeds the model's context of ${limit}`);
    }

    const out = o.json ? null : process.stdout;
    const s = stream({ model, tokenizer }, prompt, { ...sampling, cache, stop: o.stop ? [o.stop] : [] });
    for await (const piece of s) out?.write(piece.text);
    const res = s.result!;
    let saved: { path: string; bytes: number } | null = null;
    if (o['save-cache']) saved = { path: o['save-cache'], bytes: saveCache(cache, o['save-cache']) };

    // ids the tokenizer has no text for (a model whose vocabulary outgrows its tokenizer.json's)
    // would otherwise vanish from the text without a word
    const withoutText = res.ids.filter((id) => id >= tokenizer.vocabSize);
    const mem = cache.memory();
    const fp16Bytes = fp16CacheBytes(model.config, cache.length);
    const rate = (n: number, sec: number) => (sec > 0 ? n / sec : NaN);
    const summary = {
      method: methodName, text: res.text, ids: res.ids, finishReason: res.finishReason,
      resumedTokens: resumed, cachedTokens: cache.length,
      storedBytes: mem.stored, fp16Bytes, residentBytes: mem.total, bitsPerValue: mem.bitsPerValue,
      savedCache: saved, idsWithoutText: withoutText.length,
      prefillTokensPerSecond: rate(res.prefillTokens, res.prefillSeconds), decodeTokensPerSecond: rate(res.decodeTokens, res.decodeSeconds),
    };
    if (o.json) {
      console.log(JSON.stringify(summary, null, 2));
      return;
    }
    process.stdout.write('\n');
    const bytes = (n: number) => n.toLocaleString('en-US');
    if (resumed > 0) console.error(`resumed ${resumed} cached tokens from ${o['resume-cache']} (prefilled only the ${prompt.length} new prompt tokens)`);
    console.error(
      `${methodName} cache: ${bytes(summary.storedBytes)} bytes stored for ${summary.cachedTokens} tokens (16-bit keys and values: ${bytes(fp16Bytes)}, ${(fp16Bytes / summary.storedBytes).toFixed(2)}×); ` +
        `prefill ${summary.prefillTokensPerSecond.toFixed(1)} tokens/s, decode ${Number.isFinite(summary.decodeTokensPerSecond) ? summary.decodeTokensPerSecond.toFixed(1) : '-'} tokens/s`,
    );
    if (saved) console.error(`saved the conversation to ${saved.path}: ${bytes(saved.bytes)} bytes`);
    if (withoutText.length > 0) {
      const some = [...new Set(withoutText)].slice(0, 5).join(', ');
      console.error(
        `warning: ${withoutText.length} of the ${res.ids.length} generated ids (${some}${withoutText.length > 5 ? ', …' : ''}) are beyond the tokenizer's ${tokenizer.vocabSize} ids and have no text; ` +
          `the model's vocabulary is ${model.config.vocabSize} (config.json vocab_size): is tokenizer.json this model's own?`,
      );
    }
  },
};

export const logitsCommand: Command = {
  summary: 'print the logits of one prefill as JSON, streamed row by row (conformance checks against other runtimes); --last, --top-k K for large vocabularies',
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
    const topK = o['top-k'] === undefined ? null : intOpt(o['top-k'], 'top-k', 1, 1, V);
    const logits = model.forward(ids, new FullCache(model), { logits: o.last ? 'last' : 'all' });
    const rows = o.last ? 1 : ids.length;
    // written row by row: one JSON string of every row would pass V8's string limit for a large
    // vocabulary (300 positions × 128K logits)
    const out = process.stdout;
    out.write(`{"ids":${JSON.stringify(ids)},"positions":${JSON.stringify(o.last ? [ids.length - 1] : ids.map((_, i) => i))},"logits":[`);
    for (let t = 0; t < rows; t++) {
      const row = logits.subarray(t * V, (t + 1) * V);
      let json: string;
      if (topK === null) json = JSON.stringify(Array.from(row));
      else {
        const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => row[b] - row[a]).slice(0, topK);
        json = JSON.stringify({ ids: order, logits: order.map((i) => row[i]) });
      }
      out.write((t > 0 ? ',' : '') + json);
    }
    out.write(']}\n');
  },
};
