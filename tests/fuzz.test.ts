/**
 * Property-based fuzzing (fast-check) of the three parsers a user's files reach: the safetensors
 * header, config.json and predictor-file metadata. Every input is either refused with one
 * AquaError or loaded into something that runs with finite output; never a raw exception.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { AquaError, FullCache, LlamaModel, calibrate, decodePredictors, encodePredictors, loadModel, loadModelDir, parseMethod } from '../src/index.js';
import { SafetensorsBytes, encodeSafetensors } from '../src/io/safetensors-format.js';
import { fixtureConfig, makeTinyModel, randomWordsText } from './fixture.js';

const refusedOrRuns = (run: () => void): boolean => {
  try {
    run();
    return true;
  } catch (e) {
    if (e instanceof AquaError && !e.message.includes('\n')) return true;
    throw e; // a raw exception (or a multi-line message) fails the property
  }
};

test('fuzz: byte-mutated safetensors headers are refused in one line or read whole', () => {
  const good = encodeSafetensors([
    { name: 'a', shape: [3, 4], data: Float32Array.from({ length: 12 }, (_, i) => i), dtype: 'F32' },
    { name: 'b', shape: [5], data: Float32Array.of(1, 2, 3, 4, 5), dtype: 'BF16' },
  ], { format: 'pt' });
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), (edits) => {
      const bytes = good.slice();
      for (const [at, v] of edits) bytes[at] = v;
      return refusedOrRuns(() => {
        const f = new SafetensorsBytes(bytes, 'fuzzed.safetensors');
        for (const name of f.entries.keys()) f.readF32(name);
      });
    }),
    { numRuns: 300, seed: 1 },
  );
});

test('fuzz: config.json fields replaced by arbitrary JSON are refused in one line or give finite logits', () => {
  const dir = makeTinyModel({ layers: 2 });
  const work = mkdtempSync(join(tmpdir(), 'aquakv-fuzz-config-'));
  cpSync(dir, work, { recursive: true });
  const base = fixtureConfig({ layers: 2 });
  const keys = Object.keys(base);
  fc.assert(
    fc.property(fc.constantFrom(...keys), fc.jsonValue({ maxDepth: 2 }), (key, value) => {
      writeFileSync(join(work, 'config.json'), JSON.stringify({ ...base, [key]: value }));
      return refusedOrRuns(() => {
        const { config, weights } = loadModelDir(work);
        const model = new LlamaModel(config, weights);
        const logits = model.forward([1, 2, 3].filter((id) => id < config.vocabSize), new FullCache(model));
        assert.ok(logits.every(Number.isFinite), `${key} = ${JSON.stringify(value)} loads but gives non-finite logits`);
      });
    }),
    { numRuns: 150, seed: 2 },
  );
});

test('fuzz: predictor-file metadata replaced by arbitrary JSON is refused in one line', () => {
  const { model, tokenizer } = loadModel(makeTinyModel({ layers: 2 }));
  const p = calibrate(model, randomWordsText(800, 3), tokenizer, { method: parseMethod('aquakv[q=higgs:2x16,first=higgs:2x256]'), samples: 2, seqLen: 64 });
  const good = encodePredictors(p);
  assert.ok(decodePredictors(good, model, 'good.safetensors').set.keys[1], 'the unfuzzed file loads');
  const tensors = [1].flatMap((l) => (['key', 'value'] as const).flatMap((part) => {
    const x = part === 'key' ? p.set.keys[l]! : p.set.values[l]!;
    return [
      { name: `layers.${l}.${part}.weight`, shape: [x.outDim, x.inDim], data: x.weight, dtype: 'F32' as const },
      { name: `layers.${l}.${part}.bias`, shape: [x.outDim], data: x.bias, dtype: 'F32' as const },
    ];
  }));
  const info = p.info as unknown as Record<string, unknown>;
  fc.assert(
    fc.property(
      fc.oneof(
        fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)), // the whole info
        fc.tuple(fc.constantFrom(...Object.keys(info), 'model'), fc.jsonValue({ maxDepth: 2 })).map(([k, v]) => JSON.stringify({ ...info, [k]: v })), // one field
      ),
      fc.constantFrom('1', '2'),
      (infoText, version) => refusedOrRuns(() => {
        decodePredictors(encodeSafetensors(tensors, { format: 'aquakv-predictors', version, info: infoText }), model, 'fuzzed.safetensors');
      }),
    ),
    { numRuns: 300, seed: 3 },
  );
  // a file without its predictor tensors does not run as "no predictor"
  assert.throws(() => decodePredictors(encodeSafetensors([], { format: 'aquakv-predictors', version: '2', info: JSON.stringify(p.info) }), model, 'empty.safetensors'), /tensor layers.1.key.weight is missing/);
});
