#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Every test: install, build with warnings as errors, run the whole ctest
# suite (codec, fuzz corpus, server, end-to-end against the real daemon, CLI;
# GPU tests skip cleanly without a GPU), check formatting and license lines, then rebuild with
# AddressSanitizer + UBSan and run the suite again.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
jobs=$(nproc)

python3 scripts/check_layers.py # no room includes a higher one (also a ctest)
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLKV_WERROR=ON
cmake --build build-test -j"$jobs"
(cd build-test && ctest --output-on-failure -j"$jobs")

sh scripts/format.sh --check
sh scripts/spdx.sh --check # every source file names its license (LICENSE)

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLKV_WERROR=ON -DLKV_SANITIZE="address;undefined"
cmake --build build-asan -j"$jobs"
(cd build-asan && ctest --output-on-failure -j"$jobs")
echo "all tests passed"
