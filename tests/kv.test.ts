import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModelDir } from '../src/io/checkpoint.js';
import { LlamaModel } from '../src/model/llama.js';
import { createCache } from '../src/kv/factory.js';
import { parseMethod } from '../src/kv/method.js';
import type { KVCache } from '../src/kv/cache.js';
import type { CompressedCacheOptions } from '../src/kv/compressed.js';
import { calibrateOnTokens, DEFAULT_CALIBRATION } from '../src/predictors/from-text.js';
import { setGemmBackend, gemmBackend } from '../src/tensor/gemm.js';
import { Rng } from '../src/tensor/rng.js';
import { makeTinyModel } from './fixture.js';

const loaded = loadModelDir(makeTinyModel({ layers: 3, maxPositions: 256 }));
const model = new LlamaModel(loaded.config, loaded.weights);
const rng = new Rng(9);
const ids = Array.from({ length: 40 }, () => rng.int(300));
// predictors calibrated on random text through the real pipeline (the fixture has no real text)
const calibIds = Array.from({ length: 4096 }, () => rng.int(300));
const { set: predictors } = calibrateOnTokens(model, calibIds, { ...DEFAULT_CALIBRATION, samples: 8, seqLen: 128, dataSource: 'random ids' });

/** Feeds ids in steps of the given sizes (cycled); returns the concatenated logits. */
function feed(cache: KVCache, steps: number[]): Float32Array {
  const V = model.config.vocabSize;
  const out = new Float32Array(ids.length * V);
  let s = 0;
  for (let i = 0; s < ids.length; i++) {
    const n = Math.min(steps[i % steps.length], ids.length - s);
    out.set(model.forward(ids.slice(s, s + n), cache), s * V);
    s += n;
  }
  return out;
}

const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const small: Partial<CompressedCacheOptions> = { sinks: 3, buffer: 8 };
const PATTERNS = [[40], [1], [2], [4], [3, 5, 7], [8], [11]];

test('fp through the compressed cache equals the full-precision cache at every boundary', () => {
  const want = feed(model.newFullCache(), [1]);
  for (const opts of [small, { sinks: 4, buffer: 128 }, { sinks: 0, buffer: 1 }, { sinks: 50, buffer: 4 }, { sinks: 3, buffer: 8, mode: 'compact' as const }]) {
    for (const steps of PATTERNS) {
      const got = feed(createCache(model, parseMethod('fp'), null, opts), steps);
      assert.ok(maxDiff(got, want) < 1e-4, `${JSON.stringify(opts)} steps ${steps}: ${maxDiff(got, want)}`);
    }
  }
});

test('compact and materialized modes give identical logits for every method', () => {
  for (const name of ['aquakv', 'higgs', 'kivi2', 'aquakv[q=higgs:1x16]']) {
    for (const steps of PATTERNS) {
      const a = feed(createCache(model, parseMethod(name), predictors, { ...small, mode: 'materialized' }), steps);
      const b = feed(createCache(model, parseMethod(name), predictors, { ...small, mode: 'compact' }), steps);
      assert.deepEqual(a, b, `${name}, steps ${steps}`);
    }
  }
});

test('token-by-token decode gives the logits of feeding steps that divide the buffer', () => {
  const before = gemmBackend();
  setGemmBackend('ts'); // row results independent of the number of rows, so equality is exact
  try {
    for (const name of ['aquakv', 'higgs', 'kivi4']) {
      const decode = feed(createCache(model, parseMethod(name), predictors, small), [1]);
      for (const steps of [[2], [4], [8]]) {
        const eval_ = feed(createCache(model, parseMethod(name), predictors, small), steps);
        assert.ok(maxDiff(decode, eval_) < 1e-5, `${name} steps ${steps}: ${maxDiff(decode, eval_)}`);
      }
      // quantization is really on: the compressed cache changes the logits
      assert.ok(maxDiff(decode, feed(model.newFullCache(), [1])) > 1e-3, name);
    }
  } finally {
    setGemmBackend(before);
  }
});

test('the cache counts codes, scales, sinks and buffer exactly', () => {
  const cache = createCache(model, parseMethod('aquakv'), predictors, small);
  feed(cache, [5]);
  // 40 tokens: sinks 0..2, chunks [3,8) [8,16) [16,24) [24,32) [32,40) → all 37 compressed
  assert.equal(cache.compressedTokens, 37);
  const C = model.config.kvDim; // 16: one HIGGS group of 16 per token
  const m = cache.memory();
  // per token-vector: layer 0 (2x256) 8 index bytes, layers 1–2 (2x16) 4 index bytes; one fp16 scale each
  assert.equal(m.components.keyCodes, 37 * (8 + 4 + 4));
  assert.equal(m.components.valueCodes, 37 * (8 + 4 + 4));
  assert.equal(m.components.scales, 37 * 3 * 2 * 2);
  assert.equal(m.components.sinks, 3 * C * 4 * 2 * 3);
  assert.equal(m.components.buffer, 0);
  assert.equal(m.stored, m.components.keyCodes + m.components.valueCodes + m.components.scales + m.components.sinks);
  assert.ok(Math.abs(cache.quantizedBitsPerValue() - (5 + 3 + 3) / 3) < 1e-12);
  assert.equal(m.predictors, 2 * (C * C + C + 2 * C * C + C) * 4);
  const kivi = createCache(model, parseMethod('kivi2'), null, small);
  feed(kivi, [5]);
  // keys per channel in groups of ≤32 tokens per chunk, values per token in groups of 32 (>C) channels
  assert.equal(kivi.memory().components.scales, 3 * (5 * C * 4 + 37 * 4));
});

test('cache method specs parse, and bad ones explain themselves', () => {
  const a = parseMethod('aquakv');
  assert.equal(a.keyQuantizer, 'higgs:2x16');
  assert.equal(a.firstKeyQuantizer, 'higgs:2x256');
  assert.ok(a.usesPredictors);
  const h = parseMethod('higgs[q=higgs:1x16]');
  assert.equal(h.firstKeyQuantizer, 'higgs:1x16');
  assert.ok(!h.usesPredictors);
  const k = parseMethod('kivi[k=uniform:3:channel:g32,v=uniform:3:token:g32,rope=pre]');
  assert.ok(!k.quantizeKeysAfterRope);
  assert.ok(parseMethod('kivi2').quantizeKeysAfterRope);
  assert.throws(() => parseMethod('zip'), /unknown method 'zip'/);
  assert.throws(() => parseMethod('higgs[x=1]'), /unknown option 'x'/);
  assert.throws(() => parseMethod('aquakv[k=higgs:2x16]'), /needs q=QUANTIZER, or both k= and v=/);
  assert.throws(() => createCache(model, parseMethod('aquakv'), null), /needs predictors/);
  assert.throws(() => createCache(model, parseMethod('higgs[q=higgs:9x9]'), null), /no shipped grid/);
});
