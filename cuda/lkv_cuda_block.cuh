/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_cuda_block.cuh - the per-block pieces of the CUDA codec: closest point
 * in the box (D4, E8), block index <-> point, bit-field I/O on 32-bit words.
 *
 * Design note: everything here is __host__ __device__ and works on one
 * block of n = 4 or 8 coordinates held in registers (arrays indexed only by
 * unrolled loop counters, so they never spill to local memory). Being host
 * code as well lets tests/gpu/gpu_block_test run these exact functions on a
 * machine without a GPU against codec/ref.c, the oracle; the warp-level
 * kernels in lkv_cuda_kernels.cu only add loads, the norm, the butterfly and
 * the stores around them.
 *
 * Exactness: the float operations mirror codec/ref.c one for one (same
 * operands, same order, IEEE round-to-nearest, no contraction: device code
 * uses the explicit __fadd_rn/__fmul_rn intrinsics, host code is compiled
 * with -ffp-contract=off). Where a rewrite is used it is exact, and the
 * comment next to it says why.
 *
 * Index arithmetic has two forms:
 *   - narrow (Q <= 112): B^4 and (2Q)^4 fit 32 bits and B^8 fits 64, so the
 *     mixed-radix digits use 32-bit multiplies and divisions by invariant
 *     integers through exact multiplicative inverses (no correction step;
 *     from Q = 113 on some of them are not exact);
 *   - wide (Q >= 113, E8 indices up to 88 bits from Q = 128): 128-bit
 *     Horner on encode, and long division over 32-bit limbs on decode.
 */
#ifndef LKV_CUDA_BLOCK_CUH
#define LKV_CUDA_BLOCK_CUH

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "lkv_codec_math.h"

#if defined(__CUDACC__)
#define LKV_CD __host__ __device__ __forceinline__
#else
#define LKV_CD static inline
#endif

#if defined(__CUDA_ARCH__)
#define LKV_FADD(a, b) __fadd_rn((a), (b))
#define LKV_FSUB(a, b) __fsub_rn((a), (b))
#define LKV_FMUL(a, b) __fmul_rn((a), (b))
#define LKV_FDIV(a, b) __fdiv_rn((a), (b))
#else
#define LKV_FADD(a, b) ((a) + (b))
#define LKV_FSUB(a, b) ((a) - (b))
#define LKV_FMUL(a, b) ((a) * (b))
#define LKV_FDIV(a, b) ((a) / (b))
#endif

/* Constants of one parameter set, computed once on the host
 * (lkv_cuda_plan_init) and passed to the kernels by value. */
typedef struct lkv_cuda_plan {
    uint32_t n;         /* block size, 4 or 8                              */
    uint32_t q;         /* Q                                               */
    uint32_t dim;       /* D                                               */
    uint32_t k;         /* bits per block index                            */
    uint32_t bits;      /* bits per record (before byte padding)           */
    uint32_t rec_bytes; /* bytes per record                                */
    uint32_t wide;      /* 1 when Q >= 113 (128-bit index arithmetic)      */
    float qf;           /* (float)Q                                        */
    float e8_margin;    /* lkv_e8_margin(qf)                               */
    float rq;           /* lkv_recip_of(qf): s = m16 / Q by lkv_div_by     */
    float inv_sqrt_d;   /* fp32(1/sqrt(D))                                 */
    /* Index arithmetic. B = 2Q + 1, C = 2Q (E8 half-integer coset).
     * Narrow form (wide == 0, Q <= 112: see lkv_cuda_plan_init): B^4 and
     * C^4 fit 32 bits, and decode divides by B, C (n < base^4) and by
     * B^4, C^4 (n < base^8) through exact multiplicative inverses: q =
     * floor(n / d) = mulhi(n, m) >> s, exact because lkv_cuda_plan_init
     * checks (m d - 2^(w+s)) n_max < 2^(w+s) (w the word size), which keeps
     * n m / 2^(w+s) short of the next integer. Both cosets share the shift.
     * Wide form: minv_* = floor((2^bits - 1) / d), the reciprocals of
     * lkv_udiv32/lkv_udiv64, and base^2 for the long division. */
    uint32_t b, c, b3, c3, b4, c4, b2, c2;
    uint32_t mg_b, mg_c, mg_s; /* n / B, n / C = mulhi(n, mg_*) >> mg_s    */
    uint64_t mg_b4, mg_c4;     /* v / B^4, v / C^4 = mulhi(v, .) >> mg_s4 */
    uint32_t mg_s4;
    uint32_t nb, nc, nb4, nc4; /* 0 - B, 0 - C, 0 - B^4, 0 - C^4 (mod 2^32) */
    uint32_t minv_b32, minv_c32;
    uint64_t minv_b64, minv_c64, minv_q64, minv_b2_64, minv_c2_64;
    /* E8: first half-coset index M_a, and the codebook size (narrow) */
    uint64_t ma64, cb64;
    /* the same as 128-bit values in two 64-bit halves (wide) */
    uint64_t ma_lo, ma_hi, cb_lo, cb_hi;
} lkv_cuda_plan;

