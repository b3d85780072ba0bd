/* SPDX-License-Identifier: Apache-2.0 */
/*
 * simd_avx512.c - the AVX-512 path: 16 vectors per batch, one per lane of a
 * zmm register (AVX512F/BW/DQ/VL plus F16C for the fp16 scales).
 *
 * Design note: this file only supplies the vector primitives and the
 * per-ISA pieces (16x16 transposes, the 64-bit index arithmetic) that the
 * shared kernels in simd_kernel.h are written against; the algorithm lives
 * there once for both SIMD paths. Masks are AVX-512 mask registers, so every
 * select of the box search is a single masked move. The index split of the
 * decoder uses the DQ conversions between uint64 and double to estimate
 * P / K, which one integer correction step makes exact.
 * Compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mf16c
 * (codec/CMakeLists.txt); only called after lkv_isa_supported() says yes.
 */
#include "lkv_codec_internal.h"
#include "lkv_p2.h"

#include <immintrin.h>
#include <math.h>

#define LKV_L         16
#define SK_MAX_STAGES 4

typedef __m512 vf;
typedef __m512i vi;
typedef __mmask16 vm;
typedef __m512i vq;

/* RNE without raising exceptions; the same as rintf in the default mode. */
#define SK_RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

static inline vf vf_set1(float a)
{
    return _mm512_set1_ps(a);
}
static inline vf vf_add(vf a, vf b)
{
    return _mm512_add_ps(a, b);
}
static inline vf vf_sub(vf a, vf b)
{
    return _mm512_sub_ps(a, b);
}
static inline vf vf_mul(vf a, vf b)
{
    return _mm512_mul_ps(a, b);
}
static inline vf vf_div(vf a, vf b)
{
    return _mm512_div_ps(a, b);
}
static inline vf vf_sqrt(vf a)
{
    return _mm512_sqrt_ps(a);
}
static inline vf vf_max(vf a, vf b)
{
    return _mm512_max_ps(a, b);
}
static inline vf vf_min(vf a, vf b)
{
    return _mm512_min_ps(a, b);
}
static inline vf vf_abs(vf a)
{
    return _mm512_castsi512_ps(
        _mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32(0x7fffffff)));
}
static inline vf vf_rint(vf a)
{
    return _mm512_roundscale_ps(a, SK_RNE);
}
static inline vm vm_lt(vf a, vf b)
{
    return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ);
}
static inline vm vm_gt(vf a, vf b)
{
    return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ);
}
static inline vm vm_ge(vf a, vf b)
{
    return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ);
}
static inline vm vm_ne(vf a, vf b)
{
    return _mm512_cmp_ps_mask(a, b, _CMP_NEQ_OQ);
}
static inline vm vm_gt_and(vm m, vf a, vf b)
{
    return _mm512_mask_cmp_ps_mask(m, a, b, _CMP_GT_OQ);
}
static inline vm vm_eq_and(vm m, vf a, vf b)
{
    return _mm512_mask_cmp_ps_mask(m, a, b, _CMP_EQ_OQ);
}
static inline vm vm_and(vm a, vm b)
{
    return (vm)(a & b);
}
static inline vm vm_andn(vm a, vm b)
{
    return (vm)(a & ~b);
}
static inline vm vm_or(vm a, vm b)
{
    return (vm)(a | b);
}
static inline int vm_any(vm a)
{
    return a != 0;
}
static inline unsigned vm_bits(vm a)
{
    return a;
}
static inline vm vm_nonfinite(vf a)
{
    const vi e = _mm512_set1_epi32(0x7f800000);
    return _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(a), e), e);
}
static inline vf vf_blend(vm m, vf t, vf f)
{
    return _mm512_mask_blend_ps(m, f, t);
}
static inline vi vi_blend(vm m, vi t, vi f)
{
    return _mm512_mask_blend_epi32(m, f, t);
}

