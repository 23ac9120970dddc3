/**
 * The allocation's measurement: the mean KL divergence of a plan's next-token distributions from
 * full precision's, over held-out windows fed through the cache one block at a time, as eval
 * feeds them (./allocate.ts).
 *
 * Replays. A slot of layer l changes nothing before layer l: the residual stream entering layer l
 * and layer l − 1's reconstructions of every compressed block are those of the plan without it,
 * bit for bit. So the measurement of the base plan records them, and the first sweep's
 * measurement of a slot at layer l ≥ 1 (the base plus that slot's upgrade) runs layers l..L−1
 * only, from the record: the same arithmetic as a whole pass, so the same KL to the last bit
 * (tested), for (L − l)/L of the layers' work; the logits and the KL over the vocabulary are
 * paid in full. On the embedded model (6 layers) a replay from layer 1..5 took 0.89, 0.69, 0.58,
 * 0.43, 0.30 of a whole pass; at Llama-3.2-1B's shapes, where the LM head is ~20% of a token's
 * FLOPs, the first sweep should cost ~60% of whole passes.
 * A record holds, per window and recorded layer, the stream [tokens, D] and the previous layer's
 * reconstructions [compressed rows, C] of keys and values; layers are recorded from the last one
 * down while they fit in `maxRecordBytes`, and a slot of a layer without a record is measured whole.
 */
import { CompressedCache, DEFAULT_CACHE_OPTIONS } from '../kv/compressed.js';
import { FullCache } from '../kv/full.js';
import { layerCodecs } from '../kv/factory.js';
import { LayerCodec } from '../kv/layer-codec.js';
import type { PredictorSet } from '../kv/linear-predictor.js';
import { formatMethod, methodKey, type CacheMethod } from '../kv/method.js';
import type { LlamaModel } from '../model/llama.js';
import { klDivergence, runWindow } from '../model/log-probs.js';
import type { QuantizedBlock } from '../quant/quantizer.js';
import type { Workspace } from '../tensor/workspace.js';

/** Most bytes a record of the base pass may take (streams and reconstructions, all windows). */
export const RECORD_MAX_BYTES = 1 << 30;

/** Log-probabilities of the full-precision model at every position but the last: [L − 1, V] per window. */
export function fpLogProbsOf(model: LlamaModel, windows: number[][]): Float32Array[] {
  const V = model.config.vocabSize;
  return windows.map((ids) => {
    const out = new Float32Array((ids.length - 1) * V);
    runWindow(model, ids, ids.length, new FullCache(model), (t, lp) => out.set(lp, t * V));
    return out;
  });
}

/** Reconstructions of compressed blocks, one array [rows, C] per block in compression order. */
interface BlockRows {
  k: Float32Array[];
  v: Float32Array[];
}

/** One window's record: per layer l (recorded ones only) the stream entering l and layer l − 1's reconstructions. */
interface WindowRecord {
  streams: (Float32Array | null)[]; // [L] of [tokens, D]
  prevRec: (BlockRows | null)[]; // [L]
}

/**
 * A layer's codec in a recorded or replayed pass: `seed` gives the previous layer's
 * reconstructions from a record (a replay's first layer, whose previous layer does not run),
 * block after block; `record` receives a copy of each compression's reconstructions.
 */
class ReplayCodec extends LayerCodec {
  private next = 0;

  constructor(c: LayerCodec, private readonly io: { seed?: BlockRows; record?: BlockRows }) {
    super(c.C, c.keyQuantizer, c.valueQuantizer, c.keyPredictor, c.valuePredictor);
  }

  override compress(
    K: Float32Array, V: Float32Array, prevK: Float32Array | null, prevV: Float32Array | null, n: number,
    recK: Float32Array, recV: Float32Array, ws: Workspace,
  ): { keys: QuantizedBlock; values: QuantizedBlock } {
    const { seed, record } = this.io;
    if (seed) {
      const i = this.next++;
      if (seed.k[i]?.length !== n * this.C) throw new Error(`replay: block ${i} of the record does not match a compression of ${n} rows`);
      [prevK, prevV] = [seed.k[i], seed.v[i]];
    }
    const out = super.compress(K, V, prevK, prevV, n, recK, recV, ws);
    record?.k.push(recK.slice(0, n * this.C));
    record?.v.push(recV.slice(0, n * this.C));
    return out;
  }
}

