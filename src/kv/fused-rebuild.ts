/**
 * AQUA-KV's rebuild of one part (keys or values) of one layer as a single matrix product.
 *
 *   K̃_l = K̃_{l−1}·Wᵀ + b + H·(ŷ·s)/G            (the prediction, plus the dequantized residual)
 *       = [K̃_{l−1} | ŷ·s + u] · [W | H/G]ᵀ       with u = H·b, since (H·b)·(H/G) = b (H·H = G·I)
 *
 * ŷ are a token's grid points and s its stored norm (HIGGS with one group per token, G ≥ C).
 * The Hadamard transform is linear, so it joins the predictor in one product whose input is the
 * previous layer's rebuild beside the scaled points, and the bias rides through the transform in
 * u. Values take [K̃_l | Ṽ_{l−1} | ŷ·s + u]. Without a predictor the input is the points alone.
 * A compact cache rebuilding 4 096 tokens then runs two products of [~1 024, 256 or 384] · [·, 128]
 * per layer and block of chunks, at the native product's full rate, where it ran a predictor
 * product, a split second one, their sum and bias in JavaScript, and an inverse-transform product
 * per chunk of 128 tokens (on one thread: under the threads' threshold).
 *
 * The arithmetic is this one wherever a token is rebuilt (compression, a restored cache, compact
 * decode), so a token comes out the same bit for bit: every row of the product depends on its own
 * input row only (tensor/gemm.ts `gemmRowwise`). It serves while the native product is the
 * backend and the HIGGS kernels are on; otherwise the codec rebuilds as before (prediction, then
 * the decoded residual added), also the same everywhere.
 *
 * `FusedMemory` is one WebAssembly memory the kernels work in: the product's input rows, its
 * output, and for a compact cache attention's head-major view, read there in place.
 */
import { HiggsQuantizer } from '../quant/higgs.js';
import { decodesWithKernels } from '../quant/higgs-wasm.js';
import { hadamard } from '../quant/hadamard.js';
import type { Grid } from '../quant/grid.js';
import type { QuantizedBlock, Quantizer } from '../quant/quantizer.js';
import { f16Table } from '../tensor/f16.js';
import { gemmBackend, gemmRowwise } from '../tensor/gemm.js';
import { align16, kernelsOver, MAX_PAGES, PAGE, type KernelExports, type KernelMemory } from '../tensor/wasm-arena.js';
import type { LinearPredictor } from './linear-predictor.js';

/** One part's product: out [rows, C] = A [rows, k] · weightᵀ, A = [predictor input (inDim) | ŷ·s + u (P)]. */
export class FusedPart {
  readonly k: number;
  readonly weight: Float32Array; // [C, k]: [W | H/G], row o = output channel o
  readonly u: Float32Array; // [P]: H·b padded (zeros without a predictor)

  private constructor(readonly C: number, readonly quantizer: HiggsQuantizer, readonly inDim: number, predictor: LinearPredictor | null) {
    const { paddedCols: P, groupSize: G } = quantizer;
    this.k = inDim + P;
    const H = hadamard(G);
    this.weight = new Float32Array(C * this.k);
    for (let o = 0; o < C; o++) {
      if (predictor) this.weight.set(predictor.weight.subarray(o * inDim, (o + 1) * inDim), o * this.k);
      for (let p = 0; p < P; p++) this.weight[o * this.k + inDim + p] = H[p * G + o] / G; // exact: ±2^−log G
    }
    this.u = new Float32Array(P);
    if (predictor) {
      for (let p = 0; p < P; p++) {
        let s = 0;
        for (let o = 0; o < C; o++) s += H[p * G + o] * predictor.bias[o];
        this.u[p] = s;
      }
    }
  }

  /**
   * The fused form of a part, or null where it does not apply: a quantizer other than HIGGS with
   * one group per token (and P a multiple of 4, as the kernels take rows).
   */
  static of(C: number, q: Quantizer, predictor: LinearPredictor | null): FusedPart | null {
    if (!(q instanceof HiggsQuantizer) || q.groups !== 1 || q.paddedCols % 4 !== 0 || C % 4 !== 0) return null;
    return new FusedPart(C, q, predictor ? predictor.inDim : 0, predictor);
  }

