/**
 * A model from the bytes of its files, for hosts without a file system (a browser fetches them):
 * config.json, one safetensors file or several shards, tokenizer.json. The same checks as a model
 * directory: the config's fields, every tensor's presence, shape and finiteness.
 */
import { AquaError } from '../errors.js';
import { LlamaModel } from '../model/llama.js';
import { normaliseConfig } from './config.js';
import { SafetensorsBytes } from './safetensors-format.js';
import { tokenizerFromJson, type TextTokenizer } from './tokenizer-json.js';
import { assembleWeights, TensorIndex } from './weights-assembly.js';

export interface ModelFiles {
  /** config.json: its text or the parsed object. */
  config: string | object;
  /** model.safetensors, or its shards. */
  safetensors: Uint8Array | Uint8Array[];
  /** tokenizer.json (text or object); without it, token ids only. */
  tokenizer?: string | object;
  tokenizerConfig?: string | object;
}

const json = (x: string | object, where: string): Record<string, unknown> => {
  if (typeof x !== 'string') return x as Record<string, unknown>;
  try {
    return JSON.parse(x) as Record<string, unknown>;
  } catch (e) {
    throw new AquaError(`${where} is not valid JSON: ${(e as Error).message}`);
  }
};

export function modelFromBytes(files: ModelFiles): { model: LlamaModel; tokenizer: TextTokenizer | null } {
  const config = normaliseConfig(json(files.config, 'config.json'));
  const shards = Array.isArray(files.safetensors) ? files.safetensors : [files.safetensors];
  const reader = new TensorIndex();
  shards.forEach((b, i) => reader.add(new SafetensorsBytes(b, shards.length > 1 ? `shard ${i + 1}` : 'model.safetensors')));
  const model = new LlamaModel(config, assembleWeights(reader, config, 'the checkpoint'));
  const tokenizer = files.tokenizer === undefined ? null
    : tokenizerFromJson(json(files.tokenizer, 'tokenizer.json'), files.tokenizerConfig === undefined ? {} : json(files.tokenizerConfig, 'tokenizer_config.json'), 'tokenizer.json');
  return { model, tokenizer };
}
