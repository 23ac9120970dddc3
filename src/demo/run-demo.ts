/**
 * The demo (`aquakv demo`, `npm start`): calibrate (or reuse) predictors, evaluate every method
 * on held-out text, generate a continuation with the full-precision and the AQUA-KV cache, and
 * collect everything the report shows.
 */
import type { LlamaModel } from '../model/llama.js';
import type { TextTokenizer } from '../io/tokenizer.js';
import { loadCache, saveCache, serializeCache } from '../kv/cache-file.js';
import { DEFAULT_CACHE_OPTIONS, type CompressedCache } from '../kv/compressed.js';
import { createCache, restoreCache } from '../kv/factory.js';
import type { PredictorSet } from '../kv/linear-predictor.js';
import { formatMethod, parseMethod, type CacheMethod } from '../kv/method.js';
import { evaluatePerplexity, type MethodResult } from '../eval/perplexity.js';
import { encodeUpTo, MAX_FILLER_TOKENS } from '../eval/texts.js';
import { generate, type GenerateOptions } from '../model/generate.js';
import { fp16CacheBytes, type KVCache } from '../model/kv-cache.js';
import type { LayerErrors } from '../predictors/file.js';
import type { Allocation } from '../predictors/allocate.js';
import { cachedPredictors } from '../predictors/cache-dir.js';
import { DEFAULT_CALIBRATION } from '../predictors/calibrate.js';
import { DEFAULT_RETRIEVAL, defaultRetrievalDistances, retrievalAccuracy, type RetrievalResult } from '../eval/retrieval-eval.js';

export interface DemoOptions {
  cacheDir: string;
  calibrationText: { source: string; text: string };
  evalText: { source: string; text: string };
  samples: number;
  seqLen: number;
  maxTokens: number;
  chunk: number;
  /** Text whose first `promptTokens` tokens are the generation prompt (long, so most of it is compressed). */
  prompt: string;
  promptTokens: number;
  maxNewTokens: number;
  /** The AQUA-KV variants; each gets its own predictors. */
  aquakvMethods: string[];
  baselines: string[];
  sinks: number;
  buffer: number;
  /** Pass-key retrieval through these caches, in windows of seqLen tokens of the evaluation text (0 samples: skipped). */
  retrievalMethods: string[];
  retrievalSamples: number;
  /** Sampling for both continuations (the same seed, so they differ only by the cache). */
  sampling: { temperature: number; topP: number; seed: number };
  /** Where the AQUA-KV conversation is saved, and the text that continues it once resumed. */
  conversationFile: string;
  followUp: string;
  onStage?: (stage: string) => void;
  onProgress?: (stage: string, done: number, total: number, label?: string) => void;
}

export const DEFAULT_DEMO = {
  samples: 16,
  maxTokens: 2048,
  chunk: 32,
  promptTokens: 600,
  maxNewTokens: 64,
  aquakvMethods: ['aquakv', 'aquakv[q=higgs:2x16,first=higgs:2x256]'], // budgeted, and the paper's fixed allocation
  baselines: ['fp', 'higgs', 'higgs[q=higgs:4x256]', 'higgs[q=higgs:2x16,first=higgs:2x256]', 'higgs[q=higgs:2x64]', 'higgs[q=higgs:1x16]', 'kivi2', 'kivi4'],
  sinks: DEFAULT_CACHE_OPTIONS.sinks,
  buffer: DEFAULT_CACHE_OPTIONS.buffer,
  retrievalMethods: ['fp', 'aquakv', 'higgs[q=higgs:2x16,first=higgs:2x256]', 'kivi2'],
  // a few samples per distance keep the demo short; `aquakv retrieval --samples N` measures more
  // (`--retrieval-samples 0` skips the stage)
  retrievalSamples: 5,
  sampling: { temperature: 0.8, topP: 0.95, seed: 1 },
  followUp: '\n\nIn conclusion, I recommend to the Congress',
};

export interface Generation {
  method: string;
  cache: string; // which cache and mode
  text: string;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  tokens: number; // cached tokens at the end
  storedBytes: number;
  residentBytes: number;
  fp16Bytes: number; // the same tokens' keys and values at 16 bits
  components: Record<string, number>;
  ids: number[];
}

