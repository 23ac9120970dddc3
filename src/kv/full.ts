/** The full-precision (f32) KV cache, the `fp` method: keys are rotated on arrival and kept rotated. */
import type { CacheHost, CacheMemory, KVCache, LayerView } from '../model/kv-cache.js';
import { RowBuffer } from './row-buffer.js';
import { StepOrder } from './step-order.js';

/** What a full cache holds, as saved: per layer [T, C] keys (rotated) and values. */
export interface FullCacheState {
  length: number;
  keys: Float32Array[]; // [L]
  values: Float32Array[]; // [L]
}

export class FullCache implements KVCache {
  private keys: RowBuffer[]; // [L] of [T, C], RoPE applied
  private values: RowBuffer[]; // [L] of [T, C]
  private order: StepOrder;

  /** A fresh cache, or one holding `state` (taken, not copied; from `state()` or a saved file). */
  constructor(readonly host: CacheHost, state?: FullCacheState) {
    const { nLayers, kvDim } = host.config;
    this.order = new StepOrder(nLayers, 'FullCache');
    if (state) {
      this.keys = state.keys.map((k) => RowBuffer.of(kvDim, k));
      this.values = state.values.map((v) => RowBuffer.of(kvDim, v));
      if (this.keys.length !== nLayers || this.values.length !== nLayers || [...this.keys, ...this.values].some((b) => b.rows !== state.length)) {
        throw new RangeError(`FullCache: state does not hold ${state.length} tokens in each of ${nLayers} layers`);
      }
      this.order.committed = state.length;
    } else {
      this.keys = Array.from({ length: nLayers }, () => new RowBuffer(kvDim));
      this.values = Array.from({ length: nLayers }, () => new RowBuffer(kvDim));
    }
  }

  get length(): number {
    return this.order.committed;
  }

  update(layer: number, keysPreRope: Float32Array, values: Float32Array, n: number): LayerView {
    this.order.enter(layer, n);
    const K = this.keys[layer];
    const first = K.append(keysPreRope, n);
    this.host.rope.apply(K.data.subarray(first * K.width), n, this.host.config.nKvHeads, this.length);
    this.values[layer].append(values, n);
    this.order.leave(layer);
    return { keys: K.view(), values: this.values[layer].view(), length: K.rows };
  }

  memory(): CacheMemory {
    let k = 0;
    let v = 0;
    for (const b of this.keys) k += b.bytes();
    for (const b of this.values) v += b.bytes();
    return { total: k + v, components: { keysF32: k, valuesF32: v }, stored: k + v, predictors: 0, bitsPerValue: k + v > 0 ? 32 : NaN };
  }

  /** Views of what the cache holds (valid until its next update). */
  state(): FullCacheState {
    this.order.checkIdle('state');
    return { length: this.length, keys: this.keys.map((b) => b.view()), values: this.values.map((b) => b.view()) };
  }

  fork(): FullCache {
    const s = this.state();
    return new FullCache(this.host, { length: s.length, keys: s.keys.map((k) => k.slice()), values: s.values.map((v) => v.slice()) });
  }

  cutPoint(n: number): number {
    return Math.max(0, Math.min(Math.floor(n), this.length));
  }

  truncate(n: number): void {
    this.order.checkIdle('truncate');
    checkCut(n, this.length, 'FullCache');
    for (const b of [...this.keys, ...this.values]) b.truncate(n);
    this.order.committed = n;
  }
}

/** Throws unless n is a length a cache of `length` tokens can be cut to. */
export function checkCut(n: number, length: number, where: string): void {
  if (!Number.isInteger(n) || n < 0 || n > length) throw new RangeError(`${where}.truncate: ${n} is not a length between 0 and ${length}`);
}
