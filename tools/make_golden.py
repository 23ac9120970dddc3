#!/usr/bin/env python3
"""Writes the golden checkpoints of tests/golden/ and their logits, independently of aquakv's own
code: the checkpoints are written here with NumPy (a safetensors writer of a dozen lines, not
aquakv's saveCheckpoint), and the logits come from tools/reference_llama.py's float64 forward
pass (written from transformers' modeling_llama.py). `npm test` loads each checkpoint with aquakv
and compares its logits to these (tests/golden.test.ts).

  python3 tools/make_golden.py        # rewrites tests/golden/ (deterministic: fixed seeds)
"""
import json, os, struct, sys
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_llama import forward  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'tests', 'golden')

def write_safetensors(path, tensors, dtype):
    """tensors: list of (name, float64 array); dtype 'F32', 'F16' or 'BF16'."""
    header, blobs, offset = {}, [], 0
    for name, a in tensors:
        a32 = np.ascontiguousarray(a, dtype='<f4')
        if dtype == 'F32':
            raw = a32.tobytes()
        elif dtype == 'F16':
            raw = a32.astype('<f2').tobytes()
        else:  # BF16: round to nearest even on the upper 16 bits
            u = a32.view('<u4').astype(np.uint64)
            u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype('<u2')
            raw = u.tobytes()
        header[name] = {'dtype': dtype, 'shape': list(a.shape), 'data_offsets': [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))

def make(name, cfg, dtype, shards, seed, ids):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(seed)
    D, F, V, L = cfg['hidden_size'], cfg['intermediate_size'], cfg['vocab_size'], cfg['num_hidden_layers']
    H, KV, hd = cfg['num_attention_heads'], cfg['num_key_value_heads'], cfg['head_dim']
    arch = cfg['architectures'][0]
    qkv_bias = arch == 'Qwen2ForCausalLM' or cfg.get('attention_bias', False)
    o_bias = arch == 'LlamaForCausalLM' and cfg.get('attention_bias', False)
    lin = lambda o, i: rng.normal(0, 1 / np.sqrt(i), (o, i))
    t = [('model.embed_tokens.weight', rng.normal(0, 1, (V, D)))]
    for l in range(L):
        p = f'model.layers.{l}.'
        t += [(p + 'input_layernorm.weight', 1 + 0.1 * rng.normal(size=D)),
              (p + 'self_attn.q_proj.weight', lin(H * hd, D)), (p + 'self_attn.k_proj.weight', lin(KV * hd, D)),
              (p + 'self_attn.v_proj.weight', lin(KV * hd, D)), (p + 'self_attn.o_proj.weight', lin(D, H * hd))]
        if qkv_bias:
            t += [(p + 'self_attn.q_proj.bias', 0.1 * rng.normal(size=H * hd)), (p + 'self_attn.k_proj.bias', 0.1 * rng.normal(size=KV * hd)),
                  (p + 'self_attn.v_proj.bias', 0.1 * rng.normal(size=KV * hd))]
        if o_bias:
            t += [(p + 'self_attn.o_proj.bias', 0.1 * rng.normal(size=D))]
        t += [(p + 'post_attention_layernorm.weight', 1 + 0.1 * rng.normal(size=D)),
              (p + 'mlp.gate_proj.weight', lin(F, D)), (p + 'mlp.up_proj.weight', lin(F, D)), (p + 'mlp.down_proj.weight', lin(D, F))]
    t += [('model.norm.weight', 1 + 0.1 * rng.normal(size=D))]
    if not cfg.get('tie_word_embeddings', False):
        t += [('lm_head.weight', rng.normal(0, 0.3, (V, D)))]
    with open(os.path.join(d, 'config.json'), 'w') as f:
        json.dump(cfg, f, indent=2)
    if shards == 1:
        write_safetensors(os.path.join(d, 'model.safetensors'), t, dtype)
    else:
        per = -(-len(t) // shards)
        weight_map = {}
        for s in range(shards):
            fname = f'model-{s + 1:05d}-of-{shards:05d}.safetensors'
            part = t[s * per:(s + 1) * per]
            write_safetensors(os.path.join(d, fname), part, dtype)
            weight_map.update({n: fname for n, _ in part})
        with open(os.path.join(d, 'model.safetensors.index.json'), 'w') as f:
            json.dump({'metadata': {}, 'weight_map': weight_map}, f, indent=2)
    logits = forward(d, ids)  # float64, from the weights as stored (after rounding to dtype)
    with open(os.path.join(d, 'golden.json'), 'w') as f:
        json.dump({'source': 'tools/reference_llama.py (NumPy float64)', 'ids': ids,
                   'logits': [[float(np.float32(x)) for x in row] for row in logits]}, f)
    print(name, dtype, f'{shards} shard(s)', 'max |logit|', float(np.abs(logits).max()))

base = {'hidden_size': 32, 'intermediate_size': 72, 'num_hidden_layers': 2, 'num_attention_heads': 4,
        'num_key_value_heads': 2, 'head_dim': 8, 'vocab_size': 96, 'rms_norm_eps': 1e-5, 'max_position_embeddings': 256,
        'hidden_act': 'silu', 'bos_token_id': 1, 'eos_token_id': 2}
ids = [1, 17, 42, 5, 88, 23, 23, 60, 9, 71, 33, 2, 45, 45, 0, 95, 12, 50, 7, 64]
make('llama3-bf16-sharded', {**base, 'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'rope_theta': 500000.0,
     'rope_scaling': {'rope_type': 'llama3', 'factor': 8.0, 'low_freq_factor': 1.0, 'high_freq_factor': 4.0, 'original_max_position_embeddings': 16},
     'tie_word_embeddings': True, 'attention_bias': False}, 'BF16', 2, 11, ids)
make('qwen2-f16-bias', {**base, 'architectures': ['Qwen2ForCausalLM'], 'model_type': 'qwen2', 'rope_theta': 10000.0,
     'tie_word_embeddings': False}, 'F16', 1, 12, ids)
make('llama-f32-attention-bias', {**base, 'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'rope_theta': 10000.0,
     'num_key_value_heads': 4, 'tie_word_embeddings': False, 'attention_bias': True}, 'F32', 1, 13, ids)
