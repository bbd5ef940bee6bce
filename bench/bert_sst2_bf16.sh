#!/bin/sh
# bert_sst2_bf16.sh - issue 12's SST-2 "Must show": all-MiniLM-L6-v2 full fine-tuning in fp32 and
# in bf16 (`--precision bf16`) with one recipe (datasets/sst2_train_4k.tsv, the first 4,000 SST-2
# train rows; 1 epoch, batch 32, lr 5e-5 linear decay, seed 42, 2 threads), evaluated on all 872
# rows of datasets/sst2_dev.tsv; one line per run (dev accuracy, train tokens/s, peak RSS from the
# kernel's ru_maxrss via /usr/bin/time) and the accuracy difference. With --reps R the two
# precisions alternate R times (speeds: compare medians; accuracy is the same every rep).
#
#   bench/bert_sst2_bf16.sh [--reps R] [--limit N]
#
# Environment: FTQ (default build/ftq of this checkout), MODEL (default ../shared/models/
# all-MiniLM-L6-v2 beside the checkout). Run it on an idle machine for speeds.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
FTQ=${FTQ:-$root/build/ftq}
MODEL=${MODEL:-$root/../shared/models/all-MiniLM-L6-v2}
reps=1 limit=4000
while [ $# -gt 0 ]; do
    case $1 in
    --reps) reps=${2:?--reps needs a value}; shift 2 ;;
    --limit) limit=${2:?--limit needs a value}; shift 2 ;;
    -h|--help) sed -n "2,12p" "$0" | sed "s/^# \{0,1\}//"; exit 0 ;;
    *) echo "bert_sst2_bf16.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[ -x "$FTQ" ] || { echo "bert_sst2_bf16.sh: ftq binary '$FTQ' not found (build it or set FTQ)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bert_sst2_bf16.sh: /usr/bin/time not found (apt-get install time)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/bert_bf16.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "bert_sst2_bf16: $limit rows, 1 epoch, batch 32, lr 5e-5, 2 threads; $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
echo "  $("$FTQ" --version)"
r=1
while [ "$r" -le "$reps" ]; do
    for p in fp32 bf16; do
        rm -rf "$work/out"
        FTQ_THREADS=2 /usr/bin/time -f "%M" -o "$work/rss" "$FTQ" finetune -m "$MODEL" -d "$root/datasets/sst2_train_4k.tsv" \
            --dev "$root/datasets/sst2_dev.tsv" -o "$work/out" --task classify --mode full --epochs 1 --batch 32 \
            --lr 5e-5 --seed 42 --limit "$limit" --precision "$p" --json >"$work/$p.json" 2>"$work/$p.err" ||
            { echo "bert_sst2_bf16.sh: the $p run failed:" >&2; cat "$work/$p.err" >&2; exit 1; }
        python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("rep %s %s: dev accuracy %.2f %%, %.1f train tokens/s, peak RSS %d MB" % (sys.argv[3], sys.argv[2], 100*d["accuracy"], d["tokens_per_second"], int(open(sys.argv[4]).read().split()[-1])//1024))' \
            "$work/$p.json" "$p" "$r" "$work/rss"
    done
    python3 -c 'import json,sys; a=json.load(open(sys.argv[1]))["accuracy"]; b=json.load(open(sys.argv[2]))["accuracy"]; print("  bf16 - fp32: %+.2f points" % (100*(b-a)))' \
        "$work/fp32.json" "$work/bf16.json"
    r=$((r + 1))
done
