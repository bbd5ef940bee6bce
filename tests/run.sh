#!/usr/bin/env bash
# tests/run.sh - build and run the whole test suite (the README's second command; .ci/run
# calls it): every suite in a release build, then every suite again built with
# AddressSanitizer + UBSan (leak checks on), so a malformed file can never corrupt memory.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
./build/ftq_tests "$@"

if [ $# -eq 0 ] && [ "${FTQ_SKIP_SANITIZE:-0}" != 1 ]; then
  cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFTQ_SANITIZE=ON -DFTQ_BUILD_BENCH=OFF >/dev/null
  cmake --build build-sanitize -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1 ./build-sanitize/ftq_tests
fi
