import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { packBits, unpackBits, packedBytes } from '../src/quant/bitpack.js';
import { fwht, hadamardMatrix } from '../src/quant/hadamard.js';
import { HiggsQuantizer, defaultGroupSize } from '../src/quant/higgs.js';
import { CHUNK_ROWS, encodesWithKernels, setHiggsKernels } from '../src/quant/higgs-wasm.js';
import { UniformQuantizer } from '../src/quant/uniform.js';
import { IdentityQuantizer } from '../src/quant/identity.js';
import { Grid, listGrids, loadGrid, readGridFile, measureGridMse } from '../src/quant/grid.js';
import { lloydMax1d } from '../src/quant/grid-generator.js';
import { parseQuantizer } from '../src/quant/spec.js';
import { bitsPerValue, blockBytes } from '../src/quant/quantizer.js';
import { Rng } from '../src/tensor/rng.js';
import { gemmBackend, gemmNaive, setGemmBackend } from '../src/tensor/gemm.js';
import { f16ToF32, f32ToF16 } from '../src/tensor/f16.js';

const relErr = (x: Float32Array, y: Float32Array) => {
  let e = 0, s = 0;
  for (let i = 0; i < x.length; i++) {
    e += (x[i] - y[i]) ** 2;
    s += x[i] ** 2;
  }
  return e / s;
};

test('bit packing round-trips every width exactly and uses ceil(count·bits/8) bytes', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 0, max: 300 }), fc.integer(), (bits, count, seed) => {
      const rng = new Rng(seed);
      const codes = Uint32Array.from({ length: count }, () => rng.int(2 ** bits));
      const packed = packBits(codes, count, bits);
      assert.equal(packed.length, packedBytes(count, bits));
      assert.deepEqual(unpackBits(packed, count, bits), codes);
    }),
    { numRuns: 300, seed: 1 },
  );
  assert.equal(packedBytes(2, 4), 1);
  assert.equal(packedBytes(2, 12), 3);
  assert.throws(() => packBits([16], 1, 4), /does not fit 4 bits/);
});

test('FWHT equals the product with the Sylvester Hadamard matrix and is its own inverse up to G', () => {
  for (const G of [1, 2, 4, 16, 128]) {
    const rng = new Rng(G);
    const x = rng.fillNormal(new Float32Array(G));
    const want = new Float32Array(G);
    gemmNaive(want, hadamardMatrix(G), x, G, G, 1, false, false);
    const y = x.slice();
    fwht(y, 0, G);
    for (let i = 0; i < G; i++) assert.ok(Math.abs(y[i] - want[i]) < 1e-4);
    fwht(y, 0, G);
    for (let i = 0; i < G; i++) assert.ok(Math.abs(y[i] / G - x[i]) < 1e-5);
  }
});

test('shipped grids: 1-D ones equal Lloyd–Max, all within 1% of the best known MSE', () => {
  // d = 1: Lloyd–Max values; d ≥ 2: the AQUA-KV reference grids' MSE (EDEN grids)
  const best: Record<string, number> = { '1x4': 0.1175, '1x8': 0.03454, '1x16': 0.009497, '2x16': 0.108, '2x64': 0.0297, '2x256': 0.0078, '4x256': 0.0967 };
  const shipped = listGrids().map((g) => `${g.d}x${g.n}`);
  for (const name of Object.keys(best)) assert.ok(shipped.includes(name), `grid ${name} is not shipped`);
  for (const [name, mse] of Object.entries(best)) {
    const [d, n] = name.split('x').map(Number);
    const f = readGridFile(d, n);
    const rng = new Rng(123);
    const measured = measureGridMse(loadGrid(d, n), 100_000 / d, () => rng.normal());
    assert.ok(f.mse <= mse * 1.01, `${name}: generator measured ${f.mse}, best known ${mse}`);
    assert.ok(measured <= mse * 1.03, `${name}: fresh-sample MSE ${measured}, best known ${mse}`);
  }
  assert.ok(Math.abs(lloydMax1d(8).mse - 0.03454) < 1e-4);
  // 2x8 (1.5 bits): no reference grid; above the rate–distortion bound 2^(−2·1.5) = 0.125 and well
  // below the product of the 1-bit and 2-bit Lloyd–Max quantizers ((0.3634 + 0.1175) / 2 = 0.2405)
  const mse28 = readGridFile(2, 8).mse;
  assert.ok(mse28 > 0.125 && mse28 < 0.9 * 0.2405, `2x8: ${mse28}`);
});

