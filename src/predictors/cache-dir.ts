/**
 * A directory of calibrated predictor files, reused across runs: a file's name is a hash of
 * everything that determines it (the model's fingerprint, the calibration settings, the format
 * version and the calibration tokens), so a changed model, setting or text gets a fresh file.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { LlamaModel } from '../model/llama.js';
import type { CalibrationOptions } from './calibrate.js';
import { loadPredictors, PREDICTOR_VERSION, savePredictors, type PredictorInfo } from './file.js';
import { calibrateOnTokens, type CalibrationData } from './from-text.js';
import type { PredictorSet } from './linear.js';

export type CalibrationSettings = Omit<CalibrationOptions, 'onProgress'> & CalibrationData;

export function predictorCacheKey(model: LlamaModel, s: CalibrationSettings, ids: number[]): string {
  const h = createHash('sha256');
  const { dataSource, ...settings } = s;
  h.update(JSON.stringify({ fingerprint: model.config.fingerprint, version: PREDICTOR_VERSION, dataSource, settings }));
  h.update(Buffer.from(Int32Array.from(ids).buffer));
  return h.digest('hex').slice(0, 16);
}

export function cachedPredictors(
  dir: string, model: LlamaModel, ids: number[], s: CalibrationSettings, onProgress?: CalibrationOptions['onProgress'],
): { set: PredictorSet; info: PredictorInfo; reused: boolean; path: string } {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `predictors-${predictorCacheKey(model, s, ids)}.safetensors`);
  if (existsSync(path)) return { ...loadPredictors(path, model.config), reused: true, path };
  const { set, info } = calibrateOnTokens(model, ids, { ...s, onProgress });
  savePredictors(path, set, info);
  return { set, info, reused: false, path };
}
