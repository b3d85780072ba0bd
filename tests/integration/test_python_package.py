# SPDX-License-Identifier: Apache-2.0
"""The Python package as users get it: pip-installed into a fresh venv, the
asyncio client, batches, and numpy / torch / DLPack tensors in and out, all
against the real daemon (conftest's `daemon`).

The pip test copies clients/python and proto/ into a temporary tree (so the
checkout gets no build/ or egg-info), installs from there into a venv made
with --system-site-packages (Debian's grpcio, protobuf, numpy, setuptools),
offline (--no-index --no-build-isolation), and runs a client script with the
venv's Python from a directory outside the checkout: the package it imports
must be the installed one, stubs included.
"""

import asyncio
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

import latticekv
from conftest import DAEMON, kv_like

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

INSTALLED_SCRIPT = r"""
import asyncio, sys
import numpy as np
import latticekv
addr, prefix = sys.argv[1], sys.argv[2]
assert latticekv.__file__.startswith(prefix), latticekv.__file__
assert latticekv._GEN.startswith(prefix), latticekv._GEN
x = np.linspace(-2, 2, 4 * 128, dtype=np.float32).reshape(4, 128)
with latticekv.Client(addr) as c:
    c.put(b"pip-key", x)
    got = c.get(b"pip-key")
    coded = c.get(b"pip-key", want_coded=True)
async def main():
    async with latticekv.AsyncClient(addr) as a:
        return await a.get(b"pip-key"), await a.get(b"pip-key", want_coded=True)
agot, acoded = asyncio.run(main())
assert got.shape == x.shape and np.array_equal(got, agot) and coded == acoded
print("installed", latticekv.__version__, float(np.linalg.norm(got - x) / np.linalg.norm(x)))
"""


