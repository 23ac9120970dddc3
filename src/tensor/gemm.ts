/**
 * Matrix products, the operation that dominates prefill, calibration and training.
 *
 *   out[M, N] = op(A) · op(B)       op(A) = Aᵀ when transA (A stored [K, M]), else A ([M, K])
 *                                   op(B) = Bᵀ when transB (B stored [N, K]), else B ([K, N])
 *
 * A linear layer with HF weights W [out, in] is gemm(y, x, W, tokens, in, out, false, true).
 *
 * Implementations sharing this signature:
 *  - `gemmNaive`: the triple loop, kept as the oracle for tests;
 *  - `gemmTs`: portable TypeScript (cache-friendly loop order, 4-way unrolled);
 *  - `gemmWasm`: the portable backend ('ts') where no native module loads (a browser): B as [N, K]
 *    in the WebAssembly SIMD kernel, other layouts and tiny products in `gemmTs`;
 *  - the platform's native product (onnxruntime-node's MLAS, platform/ort-gemm.ts), ~100× faster here.
 * `gemm` dispatches to the active backend; `setGemmBackend` switches it (tests compare both).
 */
import { platform, type GemmFn } from '../platform/index.js';
import { WasmArena } from './wasm-arena.js';

export type { GemmFn };

function checkSizes(name: string, out: Float32Array, a: Float32Array, b: Float32Array, m: number, k: number, n: number): void {
  if (a.length < m * k || b.length < k * n || out.length < m * n) {
    throw new RangeError(
      `${name}: buffers too small for [${m}, ${k}]·[${k}, ${n}]: a=${a.length}, b=${b.length}, out=${out.length}`,
    );
  }
}

export const gemmNaive: GemmFn = (out, a, b, m, k, n, transA, transB) => {
  checkSizes('gemmNaive', out, a, b, m, k, n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) {
        const av = transA ? a[p * m + i] : a[i * k + p];
        const bv = transB ? b[j * k + p] : b[p * n + j];
        s += av * bv;
      }
      out[i * n + j] = s;
    }
  }
};

let transposeScratch = new Float32Array(0);
let rowScratch = new Float64Array(0);

/**
 * Portable TypeScript product. Sums run in f64 (JS numbers) in order p = 0..K−1 for every output,
 * so a row's result does not depend on how many rows are computed together.
 *  - B as [N, K] (linear layers): 2 rows × 4 columns of dot products per pass, each A and B value
 *    loaded once per pass (~3× the plain dot-product loop here);
 *  - B as [K, N]: row axpys into an f64 accumulator row.
 */
export const gemmTs: GemmFn = (out, a, b, m, k, n, transA, transB) => {
  checkSizes('gemmTs', out, a, b, m, k, n);
  let A = a;
  if (transA) {
    // [K, M] → [M, K] once, so the loops below read A rows contiguously
    if (transposeScratch.length < m * k) transposeScratch = new Float32Array(m * k);
    A = transposeScratch;
    for (let p = 0; p < k; p++) for (let i = 0; i < m; i++) A[i * k + p] = a[p * m + i];
  }
  if (transB) {
    let i = 0;
    for (; i + 1 < m; i += 2) {
      const a0 = i * k;
      const a1 = a0 + k;
      let j = 0;
      for (; j + 3 < n; j += 4) {
        const b0 = j * k, b1 = b0 + k, b2 = b1 + k, b3 = b2 + k;
        let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
        for (let p = 0; p < k; p++) {
          const x0 = A[a0 + p], x1 = A[a1 + p];
          const y0 = b[b0 + p], y1 = b[b1 + p], y2 = b[b2 + p], y3 = b[b3 + p];
          s00 += x0 * y0; s01 += x0 * y1; s02 += x0 * y2; s03 += x0 * y3;
          s10 += x1 * y0; s11 += x1 * y1; s12 += x1 * y2; s13 += x1 * y3;
        }
        const o0 = i * n + j, o1 = o0 + n;
        out[o0] = s00; out[o0 + 1] = s01; out[o0 + 2] = s02; out[o0 + 3] = s03;
        out[o1] = s10; out[o1 + 1] = s11; out[o1 + 2] = s12; out[o1 + 3] = s13;
      }
      for (; j < n; j++) {
        const bj = j * k;
        let s0 = 0, s1 = 0;
        for (let p = 0; p < k; p++) {
          s0 += A[a0 + p] * b[bj + p];
          s1 += A[a1 + p] * b[bj + p];
        }
        out[i * n + j] = s0;
        out[(i + 1) * n + j] = s1;
      }
    }
    for (; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += A[i * k + p] * b[j * k + p];
        out[i * n + j] = s;
      }
    }
    return;
  }
  if (rowScratch.length < n) rowScratch = new Float64Array(n);
  const acc = rowScratch;
  for (let i = 0; i < m; i++) {
    acc.fill(0, 0, n);
    for (let p = 0; p < k; p++) {
      const av = A[i * k + p];
      if (av === 0) continue;
      const bp = p * n;
      for (let j = 0; j < n; j++) acc[j] += av * b[bp + j];
    }
    for (let j = 0; j < n; j++) out[i * n + j] = acc[j];
  }
};

