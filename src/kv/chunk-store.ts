/**
 * How a compressed cache serves attention's reads of its compressed chunks. Two stores, the same
 * attention inputs bit for bit:
 *  - `MaterializedStore`: each chunk is rebuilt once, when compressed, and kept in f32 beside the
 *    compressed form (fast decode; the compressed form is what `stored` counts);
 *  - `CompactStore`: nothing is kept rebuilt; at each layer of each step every chunk is rebuilt
 *    from its codes and the previous layer's rebuild (memory follows the compressed size, decode
 *    pays ≈3·C² multiply-adds per cached token per layer).
 */
import type { QuantizedBlock } from '../quant/quantizer.js';
import type { Rope } from '../model/rope.js';
import type { LayerView } from '../model/kv-cache.js';
import type { Workspace } from '../tensor/workspace.js';
import type { CompressedLayers, LayerCodec } from './layer-codec.js';
import { constsBytes, FUSED_BLOCK_ROWS, FusedMemory, rowSpans, type FusedLayout, type FusedPart, type RowSpan } from './fused-rebuild.js';
import { PAGE } from '../tensor/wasm-arena.js';
import { HeadRows, ropeHeads, scatterHeads } from './head-rows.js';
import { gemmRowwise, rowwiseOnEveryCoreFrom } from '../tensor/gemm.js';
import type { RowBuffer } from './row-buffer.js';

/** Tokens [start, start + n) compressed together: one stored block per layer for keys and for values. */
export interface Chunk {
  start: number;
  n: number;
  keys: QuantizedBlock[]; // [L]
  values: QuantizedBlock[]; // [L]
}

/** The regions of a compressed cache, in position order: sinks, stored chunks, buffer. */
export interface CacheRegions {
  sinkK: RowBuffer[]; // [L] of [P, C], rotated
  sinkV: RowBuffer[];
  chunks: Chunk[]; // compressed in earlier steps
  bufK: RowBuffer[]; // [L] of [rows, C], before RoPE (after it when keys are quantized rotated)
  bufV: RowBuffer[];
  bufStart: number; // position of the buffer's first token
}

/** What both stores know: the shape, the rotation, and where keys are stored. */
export interface StoreContext {
  nLayers: number;
  C: number;
  nKvHeads: number;
  nHeads: number;
  rope: Rope;
  keysAfterRope: boolean;
}

export interface ChunkStore {
  /**
   * Attention's view of layer `layer` in the step whose n new tokens (keys before RoPE, values,
   * [n, C]; first position `start`) have just joined the sinks or the buffer.
   */
  view(layer: number, k: Float32Array, v: Float32Array, n: number, start: number): LayerView;
  /** Whether `compressed` reads the reconstruction (rows whose codes were made elsewhere are then rebuilt for it). */
  readonly needsRebuild: boolean;
  /**
   * Rows [start, start + rows) of layer `layer` were compressed this step (a chunk, or a piece of
   * one); recK, recV [rows, C]: their reconstruction (keys as stored).
   */
  compressed(layer: number, start: number, rows: number, recK: Float32Array, recV: Float32Array): void;
  /**
   * Rows [start, start + rows) of every layer were rebuilt ahead of their chunk (on the background
   * thread: rebuilt[l] holds layer l's, [rows, C] each, keys as stored): kept `ahead` rows further
   * on, where nothing is held yet, until `commitStaged`. False where the store keeps none (nothing
   * was written): the rows are then rebuilt when their chunk fills.
   */
  stage(start: number, rows: number, ahead: number, rebuilt: CompressedLayers['rebuilt']): boolean;
  /** The staged rows [start, start + rows) are compressed this step: they take their place as `compressed` rows do. */
  commitStaged(start: number, rows: number, ahead: number): void;
  /** Attention is done with layer `layer`'s view of this step. */
  attended(layer: number): void;
  /** Bytes held besides the stored form: rebuilt rows kept for reading, and working scratch. */
  memory(): { materialized: number; working: number };
  /** The cache was cut to its first n tokens (n does not split a chunk). */
  truncate(n: number): void;
  /** Rows of each product a layer's rebuild ran in the last step (compact, fused), for benchmarks; else empty. */
  spans(): number[];
  /** An independent copy serving `regions` (a copy of this store's regions); otherWorking: the new cache's other scratch bytes. */
  clone(regions: CacheRegions, ws: Workspace, otherWorking: () => number): ChunkStore;
}

