# SPDX-License-Identifier: Apache-2.0
"""The storage tiers end to end: latticekvd with an SSD directory and a Redis
server, real processes on loopback (docs/service.md, "Tiers").

Every daemon here is started by the test with its own directory; redis-server
runs on a port of 21000-21999 in its own directory and is killed at the end
even when the test fails.
"""

import glob
import os
import signal
import socket
import subprocess
import tempfile
import time

import grpc
import pytest

import latticekv
import conftest
from conftest import DAEMON, HANG_GUARD_S, kv_like

REDIS_SERVER = os.environ.get("LKV_REDIS_SERVER", "/usr/bin/redis-server")
REDIS_CLI = os.environ.get("LKV_REDIS_CLI", "/usr/bin/redis-cli")


STARTED = []


def Daemon(tmpdir, extra=()):  # noqa: N802 - conftest's Daemon, remembered for cleanup
    d = conftest.Daemon(tmpdir, extra)
    STARTED.append(d)
    return d


@pytest.fixture(autouse=True)
def no_daemon_left():
    """A failed assertion leaves no latticekvd running behind it."""
    yield
    while STARTED:
        d = STARTED.pop()
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


@pytest.fixture
def tmp():
    with tempfile.TemporaryDirectory(prefix="lkv-tiers-") as d:
        yield d


def blocks(client, n, seed, tokens=4):
    """n distinct coded containers of tokens x 128 (a few KiB each)."""
    return [client.compress(kv_like((tokens, 128), seed + i)) for i in range(n)]


def tier_row(client, name):
    rows = [t for t in client.stats()["tiers"] if t["name"] == name]
    assert rows, client.stats()["tiers"]
    return rows[0]


def ssd_daemon(tmp, ssd, *extra, fsync="always", size="64MiB"):
    return Daemon(tmp, ["--ssd-dir", ssd, "--ssd-bytes", size, "--ssd-fsync", fsync] + list(extra))


def stop_ok(d):
    rc = d.stop()
    assert rc == 0, "latticekvd exited with %d:\n%s" % (rc, d.log_text())


# ---- SSD ---------------------------------------------------------------------

def test_ssd_kill9_loop_every_acked_put_survives_byte_identical(tmp):
    ssd = os.path.join(tmp, "ssd")
    os.mkdir(ssd)
    acked = {}
    for rnd in range(3):
        run = os.path.join(tmp, "run%d" % rnd)
        os.mkdir(run)
        d = ssd_daemon(run, ssd)
        with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
            # Everything acknowledged before every earlier kill is still there.
            for key, coded in acked.items():
                got, tier = c.get(key, want_coded=True, tier=True)
                assert got == coded, key
                assert tier == "ssd"
            for i, coded in enumerate(blocks(c, 8, 100 * rnd)):
                key = "r%d-%d" % (rnd, i)
                c.put_coded(key, coded)
                acked[key] = coded
        d.stop(signal.SIGKILL)
    final = os.path.join(tmp, "final")
    os.mkdir(final)
    d = ssd_daemon(final, ssd)
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        assert tier_row(c, "ssd")["blocks"] == len(acked)
        for key, coded in acked.items():
            assert c.get(key, want_coded=True) == coded
        # The second read is served from host memory: promotion on hit.
        assert c.get("r0-0", want_coded=True, tier=True)[1] == "host"
    stop_ok(d)
    assert not glob.glob(os.path.join(ssd, ".tmp-*"))


