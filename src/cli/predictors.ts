/**
 * Predictors for the AQUA-KV methods a command runs: a predictor file (checked against each
 * method), or else one calibration with defaults per method, on --calibration-data or the
 * embedded model's training text.
 */
import { AquaError } from '../errors.js';
import { readText } from '../eval/texts.js';
import type { TextTokenizer } from '../io/tokenizer.js';
import { checkPredictorsFit } from '../kv/factory.js';
import type { PredictorSet } from '../kv/linear-predictor.js';
import { formatMethod, type CacheMethod } from '../kv/method.js';
import type { LlamaModel } from '../model/llama.js';
import { calibrate, DEFAULT_CALIBRATION } from '../predictors/calibrate.js';
import { loadPredictors } from '../predictors/file.js';
import { isEmbedded } from './model-dir.js';
import { progress } from './progress.js';

export function predictorsFor(
  model: LlamaModel, dir: string, tokenizer: () => TextTokenizer, methods: CacheMethod[], file: string | undefined, calibrationText: string | undefined, quiet: boolean,
): (m: CacheMethod) => PredictorSet | null {
  const aqua = methods.filter((m) => m.usesPredictors);
  if (aqua.length === 0) return () => null;
  if (file) {
    const { set } = loadPredictors(file, model);
    for (const m of aqua) {
      try {
        checkPredictorsFit(m, set, model.config.kvDim);
      } catch (e) {
        throw new AquaError(`${file}: ${(e as Error).message}`, `calibrate for it with: aquakv calibrate --method '${formatMethod(m)}' --out FILE`);
      }
    }
    return () => set;
  }
  const source = calibrationText ?? (isEmbedded(dir) ? '@sotu-train' : undefined);
  if (!source) throw new AquaError('aquakv methods need predictors: pass --predictors FILE (from aquakv calibrate) or --calibration-data FILE');
  const text = readText(source);
  const sets = new Map<string, PredictorSet>();
  for (const m of aqua) {
    const key = formatMethod(m);
    if (sets.has(key)) continue;
    const bar = progress(`calibrate ${m.name}`, quiet);
    const { set } = calibrate(model, text, tokenizer(), {
      method: m,
      seqLen: Math.min(DEFAULT_CALIBRATION.seqLen, model.config.maxPositionEmbeddings),
      dataSource: source,
      onProgress: (stage, d, t) => bar.update(d, t, stage),
    });
    bar.stop();
    sets.set(key, set);
  }
  return (m) => sets.get(formatMethod(m)) ?? null;
}