export class MaterializedStore implements ChunkStore {
  readonly needsRebuild = true;
  private viewK: HeadRows[]; // [L] of [KV][T, hd]: every token, rotated, in position order
  private viewV: HeadRows[];
  // [L] reconstructions for the next step: rows [n, C], or staged rows `from` on to move into place
  private pending: ({ start: number; k: Float32Array; v: Float32Array } | { start: number; from: number; rows: number })[][];

  constructor(private readonly s: StoreContext) {
    const rows = () => Array.from({ length: s.nLayers }, () => new HeadRows(s.nKvHeads, s.C / s.nKvHeads));
    this.viewK = rows();
    this.viewV = rows();
    this.pending = Array.from({ length: s.nLayers }, () => []);
  }

  /**
   * A store for a cache restored to `regions`: every layer's view written in position order,
   * sinks, then every chunk rebuilt at once (as compact mode rebuilds them, bit for bit as when
   * they were compressed), then the buffer: what the next step would read.
   */
  static restore(s: StoreContext, regions: CacheRegions, codecs: LayerCodec[], ws: Workspace): MaterializedStore {
    const store = new MaterializedStore(s);
    const { C, rope, keysAfterRope } = s;
    const chunkRows = regions.chunks.reduce((sum, c) => sum + c.n, 0);
    let prev = { k: new Float32Array(chunkRows * C), v: new Float32Array(chunkRows * C) };
    let cur = { k: new Float32Array(chunkRows * C), v: new Float32Array(chunkRows * C) };
    for (let l = 0; l < s.nLayers; l++) {
      const K = store.viewK[l];
      const V = store.viewV[l];
      K.append(regions.sinkK[l].view(), regions.sinkK[l].rows);
      V.append(regions.sinkV[l].view(), regions.sinkV[l].rows);
      if (chunkRows > 0) {
        [prev, cur] = [cur, prev];
        const blocks = regions.chunks.map((c) => ({ keys: c.keys[l], values: c.values[l] }));
        codecs[l].reconstructBlocks(blocks, l === 0 ? null : prev.k, l === 0 ? null : prev.v, chunkRows, cur.k, cur.v, ws);
        const first = K.append(cur.k, chunkRows); // rotated in the view; cur.k stays as stored for layer l + 1
        if (!keysAfterRope) K.rope(rope, first, chunkRows, regions.chunks[0].start);
        V.append(cur.v, chunkRows);
      }
      const nb = regions.bufK[l].rows;
      const first = K.append(regions.bufK[l].view(), nb);
      if (!keysAfterRope) K.rope(rope, first, nb, regions.bufStart);
      V.append(regions.bufV[l].view(), nb);
    }
    return store;
  }

  view(layer: number, k: Float32Array, v: Float32Array, n: number, start: number): LayerView {
    const K = this.viewK[layer];
    const V = this.viewV[layer];
    // reconstructions still waiting (written at `attended` when the forward pass reports it)
    this.applyPending(layer);
    const first = K.append(k, n);
    K.rope(this.s.rope, first, n, start);
    V.append(v, n);
    return { keys: K.data, values: V.data, length: K.rows, stride: K.capacity, inPlace: { keys: K, values: V } };
  }

  attended(layer: number): void {
    // chunks compressed this step: attention read their originals; their reconstructions replace them now
    this.applyPending(layer);
  }

  private applyPending(layer: number): void {
    const list = this.pending[layer];
    for (const p of list) {
      if ('from' in p) {
        // rows held since they were staged would have been written over them
        if (p.from < this.viewK[layer].rows) throw new Error(`MaterializedStore: staged rows at ${p.from} lie within the ${this.viewK[layer].rows} rows held`);
        this.viewK[layer].move(p.from, p.start, p.rows);
        this.viewV[layer].move(p.from, p.start, p.rows);
        continue;
      }
      const rows = p.k.length / this.s.C;
      this.viewK[layer].write(p.start, p.k, rows);
      this.viewV[layer].write(p.start, p.v, rows);
    }
    list.length = 0; // emptied in place: most steps have nothing pending, and make no new list
  }

