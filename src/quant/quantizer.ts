/**
 * The quantizer interface shared by HIGGS and uniform (KIVI-style) quantization. A block is what
 * is really stored: bit-packed codes plus fp16 scales (and zero points); its size is counted
 * from those arrays, never from a formula.
 */
import { AquaError } from '../errors.js';

export interface QuantizedBlock {
  rows: number; // N token vectors
  cols: number; // C channels
  codes: Uint8Array; // bit-packed
  scales: Uint16Array; // fp16
  zeros: Uint16Array | null; // fp16 (uniform only)
}

export interface Quantizer {
  readonly spec: string;
  /** x [N, C] → block. Throws on NaN/Infinity, an empty batch, or a wrong channel count. */
  quantize(x: Float32Array, rows: number): QuantizedBlock;
  /** block → out [N, C]. */
  dequantize(block: QuantizedBlock, out: Float32Array): void;
  /** out [N, C] += the block's values, bit for bit as `dequantize` then an f32 add (optional: saves the copy). */
  dequantizeAdd?(block: QuantizedBlock, out: Float32Array): void;
  /** The lengths (elements) of the arrays of a block of `rows` tokens: what a stored block must have. */
  blockSize(rows: number): BlockSize;
  /**
   * True where each token is quantized alone, so a block of rows is its rows' blocks end to end
   * (`concatRows`) and rows may be quantized apart, in any groups, with the same result.
   */
  readonly rowwise?: boolean;
}

/** Blocks of a rowwise quantizer (`Quantizer.rowwise`), end to end: the block of all their rows. */
export function concatRows(blocks: QuantizedBlock[]): QuantizedBlock {
  if (blocks.length === 1) return blocks[0];
  const join = <T extends Uint8Array | Uint16Array>(parts: T[], make: (n: number) => T): T => {
    const out = make(parts.reduce((s, p) => s + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  };
  const zeros = blocks.map((b) => b.zeros);
  return {
    rows: blocks.reduce((s, b) => s + b.rows, 0),
    cols: blocks[0].cols,
    codes: join(blocks.map((b) => b.codes), (n) => new Uint8Array(n)),
    scales: join(blocks.map((b) => b.scales), (n) => new Uint16Array(n)),
    zeros: zeros.every((z) => z === null) ? null : join(zeros.map((z) => z ?? new Uint16Array(0)), (n) => new Uint16Array(n)),
  };
}

export interface BlockSize {
  codes: number; // bytes
  scales: number; // fp16 values
  zeros: number | null; // fp16 values, null when the quantizer has none
}

/** Whether `b` has the shape `q` makes for its rows (a block read from outside must, before it is decoded). */
export function blockFits(q: Quantizer, b: QuantizedBlock, cols: number): boolean {
  if (!Number.isInteger(b.rows) || b.rows < 1 || b.cols !== cols) return false;
  const s = q.blockSize(b.rows);
  return b.codes.length === s.codes && b.scales.length === s.scales && (s.zeros === null ? b.zeros === null : b.zeros?.length === s.zeros);
}

export function blockBytes(b: QuantizedBlock): number {
  return b.codes.byteLength + b.scales.byteLength + (b.zeros?.byteLength ?? 0);
}

/** Bits per stored value, every scale and zero point included. */
export function bitsPerValue(b: QuantizedBlock): number {
  return (blockBytes(b) * 8) / (b.rows * b.cols);
}

export function checkInput(where: string, x: Float32Array, rows: number, cols: number): void {
  if (!Number.isInteger(rows) || rows <= 0) throw new AquaError(`${where}: empty batch (rows = ${rows})`);
  if (x.length < rows * cols) throw new AquaError(`${where}: input has ${x.length} values, expected [${rows}, ${cols}] = ${rows * cols}`);
  for (let i = 0; i < rows * cols; i++) {
    if (!Number.isFinite(x[i])) throw new AquaError(`${where}: non-finite value ${x[i]} at row ${Math.floor(i / cols)}, channel ${i % cols}`);
  }
}
