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
  private cos: Float32Array;
  private sin: Float32Array;

  constructor(readonly headDim: number, theta: number, scaling: Llama3RopeScaling | null) {
    this.invFreq = ropeInvFreq(headDim, theta, scaling);
    this.cos = new Float32Array(headDim / 2);
    this.sin = new Float32Array(headDim / 2);
  }

  static forConfig(cfg: ModelConfig): Rope {
    return new Rope(cfg.headDim, cfg.ropeTheta, cfg.ropeScaling);
  }

  /**
   * Rotates x [n, nHeads·hd] in place; row t has position startPos + t.
   * Angles are computed in f64 then rounded, as HF computes cos/sin in f32 from f32 products.
   */
  apply(x: Float32Array, n: number, nHeads: number, startPos: number, inverse = false): void {
    const hd = this.headDim;
    const half = hd / 2;
    const width = nHeads * hd;
    const { cos, sin, invFreq } = this;
    const sign = inverse ? -1 : 1;
    for (let t = 0; t < n; t++) {
      const pos = startPos + t;
      for (let i = 0; i < half; i++) {
        const a = Math.fround(pos * Math.fround(invFreq[i]));
        cos[i] = Math.cos(a);
        sin[i] = sign * Math.sin(a);
      }
      for (let h = 0; h < nHeads; h++) {
        const o = t * width + h * hd;
        for (let i = 0; i < half; i++) {
          const x1 = x[o + i];
          const x2 = x[o + i + half];
          x[o + i] = x1 * cos[i] - x2 * sin[i];
          x[o + i + half] = x2 * cos[i] + x1 * sin[i];
        }
      }
    }
  }
}
