#!/usr/bin/env python3
"""Check GGUF files written by `ftq export` with the `gguf` Python package (llama.cpp's
gguf-py, the format's reference reader): the keys llama.cpp requires, the tensor names and
shapes, and every tensor's bytes against an independent computation in numpy.

  1. stories260K (HF directory) exported as f32, f16, bf16, q8_0, q4_0, q4_1: each tensor
     must be byte-equal to what llama.cpp's converter writes for it, i.e. the safetensors
     tensor, Q/K rows permuted as convert_hf_to_gguf.py's `permute`, encoded by
     gguf.quants.quantize() (1-D tensors F32; a matrix whose rows do not split into blocks
     F16, as the converter's fallback).
  2. stories260K quantized by ftq (int8, int4 --search, int4 --asym) and exported with
     --type keep (and int4 with q4_0): every matrix stored as Q8_0 / Q4_0, dequantized by
     gguf-py, must equal the value docs/quant-format.md 4.1 defines, computed here from the
     .qweight / .qscale / .qzero parts, bit for bit (the others: that value as gguf-py
     converts it to the file's type).
  3. the golden tiny GPT-2 exported as f32 and q8_0: gpt2.* keys and every tensor as
     convert_hf_to_gguf.py's GPT2Model writes it (Conv1D weights transposed, output.weight
     a copy of token_embd), encoded by gguf-py.
  4. rope_scaling (tests/fixtures/rope): llama3 as the converter's rope_freqs tensor, linear
     as llama.rope.scaling.type / factor.
  5. with --smollm2: the shipped SmolLM2 Q4_1 GGUF -> ftq -> f32 GGUF: every tensor equals
     gguf-py's dequantization of the shipped file bit for bit, and the same keys.

Usage: python3 tools/check_gguf_export.py [--ftq build/ftq] [--smollm2]
Prints one line per file and exits non-zero on the first mismatch.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORIES = os.path.join(ROOT, "datasets", "stories260K")
SMOLLM2 = os.path.join(ROOT, "..", "shared", "models", "SmolLM2-135M-Instruct-Q4_1",
                       "SmolLM2-135M-Instruct.Q4_1.gguf")

# the keys llama.cpp's llama loader requires (llm_load_hparams) or reads for a llama model
REQUIRED = ["general.architecture", "llama.context_length", "llama.embedding_length",
            "llama.block_count", "llama.feed_forward_length", "llama.attention.head_count",
            "llama.attention.layer_norm_rms_epsilon", "tokenizer.ggml.model", "tokenizer.ggml.tokens",
            "tokenizer.ggml.token_type"]
OPTIONAL_CHECKED = ["llama.attention.head_count_kv", "llama.rope.freq_base", "llama.rope.dimension_count",
                    "llama.vocab_size", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"]

NAMES = [("model.embed_tokens.weight", "token_embd.weight"), ("model.norm.weight", "output_norm.weight"),
         ("lm_head.weight", "output.weight")]
LAYER = [("input_layernorm.weight", "attn_norm.weight"), ("self_attn.q_proj.weight", "attn_q.weight"),
         ("self_attn.k_proj.weight", "attn_k.weight"), ("self_attn.v_proj.weight", "attn_v.weight"),
         ("self_attn.o_proj.weight", "attn_output.weight"), ("post_attention_layernorm.weight", "ffn_norm.weight"),
         ("mlp.gate_proj.weight", "ffn_gate.weight"), ("mlp.up_proj.weight", "ffn_up.weight"),
         ("mlp.down_proj.weight", "ffn_down.weight")]

TYPES = {"f32": T.F32, "f16": T.F16, "bf16": T.BF16, "q8_0": T.Q8_0, "q4_0": T.Q4_0, "q4_1": T.Q4_1}


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def read_safetensors(path):
    """name -> (dtype string, shape, raw bytes) of a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        out[name] = (e["dtype"], e["shape"], data[a:b])
    return out, header.get("__metadata__", {})


