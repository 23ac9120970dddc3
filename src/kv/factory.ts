/** Builds the compressed cache for a method, a model and (for aquakv) its predictors. */
import { AquaError } from '../errors.js';
import type { LlamaModel } from '../model/llama.js';
import { predictorBytes, type PredictorSet } from '../predictors/linear.js';
import { parseQuantizer } from '../quant/spec.js';
import { CompressedCache, DEFAULT_CACHE_OPTIONS, type CompressedCacheOptions } from './compressed.js';
import { LayerCodec } from './layer-codec.js';
import type { CacheMethod } from './method.js';

/** Throws the quantizer spec's own error now, before any long work starts. */
export function checkMethod(method: CacheMethod, C: number): void {
  for (const q of [method.keyQuantizer, method.valueQuantizer, method.firstKeyQuantizer, method.firstValueQuantizer]) parseQuantizer(q, C);
}

/** The per-layer codecs of a method (quantizers are shared across layers of the same spec). */
export function layerCodecs(method: CacheMethod, nLayers: number, C: number, predictors: PredictorSet | null): LayerCodec[] {
  if (method.usesPredictors && !predictors) throw new AquaError(`cache method ${method.name} needs predictors`, 'pass --predictors FILE or run aquakv calibrate');
  const kq = parseQuantizer(method.keyQuantizer, C);
  const vq = parseQuantizer(method.valueQuantizer, C);
  const kq0 = parseQuantizer(method.firstKeyQuantizer, C);
  const vq0 = parseQuantizer(method.firstValueQuantizer, C);
  return Array.from({ length: nLayers }, (_, l) =>
    l === 0
      ? new LayerCodec(C, kq0, vq0, null, null)
      : new LayerCodec(C, kq, vq, method.usesPredictors ? predictors!.keys[l] : null, method.usesPredictors ? predictors!.values[l] : null),
  );
}

export function createCache(
  model: LlamaModel, method: CacheMethod, predictors: PredictorSet | null, options: Partial<CompressedCacheOptions> = {},
): CompressedCache {
  const cfg = model.config;
  const codecs = layerCodecs(method, cfg.nLayers, cfg.kvDim, predictors);
  return new CompressedCache(
    { nLayers: cfg.nLayers, kvDim: cfg.kvDim, nKvHeads: cfg.nKvHeads },
    model.rope,
    codecs,
    { ...DEFAULT_CACHE_OPTIONS, ...options },
    method.quantizeKeysAfterRope,
    method.usesPredictors && predictors ? predictorBytes(predictors) : 0,
  );
}
