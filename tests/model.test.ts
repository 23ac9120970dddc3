import { FullCache } from '../src/kv/full.js';
import { HeadRows } from '../src/kv/head-rows.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModelDir } from '../src/io/checkpoint.js';
import { normaliseConfig } from '../src/io/config.js';
import { AquaError } from '../src/errors.js';
import { LlamaModel } from '../src/model/llama.js';
import { attention, attentionNaive } from '../src/model/attention.js';
import { setGemmBackend, gemmBackend } from '../src/tensor/gemm.js';
import { Rng } from '../src/tensor/rng.js';
import { Workspace } from '../src/tensor/workspace.js';
import { loadTokenizer } from '../src/io/tokenizer.js';
import { FIXTURE_TEXT, makeTinyModel, type FixtureOptions } from './fixture.js';

const ids = [5, 17, 123, 9, 250, 77, 3, 199, 42, 8, 160, 31];

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function open(o: FixtureOptions): LlamaModel {
  const m = loadModelDir(makeTinyModel(o));
  return new LlamaModel(m.config, m.weights);
}

const variants: [string, FixtureOptions][] = [
  ['llama f32 tied', {}],
  ['llama f16 untied sharded', { dtype: 'F16', tied: false, shards: 3 }],
  ['llama bf16 attention_bias llama3 scaling', { dtype: 'BF16', attentionBias: true, llama3Scaling: true }],
  ['qwen2 (q/k/v biases)', { architecture: 'Qwen2ForCausalLM' }],
  ['mistral, head_dim ≠ hidden/heads', { architecture: 'MistralForCausalLM', headDim: 16 }],
];

for (const [name, o] of variants) {
  test(`${name}: prefill logits equal token-by-token decode through the cache`, () => {
    const model = open(o);
    const V = model.config.vocabSize;
    const prefill = model.forward(ids, new FullCache(model));
    const cache = new FullCache(model);
    let worst = 0;
    for (let t = 0; t < ids.length; t++) {
      const row = model.forward([ids[t]], cache);
      worst = Math.max(worst, maxDiff(row, prefill.subarray(t * V, (t + 1) * V)));
    }
    assert.equal(cache.length, ids.length);
    assert.ok(worst < 1e-4, `max |prefill − decode| = ${worst}`);
    assert.ok(prefill.every(Number.isFinite));
  });
}

test('a prefill without logits fills the cache exactly as one with them (the last layer stops at its keys and values)', () => {
  const model = open({});
  const half = Math.floor(ids.length / 2);
  const withLogits = new FullCache(model);
  model.forward(ids.slice(0, half), withLogits, { logits: 'all' });
  const without = new FullCache(model);
  let stages: string[] = [];
  model.forward(ids.slice(0, half), without, { logits: 'none', tap: (stage, layer) => stages.push(`${stage}${layer}`) });
  const last = model.config.nLayers - 1;
  assert.ok(stages.includes(`values${last}`) && !stages.includes(`hidden${last}`) && stages.includes(`hidden${last - 1}`), stages.join(' '));
  assert.equal(without.length, half);
  // the next step reads every layer's cache: bit-identical logits
  assert.deepEqual(model.forward(ids.slice(half), without), model.forward(ids.slice(half), withLogits));
  stages = [];
  model.forward(ids.slice(0, 2), new FullCache(model), { tap: (stage, layer) => stages.push(`${stage}${layer}`) });
  assert.ok(stages.includes(`hidden${last}`), 'with logits, every stage of every layer');
});

test('the biases, the untied head and llama3 scaling each change the logits', () => {
  const base = open({}).forward(ids, new FullCache(open({})));
  for (const o of [{ attentionBias: true }, { tied: false }, { llama3Scaling: true }] as FixtureOptions[]) {
    const m = open(o);
    assert.ok(maxDiff(base, m.forward(ids, new FullCache(m))) > 1e-3, JSON.stringify(o));
  }
});

test('the portable TypeScript path gives the same logits as onnxruntime', () => {
  const model = open({ tied: false });
  const before = gemmBackend();
  try {
    setGemmBackend('ts');
    const ts = model.forward(ids, new FullCache(model));
    setGemmBackend('ort');
    const ort = model.forward(ids, new FullCache(model));
    assert.ok(maxDiff(ts, ort) < 1e-4, `max diff ${maxDiff(ts, ort)}`);
  } finally {
    setGemmBackend(before);
  }
});

