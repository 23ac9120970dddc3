/**
 * Model weights, one field per tensor, with the shape each must have. Norms and biases are f32;
 * matrices (`Matrix`) are f32 or, loaded from a 16-bit checkpoint, kept in its 16 bits.
 * Linear weights keep HF's [out, in] layout, so y = x·Wᵀ (`linear`, gemm with transB).
 */
import { platform } from '../platform/index.js';
import { HalfMatrix, type Matrix } from '../tensor/half-matrix.js';
import type { ModelConfig } from './config.js';

export type { Matrix };

/** `M` is the matrices' type: `Matrix` for a loaded model, `Float32Array` where code trains or edits weights. */
export interface LayerWeights<M extends Matrix = Matrix> {
  attnNorm: Float32Array; // [D]
  wq: M; // [H·hd, D]
  wk: M; // [KV·hd, D]
  wv: M; // [KV·hd, D]
  wo: M; // [D, H·hd]
  bq: Float32Array | null; // [H·hd]
  bk: Float32Array | null; // [KV·hd]
  bv: Float32Array | null; // [KV·hd]
  bo: Float32Array | null; // [D]
  mlpNorm: Float32Array; // [D]
  wGate: M; // [F, D]
  wUp: M; // [F, D]
  wDown: M; // [D, F]
}

export interface ModelWeights<M extends Matrix = Matrix> {
  embed: M; // [V, D]
  layers: LayerWeights<M>[]; // [L]
  finalNorm: Float32Array; // [D]
  lmHead: M; // [V, D]; the same object as `embed` when tied
}

/** The shape each tensor must have under `cfg`; used by the loader and the checkpoint writer. */
export function layerShapes(cfg: ModelConfig): Record<keyof LayerWeights, number[] | null> {
  const { hiddenSize: D, qDim, kvDim, intermediateSize: F } = cfg;
  return {
    attnNorm: [D],
    wq: [qDim, D],
    wk: [kvDim, D],
    wv: [kvDim, D],
    wo: [D, qDim],
    bq: cfg.qkvBias ? [qDim] : null,
    bk: cfg.qkvBias ? [kvDim] : null,
    bv: cfg.qkvBias ? [kvDim] : null,
    bo: cfg.oBias ? [D] : null,
    mlpNorm: [D],
    wGate: [F, D],
    wUp: [F, D],
    wDown: [D, F],
  };
}

/**
 * A hash of every weight's values (f32 bytes, in a fixed order). The config's fingerprint says
 * which architecture and shapes a file fits; this says which trained model it came from, so
 * predictors calibrated on one model are not reused for a retrained one of the same shape.
 */
export function weightsDigest(w: ModelWeights): string {
  const h = platform.sha256();
  const add = (a: Matrix | null) => {
    if (a instanceof HalfMatrix) {
      // the f32 values it stands for, so a model hashes the same however its matrices are held
      const rows = Math.max(1, Math.floor(65536 / a.cols));
      for (let r = 0; r < a.rows; r += rows) {
        const part = a.toF32(r, Math.min(a.rows, r + rows));
        h.update(new Uint8Array(part.buffer, part.byteOffset, part.byteLength));
      }
    } else if (a) {
      h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    }
    h.update('|');
  };
  add(w.embed);
  for (const l of w.layers) {
    for (const a of [l.attnNorm, l.wq, l.wk, l.wv, l.wo, l.bq, l.bk, l.bv, l.bo, l.mlpNorm, l.wGate, l.wUp, l.wDown]) add(a);
  }
  add(w.finalNorm);
  add(w.lmHead === w.embed ? null : w.lmHead);
  return h.digest();
}

/** Bytes of the weights as held (16-bit matrices at 2 bytes a value), each array once (a tied head is the embedding). */
export function heldWeightBytes(w: ModelWeights): number {
  let bytes = w.embed.byteLength + w.finalNorm.byteLength + (w.lmHead === w.embed ? 0 : w.lmHead.byteLength);
  for (const lw of w.layers) for (const x of Object.values(lw) as (Matrix | null)[]) if (x) bytes += x.byteLength;
  return bytes;
}

/** A layer's projections that read the same input, as one matrix each (one product instead of three, or two). */
export interface FusedLayer {
  wqkv: Matrix; // [H·hd + 2·KV·hd, D]: wq, wk, wv stacked
  bqkv: Float32Array | null;
  wGateUp: Matrix; // [2F, D]: wGate, wUp stacked
}

/**
 * Stacks each layer's q/k/v and gate/up projections into one matrix, and makes the layer's own
 * fields views into it (so memory does not grow once the originals are dropped). Decode runs a
 * few dozen small products per token, each a native call: fewer calls, less overhead.
 */
export function fuseProjections(w: ModelWeights): FusedLayer[] {
  const stackF32 = (parts: Float32Array[]) => {
    const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    const views = parts.map((p) => {
      out.set(p, at);
      const v = out.subarray(at, at + p.length);
      at += p.length;
      return v;
    });
    return { out, views };
  };
  // 16-bit matrices stack in their arena (in place when the loader put them side by side);
  // a layer that mixes types is widened to f32.
  const stack = (parts: Matrix[]): { out: Matrix; views: Matrix[] } => {
    if (parts.every((p): p is HalfMatrix => p instanceof HalfMatrix && p.dtype === (parts[0] as HalfMatrix).dtype)) {
      const out = HalfMatrix.stack(parts);
      let r = 0;
      const views = parts.map((p) => out.rowRange(r, (r += p.rows)));
      return { out, views };
    }
    return stackF32(parts.map((p) => (p instanceof HalfMatrix ? p.toF32() : p)));
  };
  return w.layers.map((lw) => {
    const qkv = stack([lw.wq, lw.wk, lw.wv]);
    [lw.wq, lw.wk, lw.wv] = qkv.views;
    let bqkv: Float32Array | null = null;
    if (lw.bq && lw.bk && lw.bv) {
      const b = stackF32([lw.bq, lw.bk, lw.bv]);
      [lw.bq, lw.bk, lw.bv] = b.views;
      bqkv = b.out;
    }
    const gu = stack([lw.wGate, lw.wUp]);
    [lw.wGate, lw.wUp] = gu.views;
    return { wqkv: qkv.out, bqkv, wGateUp: gu.out };
  });
}
