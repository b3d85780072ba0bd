#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/gpu/ab_p2.sh - profile 2's GPU kernels, this tree against another
# (a baseline commit's source), on one warm GPU machine:
#   0. with LKV_AB_CARD set (e.g. H200), stop at once, exit 3, unless the
#      card's name holds it, before any build;
#   1. build the standalone GPU project (tests/gpu/standalone) of both trees
#      for sm_$LKV_CUDA_ARCH (default 90), side by side;
#   2. this tree: gpu_p2_test --quick, then gpu_p2_test --tiny under
#      compute-sanitizer memcheck (LKV_AB_MEMCHECK=0 skips it); with
#      LKV_AB_CHECK_BASE=1 the base's too (logs in $OUT/base);
#   3. $LKV_AB_ROUNDS rounds (default 3), each running gpu_p2_bench of the
#      base then of this tree for every case of $LKV_AB_CASES (FORMAT:DATA
#      pairs, default "3:normal 4:channel"; 2^20 vectors, D = 128, bf16): a
#      JSON and a log each;
#   4. with LKV_AB_NCU=1, ncu (--clock-control none) on the second launch of
#      each kernel of $LKV_AB_NCU_KERNELS (default "p2_rans_encode
#      p2_rans_decode") in both builds (gpu_p2_bench $LKV_AB_NCU_ARGS, default
#      version 4 on channel data): time, instructions, registers, local
#      memory, shared-memory wavefronts and bank conflicts, and the main
#      stall reasons.
# Usage, from the repository root: bash bench/gpu/ab_p2.sh BASE_SOURCE_ROOT
# (e.g. a `git archive` of the baseline commit unpacked in an ignored
# folder). Logs go to $OUT (default build-ab/out). Prints a table last: the
# median over the rounds of each build's encode and decode time, then ncu's
# figures side by side; ab.json (bench/gpu/ab_p2_summary.py) holds every
# run, labelled $LKV_AB_BASE_LABEL and $LKV_AB_NEW_LABEL (e.g. the commits).
# Exit status: 0 when the checked trees' tests passed, memcheck was clean
# and every bench run's first chunks equalled the C coder's; 3 when the
# card is not $LKV_AB_CARD.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BASE=${1:?usage: ab_p2.sh BASE_SOURCE_ROOT}
if [ ! -f "$BASE/tests/gpu/standalone/CMakeLists.txt" ]; then
    echo "ab_p2.sh: BASE_SOURCE_ROOT=$BASE has no tests/gpu/standalone/CMakeLists.txt" >&2
    exit 2
fi
BASE=$(cd "$BASE" && pwd)
BUILD=${LKV_AB_BUILD:-$ROOT/build-ab}
OUT=${OUT:-$BUILD/out}
ARCH=${LKV_CUDA_ARCH:-90}
ROUNDS=${LKV_AB_ROUNDS:-3}
read -r -a CASES <<<"${LKV_AB_CASES:-3:normal 4:channel}"
read -r -a KERNELS <<<"${LKV_AB_NCU_KERNELS:-p2_rans_encode p2_rans_decode}"
for c in "${CASES[@]}"; do
    if ! [[ $c =~ ^[234]:[a-z]+$ ]]; then
        echo "ab_p2.sh: LKV_AB_CASES entry \"$c\" is not FORMAT:DATA (format 2, 3 or 4)" >&2
        exit 2
    fi
done
mkdir -p "$OUT"
status=0
t0=$(date +%s)
note() { printf '== [%4ds] %s\n' "$(($(date +%s) - t0))" "$*"; }

# 0. the card ----------------------------------------------------------------------
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader \
    >"$OUT/card.txt" 2>&1
note "card: $(cat "$OUT/card.txt")"
if [ -n "${LKV_AB_CARD:-}" ] && ! grep -q -- "$LKV_AB_CARD" "$OUT/card.txt"; then
    echo "ab_p2.sh: the card is not an $LKV_AB_CARD (LKV_AB_CARD); nothing built or run" >&2
    exit 3
fi

# 1. build both ---------------------------------------------------------------------
half=$(($(nproc) / 2))
[ "$half" -ge 1 ] || half=1
build() { # tree dir log
    cmake -S "$1/tests/gpu/standalone" -B "$2" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >"$3" 2>&1 &&
        cmake --build "$2" -j "$half" --target gpu_p2_test gpu_p2_bench >>"$3" 2>&1
}
note "build this tree and $BASE (sm_$ARCH)"
build "$ROOT" "$BUILD/new" "$OUT/build_new.log" &
pn=$!
build "$BASE" "$BUILD/base" "$OUT/build_base.log" &
pb=$!
wait $pn || { tail -30 "$OUT/build_new.log"; exit 2; }
wait $pb || { tail -30 "$OUT/build_base.log"; exit 2; }

# 2. tests --------------------------------------------------------------------------
. "$ROOT/tests/gpu/p2_checks.sh"
if [ "${LKV_AB_CHECK_BASE:-0}" = 1 ]; then
    mkdir -p "$OUT/base"
    p2_checks "$BUILD/base/tests_gpu/gpu_p2_test" "$OUT/base" "${LKV_AB_MEMCHECK:-1}"
    base_test_line=$test_line base_trc=$trc base_mc=$mc
