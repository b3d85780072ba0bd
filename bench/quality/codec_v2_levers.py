# SPDX-License-Identifier: Apache-2.0
"""Measurement prototype for codec profile 2 (issue 14, docs/codec-v2.md).

Measures each candidate lever on its own, and the combined profile 2, on the
four datasets of bench/quality/codec_quality.c (regenerated here with numpy's
generator, so the numbers are statistically, not bit-for-bit, those of
codec_quality; with --data DIR, codec_quality's own data instead, below),
against profile 1 E8, Hadamard int-N, a TurboQuant-style baseline and the
Shannon bound.

Entropy-coded sizes are ideal code lengths -log2 p under a STATIC model per Q
whose probabilities are first quantised to the integer frequencies an rANS
coder would use (total 2^14), plus the rANS and offset-table overheads of the
chunk layout described in docs/codec-v2.md. Nothing is trained on the data
that is measured.

The second-round levers (rows L0_..L4_, docs/codec-v2.md "Next levers
(measured)") run on the C codec's Q points: per-chunk choice between the
rotated and the channel domain with per-chunk per-channel models (L1), 8
vectors per rANS lane (L2), a cheaper norm (L3), and all three (L4). Each
dataset's summary also gives the margins issue 14 sets, computed on
codec_quality's grids: dB below profile 1 E8, Hadamard int-N and the
TurboQuant-style baseline at equal bits (2.6..8.6 bits per coordinate).

Run:  /usr/bin/python3 bench/quality/codec_v2_levers.py \
          --json bench/results/codec-v2-levers2-dev-vm-2core.json
      (--levers L0_today,L4_all and --datasets keys pick a subset)

On codec_quality's exact data: write it once, then measure the first --n
vectors of each set (the references too are then computed on that data;
only the training set of the trained models is still numpy's):
      build/bench/quality/codec_quality --dump-data DIR   (DIR must exist)
      /usr/bin/python3 bench/quality/codec_v2_levers.py --data DIR --n 4096 ...
"""
import argparse
import json
import math
import os
import sys
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


def load_manifest(path):
    """codec_quality --dump-data's manifest.json in path; exits with a clear
    message if it is not there or not for D = 128."""
    mpath = os.path.join(path, "manifest.json")
    try:
        with open(mpath) as f:
            man = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit("codec_v2_levers: --data %s: cannot read %s (%s); write it with "
                 "codec_quality --dump-data %s" % (path, mpath, e, path))
    if man.get("dim") != D:
        sys.exit("codec_v2_levers: --data %s: %s has dim %r, this script needs %d"
                 % (path, mpath, man.get("dim"), D))
    return man


def load(path, kind, n):
    """The first n vectors of codec_quality's dataset `kind` (DIR/<kind>.f32,
    little-endian fp32, n x D row-major), as float64 like gen()."""
    fpath = os.path.join(path, kind + ".f32")
    try:
        size = os.path.getsize(fpath)
    except OSError as e:
        sys.exit("codec_v2_levers: --data %s: dataset %s missing: %s" % (path, kind, e))
    rows = size // (4 * D)
    if size % (4 * D):
        sys.exit("codec_v2_levers: --data %s: %s is %d bytes, not a whole number of "
                 "%d-float vectors" % (path, fpath, size, D))
    if rows < n:
        sys.exit("codec_v2_levers: --data %s: %s holds %d vectors, --n %d needs more "
                 "(codec_quality --dump-data --vectors N writes N)" % (path, fpath, rows, n))
    x = np.fromfile(fpath, dtype="<f4", count=n * D).reshape(n, D)
    return x.astype(np.float64)


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


# ------------------------------------------- next levers (second round)
# Profile 2 as the C codec builds it has Q = 4 sigma; these are its Q points.
P2_QS_C = [3, 4, 6, 8, 11, 16, 23, 32, 45, 54, 64, 91, 128, 181, 256, 362]
# Channel-domain coding needs fewer bits at a given Q on the structured sets,
# so the lever rows go on to Q = 1023 (the format's largest) to span 8.6 bits.
LEVER_QS = P2_QS_C + [512, 724, 1023]
# codec_quality's reference grids, so that the margins below are computed
# as its report computes them: profile 1 E8 at these Q, Hadamard int4..8,
# TurboQuant-style 1..8 bits; a lever's points between 336 and 1104 bits.
C_P1_QS = [2, 5, 10, 19, 38, 76, 152]
C_INT_BITS = [4, 5, 6, 7, 8]
RANGE_BITS = (2.6 * D, 8.6 * D)
LOW_BITS = (2.6 * D, 4.0 * D)
ESC_RAW_BITS = 16.0
MAX_BINS = 256  # a per-channel table codes bins of 2^b points beyond this


