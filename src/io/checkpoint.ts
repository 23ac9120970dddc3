/**
 * A model directory in HF layout: config.json, model.safetensors (or shards listed in
 * model.safetensors.index.json), tokenizer.json. Loading checks every tensor's presence and shape.
 */
import { existsSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { AquaError } from '../errors.js';
import { platform } from '../platform/index.js';
import { readConfig } from './config.js';
import type { ModelConfig } from '../model/config.js';
import { SafetensorsFile, writeSafetensors, type StDtype, type TensorToWrite } from './safetensors.js';
import { EMBED, FINAL_NORM, LM_HEAD, layerTensorName } from './hf-names.js';
import { layerShapes, type LayerWeights, type ModelWeights } from '../model/weights.js';
import { assembleWeights, TensorIndex } from './weights-assembly.js';
import { matrixToF32 } from '../tensor/half-matrix.js';

/** Tensor lookup across one file or several shards, opened from a model directory. */
class TensorSource extends TensorIndex {
  private files = new Map<string, SafetensorsFile>();

  constructor(dir: string) {
    super();
    const single = join(dir, 'model.safetensors');
    const index = join(dir, 'model.safetensors.index.json');
    if (existsSync(index)) {
      let map: Record<string, unknown>;
      try {
        map = (JSON.parse(platform.readText(index)) as { weight_map: Record<string, unknown> })?.weight_map;
      } catch (e) {
        if (e instanceof AquaError) throw e;
        throw new AquaError(`${index} is not valid JSON: ${(e as Error).message}`);
      }
      if (!map || typeof map !== 'object' || Array.isArray(map)) throw new AquaError(`${index}: missing "weight_map"`);
      for (const [name, file] of Object.entries(map)) {
        if (typeof file !== 'string' || file.includes('/') || file.includes('\\')) throw new AquaError(`${index}: weight_map maps ${name} to ${JSON.stringify(file)}, not a file name`);
        let f = this.files.get(file);
        if (!f) {
          f = SafetensorsFile.open(join(dir, file));
          this.files.set(file, f);
        }
        if (!f.entries.has(name)) throw new AquaError(`${index} maps ${name} to ${file}, which does not contain it`);
        this.add(f, name);
      }
    } else if (existsSync(single)) {
      const f = SafetensorsFile.open(single);
      this.files.set('model.safetensors', f);
      this.add(f);
    } else {
      throw new AquaError(`${dir} has neither model.safetensors nor model.safetensors.index.json`);
    }
  }

  close(): void {
    for (const f of this.files.values()) f.close();
  }
}

export function loadWeights(dir: string, cfg: ModelConfig): ModelWeights {
  const src = new TensorSource(dir);
  try {
    return assembleWeights(src, cfg, `the checkpoint in ${dir}`);
  } finally {
    src.close();
  }
}

export interface LoadedModel {
  dir: string;
  config: ModelConfig;
  weights: ModelWeights;
}

export function loadModelDir(dir: string): LoadedModel {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new AquaError(`model directory ${dir} does not exist`);
  const config = readConfig(join(dir, 'config.json'));
  const weights = loadWeights(dir, config);
  return { dir, config, weights };
}

/** The tensors of a model under their HF names (what a checkpoint writer saves). */
export function namedTensors(cfg: ModelConfig, w: ModelWeights, dtype: StDtype): TensorToWrite[] {
  const out: TensorToWrite[] = [{ name: EMBED, shape: [cfg.vocabSize, cfg.hiddenSize], data: matrixToF32(w.embed), dtype }];
  const shapes = layerShapes(cfg);
  w.layers.forEach((layer, l) => {
    for (const [field, shape] of Object.entries(shapes)) {
      const data = layer[field as keyof LayerWeights];
      if (shape && data) out.push({ name: layerTensorName(l, field as keyof LayerWeights), shape, data: matrixToF32(data), dtype });
    }
  });
  out.push({ name: FINAL_NORM, shape: [cfg.hiddenSize], data: w.finalNorm, dtype });
  if (!cfg.tieWordEmbeddings) out.push({ name: LM_HEAD, shape: [cfg.vocabSize, cfg.hiddenSize], data: matrixToF32(w.lmHead), dtype });
  return out;
}

/** Writes config.json and weights; `shards` > 1 splits tensors across files with an index. */
export function saveCheckpoint(dir: string, rawConfig: object, cfg: ModelConfig, w: ModelWeights, dtype: StDtype, shards = 1): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(rawConfig, null, 2) + '\n');
  const tensors = namedTensors(cfg, w, dtype);
  if (shards <= 1) {
    writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    return;
  }
  const weightMap: Record<string, string> = {};
  const per = Math.ceil(tensors.length / shards);
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = tensors.slice(s * per, (s + 1) * per);
    for (const t of part) weightMap[t.name] = file;
    writeSafetensors(join(dir, file), part, { format: 'pt' });
  }
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 2));
}