def test_truncated_and_bit_flipped_files_are_dropped_and_never_served(tmp):
    ssd = os.path.join(tmp, "ssd")
    os.mkdir(ssd)
    d = ssd_daemon(tmp, ssd)
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        coded = blocks(c, 3, 7)
        for i, b in enumerate(coded):
            c.put_coded("k%d" % i, b)
    stop_ok(d)
    def key_of(path):  # server/tier/README.md: ns_len @8, key_len @12, names from 40
        with open(path, "rb") as f:
            head = f.read(40 + 64)
        ns_len, key_len = (int.from_bytes(head[o:o + 4], "little") for o in (8, 12))
        return head[40 + ns_len:40 + ns_len + key_len]
    files = sorted(glob.glob(os.path.join(ssd, "*.lkv")), key=key_of)
    assert [key_of(f) for f in files] == [b"k0", b"k1", b"k2"]
    with open(files[0], "r+b") as f:  # k0: cut short
        f.truncate(os.path.getsize(files[0]) - 100)
    with open(files[1], "r+b") as f:  # k1: one bit of the data flipped
        f.seek(os.path.getsize(files[1]) - 10)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x10]))
    again = os.path.join(tmp, "again")
    os.mkdir(again)
    d = ssd_daemon(again, ssd)
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        row = tier_row(c, "ssd")
        assert row["dropped_blocks"] == 2 and row["blocks"] == 1, row
        for key in ("k0", "k1"):
            with pytest.raises(latticekv.Error) as e:
                c.get(key, want_coded=True)
            assert e.value.code == grpc.StatusCode.NOT_FOUND
        assert c.get("k2", want_coded=True) == coded[2]
    stop_ok(d)
    assert len(glob.glob(os.path.join(ssd, "*.lkv"))) == 1


def test_full_disk_is_resource_exhausted_without_a_torn_file(tmp):
    ssd = os.path.join(tmp, "ssd")
    os.mkdir(ssd)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", ssd],
                             capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    d = None
    try:
        d = ssd_daemon(tmp, ssd, size="64MiB")
        with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
            coded = blocks(c, 1, 3, tokens=256)[0]  # ~27 KiB: the disk holds < 10
            stored, refused = [], 0
            for i in range(20):
                try:
                    c.put_coded("f%d" % i, coded)
                    stored.append("f%d" % i)
                except latticekv.Error as e:
                    assert e.code == grpc.StatusCode.RESOURCE_EXHAUSTED, e
                    assert "ssd" in e.details.lower() or "space" in e.details.lower(), e
                    refused += 1
            assert refused > 0 and stored
            for key in stored:
                assert c.get(key, want_coded=True) == coded
            assert c.health() == "SERVING"
        stop_ok(d)
        assert not glob.glob(os.path.join(ssd, ".tmp-*")), os.listdir(ssd)
    finally:
        if d and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        subprocess.run(["umount", ssd], check=True)


def test_write_back_demotes_in_lru_order_and_promotes_on_hit(tmp):
    ssd = os.path.join(tmp, "ssd")
    os.mkdir(ssd)
    d = ssd_daemon(tmp, ssd, "--tier-policy", "write-back", "--host-mem-bytes", "16KiB",
                   fsync="never")
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        coded = blocks(c, 6, 11, tokens=16)  # ~1.7 KiB each: host memory holds 9
        assert len(set(map(len, coded))) == 1
        per_host = (16 << 10) // (len(coded[0]) + 3)
        keys = ["w%02d" % i for i in range(per_host + 3)]
        for i, key in enumerate(keys):
            c.put_coded(key, coded[i % len(coded)])
        assert tier_row(c, "host")["evictions"] == 3
        # The three oldest went down to the SSD, the rest stayed in memory.
        ssd_row = tier_row(c, "ssd")
        assert ssd_row["blocks"] == 3, ssd_row
        assert c.lookup(keys)[0] == len(keys)
        for key in keys[:3]:
            assert c.get(key, want_coded=True, tier=True)[1] == "ssd"
        assert c.get(keys[-1], want_coded=True, tier=True)[1] == "host"
        # A promoted block is in host memory again.
        assert c.get(keys[0], want_coded=True, tier=True) == (coded[0], "host")
        c.delete(keys[0])
        with pytest.raises(latticekv.Error) as e:
            c.get(keys[0], want_coded=True)
        assert e.value.code == grpc.StatusCode.NOT_FOUND
    stop_ok(d)


