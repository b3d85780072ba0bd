# SPDX-License-Identifier: Apache-2.0
"""Measurement prototype for codec profile 2 (issue 14, docs/codec-v2.md).

Measures each candidate lever on its own, and the combined profile 2, on the
four datasets of bench/quality/codec_quality.c (regenerated here with numpy's
generator, so the numbers are statistically, not bit-for-bit, those of
codec_quality), against profile 1 E8, Hadamard int-N, a TurboQuant-style
baseline and the Shannon bound.

Entropy-coded sizes are ideal code lengths -log2 p under a STATIC model per Q
whose probabilities are first quantised to the integer frequencies an rANS
coder would use (total 2^14), plus the rANS and offset-table overheads of the
chunk layout described in docs/codec-v2.md. Nothing is trained on the data
that is measured.

Run:  /usr/bin/python3 bench/quality/codec_v2_levers.py \
          --json bench/results/codec-v2-levers-dev-vm-2core.json
"""
import argparse
import json
import math
import time

import numpy as np

D = 128
N_BLK = D // 8
FREQ_BITS = 14  # rANS probability precision
# Chunk layout of profile 2 (docs/codec-v2.md): 32 interleaved rANS lanes,
# each lane codes VEC_PER_LANE consecutive vectors; per chunk one 32-bit
# offset; per lane a 32-bit final state of which about 16 bits is overhead
# beyond the information it carries; byte padding per chunk.
VEC_PER_LANE = 4
LANES = 32
RANS_FLUSH_BITS = 32.0
OVERHEAD_PER_VEC = (RANS_FLUSH_BITS / VEC_PER_LANE + (32.0 + 8.0) / (LANES * VEC_PER_LANE))


# ----------------------------------------------------------------- datasets
def gen(kind, n, rng):
    if kind == "normal":
        return rng.standard_normal((n, D))
    if kind == "student_t3":
        z = rng.standard_normal((n, D))
        chi2 = (rng.standard_normal((n, D, 3)) ** 2).sum(-1)
        return z / np.sqrt(chi2 / 3.0)
    if kind == "lognormal_channels":
        scale = np.exp(1.5 * rng.standard_normal(D))
        return scale * rng.standard_normal((n, D))
    if kind == "keys":
        offset = rng.standard_normal(D)
        scale = np.ones(D)
        scale[rng.permutation(D)[:4]] = 20.0
        return scale * rng.standard_normal((n, D)) + offset
    raise ValueError(kind)


DATASETS = ["normal", "student_t3", "lognormal_channels", "keys"]


