# SPDX-License-Identifier: Apache-2.0
"""End-to-end: what a cancelled PutStream stores, and zero-size tensors
(issue 17, items 7 and 8)."""

import grpc
import numpy as np
import pytest

from latticekv import pb
from conftest import kv_like

# -- item 7: a cancelled PutStream stores a prefix, which Lookup reveals -----


def test_cancelled_put_stream_stored_set_is_a_prefix_lookup_finds(client):
    """The client reads 3 replies and cancels. The daemon may have stored
    more blocks than the replies the client saw (their replies were on
    their way), but always a prefix of the stream: Lookup of the stream's
    keys (absent before) says exactly which, through prefix_hits."""
    ns = "cancel-%s" % client.addr.replace("/", "_")
    keys = [b"c%03d" % i for i in range(64)]
    arr = kv_like((16, 2, 128), seed=11)
    t = pb.Tensor(dtype=pb.DTYPE_FP32, shape=list(arr.shape), data=arr.tobytes())
    hits, present = client.lookup(keys, namespace=ns)
    assert hits == 0 and not any(present)

    call = client.kv.PutStream(iter([pb.PutRequest(key=pb.BlockKey(namespace=ns, key=k), tensor=t)
                                     for k in keys]), timeout=60)
    seen = 0
    for _ in call:
        seen += 1
        if seen == 3:
            call.cancel()
            break
    with pytest.raises(grpc.RpcError) as e:
        next(call)
    assert e.value.code() == grpc.StatusCode.CANCELLED

    hits, present = client.lookup(keys, namespace=ns)
    assert hits >= seen
    assert present == [True] * hits + [False] * (len(keys) - hits), "not a prefix"
    # Every stored block is whole.
    expect = client.get(keys[0], namespace=ns, want_coded=True)
    for k in keys[:hits]:
        assert client.get(k, namespace=ns, want_coded=True) == expect
    # Nothing more is stored later: the call is over.
    assert client.lookup(keys, namespace=ns)[0] == hits


# -- item 8: a zero-size tensor is a valid, empty block ----------------------

EMPTY_SHAPES = [(0, 8, 128), (8, 0, 128), (0, 64)]


@pytest.mark.parametrize("shape", EMPTY_SHAPES)
def test_zero_size_tensor_is_an_empty_block(client, shape):
    arr = np.zeros(shape, dtype=np.float32)
    coded, info = client.compress(arr, dtype="fp32", info=True)
    assert info.raw_bytes == 0 and info.coded_bytes == len(coded) > 0
    dec = client.decompress(coded, raw=True)
    assert dec.shape == shape and dec.size == 0

    key = "empty-%s" % "x".join(map(str, shape))
    before = int(client.stats()["tiers"][0].get("used_bytes", 0))
    assert client.put(key, arr, dtype="fp32") == len(coded)
    assert client.get(key, want_coded=True) == coded
    got = client.get(key, raw=True)
    assert got.shape == shape and got.size == 0
    assert client.put_many([(key + "-s", arr)], dtype="fp32") == [len(coded)]
    assert client.lookup([key, key + "-s"]) == (2, [True, True])
    after = int(client.stats()["tiers"][0].get("used_bytes", 0))
    assert after - before >= 2 * len(coded)  # charged like any block
    assert client.delete(key) and client.delete(key + "-s")


@pytest.mark.parametrize("shape", [(4, 0), (0, 0)])
def test_zero_head_dim_is_invalid_argument_naming_it(client, shape):
    t = pb.Tensor(dtype=pb.DTYPE_FP32, shape=list(shape), data=b"")
    with pytest.raises(grpc.RpcError) as e:
        client.kv.Put(pb.PutRequest(key=pb.BlockKey(key=b"zero-dim"), tensor=t), timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "head_dim" in e.value.details() and "=0" in e.value.details()
    assert client.lookup([b"zero-dim"]) == (0, [False])
