#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# run.sh - latticekvd end to end on a GPU machine, from the bundle that
# tests/gpu/daemon/bundle.sh made (this file is copied into it):
#   1. cuda_backend_check: the daemon's CUDA backend against its CPU backend,
#      byte for byte, on multi-segment batches;
#   2. a --backend cuda daemon (every batch on the GPU: --cuda-inline-vectors 0)
#      against a --backend cpu daemon over gRPC (daemon_e2e.py), then the
#      CLI demo against the cuda daemon;
#   3. ctx_crossover: the batch size from which a GPU call beats the C codec;
#   4. service_bench with each backend (latticekv with and without batching;
#      redis beside the cpu run), 16- and 256-token blocks, 1/8/64 clients;
#      the cuda backend twice, with its default --cuda-inline-vectors and with
#      every batch on the GPU (cuda-all);
#   5. the GPU tier (--gpu-mem-bytes): gpu_tier_check (the tier on the device
#      against the C codec, eviction into host, promotion back), a cuda daemon
#      with a small GPU tier against the cpu daemon over gRPC (gpu_tier_e2e.py),
#      and gpu_tier_bench (a Llama-3.1-8B-shaped context from the GPU tier, the
#      host tier and as raw copies; LKV_GPU_TIER_TOKENS, default 1024,4096,20480).
# LKV_GPU_TIER_ONLY=1 runs step 5 alone.
# Binaries run through the bundled loader, so the machine's own libc and
# libraries do not matter; the GPU driver's libcuda is found on the usual
# paths. daemon_e2e.py needs a Python with grpcio, protobuf and numpy
# ($PYTHON, default python3). Logs and JSON go to $OUT (else <bundle>/out).
# Exit 0 when 1, 2 and the checks of 5 passed.
set -u
B=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$B/out}
mkdir -p "$OUT"
LP="$B/lib:${LD_LIBRARY_PATH:-}:/usr/local/nvidia/lib64:/usr/lib/x86_64-linux-gnu"
L="$B/lib/ld-linux-x86-64.so.2 --library-path $LP"
W=$(mktemp -d)
for p in latticekvd redis-server; do
    printf '#!/bin/sh\nexec %s %s/bin/%s "$@"\n' "$L" "$B" "$p" >"$W/$p"
    chmod +x "$W/$p"
done
status=0
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null
"$W/latticekvd" --version

gpu_tier_steps() {
    echo "== gpu_tier_check"
    timeout 300 $L "$B/bin/gpu_tier_check" >"$OUT/gpu_tier_check.txt" 2>&1 || status=1
    grep -E "FAIL|passed" "$OUT/gpu_tier_check.txt" | tail -8
    echo "== latticekvd --gpu-mem-bytes 1MiB against --backend cpu"
    setsid "$W/latticekvd" --listen 127.0.0.1:50613 --backend cpu --log-level warn \
        >"$OUT/daemon-cpu-tier.log" 2>&1 &
    setsid "$W/latticekvd" --listen 127.0.0.1:50614 --backend cuda --gpu-mem-bytes 1MiB \
        --log-level warn >"$OUT/daemon-gpu-tier.log" 2>&1 &
    for port in 50613 50614; do
        for _ in $(seq 1 100); do
            timeout 5 $L "$B/bin/latticekv" stats --addr 127.0.0.1:$port >/dev/null 2>&1 && break
            sleep 0.1
        done
    done
    timeout 300 "${PYTHON:-python3}" "$B/gpu_tier_e2e.py" 127.0.0.1:50613 127.0.0.1:50614 \
        "$B/py" 1048576 >"$OUT/gpu_tier_e2e.txt" 2>&1 || status=1
    tail -6 "$OUT/gpu_tier_e2e.txt"
    pkill -TERM -f "$B/bin/latticekvd"
    sleep 1
    echo "== gpu_tier_bench"
    timeout 400 $L "$B/bin/gpu_tier_bench" --tokens "${LKV_GPU_TIER_TOKENS:-1024,4096,20480}" \
        --json "$OUT/gpu-tier.json" >"$OUT/gpu-tier-bench.txt" 2>&1
    echo "gpu_tier_bench: rc=$?"
    cat "$OUT/gpu-tier-bench.txt"
}
if [ "${LKV_GPU_TIER_ONLY:-0}" = 1 ]; then
    gpu_tier_steps
    rm -rf "$W"
    echo "== gpu tier tests: $([ $status = 0 ] && echo PASS || echo FAIL)"
    exit $status
fi

echo "== cuda_backend_check"
timeout 300 $L "$B/bin/cuda_backend_check" >"$OUT/backend_check.txt" 2>&1 || status=1
tail -1 "$OUT/backend_check.txt"

echo "== latticekvd --backend cuda against --backend cpu"
setsid "$W/latticekvd" --listen 127.0.0.1:50611 --backend cpu --log-level warn \
    >"$OUT/daemon-cpu.log" 2>&1 &
setsid "$W/latticekvd" --listen 127.0.0.1:50612 --backend cuda --cuda-inline-vectors 0 \
    >"$OUT/daemon-cuda.log" 2>&1 &
for port in 50611 50612; do
    for _ in $(seq 1 100); do
        timeout 5 $L "$B/bin/latticekv" stats --addr 127.0.0.1:$port >/dev/null 2>&1 && break
        sleep 0.1
    done
done
timeout 300 "${PYTHON:-python3}" "$B/daemon_e2e.py" 127.0.0.1:50611 127.0.0.1:50612 "$B/py" \
    >"$OUT/daemon_e2e.txt" 2>&1 || status=1
tail -4 "$OUT/daemon_e2e.txt"
timeout 60 $L "$B/bin/latticekv" demo --addr 127.0.0.1:50612 2>&1 | tail -4
pkill -TERM -f "$B/bin/latticekvd"
sleep 1

echo "== ctx_crossover"
timeout 120 $L "$B/bin/ctx_crossover" --json "$OUT/ctx-crossover.json" >"$OUT/ctx-crossover.txt" 2>&1
echo "ctx_crossover: rc=$?"
cat "$OUT/ctx-crossover.txt"

echo "== service_bench, cpu and cuda backends"
for run in cpu cuda cuda-all; do
    be=${run%-all}
    sys=latticekv,latticekv-nb
    [ $be = cpu ] && sys=$sys,redis
    # the daemon inherits it
    if [ $run = cuda-all ]; then export LATTICEKV_CUDA_INLINE_VECTORS=0; else unset LATTICEKV_CUDA_INLINE_VECTORS; fi
    timeout 400 $L "$B/bin/service_bench" --daemon "$W/latticekvd" \
        --redis-server "$W/redis-server" --backend $be --systems $sys --tokens 16,256 \
        --clients 1,8,64 --seconds 1 --rounds 1 \
        --out "$OUT/service-$run.json" >"$OUT/service-$run.txt" 2>&1
    echo "service_bench $run: rc=$?"
    sed -n '/^tokens clients/,/^$/p' "$OUT/service-$run.txt"
done
gpu_tier_steps
rm -rf "$W"
echo "== daemon tests: $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
