# SPDX-License-Identifier: Apache-2.0
"""The streaming `latticekv codec encode|decode|roundtrip|inspect`, against real
files and pipes (no daemon).

Paths come from the environment (ctest sets them; see CMakeLists.txt):
  LKV_CLI         the latticekv CLI
  LKV_ONESHOT     tests/cli/oneshot.c: lkv_compress / lkv_decompress on whole files
  LKV_GOLDEN_DIR  tests/golden (format version 1 containers)
Run by hand: LKV_CLI=... LKV_ONESHOT=... /usr/bin/python3 -m pytest tests/cli
"""

import glob
import json
import os
import pty
import resource
import subprocess

import numpy as np
import pytest

CLI = os.environ.get("LKV_CLI", "")
ONESHOT = os.environ.get("LKV_ONESHOT", "")
GOLDEN = os.environ.get("LKV_GOLDEN_DIR", "")
TIMEOUT = 300
RSS_LIMIT = 64 << 20

pytestmark = pytest.mark.skipif(not CLI or not ONESHOT,
                                reason="LKV_CLI and LKV_ONESHOT must name the binaries")

DTYPE_WIRE = {"bf16": 1, "f16": 2, "f32": 3}


def run(*args, stdin=None, env=None, **kw):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([CLI] + [str(a) for a in args], stdin=stdin, capture_output=True,
                          timeout=TIMEOUT, env=e, **kw)


