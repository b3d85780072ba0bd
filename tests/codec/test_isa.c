/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_isa.c - every SIMD path (AVX2, AVX-512) against the scalar reference.
 *
 * The scalar path (ref.c) defines the bytes; these tests run the same input
 * through LKV_ISA_SCALAR and one SIMD path and require identical records,
 * identical decoded bytes in every output dtype, and identical failures
 * (code, vector index and message). Inputs cover every variant, Q from 1 to
 * 1023 (Q >= 128 goes through the path's large-Q route), every head_dim,
 * every dtype, batch sizes that are not a multiple of the lane count, and
 * inputs built to land on rounding ties and box edges. A path the CPU lacks
 * is skipped, not passed.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_codec.h"
#include "lkv_codec_math.h"
#include "testutil.h"

#define GUARD  64u
#define CANARY 0xA5u

static const lkv_dtype all_dtypes[] = {LKV_DTYPE_BF16, LKV_DTYPE_FP16, LKV_DTYPE_FP32};

static void need(lkv_isa isa)
{
    if (!lkv_isa_supported(isa))
        cr_skip_test("this CPU (or build) has no %s path", lkv_isa_name(isa));
}

static void check_guard(const uint8_t *buf, size_t len, const char *what, const char *ctx)
{
    for (size_t i = 0; i < GUARD; i++)
        cr_assert_eq(buf[len + i], CANARY, "%s: %s wrote past its %zu-byte output (byte +%zu)", ctx,
                     what, len, i);
}

static size_t first_diff(const uint8_t *a, const uint8_t *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (a[i] != b[i])
            return i;
    return len;
}

/* Decodes `rec` with the scalar path and with `isa` into every dtype and
 * requires the same status, diagnostics and bytes. */
static void check_decode(lkv_isa isa, const lkv_params *p, const uint8_t *rec, size_t n,
                         const char *ctx)
{
    for (size_t t = 0; t < 3; t++) {
        const lkv_dtype dt = all_dtypes[t];
        const size_t len = n * p->dim * lkv_dtype_size(dt);
        uint8_t *ref = malloc(len + GUARD), *got = malloc(len + GUARD);
        cr_assert(ref && got);
        memset(ref, CANARY, len + GUARD);
        memset(got, CANARY, len + GUARD);
        lkv_diag dr = {0}, dg = {0};
        const lkv_status sr = lkv_decode(p, rec, n, dt, ref, LKV_ISA_SCALAR, &dr);
        const lkv_status sg = lkv_decode(p, rec, n, dt, got, isa, &dg);
        cr_assert_eq(sg, sr, "%s: decode to %s: %s gave %s, scalar %s", ctx, lkv_dtype_name(dt),
                     lkv_isa_name(isa), lkv_status_name(sg), lkv_status_name(sr));
        if (sr != LKV_OK) {
            cr_assert_eq(dg.index, dr.index, "%s: decode: %s reports vector %llu, scalar %llu", ctx,
                         lkv_isa_name(isa), (unsigned long long)dg.index,
                         (unsigned long long)dr.index);
            cr_assert_str_eq(dg.msg, dr.msg, "%s: decode messages differ", ctx);
        } else {
            const size_t at = first_diff(ref, got, len);
            cr_assert_eq(
                at, len, "%s: decode to %s: %s differs from scalar at byte %zu (vector %zu)", ctx,
                lkv_dtype_name(dt), lkv_isa_name(isa), at, at / (p->dim * lkv_dtype_size(dt)));
        }
        check_guard(got, len, lkv_isa_name(isa), ctx);
        free(ref);
        free(got);
    }
}

/*
 * Encodes src with the scalar path and with `isa`: same status and
 * diagnostics, and on success the same records, which then must decode to
 * the same bytes on both paths. Returns the scalar status.
 */
static lkv_status check_encode(lkv_isa isa, const lkv_params *p, lkv_dtype dt, const void *src,
                               size_t n, const char *ctx)
{
    const size_t rb = lkv_record_bytes(p);
    uint8_t *ref = malloc(n * rb + GUARD), *got = malloc(n * rb + GUARD);
    cr_assert(ref && got);
    memset(ref, CANARY, n * rb + GUARD);
    memset(got, CANARY, n * rb + GUARD);
    lkv_diag dr = {0}, dg = {0};
    const lkv_status sr = lkv_encode(p, dt, src, n, ref, LKV_ISA_SCALAR, &dr);
    const lkv_status sg = lkv_encode(p, dt, src, n, got, isa, &dg);
    cr_assert_eq(sg, sr, "%s: encode: %s gave %s (%s), scalar %s (%s)", ctx, lkv_isa_name(isa),
                 lkv_status_name(sg), dg.msg, lkv_status_name(sr), dr.msg);
    if (sr != LKV_OK) {
        cr_assert_eq(dg.index, dr.index, "%s: encode: %s reports vector %llu, scalar %llu", ctx,
                     lkv_isa_name(isa), (unsigned long long)dg.index, (unsigned long long)dr.index);
        cr_assert_str_eq(dg.msg, dr.msg, "%s: encode messages differ", ctx);
    } else {
        const size_t at = first_diff(ref, got, n * rb);
        cr_assert_eq(at, n * rb, "%s: %s record bytes differ from scalar at byte %zu (vector %zu)",
                     ctx, lkv_isa_name(isa), at, at / rb);
        check_decode(isa, p, ref, n, ctx);
    }
    check_guard(got, n * rb, lkv_isa_name(isa), ctx);
    free(ref);
    free(got);
    return sr;
}

/* ------------------------------------------------------------------------ */
/* Random data over the whole parameter space                                */

static void random_sweep(lkv_isa isa)
{
    static const uint32_t qs[] = {1, 2, 3, 5, 10, 19, 37, 38, 76, 100, 127, 128, 152, 255, 1023};
    static const uint32_t dims[] = {4, 8, 16, 32, 64, 128, 256, 512, 1024};
    lkv_rng rng = {0x15a0001u + (uint64_t)isa};
    for (int v = 0; v < 2; v++) {
        const lkv_variant var = v ? LKV_VARIANT_D4 : LKV_VARIANT_E8;
        for (size_t qi = 0; qi < sizeof qs / sizeof qs[0]; qi++)
            for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
                const lkv_params p = {var, qs[qi], dims[di]};
                if (p.dim < lkv_block_size(var))
                    continue;
                /* A few hundred thousand coordinates per case at most. */
                const size_t n = p.dim <= 64 ? 203 : p.dim <= 256 ? 45 : 17;
                for (size_t t = 0; t < 3; t++) {
                    const double scale = t == 0 ? 1.0 : t == 1 ? 37.5 : 0.004;
                    void *src = lkv_test_make(&rng, all_dtypes[t], n, p.dim, scale);
                    char ctx[128];
                    snprintf(ctx, sizeof ctx, "%s Q=%u D=%u %s n=%zu", lkv_variant_name(var), p.q,
                             p.dim, lkv_dtype_name(all_dtypes[t]), n);
                    cr_assert_eq(check_encode(isa, &p, all_dtypes[t], src, n, ctx), LKV_OK, "%s",
                                 ctx);
                    free(src);
                }
            }
    }
}