#if defined(__cplusplus)
struct lkv_params;
/* Fills P for a checked parameter set (host only; lkv_cuda_kernels.cu). */
void lkv_cuda_plan_init(const struct lkv_params *p, lkv_cuda_plan *P);
#endif

/* ------------------------------------------------------------------------ */
/* Integer helpers                                                           */

LKV_CD uint64_t lkv_umulhi64(uint64_t a, uint64_t b)
{
#if defined(__CUDA_ARCH__)
    return __umul64hi(a, b);
#else
    return (uint64_t)(((lkv_u128)a * b) >> 64);
#endif
}

LKV_CD uint32_t lkv_umulhi32(uint32_t a, uint32_t b)
{
#if defined(__CUDA_ARCH__)
    return __umulhi(a, b);
#else
    return (uint32_t)(((uint64_t)a * b) >> 32);
#endif
}

/* n / d and n % d for an invariant d >= 1 with minv = floor((2^64-1)/d).
 * q0 = floor(n * minv / 2^64) lies in {q - 1, q}: minv * d >= 2^64 - d
 * gives n * minv / 2^64 > n / d - 1, and minv * d < 2^64 gives < n / d.
 * One correction step makes it exact. */
LKV_CD uint64_t lkv_udiv64(uint64_t n, uint64_t d, uint64_t minv, uint64_t *rem)
{
    uint64_t qt = lkv_umulhi64(n, minv);
    uint64_t r = n - qt * d;
    if (r >= d) {
        qt++;
        r -= d;
    }
    *rem = r;
    return qt;
}

/* The same for 32-bit n and d, minv = floor((2^32-1)/d). */
LKV_CD uint32_t lkv_udiv32(uint32_t n, uint32_t d, uint32_t minv, uint32_t *rem)
{
    uint32_t qt = lkv_umulhi32(n, minv);
    uint32_t r = n - qt * d;
    if (r >= d) {
        qt++;
        r -= d;
    }
    *rem = r;
    return qt;
}

/* n / d and n % d through an exact multiplicative inverse (see the plan),
 * given nd = 0 - d (mod 2^32), so that the remainder n + q nd is a single
 * multiply-add: three instructions, no correction step. */
LKV_CD uint32_t lkv_mdiv32(uint32_t n, uint32_t nd, uint32_t m, uint32_t sh, uint32_t *rem)
{
    const uint32_t q = lkv_umulhi32(n, m) >> sh;
    *rem = n + q * nd;
    return q;
}

/* c ? a : b for values held in registers. Device code spells it as a PTX
 * selp: a plain ?: between two kernel parameters may be compiled into a
 * constant-bank load at a lane-dependent address, which serialises. */
LKV_CD uint32_t lkv_sel32(bool c, uint32_t a, uint32_t b)
{
#if defined(__CUDA_ARCH__)
    uint32_t r;
    asm("{ .reg .pred p; setp.ne.u32 p, %3, 0; selp.b32 %0, %1, %2, p; }"
        : "=r"(r)
        : "r"(a), "r"(b), "r"((uint32_t)c));
    return r;
#else
    return c ? a : b;
#endif
}

LKV_CD uint64_t lkv_sel64(bool c, uint64_t a, uint64_t b)
{
#if defined(__CUDA_ARCH__)
    uint64_t r;
    asm("{ .reg .pred p; setp.ne.u32 p, %3, 0; selp.b64 %0, %1, %2, p; }"
        : "=l"(r)
        : "l"(a), "l"(b), "r"((uint32_t)c));
    return r;
#else
    return c ? a : b;
#endif
}

/* ------------------------------------------------------------------------ */
/* Division by a per-vector invariant                                        */

