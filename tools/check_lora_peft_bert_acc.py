#!/usr/bin/python3
"""check_lora_peft_bert_acc.py - dev accuracy of a BERT SEQ_CLS LoRA adapter written by ftq, as PEFT
computes it on the HF base (rows of a sentence<TAB>label file, batches of 64, max_length 128):
compare with `ftq finetune`'s dev accuracy and `ftq classify -m BASE --adapter DIR -d DEV`.

    /usr/bin/python3 tools/check_lora_peft_bert_acc.py BASE ADAPTER DEV.tsv
Result (2026-12-05, all-MiniLM-L6-v2, r 8 all linears, SST-2 4k rows 1 epoch): PEFT 0.814220 on
the 872 dev rows = ftq finetune 0.814220 = ftq classify --adapter 0.814220 = ftq merge + classify.
(torch 1.13, transformers 4.46.3, peft 0.13.2)
"""
import csv, sys, torch
from transformers import AutoTokenizer, BertForSequenceClassification
from peft import PeftModel
base, ad, dev = sys.argv[1:4]
rows = list(csv.DictReader(open(dev), delimiter="\t"))
tok = AutoTokenizer.from_pretrained(base)
m = PeftModel.from_pretrained(BertForSequenceClassification.from_pretrained(base, num_labels=2), ad); m.eval()
ok = 0
with torch.no_grad():
    for i in range(0, len(rows), 64):
        b = rows[i:i + 64]
        enc = tok([r["sentence"] if "sentence" in r else r["text"] for r in b], padding=True, truncation=True, max_length=128, return_tensors="pt")
        pred = m(**enc).logits.argmax(-1)
        ok += sum(int(p) == int(r["label"]) for p, r in zip(pred, b))
print("PEFT accuracy", ok / len(rows), len(rows))
