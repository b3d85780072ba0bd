#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# dump_check.sh CODEC_QUALITY - ctest codec_quality_dump: --dump-data writes
# every dataset with the expected size and the same bytes on a second run,
# writes a manifest naming them, and refuses a folder that does not exist
# (non-zero exit, a message naming the flag) without writing anything.
set -eu
cq=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/a" "$tmp/b"
"$cq" --vectors 64 --dump-data "$tmp/a" 2>/dev/null
"$cq" --vectors 64 --dump-data "$tmp/b" 2>/dev/null
n=0
for f in "$tmp"/a/*.f32; do
    name=$(basename "$f")
    size=$(wc -c < "$f")
    [ "$size" -eq $((64 * 128 * 4)) ] || { echo "FAIL $name: $size bytes, want 32768"; exit 1; }
    cmp -s "$f" "$tmp/b/$name" || { echo "FAIL $name differs between two runs"; exit 1; }
    grep -q "\"$name\"" "$tmp/a/manifest.json" || { echo "FAIL manifest lacks $name"; exit 1; }
    n=$((n + 1))
done
[ "$n" -ge 4 ] || { echo "FAIL only $n datasets written"; exit 1; }
if "$cq" --vectors 64 --dump-data "$tmp/missing/dir" 2>"$tmp/err"; then
    echo "FAIL a missing folder was accepted"
    exit 1
fi
grep -q -- "--dump-data" "$tmp/err" || { echo "FAIL message does not name the flag"; exit 1; }
[ ! -e "$tmp/missing" ] || { echo "FAIL something was written for a missing folder"; exit 1; }
echo "dump_check: $n datasets, sizes, repeatability, manifest and a bad folder checked"
