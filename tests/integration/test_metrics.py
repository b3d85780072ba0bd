# SPDX-License-Identifier: Apache-2.0
"""End-to-end: latticekvd's Prometheus endpoint (--metrics-listen).

A daemon of its own serves a known workload through the Python client; a
scrape must then count exactly what was sent. Every scrape is read by a parser
of the text exposition format written here from the format's specification
(prometheus.io "Exposition formats", text format 0.0.4), and, when Debian's
`prometheus` package is installed, also checked by `promtool check metrics`.
"""

import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import numpy as np
import pytest

import latticekv
from conftest import DAEMON, HANG_GUARD_S, Daemon, free_port, kv_like

NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
PUT = "latticekv.v1.KVStore/Put"
GET = "latticekv.v1.KVStore/Get"


class FormatError(AssertionError):
    pass


def parse_labels(s, i, where):
    """Parses '{a="x",b="y"}' starting at s[i] == '{'; returns (labels, next index)."""
    labels = {}
    i += 1
    while True:
        if s[i] == "}":
            return labels, i + 1
        m = LABEL_NAME_RE.match(s, i)
        if not m:
            raise FormatError("%s: bad label name at %r" % (where, s[i:]))
        name = m.group(0)
        i = m.end()
        if s[i] != "=" or s[i + 1] != '"':
            raise FormatError("%s: label %s has no =\"value\"" % (where, name))
        i += 2
        value = []
        while s[i] != '"':
            if s[i] == "\\":
                esc = s[i + 1]
                if esc not in '\\"n':
                    raise FormatError("%s: bad escape \\%s" % (where, esc))
                value.append("\n" if esc == "n" else esc)
                i += 2
            else:
                value.append(s[i])
                i += 1
        i += 1
        if name in labels:
            raise FormatError("%s: label %s twice" % (where, name))
        labels[name] = "".join(value)
        if s[i] == ",":
            i += 1
        elif s[i] != "}":
            raise FormatError("%s: expected , or } after label %s" % (where, name))


def parse_value(v, where):
    if v in ("+Inf", "-Inf", "NaN"):
        return float(v.replace("Inf", "inf").replace("NaN", "nan"))
    try:
        return float(v)
    except ValueError:
        raise FormatError("%s: value %r is not a float" % (where, v)) from None


def parse_exposition(text):
    """Returns ({(name, frozenset(labels.items())): value}, {family: type}).
    Raises FormatError for anything the text format does not allow, and for
    what Prometheus would reject on ingestion: a sample of a family declared
    with another type, a family whose samples are split up or declared twice,
    a duplicate sample, histogram buckets that are not cumulative or disagree
    with _count."""
    if not text.endswith("\n"):
        raise FormatError("the exposition does not end with a line feed")
    samples, types, helps = {}, {}, {}
    seen_families = []
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d" % n
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                fam = parts[2]
                if not NAME_RE.match(fam):
                    raise FormatError("%s: bad metric name %r" % (where, fam))
                if parts[1] == "TYPE":
                    if len(parts) != 4 or parts[3] not in TYPES:
                        raise FormatError("%s: bad TYPE line %r" % (where, line))
                    if fam in types:
                        raise FormatError("%s: TYPE of %s given twice" % (where, fam))
                    if fam in seen_families:
                        raise FormatError("%s: TYPE of %s after its samples" % (where, fam))
                    types[fam] = parts[3]
                else:
                    if fam in helps:
                        raise FormatError("%s: HELP of %s given twice" % (where, fam))
                    helps[fam] = parts[3] if len(parts) == 4 else ""
            continue
        m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
        if not m:
            raise FormatError("%s: no metric name in %r" % (where, line))
        name, i = m.group(0), m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = parse_labels(line, i, where)
        rest = line[i:].split()
        if not line[i:].startswith(" ") or len(rest) not in (1, 2):
            raise FormatError("%s: expected 'name{labels} value [timestamp]': %r" % (where, line))
        value = parse_value(rest[0], where)
        fam = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
                fam = name[: -len(suffix)]
        if fam not in types:
            raise FormatError("%s: sample %s has no TYPE line before it" % (where, name))
        if types[fam] == "counter" and not (value >= 0 and not math.isnan(value)):
            raise FormatError("%s: counter %s is %r" % (where, name, value))
        if seen_families and seen_families[-1] != fam and fam in seen_families:
            raise FormatError("%s: samples of %s are not together" % (where, fam))
        if not seen_families or seen_families[-1] != fam:
            seen_families.append(fam)
        key = (name, frozenset(labels.items()))
        if key in samples:
            raise FormatError("%s: duplicate sample %s%s" % (where, name, labels))
        samples[key] = value
    for fam, t in types.items():
        if t != "histogram":
            continue
        buckets = sorted((parse_value(dict(k[1])["le"], fam), v) for k, v in samples.items()
                         if k[0] == fam + "_bucket")
        if not buckets or not math.isinf(buckets[-1][0]):
            raise FormatError("histogram %s has no le=\"+Inf\" bucket" % fam)
        counts = [v for _, v in buckets]
        if counts != sorted(counts):
            raise FormatError("histogram %s: buckets are not cumulative: %s" % (fam, buckets))
        if counts[-1] != samples.get((fam + "_count", frozenset())):
            raise FormatError("histogram %s: +Inf bucket %s != _count" % (fam, counts[-1]))
    return samples, types


