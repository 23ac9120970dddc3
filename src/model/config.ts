/**
 * The model's configuration, normalised once from config.json (io/config.ts knows HF's field
 * names and defaults); everything else reads only this frozen object.
 */
export type Architecture = 'LlamaForCausalLM' | 'Qwen2ForCausalLM' | 'MistralForCausalLM';
export const SUPPORTED_ARCHITECTURES: readonly Architecture[] = ['LlamaForCausalLM', 'Qwen2ForCausalLM', 'MistralForCausalLM'];

/** Llama 3 "llama3" rope_scaling: long wavelengths are divided by `factor`, short ones kept. */
export interface Llama3RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

export interface ModelConfig {
  architecture: Architecture;
  hiddenSize: number; // D
  intermediateSize: number; // F
  nLayers: number; // L
  nHeads: number; // H (query heads)
  nKvHeads: number; // KV heads (grouped-query attention)
  headDim: number; // hd
  qDim: number; // H·hd
  kvDim: number; // KV·hd = C, the per-token width of one layer's keys (and values)
  vocabSize: number; // V
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: Llama3RopeScaling | null;
  tieWordEmbeddings: boolean;
  qkvBias: boolean; // Qwen2: always; Llama: attention_bias
  oBias: boolean; // Llama attention_bias also biases o_proj; Qwen2 does not
  maxPositionEmbeddings: number;
  slidingWindow: number | null; // Mistral; attention beyond it is not implemented, so contexts are capped there
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** sha256 of the normalised fields above: what predictor files are checked against. */
  fingerprint: string;
}