test('structured nearest-point search agrees with exhaustive search', () => {
  for (const [d, n] of [[1, 16], [2, 16], [2, 256], [4, 256]]) {
    const g = loadGrid(d, n);
    const rng = new Rng(d * 1000 + n);
    const y = new Float32Array(d);
    for (let s = 0; s < 20_000; s++) {
      for (let i = 0; i < d; i++) y[i] = rng.normal() * (s % 10 === 0 ? 3 : 1);
      const a = g.nearest(y, 0), b = g.searchAll(y, 0);
      if (a !== b) {
        // ties are allowed: both at the same distance
        const dist = (j: number) => Array.from(y).reduce((e, v, i) => e + (v - g.points[j * d + i]) ** 2, 0);
        assert.ok(Math.abs(dist(a) - dist(b)) < 1e-5, `${d}x${n}: ${a} vs ${b} at ${y}`);
      }
    }
  }
});

/** A 4-D grid's box table the plain way, box by box (what Grid's separable build must equal, entry for entry). */
function naiveBoxTable(points: Float32Array, n: number, lo: number, cellSize: number, cells: number): { start: Int32Array; items: Int32Array } {
  const start = new Int32Array(cells ** 4 + 1);
  const items: number[] = [];
  const minD = new Float64Array(n);
  for (let b = 0; b < cells ** 4; b++) {
    const low = [0, 0, 0, 0];
    for (let i = 3, r = b; i >= 0; i--, r = Math.floor(r / cells)) low[i] = lo + (r % cells) * cellSize;
    let bound = Infinity;
    for (let j = 0; j < n; j++) {
      let near = 0;
      let far = 0;
      for (let i = 0; i < 4; i++) {
        const x = points[4 * j + i], a = low[i], z = a + cellSize;
        const dn = Math.max(a - x, 0, x - z);
        const df = Math.max(Math.abs(x - a), Math.abs(x - z));
        near += dn * dn;
        far += df * df;
      }
      minD[j] = near;
      bound = Math.min(bound, far);
    }
    for (let j = 0; j < n; j++) if (minD[j] <= bound + 1e-9) items.push(j);
    start[b + 1] = items.length;
  }
  return { start, items: Int32Array.from(items) };
}

test('a 4-D grid\'s search table, built axis by axis, equals the table built box by box', () => {
  const rng = new Rng(44);
  const random = new Float32Array(4 * 64).map(() => rng.normal());
  for (const g of [loadGrid(4, 256), new Grid(4, 64, random)]) {
    const t = g.searchTable()!;
    const naive = naiveBoxTable(g.points, g.n, t.lo, t.cellSize, t.cells);
    assert.deepEqual(t.start, naive.start);
    assert.deepEqual(t.items, naive.items);
  }
});

test('HIGGS error on Gaussian data is the grid MSE; bits include fp16 scales', () => {
  for (const [d, n] of [[2, 16], [2, 64], [1, 16], [4, 256]]) {
    const C = 128;
    const q = HiggsQuantizer.fromGrid(d, n, C);
    const rng = new Rng(5);
    const x = rng.fillNormal(new Float32Array(300 * C));
    const block = q.quantize(x, 300);
    const y = new Float32Array(x.length);
    q.dequantize(block, y);
    const mse = readGridFile(d, n).mse;
    const err = relErr(x, y);
    assert.ok(err < mse * 1.1 && err > mse * 0.9, `${d}x${n}: relative error ${err}, grid MSE ${mse}`);
    assert.equal(blockBytes(block), 300 * (C * Math.log2(n) / d / 8) + 300 * 2);
    assert.ok(Math.abs(bitsPerValue(block) - (Math.log2(n) / d + 16 / C)) < 1e-9);
  }
});

