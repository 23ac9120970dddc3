/**
 * The predictor file: safetensors (little-endian f32) with
 *   layers.{l}.key.weight [C, C], layers.{l}.key.bias [C],
 *   layers.{l}.value.weight [C, 2C], layers.{l}.value.bias [C]     for l ≥ 1 (either may be absent)
 * and __metadata__ { format: "aquakv-predictors", version: "2", info: JSON of PredictorInfo }.
 * Version 2 records the cache method the predictors were fitted for (version 1 recorded its two
 * quantizers, read here as the aquakv method they make).
 * Loading checks the format, the version, the model fingerprint and the weights digest (a
 * retrained model of the same shape needs its own predictors); a cache then checks the method.
 */
import { AquaError } from '../errors.js';
import { encodeSafetensors, SafetensorsBytes, type TensorToWrite } from '../io/safetensors-format.js';
import { LinearPredictor, type PredictorSet } from '../kv/linear-predictor.js';
import { formatMethod, methodKey, parseMethod } from '../kv/method.js';
import type { LlamaModel } from '../model/llama.js';
import type { Allocation } from './allocate.js';
import type { LayerErrors } from './fit.js';

export type { LayerErrors };
import { platform } from '../platform/index.js';

export const PREDICTOR_FORMAT = 'aquakv-predictors';
export const PREDICTOR_VERSION = '2';

export interface PredictorInfo {
  /** `weights`: the model's weights digest (absent in files written before it was recorded). */
  model: { fingerprint: string; weights?: string; architecture: string; nLayers: number; kvDim: number; hiddenSize: number };
  method: string; // the cache method fitted for, canonical (for a budget: the plan chosen)
  methodKey: string; // the same with every quantizer resolved for this model
  /** Budgeted calibration: the budget, and how the plan was chosen. */
  budget?: number;
  allocation?: Allocation;
  predict: 'both' | 'keys' | 'values';
  fitOn: 'reconstructed' | 'original';
  damp: number;
  data: { source: string; samples: number; seqLen: number; trainTokens: number; validTokens: number };
  layers: LayerErrors[];
}

/**
 * What calibration makes and a predictor file holds. The file holds no timing, so identical
 * calibrations write identical bytes; `seconds` is the calibration's own (absent when loaded).
 */
export interface CalibratedPredictors {
  set: PredictorSet;
  info: PredictorInfo;
  seconds?: number;
}

/** The model a predictor file is checked against. */
export type PredictorModel = Pick<LlamaModel, 'config' | 'weightsDigest'>;

export function encodePredictors(p: CalibratedPredictors): Uint8Array {
  const tensors: TensorToWrite[] = [];
  for (const [part, list] of [['key', p.set.keys], ['value', p.set.values]] as const) {
    list.forEach((x, l) => {
      if (!x) return;
      tensors.push({ name: `layers.${l}.${part}.weight`, shape: [x.outDim, x.inDim], data: x.weight, dtype: 'F32' });
      tensors.push({ name: `layers.${l}.${part}.bias`, shape: [x.outDim], data: x.bias, dtype: 'F32' });
    });
  }
  const { seconds: _ignored, ...info } = p.info as PredictorInfo & { seconds?: number }; // older objects may carry one
  return encodeSafetensors(tensors, { format: PREDICTOR_FORMAT, version: PREDICTOR_VERSION, info: JSON.stringify(info) });
}

