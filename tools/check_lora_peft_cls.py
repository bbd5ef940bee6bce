#!/usr/bin/python3
"""check_lora_peft_cls.py - a classification adapter written by `ftq finetune --task classify
--mode lora` (decoder: score head; BERT: classifier head, both PEFT modules_to_save) loaded by
PEFT onto the HF base (AutoModelForSequenceClassification, num_labels from the adapter's
config.json) against transformers on `ftq merge`'s directory: the logits of a few sentences
(max |difference|), and, when the base is a decoder, ftq classify --adapter's probability of
the predicted label against PEFT's. Exit 1 above 1e-4.

    /usr/bin/python3 tools/check_lora_peft_cls.py FTQ BASE ADAPTER MERGED
Results (2026-12-05): stories260K r 4 q_proj,v_proj + score: max |diff| 5.8e-7, ftq classify
--adapter = PEFT to 4 digits on 3 sentences; all-MiniLM-L6-v2 r 8 all linears + classifier: 9.3e-9.
(torch 1.13, transformers 4.46.3, peft 0.13.2)
"""
import json
import os
import subprocess
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer

TEXTS = ["the film is a delight", "dull , lifeless and far too long for its own good", "it is a movie"]


def main():
    ftq, base, adapter, merged = sys.argv[1:5]
    with open(os.path.join(adapter, "config.json")) as f:
        nl = len(json.load(f)["id2label"])
    tok = AutoTokenizer.from_pretrained(base)
    pm = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base, num_labels=nl), adapter)
    pm.eval()
    mm = AutoModelForSequenceClassification.from_pretrained(merged)
    mm.eval()
    worst, ok = 0.0, True
    for t in TEXTS:
        x = tok(t, return_tensors="pt")
        with torch.no_grad():
            a, b = pm(**x).logits[0], mm(**x).logits[0]
        worst = max(worst, float((a - b).abs().max()))
        if pm.config.model_type != "bert":
            out = subprocess.check_output([ftq, "classify", "-m", base, "--adapter", adapter, "-p", t]).decode()
            p_ftq = float(out.split()[-1])
            p_peft = float(torch.softmax(a, -1).max())
            print(f"{t!r}: ftq classify --adapter {p_ftq:.4f}, PEFT {p_peft:.4f}")
            ok &= abs(p_ftq - p_peft) <= 1e-4 + 5e-5
    print(f"logits PEFT vs ftq merge: max |diff| {worst:.3g}")
    ok &= worst <= 1e-4
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
