#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# run.sh - the tier benchmark (issue 11 item 4), one bounded sweep:
#
#   1. two network namespaces joined by a tbf-shaped veth pair (tiers_net.sh):
#      redis-server and a TCP sink in PREFIX-srv (SUBNET.2), the clients and
#      latticekvd in PREFIX-cli (SUBNET.1);
#   2. per link rate: raw TCP throughput both ways, then the client's raw bf16
#      SET/GET to that Redis (redis-raw) against Put/Get through a local
#      latticekvd (unix socket) whose Redis tier is across the link (lkv-redis);
#   3. lkv-host: the same daemon's Put/Get with no tier behind it (the codec's
#      ceiling on this machine, no link involved);
#   4. per fsync policy: raw bf16 files in a directory (files-raw) against
#      latticekvd's SSD tier in the same directory (lkv-ssd), page cache
#      dropped before the Gets;
#   5. report.py merges the parts into OUT (default
#      bench/results/tiers-dev-vm-2core.json) and prints the table.
#
# Everything it starts and makes (processes, namespaces, the temporary
# directory) is removed at the end, on error and on INT/TERM.
#
#   sh bench/tiers/run.sh [BUILD_DIR]          (root; default BUILD_DIR=build)
#
# Environment (defaults in brackets):
#   LKVB_RATES [1gbit 2.5gbit 10gbit]  LKVB_TOKENS [16,256]  LKVB_CLIENTS [8,64]
#   LKVB_MIB [192] bf16 MiB per network cell, LKVB_SSD_MIB [96] per SSD cell,
#   LKVB_MAX_S [20] longest Put phase of a cell, LKVB_FSYNC [never batch always],
#   LKVB_PORT [22100] (uses PORT+1, PORT+2), LKVB_DIR [/var/tmp] where the
#   SSD directory is made, LKVB_HOST_MEM [1MiB] the daemon's --host-mem-bytes
#   (room for one 256-token block: the host tier refuses a block larger than
#   itself; small, so Gets are served by the tier under test, not host memory),
#   LKVB_REDIS_FLAGS [--redis redis://SUBNET.2:PORT+1 --tier-policy write-through],
#   LKVB_SSD_FLAGS [--ssd-dir DIR --ssd-bytes 16GiB --ssd-fsync POLICY],
#   OUT, LKVB_PREFIX, LKVB_SUBNET (tiers_net.sh).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${1:-$ROOT/build}
case "$BUILD" in /*) ;; *) BUILD=$(pwd)/$BUILD ;; esac
BENCH=$BUILD/bench/tiers/tiers_bench
LKVD=${LKVD:-$BUILD/server/latticekvd}
NETSH="sh $HERE/tiers_net.sh"
P=${LKVB_PREFIX:-lkvb}
NET=${LKVB_SUBNET:-10.213.0}
RATES=${LKVB_RATES:-1gbit 2.5gbit 10gbit}
TOKENS=${LKVB_TOKENS:-16,256}
CLIENTS=${LKVB_CLIENTS:-8,64}
MIB=${LKVB_MIB:-192}
SSD_MIB=${LKVB_SSD_MIB:-96}
MAX_S=${LKVB_MAX_S:-20}
FSYNCS=${LKVB_FSYNC:-never batch always}
PORT=${LKVB_PORT:-22100}
HOST_MEM=${LKVB_HOST_MEM:-1MiB}
OUT=${OUT:-$ROOT/bench/results/tiers-dev-vm-2core.json}
REDIS_PORT=$((PORT + 1))
TCP_PORT=$((PORT + 2))
SRV=$P-srv
CLI=$P-cli
REDIS_ADDR=$NET.2:$REDIS_PORT

die() {
  echo "run.sh: error: $*" >&2
  exit 1
}
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, tc)"
for b in "$BENCH" "$LKVD"; do
  [ -x "$b" ] || die "$b is not built (cmake --build $BUILD --target tiers_bench latticekvd)"
done
command -v redis-server >/dev/null || die "redis-server is not installed (scripts/deps.sh)"
command -v tc >/dev/null || die "tc (iproute2) is not installed"

T=$(mktemp -d "${LKVB_DIR:-/var/tmp}/lkvb-tiers-XXXXXX")
PIDS=""
DAEMON=""
cleanup() {
  rc=$?
  trap - EXIT INT TERM
  for pid in $DAEMON $PIDS; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in $DAEMON $PIDS; do
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
      sleep 0.1
      i=$((i + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  $NETSH down >/dev/null 2>&1 || echo "run.sh: warning: namespaces of $P left behind" >&2
  if [ $rc -ne 0 ] && [ -d "$T" ]; then
    for f in "$T"/*.log; do
      [ -f "$f" ] && { echo "--- $f (last lines)" >&2; tail -n 5 "$f" >&2; }
    done
  fi
  rm -rf "$T"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Background processes are started with `ip netns exec` itself (it execs the
# program), so $! is the program's pid; a shell function would put a subshell
# in between, which a signal would end without the program.
in_cli() { ip netns exec "$CLI" "$@"; }

# latticekvd in the client namespace with the given tier flags; returns 1
# (and leaves no process) when it will not start, e.g. a flag it lacks.
start_daemon() {
  name=$1
  shift
  sock=$T/lkv-$name.sock
  # shellcheck disable=SC2086 # the flags are word lists on purpose
  ip netns exec "$CLI" "$LKVD" --listen "unix:$sock" --host-mem-bytes "$HOST_MEM" \
    --max-inflight-bytes 1GiB --log-level warn "$@" >"$T/lkvd-$name.log" 2>&1 &
  DAEMON=$!
  i=0
  while [ ! -S "$sock" ] && [ $i -lt 100 ]; do
    if ! kill -0 "$DAEMON" 2>/dev/null; then
      wait "$DAEMON" 2>/dev/null || true
      DAEMON=""
      echo "run.sh: latticekvd ($name) did not start: $(tail -n 2 "$T/lkvd-$name.log")" >&2
      return 1
    fi
    sleep 0.1
    i=$((i + 1))
  done
  [ -S "$sock" ] || die "latticekvd ($name) made no socket in 10 s"
  LKV_ADDR=unix:$sock
}

stop_daemon() {
  [ -n "$DAEMON" ] || return 0
  kill -TERM "$DAEMON"
  drc=0
  wait "$DAEMON" || drc=$?
  DAEMON=""
  [ $drc -eq 0 ] || die "latticekvd exited $drc (log: $(tail -n 3 "$T/lkvd-$1.log"))"
}

n=0
np() { # PART = the next part file; parts are merged in order
  n=$((n + 1))
  PART=$T/part-$(printf %03d $n).json
}
skipped() { # SYSTEM TAGS REASON: a row saying why a system did not run
  np
  printf '{"rows": [{"system": "%s", %s"skipped": "%s"}]}\n' "$1" "$2" "$3" >"$PART"
}
FAILED=0
# cell SYSTEM TAGS COMMAND...: one tiers_bench call into the next part. A
# failure becomes a skipped row with its error, and the sweep goes on.
cell() {
  what=$1
  tagjson=$2
  shift 2
  np
  if "$@" --json "$PART" 2>"$T/cell.err"; then
    cat "$T/cell.err" >&2
    return 0
  fi
  cat "$T/cell.err" >&2
  reason=$(tail -n 1 "$T/cell.err" | tr -d '"\\')
  printf '{"rows": [{"system": "%s", %s"skipped": "failed: %s"}]}\n' "$what" "$tagjson" \
    "$reason" >"$PART"
  FAILED=$((FAILED + 1))
}

echo "run.sh: $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg)"
LOAD_START=$(cut -d' ' -f1 /proc/loadavg)
$NETSH up
ip netns exec "$SRV" redis-server --bind "$NET.2" --port "$REDIS_PORT" --save '' --appendonly no \
  --protected-mode no --dir "$T" >"$T/redis.log" 2>&1 &
PIDS="$PIDS $!"
ip netns exec "$SRV" "$BENCH" --tcp-serve "$NET.2:$TCP_PORT" --max-seconds 1800 >"$T/tcp.log" 2>&1 &
PIDS="$PIDS $!"
i=0
until in_cli redis-cli -h "$NET.2" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; do
  i=$((i + 1))
  [ $i -lt 100 ] || die "redis-server in $SRV did not answer in 10 s"
  sleep 0.1
done

CELL="--tokens $TOKENS --clients $CLIENTS --max-seconds $MAX_S"
# Network cells overwrite keys an untimed pass wrote (--warm): a cache in
# steady state, and Redis' page faults on fresh memory out of the figure.
NETCELL="$CELL --warm"

# --- the link: raw Redis against latticekvd's Redis tier, per rate ---------
REDIS_FLAGS=${LKVB_REDIS_FLAGS:---redis redis://$REDIS_ADDR --tier-policy write-through}
# shellcheck disable=SC2086
if ! start_daemon redis $REDIS_FLAGS; then
  skipped lkv-redis '' "latticekvd would not start with: $REDIS_FLAGS"
fi
for rate in $RATES; do
  $NETSH shape "$rate"
  tag="\"link\": \"$rate\", "
  cell tcp "$tag" in_cli "$BENCH" --tcp-test "$NET.2:$TCP_PORT" --seconds 3 --streams 4 \
    --tag "link=$rate"
  # shellcheck disable=SC2086
  cell redis-raw "$tag" in_cli "$BENCH" --system redis-raw --redis "$REDIS_ADDR" $NETCELL \
    --mib "$MIB" --tag "link=$rate"
  if [ -n "$DAEMON" ]; then
    # shellcheck disable=SC2086
    cell lkv-redis "$tag" in_cli "$BENCH" --system lkv --label lkv-redis --lkv "$LKV_ADDR" \
      --redis "$REDIS_ADDR" $NETCELL --mib "$MIB" --tag "link=$rate"
  fi
done
stop_daemon redis

# --- the codec's ceiling: no tier, no link ----------------------------------
start_daemon host --host-mem-bytes 4GiB || die "latticekvd did not start"
# shellcheck disable=SC2086
cell lkv-host '' in_cli "$BENCH" --system lkv --label lkv-host --lkv "$LKV_ADDR" $CELL \
  --mib "$MIB"
stop_daemon host

# --- the SSD directory: raw files against the SSD tier, per fsync policy -----
mkdir "$T/ssd"
for pol in $FSYNCS; do
  tag="\"fsync\": \"$pol\", "
  # shellcheck disable=SC2086
  cell files-raw "$tag" "$BENCH" --system files-raw --dir "$T/ssd" --fsync "$pol" $CELL \
    --mib "$SSD_MIB" --cold --tag "fsync=$pol"
  SSD_FLAGS=${LKVB_SSD_FLAGS:---ssd-dir $T/ssd --ssd-bytes 16GiB --ssd-fsync $pol}
  # shellcheck disable=SC2086
  if start_daemon "ssd-$pol" $SSD_FLAGS; then
    # shellcheck disable=SC2086
    cell lkv-ssd "$tag" in_cli "$BENCH" --system lkv --label lkv-ssd --lkv "$LKV_ADDR" \
      --dir "$T/ssd" $CELL --mib "$SSD_MIB" --cold --tag "fsync=$pol"
    stop_daemon "ssd-$pol"
  else
    skipped lkv-ssd "$tag" "latticekvd would not start with: $SSD_FLAGS"
  fi
done

LOAD_END=$(cut -d' ' -f1 /proc/loadavg)
/usr/bin/python3 "$HERE/report.py" --out "$OUT" --load-start "$LOAD_START" --load-end "$LOAD_END" \
  --rates "$RATES" --tokens "$TOKENS" --clients "$CLIENTS" --mib "$MIB" --ssd-mib "$SSD_MIB" \
  --host-mem "$HOST_MEM" --redis-flags "$REDIS_FLAGS" \
  --daemon "$LKVD ($("$LKVD" --version 2>&1 | head -n 1))" \
  --commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  --ssd-flags "${LKVB_SSD_FLAGS:---ssd-dir DIR --ssd-bytes 16GiB --ssd-fsync POLICY}" \
  "$T"/part-*.json
echo "run.sh: done; results in $OUT"
[ "$FAILED" -eq 0 ] || die "$FAILED cell(s) failed; their rows say why"
