# SPDX-License-Identifier: Apache-2.0
"""Daemon-to-daemon Push and Pull (issue 12): real daemons on loopback.

KVStore/Push makes daemon A send the coded blocks of keys (or a key prefix)
to daemon B; KVStore/Pull makes B fetch them from A. Only containers cross;
the receiver stores them through its coded Put path (verified, never
re-encoded). Each key has its own result. Every daemon is started by the test
in its own directory, on ports 23000-23499, and killed at the end even when
the test fails; a clean stop checks that the in-flight budget is empty.
"""

import os
import random
import signal
import socket
import tempfile
import threading
import time

import grpc
import pytest

import latticekv
import conftest
from conftest import HANG_GUARD_S, kv_like

STARTED = []
OK = grpc.StatusCode.OK
LINK_DOWN = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.CANCELLED)


def port_in_range():
    """A free TCP port of this suite's range (23000-23499)."""
    ports = list(range(23000, 23500))
    random.shuffle(ports)
    for p in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
            return p
    raise RuntimeError("no free port in 23000-23499")


@pytest.fixture(autouse=True)
def own_ports_and_no_daemon_left(monkeypatch):
    monkeypatch.setattr(conftest, "free_port", port_in_range)
    yield
    while STARTED:
        d = STARTED.pop()
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def Daemon(tmpdir, extra=()):  # noqa: N802 - conftest's Daemon, remembered for cleanup
    os.makedirs(tmpdir, exist_ok=True)
    d = conftest.Daemon(tmpdir, extra)
    STARTED.append(d)
    return d


@pytest.fixture
def tmp():
    with tempfile.TemporaryDirectory(prefix="push-") as d:
        yield d


def put_blocks(client, n, seed, namespace="", shape=(4, 128), prefix="k"):
    """Stores n distinct blocks {prefix}0..; returns their containers."""
    coded = []
    for i in range(n):
        c = client.compress(kv_like(shape, seed + i))
        client.put_coded("%s%d" % (prefix, i), c, namespace=namespace)
        coded.append(c)
    return coded


def codes(results):
    return [r[1] for r in results]


def test_push_moves_the_containers_byte_identical(tmp):
    a = Daemon(os.path.join(tmp, "a"))
    b = Daemon(os.path.join(tmp, "b"))
    keys = ["k%d" % i for i in range(6)]
    with latticekv.Client(a.tcp, timeout=HANG_GUARD_S) as ca, \
            latticekv.Client(b.tcp, timeout=HANG_GUARD_S) as cb:
        coded = put_blocks(ca, 6, 11, namespace="m")
        res = ca.push(b.tcp, keys, namespace="m")
        assert codes(res) == [OK] * 6
        assert [r[0] for r in res] == [k.encode() for k in keys]
        assert [r[3] for r in res] == [len(c) for c in coded]
        for k, c in zip(keys, coded):
            assert cb.get(k, namespace="m", want_coded=True) == c
        # Only containers crossed: the receiver encoded nothing.
        assert cb.stats()["raw_bytes_in"] == 0
        # The unix socket is a target too.
        cb.delete("k0", namespace="m")
        assert codes(ca.push(b.unix, ["k0"], namespace="m")) == [OK]
        assert cb.get("k0", namespace="m", want_coded=True) == coded[0]
    assert a.stop() == 0 and b.stop() == 0


def test_pull_fetches_the_containers_byte_identical(tmp):
    a = Daemon(os.path.join(tmp, "a"))
    b = Daemon(os.path.join(tmp, "b"))
    keys = ["k%d" % i for i in range(5)]
    with latticekv.Client(a.tcp, timeout=HANG_GUARD_S) as ca, \
            latticekv.Client(b.tcp, timeout=HANG_GUARD_S) as cb:
        coded = put_blocks(ca, 5, 13, namespace="d")
        res = cb.pull(a.tcp, keys, namespace="d")
        assert codes(res) == [OK] * 5
        assert [r[3] for r in res] == [len(c) for c in coded]
        assert [cb.get(k, namespace="d", want_coded=True) for k in keys] == coded
        assert cb.stats()["raw_bytes_in"] == 0
    assert a.stop() == 0 and b.stop() == 0


