import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RidgeAccumulator } from '../src/predictors/ridge.js';
import { captureKeysValues, fitPredictors } from '../src/predictors/fit.js';
import { AUTO_ALLOCATION_WINDOWS, autoSearch, gaussianDistortion, modelledPlan, predictorsThatHurt } from '../src/predictors/allocate.js';
import { BUDGET_LADDER } from '../src/kv/method.js';
import { parseQuantizerSpec } from '../src/quant/spec.js';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatLayerErrors } from '../src/cli/format.js';
import { FullCache } from '../src/kv/full.js';
import { platform as nodePlatform } from '../src/platform/node.js';
import { platform as browserPlatform } from '../src/platform/browser.js';
import { calibrate, createCache, loadModel, loadPredictors, parseMethod, savePredictors, formatMethod, type CompressedCache } from '../src/index.js';
import { textWindows } from '../src/predictors/text-windows.js';
import { fpLogProbsOf, KlMeasure } from '../src/predictors/kl-measure.js';
import { encodeSafetensors } from '../src/io/safetensors.js';
import { writeFileSync } from 'node:fs';
import { Rng } from '../src/tensor/rng.js';
import { fixtureConfig, makeTinyModel, randomWeights, randomWordsText } from './fixture.js';
import { normaliseConfig, readConfig } from '../src/io/config.js';
import { LlamaModel } from '../src/model/llama.js';

test('ridge recovers a known affine map from noisy data', () => {
  const rng = new Rng(1);
  const I = 6, O = 4, N = 5000;
  const W = rng.fillNormal(new Float32Array(O * I));
  const b = rng.fillNormal(new Float32Array(O));
  const x = rng.fillNormal(new Float32Array(N * I));
  const y = new Float32Array(N * O);
  for (let t = 0; t < N; t++) for (let o = 0; o < O; o++) {
    let s = b[o];
    for (let i = 0; i < I; i++) s += W[o * I + i] * x[t * I + i];
    y[t * O + o] = s + 0.01 * rng.normal();
  }
  const acc = new RidgeAccumulator(I, O);
  acc.add(x.subarray(0, 2000 * I), y.subarray(0, 2000 * O), 2000);
  acc.add(x.subarray(2000 * I), y.subarray(2000 * O), N - 2000);
  const p = acc.solve(1e-6);
  for (let i = 0; i < W.length; i++) assert.ok(Math.abs(p.weight[i] - W[i]) < 2e-3, `W[${i}] ${p.weight[i]} vs ${W[i]}`);
  for (let o = 0; o < O; o++) assert.ok(Math.abs(p.bias[o] - b[o]) < 2e-3, `b[${o}] ${p.bias[o]} vs ${b[o]}`);
  // heavy damping shrinks the weights toward zero
  const shrunk = acc.solve(10);
  assert.ok(Math.abs(shrunk.weight[0]) < Math.abs(p.weight[0]));
});

