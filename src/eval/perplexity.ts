/**
 * Perplexity with simulated generation (AQUA-KV's evaluate_perplexity.py protocol): the text is
 * cut into non-overlapping windows of L tokens (the last partial window dropped); each window is
 * fed C tokens per forward into a fresh cache, so later tokens attend to compressed entries.
 * Next-token NLL is summed over the L − 1 predicted positions of every window. Beside it, the
 * mean KL divergence KL(p_fp ‖ p_method) of the next-token distributions at the same positions.
 */
import { AquaError } from '../errors.js';
import { DEFAULT_CACHE_OPTIONS, type CacheOptions } from '../kv/compressed.js';
import { createCache } from '../kv/factory.js';
import type { PredictorSet } from '../kv/linear-predictor.js';
import { methodFamily, parseMethod, type CacheMethod } from '../kv/method.js';
import type { LlamaModel } from '../model/llama.js';
import { klDivergence, runWindow } from '../model/log-probs.js';

export interface EvalOptions {
  seqLen: number; // L
  chunk: number; // tokens per forward
  maxTokens: number; // cap on tokens evaluated (whole windows)
  cache?: Partial<CacheOptions>;
  /** Predicted positions done of all (windows × methods × (seqLen − 1)), with the method running. */
  onProgress?: (done: number, total: number, label: string) => void;
}

/** The defaults of eval's options (the window length defaults to the model's context). */
/**
 * Windows default to the model's context, up to `maxSeqLen`: a 128K-context model would need a
 * 128K-token window (and its reference logits, window × vocabulary floats) to evaluate at all.
 */
export const DEFAULT_EVAL = Object.freeze({ chunk: 32, maxTokens: 16384, maxSeqLen: 4096 });

/** The default window for a model of this context. */
export function defaultSeqLen(context: number): number {
  return Math.min(context, DEFAULT_EVAL.maxSeqLen);
}

export interface MethodResult {
  method: string;
  family: string; // methodFamily: for charts
  bitsPerValue: number; // stored bits per quantized value (codes, scales, zeros, layer 0's precision)
  perplexity: number;
  relativeChange: number; // perplexity / fp perplexity − 1
  klDivergence: number; // mean over predicted positions, nats
  cacheBytes: number; // stored bytes of one full window's cache
  components: Record<string, number>; // that cache's memory by component (materialized mode)
  predictorBytes: number;
  nll: number; // mean nats per predicted token
  tokens: number; // predicted positions
  windows: number;
  seconds: number;
}


/** The predictors a method uses (each AQUA-KV variant may have its own calibration). */
export type PredictorLookup = (method: CacheMethod) => PredictorSet | null;

/** Evaluates every method on the same windows; fp is always run as the reference. */
export function evaluatePerplexity(
  model: LlamaModel, ids: number[], methods: CacheMethod[], predictors: PredictorSet | null | PredictorLookup, o: EvalOptions,
): MethodResult[] {
  const lookup: PredictorLookup = typeof predictors === 'function' ? predictors : () => predictors;
  const { seqLen: L, chunk } = o;
  if (!Number.isInteger(L) || L < 2) throw new AquaError(`eval: windows need at least 2 tokens, got ${L}`);
  if (L > model.config.maxPositionEmbeddings) throw new AquaError(`eval: windows of ${L} tokens exceed the model's context of ${model.config.maxPositionEmbeddings}`);
  if (!Number.isInteger(chunk) || chunk < 1) throw new AquaError(`eval: chunk must be a positive integer, got ${chunk}`);
  const B = o.cache?.buffer ?? DEFAULT_CACHE_OPTIONS.buffer;
  if (methods.some((m) => m.kind !== 'fp') && L <= B) {
    throw new AquaError(`eval: windows of ${L} tokens never read a compressed block (the cache compresses blocks of ${B} tokens): KL and bits would measure nothing`, 'use longer windows or a smaller buffer');
  }
  const windows = Math.floor(Math.min(ids.length, o.maxTokens) / L);
  if (windows < 1) throw new AquaError(`eval: the text has ${ids.length} tokens (cap ${o.maxTokens}), fewer than one window of ${L}`);
  const V = model.config.vocabSize;
  const fpMethod = methods.find((m) => m.kind === 'fp') ?? parseMethod('fp');
  const acc = new Map<CacheMethod, { nll: number; kl: number; n: number; bits: number; bytes: number; pbytes: number; seconds: number; components: Record<string, number> }>();
  for (const m of [fpMethod, ...methods.filter((x) => x !== fpMethod)]) acc.set(m, { nll: 0, kl: 0, n: 0, bits: NaN, bytes: 0, pbytes: 0, seconds: 0, components: {} });
  const ref = new Float64Array((L - 1) * V); // fp log-probs of the current window
  // progress in predicted positions, every chunk: one method over one long window is minutes at
  // real sizes (Llama-3.2-1B's shapes: ~4 min for 4 096 tokens here)
  const total = windows * acc.size * (L - 1);
  let done = 0;
  for (let w = 0; w < windows; w++) {
    const win = ids.slice(w * L, (w + 1) * L);
    for (const [m, a] of acc) {
      const t0 = performance.now();
      const cache = createCache(model, m, m.usesPredictors ? lookup(m) : null, o.cache);
      runWindow(model, win, chunk, cache, (t, lp) => {
        a.nll -= lp[win[t + 1]];
        if (m === fpMethod) ref.set(lp, t * V);
        else a.kl += klDivergence(ref.subarray(t * V, (t + 1) * V), lp, V);
        a.n++;
        if (++done % chunk === 0) o.onProgress?.(done, total, m.name);
      });
      const mem = cache.memory();
      a.bits = mem.bitsPerValue;
      a.bytes = mem.stored;
      a.pbytes = mem.predictors;
      a.components = mem.components;
      a.seconds += (performance.now() - t0) / 1000;
      o.onProgress?.(done, total, m.name);
    }
  }
  const fpPpl = Math.exp(acc.get(fpMethod)!.nll / acc.get(fpMethod)!.n);
  return methods.map((m) => {
    const a = acc.get(m)!;
    const ppl = Math.exp(a.nll / a.n);
    return {
      method: m.name,
      family: methodFamily(m),
      bitsPerValue: a.bits,
      perplexity: ppl,
      relativeChange: ppl / fpPpl - 1,
      klDivergence: a.kl / a.n,
      cacheBytes: a.bytes,
      components: a.components,
      predictorBytes: a.pbytes,
      nll: a.nll / a.n,
      tokens: a.n,
      windows,
      seconds: a.seconds,
    };
  });
}