def test_prefix_push_sends_only_the_matching_keys(tmp):
    a = Daemon(os.path.join(tmp, "a"))
    b = Daemon(os.path.join(tmp, "b"))
    with latticekv.Client(a.tcp, timeout=HANG_GUARD_S) as ca, \
            latticekv.Client(b.tcp, timeout=HANG_GUARD_S) as cb:
        want = put_blocks(ca, 4, 17, namespace="p", prefix="req1/")
        put_blocks(ca, 3, 27, namespace="p", prefix="req2/")
        put_blocks(ca, 2, 37, namespace="other", prefix="req1/")
        res = ca.push(b.tcp, namespace="p", prefix="req1/")
        assert sorted(r[0] for r in res) == [b"req1/%d" % i for i in range(4)]
        assert codes(res) == [OK] * 4
        for i, c in enumerate(want):
            assert cb.get("req1/%d" % i, namespace="p", want_coded=True) == c
        assert cb.lookup(["req2/0"], namespace="p") == (0, [False])
        assert cb.lookup(["req1/0"], namespace="other") == (0, [False])
        # An empty prefix is the whole namespace; no match is an empty answer.
        assert len(ca.push(b.tcp, namespace="p", prefix="")) == 7
        assert ca.push(b.tcp, namespace="p", prefix="zzz") == []
    assert a.stop() == 0 and b.stop() == 0


def test_missing_keys_are_named_and_the_others_arrive(tmp):
    a = Daemon(os.path.join(tmp, "a"))
    b = Daemon(os.path.join(tmp, "b"))
    with latticekv.Client(a.tcp, timeout=HANG_GUARD_S) as ca, \
            latticekv.Client(b.tcp, timeout=HANG_GUARD_S) as cb:
        put_blocks(ca, 2, 3)
        res = ca.push(b.tcp, ["k0", "nope", "k1"])
        assert codes(res) == [OK, grpc.StatusCode.NOT_FOUND, OK]
        assert "not found" in res[1][2]
        assert cb.lookup(["k0", "nope", "k1"]) == (1, [True, False, True])
        cb.delete("k0")
        res = cb.pull(a.tcp, ["gone", "k0"])
        assert codes(res) == [grpc.StatusCode.NOT_FOUND, OK]
        assert a.tcp in res[0][2], res
    assert a.stop() == 0 and b.stop() == 0


MID = (16, 8, 128)  # about 14 KB coded


def test_damaged_block_on_the_sender_ssd_is_data_loss_and_not_stored(tmp):
    ssd = os.path.join(tmp, "ssd")
    os.makedirs(ssd)
    b = Daemon(os.path.join(tmp, "b"))
    with latticekv.Client(b.tcp, timeout=HANG_GUARD_S) as cb:
        size = len(cb.compress(kv_like(MID, 0)))
    # Host memory holds one block: the others are served from the SSD tier.
    a = Daemon(os.path.join(tmp, "a"), ["--ssd-dir", ssd, "--ssd-bytes", "16MiB",
                                        "--host-mem-bytes", str(size * 3 // 2)])
    with latticekv.Client(a.tcp, timeout=HANG_GUARD_S) as ca, \
            latticekv.Client(b.tcp, timeout=HANG_GUARD_S) as cb:
        k1 = put_blocks(ca, 1, 71, prefix="bad", shape=MID)[0]
        files = [f for f in os.listdir(ssd) if not f.startswith(".")]
        victim = [f for f in files if os.path.getsize(os.path.join(ssd, f)) >= len(k1)]
        assert len(victim) == 1, files
        good = put_blocks(ca, 2, 81, shape=MID)
        with open(os.path.join(ssd, victim[0]), "r+b") as f:
            f.seek(os.path.getsize(os.path.join(ssd, victim[0])) - 10)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0x10]))
        res = ca.push(b.tcp, ["k0", "bad0", "k1"])
        assert codes(res) == [OK, grpc.StatusCode.DATA_LOSS, OK], res
        assert "verification" in res[1][2] or "checksum" in res[1][2], res
        assert cb.lookup(["k0", "bad0", "k1"]) == (1, [True, False, True])
        assert [cb.get(k, want_coded=True) for k in ("k0", "k1")] == good
    assert a.stop() == 0 and b.stop() == 0


