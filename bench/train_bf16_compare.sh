#!/bin/sh
# train_bf16_compare.sh - issue 12's training "Must show", measured in one run on one machine:
# tokens/s of a full training step (forward + backward + AdamW, B x T tokens, causal LM loss) of
# the GPT-2 124M and 110M Llama shapes by ftq in fp32 and bf16 (`ftq_bench train --precision both`)
# and by PyTorch in fp32 and under bf16 autocast (bench/pytorch_train_bf16.py), then the ratios
# ftq bf16 / ftq fp32 and ftq bf16 / PyTorch bf16. With --reps R each program runs R times,
# alternating, and the table shows the medians of the per-run medians.
#
#   bench/train_bf16_compare.sh [--models DIR] [--reps R] [--steps N] [--threads T] [--batch B] [--seq T]
#
# DIR (default ./bench-models) holds gpt2-124m/ and llama-110m/ as `ftq_bench models -o DIR`
# writes them (written first if missing). Environment: FTQ_BENCH (default build/ftq_bench of this
# checkout), PYTHON (default /usr/bin/python3, with torch + transformers), OMP_WAIT_POLICY
# (default passive, for every program: on a shared machine a thread spinning at a barrier burns
# the time slice its partner needs; set it to active on an idle machine).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
FTQ_BENCH=${FTQ_BENCH:-$root/build/ftq_bench}
PYTHON=${PYTHON:-/usr/bin/python3}
models=bench-models reps=1 steps=5 threads=2 batch=4 seq=256

usage() { sed -n "2,15p" "$0" | sed "s/^# \{0,1\}//" >&2; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
    case $1 in
    --models) models=${2:?--models needs a directory}; shift 2 ;;
    --reps) reps=${2:?--reps needs a value}; shift 2 ;;
    --steps) steps=${2:?--steps needs a value}; shift 2 ;;
    --threads) threads=${2:?--threads needs a value}; shift 2 ;;
    --batch) batch=${2:?--batch needs a value}; shift 2 ;;
    --seq) seq=${2:?--seq needs a value}; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "train_bf16_compare.sh: unknown argument '$1'" >&2; usage ;;
    esac
done
for v in "$reps" "$steps" "$threads" "$batch" "$seq"; do
    case $v in ''|*[!0-9]*|0) echo "train_bf16_compare.sh: '$v' is not a positive integer" >&2; exit 2 ;; esac
done
[ -x "$FTQ_BENCH" ] || { echo "train_bf16_compare.sh: cannot run '$FTQ_BENCH' (build first)" >&2; exit 1; }
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
export FTQ_THREADS=$threads OMP_NUM_THREADS=$threads
if [ ! -f "$models/gpt2-124m/config.json" ] || [ ! -f "$models/llama-110m/config.json" ]; then
    "$FTQ_BENCH" models -o "$models" >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
grep -m1 "model name" /proc/cpuinfo | sed "s/.*: /cpu: /"
echo "threads $threads, B=$batch T=$seq, $steps timed steps per run, $reps run(s) each, OMP_WAIT_POLICY=$OMP_WAIT_POLICY"
r=1
while [ "$r" -le "$reps" ]; do
    "$FTQ_BENCH" train -o "$models" --batch "$batch" --seq "$seq" --steps "$steps" --precision both >"$tmp/ftq.$r"
    "$PYTHON" "$here/pytorch_train_bf16.py" "$models" --batch "$batch" --seq "$seq" --steps "$steps" \
        --threads "$threads" --json >"$tmp/pt.$r"
    sed "s/^/ftq: /" "$tmp/ftq.$r"
    sed "s/^/pytorch: /" "$tmp/pt.$r"
    r=$((r + 1))
done

# one line per (system, model, precision): tokens/s of every run
for f in "$tmp"/ftq.*; do
    awk '($2 == "fp32" || $2 == "bf16") && $3 ~ /M$/ { print "ftq", $1, $2, $6 }' "$f"
done >"$tmp/all"
for f in "$tmp"/pt.*; do
    "$PYTHON" -c 'import json, sys
for line in sys.stdin:
    d = json.loads(line)
    print("pytorch", d["model"], d["precision"], d["tokens_per_second"])' <"$f"
done >>"$tmp/all"
awk '
function median(key,   n, i, j, t, v) {
    n = split(vals[key], v, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
{ k = $1 " " $2 " " $3; vals[k] = vals[k] " " $4; seen[$2] = 1 }
END {
    printf "%-12s %12s %12s %12s %12s %10s %10s %10s\n", "model", "ftq fp32", "ftq bf16", "torch fp32", "torch bf16",
        "bf16/fp32", "vs torch", "torch b/f"
    for (m in seen) {
        a = median("ftq " m " fp32"); b = median("ftq " m " bf16")
        c = median("pytorch " m " fp32"); d = median("pytorch " m " bf16")
        printf "%-12s %12.1f %12.1f %12.1f %12.1f %9.2fx %9.2fx %9.2fx\n", m, a, b, c, d,
            (a > 0 ? b / a : 0), (d > 0 ? b / d : 0), (c > 0 ? d / c : 0)
    }
    print "(tokens/s, medians; bf16/fp32 = ftq bf16 over ftq fp32, vs torch = ftq bf16 over PyTorch bf16 autocast)"
}' "$tmp/all"
