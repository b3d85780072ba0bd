# SPDX-License-Identifier: Apache-2.0
"""--gpu-mem-bytes on a daemon without a GPU (issue 12): a capacity
that cannot be honoured is a start-up error naming the flag (exit 2), and 0,
the default, changes nothing.

These run on CPU builds and CI; the GPU side is tests/gpu/daemon/.
"""

import subprocess

import pytest

import latticekv

import conftest
from conftest import DAEMON, HANG_GUARD_S


def start(args):
    return subprocess.run([DAEMON, "--listen", "127.0.0.1:0"] + args, capture_output=True,
                          timeout=HANG_GUARD_S)


@pytest.mark.parametrize("args,named", [
    (["--gpu-mem-bytes", "12Q"], "--gpu-mem-bytes=12Q"),
    (["--gpu-mem-bytes", "-1"], "--gpu-mem-bytes=-1"),
    (["--gpu-mem-bytes", "1PiB"], "--gpu-mem-bytes=1PiB"),  # above the 16 TiB limit
    (["--gpu-mem-bytes"], "--gpu-mem-bytes"),
    (["--gpu-mem-bytes", "1GiB", "--backend", "cpu"], "--gpu-mem-bytes=1073741824"),
])
def test_bad_gpu_mem_bytes_exits_2_naming_the_flag(args, named):
    if not DAEMON:
        pytest.skip("LKV_DAEMON is not set")
    p = start(args)
    assert p.returncode == 2, p
    assert named in p.stderr.decode(), p.stderr


def test_cpu_backend_refusal_says_why():
    if not DAEMON:
        pytest.skip("LKV_DAEMON is not set")
    p = start(["--gpu-mem-bytes", "64MiB", "--backend", "cpu"])
    assert p.returncode == 2, p
    err = p.stderr.decode()
    assert "needs the cuda backend" in err and "backend=cpu" in err, err


def test_zero_is_the_default_and_serves(tmp_path):
    d = conftest.Daemon(str(tmp_path), ["--gpu-mem-bytes", "0"])
    try:
        with latticekv.Client(d.tcp) as c:
            coded = c.compress(conftest.kv_like((4, 128), 7))
            c.put_coded("k", coded)
            value, tier = c.get("k", want_coded=True, tier=True)
            assert value == coded and tier == "host", tier
            names = [t["name"] for t in c.stats()["tiers"]]
            assert names[0] == "host" and "gpu" not in names, names
    finally:
        assert d.stop() == 0, d.log_text()


def test_gpu_watermarks_out_of_order_exit_2():
    if not DAEMON:
        pytest.skip("LKV_DAEMON is not set")
    p = start(["--gpu-high-watermark", "80", "--gpu-low-watermark", "90"])
    assert p.returncode == 2, p
    err = p.stderr.decode()
    assert "--gpu-low-watermark=90 is above --gpu-high-watermark=80" in err, err