Test(isa, avx2_random_sweep, .timeout = 300)
{
    need(LKV_ISA_AVX2);
    random_sweep(LKV_ISA_AVX2);
}
Test(isa, avx512_random_sweep, .timeout = 300)
{
    need(LKV_ISA_AVX512);
    random_sweep(LKV_ISA_AVX512);
}

/* Batch sizes around and between the lane counts (8 and 16). */
static void batch_sizes(lkv_isa isa)
{
    static const size_t ns[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 1000};
    lkv_rng rng = {0xba7c4u};
    const lkv_params ps[] = {{LKV_VARIANT_E8, 38, 128}, {LKV_VARIANT_D4, 38, 128},
                             {LKV_VARIANT_E8, 10, 64},  {LKV_VARIANT_E8, 38, 8},
                             {LKV_VARIANT_D4, 5, 4},    {LKV_VARIANT_E8, 152, 128}};
    for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            void *src = lkv_test_make(&rng, LKV_DTYPE_BF16, ns[ni], ps[pi].dim, 1.0);
            char ctx[128];
            snprintf(ctx, sizeof ctx, "%s Q=%u D=%u n=%zu", lkv_variant_name(ps[pi].variant),
                     ps[pi].q, ps[pi].dim, ns[ni]);
            cr_assert_eq(check_encode(isa, &ps[pi], LKV_DTYPE_BF16, src, ns[ni], ctx), LKV_OK);
            free(src);
        }
}

Test(isa, avx2_batch_sizes)
{
    need(LKV_ISA_AVX2);
    batch_sizes(LKV_ISA_AVX2);
}
Test(isa, avx512_batch_sizes)
{
    need(LKV_ISA_AVX512);
    batch_sizes(LKV_ISA_AVX512);
}

/* ------------------------------------------------------------------------ */
/* Rounding ties and box edges                                               */