test('calibration runs end to end, saves, reloads, and refuses another model', () => {
  const { model, tokenizer } = loadModel(makeTinyModel({ layers: 3, maxPositions: 256 }));
  const text = randomWordsText(3000, 2);
  const stages = new Set<string>();
  const method = parseMethod('aquakv[q=higgs:2x16,first=higgs:2x256]');
  const { set, info } = calibrate(model, text, tokenizer, { method, samples: 8, seqLen: 100, dataSource: 'random', onProgress: (s) => stages.add(s) });
  assert.deepEqual([...stages].sort(), ['capture', 'fit']);
  assert.equal(info.data.trainTokens, 700);
  assert.equal(info.data.validTokens, 100);
  assert.equal(info.layers.length, 3);
  assert.equal(set.keys[0], null);
  for (const l of info.layers.slice(1)) {
    assert.ok(l.keys && l.keys.trainRelMse > 0 && l.keys.trainRelMse < 1, JSON.stringify(l));
    assert.ok(l.values && Number.isFinite(l.values.equivalentBits));
  }
  const path = join(mkdtempSync(join(tmpdir(), 'aquakv-pred-')), 'p.safetensors');
  savePredictors(path, { set, info });
  const back = loadPredictors(path, model);
  assert.equal(info.model.weights, model.weightsDigest);
  assert.deepEqual(back.set.keys[1]!.weight, set.keys[1]!.weight);
  assert.deepEqual(back.set.values[2]!.bias, set.values[2]!.bias);
  assert.equal(back.info.method, 'aquakv[q=higgs:2x16,first=higgs:2x256]');
  assert.equal(back.set.methodKey, set.methodKey);

  const other = loadModel(makeTinyModel({ layers: 2 })).model;
  assert.throws(() => loadPredictors(path, other), /calibrated for another model \(LlamaForCausalLM, 3 layers, C=16\); this model is LlamaForCausalLM, 2 layers/);
  // same shape, other weights (a retrained model): its predictors would be silently wrong
  const retrained = loadModel(makeTinyModel({ layers: 3, maxPositions: 256, seed: 5 })).model;
  assert.notEqual(retrained.weightsDigest, model.weightsDigest);
  assert.throws(() => loadPredictors(path, retrained), /same shape but different weights/);
  assert.throws(() => loadPredictors('/nonexistent.safetensors', model), /does not exist/);
  assert.throws(() => calibrate(model, text, tokenizer, { method: parseMethod('higgs'), samples: 4, seqLen: 50 }), /uses no predictors/);
  assert.throws(() => calibrate(model, text, tokenizer, { samples: 1, seqLen: 50 }), /at least 2 samples/);
  const notOurs = join(mkdtempSync(join(tmpdir(), 'aquakv-pred-')), 'x.safetensors');
  writeFileSync(notOurs, encodeSafetensors([{ name: 'a', shape: [1], data: Float32Array.of(1), dtype: 'F32' }], { format: 'pt' }));
  assert.throws(() => loadPredictors(notOurs, model), /is not an aquakv predictor file/);
  const future = join(mkdtempSync(join(tmpdir(), 'aquakv-pred-')), 'f.safetensors');
  writeFileSync(future, encodeSafetensors([{ name: 'a', shape: [1], data: Float32Array.of(1), dtype: 'F32' }], { format: 'aquakv-predictors', version: '99', info: '{}' }));
  assert.throws(() => loadPredictors(future, model), /format version 99/);
});

test('ablations: keys-only and values-only predictors, fitting on original inputs', () => {
  const { model, tokenizer } = loadModel(makeTinyModel({ layers: 3, maxPositions: 256 }));
  const text = randomWordsText(2000, 3);
  const base = { method: parseMethod('aquakv[q=higgs:2x16,first=higgs:2x256]'), samples: 4, seqLen: 100, dataSource: 'random' };
  const keysOnly = calibrate(model, text, tokenizer, { ...base, predict: 'keys' });
  assert.ok(keysOnly.set.keys[1] && !keysOnly.set.values[1]);
  const valuesOnly = calibrate(model, text, tokenizer, { ...base, predict: 'values' });
  assert.ok(!valuesOnly.set.keys[1] && valuesOnly.set.values[1]);
  const original = calibrate(model, text, tokenizer, { ...base, fitOn: 'original' });
  const recon = calibrate(model, text, tokenizer, base);
  assert.notDeepEqual(original.set.keys[2]!.weight, recon.set.keys[2]!.weight);
  assert.equal(original.info.fitOn, 'original');
});

test('calibration windows sampled from text have seqLen tokens, spread over the text, reproducibly', async () => {
  const tok = loadModel(makeTinyModel({})).tokenizer;
  const text = Array.from({ length: 3000 }, (_, i) => `word${i % 97} `).join('');
  const d = { samples: 6, seqLen: 40, seed: 5 };
  const w = textWindows(text, (s) => tok.encode(s), d);
  assert.equal(w.length, 6);
  for (const seq of w) assert.equal(seq.length, 40);
  assert.deepEqual(textWindows(text, (s) => tok.encode(s), d), w);
  assert.notDeepEqual(textWindows(text, (s) => tok.encode(s), { ...d, seed: 6 }), w);
  assert.throws(() => textWindows('too short', (s) => tok.encode(s), d), /fewer than one sequence of 40/);
});