test('HIGGS pads channels that are not a power of two, and handles 1 or thousands of tokens', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 200 }), fc.constantFrom(1, 2, 3000), fc.integer(), (C, rows, seed) => {
      const q = HiggsQuantizer.fromGrid(2, 256, C);
      assert.equal(q.groupSize, Math.max(defaultGroupSize(C), 2));
      const x = new Rng(seed).fillNormal(new Float32Array(rows * C));
      const y = new Float32Array(rows * C);
      q.dequantize(q.quantize(x, rows), y);
      // 4-bit grid: error ≈ 0.0078·(padded/C) of the energy; generous bound for tiny C
      assert.ok(relErr(x, y) < 0.1, `C=${C} rows=${rows}: ${relErr(x, y)}`);
    }),
    { numRuns: 25, seed: 3 },
  );
  const q = HiggsQuantizer.fromGrid(2, 16, 96, 32);
  assert.equal(q.groups, 3);
  assert.equal(parseQuantizer('higgs:2x16:g32', 96)!.spec, 'higgs:2x16:g32');
});

test('uniform quantization at every width and axis stays within half a step of the input', () => {
  for (const bits of [2, 3, 4, 8]) {
    for (const axis of ['token', 'channel'] as const) {
      for (const rows of [1, 37, 128]) {
        const C = 48;
        const q = new UniformQuantizer(bits, axis, 32, C);
        const x = new Rng(bits * 7 + rows).fillNormal(new Float32Array(rows * C));
        const block = q.quantize(x, rows);
        const y = new Float32Array(x.length);
        q.dequantize(block, y);
        // a group's step is (max − min)/(2^b − 1); fp16 rounding of scale and zero adds a little
        for (let i = 0; i < x.length; i++) {
          assert.ok(Math.abs(x[i] - y[i]) <= (8 / (2 ** bits - 1)) * 0.5 + 0.01, `${bits} ${axis}: ${x[i]} → ${y[i]}`);
        }
        const groups = axis === 'token' ? rows * 2 : Math.ceil(rows / 32) * C;
        assert.equal(blockBytes(block), Math.ceil((rows * C * bits) / 8) + groups * 4);
        assert.ok(relErr(x, y) < [0, 0, 0.2, 0.04, 0.01, 0, 0, 0, 0.0001][bits], `${bits} ${axis} rows=${rows}: ${relErr(x, y)}`);
      }
    }
  }
});

test('uniform quantization of constant groups is exact and codes use the stored scale', () => {
  const q = new UniformQuantizer(2, 'token', 4, 4);
  const x = Float32Array.of(0.5, 0.5, 0.5, 0.5);
  const y = new Float32Array(4);
  q.dequantize(q.quantize(x, 1), y);
  assert.deepEqual(Array.from(y), [0.5, 0.5, 0.5, 0.5]);
  const z = Float32Array.of(0, 1 / 3, 2 / 3, 1);
  q.dequantize(q.quantize(z, 1), y);
  const step = f16ToF32(f32ToF16(1 / 3));
  assert.deepEqual(Array.from(y), [0, step, 2 * step, 3 * step]);
});

