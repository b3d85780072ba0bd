#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# tiers_net.sh - the shaped link of bench/tiers: two network namespaces
# joined by a veth pair, each end shaped with tc tbf (netem is not in this
# kernel), addresses only inside the two namespaces. Needs root and iproute2.
#
#   tiers_net.sh up           create PREFIX-cli (.1) and PREFIX-srv (.2), link up,
#                             unshaped; anything left by an earlier run is removed first
#   tiers_net.sh shape RATE   tbf at RATE (tc syntax: 1gbit, 2500mbit, 10gbit) on
#                             both ends, so Puts and Gets cross the same limit
#   tiers_net.sh down         remove both namespaces (and the veth pair with them)
#   tiers_net.sh check        exit 0 when nothing of PREFIX exists, else list it, exit 1
#   tiers_net.sh hold SECONDS up, then wait (bounded); removes it all on exit or
#                             on INT/TERM (what the test of the cleanup uses)
#
# Environment: LKVB_PREFIX (default lkvb; must start with lkvb, at most 10 of
# [a-z0-9]), LKVB_SUBNET (default 10.213.0: the /30 is SUBNET.0).
# The client namespace is PREFIX-cli with SUBNET.1, the server's PREFIX-srv
# with SUBNET.2. Every command is bounded; a failed `up` removes what it made.
set -eu

P=${LKVB_PREFIX:-lkvb}
NET=${LKVB_SUBNET:-10.213.0}
case "$P" in
lkvb* | lkvpush*) ;;
*)
  echo "tiers_net.sh: LKVB_PREFIX=$P must start with lkvb (or lkvpush: peer_bench.py)" >&2
  exit 2
  ;;
esac
if [ "${#P}" -gt 10 ] || printf %s "$P" | grep -q '[^a-z0-9]'; then
  echo "tiers_net.sh: LKVB_PREFIX=$P must be at most 10 of [a-z0-9] (interface names)" >&2
  exit 2
fi
if ! printf %s "$NET" | grep -Eq '^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$'; then
  echo "tiers_net.sh: LKVB_SUBNET=$NET is not three dotted numbers (e.g. 10.213.0)" >&2
  exit 2
fi
CLI=$P-cli
SRV=$P-srv
V0=$P-v0 # client end
V1=$P-v1 # server end

have_ns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

down() {
  for ns in "$CLI" "$SRV"; do
    if have_ns "$ns"; then
      # Processes still in the namespace keep it alive; the caller ends
      # its own. The name goes anyway, so a new `up` starts clean.
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
  # A veth left in the root namespace by an interrupted `up`.
  for v in "$V0" "$V1"; do
    ip link del "$v" 2>/dev/null || true
  done
}

check() {
  left=""
  for ns in "$CLI" "$SRV"; do
    have_ns "$ns" && left="$left netns:$ns"
  done
  for v in "$V0" "$V1"; do
    ip link show "$v" >/dev/null 2>&1 && left="$left link:$v"
  done
  if [ -n "$left" ]; then
    echo "tiers_net.sh: left behind:$left" >&2
    return 1
  fi
  return 0
}

up() {
  down
  if ! {
    ip netns add "$CLI" &&
      ip netns add "$SRV" &&
      ip link add "$V0" type veth peer name "$V1" &&
      ip link set "$V0" netns "$CLI" &&
      ip link set "$V1" netns "$SRV" &&
      ip -n "$CLI" addr add "$NET.1/30" dev "$V0" &&
      ip -n "$SRV" addr add "$NET.2/30" dev "$V1" &&
      ip -n "$CLI" link set lo up &&
      ip -n "$SRV" link set lo up &&
      ip -n "$CLI" link set "$V0" up &&
      ip -n "$SRV" link set "$V1" up
  }; then
    echo "tiers_net.sh: setting up $CLI/$SRV failed; removing what was made" >&2
    down
    return 1
  fi
  # The link is up when the client end has a carrier (bounded wait).
  i=0
  while [ $i -lt 50 ]; do
    if ip -n "$CLI" link show "$V0" | grep -q 'state UP'; then
      return 0
    fi
    sleep 0.1
    i=$((i + 1))
  done
  echo "tiers_net.sh: $V0 did not come up" >&2
  down
  return 1
}

# Rate in bit/s from tc syntax (kbit, mbit, gbit; decimals allowed).
rate_bits() {
  printf %s "$1" | awk '
    /^[0-9]+(\.[0-9]+)?(kbit|mbit|gbit)$/ {
      n = $0; sub(/[a-z]+$/, "", n); u = substr($0, length(n) + 1)
      m = (u == "kbit") ? 1e3 : (u == "mbit") ? 1e6 : 1e9
      printf "%.0f\n", n * m; exit 0 }
    { exit 1 }'
}

shape() {
  bits=$(rate_bits "$1") || {
    echo "tiers_net.sh: rate '$1' is not N(kbit|mbit|gbit), e.g. 1gbit or 2.5gbit" >&2
    return 2
  }
  # Bucket: 2 ms at the rate, at least 256 KiB (a few GSO segments), so the
  # timer granularity never caps the rate; the queue may hold 20 ms.
  burst=$(awk -v b="$bits" 'BEGIN { x = b / 8 * 0.002; if (x < 262144) x = 262144; printf "%.0f", x }')
  tc -n "$CLI" qdisc replace dev "$V0" root tbf rate "$1" burst "$burst" latency 20ms
  tc -n "$SRV" qdisc replace dev "$V1" root tbf rate "$1" burst "$burst" latency 20ms
  echo "tiers_net.sh: $V0 <-> $V1 shaped: tbf rate $1 ($bits bit/s) burst $burst B latency 20ms"
}

cmd=${1:-}
case "$cmd" in
up) up ;;
down)
  down
  check
  ;;
check) check ;;
shape)
  [ $# -eq 2 ] || {
    echo "usage: tiers_net.sh shape RATE" >&2
    exit 2
  }
  shape "$2"
  ;;
hold)
  secs=${2:-}
  case "$secs" in
  '' | *[!0-9]*)
    echo "usage: tiers_net.sh hold SECONDS" >&2
    exit 2
    ;;
  esac
  trap 'down' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  up
  echo "tiers_net.sh: holding $CLI/$SRV for at most $secs s"
  # A short sleep per step, so a signal is handled within a second.
  i=0
  while [ $i -lt "$secs" ]; do
    sleep 1
    i=$((i + 1))
  done
  ;;
*)
  sed -n '3,20p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
