/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_headdims.c - head dims that are not a power of two (codec/FORMAT.md,
 * "Head dims that are not a power of two").
 *
 * A record of such a D must be, byte for byte, the records of its pieces
 * (the binary expansion of D, largest first) coded as vectors of their own:
 * that is checked against lkv_encode on the pieces, an independent route
 * through the power-of-two code that the golden files and the reference
 * oracle pin. Then every SIMD path must give the scalar path's bytes for
 * every head_dim the codec accepts, the same failures (code, vector,
 * message), and bad head dims keep their named error.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_codec.h"
#include "lkv_codec_math.h"
#include "testutil.h"

static const lkv_dtype all_dtypes[] = {LKV_DTYPE_BF16, LKV_DTYPE_FP16, LKV_DTYPE_FP32};
static const lkv_isa simd[] = {LKV_ISA_AVX2, LKV_ISA_AVX512};

Test(headdims, every_multiple_of_the_block_is_accepted_and_nothing_else)
{
    for (int v = 1; v <= 2; v++) {
        const uint32_t n = lkv_block_size((lkv_variant)v);
        for (uint32_t d = 0; d <= 1100; d++) {
            const lkv_params p = {(lkv_variant)v, 38, d};
            lkv_diag diag = {0};
            const lkv_status st = lkv_params_check(&p, &diag);
            if (d >= n && d <= 1024 && d % n == 0) {
                cr_assert_eq(st, LKV_OK, "%s D=%u", lkv_variant_name(p.variant), d);
                continue;
            }
            cr_assert_eq(st, LKV_ERR_HEAD_DIM, "%s D=%u", lkv_variant_name(p.variant), d);
            char want[32];
            snprintf(want, sizeof want, "head_dim=%u ", d);
            cr_assert(strstr(diag.msg, want) && strstr(diag.msg, "multiple of"), "%s", diag.msg);
            cr_assert_eq(lkv_record_bytes(&p), 0);
        }
    }
}

Test(headdims, record_size_is_the_pieces_sum)
{
    for (uint32_t q = 1; q <= 1023; q += 11)
        for (int v = 1; v <= 2; v++) {
            const uint32_t n = lkv_block_size((lkv_variant)v);
            for (uint32_t d = n; d <= 1024; d += n) {
                const lkv_params p = {(lkv_variant)v, q, d};
                size_t bytes = 0;
                uint32_t bits = 0, covered = 0;
                for (uint32_t j = 0; j < lkv_piece_count(d); j++) {
                    const lkv_params pp = {(lkv_variant)v, q, lkv_piece_dim(d, j)};
                    cr_assert_eq(lkv_piece_offset(d, j), covered, "D=%u piece %u", d, j);
                    covered += pp.dim;
                    bytes += lkv_record_bytes(&pp);
                    bits += lkv_bits_per_vector(&pp);
                }
                cr_assert_eq(covered, d);
                cr_assert_eq(lkv_record_bytes(&p), bytes, "D=%u", d);
                cr_assert_eq(lkv_bits_per_vector(&p), bits, "D=%u", d);
            }
        }
    /* The README's example: D = 96 = 64 + 32 at E8 Q = 38 (51-bit indices):
     * 8*51+32 = 440 bits (55 bytes) and 4*51+32 = 236 bits (30 bytes). */
    const lkv_params p96 = {LKV_VARIANT_E8, 38, 96};
    cr_expect_eq(lkv_record_bytes(&p96), 85);
    cr_expect_eq(lkv_bits_per_vector(&p96), 676);
    const lkv_params p576 = {LKV_VARIANT_E8, 38, 576};
    cr_expect_eq(lkv_record_bytes(&p576), 3296 / 8 + 440 / 8);
}

/* Copies piece j of n vectors of dim D (dtype size es) into a contiguous batch. */
static void *gather(const void *src, size_t n, uint32_t dim, uint32_t j, size_t es)
{
    const uint32_t pd = lkv_piece_dim(dim, j), off = lkv_piece_offset(dim, j);
    uint8_t *out = malloc(n * pd * es + 1);
    for (size_t i = 0; i < n; i++)
        memcpy(out + i * pd * es, (const uint8_t *)src + (i * dim + off) * es, pd * es);
    return out;
}

/* Records of D are the records of the pieces, side by side, and decode to
 * the pieces' decodes. */
