#!/usr/bin/env python3
"""Write the hand-made seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

Standard library only, deterministic (fixed mtimes in archives): run it again and the
bytes do not change. Seeds taken from ../shared (model headers, configs, tokenizers,
dataset prefixes) are not committed; tests/fuzz.sh adds them to its scratch corpus.

    python3 tools/make_fuzz_seeds.py
"""
import io
import json
import os
import struct
import tarfile
import zipfile
import gzip

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- safetensors --------------------------------------------------------------------

DT = {"F64": ("d", 8), "F32": ("f", 4), "F16": ("e", 2), "BF16": (None, 2), "I64": ("q", 8),
      "I32": ("i", 4), "I16": ("h", 2), "I8": ("b", 1), "U8": ("B", 1), "U16": ("H", 2),
      "U32": ("I", 4), "U64": ("Q", 8), "BOOL": ("?", 1), "F8_E4M3": (None, 1), "F8_E5M2": (None, 1)}


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    off = 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in tensors)


def raw(dtype, values):
    code, size = DT[dtype]
    if code is None:
        return bytes((v * 37 + 11) & 0xFF for v in range(len(values) * size))
    return struct.pack("<%d%s" % (len(values), code), *values)


def seeds_safetensors():
    put("safetensors", "f32_2x2", safetensors([("w", "F32", [2, 2], raw("F32", [1.0, -2.0, 0.5, 3.0]))],
                                              {"format": "pt"}))
    ts = []
    for dt, vals in [("F64", [1.5, -2.0]), ("F16", [1.0, 65504.0, -0.0]), ("BF16", [0, 0]), ("I64", [1, -1]),
                     ("I32", [7]), ("I16", [-3, 4]), ("I8", [-128, 127]), ("U8", [255]), ("U16", [65535]),
                     ("U32", [1]), ("U64", [2]), ("BOOL", [True, False]), ("F8_E4M3", [0, 0]), ("F8_E5M2", [0])]:
        ts.append(("t_" + dt.lower(), dt, [len(vals)], raw(dt, vals)))
    ts.append(("scalar", "F32", [], raw("F32", [42.0])))
    ts.append(("empty", "F32", [0, 3], b""))
    ts.append(("m.layers.0.weight", "F32", [1, 1, 1, 2], raw("F32", [1.0, 2.0])))
    put("safetensors", "all_dtypes", safetensors(ts, {"format": "pt", "note": "caf\u00e9"}))
    put("safetensors", "empty_header", safetensors([]))
    put("safetensors", "metadata_only", safetensors([], {"a": "b", "c": ""}))
    # regression: a fractional number ending the image (heap-buffer-overflow, fixed)
    put("safetensors", "regress_fraction_at_end", struct.pack("<Q", 8) + b"+256,64e")


# ---- quantized checkpoints (docs/quant-format.md section 4) ---------------------------

def f16(vals):
    return struct.pack("<%de" % len(vals), *vals)


def seeds_qindex():
    entries, tensors = {}, []
    # q8, one scale per row: [3, 5]
    entries["a.weight"] = {"scheme": "q8", "group": 0, "shape": [3, 5], "transposed": False, "search": False,
                           "source_dtype": "F32"}
    tensors += [("a.qweight", "I8", [3, 5], bytes([(i * 7) & 0x7F for i in range(15)])),
                ("a.qscale", "F16", [3, 1], f16([0.5, -0.25, 0.0]))]
    # q4, groups of 32 along 40 columns: 2 groups, the last partial
    entries["b.weight"] = {"scheme": "q4", "group": 32, "shape": [2, 40], "transposed": True, "search": True,
                           "source_dtype": "BF16"}
    tensors += [("b.qweight", "U8", [2, 20], bytes([(i * 29) & 0xFF for i in range(40)])),
                ("b.qscale", "F16", [2, 2], f16([0.1, 0.2, 0.3, -0.4]))]
    # q4a with zero points, odd columns
    entries["c"] = {"scheme": "q4a", "group": 64, "shape": [2, 3], "copied_from": "e.weight"}
    tensors += [("c.qweight", "U8", [2, 2], bytes([0x21, 0x03, 0xF0, 0x0F])),
                ("c.qscale", "F16", [2, 1], f16([1.0, 2.0])),
                ("c.qzero", "U8", [2, 1], bytes([8, 15]))]
    tensors.append(("norm.weight", "F32", [2], raw("F32", [1.0, 1.0])))
    meta = {"format": "pt", "ftq.quant.version": "1", "ftq.quant.tensors": json.dumps(entries)}
    put("qindex", "q8_q4_q4a", safetensors(tensors, meta))
    one = {"w.weight": {"scheme": "q8", "group": 32, "shape": [1, 33]}}
    put("qindex", "q8_g32", safetensors([("w.qweight", "I8", [1, 33], bytes(range(33))),
                                         ("w.qscale", "F16", [1, 2], f16([0.01, 0.02]))],
                                        {"ftq.quant.version": "1", "ftq.quant.tensors": json.dumps(one)}))
    put("qindex", "plain", safetensors([("x", "F32", [1], raw("F32", [1.0]))]))


