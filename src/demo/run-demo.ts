/**
 * The demo (`aquakv demo`, `npm start`): calibrate (or reuse) predictors, evaluate every method
 * on held-out text, generate a continuation with the full-precision and the AQUA-KV cache, and
 * collect everything the report shows.
 */
import type { LlamaModel } from '../model/llama.js';
import type { TextTokenizer } from '../io/tokenizer.js';
import { createCache } from '../kv/factory.js';
import { parseMethod } from '../kv/method.js';
import { evaluatePerplexity, type MethodResult } from '../eval/perplexity.js';
import { generate } from '../model/generate.js';
import type { LayerErrors } from '../predictors/file.js';
import type { PredictorSet } from '../predictors/linear.js';
import { cachedPredictors, type CalibrationSettings } from '../predictors/cache-dir.js';
import { DEFAULT_CALIBRATION } from '../predictors/from-text.js';
import type { KVCache } from '../kv/cache.js';
import { retrievalAccuracy, type RetrievalResult } from '../eval/retrieval-eval.js';
import { retrievalDistanceRange } from '../eval/retrieval.js';

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
  /** Residual quantizers of the AQUA-KV variants; each gets its own predictors. */
  aquakvQuantizers: string[];
  baselines: string[];
  sinks: number;
  buffer: number;
  /** Pass-key retrieval through these caches, in windows of seqLen tokens of the evaluation text (0 samples: skipped). */
  retrievalMethods: string[];
  retrievalSamples: number;
  onStage?: (stage: string) => void;
  onProgress?: (stage: string, done: number, total: number, label?: string) => void;
}

export const DEFAULT_DEMO = {
  samples: 16,
  maxTokens: 2048,
  chunk: 32,
  promptTokens: 600,
  maxNewTokens: 64,
  aquakvQuantizers: ['higgs:2x16', 'higgs:2x64'],
  baselines: ['fp', 'higgs', 'higgs[q=higgs:2x16,first=higgs:2x256]', 'higgs[q=higgs:2x64]', 'higgs[q=higgs:1x16]', 'kivi2', 'kivi4'],
  sinks: 4,
  buffer: 128,
  retrievalMethods: ['fp', 'aquakv', 'higgs[q=higgs:2x16,first=higgs:2x256]', 'kivi2'],
  // a few samples per distance keep the demo short; `aquakv retrieval --samples N` measures more
  // (`--retrieval-samples 0` skips the stage)
  retrievalSamples: 5,
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
}

export interface DemoResult {
  model: { dir: string; layers: number; kvDim: number; hiddenSize: number; vocabSize: number; context: number };
  settings: Record<string, string | number>;
  calibrations: { quantizer: string; reused: boolean; path: string; seconds: number; layers: LayerErrors[] }[];
  results: MethodResult[];
  generations: Generation[];
  /** Per method, accuracy at each distance; empty when skipped or when the window is too short for the task. */
  retrieval: { method: string; results: RetrievalResult[] }[];
  seconds: number;
}

/** Distances for pass-key retrieval in windows of `seqLen` tokens: near, middle and far, where they fit. */
export function retrievalDistances(seqLen: number, encode: (s: string) => number[]): number[] {
  const range = retrievalDistanceRange(encode, seqLen);
  const nearest = range.nearest + 16;
  const farthest = range.farthest - 8;
  if (farthest < nearest) return [];
  const picks = [nearest + 32, Math.round(seqLen / 2), farthest].map((d) => Math.max(nearest, Math.min(farthest, d)));
  return [...new Set(picks)].sort((a, b) => a - b);
}

