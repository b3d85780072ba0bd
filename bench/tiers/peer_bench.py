#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""peer_bench.py - moving KV blocks from a prefill daemon to a decode daemon
over the shaped link of tiers_net.sh (issue 12, item 4, network part).

Two latticekvd processes: A on the loopback of lkvpush-cli, B in
lkvpush-srv (10.215.0.2), joined by the veth pair shaped with tbf at each rate. The
driver runs in A's namespace, so only what goes to B crosses the link:
  push   KVStore/Push: A itself sends the blocks' containers to B, one unary Put per
         block, up to --peer-inflight-bytes in flight; B verifies and stores them;
  coded  latticekv.Client.copy_to: blocks read from A as containers, 16 a call
         (loopback), PutStream coded to B, which verifies and stores them as is;
  wire   the same containers, read from A beforehand, PutStream'd to B 16 a call:
         the link and the receiver alone, as a daemon-side push would load them;
  raw    the same blocks' bf16 bytes Put to B as tensors (B encodes them),
         16 per PutStream: the raw bytes cross the link once, over the same gRPC stack.
Rounds rotate the order of the four (interleaved); medians are reported. Besides
the measured raw Put, each rate reports the raw bytes' time at the link's line
rate: the floor of any transfer of the raw bytes over that link.
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
ENV = dict(os.environ, LKVB_PREFIX="lkvpush", LKVB_SUBNET="10.215.0")
NS_A, NS_B = "lkvpush-cli", "lkvpush-srv"
ADDR_A, ADDR_B = "127.0.0.1:23401", "10.215.0.2:23402"  # A: loopback of its namespace
# A Llama-3.1-8B-shaped block: 64 tokens x 8 KV heads x 128, K and V, bf16
# (256 KiB); BLOCKS of them are one transfer (32 MiB).
SHAPE = (2, 64, 8, 128)
BLOCKS = 128


def rate_bits(rate):
    """tc's rate words (1gbit, 2500mbit) in bits per second."""
    for unit, mul in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if rate.endswith(unit):
            return float(rate[:-len(unit)]) * mul
    raise SystemExit("rate %r: want NNNgbit, NNNmbit or NNNkbit" % rate)


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
    res = {"rate": os.environ["PEER_RATE"], "push_s": [], "coded_s": [], "raw_s": [],
           "wire_s": []}
    modes = ("push", "coded", "raw", "wire")
    for r in range(rounds):
        for mode in modes[r % 4:] + modes[:r % 4]:
            # push and copy_to store under A's namespace
            ns = "" if mode in ("coded", "push") else mode
            for k in keys:
                b.delete(k, namespace=ns)
            t0 = time.perf_counter()
            if mode == "push":
                got = a.push(ADDR_B, keys)
                bad = [g for g in got if g[1].name != "OK"]
                if bad:
                    raise SystemExit("push failed: %r" % (bad[0],))
            elif mode == "coded":
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
    work = "/tmp/push-bench"
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
            r["push_median_s"] = statistics.median(r["push_s"])
            r["push_speedup"] = r["raw_median_s"] / r["push_median_s"]
            r["raw_line_rate_s"] = r["raw_bytes"] * 8 / rate_bits(rate)
            r["push_vs_raw_line_rate"] = r["raw_line_rate_s"] / r["push_median_s"]
            r["push_raw_gbit_s"] = r["raw_bytes"] * 8 / r["push_median_s"] / 1e9
            r["wire_speedup"] = r["raw_median_s"] / r["wire_median_s"]
            results.append(r)
            print("%-9s push %.3f s  coded %.3f s  wire %.3f s  raw %.3f s (line rate %.3f s)  "
                  "push speedup %.2fx vs raw Put, %.2fx vs raw line rate  (ratio %.2fx)"
                  % (rate, r["push_median_s"], r["coded_median_s"], r["wire_median_s"],
                     r["raw_median_s"], r["raw_line_rate_s"], r["push_speedup"],
                     r["push_vs_raw_line_rate"], r["raw_bytes"] / r["coded_bytes"]), flush=True)
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
        "push_path": "KVStore/Push from A to B: A reads each container from its host tier and "
                     "sends it as one unary Put (coded) to B over the link, up to "
                     "--peer-inflight-bytes (64 MiB) in flight; B verifies and stores it",
        "raw_line_rate": "raw_bytes at the tbf rate: the floor of any raw transfer over the link",
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