# ---- sharded index ---------------------------------------------------------------------

def seeds_st_index():
    s1, s2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    put("st_index", "valid", json.dumps({"metadata": {"total_size": 24}, "weight_map": {"a": s1, "b": s1, "c": s2}},
                                        indent=2))
    put("st_index", "missing_c", json.dumps({"weight_map": {"a": s1, "b": s1}}))
    put("st_index", "wrong_shard", json.dumps({"weight_map": {"a": s2, "b": s1, "c": s2}}))
    put("st_index", "traversal", json.dumps({"weight_map": {"a": "../" + s1, "b": s1, "c": s2}}))


# ---- config.json -----------------------------------------------------------------------

def seeds_config():
    llama = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 512, "hidden_size": 64,
             "intermediate_size": 172, "num_hidden_layers": 5, "num_attention_heads": 8, "num_key_value_heads": 4,
             "max_position_embeddings": 512, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "hidden_act": "silu",
             "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": [2, 3], "torch_dtype": "float32",
             "attention_bias": False, "mlp_bias": False, "head_dim": 8}
    put("config", "llama", json.dumps(llama, indent=2))
    cls = {"architectures": ["GPT2ForSequenceClassification"], "model_type": "gpt2", "vocab_size": 1000,
           "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 128, "n_inner": None,
           "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05, "num_labels": 3,
           "id2label": {"0": "negative", "1": "neutral", "2": "positive"},
           "label2id": {"negative": 0, "neutral": 1, "positive": 2}, "pad_token_id": 0}
    put("config", "gpt2_classifier", json.dumps(cls))
    put("config", "qwen2", json.dumps({"model_type": "qwen2", "vocab_size": 100, "hidden_size": 16,
                                       "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                       "num_key_value_heads": 1, "sliding_window": 4096, "use_sliding_window": False,
                                       "max_position_embeddings": 64, "rms_norm_eps": 1e-6}))


