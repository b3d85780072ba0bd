#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seed corpus of fuzz_wire (tests/fuzz/corpus_wire).

Each seed is one byte selecting the method (its row in LKV_RPC_LIST,
proto/table/lkv_rpc_table.h) followed by a request message: for every request type
valid messages built with the Python stubs, then malformed variants of each
(truncated, a wrong wire type, a length past the end, a group, an 11-byte
varint). Usage: make_wire_seeds.py OUT_DIR (needs clients/python's _gen
stubs, made by the build, and a golden container for the coded payloads).
Seeds are named by the SHA-1 of their bytes, like libFuzzer's.
"""

import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

import numpy as np  # noqa: E402

from latticekv import health_pb, pb  # noqa: E402

METHODS_H = os.path.join(ROOT, "proto", "table", "lkv_rpc_table.h")


def method_indices():
    """NAME -> index, in the order of the X-macro method list."""
    names = []
    with open(METHODS_H) as f:
        text = f.read()
    body = text[text.index("#define LKV_RPC_LIST(X)"):]
    for line in body.splitlines()[1:]:
        line = line.strip()
        if not line.startswith("X("):
            break
        names.append(line[2:line.index(",")])
    return {n: i for i, n in enumerate(names)}


M = method_indices()


def golden(name):
    with open(os.path.join(ROOT, "tests", "golden", name), "rb") as f:
        return f.read()


def tensor(shape, dtype=pb.DTYPE_FP32):
    data = (np.sin(np.arange(int(np.prod(shape))) * 0.37) * 3).astype(np.float32)
    if dtype == pb.DTYPE_FP16:
        data = data.astype(np.float16)
    return pb.Tensor(dtype=dtype, shape=list(shape), data=data.tobytes())


def malformed(msg):
    """Broken variants of one valid message."""
    out = []
    if len(msg) > 1:
        out.append(msg[: len(msg) // 2])
        out.append(msg[:-1])
    out.append(msg + b"\x0d\x00\x00\x00")  # field 1 as fixed32, cut short
    out.append(msg + b"\x12\x7f")  # field 2, length past the end
    out.append(msg + b"\x0b")  # a group
    out.append(msg + b"\x08" + b"\xff" * 10 + b"\x01")  # an 11-byte varint
    out.append(b"\x00" + msg)  # field number 0
    return out


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus_wire")
    os.makedirs(out_dir, exist_ok=True)
    coded = golden("e8_q38_d8_bf16.lkv")
    coded128 = golden("e8_q38_d128_bf16.lkv")
    key = pb.BlockKey(namespace="tenant-a", key=b"\x00\x01block")
    seeds = {
        "COMPRESS": [
            pb.CompressRequest(tensor=tensor((2, 4, 128))),
            pb.CompressRequest(
                tensor=tensor((3, 64), pb.DTYPE_FP16),
                params=pb.CodecParams(variant=pb.VARIANT_D4, q_range=152),
            ),
            pb.CompressRequest(tensor=tensor((2, 96))),
        ],
        "DECOMPRESS": [
            pb.DecompressRequest(coded=coded),
            pb.DecompressRequest(coded=coded128, out_dtype=pb.DTYPE_FP32),
            pb.DecompressRequest(coded=coded[:-3]),
        ],
        "PUT": [
            pb.PutRequest(key=key, tensor=tensor((1, 4, 128))),
            pb.PutRequest(key=key, coded=coded),
            pb.PutRequest(key=pb.BlockKey(namespace="a\x00b", key=b"k"), coded=coded),
            pb.PutRequest(key=pb.BlockKey(key=b"k" * 2000), coded=coded),
            pb.PutRequest(key=pb.BlockKey(key=b"k"), tensor=tensor((2, 8)), coded=coded128),
        ],
        "GET": [
            pb.GetRequest(key=key),
            pb.GetRequest(key=key, want_coded=True),
            pb.GetRequest(key=key, out_dtype=pb.DTYPE_BF16),
            pb.GetRequest(key=pb.BlockKey(namespace="x\x00y", key=b"k")),
        ],
        "LOOKUP": [
            pb.LookupRequest(namespace="tenant-a", keys=[b"a", b"", b"\x00block"]),
            pb.LookupRequest(keys=[b"k" * 300] * 4),
        ],
        "DELETE": [pb.DeleteRequest(key=key), pb.DeleteRequest()],
        "STATS": [pb.StatsRequest()],
        "HEALTH_CHECK": [
            health_pb.HealthCheckRequest(service=""),
            health_pb.HealthCheckRequest(service="latticekv.v1.KVStore"),
            health_pb.HealthCheckRequest(service="nope"),
        ],
    }
    streams = {"COMPRESS_STREAM": "COMPRESS", "DECOMPRESS_STREAM": "DECOMPRESS",
               "PUT_STREAM": "PUT", "GET_STREAM": "GET"}
    written = 0
    for method, msgs in seeds.items():
        methods = [method] + [s for s, u in streams.items() if u == method]
        for m in methods:
            for msg in msgs:
                raw = msg.SerializeToString()
                for body in [raw] + (malformed(raw) if m == method else []):
                    seed = bytes([M[m]]) + body
                    name = hashlib.sha1(seed).hexdigest()
                    with open(os.path.join(out_dir, name), "wb") as f:
                        f.write(seed)
                    written += 1
    print("%d seeds in %s" % (written, out_dir))


if __name__ == "__main__":
    main()