def test_host_watermarks_evict_from_high_down_to_low(tmp):
    cap = 16 << 10
    d = Daemon(tmp, ["--host-mem-bytes", str(cap), "--host-high-watermark", "80",
                     "--host-low-watermark", "40"])
    high, low = cap * 80 // 100, cap * 40 // 100
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        coded = blocks(c, 1, 61, tokens=16)[0]  # ~1.7 KiB: several fit under each mark
        evicting_puts = 0
        for i in range(24):
            before = tier_row(c, "host")
            c.put_coded("h%02d" % i, coded)
            row = tier_row(c, "host")
            assert row["used_bytes"] <= high, row
            if row["evictions"] > before["evictions"]:
                evicting_puts += 1
                # Down to the low mark, new block included: more than one
                # block went, not one per Put.
                assert row["used_bytes"] <= low, row
                assert row["evictions"] - before["evictions"] >= 2, (before, row)
            else:
                assert row["blocks"] == before["blocks"] + 1, (before, row)
        assert evicting_puts >= 2
    stop_ok(d)


def test_namespace_quota_is_resource_exhausted_naming_namespace_and_quota(tmp):
    d = Daemon(tmp, ["--namespace-quota", "small=8KiB"])
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        coded = blocks(c, 1, 5)[0]
        n = 0
        with pytest.raises(latticekv.Error) as e:
            while n < 100:
                c.put_coded("q%03d" % n, coded, namespace="small")
                n += 1
        assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert '"small"' in e.value.details and "8192" in e.value.details, e.value.details
        assert n == (8 << 10) // (len(coded) + len("small") + 4)
        # Replacing a block within the quota and other namespaces still work.
        c.put_coded("q000", coded, namespace="small")
        for i in range(n + 2):
            c.put_coded("q%03d" % i, coded, namespace="big")
        c.delete("q000", namespace="small")
        c.put_coded("again", coded, namespace="small")
    stop_ok(d)


# ---- flags -------------------------------------------------------------------

@pytest.mark.parametrize("args,named", [
    (["--ssd-fsync", "sometimes"], "--ssd-fsync=sometimes"),
    (["--ssd-bytes", "12Q"], "--ssd-bytes=12Q"),
    (["--ssd-dir", "/nonexistent/lkv", "--ssd-bytes", "1MiB"], "/nonexistent/lkv"),
    (["--ssd-dir", "/tmp"], "--ssd-bytes"),
    (["--redis", "127.0.0.1:6379"], "--redis=127.0.0.1:6379"),
    (["--redis", "redis://127.0.0.1:99999"], "redis://127.0.0.1:99999"),
    (["--redis", "redis://127.0.0.1:21999", "--redis-password-file", "/nonexistent/pw"],
     "/nonexistent/pw"),
    (["--redis-queue-bytes", "none"], "--redis-queue-bytes=none"),
    (["--tier-policy", "write-sometimes"], "--tier-policy=write-sometimes"),
    (["--namespace-quota", "ns"], "--namespace-quota=ns"),
    (["--host-high-watermark", "101"], "--host-high-watermark=101"),
    (["--host-low-watermark", "0"], "--host-low-watermark=0"),
    (["--host-high-watermark", "50", "--host-low-watermark", "60"], "--host-low-watermark=60"),
    (["--ssd-high-watermark", "half"], "--ssd-high-watermark=half"),
    (["--ssd-high-watermark", "70"], "--ssd-low-watermark=90"),
    (["--namespace-quota", "ns=1", "--namespace-quota", "ns=2"], '"ns"'),
])
def test_bad_tier_flags_exit_2_naming_the_value(args, named):
    if not DAEMON:
        pytest.skip("LKV_DAEMON is not set")
    p = subprocess.run([DAEMON, "--listen", "127.0.0.1:0"] + args, capture_output=True,
                       timeout=HANG_GUARD_S)
    assert p.returncode == 2, p
    assert named in p.stderr.decode(), p.stderr


# ---- Redis -------------------------------------------------------------------