/* In-place unnormalised Walsh-Hadamard transform, in double (exact here). */
static void wht(double *v, uint32_t dim)
{
    for (uint32_t h = 1; h < dim; h <<= 1)
        for (uint32_t i = 0; i < dim; i += 2 * h)
            for (uint32_t j = i; j < i + h; j++) {
                const double a = v[j], b = v[j + h];
                v[j] = a + b;
                v[j + h] = a - b;
            }
}

/*
 * Sparse +-1 vectors with 4, 16 or 64 nonzeros have a power-of-two norm, so
 * at D = 64 or 256 (where 1/sqrt(D) is a power of two too) u, y, m and s are
 * exact for a power-of-two Q, and z = Q*h_j/h_max with h the integer
 * Hadamard sums: many coordinates are exact half-integers (rint ties, equal
 * |d| in several coordinates) and the largest sit exactly on +-Q (box
 * edges). The test counts those coordinates to show the data does what it
 * claims, then compares the paths.
 */
static void ties_and_edges(lkv_isa isa)
{
    static const uint32_t qs[] = {1, 2, 4, 8, 16, 32, 64, 3, 38};
    static const uint32_t dims[] = {64, 256, 8, 16};
    lkv_rng rng = {0x7155u};
    size_t ties = 0, edges = 0;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        const uint32_t dim = dims[di];
        const size_t n = 160;
        float *src = calloc(n * dim, sizeof(float));
        double *h = malloc(dim * sizeof(double));
        cr_assert(src && h);
        for (size_t i = 0; i < n; i++) {
            const uint32_t nnz = dim >= 64 ? (i % 3 == 0   ? 4u
                                              : i % 3 == 1 ? 16u
                                                           : 64u)
                                           : (i % 2 ? 4u : dim);
            float *x = src + i * dim;
            for (uint32_t k = 0; k < nnz && k < dim; k++) {
                uint32_t j;
                do
                    j = (uint32_t)(lkv_rng_next(&rng) % dim);
                while (x[j] != 0.0f);
                x[j] = (lkv_rng_next(&rng) & 1) ? 1.0f : -1.0f;
            }
            if (i % 7 == 6) /* a constant vector: everything on one coordinate */
                for (uint32_t j = 0; j < dim; j++)
                    x[j] = 0.5f;
            for (uint32_t j = 0; j < dim; j++)
                h[j] = x[j];
            wht(h, dim);
            double hmax = 0.0;
            for (uint32_t j = 0; j < dim; j++)
                hmax = fabs(h[j]) > hmax ? fabs(h[j]) : hmax;
            for (size_t qi = 0; qi < 7; qi++)
                for (uint32_t j = 0; j < dim; j++) {
                    const double z = qs[qi] * h[j] / hmax;
                    ties += fabs(z - floor(z)) == 0.5;
                    edges += fabs(z) == qs[qi];
                }
        }
        for (size_t qi = 0; qi < sizeof qs / sizeof qs[0]; qi++)
            for (int v = 0; v < 2; v++) {
                const lkv_params p = {v ? LKV_VARIANT_D4 : LKV_VARIANT_E8, qs[qi], dim};
                char ctx[128];
                snprintf(ctx, sizeof ctx, "ties %s Q=%u D=%u", lkv_variant_name(p.variant), p.q,
                         dim);
                for (size_t t = 0; t < 3; t++) {
                    /* +-1, 0.5 and 0 are exact in every dtype */
                    void *buf = malloc(n * dim * 4);
                    for (size_t e = 0; e < n * dim; e++)
                        lkv_test_set(all_dtypes[t], buf, e, src[e]);
                    cr_assert_eq(check_encode(isa, &p, all_dtypes[t], buf, n, ctx), LKV_OK);
                    free(buf);
                }
            }
        free(src);
        free(h);
    }
    cr_assert_gt(ties, 10000u, "the tie inputs produced only %zu half-integer coordinates", ties);
    cr_assert_gt(edges, 1000u, "the edge inputs produced only %zu coordinates on +-Q", edges);
}

Test(isa, avx2_ties_and_edges)
{
    need(LKV_ISA_AVX2);
    ties_and_edges(LKV_ISA_AVX2);
}
Test(isa, avx512_ties_and_edges)
{
    need(LKV_ISA_AVX512);
    ties_and_edges(LKV_ISA_AVX512);
}