  /** Whether rebuilding takes this form now: the native product and the HIGGS kernels. */
  get active(): boolean {
    return gemmBackend() === 'ort' && decodesWithKernels(this.quantizer.grid);
  }

  /** Bytes of one token's codes. */
  get codeBytes(): number {
    const { grid, paddedCols: P } = this.quantizer;
    return Math.ceil(((P / grid.d) * grid.bits) / 8);
  }

  /**
   * Rebuilds n tokens of JavaScript arrays: out [n, C] from the predictor's input parts (each [n, C],
   * laid side by side; none without a predictor) and the blocks' codes (n rows end to end).
   */
  rebuild(inputs: Float32Array[], blocks: QuantizedBlock[], n: number, out: Float32Array): void {
    const { C, k } = this;
    if (inputs.length * C !== this.inDim) throw new RangeError(`FusedPart.rebuild: ${inputs.length} inputs of ${C} channels for a predictor of ${this.inDim}`);
    const m = scratchMemory();
    // products of up to FUSED_BLOCK_ROWS tokens (a restored cache's thousands of tokens would
    // otherwise leave that much scratch behind); rows do not depend on their span
    const total = blocks.reduce((s, b) => s + b.rows, 0);
    if (total > n) throw new RangeError(`FusedPart.rebuild: the blocks hold more than ${n} rows`);
    for (const { row, rows, pieces } of rowSpans(blocks.map((b) => b.rows), FUSED_BLOCK_ROWS)) {
      m.layout({ carryRows: 0, blockRows: rows, kMax: k, C, codeBytes: this.codeBytes, consts: constsBytes([this]), view: null, tables: 0, stageRows: 0 });
      // each input copied in (through the output's region), then into its columns by the kernel
      inputs.forEach((x, j) => {
        m.f32(m.at.y, rows * C).set(x.subarray(row * C, (row + rows) * C));
        m.kernels.fan_rows(m.at.y, rows, C, 4, m.at.a + j * C * 4, k, 0, 0, 0, 0, 0, 0);
      });
      m.points(this, pieces.map((p) => ({ block: blocks[p.index], from: p.from, to: p.to })), m.at.a, k);
      const y = m.f32(m.at.y, rows * C);
      gemmRowwise(y, m.f32(m.at.a, rows * k), this.weight, rows, k, C, true);
      out.set(y, row * C);
    }
  }
}

/** Where the regions of a FusedMemory lie (byte offsets). */
interface Regions {
  carry: number; // [carryRows, C]: the last layer's rebuilt keys, the next layer's input (its values are in vview)
  kview: number; // [KV][T, hd]: attention's keys (rotated)
  kScratch: number; // attention's scratch beside each view
  vview: number; // [KV][T, hd]: attention's values
  vScratch: number;
  a: number; // [blockRows, kMax]: a product's input (or [stageRows, C] of rows sent to a view, `fanIn`)
  y: number; // [blockRows, C]: its output (over codes, scales, cos and sin, done with by then)
  codes: number; // [blockRows] rows of codes
  scales: number; // [blockRows] f32, then [blockRows] f16 (as stored, widened into the first)
  consts: number; // grid points, u, and for 2-D codes of 3–4 bits their pair table
  cos: number; // RoPE's tables for one block's positions, [blockRows, hd/2] each
  sin: number;
  end: number;
}

export interface FusedLayout {
  carryRows: number; // tokens whose keys are rebuilt layer after layer (0: none carried)
  blockRows: number; // tokens per product
  kMax: number; // widest product input
  C: number;
  codeBytes: number; // most bytes of one token's codes
  consts: number; // most bytes of one part's constants (`constsBytes`)
  /** Attention's view: heads, rows per head (T), head dim and scratch bytes per view; null for none. */
  view: { heads: number; T: number; hd: number; scratchBytes: number } | null;
  /** Floats of each RoPE table to hold, one block's positions or one piece of `fanIn`'s (0: none). */
  tables: number;
  /** Rows `fanIn` sends to a view at a time (0: none); their room is the product input's. */
  stageRows: number;
}

