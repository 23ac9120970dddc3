/**
 * Predictors for the AQUA-KV methods a command runs: a predictor file (checked against each
 * method), or else one calibration with defaults per method, on --calibration-data or the
 * embedded model's training text.
 */
import { AquaError } from '../errors.js';
import { readText } from '../eval/texts.js';
import type { TextTokenizer } from '../io/tokenizer.js';
import { resolvePlan } from '../kv/factory.js';
import type { PredictorSet } from '../kv/linear-predictor.js';
import { formatMethod, type CacheMethod } from '../kv/method.js';
import type { LlamaModel } from '../model/llama.js';
import { DEFAULT_CALIBRATION } from '../predictors/calibrate.js';
import { cachedPredictors, DEFAULT_PREDICTOR_CACHE_DIR } from '../predictors/cache-dir.js';
import { resolve } from 'node:path';
import { loadPredictors } from '../predictors/file.js';
import { isEmbedded } from './model-dir.js';
import { progress } from './progress.js';

export function predictorsFor(
  model: LlamaModel, dir: string, tokenizer: () => TextTokenizer, methods: CacheMethod[], file: string | undefined, calibrationText: string | undefined, quiet: boolean,
): (m: CacheMethod) => PredictorSet | null {
  const aqua = methods.filter((m) => m.usesPredictors);
  if (aqua.length === 0) return () => null;
  if (file) {
    // one file or several (comma-separated): each method takes the first that was calibrated for it
    const loaded = file.split(',').map((f) => ({ f, set: loadPredictors(f, model).set }));
    const chosen = new Map<CacheMethod, PredictorSet>();
    for (const m of aqua) {
      const fits = loaded.find(({ set }) => {
        try {
          resolvePlan(m, set, model.config.kvDim);
          return true;
        } catch {
          return false;
        }
      });
      if (!fits) {
        const have = loaded.map(({ f, set }) => `${f}: ${set.budget === null ? set.method : `aquakv[bits=${set.budget}]`}`).join('; ');
        throw new AquaError(`no predictor file was calibrated for ${formatMethod(m)} (${have})`, `calibrate for it with: aquakv calibrate --method '${formatMethod(m)}' --out FILE`);
      }
      chosen.set(m, fits.set);
    }
    return (m) => chosen.get(m) ?? null;
  }
  const source = calibrationText ?? (isEmbedded(dir) ? '@sotu-train' : undefined);
  if (!source) throw new AquaError('aquakv methods need predictors: pass --predictors FILE (from aquakv calibrate) or --calibration-data FILE');
  const text = readText(source);
  const sets = new Map<string, PredictorSet>();
  for (const m of aqua) {
    const key = formatMethod(m);
    if (sets.has(key)) continue;
    // calibrated once, then reused from the predictor cache (keyed on model, weights, method, data and settings)
    const bar = progress(`calibrate ${m.name}`, quiet);
    const settings = { ...DEFAULT_CALIBRATION, method: m, seqLen: Math.min(DEFAULT_CALIBRATION.seqLen, model.config.maxPositionEmbeddings), dataSource: source };
    const c = cachedPredictors(resolve(DEFAULT_PREDICTOR_CACHE_DIR), model, text, tokenizer(), settings, (stage, d, t) => bar.update(d, t, stage));
    bar.stop();
    console.error(`predictors for ${m.name}: ${c.reused ? 'reused' : 'calibrated and kept'} ${c.path}`);
    sets.set(key, c.set);
  }
  return (m) => sets.get(formatMethod(m)) ?? null;
}