/** The AQUA-KV conversation saved to a file, resumed, and continued. */
export interface Conversation {
  file: string;
  tokens: number; // in the saved cache
  fileBytes: number;
  fp16Bytes: number; // the same tokens' keys and values at 16 bits
  fullCacheFileBytes: number; // the fp (f32) cache of the same conversation, saved
  saveSeconds: number;
  loadSeconds: number;
  followUp: string;
  continuation: string;
  /** Time to the first new token: loading the file and reading only the follow-up, against re-reading the whole conversation. */
  resumeFirstTokenSeconds: number;
  rereadFirstTokenSeconds: number;
}

export interface DemoResult {
  model: { dir: string; layers: number; kvDim: number; hiddenSize: number; vocabSize: number; context: number };
  settings: Record<string, string | number>;
  calibrations: { method: string; plan: string; reused: boolean; path: string; seconds: number; layers: LayerErrors[]; allocation?: Allocation }[];
  results: MethodResult[];
  generations: Generation[];
  conversation: Conversation;
  /** Per method, accuracy at each distance; empty when skipped or when the window is too short for the task. */
  retrieval: { method: string; results: RetrievalResult[] }[];
  seconds: number;
}

export function runDemo(model: LlamaModel, tok: TextTokenizer, modelDir: string, o: DemoOptions): DemoResult {
  const t0 = performance.now();
  const cfg = model.config;
  const seqLen = Math.min(o.seqLen, cfg.maxPositionEmbeddings);
  // 1. predictors, one set per AQUA-KV method
  const stages = o.retrievalSamples > 0 ? 4 : 3;
  o.onStage?.(`1/${stages} predictors (cache: ${o.cacheDir})`);
  const predictorSets = new Map<string, PredictorSet>(); // by canonical method
  const predictorsOf = (m: CacheMethod) => (m.usesPredictors ? predictorSets.get(formatMethod(m)) ?? null : null);
  const calibrations: DemoResult['calibrations'] = [];
  const aquaMethods = o.aquakvMethods.map(parseMethod);
  for (const method of aquaMethods) {
    const settings = { ...DEFAULT_CALIBRATION, method, samples: o.samples, seqLen, dataSource: o.calibrationText.source };
    const c = cachedPredictors(o.cacheDir, model, o.calibrationText.text, tok, settings, (stage, d, t) => o.onProgress?.(`calibrate ${method.name}`, d, t, stage));
    predictorSets.set(formatMethod(method), c.set);
    calibrations.push({ method: method.name, plan: c.info.method, reused: c.reused, path: c.path, seconds: c.seconds ?? 0, layers: c.info.layers, allocation: c.info.allocation });
  }
  // 2. evaluation: baselines and AQUA-KV variants on the same windows
  o.onStage?.(`2/${stages} perplexity on ${o.evalText.source}`);
  const evalIds = encodeUpTo(o.evalText.text, (s) => tok.encode(s), Math.max(o.maxTokens, MAX_FILLER_TOKENS)); // eval windows and retrieval filler
  const methods = [...o.baselines.map(parseMethod), ...aquaMethods];
  const cacheOptions = { sinks: o.sinks, buffer: o.buffer, mode: 'materialized' as const };
  const results: MethodResult[] = evaluatePerplexity(model, evalIds, methods, predictorsOf, {
    seqLen, chunk: o.chunk, maxTokens: o.maxTokens, cache: cacheOptions, onProgress: (d, t, l) => o.onProgress?.('eval', d, t, l),
  });
  // 3. generation with the full-precision cache and with AQUA-KV in compact mode
  //    (resident memory follows the compressed size; every step rebuilds the cached layers)
  o.onStage?.(`3/${stages} generation`);
  // room for the continuation, the follow-up and its continuation
  const promptTokens = Math.max(1, Math.min(o.promptTokens, cfg.maxPositionEmbeddings - 2 * o.maxNewTokens - tok.encode(o.followUp).length));
  const prompt = tok.encode(o.prompt).slice(0, promptTokens);
  const generations: Generation[] = [];
  const sampling = { ...o.sampling, maxNewTokens: o.maxNewTokens, stopIds: cfg.eosTokenIds };
  const caches: KVCache[] = [];
  for (const [method, kind, mode] of [
    [parseMethod('fp'), 'FullCache (f32)', 'materialized'],
    [aquaMethods[0], 'CompressedCache, compact mode', 'compact'],
  ] as const) {
    const cache = createCache(model, method, predictorsOf(method), { ...cacheOptions, mode });
    const g = generate(model, prompt, cache, sampling);
    caches.push(cache);
    const mem = cache.memory();
    const tokens = cache.length;
    generations.push({
      method: method.name,
      cache: kind,
      text: tok.decode(g.ids),
      prefillTokensPerSecond: g.prefillTokens / g.prefillSeconds,
      decodeTokensPerSecond: g.decodeTokens / g.decodeSeconds,
      tokens,
      storedBytes: mem.stored,
      residentBytes: mem.total,
      fp16Bytes: fp16CacheBytes(cfg, tokens),
      components: mem.components,
      ids: g.ids,
    });
  }
  const conversation = continueConversation(model, tok, caches[1], predictorsOf(aquaMethods[0]), [...prompt, ...generations[1].ids], caches[0], o, sampling);
  // 4. pass-key retrieval through a few caches, the key hidden in the evaluation text
  const retrieval: DemoResult['retrieval'] = [];
  const encode = (s: string) => tok.encode(s);
  const distances = defaultRetrievalDistances(seqLen, encode);
  if (o.retrievalSamples > 0 && distances.length > 0) {
    o.onStage?.(`4/4 pass-key retrieval (${o.retrievalSamples} samples at distances ${distances.join(', ')})`);
    for (const name of o.retrievalMethods) {
      const m = parseMethod(name);
      const results = retrievalAccuracy(model, encode, evalIds, () => createCache(model, m, predictorsOf(m), cacheOptions), {
        ...DEFAULT_RETRIEVAL, distances, samples: o.retrievalSamples, total: seqLen,
        onProgress: (d, t) => o.onProgress?.(`retrieval ${name}`, d, t),
      });
      retrieval.push({ method: name, results });
    }
  }
  return {
    model: { dir: modelDir, layers: cfg.nLayers, kvDim: cfg.kvDim, hiddenSize: cfg.hiddenSize, vocabSize: cfg.vocabSize, context: cfg.maxPositionEmbeddings },
    settings: {
      calibrationText: o.calibrationText.source, calibrationSamples: o.samples, seqLen, evalText: o.evalText.source,
      evalTokens: Math.floor(Math.min(evalIds.length, o.maxTokens) / seqLen) * seqLen, chunk: o.chunk, sinks: o.sinks, buffer: o.buffer,
      damp: DEFAULT_CALIBRATION.damp,
      temperature: o.sampling.temperature, topP: o.sampling.topP, seed: o.sampling.seed,
      prompt: tok.decode(prompt), promptTokens: prompt.length,
    },
    calibrations,
    results,
    generations,
    conversation,
    retrieval,
    seconds: (performance.now() - t0) / 1000,
  };
}

