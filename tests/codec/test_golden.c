/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Golden coded blocks: containers committed in tests/golden/ with their
 * SHA-256 pinned in tests/golden/SHA256SUMS. Re-encoding the same inputs must
 * give the same bytes on every path and every future version of the codec
 * (format version 1); a change here is a format change.
 * LKV_UPDATE_GOLDEN=1 rewrites the files (then update SHA256SUMS on purpose).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_codec.h"
#include "testutil.h"

typedef struct golden {
    const char *name;
    lkv_params p;
    lkv_dtype dt;
    uint64_t shape[3];
    uint32_t ndim;
    double scale;
} golden;

static const golden cases[] = {
    {"e8_q38_d128_bf16", {LKV_VARIANT_E8, 38, 128}, LKV_DTYPE_BF16, {2, 8, 128}, 3, 1.0},
    {"e8_q152_d128_fp16", {LKV_VARIANT_E8, 152, 128}, LKV_DTYPE_FP16, {16, 128}, 2, 3.0},
    {"e8_q1023_d256_fp32", {LKV_VARIANT_E8, 1023, 256}, LKV_DTYPE_FP32, {8, 256}, 2, 0.1},
    {"e8_q2_d64_bf16", {LKV_VARIANT_E8, 2, 64}, LKV_DTYPE_BF16, {16, 64}, 2, 1.0},
    {"d4_q10_d64_fp32", {LKV_VARIANT_D4, 10, 64}, LKV_DTYPE_FP32, {16, 64}, 2, 1.0},
    {"d4_q38_d8_fp32", {LKV_VARIANT_D4, 38, 8}, LKV_DTYPE_FP32, {32, 8}, 2, 1.0},
    {"e8_q38_d8_bf16", {LKV_VARIANT_E8, 38, 8}, LKV_DTYPE_BF16, {32, 8}, 2, 1.0},
    /* head dims that are not a power of two: the pieces' records side by side */
    {"e8_q38_d96_bf16", {LKV_VARIANT_E8, 38, 96}, LKV_DTYPE_BF16, {2, 8, 96}, 3, 1.0},
    {"e8_q38_d576_bf16", {LKV_VARIANT_E8, 38, 576}, LKV_DTYPE_BF16, {16, 576}, 2, 1.0},
    {"e8_q152_d80_fp16", {LKV_VARIANT_E8, 152, 80}, LKV_DTYPE_FP16, {16, 80}, 2, 3.0},
    {"e8_q1023_d192_fp32", {LKV_VARIANT_E8, 1023, 192}, LKV_DTYPE_FP32, {8, 192}, 2, 0.1},
    {"d4_q10_d112_fp32", {LKV_VARIANT_D4, 10, 112}, LKV_DTYPE_FP32, {16, 112}, 2, 1.0},
    {"d4_q38_d12_bf16", {LKV_VARIANT_D4, 38, 12}, LKV_DTYPE_BF16, {32, 12}, 2, 1.0},
};

/* Inputs: an Irwin-Hall sum of 12 uniforms, centred (mean 0, variance 1),
 * built from additions only, so that no libm (log, cos) with its
 * libc-dependent last bits decides what the pinned containers encode. */
static void *golden_input(lkv_rng *r, lkv_dtype dt, size_t n, uint32_t dim, double scale)
{
    void *buf = malloc(n * dim * lkv_dtype_size(dt) + 1);
    for (size_t i = 0; i < n * dim; i++) {
        double s = 0.0;
        for (int k = 0; k < 12; k++)
            s += lkv_rng_uniform(r);
        lkv_test_set(dt, buf, i, scale * (s - 6.0));
    }
    return buf;
}

