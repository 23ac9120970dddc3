/**
 * How one layer's keys and values are turned into stored blocks and back (AQUA-KV §3):
 *   K̂ = predK(K̃_{l−1}),           K̃_l = K̂ + deQ(Q(K_l − K̂))
 *   V̂ = predV([K̃_l ; Ṽ_{l−1}]),   Ṽ_l = V̂ + deQ(Q(V_l − V̂))
 * Without a predictor the prediction is zero (HIGGS alone, KIVI); a slot kept in full precision
 * has the identity quantizer (the residual stored as f32). Compression and rebuilding do the same
 * arithmetic, so a chunk rebuilt from its codes later is bit-identical to the reconstruction made
 * when it was compressed: on the native product, for HIGGS with one group per token, one product
 * of [previous rebuild | scaled grid points] with [W | H/G] (./fused-rebuild.ts; compression
 * predicts apart first, for the residual it quantizes); otherwise the prediction, then the
 * dequantized residual added onto it.
 */
import type { QuantizedBlock, Quantizer } from '../quant/quantizer.js';
import type { Workspace } from '../tensor/workspace.js';
import { FusedPart } from './fused-rebuild.js';
import type { LinearPredictor, PredictorSet } from './linear-predictor.js';
import { layerQuantizers, type CacheMethod } from './method.js';

export class LayerCodec {
  constructor(
    readonly C: number,
    readonly keyQuantizer: Quantizer,
    readonly valueQuantizer: Quantizer,
    readonly keyPredictor: LinearPredictor | null,
    readonly valuePredictor: LinearPredictor | null,
  ) {}

  private fused: { keys?: FusedPart | null; values?: FusedPart | null } = {};

  /**
   * The keys' rebuild as one product (./fused-rebuild.ts), when it applies now; null: prediction,
   * then the decoded residual added.
   */
  fusedKeys(): FusedPart | null {
    const f = (this.fused.keys ??= FusedPart.of(this.C, this.keyQuantizer, this.keyPredictor));
    return f?.active ? f : null;
  }

  /** The values' rebuild as one product, when it applies now (see `fusedKeys`). */
  fusedValues(): FusedPart | null {
    const f = (this.fused.values ??= FusedPart.of(this.C, this.valueQuantizer, this.valuePredictor));
    return f?.active ? f : null;
  }

  /** K̂ [n, C] (zero without a predictor) from prevK [n, C]. */
  private predictKeys(out: Float32Array, prevK: Float32Array | null, n: number): void {
    if (this.keyPredictor && prevK) this.keyPredictor.apply(out, prevK, n);
    else out.fill(0, 0, n * this.C);
  }

  /** V̂ [n, C] from [K̃ ; prevV] (keys first), without concatenating them; tmp: [n, C] scratch. */
  private predictValues(out: Float32Array, recK: Float32Array, prevV: Float32Array | null, n: number, tmp: Float32Array): void {
    if (!this.valuePredictor || !prevV) {
      out.fill(0, 0, n * this.C);
      return;
    }
    this.valuePredictor.applySplit(out, recK, prevV, this.C, n, tmp);
  }

  /** out [block.rows, C] += the block's residual: straight in where the quantizer can, else through scratch. */
  private static decodeAdd(q: Quantizer, block: QuantizedBlock, out: Float32Array, ws: Workspace): void {
    if (q.dequantizeAdd) {
      q.dequantizeAdd(block, out);
      return;
    }
    const size = block.rows * block.cols;
    const scratch = ws.get('codec.deq', size);
    q.dequantize(block, scratch);
    for (let i = 0; i < size; i++) out[i] += scratch[i];
  }

  /**
   * Compresses n tokens: K, V [n, C] (keys in the space they are quantized in), given the
   * previous layer's reconstructions of the same tokens (null for layer 0). Writes this layer's
   * reconstructions into recK, recV [n, C] and returns the stored blocks.
   */
  compress(
    K: Float32Array, V: Float32Array, prevK: Float32Array | null, prevV: Float32Array | null, n: number,
    recK: Float32Array, recV: Float32Array, ws: Workspace,
  ): { keys: QuantizedBlock; values: QuantizedBlock } {
    const keys = this.compressKeys(K, prevK, n, recK, ws);
    const values = this.compressValues(V, recK, prevV, n, recV, ws);
    return { keys, values };
  }

  /**
   * The keys' half of `compress`: K [n, C] from prevK (null for layer 0) into recK [n, C].
   * Calibration calls the halves apart: it fits the value predictor between them.
   */
  compressKeys(K: Float32Array, prevK: Float32Array | null, n: number, recK: Float32Array, ws: Workspace): QuantizedBlock {
    // the prediction goes where the reconstruction will be: the same arithmetic as
    // `reconstructBlocks` (whose prediction of the same inputs is the same)
    this.predictKeys(recK, prevK, n);
    return this.quantizeOnto(this.keyQuantizer, K, recK, n, ws, this.fusedKeys(), this.keyInputs(prevK));
  }

  /** The values' half of `compress`, given this layer's reconstructed keys recK [n, C]. */
  compressValues(V: Float32Array, recK: Float32Array, prevV: Float32Array | null, n: number, recV: Float32Array, ws: Workspace): QuantizedBlock {
    this.predictValues(recV, recK, prevV, n, ws.get('codec.tmp', n * this.C));
    return this.quantizeOnto(this.valueQuantizer, V, recV, n, ws, this.fusedValues(), this.valueInputs(recK, prevV));
  }

