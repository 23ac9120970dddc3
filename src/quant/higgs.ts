/**
 * HIGGS as AQUA-KV uses it for KV residuals (reference: aquakv/quantizers.py HiggsQuantizer):
 * per token vector of C channels, zero-padded to a multiple of the group size G (a power of two),
 * for each group:
 *   scale = ‖x‖₂ (stored fp16),  y = FWHT(x) / scale   (so mean(y²) = 1, y ≈ N(0, 1)),
 *   each d-subvector of y → index of its nearest grid point (log2(n) bits, bit-packed).
 * Dequantize: ŷ = grid[idx] · scale, x̂ = FWHT(ŷ) / G, padding dropped.
 * With 1-D grids this is "rotation + scalar Lloyd–Max codes" (llama.cpp's rotated caches).
 */
import { AquaError } from '../errors.js';
import { f16Table, f32ToF16 } from '../tensor/f16.js';
import { packBits, unpackBits } from './bitpack.js';
import { fwht, hadamard, isPowerOfTwo } from './hadamard.js';
import { gemmBackend, gemmRowwise } from '../tensor/gemm.js';
import { loadGrid, type Grid } from './grid.js';
import { decodeBlock, decodesWithKernels, encodeBlock, encodesWithKernels } from './higgs-wasm.js';
import { checkInput, type BlockSize, type QuantizedBlock, type Quantizer } from './quantizer.js';

/** Default group: the smallest power of two ≥ C, capped at 1024 (AQUA-KV uses G = C ≤ 1024). */
export function defaultGroupSize(C: number): number {
  let g = 1;
  while (g < C && g < 1024) g *= 2;
  return g;
}

export class HiggsQuantizer implements Quantizer {
  readonly groupSize: number; // G
  readonly paddedCols: number; // C rounded up to a multiple of G
  readonly groups: number; // per token
  private buf: Float32Array;
  private idx: Uint32Array;
  private table: Float32Array | null | undefined; // byte → the grid coordinates of its codes (undefined: not built)

  constructor(readonly grid: Grid, readonly cols: number, groupSize?: number) {
    const G = groupSize ?? Math.max(defaultGroupSize(cols), grid.d);
    if (!isPowerOfTwo(G)) throw new AquaError(`HIGGS: group size ${G} is not a power of two`);
    if (G % grid.d !== 0) throw new AquaError(`HIGGS: group size ${G} is not a multiple of the grid dimension ${grid.d}`);
    this.groupSize = G;
    this.groups = Math.ceil(cols / G);
    this.paddedCols = this.groups * G;
    this.buf = new Float32Array(this.paddedCols);
    this.idx = new Uint32Array(this.paddedCols / grid.d);
  }

  static fromGrid(d: number, n: number, cols: number, groupSize?: number): HiggsQuantizer {
    return new HiggsQuantizer(loadGrid(d, n), cols, groupSize);
  }

  /** Each token alone: its groups' norms and codes, rows of whole bytes. */
  readonly rowwise = true;

  get spec(): string {
    return `higgs:${this.grid.d}x${this.grid.n}:g${this.groupSize}`;
  }

  /**
   * For grids of 1, 2, 4 or 8 bits per index: the coordinates of every code byte's indices (least
   * significant first, as packBits writes them), 256 × (8 / bits) × d floats; null otherwise.
   */
  private byteTable(): Float32Array | null {
    if (this.table !== undefined) return this.table;
    const { bits, d, points } = this.grid;
    if (8 % bits !== 0) return (this.table = null);
    const per = 8 / bits;
    const mask = (1 << bits) - 1;
    const t = new Float32Array(256 * per * d);
    for (let b = 0; b < 256; b++) {
      for (let j = 0; j < per; j++) {
        const index = (b >>> (j * bits)) & mask;
        for (let i = 0; i < d; i++) t[(b * per + j) * d + i] = points[index * d + i];
      }
    }
    return (this.table = t);
  }

  blockSize(rows: number): BlockSize {
    const bytesPerRow = Math.ceil(((this.paddedCols / this.grid.d) * this.grid.bits) / 8);
    return { codes: rows * bytesPerRow, scales: rows * this.groups, zeros: null };
  }

  quantize(x: Float32Array, rows: number): QuantizedBlock {
    checkInput('HiggsQuantizer.quantize', x, rows, this.cols);
    const { cols: C, paddedCols: P, groupSize: G, grid, buf, idx } = this;
    const d = grid.d;
    const perRow = P / d; // indices per token
    const bytesPerRow = Math.ceil((perRow * grid.bits) / 8);
    const codes = new Uint8Array(rows * bytesPerRow);
    const scales = new Uint16Array(rows * this.groups);
    if (encodesWithKernels(grid, G)) {
      // the same steps as below, in the WebAssembly kernels (./higgs-wasm.ts), bit for bit
      if (encodeScratch.norms.length < rows * this.groups) encodeScratch.norms = new Float64Array(rows * this.groups);
      const norms = encodeScratch.norms.subarray(0, rows * this.groups);
      encodeBlock(grid, x, rows, C, P, G, norms, codes);
      for (let i = 0; i < norms.length; i++) scales[i] = f32ToF16(norms[i]);
      return { rows, cols: C, codes, scales, zeros: null };
    }
    for (let t = 0; t < rows; t++) {
      buf.fill(0);
      buf.set(x.subarray(t * C, (t + 1) * C));
      for (let g = 0; g < this.groups; g++) {
        const o = g * G;
        let ss = 0;
        for (let i = o; i < o + G; i++) ss += buf[i] * buf[i];
        const norm = Math.sqrt(ss);
        scales[t * this.groups + g] = f32ToF16(norm);
        fwht(buf, o, G);
        const inv = norm > 0 ? 1 / norm : 0;
        for (let i = o; i < o + G; i++) buf[i] *= inv;
      }
      for (let s = 0; s < perRow; s++) idx[s] = grid.nearest(buf, s * d);
      // rows are byte-aligned so any token range can be decoded on its own
      packBits(idx, perRow, grid.bits, codes.subarray(t * bytesPerRow, (t + 1) * bytesPerRow));
    }
    return { rows, cols: C, codes, scales, zeros: null };
  }

