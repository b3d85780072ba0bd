/* SPDX-License-Identifier: Apache-2.0 */
/*
 * simd_avx2.c - the AVX2 path: 8 vectors per batch, one per lane of a ymm
 * register (AVX2 plus F16C for the fp16 scales).
 *
 * Design note: this file only supplies the vector primitives and the
 * per-ISA pieces (8x8 transposes, the 64-bit index arithmetic) that the
 * shared kernels in simd_kernel.h are written against. AVX2 has no mask
 * registers, so a mask is a vector of all-ones/zero lanes and selects are
 * blendv. It also lacks unsigned compares (emulated with max, or a sign
 * flip for 64 bits) and conversions between uint64 and double, which the
 * decoder's index split builds from the 2^52 bias trick.
 * Compiled with -mavx2 -mf16c (codec/CMakeLists.txt); only called after
 * lkv_isa_supported() says yes. FMA is never enabled here.
 */
#include "lkv_codec_internal.h"
#include "lkv_p2.h"

#include <immintrin.h>
#include <math.h>

#define LKV_L         8
#define SK_MAX_STAGES 3

typedef __m256 vf;
typedef __m256i vi;
typedef __m256 vm;
typedef __m256i vq;

#define SK_RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

static inline vf vf_set1(float a)
{
    return _mm256_set1_ps(a);
}
static inline vf vf_add(vf a, vf b)
{
    return _mm256_add_ps(a, b);
}
static inline vf vf_sub(vf a, vf b)
{
    return _mm256_sub_ps(a, b);
}
static inline vf vf_mul(vf a, vf b)
{
    return _mm256_mul_ps(a, b);
}
static inline vf vf_div(vf a, vf b)
{
    return _mm256_div_ps(a, b);
}
static inline vf vf_sqrt(vf a)
{
    return _mm256_sqrt_ps(a);
}
static inline vf vf_max(vf a, vf b)
{
    return _mm256_max_ps(a, b);
}
static inline vf vf_min(vf a, vf b)
{
    return _mm256_min_ps(a, b);
}
static inline vf vf_abs(vf a)
{
    return _mm256_castsi256_ps(
        _mm256_and_si256(_mm256_castps_si256(a), _mm256_set1_epi32(0x7fffffff)));
}
static inline vf vf_rint(vf a)
{
    return _mm256_round_ps(a, SK_RNE);
}
static inline vm vm_lt(vf a, vf b)
{
    return _mm256_cmp_ps(a, b, _CMP_LT_OQ);
}
static inline vm vm_gt(vf a, vf b)
{
    return _mm256_cmp_ps(a, b, _CMP_GT_OQ);
}
static inline vm vm_ge(vf a, vf b)
{
    return _mm256_cmp_ps(a, b, _CMP_GE_OQ);
}
static inline vm vm_ne(vf a, vf b)
{
    return _mm256_cmp_ps(a, b, _CMP_NEQ_OQ);
}
static inline vm vm_gt_and(vm m, vf a, vf b)
{
    return _mm256_and_ps(m, _mm256_cmp_ps(a, b, _CMP_GT_OQ));
}
static inline vm vm_eq_and(vm m, vf a, vf b)
{
    return _mm256_and_ps(m, _mm256_cmp_ps(a, b, _CMP_EQ_OQ));
}
static inline vm vm_and(vm a, vm b)
{
    return _mm256_and_ps(a, b);
}
static inline vm vm_andn(vm a, vm b)
{
    return _mm256_andnot_ps(b, a);
}
static inline vm vm_or(vm a, vm b)
{
    return _mm256_or_ps(a, b);
}
static inline int vm_any(vm a)
{
    return _mm256_movemask_ps(a) != 0;
}
static inline unsigned vm_bits(vm a)
{
    return (unsigned)_mm256_movemask_ps(a);
}
static inline vm vm_nonfinite(vf a)
{
    const vi e = _mm256_set1_epi32(0x7f800000);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(a), e), e));
}
static inline vf vf_blend(vm m, vf t, vf f)
{
    return _mm256_blendv_ps(f, t, m);
}
static inline vi vi_blend(vm m, vi t, vi f)
{
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(f), _mm256_castsi256_ps(t), m));
}

