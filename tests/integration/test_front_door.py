# SPDX-License-Identifier: Apache-2.0
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
            assert first.sock in err and "another latticekvd is starting or serving" in err, err
            # The first daemon keeps its socket and its clients.
            assert stat.S_ISSOCK(os.lstat(first.sock).st_mode)
            assert serving(first.unix)
        finally:
            assert first.stop() == 0, first.log_text()


def test_a_unix_socket_another_program_listens_on_is_refused():
    with tempfile.TemporaryDirectory(prefix="lkv-door-") as tmp:
        path = os.path.join(tmp, "lkv.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
            other.bind(path)
            other.listen()
            r = run_daemon("--listen", "127.0.0.1:%d" % free_port(), "--listen", "unix:" + path)
            err = r.stderr.decode()
            assert r.returncode == 1, err
            assert path in err and "another process is listening" in err, err
            assert stat.S_ISSOCK(os.lstat(path).st_mode)


def test_a_unix_socket_whose_listener_does_not_accept_is_refused_at_once():
    # A listener that is busy or stuck: its backlog is full. Checking it
    # must not wait for it to accept.
    with tempfile.TemporaryDirectory(prefix="lkv-door-") as tmp:
        path = os.path.join(tmp, "lkv.sock")
        waiting = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
            other.bind(path)
            other.listen(0)
            try:
                for _ in range(64):
                    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    c.setblocking(False)
                    waiting.append(c)
                    try:
                        c.connect(path)
                    except BlockingIOError:
                        break  # the backlog is full now
                else:
                    pytest.skip("could not fill the listener's backlog")
                r = run_daemon("--listen", "127.0.0.1:%d" % free_port(), "--listen",
                               "unix:" + path)
            finally:
                for c in waiting:
                    c.close()
            err = r.stderr.decode()
            assert r.returncode == 1, err
            assert path in err and "another process is listening" in err, err


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


def path_lock_name(path):
    """The abstract socket a daemon holds while it binds and serves path (rpc.c)."""
    d, base = os.path.split(path)
    full = os.path.join(os.path.realpath(d or "."), base)
    h = 0xcbf29ce484222325
    for b in full.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "\0latticekvd-sock-%016x" % h


def test_a_daemon_between_its_check_and_its_bind_keeps_the_path():
    # Two daemons started at once on one path both find nothing there; the
    # path lock makes the second give up instead of unlinking the first's
    # socket. The test holds the lock as the first daemon would.
    with tempfile.TemporaryDirectory(prefix="lkv-door-") as tmp:
        path = os.path.join(tmp, "lkv.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as lock:
            lock.bind(path_lock_name(path))
            r = run_daemon("--listen", "127.0.0.1:%d" % free_port(), "--listen", "unix:" + path)
            err = r.stderr.decode()
            assert r.returncode == 1, err
            assert path in err and "another latticekvd is starting or serving" in err, err
            assert not os.path.exists(path), "it went on to bind"
        d = Daemon(tmp)  # the lock released: the path is free again
        try:
            assert serving(d.unix)
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


def test_run_script_that_fails_stops_its_daemon():
    need_daemon()
    if not CLI or not os.access(CLI, os.X_OK):
        pytest.skip("LKV_CLI is not set to the latticekv binary")
    build = os.path.dirname(os.path.dirname(DAEMON))
    if os.path.realpath(os.path.join(build, "clients", "cli", "latticekv")) != \
            os.path.realpath(CLI):
        pytest.skip("the CLI is not in the daemon's build tree")
    port = free_port()
    addr = "127.0.0.1:%d" % port
    # The daemon serves (stats answers) but its store cannot hold the demo's
    # block, so the demo fails and set -e ends the script there.
    env = dict(os.environ, LKV_RUN_SKIP_BUILD="1", LKV_RUN_BUILD_DIR=build, LKV_RUN_ADDR=addr,
               LATTICEKV_HOST_MEM_BYTES="4096")
    # Output to a file, not a pipe: a daemon left behind would hold a pipe open.
    with tempfile.TemporaryFile() as out:
        p = subprocess.run(["sh", os.path.join(ROOT, "scripts", "run.sh")], env=env,
                           stdout=out, stderr=subprocess.STDOUT, timeout=HANG_GUARD_S,
                           start_new_session=True)
        out.seek(0)
        text = out.read().decode(errors="replace")
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"latticekvd") and addr.encode() in argv:
            left.append(int(pid))
    for pid in left:  # never leave one behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert p.returncode != 0, text
    assert "latticekvd is serving" not in text, text
    assert not left, "the script exited and left latticekvd %s serving %s\n%s" % (left, addr, text)
    assert "event=stopped" in text, text


# --- server reflection ------------------------------------------------------

# The messages of grpc.reflection.v1alpha that the test exchanges, compiled by
# protoc at test time (the daemon embeds no Python, the test needs a decoder).
REFLECTION_PROTO = """
syntax = "proto3";
package grpc.reflection.v1alpha;
message ServerReflectionRequest {
  string host = 1;
  oneof message_request {
    string file_by_filename = 3;
    string file_containing_symbol = 4;
    ExtensionRequest file_containing_extension = 5;
    string all_extension_numbers_of_type = 6;
    string list_services = 7;
  }
}
message ExtensionRequest { string containing_type = 1; int32 extension_number = 2; }
message ServerReflectionResponse {
  string valid_host = 1;
  ServerReflectionRequest original_request = 2;
  oneof message_response {
    FileDescriptorResponse file_descriptor_response = 4;
    ExtensionNumberResponse all_extension_numbers_response = 5;
    ListServiceResponse list_services_response = 6;
    ErrorResponse error_response = 7;
  }
}
message FileDescriptorResponse { repeated bytes file_descriptor_proto = 1; }
message ExtensionNumberResponse { string base_type_name = 1; repeated int32 extension_number = 2; }
message ListServiceResponse { repeated ServiceResponse service = 1; }
message ServiceResponse { string name = 1; }
message ErrorResponse { int32 error_code = 1; string error_message = 2; }
"""

REFLECTION_METHOD = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def reflection_module(tmp):
    import importlib.util
    import shutil
    protoc = shutil.which("protoc")
    if not protoc:
        pytest.skip("protoc is needed to decode reflection replies")
    with open(os.path.join(tmp, "lkv_reflection_test.proto"), "w") as f:
        f.write(REFLECTION_PROTO)
    subprocess.run([protoc, "-I" + tmp, "--python_out=" + tmp, "lkv_reflection_test.proto"],
                   check=True, timeout=HANG_GUARD_S)
    spec = importlib.util.spec_from_file_location(
        "lkv_reflection_test_pb2", os.path.join(tmp, "lkv_reflection_test_pb2.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ask(channel, pb, **question):
    call = channel.stream_stream(REFLECTION_METHOD,
                                 request_serializer=pb.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=pb.ServerReflectionResponse.FromString)
    reqs = [pb.ServerReflectionRequest(host="h", **q) for q in question.values()]
    return list(call(iter(reqs), timeout=HANG_GUARD_S))


def test_server_reflection_lists_and_describes_the_api():
    import grpc
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    with tempfile.TemporaryDirectory(prefix="lkv-door-") as tmp:
        pb = reflection_module(tmp)
        d = Daemon(tmp, extra=("--reflection", "on"))
        try:
            with grpc.insecure_channel(d.tcp) as ch:
                services, by_symbol, by_method, by_file, unknown = ask(
                    ch, pb, a=dict(list_services=""),
                    b=dict(file_containing_symbol="latticekv.v1.KVStore"),
                    c=dict(file_containing_symbol="latticekv.v1.Admin.Stats"),
                    d=dict(file_by_filename="grpc/health/v1/health.proto"),
                    e=dict(file_containing_symbol="latticekv.v1.NoSuchThing"))
                names = {s.name for s in services.list_services_response.service}
                assert {"latticekv.v1.Codec", "latticekv.v1.KVStore", "latticekv.v1.Admin",
                        "grpc.health.v1.Health"} <= names, names
                assert services.valid_host == "h"
                assert services.original_request.list_services == ""
                assert unknown.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]

                pool = descriptor_pool.DescriptorPool()
                for resp in (by_symbol, by_method, by_file):
                    for raw in resp.file_descriptor_response.file_descriptor_proto:
                        fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
                        try:
                            pool.Add(fd)
                        except TypeError:  # already added from an earlier answer
                            pass
                kv = pool.FindServiceByName("latticekv.v1.KVStore")
                assert {"Put", "Get", "Lookup", "Delete"} <= {m.name for m in kv.methods}
                pool.FindServiceByName("grpc.health.v1.Health")

                # What grpcurl does next: call a method knowing only the descriptors.
                stats = pool.FindServiceByName("latticekv.v1.Admin").methods_by_name["Stats"]
                if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
                    req_cls = message_factory.GetMessageClass(stats.input_type)
                    resp_cls = message_factory.GetMessageClass(stats.output_type)
                else:
                    f = message_factory.MessageFactory(pool)
                    req_cls = f.GetPrototype(stats.input_type)
                    resp_cls = f.GetPrototype(stats.output_type)
                call = ch.unary_unary("/latticekv.v1.Admin/Stats",
                                      request_serializer=req_cls.SerializeToString,
                                      response_deserializer=resp_cls.FromString)
                reply = call(req_cls(), timeout=HANG_GUARD_S)
                assert reply.ByteSize() > 0
        finally:
            assert d.stop() == 0, d.log_text()


def test_server_reflection_is_off_by_default():
    import grpc
    with tempfile.TemporaryDirectory(prefix="lkv-door-") as tmp:
        pb = reflection_module(tmp)
        d = Daemon(tmp)
        try:
            with grpc.insecure_channel(d.tcp) as ch:
                with pytest.raises(grpc.RpcError) as e:
                    ask(ch, pb, a=dict(list_services=""))
                assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
                assert "--reflection on" in e.value.details()
        finally:
            assert d.stop() == 0, d.log_text()
