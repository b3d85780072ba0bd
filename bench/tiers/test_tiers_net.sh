#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# test_tiers_net.sh TIERS_BENCH - ctest bench_tiers_net: the shaped link of
# bench/tiers is built, carries what tbf allows, and is removed completely:
# by `down`, over leftovers of a crashed run, and when its holder gets
# SIGTERM or SIGINT. Uses its own prefix and subnet, so a benchmark running
# at the same time is not touched. Exit 77 (skipped) without root or tc.
set -u
BENCH=${1:?usage: test_tiers_net.sh TIERS_BENCH}
NETSH="sh $(cd "$(dirname "$0")" && pwd)/tiers_net.sh"
export LKVB_PREFIX="lkvbt$(($$ % 100000))"
export LKVB_SUBNET="10.213.$((200 + $$ % 50))"
P=$LKVB_PREFIX
S=$LKVB_SUBNET
PORT=$((22900 + $$ % 90))

if [ "$(id -u)" -ne 0 ] || ! command -v tc >/dev/null || ! command -v ip >/dev/null; then
  echo "SKIP: needs root, ip and tc (iproute2)"
  exit 77
fi

fails=0
ok() { echo "ok: $*"; }
bad() {
  echo "FAIL: $*"
  fails=$((fails + 1))
}
SERVER=""
finish() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  $NETSH down >/dev/null 2>&1
}
trap finish EXIT

# 1. Up, shaped at 200 Mbit/s: the TCP test both ways must see 80..105 % of it.
$NETSH up || bad "up failed"
$NETSH shape 200mbit >/dev/null || bad "shape failed"
ip netns exec "$P-srv" "$BENCH" --tcp-serve "$S.2:$PORT" --max-seconds 60 >/dev/null 2>&1 &
SERVER=$!
sleep 0.3
out=$(ip netns exec "$P-cli" "$BENCH" --tcp-test "$S.2:$PORT" --seconds 1 --streams 2 2>&1)
echo "$out"
up=$(echo "$out" | sed -n 's/.* up \([0-9.]*\) Gbit.*/\1/p')
down=$(echo "$out" | sed -n 's/.* down \([0-9.]*\) Gbit.*/\1/p')
if awk -v u="${up:-0}" -v d="${down:-0}" 'BEGIN { exit !(u >= 0.16 && u <= 0.21 && d >= 0.16 && d <= 0.21) }'; then
  ok "200mbit shaping measured up $up, down $down Gbit/s"
else
  bad "200mbit shaping measured up '$up', down '$down' Gbit/s (want 0.16..0.21)"
fi
# The addresses exist only inside the namespaces.
if ip -o addr show | grep -q "$S\."; then bad "$S.x visible in the root namespace"; else ok "no $S.x in the root namespace"; fi
kill "$SERVER" && wait "$SERVER" 2>/dev/null
SERVER=""

# 2. Bad input: named error, exit 2, nothing changed.
$NETSH shape 3gbps >/dev/null 2>&1
[ $? -eq 2 ] && ok "shape 3gbps exits 2" || bad "shape 3gbps did not exit 2"
LKVB_PREFIX=other $NETSH up >/dev/null 2>&1
[ $? -eq 2 ] && ok "prefix 'other' exits 2" || bad "prefix 'other' did not exit 2"
tc -n "$P-cli" qdisc show dev "$P-v0" | grep -q "rate 200Mbit" && ok "shaping unchanged" ||
  bad "shaping changed by a refused command"

# 3. Down removes everything; check agrees.
$NETSH down && ok "down" || bad "down left something"
$NETSH check || bad "check after down"

# 4. Leftovers of a crashed run (one namespace and a stray veth in the root
#    namespace) do not stop the next up, and down removes them.
ip netns add "$P-cli"
ip link add "$P-v0" type veth peer name "$P-v1"
$NETSH up >/dev/null && ok "up over leftovers" || bad "up over leftovers failed"
$NETSH down >/dev/null && ok "down after leftovers" || bad "down after leftovers"

# 5. A holder ended by SIGTERM or SIGINT removes what it made.
for sig in TERM INT; do
  env --default-signal=INT $NETSH hold 30 >/dev/null &
  h=$!
  i=0
  until ip netns list | grep -q "^$P-srv" || [ $i -ge 50 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  sleep 0.2
  kill -s "$sig" "$h"
  wait "$h"
  rc=$?
  if $NETSH check 2>/dev/null; then ok "SIG$sig: holder exited $rc, nothing left"; else bad "SIG$sig left the link behind"; fi
done

if [ $fails -ne 0 ]; then
  echo "$fails check(s) failed"
  exit 1
fi
echo "all checks passed"