  /**
   * Staged rows wait in the views' spare capacity (held as working memory whether used or not,
   * fp's views have it too), `ahead` rows past their place: past every row held until they move
   * into place (the caller knows how far its steps go). Rows arrive rotated, as attention will read
   * them. Where the capacity ends first (the last chunks before the views grow), none are staged.
   */
  stage(start: number, rows: number, ahead: number, rebuilt: CompressedLayers['rebuilt']): boolean {
    const at = start + ahead;
    if (rebuilt.length !== this.s.nLayers || ![...this.viewK, ...this.viewV].every((b) => at >= b.rows && at + rows <= b.capacity)) return false;
    for (let l = 0; l < this.s.nLayers; l++) {
      const K = this.viewK[l];
      K.writeSpare(at, rebuilt[l].k, rows);
      if (!this.s.keysAfterRope) K.rope(this.s.rope, at, rows, start);
      this.viewV[l].writeSpare(at, rebuilt[l].v, rows);
    }
    return true;
  }

  commitStaged(start: number, rows: number, ahead: number): void {
    for (const list of this.pending) list.push({ start, from: start + ahead, rows });
  }

  compressed(layer: number, start: number, rows: number, recK: Float32Array, recV: Float32Array): void {
    const size = rows * this.s.C;
    const k = recK.slice(0, size);
    if (!this.s.keysAfterRope) this.s.rope.apply(k, rows, this.s.nKvHeads, start);
    this.pending[layer].push({ start, k, v: recV.slice(0, size) });
  }

  memory(): { materialized: number; working: number } {
    let materialized = 0;
    let spare = 0;
    for (const b of [...this.viewK, ...this.viewV]) {
      materialized += b.bytes();
      spare += b.spareBytes();
    }
    for (const p of this.pending.flat()) if (!('from' in p)) materialized += p.k.byteLength + p.v.byteLength;
    // the views' spare capacity is working memory: allocated, holding nothing yet
    return { materialized, working: spare };
  }

  spans(): number[] {
    return [];
  }

  truncate(n: number): void {
    for (const b of [...this.viewK, ...this.viewV]) b.truncate(Math.min(n, b.rows));
    this.pending = this.pending.map((list) => list.filter((p) => p.start < n));
  }

  clone(): MaterializedStore {
    const c = new MaterializedStore(this.s);
    c.viewK = this.viewK.map((b) => b.clone());
    c.viewV = this.viewV.map((b) => b.clone());
    c.pending = this.pending.map((list) => list.map((p) => ('from' in p ? { ...p } : { start: p.start, k: p.k.slice(), v: p.v.slice() })));
    return c;
  }
}

export class CompactStore implements ChunkStore {
  readonly needsRebuild = false;
  // Two pairs of [T, C] buffers serve every layer in turn. At layer l, `prev` holds layer l−1's
  // rebuild of the chunks (token-major) and `cur` receives layer l's; once l's keys are rebuilt,
  // prev's keys are scratch, and once both are rebuilt prev holds this layer's attention view
  // (head-major). Then the roles swap: resident scratch is two layers' keys and values.
  private prev: { k: Float32Array; v: Float32Array } = { k: new Float32Array(0), v: new Float32Array(0) };
  private cur: { k: Float32Array; v: Float32Array } = { k: new Float32Array(0), v: new Float32Array(0) };

  constructor(
    private readonly s: StoreContext,
    private readonly regions: CacheRegions,
    private readonly codecs: LayerCodec[], // [L]
    private readonly ws: Workspace,
    /** Scratch bytes the cache holds besides this store (counted against the same bound). */
    private readonly otherWorking: () => number = () => 0,
  ) {}

  // The rebuild as one product per part (./fused-rebuild.ts), in a memory of its own that attention
  // reads in place; null until a step finds every layer's parts fused (then the buffers above stay empty)
  private fusedMemory: FusedMemory | null = null;
  private fusedShape: { rows: number; T: number; spans: RowSpan[] } = { rows: -1, T: -1, spans: [] };

