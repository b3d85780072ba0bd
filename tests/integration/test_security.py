# SPDX-License-Identifier: Apache-2.0
"""TLS, mutual TLS and bearer tokens (issue 13 items 1-2) against real daemons.

Certificates come from openssl in a temporary folder (certs.py). Every
client is exercised: the Python clients (blocking and asyncio), the CLI and the C client
(lkv_client_itest --auth-check, and its full suite over TLS with a token).
Readiness is a health check; the only waits on the clock are for a
certificate to expire, which is the thing under test.
"""

import asyncio
import datetime
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import numpy as np
import pytest

import latticekv
from certs import Certs
from conftest import CLI, CLIENT_ITEST, DAEMON, HANG_GUARD_S, Daemon, free_port, kv_like

ADMIN = "adm-7f3c9e1a2b"       # granted "*"
TEAM_A = "team-a-51d0c4e8aa"   # granted alpha,beta
TEAM_B = "team-b-0be1d2c3f4"   # granted gamma
TOKENS = "# test tokens\n%s *\n%s alpha,beta   # team a\n%s gamma\n" % (ADMIN, TEAM_A, TEAM_B)


@pytest.fixture(scope="module")
def certs():
    with tempfile.TemporaryDirectory(prefix="lkv-certs-") as tmp:
        yield Certs(tmp)


@pytest.fixture
def tmp():
    with tempfile.TemporaryDirectory(prefix="lkv-sec-") as t:
        yield t


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def start(tmp, extra, tcp_client=None, unix_client=None):
    return Daemon(tmp, list(extra), tcp_client=tcp_client, unix_client=unix_client)


def run_daemon(*args):
    """A daemon that must fail at start; returns the CompletedProcess."""
    if not DAEMON:
        pytest.skip("LKV_DAEMON is not set")
    return subprocess.run([DAEMON, "--backend", "cpu"] + list(args), capture_output=True,
                          timeout=HANG_GUARD_S)


def stop_ok(d):
    assert d.stop() == 0, d.log_text()


def code_of(fn):
    try:
        fn()
    except latticekv.Error as e:
        return e.code.name, e.details
    return "OK", ""


def need(path, what):
    if not path or not os.access(path, os.X_OK):
        pytest.skip("%s is not set" % what)


def cli(*args, env=None):
    need(CLI, "LKV_CLI")
    full_env = dict(os.environ)
    full_env.pop("LATTICEKV_TOKEN", None)
    full_env.update(env or {})
    return subprocess.run([CLI] + [str(a) for a in args], capture_output=True,
                          timeout=HANG_GUARD_S, env=full_env)


def itest(addr, *args, env=None):
    need(CLIENT_ITEST, "LKV_CLIENT_ITEST")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LKV_ITEST_")}
    full_env.update(env or {})
    return subprocess.run([CLIENT_ITEST, "--addr", addr] + list(args), capture_output=True,
                          timeout=4 * HANG_GUARD_S, env=full_env)


# --- TLS ----------------------------------------------------------------------

def test_tls_serves_every_client_and_refuses_plaintext(certs, tmp):
    d = start(tmp, ["--tls-cert", certs.server, "--tls-key", certs.server_key],
              tcp_client={"tls_ca": certs.ca})
    try:
        assert "tls=on" in d.log_text()
        x = kv_like((2, 16, 64), 1)
        with latticekv.Client(d.tcp, tls_ca=certs.ca) as c:
            c.put("k", x, namespace="tls")
            assert np.abs(c.get("k", namespace="tls") - x).max() < 0.2
        # localhost is in the certificate too.
        with latticekv.Client("localhost:%d" % d.port, tls_ca=certs.ca) as c:
            assert c.health() == "SERVING"
        # Plaintext to the TLS port fails; the wrong CA fails.
        with latticekv.Client(d.tcp) as c:
            assert code_of(lambda: c.health(timeout=5))[0] == "UNAVAILABLE"
        with latticekv.Client(d.tcp, tls_ca=certs.other_ca) as c:
            assert code_of(lambda: c.health(timeout=5))[0] == "UNAVAILABLE"
        # The unix socket stays plaintext (trusted by its file mode).
        with latticekv.Client(d.unix) as c:
            assert np.abs(c.get("k", namespace="tls") - x).max() < 0.2
        # CLI: with --tls-ca it is served, without it cannot connect.
        r = cli("health", "--addr", d.tcp, "--tls-ca", certs.ca)
        assert r.returncode == 0 and r.stdout.strip() == b"SERVING", r.stderr
        r = cli("health", "--addr", d.tcp, "--timeout-ms", "3000")
        assert r.returncode == 1 and b"UNAVAILABLE" in r.stderr, r.stderr
        # The C client's whole suite over TLS.
        r = itest(d.tcp, env={"LKV_ITEST_TLS_CA": certs.ca})
        assert r.returncode == 0, r.stderr.decode()[-3000:]
        assert b"ok (0 failures)" in r.stdout
    finally:
        stop_ok(d)