def test_parser_rejects_what_the_format_forbids():
    """The parser used below must itself fail on broken expositions."""
    good = "# TYPE a_total counter\na_total{x=\"1\"} 2\n"
    assert parse_exposition(good)[0][("a_total", frozenset({("x", "1")}))] == 2
    for bad in ["a 1\n",                                        # no TYPE
                "# TYPE a gauge\na 1",                          # no final newline
                "# TYPE a gauge\na{x=1} 1\n",                   # unquoted label value
                "# TYPE a gauge\na 1\na 2\n",                   # duplicate sample
                "# TYPE a gauge\n# TYPE a gauge\na 1\n",        # TYPE twice
                "# TYPE a counter\na -1\n",                     # negative counter
                "# TYPE a gauge\na one\n",                      # not a number
                "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
                "h_count 1\nh_sum 0\n",                         # not cumulative
                "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na 2\n"]:  # split family
        with pytest.raises(FormatError):
            parse_exposition(bad)


# ---- the daemon ----------------------------------------------------------

def http(port, raw, timeout=HANG_GUARD_S):
    """Sends raw bytes, returns (status, headers dict, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    assert int(headers["content-length"]) == len(body), data[:400]
    return status, headers, body


def scrape(port):
    status, headers, body = http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=HANG_GUARD_S)
        assert r.returncode == 0, (r.stdout + r.stderr).decode() + text
    return parse_exposition(text)


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture(scope="module")
def mdaemon():
    with tempfile.TemporaryDirectory(prefix="lkv-metrics-") as tmp:
        port = free_port()
        d = Daemon(tmp, extra=["--metrics-listen", "127.0.0.1:%d" % port])
        d.metrics_port = port
        yield d
        rc = d.stop()
        assert rc == 0, "latticekvd exited with %d:\n%s" % (rc, d.log_text())


def test_scrape_counts_a_known_workload(mdaemon):
    port = mdaemon.metrics_port
    before, _ = scrape(port)
    version = subprocess.run([DAEMON, "--version"], capture_output=True, text=True,
                             check=True).stdout.split()[-1]
    assert value(before, "latticekv_build_info", version=version) == 1
    assert value(before, "latticekv_backend_info", backend="cpu") == 1
    raw = coded = vectors = 0
    with latticekv.Client(mdaemon.tcp, timeout=HANG_GUARD_S) as c:
        blocks = {}
        for i in range(5):
            a = kv_like((2 + i, 8, 128), seed=i)
            blocks["k%d" % i] = (a, c.put("k%d" % i, a, namespace="m"))
            raw += a.nbytes
            coded += blocks["k%d" % i][1]
            vectors += a.size // 128
        for i in range(3):  # hits, decoded
            c.get("k%d" % i, namespace="m")
            vectors += blocks["k%d" % i][0].size // 128
        for k in ("absent1", "absent2"):
            with pytest.raises(latticekv.Error) as e:
                c.get(k, namespace="m")
            assert e.value.code.name == "NOT_FOUND"
        a = kv_like((4, 128), seed=9)
        container = c.compress(a)
        raw += a.nbytes
        coded += len(container)
        vectors += 4
        with pytest.raises(latticekv.Error):
            c.compress(np.zeros((4, 100), np.float32))  # head_dim 100: INVALID_ARGUMENT
        assert c.delete("k4", namespace="m")
        stats = c.stats()
    after, types = scrape(port)

    def delta(name, **labels):
        key = (name, frozenset(labels.items()))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("latticekv_requests_total", method=PUT, code="OK") == 5
    assert delta("latticekv_requests_total", method=GET, code="OK") == 3
    assert delta("latticekv_requests_total", method=GET, code="NOT_FOUND") == 2
    assert delta("latticekv_requests_total", method="latticekv.v1.Codec/Compress", code="OK") == 1
    assert delta("latticekv_requests_total", method="latticekv.v1.Codec/Compress",
                 code="INVALID_ARGUMENT") == 1
    assert delta("latticekv_requests_total", method="latticekv.v1.KVStore/Delete", code="OK") == 1
    assert delta("latticekv_raw_bytes_total") == raw
    assert delta("latticekv_coded_bytes_total") == coded
    assert delta("latticekv_tier_hits_total", tier="host") == 3
    assert delta("latticekv_tier_misses_total", tier="host") == 2
    assert delta("latticekv_tier_blocks", tier="host") == 4
    used = sum(n + len("m") + len(k) for k, (_, n) in blocks.items() if k != "k4")
    assert delta("latticekv_tier_used_bytes", tier="host") == used
    assert value(after, "latticekv_tier_capacity_bytes", tier="host") == 512 << 20
    # Every coded vector went through one codec launch of the histograms.
    assert delta("latticekv_batch_vectors_sum") == vectors
    assert delta("latticekv_batched_vectors_total") == vectors
    assert delta("latticekv_batch_vectors_count") == delta("latticekv_batches_total") > 0
    assert delta("latticekv_codec_seconds_count") == delta("latticekv_batches_total")
    assert value(after, "latticekv_codec_seconds_sum") > 0
    assert value(after, "latticekv_compression_ratio") == pytest.approx(
        value(after, "latticekv_raw_bytes_total") / value(after, "latticekv_coded_bytes_total"))
    # Nothing is in flight between calls (a scrape is not a gRPC call).
    assert value(after, "latticekv_inflight_calls") == 0
    assert value(after, "latticekv_queue_depth") == 0
    assert value(after, "latticekv_inflight_bytes") == 0
    assert value(after, "latticekv_auth_failures_total", reason="unauthenticated") == 0
    # One generator: the Stats reply says the same as the scrape around it.
    assert stats["raw_bytes_in"] == value(after, "latticekv_raw_bytes_total")
    assert stats["coded_bytes_out"] == value(after, "latticekv_coded_bytes_total")
    assert stats["tiers"][0]["hits"] == value(after, "latticekv_tier_hits_total", tier="host")
    answered = sum(v for (n, _), v in after.items() if n == "latticekv_requests_total")
    assert answered == stats["requests"]  # the Stats call counts itself in both
    assert types["latticekv_requests_total"] == "counter"
    assert types["latticekv_codec_seconds"] == "histogram"


def test_dashboard_queries_only_served_metrics(mdaemon):
    """deploy/grafana's queries name metrics this daemon serves."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "grafana",
                        "latticekv.json")
    with open(path, encoding="utf-8") as f:
        used = set(re.findall(r"latticekv_[a-z0-9_]+", f.read())) - {"latticekv_"}
    samples, types = scrape(mdaemon.metrics_port)
    served = {n for n, _ in samples} | set(types)
    missing = sorted(used - served)
    assert not missing, "the dashboard queries metrics that are not served: %s" % missing


