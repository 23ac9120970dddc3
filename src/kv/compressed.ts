/**
 * The compressed KV cache shared by every quantizing method (aquakv, higgs, kivi), after the
 * AQUA-KV reference's TreatPrefixSeparately → PredictorHiggsCache → write-once chunks:
 *
 *   [ sinks: first P tokens, full precision forever | chunk | chunk | … | buffer: full precision ]
 *
 * New tokens wait in the buffer. Chunks are the blocks of positions [kB, (k+1)B) (the first one
 * starting after the sinks); in the step where the buffer completes one or more blocks, each is
 * compressed as a chunk, layer by layer (layer l from that chunk's reconstruction of layer l−1),
 * and leaves the buffer. In that step attention still sees the chunk's original keys and values,
 * as in the reference; from the next step on it sees the reconstruction. Because block
 * boundaries are fixed positions (as in the reference's inference cache, which quantizes whole
 * multiples of 128), feeding a text in steps whose size divides B gives exactly the logits of
 * token-by-token decoding.
 *
 * How chunks are read back is the chunk store's business (./chunk-store.ts: materialized or
 * compact). Keys are stored before RoPE (rotated when read), except when a method quantizes them
 * after RoPE (KIVI, which quantizes the rotated keys HF caches hold).
 */
import type { CacheHost, CacheMemory, KVCache, LayerView } from '../model/kv-cache.js';
import { blockBytes, concatRows, type QuantizedBlock } from '../quant/quantizer.js';
import { Workspace } from '../tensor/workspace.js';
import { BackgroundCompression, JOB_ROWS, type Stager, type TakenRows } from './background-compression.js';
import { CompactStore, MaterializedStore, type CacheRegions, type Chunk, type ChunkStore, type StoreContext } from './chunk-store.js';
import { checkCut } from './full.js';
import { compressLayers, type LayerCodec } from './layer-codec.js';
import { predictorBytes, type PredictorSet } from './linear-predictor.js';
import type { CacheMethod } from './method.js';
import { RowBuffer } from './row-buffer.js';
import { StepOrder } from './step-order.js';

export type CacheMode = 'compact' | 'materialized';

/** What a user chooses about a compressed cache; defaults in `DEFAULT_CACHE_OPTIONS`. */
export interface CacheOptions {
  sinks: number; // P: first tokens kept in full precision (attention sinks)
  buffer: number; // B: full-precision tokens that trigger compression of the buffer as a chunk
  mode: CacheMode;
  /**
   * Compress buffered tokens on a background thread while decoding, where the host has one and
   * the method quantizes each token alone (./background-compression.ts): the same bits, a shorter
   * step when a chunk fills. Not saved with a cache: a choice of how this process runs.
   */
  background: boolean;
}

export const DEFAULT_CACHE_OPTIONS: Readonly<CacheOptions> = Object.freeze({ sinks: 4, buffer: 128, mode: 'materialized', background: true });

export interface CompressedCacheSetup extends CacheOptions {
  host: CacheHost;
  /** The method as asked for (a budgeted one keeps its budget), and the plan that runs. */
  method: CacheMethod;
  plan: CacheMethod;
  codecs: LayerCodec[]; // [L], built from the plan
  /** The predictors the codecs use (AQUA-KV), or null. */
  predictors: PredictorSet | null;
  /**
   * Calibration only (../predictors/kl-measure.ts, its replays): a cache of layers firstLayer..L−1, for a
   * forward pass that starts there. Its codec of firstLayer brings the previous layer's
   * reconstructions itself. Such a cache serves attention only: it cannot be saved, forked or sized.
   */
  firstLayer?: number;
}

/** What a compressed cache holds, as saved: its regions in position order. */
export interface CompressedCacheState {
  length: number;
  sinkK: Float32Array[]; // [L] of [min(P, length), C], rotated
  sinkV: Float32Array[];
  chunks: Chunk[];
  bufStart: number;
  bufK: Float32Array[]; // [L] of [length − bufStart, C], as stored (before RoPE unless keys are quantized rotated)
  bufV: Float32Array[];
}

/** Reconstruction scratch of no rows (replaced, never written, when rows are needed). */
const NO_ROWS = { k: new Float32Array(0), v: new Float32Array(0) };

