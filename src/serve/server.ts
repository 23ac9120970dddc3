/**
 * `aquakv serve`: an OpenAI-style completions endpoint whose prompt caches are kept compressed in
 * a prefix store (in process, or Redis shared by many servers).
 *
 *   POST /v1/completions   { prompt, max_tokens, temperature, top_p, seed, stop, stream }
 *   GET  /health           { status: "ok", … }
 *   GET  /metrics          Prometheus text
 *
 * Bodies are validated by JSON schema (fastify + ajv); a bad one gets a 400 naming the field. A
 * request whose prompt and max_tokens pass the model's context gets a 400; one that finds the
 * queue full a 429. A client that disconnects aborts its generation within one token.
 */
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import type { LanguageModel } from '../model/stream.js';
import { Completer, QueueFullError, type CompletionResult } from './completer.js';
import type { PrefixCache } from './prefix-cache.js';

export interface ServerOptions {
  lm: LanguageModel;
  prefixes: PrefixCache;
  /** The method as served (shown in responses and /health). */
  methodName: string;
  modelName: string;
  maxQueue: number;
  /** Default max_tokens when a request gives none. */
  defaultMaxTokens: number;
  log?: (message: string) => void;
}

interface CompletionBody {
  prompt: string;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  stop?: string | string[];
  stream?: boolean;
  model?: string;
  n?: number;
  user?: string;
}

const bodySchema = {
  type: 'object',
  required: ['prompt'],
  additionalProperties: false,
  properties: {
    prompt: { type: 'string', minLength: 1 },
    max_tokens: { type: 'integer', minimum: 1 },
    temperature: { type: 'number', minimum: 0, maximum: 2 },
    top_p: { type: 'number', minimum: 0, maximum: 1 },
    seed: { type: 'integer', minimum: 0, maximum: 2 ** 32 - 1 },
    stop: { anyOf: [{ type: 'string', minLength: 1 }, { type: 'array', items: { type: 'string', minLength: 1 }, maxItems: 4 }] },
    stream: { type: 'boolean' },
    model: { type: 'string' },
    n: { type: 'integer', minimum: 1, maximum: 1 },
    user: { type: 'string' },
  },
} as const;

/** An OpenAI-style error body. */
function errorBody(message: string, type: string, param: string | null) {
  return { error: { message, type, param, code: null } };
}

