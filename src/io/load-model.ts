/**
 * A model ready to run: a Hugging Face model directory (config.json, safetensors weights,
 * tokenizer.json) loaded into a `LlamaModel` and its tokenizer. The embedded model
 * (models/aquakv-sotu, trained by this repository) is one call away.
 */
import { AquaError } from '../errors.js';
import { LlamaModel } from '../model/llama.js';
import { platform } from '../platform/index.js';
import { loadModelDir } from './checkpoint.js';
import { loadTokenizer, type TextTokenizer } from './tokenizer.js';

export interface LoadedLanguageModel {
  dir: string;
  model: LlamaModel;
  tokenizer: TextTokenizer;
}

/** Where the embedded model lives in the installed package. */
export function embeddedModelDir(): string {
  return platform.assetPath('models/aquakv-sotu');
}

/** Loads the model in `dir`, or the embedded model when no directory is given. */
export function loadModel(dir?: string): LoadedLanguageModel {
  const d = dir ?? embeddedModelDir();
  if (dir === undefined && !platform.exists(d)) {
    throw new AquaError(`the embedded model is not at ${d}`, 'train it with npm run train:model in a checkout, or pass a model directory');
  }
  const { config, weights } = loadModelDir(d);
  return { dir: d, model: new LlamaModel(config, weights), tokenizer: loadTokenizer(d) };
}
