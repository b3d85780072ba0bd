#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/gpu/ab_p2_summary.py - one JSON from an ab_p2.sh output folder.

Usage: ab_p2_summary.py OUT_DIR BASE_LABEL NEW_LABEL > result.json

Collects every gpu_p2_bench JSON of the interleaved rounds
(bench_<build>_f<format>_<data>_r<k>.json), the median over rounds of each
build's rows, the test and memcheck lines (the base's too when ab_p2.sh
checked it, in base/), and the ncu metrics of each kernel when ab_p2.sh ran
them (ncu_<build>_<kernel>.txt).
"""
import glob
import json
import os
import re
import statistics
import sys


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    out, base_label, new_label = sys.argv[1:]
    if not os.path.isfile(os.path.join(out, "card.txt")):
        sys.exit(f"ab_p2_summary.py: OUT_DIR={out} holds no card.txt (not an ab_p2.sh output folder)")
    labels = {"base": base_label, "new": new_label}
    runs = {}
    for path in sorted(glob.glob(os.path.join(out, "bench_*_f*_*_r*.json"))):
        m = re.match(r"bench_(base|new)_f(\d)_(\w+?)_r(\d+)\.json$", os.path.basename(path))
        if not m:
            continue
        with open(path) as f:
            runs.setdefault((m.group(1), int(m.group(2)), m.group(3)), []).append(json.load(f))
    cases = []
    for (build, fmt, data), rs in sorted(runs.items()):
        ops = {}
        for r in rs:
            for row in r["rows"]:
                ops.setdefault(row["op"], []).append(row)
        cases.append({
            "build": build,
            "commit": labels[build],
            "format": fmt,
            "data": data,
            "runs": len(rs),
            "card": rs[0]["card"],
            "bits_per_vector": rs[0]["p2_bits_per_vector"],
            "copy_ms_median": statistics.median(r["copy_ms"] for r in rs),
            "check_first_chunks_equal_cpu": all(r["check_first_chunks_equal_cpu"] for r in rs),
            "median": [{"op": op,
                        "ms": statistics.median(x["ms"] for x in xs),
                        "frac_copy": statistics.median(x["frac_copy"] for x in xs),
                        "ms_each_run": [x["ms"] for x in xs]}
                       for op, xs in ops.items()],
        })
    ncu = {}
    for path in sorted(glob.glob(os.path.join(out, "ncu_*_*.txt"))):
        build, kernel = os.path.basename(path)[4:-4].split("_", 1)
        with open(path) as f:
            ncu.setdefault(labels[build], {})[kernel] = dict(
                line.split(None, 1) for line in f.read().strip().splitlines() if " " in line)

    def last_line(name, pattern):
        p = os.path.join(out, name)
        if not os.path.exists(p):
            return None
        with open(p, errors="replace") as f:
            hits = [line.strip() for line in f if re.search(pattern, line)]
        return hits[-1] if hits else None

    json.dump({
        "bench": "bench/gpu/ab_p2.sh",
        "card": open(os.path.join(out, "card.txt")).read().strip(),
        "base": base_label,
        "new": new_label,
        "new_gpu_p2_test_quick": last_line("gpu_p2_test.log", r"passed"),
        "new_memcheck_tiny": last_line("memcheck.log", r"ERROR SUMMARY"),
        "base_gpu_p2_test_quick": last_line("base/gpu_p2_test.log", r"passed"),
        "base_memcheck_tiny": last_line("base/memcheck.log", r"ERROR SUMMARY"),
        "cases": cases,
        "ncu_clock_control_none": ncu,
    }, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
