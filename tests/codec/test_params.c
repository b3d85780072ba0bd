/* SPDX-License-Identifier: Apache-2.0 */
/* Parameters, bit budget and error reporting of the codec. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "lkv_codec.h"

static uint32_t bits(lkv_variant v, uint32_t q, uint32_t d)
{
    const lkv_params p = {v, q, d};
    return lkv_bits_per_vector(&p);
}

Test(params, bit_budget_d128_matches_reference_table)
{
    /* docs/codec.md section 4: the reference code's bits_per_token_per_head. */
    cr_expect_eq(bits(LKV_VARIANT_E8, 10, 128), 608);
    cr_expect_eq(bits(LKV_VARIANT_E8, 37, 128), 832);
    cr_expect_eq(bits(LKV_VARIANT_E8, 38, 128), 848);
    cr_expect_eq(bits(LKV_VARIANT_E8, 152, 128), 1104);
    cr_expect_eq(bits(LKV_VARIANT_D4, 10, 128), 576);
    cr_expect_eq(bits(LKV_VARIANT_D4, 38, 128), 832);
    cr_expect_eq(bits(LKV_VARIANT_D4, 152, 128), 1088);
}

Test(params, bit_budget_other_dims)
{
    /* k8(38) = 51, k4(38) = 25; bits = (D/n) * k + 32 */
    cr_expect_eq(bits(LKV_VARIANT_E8, 38, 64), 8 * 51 + 32);
    cr_expect_eq(bits(LKV_VARIANT_E8, 38, 256), 32 * 51 + 32);
    cr_expect_eq(bits(LKV_VARIANT_E8, 38, 512), 64 * 51 + 32);
    cr_expect_eq(bits(LKV_VARIANT_D4, 38, 64), 16 * 25 + 32);
    cr_expect_eq(bits(LKV_VARIANT_D4, 38, 256), 64 * 25 + 32);
    cr_expect_eq(bits(LKV_VARIANT_D4, 38, 512), 128 * 25 + 32);
}

Test(params, block_bits_equal_float_formula_for_every_q)
{
    /* The reference computes ceil(8 log2 B) and ceil(4 log2 B - 1) in floating
     * point; B = 2Q+1 is odd, so no value sits on an integer boundary and the
     * exact integer forms must agree for every Q. */
    for (uint32_t q = 1; q <= 1023; q++) {
        const double lb = log2(2.0 * q + 1.0);
        cr_assert_eq(lkv_bits_per_block(LKV_VARIANT_E8, q), (uint32_t)ceil(8.0 * lb), "E8 q=%u", q);
        cr_assert_eq(lkv_bits_per_block(LKV_VARIANT_D4, q), (uint32_t)ceil(4.0 * lb - 1.0),
                     "D4 q=%u", q);
    }
    cr_expect_eq(lkv_bits_per_block(LKV_VARIANT_E8, 1023), 88, "widest E8 index is 88 bits");
    cr_expect_gt(lkv_bits_per_block(LKV_VARIANT_E8, 128), 64, "Q=128 passes 64 bits");
    cr_expect_leq(lkv_bits_per_block(LKV_VARIANT_E8, 127), 64);
}

Test(params, record_bytes_are_whole_for_dims_from_64)
{
    for (uint32_t q = 1; q <= 1023; q += 7)
        for (uint32_t d = 64; d <= 1024; d *= 2)
            for (int v = 1; v <= 2; v++) {
                const lkv_params p = {(lkv_variant)v, q, d};
                cr_assert_eq(lkv_bits_per_vector(&p) % 8, 0, "v=%d q=%u d=%u", v, q, d);
                cr_assert_eq(lkv_record_bytes(&p) * 8, lkv_bits_per_vector(&p));
            }
    const lkv_params small = {LKV_VARIANT_E8, 38, 8};
    cr_expect_eq(lkv_bits_per_vector(&small), 51 + 32);
    cr_expect_eq(lkv_record_bytes(&small), 11, "83 bits pad to 11 bytes");
}

static void expect_param_error(lkv_variant v, uint32_t q, uint32_t d, lkv_status code,
                               const char *needle)
{
    const lkv_params p = {v, q, d};
    lkv_diag diag;
    memset(&diag, 0, sizeof diag);
    cr_expect_eq(lkv_params_check(&p, &diag), code, "v=%d q=%u d=%u", v, q, d);
    cr_expect_eq(diag.code, code);
    cr_expect(strstr(diag.msg, needle) != NULL, "message '%s' names '%s'", diag.msg, needle);
    cr_expect_eq(lkv_bits_per_vector(&p), 0);
}

