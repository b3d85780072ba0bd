# SPDX-License-Identifier: Apache-2.0
"""Copying coded blocks from one latticekvd to another (issue 12), two real
daemons on loopback. What is tested here is the client relay
latticekv.Client.copy_to (Get want_coded on the sender, Put coded on the
receiver); the daemon-to-daemon Push/Pull RPCs are test_peer_push.py's.

Every daemon is started by the test in its own directory and killed at the
end even when the test fails.
"""

import os
import tempfile

import grpc
import pytest

import latticekv
import conftest
from conftest import HANG_GUARD_S, kv_like

STARTED = []
OK = grpc.StatusCode.OK


def Daemon(tmpdir, extra=()):  # noqa: N802 - conftest's Daemon, remembered for cleanup
    os.makedirs(tmpdir, exist_ok=True)
    d = conftest.Daemon(tmpdir, extra)
    STARTED.append(d)
    return d


@pytest.fixture(autouse=True)
def no_daemon_left():
    yield
    while STARTED:
        d = STARTED.pop()
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


@pytest.fixture
def tmp():
    with tempfile.TemporaryDirectory(prefix="peer-") as d:
        yield d


def put_blocks(client, n, seed, namespace=""):
    """Stores n distinct blocks k0..k{n-1}; returns their containers."""
    coded = []
    for i in range(n):
        c = client.compress(kv_like((4, 128), seed + i))
        client.put_coded("k%d" % i, c, namespace=namespace)
        coded.append(c)
    return coded


def codes(results):
    return [r[1] for r in results]


def test_copy_moves_the_containers_byte_identical(tmp):
    a = Daemon(os.path.join(tmp, "a"))
    b = Daemon(os.path.join(tmp, "b"))
    with latticekv.Client(a.tcp, timeout=HANG_GUARD_S) as ca, \
            latticekv.Client(b.tcp, timeout=HANG_GUARD_S) as cb:
        coded = put_blocks(ca, 5, 11, namespace="m")
        seen = []
        res = ca.copy_to(cb, ["k%d" % i for i in range(5)], namespace="m",
                         progress=lambda done, total, n: seen.append((done, total, n)))
        assert codes(res) == [OK] * 5
        assert [r[3] for r in res] == [len(c) for c in coded]
        assert seen[-1] == (5, 5, sum(len(c) for c in coded))
        for i, c in enumerate(coded):
            assert cb.get("k%d" % i, namespace="m", want_coded=True) == c
        # Nothing was re-encoded on the receiver: it compressed no tensor.
        assert cb.stats()["raw_bytes_in"] == 0
    assert a.stop() == 0 and b.stop() == 0


def test_missing_key_is_named_and_the_others_arrive(tmp):
    a = Daemon(os.path.join(tmp, "a"))
    b = Daemon(os.path.join(tmp, "b"))
    with latticekv.Client(a.tcp, timeout=HANG_GUARD_S) as ca, \
            latticekv.Client(b.tcp, timeout=HANG_GUARD_S) as cb:
        put_blocks(ca, 2, 3)
        res = ca.copy_to(cb, ["k0", "nope", "k1"])
        assert codes(res) == [OK, grpc.StatusCode.NOT_FOUND, OK]
        assert cb.lookup(["k0", "nope", "k1"]) == (1, [True, False, True])
    assert a.stop() == 0 and b.stop() == 0


class FlipOneBit:
    """A receiver whose link flips one bit of the container of one key."""

    def __init__(self, dest, key):
        self.dest, self.key = dest, key.encode()

    def put_coded(self, key, coded, namespace=""):
        return self.dest.put_coded(key, self.flip(key, coded), namespace=namespace)

    def put_coded_many(self, items, namespace=""):
        items = [(k, self.flip(k, c)) for k, c in items]
        return self.dest.put_coded_many(items, namespace=namespace)

    def flip(self, key, coded):
        if key != self.key:
            return coded
        coded = bytearray(coded)
        coded[len(coded) - 10] ^= 0x10
        return bytes(coded)


def test_block_corrupted_in_flight_is_data_loss_and_not_stored(tmp):
    a = Daemon(os.path.join(tmp, "a"))
    b = Daemon(os.path.join(tmp, "b"))
    with latticekv.Client(a.tcp, timeout=HANG_GUARD_S) as ca, \
            latticekv.Client(b.tcp, timeout=HANG_GUARD_S) as cb:
        put_blocks(ca, 3, 21)
        res = ca.copy_to(FlipOneBit(cb, "k1"), ["k0", "k1", "k2"])
        assert codes(res) == [OK, grpc.StatusCode.DATA_LOSS, OK], res
        assert cb.lookup(["k0", "k1", "k2"]) == (1, [True, False, True])
        assert cb.stats()["tiers"][0]["blocks"] == 2
    assert a.stop() == 0 and b.stop() == 0


