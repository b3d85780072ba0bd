# SPDX-License-Identifier: Apache-2.0
"""The method table (proto/table/lkv_rpc_table.h) against the Python client and the .proto files.

The daemon and the C client take their RPCs and status codes from the
X-macro lists in that header; the Python client takes its stubs from the
.proto files. These tests parse the header and fail when the two drift
apart: an RPC in one and not the other, a path spelled differently, a
streaming flag that disagrees, or a status code with another number.
No daemon is needed.
"""

import os
import re

import grpc

import latticekv
from latticekv import health_pb, pb

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TABLE_H = os.path.join(ROOT, "proto", "table", "lkv_rpc_table.h")


def _macro_rows(text, name):
    """The X(...) rows of `#define name(X)`, each as a list of stripped arguments."""
    body = text[text.index("#define %s(X)" % name):].split("\n")[1:]
    rows = []
    for line in body:
        m = re.match(r"\s*X\((.*)\)\s*\\?\s*$", line)
        if not m:
            break
        rows.append([a.strip() for a in m.group(1).split(",")])
    assert rows, "no rows in %s" % name
    return rows


def table():
    with open(TABLE_H) as f:
        text = f.read()
    services = dict(re.findall(r'#define (LKV_RPC_SERVICE_\w+)\s+"([^"]+)"', text))
    rpcs = {}
    for name, service, method, streaming, handler in _macro_rows(text, "LKV_RPC_LIST"):
        path = "/%s/%s" % (services[service], method.strip('"'))
        rpcs[path] = {"name": name, "streaming": streaming == "1", "handler": handler}
    codes = {name: int(value) for name, value in _macro_rows(text, "LKV_GRPC_CODE_LIST")}
    return rpcs, codes


def proto_rpcs():
    """path -> streaming, for every RPC declared in the .proto files."""
    out = {}
    for fd in (pb.DESCRIPTOR, health_pb.DESCRIPTOR):
        for svc in fd.services_by_name.values():
            for m in svc.methods:
                assert m.client_streaming == m.server_streaming or svc.full_name.endswith(
                    "Health"), m.full_name
                out["/%s/%s" % (svc.full_name, m.name)] = m.client_streaming and m.server_streaming
    return out


def client_paths():
    """The paths the Python client's stubs call."""
    c = latticekv.Client("127.0.0.1:1")  # no connection is made
    try:
        paths = set()
        for stub in (c.codec, c.kv, c.admin):
            for attr in vars(stub).values():
                p = getattr(attr, "_method", None)
                if p is not None:
                    paths.add(p.decode() if isinstance(p, bytes) else p)
        p = c._health._method
        paths.add(p.decode() if isinstance(p, bytes) else p)
        return paths
    finally:
        c.close()


def test_the_python_client_calls_exactly_the_tables_rpcs():
    rpcs, _ = table()
    assert client_paths() == set(rpcs)


def test_the_table_serves_every_proto_rpc_with_its_streaming_flag():
    rpcs, _ = table()
    declared = proto_rpcs()
    # Health/Watch is the one declared RPC latticekvd does not serve (UNIMPLEMENTED).
    assert set(declared) - set(rpcs) == {"/grpc.health.v1.Health/Watch"}
    assert set(rpcs) <= set(declared)
    for path, row in rpcs.items():
        assert row["streaming"] == declared[path], path


def test_streams_share_their_unary_twins_handler():
    rpcs, _ = table()
    for path, row in rpcs.items():
        if row["streaming"]:
            twin = path[: -len("Stream")]
            assert twin in rpcs and rpcs[twin]["handler"] == row["handler"], path


def test_status_codes_match_grpc():
    _, codes = table()
    assert len(codes) == len(grpc.StatusCode)
    for name, value in codes.items():
        assert grpc.StatusCode[name].value[0] == value, name
