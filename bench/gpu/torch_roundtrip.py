#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Plain PyTorch implementation of the KakeyaLattice roundtrip, the baseline
of the CUDA codec's speed target.

Written from docs/codec.md sections 2 and 3 with ordinary tensor ops:
norm, divide, Walsh-Hadamard butterfly (stages h = 1 .. D/2, then the fp32
1/sqrt(D) scale), max-abs with the fp16-rounded scale, the box-constrained
D_n / E8 closest point with the reference's tie rules, then the decode half
(point * s, butterfly, * fp16(r)). It computes the same math as the codec
but does not pack indices (a roundtrip needs none) and is not bit-exact
(the norm is torch's reduction, not the pairwise tree).

Timed eagerly and under torch.compile, with CUDA events, median of repeats
after warm-up (compile time excluded). Prints a table and writes JSON.

Usage: torch_roundtrip.py [--json FILE] [--n N] [--quick]
"""
import argparse
import json
import math
import statistics

import torch

EPS = 2.0 ** -23


def fwht(v):
    """Butterfly over the last dim, stages h = 1, 2, ..., D/2, no scale."""
    n, d = v.shape
    h = 1
    while h < d:
        w = v.view(n, d // (2 * h), 2, h)
        a, b = w[:, :, 0, :], w[:, :, 1, :]
        v = torch.stack((a + b, a - b), dim=2).view(n, d)
        h *= 2
    return v


def dn_box(y, lo, hi):
    """Closest point of D_n in [lo, hi]^n for rows of y (docs/codec.md section 3)."""
    f = torch.round(y).clamp(lo, hi)  # round half to even
    d = y - f
    odd = torch.remainder(f.sum(-1), 2.0) != 0
    # a move toward y stays in the box exactly when lo <= y < hi
    allowed = (y >= lo) & (y < hi)
    key = torch.where(allowed, d.abs(), torch.full_like(d, -1.0))
    best = key.argmax(-1)  # first maximum: lowest index on ties
    away = d.abs().argmin(-1)
    any_ok = allowed.any(-1)
    idx = torch.where(any_ok, best, away)
    dsel = d.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
    toward = torch.where(dsel >= 0, 1.0, -1.0)
    step = torch.where(any_ok, toward, -toward) * odd
    onehot = torch.nn.functional.one_hot(idx, y.shape[-1]).to(y.dtype)
    return f + onehot * step.unsqueeze(-1)


def e8_box(y, q):
    a = dn_box(y, -q, q)
    b = dn_box(y - 0.5, -q, q - 1) + 0.5
    da = ((y - a) ** 2).sum(-1)
    db = ((y - b) ** 2).sum(-1)
    return torch.where((da <= db).unsqueeze(-1), a, b)


def roundtrip(x, q, variant):
    nb = 8 if variant == "E8" else 4
    xf = x.float()
    n, d = xf.shape
    inv = 1.0 / math.sqrt(d)
    r = torch.linalg.vector_norm(xf, dim=-1, keepdim=True).clamp_min(EPS)
    r16 = r.half().float()
    y = fwht(xf / r) * inv
    m = y.abs().amax(-1, keepdim=True).clamp_min(EPS)
    s = m.half().float() / q
    z = (y / s).view(n, d // nb, nb)
    p = e8_box(z, float(q)) if variant == "E8" else dn_box(z, -float(q), float(q))
    u = fwht(p.view(n, d) * s) * inv
    return (u * r16).to(x.dtype)


def time_ms(fn, x, reps):
    for _ in range(3):
        fn(x)
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        e0 = torch.cuda.Event(enable_timing=True)
        e1 = torch.cuda.Event(enable_timing=True)
        e0.record()
        fn(x)
        e1.record()
        e1.synchronize()
        ts.append(e0.elapsed_time(e1))
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--n", type=int, default=1 << 20)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    reps = 3 if args.quick else 10
    dev = torch.device("cuda")
    torch.manual_seed(0)
    name = torch.cuda.get_device_name(0)
    out = {"device": name, "torch": torch.__version__, "n": args.n, "dim": 128, "results": []}
    print(f"PyTorch {torch.__version__} on {name}, n = {args.n}, D = 128")
    print(f"{'variant':7} {'Q':>4} {'dtype':>5} | {'eager ms':>9} {'compiled ms':>11} | rel-MSE")
    for variant, q, dt in (("E8", 38, torch.bfloat16), ("D4", 38, torch.bfloat16)):
        x = torch.randn(args.n, 128, device=dev).to(dt)
        eager = lambda t, q=q, v=variant: roundtrip(t, q, v)  # noqa: E731
        compiled = torch.compile(eager, dynamic=False)
        xh = eager(x)
        xf = x.float()
        relmse = ((xf - xh.float()) ** 2).sum().item() / (xf ** 2).sum().item()
        t_eager = time_ms(eager, x, reps)
        t_comp = time_ms(compiled, x, reps)
        print(f"{variant:7} {q:>4} {str(dt)[6:]:>5} | {t_eager:9.3f} {t_comp:11.3f} | {relmse:.4e}")
        out["results"].append({"variant": variant, "q": q, "dtype": str(dt)[6:],
                               "eager_ms": t_eager, "compiled_ms": t_comp, "relmse": relmse})
        del x, xh, xf
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
