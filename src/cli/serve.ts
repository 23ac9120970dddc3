/** `aquakv serve`: the completions server with its compressed prefix cache. */
import { basename } from 'node:path';
import { AquaError } from '../errors.js';
import { loadTokenizer } from '../io/tokenizer.js';
import { DEFAULT_CACHE_OPTIONS, type CacheMode } from '../kv/compressed.js';
import { checkMethod, parseMethod } from '../kv/method.js';
import { PrefixCache } from '../serve/prefix-cache.js';
import { RedisStore } from '../serve/redis-store.js';
import { createServer } from '../serve/server.js';
import { MemoryStore, type PrefixStore } from '../serve/store.js';
import { intOpt, opt, parse } from './args.js';
import type { Command } from './command.js';
import { bufferOption, calibrationDataOption, modelOption, predictorsOption, sinksOption } from './common-options.js';
import { isEmbedded, openModel, resolveModelDir } from './model-dir.js';
import { predictorsFor } from './predictors.js';

export const DEFAULT_SERVE = { port: 8080, host: '127.0.0.1', method: 'aquakv', storeBytes: 256 * 1024 * 1024, maxQueue: 16, maxTokens: 64 };

const options = {
  model: modelOption,
  method: opt('SPEC', 'the cache method of every conversation (fp, aquakv, aquakv[bits=B], higgs, kivi2, …)', DEFAULT_SERVE.method),
  predictors: predictorsOption,
  'calibration-data': calibrationDataOption,
  sinks: sinksOption,
  buffer: bufferOption,
  mode: opt('materialized|compact', 'compressed chunks kept rebuilt in f32, or rebuilt from codes at every step', DEFAULT_CACHE_OPTIONS.mode),
  port: opt('N', 'TCP port (0 picks a free one)', DEFAULT_SERVE.port),
  host: opt('ADDR', 'address to listen on', DEFAULT_SERVE.host),
  store: opt('memory|redis://HOST:PORT', 'where prefix caches are kept: in this process, or in Redis shared by many servers', 'memory'),
  'store-bytes': opt('N', 'byte budget of the in-process store (least recently used entries go first)', DEFAULT_SERVE.storeBytes),
  'max-queue': opt('N', 'requests that may wait for the model; more get 429', DEFAULT_SERVE.maxQueue),
  'max-tokens': opt('N', 'max_tokens of a request that gives none', DEFAULT_SERVE.maxTokens),
};

export const serveCommand: Command = {
  summary: 'serve POST /v1/completions (OpenAI-style, with streaming), GET /health and /metrics; prompt caches kept compressed in memory or Redis',
  options,
  async run(argv) {
    const o = parse(argv, options);
    const port = intOpt(o.port, 'port', DEFAULT_SERVE.port, 0, 65535);
    const host = o.host ?? DEFAULT_SERVE.host;
    const storeSpec = o.store ?? 'memory';
    if (storeSpec !== 'memory' && !/^redis:\/\/[^/\s]+(:\d+)?(\/\d+)?$/.test(storeSpec)) throw new AquaError(`--store must be memory or redis://HOST:PORT, got '${storeSpec}'`);
    const storeBytes = intOpt(o['store-bytes'], 'store-bytes', DEFAULT_SERVE.storeBytes, 0);
    const maxQueue = intOpt(o['max-queue'], 'max-queue', DEFAULT_SERVE.maxQueue, 0);
    const maxTokens = intOpt(o['max-tokens'], 'max-tokens', DEFAULT_SERVE.maxTokens, 1);
    const mode = (o.mode ?? DEFAULT_CACHE_OPTIONS.mode) as CacheMode;
    if (mode !== 'materialized' && mode !== 'compact') throw new AquaError(`--mode must be materialized or compact, got '${o.mode}'`);
    const cacheOptions = { sinks: intOpt(o.sinks, 'sinks', DEFAULT_CACHE_OPTIONS.sinks, 0), buffer: intOpt(o.buffer, 'buffer', DEFAULT_CACHE_OPTIONS.buffer, 1), mode, background: DEFAULT_CACHE_OPTIONS.background };
    const dir = resolveModelDir(o.model);
    const tokenizer = loadTokenizer(dir);
    const model = openModel(dir);
    const method = parseMethod(o.method ?? DEFAULT_SERVE.method);
    checkMethod(method, model.config.kvDim, model.config.nLayers);
    const predictors = predictorsFor(model, dir, () => tokenizer, [method], o.predictors, o['calibration-data'], false)(method);
    const log = (m: string) => console.error(`aquakv serve: ${m}`);
    const store: PrefixStore = storeSpec === 'memory' ? new MemoryStore(storeBytes) : new RedisStore({ url: storeSpec, log });
    const prefixes = new PrefixCache(store, model, method, predictors, cacheOptions);
    const app = await createServer({
      lm: { model, tokenizer }, prefixes, methodName: method.name, modelName: isEmbedded(dir) ? 'aquakv-sotu' : basename(dir),
      maxQueue, defaultMaxTokens: maxTokens, log,
    });
    let address: string;
    try {
      address = await app.listen({ port, host });
    } catch (e) {
      await app.close();
      throw new AquaError(`cannot listen on ${host}:${port} (${(e as Error).message})`);
    }
    console.log(`aquakv serve: ${method.name} cache on ${address}/v1/completions (store: ${storeSpec === 'memory' ? `memory, ${storeBytes.toLocaleString('en-US')} bytes` : storeSpec})`);
    // run until a signal: close the listener and the store, then exit
    await new Promise<void>((done) => {
      const stop = () => {
        app.close().then(done, done);
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
  },
};
