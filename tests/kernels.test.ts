import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { assembleKernels, kernelsModuleSource, kernelsWat } from '../tools/make-kernels.js';
import { ArenaSet, WasmArena } from '../src/tensor/wasm-arena.js';
import { HalfMatrix, firstNonFinite, type HalfDtype } from '../src/tensor/half-matrix.js';
import { f16Table, f32ToBf16, f32ToF16 } from '../src/tensor/f16.js';
import { gemmBackend, gemmNaive, gemmWasm, setGemmBackend } from '../src/tensor/gemm.js';
import { Rng } from '../src/tensor/rng.js';
import { softmaxRows } from '../src/tensor/softmax.js';
import { softmaxRow } from '../src/model/ops.js';

test('the committed kernels are what tools/make-kernels.ts generates and assembles', async () => {
  const wat = kernelsWat();
  assert.equal(readFileSync('src/tensor/kernels.wat', 'utf8'), wat, 'kernels.wat is stale: npm run kernels:generate');
  const source = kernelsModuleSource(await assembleKernels(wat), await assembleKernels(kernelsWat(true)));
  assert.equal(readFileSync('src/tensor/kernels-wasm.ts', 'utf8'), source, 'kernels-wasm.ts is stale: npm run kernels:generate');
});

const toHalf = (dtype: HalfDtype, x: Float32Array) => Uint16Array.from(x, (v) => (dtype === 'bf16' ? f32ToBf16(v) : f32ToF16(v)));
const bitsToF32 = (dtype: HalfDtype, bits: Uint16Array) => {
  const t = f16Table();
  return Float32Array.from(bits, (b) => (dtype === 'bf16' ? new Float32Array(new Uint32Array([b << 16]).buffer)[0] : t[b]));
};

test('widen kernels give every finite 16-bit pattern exactly (f16 subnormals included)', () => {
  const arena = new WasmArena(65536 * 6);
  const src = arena.alloc(65536 * 2);
  const dst = arena.alloc(65536 * 4);
  for (const dtype of ['bf16', 'f16'] as HalfDtype[]) {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    arena.u16(src, 65536).set(all);
    (dtype === 'bf16' ? arena.kernels.widen_bf16 : arena.kernels.widen_f16)(src, dst, 65536);
    const got = arena.f32(dst, 65536);
    const want = bitsToF32(dtype, all);
    const mask = dtype === 'bf16' ? 0x7f80 : 0x7c00;
    let checked = 0;
    for (let h = 0; h < 65536; h++) {
      if ((h & mask) === mask) continue; // inf/NaN: the loader refuses them
      assert.ok(Object.is(got[h], want[h]), `${dtype} 0x${h.toString(16)}: ${got[h]} vs ${want[h]}`);
      checked++;
    }
    assert.ok(checked > 63000);
  }
});

/** out = x · Wᵀ in float64 from the widened weights. */
function reference(x: Float32Array, w: Float32Array, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let p = 0; p < k; p++) s += x[i * k + p] * w[j * k + p];
    out[i * n + j] = s;
  }
  return out;
}

for (const backend of ['ts', 'ort'] as const) {
  test(`HalfMatrix.product equals the f64 product of the widened weights, every row independent of the others (${backend} backend)`, () => {
    const was = gemmBackend();
    setGemmBackend(backend);
    try {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 23 }),
          fc.constantFrom<HalfDtype>('bf16', 'f16'), fc.integer(), fc.boolean(),
          (m, k8, n, dtype, seed, odd) => {
            const k = k8 * 8 + (odd ? 3 : 0); // odd widths take the widened path
            const rng = new Rng(seed);
            const bits = toHalf(dtype, rng.fillNormal(new Float32Array(n * k)));
            const x = rng.fillNormal(new Float32Array(m * k));
            const W = HalfMatrix.fromBits(new ArenaSet(), dtype, n, k, bits);
            const got = new Float32Array(m * n);
            W.product(got, x, m);
            const want = reference(x, bitsToF32(dtype, bits), m, k, n);
            for (let i = 0; i < m * n; i++) assert.ok(Math.abs(got[i] - want[i]) <= 2e-6 * k * (1 + Math.abs(want[i])), `[${m},${k}]·[${k},${n}] ${dtype}: ${got[i]} vs ${want[i]}`);
            if (m >= 2) {
              // rows computed together equal rows computed in another grouping of m ≥ 2 (and alone on the kernel path)
              const pairs = new Float32Array(2 * n);
              W.product(pairs, x.subarray(0, 2 * k), 2);
              assert.deepEqual(pairs, got.subarray(0, 2 * n));
            }
            if (backend === 'ts' && k % 8 === 0 && m >= 2) {
              const alone = new Float32Array(n);
              W.product(alone, x.subarray(k, 2 * k), 1);
              assert.deepEqual(alone, got.subarray(n, 2 * n));
            }
          },
        ),
        { numRuns: 120, seed: 7 },
      );
    } finally {
      setGemmBackend(was);
    }
  });
}

