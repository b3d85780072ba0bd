/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Codec profile 2 (docs/codec-v2.md, codec/FORMAT.md version 2): roundtrips
 * on the four datasets of bench/quality, the error against the numpy model
 * of bench/quality/codec_v2_levers.py, determinism, bits against Q, every
 * head dim and dtype, bad parameters, and corrupt or truncated input.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_codec.h"
#include "lkv_p2.h"
#include "testutil.h"

static lkv_params p2(uint32_t q, uint32_t dim)
{
    const lkv_params p = {LKV_VARIANT_E8, q, dim, LKV_PROFILE_2};
    return p;
}

/* The four datasets of bench/quality/codec_quality.c, regenerated with the
 * test PRNG (statistically, not bit for bit, the same data). */
enum { DS_NORMAL, DS_T3, DS_LOGNORMAL, DS_KEYS, DS_COUNT };
static const char *const ds_name[] = {"normal", "student_t3", "lognormal_channels", "keys"};

static float *make_dataset(int ds, size_t n, uint32_t dim, uint64_t seed)
{
    lkv_rng r = {seed};
    float *x = malloc(n * dim * sizeof *x);
    double scale[LKV_DIM_MAX], offset[LKV_DIM_MAX];
    for (uint32_t j = 0; j < dim; j++) {
        scale[j] = ds == DS_LOGNORMAL ? exp(1.5 * lkv_rng_normal(&r))
                   : ds == DS_KEYS    ? (j % 32 == 5 ? 20.0 : 1.0)
                                      : 1.0;
        offset[j] = ds == DS_KEYS ? 0.5 * lkv_rng_normal(&r) : 0.0;
    }
    for (size_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < dim; j++) {
            double v = lkv_rng_normal(&r);
            if (ds == DS_T3) {
                double c = 0.0;
                for (int k = 0; k < 3; k++) {
                    const double g = lkv_rng_normal(&r);
                    c += g * g;
                }
                v = v / sqrt(c / 3.0);
            }
            x[i * dim + j] = (float)(scale[j] * v + offset[j]);
        }
    return x;
}

typedef struct coded {
    unsigned char *buf;
    size_t len;
} coded;

static coded encode(const lkv_params *p, lkv_dtype dt, const void *x, size_t n)
{
    coded c;
    const size_t cap = lkv_p2_payload_bound(p, n);
    cr_assert(n == 0 || cap > 0, "bound of q=%u dim=%u n=%zu", p->q, p->dim, n);
    c.buf = malloc(cap + 1);
    lkv_diag d;
    const lkv_status st = lkv_p2_encode(p, dt, x, n, c.buf, cap, &c.len, &d);
    cr_assert_eq(st, LKV_OK, "encode q=%u dim=%u: %s", p->q, p->dim, d.msg);
    cr_assert_leq(c.len, cap);
    return c;
}

static double rel_mse(const float *x, const float *y, size_t count)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < count; i++) {
        const double e = (double)x[i] - (double)y[i];
        num += e * e;
        den += (double)x[i] * (double)x[i];
    }
    return num / den;
}

/* rel-MSE of decode(encode(x)) per vector, averaged (the numpy model's
 * rel_mse averages over vectors). */
static double roundtrip_err(const lkv_params *p, const float *x, size_t n, double *bits)
{
    coded c = encode(p, LKV_DTYPE_FP32, x, n);
    float *y = malloc(n * p->dim * sizeof *y);
    lkv_diag d;
    cr_assert_eq(lkv_p2_decode(p, c.buf, c.len, n, LKV_DTYPE_FP32, y, &d), LKV_OK, "%s", d.msg);
    double e = 0.0;
    for (size_t i = 0; i < n; i++)
        e += rel_mse(x + i * p->dim, y + i * p->dim, p->dim);
    if (bits)
        *bits = 8.0 * (double)c.len / (double)n;
    free(c.buf);
    free(y);
    return e / (double)n;
}

