#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Merges the parts of a bench/tiers run (one JSON file per tiers_bench call)
into the results file, compares each latticekvd row with its raw baseline,
checks issue 11's targets and prints a markdown table.

    report.py --out FILE [--load-start X --load-end Y --rates "..." ...] PART.json...

Comparisons (bf16-equivalent GB/s, put+get = both volumes over both times):
  lkv-redis / redis-raw at the same link rate, block size and client count;
  lkv-ssd / files-raw at the same fsync policy, block size and client count.
The codec's ceiling is lkv-host (no tier, no link); divided by the
container's bf16-per-byte ratio and times 8 it is the link rate in Gbit/s
beyond which the daemon on this machine cannot fill the link any more.
"""
import argparse
import json
import os
import platform
import sys

TARGET_LINK = 2.0  # x raw over the 1 Gbit/s link
TARGET_SSD = 1.5  # x raw files, fsync batch
TARGET_HELD = 2.3  # bf16 bytes per tier byte


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def key(r):
    return (r.get("tokens"), r.get("clients"))


def ratio(a, b):
    return a / b if a and b else None


def fmt(x, spec=".3f"):
    return "n/a" if x is None else format(x, spec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--load-start", type=float)
    ap.add_argument("--load-end", type=float)
    for k in ("rates", "tokens", "clients", "mib", "ssd-mib", "host-mem", "redis-flags", "ssd-flags",
              "daemon", "commit"):
        ap.add_argument("--" + k, default="")
    ap.add_argument("parts", nargs="+")
    a = ap.parse_args()

    rows = []
    for p in sorted(a.parts):
        with open(p) as f:
            rows.extend(json.load(f)["rows"])

    skipped = [r for r in rows if "skipped" in r]
    rows = [r for r in rows if "skipped" not in r]
    tcp = {r["link"]: r for r in rows if r["system"] == "tcp"}
    by = {}
    for r in rows:
        if r["system"] == "tcp":
            continue
        group = r.get("link") or r.get("fsync") or ""
        by[(r["system"], group) + key(r)] = r

    comparisons = []
    order = a.rates.split() + ["never", "batch", "always"]

    def cell_order(kv):
        sysname, group, tok, cl = kv[0]
        return (sysname, order.index(group) if group in order else 99, tok or 0, cl or 0)

    for (sysname, group, tok, cl), r in sorted(by.items(), key=cell_order):
        base = {"lkv-redis": "redis-raw", "lkv-ssd": "files-raw"}.get(sysname)
        if not base or (base, group, tok, cl) not in by:
            continue
        b = by[(base, group, tok, cl)]
        comparisons.append({
            "tier": "redis" if sysname == "lkv-redis" else "ssd",
            "link" if sysname == "lkv-redis" else "fsync": group,
            "tokens": tok, "clients": cl,
            "raw_putget_gbps": b["putget_gbps"], "lkv_putget_gbps": r["putget_gbps"],
            "speedup_putget": ratio(r["putget_gbps"], b["putget_gbps"]),
            "speedup_put": ratio(r["put_gbps"], b["put_gbps"]),
            "speedup_get": ratio(r["get_gbps"], b["get_gbps"]),
            "raw_bf16_per_tier_byte": b.get("bf16_per_tier_byte"),
            "lkv_bf16_per_tier_byte": r.get("bf16_per_tier_byte"),
        })

    def worst(sel, field):
        v = [c[field] for c in comparisons if sel(c) and c.get(field) is not None]
        return min(v) if v else None

    link1 = worst(lambda c: c["tier"] == "redis" and c["link"] == "1gbit", "speedup_putget")
    ssd_b = worst(lambda c: c["tier"] == "ssd" and c["fsync"] == "batch", "speedup_putget")
    held = [r.get("bf16_per_tier_byte") for r in rows
            if r["system"] in ("lkv-redis", "lkv-ssd") and r.get("bf16_per_tier_byte")]
    ceiling = [r for r in rows if r["system"] == "lkv-host"]
    best = max((r["putget_gbps"] for r in ceiling), default=None)
    coded_ratio = max((r.get("bf16_per_coded_byte", 0) for r in ceiling), default=0)
    # The link rate the codec's best put+get fills with coded bytes.
    keeps_up_gbit = best / coded_ratio * 8 if best and coded_ratio else None

    # Per link rate: the best cell of each side, and where latticekvd stops
    # being ahead of raw bytes (the codec, not the link, is then the limit).
    per_rate = []
    for rate in a.rates.split():
        raw = [r["putget_gbps"] for r in rows if r["system"] == "redis-raw" and r.get("link") == rate]
        lkv = [r["putget_gbps"] for r in rows if r["system"] == "lkv-redis" and r.get("link") == rate]
        cmp_rate = [c["speedup_putget"] for c in comparisons
                    if c["tier"] == "redis" and c["link"] == rate and c["speedup_putget"]]
        per_rate.append({"link": rate, "tcp_gbit": tcp.get(rate, {}).get("up_gbit"),
                         "raw_best_putget_gbps": max(raw, default=None),
                         "lkv_best_putget_gbps": max(lkv, default=None),
                         "speedup_min": min(cmp_rate, default=None),
                         "speedup_max": max(cmp_rate, default=None)})
    crossover = next((p["link"] for p in per_rate
                      if p["speedup_max"] is not None and p["speedup_max"] < 1.0), None)

    def target(name, value, goal):
        return {"what": name, "goal": goal, "measured": value,
                "met": None if value is None else value >= goal}

    targets = [
        target("lkv-redis / redis-raw put+get over 1 Gbit/s (worst cell)", link1, TARGET_LINK),
        target("lkv-ssd / files-raw put+get, fsync batch (worst cell)", ssd_b, TARGET_SSD),
        target("bf16 bytes held per tier byte (worst lkv row)", min(held) if held else None,
               TARGET_HELD),
    ]
    out = {
        "benchmark": "bench/tiers (run.sh, tiers_bench)",
        "machine": "dev-vm-2core",
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "commit": a.commit,
        "load_average": {"start": a.load_start, "end": a.load_end},
        "link": {
            "shaping": "two network namespaces joined by a veth pair; tc tbf on both ends at the "
                       "rate (burst = max(256 KiB, 2 ms at the rate), latency 20 ms); redis-server "
                       "in one namespace, clients and latticekvd in the other",
            "rates": a.rates.split(),
            "measured_tcp_gbit": {k: {"up": v["up_gbit"], "down": v["down_gbit"],
                                      "streams": v["streams"], "seconds": v["seconds"]}
                                  for k, v in tcp.items()},
        },
        "cells": {"tokens": a.tokens, "clients": a.clients, "bf16_mib_per_network_cell": a.mib,
                  "bf16_mib_per_ssd_cell": a.ssd_mib,
                  "block": "[2][tokens][8 heads][128] bf16; KV-like data (normal x per-channel "
                           "log-normal scales, key outlier channels)",
                  "codec": "E8 Q=38 (latticekvd Put encodes, Get decodes to bf16)"},
        "daemon": {"binary": a.daemon, "host_mem_bytes": a.host_mem, "redis_flags": a.redis_flags,
                   "ssd_flags": a.ssd_flags},
        "units": "GB/s = 1e9 bytes of bf16 blocks per wall second; put+get = 2 x volume / "
                 "(put time + get time); tier bytes = Redis used_memory growth or the files' "
                 "sizes",
        "targets": targets,
        "codec_ceiling": {"lkv_host_best_putget_gbps": best,
                          "link_gbit_it_fills_with_coded_bytes": keeps_up_gbit,
                          "first_rate_where_raw_beats_every_lkv_cell": crossover},
        "per_link_rate": per_rate,
        "comparisons": comparisons,
        "skipped": skipped,
        "rows": rows,
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")

    print("\n| tier | link / fsync | tokens | clients | raw GB/s | latticekvd GB/s | x raw | "
          "bf16 B per tier B (raw / lkv) |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for c in comparisons:
        print("| {} | {} | {} | {} | {} | {} | {} | {} / {} |".format(
            c["tier"], c.get("link") or c.get("fsync"), c["tokens"], c["clients"],
            fmt(c["raw_putget_gbps"]), fmt(c["lkv_putget_gbps"]), fmt(c["speedup_putget"], ".2f"),
            fmt(c["raw_bf16_per_tier_byte"], ".2f"), fmt(c["lkv_bf16_per_tier_byte"], ".2f")))
    print("\nraw TCP (Gbit/s up/down): " + ", ".join(
        "{} {:.3f}/{:.3f}".format(k, v["up_gbit"], v["down_gbit"]) for k, v in tcp.items()))
    print("codec ceiling (lkv-host best put+get): {} GB/s bf16 = {} Gbit/s of coded bytes".format(
        fmt(best), fmt(keeps_up_gbit, ".2f")))
    for p in per_rate:
        print("link {}: tcp {} Gbit/s, best put+get raw {} / latticekvd {} GB/s, x raw {}..{}".format(
            p["link"], fmt(p["tcp_gbit"]), fmt(p["raw_best_putget_gbps"]),
            fmt(p["lkv_best_putget_gbps"]), fmt(p["speedup_min"], ".2f"),
            fmt(p["speedup_max"], ".2f")))
    print("first link rate where raw Redis beats every latticekvd cell: {}".format(
        crossover or "none measured"))
    for t in targets:
        print("target {}: {} (goal >= {}) {}".format(
            t["what"], fmt(t["measured"], ".2f"), t["goal"],
            {True: "MET", False: "NOT MET", None: "not measured"}[t["met"]]))
    for s in skipped:
        print("skipped {}: {}".format(s["system"], s["skipped"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
