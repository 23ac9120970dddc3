/**
 * The runtime against an independent implementation: checkpoints written by NumPy (not by
 * aquakv's saveCheckpoint) and logits from tools/reference_llama.py's float64 forward pass, both
 * committed in tests/golden/ by tools/make_golden.py. Covers BF16 sharded weights with llama3
 * RoPE scaling and GQA, Qwen2's q/k/v biases in F16, and Llama's attention_bias in F32.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FullCache, LlamaModel, loadModelDir } from '../src/index.js';

const GOLDEN = resolve(fileURLToPath(import.meta.url), '../../../tests/golden');

for (const name of readdirSync(GOLDEN).sort()) {
  test(`golden logits: ${name} matches the float64 reference`, () => {
    const dir = join(GOLDEN, name);
    const golden = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8')) as { ids: number[]; logits: number[][] };
    const { config, weights } = loadModelDir(dir);
    const model = new LlamaModel(config, weights);
    const V = config.vocabSize;
    const ours = model.forward(golden.ids, new FullCache(model), { logits: 'all' });
    let maxDiff = 0, maxLogit = 0;
    golden.logits.forEach((row, t) => row.forEach((want, j) => {
      maxDiff = Math.max(maxDiff, Math.abs(ours[t * V + j] - want));
      maxLogit = Math.max(maxLogit, Math.abs(want));
    }));
    assert.equal(golden.logits.length, golden.ids.length);
    // f32 arithmetic against f64: a few ulps of the largest logit
    assert.ok(maxDiff <= 2e-6 * Math.max(1, maxLogit), `${name}: max |ours − reference| = ${maxDiff} (max |logit| ${maxLogit})`);
  });
}
