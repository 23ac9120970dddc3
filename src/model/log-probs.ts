/** Next-token distributions as log-probabilities, and the KL divergence between two of them. */

/** out[j] = log softmax(row)_j over the V entries of `row` (sums in f64). */
export function logSoftmax(row: Float32Array, out: Float64Array | Float32Array): void {
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