fi
p2_checks "$BUILD/new/tests_gpu/gpu_p2_test" "$OUT" "${LKV_AB_MEMCHECK:-1}"

# 3. interleaved rounds -------------------------------------------------------------
for r in $(seq 1 "$ROUNDS"); do
    for b in base new; do
        for c in "${CASES[@]}"; do
            set -- ${c/:/ }
            tag="${b}_f$1_$2_r$r"
            note "round $r: $b gpu_p2_bench --format $1 --data $2"
            timeout 90 "$BUILD/$b/bench_gpu/gpu_p2_bench" --format "$1" --data "$2" \
                --json "$OUT/bench_$tag.json" >"$OUT/bench_$tag.log" 2>&1
            brc=$?
            if [ "$brc" -ne 0 ] || ! grep -q "equals the C coder" "$OUT/bench_$tag.log"; then
                echo "  $tag: exit $brc or payload differs"
                [ "$b" = new ] || [ "${LKV_AB_CHECK_BASE:-0}" = 1 ] && status=1
            fi
        done
    done
done

# 4. counters -----------------------------------------------------------------------
if [ "${LKV_AB_NCU:-0}" = 1 ] && command -v ncu >/dev/null 2>&1; then
    M=gpu__time_duration.sum,smsp__inst_executed.sum
    M=$M,smsp__issue_active.avg.pct_of_peak_sustained_active
    M=$M,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum
    M=$M,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum
    M=$M,sm__warps_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread
    M=$M,l1tex__t_sectors_pipe_lsu_mem_local_op_ld.sum,l1tex__t_sectors_pipe_lsu_mem_local_op_st.sum
    for s in short_scoreboard long_scoreboard mio_throttle wait lg_throttle math_pipe_throttle \
        no_instruction barrier branch_resolving dispatch_stall not_selected selected; do
        M=$M,smsp__average_warps_issue_stalled_${s}_per_issue_active.ratio
    done
    NA=${LKV_AB_NCU_ARGS:---format 4 --data channel}
    for b in base new; do
        for k in "${KERNELS[@]}"; do
            note "ncu: $b $k ($NA)"
            timeout 240 ncu --clock-control none -k "regex:$k" --launch-skip 1 \
                --launch-count 1 --metrics "$M" --csv \
                "$BUILD/$b/bench_gpu/gpu_p2_bench" --reps 1 $NA \
                >"$OUT/ncu_${b}_$k.csv" 2>"$OUT/ncu_${b}_$k.err" || echo "  ncu $b $k: exit $?"
            # metric value, one a line, from the kernel's rows
            awk -F'","' -v k="$k" 'NR > 1 && $0 ~ k {gsub(/"/, "", $NF); print $(NF-2), $NF}' \
                "$OUT/ncu_${b}_$k.csv" | sort -u >"$OUT/ncu_${b}_$k.txt"
        done
    done
fi

# table ----------------------------------------------------------------------------
med() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'; }
note "done"
echo
echo "card: $(cat "$OUT/card.txt")"
[ -n "${base_test_line:-}" ] &&
    echo "base gpu_p2_test --quick: $base_test_line (exit $base_trc); memcheck --tiny: $base_mc"
echo "new gpu_p2_test --quick: $test_line (exit $trc)"
echo "new memcheck --tiny: $mc"
printf '%-10s %-5s %10s %10s %8s %8s\n' case build "enc ms" "dec ms" "enc %" "dec %"
for c in "${CASES[@]}"; do
    set -- ${c/:/ }
    for b in base new; do
        logs=("$OUT"/bench_${b}_f$1_$2_r*.log)
        enc=$(for l in "${logs[@]}"; do awk '/^p2 .* encode /{print $(NF-2); exit}' "$l"; done | med)
        dec=$(for l in "${logs[@]}"; do awk '/^p2 .* decode /{print $(NF-2); exit}' "$l"; done | med)
        ep=$(for l in "${logs[@]}"; do awk '/^p2 .* encode /{print $NF+0; exit}' "$l"; done | med)
        dp=$(for l in "${logs[@]}"; do awk '/^p2 .* decode /{print $NF+0; exit}' "$l"; done | med)
        printf '%-10s %-5s %10s %10s %8s %8s\n' "v$1 $2" "$b" "$enc" "$dec" "$ep" "$dp"
    done
done
for k in "${KERNELS[@]}"; do
    [ -s "$OUT/ncu_base_$k.txt" ] && [ -s "$OUT/ncu_new_$k.txt" ] || continue
    echo
    echo "ncu $k (metric: base, new):"
    join "$OUT/ncu_base_$k.txt" "$OUT/ncu_new_$k.txt" |
        sed -e 's/smsp__average_warps_issue_stalled_/stall_/' -e 's/_per_issue_active.ratio//' |
        awk '{printf "  %-58s %12s %12s\n", $1, $2, $3}'
done
if command -v python3 >/dev/null 2>&1; then
    python3 "$ROOT/bench/gpu/ab_p2_summary.py" "$OUT" "${LKV_AB_BASE_LABEL:-base}" \
        "${LKV_AB_NEW_LABEL:-new}" >"$OUT/ab.json" || echo "summary: exit $?"
fi
echo "status: $status (logs and JSON in $OUT; all runs in $OUT/ab.json)"
exit $status