  /** Rebuilds every chunk of this layer and returns [sinks | chunks | buffer], head-major. */
  view(layer: number): LayerView {
    const parts = this.fusedParts();
    if (parts) return this.fusedView(layer, parts);
    // (the fused form stops serving when the backend changes; its memory goes)
    this.fusedMemory = null;
    const { C, nKvHeads: KV, rope, keysAfterRope } = this.s;
    const hd = C / KV;
    const r = this.regions;
    const chunkRows = r.chunks.reduce((s, c) => s + c.n, 0);
    const nSink = r.sinkK[layer].rows;
    const nb = r.bufK[layer].rows;
    const T = nSink + chunkRows + nb;
    // grown a block of rows at a time: a step already costs O(T), so a copy every 128 steps is noise
    const grow = (b: { k: Float32Array; v: Float32Array }) => (b.k.length >= T * C ? b : { k: new Float32Array((T + 128) * C), v: new Float32Array((T + 128) * C) });
    this.prev = grow(this.prev);
    this.cur = grow(this.cur);
    const { prev, cur } = this;
    // every chunk of this layer rebuilt at once: one predictor product for all compressed tokens
    if (chunkRows > 0) {
      const blocks = r.chunks.map((c) => ({ keys: c.keys[layer], values: c.values[layer] }));
      this.codecs[layer].reconstructBlocks(blocks, layer === 0 ? null : prev.k, layer === 0 ? null : prev.v, chunkRows, cur.k, cur.v, this.ws);
    }
    // prev is free now: it becomes this layer's view
    const K = prev.k;
    const V = prev.v;
    scatterHeads(K, T, 0, r.sinkK[layer].view(), nSink, KV, hd);
    scatterHeads(V, T, 0, r.sinkV[layer].view(), nSink, KV, hd);
    scatterHeads(K, T, nSink, cur.k, chunkRows, KV, hd);
    scatterHeads(V, T, nSink, cur.v, chunkRows, KV, hd);
    // chunks cover consecutive positions from the first chunk's start
    if (!keysAfterRope && chunkRows > 0) ropeHeads(rope, K, T, nSink, chunkRows, KV, r.chunks[0].start);
    scatterHeads(K, T, nSink + chunkRows, r.bufK[layer].view(), nb, KV, hd);
    scatterHeads(V, T, nSink + chunkRows, r.bufV[layer].view(), nb, KV, hd);
    if (!keysAfterRope) ropeHeads(rope, K, T, nSink + chunkRows, nb, KV, r.bufStart);
    // this layer's rebuild is the next layer's input; the view's buffers are reused after attention
    [this.prev, this.cur] = [cur, prev];
    return { keys: K, values: V, length: T, stride: T };
  }

  /**
   * Every layer's fused parts, when each layer's keys and values take that form now (keys stored
   * before RoPE, heads of a multiple of 8 channels, as the fan-out's rotation takes them).
   */
  private fusedParts(): { keys: FusedPart; values: FusedPart }[] | null {
    if (this.s.keysAfterRope || (this.s.C / this.s.nKvHeads) % 8 !== 0) return null;
    const parts: { keys: FusedPart; values: FusedPart }[] = [];
    for (const c of this.codecs) {
      const keys = c.fusedKeys();
      const values = c.fusedValues();
      if (!keys || !values) return null;
      parts.push({ keys, values });
    }
    return parts;
  }