/*
 * a / b correctly rounded, for b > 0 normal and used for many a, in three
 * instructions instead of the ~10 of a full-range division: with
 * y = RN(1/b) computed once,
 *   q0 = RN(a y),  r = RN(a - b q0),  q = RN(q0 + r y).
 * This is one Markstein correction of the naive quotient. The textbook
 * bound only places q0 within 1.5 ulp of a/b, which is not enough for
 * Markstein's theorem, so the claim rests on an exhaustive check instead:
 * tests/gpu/div_exhaustive compares q with IEEE division for every pair
 * of binary32 significands (a, b in [1, 2): 2^46 pairs) and found none
 * that differ (H200, 2026-11-28, 52 s; a second run agreed). The sequence
 * commutes with scaling a and b by powers of two as long as y, q0 and q
 * are normal and r is rounded the same way: a - b q0 is a multiple of
 * ulp(q0) ulp(b), about 2^-47 |a|, which lies on the subnormal grid for
 * |a| >= 2^-100, so r is exact whenever it is subnormal, and when it is
 * inexact (possible for a < b, q0 being up to 1.5 ulp off) it is normal,
 * where rounding commutes with scaling. Hence valid for |a| >= 2^-100 with
 * 2^-34 <= b < 2^17 and |a / b| far below overflow (the codec's r and s,
 * quotients of at most ~Q); the encode kernel sends a
 * vector through LKV_FDIV instead when one of its elements is below 2^-50
 * (encode_kernel says why that bound suffices). The host test also checks
 * every significand of a for hard divisors at several scales
 * (tests/gpu/gpu_block_test). An earlier form carried 1/b as hi + lo and
 * took four instructions; this one made the E8 encode 5 % faster.
 */
#if defined(__CUDA_ARCH__)
#define LKV_FMA(a, b, c) __fmaf_rn((a), (b), (c))
#else
#define LKV_FMA(a, b, c) fmaf((a), (b), (c))
#endif

LKV_CD float lkv_recip_of(float b)
{
    return LKV_FDIV(1.0f, b);
}

LKV_CD float lkv_div_by(float a, float b, float y)
{
    const float q0 = LKV_FMUL(a, y);
    return LKV_FMA(LKV_FMA(-q0, b, a), y, q0);
}

/* ------------------------------------------------------------------------ */
/* Closest point (docs/codec.md section 3, codec/ref.c dn_box and e8_box)    */

/*
 * D_N in [lo, hi]^N. y finite; f receives the point's integer coordinates
 * as floats. Mirrors ref.c dn_box with two exact rewrites:
 *   - the parity is taken from the float sum of the coordinates (integers
 *     of magnitude <= 8 * 1024, so every partial sum is exact);
 *   - "the toward move f_i + dir stays in [lo, hi]" equals lo <= y_i < hi:
 *     with d >= 0 the move is up and is blocked exactly when f_i = hi, i.e.
 *     y_i >= hi; with d < 0 it is down and blocked exactly when f_i = lo,
 *     i.e. y_i < lo (the boxes are at least one wide).
 * The clamp is fminf(fmaxf(.)); it can differ from ref's ternary only in
 * the sign of a zero, which changes neither d >= 0, |d|, the parity, the
 * distances nor the integer value.
 */
template <int N> LKV_CD void lkv_dn_box(const float *y, float lo, float hi, float *f)
{
    float d[N];
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < N; i++) {
        const float r = fminf(fmaxf(rintf(y[i]), lo), hi);
        f[i] = r;
        d[i] = LKV_FSUB(y[i], r);
        sum = LKV_FADD(sum, r);
    }
    /* Branch-free in the common case: the lanes of a warp rarely agree on
     * the parity, so the search runs anyway; an even sum moves nothing. */
    const bool odd = (((int)sum) & 1) != 0;
    /* bd: d of the best allowed move so far; NaN until there is one, so
     * that !(|d| <= |bd|) accepts the first allowed coordinate whatever its
     * |d| and afterwards means the strict |d| > |bd| (lowest index wins
     * ties). One compare and two selects per coordinate. */
    float bd = NAN;
    int bi = -1;
#pragma unroll
    for (int i = 0; i < N; i++) {
        if (y[i] >= lo && y[i] < hi && !(fabsf(d[i]) <= fabsf(bd))) {
            bi = i;
            bd = d[i];
        }
    }
    float dir;
    if (bi >= 0 || !odd) {
        dir = !odd ? 0.0f : bd >= 0.0f ? 1.0f : -1.0f;
    } else {
        /* No toward move stays in the box: move away on the smallest |d|. */
        float small = INFINITY;
#pragma unroll
        for (int i = 0; i < N; i++) {
            if (fabsf(d[i]) < small) {
                small = fabsf(d[i]);
                bi = i;
                bd = d[i];
            }
        }
        dir = bd >= 0.0f ? -1.0f : 1.0f;
    }
#pragma unroll
    for (int i = 0; i < N; i++)
        f[i] = i == bi ? LKV_FADD(f[i], dir) : f[i];
}