static void check_concatenation(const lkv_params *p, lkv_dtype dt, lkv_rng *rng, size_t n)
{
    const size_t es = lkv_dtype_size(dt), rb = lkv_record_bytes(p);
    void *src = lkv_test_make(rng, dt, n, p->dim, 1.0);
    uint8_t *rec = malloc(n * rb + 1);
    uint8_t *out = malloc(n * p->dim * es + 1);
    cr_assert_eq(lkv_encode(p, dt, src, n, rec, LKV_ISA_SCALAR, NULL), LKV_OK);
    cr_assert_eq(lkv_decode(p, rec, n, dt, out, LKV_ISA_SCALAR, NULL), LKV_OK);
    size_t roff = 0;
    for (uint32_t j = 0; j < lkv_piece_count(p->dim); j++) {
        const lkv_params pp = {p->variant, p->q, lkv_piece_dim(p->dim, j)};
        const size_t prb = lkv_record_bytes(&pp), off = lkv_piece_offset(p->dim, j);
        void *piece = gather(src, n, p->dim, j, es);
        uint8_t *prec = malloc(n * prb + 1);
        uint8_t *pout = malloc(n * pp.dim * es + 1);
        cr_assert_eq(lkv_encode(&pp, dt, piece, n, prec, LKV_ISA_SCALAR, NULL), LKV_OK);
        cr_assert_eq(lkv_decode(&pp, prec, n, dt, pout, LKV_ISA_SCALAR, NULL), LKV_OK);
        for (size_t i = 0; i < n; i++) {
            cr_assert_eq(memcmp(rec + i * rb + roff, prec + i * prb, prb), 0,
                         "%s Q=%u D=%u: vector %zu piece %u (%u at %zu) differs",
                         lkv_variant_name(p->variant), p->q, p->dim, i, j, pp.dim, off);
            cr_assert_eq(memcmp(out + (i * p->dim + off) * es, pout + i * pp.dim * es, pp.dim * es),
                         0, "D=%u: decoded vector %zu piece %u differs", p->dim, i, j);
        }
        roff += prb;
        free(piece);
        free(prec);
        free(pout);
    }
    cr_assert_eq(roff, rb);
    free(src);
    free(rec);
    free(out);
}

Test(headdims, a_record_is_its_pieces_records)
{
    lkv_rng rng = {0x4eadd1u};
    static const uint32_t dims[] = {12, 24, 40, 80, 96, 112, 160, 192, 200, 576, 1016, 1020};
    static const uint32_t qs[] = {1, 38, 127, 128, 1023};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (size_t qi = 0; qi < sizeof qs / sizeof qs[0]; qi++)
            for (int v = 1; v <= 2; v++) {
                const lkv_params p = {(lkv_variant)v, qs[qi], dims[di]};
                if (lkv_params_check(&p, NULL) == LKV_OK)
                    check_concatenation(&p, all_dtypes[(di + qi) % 3], &rng, 21);
            }
}

/* Scalar vs one SIMD path: same records, same decoded bytes, same failure. */
static void check_paths(lkv_isa isa, const lkv_params *p, lkv_dtype dt, const void *src, size_t n,
                        const char *ctx)
{
    const size_t rb = lkv_record_bytes(p);
    uint8_t *ra = malloc(n * rb + 1), *rg = malloc(n * rb + 1);
    memset(ra, 0, n * rb);
    memset(rg, 0, n * rb);
    lkv_diag da = {0}, dg = {0};
    const lkv_status sa = lkv_encode(p, dt, src, n, ra, LKV_ISA_SCALAR, &da);
    const lkv_status sg = lkv_encode(p, dt, src, n, rg, isa, &dg);
    cr_assert_eq(sg, sa, "%s: encode %s %s, scalar %s", ctx, lkv_isa_name(isa), lkv_status_name(sg),
                 lkv_status_name(sa));
    if (sa != LKV_OK) {
        cr_assert_eq(dg.index, da.index, "%s", ctx);
        cr_assert_str_eq(dg.msg, da.msg, "%s", ctx);
        /* the vectors before the failing one are coded alike */
        cr_assert_eq(memcmp(ra, rg, da.index * rb), 0, "%s", ctx);
    } else {
        cr_assert_eq(memcmp(ra, rg, n * rb), 0, "%s: records differ", ctx);
    }
    for (size_t t = 0; t < 3 && sa == LKV_OK; t++) {
        const size_t ob = n * p->dim * lkv_dtype_size(all_dtypes[t]);
        uint8_t *oa = malloc(ob + 1), *og = malloc(ob + 1);
        cr_assert_eq(lkv_decode(p, ra, n, all_dtypes[t], oa, LKV_ISA_SCALAR, NULL), LKV_OK);
        cr_assert_eq(lkv_decode(p, ra, n, all_dtypes[t], og, isa, NULL), LKV_OK);
        cr_assert_eq(memcmp(oa, og, ob), 0, "%s: decode to %s differs", ctx,
                     lkv_dtype_name(all_dtypes[t]));
        free(oa);
        free(og);
    }
    free(ra);
    free(rg);
}

