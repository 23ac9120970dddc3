/**
 * The KV-cache seam between the model and its memory of past tokens.
 *
 * Each forward step hands the cache, for every layer in order 0..L−1, the new tokens' keys
 * *before RoPE* and their values, all KV heads flattened: [n, C] with C = KV·hd. The cache
 * returns the keys (RoPE applied) and values attention must use for every cached token
 * including the new ones (head-major, see `LayerView`). Keys arrive un-rotated so a compressing cache can quantise
 * them in the space where they are predictable across layers (AQUA-KV §3, KVQuant); layer
 * order lets it rebuild layer l from its own reconstruction of layer l−1 within the same step.
 */
import type { ModelConfig } from './config.js';
import type { Rope } from './rope.js';
import type { KernelMemory } from '../tensor/wasm-arena.js';

/**
 * What attention reads, in place: keys (RoPE applied) and values of every cached token, head-major,
 * [KV][stride, hd]: KV head h's row t (t < length) at (h·stride + t)·hd. Each head's rows are
 * contiguous, so attention multiplies them without copying.
 */
export interface LayerView {
  keys: Float32Array;
  values: Float32Array;
  length: number; // T: cached tokens including this step's
  stride: number; // rows reserved per head (≥ T)
  /**
   * Where keys and values lie in WebAssembly memory (element 0 of each at byte 0), when they do:
   * decode attention's kernels then read them there; otherwise it copies them to its own.
   */
  inPlace?: { keys: KernelMemory; values: KernelMemory };
}

/** Bytes held, by component (names are the cache's own), plus the total. */
export interface CacheMemory {
  /** Everything this cache holds in memory now (working copies included). */
  total: number;
  components: Record<string, number>;
  /** What a saved or transmitted cache would take: codes, scales, full-precision sinks and buffer. */
  stored: number;
  /** Shared per-model parameters (AQUA-KV predictors), not counted in total or stored. */
  predictors: number;
  /**
   * Stored bits per value of the tokens held compressed (codes, scales, zero points, all layers,
   * keys and values); 32 for an f32 cache; NaN while nothing is compressed.
   */
  bitsPerValue: number;
}

export interface KVCache {
  /** Tokens cached before the step in progress (the position of the next new token). */
  readonly length: number;
  /** Layer `layer` of the current step; layer 0 opens a step, layer L−1 closes it. */
  update(layer: number, keysPreRope: Float32Array, values: Float32Array, n: number): LayerView;
  /**
   * Layer `layer`'s attention is done with its view (optional; the forward pass calls it): a cache
   * may now change what that view held (a materialized cache writes the reconstructions of tokens
   * it compressed this step, which attention had to read unquantized).
   */
  attended?(layer: number): void;
  /** Bytes this cache holds now. */
  memory(): CacheMemory;
  /** An independent copy holding the same tokens (a shared prefix continued two ways). Between steps only. */
  fork(): KVCache;
  /**
   * Keeps the first n tokens and forgets the rest, so a prefix can be continued differently.
   * A compressed cache can only cut where no compressed chunk is split: `cutPoint(n)` is the
   * largest such length ≤ n. Between steps only.
   */
  truncate(n: number): void;
  /** The largest m ≤ n (and ≤ length) at which `truncate(m)` is allowed. */
  cutPoint(n: number): number;
}

/** What a cache needs to know of its model: the shapes, and the rotation it applies to keys. */
export interface CacheHost {
  readonly config: ModelConfig;
  readonly rope: Rope;
  /** Which trained weights these are: a saved cache records it and is refused by other weights. */
  readonly weightsDigest: string;
}

/** Bytes `tokens` tokens' keys and values take at 16 bits (the usual cache): the reference sizes compare against. */
export function fp16CacheBytes(config: ModelConfig, tokens: number): number {
  return tokens * config.kvDim * 2 * config.nLayers * 2;
}
