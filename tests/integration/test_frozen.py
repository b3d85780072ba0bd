# SPDX-License-Identifier: Apache-2.0
"""Clients never hang: a daemon frozen with SIGSTOP ends every call at its deadline.

Each test stops its own latticekvd with SIGSTOP (the sockets stay open, the
kernel still accepts connections, nothing answers) and checks that the C
client, the CLI and the Python client return DEADLINE_EXCEEDED within their
deadline, by default as well as with one set; with no deadline, keepalive
pings end the call with UNAVAILABLE. The bounds below are the deadlines plus
a generous margin for a loaded machine: they catch a hang, not a speed.
The daemon is continued (SIGCONT) and stopped cleanly at the end.
"""

import os
import signal
import subprocess
import tempfile
import threading
import time

import grpc
import numpy as np
import pytest

import latticekv
from conftest import CLI, CLIENT_ITEST, Daemon

MARGIN_S = 5.0
DEFAULT_S = latticekv.client.DEFAULT_TIMEOUT


@pytest.fixture
def frozen():
    """A daemon of its own; the test freezes it with .freeze()."""
    with tempfile.TemporaryDirectory(prefix="lkv-frozen-") as tmp:
        # The default grace (10 s): calls the clients gave up on while the
        # daemon was stopped do not hold its shutdown (test_shutdown.py).
        d = Daemon(tmp)

        def freeze():
            d.proc.send_signal(signal.SIGSTOP)

        d.freeze = freeze
        try:
            yield d
        finally:
            d.proc.send_signal(signal.SIGCONT)
            rc = d.stop()
        assert rc == 0, "latticekvd exited with %d:\n%s" % (rc, d.log_text())


def need(path, what):
    if not path or not os.access(path, os.X_OK):
        pytest.skip("%s is not set" % what)


class CHangCheck:
    """lkv_client_itest --hang-check: connects, waits for the freeze, calls."""

    def __init__(self, addr, timeout, keepalive, expect, within_s, calls=None):
        need(CLIENT_ITEST, "LKV_CLIENT_ITEST")
        args = [CLIENT_ITEST, "--addr", addr, "--hang-check", str(timeout), str(keepalive),
                expect, str(int(within_s * 1000))] + ([str(calls)] if calls else [])
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        line = self.proc.stdout.readline()
        assert line == b"ready\n", (line, self.proc.stderr.read() if not line else b"")

    def go(self):
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def result(self, limit_s):
        out, err = self.proc.communicate(timeout=limit_s)
        assert self.proc.returncode == 0, (out + err).decode()
        assert b"hang check" in out and b": ok (0 failures)" in out, out.decode()
        return out.decode()


def cli_call(*args):
    need(CLI, "LKV_CLI")
    t0 = time.monotonic()
    r = subprocess.run([CLI] + [str(a) for a in args], capture_output=True, timeout=120)
    return r, time.monotonic() - t0


def py_calls(c, key="hang"):
    """Each kind of Python call once: unary, health, and a stream."""
    x = np.zeros((2, 64), dtype=np.float32)
    return [("stats", c.stats), ("health", c.health), ("put", lambda: c.put(key, x)),
            ("lookup", lambda: c.lookup([key])), ("get_many", lambda: c.get_many([key]))]


def expect_code(fn, code, within_s):
    t0 = time.monotonic()
    with pytest.raises(latticekv.Error) as e:
        fn()
    took = time.monotonic() - t0
    assert e.value.code == code, e.value
    assert took <= within_s, "took %.1f s, more than %.1f" % (took, within_s)


