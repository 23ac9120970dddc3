/**
 * Training batches: random windows of T + 1 tokens from the training stream (inputs are the
 * first T, targets the last T), a share of them replaced by synthetic retrieval sequences.
 * Batch b of step s depends only on (seed, s), so a resumed run sees the same data.
 */
import { Rng } from '../tensor/rng.js';
import { retrievalSample } from '../eval/retrieval.js';

export interface BatchSource {
  B: number;
  T: number;
  retrievalShare: number;
  seed: number;
}

export function makeBatch(
  stream: Int32Array, encode: (s: string) => number[], step: number, o: BatchSource,
): { inputs: Int32Array; targets: Int32Array } {
  const { B, T } = o;
  const rng = new Rng((o.seed * 1000003 + step * 7919) >>> 0);
  const inputs = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    let seq: ArrayLike<number>;
    if (rng.next() < o.retrievalShare) {
      // the fact ends anywhere from 16 tokens before the question to the start of the window
      const distance = 16 + rng.int(T - 40);
      seq = retrievalSample(encode, stream, T + 1, distance, rng).ids;
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
