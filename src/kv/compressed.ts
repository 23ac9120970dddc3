/**
 * The compressed KV cache shared by every method (fp, aquakv, higgs, kivi), after the AQUA-KV
 * reference's TreatPrefixSeparately → PredictorHiggsCache → write-once chunks:
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
 * Two ways to serve reads, with identical attention inputs:
 *  - 'materialized': each chunk is rebuilt once, when compressed, and kept in f32 beside the
 *    compressed form (fast decode; the compressed form is what `stored` counts);
 *  - 'compact': nothing is kept rebuilt; at each layer of each step every chunk is rebuilt from
 *    its codes and the previous layer's rebuild (memory follows the compressed size, decode pays
 *    ≈3·C² multiply-adds per cached token per layer).
 * Keys are stored before RoPE (rotated when read), except when a method quantizes them after RoPE
 * (KIVI, which quantizes the rotated keys HF caches hold).
 */
import type { Rope } from '../model/rope.js';
import { Workspace } from '../tensor/workspace.js';
import { RowBuffer, StepOrder, type CacheMemory, type KVCache, type LayerView } from './cache.js';
import { storedBytes, type LayerCodec, type StoredBlock } from './layer-codec.js';

export type CacheMode = 'compact' | 'materialized';

export interface CompressedCacheOptions {
  sinks: number; // P: first tokens kept in full precision (attention sinks)
  buffer: number; // B: full-precision tokens that trigger compression of the buffer as a chunk
  mode: CacheMode;
}

export const DEFAULT_CACHE_OPTIONS: CompressedCacheOptions = { sinks: 4, buffer: 128, mode: 'materialized' };

interface Chunk {
  start: number; // position of the chunk's first token
  n: number;
  keys: StoredBlock[]; // [L]
  values: StoredBlock[]; // [L]
}

export interface CacheShape {
  nLayers: number;
  kvDim: number; // C
  nKvHeads: number;
}

export class CompressedCache implements KVCache {
  private readonly order: StepOrder;
  private readonly C: number;
  private sinkK: RowBuffer[]; // [L] rotated keys of the sink tokens
  private sinkV: RowBuffer[];
  private bufK: RowBuffer[]; // [L] buffer keys before RoPE (or after, when keysAfterRope)
  private bufV: RowBuffer[];
  private bufStart = 0; // position of the buffer's first token
  private chunks: Chunk[] = [];
  private compressing: Chunk[] = []; // the chunks being compressed in this step
  // materialized mode: the attention view per layer, and rebuilt rows waiting for the next step
  private viewK: RowBuffer[] = [];
  private viewV: RowBuffer[] = [];
  private pending: { start: number; k: Float32Array; v: Float32Array }[][];
  // this step's reconstructions of layer l−1 and l for the chunk tokens: [Tq, C] each
  private prevRec = { k: new Float32Array(0), v: new Float32Array(0) };
  private curRec = { k: new Float32Array(0), v: new Float32Array(0) };
  private swappedFor = -1; // the layer the reconstruction pair was last swapped for in this step
  private ws = new Workspace();

  constructor(
    readonly shape: CacheShape,
    private readonly rope: Rope,
    private readonly codecs: LayerCodec[], // [L]
    readonly options: CompressedCacheOptions,
    private readonly keysAfterRope = false,
    private readonly predictorBytes = 0,
  ) {
    if (codecs.length !== shape.nLayers) throw new RangeError(`CompressedCache: ${codecs.length} codecs for ${shape.nLayers} layers`);
    if (!(options.buffer >= 1) || !(options.sinks >= 0)) throw new RangeError(`CompressedCache: need buffer ≥ 1 and sinks ≥ 0, got ${options.buffer}, ${options.sinks}`);
    this.C = shape.kvDim;
    this.order = new StepOrder(shape.nLayers, 'CompressedCache');
    const rows = () => Array.from({ length: shape.nLayers }, () => new RowBuffer(this.C));
    this.sinkK = rows();
    this.sinkV = rows();
    this.bufK = rows();
    this.bufV = rows();
    if (options.mode === 'materialized') {
      this.viewK = rows();
      this.viewV = rows();
    }
    this.pending = Array.from({ length: shape.nLayers }, () => []);
  }

  get length(): number {
    return this.order.committed;
  }

  /** Tokens held in compressed chunks. */
  get compressedTokens(): number {
    return [...this.chunks, ...this.compressing].reduce((s, c) => s + c.n, 0);
  }