def test_mutual_tls_needs_a_client_certificate_the_ca_signed(certs, tmp):
    d = start(tmp, ["--tls-cert", certs.server, "--tls-key", certs.server_key,
                    "--tls-client-ca", certs.ca],
              tcp_client={"tls_ca": certs.ca, "tls_cert": certs.client,
                          "tls_key": certs.client_key})
    try:
        assert "tls=mutual" in d.log_text()
        with latticekv.Client(d.tcp, tls_ca=certs.ca, tls_cert=certs.client,
                              tls_key=certs.client_key) as c:
            c.put("m", kv_like((1, 8, 64), 2), namespace="mtls")
        with latticekv.Client(d.tcp, tls_ca=certs.ca) as c:  # no client certificate
            assert code_of(lambda: c.health(timeout=5))[0] == "UNAVAILABLE"
        with latticekv.Client(d.tcp, tls_ca=certs.ca, tls_cert=certs.wrong_client,
                              tls_key=certs.wrong_client_key) as c:  # another CA's
            assert code_of(lambda: c.health(timeout=5))[0] == "UNAVAILABLE"
        base = ["health", "--addr", d.tcp, "--tls-ca", certs.ca, "--timeout-ms", "5000"]
        r = cli(*base, "--tls-cert", certs.client, "--tls-key", certs.client_key)
        assert r.returncode == 0, r.stderr
        r = cli(*base)
        assert r.returncode == 1 and b"UNAVAILABLE" in r.stderr, r.stderr
        r = cli(*base, "--tls-cert", certs.wrong_client, "--tls-key", certs.wrong_client_key)
        assert r.returncode == 1 and b"UNAVAILABLE" in r.stderr, r.stderr
        ok = {"LKV_ITEST_TLS_CA": certs.ca, "LKV_ITEST_TLS_CERT": certs.client,
              "LKV_ITEST_TLS_KEY": certs.client_key}
        r = itest(d.tcp, "--auth-check", "any", "OK", "OK", env=ok)
        assert r.returncode == 0, r.stderr.decode()
        r = itest(d.tcp, "--auth-check", "any", "UNAVAILABLE", "UNAVAILABLE",
                  env={"LKV_ITEST_TLS_CA": certs.ca})  # no client certificate
        assert r.returncode == 0, r.stderr.decode()
        r = itest(d.tcp, "--auth-check", "any", "UNAVAILABLE", "UNAVAILABLE",
                  env={"LKV_ITEST_TLS_CA": certs.ca, "LKV_ITEST_TLS_CERT": certs.wrong_client,
                       "LKV_ITEST_TLS_KEY": certs.wrong_client_key})
        assert r.returncode == 0, r.stderr.decode()
    finally:
        stop_ok(d)


