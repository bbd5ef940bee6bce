#!/usr/bin/env python3
"""make_tokenizer_fixtures.py - reference outputs for tests/test_tokenizer.c, computed with the
real reference implementations: Hugging Face `tokenizers` (loading the shared tokenizer.json
files) and `sentencepiece` (loading tokenizer.model). Never a dependency of ftq or of its tests:
run it in a throwaway venv and commit what it writes to tests/fixtures/tokenizer/.

    python3 -m venv /tmp/tokvenv
    /tmp/tokvenv/bin/pip install tokenizers sentencepiece protobuf
    /tmp/tokvenv/bin/python tools/make_tokenizer_fixtures.py [SHARED_DIR]

Writes (deterministically; package versions are recorded in each file):
  whole_files.json     count + sha256(ids as little-endian int32) per tokenizer x corpus file
  special_cases.json   added/special tokens in the text, decode edge cases (HF and sentencepiece)
  stories260K_rmws/    stories260K tokenizer.model with remove_extra_whitespaces=true (a
                       derivative of the MIT-licensed stories260K model) + expected ids
  stories260K_user/    stories260K tokenizer.model plus two USER_DEFINED pieces + expected ids
  stories260K_added/   stories260K tokenizer.json plus added tokens with lstrip / rstrip /
                       normalized / single_word set + expected ids
  fuzz.json            seeded random strings (tricky whitespace, digits, scripts, emoji) encoded by
                       every reference, and random id sequences decoded by every reference
  gpt2_variants.json   ids of the golden strings through GPT-2 tokenizer.json variants that the
                       test builds itself (pre_tokenizer add_prefix_space, model ignore_merges)
"""
import copy
import hashlib
import json
import os
import random
import re
import struct
import sys

import sentencepiece as spm
import tokenizers
from sentencepiece import sentencepiece_model_pb2 as spm_pb2
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "tokenizer")
SHARED = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "shared"))

TOKENIZERS = {  # name -> directory relative to shared/
    "gpt2": "tokenizers/gpt2",
    "llama2": "tokenizers/llama2",
    "stories260K": "models/stories260K",
}
FILES = [
    "data/wikitext-2-raw/wiki.test.raw",
    "data/tinystories/tinystories_sample.txt",
    "data/tinyshakespeare/input.txt",
]
VERSIONS = {"tokenizers": tokenizers.__version__, "sentencepiece": spm.__version__}


def sha_ids(ids):
    return hashlib.sha256(struct.pack("<%di" % len(ids), *ids)).hexdigest()