/*
 * The away-move fallback of the D_n box rule runs only when no toward move
 * fits the box, which for the codec means E8's half-integer candidate with
 * every coordinate outside [-Q, Q-1] and an odd count on the low side. With
 * t = one block of seven (1 - 1/(2Q)) and one -1, padded with +-1 and two
 * small dyadic values so that |t|^2 = 16, x = H t (unnormalised) at D = 64
 * has norm exactly 32, and every step of the encoder is exact: z = Q t, so
 * the block is seven coordinates at exactly Q - 1/2 (d = +0, all tied) and
 * one at -Q. The fallback must pick the first of the tied coordinates and
 * move it away (down).
 */
static void fallback_blocks(lkv_isa isa)
{
    const uint32_t dim = 64;
    const size_t n = 64;
    static const uint32_t qs[] = {2, 4};
    /* 16 - 7c^2 - 1 = ones + r1^2 + r2^2 for c = 1 - 1/(2Q) */
    static const double rest[][3] = {{11, 0.25, 0.0}, {9, 0.625, 0.5}};
    for (size_t qi = 0; qi < 2; qi++) {
        const double c = 1.0 - 1.0 / (2.0 * qs[qi]);
        float *x = calloc(n * dim, sizeof(float));
        double t[64];
        for (size_t i = 0; i < n; i++) {
            memset(t, 0, sizeof t);
            const uint32_t blk = (uint32_t)(i % 8), low = (uint32_t)((i * 5 / 8) % 8);
            const double sgn = (i / 8) % 2 ? -1.0 : 1.0;
            for (uint32_t j = 0; j < 8; j++)
                t[blk * 8 + j] = j == low ? -sgn : c * sgn;
            uint32_t j = (blk * 8 + 8) % dim;
            for (int k = 0; k < (int)rest[qi][0]; k++, j = (j + 1) % dim)
                t[j] = (k + (int)i) % 3 ? 1.0 : -1.0;
            t[j] = rest[qi][1];
            t[(j + 1) % dim] = -rest[qi][2];
            wht(t, dim);
            double ss = 0.0;
            for (uint32_t e = 0; e < dim; e++) {
                x[i * dim + e] = (float)t[e];
                ss += t[e] * t[e];
            }
            cr_assert_eq(ss, 1024.0, "construction: |x|^2 = %g, not 1024", ss);
        }
        const lkv_params p = {LKV_VARIANT_E8, qs[qi], dim};
        for (size_t dt = 0; dt < 3; dt++) {
            void *buf = malloc(n * dim * 4);
            for (size_t e = 0; e < n * dim; e++)
                lkv_test_set(all_dtypes[dt], buf, e, x[e]);
            char ctx[64];
            snprintf(ctx, sizeof ctx, "fallback Q=%u %s", p.q, lkv_dtype_name(all_dtypes[dt]));
            cr_assert_eq(check_encode(isa, &p, all_dtypes[dt], buf, n, ctx), LKV_OK);
            free(buf);
        }
        free(x);
    }
}

Test(isa, avx2_fallback_blocks)
{
    need(LKV_ISA_AVX2);
    fallback_blocks(LKV_ISA_AVX2);
}
Test(isa, avx512_fallback_blocks)
{
    need(LKV_ISA_AVX512);
    fallback_blocks(LKV_ISA_AVX512);
}

/* Random vectors quantised to multiples of 1/2 and 1/4: frequent exact
 * ties in the norm's rounding and in the coordinates. */
static void coarse_values(lkv_isa isa)
{
    lkv_rng rng = {0xc0a25eu};
    static const uint32_t qs[] = {1, 2, 4, 10, 16, 38, 127};
    for (size_t qi = 0; qi < sizeof qs / sizeof qs[0]; qi++)
        for (int v = 0; v < 2; v++) {
            const lkv_params p = {v ? LKV_VARIANT_D4 : LKV_VARIANT_E8, qs[qi], 64};
            const size_t n = 300;
            float *x = malloc(n * p.dim * sizeof(float));
            for (size_t e = 0; e < n * p.dim; e++) {
                const int k = (int)(lkv_rng_next(&rng) % 9) - 4;
                x[e] = (float)k * ((e / p.dim) % 2 ? 0.5f : 0.25f);
            }
            char ctx[96];
            snprintf(ctx, sizeof ctx, "coarse %s Q=%u", lkv_variant_name(p.variant), p.q);
            cr_assert_eq(check_encode(isa, &p, LKV_DTYPE_FP32, x, n, ctx), LKV_OK);
            free(x);
        }
}

Test(isa, avx2_coarse_values)
{
    need(LKV_ISA_AVX2);
    coarse_values(LKV_ISA_AVX2);
}
Test(isa, avx512_coarse_values)
{
    need(LKV_ISA_AVX512);
    coarse_values(LKV_ISA_AVX512);
}