/**
 * The most tokens per product, compact decode and rebuilds of JavaScript arrays (a restored
 * cache) alike. At 4 096 tokens, compact decode with blocks of 1 024 ran 5–10% faster than with
 * 512 (three interleaved runs each: 33.7–35.1 against 35.9–39.2 ms a step; half the product
 * calls); whole products (one per part) were no faster and their operands are the cache's size.
 * A compact cache takes fewer where its memory bound leaves less room (kv/chunk-store.ts).
 */
export const FUSED_BLOCK_ROWS = 1024;

/** Rows [row, row + rows) of blocks laid end to end, as pieces: rows [from, to) of block `index`. */
export interface RowSpan {
  row: number;
  rows: number;
  pieces: { index: number; from: number; to: number }[];
}

/**
 * Blocks of `sizes` rows, end to end, cut into spans of at most `limit` rows and at least `least`
 * (the one span of fewer rows in all excepted; `least` wins where the two disagree), as equal as
 * whole rows allow (products of one shape); a span may end inside a block; rows do not depend on
 * their span (tensor/gemm.ts `gemmRowwise`).
 */
export function rowSpans(sizes: number[], limit: number, least = 1): RowSpan[] {
  const total = sizes.reduce((s, n) => s + n, 0);
  if (total === 0) return [];
  const count = Math.max(1, Math.min(Math.ceil(total / Math.max(1, limit)), Math.floor(total / Math.max(1, least))));
  const spans: RowSpan[] = [];
  let index = 0;
  let from = 0; // next row of block `index`
  for (let i = 0, row = 0; i < count; i++) {
    const rows = Math.floor((total * (i + 1)) / count) - row;
    const span: RowSpan = { row, rows, pieces: [] };
    for (let left = rows; left > 0;) {
      while (from === sizes[index]) {
        index++;
        from = 0;
      }
      const take = Math.min(left, sizes[index] - from);
      span.pieces.push({ index, from, to: from + take });
      from += take;
      left -= take;
    }
    spans.push(span);
    row += rows;
  }
  return spans;
}

/** Bytes the constants of the widest of `parts` take in kernel memory: grid points, u and a pair table (≤ 4 KB). */
export function constsBytes(parts: FusedPart[]): number {
  return Math.max(0, ...parts.map((p) => {
    const { grid, paddedCols: P } = p.quantizer;
    return align16(grid.points.byteLength) + align16(P * 4) + (pairTable(grid)?.byteLength ?? 0);
  }));
}

const pairTables = new WeakMap<Grid, Float32Array | null>();

/**
 * For a 2-D grid of codes of 3–4 bits: entry c₀ | c₁ << bits holds points c₀ and c₁ side by side
 * (4 floats), so the kernel reads two codes' coordinates at once; null for other grids. Wider
 * codes would take 64 KB (6 bits) or more of a compact cache's bounded scratch for ~0.3 µs per
 * 16 tokens saved (points_scaled on 4 096 rows of 6-bit codes: 195 µs with a table, 271 without).
 */
function pairTable(grid: Grid): Float32Array | null {
  let t = pairTables.get(grid);
  if (t !== undefined) return t;
  t = null;
  if (grid.d === 2 && grid.bits <= 4) {
    const n = 1 << grid.bits;
    t = new Float32Array(n * n * 4);
    for (let c1 = 0; c1 < n; c1++) {
      for (let c0 = 0; c0 < n; c0++) {
        const e = (c0 | (c1 << grid.bits)) * 4;
        t[e] = grid.points[2 * c0];
        t[e + 1] = grid.points[2 * c0 + 1];
        t[e + 2] = grid.points[2 * c1];
        t[e + 3] = grid.points[2 * c1 + 1];
      }
    }
  }
  pairTables.set(grid, t);
  return t;
}

/** Rows of room for a block's scales: a multiple of 8, as the widening kernel takes them. */
function scaleRows(rows: number): number {
  return Math.ceil(rows / 8) * 8;
}

/**
 * One WebAssembly memory of the kernels' (private: the native product refuses shared memory),
 * grown in place when a layout needs more.
 */