export class CompressedCache implements KVCache {
  readonly options: CacheOptions;
  private readonly order: StepOrder;
  private readonly C: number;
  private readonly r: CacheRegions;
  private readonly store: ChunkStore;
  private readonly otherWorking: () => number;
  private compressing: Chunk[] = []; // the chunks being compressed in this step
  // of those, the first rows whose codes the background thread made (taken at the first layer)
  private taken = new Map<Chunk, TakenRows>();
  private readonly background: BackgroundCompression | null;
  // this step's chunks are compressed at its last layer, through the thread (a decode step)
  private atLastLayer = false;
  // this step's reconstructions of layers l−1 and l for the chunks being compressed: [rows, C] each
  private prevRec = NO_ROWS;
  private curRec = NO_ROWS;
  private ws = new Workspace();

  private readonly context: StoreContext;
  /** The first layer this cache holds (0 but in calibration's replays). */
  private readonly first: number;

  /**
   * A fresh cache, or one holding `state` (taken, not copied; from `state()` or a saved file,
   * whose blocks the caller has checked against the codecs). `store` is for `fork` only.
   */
  constructor(readonly setup: CompressedCacheSetup, state?: CompressedCacheState, store?: (r: CacheRegions, ws: Workspace, otherWorking: () => number) => ChunkStore) {
    const { host, codecs, sinks, buffer, mode, background } = setup;
    const { nLayers, kvDim, nKvHeads } = host.config;
    if (codecs.length !== nLayers) throw new RangeError(`CompressedCache: ${codecs.length} codecs for ${nLayers} layers`);
    if (!(Number.isInteger(buffer) && buffer >= 1) || !(Number.isInteger(sinks) && sinks >= 0)) {
      throw new RangeError(`CompressedCache: need integers buffer ≥ 1 and sinks ≥ 0, got ${buffer}, ${sinks}`);
    }
    this.options = { sinks, buffer, mode, background };
    this.C = kvDim;
    this.first = setup.firstLayer ?? 0;
    if (!(Number.isInteger(this.first) && this.first >= 0 && this.first < nLayers)) throw new RangeError(`CompressedCache: firstLayer ${this.first} outside [0, ${nLayers})`);
    if (this.first > 0 && state) throw new RangeError('CompressedCache: a cache of the last layers only starts empty');
    this.order = new StepOrder(nLayers, 'CompressedCache', this.first);
    this.context = { nLayers, C: kvDim, nKvHeads, nHeads: host.config.nHeads, rope: host.rope, keysAfterRope: setup.plan.keysAfterRope };
    if (state) {
      const rows = (list: Float32Array[]) => list.map((x) => RowBuffer.of(kvDim, x));
      this.r = { sinkK: rows(state.sinkK), sinkV: rows(state.sinkV), chunks: state.chunks, bufK: rows(state.bufK), bufV: rows(state.bufV), bufStart: state.bufStart };
      checkRegions(this.r, state.length, nLayers, sinks);
      this.order.committed = state.length;
    } else {
      const rows = () => Array.from({ length: nLayers }, () => new RowBuffer(kvDim));
      this.r = { sinkK: rows(), sinkV: rows(), chunks: [], bufK: rows(), bufV: rows(), bufStart: 0 };
    }
    // what the cache holds as scratch besides its store: a compact store keeps within its bound with it
    this.otherWorking = () => this.ws.bytes() + this.prevRec.k.byteLength + this.prevRec.v.byteLength + this.curRec.k.byteLength + this.curRec.v.byteLength;
    if (store) this.store = store(this.r, this.ws, this.otherWorking);
    else if (mode === 'compact') this.store = new CompactStore(this.context, this.r, codecs, this.ws, this.otherWorking);
    else if (state) this.store = MaterializedStore.restore(this.context, this.r, codecs, this.ws);
    else this.store = new MaterializedStore(this.context);
    // a materialized store keeps the rows the thread rebuilds in its views' spare rows until their
    // chunk fills, B + JOB_ROWS rows on: past the rows of the step that fills it, which are in the
    // views before the staged rows move into place (a longer step compresses its chunks itself)
    const stage: Stager | null = this.store.needsRebuild ? (from, rows, rebuilt) => this.store.stage(from, rows, this.stagedAhead, rebuilt) : null;
    this.background = background && this.first === 0 ? BackgroundCompression.for(setup.plan, codecs, setup.predictors, kvDim, buffer, stage) : null;
  }

