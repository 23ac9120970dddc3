import { test } from 'node:test';
import assert from 'node:assert/strict';
import { calibrate, CompressedCache, createCache, FullCache, loadModel, parseMethod, formatMethod, methodKey, type CacheOptions, type KVCache } from '../src/index.js';
import { setGemmBackend, gemmBackend, ortAvailable } from '../src/tensor/gemm.js';
import { Rng } from '../src/tensor/rng.js';
import { makeTinyModel, randomWordsText } from './fixture.js';

const { model, tokenizer } = loadModel(makeTinyModel({ layers: 3, maxPositions: 256 }));
const rng = new Rng(9);
const ids = Array.from({ length: 40 }, () => rng.int(300));
// predictors calibrated on random words through the real pipeline (the fixture has no real text)
const calibText = randomWordsText(3000, 9);
// the fixed AQUA-KV of the paper (layer 0 at 4 bits, 2-bit residuals); budgets are tested apart below
const AQUA = 'aquakv[q=higgs:2x16,first=higgs:2x256]';
const { set: predictors } = calibrate(model, calibText, tokenizer, { method: parseMethod(AQUA), samples: 8, seqLen: 128, dataSource: 'random words' });
const predictors1x16 = calibrate(model, calibText, tokenizer, { method: parseMethod('aquakv[q=higgs:1x16]'), samples: 8, seqLen: 128 }).set;
const predictorsOf = (name: string) => (name.startsWith('aquakv[q=higgs:1x16]') ? predictors1x16 : predictors);

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
const small: Partial<CacheOptions> = { sinks: 3, buffer: 8 };
const PATTERNS = [[40], [1], [2], [4], [3, 5, 7], [8], [11]];

test('identity quantizers through the compressed cache equal the full-precision cache at every boundary', () => {
  const want = feed(new FullCache(model), [1]);
  assert.ok(createCache(model, parseMethod('fp')) instanceof FullCache, 'fp is the f32 cache');
  const identity = parseMethod('higgs[q=none]');
  for (const opts of [small, { sinks: 4, buffer: 128 }, { sinks: 0, buffer: 1 }, { sinks: 50, buffer: 4 }, { sinks: 3, buffer: 8, mode: 'compact' as const }]) {
    for (const steps of PATTERNS) {
      const cache = createCache(model, identity, null, opts);
      assert.ok(cache instanceof CompressedCache);
      const got = feed(cache, steps);
      assert.ok(maxDiff(got, want) < 1e-4, `${JSON.stringify(opts)} steps ${steps}: ${maxDiff(got, want)}`);
      if (cache.compressedTokens > 0) assert.equal(cache.memory().bitsPerValue, 32);
    }
  }
});

test('compact and materialized modes give identical logits for every method', () => {
  for (const name of [AQUA, 'higgs', 'kivi2', 'aquakv[q=higgs:1x16]']) {
    for (const steps of PATTERNS) {
      const a = feed(createCache(model, parseMethod(name), predictorsOf(name), { ...small, mode: 'materialized' }), steps);
      const b = feed(createCache(model, parseMethod(name), predictorsOf(name), { ...small, mode: 'compact' }), steps);
      assert.deepEqual(a, b, `${name}, steps ${steps}`);
    }
  }
});

test('compact, materialized and restored caches agree bit for bit where predictors run on the native product', () => {
  // C = 128: predictor products (128·128, 256·128 per row) go to onnxruntime when it loads
  const wide = loadModel(makeTinyModel({ layers: 3, hidden: 64, heads: 4, kvHeads: 2, headDim: 64, maxPositions: 256 }));
  const p = calibrate(wide.model, calibText, wide.tokenizer, { method: parseMethod(AQUA), samples: 8, seqLen: 128 }).set;
  const tokens = Array.from({ length: 60 }, (_, i) => (i * 37) % 300);
  const run = (mode: 'materialized' | 'compact', steps: number) => {
    const cache = createCache(wide.model, parseMethod(AQUA), p, { sinks: 3, buffer: 8, mode });
    const V = wide.model.config.vocabSize;
    const out = new Float32Array(tokens.length * V);
    for (let s = 0; s < tokens.length; s += steps) out.set(wide.model.forward(tokens.slice(s, s + steps), cache, { logits: 'all' }), s * V);
    return out;
  };
  for (const steps of [1, 4, 20]) assert.deepEqual(run('compact', steps), run('materialized', steps), `steps ${steps}`);
});

