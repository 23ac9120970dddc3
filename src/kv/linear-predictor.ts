/**
 * An affine predictor y = x·Wᵀ + b, the only part of AQUA-KV's calibration used at inference
 * (fitted in predictors/, applied here by the cache's layer codecs).
 *   keys:   in = C  (reconstructed keys of layer l−1)            → out = C
 *   values: in = 2C ([reconstructed keys of l ; values of l−1])  → out = C
 */
import { addBias } from '../model/ops.js';
import { gemmRowwise } from '../tensor/gemm.js';
import { platform } from '../platform/index.js';

export class LinearPredictor {
  constructor(
    readonly weight: Float32Array, // [out, in]
    readonly bias: Float32Array, // [out]
    readonly inDim: number,
    readonly outDim: number,
  ) {
    if (weight.length !== inDim * outDim || bias.length !== outDim) {
      throw new RangeError(`LinearPredictor: weight ${weight.length} / bias ${bias.length} do not fit [${outDim}, ${inDim}]`);
    }
  }

  /** out [n, outDim] = x [n, inDim] · Wᵀ + b; each row's result is independent of n (see gemmRowwise). */
  apply(out: Float32Array, x: Float32Array, n: number): void {
    gemmRowwise(out, x, this.weight, n, this.inDim, this.outDim, true);
    addBias(out, this.bias, n);
  }

  private split: { first: Float32Array; second: Float32Array; in1: number } | null = null;

  /**
   * out [n, outDim] = [x1 | x2] · Wᵀ + b, the input given in two parts (x1 [n, in1], x2
   * [n, inDim − in1]) so no concatenated copy is made: two products, the second through `tmp`
   * [n, outDim]. Rows are independent of n, as in `apply`.
   */
  applySplit(out: Float32Array, x1: Float32Array, x2: Float32Array, in1: number, n: number, tmp: Float32Array): void {
    const { inDim, outDim } = this;
    if (this.split?.in1 !== in1) {
      const first = new Float32Array(outDim * in1);
      const second = new Float32Array(outDim * (inDim - in1));
      for (let o = 0; o < outDim; o++) {
        first.set(this.weight.subarray(o * inDim, o * inDim + in1), o * in1);
        second.set(this.weight.subarray(o * inDim + in1, (o + 1) * inDim), o * (inDim - in1));
      }
      this.split = { first, second, in1 };
    }
    gemmRowwise(out, x1, this.split.first, n, in1, outDim, true);
    gemmRowwise(tmp, x2, this.split.second, n, inDim - in1, outDim, true);
    const b = this.bias;
    for (let t = 0; t < n; t++) {
      const o = t * outDim;
      for (let i = 0; i < outDim; i++) out[o + i] += tmp[o + i] + b[i];
    }
  }

  get parameters(): number {
    return this.weight.length + this.bias.length;
  }
}

/**
 * The predictors of one model, for one cache method: index l holds layer l's (layer 0 has none).
 * Predictors are fitted through a method's quantizers (on reconstructed inputs), so they belong
 * to that method: `method` names it as written, `methodKey` with every quantizer resolved for
 * this model, which is what a cache compares against its own; budgeted calibration records its
 * budget beside the plan it chose.
 */
export interface PredictorSet {
  method: string;
  methodKey: string;
  /** For budgeted calibration: the budget (bits per value) `method`, the chosen plan, was allocated for. */
  budget: number | null;
  keys: (LinearPredictor | null)[]; // [L]
  values: (LinearPredictor | null)[]; // [L]
}

export function predictorBytes(p: PredictorSet, bytesPerParam = 4): number {
  let n = 0;
  for (const x of [...p.keys, ...p.values]) if (x) n += x.parameters;
  return n * bytesPerParam;
}

const digests = new WeakMap<PredictorSet, string>();

/** A hash of the predictors' values (keys and values, layer by layer): which fit a saved cache needs. */
export function predictorsDigest(p: PredictorSet): string {
  let d = digests.get(p);
  if (d === undefined) {
    const h = platform.sha256();
    for (const [part, list] of [['key', p.keys], ['value', p.values]] as const) {
      list.forEach((x, l) => {
        if (!x) return;
        h.update(`${part}.${l}:${x.outDim}x${x.inDim};`);
        h.update(new Uint8Array(x.weight.buffer, x.weight.byteOffset, x.weight.byteLength));
        h.update(new Uint8Array(x.bias.buffer, x.bias.byteOffset, x.bias.byteLength));
      });
    }
    d = h.digest();
    digests.set(p, d);
  }
  return d;
}
