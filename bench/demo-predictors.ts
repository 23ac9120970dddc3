/**
 * The demo's AQUA-KV predictors for the embedded model, as the decode benchmarks and probes use
 * them: calibrated once, then reused from .aquakv-cache (as `npm start` leaves them).
 */
import { resolve } from 'node:path';
import { readText } from '../src/eval/texts.js';
import { parseMethod } from '../src/kv/method.js';
import type { LlamaModel } from '../src/model/llama.js';
import { cachedPredictors, DEFAULT_PREDICTOR_CACHE_DIR } from '../src/predictors/cache-dir.js';
import { DEFAULT_CALIBRATION } from '../src/predictors/calibrate.js';
import { DEFAULT_DEMO } from '../src/demo/run-demo.js';
import type { TextTokenizer } from '../src/io/tokenizer.js';

export function demoPredictors(model: LlamaModel, tokenizer: TextTokenizer): ReturnType<typeof cachedPredictors> {
  const settings = { ...DEFAULT_CALIBRATION, method: parseMethod('aquakv'), samples: DEFAULT_DEMO.samples, seqLen: model.config.maxPositionEmbeddings, dataSource: '@sotu-train' };
  return cachedPredictors(resolve(DEFAULT_PREDICTOR_CACHE_DIR), model, readText('@sotu-train'), tokenizer, settings);
}
