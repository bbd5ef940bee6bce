#!/usr/bin/python3
"""Write the rope_scaling fixtures of tests/test_gguf_export.c (suite gguf_export, rope_*):
two tiny random LlamaForCausalLM models built by Hugging Face transformers, one per
rope_scaling type ftq implements, saved as HF directories, with the logits PyTorch computes
for a fixed sequence of ids as the reference.

  tests/fixtures/rope/llama3/   rope_scaling {"rope_type": "llama3", "factor": 8,
                                "low_freq_factor": 1, "high_freq_factor": 4,
                                "original_max_position_embeddings": 32}: with head_dim 16
                                and theta 10000 the 8 frequencies fall in all three bands
                                (wavelength 6.3 < 8 kept, 19.9 smoothed, >= 62.8 divided by 8)
  tests/fixtures/rope/linear/   rope_scaling {"type": "linear", "factor": 4} (the older key)
  each: config.json, model.safetensors (f32), logits.json {"ids": [...], "logits": [[...]]
        (all positions, float32 values as decimal strings of 9 significant digits),
        "loss": HF's causal LM loss with labels = ids and "grad_norms": the Frobenius norm of
        the gradient of every q_proj / k_proj weight (both in float64)}

Positions run to 95, past original_max_position_embeddings, where the scaling matters.
Usage: /usr/bin/python3 tools/make_rope_fixtures.py   (torch 1.13, transformers 4.46.3)
Deterministic (torch.manual_seed); regenerate only as a reviewed change.
"""
import json
import os
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "rope")
N_IDS = 96

CASES = {
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 32},
    "linear": {"type": "linear", "factor": 4.0},
}


def main():
    for name, scaling in CASES.items():
        torch.manual_seed(1234)
        cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=128,
                          rms_norm_eps=1e-5, rope_theta=10000.0, rope_scaling=dict(scaling),
                          tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, torch_dtype="float32")
        model = LlamaForCausalLM(cfg).eval()
        with torch.no_grad():  # larger weights than the 0.02 init, so attention depends on position
            for p in model.parameters():
                if p.dim() == 2:
                    p.normal_(0.0, 0.25)
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        for extra in ("generation_config.json",):
            if os.path.exists(os.path.join(d, extra)):
                os.remove(os.path.join(d, extra))
        g = torch.Generator().manual_seed(99)
        ids = torch.randint(0, cfg.vocab_size, (1, N_IDS), generator=g)
        with torch.no_grad():
            logits = model(ids).logits[0].float()
        # the trainer's reference: HF's causal LM loss and the gradients of the RoPE'd
        # projections, in float64
        m64 = model.double()
        out = m64(ids, labels=ids)
        out.loss.backward()
        grads = {}
        for n, p in m64.named_parameters():
            if ".self_attn.q_proj." in n or ".self_attn.k_proj." in n:
                grads[n] = p.grad.norm().item()
        with open(os.path.join(d, "logits.json"), "w") as f:
            json.dump({"ids": ids[0].tolist(), "loss": out.loss.item(), "grad_norms": grads,
                       "logits": [["%.9g" % v for v in row] for row in logits.tolist()]}, f)
        print(name, json.dumps(model.config.rope_scaling), "max |logit| %.3f" % logits.abs().max().item())
    return 0


if __name__ == "__main__":
    sys.exit(main())
