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
import { platform, type ScratchStore } from '../platform/index.js';
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
  /** Why it was dropped when not for validation error: the plan runs the slot without one (the budgeted allocation measured a lower KL so, allocate.ts step 4). */
  droppedBy?: 'plan';
}

export interface LayerErrors {
  layer: number;
  keys: SlotErrors | null;
  values: SlotErrors | null;
}

/**
 * A predictor that does no better than predicting zero on held-out tokens is dropped, and so is
 * one the allocation chose to run without (`unwanted`): fitted all the same, so its errors are
 * on record.
 */
function keep(p: LinearPredictor | null, e: SlotErrors | null, unwanted = false): LinearPredictor | null {
  if (!p || !e) return p;
  if (e.validRelMse >= 1) e.dropped = true;
  else if (unwanted) Object.assign(e, { dropped: true, droppedBy: 'plan' });
  return e.dropped ? null : p;
}

export interface FitOptions {
  method: CacheMethod; // concrete (not budgeted)
  predict: 'both' | 'keys' | 'values';
  fitOn: 'reconstructed' | 'original';
  damp: number;
  /** Slots ('k3', 'v5') to run without a predictor (the budgeted allocation's choice). */
  withoutPredictor?: readonly string[];
  onProgress?: (stage: string, done: number, total: number) => void;
}

/**
 * Keys (before RoPE) and values captured from the full-precision model, [N, C] per layer. Kept
 * out of memory (platform.scratchStore: a temporary file under Node) and read back one layer at
 * a time, so calibration holds a few layers' worth, not L: for Llama-3.2-1B's shapes and 64
 * windows of 2048 tokens, 8.6 GB captured against ~1.1 GB per layer held.
 */
export class Captured {
  private readonly store: ScratchStore;
  /** Per layer, where each sequence's rows of keys and of values lie in the store. */
  private readonly pieces: { keys: number; values: number; rows: number }[][];
  tokens = 0; // N

  constructor(readonly layers: number, readonly C: number) {
    this.store = platform.scratchStore();
    this.pieces = Array.from({ length: layers }, () => []);
  }

  /** Appends `rows` rows of layer l's keys and values. */
  add(layer: number, keys: Float32Array, values: Float32Array, rows: number): void {
    const bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, rows * this.C * 4);
    this.pieces[layer].push({ keys: this.store.append(bytes(keys)), values: this.store.append(bytes(values)), rows });
    if (layer === 0) this.tokens += rows;
  }

  /** Layer l's keys [N, C] (a fresh array). */
  keys(layer: number): Float32Array {
    return this.read(layer, 'keys');
  }

  /** Layer l's values [N, C] (a fresh array). */
  values(layer: number): Float32Array {
    return this.read(layer, 'values');
  }

  private read(layer: number, part: 'keys' | 'values'): Float32Array {
    const out = new Float32Array(this.tokens * this.C);
    let row = 0;
    for (const p of this.pieces[layer]) {
      this.store.read(p[part], new Uint8Array(out.buffer, row * this.C * 4, p.rows * this.C * 4));
      row += p.rows;
    }
    return out;
  }

  /** Frees the stored data. */
  close(): void {
    this.store.close();
  }
}

