#!/usr/bin/python3
"""make_minilm_grad_fixture.py - the PyTorch reference for tests/test_bert_train.c's
minilm_grads: all-MiniLM-L6-v2 as BertForSequenceClassification (its pooler, a 2-label
classifier whose weights are written into the fixture), fp32, eval mode (no dropout), a
right-padded batch of 3 sentences; mean cross-entropy and the gradient of every parameter
summarised per tensor (L2 norm, max |g|, 8 elements at recorded indices).

    /usr/bin/python3 tools/make_minilm_grad_fixture.py ../shared/models/all-MiniLM-L6-v2 \
        tests/fixtures/minilm_grad/ref.json
(torch 1.13, transformers 4.46.3)
"""
import json
import sys

import torch
from transformers import AutoTokenizer, BertForSequenceClassification

TEXTS = ["the film is a delight",
         "dull , lifeless and far too long for its own good , a chore to sit through",
         "it is a movie"]
LABELS = [1, 0, 1]
N_SAMPLES = 8


def f9(x):
    return float("%.9g" % float(x))


def main():
    src, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(src)
    model = BertForSequenceClassification.from_pretrained(src, num_labels=2, torch_dtype=torch.float32)
    model.eval()
    # a deterministic head that is not HF's random init: w[r][c] = 0.05 sin(0.37 (r*384+c) + 0.1),
    # b = [0.01, -0.02]; the values themselves go into the fixture
    with torch.no_grad():
        w = model.classifier.weight
        idx = torch.arange(w.numel(), dtype=torch.float64).reshape(w.shape)
        w.copy_((0.05 * torch.sin(0.37 * idx + 0.1)).float())
        model.classifier.bias.copy_(torch.tensor([0.01, -0.02]))
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    labels = torch.tensor(LABELS)
    outp = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                 token_type_ids=enc["token_type_ids"], labels=labels)
    outp.loss.backward()
    ids = enc["input_ids"]
    used = sorted(set(int(t) for t in ids[enc["attention_mask"].bool()].tolist()))
    grads = {}
    for name, p in model.named_parameters():
        g = p.grad.detach().reshape(-1).double() if p.grad is not None else torch.zeros(p.numel(), dtype=torch.float64)
        n = g.numel()
        am = int(torch.argmax(g.abs()))
        if name.endswith("word_embeddings.weight"):
            C = p.shape[1]  # rows of the ids used (the other rows are exactly zero)
            picks = [am] + [used[(k * 5) % len(used)] * C + (k * 97 + 13) % C for k in range(1, N_SAMPLES)]
        else:
            picks = [am] + [(k * 2654435761 + 12345) % n for k in range(1, N_SAMPLES)]
        grads[name] = {"numel": n, "norm": f9(g.norm()), "max_abs": f9(g.abs().max()),
                       "idx": picks, "values": [f9(g[i]) for i in picks]}
    ref = {
        "description": "all-MiniLM-L6-v2 as BertForSequenceClassification (pooler + 2-label classifier "
                       "from head_weight / head_bias), fp32, eval mode, batch of 3 padded right; "
                       "loss = mean cross-entropy; per parameter tensor: gradient L2 norm, max |g|, "
                       "values at flat indices idx; torch %s, transformers %s" % (
                           torch.__version__, __import__("transformers").__version__),
        "texts": TEXTS,
        "input_ids": ids.tolist(),
        "token_type_ids": enc["token_type_ids"].tolist(),
        "attention_mask": enc["attention_mask"].tolist(),
        "labels": LABELS,
        "head_weight": [f9(x) for x in model.classifier.weight.detach().reshape(-1).tolist()],
        "head_bias": [f9(x) for x in model.classifier.bias.detach().tolist()],
        "loss": f9(outp.loss),
        "logits": [[f9(x) for x in r] for r in outp.logits.detach().tolist()],
        "grads": grads,
    }
    with open(out, "w") as f:
        json.dump(ref, f, indent=0)
        f.write("\n")


if __name__ == "__main__":
    main()
