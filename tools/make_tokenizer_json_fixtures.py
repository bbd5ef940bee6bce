#!/usr/bin/python3
"""make_tokenizer_json_fixtures.py - small tokenizer.json files, one per component family of HF
`tokenizers`, trained or assembled here with `tokenizers` itself, and the ids it gives for a set
of tricky strings and for a slice of WikiText-2 test. Read by tests/test_tokenizer_json.c; never
a dependency of ftq or of its tests. Run with a Python that has `tokenizers` (0.20.3 here):

    /usr/bin/python3 tools/make_tokenizer_json_fixtures.py [SHARED_DIR]

Writes tests/fixtures/tokenizer_json/NAME/tokenizer.json for each tokenizer below and
tests/fixtures/tokenizer_json/expected.json: per tokenizer, for each string the ids of
encode(text, add_special_tokens=False) and decode(ids, skip_special_tokens=False), "ids_text"
where they differ with encode_special_tokens = True (special-token text read as plain text,
ftq's default; the other ids are with --parse-special, HF's default), and for the
slice the id count, sha256 of the ids (little-endian int32) and sha256 of the decoded text.

The models are trained on the first 200 kB of tinyshakespeare (small vocabularies keep the
files small); llama3 and qwen2 carry the pre-tokenizers, normalizer and decoder that those
families publish (Split with their regex + ByteLevel(use_regex=false); Qwen2 adds NFC).
The BPE files come out the same on every run; the Unigram and WordPiece trainers may order
ties differently from run to run, so a rerun can give other (equally valid) files with their own
expected ids: commit the directory as one piece.
"""
import hashlib
import json
import os
import struct
import sys

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import tokenizers  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "tokenizer_json")
SHARED = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "shared"))
TRAIN = "data/tinyshakespeare/input.txt"
SLICE = "data/wikitext-2-raw/wiki.test.raw"
SLICE_BYTES = 60000  # cut at the last newline before this

LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
             r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
            r"\s*[\r\n]+|\s+(?!\S)|\s+")

STRINGS = [
    "", " ", "   ", "Hello world", " Hello  world ", "hello\nworld\n\n  x", "\t tab\tand\r\nCRLF",
    "I'M here, don't you'LL see?!", "12345 678 9 3.14159 1,000,000", "a²b³ ٣٤٥ Ⅻ ½",
    "caf\u00e9 vs cafe\u0301", "\u212b \u0041\u030a \u00c5", "ﬁne ﬂow ＡＢＣ １２３", "İstanbul ΣΑΣ Straße",
    "日本語のテキスト 中文", "emoji 😀👍🏽 👨‍👩‍👧", "x\u200dy zero\u200bwidth", "  leading and trailing  ",
    "<|im_start|>user\nhi<|im_end|>", "</s> <s> <unk>", "won't can't  it's", "a--b...c!!!d???",
    "___init__ = {'k': [1, 2]}", "naïve résumé coöperate", "line1\n\n\nline2    \n", "  \u3000ideographic space",
    "Ǆǅǆ ǈ", "\u00a0nbsp\u00a0", "abc" * 40, "ÀÉÎÕÜ àéîõü",
]


def read(rel, limit=None):
    with open(os.path.join(SHARED, rel), "rb") as f:
        data = f.read()
    if limit is not None:
        data = data[: data.rfind(b"\n", 0, limit) + 1]
    return data.decode("utf-8")


def train(tok, trainer, text):
    tok.train_from_iterator([text[i:i + 4096] for i in range(0, len(text), 4096)], trainer=trainer)
    return tok


def bytelevel_trainer(n, special=()):
    return trainers.BpeTrainer(vocab_size=n, min_frequency=2, show_progress=False, special_tokens=list(special),
                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet())


