#!/usr/bin/env bash
# tests/fuzz.sh SECONDS [TARGET...] - build the libFuzzer targets (tests/fuzz/fuzz_*.c) with
# clang in build-fuzz/ (FTQ_FUZZ=ON: ASan + UBSan + libFuzzer) and run each for SECONDS on a
# scratch copy of its seed corpus (tests/fuzz/corpus/NAME/ plus small files and prefixes from
# ../shared). Prints per target the executions, the coverage and the result, then
# 'N passed, N failed'; exits non-zero if any target found a crash, leak, UB, OOM (an
# allocation above 2 GB sized by an untrusted number counts) or timeout.
#
# Environment: FUZZ_FLAGS extra libFuzzer flags (e.g. "-fork=1 -ignore_crashes=1" to keep a
# long run going past findings); FUZZ_LOG_DIR keeps the logs and the grown corpora there
# (default: a temp dir, removed); FUZZ_BUILD_DIR the build directory (default build-fuzz);
# FUZZ_SKIP_BUILD=1 uses the build directory as it is.
# Crash inputs are kept in build-fuzz/artifacts/NAME/ (reproduce: build-fuzz/fuzz/fuzz_NAME FILE).
set -uo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)

if [ $# -lt 1 ] || ! [[ "$1" =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ]; then
  echo "usage: tests/fuzz.sh SECONDS [TARGET...]" >&2
  exit 2
fi
secs=$1
shift
if ! command -v clang >/dev/null 2>&1; then
  echo "error: tests/fuzz.sh needs clang and its libFuzzer runtime (Debian: clang libclang-rt-dev)" >&2
  exit 2
fi

build=${FUZZ_BUILD_DIR:-build-fuzz}
if [ "${FUZZ_SKIP_BUILD:-0}" != 1 ]; then
  CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFTQ_FUZZ=ON -DFTQ_OPENMP=OFF \
    -DFTQ_BUILD_TESTS=OFF -DFTQ_BUILD_BENCH=OFF >/dev/null || exit 2
  nice -n 19 cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null || {
    echo "error: cannot build the fuzz targets (run: cmake --build $build)" >&2
    exit 2
  }
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in tests/fuzz/fuzz_*.c; do
    n=$(basename "$f" .c)
    targets+=("${n#fuzz_}")
  done
fi

if [ -n "${FUZZ_LOG_DIR:-}" ]; then
  work=$FUZZ_LOG_DIR
  mkdir -p "$work"
  keep=1
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/ftq-fuzz-run.XXXXXX")
  keep=0
fi
cleanup() { [ "$keep" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT

shared=$src/../shared

# The first 8 + header-length bytes of a safetensors file: its whole JSON header.
st_header() {
  local f=$1 out=$2 hl
  [ -f "$f" ] || return 0
  hl=$(od -An -t u8 -N 8 "$f" | tr -d ' ')
  [ -n "$hl" ] && [ "$hl" -lt 200000 ] && head -c $((8 + hl)) "$f" >"$out"
}

# Up to N bytes of a text file, cut after the last whole line, behind a flag byte.
text_prefix() {
  local flag=$1 f=$2 n=$3 out=$4
  [ -f "$f" ] || return 0
  { printf "$flag"; head -c "$n" "$f" | sed '$d'; } >"$out"
}

# Seeds from ../shared (never ../shared/holdout) and the repository's own fixtures.
shared_seeds() {
  local t=$1 d=$2 m i=0
  case $t in
  safetensors | qindex)
    for m in "$shared"/models/*/model.safetensors "$shared"/golden/*/model.safetensors; do
      i=$((i + 1))
      st_header "$m" "$d/shared_header_$i"
    done ;;
  config)
    for m in "$shared"/models/*/config.json "$shared"/golden/*/config.json; do
      i=$((i + 1))
      [ -f "$m" ] && [ "$(stat -c %s "$m")" -lt 65536 ] && cp "$m" "$d/shared_config_$i"
    done ;;
  tokenizer_json)
    for m in "$shared"/models/stories260K/tokenizer.json "$shared"/golden/llama_tiny_random/tokenizer.json \
      tests/fixtures/tokenizer/stories260K_added/tokenizer.json; do
      i=$((i + 1))
      [ -f "$m" ] && cp "$m" "$d/shared_tokenizer_$i"
    done ;;
  tokenizer_model)
    for m in "$shared"/models/stories260K/tokenizer.model "$shared"/golden/llama_tiny_random/tokenizer.model \
      tests/fixtures/tokenizer/stories260K_*/tokenizer.model; do
      i=$((i + 1))
      [ -f "$m" ] && cp "$m" "$d/shared_model_$i"
    done ;;
  tokenizer_config)
    for m in "$shared"/models/* "$shared"/golden/*; do
      i=$((i + 1))
      [ -f "$m/tokenizer_config.json" ] || continue
      { cat "$m/tokenizer_config.json"; printf '\0'
        [ -f "$m/special_tokens_map.json" ] && cat "$m/special_tokens_map.json"; printf '\0'
        [ -f "$m/config.json" ] && cat "$m/config.json"; } >"$d/shared_tokcfg_$i"
    done ;;
  vocab_txt)
    for m in "$shared"/tokenizers/bert-base-uncased/vocab.txt "$shared"/golden/bert_tiny_random/vocab.txt; do
      i=$((i + 1))
      [ -f "$m" ] && head -c 8192 "$m" | sed '$d' >"$d/shared_vocab_$i"
    done ;;
  dataset)
    text_prefix '\001' "$shared/data/sst2/dev.tsv" 4096 "$d/shared_sst2_dev"
    text_prefix '\003' "$shared/data/trec/train" 4096 "$d/shared_trec_text"
    text_prefix '\003' "$shared/data/tinystories/tinystories_sample.txt" 4096 "$d/shared_tinystories"
    text_prefix '\000' tests/fixtures/dataset/edge.csv 4096 "$d/fixture_edge_csv"
    text_prefix '\002' tests/fixtures/dataset/mixed.jsonl 4096 "$d/fixture_mixed_jsonl"
    text_prefix '\012' tests/fixtures/dataset/custom.jsonl 4096 "$d/fixture_custom_jsonl" ;;
  esac
}

# "KIND at FUNCTION FILE:LINE" of a sanitizer / libFuzzer report (first ftq frame).
describe() {
  grep -o -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer): [a-z-]+|out-of-memory \(malloc\([0-9]+\)\)|out-of-memory \(used: [0-9]+Mb|ERROR: libFuzzer: (timeout|deadly signal)|runtime error: .*'
}
frame() {
  grep -m1 -E "#[0-9]+ 0x[0-9a-f]+ in [a-zA-Z_][a-zA-Z0-9_]* $src/(core|io|kernels|model|quant|eval|finetune)/" |
    sed -E "s|.* in ([^ ]+) $src/([^ ]+).*|\\1 \\2|"
}

passed=0
failed=0
for t in "${targets[@]}"; do
  bin=$build/fuzz/fuzz_$t
  if [ ! -x "$bin" ]; then
    echo "fuzz_$t: FAILED (no binary $bin)"
    failed=$((failed + 1))
    continue
  fi
  corpus=$work/corpus/$t
  arts=$build/artifacts/$t
  mkdir -p "$corpus" "$arts"
  [ -d "tests/fuzz/corpus/$t" ] && cp -p tests/fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null
  shared_seeds "$t" "$corpus"
  log=$work/fuzz_$t.log
  before=$(ls "$arts" | wc -l)
  # shellcheck disable=SC2086
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
    nice -n 19 "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$arts/" ${FUZZ_FLAGS:-} "$corpus" >"$log" 2>&1
  rc=$?
  after=$(ls "$arts" | wc -l)
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
  if [ "$rc" = 0 ] && [ "$after" = "$before" ]; then
    echo "fuzz_$t: ${execs:-0} execs, ${cov:-cov: ?} in ${secs}s: ok"
    passed=$((passed + 1))
  else
    what=$(describe <"$log")
    top=$(frame <"$log")
    newest=$(ls -t "$arts" | head -1)
    if [ -z "$what" ] && [ -n "$newest" ]; then # -fork mode: the report is in the child's log
      rep=$("$bin" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 "$arts/$newest" 2>&1)
      what=$(describe <<<"$rep")
      top=$(frame <<<"$rep")
    fi
    echo "fuzz_$t: ${execs:-0} execs, ${cov:-cov: ?}: FAILED ($((after - before)) new input(s); ${what:-exit $rc}${top:+ at $top}; inputs in $arts/, log $log)"
    failed=$((failed + 1))
    keep=1
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
