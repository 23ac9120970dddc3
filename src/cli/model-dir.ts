/** Which model a command runs: --model DIR, or the embedded model. */
import { AquaError } from '../errors.js';
import { loadModelDir } from '../io/checkpoint.js';
import { embeddedModelDir } from '../io/load-model.js';
import { LlamaModel } from '../model/llama.js';

export function resolveModelDir(dir: string | undefined): string {
  if (dir !== undefined) {
    if (dir.trim() === '') throw new AquaError('--model is empty (an unset shell variable?)', 'leave --model out for the embedded model');
    return dir;
  }
  return embeddedModelDir();
}

/** True when `dir` is the embedded model (whose built-in texts are the default data). */
export function isEmbedded(dir: string): boolean {
  return dir === embeddedModelDir();
}

/** The model alone (no tokenizer needed: `logits --ids` runs on directories without one). */
export function openModel(dir: string): LlamaModel {
  const loaded = loadModelDir(dir);
  return new LlamaModel(loaded.config, loaded.weights);
}