/** Runs each sequence through the full-precision model and keeps pre-RoPE keys and values. */
export function captureKeysValues(model: LlamaModel, sequences: number[][], onProgress?: (done: number, total: number) => void): Captured {
  const { nLayers: L, kvDim: C } = model.config;
  const captured = new Captured(L, C);
  // a layer's keys are tapped before its values: keep the keys until the values arrive
  const pendingKeys = new Float32Array(Math.max(0, ...sequences.map((q) => q.length)) * C);
  sequences.forEach((seq, i) => {
    model.forward(seq, new FullCache(model), {
      logits: 'none',
      tap: (stage, layer, data, rows) => {
        if (stage === 'keysPreRope') pendingKeys.set(data.subarray(0, rows * C));
        else if (stage === 'values') captured.add(layer, pendingKeys, data, rows);
      },
    });
    onProgress?.(i + 1, sequences.length);
  });
  return captured;
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
  // reconstructions of the previous layer, train and validation; exact keys and values are read
  // from the capture one layer at a time (this layer's, and the previous one's when fitting on
  // exact inputs)
  const load = (d: Captured, l: number) => ({ k: d.keys(l), v: d.values(l) });
  const reconstruct = (codec: LayerCodec, n: number, exact: { k: Float32Array; v: Float32Array }, prevK: Float32Array | null, prevV: Float32Array | null) => {
    const recK = new Float32Array(n * C);
    const recV = new Float32Array(n * C);
    if (n) codec.compress(exact.k, exact.v, prevK, prevV, n, recK, recV, ws);
    return { k: recK, v: recV };
  };
  // the codec's halves, for layers l ≥ 1: keys first, values once their predictor is fitted
  const reconstructKeys = (codec: LayerCodec, n: number, exactK: Float32Array, prevK: Float32Array) => {
    const recK = new Float32Array(n * C);
    if (n) codec.compressKeys(exactK, prevK, n, recK, ws);
    return recK;
  };
  const reconstructValues = (codec: LayerCodec, n: number, exactV: Float32Array, recK: Float32Array, prevV: Float32Array) => {
    const recV = new Float32Array(n * C);
    if (n) codec.compressValues(exactV, recK, prevV, n, recV, ws);
    return recV;
  };
  const codec0 = new LayerCodec(C, q.keys[0], q.values[0], null, null);
  let exactT = load(train, 0);
  let exactV = load(valid, 0);
  let prevT = reconstruct(codec0, nT, exactT, null, null);
  let prevV = reconstruct(codec0, nV, exactV, null, null);
  o.onProgress?.('fit', 1, L);
  for (let l = 1; l < L; l++) {
    const orig = o.fitOn === 'original';
    const lastT = exactT; // layer l − 1, exact
    exactT = load(train, l);
    exactV = load(valid, l);
    // keys: K̃_{l−1} → K_l
    let keyPred: LinearPredictor | null = null;
    let keyErr = null;
    if (o.predict !== 'values') {
      keyPred = fit(orig ? lastT.k : prevT.k, exactT.k, nT, C, C, o.damp);
      keyErr = errorsOf(keyPred, prevT.k, exactT.k, nT, prevV.k, exactV.k, nV);
      keyPred = keep(keyPred, keyErr, o.withoutPredictor?.includes(`k${l}`));
    }
    // K̃_l through the cache's codec (its keys' half: the value predictor is not fitted yet)
    const keyCodec = new LayerCodec(C, q.keys[l], q.values[l], keyPred, null);
    const kT = reconstructKeys(keyCodec, nT, exactT.k, prevT.k);
    const kV = reconstructKeys(keyCodec, nV, exactV.k, prevV.k);
    // values: [K̃_l ; Ṽ_{l−1}] → V_l
    let valuePred: LinearPredictor | null = null;
    let valueErr = null;
    if (o.predict !== 'keys') {
      const xT = orig ? concat(exactT.k, lastT.v, nT, C) : concat(kT, prevT.v, nT, C);
      valuePred = fit(xT, exactT.v, nT, 2 * C, C, o.damp);
      valueErr = errorsOf(valuePred, orig ? concat(kT, prevT.v, nT, C) : xT, exactT.v, nT, concat(kV, prevV.v, nV, C), exactV.v, nV);
      valuePred = keep(valuePred, valueErr, o.withoutPredictor?.includes(`v${l}`));
    }
    // Ṽ_l through the codec's values' half, onto the K̃_l above (what `compress` computes)
    const codec = new LayerCodec(C, q.keys[l], q.values[l], keyPred, valuePred);
    prevT = { k: kT, v: reconstructValues(codec, nT, exactT.v, kT, prevT.v) };
    prevV = { k: kV, v: reconstructValues(codec, nV, exactV.v, kV, prevV.v) };
    set.keys.push(keyPred);
    set.values.push(valuePred);
    layers.push({ layer: l, keys: keyErr, values: valueErr });
    o.onProgress?.('fit', l + 1, L);
  }
  return { set, layers };
}
