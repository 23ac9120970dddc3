/**
 * config.json → a frozen, validated `ModelConfig`. This is the one place that knows HF's field
 * names and per-architecture defaults (transformers' LlamaConfig, Qwen2Config, MistralConfig).
 */
import { AquaError } from '../errors.js';
import { SUPPORTED_ARCHITECTURES, type Architecture, type Llama3RopeScaling, type ModelConfig } from '../model/config.js';
import { platform } from '../platform/index.js';

type Json = Record<string, unknown>;

function num(cfg: Json, key: string, where: string, fallback?: number): number {
  const v = cfg[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new AquaError(`${where}: missing required field "${key}"`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new AquaError(`${where}: field "${key}" must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function positive(cfg: Json, key: string, where: string, fallback?: number): number {
  const v = num(cfg, key, where, fallback);
  if (!(v > 0)) throw new AquaError(`${where}: field "${key}" must be positive, got ${v}`);
  return v;
}

function posInt(cfg: Json, key: string, where: string, fallback?: number): number {
  const v = num(cfg, key, where, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new AquaError(`${where}: field "${key}" must be a positive integer, got ${v}`);
  return v;
}

/** Normalises a parsed config.json. `where` names the source in errors. */
export function normaliseConfig(cfg: Json, where = 'config.json'): ModelConfig {
  const archs = cfg.architectures;
  const architecture = (Array.isArray(archs) ? archs[0] : undefined) as string | undefined;
  if (!architecture || !SUPPORTED_ARCHITECTURES.includes(architecture as Architecture)) {
    throw new AquaError(
      `${where}: unsupported architecture ${JSON.stringify(architecture ?? cfg.model_type ?? null)}`,
      `supported: ${SUPPORTED_ARCHITECTURES.join(', ')}`,
    );
  }
  const arch = architecture as Architecture;
  const hiddenSize = posInt(cfg, 'hidden_size', where);
  const nHeads = posInt(cfg, 'num_attention_heads', where);
  const nKvHeads = posInt(cfg, 'num_key_value_heads', where, nHeads);
  if (nHeads % nKvHeads !== 0) throw new AquaError(`${where}: num_attention_heads ${nHeads} is not a multiple of num_key_value_heads ${nKvHeads}`);
  const headDim = posInt(cfg, 'head_dim', where, Math.floor(hiddenSize / nHeads));
  if (headDim % 2 !== 0) throw new AquaError(`${where}: head_dim ${headDim} must be even for rotary embeddings`);
  if (cfg.mlp_bias === true) throw new AquaError(`${where}: mlp_bias=true is not supported`);
  if (cfg.hidden_act !== undefined && cfg.hidden_act !== 'silu') throw new AquaError(`${where}: hidden_act ${JSON.stringify(cfg.hidden_act)} is not supported (only silu)`);

  const rope = ropeFields(cfg, where);
  const ropeScaling = rope.scaling;
  const attentionBias = cfg.attention_bias === true;
  const eos = cfg.eos_token_id;
  const eosTokenIds = Array.isArray(eos) ? (eos as number[]) : typeof eos === 'number' ? [eos] : [];
  const useSliding = arch === 'MistralForCausalLM' || (arch === 'Qwen2ForCausalLM' && cfg.use_sliding_window === true);
  const sw = cfg.sliding_window;
  if (useSliding && sw !== undefined && sw !== null && !(Number.isInteger(sw) && (sw as number) > 0)) {
    throw new AquaError(`${where}: field "sliding_window" must be a positive integer or null, got ${JSON.stringify(sw)}`);
  }
  const slidingWindow = useSliding && typeof sw === 'number' ? sw : null;
  const fields = {
    architecture: arch,
    hiddenSize,
    intermediateSize: posInt(cfg, 'intermediate_size', where),
    nLayers: posInt(cfg, 'num_hidden_layers', where),
    nHeads,
    nKvHeads,
    headDim,
    qDim: nHeads * headDim,
    kvDim: nKvHeads * headDim,
    vocabSize: posInt(cfg, 'vocab_size', where),
    rmsNormEps: positive(cfg, 'rms_norm_eps', where, 1e-6),
    ropeTheta: rope.theta,
    ropeScaling,
    tieWordEmbeddings: cfg.tie_word_embeddings === true,
    qkvBias: arch === 'Qwen2ForCausalLM' ? true : attentionBias,
    oBias: arch === 'LlamaForCausalLM' ? attentionBias : false,
    // with a sliding window, attention beyond it is not implemented: contexts stop at the window,
    // inside which sliding and full attention are the same
    maxPositionEmbeddings: Math.min(posInt(cfg, 'max_position_embeddings', where, 2048), slidingWindow ?? Infinity),
    slidingWindow,
    bosTokenId: typeof cfg.bos_token_id === 'number' ? cfg.bos_token_id : null,
    eosTokenIds,
  };
  const fingerprint = platform.sha256().update(JSON.stringify(fields)).digest();
  return Object.freeze({ ...fields, fingerprint });
}

/**
 * RoPE's base and scaling. transformers before 5 writes them as "rope_theta" and "rope_scaling";
 * 5 writes one "rope_parameters" (rope_type, rope_theta and the scaling's fields together, or one
 * such object per layer type). Both are read; where a config has both, they must agree.
 */
function ropeFields(cfg: Json, where: string): { theta: number; scaling: Llama3RopeScaling | null } {
  let params = cfg.rope_parameters as Json | null | undefined;
  const at = `${where} rope_parameters`;
  if (params !== undefined && params !== null) {
    if (typeof params !== 'object' || Array.isArray(params)) throw new AquaError(`${at}: expected an object, got ${JSON.stringify(params)}`);
    // one object per layer type ({"full_attention": {...}, "sliding_attention": {...}}): served when they are all the same
    if (!('rope_type' in params) && !('rope_theta' in params)) {
      const kinds = Object.values(params);
      if (kinds.length === 0 || kinds.some((k) => typeof k !== 'object' || k === null || Array.isArray(k))) {
        throw new AquaError(`${at}: expected "rope_type" and "rope_theta", or one such object per layer type`, `got ${JSON.stringify(params)}`);
      }
      if (kinds.some((k) => JSON.stringify(k) !== JSON.stringify(kinds[0]))) {
        throw new AquaError(`${at}: different RoPE per layer type is not supported`, `got ${JSON.stringify(params)}`);
      }
      params = kinds[0] as Json;
    }
  }
  const legacyTheta = positive(cfg, 'rope_theta', where, 10000);
  const theta = params ? positive(params, 'rope_theta', at, legacyTheta) : legacyTheta;
  if (params && cfg.rope_theta !== undefined && cfg.rope_theta !== null && legacyTheta !== theta) {
    throw new AquaError(`${where}: "rope_theta" ${cfg.rope_theta} and rope_parameters.rope_theta ${theta} disagree`);
  }
  const legacy = cfg.rope_scaling as Json | null | undefined;
  const fromParams = params ? ropeScalingOf(params, at) : null;
  const fromLegacy = legacy ? ropeScalingOf(legacy, `${where} rope_scaling`) : null;
  if (params && legacy && JSON.stringify(fromParams) !== JSON.stringify(fromLegacy)) {
    throw new AquaError(`${where}: "rope_scaling" and "rope_parameters" disagree`, `rope_scaling ${JSON.stringify(legacy)}, rope_parameters ${JSON.stringify(params)}`);
  }
  return { theta, scaling: params ? fromParams : fromLegacy };
}

/** The scaling an object of RoPE fields describes: null for the default (none), else llama3's. */
function ropeScalingOf(rs: Json, at: string): Llama3RopeScaling | null {
  const type = rs.rope_type ?? rs.type ?? 'default';
  if (type === 'default') return null;
  if (type !== 'llama3') throw new AquaError(`${at}: rope type ${JSON.stringify(type)} is not supported`, 'supported: none, "default", "llama3"');
  const scaling: Llama3RopeScaling = {
    type: 'llama3',
    factor: positive(rs, 'factor', at),
    lowFreqFactor: positive(rs, 'low_freq_factor', at),
    highFreqFactor: positive(rs, 'high_freq_factor', at),
    originalMaxPositionEmbeddings: posInt(rs, 'original_max_position_embeddings', at),
  };
  if (!(scaling.highFreqFactor > scaling.lowFreqFactor)) {
    throw new AquaError(`${at}: high_freq_factor ${scaling.highFreqFactor} must exceed low_freq_factor ${scaling.lowFreqFactor}`);
  }
  return scaling;
}

export function readConfig(path: string): ModelConfig {
  if (!platform.exists(path)) throw new AquaError(`cannot read ${path}`, 'a model directory needs config.json');
  const text = platform.readText(path);
  let cfg: unknown;
  try {
    cfg = JSON.parse(text);
  } catch (e) {
    throw new AquaError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw new AquaError(`${path}: expected a JSON object`);
  return normaliseConfig(cfg as Json, path);
}
