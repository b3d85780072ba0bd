# SPDX-License-Identifier: Apache-2.0
"""`latticekv codec ... --profile 2` (codec profile 2, container version 2)
against the library's one-shot path, on files and pipes.

Paths come from the environment (ctest sets them; see CMakeLists.txt):
  LKV_CLI, LKV_ONESHOT (tests/cli/oneshot.c; its last encode argument is the profile)
Run by hand: LKV_CLI=... LKV_ONESHOT=... /usr/bin/python3 -m pytest tests/cli/test_cli_p2.py
"""

import json
import os
import subprocess

import numpy as np
import pytest

CLI = os.environ.get("LKV_CLI", "")
ONESHOT = os.environ.get("LKV_ONESHOT", "")
TIMEOUT = 300
DTYPE_WIRE = {"bf16": 1, "f16": 2, "f32": 3}

pytestmark = pytest.mark.skipif(not CLI or not ONESHOT,
                                reason="LKV_CLI and LKV_ONESHOT must name the binaries")


def run(*args, stdin=None):
    return subprocess.run([CLI] + [str(a) for a in args], stdin=stdin, capture_output=True,
                          timeout=TIMEOUT)


def raw_of(x, dtype):
    if dtype == "bf16":
        b = x.astype("<f4").view("<u4")
        b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype("<u2")
        return b.tobytes()
    return x.astype("<f2" if dtype == "f16" else "<f4").tobytes()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("n,dim,dtype,q", [
    (3001, 128, "bf16", 54), (300, 96, "f32", 20), (129, 8, "f16", 3), (40, 1024, "f32", 1023)])
def test_profile2_files_and_pipes_match_the_one_shot_path(tmp_path, n, dim, dtype, q):
    x = np.random.default_rng(dim + q).standard_normal((n, dim)).astype(np.float32)
    src = write(tmp_path / "x.raw", raw_of(x, dtype))
    one = str(tmp_path / "one.lkv")
    subprocess.run([ONESHOT, "encode", "1", str(q), str(dim), str(DTYPE_WIRE[dtype]), src, one,
                    "2"], check=True, timeout=TIMEOUT)
    want = read(one)
    assert want[4] == 2 and want[11] == 2  # version 2, profile 2
    enc = ("codec", "encode", "--profile", 2, "--q", q, "--dim", dim, "--in-dtype", dtype)
    out = str(tmp_path / "cli.lkv")
    r = run(*enc, "--in", src, "--out", out)
    assert r.returncode == 0, r.stderr
    assert read(out) == want
    with open(src, "rb") as f:  # a pipe in and out
        r = run(*enc, "--in", "-", "--out", "-", stdin=f)
    assert r.returncode == 0, r.stderr
    assert r.stdout == want
    # decode: file and pipe give the one-shot decoder's bytes
    subprocess.run([ONESHOT, "decode", one, str(tmp_path / "one.raw")], check=True,
                   timeout=TIMEOUT)
    dec = str(tmp_path / "cli.raw")
    r = run("codec", "decode", "--in", out, "--out", dec)
    assert r.returncode == 0, r.stderr
    assert read(dec) == read(tmp_path / "one.raw")
    with open(out, "rb") as f:
        r = run("codec", "decode", "--in", "-", "--out", "-", stdin=f)
    assert r.returncode == 0, r.stderr
    assert r.stdout == read(dec)
    # roundtrip writes the same reconstruction and reports the error
    rt = str(tmp_path / "rt.raw")
    r = run("codec", "roundtrip", "--profile", 2, "--q", q, "--dim", dim, "--in-dtype", dtype,
            "--in", src, "--out", rt)
    assert r.returncode == 0, r.stderr
    assert read(rt) == read(dec)
    assert b"profile 2" in r.stderr and b"rel_mse=" in r.stderr


def test_profile2_inspect_and_info(tmp_path):
    x = np.random.default_rng(5).standard_normal((500, 2, 128)).astype(np.float32)
    src = write(tmp_path / "x.f32", x.tobytes())
    out = str(tmp_path / "x.lkv")
    r = run("codec", "encode", "--profile", 2, "--q", 54, "--dim", 128, "--in-dtype", "f32",
            "--in", src, "--out", out, "--shape", "500,2,128")
    assert r.returncode == 0, r.stderr
    r = run("codec", "inspect", out, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["version"] == 2 and info["profile"] == 2 and info["shape"] == [500, 2, 128]
    assert info["payload_ok"] and info["length_ok"]
    size = os.path.getsize(out)
    assert info["total_bytes"] == size
    assert abs(info["bits_per_vector"] - 8.0 * (size - info["header_bytes"]) / 1000) < 0.01
    # info: mean and worst case; a larger Q never gives fewer bits
    prev = 0.0
    for q in (1, 4, 16, 38, 54, 128, 512, 1023):
        r = run("codec", "info", "--profile", 2, "--q", q, "--dim", 128, "--json")
        assert r.returncode == 0, r.stderr
        j = json.loads(r.stdout)
        assert j["bits_per_vector_mean"] < j["bits_per_vector_worst"]
        assert j["bits_per_vector_mean"] >= prev
        prev = j["bits_per_vector_mean"]
    r = run("codec", "info", "--profile", 2, "--q", 54, "--dim", 128, "--json")
    assert 740 < json.loads(r.stdout)["bits_per_vector_mean"] < 784


def test_profile2_bad_input_is_refused(tmp_path):
    x = np.random.default_rng(6).standard_normal((300, 64)).astype(np.float32)
    src = write(tmp_path / "x.f32", x.tobytes())
    r = run("codec", "encode", "--profile", 3, "--dim", 64, "--in-dtype", "f32", "--in", src,
            "--out", str(tmp_path / "a.lkv"))
    assert r.returncode == 2 and b"--profile=3" in r.stderr
    r = run("codec", "encode", "--profile", 2, "--variant", "d4", "--dim", 64, "--in-dtype",
            "f32", "--in", src, "--out", str(tmp_path / "a.lkv"))
    assert r.returncode == 2 and b"profile=2" in r.stderr
    assert not os.path.exists(tmp_path / "a.lkv")
    out = str(tmp_path / "x.lkv")
    r = run("codec", "encode", "--profile", 2, "--dim", 64, "--in-dtype", "f32", "--in", src,
            "--out", out, "--shape", "7,64")
    assert r.returncode == 1 and b"LKV_ERR_SHAPE" in r.stderr
    assert not os.path.exists(out)
    r = run("codec", "encode", "--profile", 2, "--dim", 64, "--in-dtype", "f32", "--in", src,
            "--out", out)
    assert r.returncode == 0, r.stderr
    good = read(out)
    # truncated, one byte flipped in the payload, a trailing byte: exit 1, no output left
    for name, data, code in [("short", good[:-3], b"LKV_ERR_TRUNCATED"),
                             ("flip", good[:100] + bytes([good[100] ^ 4]) + good[101:], b"LKV_ERR_"),
                             ("long", good + b"\0", b"LKV_ERR_CORRUPT")]:
        bad = write(tmp_path / (name + ".lkv"), data)
        dst = tmp_path / (name + ".raw")
        r = run("codec", "decode", "--in", bad, "--out", dst)
        assert r.returncode == 1 and code in r.stderr, (name, r.stderr)
        assert not os.path.exists(dst), name
        with open(bad, "rb") as f:
            r = run("codec", "decode", "--in", "-", "--out", "-", stdin=f)
        assert r.returncode == 1 and code in r.stderr, (name, r.stderr)