  /** How many rows past its place a staged row waits (see the constructor). */
  private get stagedAhead(): number {
    return this.options.buffer + JOB_ROWS;
  }

  /** Tokens whose codes the background thread made, so far (see CacheOptions.background). */
  get backgroundRows(): number {
    return this.background?.rowsTaken ?? 0;
  }

  /** Of those, tokens whose rebuild the thread made too, kept in the views' spare rows until their chunk filled. */
  get stagedRows(): number {
    return this.background?.rowsStaged ?? 0;
  }

  /**
   * Waits until the background thread has compressed every buffered token sent to it. Decode
   * never needs this (a step takes only finished jobs and compresses the rest itself); tests and
   * benchmarks use it to know which tokens the thread compressed.
   */
  settleBackground(): void {
    this.background?.settle();
  }

  get length(): number {
    return this.order.committed;
  }

  /** Rows of each product a compact cache's rebuild of one layer ran in the last step (empty otherwise): for benchmarks. */
  rebuildSpans(): number[] {
    return this.store.spans();
  }

  /** Tokens held in compressed chunks. */
  get compressedTokens(): number {
    return [...this.r.chunks, ...this.compressing].reduce((s, c) => s + c.n, 0);
  }

  update(layer: number, keysPreRope: Float32Array, values: Float32Array, n: number): LayerView {
    this.order.enter(layer, n);
    const C = this.C;
    const { rope, config } = this.setup.host;
    const r = this.r;
    const start = this.length; // position of this step's first token
    const nSink = Math.max(0, Math.min(n, this.options.sinks - start));
    if (layer === this.first) {
      this.planChunks(start + nSink, start + n);
      // a decode-sized step that fills a chunk sends the chunk's rows no job holds to the thread,
      // once every layer of them is in; a longer step (a prompt) compresses its chunks layer by layer
      this.atLastLayer = this.compressing.length > 0 && (this.background?.running ?? false) && n <= JOB_ROWS;
    }
    // sinks: rotated at once, kept forever
    if (nSink > 0) {
      const k = r.sinkK[layer];
      const first = k.append(keysPreRope, nSink);
      rope.apply(k.data.subarray(first * C), nSink, config.nKvHeads, start);
      r.sinkV[layer].append(values, nSink);
    }
    // the rest waits in the buffer (rotated now if the method quantizes rotated keys)
    const nBuf = n - nSink;
    if (nBuf > 0) {
      const k = r.bufK[layer];
      const first = k.append(keysPreRope.subarray(nSink * C), nBuf);
      if (this.setup.plan.keysAfterRope) rope.apply(k.data.subarray(first * C), nBuf, config.nKvHeads, start + nSink);
      r.bufV[layer].append(values.subarray(nSink * C), nBuf);
    }
    const view = this.store.view(layer, keysPreRope, values, n, start);
    if (this.compressing.length > 0 && !this.atLastLayer) this.compressLayer(layer);
    this.order.leave(layer);
    if (layer === config.nLayers - 1) {
      if (this.compressing.length > 0) {
        if (this.atLastLayer) for (const chunk of this.compressing) this.compressThroughThread(chunk);
        r.chunks.push(...this.compressing);
        this.compressing = [];
        this.taken.clear();
      }
      // every layer of this step's tokens is in: the buffer's unsent rows may go to the thread
      this.background?.send(r.bufK, r.bufV, r.bufStart, start + n);
      // a long prefill compresses many chunks at once; decode compresses one block at a time, so
      // keep no more reconstruction scratch than one block needs. A materialized cache keeps none:
      // it compresses once per block of tokens, and between times the scratch would only add to
      // what it holds (compact mode's rebuild reuses the workspace every step)
      const keep = this.options.mode === 'materialized' ? 0 : this.options.buffer * C;
      if (this.curRec.k.length > keep || this.prevRec.k.length > keep) this.prevRec = this.curRec = NO_ROWS;
      this.ws.shrink(keep);
    }
    return view;
  }