Test(p2, datasets_roundtrip_error_does_not_depend_on_the_data)
{
    /* The step is Q relative to the norm, so the error is the lattice's:
     * G(E8) * 16 / Q^2 = 1.147 / Q^2 on every dataset (design, section
     * "Bit accounting"). */
    for (int ds = 0; ds < DS_COUNT; ds++) {
        const size_t n = 1024;
        float *x = make_dataset(ds, n, 128, 11 + (uint64_t)ds);
        const lkv_params p = p2(54, 128);
        double bits;
        const double e = roundtrip_err(&p, x, n, &bits);
        const double want = 929.0 / 12960.0 * 16.0 / (54.0 * 54.0);
        cr_expect(fabs(e / want - 1.0) < 0.05, "%s: rel-MSE %.4g, lattice predicts %.4g",
                  ds_name[ds], e, want);
        cr_expect(bits > 700.0 && bits < 840.0, "%s: %.1f bits per vector", ds_name[ds], bits);
        free(x);
    }
}

Test(p2, error_matches_the_numpy_model)
{
    /* bench/results/codec-v2-levers-dev-vm-2core.json, dataset "normal",
     * "p2_e8": [bits, rel-MSE, sigma = Q/4] at sigma 2, 4, 8, 13.5, 32. */
    static const struct {
        uint32_t q;
        double mse, bits;
    } model[] = {{8, 0.017917667101018248, 416.12692737450675},
                 {16, 0.004477892611605468, 543.0461619095397},
                 {32, 0.0011196544129158429, 671.0203466053331},
                 {54, 0.0003936716811698258, 767.9898274749776},
                 {128, 7.005242495908669e-05, 929.0353296988194}};
    const size_t n = 2048;
    float *x = make_dataset(DS_NORMAL, n, 128, 5);
    for (size_t i = 0; i < sizeof model / sizeof model[0]; i++) {
        const lkv_params p = p2(model[i].q, 128);
        double bits;
        const double e = roundtrip_err(&p, x, n, &bits);
        cr_expect(fabs(e / model[i].mse - 1.0) < 0.04, "Q=%u: rel-MSE %.4g, model %.4g", model[i].q,
                  e, model[i].mse);
        /* The model counts ideal code lengths plus 8.3 bits of overhead; the
         * coder adds the chunk states and length and the tables' rounding. */
        cr_expect(fabs(bits - model[i].bits) < 0.02 * model[i].bits,
                  "Q=%u: %.1f bits per vector, model %.1f", model[i].q, bits, model[i].bits);
    }
    free(x);
}

Test(p2, q38_equivalent_rate_beats_profile1)
{
    /* Profile 1 E8 Q=38 on normal data: 4.05e-4 at 848 bits. Profile 2 at
     * Q=54 must reach that error in at most 784 bits (issue 14). */
    const size_t n = 2048;
    float *x = make_dataset(DS_NORMAL, n, 128, 6);
    const lkv_params p = p2(54, 128);
    double bits;
    const double e = roundtrip_err(&p, x, n, &bits);
    cr_expect(e <= 4.05e-4, "rel-MSE %.4g", e);
    cr_expect(bits <= 784.0, "%.1f bits per vector", bits);
    free(x);
}

Test(p2, deterministic_and_chunk_local)
{
    const size_t n = 300;
    float *x = make_dataset(DS_KEYS, n, 128, 7);
    const lkv_params p = p2(38, 128);
    coded a = encode(&p, LKV_DTYPE_FP32, x, n), b = encode(&p, LKV_DTYPE_FP32, x, n);
    cr_assert_eq(a.len, b.len);
    cr_assert(memcmp(a.buf, b.buf, a.len) == 0);
    /* Encoding 256 vectors and then 44 gives the same bytes: chunks depend
     * only on their own vectors (the CLI streams this way). */
    coded h = encode(&p, LKV_DTYPE_FP32, x, 256);
    coded t = encode(&p, LKV_DTYPE_FP32, x + 256 * 128, n - 256);
    cr_assert_eq(h.len + t.len, a.len);
    cr_assert(memcmp(h.buf, a.buf, h.len) == 0);
    cr_assert(memcmp(t.buf, a.buf + h.len, t.len) == 0);
    free(a.buf), free(b.buf), free(h.buf), free(t.buf);
    free(x);
}

