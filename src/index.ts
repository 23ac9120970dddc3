/**
 * aquakv's public API: `import { … } from 'aquakv'`. Everything a user needs to load a model,
 * build a KV cache of any method (AQUA-KV, HIGGS, KIVI, full precision), calibrate AQUA-KV's
 * predictors, generate, and measure quality, with the types that go with them.
 *
 *   const { model, tokenizer } = loadModel(); // the embedded model; loadModel(dir) for yours
 *   const method = parseMethod('aquakv');
 *   const predictors = calibrate(model, text, tokenizer, { method });
 *   const cache = createCache(model, method, predictors.set);
 *   const out = generate(model, tokenizer.encode('The Congress'), cache, { maxNewTokens: 40 });
 */
export { AquaError } from './errors.js';

// models
export { loadModel, embeddedModelDir, type LoadedLanguageModel } from './io/load-model.js';
export { loadModelDir, saveCheckpoint, type LoadedModel } from './io/checkpoint.js';
export { normaliseConfig, readConfig } from './io/config.js';
export { loadTokenizer, type TextTokenizer } from './io/tokenizer.js';
export { LlamaModel, type ForwardOptions, type Tap, type TapStage } from './model/llama.js';
export type { ModelConfig, Architecture, Llama3RopeScaling } from './model/config.js';
export type { ModelWeights, LayerWeights } from './model/weights.js';
export { DEFAULT_GENERATION, generate, decodeTokens, type GenerateOptions, type GenerateResult, type DecodeTimings } from './model/generate.js';
export { stream, DEFAULT_STREAM, GenerationStream, type StreamOptions, type StreamPiece, type StreamResult, type FinishReason, type LanguageModel, type TextCodec } from './model/stream.js';
export { Sampler, argmax, type SamplerOptions } from './model/sampler.js';

// caches
export type { KVCache, LayerView, CacheMemory, CacheHost } from './model/kv-cache.js';
export { parseMethod, parseMethodList, formatMethod, methodFamily, methodKey, slotSpec, BUDGET_LADDER, DEFAULT_BUDGET, METHOD_SPEC_HELP, type CacheMethod, type MethodKind, type SlotOverride } from './kv/method.js';
export { createCache, restoreCache, resolvePlan } from './kv/factory.js';
export { FullCache, type FullCacheState } from './kv/full.js';
export { CompressedCache, DEFAULT_CACHE_OPTIONS, type CacheOptions, type CacheMode, type CompressedCacheState } from './kv/compressed.js';
export { saveCache, loadCache, serializeCache, deserializeCache, savedCacheInfo, CACHE_FORMAT, CACHE_VERSION, type LoadCacheOptions, type SavedCacheInfo } from './kv/cache-file.js';
export { LinearPredictor, predictorBytes, predictorsDigest, type PredictorSet } from './kv/linear-predictor.js';

// quantizers
export { parseQuantizer, parseQuantizerSpec, formatQuantizerSpec, buildQuantizer, QUANTIZER_SPEC_HELP, type QuantizerSpec } from './quant/spec.js';
export { bitsPerValue, blockBytes, type Quantizer, type QuantizedBlock } from './quant/quantizer.js';
export { HiggsQuantizer } from './quant/higgs.js';
export { UniformQuantizer } from './quant/uniform.js';
export { IdentityQuantizer } from './quant/identity.js';
export { listGrids, loadGrid, type Grid } from './quant/grid.js';

// predictors
export { calibrate, DEFAULT_CALIBRATION, type CalibrationOptions } from './predictors/calibrate.js';
export { savePredictors, loadPredictors, encodePredictors, decodePredictors, type CalibratedPredictors, type PredictorInfo, type LayerErrors } from './predictors/file.js';
export type { Allocation } from './predictors/allocate.js';

// evaluation
export { evaluatePerplexity, DEFAULT_EVAL, type EvalOptions, type MethodResult } from './eval/perplexity.js';
export { retrievalAccuracy, defaultRetrievalDistances, DEFAULT_RETRIEVAL, type RetrievalOptions, type RetrievalResult } from './eval/retrieval-eval.js';
export { readText, BUILTIN_TEXTS } from './eval/texts.js';

// the matrix-product backend
export { gemmBackend, setGemmBackend } from './tensor/gemm.js';
