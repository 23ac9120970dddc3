/**
 * The Llama-family forward pass (Llama, Qwen2, Mistral), one sequence at a time.
 * Legend: n new tokens this step, T cached tokens after it, D hidden, H query heads,
 * KV key/value heads, hd head dim, C = KV·hd, F MLP width, V vocabulary.
 */
import type { ModelConfig } from './config.js';
import { linear } from '../tensor/half-matrix.js';
import { Workspace } from '../tensor/workspace.js';
import type { KVCache } from './kv-cache.js';
import { attention } from './attention.js';
import { addBias, addInPlace, rmsNorm, splitColumns, swigluRows } from './ops.js';
import { Rope } from './rope.js';
import { fuseProjections, weightsDigest, type FusedLayer, type ModelWeights } from './weights.js';
import { AquaError } from '../errors.js';

/** Named points of the forward pass a caller can observe (calibration capture, debugging). */
export type TapStage = 'keysPreRope' | 'values' | 'attnOutput' | 'hidden';
/** Called with a view valid only during the call: [rows, cols]. */
export type Tap = (stage: TapStage, layer: number, data: Float32Array, rows: number, cols: number) => void;

export interface ForwardOptions {
  /**
   * Which rows of logits to compute: every position, only the last, or none (filling a cache,
   * capture). With none, the last layer stops once its keys and values are in the cache: its
   * attention and MLP feed only the logits (~6% of a Llama-3.2-1B-shaped forward), so taps see no
   * 'attnOutput' or 'hidden' of the last layer.
   */
  logits?: 'all' | 'last' | 'none';
  tap?: Tap;
  /**
   * Start at `layer` from a recorded residual stream x [n, D] entering it (the 'hidden' tap of
   * layer − 1 in an earlier pass over the same tokens): calibration replays the layers an upgrade
   * can change and nothing before them. The cache must hold layers from `layer` on.
   */
  from?: { layer: number; x: Float32Array };
}

export class LlamaModel {
  readonly rope: Rope;
  private ws = new Workspace();

  private readonly fused: FusedLayer[];

  /** Takes `weights` (each layer's q/k/v and gate/up become views into one stacked matrix). */
  constructor(readonly config: ModelConfig, readonly weights: ModelWeights) {
    this.rope = Rope.forConfig(config);
    this.fused = fuseProjections(weights);
  }

  private digest: string | null = null;

  /** Hash of the weights' values (computed once, on first use): which trained model this is. */
  get weightsDigest(): string {
    return (this.digest ??= weightsDigest(this.weights));
  }

  /**
   * Runs n = ids.length new tokens through the model, appending them to `cache`.
   * Returns logits [n, V] ('all'), [1, V] ('last'), or an empty array ('none').
   * The returned array is owned by the caller.
   */
  forward(ids: ArrayLike<number>, cache: KVCache, opts: ForwardOptions = {}): Float32Array {
    const cfg = this.config;
    const w = this.weights;
    const { hiddenSize: D, qDim, kvDim: C, intermediateSize: F, vocabSize: V, rmsNormEps: eps } = cfg;
    const n = ids.length;
    if (n === 0) throw new AquaError('forward: no tokens given');
    const ws = this.ws;
    const startPos = cache.length;

    // token embeddings (or the recorded stream entering the first layer run) → residual stream x [n, D]
    const x = ws.get('x', n * D);
    const firstLayer = opts.from?.layer ?? 0;
    if (opts.from) {
      if (!(Number.isInteger(firstLayer) && firstLayer >= 0 && firstLayer < cfg.nLayers) || opts.from.x.length < n * D) {
        throw new RangeError(`forward: from layer ${firstLayer} needs x of [${n}, ${D}] and a layer in [0, ${cfg.nLayers})`);
      }
      x.set(opts.from.x.subarray(0, n * D));
    } else {
      for (let t = 0; t < n; t++) {
        const id = ids[t];
        if (!Number.isInteger(id) || id < 0 || id >= V) {
          throw new AquaError(`forward: token id ${id} at position ${t} is outside the vocabulary [0, ${V})`);
        }
        if (w.embed instanceof Float32Array) x.set(w.embed.subarray(id * D, (id + 1) * D), t * D);
        else w.embed.rowToF32(id, x.subarray(t * D, (t + 1) * D));
      }
    }
    const xn = ws.get('xn', n * D); // [n, D]
    const qkvDim = qDim + 2 * C;
    const qkv = ws.get('qkv', n * qkvDim); // [n, H·hd + 2C]
    const q = ws.get('q', n * qDim); // [n, H·hd]
    const k = ws.get('k', n * C); // [n, C]
    const v = ws.get('v', n * C); // [n, C]
    const att = ws.get('att', n * qDim); // [n, H·hd]
    const proj = ws.get('proj', n * D); // [n, D]
    const gateUp = ws.get('gateUp', n * 2 * F); // [n, 2F]
    const gate = ws.get('gate', n * F); // [n, F]

    const mode = opts.logits ?? 'all';
    for (let l = firstLayer; l < cfg.nLayers; l++) {
      const lw = w.layers[l];
      // attention block: norm → q/k/v → RoPE(q) → cache (keys go in pre-RoPE) → attention → o → residual
      rmsNorm(xn, x, lw.attnNorm, n, D, eps);
      const fl = this.fused[l];
      linear(qkv, xn, fl.wqkv, n, D, qkvDim);
      if (fl.bqkv) addBias(qkv, fl.bqkv, n);
      splitColumns(qkv, n, [[q, qDim], [k, C], [v, C]]);
      opts.tap?.('keysPreRope', l, k, n, C);
      opts.tap?.('values', l, v, n, C);
      this.rope.apply(q, n, cfg.nHeads, startPos);
      const view = cache.update(l, k, v, n);
      if (mode === 'none' && l === cfg.nLayers - 1) {
        cache.attended?.(l);
        break;
      }
      attention(att, q, view, n, cfg, ws);
      cache.attended?.(l);
      opts.tap?.('attnOutput', l, att, n, qDim);
      linear(proj, att, lw.wo, n, qDim, D);
      if (lw.bo) addBias(proj, lw.bo, n);
      addInPlace(x, proj, n * D);

      // MLP block: norm → gate/up → SwiGLU → down → residual
      rmsNorm(xn, x, lw.mlpNorm, n, D, eps);
      linear(gateUp, xn, fl.wGateUp, n, D, 2 * F);
      swigluRows(gate, gateUp, n, F);
      linear(proj, gate, lw.wDown, n, F, D);
      addInPlace(x, proj, n * D);
      opts.tap?.('hidden', l, x, n, D);
    }

    if (mode === 'none') return new Float32Array(0);
    const rows = mode === 'all' ? n : 1;
    const first = n - rows;
    rmsNorm(xn, x.subarray(first * D), w.finalNorm, rows, D, eps);
    const logits = new Float32Array(rows * V);
    linear(logits, xn, w.lmHead, rows, D, V);
    return logits;
  }
}