# ------------------------------------------------------------ primitives
def fwht(x):
    """Normalised Sylvester-Hadamard transform along the last axis."""
    y = x.copy()
    h = 1
    while h < D:
        y = y.reshape(y.shape[0], D // (2 * h), 2, h)
        a = y[:, :, 0, :].copy()
        b = y[:, :, 1, :]
        y = np.stack([a + b, a - b], axis=2).reshape(-1, D)
        h *= 2
    return y / math.sqrt(D)


def f16(v):
    return np.asarray(v, dtype=np.float32).astype(np.float16).astype(np.float64)


def dn_box(y, lo, hi):
    """Closest D_n point in [lo, hi]^n with the tie rules of CODEC.md 3."""
    f = np.clip(np.rint(y), lo, hi)
    d = y - f
    odd = (f.sum(-1).astype(np.int64) & 1) == 1
    if not odd.any():
        return f
    dirn = np.where(d >= 0, 1.0, -1.0)
    moved = f + dirn
    allowed = (moved >= lo) & (moved <= hi)
    score = np.where(allowed, np.abs(d), -1.0)
    idx_t = score.argmax(-1)
    any_t = allowed.any(-1)
    idx_a = np.abs(d).argmin(-1)
    idx = np.where(any_t, idx_t, idx_a)
    step = np.where(any_t, dirn[np.arange(len(f)), idx], -dirn[np.arange(len(f)), idx])
    rows = np.nonzero(odd)[0]
    f[rows, idx[rows]] += step[rows]
    return f


def e8_box(z, q):
    """Closest E8 point with coordinates in [-q, q] (q=inf: whole lattice)."""
    b8 = z.reshape(-1, 8)
    a = dn_box(b8, -q, q)
    b = dn_box(b8 - 0.5, -q, q - 1) + 0.5
    da = ((b8 - a) ** 2).sum(-1)
    db = ((b8 - b) ** 2).sum(-1)
    p = np.where((da <= db)[:, None], a, b)
    return p.reshape(z.shape)


def rel_mse(x, xh):
    return float(((x - xh) ** 2).sum() / (x ** 2).sum())


def e8_count(q):
    bb = 2 * q + 1
    return (bb ** 8 + 1) // 2 + (2 * q) ** 8 // 2


# ----------------------------------------------------- static E8 models
def quantise_freqs(p):
    """Integer frequencies summing to 2^FREQ_BITS, each >= 1 (rANS tables)."""
    m = 1 << FREQ_BITS
    # every symbol gets 1, the rest is shared in proportion: the sum never
    # exceeds m, and what flooring leaves goes to the most likely symbol.
    f = 1 + np.floor(p / p.sum() * (m - len(p))).astype(np.int64)
    f[f.argmax()] += m - f.sum()
    assert f.min() >= 1 and f.sum() == m
    return f


class E8Model:
    """Static model of an E8 block: coset bit, 7 coordinates from the coset's
    marginal table, the last coordinate from the table of the parity class
    the E8 condition leaves. Symbols outside +-half_range are coded as an
    escape symbol followed by 16 raw bits."""

    def __init__(self, marg_int, marg_half, half_range, p_int):
        self.r = half_range
        self.tabs = {}
        for c, marg in ((0, marg_int), (1, marg_half)):
            # index k in [0, 2r] means value k - r (+0.5 for the half coset);
            # slot 2r+1 is the escape.
            full = np.append(marg, marg.sum() * 1e-9 + 1e-300)
            self.tabs[(c, "all")] = quantise_freqs(full)
            for par in (0, 1):
                w = np.arange(2 * half_range + 1) - half_range  # w = value - c/2
                mask = (w & 1) == par
                pm = np.where(mask, marg, 0.0)
                pm = np.append(pm, full[-1])
                # zero-probability symbols of the wrong parity get no slot:
                # emulate by giving them frequency 0 after quantising
                fq = quantise_freqs(np.where(np.append(mask, True), pm, 1e-30))
                fq = np.where(np.append(mask, True), fq, 0)
                fq[fq.argmax()] += (1 << FREQ_BITS) - fq.sum()
                self.tabs[(c, par)] = fq
        pc = quantise_freqs(np.array([p_int, 1.0 - p_int]))
        self.coset_bits = -np.log2(pc / float(1 << FREQ_BITS))

    def code_bits(self, p):
        """Ideal code length in bits of each vector of E8 points p (n, D)."""
        blk = p.reshape(-1, 8)
        coset = (np.abs(blk[:, 0] - np.round(blk[:, 0])) > 0.25).astype(np.int64)
        w = np.floor(blk).astype(np.int64)  # value - c/2
        bits = self.coset_bits[coset].copy()
        m = float(1 << FREQ_BITS)
        for c in (0, 1):
            rows = coset == c
            if not rows.any():
                continue
            wc = w[rows]
            esc = np.abs(wc + (0 if c == 0 else 0)) > self.r
            k = np.clip(wc + self.r, 0, 2 * self.r + 1)
            k = np.where(esc, 2 * self.r + 1, k)
            t = self.tabs[(c, "all")]
            b = -np.log2(t[k[:, :7]] / m).sum(-1)
            par = (wc[:, :7].sum(-1) & 1) if c == 1 else (wc[:, :7].sum(-1) & 1)
            # E8: integer coset needs sum even -> w7 parity = sum(w0..6) parity;
            # half coset: sum(w) even as well (CODEC.md 4).
            last = np.empty(len(wc))
            for pv in (0, 1):
                sel = par == pv
                tl = self.tabs[(c, pv)]
                last[sel] = -np.log2(tl[k[sel, 7]] / m)
            b += last + 16.0 * esc.sum(-1)
            bits[rows] += b
        return bits.reshape(p.shape[0], N_BLK).sum(-1)


def gaussian_e8_model(sigma, beta=2.0):
    """Parametric static model: a discretised generalised Gaussian of shape
    beta (2: the normal law) and standard deviation sigma on each coset."""
    r = int(math.ceil(7 * sigma)) + 2
    w = np.arange(2 * r + 1) - r
    alpha = sigma * math.sqrt(math.gamma(1.0 / beta) / math.gamma(3.0 / beta))
    mi = np.exp(-np.abs(w / alpha) ** beta)
    mh = np.exp(-np.abs((w + 0.5) / alpha) ** beta)
    a0, a1 = mi.sum(), (mi * np.where(w & 1, -1, 1)).sum()
    b0, b1 = mh.sum(), (mh * np.where(w & 1, -1, 1)).sum()
    zi = 0.5 * (a0 ** 8 + a1 ** 8)
    zh = 0.5 * (b0 ** 8 + b1 ** 8)
    return E8Model(mi, mh, r, zi / (zi + zh))


def trained_e8_model(points, q):
    """Histogram model (add-1/2) of profile 1's box points on TRAINING data."""
    r = int(q)
    blk = points.reshape(-1, 8)
    coset = np.abs(blk[:, 0] - np.round(blk[:, 0])) > 0.25
    hi = np.bincount((np.floor(blk[~coset]).astype(np.int64) + r).ravel(), minlength=2 * r + 1)
    hh = np.bincount((np.floor(blk[coset]).astype(np.int64) + r).ravel(), minlength=2 * r + 1)
    return E8Model(hi + 0.5, hh + 0.5, r, float((~coset).mean()))


# ------------------------------------------------------------- methods
def profile1(x, q, fixed_step_t=None):
    """Profile 1 E8 (two scales, box); with fixed_step_t: one scale, the step
    set from the norm: z = y * sqrt(D) * q / t."""
    r = np.maximum(np.sqrt((x ** 2).sum(-1, keepdims=True)), 2.0 ** -23)
    y = fwht(x / r)
    if fixed_step_t is None:
        m = f16(np.maximum(np.abs(y).max(-1, keepdims=True), 2.0 ** -23))
        s = m / q
    else:
        s = np.full((len(x), 1), fixed_step_t / (q * math.sqrt(D)))
    p = e8_box(y / s, q)
    xh = fwht(p * s) * f16(r)
    return p, xh


def profile2(x, sigma):
    """Profile 2: one fp16 norm, step fixed by the rate (sigma_z = sigma per
    coordinate for unit-norm input), unbounded E8, static Gaussian model."""
    r = np.maximum(np.sqrt((x ** 2).sum(-1, keepdims=True)), 2.0 ** -23)
    y = fwht(x / r)
    s = 1.0 / (sigma * math.sqrt(D))
    p = e8_box(y / s, np.inf)
    xh = fwht(p * s) * f16(r)
    return p, xh


def z_entropy_coded(x, sigma):
    """The same with the integer grid Z^D instead of E8 (isolates the lattice)."""
    r = np.sqrt((x ** 2).sum(-1, keepdims=True))
    y = fwht(x / r)
    s = 1.0 / (sigma * math.sqrt(D))
    p = np.rint(y / s)
    xh = fwht(p * s) * f16(r)
    rr = int(math.ceil(7 * sigma)) + 2
    w = np.arange(2 * rr + 1) - rr
    f = quantise_freqs(np.append(np.exp(-0.5 * (w / sigma) ** 2), 1e-9))
    k = np.clip(p.astype(np.int64) + rr, 0, 2 * rr + 1)
    esc = np.abs(p) > rr
    k = np.where(esc, 2 * rr + 1, k)
    bits = (-np.log2(f[k] / float(1 << FREQ_BITS)) + 16.0 * esc).sum(-1)
    return xh, bits


def hadamard_int(x, nb):
    y = fwht(x)
    lim = 2 ** (nb - 1) - 1
    sc = f16(np.abs(y).max(-1, keepdims=True) / lim)
    sc = np.where(sc == 0, 1.0, sc)
    return fwht(np.clip(np.rint(y / sc), -lim, lim) * sc), D * nb + 16


def lloyd_max(nb, iters=200):
    """Lloyd-Max quantiser for N(0,1) with 2^nb levels (on a fine grid)."""
    g = np.linspace(-8, 8, 200001)
    w = np.exp(-0.5 * g * g)
    lv = np.linspace(-2.5, 2.5, 2 ** nb) if nb > 1 else np.array([-0.8, 0.8])
    for _ in range(iters):
        th = 0.5 * (lv[1:] + lv[:-1])
        idx = np.searchsorted(th, g)
        lv = np.bincount(idx, weights=g * w, minlength=len(lv)) / np.bincount(
            idx, weights=w, minlength=len(lv))
    return lv


def turboquant(x, nb, lv):
    """Rotation, one fp16 norm, Lloyd-Max per coordinate matched to N(0, 1/D)."""
    r = np.sqrt((x ** 2).sum(-1, keepdims=True))
    y = fwht(x / r) * math.sqrt(D)
    th = 0.5 * (lv[1:] + lv[:-1])
    yh = lv[np.searchsorted(th, y)]
    return fwht(yh / math.sqrt(D)) * f16(r), D * nb + 16


# ---------------------------------------------------------------- driver
P1_QS = [2, 3, 5, 7, 10, 15, 19, 31, 38, 63, 76, 127, 152]
P2_SIGMAS = [0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0, 11.3, 13.5, 16.0, 22.6, 32.0, 45.3]
SHAPES = [2.0, 3.0, 4.0, 8.0]
FIXED_T = [3.0, 3.5, 4.0, 4.5, 5.0, 6.0]


def interp_bits(points, target):
    """Bits at which a (bits, mse) curve reaches mse == target (log-linear)."""
    pts = sorted(points)
    for (b0, m0), (b1, m1) in zip(pts, pts[1:]):
        if m0 >= target >= m1:
            t = (math.log(m0) - math.log(target)) / (math.log(m0) - math.log(m1))
            return b0 + t * (b1 - b0)
    return None


def interp_mse(points, bits):
    pts = sorted(points)
    for (b0, m0), (b1, m1) in zip(pts, pts[1:]):
        if b0 <= bits <= b1:
            t = (bits - b0) / (b1 - b0)
            return math.exp(math.log(m0) + t * (math.log(m1) - math.log(m0)))
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--json")
    args = ap.parse_args()
    t0 = time.time()
    seed = 0x6B616B6579614C31

    # Training data for the trained (profile 1 entropy-coding) models and the
    # one-scale step choice: standard normal, a seed never used for testing.
    train = gen("normal", 2048, np.random.default_rng(seed ^ 0xFFFF))
    trained = {}
    best_t = {}
    for q in P1_QS:
        p, _ = profile1(train, q)
        trained[q] = trained_e8_model(p, q)
        errs = [(rel_mse(train, profile1(train, q, t)[1]), t) for t in FIXED_T]
        best_t[q] = min(errs)[1]
    lvs = {nb: lloyd_max(nb) for nb in range(1, 9)}

    out = {"machine": "dev-vm-2core (shared, 2 cores)", "vectors_per_dataset": args.n,
           "dim": D, "freq_bits": FREQ_BITS,
           "profile2_overhead_bits_per_vector": OVERHEAD_PER_VEC,
           "one_scale_step_t": best_t, "shapes": SHAPES, "datasets": {}}
    for di, ds in enumerate(DATASETS):
        x = gen(ds, args.n, np.random.default_rng(seed + di))
        res = {k: [] for k in ["p1_e8", "A_one_scale", "B_exact_count", "AB",
                               "C_entropy_p1", "p2_e8", "p2_e8_shapes", "p2_z", "hadamard_int",
                               "turboquant", "shannon"]}
        for q in P1_QS:
            p, xh = profile1(x, q)
            e = rel_mse(x, xh)
            k8 = int(e8_count(q) * 0 + (2 * q + 1) ** 8).bit_length()
            res["p1_e8"].append([N_BLK * k8 + 32, e, q])
            cnt_bits = math.ceil(N_BLK * math.log2(e8_count(q)))
            res["B_exact_count"].append([cnt_bits + 32, e, q])
            res["C_entropy_p1"].append(
                [float(trained[q].code_bits(p).mean()) + OVERHEAD_PER_VEC + 32, e, q])
            _, xa = profile1(x, q, best_t[q])
            ea = rel_mse(x, xa)
            res["A_one_scale"].append([N_BLK * k8 + 16, ea, q])
            res["AB"].append([cnt_bits + 16, ea, q])
        for sg in P2_SIGMAS:
            p, xh = profile2(x, sg)
            bits = gaussian_e8_model(sg).code_bits(p)
            res["p2_e8"].append([float(bits.mean()) + OVERHEAD_PER_VEC + 16,
                                 rel_mse(x, xh), sg, float(bits.max()) + 16])
            # Lever D: per vector, the encoder picks the cheapest of
            # len(SHAPES) static shapes and spends log2(len(SHAPES)) bits on it.
            allb = np.stack([gaussian_e8_model(sg, be).code_bits(p) for be in SHAPES])
            pick = allb.min(0) + math.log2(len(SHAPES))
            res["p2_e8_shapes"].append([float(pick.mean()) + OVERHEAD_PER_VEC + 16,
                                        rel_mse(x, xh), sg, float(pick.max()) + 16,
                                        np.bincount(allb.argmin(0), minlength=len(SHAPES)).tolist()])
            xz, bz = z_entropy_coded(x, sg)
            res["p2_z"].append([float(bz.mean()) + OVERHEAD_PER_VEC + 16, rel_mse(x, xz), sg])
        for nb in range(2, 9):
            xh, b = hadamard_int(x, nb)
            res["hadamard_int"].append([b, rel_mse(x, xh), nb])
        for nb in range(1, 9):
            xh, b = turboquant(x, nb, lvs[nb])
            res["turboquant"].append([b, rel_mse(x, xh), nb])
        for b in range(200, 1201, 50):
            res["shannon"].append([b, 2.0 ** (-2.0 * (b - 16) / D)])
        # Summary: equal-error bits and equal-bits dB against profile 1 E8.
        p1 = [(b, m) for b, m, *_ in res["p1_e8"]]
        summ = {}
        for name in ["A_one_scale", "B_exact_count", "AB", "C_entropy_p1", "p2_e8",
                     "p2_e8_shapes", "p2_z",
                     "hadamard_int", "turboquant"]:
            pts = [(b, m) for b, m, *_ in res[name]]
            gains = []
            for b, m in p1:
                if 2.6 * D <= b <= 8.6 * D:
                    mo = interp_mse(pts, b)
                    if mo is not None:
                        gains.append(10 * math.log10(m / mo))
            summ[name] = {
                "db_below_p1_at_equal_bits_min": min(gains) if gains else None,
                "db_below_p1_at_equal_bits_max": max(gains) if gains else None,
                "bits_at_p1_q38_error": interp_bits(pts, dict((q, m) for _, m, q in res["p1_e8"])[38]),
            }
        summ["p1_q38_error"] = dict((q, m) for _, m, q in res["p1_e8"])[38]
        res["summary"] = summ
        out["datasets"][ds] = res
        print(ds, json.dumps(summ, indent=1), flush=True)
    out["seconds"] = time.time() - t0
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
