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