def test_default_deadline_all_clients(frozen):
    """No timeout set anywhere: each client still ends with DEADLINE_EXCEEDED.
    The three run side by side, so the test takes one default deadline."""
    bound = DEFAULT_S + MARGIN_S
    c_prog = CHangCheck(frozen.tcp, 0, 0, "DEADLINE_EXCEEDED", bound, calls=1)
    py = latticekv.Client(frozen.unix)
    py.wait_ready()  # connected before the freeze
    frozen.freeze()
    c_prog.go()
    cli_result = {}
    cli_thread = threading.Thread(
        target=lambda: cli_result.update(r=cli_call("stats", "--addr", frozen.tcp)))
    cli_thread.start()
    try:
        expect_code(py.stats, grpc.StatusCode.DEADLINE_EXCEEDED, bound)
    finally:
        py.close()
        cli_thread.join(120)
    c_prog.result(120)
    r, took = cli_result["r"]
    assert r.returncode == 1, r
    assert r.stderr.decode().startswith("latticekv: error: DEADLINE_EXCEEDED"), r.stderr
    assert took <= bound, took


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_set_deadline_c_client(frozen, transport):
    addr = frozen.tcp if transport == "tcp" else frozen.unix
    c_prog = CHangCheck(addr, 1500, 0, "DEADLINE_EXCEEDED", 1.5 + MARGIN_S)
    frozen.freeze()
    c_prog.go()
    out = c_prog.result(120)
    for what in ("stats", "put", "health", "get_many", "put_many"):
        assert "%s: DEADLINE_EXCEEDED" % what in out, out


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_set_deadline_cli(frozen, transport):
    addr = frozen.tcp if transport == "tcp" else frozen.unix
    frozen.freeze()
    for cmd in (("stats",), ("health",), ("lookup", "--keys", "a,b"), ("delete", "--key", "a")):
        r, took = cli_call(*cmd, "--addr", addr, "--timeout-ms", "1500")
        assert r.returncode == 1, (cmd, r)
        lines = r.stderr.decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith("latticekv: error: DEADLINE_EXCEEDED"), \
            (cmd, r.stderr)
        assert took <= 1.5 + MARGIN_S, (cmd, took)


@pytest.mark.parametrize("connected", [True, False])
def test_set_deadline_python(frozen, connected):
    """Whether the connection was up before the freeze or is made after it."""
    with latticekv.Client(frozen.tcp, timeout=1.5) as c:
        if connected:
            c.wait_ready()
        frozen.freeze()
        for name, fn in py_calls(c):
            expect_code(fn, grpc.StatusCode.DEADLINE_EXCEEDED, 1.5 + MARGIN_S)


def test_keepalive_ends_calls_without_deadline(frozen):
    """timeout none: an unanswered keepalive ping (every 2 s, 1 s to answer)
    closes the connection and the call fails UNAVAILABLE instead of hanging."""
    bound = 2.0 + 1.0 + MARGIN_S
    c_prog = CHangCheck(frozen.tcp, "none", 2000, "UNAVAILABLE", bound, calls=1)
    py = latticekv.Client(frozen.unix, timeout=None, keepalive=2, keepalive_timeout=1)
    py.wait_ready()
    frozen.freeze()
    c_prog.go()
    try:
        expect_code(py.stats, grpc.StatusCode.UNAVAILABLE, bound)
    finally:
        py.close()
    c_prog.result(120)


def test_daemon_accepts_keepalive_pings():
    """A call that waits longer than several ping intervals is not cut off:
    gRPC servers by default answer a ping faster than one per 5 minutes with
    GOAWAY (too_many_pings) on the third strike; latticekvd allows one per
    second, and the clients never ping faster than every 2 s."""
    with tempfile.TemporaryDirectory(prefix="lkv-ping-") as tmp:
        d = Daemon(tmp)
        try:
            with latticekv.Client(d.tcp, timeout=60, keepalive=2) as c:
                gate = threading.Event()
                x = np.zeros((2, 64), dtype=np.float32)

                def requests():
                    gate.wait(60)  # the stream stays open and silent meanwhile
                    yield latticekv.pb.PutRequest(key=latticekv.pb.BlockKey(key=b"ping"),
                                                  tensor=latticekv.client.tensor_of(x))

                replies = c.kv.PutStream(requests(), timeout=60)
                time.sleep(9)  # pings at about 2, 4, 6 and 8 s: the third strike is at 8 s
                gate.set()
                got = [r.coded_bytes for r in replies]
                assert len(got) == 1 and got[0] > 0
                assert c.lookup(["ping"]) == (1, [True])
        finally:
            assert d.stop() == 0, d.log_text()
