/**
 * Pass-key retrieval accuracy: for each distance, `samples` sequences (filler text, a stated key,
 * more filler, the question) are fed through a cache in steps of `chunk` tokens, then the answer
 * is decoded greedily token by token through the same cache; a sample counts when every token of
 * " " + key is produced.
 */
import type { KVCache } from '../kv/cache.js';
import type { LlamaModel } from '../model/llama.js';
import { argmax } from '../model/sampler.js';
import { Rng } from '../tensor/rng.js';
import { retrievalSample } from './retrieval.js';

export interface RetrievalResult {
  distance: number;
  samples: number;
  correct: number;
  accuracy: number;
}

export function retrievalAccuracy(
  model: LlamaModel, encode: (s: string) => number[], filler: ArrayLike<number>, makeCache: () => KVCache,
  o: { distances: number[]; samples: number; total: number; chunk: number; seed: number; onProgress?: (done: number, total: number) => void },
): RetrievalResult[] {
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