def sha_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write(name, obj):
    text = json.dumps(obj, ensure_ascii=False, indent=1)
    # one line per number array keeps the files readable
    text = re.sub(r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]", lambda m: "[" + ", ".join(m.group(1).split(",")).replace("  ", " ").replace(", ", ",").replace(",", ", ") + "]", text)
    text = re.sub(r"\[(-?\d+(?:, \s*-?\d+)*)\]", lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
        f.write(text + "\n")


def hf(name):
    return Tokenizer.from_file(os.path.join(SHARED, TOKENIZERS[name], "tokenizer.json"))


def sp(name):
    return spm.SentencePieceProcessor(model_file=os.path.join(SHARED, TOKENIZERS[name], "tokenizer.model"))


def whole_files():
    results = []
    for name in TOKENIZERS:
        tok = hf(name)
        proc = sp(name) if name != "gpt2" else None
        for rel in FILES:
            with open(os.path.join(SHARED, rel), encoding="utf-8", newline="") as f:
                text = f.read()
            ids = tok.encode(text, add_special_tokens=False).ids
            if proc is not None:
                sp_ids = proc.encode(text)
                assert sp_ids == ids, "%s %s: tokenizers and sentencepiece disagree" % (name, rel)
                assert proc.decode(ids) == text
            assert tok.decode(ids, skip_special_tokens=True) == text, "%s %s: no round trip" % (name, rel)
            results.append({
                "tokenizer": name,
                "file": rel,
                "count": len(ids),
                "sha256": sha_ids(ids),
                "first_ids": ids[:16],
                "checked_with": "tokenizers (tokenizer.json)" + (" == sentencepiece (tokenizer.model)" if proc else ""),
            })
            print(name, rel, len(ids), file=sys.stderr)
    write("whole_files.json", {
        "generator": "tools/make_tokenizer_fixtures.py",
        "versions": VERSIONS,
        "ids_hash": "sha256 of the ids (add_special_tokens=False) packed as little-endian int32",
        "file_sha256": {rel: sha_file(os.path.join(SHARED, rel)) for rel in FILES},
        "results": results,
    })


ADDED_TEXTS = {
    "gpt2": ["Hello<|endoftext|>world", " <|endoftext|> x", "a <|endoftext|>\n<|endoftext|><|endoftext|>",
             "<|endoftext|>", "<|endoftext|", "<|endoftext|>The end.<|endoftext|>"],
    "llama2": ["Hello</s>world", "Hello </s> world", "<s>Hi</s>", "</s>", " </s>", "a<unk>b", "<s> <s>",
               "</s>\n", "<s", "x</s></s>y"],
    "stories260K": ["Once upon a time</s>Lily", "<s>Once</s>", " </s> ", "</s>\n\n<s>"],
}

DECODE_IDS = {
    "gpt2": [[15496, 50256, 6894], [50256], [0xb8, 0x5e, 40], [220, 220], [37, 12520, 233, 232]],
    "llama2": [[1, 15043, 3186], [1, 29871, 15043], [0, 15043], [2, 15043], [29871, 233, 154, 168, 258],
               [233, 154, 68], [258, 29871, 68], [13, 15043], [35, 15043], [29871], [259, 15043], [1, 2]],
    "stories260K": [[1, 403, 407, 261, 378], [1, 2, 403], [261, 3 + 0xC3, 3 + 0xBC], [3 + 0xFF, 3 + 0x41]],
}


def special_cases():
    cases = []
    for name, texts in ADDED_TEXTS.items():
        tok = hf(name)
        for text in texts:
            cases.append({
                "tokenizer": name,
                "text": text,
                "ids": tok.encode(text, add_special_tokens=False).ids,
                "ids_special": tok.encode(text, add_special_tokens=True).ids,
            })
    decodes = []
    for name, seqs in DECODE_IDS.items():
        tok = hf(name)
        proc = sp(name) if name != "gpt2" else None
        for ids in seqs:
            d = {"tokenizer": name, "ids": ids,
                 "hf_skip": tok.decode(ids, skip_special_tokens=True),
                 "hf_keep": tok.decode(ids, skip_special_tokens=False)}
            if proc is not None:
                # sentencepiece renders <unk> as " ⁇ "; ftq drops it with skip_special like HF
                d["sp"] = proc.decode([i for i in ids if not proc.is_unknown(i)])
            decodes.append(d)
    write("special_cases.json", {
        "generator": "tools/make_tokenizer_fixtures.py",
        "versions": VERSIONS,
        "encode": cases,
        "decode": decodes,
    })


RMWS_TEXTS = ["Hello world", "  Hello   world  ", "   ", "", " a", "a ", "a  b", "\ta  \tb\t", "x\u2581 y",
              " \u2581 ", "Once upon a time,  there was   a girl.", "a\n\n  b", "\u2581"]


def rmws():
    path = os.path.join(SHARED, TOKENIZERS["stories260K"], "tokenizer.model")
    m = spm_pb2.ModelProto()
    with open(path, "rb") as f:
        m.ParseFromString(f.read())
    m.normalizer_spec.remove_extra_whitespaces = True
    d = os.path.join(OUT, "stories260K_rmws")
    os.makedirs(d, exist_ok=True)
    blob = m.SerializeToString()
    with open(os.path.join(d, "tokenizer.model"), "wb") as f:
        f.write(blob)
    proc = spm.SentencePieceProcessor(model_proto=blob)
    cases = [{"text": t, "ids": proc.encode(t), "decoded": proc.decode(proc.encode(t))} for t in RMWS_TEXTS]
    decodes = [{"ids": ids, "decoded": proc.decode(ids)} for ids in ([259, 259, 346], [259], [1, 259, 346])]
    write("stories260K_rmws/expected.json", {
        "generator": "tools/make_tokenizer_fixtures.py",
        "versions": VERSIONS,
        "what": "models/stories260K/tokenizer.model with normalizer_spec.remove_extra_whitespaces = true",
        "encode": cases,
        "decode": decodes,
    })


ADDED_VARIANT_TOKENS = [
    {"id": 512, "content": "<mask>", "single_word": False, "lstrip": True, "rstrip": False, "normalized": False, "special": True},
    {"id": 513, "content": "[R]", "single_word": False, "lstrip": False, "rstrip": True, "normalized": False, "special": False},
    {"id": 514, "content": "hello world", "single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": False},
    {"id": 515, "content": "ab", "single_word": True, "lstrip": False, "rstrip": False, "normalized": False, "special": False},
    {"id": 516, "content": "<|im_end|>", "single_word": False, "lstrip": True, "rstrip": True, "normalized": False, "special": True},
]
ADDED_VARIANT_TEXTS = ["a <mask> b", "a  <mask>b", "<mask>", " <mask>", "x\t<mask>", "x [R]  y", "[R]\n\nz", "[R]",
                       "say hello world now", "hello world", "hello  world", "xhello world", "ab cab ab.", "abab ab",
                       "(ab)", "x <|im_end|> \n y", "<|im_end|><mask>[R]ab", "no specials here", ""]


def added_variant():
    src = os.path.join(SHARED, TOKENIZERS["stories260K"], "tokenizer.json")
    with open(src, encoding="utf-8") as f:
        j = json.load(f)
    j["added_tokens"] += ADDED_VARIANT_TOKENS
    d = os.path.join(OUT, "stories260K_added")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=1)
        f.write("\n")
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    cases = []
    for text in ADDED_VARIANT_TEXTS:
        ids = tok.encode(text, add_special_tokens=False).ids
        cases.append({"text": text, "ids": ids, "ids_special": tok.encode(text, add_special_tokens=True).ids,
                      "decoded_skip": tok.decode(ids, skip_special_tokens=True),
                      "decoded_keep": tok.decode(ids, skip_special_tokens=False)})
    write("stories260K_added/expected.json", {
        "generator": "tools/make_tokenizer_fixtures.py",
        "versions": VERSIONS,
        "what": "models/stories260K/tokenizer.json with extra added tokens (ids 512-516)",
        "encode": cases,
    })