Test(headdims, simd_paths_match_scalar_at_every_head_dim, .timeout = 600)
{
    lkv_rng rng = {0x51dd1u};
    static const uint32_t qs[] = {2, 38, 127, 152};
    int ran = 0;
    for (size_t ii = 0; ii < 2; ii++) {
        if (!lkv_isa_supported(simd[ii]))
            continue;
        ran++;
        for (int v = 1; v <= 2; v++) {
            const uint32_t n = lkv_block_size((lkv_variant)v);
            for (uint32_t d = n; d <= 1024; d += n) {
                const lkv_params p = {(lkv_variant)v, qs[(d / n) % 4], d};
                const lkv_dtype dt = all_dtypes[(d / n) % 3];
                const size_t cnt = 17 + (d / n) % 19; /* not a multiple of 8 or 16 */
                void *src = lkv_test_make(&rng, dt, cnt, d, (d / n) % 5 == 0 ? 40.0 : 1.0);
                char ctx[96];
                snprintf(ctx, sizeof ctx, "%s %s Q=%u D=%u %s n=%zu", lkv_isa_name(simd[ii]),
                         lkv_variant_name(p.variant), p.q, d, lkv_dtype_name(dt), cnt);
                check_paths(simd[ii], &p, dt, src, cnt, ctx);
                free(src);
            }
        }
    }
    if (!ran)
        cr_skip_test("this CPU (or build) has no SIMD path");
}

/* A NaN in a later piece, and a norm overflow in one piece only: every path
 * reports the same vector, element and message. */
Test(headdims, failures_name_the_whole_vector)
{
    const lkv_params p = {LKV_VARIANT_E8, 38, 96};
    lkv_rng rng = {0xfa11u};
    const size_t n = 40;
    float *x = lkv_test_make(&rng, LKV_DTYPE_FP32, n, 96, 1.0);
    uint8_t *rec = malloc(n * lkv_record_bytes(&p));
    x[21 * 96 + 70] = NAN; /* vector 21, element 70: piece 1 (32 at 64) */
    lkv_diag diag = {0};
    cr_assert_eq(lkv_encode(&p, LKV_DTYPE_FP32, x, n, rec, LKV_ISA_SCALAR, &diag),
                 LKV_ERR_NONFINITE);
    cr_assert_eq(diag.index, 21);
    cr_assert(strstr(diag.msg, "vector 21 element 70"), "%s", diag.msg);
    for (size_t ii = 0; ii < 2; ii++)
        if (lkv_isa_supported(simd[ii]))
            check_paths(simd[ii], &p, LKV_DTYPE_FP32, x, n, "NaN in piece 1");
    x[21 * 96 + 70] = 1.0f;
    for (int j = 64; j < 96; j++)
        x[9 * 96 + j] = 20000.0f; /* piece 1 of vector 9: norm 113137 */
    cr_assert_eq(lkv_encode(&p, LKV_DTYPE_FP32, x, n, rec, LKV_ISA_SCALAR, &diag),
                 LKV_ERR_NORM_OVERFLOW);
    cr_assert_eq(diag.index, 9);
    for (size_t ii = 0; ii < 2; ii++)
        if (lkv_isa_supported(simd[ii]))
            check_paths(simd[ii], &p, LKV_DTYPE_FP32, x, n, "overflow in piece 1");
    free(x);
    free(rec);
}

/* A corrupt field in any piece (its scale, an index, its padding) fails
 * the whole vector with ERR_CORRUPT on every path. */
Test(headdims, a_corrupt_piece_fails_its_vector)
{
    const lkv_params p = {LKV_VARIANT_D4, 38, 12}; /* 8 + 4: both pieces padded */
    lkv_rng rng = {0xc0ffu};
    const size_t n = 33, rb = lkv_record_bytes(&p);
    const lkv_params p8 = {LKV_VARIANT_D4, 38, 8};
    const size_t rb8 = lkv_record_bytes(&p8);
    void *x = lkv_test_make(&rng, LKV_DTYPE_BF16, n, 12, 1.0);
    uint8_t *rec = malloc(n * rb);
    float *out = malloc(n * 12 * 4);
    cr_assert_eq(lkv_encode(&p, LKV_DTYPE_BF16, x, n, rec, LKV_ISA_AUTO, NULL), LKV_OK);
    const size_t where[] = {rb8 + 1,  /* piece 1's r16 high byte -> 0xff.. */
                            rb8 + 3,  /* piece 1's m16 */
                            rb - 1,   /* piece 1's last byte: padding */
                            rb8 - 1}; /* piece 0's last byte: padding */
    for (size_t w = 0; w < sizeof where / sizeof where[0]; w++) {
        uint8_t *bad = malloc(n * rb);
        memcpy(bad, rec, n * rb);
        bad[17 * rb + where[w]] = 0xff;
        for (int isa = LKV_ISA_SCALAR; isa <= LKV_ISA_AVX512; isa++) {
            if (!lkv_isa_supported((lkv_isa)isa))
                continue;
            lkv_diag diag = {0};
            cr_assert_eq(lkv_decode(&p, bad, n, LKV_DTYPE_FP32, out, (lkv_isa)isa, &diag),
                         LKV_ERR_CORRUPT, "byte %zu, %s", where[w], lkv_isa_name((lkv_isa)isa));
            cr_assert_eq(diag.index, 17);
            cr_assert(strstr(diag.msg, "record 17"), "%s", diag.msg);
        }
        free(bad);
    }
    free(x);
    free(rec);
    free(out);
}