test('feeding steps that divide the buffer gives the logits of token-by-token decode: exactly on the portable product, to rounding on the native one', () => {
  const before = gemmBackend();
  const wide = loadModel(makeTinyModel({ layers: 3, hidden: 64, heads: 4, kvHeads: 2, headDim: 64, maxPositions: 256 }));
  const wideP = calibrate(wide.model, calibText, wide.tokenizer, { method: parseMethod(AQUA), samples: 8, seqLen: 128 }).set;
  const tokens = Array.from({ length: 40 }, (_, i) => (i * 53) % 300);
  const run = (m: typeof model, p: typeof predictors, name: string, steps: number) => {
    const cache = createCache(m, parseMethod(name), parseMethod(name).usesPredictors ? p : null, small);
    const V = m.config.vocabSize;
    const out = new Float32Array(tokens.length * V);
    for (let s = 0; s < tokens.length; s += steps) out.set(m.forward(tokens.slice(s, s + steps), cache, { logits: 'all' }), s * V);
    return out;
  };
  try {
    for (const backend of ['ts', 'ort'] as const) {
      if (backend === 'ort' && !ortAvailable()) continue;
      setGemmBackend(backend);
      // the tiny model (C = 16: every product in TS) and a wider one (C = 128: the native product where it loads)
      for (const [m, p] of [[model, predictors], [wide.model, wideP]] as const) {
        for (const name of [AQUA, 'higgs', 'kivi4', 'fp']) {
          const decode = run(m, p, name, 1);
          // MLAS rounds a one-row product (matrix-vector) differently from a block of rows
          const exact = backend === 'ts';
          for (const steps of [2, 4, 8]) {
            const got = run(m, p, name, steps);
            if (exact) assert.deepEqual(got, decode, `${backend} C=${m.config.kvDim} ${name} steps ${steps}`);
            else assert.ok(maxDiff(got, decode) < 1e-3, `${backend} C=${m.config.kvDim} ${name} steps ${steps}: ${maxDiff(got, decode)}`);
          }
          // steps of 2, 4 and 8 rows: the same rows however many are multiplied together, on any product
          assert.deepEqual(run(m, p, name, 4), run(m, p, name, 2), `${backend} C=${m.config.kvDim} ${name}: steps 4 vs 2`);
          // quantization is really on: the compressed cache changes the logits
          if (name !== 'fp') assert.ok(maxDiff(decode, run(m, p, 'fp', 1)) > 1e-3, name);
        }
      }
    }
  } finally {
    setGemmBackend(before);
  }
});

test('the cache counts codes, scales, sinks and buffer exactly', () => {
  const cache = createCache(model, parseMethod(AQUA), predictors, small) as CompressedCache;
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
  assert.ok(Math.abs(m.bitsPerValue - (5 + 3 + 3) / 3) < 1e-12);
  assert.equal(m.predictors, 2 * (C * C + C + 2 * C * C + C) * 4);
  const kivi = createCache(model, parseMethod('kivi2'), null, small);
  feed(kivi, [5]);
  // keys per channel in groups of ≤32 tokens per chunk, values per token in groups of 32 (>C) channels
  assert.equal(kivi.memory().components.scales, 3 * (5 * C * 4 + 37 * 4));
});

