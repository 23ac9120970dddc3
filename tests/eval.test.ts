import { test } from 'node:test';
import assert from 'node:assert/strict';
import { retrievalSample, FACT, QUESTION } from '../src/eval/retrieval.js';
import { scoreText, unigramLogProbs } from '../src/eval/language-model.js';
import { loadModelDir } from '../src/io/checkpoint.js';
import { loadTokenizer } from '../src/io/tokenizer.js';
import { LlamaModel } from '../src/model/llama.js';
import { Rng } from '../src/tensor/rng.js';
import { FIXTURE_TEXT, makeTinyModel } from './fixture.js';

const dir = makeTinyModel({ maxPositions: 512 });
const tok = loadTokenizer(dir);
const m = loadModelDir(dir);
const model = new LlamaModel(m.config, m.weights);

test('a retrieval sample states the key at the asked distance and ends with the question', () => {
  const filler = tok.encode(FIXTURE_TEXT.repeat(20));
  const rng = new Rng(1);
  for (const distance of [60, 100, 150]) {
    const s = retrievalSample((x) => tok.encode(x), filler, 200, distance, rng);
    assert.equal(s.ids.length, 200);
    assert.match(s.key, /^\d{5}$/);
    assert.equal(tok.decode(s.answer), ' ' + s.key);
    assert.equal(s.answer.length, 6, 'space + one token per digit');
    const text = tok.decode(s.ids);
    assert.ok(text.endsWith(QUESTION));
    const fact = tok.encode(FACT(s.key));
    const at = s.ids.length - distance - fact.length;
    assert.deepEqual(s.ids.slice(at, at + fact.length), fact);
    assert.equal(s.factAt, at, 'the sample says where its fact starts');
  }
  assert.throws(() => retrievalSample((x) => tok.encode(x), filler, 30, 29, rng), /does not fit/);
});

test('perplexity and bits per byte agree with each other and with the unigram baseline’s definition', () => {
  const ids = tok.encode(FIXTURE_TEXT.repeat(4));
  const uni = unigramLogProbs(ids, 300);
  const sum = Array.from(uni).reduce((s, v) => s + Math.exp(v), 0);
  assert.ok(Math.abs(sum - 1) < 1e-9, 'unigram probabilities sum to 1');
  const bytes = (id: number) => new TextEncoder().encode(tok.decode([id])).length;
  const r = scoreText(model, ids, bytes, uni, { seqLen: 64, maxTokens: 10_000 });
  assert.equal(r.tokens, Math.floor(ids.length / 64) * 63);
  assert.ok(Math.abs(r.bitsPerByte - (Math.log(r.perplexity) * r.tokens) / Math.LN2 / r.bytes) < 1e-9);
  assert.ok(Math.abs(r.unigramBitsPerByte - (Math.log(r.unigramPerplexity) * r.tokens) / Math.LN2 / r.bytes) < 1e-9);
  // the unigram model was fitted on this very text, so it beats a random-weight model
  assert.ok(r.unigramPerplexity < r.perplexity);
});

test('encodeUpTo tokenizes only a prefix, and keeps exactly the tokens of the whole text', async () => {
  const { encodeUpTo } = await import('../src/eval/texts.js');
  const text = FIXTURE_TEXT.repeat(200);
  const full = tok.encode(text);
  let longest = 0;
  const encode = (s: string) => {
    longest = Math.max(longest, s.length);
    return tok.encode(s);
  };
  for (const n of [1, 50, 333, 2000]) assert.deepEqual(encodeUpTo(text, encode, n), full.slice(0, n), `${n} tokens`);
  assert.ok(longest < text.length, 'never the whole text for these');
  assert.deepEqual(encodeUpTo(text, encode, full.length + 10), full, 'asking for more than there is gives everything');
});
