/**
 * Tiny random checkpoints in Hugging Face layout, written by the tests themselves: config.json,
 * safetensors (any dtype, sharded or not), and a tokenizer.json trained on a short text.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { normaliseConfig } from '../src/io/config.js';
import { saveCheckpoint } from '../src/io/checkpoint.js';
import type { StDtype } from '../src/io/safetensors.js';
import { layerShapes, type LayerWeights, type ModelWeights } from '../src/model/weights.js';
import { Rng } from '../src/tensor/rng.js';
import { tokenizerJson, trainBpe } from '../src/train/bpe.js';

export const FIXTURE_TEXT =
  'The Congress shall have power to lay and collect taxes, duties, imposts and excises, to pay the debts ' +
  'and provide for the common defence and general welfare of the United States. We the people of the ' +
  'United States, in order to form a more perfect union, establish justice, insure domestic tranquility.';

export interface FixtureOptions {
  architecture?: 'LlamaForCausalLM' | 'Qwen2ForCausalLM' | 'MistralForCausalLM';
  dtype?: StDtype;
  shards?: number;
  tied?: boolean;
  attentionBias?: boolean;
  llama3Scaling?: boolean;
  layers?: number;
  hidden?: number;
  heads?: number;
  kvHeads?: number;
  headDim?: number;
  seed?: number;
  maxPositions?: number;
  /** config.json's vocab_size (the fixture tokenizer has 300 ids or fewer). */
  vocab?: number;
}

export function fixtureConfig(o: FixtureOptions = {}): Record<string, unknown> {
  const hidden = o.hidden ?? 32;
  const heads = o.heads ?? 4;
  return {
    architectures: [o.architecture ?? 'LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: hidden,
    intermediate_size: hidden * 2 + 8,
    num_hidden_layers: o.layers ?? 3,
    num_attention_heads: heads,
    num_key_value_heads: o.kvHeads ?? 2,
    head_dim: o.headDim ?? 8,
    vocab_size: o.vocab ?? 300,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    rope_scaling: o.llama3Scaling
      ? { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 }
      : null,
    tie_word_embeddings: o.tied ?? true,
    attention_bias: o.attentionBias ?? false,
    max_position_embeddings: o.maxPositions ?? 512,
    bos_token_id: 0,
    eos_token_id: 0,
    hidden_act: 'silu',
    torch_dtype: 'float32',
  };
}

export function randomWeights(raw: Record<string, unknown>, seed = 1): ModelWeights<Float32Array> {
  const cfg = normaliseConfig(raw);
  const rng = new Rng(seed);
  const rand = (n: number, std: number) => rng.fillNormal(new Float32Array(n), std);
  const norm = (n: number) => Float32Array.from({ length: n }, () => 1 + 0.1 * rng.normal());
  const shapes = layerShapes(cfg);
  const layers: LayerWeights<Float32Array>[] = [];
  for (let l = 0; l < cfg.nLayers; l++) {
    const layer: Record<string, Float32Array | null> = {};
    for (const [field, shape] of Object.entries(shapes)) {
      if (!shape) layer[field] = null;
      else if (field.endsWith('Norm')) layer[field] = norm(shape[0]);
      else layer[field] = rand(shape.reduce((a, b) => a * b, 1), shape.length === 1 ? 0.1 : 1 / Math.sqrt(shape[1]));
    }
    layers.push(layer as unknown as LayerWeights<Float32Array>);
  }
  const embed = rand(cfg.vocabSize * cfg.hiddenSize, 1);
  return {
    embed,
    layers,
    finalNorm: norm(cfg.hiddenSize),
    lmHead: cfg.tieWordEmbeddings ? embed : rand(cfg.vocabSize * cfg.hiddenSize, 0.3),
  };
}

/** Writes a complete model directory and returns its path. */
export function makeTinyModel(o: FixtureOptions = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'aquakv-fixture-'));
  const raw = fixtureConfig(o);
  const cfg = normaliseConfig(raw);
  saveCheckpoint(dir, raw, cfg, randomWeights(raw, o.seed ?? 1), o.dtype ?? 'F32', o.shards ?? 1);
  const bpe = trainBpe(FIXTURE_TEXT, { vocabSize: 300 });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson(bpe)));
  return dir;
}

/** A text of `words` random words from the fixture's text (calibration data the fixture tokenizer knows). */
export function randomWordsText(words: number, seed: number): string {
  const vocab = [...new Set(FIXTURE_TEXT.toLowerCase().split(/[^a-z]+/).filter(Boolean))];
  const rng = new Rng(seed);
  return Array.from({ length: words }, () => vocab[rng.int(vocab.length)]).join(' ');
}
