/**
 * Ridge least squares with an intercept, accumulated and solved in float64 (AQUA-KV §1.4):
 *   X₁ = [X, 1],  A = X₁ᵀX₁ + λI with λ = damp · mean(diag(X₁ᵀX₁)) (intercept damped too),
 *   [W ; b] = A⁻¹ X₁ᵀY, solved by Cholesky (A is symmetric positive definite once damped).
 * Rows are added in batches, so the data never has to be held at once.
 */
import { LinearPredictor } from '../kv/linear-predictor.js';
import { gemm } from '../tensor/gemm.js';

/** Rows per product in `add`. */
const BATCH = 512;

export class RidgeAccumulator {
  readonly xtx: Float64Array; // [(in+1), (in+1)]
  readonly xty: Float64Array; // [(in+1), out]
  rows = 0;
  private x1 = new Float32Array(0); // [BATCH, in+1]: a batch of rows with the ones column
  private gram = new Float32Array(0); // [(in+1), (in+1)]
  private cross = new Float32Array(0); // [(in+1), out]

  constructor(readonly inDim: number, readonly outDim: number) {
    this.xtx = new Float64Array((inDim + 1) ** 2);
    this.xty = new Float64Array((inDim + 1) * outDim);
  }

  /**
   * Adds n rows: x [n, in], y [n, out]. Each batch of rows is two matrix products (X₁ᵀX₁ and
   * X₁ᵀY, f32 at the matrix-product rate) added into the f64 sums: ~30× the f64 loops at 2C = 1024
   * inputs. Batches are short (BATCH rows), so an f32 sum adds at most BATCH terms before it
   * joins the f64 total.
   */
  add(x: Float32Array, y: Float32Array, n: number): void {
    const I = this.inDim + 1;
    const O = this.outDim;
    const { xtx, xty } = this;
    const rows = Math.min(n, BATCH);
    if (this.x1.length < rows * I) this.x1 = new Float32Array(rows * I);
    if (this.gram.length < I * I) this.gram = new Float32Array(I * I);
    if (this.cross.length < I * O) this.cross = new Float32Array(I * O);
    const { x1, gram, cross } = this;
    for (let t0 = 0; t0 < n; t0 += BATCH) {
      const b = Math.min(BATCH, n - t0);
      for (let q = 0; q < b; q++) {
        x1.set(x.subarray((t0 + q) * this.inDim, (t0 + q + 1) * this.inDim), q * I);
        x1[q * I + I - 1] = 1;
      }
      gemm(gram, x1, x1, I, b, I, true, false);
      gemm(cross, x1, y.subarray(t0 * O, (t0 + b) * O), I, b, O, true, false);
      for (let i = 0; i < I * I; i++) xtx[i] += gram[i];
      for (let i = 0; i < I * O; i++) xty[i] += cross[i];
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