test('budgeted calibration: the plan holds the budget in exact bytes, survives the file, and the cache runs it', () => {
  // C = 2·32 = 64 channels: one fp16 scale per token-vector costs 0.25 bits, so 4x256 slots cost 2.25
  const { model, tokenizer } = loadModel(makeTinyModel({ layers: 3, maxPositions: 256, headDim: 32 }));
  const text = randomWordsText(3000, 6);
  for (const budget of [2.0, 2.25, 2.75, 3.6]) {
    const p = calibrate(model, text, tokenizer, { method: parseMethod(`aquakv[bits=${budget}]`), samples: 6, seqLen: 256, allocationWindows: 1 });
    const a = p.info.allocation!;
    assert.equal(p.set.budget, budget);
    assert.equal(p.info.budget, budget);
    assert.ok(a.bitsPerValue <= budget + 1e-12, `${a.bitsPerValue} ≤ ${budget}`);
    assert.equal(a.firstGains.length, 6, 'every slot was measured');
    // the cache, fed through whole blocks, reports exactly the plan's bits
    const cache = createCache(model, parseMethod(`aquakv[bits=${budget}]`), p.set, { sinks: 0, buffer: 32 }) as CompressedCache;
    model.forward(tokenizer.encode(text).slice(0, 128), cache, { logits: 'none' });
    assert.ok(a.klBase > 0 && a.firstGains.some((g) => g.klGain > 0), 'the measurements see the compressed cache');
    assert.ok(Math.abs(cache.memory().bitsPerValue - a.bitsPerValue) < 1e-12, `cache ${cache.memory().bitsPerValue} vs plan ${a.bitsPerValue}`);
    assert.equal(formatMethod(parseMethod(p.set.method)), p.set.method, 'the plan is a method spec');
    // the plan and budget survive a save and load unchanged
    const path = join(mkdtempSync(join(tmpdir(), 'aquakv-pred-')), 'b.safetensors');
    savePredictors(path, p);
    const back = loadPredictors(path, model);
    assert.equal(back.set.method, p.set.method);
    assert.equal(back.set.budget, budget);
    assert.deepEqual(back.info.allocation, a);
    assert.throws(() => createCache(model, parseMethod('aquakv[bits=2.5]'), back.set), /do not fit cache method aquakv\[bits=2.5\]/);
  }
  assert.throws(() => calibrate(model, text, tokenizer, { method: parseMethod('aquakv[bits=1.5]'), samples: 4, seqLen: 256 }), /below the cheapest plan \(higgs:2x8 everywhere: 1.75 bits at C = 64\)/);
  assert.throws(() => calibrate(model, text, tokenizer, { method: parseMethod('aquakv[bits=3]'), samples: 4, seqLen: 128 }), /windows need at least 256 tokens/);
});

test('the allocator gives the bits to the slots that move the output (a model where only layer 1 attends)', () => {
  // attention output projections of layers 0 and 2 are zero, so their slots reach the output only
  // through layer 1's key predictor (values are fitted without predictors here); layer 1's values
  // are 20× larger, so its attention output dominates the residual stream: v1 matters most
  const raw = fixtureConfig({ layers: 3, hidden: 128, heads: 4, kvHeads: 2, headDim: 32, maxPositions: 256 }); // C = 64 < hidden 128: values are not a function of keys
  const weights = randomWeights(raw, 3);
  weights.layers[0].wo.fill(0);
  weights.layers[2].wo.fill(0);
  for (let i = 0; i < weights.layers[1].wv.length; i++) weights.layers[1].wv[i] *= 20;
  const model = new LlamaModel(normaliseConfig(raw), weights);
  const { tokenizer } = loadModel(makeTinyModel({}));
  const text = randomWordsText(3000, 8);
  const p = calibrate(model, text, tokenizer, { method: parseMethod('aquakv[bits=1.85]'), predict: 'keys', samples: 12, seqLen: 256, allocationWindows: 2 });
  const a = p.info.allocation!;
  const gains = Object.fromEntries(a.firstGains.map((g) => [g.slot, g.klGain]));
  for (const none of ['v0', 'k2', 'v2']) assert.equal(gains[none], 0, `${none} has no path to the output: ${JSON.stringify(gains)}`);
  for (const other of ['k0', 'k1']) assert.ok(gains.v1 > 1.5 * gains[other], `v1 matters most: ${JSON.stringify(gains)}`);
  // at C = 64 the cheapest slot (higgs:2x8) costs 1.75 bits; 1.85 buys one half-bit upgrade to higgs:4x256 (6 slots · 0.1); it goes to layer 1's values
  assert.deepEqual(a.steps.map((s) => s.slot), ['v1'], JSON.stringify(a.steps));
  assert.ok(a.klPlan < a.klBase);
  assert.equal(a.measurements, 1 + 6 + 0 + 2, 'the base, each slot, nothing stale after the only upgrade, then each key predictor taken away (values have none here)');
});

