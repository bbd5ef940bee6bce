#!/usr/bin/env python3
"""make_spm_unigram_fixtures.py - two small sentencepiece UNIGRAM tokenizer.model files trained
here with `sentencepiece` itself (identity normalization; one with user-defined and control
symbols, one with byte fallback and remove_extra_whitespaces=false), and the ids sentencepiece
gives for tricky strings and for a WikiText-2 test slice. Read by tests/test_tokenizer_json.c
(spm_unigram); never a dependency of ftq or of its tests. Run in a throwaway venv:

    python3 -m venv /tmp/spvenv && /tmp/spvenv/bin/pip install sentencepiece
    /tmp/spvenv/bin/python tools/make_spm_unigram_fixtures.py [SHARED_DIR]

Writes tests/fixtures/spm_unigram/NAME/tokenizer.model and tests/fixtures/spm_unigram/expected.json:
per model and string, encode(text) (no BOS) and decode(ids) (null where the ids hold the unknown
piece: sentencepiece writes " ⁇ " for it, ftq its text as HF does); for the slice the id count,
sha256 of the ids (little-endian int32) and sha256 of the decoded text. Training runs on one thread
over the first 200 kB of tinyshakespeare; the model files record the temporary training paths, so a
rerun writes other bytes (and possibly other pieces): commit the directory as one piece.
"""
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "spm_unigram")
SHARED = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "shared"))
SLICE = "data/wikitext-2-raw/wiki.test.raw"
SLICE_BYTES = 60000

STRINGS = [
    "", " ", "Hello world", " Hello  world ", "hello\nworld\n\n  x", "\t tab\tand\r\nCRLF",
    "I'M here, don't you'LL see?!", "12345 678 9 3.14159", "caf\u00e9 vs cafe\u0301", "日本語のテキスト 中文",
    "emoji 😀👍🏽", "ŒŒ unknown ŒŒŒ", "hello <sep> <ctl> world ing", "</s> <s> <unk>", "thinking singing ing",
    "  leading and trailing  ", "abc" * 30,
]
MODELS = {
    "plain": dict(vocab_size=500, user_defined_symbols=["<sep>", "ing"], control_symbols=["<ctl>"]),
    "bytes": dict(vocab_size=600, byte_fallback=True, remove_extra_whitespaces=False),
}


def main():
    with open(os.path.join(SHARED, "data/tinyshakespeare/input.txt"), "rb") as f:
        train = f.read()[:200000]
    with open(os.path.join(SHARED, SLICE), "rb") as f:
        data = f.read()
    data = data[: data.rfind(b"\n", 0, SLICE_BYTES) + 1]
    slice_text = data.decode("utf-8")
    exp = {"sentencepiece_version": spm.__version__, "strings": STRINGS,
           "slice": {"file": SLICE, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}, "results": {}}
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "train.txt")
        with open(src, "wb") as f:
            f.write(train)
        for name, opts in MODELS.items():
            prefix = os.path.join(tmp, name)
            spm.SentencePieceTrainer.train(input=src, model_prefix=prefix, model_type="unigram",
                                           normalization_rule_name="identity", num_threads=1, minloglevel=2, **opts)
            d = os.path.join(OUT, name)
            os.makedirs(d, exist_ok=True)
            shutil.copy(prefix + ".model", os.path.join(d, "tokenizer.model"))
            sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "tokenizer.model"))
            unk = sp.unk_id()

            def decoded(ids):  # sentencepiece writes unk as " ⁇ ", ftq as HF does: compare only without unk
                return sp.decode(ids) if unk not in ids else None
            cases = [{"ids": sp.encode(s), "decoded": decoded(sp.encode(s))} for s in STRINGS]
            ids = sp.encode(slice_text)
            dec = sp.decode(ids)
            exp["results"][name] = {"cases": cases, "slice": {
                "count": len(ids), "sha256": hashlib.sha256(struct.pack("<%di" % len(ids), *ids)).hexdigest(),
                "decoded_sha256": hashlib.sha256(dec.encode()).hexdigest() if unk not in ids else None,
                "round_trip": dec == slice_text}}
            print("%-6s vocab %d  slice %d ids  round trip %s" % (name, sp.get_piece_size(), len(ids),
                                                                  dec == slice_text))
    finally:
        shutil.rmtree(tmp)
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(exp, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
