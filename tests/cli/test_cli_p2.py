# SPDX-License-Identifier: Apache-2.0
"""`latticekv codec ... --profile 2` (codec profile 2: container version 3 by
default, version 2 with --format 2) against the library's one-shot path, on
files and pipes.

Paths come from the environment (ctest sets them; see CMakeLists.txt):
  LKV_CLI, LKV_ONESHOT (tests/cli/oneshot.c; its last encode arguments are the
  profile and the format), LKV_GOLDEN_DIR (tests/golden: p2/ holds committed
  version 2 and version 3 containers)
Run by hand: LKV_CLI=... LKV_ONESHOT=... /usr/bin/python3 -m pytest tests/cli/test_cli_p2.py
"""

import glob
import json
import os
import subprocess

import numpy as np
import pytest

CLI = os.environ.get("LKV_CLI", "")
ONESHOT = os.environ.get("LKV_ONESHOT", "")
GOLDEN = os.environ.get("LKV_GOLDEN_DIR", "")
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


def version_of(coded):
    return int.from_bytes(coded[4:6], "little")  # codec/FORMAT.md: u16 after the magic


def fmt_args(fmt):
    return () if fmt is None else ("--format", fmt)


def rel_mse(x, y):
    return float(np.sum((x.astype(np.float64) - y) ** 2) / np.sum(x.astype(np.float64) ** 2))


# 4500 vectors of D = 1024 fp32 are three of stream_p2.c's 8 MiB batches
# (2048 vectors each, the last one short): the batches' payloads must join.
@pytest.mark.parametrize("fmt", [None, 2])
@pytest.mark.parametrize("n,dim,dtype,q", [
    (3001, 128, "bf16", 54), (300, 96, "f32", 20), (129, 8, "f16", 3), (40, 1024, "f32", 1023),
    (4500, 1024, "f32", 38)])
def test_profile2_files_and_pipes_match_the_one_shot_path(tmp_path, n, dim, dtype, q, fmt):
    x = np.random.default_rng(dim + q).standard_normal((n, dim)).astype(np.float32)
    src = write(tmp_path / "x.raw", raw_of(x, dtype))
    one = str(tmp_path / "one.lkv")
    subprocess.run([ONESHOT, "encode", "1", str(q), str(dim), str(DTYPE_WIRE[dtype]), src, one,
                    "2", str(fmt or 0)], check=True, timeout=TIMEOUT)
    want = read(one)
    assert version_of(want) == (fmt or 3) and want[11] == 2  # version 3 unless asked, profile 2
    enc = ("codec", "encode", "--profile", 2, "--q", q, "--dim", dim, "--in-dtype", dtype,
           *fmt_args(fmt))
    out = str(tmp_path / "cli.lkv")
    r = run(*enc, "--in", src, "--out", out)
    assert r.returncode == 0, r.stderr
    assert read(out) == want
    if fmt is None:  # the default is --format 3
        r = run(*enc, "--format", 3, "--in", src, "--out", "-")
        assert r.returncode == 0, r.stderr
        assert r.stdout == want
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
            "--in", src, "--out", rt, *fmt_args(fmt))
    assert r.returncode == 0, r.stderr
    assert read(rt) == read(dec)
    assert b"profile 2 (version %d)" % (fmt or 3) in r.stderr and b"rel_mse=" in r.stderr


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
    assert info["version"] == 3 and info["profile"] == 2 and info["shape"] == [500, 2, 128]
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
    # Q = 54 at D = 128: about 741 bits in version 3 (256-vector chunks,
    # byte norms), 766 in version 2.
    r = run("codec", "info", "--profile", 2, "--q", 54, "--dim", 128, "--json")
    j3 = json.loads(r.stdout)
    assert j3["format"] == 3 and j3["chunk_vectors"] == 256
    assert 725 < j3["bits_per_vector_mean"] < 755
    r = run("codec", "info", "--profile", 2, "--format", 2, "--q", 54, "--dim", 128, "--json")
    assert r.returncode == 0, r.stderr
    j2 = json.loads(r.stdout)
    assert j2["format"] == 2 and j2["chunk_vectors"] == 128
    assert 750 < j2["bits_per_vector_mean"] < 784
    assert j2["bits_per_vector_mean"] > j3["bits_per_vector_mean"]
    r = run("codec", "info", "--profile", 2, "--format", 2, "--q", 54, "--dim", 128)
    assert r.returncode == 0 and b"container version 2 (chunks of 128 vectors)" in r.stdout
    r = run("codec", "info", "--profile", 2, "--q", 54, "--dim", 128)
    assert r.returncode == 0 and b"container version 3 (chunks of 256 vectors)" in r.stdout


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


