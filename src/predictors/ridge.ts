/**
 * Ridge least squares with an intercept, accumulated and solved in float64 (AQUA-KV §1.4):
 *   X₁ = [X, 1],  A = X₁ᵀX₁ + λI with λ = damp · mean(diag(X₁ᵀX₁)) (intercept damped too),
 *   [W ; b] = A⁻¹ X₁ᵀY, solved by Cholesky (A is symmetric positive definite once damped).
 * Rows are added in batches, so the data never has to be held at once.
 */
import { LinearPredictor } from './linear.js';

export class RidgeAccumulator {
  readonly xtx: Float64Array; // [(in+1), (in+1)]
  readonly xty: Float64Array; // [(in+1), out]
  rows = 0;

  constructor(readonly inDim: number, readonly outDim: number) {
    this.xtx = new Float64Array((inDim + 1) ** 2);
    this.xty = new Float64Array((inDim + 1) * outDim);
  }

  /** Adds n rows: x [n, in], y [n, out]. */
  add(x: Float32Array, y: Float32Array, n: number): void {
    const I = this.inDim + 1;
    const O = this.outDim;
    const row = new Float64Array(I);
    const { xtx, xty } = this;
    for (let t = 0; t < n; t++) {
      for (let i = 0; i < this.inDim; i++) row[i] = x[t * this.inDim + i];
      row[I - 1] = 1;
      // upper triangle only; mirrored at solve time
      for (let i = 0; i < I; i++) {
        const ri = row[i];
        if (ri === 0) continue;
        const o = i * I;
        for (let j = i; j < I; j++) xtx[o + j] += ri * row[j];
        const oy = i * O;
        const yo = t * O;
        for (let j = 0; j < O; j++) xty[oy + j] += ri * y[yo + j];
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
