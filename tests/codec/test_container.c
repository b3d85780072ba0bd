/* SPDX-License-Identifier: Apache-2.0 */
/* The coded-block container: layout, validation of untrusted bytes. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_codec.h"
#include "lkv_format.h"
#include "testutil.h"

static const lkv_params E8 = {LKV_VARIANT_E8, 38, 128};

/* A small container: shape [3, 2, 128] bf16. */
static unsigned char *make(size_t *len)
{
    lkv_rng r = {3};
    const uint64_t shape[3] = {3, 2, 128};
    void *x = lkv_test_make(&r, LKV_DTYPE_BF16, 6, 128, 1.0);
    lkv_container_info info;
    cr_assert_eq(lkv_container_plan(&E8, LKV_DTYPE_BF16, shape, 3, &info, NULL), LKV_OK);
    unsigned char *buf = malloc(info.total_bytes);
    cr_assert_eq(lkv_compress(&E8, LKV_DTYPE_BF16, shape, 3, x, 6 * 128 * 2, buf, info.total_bytes,
                              len, LKV_ISA_AUTO, NULL),
                 LKV_OK);
    cr_assert_eq(*len, info.total_bytes);
    free(x);
    return buf;
}

Test(container, layout_matches_format_md)
{
    size_t len;
    unsigned char *c = make(&len);
    cr_expect_eq(len, 32 + 8 * 3 + 6 * 106);
    cr_expect_eq(memcmp(c, "LKVB", 4), 0);
    cr_expect_eq(c[4] | c[5] << 8, 1, "version");
    cr_expect_eq(c[6] | c[7] << 8, 56, "header bytes");
    cr_expect_eq(c[8], 1, "E8");
    cr_expect_eq(c[9], 1, "bf16");
    cr_expect_eq(c[10], 3, "ndim");
    cr_expect_eq(c[12] | c[13] << 8, 38);
    cr_expect_eq(c[14] | c[15] << 8, 128);
    cr_expect_eq(c[16], 6, "vector count");
    cr_expect_eq(c[24], 3);
    cr_expect_eq(c[32], 2);
    cr_expect_eq(c[40], 128);
    uint32_t pcrc, hcrc;
    memcpy(&pcrc, c + 48, 4);
    memcpy(&hcrc, c + 52, 4);
    cr_expect_eq(pcrc, lkv_crc32c(0, c + 56, len - 56));
    cr_expect_eq(hcrc, lkv_crc32c(0, c, 52));
    lkv_container_info info;
    cr_assert_eq(lkv_container_parse(c, len, &info, NULL), LKV_OK);
    cr_expect_eq(info.n_vectors, 6);
    cr_expect_eq(info.shape[1], 2);
    cr_expect_eq(info.dtype, LKV_DTYPE_BF16);
    free(c);
}

Test(container, crc32c_known_answer)
{
    /* the standard check value of CRC-32C */
    cr_expect_eq(lkv_crc32c(0, "123456789", 9), 0xe3069283u);
    cr_expect_eq(lkv_crc32c(lkv_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u, "incremental");
}

Test(container, same_tensor_same_bytes)
{
    size_t l1, l2;
    unsigned char *a = make(&l1), *b = make(&l2);
    cr_assert_eq(l1, l2);
    cr_expect_eq(memcmp(a, b, l1), 0);
    free(a);
    free(b);
}

Test(container, every_truncation_is_rejected)
{
    size_t len;
    unsigned char *c = make(&len);
    for (size_t n = 0; n < len; n++) {
        unsigned char *cut = malloc(n ? n : 1); /* exact size: ASan sees any over-read */
        memcpy(cut, c, n);
        lkv_diag diag;
        lkv_container_info info;
        const lkv_status st = lkv_container_parse(cut, n, &info, &diag);
        cr_assert_eq(st, LKV_ERR_TRUNCATED, "len %zu: %s", n, lkv_status_name(st));
        free(cut);
    }
    free(c);
}

Test(container, every_bit_flip_is_detected)
{
    size_t len;
    unsigned char *c = make(&len);
    for (size_t i = 0; i < len; i++)
        for (int b = 0; b < 8; b++) {
            c[i] ^= (unsigned char)(1u << b);
            lkv_container_info info;
            lkv_diag diag;
            const lkv_status st = lkv_container_parse(c, len, &info, &diag);
            cr_assert_neq(st, LKV_OK, "flip of byte %zu bit %d went unnoticed", i, b);
            c[i] ^= (unsigned char)(1u << b);
        }
    free(c);
}

Test(container, unknown_version_and_magic_and_trailing_bytes)
{
    size_t len;
    unsigned char *c = make(&len);
    lkv_diag diag;
    lkv_container_info info;
    c[4] = 5; /* versions 1, 2, 3 and 4 (profile 2) are known */
    cr_expect_eq(lkv_container_parse(c, len, &info, &diag), LKV_ERR_VERSION);
    cr_expect(strstr(diag.msg, "version 5") != NULL, "%s", diag.msg);
    for (unsigned char v = 2; v <= 4; v++) {
        c[4] = v; /* a version 1 header read as profile 2's: its size is wrong */
        cr_expect_eq(lkv_container_parse(c, len, &info, &diag), LKV_ERR_CORRUPT, "version %u", v);
    }
    c[4] = 1;
    c[0] = 'X';
    cr_expect_eq(lkv_container_parse(c, len, &info, &diag), LKV_ERR_MAGIC);
    c[0] = 'L';
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, c, len);
    longer[len] = 0;
    cr_expect_eq(lkv_container_parse(longer, len + 1, &info, &diag), LKV_ERR_CORRUPT);
    cr_expect_eq(lkv_container_parse(c, len, &info, &diag), LKV_OK);
    free(longer);
    free(c);
}

