import { test } from 'node:test';
import assert from 'node:assert/strict';
import { calibrate, CompressedCache, createCache, loadModel, parseMethod } from '../src/index.js';
import { constsBytes, FUSED_BLOCK_ROWS, FusedMemory, FusedPart, rowSpans, type FusedLayout } from '../src/kv/fused-rebuild.js';
import { mostRowsWithin } from '../src/kv/chunk-store.js';
import { PAGE } from '../src/tensor/wasm-arena.js';
import { LinearPredictor } from '../src/kv/linear-predictor.js';
import { Rope } from '../src/model/rope.js';
import { ropeHeads, scatterHeads } from '../src/kv/head-rows.js';
import { hadamardMatrix } from '../src/quant/hadamard.js';
import { HiggsQuantizer } from '../src/quant/higgs.js';
import { setHiggsKernels } from '../src/quant/higgs-wasm.js';
import { f16Table } from '../src/tensor/f16.js';
import { gemmBackend, gemmRowwise, ortAvailable, rowwiseOnEveryCoreFrom, setGemmBackend } from '../src/tensor/gemm.js';
import { Rng } from '../src/tensor/rng.js';
import { PARALLEL_MIN_MACS, splitKeepsRows } from '../src/platform/ort-gemm.js';
import { availableParallelism } from 'node:os';
import { makeTinyModel, randomWordsText } from './fixture.js';

const GRIDS: [number, number][] = [[1, 16], [2, 8], [2, 16], [2, 64], [2, 256], [4, 256]];

test('points_scaled writes each token\'s grid points times its scale plus u (the bias through the transform), bit for bit as f32 arithmetic, for every code width', () => {
  const rng = new Rng(11);
  const f16 = f16Table();
  // 128 channels: every code in the kernels' loops of four codes (or four pairs); 4 and 8: rows
  // that end in the code-at-a-time loop, or consist of it
  for (const [C, [d, n]] of [128, 8, 4].flatMap((C) => GRIDS.map((g) => [C, g] as const))) {
    const q = HiggsQuantizer.fromGrid(d, n, C);
    const P = q.paddedCols;
    const bias = rng.fillNormal(new Float32Array(C));
    const part = FusedPart.of(C, q, new LinearPredictor(rng.fillNormal(new Float32Array(C * C)), bias, C, C))!;
    const H = hadamardMatrix(P);
    for (let p = 0; p < P; p++) {
      let s = 0;
      for (let o = 0; o < C; o++) s += H[p * P + o] * bias[o];
      assert.ok(Object.is(part.u[p], Math.fround(s)), 'u = H·b');
    }
    const rows = 37;
    const block = q.quantize(rng.fillNormal(new Float32Array(rows * C)), rows);
    const m = new FusedMemory();
    const ld = C + P + 8; // the points land at column inDim = C of rows of ld
    m.layout({ carryRows: 0, blockRows: rows, kMax: ld, C, codeBytes: part.codeBytes, consts: constsBytes([part]), view: null, tables: 0, stageRows: 0 });
    m.f32(m.at.a, rows * ld).fill(7);
    // rows [0, 12) and [12, rows) as two pieces: what a span that ends inside a block passes
    m.points(part, [{ block, from: 0, to: 12 }, { block, from: 12, to: rows }], m.at.a, ld);
    const got = m.f32(m.at.a, rows * ld);
    const perRow = P / d;
    const idx = new Uint32Array(perRow);
    for (let t = 0; t < rows; t++) {
      // the twin: this row's codes unpacked one by one (least significant bits first, as bitpack packs them)
      const bytes = block.codes.subarray(t * part.codeBytes, (t + 1) * part.codeBytes);
      let acc = 0, held = 0, b = 0;
      for (let s = 0; s < perRow; s++) {
        while (held < q.grid.bits) {
          acc += bytes[b++] * 2 ** held;
          held += 8;
        }
        idx[s] = acc % 2 ** q.grid.bits;
        acc = Math.floor(acc / 2 ** q.grid.bits);
        held -= q.grid.bits;
      }
      const scale = f16[block.scales[t]];
      for (let c = 0; c < P; c++) {
        const want = Math.fround(Math.fround(q.grid.points[idx[Math.floor(c / d)] * d + (c % d)] * scale) + part.u[c]);
        assert.ok(Object.is(got[t * ld + C + c], want), `${d}x${n}, C ${C}: row ${t} col ${c}: ${got[t * ld + C + c]} vs ${want}`);
      }
      for (let c = 0; c < ld; c++) if (c < C || c >= C + P) assert.equal(got[t * ld + c], 7, 'columns outside the points are untouched');
    }
  }
});

