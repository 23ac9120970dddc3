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
import { softmaxRows } from '../tensor/softmax.js';
import { gatherColumns, scatterColumns } from './ops.js';

export interface AttentionShape {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
}

/** Score-matrix entries one block of queries may hold: the block's rows shrink as T grows, so memory stays linear in n. */
export const SCORE_BLOCK = 1 << 22;

export function attention(
  out: Float32Array, q: Float32Array, keys: Float32Array, values: Float32Array,
  n: number, T: number, stride: number, s: AttentionShape, ws: Workspace, scoreBlock = SCORE_BLOCK,
): void {
  const { nHeads: H, nKvHeads: KV, headDim: hd } = s;
  const group = H / KV;
  const qDim = H * hd;
  const start = T - n;
  const scale = 1 / Math.sqrt(hd);
  // queries in blocks of nb tokens: scores [group·nb, Tb] per block, Tb = the keys the block can see
  const nb = Math.max(1, Math.min(n, Math.floor(scoreBlock / (group * T))));
  const Qg = ws.get('att.q', group * nb * hd); // [group·nb, hd], row g·nb + t
  const S = ws.get('att.s', group * nb * T); // [group·nb, Tb]
  const Og = ws.get('att.o', group * nb * hd); // [group·nb, hd]
  for (let kvh = 0; kvh < KV; kvh++) {
    const Kh = keys.subarray(kvh * stride * hd, (kvh * stride + T) * hd); // [T, hd]
    const Vh = values.subarray(kvh * stride * hd, (kvh * stride + T) * hd); // [T, hd]
    for (let t0 = 0; t0 < n; t0 += nb) {
      const m = Math.min(nb, n - t0);
      const Tb = start + t0 + m; // causal: no query of this block sees a key past its last token
      for (let g = 0; g < group; g++) gatherColumns(Qg.subarray(g * m * hd), q.subarray(t0 * qDim), m, qDim, (kvh * group + g) * hd, hd);
      gemm(S, Qg, Kh, group * m, hd, Tb, false, true);
      // keys at positions ≤ each row's token
      softmaxRows(S, group * m, Tb, (r) => start + t0 + (r % m) + 1, scale);
      gemm(Og, S, Vh, group * m, Tb, hd, false, false);
      for (let g = 0; g < group; g++) scatterColumns(out.subarray(t0 * qDim), Og.subarray(g * m * hd), m, qDim, (kvh * group + g) * hd, hd);
    }
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
