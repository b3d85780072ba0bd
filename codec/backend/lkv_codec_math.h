/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_codec_math.h - constants and index arithmetic of the codec, written once
 * for both the C compiler and nvcc.
 *
 * Design note: every piece of arithmetic whose result must agree bit for bit
 * between the CPU paths and the CUDA kernels and that is not a plain fp32
 * operation lives here as an inline function: the fp16 scale conversions, the
 * 1/sqrt(D) constants, the bit budget and the codebook sizes. The CPU paths
 * and the kernels include this file instead of restating the rules.
 * Nothing here allocates or touches memory outside its arguments.
 */
#ifndef LKV_CODEC_MATH_H
#define LKV_CODEC_MATH_H

#include <stdint.h>

#if defined(__CUDACC__)
#define LKV_HD __host__ __device__ __forceinline__
#else
#define LKV_HD static inline
#endif

typedef unsigned __int128 lkv_u128;

/* eps = 2^-23: the floor of both the norm r and the max-abs m. */
#define LKV_EPS 1.1920928955078125e-07f
/* The bits of fp16(eps) (a subnormal): every valid record has r16, m16 >= it. */
#define LKV_F16_EPS_BITS 0x0002u
#define LKV_F16_INF_BITS 0x7c00u

/* fp32(1/sqrt(D)) correctly rounded, for D = 2^log2d, log2d = 0..10. */
LKV_HD float lkv_inv_sqrt_dim(uint32_t log2d)
{
    switch (log2d) {
    case 0: return 1.0f;
    case 1: return 0.70710678118654752440f;
    case 2: return 0.5f;
    case 3: return 0.35355339059327376220f;
    case 4: return 0.25f;
    case 5: return 0.17677669529663688110f;
    case 6: return 0.125f;
    case 7: return 0.088388347648318440550f;
    case 8: return 0.0625f;
    case 9: return 0.044194173824159220275f;
    default: return 0.03125f;
    }
}

/* fp32 -> fp16 bits, round to nearest even, overflow to +-inf. */
LKV_HD uint16_t lkv_math_f32_to_f16(uint32_t x)
{
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or NaN (NaN keeps a quiet payload bit) */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
    if (ax >= 0x477ff000u) /* >= 65520 rounds to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (ax >= 0x38800000u) { /* normal fp16 */
        uint32_t h = (ax >> 13) - (112u << 10);
        const uint32_t rem = ax & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
            h++;
        return (uint16_t)(sign | h);
    }
    if (ax <= 0x33000000u) /* <= 2^-25: rounds to zero (the tie goes to even 0) */
        return (uint16_t)sign;
    /* subnormal fp16: h = round(value / 2^-24) */
    const uint32_t e = ax >> 23;
    const uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e; /* 14..24 */
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (h & 1u)))
        h++;
    return (uint16_t)(sign | h);
}

/* fp16 bits -> fp32 bits (exact). */
LKV_HD uint32_t lkv_math_f16_to_f32(uint16_t h)
{
    const uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    const uint32_t e = ((uint32_t)h >> 10) & 0x1fu;
    uint32_t m = (uint32_t)h & 0x3ffu;
    if (e == 0x1fu)
        return sign | 0x7f800000u | (m << 13);
    if (e != 0)
        return sign | ((e + 112u) << 23) | (m << 13);
    if (m == 0)
        return sign;
    /* subnormal: normalise */
    uint32_t ee = 113u;
    while (!(m & 0x400u)) {
        m <<= 1;
        ee--;
    }
    return sign | (ee << 23) | ((m & 0x3ffu) << 13);
}

/*
 * Profile 2's norm code (container version 3): one byte k stands for
 *   r^(k) = T[k & 3] * 2^((k >> 2) - 32),  T = fp32(2^(i/4)), i = 0..3,
 * so r^ spans 2^-32 .. 2^31.75 in quarter octaves. The encoder codes the
 * smallest k with r^(k) >= r and divides the vector by r^(k), so its norm
 * lies in (2^-1/4, 1] and the rounding moves the vector along the rate-
 * distortion curve instead of adding error. Both directions are integer
 * operations on the fp32 bits: r = m * 2^E with m in [1, 2), and m > T[i]
 * exactly when m's mantissa bits exceed T[i]'s.
 */
#define LKV_P2_NORM_T1 0x1837f0u /* mantissa bits of fp32(2^0.25) */
#define LKV_P2_NORM_T2 0x3504f3u /* fp32(2^0.5)                   */
#define LKV_P2_NORM_T3 0x5744fdu /* fp32(2^0.75)                  */

