#!/bin/sh
# bert_sst2_compare.sh - issue 10's "Must show" speed/accuracy comparison, measured in one run on
# one machine: all-MiniLM-L6-v2 fine-tuned for 1 epoch on the first N rows of SST-2 train by
# PyTorch (bench/pytorch_bert_sst2.py: BertForSequenceClassification, batch 32, max_len 64 with
# dynamic padding, AdamW 5e-5 linear decay to 0, clip 1.0, 2 threads) and by `ftq finetune` with
# the same recipe; prints one table (train seconds, real tokens/s, dev accuracy on the whole SST-2
# dev set, ftq/PyTorch tokens/s ratio). With --reps R each system runs R times, alternating, and
# the table shows medians.
#
#   bench/bert_sst2_compare.sh [--reps R] [--seed S] [--threads T] [--keep DIR] [N]   (N default 8000)
#
# Environment: FTQ (default build/ftq of this checkout), PYTHON (default /usr/bin/python3, which
# needs torch + transformers), MODEL, TRAIN, DEV (default ../shared beside the checkout).
# Run it on an idle machine: both sides use 2 threads and any other load skews the ratio.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
shared=$(cd "$root/../shared" 2>/dev/null && pwd || echo "$root/../shared")
FTQ=${FTQ:-$root/build/ftq}
PYTHON=${PYTHON:-/usr/bin/python3}
MODEL=${MODEL:-$shared/models/all-MiniLM-L6-v2}
TRAIN=${TRAIN:-$shared/data/sst2/train.tsv}
DEV=${DEV:-$shared/data/sst2/dev.tsv}
reps=1 seed=42 threads=2 keep= rows=8000

usage() { sed -n "2,14p" "$0" | sed "s/^# \{0,1\}//" >&2; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
    case $1 in
    --reps) reps=${2:?--reps needs a value}; shift 2 ;;
    --seed) seed=${2:?--seed needs a value}; shift 2 ;;
    --threads) threads=${2:?--threads needs a value}; shift 2 ;;
    --keep) keep=${2:?--keep needs a directory}; shift 2 ;;
    -h|--help) usage 0 ;;
    -*) echo "bert_sst2_compare.sh: unknown option '$1'" >&2; usage ;;
    *) rows=$1; shift ;;
    esac
done
for v in "$rows" "$reps" "$seed" "$threads"; do
    case $v in ''|*[!0-9]*) echo "bert_sst2_compare.sh: '$v' is not a non-negative integer" >&2; exit 2 ;; esac
done
[ "$reps" -ge 1 ] && [ "$rows" -ge 1 ] && [ "$threads" -ge 1 ] ||
    { echo "bert_sst2_compare.sh: N, --reps and --threads must be at least 1" >&2; exit 2; }
[ -x "$FTQ" ] || { echo "bert_sst2_compare.sh: ftq binary '$FTQ' not found (build it or set FTQ)" >&2; exit 1; }
for f in "$TRAIN" "$DEV" "$MODEL/config.json"; do
    [ -f "$f" ] || { echo "bert_sst2_compare.sh: '$f' not found" >&2; exit 1; }
done
"$PYTHON" -c 'import torch, transformers' 2>/dev/null ||
    { echo "bert_sst2_compare.sh: '$PYTHON' cannot import torch and transformers (set PYTHON)" >&2; exit 1; }

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" FTQ_THREADS="$threads"

