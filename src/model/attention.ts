/**
 * Causal grouped-query attention over the cache's view.
 *   q    [n, H·hd]           this step's queries, RoPE applied; token t sits at position T − n + t
 *   keys [KV][stride, hd]    every cached key (RoPE applied), head-major (model/kv-cache.ts LayerView); values likewise
 *   out  [n, H·hd]
 * The H/KV query heads that share a KV head are stacked into one [group·n, hd] matrix, so each
 * KV head costs two matrix products, reading the head's cached rows where they lie:
 * scores = Q·Kᵀ, then out = softmax(scores)·V.
 *
 * One new token (decode) takes the SIMD kernels instead: its products are a few hundred
 * thousand multiply-adds, less than the native product's per-call cost, and where the cache
 * keeps its rows in WebAssembly memory (`LayerView.inPlace`) the kernels read them there. Like
 * the weight products (tensor/half-matrix.ts), a token computed alone may round differently from
 * the same token computed in a block of several; each path on its own is deterministic.
 */
import { gemm } from '../tensor/gemm.js';
import type { Workspace } from '../tensor/workspace.js';
import { softmaxRows } from '../tensor/softmax.js';
import { WasmArena, type KernelExports, type KernelMemory } from '../tensor/wasm-arena.js';
import type { LayerView } from './kv-cache.js';
import { gatherColumns, scatterColumns } from './ops.js';

export interface AttentionShape {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
}

/** Score-matrix entries one block of queries may hold: the block's rows shrink as T grows, so memory stays linear in n. */
export const SCORE_BLOCK = 1 << 22;

export function attention(out: Float32Array, q: Float32Array, view: LayerView, n: number, s: AttentionShape, ws: Workspace, scoreBlock = SCORE_BLOCK): void {
  if (n === 1 && s.headDim % 8 === 0) attendOne(out, q, view, s);
  else attendBlocks(out, q, view, n, s, ws, scoreBlock);
}

/** Queries in blocks, each KV head's products through `gemm`. */
function attendBlocks(out: Float32Array, q: Float32Array, view: LayerView, n: number, s: AttentionShape, ws: Workspace, scoreBlock: number): void {
  const { keys, values, length: T, stride } = view;
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

/**
 * One token's attention through the kernels: per KV head, scores [group, T] = Q·Kᵀ and their
 * softmax in the keys' memory, then the probabilities times V in the values' memory. A query row
 * sees every cached key (it is the last token), so no mask.
 */
function attendOne(out: Float32Array, q: Float32Array, view: LayerView, s: AttentionShape): void {
  const { length: T, stride } = view;
  const { nHeads: H, nKvHeads: KV, headDim: hd } = s;
  const group = H / KV;
  const T4 = Math.ceil(T / 4) * 4; // the softmax kernel takes rows of 4·i entries, padded with −∞
  const scale = 1 / Math.sqrt(hd);
  const qBytes = group * hd * 4;
  const sBytes = group * T4 * 4;
  const extra = qBytes + sBytes;
  const K = view.inPlace?.keys ?? copied.keys.load(view.keys, KV, stride, T, hd, extra);
  const V = view.inPlace?.values ?? copied.values.load(view.values, KV, stride, T, hd, extra);
  const headBytes = (view.inPlace ? stride : T) * hd * 4; // from one KV head's rows to the next
  // queries then scores in the keys' memory; probabilities then outputs in the values'
  const qAt = K.scratch(extra);
  const sAt = qAt + qBytes;
  const pAt = V.scratch(extra);
  const oAt = pAt + sBytes;
  for (let kvh = 0; kvh < KV; kvh++) {
    // the group's query heads are adjacent in q: [group, hd] as they lie
    K.f32(qAt, group * hd).set(q.subarray(kvh * group * hd, (kvh + 1) * group * hd));
    K.kernels.dot_f32(K.rowsAt + kvh * headBytes, qAt, sAt, group, hd, T, T4);
    for (let g = 0; g < group; g++) {
      if (T4 > T) K.f32(sAt + (g * T4 + T) * 4, T4 - T).fill(-Infinity);
      K.kernels.softmax_f32(sAt + g * T4 * 4, T4, scale);
    }
    // probabilities [group, T] (unpadded) beside the values: one sweep of V serves two rows
    for (let g = 0; g < group; g++) V.f32(pAt + g * T * 4, T).set(K.f32(sAt + g * T4 * 4, T));
    V.kernels.rows_f32(V.rowsAt + kvh * headBytes, pAt, oAt, group, T, hd);
    out.set(V.f32(oAt, group * hd), kvh * group * hd);
  }
}

/**
 * Keys or values of a cache that does not keep them in WebAssembly memory (compact mode's
 * per-step rebuild), copied into memory of attention's own: [KV][T, hd], then scratch.
 */
class CopiedRows implements KernelMemory {
  private arena: WasmArena | null = null;
  rowsAt = 0;
  private rowBytes = 0;
  private room = 0;

  get kernels(): KernelExports {
    return this.arena!.kernels;
  }

  load(src: Float32Array, heads: number, stride: number, T: number, hd: number, scratchBytes: number): this {
    this.arena ??= new WasmArena(0, false);
    this.rowBytes = heads * T * hd * 4;
    this.room = scratchBytes;
    this.rowsAt = this.arena.wideScratch(this.rowBytes + scratchBytes);
    for (let h = 0; h < heads; h++) this.arena.f32(this.rowsAt + h * T * hd * 4, T * hd).set(src.subarray(h * stride * hd, (h * stride + T) * hd));
    return this;
  }

  f32(at: number, length: number): Float32Array {
    return this.arena!.f32(at, length);
  }

  scratch(bytes: number): number {
    if (bytes > this.room) throw new RangeError(`attention: ${bytes} bytes of scratch asked, ${this.room} set aside`);
    return this.rowsAt + this.rowBytes;
  }
}

const copied = { keys: new CopiedRows(), values: new CopiedRows() };

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
