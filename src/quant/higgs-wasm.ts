/**
 * HIGGS through the WebAssembly kernels (tools/make-kernels.ts), the same arithmetic as
 * HiggsQuantizer's JavaScript in the same order and precision, so codes, scales and decoded values
 * are the same bit for bit (tests/quant.test.ts checks them against it):
 *  - encoding: `higgs_rotate` (group norms, Walsh–Hadamard transform, scaling) and
 *    `nearest_2d`/`nearest_4d` (the bucket-table searches), most of what a materialized cache pays
 *    for each block of 128 tokens it compresses;
 *  - decoding: `higgs_points` (codes → grid points, any width) and `scale_add` (scaled by the
 *    group norms, written or added to the output), around the inverse transform the caller runs
 *    (a matrix product or butterflies): what a compact cache does for every cached token each step.
 *
 * The kernels work in one private WebAssembly memory of this module's: each grid's points (and
 * bucket table) are copied there once, and blocks pass through a scratch region, CHUNK_ROWS
 * tokens at a time.
 */
import { f16Table } from '../tensor/f16.js';
import { align16, WasmArena } from '../tensor/wasm-arena.js';
import type { Grid } from './grid.js';
import type { QuantizedBlock } from './quantizer.js';

/** Tokens per kernel call: scratch stays bounded whatever the block's size. */
export const CHUNK_ROWS = 256;

interface GridTables {
  pts: number;
  nrm: number;
  start: number;
  items: number;
  lo: number;
  cellSize: number;
  cells: number;
}

let enabled = true;
let arena: WasmArena | null = null;
const tables = new Map<Grid, GridTables>();
const points = new Map<Grid, number>();
let scratch = { at: 0, bytes: 0 };

/** Turns the kernels on or off (tests compare them with the JavaScript); returns the previous setting. */
export function setHiggsKernels(on: boolean): boolean {
  const was = enabled;
  enabled = on;
  return was;
}

/** Whether the kernels are on (`setHiggsKernels`). */
export function higgsKernelsOn(): boolean {
  return enabled;
}

/** Whether blocks of this grid and group size are encoded by the kernels. */
export function encodesWithKernels(grid: Grid, groupSize: number): boolean {
  return enabled && (grid.d === 2 || grid.d === 4) && groupSize % 4 === 0 && grid.searchTable() !== null;
}

/** Whether blocks of this grid are decoded by the kernels (codes of up to 24 bits, as bit packing allows). */
export function decodesWithKernels(grid: Grid): boolean {
  return enabled && grid.bits <= 24;
}

function memory(): WasmArena {
  return (arena ??= new WasmArena(0, false));
}

function tablesOf(grid: Grid): GridTables {
  let t = tables.get(grid);
  if (t) return t;
  const a = memory();
  const table = grid.searchTable()!;
  const pts = a.alloc(grid.points.byteLength);
  const nrm = a.alloc(grid.norms.byteLength);
  const start = a.alloc(table.start.byteLength);
  const items = a.alloc(table.items.byteLength);
  a.f32(pts, grid.points.length).set(grid.points);
  a.f32(nrm, grid.norms.length).set(grid.norms);
  new Int32Array(a.memory.buffer, start, table.start.length).set(table.start);
  new Int32Array(a.memory.buffer, items, table.items.length).set(table.items);
  t = { pts, nrm, start, items, lo: table.lo, cellSize: table.cellSize, cells: table.cells };
  tables.set(grid, t);
  return t;
}

function pointsOf(grid: Grid): number {
  let at = points.get(grid);
  if (at === undefined) {
    at = memory().alloc(grid.points.byteLength);
    memory().f32(at, grid.points.length).set(grid.points);
    points.set(grid, at);
  }
  return at;
}

/** Byte offset of at least `bytes` of scratch (one region, grown geometrically: the arena never frees). */
function scratchAt(bytes: number): number {
  if (scratch.bytes < bytes) {
    const size = Math.max(bytes, 2 * scratch.bytes);
    scratch = { at: memory().alloc(size), bytes: size };
  }
  return scratch.at;
}