  update(layer: number, keysPreRope: Float32Array, values: Float32Array, n: number): LayerView {
    this.order.enter(layer, n);
    const C = this.C;
    const start = this.length; // position of this step's first token
    const nSink = Math.max(0, Math.min(n, this.options.sinks - start));
    if (layer === 0) this.planChunks(start + nSink, start + n);
    // sinks: rotated at once, kept forever
    if (nSink > 0) {
      const k = this.sinkK[layer];
      const first = k.append(keysPreRope, nSink);
      this.rope.apply(k.data.subarray(first * C), nSink, this.shape.nKvHeads, start);
      this.sinkV[layer].append(values, nSink);
    }
    // the rest waits in the buffer (rotated now if the method quantizes rotated keys)
    const nBuf = n - nSink;
    if (nBuf > 0) {
      const k = this.bufK[layer];
      const first = k.append(keysPreRope.subarray(nSink * C), nBuf);
      if (this.keysAfterRope) this.rope.apply(k.data.subarray(first * C), nBuf, this.shape.nKvHeads, start + nSink);
      this.bufV[layer].append(values.subarray(nSink * C), nBuf);
    }
    const view = this.options.mode === 'materialized' ? this.materializedView(layer, keysPreRope, values, n, start) : this.compactView(layer);
    for (const chunk of this.compressing) this.compressLayer(layer, chunk);
    this.order.leave(layer);
    if (layer === this.shape.nLayers - 1) {
      this.swappedFor = -1;
      this.chunks.push(...this.compressing);
      this.compressing = [];
    }
    return view;
  }

  /**
   * At layer 0: the buffer will hold positions [bufStart, end) once this step's tokens are in;
   * every whole block [kB, (k+1)B) inside it becomes a chunk this step.
   */
  private planChunks(firstBuffered: number, end: number): void {
    if (this.bufK[0].rows === 0) this.bufStart = Math.max(firstBuffered, this.bufStart);
    const B = this.options.buffer;
    let s = this.bufStart;
    while ((Math.floor(s / B) + 1) * B <= end) {
      const e = (Math.floor(s / B) + 1) * B;
      this.compressing.push({ start: s, n: e - s, keys: [], values: [] });
      s = e;
    }
  }

  /** Compresses this layer of `chunk`, which sits at the front of the buffer, and drops it from there. */
  private compressLayer(layer: number, chunk: Chunk): void {
    const C = this.C;
    const n = chunk.n;
    const offset = this.chunkRowOffset(chunk);
    this.swapReconstructions(layer, this.reconstructedRows());
    const prevK = layer === 0 ? null : this.prevRec.k.subarray(offset * C);
    const prevV = layer === 0 ? null : this.prevRec.v.subarray(offset * C);
    const recK = this.curRec.k.subarray(offset * C);
    const recV = this.curRec.v.subarray(offset * C);
    const stored = this.codecs[layer].compress(this.bufK[layer].view(), this.bufV[layer].view(), prevK, prevV, n, recK, recV, this.ws);
    chunk.keys[layer] = stored.keys;
    chunk.values[layer] = stored.values;
    if (this.options.mode === 'materialized') {
      const k = recK.slice(0, n * C);
      if (!this.keysAfterRope) this.rope.apply(k, n, this.shape.nKvHeads, chunk.start);
      this.pending[layer].push({ start: chunk.start, k, v: recV.slice(0, n * C) });
    }
    this.bufK[layer].dropFront(n);
    this.bufV[layer].dropFront(n);
    if (layer === this.shape.nLayers - 1) this.bufStart = chunk.start + n;
  }

  /**
   * Chunks whose reconstructions this step holds, in row order: every chunk in compact mode
   * (all are rebuilt), only the ones being compressed in materialized mode.
   */
  private reconstructed(): Chunk[] {
    return this.options.mode === 'compact' ? [...this.chunks, ...this.compressing] : this.compressing;
  }

  private reconstructedRows(): number {
    return this.reconstructed().reduce((s, c) => s + c.n, 0);
  }

  /** Row of `chunk` in this step's reconstruction buffers. */
  private chunkRowOffset(chunk: Chunk): number {
    let o = 0;
    for (const c of this.reconstructed()) {
      if (c === chunk) return o;
      o += c.n;
    }
    throw new Error('CompressedCache: unknown chunk');
  }

  /**
   * Once per layer of a step: layer l−1's reconstructions become "previous" and the other pair is
   * reused for layer l, grown to hold `rows` rows of the chunk-token concatenation.
   */
  private swapReconstructions(layer: number, rows: number): void {
    if (this.swappedFor === layer) return;
    this.swappedFor = layer;
    [this.prevRec, this.curRec] = [this.curRec, this.prevRec];
    const need = rows * this.C;
    if (this.curRec.k.length < need) this.curRec = { k: new Float32Array(need), v: new Float32Array(need) };
  }

