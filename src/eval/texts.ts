/**
 * Text sources for the CLI: a file path, or one of the built-in public-domain sets:
 *   @moby-dick       Moby Dick (held out from training entirely)
 *   @sotu-heldout    the held-out State of the Union addresses
 *   @sotu-train      the training addresses (the default calibration data of the embedded model)
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { AquaError } from '../errors.js';
import { DOCUMENT_SEPARATOR, mobyDick, sotuSplit } from './datasets.js';

export const BUILTIN_TEXTS = ['@moby-dick', '@sotu-heldout', '@sotu-train'];

export function readText(source: string): string {
  switch (source) {
    case '@moby-dick':
      return mobyDick();
    case '@sotu-heldout':
      return sotuSplit().heldOut.map((d) => d.text).join(DOCUMENT_SEPARATOR);
    case '@sotu-train':
      return sotuSplit().train.map((d) => d.text).join(DOCUMENT_SEPARATOR);
  }
  if (source.startsWith('@')) throw new AquaError(`unknown built-in text '${source}'`, `one of ${BUILTIN_TEXTS.join(', ')}`);
  if (!existsSync(source) || !statSync(source).isFile()) throw new AquaError(`text file ${source} does not exist`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(readFileSync(source));
  } catch {
    throw new AquaError(`text file ${source} is not UTF-8 text`);
  }
  if (!text.trim()) throw new AquaError(`text file ${source} is empty`);
  return text;
}

/** Retrieval filler is read up to this many tokens (a huge text costs no more than this). */
export const MAX_FILLER_TOKENS = 1_000_000;

/**
 * The first `maxTokens` tokens of `text`, tokenizing only a prefix long enough for them (a 50 MB
 * file costs what its first pages cost). The prefix keeps 64 tokens of margin, so the cut never
 * changes the tokens kept.
 */
export function encodeUpTo(text: string, encode: (s: string) => number[], maxTokens: number): number[] {
  for (let chars = (maxTokens + 64) * 8; ; chars *= 2) {
    if (chars >= text.length) return encode(text).slice(0, maxTokens);
    const ids = encode(text.slice(0, chars));
    if (ids.length >= maxTokens + 64) return ids.slice(0, maxTokens);
  }
}