Test(p2, larger_q_never_gives_fewer_bits)
{
    /* Mean bits over one Gaussian set, on a grid of Q where neighbours
     * differ by at least 4 % (adjacent large Q differ by 0.1 bit per vector,
     * below the sampling noise of any finite set), and every Q up to 64. */
    const size_t n = 512;
    float *x = make_dataset(DS_NORMAL, n, 128, 8);
    size_t prev = 0, prev_bound = 0;
    for (uint32_t q = 1; q <= 1023; q = q < 64 ? q + 1 : q + q / 24) {
        const lkv_params p = p2(q, 128);
        coded c = encode(&p, LKV_DTYPE_FP32, x, n);
        cr_expect_geq(c.len, prev, "Q=%u: %zu bytes, fewer than the previous Q's %zu", q, c.len,
                      prev);
        const size_t bound = lkv_p2_payload_bound(&p, n);
        cr_expect_geq(bound, prev_bound, "Q=%u: bound falls", q);
        prev = c.len;
        prev_bound = bound;
        free(c.buf);
    }
    free(x);
}

Test(p2, models_build_for_every_q_and_piece)
{
    lkv_p2_model *m = malloc(sizeof *m);
    for (uint32_t d = 8; d <= 1024; d *= 2)
        for (uint32_t q = 1; q <= 1023; q++) {
            cr_assert(lkv_p2_model_build(q, d, m), "q=%u dim=%u", q, d);
            cr_assert_eq(m->sym_vec, lkv_p2_syms_per_vec(q, d));
            for (int c = 0; c < 2; c++)
                for (int k = 0; k < 3; k++) {
                    const lkv_p2_table *t = &m->t[c][k];
                    cr_assert_eq(t->cum[t->nbins], LKV_P2_PROB_ONE);
                    for (uint32_t h = 0; h < t->nbins; h++)
                        cr_assert_gt(t->cum[h + 1], t->cum[h], "every bin codable");
                }
        }
    free(m);
    /* Our exp against libm: the model only needs it close. */
    for (int i = 0; i < 108; i++) {
        const double e = 0.37 * i;
        cr_expect(fabs(lkv_p2_exp_neg(e) / exp(-e) - 1.0) < 1e-12, "e=%g", e);
    }
}

Test(p2, every_head_dim_and_dtype)
{
    const lkv_dtype dts[] = {LKV_DTYPE_BF16, LKV_DTYPE_FP16, LKV_DTYPE_FP32};
    for (uint32_t d = 8; d <= 1024; d += 8) {
        const lkv_dtype dt = dts[(d / 8) % 3];
        const size_t n = 33 + (d / 8) % 5; /* two lanes' slots, a partial chunk */
        lkv_rng r = {d};
        void *x = lkv_test_make(&r, dt, n, d, 1.0);
        const lkv_params p = p2(54, d);
        coded c = encode(&p, dt, x, n);
        void *y = malloc(n * d * lkv_dtype_size(dt));
        lkv_diag diag;
        cr_assert_eq(lkv_p2_decode(&p, c.buf, c.len, n, dt, y, &diag), LKV_OK, "dim=%u: %s", d,
                     diag.msg);
        double num = 0.0, den = 0.0;
        for (size_t i = 0; i < n * d; i++) {
            const double a = lkv_test_get(dt, x, i), b = lkv_test_get(dt, y, i);
            num += (a - b) * (a - b);
            den += a * a;
        }
        /* 1.147/Q^2 = 3.9e-4 plus the output rounding of bf16 (~1e-5). */
        cr_expect_lt(num / den, 6e-4, "dim=%u %s: rel-MSE %.3g", d, lkv_dtype_name(dt), num / den);
        free(c.buf), free(x), free(y);
    }
}

