/** A growable [rows, C] f32 matrix, the storage of full-precision cache regions. */
export class RowBuffer {
  data: Float32Array;
  rows = 0;

  constructor(readonly width: number, initialRows = 64) {
    this.data = new Float32Array(width * initialRows);
  }

  /** Appends n rows from src [n, width]; returns the index of the first appended row. */
  append(src: Float32Array, n: number): number {
    this.reserve(this.rows + n);
    this.data.set(src.subarray(0, n * this.width), this.rows * this.width);
    const first = this.rows;
    this.rows += n;
    return first;
  }

  reserve(rows: number): void {
    if (rows * this.width <= this.data.length) return;
    const next = new Float32Array(Math.max(rows, this.data.length / this.width * 2) * this.width);
    next.set(this.data.subarray(0, this.rows * this.width));
    this.data = next;
  }

  /** The first `rows` rows as a view. */
  view(): Float32Array {
    return this.data.subarray(0, this.rows * this.width);
  }

  clear(): void {
    this.rows = 0;
  }

  /** Keeps the first `rows` rows. */
  truncate(rows: number): void {
    if (rows < 0 || rows > this.rows) throw new RangeError(`RowBuffer.truncate: ${rows} rows of ${this.rows}`);
    this.rows = rows;
  }

  /** A buffer holding `data` [rows, width] (taken, not copied). */
  static of(width: number, data: Float32Array): RowBuffer {
    if (data.length % width !== 0) throw new RangeError(`RowBuffer.of: ${data.length} values are not rows of ${width}`);
    const b = new RowBuffer(width, 0);
    b.data = data;
    b.rows = data.length / width;
    return b;
  }

  /** Removes the first k rows, keeping the rest in order. */
  dropFront(k: number): void {
    this.data.copyWithin(0, k * this.width, this.rows * this.width);
    this.rows -= k;
  }

  bytes(): number {
    return this.rows * this.width * 4;
  }
}
