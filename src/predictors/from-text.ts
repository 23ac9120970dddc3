/**
 * Calibration data: `samples` windows of `seqLen` tokens at seeded random offsets, from a token
 * stream or straight from text (only the sampled slices are tokenized, so a 10 MB text costs
 * nothing to sample from); the last eighth of the windows (at least one) are held out for
 * validation; then capture and sequential fitting.
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

/**
 * Windows sampled from text: one random offset in each of `samples` equal stretches of the text
 * (stratified, so the whole text is represented), moved to the next whitespace, and a slice
 * long enough for seqLen tokens tokenized there.
 */
export function textWindows(text: string, encode: (s: string) => number[], d: CalibrationData): number[][] {
  if (d.samples < 2) throw new AquaError(`--samples must be at least 2 (one for validation), got ${d.samples}`);
  const rng = new Rng(d.seed);
  const stretch = text.length / d.samples;
  return Array.from({ length: d.samples }, (_, i) => {
    let start = Math.floor(i * stretch + rng.next() * stretch);
    const ws = text.slice(start).search(/\s/);
    start = ws < 0 ? start : start + ws;
    for (let chars = d.seqLen * 8; ; chars *= 2) {
      const from = Math.max(0, Math.min(start, text.length - chars));
      const ids = encode(text.slice(from, from + chars));
      if (ids.length >= d.seqLen) return ids.slice(0, d.seqLen);
      if (from === 0 && chars >= text.length) {
        throw new AquaError(`calibration text has ${ids.length} tokens, fewer than one sequence of ${d.seqLen}`);
      }
    }
  });
}

export function calibrateOnText(
  model: LlamaModel, text: string, encode: (s: string) => number[], o: CalibrationOptions & CalibrationData,
): { set: PredictorSet; info: PredictorInfo } {
  return calibrateOnWindows(model, textWindows(text, encode, o), o);
}

export function calibrateOnTokens(
  model: LlamaModel, ids: number[], o: CalibrationOptions & CalibrationData,
): { set: PredictorSet; info: PredictorInfo } {
  return calibrateOnWindows(model, calibrationWindows(ids, o), o);
}

function calibrateOnWindows(
  model: LlamaModel, seqs: number[][], o: CalibrationOptions & CalibrationData,
): { set: PredictorSet; info: PredictorInfo } {
  const t0 = performance.now();
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