test('fan_rows copies rows to two strided places and, head by head, into a view, rotated there exactly as RoPE\'s JavaScript rotates; gather_rows reads a view back', () => {
  const rng = new Rng(12);
  const heads = 2, hd = 64, C = heads * hd, rows = 21, S = 40, at0 = 5;
  const rope = new Rope(hd, 10000, null);
  const m = new FusedMemory();
  // the source rows in the carry's first half, the first copy into its second (the output's region
  // is the table rows' too)
  m.layout({ carryRows: 2 * rows, blockRows: rows, kMax: 3 * C, C, codeBytes: 64, consts: 0, view: { heads, T: S, hd, scratchBytes: 64 }, tables: rows * (hd / 2), stageRows: 0 });
  const tables = rope.tables(100 + rows);
  m.holdTables(tables.cos, tables.sin, 100 * (hd / 2), rows * (hd / 2)); // positions [100, 100 + rows)
  const x = rng.fillNormal(new Float32Array(rows * C)).map((v) => v * 30);
  m.f32(m.at.carry, rows * C).set(x);
  const k = m.kernels;
  const pos0 = 100; // row t has position 100 + t
  const { at } = m;
  const copy = at.carry + rows * C * 4;
  k.fan_rows(at.carry, rows, C, hd, copy, C, at.a + 8, 3 * C, at.kview + at0 * hd * 4, S, at.cos, at.sin);
  k.fan_rows(at.carry, rows, C, hd, 0, 0, 0, 0, at.vview + at0 * hd * 4, S, 0, 0);
  const carry = m.f32(copy, rows * C);
  const a = m.f32(at.a, rows * 3 * C);
  const rotated = x.slice();
  rope.apply(rotated, rows, heads, pos0);
  const kview = m.f32(at.kview, heads * S * hd);
  const vview = m.f32(at.vview, heads * S * hd);
  for (let t = 0; t < rows; t++) {
    for (let c = 0; c < C; c++) {
      assert.ok(Object.is(carry[t * C + c], x[t * C + c]));
      assert.ok(Object.is(a[t * 3 * C + 2 + c], x[t * C + c]), 'the second copy lands at its offset, rows of its stride');
      const h = Math.floor(c / hd);
      assert.ok(Object.is(kview[(h * S + at0 + t) * hd + (c % hd)], rotated[t * C + c]), `row ${t} channel ${c}: rotated as rope.apply`);
      assert.ok(Object.is(vview[(h * S + at0 + t) * hd + (c % hd)], x[t * C + c]));
    }
  }
  // gather_rows reads the view back into rows: at column C of rows of 3C
  k.gather_rows(at.vview + at0 * hd * 4, S, rows, C, hd, at.a + C * 4, 3 * C);
  const back = m.f32(at.a, rows * 3 * C);
  for (let t = 0; t < rows; t++) for (let c = 0; c < C; c++) assert.ok(Object.is(back[t * 3 * C + C + c], x[t * C + c]), `gathered row ${t} channel ${c}`);
});

