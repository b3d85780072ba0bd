#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# tests/gpu/daemon/bundle.sh - builds latticekvd with the CUDA backend here
# (the Debian 12 set-up of the README, plus nvcc) and packs it to run on a
# GPU machine that has none of its libraries: the binaries, every shared
# library they load and the dynamic loader itself (so the bundle runs on
# whatever libc the GPU machine has), redis-server, the Python gRPC stubs,
# and daemon_e2e.py / run.sh from this folder.
#
#   sh tests/gpu/daemon/bundle.sh [BUNDLE_DIR]   (default build-gpu-daemon/bundle)
#
# Then, on the GPU machine, with BUNDLE_DIR copied there:
#   bash BUNDLE_DIR/run.sh            (results in $OUT, else BUNDLE_DIR/out)
# Environment: LKV_CUDA_ARCH (default 90).
set -eu
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
HERE=$ROOT/tests/gpu/daemon
BUILD=$ROOT/build-gpu-daemon
OUTDIR=${1:-$BUILD/bundle}
case $OUTDIR in /*) ;; *) OUTDIR=$PWD/$OUTDIR ;; esac
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
mkdir -p "$BUILD"
LOG=$BUILD/bundle-build.log

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DWITH_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${LKV_CUDA_ARCH:-90}" >"$LOG" 2>&1 ||
    { tail -20 "$LOG"; exit 1; }
cmake --build "$BUILD" -j"$(nproc)" --target latticekvd latticekv cuda_backend_check \
    service_bench ctx_crossover gpu_tier_check gpu_tier_bench >>"$LOG" 2>&1 ||
    { tail -30 "$LOG"; exit 1; }

rm -rf "$OUTDIR"
mkdir -p "$OUTDIR/bin" "$OUTDIR/lib" "$OUTDIR/py"
cp "$BUILD/server/latticekvd" "$BUILD/clients/cli/latticekv" \
    "$BUILD/tests/server/cuda_backend_check" "$BUILD/bench/service/service_bench" \
    "$BUILD/bench/gpu/ctx_crossover" "$BUILD/tests/gpu/gpu_tier_check" \
    "$BUILD/bench/gpu/gpu_tier_bench" "$(command -v redis-server)" "$OUTDIR/bin/"
# every library the binaries load, and the loader (ldd names it without "=>")
for f in "$OUTDIR"/bin/*; do
    ldd "$f" | awk '/=>/ { print $3 } /ld-linux/ && !/=>/ { print $1 }'
done | sort -u | while read -r lib; do
    [ -f "$lib" ] && cp -L "$lib" "$OUTDIR/lib/"
done
[ -f "$OUTDIR/lib/ld-linux-x86-64.so.2" ] || { echo "no loader found" >&2; exit 1; }
strip "$OUTDIR"/bin/latticekvd "$OUTDIR"/bin/latticekv "$OUTDIR"/bin/cuda_backend_check \
    "$OUTDIR"/bin/service_bench "$OUTDIR"/bin/ctx_crossover "$OUTDIR"/bin/gpu_tier_check \
    "$OUTDIR"/bin/gpu_tier_bench

protoc -I"$ROOT/proto" --python_out="$OUTDIR/py" --grpc_python_out="$OUTDIR/py" \
    --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" \
    "$ROOT/proto/latticekv/v1/latticekv.proto"
protoc -I"$ROOT/proto/grpc/health/v1" --python_out="$OUTDIR/py" --grpc_python_out="$OUTDIR/py" \
    --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" \
    "$ROOT/proto/grpc/health/v1/health.proto"
cp "$HERE/daemon_e2e.py" "$HERE/gpu_tier_e2e.py" "$HERE/run.sh" "$OUTDIR/"
echo "bundle: $OUTDIR ($(du -sh "$OUTDIR" | cut -f1))"
