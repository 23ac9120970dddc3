import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { gemmNaive, gemmRowwise, gemmTs, gemmWasm, ortGemmFn, ortAvailable, type GemmFn } from '../src/tensor/gemm.js';
import { Rng } from '../src/tensor/rng.js';
import { YoungCollection } from '../src/platform/ort-gemm.js';
import { runInNewContext } from 'node:vm';
import { PerformanceObserver, constants } from 'node:perf_hooks';

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function checkAgainstNaive(fn: GemmFn, name: string) {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 70 }), fc.integer({ min: 1, max: 40 }),
      fc.boolean(), fc.boolean(), fc.integer(),
      (m, k, n, ta, tb, seed) => {
        const rng = new Rng(seed);
        const a = rng.fillNormal(new Float32Array(m * k));
        const b = rng.fillNormal(new Float32Array(k * n));
        const want = new Float32Array(m * n);
        const got = new Float32Array(m * n);
        gemmNaive(want, a, b, m, k, n, ta, tb);
        fn(got, a, b, m, k, n, ta, tb);
        const d = maxAbsDiff(want, got);
        assert.ok(d < 1e-4 * Math.sqrt(k), `${name} [${m},${k}]x[${k},${n}] ta=${ta} tb=${tb}: max diff ${d}`);
      },
    ),
    { numRuns: 150, seed: 42 },
  );
}

test('gemmTs equals the naive product for every shape and transpose', () => checkAgainstNaive(gemmTs, 'gemmTs'));

test('gemmWasm (the portable backend: WASM kernels, TS loop for the rest) equals the naive product for every shape and transpose', () => checkAgainstNaive(gemmWasm, 'gemmWasm'));

test('onnxruntime backend loads on this machine and equals the naive product', () => {
  assert.ok(ortAvailable(), 'onnxruntime-node failed to load (the portable path still works, but it is slow)');
  checkAgainstNaive(ortGemmFn()!, 'gemmOrt');
});

test('gemm rejects buffers smaller than the shapes', () => {
  assert.throws(() => gemmTs(new Float32Array(3), new Float32Array(4), new Float32Array(4), 2, 2, 2, false, false), /buffers too small/);
});

test('gemmRowwise: a row\'s result does not depend on how many rows are multiplied with it', () => {
  for (const [k, n] of [[16, 16], [128, 128], [256, 128]]) {
    const M = 300;
    const a = new Rng(1).fillNormal(new Float32Array(M * k));
    const b = new Rng(2).fillNormal(new Float32Array(n * k));
    const full = new Float32Array(M * n);
    gemmRowwise(full, a, b, M, k, n, true);
    for (const m of [1, 2, 3, 7, 128]) {
      for (const off of [0, 5, 130]) {
        const out = new Float32Array(m * n);
        gemmRowwise(out, a.subarray(off * k), b, m, k, n, true);
        assert.deepEqual(out, full.subarray(off * n, (off + m) * n), `k=${k} n=${n} m=${m} at row ${off}`);
      }
    }
  }
});

test('the native product\'s output copies: a young-generation collection after every `limit` bytes, and the collector adds no gc to any scope', async () => {
  let asked = 0;
  const young = new YoungCollection(() => asked++, 100);
  young.copied(60);
  assert.equal(asked, 0);
  young.copied(60); // 120 ≥ 100: one collection, the count starts again
  assert.equal(asked, 1);
  young.copied(99);
  assert.equal(asked, 1);
  young.copied(1);
  assert.equal(asked, 2);
  // without a collector, nothing is asked and nothing fails
  new YoungCollection(null, 1).copied(10);

  // on Node the collector is V8's, and what it runs is a young-generation (minor) collection
  const collect = YoungCollection.collector();
  assert.equal(typeof collect, 'function');
  const kinds: number[] = [];
  const observer = new PerformanceObserver((list) => { for (const e of list.getEntries()) kinds.push((e as unknown as { detail: { kind: number } }).detail.kind); });
  observer.observe({ entryTypes: ['gc'] });
  collect!();
  await new Promise((resolve) => setTimeout(resolve, 50));
  observer.disconnect();
  assert.ok(kinds.includes(constants.NODE_PERFORMANCE_GC_MINOR), `collections seen: ${kinds.join(', ')}`);
  // taking it left no gc in the host's global scope (node runs the tests without --expose-gc) nor in later contexts
  assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined');
  assert.equal(runInNewContext('typeof gc'), 'undefined');
});