// ---------------------------------------------------------------------------------------------
// The portable product with B as [N, K] (linear layers, predictors, attention scores) runs in the
// WebAssembly SIMD dot kernel (kernels.wat), ~5–10× the TypeScript loop: operands are copied into
// a private arena, A in batches of rows. Each output is one fixed-order sum, so rows stay
// independent of each other, as in gemmTs.

let scratch: WasmArena | null = null;
/** Bytes of operands per kernel call: A rows, B rows and outputs, in batches of each. */
const WASM_BATCH_BYTES = 4 << 20;

/**
 * The choice depends on the layout and k alone, never on m or n, so a row's result does not depend
 * on how many rows or columns are computed with it (attention's key count grows every step).
 */
export const gemmWasm: GemmFn = (out, a, b, m, k, n, transA, transB) => {
  if (!transA && !transB && n % 4 === 0) {
    rowsWasm(out, a, b, m, k, n);
    return;
  }
  if (transA || !transB || k % 8 !== 0) {
    gemmTs(out, a, b, m, k, n, transA, transB);
    return;
  }
  checkSizes('gemmWasm', out, a, b, m, k, n);
  const cols = Math.max(1, Math.min(n, Math.floor(WASM_BATCH_BYTES / 2 / (k * 4))));
  const rows = Math.max(1, Math.min(m, Math.floor(WASM_BATCH_BYTES / 2 / ((k + cols) * 4))));
  scratch ??= new WasmArena(0, false);
  const base = scratch.wideScratch((cols * k + rows * k + rows * cols) * 4);
  const at = { b: base, a: base + cols * k * 4, y: base + (cols + rows) * k * 4 };
  for (let j0 = 0; j0 < n; j0 += cols) {
    const nb = Math.min(cols, n - j0);
    scratch.f32(at.b, nb * k).set(b.subarray(j0 * k, (j0 + nb) * k));
    for (let i0 = 0; i0 < m; i0 += rows) {
      const mb = Math.min(rows, m - i0);
      scratch.f32(at.a, mb * k).set(a.subarray(i0 * k, (i0 + mb) * k));
      scratch.kernels.dot_f32(at.b, at.a, at.y, mb, k, nb, nb);
      const y = scratch.f32(at.y, mb * nb);
      if (nb === n) out.set(y, i0 * n);
      else for (let i = 0; i < mb; i++) out.set(y.subarray(i * nb, (i + 1) * nb), (i0 + i) * n + j0);
    }
  }
};

/** B as [K, N] (attention's values), whole in scratch whatever its size (so the choice never depends on k); A in batches of rows. */
function rowsWasm(out: Float32Array, a: Float32Array, b: Float32Array, m: number, k: number, n: number): void {
  checkSizes('gemmWasm', out, a, b, m, k, n);
  const rows = Math.max(1, Math.min(m, Math.floor(WASM_BATCH_BYTES / 2 / ((k + n) * 4))));
  scratch ??= new WasmArena(0, false);
  const base = scratch.wideScratch((k * n + rows * (k + n)) * 4);
  const at = { b: base, a: base + k * n * 4, y: base + (k * n + rows * k) * 4 };
  scratch.f32(at.b, k * n).set(b.subarray(0, k * n));
  for (let i0 = 0; i0 < m; i0 += rows) {
    const mb = Math.min(rows, m - i0);
    scratch.f32(at.a, mb * k).set(a.subarray(i0 * k, (i0 + mb) * k));
    scratch.kernels.rows_f32(at.b, at.a, at.y, mb, k, n);
    out.set(scratch.f32(at.y, mb * n), i0 * n);
  }
}

// ---------------------------------------------------------------------------------------------
// The backend: the platform's native product when it has one (onnxruntime-node under Node),
// looked up on the first product, not at import; else the portable loop, named once on stderr.

export type GemmBackendName = 'ort' | 'ts';
let fast: GemmFn | null | undefined; // undefined: not looked up yet
let fastRowsOnEveryCore: (k: number, n: number) => number = () => Infinity;
let active: GemmFn | null = null;
let activeName: GemmBackendName = 'ts';

