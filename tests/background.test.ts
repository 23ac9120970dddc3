import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { calibrate, CompressedCache, createCache, loadModel, parseMethod } from '../src/index.js';
import { JOB_ROWS, jobRows, useHandlerModule } from '../src/kv/background-compression.js';
import { concatRows, type QuantizedBlock } from '../src/quant/quantizer.js';
import { HiggsQuantizer } from '../src/quant/higgs.js';
import { readGridFile, registerGridFile } from '../src/quant/grid.js';
import { startBackgroundThread } from '../src/platform/background-thread.js';
import { gemmBackend, ortAvailable, setGemmBackend } from '../src/tensor/gemm.js';
import { makeTinyModel, randomWordsText } from './fixture.js';

const lm = loadModel(makeTinyModel({ layers: 3, hidden: 64, heads: 4, kvHeads: 2, headDim: 64, maxPositions: 512 }));
const { model, tokenizer } = lm;
const AQUA = 'aquakv[q=higgs:2x8,first=higgs:2x256,k1=higgs:4x256,v2=higgs:2x64]';
const predictors = calibrate(model, randomWordsText(3000, 9), tokenizer, { method: parseMethod(AQUA), samples: 8, seqLen: 128 }).set;
const V = model.config.vocabSize;
const threads = (process.env.AQUAKV_THREADS ? Number(process.env.AQUAKV_THREADS) : availableParallelism()) >= 2 && process.env.AQUAKV_BACKGROUND !== '0';

/**
 * Runs `steps` (token counts fed at once) through a cache; its logits, end to end, and the cache.
 * `settle`: after each step, wait for the thread's jobs (so the steps that fill chunks find them
 * done, rather than whatever the thread managed meanwhile).
 */
function run(method: string, mode: 'materialized' | 'compact', background: boolean, steps: number[], edit?: (c: CompressedCache, at: number) => void, settle = true, buffer = 32) {
  const cache = createCache(model, parseMethod(method), method.startsWith('aquakv') ? predictors : null, { mode, background, buffer }) as CompressedCache;
  const logits: number[] = [];
  let at = 0;
  steps.forEach((n, i) => {
    const tokens = Array.from({ length: n }, (_, j) => ((at + j) * 37 + 11) % 300);
    for (const x of model.forward(tokens, cache, { logits: 'last' })) logits.push(x);
    at += n;
    if (settle) cache.settleBackground();
    edit?.(cache, i);
    at = cache.length;
  });
  return { logits: Float32Array.from(logits), cache };
}

function sameBlocks(a: CompressedCache, b: CompressedCache): void {
  const ca = a.state().chunks;
  const cb = b.state().chunks;
  assert.deepEqual(ca.map((c) => [c.start, c.n]), cb.map((c) => [c.start, c.n]));
  ca.forEach((c, i) => {
    for (const part of ['keys', 'values'] as const) {
      c[part].forEach((blk, l) => {
        assert.deepEqual(blk.codes, cb[i][part][l].codes, `chunk ${c.start} ${part} ${l}: codes`);
        assert.deepEqual(blk.scales, cb[i][part][l].scales, `chunk ${c.start} ${part} ${l}: scales`);
      });
    }
  });
}

/** Runs `steps` through a cache compressing in its steps and one with the thread: the same logits and blocks; the latter. */
function sameAsInStep(method: string, mode: 'materialized' | 'compact', steps: number[], buffer = 32) {
  const inStep = run(method, mode, false, steps, undefined, true, buffer);
  const background = run(method, mode, true, steps, undefined, true, buffer);
  assert.deepEqual(background.logits, inStep.logits);
  sameBlocks(background.cache, inStep.cache);
  return background;
}

// a prompt, then decode one token at a time (jobs of JOB_ROWS go to the thread, the filling step
// takes them back), then a step of 40 that fills a chunk whose first rows a job holds (taken
// layer by layer), then decode again
const STEPS = [20, ...Array(70).fill(1), 40, ...Array(45).fill(1)];

