/**
 * tokenizer.json through @huggingface/tokenizers (the JS port of HF tokenizers), so any
 * byte-level BPE file that transformers loads — Llama 3, Qwen2, GPT-2, ours — loads here too.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { AquaError } from '../errors.js';
import { platform } from '../platform/index.js';

import { tokenizerFromJson, type TextTokenizer } from './tokenizer-json.js';

export type { TextTokenizer };

export function loadTokenizer(dir: string): TextTokenizer {
  const path = join(dir, 'tokenizer.json');
  if (!existsSync(path)) throw new AquaError(`${dir} has no tokenizer.json`, 'text needs the model\'s tokenizer; token ids run without one');
  let json: Record<string, unknown>;
  let config: object = {};
  try {
    json = JSON.parse(platform.readText(path));
  } catch (e) {
    if (e instanceof AquaError) throw e;
    throw new AquaError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
  const configPath = join(dir, 'tokenizer_config.json');
  if (existsSync(configPath)) {
    try {
      config = JSON.parse(platform.readText(configPath));
    } catch (e) {
      if (e instanceof AquaError) throw e;
      throw new AquaError(`${configPath} is not valid JSON: ${(e as Error).message}`);
    }
  }
  return tokenizerFromJson(json, config, path);
}
