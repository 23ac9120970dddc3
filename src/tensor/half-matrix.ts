/**
 * Weight matrices kept in 16 bits (bf16 or f16, as checkpoints store them), and their products.
 *
 * A checkpoint's weights widened to f32 would take twice its bytes in memory and twice the
 * memory traffic per decoded token. A HalfMatrix keeps the stored bits in WebAssembly memory
 * (./wasm-arena.ts) and multiplies them there:
 *  - one row at a time (decode), or every row when no native product is present: the SIMD dot
 *    kernel, which widens 8 weights per step in registers and streams the matrix once;
 *  - several rows with the native product present (prefill, calibration): blocks of the matrix
 *    are widened to f32 by the SIMD widen kernel, then multiplied by the native product, whose
 *    matrix-matrix speed the kernel does not reach. The blocks are the same whatever the number
 *    of rows, so (as for f32 weights) rows multiplied together do not change each other's
 *    rounding.
 * Layout [rows, cols] = HF's [out, in]: `product` computes x · Wᵀ, like gemm(…, transB).
 */
import { ArenaSet, X_SCRATCH_BYTES, Y_SCRATCH_BYTES, type KernelExports, type WasmArena } from './wasm-arena.js';
import { gemm, gemmBackend } from './gemm.js';
import { halfBitsToF32 } from './f16.js';

export type HalfDtype = 'bf16' | 'f16';

/**
 * Matrices of at least this many weights split a one-row product across the kernel helper
 * threads, when they are hot (platform/kernel-pool.ts). The embedded model's decode step at 512
 * tokens, measured here: 1.16–1.18 ms split from 1 Mi weights (none of its matrices is that
 * large), 0.82 ms from 64 Ki, 0.85–0.90 ms from 32 Ki and 16 Ki.
 */
export const PARALLEL_MIN_WEIGHTS = 1 << 16;

/** Largest block of a matrix widened to f32 at once for the native product (bytes of f32). */
export const WIDE_BLOCK_BYTES = 16 << 20;

let heapBlock = new Float32Array(0);

export class HalfMatrix {
  private constructor(
    readonly dtype: HalfDtype,
    readonly rows: number,
    readonly cols: number,
    /** Where copies (stacking) take room: the owner's arenas. */
    private readonly store: ArenaSet,
    private readonly arena: WasmArena,
    /** Byte offset of element [0, 0] in the arena. */
    private readonly at: number,
  ) {}

  /** Room for a [rows, cols] matrix in `store`; fill it through `bits()` or `bytes()`. */
  static allocate(store: ArenaSet, dtype: HalfDtype, rows: number, cols: number): HalfMatrix {
    const { arena, at } = store.allocate(rows * cols * 2);
    return new HalfMatrix(dtype, rows, cols, store, arena, at);
  }

  /** A copy of `bits` ([rows, cols] row-major) in `store`. */
  static fromBits(store: ArenaSet, dtype: HalfDtype, rows: number, cols: number, bits: Uint16Array): HalfMatrix {
    const m = HalfMatrix.allocate(store, dtype, rows, cols);
    m.bits().set(bits.subarray(0, rows * cols));
    return m;
  }

  get length(): number {
    return this.rows * this.cols;
  }

  get byteLength(): number {
    return this.length * 2;
  }

  /** The stored bits; a view valid until the next allocation in the same store. */
  bits(): Uint16Array {
    return this.arena.u16(this.at, this.length);
  }

  /** The stored bytes (little-endian 16-bit values); valid as `bits()` is. */
  bytes(): Uint8Array {
    return this.arena.bytes(this.at, this.byteLength);
  }

  /** Rows [start, end) as a matrix sharing these bits. */
  rowRange(start: number, end: number): HalfMatrix {
    if (start < 0 || end > this.rows || start > end) throw new RangeError(`HalfMatrix.rowRange: [${start}, ${end}) outside [0, ${this.rows})`);
    return new HalfMatrix(this.dtype, end - start, this.cols, this.store, this.arena, this.at + start * this.cols * 2);
  }

  /**
   * Matrices stacked by rows (same type and width) as one; when they already lie one after another
   * in one arena (the loader places a layer's q, k, v that way) no bytes move.
   */
  static stack(parts: HalfMatrix[]): HalfMatrix {
    const first = parts[0];
    const cols = first.cols;
    if (parts.some((p) => p.cols !== cols || p.dtype !== first.dtype)) throw new RangeError('HalfMatrix.stack: parts differ in width or type');
    const rows = parts.reduce((s, p) => s + p.rows, 0);
    let contiguous = true;
    for (let i = 1; i < parts.length; i++) {
      const prev = parts[i - 1];
      if (parts[i].arena !== first.arena || parts[i].at !== prev.at + prev.byteLength) contiguous = false;
    }
    if (contiguous) return new HalfMatrix(first.dtype, rows, cols, first.store, first.arena, first.at);
    const out = HalfMatrix.allocate(first.store, first.dtype, rows, cols);
    let r = 0;
    for (const p of parts) {
      out.bits().set(p.bits(), r * cols);
      r += p.rows;
    }
    return out;
  }