test('the quantizer contract, for every kind (HIGGS grids, uniform, identity)', () => {
  // spec → [bound on relative squared error on Gaussian data, exact bits per value at C = 64 and 64 rows]
  const cases: Record<string, [number, number]> = {
    'higgs:1x4': [0.13, 2 + 16 / 64], 'higgs:2x16': [0.13, 2 + 16 / 64], 'higgs:2x256': [0.03, 4 + 16 / 64], 'higgs:4x256': [0.1, 2 + 16 / 64],
    'higgs:2x16:g32': [0.13, 2 + 32 / 64], 'uniform:2:channel:g32': [0.2, 2 + 32 / 32], 'uniform:4:token:g32': [0.01, 4 + 32 / 32],
    none: [0, 32],
  };
  const C = 64, rows = 64;
  const x = new Rng(17).fillNormal(new Float32Array(rows * C));
  for (const [spec, [maxErr, bits]] of Object.entries(cases)) {
    const q = parseQuantizer(spec, C);
    assert.equal(parseQuantizer(q.spec, C).spec, q.spec, `${spec}: its resolved spec parses back to itself`);
    const block = q.quantize(x, rows);
    assert.equal(block.rows, rows);
    assert.equal(block.cols, C);
    assert.deepEqual(q.quantize(x, rows), block, `${spec}: deterministic`);
    assert.ok(Math.abs(bitsPerValue(block) - bits) < 1e-12, `${spec}: ${bitsPerValue(block)} bits per value, expected ${bits}`);
    const y = new Float32Array(rows * C);
    q.dequantize(block, y);
    assert.ok(y.every(Number.isFinite), spec);
    assert.ok(relErr(x, y) <= maxErr, `${spec}: relative error ${relErr(x, y)} > ${maxErr}`);
    // the input is not modified, and the block does not alias it
    const x2 = x.slice();
    const b2 = q.quantize(x2, rows);
    x2.fill(0);
    q.dequantize(b2, y);
    assert.ok(relErr(x, y) <= maxErr, `${spec}: the block owns its data`);
  }
  assert.equal(relErr(x, (() => { const y = new Float32Array(rows * C); const q = new IdentityQuantizer(C); q.dequantize(q.quantize(x, rows), y); return y; })()), 0, 'identity is exact');
});

test('malformed input gives a clear error', () => {
  const h = HiggsQuantizer.fromGrid(2, 16, 8);
  const u = new UniformQuantizer(4, 'channel', 32, 8);
  for (const q of [h, u, new IdentityQuantizer(8)]) {
    assert.throws(() => q.quantize(Float32Array.of(1, NaN, 0, 0, 0, 0, 0, 0), 1), /non-finite value NaN at row 0, channel 1/);
    assert.throws(() => q.quantize(Float32Array.of(1, 2, 3, 4, 5, 6, 7, Infinity), 1), /non-finite value Infinity/);
    assert.throws(() => q.quantize(new Float32Array(0), 0), /empty batch/);
    assert.throws(() => q.quantize(new Float32Array(7), 1), /expected \[1, 8\]/);
  }
  assert.throws(() => parseQuantizer('higgs:3x7', 8), /no shipped grid with d=3, n=7/);
  assert.throws(() => parseQuantizer('uniform:5:token', 8), /bits must be one of 2, 3, 4, 8/);
  assert.throws(() => parseQuantizer('zip', 8), /unknown quantizer 'zip'/);
  assert.throws(() => new Grid(2, 3, new Float32Array(6)), /not a power of two/);
});

test('HIGGS dequantize through its byte table gives the bits of unpacking code by code, for every shipped grid', () => {
  for (const { d, n } of listGrids()) {
    for (const C of [128, 96]) {
      const fast = HiggsQuantizer.fromGrid(d, n, C);
      const plain = HiggsQuantizer.fromGrid(d, n, C);
      (plain as unknown as { table: null }).table = null; // the code-by-code path
      const x = new Rng(3).fillNormal(new Float32Array(37 * C));
      const block = fast.quantize(x, 37);
      const a = new Float32Array(37 * C);
      const b = new Float32Array(37 * C);
      fast.dequantize(block, a);
      plain.dequantize(block, b);
      assert.deepEqual(a, b, `${d}x${n} over ${C} channels`);
    }
  }
});

