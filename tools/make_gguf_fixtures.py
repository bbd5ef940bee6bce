#!/usr/bin/env python3
"""Write the GGUF fixtures of tests/test_gguf.c with the `gguf` package (the format's
reference reader/writer, llama.cpp's gguf-py):

  tests/fixtures/gguf/dequant.gguf   one tensor per ggml type ftq reads, named by the type
                                     ("q4_k", ...), [2, 512], from random block bytes with
                                     finite f16 scales; beside each, "<type>.expect" (F32)
                                     holds gguf.quants.dequantize() of it
  tests/fixtures/gguf/meta.gguf      every metadata value type, nested arrays, alignment 64,
                                     three small tensors (the values are asserted in the test)
  tests/fixtures/gguf/quantize.gguf  "x" [4, 256] F32 (with an all-zero block and an integer one)
                                     and gguf.quants.quantize() of it as "x.q8_0" / "x.q4_0" /
                                     "x.q4_1" / "x.bf16" (as Q8_0 / Q4_0 / Q4_1 / BF16
                                     tensors): ggml's reference quantizers
  tests/fixtures/gguf/gpt2_tiny.gguf ../shared/golden/gpt2_tiny_random (2 layers, 64 wide) as
                                     llama.cpp's convert_hf_to_gguf.py (GPT2Model, --outtype
                                     f32) writes it: gpt2.* keys, blk.N.attn_qkv / attn_output /
                                     ffn_up / ffn_down transposed to [out, in], output.weight a
                                     copy of token_embd; tokenizer.ggml.* with model "gpt2" and
                                     pre "gpt-2". To keep the fixture small, the vocabulary is cut
                                     to its first 512 tokens (the 256 bytes and the first merges;
                                     token_embd / output rows 0..511, merges whose parts and
                                     result lie there): the logits of ids < 512 are then the
                                     first 512 logits of the full model, bit for bit
  tests/fuzz/corpus/gguf/            seeds of tests/fuzz/fuzz_gguf.c: meta.gguf, and quant.gguf
                                     (tokenizer-like arrays, one block of several quantized types)

Usage: pip install gguf numpy && python3 tools/make_gguf_fixtures.py
Deterministic (fixed seed); regenerate only as a reviewed change.
"""
import json
import os
import struct
import shutil
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "gguf")

# (name, type, byte offsets of the f16 scale fields inside a block)
QTYPES = [
    ("q4_0", T.Q4_0, [0]),
    ("q4_1", T.Q4_1, [0, 2]),
    ("q5_0", T.Q5_0, [0]),
    ("q5_1", T.Q5_1, [0, 2]),
    ("q8_0", T.Q8_0, [0]),
    ("q2_k", T.Q2_K, [80, 82]),
    ("q3_k", T.Q3_K, [108]),
    ("q4_k", T.Q4_K, [0, 2]),
    ("q5_k", T.Q5_K, [0, 2]),
    ("q6_k", T.Q6_K, [208]),
]
ROWS, COLS = 2, 512


