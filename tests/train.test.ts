import { FullCache } from '../src/kv/full.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normaliseConfig } from '../src/io/config.js';
import { LlamaModel } from '../src/model/llama.js';
import { ParamArena } from '../src/train/params.js';
import { TrainableLlama } from '../src/train/trainable.js';
import { Rng } from '../src/tensor/rng.js';
import { fixtureConfig } from './fixture.js';

function setup(B: number, T: number) {
  const raw = { ...fixtureConfig({ hidden: 16, heads: 4, kvHeads: 2, headDim: 4, layers: 2 }), vocab_size: 40, intermediate_size: 24 };
  const cfg = normaliseConfig(raw);
  const arena = new ParamArena(cfg);
  const rng = new Rng(7);
  // larger-than-training weights so every gradient is well above f32 rounding
  for (const s of arena.slots) {
    const v = arena.data.subarray(s.offset, s.offset + s.size);
    if (s.name.endsWith('Norm')) for (let i = 0; i < v.length; i++) v[i] = 1 + 0.3 * rng.normal();
    else rng.fillNormal(v, 0.4);
  }
  const inputs = Int32Array.from({ length: B * T }, () => rng.int(40));
  const targets = Int32Array.from({ length: B * T }, () => rng.int(40));
  return { cfg, arena, model: new TrainableLlama(cfg, arena, B, T), inputs, targets };
}

test("the trainer's forward equals the runtime's forward on the same weights", () => {
  const { cfg, arena, model, inputs } = setup(2, 9);
  const logits = model.forward(inputs).slice();
  const runtime = new LlamaModel(cfg, arena.weights);
  for (let b = 0; b < 2; b++) {
    const want = runtime.forward(inputs.subarray(b * 9, (b + 1) * 9), new FullCache(runtime));
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(want[i] - logits[b * 9 * 40 + i]));
    assert.ok(worst < 1e-4, `sequence ${b}: max diff ${worst}`);
  }
});

test('every parameter group’s gradient matches central finite differences', () => {
  const { arena, model, inputs, targets } = setup(2, 6);
  model.forwardBackward(inputs, targets);
  const grad = arena.grad.slice();
  const rng = new Rng(11);
  const eps = 1e-2;
  let checked = 0;
  for (const s of arena.slots) {
    for (let trial = 0; trial < 3; trial++) {
      const i = s.offset + rng.int(s.size);
      const orig = arena.data[i];
      arena.data[i] = orig + eps;
      const lp = model.forwardBackward(inputs, targets);
      arena.data[i] = orig - eps;
      const lm = model.forwardBackward(inputs, targets);
      arena.data[i] = orig;
      const numeric = (lp - lm) / (2 * eps);
      const err = Math.abs(numeric - grad[i]);
      assert.ok(err <= 0.02 * Math.max(Math.abs(numeric), Math.abs(grad[i])) + 3e-4,
        `${s.name}[${i - s.offset}]: analytic ${grad[i]}, numeric ${numeric}`);
      checked++;
    }
  }
  assert.ok(checked >= 3 * 20);
});
