/**
 * Synthetic long-context retrieval ("pass key"): a random 5-digit key is stated inside ordinary
 * text, more text follows, and the sequence ends with the question; the model must answer with
 * the key. Used in training (a small share of sequences) and in evaluation at chosen distances.
 * Digits are single tokens in our tokenizer, so the answer is always " " + 5 digit tokens.
 */
import type { Rng } from '../tensor/rng.js';

export const FACT = (key: string) => ` The pass key is ${key}. Remember it.`;
export const QUESTION = ' What is the pass key? The pass key is';

export interface RetrievalSample {
  ids: number[]; // filler, fact, filler, question
  answer: number[]; // the tokens of " " + key
  key: string;
  distance: number; // tokens from the end of the fact to the end of the question
  factAt: number; // index of the fact's first token (the filler before it is that long)
}

/**
 * The distances a window of `total` tokens admits: the question must fit after the fact
 * (distance ≥ its length) and the fact before it (distance ≤ total − the fact's length).
 */
export function retrievalDistanceRange(encode: (s: string) => number[], total: number): { nearest: number; farthest: number } {
  return { nearest: encode(QUESTION).length, farthest: total - encode(FACT('12345')).length };
}

/**
 * Builds one sample of exactly `total` tokens whose fact ends `distance` tokens before the end.
 * `filler` is a long token stream of ordinary text to cut windows from.
 */
export function retrievalSample(
  encode: (s: string) => number[], filler: ArrayLike<number>, total: number, distance: number, rng: Rng,
): RetrievalSample {
  const key = String(10000 + rng.int(90000));
  const fact = encode(FACT(key));
  const question = encode(QUESTION);
  const answer = encode(' ' + key);
  const after = distance - question.length;
  const before = total - fact.length - distance;
  if (after < 0 || before < 0) throw new RangeError(`retrievalSample: distance ${distance} does not fit ${total} tokens`);
  const start = rng.int(Math.max(1, filler.length - before - after - 1));
  const ids: number[] = [];
  for (let i = 0; i < before; i++) ids.push(filler[start + i]);
  ids.push(...fact);
  for (let i = 0; i < after; i++) ids.push(filler[start + before + i]);
  ids.push(...question);
  return { ids, answer, key, distance, factAt: before };
}