  private materializedView(layer: number, k: Float32Array, v: Float32Array, n: number, start: number): LayerView {
    const C = this.C;
    const K = this.viewK[layer];
    const V = this.viewV[layer];
    // chunks compressed in an earlier step: their reconstructions replace the originals now
    for (const p of this.pending[layer]) {
      K.data.set(p.k, p.start * C);
      V.data.set(p.v, p.start * C);
    }
    this.pending[layer] = [];
    const first = K.append(k, n);
    this.rope.apply(K.data.subarray(first * C), n, this.shape.nKvHeads, start);
    V.append(v, n);
    return { keys: K.view(), values: V.view(), length: K.rows };
  }

  /** Assembles [sinks | every chunk rebuilt | buffer] for this layer in a shared scratch. */
  private compactView(layer: number): LayerView {
    const C = this.C;
    const chunkRows = this.chunks.reduce((s, c) => s + c.n, 0);
    const T = this.sinkK[layer].rows + chunkRows + this.bufK[layer].rows;
    const K = this.ws.get('view.k', T * C);
    const V = this.ws.get('view.v', T * C);
    let row = 0;
    K.set(this.sinkK[layer].view(), 0);
    V.set(this.sinkV[layer].view(), 0);
    row += this.sinkK[layer].rows;
    this.swapReconstructions(layer, this.reconstructedRows());
    let offset = 0;
    for (const c of this.chunks) {
      const recK = this.curRec.k.subarray(offset * C);
      const recV = this.curRec.v.subarray(offset * C);
      const prevK = layer === 0 ? null : this.prevRec.k.subarray(offset * C);
      const prevV = layer === 0 ? null : this.prevRec.v.subarray(offset * C);
      this.codecs[layer].reconstruct(c.keys[layer], c.values[layer], prevK, prevV, c.n, recK, recV, this.ws);
      K.set(recK.subarray(0, c.n * C), row * C);
      V.set(recV.subarray(0, c.n * C), row * C);
      if (!this.keysAfterRope) this.rope.apply(K.subarray(row * C), c.n, this.shape.nKvHeads, c.start);
      row += c.n;
      offset += c.n;
    }
    const nb = this.bufK[layer].rows;
    K.set(this.bufK[layer].view(), row * C);
    V.set(this.bufV[layer].view(), row * C);
    if (!this.keysAfterRope) this.rope.apply(K.subarray(row * C), nb, this.shape.nKvHeads, this.bufStart);
    return { keys: K.subarray(0, T * C), values: V.subarray(0, T * C), length: T };
  }

  memory(): CacheMemory {
    let keyCodes = 0, valueCodes = 0, scales = 0, raw = 0;
    for (const c of [...this.chunks, ...this.compressing]) {
      for (const b of c.keys) {
        const s = storedBytes(b);
        keyCodes += s.codes;
        scales += s.scales;
        raw += s.raw;
      }
      for (const b of c.values) {
        const s = storedBytes(b);
        valueCodes += s.codes;
        scales += s.scales;
        raw += s.raw;
      }
    }
    const sum = (bs: RowBuffer[]) => bs.reduce((s, b) => s + b.bytes(), 0);
    const sinks = sum(this.sinkK) + sum(this.sinkV);
    const buffer = sum(this.bufK) + sum(this.bufV);
    let materialized = sum(this.viewK) + sum(this.viewV);
    for (const p of this.pending.flat()) materialized += p.k.byteLength + p.v.byteLength;
    const working = this.ws.bytes() + (this.prevRec.k.byteLength + this.prevRec.v.byteLength + this.curRec.k.byteLength + this.curRec.v.byteLength);
    const stored = keyCodes + valueCodes + scales + raw + sinks + buffer;
    return {
      total: stored + materialized + working,
      components: { keyCodes, valueCodes, scales, fullPrecisionChunks: raw, sinks, buffer, materialized, working },
      stored,
      predictors: this.predictorBytes,
    };
  }

  /** Bits per value of the quantized tokens' stored form (codes, scales, zeros; all layers, K and V). */
  quantizedBitsPerValue(): number {
    const m = this.memory().components;
    const values = this.compressedTokens * this.C * 2 * this.shape.nLayers;
    return values ? ((m.keyCodes + m.valueCodes + m.scales + m.fullPrecisionChunks) * 8) / values : NaN;
  }
}