for (const mode of ['materialized', 'compact'] as const) {
  test(`a ${mode} cache compressing on the background thread gives the logits and codes of one compressing in its steps, bit for bit`, () => {
    const inStep = run(AQUA, mode, false, STEPS);
    // unsettled first: the thread starts meanwhile, so some jobs are not done when their chunk fills
    const unsettled = run(AQUA, mode, true, STEPS, undefined, false);
    assert.deepEqual(unsettled.logits, inStep.logits);
    sameBlocks(unsettled.cache, inStep.cache);
    const background = run(AQUA, mode, true, STEPS);
    assert.deepEqual(background.logits, inStep.logits);
    sameBlocks(background.cache, inStep.cache);
    assert.equal(inStep.cache.backgroundRows, 0);
    if (threads) {
      // most compressed tokens came from the thread: all but the rows of the steps that filled a chunk
      assert.ok(background.cache.backgroundRows >= background.cache.compressedTokens / 2, `${background.cache.backgroundRows} of ${background.cache.compressedTokens} rows from the thread`);
      // a materialized cache kept the thread's rebuild of some chunks in its views' spare rows, and
      // rebuilt others itself (their spare rows ran out: views of 64 rows, then 128, chunks of 32)
      if (mode === 'materialized') {
        assert.ok(background.cache.stagedRows > 0 && background.cache.stagedRows < background.cache.backgroundRows, `${background.cache.stagedRows} of ${background.cache.backgroundRows} rows staged`);
      } else {
        assert.equal(background.cache.stagedRows, 0, 'a compact cache keeps no rebuild');
      }
    } else {
      assert.equal(background.cache.backgroundRows, 0, 'one core: no thread');
    }
  });
}

test('with chunks of 128 the thread takes jobs that halve toward a chunk\'s end, the same bits', () => {
  // a chunk [0, 128): jobs [0, 64), [64, 96), [96, 112), [112, 120); the filling step does [120, 128)
  const sizes: number[] = [];
  for (let from = 0; 128 - from >= jobRows(from, 128) + JOB_ROWS; from += sizes[sizes.length - 1]) sizes.push(jobRows(from, 128));
  assert.deepEqual(sizes, [64, 32, 16, 8]);
  assert.equal(jobRows(120, 128), JOB_ROWS);
  const background = sameAsInStep(AQUA, 'materialized', [20, ...Array(250).fill(1)], 128);
  if (threads) {
    // chunks [4, 128) (prompt and decode) and [128, 256): all but each filling step's last rows from the thread
    assert.ok(background.cache.backgroundRows >= 200, `${background.cache.backgroundRows} rows from the thread`);
  }
});

test('steps of a few tokens that run past a chunk\'s end keep the staged rebuild of its rows intact, the same bits', () => {
  // steps of 3 fill each chunk of 32 with up to 2 rows of the next: those rows are in the views
  // before the chunk's staged rows move into place
  for (const settle of [true, false]) {
    const steps = [20, ...Array(60).fill(3)];
    const inStep = run(AQUA, 'materialized', false, steps);
    const background = run(AQUA, 'materialized', true, steps, undefined, settle);
    assert.deepEqual(background.logits, inStep.logits);
    sameBlocks(background.cache, inStep.cache);
    if (threads && settle) assert.ok(background.cache.stagedRows > 0, 'some chunks staged');
  }
});

test('cutting and forking a cache with jobs on the thread keeps it equal to one compressing in its steps', () => {
  // cut inside the buffer after 50 decode steps (rows sent, some cut), then again to a chunk boundary; fork midway
  const edit = (c: CompressedCache, i: number) => {
    if (i === 50) c.truncate(c.length - 5);
    if (i === 80) c.truncate(c.cutPoint(c.length - 20));
  };
  const steps = [20, ...Array(120).fill(1)];
  const inStep = run(AQUA, 'materialized', false, steps, edit);
  const background = run(AQUA, 'materialized', true, steps, edit);
  assert.deepEqual(background.logits, inStep.logits);
  sameBlocks(background.cache, inStep.cache);
  const forks = [inStep.cache.fork(), background.cache.fork()];
  const out = forks.map((c) => {
    const o: number[] = [];
    for (let i = 0; i < 40; i++) for (const x of model.forward([(i * 13) % 300], c, { logits: 'last' })) o.push(x);
    return Float32Array.from(o);
  });
  assert.deepEqual(out[1], out[0]);
  sameBlocks(forks[1], forks[0]);
  assert.equal(out[0].length, 40 * V);
});

test('the thread uses the caller\'s arithmetic: with the portable product the results are that product\'s, bit for bit', () => {
  if (!ortAvailable()) return assert.equal(gemmBackend(), 'ts');
  const was = gemmBackend();
  setGemmBackend('ts');
  try {
    const background = sameAsInStep(AQUA, 'materialized', [10, ...Array(60).fill(1)]);
    if (threads) assert.ok(background.cache.backgroundRows > 0);
  } finally {
    setGemmBackend(was);
  }
});

test('a method whose quantizer is not per token (KIVI) compresses in its steps', () => {
  const r = run('kivi2', 'materialized', true, [10, ...Array(40).fill(1)]);
  assert.ok(r.cache.compressedTokens > 0);
  assert.equal(r.cache.backgroundRows, 0);
});