export class KlMeasure {
  private records: WindowRecord[] | null = null;
  private recordedFrom: number;
  /** Measurements made by replay so far. */
  replays = 0;

  constructor(
    private readonly model: LlamaModel,
    private readonly windows: number[][],
    private readonly fp: Float32Array[],
    maxRecordBytes = RECORD_MAX_BYTES,
  ) {
    const { nLayers: L, hiddenSize: D, kvDim: C } = model.config;
    const tokens = windows.reduce((s, w) => s + w.length, 0);
    // layers from the last one down, while their streams and reconstructions fit
    let from = L;
    let bytes = 0;
    while (from > 1 && bytes + tokens * (D + 2 * C) * 4 <= maxRecordBytes) {
      bytes += tokens * (D + 2 * C) * 4;
      from--;
    }
    this.recordedFrom = from;
  }

  /** Layers whose slots are measured by replay once the base is recorded (none when the record would not fit). */
  get replayLayers(): number {
    return this.model.config.nLayers - this.recordedFrom;
  }

  /** Mean KL of `plan` (run with the base's `predictors`) over the windows, whole passes. */
  of(plan: CacheMethod, predictors: PredictorSet): number {
    return this.measure(plan, predictors, 0, null);
  }

  /** `of`, recording what replays from a layer need; a later `from` replays against this plan. */
  recordBase(plan: CacheMethod, predictors: PredictorSet): number {
    const L = this.model.config.nLayers;
    this.records = this.windows.map(() => ({
      streams: Array.from({ length: L }, () => null),
      prevRec: Array.from({ length: L }, () => null),
    }));
    return this.measure(plan, predictors, 0, 'record');
  }

  /**
   * Mean KL of `plan`, which is the recorded base but for slots of layers ≥ `layer`: replayed
   * from `layer` when it is recorded, else a whole pass.
   */
  from(layer: number, plan: CacheMethod, predictors: PredictorSet): number {
    if (!this.records || layer < this.recordedFrom) return this.of(plan, predictors);
    this.replays++;
    return this.measure(plan, predictors, layer, 'replay');
  }

  /** Forgets the record. */
  release(): void {
    this.records = null;
  }

  private measure(plan: CacheMethod, predictors: PredictorSet, first: number, use: 'record' | 'replay' | null): number {
    const model = this.model;
    const { kvDim: C, vocabSize: V, hiddenSize: D, nLayers: L } = model.config;
    const B = DEFAULT_CACHE_OPTIONS.buffer;
    // the base's predictors stand in for the plan's (named for it, so the codecs accept them)
    const set = { ...predictors, method: formatMethod(plan), methodKey: methodKey(plan, C) };
    let kl = 0;
    let n = 0;
    this.windows.forEach((ids, w) => {
      const row = (t: number, lp: Float64Array) => {
        kl += klDivergence(this.fp[w].subarray(t * V, (t + 1) * V), lp, V);
        n++;
      };
      // the cache `createCache` builds for the plan, its codecs wrapped where a record is written or read
      const codecs = layerCodecs(plan, L, C, set);
      let step: Parameters<typeof runWindow>[5];
      if (use === 'record') {
        const record = this.records![w];
        for (let l = this.recordedFrom; l < L; l++) {
          record.streams[l] = new Float32Array(ids.length * D);
          codecs[l - 1] = new ReplayCodec(codecs[l - 1], { record: (record.prevRec[l] = { k: [], v: [] }) });
        }
        // the stream after layer l − 1 is the one entering layer l
        step = (start) => ({
          tap: (stage, layer, data, rows) => {
            if (stage === 'hidden' && layer + 1 >= this.recordedFrom && layer + 1 < L) record.streams[layer + 1]!.set(data.subarray(0, rows * D), start * D);
          },
        });
      } else if (use === 'replay') {
        const record = this.records![w];
        codecs[first] = new ReplayCodec(codecs[first], { seed: record.prevRec[first]! });
        const stream = record.streams[first]!;
        step = (start, rows) => ({ from: { layer: first, x: stream.subarray(start * D, (start + rows) * D) } });
      }
      const cache = new CompressedCache({ ...DEFAULT_CACHE_OPTIONS, host: model, method: plan, plan, codecs, predictors: plan.usesPredictors ? set : null, firstLayer: first });
      runWindow(model, ids, B, cache, row, step);
    });
    return kl / n;
  }
}