def quant_tensor(rng, qtype, scale_offs):
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    nblocks = ROWS * COLS // block_size
    blocks = rng.integers(0, 256, size=(nblocks, type_size), dtype=np.uint8)
    for off in scale_offs:  # random bits elsewhere, but finite scales (as any quantizer writes)
        scales = (rng.standard_normal(nblocks) * 0.05).astype(np.float16)
        blocks[:, off:off + 2] = scales.view(np.uint8).reshape(nblocks, 2)
    data = blocks.reshape(ROWS, COLS // block_size * type_size)
    expect = gguf.quants.dequantize(data, qtype).astype(np.float32)
    assert expect.shape == (ROWS, COLS) and np.isfinite(expect).all()
    return data, expect


def write_dequant(path):
    rng = np.random.default_rng(20251205)
    w = gguf.GGUFWriter(path, "test")
    x = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    x[0, :4] = [0.0, -0.0, 1e-7, 65504.0]  # f16 subnormal and max
    w.add_tensor("f32", x)
    w.add_tensor("f32.expect", x)
    h = x.astype(np.float16)
    w.add_tensor("f16", h)
    w.add_tensor("f16.expect", h.astype(np.float32))
    bf = (x.view(np.uint32) >> 16).astype(np.uint16)  # truncation: any bit pattern is a valid bf16
    w.add_tensor("bf16", bf.view(np.uint8).reshape(ROWS, COLS * 2), raw_dtype=T.BF16)
    w.add_tensor("bf16.expect", gguf.quants.dequantize(bf.view(np.uint8).reshape(ROWS, COLS * 2), T.BF16))
    for name, qtype, offs in QTYPES:
        data, expect = quant_tensor(rng, qtype, offs)
        w.add_tensor(name, data, raw_dtype=qtype)
        w.add_tensor(name + ".expect", expect)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_meta(path):
    w = gguf.GGUFWriter(path, "test")
    w.add_custom_alignment(64)
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 0.25)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "h\u00e9llo")
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**40))
    w.add_float64("t.f64", -1.5e300)
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_str", ["a", "", "xyz"])
    w.add_array("t.arr_nested", [["p", "q"], ["r"]])
    w.add_key_value("t.arr_f32", [0.5, 1.5], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.FLOAT32)
    w.add_tensor("a", np.arange(6, dtype=np.float32).reshape(2, 3))
    w.add_tensor("b", np.array([1.0, -2.0], dtype=np.float16))
    w.add_tensor("c", np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_quantize(path):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 256)).astype(np.float32)
    x[1, :32] = 0.0  # an all-zero block: scale 0, no division
    x[2, :32] = np.arange(32, dtype=np.float32) - 16.0  # small integers, max at -16
    w = gguf.GGUFWriter(path, "test")
    w.add_tensor("x", x)
    for name, qt in (("x.q8_0", T.Q8_0), ("x.q4_0", T.Q4_0), ("x.q4_1", T.Q4_1), ("x.bf16", T.BF16)):
        q = gguf.quants.quantize(x, qt)
        w.add_tensor(name, q, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_fuzz_seed(path):
    rng = np.random.default_rng(1)
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(1)
    w.add_array("tokenizer.ggml.tokens", ["a", "b", "ab"])
    w.add_array("tokenizer.ggml.merges", ["a b"])
    for name, qt in [("q4_0", T.Q4_0), ("q8_0", T.Q8_0), ("q4_k", T.Q4_K), ("q6_k", T.Q6_K)]:
        _, ts = gguf.GGML_QUANT_SIZES[qt]
        w.add_tensor(name, rng.integers(0, 256, size=(1, ts), dtype=np.uint8), raw_dtype=qt)
    w.add_tensor("f16", np.ones(8, dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


GPT2_DIR = os.path.join(os.path.dirname(OUT), "..", "..", "..", "shared", "golden", "gpt2_tiny_random")
GPT2_VOCAB = 512


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name != "__metadata__":
            assert e["dtype"] == "F32", name
            a, b = e["data_offsets"]
            out[name] = np.frombuffer(data[a:b], dtype=np.float32).reshape(e["shape"])
    return out


def write_gpt2(path):
    cfg = json.load(open(os.path.join(GPT2_DIR, "config.json")))
    st = read_safetensors(os.path.join(GPT2_DIR, "model.safetensors"))
    tok = json.load(open(os.path.join(GPT2_DIR, "tokenizer.json")))
    w = gguf.GGUFWriter(path, "gpt2")
    # GPT2Model.set_gguf_parameters
    w.add_block_count(cfg["n_layer"])
    w.add_context_length(cfg["n_ctx"])
    w.add_embedding_length(cfg["n_embd"])
    w.add_feed_forward_length(4 * cfg["n_embd"])
    w.add_head_count(cfg["n_head"])
    w.add_layer_norm_eps(cfg["layer_norm_epsilon"])
    w.add_file_type(0)  # ALL_F32
    # the tokenizer (Model._set_vocab_gpt2), cut to GPT2_VOCAB tokens
    vocab = tok["model"]["vocab"]
    rev = {i: t for t, i in vocab.items()}
    tokens = [rev[i] for i in range(GPT2_VOCAB)]
    merges = []
    for m in tok["model"]["merges"]:
        a, b = m.split(" ") if isinstance(m, str) else m
        if vocab.get(a, GPT2_VOCAB) < GPT2_VOCAB and vocab.get(b, GPT2_VOCAB) < GPT2_VOCAB and \
                vocab.get(a + b, GPT2_VOCAB) < GPT2_VOCAB:
            merges.append(a + " " + b)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.NORMAL] * GPT2_VOCAB)
    w.add_token_merges(merges)
    # GPT2Model.modify_tensors + the tensor map
    names = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
             "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
    for name, x in st.items():
        n = name[len("transformer."):] if name.startswith("transformer.") else name
        if n.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        if n.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
            x = x.T
        if n.startswith("wte."):
            x = x[:GPT2_VOCAB]
        if n.startswith("h."):
            _, bid, rest = n.split(".", 2)
            mod, kind = rest.rsplit(".", 1)
            new = "blk.%s.%s.%s" % (bid, names[mod], kind)
        else:
            new = {"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
                   "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias"}[n]
        w.add_tensor(new, np.ascontiguousarray(x, dtype=np.float32))
        if new == "token_embd.weight":
            w.add_tensor("output.weight", np.ascontiguousarray(x, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    os.makedirs(OUT, exist_ok=True)
    write_dequant(os.path.join(OUT, "dequant.gguf"))
    write_meta(os.path.join(OUT, "meta.gguf"))
    write_quantize(os.path.join(OUT, "quantize.gguf"))
    write_gpt2(os.path.join(OUT, "gpt2_tiny.gguf"))
    seeds = os.path.join(os.path.dirname(OUT), "..", "fuzz", "corpus", "gguf")
    os.makedirs(seeds, exist_ok=True)
    shutil.copyfile(os.path.join(OUT, "meta.gguf"), os.path.join(seeds, "meta.gguf"))
    write_fuzz_seed(os.path.join(seeds, "quant.gguf"))
    for f in ("dequant.gguf", "meta.gguf", "gpt2_tiny.gguf"):
        r = gguf.GGUFReader(os.path.join(OUT, f))
        print(f, os.path.getsize(os.path.join(OUT, f)), "bytes,", len(r.tensors), "tensors,", len(r.fields), "keys")
    return 0


if __name__ == "__main__":
    sys.exit(main())