export class FusedMemory {
  private memory = new WebAssembly.Memory({ initial: 1, maximum: MAX_PAGES });
  readonly kernels: KernelExports = kernelsOver(this.memory);
  at: Regions = { carry: 0, kview: 0, kScratch: 0, vview: 0, vScratch: 0, a: 0, y: 0, codes: 0, scales: 0, consts: 0, cos: 0, sin: 0, end: 0 };
  private laid: FusedLayout | null = null;

  /** Bytes a memory laid out for `l` takes (before rounding up to whole pages). */
  static bytesFor(l: FusedLayout): number {
    return FusedMemory.place(l).end;
  }

  private static place(l: FusedLayout): Regions {
    let top = 0;
    const take = (bytes: number) => {
      const at = top;
      top = align16(top + bytes);
      return at;
    };
    const viewBytes = l.view ? l.view.heads * l.view.T * l.view.hd * 4 : 0;
    const scratchBytes = l.view?.scratchBytes ?? 0;
    const carry = take(l.carryRows * l.C * 4);
    const kview = take(viewBytes);
    const kScratch = take(scratchBytes);
    const vview = take(viewBytes);
    const vScratch = take(scratchBytes);
    const a = take(Math.max(l.blockRows * l.kMax, l.stageRows * l.C) * 4);
    const consts = take(l.consts);
    // a product's output shares its room with the codes, scales and RoPE rows, which are read
    // before it is written: points before the product, the table rows by the keys' fan-out, which
    // comes before the values' points (13% more rows within a compact cache's bound)
    const shared = top;
    const y = take(l.blockRows * l.C * 4);
    const yEnd = top;
    top = shared;
    const codes = take(l.blockRows * l.codeBytes + 16); // + what points_scaled may read past the last row
    const scales = take(scaleRows(l.blockRows) * 6);
    const cos = take(l.tables * 4);
    const sin = take(l.tables * 4);
    return { carry, kview, kScratch, vview, vScratch, a, y, codes, scales, consts, cos, sin, end: Math.max(top, yEnd) };
  }

  /** Places the regions for `l`, growing the memory if needed (what the regions held is not kept). */
  layout(l: FusedLayout): void {
    this.at = FusedMemory.place(l);
    this.laid = l;
    const have = this.memory.buffer.byteLength;
    if (this.at.end > have) this.memory.grow(Math.ceil((this.at.end - have) / PAGE));
  }

  /** Copies `floats` of RoPE's cos and sin tables from float `from` on into the tables' region. */
  holdTables(cos: Float32Array, sin: Float32Array, from: number, floats: number): void {
    const room = this.laid?.tables ?? 0;
    if (floats > room) throw new RangeError(`FusedMemory: ${floats} floats of RoPE tables, room for ${room}`);
    const { f32 } = this.whole();
    f32.set(cos.subarray(from, from + floats), this.at.cos / 4);
    f32.set(sin.subarray(from, from + floats), this.at.sin / 4);
  }

