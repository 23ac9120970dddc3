#!/usr/bin/env python3
"""An independent NumPy (float64) forward pass of HF transformers' LlamaForCausalLM / Qwen2 /
Mistral, written from transformers' modeling_llama.py (rotate_half RoPE, llama3 rope scaling,
repeat_kv GQA, SwiGLU, RMSNorm with the weight applied after normalisation), to check
`aquakv logits` where PyTorch is not installed.

  python3 tools/reference_llama.py MODEL_DIR 1,2,3      # prints max |aquakv − reference| per row
"""
import json, struct, subprocess, sys, os
import numpy as np

def load_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == '__metadata__':
            continue
        b, end = e['data_offsets']
        raw = data[b:end]
        if e['dtype'] == 'F32':
            a = np.frombuffer(raw, dtype='<f4')
        elif e['dtype'] == 'F16':
            a = np.frombuffer(raw, dtype='<f2')
        elif e['dtype'] == 'BF16':
            a = (np.frombuffer(raw, dtype='<u2').astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(e['dtype'])
        out[name] = a.astype(np.float64).reshape(e['shape'])
    return out

def load_weights(d):
    idx = os.path.join(d, 'model.safetensors.index.json')
    if os.path.exists(idx):
        w = {}
        for f in sorted(set(json.load(open(idx))['weight_map'].values())):
            w.update(load_safetensors(os.path.join(d, f)))
        return w
    return load_safetensors(os.path.join(d, 'model.safetensors'))

def inv_freq(cfg, hd):
    base = cfg.get('rope_theta', 10000.0)
    inv = 1.0 / (base ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    rs = cfg.get('rope_scaling')
    if rs and rs.get('rope_type', rs.get('type')) == 'llama3':
        factor, lf, hf, old = rs['factor'], rs['low_freq_factor'], rs['high_freq_factor'], rs['original_max_position_embeddings']
        low_wl, high_wl = old / lf, old / hf
        wl = 2 * np.pi / inv
        scaled = np.where(wl > low_wl, inv / factor, inv)
        smooth = (old / wl - lf) / (hf - lf)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wl < high_wl) & ~(wl > low_wl)
        inv = np.where(medium, smoothed, scaled)
    return inv

def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)

def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

def forward(d, ids):
    cfg = json.load(open(os.path.join(d, 'config.json')))
    w = load_weights(d)
    D, H = cfg['hidden_size'], cfg['num_attention_heads']
    KV = cfg.get('num_key_value_heads', H)
    hd = cfg.get('head_dim') or D // H
    eps = cfg.get('rms_norm_eps', 1e-6)
    arch = cfg['architectures'][0]
    qkv_bias = arch == 'Qwen2ForCausalLM' or cfg.get('attention_bias', False)
    o_bias = arch == 'LlamaForCausalLM' and cfg.get('attention_bias', False)
    T = len(ids)
    pos = np.arange(T, dtype=np.float64)
    freqs = np.outer(pos, inv_freq(cfg, hd))
    emb = np.concatenate([freqs, freqs], -1)
    cos, sin = np.cos(emb), np.sin(emb)
    x = w['model.embed_tokens.weight'][ids]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(cfg['num_hidden_layers']):
        p = f'model.layers.{l}.'
        h = rms(x, w[p + 'input_layernorm.weight'], eps)
        def lin(name, bias):
            y = h @ w[p + name + '.weight'].T
            return y + w[p + name + '.bias'] if bias else y
        q = lin('self_attn.q_proj', qkv_bias).reshape(T, H, hd).transpose(1, 0, 2)
        k = lin('self_attn.k_proj', qkv_bias).reshape(T, KV, hd).transpose(1, 0, 2)
        v = lin('self_attn.v_proj', qkv_bias).reshape(T, KV, hd).transpose(1, 0, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, H // KV, axis=0)
        v = np.repeat(v, H // KV, axis=0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(T, H * hd)
        o = a @ w[p + 'self_attn.o_proj.weight'].T
        if o_bias:
            o = o + w[p + 'self_attn.o_proj.bias']
        x = x + o
        h = rms(x, w[p + 'post_attention_layernorm.weight'], eps)
        g = h @ w[p + 'mlp.gate_proj.weight'].T
        u = h @ w[p + 'mlp.up_proj.weight'].T
        x = x + ((g / (1 + np.exp(-g))) * u) @ w[p + 'mlp.down_proj.weight'].T
    x = rms(x, w['model.norm.weight'], eps)
    head = w['model.embed_tokens.weight'] if cfg.get('tie_word_embeddings', False) else w['lm_head.weight']
    return x @ head.T

if __name__ == '__main__':
    d, ids = sys.argv[1], [int(s) for s in sys.argv[2].split(',')]
    ref = forward(d, ids)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(['node', os.path.join(root, 'bin', 'aquakv.js'), 'logits', '--model', d, '--ids', sys.argv[2], '--json'], capture_output=True, text=True, check=True)
    ours = np.array(json.loads(out.stdout)['logits'])
    diff = np.abs(ours - ref).max(axis=1)
    scale = np.abs(ref).max()
    print(json.dumps({'model': d, 'tokens': len(ids), 'maxAbsDiff': float(diff.max()), 'maxAbsLogit': float(scale), 'perRow': [float(x) for x in diff]}))
