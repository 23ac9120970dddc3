/** Saved caches, fork and truncate: a restored, forked or cut cache continues bit for bit as the original. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AquaError, calibrate, createCache, deserializeCache, loadCache, loadModel, parseMethod, saveCache, serializeCache,
  type CacheMode, type KVCache,
} from '../src/index.js';
import { Rng } from '../src/tensor/rng.js';
import { makeTinyModel, randomWordsText } from './fixture.js';

const dir = makeTinyModel({ layers: 3, maxPositions: 256 });
const { model, tokenizer } = loadModel(dir);
const rng = new Rng(11);
const ids = Array.from({ length: 48 }, () => rng.int(300));
const more = Array.from({ length: 20 }, () => rng.int(300));
const AQUA = 'aquakv[q=higgs:2x16,first=higgs:2x256]';
const { set: predictors } = calibrate(model, randomWordsText(3000, 9), tokenizer, { method: parseMethod(AQUA), samples: 8, seqLen: 128 });
const METHODS = ['fp', AQUA, 'higgs', 'kivi2', 'higgs[q=none]'];
const MODES: CacheMode[] = ['materialized', 'compact'];
const small = { sinks: 3, buffer: 8 };
const predictorsOf = (name: string) => (parseMethod(name).usesPredictors ? predictors : null);
const fresh = (name: string, mode: CacheMode) => createCache(model, parseMethod(name), predictorsOf(name), { ...small, mode });

/** Feeds tokens in steps of the given sizes (cycled); returns every position's logits. */
function feed(cache: KVCache, tokens: number[], steps: number[]): Float32Array {
  const V = model.config.vocabSize;
  const out = new Float32Array(tokens.length * V);
  for (let s = 0, i = 0; s < tokens.length; i++) {
    const n = Math.min(steps[i % steps.length], tokens.length - s);
    out.set(model.forward(tokens.slice(s, s + n), cache, { logits: 'all' }), s * V);
    s += n;
  }
  return out;
}

/** AquaError with one line, whose message matches. */
function refuses(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof AquaError && !e.message.includes('\n') && pattern.test(e.message));
}

test('a restored cache continues bit for bit, for every method, both modes, at every kind of boundary', () => {
  for (const name of METHODS) {
    for (const mode of MODES) {
      // 2 (in the sinks), 19 (in the buffer), 24 (a chunk just compressed), 48 (several chunks)
      for (const k of [2, 19, 24, 48]) {
        const original = fresh(name, mode);
        feed(original, ids.slice(0, k), [3, 5]);
        const bytes = serializeCache(original);
        for (const loadMode of MODES) {
          const restored = deserializeCache(bytes, model, { predictors: predictorsOf(name), mode: loadMode });
          assert.equal(restored.length, k);
          assert.deepEqual(restored.memory().stored, original.fork().memory().stored, `${name} ${mode}→${loadMode} at ${k}: stored bytes`);
          assert.deepEqual(feed(restored, more, [1]), feed(original.fork(), more, [1]), `${name} ${mode}→${loadMode} at ${k}`);
        }
      }
    }
  }
});

test('fork and truncate: a prefix continued two ways gives what two fresh runs give', () => {
  for (const name of METHODS) {
    for (const mode of MODES) {
      // 16: a chunk boundary (chunks end at multiples of 8); 19: inside the buffer; 2: inside the sinks
      for (const [k, extra] of [[16, 24], [19, 4], [2, 30]]) {
        const a = fresh(name, mode);
        feed(a, ids.slice(0, k), [4]);
        const b = a.fork();
        feed(a, ids.slice(k, k + extra), [3]); // a wanders off…
        assert.equal(a.cutPoint(k), k);
        a.truncate(k); // …and comes back
        assert.equal(a.length, k);
        assert.deepEqual(feed(a, more, [2]), feed(b, more, [2]), `${name} ${mode}: cut at ${k} after ${extra} more`);
      }
    }
  }
  // a cut inside a compressed chunk is refused, and cutPoint names the chunk's start
  const c = fresh(AQUA, 'materialized');
  feed(c, ids.slice(0, 40), [5]);
  assert.equal(c.cutPoint(20), 16);
  assert.throws(() => c.truncate(20), /splits a compressed chunk; cut at 16/);
  assert.throws(() => c.truncate(41), /not a length between 0 and 40/);
  assert.equal(fresh('fp', 'materialized').cutPoint(5), 0);
});