# ---- tokenizers --------------------------------------------------------------------------

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def tiny_bytelevel():
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    merges = []
    for a, b in [("\u0120", "t"), ("h", "e"), ("\u0120t", "he"), ("i", "n"), ("\u0120", "a"), ("o", "n"),
                 ("e", "r"), ("\u0120", "w"), ("in", "g")]:
        merges.append(a + " " + b)
        vocab.setdefault(a + b, len(vocab))
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def seeds_tokenizers():
    vocab, merges = tiny_bytelevel()
    bl = {"version": "1.0", "truncation": None, "padding": None,
          "added_tokens": [{"id": vocab["<|endoftext|>"], "content": "<|endoftext|>", "single_word": False,
                            "lstrip": False, "rstrip": False, "normalized": False, "special": True}],
          "normalizer": None,
          "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
          "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
          "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
          "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                    "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                    "vocab": vocab, "merges": merges}}
    put("tokenizer_json", "bytelevel", json.dumps(bl, ensure_ascii=False) + "\0the thing in the ring<|endoftext|>")
    put("tokenizer_json", "bytelevel_notext", json.dumps(bl, ensure_ascii=False))
    sp_vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        sp_vocab["<0x%02X>" % b] = len(sp_vocab)
    for p in ["\u2581", "a", "b", "\u2581a", "ab", "\u2581ab", "c"]:
        sp_vocab[p] = len(sp_vocab)
    sp = {"version": "1.0",
          "added_tokens": [{"id": 0, "content": "<unk>", "single_word": False, "lstrip": False, "rstrip": False,
                            "normalized": False, "special": True},
                           {"id": 1, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False,
                            "normalized": False, "special": True},
                           {"id": 2, "content": "</s>", "single_word": False, "lstrip": True, "rstrip": True,
                            "normalized": True, "special": True}],
          "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                             {"type": "Replace", "pattern": {"String": " "},
                                                              "content": "\u2581"}]},
          "pre_tokenizer": None,
          "post_processor": {"type": "TemplateProcessing",
                             "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                        {"Sequence": {"id": "A", "type_id": 0}}],
                             "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                             "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
          "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"},
                                                        "content": " "},
                                                       {"type": "ByteFallback"}, {"type": "Fuse"},
                                                       {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
          "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                    "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                    "vocab": sp_vocab, "merges": [["a", "b"], ["\u2581", "a"], ["\u2581", "ab"]]}}
    put("tokenizer_json", "spm_bytefallback", json.dumps(sp, ensure_ascii=False) + "\0ab abc \u00e9</s>x")

    put("vocab_merges", "tiny", json.dumps(vocab, ensure_ascii=False) + "\0#version: 0.2\n" + "\n".join(merges) +
        "\n\0the ringing thing, then\n")
    put("vocab_merges", "tiny_notext", json.dumps(vocab, ensure_ascii=False) + "\0" + "\n".join(merges))

    put("tokenizer_config", "added_decoder", json.dumps({
        "add_bos_token": True, "add_eos_token": True, "add_prefix_space": True,
        "bos_token": "<s>", "eos_token": {"content": "</s>", "lstrip": False, "normalized": False, "rstrip": False,
                                          "single_word": False, "__type": "AddedToken"},
        "added_tokens_decoder": {"7": {"content": "<s>", "lstrip": False, "normalized": False, "rstrip": False,
                                       "single_word": False, "special": True},
                                 "13": {"content": "<new>", "special": False, "normalized": True}}}) +
        "\0" + json.dumps({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}) +
        "\0" + json.dumps({"bos_token_id": 7, "eos_token_id": [8, 0]}))
    put("tokenizer_config", "eot_only", json.dumps({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                                                    "add_bos_token": False}))
    put("tokenizer_config", "map_only", "{}\0" + json.dumps({"additional_special_tokens": ["abc", "<pad>"],
                                                            "pad_token": "<pad>"}))

    # SentencePiece ModelProto, BPE, byte fallback (field numbers of sentencepiece_model.proto)
    def varint(v):
        out = b""
        while True:
            b = v & 0x7F
            v >>= 7
            if v:
                out += bytes([b | 0x80])
            else:
                return out + bytes([b])

    def key(f, w):
        return varint(f << 3 | w)

    def ld(f, data):
        return key(f, 2) + varint(len(data)) + data

    def piece(s, score, typ):
        return ld(1, ld(1, s.encode()) + key(2, 5) + struct.pack("<f", score) + key(3, 0) + varint(typ))

    pieces = piece("<unk>", 0, 2) + piece("<s>", 0, 3) + piece("</s>", 0, 3)
    for b in range(256):
        pieces += piece("<0x%02X>" % b, 0, 6)
    for i, p in enumerate(["\u2581", "a", "b", "\u2581a", "ab", "\u2581ab", "c", "Lily"]):
        pieces += piece(p, -float(i), 4 if p == "Lily" else 1)
    trainer = ld(2, key(3, 0) + varint(2) + key(35, 0) + varint(1) + key(40, 0) + varint(0) + key(41, 0) + varint(1))
    norm = ld(3, ld(1, b"identity") + key(3, 0) + varint(1) + key(4, 0) + varint(1) + key(5, 0) + varint(1))
    put("tokenizer_model", "tiny_bpe", pieces + trainer + norm)