static inline vi vi_set1(int32_t a)
{
    return _mm256_set1_epi32(a);
}
static inline vi vi_add(vi a, vi b)
{
    return _mm256_add_epi32(a, b);
}
static inline vi vi_sub(vi a, vi b)
{
    return _mm256_sub_epi32(a, b);
}
static inline vi vi_mul(vi a, vi b)
{
    return _mm256_mullo_epi32(a, b);
}
static inline vi vi_and(vi a, vi b)
{
    return _mm256_and_si256(a, b);
}
#define vi_srli1(a, n) _mm256_srli_epi32((a), (n))
#define vi_slli1(a, n) _mm256_slli_epi32((a), (n))
static inline vi vi_from_f(vf a)
{
    return _mm256_cvtps_epi32(a);
}
static inline vf vf_from_i(vi a)
{
    return _mm256_cvtepi32_ps(a);
}
static inline vm vm_ieq(vi a, vi b)
{
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, b));
}
static inline vm vm_uge(vi a, vi b)
{
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_max_epu32(a, b), a));
}
static inline vi vi_mulhi(vi a, vi b)
{
    const vi ev = _mm256_srli_epi64(_mm256_mul_epu32(a, b), 32);
    const vi od = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(b, 32));
    return _mm256_blend_epi32(ev, od, 0xAA);
}
/* The 8 lanes of v as int16 (values in range) or as bytes (0..127). */
static inline void vi_store16(int16_t *p, vi v)
{
    _mm_storeu_si128((__m128i *)p,
                     _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
}
static inline void vi_store8(uint8_t *p, vi v)
{
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64((__m128i *)p, _mm_packs_epi16(w, w));
}
/* 8 int16 at p, sign extended. */
static inline vi vi_load16(const int16_t *p)
{
    return _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)p));
}
/* 8 bytes at p, zero extended. */
static inline vi vi_load8u(const uint8_t *p)
{
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}
static inline vi vi_srl(vi a, uint32_t n)
{
    return _mm256_srl_epi32(a, _mm_cvtsi32_si128((int)n));
}
/* Signed lo <= a <= hi, lane-wise (lo <= hi). */
static inline vi vi_clamp(vi a, vi lo, vi hi)
{
    return _mm256_min_epi32(_mm256_max_epi32(a, lo), hi);
}
/* A lookup into a table of uint16 entries through gathers of the high half
 * of the 32 bits at p + 2 i, p = the table's address minus 2 bytes
 * (readable), so it reads inside the table. */
typedef struct vi_lut {
    const uint8_t *p;
} vi_lut;
static inline void vi_lut_init(vi_lut *t, const uint16_t *tab, const uint8_t *p, uint32_t center)
{
    (void)tab;
    (void)center;
    t->p = p;
}
/* tab[i] for each lane's i. */
static inline vi vi_lut_get(const vi_lut *t, vi i)
{
    return _mm256_srli_epi32(_mm256_i32gather_epi32((const int *)(const void *)t->p, i, 2), 16);
}
static inline vi vi_h_from_f(vf a)
{
    return _mm256_cvtepu16_epi32(_mm256_cvtps_ph(a, SK_RNE));
}
static inline vf vf_from_h(vi h)
{
    /* packus keeps 16-bit values in each 128-bit half; gather the halves. */
    const vi p = _mm256_permute4x64_epi64(_mm256_packus_epi32(h, h), 0x08);
    return _mm256_cvtph_ps(_mm256_castsi256_si128(p));
}

static inline vq vq_set1(uint64_t a)
{
    return _mm256_set1_epi64x((long long)a);
}
static inline vq vq_load(const uint64_t *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}
static inline void vq_store(uint64_t *p, vq a)
{
    _mm256_storeu_si256((__m256i *)p, a);
}
static inline vq vq_or(vq a, vq b)
{
    return _mm256_or_si256(a, b);
}
static inline vq vq_and(vq a, vq b)
{
    return _mm256_and_si256(a, b);
}
static inline vq vq_sll(vq a, uint32_t n)
{
    return _mm256_sll_epi64(a, _mm_cvtsi32_si128((int)n));
}
static inline vq vq_srl(vq a, uint32_t n)
{
    return _mm256_srl_epi64(a, _mm_cvtsi32_si128((int)n));
}
static inline vq vq_even(vi a)
{
    return _mm256_and_si256(a, _mm256_set1_epi64x(0xffffffff));
}
static inline vq vq_odd(vi a)
{
    return _mm256_srli_epi64(a, 32);
}
static inline vi vi_from_eo(vq e, vq o)
{
    return _mm256_blend_epi32(e, _mm256_slli_epi64(o, 32), 0xAA);
}

