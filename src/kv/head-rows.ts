/**
 * Head-major row storage, the layout attention reads in place (model/kv-cache.ts `LayerView`):
 * one array of [heads][capacity, hd], head h's row t at (h·capacity + t)·hd. Each KV head's
 * rows are contiguous, so attention multiplies them directly, with no per-step gathering.
 * Tokens arrive token-major ([n, heads·hd], as the model and the quantizers see them) and are
 * scattered once on arrival.
 */
import type { Rope } from '../model/rope.js';

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

export class HeadRows {
  data: Float32Array;
  capacity: number;
  rows = 0;

  constructor(readonly heads: number, readonly hd: number, initialRows = 64) {
    this.capacity = Math.max(1, initialRows);
    this.data = new Float32Array(heads * this.capacity * hd);
  }

  /** Makes room for `rows` rows (capacity doubles, so appends are amortized O(1) per row). */
  reserve(rows: number): void {
    if (rows <= this.capacity) return;
    const cap = Math.max(rows, this.capacity * 2);
    const next = new Float32Array(this.heads * cap * this.hd);
    for (let h = 0; h < this.heads; h++) next.set(this.data.subarray(h * this.capacity * this.hd, (h * this.capacity + this.rows) * this.hd), h * cap * this.hd);
    this.data = next;
    this.capacity = cap;
  }

  /** Writes src [n, heads·hd] as rows [at, at + n) (within or just past the rows held). */
  write(at: number, src: Float32Array, n: number): void {
    if (at > this.rows) throw new RangeError(`HeadRows.write: row ${at} leaves a gap after ${this.rows} rows`);
    this.reserve(at + n);
    scatterHeads(this.data, this.capacity, at, src, n, this.heads, this.hd);
    this.rows = Math.max(this.rows, at + n);
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
    const c = new HeadRows(this.heads, this.hd, 0);
    c.data = this.data.slice();
    c.capacity = this.capacity;
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

  /** Bytes allocated beyond the rows held (capacity grows by doubling, so appends stay cheap). */
  spareBytes(): number {
    return this.data.byteLength - this.bytes();
  }
}