def test_bad_certificate_files_exit_2_naming_the_file(certs, tmp):
    now = datetime.datetime.now(datetime.timezone.utc)
    expired, expired_key = certs.server_cert("expired", now - datetime.timedelta(days=2),
                                             now - datetime.timedelta(days=1))
    future, future_key = certs.server_cert("future", now + datetime.timedelta(days=1),
                                           now + datetime.timedelta(days=2))
    garbage = write(os.path.join(tmp, "garbage.pem"), "not a certificate\n")
    missing = os.path.join(tmp, "missing.pem")
    cases = [
        (["--tls-cert", missing, "--tls-key", certs.server_key], "tls-cert=" + missing,
         "No such file"),
        (["--tls-cert", garbage, "--tls-key", certs.server_key], "tls-cert=" + garbage,
         "not a PEM certificate"),
        (["--tls-cert", certs.server, "--tls-key", garbage], "tls-key=" + garbage,
         "not a PEM private key"),
        (["--tls-cert", certs.server, "--tls-key", certs.client_key], "tls-key=",
         "does not match the certificate"),
        (["--tls-cert", expired, "--tls-key", expired_key], "tls-cert=" + expired, "expired"),
        (["--tls-cert", future, "--tls-key", future_key], "tls-cert=" + future,
         "not valid yet"),
        (["--tls-cert", certs.server, "--tls-key", certs.server_key, "--tls-client-ca",
          garbage], "tls-client-ca=" + garbage, "not PEM certificates"),
        (["--tls-cert", certs.server], "tls-cert is set without tls-key", ""),
        (["--tls-client-ca", certs.ca], "tls-client-ca=", "needs tls-cert"),
    ]
    for args, name, why in cases:
        r = run_daemon("--listen", "127.0.0.1:%d" % free_port(), *args)
        err = r.stderr.decode()
        assert r.returncode == 2, (args, err)
        assert len(err.splitlines()) == 1 and name in err and why in err, (args, err)


def wait_log(d, event, after=0):
    """Waits for a log event past offset `after`; returns its line."""
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        with open(d.log_path, encoding="utf-8", errors="replace") as f:
            text = f.read()[after:]
        for line in text.splitlines():
            if "event=" + event + " " in line or line.endswith("event=" + event):
                return line
        time.sleep(0.02)
    raise AssertionError("no %s in the log:\n%s" % (event, d.log_text()))


def log_size(d):
    return os.path.getsize(d.log_path)


def read_log(d):
    """The whole log, also after the daemon stopped."""
    with open(d.log_path, encoding="utf-8", errors="replace") as f:
        return f.read()


def test_an_expired_certificate_fails_new_connections(certs, tmp):
    """A certificate valid for 20 s, loaded by SIGHUP (so the daemon's slow
    start on a busy machine does not eat its window): served while valid;
    after its notAfter new connections fail, and reloading it is refused."""
    cert, key = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
    shutil.copy(certs.server, cert)
    shutil.copy(certs.server_key, key)
    d = start(tmp, ["--tls-cert", cert, "--tls-key", key], tcp_client={"tls_ca": certs.ca})
    try:
        now = datetime.datetime.now(datetime.timezone.utc)
        end = now + datetime.timedelta(seconds=20)
        short, short_key = certs.server_cert("short", now - datetime.timedelta(hours=1), end)
        shutil.copy(short, cert)
        shutil.copy(short_key, key)
        mark = log_size(d)
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "tls_reloaded", mark)
        with latticekv.Client(d.tcp, tls_ca=certs.ca) as c:
            assert c.health() == "SERVING"  # valid: served
        time.sleep(max(0.0, (end - datetime.datetime.now(datetime.timezone.utc))
                       .total_seconds()) + 1.5)
        with latticekv.Client(d.tcp, tls_ca=certs.ca) as c:
            code, msg = code_of(lambda: c.health(timeout=5))
            assert code == "UNAVAILABLE", msg
        r = cli("health", "--addr", d.tcp, "--tls-ca", certs.ca, "--timeout-ms", "5000")
        assert r.returncode == 1 and b"UNAVAILABLE" in r.stderr, r.stderr
        # Reloading the same (now expired) file is refused and logged.
        mark = log_size(d)
        d.proc.send_signal(signal.SIGHUP)
        line = wait_log(d, "tls_reload_failed", mark)
        assert "expired" in line and "kept_previous" in line, line
    finally:
        stop_ok(d)