  attended(layer: number): void {
    this.store.attended(layer);
  }

  /**
   * At the first layer: the buffer will hold positions [bufStart, end) once this step's tokens are in;
   * every whole block [kB, (k+1)B) inside it becomes a chunk this step.
   */
  private planChunks(firstBuffered: number, end: number): void {
    const r = this.r;
    if (r.bufK[this.first].rows === 0) r.bufStart = Math.max(firstBuffered, r.bufStart);
    const B = this.options.buffer;
    let s = r.bufStart;
    while ((Math.floor(s / B) + 1) * B <= end) {
      const e = (Math.floor(s / B) + 1) * B;
      this.compressing.push({ start: s, n: e - s, keys: [], values: [] });
      s = e;
    }
  }

  /** Compresses this layer of every chunk being compressed (they sit at the front of the buffer, in order). */
  private compressLayer(layer: number): void {
    const C = this.C;
    const r = this.r;
    const rows = this.compressing.reduce((s, c) => s + c.n, 0);
    [this.prevRec, this.curRec] = [this.curRec, this.prevRec];
    if (this.curRec.k.length < rows * C) this.curRec = { k: new Float32Array(rows * C), v: new Float32Array(rows * C) };
    const codec = this.setup.codecs[layer];
    let offset = 0;
    for (const chunk of this.compressing) {
      const n = chunk.n;
      const prevK = layer === 0 ? null : this.prevRec.k.subarray(offset * C);
      const prevV = layer === 0 ? null : this.prevRec.v.subarray(offset * C);
      const recK = this.curRec.k.subarray(offset * C);
      const recV = this.curRec.v.subarray(offset * C);
      if (layer === this.first && this.background) this.taken.set(chunk, this.background.take(chunk.start, n));
      // the first w rows' codes came from the thread; the store may want their rebuild
      const taken = this.taken.get(chunk);
      const w = taken?.rows ?? 0;
      const keys: QuantizedBlock[] = taken?.keys[layer] ?? [];
      const values: QuantizedBlock[] = taken?.values[layer] ?? [];
      if (w > 0 && this.store.needsRebuild) {
        codec.reconstructBlocks(keys.map((k, i) => ({ keys: k, values: values[i] })), prevK, prevV, w, recK, recV, this.ws);
      }
      if (w < n) {
        const at = (x: Float32Array | null) => x && x.subarray(w * C);
        const rest = codec.compress(r.bufK[layer].view().subarray(w * C), r.bufV[layer].view().subarray(w * C), at(prevK), at(prevV), n - w, recK.subarray(w * C), recV.subarray(w * C), this.ws);
        keys.push(rest.keys);
        values.push(rest.values);
      }
      chunk.keys[layer] = concatRows(keys);
      chunk.values[layer] = concatRows(values);
      this.store.compressed(layer, chunk.start, n, recK, recV);
      r.bufK[layer].dropFront(n);
      r.bufV[layer].dropFront(n);
      if (layer === this.setup.host.config.nLayers - 1) r.bufStart = chunk.start + n;
      offset += n;
    }
  }

