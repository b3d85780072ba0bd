#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The main job on embedded defaults: install, build, compress a synthetic KV
# block offline with the CLI, then start latticekvd, run the demo client
# against it and keep serving until Ctrl-C.
#
# Ctrl-C drains: the daemon runs in its own session (setsid), so the
# terminal's SIGINT reaches only this script, whose trap sends the daemon one
# SIGTERM. (Were the daemon in the terminal's process group it would get the
# SIGINT and then the trap's SIGTERM, a second signal, which cancels calls
# instead of letting them finish.)
#
# For tests: LKV_RUN_SKIP_BUILD=1 uses an existing build, LKV_RUN_BUILD_DIR
# names it (default build), LKV_RUN_ADDR serves on that one host:port only.
set -eu
cd "$(dirname "$0")/.."
build=${LKV_RUN_BUILD_DIR:-build}
if [ "${LKV_RUN_SKIP_BUILD:-0}" != 1 ]; then
  sh scripts/deps.sh
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
  cmake --build "$build" -j"$(nproc)"
fi

work=$(mktemp -d)
echo
echo "== offline codec: a 1024-token x 8-head x 128-dim K and V block in bf16 =="
for kind in k v; do
  /usr/bin/python3 scripts/make_kv.py --kind $kind --out "$work/$kind.bf16"
  "$build"/clients/cli/latticekv codec encode --variant e8 --q 38 --dim 128 --shape 1024,8,128 \
    --in "$work/$kind.bf16" --in-dtype bf16 --out "$work/$kind.lkv"
  "$build"/clients/cli/latticekv codec roundtrip --variant e8 --q 38 --dim 128 \
    --in "$work/$kind.bf16" --in-dtype bf16 --out "$work/$kind.rt.bf16"
done
"$build"/clients/cli/latticekv codec info --variant e8 --q 38 --dim 128

addr=${LKV_RUN_ADDR:-127.0.0.1:50051}
echo
if [ -n "${LKV_RUN_ADDR:-}" ]; then
  echo "== latticekvd on embedded defaults, serving $addr only =="
  setsid "$build"/server/latticekvd --listen "$addr" &
else
  echo "== latticekvd on embedded defaults (127.0.0.1:50051, unix:/tmp/latticekvd.sock) =="
  setsid "$build"/server/latticekvd &
fi
pid=$!
# However the script ends - Ctrl-C, a failed step under set -e, the daemon
# exiting - the daemon is stopped (SIGTERM, it drains) and waited for, and
# the work directory removed: in its own session the daemon would otherwise
# outlive the script unseen, holding the port. Ctrl-C is a normal end (0).
stop() {
  rc=$?
  trap - EXIT INT TERM
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$work"
  exit "$rc"
}
trap stop EXIT
trap 'exit 0' INT TERM
tries=0
until "$build"/clients/cli/latticekv stats --addr "$addr" >/dev/null 2>&1; do
  tries=$((tries + 1))
  [ $tries -lt 100 ] || { echo "latticekvd did not become ready" >&2; exit 1; }
  sleep 0.1
done
"$build"/clients/cli/latticekv demo --addr "$addr"
echo
echo "latticekvd is serving (pid $pid); press Ctrl-C to stop it."
wait $pid