def test_sighup_rotates_the_certificate_under_load(certs, tmp):
    """Calls on an established connection keep succeeding through two
    reloads; new connections see the new certificate (signed by another CA,
    so a client that trusts only the old CA cannot connect)."""
    cert, key = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
    shutil.copy(certs.server, cert)
    shutil.copy(certs.server_key, key)
    other, other_key = certs.sign("rotated", certs.other_ca, certs.other_ca_key,
                                  "subjectAltName=IP:127.0.0.1\n")
    d = start(tmp, ["--tls-cert", cert, "--tls-key", key], tcp_client={"tls_ca": certs.ca})
    stop = threading.Event()
    counts = {"ok": 0, "fail": []}
    x = kv_like((2, 8, 64), 3)

    def load():
        with latticekv.Client(d.tcp, tls_ca=certs.ca, timeout=30) as c:
            i = 0
            while not stop.is_set():
                try:
                    c.put("k%d" % (i % 8), x, namespace="load")
                    c.get("k%d" % (i % 8), namespace="load")
                    counts["ok"] += 1
                except latticekv.Error as e:
                    counts["fail"].append(str(e))
                i += 1

    threads = [threading.Thread(target=load) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        while counts["ok"] < 20:
            time.sleep(0.01)
        # A bad pair first: refused and logged, the old certificate stays.
        shutil.copy(other, cert)  # key still the old one: mismatch
        mark = log_size(d)
        d.proc.send_signal(signal.SIGHUP)
        assert "does not match" in wait_log(d, "tls_reload_failed", mark)
        with latticekv.Client(d.tcp, tls_ca=certs.ca) as c:
            assert c.health() == "SERVING"
        shutil.copy(other_key, key)
        before = counts["ok"]
        mark = log_size(d)
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "tls_reloaded", mark)
        with latticekv.Client(d.tcp, tls_ca=certs.other_ca) as c:
            assert c.health() == "SERVING"
        with latticekv.Client(d.tcp, tls_ca=certs.ca) as c:
            assert code_of(lambda: c.health(timeout=5))[0] == "UNAVAILABLE"
        r = cli("health", "--addr", d.tcp, "--tls-ca", certs.other_ca)
        assert r.returncode == 0, r.stderr
        while counts["ok"] < before + 20:
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(HANG_GUARD_S)
        stop_ok(d)
    assert counts["fail"] == [], counts["fail"][:3]
    assert "tls_certificate_in_use" in read_log(d)


# --- --insecure-listen ---------------------------------------------------------

def test_plaintext_off_loopback_needs_insecure_listen(tmp):
    port = free_port()
    r = run_daemon("--listen", "0.0.0.0:%d" % port)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert "listen=0.0.0.0:%d" % port in err and "insecure-listen=on" in err, err
    d = Daemon(tmp, ["--listen", "0.0.0.0:%d" % port, "--insecure-listen", "on"])
    try:
        with latticekv.Client("127.0.0.1:%d" % port) as c:
            assert c.health() == "SERVING"
    finally:
        stop_ok(d)


# --- tokens --------------------------------------------------------------------

@pytest.fixture
def token_daemon(tmp):
    tokens = write(os.path.join(tmp, "tokens"), TOKENS)
    d = start(tmp, ["--auth-tokens", tokens])
    d.tokens = tokens
    yield d
    stop_ok(d)
    log = read_log(d)
    for t in (ADMIN, TEAM_A, TEAM_B, "not-a-token"):
        assert t not in log, "a token reached the log"


def test_tokens_through_the_python_client(token_daemon):
    d = token_daemon
    x = kv_like((1, 8, 64), 4)
    for addr in (d.tcp, d.unix):
        with latticekv.Client(addr) as anon:
            assert anon.health() == "SERVING", "Health stays open for probes"
            code, msg = code_of(lambda: anon.put("k", x, namespace="alpha"))
            assert code == "UNAUTHENTICATED" and "Bearer" in msg, msg
        with latticekv.Client(addr, token="not-a-token") as bad:
            code, msg = code_of(lambda: bad.lookup(["k"], namespace="alpha"))
            assert code == "UNAUTHENTICATED" and "not-a-token" not in msg, msg
        with latticekv.Client(addr, token=TEAM_A) as a:
            a.put("k", x, namespace="alpha")
            a.put("k", x, namespace="beta")
            assert a.get("k", namespace="alpha").shape == x.shape
            for call in (lambda: a.put("k", x, namespace="gamma"),
                         lambda: a.get("k", namespace="gamma"),
                         lambda: a.lookup(["k"], namespace="gamma"),
                         lambda: a.delete("k", namespace="gamma")):
                code, msg = code_of(call)
                assert code == "PERMISSION_DENIED" and '"gamma"' in msg, msg
            code, msg = code_of(a.stats)
            assert code == "PERMISSION_DENIED" and "Stats" in msg, msg
            # Codec calls name no namespace: any known token may use them.
            assert a.compress(x) is not None
        with latticekv.Client(addr, token=TEAM_B) as b:
            b.put("k", x, namespace="gamma")
            assert code_of(lambda: b.get("k", namespace="alpha"))[0] == "PERMISSION_DENIED"
            assert code_of(lambda: b.delete("k", namespace="alpha"))[0] == "PERMISSION_DENIED"
        with latticekv.Client(addr, token=ADMIN) as adm:
            assert adm.get("k", namespace="gamma").shape == x.shape
            assert adm.stats()["requests"] > 0
    # Team A's block is untouched by team B's attempts.
    with latticekv.Client(d.tcp, token=TEAM_A) as a:
        assert a.lookup(["k"], namespace="alpha")[0] == 1
    assert TEAM_A not in repr(latticekv.client._Bearer(TEAM_A))