/**
 * The 16-bit dot kernels' documented order, in scalar f32: per group of 8, even elements into
 * 4 "lo" lanes, odd ones into 4 "hi" lanes, then lo + hi and the lanes ((0 + 1) + (2 + 3)).
 */
function pairOrderTwin(x: Float32Array, w: Float32Array, m: number, k: number, n: number): Float32Array {
  const f = Math.fround;
  const out = new Float32Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    const lo = [0, 0, 0, 0], hi = [0, 0, 0, 0];
    for (let g = 0; g < k; g += 8) for (let q = 0; q < 4; q++) {
      lo[q] = f(lo[q] + f(x[i * k + g + 2 * q] * w[j * k + g + 2 * q]));
      hi[q] = f(hi[q] + f(x[i * k + g + 2 * q + 1] * w[j * k + g + 2 * q + 1]));
    }
    const s = lo.map((v, q) => f(v + hi[q]));
    out[i * n + j] = f(f(s[0] + s[1]) + f(s[2] + s[3]));
  }
  return out;
}

test('the 16-bit dot kernels equal their scalar twin bit for bit (f16: x scaled by 2^112, or less for rows with |x| >= 2^14)', () => {
  const was = gemmBackend();
  setGemmBackend('ts'); // every row count on the kernel path
  try {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 23 }),
        fc.constantFrom<HalfDtype>('bf16', 'f16'), fc.integer(), fc.constantFrom(1, 1e-30, 3e4, 1e9),
        (m, k8, n, dtype, seed, size) => {
          const k = k8 * 8;
          const rng = new Rng(seed);
          // f16 weights over their whole range, subnormals included; x of every size the scale meets
          const wide = rng.fillNormal(new Float32Array(n * k));
          for (let p = 0; p < wide.length; p++) wide[p] *= 2 ** ((p % 7) * 4 - 20);
          const bits = toHalf(dtype, wide);
          const x = rng.fillNormal(new Float32Array(m * k), size);
          const W = HalfMatrix.fromBits(new ArenaSet(), dtype, n, k, bits);
          const got = new Float32Array(m * n);
          W.product(got, x, m);
          const want = pairOrderTwin(x, bitsToF32(dtype, bits), m, k, n);
          for (let i = 0; i < m * n; i++) assert.ok(Object.is(got[i], want[i]), `[${m},${k}]·[${k},${n}] ${dtype} x~${size}: ${got[i]} vs ${want[i]}`);
        },
      ),
      { numRuns: 150, seed: 5 },
    );
  } finally {
    setGemmBackend(was);
  }
});

test('an f16 row too large for the full scale, or not finite, comes out as its twin: finite rows exact, NaN and infinity kept', () => {
  const k = 16, n = 3;
  const rng = new Rng(8);
  const bits = toHalf('f16', rng.fillNormal(new Float32Array(n * k)));
  const W = HalfMatrix.fromBits(new ArenaSet(), 'f16', n, k, bits);
  const x = rng.fillNormal(new Float32Array(3 * k));
  x[0] = 1e30; // s far below 112
  x[k + 5] = Infinity;
  x[2 * k + 9] = NaN;
  const got = new Float32Array(3 * n);
  W.product(got, x, 3);
  const want = pairOrderTwin(x, bitsToF32('f16', bits), 3, k, n);
  for (let i = 0; i < 3 * n; i++) assert.ok(Object.is(got[i], want[i]), `${i}: ${got[i]} vs ${want[i]}`);
  assert.ok(got.subarray(0, n).every(Number.isFinite) && got.subarray(2 * n).every(Number.isNaN));
});

