#!/usr/bin/python3
"""make_lora_fixture.py - the PEFT reference for tests/test_lora.c's peft_curve: stories260K
(LlamaForCausalLM, GQA 8 / 4 heads) with PEFT LoRA r=4, alpha=8, dropout 0 on all seven
linears; the initial adapter (A as PEFT draws it, B zero) is saved with PEFT's
save_pretrained, then 12 AdamW steps (lr 1e-2, betas 0.9 / 0.999, eps 1e-8, no weight
decay, no clipping) on one fixed batch of 2 x 24 tokens; the loss before every step and
the final loss go to ref.json.

    /usr/bin/python3 tools/make_lora_fixture.py ../shared/models/stories260K tests/fixtures/lora
(torch 1.13, transformers 4.46.3, peft 0.13.2)
"""
import json
import os
import sys

import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
from safetensors.torch import save_file
from transformers import AutoTokenizer, LlamaForCausalLM

TEXT = ("One day, a little girl named Lily found a needle in her room. She knew it was difficult "
        "to play with it because it was sharp. Lily wanted to share the needle with her mom.")
B, T, STEPS = 2, 24, 12


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(src)
    ids = tok(TEXT)["input_ids"][: B * T]
    assert len(ids) == B * T, len(ids)
    base = LlamaForCausalLM.from_pretrained(src, torch_dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(base, cfg)
    # the initial adapter (A Kaiming-uniform, B zero) as save_pretrained writes it (without
    # the model card, which needs Jinja2)
    save_file({k: v.contiguous() for k, v in get_peft_model_state_dict(model).items()},
              os.path.join(out, "adapter_model.safetensors"), metadata={"format": "pt"})
    model.peft_config["default"].save_pretrained(out)
    model.train()
    x = torch.tensor(ids).reshape(B, T)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        losses.append(float("%.9g" % loss.item()))
        opt.step()
    with torch.no_grad():
        final = float("%.9g" % model(input_ids=x, labels=x).loss.item())
    with open(os.path.join(out, "ref.json"), "w") as f:
        json.dump({"ids": ids, "batch": B, "seq": T, "r": 4, "alpha": 8, "lr": 1e-2, "losses": losses,
                   "final_loss": final, "trainable": sum(p.numel() for p in params)}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
