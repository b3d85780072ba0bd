#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""peer_bench.py - moving KV blocks from a prefill daemon to a decode daemon
over the shaped link of tiers_net.sh (issue 12, item 4, network part).

Two latticekvd processes: A on the loopback of lkvbpeer-cli, B in
lkvbpeer-srv (10.214.0.2), joined by the veth pair shaped with tbf at each rate. The
driver runs in A's namespace, so only what goes to B crosses the link:
  coded  latticekv.Client.copy_to: blocks read from A as containers, 16 a call
         (loopback), PutStream coded to B, which verifies and stores them as is;
  wire   the same containers, read from A beforehand, PutStream'd to B 16 a call:
         the link and the receiver alone, as a daemon-side push would load them;
  raw    the same blocks' bf16 bytes Put to B as tensors (B encodes them),
         16 per PutStream: the raw bytes cross the link once, over the same gRPC stack.
Rounds rotate the order of the three (interleaved); medians are reported.
Needs root (namespaces). The machine is shared: the load average is recorded.

usage: peer_bench.py DAEMON OUT.json [--rates 1gbit,2500mbit,10gbit] [--rounds 3]
Environment: PYTHONPATH reaching clients/python and BUILD/clients/python.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NET = os.path.join(HERE, "tiers_net.sh")
ENV = dict(os.environ, LKVB_PREFIX="lkvbpeer", LKVB_SUBNET="10.214.0")
NS_A, NS_B = "lkvbpeer-cli", "lkvbpeer-srv"
ADDR_A, ADDR_B = "127.0.0.1:23001", "10.214.0.2:23002"  # A: loopback of its namespace
# A Llama-3.1-8B-shaped block: 64 tokens x 8 KV heads x 128, K and V, bf16
# (256 KiB); BLOCKS of them are one transfer (32 MiB).
SHAPE = (2, 64, 8, 128)
BLOCKS = 128


def net(*args):
    subprocess.run(["sh", NET] + list(args), env=ENV, check=True)


def driver(out, rates, rounds):
    """Runs inside NS_A: fills A, then times coded and raw transfers to B."""
    import numpy as np
    import latticekv
    rng = np.random.default_rng(7)
    scale = np.exp(0.5 * rng.standard_normal(SHAPE[-1]))
    blocks = [latticekv.to_bf16_bits(rng.standard_normal(SHAPE) * scale + 0.25)
              for _ in range(BLOCKS)]
    keys = ["blk%04d" % i for i in range(BLOCKS)]
    a = latticekv.Client(ADDR_A, timeout=120)
    b = latticekv.Client(ADDR_B, timeout=120)
    a.wait_ready()
    b.wait_ready()
    coded_bytes = sum(a.put(k, x, dtype="bf16") for k, x in zip(keys, blocks))
    raw_bytes = sum(x.nbytes for x in blocks)
    held = a.get_many(keys, want_coded=True)
    res = {"rate": os.environ["PEER_RATE"], "coded_s": [], "raw_s": [], "wire_s": []}
    orders = (("coded", "raw", "wire"), ("raw", "wire", "coded"), ("wire", "coded", "raw"))
    for r in range(rounds):
        for mode in orders[r % 3]:
            ns = "" if mode == "coded" else mode  # copy_to stores under A's namespace
            for k in keys:
                b.delete(k, namespace=ns)
            t0 = time.perf_counter()
            if mode == "coded":
                got = a.copy_to(b, keys)
                bad = [g for g in got if g[1].name != "OK"]
                if bad:
                    raise SystemExit("coded copy failed: %r" % (bad[0],))
            elif mode == "wire":
                for i in range(0, BLOCKS, 16):
                    b.put_coded_many(list(zip(keys[i:i + 16], held[i:i + 16])), namespace=ns)
            else:
                for i in range(0, BLOCKS, 16):
                    b.put_many(list(zip(keys[i:i + 16], blocks[i:i + 16])), dtype="bf16",
                               namespace=ns)
            res[mode + "_s"].append(time.perf_counter() - t0)
    res["raw_bytes"], res["coded_bytes"] = raw_bytes, coded_bytes
    with open(out, "w") as f:
        json.dump(res, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("daemon")
    ap.add_argument("out")
    ap.add_argument("--rates", default="1gbit,2500mbit,10gbit")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--driver", help=argparse.SUPPRESS)
    o = ap.parse_args()
    if o.driver:
        return driver(o.driver, None, o.rounds)
    work = "/tmp/peer-bench"
    os.makedirs(work, exist_ok=True)
    net("up")
    procs = []
    results = []
    try:
        for ns, addr, name in ((NS_A, ADDR_A, "a"), (NS_B, ADDR_B, "b")):
            log = open(os.path.join(work, name + ".log"), "wb")
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, o.daemon, "--listen", addr, "--backend", "cpu",
                 "--host-mem-bytes", str(1 << 30), "--max-message-bytes", str(64 << 20),
                 "--insecure-listen", "on"],
                stdout=log, stderr=log))
        for rate in o.rates.split(","):
            net("shape", rate)
            part = os.path.join(work, "part-%s.json" % rate)
            subprocess.run(["ip", "netns", "exec", NS_A, sys.executable, __file__, o.daemon,
                            o.out, "--rounds", str(o.rounds), "--driver", part],
                           env=dict(os.environ, PEER_RATE=rate), check=True)
            with open(part) as f:
                r = json.load(f)
            r["coded_median_s"] = statistics.median(r["coded_s"])
            r["raw_median_s"] = statistics.median(r["raw_s"])
            r["coded_raw_gbit_s"] = r["raw_bytes"] * 8 / r["coded_median_s"] / 1e9
            r["raw_gbit_s"] = r["raw_bytes"] * 8 / r["raw_median_s"] / 1e9
            r["wire_median_s"] = statistics.median(r["wire_s"])
            r["speedup"] = r["raw_median_s"] / r["coded_median_s"]
            r["wire_speedup"] = r["raw_median_s"] / r["wire_median_s"]
            results.append(r)
            print("%-9s coded %.3f s  wire %.3f s  raw %.3f s  speedup %.2fx / %.2fx  (ratio %.2fx)"
                  % (rate, r["coded_median_s"], r["wire_median_s"], r["raw_median_s"],
                     r["speedup"], r["wire_speedup"],
                r["raw_bytes"] / r["coded_bytes"]), flush=True)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        net("down")
    doc = {
        "bench": "peer_bench.py", "machine": "dev-vm-2core", "shared_machine": True,
        "loadavg": os.getloadavg(), "kernel": platform.release(),
        "block_shape_bf16": list(SHAPE), "blocks": BLOCKS,
        "coded_path": "Client.copy_to relay in A's namespace: Get want_coded (loopback) + "
                      "Put coded to B over the link; 16 blocks per GetStream and per PutStream",
        "wire_path": "the same containers, already read from A, PutStream'd to B 16 per call: "
                     "what a daemon-side push would send (its read from its own memory is free)",
        "raw_path": "PutStream of the bf16 tensors to B over the link (B encodes); "
                    "16 blocks per call",
        "rounds_interleaved": o.rounds, "results": results,
    }
    with open(o.out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
