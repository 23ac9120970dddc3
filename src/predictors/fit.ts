/**
 * Sequential fitting of AQUA-KV's predictors on captured keys and values (reference:
 * train_predictors.py), through a concrete method's quantizers:
 * 1. Run the unquantized model over the calibration sequences and capture, for every layer, the
 *    keys before RoPE and the values, all KV heads flattened: [tokens, C].
 * 2. Layer 0 has no predictor: its keys and values are quantized with the method's layer-0 quantizers.
 * 3. For l ≥ 1, on reconstructed inputs (as the cache will see them): fit keys K̃_{l−1} → K_l,
 *    reconstruct K̃_l = prediction + deQ(Q(residual)); then fit values [K̃_l ; Ṽ_{l−1}] → V_l and
 *    reconstruct Ṽ_l. Targets are always the exact keys and values.
 * Reconstruction goes through the same LayerCodec the cache uses, so calibration sees exactly
 * what inference will.
 */
import { FullCache } from '../kv/full.js';
import { LayerCodec } from '../kv/layer-codec.js';
import type { LinearPredictor, PredictorSet } from '../kv/linear-predictor.js';
import { formatMethod, layerQuantizers, methodKey, type CacheMethod } from '../kv/method.js';
import type { LlamaModel } from '../model/llama.js';
import { Workspace } from '../tensor/workspace.js';
import { RidgeAccumulator } from './ridge.js';

/**
 * Train and validation errors of one layer's predictors (null: none fitted). `dropped`: fitted,
 * but on validation it did worse than no predictor (relMSE ≥ 1, the error of predicting zero), so
 * the slot runs without one.
 */
export interface SlotErrors {
  trainRelMse: number;
  validRelMse: number;
  equivalentBits: number;
  dropped?: boolean;
}

export interface LayerErrors {
  layer: number;
  keys: SlotErrors | null;
  values: SlotErrors | null;
}

/** A predictor that does no better than predicting zero on held-out tokens is dropped. */
function keep(p: LinearPredictor | null, e: SlotErrors | null): LinearPredictor | null {
  if (!p || !e || !(e.validRelMse >= 1)) return p;
  e.dropped = true;
  return null;
}

export interface FitOptions {
  method: CacheMethod; // concrete (not budgeted)
  predict: 'both' | 'keys' | 'values';
  fitOn: 'reconstructed' | 'original';
  damp: number;
  onProgress?: (stage: string, done: number, total: number) => void;
}

export interface Captured {
  keys: Float32Array[]; // [L] of [N, C], before RoPE
  values: Float32Array[]; // [L] of [N, C]
  tokens: number; // N
}

/** Runs each sequence through the full-precision model and keeps pre-RoPE keys and values. */
export function captureKeysValues(model: LlamaModel, sequences: number[][], onProgress?: (done: number, total: number) => void): Captured {
  const { nLayers: L, kvDim: C } = model.config;
  const N = sequences.reduce((s, q) => s + q.length, 0);
  const keys = Array.from({ length: L }, () => new Float32Array(N * C));
  const values = Array.from({ length: L }, () => new Float32Array(N * C));
  let row = 0;
  sequences.forEach((seq, i) => {
    model.forward(seq, new FullCache(model), {
      logits: 'none',
      tap: (stage, layer, data, rows) => {
        if (stage === 'keysPreRope') keys[layer].set(data.subarray(0, rows * C), row * C);
        else if (stage === 'values') values[layer].set(data.subarray(0, rows * C), row * C);
      },
    });
    row += seq.length;
    onProgress?.(i + 1, sequences.length);
  });
  return { keys, values, tokens: N };
}

/** ‖pred − y‖² / ‖y‖² over n rows of C. */
export function relativeMse(pred: Float32Array, y: Float32Array, count: number): number {
  let e = 0;
  let s = 0;
  for (let i = 0; i < count; i++) {
    e += (pred[i] - y[i]) ** 2;
    s += y[i] ** 2;
  }
  return s > 0 ? e / s : 0;
}

const RIDGE_BATCH = 4096;

function fit(x: Float32Array, y: Float32Array, n: number, inDim: number, outDim: number, damp: number): LinearPredictor {
  const acc = new RidgeAccumulator(inDim, outDim);
  for (let r = 0; r < n; r += RIDGE_BATCH) {
    const m = Math.min(RIDGE_BATCH, n - r);
    acc.add(x.subarray(r * inDim, (r + m) * inDim), y.subarray(r * outDim, (r + m) * outDim), m);
  }
  return acc.solve(damp);
}