test('the f32 dot kernel equals the naive product', () => {
  const arena = new WasmArena();
  const rng = new Rng(3);
  for (const [m, k, n] of [[1, 8, 1], [3, 64, 7], [2, 256, 33]]) {
    const w = arena.alloc(n * k * 4), x = arena.alloc(m * k * 4), y = arena.alloc(m * n * 4);
    const W = rng.fillNormal(new Float32Array(n * k)), X = rng.fillNormal(new Float32Array(m * k));
    arena.f32(w, n * k).set(W);
    arena.f32(x, m * k).set(X);
    arena.kernels.dot_f32(w, x, y, m, k, n, n);
    const want = new Float32Array(m * n);
    gemmNaive(want, X, W, m, k, n, false, true);
    const got = arena.f32(y, m * n);
    for (let i = 0; i < m * n; i++) assert.ok(Math.abs(got[i] - want[i]) < 1e-5 * k, `[${m},${k},${n}] ${got[i]} vs ${want[i]}`);
  }
});

test('HalfMatrix: stacking contiguous parts moves nothing; rows, widening and the finiteness check', () => {
  const store = new ArenaSet();
  const rng = new Rng(5);
  const a = HalfMatrix.fromBits(store, 'bf16', 3, 8, toHalf('bf16', rng.fillNormal(new Float32Array(24))));
  const b = HalfMatrix.fromBits(store, 'bf16', 2, 8, toHalf('bf16', rng.fillNormal(new Float32Array(16))));
  const s = HalfMatrix.stack([a, b]);
  const used = store.bytes;
  assert.equal(s.rows, 5);
  assert.deepEqual(s.rowRange(3, 5).bits(), b.bits());
  const c = HalfMatrix.fromBits(store, 'bf16', 1, 8, new Uint16Array(8));
  const copied = HalfMatrix.stack([c, a]); // not adjacent in this order: copied
  assert.deepEqual(copied.rowRange(1, 4).bits(), a.bits());
  assert.ok(store.bytes >= used);
  const row = new Float32Array(8);
  s.rowToF32(4, row);
  assert.deepEqual(row, b.toF32(1, 2));
  assert.equal(firstNonFinite('bf16', Uint16Array.of(0x3f80, 0x7f80)), 1);
  assert.equal(firstNonFinite('f16', Uint16Array.of(0x3c00, 0xfc01)), 1);
  assert.equal(firstNonFinite('f16', Uint16Array.of(0x3c00, 0x7bff)), -1);
});

for (const dtype of ['bf16', 'f16'] as HalfDtype[]) test(`a large one-row product split across the helper threads equals the same rows computed alone, bit for bit (${dtype})`, () => {
  const rng = new Rng(11);
  const n = 1030, k = 1024; // ≥ 1 M weights: split; 1030 rows: parts of unequal length
  const W = HalfMatrix.fromBits(new ArenaSet(), dtype, n, k, toHalf(dtype, rng.fillNormal(new Float32Array(n * k))));
  const x = rng.fillNormal(new Float32Array(k));
  const whole = new Float32Array(n);
  W.product(whole, x, 1);
  const pieces = new Float32Array(n);
  for (let r = 0; r < n; r += 100) {
    const part = W.rowRange(r, Math.min(n, r + 100)); // 100 rows: below the split threshold
    const y = new Float32Array(part.rows);
    part.product(y, x, 1);
    pieces.set(y, r);
  }
  assert.deepEqual(whole, pieces);
  const want = reference(x, W.toF32(), 1, k, n);
  for (let j = 0; j < n; j++) assert.ok(Math.abs(whole[j] - want[j]) < 1e-4, `row ${j}`);
});