/*
 * E8 in [-Q, Q]^8 (ref.c e8_box). Returns 0 for the integer coset (p = a)
 * or 1 for the half-integer one (p = b + 1/2). w receives the index digits:
 * a_i + Q or b_i + Q, as integers.
 */
LKV_CD int lkv_e8_box(const float *y, float qf, uint32_t *w)
{
    float a[8], b[8], ym[8];
    lkv_dn_box<8>(y, -qf, qf, a);
#pragma unroll
    for (int i = 0; i < 8; i++)
        ym[i] = LKV_FSUB(y[i], 0.5f);
    lkv_dn_box<8>(ym, -qf, LKV_FSUB(qf, 1.0f), b);
    float da = 0.0f, db = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const float ea = LKV_FSUB(y[i], a[i]);
        const float eb = LKV_FSUB(y[i], LKV_FADD(b[i], 0.5f));
        da = LKV_FADD(da, LKV_FMUL(ea, ea));
        db = LKV_FADD(db, LKV_FMUL(eb, eb));
    }
    const int half = !(da <= db);
#pragma unroll
    for (int i = 0; i < 8; i++)
        w[i] = (uint32_t)(int32_t)(half ? b[i] : a[i]) + (uint32_t)(int32_t)qf;
    return half;
}

/* D4 in [-Q, Q]^4; w receives p_i + Q. */
LKV_CD void lkv_d4_box(const float *y, float qf, uint32_t *w)
{
    float a[4];
    lkv_dn_box<4>(y, -qf, qf, a);
#pragma unroll
    for (int i = 0; i < 4; i++)
        w[i] = (uint32_t)(int32_t)a[i] + (uint32_t)(int32_t)qf;
}

/*
 * The fast closest point: the same results as lkv_e8_box/lkv_d4_box (which
 * stay the exact fallback and the host test's second opinion) in about half
 * the instructions. Why it is exact:
 *
 * Keys. With yc = clamp(y, lo, hi) and f = rint(yc) (= clamp(rint(y)), the
 * bounds being integers), k = yc - f is exact. A coordinate whose toward
 * move is allowed (lo <= y < hi) is unclamped, so k = d = y - f there; a
 * disallowed one sits on a bound after the clamp, so k = 0. Hence when
 * m = max |k| > 0, the first i with |k_i| == m is the allowed coordinate of
 * largest |d|, lowest index on ties -- dn_box's choice -- and its direction
 * is the sign of k. When the parity is odd and m == 0 (every coordinate on
 * an integer or on a bound: one-hot and lattice-point inputs), dn_box's
 * other rules apply, and the fallback runs.
 *
 * E8 coset choice. With a the integer candidate before its parity fix and
 * b the half-integer one, b_i - a_i = +-1/2 for every i (both are nearest
 * points of their grids to the same y, clamped to boxes whose faces are
 * 1/2 apart), so exactly (in the reals)
 *   |y - a|^2 - |y - b|^2 = sum_i (sigma_i e_i - 1/4),  sigma_i = 2 (b_i - a_i),
 * with e = y - a; sigma_i e_i = |k_i| for unclamped i and -|e_i| =
 * -(|y_i| - |yc_i|) for clamped ones. Each parity fix adds 1 - 2 m to its
 * candidate's distance. The estimate of da - db so formed differs from the
 * exact difference by float rounding (~1e-5) and by the rounding of
 * y - 1/2 (below 2^-13 for |y| < 1024), and the reference's own float sums
 * da, db are within ~1e-5 of theirs. So when |estimate| exceeds the
 * margin of lkv_e8_margin, twice those bounds and more, the sign of the
 * estimate is the reference's choice; otherwise (a few blocks in 10^4)
 * the fallback decides. Coordinates clamped by more than one unit in
 * total (only when m16 is subnormal) also take the fallback, which keeps
 * the magnitudes within those bounds. The host test compares this
 * function with lkv_e8_box on millions of blocks, near-ties included.
 */

/* 2^-13 for the float rounding of both distances and of the estimate
 * (~1e-5 together), plus twice the bound on the rounding of y - 1/2 for
 * |y| <= Q + 2 (ulp/2 <= (Q + 2) 2^-23 per term, entering twice). */
LKV_CD float lkv_e8_margin(float qf)
{
    return LKV_FADD(1.220703125e-4f, LKV_FMUL(LKV_FADD(qf, 2.0f), 4.76837158203125e-7f));
}