test('slots the plan runs without a predictor: fitted for the record, dropped, saved and loaded as none, and the cache runs them', () => {
  const { model, tokenizer } = loadModel(makeTinyModel({ layers: 3, maxPositions: 256, headDim: 32 }));
  const text = randomWordsText(3000, 6);
  const method = parseMethod('aquakv[q=higgs:2x16,first=higgs:2x256]');
  const seqs = textWindows(text, (s) => tokenizer.encode(s), { samples: 6, seqLen: 128, seed: 0 });
  const train = captureKeysValues(model, seqs.slice(0, 5));
  const valid = captureKeysValues(model, seqs.slice(5));
  const fit = (withoutPredictor?: string[]) => fitPredictors(model, train, valid, { method, predict: 'both', fitOn: 'reconstructed', damp: 1e-3, withoutPredictor });
  const all = fit();
  const some = fit(['k1', 'v2']);
  train.close();
  valid.close();
  assert.ok(all.set.keys[1] && all.set.values[2], 'fitted and kept when the plan wants them');
  assert.equal(some.set.keys[1], null);
  assert.equal(some.set.values[2], null);
  assert.ok(some.set.values[1] && some.set.keys[2]);
  // k1 saw the same inputs either way: the same errors, marked as left out by the plan
  assert.deepEqual(some.layers[1].keys, { ...all.layers[1].keys!, dropped: true, droppedBy: 'plan' });
  assert.equal(some.layers[2].values!.droppedBy, 'plan');
  assert.match(formatLayerErrors(some.layers), /not in plan/);
  // the file keeps them as none; the cache runs the slots without
  const p = calibrate(model, text, tokenizer, { method, samples: 6, seqLen: 128 });
  const path = join(mkdtempSync(join(tmpdir(), 'aquakv-pred-')), 'without.safetensors');
  savePredictors(path, { set: { ...p.set, keys: some.set.keys, values: some.set.values }, info: { ...p.info, layers: some.layers } });
  const back = loadPredictors(path, model);
  assert.equal(back.set.keys[1], null);
  assert.equal(back.set.values[2], null);
  assert.deepEqual(back.info.layers, some.layers);
  const cache = createCache(model, method, back.set, { sinks: 0, buffer: 32 });
  const logits = model.forward(tokenizer.encode(text).slice(0, 100), cache, { logits: 'last' });
  assert.ok(logits.length > 0 && logits.every(Number.isFinite));
});

test('the allocation takes away, in layer order, each predictor whose absence lowers KL, and keeps the others', () => {
  const { model, tokenizer } = loadModel(makeTinyModel({ layers: 3, maxPositions: 256, headDim: 32 }));
  const { set } = calibrate(model, randomWordsText(3000, 6), tokenizer, { method: parseMethod('aquakv[q=higgs:2x16,first=higgs:2x256]'), samples: 6, seqLen: 128 });
  // a KL that k1's predictor lowers, v1's lowers a little, k2's leaves alone and v2's raises
  const order: string[] = [];
  const measure = (s: typeof set) => {
    order.push(['k1', 'v1', 'k2', 'v2'].filter((x) => !(x[0] === 'k' ? s.keys : s.values)[Number(x[1])]).join('+'));
    return 1 - (s.keys[1] ? 0.25 : 0) - (s.values[1] ? 0.125 : 0) + (s.values[2] ? 0.25 : 0); // exact in binary: ties are ties
  };
  const r = predictorsThatHurt(set, 0.875, measure);
  assert.deepEqual(order, ['k1', 'v1', 'k2', 'v2'], 'each slot measured once, alone (no earlier slot was taken away)');
  assert.deepEqual(r.dropped, [{ slot: 'v2', klBefore: 0.875, klAfter: 0.625 }]);
  assert.equal(r.kl, 0.625);
  assert.equal(r.set.values[2], null);
  assert.equal(r.set.keys[2], set.keys[2], 'a tie keeps the predictor');
  assert.ok(set.values[2], 'the given set is left as it was');
  // a slot taken away stays away for the measurements after it
  order.length = 0;
  predictorsThatHurt(set, 0.875, (s) => (measure(s), s.keys[1] ? 0.875 : 0.5));
  assert.deepEqual(order, ['k1', 'k1+v1', 'k1+k2', 'k1+v2']);
});