@pytest.mark.parametrize("raw,status", [
    (b"GET /other HTTP/1.1\r\n\r\n", 404),
    (b"GET / HTTP/1.1\r\n\r\n", 404),
    (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
    (b"HEAD /metrics HTTP/1.1\r\n\r\n", 405),
    (b"GET /metrics HTTP/2.0\r\n\r\n", 400),
    (b"GET /metrics\r\n\r\n", 400),
    (b"hello\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
    (b"GET /metrics?name[]=x HTTP/1.0\n\n", 200),
])
def test_http_answers(mdaemon, raw, status):
    got, headers, body = http(mdaemon.metrics_port, raw)
    assert got == status, body[:200]
    assert headers["connection"] == "close"
    if status == 405:
        assert headers["allow"] == "GET"
    if status != 200:
        assert body == b"only GET /metrics is served here\n"


def test_slow_and_idle_clients_cannot_hold_it(mdaemon):
    port = mdaemon.metrics_port
    # A client that never finishes its request head, and more idle
    # connections than the listener serves at once.
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET /metr")
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(24)]
    try:
        # The connections beyond the limit are closed at once: EOF, no answer.
        closed = 0
        for s in idle:
            s.settimeout(2.0)
            try:
                closed += s.recv(1) == b""
            except socket.timeout:
                pass
        assert closed >= 24 + 1 - 16, closed
        # gRPC is served meanwhile (the loop is not held by the clients).
        with latticekv.Client(mdaemon.tcp, timeout=HANG_GUARD_S) as c:
            assert c.health() == "SERVING"
        # The slow client is cut off after the listener's timeout (5 s).
        slow.settimeout(HANG_GUARD_S)
        t0 = time.monotonic()
        assert slow.recv(1) == b""
        assert time.monotonic() - t0 < 10
    finally:
        slow.close()
        for s in idle:
            s.close()
    # Once they are gone a scrape is answered again.
    deadline = time.monotonic() + HANG_GUARD_S
    while True:
        try:
            scrape(port)
            break
        except (ConnectionError, IndexError, ValueError):
            assert time.monotonic() < deadline
            time.sleep(0.05)


@pytest.mark.parametrize("value_,code,msg", [
    ("unix:/tmp/x.sock", 2, "metrics-listen=unix:/tmp/x.sock is not host:port"),
    ("nocolon", 2, "metrics-listen=nocolon is not host:port"),
    ("127.0.0.1:99999", 2, "is not host:port"),
    ("203.0.113.1:9464", 1, "metrics-listen=203.0.113.1:9464: Cannot assign requested address"),
])
def test_bad_metrics_listen(value_, code, msg):
    if not DAEMON:
        pytest.skip("LKV_DAEMON is not set")
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([DAEMON, "--listen", "unix:" + os.path.join(tmp, "s"),
                            "--backend", "cpu", "--metrics-listen", value_],
                           capture_output=True, timeout=HANG_GUARD_S)
    assert r.returncode == code, r.stderr.decode()
    assert msg in r.stderr.decode(), r.stderr.decode()


def test_metrics_port_in_use():
    if not DAEMON:
        pytest.skip("LKV_DAEMON is not set")
    with socket.socket() as busy, tempfile.TemporaryDirectory() as tmp:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        addr = "127.0.0.1:%d" % busy.getsockname()[1]
        r = subprocess.run([DAEMON, "--listen", "unix:" + os.path.join(tmp, "s"),
                            "--backend", "cpu", "--metrics-listen", addr],
                           capture_output=True, timeout=HANG_GUARD_S)
    assert r.returncode == 1
    assert "metrics-listen=%s: Address already in use" % addr in r.stderr.decode()


def test_operations_doc_lists_every_metric(mdaemon):
    """docs/operations.md's metrics table names every family served."""
    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "operations.md")
    with open(path, encoding="utf-8") as f:
        doc = f.read()
    _, types = scrape(mdaemon.metrics_port)
    missing = sorted(f for f in types if "`%s`" % f not in doc)
    assert not missing, "docs/operations.md does not list: %s" % missing


def test_shutdown_closes_open_metrics_connections():
    """Connections still open (idle, half a request, an answer unread) do not
    hold the shutdown, and their answers' budget charges are given back."""
    with tempfile.TemporaryDirectory(prefix="lkv-metrics-") as tmp:
        port = free_port()
        d = Daemon(tmp, extra=["--metrics-listen", "127.0.0.1:%d" % port])
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            socks[1].sendall(b"GET /metrics HTTP/1.1\r\n")
            # An answer the client never reads: the daemon has written it (or
            # holds it while the socket buffer is full) when SIGTERM comes.
            socks[2].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            socks[2].sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
            scrape(port)  # the loop has taken every request above by now
            rc = d.stop()  # also checks the budget paired (left=0)
            assert rc == 0, d.log_text()
        finally:
            for s in socks:
                s.close()