/* The integer value of g + Q for an integer-valued g with |g| < 2^22, read
 * from the bits of g + 1.5 * 2^23 (whose ulp is 1, so the sum is exact):
 * an add instead of a float-to-int conversion, which runs at a quarter of
 * the rate on the GPU (H200 encode: -1 %). */
LKV_CD uint32_t lkv_digit(float g, uint32_t qi)
{
    const float t = LKV_FADD(g, 12582912.0f);
    uint32_t u;
    memcpy(&u, &t, 4);
    return u - (0x4B400000u - qi);
}

/* Keys of one D_n candidate: f (point before the parity fix), k (keys, see
 * above); returns max |k|, stores the coordinates' sum in *sum and, with
 * EST, the E8 estimate's sums: sum |k_i| in est[0] and the clamp excess
 * sum (|y_i| - |yc_i|) in est[1]. */
template <int N, bool EST>
LKV_CD float lkv_dn_keys(const float *y, float lo, float hi, float *f, float *k, float *sum,
                         float *est)
{
    /* the sums start from their first term (0 + x would only change the
     * sign of a zero sum, which no result depends on) */
    float m = 0.0f, s = 0.0f, sk = 0.0f, sx = 0.0f;
#pragma unroll
    for (int i = 0; i < N; i++) {
        const float yc = fminf(fmaxf(y[i], lo), hi);
        f[i] = rintf(yc);
        k[i] = LKV_FSUB(yc, f[i]);
        m = i == 0 ? fabsf(k[i]) : fmaxf(m, fabsf(k[i]));
        s = i == 0 ? f[i] : LKV_FADD(s, f[i]);
        if (EST) {
            const float x = LKV_FSUB(fabsf(y[i]), fabsf(yc));
            sk = i == 0 ? fabsf(k[i]) : LKV_FADD(sk, fabsf(k[i]));
            sx = i == 0 ? x : LKV_FADD(sx, x);
        }
    }
    *sum = s;
    if (EST) {
        est[0] = sk;
        est[1] = sx;
    }
    return m;
}

/* Applies the parity fix (when odd) at the first i with |k_i| == m > 0,
 * toward y, and writes the digits w_i = f_i + Q. */
template <int N>
LKV_CD void lkv_dn_fix(float *f, const float *k, float m, bool odd, uint32_t qi, uint32_t *w)
{
    bool found = !odd;
#pragma unroll
    for (int i = 0; i < N; i++) {
        const bool hit = !found && fabsf(k[i]) == m;
        found = found || hit;
        /* +-1 with the sign of k (k != 0 here): toward y */
        const float dir = copysignf(1.0f, k[i]);
        const float g = LKV_FADD(f[i], hit ? dir : 0.0f);
        w[i] = lkv_digit(g, qi);
    }
}

LKV_CD bool lkv_odd(float sum)
{
    return (lkv_digit(sum, 0) & 1u) != 0;
}

/* E8 in [-Q, Q]^8: as lkv_e8_box (returns the coset, fills the digits);
 * margin = lkv_e8_margin(qf). */
LKV_CD int lkv_e8_closest(const float *y, float qf, float margin, uint32_t *w)
{
    float fa[8], ka[8], fb[8], kb[8], ym[8], est[2];
    float sa, sb;
    const float ma = lkv_dn_keys<8, true>(y, -qf, qf, fa, ka, &sa, est);
#pragma unroll
    for (int i = 0; i < 8; i++)
        ym[i] = LKV_FSUB(y[i], 0.5f);
    const float mb = lkv_dn_keys<8, false>(ym, -qf, LKV_FSUB(qf, 1.0f), fb, kb, &sb, est);
    const bool oa = lkv_odd(sa), ob = lkv_odd(sb);
    const float sk = est[0], sx = est[1];
    float delta = LKV_FSUB(LKV_FSUB(sk, sx), 2.0f);
    if (oa)
        delta = LKV_FADD(delta, LKV_FSUB(1.0f, LKV_FMUL(2.0f, ma)));
    if (ob)
        delta = LKV_FSUB(delta, LKV_FSUB(1.0f, LKV_FMUL(2.0f, mb)));
    const bool slow =
        (oa && ma == 0.0f) || (ob && mb == 0.0f) || !(sx <= 1.0f) || !(fabsf(delta) > margin);
    if (slow)
        return lkv_e8_box(y, qf, w);
    const int half = delta > 0.0f;
    float f[8], k[8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        f[i] = half ? fb[i] : fa[i];
        k[i] = half ? kb[i] : ka[i];
    }
    lkv_dn_fix<8>(f, k, half ? mb : ma, half ? ob : oa, (uint32_t)(int32_t)qf, w);
    return half;
}