/** Reads predictors from the bytes of a file (`where` names it in errors) and checks they are `model`'s. */
export function decodePredictors(bytes: Uint8Array, model: PredictorModel, where: string): CalibratedPredictors {
  const cfg = model.config;
  const f = new SafetensorsBytes(bytes, where);
  const md = f.metadata;
  if (md.format !== PREDICTOR_FORMAT) throw new AquaError(`${where} is not an aquakv predictor file (format ${JSON.stringify(md.format ?? null)})`);
  if (md.version !== PREDICTOR_VERSION && md.version !== '1') {
    throw new AquaError(`${where} has predictor format version ${md.version}; this aquakv reads versions 1 and ${PREDICTOR_VERSION}`, 'calibrate predictors again');
  }
  let info: PredictorInfo;
  try {
    info = JSON.parse(String(md.info)) as PredictorInfo;
  } catch {
    throw new AquaError(`${where}: predictor metadata is not valid JSON`);
  }
  const broken = (why: string) => new AquaError(`${where}: predictor metadata is broken: ${why}`, 'calibrate predictors again');
  const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (!isObject(info)) throw broken('not an object');
  if (!isObject(info.model) || typeof info.model.fingerprint !== 'string') throw broken('no model fingerprint');
  if (md.version === '1') {
    const v1 = info as unknown as { quantizer: unknown; firstLayerQuantizer: unknown };
    if (typeof v1.quantizer !== 'string' || typeof v1.firstLayerQuantizer !== 'string') throw broken('no quantizers');
    const method = parseMethod(`aquakv[q=${v1.quantizer},first=${v1.firstLayerQuantizer}]`);
    info = { ...info, method: formatMethod(method), methodKey: methodKey(method, cfg.kvDim) };
  }
  if (typeof info.method !== 'string' || typeof info.methodKey !== 'string') throw broken('no method');
  if (info.budget !== undefined && !(typeof info.budget === 'number' && info.budget > 0)) throw broken(`budget ${JSON.stringify(info.budget)}`);
  if (!['both', 'keys', 'values'].includes(info.predict)) throw broken(`predict ${JSON.stringify(info.predict)}`);
  if (info.model.fingerprint !== cfg.fingerprint) {
    throw new AquaError(
      `${where} was calibrated for another model (${info.model.architecture}, ${info.model.nLayers} layers, C=${info.model.kvDim}); ` +
        `this model is ${cfg.architecture}, ${cfg.nLayers} layers, C=${cfg.kvDim}`,
      'calibrate predictors for this model',
    );
  }
  if (info.model.weights && info.model.weights !== model.weightsDigest) {
    throw new AquaError(`${where} was calibrated for a model of the same shape but different weights (a retrained or another checkpoint)`, 'calibrate predictors for this model');
  }
  let plan;
  try {
    plan = parseMethod(info.method);
  } catch (e) {
    throw broken(`method: ${(e as Error).message}`);
  }
  if (plan.kind !== 'aquakv' || plan.budget !== null || methodKey(plan, cfg.kvDim) !== info.methodKey) throw broken(`method ${info.method} does not match its key ${info.methodKey}`);
  const C = cfg.kvDim;
  // the predictors the file says it holds must all be there: a missing one would run as no predictor
  const expected = { key: info.predict !== 'values', value: info.predict !== 'keys' };
  const tensor = (name: string, shape: number[]): Float32Array => {
    const e = f.entries.get(name);
    if (!e) throw new AquaError(`${where}: tensor ${name} is missing (expected shape [${shape}])`, 'calibrate predictors again');
    if (e.shape.length !== shape.length || e.shape.some((d, i) => d !== shape[i])) throw new AquaError(`${where}: ${name} has shape [${e.shape}], expected [${shape}]`);
    const data = f.readF32(name);
    const bad = data.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new AquaError(`${where}: ${name} holds ${data[bad]} at index ${bad}`);
    return data;
  };
  // a slot whose predictor did worse than none on validation was dropped at calibration: recorded, no tensors
  const dropped = (l: number, part: 'key' | 'value') => {
    const layer = Array.isArray(info.layers) ? info.layers.find((x) => x?.layer === l) : undefined;
    return (part === 'key' ? layer?.keys : layer?.values)?.dropped === true;
  };
  const read = (l: number, part: 'key' | 'value', inDim: number): LinearPredictor | null => {
    if (!expected[part] || dropped(l, part)) return null;
    return new LinearPredictor(tensor(`layers.${l}.${part}.weight`, [C, inDim]), tensor(`layers.${l}.${part}.bias`, [C]), inDim, C);
  };
  const set: PredictorSet = { method: info.method, methodKey: info.methodKey, budget: info.budget ?? null, keys: [], values: [] };
  for (let l = 0; l < cfg.nLayers; l++) {
    set.keys.push(l === 0 ? null : read(l, 'key', C));
    set.values.push(l === 0 ? null : read(l, 'value', 2 * C));
  }
  return { set, info };
}

/** Writes a predictor file (atomically: a crash leaves the old file or the new one, never half of one). */
export function savePredictors(path: string, p: CalibratedPredictors): void {
  platform.writeFileAtomic(path, encodePredictors(p));
}

/** Reads a predictor file for `model`; refuses one calibrated for another model. */
export function loadPredictors(path: string, model: PredictorModel): CalibratedPredictors {
  if (!platform.exists(path)) throw new AquaError(`predictor file ${path} does not exist`, 'calibrate predictors first');
  if (platform.isDirectory(path)) throw new AquaError(`predictor file ${path} is a directory`);
  return decodePredictors(platform.readFile(path), model, path);
}
