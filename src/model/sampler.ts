/** Next-token choice from one row of logits: greedy, or temperature + nucleus (top-p) sampling. */
import { Rng } from '../tensor/rng.js';

export interface SamplerOptions {
  temperature: number; // 0 = greedy
  topP: number; // 1 = no truncation
  seed: number;
}

export class Sampler {
  private rng: Rng;
  constructor(readonly opts: SamplerOptions) {
    this.rng = new Rng(opts.seed);
  }

  sample(logits: Float32Array): number {
    const V = logits.length;
    if (this.opts.temperature <= 0) return argmax(logits);
    const invT = 1 / this.opts.temperature;
    if (!Number.isFinite(invT)) return argmax(logits); // a temperature this close to 0 is greedy
    let max = -Infinity;
    for (let i = 0; i < V; i++) max = Math.max(max, logits[i]);
    const p = new Float64Array(V);
    let sum = 0;
    for (let i = 0; i < V; i++) sum += (p[i] = Math.exp((logits[i] - max) * invT));
    const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => p[b] - p[a]);
    // keep the smallest prefix whose mass reaches topP
    // (at least the most likely token, so top-p 0 or a temperature so small that exp underflows is greedy)
    let kept = 0;
    let mass = 0;
    while (kept < V && (kept === 0 || mass < this.opts.topP * sum)) mass += p[order[kept++]];
    if (!(mass > 0)) return order[0];
    let r = this.rng.next() * mass;
    for (let i = 0; i < kept; i++) {
      r -= p[order[i]];
      if (r <= 0) return order[i];
    }
    return order[kept - 1];
  }
}

export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}
