/**
 * A directory of calibrated predictor files, reused across runs: a file's name is a hash of
 * everything that determines it (the model's fingerprint and weights digest, the calibration
 * settings and method, the format version and the calibration text), so a changed model
 * (retrained ones included), setting, method or text gets a fresh file.
 */
import { AquaError } from '../errors.js';
import { formatMethod } from '../kv/method.js';
import type { LlamaModel } from '../model/llama.js';
import { platform } from '../platform/index.js';
import { calibrate, type CalibrationOptions } from './calibrate.js';
import { loadPredictors, PREDICTOR_VERSION, savePredictors, type CalibratedPredictors } from './file.js';

export type CalibrationSettings = Omit<CalibrationOptions, 'onProgress'>;

/** Where predictors calibrated on first use are kept, relative to the working directory (the CLI's, the demo's and the bench's). */
export const DEFAULT_PREDICTOR_CACHE_DIR = '.aquakv-cache';

export function predictorCacheKey(model: LlamaModel, s: CalibrationSettings, text: string): string {
  const { dataSource, method, ...settings } = s;
  const h = platform.sha256();
  h.update(JSON.stringify({ fingerprint: model.config.fingerprint, weights: model.weightsDigest, version: PREDICTOR_VERSION, dataSource, method: formatMethod(method), settings }));
  h.update(text);
  return h.digest().slice(0, 16);
}

export function cachedPredictors(
  dir: string, model: LlamaModel, text: string, tokenizer: { encode(s: string): number[] }, s: CalibrationSettings,
  onProgress?: CalibrationOptions['onProgress'],
): CalibratedPredictors & { reused: boolean; path: string } {
  if (platform.exists(dir) && !platform.isDirectory(dir)) throw new AquaError(`predictor cache ${dir} is not a directory`);
  platform.makeDirectory(dir);
  const path = platform.joinPath(dir, `predictors-${predictorCacheKey(model, s, text)}.safetensors`);
  if (platform.exists(path)) {
    try {
      return { ...loadPredictors(path, model), reused: true, path };
    } catch (e) {
      // entries are written atomically, so this is damage from outside (or an older aquakv's half-written file)
      if (!(e instanceof AquaError)) throw e;
      platform.warn(`${path} is unreadable (${e.message}); calibrating again over it`);
    }
  }
  const p = calibrate(model, text, tokenizer, { ...s, onProgress });
  savePredictors(path, p);
  return { ...p, reused: false, path };
}
