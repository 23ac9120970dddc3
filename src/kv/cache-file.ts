/**
 * Saved caches: any cache (full precision, or compressed in either mode) as bytes, and back.
 *
 *   "AQKVCACH" | u32 version | u32 header bytes | header (JSON, UTF-8) | arrays | sha256 (64 hex chars)
 *
 * The header names the model (config fingerprint and weights digest), the method as asked for and
 * the plan it ran (every quantizer resolved), the predictors' digest (AQUA-KV), the cache options,
 * the length and the chunk layout. Arrays follow in a fixed order, each as u32 byte length + bytes
 * padded to 4: the stored blocks exactly as the cache holds them (codes and fp16 scales, never
 * re-encoded) and the full-precision rows (sinks, buffer, or a full cache's keys and values). The
 * trailing hash covers everything before it, so a corrupt or truncated file is refused whole.
 * A restored cache continues bit for bit as the saved one would have.
 */
import { AquaError } from '../errors.js';
import type { CacheHost, KVCache } from '../model/kv-cache.js';
import { platform } from '../platform/index.js';
import { blockFits, type QuantizedBlock, type Quantizer } from '../quant/quantizer.js';
import type { Chunk } from './chunk-store.js';
import { CompressedCache, type CacheMode, type CompressedCacheState } from './compressed.js';
import { resolvePlan, restoreCache } from './factory.js';
import { FullCache, type FullCacheState } from './full.js';
import { predictorsDigest, type PredictorSet } from './linear-predictor.js';
import { formatMethod, layerQuantizers, methodKey, parseMethod, type CacheMethod } from './method.js';

export const CACHE_FORMAT = 'aquakv-cache';
export const CACHE_VERSION = 1;
const MAGIC = 'AQKVCACH';
const HASH_CHARS = 64;

interface CacheFileHeader {
  format: string;
  version: number;
  model: { fingerprint: string; weights: string };
  method: string; // as asked for (`fp`, `aquakv[bits=2.5]`, …)
  plan: string; // methodKey of the plan that ran
  predictors: string | null; // predictorsDigest, for methods with predictors
  cache: { sinks: number; buffer: number; mode: CacheMode } | null; // null: full cache
  length: number;
  bufStart: number;
  chunks: [number, number][]; // [start, n]
}

export interface LoadCacheOptions {
  /** The predictors the cache was made with (AQUA-KV methods); checked by digest. */
  predictors?: PredictorSet | null;
  /** Read a compressed cache in another mode than it was saved in (same tokens, same numbers). */
  mode?: CacheMode;
  /** Refuse the file unless it holds a cache of this method. */
  method?: CacheMethod;
}

/** What a saved cache holds, read from its header without restoring it. */
export interface SavedCacheInfo {
  /** The method as saved (canonical spec), parsed. */
  method: CacheMethod;
  plan: string;
  predictors: string | null;
  length: number;
  cache: CacheFileHeader['cache'];
}

