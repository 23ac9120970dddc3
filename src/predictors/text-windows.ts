/**
 * Calibration data: `samples` windows of `seqLen` tokens at seeded offsets, straight from text
 * (only the sampled slices are tokenized, so a 10 MB text costs nothing to sample from).
 */
import { AquaError } from '../errors.js';
import { Rng } from '../tensor/rng.js';

/** Which windows of a text calibrate: how many, how long, and the seed of their offsets. */
export interface WindowOptions {
  samples: number;
  seqLen: number;
  seed: number;
}

/**
 * Windows sampled from text: one random offset in each of `samples` equal stretches of the text
 * (stratified, so the whole text is represented), moved to the next whitespace, and a slice
 * long enough for seqLen tokens tokenized there.
 */
export function textWindows(text: string, encode: (s: string) => number[], d: WindowOptions): number[][] {
  if (!Number.isInteger(d.samples) || d.samples < 2) throw new AquaError(`calibration needs at least 2 samples (one for validation), got ${d.samples}`);
  if (!Number.isInteger(d.seqLen) || d.seqLen < 2) throw new AquaError(`calibration windows need at least 2 tokens, got ${d.seqLen}`);
  const rng = new Rng(d.seed);
  const stretch = text.length / d.samples;
  return Array.from({ length: d.samples }, (_, i) => {
    let start = Math.floor(i * stretch + rng.next() * stretch);
    const ws = text.slice(start).search(/\s/);
    start = ws < 0 ? start : start + ws;
    for (let chars = d.seqLen * 8; ; chars *= 2) {
      const from = Math.max(0, Math.min(start, text.length - chars));
      const ids = encode(text.slice(from, from + chars));
      if (ids.length >= d.seqLen) return ids.slice(0, d.seqLen);
      if (from === 0 && chars >= text.length) {
        throw new AquaError(`calibration text has ${ids.length} tokens, fewer than one sequence of ${d.seqLen}`);
      }
    }
  });
}
