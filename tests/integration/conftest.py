# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the end-to-end suite: the real latticekvd on loopback TCP and a unix socket.

Paths come from the environment (ctest sets them; see CMakeLists.txt):
  LKV_DAEMON        the latticekvd binary
  LKV_CLI           the latticekv CLI
  LKV_CLIENT_ITEST  the C client test program
and PYTHONPATH must reach clients/python and BUILD/clients/python (package
latticekv and its generated stubs).

Readiness is a health check answering SERVING, never a sleep: nothing here
decides pass or fail from timing. Timeouts only stop a hung test.
"""

import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import numpy as np
import pytest

import latticekv

DAEMON = os.environ.get("LKV_DAEMON", "")
CLI = os.environ.get("LKV_CLI", "")
CLIENT_ITEST = os.environ.get("LKV_CLIENT_ITEST", "")

# The daemon's message limit in these tests: room for a 32 MiB block, and a
# clear line to cross for the RESOURCE_EXHAUSTED case. Clients allow 64 MiB.
DAEMON_MAX_MESSAGE = 40 << 20
HANG_GUARD_S = 60


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """One latticekvd process listening on a TCP port and a unix socket."""

    def __init__(self, tmpdir, extra=(), tcp_client=None, unix_client=None):
        """extra: more flags. tcp_client, unix_client: keyword arguments of
        the latticekv.Client that checks readiness on each (TLS files)."""
        if not DAEMON or not os.access(DAEMON, os.X_OK):
            pytest.skip("LKV_DAEMON is not set to the latticekvd binary")
        self.port = free_port()
        self.sock = os.path.join(tmpdir, "lkv.sock")
        self.tcp = "127.0.0.1:%d" % self.port
        self.unix = "unix:" + self.sock
        self.log_path = os.path.join(tmpdir, "latticekvd.log")
        self.log = open(self.log_path, "wb")
        args = [DAEMON, "--listen", self.tcp, "--listen", self.unix, "--backend", "cpu",
                "--host-mem-bytes", str(512 << 20),
                "--max-message-bytes", str(DAEMON_MAX_MESSAGE)] + list(extra)
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.client_kwargs = {self.tcp: tcp_client or {}, self.unix: unix_client or {}}
        try:
            self.wait_ready()
        except BaseException:
            # A daemon that never got ready is no test's to stop: leave none behind.
            self.proc.kill()
            self.proc.wait()
            self.log.close()
            raise

    def wait_ready(self):
        deadline = time.monotonic() + HANG_GUARD_S
        for addr in (self.tcp, self.unix):
            with latticekv.Client(addr, **self.client_kwargs[addr]) as c:
                while True:
                    if self.proc.poll() is not None:
                        raise RuntimeError("latticekvd exited with %d before serving:\n%s"
                                           % (self.proc.returncode, self.log_text()))
                    try:
                        if c.health(timeout=1.0) == "SERVING":
                            break
                    except latticekv.Error:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("latticekvd not SERVING on %s:\n%s"
                                           % (addr, self.log_text()))
                    time.sleep(0.02)

    def log_text(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def stop(self, sig=signal.SIGTERM):
        """Signals the daemon and returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(HANG_GUARD_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("latticekvd did not exit after %s:\n%s"
                                   % (sig, self.log_text()))
        self.log.close()
        if self.proc.returncode == 0:
            self.check_budget_paired()
        return self.proc.returncode

    def check_budget_paired(self):
        """A clean exit logs what the in-flight budget holds once every call
        and reply is gone: anything but 0 left and no underflow means a charge
        and a give that did not pair somewhere in the request path."""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        assert "budget_underflow" not in log, log[-4000:]
        for line in log.splitlines():
            if "inflight_budget_stats" in line:
                left = re.search(r'left"?[=:]"?(\d+)', line)
                under = re.search(r'underflows"?[=:]"?(\d+)', line)
                assert left and under, line
                assert (left.group(1), under.group(1)) == ("0", "0"), line


@pytest.fixture(scope="session")
def daemon():
    with tempfile.TemporaryDirectory(prefix="lkv-itest-") as tmp:
        d = Daemon(tmp)
        yield d
        rc = d.stop()
        assert rc == 0, "latticekvd exited with %d:\n%s" % (rc, d.log_text())


@pytest.fixture(params=["tcp", "unix"])
def addr(request, daemon):
    """The same daemon through each transport."""
    return daemon.tcp if request.param == "tcp" else daemon.unix


@pytest.fixture
def client(addr):
    with latticekv.Client(addr, timeout=HANG_GUARD_S) as c:
        yield c


@pytest.fixture
def cli():
    if not CLI or not os.access(CLI, os.X_OK):
        pytest.skip("LKV_CLI is not set to the latticekv binary")

    def run(*args, input=None):
        return subprocess.run([CLI] + [str(a) for a in args], input=input,
                              capture_output=True, timeout=HANG_GUARD_S)
    return run


def kv_like(shape, seed, dtype=np.float32):
    """Normal values times a per-channel log-normal scale, plus an offset."""
    rng = np.random.default_rng(seed)
    scale = np.exp(0.5 * rng.standard_normal(shape[-1]))
    return (rng.standard_normal(shape) * scale + 0.25).astype(dtype)