function nativeProduct(): GemmFn | null {
  if (fast === undefined) {
    const f = platform.fastGemm();
    fast = f.fn;
    if (f.fn && f.rowsOnEveryCore) fastRowsOnEveryCore = f.rowsOnEveryCore;
    if (!f.fn && !f.quiet) {
      platform.warn(`${f.reason}; matrix products run in portable TypeScript, ~100× slower (npm install onnxruntime-node for the native one; offline, add --onnxruntime-node-install=skip)`);
    }
  }
  return fast;
}

function activeProduct(): GemmFn {
  if (!active) {
    const f = nativeProduct();
    active = f ?? gemmWasm;
    activeName = f ? 'ort' : 'ts';
  }
  return active;
}

/** The backend in use: 'ort' (onnxruntime-node MLAS) when it loads, else 'ts'. */
export function gemmBackend(): GemmBackendName {
  activeProduct();
  return activeName;
}

/**
 * The fewest rows from which `gemmRowwise` runs [m, k]·[k, n] on every core: Infinity where it
 * never does (the portable product, or one thread).
 */
export function rowwiseOnEveryCoreFrom(k: number, n: number): number {
  return gemmBackend() === 'ort' ? fastRowsOnEveryCore(k, n) : Infinity;
}

/** True when the native backend loaded. */
export function ortAvailable(): boolean {
  return nativeProduct() !== null;
}

export function setGemmBackend(name: GemmBackendName): void {
  if (name === 'ort') {
    const f = nativeProduct();
    if (!f) throw new Error('setGemmBackend: the native matrix product did not load on this machine');
    active = f;
  } else {
    active = gemmWasm;
  }
  activeName = name;
}

/** The native product itself (null where it did not load); benchmarks time it directly. */
export function ortGemmFn(): GemmFn | null {
  return nativeProduct();
}

/**
 * Below this many multiply-adds per output row (k·n) the TypeScript loop beats a native call's
 * ~10 µs overhead (measured here: at 2·64·16 TS 5 µs vs ORT 16 µs; even at 2·64·64; ORT 4× faster
 * at 2·64·256), so tiny products (decode-time attention over few tokens) stay in TS.
 */
export const SMALL_PRODUCT = 8192;

/**
 * Time spent in `gemm`, for benchmarks: off by default, two clock reads per call when on; `spans`,
 * when given, receives each call's [start, end] (performance.now()).
 */
export const gemmProfile: { enabled: boolean; calls: number; seconds: number; flops: number; spans: [number, number][] | null } = {
  enabled: false, calls: 0, seconds: 0, flops: 0, spans: null,
};

/**
 * The product every layer uses. The backend is chosen by the size of an output row (k·n), never
 * by m, so rows computed together do not change each other's rounding (MLAS is row-independent
 * for m ≥ 2); a single row (decode) goes to MLAS's matrix-vector path, which rounds differently
 * but reads the weights once instead of packing them (1.8× faster here for a decode-sized
 * product). `gemmRowwise` pads that row where bit-identity matters more than speed.
 */
export const gemm: GemmFn = (out, a, b, m, k, n, transA, transB, rowwise = false) => {
  const chosen = active ?? activeProduct();
  const fn = k * n < SMALL_PRODUCT && activeName === 'ort' ? gemmTs : chosen;
  if (!gemmProfile.enabled) return fn(out, a, b, m, k, n, transA, transB, rowwise);
  const t0 = performance.now();
  fn(out, a, b, m, k, n, transA, transB, rowwise);
  const t1 = performance.now();
  gemmProfile.seconds += (t1 - t0) / 1000;
  gemmProfile.spans?.push([t0, t1]);
  gemmProfile.calls++;
  gemmProfile.flops += 2 * m * k * n;
};

let padA = new Float32Array(0);
let padOut = new Float32Array(0);

/**
 * out [m, n] = a [m, k] · op(B), where each output row depends only on its own input row, also for
 * m = 1 (padded to two rows for the native product). AQUA-KV's predictors and the inverse
 * Hadamard use it, so a chunk rebuilt alone, or with every other chunk in one product, gives the
 * same bits.
 * On the native product it is split across threads only where that keeps every row's sums
 * (platform/ort-gemm.ts `splitKeepsRows`).
 */
export function gemmRowwise(out: Float32Array, a: Float32Array, b: Float32Array, m: number, k: number, n: number, transB: boolean): void {
  const native = gemmBackend() === 'ort' && k * n >= SMALL_PRODUCT;
  if (m !== 1 || !native) {
    gemm(out, a, b, m, k, n, false, transB, true);
    return;
  }
  if (padA.length < 2 * k) padA = new Float32Array(2 * k);
  if (padOut.length < 2 * n) padOut = new Float32Array(2 * n);
  padA.set(a.subarray(0, k));
  padA.set(a.subarray(0, k), k);
  gemm(padOut, padA, b, 2, k, n, false, transB, true);
  out.set(padOut.subarray(0, n));
}
