/* SPDX-License-Identifier: Apache-2.0 */
/* Values that are not ordinary (docs/codec.md section 5) and determinism across
 * batch sizes and dtypes. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_codec.h"
#include "testutil.h"

static const lkv_params E8 = {LKV_VARIANT_E8, 38, 128};
static const lkv_params D4 = {LKV_VARIANT_D4, 38, 128};

Test(edge, zero_vector_decodes_to_exact_zeros)
{
    for (int v = 0; v < 2; v++) {
        const lkv_params *p = v ? &D4 : &E8;
        float x[128] = {0}, y[128];
        unsigned char rec[256];
        cr_assert_eq(lkv_encode(p, LKV_DTYPE_FP32, x, 1, rec, LKV_ISA_AUTO, NULL), LKV_OK);
        cr_expect_eq(rec[0] | rec[1] << 8, 0x0002, "r16 = fp16(eps)");
        cr_expect_eq(rec[2] | rec[3] << 8, 0x0002, "m16 = fp16(eps)");
        cr_assert_eq(lkv_decode(p, rec, 1, LKV_DTYPE_FP32, y, LKV_ISA_AUTO, NULL), LKV_OK);
        for (int i = 0; i < 128; i++)
            cr_assert(y[i] == 0.0f, "y[%d] = %g", i, y[i]);
    }
}

Test(edge, tiny_norms_follow_the_arithmetic)
{
    /* norms below fp16's normal range: r16 becomes subnormal; the result is
     * finite and keeps the direction of x */
    lkv_rng r = {5};
    for (int e = -20; e >= -40; e -= 5) {
        float x[128], y[128];
        double nx = 0;
        for (int i = 0; i < 128; i++) {
            x[i] = (float)(ldexp(1.0, e) * lkv_rng_normal(&r));
            nx += (double)x[i] * x[i];
        }
        unsigned char rec[128];
        cr_assert_eq(lkv_encode(&E8, LKV_DTYPE_FP32, x, 1, rec, LKV_ISA_AUTO, NULL), LKV_OK);
        cr_assert_eq(lkv_decode(&E8, rec, 1, LKV_DTYPE_FP32, y, LKV_ISA_AUTO, NULL), LKV_OK);
        double dot = 0, ny = 0;
        for (int i = 0; i < 128; i++) {
            cr_assert(isfinite(y[i]));
            dot += (double)x[i] * y[i];
            ny += (double)y[i] * y[i];
        }
        if (e >= -20)
            cr_expect_gt(dot / sqrt(nx * ny), 0.99, "2^%d: direction kept", e);
    }
}

Test(edge, huge_norm_is_rejected_with_its_index)
{
    float x[3 * 128];
    for (int i = 0; i < 3 * 128; i++)
        x[i] = 1.0f;
    x[2 * 128 + 5] = 65520.0f; /* vector 2 has norm > 65520 */
    unsigned char rec[3 * 106];
    lkv_diag diag;
    cr_expect_eq(lkv_encode(&E8, LKV_DTYPE_FP32, x, 3, rec, LKV_ISA_AUTO, &diag),
                 LKV_ERR_NORM_OVERFLOW);
    cr_expect_eq(diag.index, 2);
    cr_expect(strstr(diag.msg, "vector 2") != NULL, "%s", diag.msg);
    /* just below the limit still encodes: 65504 is fp16's largest finite */
    x[2 * 128 + 5] = 0.0f;
    for (int i = 0; i < 128; i++)
        x[2 * 128 + i] = 65504.0f / sqrtf(128.0f) * 0.999f;
    cr_expect_eq(lkv_encode(&E8, LKV_DTYPE_FP32, x, 3, rec, LKV_ISA_AUTO, NULL), LKV_OK);
}

Test(edge, non_finite_values_are_rejected_in_every_dtype)
{
    const uint16_t bf16_bad[] = {0x7f80, 0xff80, 0x7fc0};
    const uint16_t fp16_bad[] = {0x7c00, 0xfc00, 0x7e00};
    const uint32_t fp32_bad[] = {0x7f800000, 0xff800000, 0x7fc00000};
    for (int k = 0; k < 3; k++)
        for (int dt = 1; dt <= 3; dt++) {
            const size_t es = lkv_dtype_size((lkv_dtype)dt);
            unsigned char *buf = calloc(4 * 128, es);
            unsigned char rec[4 * 106];
            unsigned char *bad = buf + (3 * 128 + 77) * es;
            if (dt == LKV_DTYPE_FP32)
                memcpy(bad, &fp32_bad[k], 4);
            else
                memcpy(bad, dt == LKV_DTYPE_BF16 ? &bf16_bad[k] : &fp16_bad[k], 2);
            lkv_diag diag;
            cr_expect_eq(lkv_encode(&E8, (lkv_dtype)dt, buf, 4, rec, LKV_ISA_AUTO, &diag),
                         LKV_ERR_NONFINITE);
            cr_expect_eq(diag.index, 3, "vector index");
            cr_expect(strstr(diag.msg, "element 77") != NULL, "%s", diag.msg);
            free(buf);
        }
}