def test_receiver_quota_is_resource_exhausted_for_those_keys(tmp):
    a = Daemon(os.path.join(tmp, "a"))
    b = Daemon(os.path.join(tmp, "b"), ["--namespace-quota", "small=8KiB"])
    keys = ["k%d" % i for i in range(24)]
    with latticekv.Client(a.tcp, timeout=HANG_GUARD_S) as ca, \
            latticekv.Client(b.tcp, timeout=HANG_GUARD_S) as cb:
        coded = put_blocks(ca, 24, 31, namespace="small")
        fits = (8 << 10) // (len(coded[0]) + len("small") + 3)
        assert 0 < fits < 24 and len(set(map(len, coded))) == 1
        res = ca.push(b.tcp, keys, namespace="small")
        ok = [r for r in res if r[1] == OK]
        assert len(ok) == fits, res
        for r in res:
            if r[1] != OK:
                assert r[1] == grpc.StatusCode.RESOURCE_EXHAUSTED and '"small"' in r[2], r
        present = cb.lookup(keys, namespace="small")[1]
        assert [r[1] == OK for r in res] == present
    assert a.stop() == 0 and b.stop() == 0


def kill_when(daemon, client, blocks):
    """A thread that SIGKILLs daemon once client's daemon holds `blocks` blocks."""
    def run():
        deadline = time.monotonic() + HANG_GUARD_S
        while time.monotonic() < deadline:
            try:
                if client.stats()["tiers"][0]["blocks"] >= blocks:
                    break
            except latticekv.Error:
                break
            time.sleep(0.005)
        daemon.proc.kill()
        daemon.proc.wait()
    t = threading.Thread(target=run)
    t.start()
    return t


BIG = (64, 8, 128)  # about 54 KB coded: one block in flight at a time below


def test_receiver_killed_mid_push_keeps_only_complete_blocks(tmp):
    ssd = os.path.join(tmp, "ssd")
    os.makedirs(ssd)
    flags = ["--ssd-dir", ssd, "--ssd-bytes", "256MiB", "--ssd-fsync", "always"]
    a = Daemon(os.path.join(tmp, "a"), ["--peer-inflight-bytes", "1"])
    b = Daemon(os.path.join(tmp, "b"), flags)
    n = 120
    keys = ["k%d" % i for i in range(n)]
    with latticekv.Client(a.tcp, timeout=HANG_GUARD_S) as ca, \
            latticekv.Client(b.tcp, timeout=5) as cb:
        coded = put_blocks(ca, n, 41, shape=BIG)
        killer = kill_when(b, cb, 3)
        res = ca.push(b.tcp, keys)
        killer.join()
    acked = [r[1] == OK for r in res]
    assert 3 <= sum(acked) < n, res
    # Keys are sent in order, one at a time: the acked ones are a prefix.
    first_failed = acked.index(False)
    assert all(acked[:first_failed]) and not any(acked[first_failed:])
    assert all(c in LINK_DOWN for c in codes(res)[first_failed:]), res
    again = Daemon(os.path.join(tmp, "b2"), flags)
    with latticekv.Client(again.tcp, timeout=HANG_GUARD_S) as cb:
        hits, present = cb.lookup(keys)
        # Every acknowledged block survived; at most the one in flight more.
        assert first_failed <= hits <= first_failed + 1, (hits, first_failed)
        assert hits == sum(present)
        for k, c in zip(keys[:hits], coded[:hits]):
            assert cb.get(k, want_coded=True) == c
    assert a.stop() == 0 and again.stop() == 0


def test_sender_killed_mid_pull_leaves_no_partial_block(tmp):
    a = Daemon(os.path.join(tmp, "a"))
    b = Daemon(os.path.join(tmp, "b"), ["--peer-inflight-bytes", "1"])
    n = 120
    keys = ["k%d" % i for i in range(n)]
    with latticekv.Client(a.tcp, timeout=5) as ca, \
            latticekv.Client(b.tcp, timeout=HANG_GUARD_S) as cb:
        coded = put_blocks(ca, n, 51, shape=BIG)
        killer = kill_when(a, cb, 3)
        res = cb.pull(a.tcp, keys)
        killer.join()
        acked = [r[1] == OK for r in res]
        assert 3 <= sum(acked) < n, res
        assert all(c in LINK_DOWN for c in codes(res) if c != OK), res
        # Exactly the acknowledged keys are stored, each one whole.
        assert cb.lookup(keys)[1] == acked
        for k, c, ok in zip(keys, coded, acked):
            if ok:
                assert cb.get(k, want_coded=True) == c
    assert b.stop() == 0