test('grouped-query attention equals its one-query-at-a-time definition', () => {
  const rng = new Rng(3);
  const s = { nHeads: 6, nKvHeads: 2, headDim: 8 };
  // keys and values head-major with spare rows per head (stride > T), as caches hold them
  for (const [n, T, stride] of [[1, 1, 1], [1, 9, 16], [1, 37, 40], [5, 5, 5], [4, 11, 13]]) {
    const q = rng.fillNormal(new Float32Array(n * 48));
    const k = rng.fillNormal(new Float32Array(2 * stride * 8));
    const v = rng.fillNormal(new Float32Array(2 * stride * 8));
    const a = new Float32Array(n * 48);
    const b = new Float32Array(n * 48);
    attentionNaive(b, q, k, v, n, T, stride, s);
    // one block of queries, and blocks of a few queries (the score matrix bounded, as for long prompts)
    for (const block of [undefined, 3 * T, 1]) {
      attention(a, q, { keys: k, values: v, length: T, stride }, n, s, new Workspace(), block);
      assert.ok(maxDiff(a, b) < 1e-5, `n=${n} T=${T} block ${block}: ${maxDiff(a, b)}`);
    }
  }
});

test('one token attends through the kernels alike whether the cache rows lie in WebAssembly memory or are copied there', () => {
  const rng = new Rng(4);
  const s = { nHeads: 8, nKvHeads: 2, headDim: 16 };
  for (const T of [1, 3, 4, 29, 64, 130]) {
    const K = new HeadRows(2, 16, 2);
    const V = new HeadRows(2, 16, 2);
    // appended a few rows at a time, so the rows move as their capacity doubles
    const keys = rng.fillNormal(new Float32Array(T * 32));
    const values = rng.fillNormal(new Float32Array(T * 32));
    for (let t = 0; t < T; t += 7) {
      const rows = Math.min(7, T - t);
      K.append(keys.subarray(t * 32, (t + rows) * 32), rows);
      V.append(values.subarray(t * 32, (t + rows) * 32), rows);
    }
    const q = rng.fillNormal(new Float32Array(8 * 16));
    const inPlace = new Float32Array(128);
    const copied = new Float32Array(128);
    const naive = new Float32Array(128);
    attention(inPlace, q, { keys: K.data, values: V.data, length: T, stride: K.capacity, inPlace: { keys: K, values: V } }, 1, s, new Workspace());
    attention(copied, q, { keys: K.data.slice(), values: V.data.slice(), length: T, stride: K.capacity }, 1, s, new Workspace());
    attentionNaive(naive, q, K.data, V.data, 1, T, K.capacity, s);
    assert.deepEqual(inPlace, copied, `T=${T}: in place = copied, bit for bit`);
    assert.ok(maxDiff(inPlace, naive) < 1e-5, `T=${T}: ${maxDiff(inPlace, naive)}`);
  }
});

test('rows written to spare capacity wait there and move into place as they were written, every head', () => {
  const rng = new Rng(5);
  const rows = new HeadRows(2, 8, 16);
  const first = rng.fillNormal(new Float32Array(10 * 16));
  rows.append(first, 10);
  const staged = rng.fillNormal(new Float32Array(3 * 16));
  rows.writeSpare(12, staged, 3); // rows 12..14, past the 10 held
  assert.equal(rows.rows, 10, 'spare rows are not held');
  assert.throws(() => rows.writeSpare(9, staged, 1), /not spare/);
  assert.throws(() => rows.writeSpare(14, staged, 3), /not spare/);
  rows.move(12, 4, 3);
  const want = first.slice();
  want.set(staged, 4 * 16);
  assert.deepEqual(rows.tokenMajor(), want);
  assert.throws(() => rows.move(12, 9, 3), /rows \[12, 15\) to \[9, 12\)/);
});

test('the cache rejects layers out of order', () => {
  const model = open({});
  const cache = new FullCache(model);
  const C = model.config.kvDim;
  assert.throws(() => cache.update(1, new Float32Array(C), new Float32Array(C), 1), /expected layer 0, got layer 1/);
});

test('an id outside the vocabulary is refused', () => {
  const model = open({});
  assert.throws(() => model.forward([1, 300], new FullCache(model)), /outside the vocabulary \[0, 300\)/);
});