Test(edge, corrupt_records_are_rejected_not_decoded)
{
    float x[128] = {1.0f}, y[128];
    unsigned char rec[106];
    cr_assert_eq(lkv_encode(&E8, LKV_DTYPE_FP32, x, 1, rec, LKV_ISA_AUTO, NULL), LKV_OK);
    unsigned char bad[106];
    memcpy(bad, rec, sizeof bad);
    bad[1] = 0x7c; /* r16 = inf */
    cr_expect_eq(lkv_decode(&E8, bad, 1, LKV_DTYPE_FP32, y, LKV_ISA_AUTO, NULL), LKV_ERR_CORRUPT);
    memcpy(bad, rec, sizeof bad);
    bad[2] = bad[3] = 0; /* m16 = 0 */
    cr_expect_eq(lkv_decode(&E8, bad, 1, LKV_DTYPE_FP32, y, LKV_ISA_AUTO, NULL), LKV_ERR_CORRUPT);
    memcpy(bad, rec, sizeof bad);
    memset(bad + 4, 0xff, 7); /* first index all ones: 51 bits > codebook */
    lkv_diag diag;
    cr_expect_eq(lkv_decode(&E8, bad, 1, LKV_DTYPE_FP32, y, LKV_ISA_AUTO, &diag), LKV_ERR_CORRUPT);
    cr_expect_eq(diag.index, 0);
    /* D = 8: 83 bits in 11 bytes, the 5 padding bits must be zero */
    const lkv_params p8 = {LKV_VARIANT_E8, 38, 8};
    unsigned char r8[11];
    cr_assert_eq(lkv_encode(&p8, LKV_DTYPE_FP32, x, 1, r8, LKV_ISA_AUTO, NULL), LKV_OK);
    cr_expect_eq(r8[10] >> 3, 0, "padding written as zeros");
    r8[10] |= 0x80;
    cr_expect_eq(lkv_decode(&p8, r8, 1, LKV_DTYPE_FP32, y, LKV_ISA_AUTO, NULL), LKV_ERR_CORRUPT);
}

Test(edge, same_bytes_for_every_batch_split)
{
    lkv_rng r = {77};
    const size_t n = 333;
    for (int v = 1; v <= 2; v++)
        for (int dt = 1; dt <= 3; dt++) {
            const lkv_params p = {(lkv_variant)v, v == 1 ? 152 : 10, 64};
            const size_t rb = lkv_record_bytes(&p), es = lkv_dtype_size((lkv_dtype)dt);
            unsigned char *x = lkv_test_make(&r, (lkv_dtype)dt, n, p.dim, 0.5);
            unsigned char *all = malloc(n * rb), *one = malloc(n * rb);
            cr_assert_eq(lkv_encode(&p, (lkv_dtype)dt, x, n, all, LKV_ISA_AUTO, NULL), LKV_OK);
            size_t i = 0, step = 1;
            while (i < n) {
                const size_t k = i + step > n ? n - i : step;
                cr_assert_eq(lkv_encode(&p, (lkv_dtype)dt, x + i * p.dim * es, k, one + i * rb,
                                        LKV_ISA_AUTO, NULL),
                             LKV_OK);
                i += k;
                step = step * 3 % 17 + 1;
            }
            cr_assert_eq(memcmp(all, one, n * rb), 0, "v=%d dt=%d", v, dt);
            free(x);
            free(all);
            free(one);
        }
}

Test(edge, every_dim_roundtrips_with_small_error)
{
    lkv_rng r = {9};
    for (int v = 1; v <= 2; v++)
        for (uint32_t d = v == 1 ? 8 : 4; d <= 1024; d *= 2) {
            const lkv_params p = {(lkv_variant)v, 38, d};
            const size_t n = 64;
            float *x = lkv_test_make(&r, LKV_DTYPE_FP32, n, d, 1.0), *y = malloc(n * d * 4);
            unsigned char *rec = malloc(n * lkv_record_bytes(&p));
            cr_assert_eq(lkv_encode(&p, LKV_DTYPE_FP32, x, n, rec, LKV_ISA_AUTO, NULL), LKV_OK);
            cr_assert_eq(lkv_decode(&p, rec, n, LKV_DTYPE_FP32, y, LKV_ISA_AUTO, NULL), LKV_OK);
            double num = 0, den = 0;
            for (size_t i = 0; i < n * d; i++) {
                num += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
                den += (double)x[i] * x[i];
            }
            /* Q = 38 gives about 4e-4 to 6e-4 on Gaussian data at D = 128 */
            cr_expect_lt(num / den, 2e-3, "v=%d d=%u rel_mse=%g", v, d, num / den);
            free(x);
            free(y);
            free(rec);
        }
}

Test(edge, output_dtypes_are_rne_of_the_fp32_reconstruction)
{
    lkv_rng r = {11};
    const size_t n = 50;
    void *x = lkv_test_make(&r, LKV_DTYPE_BF16, n, 128, 2.0);
    unsigned char rec[50 * 106];
    cr_assert_eq(lkv_encode(&E8, LKV_DTYPE_BF16, x, n, rec, LKV_ISA_AUTO, NULL), LKV_OK);
    float *f = malloc(n * 128 * 4);
    uint16_t *b = malloc(n * 128 * 2), *h = malloc(n * 128 * 2);
    cr_assert_eq(lkv_decode(&E8, rec, n, LKV_DTYPE_FP32, f, LKV_ISA_AUTO, NULL), LKV_OK);
    cr_assert_eq(lkv_decode(&E8, rec, n, LKV_DTYPE_BF16, b, LKV_ISA_AUTO, NULL), LKV_OK);
    cr_assert_eq(lkv_decode(&E8, rec, n, LKV_DTYPE_FP16, h, LKV_ISA_AUTO, NULL), LKV_OK);
    for (size_t i = 0; i < n * 128; i++) {
        cr_assert_eq(b[i], lkv_f32_to_bf16(f[i]));
        cr_assert_eq(h[i], lkv_f32_to_f16(f[i]));
    }
    free(x);
    free(f);
    free(b);
    free(h);
}
