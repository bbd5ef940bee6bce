#!/usr/bin/env python3
"""pytorch_bert_sst2.py - the PyTorch reference of issue 10's "Must show": fine-tune a BERT
encoder (all-MiniLM-L6-v2) as BertForSequenceClassification on the first N rows of SST-2
train for one epoch and report training wall time, real tokens/s and dev accuracy.

A benchmark baseline only (Debian's python3-torch + transformers); never a dependency of ftq
or of its test suite. bench/bert_sst2_compare.sh runs it beside `ftq finetune`.

    HF_HUB_OFFLINE=1 /usr/bin/python3 bench/pytorch_bert_sst2.py --rows 8000 \\
        [--model ../shared/models/all-MiniLM-L6-v2] [--train ../shared/data/sst2/train.tsv] \\
        [--dev ../shared/data/sst2/dev.tsv] [--seed 42] [--threads 2] [--json]

Recipe (the issue's): BertForSequenceClassification.from_pretrained(DIR, num_labels=2) (a new
classifier on the pooled [CLS], i.e. through the pretrained pooler), batch 32, max_len 64
with truncation and dynamic padding (each batch padded to its longest row), torch.optim.AdamW
lr 5e-5 (betas 0.9/0.999, eps 1e-8, weight_decay 0), linear decay to 0 over the steps without
warmup (transformers' get_linear_schedule_with_warmup), clip_grad_norm_ 1.0,
torch.set_num_threads(2), 1 epoch, fp32, model.train() (HF's dropout 0.1 as configured),
rows in the order of torch.randperm(N) under a seeded generator, the classifier drawn after
torch.manual_seed(seed).

Timing, as `ftq finetune --json` reports train_seconds: the clock starts before the training
rows are tokenized and stops after the last optimizer step; model load and dev evaluation are
outside it. Tokens are the real (non-padding) tokens of every batch, [CLS] and [SEP] included.
"""
import argparse
import json
import os
import sys
import time


def read_tsv(path, limit):
    """GLUE SST-2: header `sentence<TAB>label`, no quoting."""
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        try:
            ti, li = header.index("sentence"), header.index("label")
        except ValueError:
            sys.exit(f"{path}: line 1: expected a header with 'sentence' and 'label' columns, got {header!r}")
        for ln, line in enumerate(f, 2):
            line = line.rstrip("\n")
            if not line:
                continue
            cols = line.split("\t")
            if len(cols) <= max(ti, li):
                sys.exit(f"{path}: line {ln}: expected {len(header)} tab-separated columns, got {len(cols)}")
            texts.append(cols[ti])
            labels.append(int(cols[li]))
            if limit and len(texts) >= limit:
                break
    return texts, labels


def pad_batch(torch, enc, idx, pad_id):
    """Rows idx of the tokenized set, right-padded to their longest (dynamic padding)."""
    T = max(len(enc["input_ids"][i]) for i in idx)
    B = len(idx)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    types = torch.zeros((B, T), dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for b, i in enumerate(idx):
        row = enc["input_ids"][i]
        n = len(row)
        ids[b, :n] = torch.tensor(row, dtype=torch.long)
        types[b, :n] = torch.tensor(enc["token_type_ids"][i], dtype=torch.long)
        mask[b, :n] = 1
    return ids, types, mask


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    shared = os.path.normpath(os.path.join(here, "..", "..", "shared"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(shared, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--train", default=os.path.join(shared, "data", "sst2", "train.tsv"))
    ap.add_argument("--dev", default=os.path.join(shared, "data", "sst2", "dev.tsv"))
    ap.add_argument("--rows", type=int, default=8000, help="first N training rows (0 = all)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-batch", type=int, default=64)
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    a = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers
    from transformers import AutoTokenizer, BertForSequenceClassification, get_linear_schedule_with_warmup

    transformers.logging.set_verbosity_error()  # "some weights were newly initialized" is expected
    torch.set_num_threads(a.threads)

    tr_x, tr_y = read_tsv(a.train, a.rows)
    dv_x, dv_y = read_tsv(a.dev, 0)
    if not tr_x:
        sys.exit(f"{a.train}: no training rows")

    t_load = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(a.model)
    torch.manual_seed(a.seed)
    model = BertForSequenceClassification.from_pretrained(a.model, num_labels=2)
    model.to(torch.float32)
    load_seconds = time.perf_counter() - t_load

    # ---- training: timed from tokenization to the last optimizer step ----
    t0 = time.perf_counter()
    enc = tok(tr_x, truncation=True, max_length=a.max_len)
    n = len(tr_x)
    labels = torch.tensor(tr_y, dtype=torch.long)
    steps_per_epoch = (n + a.batch - 1) // a.batch
    total = steps_per_epoch * a.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=0, num_training_steps=total)
    gen = torch.Generator()
    gen.manual_seed(a.seed)
    model.train()
    tokens, steps, loss_sum, last_loss = 0, 0, 0.0, float("nan")
    for _ in range(a.epochs):
        order = torch.randperm(n, generator=gen).tolist()
        for r0 in range(0, n, a.batch):
            idx = order[r0:r0 + a.batch]
            ids, types, mask = pad_batch(torch, enc, idx, tok.pad_token_id)
            out = model(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels[idx])
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            tokens += int(mask.sum())
            steps += 1
            last_loss = float(out.loss)
            loss_sum += last_loss
    train_seconds = time.perf_counter() - t0
    truncated = sum(1 for x in tok(tr_x)["input_ids"] if len(x) > a.max_len)  # outside the clock

    # ---- dev accuracy on the whole dev set ----
    t1 = time.perf_counter()
    model.eval()
    denc = tok(dv_x, truncation=True, max_length=a.max_len)
    correct = 0
    with torch.no_grad():
        for r0 in range(0, len(dv_x), a.eval_batch):
            idx = list(range(r0, min(r0 + a.eval_batch, len(dv_x))))
            ids, types, mask = pad_batch(torch, denc, idx, tok.pad_token_id)
            pred = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits.argmax(-1)
            correct += sum(int(p) == dv_y[i] for p, i in zip(pred.tolist(), idx))
    dev_seconds = time.perf_counter() - t1

    res = {
        "system": "pytorch", "rows": n, "steps": steps, "train_seconds": round(train_seconds, 3),
        "train_tokens": tokens, "tokens_per_second": round(tokens / train_seconds, 1) if train_seconds > 0 else 0,
        "mean_loss": round(loss_sum / steps, 6) if steps else None, "final_loss": round(last_loss, 6),
        "truncated": truncated,
        "dev_examples": len(dv_x), "dev_accuracy": round(correct / len(dv_x), 6) if dv_x else None,
        "dev_seconds": round(dev_seconds, 3), "load_seconds": round(load_seconds, 3), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "transformers": transformers.__version__,
    }
    if a.json:
        print(json.dumps(res))
    else:
        print(f"pytorch: {n} rows, {steps} steps in {train_seconds:.1f} s ({res['tokens_per_second']:.0f} real tokens/s), "
              f"final loss {last_loss:.4f}; dev accuracy {res['dev_accuracy']:.4f} on {len(dv_x)} rows")


if __name__ == "__main__":
    main()