def test_tokens_through_the_cli(token_daemon, tmp):
    d = token_daemon
    ta = write(os.path.join(tmp, "ta"), TEAM_A + "\n")
    tadm = write(os.path.join(tmp, "tadm"), ADMIN + "\n")
    r = cli("lookup", "--addr", d.tcp, "--ns", "alpha", "--keys", "a")
    assert r.returncode == 1 and b"UNAUTHENTICATED" in r.stderr, r.stderr
    r = cli("lookup", "--addr", d.tcp, "--ns", "alpha", "--keys", "a", "--token-file", ta)
    assert r.returncode == 0, r.stderr
    r = cli("lookup", "--addr", d.unix, "--ns", "gamma", "--keys", "a", "--token-file", ta)
    assert r.returncode == 1 and b"PERMISSION_DENIED" in r.stderr and b'"gamma"' in r.stderr
    r = cli("stats", "--addr", d.tcp, "--token-file", ta)
    assert r.returncode == 1 and b"PERMISSION_DENIED" in r.stderr, r.stderr
    r = cli("stats", "--addr", d.tcp, "--token-file", tadm)
    assert r.returncode == 0, r.stderr
    r = cli("stats", "--addr", d.tcp, env={"LATTICEKV_TOKEN": ADMIN})
    assert r.returncode == 0, r.stderr
    r = cli("stats", "--addr", d.tcp, env={"LATTICEKV_TOKEN": "wrong-" + ADMIN})
    assert r.returncode == 1 and b"UNAUTHENTICATED" in r.stderr, r.stderr
    r = cli("health", "--addr", d.tcp)
    assert r.returncode == 0 and r.stdout.strip() == b"SERVING"
    r = cli("stats", "--addr", d.tcp, "--token-file", os.path.join(tmp, "nope"))
    assert r.returncode == 2 and b"--token-file=" in r.stderr, r.stderr
    for out in (r.stdout, r.stderr):
        assert ADMIN.encode() not in out and TEAM_A.encode() not in out


def test_tokens_through_the_c_client(token_daemon):
    d = token_daemon
    for addr in (d.tcp, d.unix):
        cases = [
            ({}, "alpha", "UNAUTHENTICATED", "UNAUTHENTICATED"),
            ({"LKV_ITEST_TOKEN": "not-a-token"}, "alpha", "UNAUTHENTICATED", "UNAUTHENTICATED"),
            ({"LKV_ITEST_TOKEN": TEAM_A}, "alpha", "OK", "PERMISSION_DENIED"),
            ({"LKV_ITEST_TOKEN": TEAM_A}, "gamma", "PERMISSION_DENIED", "PERMISSION_DENIED"),
            ({"LKV_ITEST_TOKEN": ADMIN}, "gamma", "OK", "OK"),
        ]
        for env, ns, want, want_stats in cases:
            r = itest(addr, "--auth-check", ns, want, want_stats, env=env)
            assert r.returncode == 0, (addr, env, ns, r.stderr.decode())
    r = itest(d.unix, env={"LKV_ITEST_TOKEN": ADMIN})  # the whole suite with a token
    assert r.returncode == 0, r.stderr.decode()[-3000:]