export function runDemo(model: LlamaModel, tok: TextTokenizer, modelDir: string, o: DemoOptions): DemoResult {
  const t0 = performance.now();
  const cfg = model.config;
  const seqLen = Math.min(o.seqLen, cfg.maxPositionEmbeddings);
  // 1. predictors, one set per AQUA-KV residual quantizer
  const stages = o.retrievalSamples > 0 ? 4 : 3;
  o.onStage?.(`1/${stages} predictors (cache: ${o.cacheDir})`);
  const predictorSets = new Map<string, PredictorSet>();
  const calibrations: DemoResult['calibrations'] = [];
  for (const q of o.aquakvQuantizers) {
    const settings: CalibrationSettings = { ...DEFAULT_CALIBRATION, quantizer: q, samples: o.samples, seqLen, dataSource: o.calibrationText.source };
    const c = cachedPredictors(o.cacheDir, model, o.calibrationText.text, (s) => tok.encode(s), settings, (stage, d, t) => o.onProgress?.(`calibrate ${q}`, d, t, stage));
    predictorSets.set(q, c.set);
    calibrations.push({ quantizer: q, reused: c.reused, path: c.path, seconds: c.info.seconds, layers: c.info.layers });
  }
  // 2. evaluation: baselines and AQUA-KV variants on the same windows
  o.onStage?.(`2/${stages} perplexity on ${o.evalText.source}`);
  const evalIds = tok.encode(o.evalText.text);
  const aquaNames = o.aquakvQuantizers.map((q) => (q === 'higgs:2x16' ? 'aquakv' : `aquakv[q=${q}]`));
  const methods = [...o.baselines, ...aquaNames].map(parseMethod);
  const cacheOptions = { sinks: o.sinks, buffer: o.buffer, mode: 'materialized' as const };
  const results: MethodResult[] = evaluatePerplexity(model, evalIds, methods, (m) => predictorSets.get(m.keyQuantizer) ?? null, {
    seqLen, chunk: o.chunk, maxTokens: o.maxTokens, cache: cacheOptions, onProgress: (d, t, l) => o.onProgress?.('eval', d, t, l),
  });
  // 3. generation with the runtime's full-precision cache and with AQUA-KV in compact mode
  //    (resident memory follows the compressed size; every step rebuilds the cached layers)
  o.onStage?.(`3/${stages} generation`);
  const promptTokens = Math.max(1, Math.min(o.promptTokens, cfg.maxPositionEmbeddings - o.maxNewTokens));
  const prompt = tok.encode(o.prompt).slice(0, promptTokens);
  const generations: Generation[] = [];
  const firstAqua = o.aquakvQuantizers[0];
  for (const [label, kind, make] of [
    ['fp', 'FullCache (f32)', () => model.newFullCache()],
    [aquaNames[0], 'CompressedCache, compact mode', () => createCache(model, parseMethod(aquaNames[0]), predictorSets.get(firstAqua)!, { ...cacheOptions, mode: 'compact' })],
  ] as [string, string, () => KVCache][]) {
    const cache = make();
    const g = generate(model, prompt, cache, { maxNewTokens: o.maxNewTokens, temperature: 0, topP: 1, seed: 0, stopIds: cfg.eosTokenIds });
    const mem = cache.memory();
    const tokens = cache.length;
    generations.push({
      method: label,
      cache: kind,
      text: tok.decode(g.ids),
      prefillTokensPerSecond: g.prefillTokens / g.prefillSeconds,
      decodeTokensPerSecond: g.decodeTokens / g.decodeSeconds,
      tokens,
      storedBytes: mem.stored,
      residentBytes: mem.total,
      fp16Bytes: tokens * cfg.kvDim * 2 * cfg.nLayers * 2,
      components: mem.components,
    });
  }
  // 4. pass-key retrieval through a few caches, the key hidden in the evaluation text
  const retrieval: DemoResult['retrieval'] = [];
  const encode = (s: string) => tok.encode(s);
  const distances = retrievalDistances(seqLen, encode);
  if (o.retrievalSamples > 0 && distances.length > 0) {
    o.onStage?.(`4/4 pass-key retrieval (${o.retrievalSamples} samples at distances ${distances.join(', ')})`);
    for (const name of o.retrievalMethods) {
      const m = parseMethod(name);
      const results = retrievalAccuracy(model, encode, evalIds, () => createCache(model, m, m.usesPredictors ? predictorSets.get(m.keyQuantizer) ?? null : null, cacheOptions), {
        distances, samples: o.retrievalSamples, total: seqLen, chunk: 128, seed: 7,
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
      firstLayerQuantizer: DEFAULT_CALIBRATION.firstLayerQuantizer, damp: DEFAULT_CALIBRATION.damp,
      prompt: tok.decode(prompt), promptTokens: prompt.length,
    },
    calibrations,
    results,
    generations,
    retrieval,
    seconds: (performance.now() - t0) / 1000,
  };
}
