#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""plot_rd.py - rate-distortion figure of the codec quality report.

Reads the JSON that `codec_quality --json FILE` writes and draws one panel per
dataset: relative MSE (log scale) against bits per vector, the profile 1 E8
and D4 curves over Q, codec profile 2 when the run has it, the TurboQuant-style
baseline, the scalar baselines (absmax int-N, Hadamard int-N, fp8 e4m3) as
markers, and the Shannon bound 2^(-2 bits / D) as a black line. The top axis
gives the compression ratio against bf16.

On that scale the good methods lie on top of each other, so further panels
re-draw the standard-normal, keys and real-like keys data with the 6.02 dB per
bit per coordinate slope taken out: 10 log10(rel-MSE * 4^(bits / D)). The
Shannon bound is the 0 dB line there, every method that gains 1 bit per
coordinate per 4x less error is flat, and the vertical gaps are what each
method pays, in dB, at equal bits. The last panel is the attention check:
the mean relative error of softmax(q K^T / sqrt(D)) V with decoded K and V.

usage: /usr/bin/python3 bench/quality/plot_rd.py [JSON] [PNG]
defaults: the only bench/results/quality-*.json, docs/rd.png
"""
import glob
import json
import math
import sys

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

# family -> how it is drawn; lines for the lattice codec, markers for baselines.
STYLES = {
    "E8": dict(label="E8 (Q = 2 ... 152)", color="tab:blue", marker="o", ls="-", lw=2.0),
    "D4": dict(label="D4 (Q = 2 ... 152)", color="tab:orange", marker="s", ls="--", lw=1.6),
    "E8_q2k": dict(label="E8, Q = 2^k - 1", color="tab:blue", marker=".", ls=":", lw=1.0),
    "D4_q2k": dict(label="D4, Q = 2^k - 1", color="tab:orange", marker=".", ls=":", lw=1.0),
    "absmax": dict(label="absmax int-N (N = 4 ... 8)", color="0.35", marker="v", ls="none",
                   ms=8),
    "hadamard": dict(label="Hadamard int-N (N = 4 ... 8)", color="tab:green", marker="^",
                     ls="none", ms=8, mfc="none", mew=1.6),
    "fp8": dict(label="fp8 e4m3 + fp16 scale", color="tab:red", marker="*", ls="none", ms=13),
    "turboquant": dict(label="TurboQuant-style (Lloyd-Max, b = 1 ... 8)", color="tab:purple",
                       marker="D", ls="-.", lw=1.4, ms=6),
    "P2": dict(label="profile 2 (entropy-coded E8)", color="tab:red", marker="o", ls="-", lw=2.2,
               ms=4),
    "P2v2": dict(label="profile 2, container version 2", color="tab:red", marker=".", ls=":",
                 lw=1.0),
    "P2v4": dict(label="profile 2, container version 4 (channel mode)", color="darkred",
                 marker="s", ls="--", lw=1.6, ms=4),
}
BOUND = dict(label="Shannon bound 2^(-2R)", color="black", ls="-", lw=1.2)


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def series(results, family):
    pts = sorted((r["bits_per_vector"], r["rel_mse"], r["param"], r["method"])
                 for r in results if r["family"] == family)
    return pts


def ratio_axis(ax, bf16_bits):
    def fwd(b):
        return bf16_bits / np.maximum(b, 1e-9)

    top = ax.secondary_xaxis("top", functions=(fwd, fwd))
    top.set_xticks([12, 8, 6, 5, 4, 3, 2.5, 2])
    top.set_xlabel("compression ratio vs bf16", fontsize=8)
    top.tick_params(labelsize=7)


def draw_panel(ax, ds, dim, bf16_bits):
    res = ds["results"]
    for family, style in STYLES.items():
        pts = series(res, family)
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], **style)
        if family == "E8":
            for bits, mse, q, _ in pts:
                ax.annotate(f"Q={q}", (bits, mse), textcoords="offset points", xytext=(-4, -11),
                            ha="right", fontsize=7, color="tab:blue")
        elif family in ("absmax", "hadamard"):
            for bits, mse, n, _ in pts:
                ax.annotate(f"int{n}", (bits, mse), textcoords="offset points", xytext=(6, 2),
                            fontsize=7, color=style["color"])
    lo, hi = ax.get_xlim()
    xs = np.linspace(max(lo, 1.0), hi, 200)
    ax.plot(xs, 2.0 ** (-2.0 * xs / dim), **BOUND)
    ax.set_xlim(lo, hi)
    ax.set_yscale("log")
    ax.set_title(ds["title"], fontsize=10)
    ax.set_xlabel("bits per vector (D = 128)")
    ax.set_ylabel("relative MSE")
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", axis="y", alpha=0.15)
    ratio_axis(ax, bf16_bits)


def draw_excess(ax, ds, dim, bf16_bits):
    """rel-MSE with the ideal 6.02 dB/bit/coordinate slope removed, in dB.

    The axis is sized for the lattice curves and the rotated baseline; points
    far above them (absmax on outliers, fp8) sit on the top edge, labelled
    with their value, so that the 1 dB differences stay visible."""
    curves = {}
    for family in STYLES:
        pts = [p for p in series(ds["results"], family) if p[0] < bf16_bits]
        curves[family] = [(bits, 10 * math.log10(mse * 4 ** (bits / dim)))
                          for bits, mse, _, _ in pts]
    near = [y for fam in ("E8", "D4", "E8_q2k", "D4_q2k", "hadamard", "turboquant", "P2")
            for _, y in curves[fam]]
    ylo, yhi = min(near + [0.0]) - 0.5, max(near) + 1.0
    ax.axhline(0.0, **BOUND)
    stacked = {}  # bits -> labels already placed there, to stack them
    for family, style in STYLES.items():
        pts = curves[family]
        inside = [(b, y) for b, y in pts if y <= yhi]
        if inside:
            ax.plot([b for b, _ in inside], [y for _, y in inside], **style)
        for b, y in pts:
            if y > yhi:
                ax.plot([b], [yhi - 0.25], **{k: v for k, v in style.items() if k != "label"})
                k = stacked.get(b, 0)
                stacked[b] = k + 1
                ax.annotate(f"{y:.1f} dB", (b, yhi - 0.25), textcoords="offset points",
                            xytext=(0, -14 - 10 * k), ha="center", fontsize=7,
                            color=style["color"])
    ax.set_ylim(ylo, yhi)
    ax.set_title(f"{ds['title']}: excess distortion", fontsize=10)
    ax.set_xlabel("bits per vector (D = 128)")
    ax.set_ylabel("10 log10(rel-MSE x 4^(bits/D))  [dB]\nlower is better", fontsize=8)
    ax.grid(True, alpha=0.4)
    ratio_axis(ax, bf16_bits)


def draw_attention(ax, att, bf16_bits):
    """Mean attention-output error against bits per key, one series per family."""
    res = att["results"]
    for family, style in STYLES.items():
        pts = sorted((r["bits_per_key"], r["mean_rel_error"]) for r in res
                     if r["family"] == family)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], **style)
    floor = [r["mean_rel_error"] for r in res if r["family"] == "bf16"]
    if floor:
        ax.axhline(floor[0], color="0.5", ls=":", lw=1.0)
        ax.annotate("bf16", (ax.get_xlim()[0], floor[0]), textcoords="offset points",
                    xytext=(4, 3), fontsize=7, color="0.4")
    ax.set_yscale("log")
    ax.set_title(f"attention check: {att['queries']} queries, {att['heads']} heads x "
                 f"{att['tokens_per_head']} tokens (real-like K, V)", fontsize=10)
    ax.set_xlabel("bits per vector (D = 128), K and V alike")
    ax.set_ylabel("mean ||o^ - o|| / ||o||")
    ax.grid(True, which="major", alpha=0.4)
    ratio_axis(ax, bf16_bits)


def main(argv):
    if len(argv) > 1:
        src = argv[1]
    else:
        found = sorted(glob.glob("bench/results/quality-*.json"))
        if len(found) != 1:
            sys.exit(f"plot_rd.py: give the JSON path (found {len(found)} quality-*.json)")
        src = found[0]
    dst = argv[2] if len(argv) > 2 else "docs/rd.png"
    data = load(src)
    dss = data["datasets"]
    excess = [ds for ds in dss if ds["name"] in ("normal", "keys", "rope_keys")]
    att = data.get("attention")
    cols = 2
    rows = (len(dss) + cols - 1) // cols
    tail = len(excess) + (1 if att else 0)
    extra = (tail + cols - 1) // cols
    fig, axes = plt.subplots(rows + extra, cols, figsize=(12, 5.0 * (rows + extra)),
                             squeeze=False)
    for ax, ds in zip(axes.flat, dss):
        draw_panel(ax, ds, data["dim"], data["bf16_bits"])
    for ax, ds in zip(list(axes.flat)[rows * cols:], excess):
        draw_excess(ax, ds, data["dim"], data["bf16_bits"])
    if att:
        draw_attention(list(axes.flat)[rows * cols + len(excess)], att, data["bf16_bits"])
    for i, ax in enumerate(axes.flat):
        if (i < rows * cols and i >= len(dss)) or i >= rows * cols + tail:
            ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=9, frameon=False)
    fig.suptitle(f"latticekv codec: rate versus distortion, {data['vectors']} vectors per "
                 f"dataset, D = {data['dim']} (bench/quality/codec_quality, seed "
                 f"{data['seed']})", fontsize=11)
    fig.tight_layout(rect=(0, 0.03, 1, 0.985))
    fig.savefig(dst, dpi=110)
    print(f"plot_rd.py: wrote {dst} from {src}")


if __name__ == "__main__":
    main(sys.argv)
