#!/usr/bin/env python3
"""check_lora_gguf.py - compare two llama.cpp LoRA adapter GGUF files tensor by tensor and on
the adapter keys: `ftq export -m BASE --adapter DIR -o a.gguf` against llama.cpp's own
convert_lora_to_gguf.py --outtype f32 --base BASE DIR --outfile b.gguf (run from a llama.cpp
checkout with its gguf-py on PYTHONPATH; under torch 1.13 the two float8 entries of
convert_hf_to_gguf.py's dtype table have to be deleted first).

    python3 tools/check_lora_gguf.py a.gguf b.gguf      (the `gguf` package)
Result on stories260K, r 8, all linears (2026-12-05): 70 tensors, same names and shapes,
max |diff| 0 (attn_q / attn_k lora_b rows permuted as the converter does), same keys.
"""
import gguf, sys, numpy as np
a = gguf.GGUFReader(sys.argv[1]); b = gguf.GGUFReader(sys.argv[2])
ta = {t.name: t for t in a.tensors}; tb = {t.name: t for t in b.tensors}
print("tensors", len(ta), len(tb), "same names", set(ta) == set(tb))
worst = 0
for n in ta:
    x, y = np.array(ta[n].data), np.array(tb[n].data)
    assert list(ta[n].shape) == list(tb[n].shape), (n, ta[n].shape, tb[n].shape)
    worst = max(worst, float(np.abs(x.astype(np.float64) - y).max()))
print("max |diff| over all tensors", worst)
for k in ["general.architecture", "general.type", "adapter.type", "adapter.lora.alpha"]:
    fa, fb = a.fields.get(k), b.fields.get(k)
    va = fa.parts[fa.data[0]].tobytes() if fa else None; vb = fb.parts[fb.data[0]].tobytes() if fb else None
    print(k, "same" if va == vb else ("DIFF", va, vb))