/* 4-bit masks of the even and odd lanes -> one 8-bit lane mask. */
static inline unsigned sk_interleave(unsigned e, unsigned o)
{
    unsigned x = e & 0xfu, y = o & 0xfu;
    x = (x | (x << 2)) & 0x33u;
    x = (x | (x << 1)) & 0x55u;
    y = (y | (y << 2)) & 0x33u;
    y = (y | (y << 1)) & 0x55u;
    return x | (y << 1);
}
static inline unsigned vq_nz_bits(vq e, vq o)
{
    const vq z = _mm256_setzero_si256();
    const unsigned ze = (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(e, z)));
    const unsigned zo = (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(o, z)));
    return sk_interleave(~ze, ~zo);
}

/* Unsigned 64-bit a >= b, as all-ones lanes (AVX2 only compares signed). */
static inline vq sk_uge64(vq a, vq b)
{
    const vq sign = vq_set1(0x8000000000000000ull);
    return _mm256_xor_si256(
        _mm256_cmpgt_epi64(_mm256_xor_si256(b, sign), _mm256_xor_si256(a, sign)), vq_set1(~0ull));
}

/* uint64 -> double (one rounding): both 32-bit halves exactly through the
 * 2^52 bias, then hi * 2^32 + lo. */
static inline __m256d sk_u64_to_pd(vq v)
{
    const vq bias = vq_set1(0x4330000000000000ull); /* 2^52 */
    const __m256d b = _mm256_castsi256_pd(bias);
    const __m256d lo = _mm256_sub_pd(
        _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(v, vq_set1(0xffffffffu)), bias)), b);
    const __m256d hi =
        _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(v, 32), bias)), b);
    return _mm256_add_pd(_mm256_mul_pd(hi, _mm256_set1_pd(4294967296.0)), lo);
}

static inline vq vq_add(vq a, vq b)
{
    return _mm256_add_epi64(a, b);
}
static inline vq vq_mul_e(vi a, vi b)
{
    return _mm256_mul_epu32(a, b);
}
static inline vq vq_mul_o(vi a, vi b)
{
    return _mm256_mul_epu32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(b, 32));
}
static inline unsigned vq_uge_bits(vq e, vq o, uint64_t lim)
{
    return sk_interleave(
        (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(sk_uge64(e, vq_set1(lim)))),
        (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(sk_uge64(o, vq_set1(lim)))));
}
static inline vm vm_from_bits(unsigned b)
{
    const vi bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_castsi256_ps(
        _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)b), bit), bit));
}

#include "simd_kernel.h"

static inline void sk_idx64(vi x, vi k, vi y, vm half, uint64_t ma, vq *e, vq *o)
{
    const vq lo = _mm256_set1_epi64x(0xffffffff), mav = vq_set1(ma);
    const vq pe = _mm256_add_epi64(_mm256_mul_epu32(x, k), _mm256_and_si256(y, lo));
    const vq po =
        _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(k, 32)),
                         _mm256_srli_epi64(y, 32));
    /* Widen the 32-bit lane mask to the even and odd 64-bit lanes. */
    const vi h = _mm256_castps_si256(half);
    const vi he = _mm256_shuffle_epi32(h, _MM_SHUFFLE(2, 2, 0, 0));
    const vi ho = _mm256_shuffle_epi32(h, _MM_SHUFFLE(3, 3, 1, 1));
    *e = _mm256_blendv_epi8(_mm256_srli_epi64(pe, 1), _mm256_add_epi64(pe, mav), he);
    *o = _mm256_blendv_epi8(_mm256_srli_epi64(po, 1), _mm256_add_epi64(po, mav), ho);
}

/*
 * One half (even or odd lanes) of sk_split: P / K with K < 2^32 and a
 * quotient below 2^32. The double estimate P * (1/K), rounded to the
 * nearest integer by the 2^52 bias, is within 1 of the quotient (relative
 * error a few 2^-53 on a value below 2^32); the remainder's sign and size
 * correct it.
 */