test('ridge sums built from f32 products in short batches equal the f64 sums to ~1e-6', () => {
  const I = 40, O = 7, n = 1300; // batches of 512 + a remainder, added in two calls
  const rng = new Rng(9);
  const x = rng.fillNormal(new Float32Array(n * I));
  const y = rng.fillNormal(new Float32Array(n * O));
  const acc = new RidgeAccumulator(I, O);
  acc.add(x.subarray(0, 700 * I), y.subarray(0, 700 * O), 700);
  acc.add(x.subarray(700 * I), y.subarray(700 * O), n - 700);
  const J = I + 1;
  let worst = 0;
  for (let i = 0; i < J; i++) {
    for (let j = 0; j < J; j++) {
      let s = 0;
      for (let t = 0; t < n; t++) s += (i < I ? x[t * I + i] : 1) * (j < I ? x[t * I + j] : 1);
      worst = Math.max(worst, Math.abs(acc.xtx[i * J + j] - s) / n);
    }
    for (let j = 0; j < O; j++) {
      let s = 0;
      for (let t = 0; t < n; t++) s += (i < I ? x[t * I + i] : 1) * y[t * O + j];
      worst = Math.max(worst, Math.abs(acc.xty[i * O + j] - s) / n);
    }
  }
  assert.equal(acc.rows, n);
  assert.ok(worst < 1e-6, `largest difference per row ${worst}`);
});

test('captured keys and values leave memory and come back exactly, one layer at a time, from either platform store', () => {
  const { model } = loadModel(makeTinyModel({ layers: 3, maxPositions: 256 }));
  const C = model.config.kvDim;
  const seqs = [[1, 2, 3, 4, 5], [6, 7, 8], Array.from({ length: 40 }, (_, i) => (i * 7) % 200)];
  const captured = captureKeysValues(model, seqs);
  // the same taps, kept in memory
  const want = Array.from({ length: 3 }, () => ({ k: [] as number[], v: [] as number[] }));
  for (const seq of seqs) {
    model.forward(seq, new FullCache(model), {
      logits: 'none',
      tap: (stage, l, data, rows) => {
        if (stage === 'keysPreRope') want[l].k.push(...data.subarray(0, rows * C));
        if (stage === 'values') want[l].v.push(...data.subarray(0, rows * C));
      },
    });
  }
  assert.equal(captured.tokens, 48);
  for (let l = 2; l >= 0; l--) {
    assert.deepEqual(Array.from(captured.keys(l)), want[l].k, `layer ${l} keys`);
    assert.deepEqual(Array.from(captured.values(l)), want[l].v, `layer ${l} values`);
  }
  captured.close();
  // the browser's store (memory) behaves as the file: reads that span pieces, past-the-end refused
  for (const store of [nodePlatform.scratchStore(), browserPlatform.scratchStore()]) {
    const a = store.append(Uint8Array.of(1, 2, 3));
    const b = store.append(Uint8Array.of(4, 5));
    const into = new Uint8Array(4);
    store.read(a + 1, into);
    assert.deepEqual(into, Uint8Array.of(2, 3, 4, 5));
    assert.equal(b, 3);
    assert.throws(() => store.read(4, new Uint8Array(2)), /past its end/);
    store.close();
  }
});