test('a saved cache is its stored bytes plus a small header', () => {
  for (const name of [AQUA, 'kivi2', 'fp']) {
    const cache = fresh(name, 'compact');
    feed(cache, [...ids, ...more, ...ids, ...ids], [16]);
    const size = serializeCache(cache).byteLength;
    const stored = cache.memory().stored;
    assert.ok(size <= 1.02 * stored + 4096, `${name}: file ${size} bytes, stored ${stored}`);
  }
});

test('saveCache/loadCache round-trip through a file, and every wrong file is refused in one line', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'aquakv-cache-'));
  const path = join(tmp, 'conversation.aqkv');
  const cache = fresh(AQUA, 'compact');
  feed(cache, ids, [8]);
  const written = saveCache(cache, path);
  assert.equal(statSync(path).size, written);
  const loaded = loadCache(path, model, { predictors });
  assert.deepEqual(feed(loaded, more, [1]), feed(cache.fork(), more, [1]));

  const good = readFileSync(path);
  const write = (name: string, bytes: Uint8Array) => {
    const p = join(tmp, name);
    writeFileSync(p, bytes);
    return p;
  };
  const flipped = Uint8Array.from(good);
  flipped[Math.floor(good.length / 2)] ^= 1;
  refuses(() => loadCache(write('flipped', flipped), model, { predictors }), /corrupt or truncated/);
  refuses(() => loadCache(write('short', good.subarray(0, good.length - 100)), model, { predictors }), /corrupt or truncated/);
  refuses(() => loadCache(write('empty', new Uint8Array(0)), model, { predictors }), /not a saved aquakv cache/);
  refuses(() => loadCache(join(tmp, 'config.json'), model), /cannot read .*ENOENT/);
  const other = loadModel(makeTinyModel({ layers: 3, maxPositions: 256, seed: 2 })).model;
  refuses(() => loadCache(path, other, { predictors }), /saved for another model/);
  refuses(() => loadCache(path, model), /load it with the predictors it was made with/);
  const otherPredictors = calibrate(model, randomWordsText(3000, 5), tokenizer, { method: parseMethod(AQUA), samples: 8, seqLen: 128 }).set;
  refuses(() => loadCache(path, model, { predictors: otherPredictors }), /made with other predictors/);
  refuses(() => loadCache(path, model, { predictors, method: parseMethod('kivi2') }), /holds a cache of method aquakv.*, not kivi/);
  const v2 = Uint8Array.from(good);
  new DataView(v2.buffer).setUint32(8, 2, true);
  refuses(() => loadCache(write('v2', v2), model, { predictors }), /format version 2/);
  // a full cache needs no predictors and refuses another model the same way
  const fp = fresh('fp', 'compact');
  feed(fp, ids.slice(0, 10), [10]);
  saveCache(fp, path);
  assert.equal(loadCache(path, model).length, 10);
  refuses(() => loadCache(path, other), /saved for another model/);
});

test('a process killed while saving a cache leaves the previous saved cache whole', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'aquakv-cache-kill-'));
  const path = join(tmp, 'big.aqkv');
  const small = fresh('fp', 'compact');
  feed(small, ids.slice(0, 5), [5]);
  saveCache(small, path);
  const before = readFileSync(path);
  // a child saves a ~380 MB full cache over it and is killed in the middle of the write
  const index = resolve(fileURLToPath(import.meta.url), '../../src/index.js');
  const rows = 1_000_000;
  const script = `import { loadModel, FullCache, saveCache } from ${JSON.stringify(index)};
    const { model } = loadModel(${JSON.stringify(dir)});
    const C = model.config.kvDim, L = model.config.nLayers;
    const part = () => Array.from({ length: L }, () => new Float32Array(${rows} * C).fill(0.5));
    const cache = new FullCache(model, { length: ${rows}, keys: part(), values: part() });
    process.stdout.write('start\\n');
    saveCache(cache, ${JSON.stringify(path)});`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((done) => child.stdout.once('data', () => done()));
  const partial = () => readdirSync(tmp).some((f) => {
    try {
      return f.endsWith('.tmp') && statSync(join(tmp, f)).size > 0;
    } catch {
      return false;
    }
  });
  const deadline = Date.now() + 60_000;
  while (!partial() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
  assert.ok(partial(), 'caught the writer in the middle of its write');
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.deepEqual(readFileSync(path), before, 'the previous saved cache is whole');
  assert.equal(loadCache(path, model).length, 5);
});