def test_pip_install_into_venv(daemon):
    with tempfile.TemporaryDirectory(prefix="lkv-pip-") as tmp:
        src = os.path.join(tmp, "src")
        shutil.copytree(os.path.join(ROOT, "clients", "python"),
                        os.path.join(src, "clients", "python"),
                        ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
        shutil.copytree(os.path.join(ROOT, "proto"), os.path.join(src, "proto"))
        venv = os.path.join(tmp, "venv")
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv],
                       check=True)
        py = os.path.join(venv, "bin", "python")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        r = subprocess.run([py, "-m", "pip", "install", "--no-index", "--no-build-isolation",
                            "--disable-pip-version-check", os.path.join(src, "clients", "python")],
                           env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                              env=env, check=True, capture_output=True, text=True).stdout.strip()
        r = subprocess.run([py, "-c", INSTALLED_SCRIPT, daemon.unix, site], env=env, cwd=tmp,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        m = re.match(r"installed (\S+) (\S+)", r.stdout)
        assert m and float(m.group(2)) < 0.05, r.stdout
        # One version everywhere: the package's is latticekvd's.
        daemon_version = subprocess.run([DAEMON, "--version"], check=True, capture_output=True,
                                        text=True).stdout.split()[1]
        assert m.group(1) == daemon_version == latticekv.__version__


def test_async_client_matches_blocking_client(addr, client):
    arrays = [kv_like((3, 2, 128), seed=i) for i in range(5)]
    keys = [b"aio-%d" % i for i in range(5)]

    async def run():
        async with latticekv.AsyncClient(addr, timeout=60) as a:
            await a.wait_ready()
            assert await a.health() == "SERVING"
            sizes = await a.put_many(zip(keys, arrays), dtype="bf16", namespace="aio")
            one = await a.put(b"aio-one", arrays[0], dtype="fp16", q=20, namespace="aio")
            got = await a.get_many(keys, namespace="aio")
            coded = await a.get_many(keys, namespace="aio", want_coded=True)
            hits = await a.lookup(keys + [b"absent"], namespace="aio")
            single = await a.compress(arrays[1], dtype="bf16")
            back = await a.decompress(single)
            with pytest.raises(latticekv.Error) as bad:
                await a.put(b"aio-bad", np.zeros((2, 100), np.float32))
            with pytest.raises(latticekv.Error) as missing:
                await a.get(b"never-stored", namespace="aio")
            deleted = await a.delete(b"aio-one", namespace="aio")
            stats = await a.stats()
            return sizes, one, got, coded, hits, single, back, bad, missing, deleted, stats

    sizes, one, got, coded, hits, single, back, bad, missing, deleted, stats = asyncio.run(run())
    assert sizes == [len(c) for c in coded] and one > 0
    assert coded == client.get_many(keys, namespace="aio", want_coded=True)
    for g, b in zip(got, client.get_many(keys, namespace="aio")):
        assert np.array_equal(g, b)
    assert hits == (5, [True] * 5 + [False])
    assert single == client.compress(arrays[1], dtype="bf16")
    assert np.array_equal(back, client.decompress(single))
    assert bad.value.code.name == "INVALID_ARGUMENT" and "100" in bad.value.details
    assert missing.value.code.name == "NOT_FOUND"
    assert deleted and stats["version"] == latticekv.__version__


class _DLPackOnly:
    """An array that is only reachable through the DLPack protocol."""

    def __init__(self, arr):
        self._arr = arr

    def __dlpack__(self, stream=None):
        return self._arr.__dlpack__()

    def __dlpack_device__(self):
        return self._arr.__dlpack_device__()


def test_dlpack_input_is_zero_copy(client):
    x = kv_like((4, 128), seed=7)
    wrapped = _DLPackOnly(x)
    view, _ = latticekv.client.as_numpy(wrapped)
    assert np.shares_memory(view, x)
    client.put(b"dlpack", wrapped)
    assert np.array_equal(client.get(b"dlpack"), client.decompress(client.compress(x)))


def test_batches_keep_order_and_dtypes(client):
    items = [(b"batch-%d" % i, kv_like((i + 1, 64), seed=i, dtype=dt))
             for i, dt in enumerate([np.float32, np.float16, np.float32, np.float16])]
    sizes = client.put_many(items, namespace="batch")
    got = client.get_many([k for k, _ in items], namespace="batch")
    assert len(sizes) == len(got) == 4
    for (_, a), g in zip(items, got):
        assert g.dtype == a.dtype and g.shape == a.shape
        assert np.abs(g.astype(np.float32) - a.astype(np.float32)).max() < 0.25


def test_torch_in_and_out(client):
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(kv_like((8, 2, 128), seed=3))
    # fp32 in, fp32 out: the same values as the numpy path.
    client.put(b"torch-f32", x)
    got = client.get(b"torch-f32", as_torch=True)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    assert np.array_equal(got.numpy(), client.get(b"torch-f32"))
    # bfloat16 in travels as its bits (no rounding here) and comes back as bfloat16.
    xb = x.to(torch.bfloat16)
    bits = xb.view(torch.int16).numpy().view(np.uint16)
    assert client.compress(xb) == client.compress(bits, dtype="bf16")
    client.put(b"torch-bf16", xb)
    gb = client.get(b"torch-bf16", as_torch=True)
    assert gb.dtype == torch.bfloat16 and gb.shape == xb.shape
    assert np.array_equal(gb.view(torch.int16).numpy().view(np.uint16),
                          client.get(b"torch-bf16", raw=True))
    # A CPU tensor is read in place; a non-contiguous one is made contiguous.
    view, _ = latticekv.client.as_numpy(x)
    assert np.shares_memory(view, x.numpy())
    xt = x.transpose(0, 1)
    assert np.array_equal(client.decompress(client.compress(xt)),
                          client.decompress(client.compress(xt.contiguous().numpy())))
    # Batches and the asyncio client take tensors too.
    client.put_many([(b"torch-m0", x), (b"torch-m1", xb)])
    m0, m1 = client.get_many([b"torch-m0", b"torch-m1"], as_torch=True)
    assert m0.dtype == torch.float32 and m1.dtype == torch.bfloat16

    async def run():
        async with latticekv.AsyncClient(client.addr) as a:
            return await a.get(b"torch-bf16", as_torch=True)

    assert torch.equal(asyncio.run(run()), gb)

