/** Builds the cache of a method for a model: the f32 cache for `fp`, else a compressed cache. */
import { AquaError } from '../errors.js';
import type { CacheHost, KVCache } from '../model/kv-cache.js';
import { CompressedCache, DEFAULT_CACHE_OPTIONS, type CacheOptions } from './compressed.js';
import { FullCache } from './full.js';
import { LayerCodec } from './layer-codec.js';
import { predictorBytes, type PredictorSet } from './linear-predictor.js';
import { formatMethod, methodKey, methodQuantizers, type CacheMethod } from './method.js';

/**
 * Checks that `predictors` were fitted for `method` on this model (predictors learn to undo the
 * quantization noise of the quantizers they were fitted through, so another method's are wrong).
 */
export function checkPredictorsFit(method: CacheMethod, predictors: PredictorSet | null, C: number): void {
  if (!method.usesPredictors) return;
  if (!predictors) throw new AquaError(`cache method ${method.name} needs predictors calibrated for it`);
  const want = methodKey(method, C);
  if (predictors.methodKey !== want) {
    throw new AquaError(`predictors calibrated for ${predictors.method} do not fit cache method ${formatMethod(method)}`);
  }
}

/** The per-layer codecs of a method (quantizers are shared across layers of the same slot). */
export function layerCodecs(method: CacheMethod, nLayers: number, C: number, predictors: PredictorSet | null): LayerCodec[] {
  checkPredictorsFit(method, predictors, C);
  const q = methodQuantizers(method, C);
  const p = method.usesPredictors ? predictors : null;
  return Array.from({ length: nLayers }, (_, l) =>
    l === 0 ? new LayerCodec(C, q.firstKeys, q.firstValues, null, null) : new LayerCodec(C, q.keys, q.values, p?.keys[l] ?? null, p?.values[l] ?? null),
  );
}

/**
 * A fresh cache of `method` for `model`. `predictors` (AQUA-KV only) must have been calibrated
 * for this method and model; `options` (sinks, buffer, mode) apply to compressed caches.
 */
export function createCache(model: CacheHost, method: CacheMethod, predictors: PredictorSet | null = null, options: Partial<CacheOptions> = {}): KVCache {
  if (method.kind === 'fp') return new FullCache(model);
  const { nLayers, kvDim } = model.config;
  return new CompressedCache({
    ...DEFAULT_CACHE_OPTIONS,
    ...options,
    host: model,
    codecs: layerCodecs(method, nLayers, kvDim, predictors),
    keysAfterRope: method.keysAfterRope,
    predictorBytes: method.usesPredictors && predictors ? predictorBytes(predictors) : 0,
  });
}
