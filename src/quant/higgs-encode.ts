/**
 * HIGGS encoding (group norms, Walsh–Hadamard transform, scaling, nearest grid points) through the
 * WebAssembly kernels `higgs_rotate` and `nearest_2d`/`nearest_4d` (tools/make-kernels.ts). They do
 * the operations of HiggsQuantizer's JavaScript in the same order and precision, so codes and
 * scales are the same bit for bit (tests/quant.test.ts checks them against it). Encoding is most
 * of what a materialized cache pays for each block of 128 tokens it compresses.
 *
 * The kernels work in one private WebAssembly memory of this module's: each grid's points, norms
 * and bucket table are copied there once, and blocks pass through a scratch region, ENCODE_ROWS
 * tokens at a time.
 */
import { align16, WasmArena } from '../tensor/wasm-arena.js';
import type { Grid } from './grid.js';

/** Tokens per kernel call: scratch stays bounded whatever the block's size. */
export const ENCODE_ROWS = 256;

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
let scratch = { at: 0, bytes: 0 };

/** Turns the kernels on or off (tests compare them with the JavaScript); returns the previous setting. */
export function setEncodeKernels(on: boolean): boolean {
  const was = enabled;
  enabled = on;
  return was;
}

/** Whether blocks of this grid and group size are encoded by the kernels. */
export function encodesWithKernels(grid: Grid, groupSize: number): boolean {
  return enabled && (grid.d === 2 || grid.d === 4) && groupSize % 4 === 0 && grid.searchTable() !== null;
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
 * group, the index of its nearest grid point (to `idx` [rows, P/d]).
 */
export function encodeBlock(grid: Grid, x: Float32Array, rows: number, C: number, P: number, G: number, norms: Float64Array, idx: Uint32Array): void {
  const t = tablesOf(grid);
  const d = grid.d;
  const chunk = Math.min(rows, ENCODE_ROWS);
  const yBytes = align16(chunk * P * 4);
  const normBytes = align16(chunk * (P / G) * 8);
  const at = scratchAt(yBytes + normBytes + chunk * (P / d) * 4);
  const a = memory(); // views after the last allocation: growing the memory detaches older ones
  const k = a.kernels;
  const yAt = at;
  const normAt = at + yBytes;
  const idxAt = normAt + normBytes;
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const n = Math.min(chunk, rows - r0);
    const y = a.f32(yAt, n * P);
    if (P === C) y.set(x.subarray(r0 * C, (r0 + n) * C));
    else {
      y.fill(0);
      for (let r = 0; r < n; r++) y.set(x.subarray((r0 + r) * C, (r0 + r + 1) * C), r * P);
    }
    k.higgs_rotate(yAt, normAt, n, P, G);
    const count = (n * P) / d;
    (d === 2 ? k.nearest_2d : k.nearest_4d)(yAt, count, idxAt, t.pts, t.nrm, t.start, t.items, t.lo, t.cellSize, t.cells, grid.n);
    norms.set(new Float64Array(a.memory.buffer, normAt, n * (P / G)), r0 * (P / G));
    idx.set(new Uint32Array(a.memory.buffer, idxAt, count), (r0 * P) / d);
  }
}