static inline vi vi_set1(int32_t a)
{
    return _mm512_set1_epi32(a);
}
static inline vi vi_add(vi a, vi b)
{
    return _mm512_add_epi32(a, b);
}
static inline vi vi_sub(vi a, vi b)
{
    return _mm512_sub_epi32(a, b);
}
static inline vi vi_mul(vi a, vi b)
{
    return _mm512_mullo_epi32(a, b);
}
static inline vi vi_and(vi a, vi b)
{
    return _mm512_and_si512(a, b);
}
#define vi_srli1(a, n) _mm512_srli_epi32((a), (n))
#define vi_slli1(a, n) _mm512_slli_epi32((a), (n))
static inline vi vi_from_f(vf a)
{
    return _mm512_cvtps_epi32(a);
}
static inline vf vf_from_i(vi a)
{
    return _mm512_cvtepi32_ps(a);
}
static inline vm vm_ieq(vi a, vi b)
{
    return _mm512_cmpeq_epi32_mask(a, b);
}
static inline vm vm_uge(vi a, vi b)
{
    return _mm512_cmpge_epu32_mask(a, b);
}
/* High 32 bits of the unsigned 32x32 products, lane-wise. */
static inline vi vi_mulhi(vi a, vi b)
{
    const vi ev = _mm512_srli_epi64(_mm512_mul_epu32(a, b), 32);
    const vi od = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), _mm512_srli_epi64(b, 32));
    return _mm512_mask_blend_epi32(0xAAAA, ev, od);
}
/* The 16 lanes of v as int16 (values in range) or as bytes (0..127). */
static inline void vi_store16(int16_t *p, vi v)
{
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16(v));
}
static inline void vi_store8(uint8_t *p, vi v)
{
    _mm_storeu_si128((__m128i *)p, _mm512_cvtepi32_epi8(v));
}
/* 16 int16 at p, sign extended. */
static inline vi vi_load16(const int16_t *p)
{
    return _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)p));
}
/* 16 bytes at p, zero extended. */
static inline vi vi_load8u(const uint8_t *p)
{
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
}
static inline vi vi_srl(vi a, uint32_t n)
{
    return _mm512_srl_epi32(a, _mm_cvtsi32_si128((int)n));
}
/* Signed lo <= a <= hi, lane-wise (lo <= hi). */
static inline vi vi_clamp(vi a, vi lo, vi hi)
{
    return _mm512_min_epi32(_mm512_max_epi32(a, lo), hi);
}
/*
 * A lookup into a table of LKV_P2_NBINS_MAX uint16 entries: the 128 around
 * entry center in four registers, two word permutes and a blend; a lane
 * outside them (rare where the values cluster around center) through a
 * gather of the high half of the 32 bits at p + 2 i, p = the table's
 * address minus 2 bytes (readable), so it reads inside the table.
 */
typedef struct vi_lut {
    vi w[4];
    vi base;
    const uint8_t *p;
} vi_lut;
static inline void vi_lut_init(vi_lut *t, const uint16_t *tab, const uint8_t *p, uint32_t center)
{
    const uint32_t top = LKV_P2_NBINS_MAX - 128u;
    const uint32_t b = center < 64u ? 0u : center - 64u > top ? top : center - 64u;
    for (int k = 0; k < 4; k++)
        t->w[k] = _mm512_loadu_si512((const void *)(tab + b + 32u * (uint32_t)k));
    t->base = _mm512_set1_epi32((int32_t)b);
    t->p = p;
}
/* tab[i] for each lane's i, 0 <= i < LKV_P2_NBINS_MAX. */
static inline vi vi_lut_get(const vi_lut *t, vi i)
{
    const vi w = _mm512_sub_epi32(i, t->base); /* the high word is 0 where it is < 128 */
    const vi lo = _mm512_permutex2var_epi16(t->w[0], w, t->w[1]);
    const vi hi = _mm512_permutex2var_epi16(t->w[2], w, t->w[3]);
    const __mmask16 up = _mm512_test_epi32_mask(w, _mm512_set1_epi32(64));
    vi r = _mm512_and_si512(_mm512_mask_blend_epi32(up, lo, hi), _mm512_set1_epi32(0xffff));
    const __mmask16 out = _mm512_cmpge_epu32_mask(w, _mm512_set1_epi32(128));
    if (out) {
        const vi g =
            _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), out, i, (const void *)t->p, 2);
        r = _mm512_mask_srli_epi32(r, out, g, 16);
    }
    return r;
}
static inline vi vi_h_from_f(vf a)
{
    return _mm512_cvtepu16_epi32(_mm512_cvtps_ph(a, SK_RNE));
}
static inline vf vf_from_h(vi h)
{
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h));
}