static inline void sk_split4(const sk_consts *c, vq idx, vq *x, vq *y, vq *half, vq *bad)
{
    const vq one = vq_set1(1);
    *bad = sk_uge64(idx, vq_set1(c->codebook));
    *half = sk_uge64(idx, vq_set1(c->ma));
    const vq p = _mm256_blendv_epi8(_mm256_add_epi64(idx, idx),
                                    _mm256_sub_epi64(idx, vq_set1(c->ma)), *half);
    const vq k = _mm256_blendv_epi8(vq_set1(c->b4), vq_set1(c->c3q), *half);
    const __m256d inv =
        _mm256_blendv_pd(_mm256_set1_pd(1.0 / (double)c->b4), _mm256_set1_pd(1.0 / (double)c->c3q),
                         _mm256_castsi256_pd(*half));
    const __m256d bias = _mm256_set1_pd(4503599627370496.0); /* 2^52 */
    const __m256d qd = _mm256_add_pd(_mm256_mul_pd(sk_u64_to_pd(p), inv), bias);
    vq q = _mm256_and_si256(_mm256_castpd_si256(qd), vq_set1(0x000fffffffffffffull));
    const vq lim = vq_set1(0xffffffffu); /* mul_epu32 needs q < 2^32 */
    q = _mm256_blendv_epi8(q, lim, _mm256_cmpgt_epi64(q, lim));
    vq r = _mm256_sub_epi64(p, _mm256_mul_epu32(q, k));
    const vq neg = _mm256_cmpgt_epi64(_mm256_setzero_si256(), r);
    q = _mm256_sub_epi64(q, _mm256_and_si256(neg, one));
    r = _mm256_add_epi64(r, _mm256_and_si256(neg, k));
    /* Rounding to nearest never lands below the quotient (the estimate is
     * within 2^-19 of P/K), so this step is not expected to fire; it keeps
     * the split independent of that argument. */
    const vq big = _mm256_cmpgt_epi64(r, _mm256_sub_epi64(k, one)); /* 0 <= r < 2K here */
    *x = _mm256_add_epi64(q, _mm256_and_si256(big, one));
    *y = _mm256_sub_epi64(r, _mm256_and_si256(big, k));
}

static inline unsigned sk_split(const sk_consts *c, vq e, vq o, vi *x, vi *y, vm *half)
{
    vq xe, ye, he, be, xo, yo, ho, bo;
    sk_split4(c, e, &xe, &ye, &he, &be);
    sk_split4(c, o, &xo, &yo, &ho, &bo);
    *x = vi_from_eo(xe, xo);
    *y = vi_from_eo(ye, yo);
    *half = _mm256_castsi256_ps(vi_from_eo(he, ho));
    return sk_interleave((unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(be)),
                         (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(bo)));
}

/* x / m and x % m for x < 2^44 and m < 2^22 (quotient < 2^22): the
 * conversions are exact there and the correctly rounded double quotient
 * lies within 2^-31 of x/m, so its floor is exact. */
static inline void sk_split_by4(vq x, vq m, vq *q, vq *r)
{
    const __m256d qd = _mm256_round_pd(_mm256_div_pd(sk_u64_to_pd(x), sk_u64_to_pd(m)),
                                       _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m256d bias = _mm256_set1_pd(4503599627370496.0); /* 2^52 */
    *q = _mm256_and_si256(_mm256_castpd_si256(_mm256_add_pd(qd, bias)),
                          vq_set1(0x000fffffffffffffull));
    *r = _mm256_sub_epi64(x, _mm256_mul_epu32(*q, m));
}

static inline void sk_split_by(vq e, vq o, vi m, vi *q, vi *r)
{
    vq qe, re, qo, ro;
    sk_split_by4(e, vq_even(m), &qe, &re);
    sk_split_by4(o, vq_odd(m), &qo, &ro);
    *q = vi_from_eo(qe, qo);
    *r = vi_from_eo(re, ro);
}

/* In-place transpose of 8 rows of 8 floats. */
static inline __attribute__((always_inline)) void sk_transpose(vf *r)
{
    vf t[8], u[8];
#pragma GCC unroll 16
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 2; i++) {
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
    }
#pragma GCC unroll 16
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

static inline void sk_load_chunk(lkv_dtype dt, const uint8_t *const *rows, uint32_t off, vf *out)
{
    switch (dt) {
    case LKV_DTYPE_BF16:
#pragma GCC unroll 16
        for (int l = 0; l < 8; l++) {
            const __m128i h = _mm_loadu_si128((const __m128i *)(rows[l] + 2u * off));
            out[l] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
        }
        break;
    case LKV_DTYPE_FP16:
#pragma GCC unroll 16
        for (int l = 0; l < 8; l++)
            out[l] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(rows[l] + 2u * off)));
        break;
    case LKV_DTYPE_FP32:
#pragma GCC unroll 16
        for (int l = 0; l < 8; l++)
            out[l] = _mm256_loadu_ps((const float *)(rows[l] + 4u * off));
        break;
    }
    sk_transpose(out);
}