def st_array(entry):
    dt = {"F32": np.float32, "F16": np.float16, "BF16": None, "I8": np.int8, "U8": np.uint8}[entry[0]]
    return np.frombuffer(entry[2], dtype=dt).reshape(entry[1])


def hf_to_gguf(name):
    for hf, g in NAMES:
        if name == hf:
            return g
    if name.startswith("model.layers."):
        layer, rest = name[len("model.layers."):].split(".", 1)
        for hf, g in LAYER:
            if rest == hf:
                return "blk.%s.%s" % (layer, g)
    return None


def permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py's LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def maybe_permute(gname, w, cfg):
    if gname.endswith("attn_q.weight"):
        return permute(w, cfg["num_attention_heads"], cfg["num_attention_heads"])
    if gname.endswith("attn_k.weight"):
        return permute(w, cfg["num_attention_heads"], cfg["num_key_value_heads"])
    return w


def field(r, key):
    f = r.fields.get(key)
    if f is None:
        return None
    if f.types and f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode()
    if f.types and f.types[0] == gguf.GGUFValueType.ARRAY:
        return len(f.data)
    return f.parts[f.data[0]][0].item()


def check_keys(r, path, cfg=None):
    for k in REQUIRED:
        if k not in r.fields:
            fail("%s: missing key %s" % (path, k))
    if field(r, "general.architecture") != "llama":
        fail("%s: general.architecture is %r" % (path, field(r, "general.architecture")))
    if cfg:
        want = {"llama.block_count": cfg["num_hidden_layers"], "llama.embedding_length": cfg["hidden_size"],
                "llama.feed_forward_length": cfg["intermediate_size"],
                "llama.attention.head_count": cfg["num_attention_heads"],
                "llama.attention.head_count_kv": cfg["num_key_value_heads"],
                "llama.context_length": cfg["max_position_embeddings"], "llama.vocab_size": cfg["vocab_size"],
                "tokenizer.ggml.tokens": cfg["vocab_size"], "tokenizer.ggml.bos_token_id": cfg["bos_token_id"],
                "tokenizer.ggml.eos_token_id": cfg["eos_token_id"]}
        for k, v in want.items():
            if field(r, k) != v:
                fail("%s: key %s is %r (expected %r)" % (path, k, field(r, k), v))
        eps = field(r, "llama.attention.layer_norm_rms_epsilon")
        if abs(eps - cfg["rms_norm_eps"]) > 1e-12:
            fail("%s: rms epsilon %r" % (path, eps))
    return sorted(k for k in r.fields if not k.startswith("GGUF."))


def run(ftq, *args):
    p = subprocess.run([ftq, *args], capture_output=True, text=True)
    if p.returncode != 0:
        fail("ftq %s: %s" % (" ".join(args), p.stderr.strip()))
    return p.stdout


def raw(t):
    return np.asarray(t.data).view(np.uint8).tobytes()


