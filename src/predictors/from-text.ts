/**
 * Calibration from a token stream: `samples` windows of `seqLen` tokens at seeded random offsets
 * (non-overlapping where the text allows), the last eighth of them (at least one) held out for
 * validation, then capture and sequential fitting.
 */
import { AquaError } from '../errors.js';
import type { LlamaModel } from '../model/llama.js';
import { Rng } from '../tensor/rng.js';
import { calibratePredictors, captureKeysValues, predictorInfo, type CalibrationOptions } from './calibrate.js';
import type { PredictorInfo } from './file.js';
import type { PredictorSet } from './linear.js';

export interface CalibrationData {
  samples: number;
  seqLen: number;
  seed: number;
}

export const DEFAULT_CALIBRATION: Omit<CalibrationOptions, 'dataSource'> & CalibrationData = {
  quantizer: 'higgs:2x16',
  firstLayerQuantizer: 'higgs:2x256',
  predict: 'both',
  fitOn: 'reconstructed',
  damp: 1e-3,
  samples: 32,
  seqLen: 1024,
  seed: 0,
};

export function calibrationWindows(ids: number[], d: CalibrationData): number[][] {
  if (ids.length < d.seqLen) throw new AquaError(`calibration text has ${ids.length} tokens, fewer than one sequence of ${d.seqLen}`);
  if (d.samples < 2) throw new AquaError(`--samples must be at least 2 (one for validation), got ${d.samples}`);
  const slots = Math.floor(ids.length / d.seqLen);
  const rng = new Rng(d.seed);
  // a seeded permutation of whole non-overlapping slots; with fewer slots than samples, random offsets
  const order = Array.from({ length: slots }, (_, i) => i);
  for (let i = slots - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return Array.from({ length: d.samples }, (_, i) => {
    const start = i < slots ? order[i] * d.seqLen : rng.int(ids.length - d.seqLen + 1);
    return ids.slice(start, start + d.seqLen);
  });
}

export function calibrateOnTokens(
  model: LlamaModel, ids: number[], o: CalibrationOptions & CalibrationData,
): { set: PredictorSet; info: PredictorInfo } {
  const t0 = performance.now();
  const seqs = calibrationWindows(ids, o);
  const nValid = Math.max(1, Math.floor(seqs.length / 8));
  const trainSeqs = seqs.slice(0, seqs.length - nValid);
  const validSeqs = seqs.slice(seqs.length - nValid);
  const train = captureKeysValues(model, trainSeqs, (d, t) => o.onProgress?.('capture', d, t + validSeqs.length));
  const valid = captureKeysValues(model, validSeqs, (d, t) => o.onProgress?.('capture', trainSeqs.length + d, trainSeqs.length + t));
  const { set, layers } = calibratePredictors(model, train, valid, o);
  const seconds = (performance.now() - t0) / 1000;
  const info = predictorInfo(model, o, layers, {
    source: o.dataSource, samples: o.samples, seqLen: o.seqLen, trainTokens: train.tokens, validTokens: valid.tokens,
  }, seconds);
  return { set, info };
}
