# SPDX-License-Identifier: Apache-2.0
"""Codec profile 2 through latticekvd (issue 14, item 5): one daemon stores and
serves both profiles side by side, with real processes on loopback.

Put with profile 2 encodes with profile 2 (container version 3, the newest);
Get decodes whatever profile and version the stored container names; a coded
Put of a version 3 or of a version 2 container (`latticekv codec encode
--format 2`) is verified and stored as is, want_coded Get returns it and a
plain Get decodes it. The
daemon's containers are compared byte for byte with the CLI's own encode of
the same array (`latticekv codec encode --profile P`), so the service path and
the streaming CLI path agree. Sizes, quotas and stats use the container's
actual length, never profile 2's worst case. Every daemon here is stopped
with SIGTERM at the end, which checks that the in-flight budget is empty
(conftest.Daemon.stop).

Ports: the OS picks them (conftest.free_port) unless LKV_TEST_PORTS=LO-HI
names a range to use, daemons in its lower half and redis-server in its
upper half.
"""

import glob
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time

import grpc
import numpy as np
import pytest

import conftest
import latticekv
from conftest import HANG_GUARD_S, kv_like
from latticekv import pb

REDIS_SERVER = os.environ.get("LKV_REDIS_SERVER", "/usr/bin/redis-server")
REDIS_CLI = os.environ.get("LKV_REDIS_CLI", "/usr/bin/redis-cli")
DIM = 128
VERSION_OFF = 4  # codec/FORMAT.md: u16 version after the 4-byte magic
VERSION_OF_PROFILE = {1: 1, 2: 3}  # what a Put or Compress with that profile writes


def _port_range():
    spec = os.environ.get("LKV_TEST_PORTS", "")
    if not spec:
        return None
    lo, hi = (int(x) for x in spec.split("-"))
    return lo, hi


def _port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_port_in(lo, hi):
    return next(p for p in range(lo, hi + 1) if _port_free(p))


