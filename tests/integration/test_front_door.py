"""The daemon's front door: listeners, start-up errors, logs and the run script.

Each test starts its own daemon(s) (conftest.Daemon) in a private temporary
directory and stops them; nothing here decides pass or fail from timing.
"""

import json
import os
import re
import signal
import socket
import stat
import subprocess
import tempfile

import pytest

import latticekv
from conftest import CLI, DAEMON, HANG_GUARD_S, Daemon, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def need_daemon():
    if not DAEMON or not os.access(DAEMON, os.X_OK):
        pytest.skip("LKV_DAEMON is not set to the latticekvd binary")


def run_daemon(*args, env=None):
    """A daemon that is expected to exit by itself (a start-up error)."""
    need_daemon()
    return subprocess.run([DAEMON, "--backend", "cpu"] + list(args), capture_output=True,
                          timeout=HANG_GUARD_S, env=env)


def serving(addr):
    with latticekv.Client(addr) as c:
        return c.health(timeout=5.0) == "SERVING"


# --- unix sockets -----------------------------------------------------------

def test_second_daemon_refuses_a_unix_socket_in_use():
    with tempfile.TemporaryDirectory(prefix="lkv-door-") as tmp:
        first = Daemon(tmp)
        try:
            r = run_daemon("--listen", "127.0.0.1:%d" % free_port(), "--listen", first.unix)
            err = r.stderr.decode()
            assert r.returncode == 1, err
            assert first.sock in err and "another process is listening" in err, err
            # The first daemon keeps its socket and its clients.
            assert stat.S_ISSOCK(os.lstat(first.sock).st_mode)
            assert serving(first.unix)
        finally:
            assert first.stop() == 0, first.log_text()


def test_stale_socket_file_is_replaced():
    with tempfile.TemporaryDirectory(prefix="lkv-door-") as tmp:
        path = os.path.join(tmp, "lkv.sock")
        # A socket file nobody listens on, as a SIGKILLed daemon leaves.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.close()
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        d = Daemon(tmp)  # listens on tmp/lkv.sock
        try:
            assert serving(d.unix)
            assert "stale_socket_removed" in d.log_text()
        finally:
            assert d.stop() == 0, d.log_text()


def test_a_path_that_is_not_a_socket_is_left_alone():
    with tempfile.TemporaryDirectory(prefix="lkv-door-") as tmp:
        path = os.path.join(tmp, "data.txt")
        with open(path, "w") as f:
            f.write("precious\n")
        r = run_daemon("--listen", "unix:" + path)
        assert r.returncode == 1, r.stderr
        assert path in r.stderr.decode() and "not a socket" in r.stderr.decode(), r.stderr
        with open(path) as f:
            assert f.read() == "precious\n"


@pytest.mark.parametrize("flag,mode", [(None, 0o660), ("0600", 0o600), ("0666", 0o666)])
def test_unix_socket_mode(flag, mode):
    with tempfile.TemporaryDirectory(prefix="lkv-door-") as tmp:
        d = Daemon(tmp, extra=() if flag is None else ("--unix-socket-mode", flag))
        try:
            assert stat.S_IMODE(os.lstat(d.sock).st_mode) == mode
        finally:
            assert d.stop() == 0, d.log_text()


# --- start-up errors --------------------------------------------------------

def test_bind_failure_is_one_line_naming_address_and_reason():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addr = "127.0.0.1:%d" % taken.getsockname()[1]
        r = run_daemon("--listen", addr)
    lines = r.stderr.decode().splitlines()
    assert r.returncode == 1, lines
    assert len(lines) == 1, lines
    assert "event=startup_failed" in lines[0] and addr in lines[0], lines
    assert "Address already in use" in lines[0], lines


def test_unknown_environment_variable_is_named_with_the_nearest_one(monkeypatch):
    monkeypatch.setenv("LATTICEKV_HOST_MEM", "1G")  # misspelt LATTICEKV_HOST_MEM_BYTES
    with tempfile.TemporaryDirectory(prefix="lkv-door-") as tmp:
        d = Daemon(tmp)
        try:
            log = d.log_text()
            assert re.search(r"level=warn event=unknown_env .*LATTICEKV_HOST_MEM .*"
                             r"LATTICEKV_HOST_MEM_BYTES", log), log
        finally:
            assert d.stop() == 0, d.log_text()


