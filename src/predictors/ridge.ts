/**
 * Ridge least squares with an intercept, accumulated and solved in float64 (AQUA-KV §1.4):
 *   X₁ = [X, 1],  A = X₁ᵀX₁ + λI with λ = damp · mean(diag(X₁ᵀX₁)) (intercept damped too),
 *   [W ; b] = A⁻¹ X₁ᵀY, solved by Cholesky (A is symmetric positive definite once damped).
 * Rows are added in batches, so the data never has to be held at once.
 */
import { LinearPredictor } from '../kv/linear-predictor.js';

export class RidgeAccumulator {
  readonly xtx: Float64Array; // [(in+1), (in+1)]
  readonly xty: Float64Array; // [(in+1), out]
  rows = 0;

  constructor(readonly inDim: number, readonly outDim: number) {
    this.xtx = new Float64Array((inDim + 1) ** 2);
    this.xty = new Float64Array((inDim + 1) * outDim);
  }

  /**
   * Adds n rows: x [n, in], y [n, out]. Four rows per pass over the accumulators (a rank-4
   * update), since the loop is bound by loading and storing the f64 sums.
   */
  add(x: Float32Array, y: Float32Array, n: number): void {
    const I = this.inDim + 1;
    const O = this.outDim;
    const R = 4;
    const rows = new Float64Array(R * I); // [R, I] with the ones column last
    const ys = new Float64Array(R * O);
    const { xtx, xty } = this;
    for (let t0 = 0; t0 < n; t0 += R) {
      const r = Math.min(R, n - t0);
      rows.fill(0);
      ys.fill(0);
      for (let q = 0; q < r; q++) {
        for (let i = 0; i < this.inDim; i++) rows[q * I + i] = x[(t0 + q) * this.inDim + i];
        rows[q * I + I - 1] = 1;
        for (let j = 0; j < O; j++) ys[q * O + j] = y[(t0 + q) * O + j];
      }
      // padding rows are all zero, so they add nothing
      for (let i = 0; i < I; i++) {
        const a0 = rows[i], a1 = rows[I + i], a2 = rows[2 * I + i], a3 = rows[3 * I + i];
        const o = i * I;
        for (let j = i; j < I; j++) xtx[o + j] += a0 * rows[j] + a1 * rows[I + j] + a2 * rows[2 * I + j] + a3 * rows[3 * I + j];
        const oy = i * O;
        for (let j = 0; j < O; j++) xty[oy + j] += a0 * ys[j] + a1 * ys[O + j] + a2 * ys[2 * O + j] + a3 * ys[3 * O + j];
      }
    }
    this.rows += n;
  }

  /** Solves for the predictor with damping fraction `damp`. */
  solve(damp: number): LinearPredictor {
    const I = this.inDim + 1;
    const O = this.outDim;
    const a = new Float64Array(I * I);
    let diag = 0;
    for (let i = 0; i < I; i++) diag += Math.abs(this.xtx[i * I + i]);
    const lambda = (damp * diag) / I;
    for (let i = 0; i < I; i++) {
      for (let j = i; j < I; j++) a[i * I + j] = a[j * I + i] = this.xtx[i * I + j];
      a[i * I + i] += lambda;
    }
    const sol = choleskySolve(a, this.xty.slice(), I, O); // [(in+1), out]
    const weight = new Float32Array(O * this.inDim); // [out, in]
    const bias = new Float32Array(O);
    for (let j = 0; j < O; j++) {
      for (let i = 0; i < this.inDim; i++) weight[j * this.inDim + i] = sol[i * O + j];
      bias[j] = sol[(I - 1) * O + j];
    }
    return new LinearPredictor(weight, bias, this.inDim, O);
  }
}

/** Solves A·X = B in place for SPD A [n, n] and B [n, m]; returns X (in B's storage). */
export function choleskySolve(a: Float64Array, b: Float64Array, n: number, m: number): Float64Array {
  // A = L·Lᵀ, L stored in the lower triangle of a
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j];
    for (let k = 0; k < j; k++) d -= a[j * n + k] ** 2;
    if (!(d > 0)) throw new Error(`choleskySolve: matrix is not positive definite at pivot ${j} (${d})`);
    const l = Math.sqrt(d);
    a[j * n + j] = l;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = s / l;
    }
  }
  // forward: L·Z = B
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < i; k++) {
      const l = a[i * n + k];
      if (l !== 0) for (let c = 0; c < m; c++) b[i * m + c] -= l * b[k * m + c];
    }
    const d = a[i * n + i];
    for (let c = 0; c < m; c++) b[i * m + c] /= d;
  }
  // backward: Lᵀ·X = Z
  for (let i = n - 1; i >= 0; i--) {
    for (let k = i + 1; k < n; k++) {
      const l = a[k * n + i];
      if (l !== 0) for (let c = 0; c < m; c++) b[i * m + c] -= l * b[k * m + c];
    }
    const d = a[i * n + i];
    for (let c = 0; c < m; c++) b[i * m + c] /= d;
  }
  return b;
}
