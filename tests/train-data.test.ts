import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FACT, QUESTION, retrievalSample } from '../src/eval/retrieval.js';
import { loadTokenizer } from '../src/io/tokenizer.js';
import { Rng } from '../src/tensor/rng.js';
import { makeBatch, repeatedPassage, trainingRetrievalSample } from '../src/train/data.js';
import { copyingProbe } from '../src/train/probes.js';
import type { TrainableLlama } from '../src/train/trainable.js';
import { FIXTURE_TEXT, makeTinyModel } from './fixture.js';

const tok = loadTokenizer(makeTinyModel({ maxPositions: 512 }));
const encode = (s: string) => tok.encode(s);
const stream = Int32Array.from(tok.encode(FIXTURE_TEXT.repeat(30)));
const V = tok.vocabSize;

test('a repeated passage is an exact later copy inside an otherwise untouched window', () => {
  fc.assert(
    fc.property(fc.integer({ min: 40, max: 600 }), fc.integer({ min: 0, max: 2 ** 31 }), (total, seed) => {
      const r = repeatedPassage(stream, total, new Rng(seed));
      assert.equal(r.ids.length, total);
      assert.ok(r.length >= 16 && r.length <= total / 2);
      assert.ok(r.source >= 0 && r.copy >= r.source + r.length && r.copy + r.length <= total);
      assert.deepEqual(r.ids.subarray(r.copy, r.copy + r.length), r.ids.subarray(r.source, r.source + r.length));
      // everything outside the copy is a contiguous window of the stream
      const outside = (s: number) => {
        for (let i = 0; i < total; i++) if ((i < r.copy || i >= r.copy + r.length) && stream[s + i] !== r.ids[i]) return false;
        return true;
      };
      let found = false;
      for (let s = 0; s + total <= stream.length && !found; s++) found = outside(s);
      assert.ok(found);
    }),
    { numRuns: 100 },
  );
});

test('a training pass-key sequence is the evaluation sample with earlier answered rounds and the final answer', () => {
  const total = 400;
  let rounds = 0;
  for (let seed = 0; seed < 40; seed++) {
    const distance = 100 + ((seed * 37) % 250);
    const ids = trainingRetrievalSample(encode, stream, total, distance, new Rng(seed), 3);
    assert.equal(ids.length, total);
    const text = tok.decode(ids);
    const key = /The pass key is (\d{5})\. Remember it\./.exec(text)?.[1];
    assert.ok(key, 'the fact is stated');
    assert.ok(text.endsWith(QUESTION + ' ' + key), 'the window ends with the question and its answer');
    // the fact ends `distance` tokens before the question does, as in the evaluation's sample
    const fact = encode(FACT(key));
    const questionEnd = total - encode(' ' + key).length;
    assert.deepEqual(ids.slice(questionEnd - distance - fact.length, questionEnd - distance), fact);
    // every earlier round answers with the same key
    const answered = text.match(/What is the pass key\? The pass key is (\d{5})\./g) ?? [];
    for (const a of answered) assert.ok(a.endsWith(key + '.'));
    assert.ok(answered.length <= 3);
    rounds += answered.length;
  }
  assert.ok(rounds > 20, `earlier rounds appear (${rounds} in 40 samples)`);
  // without rounds it is the evaluation's sample, drawn identically, with the answer at the end
  const a = trainingRetrievalSample(encode, stream, total, 150, new Rng(9), 0);
  const b = retrievalSample(encode, stream, total, 150, new Rng(9));
  assert.deepEqual(a, [...b.ids.slice(b.answer.length), ...b.answer]);
  // a distance that leaves no room for the answer is refused, not silently cut
  const farthest = total - encode(FACT('12345')).length;
  assert.throws(() => trainingRetrievalSample(encode, stream, total, farthest - 2, new Rng(1), 0), /no room for the answer/);
});

test('batches depend only on (seed, step) and mix the three kinds of sequence in the asked shares', () => {
  const o = { B: 64, T: 300, seed: 3, retrievalShare: 0.25, repeatShare: 0.25, answeredRounds: 3 };
  const a = makeBatch(stream, encode, 5, o);
  const b = makeBatch(stream, encode, 5, o);
  assert.deepEqual(a.inputs, b.inputs);
  assert.deepEqual(a.targets, b.targets);
  assert.notDeepEqual(makeBatch(stream, encode, 6, o).inputs, a.inputs);
  let passKeys = 0;
  for (let r = 0; r < o.B; r++) {
    const row = a.inputs.subarray(r * o.T, (r + 1) * o.T);
    assert.deepEqual(a.targets.subarray(r * o.T, (r + 1) * o.T - 1), row.subarray(1), 'targets are inputs shifted by one');
    if (tok.decode(Array.from(row)).includes('The pass key is')) passKeys++;
  }
  assert.ok(passKeys >= 8 && passKeys <= 26, `${passKeys} of 64 rows are pass-key sequences`);
  const plain = makeBatch(stream, encode, 5, { ...o, retrievalShare: 0, repeatShare: 0 });
  for (let r = 0; r < o.B; r++) assert.ok(!tok.decode(Array.from(plain.inputs.subarray(r * o.T, (r + 1) * o.T))).includes('pass key'));
});

/** A stand-in model that predicts by perfect copying: after the latest earlier occurrence of the last three tokens. */
function copyingOracle(B: number, T: number): TrainableLlama {
  return {
    config: { vocabSize: V },
    forward(inputs: Int32Array) {
      const logits = new Float32Array(B * T * V);
      for (let b = 0; b < B; b++) {
        const x = inputs.subarray(b * T, (b + 1) * T);
        for (let p = 2; p < T; p++) {
          for (let q = p - 1; q >= 2; q--) {
            if (x[q] === x[p] && x[q - 1] === x[p - 1] && x[q - 2] === x[p - 2]) {
              logits[(b * T + p) * V + x[q + 1]] = 1;
              break;
            }
          }
        }
      }
      return logits;
    },
  } as unknown as TrainableLlama;
}

test('the copying probe scores a perfect copier at 1 and a constant predictor at 0', () => {
  const B = 6, T = 256;
  const probe = copyingProbe(stream, encode, B, T, 11);
  const perfect = probe(copyingOracle(B, T));
  assert.equal(perfect.passkey, 1);
  assert.equal(perfect.passkeyFirstDigit, 1);
  assert.ok(perfect.repeat > 0.9, `repeat ${perfect.repeat}`);
  const constant = probe({ config: { vocabSize: V }, forward: () => new Float32Array(B * T * V) } as unknown as TrainableLlama);
  assert.equal(constant.passkey, 0);
  assert.equal(constant.passkeyFirstDigit, 0);
  assert.ok(constant.repeat < 0.1);
  assert.equal(constant.repeatFirstTime, constant.repeat, 'a model that ignores its context scores the same on both appearances');
  assert.deepEqual(probe(copyingOracle(B, T)), perfect, 'the probe is deterministic');
});
