/**
 * A tokenizer from the contents of tokenizer.json (and tokenizer_config.json), through
 * @huggingface/tokenizers: what files give in Node (./tokenizer.ts) and fetched bytes give in a
 * browser (./model-bytes.ts).
 */
import { Tokenizer } from '@huggingface/tokenizers';
import { AquaError } from '../errors.js';

export interface TextTokenizer {
  encode(text: string): number[];
  decode(ids: number[]): string;
  vocabSize: number;
}

export function tokenizerFromJson(json: Record<string, unknown>, config: object, where: string): TextTokenizer {
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(json, config);
  } catch (e) {
    throw new AquaError(`${where} could not be loaded as a tokenizer: ${(e as Error).message}`);
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