test('fanIn sends a JavaScript array\'s rows into a view in pieces of the staged rows, rotated from a position as the JavaScript scatter and rotation do, or copied', () => {
  const rng = new Rng(14);
  const heads = 2, hd = 64, C = heads * hd, S = 60, first = 7, from = 300;
  const rope = new Rope(hd, 10000, null);
  const m = new FusedMemory();
  // 5 rows a piece: 23 rows go as 5 pieces, the last of 3
  m.layout({ carryRows: 0, blockRows: 1, kMax: C, C, codeBytes: 8, consts: 0, view: { heads, T: S, hd, scratchBytes: 64 }, tables: 5 * (hd / 2), stageRows: 5 });
  const rows = 23;
  const x = rng.fillNormal(new Float32Array(rows * C)).map((v) => v * 30);
  const { at } = m;
  m.f32(at.kview, heads * S * hd).fill(9);
  m.f32(at.vview, heads * S * hd).fill(9);
  m.fanIn(x, rows, C, hd, at.kview, S, first, { ...rope.tables(from + rows), from });
  m.fanIn(x, rows, C, hd, at.vview, S, first, null);
  // the JavaScript twins: scatterHeads, then ropeHeads over the keys' rows
  const wantK = new Float32Array(heads * S * hd).fill(9);
  const wantV = new Float32Array(heads * S * hd).fill(9);
  scatterHeads(wantK, S, first, x, rows, heads, hd);
  ropeHeads(rope, wantK, S, first, rows, heads, from);
  scatterHeads(wantV, S, first, x, rows, heads, hd);
  const gotK = m.f32(at.kview, heads * S * hd);
  const gotV = m.f32(at.vview, heads * S * hd);
  for (let i = 0; i < wantK.length; i++) {
    assert.ok(Object.is(gotK[i], wantK[i]), `keys' view at ${i}: ${gotK[i]} vs ${wantK[i]}`);
    assert.ok(Object.is(gotV[i], wantV[i]), `values' view at ${i}: ${gotV[i]} vs ${wantV[i]}`);
  }
  // no rows to stage: refused, not a silent no-op
  m.layout({ carryRows: 0, blockRows: 1, kMax: C, C, codeBytes: 8, consts: 0, view: { heads, T: S, hd, scratchBytes: 64 }, tables: 0, stageRows: 0 });
  assert.throws(() => m.fanIn(x, 1, C, hd, m.at.kview, S, 0, null), /no rows to stage/);
});

test('a fused rebuild (one product of [previous | scaled points], bias through the transform) equals the prediction plus the decoded residual', () => {
  const rng = new Rng(13);
  const C = 128;
  const before = gemmBackend();
  for (const backend of ortAvailable() ? (['ort', 'ts'] as const) : (['ts'] as const)) {
    setGemmBackend(backend);
    for (const [d, n] of [[2, 16], [4, 256]] as const) {
      const q = HiggsQuantizer.fromGrid(d, n, C);
      const W = rng.fillNormal(new Float32Array(C * 2 * C)).map((v) => v / 16);
      const bias = rng.fillNormal(new Float32Array(C));
      const pred = new LinearPredictor(W, bias, 2 * C, C);
      const part = FusedPart.of(C, q, pred)!;
      const rows = 50;
      const x1 = rng.fillNormal(new Float32Array(rows * C));
      const x2 = rng.fillNormal(new Float32Array(rows * C));
      const blocks = [q.quantize(rng.fillNormal(new Float32Array(30 * C)), 30), q.quantize(rng.fillNormal(new Float32Array(20 * C)), 20)];
      const got = new Float32Array(rows * C);
      part.rebuild([x1, x2], blocks, rows, got);
      // the unfused arithmetic: prediction, then each block's residual added
      const want = new Float32Array(rows * C);
      pred.applySplit(want, x1, x2, C, rows, new Float32Array(rows * C));
      q.dequantizeAdd(blocks[0], want);
      q.dequantizeAdd(blocks[1], want.subarray(30 * C));
      let worst = 0;
      for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i])));
      assert.ok(worst < 2e-5, `${backend} ${d}x${n}: worst relative difference ${worst}`);
      assert.equal(part.active, backend === 'ort', 'the fused form serves on the native product only');
    }
  }
  setGemmBackend(before);
  const was = setHiggsKernels(false);
  assert.equal(FusedPart.of(C, HiggsQuantizer.fromGrid(2, 16, C), null)!.active, false, 'nor without the HIGGS kernels');
  setHiggsKernels(was);
  assert.equal(FusedPart.of(C, HiggsQuantizer.fromGrid(2, 16, C, 64), null), null, 'two groups per token: not fused');
});

