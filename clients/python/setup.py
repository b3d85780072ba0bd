# SPDX-License-Identifier: Apache-2.0
"""Build step of the latticekv package: the gRPC stubs.

The metadata is in pyproject.toml. This file only adds one thing to
setuptools' build_py: the stubs of proto/latticekv/v1/latticekv.proto and
grpc/health/v1/health.proto are generated into the built package's
latticekv/_gen/, the layout that CMake's lkv_python_stubs produces in the build
tree, so the installed package needs no build tree. They are made with
protoc and grpc_python_plugin (Debian: protobuf-compiler,
protobuf-compiler-grpc), as CMake does; the protos are read from
LATTICEKV_PROTO_DIR, else from ../../proto beside this file (a checkout).
"""

import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOS = ["latticekv/v1/latticekv.proto", "grpc/health/v1/health.proto"]


def _proto_dir():
    d = os.environ.get("LATTICEKV_PROTO_DIR") or os.path.join(HERE, "..", "..", "proto")
    if not all(os.path.isfile(os.path.join(d, p)) for p in PROTOS):
        raise SystemExit("latticekv: the .proto files are not in %s; build from a checkout "
                         "(clients/python beside proto/) or set LATTICEKV_PROTO_DIR" % d)
    return d


def _tool(name, package):
    path = shutil.which(name)
    if not path:
        raise SystemExit("latticekv: %s is needed to generate the gRPC stubs "
                         "(Debian: apt-get install %s)" % (name, package))
    return path


class BuildPyWithStubs(build_py):
    def run(self):
        super().run()
        out = os.path.join(self.build_lib, "latticekv", "_gen")
        os.makedirs(out, exist_ok=True)
        protoc = _tool("protoc", "protobuf-compiler")
        plugin = _tool("grpc_python_plugin", "protobuf-compiler-grpc")
        src = _proto_dir()
        subprocess.check_call([protoc, "-I" + src, "--python_out=" + out, "--grpc_out=" + out,
                               "--plugin=protoc-gen-grpc=" + plugin]
                              + [os.path.join(src, p) for p in PROTOS])


setup(cmdclass={"build_py": BuildPyWithStubs})
