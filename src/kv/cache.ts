/**
 * The KV-cache seam between the model and its memory of past tokens.
 *
 * Each forward step hands the cache, for every layer in order 0..L−1, the new tokens' keys
 * *before RoPE* and their values, all KV heads flattened: [n, C] with C = KV·hd. The cache
 * returns the keys (RoPE applied) and values attention must use for every cached token
 * including the new ones: [T, C]. Keys arrive un-rotated so a compressing cache can quantise
 * them in the space where they are predictable across layers (AQUA-KV §3, KVQuant); layer
 * order lets it rebuild layer l from its own reconstruction of layer l−1 within the same step.
 */
export interface LayerView {
  keys: Float32Array; // [T, C], RoPE applied
  values: Float32Array; // [T, C]
  length: number; // T: cached tokens including this step's
}

/** Bytes held, by component (names are the cache's own), plus the total. */
export interface CacheMemory {
  /** Everything this cache holds in memory now (working copies included). */
  total: number;
  components: Record<string, number>;
  /** What a saved or transmitted cache would take: codes, scales, full-precision sinks and buffer. */
  stored: number;
  /** Shared per-model parameters (AQUA-KV predictors), not counted in total or stored. */
  predictors: number;
}

export interface KVCache {
  /** Tokens cached before the step in progress (the position of the next new token). */
  readonly length: number;
  /** Layer `layer` of the current step; layer 0 opens a step, layer L−1 closes it. */
  update(layer: number, keysPreRope: Float32Array, values: Float32Array, n: number): LayerView;
  /** Bytes this cache holds now. */
  memory(): CacheMemory;
}

/**
 * Enforces the seam's ordering contract: layers 0..L−1 in order, the same n for all layers
 * of a step. Caches keep one and call `enter` at the top of `update`.
 */
export class StepOrder {
  private nextLayer = 0;
  private stepTokens = 0;
  /** Tokens fully cached (all layers) before the step in progress. */
  committed = 0;

  constructor(readonly nLayers: number, private readonly where: string) {}

  enter(layer: number, n: number): void {
    if (layer !== this.nextLayer) {
      throw new Error(`${this.where}.update: expected layer ${this.nextLayer}, got layer ${layer} (layers must be written in order each step)`);
    }
    if (layer === 0) this.stepTokens = n;
    else if (n !== this.stepTokens) {
      throw new Error(`${this.where}.update: layer ${layer} got ${n} tokens, layer 0 of this step got ${this.stepTokens}`);
    }
    this.nextLayer = layer + 1;
  }

  /** Call at the end of `update`; closes the step after the last layer. */
  leave(layer: number): void {
    if (layer === this.nLayers - 1) {
      this.committed += this.stepTokens;
      this.nextLayer = 0;
    }
  }
}

/** A growable [rows, C] f32 matrix, the storage of full-precision cache regions. */
export class RowBuffer {
  data: Float32Array;
  rows = 0;

  constructor(readonly width: number, initialRows = 64) {
    this.data = new Float32Array(width * initialRows);
  }

  /** Appends n rows from src [n, width]; returns the index of the first appended row. */
  append(src: Float32Array, n: number): number {
    this.reserve(this.rows + n);
    this.data.set(src.subarray(0, n * this.width), this.rows * this.width);
    const first = this.rows;
    this.rows += n;
    return first;
  }

  reserve(rows: number): void {
    if (rows * this.width <= this.data.length) return;
    const next = new Float32Array(Math.max(rows, this.data.length / this.width * 2) * this.width);
    next.set(this.data.subarray(0, this.rows * this.width));
    this.data = next;
  }

  /** The first `rows` rows as a view. */
  view(): Float32Array {
    return this.data.subarray(0, this.rows * this.width);
  }

  clear(): void {
    this.rows = 0;
  }

  /** Removes the first k rows, keeping the rest in order. */
  dropFront(k: number): void {
    this.data.copyWithin(0, k * this.width, this.rows * this.width);
    this.rows -= k;
  }

  bytes(): number {
    return this.rows * this.width * 4;
  }
}