  /** Row r widened to f32 into `out` (an embedding lookup). */
  rowToF32(r: number, out: Float32Array): void {
    halfBitsToF32(this.dtype, this.arena.u16(this.at + r * this.cols * 2, this.cols), out);
  }

  /** Rows [start, end) widened to f32, as a new array. */
  toF32(start = 0, end = this.rows): Float32Array {
    const out = new Float32Array((end - start) * this.cols);
    halfBitsToF32(this.dtype, this.arena.u16(this.at + start * this.cols * 2, (end - start) * this.cols), out);
    return out;
  }

  /**
   * out [m, rows] = x [m, cols] · Wᵀ.
   */
  product(out: Float32Array, x: Float32Array, m: number): void {
    const k = this.cols;
    const n = this.rows;
    if (x.length < m * k || out.length < m * n) {
      throw new RangeError(`HalfMatrix.product: buffers too small for [${m}, ${k}]·[${k}, ${n}]: x=${x.length}, out=${out.length}`);
    }
    const kernelFits = k % 8 === 0 && k * 4 + 4 <= X_SCRATCH_BYTES; // a row of x and its factor
    if ((m >= 2 && gemmBackend() === 'ort') || !kernelFits) this.widenedProduct(out, x, m);
    else this.kernelProduct(out, x, m);
  }

  /** The SIMD dot kernel, over batches of x rows and blocks of output columns that fit the scratch. */
  private kernelProduct(out: Float32Array, x: Float32Array, m: number): void {
    const { cols: k, rows: n, arena, dtype } = this;
    const fn = dtype === 'bf16' ? 'dot_bf16' : 'dot_f16';
    const pool = arena.pool;
    // each x row as the kernel reads it, then (f16) each row's unscale factor
    const batch = Math.min(m, Math.floor(X_SCRATCH_BYTES / (k * 4 + 4)));
    const factorsAt = arena.xScratch + batch * k * 4;
    // w rows [j0, j0 + nb) against the x rows in scratch; split across helper threads when large
    // (bf16's kernel takes no factors: the extra argument is ignored)
    const kernel = arena.kernels[fn] as KernelExports['dot_f16'];
    const dot = (wAt: number, yAt: number, mb: number, nb: number, ldy: number) => {
      // alone where the product is small, or a helper is blocked (it takes longer to wake than the
      // product takes; it is asked to watch for the next one)
      if (!pool || nb * k < PARALLEL_MIN_WEIGHTS || nb < 8 * (pool.helpers + 1) || !pool.readyForSplit()) {
        kernel(wAt, arena.xScratch, yAt, mb, k, nb, ldy, factorsAt);
        return;
      }
      const part = Math.ceil(nb / (pool.helpers + 1) / 4) * 4;
      let started = 0;
      for (let h = 0, j = part; h < pool.helpers && j < nb; h++, j += part) {
        pool.start(h, arena.id, fn, [wAt + j * k * 2, arena.xScratch, yAt + j * 4, mb, k, Math.min(part, nb - j), ldy, factorsAt]);
        started++;
      }
      kernel(wAt, arena.xScratch, yAt, mb, k, Math.min(part, nb), ldy, factorsAt);
      for (let h = 0; h < started; h++) pool.wait(h);
    };
    for (let i0 = 0; i0 < m; i0 += batch) {
      const mb = Math.min(batch, m - i0);
      const xs = arena.f32(arena.xScratch, mb * k);
      const factors = arena.f32(factorsAt, mb);
      for (let i = 0; i < mb; i++) factors[i] = toPairOrder(dtype, x, (i0 + i) * k, xs, i * k, k);
      const block = Math.max(1, Math.min(n, Math.floor(Y_SCRATCH_BYTES / (mb * 4))));
      for (let j0 = 0; j0 < n; j0 += block) {
        const nb = Math.min(block, n - j0);
        dot(this.at + j0 * k * 2, arena.yScratch, mb, nb, nb);
        const y = arena.f32(arena.yScratch, mb * nb);
        if (nb === n) out.set(y, i0 * n);
        else for (let i = 0; i < mb; i++) out.set(y.subarray(i * nb, (i + 1) * nb), (i0 + i) * n + j0);
      }
    }
  }