test('tokenizer.json loads through @huggingface/tokenizers and round-trips text', () => {
  const tok = loadTokenizer(makeTinyModel({}));
  for (const text of [FIXTURE_TEXT, 'Unseen words: zygote, 12345, naïve café — ok?\n\n  indented']) {
    const enc = tok.encode(text);
    assert.ok(enc.length > 0 && enc.every((i) => i >= 0 && i < 300));
    assert.equal(tok.decode(enc), text);
  }
  assert.ok(tok.encode(FIXTURE_TEXT).length < new TextEncoder().encode(FIXTURE_TEXT).length * 0.8, "merges shorten the training text");
});

test('the sampler always picks a token: top-p 0 and vanishing temperatures are greedy', async () => {
  const { Sampler, argmax } = await import('../src/model/sampler.js');
  const logits = new Rng(4).fillNormal(new Float32Array(50));
  const best = argmax(logits);
  for (const [temperature, topP] of [[0.8, 0], [1e-320, 0.95], [Number.MIN_VALUE, 1], [1e-30, 0.5]]) {
    const s = new Sampler({ temperature, topP, seed: 1 });
    for (let i = 0; i < 5; i++) assert.equal(s.sample(logits), best, `temperature ${temperature}, top-p ${topP}`);
  }
  // ordinary settings still sample: more than one token over many draws
  const s = new Sampler({ temperature: 1, topP: 1, seed: 2 });
  assert.ok(new Set(Array.from({ length: 50 }, () => s.sample(logits))).size > 1);
});

test('RoPE from transformers 5\'s "rope_parameters" reads as from "rope_theta" and "rope_scaling" (same fingerprint); disagreements and mixed layer types are refused in one line', () => {
  const base = {
    architectures: ['LlamaForCausalLM'], hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 96, max_position_embeddings: 256,
  };
  const llama3 = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 32 };
  const legacy = normaliseConfig({ ...base, rope_theta: 500000, rope_scaling: llama3 });
  const v5 = normaliseConfig({ ...base, rope_parameters: { ...llama3, rope_theta: 500000 } });
  assert.equal(v5.ropeTheta, 500000);
  assert.deepEqual(v5.ropeScaling, legacy.ropeScaling);
  assert.equal(v5.fingerprint, legacy.fingerprint, 'the same model whichever way its config says it');
  // one object per layer type, all alike; the default type means no scaling
  const perType = normaliseConfig({ ...base, rope_parameters: { full_attention: { rope_type: 'default', rope_theta: 1e6 }, sliding_attention: { rope_type: 'default', rope_theta: 1e6 } } });
  assert.equal(perType.ropeTheta, 1e6);
  assert.equal(perType.ropeScaling, null);
  assert.equal(normaliseConfig({ ...base, rope_parameters: { rope_type: 'default' } }).ropeTheta, 10000, 'no theta anywhere: the default');
  const refused: [object, RegExp][] = [
    [{ rope_parameters: { full_attention: { rope_theta: 1e4 }, sliding_attention: { rope_theta: 1e6 } } }, /different RoPE per layer type is not supported/],
    [{ rope_theta: 10000, rope_parameters: { rope_type: 'default', rope_theta: 500000 } }, /"rope_theta" 10000 and rope_parameters.rope_theta 500000 disagree/],
    [{ rope_scaling: llama3, rope_parameters: { rope_type: 'default', rope_theta: 500000 } }, /"rope_scaling" and "rope_parameters" disagree/],
    [{ rope_parameters: { rope_type: 'yarn', rope_theta: 10000, factor: 4 } }, /rope type "yarn" is not supported/],
    [{ rope_parameters: { ...llama3, rope_theta: 10000, factor: 0 } }, /rope_parameters: field "factor" must be positive/],
    [{ rope_parameters: 'llama3' }, /rope_parameters: expected an object/],
    [{ rope_parameters: {} }, /rope_parameters: expected "rope_type" and "rope_theta", or one such object per layer type/],
    [{ rope_parameters: { full_attention: 3 } }, /rope_parameters: expected "rope_type" and "rope_theta", or one such object per layer type/],
  ];
  for (const [fields, message] of refused) {
    assert.throws(() => normaliseConfig({ ...base, ...fields }), (e: unknown) => e instanceof AquaError && message.test(e.message) && !e.message.includes('\n'), JSON.stringify(fields));
  }
});
