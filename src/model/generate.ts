/** Prefill then token-by-token decode through any KV cache, with timings. */
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
 * Feeds `prompt` into `cache` (which may already hold earlier tokens), then samples up to
 * maxNewTokens new ones token by token. Options default to `DEFAULT_GENERATION`.
 */
export function generate(model: LlamaModel, prompt: number[], cache: KVCache, options: Partial<GenerateOptions> = {}): GenerateResult {
  const opts: GenerateOptions = { ...DEFAULT_GENERATION, ...options };
  const sampler = new Sampler(opts);
  const t0 = performance.now();
  let logits = model.forward(prompt, cache, { logits: 'last' });
  const t1 = performance.now();
  const ids: number[] = [];
  let decodeTokens = 0;
  for (let i = 0; i < opts.maxNewTokens; i++) {
    const id = sampler.sample(logits);
    ids.push(id);
    opts.onToken?.(id);
    if (opts.stopIds.includes(id) || i === opts.maxNewTokens - 1) break;
    logits = model.forward([id], cache, { logits: 'last' });
    decodeTokens++;
  }
  const t2 = performance.now();
  return {
    ids,
    prefillTokens: prompt.length,
    prefillSeconds: (t1 - t0) / 1000,
    decodeTokens,
    decodeSeconds: (t2 - t1) / 1000,
  };
}