/** The bytes of `cache` (a FullCache or CompressedCache from this library), between steps. */
export function serializeCache(cache: KVCache): Uint8Array {
  const parts: Uint8Array[] = [];
  const put = (a: Float32Array | Uint16Array | Uint8Array) => {
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, a.byteLength, true);
    parts.push(len, new Uint8Array(a.buffer, a.byteOffset, a.byteLength), new Uint8Array((4 - (a.byteLength % 4)) % 4));
  };
  let header: CacheFileHeader;
  if (cache instanceof FullCache) {
    const s = cache.state();
    header = headerOf(cache.host, parseMethod('fp'), parseMethod('fp'), null, null, s.length, s.length, []);
    for (let l = 0; l < s.keys.length; l++) {
      put(s.keys[l]);
      put(s.values[l]);
    }
  } else if (cache instanceof CompressedCache) {
    const s = cache.state();
    const { host, method, plan, predictors, sinks, buffer, mode } = cache.setup;
    header = headerOf(host, method, plan, plan.usesPredictors ? predictors : null, { sinks, buffer, mode }, s.length, s.bufStart, s.chunks.map((c) => [c.start, c.n]));
    for (let l = 0; l < s.sinkK.length; l++) {
      put(s.sinkK[l]);
      put(s.sinkV[l]);
      put(s.bufK[l]);
      put(s.bufV[l]);
    }
    for (const c of s.chunks) {
      for (const b of [...c.keys, ...c.values]) {
        put(b.codes);
        put(b.scales);
        put(b.zeros ?? new Uint16Array(0));
      }
    }
  } else {
    throw new AquaError(`cannot save a cache of type ${cache.constructor.name}: only aquakv's FullCache and CompressedCache can be saved`);
  }
  const head = new TextEncoder().encode(JSON.stringify(header));
  const prefix = new Uint8Array(16);
  prefix.set(new TextEncoder().encode(MAGIC));
  new DataView(prefix.buffer).setUint32(8, CACHE_VERSION, true);
  new DataView(prefix.buffer).setUint32(12, head.byteLength, true);
  const bodyParts = [prefix, head, ...parts];
  const size = bodyParts.reduce((s, p) => s + p.byteLength, 0);
  const out = new Uint8Array(size + HASH_CHARS);
  let at = 0;
  const h = platform.sha256();
  for (const p of bodyParts) {
    out.set(p, at);
    at += p.byteLength;
  }
  h.update(out.subarray(0, size));
  out.set(new TextEncoder().encode(h.digest()), size);
  return out;
}

function headerOf(
  host: CacheHost, method: CacheMethod, plan: CacheMethod, predictors: PredictorSet | null, cache: CacheFileHeader['cache'],
  length: number, bufStart: number, chunks: [number, number][],
): CacheFileHeader {
  return {
    format: CACHE_FORMAT, version: CACHE_VERSION,
    model: { fingerprint: host.config.fingerprint, weights: host.weightsDigest },
    method: formatMethod(method), plan: methodKey(plan, host.config.kvDim),
    predictors: predictors ? predictorsDigest(predictors) : null,
    cache, length, bufStart, chunks,
  };
}

/** Checks the frame and hash of saved-cache bytes and returns the header and where the arrays begin. */
function readFrame(bytes: Uint8Array, where: string): { header: CacheFileHeader; arraysAt: number; end: number } {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 16 + HASH_CHARS || new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) {
    throw new AquaError(`${where} is not a saved aquakv cache`);
  }
  const version = dv.getUint32(8, true);
  if (version !== CACHE_VERSION) throw new AquaError(`${where} is a saved cache of format version ${version}; this aquakv reads version ${CACHE_VERSION}`);
  const end = bytes.byteLength - HASH_CHARS;
  const h = platform.sha256();
  h.update(bytes.subarray(0, end));
  if (h.digest() !== new TextDecoder().decode(bytes.subarray(end))) throw new AquaError(`${where} is corrupt or truncated (its checksum does not match)`);
  const headBytes = dv.getUint32(12, true);
  if (16 + headBytes > end) throw new AquaError(`${where}: header runs past the end of the file`);
  let header: CacheFileHeader;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + headBytes))) as CacheFileHeader;
  } catch {
    throw new AquaError(`${where}: header is not valid JSON`);
  }
  if (header?.format !== CACHE_FORMAT) throw new AquaError(`${where} is not a saved aquakv cache (format ${JSON.stringify(header?.format ?? null)})`);
  const isCount = (x: unknown): x is number => Number.isInteger(x) && (x as number) >= 0;
  const okChunks = Array.isArray(header.chunks) && header.chunks.every((c) => Array.isArray(c) && c.length === 2 && isCount(c[0]) && isCount(c[1]) && c[1] > 0);
  const okCache = header.cache === null || (typeof header.cache === 'object' && isCount(header.cache.sinks) && isCount(header.cache.buffer) && header.cache.buffer > 0 && (header.cache.mode === 'compact' || header.cache.mode === 'materialized'));
  if (!isCount(header.length) || !isCount(header.bufStart) || !okChunks || !okCache || typeof header.method !== 'string' || typeof header.plan !== 'string' || typeof header.model?.weights !== 'string') {
    throw new AquaError(`${where}: header is malformed`);
  }
  return { header, arraysAt: 16 + headBytes, end };
}

