/** Builds the cache of a method for a model: the f32 cache for `fp`, else a compressed cache. */
import { AquaError } from '../errors.js';
import type { CacheHost, KVCache } from '../model/kv-cache.js';
import { CompressedCache, DEFAULT_CACHE_OPTIONS, type CacheOptions, type CompressedCacheState } from './compressed.js';
import { FullCache, type FullCacheState } from './full.js';
import { layerCodecs } from './layer-codec.js';
import type { PredictorSet } from './linear-predictor.js';
import { formatMethod, methodKey, parseMethod, type CacheMethod } from './method.js';

// the codecs live beside LayerCodec (the background thread builds them without the caches)
export { layerCodecs };

/**
 * Checks that `predictors` were fitted for `method` on this model (predictors learn to undo the
 * quantization noise of the quantizers they were fitted through, so another method's are wrong),
 * and returns the method the cache runs: `method` itself, or for a budgeted method the plan
 * calibration chose for its budget, recorded with the predictors.
 */
export function resolvePlan(method: CacheMethod, predictors: PredictorSet | null, C: number): CacheMethod {
  if (!method.usesPredictors) return method;
  if (!predictors) throw new AquaError(`cache method ${method.name} needs predictors calibrated for it`);
  const fits = method.budget !== null ? predictors.budget === method.budget : predictors.methodKey === methodKey(method, C);
  if (!fits) {
    const made = predictors.budget === null ? predictors.method : `a budget of ${predictors.budget} bits (plan ${predictors.method})`;
    throw new AquaError(`predictors calibrated for ${made} do not fit cache method ${formatMethod(method)}`);
  }
  return method.budget !== null ? { ...parseMethod(predictors.method), name: method.name } : method;
}


/**
 * A fresh cache of `method` for `model`. `predictors` (AQUA-KV only) must have been calibrated
 * for this method and model; `options` (sinks, buffer, mode) apply to compressed caches.
 */
export function createCache(model: CacheHost, method: CacheMethod, predictors: PredictorSet | null = null, options: Partial<CacheOptions> = {}): KVCache {
  return restoreCache(model, method, predictors, options);
}

/** A cache of `method` holding `state` (from a cache's `state()` or a saved file); a fresh one without. */
export function restoreCache(
  model: CacheHost, method: CacheMethod, predictors: PredictorSet | null, options: Partial<CacheOptions>, state?: FullCacheState | CompressedCacheState,
): FullCache | CompressedCache {
  if (method.kind === 'fp') return new FullCache(model, state as FullCacheState | undefined);
  const { nLayers, kvDim } = model.config;
  const plan = resolvePlan(method, predictors, kvDim);
  return new CompressedCache(
    { ...DEFAULT_CACHE_OPTIONS, ...options, host: model, method, plan, codecs: layerCodecs(plan, nLayers, kvDim, predictors), predictors: plan.usesPredictors ? predictors : null },
    state as CompressedCacheState | undefined,
  );
}