test('HIGGS dequantizeAdd equals dequantize then an f32 add, bit for bit, on blocks of every size, on both products', () => {
  const was = gemmBackend();
  try {
    for (const backend of ['ort', 'ts'] as const) {
      setGemmBackend(backend);
      for (const [d, n, C] of [[2, 256, 128], [2, 8, 128], [4, 256, 96]] as const) {
        const q = HiggsQuantizer.fromGrid(d, n, C);
        const rng = new Rng(d * n + C);
        const sizes = [128, 128, 37, 1, 64];
        const blocks = sizes.map((rows) => q.quantize(rng.fillNormal(new Float32Array(rows * C)), rows));
        const total = sizes.reduce((a, b) => a + b, 0);
        const base = rng.fillNormal(new Float32Array(total * C));
        const want = base.slice();
        let row = 0;
        for (const b of blocks) {
          const v = new Float32Array(b.rows * C);
          q.dequantize(b, v);
          for (let i = 0; i < v.length; i++) want[row * C + i] += v[i];
          row += b.rows;
        }
        const got = base.slice();
        row = 0;
        for (const b of blocks) {
          q.dequantizeAdd(b, got.subarray(row * C));
          row += b.rows;
        }
        assert.deepEqual(got, want, `${backend} ${d}x${n}, C = ${C}`);
      }
    }
  } finally {
    setGemmBackend(was);
  }
});

test('HIGGS in the WebAssembly kernels gives the codes, scales and decoded values of the JavaScript, bit for bit, on both products', () => {
  const rng = new Rng(7);
  /** Rows of several kinds: Gaussian at many scales, zero, a Hadamard pattern (coordinates far outside the bucket table after rotation), values near the f32 limit (the transform overflows to ∞, the scaled group to NaN). */
  const block = (rows: number, C: number, G: number) => {
    const x = new Float32Array(rows * C);
    for (let t = 0; t < rows; t++) {
      const row = x.subarray(t * C, (t + 1) * C);
      const kind = t % 7;
      if (kind === 0) row.fill(0);
      else if (kind === 1) for (let i = 0; i < C; i++) row[i] = i < G && (i & 5) % 2 ? -1 : 1; // mostly one Hadamard pattern
      else if (kind === 2) for (let i = 0; i < C; i++) row[i] = (i % 3 ? 3e38 : -3e38) * (t % 14 === 2 ? 1 : rng.next());
      else {
        const scale = [1e-30, 1, 3e4, 1e9][kind - 3];
        for (let i = 0; i < C; i++) row[i] = rng.normal() * scale;
      }
    }
    return x;
  };
  let kernelBlocks = 0;
  for (const spec of ['higgs:2x8', 'higgs:2x16', 'higgs:2x64', 'higgs:2x256', 'higgs:4x256', 'higgs:1x16']) {
    for (const [C, G] of [[128, 128], [96, 128], [64, 64], [40, 8], [512, 512]] as const) {
      const q = parseQuantizer(`${spec}:g${G}`, C) as HiggsQuantizer;
      for (const rows of [1, 7, CHUNK_ROWS + 45]) {
        const x = block(rows, C, G);
        const was = setHiggsKernels(false);
        const js = q.quantize(x, rows);
        setHiggsKernels(true);
        const wasm = q.quantize(x, rows);
        assert.deepEqual(wasm.codes, js.codes, `${spec} C=${C} G=${G} rows=${rows}: codes`);
        assert.deepEqual(wasm.scales, js.scales, `${spec} C=${C} G=${G} rows=${rows}: scales`);
        if (encodesWithKernels(q.grid, G)) kernelBlocks++;
        // decoding, written and added, through the native product and the butterflies
        const base = rng.fillNormal(new Float32Array(rows * C));
        for (const backend of ['ort', 'ts'] as const) {
          const before = gemmBackend();
          setGemmBackend(backend);
          const outs = [false, true].map((on) => {
            setHiggsKernels(on);
            const written = new Float32Array(rows * C).fill(7);
            q.dequantize(wasm, written);
            const added = base.slice();
            q.dequantizeAdd(wasm, added);
            return { written, added };
          });
          setGemmBackend(before);
          assert.deepEqual(outs[1].written, outs[0].written, `${spec} C=${C} G=${G} rows=${rows} ${backend}: dequantize`);
          assert.deepEqual(outs[1].added, outs[0].added, `${spec} C=${C} G=${G} rows=${rows} ${backend}: dequantizeAdd`);
        }
        setHiggsKernels(was);
      }
    }
  }
  assert.equal(kernelBlocks, 5 * 5 * 3, 'every 2-D and 4-D grid went through the kernels; 1-D grids stay in JavaScript');
});
