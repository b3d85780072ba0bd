#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Puts the SPDX license identifier of the project (Apache-2.0, see LICENSE) on
# the first comment line of every source file: C and its headers, CUDA,
# CMake, Python, shell and proto. A shebang (and a Python coding line) stays
# first; the identifier goes right below it. Generated files, test data,
# golden containers and benchmark results are left alone.
#
#   sh scripts/spdx.sh           add the line where it is missing (idempotent)
#   sh scripts/spdx.sh --check   list the files without it; exit 1 if any
#
# Files come from git (tracked, plus untracked ones git does not ignore), so
# build trees never count; outside a git checkout a find with the same
# exclusions stands in.
set -euf # -f: file names are never globbed
cd "$(dirname "$0")/.."

ID='SPDX-License-Identifier: Apache-2.0'
mode=add
case "${1:-}" in
'') ;;
--check) mode=check ;;
-h | --help)
  sed -n '3,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
  ;;
*)
  echo "spdx.sh: unknown argument '$1' (use --check or nothing)" >&2
  exit 2
  ;;
esac

list_files() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files --cached --others --exclude-standard
  else
    find . \( -name .git -o -name 'build*' -o -name _gen -o -name __pycache__ \
      -o -name shared \) -prune -o -type f -print | sed 's|^\./||'
  fi
}

# The comment style a file takes: c (/* */), hash (#), slash (//), or
# nothing when the file is not a source file or must not be edited.
style_of() {
  base=${1##*/}
  case "$1" in
  tests/golden/* | tests/fuzz/corpus/* | tests/gpu/data/* | bench/results/*) return 0 ;;
  */_gen/* | *.pb-c.c | *.pb-c.h | *_pb2.py | *_pb2_grpc.py) return 0 ;;
  esac
  case "$base" in
  *.c | *.h | *.cu | *.cuh) echo c ;;
  CMakeLists.txt | *.cmake | *.py | *.sh) echo hash ;;
  *.proto) echo slash ;;
  *.*) ;;
  *)
    # Files without an extension count when they are sh/bash/python scripts.
    if head -n 1 "$1" 2>/dev/null | grep -Eq '^#!.*(/|env )(ba|da)?sh( |$)|^#!.*python'; then
      echo hash
    fi
    ;;
  esac
}

header_of() {
  case "$1" in
  c) printf '/* %s */' "$ID" ;;
  hash) printf '# %s' "$ID" ;;
  slash) printf '// %s' "$ID" ;;
  esac
}

# Line number the identifier belongs on: 1, or below a shebang and a Python
# coding declaration (which Python only honours on line 1 or 2).
slot_of() {
  awk 'NR == 1 && /^#!/ { n = 1; next }
       NR <= 2 && /^[ \t\f]*#.*coding[:=]/ { n = NR; next }
       { exit }
       END { print n + 1 }' "$1"
}

total=0
done_count=0
had=0
missing=''
foreign=''
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT INT TERM

for f in $(list_files); do
  [ -f "$f" ] || continue # deleted in the work tree, still in the index
  style=$(style_of "$f")
  [ -n "$style" ] || continue
  total=$((total + 1))
  hdr=$(header_of "$style")
  slot=$(slot_of "$f")
  if [ "$(sed -n "${slot}p" "$f")" = "$hdr" ]; then
    had=$((had + 1))
    continue
  fi
  # Some other SPDX line near the top: never stack a second one on it.
  if head -n 5 "$f" | grep -q 'SPDX-License-Identifier'; then
    foreign="$foreign $f"
    continue
  fi
  if [ "$mode" = check ]; then
    missing="$missing $f"
    continue
  fi
  # head/tail keep every other byte as it was (a missing final newline too);
  # cat > f keeps the file's mode (executable scripts stay executable).
  {
    head -n $((slot - 1)) "$f"
    printf '%s\n' "$hdr"
    tail -n +"$slot" "$f"
  } >"$tmp"
  cat "$tmp" >"$f"
  done_count=$((done_count + 1))
done

status=0
for f in $foreign; do
  echo "spdx: $f: an SPDX line near the top, but line $(slot_of "$f") is not the expected one; left alone" >&2
  status=1
done
if [ "$mode" = check ]; then
  n=0
  for f in $missing; do
    echo "spdx: missing: $f" >&2
    n=$((n + 1))
  done
  if [ "$n" -ne 0 ] || [ "$status" -ne 0 ]; then
    echo "spdx check: $n of $total source files lack '$ID' (sh scripts/spdx.sh adds it)" >&2
    exit 1
  fi
  echo "spdx check: $total source files carry '$ID'"
  exit 0
fi
echo "spdx: added to $done_count files, $had already had it ($total source files)"
exit "$status"
