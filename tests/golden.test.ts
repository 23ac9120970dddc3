/**
 * The runtime against independent implementations, from checkpoints aquakv did not write:
 *  - NumPy-written checkpoints with logits from tools/reference_llama.py's float64 forward pass
 *    (tools/make_golden.py): BF16 sharded weights with llama3 RoPE scaling and GQA, Qwen2's q/k/v
 *    biases in F16, Llama's attention_bias in F32;
 *  - hf-*: checkpoints written by Hugging Face transformers 5.17 itself (`save_pretrained`: its
 *    config.json, with RoPE in "rope_parameters", and its safetensors, sharded BF16, F16, F32),
 *    with the float64 logits transformers computes from them (tools/check_transformers.py, run
 *    on a machine with transformers; that run also checked the NumPy reference's logits against
 *    transformers, within 1.1e-7 of the largest logit).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FullCache, LlamaModel, loadModelDir } from '../src/index.js';

const GOLDEN = resolve(fileURLToPath(import.meta.url), '../../../tests/golden');

for (const name of readdirSync(GOLDEN).sort()) {
  test(`golden logits: ${name} matches its float64 reference`, () => {
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
