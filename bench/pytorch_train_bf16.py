#!/usr/bin/env python3
"""pytorch_train_bf16.py - the PyTorch baseline of issue 12's training "Must show": one full
fine-tuning step (forward with the causal LM loss, backward, AdamW over every parameter) of the
checkpoints `ftq_bench models` writes (GPT-2 124M, 110M Llama), in fp32 and under bf16
autocast, reported as tokens/s (median over the timed steps, after one warm-up step).

A benchmark baseline only (Debian's python3-torch + transformers); never a dependency of ftq or
of its test suite. bench/train_bf16_compare.sh runs it beside `ftq_bench train`.

    /usr/bin/python3 bench/pytorch_train_bf16.py DIR [--models gpt2-124m,llama-110m] \\
        [--batch 4] [--seq 256] [--steps 5] [--threads 2] [--precision fp32,bf16] [--json]

The step mirrors bench/train_bench.c: random token ids (seeded), labels = ids (HF shifts them),
model.train() with dropout off (ftq has none), torch.optim.AdamW(lr 1e-5, weight_decay 0),
optimizer.zero_grad(set_to_none=True) before each step. bf16 autocast is
torch.autocast("cpu", dtype=torch.bfloat16) around the forward and loss (PyTorch's recipe:
fp32 master weights, bf16 matmuls through oneDNN, AMX where the CPU has it).
"""
import argparse
import json
import os
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="directory with gpt2-124m/ and llama-110m/ (ftq_bench models -o DIR)")
    ap.add_argument("--models", default="gpt2-124m,llama-110m")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="fp32,bf16")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    a = ap.parse_args()

    import torch
    import transformers

    torch.set_num_threads(a.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    transformers.logging.set_verbosity_error()
    if not a.json:
        print(f"torch {torch.__version__}, transformers {transformers.__version__}, threads {a.threads}, "
              f"B={a.batch} T={a.seq}, {a.steps} timed steps (median)")
        print(f"{'model':<12} {'prec':<5} {'s/step':>10} {'tok/s':>10}")
    for name in a.models.split(","):
        path = os.path.join(a.dir, name)
        for prec in a.precision.split(","):
            if prec not in ("fp32", "bf16"):
                sys.exit(f"pytorch_train_bf16.py: unknown precision '{prec}'")
            cfg = transformers.AutoConfig.from_pretrained(path)
            for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "attention_dropout"):
                if hasattr(cfg, k):
                    setattr(cfg, k, 0.0)
            torch.manual_seed(0)
            model = transformers.AutoModelForCausalLM.from_config(cfg)  # same shapes; values do not matter
            model.train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0)
            g = torch.Generator().manual_seed(7)
            ids = torch.randint(0, cfg.vocab_size, (a.batch, a.seq), generator=g)
            times = []
            for s in range(-1, a.steps):
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                if prec == "bf16":
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        loss = model(input_ids=ids, labels=ids).loss
                else:
                    loss = model(input_ids=ids, labels=ids).loss
                loss.backward()
                opt.step()
                dt = time.perf_counter() - t0
                if s >= 0:
                    times.append(dt)
            ts = statistics.median(times)
            tps = a.batch * a.seq / ts
            if a.json:
                print(json.dumps({"model": name, "precision": prec, "s_per_step": ts, "tokens_per_second": tps,
                                  "loss": float(loss)}))
            else:
                print(f"{name:<12} {prec:<5} {ts:10.3f} {tps:10.1f}")
            sys.stdout.flush()
            del model, opt


if __name__ == "__main__":
    main()
