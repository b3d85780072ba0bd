# SPDX-License-Identifier: Apache-2.0
"""End-to-end: the Python client against the real latticekvd (TCP and unix socket).

Every expected value is computed independently: coded bytes and
reconstructions come from the offline codec (`latticekv codec encode` /
`roundtrip`), which the daemon must match byte for byte.
"""

import os
import struct
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

import latticekv
from latticekv import pb
from latticekv.client import tensor_of
from conftest import DAEMON_MAX_MESSAGE, kv_like

CLI_DTYPE = {"bf16": "bf16", "fp16": "f16", "fp32": "f32"}
NP_DTYPE = {"bf16": np.float32, "fp16": np.float16, "fp32": np.float32}


def offline(cli, sub, data, dtype, variant, q, shape, out_dtype=None):
    """Runs `latticekv codec encode|roundtrip` on raw bytes; returns the output bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in"), os.path.join(tmp, "out")
        with open(src, "wb") as f:
            f.write(data)
        args = ["codec", sub, "--variant", variant, "--q", q, "--dim", shape[-1], "--in", src,
                "--in-dtype", CLI_DTYPE[dtype], "--out", dst,
                "--shape", ",".join(str(s) for s in shape)]
        if out_dtype:
            args += ["--out-dtype", CLI_DTYPE[out_dtype]]
        r = cli(*args)
        assert r.returncode == 0, r.stderr.decode()
        with open(dst, "rb") as f:
            return f.read()


def raw_bytes(arr):
    """The bytes of an array as the client returns it with raw=True."""
    return np.ascontiguousarray(arr).tobytes()


# -- round trips -----------------------------------------------------------

# the last three: head dims that are not a power of two (codec/FORMAT.md pieces)
CASES = [(q, dim) for q, dim in [(1, 8), (5, 64), (38, 128), (152, 256), (1023, 32),
                                 (38, 96), (38, 576), (10, 24)]]


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("variant", ["e8", "d4"])
@pytest.mark.parametrize("q,dim", CASES)
def test_roundtrip_matches_offline_codec(client, cli, dtype, variant, q, dim):
    shape = (2, 3, dim)
    arr = kv_like(shape, seed=q * 7 + dim, dtype=NP_DTYPE[dtype])
    wire = tensor_of(arr, dtype).data

    coded, info = client.compress(arr, dtype=dtype, variant=variant, q=q, info=True)
    assert coded == offline(cli, "encode", wire, dtype, variant, q, shape)
    assert info.coded_bytes == len(coded)
    assert info.raw_bytes == len(wire)

    expect = offline(cli, "roundtrip", wire, dtype, variant, q, shape)
    dec = client.decompress(coded, raw=True)
    assert dec.shape == shape
    assert raw_bytes(dec) == expect

    key = "rt-%s-%s-%d-%d" % (dtype, variant, q, dim)
    assert client.put(key, arr, dtype=dtype, variant=variant, q=q) == len(coded)
    assert client.get(key, want_coded=True) == coded
    got = client.get(key, raw=True)
    assert got.shape == shape and raw_bytes(got) == expect


@pytest.mark.parametrize("out_dtype", ["bf16", "fp16", "fp32"])
def test_out_dtype(client, cli, out_dtype):
    shape = (4, 8, 128)
    arr = kv_like(shape, seed=11)
    wire = tensor_of(arr, "bf16").data
    client.put("od", arr, dtype="bf16")
    expect = offline(cli, "roundtrip", wire, "bf16", "e8", 38, shape, out_dtype=out_dtype)
    got = client.get("od", out_dtype=out_dtype, raw=True)
    assert raw_bytes(got) == expect
    coded = client.get("od", want_coded=True)
    assert raw_bytes(client.decompress(coded, out_dtype=out_dtype, raw=True)) == expect


def test_default_params_are_e8_q38(client, cli):
    shape = (16, 128)
    arr = kv_like(shape, seed=3)
    coded = client.compress(arr, dtype="bf16")
    assert coded == offline(cli, "encode", tensor_of(arr, "bf16").data, "bf16", "e8", 38, shape)


def test_python_values_are_close(client):
    """Reconstruction error is small and shrinks with Q (sanity beyond byte identity)."""
    arr = kv_like((64, 128), seed=5)
    errs = []
    for q in (5, 38, 152):
        y = client.decompress(client.compress(arr, dtype="fp32", q=q))
        errs.append(float(np.sum((arr - y) ** 2) / np.sum(arr ** 2)))
    assert errs[0] > errs[1] > errs[2]
    assert errs[1] < 1e-2


# -- KVStore semantics -----------------------------------------------------

def test_put_get_overwrite_delete(client):
    a, b = kv_like((8, 128), 1), kv_like((8, 128), 2)
    client.put(b"k", a, dtype="fp32")
    ca = client.get(b"k", want_coded=True)
    client.put(b"k", b, dtype="fp32")
    cb = client.get(b"k", want_coded=True)
    assert ca != cb and cb == client.compress(b, dtype="fp32")
    assert client.delete(b"k") is True
    assert client.delete(b"k") is False
    with pytest.raises(latticekv.Error) as e:
        client.get(b"k")
    assert e.value.code == grpc.StatusCode.NOT_FOUND


def test_namespaces_are_separate(client):
    x = kv_like((4, 64), 9)
    client.put("shared", x, dtype="fp16", namespace="ns-a")
    with pytest.raises(latticekv.Error) as e:
        client.get("shared", namespace="ns-b")
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    assert client.lookup(["shared"], namespace="ns-b") == (0, [False])
    assert client.lookup(["shared"], namespace="ns-a") == (1, [True])
    assert client.delete("shared", namespace="ns-a")


def test_lookup_prefix_hits(client):
    keys = [b"chain-%d" % i for i in range(6)]
    x = kv_like((2, 64), 4)
    for i in (0, 1, 2, 4):
        client.put(keys[i], x, dtype="bf16", namespace="lk")
    hits, present = client.lookup(keys, namespace="lk")
    assert hits == 3
    assert present == [True, True, True, False, True, False]
    assert client.lookup([], namespace="lk") == (0, [])
    assert client.lookup(keys[3:], namespace="lk")[0] == 0
    client.delete(keys[1], namespace="lk")
    assert client.lookup(keys, namespace="lk")[0] == 1


def test_put_coded_verbatim(client):
    x = kv_like((3, 256), 8)
    coded = client.compress(x, dtype="fp16", variant="d4", q=10)
    assert client.put_coded("pc", coded) == len(coded)
    assert client.get("pc", want_coded=True) == coded
    assert raw_bytes(client.get("pc", raw=True)) == raw_bytes(client.decompress(coded, raw=True))


def test_get_reports_tier(client):
    client.put("tier", kv_like((2, 128), 1), dtype="bf16")
    _, tier = client.get("tier", tier=True)
    assert tier != ""


def test_health_and_stats(client):
    assert client.health() == "SERVING"
    client.compress(kv_like((2, 128), 1), dtype="bf16")
    st = client.stats()
    assert st["backend"] == "cpu"
    assert int(st["requests"]) > 0
    assert int(st["raw_bytes_in"]) > 0 and int(st["coded_bytes_out"]) > 0


def test_stats_numbers_are_ints(client):
    """Every uint64 counter is a Python int (protobuf's JSON mapping would make
    them strings), tiers included, and the strings stay strings."""
    client.put("stats-int", kv_like((2, 128), 1), dtype="bf16")
    st = client.stats()
    fields = latticekv.pb.StatsResponse.DESCRIPTOR.fields_by_name
    for name, f in fields.items():
        assert name in st, name
        if f.type == f.TYPE_UINT64:
            assert type(st[name]) is int, (name, st[name])
    assert isinstance(st["version"], str) and st["version"]
    assert st["requests"] > 0 and st["uptime_ms"] >= 0
    assert st["tiers"], st
    for t in st["tiers"]:
        assert isinstance(t["name"], str)
        for k in ("capacity_bytes", "used_bytes", "blocks", "hits", "misses", "evictions"):
            assert type(t[k]) is int, (k, t[k])
        assert t["used_bytes"] > 0 and t["blocks"] > 0


def test_readme_python_example(daemon):
    """The README's Python example runs as written and its comments are what
    the calls return (lookup gives (1, [True, False]))."""
    import ast
    import re
    readme = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
    text = open(readme).read()
    m = re.search(r"```python\n(import numpy as np, latticekv.*?)```", text, re.S)
    assert m, "no Python example in README.md"
    code = m.group(1).replace("127.0.0.1:50051", daemon.tcp)
    env = {}
    exec(compile(code, "README.md", "exec"), env)  # noqa: S102 - our own README
    assert env["x"].shape == (16, 8, 128) and env["x"].dtype == np.float32
    assert (env["hits"], env["present"]) == (1, [True, False])
    # The comment beside lookup states the value it returns.
    comment = re.search(r"kv\.lookup\(.*#\s*(.*)", code).group(1)
    assert ast.literal_eval(comment.strip()) == (env["hits"], env["present"]), comment


# -- bad input (SERVICE.md section 2) --------------------------------------

# -- bad input (docs/service.md section 2) ---------------------------------

def rpc(stub_call, req):
    try:
        stub_call(req, timeout=60)
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def tensor(dtype=pb.DTYPE_FP32, shape=(2, 128), data=None, fill=0.5):
    if data is None:
        n = int(np.prod(shape)) if shape else 0
        esz = 4 if dtype == pb.DTYPE_FP32 else 2
        data = (np.full(n, fill, dtype=np.float32).tobytes() if esz == 4
                else np.full(n, 0x3C00, dtype=np.uint16).tobytes())
    return pb.Tensor(dtype=dtype, shape=list(shape), data=data)


def nan_tensor(value):
    a = np.full((2, 128), 0.5, dtype=np.float32)
    a[1, 77] = value
    return pb.Tensor(dtype=pb.DTYPE_FP32, shape=[2, 128], data=a.tobytes())


# (name, tensor, params, words the message must contain: the field and the value)
BAD_TENSORS = [
    ("head_dim_90", tensor(shape=(2, 90)), None, [("head_dim", "shape", "dim"), ("90",)]),
    ("head_dim_2048", tensor(shape=(1, 2048)), None, [("head_dim", "shape", "dim"), ("2048",)]),
    ("q_1024", tensor(), pb.CodecParams(q_range=1024), [("q",), ("1024",)]),
    ("q_5000", tensor(), pb.CodecParams(variant=pb.VARIANT_D4, q_range=5000), [("q",), ("5000",)]),
    ("variant_7", tensor(), pb.CodecParams(variant=7), [("variant",), ("7",)]),
    ("shape_short", tensor(shape=(4, 128), data=b"\0" * (3 * 128 * 4)), None,
     [("shape", "data"), ("4", "1536", "2048")]),
    ("shape_long", tensor(shape=(1, 128), data=b"\0" * (2 * 128 * 4)), None,
     [("shape", "data"), ("1024", "512")]),
    ("shape_empty", tensor(shape=(), data=b""), None, [("shape",)]),
    ("nan", nan_tensor(np.nan), None, [("nan",)]),
    ("inf", nan_tensor(np.inf), None, [("inf",)]),
    ("neg_inf", nan_tensor(-np.inf), None, [("inf",)]),
    ("dtype_9", tensor(dtype=9, data=b"\0" * 512), None, [("dtype",), ("9",)]),
    ("dtype_unspecified", tensor(dtype=0, data=b"\0" * 512), None, [("dtype",)]),
]


def assert_message(details, words):
    low = details.lower()
    for alternatives in words:
        assert any(w.lower() in low for w in alternatives), \
            "message %r lacks any of %r" % (details, alternatives)


@pytest.mark.parametrize("name,t,params,words", BAD_TENSORS, ids=[b[0] for b in BAD_TENSORS])
def test_bad_tensor_is_invalid_argument(client, name, t, params, words):
    for call, req in [
        (client.codec.Compress, pb.CompressRequest(tensor=t, params=params)),
        (client.kv.Put, pb.PutRequest(key=pb.BlockKey(key=b"bad-" + name.encode()), tensor=t,
                                      params=params)),
    ]:
        code, details = rpc(call, req)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
        assert_message(details, words)
    # Nothing was stored under the key.
    assert client.lookup([b"bad-" + name.encode()]) == (0, [False])


def coded_sample(client):
    return client.compress(kv_like((4, 128), 21), dtype="bf16")


def corrupt(coded):
    b = bytearray(coded)
    b[-5] ^= 0x40  # a payload byte: the payload checksum no longer matches
    return bytes(b)


def unknown_version(coded):
    b = bytearray(coded)
    # codec/FORMAT.md: u16 version at offset 4; 1 to 4 (2 to 4: profile 2) are known
    struct.pack_into("<H", b, 4, 5)
    return bytes(b)


BAD_CODED = [
    ("corrupt", corrupt, ("checksum", "crc")),
    ("version", unknown_version, ("version",)),
    ("truncated", lambda c: c[:-7], ("truncat", "short", "promises")),
    ("header_only", lambda c: c[:20], ("truncat", "short")),
    ("empty", lambda c: b"", ("truncat", "short", "empty", "coded")),
    ("bad_magic", lambda c: b"XXXX" + c[4:], ("magic",)),
]


@pytest.mark.parametrize("name,mangle,words", BAD_CODED, ids=[b[0] for b in BAD_CODED])
def test_bad_coded_is_data_loss(client, name, mangle, words):
    bad = mangle(coded_sample(client))
    for call, req in [
        (client.codec.Decompress, pb.DecompressRequest(coded=bad)),
        (client.kv.Put, pb.PutRequest(key=pb.BlockKey(key=b"badc-" + name.encode()), coded=bad)),
    ]:
        code, details = rpc(call, req)
        if name in ("empty", "bad_magic") and code == grpc.StatusCode.INVALID_ARGUMENT:
            continue  # not a container at all: either reading is defensible
        assert code == grpc.StatusCode.DATA_LOSS, (code, details)
        assert_message(details, [words])
    assert client.lookup([b"badc-" + name.encode()]) == (0, [False])


def test_missing_key_is_not_found(client):
    code, details = rpc(client.kv.Get, pb.GetRequest(key=pb.BlockKey(namespace="nowhere",
                                                                      key=b"missing")))
    assert code == grpc.StatusCode.NOT_FOUND
    assert details != ""


def test_message_over_limit_is_resource_exhausted(client):
    n = (DAEMON_MAX_MESSAGE + (2 << 20)) // 4 // 128
    t = pb.Tensor(dtype=pb.DTYPE_FP32, shape=[n, 128], data=bytes(n * 128 * 4))
    code, _ = rpc(client.kv.Put, pb.PutRequest(key=pb.BlockKey(key=b"huge"), tensor=t))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert client.lookup([b"huge"]) == (0, [False])
    assert client.health() == "SERVING"


@pytest.mark.parametrize("how", ["nan", "head_dim", "corrupt_coded", "bad_version", "q"])
def test_failed_put_keeps_previous_value(client, how):
    key = pb.BlockKey(namespace="keep", key=b"k-" + how.encode())
    good = kv_like((4, 128), 77)
    client.put(key.key, good, dtype="bf16", namespace="keep")
    before = client.get(key.key, namespace="keep", want_coded=True)
    if how == "nan":
        req = pb.PutRequest(key=key, tensor=nan_tensor(np.nan))
    elif how == "head_dim":
        req = pb.PutRequest(key=key, tensor=tensor(shape=(2, 90)))
    elif how == "q":
        req = pb.PutRequest(key=key, tensor=tensor(), params=pb.CodecParams(q_range=4096))
    elif how == "corrupt_coded":
        req = pb.PutRequest(key=key, coded=corrupt(before))
    else:
        req = pb.PutRequest(key=key, coded=unknown_version(before))
    code, _ = rpc(client.kv.Put, req)
    assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.DATA_LOSS)
    assert client.get(key.key, namespace="keep", want_coded=True) == before


# -- size and concurrency --------------------------------------------------

def test_32_mib_block(client):
    shape = (2, 1024, 64, 128)  # K and V, 1024 tokens, 64 heads: 32 MiB of bf16
    bits = (np.random.default_rng(1).standard_normal(shape).astype(np.float32))
    wire = latticekv.to_bf16_bits(bits)
    assert wire.nbytes == 32 << 20
    coded = client.put("big", wire, dtype="bf16")
    stored = client.get("big", want_coded=True)
    assert len(stored) == coded
    got = client.get("big", raw=True)
    assert got.shape == shape
    assert raw_bytes(got) == raw_bytes(client.decompress(stored, raw=True))
    x = latticekv.from_bf16_bits(wire)
    y = latticekv.from_bf16_bits(got)
    assert float(np.sum((x - y) ** 2) / np.sum(x ** 2)) < 1e-2
    assert client.delete("big")


def test_many_concurrent_clients(addr):
    n = 40
    barrier = threading.Barrier(n)

    def worker(i):
        x = kv_like((2, 16, 8, 128), seed=1000 + i)
        with latticekv.Client(addr, timeout=120) as c:
            barrier.wait(timeout=120)
            expect = c.compress(x, dtype="bf16")
            for r in range(3):
                c.put("conc-%d" % i, x, dtype="bf16", namespace="conc")
                assert c.get("conc-%d" % i, namespace="conc", want_coded=True) == expect
                y = c.get("conc-%d" % i, namespace="conc", raw=True)
                assert raw_bytes(y) == raw_bytes(c.decompress(expect, raw=True))
            return c.lookup(["conc-%d" % i], namespace="conc")[0]

    with ThreadPoolExecutor(max_workers=n) as ex:
        results = list(ex.map(worker, range(n)))
    assert results == [1] * n


# -- streams ---------------------------------------------------------------

def test_streams_match_unary_calls(client):
    arrays = [kv_like((2, 4, 8, 128), seed=300 + i) for i in range(20)]
    coded = client.compress_many(arrays, dtype="bf16")
    assert coded == [client.compress(a, dtype="bf16") for a in arrays]
    keys = [b"st-%d" % i for i in range(20)]
    sizes = client.put_many(zip(keys, arrays), dtype="bf16", namespace="stream")
    assert sizes == [len(c) for c in coded]
    assert client.get_many(keys, namespace="stream", want_coded=True) == coded
    got = client.get_many(keys, namespace="stream", raw=True)
    assert [raw_bytes(g) for g in got] == [raw_bytes(client.decompress(c, raw=True))
                                           for c in coded]
    assert client.lookup(keys, namespace="stream")[0] == 20


def put_stream_until_invalid(client, reqs):
    """Sends reqs on one PutStream that must end INVALID_ARGUMENT; returns the replies."""
    replies = []
    with pytest.raises(grpc.RpcError) as e:
        for r in client.kv.PutStream(iter(reqs), timeout=60):
            replies.append(r)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return replies


def test_stream_stops_at_first_bad_request(client):
    good = pb.Tensor(dtype=pb.DTYPE_FP32, shape=[2, 128], data=bytes(1024))
    reqs = [pb.PutRequest(key=pb.BlockKey(namespace="sbad", key=b"a"), tensor=good),
            pb.PutRequest(key=pb.BlockKey(namespace="sbad", key=b"b"), tensor=good),
            pb.PutRequest(key=pb.BlockKey(namespace="sbad", key=b"c"), tensor=nan_tensor(np.nan)),
            pb.PutRequest(key=pb.BlockKey(namespace="sbad", key=b"d"), tensor=good)]
    assert len(put_stream_until_invalid(client, reqs)) == 2
    hits, present = client.lookup([b"a", b"b", b"c"], namespace="sbad")
    assert hits == 2 and present == [True, True, False]


def test_failed_put_stream_stores_nothing_after_the_failing_block(client):
    # The failing block is large (its encode runs on a worker and finishes
    # last, where the Inf in its last row is found); the small blocks after
    # it are inside the stream window and done before it. None of them may
    # be stored.
    good = pb.Tensor(dtype=pb.DTYPE_FP32, shape=[4, 128], data=bytes(2048))
    big = np.full((16384, 128), 0.5, dtype=np.float32)
    big[-1, 5] = np.inf
    bad = pb.Tensor(dtype=pb.DTYPE_FP32, shape=[16384, 128], data=big.tobytes())
    keys = [b"k%02d" % i for i in range(16)]
    reqs = [pb.PutRequest(key=pb.BlockKey(namespace="safter", key=k),
                          tensor=bad if i == 3 else good)
            for i, k in enumerate(keys)]
    assert len(put_stream_until_invalid(client, reqs)) == 3
    hits, present = client.lookup(keys, namespace="safter")
    assert hits == 3 and present == [True] * 3 + [False] * 13


# -- names are exact (issue 17.4) ------------------------------------------

NUL_NS = "a\x00b"


def test_a_namespace_with_a_nul_is_invalid_argument_in_every_rpc(client):
    x = kv_like((2, 64), 5)
    coded = client.compress(x, dtype="fp32")
    key = pb.BlockKey(namespace=NUL_NS, key=b"nul-ns")
    calls = [(client.kv.Put, pb.PutRequest(key=key, coded=coded)),
             (client.kv.Get, pb.GetRequest(key=key)),
             (client.kv.Delete, pb.DeleteRequest(key=key)),
             (client.kv.Lookup, pb.LookupRequest(namespace=NUL_NS, keys=[b"nul-ns"]))]
    for call, req in calls:
        code, details = rpc(call, req)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (call, details)
        assert "namespace" in details and "NUL" in details and "offset 1" in details, details
    # Nothing was stored under the namespace "a\0b" would have been cut to.
    assert client.lookup([b"nul-ns"], namespace="a") == (0, [False])


def test_keys_are_exact_bytes(client):
    a, b = kv_like((2, 64), 6), kv_like((2, 64), 7)
    client.put(b"k\x00a", a, dtype="fp32", namespace="exact")
    client.put(b"k\x00b", b, dtype="fp32", namespace="exact")
    assert client.get(b"k\x00a", want_coded=True, namespace="exact") == client.compress(
        a, dtype="fp32")
    assert client.get(b"k\x00b", want_coded=True, namespace="exact") == client.compress(
        b, dtype="fp32")
    assert client.lookup([b"k", b"k\x00a"], namespace="exact") == (0, [False, True])


def test_key_and_namespace_lengths_are_capped(client):
    coded = client.compress(kv_like((2, 64), 8), dtype="fp32")
    # The defaults: --max-key-bytes 1KiB, --max-namespace-bytes 256.
    ok = pb.PutRequest(key=pb.BlockKey(namespace="n" * 256, key=b"k" * 1024), coded=coded)
    assert rpc(client.kv.Put, ok) == (grpc.StatusCode.OK, "")
    long_key = pb.BlockKey(namespace="caps", key=b"k" * 1025)
    long_ns = pb.BlockKey(namespace="n" * 257, key=b"k")
    for call, req, words in [
            (client.kv.Put, pb.PutRequest(key=long_key, coded=coded),
             ["key.key", "1025 bytes", "max-key-bytes=1024"]),
            (client.kv.Get, pb.GetRequest(key=long_key), ["key.key", "1025 bytes"]),
            (client.kv.Delete, pb.DeleteRequest(key=long_key), ["key.key", "1025 bytes"]),
            (client.kv.Put, pb.PutRequest(key=long_ns, coded=coded),
             ["key.namespace", "257 bytes", "max-namespace-bytes=256"]),
            (client.kv.Get, pb.GetRequest(key=long_ns), ["key.namespace", "257 bytes"]),
            (client.kv.Lookup, pb.LookupRequest(namespace="n" * 257, keys=[b"k"]),
             ["namespace", "257 bytes"]),
            (client.kv.Lookup, pb.LookupRequest(namespace="caps", keys=[b"k", b"k" * 1025]),
             ["keys[1]", "1025 bytes", "max-key-bytes=1024"])]:
        code, details = rpc(call, req)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (req, details)
        for w in words:
            assert w in details, (w, details)
    assert client.lookup([b"k" * 1024], namespace="n" * 256) == (1, [True])


def test_max_key_bytes_is_a_setting(tmp_path):
    from conftest import Daemon
    d = Daemon(str(tmp_path), extra=["--max-key-bytes", "8", "--max-namespace-bytes", "3"])
    try:
        with latticekv.Client(d.tcp) as c:
            x = kv_like((2, 64), 3)
            c.put(b"12345678", x, dtype="fp32", namespace="abc")
            with pytest.raises(latticekv.Error) as e:
                c.put(b"123456789", x, dtype="fp32", namespace="abc")
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "key.key is 9 bytes; max-key-bytes=8" in e.value.details
            with pytest.raises(latticekv.Error) as e:
                c.put(b"k", x, dtype="fp32", namespace="abcd")
            assert "key.namespace is 4 bytes; max-namespace-bytes=3" in e.value.details
    finally:
        assert d.stop() == 0, d.log_text()
