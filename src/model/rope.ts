/**
 * Rotary position embeddings in HF's rotate-half convention: within each head, channel i pairs
 * with channel i + hd/2 and the pair is rotated by angle pos·θ_i, θ_i = base^(−2i/hd)
 * (transformers' apply_rotary_pos_emb). Llama 3's frequency scaling is applied to θ once here.
 * `inverse` rotates by −angle, undoing the rotation exactly (AQUA-KV stores keys before RoPE).
 */
import type { Llama3RopeScaling, ModelConfig } from './config.js';

/** θ_i for i < hd/2, after llama3 scaling if configured (transformers' _compute_llama3_parameters). */
export function ropeInvFreq(headDim: number, theta: number, scaling: Llama3RopeScaling | null): Float64Array {
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(theta, (2 * i) / headDim);
  if (!scaling) return inv;
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: oldLen } = scaling;
  const lowFreqWavelen = oldLen / lowFreqFactor;
  const highFreqWavelen = oldLen / highFreqFactor;
  for (let i = 0; i < half; i++) {
    const wavelen = (2 * Math.PI) / inv[i];
    if (wavelen > lowFreqWavelen) inv[i] = inv[i] / factor; // long wavelengths: interpolate
    else if (wavelen >= highFreqWavelen) {
      // medium: blend between scaled and unscaled
      const smooth = (oldLen / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
      inv[i] = (1 - smooth) * (inv[i] / factor) + smooth * inv[i];
    } // short wavelengths: unchanged
  }
  return inv;
}

export class Rope {
  readonly invFreq: Float64Array;
  // cos/sin of every position seen so far, [positions, hd/2] each, built once (grown by doubling):
  // decode rotates every cached chunk's keys at every step, so angles are never recomputed per token
  private cosTable = new Float32Array(0);
  private sinTable = new Float32Array(0);
  private positions = 0;

  constructor(readonly headDim: number, theta: number, scaling: Llama3RopeScaling | null) {
    this.invFreq = ropeInvFreq(headDim, theta, scaling);
  }

  static forConfig(cfg: ModelConfig): Rope {
    return new Rope(cfg.headDim, cfg.ropeTheta, cfg.ropeScaling);
  }

  /**
   * Extends the tables to cover positions [0, end). Angles are computed in f64 then rounded, as
   * HF computes cos/sin in f32 from f32 products.
   */
  private cover(end: number): void {
    if (end <= this.positions) return;
    const half = this.headDim / 2;
    const next = Math.max(end, 2 * this.positions, 256);
    const cos = new Float32Array(next * half);
    const sin = new Float32Array(next * half);
    cos.set(this.cosTable);
    sin.set(this.sinTable);
    const inv = Float32Array.from(this.invFreq);
    for (let pos = this.positions; pos < next; pos++) {
      for (let i = 0; i < half; i++) {
        const a = Math.fround(pos * inv[i]);
        cos[pos * half + i] = Math.cos(a);
        sin[pos * half + i] = Math.sin(a);
      }
    }
    this.cosTable = cos;
    this.sinTable = sin;
    this.positions = next;
  }

  /**
   * cos and sin of positions [0, end) (at least), [positions, hd/2] each: views of the tables,
   * valid until they next grow. For kernels that rotate rows themselves (kv/fused-rebuild.ts).
   */
  tables(end: number): { cos: Float32Array; sin: Float32Array } {
    this.cover(end);
    return { cos: this.cosTable, sin: this.sinTable };
  }

  /**
   * Rotates x [n, nHeads·hd] in place; row t has position startPos + t. In f32 arithmetic, as
   * transformers rotates f32 keys and queries (q·cos + rotate_half(q)·sin: each product rounded to
   * f32, then their sum): a product of two f32 is exact in f64, so `fround` of it is the f32
   * product, and the sum of two f32 computed in f64 then stored rounds as the f32 sum does. The
   * WebAssembly fan-out (kv/fused-rebuild.ts) rotates with the same f32 vector operations.
   */
  apply(x: Float32Array, n: number, nHeads: number, startPos: number, inverse = false): void {
    const hd = this.headDim;
    const half = hd / 2;
    const width = nHeads * hd;
    this.cover(startPos + n);
    const { cosTable, sinTable } = this;
    // the inverse rotates by −angle: sin negated (exact), cos unchanged
    const sign = inverse ? -1 : 1;
    for (let t = 0; t < n; t++) {
      const p = (startPos + t) * half;
      for (let h = 0; h < nHeads; h++) {
        const o = t * width + h * hd;
        for (let i = 0; i < half; i++) {
          const c = cosTable[p + i], s = sign * sinTable[p + i];
          const x1 = x[o + i];
          const x2 = x[o + i + half];
          x[o + i] = Math.fround(x1 * c) - Math.fround(x2 * s);
          x[o + i + half] = Math.fround(x2 * c) + Math.fround(x1 * s);
        }
      }
    }
  }
}
