#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""burst_rss.py - latticekvd's resident memory during and after a burst of big Puts.

Design note. Issue 17 item 2: 64 clients that each send one 60 MiB Put at
the same moment made latticekvd hold gigabytes, most of it for good. This
program starts the real daemon (--backend cpu) once per configuration,
lets N clients (threads, each with its own channel and connection) send one
Put of a SIZE-byte fp32 tensor each, released together by a barrier, and
records from /proc/PID/status:

  rss_idle_mib     VmRSS before the burst (after one warm-up Put)
  rss_peak_mib     VmHWM at the end of the burst (the kernel's high-water mark)
  rss_after_mib    VmRSS a settle time after the last reply, nothing in flight

plus how many Puts succeeded or failed (each distinct status message and
its count), the store's used bytes and the wall time of the burst.
The configurations: the default in-flight budget (--max-inflight-bytes 0:
host-mem-bytes / 4, at least 2 x max-message-bytes) and an unbounded one
(--max-inflight-bytes 16TiB), each run ROUNDS times, interleaved.

Run from the repository root after building:
  PYTHONPATH=clients/python /usr/bin/python3 bench/service/burst_rss.py \
      --daemon build/server/latticekvd --machine dev-vm-2core \
      --out bench/results/burst-rss-dev-vm-2core.json
"""

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import numpy as np

import latticekv
from latticekv import pb

MIB = 1 << 20


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kib(pid, name):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise KeyError(name)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def run_once(args, budget, request):
    port = free_port()
    addr = "127.0.0.1:%d" % port
    cmd = [args.daemon, "--listen", addr, "--backend", "cpu",
           "--host-mem-bytes", args.host_mem, "--max-message-bytes", "64MiB",
           "--max-inflight-bytes", budget, "--log-level", "warn"]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            with latticekv.Client(addr) as c:
                c.wait_ready(30)
            pid = proc.pid
            opts = [("grpc.max_send_message_length", 64 * MIB),
                    ("grpc.max_receive_message_length", 64 * MIB),
                    ("grpc.use_local_subchannel_pool", 1)]
            channels = [grpc.insecure_channel(addr, options=opts) for _ in range(args.clients)]
            puts = [ch.unary_unary("/latticekv.v1.KVStore/Put",
                                   request_serializer=lambda b: b,
                                   response_deserializer=pb.PutResponse.FromString)
                    for ch in channels]
            for ch in channels:
                grpc.channel_ready_future(ch).result(timeout=30)
            puts[0](request(b"warm"), timeout=120)
            rss_idle = status_kib(pid, "VmRSS") / 1024.0
            barrier = threading.Barrier(args.clients + 1)
            results = [None] * args.clients

            def client(i):
                req = request(b"k%d" % i)
                barrier.wait()
                try:
                    puts[i](req, timeout=300)
                    results[i] = ("OK", "")
                except grpc.RpcError as e:
                    results[i] = (e.code().name, e.details())

            threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
            for t in threads:
                t.start()
            barrier.wait()
            t0 = time.monotonic()
            for t in threads:
                t.join()
            wall = time.monotonic() - t0
            peak = status_kib(pid, "VmHWM") / 1024.0
            time.sleep(args.settle)
            rss_after = status_kib(pid, "VmRSS") / 1024.0
            with latticekv.Client(addr) as c:
                st = c.stats()
            for ch in channels:
                ch.close()
        finally:
            proc.terminate()
            rc = proc.wait(60)
        codes = {}
        for code, _ in results:
            codes[code] = codes.get(code, 0) + 1
        refusals = {}
        for code, m in results:
            if code != "OK":
                k = "%s: %s" % (code, m)
                refusals[k] = refusals.get(k, 0) + 1
        return {
            "max_inflight_bytes": budget, "daemon_exit": rc,
            "rss_idle_mib": round(rss_idle, 1), "rss_peak_mib": round(peak, 1),
            "rss_after_mib": round(rss_after, 1), "burst_wall_s": round(wall, 3),
            "codes": codes, "refusals": refusals,
            "store_used_bytes": int(st["tiers"][0].get("used_bytes", 0)),
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--daemon", default="build/server/latticekvd")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--size-mib", type=int, default=60, help="tensor bytes per Put")
    ap.add_argument("--host-mem", default="1GiB", help="--host-mem-bytes of the daemon")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds idle before rss_after")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--budgets", default="0,16TiB", help="--max-inflight-bytes values")
    ap.add_argument("--machine", default=platform.node())
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    rows = args.size_mib * MIB // (128 * 4)
    data = np.tile(np.linspace(-2, 2, 128, dtype=np.float32), rows).tobytes()
    tensor = pb.Tensor(dtype=pb.DTYPE_FP32, shape=[rows, 128], data=data)

    def request(key):
        return pb.PutRequest(key=pb.BlockKey(namespace="burst", key=key),
                             tensor=tensor).SerializeToString()

    runs = []
    for rnd in range(args.rounds):
        for budget in args.budgets.split(","):
            r = run_once(args, budget, request)
            r["round"] = rnd
            runs.append(r)
            print(json.dumps(r), flush=True)
    out = {
        "bench": "burst_rss", "machine": args.machine, "cpu": cpu_model(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "clients": args.clients, "put_bytes": len(data), "host_mem_bytes": args.host_mem,
        "max_message_bytes": "64MiB", "settle_s": args.settle, "runs": runs,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
