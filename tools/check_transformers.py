#!/usr/bin/env python3
"""aquakv against Hugging Face transformers itself, where transformers and PyTorch are installed
(no network: every model comes from this checkout or is made here).

  python3 tools/check_transformers.py OURS.json OUT_DIR

OURS.json: `aquakv logits --text TEXT --json` of the embedded model with "text": TEXT added.

1. The embedded model: transformers' tokenizer (PreTrainedTokenizerFast over its tokenizer.json)
   against the ids in OURS.json, and LlamaForCausalLM in float64 against its logits.
2. The golden checkpoints of tests/golden/ (written by NumPy, logits from
   tools/reference_llama.py): transformers' float64 logits against golden.json, which checks the
   reference the golden tests trust.
3. Checkpoints written by transformers (`save_pretrained`, its own config.json and safetensors,
   sharded or not, BF16 / F16 / F32) with the logits transformers computes from them in float64:
   OUT_DIR/hf-written/NAME/ (config.json, safetensors, golden.json), read back by aquakv's golden
   test once copied into tests/golden/.

Prints a table and writes OUT_DIR/summary.json. Exit status 1 when a figure is over its bound.
"""
import json, os, sys
import torch
import transformers
from transformers import (AutoModelForCausalLM, PreTrainedTokenizerFast, LlamaConfig, LlamaForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM, MistralConfig, MistralForCausalLM)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBEDDED = os.path.join(ROOT, 'models', 'aquakv-sotu')
GOLDEN = os.path.join(ROOT, 'tests', 'golden')
# f32 arithmetic (aquakv) against f64: a few ulps of the largest logit, as tests/golden.test.ts
BOUND = 2e-6


def logits64(model_dir, ids):
    # (`torch_dtype` is `dtype` in the newest transformers, which still takes the old name)
    m = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float64, attn_implementation='eager')
    assert next(m.parameters()).dtype == torch.float64, 'the model did not load in float64'
    m.eval()
    with torch.no_grad():
        return m(torch.tensor([ids])).logits[0]


def compare(got, want):
    """max |got − want| and max |want| over every logit."""
    want = torch.as_tensor(want, dtype=torch.float64)
    got = torch.as_tensor(got, dtype=torch.float64)
    return float((got - want).abs().max()), float(want.abs().max())


def row(name, what, diff, scale):
    ok = diff <= BOUND * max(1.0, scale)
    print(f'{name:28} {what:34} max |diff| {diff:.3e}  (max |logit| {scale:.2f})  {"ok" if ok else "OVER"}')
    return {'name': name, 'what': what, 'maxDiff': diff, 'maxLogit': scale, 'ok': ok}


def hf_written(out):
    """Tiny random models saved by transformers, and transformers' float64 logits of the saved weights."""
    made = []
    common = dict(vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, initializer_range=0.1, rms_norm_eps=1e-5)
    specs = [
        ('hf-llama3-bf16-sharded', LlamaConfig, LlamaForCausalLM, torch.bfloat16, '120KB',
         dict(rope_theta=500000.0, tie_word_embeddings=True,
              rope_scaling={'rope_type': 'llama3', 'factor': 8.0, 'low_freq_factor': 1.0, 'high_freq_factor': 4.0,
                            'original_max_position_embeddings': 32})),
        ('hf-qwen2-f16', Qwen2Config, Qwen2ForCausalLM, torch.float16, None, dict(tie_word_embeddings=False)),
        ('hf-mistral-f32', MistralConfig, MistralForCausalLM, torch.float32, None, dict(sliding_window=None)),
    ]
    for i, (name, cfg_cls, model_cls, dtype, shard, extra) in enumerate(specs):
        torch.manual_seed(100 + i)
        model = model_cls(cfg_cls(**common, **extra))
        d = os.path.join(out, 'hf-written', name)
        os.makedirs(d, exist_ok=True)
        kwargs = {'safe_serialization': True}
        if shard:
            kwargs['max_shard_size'] = shard
        model.to(dtype).save_pretrained(d, **kwargs)
        g = torch.Generator().manual_seed(7 + i)
        ids = torch.randint(0, common['vocab_size'], (24,), generator=g).tolist()
        logits = logits64(d, ids)
        with open(os.path.join(d, 'golden.json'), 'w') as f:
            json.dump({'ids': ids, 'logits': logits.tolist(), 'source': f'transformers {transformers.__version__} float64, eager attention'}, f)
        made.append({'name': name, 'files': sorted(os.listdir(d))})
    return made


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    ours_path, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    print(f'transformers {transformers.__version__}, torch {torch.__version__}')
    results = []
    sections = [('embedded', lambda: embedded(ours_path, results)), ('golden', lambda: golden(results))]
    made = []
    sections.append(('written', lambda: made.extend(hf_written(out))))
    for name, run in sections:
        try:
            run()
        except Exception:  # one section failing leaves the others' figures
            import traceback
            traceback.print_exc()
            results.append({'name': name, 'what': 'section failed', 'ok': False, 'error': traceback.format_exc()})
    for m in made:
        print(f'{m["name"]:28} written: {", ".join(m["files"])}')
    summary = {'transformers': transformers.__version__, 'torch': torch.__version__, 'results': results, 'written': made}
    with open(os.path.join(out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    sys.exit(0 if all(r['ok'] for r in results) else 1)


def embedded(ours_path, results):
    """The embedded model: transformers' tokenizer and float64 logits against aquakv's."""
    ours = json.load(open(ours_path))
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(EMBEDDED, 'tokenizer.json'))
    text = ours['text']
    hf_ids = tok.encode(text, add_special_tokens=False)
    same_ids = hf_ids == ours['ids']
    print(f'{"embedded":28} {"token ids":34} {"equal" if same_ids else "DIFFER"} ({len(hf_ids)} tokens)')
    results.append({'name': 'embedded', 'what': 'token ids', 'ok': same_ids, 'tokens': len(hf_ids),
                    'firstDifference': next((i for i, (a, b) in enumerate(zip(hf_ids, ours['ids'])) if a != b), None)})
    results.append(row('embedded', 'aquakv logits, every position', *compare(ours['logits'], logits64(EMBEDDED, ours['ids']))))


def golden(results):
    """The golden checkpoints: transformers' float64 logits against the NumPy reference's."""
    for name in sorted(os.listdir(GOLDEN)):
        g = json.load(open(os.path.join(GOLDEN, name, 'golden.json')))
        results.append(row(name, 'golden.json (NumPy reference)', *compare(g['logits'], logits64(os.path.join(GOLDEN, name), g['ids']))))


if __name__ == '__main__':
    main()