static inline void sk_store_chunk(lkv_dtype dt, uint8_t *const *rows, unsigned cnt, uint32_t off,
                                  const vf *in)
{
    vf r[8];
#pragma GCC unroll 16
    for (int l = 0; l < 8; l++)
        r[l] = in[l];
    sk_transpose(r);
    switch (dt) {
    case LKV_DTYPE_BF16: {
        /* lkv_math_f32_to_bf16 on finite values: (x + 0x7fff + lsb) >> 16 */
        const vi bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
        for (unsigned l = 0; l < cnt; l++) {
            const vi x = _mm256_castps_si256(r[l]);
            const vi lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), one);
            const vi b = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(x, bias), lsb), 16);
            const vi p = _mm256_permute4x64_epi64(_mm256_packus_epi32(b, b), 0x08);
            _mm_storeu_si128((__m128i *)(rows[l] + 2u * off), _mm256_castsi256_si128(p));
        }
        break;
    }
    case LKV_DTYPE_FP16:
        for (unsigned l = 0; l < cnt; l++)
            _mm_storeu_si128((__m128i *)(rows[l] + 2u * off), _mm256_cvtps_ph(r[l], SK_RNE));
        break;
    case LKV_DTYPE_FP32:
        for (unsigned l = 0; l < cnt; l++)
            _mm256_storeu_ps((float *)(rows[l] + 4u * off), r[l]);
        break;
    }
}

lkv_status lkv_encode_avx2(const lkv_derived *d, lkv_dtype dt, const void *src, size_t n,
                           uint8_t *dst, lkv_diag *diag)
{
    return sk_encode(d, dt, src, n, dst, diag);
}

lkv_status lkv_decode_avx2(const lkv_derived *d, const uint8_t *src, size_t n, lkv_dtype dt,
                           void *dst, lkv_diag *diag)
{
    return sk_decode(d, src, n, dt, dst, diag);
}

#include "p2_avx2.h"
#include "p2_simd.h"

/* One instance of p2a_slot per mode: the rotated one is the code it was
 * before version 4's channel mode. */
static int p2_slot(const lkv_p2_model *m, const lkv_p2_vtab *vt, const lkv_p2_piece *pc,
                   const uint8_t *body, size_t len, size_t *pos, uint32_t *state, const float *rn,
                   uint8_t *const *rows, lkv_dtype dt)
{
    int16_t kt[LKV_DIM_MAX * LKV_P2_LANES];
    p2a_stream st = {body, len, *pos, state, rn, rows};
    const int ok = pc ? p2a_slot(m, vt, 1, pc, &st, kt, dt) : p2a_slot(m, vt, 0, NULL, &st, kt, dt);
    *pos = st.pos;
    return ok;
}

/* No two-chunk decode: with 8 registers of state for two streams the AVX2
 * decode ran at 4.0 M vectors/s, with one stream at 4.6 (codec_p2_bench,
 * 2^19 vectors, dev VM); 16 ymm registers do not hold both chains. */
const lkv_p2_kernels lkv_p2_kernels_avx2 = {8,
                                            p2_slot,
                                            NULL,
                                            p2_simd_quantise,
                                            p2a_encode_block,
                                            p2_simd_estimate,
                                            p2_simd_est_squares,
                                            p2_simd_est_chan,
                                            p2_simd_pt_squares};
