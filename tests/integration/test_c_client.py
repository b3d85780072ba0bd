# SPDX-License-Identifier: Apache-2.0
"""Runs the C client test program (client_itest.c) against the daemon, per transport."""

import os
import subprocess

import pytest

from conftest import CLIENT_ITEST, HANG_GUARD_S


def test_c_client(addr):
    if not CLIENT_ITEST or not os.access(CLIENT_ITEST, os.X_OK):
        pytest.skip("LKV_CLIENT_ITEST is not set to the lkv_client_itest binary")
    r = subprocess.run([CLIENT_ITEST, "--addr", addr], capture_output=True,
                       timeout=4 * HANG_GUARD_S)
    assert r.returncode == 0, r.stderr.decode()[-4000:]
    assert b"ok (0 failures)" in r.stdout