static inline vq vq_set1(uint64_t a)
{
    return _mm512_set1_epi64((long long)a);
}
static inline vq vq_load(const uint64_t *p)
{
    return _mm512_loadu_si512(p);
}
static inline void vq_store(uint64_t *p, vq a)
{
    _mm512_storeu_si512(p, a);
}
static inline vq vq_or(vq a, vq b)
{
    return _mm512_or_si512(a, b);
}
static inline vq vq_and(vq a, vq b)
{
    return _mm512_and_si512(a, b);
}
static inline vq vq_sll(vq a, uint32_t n)
{
    return _mm512_sll_epi64(a, _mm_cvtsi32_si128((int)n));
}
static inline vq vq_srl(vq a, uint32_t n)
{
    return _mm512_srl_epi64(a, _mm_cvtsi32_si128((int)n));
}
static inline vq vq_even(vi a)
{
    return _mm512_and_si512(a, _mm512_set1_epi64(0xffffffff));
}
static inline vq vq_odd(vi a)
{
    return _mm512_srli_epi64(a, 32);
}
/* The low 32 bits of each 64-bit lane, back in 32-bit lane order. */
static inline vi vi_from_eo(vq e, vq o)
{
    return _mm512_mask_blend_epi32(0xAAAA, e, _mm512_slli_epi64(o, 32));
}

/* 8-bit masks of the even and odd lanes -> one 16-bit lane mask. */
static inline unsigned sk_interleave(unsigned e, unsigned o)
{
    unsigned x = e & 0xffu, y = o & 0xffu;
    x = (x | (x << 4)) & 0x0f0fu;
    x = (x | (x << 2)) & 0x3333u;
    x = (x | (x << 1)) & 0x5555u;
    y = (y | (y << 4)) & 0x0f0fu;
    y = (y | (y << 2)) & 0x3333u;
    y = (y | (y << 1)) & 0x5555u;
    return x | (y << 1);
}
/* The even (or, shifted, odd) bits of a 16-bit lane mask as 8 bits. */
static inline __mmask8 sk_compress(unsigned m)
{
    m &= 0x5555u;
    m = (m | (m >> 1)) & 0x3333u;
    m = (m | (m >> 2)) & 0x0f0fu;
    m = (m | (m >> 4)) & 0x00ffu;
    return (__mmask8)m;
}
static inline unsigned vq_nz_bits(vq e, vq o)
{
    return sk_interleave(_mm512_test_epi64_mask(e, e), _mm512_test_epi64_mask(o, o));
}
static inline vq vq_add(vq a, vq b)
{
    return _mm512_add_epi64(a, b);
}
static inline vq vq_mul_e(vi a, vi b)
{
    return _mm512_mul_epu32(a, b);
}
static inline vq vq_mul_o(vi a, vi b)
{
    return _mm512_mul_epu32(_mm512_srli_epi64(a, 32), _mm512_srli_epi64(b, 32));
}
static inline unsigned vq_uge_bits(vq e, vq o, uint64_t lim)
{
    return sk_interleave(_mm512_cmpge_epu64_mask(e, vq_set1(lim)),
                         _mm512_cmpge_epu64_mask(o, vq_set1(lim)));
}
static inline vm vm_from_bits(unsigned b)
{
    return (vm)b;
}

#include "simd_kernel.h"

static inline void sk_idx64(vi x, vi k, vi y, vm half, uint64_t ma, vq *e, vq *o)
{
    const vq lo = _mm512_set1_epi64(0xffffffff), mav = vq_set1(ma);
    const vq pe = _mm512_add_epi64(_mm512_mul_epu32(x, k), _mm512_and_si512(y, lo));
    const vq po =
        _mm512_add_epi64(_mm512_mul_epu32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(k, 32)),
                         _mm512_srli_epi64(y, 32));
    *e = _mm512_mask_blend_epi64(sk_compress(half), _mm512_srli_epi64(pe, 1),
                                 _mm512_add_epi64(pe, mav));
    *o = _mm512_mask_blend_epi64(sk_compress(half >> 1), _mm512_srli_epi64(po, 1),
                                 _mm512_add_epi64(po, mav));
}

/* One half (even or odd lanes) of sk_split: P / K with K < 2^32 and a
 * quotient below 2^32. The double estimate is within 1 of the quotient
 * (relative error a few 2^-53 on a value below 2^32), and the remainder's
 * sign and size correct it. */
