#!/usr/bin/python3
"""check_lora_peft.py - an ftq LoRA adapter as PEFT sees it: loads ADAPTER (written by
`ftq finetune --mode lora`) onto the HF base with peft.PeftModel.from_pretrained and
compares
  1. perplexity, protocol full-window (ctx 64, the first CHUNKS windows; input = [BOS] +
     63 tokens, every token scored; without a BOS 64 tokens, the first unscored), of PEFT vs `ftq perplexity -m BASE --adapter ADAPTER`
     on the same ids (`ftq tokenize --no-bos`);
  2. with --merged DIR (from `ftq merge`): the logits of transformers on DIR vs PEFT's on
     the first window (max |difference|).
Prints the numbers and exits 1 if the perplexities differ by more than 1e-4 relative or the
logits by more than 1e-3.

    /usr/bin/python3 tools/check_lora_peft.py FTQ BASE ADAPTER TEXT [--merged DIR] [--chunks N]
(torch 1.13, transformers 4.46.3, peft 0.13.2)
"""
import argparse
import json
import math
import subprocess
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ftq")
    ap.add_argument("base")
    ap.add_argument("adapter")
    ap.add_argument("text")
    ap.add_argument("--merged")
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=64)
    a = ap.parse_args()
    ids = json.loads(subprocess.check_output([a.ftq, "tokenize", "-m", a.base, "-f", a.text, "--no-bos",
                                              "--json"]))["ids"]
    out = json.loads(subprocess.check_output([a.ftq, "perplexity", "-m", a.base, "--adapter", a.adapter, "-f",
                                              a.text, "--protocol", "full-window", "-c", str(a.ctx), "--chunks",
                                              str(a.chunks), "--json"]))
    ftq_ppl = out["ppl"] if "ppl" in out else out["perplexity"]
    base = AutoModelForCausalLM.from_pretrained(a.base, torch_dtype=torch.float32)
    bos = base.config.bos_token_id
    model = PeftModel.from_pretrained(base, a.adapter)
    model.eval()
    # ftq's full-window: with a BOS, windows [BOS] + ctx-1 tokens, all scored; without one
    # (GPT-2), windows of ctx tokens, all but the first scored
    use_bos = out.get("bos", True)
    n = a.ctx - 1 if use_bos else a.ctx
    nll, cnt, first = 0.0, 0, None
    with torch.no_grad():
        for c in range(a.chunks):
            chunk = ids[c * n:(c + 1) * n]
            if len(chunk) < n:
                break
            x = torch.tensor([[bos] + chunk if use_bos else chunk])
            logits = model(x).logits[0, :-1].double()
            target = chunk if use_bos else chunk[1:]
            if first is None:
                first = (x, logits)
            nll += float(torch.nn.functional.cross_entropy(logits, torch.tensor(target), reduction="sum"))
            cnt += len(target)
    ppl = math.exp(nll / cnt)
    rel = abs(ppl - ftq_ppl) / ppl
    print(f"perplexity full-window ctx {a.ctx}, {cnt} tokens: PEFT {ppl:.6f}, ftq --adapter {ftq_ppl:.6f} "
          f"(relative difference {rel:.2e})")
    ok = rel <= 1e-4
    if a.merged:
        m = AutoModelForCausalLM.from_pretrained(a.merged, torch_dtype=torch.float32)
        with torch.no_grad():
            lm = m(first[0]).logits[0, :-1].double()
        d = float((lm - first[1]).abs().max())
        print(f"logits of ftq merge's directory (transformers) vs PEFT, first window: max |diff| {d:.3g} "
              f"(logits up to {float(first[1].abs().max()):.3g})")
        ok &= d <= 1e-3
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