# ---- --format: container versions 2, 3 and 4 ------------------------------------

def encode_and_check(tmp_path, fmt, q, dim, src, *shape_args):
    """Encodes src in container version fmt to a file that must name the
    version and inspect clean; the CLI must decode it to the one-shot
    decoder's values. Returns (path, coded bytes, inspect's JSON, the
    decoded bytes)."""
    out = str(tmp_path / ("v%d.lkv" % fmt))
    r = run("codec", "encode", "--profile", 2, "--format", fmt, "--q", q, "--dim", dim,
            "--in-dtype", "f32", "--in", src, "--out", out, *shape_args)
    assert r.returncode == 0, r.stderr
    coded = read(out)
    assert version_of(coded) == fmt
    r = run("codec", "inspect", out, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["version"] == fmt and info["payload_ok"] and info["length_ok"]
    # decode takes the version from the file, not from any flag
    subprocess.run([ONESHOT, "decode", out, str(tmp_path / "one.f32")], check=True,
                   timeout=TIMEOUT)
    ref = read(tmp_path / "one.f32")
    dec = str(tmp_path / ("v%d.f32" % fmt))
    r = run("codec", "decode", "--in", out, "--out", dec)
    assert r.returncode == 0, r.stderr
    assert read(dec) == ref
    return out, coded, info, ref


def test_format_2_and_3_both_decode_and_version_2_is_bigger(tmp_path):
    """The same array coded in both versions at one Q: each file names its
    version, decodes (file and pipe) to the one-shot decoder's values, and
    version 2 is the bigger one, with the smaller error (FORMAT.md, "Version 3")."""
    n, dim, q = 1000, 128, 54
    x = np.random.default_rng(54).standard_normal((n, 2, dim)).astype(np.float32)
    src = write(tmp_path / "x.f32", x.tobytes())
    size, err = {}, {}
    for fmt in (2, 3):
        out, coded, info, ref = encode_and_check(tmp_path, fmt, q, dim, src, "--shape",
                                                 "%d,2,%d" % (n, dim))
        assert info["profile"] == 2 and info["q"] == q and info["shape"] == [n, 2, dim]
        assert info["header_bytes"] == 40 + 8 * 3  # the same header layout in both
        r = run("codec", "inspect", out)
        assert r.returncode == 0, r.stderr
        assert b"LKVB version %d" % fmt in r.stdout
        assert b"chunks of %d)" % (128 if fmt == 2 else 256) in r.stdout
        with open(out, "rb") as f:
            r = run("codec", "decode", "--in", "-", "--out", "-", stdin=f)
        assert r.returncode == 0, r.stderr
        assert r.stdout == ref
        y = np.frombuffer(ref, dtype="<f4").reshape(x.shape)
        size[fmt], err[fmt] = len(coded), rel_mse(x, y)
        assert err[fmt] < 6e-4, (fmt, err[fmt])
    assert size[2] > size[3], size
    assert err[2] < err[3], err
    # Version 3 reaches version 2's error at a larger Q, in fewer bytes.
    r = run("codec", "roundtrip", "--profile", 2, "--q", 59, "--dim", dim, "--in-dtype", "f32",
            "--in", src, "--out", str(tmp_path / "rt59.f32"))
    assert r.returncode == 0, r.stderr
    y = np.fromfile(tmp_path / "rt59.f32", dtype="<f4").reshape(x.shape)
    assert rel_mse(x, y) < 1.05 * err[2]
    coded_bytes = int(r.stderr.split(b" -> ")[1].split(b" bytes")[0])
    assert coded_bytes < size[2]


def test_format_4_codes_channel_scaled_data_smaller_at_the_same_error(tmp_path):
    """Container version 4's channel mode (FORMAT.md, "Version 4"): on data
    whose channels have log-normal scales it is far smaller than version 3
    at the same Q and about the same error; the file names version 4,
    inspects clean and decodes to the one-shot decoder's values."""
    n, dim, q = 1000, 128, 59
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((n, dim)) * np.exp(1.5 * rng.standard_normal(dim))).astype(np.float32)
    src = write(tmp_path / "x.f32", x.tobytes())
    size, err = {}, {}
    for fmt in (3, 4):
        _, coded, _, ref = encode_and_check(tmp_path, fmt, q, dim, src)
        y = np.frombuffer(ref, dtype="<f4").reshape(x.shape)
        size[fmt], err[fmt] = len(coded), rel_mse(x, y)
    assert size[4] < 0.8 * size[3], size
    assert err[4] < 1.05 * err[3], err