test('a rebuild of more tokens than one product takes (a restored cache) gives each block the bits it gets alone', () => {
  const rng = new Rng(15);
  const C = 128;
  const q = HiggsQuantizer.fromGrid(2, 8, C);
  const pred = new LinearPredictor(rng.fillNormal(new Float32Array(C * 2 * C)).map((v) => v / 16), rng.fillNormal(new Float32Array(C)), 2 * C, C);
  const part = FusedPart.of(C, q, pred)!;
  const sizes = Array.from({ length: Math.ceil((FUSED_BLOCK_ROWS * 1.5) / 128) }, (_, i) => (i === 0 ? 124 : 128));
  const n = sizes.reduce((s, x) => s + x, 0);
  const blocks = sizes.map((rows) => q.quantize(rng.fillNormal(new Float32Array(rows * C)), rows));
  const x1 = rng.fillNormal(new Float32Array(n * C));
  const x2 = rng.fillNormal(new Float32Array(n * C));
  const all = new Float32Array(n * C);
  part.rebuild([x1, x2], blocks, n, all);
  let row = 0;
  for (const b of blocks) {
    const alone = new Float32Array(b.rows * C);
    part.rebuild([x1.subarray(row * C), x2.subarray(row * C)], [b], b.rows, alone);
    assert.deepEqual(all.subarray(row * C, (row + b.rows) * C), alone, `block at row ${row}`);
    row += b.rows;
  }
  assert.ok(n > FUSED_BLOCK_ROWS, 'more rows than one product takes');
});

test('gemmRowwise: each row\'s result is independent of the rows beside it, also where a product has fewer rows than columns', () => {
  assert.equal(splitKeepsRows(124, 256, 128, 2), false, 'panels of 64 columns, K summed in blocks of 256');
  assert.equal(splitKeepsRows(128, 256, 128, 2), true, 'rows split');
  assert.equal(splitKeepsRows(124, 128, 128, 2), true, 'K within one block');
  assert.equal(splitKeepsRows(128, 1536, 512, 2), true, 'panels of 256');
  assert.equal(splitKeepsRows(128, 1536, 512, 16), false, 'panels of 32');
  // the fewest rows a product takes on every core: rows split (m ≥ n) and the thread policy's size
  const cores = ortAvailable() && availableParallelism() > 1;
  assert.equal(rowwiseOnEveryCoreFrom(256, 128), cores ? 128 : Infinity, 'keys-shaped: rows must split');
  assert.equal(rowwiseOnEveryCoreFrom(128, 128), cores ? Math.ceil(PARALLEL_MIN_MACS / (128 * 128)) : Infinity, 'K within one block: the policy\'s size alone');
  const rng = new Rng(14);
  // n = 128 (this model's C) and n = 512 (a 1B model's), where MLAS splits columns in panels of 64 and 256
  for (const [k, n] of [[128, 128], [256, 128], [384, 128], [1536, 512]]) {
    const W = rng.fillNormal(new Float32Array(n * k));
    const A = rng.fillNormal(new Float32Array(1000 * k));
    const all = new Float32Array(1000 * n);
    gemmRowwise(all, A, W, 1000, k, n, true);
    // fewer rows than columns: MLAS would split columns across threads and sum K in longer blocks
    for (const [start, rows] of [[0, 1], [3, 2], [10, 17], [100, 124], [300, 128], [500, 500]]) {
      const part = new Float32Array(rows * n);
      gemmRowwise(part, A.subarray(start * k), W, rows, k, n, true);
      assert.deepEqual(part, all.subarray(start * n, (start + rows) * n), `[·, ${k}]·[${k}, ${n}]: rows [${start}, ${start + rows})`);
    }
  }
});

