#!/usr/bin/env python3
"""Check an `ftq export --type keep` GGUF against ftq's own values with gguf-py.

    ftq export -m QDIR -o model.gguf --type keep
    ftq dequantize -m QDIR -o deq            (ftq's values as an f32 HF checkpoint)
    python3 tools/kquant_gguf_check.py model.gguf deq

For every matrix of the GGUF stored as Q4_K, Q6_K, Q5_0, Q8_0 or Q4_0, gguf-py's
dequantization (gguf.quants.dequantize) must equal ftq's value bit for bit (Q/K rows
un-permuted as llama.cpp's converter permutes them). Prints one line per type and exits 1 on
any difference. Needs numpy and the gguf package (not the product's dependencies)."""
import json
import os
import struct
import sys

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType as T
from gguf.quants import dequantize

NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
         "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
         "ffn_down": "mlp.down_proj"}


def safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for k, v in head.items():
            if k == "__metadata__":
                continue
            assert v["dtype"] == "F32", (k, v["dtype"])
            a, b = v["data_offsets"]
            out[k] = np.memmap(path, dtype="<f4", mode="r", offset=base + a, shape=tuple(v["shape"]))
        return out


def hf_name(g):
    if g == "token_embd.weight":
        return "model.embed_tokens.weight"
    if g == "output.weight":
        return "lm_head.weight"
    p = g.split(".")
    if p[0] == "blk" and p[2] in NAMES:
        return "model.layers.%s.%s.weight" % (p[1], NAMES[p[2]])
    return None


def unpermute(w, heads):
    rows = w.shape[0]
    hd = rows // heads
    idx = np.empty(rows, dtype=np.int64)
    for r in range(rows):
        h, k = divmod(r, hd)
        i, j = divmod(k, hd // 2)
        idx[r] = h * hd + 2 * j + i
    return w[idx]


def main():
    gguf_path, deq = sys.argv[1], sys.argv[2]
    cfg = json.load(open(os.path.join(deq, "config.json")))
    ref = {}
    for f in sorted(os.listdir(deq)):
        if f.endswith(".safetensors"):
            ref.update(safetensors(os.path.join(deq, f)))
    rd = GGUFReader(gguf_path)
    stats, bad = {}, 0
    for t in rd.tensors:
        qt = T(t.tensor_type)
        if qt not in (T.Q4_K, T.Q6_K, T.Q5_0, T.Q8_0, T.Q4_0):
            continue
        name = hf_name(t.name)
        if name is None:
            continue
        if name not in ref and name == "lm_head.weight":
            name = "model.embed_tokens.weight"
        rows, cols = int(t.shape[1]), int(t.shape[0])
        got = dequantize(np.asarray(t.data).reshape(-1), qt).reshape(rows, cols)
        if ".q_proj" in name:
            got = unpermute(got, cfg["num_attention_heads"])
        elif ".k_proj" in name:
            got = unpermute(got, cfg.get("num_key_value_heads", cfg["num_attention_heads"]))
        want = np.asarray(ref[name]).reshape(rows, cols)
        same = np.array_equal(got.view(np.uint32), want.view(np.uint32))
        s = stats.setdefault(qt.name, [0, 0])
        s[0] += 1
        s[1] += int(not same)
        if not same:
            bad += 1
            print("differs: %s (%s) max |d| %g" % (t.name, qt.name, float(np.max(np.abs(got - want)))))
    for k, (n, d) in sorted(stats.items()):
        print("%s: %d tensors, %d differ" % (k, n, d))
    sys.exit(1 if bad or not stats else 0)


if __name__ == "__main__":
    main()