def test_format_1_is_profile_1s_only_value(tmp_path):
    x = np.random.default_rng(8).standard_normal((50, 64)).astype(np.float32)
    src = write(tmp_path / "x.f32", x.tobytes())
    enc = ("codec", "encode", "--dim", 64, "--in-dtype", "f32", "--in", src, "--out", "-")
    plain = run(*enc)
    assert plain.returncode == 0 and version_of(plain.stdout) == 1
    for args in (("--format", 1), ("--profile", 1, "--format=1")):
        r = run(*enc, *args)
        assert r.returncode == 0, r.stderr
        assert r.stdout == plain.stdout


@pytest.mark.parametrize("cmd", ["encode", "roundtrip", "info"])
@pytest.mark.parametrize("profile,fmt,words", [
    (None, 2, "--format=2 needs --profile 2"),
    (1, 3, "--format=3 needs --profile 2"),
    (1, 0, "--format=0 is not 1"),
    (2, 1, "--format=1 is not one of 2, 3"),
    (2, 5, "--format=5 is not one of 2, 3, 4"),
    (1, 4, "--format=4 needs --profile 2"),
    (2, 0, "--format=0 is not one of 2, 3"),
    (2, "three", "--format=three is not one of 2, 3"),
    (2, "02", "--format=02 is not one of 2, 3"),
])
def test_bad_format_is_refused_naming_it(tmp_path, cmd, profile, fmt, words):
    src = write(tmp_path / "x.f32", np.ones((4, 64), np.float32).tobytes())
    out = tmp_path / "out"
    args = ["codec", cmd, "--dim", 64, "--format=%s" % fmt]
    if profile is not None:
        args += ["--profile", profile]
    if cmd != "info":
        args += ["--in-dtype", "f32", "--in", src, "--out", out]
    r = run(*args)
    assert r.returncode == 2, r
    err = r.stderr.decode()
    assert words in err and err.count("\n") == 1, err
    assert not os.path.exists(out)


def test_decode_and_inspect_take_no_format(tmp_path):
    """The container names its version: --format is not a decode or inspect flag."""
    x = np.random.default_rng(9).standard_normal((10, 64)).astype(np.float32)
    src = write(tmp_path / "x.f32", x.tobytes())
    out = str(tmp_path / "x.lkv")
    r = run("codec", "encode", "--profile", 2, "--dim", 64, "--in-dtype", "f32", "--in", src,
            "--out", out)
    assert r.returncode == 0, r.stderr
    r = run("codec", "decode", "--in", out, "--out", "-", "--format", 2)
    assert r.returncode == 2 and b"--format" in r.stderr
    r = run("codec", "inspect", out, "--format", 2)
    assert r.returncode == 2 and b"--format" in r.stderr


def test_help_names_the_format_option():
    for cmd in ("encode", "roundtrip", "info"):
        r = run("codec", cmd, "--help")
        assert r.returncode == 0
        assert b"[--format 2|3|4]" in r.stdout, cmd
        assert b"container version: 3 (default" in r.stdout, cmd


def golden_version(path):
    """p2_* files are version 2, p2v3_* version 3, p2v4_* version 4."""
    name = os.path.basename(path)
    return 2 if name.startswith("p2_") else int(name[3])


def test_committed_version_2_3_and_4_containers_decode(tmp_path):
    """tests/golden/p2: version 2 files written by the version 2 encoder
    (p2_*), version 3 files (p2v3_*) and version 4 files (p2v4_*, both
    modes): the CLI decodes each as the library does and inspect names its
    version."""
    files = sorted(glob.glob(os.path.join(GOLDEN, "p2", "*.lkv")))
    versions = {golden_version(f) for f in files}
    assert versions == {2, 3, 4} and len(files) >= 14, (GOLDEN, files)
    for f in files:
        want_version = golden_version(f)
        assert version_of(read(f)) == want_version, f
        r = run("codec", "inspect", f, "--json")
        assert r.returncode == 0, (f, r.stderr)
        info = json.loads(r.stdout)
        assert info["version"] == want_version and info["profile"] == 2, f
        assert info["payload_ok"], f
        one = str(tmp_path / "one.raw")
        subprocess.run([ONESHOT, "decode", f, one], check=True, timeout=TIMEOUT)
        r = run("codec", "decode", "--in", f, "--out", "-")
        assert r.returncode == 0, (f, r.stderr)
        assert r.stdout == read(one), f
