/** Where the embedded model lives, and loading a model directory for a command. */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import { loadModelDir } from '../io/checkpoint.js';
import { LlamaModel } from '../model/llama.js';
import { AquaError } from '../errors.js';

/** The model this repository trains and ships (models/aquakv-sotu). */
export const EMBEDDED_MODEL_DIR = resolve(fileURLToPath(import.meta.url), '../../../../models/aquakv-sotu');

export function resolveModelDir(dir: string | undefined): string {
  if (dir) return dir;
  if (!existsSync(EMBEDDED_MODEL_DIR)) {
    throw new AquaError(`the embedded model is not at ${EMBEDDED_MODEL_DIR}`, 'pass --model DIR, or train it with npm run train:model');
  }
  return EMBEDDED_MODEL_DIR;
}

export function openModel(dir: string | undefined): LlamaModel {
  const loaded = loadModelDir(resolveModelDir(dir));
  return new LlamaModel(loaded.config, loaded.weights);
}
