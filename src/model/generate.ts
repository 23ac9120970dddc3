/**
 * Prefill then token-by-token decode through any KV cache, with timings. `decodeTokens` is the
 * loop both `generate` (synchronous, for scripts and tests) and `stream` (asynchronous, with
 * text, stop strings and an AbortSignal: ./stream.ts) run.
 */
import type { KVCache } from './kv-cache.js';
import type { LlamaModel } from './llama.js';
import { Sampler, type SamplerOptions } from './sampler.js';

export interface GenerateOptions extends SamplerOptions {
  maxNewTokens: number;
  /** Tokens that end generation (the model's end-of-text ids, say); the stop token is kept. */
  stopIds: number[];
  /** Called with each new token as it is chosen (streaming). */
  onToken?: (id: number) => void;
}

/** The defaults of every generation option, in one place (the CLI shows them in its help). */
export const DEFAULT_GENERATION: Readonly<Omit<GenerateOptions, 'onToken'>> = Object.freeze({
  maxNewTokens: 64,
  temperature: 0.8, // 0 = greedy
  topP: 0.95,
  seed: 0,
  stopIds: [],
});

export interface GenerateResult {
  ids: number[]; // the new tokens
  prefillTokens: number;
  prefillSeconds: number;
  decodeTokens: number;
  decodeSeconds: number;
}

/**
 * Prompts are read this many tokens at a time, so the activations of one step ([n, F] for the
 * MLP, the attention scores) stay bounded however long the prompt; a multiple of the usual
 * compression block (128).
 */
export const PREFILL_CHUNK = 2048;

/** Timings filled in by `decodeTokens` as it goes. */
export interface DecodeTimings {
  prefillSeconds: number;
  decodeSeconds: number;
  decodeTokens: number;
}

/**
 * Feeds `prompt` into `cache` (which may already hold earlier tokens), then yields up to
 * maxNewTokens sampled tokens. Each token is in the cache when it is yielded, so a caller that
 * stops early leaves a cache holding the prompt and every token it saw: a conversation that can
 * be saved and continued. The last token is fed without computing logits.
 */
export function* decodeTokens(model: LlamaModel, prompt: number[], cache: KVCache, opts: Omit<GenerateOptions, 'onToken'>, timings: DecodeTimings): Generator<number, void> {
  const sampler = new Sampler(opts);
  const t0 = performance.now();
  let logits: Float32Array = new Float32Array(0);
  for (let s = 0; s < prompt.length; s += PREFILL_CHUNK) {
    const end = Math.min(prompt.length, s + PREFILL_CHUNK);
    logits = model.forward(prompt.slice(s, end), cache, { logits: end === prompt.length ? 'last' : 'none' });
  }
  const t1 = performance.now();
  timings.prefillSeconds = (t1 - t0) / 1000;
  for (let i = 0; i < opts.maxNewTokens; i++) {
    const id = sampler.sample(logits);
    const last = opts.stopIds.includes(id) || i === opts.maxNewTokens - 1;
    logits = model.forward([id], cache, { logits: last ? 'none' : 'last' });
    timings.decodeTokens++;
    timings.decodeSeconds = (performance.now() - t1) / 1000;
    yield id;
    if (last) return;
  }
}

/**
 * Feeds `prompt` into `cache`, then samples up to maxNewTokens new tokens; on return the cache
 * holds the prompt and every new token. Options default to `DEFAULT_GENERATION`.
 */
export function generate(model: LlamaModel, prompt: number[], cache: KVCache, options: Partial<GenerateOptions> = {}): GenerateResult {
  const opts: GenerateOptions = { ...DEFAULT_GENERATION, ...options };
  const timings: DecodeTimings = { prefillSeconds: 0, decodeSeconds: 0, decodeTokens: 0 };
  const ids: number[] = [];
  for (const id of decodeTokens(model, prompt, cache, opts, timings)) {
    ids.push(id);
    opts.onToken?.(id);
  }
  return { ids, prefillTokens: prompt.length, ...timings };
}