test('several rows through the native product: blocks widened from shared memory, split when larger than a block', () => {
  const was = gemmBackend();
  setGemmBackend('ort');
  try {
    const rng = new Rng(12);
    const n = 2100, k = 2048; // 17.2 MB widened: two blocks
    const W = HalfMatrix.fromBits(new ArenaSet(), 'f16', n, k, toHalf('f16', rng.fillNormal(new Float32Array(n * k), 0.05)));
    const x = rng.fillNormal(new Float32Array(3 * k));
    const three = new Float32Array(3 * n);
    W.product(three, x, 3);
    const two = new Float32Array(2 * n);
    W.product(two, x.subarray(k), 2);
    assert.deepEqual(two, three.subarray(n), 'rows do not depend on the rows beside them');
    const want = reference(x, W.toF32(), 3, k, n);
    for (let i = 0; i < 3 * n; i++) assert.ok(Math.abs(three[i] - want[i]) < 1e-4, `${i}: ${three[i]} vs ${want[i]}`);
  } finally {
    setGemmBackend(was);
  }
});

test('gemmWasm (the portable backend): a row\'s result does not depend on the rows beside it (its product is checked against the naive one in gemm.test)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 2, max: 9 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 200 }), fc.boolean(), fc.integer(), (m, k8, n, transB, seed) => {
      const k = k8 * 8;
      const rng = new Rng(seed);
      const a = rng.fillNormal(new Float32Array(m * k));
      const b = rng.fillNormal(new Float32Array(k * n));
      const all = new Float32Array(m * n);
      gemmWasm(all, a, b, m, k, n, false, transB);
      const last = new Float32Array(n);
      gemmWasm(last, a.subarray((m - 1) * k), b, 1, k, n, false, transB);
      assert.deepEqual(last, all.subarray((m - 1) * n));
    }),
    { numRuns: 100, seed: 3 },
  );
});

test('the SIMD softmax equals the f64 one to f32 rounding of its argument and sum, masks past each row\'s length, and underflows to 0', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 300 }), fc.integer(), fc.double({ min: 0.01, max: 4, noNaN: true }), (rows, width, seed, scale) => {
      const rng = new Rng(seed);
      const x = rng.fillNormal(new Float32Array(rows * width), 8);
      if (width > 3) x[1] = -500; // far below the maximum: exp underflows
      const want = x.slice();
      const lens = Array.from({ length: rows }, (_, r) => 1 + ((r * 37 + seed) >>> 0) % width);
      for (let r = 0; r < rows; r++) softmaxRow(want, r * width, lens[r], width, scale);
      const got = x.slice();
      softmaxRows(got, rows, width, (r) => lens[r], scale);
      for (let r = 0; r < rows; r++) {
        let max = -Infinity;
        for (let j = 0; j < lens[r]; j++) max = Math.max(max, x[r * width + j]);
        for (let j = 0; j < lens[r]; j++) {
          const i = r * width + j;
          // the exponent's argument is formed in f32: its rounding grows with its size
          const arg = Math.abs((x[i] - max) * scale);
          assert.ok(Math.abs(got[i] - want[i]) <= want[i] * (1e-6 + 2.4e-7 * arg) + 1e-37, `${i}: ${got[i]} vs ${want[i]}`);
        }
      }
      for (let r = 0; r < rows; r++) for (let j = lens[r]; j < width; j++) assert.equal(got[r * width + j], 0);
    }),
    { numRuns: 200, seed: 5 },
  );
});

test('an arena dropped by its owner is freed, also by the helper threads that shared it', () => {
  // 12 × 128 MiB of 16-bit weights, each multiplied on the helpers and dropped: the process must not keep them
  const script = `
    const { ArenaSet } = await import(${JSON.stringify(new URL('../src/tensor/wasm-arena.js', import.meta.url).href)});
    const { HalfMatrix } = await import(${JSON.stringify(new URL('../src/tensor/half-matrix.js', import.meta.url).href)});
    for (let i = 0; i < 12; i++) {
      const m = HalfMatrix.allocate(new ArenaSet(), 'bf16', 8192, 8192);
      m.bits().fill(1);
      m.product(new Float32Array(8192), new Float32Array(8192), 1);
      globalThis.gc();
      await new Promise((r) => setTimeout(r, 20));
    }
    globalThis.gc();
    await new Promise((r) => setTimeout(r, 50));
    console.log(process.memoryUsage().rss);`;
  const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, AQUAKV_THREADS: '2' } });
  assert.equal(r.status, 0, r.stderr);
  const rss = Number(r.stdout.trim());
  assert.ok(rss < 700e6, `resident ${(rss / 1e6).toFixed(0)} MB after dropping 1.5 GB of arenas`);
});

