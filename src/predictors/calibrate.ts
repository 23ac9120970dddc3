/**
 * Calibration of AQUA-KV's predictors for one cache method, the one entry point: windows of a
 * text, capture, then (for a budgeted method) the allocation of every slot's quantizer
 * (./allocate.ts), then sequential fitting on reconstructed inputs (./fit.ts).
 */
import { AquaError } from '../errors.js';
import { platform } from '../platform/index.js';
import { checkMethod, formatMethod, methodKey, parseMethod, type CacheMethod } from '../kv/method.js';
import type { LlamaModel } from '../model/llama.js';
import { allocateBits, checkBudget, type AllocationSearch } from './allocate.js';
import type { CalibratedPredictors, LayerErrors, PredictorInfo } from './file.js';
import { captureKeysValues, fitPredictors, type SlotErrors } from './fit.js';
import { textWindows, type WindowOptions } from './text-windows.js';

export interface CalibrationOptions extends WindowOptions {
  /** The cache method the predictors are for (an aquakv method; a budgeted one gets its plan chosen here). */
  method: CacheMethod;
  /** Budgeted methods: how many validation windows the allocation measures KL on ('auto': by the search, `AUTO_ALLOCATION_WINDOWS`). */
  allocationWindows: number | 'auto';
  /** Budgeted methods: the measured or the modelled search (allocate.ts), or 'auto' to pick by the model's size. */
  allocationSearch: AllocationSearch | 'auto';
  /** Ablations: fit only key or only value predictors; fit on exact instead of reconstructed inputs. */
  predict: 'both' | 'keys' | 'values';
  fitOn: 'reconstructed' | 'original';
  damp: number; // ridge λ as a fraction of the mean diagonal of XᵀX
  /** Where the text came from, recorded in the predictor file. */
  dataSource: string;
  onProgress?: (stage: string, done: number, total: number) => void;
}

/** The defaults of every calibration option, in one place. */
export const DEFAULT_CALIBRATION: Readonly<Omit<CalibrationOptions, 'onProgress'>> = Object.freeze({
  method: parseMethod('aquakv'),
  allocationWindows: 'auto',
  allocationSearch: 'auto',
  predict: 'both',
  fitOn: 'reconstructed',
  damp: 1e-3,
  samples: 32,
  seqLen: 1024,
  seed: 0,
  dataSource: 'text',
});

/** Training tokens per predictor input below which calibration warns (the ridge fit is underdetermined near 1). */
export const MIN_TOKENS_PER_INPUT = 4;

/**
 * Fits predictors for `options.method` on windows of `text`: `samples` windows of `seqLen`
 * tokens, the last eighth of them (at least one) held out for validation; then capture and
 * sequential fitting. Options default to `DEFAULT_CALIBRATION`.
 */
export function calibrate(
  model: LlamaModel, text: string, tokenizer: { encode(s: string): number[] }, options: Partial<CalibrationOptions> = {},
): CalibratedPredictors {
  const o: CalibrationOptions = { ...DEFAULT_CALIBRATION, ...options };
  if (!o.method.usesPredictors) throw new AquaError(`calibrate: cache method ${o.method.name} uses no predictors (only aquakv methods do)`);
  if (o.seqLen > model.config.maxPositionEmbeddings) {
    throw new AquaError(`calibrate: windows of ${o.seqLen} tokens exceed the model's context of ${model.config.maxPositionEmbeddings}`);
  }
  // a spec or a budget that does not fit this model fails now, not after capture
  checkMethod(o.method, model.config.kvDim, model.config.nLayers);
  const t0 = performance.now();
  const seqs = textWindows(text, (s) => tokenizer.encode(s), o);
  if (o.method.budget !== null) checkBudget(o.method.budget, model.config.kvDim, o.seqLen);
  const nValid = Math.max(1, Math.floor(seqs.length / 8));
  const trainSeqs = seqs.slice(0, seqs.length - nValid);
  const validSeqs = seqs.slice(seqs.length - nValid);
  // the value predictor has 2C inputs: with fewer than a few training tokens per input it overfits
  const trainTokens = trainSeqs.reduce((n, q) => n + q.length, 0);
  const width = 2 * model.config.kvDim;
  if (trainTokens < MIN_TOKENS_PER_INPUT * width) {
    platform.warn(`calibration has ${trainTokens} training tokens for predictors of up to ${width} inputs (fewer than ${MIN_TOKENS_PER_INPUT} per input): they may overfit; predictors that do worse than none on held-out tokens are dropped (more --samples or a longer --seq-len)`);
  }
  const train = captureKeysValues(model, trainSeqs, (d, t) => o.onProgress?.('capture', d, t + validSeqs.length));
  const valid = captureKeysValues(model, validSeqs, (d, t) => o.onProgress?.('capture', trainSeqs.length + d, trainSeqs.length + t));
  let fitted: ReturnType<typeof fitPredictors>;
  let allocated: ReturnType<typeof allocateBits> | null;
  try {
    // a budget: choose every slot's quantizer by its measured effect on the output (./allocate.ts)
    allocated = o.method.budget === null ? null : allocateBits(model, train, valid, validSeqs, o);
    const withoutPredictor = allocated?.allocation.withoutPredictor?.map((d) => d.slot);
    fitted = fitPredictors(model, train, valid, { ...o, method: allocated?.plan ?? o.method, withoutPredictor });
  } finally {
    train.close();
    valid.close();
  }
  const plan = allocated?.plan ?? o.method;
  const { set, layers } = fitted;
  // (slots the allocation chose to run without one are reported with the plan, not warned about)
  const byValidation = (e: SlotErrors | null) => e?.dropped === true && e.droppedBy === undefined;
  const dropped = layers.flatMap((l) => [byValidation(l.keys) ? `k${l.layer}` : null, byValidation(l.values) ? `v${l.layer}` : null]).filter(Boolean);
  if (dropped.length > 0) {
    platform.warn(`predictors for ${dropped.join(', ')} did worse than no predictor on held-out tokens and were dropped: those slots quantize without one (recorded in the file)`);
  }
  set.budget = o.method.budget;
  const seconds = (performance.now() - t0) / 1000;
  const info = predictorInfo(model, { ...o, method: plan }, layers, {
    source: o.dataSource, samples: o.samples, seqLen: o.seqLen, trainTokens: train.tokens, validTokens: valid.tokens,
  });
  if (allocated) {
    info.budget = allocated.allocation.budget;
    info.allocation = allocated.allocation;
  }
  return { set, info, seconds };
}

function predictorInfo(model: LlamaModel, o: CalibrationOptions, layers: LayerErrors[], data: PredictorInfo['data']): PredictorInfo {
  const c = model.config;
  return {
    model: { fingerprint: c.fingerprint, weights: model.weightsDigest, architecture: c.architecture, nLayers: c.nLayers, kvDim: c.kvDim, hiddenSize: c.hiddenSize },
    method: formatMethod(o.method),
    methodKey: methodKey(o.method, c.kvDim),
    predict: o.predict,
    fitOn: o.fitOn,
    damp: o.damp,
    data,
    layers,
  };
}
