#!/usr/bin/env bash
# tools/experiments/run.sh - the accuracy experiments quoted in README.md, on the shipped
# stories260K model (about 15 minutes on 2 cores). Usage: tools/experiments/run.sh [OUTDIR]
# Needs ../shared beside the checkout (SST-2, Tiny Shakespeare) and a Release build in build/.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-experiments-out}
mkdir -p "$out"
ftq=./build/ftq
m=datasets/stories260K
eval_text=datasets/tinystories_sample.txt
sst=../shared/data/sst2

# 1. SST-2: head-only, frozen, full, and the same architecture from random initialization
common=(-m $m -d $sst/train.tsv --dev $sst/dev.tsv --task classify --epochs 1 --batch 32 --seq 64
        --warmup-ratio 0.06 --weight-decay 0.01 --json)
$ftq finetune "${common[@]}" -o "$out/head" --mode head --lr 5e-3 > "$out/head.json"
$ftq finetune "${common[@]}" -o "$out/frozen" --mode frozen --freeze-layers 3 --lr 1e-3 > "$out/frozen.json"
$ftq finetune "${common[@]}" -o "$out/full" --mode full --lr 1e-3 > "$out/full.json"
$ftq finetune "${common[@]}" -o "$out/random" --mode full --lr 1e-3 --init random > "$out/random.json"

# 2. causal LM on Tiny Shakespeare (held-out: the last 10 % of the text)
$ftq finetune -m $m -d ../shared/data/tinyshakespeare/input.txt --task lm --mode full --epochs 1 --lr 1e-3 \
    --warmup-ratio 0.05 --seq 256 --batch 8 -o "$out/lm" --json > "$out/lm.json"

# 3. pruning: calibration text for Wanda is sampled from the model itself (in-distribution,
#    and never the evaluation text)
: > "$out/calib.txt"
for s in $(seq 1 80); do
  $ftq generate -m $m -p "" -n 400 --temperature 1.0 --top-k 0 --top-p 1 --seed "$s" 2>/dev/null >> "$out/calib.txt"
  echo >> "$out/calib.txt"
done
ppl() { $ftq perplexity -m "$1" -f $eval_text -c 256 --json 2>/dev/null; }
ppl $m > "$out/ppl_f32.json"
for spec in "mag50:--method magnitude --sparsity 0.5" "wanda50:--method wanda --sparsity 0.5 --calib $out/calib.txt" \
            "mag24:--method nm --nm 2:4" "wanda24:--method wanda --nm 2:4 --calib $out/calib.txt"; do
  name=${spec%%:*}
  $ftq prune -m $m -o "$out/$name" ${spec#*:} > /dev/null
  ppl "$out/$name" > "$out/ppl_$name.json"
done

# 4. quantization
for spec in "int8:--type int8" "int4g32:--type int4 --group 32" "int4g32s:--type int4 --group 32 --search" \
            "int4g128:--type int4 --group 128" "int4g128s:--type int4 --group 128 --search"; do
  name=${spec%%:*}
  $ftq quantize -m $m -o "$out/$name" ${spec#*:} > /dev/null
  ppl "$out/$name" > "$out/ppl_$name.json"
done
for f in "$out"/*.json; do echo "$f: $(head -c 400 "$f")"; done
