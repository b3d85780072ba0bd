#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# clang-tidy (checks in .clang-tidy) over every C source a configured build
# compiles, through its compile_commands.json. CUDA sources and the generated
# protobuf-c code are left out; so are the layer probes (tests/layers), which
# exist to fail. Usage: sh scripts/tidy.sh [BUILD_DIR] (default build).
# Exit status: 0 clean, 1 on any finding. About 15 s on 2 cores.
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
if [ ! -f "$build/compile_commands.json" ]; then
  echo "tidy: no $build/compile_commands.json; configure that build first" >&2
  exit 2
fi
src=$(pwd)
run-clang-tidy -quiet -p "$build" -j"$(nproc)" \
  "^$src/(codec|cuda|server|clients|tests|bench)/(?!layers/).*\\.c\$"
