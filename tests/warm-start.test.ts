import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { normaliseConfig } from '../src/io/config.js';
import { Rng } from '../src/tensor/rng.js';
import { makeBatch, randomRepeat } from '../src/train/data.js';
import { ParamArena } from '../src/train/params.js';
import { TrainableLlama } from '../src/train/trainable.js';
import { extendCopyingLength, shallowConfig, trainCopyingWarmStart, transplant } from '../src/train/warm-start.js';
import { fixtureConfig } from './fixture.js';

test('a random repeat is periodic, with a period of 8 to total/2, and never draws id 0', () => {
  fc.assert(
    fc.property(fc.integer({ min: 16, max: 700 }), fc.integer({ min: 2, max: 3000 }), fc.integer({ min: 0, max: 2 ** 31 }), (total, V, seed) => {
      const { ids, period } = randomRepeat(total, V, new Rng(seed));
      assert.equal(ids.length, total);
      assert.ok(period >= 8 && period <= total / 2, `period ${period} of ${total}`);
      for (let i = 0; i < total; i++) {
        assert.ok(ids[i] >= 1 && ids[i] < V);
        if (i >= period) assert.equal(ids[i], ids[i - period]);
      }
    }),
    { numRuns: 100 },
  );
});

test('a random repeat can be asked for periods up to nearly the window (the main run uses them)', () => {
  const periods = Array.from({ length: 400 }, (_, s) => randomRepeat(1025, 2048, new Rng(s), 993).period);
  assert.ok(Math.min(...periods) >= 8 && Math.max(...periods) <= 993);
  assert.ok(periods.filter((p) => p > 700).length > 80, 'long periods are common');
  const { ids, period } = randomRepeat(1025, 2048, new Rng(0), 993);
  for (let i = period; i < 1025; i++) assert.equal(ids[i], ids[i - period]);
  assert.throws(() => randomRepeat(100, 50, new Rng(1), 100), /maxPeriod 100 must be in \[8, 100\)/);
});

test('makeBatch mixes in random repeats at the asked share, and needs the vocabulary size for them', () => {
  const stream = Int32Array.from({ length: 5000 }, (_, i) => (i * 7) % 50);
  const o = { B: 200, T: 64, seed: 4, retrievalShare: 0, randomRepeatShare: 0.3, vocabSize: 1000 };
  const { inputs } = makeBatch(stream, () => [], 2, o);
  let random = 0;
  for (let b = 0; b < o.B; b++) {
    // rows of the stream only hold ids < 50; random rows almost surely hold larger ones
    const row = inputs.subarray(b * o.T, (b + 1) * o.T);
    if (row.some((x) => x >= 50)) random++;
  }
  assert.ok(random > 40 && random < 80, `${random} of 200 rows are random repeats`);
  assert.throws(() => makeBatch(stream, () => [], 2, { ...o, vocabSize: undefined }), /vocabSize/);
});

const tiny = (layers: number) => ({ ...fixtureConfig({ hidden: 16, heads: 2, kvHeads: 1, headDim: 8, layers }), vocab_size: 24 });

test('transplant: a deep model whose extra layers add nothing computes exactly the shallow one on its tokens', () => {
  const shallow = new ParamArena(shallowConfig(tiny(4), 2, 10));
  shallow.init(3);
  const rng = new Rng(5);
  for (const s of shallow.slots) rng.fillNormal(shallow.data.subarray(s.offset, s.offset + s.size), 0.3);
  const deepCfg = normaliseConfig(tiny(4));
  const deep = new ParamArena(deepCfg);
  deep.init(9);
  transplant(shallow, deep);
  // layers 2 and 3 keep their own weights but, given zero output projections, leave the residual as it is
  for (const l of [2, 3]) {
    assert.ok(deep.weights.layers[l].wq.some((x) => x !== 0));
    assert.ok(deep.weights.layers[l].wo.every((x) => x === 0) && deep.weights.layers[l].wDown.every((x) => x === 0));
  }
  // on the shallow model's tokens, the logits of its vocabulary (deep's first 10 ids) agree exactly
  const inputs = Int32Array.from({ length: 2 * 10 }, () => rng.int(10));
  const want = new TrainableLlama(shallow.config, shallow, 2, 10).forward(inputs).slice();
  const got = new TrainableLlama(deepCfg, deep, 2, 10).forward(inputs);
  for (let t = 0; t < 20; t++) assert.deepEqual(Array.from(got.subarray(t * 24, t * 24 + 10)), Array.from(want.subarray(t * 10, t * 10 + 10)));
  assert.deepEqual(Array.from(deep.weights.embed.subarray(0, 10 * 16)), Array.from(shallow.weights.embed));
  assert.throws(() => transplant(deep, shallow), /larger vocabulary/);
  const narrower = new ParamArena(shallowConfig({ ...tiny(4), intermediate_size: 20 }, 2, 10));
  assert.throws(() => transplant(narrower, deep), /layers\.0\.wGate has no counterpart/);
});

test('the warm start trains a shallow model until it copies random-token repeats, then stops', () => {
  // small enough for a unit test: 16-token windows (so the period is always 8), 64 tokens
  const cfg = shallowConfig({ ...fixtureConfig({ hidden: 64, heads: 2, kvHeads: 1, headDim: 32, layers: 6 }), vocab_size: 300 }, 2, 64);
  assert.equal(cfg.nLayers, 2);
  assert.equal(cfg.vocabSize, 64);
  const lines: string[] = [];
  const r = trainCopyingWarmStart(cfg, { steps: 600, B: 8, T: 16, lr: 1e-2, seed: 1, target: 0.9, log: (l) => lines.push(l) });
  assert.ok(r.copyAccuracy >= 0.9, `copying accuracy ${r.copyAccuracy} after ${r.steps} steps`);
  assert.ok(r.steps < 600 && r.steps % 50 === 0, `stops at the first check past the target (step ${r.steps})`);
  // at the first check (step 50) it did not copy yet
  assert.match(lines[0], /step 50\/600 .*copying accuracy 0\.[0-8]/);
  assert.match(lines.at(-1)!, new RegExp(`step ${r.steps}/600 .*copying accuracy`));
});

test('length extension trains at each window in turn and moves on once the target is met there', () => {
  const cfg = shallowConfig({ ...fixtureConfig({ hidden: 16, heads: 2, kvHeads: 1, headDim: 8, layers: 2 }), vocab_size: 40 }, 2, 40);
  const arena = new ParamArena(cfg);
  arena.init(2);
  const before = arena.data.slice();
  const lines: string[] = [];
  // an unreachable target: every window spends its whole budget, and the parameters move
  const spent = extendCopyingLength(arena, { windows: [24, 48], tokensPerStep: 96, stepsPerWindow: 30, lr: 1e-3, seed: 1, target: 2, log: (l) => lines.push(l) });
  assert.deepEqual(spent.map((w) => [w.window, w.steps]), [[24, 30], [48, 30]]);
  assert.ok(spent.every((w) => w.copyAccuracy >= 0 && w.copyAccuracy <= 1));
  assert.ok(arena.data.some((x, i) => x !== before[i]));
  assert.ok(lines.some((l) => /at 48 tokens, step 30\/30/.test(l)));
  // a target already met: no steps at all, and nothing changes
  const after = arena.data.slice();
  const met = extendCopyingLength(arena, { windows: [24, 48], tokensPerStep: 96, stepsPerWindow: 30, lr: 1e-3, seed: 1, target: 0, log: () => {} });
  assert.deepEqual(met.map((w) => w.steps), [0, 0]);
  assert.deepEqual(arena.data, after);
});
