/**
 * A directory of calibrated predictor files, reused across runs: a file's name is a hash of
 * everything that determines it (the model's fingerprint and weights digest, the calibration
 * settings, the format version and the calibration text), so a changed model (retrained ones
 * included), setting or text gets a fresh file.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { LlamaModel } from '../model/llama.js';
import type { CalibrationOptions } from './calibrate.js';
import { loadPredictors, PREDICTOR_VERSION, savePredictors, type PredictorInfo } from './file.js';
import { calibrateOnText, type CalibrationData } from './from-text.js';
import type { PredictorSet } from './linear.js';

export type CalibrationSettings = Omit<CalibrationOptions, 'onProgress'> & CalibrationData;

export function predictorCacheKey(model: LlamaModel, s: CalibrationSettings, text: string): string {
  const h = createHash('sha256');
  const { dataSource, ...settings } = s;
  h.update(JSON.stringify({ fingerprint: model.config.fingerprint, weights: model.weightsDigest, version: PREDICTOR_VERSION, dataSource, settings }));
  h.update(text);
  return h.digest('hex').slice(0, 16);
}

export function cachedPredictors(
  dir: string, model: LlamaModel, text: string, encode: (s: string) => number[], s: CalibrationSettings,
  onProgress?: CalibrationOptions['onProgress'],
): { set: PredictorSet; info: PredictorInfo; reused: boolean; path: string } {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `predictors-${predictorCacheKey(model, s, text)}.safetensors`);
  if (existsSync(path)) return { ...loadPredictors(path, model.config, model.weightsDigest), reused: true, path };
  const { set, info } = calibrateOnText(model, text, encode, { ...s, onProgress });
  savePredictors(path, set, info);
  return { set, info, reused: false, path };
}