Test(container, compress_checks_shape_dtype_and_buffer)
{
    unsigned char src[4 * 128 * 2] = {0}, dst[1024];
    size_t out;
    lkv_diag diag;
    const uint64_t good[2] = {4, 128}, wrong_last[2] = {4, 64}, none[1] = {0};
    cr_expect_eq(lkv_compress(&E8, LKV_DTYPE_BF16, good, 2, src, sizeof src - 2, dst, sizeof dst,
                              &out, LKV_ISA_AUTO, &diag),
                 LKV_ERR_SHAPE);
    cr_expect(strstr(diag.msg, "tensor.data") != NULL, "%s", diag.msg);
    cr_expect_eq(lkv_compress(&E8, LKV_DTYPE_BF16, wrong_last, 2, src, sizeof src, dst, sizeof dst,
                              &out, LKV_ISA_AUTO, &diag),
                 LKV_ERR_SHAPE);
    cr_expect(strstr(diag.msg, "tensor.shape[1]=64") != NULL, "%s", diag.msg);
    cr_expect_eq(lkv_compress(&E8, LKV_DTYPE_BF16, none, 0, src, 0, dst, sizeof dst, &out,
                              LKV_ISA_AUTO, &diag),
                 LKV_ERR_SHAPE);
    cr_expect_eq(lkv_compress(&E8, LKV_DTYPE_BF16, good, 2, src, sizeof src, dst, 100, &out,
                              LKV_ISA_AUTO, &diag),
                 LKV_ERR_BUFFER_SMALL);
    /* an empty tensor is valid: zero vectors */
    const uint64_t empty[2] = {0, 128};
    cr_expect_eq(lkv_compress(&E8, LKV_DTYPE_BF16, empty, 2, src, 0, dst, sizeof dst, &out,
                              LKV_ISA_AUTO, &diag),
                 LKV_OK);
    cr_expect_eq(out, 48);
    size_t dl = 99;
    cr_expect_eq(lkv_decompress(dst, out, 0, src, 0, &dl, NULL, LKV_ISA_AUTO, &diag), LKV_OK);
    cr_expect_eq(dl, 0);
}

Test(container, decompress_roundtrip_and_out_dtype)
{
    size_t len;
    unsigned char *c = make(&len);
    float out[6 * 128];
    uint16_t out16[6 * 128];
    size_t n;
    lkv_container_info info;
    cr_assert_eq(
        lkv_decompress(c, len, LKV_DTYPE_FP32, out, sizeof out, &n, &info, LKV_ISA_AUTO, NULL),
        LKV_OK);
    cr_expect_eq(n, sizeof out);
    cr_assert_eq(lkv_decompress(c, len, 0, out16, sizeof out16, &n, NULL, LKV_ISA_AUTO, NULL),
                 LKV_OK);
    cr_expect_eq(n, sizeof out16, "default: the encoded dtype (bf16)");
    for (int i = 0; i < 6 * 128; i++)
        cr_assert_eq(out16[i], lkv_f32_to_bf16(out[i]));
    lkv_diag diag;
    cr_expect_eq(lkv_decompress(c, len, 7, out, sizeof out, &n, NULL, LKV_ISA_AUTO, &diag),
                 LKV_ERR_DTYPE);
    cr_expect_eq(lkv_decompress(c, len, 3, out, 100, &n, NULL, LKV_ISA_AUTO, &diag),
                 LKV_ERR_BUFFER_SMALL);
    free(c);
}

/* The header alone (a streaming reader's first step) says what the whole
 * container says, never looks past the header, and fails as parse does on a
 * damaged or short header. */
Test(container, header_alone_parses_like_the_whole)
{
    size_t len;
    unsigned char *c = make(&len);
    lkv_container_info whole, head;
    cr_assert_eq(lkv_container_parse(c, len, &whole, NULL), LKV_OK);
    cr_assert_eq(lkv_container_parse_header(c, 56, &head, NULL), LKV_OK);
    cr_expect_eq(whole.params.variant, head.params.variant);
    cr_expect_eq(whole.params.q, head.params.q);
    cr_expect_eq(whole.params.dim, head.params.dim);
    cr_expect_eq(whole.dtype, head.dtype);
    cr_expect_eq(whole.ndim, head.ndim);
    for (uint32_t i = 0; i < whole.ndim; i++)
        cr_expect_eq(whole.shape[i], head.shape[i], "shape[%u]", i);
    cr_expect_eq(whole.n_vectors, head.n_vectors);
    cr_expect_eq(whole.record_bytes, head.record_bytes);
    cr_expect_eq(whole.header_bytes, head.header_bytes);
    cr_expect_eq(whole.total_bytes, head.total_bytes);
    cr_expect_eq(whole.payload_crc, head.payload_crc);
    /* A damaged record is the payload checksum's business, not the header's. */
    c[len - 1] ^= 1;
    cr_expect_eq(lkv_container_parse_header(c, len, &head, NULL), LKV_OK);
    cr_expect_eq(lkv_container_parse(c, len, &head, NULL), LKV_ERR_CHECKSUM);
    c[len - 1] ^= 1;
    lkv_diag d;
    for (size_t n = 0; n < 56; n++)
        cr_expect_eq(lkv_container_parse_header(c, n, &head, &d), LKV_ERR_TRUNCATED, "n=%zu", n);
    c[14] ^= 1; /* head_dim */
    cr_expect_eq(lkv_container_parse_header(c, 56, &head, &d), LKV_ERR_CHECKSUM);
    free(c);
}