Test(p2, zero_vectors_and_zero_size)
{
    const lkv_params p = p2(54, 128);
    size_t len = 99;
    cr_assert_eq(lkv_p2_encode(&p, LKV_DTYPE_BF16, NULL, 0, NULL, 0, &len, NULL), LKV_OK);
    cr_assert_eq(len, 0);
    cr_assert_eq(lkv_p2_decode(&p, NULL, 0, 0, LKV_DTYPE_BF16, NULL, NULL), LKV_OK);
    /* A container of shape [0, 128]. */
    const uint64_t shape[2] = {0, 128};
    unsigned char buf[128];
    cr_assert_eq(lkv_compress(&p, LKV_DTYPE_BF16, shape, 2, NULL, 0, buf, sizeof buf, &len,
                              LKV_ISA_AUTO, NULL),
                 LKV_OK);
    lkv_container_info info;
    cr_assert_eq(lkv_container_parse(buf, len, &info, NULL), LKV_OK);
    cr_assert_eq(info.n_vectors, 0);
    cr_assert_eq(lkv_profile_of(&info.params), LKV_PROFILE_2);
    /* All-zero vectors code to the zero point and decode to zeros. */
    float z[64 * 128] = {0}, y[64 * 128];
    coded c = encode(&p, LKV_DTYPE_FP32, z, 64);
    cr_assert_eq(lkv_p2_decode(&p, c.buf, c.len, 64, LKV_DTYPE_FP32, y, NULL), LKV_OK);
    for (size_t i = 0; i < 64 * 128; i++)
        cr_assert_eq(y[i], 0.0f);
    free(c.buf);
}

Test(p2, bad_params_are_refused_by_name)
{
    lkv_diag d;
    lkv_params p = p2(54, 128);
    p.profile = 3;
    cr_expect_eq(lkv_params_check(&p, &d), LKV_ERR_VARIANT);
    cr_expect(strstr(d.msg, "profile=3") != NULL, "%s", d.msg);
    p = p2(54, 128);
    p.variant = LKV_VARIANT_D4;
    cr_expect_eq(lkv_params_check(&p, &d), LKV_ERR_VARIANT);
    cr_expect(strstr(d.msg, "profile=2") != NULL && strstr(d.msg, "D4") != NULL, "%s", d.msg);
    p = p2(0, 128);
    cr_expect_eq(lkv_params_check(&p, &d), LKV_ERR_Q_RANGE);
    p = p2(1024, 128);
    cr_expect_eq(lkv_params_check(&p, &d), LKV_ERR_Q_RANGE);
    p = p2(54, 100);
    cr_expect_eq(lkv_params_check(&p, &d), LKV_ERR_HEAD_DIM);
    p = p2(54, 1032);
    cr_expect_eq(lkv_params_check(&p, &d), LKV_ERR_HEAD_DIM);
    /* Profile 1 is the default: 0 and 1 both mean it. */
    const lkv_params p0 = {LKV_VARIANT_E8, 38, 128};
    cr_expect_eq(lkv_profile_of(&p0), LKV_PROFILE_1);
    cr_expect_eq(lkv_record_bytes(&p0), 106);
    /* Fixed-size record calls refuse profile 2; profile 2 calls refuse 1. */
    p = p2(54, 128);
    cr_expect_eq(lkv_record_bytes(&p), 0);
    cr_expect_eq(lkv_bits_per_vector(&p), 0);
    float x[128] = {1.0f};
    unsigned char out[4096];
    cr_expect_eq(lkv_encode(&p, LKV_DTYPE_FP32, x, 1, out, LKV_ISA_AUTO, &d), LKV_ERR_VARIANT);
    cr_expect(strstr(d.msg, "profile=2") != NULL, "%s", d.msg);
    size_t len;
    cr_expect_eq(lkv_p2_encode(&p0, LKV_DTYPE_FP32, x, 1, out, sizeof out, &len, &d),
                 LKV_ERR_VARIANT);
    cr_expect_eq(lkv_p2_encode(&p, (lkv_dtype)7, x, 1, out, sizeof out, &len, &d), LKV_ERR_DTYPE);
}