def test_bad_input_is_named(tmp):
    a = Daemon(os.path.join(tmp, "a"))
    with latticekv.Client(a.tcp, timeout=HANG_GUARD_S) as ca:
        put_blocks(ca, 2, 61)
        cases = [
            (lambda: ca.push("", ["k0"]), "to is empty"),
            (lambda: ca.pull("", ["k0"]), "from is empty"),
            (lambda: ca.push("https://b:443", ["k0"]), "plaintext only"),
            (lambda: ca.push(a.tcp, []), "keys is empty"),
            (lambda: ca.pull(a.tcp, []), "keys is empty"),
            (lambda: ca.push(a.tcp, ["k0"], prefix="k"), "by_prefix is set and 1 keys"),
            (lambda: ca.push(a.tcp, ["k0", ""]), "keys[1] is empty"),
            (lambda: ca.push(a.tcp, ["x" * 1025]), "keys[0] is 1025 bytes"),
            (lambda: ca.push(a.tcp, ["k0"], namespace="bad\0ns"), "NUL byte at offset 3"),
            (lambda: ca.push(a.tcp, prefix="x" * 1025), "key_prefix is 1025 bytes"),
        ]
        for call, text in cases:
            with pytest.raises(latticekv.Error) as e:
                call()
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT, (text, e.value)
            assert text in e.value.details, (text, e.value.details)
        # A receiver nobody listens on: every key says so, nothing raises.
        res = ca.push("127.0.0.1:%d" % port_in_range(), ["k0", "k1"])
        assert codes(res) == [grpc.StatusCode.UNAVAILABLE] * 2, res
        assert "127.0.0.1" in res[0][2]
        # Nothing was stored anywhere by the refused requests.
        assert ca.stats()["tiers"][0]["blocks"] == 2
    assert a.stop() == 0


def test_cli_push_and_pull(tmp, cli):
    a = Daemon(os.path.join(tmp, "a"))
    b = Daemon(os.path.join(tmp, "b"))
    with latticekv.Client(a.tcp, timeout=HANG_GUARD_S) as ca, \
            latticekv.Client(b.tcp, timeout=HANG_GUARD_S) as cb:
        coded = put_blocks(ca, 3, 91, namespace="c")
        r = cli("push", "--addr", a.tcp, "--to", b.unix, "--ns", "c", "--batch", "2",
                "k0", "k1", "nope")
        out = r.stdout.decode()
        assert r.returncode == 3, (r.returncode, out, r.stderr)
        assert "k0 stored %d" % len(coded[0]) in out and "k1 stored" in out
        assert "nope NOT_FOUND" in out and "stored=2/3" in out
        # Not a terminal: no progress line on stderr.
        assert r.stderr == b""
        r = cli("pull", "--addr", b.tcp, "--from", a.tcp, "--ns=c", "k2")
        assert r.returncode == 0 and b"stored=1/1" in r.stdout, r
        assert [cb.get("k%d" % i, namespace="c", want_coded=True) for i in range(3)] == coded
        r = cli("push", "--addr", a.tcp, "--to", b.tcp, "--ns", "c", "--prefix", "k")
        assert r.returncode == 0 and b"stored=3/3" in r.stdout, r
        for args, text in [(("push", "--addr", a.tcp, "k0"), b"needs --to"),
                           (("pull", "--addr", a.tcp, "--from", b.tcp), b"at least one KEY"),
                           (("push", "--addr", a.tcp, "--to", b.tcp, "--prefix", "k", "k0"),
                            b"not both")]:
            r = cli(*args)
            assert r.returncode == 2 and text in r.stderr, r
    assert a.stop() == 0 and b.stop() == 0


