/**
 * Cheap in-training measurements of copying, teacher-forced on fixed held-out batches (one
 * forward pass each): does the model complete a pass key, and does it continue a repeated
 * passage? They show whether retrieval is being learned long before a full evaluation would.
 */
import { Rng } from '../tensor/rng.js';
import { retrievalDistanceRange, retrievalSample } from '../eval/retrieval.js';
import { argmax } from '../model/sampler.js';
import { repeatedPassage } from './data.js';
import type { TrainableLlama } from './trainable.js';

interface ScoredBatch {
  inputs: Int32Array;
  /** Per row: the positions of `inputs` whose next token is scored, and those tokens. */
  scored: { positions: number[]; tokens: number[] }[];
}

const argmaxRow = (logits: Float32Array, row: number, V: number) => argmax(logits.subarray(row * V, (row + 1) * V));

/**
 * Returns a probe: `passkey` = share of rows whose whole key is predicted (teacher-forced),
 * `passkeyFirstDigit` = share whose first digit is (the hard one: later digits can follow the
 * first by copying), `repeat` = top-1 accuracy on the second copy of a repeated passage and
 * `repeatFirstTime` on the same tokens where they first appear: copying shows as the gap.
 */
export function copyingProbe(
  heldOut: Int32Array, encode: (s: string) => number[], B: number, T: number, seed: number,
): (model: TrainableLlama) => Record<string, number> {
  const rng = new Rng(seed);
  const passkey: ScoredBatch = { inputs: new Int32Array(B * T), scored: [] };
  const answerLength = encode(' 12345').length;
  const total = T + 1 - answerLength;
  // distances spread evenly from just after the question's length to the start of the window
  const range = retrievalDistanceRange(encode, total);
  const nearest = range.nearest + 8;
  const farthest = range.farthest;
  for (let b = 0; b < B; b++) {
    const distance = nearest + Math.round(((farthest - nearest) * b) / Math.max(1, B - 1));
    const s = retrievalSample(encode, heldOut, total, distance, rng);
    const seq = [...s.ids, ...s.answer];
    passkey.inputs.set(seq.slice(0, T), b * T);
    const first = s.ids.length - 1; // the position predicting the answer's first token
    passkey.scored.push({ positions: s.answer.map((_, i) => first + i), tokens: s.answer });
  }
  const repeat: ScoredBatch = { inputs: new Int32Array(B * T), scored: [] };
  const firstTime: ScoredBatch['scored'] = [];
  for (let b = 0; b < B; b++) {
    const r = repeatedPassage(heldOut, T + 1, rng);
    repeat.inputs.set(r.ids.subarray(0, T), b * T);
    // from the copy's second token on, the passage so far identifies where to copy from; the
    // same tokens at their first appearance measure what the model predicts without copying
    const at = (start: number) => ({
      positions: Array.from({ length: r.length - 1 }, (_, i) => start + i),
      tokens: Array.from({ length: r.length - 1 }, (_, i) => r.ids[start + i + 1]),
    });
    repeat.scored.push(at(r.copy));
    firstTime.push(at(r.source));
  }
  return (model) => {
    const V = model.config.vocabSize;
    let logits = model.forward(passkey.inputs);
    let whole = 0;
    let firstDigit = 0;
    passkey.scored.forEach((row, b) => {
      const hits = row.positions.map((p, i) => argmaxRow(logits, b * T + p, V) === row.tokens[i]);
      if (hits.every(Boolean)) whole++;
      // the answer is " " then the digits; the first digit is the second scored token
      if (hits[Math.min(1, hits.length - 1)]) firstDigit++;
    });
    logits = model.forward(repeat.inputs);
    const top1 = (rows: ScoredBatch['scored']) => {
      let correct = 0;
      let count = 0;
      rows.forEach((row, b) => row.positions.forEach((p, i) => {
        if (argmaxRow(logits, b * T + p, V) === row.tokens[i]) correct++;
        count++;
      }));
      return correct / count;
    };
    return { passkey: whole / B, passkeyFirstDigit: firstDigit / B, repeat: top1(repeat.scored), repeatFirstTime: top1(firstTime) };
  };
}
