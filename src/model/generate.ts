/** Prefill then token-by-token decode through any KV cache, with timings. */
import type { KVCache } from '../kv/cache.js';
import type { LlamaModel } from './llama.js';
import { Sampler, type SamplerOptions } from './sampler.js';

export interface GenerateOptions extends SamplerOptions {
  maxNewTokens: number;
  stopIds?: number[];
  /** Called with each new token as it is chosen (streaming). */
  onToken?: (id: number) => void;
}

export interface GenerateResult {
  ids: number[]; // the new tokens
  prefillTokens: number;
  prefillSeconds: number;
  decodeTokens: number;
  decodeSeconds: number;
}

export function generate(model: LlamaModel, prompt: number[], cache: KVCache, opts: GenerateOptions): GenerateResult {
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
    if (opts.stopIds?.includes(id) || i === opts.maxNewTokens - 1) break;
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