test('compact and materialized caches agree bit for bit over several rebuild spans and products on both cores, compact within two layers\' keys and values', () => {
  const longest = FUSED_BLOCK_ROWS * 2 + 200;
  const wide = loadModel(makeTinyModel({ layers: 3, hidden: 64, heads: 4, kvHeads: 2, headDim: 64, maxPositions: longest + 16 }));
  const AQUA = 'aquakv[q=higgs:2x8,first=higgs:2x256,k1=higgs:4x256,v2=higgs:2x64]';
  const p = calibrate(wide.model, randomWordsText(3000, 9), wide.tokenizer, { method: parseMethod(AQUA), samples: 8, seqLen: 128 }).set;
  const V = wide.model.config.vocabSize;
  // 1 400 tokens: the bound leaves room for spans of ~280 rows; 2 248: ~450
  for (const tokensN of [1400, longest]) {
    const tokens = Array.from({ length: tokensN + 6 }, (_, i) => (i * 37) % 300);
    const run = (mode: 'materialized' | 'compact') => {
      const cache = createCache(wide.model, parseMethod(AQUA), p, { mode }) as CompressedCache;
      wide.model.forward(tokens.slice(0, tokensN), cache, { logits: 'none' });
      const out = new Float32Array(6 * V);
      for (let i = 0; i < 6; i++) out.set(wide.model.forward([tokens[tokensN + i]], cache, { logits: 'last' }), i * V);
      return { out, cache };
    };
    const compact = run('compact');
    const materialized = run('materialized');
    assert.deepEqual(compact.out, materialized.out, `${tokensN} tokens`);
    if (ortAvailable()) {
      const spans = compact.cache.rebuildSpans();
      assert.equal(spans.reduce((s, n) => s + n, 0), compact.cache.compressedTokens, 'the spans cover every compressed token');
      assert.ok(spans.length > 2 && Math.max(...spans) < FUSED_BLOCK_ROWS, `several spans, shorter than the most a product takes: ${spans.join(', ')}`);
      const least = rowwiseOnEveryCoreFrom(2 * wide.model.config.kvDim, wide.model.config.kvDim);
      if (Number.isFinite(least)) assert.ok(Math.min(...spans) >= least, `spans of ${spans.join(', ')}: none shorter than keeps a product on every core (${least})`);
    }
    const mem = compact.cache.memory();
    const twoLayers = 2 * compact.cache.length * wide.model.config.kvDim * 4 * 2; // two layers' keys and values in f32
    assert.ok(mem.components.working <= twoLayers, `${tokensN} tokens: compact scratch ${mem.components.working} bytes, two layers' keys and values ${twoLayers}`);
  }
});

test('mostRowsWithin stages as many sink and buffer rows as a layout without spans can hold within the bound, at least one', () => {
  const C = 128, hd = 64, T = 101;
  const layoutFor = (stageRows: number): FusedLayout => ({
    carryRows: 0, blockRows: 1, kMax: 3 * C, C, codeBytes: 64, consts: 4096,
    view: { heads: 2, T, hd, scratchBytes: 4 * (hd + T + 4) * 4 }, tables: Math.max(1, stageRows) * (hd / 2), stageRows,
  });
  const pages = (rows: number) => Math.ceil(FusedMemory.bytesFor(layoutFor(rows)) / PAGE) * PAGE;
  // room for all: all of them
  assert.equal(mostRowsWithin(pages(100), 1, 100, layoutFor), 100);
  // no room at all: one row, which takes no more than staging nothing
  assert.equal(pages(1), pages(0));
  assert.equal(mostRowsWithin(0, 1, 100, layoutFor), 1);
  // in between: the most that fit in whole pages, one more would not
  assert.ok(pages(100) > pages(1), 'the test needs 100 rows to take more pages than 1');
  for (const bound of [pages(1), pages(1) + PAGE, pages(1) + 2 * PAGE]) {
    const got = mostRowsWithin(bound, 1, 100, layoutFor);
    assert.ok(got >= 1 && pages(got) <= bound && (got === 100 || pages(got + 1) > bound), `${got} rows staged within ${bound} bytes`);
  }
});

