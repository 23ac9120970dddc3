/** The full-precision (f32) KV cache, the `fp` method: keys are rotated on arrival and kept rotated. */
import type { CacheHost, CacheMemory, KVCache, LayerView } from '../model/kv-cache.js';
import { HeadRows } from './head-rows.js';
import { StepOrder } from './step-order.js';

/** What a full cache holds, as saved: per layer [T, C] keys (rotated) and values, token-major. */
export interface FullCacheState {
  length: number;
  keys: Float32Array[]; // [L]
  values: Float32Array[]; // [L]
}

export class FullCache implements KVCache {
  private keys: HeadRows[]; // [L] of [KV][T, hd], RoPE applied
  private values: HeadRows[]; // [L] of [KV][T, hd]
  private order: StepOrder;

  /** A fresh cache, or one holding `state` (taken, not copied; from `state()` or a saved file). */
  constructor(readonly host: CacheHost, state?: FullCacheState) {
    const { nLayers, kvDim, nKvHeads, headDim } = host.config;
    this.order = new StepOrder(nLayers, 'FullCache');
    const rows = () => Array.from({ length: nLayers }, () => new HeadRows(nKvHeads, headDim, state?.length ?? 64));
    this.keys = rows();
    this.values = rows();
    if (state) {
      const whole = (list: Float32Array[]) => list.length === nLayers && list.every((x) => x.length === state.length * kvDim);
      if (!whole(state.keys) || !whole(state.values)) throw new RangeError(`FullCache: state does not hold ${state.length} tokens in each of ${nLayers} layers`);
      for (let l = 0; l < nLayers; l++) {
        this.keys[l].append(state.keys[l], state.length);
        this.values[l].append(state.values[l], state.length);
      }
      this.order.committed = state.length;
    }
  }

  get length(): number {
    return this.order.committed;
  }

  update(layer: number, keysPreRope: Float32Array, values: Float32Array, n: number): LayerView {
    this.order.enter(layer, n);
    const K = this.keys[layer];
    const V = this.values[layer];
    const first = K.append(keysPreRope, n);
    K.rope(this.host.rope, first, n, this.length);
    V.append(values, n);
    this.order.leave(layer);
    // K and V grow in step, so their capacities (the stride) agree
    return { keys: K.data, values: V.data, length: K.rows, stride: K.capacity, inPlace: { keys: K, values: V } };
  }

  memory(): CacheMemory {
    let k = 0;
    let v = 0;
    let spare = 0;
    for (const b of this.keys) k += b.bytes();
    for (const b of this.values) v += b.bytes();
    for (const b of [...this.keys, ...this.values]) spare += b.spareBytes();
    return { total: k + v + spare, components: { keysF32: k, valuesF32: v, spare }, stored: k + v, predictors: 0, bitsPerValue: k + v > 0 ? 32 : NaN };
  }

  /** A copy of what the cache holds, token-major. */
  state(): FullCacheState {
    this.order.checkIdle('state');
    return { length: this.length, keys: this.keys.map((b) => b.tokenMajor()), values: this.values.map((b) => b.tokenMajor()) };
  }

  fork(): FullCache {
    this.order.checkIdle('fork');
    const copy = new FullCache(this.host);
    copy.keys = this.keys.map((b) => b.clone());
    copy.values = this.values.map((b) => b.clone());
    copy.order.committed = this.length;
    return copy;
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
