"""The `latticekv` CLI's daemon commands: outputs, exit codes, one-line errors."""

import json
import os
import pty
import subprocess

import numpy as np
import pytest

import latticekv
from conftest import CLI, HANG_GUARD_S, kv_like


def one_line_error(r, *words):
    err = r.stderr.decode()
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("latticekv: error: "), err
    for w in words:
        assert w in lines[0], (w, err)


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_put_get_roundtrip_matches_offline(cli, addr, tmp_path):
    x = kv_like((2, 16, 8, 128), 3)
    raw = latticekv.to_bf16_bits(x).tobytes()
    src = write(tmp_path, "x.bf16", raw)
    r = cli("put", "--addr", addr, "--key", "cli-k", "--in", src, "--in-dtype", "bf16",
            "--shape", "2,16,8,128")
    assert r.returncode == 0, r.stderr
    assert b"coded_bytes=" in r.stdout

    out = str(tmp_path / "y.bf16")
    r = cli("get", "--addr", addr, "--key", "cli-k", "--out", out)
    assert r.returncode == 0, r.stderr
    assert b"shape=2,16,8,128" in r.stdout and b"dtype=bf16" in r.stdout
    expect = str(tmp_path / "rt.bf16")
    r = cli("codec", "roundtrip", "--variant", "e8", "--q", "38", "--dim", "128", "--in", src,
            "--in-dtype", "bf16", "--out", expect, "--shape", "2,16,8,128")
    assert r.returncode == 0, r.stderr
    assert open(out, "rb").read() == open(expect, "rb").read()

    # --coded: the stored container equals `latticekv codec encode` of the same input.
    coded = str(tmp_path / "c.lkv")
    r = cli("get", "--addr", addr, "--key", "cli-k", "--out", coded, "--coded")
    assert r.returncode == 0, r.stderr
    enc = str(tmp_path / "enc.lkv")
    r = cli("codec", "encode", "--variant", "e8", "--q", "38", "--dim", "128", "--in", src,
            "--in-dtype", "bf16", "--out", enc, "--shape", "2,16,8,128")
    assert r.returncode == 0, r.stderr
    assert open(coded, "rb").read() == open(enc, "rb").read()

    # put --coded of that container under another key, then both agree.
    r = cli("put", "--addr", addr, "--key", "cli-k2", "--in", enc, "--coded")
    assert r.returncode == 0, r.stderr
    out2 = str(tmp_path / "y2.f32")
    r = cli("get", "--addr", addr, "--key", "cli-k2", "--out", out2, "--out-dtype", "f32")
    assert r.returncode == 0, r.stderr
    # The fp32 reconstruction rounds (to nearest even) to the bf16 one.
    y2 = np.fromfile(out2, dtype="<f4")
    assert np.array_equal(latticekv.to_bf16_bits(y2), np.fromfile(out, dtype="<u2"))


def test_put_with_dim_and_variant(cli, addr, tmp_path):
    x = kv_like((10, 64), 5).astype("<f4")
    src = write(tmp_path, "x.f32", x.tobytes())
    r = cli("put", "--addr", addr, "--key", "dimk", "--in", src, "--in-dtype", "f32",
            "--dim", "64", "--variant", "d4", "--q", "10", "--ns", "clins")
    assert r.returncode == 0, r.stderr
    with latticekv.Client(addr) as c:
        y = c.get("dimk", namespace="clins")
        assert y.shape == (10, 64) and y.dtype == np.float32
        coded = c.get("dimk", namespace="clins", want_coded=True)
        assert coded == c.compress(x, dtype="fp32", variant="d4", q=10)


