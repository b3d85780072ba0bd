# SPDX-License-Identifier: Apache-2.0
"""latticekv: Python client of latticekvd, the KakeyaLattice KV-cache daemon.

    import numpy as np, latticekv
    with latticekv.Client("127.0.0.1:7070") as kv:      # or "unix:/run/latticekv.sock"
        kv.put(b"prefix-hash", np.random.randn(16, 8, 128).astype(np.float32), dtype="bf16")
        x = kv.get(b"prefix-hash")                        # np.float32 (bf16 widened exactly)

numpy arrays in and out (torch tensors too, when torch is installed);
errors raise latticekv.Error carrying the gRPC status code and the daemon's
message (which names the offending field and value). latticekv.AsyncClient
offers the same calls as coroutines on grpc.aio.

Installed with pip (`python3 -m pip install ./clients/python`) the package
carries its stubs in latticekv/_gen/.

The gRPC stubs are generated at build time (CMake target lkv_python_stubs)
from proto/latticekv/v1/latticekv.proto into the build tree, BUILD/clients/
python/latticekv/_gen/; `cmake --install` puts them beside this file. The
package takes the copy beside it when there is one, else the first
latticekv/_gen/ under a sys.path entry, so a checkout runs with
PYTHONPATH=clients/python:BUILD/clients/python.
"""

import importlib.util as _ilu
import os as _os
import sys as _sys


def _find_gen():
    stub = _os.path.join("latticekv", "v1", "latticekv_pb2.py")
    here = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "_gen")
    tried = [here] + [_os.path.join(_os.path.abspath(e or "."), "latticekv", "_gen")
                      for e in _sys.path]
    for d in tried:
        if _os.path.isfile(_os.path.join(d, stub)):
            return d
    raise ImportError(
        "latticekv: generated stubs missing (looked in %s); build the CMake target "
        "lkv_python_stubs (cmake --build BUILD --target lkv_python_stubs) and put "
        "BUILD/clients/python on PYTHONPATH" % ", ".join(tried))


_GEN = _find_gen()

# The generated latticekv_pb2_grpc imports `latticekv.v1.latticekv_pb2`; making
# _gen/latticekv part of this package's path turns that into latticekv.v1 here.
__path__.append(_os.path.join(_GEN, "latticekv"))  # noqa: F821 (package __path__)

from .v1 import latticekv_pb2 as pb  # noqa: E402
from .v1 import latticekv_pb2_grpc as pb_grpc  # noqa: E402


def _load_health():
    # grpc/health/v1/health_pb2.py would shadow the grpc package if put on
    # sys.path; it imports nothing of ours, so load it by file under our name.
    path = _os.path.join(_GEN, "grpc", "health", "v1", "health_pb2.py")
    spec = _ilu.spec_from_file_location("latticekv._health_pb2", path)
    mod = _ilu.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


health_pb = _load_health()

from ._version import __version__  # noqa: E402
from .client import Client, Error, to_bf16_bits, from_bf16_bits  # noqa: E402
from .aio import AsyncClient  # noqa: E402

__all__ = ["Client", "AsyncClient", "Error", "pb", "pb_grpc", "health_pb", "to_bf16_bits",
           "from_bf16_bits", "__version__"]