@pytest.fixture(autouse=True)
def ports(monkeypatch):
    """Daemons of this module take their TCP port from LKV_TEST_PORTS when set."""
    rng = _port_range()
    if rng:
        lo, hi = rng
        monkeypatch.setattr(conftest, "free_port", lambda: _free_port_in(lo, (lo + hi) // 2))
    return rng


STARTED = []


def start_daemon(tmpdir, extra=()):
    d = conftest.Daemon(tmpdir, list(extra))
    STARTED.append(d)
    return d


def stop_ok(d, sig=signal.SIGTERM):
    rc = d.stop(sig)
    if sig == signal.SIGTERM:
        assert rc == 0, "latticekvd exited with %d:\n%s" % (rc, d.log_text())


@pytest.fixture(autouse=True)
def no_daemon_left():
    """A failed assertion leaves no latticekvd running behind it."""
    yield
    while STARTED:
        d = STARTED.pop()
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
            d.log.close()


@pytest.fixture
def tmp():
    with tempfile.TemporaryDirectory(prefix="lkv-p2-") as d:
        yield d


def version_of(coded):
    return int.from_bytes(coded[VERSION_OFF:VERSION_OFF + 2], "little")


def cli_encode(cli, tmp, arr, profile, q, name, fmt=None):
    """The CLI's own container of arr (fp32, last dim DIM); fmt: --format."""
    src = os.path.join(tmp, name + ".f32")
    out = os.path.join(tmp, name + ".lkv")
    arr.astype("<f4").tofile(src)
    r = cli("codec", "encode", "--profile", profile, "--variant", "e8", "--q", q, "--dim", DIM,
            "--in", src, "--in-dtype", "f32", "--out", out, "--no-progress",
            *(() if fmt is None else ("--format", fmt)))
    assert r.returncode == 0, r.stderr.decode()
    with open(out, "rb") as f:
        return src, out, f.read()


def cli_decode(cli, enc, shape):
    """The CLI's fp32 decode of the container file enc."""
    out = enc + ".out"
    r = cli("codec", "decode", "--in", enc, "--out", out, "--out-dtype", "f32", "--no-progress",
            "--force")
    assert r.returncode == 0, r.stderr.decode()
    return np.fromfile(out, dtype="<f4").reshape(shape)


def tier_row(client, name):
    rows = [t for t in client.stats()["tiers"] if t["name"] == name]
    assert rows, client.stats()["tiers"]
    return rows[0]


# ---- both profiles side by side ------------------------------------------------

def test_both_profiles_side_by_side_byte_identical_to_cli_encode(tmp, cli):
    # 1000 vectors with --batch-max-vectors 256: profile 1 is split over
    # batches, profile 2 runs whole; both must give the CLI's bytes.
    d = start_daemon(tmp, ["--batch-max-vectors", "256"])
    x = kv_like((1000, DIM), 14)
    cases = [(1, 38), (2, 38), (2, 54), (1, 54)]
    stored = {}
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        for profile, q in cases:
            name = "p%d-q%d" % (profile, q)
            src, enc, want = cli_encode(cli, tmp, x, profile, q, name)
            assert version_of(want) == VERSION_OF_PROFILE[profile]
            # The daemon encodes (Python client, CLI put) and the CLI's container
            # goes in as is (--coded): three keys, one container.
            assert c.put(name + "-py", x, q=q, profile=profile) == len(want)
            r = cli("put", "--addr", d.tcp, "--key", name + "-cli", "--in", src, "--in-dtype",
                    "f32", "--dim", DIM, "--q", q, "--profile", profile)
            assert r.returncode == 0, r.stderr.decode()
            assert ("coded_bytes=%d" % len(want)) in r.stdout.decode()
            r = cli("put", "--addr", d.tcp, "--key", name + "-coded", "--in", enc, "--coded")
            assert r.returncode == 0, r.stderr.decode()
            assert ("coded_bytes=%d" % len(want)) in r.stdout.decode()
            coded, info = c.compress(x, q=q, profile=profile, info=True)
            assert coded == want
            assert info.coded_bytes == len(want)
            if profile == 2:  # the mean over this tensor, rounded up
                payload_bits = 8 * (len(want) - (40 + 8 * 2))  # FORMAT.md version 2/3 header
                assert info.bits_per_vector == -(-payload_bits // 1000)
            else:
                assert info.bits_per_vector == (848 if q == 38 else info.bits_per_vector)
            stored[name] = want

        # Every key of both profiles is served at once, each as it was stored.
        for name, want in stored.items():
            for suffix in ("-py", "-cli", "-coded"):
                got, tier = c.get(name + suffix, want_coded=True, tier=True)
                assert got == want, name + suffix
                assert tier == "host"
            # Get decodes by the container's own profile: the same values as
            # the CLI's decode of the same container.
            enc = os.path.join(tmp, name + ".lkv")
            out = os.path.join(tmp, name + ".out")
            r = cli("codec", "decode", "--in", enc, "--out", out, "--out-dtype", "f32",
                    "--no-progress")
            assert r.returncode == 0, r.stderr.decode()
            ref = np.fromfile(out, dtype="<f4").reshape(x.shape)
            y = c.get(name + "-py", out_dtype="fp32")
            assert np.array_equal(y, ref), name
            assert np.array_equal(c.decompress(want, out_dtype="fp32"), ref)
            err = float(np.sum((y - x) ** 2) / np.sum(x ** 2))
            assert err < 2e-3, (name, err)

        # Profile 2 is the smaller one at the same Q here (entropy coding).
        assert len(stored["p2-q38"]) < len(stored["p1-q38"])
        assert tier_row(c, "host")["blocks"] == 3 * len(cases)
        # The host tier holds the actual containers (plus names), nothing more.
        want_used = sum(3 * len(v) + len(k + "-py") + len(k + "-cli") + len(k + "-coded")
                        for k, v in stored.items())
        assert tier_row(c, "host")["used_bytes"] == want_used
    stop_ok(d)


def test_streams_mix_profiles_in_order(tmp):
    # A long wait lets the batcher see both profiles pending at once.
    d = start_daemon(tmp, ["--batch-max-wait-us", "5000", "--stream-window", "8"])
    xs = [kv_like((n, DIM), 40 + n) for n in (1, 127, 128, 129, 300, 0 + 5)]
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        want = [c.compress(x, profile=1 + (i % 2)) for i, x in enumerate(xs)]
        assert [version_of(w) for w in want] == [1, 3, 1, 3, 1, 3]
        reqs = [pb.PutRequest(key=pb.BlockKey(namespace="mix", key=b"s%d" % i),
                              tensor=latticekv.client.tensor_of(x, None),
                              params=pb.CodecParams(profile=1 + (i % 2)))
                for i, x in enumerate(xs)]
        replies = list(c.kv.PutStream(iter(reqs), timeout=HANG_GUARD_S))
        assert [r.coded_bytes for r in replies] == [len(w) for w in want]
        got = c.get_many([b"s%d" % i for i in range(len(xs))], namespace="mix", want_coded=True)
        assert got == want
        assert c.compress_many(xs[1::2], profile=2) == want[1::2]
        for i, x in enumerate(xs):
            assert np.array_equal(c.get(b"s%d" % i, namespace="mix", out_dtype="fp32"),
                                  c.decompress(want[i], out_dtype="fp32"))
        # Empty tensors are valid in profile 2 as well: a header-only container.
        empty = np.zeros((0, 4, DIM), np.float32)
        coded = c.compress(empty, profile=2)
        assert version_of(coded) == 3 and len(coded) == 40 + 8 * 3
        assert c.put("empty", empty, profile=2) == len(coded)
        assert c.get("empty", want_coded=True) == coded
        assert c.get("empty").shape == (0, 4, DIM)
    stop_ok(d)


# ---- container version 2 (the older profile 2 layout) --------------------------

def test_version_2_containers_are_verified_stored_and_served(tmp, cli):
    """Containers of `latticekv codec encode --profile 2 --format 2` (chunks of
    128 vectors, 16-bit norms) go in as coded Puts, by the Python client and
    by `latticekv put --coded`: each is stored byte for byte, want_coded Get
    returns it, and Get, GetStream and Decompress decode it to the CLI's own
    decode. A long batch wait puts version 2 and version 3 decodes of the same
    Q and shape in front of the batcher at once: it must not mix them in one
    launch (server/batcher.c), so each comes back as its own version decodes."""
    d = start_daemon(tmp, ["--batch-max-wait-us", "20000", "--stream-window", "16"])
    # Around the chunk sizes of both versions (128 and 256) and across several.
    sizes = (1, 127, 128, 129, 255, 256, 257, 700)
    keys, want_coded, want_values = [], {}, {}
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        for i, n in enumerate(sizes):
            x = kv_like((n, DIM), 300 + i)
            for fmt in (2, 3):
                name = "n%d-v%d" % (n, fmt)
                _, enc, coded = cli_encode(cli, tmp, x, 2, 54, name, fmt=fmt)
                assert version_of(coded) == fmt
                ref = cli_decode(cli, enc, x.shape)
                assert float(np.sum((ref - x) ** 2) / np.sum(x ** 2)) < 2e-3, name
                if fmt == 3:  # what the daemon writes itself
                    assert c.compress(x, q=54, profile=2) == coded
                assert c.put_coded(name + "-py", coded) == len(coded)
                r = cli("put", "--addr", d.tcp, "--key", name + "-cli", "--in", enc, "--coded")
                assert r.returncode == 0, r.stderr.decode()
                assert ("coded_bytes=%d" % len(coded)) in r.stdout.decode()
                for suffix in ("-py", "-cli"):
                    keys.append(name + suffix)
                    want_coded[name + suffix] = coded
                    want_values[name + suffix] = ref
            # At one Q version 2 costs more bytes than version 3 (once a
            # whole chunk's savings outweigh the pad byte).
            if n >= 128:
                assert len(want_coded["n%d-v2-py" % n]) > len(want_coded["n%d-v3-py" % n]), n

        # Stored as is: the coded bytes come back unchanged, from the host tier.
        for k in keys:
            assert c.get(k, want_coded=True, tier=True) == (want_coded[k], "host"), k
        assert tier_row(c, "host")["blocks"] == len(keys)
        # Served decoded: one at a time, then all in one stream (versions
        # interleaved, so that both are pending in the batcher together).
        for k in keys:
            assert np.array_equal(c.get(k, out_dtype="fp32"), want_values[k]), k
            assert np.array_equal(c.decompress(want_coded[k], out_dtype="fp32"), want_values[k]), k
        got = c.get_many(keys, out_dtype="fp32")
        for k, y in zip(keys, got):
            assert np.array_equal(y, want_values[k]), k
        # Concurrent Decompress calls of both versions of one shape.
        v2 = [want_coded["n%d-v2-py" % n] for n in sizes]
        v3 = [want_coded["n%d-v3-py" % n] for n in sizes]
        with latticekv.Client(d.unix, timeout=HANG_GUARD_S) as c2:
            out = {}

            def worker(name, client, items):
                out[name] = [client.decompress(b, out_dtype="fp32") for b in items]
            ts = [threading.Thread(target=worker, args=("v2", c, v2)),
                  threading.Thread(target=worker, args=("v3", c2, v3))]
            for t in ts:
                t.start()
            for t in ts:
                t.join(HANG_GUARD_S)
            for fmt, items in (("v2", v2), ("v3", v3)):
                for n, y in zip(sizes, out[fmt]):
                    assert np.array_equal(y, want_values["n%d-%s-py" % (n, fmt)]), (fmt, n)
        # Stats count what was stored, each container at its own size.
        want_used = sum(len(want_coded[k]) + len(k) for k in keys)
        assert tier_row(c, "host")["used_bytes"] == want_used
    stop_ok(d)


# ---- bad values ----------------------------------------------------------------

@pytest.mark.parametrize("profile", [3, 7, 255, 2 ** 31, 2 ** 32 - 1])
def test_unknown_profile_is_invalid_argument_naming_it(tmp, profile):
    d = start_daemon(tmp)
    x = kv_like((4, DIM), 3)
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        for call in (lambda: c.put("bad", x, profile=profile),
                     lambda: c.compress(x, profile=profile),
                     lambda: c.put_many([("bad", x)], profile=profile)):
            with pytest.raises(latticekv.Error) as e:
                call()
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "profile=%d" % profile in str(e.value)
        assert c.lookup(["bad"]) == (0, [False])
        assert tier_row(c, "host")["blocks"] == 0
    stop_ok(d)


def test_bad_profile_combinations_and_containers(tmp, cli):
    d = start_daemon(tmp)
    x = kv_like((200, DIM), 5)
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        # Profile 2 is E8 only.
        with pytest.raises(latticekv.Error) as e:
            c.put("d4", x, variant="d4", profile=2)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "variant=D4" in str(e.value) and "profile=2" in str(e.value)
        # 0 is profile 1, as in the codec.
        assert version_of(c.compress(x, profile=0)) == 1
        assert c.compress(x, profile=0) == c.compress(x, profile=1) == c.compress(x)

        # A version 3 or version 2 container that does not verify is refused,
        # nothing stored, and the old value under the key stays.
        good = c.compress(x, profile=2)
        assert version_of(good) == 3
        _, _, good2 = cli_encode(cli, tmp, x, 2, 38, "v2", fmt=2)
        assert version_of(good2) == 2
        c.put_coded("k", good)
        for ok in (good, good2):
            flipped = bytearray(ok)
            flipped[-3] ^= 0x10  # a payload byte: the payload checksum no longer matches
            for bad in (bytes(flipped), ok[:-1], ok + b"\0", ok[:60]):
                with pytest.raises(latticekv.Error) as e:
                    c.put_coded("k", bad)
                assert e.value.code == grpc.StatusCode.DATA_LOSS, e.value
                with pytest.raises(latticekv.Error) as e:
                    c.decompress(bad)
                assert e.value.code == grpc.StatusCode.DATA_LOSS, e.value
        assert c.get("k", want_coded=True) == good
        assert tier_row(c, "host")["blocks"] == 1
        # An unknown version is refused by name (1 to 4 are known).
        for v in (0, 5):
            bad = bytearray(good)
            bad[VERSION_OFF:VERSION_OFF + 2] = v.to_bytes(2, "little")
            with pytest.raises(latticekv.Error) as e:
                c.put_coded("k", bytes(bad))
            assert e.value.code == grpc.StatusCode.DATA_LOSS, e.value
            assert "version %d" % v in str(e.value)
        assert c.get("k", want_coded=True) == good

        # The CLI refuses an unknown profile before sending anything.
        src = os.path.join(tmp, "x.f32")
        x.astype("<f4").tofile(src)
        for bad in ("3", "0", "two"):
            r = cli("put", "--addr", d.tcp, "--key", "clibad", "--in", src, "--in-dtype", "f32",
                    "--dim", DIM, "--profile", bad)
            assert r.returncode == 2, r
            assert ("--profile=%s" % bad) in r.stderr.decode()
        assert c.lookup(["clibad"]) == (0, [False])
    # The Python client refuses what is not an integer.
    with pytest.raises(ValueError, match="profile"):
        latticekv.client._params(None, None, "2")
    stop_ok(d)


# ---- sizes are the actual container's ------------------------------------------

def test_quota_and_host_memory_count_the_actual_container(tmp, cli):
    x = kv_like((40, DIM), 9)
    big = kv_like((120, DIM), 10)
    first = os.path.join(tmp, "first")
    os.mkdir(first)
    d = start_daemon(first)
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        small_len = len(c.compress(x, profile=2))
        big_len = len(c.compress(big, profile=2))
    stop_ok(d)
    # Profile 2's worst case for 40 vectors is far above the container.
    info = cli("codec", "info", "--profile", "2", "--q", "38", "--dim", DIM, "--json")
    worst_bits = float(info.stdout.decode().split('"bits_per_vector_worst":')[1].split(",")[0])
    quota = small_len + len("q") + len("qk")  # a block is charged with its names
    assert quota < 40 * worst_bits / 8

    run = os.path.join(tmp, "run")
    os.mkdir(run)
    d = start_daemon(run, ["--namespace-quota", "q=%d" % quota, "--host-mem-bytes", "4096"])
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        # Fits the quota and host memory by its actual size, not the bound.
        assert 40 * worst_bits / 8 > 4096
        assert c.put("qk", x, namespace="q", profile=2) == small_len
        assert tier_row(c, "host")["used_bytes"] == quota
        with pytest.raises(latticekv.Error) as e:
            c.put("qk2", x[:8], namespace="q", profile=2)
        assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert 'namespace "q"' in str(e.value) and "quota of %d" % quota in str(e.value)
        # A block larger than host memory is refused naming its actual size.
        assert big_len > 4096
        with pytest.raises(latticekv.Error) as e:
            c.put("big", big, profile=2)
        assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "block of %d coded bytes exceeds host-mem-bytes=4096" % big_len in str(e.value)
        assert c.lookup(["big"]) == (0, [False])
        assert c.get("qk", namespace="q", want_coded=True) == c.compress(x, profile=2)
        # Stats count what the codec produced, each container at its size: the
        # stored block, the two refused ones and the Compress just above.
        produced = c.stats()["coded_bytes_out"]
        assert produced == 2 * small_len + big_len + len(c.compress(x[:8], profile=2))
    stop_ok(d)


def test_compress_limit_is_checked_against_the_actual_reply(tmp, cli):
    # bf16 input is 256 bytes a vector and profile 2's worst case more: a
    # request under the message limit whose worst-case reply is over it. The
    # reply that goes out is the actual container, well under the limit.
    n = 2000
    limit = 256 * n + 40000
    info = cli("codec", "info", "--profile", "2", "--q", "38", "--dim", DIM, "--json")
    worst_bits = float(info.stdout.decode().split('"bits_per_vector_worst":')[1].split(",")[0])
    assert n * worst_bits / 8 > limit
    d = start_daemon(tmp, ["--max-message-bytes", str(limit)])
    x = kv_like((n, DIM), 21)
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        coded = c.compress(x, dtype="bf16", profile=2)
        assert version_of(coded) == 3 and len(coded) < limit // 2
        assert c.compress_many([x, x[:5]], dtype="bf16", profile=2)[0] == coded
        assert c.put("lim", x, dtype="bf16", profile=2) == len(coded)
        assert c.get("lim", want_coded=True) == coded
    stop_ok(d)


# ---- SSD tier --------------------------------------------------------------------

def test_ssd_restart_rebuilds_the_index_and_serves_profile_2_byte_identical(tmp, cli):
    ssd = os.path.join(tmp, "ssd")
    os.mkdir(ssd)
    want = {}
    for rnd, sig in enumerate((signal.SIGKILL, signal.SIGTERM)):
        run = os.path.join(tmp, "run%d" % rnd)
        os.mkdir(run)
        d = start_daemon(run, ["--ssd-dir", ssd, "--ssd-bytes", "64MiB", "--ssd-fsync",
                               "always"])
        with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
            for key, coded in want.items():
                assert c.get(key, namespace="s", want_coded=True) == coded
            for i in range(6):
                x = kv_like((50 + 97 * i, DIM), 100 * rnd + i)
                profile = 2 if i % 3 else 1
                key = "r%d-%d" % (rnd, i)
                n = c.put(key, x, namespace="s", profile=profile)
                want[key] = c.compress(x, profile=profile)
                assert n == len(want[key])
            # The CLI's container: version 2 in the first round, 3 in the second.
            _, _, enc = cli_encode(cli, run, kv_like((333, DIM), rnd), 2, 54, "cli",
                                   fmt=2 + rnd)
            assert version_of(enc) == 2 + rnd
            c.put_coded("r%d-cli" % rnd, enc, namespace="s")
            want["r%d-cli" % rnd] = enc
        stop_ok(d, sig)

    final = os.path.join(tmp, "final")
    os.mkdir(final)
    d = start_daemon(final, ["--ssd-dir", ssd, "--ssd-bytes", "64MiB"])
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        row = tier_row(c, "ssd")
        assert row["blocks"] == len(want)
        assert row["dropped_blocks"] == 0
        files = [f for f in glob.glob(os.path.join(ssd, "**"), recursive=True)
                 if os.path.isfile(f) and not os.path.basename(f).startswith(".")]
        assert row["used_bytes"] == sum(os.path.getsize(f) for f in files)
        versions = [version_of(v) for v in want.values()]
        assert [versions.count(v) for v in (1, 2, 3)] == [4, 1, 9]
        for key, coded in want.items():
            got, tier = c.get(key, namespace="s", want_coded=True, tier=True)
            assert got == coded, key
            assert tier == "ssd"
            assert np.array_equal(c.get(key, namespace="s", out_dtype="fp32"),
                                  c.decompress(coded, out_dtype="fp32"))
    stop_ok(d)


# ---- Redis tier ------------------------------------------------------------------

class Redis:
    def __init__(self, tmp, port):
        self.port = port
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + HANG_GUARD_S
        while self.cli("PING") != "PONG":
            assert self.proc.poll() is None and time.monotonic() < deadline, "redis did not start"
            time.sleep(0.02)
        assert "process_id:%d" % self.proc.pid in self.cli("INFO", "server"), port

    def cli(self, *args):
        p = subprocess.run([REDIS_CLI, "-p", str(self.port)] + list(args), capture_output=True,
                           timeout=HANG_GUARD_S)
        return p.stdout.decode().strip()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def redis(tmp, ports):
    if not (os.access(REDIS_SERVER, os.X_OK) and os.access(REDIS_CLI, os.X_OK)):
        pytest.skip("redis-server / redis-cli not installed")
    lo, hi = ports or (21500, 21599)
    start = (lo + hi) // 2 + 1 + os.getpid() % 10
    rdir = os.path.join(tmp, "redis")
    os.mkdir(rdir)
    r = Redis(rdir, _free_port_in(start, hi))
    yield r
    r.kill()


def test_redis_tier_serves_profile_2_blocks_after_a_restart(tmp, redis, cli):
    seed = "redis://127.0.0.1:%d" % redis.port
    want = {}
    run1 = os.path.join(tmp, "run1")
    os.mkdir(run1)
    d = start_daemon(run1, ["--redis", seed])
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        for i in range(4):
            x = kv_like((10 + 150 * i, DIM), 70 + i)
            profile = 1 + i % 2
            c.put("r%d" % i, x, namespace="m", profile=profile)
            want["r%d" % i] = c.compress(x, profile=profile)
        # and a version 2 container, stored as is
        _, _, enc = cli_encode(cli, run1, kv_like((200, DIM), 77), 2, 38, "v2", fmt=2)
        assert version_of(enc) == 2
        c.put_coded("r-v2", enc, namespace="m")
        want["r-v2"] = enc
        assert redis.cli("DBSIZE") == "5"
    stop_ok(d)
    run2 = os.path.join(tmp, "run2")
    os.mkdir(run2)
    d = start_daemon(run2, ["--redis", seed])
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        for key, coded in want.items():
            assert c.get(key, namespace="m", want_coded=True, tier=True) == (coded, "redis")
            assert np.array_equal(c.get(key, namespace="m", out_dtype="fp32"),
                                  c.decompress(coded, out_dtype="fp32"))
    stop_ok(d)
