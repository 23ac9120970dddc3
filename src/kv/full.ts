/** The full-precision (f32) KV cache: keys are rotated on arrival and kept rotated. */
import type { Rope } from '../model/rope.js';
import { RowBuffer, StepOrder, type CacheMemory, type KVCache, type LayerView } from './cache.js';

export class FullCache implements KVCache {
  private keys: RowBuffer[];
  private values: RowBuffer[];
  private order: StepOrder;

  constructor(nLayers: number, readonly kvDim: number, private rope: Rope, private nKvHeads: number) {
    this.keys = Array.from({ length: nLayers }, () => new RowBuffer(kvDim));
    this.values = Array.from({ length: nLayers }, () => new RowBuffer(kvDim));
    this.order = new StepOrder(nLayers, 'FullCache');
  }

  get length(): number {
    return this.order.committed;
  }

  update(layer: number, keysPreRope: Float32Array, values: Float32Array, n: number): LayerView {
    this.order.enter(layer, n);
    const K = this.keys[layer];
    const first = K.append(keysPreRope, n);
    this.rope.apply(K.data.subarray(first * this.kvDim), n, this.nKvHeads, this.length);
    this.values[layer].append(values, n);
    this.order.leave(layer);
    return { keys: K.view(), values: this.values[layer].view(), length: K.rows };
  }

  memory(): CacheMemory {
    let k = 0;
    let v = 0;
    for (const b of this.keys) k += b.bytes();
    for (const b of this.values) v += b.bytes();
    return { total: k + v, components: { keysF32: k, valuesF32: v }, stored: k + v, predictors: 0 };
  }
}