/* D4 in [-Q, Q]^4: as lkv_d4_box. */
LKV_CD void lkv_d4_closest(const float *y, float qf, uint32_t *w)
{
    float f[4], k[4], s;
    const float m = lkv_dn_keys<4, false>(y, -qf, qf, f, k, &s, nullptr);
    const bool odd = lkv_odd(s);
    if (odd && m == 0.0f) {
        lkv_d4_box(y, qf, w);
        return;
    }
    lkv_dn_fix<4>(f, k, m, odd, (uint32_t)(int32_t)qf, w);
}

/* ------------------------------------------------------------------------ */
/* Point -> index (docs/codec.md section 4)                                  */

/* Narrow E8. Both cosets read the 8 digits as one number v in base B
 * (integer) or C (half): integer index = v / 2; half index = M_a + r Q + h
 * with r = v div C and w_7 = 2 h + (its parity bit), which is M_a + v / 2
 * as C = 2Q. The first seven digits are split into a 4-digit and a 3-digit
 * part so that each fits 32 bits. */
LKV_CD uint64_t lkv_e8_index_narrow(const lkv_cuda_plan *P, const uint32_t *w, int half)
{
    const uint32_t base = half ? P->c : P->b;
    const uint32_t base3 = half ? P->c3 : P->b3;
    const uint32_t hi4 = ((w[0] * base + w[1]) * base + w[2]) * base + w[3];
    const uint32_t lo3 = (w[4] * base + w[5]) * base + w[6];
    const uint64_t v = ((uint64_t)hi4 * base3 + lo3) * base + w[7];
    return (half ? P->ma64 : 0) + (v >> 1);
}

/* Narrow D4: B^4 < 2^32. */
LKV_CD uint64_t lkv_d4_index_narrow(const lkv_cuda_plan *P, const uint32_t *w)
{
    const uint32_t bb = P->b;
    return (((w[0] * bb + w[1]) * bb + w[2]) * bb + w[3]) >> 1;
}

/* Wide: 128-bit Horner, as ref.c lkv_ref_point_index. */
template <int NB>
LKV_CD lkv_u128 lkv_index_wide(const lkv_cuda_plan *P, const uint32_t *w, int half)
{
    lkv_u128 v = 0;
    if (!half) {
#pragma unroll
        for (int i = 0; i < NB; i++)
            v = v * P->b + w[i];
        return v >> 1;
    }
#pragma unroll
    for (int i = 0; i < 7; i++)
        v = v * P->c + w[i];
    const lkv_u128 ma = ((lkv_u128)P->ma_hi << 64) | P->ma_lo;
    return ma + v * P->q + (w[7] >> 1);
}

/* ------------------------------------------------------------------------ */
/* Index -> point                                                            */

/*
 * Narrow E8: idx -> twice the 8 coordinates of the point, exactly as floats
 * (integers). Returns 0 when idx is outside the codebook (the coordinates
 * are then those of v = 0). The inverse of lkv_e8_index_narrow: v = 2 idx
 * (integer coset) or 2 (idx - M_a) (half, where its last digit is 2h), both
 * below base^8; one 64-bit division by base^4 and six 32-bit ones by base
 * give the digits, with the divisors selected (no divergent branches).
 */
LKV_CD int lkv_e8_point2_narrow(const lkv_cuda_plan *P, uint64_t idx, float *pt2)
{
    const int ok = idx < P->cb64;
    const int half = idx >= P->ma64;
    const uint64_t v = ok ? (idx - lkv_sel64(half, P->ma64, 0)) << 1 : 0;
    const uint32_t nbase = lkv_sel32(half, P->nc, P->nb);
    const uint32_t nbase4 = lkv_sel32(half, P->nc4, P->nb4);
    const uint32_t m = lkv_sel32(half, P->mg_c, P->mg_b);
    uint32_t hi = (uint32_t)(lkv_umulhi64(v, lkv_sel64(half, P->mg_c4, P->mg_b4)) >> P->mg_s4);
    uint32_t lo = (uint32_t)v + hi * nbase4;
    uint32_t w[8];
#pragma unroll
    for (int i = 3; i >= 1; i--)
        hi = lkv_mdiv32(hi, nbase, m, P->mg_s, &w[i]);
    w[0] = hi;
#pragma unroll
    for (int i = 7; i >= 5; i--)
        lo = lkv_mdiv32(lo, nbase, m, P->mg_s, &w[i]);
    w[4] = lo;
    /* integer: p = w - Q; half: p = w - Q + 1/2 = (2(w - Q) + 1) * 0.5,
     * with w7 = 2h + the parity of the other digits (docs/codec.md section 4) */
    uint32_t wsum = 0;
#pragma unroll
    for (int i = 0; i < 7; i++)
        wsum += w[i];
    w[7] += half ? (wsum & 1u) : 0u;
    const int32_t off = (half ? 1 : 0) - 2 * (int32_t)P->q;
#pragma unroll
    for (int i = 0; i < 8; i++)
        pt2[i] = (float)(2 * (int32_t)w[i] + off);
    return ok;
}