/* k for a finite r >= 2^-32 given as fp32 bits; above 255 when r exceeds
 * r^(255) = fp32(2^0.75) * 2^31 (the code overflows). */
LKV_HD uint32_t lkv_p2_norm_code(uint32_t rbits)
{
    const uint32_t mb = rbits & 0x7fffffu;
    const uint32_t up = (uint32_t)(mb > 0u) + (uint32_t)(mb > LKV_P2_NORM_T1) +
                        (uint32_t)(mb > LKV_P2_NORM_T2) + (uint32_t)(mb > LKV_P2_NORM_T3);
    return 4u * ((rbits >> 23) - 95u) + up;
}

/* The fp32 bits of r^(k), k in 0..255 (every k is a valid code). */
LKV_HD uint32_t lkv_p2_norm_bits(uint32_t k)
{
    const uint32_t t = (k & 3u) == 0u   ? 0u
                       : (k & 3u) == 1u ? LKV_P2_NORM_T1
                       : (k & 3u) == 2u ? LKV_P2_NORM_T2
                                        : LKV_P2_NORM_T3;
    return (((k >> 2) + 95u) << 23) | t;
}

/*
 * Profile 2's channel mode (container version 4, codec/FORMAT.md).
 *
 * The fp32 bits of sqrt(D), D = 2^log2d, log2d = 0..10, correctly rounded:
 * a power of two, or fp32(sqrt 2) = 0x3fb504f3 times one. The channel
 * mode's scale is then c = fp32(fp32(Q * 0.25) * sqrt(D)).
 */
LKV_HD uint32_t lkv_p2_sqrt_dim_bits(uint32_t log2d)
{
    return (log2d & 1u) ? 0x3fb504f3u + ((log2d >> 1) << 23) : (127u + (log2d >> 1)) << 23;
}

/*
 * A channel's level from S, the sum over the chunk's cnt vectors of its
 * squared points p2 = 2p (exact integers), and e = (double)(cnt * Q^2 * D)
 * (exact: below 2^53). Level l stands for a Gaussian of standard deviation
 * s(l) = (Q / 4) sqrt(D) 2^(-l/2), so S / cnt would be Q^2 D 2^-l / 4; the
 * level is the number of the 31 thresholds e 2^(-l-2) 2^(-1/2), l = 0..30,
 * that lie above S: the nearest level in log scale, 0 for everything at or
 * above level 0's, 31 below level 30's. Each threshold is one fp64 product
 * of an exact value and the constant fp64(2^-1/2), so every machine gets
 * the same levels.
 */
#define LKV_P2_LEVELS 32u
LKV_HD uint32_t lkv_p2_level(uint64_t s, double e)
{
    const double sd = (double)s; /* exact: s < 2^53 */
    double t = e * 0.25;         /* exact: a power of two */
    uint32_t l = 0;
    for (uint32_t i = 0; i + 1u < LKV_P2_LEVELS; i++) {
        l += (uint32_t)(sd < t * 0.70710678118654757274);
        t = t * 0.5;
    }
    return l;
}

/* lkv_p2_level for the many sums of one e (a chunk's channels) without its
 * chain of dependent products per sum: lkv_p2_level_thresholds puts its 31
 * thresholds, the same fp64 values in the same order, into thr, and
 * lkv_p2_level_at counts those above s. Each threshold is half the one
 * before (t halves exactly, and scaling by 2 commutes with the rounding of
 * t * 2^-1/2: no value comes near the subnormals), so those above s are a
 * prefix of thr, whose length five halving steps find: a fifth of the
 * instructions of counting all 31 (3 % of the channel encode on the CPU). */
LKV_HD void lkv_p2_level_thresholds(double e, double *thr)
{
    double t = e * 0.25;
    for (uint32_t i = 0; i + 1u < LKV_P2_LEVELS; i++) {
        thr[i] = t * 0.70710678118654757274;
        t = t * 0.5;
    }
}

LKV_HD uint32_t lkv_p2_level_at(uint64_t s, const double *thr)
{
    const double sd = (double)s;
    uint32_t l = 0; /* thr[0 .. l) lie above s */
    for (uint32_t step = (LKV_P2_LEVELS / 2u); step > 0u; step /= 2u)
        l += l + step < LKV_P2_LEVELS && sd < thr[l + step - 1u] ? step : 0u;
    return l;
}

/*
 * The frequency (of 2^15) of a channel-mode block's half-integer coset from
 * its 8 coordinates' one-dimensional Gaussian sums over the box's integer
 * (a[i]) and half-integer (b[i]) points: Z0 = prod a, Z1 = prod b in index
 * order, f1 = floor(Z1 / (Z0 + Z1) * 2^15 + 1/2) clamped to 1 .. 2^15 - 1.
 * a[i] >= 1 (the point 0), so the division is defined.
 */