test('concatRows joins per-token blocks into the block of all their rows', () => {
  const q = HiggsQuantizer.fromGrid(2, 16, 96, 64); // two groups per token, padded to 128
  const x = Float32Array.from({ length: 7 * 96 }, (_, i) => Math.sin(i * 0.7) * (1 + (i % 5)));
  const whole = q.quantize(x, 7);
  const parts: QuantizedBlock[] = [q.quantize(x.subarray(0, 3 * 96), 3), q.quantize(x.subarray(3 * 96), 4)];
  assert.ok(q.rowwise);
  assert.deepEqual(concatRows(parts), whole);
  assert.equal(concatRows([whole]), whole);
  assert.ok(JOB_ROWS >= 1);
});

test('the background thread answers in order, reports what its handler threw, and forgets dropped replies', () => {
  const thread = startBackgroundThread(new URL('./fixtures/echo-handler.js', import.meta.url).href);
  assert.ok(thread);
  const a = thread.send({ double: 21 });
  const b = thread.send({ fail: 'no such codecs' });
  const c = thread.send({ double: 2 });
  const d = thread.send({ double: 5 });
  thread.drop(c);
  assert.equal(thread.reply(d, 10_000), 10, 'a later reply first');
  assert.equal(thread.reply(a, 10_000), 42);
  assert.throws(() => thread.reply(b, 10_000), /no such codecs/);
  assert.throws(() => thread.reply(c, 50), /did not answer in 50 ms/, 'a dropped reply is never given');
});

test('a process that ends while its background thread is inside native products waits for the job, and exits cleanly', () => {
  // the thread torn down inside onnxruntime's call aborted the process ("terminate called after
  // throwing an instance of 'Napi::Error'"): every run of this script before the exit wait
  const dir = mkdtempSync(join(tmpdir(), 'aquakv-exit-'));
  const script = join(dir, 'exit-mid-job.mjs');
  writeFileSync(script, [
    `const { startBackgroundThread } = await import(${JSON.stringify(new URL('../src/platform/background-thread.js', import.meta.url).href)});`,
    `const thread = startBackgroundThread(${JSON.stringify(new URL('./fixtures/native-handler.js', import.meta.url).href)});`,
    'if (!thread) process.exit(3);',
    'thread.send({ ms: 300 });',
    'const until = performance.now() + 150; // the job under way: the module loaded, products running',
    'while (performance.now() < until);',
    'process.exit(0);',
  ].join('\n'));
  for (let i = 0; i < 2; i++) {
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8' });
    assert.equal(r.signal, null, `run ${i}: ended by ${r.signal}: ${r.stderr}`);
    assert.equal(r.status, 0, `run ${i}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /terminate called/);
  }
});

test('a thread that fails: the cache says so once, compresses in its steps, and the bits do not change', () => {
  const was = useHandlerModule(new URL('./fixtures/failing-compression.js', import.meta.url).href);
  const said: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array) => {
    said.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    const steps = [10, ...Array(70).fill(1)];
    const inStep = run(AQUA, 'materialized', false, steps);
    const first = run(AQUA, 'materialized', true, steps);
    const second = run(AQUA, 'compact', true, steps);
    assert.deepEqual(first.logits, inStep.logits);
    assert.deepEqual(second.logits, inStep.logits);
    sameBlocks(first.cache, inStep.cache);
    sameBlocks(second.cache, inStep.cache);
    assert.equal(first.cache.backgroundRows + second.cache.backgroundRows, 0);
    if (threads) {
      const failures = said.filter((s) => s.includes('background thread failed'));
      assert.equal(failures.length, 1, `said once, for both caches: ${said.join('')}`);
      assert.match(failures[0], /injected failure/);
    }
  } finally {
    process.stderr.write = write;
    useHandlerModule(was);
  }
});

test('the thread compresses with this process\'s grids, also where they were supplied as data', () => {
  const shipped = readGridFile(2, 8);
  // the same grid, scaled: what this process now quantizes with, not what grids/ holds
  registerGridFile({ ...shipped, points: shipped.points.map((p) => 1.25 * p) });
  try {
    const background = sameAsInStep('higgs[q=higgs:2x8]', 'materialized', [10, ...Array(70).fill(1)]);
    if (threads) assert.ok(background.cache.backgroundRows > 0);
  } finally {
    registerGridFile(shipped);
  }
  // and the shipped grid again afterwards: other codecs, other bits
  sameAsInStep('higgs[q=higgs:2x8]', 'compact', [10, ...Array(40).fill(1)]);
});