/* ------------------------------------------------------------------------ */
/* Zeros, tiny and huge norms, the fp16 scale conversions                    */

/*
 * x = a * e_j has norm |a| exactly, so sweeping a over fp32 values from
 * 2^-40 to just below 65520 drives r16 (and m16) through fp16 zero,
 * subnormals, normals and the largest finite value: the SIMD fp16
 * conversions must round exactly as lkv_math_f32_to_f16.
 */
static void scales(lkv_isa isa)
{
    const uint32_t dim = 64;
    const size_t n = 4099;
    float *x = calloc(n * dim, sizeof(float));
    cr_assert(x);
    lkv_rng rng = {0x5ca1e5u};
    for (size_t i = 0; i < n; i++) {
        float a;
        if (i < 3000) { /* geometric sweep with random low mantissa bits */
            const double e = -40.0 + 56.0 * (double)i / 3000.0;
            a = (float)ldexp(1.0 + lkv_rng_uniform(&rng), (int)floor(e));
        } else if (i < 3100) { /* around the fp16 subnormal/normal boundary 2^-14 */
            a = nextafterf(0x1p-14f, (i & 1) ? 1.0f : 0.0f) * (1.0f + (float)(i - 3000) / 2048.0f);
        } else if (i < 3200) { /* just below the overflow bound 65520 */
            a = 65519.99f - (float)(i - 3100) * 0.37f;
        } else { /* tiny, with a second coordinate */
            a = (float)ldexp(lkv_rng_uniform(&rng), -(int)(i % 40));
            x[i * dim + (i % dim)] = a * 0.5f;
        }
        if (i % 5 == 0)
            a = -a;
        x[i * dim + (i * 7 % dim)] = a;
    }
    for (int v = 0; v < 2; v++)
        for (size_t qi = 0; qi < 3; qi++) {
            static const uint32_t qs[] = {1, 38, 127};
            const lkv_params p = {v ? LKV_VARIANT_D4 : LKV_VARIANT_E8, qs[qi], dim};
            char ctx[96];
            snprintf(ctx, sizeof ctx, "scales %s Q=%u", lkv_variant_name(p.variant), p.q);
            cr_assert_eq(check_encode(isa, &p, LKV_DTYPE_FP32, x, n, ctx), LKV_OK);
        }
    free(x);
}

Test(isa, avx2_scales)
{
    need(LKV_ISA_AVX2);
    scales(LKV_ISA_AVX2);
}
Test(isa, avx512_scales)
{
    need(LKV_ISA_AVX512);
    scales(LKV_ISA_AVX512);
}

/* All-zero vectors and fp16/bf16 subnormal inputs. */
static void zeros_and_subnormals(lkv_isa isa)
{
    const lkv_params p = {LKV_VARIANT_E8, 38, 128};
    for (size_t t = 0; t < 3; t++) {
        const size_t n = 40;
        void *buf = calloc(n * p.dim, 4);
        lkv_rng rng = {0x2e205u + t};
        for (size_t e = 0; e < n * p.dim; e++) {
            const size_t vec = e / p.dim;
            double val = 0.0;
            if (vec >= 16 && vec < 32) /* subnormal in fp16, tiny in bf16/fp32 */
                val = ldexp(lkv_rng_normal(&rng), -20);
            else if (vec >= 32)
                val = ldexp(lkv_rng_normal(&rng), -130); /* fp32 subnormals */
            lkv_test_set(all_dtypes[t], buf, e, val);
        }
        char ctx[64];
        snprintf(ctx, sizeof ctx, "zeros/subnormals %s", lkv_dtype_name(all_dtypes[t]));
        cr_assert_eq(check_encode(isa, &p, all_dtypes[t], buf, n, ctx), LKV_OK);
        free(buf);
    }
}

Test(isa, avx2_zeros_and_subnormals)
{
    need(LKV_ISA_AVX2);
    zeros_and_subnormals(LKV_ISA_AVX2);
}
Test(isa, avx512_zeros_and_subnormals)
{
    need(LKV_ISA_AVX512);
    zeros_and_subnormals(LKV_ISA_AVX512);
}

/* Every finite, valid r16 value on a decode to fp16: exercises the SIMD
 * fp32 -> fp16 output rounding across subnormals, normals and overflow. */