Test(p2, bad_input_names_the_first_bad_vector)
{
    const size_t n = 128;
    float *x = make_dataset(DS_NORMAL, n, 128, 9);
    const lkv_params p = p2(54, 128);
    const size_t cap = lkv_p2_payload_bound(&p, n);
    unsigned char *buf = malloc(cap);
    size_t len;
    lkv_diag d;
    /* Vectors 100 and 7 are bad: the encoder codes slot 3 first, yet the
     * error names vector 7, as profile 1 does. */
    x[100 * 128 + 3] = NAN;
    x[7 * 128 + 9] = INFINITY;
    cr_assert_eq(lkv_p2_encode(&p, LKV_DTYPE_FP32, x, n, buf, cap, &len, &d), LKV_ERR_NONFINITE);
    cr_expect_eq(d.index, 7);
    cr_expect(strstr(d.msg, "vector 7 element 9") != NULL, "%s", d.msg);
    x[7 * 128 + 9] = 0.0f;
    x[100 * 128 + 3] = 0.0f;
    x[50 * 128] = 70000.0f;
    cr_assert_eq(lkv_p2_encode(&p, LKV_DTYPE_FP32, x, n, buf, cap, &len, &d),
                 LKV_ERR_NORM_OVERFLOW);
    cr_expect_eq(d.index, 50);
    x[50 * 128] = 0.0f;
    /* A buffer one byte short of the payload. */
    cr_assert_eq(lkv_p2_encode(&p, LKV_DTYPE_FP32, x, n, buf, cap, &len, NULL), LKV_OK);
    cr_expect_eq(lkv_p2_encode(&p, LKV_DTYPE_FP32, x, n, buf, len - 1, &len, &d),
                 LKV_ERR_BUFFER_SMALL);
    free(buf);
    free(x);
}

Test(p2, corrupt_payloads_fail_cleanly)
{
    const size_t n = 70;
    float *x = make_dataset(DS_T3, n, 96, 10); /* two pieces, a partial chunk */
    const lkv_params p = p2(20, 96);
    coded c = encode(&p, LKV_DTYPE_FP32, x, n);
    float *y = malloc(n * 96 * sizeof *y);
    /* Every truncation fails (nothing reads past len: run under ASan). */
    for (size_t l = 0; l < c.len; l++) {
        unsigned char *t = malloc(l + 1);
        memcpy(t, c.buf, l);
        const lkv_status st = lkv_p2_decode(&p, t, l, n, LKV_DTYPE_FP32, y, NULL);
        cr_assert(st == LKV_ERR_TRUNCATED || st == LKV_ERR_CORRUPT, "len %zu: %s", l,
                  lkv_status_name(st));
        free(t);
    }
    /* A flip of any bit either fails or decodes something: never crashes.
     * Flips in the length, the norms or the states are always caught. */
    size_t caught = 0, total = 0;
    for (size_t i = 0; i < c.len; i++)
        for (int b = 0; b < 8; b += 3) {
            c.buf[i] ^= (unsigned char)(1u << b);
            lkv_diag d;
            const lkv_status st = lkv_p2_decode(&p, c.buf, c.len, n, LKV_DTYPE_FP32, y, &d);
            cr_assert(st == LKV_OK || st == LKV_ERR_CORRUPT || st == LKV_ERR_TRUNCATED,
                      "byte %zu bit %d: %s", i, b, lkv_status_name(st));
            if (i < 4)
                cr_assert_neq(st, LKV_OK, "length flip at byte %zu", i);
            caught += st != LKV_OK;
            total++;
            c.buf[i] ^= (unsigned char)(1u << b);
        }
    /* rANS has no redundancy of its own, but the final states must return
     * to 2^16 and the stream must end exactly: most flips are seen. */
    cr_expect_gt(caught, total / 2, "%zu of %zu flips caught", caught, total);
    /* Trailing bytes. */
    unsigned char *longer = malloc(c.len + 2);
    memcpy(longer, c.buf, c.len);
    longer[c.len] = longer[c.len + 1] = 0;
    cr_expect_eq(lkv_p2_decode(&p, longer, c.len + 2, n, LKV_DTYPE_FP32, y, NULL), LKV_ERR_CORRUPT);
    free(longer), free(c.buf), free(x), free(y);
}

