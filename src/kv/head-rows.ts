/**
 * Head-major row storage, the layout attention reads in place (model/kv-cache.ts `LayerView`):
 * one array of [heads][capacity, hd], head h's row t at (h·capacity + t)·hd. Each KV head's
 * rows are contiguous, so attention multiplies them directly, with no per-step gathering.
 * Tokens arrive token-major ([n, heads·hd], as the model and the quantizers see them) and are
 * scattered once on arrival.
 */
import type { Rope } from '../model/rope.js';
import { align16, kernelsOver, MAX_PAGES, PAGE, type KernelExports, type KernelMemory } from '../tensor/wasm-arena.js';

/** Writes src [n, heads·hd] (token-major) into rows [at, at + n) of dst [heads][stride, hd]. */
export function scatterHeads(dst: Float32Array, stride: number, at: number, src: Float32Array, n: number, heads: number, hd: number): void {
  const C = heads * hd;
  for (let h = 0; h < heads; h++) {
    const base = (h * stride + at) * hd;
    for (let t = 0; t < n; t++) dst.set(src.subarray(t * C + h * hd, t * C + h * hd + hd), base + t * hd);
  }
}

/** Rotates rows [at, at + n) of every head of dst [heads][stride, hd]; row at + t has position startPos + t. */
export function ropeHeads(rope: Rope, dst: Float32Array, stride: number, at: number, n: number, heads: number, startPos: number): void {
  const hd = rope.headDim;
  for (let h = 0; h < heads; h++) rope.apply(dst.subarray((h * stride + at) * hd, (h * stride + at + n) * hd), n, 1, startPos);
}

/**
 * Rows of [heads][capacity, hd], in a WebAssembly memory of their own with the SIMD kernels over
 * it (`KernelMemory`): decode attention multiplies them where they lie, with no copy. Scratch for
 * attention's operands sits after the rows.
 */
export class HeadRows implements KernelMemory {
  capacity: number;
  rows = 0;
  readonly kernels: KernelExports;
  readonly rowsAt = 0;
  private memory: WebAssembly.Memory;
  private rowsView: Float32Array;

  constructor(readonly heads: number, readonly hd: number, initialRows = 64) {
    this.capacity = Math.max(1, initialRows);
    this.memory = new WebAssembly.Memory({ initial: Math.max(1, Math.ceil(this.rowBytes(this.capacity) / PAGE)), maximum: MAX_PAGES });
    this.kernels = kernelsOver(this.memory);
    this.rowsView = this.viewRows();
  }

  /** The rows, [heads][capacity, hd]: a view valid until the rows next grow or scratch is taken. */
  get data(): Float32Array {
    return this.rowsView;
  }

  f32(at: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, at, length);
  }

  scratch(bytes: number): number {
    const at = align16(this.rowBytes(this.capacity));
    this.ensure(at + bytes);
    return at;
  }

  /** Makes room for `rows` rows (capacity doubles, so appends are amortized O(1) per row). */
  reserve(rows: number): void {
    if (rows <= this.capacity) return;
    const old = this.capacity;
    const cap = Math.max(rows, old * 2);
    this.ensure(this.rowBytes(cap));
    // each head's rows move up to their new place, the last head first, so none is overwritten
    const all = new Float32Array(this.memory.buffer, 0, this.heads * cap * this.hd);
    for (let h = this.heads - 1; h > 0; h--) all.copyWithin(h * cap * this.hd, h * old * this.hd, (h * old + this.rows) * this.hd);
    this.capacity = cap;
    this.rowsView = this.viewRows();
  }

  private rowBytes(capacity: number): number {
    return this.heads * capacity * this.hd * 4;
  }

  private viewRows(): Float32Array {
    return new Float32Array(this.memory.buffer, 0, this.heads * this.capacity * this.hd);
  }

  /** Grows the memory to at least `bytes` (growing detaches earlier views). */
  private ensure(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes <= have) return;
    this.memory.grow(Math.ceil((bytes - have) / PAGE));
    this.rowsView = this.viewRows();
  }

  /** Writes src [n, heads·hd] as rows [at, at + n) (within or just past the rows held). */
  write(at: number, src: Float32Array, n: number): void {
    if (at > this.rows) throw new RangeError(`HeadRows.write: row ${at} leaves a gap after ${this.rows} rows`);
    this.reserve(at + n);
    scatterHeads(this.data, this.capacity, at, src, n, this.heads, this.hd);
    this.rows = Math.max(this.rows, at + n);
  }

  /**
   * Writes src [n, heads·hd] as rows [at, at + n) of the spare capacity past the rows held, without
   * holding them (the rows stay as many): a place for rows to wait until `move` puts them in place.
   * They last until rows are appended over them (growing keeps only the rows held).
   */
  writeSpare(at: number, src: Float32Array, n: number): void {
    if (at < this.rows || at + n > this.capacity) throw new RangeError(`HeadRows.writeSpare: rows [${at}, ${at + n}) are not spare (${this.rows} held, capacity ${this.capacity})`);
    scatterHeads(this.data, this.capacity, at, src, n, this.heads, this.hd);
  }

  /** Copies rows [from, from + n) to rows [to, to + n) of every head (within the rows held). */
  move(from: number, to: number, n: number): void {
    if (to + n > this.rows || from + n > this.capacity) throw new RangeError(`HeadRows.move: rows [${from}, ${from + n}) to [${to}, ${to + n}) with ${this.rows} held`);
    const { hd, capacity } = this;
    for (let h = 0; h < this.heads; h++) this.data.copyWithin((h * capacity + to) * hd, (h * capacity + from) * hd, (h * capacity + from + n) * hd);
  }

  /** Appends src [n, heads·hd]; returns the index of the first appended row. */
  append(src: Float32Array, n: number): number {
    const first = this.rows;
    this.write(first, src, n);
    return first;
  }

  /** Rotates rows [first, first + n), row first + t at position startPos + t. */
  rope(rope: Rope, first: number, n: number, startPos: number): void {
    ropeHeads(rope, this.data, this.capacity, first, n, this.heads, startPos);
  }

  truncate(rows: number): void {
    if (rows < 0 || rows > this.rows) throw new RangeError(`HeadRows.truncate: ${rows} rows of ${this.rows}`);
    this.rows = rows;
  }

  clone(): HeadRows {
    const c = new HeadRows(this.heads, this.hd, this.capacity);
    c.data.set(this.data);
    c.rows = this.rows;
    return c;
  }

  /** A copy of the rows held, token-major: [rows, heads·hd]. */
  tokenMajor(): Float32Array {
    const { heads, hd, rows, capacity } = this;
    const out = new Float32Array(rows * heads * hd);
    const C = heads * hd;
    for (let h = 0; h < heads; h++) {
      for (let t = 0; t < rows; t++) out.set(this.data.subarray((h * capacity + t) * hd, (h * capacity + t + 1) * hd), t * C + h * hd);
    }
    return out;
  }

  /** Bytes of the rows held (what the cache stores; spare capacity is not counted). */
  bytes(): number {
    return this.rows * this.heads * this.hd * 4;
  }

  /** Bytes allocated beyond the rows held (capacity grows by doubling, so appends stay cheap; attention's scratch follows). */
  spareBytes(): number {
    return this.memory.buffer.byteLength - this.bytes();
  }
}