def gpt2_variants():
    src = os.path.join(SHARED, TOKENIZERS["gpt2"], "tokenizer.json")
    with open(src, encoding="utf-8") as f:
        base = json.load(f)
    with open(os.path.join(SHARED, "golden", "tokenize_gpt2.json"), encoding="utf-8") as f:
        golden = json.load(f)["cases"]
    out = {"generator": "tools/make_tokenizer_fixtures.py", "versions": VERSIONS, "variants": {}}
    variants = {
        "pre_tokenizer.add_prefix_space=true": lambda j: j["pre_tokenizer"].update(add_prefix_space=True),
        "model.ignore_merges=true": lambda j: j["model"].update(ignore_merges=True),
    }
    for name, change in variants.items():
        j = copy.deepcopy(base)
        change(j)
        tok = Tokenizer.from_str(json.dumps(j))
        out["variants"][name] = [{"name": c["name"], "ids": tok.encode(c["text"]).ids} for c in golden]
    # Sequence[Split(GPT-2 regex), ByteLevel(use_regex=false)] must equal plain ByteLevel: checked here,
    # the test then expects the golden ids from its own rewrite of the file
    j = copy.deepcopy(base)
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    tok = Tokenizer.from_str(json.dumps(j))
    for c in golden:
        assert tok.encode(c["text"]).ids == c["ids"], c["name"]
    out["split_sequence_equals_golden"] = True
    write("gpt2_variants.json", out)


FUZZ_ATOMS = [
    " ", " ", " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u1680", "\u2000",
    "\u2009", "\u2028", "\u2029", "\u202f", "\u3000", "\u200b", "\ufeff", "\u2581",
    "a", "e", "s", "t", "the", "The", "ing", "Hello", "world", "don", "'", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d",
    "'S", "\u2019", "\"", "0", "7", "42", "2024", "3.14", "\u00b2", "\u00bd", "\u2167", "\u0663", "\u0967",
    ".", ",", "!", "?", "...", "--", "(", ")", "[", "]", "{", "}", "<", ">", "/", "\\", "_", "#", "@", "$", "%", "&",
    "*", "+", "=", "|", "~", "^", "`", "\u00e9", "e\u0301", "\u00df", "\ufb01", "\u0153", "\u00fc", "Z\u00fcrich",
    "\u4e2d\u6587", "\u65e5\u672c", "\ud55c\uad6d", "\u0416", "\u03a9", "\u0645\u0631", "\u05e9",
    "\u0928\u092e\u0938\u094d\u0924\u0947", "\U0001f600", "\U0001f468\u200d\U0001f469", "\U0001f1e9\U0001f1ea",
    "\U0001f44d\U0001f3fd", "\u00a9", "\u20ac", "\u2603", "\U00010348", "\x01", "\x7f",
]
SPECIAL_TEXTS = ["<s>", "</s>", "<unk>", "<|endoftext|>"]