/** The header of saved-cache bytes: which method, plan and predictors it needs, and its length. */
export function savedCacheInfo(bytes: Uint8Array, where = 'saved cache'): SavedCacheInfo {
  const { header } = readFrame(bytes, where);
  return { method: savedMethod(header, where), plan: header.plan, predictors: header.predictors, length: header.length, cache: header.cache };
}

/** Throws unless a saved cache of method `saved` is one of method `asked` (C: the model's key channels). */
export function checkSavedMethod(saved: CacheMethod, asked: CacheMethod, C: number, where: string): void {
  if (methodKey(asked, C) !== methodKey(saved, C) && formatMethod(asked) !== formatMethod(saved)) {
    throw new AquaError(`${where} holds a cache of method ${formatMethod(saved)}, not ${formatMethod(asked)}`, 'leave the method out to continue with the saved one');
  }
}

/** The header's method, parsed (a file from a newer aquakv may name one this one does not know). */
function savedMethod(header: CacheFileHeader, where: string): CacheMethod {
  try {
    return parseMethod(header.method);
  } catch (e) {
    throw new AquaError(`${where}: its method '${header.method}' is not one this aquakv knows (${(e as Error).message})`);
  }
}

/** A cache restored from `serializeCache` bytes, for `model` (which must be the model it was made with). */
export function deserializeCache(bytes: Uint8Array, model: CacheHost, options: LoadCacheOptions = {}, where = 'saved cache'): KVCache {
  const { header, arraysAt, end } = readFrame(bytes, where);
  const cfg = model.config;
  const { nLayers: L, kvDim: C } = cfg;
  if (header.model.fingerprint !== cfg.fingerprint || header.model.weights !== model.weightsDigest) {
    throw new AquaError(`${where} was saved for another model (weights ${header.model.weights.slice(0, 12)}…, this model's ${model.weightsDigest.slice(0, 12)}…)`);
  }
  const method = savedMethod(header, where);
  if (options.method) checkSavedMethod(method, options.method, C, where);

  let predictors: PredictorSet | null = null;
  if (header.predictors !== null) {
    predictors = options.predictors ?? null;
    if (!predictors) throw new AquaError(`${where} is a ${header.method} cache: load it with the predictors it was made with`);
    if (predictorsDigest(predictors) !== header.predictors) throw new AquaError(`${where} was made with other predictors than those given (digest ${header.predictors.slice(0, 12)}…)`);
  }

  // the arrays, in the order serializeCache wrote them
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = arraysAt;
  const next = (what: string): Uint8Array => {
    if (at + 4 > end) throw new AquaError(`${where}: ${what} is missing (the file ends early)`);
    const n = dv.getUint32(at, true);
    if (at + 4 + n > end) throw new AquaError(`${where}: ${what} runs past the end of the file`);
    const out = bytes.slice(at + 4, at + 4 + n); // a copy: aligned, and independent of the file's buffer
    at += 4 + n + ((4 - (n % 4)) % 4);
    return out;
  };
  const rowsOf = (what: string, rows: number): Float32Array => {
    const b = next(what);
    if (b.byteLength !== rows * C * 4) throw new AquaError(`${where}: ${what} has ${b.byteLength} bytes, expected ${rows} rows of ${C} f32`);
    return new Float32Array(b.buffer, b.byteOffset, rows * C);
  };
  const u16 = (b: Uint8Array) => new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);

  let cache: KVCache;
  if (header.cache === null) {
    if (method.kind !== 'fp' || header.chunks.length > 0) throw new AquaError(`${where}: header is malformed (a full cache with method ${header.method})`);
    const state: FullCacheState = { length: header.length, keys: [], values: [] };
    for (let l = 0; l < L; l++) {
      state.keys.push(rowsOf(`layer ${l} keys`, header.length));
      state.values.push(rowsOf(`layer ${l} values`, header.length));
    }
    finish();
    cache = new FullCache(model, state);
  } else {
    if (method.kind === 'fp') throw new AquaError(`${where}: header is malformed (a compressed cache with method fp)`);
    const { sinks, buffer } = header.cache;
    const P = Math.min(sinks, header.length);
    const bufRows = header.length - header.bufStart;
    if (bufRows < 0) throw new AquaError(`${where}: header is malformed (buffer starts after the end)`);
    const state: CompressedCacheState = { length: header.length, sinkK: [], sinkV: [], chunks: [], bufStart: header.bufStart, bufK: [], bufV: [] };
    for (let l = 0; l < L; l++) {
      state.sinkK.push(rowsOf(`layer ${l} sink keys`, P));
      state.sinkV.push(rowsOf(`layer ${l} sink values`, P));
      state.bufK.push(rowsOf(`layer ${l} buffer keys`, bufRows));
      state.bufV.push(rowsOf(`layer ${l} buffer values`, bufRows));
    }
    let plan: CacheMethod;
    try {
      plan = resolvePlan(method, predictors, C);
    } catch (e) {
      throw new AquaError(`${where}: ${(e as Error).message}`);
    }
    if (methodKey(plan, C) !== header.plan) throw new AquaError(`${where} ran plan ${header.plan}; ${header.method} here runs ${methodKey(plan, C)}`);
    const q = layerQuantizers(plan, C, L);
    const block = (what: string, quantizer: Quantizer, rows: number): QuantizedBlock => {
      const codes = next(`${what} codes`);
      const scales = u16(next(`${what} scales`));
      const z = next(`${what} zero points`);
      const b: QuantizedBlock = { rows, cols: C, codes, scales, zeros: quantizer.blockSize(rows).zeros === null ? null : u16(z) };
      if (!blockFits(quantizer, b, C) || (b.zeros === null && z.byteLength > 0)) throw new AquaError(`${where}: ${what} is not a ${quantizer.spec} block of ${rows} tokens`);
      return b;
    };
    for (const [start, n] of header.chunks) {
      const chunk: Chunk = { start, n, keys: [], values: [] };
      for (let l = 0; l < L; l++) chunk.keys.push(block(`chunk at ${start}, layer ${l} keys`, q.keys[l], n));
      for (let l = 0; l < L; l++) chunk.values.push(block(`chunk at ${start}, layer ${l} values`, q.values[l], n));
      state.chunks.push(chunk);
    }
    finish();
    try {
      cache = restoreCache(model, method, predictors, { sinks, buffer, mode: options.mode ?? header.cache.mode }, state);
    } catch (e) {
      throw new AquaError(`${where}: ${(e as Error).message}`);
    }
  }
  return cache;

  function finish(): void {
    if (at !== end) throw new AquaError(`${where}: ${end - at} bytes follow the last array`);
  }
}

/** Writes `cache` to `path` atomically (a temporary file, then a rename): a crash never leaves a file that loads. */
export function saveCache(cache: KVCache, path: string): number {
  const bytes = serializeCache(cache);
  platform.writeFileAtomic(path, bytes);
  return bytes.byteLength;
}

/** Reads a cache saved by `saveCache`, for `model`; one-line errors for another model, method, predictors, or a damaged file. */
export function loadCache(path: string, model: CacheHost, options: LoadCacheOptions = {}): KVCache {
  platform.checkFile(path);
  return deserializeCache(platform.readFile(path), model, options, path);
}