def check_hf_export(ftq, tmp):
    cfg = json.load(open(os.path.join(STORIES, "config.json")))
    st, _ = read_safetensors(os.path.join(STORIES, "model.safetensors"))
    vocab = json.load(open(os.path.join(STORIES, "tokenizer.json")))["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    for tname, qt in TYPES.items():
        out = os.path.join(tmp, "st_%s.gguf" % tname)
        run(ftq, "export", "-m", STORIES, "-o", out, "--type", tname)
        r = gguf.GGUFReader(out)
        keys = check_keys(r, out, cfg)
        f = r.fields["tokenizer.ggml.tokens"]
        got_tokens = [bytes(f.parts[i]).decode() for i in f.data]
        if got_tokens != tokens:
            fail("%s: tokenizer.ggml.tokens differ from tokenizer.json's vocab" % out)
        got = {t.name: t for t in r.tensors}
        want_names = set()
        for name, e in st.items():
            g = hf_to_gguf(name)
            if g is None or (g == "output.weight" and cfg["tie_word_embeddings"]):
                continue
            want_names.add(g)
            if g not in got:
                fail("%s: tensor %s missing" % (out, g))
            w = maybe_permute(g, st_array(e).astype(np.float32), cfg)
            t = got[g]
            if list(t.shape)[::-1] != list(w.shape):
                fail("%s: %s has shape %s (expected %s reversed)" % (out, g, list(t.shape), list(w.shape)))
            want_t = T.F32 if w.ndim == 1 else qt
            if want_t not in (T.F32,) and w.shape[-1] % gguf.GGML_QUANT_SIZES[want_t][0]:
                want_t = T.F16
            if t.tensor_type != want_t:
                fail("%s: %s is %s (expected %s)" % (out, g, t.tensor_type.name, want_t.name))
            want = w.tobytes() if want_t == T.F32 else gguf.quants.quantize(w, want_t).tobytes()
            if raw(t) != want:
                fail("%s: %s bytes differ from gguf.quants.quantize" % (out, g))
        if set(got) != want_names:
            fail("%s: extra tensors %s" % (out, sorted(set(got) - want_names)))
        print("ok %-15s %7d bytes, %2d tensors byte-equal to gguf-py's conversion, %d keys"
              % (os.path.basename(out), os.path.getsize(out), len(got), len(keys)))


def ftq_dequant(st, meta_entry, name):
    """docs/quant-format.md 4.1 in numpy: NAME's [out, in] f32 values."""
    base = name[:-len(".weight")] if name.endswith(".weight") else name
    rows, cols = meta_entry["shape"]
    G = meta_entry["group"] or cols
    qw = st_array(st[base + ".qweight"])
    d = st_array(st[base + ".qscale"]).astype(np.float32)
    d = np.repeat(d, G, axis=1)[:, :cols]
    if meta_entry["scheme"] == "q8":
        return d * qw.astype(np.float32)
    codes = np.stack([qw & 15, qw >> 4], axis=-1).reshape(rows, -1)[:, :cols].astype(np.int32)
    if meta_entry["scheme"] == "q4":
        z = 8
    else:
        z = np.repeat(st_array(st[base + ".qzero"]).astype(np.int32), G, axis=1)[:, :cols]
    return d * (codes - z).astype(np.float32)


def check_quantized_export(ftq, tmp):
    cfg = json.load(open(os.path.join(STORIES, "config.json")))
    cases = [("int8", ["--type", "int8"], "keep"), ("int4s", ["--type", "int4", "--search"], "keep"),
             ("int4s", None, "q4_0"), ("int4a", ["--type", "int4", "--asym"], "keep")]
    for label, qargs, etype in cases:
        qdir = os.path.join(tmp, label)
        if qargs is not None:
            run(ftq, "quantize", "-m", STORIES, "-o", qdir, *qargs)
        st, meta = read_safetensors(os.path.join(qdir, "model.safetensors"))
        qcfg = json.load(open(os.path.join(qdir, "config.json")))
        entries = json.loads(meta["ftq.quant.tensors"])
        out = os.path.join(tmp, "%s_%s.gguf" % (label, etype))
        run(ftq, "export", "-m", qdir, "-o", out, "--type", etype)
        r = gguf.GGUFReader(out)
        check_keys(r, out, qcfg)
        got = {t.name: t for t in r.tensors}
        exact = 0
        for name, e in entries.items():
            g = hf_to_gguf(name)
            w = maybe_permute(g, ftq_dequant(st, e, name), cfg)
            t = got[g]
            deq = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(w.shape).astype(np.float32)
            copy = (t.tensor_type == T.Q8_0 or (t.tensor_type == T.Q4_0 and e["scheme"] == "q4")) \
                and e["group"] % 32 == 0 and w.shape[1] % 32 == 0
            # not a copy (rows not a multiple of 32, or q8 into Q4_0): ftq's values converted
            # as gguf-py converts them
            want = w if copy or t.tensor_type == T.F32 else \
                gguf.quants.dequantize(gguf.quants.quantize(w, t.tensor_type), t.tensor_type).reshape(w.shape)
            if deq.tobytes() != want.astype(np.float32).tobytes():
                fail("%s: %s (%s %s) differs from the ftq checkpoint's values" % (out, g, e["scheme"],
                                                                                   t.tensor_type.name))
            exact += copy
        print("ok %-15s %7d bytes, %2d quantized matrices: %d copied as Q8_0/Q4_0 (= ftq's values bit for bit), "
              "the rest converted as gguf-py converts ftq's values" % (os.path.basename(out), os.path.getsize(out),
                                                                        len(entries), exact))


GPT2 = os.path.join(ROOT, "..", "shared", "golden", "gpt2_tiny_random")
GPT2_REQUIRED = ["general.architecture", "gpt2.block_count", "gpt2.context_length", "gpt2.embedding_length",
                 "gpt2.feed_forward_length", "gpt2.attention.head_count", "gpt2.attention.layer_norm_epsilon",
                 "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.merges",
                 "tokenizer.ggml.token_type"]


def check_gpt2_export(ftq, tmp):
    """The golden tiny GPT-2 as convert_hf_to_gguf.py's GPT2Model writes it."""
    cfg = json.load(open(os.path.join(GPT2, "config.json")))
    st, _ = read_safetensors(os.path.join(GPT2, "model.safetensors"))
    names = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
             "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
    for tname in ("f32", "q8_0"):
        qt = TYPES[tname]
        out = os.path.join(tmp, "gpt2_%s.gguf" % tname)
        run(ftq, "export", "-m", GPT2, "-o", out, "--type", tname)
        r = gguf.GGUFReader(out)
        for k in GPT2_REQUIRED:
            if k not in r.fields:
                fail("%s: missing key %s" % (out, k))
        want_kv = {"general.architecture": "gpt2", "gpt2.block_count": cfg["n_layer"],
                   "gpt2.context_length": cfg["n_ctx"], "gpt2.embedding_length": cfg["n_embd"],
                   "gpt2.feed_forward_length": 4 * cfg["n_embd"], "gpt2.attention.head_count": cfg["n_head"],
                   "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2"}
        for k, v in want_kv.items():
            if field(r, k) != v:
                fail("%s: key %s is %r (expected %r)" % (out, k, field(r, k), v))
        got = {t.name: t for t in r.tensors}
        want = {}
        for name, e in st.items():
            n = name[len("transformer."):]
            x = st_array(e)
            if n.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
                x = np.ascontiguousarray(x.T)
            if n.startswith("h."):
                _, bid, rest = n.split(".", 2)
                mod, kind = rest.rsplit(".", 1)
                g = "blk.%s.%s.%s" % (bid, names[mod], kind)
            else:
                g = {"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
                     "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias"}[n]
            want[g] = x
            if g == "token_embd.weight":
                want["output.weight"] = x
        if set(want) != set(got):
            fail("%s: tensor names differ: %s" % (out, sorted(set(want) ^ set(got))))
        for g, x in want.items():
            t = got[g]
            wt = T.F32 if x.ndim == 1 else qt
            b = x.tobytes() if wt == T.F32 else gguf.quants.quantize(x, wt).tobytes()
            if t.tensor_type != wt or raw(t) != b:
                fail("%s: %s differs from gguf-py's conversion" % (out, g))
        print("ok %-15s %7d bytes, %2d tensors byte-equal to gguf-py's conversion" % (os.path.basename(out),
                                                                                    os.path.getsize(out), len(got)))


def check_rope_export(ftq, tmp):
    """rope_scaling: llama3 as the converter's rope_freqs tensor (its float32 arithmetic
    redone in numpy: ftq computes in double, so the smoothed factors may differ in the last
    bit), linear as rope.scaling.type / factor. The fixtures have no tokenizer: stories260K's
    tokenizer.model is copied beside them (it does not enter the checked values)."""
    import shutil
    for name in ("llama3", "linear"):
        src = os.path.join(ROOT, "tests", "fixtures", "rope", name)
        d = os.path.join(tmp, "rope_" + name)
        shutil.copytree(src, d)
        shutil.copy(os.path.join(STORIES, "tokenizer.model"), d)
        cfg = json.load(open(os.path.join(d, "config.json")))
        out = d + ".gguf"
        run(ftq, "export", "-m", d, "-o", out, "--type", "f32")
        r = gguf.GGUFReader(out)
        got = {t.name: t for t in r.tensors}
        rs = cfg["rope_scaling"]
        if name == "linear":
            if field(r, "llama.rope.scaling.type") != "linear" or field(r, "llama.rope.scaling.factor") != rs["factor"] \
                    or "rope_freqs.weight" in got:
                fail("%s: linear rope scaling keys" % out)
            print("ok %-15s rope.scaling.type linear, factor %g" % (os.path.basename(out), rs["factor"]))
            continue
        dim = cfg["head_dim"]
        base = np.float32(cfg["rope_theta"])
        freqs = np.float32(1.0) / base ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim))
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        want = []
        for fr in freqs:  # LlamaModel.generate_extra_tensors, on float32 scalars as torch does
            wavelen = np.float32(2 * np.pi) / fr
            if wavelen < old / hi:
                want.append(1.0)
            elif wavelen > old / lo:
                want.append(factor)
            else:
                smooth = (np.float32(old) / wavelen - np.float32(lo)) / np.float32(hi - lo)
                want.append(np.float32(1) / ((np.float32(1) - smooth) / np.float32(factor) + smooth))
        want = np.array(want, dtype=np.float32)
        t = got.get("rope_freqs.weight")
        if t is None or t.tensor_type != T.F32:
            fail("%s: no F32 rope_freqs.weight" % out)
        have = np.asarray(t.data, dtype=np.float32)
        ulps = np.abs(have.view(np.int32).astype(np.int64) - want.view(np.int32).astype(np.int64)).max()
        if ulps > 1 or "llama.rope.scaling.type" in r.fields:
            fail("%s: rope_freqs %s (expected %s)" % (out, have, want))
        print("ok %-15s rope_freqs %s (the converter's, %d ulp apart at most)" % (os.path.basename(out),
                                                                        np.array2string(have, precision=4), ulps))


