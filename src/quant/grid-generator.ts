/**
 * Generators of MSE-optimal grids for the standard normal distribution.
 * - d = 1: the Lloyd–Max quantizer, iterated with exact Gaussian integrals (no sampling):
 *   boundaries at midpoints, each level moved to the conditional mean of its interval.
 * - d ≥ 2: Lloyd's algorithm on Gaussian samples (k-means), initialised by k-means++ and run
 *   on a fresh sample each round with a step size that decays like the reference generator
 *   (grid += γ·(centroid − grid)); a final few full Lloyd rounds on the largest sample.
 */
import { Rng } from '../tensor/rng.js';
import { Grid } from './grid.js';

const SQRT2 = Math.SQRT2;
const phi = (x: number) => Math.exp(-x * x / 2) / Math.sqrt(2 * Math.PI);

/** erf with |error| < 1.2e-7 (Numerical Recipes erfc, Chebyshev fit). */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}
const Phi = (x: number) => (x === Infinity ? 1 : x === -Infinity ? 0 : 0.5 * (1 + erf(x / SQRT2)));

/** Lloyd–Max levels for N(0, 1) with n levels, and their exact MSE. */
export function lloydMax1d(n: number, iterations = 5000): { points: number[]; mse: number } {
  let p = Array.from({ length: n }, (_, i) => -2.5 + (5 * (i + 0.5)) / n);
  const bounds = () => [-Infinity, ...p.slice(1).map((v, i) => (v + p[i]) / 2), Infinity];
  for (let it = 0; it < iterations; it++) {
    const b = bounds();
    p = p.map((_, i) => (phi(b[i]) - phi(b[i + 1])) / (Phi(b[i + 1]) - Phi(b[i])));
  }
  // E[(X − c)²; a < X < b] = (1 + c²)(Φ(b) − Φ(a)) + (a − 2c)φ(a) − (b − 2c)φ(b), with xφ(x) → 0 at ±∞
  const b = bounds();
  let mse = 0;
  for (let i = 0; i < n; i++) {
    const [lo, hi, c] = [b[i], b[i + 1], p[i]];
    const term = (x: number) => (Number.isFinite(x) ? (x - 2 * c) * phi(x) : 0);
    mse += (1 + c * c) * (Phi(hi) - Phi(lo)) + term(lo) - term(hi);
  }
  return { points: p, mse };
}

export interface VqOptions {
  d: number;
  n: number;
  rounds: number;
  samplesPerRound: number;
  seed: number;
  onProgress?: (round: number, mse: number) => void;
}

/** Lloyd on fresh Gaussian samples; returns points [n·d] and the last round's MSE. */
export function lloydVq(o: VqOptions): { points: Float32Array; mse: number } {
  const { d, n } = o;
  const rng = new Rng(o.seed);
  const S = o.samplesPerRound;
  const sample = new Float32Array(S * d);
  // k-means++ seeding on one sample
  rng.fillNormal(sample);
  const pts = new Float32Array(n * d);
  const first = rng.int(S);
  pts.set(sample.subarray(first * d, first * d + d), 0);
  const dist = new Float64Array(S).fill(Infinity);
  for (let j = 1; j < n; j++) {
    let total = 0;
    for (let s = 0; s < S; s++) {
      let e = 0;
      for (let i = 0; i < d; i++) e += (sample[s * d + i] - pts[(j - 1) * d + i]) ** 2;
      if (e < dist[s]) dist[s] = e;
      total += dist[s];
    }
    let r = rng.next() * total;
    let pick = 0;
    for (; pick < S - 1; pick++) if ((r -= dist[pick]) <= 0) break;
    pts.set(sample.subarray(pick * d, pick * d + d), j * d);
  }
  const sums = new Float64Array(n * d);
  const counts = new Float64Array(n);
  let mse = Infinity;
  for (let round = 0; round < o.rounds; round++) {
    rng.fillNormal(sample);
    const grid = new Grid(d, n, pts);
    sums.fill(0);
    counts.fill(0);
    let err = 0;
    for (let s = 0; s < S; s++) {
      const j = grid.searchAll(sample, s * d);
      counts[j]++;
      for (let i = 0; i < d; i++) {
        sums[j * d + i] += sample[s * d + i];
        err += (sample[s * d + i] - pts[j * d + i]) ** 2;
      }
    }
    mse = err / (S * d);
    // full Lloyd steps early, then damped so sampling noise averages out
    const gamma = Math.min(1, 20 / (round + 1));
    for (let j = 0; j < n; j++) {
      if (counts[j] === 0) continue;
      for (let i = 0; i < d; i++) pts[j * d + i] += gamma * (sums[j * d + i] / counts[j] - pts[j * d + i]);
    }
    o.onProgress?.(round, mse);
  }
  return { points: pts, mse };
}
