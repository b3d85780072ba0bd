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

# ThreadSanitizer: the cross-thread paths of the server (loop, scheduler,
# codec workers, inbox, budget: tests/server/threads_check.c; Criterion's
# sandbox cannot start under TSan) and the daemon end to end under the
# service suite. libgrpc is not instrumented: rpc.c annotates its hand-offs
# through gRPC, and tests/tsan.supp silences reports inside gRPC and Abseil.
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLKV_WERROR=ON -DLKV_SANITIZE=thread
cmake --build build-tsan -j"$jobs" --target threads_check latticekvd
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(pwd)/tests/tsan.supp"
(cd build-tsan && ctest --output-on-failure -R '^server_threads$')
LKV_DAEMON=$(pwd)/build-tsan/server/latticekvd LKV_CLI=$(pwd)/build-test/clients/cli/latticekv \
  PYTHONPATH=$(pwd)/clients/python:$(pwd)/build-test/clients/python \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration/test_service.py
unset TSAN_OPTIONS

# Fuzzing: each libFuzzer target 20 s from its committed corpus.
sh scripts/fuzz.sh 20
echo "all tests passed"