def seeds_wordpiece():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "!", ",", ".", "'", "\u00e9", "\u4e2d"]
    vocab += [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab += ["the", "cat", "sat", "on", "mat", "##ing", "play", "un", "##aff", "##able"]
    ids = {v: i for i, v in enumerate(vocab)}
    special = [{"id": ids[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True} for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]]
    tj = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": special,
          "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                         "strip_accents": None, "lowercase": True},
          "pre_tokenizer": {"type": "BertPreTokenizer"},
          "post_processor": {"type": "TemplateProcessing",
                             "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                        {"Sequence": {"id": "A", "type_id": 0}},
                                        {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                             "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                                      {"Sequence": {"id": "B", "type_id": 1}},
                                      {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
                             "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [ids["[CLS]"]], "tokens": ["[CLS]"]},
                                                "[SEP]": {"id": "[SEP]", "ids": [ids["[SEP]"]], "tokens": ["[SEP]"]}}},
          "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
          "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                    "max_input_chars_per_word": 100, "vocab": ids}}
    text = "The cat sat on the mat, playing! Unaffable caf\u00e9 \u4e2d\u6587 [SEP] x"
    put("tokenizer_json", "wordpiece", json.dumps(tj, ensure_ascii=False) + "\0" + text)
    cfg = {"do_lower_case": True, "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
           "cls_token": "[CLS]", "mask_token": "[MASK]", "tokenize_chinese_chars": True, "strip_accents": None,
           "tokenizer_class": "BertTokenizer", "model_max_length": 512}
    put("vocab_txt", "tiny", "\n".join(vocab) + "\n\0" + json.dumps(cfg) + "\0" + text)
    put("vocab_txt", "tiny_cased", "\n".join(vocab) + "\0" + json.dumps({"do_lower_case": False}))
    put("vocab_txt", "vocab_only", "\n".join(vocab))
    wp_bare = {"model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                         "max_input_chars_per_word": 100, "vocab": {"[UNK]": 0, "cat": 1, "c": 2, "##at": 3}},
               "pre_tokenizer": {"type": "BertPreTokenizer"}}
    # regression: a word ending an unterminated text, no normalizer (heap-buffer-overflow, fixed)
    put("tokenizer_json", "regress_wordpiece_text_end", json.dumps(wp_bare) + "\0cat")
    put("vocab_txt", "regress_empty_lines", "\n\n:")  # two empty tokens first (UB NULL + 0, fixed)


# ---- datasets and archives -----------------------------------------------------------------

CSV = ("\ufefflabel,text,note\r\npositive,\"hello, world\",\r\nnegative,\"she said \"\"hi\"\"\",x\r\n"
       "positive,\"multi\nline\",\n\nneutral,plain,\n")
TSV = "sentence\tlabel\nit 's a charming and often affecting journey .\t1\nunflinchingly bleak\t0\n\t1\nx\t7\n"
JSONL = ('{"text": "a fine film", "label": "positive"}\n{"text": "na\u00efve caf\u00e9", "label": 1}\r\n\n'
         '{"sentence": "s", "label_id": 0, "text": "t", "label": "negative"}\n')


def seeds_dataset():
    put("dataset", "csv", b"\x00" + CSV.encode())
    put("dataset", "csv_skip_fixed", b"\x14" + CSV.encode())
    put("dataset", "tsv", b"\x01" + TSV.encode())
    put("dataset", "tsv_cols", b"\x21" + "sentence\tlabel_id\nok\t0\n".encode())
    put("dataset", "jsonl", b"\x02" + JSONL.encode())
    put("dataset", "jsonl_nolabel", b"\x0a" + b'{"text": "x"}\n{"text": "y", "label": null}\n')
    put("dataset", "text", b"\x03" + "Once upon a time.\n\u00e9\n".encode())


def tar_bytes(members, compress=None):
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 0
            ti.uname = ti.gname = "ftq"
            tf.addfile(ti, io.BytesIO(data))
    b = bio.getvalue()
    if compress == "gz":
        b = gzip.compress(b, mtime=0)
    return b


def zip_bytes(members, method):
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", compression=method) as zf:
        for name, data in members:
            zi = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = method
            zf.writestr(zi, data)
    return bio.getvalue()


def seeds_archive():
    csv = CSV.encode()
    put("archive", "tar_text", b"\x00" + tar_bytes([("story.txt", "Once upon a time.\n".encode())]))
    put("archive", "tar_csv", b"\x01" + tar_bytes([("./train.csv", csv)]))
    put("archive", "tgz_member", b"\x02" + tar_bytes([("dev.tsv", TSV.encode()), ("train.csv", csv)], "gz"))
    put("archive", "zip_stored", b"\x01" + zip_bytes([("train.jsonl", JSONL.encode())], zipfile.ZIP_STORED))
    put("archive", "zip_deflate", b"\x02" + zip_bytes([("a/", b""), ("train.csv", csv)], zipfile.ZIP_DEFLATED))
    put("archive", "zip_text", b"\x00" + zip_bytes([("t.txt", b"hello\n" * 20)], zipfile.ZIP_DEFLATED))
    put("archive", "tar_two", b"\x03" + tar_bytes([("a.csv", csv), ("b.csv", csv)]))


def main():
    seeds_safetensors()
    seeds_qindex()
    seeds_st_index()
    seeds_config()
    seeds_tokenizers()
    seeds_wordpiece()
    seeds_dataset()
    seeds_archive()


if __name__ == "__main__":
    main()
