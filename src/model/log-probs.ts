/**
 * Next-token distributions as log-probabilities, the KL divergence between two of them, and the
 * one loop that scores a window through a cache (eval, the model-quality score, the allocation).
 */
import type { KVCache } from './kv-cache.js';
import type { ForwardOptions, LlamaModel } from './llama.js';

/** out[j] = log softmax(row)_j over the V entries of `row` (sums in f64). */
function logSoftmax(row: Float32Array, out: Float64Array): void {
  let max = -Infinity;
  for (let j = 0; j < row.length; j++) if (row[j] > max) max = row[j];
  let s = 0;
  for (let j = 0; j < row.length; j++) s += Math.exp(row[j] - max);
  const lse = max + Math.log(s);
  for (let j = 0; j < row.length; j++) out[j] = row[j] - lse;
}

/** KL(p ‖ q) = Σ p·(log p − log q), from log-probabilities ref = log p and lp = log q, each [V]. */
export function klDivergence(ref: ArrayLike<number>, lp: ArrayLike<number>, V: number): number {
  let kl = 0;
  for (let j = 0; j < V; j++) kl += Math.exp(ref[j]) * (ref[j] - lp[j]);
  return kl;
}

/**
 * Runs one window through a cache `chunk` tokens at a time and calls `row(t, logProbs)` with the
 * log-probabilities of the token after position t, for every t < L − 1. `step` adds options to
 * the step of tokens [start, start + n) (calibration records a pass through taps and replays it
 * from a layer).
 */
export function runWindow(
  model: LlamaModel, ids: number[], chunk: number, cache: KVCache, row: (t: number, lp: Float64Array) => void,
  step?: (start: number, n: number) => Pick<ForwardOptions, 'from' | 'tap'>,
): void {
  const V = model.config.vocabSize;
  const lp = new Float64Array(V);
  for (let s = 0; s < ids.length; s += chunk) {
    const piece = ids.slice(s, Math.min(ids.length, s + chunk));
    const logits = model.forward(piece, cache, { ...step?.(s, piece.length), logits: 'all' });
    for (let i = 0; i < piece.length; i++) {
      const t = s + i;
      if (t >= ids.length - 1) break;
      logSoftmax(logits.subarray(i * V, (i + 1) * V), lp);
      row(t, lp);
    }
  }
}