LKV_HD uint32_t lkv_p2_coset_f1(const double *a, const double *b)
{
    double za = a[0], zb = b[0];
    for (int i = 1; i < 8; i++) {
        za = za * a[i];
        zb = zb * b[i];
    }
    const double f = (zb / (za + zb)) * 32768.0 + 0.5;
    uint32_t fi = f >= 1.0 ? (uint32_t)f : 1u;
    return fi > 32767u ? 32767u : fi;
}

/*
 * Version 4's estimate of a symbol's size, in 1/16 bit, for a frequency f
 * (1 .. 2^15, of 2^15) and b raw bits: 16 (15 + b) minus 16 log2 f taken
 * piecewise linear between powers of two (16 e plus the 4 bits after f's
 * leading one, e = floor(log2 f)). Integers only, so every coder sums the
 * same estimates.
 */
LKV_HD uint32_t lkv_p2_est_cost(uint32_t f, uint32_t b)
{
    uint32_t e = 0;
    while ((f >> (e + 1u)) != 0u)
        e++;
    const uint32_t frac = ((f << 4) >> e) & 15u;
    return 16u * (15u + b) - (16u * e + frac);
}

/* fp32 -> bf16 bits, round to nearest even; NaN stays a quiet NaN. */
LKV_HD uint16_t lkv_math_f32_to_bf16(uint32_t x)
{
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* Bit length of a 128-bit value (0 for 0). */
LKV_HD uint32_t lkv_bitlength128(lkv_u128 v)
{
    uint32_t n = 0;
    while (v) {
        v >>= 1;
        n++;
    }
    return n;
}

/* B^e for B = 2Q + 1 (exact; B^8 < 2^88 for Q <= 1023). */
LKV_HD lkv_u128 lkv_pow_u128(uint64_t b, uint32_t e)
{
    lkv_u128 r = 1;
    for (uint32_t i = 0; i < e; i++)
        r *= b;
    return r;
}

/* Bits per block index: k8 = bitlength(B^8), k4 = bitlength(B^4 - 1) - 1. */
LKV_HD uint32_t lkv_math_block_bits(uint32_t n, uint32_t q)
{
    const uint64_t b = 2u * (uint64_t)q + 1u;
    return n == 8 ? lkv_bitlength128(lkv_pow_u128(b, 8))
                  : lkv_bitlength128(lkv_pow_u128(b, 4) - 1u) - 1u;
}

/* Number of E8 codebook points whose index lies in the integer coset:
 * M_a = (B^8 + 1) / 2. Half-integer indices start there. */
LKV_HD lkv_u128 lkv_math_e8_int_count(uint32_t q)
{
    return (lkv_pow_u128(2u * (uint64_t)q + 1u, 8) + 1u) / 2u;
}

/* Total codebook size: D4 (B^4+1)/2; E8 M_a + (2Q)^8 / 2. */
LKV_HD lkv_u128 lkv_math_codebook_size(uint32_t n, uint32_t q)
{
    const uint64_t b = 2u * (uint64_t)q + 1u;
    if (n == 4)
        return (lkv_pow_u128(b, 4) + 1u) / 2u;
    return lkv_math_e8_int_count(q) + lkv_pow_u128(2u * (uint64_t)q, 8) / 2u;
}

/*
 * Pieces of a head_dim (codec/FORMAT.md, "Head dims that are not a power of
 * two"): D is cut into its binary expansion, largest piece first, and each
 * piece is coded as a vector of its own. A power of two is one piece.
 *   lkv_piece_count: the number of pieces (set bits of D);
 *   lkv_piece_dim: the length of piece j (the j-th highest set bit);
 *   lkv_piece_offset: its first element (the sum of the larger pieces).
 */
#define LKV_PIECES_MAX 10u

LKV_HD uint32_t lkv_piece_count(uint32_t dim)
{
    uint32_t c = 0;
    for (; dim; dim &= dim - 1u)
        c++;
    return c;
}

LKV_HD uint32_t lkv_piece_dim(uint32_t dim, uint32_t j)
{
    for (uint32_t bit = 1u << 31; bit; bit >>= 1)
        if ((dim & bit) && j-- == 0)
            return bit;
    return 0;
}

LKV_HD uint32_t lkv_piece_offset(uint32_t dim, uint32_t j)
{
    return dim & ~(2u * lkv_piece_dim(dim, j) - 1u);
}

#endif /* LKV_CODEC_MATH_H */