  /**
   * Compresses `chunk` (at the front of the buffer) at the last layer of a decode step, every layer
   * at once: the codes of the rows jobs hold are taken; the rest go to the thread now. Where the
   * store wants a rebuild (a materialized cache), the taken rows' rebuild came with their codes
   * and waits staged in the store, or (where the store had no room for it) this thread rebuilds
   * them while the thread compresses the rest; the rebuild of the rest comes back with their
   * codes. The same bits as `compressLayer` (./background-compression.ts); rows the thread cannot
   * do are compressed here.
   */
  private compressThroughThread(chunk: Chunk): void {
    const C = this.C;
    const r = this.r;
    const bg = this.background!;
    const { codecs } = this.setup;
    const L = codecs.length;
    const n = chunk.n;
    const taken = bg.take(chunk.start, n);
    const w = taken.rows;
    const { keys, values } = taken;
    const wantRebuild = this.store.needsRebuild;
    // the rest to the thread if it has just shown it keeps up (a job of this chunk taken, none
    // behind), else it would be waited for (still starting, or busy); here otherwise
    const seq = w > 0 && w < n && !taken.behind && bg.running ? bg.sendNow(r.bufK, r.bufV, r.bufStart, chunk.start + w, chunk.start + n, wantRebuild) : null;
    // the taken rows' rebuild came with their codes and waits in the store (staged), or is made here
    if (w > 0 && wantRebuild && taken.staged) {
      this.store.commitStaged(chunk.start, w, this.stagedAhead);
    } else if (w > 0 && wantRebuild) {
      let prev = { k: new Float32Array(w * C), v: new Float32Array(w * C) };
      let cur = { k: new Float32Array(w * C), v: new Float32Array(w * C) };
      for (let l = 0; l < L; l++) {
        codecs[l].reconstructBlocks(keys[l].map((k, i) => ({ keys: k, values: values[l][i] })), l === 0 ? null : prev.k, l === 0 ? null : prev.v, w, cur.k, cur.v, this.ws);
        this.store.compressed(l, chunk.start, w, cur.k, cur.v);
        [prev, cur] = [cur, prev];
      }
    }
    if (w < n) {
      // the thread's answer, or (none asked, or none came) these rows compressed here as it would
      const at = (b: RowBuffer) => b.view().subarray(w * C, n * C);
      const rest = (seq === null ? null : bg.result(seq)) ?? compressLayers(codecs, (l) => at(r.bufK[l]), (l) => at(r.bufV[l]), n - w, this.ws);
      for (let l = 0; l < L; l++) {
        keys[l].push(rest.keys[l]);
        values[l].push(rest.values[l]);
        if (wantRebuild) this.store.compressed(l, chunk.start + w, n - w, rest.rebuilt![l].k, rest.rebuilt![l].v);
      }
    }
    for (let l = 0; l < L; l++) {
      chunk.keys[l] = concatRows(keys[l]);
      chunk.values[l] = concatRows(values[l]);
      r.bufK[l].dropFront(n);
      r.bufV[l].dropFront(n);
    }
    r.bufStart = chunk.start + n;
  }

  /** Throws for a cache of the last layers only, whose regions hold nothing of the first ones. */
  private checkWhole(what: string): void {
    if (this.first > 0) throw new Error(`CompressedCache.${what}: this cache holds layers ${this.first}.. only (a calibration replay)`);
  }

  memory(): CacheMemory {
    this.checkWhole('memory');
    let keyCodes = 0, valueCodes = 0, scales = 0;
    for (const c of [...this.r.chunks, ...this.compressing]) {
      for (const b of c.keys) {
        keyCodes += b.codes.byteLength;
        scales += blockBytes(b) - b.codes.byteLength;
      }
      for (const b of c.values) {
        valueCodes += b.codes.byteLength;
        scales += blockBytes(b) - b.codes.byteLength;
      }
    }
    const sum = (bs: RowBuffer[]) => bs.reduce((s, b) => s + b.bytes(), 0);
    const sinks = sum(this.r.sinkK) + sum(this.r.sinkV);
    const buffer = sum(this.r.bufK) + sum(this.r.bufV);
    const held = this.store.memory();
    const working = held.working + this.otherWorking();
    const quantized = keyCodes + valueCodes + scales;
    const stored = quantized + sinks + buffer;
    const values = this.compressedTokens * this.C * 2 * this.setup.host.config.nLayers;
    return {
      total: stored + held.materialized + working,
      components: { keyCodes, valueCodes, scales, sinks, buffer, materialized: held.materialized, working },
      stored,
      predictors: this.setup.predictors && this.setup.plan.usesPredictors ? predictorBytes(this.setup.predictors) : 0,
      bitsPerValue: values ? (quantized * 8) / values : NaN,
    };
  }

  /** Views of what the cache holds (valid until its next update; blocks are shared, never modified). */
  state(): CompressedCacheState {
    this.checkWhole('state');
    this.order.checkIdle('state');
    const r = this.r;
    const views = (list: RowBuffer[]) => list.map((b) => b.view());
    return { length: this.length, sinkK: views(r.sinkK), sinkV: views(r.sinkV), chunks: r.chunks, bufStart: this.bufferStart(), bufK: views(r.bufK), bufV: views(r.bufV) };
  }