/** The field a schema error is about (`prompt`, `max_tokens`, … or the unknown one). */
function fieldOf(e: FastifyError): string | null {
  const v = e.validation?.[0];
  if (!v) return null;
  const params = v.params as { missingProperty?: string; additionalProperty?: string };
  if (params.missingProperty) return params.missingProperty;
  if (params.additionalProperty) return params.additionalProperty;
  const path = v.instancePath.replace(/^\//, '').split('/')[0];
  return path || null;
}

interface Metrics {
  requests: Record<'ok' | 'aborted' | 'bad_request' | 'rejected' | 'error', number>;
}

/** The abort reason when a client goes away (a request waiting in the queue rejects with it). */
class ClientGone extends Error {
  constructor() {
    super('client disconnected');
  }
}

export async function createServer(o: ServerOptions): Promise<FastifyInstance> {
  // ajv: refuse unknown fields and wrong types instead of dropping or coercing them
  const app = Fastify({ logger: false, bodyLimit: 8 * 1024 * 1024, ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } } });
  const completer = new Completer(o.lm, o.prefixes, o.maxQueue);
  const metrics: Metrics = { requests: { ok: 0, aborted: 0, bad_request: 0, rejected: 0, error: 0 } };
  const { model, tokenizer } = o.lm;
  const context = model.config.maxPositionEmbeddings;

  app.setErrorHandler((e: FastifyError, _req, reply) => {
    if (e.validation) {
      metrics.requests.bad_request++;
      const field = fieldOf(e);
      return reply.code(400).send(errorBody(`invalid request: ${field ? `'${field}' ` : ''}${e.validation[0].message ?? 'is invalid'}`, 'invalid_request_error', field));
    }
    const status = e.statusCode && e.statusCode >= 400 && e.statusCode < 500 ? e.statusCode : 500;
    if (status < 500) metrics.requests.bad_request++;
    else {
      metrics.requests.error++;
      o.log?.(`error: ${e.message}`);
    }
    return reply.code(status).send(errorBody(status < 500 ? e.message : 'internal error', status < 500 ? 'invalid_request_error' : 'server_error', null));
  });

  app.get('/health', async () => {
    const s = o.prefixes.store.stats();
    return { status: 'ok', model: o.modelName, method: o.methodName, store: o.prefixes.store.kind, storeUp: s.up, queued: completer.queued };
  });

  app.get('/metrics', async (_req, reply) => {
    const s = o.prefixes.store.stats();
    const c = o.prefixes.counters;
    const t = completer.totals;
    const lines: string[] = [];
    const metric = (name: string, type: 'counter' | 'gauge', help: string, values: [string, number][]) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of values) lines.push(`${name}${labels} ${Number.isFinite(v) ? v : 0}`);
    };
    metric('aquakv_requests_total', 'counter', 'Completion requests by outcome.', Object.entries(metrics.requests).map(([k, v]) => [`{outcome="${k}"}`, v]));
    metric('aquakv_prompt_tokens_total', 'counter', 'Prompt tokens received.', [['', t.promptTokens]]);
    metric('aquakv_prefill_tokens_total', 'counter', 'Prompt tokens read through the model (not restored from the prefix cache).', [['', t.prefilledTokens]]);
    metric('aquakv_generated_tokens_total', 'counter', 'Tokens generated.', [['', t.generatedTokens]]);
    metric('aquakv_decode_tokens_per_second', 'gauge', 'Decode speed of the last completed request.', [['', t.lastDecodeTokensPerSecond]]);
    metric('aquakv_prefix_cache_hits_total', 'counter', 'Requests that restored a stored prefix.', [['', c.hits]]);
    metric('aquakv_prefix_cache_misses_total', 'counter', 'Requests that found no stored prefix.', [['', c.misses]]);
    metric('aquakv_prefix_cache_reused_tokens_total', 'counter', 'Prompt tokens restored from stored prefixes.', [['', c.reusedTokens]]);
    metric('aquakv_prefix_cache_corrupt_total', 'counter', 'Stored entries found corrupt, partial or foreign (ignored and deleted).', [['', c.corrupt]]);
    metric('aquakv_prefix_cache_stores_total', 'counter', 'Prefix entries written.', [['', c.stored]]);
    metric('aquakv_store_bytes', 'gauge', 'Bytes of prefix entries held (Redis: written by this process).', [['', s.bytes]]);
    metric('aquakv_store_entries', 'gauge', 'Prefix entries held (Redis: written by this process).', [['', s.entries]]);
    metric('aquakv_store_evictions_total', 'counter', 'Entries evicted to stay within the byte budget.', [['', s.evictions]]);
    metric('aquakv_store_errors_total', 'counter', 'Store operations that failed (served as misses).', [['', s.errors]]);
    metric('aquakv_store_up', 'gauge', '1 when the prefix store is reachable.', [['', s.up ? 1 : 0]]);
    metric('aquakv_queue_depth', 'gauge', 'Requests waiting for the model.', [['', completer.queued]]);
    reply.header('content-type', 'text/plain; version=0.0.4');
    return lines.join('\n') + '\n';
  });

  app.post<{ Body: CompletionBody }>('/v1/completions', { schema: { body: bodySchema } }, async (req, reply) => {
    const b = req.body;
    const prompt = tokenizer.encode(b.prompt);
    const maxTokens = b.max_tokens ?? Math.min(o.defaultMaxTokens, Math.max(1, context - prompt.length));
    if (prompt.length === 0) return badRequest(reply, `'prompt' encodes to no tokens`, 'prompt');
    if (prompt.length + maxTokens > context) {
      return badRequest(reply, `the prompt (${prompt.length} tokens) plus max_tokens (${maxTokens}) passes the model's context of ${context} tokens`, b.max_tokens === undefined ? 'prompt' : 'max_tokens');
    }
    const stop = b.stop === undefined ? [] : typeof b.stop === 'string' ? [b.stop] : b.stop;
    // the client going away aborts generation (and a wait in the queue)
    const abort = new AbortController();
    let finished = false;
    reply.raw.on('close', () => {
      if (!finished) abort.abort(new ClientGone());
    });
    const request = { prompt, maxTokens, temperature: b.temperature ?? 1, topP: b.top_p ?? 1, seed: b.seed ?? 0, stop, signal: abort.signal };
    const id = `cmpl-${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
    const created = Math.floor(Date.now() / 1000);
    const chunk = (text: string, finish: string | null) => ({ id, object: 'text_completion', created, model: o.modelName, choices: [{ text, index: 0, logprobs: null, finish_reason: finish }] });

    if (!b.stream) {
      let result: CompletionResult;
      try {
        result = await completer.complete(request);
      } catch (e) {
        finished = true;
        return rejected(reply, e);
      }
      finished = true;
      if (result.finishReason === 'abort') {
        metrics.requests.aborted++;
        return reply;
      }
      metrics.requests.ok++;
      return {
        ...chunk(result.text, result.finishReason === 'stop' ? 'stop' : 'length'),
        usage: { prompt_tokens: result.promptTokens, completion_tokens: result.ids.length, total_tokens: result.promptTokens + result.ids.length },
        aquakv: { reused_prompt_tokens: result.reusedTokens, prefill_seconds: result.prefillSeconds, decode_tokens_per_second: result.decodeSeconds > 0 ? result.decodeTokens / result.decodeSeconds : null },
      };
    }

    // server-sent events: one event per token, a last one with the finish reason, then [DONE]
    reply.hijack();
    const raw = reply.raw;
    let headersSent = false;
    const send = (data: string) => {
      if (!headersSent) {
        raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
        headersSent = true;
      }
      if (!raw.destroyed) raw.write(`data: ${data}\n\n`);
    };
    try {
      const result = await completer.complete(request, (piece) => {
        if (piece.text) send(JSON.stringify(chunk(piece.text, null)));
      });
      finished = true;
      if (result.finishReason === 'abort') {
        metrics.requests.aborted++;
        raw.end();
        return;
      }
      send(JSON.stringify({ ...chunk('', result.finishReason === 'stop' ? 'stop' : 'length'), usage: { prompt_tokens: result.promptTokens, completion_tokens: result.ids.length, total_tokens: result.promptTokens + result.ids.length } }));
      send('[DONE]');
      metrics.requests.ok++;
      raw.end();
    } catch (e) {
      finished = true;
      if (!headersSent) {
        const { status, body } = failure(e);
        raw.writeHead(status, { 'content-type': 'application/json' });
        raw.end(JSON.stringify(body));
      } else {
        metrics.requests.error++;
        raw.end();
      }
    }
  });

  function badRequest(reply: FastifyReply, message: string, param: string) {
    metrics.requests.bad_request++;
    return reply.code(400).send(errorBody(message, 'invalid_request_error', param));
  }

  function failure(e: unknown): { status: number; body: ReturnType<typeof errorBody> } {
    if (e instanceof QueueFullError) {
      metrics.requests.rejected++;
      return { status: 429, body: errorBody(e.message, 'rate_limit_error', null) };
    }
    if (e instanceof ClientGone) {
      metrics.requests.aborted++;
      return { status: 499, body: errorBody('client disconnected', 'aborted', null) };
    }
    metrics.requests.error++;
    o.log?.(`error: ${(e as Error).message}`);
    return { status: 500, body: errorBody('internal error', 'server_error', null) };
  }

  function rejected(reply: FastifyReply, e: unknown) {
    const { status, body } = failure(e);
    if (status === 429) reply.header('retry-after', '1');
    return reply.code(status).send(body);
  }

  app.addHook('onClose', async () => {
    await o.prefixes.store.close();
  });
  return app;
}
