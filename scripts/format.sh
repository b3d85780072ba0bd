#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# clang-format over the project's C sources: --check fails on any difference
# (CI), no argument rewrites the files in place.
set -eu
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h' '*.cu' '*.cuh')
if [ "${1:-}" = "--check" ]; then
  clang-format --dry-run --Werror $files
  echo "format check: $(echo "$files" | wc -w) files clean"
else
  clang-format -i $files
fi