def test_sighup_reloads_tokens_and_keeps_them_on_a_bad_file(token_daemon):
    d = token_daemon
    new = "fresh-9a8b7c6d5e"
    write(d.tokens, "%s *\n%s delta\n" % (ADMIN, new))
    mark = log_size(d)
    d.proc.send_signal(signal.SIGHUP)
    wait_log(d, "auth_tokens_reloaded", mark)
    with latticekv.Client(d.tcp, token=new) as c:
        assert c.lookup(["k"], namespace="delta")[0] == 0
    with latticekv.Client(d.tcp, token=TEAM_A) as c:
        assert code_of(lambda: c.lookup(["k"], namespace="alpha"))[0] == "UNAUTHENTICATED"
    write(d.tokens, "%s delta,,x\n" % new)  # bad: the last good table stays
    mark = log_size(d)
    d.proc.send_signal(signal.SIGHUP)
    line = wait_log(d, "auth_tokens_reload_failed", mark)
    assert "kept_previous" in line and ":1:" in line and new not in line, line
    with latticekv.Client(d.tcp, token=new) as c:
        assert c.lookup(["k"], namespace="delta")[0] == 0
    with latticekv.Client(d.tcp, token=ADMIN) as c:
        assert c.stats()["requests"] > 0


def test_bad_token_file_at_start_exits_2(tmp):
    bad = write(os.path.join(tmp, "tokens"), "secret-abc alpha\nsecret-abc beta\n")
    r = run_daemon("--listen", "127.0.0.1:%d" % free_port(), "--auth-tokens", bad)
    err = r.stderr.decode()
    assert r.returncode == 2 and "auth-tokens=" in err and ":2:" in err, err
    assert "secret-abc" not in err
    r = run_daemon("--listen", "127.0.0.1:%d" % free_port(), "--auth-tokens",
                   os.path.join(tmp, "missing"))
    assert r.returncode == 2 and "No such file" in r.stderr.decode()


def test_auth_unix_off_trusts_the_socket_only(tmp):
    tokens = write(os.path.join(tmp, "tokens"), TOKENS)
    d = start(tmp, ["--auth-tokens", tokens, "--auth-unix", "off"])
    try:
        x = kv_like((1, 8, 64), 5)
        with latticekv.Client(d.unix) as c:
            c.put("k", x, namespace="anything")
            assert c.stats()["requests"] > 0
        with latticekv.Client(d.tcp) as c:
            assert code_of(lambda: c.get("k", namespace="anything"))[0] == "UNAUTHENTICATED"
        with latticekv.Client(d.tcp, token=TEAM_A) as c:
            assert code_of(lambda: c.get("k", namespace="anything"))[0] == "PERMISSION_DENIED"
    finally:
        stop_ok(d)


def test_tls_and_tokens_together(certs, tmp):
    tokens = write(os.path.join(tmp, "tokens"), TOKENS)
    d = start(tmp, ["--tls-cert", certs.server, "--tls-key", certs.server_key,
                    "--auth-tokens", tokens], tcp_client={"tls_ca": certs.ca})
    try:
        env = {"LKV_ITEST_TLS_CA": certs.ca, "LKV_ITEST_TOKEN": TEAM_A}
        r = itest(d.tcp, "--auth-check", "beta", "OK", "PERMISSION_DENIED", env=env)
        assert r.returncode == 0, r.stderr.decode()
        with latticekv.Client(d.tcp, tls_ca=certs.ca, token=ADMIN) as c:
            assert c.stats()["errors"] >= 1
    finally:
        stop_ok(d)


# --- the asyncio client: mutual TLS and tokens together --------------------------