Test(p2, containers_roundtrip_and_reject_corruption)
{
    const uint64_t shape[3] = {3, 50, 128};
    const size_t n = 150;
    lkv_rng r = {12};
    void *x = lkv_test_make(&r, LKV_DTYPE_BF16, n, 128, 2.0);
    const lkv_params p = p2(54, 128);
    const size_t bound = lkv_compress_bound(&p, shape, 3);
    cr_assert_gt(bound, 0);
    unsigned char *buf = malloc(bound);
    size_t len;
    lkv_diag d;
    cr_assert_eq(lkv_compress(&p, LKV_DTYPE_BF16, shape, 3, x, n * 128 * 2, buf, bound, &len,
                              LKV_ISA_AUTO, &d),
                 LKV_OK, "%s", d.msg);
    cr_assert_lt(len, bound);
    cr_assert_eq(buf[4], 2, "version 2");
    cr_assert_eq(buf[11], 2, "profile byte");
    lkv_container_info info;
    cr_assert_eq(lkv_container_parse(buf, len, &info, &d), LKV_OK, "%s", d.msg);
    cr_assert_eq(info.total_bytes, len);
    cr_assert_eq(info.header_bytes, 40 + 8 * 3);
    cr_assert_eq(info.record_bytes, 0);
    cr_assert_eq(info.params.q, 54);
    cr_assert_eq(lkv_profile_of(&info.params), LKV_PROFILE_2);
    uint16_t *y = malloc(n * 128 * 2);
    size_t ylen;
    cr_assert_eq(lkv_decompress(buf, len, 0, y, n * 128 * 2, &ylen, NULL, LKV_ISA_AUTO, &d), LKV_OK,
                 "%s", d.msg);
    cr_assert_eq(ylen, n * 128 * 2);
    /* Same result as the payload call. */
    uint16_t *y2 = malloc(n * 128 * 2);
    cr_assert_eq(lkv_p2_decode(&p, buf + info.header_bytes, len - info.header_bytes, n,
                               LKV_DTYPE_BF16, y2, NULL),
                 LKV_OK);
    cr_assert(memcmp(y, y2, n * 128 * 2) == 0);
    /* The buffer need only hold the actual size. */
    size_t len2;
    cr_assert_eq(lkv_compress(&p, LKV_DTYPE_BF16, shape, 3, x, n * 128 * 2, buf, len, &len2,
                              LKV_ISA_AUTO, NULL),
                 LKV_OK);
    cr_assert_eq(len2, len);
    cr_assert_eq(lkv_compress(&p, LKV_DTYPE_BF16, shape, 3, x, n * 128 * 2, buf, len - 1, &len2,
                              LKV_ISA_AUTO, NULL),
                 LKV_ERR_BUFFER_SMALL);
    cr_assert_eq(lkv_compress(&p, LKV_DTYPE_BF16, shape, 3, x, n * 128 * 2, buf, bound, &len,
                              LKV_ISA_AUTO, NULL),
                 LKV_OK);
    /* Every truncation and every single-bit flip is refused. */
    for (size_t l = 0; l < len; l += 7)
        cr_assert_neq(lkv_decompress(buf, l, 0, y, n * 128 * 2, &ylen, NULL, LKV_ISA_AUTO, NULL),
                      LKV_OK, "len %zu", l);
    for (size_t i = 0; i < len; i += 5) {
        buf[i] ^= 0x10;
        cr_assert_neq(lkv_decompress(buf, len, 0, y, n * 128 * 2, &ylen, NULL, LKV_ISA_AUTO, NULL),
                      LKV_OK, "flip at byte %zu", i);
        buf[i] ^= 0x10;
    }
    free(buf), free(x), free(y), free(y2);
}
