/**
 * Matrix products, the operation that dominates prefill, calibration and training.
 *
 *   out[M, N] = op(A) · op(B)       op(A) = Aᵀ when transA (A stored [K, M]), else A ([M, K])
 *                                   op(B) = Bᵀ when transB (B stored [N, K]), else B ([K, N])
 *
 * A linear layer with HF weights W [out, in] is gemm(y, x, W, tokens, in, out, false, true).
 *
 * Three implementations share this signature:
 *  - `gemmNaive`: the triple loop, kept as the oracle for tests;
 *  - `gemmTs`: portable TypeScript (cache-friendly loop order, 4-way unrolled), for places
 *    where no native module loads (a browser);
 *  - the onnxruntime-node backend (MLAS, multithreaded) in ./gemm-ort.ts, ~100× faster here.
 * `gemm` dispatches to the active backend; `setGemmBackend` switches it (tests compare both).
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { singleNodeModel } from './onnx-model.js';

export type GemmFn = (
  out: Float32Array, a: Float32Array, b: Float32Array,
  m: number, k: number, n: number, transA: boolean, transB: boolean,
) => void;

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

/** Portable TypeScript product: row·row dot products when B is [N, K], row axpys otherwise. */
export const gemmTs: GemmFn = (out, a, b, m, k, n, transA, transB) => {
  checkSizes('gemmTs', out, a, b, m, k, n);
  let A = a;
  if (transA) {
    // [K, M] → [M, K] once, so both inner loops below read A rows contiguously
    if (transposeScratch.length < m * k) transposeScratch = new Float32Array(m * k);
    A = transposeScratch;
    for (let p = 0; p < k; p++) for (let i = 0; i < m; i++) A[i * k + p] = a[p * m + i];
  }
  if (transB) {
    for (let i = 0; i < m; i++) {
      const ai = i * k;
      for (let j = 0; j < n; j++) {
        const bj = j * k;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        let p = 0;
        for (; p + 3 < k; p += 4) {
          s0 += A[ai + p] * b[bj + p];
          s1 += A[ai + p + 1] * b[bj + p + 1];
          s2 += A[ai + p + 2] * b[bj + p + 2];
          s3 += A[ai + p + 3] * b[bj + p + 3];
        }
        for (; p < k; p++) s0 += A[ai + p] * b[bj + p];
        out[i * n + j] = s0 + s1 + s2 + s3;
      }
    }
    return;
  }
  for (let i = 0; i < m; i++) {
    const oi = i * n;
    out.fill(0, oi, oi + n);
    for (let p = 0; p < k; p++) {
      const av = A[i * k + p];
      if (av === 0) continue;
      const bp = p * n;
      for (let j = 0; j < n; j++) out[oi + j] += av * b[bp + j];
    }
  }
};

// ---------------------------------------------------------------------------------------------
// onnxruntime-node backend. The native binding's `run` is synchronous (the public API only wraps
// it in a Promise), and it writes into a pre-allocated output tensor, so a product costs one
// native call (~13 µs overhead measured here) and no copy of the result.

interface OrtTensorCtor { new (type: 'float32', data: Float32Array, dims: number[]): unknown }
interface OrtSession {
  loadModel(buffer: ArrayBuffer, byteOffset: number, byteLength: number, options: object): void;
  run(feeds: object, fetches: object, options: object): unknown;
}

function loadOrtGemm(): GemmFn | null {
  try {
    const require = createRequire(import.meta.url);
    const { binding, initOrt } = require('onnxruntime-node/dist/binding.js') as {
      binding: { InferenceSession: new () => OrtSession };
      initOrt: () => void;
    };
    const { Tensor } = require('onnxruntime-common') as { Tensor: OrtTensorCtor };
    initOrt();
    const threads = Number(process.env.AQUAKV_THREADS ?? availableParallelism());
    const sessions = new Map<number, OrtSession>();
    const session = (transA: boolean, transB: boolean): OrtSession => {
      const key = (transA ? 2 : 0) + (transB ? 1 : 0);
      let s = sessions.get(key);
      if (!s) {
        const model = singleNodeModel({
          opType: 'Gemm',
          inputs: [
            { name: 'A', dims: transA ? ['K', 'M'] : ['M', 'K'] },
            { name: 'B', dims: transB ? ['N', 'K'] : ['K', 'N'] },
          ],
          output: { name: 'Y', dims: ['M', 'N'] },
          intAttributes: { transA: transA ? 1 : 0, transB: transB ? 1 : 0 },
        });
        s = new binding.InferenceSession();
        s.loadModel(model.buffer as ArrayBuffer, model.byteOffset, model.byteLength, {
          intraOpNumThreads: threads,
          interOpNumThreads: 1,
          executionMode: 'sequential',
          graphOptimizationLevel: 'all',
        });
        sessions.set(key, s);
      }
      return s;
    };
    const gemmOrt: GemmFn = (out, a, b, m, k, n, transA, transB) => {
      checkSizes('gemmOrt', out, a, b, m, k, n);
      if (m === 0 || n === 0) return;
      if (k === 0) {
        out.fill(0, 0, m * n);
        return;
      }
      const A = new Tensor('float32', a.subarray(0, m * k), transA ? [k, m] : [m, k]);
      const B = new Tensor('float32', b.subarray(0, k * n), transB ? [n, k] : [k, n]);
      const Y = new Tensor('float32', out.subarray(0, m * n), [m, n]);
      session(transA, transB).run({ A, B }, { Y }, {});
    };
    // A probe: the output must land in our buffer, else this binding copies and we fall back.
    const probe = new Float32Array(1);
    gemmOrt(probe, Float32Array.of(2), Float32Array.of(3), 1, 1, 1, false, true);
    return probe[0] === 6 ? gemmOrt : null;
  } catch {
    return null;
  }
}

export type GemmBackendName = 'ort' | 'ts';
const ortGemm = process.env.AQUAKV_GEMM === 'ts' ? null : loadOrtGemm();
let active: GemmFn = ortGemm ?? gemmTs;
let activeName: GemmBackendName = ortGemm ? 'ort' : 'ts';

/** The backend in use: 'ort' (onnxruntime-node MLAS) when it loads, else 'ts'. */
export function gemmBackend(): GemmBackendName {
  return activeName;
}

/** True when the native backend loaded. */
export function ortAvailable(): boolean {
  return ortGemm !== null;
}

export function setGemmBackend(name: GemmBackendName): void {
  if (name === 'ort') {
    if (!ortGemm) throw new Error('setGemmBackend: onnxruntime-node did not load on this machine');
    active = ortGemm;
  } else {
    active = gemmTs;
  }
  activeName = name;
}

/** The native product itself (null where it did not load); benchmarks time it directly. */
export function ortGemmFn(): GemmFn | null {
  return ortGemm;
}

/**
 * Below this many multiply-adds (m·k·n) the TypeScript loop beats a native call's ~10 µs overhead
 * (measured here: at 2·64·16 TS 5 µs vs ORT 16 µs; even at 2·64·64; ORT 4× faster at 2·64·256),
 * so tiny products (decode-time attention over few tokens) stay in TS.
 */
export const SMALL_PRODUCT = 8192;

export const gemm: GemmFn = (out, a, b, m, k, n, transA, transB) =>
  (m * k * n < SMALL_PRODUCT ? gemmTs : active)(out, a, b, m, k, n, transA, transB);
