/**
 * Language-model quality of a model on a text: perplexity and bits per byte over non-overlapping
 * windows (each a fresh full-precision prefill), next to a unigram baseline (add-one smoothed
 * token frequencies of a reference text) scored on exactly the same predicted tokens.
 */
import { FullCache } from '../kv/full.js';
import type { LlamaModel } from '../model/llama.js';
import { runWindow } from '../model/log-probs.js';

export interface LmScore {
  tokens: number; // predicted tokens
  bytes: number; // UTF-8 bytes of those tokens
  perplexity: number;
  bitsPerByte: number;
  unigramPerplexity: number;
  unigramBitsPerByte: number;
}

export function unigramLogProbs(ids: ArrayLike<number>, vocabSize: number): Float64Array {
  const counts = new Float64Array(vocabSize).fill(1);
  for (let i = 0; i < ids.length; i++) counts[ids[i]]++;
  const total = ids.length + vocabSize;
  return counts.map((c) => Math.log(c / total));
}

export function scoreText(
  model: LlamaModel, ids: number[], tokenBytes: (id: number) => number, unigram: Float64Array,
  o: { seqLen: number; maxTokens: number; onProgress?: (done: number, total: number) => void },
): LmScore {
  const windows = Math.max(1, Math.floor(Math.min(ids.length, o.maxTokens) / o.seqLen));
  let nll = 0, uni = 0, tokens = 0, bytes = 0;
  for (let w = 0; w < windows; w++) {
    const win = ids.slice(w * o.seqLen, (w + 1) * o.seqLen);
    // the whole window in one forward through the f32 cache
    runWindow(model, win, win.length, new FullCache(model), (t, lp) => {
      const target = win[t + 1];
      nll -= lp[target];
      uni -= unigram[target];
      tokens++;
      bytes += tokenBytes(target);
    });
    o.onProgress?.(w + 1, windows);
  }
  return {
    tokens,
    bytes,
    perplexity: Math.exp(nll / tokens),
    bitsPerByte: nll / Math.LN2 / bytes,
    unigramPerplexity: Math.exp(uni / tokens),
    unigramBitsPerByte: uni / Math.LN2 / bytes,
  };
}