def test_async_client_speaks_mutual_tls_with_tokens(certs, tmp):
    tokens = write(os.path.join(tmp, "tokens"), TOKENS)
    d = start(tmp, ["--tls-cert", certs.server, "--tls-key", certs.server_key,
                    "--tls-client-ca", certs.ca, "--auth-tokens", tokens],
              tcp_client={"tls_ca": certs.ca, "tls_cert": certs.client,
                          "tls_key": certs.client_key})
    tls = {"tls_ca": certs.ca, "tls_cert": certs.client, "tls_key": certs.client_key}
    arrays = [kv_like((2, 8, 64), seed=20 + i) for i in range(3)]
    keys = [b"aio-tls-%d" % i for i in range(3)]

    async def code_of_async(coro):
        try:
            await coro
        except latticekv.Error as e:
            return e.code.name, e.details
        return "OK", ""

    async def run():
        out = {}
        async with latticekv.AsyncClient(d.tcp, token=TEAM_A, **tls) as a:
            await a.wait_ready()
            # Unary and stream calls both carry the token over mutual TLS.
            out["sizes"] = await a.put_many(zip(keys, arrays), namespace="alpha")
            out["got"] = await a.get_many(keys, namespace="alpha")
            out["one"] = await a.get(keys[0], namespace="alpha")
            out["lookup"] = await a.lookup(keys, namespace="alpha")
            out["gamma"] = await code_of_async(a.put(b"k", arrays[0], namespace="gamma"))
            out["gamma_stream"] = await code_of_async(
                a.get_many(keys, namespace="gamma"))
            out["stats"] = await code_of_async(a.stats())
        # CA bytes in place of a path work as for Client.
        with open(certs.ca, "rb") as f:
            ca_pem = f.read()
        async with latticekv.AsyncClient(d.tcp, token=ADMIN, tls_ca=ca_pem,
                                         tls_cert=certs.client, tls_key=certs.client_key) as adm:
            out["admin_stats"] = await adm.stats()
            out["admin_get"] = await adm.get(keys[1], namespace="alpha")
        async with latticekv.AsyncClient(d.tcp, **tls) as anon:
            out["anon_health"] = await anon.health()
            out["anon_put"] = await code_of_async(anon.put(b"k", arrays[0], namespace="alpha"))
        async with latticekv.AsyncClient(d.tcp, token="not-a-token", **tls) as bad:
            out["bad_token"] = await code_of_async(bad.lookup(keys, namespace="alpha"))
        # No client certificate, and plaintext, cannot connect to the TLS port.
        async with latticekv.AsyncClient(d.tcp, tls_ca=certs.ca, token=TEAM_A) as nocert:
            out["nocert"] = await code_of_async(nocert.health(timeout=5))
        async with latticekv.AsyncClient(d.tcp, token=TEAM_A) as plain:
            out["plain"] = await code_of_async(plain.health(timeout=5))
        # The unix socket stays plaintext; the token still decides.
        async with latticekv.AsyncClient(d.unix, token=TEAM_B) as b:
            out["unix_b"] = await code_of_async(b.get(keys[0], namespace="alpha"))
        return out

    try:
        out = asyncio.run(run())
        assert len(out["sizes"]) == 3 and all(s > 0 for s in out["sizes"])
        for x, y in zip(arrays, out["got"]):
            assert y.shape == x.shape and np.abs(y - x).max() < 0.2
        assert np.array_equal(out["one"], out["got"][0])
        assert out["lookup"] == (3, [True, True, True])
        for k in ("gamma", "gamma_stream"):
            code, msg = out[k]
            assert code == "PERMISSION_DENIED" and '"gamma"' in msg, (k, msg)
        assert out["stats"][0] == "PERMISSION_DENIED", out["stats"]
        assert out["admin_stats"]["requests"] > 0
        assert np.array_equal(out["admin_get"], out["got"][1])
        assert out["anon_health"] == "SERVING", "Health stays open for probes"
        code, msg = out["anon_put"]
        assert code == "UNAUTHENTICATED" and "Bearer" in msg, msg
        code, msg = out["bad_token"]
        assert code == "UNAUTHENTICATED" and "not-a-token" not in msg, msg
        assert out["nocert"][0] == "UNAVAILABLE", out["nocert"]
        assert out["plain"][0] == "UNAVAILABLE", out["plain"]
        assert out["unix_b"][0] == "PERMISSION_DENIED", out["unix_b"]
    finally:
        stop_ok(d)
    log = read_log(d)
    for t in (ADMIN, TEAM_A, TEAM_B, "not-a-token"):
        assert t not in log, "a token reached the log"


@pytest.mark.parametrize("kwargs,field", [
    ({"tls_cert": "c.pem"}, "tls_cert and tls_key"),
    ({"tls_cert": "c.pem", "tls_key": "k.pem"}, "tls_cert needs tls_ca"),
    ({"token": ""}, "token"),
    ({"token": "two words"}, "token"),
])
def test_both_clients_refuse_the_same_bad_connection_arguments(kwargs, field):
    async def make():
        latticekv.AsyncClient("127.0.0.1:1", **kwargs)

    with pytest.raises(ValueError, match=field) as sync_err:
        latticekv.Client("127.0.0.1:1", **kwargs)
    with pytest.raises(ValueError, match=field) as async_err:
        asyncio.run(make())
    assert str(sync_err.value) == str(async_err.value)
    assert "two words" not in str(async_err.value)
