/**
 * Causal grouped-query attention over the cache's view.
 *   q    [n, H·hd]           this step's queries, RoPE applied; token t sits at position T − n + t
 *   keys [KV][stride, hd]    every cached key (RoPE applied), head-major (model/kv-cache.ts LayerView); values likewise
 *   out  [n, H·hd]
 * The H/KV query heads that share a KV head are stacked into one [group·n, hd] matrix, so each
 * KV head costs two matrix products, reading the head's cached rows where they lie:
 * scores = Q·Kᵀ, then out = softmax(scores)·V.
 */
import { gemm } from '../tensor/gemm.js';
import type { Workspace } from '../tensor/workspace.js';
import { gatherColumns, scatterColumns, softmaxRow } from './ops.js';

export interface AttentionShape {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
}

export function attention(
  out: Float32Array, q: Float32Array, keys: Float32Array, values: Float32Array,
  n: number, T: number, stride: number, s: AttentionShape, ws: Workspace,
): void {
  const { nHeads: H, nKvHeads: KV, headDim: hd } = s;
  const group = H / KV;
  const qDim = H * hd;
  const start = T - n;
  const scale = 1 / Math.sqrt(hd);
  const Qg = ws.get('att.q', group * n * hd); // [group·n, hd], row g·n + t
  const S = ws.get('att.s', group * n * T); // [group·n, T]
  const Og = ws.get('att.o', group * n * hd); // [group·n, hd]
  for (let kvh = 0; kvh < KV; kvh++) {
    const Kh = keys.subarray(kvh * stride * hd, (kvh * stride + T) * hd); // [T, hd]
    const Vh = values.subarray(kvh * stride * hd, (kvh * stride + T) * hd); // [T, hd]
    for (let g = 0; g < group; g++) gatherColumns(Qg.subarray(g * n * hd), q, n, qDim, (kvh * group + g) * hd, hd);
    gemm(S, Qg, Kh, group * n, hd, T, false, true);
    for (let r = 0; r < group * n; r++) {
      const t = r % n;
      const o = r * T;
      const visible = start + t + 1; // causal: keys at positions ≤ this token's
      softmaxRow(S, o, visible, T, scale);
    }
    gemm(Og, S, Vh, group * n, T, hd, false, false);
    for (let g = 0; g < group; g++) scatterColumns(out, Og.subarray(g * n * hd), n, qDim, (kvh * group + g) * hd, hd);
  }
}

/** The definition, one query at a time; the oracle for `attention` in tests. */
export function attentionNaive(
  out: Float32Array, q: Float32Array, keys: Float32Array, values: Float32Array,
  n: number, T: number, stride: number, s: AttentionShape,
): void {
  const { nHeads: H, nKvHeads: KV, headDim: hd } = s;
  for (let t = 0; t < n; t++) {
    for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / (H / KV));
      const visible = T - n + t + 1;
      const w = new Float64Array(visible);
      let max = -Infinity;
      for (let j = 0; j < visible; j++) {
        let d = 0;
        for (let i = 0; i < hd; i++) d += q[t * H * hd + h * hd + i] * keys[(kvh * stride + j) * hd + i];
        w[j] = d / Math.sqrt(hd);
        max = Math.max(max, w[j]);
      }
      let sum = 0;
      for (let j = 0; j < visible; j++) sum += (w[j] = Math.exp(w[j] - max));
      for (let i = 0; i < hd; i++) {
        let acc = 0;
        for (let j = 0; j < visible; j++) acc += w[j] * values[(kvh * stride + j) * hd + i];
        out[t * H * hd + h * hd + i] = acc / sum;
      }
    }
  }
}
