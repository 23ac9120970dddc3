/**
 * Model weights in f32, one field per tensor, with the shape each must have.
 * Linear weights keep HF's [out, in] layout, so y = x·Wᵀ (gemm with transB).
 */
import { platform } from '../platform/index.js';
import type { ModelConfig } from './config.js';

export interface LayerWeights {
  attnNorm: Float32Array; // [D]
  wq: Float32Array; // [H·hd, D]
  wk: Float32Array; // [KV·hd, D]
  wv: Float32Array; // [KV·hd, D]
  wo: Float32Array; // [D, H·hd]
  bq: Float32Array | null; // [H·hd]
  bk: Float32Array | null; // [KV·hd]
  bv: Float32Array | null; // [KV·hd]
  bo: Float32Array | null; // [D]
  mlpNorm: Float32Array; // [D]
  wGate: Float32Array; // [F, D]
  wUp: Float32Array; // [F, D]
  wDown: Float32Array; // [D, F]
}

export interface ModelWeights {
  embed: Float32Array; // [V, D]
  layers: LayerWeights[]; // [L]
  finalNorm: Float32Array; // [D]
  lmHead: Float32Array; // [V, D]; the same array as `embed` when tied
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
  const add = (a: Float32Array | null) => {
    h.update(a ? new Uint8Array(a.buffer, a.byteOffset, a.byteLength) : new Uint8Array(0));
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

/** A layer's projections that read the same input, as one matrix each (one product instead of three, or two). */
export interface FusedLayer {
  wqkv: Float32Array; // [H·hd + 2·KV·hd, D]: wq, wk, wv stacked
  bqkv: Float32Array | null;
  wGateUp: Float32Array; // [2F, D]: wGate, wUp stacked
}

/**
 * Stacks each layer's q/k/v and gate/up projections into one matrix, and makes the layer's own
 * fields views into it (so memory does not grow once the originals are dropped). Decode runs a
 * few dozen small products per token, each a native call: fewer calls, less overhead.
 */
export function fuseProjections(w: ModelWeights): FusedLayer[] {
  const stack = (parts: Float32Array[]) => {
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
  return w.layers.map((lw) => {
    const qkv = stack([lw.wq, lw.wk, lw.wv]);
    [lw.wq, lw.wk, lw.wv] = qkv.views;
    let bqkv: Float32Array | null = null;
    if (lw.bq && lw.bk && lw.bv) {
      const b = stack([lw.bq, lw.bk, lw.bv]);
      [lw.bq, lw.bk, lw.bv] = b.views;
      bqkv = b.out;
    }
    const gu = stack([lw.wGate, lw.wUp]);
    [lw.wGate, lw.wUp] = gu.views;
    return { wqkv: qkv.out, bqkv, wGateUp: gu.out };
  });
}
