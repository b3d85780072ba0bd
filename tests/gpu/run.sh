#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# tests/gpu/run.sh - everything the CUDA codec needs checked on a GPU machine:
#   1. configure + build (Release): the top-level project when its
#      dependencies are there, else tests/gpu/standalone (codec + cuda + GPU
#      tests + GPU bench only);
#   2. the GPU tests (host-side block test, the device test, profile 2's
#      device test, and the exhaustive check of the kernels' division);
#   3. the device test again under compute-sanitizer --tool memcheck;
#   4. bench/gpu/gpu_codec_bench and the PyTorch baseline
#      bench/gpu/torch_roundtrip.py, merged into gpu-<card>-<date>.json.
# Logs and results go to $OUT when set, else <build>/out. Prints a short
# table last. Exit status: 0 when every test passed and memcheck was clean.
#
# Environment: LKV_GPU_BUILD (build dir, default build-gpu), LKV_CUDA_ARCH
# (default 90), LKV_GPU_BIN (a folder holding prebuilt gpu_block_test,
# gpu_codec_test, div_exhaustive and gpu_codec_bench: skips step 1), LKV_GPU_SKIP_TORCH=1,
# LKV_GPU_SASS=1 (dump the D=128 E8 kernels' SASS for instruction counts),
# LKV_GPU_SKIP_DIV=1 (skip div_exhaustive), LKV_GPU_MEMCHECK_S (memcheck's
# time limit, default 420),
# LKV_GPU_NCU=1 (profile the D=128 E8 encode and decode kernels with ncu).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${LKV_GPU_BUILD:-$ROOT/build-gpu}
OUT=${OUT:-$BUILD/out}
ARCH=${LKV_CUDA_ARCH:-90}
mkdir -p "$OUT"
status=0
note() { printf '== %s\n' "$*"; }

# 1. build --------------------------------------------------------------------
if [ -n "${LKV_GPU_BIN:-}" ]; then
    BIN=$(cd "$LKV_GPU_BIN" && pwd)
    note "using prebuilt binaries in $BIN"
else
    note "configure + build (Release, sm_$ARCH)"
    if cmake -S "$ROOT" -B "$BUILD/full" -DCMAKE_BUILD_TYPE=Release -DWITH_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >"$OUT/build.log" 2>&1; then
        SRC_BUILD=$BUILD/full
        TDIR=tests/gpu BDIR=bench/gpu
    else
        note "top-level project does not configure here (see build.log); using tests/gpu/standalone"
        cmake -S "$ROOT/tests/gpu/standalone" -B "$BUILD/standalone" -DCMAKE_BUILD_TYPE=Release \
            -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >>"$OUT/build.log" 2>&1 || {
            tail -20 "$OUT/build.log"
            exit 2
        }
        SRC_BUILD=$BUILD/standalone
        TDIR=tests_gpu BDIR=bench_gpu
    fi
    cmake --build "$SRC_BUILD" -j "$(nproc)" --target gpu_block_test gpu_codec_test div_exhaustive gpu_codec_bench gpu_p2_test gpu_p2_bench \
        >>"$OUT/build.log" 2>&1 || {
        tail -30 "$OUT/build.log"
        exit 2
    }
    BIN=$BUILD/bin
    mkdir -p "$BIN"
    cp "$SRC_BUILD/$TDIR/gpu_block_test" "$SRC_BUILD/$TDIR/gpu_codec_test" \
        "$SRC_BUILD/$TDIR/div_exhaustive" "$SRC_BUILD/$BDIR/gpu_codec_bench" \
        "$SRC_BUILD/$TDIR/gpu_p2_test" "$SRC_BUILD/$BDIR/gpu_p2_bench" "$BIN/"
fi
export LKV_GPU_DATA_DIR="$ROOT/tests/gpu/data"

# 2. tests ----------------------------------------------------------------------
note "gpu_block_test"
"$BIN/gpu_block_test" >"$OUT/tests.log" 2>&1 || status=1
tail -1 "$OUT/tests.log"
note "gpu_codec_test"
"$BIN/gpu_codec_test" 2>&1 | tee -a "$OUT/tests.log" | tail -12
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
if [ -x "$BIN/gpu_p2_test" ]; then
    note "gpu_p2_test (codec profile 2)"
    "$BIN/gpu_p2_test" 2>&1 | tee -a "$OUT/tests.log" | grep -E "FAIL|passed" | tail -12
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
if [ "${LKV_GPU_SKIP_DIV:-0}" != 1 ]; then
    note "div_exhaustive (every pair of significands, about a minute)"
    "$BIN/div_exhaustive" 2>&1 | tee -a "$OUT/tests.log" | tail -2
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi

# 3. memcheck -------------------------------------------------------------------
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ -x "$SAN" ]; then
    note "gpu_codec_test --quick under compute-sanitizer --tool memcheck"
    timeout "${LKV_GPU_MEMCHECK_S:-420}" "$SAN" --tool memcheck --error-exitcode 9 --print-limit 20 \
        "$BIN/gpu_codec_test" --quick >"$OUT/memcheck.log" 2>&1
    san_rc=$?
    tail -4 "$OUT/memcheck.log"
    [ $san_rc -eq 0 ] || { status=1; note "memcheck exit status $san_rc"; }
    if [ -x "$BIN/gpu_p2_test" ]; then
        note "gpu_p2_test --tiny under compute-sanitizer --tool memcheck"
        timeout 300 "$SAN" --tool memcheck --error-exitcode 9 --print-limit 20 \
            "$BIN/gpu_p2_test" --tiny >"$OUT/memcheck-p2.log" 2>&1
        p2_rc=$?
        tail -3 "$OUT/memcheck-p2.log"
        [ $p2_rc -eq 0 ] || { status=1; note "profile 2 memcheck exit status $p2_rc"; }
    fi
else
    note "compute-sanitizer not found: memcheck skipped"
    san_rc=skipped
fi

# 4. benchmarks -----------------------------------------------------------------
note "gpu_codec_bench"
"$BIN/gpu_codec_bench" --json "$OUT/gpu-bench.json" 2>&1 | tee "$OUT/bench.log" | tail -32
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
if [ -x "$BIN/gpu_p2_bench" ]; then
    note "gpu_p2_bench (profile 2 Q=54 beside profile 1 E8 Q=38, 2^20 x 128 bf16)"
    "$BIN/gpu_p2_bench" --json "$OUT/gpu-p2.json" 2>&1 | tee -a "$OUT/bench.log" | tail -8
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
if [ "${LKV_GPU_SKIP_TORCH:-0}" != 1 ]; then
    note "PyTorch baseline"
    PY=$(command -v python3)
    PYTHONUNBUFFERED=1 timeout 400 "$PY" "$ROOT/bench/gpu/torch_roundtrip.py" --json "$OUT/torch.json" \
        2>&1 | tee -a "$OUT/bench.log" | tail -6
fi
if [ "${LKV_GPU_SASS:-0}" = 1 ] && command -v cuobjdump >/dev/null; then
    cuobjdump -sass "$BIN/gpu_codec_bench" | awk '
        /Function :/ { keep = ($0 ~ /(en|de)code_kernelILi8ELi128ELi[0-9]+ELb0/) }
        keep' >"$OUT/sass.txt" 2>&1
fi

if [ "${LKV_GPU_NCU:-0}" = 1 ] && command -v ncu >/dev/null; then
    note "ncu: the first encode and decode launches of gpu_codec_bench --quick"
    timeout 300 ncu --clock-control none -k regex:'(en|de)code_kernel' --launch-count 2 \
        --section SpeedOfLight --section SchedulerStats --section WarpStateStats \
        --section Occupancy --section InstructionStats --section ComputeWorkloadAnalysis \
        "$BIN/gpu_codec_bench" --quick >"$OUT/ncu.txt" 2>&1
    grep -E "Duration|Executed Instructions |Issue Slots Busy|Achieved Occupancy|Registers Per|No Eligible|Stall|Warp Cycles Per Issued" "$OUT/ncu.txt" | head -30
fi

# 5. merged result + summary ------------------------------------------------------
python3 - "$OUT" "$san_rc" "$status" <<'EOF'
import json, os, re, sys
out, san, status = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    b = json.load(open(os.path.join(out, "gpu-bench.json")))
except Exception as e:
    print("no benchmark result:", e)
    sys.exit(0)
t = None
try:
    t = json.load(open(os.path.join(out, "torch.json")))
except Exception:
    pass
main = b["throughput"][0]
res = {"device": b["device"], "date": b["date"], "tests_passed": status == 0,
       "memcheck_exit": san, "codec": b, "torch_baseline": t}
line = f"{b['device']}: copy {b['copy_d2d_GBps']:.0f} GB/s | E8 Q=38 D=128 bf16 2^20: " \
       f"encode {main['encode_ms']:.3f} ms ({100*main['encode_frac_copy']:.0f}% of copy), " \
       f"decode {main['decode_ms']:.3f} ms ({100*main['decode_frac_copy']:.0f}% of copy)"
if t:
    r = [x for x in t["results"] if x["variant"] == "E8"][0]
    ours = main["encode_ms"] + main["decode_ms"]
    res["speedup_vs_torch_compiled"] = r["compiled_ms"] / ours
    res["speedup_vs_torch_eager"] = r["eager_ms"] / ours
    line += f" | torch eager {r['eager_ms']:.2f} ms, compiled {r['compiled_ms']:.2f} ms -> " \
            f"{r['compiled_ms']/ours:.1f}x faster than compiled"
rows = {(r["variant"], r["q"], r["dim"], r["dtype"]): r for r in b["throughput"]}
for d in (128, 96, 576):
    r = rows.get(("E8", 38, d, "bf16"))
    if r:
        print(f"== E8 Q=38 D={d} bf16 2^20: encode {r['encode_ms']:.3f} ms, decode "
              f"{r['decode_ms']:.3f} ms, {r.get('identical_to_cpu', '?')} vectors identical to the C codec")
slug = re.sub(r"[^a-z0-9]+", "-", b["device"].lower().replace("nvidia", "")).strip("-")
path = os.path.join(out, f"gpu-{slug}-{b['date']}.json")
json.dump(res, open(path, "w"), indent=2)
print("== summary:", line)
print("== wrote", path)
EOF
note "tests+memcheck: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