static void decode_all_r16(lkv_isa isa)
{
    const lkv_params p = {LKV_VARIANT_E8, 38, 8};
    const size_t rb = lkv_record_bytes(&p), n = 0x7c00 - 2;
    uint8_t *rec = calloc(n, rb);
    lkv_rng rng = {0x416u};
    for (size_t i = 0; i < n; i++) {
        uint8_t *r = rec + i * rb;
        const uint16_t r16 = (uint16_t)(i + 2), m16 = (uint16_t)(2 + lkv_rng_next(&rng) % 0x7bfe);
        r[0] = (uint8_t)r16;
        r[1] = (uint8_t)(r16 >> 8);
        r[2] = (uint8_t)m16;
        r[3] = (uint8_t)(m16 >> 8);
        /* a valid index: below M_a = (77^8 + 1) / 2, which needs 50 bits */
        const uint64_t idx = lkv_rng_next(&rng) % ((1ull << 49) + 12345);
        for (int b = 0; b < 51; b++)
            r[4 + (b >> 3)] |= (uint8_t)(((idx >> b) & 1u) << (b & 7));
    }
    check_decode(isa, &p, rec, n, "all r16 values");
    free(rec);
}

Test(isa, avx2_decode_all_r16)
{
    need(LKV_ISA_AVX2);
    decode_all_r16(LKV_ISA_AVX2);
}
Test(isa, avx512_decode_all_r16)
{
    need(LKV_ISA_AVX512);
    decode_all_r16(LKV_ISA_AVX512);
}

/* Writes the low k bits of v at bit pos, LSB first (record zeroed before). */
static void put_index(uint8_t *rec, uint32_t pos, lkv_u128 v, uint32_t k)
{
    for (uint32_t b = 0; b < k; b++, pos++)
        rec[pos >> 3] |= (uint8_t)((uint8_t)((v >> b) & 1u) << (pos & 7u));
}

/*
 * SIMD decoders split an E8 index into X = P / K and Y = P % K (K = B^4 for
 * the integer coset with P = 2*index, K = (2Q)^3 * Q for the half-integer
 * coset with P = index - M_a) from a floating-point estimate plus one
 * correction. Indices with Y = 0, 1, K-2, K-1 and X at both ends, the coset
 * boundary M_a - 1 / M_a and the codebook's last index and first invalid
 * one are where an off-by-one estimate would show.
 */
static void index_boundaries(lkv_isa isa)
{
    static const uint32_t qs[] = {1, 2, 3, 10, 38, 100, 126, 127, 128, 200};
    for (size_t qi = 0; qi < sizeof qs / sizeof qs[0]; qi++) {
        const lkv_params p = {LKV_VARIANT_E8, qs[qi], 8};
        const uint32_t k = lkv_bits_per_block(p.variant, p.q);
        const size_t rb = lkv_record_bytes(&p);
        const uint64_t q = p.q, b = 2 * q + 1, c = 2 * q;
        const lkv_u128 b4 = (lkv_u128)(b * b) * (b * b), c3q = (lkv_u128)(c * c * c) * q;
        const lkv_u128 ma = lkv_math_e8_int_count(p.q), cb = lkv_math_codebook_size(8, p.q);
        const lkv_u128 xs_i[] = {0, 1, b4 / 2, b4 - 2, b4 - 1};
        const lkv_u128 xs_h[] = {0, 1, (lkv_u128)c * c * c * c / 2, (lkv_u128)c * c * c * c - 1};
        lkv_u128 idx[64];
        size_t n = 0;
        for (size_t xi = 0; xi < 5; xi++)
            for (int yi = 0; yi < 4; yi++) { /* integer coset: P = X*B^4 + Y, even */
                const lkv_u128 y = yi == 0 ? 0 : yi == 1 ? 1 : yi == 2 ? b4 - 2 : b4 - 1;
                const lkv_u128 pp = xs_i[xi] * b4 + y;
                if ((pp & 1u) == 0 && pp / 2 < ma)
                    idx[n++] = pp / 2;
            }
        for (size_t xi = 0; xi < 4; xi++)
            for (int yi = 0; yi < 4; yi++) { /* half-integer coset */
                const lkv_u128 y = yi == 0 ? 0 : yi == 1 ? 1 : yi == 2 ? c3q - 2 : c3q - 1;
                if (c3q >= 2 || yi < 2)
                    idx[n++] = ma + xs_h[xi] * c3q + y;
            }
        idx[n++] = ma - 1;
        idx[n++] = ma;
        idx[n++] = cb - 1;
        uint8_t *rec = calloc(n + 1, rb);
        for (size_t i = 0; i < n; i++) {
            cr_assert(idx[i] < cb, "Q=%u: test index %zu is outside the codebook", p.q, i);
            rec[i * rb + 0] = 0x00;
            rec[i * rb + 1] = 0x3c; /* r16 = 1.0 */
            rec[i * rb + 2] = (uint8_t)(0x00 + i);
            rec[i * rb + 3] = 0x3c; /* m16 = 1.0 + i ulp */
            put_index(rec + i * rb, 32, idx[i], k);
        }
        char ctx[64];
        snprintf(ctx, sizeof ctx, "index boundaries Q=%u", p.q);
        check_decode(isa, &p, rec, n, ctx);
        /* and the first index past the codebook is corrupt, on every path */
        memset(rec + n * rb, 0, rb);
        memcpy(rec + n * rb, rec, 4);
        put_index(rec + n * rb, 32, cb, k);
        snprintf(ctx, sizeof ctx, "index past codebook Q=%u", p.q);
        check_decode(isa, &p, rec, n + 1, ctx);
        float out[8 * 64];
        cr_assert_eq(lkv_decode(&p, rec, n + 1, LKV_DTYPE_FP32, out, isa, NULL), LKV_ERR_CORRUPT,
                     "%s", ctx);
        free(rec);
    }
}