  /** Position of the buffer's first token (the cache's length when the buffer is empty). */
  private bufferStart(): number {
    return this.length - this.r.bufK[0].rows;
  }

  fork(): CompressedCache {
    const s = this.state();
    const copy = (list: Float32Array[]) => list.map((x) => x.slice());
    // stored blocks are written once and never changed, so the copy may share them
    const chunks = s.chunks.map((c) => ({ ...c, keys: [...c.keys], values: [...c.values] }));
    const state = { ...s, sinkK: copy(s.sinkK), sinkV: copy(s.sinkV), bufK: copy(s.bufK), bufV: copy(s.bufV), chunks };
    return new CompressedCache(this.setup, state, (r, ws, otherWorking) => this.store.clone(r, ws, otherWorking));
  }

  /** Lengths a compressed cache can be cut to: within the sinks, at a chunk's end, or within the buffer. */
  cutPoint(n: number): number {
    this.checkWhole('cutPoint');
    const m = Math.max(0, Math.min(Math.floor(n), this.length));
    if (m >= this.bufferStart() || m <= this.r.sinkK[0].rows) return m;
    const chunk = this.r.chunks.find((c) => c.start < m && m < c.start + c.n);
    return chunk ? chunk.start : m;
  }

  truncate(n: number): void {
    this.checkWhole('truncate');
    this.order.checkIdle('truncate');
    checkCut(n, this.length, 'CompressedCache');
    if (this.cutPoint(n) !== n) throw new RangeError(`CompressedCache.truncate: ${n} splits a compressed chunk; cut at ${this.cutPoint(n)} (cutPoint(n)) or at a later chunk boundary`);
    const r = this.r;
    r.bufStart = this.bufferStart();
    for (const b of [...r.sinkK, ...r.sinkV]) b.truncate(Math.min(n, b.rows));
    r.chunks = r.chunks.filter((c) => c.start + c.n <= n);
    if (n >= r.bufStart) {
      for (const b of [...r.bufK, ...r.bufV]) b.truncate(n - r.bufStart);
    } else {
      for (const b of [...r.bufK, ...r.bufV]) b.clear();
      r.bufStart = n;
    }
    // jobs sent for the buffer may hold cut rows: the buffer's rows are sent again
    this.background?.reset(r.bufStart);
    this.store.truncate(n);
    this.order.committed = n;
  }
}

/** Throws unless regions hold `length` tokens the way a cache of these options lays them out. */
function checkRegions(r: CacheRegions, length: number, nLayers: number, sinks: number): void {
  const bad = (why: string) => new RangeError(`CompressedCache: state is inconsistent: ${why}`);
  const P = Math.min(sinks, length);
  for (const list of [r.sinkK, r.sinkV, r.bufK, r.bufV]) if (list.length !== nLayers) throw bad(`${list.length} layers of rows for ${nLayers}`);
  if ([...r.sinkK, ...r.sinkV].some((b) => b.rows !== P)) throw bad(`sinks are not ${P} rows`);
  let pos = P;
  if (r.chunks.length > 0) pos = r.chunks[0].start;
  for (const c of r.chunks) {
    if (c.start !== pos || c.n < 1 || c.keys.length !== nLayers || c.values.length !== nLayers) throw bad(`chunk at ${c.start} does not follow position ${pos}`);
    if ([...c.keys, ...c.values].some((b: QuantizedBlock) => b.rows !== c.n)) throw bad(`chunk at ${c.start} has blocks of another size`);
    pos += c.n;
  }
  if (r.chunks.length > 0 && r.chunks[0].start !== P) throw bad(`the first chunk starts at ${r.chunks[0].start}, not after the ${P} sinks`);
  if (r.bufStart !== pos || r.bufStart > length) throw bad(`buffer starts at ${r.bufStart}, not at position ${pos} (after the sinks and chunks) within ${length}`);
  if ([...r.bufK, ...r.bufV].some((b) => b.rows !== length - r.bufStart)) throw bad(`buffer is not ${length - r.bufStart} rows`);
}