def check_smollm2(ftq, tmp):
    out = os.path.join(tmp, "smollm2_f32.gguf")
    run(ftq, "export", "-m", SMOLLM2, "-o", out, "--type", "f32")
    a, b = gguf.GGUFReader(SMOLLM2), gguf.GGUFReader(out)
    check_keys(b, out)
    ta = {t.name: t for t in a.tensors}
    tb = {t.name: t for t in b.tensors}
    if set(ta) != set(tb):
        fail("%s: tensor names differ: %s" % (out, sorted(set(ta) ^ set(tb))))
    for name, t in ta.items():
        want = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32)
        if tb[name].tensor_type != T.F32 or np.asarray(tb[name].data).tobytes() != want.tobytes():
            fail("%s: %s differs from the shipped file's dequantization" % (out, name))
    ka = {k for k in a.fields if not k.startswith("GGUF.")}
    kb = {k for k in b.fields if not k.startswith("GGUF.")}
    for k in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"):
        fa, fb = a.fields[k], b.fields[k]
        if [bytes(fa.parts[i]) for i in fa.data] != [bytes(fb.parts[i]) for i in fb.data]:
            fail("%s: %s differs from the shipped file's" % (out, k))
    print("ok %-14s %8d bytes, %d tensors equal to gguf-py's dequantization of the shipped file; "
          "keys only in the shipped file: %s" % (os.path.basename(out), os.path.getsize(out), len(tb),
                                                 ", ".join(sorted(ka - kb))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ftq", default=os.path.join(ROOT, "build", "ftq"))
    ap.add_argument("--smollm2", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        check_hf_export(args.ftq, tmp)
        check_quantized_export(args.ftq, tmp)
        check_gpt2_export(args.ftq, tmp)
        check_rope_export(args.ftq, tmp)
        if args.smollm2:
            check_smollm2(args.ftq, tmp)
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
