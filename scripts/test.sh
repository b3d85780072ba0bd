#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Every test: install, build with warnings as errors, run the whole ctest
# suite (codec, fuzz corpus, server, end-to-end against the real daemon, CLI;
# GPU tests skip cleanly without a GPU), check formatting and license lines, then rebuild with
# AddressSanitizer + UBSan and run the suite again, rebuild the server's unit
# tests with ThreadSanitizer and run them, and run every libFuzzer target for
# a bounded time (scripts/fuzz.sh).
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

# ThreadSanitizer over the server's unit tests: the loop thread, the codec
# workers and the inbox hand-offs between them, the tiers' threads. (Not the
# daemon end to end: libgrpc is not instrumented, so TSan cannot see the
# synchronisation inside its completion queue.)
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLKV_WERROR=ON -DLKV_SANITIZE=thread
cmake --build build-tsan -j"$jobs" --target test_server test_tier test_tier_redis
(cd build-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --output-on-failure -j"$jobs" -R '^server_')

# Fuzzing: each libFuzzer target 20 s from its committed corpus.
sh scripts/fuzz.sh 20
echo "all tests passed"
