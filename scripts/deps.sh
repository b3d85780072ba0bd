#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Installs everything latticekv needs to build, run and test on Debian 12,
# from Debian's own packages. CUDA is optional and never installed here: the
# CUDA backend is built when /usr/local/cuda/bin/nvcc (or nvcc on PATH) exists.
# torch is optional too (the Python client takes and returns torch tensors
# when it is importable; tests/integration skips those tests without it):
# apt-get install python3-torch.
set -eu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
  build-essential cmake pkg-config openssl libssl-dev \
  libgrpc-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev \
  libprotobuf-c-dev protobuf-c-compiler libuv1-dev liburing-dev \
  libcriterion-dev libhiredis-dev redis-server \
  python3 python3-grpcio python3-protobuf python3-numpy python3-pytest \
  python3-pip python3-setuptools python3-wheel python3-venv dpkg-dev \
  yamllint python3-yaml clang clang-format libclang-rt-14-dev \
  prometheus iproute2