Test(isa, avx2_index_boundaries)
{
    need(LKV_ISA_AVX2);
    index_boundaries(LKV_ISA_AVX2);
}
Test(isa, avx512_index_boundaries)
{
    need(LKV_ISA_AVX512);
    index_boundaries(LKV_ISA_AVX512);
}

/* ------------------------------------------------------------------------ */
/* Failures: same code, same first vector, same message                      */

static void bad_inputs(lkv_isa isa)
{
    static const size_t ns[] = {1, 9, 17, 40};
    const lkv_params ps[] = {
        {LKV_VARIANT_E8, 38, 128}, {LKV_VARIANT_D4, 10, 8}, {LKV_VARIANT_E8, 200, 64}};
    lkv_rng rng = {0xbad1u};
    for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++)
        for (size_t t = 0; t < 3; t++)
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
                for (int kind = 0; kind < 6; kind++) {
                    const lkv_params *p = &ps[pi];
                    const lkv_dtype dt = all_dtypes[t];
                    const size_t n = ns[ni];
                    void *buf = lkv_test_make(&rng, dt, n, p->dim, 1.0);
                    const size_t v1 = (size_t)(lkv_rng_next(&rng) % n);
                    const size_t v2 = (size_t)(lkv_rng_next(&rng) % n);
                    const size_t e1 = v1 * p->dim + (size_t)(lkv_rng_next(&rng) % p->dim);
                    const size_t e2 = v2 * p->dim + (size_t)(lkv_rng_next(&rng) % p->dim);
                    switch (kind) {
                    case 0: lkv_test_set(dt, buf, e1, NAN); break;
                    case 1: lkv_test_set(dt, buf, e1, -INFINITY); break;
                    case 2: /* norm >= 65520 (fp16 and bf16 hold 40000 and 60000) */
                        lkv_test_set(dt, buf, e1, 40000.0);
                        lkv_test_set(dt, buf, v1 * p->dim + (e1 + 1) % p->dim, 60000.0);
                        break;
                    case 3: /* overflow in one vector, NaN in another: the first wins */
                        lkv_test_set(dt, buf, e1, 60000.0);
                        lkv_test_set(dt, buf, v1 * p->dim + (e1 + 1) % p->dim, 60000.0);
                        lkv_test_set(dt, buf, e2, NAN);
                        break;
                    case 4: /* NaN and overflow in the same vector: NONFINITE */
                        lkv_test_set(dt, buf, e1, 60000.0);
                        lkv_test_set(dt, buf, v1 * p->dim + (e1 + 1) % p->dim, 60000.0);
                        lkv_test_set(dt, buf, v1 * p->dim + (e1 + 2) % p->dim, INFINITY);
                        break;
                    default: /* just below the bound: valid */
                        lkv_test_set(dt, buf, e1, dt == LKV_DTYPE_BF16 ? 65280.0 : 65504.0);
                        break;
                    }
                    char ctx[128];
                    snprintf(ctx, sizeof ctx, "bad input kind %d %s Q=%u D=%u %s n=%zu v=%zu/%zu",
                             kind, lkv_variant_name(p->variant), p->q, p->dim, lkv_dtype_name(dt),
                             n, v1, v2);
                    const lkv_status st = check_encode(isa, p, dt, buf, n, ctx);
                    if (kind < 2)
                        cr_assert_eq(st, LKV_ERR_NONFINITE, "%s", ctx);
                    else if (kind == 2)
                        cr_assert_eq(st, LKV_ERR_NORM_OVERFLOW, "%s", ctx);
                    free(buf);
                }
}