test('cache method specs parse into quantizer specs, format back canonically, and bad ones explain themselves', () => {
  assert.equal(formatMethod(parseMethod('aquakv')), 'aquakv[bits=2.5]', 'the one-word aquakv is budgeted');
  const a = parseMethod(AQUA);
  assert.deepEqual(a.keys, { type: 'higgs', d: 2, n: 16 });
  assert.deepEqual(a.firstKeys, { type: 'higgs', d: 2, n: 256 });
  assert.ok(a.usesPredictors);
  assert.equal(formatMethod(a), 'aquakv[q=higgs:2x16,first=higgs:2x256]');
  assert.equal(methodKey(a, 16), 'aquakv[q=higgs:2x16:g16,first=higgs:2x256:g16]');
  assert.equal(methodKey(parseMethod('aquakv[q=higgs:2x16:g16]'), 16), methodKey(a, 16), 'an explicit default group is the same method');
  const h = parseMethod('higgs[q=higgs:1x16]');
  assert.deepEqual(h.firstKeys, { type: 'higgs', d: 1, n: 16 });
  assert.ok(!h.usesPredictors);
  const k = parseMethod('kivi[k=uniform:3:channel:g32,v=uniform:3:token:g32,rope=pre]');
  assert.ok(!k.keysAfterRope);
  assert.equal(formatMethod(k), 'kivi[k=uniform:3:channel:g32,v=uniform:3:token:g32,rope=pre]');
  assert.equal(formatMethod(parseMethod('higgs')), 'higgs[q=higgs:2x16]');
  assert.ok(parseMethod('kivi2').keysAfterRope);
  const o = parseMethod('aquakv[q=higgs:4x256,v3=higgs:2x64,k1=higgs:2x256,first=higgs:2x16]');
  assert.equal(formatMethod(o), 'aquakv[q=higgs:4x256,first=higgs:2x16,k1=higgs:2x256,v3=higgs:2x64]', 'overrides in layer order');
  assert.throws(() => createCache(model, o, predictors), /do not fit/);
  assert.throws(() => parseMethod('aquakv[bits=2.5,q=higgs:2x16]'), /takes no other option/);
  assert.throws(() => parseMethod('higgs[bits=3]'), /applies to aquakv only/);
  assert.throws(() => parseMethod('aquakv[bits=x]'), /bits must be a number/);
  assert.throws(() => parseMethod('higgs[q=higgs:2x16,k1=higgs:2x64,k1=none]'), /given twice/);
  assert.throws(() => createCache(model, parseMethod('higgs[q=higgs:2x16,k7=none]')), /sets layer 7, but the model has 3 layers/);
  for (const spec of ['fp', 'aquakv', 'aquakv[bits=2.25]', AQUA, 'higgs', 'kivi2', 'kivi4', 'aquakv[q=higgs:2x64]', 'higgs[q=higgs:1x16]', 'higgs[q=none]', 'higgs[q=higgs:2x16,k0=none,v2=higgs:2x64]']) {
    const m = parseMethod(spec);
    assert.deepEqual({ ...parseMethod(formatMethod(m)), name: m.name }, m, `${spec} survives formatting`);
  }
  assert.throws(() => parseMethod('zip'), /unknown method 'zip'/);
  assert.throws(() => parseMethod('higgs[x=1]'), /unknown option 'x'/);
  assert.throws(() => parseMethod('aquakv[k=higgs:2x16]'), /needs q=QUANTIZER, or both k= and v=/);
  assert.throws(() => createCache(model, parseMethod(AQUA), null), /needs predictors/);
  assert.throws(() => parseMethod('higgs[q=higgs:9x9]'), /no shipped grid/);
  assert.throws(() => parseMethod('higgs[q=fp]'), /unknown quantizer 'fp'/, "'none' is the one word for full precision");
});

test('predictors are refused by a method they were not fitted for', () => {
  assert.equal(predictors.method, 'aquakv[q=higgs:2x16,first=higgs:2x256]');
  assert.throws(() => createCache(model, parseMethod('aquakv[q=higgs:2x64]'), predictors), /predictors calibrated for aquakv\[q=higgs:2x16,first=higgs:2x256\] do not fit cache method aquakv\[q=higgs:2x64,first=higgs:2x256\]/);
  assert.throws(() => createCache(model, parseMethod('aquakv[q=higgs:2x16,first=higgs:2x16]'), predictors), /do not fit/);
  assert.throws(() => createCache(model, parseMethod(AQUA), predictors1x16), /do not fit/);
  assert.throws(() => createCache(model, parseMethod('aquakv'), predictors), /predictors calibrated for aquakv\[q=higgs:2x16,first=higgs:2x256\] do not fit cache method aquakv\[bits=2.5\]/);
  // the same method written otherwise fits
  createCache(model, parseMethod('aquakv[q=higgs:2x16:g16,first=higgs:2x256]'), predictors);
});