def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class Redis:
    def __init__(self, tmp, port, cluster=False):
        self.dir, self.port = tmp, port
        self.proc = None
        # A cluster node is never failed over while it is down (long node
        # timeout), and the others keep serving their slots.
        self.extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                      "--cluster-node-timeout", "60000", "--cluster-require-full-coverage",
                      "no", "--cluster-port", str(port + 500)] if cluster else []
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir] + self.extra,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + HANG_GUARD_S
        while self.cli("PING") != "PONG":
            assert self.proc.poll() is None and time.monotonic() < deadline, "redis did not start"
            time.sleep(0.02)
        # The server answering is ours, not another process's on the same port.
        assert "process_id:%d" % self.proc.pid in self.cli("INFO", "server"), self.port

    def cli(self, *args):
        p = subprocess.run([REDIS_CLI, "-p", str(self.port)] + list(args), capture_output=True,
                           timeout=HANG_GUARD_S)
        return p.stdout.decode().strip()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def redis(tmp):
    if not (os.access(REDIS_SERVER, os.X_OK) and os.access(REDIS_CLI, os.X_OK)):
        pytest.skip("redis-server / redis-cli not installed")
    start = 21300 + os.getpid() % 50  # spread concurrent runs over the range
    port = next(p for p in range(start, 21400) if port_free(p))
    rdir = os.path.join(tmp, "redis")
    os.mkdir(rdir)
    r = Redis(rdir, port)
    yield r
    r.kill()


def wait_link(c, want):
    deadline = time.monotonic() + HANG_GUARD_S
    while tier_row(c, "redis")["link"] != want:
        assert time.monotonic() < deadline, tier_row(c, "redis")
        time.sleep(0.05)


def test_redis_tier_serves_after_restart_and_local_tiers_outlive_a_dead_node(tmp, redis):
    seed = "redis://127.0.0.1:%d" % redis.port
    run1 = os.path.join(tmp, "d1")
    os.mkdir(run1)
    d = Daemon(run1, ["--redis", seed])
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        coded = blocks(c, 4, 21)
        for i, b in enumerate(coded):
            c.put_coded("r%d" % i, b, namespace="m")
        wait_link(c, "up")
        assert redis.cli("DBSIZE") == "4"
    stop_ok(d)
    # A new daemon has empty host memory: the blocks come from Redis, then host.
    run2 = os.path.join(tmp, "d2")
    os.mkdir(run2)
    d = Daemon(run2, ["--redis", seed])
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        assert c.get("r0", namespace="m", want_coded=True, tier=True) == (coded[0], "redis")
        assert c.get("r0", namespace="m", want_coded=True, tier=True) == (coded[0], "host")
        # The node dies: local tiers keep serving and Puts are still accepted.
        redis.kill()
        c.put_coded("while-down", coded[1], namespace="m")
        assert c.get("while-down", namespace="m", want_coded=True, tier=True)[1] == "host"
        assert c.get("r0", namespace="m", want_coded=True) == coded[0]
        with pytest.raises(latticekv.Error) as e:
            c.get("r3", namespace="m", want_coded=True)  # only Redis had it
        assert e.value.code == grpc.StatusCode.NOT_FOUND
        row = tier_row(c, "redis")
        assert row["errors"] >= 1 and row["link"] in ("down", "connecting"), row
        # It comes back (empty: no persistence here): the daemon reconnects.
        redis.start()
        wait_link(c, "up")
        c.put_coded("after", coded[2], namespace="m")
        assert redis.cli("DBSIZE") == "1"
    stop_ok(d)


def test_a_redis_hit_is_promoted_into_the_ssd_tier_too(tmp, redis):
    seed = "redis://127.0.0.1:%d" % redis.port
    ssd = os.path.join(tmp, "ssd")
    os.mkdir(ssd)
    run = [os.path.join(tmp, "d%d" % i) for i in range(3)]
    for r in run:
        os.mkdir(r)
    d = Daemon(run[0], ["--redis", seed])  # no SSD tier: the blocks are only in Redis
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        coded = blocks(c, 3, 51)
        for i, b in enumerate(coded):
            c.put_coded("p%d" % i, b, namespace="m")
        wait_link(c, "up")
    stop_ok(d)
    assert not glob.glob(os.path.join(ssd, "*.lkv"))
    d = ssd_daemon(run[1], ssd, "--redis", seed)
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        for i in range(2):  # p2 is never asked for: it must not reach the SSD tier
            assert c.get("p%d" % i, namespace="m", want_coded=True, tier=True) == (coded[i],
                                                                                   "redis")
    stop_ok(d)  # the promotions' SSD writes are done before the tier closes
    redis.kill()  # only the SSD tier can answer now
    d = ssd_daemon(run[2], ssd)
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        for i in range(2):
            assert c.get("p%d" % i, namespace="m", want_coded=True, tier=True) == (coded[i], "ssd")
        with pytest.raises(latticekv.Error) as e:
            c.get("p2", namespace="m", want_coded=True)
        assert e.value.code == grpc.StatusCode.NOT_FOUND
    stop_ok(d)