def vec_overhead(vpl):
    """rANS final states (32 bits per lane of vpl vectors), the chunk's u32
    length and byte padding, per vector."""
    return RANS_FLUSH_BITS / vpl + (32.0 + 8.0) / (LANES * vpl)


def code_norm(r, mode):
    """The coded norm and its bits. mode: ("fp16",); ("fp", m): fp16's
    5-bit exponent and m mantissa bits, no sign bit; ("log", step, bits):
    2^(step * k), k a signed integer of `bits` bits."""
    if mode[0] == "fp16":
        return f16(r), 16.0
    if mode[0] == "fp":
        m = mode[1]
        mant, ex = np.frexp(f16(r))  # r = mant * 2^ex, mant in [0.5, 1)
        scale = 2.0 ** (m + 1)
        return np.ldexp(np.rint(mant * scale) / scale, ex), 5.0 + m
    step, bits = mode[1], mode[2]
    k = np.clip(np.rint(np.log2(r) / step), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return 2.0 ** (k * step), float(bits)


def norm_rule(sigma):
    """fp norm with mantissa bits growing with the rate: its relative error
    stays near 1 % of the lattice's (1.15 / Q^2 = 0.072 / sigma^2)."""
    return ("fp", int(min(10, max(2, math.ceil(math.log2(sigma) + 3.0)))))


class ChannelE8Model:
    """E8 model with one discretised Gaussian per coordinate, its standard
    deviation one of 2^nbits levels sigma*sqrt(D) * 2^(-step*k) (the top
    level is the largest RMS a coordinate can have, since sum z^2 = D sigma^2).
    Per level: the two cosets' marginal tables and the last coordinate's
    parity-class tables, each over bins of 2^b points (b = 0 while the table
    has at most MAX_BINS entries; the b low bits are then sent raw), plus an
    escape followed by ESC_RAW_BITS raw bits beyond +-(7 s + 2). Stored as
    code lengths in bits, so that coding is a gather."""

    def __init__(self, sigma, step, nbits):
        nl = 1 << nbits
        self.s = sigma * math.sqrt(D) * 2.0 ** (-step * np.arange(nl))
        self.r = np.array([int(math.ceil(7 * s)) + 2 for s in self.s])
        self.b = np.zeros(nl, dtype=np.int64)
        for k, r in enumerate(self.r):
            while (2 * r + 1 + (1 << self.b[k]) - 1) >> self.b[k] > MAX_BINS:
                self.b[k] += 1
        esc = MAX_BINS
        m = float(1 << FREQ_BITS)
        self.cl = np.full((2, 3, nl, MAX_BINS + 1), np.inf)  # coset, all/even/odd
        self.mass = np.zeros((2, 2, nl))  # coset, (sum p, sum (-1)^w p)
        for k in range(nl):
            r, b, s = self.r[k], self.b[k], self.s[k]
            w = np.arange(-r, r + 1)
            idx = (w + r) >> b
            nb = idx[-1] + 1
            for c in (0, 1):
                pw = np.exp(-0.5 * ((w + 0.5 * c) / s) ** 2)
                self.mass[c, 0, k] = pw.sum()
                self.mass[c, 1, k] = (pw * np.where(w & 1, -1.0, 1.0)).sum()
                pesc = pw.sum() * 1e-9 + 1e-300
                marg = np.append(np.bincount(idx, pw, minlength=nb), pesc)
                f = quantise_freqs(marg)
                self.cl[c, 0, k, :nb] = -np.log2(f[:-1] / m) + b
                self.cl[c, 0, k, esc] = -np.log2(f[-1] / m) + ESC_RAW_BITS
                for par in (0, 1):
                    pm = np.bincount(idx, pw * ((w & 1) == par), minlength=nb)
                    ok = np.append(pm > 0, True)
                    f = np.zeros(nb + 1, dtype=np.int64)
                    f[ok] = quantise_freqs(np.append(pm, pesc)[ok])
                    raw = max(b - 1, 0)
                    with np.errstate(divide="ignore"):
                        self.cl[c, 1 + par, k, :nb] = -np.log2(f[:-1] / m) + raw
                    self.cl[c, 1 + par, k, esc] = -np.log2(f[-1] / m) + ESC_RAW_BITS

    def level(self, rms, step):
        """Side information: the level closest to rms in log2 (clamped)."""
        with np.errstate(divide="ignore"):
            k = np.rint(np.log2(self.s[0] / np.maximum(rms, 1e-300)) / step)
        return np.clip(k, 0, len(self.s) - 1).astype(np.int64)

    def code_bits(self, p, lev):
        """Bits of each vector of points p (chunks, vectors, D) with levels
        lev (chunks, D): coset bit, coordinates 0..6 of each block from their
        own marginal, coordinate 7 from its parity-class table."""
        nc, nv = p.shape[:2]
        blk = p.reshape(nc, nv, N_BLK, 8)
        coset = (np.abs(blk[..., 0] - np.round(blk[..., 0])) > 0.25).astype(np.int64)
        w = np.floor(blk).astype(np.int64)
        lv = np.broadcast_to(lev.reshape(nc, 1, N_BLK, 8), w.shape)
        r, b = self.r[lv], self.b[lv]
        esc = np.abs(w) > r
        idx = np.where(esc, MAX_BINS, (np.clip(w, -r, r) + r) >> b)
        par = w[..., :7].sum(-1) & 1
        cb = np.broadcast_to(coset[..., None], w.shape)
        bits = self.cl[cb[..., :7], 0, lv[..., :7], idx[..., :7]].sum(-1)
        bits += self.cl[coset, 1 + par, lv[..., 7], idx[..., 7]]
        # coset bit: P(integer coset) = Z0 / (Z0 + Z1), Z_c = (prod A0 +
        # prod A1) / 2 over the block's 8 levels, quantised like the rest.
        lb = lev.reshape(nc, N_BLK, 8)
        z = [0.5 * (self.mass[c, 0, lb].prod(-1) + self.mass[c, 1, lb].prod(-1)) for c in (0, 1)]
        pint = z[0] / (z[0] + z[1])
        mm = 1 << FREQ_BITS
        f0 = 1 + np.floor(pint * (mm - 2))
        f1 = 1 + np.floor((1.0 - pint) * (mm - 2))
        big0 = f0 >= f1
        f0 = np.where(big0, mm - f1, f0)
        f1 = np.where(big0, f1, mm - f0)
        cbits = -np.log2(np.stack([f0, f1]) / float(mm))  # (2, nc, N_BLK)
        bits += np.where(coset == 0, cbits[0][:, None, :], cbits[1][:, None, :])
        return bits.sum(-1)


_MODELS = {}


def rot_model(sigma):
    if ("rot", sigma) not in _MODELS:
        _MODELS[("rot", sigma)] = gaussian_e8_model(sigma)
    return _MODELS[("rot", sigma)]


def chan_model(sigma, step, nbits):
    if ("chan", sigma, step, nbits) not in _MODELS:
        _MODELS[("chan", sigma, step, nbits)] = ChannelE8Model(sigma, step, nbits)
    return _MODELS[("chan", sigma, step, nbits)]


def chunk_means(x, chunk, mbits):
    """Per chunk and channel mean, block floating point: one 8-bit exponent
    per chunk, then a signed mbits-bit integer per channel."""
    xc = x.reshape(-1, chunk, D)
    mu = xc.mean(1)
    top = np.abs(mu).max(-1, keepdims=True)
    ex = np.ceil(np.log2(np.maximum(top, 1e-30)))
    step = 2.0 ** ex / (2 ** (mbits - 1) - 1)
    muq = np.rint(mu / step) * step
    return np.repeat(muq, chunk, axis=0), 8.0 + mbits * D


def quantise_p2(x, sigma, rotate, norm, enc_norm, mu=None):
    """Profile 2's front end in the rotated (rotate) or the channel domain.
    The step is fixed relative to the norm of x - mu; enc_norm: the encoder
    divides by the coded norm instead of the exact one."""
    xc = x if mu is None else x - mu
    r = np.maximum(np.sqrt((xc ** 2).sum(-1, keepdims=True)), 2.0 ** -23)
    rh, nbits = code_norm(r, norm)
    u = xc / (rh if enc_norm else r)
    y = fwht(u) if rotate else u
    g = sigma * math.sqrt(D)
    p = e8_box(y * g, np.inf)
    t = p / g
    xh = (fwht(t) if rotate else t) * rh
    if mu is not None:
        xh = xh + mu
    return p, xh, nbits


def run_lever(x, sigma, cfg):
    """One (bits per vector, rel-MSE, extra) point of a lever configuration.
    cfg keys: modes (subset of rot, chan, chanmu: the encoder picks one per
    chunk), vpl (vectors per rANS lane; chunk = 32 vpl), norm, enc_norm,
    grid (step in octaves, bits per level), mbits (mean mantissa bits)."""
    vpl = cfg.get("vpl", VEC_PER_LANE)
    chunk = LANES * vpl
    norm = cfg.get("norm", ("fp16",))
    if norm == "rule":
        norm = norm_rule(sigma)
    enc = cfg.get("enc_norm", False)
    step, lbits = cfg.get("grid", (0.5, 5))
    nc = len(x) // chunk
    cand = []  # per mode: (bits per chunk, SSE per chunk)
    for mode in cfg["modes"]:
        mu, side = None, 0.0
        if mode == "chanmu":
            mu, side = chunk_means(x, chunk, cfg.get("mbits", 6))
        p, xh, nbits = quantise_p2(x, sigma, mode == "rot", norm, enc, mu)
        if mode == "rot":
            bits = rot_model(sigma).code_bits(p).reshape(nc, chunk)
        else:
            cm = chan_model(sigma, step, lbits)
            p3 = p.reshape(nc, chunk, D)
            lev = cm.level(np.sqrt((p3 ** 2).mean(1)), step)
            # the level is chosen from the RMS of the points, which the
            # encoder has; the z it came from would do as well.
            bits = cm.code_bits(p3, lev)
            side += lbits * D
        sse = ((x - xh) ** 2).sum(-1).reshape(nc, chunk)
        cand.append((bits.sum(-1) + side + chunk * nbits, sse.sum(-1)))
    b = np.stack([c[0] for c in cand])
    e = np.stack([c[1] for c in cand])
    # Lagrangian choice: at high rate one bit per coordinate is 6.02 dB, so
    # a chunk's cost is bits + D*chunk/(2 ln 2) * ln(SSE); with equal errors
    # this is "the fewer bits".
    j = b + D * chunk / (2.0 * math.log(2.0)) * np.log(np.maximum(e, 1e-300))
    pick = j.argmin(0)
    flag = math.log2(len(cand)) if len(cand) > 1 else 0.0
    total = b[pick, np.arange(nc)].sum() + nc * (flag + vec_overhead(vpl) * chunk)
    sse = e[pick, np.arange(nc)].sum()
    return (float(total / len(x)), float(sse / (x ** 2).sum()),
            np.bincount(pick, minlength=len(cand)).tolist())


LEVERS = {
    "L0_today": {"modes": ["rot"]},
    "L1_chan_h4": {"modes": ["chan"], "grid": (0.5, 4)},
    "L1_chan_h5": {"modes": ["chan"], "grid": (0.5, 5)},
    "L1_chan_q5": {"modes": ["chan"], "grid": (0.25, 5)},
    "L1_chan_q6": {"modes": ["chan"], "grid": (0.25, 6)},
    "L1_choice": {"modes": ["rot", "chan"], "grid": (0.5, 5)},
    "L1_chanmu": {"modes": ["chanmu"], "grid": (0.5, 5)},
    "L1_choice_mu": {"modes": ["rot", "chanmu"], "grid": (0.5, 5)},
    "L1_choice3": {"modes": ["rot", "chan", "chanmu"], "grid": (0.5, 5)},
    "L1_chanmu4": {"modes": ["chanmu"], "grid": (0.5, 5), "mbits": 4},
    "L1_chanmu8": {"modes": ["chanmu"], "grid": (0.5, 5), "mbits": 8},
    "L2_vpl8": {"modes": ["rot"], "vpl": 8},
    "L3_fp_rule": {"modes": ["rot"], "norm": "rule"},
    "L3_log12": {"modes": ["rot"], "norm": ("log", 1.0 / 64, 12)},
    "L3_enc_log9": {"modes": ["rot"], "norm": ("log", 1.0 / 8, 9), "enc_norm": True},
    "L3_enc_log8": {"modes": ["rot"], "norm": ("log", 1.0 / 4, 8), "enc_norm": True},
    "L3_enc_log7": {"modes": ["rot"], "norm": ("log", 1.0 / 2, 7), "enc_norm": True},
    "L4_all": {"modes": ["rot", "chan", "chanmu"], "grid": (0.5, 5), "vpl": 8,
               "norm": ("log", 1.0 / 4, 8), "enc_norm": True},
}


def margins(pts, ref_pts, lo, hi):
    """dB by which a curve lies below a reference at the curve's own points
    in [lo, hi] bits, the reference interpolated log-linearly (as
    codec_quality's db_range_in): (min, max, count)."""
    d = []
    for b, m in pts:
        if lo <= b <= hi:
            mr = interp_mse(ref_pts, b)
            if mr is not None:
                d.append(10 * math.log10(mr / m))
    return (min(d), max(d), len(d)) if d else (None, None, 0)


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


def print_table(ds, summ, names):
    def rng(v):
        return "   n/a       " if v[0] is None else "%+5.2f..%+5.2f" % tuple(v)
    print("%-18s %-14s %-13s %-13s %-13s %-13s %s" % (
        ds, "lever", "vs P1 E8", "vs Hadamard", "vs TQ-style", "vs today", "today 2.6-4"))
    for n in names:
        s = summ[n]
        print("%-18s %-14s %s %s %s %s %s  (%.0f b at Q38 err)" % (
            "", n, rng(s["margin_vs_p1_e8"]), rng(s["margin_vs_hadamard"]),
            rng(s["margin_vs_turboquant"]), rng(s["db_vs_today"]), rng(s["db_vs_today_low"]),
            s["bits_at_p1_q38_error"] or float("nan")), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--json")
    ap.add_argument("--levers", help="comma-separated subset of LEVERS (default: all)")
    ap.add_argument("--datasets", help="comma-separated subset of the datasets")
    ap.add_argument("--data", metavar="DIR",
                    help="read the datasets (their first --n vectors) from codec_quality "
                    "--dump-data DIR instead of generating them with numpy")
    args = ap.parse_args()
    t0 = time.time()
    seed = 0x6B616B6579614C31
    man = load_manifest(args.data) if args.data else None
    # every file checked before the first (minutes-long) dataset is measured
    loaded = {ds: load(args.data, ds, args.n) for ds in DATASETS
              if args.data and (not args.datasets or ds in args.datasets.split(","))}

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
    if man is not None:
        out["data"] = {"source": "codec_quality --dump-data (the first vectors_per_dataset "
                       "vectors of each set)", "dir": args.data, "seed": man.get("seed"),
                       "vectors_in_files": man.get("vectors"), "command": man.get("command")}
    for di, ds in enumerate(DATASETS):
        if args.datasets and ds not in args.datasets.split(","):
            continue
        if args.data:
            x = loaded[ds]
        else:
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
        for name, cfg in LEVERS.items():
            if args.levers and name not in args.levers.split(","):
                continue
            res[name] = []
            for q in LEVER_QS:
                b, e, picks = run_lever(x, q / 4.0, cfg)
                # [bits per vector, rel-MSE, Q, chunks per mode]
                res[name].append([b, e, q, picks])
        # Summary: equal-error bits and equal-bits dB against profile 1 E8.
        p1 = [(b, m) for b, m, *_ in res["p1_e8"]]
        p1_ref = [(b, m) for b, m, q in res["p1_e8"] if q in C_P1_QS]
        had_ref = [(b, m) for b, m, nb in res["hadamard_int"] if nb in C_INT_BITS]
        tq_ref = [(b, m) for b, m, _ in res["turboquant"]]
        summ = {}
        levers = [k for k in LEVERS if k in res]
        for name in ["A_one_scale", "B_exact_count", "AB", "C_entropy_p1", "p2_e8",
                     "p2_e8_shapes", "p2_z",
                     "hadamard_int", "turboquant"] + levers:
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
            # Issue 14's targets as codec_quality reports them (its grids).
            for ref, rp in (("p1_e8", p1_ref), ("hadamard", had_ref), ("turboquant", tq_ref)):
                summ[name]["margin_vs_" + ref] = margins(pts, rp, *RANGE_BITS)[:2]
            if "L0_today" in res:
                today = [(b, m) for b, m, *_ in res["L0_today"]]
                summ[name]["db_vs_today"] = margins(pts, today, *RANGE_BITS)[:2]
                summ[name]["db_vs_today_low"] = margins(pts, today, *LOW_BITS)[:2]
        summ["p1_q38_error"] = dict((q, m) for _, m, q in res["p1_e8"])[38]
        res["summary"] = summ
        out["datasets"][ds] = res
        print(ds, json.dumps(summ, indent=1), flush=True)
        print_table(ds, summ, levers)
    out["seconds"] = time.time() - t0
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