  /** Blocks of rows widened to f32 (by the SIMD kernel where the width allows), then gemm. */
  private widenedProduct(out: Float32Array, x: Float32Array, m: number): void {
    const { cols: k, rows: n, arena } = this;
    const blockRows = Math.max(1, Math.min(n, Math.floor(WIDE_BLOCK_BYTES / (k * 4))));
    const wideAt = arena.wideScratch(blockRows * k * 4);
    let part: Float32Array | null = null;
    for (let j0 = 0; j0 < n; j0 += blockRows) {
      const nb = Math.min(blockRows, n - j0);
      const count = nb * k;
      const src = this.at + j0 * k * 2;
      if (count % 8 === 0) {
        (this.dtype === 'bf16' ? arena.kernels.widen_bf16 : arena.kernels.widen_f16)(src, wideAt, count);
      } else {
        halfBitsToF32(this.dtype, arena.u16(src, count), arena.f32(wideAt, count));
      }
      // the native product refuses views of shared memory (arenas helper threads read): a heap copy
      let w = arena.f32(wideAt, count);
      if (arena.pool) {
        if (heapBlock.length < count) heapBlock = new Float32Array(count);
        heapBlock.set(w);
        w = heapBlock.subarray(0, count);
      }
      if (nb === n) {
        gemm(out, x, w, m, k, n, false, true);
        return;
      }
      if (!part || part.length < m * nb) part = new Float32Array(m * blockRows);
      gemm(part, x, w, m, k, nb, false, true);
      for (let i = 0; i < m; i++) out.set(part.subarray(i * nb, (i + 1) * nb), i * n + j0);
    }
  }
}

/** Rows whose largest |x| is below this take x·2¹¹² (finite below 2¹²⁸ with room to spare). */
const F16_FULL_SCALE_BELOW = 2 ** 14;

/**
 * One x row (k elements from x[from]) as the 16-bit dot kernels read it, into xs[to]: in each
 * group of 8, the even elements then the odd ones. For f16 the row is also scaled by 2ˢ, and the
 * factor 2¹¹²⁻ˢ that the kernel multiplies the row's sums by is returned (1 for bf16). The kernel
 * widens f16 weights as w·2⁻¹¹²; s = 112 puts that scale exactly back, product by product, so
 * the sums are those of f32 weights (same order, same rounding). A row holding |x| ≥ 2¹⁴ takes a
 * smaller s so that x·2ˢ stays finite; its products are then the same up to a power of two,
 * except ones small enough to fall among f32's subnormals, far below the sum's last bit.
 */
export function toPairOrder(dtype: HalfDtype, x: Float32Array, from: number, xs: Float32Array, to: number, k: number): number {
  let scale = 1;
  let unscale = 1;
  if (dtype === 'f16') {
    let largest = 0;
    for (let p = 0; p < k; p++) largest = Math.max(largest, Math.abs(x[from + p]));
    // a non-finite row stays non-finite whatever the scale
    const s = largest < F16_FULL_SCALE_BELOW || !Number.isFinite(largest) ? 112 : 126 - Math.ceil(Math.log2(largest) + 1e-9);
    scale = 2 ** s;
    unscale = 2 ** (112 - s);
  }
  for (let g = 0; g < k; g += 8) {
    for (let q = 0; q < 4; q++) {
      xs[to + g + q] = x[from + g + 2 * q] * scale;
      xs[to + g + 4 + q] = x[from + g + 2 * q + 1] * scale;
    }
  }
  return unscale;
}

/** The index of the first non-finite value (exponent bits all ones), or −1 when every value is finite. */
export function firstNonFinite(dtype: HalfDtype, bits: Uint16Array): number {
  const mask = dtype === 'bf16' ? 0x7f80 : 0x7c00;
  for (let i = 0; i < bits.length; i++) if ((bits[i] & mask) === mask) return i;
  return -1;
}

/** A linear layer's weights: f32, or 16-bit as the checkpoint stored them. Layout [out, in]. */
export type Matrix = Float32Array | HalfMatrix;

/** out [rows, outDim] = x [rows, inDim] · Wᵀ, whichever way W is held. */
export function linear(out: Float32Array, x: Float32Array, w: Matrix, rows: number, inDim: number, outDim: number): void {
  if (w instanceof Float32Array) gemm(out, x, w, rows, inDim, outDim, false, true);
  else w.product(out, x, rows);
}

/** W as f32 (a copy for a HalfMatrix, W itself otherwise). */
export function matrixToF32(w: Matrix): Float32Array {
  return w instanceof Float32Array ? w : w.toF32();
}
