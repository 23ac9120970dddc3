/** The full-precision (f32) KV cache, the `fp` method: keys are rotated on arrival and kept rotated. */
import type { CacheHost, CacheMemory, KVCache, LayerView } from '../model/kv-cache.js';
import { RowBuffer } from './row-buffer.js';
import { StepOrder } from './step-order.js';

export class FullCache implements KVCache {
  private keys: RowBuffer[]; // [L] of [T, C], RoPE applied
  private values: RowBuffer[]; // [L] of [T, C]
  private order: StepOrder;

  constructor(private readonly host: CacheHost) {
    const { nLayers, kvDim } = host.config;
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
}
