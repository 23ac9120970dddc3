/**
 * Training batches: random windows of T + 1 tokens from the training stream (inputs are the
 * first T, targets the last T), a share of them replaced by synthetic sequences:
 *  - retrieval: a pass key stated in ordinary text, asked for and answered at the end (src/eval/retrieval.ts);
 *  - repeated passage: a window of ordinary text in which one passage appears a second time later;
 *  - random repeat: random tokens repeating with a fixed period of up to nearly the window
 *    (copying is all that predicts them, at every distance retrieval will need).
 * A small model sees far too few pass keys to discover copying from their five answer tokens
 * alone; a repeated passage rewards copying on every one of its tokens, which is what grows the
 * attention heads (induction heads) that retrieval then reuses.
 * Batch b of step s depends only on (seed, s), so a resumed run sees the same data.
 */
import { Rng } from '../tensor/rng.js';
import { QUESTION, retrievalDistanceRange, retrievalSample } from '../eval/retrieval.js';

export interface BatchSource {
  B: number;
  T: number;
  retrievalShare: number;
  /** Share of sequences with a repeated passage (0 when absent). */
  repeatShare?: number;
  /** Most earlier answered rounds of the question in a pass-key sequence (0 when absent). */
  answeredRounds?: number;
  /** Share of sequences of random tokens repeating with a random period (0 when absent). */
  randomRepeatShare?: number;
  /** Vocabulary size, needed for random-token sequences: ids are drawn from [1, vocabSize). */
  vocabSize?: number;
  seed: number;
}

export interface RepeatedPassage {
  ids: Int32Array;
  /** Where the passage first appears, where its copy starts, and its length in tokens. */
  source: number;
  copy: number;
  length: number;
}

/** A window of `total` tokens of `stream` in which a passage of 16 to total/2 tokens is repeated later. */
export function repeatedPassage(stream: Int32Array, total: number, rng: Rng): RepeatedPassage {
  const length = 16 + rng.int(Math.max(1, Math.floor(total / 2) - 15));
  const start = rng.int(stream.length - total);
  const ids = Int32Array.from(stream.subarray(start, start + total));
  const source = rng.int(total - 2 * length + 1);
  const copy = source + length + rng.int(total - source - 2 * length + 1);
  ids.copyWithin(copy, source, source + length);
  return { ids, source, copy, length };
}

/**
 * `total` random tokens from [1, vocabSize) that repeat with a period of 8 to `maxPeriod` tokens
 * (default total/2). Nothing but copying predicts a token after the first period, so every later
 * token is a lesson in copying; id 0 (the document separator) is never drawn.
 */
export function randomRepeat(total: number, vocabSize: number, rng: Rng, maxPeriod = Math.floor(total / 2)): { ids: Int32Array; period: number } {
  if (maxPeriod < 8 || maxPeriod >= total) throw new RangeError(`randomRepeat: maxPeriod ${maxPeriod} must be in [8, ${total})`);
  const period = 8 + rng.int(Math.max(1, maxPeriod - 7));
  const ids = new Int32Array(total);
  for (let i = 0; i < total; i++) ids[i] = i < period ? 1 + rng.int(vocabSize - 1) : ids[i - period];
  return { ids, period };
}

/**
 * A training pass-key sequence: the evaluation's sample, plus up to `maxRounds` earlier rounds
 * of question and answer placed in the text between the fact and the final question, so that one
 * sequence teaches the answer several times at several distances, and the final question
 * answered too: the window ends with the key, its first tokens (filler before the fact) giving way
 * so that the fact still ends `distance` tokens before the question does. Without that final
 * answer the only answers trained were the earlier rounds', all nearer the fact than the question
 * (docs/retrieval-attempts.md). With maxRounds 0 the rest is the evaluation's sample, drawn
 * identically.
 */
export function trainingRetrievalSample(
  encode: (s: string) => number[], stream: Int32Array, total: number, distance: number, rng: Rng, maxRounds: number,
): number[] {
  const sample = retrievalSample(encode, stream, total, distance, rng);
  const ids = sample.ids;
  if (sample.factAt < sample.answer.length) throw new RangeError(`trainingRetrievalSample: distance ${distance} leaves no room for the answer in ${total} tokens`);
  if (maxRounds > 0) {
    const question = encode(QUESTION);
    const qa = [...question, ...sample.answer, ...encode('.')];
    const from = total - distance; // first token after the fact
    const to = total - question.length; // the final question starts here
    const rounds = rng.int(maxRounds + 1);
    const slot = Math.floor((to - from) / Math.max(1, rounds));
    for (let r = 0; r < rounds && slot > qa.length + 8; r++) {
      const at = from + r * slot + 8 + rng.int(slot - qa.length - 8);
      for (let i = 0; i < qa.length; i++) ids[at + i] = qa[i];
    }
  }
  return [...ids.slice(sample.answer.length), ...sample.answer];
}

export function makeBatch(
  stream: Int32Array, encode: (s: string) => number[], step: number, o: BatchSource,
): { inputs: Int32Array; targets: Int32Array } {
  const { B, T } = o;
  const rng = new Rng((o.seed * 1000003 + step * 7919) >>> 0);
  const inputs = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  // the fact ends anywhere from 16 tokens before the question's end (or just after the question
  // where that is longer) to near the start of the window, which also holds the answer
  const range = retrievalDistanceRange(encode, T + 1 - encode(' 12345').length);
  const nearest = Math.max(16, range.nearest + 1);
  const spread = Math.min(T - 40, range.farthest - nearest);
  for (let b = 0; b < B; b++) {
    let seq: ArrayLike<number>;
    const u = rng.next();
    if (u < o.retrievalShare) {
      const distance = nearest + rng.int(spread);
      seq = trainingRetrievalSample(encode, stream, T + 1, distance, rng, o.answeredRounds ?? 0);
    } else if (u < o.retrievalShare + (o.repeatShare ?? 0)) {
      seq = repeatedPassage(stream, T + 1, rng).ids;
    } else if (u < o.retrievalShare + (o.repeatShare ?? 0) + (o.randomRepeatShare ?? 0)) {
      if (!o.vocabSize) throw new Error('makeBatch: randomRepeatShare needs vocabSize');
      // periods up to nearly the window: retrieval copies from as far back as the context goes
      seq = randomRepeat(T + 1, o.vocabSize, rng, Math.max(8, T + 1 - 32)).ids;
    } else {
      const start = rng.int(stream.length - T - 1);
      seq = stream.subarray(start, start + T + 1);
    }
    for (let t = 0; t < T; t++) {
      inputs[b * T + t] = seq[t];
      targets[b * T + t] = seq[t + 1];
    }
  }
  return { inputs, targets };
}