  f32(at: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, at, length);
  }

  private views: { buffer: ArrayBuffer; u8: Uint8Array; u16: Uint16Array; f32: Float32Array } | null = null;
  /**
   * Views of the whole memory, made again only when it grows: copies in go through them, rather
   * than a view made per copy (a compact step at 4 096 tokens copies ~500 pieces of codes).
   */
  private whole(): { u8: Uint8Array; u16: Uint16Array; f32: Float32Array } {
    const buffer = this.memory.buffer;
    if (this.views?.buffer !== buffer) this.views = { buffer, u8: new Uint8Array(buffer), u16: new Uint16Array(buffer), f32: new Float32Array(buffer) };
    return this.views;
  }

  /** Bytes this memory holds. */
  get bytes(): number {
    return this.memory.buffer.byteLength;
  }

  /**
   * Writes ŷ·s + u of the pieces' tokens (rows [from, to) of each block, end to end) into columns
   * [inDim, inDim + P) of the rows at byte offset `dst`, rows of `ld` floats: the codes and scales
   * are copied in, the scales widened to f32, then one kernel call writes every row.
   */
  points(part: FusedPart, pieces: { block: QuantizedBlock; from: number; to: number }[], dst: number, ld: number): void {
    const q = part.quantizer;
    const { grid, paddedCols: P } = q;
    const k = this.kernels;
    const rowBytes = part.codeBytes;
    const rows = pieces.reduce((s, p) => s + p.to - p.from, 0);
    const l = this.laid;
    if (!l || rows * rowBytes > l.blockRows * l.codeBytes || rows > scaleRows(l.blockRows)) throw new RangeError(`FusedMemory: ${rows} rows of codes, laid out for fewer`);
    // the grid's points, u, and for 2-D codes of 3–4 bits the table of pairs
    const table = pairTable(grid);
    const pts = this.at.consts;
    const u = align16(pts + grid.points.byteLength);
    const pairs = table ? align16(u + P * 4) : 0;
    if (constsBytes([part]) > l.consts) throw new RangeError(`FusedMemory: grid ${q.spec} too large for its constants`);
    const { u8, u16, f32 } = this.whole();
    f32.set(grid.points, pts / 4);
    f32.set(part.u, u / 4);
    if (table) f32.set(table, pairs / 4);
    // codes and fp16 scales of every piece, end to end; the scales widened to f32
    const { codes, scales } = this.at;
    const half = scales + scaleRows(l.blockRows) * 4;
    let row = 0;
    for (const { block, from, to } of pieces) {
      const whole = from === 0 && to === block.rows; // most pieces are whole chunks: no subarray
      u8.set(whole ? block.codes : block.codes.subarray(from * rowBytes, to * rowBytes), codes + row * rowBytes);
      u16.set(whole ? block.scales : block.scales.subarray(from, to), half / 2 + row);
      row += to - from;
    }
    k.widen_f16(half, scales, scaleRows(rows));
    k.points_scaled(codes, rows, rowBytes, P / grid.d, grid.bits, grid.d, pts, scales, u, dst + part.inDim * 4, ld, pairs);
  }

  /**
   * Sends rows [n, C] of a JavaScript array (token-major: the sinks, the buffer) to rows
   * [first, first + n) of the view at byte offset `view` (heads of S rows of hd floats), rotated
   * by RoPE from position `rotate.from` when its tables are given: copied into the product's input
   * region a piece of `stageRows` at a time (free between spans), then the fan-out kernel, which
   * rotates with the same f32 operations as `Rope.apply` (a scatter and rotation in JavaScript
   * took ~0.3 ms of a compact step at 512 tokens).
   */
  fanIn(src: Float32Array, n: number, C: number, hd: number, view: number, S: number, first: number, rotate: { cos: Float32Array; sin: Float32Array; from: number } | null): void {
    const piece = this.laid?.stageRows ?? 0;
    if (n > 0 && piece < 1) throw new RangeError('FusedMemory.fanIn: laid out with no rows to stage');
    const half = hd / 2;
    const { f32 } = this.whole();
    for (let t = 0; t < n; t += piece) {
      const rows = Math.min(piece, n - t);
      f32.set(src.subarray(t * C, (t + rows) * C), this.at.a / 4);
      if (rotate) this.holdTables(rotate.cos, rotate.sin, (rotate.from + t) * half, rows * half);
      this.kernels.fan_rows(this.at.a, rows, C, hd, 0, 0, 0, 0, view + (first + t) * hd * 4, S, rotate ? this.at.cos : 0, rotate ? this.at.sin : 0);
    }
  }

  /** A KernelMemory over a view region (attention reads its rows in place, scratch beside them). */
  viewMemory(which: 'k' | 'v'): KernelMemory {
    const at = this.at;
    const [rowsAt, scratchAt, scratchEnd] = which === 'k' ? [at.kview, at.kScratch, at.vview] : [at.vview, at.vScratch, at.a];
    return {
      kernels: this.kernels,
      rowsAt,
      f32: (offset, length) => this.f32(offset, length),
      scratch: (bytes) => {
        if (bytes > scratchEnd - scratchAt) throw new RangeError(`FusedMemory: attention asked ${bytes} bytes of scratch, ${scratchEnd - scratchAt} set aside`);
        return scratchAt;
      },
    };
  }
}

let shared: FusedMemory | null = null;
/** Scratch for rebuilds of JavaScript arrays (one thread runs them all). */
function scratchMemory(): FusedMemory {
  return (shared ??= new FusedMemory());
}
