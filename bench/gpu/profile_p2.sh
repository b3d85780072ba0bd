#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/gpu/profile_p2.sh - where profile 2's GPU kernels spend their time, on
# one warm GPU machine:
#   1. build the standalone GPU project (tests/gpu/standalone) for
#      sm_$LKV_CUDA_ARCH (default 90);
#   2. $LKV_PROF_ROUNDS (default 3) runs of gpu_p2_bench, version 3 on normal
#      data and version 4 on channel data (2^20 vectors, D = 128, bf16);
#   3. ncu (--clock-control none) of one launch of each kernel named in
#      $LKV_PROF_KERNELS (default: both decode kernels, then the encode's)
#      with the warp-state and source-counter sections, for
#      $LKV_PROF_ARGS (default version 3 on normal data): the report, the
#      details page, and the source page (SASS with stall samples, CSV).
# Usage, from the repository root: bash bench/gpu/profile_p2.sh
# Files go to $OUT (default build-prof/out).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${LKV_PROF_BUILD:-$ROOT/build-prof}
OUT=${OUT:-$BUILD/out}
ARCH=${LKV_CUDA_ARCH:-90}
ROUNDS=${LKV_PROF_ROUNDS:-3}
ARGS=${LKV_PROF_ARGS:---format 3 --data normal}
mkdir -p "$OUT"
t0=$(date +%s)
note() { printf '== [%4ds] %s\n' "$(($(date +%s) - t0))" "$*"; }

note "build (sm_$ARCH)"
cmake -S "$ROOT/tests/gpu/standalone" -B "$BUILD/b" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >"$OUT/build.log" 2>&1 &&
    cmake --build "$BUILD/b" -j "$(nproc)" --target gpu_p2_test gpu_p2_bench \
        >>"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 2; }
BENCH=$BUILD/b/bench_gpu/gpu_p2_bench
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader \
    >"$OUT/card.txt" 2>&1
note "card: $(cat "$OUT/card.txt")"

for r in $(seq 1 "$ROUNDS"); do
    for c in "3 normal" "4 channel"; do
        set -- $c
        timeout 90 "$BENCH" --format "$1" --data "$2" --json "$OUT/bench_f$1_$2_r$r.json" \
            >"$OUT/bench_f$1_$2_r$r.log" 2>&1 || echo "  bench f$1 $2 r$r: exit $?"
    done
done
note "bench done"

if command -v ncu >/dev/null 2>&1; then
    for k in ${LKV_PROF_KERNELS:-p2_rans_decode p2_reconstruct p2_quantise p2_rans_encode p2_compact}; do
        note "ncu: $k ($ARGS)"
        timeout 300 ncu --clock-control none -k "regex:$k" --launch-skip 1 --launch-count 1 \
            --section WarpStateStats --section SourceCounters --section SchedulerStats \
            --section LaunchStats --section Occupancy --section SpeedOfLight \
            --import-source no -f -o "$OUT/$k" "$BENCH" --reps 1 $ARGS \
            >"$OUT/ncu_$k.log" 2>&1 || echo "  ncu $k: exit $?"
        ncu -i "$OUT/$k.ncu-rep" --page details >"$OUT/$k.details.txt" 2>&1
        ncu -i "$OUT/$k.ncu-rep" --page source --csv --print-source sass \
            >"$OUT/$k.sass.csv" 2>"$OUT/$k.sass.err" || echo "  source page $k: exit $?"
    done
fi

echo
echo "card: $(cat "$OUT/card.txt")"
for f in "$OUT"/bench_*_r1.log; do
    echo "-- $(basename "$f")"
    grep -E "^(device|p[12] )" "$f" || tail -5 "$f"
done
for k in ${LKV_PROF_KERNELS:-p2_rans_decode p2_reconstruct p2_quantise p2_rans_encode p2_compact}; do
    [ -s "$OUT/$k.details.txt" ] || continue
    echo "-- $k"
    grep -E "Duration|Registers Per|Achieved Occupancy|Issue Slots Busy|Warp Cycles Per Issued|No Eligible" \
        "$OUT/$k.details.txt" | head -12
done
exit 0
