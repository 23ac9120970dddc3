/**
 * A model's weights from its HF-named tensors, wherever they are read from (files in Node,
 * bytes in a browser): every tensor present, of the shape config.json implies, and finite.
 */
import { AquaError } from '../errors.js';
import type { ModelConfig } from '../model/config.js';
import { layerShapes, type LayerWeights, type ModelWeights } from '../model/weights.js';
import type { TensorEntry } from './safetensors-format.js';
import { EMBED, FINAL_NORM, LM_HEAD, layerTensorName } from './hf-names.js';

/** Where tensors come from. `read` checks presence, shape and finiteness. */
export interface TensorReader {
  read(name: string, shape: number[]): Float32Array;
  /** The highest layer index any tensor name mentions, or −1. */
  maxLayerIndex(): number;
}

export function assembleWeights(src: TensorReader, cfg: ModelConfig, where: string): ModelWeights {
  const last = src.maxLayerIndex();
  if (last >= cfg.nLayers) {
    throw new AquaError(`${where} has tensors of layer ${last}, but config.json says num_hidden_layers = ${cfg.nLayers}`, 'a config that drops layers would run another model');
  }
  const { hiddenSize: D, vocabSize: V } = cfg;
  const embed = src.read(EMBED, [V, D]);
  const shapes = layerShapes(cfg);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < cfg.nLayers; l++) {
    const layer = {} as Record<string, Float32Array | null>;
    for (const [field, shape] of Object.entries(shapes)) {
      layer[field] = shape ? src.read(layerTensorName(l, field as keyof LayerWeights), shape) : null;
    }
    layers.push(layer as unknown as LayerWeights);
  }
  const finalNorm = src.read(FINAL_NORM, [D]);
  // Some tied checkpoints still carry lm_head.weight; HF ignores it when tied.
  const lmHead = cfg.tieWordEmbeddings ? embed : src.read(LM_HEAD, [V, D]);
  return { embed, layers, finalNorm, lmHead };
}

/** Checks a tensor's shape and values; `data` read only after the shape is right. */
export function checkedTensor(name: string, actual: number[], shape: number[], data: () => Float32Array): Float32Array {
  if (actual.length !== shape.length || actual.some((d, i) => d !== shape[i])) {
    throw new AquaError(`tensor ${name} has shape [${actual}], expected [${shape}] from config.json`);
  }
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
}

/** Tensors by name across one safetensors file or several shards. */
export class TensorIndex implements TensorReader {
  protected owner = new Map<string, TensorFile>();

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

  maxLayerIndex(): number {
    let max = -1;
    for (const name of this.owner.keys()) {
      const m = /^model\.layers\.(\d+)\./.exec(name);
      if (m) max = Math.max(max, Number(m[1]));
    }
    return max;
  }
}
