#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# tests/gpu/run_v4_check.sh - container version 4's estimated mode choice on
# a GPU machine, in about 5 minutes (under 8):
#   1. build the standalone GPU project (codec, cuda, tests/gpu, bench/gpu)
#      for sm_$LKV_CUDA_ARCH (default 90), targets gpu_p2_test and
#      gpu_p2_bench only;
#   2. gpu_p2_test --quick (byte identity with the C coder in versions 3, 2
#      and 4, both directions, statuses);
#   3. gpu_p2_test --tiny under compute-sanitizer memcheck (every kernel
#      shape once; skipped when compute-sanitizer is missing or
#      LKV_V4_MEMCHECK=0);
#   4. gpu_p2_bench for formats 3 and 4 on normal and channel data (2^20
#      vectors, D = 128, bf16), a JSON each.
# Run from the repository root: bash tests/gpu/run_v4_check.sh
# Logs and JSON go to $OUT (default build-v4/out). Prints a table last.
# Exit status: 0 when the tests passed, memcheck was clean and every bench
# run's first chunks equalled the C coder's.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${LKV_V4_BUILD:-$ROOT/build-v4}
OUT=${OUT:-$BUILD/out}
ARCH=${LKV_CUDA_ARCH:-90}
mkdir -p "$OUT"
status=0
t0=$(date +%s)
note() { printf '== [%4ds] %s\n' "$(($(date +%s) - t0))" "$*"; }

# 1. build ---------------------------------------------------------------------
note "build tests/gpu/standalone (Release, sm_$ARCH)"
if ! cmake -S "$ROOT/tests/gpu/standalone" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >"$OUT/build.log" 2>&1 ||
    ! cmake --build "$BUILD" -j "$(nproc)" --target gpu_p2_test gpu_p2_bench \
        >>"$OUT/build.log" 2>&1; then
    tail -30 "$OUT/build.log"
    exit 2
fi
TEST=$BUILD/tests_gpu/gpu_p2_test
BENCH=$BUILD/bench_gpu/gpu_p2_bench
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader \
    >"$OUT/card.txt" 2>&1
note "card: $(cat "$OUT/card.txt")"

# 2, 3. device test and memcheck --------------------------------------------------
. "$ROOT/tests/gpu/p2_checks.sh"
p2_checks "$TEST" "$OUT" "${LKV_V4_MEMCHECK:-1}"
echo "$test_line (exit $trc)"
echo "$mc"

# 4. bench -------------------------------------------------------------------------
rows=()
for fmt in 3 4; do
    for data in normal channel; do
        tag="f${fmt}_${data}"
        note "gpu_p2_bench --format $fmt --data $data"
        timeout 90 "$BENCH" --format "$fmt" --data "$data" --json "$OUT/bench_$tag.json" \
            >"$OUT/bench_$tag.log" 2>&1
        brc=$?
        check=$(grep -c "equals the C coder" "$OUT/bench_$tag.log")
        [ "$brc" -eq 0 ] && [ "$check" -eq 1 ] || status=1
        enc=$(awk '/ encode /{print $(NF-2); exit}' "$OUT/bench_$tag.log")
        dec=$(awk '/ decode /{print $(NF-2); exit}' "$OUT/bench_$tag.log")
        bits=$(sed -n 's/.*: \([0-9.]*\) bits\/vector.*/\1/p' "$OUT/bench_$tag.log" | head -1)
        rows+=("$(printf '%-7s %-8s %9s %9s %10s %s' "$fmt" "$data" "${enc:--}" "${dec:--}" \
            "${bits:--}" "$([ "$check" -eq 1 ] && echo same || echo "DIFFERS/exit $brc")")")
    done
done

note "done"
echo
echo "card: $(cat "$OUT/card.txt")"
echo "gpu_p2_test --quick: $test_line (exit $trc)"
echo "memcheck --tiny: $mc"
printf '%-7s %-8s %9s %9s %10s %s\n' format data "enc ms" "dec ms" bits/vec "first 64 chunks vs C"
for r in "${rows[@]}"; do
    echo "$r"
done
echo "status: $status (logs and JSON in $OUT)"
exit $status
