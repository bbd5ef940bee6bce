#!/usr/bin/python3
"""make_spm_gguf_ids.py - the ids Hugging Face's LlamaTokenizerFast gives for Llama 2's
sentencepiece BPE vocabulary (the one in tests/fixtures/spm_gguf/llama2_tok.gguf), built by
transformers' own LlamaConverter (legacy) from ../shared/tokenizers/llama2/tokenizer.model:
merges from the scores by convert_slow_tokenizer.generate_merges, normalizer, decoder and
added tokens as the converter makes them. Neither protobuf nor sentencepiece is installed
here, so the ModelProto is read by tools/spm_model_proto.py and handed to the converter
(which then runs unchanged). Read by tests/test_gguf_sidecar.c.

    /usr/bin/python3 tools/make_spm_gguf_ids.py [SHARED_DIR]   (transformers 4.46.3, tokenizers 0.20.3)

Writes tests/fixtures/spm_gguf/expected.json: for each string, the ids of
encode(text, add_special_tokens=False) and decode(ids); for a slice of WikiText-2 test
(cut at the last newline before 60 kB) the id count and the sha256 of the ids (int32 LE).
"""
import hashlib
import json
import os
import struct
import sys
from types import SimpleNamespace

os.environ["TOKENIZERS_PARALLELISM"] = "false"

from transformers import LlamaTokenizerFast  # noqa: E402
from transformers.convert_slow_tokenizer import LlamaConverter, generate_merges  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import spm_model_proto  # noqa: E402

OUT = os.path.join(HERE, "..", "tests", "fixtures", "spm_gguf")
SHARED = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "shared"))
SLICE = "data/wikitext-2-raw/wiki.test.raw"
SLICE_BYTES = 60000

STRINGS = [
    "Hello world",
    " Hello  world ",
    "The quick brown fox jumps over the lazy dog.\nNew line\n\n  two spaces",
    "don't you're I'll 1234567 3.14159 $100,000",
    "naïve café résumé Ångström",
    "日本語のテキスト 中文 한국어",
    "emoji 🤗🚀 and ✓ symbols ∑∫√",
    "tabs\tand\r\ncarriage returns",
    "    leading spaces",
    "trailing spaces    ",
    "▁already▁escaped▁",
    "a",
    "",
    "@@ -1,5 +1,7 @@ def f(x):\n    return x**2",
    "Zürich–Genève — “quotes” «guillemets»",
]


class _Extractor:
    """SentencePieceExtractor without sentencepiece: the same vocab, the same generate_merges."""

    def __init__(self, pieces):
        self.vocab = {p["piece"]: i for i, p in enumerate(pieces)}

    def extract(self, vocab_scores=None):
        return self.vocab, generate_merges(self.vocab, vocab_scores)


def hf_tokenizer(model_path):
    pieces, trainer, norm = spm_model_proto.read(model_path)
    proto = SimpleNamespace(
        pieces=[SimpleNamespace(**p) for p in pieces],
        trainer_spec=SimpleNamespace(model_type=trainer["model_type"], unk_piece=trainer["unk_piece"],
                                     byte_fallback=trainer["byte_fallback"]),
        normalizer_spec=SimpleNamespace(add_dummy_prefix=norm["add_dummy_prefix"], precompiled_charsmap=b""),
    )
    conv = LlamaConverter.__new__(LlamaConverter)
    conv.proto = proto
    conv.original_tokenizer = SimpleNamespace(vocab_file=model_path, legacy=True,
                                              add_prefix_space=norm["add_dummy_prefix"],
                                              convert_ids_to_tokens=lambda i: pieces[i]["piece"])
    conv.SpmExtractor = lambda _path: _Extractor(pieces)
    fast = conv.converted()
    return LlamaTokenizerFast(tokenizer_object=fast, legacy=True, add_bos_token=True, add_eos_token=False,
                              unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def main():
    tok = hf_tokenizer(os.path.join(SHARED, "tokenizers/llama2/tokenizer.model"))
    out = {"tokenizer": "llama2 (LlamaConverter, legacy)", "strings": []}
    for s in STRINGS:
        ids = tok.encode(s, add_special_tokens=False)
        out["strings"].append({"text": s, "ids": ids, "decoded": tok.decode(ids)})
    raw = open(os.path.join(SHARED, SLICE), "rb").read()[:SLICE_BYTES]
    text = raw[:raw.rindex(b"\n") + 1].decode("utf-8")
    ids = tok.encode(text, add_special_tokens=False)
    out["slice"] = {"file": SLICE, "bytes": len(text.encode("utf-8")), "count": len(ids),
                    "sha256": hashlib.sha256(struct.pack("<%di" % len(ids), *ids)).hexdigest()}
    out["with_bos"] = tok.encode("Hello world")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote", os.path.join(OUT, "expected.json"), "slice", out["slice"]["count"], "ids")


if __name__ == "__main__":
    main()
