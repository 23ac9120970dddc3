/**
 * aquakv for browsers (package.json's "browser" export condition): what runs without a file
 * system. Models, tokenizers, grids and predictor files arrive as bytes (fetch them first):
 *
 *   const { model, tokenizer } = modelFromBytes({ config, safetensors, tokenizer: tokenizerJson });
 *   registerGridFile(await (await fetch('grids/EDEN2-16.json')).json());
 *   const predictors = decodePredictors(new Uint8Array(await (await fetch(url)).arrayBuffer()), model, url);
 *   const cache = createCache(model, parseMethod('aquakv'), predictors.set, { mode: 'compact' });
 *   for await (const piece of stream({ model, tokenizer: tokenizer! }, 'The Congress', { cache })) …
 */
export { AquaError } from './errors.js';
export { modelFromBytes, type ModelFiles } from './io/model-bytes.js';
export { tokenizerFromJson, type TextTokenizer } from './io/tokenizer-json.js';
export { normaliseConfig } from './io/config.js';
export { LlamaModel, type ForwardOptions, type Tap, type TapStage } from './model/llama.js';
export type { ModelConfig } from './model/config.js';
export { DEFAULT_GENERATION, generate, type GenerateOptions, type GenerateResult } from './model/generate.js';
export { stream, DEFAULT_STREAM, GenerationStream, type StreamOptions, type StreamPiece, type StreamResult, type FinishReason, type LanguageModel } from './model/stream.js';
export type { KVCache, LayerView, CacheMemory, CacheHost } from './model/kv-cache.js';
export { fp16CacheBytes } from './model/kv-cache.js';
export { parseMethod, formatMethod, methodKey, methodFamily, type CacheMethod } from './kv/method.js';
export { createCache, restoreCache } from './kv/factory.js';
export { FullCache } from './kv/full.js';
export { CompressedCache, DEFAULT_CACHE_OPTIONS, type CacheOptions, type CacheMode } from './kv/compressed.js';
export { serializeCache, deserializeCache, savedCacheInfo, type LoadCacheOptions } from './kv/cache-file.js';
export { decodePredictors, encodePredictors, type CalibratedPredictors } from './predictors/file.js';
export { calibrate, DEFAULT_CALIBRATION } from './predictors/calibrate.js';
export { registerGridFile, listGrids, type GridFile } from './quant/grid.js';
export { gemmBackend, setGemmBackend } from './tensor/gemm.js';
