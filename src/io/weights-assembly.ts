/**
 * A model's weights from its HF-named tensors, wherever they are read from (files in Node,
 * bytes in a browser): every tensor present, of the shape config.json implies, and finite.
 */
import { AquaError } from '../errors.js';
import type { ModelConfig } from '../model/config.js';
import { layerShapes, type LayerWeights, type Matrix, type ModelWeights } from '../model/weights.js';
import { HalfMatrix, firstNonFinite } from '../tensor/half-matrix.js';
import { ArenaSet } from '../tensor/wasm-arena.js';
import type { TensorEntry } from './safetensors-format.js';
import { EMBED, FINAL_NORM, LM_HEAD, layerTensorName } from './hf-names.js';

/** Where tensors come from. `read` checks presence, shape and finiteness. */
export interface TensorReader {
  read(name: string, shape: number[]): Float32Array;
  /** A weight matrix [rows, cols]: kept in 16 bits when stored so (F16, BF16), else f32. Checked as `read`. */
  readMatrix(name: string, shape: [number, number]): Matrix;
  /** The highest layer index any tensor name mentions, or −1. */
  maxLayerIndex(): number;
}

export function assembleWeights(src: TensorReader, cfg: ModelConfig, where: string): ModelWeights {
  const last = src.maxLayerIndex();
  if (last >= cfg.nLayers) {
    throw new AquaError(`${where} has tensors of layer ${last}, but config.json says num_hidden_layers = ${cfg.nLayers}`, 'a config that drops layers would run another model');
  }
  const { hiddenSize: D, vocabSize: V } = cfg;
  const embed = src.readMatrix(EMBED, [V, D]);
  const shapes = layerShapes(cfg);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < cfg.nLayers; l++) {
    const layer = {} as Record<string, Matrix | null>;
    // in field order, so a layer's q, k, v (and gate, up) land side by side and stack in place
    for (const [field, shape] of Object.entries(shapes)) {
      const name = layerTensorName(l, field as keyof LayerWeights);
      layer[field] = !shape ? null : MATRIX_FIELDS.has(field) ? src.readMatrix(name, shape as [number, number]) : src.read(name, shape);
    }
    layers.push(layer as unknown as LayerWeights);
  }
  const finalNorm = src.read(FINAL_NORM, [D]);
  // Some tied checkpoints still carry lm_head.weight; HF ignores it when tied.
  const lmHead = cfg.tieWordEmbeddings ? embed : src.readMatrix(LM_HEAD, [V, D]);
  return { embed, layers, finalNorm, lmHead };
}

/** The fields of a layer that are matrices (the rest are norms and biases, kept f32). */
const MATRIX_FIELDS = new Set<string>(['wq', 'wk', 'wv', 'wo', 'wGate', 'wUp', 'wDown']);

function checkShape(name: string, actual: number[], shape: number[]): void {
  if (actual.length !== shape.length || actual.some((d, i) => d !== shape[i])) {
    throw new AquaError(`tensor ${name} has shape [${actual}], expected [${shape}] from config.json`);
  }
}

/** Checks a tensor's shape and values; `data` read only after the shape is right. */
export function checkedTensor(name: string, actual: number[], shape: number[], data: () => Float32Array): Float32Array {
  checkShape(name, actual, shape);
  const x = data();
  // non-finite ⇔ the exponent bits are all ones: an integer test per value
  const bits = new Int32Array(x.buffer, x.byteOffset, x.length);
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i] & 0x7f800000) === 0x7f800000) throw new AquaError(`tensor ${name} holds ${x[i]} at index ${i}: a checkpoint's weights must be finite`);
  }
  return x;
}

/** What a safetensors reader offers, from a file (Node) or from bytes. */
export interface TensorFile {
  readonly entries: Map<string, TensorEntry>;
  readF32(name: string): Float32Array;
  /** Copies tensor `name`'s stored bytes into `into` (exactly its size). */
  readBytes(name: string, into: Uint8Array): void;
}

/** Tensors by name across one safetensors file or several shards. */
export class TensorIndex implements TensorReader {
  protected owner = new Map<string, TensorFile>();
  /** Where 16-bit matrices are kept: WebAssembly memory the product kernels read. */
  private store: ArenaSet | null = null;

  /** Every tensor of `file` (or only `name`) is read from it. */
  add(file: TensorFile, name?: string): void {
    if (name !== undefined) this.owner.set(name, file);
    else for (const n of file.entries.keys()) this.owner.set(n, file);
  }

  has(name: string): boolean {
    return this.owner.has(name);
  }

  read(name: string, shape: number[]): Float32Array {
    const f = this.owner.get(name);
    if (!f) throw new AquaError(`checkpoint is missing tensor ${name} (expected shape [${shape}])`);
    return checkedTensor(name, f.entries.get(name)!.shape, shape, () => f.readF32(name));
  }

  readMatrix(name: string, shape: [number, number]): Matrix {
    const f = this.owner.get(name);
    if (!f) throw new AquaError(`checkpoint is missing tensor ${name} (expected shape [${shape}])`);
    const entry = f.entries.get(name)!;
    if (entry.dtype !== 'F16' && entry.dtype !== 'BF16') return this.read(name, shape);
    checkShape(name, entry.shape, shape);
    const dtype = entry.dtype === 'F16' ? 'f16' : 'bf16';
    const m = HalfMatrix.allocate((this.store ??= new ArenaSet()), dtype, shape[0], shape[1]);
    f.readBytes(name, m.bytes());
    const bad = firstNonFinite(dtype, m.bits());
    if (bad >= 0) throw new AquaError(`tensor ${name} holds ${m.toF32(Math.floor(bad / shape[1]), Math.floor(bad / shape[1]) + 1)[bad % shape[1]]} at index ${bad}: a checkpoint's weights must be finite`);
    return m;
  }

  maxLayerIndex(): number {
    let max = -1;
    for (const name of this.owner.keys()) {
      const m = /^model\.layers\.(\d+)\./.exec(name);
      if (m) max = Math.max(max, Number(m[1]));
    }
    return max;
  }
}