def test_write_back_keeps_accepting_puts_while_redis_is_down_and_drains_after(tmp, redis):
    d = Daemon(tmp, ["--redis", "redis://127.0.0.1:%d" % redis.port, "--tier-policy",
                     "write-back", "--redis-queue-bytes", "12KiB"])
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        coded = blocks(c, 1, 31, tokens=64)[0]  # ~7 KiB: the queue holds one
        c.put_coded("first", coded)
        wait_link(c, "up")
        deadline = time.monotonic() + HANG_GUARD_S
        while redis.cli("DBSIZE") != "1":  # drained before the outage
            assert time.monotonic() < deadline
            time.sleep(0.05)
        redis.kill()
        n = 8  # more than the 12 KiB queue holds: the oldest remote copies are lost
        for i in range(n):
            c.put_coded("q%d" % i, coded)
        row = tier_row(c, "redis")
        assert row["lost_blocks"] >= 1, row
        kept = n - row["lost_blocks"]
        for i in range(n):
            assert c.get("q%d" % i, want_coded=True) == coded  # every one still local
        redis.start()
        wait_link(c, "up")
        deadline = time.monotonic() + HANG_GUARD_S
        while redis.cli("DBSIZE") != str(kept):
            assert time.monotonic() < deadline, redis.cli("DBSIZE")
            time.sleep(0.05)
    stop_ok(d)


@pytest.fixture
def cluster(tmp):
    if not (os.access(REDIS_SERVER, os.X_OK) and os.access(REDIS_CLI, os.X_OK)):
        pytest.skip("redis-server / redis-cli not installed")
    start = 21400 + os.getpid() % 50
    # Bus ports (cluster-port) 500 above: everything in 21400-21999.
    ports = [p for p in range(start, 21500) if port_free(p) and port_free(p + 500)][:3]
    nodes = []
    try:
        for p in ports:
            d = os.path.join(tmp, "node%d" % p)
            os.mkdir(d)
            nodes.append(Redis(d, p, cluster=True))
        subprocess.run([REDIS_CLI, "--cluster", "create"] + ["127.0.0.1:%d" % p for p in ports]
                       + ["--cluster-replicas", "0", "--cluster-yes"], check=True,
                       capture_output=True, timeout=HANG_GUARD_S)
        deadline = time.monotonic() + HANG_GUARD_S
        while not all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in nodes):
            assert time.monotonic() < deadline, "no cluster_state:ok"
            time.sleep(0.1)
        yield nodes
    finally:
        for n in nodes:
            n.kill()


def test_redis_cluster_spreads_blocks_and_degrades_to_local_tiers_when_a_master_dies(tmp, cluster):
    seeds = []
    for n in cluster:
        seeds += ["--redis", "redis://127.0.0.1:%d" % n.port]
    d = Daemon(tmp, seeds)
    with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
        coded = blocks(c, 1, 41)[0]
        keys = ["c%02d" % i for i in range(24)]
        for key in keys:
            c.put_coded(key, coded, namespace="cl")
        wait_link(c, "up")
        sizes = [int(n.cli("DBSIZE")) for n in cluster]
        assert sum(sizes) == len(keys) and all(sizes), sizes  # every master holds some
        cluster[1].kill()
        wait_link(c, "degraded")
        for key in keys:  # every block is still in host memory
            assert c.get(key, namespace="cl", want_coded=True, tier=True) == (coded, "host")
        for i in range(24):  # Puts are accepted; the dead node's share is counted
            c.put_coded("late%d" % i, coded, namespace="cl")
        assert tier_row(c, "redis")["errors"] >= 1
        cluster[1].start()  # back from its nodes.conf: the daemon reconnects
        wait_link(c, "up")
        c.put_coded("after", coded, namespace="cl")
    stop_ok(d)
