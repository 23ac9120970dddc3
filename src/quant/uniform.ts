/**
 * Asymmetric min–max (KIVI-style) uniform quantization at b ∈ {2, 3, 4, 8} bits:
 *   scale = (max − min)/(2^b − 1), zero = min, both stored fp16; code = round((x − zero)/scale).
 * Groups run along channels ('token': each token's channels in groups of `group`, KIVI's choice
 * for values) or along tokens ('channel': each channel's values over `group` consecutive tokens,
 * KIVI's choice for keys). A last partial group is allowed and counted as stored.
 */
import { AquaError } from '../errors.js';
import { f16ToF32, f32ToF16 } from '../tensor/f16.js';
import { packBits, packedBytes, unpackBits } from './bitpack.js';
import { checkInput, type BlockSize, type QuantizedBlock, type Quantizer } from './quantizer.js';

export type UniformAxis = 'token' | 'channel';
export const UNIFORM_BITS = [2, 3, 4, 8];

export class UniformQuantizer implements Quantizer {
  constructor(readonly bits: number, readonly axis: UniformAxis, readonly group: number, readonly cols: number) {
    if (!UNIFORM_BITS.includes(bits)) throw new AquaError(`uniform quantizer: bits must be one of ${UNIFORM_BITS.join(', ')}, got ${bits}`);
    if (!Number.isInteger(group) || group < 1) throw new AquaError(`uniform quantizer: group size must be a positive integer, got ${group}`);
  }

  get spec(): string {
    return `uniform:${this.bits}:${this.axis}:g${this.group}`;
  }

  /** Visits groups as lists of flat indices into [N, C]. */
  private forEachGroup(rows: number, fn: (g: number, at: (k: number) => number, size: number) => void): number {
    const C = this.cols;
    const G = this.group;
    let g = 0;
    if (this.axis === 'token') {
      for (let t = 0; t < rows; t++) {
        for (let c0 = 0; c0 < C; c0 += G) fn(g++, (k) => t * C + c0 + k, Math.min(G, C - c0));
      }
    } else {
      for (let t0 = 0; t0 < rows; t0 += G) {
        for (let c = 0; c < C; c++) fn(g++, (k) => (t0 + k) * C + c, Math.min(G, rows - t0));
      }
    }
    return g;
  }

  private groupCount(rows: number): number {
    return this.axis === 'token' ? rows * Math.ceil(this.cols / this.group) : Math.ceil(rows / this.group) * this.cols;
  }

  blockSize(rows: number): BlockSize {
    const groups = this.groupCount(rows);
    return { codes: packedBytes(rows * this.cols, this.bits), scales: groups, zeros: groups };
  }

  quantize(x: Float32Array, rows: number): QuantizedBlock {
    checkInput('UniformQuantizer.quantize', x, rows, this.cols);
    const n = rows * this.cols;
    const levels = 2 ** this.bits - 1;
    const groups = this.groupCount(rows);
    const scales = new Uint16Array(groups);
    const zeros = new Uint16Array(groups);
    const codes = new Uint32Array(n);
    this.forEachGroup(rows, (g, at, size) => {
      let lo = Infinity;
      let hi = -Infinity;
      for (let k = 0; k < size; k++) {
        const v = x[at(k)];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      // codes are computed with the stored (fp16-rounded) scale and zero, so decode matches
      zeros[g] = f32ToF16(lo);
      scales[g] = f32ToF16((hi - lo) / levels);
      const zero = f16ToF32(zeros[g]);
      const scale = f16ToF32(scales[g]);
      const inv = scale > 0 ? 1 / scale : 0;
      for (let k = 0; k < size; k++) {
        const i = at(k);
        codes[i] = Math.max(0, Math.min(levels, Math.round((x[i] - zero) * inv)));
      }
    });
    return { rows, cols: this.cols, codes: packBits(codes, n, this.bits), scales, zeros };
  }

  dequantize(block: QuantizedBlock, out: Float32Array): void {
    if (block.cols !== this.cols || !block.zeros) throw new AquaError(`UniformQuantizer.dequantize: block of ${block.cols} channels does not fit ${this.spec} over ${this.cols}`);
    const codes = unpackBits(block.codes, block.rows * this.cols, this.bits);
    const zeros = block.zeros;
    this.forEachGroup(block.rows, (g, at, size) => {
      const zero = f16ToF32(zeros[g]);
      const scale = f16ToF32(block.scales[g]);
      for (let k = 0; k < size; k++) {
        const i = at(k);
        out[i] = zero + codes[i] * scale;
      }
    });
  }
}