@pytest.mark.parametrize("key,nearest", [("batchmaxwaitus", "batch-max-wait-us"),
                                         ("Log-Level", "log-level"),
                                         ("host-mem", "host-mem-bytes")])
def test_unknown_config_key_exits_2_naming_the_nearest(key, nearest):
    with tempfile.TemporaryDirectory(prefix="lkv-door-") as tmp:
        conf = os.path.join(tmp, "lkv.conf")
        with open(conf, "w") as f:
            f.write("%s = 1\n" % key)
        r = run_daemon("--config", conf, "--listen", "unix:" + tmp + "/s")
        err = r.stderr.decode()
        assert r.returncode == 2, err
        assert '"%s"' % key in err and '"%s"' % nearest in err, err


# --- logs -------------------------------------------------------------------

FORGED_NS = "x\nts=2026-01-01T00:00:00.000Z level=error event=forged by=client"


@pytest.mark.parametrize("fmt", ["kv", "json"])
def test_client_bytes_cannot_forge_a_log_line(fmt):
    with tempfile.TemporaryDirectory(prefix="lkv-door-") as tmp:
        d = Daemon(tmp, extra=("--log-level", "debug", "--log-format", fmt))
        try:
            with latticekv.Client(d.tcp, timeout=HANG_GUARD_S) as c:
                with pytest.raises(latticekv.Error):
                    c.get("missing", namespace=FORGED_NS)
        finally:
            assert d.stop() == 0, d.log_text()
        with open(d.log_path, "rb") as f:
            lines = f.read().decode().splitlines()
        failed = [ln for ln in lines if "request_failed" in ln]
        assert failed, lines
        if fmt == "kv":
            assert all(ln.startswith("ts=") for ln in lines), lines
            assert not any("event=forged" in ln.split(" msg=")[0] for ln in lines), lines
            assert "\\nts=2026-01-01" in failed[0], failed
        else:
            objs = [json.loads(ln) for ln in lines]  # every line is one JSON object
            assert not any(o["event"] == "forged" for o in objs), lines
            rf = [o for o in objs if o["event"] == "request_failed"]
            assert FORGED_NS in rf[0]["msg"], rf  # the exact bytes, recoverable
            ready = [o for o in objs if o["event"] == "ready"][0]
            assert isinstance(ready["threads"], int), ready


# --- scripts/run.sh ---------------------------------------------------------

def test_run_script_ctrl_c_drains():
    need_daemon()
    if not CLI or not os.access(CLI, os.X_OK):
        pytest.skip("LKV_CLI is not set to the latticekv binary")
    build = os.path.dirname(os.path.dirname(DAEMON))
    if os.path.realpath(os.path.join(build, "clients", "cli", "latticekv")) != \
            os.path.realpath(CLI):
        pytest.skip("the CLI is not in the daemon's build tree")
    env = dict(os.environ, LKV_RUN_SKIP_BUILD="1", LKV_RUN_BUILD_DIR=build,
               LKV_RUN_ADDR="127.0.0.1:%d" % free_port())
    # Its own process group, as a terminal's foreground job: Ctrl-C is
    # SIGINT to the whole group.
    p = subprocess.Popen(["sh", os.path.join(ROOT, "scripts", "run.sh")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    out = []
    try:
        for raw in p.stdout:
            out.append(raw.decode(errors="replace"))
            if "press Ctrl-C" in out[-1]:
                break
        assert any("press Ctrl-C" in ln for ln in out), "".join(out)
        os.killpg(p.pid, signal.SIGINT)
        rest, _ = p.communicate(timeout=HANG_GUARD_S)
        out.append(rest.decode(errors="replace"))
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        # The daemon has its own session: never leave it behind.
        m = re.search(r"serving \(pid (\d+)\)", "".join(out))
        if m:
            try:
                with open("/proc/%s/cmdline" % m.group(1), "rb") as f:
                    if b"latticekvd" in f.read():
                        os.kill(int(m.group(1)), signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass
    text = "".join(out)
    assert p.returncode == 0, text
    assert "event=shutdown_begin signal=SIGTERM" in text, text
    assert "event=stopped" in text, text
    assert "shutdown_forced" not in text, text
