/**
 * The identity "quantizer": stores the f32 values themselves (32 bits per value, no scales).
 * It stands where a method keeps a slot in full precision (`none`), so every slot of a cache
 * has a quantizer and stored bytes are counted the same way for all of them.
 */
import { AquaError } from '../errors.js';
import { checkInput, type BlockSize, type QuantizedBlock, type Quantizer } from './quantizer.js';

export class IdentityQuantizer implements Quantizer {
  readonly spec = 'none';
  readonly rowwise = true;

  constructor(readonly cols: number) {}

  blockSize(rows: number): BlockSize {
    return { codes: rows * this.cols * 4, scales: 0, zeros: null };
  }

  quantize(x: Float32Array, rows: number): QuantizedBlock {
    checkInput('IdentityQuantizer.quantize', x, rows, this.cols);
    const copy = x.slice(0, rows * this.cols);
    return { rows, cols: this.cols, codes: new Uint8Array(copy.buffer), scales: new Uint16Array(0), zeros: null };
  }

  dequantize(block: QuantizedBlock, out: Float32Array): void {
    if (block.cols !== this.cols || block.codes.byteLength !== block.rows * block.cols * 4) {
      throw new AquaError(`IdentityQuantizer.dequantize: block [${block.rows}, ${block.cols}] of ${block.codes.byteLength} bytes is not raw f32 over ${this.cols} channels`);
    }
    out.set(new Float32Array(block.codes.buffer, block.codes.byteOffset, block.rows * block.cols));
  }
}