def test_sigterm_during_a_push_to_a_stuck_receiver_exits_clean(tmp):
    """The grace period's end cancels the outbound calls: the transfer answers,
    the daemon exits 0 and its in-flight budget is empty (Daemon.stop checks)."""
    a = Daemon(os.path.join(tmp, "a"), ["--shutdown-grace-ms", "1000"])
    b = Daemon(os.path.join(tmp, "b"))
    keys = ["k%d" % i for i in range(4)]
    with latticekv.Client(a.tcp, timeout=HANG_GUARD_S) as ca:
        put_blocks(ca, 4, 97)
        os.kill(b.proc.pid, signal.SIGSTOP)
        try:
            got = {}

            def push():
                try:
                    got["res"] = ca.push(b.tcp, keys)
                except latticekv.Error as e:
                    got["err"] = e
            t = threading.Thread(target=push)
            t.start()
            time.sleep(0.5)  # the Push is in flight (its calls wait on b)
            t0 = time.monotonic()
            assert a.stop() == 0, a.log_text()
            assert time.monotonic() - t0 < 10
            t.join(HANG_GUARD_S)
            assert not t.is_alive()
            # The daemon waited for the transfer, then cancelled it at the grace's end.
            with open(a.log_path, errors="replace") as f:
                assert "shutdown_grace_over" in f.read()
            # The caller's call was cancelled with the others (or answered first).
            if "res" in got:
                assert all(c in LINK_DOWN for c in codes(got["res"])), got
            else:
                assert got["err"].code in LINK_DOWN, got
        finally:
            os.kill(b.proc.pid, signal.SIGCONT)
    assert b.stop() == 0


def test_tokens_guard_the_namespace_and_peer_links_carry_none(tmp):
    tokens = os.path.join(tmp, "tokens")
    with open(tokens, "w") as f:
        f.write("tok-m m\ntok-all *\n")
    a = Daemon(os.path.join(tmp, "a"), ["--auth-tokens", tokens])
    b = Daemon(os.path.join(tmp, "b"), ["--auth-tokens", tokens, "--auth-unix", "off"])
    with latticekv.Client(a.tcp, timeout=HANG_GUARD_S, token="tok-m") as ca, \
            latticekv.Client(b.unix, timeout=HANG_GUARD_S) as cb:
        coded = put_blocks(ca, 2, 101, namespace="m")
        # The caller's token must allow the namespace it asks to move.
        with pytest.raises(latticekv.Error) as e:
            ca.push(b.unix, ["k0"], namespace="other")
        assert e.value.code == grpc.StatusCode.PERMISSION_DENIED, e.value
        # Peer links send no token: b's TCP listener refuses each key ...
        res = ca.push(b.tcp, ["k0", "k1"], namespace="m")
        assert codes(res) == [grpc.StatusCode.UNAUTHENTICATED] * 2, res
        # ... and its unix socket, trusted with --auth-unix off, takes them.
        res = ca.push(b.unix, ["k0", "k1"], namespace="m")
        assert codes(res) == [OK, OK], res
        assert [cb.get(k, namespace="m", want_coded=True) for k in ("k0", "k1")] == coded
    assert a.stop() == 0 and b.stop() == 0


def test_async_client_push_and_pull(tmp):
    import asyncio
    from latticekv.aio import AsyncClient
    a = Daemon(os.path.join(tmp, "a"))
    b = Daemon(os.path.join(tmp, "b"))
    with latticekv.Client(a.tcp, timeout=HANG_GUARD_S) as ca:
        coded = put_blocks(ca, 2, 111)

    async def run():
        async with AsyncClient(a.tcp, timeout=HANG_GUARD_S) as aa, \
                AsyncClient(b.tcp, timeout=HANG_GUARD_S) as ab:
            pushed = await aa.push(b.tcp, ["k0", "nope"])
            pulled = await ab.pull(a.tcp, ["k1"])
            got = [await ab.get(k, want_coded=True) for k in ("k0", "k1")]
            return pushed, pulled, got
    pushed, pulled, got = asyncio.run(run())
    assert codes(pushed) == [OK, grpc.StatusCode.NOT_FOUND] and codes(pulled) == [OK]
    assert got == coded
    assert a.stop() == 0 and b.stop() == 0