  /**
   * The fused rebuild of layer `layer`, into attention's view, in spans of at most
   * FUSED_BLOCK_ROWS tokens, fewer where the memory bound leaves less room (`spanRows`). Per span:
   * keys from [K̃_{l−1} | ŷ·s + u], then values from [K̃_l | Ṽ_{l−1} | ŷ·s + u]; the keys' product
   * writes its output into the carry (the next layer's input, over this one's, copied into the
   * product's input already), from where one pass sends it to the values' input and to the view
   * (rotated); the values' output goes to the view, which is also the next layer's input (read
   * back for a span before the span's new values overwrite it). Scratch: the views (one layer's
   * keys and values), the carry (one layer's keys), one span's operands and RoPE's table rows,
   * within two layers' keys and values in f32.
   */
  private fusedView(layer: number, parts: { keys: FusedPart; values: FusedPart }[]): LayerView {
    const { C, nKvHeads: KV, nHeads, rope } = this.s;
    const hd = C / KV;
    const half = hd / 2;
    const r = this.regions;
    const R = r.chunks.reduce((s, c) => s + c.n, 0);
    const nSink = r.sinkK[layer].rows;
    const nb = r.bufK[layer].rows;
    const T = nSink + R + nb;
    if (!this.fusedMemory) {
      this.fusedMemory = new FusedMemory();
      this.fusedShape = { rows: -1, T: -1, spans: [] }; // laid out below
    }
    const m = this.fusedMemory;
    // laid out anew when the rows rebuilt or the tokens change, each step (every region is
    // rewritten each step; the memory only grows); T and R are the same at every layer of a step
    if (R !== this.fusedShape.rows || T !== this.fusedShape.T) {
      const all = parts.flatMap((p) => [p.keys, p.values]);
      const widest = {
        kMax: Math.max(...all.map((p) => p.k)), codeBytes: Math.max(...all.map((p) => p.codeBytes)), consts: constsBytes(all),
        // attention's scratch per view: the group's queries and scores (keys), probabilities and outputs (values)
        view: { heads: KV, T, hd, scratchBytes: (nHeads / KV) * (hd + T + 4) * 4 },
      };
      // the sinks and the buffer go to the view a piece at a time (`FusedMemory.fanIn`), in the
      // product input's room and the RoPE tables' of a span's rows (no more memory once there are
      // spans); before the first chunk, as many rows as the bound leaves room for
      const want = Math.min(Math.max(1, nSink, nb), STAGE_ROWS);
      const layoutFor = (rows: number, stageRows = Math.min(want, rows)): FusedLayout => ({ ...widest, carryRows: R, blockRows: rows, C, tables: Math.max(rows, stageRows) * half, stageRows });
      // spans no shorter than keep the predictors' products (the parts' products, without
      // predictors) on every core, where the bound is tighter; 32 rows where none ever does
      const predicting = all.filter((p) => p.inDim > 0);
      const least = Math.max(...(predicting.length > 0 ? predicting : all).map((p) => rowwiseOnEveryCoreFrom(p.k, C)));
      const fewest = Math.min(FUSED_BLOCK_ROWS, Number.isFinite(least) ? least : 32);
      // within the bound of this step's T: the memory never shrinks, but T never falls (a truncated
      // cache excepted), so what an earlier step grew it to is within this step's bound too
      const bound = 16 * T * C - this.otherWorking();
      const spans = rowSpans(r.chunks.map((c) => c.n), spanRows(bound, layoutFor, fewest), fewest);
      m.layout(spans.length > 0 ? layoutFor(Math.max(...spans.map((b) => b.rows))) : layoutFor(1, mostRowsWithin(bound, 1, want, (s) => layoutFor(1, s))));
      this.fusedShape = { rows: R, T, spans };
    }
    const at = m.at;
    const k = m.kernels;
    const firstPos = R > 0 ? r.chunks[0].start : 0;
    // the chunks' positions are [firstPos, firstPos + R), the buffer's [bufStart, bufStart + nb)
    const tables = rope.tables(Math.max(firstPos + R, r.bufStart + nb));
    const { keys: pk, values: pv } = parts[layer];
    const piecesOf = (b: RowSpan, part: 'keys' | 'values') => b.pieces.map((p) => ({ block: r.chunks[p.index][part][layer], from: p.from, to: p.to }));
    for (const b of this.fusedShape.spans) {
      const n = b.rows;
      const carry = at.carry + b.row * C * 4;
      const vview = at.vview + (nSink + b.row) * hd * 4;
      // keys
      if (pk.inDim > 0) k.fan_rows(carry, n, C, hd, at.a, pk.k, 0, 0, 0, 0, 0, 0);
      m.points(pk, piecesOf(b, 'keys'), at.a, pk.k);
      // the span's carry rows are in the product's input now: its output takes their place
      gemmRowwise(m.f32(carry, n * C), m.f32(at.a, n * pk.k), pk.weight, n, pk.k, C, true);
      m.holdTables(tables.cos, tables.sin, (firstPos + b.row) * half, n * half);
      k.fan_rows(carry, n, C, hd, at.a, pv.inDim > 0 ? pv.k : 0, 0, 0, at.kview + (nSink + b.row) * hd * 4, T, at.cos, at.sin);
      // values
      if (pv.inDim > 0) k.gather_rows(vview, T, n, C, hd, at.a + C * 4, pv.k);
      m.points(pv, piecesOf(b, 'values'), at.a, pv.k);
      gemmRowwise(m.f32(at.y, n * C), m.f32(at.a, n * pv.k), pv.weight, n, pv.k, C, true);
      k.fan_rows(at.y, n, C, hd, 0, 0, 0, 0, vview, T, 0, 0);
    }
    // the view holds T rows per head: the sinks (rotated when stored), the chunks, the buffer
    m.fanIn(r.sinkK[layer].view(), nSink, C, hd, at.kview, T, 0, null);
    m.fanIn(r.sinkV[layer].view(), nSink, C, hd, at.vview, T, 0, null);
    m.fanIn(r.bufK[layer].view(), nb, C, hd, at.kview, T, nSink + R, { ...tables, from: r.bufStart });
    m.fanIn(r.bufV[layer].view(), nb, C, hd, at.vview, T, nSink + R, null);
    const K = m.f32(at.kview, KV * T * hd);
    const V = m.f32(at.vview, KV * T * hd);
    return { keys: K, values: V, length: T, stride: T, inPlace: { keys: m.viewMemory('k'), values: m.viewMemory('v') } };
  }