  /**
   * Grid points → inverse Hadamard → scale, for every token of the block. With the native
   * product, the inverse transform of all rows is one product with H (G multiply-adds per value,
   * but at matrix-product speed: ~3× faster here than the G·log G scalar butterflies); without
   * it, the butterflies. Each row's result is independent of the block's size either way.
   */
  dequantize(block: QuantizedBlock, out: Float32Array): void {
    this.decode(block, out, false);
  }

  /**
   * out += the block's values, added straight in (a cache's rebuild adds residuals to the
   * prediction): each value is the f32 sum of out and the value `dequantize` gives, bit for bit.
   * One block at a time: products over several blocks' rows were slower in decode, since at G = 128
   * a product of 256 rows or more is ≥ 4 M multiply-adds, which the native product splits across
   * both cores, and waking the second core each time cost more than the fewer calls saved
   * (compact decode at 4096 tokens: 171–226 ms a step against 121–133).
   */
  dequantizeAdd(block: QuantizedBlock, out: Float32Array): void {
    this.decode(block, out, true);
  }

  private decode(block: QuantizedBlock, out: Float32Array, add: boolean): void {
    const { cols: C, paddedCols: P, groupSize: G, grid } = this;
    if (block.cols !== C) throw new AquaError(`HiggsQuantizer: block has ${block.cols} channels, quantizer ${C}`);
    // the same steps as decodeRows and writeScaled, in the WebAssembly kernels (./higgs-wasm.ts), bit for bit
    if (decodesWithKernels(grid)) decodeBlock(grid, block, C, P, G, out, add, (x, y, count) => inverseTransform(x, y, count, G));
    else this.writeScaled(block, this.decodeRows(block), out, add);
  }

  /** The block's grid points, inverse-transformed: [rows, P] in shared scratch. */
  private decodeRows(block: QuantizedBlock): Float32Array {
    const { paddedCols: P, groupSize: G, grid, idx } = this;
    const rows = block.rows;
    const d = grid.d;
    const perRow = P / d;
    const bytesPerRow = Math.ceil((perRow * grid.bits) / 8);
    const pts = grid.points;
    if (scratch.points.length < rows * P) scratch.points = new Float32Array(rows * P);
    const x = scratch.points;
    const table = this.byteTable();
    if (table && (perRow * grid.bits) % 8 === 0) {
      // whole bytes per row: each code byte expands to its K grid coordinates through the table
      const K = (8 / grid.bits) * d;
      const codes = block.codes;
      for (let t = 0; t < rows; t++) {
        let o = t * P;
        const end = (t + 1) * bytesPerRow;
        for (let b = t * bytesPerRow; b < end; b++) {
          const at = codes[b] * K;
          for (let k = 0; k < K; k++) x[o + k] = table[at + k];
          o += K;
        }
      }
    } else {
      for (let t = 0; t < rows; t++) {
        unpackBits(block.codes.subarray(t * bytesPerRow, (t + 1) * bytesPerRow), perRow, grid.bits, idx);
        const o = t * P;
        for (let s = 0; s < perRow; s++) for (let i = 0; i < d; i++) x[o + s * d + i] = pts[idx[s] * d + i];
      }
    }
    if (scratch.transformed.length < rows * P) scratch.transformed = new Float32Array(rows * P);
    return inverseTransform(x.subarray(0, rows * P), scratch.transformed.subarray(0, rows * P), rows * this.groups, G);
  }

  /** The block's rows of y, scaled by its scales, into out (or added to it). */
  private writeScaled(block: QuantizedBlock, y: Float32Array, out: Float32Array, add: boolean): void {
    const { cols: C, paddedCols: P, groupSize: G, groups } = this;
    const f16 = f16Table();
    for (let t = 0; t < block.rows; t++) {
      for (let g = 0; g < groups; g++) {
        const scale = f16[block.scales[t * groups + g]] / G;
        const src = t * P + g * G;
        const dst = t * C + g * G;
        const end = Math.min(G, C - g * G);
        // the product rounded to f32 before the sum, as dequantize's stored value would be
        if (add) for (let i = 0; i < end; i++) out[dst + i] += Math.fround(y[src + i] * scale);
        else for (let i = 0; i < end; i++) out[dst + i] = y[src + i] * scale;
      }
    }
  }
}

/**
 * The unnormalised Walsh–Hadamard transform of `count` groups of G in x: with the native product,
 * one product with H into y (returned); without it, butterflies in x (returned).
 */
function inverseTransform(x: Float32Array, y: Float32Array, count: number, G: number): Float32Array {
  if (gemmBackend() === 'ort' && G >= 32) {
    gemmRowwise(y, x, hadamard(G), count, G, G, false); // H is symmetric: p·H = (H·p)ᵀ
    return y;
  }
  for (let r = 0; r < count; r++) fwht(x, r * G, G);
  return x;
}

/**
 * Dequantization scratch shared by every HIGGS quantizer (one thread runs them): grid points and
 * their inverse transform, [rows, P] each, grown to the largest block.
 */
const scratch = { points: new Float32Array(0), transformed: new Float32Array(0) };

/** Encoding scratch shared the same way: the kernels' group norms, [rows, groups]. */
const encodeScratch = { norms: new Float64Array(0) };
