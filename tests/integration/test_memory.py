# SPDX-License-Identifier: Apache-2.0
"""End-to-end: what a client can make latticekvd hold (issue 17, items 1 and 2).

Memory is read from /proc/PID/status of the real daemon. Under
AddressSanitizer the allocator keeps freed memory in a quarantine, so the
RSS assertions are skipped there (the behaviour checks still run).
"""

import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

import latticekv
from latticekv import pb
from conftest import Daemon, HANG_GUARD_S, kv_like

MIB = 1 << 20


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def len_field(field, data):
    return varint((field << 3) | 2) + varint(len(data)) + data


def proc_status_kib(pid, name):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise KeyError(name)


def rss_mib(pid):
    return proc_status_kib(pid, "VmRSS") / 1024.0


def under_asan(pid):
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def raw_put(channel):
    """KVStore/Put taking the request as bytes, so tests can send what the
    Python protobuf classes cannot build."""
    return channel.unary_unary("/latticekv.v1.KVStore/Put",
                               request_serializer=lambda b: b,
                               response_deserializer=pb.PutResponse.FromString)


@pytest.fixture
def small_daemon():
    """A daemon with an 8 MiB store that accepts 48 MiB messages."""
    with tempfile.TemporaryDirectory(prefix="lkv-mem-") as tmp:
        d = Daemon(tmp, extra=["--host-mem-bytes", "8MiB", "--max-message-bytes", "48MiB"])
        yield d
        rc = d.stop()
        assert rc == 0, "latticekvd exited with %d:\n%s" % (rc, d.log_text())


# -- item 1: a stored block keeps only what it is charged for ---------------