Test(isa, avx2_bad_inputs)
{
    need(LKV_ISA_AVX2);
    bad_inputs(LKV_ISA_AVX2);
}
Test(isa, avx512_bad_inputs)
{
    need(LKV_ISA_AVX512);
    bad_inputs(LKV_ISA_AVX512);
}

/* Corrupt records: bad scales, indices past the codebook, padding bits,
 * random bytes; the first corrupt record is the one reported. */
static void corrupt_records(lkv_isa isa)
{
    const lkv_params ps[] = {{LKV_VARIANT_E8, 38, 128}, {LKV_VARIANT_E8, 38, 8},
                             {LKV_VARIANT_D4, 5, 4},    {LKV_VARIANT_D4, 127, 64},
                             {LKV_VARIANT_E8, 127, 16}, {LKV_VARIANT_E8, 1, 8},
                             {LKV_VARIANT_E8, 300, 64}};
    lkv_rng rng = {0xc022u};
    for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++) {
        const lkv_params *p = &ps[pi];
        const size_t n = 37, rb = lkv_record_bytes(p);
        const uint32_t bits = lkv_bits_per_vector(p), k = lkv_bits_per_block(p->variant, p->q);
        void *src = lkv_test_make(&rng, LKV_DTYPE_BF16, n, p->dim, 1.0);
        uint8_t *good = malloc(n * rb), *rec = malloc(n * rb);
        cr_assert_eq(lkv_encode(p, LKV_DTYPE_BF16, src, n, good, LKV_ISA_SCALAR, NULL), LKV_OK);
        for (int kind = 0; kind < 7; kind++)
            for (int rep = 0; rep < 6; rep++) {
                memcpy(rec, good, n * rb);
                const size_t v = (size_t)(lkv_rng_next(&rng) % n);
                uint8_t *r = rec + v * rb;
                switch (kind) {
                case 0: r[0] = r[1] = 0; break; /* r16 = 0 */
                case 1:
                    r[2] = 0x00;
                    r[3] = 0x7c;
                    break;                  /* m16 = inf */
                case 2: r[1] = 0xff; break; /* r16 NaN/negative */
                case 3:
                    r[2] = 1;
                    r[3] = 0;
                    break; /* m16 below eps */
                case 4: {  /* index all ones */
                    const uint32_t b =
                        (uint32_t)(lkv_rng_next(&rng) % (p->dim / lkv_block_size(p->variant)));
                    for (uint32_t j = 32 + b * k; j < 32 + (b + 1) * k; j++)
                        r[j >> 3] |= (uint8_t)(1u << (j & 7));
                    break;
                }
                case 5: /* a padding bit (where the record has any) */
                    if (bits & 7u)
                        r[rb - 1] |= (uint8_t)(0x80u);
                    break;
                default: /* random bytes in two records */
                    for (size_t j = 4; j < rb; j++)
                        r[j] = (uint8_t)lkv_rng_next(&rng);
                    rec[((v + 5) % n) * rb + rb / 2] ^= 0x5a;
                    break;
                }
                char ctx[128];
                snprintf(ctx, sizeof ctx, "corrupt kind %d %s Q=%u D=%u vector %zu", kind,
                         lkv_variant_name(p->variant), p->q, p->dim, v);
                check_decode(isa, p, rec, n, ctx);
            }
        free(src);
        free(good);
        free(rec);
    }
}

Test(isa, avx2_corrupt_records)
{
    need(LKV_ISA_AVX2);
    corrupt_records(LKV_ISA_AVX2);
}
Test(isa, avx512_corrupt_records)
{
    need(LKV_ISA_AVX512);
    corrupt_records(LKV_ISA_AVX512);
}

/* AUTO resolves to the best supported path and N = 0 is valid everywhere. */
Test(isa, auto_and_empty)
{
    const lkv_isa best = lkv_isa_best();
    cr_assert(lkv_isa_supported(best));
    cr_assert(best == LKV_ISA_SCALAR || lkv_isa_supported(LKV_ISA_AVX2),
              "a SIMD best path implies AVX2 support");
    const lkv_params p = {LKV_VARIANT_E8, 38, 128};
    for (int isa = LKV_ISA_AUTO; isa <= LKV_ISA_AVX512; isa++) {
        if (!lkv_isa_supported((lkv_isa)isa))
            continue;
        cr_assert_eq(lkv_encode(&p, LKV_DTYPE_BF16, NULL, 0, NULL, (lkv_isa)isa, NULL), LKV_OK);
        cr_assert_eq(lkv_decode(&p, NULL, 0, LKV_DTYPE_BF16, NULL, (lkv_isa)isa, NULL), LKV_OK);
    }
}
