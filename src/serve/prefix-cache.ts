/**
 * The prefix cache: saved caches of token prefixes, so a request whose tokens extend a stored
 * prefix restores it and prefills only the rest (vLLM's prefix caching, LMCache's KV store; here
 * with the cache compressed as AQUA-KV stores it).
 *
 * Prefixes are cut at block boundaries (multiples of the cache's block B, where a compressed cache
 * can be cut). An entry's key names the model's weights, the method with its plan and predictors,
 * the cache options, the prefix length and a hash of its tokens; its value is
 *   "AQPX" | u32 n | n token ids (i32) | the saved cache (kv/cache-file.ts, checksummed).
 * A corrupt, partial or foreign entry (bad frame, other tokens, a cache file that does not load for
 * this model) is a miss: never used, deleted, counted.
 *
 * Prefill is block-aligned (no step crosses a block boundary), so a cache restored from an entry
 * is bit-identical to the same tokens read afresh, and a hit continues exactly as a miss would.
 */
import { deserializeCache, serializeCache } from '../kv/cache-file.js';
import type { CacheOptions } from '../kv/compressed.js';
import { predictorsDigest, type PredictorSet } from '../kv/linear-predictor.js';
import { formatMethod, methodKey, type CacheMethod } from '../kv/method.js';
import { resolvePlan, restoreCache } from '../kv/factory.js';
import type { KVCache } from '../model/kv-cache.js';
import type { LlamaModel } from '../model/llama.js';
import { platform } from '../platform/index.js';
import type { PrefixStore } from './store.js';

const MAGIC = 'AQPX';

export interface PrefixCacheCounters {
  hits: number;
  misses: number;
  corrupt: number;
  stored: number;
  reusedTokens: number;
}

export class PrefixCache {
  readonly counters: PrefixCacheCounters = { hits: 0, misses: 0, corrupt: 0, stored: 0, reusedTokens: 0 };
  private readonly namespace: string;

  constructor(
    readonly store: PrefixStore,
    private readonly model: LlamaModel,
    private readonly method: CacheMethod,
    private readonly predictors: PredictorSet | null,
    readonly options: CacheOptions,
  ) {
    const C = model.config.kvDim;
    const plan = resolvePlan(method, predictors, C);
    this.namespace = platform.sha256().update(JSON.stringify({
      weights: model.weightsDigest, method: formatMethod(method), plan: methodKey(plan, C),
      predictors: method.usesPredictors && predictors ? predictorsDigest(predictors) : null,
      sinks: options.sinks, buffer: options.buffer,
    })).digest().slice(0, 16);
  }

  /** Block size: prefixes are stored and looked up at multiples of it. */
  get block(): number {
    return this.options.buffer;
  }

  /** An empty cache of this server's method. */
  fresh(): KVCache {
    return restoreCache(this.model, this.method, this.predictors, this.options);
  }

  private key(tokens: number[], n: number): string {
    const ids = Int32Array.from(tokens.slice(0, n));
    return `${this.namespace}:${n}:${platform.sha256().update(new Uint8Array(ids.buffer)).digest().slice(0, 32)}`;
  }

  /**
   * The cache of the longest stored prefix of `tokens` that leaves at least one token to read (the
   * last one's logits start generation), or a fresh cache. `reused` is the prefix length.
   */
  async lookup(tokens: number[]): Promise<{ cache: KVCache; reused: number }> {
    for (let n = Math.floor((tokens.length - 1) / this.block) * this.block; n > 0; n -= this.block) {
      const key = this.key(tokens, n);
      const entry = await this.store.get(key);
      if (!entry) continue;
      const cache = this.open(entry, tokens, n);
      if (cache) {
        this.counters.hits++;
        this.counters.reusedTokens += n;
        return { cache, reused: n };
      }
      this.counters.corrupt++;
      await this.store.delete(key);
    }
    this.counters.misses++;
    return { cache: this.fresh(), reused: 0 };
  }

  /** The entry's cache if it holds exactly tokens[0, n) for this model and method, else null. */
  private open(entry: Uint8Array, tokens: number[], n: number): KVCache | null {
    try {
      if (entry.byteLength < 8 || new TextDecoder().decode(entry.subarray(0, 4)) !== MAGIC) return null;
      const dv = new DataView(entry.buffer, entry.byteOffset, entry.byteLength);
      if (dv.getUint32(4, true) !== n || entry.byteLength < 8 + 4 * n) return null;
      for (let i = 0; i < n; i++) if (dv.getInt32(8 + 4 * i, true) !== tokens[i]) return null;
      const cache = deserializeCache(entry.subarray(8 + 4 * n), this.model, { predictors: this.predictors, mode: this.options.mode, method: this.method }, 'prefix entry');
      return cache.length === n ? cache : null;
    } catch {
      return null;
    }
  }

  /** The entry for `cache`, which holds exactly `tokens` (its length must be a block boundary). */
  entry(cache: KVCache, tokens: number[]): Uint8Array {
    const n = cache.length;
    const body = serializeCache(cache);
    const out = new Uint8Array(8 + 4 * n + body.byteLength);
    out.set(new TextEncoder().encode(MAGIC));
    const dv = new DataView(out.buffer);
    dv.setUint32(4, n, true);
    for (let i = 0; i < n; i++) dv.setInt32(8 + 4 * i, tokens[i], true);
    out.set(body, 8 + 4 * n);
    return out;
  }

  /** Stores `entry` for tokens[0, n). */
  async put(tokens: number[], n: number, entry: Uint8Array): Promise<void> {
    await this.store.set(this.key(tokens, n), entry);
    this.counters.stored++;
  }
}
