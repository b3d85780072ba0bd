# SPDX-License-Identifier: Apache-2.0
"""SIGTERM while clients are busy: the daemon exits 0, every call ends OK or UNAVAILABLE.

The signal is sent once every client has completed at least one call (an
event, not a sleep), so calls are certainly in flight or queued around it.
"""

import signal
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import pytest

import latticekv
from conftest import Daemon, kv_like

CLIENTS = 16


def test_sigterm_with_calls_in_flight():
    with tempfile.TemporaryDirectory(prefix="lkv-shutdown-") as tmp:
        d = Daemon(tmp)
        started = threading.Barrier(CLIENTS + 1)
        codes = [set() for _ in range(CLIENTS)]
        errors = []

        def worker(i):
            addr = d.tcp if i % 2 else d.unix
            x = kv_like((2, 64, 8, 128), seed=i)
            with latticekv.Client(addr, timeout=60) as c:
                first = True
                while True:
                    try:
                        c.put("s-%d" % i, x, dtype="bf16")
                        c.get("s-%d" % i, raw=True)
                        codes[i].add(grpc.StatusCode.OK)
                    except latticekv.Error as e:
                        codes[i].add(e.code)
                        if e.code == grpc.StatusCode.UNAVAILABLE:
                            break  # the daemon is going or gone
                        if e.code != grpc.StatusCode.OK:
                            errors.append((i, e.code, e.details))
                            break
                    except Exception as e:  # noqa: BLE001 - report, never hang the barrier
                        errors.append((i, None, repr(e)))
                        break
                    finally:
                        if first:
                            first = False
                            started.wait(timeout=120)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        started.wait(timeout=120)
        rc = d.stop(signal.SIGTERM)
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a client hung after shutdown"
        assert errors == [], errors
        assert rc == 0, "latticekvd exited with %d:\n%s" % (rc, d.log_text())
        seen = set().union(*codes)
        assert seen <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, seen
        assert grpc.StatusCode.OK in seen


def test_sigint_idle_exits_zero():
    with tempfile.TemporaryDirectory(prefix="lkv-shutdown-") as tmp:
        d = Daemon(tmp)
        assert d.stop(signal.SIGINT) == 0, d.log_text()


def test_small_store_evicts_and_refuses_oversized():
    """--host-mem-bytes bounds the store: LRU eviction, and a block that can never
    fit is RESOURCE_EXHAUSTED (docs/service.md section 2) and stores nothing."""
    with tempfile.TemporaryDirectory(prefix="lkv-store-") as tmp:
        d = Daemon(tmp, extra=["--host-mem-bytes", str(64 << 10)])
        try:
            with latticekv.Client(d.tcp, timeout=60) as c:
                x = kv_like((2, 16, 8, 128), seed=1)  # 256 vectors: ~27 KiB coded
                size = c.put("b0", x, dtype="bf16")
                assert 20000 < size < 32768
                c.put("b1", x, dtype="bf16")
                c.get("b0")  # b0 is now the most recent; b1 the least
                c.put("b2", x, dtype="bf16")  # needs room: b1 goes
                assert c.lookup(["b0", "b1", "b2"])[1] == [True, False, True]
                big = kv_like((2, 64, 8, 128), seed=2)  # ~108 KiB coded > 64 KiB
                with pytest.raises(latticekv.Error) as e:
                    c.put("huge", big, dtype="bf16")
                assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert c.lookup(["huge", "b0", "b2"])[1] == [False, True, True]
        finally:
            assert d.stop() == 0, d.log_text()


# Holds a connection to the daemon open and idle: one call, then "ready" and
# a wait on stdin (the test stops this process with SIGSTOP, so it cannot
# answer the daemon's GOAWAY or close the connection either).
IDLE_CLIENT = """
import sys
import latticekv
c = latticekv.Client(sys.argv[1])
c.stats()
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("frozen_daemon", [False, True])
def test_idle_connections_do_not_hold_the_shutdown(frozen_daemon):
    """No call left, only idle connections (one of them from a stopped
    client): SIGTERM ends the daemon promptly, not after --shutdown-grace-ms
    (30 s here). With frozen_daemon, a client also gave up on a call while
    the daemon was stopped (SIGSTOP) before the SIGTERM."""
    with tempfile.TemporaryDirectory(prefix="lkv-idle-") as tmp:
        d = Daemon(tmp, extra=["--shutdown-grace-ms", "30000"])
        idle = subprocess.Popen([sys.executable, "-c", IDLE_CLIENT, d.tcp],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert idle.stdout.readline() == b"ready\n"
            idle.send_signal(signal.SIGSTOP)
            with latticekv.Client(d.unix, timeout=1.0) as c:
                c.stats()
                if frozen_daemon:
                    d.proc.send_signal(signal.SIGSTOP)
                    with pytest.raises(latticekv.Error) as e:
                        c.stats()
                    assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
                    d.proc.send_signal(signal.SIGCONT)
                t0 = time.monotonic()
                rc = d.stop()
                took = time.monotonic() - t0
        finally:
            idle.send_signal(signal.SIGCONT)
            idle.kill()
            idle.wait()
        with open(d.log_path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        assert rc == 0, log
        assert "shutdown_grace_over" not in log, log
        assert took < 10.0, "stopping took %.1f s:\n%s" % (took, log)