test('the modelled search: upgrades by modelled KL per bit, each rung worth its share of the Gaussian error, within the budget', () => {
  const bits = [1.5, 2, 3, 4];
  const eps = [0.2, 0.1, 0.03, 0.01]; // rung 0→1 removes 0.1 of error, 1→2 0.07, 2→3 0.02
  // four slots: s1 matters most, s3 not at all, s2 measured a (noisy) loss
  const first = [0.011, 0.1, -0.002, 0];
  const r = modelledPlan(first, bits, eps, 2.5, 0.2);
  // modelled gains per bit: s1 0→1 0.2, 1→2 0.07, 2→3 0.02; s0 0→1 0.022, 1→2 0.0077; budget 4·2.5 = 10 bits, 6 spent at rung 0
  assert.deepEqual(r.taken.map((t) => [t.slot, t.rung]), [[1, 1], [1, 2], [0, 1], [1, 3], [0, 2]]);
  assert.equal(r.spent, 10);
  assert.deepEqual([...r.rungs], [2, 3, 0, 0], 'no bits to a slot whose first upgrade did not lower KL');
  // each step's KL is the one before less the modelled gain: s1's second rung is worth 0.7 of its first
  assert.ok(Math.abs(r.taken[0].klAfter - 0.1) < 1e-12 && Math.abs(r.taken[1].klBefore - r.taken[0].klAfter) < 1e-15);
  assert.ok(Math.abs(r.taken[0].klAfter - r.taken[1].klAfter - 0.07) < 1e-12);
  assert.ok(r.taken.every((t) => t.bits <= 2.5));
  // a budget that buys nothing, and a ladder's end
  assert.deepEqual(modelledPlan(first, bits, eps, 1.5, 0.2).taken, []);
  assert.deepEqual([...modelledPlan(first, bits, eps, 1.75, 0.2).rungs], [1, 1, 0, 0], 'the next best that fits: 7 bits, s1 at rung 1 leaves 0.5, too few for its next rung');
  assert.deepEqual([...modelledPlan(first, bits, eps, 4, 0.2).rungs], [3, 3, 0, 0]);
});

test('the ladder\'s Gaussian errors fall rung by rung, and the search picks measured for small models and modelled at 1B shapes', () => {
  const eps = BUDGET_LADDER.map((q) => gaussianDistortion(parseQuantizerSpec(q), 128));
  for (let i = 1; i < eps.length; i++) assert.ok(eps[i] < eps[i - 1], `${eps}`);
  assert.ok(eps[0] > 0.15 && eps[0] < 0.25 && eps[3] < 0.01, `${eps}`); // 1.5 bits ≈ 0.2, 4 bits < 0.01
  assert.equal(gaussianDistortion(parseQuantizerSpec('higgs:2x16'), 64), gaussianDistortion(parseQuantizerSpec('higgs:2x16'), 64), 'deterministic');
  const repo = resolve(fileURLToPath(import.meta.url), '../../..');
  const raw = JSON.parse(readFileSync(join(repo, 'tests/golden/llama3-bf16-sharded/config.json'), 'utf8'));
  const llama1b = normaliseConfig({ ...raw, hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 16, num_attention_heads: 32, num_key_value_heads: 8, head_dim: 64, vocab_size: 128256, max_position_embeddings: 131072 });
  assert.equal(autoSearch(llama1b, 2.5, 2 * 2047).search, 'modelled');
  const embedded = readConfig(join(repo, 'models/aquakv-sotu/config.json'));
  const small = autoSearch(embedded, 2.5, 2 * 1023);
  assert.equal(small.search, 'measured');
  assert.ok(small.flops < autoSearch(llama1b, 2.5, 2 * 2047).flops / 100);
});