/* Narrow D4: v = 2 idx < B^4. */
LKV_CD int lkv_d4_point2_narrow(const lkv_cuda_plan *P, uint64_t idx, float *pt2)
{
    const int ok = idx < P->cb64;
    uint32_t v = ok ? (uint32_t)idx << 1 : 0, rem;
    const int32_t off = -2 * (int32_t)P->q;
#pragma unroll
    for (int i = 3; i >= 1; i--) {
        v = lkv_mdiv32(v, P->nb, P->mg_b, P->mg_s, &rem);
        pt2[i] = (float)(2 * (int32_t)rem + off);
    }
    pt2[0] = (float)(2 * (int32_t)v + off);
    return ok;
}

/* Divides a 96-bit number held as three 32-bit limbs (l[2] most significant)
 * by d < 2^32 in place; returns the remainder. */
LKV_CD uint32_t lkv_limbs_divmod(uint32_t *l, uint32_t d, uint64_t minv)
{
    uint64_t rem = 0;
#pragma unroll
    for (int i = 2; i >= 0; i--) {
        const uint64_t cur = (rem << 32) | l[i];
        uint64_t r;
        l[i] = (uint32_t)lkv_udiv64(cur, d, minv, &r);
        rem = r;
    }
    return (uint32_t)rem;
}

/*
 * Wide (any Q; used from Q = 128). D4: v = 2 idx < B^4 < 2^45, 64-bit
 * digits. E8: the number (v = 2 idx < B^8, or idx - M_a < (2Q)^8 / 2, up to
 * 89 bits) is held in three 32-bit limbs; the coset's last divisor (B, or Q
 * for h) and then base^2 are divided out by long division over the limbs,
 * which leaves base^5 < 2^55, whose digits take plain 64-bit divisions.
 */
template <int NB> LKV_CD int lkv_point2_wide(const lkv_cuda_plan *P, lkv_u128 idx, float *pt2)
{
    const lkv_u128 cb = ((lkv_u128)P->cb_hi << 64) | P->cb_lo;
    const int ok = idx < cb;
    uint32_t w[8];
    if constexpr (NB == 4) {
        uint64_t v = ok ? (uint64_t)idx << 1 : 0, rem;
#pragma unroll
        for (int i = 3; i >= 0; i--) {
            v = lkv_udiv64(v, P->b, P->minv_b64, &rem);
            pt2[i] = (float)(2 * ((int32_t)rem - (int32_t)P->q));
        }
        return ok;
    } else {
        const lkv_u128 ma = ((lkv_u128)P->ma_hi << 64) | P->ma_lo;
        const int half = ok && idx >= ma;
        const lkv_u128 nn = ok ? (half ? idx - ma : idx << 1) : 0;
        uint32_t l[3] = {(uint32_t)nn, (uint32_t)(nn >> 32), (uint32_t)(nn >> 64)};
        const uint32_t last =
            half ? lkv_limbs_divmod(l, P->q, P->minv_q64) : lkv_limbs_divmod(l, P->b, P->minv_b64);
        const uint32_t base = half ? P->c : P->b;
        const uint32_t minv32 = half ? P->minv_c32 : P->minv_b32;
        const uint64_t minv64 = half ? P->minv_c64 : P->minv_b64;
        /* two digits at once: the remainder by base^2 */
        const uint32_t r2 = half ? lkv_limbs_divmod(l, P->c2, P->minv_c2_64)
                                 : lkv_limbs_divmod(l, P->b2, P->minv_b2_64);
        uint32_t rem32;
        w[5] = lkv_udiv32(r2, base, minv32, &rem32);
        w[6] = rem32;
        uint64_t v5 = ((uint64_t)l[1] << 32) | l[0], rem; /* < base^5 < 2^55 */
#pragma unroll
        for (int i = 4; i >= 0; i--) {
            v5 = lkv_udiv64(v5, base, minv64, &rem);
            w[i] = (uint32_t)rem;
        }
        uint32_t wsum = 0;
#pragma unroll
        for (int i = 0; i < 7; i++)
            wsum += w[i];
        w[7] = half ? 2u * last + (wsum & 1u) : last;
        const int32_t odd = half ? 1 : 0;
#pragma unroll
        for (int i = 0; i < 8; i++)
            pt2[i] = (float)(2 * ((int32_t)w[i] - (int32_t)P->q) + odd);
        return ok;
    }
}