test('rowSpans cuts blocks laid end to end into near-equal spans of at most the limit (at least `least`), each row once', () => {
  for (const [sizes, limit, least] of [[[124, 128, 128, 128], 100, 1], [[124, 128, 128], 1024, 1], [[5, 0, 7, 128], 33, 1], [[128], 1, 1], [[124, 128, 128, 128], 100, 128], [[124, 128], 64, 128], [[50], 10, 128]] as [number[], number, number][]) {
    const spans = rowSpans(sizes, limit, least);
    const total = sizes.reduce((s, n) => s + n, 0);
    assert.equal(spans.length, Math.max(1, Math.min(Math.ceil(total / limit), Math.floor(total / least))));
    if (spans.length > 1) assert.ok(spans.every((b) => b.rows >= least), `spans of ${spans.map((b) => b.rows).join(', ')}: none under ${least}`);
    const seen = sizes.map((n) => new Uint8Array(n));
    let row = 0;
    for (const span of spans) {
      assert.equal(span.row, row);
      assert.ok((span.rows <= limit || least > limit || spans.length === 1) && span.rows >= Math.floor(total / spans.length), `span of ${span.rows} rows, limit ${limit}`);
      assert.equal(span.pieces.reduce((s, q) => s + q.to - q.from, 0), span.rows);
      for (const q of span.pieces) for (let r = q.from; r < q.to; r++) seen[q.index][r]++;
      row += span.rows;
    }
    assert.ok(seen.every((b) => b.every((x) => x === 1)), 'every row of every block in exactly one span, in order');
  }
});

test('a compact cache whose backend changes between steps rebuilds the old way, then the fused way again (its memory laid out anew)', () => {
  if (!ortAvailable()) {
    assert.equal(gemmBackend(), 'ts', 'without the native product nothing is fused');
    return;
  }
  const wide = loadModel(makeTinyModel({ layers: 3, hidden: 64, heads: 4, kvHeads: 2, headDim: 64, maxPositions: 256 }));
  const AQUA = 'aquakv[q=higgs:2x16,first=higgs:2x256]';
  const p = calibrate(wide.model, randomWordsText(3000, 9), wide.tokenizer, { method: parseMethod(AQUA), samples: 8, seqLen: 128 }).set;
  const tokens = Array.from({ length: 210 }, (_, i) => (i * 53) % 300);
  const run = (mode: 'materialized' | 'compact') => {
    const cache = createCache(wide.model, parseMethod(AQUA), p, { mode, buffer: 128 });
    wide.model.forward(tokens.slice(0, 200), cache, { logits: 'none' });
    wide.model.forward([tokens[200]], cache, { logits: 'last' }); // the fused memory laid out for the chunk held
    setGemmBackend('ts'); // steps that compress nothing (positions 128–255 fill the second block)
    wide.model.forward([tokens[201]], cache, { logits: 'last' });
    setGemmBackend('ort');
    return wide.model.forward([tokens[202]], cache, { logits: 'last' });
  };
  // the step under the portable product rounds differently in each mode (compact rebuilds there
  // the old way, materialized reads what it compressed), and that token's keys stay in the buffer:
  // the two agree to rounding, not bit for bit
  const compact = run('compact');
  const materialized = run('materialized');
  let worst = 0;
  for (let i = 0; i < compact.length; i++) worst = Math.max(worst, Math.abs(compact[i] - materialized[i]) / (1 + Math.abs(materialized[i])));
  assert.ok(worst < 1e-4, `worst relative difference ${worst}`);
});