test('budgeted calibration with the modelled search: the first sweep, one measurement of the plan, recorded in the file', () => {
  const { model, tokenizer } = loadModel(makeTinyModel({ layers: 3, maxPositions: 256, headDim: 32 }));
  const text = randomWordsText(3000, 6);
  // 16 windows hold out 2; the modelled search measures on one of them unless told otherwise
  const p = calibrate(model, text, tokenizer, { method: parseMethod('aquakv[bits=2.5]'), samples: 16, seqLen: 256, allocationSearch: 'modelled' });
  const a = p.info.allocation!;
  assert.equal(a.search, 'modelled');
  assert.equal(p.info.data.validTokens, 2 * 256);
  assert.equal(a.windows, AUTO_ALLOCATION_WINDOWS.modelled);
  assert.equal(a.tokens, 255);
  assert.ok(a.steps.length > 0);
  assert.equal(a.measurements, 1 + 6 + 1, 'the base, each slot\'s first upgrade, the plan');
  assert.equal(a.replays, 4, 'the slots of layers 1 and 2, replayed from their layer');
  assert.ok(a.bitsPerValue <= 2.5 + 1e-12);
  assert.deepEqual(a.withoutPredictor, []);
  // the plan's KL is measured, not the model's: a cache of the plan reports the plan's bits
  assert.ok(a.klPlan >= 0 && a.klPlan < a.klBase, `${a.klPlan} < ${a.klBase}`);
  const cache = createCache(model, parseMethod('aquakv[bits=2.5]'), p.set, { sinks: 0, buffer: 32 }) as CompressedCache;
  model.forward(tokenizer.encode(text).slice(0, 128), cache, { logits: 'none' });
  assert.ok(Math.abs(cache.memory().bitsPerValue - a.bitsPerValue) < 1e-12);
  const path = join(mkdtempSync(join(tmpdir(), 'aquakv-pred-')), 'm.safetensors');
  savePredictors(path, p);
  assert.deepEqual(loadPredictors(path, model).info.allocation, a);
});

test('the first sweep replays a slot from its own layer: the KL of the whole pass, bit for bit, and whole passes when the record does not fit', () => {
  const { model, tokenizer } = loadModel(makeTinyModel({ layers: 4, maxPositions: 256, headDim: 32 }));
  const text = randomWordsText(3000, 7);
  const base = parseMethod('aquakv[q=higgs:2x8,first=higgs:2x8]');
  const p = calibrate(model, text, tokenizer, { method: base, samples: 8, seqLen: 256 });
  const ids = tokenizer.encode(text);
  // two windows of two cache blocks each (the sinks, then whole blocks compressed step by step)
  const windows = [ids.slice(0, 256), ids.slice(300, 556)];
  const fp = fpLogProbsOf(model, windows);
  const { nLayers: L, hiddenSize: D, kvDim: C } = model.config;
  const m = new KlMeasure(model, windows, fp);
  assert.equal(m.replayLayers, L - 1);
  const klBase = m.recordBase(base, p.set);
  assert.equal(klBase, m.of(base, p.set));
  for (let l = 1; l < L; l++) {
    for (const part of ['k', 'v']) {
      const plan = parseMethod(`aquakv[q=higgs:2x8,first=higgs:2x8,${part}${l}=higgs:4x256]`);
      const whole = m.of(plan, p.set);
      assert.notEqual(whole, klBase, `${part}${l}'s upgrade changes the output`);
      const starts: number[] = [];
      const forward = model.forward.bind(model);
      model.forward = (ids, cache, opts) => (starts.push(opts?.from?.layer ?? 0), forward(ids, cache, opts));
      try {
        assert.equal(m.from(l, plan, p.set), whole, `${part}${l}`);
      } finally {
        model.forward = forward;
      }
      assert.deepEqual(starts, [l, l, l, l], 'two steps of each window, from layer l');
    }
  }
  // a record room for one layer replays only the last layer's slots; none without room
  const oneLayer = 512 * (D + 2 * C) * 4;
  const small = new KlMeasure(model, windows, fp, oneLayer);
  assert.equal(small.replayLayers, 1);
  assert.equal(small.recordBase(base, p.set), klBase);
  const plan = parseMethod(`aquakv[q=higgs:2x8,first=higgs:2x8,v${L - 1}=higgs:2x64]`);
  assert.equal(small.from(L - 1, plan, p.set), m.of(plan, p.set));
  assert.equal(new KlMeasure(model, windows, fp, oneLayer - 1).replayLayers, 0);
});
