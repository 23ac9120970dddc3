/**
 * All trainable parameters in one Float32Array (and gradients in another of the same layout),
 * exposed as `ModelWeights` views so the runtime's forward pass, the exporter and the optimiser
 * all see the same memory.
 */
import type { ModelConfig } from '../model/config.js';
import { layerShapes, type LayerWeights, type ModelWeights } from '../model/weights.js';
import { Rng } from '../tensor/rng.js';

export interface ParamSlot {
  name: string; // path like layers.3.wq
  offset: number;
  size: number;
  decay: boolean; // weight decay applies to matrices, not norms or biases
}

export class ParamArena {
  readonly data: Float32Array;
  readonly grad: Float32Array;
  readonly slots: ParamSlot[] = [];
  readonly weights: ModelWeights<Float32Array>;
  readonly grads: ModelWeights<Float32Array>;

  constructor(readonly config: ModelConfig) {
    if (!config.tieWordEmbeddings) throw new Error('ParamArena: the trainer supports tied embeddings only');
    const plan: { name: string; size: number; decay: boolean }[] = [];
    const { vocabSize: V, hiddenSize: D } = config;
    plan.push({ name: 'embed', size: V * D, decay: true });
    const shapes = layerShapes(config);
    for (let l = 0; l < config.nLayers; l++) {
      for (const [field, shape] of Object.entries(shapes)) {
        if (shape) plan.push({ name: `layers.${l}.${field}`, size: shape.reduce((a, b) => a * b, 1), decay: shape.length === 2 });
      }
    }
    plan.push({ name: 'finalNorm', size: D, decay: false });
    let offset = 0;
    for (const p of plan) {
      this.slots.push({ ...p, offset });
      offset += p.size;
    }
    this.data = new Float32Array(offset);
    this.grad = new Float32Array(offset);
    this.weights = this.views(this.data);
    this.grads = this.views(this.grad);
  }

  get size(): number {
    return this.data.length;
  }

  private views(buf: Float32Array): ModelWeights<Float32Array> {
    const byName = new Map(this.slots.map((s) => [s.name, buf.subarray(s.offset, s.offset + s.size)]));
    const layers: LayerWeights<Float32Array>[] = [];
    const shapes = layerShapes(this.config);
    for (let l = 0; l < this.config.nLayers; l++) {
      const layer: Record<string, Float32Array | null> = {};
      for (const field of Object.keys(shapes)) layer[field] = byName.get(`layers.${l}.${field}`) ?? null;
      layers.push(layer as unknown as LayerWeights<Float32Array>);
    }
    const embed = byName.get('embed')!;
    return { embed, layers, finalNorm: byName.get('finalNorm')!, lmHead: embed };
  }

  /**
   * GPT-2-style initialisation: N(0, 0.02²) matrices, residual output projections scaled by
   * 1/√(2L), norms at 1, biases at 0.
   */
  init(seed: number): void {
    const rng = new Rng(seed);
    const residualStd = 0.02 / Math.sqrt(2 * this.config.nLayers);
    for (const s of this.slots) {
      const v = this.data.subarray(s.offset, s.offset + s.size);
      if (s.name.endsWith('Norm')) v.fill(1);
      else if (!s.decay) v.fill(0);
      else rng.fillNormal(v, s.name.endsWith('.wo') || s.name.endsWith('.wDown') ? residualStd : 0.02);
    }
  }
}
