/**
 * tokenizer.json through @huggingface/tokenizers (the JS port of HF tokenizers), so any
 * byte-level BPE file that transformers loads — Llama 3, Qwen2, GPT-2, ours — loads here too.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { AquaError } from '../errors.js';
import { platform } from '../platform/index.js';

export interface TextTokenizer {
  encode(text: string): number[];
  decode(ids: number[]): string;
  vocabSize: number;
}

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
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(json, config);
  } catch (e) {
    throw new AquaError(`${path} could not be loaded as a tokenizer: ${(e as Error).message}`);
  }
  const model = json.model as { vocab?: Record<string, number> } | undefined;
  const added = (json.added_tokens as { id: number }[] | undefined) ?? [];
  const vocabSize = Math.max(
    Object.keys(model?.vocab ?? {}).length,
    ...added.map((t) => t.id + 1),
  );
  return {
    // No special tokens are added: ids are exactly the text's tokens (a BOS, if wanted, is the caller's).
    encode: (text) => tok.encode(text, { add_special_tokens: false }).ids,
    decode: (ids) => tok.decode(ids, { skip_special_tokens: false }),
    vocabSize,
  };
}
