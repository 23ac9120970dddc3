/** Elementwise and row kernels of the forward pass; destination first, no allocation. */

/** out[t, :] = x[t, :] / rms(x[t, :]) · w, rows of width D. */
export function rmsNorm(out: Float32Array, x: Float32Array, w: Float32Array, n: number, D: number, eps: number): void {
  for (let t = 0; t < n; t++) {
    const o = t * D;
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[o + i] * x[o + i];
    const r = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) out[o + i] = x[o + i] * r * w[i];
  }
}

/** x[t, :] += b for each of n rows of width b.length. */
export function addBias(x: Float32Array, b: Float32Array, n: number): void {
  const w = b.length;
  for (let t = 0; t < n; t++) for (let i = 0; i < w; i++) x[t * w + i] += b[i];
}

/** x += y over the first `len` values. */
export function addInPlace(x: Float32Array, y: Float32Array, len: number): void {
  for (let i = 0; i < len; i++) x[i] += y[i];
}

/** out[t, i] = silu(x[t, i]) · x[t, F + i] for rows x [n, 2F] holding gate then up. */
export function swigluRows(out: Float32Array, x: Float32Array, n: number, F: number): void {
  for (let t = 0; t < n; t++) {
    const o = t * F;
    const r = t * 2 * F;
    for (let i = 0; i < F; i++) {
      const g = x[r + i];
      out[o + i] = (g / (1 + Math.exp(-g))) * x[r + F + i];
    }
  }
}

/** Splits rows x [n, Σ widths] into parts [n, width] each, in order. */
export function splitColumns(x: Float32Array, n: number, parts: [Float32Array, number][]): void {
  const width = parts.reduce((s, [, w]) => s + w, 0);
  for (let t = 0; t < n; t++) {
    let col = t * width;
    for (const [out, w] of parts) {
      out.set(x.subarray(col, col + w), t * w);
      col += w;
    }
  }
}

/**
 * In place: row[offset + j] = softmax(scale · row[offset..offset+len))_j; entries from `len` up
 * to `width` are set to 0 (the causal mask).
 */
export function softmaxRow(row: Float32Array, offset: number, len: number, width: number, scale = 1): void {
  let max = -Infinity;
  for (let j = 0; j < len; j++) if (row[offset + j] > max) max = row[offset + j];
  let sum = 0;
  for (let j = 0; j < len; j++) {
    const e = Math.exp((row[offset + j] - max) * scale);
    row[offset + j] = e;
    sum += e;
  }
  const inv = 1 / sum;
  for (let j = 0; j < len; j++) row[offset + j] *= inv;
  row.fill(0, offset + len, offset + width);
}

/** Copies columns [col, col+w) of x [n, stride] into out [n, w]. */
export function gatherColumns(out: Float32Array, x: Float32Array, n: number, stride: number, col: number, w: number): void {
  for (let t = 0; t < n; t++) out.set(x.subarray(t * stride + col, t * stride + col + w), t * w);
}

/** Writes src [n, w] into columns [col, col+w) of out [n, stride]. */
export function scatterColumns(out: Float32Array, src: Float32Array, n: number, stride: number, col: number, w: number): void {
  for (let t = 0; t < n; t++) out.set(src.subarray(t * w, (t + 1) * w), t * stride + col);
}