def test_receiver_quota_is_resource_exhausted_naming_the_namespace(tmp):
    a = Daemon(os.path.join(tmp, "a"))
    b = Daemon(os.path.join(tmp, "b"), ["--namespace-quota", "small=8KiB"])
    with latticekv.Client(a.tcp, timeout=HANG_GUARD_S) as ca, \
            latticekv.Client(b.tcp, timeout=HANG_GUARD_S) as cb:
        coded = put_blocks(ca, 24, 31, namespace="small")
        fits = (8 << 10) // (len(coded[0]) + len("small") + 4)
        assert 0 < fits < 24 and len(set(map(len, coded))) == 1
        keys = ["k%d" % i for i in range(24)]
        res = ca.copy_to(cb, keys, namespace="small")
        assert codes(res)[:fits] == [OK] * fits
        for r in res[fits:]:
            assert r[1] == grpc.StatusCode.RESOURCE_EXHAUSTED and '"small"' in r[2], r
        assert cb.lookup(keys, namespace="small")[0] == fits
    assert a.stop() == 0 and b.stop() == 0


def test_receiver_killed_mid_copy_keeps_exactly_the_acked_keys(tmp):
    ssd = os.path.join(tmp, "ssd")
    os.makedirs(ssd)
    flags = ["--ssd-dir", ssd, "--ssd-bytes", "64MiB", "--ssd-fsync", "always"]
    a = Daemon(os.path.join(tmp, "a"))
    b = Daemon(os.path.join(tmp, "b"), flags)
    keys = ["k%d" % i for i in range(6)]
    with latticekv.Client(a.tcp, timeout=HANG_GUARD_S) as ca, \
            latticekv.Client(b.tcp, timeout=5) as cb:
        put_blocks(ca, 6, 41)

        def kill_after_four(done, total, n):
            if done == 4:
                b.proc.kill()
                b.proc.wait()

        # Batches of two: the kill falls between the second and third stream.
        res = ca.copy_to(cb, keys, progress=kill_after_four, batch=2)
    assert codes(res)[:4] == [OK] * 4
    assert all(c in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
               for c in codes(res)[4:]), res
    again = Daemon(os.path.join(tmp, "b2"), flags)
    with latticekv.Client(again.tcp, timeout=HANG_GUARD_S) as cb:
        assert cb.lookup(keys) == (4, [True] * 4 + [False] * 2)
    assert a.stop() == 0 and again.stop() == 0


def test_sender_killed_mid_copy_leaves_no_partial_block(tmp):
    a = Daemon(os.path.join(tmp, "a"))
    b = Daemon(os.path.join(tmp, "b"))
    keys = ["k%d" % i for i in range(6)]
    with latticekv.Client(a.tcp, timeout=5) as ca, \
            latticekv.Client(b.tcp, timeout=HANG_GUARD_S) as cb:
        coded = put_blocks(ca, 6, 51)

        def kill_after_two(done, total, n):
            if done == 2:
                a.proc.kill()
                a.proc.wait()

        res = ca.copy_to(cb, keys, progress=kill_after_two, batch=2)
        assert codes(res)[:2] == [OK] * 2
        assert all(c in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                   for c in codes(res)[2:]), res
        assert cb.lookup(keys) == (2, [True] * 2 + [False] * 4)
        assert [cb.get(k, want_coded=True) for k in keys[:2]] == coded[:2]
    assert b.stop() == 0


def test_bad_input_is_named(tmp):
    a = Daemon(os.path.join(tmp, "a"))
    with latticekv.Client(a.tcp, timeout=HANG_GUARD_S) as ca:
        put_blocks(ca, 1, 61)
        with pytest.raises(latticekv.Error) as e:
            ca.copy_to(ca, [])
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "keys" in e.value.details
        # A receiver nobody listens on: every key says so, nothing raises.
        with latticekv.Client("127.0.0.1:%d" % conftest.free_port(), timeout=2) as dead:
            res = ca.copy_to(dead, ["k0"])
        assert res[0][1] in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        # A namespace with a NUL byte is refused by the sender, naming it.
        res = ca.copy_to(ca, ["k0"], namespace="bad\0ns")
        assert res[0][1] == grpc.StatusCode.INVALID_ARGUMENT, res
    assert a.stop() == 0