/** [a ; b] per token: [n, 2C]. */
function concat(a: Float32Array, b: Float32Array, n: number, C: number): Float32Array {
  const out = new Float32Array(n * 2 * C);
  for (let t = 0; t < n; t++) {
    out.set(a.subarray(t * C, (t + 1) * C), t * 2 * C);
    out.set(b.subarray(t * C, (t + 1) * C), t * 2 * C + C);
  }
  return out;
}

function errorsOf(p: LinearPredictor, xTrain: Float32Array, yTrain: Float32Array, nTrain: number, xValid: Float32Array, yValid: Float32Array, nValid: number): SlotErrors {
  const C = p.outDim;
  const pt = new Float32Array(nTrain * C);
  p.apply(pt, xTrain, nTrain);
  const pv = new Float32Array(nValid * C);
  if (nValid) p.apply(pv, xValid, nValid);
  const trainRelMse = relativeMse(pt, yTrain, nTrain * C);
  const validRelMse = nValid ? relativeMse(pv, yValid, nValid * C) : NaN;
  return { trainRelMse, validRelMse, equivalentBits: -Math.log(nValid ? validRelMse : trainRelMse) / Math.log(4) };
}

/** Fits layer by layer on captured keys and values (train), measuring errors on `valid`. */
export function fitPredictors(
  model: LlamaModel, train: Captured, valid: Captured, o: FitOptions,
): { set: PredictorSet; layers: LayerErrors[] } {
  const { nLayers: L, kvDim: C } = model.config;
  const q = layerQuantizers(o.method, C, L);
  const ws = new Workspace();
  const set: PredictorSet = { method: formatMethod(o.method), methodKey: methodKey(o.method, C), budget: null, keys: [null], values: [null] };
  const layers: LayerErrors[] = [{ layer: 0, keys: null, values: null }];
  const nT = train.tokens;
  const nV = valid.tokens;
  // reconstructions of the previous layer, train and validation
  const reconstruct = (codec: LayerCodec, d: Captured, l: number, prevK: Float32Array | null, prevV: Float32Array | null) => {
    const n = d.tokens;
    const recK = new Float32Array(n * C);
    const recV = new Float32Array(n * C);
    if (n) codec.compress(d.keys[l], d.values[l], prevK, prevV, n, recK, recV, ws);
    return { k: recK, v: recV };
  };
  const codec0 = new LayerCodec(C, q.keys[0], q.values[0], null, null);
  let prevT = reconstruct(codec0, train, 0, null, null);
  let prevV = reconstruct(codec0, valid, 0, null, null);
  o.onProgress?.('fit', 1, L);
  for (let l = 1; l < L; l++) {
    const orig = o.fitOn === 'original';
    // keys: K̃_{l−1} → K_l
    let keyPred: LinearPredictor | null = null;
    let keyErr = null;
    if (o.predict !== 'values') {
      keyPred = fit(orig ? train.keys[l - 1] : prevT.k, train.keys[l], nT, C, C, o.damp);
      keyErr = errorsOf(keyPred, prevT.k, train.keys[l], nT, prevV.k, valid.keys[l], nV);
      keyPred = keep(keyPred, keyErr);
    }
    // K̃_l through the cache's codec (the value part is redone below with its predictor)
    const keyCodec = new LayerCodec(C, q.keys[l], q.values[l], keyPred, null);
    const kT = reconstruct(keyCodec, train, l, prevT.k, prevT.v).k;
    const kV = reconstruct(keyCodec, valid, l, prevV.k, prevV.v).k;
    // values: [K̃_l ; Ṽ_{l−1}] → V_l
    let valuePred: LinearPredictor | null = null;
    let valueErr = null;
    if (o.predict !== 'keys') {
      const xT = orig ? concat(train.keys[l], train.values[l - 1], nT, C) : concat(kT, prevT.v, nT, C);
      valuePred = fit(xT, train.values[l], nT, 2 * C, C, o.damp);
      valueErr = errorsOf(valuePred, concat(kT, prevT.v, nT, C), train.values[l], nT, concat(kV, prevV.v, nV, C), valid.values[l], nV);
      valuePred = keep(valuePred, valueErr);
    }
    const codec = new LayerCodec(C, q.keys[l], q.values[l], keyPred, valuePred);
    prevT = reconstruct(codec, train, l, prevT.k, prevT.v);
    prevV = reconstruct(codec, valid, l, prevV.k, prevV.v);
    set.keys.push(keyPred);
    set.values.push(valuePred);
    layers.push({ layer: l, keys: keyErr, values: valueErr });
    o.onProgress?.('fit', l + 1, L);
  }
  return { set, layers };
}
