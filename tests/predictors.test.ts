import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RidgeAccumulator } from '../src/predictors/ridge.js';
import { calibrate, loadModel, loadPredictors, parseMethod, savePredictors } from '../src/index.js';
import { textWindows } from '../src/predictors/text-windows.js';
import { encodeSafetensors } from '../src/io/safetensors.js';
import { writeFileSync } from 'node:fs';
import { Rng } from '../src/tensor/rng.js';
import { makeTinyModel, randomWordsText } from './fixture.js';

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
  const { set, info } = calibrate(model, text, tokenizer, { samples: 8, seqLen: 100, dataSource: 'random', onProgress: (s) => stages.add(s) });
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
  const base = { samples: 4, seqLen: 100, dataSource: 'random' };
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