  compressed(): void {
    // nothing to keep: the chunk's codes are rebuilt at every read
  }

  stage(): boolean {
    return false; // nothing rebuilt is kept
  }

  commitStaged(): void {
    throw new Error('CompactStore.commitStaged: a compact store stages nothing');
  }

  attended(): void {
    // nothing waits: the view is rebuilt at every read
  }

  truncate(): void {
    // nothing kept between steps
  }

  spans(): number[] {
    return this.fusedMemory ? this.fusedShape.spans.map((b) => b.rows) : [];
  }

  clone(regions: CacheRegions, ws: Workspace, otherWorking: () => number): CompactStore {
    return new CompactStore(this.s, regions, this.codecs, ws, otherWorking);
  }

  memory(): { materialized: number; working: number } {
    const fused = this.fusedMemory?.bytes ?? 0;
    return { materialized: 0, working: fused + this.prev.k.byteLength + this.prev.v.byteLength + this.cur.k.byteLength + this.cur.v.byteLength };
  }
}

/**
 * The most sink or buffer rows a compact step sends to its view at once (`FusedMemory.fanIn`): a
 * buffer of up to a chunk and a step's tokens in one piece where a span's rows leave room for it
 * (fewer where spans are shorter).
 */
const STAGE_ROWS = 128;

/** Bytes a kernel memory laid out for `l` holds: whole WebAssembly pages. */
function pagesFor(l: FusedLayout): number {
  return Math.ceil(FusedMemory.bytesFor(l) / PAGE) * PAGE;
}

/**
 * The most rows in [least, most] whose layout's pages fit within `bound` (pages grow with rows), by
 * bisection: `most` where it fits or is no more than `least`, `least` where nothing more fits (the
 * floor anyway). Spans of a compact step (`spanRows`), and before the first chunk the sink and
 * buffer rows it stages for `FusedMemory.fanIn` (least 1: no more than staging nothing takes).
 */
export function mostRowsWithin(bound: number, least: number, most: number, layoutFor: (rows: number) => FusedLayout): number {
  if (most <= least || pagesFor(layoutFor(most)) <= bound) return most;
  let lo = least; // fits, or is the floor anyway
  let hi = most; // does not fit
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (pagesFor(layoutFor(mid)) <= bound) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * The most rows per product that keep a compact cache's kernel memory, counted in whole
 * WebAssembly pages, within `bound` bytes (two layers' keys and values in f32): FUSED_BLOCK_ROWS
 * where they fit, else what the views, the carry, the constants and attention's scratch leave
 * over what one row of a span takes (the product's input and output, RoPE's table rows, codes and
 * scales). Never fewer than `least`, even past the bound: spans of fewer rows would leave their
 * products on one core (at 512 tokens here, steps of 7.5–7.7 ms against 5.5–5.6, for ~0.1 MB).
 */
export function spanRows(bound: number, layoutFor: (rows: number) => FusedLayout, least: number): number {
  if (pagesFor(layoutFor(FUSED_BLOCK_ROWS)) <= bound) return FUSED_BLOCK_ROWS;
  const base = FusedMemory.bytesFor(layoutFor(0));
  const perRow = (FusedMemory.bytesFor(layoutFor(FUSED_BLOCK_ROWS)) - base) / FUSED_BLOCK_ROWS;
  // the regions' alignment may take a few rows more than the estimate (this runs every step)
  const rows = mostRowsWithin(bound, least, Math.floor((Math.floor(bound / PAGE) * PAGE - base) / perRow), layoutFor);
  return Math.max(Math.min(least, FUSED_BLOCK_ROWS), Math.min(FUSED_BLOCK_ROWS, rows));
}