/**
 * Saves the AQUA-KV conversation (its prompt and continuation, `ids`), loads it back, and
 * continues it with the follow-up text; times the first new token against re-reading the whole
 * conversation into a fresh cache of the same method.
 */
function continueConversation(
  model: LlamaModel, tok: TextTokenizer, cache: KVCache, predictors: PredictorSet | null, ids: number[], fullCache: KVCache,
  o: DemoOptions, sampling: GenerateOptions,
): Conversation {
  const tokens = cache.length;
  let t = performance.now();
  const fileBytes = saveCache(cache, o.conversationFile);
  const saveSeconds = (performance.now() - t) / 1000;
  t = performance.now();
  const resumed = loadCache(o.conversationFile, model, { predictors });
  const loadSeconds = (performance.now() - t) / 1000;
  const followUp = tok.encode(o.followUp);
  const room = model.config.maxPositionEmbeddings - tokens - followUp.length;
  const g = generate(model, followUp, resumed, { ...sampling, maxNewTokens: Math.max(1, Math.min(sampling.maxNewTokens, room)) });
  // the same first token, reading everything again
  const fresh = restoreCache(model, (cache as CompressedCache).setup.method, predictors, (cache as CompressedCache).options);
  const reread = generate(model, [...ids, ...followUp], fresh, { ...sampling, maxNewTokens: 1 });
  return {
    file: o.conversationFile,
    tokens,
    fileBytes,
    fp16Bytes: fp16CacheBytes(model.config, tokens),
    fullCacheFileBytes: serializeCache(fullCache).byteLength,
    saveSeconds,
    loadSeconds,
    followUp: o.followUp,
    continuation: tok.decode(g.ids),
    resumeFirstTokenSeconds: loadSeconds + g.prefillSeconds,
    rereadFirstTokenSeconds: reread.prefillSeconds,
  };
}