/*
 * The decoders above give twice the point's coordinates (exact integers,
 * whatever the record: corrupt ones are zeroed by the kernel, which sees
 * the returned ok), so that the kernel's p * s is RN(2p * (s / 2)): the
 * same real product, s / 2 being exact. The forms below give the point
 * itself, zero when idx is invalid; the host test uses them.
 */
LKV_CD int lkv_halve_point(int ok, int n, float *pt)
{
    for (int i = 0; i < n; i++)
        pt[i] = ok ? LKV_FMUL(pt[i], 0.5f) : 0.0f;
    return ok;
}

LKV_CD int lkv_e8_point_narrow(const lkv_cuda_plan *P, uint64_t idx, float *pt)
{
    return lkv_halve_point(lkv_e8_point2_narrow(P, idx, pt), 8, pt);
}

LKV_CD int lkv_d4_point_narrow(const lkv_cuda_plan *P, uint64_t idx, float *pt)
{
    return lkv_halve_point(lkv_d4_point2_narrow(P, idx, pt), 4, pt);
}

template <int NB> LKV_CD int lkv_point_wide(const lkv_cuda_plan *P, lkv_u128 idx, float *pt)
{
    return lkv_halve_point(lkv_point2_wide<NB>(P, idx, pt), NB, pt);
}

/* ------------------------------------------------------------------------ */
/* Bit fields on LE 32-bit words, LSB first (docs/codec.md section 4)       */

/* ORs the low nbits of (hi:lo) into words at bit pos. Bits of the value
 * above nbits must be zero. Device code uses shared-memory atomics because
 * neighbouring blocks of a record share words, unconditionally: an OR of
 * zero costs less than the branch around it (H200 encode: -1.2 %). */
LKV_CD void lkv_or_word(uint32_t *w, uint32_t v)
{
#if defined(__CUDA_ARCH__)
    atomicOr(w, v);
#else
    *w |= v;
#endif
}

LKV_CD void lkv_put_bits(uint32_t *words, uint32_t pos, uint64_t lo, uint64_t hi, uint32_t nbits)
{
    const uint32_t i = pos >> 5, sh = pos & 31u;
    const uint32_t end = sh + nbits; /* bits used from words[i] on */
    /* the value shifted left by sh, as 4 words */
    const uint64_t s0 = lo << sh;
    const uint64_t s1 = sh ? (hi << sh) | (lo >> (64u - sh)) : hi;
    lkv_or_word(words + i, (uint32_t)s0);
    if (end > 32)
        lkv_or_word(words + i + 1, (uint32_t)(s0 >> 32));
    if (end > 64)
        lkv_or_word(words + i + 2, (uint32_t)s1);
    if (end > 96)
        lkv_or_word(words + i + 3, (uint32_t)(s1 >> 32));
}

/* Reads nbits (<= 63: narrow indices have at most 63 bits) at bit pos,
 * branch-free: always reads the three words from pos's on, so the caller
 * pads its buffer by two words (the decode kernel's record region has 16
 * spare bytes, zeroed). */
LKV_CD uint64_t lkv_get_bits64(const uint32_t *words, uint32_t pos, uint32_t nbits)
{
    const uint32_t i = pos >> 5, sh = pos & 31u;
    const uint64_t lo = ((uint64_t)words[i + 1] << 32) | words[i];
    /* w2 lands at bit 64 - sh, written as two shifts so that none is 64 */
    const uint64_t v = (lo >> sh) | ((((uint64_t)words[i + 2]) << 32) << (32u - sh));
    return v & ((1ull << nbits) - 1u);
}

/* Reads nbits (<= 96) at bit pos as a 128-bit value. */
LKV_CD lkv_u128 lkv_get_bits128(const uint32_t *words, uint32_t pos, uint32_t nbits)
{
    const uint32_t i = pos >> 5, sh = pos & 31u;
    const uint32_t nw = (sh + nbits + 31u) >> 5;
    lkv_u128 v = 0;
    for (uint32_t j = 0; j < nw; j++)
        v |= (lkv_u128)words[i + j] << (32u * j);
    v >>= sh;
    return v & ((((lkv_u128)1) << nbits) - 1u);
}

#endif /* LKV_CUDA_BLOCK_CUH */