  /** The key predictor's inputs as the fused product takes them: [K̃_{l−1}], or none. */
  private keyInputs(prevK: Float32Array | null): Float32Array[] {
    return this.keyPredictor && prevK ? [prevK] : [];
  }

  /** The value predictor's inputs: [K̃_l, Ṽ_{l−1}], or none. */
  private valueInputs(recK: Float32Array, prevV: Float32Array | null): Float32Array[] {
    return this.valuePredictor && prevV ? [recK, prevV] : [];
  }

  /**
   * Quantizes exact − rec (rec holding the prediction) and writes the reconstruction into rec: the
   * fused product of the predictor's inputs and the block where `fused` serves, else the
   * dequantized residual added onto the prediction.
   */
  private quantizeOnto(
    q: Quantizer, exact: Float32Array, rec: Float32Array, n: number, ws: Workspace, fused: FusedPart | null, inputs: Float32Array[],
  ): QuantizedBlock {
    const size = n * this.C;
    const r = ws.get('codec.residual', size);
    for (let i = 0; i < size; i++) r[i] = exact[i] - rec[i];
    const block = q.quantize(r, n);
    if (fused) fused.rebuild(inputs, [block], n, rec);
    else LayerCodec.decodeAdd(q, block, rec, ws);
    return block;
  }

  /**
   * Rebuilds the tokens of several blocks laid end to end (n rows in all; prevK, prevV, recK, recV
   * [n, C]) from their codes and the previous layer's rebuild, with one predictor product per part
   * for all of them. Row for row the same arithmetic as `compress` (a product's row does not
   * depend on the rows beside it).
   * prevK is used as scratch once the keys are rebuilt (the caller no longer needs it).
   */
  reconstructBlocks(
    blocks: { keys: QuantizedBlock; values: QuantizedBlock }[], prevK: Float32Array | null, prevV: Float32Array | null, n: number,
    recK: Float32Array, recV: Float32Array, ws: Workspace,
  ): void {
    const C = this.C;
    const fusedKeys = this.fusedKeys();
    if (fusedKeys) fusedKeys.rebuild(this.keyInputs(prevK), blocks.map((b) => b.keys), n, recK);
    else {
      this.predictKeys(recK, prevK, n);
      LayerCodec.decodeAddAll(this.keyQuantizer, blocks.map((b) => b.keys), recK, ws);
    }
    const fusedValues = this.fusedValues();
    if (fusedValues) fusedValues.rebuild(this.valueInputs(recK, prevV), blocks.map((b) => b.values), n, recV);
    else {
      const needsTmp = this.valuePredictor !== null && prevV !== null;
      this.predictValues(recV, recK, prevV, n, prevK ?? (needsTmp ? ws.get('codec.tmp', n * C) : new Float32Array(0)));
      LayerCodec.decodeAddAll(this.valueQuantizer, blocks.map((b) => b.values), recV, ws);
    }
  }

  /** out [Σ rows, C] += each block's residual, the blocks' rows end to end. */
  private static decodeAddAll(q: Quantizer, blocks: QuantizedBlock[], out: Float32Array, ws: Workspace): void {
    let row = 0;
    for (const b of blocks) {
      LayerCodec.decodeAdd(q, b, out.subarray(row * b.cols), ws);
      row += b.rows;
    }
  }
}

/** Rows of every layer compressed together: each layer's blocks and reconstruction ([rows, C] each; keys as stored). */
export interface CompressedLayers {
  keys: QuantizedBlock[]; // [L]
  values: QuantizedBlock[];
  rebuilt: { k: Float32Array; v: Float32Array }[];
}

/**
 * Compresses `rows` tokens through every layer at once, layer l from layer l−1's reconstruction
 * (what a cache's steps do layer by layer as the forward pass brings them): keys(l), values(l)
 * [rows, C], as stored. The background thread's jobs, and a filling step the thread did not answer.
 */
export function compressLayers(codecs: LayerCodec[], keys: (l: number) => Float32Array, values: (l: number) => Float32Array, rows: number, ws: Workspace): CompressedLayers {
  const out: CompressedLayers = { keys: [], values: [], rebuilt: [] };
  let prev: { k: Float32Array; v: Float32Array } | null = null;
  codecs.forEach((codec, l) => {
    const rec = { k: new Float32Array(rows * codec.C), v: new Float32Array(rows * codec.C) };
    const stored = codec.compress(keys(l), values(l), prev?.k ?? null, prev?.v ?? null, rows, rec.k, rec.v, ws);
    out.keys.push(stored.keys);
    out.values.push(stored.values);
    out.rebuilt.push(rec);
    prev = rec;
  });
  return out;
}

/** The per-layer codecs of a plan (factory.ts `resolvePlan`'s result; quantizers are shared between slots of the same spec). */
export function layerCodecs(plan: CacheMethod, nLayers: number, C: number, predictors: PredictorSet | null): LayerCodec[] {
  const q = layerQuantizers(plan, C, nLayers);
  const p = plan.usesPredictors ? predictors : null;
  return Array.from({ length: nLayers }, (_, l) => new LayerCodec(C, q.keys[l], q.values[l], p?.keys[l] ?? null, p?.values[l] ?? null));
}