/**
 * Encodes `rows` tokens of x [rows, C]: each token zero-padded to P (a multiple of G), then per
 * group its norm (to `norms` [rows, P/G], f64) and, per d-subvector of the rotated and scaled
 * group, the index of its nearest grid point, packed at the grid's bits into `codes` (rows of
 * ceil(P/d · bits / 8) bytes, as packBits writes them).
 */
export function encodeBlock(grid: Grid, x: Float32Array, rows: number, C: number, P: number, G: number, norms: Float64Array, codes: Uint8Array): void {
  const t = tablesOf(grid);
  const d = grid.d;
  const perRow = P / d;
  const rowBytes = Math.ceil((perRow * grid.bits) / 8);
  const chunk = Math.min(rows, CHUNK_ROWS);
  const yBytes = align16(chunk * P * 4);
  const normBytes = align16(chunk * (P / G) * 8);
  const idxBytes = align16(chunk * perRow * 4);
  const at = scratchAt(yBytes + normBytes + idxBytes + chunk * rowBytes);
  const a = memory(); // views after the last allocation: growing the memory detaches older ones
  const k = a.kernels;
  const yAt = at;
  const normAt = at + yBytes;
  const idxAt = normAt + normBytes;
  const codesAt = idxAt + idxBytes;
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const n = Math.min(chunk, rows - r0);
    const y = a.f32(yAt, n * P);
    if (P === C) y.set(x.subarray(r0 * C, (r0 + n) * C));
    else {
      y.fill(0);
      for (let r = 0; r < n; r++) y.set(x.subarray((r0 + r) * C, (r0 + r + 1) * C), r * P);
    }
    k.higgs_rotate(yAt, normAt, n, P, G);
    (d === 2 ? k.nearest_2d : k.nearest_4d)(yAt, n * perRow, idxAt, t.pts, t.nrm, t.start, t.items, t.lo, t.cellSize, t.cells, grid.n);
    k.pack_codes(idxAt, n, perRow, grid.bits, codesAt, rowBytes);
    norms.set(new Float64Array(a.memory.buffer, normAt, n * (P / G)), r0 * (P / G));
    codes.set(a.bytes(codesAt, n * rowBytes), r0 * rowBytes);
  }
}

/**
 * Decodes a block into out [rows, C] (or adds it, `add`): grid points of the codes [rows, P],
 * `inverse` (which transforms `count` groups of G of x, returning where the result is: x itself
 * or y), then each group scaled by its stored norm / G.
 */
export function decodeBlock(
  grid: Grid, block: QuantizedBlock, C: number, P: number, G: number, out: Float32Array, add: boolean,
  inverse: (x: Float32Array, y: Float32Array, count: number) => Float32Array,
): void {
  const rows = block.rows;
  const groups = P / G;
  const perRow = P / grid.d;
  const rowBytes = Math.ceil((perRow * grid.bits) / 8);
  const pts = pointsOf(grid);
  const chunk = Math.min(rows, CHUNK_ROWS);
  const codeBytes = align16(chunk * rowBytes);
  const valueBytes = align16(chunk * P * 4);
  const scaleBytes = align16(chunk * groups * 4);
  const at = scratchAt(codeBytes + 2 * valueBytes + scaleBytes + chunk * C * 4);
  const a = memory(); // views after the last allocation: growing the memory detaches older ones
  const k = a.kernels;
  const xAt = at + codeBytes;
  const yAt = xAt + valueBytes;
  const scaleAt = yAt + valueBytes;
  const outAt = scaleAt + scaleBytes;
  const f16 = f16Table();
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const n = Math.min(chunk, rows - r0);
    a.bytes(at, n * rowBytes).set(block.codes.subarray(r0 * rowBytes, (r0 + n) * rowBytes));
    k.higgs_points(at, n, rowBytes, perRow, grid.bits, grid.d, pts, xAt);
    const y = inverse(a.f32(xAt, n * P), a.f32(yAt, n * P), n * groups);
    const scales = a.f32(scaleAt, n * groups);
    for (let i = 0; i < n * groups; i++) scales[i] = f16[block.scales[r0 * groups + i]] / G;
    const o = a.f32(outAt, n * C);
    if (add) o.set(out.subarray(r0 * C, (r0 + n) * C));
    k.scale_add(y.byteOffset, scaleAt, outAt, n, C, P, G, add ? 1 : 0);
    out.set(o, r0 * C);
  }
}
