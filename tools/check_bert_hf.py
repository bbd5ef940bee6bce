#!/usr/bin/env python3
"""check_bert_hf.py - a directory written by `ftq finetune` on a BERT model must load in HF
transformers unchanged (AutoModelForSequenceClassification) and give the logits `ftq classify`
gives. A fixture check beside the tests, never a dependency of the product or the suite.

    python3 tools/check_bert_hf.py OUTDIR TEXTS.txt [--ftq build/ftq]

Needs torch and transformers (e.g. Debian's python3-torch + `pip install transformers==4.44.2`).
Only `--pool pooler` directories can match: HF's class ignores "ftq_pool".
"""
import argparse
import json
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("texts")
    ap.add_argument("--ftq", default="build/ftq")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = [t for t in open(a.texts, encoding="utf-8").read().split("\n") if t]
    tok = AutoTokenizer.from_pretrained(a.outdir)
    model = AutoModelForSequenceClassification.from_pretrained(a.outdir).eval()
    worst = 0.0
    for t in texts:
        with torch.no_grad():
            hf = model(**tok(t, return_tensors="pt")).logits[0].tolist()
        out = subprocess.run([a.ftq, "classify", "-m", a.outdir, "-p", t, "--json"], check=True,
                             capture_output=True, text=True).stdout
        ours = json.loads(out).get("logits")
        if ours is None:
            sys.exit("ftq classify --json printed no logits")
        worst = max(worst, max(abs(x - y) for x, y in zip(hf, ours)))
    print(f"{len(texts)} texts: max |logit diff| {worst:.3g}")
    sys.exit(0 if worst <= a.tol else 1)


if __name__ == "__main__":
    main()
