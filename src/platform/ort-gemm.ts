/**
 * The native matrix product: onnxruntime-node's MLAS (multithreaded, ~100× the portable loop
 * here). Its public `InferenceSession.run` returns a Promise; the binding underneath is
 * synchronous and writes into a pre-allocated output tensor, so a product costs one native call
 * (~13 µs overhead measured here). The binding (1.30) also returns a copy of the output in a new
 * ArrayBuffer, which is dropped: garbage outside the heap, the size of the output (a change that
 * would stop the copy, onnxruntime pull request #32346, is not released). See `YoungCollection`
 * for what that garbage costs and how it is kept cheap. That binding is not part of
 * onnxruntime-node's public API, hence the version pin in package.json and the probe below:
 * any change that breaks it makes this loader report why, and the caller falls back to
 * TypeScript with one line saying so.
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { singleNodeModel } from './onnx-model.js';
import type { FastGemm, GemmFn } from './platform.js';

interface OrtTensorCtor { new (type: 'float32', data: Float32Array, dims: number[]): unknown }
interface OrtSession {
  loadModel(buffer: ArrayBuffer, byteOffset: number, byteLength: number, options: object): void;
  run(feeds: object, fetches: object, options: object): unknown;
}

/**
 * Products below this many multiply-adds (m·k·n) run on one thread. Handing a small product to a
 * second thread costs more than it saves (decode-sized products are ≤ 1 M multiply-adds and take
 * 10–100 µs); measured crossover on this 2-core machine: see `npm run bench -- --only threads`.
 */
export const PARALLEL_MIN_MACS = 4_000_000;

/**
 * Whether MLAS may split a product across `threads` threads and still give each row the sums it
 * gives alone. MLAS splits the rows when m ≥ n, which changes no row; otherwise the columns, in
 * panels of 16-column multiples, and a panel of 64 columns or fewer makes it sum K in blocks of
 * 256 rather than 128 (its StrideK doubles as StrideN halves), which rounds differently once
 * K > 128. Measured here: [124, 256]·[256, 128] on two threads (panels of 64) differed from one
 * thread in 44% of its outputs; every m ≥ 128, and k = 128, agreed (tests/fused-rebuild.test.ts).
 */
export function splitKeepsRows(m: number, k: number, n: number, threads: number): boolean {
  const narrowest = Math.floor(Math.ceil(n / 16) / threads) * 16;
  return m >= n || k <= 128 || narrowest > 64;
}

/**
 * Collects the binding's output copies while they are young. V8 counts the bytes of ArrayBuffers
 * made since its last full collection against the old generation's limit, and a heap as small as
 * ours (~8 MB) leaves ~23 MB under that limit; a compact cache's step at 4 096 tokens makes ~25 MB
 * of copies (48 products of [1 024, 128]), so V8 ran a full collection (4–5 ms here, most of it
 * marking and freeing) about once a step. The copies die at once, and a young-generation
 * collection frees them for ~0.3 ms, but one runs only when the young generation fills, which
 * these few small objects never do. So after every `limit` bytes of copies this asks for one.
 * Measured (`/tmp/mingc2.mjs`, compact decode at 4 096 tokens, 40 steps): collection 5.2–6.4 ms
 * a step without, no full collection with, ~0.5–1.8 ms of young ones; the step 37–39 → 30–32 ms.
 * The collector is V8's `gc` function: the host's where node runs with --expose-gc, else taken
 * from a fresh context with the flag on for that moment only (it adds nothing to the host's own
 * global scope); where neither works, nothing is asked and V8 collects as it would.
 */
export class YoungCollection {
  private bytes = 0;
  constructor(private readonly collect: (() => void) | null, readonly limit = 16 << 20) {}

  /**
   * V8's young-generation collection, or null where it cannot be had. It runs on this thread
   * alone: V8's parallel scavenge hands its work to tasks on its platform threads, which here wait
   * for cores the native product's threads are spinning on, and the few live objects of these
   * collections need no help (compact decode at 4 096 tokens, 40 steps, two runs each: 0.92–1.37 ms
   * of young collections a step in parallel, 0.51–0.68 on this thread). Parallel scavenge is off
   * for the moment of the collection only, and left off where the host turned it off.
   */
  static collector(): (() => void) | null {
    type Gc = (options: { type: 'minor' }) => void;
    let gc: unknown;
    try {
      gc = (globalThis as { gc?: Gc }).gc;
      if (typeof gc !== 'function') {
        setFlagsFromString('--expose-gc');
        try {
          gc = runInNewContext('gc');
        } finally {
          setFlagsFromString('--no-expose-gc');
        }
      }
    } catch {
      return null;
    }
    if (typeof gc !== 'function') return null;
    const minor = gc as Gc;
    const hostFlags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
    const restore = hostFlags.some((f) => f === '--no-parallel-scavenge' || f === '--single-threaded-gc') ? null : '--parallel-scavenge';
    return () => {
      setFlagsFromString('--no-parallel-scavenge');
      try {
        minor({ type: 'minor' });
      } finally {
        if (restore) setFlagsFromString(restore);
      }
    };
  }

