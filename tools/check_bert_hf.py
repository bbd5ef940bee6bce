#!/usr/bin/env python3
"""check_bert_hf.py - a directory written by `ftq finetune` on a BERT model must load in HF
transformers unchanged (AutoModelForSequenceClassification + AutoTokenizer) and give the logits
`ftq classify` gives. A fixture check beside the tests, never a dependency of the product or
of the suite.

    HF_HUB_OFFLINE=1 python3 tools/check_bert_hf.py OUTDIR [--ftq build/ftq]
                     [--embed-model ../shared/models/all-MiniLM-L6-v2]

What it checks, printing one line per case:
  - loading: no missing or unexpected tensors, config num_labels / id2label / label2id as
    ftq wrote them, F32 weights;
  - tokenizer: HF's ids equal `ftq tokenize -m OUTDIR -p TEXT --json` for every sentence;
  - logits: HF's logits against `ftq classify -m OUTDIR -p A [--text2 B] --json` for single
    sentences and sentence pairs (max |logit diff| and the largest |logit|);
  - stressed head: the same on a temporary copy whose classifier.weight is replaced by N(0, 1)
    values (a freshly trained head is ~0.02 * N(0, 1), so its logits are small and would hide
    differences in the encoder and pooler; this one scales them ~50x);
  - with --embed-model: `ftq embed -m DIR --json` against sentence-transformers' recipe in torch
    (last hidden state, mean over the attention mask, L2 normalisation).

Only `--pool pooler` directories can match: HF's BertForSequenceClassification ignores
config.json's "ftq_pool" and always classifies [CLS] through the pooler, so for `--pool mean`
or `--pool cls` the logits are expected to differ; they are printed, marked "(expected to
differ)", and do not fail the check.

Needs torch and transformers (Debian's python3-torch + `pip install transformers==4.46.3
tokenizers==0.20.3 safetensors`). Exit status 0 when every equality case is within --tol.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

SINGLES = [
    "a gripping , beautifully acted film .",
    "the plot is thin and the jokes fall flat",
    "It was OK, I guess... Not great \u2014 not terrible!",
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9: \u00bfqu\u00e9 tal? 東京 is far away.",
    "unbelievably overlong , self-indulgent and pretentious , but the last twenty minutes "
    "almost redeem it .",
]
PAIRS = [
    ("A man is playing a guitar.", "Someone plays an instrument."),
    ("the movie was wonderful", "I hated every minute of it ."),
]


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def ftq_classify(ftq, d, a, b):
    cmd = [ftq, "classify", "-m", d, "-p", a, "--json"]
    if b is not None:
        cmd += ["--text2", b]
    j = run_json(cmd)
    if "logits" not in j:
        sys.exit("ftq classify --json printed no logits")
    return j["logits"], j["label"]


def compare_logits(torch, ftq, d, tok, model, cases):
    worst, big, labels = 0.0, 0.0, 0
    for a, b in cases:
        enc = tok(a, b, return_tensors="pt") if b is not None else tok(a, return_tensors="pt")
        with torch.no_grad():
            hf = model(**enc).logits[0].double().tolist()
        ours, label = ftq_classify(ftq, d, a, b)
        if len(ours) != len(hf):
            sys.exit(f"{d}: ftq gives {len(ours)} logits, HF {len(hf)}")
        worst = max(worst, max(abs(x - y) for x, y in zip(hf, ours)))
        big = max(big, max(abs(x) for x in hf))
        labels += label == model.config.id2label[max(range(len(hf)), key=hf.__getitem__)]
    return worst, big, labels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--ftq", default="build/ftq")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--embed-model", help="also check `ftq embed` on this sentence-transformers directory")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(int(os.environ.get("FTQ_THREADS", "2")))
    ok = True
    cfg = json.load(open(os.path.join(a.outdir, "config.json"), encoding="utf-8"))
    pool = cfg.get("ftq_pool", "pooler")
    tok = AutoTokenizer.from_pretrained(a.outdir)
    model, info = AutoModelForSequenceClassification.from_pretrained(a.outdir, output_loading_info=True)
    model.eval()
    bad = {k: v for k, v in info.items() if v}
    dtypes = sorted({str(p.dtype) for p in model.state_dict().values()})
    n_labels = len(cfg.get("id2label", {}))
    print(f"{a.outdir}: {type(model).__name__}, {type(tok).__name__}, num_labels {model.config.num_labels} "
          f"(config id2label {n_labels}), dtypes {dtypes}, ftq_pool {pool}, loading problems {bad or 'none'}")
    if bad or model.config.num_labels != n_labels or dtypes != ["torch.float32"] or \
            model.config.id2label != {int(k): v for k, v in cfg["id2label"].items()} or \
            model.config.label2id != cfg["label2id"]:
        print("  FAIL: the directory does not load as ftq wrote it")
        ok = False

    worst_tok = 0
    for s in SINGLES:
        hf_ids = tok(s)["input_ids"]
        ours = run_json([a.ftq, "tokenize", "-m", a.outdir, "-p", s, "--json"])["ids"]
        worst_tok += hf_ids != ours
    print(f"  tokenizer: {len(SINGLES) - worst_tok}/{len(SINGLES)} sentences with HF's ids")
    ok &= worst_tok == 0

    expect_equal = pool == "pooler"
    note = "" if expect_equal else " (expected to differ: HF ignores ftq_pool)"
    cases = [(s, None) for s in SINGLES]
    for name, cs in (("single", cases), ("pair", PAIRS)):
        d, big, same = compare_logits(torch, a.ftq, a.outdir, tok, model, cs)
        print(f"  logits {name:6s}: {len(cs)} cases, max |logit diff| {d:.3g} (max |logit| {big:.3g}), "
              f"label = HF's id2label[argmax] {same}/{len(cs)}{note}")
        if expect_equal and (d > a.tol or same != len(cs)):
            ok = False

    # the same directory with a large random head, so that the logits magnify encoder differences
    with tempfile.TemporaryDirectory() as tmp:
        d2 = os.path.join(tmp, "stressed")
        shutil.copytree(a.outdir, d2)
        st = load_file(os.path.join(d2, "model.safetensors"))
        g = torch.Generator().manual_seed(0)
        st["classifier.weight"] = torch.randn(st["classifier.weight"].shape, generator=g)
        save_file(st, os.path.join(d2, "model.safetensors"), metadata={"format": "pt"})
        m2 = AutoModelForSequenceClassification.from_pretrained(d2).eval()
        d, big, _ = compare_logits(torch, a.ftq, d2, tok, m2, cases + PAIRS)
        print(f"  logits N(0,1) head: {len(cases) + len(PAIRS)} cases, max |logit diff| {d:.3g} "
              f"(max |logit| {big:.3g}){note}")
        if expect_equal and d > a.tol * 10:
            ok = False

    if a.embed_model:
        et = AutoTokenizer.from_pretrained(a.embed_model)
        em = AutoModel.from_pretrained(a.embed_model).eval()
        enc = et(SINGLES, padding=True, return_tensors="pt")
        with torch.no_grad():
            h = em(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
        ref = torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1).clamp(min=1e-9), p=2, dim=1)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as f:
            f.write("\n".join(SINGLES) + "\n")
        try:
            ours = torch.tensor(run_json([a.ftq, "embed", "-m", a.embed_model, "-d", f.name, "--json"])["embeddings"],
                                dtype=torch.float64)
        finally:
            os.unlink(f.name)
        d = (ours - ref.double()).abs().max().item()
        print(f"  embed {os.path.basename(a.embed_model.rstrip('/'))}: {len(SINGLES)} sentences (batched, padded), "
              f"dim {ours.shape[1]}, max |diff| {d:.3g}")
        ok &= ours.shape == ref.shape and d <= 1e-5
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