Test(params, invalid_parameters_have_named_errors)
{
    expect_param_error(LKV_VARIANT_E8, 38, 100, LKV_ERR_HEAD_DIM, "head_dim=100");
    expect_param_error(LKV_VARIANT_D4, 38, 90, LKV_ERR_HEAD_DIM, "head_dim=90");
    expect_param_error(LKV_VARIANT_E8, 38, 1032, LKV_ERR_HEAD_DIM, "head_dim=1032");
    expect_param_error(LKV_VARIANT_E8, 38, 0, LKV_ERR_HEAD_DIM, "head_dim=0");
    expect_param_error(LKV_VARIANT_E8, 38, 4, LKV_ERR_HEAD_DIM, "head_dim=4");
    expect_param_error(LKV_VARIANT_D4, 38, 2048, LKV_ERR_HEAD_DIM, "head_dim=2048");
    expect_param_error(LKV_VARIANT_E8, 0, 128, LKV_ERR_Q_RANGE, "q_range=0");
    expect_param_error(LKV_VARIANT_D4, 1024, 128, LKV_ERR_Q_RANGE, "q_range=1024");
    expect_param_error((lkv_variant)7, 38, 128, LKV_ERR_VARIANT, "variant=7");
    cr_expect_str_eq(lkv_status_name(LKV_ERR_Q_RANGE), "LKV_ERR_Q_RANGE");
    cr_expect_str_eq(lkv_status_name((lkv_status)9999), "LKV_UNKNOWN");
    lkv_diag diag;
    cr_expect_eq(lkv_dtype_check(9, &diag), LKV_ERR_DTYPE);
    cr_expect(strstr(diag.msg, "dtype=9") != NULL);
}

Test(params, encode_rejects_bad_arguments_before_touching_buffers)
{
    const lkv_params p = {LKV_VARIANT_E8, 38, 100};
    unsigned char out[16];
    memset(out, 0xAB, sizeof out);
    float x[100] = {0};
    lkv_diag diag;
    cr_expect_eq(lkv_encode(&p, LKV_DTYPE_FP32, x, 1, out, LKV_ISA_AUTO, &diag), LKV_ERR_HEAD_DIM);
    const lkv_params ok = {LKV_VARIANT_E8, 38, 128};
    cr_expect_eq(lkv_encode(&ok, (lkv_dtype)0, x, 1, out, LKV_ISA_AUTO, &diag), LKV_ERR_DTYPE);
    for (size_t i = 0; i < sizeof out; i++)
        cr_assert_eq(out[i], 0xAB, "output untouched");
    /* n = 0 is valid and writes nothing, even with NULL buffers */
    cr_expect_eq(lkv_encode(&ok, LKV_DTYPE_BF16, NULL, 0, NULL, LKV_ISA_AUTO, NULL), LKV_OK);
    cr_expect_eq(lkv_decode(&ok, NULL, 0, LKV_DTYPE_BF16, NULL, LKV_ISA_AUTO, NULL), LKV_OK);
}

Test(params, fp16_and_bf16_conversions_round_to_nearest_even)
{
    /* exhaustive over fp16: f16 -> f32 -> f16 is the identity for non-NaN */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
            continue;
        cr_assert_eq(lkv_f32_to_f16(lkv_f16_to_f32((uint16_t)h)), h, "h=%04x", h);
    }
    cr_expect_eq(lkv_f32_to_f16(65504.0f), 0x7bff);
    cr_expect_eq(lkv_f32_to_f16(65519.996f), 0x7bff);
    cr_expect_eq(lkv_f32_to_f16(65520.0f), 0x7c00, "65520 rounds to inf");
    cr_expect_eq(lkv_f32_to_f16(ldexpf(1.0f, -25)), 0x0000,
                 "half of the smallest subnormal ties to 0");
    cr_expect_eq(lkv_f32_to_f16(ldexpf(1.5f, -25)), 0x0001);
    cr_expect_eq(lkv_f32_to_f16(ldexpf(3.0f, -25)), 0x0002, "1.5 ulp ties to even 2");
    cr_expect_eq(lkv_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00, "tie to even (down)");
    cr_expect_eq(lkv_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02, "tie to even (up)");
    cr_expect_eq(lkv_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80, "bf16 tie to even");
    cr_expect_eq(lkv_f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)), 0x3f82);
}
