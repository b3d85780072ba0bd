/* SPDX-License-Identifier: Apache-2.0 */
/* testutil.c - see testutil.h. */
#include "testutil.h"

#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t lkv_rng_next(lkv_rng *r)
{
    /* splitmix64: small, fast and good enough for test data */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double lkv_rng_uniform(lkv_rng *r)
{
    return (double)(lkv_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

double lkv_rng_normal(lkv_rng *r)
{
    const double u = lkv_rng_uniform(r) + 1e-300, v = lkv_rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

void lkv_test_set(lkv_dtype dt, void *buf, size_t i, double v)
{
    unsigned char *p = buf;
    const float f = (float)v;
    if (dt == LKV_DTYPE_FP32) {
        memcpy(p + 4 * i, &f, 4);
        return;
    }
    const uint16_t h = dt == LKV_DTYPE_FP16 ? lkv_f32_to_f16(f) : lkv_f32_to_bf16(f);
    memcpy(p + 2 * i, &h, 2);
}

double lkv_test_get(lkv_dtype dt, const void *buf, size_t i)
{
    const unsigned char *p = buf;
    if (dt == LKV_DTYPE_FP32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return dt == LKV_DTYPE_FP16 ? lkv_f16_to_f32(h) : lkv_bf16_to_f32(h);
}

void *lkv_test_make(lkv_rng *r, lkv_dtype dt, size_t n, uint32_t dim, double scale)
{
    void *buf = malloc(n * dim * lkv_dtype_size(dt) + 1);
    for (size_t i = 0; i < n * dim; i++)
        lkv_test_set(dt, buf, i, scale * lkv_rng_normal(r));
    return buf;
}

void *lkv_test_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

void lkv_test_sha256(const void *buf, size_t len, char hex[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}
