/* SPDX-License-Identifier: Apache-2.0 */
/*
 * codec.c - parameters, status names, run-time path selection and the batch
 * entry points of the codec.
 *
 * Design note: validation happens here, once per call, so the kernels of
 * every instruction-set path can assume good parameters and a known dtype.
 * Path selection asks the CPU on each call (__builtin_cpu_supports reads a
 * value libgcc filled at start), which keeps the library free of mutable
 * globals.
 */
#include "lkv_codec_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const status_names[] = {
#define LKV_X_NAME(name, msg) "LKV_" #name,
    LKV_STATUS_LIST(LKV_X_NAME)
#undef LKV_X_NAME
};

static const char *const status_messages[] = {
#define LKV_X_MSG(name, msg) msg,
    LKV_STATUS_LIST(LKV_X_MSG)
#undef LKV_X_MSG
};

const char *lkv_status_name(lkv_status s)
{
    return (unsigned)s < LKV_STATUS_COUNT ? status_names[s] : "LKV_UNKNOWN";
}

const char *lkv_status_message(lkv_status s)
{
    return (unsigned)s < LKV_STATUS_COUNT ? status_messages[s] : "unknown status";
}

lkv_status lkv_fail(lkv_diag *diag, lkv_status code, uint64_t index, const char *fmt, ...)
{
    if (diag) {
        diag->code = code;
        diag->index = index;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(diag->msg, sizeof diag->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *lkv_dtype_name(lkv_dtype dt)
{
    switch (dt) {
    case LKV_DTYPE_BF16: return "bf16";
    case LKV_DTYPE_FP16: return "fp16";
    case LKV_DTYPE_FP32: return "fp32";
    }
    return "?";
}

size_t lkv_dtype_size(lkv_dtype dt)
{
    switch (dt) {
    case LKV_DTYPE_BF16:
    case LKV_DTYPE_FP16: return 2;
    case LKV_DTYPE_FP32: return 4;
    }
    return 0;
}

const char *lkv_variant_name(lkv_variant v)
{
    return v == LKV_VARIANT_E8 ? "E8" : v == LKV_VARIANT_D4 ? "D4" : "?";
}

uint32_t lkv_block_size(lkv_variant v)
{
    return v == LKV_VARIANT_E8 ? 8u : v == LKV_VARIANT_D4 ? 4u : 0u;
}

lkv_status lkv_dtype_check(int dtype, lkv_diag *diag)
{
    if (dtype != LKV_DTYPE_BF16 && dtype != LKV_DTYPE_FP16 && dtype != LKV_DTYPE_FP32)
        return lkv_fail(diag, LKV_ERR_DTYPE, UINT64_MAX,
                        "dtype=%d is not one of bf16(1), fp16(2), fp32(3)", dtype);
    return LKV_OK;
}

uint32_t lkv_profile_of(const lkv_params *p)
{
    return p->profile == 0 ? LKV_PROFILE_1 : p->profile;
}

uint32_t lkv_p2_format_of(const lkv_params *p)
{
    return p->format == 0 ? LKV_FMT_VERSION_P3 : p->format;
}

uint32_t lkv_p2_chunk_vectors(const lkv_params *p)
{
    return lkv_p2_format_of(p) == LKV_FMT_VERSION_P2 ? LKV_P2_CHUNK_VECTORS_V2
                                                     : LKV_P2_CHUNK_VECTORS;
}

lkv_status lkv_params_check(const lkv_params *p, lkv_diag *diag)
{
    const uint32_t prof = lkv_profile_of(p);
    if (prof != LKV_PROFILE_1 && prof != LKV_PROFILE_2)
        return lkv_fail(diag, LKV_ERR_VARIANT, UINT64_MAX, "profile=%u is not one of 1, 2",
                        p->profile);
    if (prof == LKV_PROFILE_1 && p->format > LKV_FMT_VERSION)
        return lkv_fail(diag, LKV_ERR_VARIANT, UINT64_MAX, "format=%u is not profile 1's (0 or 1)",
                        p->format);
    if (prof == LKV_PROFILE_2 && p->format != 0 &&
        (p->format < LKV_FMT_VERSION_P2 || p->format > LKV_FMT_VERSION_P4))
        return lkv_fail(diag, LKV_ERR_VARIANT, UINT64_MAX,
                        "format=%u is not one of profile 2's 2, 3, 4 (0: the default, 3)",
                        p->format);
    const uint32_t n = lkv_block_size(p->variant);
    if (n == 0)
        return lkv_fail(diag, LKV_ERR_VARIANT, UINT64_MAX, "variant=%d is not one of E8(1), D4(2)",
                        (int)p->variant);
    if (p->q < LKV_Q_MIN || p->q > LKV_Q_MAX)
        return lkv_fail(diag, LKV_ERR_Q_RANGE, UINT64_MAX, "q_range=%u is outside 1..1023", p->q);
    if (p->dim < n || p->dim > LKV_DIM_MAX || p->dim % n != 0)
        return lkv_fail(diag, LKV_ERR_HEAD_DIM, UINT64_MAX,
                        "head_dim=%u is not a multiple of %u in %u..%u for %s", p->dim, n, n,
                        LKV_DIM_MAX, lkv_variant_name(p->variant));
    if (prof == LKV_PROFILE_2 && p->variant != LKV_VARIANT_E8)
        return lkv_fail(diag, LKV_ERR_VARIANT, UINT64_MAX,
                        "variant=%s is not supported by profile=2 (E8 only)",
                        lkv_variant_name(p->variant));
    return LKV_OK;
}

uint32_t lkv_bits_per_block(lkv_variant v, uint32_t q)
{
    const uint32_t n = lkv_block_size(v);
    if (n == 0 || q < LKV_Q_MIN || q > LKV_Q_MAX)
        return 0;
    return lkv_math_block_bits(n, q);
}

uint32_t lkv_bits_per_vector(const lkv_params *p)
{
    if (lkv_params_check(p, NULL) != LKV_OK || lkv_profile_of(p) != LKV_PROFILE_1)
        return 0;
    lkv_split s;
    lkv_split_init(p, &s);
    return s.bits;
}

size_t lkv_record_bytes(const lkv_params *p)
{
    if (lkv_params_check(p, NULL) != LKV_OK || lkv_profile_of(p) != LKV_PROFILE_1)
        return 0;
    lkv_split s;
    lkv_split_init(p, &s);
    return s.rec_bytes;
}

void lkv_derive(const lkv_params *p, lkv_derived *d)
{
    memset(d, 0, sizeof *d);
    d->p = *p;
    d->n = lkv_block_size(p->variant);
    d->nblocks = p->dim / d->n;
    d->k = lkv_math_block_bits(d->n, p->q);
    d->log2d = 0;
    while ((1u << d->log2d) < p->dim)
        d->log2d++;
    d->bits = d->nblocks * d->k + LKV_FMT_REC_HEAD_BITS;
    d->rec_bytes = (d->bits + 7u) / 8u;
    d->qf = (float)p->q;
    d->inv_sqrt_d = lkv_inv_sqrt_dim(d->log2d);
    d->e8_int_count = d->n == 8 ? lkv_math_e8_int_count(p->q) : 0;
    d->codebook = lkv_math_codebook_size(d->n, p->q);
}

void lkv_split_init(const lkv_params *p, lkv_split *s)
{
    memset(s, 0, sizeof *s);
    s->dim = p->dim;
    s->count = lkv_piece_count(p->dim);
    for (uint32_t j = 0; j < s->count; j++) {
        lkv_params pp = *p;
        pp.dim = lkv_piece_dim(p->dim, j);
        lkv_derive(&pp, &s->d[j]);
        s->off[j] = lkv_piece_offset(p->dim, j);
        s->rec_off[j] = s->rec_bytes;
        s->rec_bytes += s->d[j].rec_bytes;
        s->bits += s->d[j].bits;
    }
}

/* ------------------------------------------------------------------------ */
/* Instruction-set paths                                                     */

const char *lkv_isa_name(lkv_isa isa)
{
    switch (isa) {
    case LKV_ISA_AUTO: return "auto";
    case LKV_ISA_SCALAR: return "scalar";
    case LKV_ISA_AVX2: return "avx2";
    case LKV_ISA_AVX512: return "avx512";
    }
    return "?";
}

#if defined(LKV_HAVE_AVX2)
#include <cpuid.h>
/* F16C is CPUID.1:ECX bit 29 (clang 14's __builtin_cpu_supports lacks "f16c"). */
static int cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
}
#endif

int lkv_isa_supported(lkv_isa isa)
{
    switch (isa) {
    case LKV_ISA_AUTO:
    case LKV_ISA_SCALAR: return 1;
    case LKV_ISA_AVX2:
#if defined(LKV_HAVE_AVX2)
        return __builtin_cpu_supports("avx2") && cpu_has_f16c();
#else
        return 0;
#endif
    case LKV_ISA_AVX512:
#if defined(LKV_HAVE_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
        return 0;
#endif
    }
    return 0;
}

lkv_isa lkv_isa_best(void)
{
    if (lkv_isa_supported(LKV_ISA_AVX512))
        return LKV_ISA_AVX512;
    if (lkv_isa_supported(LKV_ISA_AVX2))
        return LKV_ISA_AVX2;
    return LKV_ISA_SCALAR;
}

static lkv_status pick_isa(lkv_isa isa, lkv_isa *out, lkv_diag *diag)
{
    if (isa == LKV_ISA_AUTO)
        isa = lkv_isa_best();
    if (!lkv_isa_supported(isa))
        return lkv_fail(diag, LKV_ERR_ISA, UINT64_MAX, "isa=%s is not supported here",
                        lkv_isa_name(isa));
    *out = isa;
    return LKV_OK;
}

/* The kernels of one instruction-set path. */
typedef struct lkv_path {
    lkv_encode_kernel encode;
    lkv_decode_kernel decode;
} lkv_path;

/* Validates the arguments shared by lkv_encode and lkv_decode, derives the
 * per-parameter constants of each piece and picks the path's kernels. */
static lkv_status prepare(const lkv_params *p, lkv_dtype dt, lkv_isa isa, lkv_split *s,
                          lkv_path *path, lkv_diag *diag)
{
    lkv_status st = lkv_params_check(p, diag);
    if (st == LKV_OK && lkv_profile_of(p) != LKV_PROFILE_1)
        st = lkv_fail(diag, LKV_ERR_VARIANT, UINT64_MAX,
                      "profile=%u has variable-size records: use lkv_p2_encode/lkv_p2_decode or "
                      "lkv_compress/lkv_decompress",
                      p->profile);
    if (st == LKV_OK)
        st = lkv_dtype_check((int)dt, diag);
    if (st == LKV_OK)
        st = pick_isa(isa, &isa, diag);
    if (st != LKV_OK)
        return st;
    lkv_split_init(p, s);
    *path = (lkv_path){lkv_encode_scalar, lkv_decode_scalar};
#if defined(LKV_HAVE_AVX512)
    if (isa == LKV_ISA_AVX512)
        *path = (lkv_path){lkv_encode_avx512, lkv_decode_avx512};
#endif
#if defined(LKV_HAVE_AVX2)
    if (isa == LKV_ISA_AVX2)
        *path = (lkv_path){lkv_encode_avx2, lkv_decode_avx2};
#endif
    return LKV_OK;
}

/*
 * A head_dim of several pieces on a SIMD path: rounds of SPLIT_ROUND
 * vectors, each piece gathered into a contiguous batch, coded by the path's
 * power-of-two kernel and scattered into its place in the records. A round
 * in which a kernel fails is redone whole by the scalar split kernel, which
 * reports the first failing vector and element of the whole vectors, as the
 * scalar path does. The scalar path needs no gathering.
 */
#define SPLIT_ROUND 16u
/* Bytes of the longest piece record: 512 elements, E8 at Q = 1023 (88-bit
 * indices); a split head_dim is below 1024, so no piece is longer. */
#define PIECE_REC_MAX ((LKV_DIM_MAX / 2u / 8u * 88u + LKV_FMT_REC_HEAD_BITS) / 8u)

static lkv_status encode_split(const lkv_split *s, const lkv_path *path, lkv_dtype dt,
                               const uint8_t *src, size_t n, uint8_t *dst, lkv_diag *diag)
{
    if (path->encode == lkv_encode_scalar)
        return lkv_encode_split_range(s, dt, src, 0, n, dst, diag);
    const size_t esz = lkv_dtype_size(dt), vbytes = (size_t)s->dim * esz;
    uint8_t in[SPLIT_ROUND * LKV_DIM_MAX / 2u * 4u];
    uint8_t rec[SPLIT_ROUND * PIECE_REC_MAX];
    for (size_t i = 0; i < n; i += SPLIT_ROUND) {
        const size_t cnt = n - i < SPLIT_ROUND ? n - i : SPLIT_ROUND;
        uint32_t j = 0;
        for (; j < s->count; j++) {
            const lkv_derived *d = &s->d[j];
            const size_t pbytes = (size_t)d->p.dim * esz;
            for (size_t v = 0; v < cnt; v++)
                memcpy(in + v * pbytes, src + (i + v) * vbytes + s->off[j] * esz, pbytes);
            if (path->encode(d, dt, in, cnt, rec, NULL) != LKV_OK)
                break;
            for (size_t v = 0; v < cnt; v++)
                memcpy(dst + (i + v) * s->rec_bytes + s->rec_off[j], rec + v * d->rec_bytes,
                       d->rec_bytes);
        }
        if (j < s->count) {
            const lkv_status st = lkv_encode_split_range(s, dt, src, i, i + cnt, dst, diag);
            if (st != LKV_OK)
                return st;
        }
    }
    return LKV_OK;
}

static lkv_status decode_split(const lkv_split *s, const lkv_path *path, const uint8_t *src,
                               size_t n, lkv_dtype dt, uint8_t *dst, lkv_diag *diag)
{
    if (path->decode == lkv_decode_scalar)
        return lkv_decode_split_range(s, src, 0, n, dt, dst, diag);
    const size_t esz = lkv_dtype_size(dt), vbytes = (size_t)s->dim * esz;
    uint8_t rec[SPLIT_ROUND * PIECE_REC_MAX];
    uint8_t out[SPLIT_ROUND * LKV_DIM_MAX / 2u * 4u];
    for (size_t i = 0; i < n; i += SPLIT_ROUND) {
        const size_t cnt = n - i < SPLIT_ROUND ? n - i : SPLIT_ROUND;
        uint32_t j = 0;
        for (; j < s->count; j++) {
            const lkv_derived *d = &s->d[j];
            const size_t pbytes = (size_t)d->p.dim * esz;
            for (size_t v = 0; v < cnt; v++)
                memcpy(rec + v * d->rec_bytes, src + (i + v) * s->rec_bytes + s->rec_off[j],
                       d->rec_bytes);
            if (path->decode(d, rec, cnt, dt, out, NULL) != LKV_OK)
                break;
            for (size_t v = 0; v < cnt; v++)
                memcpy(dst + (i + v) * vbytes + s->off[j] * esz, out + v * pbytes, pbytes);
        }
        if (j < s->count) {
            const lkv_status st = lkv_decode_split_range(s, src, i, i + cnt, dt, dst, diag);
            if (st != LKV_OK)
                return st;
        }
    }
    return LKV_OK;
}

lkv_status lkv_encode(const lkv_params *p, lkv_dtype dt, const void *src, size_t n, void *records,
                      lkv_isa isa, lkv_diag *diag)
{
    lkv_split s;
    lkv_path path;
    const lkv_status st = prepare(p, dt, isa, &s, &path, diag);
    if (st != LKV_OK || n == 0)
        return st;
    if (s.count == 1)
        return path.encode(&s.d[0], dt, src, n, records, diag);
    return encode_split(&s, &path, dt, src, n, records, diag);
}

lkv_status lkv_decode(const lkv_params *p, const void *records, size_t n, lkv_dtype dt, void *dst,
                      lkv_isa isa, lkv_diag *diag)
{
    lkv_split s;
    lkv_path path;
    const lkv_status st = prepare(p, dt, isa, &s, &path, diag);
    if (st != LKV_OK || n == 0)
        return st;
    if (s.count == 1)
        return path.decode(&s.d[0], records, n, dt, dst, diag);
    return decode_split(&s, &path, records, n, dt, dst, diag);
}

/* ------------------------------------------------------------------------ */
/* Scalar conversions                                                        */

uint16_t lkv_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    return lkv_math_f32_to_f16(x);
}

float lkv_f16_to_f32(uint16_t h)
{
    const uint32_t x = lkv_math_f16_to_f32(h);
    float f;
    memcpy(&f, &x, 4);
    return f;
}

uint16_t lkv_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    return lkv_math_f32_to_bf16(x);
}

float lkv_bf16_to_f32(uint16_t b)
{
    const uint32_t x = (uint32_t)b << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}