static inline void sk_split8(const sk_consts *c, vq idx, vq *x, vq *y, __mmask8 *half,
                             __mmask8 *bad)
{
    const vq one = vq_set1(1);
    *bad = _mm512_cmpge_epu64_mask(idx, vq_set1(c->codebook));
    *half = _mm512_cmpge_epu64_mask(idx, vq_set1(c->ma));
    const vq p = _mm512_mask_blend_epi64(*half, _mm512_add_epi64(idx, idx),
                                         _mm512_sub_epi64(idx, vq_set1(c->ma)));
    const vq k = _mm512_mask_blend_epi64(*half, vq_set1(c->b4), vq_set1(c->c3q));
    const __m512d inv = _mm512_mask_blend_pd(*half, _mm512_set1_pd(1.0 / (double)c->b4),
                                             _mm512_set1_pd(1.0 / (double)c->c3q));
    vq q = _mm512_cvttpd_epu64(_mm512_mul_pd(_mm512_cvtepu64_pd(p), inv));
    q = _mm512_min_epu64(q, vq_set1(0xffffffffu));
    vq r = _mm512_sub_epi64(p, _mm512_mul_epu32(q, k));
    const __mmask8 neg = _mm512_cmplt_epi64_mask(r, _mm512_setzero_si512());
    q = _mm512_mask_sub_epi64(q, neg, q, one);
    r = _mm512_mask_add_epi64(r, neg, r, k);
    const __mmask8 big = _mm512_cmpge_epu64_mask(r, k);
    *x = _mm512_mask_add_epi64(q, big, q, one);
    *y = _mm512_mask_sub_epi64(r, big, r, k);
}

static inline unsigned sk_split(const sk_consts *c, vq e, vq o, vi *x, vi *y, vm *half)
{
    vq xe, ye, xo, yo;
    __mmask8 he, be, ho, bo;
    sk_split8(c, e, &xe, &ye, &he, &be);
    sk_split8(c, o, &xo, &yo, &ho, &bo);
    *x = vi_from_eo(xe, xo);
    *y = vi_from_eo(ye, yo);
    *half = (vm)sk_interleave(he, ho);
    return sk_interleave(be, bo);
}

/* x / m and x % m for x < 2^44 and m < 2^22 (quotient < 2^22): the
 * correctly rounded double quotient lies within 2^-31 of x/m, closer than
 * any fraction r/m >= 2^-22 gets to the next integer, so its floor is exact. */
static inline void sk_split_by8(vq x, vq m, vq *q, vq *r)
{
    const __m512d qd = _mm512_div_pd(_mm512_cvtepu64_pd(x), _mm512_cvtepu64_pd(m));
    *q = _mm512_cvttpd_epu64(_mm512_roundscale_pd(qd, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC));
    *r = _mm512_sub_epi64(x, _mm512_mul_epu32(*q, m));
}

static inline void sk_split_by(vq e, vq o, vi m, vi *q, vi *r)
{
    vq qe, re, qo, ro;
    sk_split_by8(e, vq_even(m), &qe, &re);
    sk_split_by8(o, vq_odd(m), &qo, &ro);
    *q = vi_from_eo(qe, qo);
    *r = vi_from_eo(re, ro);
}

/* In-place transpose of 16 rows of 16 floats. */
static inline __attribute__((always_inline)) void sk_transpose(vf *r)
{
    vf t[16], u[16];
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 4; i++) {
        const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
        const __m512d c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
        u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
#pragma GCC unroll 16
    for (int c = 0; c < 4; c++) {
        const vf v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
        const vf w0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xdd);
        const vf v1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        const vf w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xdd);
        r[c] = _mm512_shuffle_f32x4(v0, v1, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(v0, v1, 0xdd);
        r[4 + c] = _mm512_shuffle_f32x4(w0, w1, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(w0, w1, 0xdd);
    }
}

static inline void sk_load_chunk(lkv_dtype dt, const uint8_t *const *rows, uint32_t off, vf *out)
{
    switch (dt) {
    case LKV_DTYPE_BF16:
#pragma GCC unroll 16
        for (int l = 0; l < 16; l++) {
            const __m256i h = _mm256_loadu_si256((const __m256i *)(rows[l] + 2u * off));
            out[l] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        }
        break;
    case LKV_DTYPE_FP16:
#pragma GCC unroll 16
        for (int l = 0; l < 16; l++)
            out[l] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(rows[l] + 2u * off)));
        break;
    case LKV_DTYPE_FP32:
#pragma GCC unroll 16
        for (int l = 0; l < 16; l++)
            out[l] = _mm512_loadu_ps((const float *)(rows[l] + 4u * off));
        break;
    }
    sk_transpose(out);
}

static inline void sk_store_chunk(lkv_dtype dt, uint8_t *const *rows, unsigned cnt, uint32_t off,
                                  const vf *in)
{
    vf r[16];
#pragma GCC unroll 16
    for (int l = 0; l < 16; l++)
        r[l] = in[l];
    sk_transpose(r);
    switch (dt) {
    case LKV_DTYPE_BF16: {
        /* lkv_math_f32_to_bf16 on finite values: (x + 0x7fff + lsb) >> 16 */
        const vi bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
        for (unsigned l = 0; l < cnt; l++) {
            const vi x = _mm512_castps_si512(r[l]);
            const vi lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), one);
            const vi b = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(x, bias), lsb), 16);
            _mm256_storeu_si256((__m256i *)(rows[l] + 2u * off), _mm512_cvtepi32_epi16(b));
        }
        break;
    }
    case LKV_DTYPE_FP16:
        for (unsigned l = 0; l < cnt; l++)
            _mm256_storeu_si256((__m256i *)(rows[l] + 2u * off), _mm512_cvtps_ph(r[l], SK_RNE));
        break;
    case LKV_DTYPE_FP32:
        for (unsigned l = 0; l < cnt; l++)
            _mm512_storeu_ps((float *)(rows[l] + 4u * off), r[l]);
        break;
    }
}

lkv_status lkv_encode_avx512(const lkv_derived *d, lkv_dtype dt, const void *src, size_t n,
                             uint8_t *dst, lkv_diag *diag)
{
    return sk_encode(d, dt, src, n, dst, diag);
}

lkv_status lkv_decode_avx512(const lkv_derived *d, const uint8_t *src, size_t n, lkv_dtype dt,
                             void *dst, lkv_diag *diag)
{
    return sk_decode(d, src, n, dt, dst, diag);
}

#include "p2_avx512.h"
#include "p2_simd.h"

/* One instance of p2v_slots per mode: the rotated one is the code it was
 * before version 4's channel mode. */
static int p2_slot(const lkv_p2_model *m, const lkv_p2_vtab *vt, const lkv_p2_piece *pc,
                   const uint8_t *body, size_t len, size_t *pos, uint32_t *state, const float *rn,
                   uint8_t *const *rows, lkv_dtype dt)
{
    int16_t kt[LKV_DIM_MAX * LKV_P2_LANES];
    p2v_stream st = {body, len, *pos, state, rn, rows, pc};
    const int ok = pc ? p2v_slots(m, vt, &st, 1, kt, dt, 1) : p2v_slots(m, vt, &st, 1, kt, dt, 0);
    *pos = st.pos;
    return ok;
}

static int p2_slot2(const lkv_p2_model *m, const lkv_p2_vtab *vt, lkv_p2_slot_io *io, lkv_dtype dt)
{
    if (m->dim > LKV_P2_PAIR_DIM_MAX)
        return 0;
    int16_t kt[LKV_P2_PAIR_DIM_MAX * 2 * LKV_P2_LANES];
    p2v_stream st[2];
    for (int i = 0; i < 2; i++)
        st[i] = (p2v_stream){io[i].body, io[i].len,  io[i].pos, io[i].state,
                             io[i].rn,   io[i].rows, io[i].pc};
    const int ok =
        io[0].pc ? p2v_slots(m, vt, st, 2, kt, dt, 1) : p2v_slots(m, vt, st, 2, kt, dt, 0);
    io[0].pos = st[0].pos;
    io[1].pos = st[1].pos;
    return ok;
}

const lkv_p2_kernels lkv_p2_kernels_avx512 = {16,
                                              p2_slot,
                                              p2_slot2,
                                              p2_simd_quantise,
                                              p2v_encode_block,
                                              p2_simd_estimate,
                                              p2_simd_est_squares,
                                              p2_simd_est_chan,
                                              p2_simd_pt_squares};