def test_lookup_and_delete(cli, addr, tmp_path):
    src = write(tmp_path, "x", latticekv.to_bf16_bits(kv_like((4, 128), 1)).tobytes())
    for k in ("p0", "p1", "p3"):
        r = cli("put", "--addr", addr, "--ns", "clil", "--key", k, "--in", src,
                "--in-dtype", "bf16", "--dim", "128")
        assert r.returncode == 0, r.stderr
    r = cli("lookup", "--addr", addr, "--ns", "clil", "--keys", "p0,p1,p2,p3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "prefix_hits=2"
    assert lines[1:] == ["p0 present", "p1 present", "p2 absent", "p3 present"]
    r = cli("delete", "--addr", addr, "--ns", "clil", "--key", "p1")
    assert r.returncode == 0 and r.stdout.decode().strip() == "deleted=true"
    r = cli("delete", "--addr", addr, "--ns", "clil", "--key", "p1")
    assert r.returncode == 0 and r.stdout.decode().strip() == "deleted=false"
    r = cli("lookup", "--addr", addr, "--ns", "clil", "--keys", "p0,p1")
    assert r.stdout.decode().splitlines()[0] == "prefix_hits=1"


def test_stats_json(cli, addr):
    r = cli("stats", "--addr", addr, "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["backend"] == "cpu" and st["requests"] >= 0 and isinstance(st["tiers"], list)
    r = cli("stats", "--addr", addr)
    assert r.returncode == 0 and b"backend cpu" in r.stdout


def test_errors_exit_codes(cli, addr, tmp_path):
    r = cli("get", "--addr", addr, "--key", "no-such-key", "--out", str(tmp_path / "o"))
    assert r.returncode == 1
    one_line_error(r, "NOT_FOUND")
    assert not os.path.exists(tmp_path / "o")

    src = write(tmp_path, "x", np.zeros(2 * 96, dtype="<f4").tobytes())
    r = cli("put", "--addr", addr, "--key", "bad", "--in", src, "--in-dtype", "f32", "--dim", "96")
    assert r.returncode == 1
    one_line_error(r, "INVALID_ARGUMENT", "96")

    r = cli("put", "--addr", addr, "--key", "bad", "--in", src, "--in-dtype", "f32",
            "--dim", "64", "--q", "2000")
    assert r.returncode == 1
    one_line_error(r, "INVALID_ARGUMENT", "2000")

    junk = write(tmp_path, "junk.lkv", b"LKVB" + bytes(60))
    r = cli("put", "--addr", addr, "--key", "bad", "--in", junk, "--coded")
    assert r.returncode == 1
    one_line_error(r, "DATA_LOSS")

    r = cli("put", "--addr", addr, "--key", "bad")
    assert r.returncode == 2
    one_line_error(r, "--in")
    r = cli("stats", "--addr", addr, "--bogus")
    assert r.returncode == 2
    one_line_error(r, "--bogus")
    r = cli("put", "--addr", addr, "--key", "bad", "--in", src, "--in-dtype", "f33", "--dim", "8")
    assert r.returncode == 2
    one_line_error(r, "f33")


def test_unreachable_daemon(cli, tmp_path):
    r = cli("stats", "--addr", "unix:" + str(tmp_path / "nothing.sock"), "--timeout-ms", "2000")
    assert r.returncode == 1
    one_line_error(r, "UNAVAILABLE")


def test_bench_small(cli, addr):
    r = cli("bench", "--addr", addr, "--clients", "3", "--requests", "4", "--tokens", "16")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "put" in out and "get" in out and "GB/s" in out and "p99" in out
    assert r.stderr == b""  # stderr is a pipe here: no progress bar
    r = cli("bench", "--addr", addr, "--clients", "2", "--requests", "2", "--op", "get",
            "--no-progress")
    assert r.returncode == 0, r.stderr
    assert r.stderr == b""
    r = cli("bench", "--addr", addr, "--clients", "2", "--requests", "2", "--stream", "3",
            "--no-progress")
    assert r.returncode == 0, r.stderr
    assert b"3 blocks per stream call" in r.stdout


def test_bench_progress_only_on_a_terminal(addr, tmp_path):
    """The bar redraws itself with \\r: into a file it would leave every frame."""
    if not CLI or not os.access(CLI, os.X_OK):
        pytest.skip("LKV_CLI is not set to the latticekv binary")
    args = [CLI, "bench", "--addr", addr, "--clients", "2", "--requests", "3"]
    # stderr to a file: the report on stdout, nothing on stderr.
    err_path = tmp_path / "bench.err"
    with open(err_path, "wb") as err:
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=err, timeout=HANG_GUARD_S)
    assert r.returncode == 0, err_path.read_bytes()
    assert b"GB/s" in r.stdout
    assert b"\r" not in err_path.read_bytes() and err_path.read_bytes() == b""
    # stderr on a terminal: the bar is drawn, and reaches the end.
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        slave = -1
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's last writer has gone
                break
            if not chunk:
                break
            seen += chunk
        out, _ = p.communicate(timeout=HANG_GUARD_S)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert p.returncode == 0, seen
    assert b"GB/s" in out
    assert b"\r[" in seen and b"100%" in seen, seen


def test_demo(cli, addr):
    r = cli("demo", "--addr", addr, "--tokens", "32", "--rounds", "2")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "ratio vs bf16" in out and "rel. error" in out and "GB/s" in out
    ratio = float(out.split("ratio vs bf16 ")[1].split("x")[0])
    assert 2.0 < ratio < 3.5
    err = float(out.split("rel. error")[1].split()[0])
    assert 0 < err < 1e-2


def test_offline_codec_usage_errors(cli, tmp_path):
    src = write(tmp_path, "x", np.zeros(3 * 64, dtype="<f4").tobytes())
    base = ("codec", "encode", "--dim", "64", "--in", src, "--in-dtype", "f32",
            "--out", str(tmp_path / "o.lkv"))
    r = cli(*base, "--shape", "3,x4")
    assert r.returncode == 2
    one_line_error(r, "--shape=3,x4")
    r = cli(*base, "--shape", ",".join(["1"] * 9))
    assert r.returncode == 2
    one_line_error(r, "dimensions")
    short = write(tmp_path, "short", np.zeros(3 * 64 - 1, dtype="<f4").tobytes())
    r = cli("codec", "encode", "--dim", "64", "--in", short, "--in-dtype", "f32",
            "--out", str(tmp_path / "o.lkv"))
    assert r.returncode == 1
    one_line_error(r, "whole number")
    assert not os.path.exists(tmp_path / "o.lkv")
