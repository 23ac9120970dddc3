/**
 * Pass-key retrieval accuracy: for each distance, `samples` sequences (filler text, a stated key,
 * more filler, the question) are fed through a cache in steps of `chunk` tokens, then the answer
 * is decoded greedily token by token through the same cache; a sample counts when every token of
 * " " + key is produced.
 */
import type { KVCache } from '../model/kv-cache.js';
import type { LlamaModel } from '../model/llama.js';
import { argmax } from '../model/sampler.js';
import { Rng } from '../tensor/rng.js';
import { retrievalDistanceRange, retrievalSample } from './retrieval.js';
import { AquaError } from '../errors.js';

export interface RetrievalResult {
  distance: number;
  samples: number;
  correct: number;
  accuracy: number;
}

export interface RetrievalOptions {
  distances: number[]; // tokens from the end of the fact to the end of the question
  samples: number; // per distance
  total: number; // tokens per sequence (≤ the model's context)
  chunk: number; // tokens per forward while reading the sequence
  seed: number;
  onProgress?: (done: number, total: number) => void;
}

/** The defaults (the CLI's and the demo's; the demo asks for fewer samples to stay short). */
export const DEFAULT_RETRIEVAL = Object.freeze({ samples: 20, chunk: 32, seed: 0 });

/**
 * Distances for pass-key retrieval in sequences of `total` tokens: near, middle and far, where
 * they fit (the question must fit after the fact and the fact before it).
 */
export function defaultRetrievalDistances(total: number, encode: (s: string) => number[]): number[] {
  const range = retrievalDistanceRange(encode, total);
  const nearest = range.nearest + 16;
  const farthest = range.farthest - 8;
  if (farthest < nearest) return [];
  const picks = [nearest + 32, Math.round(total / 2), farthest].map((d) => Math.max(nearest, Math.min(farthest, d)));
  return [...new Set(picks)].sort((a, b) => a - b);
}

export function retrievalAccuracy(
  model: LlamaModel, encode: (s: string) => number[], filler: ArrayLike<number>, makeCache: () => KVCache, o: RetrievalOptions,
): RetrievalResult[] {
  if (o.total > model.config.maxPositionEmbeddings) {
    throw new AquaError(`retrieval: sequences of ${o.total} tokens exceed the model's context of ${model.config.maxPositionEmbeddings}`);
  }
  const out: RetrievalResult[] = [];
  let done = 0;
  for (const distance of o.distances) {
    const rng = new Rng(o.seed + distance);
    let correct = 0;
    for (let s = 0; s < o.samples; s++) {
      const sample = retrievalSample(encode, filler, o.total, distance, rng);
      const cache = makeCache();
      let logits: Float32Array = new Float32Array(0);
      for (let i = 0; i < sample.ids.length; i += o.chunk) logits = model.forward(sample.ids.slice(i, i + o.chunk), cache, { logits: 'last' });
      let ok = true;
      for (let a = 0; a < sample.answer.length; a++) {
        const next = argmax(logits);
        if (next !== sample.answer[a]) {
          ok = false;
          break;
        }
        if (a + 1 < sample.answer.length) logits = model.forward([next], cache, { logits: 'last' });
      }
      if (ok) correct++;
      o.onProgress?.(++done, o.distances.length * o.samples);
    }
    out.push({ distance, samples: o.samples, correct, accuracy: correct / o.samples });
  }
  return out;
}
