#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes a synthetic KV-cache block as raw little-endian bf16 for the demo.

Shape [tokens, kv_heads, head_dim]. Keys have a few outlier channels (20x)
and a per-channel offset, values are normal with per-channel log-normal
scales, as real K/V caches tend to look. Deterministic (fixed seed).
"""
import argparse

import numpy as np


def to_bf16(x):
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest even
    return bits.astype(np.uint16)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--kind", choices=["k", "v"], default="k")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    x = rng.standard_normal((a.tokens, a.heads, a.dim)).astype(np.float32)
    if a.kind == "k":
        outliers = rng.choice(a.dim, size=4, replace=False)
        x[..., outliers] *= 20.0
        x += rng.standard_normal((a.heads, a.dim)).astype(np.float32) * 2.0
    else:
        x *= np.exp(rng.standard_normal((a.heads, a.dim)) * 0.7).astype(np.float32)
    to_bf16(x).tofile(a.out)


if __name__ == "__main__":
    main()
