#!/usr/bin/python3
"""Show that Hugging Face transformers reads the model files ftq writes from a GGUF file
(io/gguf_sidecar.c: config.json, tokenizer.json, tokenizer_config.json) with the GGUF's own
token ids: AutoTokenizer on the written directory against ../shared/golden/smollm2/tokenize.json
(every case, and the whole WikiText-2 test / TinyStories sample / Tiny Shakespeare files by
count and sha256 of the space-joined ids), AutoConfig against the GGUF's hyper-parameters, and
the chat template.

Writes tests/fixtures/gguf/smollm2_model_files_hf.json (what transformers computed), which
tests/test_gguf.c's smollm2_model_files compares ftq's own tokenization of the same files with.

Usage (from the repository root, after building):
  ./build/ftq_tests gguf:smollm2_model_files      # writes build/test-tmp/gguf_files/
  /usr/bin/python3 tools/check_gguf_model_files.py build/test-tmp/gguf_files
Needs transformers (4.46.3 here) and tokenizers; no network.
"""
import hashlib
import json
import os
import sys

from transformers import AutoConfig, AutoTokenizer
import transformers

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SHARED = os.path.join(ROOT, "..", "shared")
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf", "smollm2_model_files_hf.json")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    gold = json.load(open(os.path.join(SHARED, "golden", "smollm2", "tokenize.json")))
    tok = AutoTokenizer.from_pretrained(d)
    bad = 0
    for c in gold["cases"]:
        ids = tok(c["text"])["input_ids"]
        if ids != c["ids"]:
            bad += 1
            print("case %r: %d ids, expected %d" % (c["name"], len(ids), len(c["ids"])))
        elif tok.decode(ids) != c["text"]:
            bad += 1
            print("case %r: decode differs" % c["name"])
    files = {}
    for path, want in gold["whole_files"].items():
        text = open(os.path.join(SHARED, path), encoding="utf-8").read()
        ids = tok(text)["input_ids"]
        sha = hashlib.sha256(" ".join(map(str, ids)).encode()).hexdigest()
        ok = len(ids) == want["count"] and sha == want["sha256_of_space_joined_ids"]
        files[path] = {"count": len(ids), "sha256_of_space_joined_ids": sha, "equals_golden": ok}
        print("%s: %d ids, sha256 %s: %s" % (path, len(ids), sha, "golden" if ok else "DIFFERS"))
        bad += not ok
    cfg = AutoConfig.from_pretrained(d)
    want_cfg = {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
                "max_position_embeddings": 8192, "rms_norm_eps": 1e-05, "rope_theta": 100000.0,
                "bos_token_id": 1, "eos_token_id": 2}
    for k, v in want_cfg.items():
        if getattr(cfg, k) != v:
            bad += 1
            print("config %s = %r, expected %r" % (k, getattr(cfg, k), v))
    try:  # needs jinja2, which /usr/bin/python3 may lack
        chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                       add_generation_prompt=True)
    except Exception as e:  # noqa: BLE001 - report, do not fail the tokenizer check
        print("chat template not rendered here (%s)" % e)
        chat = None
    if not tok.chat_template:
        bad += 1
        print("no chat template")
    print("chat template:", repr(chat))
    specials = {"bos": tok.bos_token, "eos": tok.eos_token, "pad": tok.pad_token,
                "added": sorted(tok.all_special_ids)}
    print("special tokens:", specials)
    result = {"transformers": transformers.__version__, "cases": len(gold["cases"]), "cases_differing": bad,
              "whole_files": files, "chat_prompt": chat, "bos_token": tok.bos_token, "eos_token": tok.eos_token}
    with open(OUT, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", OUT, "-", "all equal" if bad == 0 else "%d differences" % bad)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