def fuzz():
    rng = random.Random(20241122)
    texts = []
    while len(texts) < 300:
        t = "".join(rng.choice(FUZZ_ATOMS) for _ in range(rng.randint(1, 14)))
        if not any(sp in t for sp in SPECIAL_TEXTS):
            texts.append(t)
    enc = []
    for name in TOKENIZERS:
        tok = hf(name)
        proc = sp(name) if name != "gpt2" else None
        for t in texts:
            ids = tok.encode(t, add_special_tokens=False).ids
            if proc is not None:
                assert proc.encode(t) == ids, (name, t)
            enc.append({"tokenizer": name, "text": t, "ids": ids})
    dec = []
    for name in TOKENIZERS:
        tok = hf(name)
        proc = sp(name) if name != "gpt2" else None
        n = tok.get_vocab_size()
        while sum(d["tokenizer"] == name for d in dec) < 150:
            ids = []
            for _ in range(rng.randint(1, 10)):
                r = rng.random()
                if name == "gpt2":
                    ids.append(rng.choice([50256, 220, 198, 13]) if r < 0.2 else rng.randrange(256) if r < 0.6
                               else rng.randrange(n))
                else:
                    ids.append(rng.randrange(3) if r < 0.1 else 3 + rng.randrange(256) if r < 0.5
                               else rng.choice([259, 29871] if name == "llama2" else [410]) if r < 0.6
                               else rng.randrange(n))
            if (188 if name == "gpt2" else 3) in ids:  # the byte 0x00 (see above)
                continue
            d = {"tokenizer": name, "ids": ids, "hf_skip": tok.decode(ids, skip_special_tokens=True),
                 "hf_keep": tok.decode(ids, skip_special_tokens=False)}
            if proc is not None:
                d["sp"] = proc.decode([i for i in ids if not proc.is_unknown(i)])
            dec.append(d)
    write("fuzz.json", {"generator": "tools/make_tokenizer_fixtures.py", "versions": VERSIONS, "seed": 20241122,
                        "encode": enc, "decode": dec})


USER_TEXTS = ["Lily and Lily", "Lilypad", " Lily", "xLilyx", "LiLily", "Lil", "<b>Lily</b>", "a <b> b"]


def user_defined():
    """stories260K tokenizer.model with two USER_DEFINED pieces appended (ids 512, 513)."""
    path = os.path.join(SHARED, TOKENIZERS["stories260K"], "tokenizer.model")
    m = spm_pb2.ModelProto()
    with open(path, "rb") as f:
        m.ParseFromString(f.read())
    for piece in ("Lily", "<b>"):
        p = m.pieces.add()
        p.piece = piece
        p.score = 0.0
        p.type = spm_pb2.ModelProto.SentencePiece.USER_DEFINED
    m.trainer_spec.vocab_size = len(m.pieces)
    d = os.path.join(OUT, "stories260K_user")
    os.makedirs(d, exist_ok=True)
    blob = m.SerializeToString()
    with open(os.path.join(d, "tokenizer.model"), "wb") as f:
        f.write(blob)
    proc = spm.SentencePieceProcessor(model_proto=blob)
    write("stories260K_user/expected.json", {
        "generator": "tools/make_tokenizer_fixtures.py",
        "versions": VERSIONS,
        "what": "models/stories260K/tokenizer.model + USER_DEFINED pieces 'Lily' (512) and '<b>' (513)",
        "encode": [{"text": t, "ids": proc.encode(t), "decoded": proc.decode(proc.encode(t))} for t in USER_TEXTS],
    })


def main():
    os.makedirs(OUT, exist_ok=True)
    user_defined()
    fuzz()
    added_variant()
    gpt2_variants()
    special_cases()
    rmws()
    whole_files()


if __name__ == "__main__":
    main()