static unsigned char *encode_case(const golden *g, size_t *len)
{
    lkv_rng r = {0};
    for (const char *c = g->name; *c; c++)
        r.s = r.s * 131 + (unsigned char)*c;
    size_t n = 1;
    for (uint32_t i = 0; i < g->ndim; i++)
        n *= g->shape[i];
    n /= g->p.dim;
    void *x = golden_input(&r, g->dt, n, g->p.dim, g->scale);
    lkv_container_info info;
    cr_assert_eq(lkv_container_plan(&g->p, g->dt, g->shape, g->ndim, &info, NULL), LKV_OK);
    unsigned char *buf = malloc(info.total_bytes);
    cr_assert_eq(lkv_compress(&g->p, g->dt, g->shape, g->ndim, x,
                              n * g->p.dim * lkv_dtype_size(g->dt), buf, info.total_bytes, len,
                              LKV_ISA_AUTO, NULL),
                 LKV_OK);
    free(x);
    return buf;
}

static int pinned_sum(const char *name, char hex[65])
{
    size_t len;
    char *sums = lkv_test_read(LKV_GOLDEN_DIR "/SHA256SUMS", &len);
    if (!sums)
        return 0;
    char want[128];
    snprintf(want, sizeof want, "  %s.lkv\n", name);
    int found = 0;
    for (char *line = sums; line < sums + len;) {
        char *nl = memchr(line, '\n', (size_t)(sums + len - line));
        if (!nl)
            break;
        if ((size_t)(nl - line) == 64 + strlen(want) - 1 &&
            !memcmp(line + 64, want, strlen(want))) {
            memcpy(hex, line, 64);
            hex[64] = 0;
            found = 1;
        }
        line = nl + 1;
    }
    free(sums);
    return found;
}

Test(golden, containers_are_byte_stable)
{
    const int update = getenv("LKV_UPDATE_GOLDEN") != NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const golden *g = &cases[i];
        char path[512];
        snprintf(path, sizeof path, "%s/%s.lkv", LKV_GOLDEN_DIR, g->name);
        size_t len;
        unsigned char *now = encode_case(g, &len);
        if (update) {
            FILE *f = fopen(path, "wb");
            cr_assert(f && fwrite(now, 1, len, f) == len);
            fclose(f);
            free(now);
            continue;
        }
        size_t glen;
        unsigned char *gold = lkv_test_read(path, &glen);
        cr_assert(gold, "missing golden file %s", path);
        char hex[65], pinned[65];
        lkv_test_sha256(gold, glen, hex);
        cr_assert(pinned_sum(g->name, pinned), "%s has no line in SHA256SUMS", g->name);
        cr_expect_str_eq(hex, pinned, "%s: file differs from its pinned SHA-256", g->name);
        cr_expect_eq(glen, len, "%s: size", g->name);
        cr_expect(glen == len && memcmp(gold, now, len) == 0, "%s: re-encoding changed the bytes",
                  g->name);
        /* every ISA path of this CPU gives the same bytes too */
        for (int isa = LKV_ISA_SCALAR; isa <= LKV_ISA_AVX512; isa++) {
            if (!lkv_isa_supported((lkv_isa)isa))
                continue;
            lkv_container_info info;
            cr_assert_eq(lkv_container_parse(gold, glen, &info, NULL), LKV_OK);
            const size_t raw = (size_t)info.n_vectors * info.params.dim * 4;
            float *a = malloc(raw), *b = malloc(raw);
            cr_assert_eq(lkv_decompress(gold, glen, LKV_DTYPE_FP32, a, raw, NULL, NULL,
                                        LKV_ISA_SCALAR, NULL),
                         LKV_OK);
            cr_assert_eq(
                lkv_decompress(gold, glen, LKV_DTYPE_FP32, b, raw, NULL, NULL, (lkv_isa)isa, NULL),
                LKV_OK);
            cr_expect_eq(memcmp(a, b, raw), 0, "%s decodes the same on %s", g->name,
                         lkv_isa_name((lkv_isa)isa));
            free(a);
            free(b);
        }
        free(now);
        free(gold);
    }
}