PADDINGS = {
    # 34 MiB of an unknown field after a valid PutRequest
    "unknown_field": lambda req, pad: req + len_field(1000, pad),
    # a 34 MiB tensor before the coded member of the oneof (the last one wins)
    "tensor_before_coded": lambda req, pad: (
        pb.PutRequest(key=pb.PutRequest.FromString(req).key,
                      tensor=pb.Tensor(dtype=pb.DTYPE_FP32, shape=[len(pad) // 512, 128],
                                       data=pad)).SerializeToString()
        + len_field(3, pb.PutRequest.FromString(req).coded)),
}


@pytest.mark.parametrize("how", sorted(PADDINGS))
def test_padded_coded_put_keeps_only_its_container(small_daemon, how):
    d = small_daemon
    pid = d.proc.pid
    n_puts, pad = 8, bytes(34 * MIB)
    with latticekv.Client(d.tcp, max_message_bytes=64 * MIB, timeout=HANG_GUARD_S) as c:
        coded = c.compress(kv_like((4, 2, 128), seed=17))
        put = raw_put(c.channel)
        # Warm up the daemon's and gRPC's buffers with one request of the
        # same size, so the baseline includes what any big request costs.
        plain = pb.PutRequest(key=pb.BlockKey(namespace="pad", key=b"warm"), coded=coded)
        put(PADDINGS[how](plain.SerializeToString(), pad), timeout=HANG_GUARD_S)
        base = rss_mib(pid)
        for i in range(n_puts):
            req = pb.PutRequest(key=pb.BlockKey(namespace="pad", key=b"k%d" % i), coded=coded)
            r = put(PADDINGS[how](req.SerializeToString(), pad), timeout=HANG_GUARD_S)
            assert r.coded_bytes == len(coded)
        grown = rss_mib(pid) - base
        for i in range(n_puts):
            assert c.get(b"k%d" % i, namespace="pad", want_coded=True) == coded
        host = c.stats()["tiers"][0]
        assert int(host["blocks"]) == n_puts + 1
        keys = [b"warm"] + [b"k%d" % i for i in range(n_puts)]
        assert int(host["used_bytes"]) == sum(len(coded) + len("pad") + len(k) for k in keys)
    if under_asan(pid):
        pytest.skip("RSS is not meaningful under AddressSanitizer")
    # Before the fix every block kept its 34 MiB request alive: 272 MiB.
    print("RSS grew by %.1f MiB" % grown)
    assert grown < 96, "RSS grew by %.0f MiB over %d padded Puts" % (grown, n_puts)


def test_plain_coded_put_is_stored(small_daemon):
    """The request buffer of a plain coded Put still becomes the block."""
    with latticekv.Client(small_daemon.tcp, timeout=HANG_GUARD_S) as c:
        coded = c.compress(kv_like((16, 2, 128), seed=3))
        assert c.put_coded(b"plain", coded, namespace="ns") == len(coded)
        assert c.get(b"plain", namespace="ns", want_coded=True) == coded
        np.testing.assert_array_equal(c.get(b"plain", namespace="ns"), c.decompress(coded))


# -- item 2: a byte budget for requests in flight ----------------------------

def budget_daemon(tmp, *extra):
    return Daemon(tmp, extra=["--host-mem-bytes", "8MiB", "--max-message-bytes", "48MiB"]
                  + list(extra))


def test_replies_over_the_inflight_budget_are_refused_naming_it():
    """A GetStream of 2 MiB replies that its client does not read yet: the
    replies in the stream's window pass --max-inflight-bytes 8MiB, so the
    stream ends with RESOURCE_EXHAUSTED naming the budget after the replies
    that fitted; once they are gone the daemon serves the same Get again."""
    with tempfile.TemporaryDirectory(prefix="lkv-mem-") as tmp:
        d = budget_daemon(tmp, "--max-inflight-bytes", "8MiB")
        try:
            with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
                c.put(b"big", kv_like((4096, 128), seed=5), dtype="fp32")  # 2 MiB as fp32
                expect = c.get(b"big", out_dtype="fp32", raw=True)
                reqs = [pb.GetRequest(key=pb.BlockKey(key=b"big"), out_dtype=pb.DTYPE_FP32)
                        for _ in range(32)]
                replies = []
                with pytest.raises(grpc.RpcError) as e:
                    for r in c.kv.GetStream(iter(reqs), timeout=HANG_GUARD_S):
                        if not replies:
                            time.sleep(0.5)  # let the window fill (timing decides nothing)
                        replies.append(r)
                assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value.details()
                assert "max-inflight-bytes=8388608" in e.value.details()
                assert 1 <= len(replies) < 32
                for r in replies:
                    assert len(r.tensor.data) == 4096 * 128 * 4
                np.testing.assert_array_equal(c.get(b"big", out_dtype="fp32", raw=True), expect)
        finally:
            assert d.stop() == 0, d.log_text()


def fp32_put(key, mib):
    """A serialized PutRequest of a MIB MiB fp32 tensor."""
    rows = (mib << 20) // 512
    data = np.tile(np.linspace(-1, 1, 128, dtype=np.float32), rows).tobytes()
    tensor = pb.Tensor(dtype=pb.DTYPE_FP32, shape=[rows, 128], data=data)
    return pb.PutRequest(key=pb.BlockKey(key=key), tensor=tensor).SerializeToString()


def put_burst(addr, reqs, warm_up=None, before=lambda: None):
    """Sends the Puts reqs at once, each on its own channel (so its own
    connection), released together by a barrier. warm_up, when given, is
    sent first on the first channel, then before() runs. Returns the
    outcome of each: "OK" or "CODE: details"."""
    opts = [("grpc.max_send_message_length", 64 * MIB),
            ("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.insecure_channel(addr, options=opts) for _ in reqs]
    try:
        puts = [raw_put(ch) for ch in channels]
        if warm_up is not None:
            puts[0](warm_up, timeout=HANG_GUARD_S)
        before()
        barrier = threading.Barrier(len(reqs))

        def put(i):
            barrier.wait()
            try:
                puts[i](reqs[i], timeout=HANG_GUARD_S)
                return "OK"
            except grpc.RpcError as e:
                return "%s: %s" % (e.code().name, e.details())

        with ThreadPoolExecutor(len(reqs)) as ex:
            return list(ex.map(put, range(len(reqs))))
    finally:
        for ch in channels:
            ch.close()


def test_a_lone_message_over_the_budget_is_received():
    """The budget admits a lone request whatever its size, and gRPC's memory
    quota leaves room for one whole message, so on an idle daemon with
    --max-inflight-bytes 8MiB a 24 MiB Put is stored. Before, the quota was
    the budget alone and gRPC reset this stream every time
    (RESOURCE_EXHAUSTED: Received RST_STREAM with error code 11)."""
    with tempfile.TemporaryDirectory(prefix="lkv-mem-") as tmp:
        d = budget_daemon(tmp, "--max-inflight-bytes", "8MiB")
        try:
            assert put_burst(d.tcp, [fp32_put(b"lone", 24)]) == ["OK"]
            with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
                assert int(c.stats()["tiers"][0]["blocks"]) == 1
        finally:
            assert d.stop() == 0, d.log_text()


def test_a_burst_within_the_quota_is_decided_by_the_budget():
    """Three concurrent 20 MiB Puts against a 32 MiB budget: their 60 MiB of
    partial messages fit in gRPC's quota (the budget plus one 48 MiB
    message), so gRPC resets none of them; the budget admits what fits and
    refuses the rest with a message naming it, and at least one is stored.
    Before (the quota was the budget) gRPC reset streams in every run and
    all three in about half of them."""
    with tempfile.TemporaryDirectory(prefix="lkv-mem-") as tmp:
        d = budget_daemon(tmp, "--max-inflight-bytes", "32MiB")
        try:
            codes = put_burst(d.tcp, [fp32_put(b"b%d" % i, 20) for i in range(3)])
            assert "OK" in codes, codes
            for c in codes:
                assert c == "OK" or (c.startswith("RESOURCE_EXHAUSTED: ")
                                     and "max-inflight-bytes=33554432" in c), codes
        finally:
            assert d.stop() == 0, d.log_text()


def test_memory_returns_to_the_system_after_a_burst():
    """A burst of concurrent 24 MiB Puts (below the 32 MiB mmap threshold,
    so on the heap), each client on its own connection, leaves RSS near
    where it started once nothing is in flight. Before: glibc kept up to
    256 MiB of freed heap for good. The 192 MiB burst passes the 96 MiB
    budget, so some Puts are refused: RESOURCE_EXHAUSTED by the budget, or
    when gRPC's quota is spent too, a reset stream (RESOURCE_EXHAUSTED) or
    a closed connection (UNAVAILABLE); at least one is stored."""
    n = 8
    with tempfile.TemporaryDirectory(prefix="lkv-mem-") as tmp:
        d = budget_daemon(tmp)
        try:
            pid = d.proc.pid
            idle = []
            codes = put_burst(d.tcp, [fp32_put(b"b%d" % i, 24) for i in range(n)],
                              warm_up=fp32_put(b"b%d" % n, 24),
                              before=lambda: idle.append(rss_mib(pid)))
            assert "OK" in codes, codes
            # the connection closed under a stream shows as either text
            # (bench/service/burst_rss.py saw both at 64 clients); a daemon
            # that died instead fails d.stop() below
            closed = ("UNAVAILABLE: GOAWAY received", "UNAVAILABLE: Broken pipe")
            assert all(c == "OK" or c.startswith("RESOURCE_EXHAUSTED: ") or c in closed
                       for c in codes), codes
            time.sleep(0.5)
            after = rss_mib(pid)
            peak = proc_status_kib(pid, "VmHWM") / 1024.0
            if under_asan(pid):
                pytest.skip("RSS is not meaningful under AddressSanitizer")
            print("idle %.0f peak %.0f after %.0f MiB, %s" % (idle[0], peak, after, codes))
            assert after - idle[0] < 48, "RSS %.0f MiB after the burst, %.0f before" % (after, idle[0])
        finally:
            assert d.stop() == 0, d.log_text()
