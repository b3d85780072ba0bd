#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Runs every libFuzzer target for a bounded time from its committed corpus
# (CI: scripts/test.sh). Builds them with clang in build-fuzz (-DLKV_FUZZ=ON:
# ASan + UBSan + coverage). New inputs go to a temporary directory, so the
# committed corpus is only read; a crash fails the run and leaves its input
# under build-fuzz/crashes/. Plain ctest replays the corpora without clang.
#
#   sh scripts/fuzz.sh [SECONDS]          run each target SECONDS (default 20)
#   sh scripts/fuzz.sh SECONDS --merge    also merge what is new into the corpus
set -eu
cd "$(dirname "$0")/.."
secs=${1:-20}
merge=${2:-}
jobs=$(nproc)
# target:corpus directory (under tests/fuzz)
targets="fuzz_container:corpus fuzz_p2:corpus_p2 fuzz_wire:corpus_wire fuzz_config:corpus_config fuzz_http:corpus_http fuzz_auth:corpus_auth"

cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DLKV_FUZZ=ON -DWITH_CUDA=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j"$jobs" --target $(for t in $targets; do printf '%s ' "${t%%:*}"; done)

mkdir -p build-fuzz/crashes
failed=""
for t in $targets; do
  bin=build-fuzz/tests/fuzz/${t%%:*}
  corpus=tests/fuzz/${t#*:}
  new=$(mktemp -d)
  echo "fuzz: ${t%%:*} for ${secs}s from $corpus ($(ls "$corpus" | wc -l) inputs)"
  if ! "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix=build-fuzz/crashes/"${t%%:*}"- \
      "$new" "$corpus" >build-fuzz/"${t%%:*}".log 2>&1; then
    tail -40 build-fuzz/"${t%%:*}".log
    failed="$failed ${t%%:*}"
  else
    grep -E "stat::number_of_executed_units|stat::new_units_added" build-fuzz/"${t%%:*}".log | tr '\n' ' '
    echo
  fi
  if [ "$merge" = "--merge" ]; then
    "$bin" -merge=1 "$corpus" "$new" >/dev/null 2>&1
  fi
  rm -rf "$new"
done
if [ -n "$failed" ]; then
  echo "fuzz: FAILED:$failed (inputs in build-fuzz/crashes/)"
  exit 1
fi
echo "fuzz: every target ran ${secs}s without a finding"