def one_line_error(r, *words):
    err = r.stderr.decode()
    assert err.startswith("latticekv: error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)


def bf16(x):
    return (np.asarray(x, dtype="<f4").view("<u4") >> 16).astype("<u2")


def kv(n, dim, seed, scale=1.0):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype("<f4") * scale


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def oneshot_encode(tmp_path, src, dim, dtype, variant=1, q=38):
    out = str(tmp_path / "oneshot.lkv")
    subprocess.run([ONESHOT, "encode", str(variant), str(q), str(dim), str(DTYPE_WIRE[dtype]),
                    src, out], check=True, timeout=TIMEOUT)
    return read(out)


def oneshot_decode(tmp_path, src, dtype=None):
    out = str(tmp_path / "oneshot.raw")
    args = [ONESHOT, "decode", src, out] + ([str(DTYPE_WIRE[dtype])] if dtype else [])
    subprocess.run(args, check=True, timeout=TIMEOUT)
    return read(out)


# -- the bytes: files, pipes, threads, chunks, one-shot equality -------------

@pytest.mark.parametrize("dim,dtype,variant,q", [
    (128, "bf16", "e8", 38), (64, "f32", "d4", 10), (8, "f16", "e8", 2), (256, "f32", "e8", 152)])
def test_files_and_pipes_match_the_one_shot_path(tmp_path, dim, dtype, variant, q):
    x = kv(3001, dim, dim)
    raw = bf16(x).tobytes() if dtype == "bf16" else x.astype(
        "<f2" if dtype == "f16" else "<f4").tobytes()
    src = write(tmp_path / "x.raw", raw)
    want = oneshot_encode(tmp_path, src, dim, dtype, 1 if variant == "e8" else 2, q)
    enc = ("codec", "encode", "--variant", variant, "--q", q, "--dim", dim, "--in-dtype", dtype)
    # Small chunks, so that several threads really interleave.
    env = {"LATTICEKV_CHUNK_VECTORS": "97"}

    r = run(*enc, "--in", src, "--out", tmp_path / "f.lkv", env=env)
    assert r.returncode == 0, r.stderr
    assert read(tmp_path / "f.lkv") == want
    with open(src, "rb") as fin:
        r = run(*enc, "--in", "-", "--out", "-", stdin=fin, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == want
    # A pipe on both sides (no size known, no seeking): cat | latticekv | (capture).
    cat = subprocess.Popen(["cat", src], stdout=subprocess.PIPE)
    r = run(*enc, "--in", "-", "--out", "-", stdin=cat.stdout, env=env)
    cat.wait()
    assert r.returncode == 0, r.stderr
    assert r.stdout == want

    coded = write(tmp_path / "c.lkv", want)
    ref = oneshot_decode(tmp_path, coded)
    r = run("codec", "decode", "--in", coded, "--out", tmp_path / "d.raw", env=env)
    assert r.returncode == 0, r.stderr
    assert read(tmp_path / "d.raw") == ref
    cat = subprocess.Popen(["cat", coded], stdout=subprocess.PIPE)
    r = run("codec", "decode", "--in", "-", "--out", "-", stdin=cat.stdout, env=env)
    cat.wait()
    assert r.returncode == 0, r.stderr
    assert r.stdout == ref
    for odt in ("f32", "bf16"):
        r = run("codec", "decode", "--in", coded, "--out", "-", "--out-dtype", odt, env=env)
        assert r.returncode == 0 and r.stdout == oneshot_decode(tmp_path, coded, odt)

    # roundtrip = decode(encode(x)), through a pipe, and reports the error.
    with open(src, "rb") as fin:
        r = run("codec", "roundtrip", "--variant", variant, "--q", q, "--dim", dim,
                "--in-dtype", dtype, "--in", "-", "--out", "-", stdin=fin, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ref
    assert b"rel_mse=" in r.stderr and b"3001 vectors" in r.stderr


def test_thread_counts_and_chunk_sizes_give_the_same_bytes(tmp_path):
    src = write(tmp_path / "x.bf16", bf16(kv(5000, 128, 7)).tobytes())
    want = oneshot_encode(tmp_path, src, 128, "bf16")
    coded = write(tmp_path / "c.lkv", want)
    dec = oneshot_decode(tmp_path, coded)
    stats = {}
    for t in ("-T1", "-T2", "-T3", "-T0", "--threads=5", "-T 8"):
        for chunk in ("1", "333", "4096", ""):
            env = {"LATTICEKV_CHUNK_VECTORS": chunk}
            args = t.split(" ") if " " in t else [t]
            r = run("codec", "encode", "--dim", 128, "--in-dtype", "bf16", "--in", src,
                    "--out", "-", *args, env=env)
            assert r.returncode == 0 and r.stdout == want, (t, chunk, r.stderr)
            r = run("codec", "decode", "--in", coded, "--out", "-", *args, env=env)
            assert r.returncode == 0 and r.stdout == dec, (t, chunk, r.stderr)
            r = run("codec", "roundtrip", "--dim", 128, "--in-dtype", "bf16", "--in", src,
                    "--out", "-", *args, env=env)
            assert r.returncode == 0 and r.stdout == dec, (t, chunk, r.stderr)
            stats.setdefault(chunk, set()).add(r.stderr)
    # The error sums fold in chunk order: for one chunk size, one line
    # whatever the threads (the automatic size depends on the threads).
    for chunk in ("1", "333", "4096"):
        assert len(stats[chunk]) == 1, stats[chunk]


def test_shape_and_empty_input(tmp_path):
    x = bf16(kv(2 * 8, 128, 3)).tobytes()
    src = write(tmp_path / "x.bf16", x)
    r = run("codec", "encode", "--dim", 128, "--in-dtype", "bf16", "--in", "-", "--out", "-",
            "--shape", "2,8,128", stdin=open(src, "rb"))
    assert r.returncode == 0, r.stderr
    info = json.loads(run("codec", "inspect", "-", "--json", input=r.stdout).stdout)
    assert info["shape"] == [2, 8, 128] and info["n_vectors"] == 16 and info["payload_ok"]
    # A shape that does not match the data, from a pipe: found at the end.
    cat = subprocess.Popen(["cat", src], stdout=subprocess.PIPE)
    r = run("codec", "encode", "--dim", 128, "--in-dtype", "bf16", "--in", "-",
            "--out", tmp_path / "bad.lkv", "--shape", "3,8,128", stdin=cat.stdout)
    cat.wait()
    assert r.returncode == 1
    one_line_error(r, "LKV_ERR_SHAPE", "tensor.data")
    assert not os.path.exists(tmp_path / "bad.lkv")
    # Empty input: a container of no vectors, and back.
    empty = write(tmp_path / "empty", b"")
    r = run("codec", "encode", "--dim", 64, "--in-dtype", "f32", "--in", empty, "--out", "-")
    assert r.returncode == 0 and r.stdout == oneshot_encode(tmp_path, empty, 64, "f32")
    r2 = run("codec", "decode", "--in", "-", "--out", "-", input=r.stdout)
    assert r2.returncode == 0 and r2.stdout == b""


def test_golden_containers_decode_as_the_library_does(tmp_path):
    files = sorted(glob.glob(os.path.join(GOLDEN, "*.lkv")))
    assert len(files) >= 5, GOLDEN
    for f in files:
        r = run("codec", "decode", "--in", f, "--out", "-")
        assert r.returncode == 0, (f, r.stderr)
        assert r.stdout == oneshot_decode(tmp_path, f), f
        r = run("codec", "inspect", f)
        assert r.returncode == 0 and b"payload checksum ok" in r.stdout, (f, r.stdout)


# -- bounded memory -----------------------------------------------------------

def rss_of(args, stdin=None, stdout=subprocess.DEVNULL, env=None):
    """Runs the CLI under `lkv_oneshot maxrss` (a child of Python would carry
    Python's own peak in ru_maxrss); returns (exit status, peak RSS in bytes,
    the CLI's stderr)."""
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([ONESHOT, "maxrss", CLI] + [str(a) for a in args], stdin=stdin,
                       stdout=stdout, stderr=subprocess.PIPE, env=e, timeout=TIMEOUT)
    err = r.stderr.decode()
    head, _, last = err.rstrip("\n").rpartition("\n")
    assert last.startswith("maxrss_kb="), err
    return r.returncode, int(last.split("=")[1]) * 1024, head


def test_peak_rss_is_bounded_on_a_large_input(tmp_path):
    """256 MiB of bf16 (2^20 vectors of 128) through a pipe, encode, decode and
    roundtrip: each stays under 64 MiB (the one-shot CLI held the whole input
    and output: over 360 MiB here). The 4 GiB run is bench/cli's."""
    block = bf16(kv(1 << 14, 128, 11)).tobytes()  # 4 MiB, repeated 64 times
    gen = ["/usr/bin/python3", "-c",
           "import sys; b = open(sys.argv[1], 'rb').read(); "
           "[sys.stdout.buffer.write(b) for _ in range(64)]",
           write(tmp_path / "block", block)]
    env = {"TMPDIR": str(tmp_path)}
    coded = tmp_path / "big.lkv"
    g = subprocess.Popen(gen, stdout=subprocess.PIPE)
    rc, rss, err = rss_of(["codec", "encode", "--dim", 128, "--in-dtype", "bf16", "--in", "-",
                           "--out", coded], stdin=g.stdout, env=env)
    g.wait()
    assert rc == 0, err
    assert os.path.getsize(coded) == 48 + (1 << 20) * 106
    assert rss <= RSS_LIMIT, rss
    # Encode into a pipe spools the records: still bounded.
    g = subprocess.Popen(gen, stdout=subprocess.PIPE)
    rc, rss, err = rss_of(["codec", "encode", "--dim", 128, "--in-dtype", "bf16", "--in", "-",
                           "--out", "-"], stdin=g.stdout, env=env)
    g.wait()
    assert rc == 0 and rss <= RSS_LIMIT, (rc, rss, err)
    rc, rss, err = rss_of(["codec", "decode", "--in", coded, "--out", "-"], env=env)
    assert rc == 0 and rss <= RSS_LIMIT, (rc, rss, err)
    g = subprocess.Popen(gen, stdout=subprocess.PIPE)
    rc, rss, err = rss_of(["codec", "roundtrip", "--dim", 128, "--in-dtype", "bf16", "--in", "-",
                           "--out", tmp_path / "rt.bf16"], stdin=g.stdout, env=env)
    g.wait()
    assert rc == 0 and rss <= RSS_LIMIT, (rc, rss, err)
    assert os.path.getsize(tmp_path / "rt.bf16") == 64 * len(block)
    # The decoded file equals the roundtrip's output, block for block.
    rc, _, err = rss_of(["codec", "decode", "--in", coded, "--out", tmp_path / "d.bf16"])
    assert rc == 0, err
    with open(tmp_path / "d.bf16", "rb") as a, open(tmp_path / "rt.bf16", "rb") as b:
        while True:
            x, y = a.read(1 << 22), b.read(1 << 22)
            assert x == y
            if not x:
                break
    assert not os.listdir(tmp_path) or all(
        not n.startswith("latticekv-spool") for n in os.listdir(tmp_path))


def test_encode_runs_under_a_small_address_space(tmp_path):
    """A 1 GiB input under a 512 MiB address-space limit: the one-shot CLI ran
    out of memory here; streaming never holds the input."""
    big = tmp_path / "big.f32"
    with open(big, "wb") as f:
        f.truncate(1 << 28)  # sparse zeros: 2^20 vectors of 64 f32
    limit = 512 << 20

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    r = subprocess.run([CLI, "codec", "encode", "--dim", "64", "--in", str(big), "--in-dtype",
                        "f32", "--out", str(tmp_path / "o.lkv"), "-T2"],
                       capture_output=True, timeout=TIMEOUT, preexec_fn=cap)
    if b"ReserveShadowMemoryRange" in r.stderr:
        pytest.skip("a sanitizer build cannot run under an address-space limit")
    assert r.returncode == 0, r.stderr


# -- failures: named, early when possible, nothing left behind ----------------

def test_bad_vector_is_named_by_its_file_index(tmp_path):
    x = kv(4000, 64, 5)
    x[3210, 7] = np.nan
    src = write(tmp_path / "x.f32", x.tobytes())
    lines = set()
    for t in ("-T1", "-T3"):
        out = tmp_path / ("o%s.lkv" % t)
        r = run("codec", "encode", "--dim", 64, "--in-dtype", "f32", "--in", src, "--out", out,
                t, env={"LATTICEKV_CHUNK_VECTORS": "100"})
        assert r.returncode == 1
        one_line_error(r, "LKV_ERR_NONFINITE", "3210")
        assert not os.path.exists(out)
        lines.add(r.stderr)
    assert len(lines) == 1, lines


def test_decode_refuses_damaged_containers(tmp_path):
    src = write(tmp_path / "x.f32", kv(500, 64, 9).tobytes())
    good = oneshot_encode(tmp_path, src, 64, "f32")
    out = tmp_path / "o.f32"

    bad = bytearray(good)
    bad[-5] ^= 0x40  # a record bit: the payload checksum catches it at the end
    f = write(tmp_path / "payload.lkv", bytes(bad))
    r = run("codec", "decode", "--in", f, "--out", out)
    assert r.returncode == 1
    one_line_error(r, "LKV_ERR_CHECKSUM", "payload")
    assert not os.path.exists(out)
    r = run("codec", "decode", "--in", "-", "--out", "-", input=bytes(bad))
    assert r.returncode == 1
    one_line_error(r, "LKV_ERR_CHECKSUM", "payload")

    f = write(tmp_path / "short.lkv", good[:-1])
    r = run("codec", "decode", "--in", f, "--out", out)
    assert r.returncode == 1
    one_line_error(r, "LKV_ERR_TRUNCATED")
    assert not os.path.exists(out)
    r = run("codec", "decode", "--in", "-", "--out", "-", input=good[:-1])
    assert r.returncode == 1
    one_line_error(r, "LKV_ERR_TRUNCATED")
    r = run("codec", "decode", "--in", "-", "--out", "-", input=good + b"x")
    assert r.returncode == 1
    one_line_error(r, "LKV_ERR_CORRUPT", "trailing")
    r = run("codec", "decode", "--in", write(tmp_path / "long.lkv", good + b"x"), "--out", out)
    assert r.returncode == 1
    one_line_error(r, "LKV_ERR_CORRUPT", "trailing")

    bad = bytearray(good)
    bad[12] ^= 1  # q: the header checksum
    r = run("codec", "decode", "--in", "-", "--out", out, input=bytes(bad))
    assert r.returncode == 1
    one_line_error(r, "LKV_ERR_CHECKSUM", "header")
    assert not os.path.exists(out)
    r = run("codec", "decode", "--in", "-", "--out", out, input=b"LKVA" + good[4:])
    assert r.returncode == 1
    one_line_error(r, "LKV_ERR_MAGIC")
    r = run("codec", "decode", "--in", "-", "--out", out, input=good[:20])
    assert r.returncode == 1
    one_line_error(r, "LKV_ERR_TRUNCATED")


def test_inspect_good_and_corrupted(tmp_path):
    src = write(tmp_path / "x.bf16", bf16(kv(300, 128, 1)).tobytes())
    good = oneshot_encode(tmp_path, src, 128, "bf16")
    f = write(tmp_path / "good.lkv", good)
    r = run("codec", "inspect", f)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    for w in ("LKVB version 1", "E8 (block of 8)", "q_range          38", "head_dim         128",
              "bf16", "[300, 128]", "vectors          300", "848", "header checksum  ok",
              "length           ok", "payload checksum ok"):
        assert w in out, (w, out)
    j = json.loads(run("codec", "inspect", f, "--json").stdout)
    assert j["variant"] == "E8" and j["q"] == 38 and j["dim"] == 128 and j["dtype"] == "bf16"
    assert j["shape"] == [300, 128] and j["total_bytes"] == len(good)
    assert j["header_ok"] and j["length_ok"] and j["payload_ok"]
    assert j["payload_crc"] == j["payload_crc_computed"]
    assert run("codec", "inspect", "-", input=good).returncode == 0
    assert run("codec", "inspect", "--in", f).returncode == 0

    bad = bytearray(good)
    bad[100] ^= 1
    r = run("codec", "inspect", write(tmp_path / "p.lkv", bytes(bad)))
    assert r.returncode == 1
    assert b"payload checksum BAD" in r.stdout and b"header checksum  ok" in r.stdout
    j = json.loads(run("codec", "inspect", "-", "--json", input=bytes(bad)).stdout)
    assert j["header_ok"] and j["length_ok"] and not j["payload_ok"]

    r = run("codec", "inspect", "-", input=good[:-3])
    assert r.returncode == 1 and b"length           BAD" in r.stdout and b"truncated" in r.stdout
    r = run("codec", "inspect", "-", input=good + b"zz")
    assert r.returncode == 1 and b"trailing bytes" in r.stdout

    bad = bytearray(good)
    bad[14] ^= 1  # head_dim, under the header checksum
    r = run("codec", "inspect", write(tmp_path / "h.lkv", bytes(bad)))
    assert r.returncode == 1
    one_line_error(r, "LKV_ERR_CHECKSUM", "header checksum")
    r = run("codec", "inspect", "-", "--json", input=bytes(bad))
    assert r.returncode == 1 and json.loads(r.stdout)["header_ok"] is False
    r = run("codec", "inspect", "-", input=b"not a container at all, not at all")
    assert r.returncode == 1
    one_line_error(r, "LKV_ERR_MAGIC")
    r = run("codec", "inspect", tmp_path / "missing.lkv")
    assert r.returncode == 1
    one_line_error(r, "missing.lkv")


@pytest.mark.parametrize("args,words", [
    (("codec", "encode", "--dim", "64", "--in-dtype", "f32", "--in", "-", "--out", "-", "-T",
      "x"), ("--threads=x", "not a number")),
    (("codec", "encode", "--dim", "64", "--in-dtype", "f32", "--in", "-", "--out", "-",
      "-T5000"), ("--threads=5000", "0..1024")),
    (("codec", "decode", "--in", "-", "--out", "-", "--threads=-1"), ("--threads=-1",)),
    (("codec", "decode", "--in", "-", "--out", "-", "-T"), ("-T", "needs a value")),
    (("codec", "roundtrip", "--dim", "64", "--in-dtype", "f32", "--in", "-", "--out", "-",
      "--isa", "sse9"), ("--isa=sse9",)),
    (("codec", "decode", "--in", "-", "--out", "-", "--progress"), ("--progress",)),
    (("codec", "inspect",), ("inspect needs a FILE",)),
    (("codec", "inspect", "a.lkv", "--bogus"), ("--bogus",)),
    (("codec", "inspect", "a.lkv", "b.lkv"), ("b.lkv",)),
])
def test_bad_flags_exit_2(args, words):
    r = run(*args, input=b"")
    assert r.returncode == 2, r
    one_line_error(r, *words)


def test_progress_only_on_a_terminal(tmp_path):
    src = write(tmp_path / "x.bf16", bf16(kv(1 << 16, 128, 2)).tobytes())
    args = [CLI, "codec", "encode", "--dim", "128", "--in-dtype", "bf16", "--in", src,
            "--out", str(tmp_path / "o.lkv"), "-f"]
    # Not a terminal: the summary line only, never a \r frame.
    r = subprocess.run(args, capture_output=True, timeout=TIMEOUT,
                       env=dict(os.environ, LATTICEKV_CHUNK_VECTORS="64"))
    assert r.returncode == 0 and b"\r" not in r.stderr
    assert r.stderr.decode().startswith("encoded 65536 vectors")
    # A terminal: frames are drawn (with \r) and the line is cleared at the end.
    master, slave = pty.openpty()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=slave,
                         env=dict(os.environ, LATTICEKV_CHUNK_VECTORS="64"))
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert p.wait(timeout=TIMEOUT) == 0
    assert b"\rencode: " in seen and b"encoded 65536 vectors" in seen, seen
    # --no-progress silences it even on a terminal.
    master, slave = pty.openpty()
    p = subprocess.Popen(args + ["--no-progress"], stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert p.wait(timeout=TIMEOUT) == 0
    assert b"encode:" not in seen, seen