  /** The binding made a copy of `bytes`. */
  copied(bytes: number): void {
    this.bytes += bytes;
    if (this.bytes < this.limit || !this.collect) return;
    this.bytes = 0;
    this.collect();
  }
}

/**
 * MLAS products: `threads` threads for products of at least `parallelMin` multiply-adds, one below.
 * `beforeParallel` runs before each product split across threads (the kernel helpers stop
 * watching for work then, platform/kernel-pool.ts: their cores are wanted).
 */
export function loadOrtGemm(threads = availableParallelism(), parallelMin = PARALLEL_MIN_MACS, beforeParallel: () => void = () => {}): FastGemm {
  const require = createRequire(import.meta.url);
  let binding: { InferenceSession: new () => OrtSession };
  let Tensor: OrtTensorCtor;
  try {
    const ort = require('onnxruntime-node') as { Tensor: OrtTensorCtor };
    Tensor = ort.Tensor;
    const b = require('onnxruntime-node/dist/binding.js') as { binding: typeof binding; initOrt: () => void };
    b.initOrt();
    binding = b.binding;
  } catch (e) {
    const code = (e as { code?: string }).code;
    return { fn: null, reason: code === 'MODULE_NOT_FOUND' ? 'onnxruntime-node is not installed' : `onnxruntime-node did not load (${(e as Error).message.split('\n')[0]})` };
  }
  const sessions = new Map<number, OrtSession>();
  const young = new YoungCollection(YoungCollection.collector());
  const session = (transA: boolean, transB: boolean, nThreads: number): OrtSession => {
    const key = nThreads * 4 + (transA ? 2 : 0) + (transB ? 1 : 0);
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
        intraOpNumThreads: nThreads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
      });
      sessions.set(key, s);
    }
    return s;
  };
  const gemmOrt: GemmFn = (out, a, b, m, k, n, transA, transB, rowwise = false) => {
    if (a.length < m * k || b.length < k * n || out.length < m * n) {
      throw new RangeError(`gemmOrt: buffers too small for [${m}, ${k}]·[${k}, ${n}]: a=${a.length}, b=${b.length}, out=${out.length}`);
    }
    if (m === 0 || n === 0) return;
    if (k === 0) {
      out.fill(0, 0, m * n);
      return;
    }
    const A = new Tensor('float32', a.subarray(0, m * k), transA ? [k, m] : [m, k]);
    const B = new Tensor('float32', b.subarray(0, k * n), transB ? [n, k] : [k, n]);
    const Y = new Tensor('float32', out.subarray(0, m * n), [m, n]);
    const parallel = threads > 1 && m * k * n >= parallelMin && (!rowwise || splitKeepsRows(m, k, n, threads));
    if (parallel) beforeParallel();
    session(transA, transB, parallel ? threads : 1).run({ A, B }, { Y }, {});
    young.copied(4 * m * n);
  };
  // The output must land in our buffer; a binding that copies instead would leave it untouched.
  try {
    const probe = new Float32Array(1);
    gemmOrt(probe, Float32Array.of(2), Float32Array.of(3), 1, 1, 1, false, true);
    if (probe[0] !== 6) return { fn: null, reason: 'onnxruntime-node\'s binding no longer writes into caller buffers' };
  } catch (e) {
    return { fn: null, reason: `onnxruntime-node failed a probe product (${(e as Error).message.split('\n')[0]})` };
  }
  const rowsOnEveryCore = (k: number, n: number): number => {
    if (threads <= 1) return Infinity;
    const enough = Math.ceil(parallelMin / (k * n)); // the thread policy's threshold
    return Math.max(enough, splitKeepsRows(1, k, n, threads) ? 1 : n); // else rows must split: m ≥ n
  };
  return { fn: gemmOrt, name: 'ort', rowsOnEveryCore };
}