test('a kernel that traps on a helper thread is reported as an error, not a hang', () => {
  // in a process of its own with AQUAKV_THREADS=2, so there is a helper whatever this machine's cores
  const script = `
    const { WasmArena } = await import(${JSON.stringify(new URL('../src/tensor/wasm-arena.js', import.meta.url).href)});
    const arena = new WasmArena(1 << 16);
    const pool = arena.pool;
    if (!pool) throw new Error('no helper');
    // a weight address past the end of the memory: the kernel traps
    pool.start(0, arena.id, 'dot_f32', [arena.memory.buffer.byteLength + 1024, arena.xScratch, arena.yScratch, 1, 8, 4, 4]);
    let message = 'no error';
    try { pool.wait(0); } catch (e) { message = e.message; }
    // and the helper works on afterwards
    pool.start(0, arena.id, 'dot_f32', [arena.xScratch, arena.xScratch, arena.yScratch, 1, 8, 4, 4]);
    pool.wait(0);
    console.log(message);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, AQUAKV_THREADS: '2' } });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /trapped/);
});

test('the SIMD softmax never hides a NaN: a row holding one comes out NaN', () => {
  for (const at of [0, 5, 6]) {
    const x = new Float32Array([1, 2, 3, 4, 5, 6, 7]);
    x[at] = NaN;
    softmaxRows(x, 1, 7, () => 7, 1);
    assert.ok(x.every((v) => Number.isNaN(v)), `NaN at ${at}: ${Array.from(x)}`);
  }
});

test('kernel helpers: hot after a call, blocked after a while, warmed and cooled on request; a product split across a hot helper equals it unsplit, bit for bit', () => {
  // in a process of its own with AQUAKV_THREADS=2, so there is a helper whatever this machine's cores
  const script = `
    const { ArenaSet } = await import(${JSON.stringify(new URL('../src/tensor/wasm-arena.js', import.meta.url).href)});
    const { HalfMatrix, PARALLEL_MIN_WEIGHTS } = await import(${JSON.stringify(new URL('../src/tensor/half-matrix.js', import.meta.url).href)});
    const until = (cond, what) => { const end = Date.now() + 5000; while (!cond()) if (Date.now() > end) throw new Error('never ' + what); };
    const n = 512, k = 256; // 128 Ki weights: split when the helper is hot
    if (n * k < PARALLEL_MIN_WEIGHTS) throw new Error('too small to split');
    const W = HalfMatrix.allocate(new ArenaSet(), 'f16', n, k);
    const bits = W.bits();
    for (let i = 0; i < bits.length; i++) bits[i] = (i * 7919) % 0x7bff ^ (i % 3 === 0 ? 0x8000 : 0); // finite f16s of both signs
    const x = Float32Array.from({ length: k }, (_, i) => Math.sin(i) * 3);
    const pool = W.arena.pool;
    if (!pool) throw new Error('no helper');
    const product = () => { const y = new Float32Array(n); W.product(y, x, 1); return y; };
    // cooled (a native product ran split): a product runs alone
    pool.cool();
    until(() => !pool.readyForSplit(), 'cooled');
    const alone = product();
    // asked again while it is not ready (each time a blocked helper is asked to watch: on a busy
    // machine its moment of watching may pass while this thread is not running), then hot: the
    // next product is split
    until(() => pool.readyForSplit(), 'warm');
    const split = product();
    // after a call a helper is hot for a while, then blocks on its own
    until(() => !pool.readyForSplit(), 'blocked again');
    let same = alone.length === split.length;
    for (let i = 0; i < n; i++) same &&= Object.is(alone[i], split[i]);
    console.log(JSON.stringify({ same }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, AQUAKV_THREADS: '2' } });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim()), { same: true });
});
