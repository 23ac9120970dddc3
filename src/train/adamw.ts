/**
 * AdamW (Loshchilov & Hutter) with decoupled weight decay on matrices only, global-norm gradient
 * clipping, and a linear warm-up then cosine decay schedule.
 */
import type { ParamArena } from './params.js';

export interface AdamWOptions {
  lr: number;
  minLr: number;
  warmupSteps: number;
  totalSteps: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  clipNorm: number;
}

export function learningRate(step: number, o: AdamWOptions): number {
  if (step < o.warmupSteps) return (o.lr * (step + 1)) / o.warmupSteps;
  const progress = Math.min(1, (step - o.warmupSteps) / Math.max(1, o.totalSteps - o.warmupSteps));
  return o.minLr + 0.5 * (o.lr - o.minLr) * (1 + Math.cos(Math.PI * progress));
}

export class AdamW {
  m: Float32Array;
  v: Float32Array;
  step = 0;

  constructor(private arena: ParamArena, readonly opts: AdamWOptions) {
    this.m = new Float32Array(arena.size);
    this.v = new Float32Array(arena.size);
  }

  /** Clips, updates the parameters from arena.grad, and returns the pre-clip gradient norm. */
  update(): { gradNorm: number; lr: number } {
    const { data, grad, slots } = this.arena;
    const o = this.opts;
    let ss = 0;
    for (let i = 0; i < grad.length; i++) ss += grad[i] * grad[i];
    const gradNorm = Math.sqrt(ss);
    const clip = gradNorm > o.clipNorm ? o.clipNorm / gradNorm : 1;
    const lr = learningRate(this.step, o);
    this.step++;
    const bc1 = 1 - Math.pow(o.beta1, this.step);
    const bc2 = 1 - Math.pow(o.beta2, this.step);
    const { m, v } = this;
    for (const s of slots) {
      const decay = s.decay ? 1 - lr * o.weightDecay : 1;
      for (let i = s.offset; i < s.offset + s.size; i++) {
        const g = grad[i] * clip;
        m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
        v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
        data[i] = data[i] * decay - (lr * (m[i] / bc1)) / (Math.sqrt(v[i] / bc2) + o.eps);
      }
    }
    return { gradNorm, lr };
  }
}
