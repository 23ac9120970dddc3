/**
 * The predictor file: safetensors (little-endian f32) with
 *   layers.{l}.key.weight [C, C], layers.{l}.key.bias [C],
 *   layers.{l}.value.weight [C, 2C], layers.{l}.value.bias [C]     for l ≥ 1 (either may be absent)
 * and __metadata__ { format: "aquakv-predictors", version: "1", info: JSON of PredictorInfo }.
 * Loading checks the format, the version, the model fingerprint and, where both sides have it,
 * the weights digest (a retrained model of the same shape needs its own predictors).
 */
import { existsSync } from 'node:fs';
import { AquaError } from '../errors.js';
import type { ModelConfig } from '../io/config.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { LinearPredictor, type PredictorSet } from './linear.js';

export const PREDICTOR_FORMAT = 'aquakv-predictors';
export const PREDICTOR_VERSION = '1';

export interface LayerErrors {
  layer: number;
  keys: { trainRelMse: number; validRelMse: number; equivalentBits: number } | null;
  values: { trainRelMse: number; validRelMse: number; equivalentBits: number } | null;
}

export interface PredictorInfo {
  /** `weights`: the model's weights digest (absent in files written before it was recorded). */
  model: { fingerprint: string; weights?: string; architecture: string; nLayers: number; kvDim: number; hiddenSize: number };
  quantizer: string; // the residual quantizer used at calibration
  firstLayerQuantizer: string;
  predict: 'both' | 'keys' | 'values';
  fitOn: 'reconstructed' | 'original';
  damp: number;
  data: { source: string; samples: number; seqLen: number; trainTokens: number; validTokens: number };
  seconds: number;
  layers: LayerErrors[];
}

export function savePredictors(path: string, set: PredictorSet, info: PredictorInfo): void {
  const tensors: TensorToWrite[] = [];
  set.keys.forEach((p, l) => {
    if (!p) return;
    tensors.push({ name: `layers.${l}.key.weight`, shape: [p.outDim, p.inDim], data: p.weight, dtype: 'F32' });
    tensors.push({ name: `layers.${l}.key.bias`, shape: [p.outDim], data: p.bias, dtype: 'F32' });
  });
  set.values.forEach((p, l) => {
    if (!p) return;
    tensors.push({ name: `layers.${l}.value.weight`, shape: [p.outDim, p.inDim], data: p.weight, dtype: 'F32' });
    tensors.push({ name: `layers.${l}.value.bias`, shape: [p.outDim], data: p.bias, dtype: 'F32' });
  });
  writeSafetensors(path, tensors, { format: PREDICTOR_FORMAT, version: PREDICTOR_VERSION, info: JSON.stringify(info) });
}

export function loadPredictors(path: string, cfg: ModelConfig, weightsDigest?: string): { set: PredictorSet; info: PredictorInfo } {
  if (!existsSync(path)) throw new AquaError(`predictor file ${path} does not exist`, 'create one with aquakv calibrate');
  const f = SafetensorsFile.open(path);
  try {
    const md = f.metadata;
    if (md.format !== PREDICTOR_FORMAT) throw new AquaError(`${path} is not an aquakv predictor file (format ${JSON.stringify(md.format ?? null)})`);
    if (md.version !== PREDICTOR_VERSION) {
      throw new AquaError(`${path} has predictor format version ${md.version}; this aquakv reads version ${PREDICTOR_VERSION}`, 'recalibrate with aquakv calibrate');
    }
    let info: PredictorInfo;
    try {
      info = JSON.parse(md.info) as PredictorInfo;
    } catch {
      throw new AquaError(`${path}: predictor metadata is not valid JSON`);
    }
    if (info.model.fingerprint !== cfg.fingerprint) {
      throw new AquaError(
        `${path} was calibrated for another model (${info.model.architecture}, ${info.model.nLayers} layers, C=${info.model.kvDim}); ` +
          `this model is ${cfg.architecture}, ${cfg.nLayers} layers, C=${cfg.kvDim}`,
        'calibrate predictors for this model with aquakv calibrate --model DIR',
      );
    }
    if (weightsDigest && info.model.weights && info.model.weights !== weightsDigest) {
      throw new AquaError(
        `${path} was calibrated for a model of the same shape but different weights (a retrained or another checkpoint)`,
        'calibrate predictors for this model with aquakv calibrate --model DIR',
      );
    }
    const C = cfg.kvDim;
    const read = (l: number, part: 'key' | 'value', inDim: number): LinearPredictor | null => {
      const w = `layers.${l}.${part}.weight`;
      if (!f.entries.has(w)) return null;
      const e = f.entries.get(w)!;
      if (e.shape[0] !== C || e.shape[1] !== inDim) throw new AquaError(`${path}: ${w} has shape [${e.shape}], expected [${C}, ${inDim}]`);
      return new LinearPredictor(f.readF32(w), f.readF32(`layers.${l}.${part}.bias`), inDim, C);
    };
    const set: PredictorSet = { keys: [], values: [] };
    for (let l = 0; l < cfg.nLayers; l++) {
      set.keys.push(l === 0 ? null : read(l, 'key', C));
      set.values.push(l === 0 ? null : read(l, 'value', 2 * C));
    }
    return { set, info };
  } finally {
    f.close();
  }
}
