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

  /** Removes the first k rows, keeping the rest in order. */
  dropFront(k: number): void {
    this.data.copyWithin(0, k * this.width, this.rows * this.width);
    this.rows -= k;
  }

  bytes(): number {
    return this.rows * this.width * 4;
  }
}