/* The pieces are coded on their own, so the quality of a split D is about
 * that of its pieces: the decoded vectors stay close at every new dim. */
Test(headdims, round_trip_error_is_small)
{
    static const uint32_t dims[] = {80, 96, 112, 160, 192, 576};
    lkv_rng rng = {0x9a1u};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        const lkv_params p = {LKV_VARIANT_E8, 38, dims[di]};
        const size_t n = 64;
        float *x = lkv_test_make(&rng, LKV_DTYPE_FP32, n, p.dim, 1.0);
        uint8_t *rec = malloc(n * lkv_record_bytes(&p));
        float *y = malloc(n * p.dim * 4);
        cr_assert_eq(lkv_encode(&p, LKV_DTYPE_FP32, x, n, rec, LKV_ISA_AUTO, NULL), LKV_OK);
        cr_assert_eq(lkv_decode(&p, rec, n, LKV_DTYPE_FP32, y, LKV_ISA_AUTO, NULL), LKV_OK);
        double num = 0.0, den = 0.0;
        for (size_t i = 0; i < n * p.dim; i++) {
            num += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
            den += (double)x[i] * x[i];
        }
        /* E8 Q=38 on Gaussian data: about 34 dB SNR at D = 128 */
        cr_assert_lt(num / den, 1e-3, "D=%u: relative squared error %g", p.dim, num / den);
        free(x);
        free(rec);
        free(y);
    }
}

/* Random bytes and bit flips in split records: every path returns OK or
 * ERR_CORRUPT, the same one, for the same vector, never writing past dst. */
Test(headdims, damaged_records_fail_alike_on_every_path)
{
    static const lkv_params ps[] = {{LKV_VARIANT_E8, 38, 96},
                                    {LKV_VARIANT_E8, 1023, 576},
                                    {LKV_VARIANT_D4, 3, 44},
                                    {LKV_VARIANT_E8, 127, 120}};
    lkv_rng rng = {0xf1f1u};
    for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++) {
        const lkv_params *p = &ps[pi];
        const size_t n = 24, rb = lkv_record_bytes(p), ob = n * p->dim * 4;
        void *x = lkv_test_make(&rng, LKV_DTYPE_FP32, n, p->dim, 1.0);
        uint8_t *rec = malloc(n * rb);
        cr_assert_eq(lkv_encode(p, LKV_DTYPE_FP32, x, n, rec, LKV_ISA_SCALAR, NULL), LKV_OK);
        float *a = malloc(ob + 64), *b = malloc(ob + 64);
        for (int round = 0; round < 200; round++) {
            uint8_t *bad = malloc(n * rb);
            memcpy(bad, rec, n * rb);
            const int flips = 1 + (int)(lkv_rng_next(&rng) % 3);
            for (int f = 0; f < flips; f++) {
                const size_t at = lkv_rng_next(&rng) % (n * rb);
                if (round % 2)
                    bad[at] ^= (uint8_t)(1u << (lkv_rng_next(&rng) % 8));
                else
                    bad[at] = (uint8_t)lkv_rng_next(&rng);
            }
            lkv_diag da = {0};
            const lkv_status sa = lkv_decode(p, bad, n, LKV_DTYPE_FP32, a, LKV_ISA_SCALAR, &da);
            cr_assert(sa == LKV_OK || sa == LKV_ERR_CORRUPT, "%s", lkv_status_name(sa));
            for (size_t ii = 0; ii < 2; ii++) {
                if (!lkv_isa_supported(simd[ii]))
                    continue;
                memset(b, 0xA5, ob + 64);
                lkv_diag dg = {0};
                const lkv_status sg = lkv_decode(p, bad, n, LKV_DTYPE_FP32, b, simd[ii], &dg);
                cr_assert_eq(sg, sa, "D=%u round %d: %s", p->dim, round, lkv_isa_name(simd[ii]));
                if (sa != LKV_OK)
                    cr_assert_eq(dg.index, da.index);
                else
                    cr_assert_eq(memcmp(a, b, ob), 0, "D=%u round %d", p->dim, round);
                for (size_t g = 0; g < 64; g++)
                    cr_assert_eq(((uint8_t *)b)[ob + g], 0xA5, "wrote past dst");
            }
            free(bad);
        }
        free(x);
        free(rec);
        free(a);
        free(b);
    }
}