def build(text):
    out = {}

    # SmolLM2: Digits(individual) + ByteLevel, ByteLevel decoder
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                               pre_tokenizers.ByteLevel(add_prefix_space=False)])
    t.decoder = decoders.ByteLevel()
    out["digits_bytelevel"] = train(t, bytelevel_trainer(700, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]), text)

    # Llama-3 style: Split(regex) + ByteLevel(use_regex=false), ByteLevel decoder, ignore_merges
    t = Tokenizer(models.BPE(ignore_merges=True))
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    out["llama3"] = train(t, bytelevel_trainer(800, ["<|begin_of_text|>", "<|end_of_text|>"]), text)

    # Qwen2 style: NFC + Split(regex) + ByteLevel(use_regex=false)
    t = Tokenizer(models.BPE())
    t.normalizer = normalizers.NFC()
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    out["qwen2"] = train(t, bytelevel_trainer(800, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]), text)

    # Metaspace(prepend first) + BPE with byte fallback, ByteFallback + Metaspace decoders
    t = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    t.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="\u2581",
                                                                                  prepend_scheme="first")])
    specials = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    out["metaspace_bpe"] = train(t, trainers.BpeTrainer(vocab_size=700, min_frequency=2, show_progress=False,
                                                        special_tokens=specials), text)

    # Unigram: NFKC, Replace(regex) , Strip, Metaspace(always, no split), Metaspace decoder
    t = Tokenizer(models.Unigram())
    t.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(r" {2,}"), " "),
                                         normalizers.Strip()])
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=False)
    t.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    out["unigram"] = train(t, trainers.UnigramTrainer(vocab_size=600, show_progress=False, unk_token="<unk>",
                                                      special_tokens=["<unk>", "<s>", "</s>"]), text)

    # Unigram with byte fallback over Whitespace words, NFD + Lowercase; ByteFallback + Fuse decoder
    t = Tokenizer(models.Unigram())
    t.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase()])
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    t = train(t, trainers.UnigramTrainer(vocab_size=500, show_progress=False, unk_token="<unk>",
                                         special_tokens=["<unk>"] + ["<0x%02X>" % b for b in range(256)]), text)
    j = json.loads(t.to_str())
    j["model"]["byte_fallback"] = True
    out["unigram_bytes"] = Tokenizer.from_str(json.dumps(j))

    # BPE without byte level: unk, Whitespace-split + Punctuation, NFKC + Lowercase + Prepend
    t = Tokenizer(models.BPE(unk_token="[UNK]"))
    t.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(), normalizers.Prepend("^")])
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    out["bpe_unk_punct"] = train(t, trainers.BpeTrainer(vocab_size=600, min_frequency=2, show_progress=False,
                                                        special_tokens=["[UNK]"]), text)

    # BPE with continuing_subword_prefix and end_of_word_suffix over Whitespace, NFKC; no decoder
    t = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##", end_of_word_suffix="</w>"))
    t.normalizer = normalizers.NFKC()
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    out["bpe_affixes"] = train(t, trainers.BpeTrainer(vocab_size=600, min_frequency=2, show_progress=False,
                                                      special_tokens=["[UNK]"], continuing_subword_prefix="##",
                                                      end_of_word_suffix="</w>"), text)

    # WordPiece over WhitespaceSplit + Punctuation(contiguous), NFD + Lowercase, WordPiece decoder
    t = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    t.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase()])
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                               pre_tokenizers.Punctuation(behavior="contiguous")])
    # cleanup=False: ftq's WordPiece cleanup runs over the whole text as transformers' decode
    # (clean_up_tokenization_spaces) does, not per token as this decoder alone does
    t.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    out["wordpiece_split"] = train(t, trainers.WordPieceTrainer(vocab_size=600, show_progress=False,
                                                                special_tokens=["[UNK]", "[CLS]", "[SEP]"]), text)

    # Split behaviours (string / regex, invert, empty matches) in front of ByteLevel
    def bl_model(pre, name, prefix_space=False, use_regex=False, norm=None):
        t = Tokenizer(models.BPE())
        if norm:
            t.normalizer = norm
        t.pre_tokenizer = pre_tokenizers.Sequence(pre + [pre_tokenizers.ByteLevel(add_prefix_space=prefix_space,
                                                                                  use_regex=use_regex)])
        t.decoder = decoders.ByteLevel()
        out[name] = train(t, bytelevel_trainer(500), text)

    bl_model([pre_tokenizers.Split(" ", behavior="merged_with_previous"),
              pre_tokenizers.Split(Regex(r"\p{N}+"), behavior="merged_with_next"),
              pre_tokenizers.Punctuation(behavior="contiguous")], "split_a")
    bl_model([pre_tokenizers.Split(Regex(r"\s+"), behavior="isolated", invert=True),
              pre_tokenizers.Split("e", behavior="contiguous"),
              pre_tokenizers.Digits(individual_digits=False)], "split_b", prefix_space=True)
    bl_model([pre_tokenizers.Split(Regex(r"a*"), behavior="removed"),
              pre_tokenizers.Split(Regex(r"[,.!?]"), behavior="merged_with_previous", invert=True)], "split_c",
             use_regex=True, norm=normalizers.Sequence([normalizers.Strip(left=False, right=True),
                                                        normalizers.Replace("e", "E")]))
    bl_model([pre_tokenizers.Split(Regex(r"o+"), behavior="removed", invert=True),
              pre_tokenizers.Split(Regex(r"x?"), behavior="merged_with_next"),
              pre_tokenizers.WhitespaceSplit()], "split_d", norm=normalizers.NFKD())
    return out


def sha_ids(ids):
    return hashlib.sha256(struct.pack("<%di" % len(ids), *ids)).hexdigest()


def main():
    text = read(TRAIN)[:200000]
    slice_text = read(SLICE, SLICE_BYTES)
    toks = build(text)
    exp = {"tokenizers_version": tokenizers.__version__, "strings": STRINGS,
           "slice": {"file": SLICE, "bytes": len(slice_text.encode("utf-8")),
                     "sha256": hashlib.sha256(slice_text.encode("utf-8")).hexdigest()},
           "results": {}}
    for name, tok in toks.items():
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(json.loads(tok.to_str()), ensure_ascii=False, separators=(",", ":")))
            f.write("\n")
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))  # exactly what the test loads
        cases = []
        text_tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        text_tok.encode_special_tokens = True  # special-token text read as text (ftq's default)
        for s in STRINGS:
            ids = tok.encode(s, add_special_tokens=False).ids
            case = {"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)}
            ids_text = text_tok.encode(s, add_special_tokens=False).ids
            if ids_text != ids:
                case["ids_text"] = ids_text
            cases.append(case)
        ids = tok.encode(slice_text, add_special_tokens=False).ids
        dec = tok.decode(ids, skip_special_tokens=False)
        exp["results"][name] = {"cases": cases, "slice": {"count": len(ids), "sha256": sha_ids(ids),
                                                          "decoded_sha256": hashlib.sha256(dec.encode()).hexdigest(),
                                                          "round_trip": dec == slice_text}}
        print("%-18s vocab %4d  slice %6d ids  round trip %s" % (name, tok.get_vocab_size(), len(ids),
                                                                 dec == slice_text))
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(exp, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