work=$(mktemp -d "${TMPDIR:-/tmp}/bert_sst2.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
results=$work/results.jsonl
: >"$results"

echo "bert_sst2_compare: $rows rows of $(basename "$TRAIN"), 1 epoch, $threads threads, seed $seed, $reps rep(s)"
echo "  model $MODEL; ftq $FTQ ($(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo "  $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //'), $(nproc) cores; load average at start:" \
    "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"

r=1
while [ "$r" -le "$reps" ]; do
    # PyTorch
    echo "rep $r/$reps: pytorch ..." >&2
    "$PYTHON" "$here/pytorch_bert_sst2.py" --model "$MODEL" --train "$TRAIN" --dev "$DEV" --rows "$rows" \
        --batch 32 --max-len 64 --lr 5e-5 --epochs 1 --seed "$seed" --threads "$threads" --json \
        >"$work/pt.$r.json" 2>"$work/pt.$r.err" ||
        { echo "bert_sst2_compare.sh: pytorch run $r failed:" >&2; cat "$work/pt.$r.err" >&2; exit 1; }
    tail -n 1 "$work/pt.$r.json" >>"$results"
    # ftq, same recipe (its train_seconds is the time of the optimizer steps; tokenizing is before)
    echo "rep $r/$reps: ftq ..." >&2
    "$FTQ" finetune -m "$MODEL" -d "$TRAIN" --dev "$DEV" -o "$work/ftq-out.$r" --task classify --mode full \
        --pool pooler --epochs 1 --batch 32 --seq 64 --lr 5e-5 --weight-decay 0 --max-grad-norm 1 \
        --warmup-ratio 0 --seed "$seed" --limit "$rows" --json >"$work/ftq.$r.json" 2>"$work/ftq.$r.err" ||
        { echo "bert_sst2_compare.sh: ftq run $r failed:" >&2; cat "$work/ftq.$r.err" >&2; exit 1; }
    rm -rf "$work/ftq-out.$r"
    tail -n 1 "$work/ftq.$r.json" | "$PYTHON" -c '
import json, sys
d = json.loads(sys.stdin.read())
print(json.dumps({"system": "ftq", "rows": d["train_examples"], "steps": d["steps"],
                  "train_seconds": d["train_seconds"], "train_tokens": d["train_tokens"],
                  "tokens_per_second": d["tokens_per_second"], "mean_loss": d["train_loss"],
                  "final_loss": d["final_loss"], "truncated": d["truncated"],
                  "dev_examples": d.get("dev_examples"), "dev_accuracy": d.get("accuracy")}))' >>"$results"
    r=$((r + 1))
done
if [ -n "$keep" ]; then
    mkdir -p "$keep" && cp "$work"/*.json "$work"/*.err "$results" "$keep"/
fi

"$PYTHON" - "$results" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = lambda xs: statistics.median(xs) if xs else float("nan")
rows = {}
for s in ("pytorch", "ftq"):
    rs = [x for x in runs if x["system"] == s]
    rows[s] = {k: med([x[k] for x in rs]) for k in ("train_seconds", "tokens_per_second", "dev_accuracy")}
    rows[s].update(rows=rs[0]["rows"], reps=len(rs), tokens=rs[0]["train_tokens"], truncated=rs[0]["truncated"],
                   loss=med([x["final_loss"] for x in rs]), dev_n=rs[0]["dev_examples"])
pt = rows["pytorch"]["tokens_per_second"]
hdr = ("system", "rows", "train s", "tokens/s", "dev acc", "ftq/PyTorch tok/s", "train tokens", "final loss")
print("| " + " | ".join(hdr) + " |")
print("|" + "|".join("---" for _ in hdr) + "|")
for s in ("pytorch", "ftq"):
    r = rows[s]
    ratio = r["tokens_per_second"] / pt if pt > 0 else float("nan")
    print(f"| {s} | {r['rows']} | {r['train_seconds']:.1f} | {r['tokens_per_second']:.1f} | {r['dev_accuracy']:.4f} "
          f"| {ratio:.2f}x | {r['tokens']} | {r['loss']:.4f} |")
reps = rows["ftq"]["reps"]
print(f"medians over {reps} rep(s); dev accuracy on {rows['pytorch']['dev_n']} dev rows; tokens are real "
      f"(non-padding) training tokens incl. [CLS]/[SEP]; truncated to 64: pytorch {rows['pytorch']['truncated']}, "
      f"ftq {rows['ftq']['truncated']}")
if rows["pytorch"]["tokens"] != rows["ftq"]["tokens"]:
    print(f"note: the two sides counted different training tokens ({rows['pytorch']['tokens']} vs {rows['ftq']['tokens']})")
EOF
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
