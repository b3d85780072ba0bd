# SPDX-License-Identifier: Apache-2.0
# tests/gpu/p2_checks.sh - sourced by the scripts that check profile 2's
# kernels on a GPU machine (tests/gpu/run_v4_check.sh, bench/gpu/ab_p2.sh),
# which define note() and status. p2_checks TEST OUT MEMCHECK runs TEST
# (a gpu_p2_test) with --quick, then, unless MEMCHECK is 0 or
# compute-sanitizer is missing, with --tiny under memcheck; logs go to OUT.
# Sets test_line and trc (the test's last line and exit status), mc (the
# memcheck verdict), and status=1 when either failed.
p2_checks() {
    local test=$1 out=$2 memcheck=$3 mrc
    note "gpu_p2_test --quick"
    timeout 240 "$test" --quick >"$out/gpu_p2_test.log" 2>&1
    trc=$?
    grep -E "FAIL" "$out/gpu_p2_test.log" | head -20
    test_line=$(tail -1 "$out/gpu_p2_test.log")
    [ "$trc" -eq 0 ] || status=1
    mc="skipped"
    if [ "$memcheck" != 0 ] && command -v compute-sanitizer >/dev/null 2>&1; then
        note "compute-sanitizer memcheck: gpu_p2_test --tiny"
        timeout 150 compute-sanitizer --tool memcheck --error-exitcode 99 "$test" --tiny \
            >"$out/memcheck.log" 2>&1
        mrc=$?
        mc="exit $mrc: $(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -1)"
        [ "$mrc" -eq 0 ] || status=1
    fi
}
