/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_p2_isa.c - profile 2's SIMD encode and decode paths against the
 * scalar coder, in every container version (2: chunks of 128 vectors and
 * fp16 norms; 3: chunks of 256 and byte norms; 4: version 3 with a mode
 * byte per piece, rotated or channel domain; the SIMD paths code rotated
 * pieces and hand channel pieces to the scalar steps).
 *
 * The scalar coder (p2.c) defines the bytes. Every test codes the same
 * input with LKV_ISA_SCALAR and with a SIMD path (AVX2, AVX-512) and
 * requires the same payload bytes or the same error, then decodes it with
 * both into each output dtype and requires the same status, diagnostics
 * (code, index, message) and, on success, output bytes, with nothing
 * written past the output. Inputs: the four datasets of test_p2.c at
 * several Q, every head_dim 8..1024 that is a multiple of 8 (split ones
 * included), vector counts that leave partial chunks and partial 32-vector
 * slots and give the AVX-512 decoder pairs of full chunks, uncodable
 * vectors, and corrupted or truncated payloads. Version 4 is also run on
 * data chosen to take each mode, and the mode bytes in the payload are
 * checked to be the ones meant. A path the CPU lacks is skipped, not
 * passed.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_codec.h"
#include "lkv_format.h"
#include "lkv_p2.h"
#include "testutil.h"

#define GUARD  64u
#define CANARY 0xA5u

static const lkv_dtype all_dtypes[] = {LKV_DTYPE_BF16, LKV_DTYPE_FP16, LKV_DTYPE_FP32};

static void need(lkv_isa isa)
{
    if (!lkv_isa_supported(isa))
        cr_skip_test("this CPU (or build) has no %s path", lkv_isa_name(isa));
}

/* The three container versions of profile 2. */
static const uint32_t formats[] = {LKV_FMT_VERSION_P2, LKV_FMT_VERSION_P3, LKV_FMT_VERSION_P4};
#define NFORMATS (sizeof formats / sizeof formats[0])

static lkv_params p2f(uint32_t q, uint32_t dim, uint32_t fmt)
{
    const lkv_params p = {LKV_VARIANT_E8, q, dim, LKV_PROFILE_2, fmt};
    return p;
}

/* Vectors for two full chunks (the AVX-512 decoder's pair) and a partial
 * one ending in a partial slot: 300 in version 2, 600 in version 3. */
static size_t pair_and_partial(uint32_t fmt)
{
    return fmt == LKV_FMT_VERSION_P2 ? 300 : 600;
}

/* test_p2.c's four datasets (normal, Student t3, lognormal channels, keys). */
enum { DS_NORMAL, DS_T3, DS_LOGNORMAL, DS_KEYS, DS_COUNT };
static const char *const ds_name[] = {"normal", "student_t3", "lognormal_channels", "keys"};

static float *make_dataset(int ds, size_t n, uint32_t dim, uint64_t seed)
{
    lkv_rng r = {seed};
    float *x = malloc(n * dim * sizeof *x);
    cr_assert(x);
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
    uint8_t *buf;
    size_t len;
} coded;

static coded encode(const lkv_params *p, const float *x, size_t n)
{
    coded c = {0};
    const size_t cap = lkv_p2_payload_bound(p, n);
    c.buf = malloc(cap ? cap : 1);
    cr_assert(c.buf);
    lkv_diag d;
    const lkv_status st = lkv_p2_encode(p, LKV_DTYPE_FP32, x, n, c.buf, cap, &c.len, &d);
    cr_assert_eq(st, LKV_OK, "q=%u dim=%u n=%zu: %s", p->q, p->dim, n, d.msg);
    return c;
}

/* Encodes src (n vectors of dtype dt) with the scalar path and with isa and
 * requires the same status, diagnostics and payload bytes. Returns the
 * scalar payload (buf NULL on failure). */
static coded encode_both(lkv_isa isa, const lkv_params *p, lkv_dtype dt, const void *src, size_t n,
                         const char *ctx)
{
    const size_t cap = lkv_p2_payload_bound(p, n);
    coded r = {malloc(cap + GUARD), 0}, g = {malloc(cap + GUARD), 0};
    cr_assert(r.buf && g.buf);
    memset(g.buf, CANARY, cap + GUARD);
    lkv_diag dr = {0}, dg = {0};
    const lkv_status sr = lkv_p2_encode_isa(p, dt, src, n, r.buf, cap, &r.len, LKV_ISA_SCALAR, &dr);
    const lkv_status sg = lkv_p2_encode_isa(p, dt, src, n, g.buf, cap, &g.len, isa, &dg);
    cr_assert_eq(sg, sr, "%s: encode from %s: %s gave %s, scalar %s (%s)", ctx, lkv_dtype_name(dt),
                 lkv_isa_name(isa), lkv_status_name(sg), lkv_status_name(sr), dr.msg);
    if (sr != LKV_OK) {
        cr_assert_eq(dg.index, dr.index, "%s: encode: %s reports %llu, scalar %llu", ctx,
                     lkv_isa_name(isa), (unsigned long long)dg.index, (unsigned long long)dr.index);
        cr_assert_str_eq(dg.msg, dr.msg, "%s: encode messages differ", ctx);
        free(r.buf);
        r.buf = NULL;
    } else {
        cr_assert_eq(g.len, r.len, "%s: encode from %s: %s wrote %zu bytes, scalar %zu", ctx,
                     lkv_dtype_name(dt), lkv_isa_name(isa), g.len, r.len);
        size_t at = 0;
        while (at < r.len && r.buf[at] == g.buf[at])
            at++;
        cr_assert_eq(at, r.len, "%s: encode from %s: %s differs from scalar at byte %zu", ctx,
                     lkv_dtype_name(dt), lkv_isa_name(isa), at);
        for (size_t i = 0; i < GUARD; i++)
            cr_assert_eq(g.buf[cap + i], CANARY, "%s: %s wrote past its buffer", ctx,
                         lkv_isa_name(isa));
    }
    free(g.buf);
    return r;
}

/* x (n fp32 vectors) in dtype dt, for encoding. */
static void *as_dtype(const float *x, size_t count, lkv_dtype dt)
{
    uint8_t *b = malloc(count * lkv_dtype_size(dt));
    cr_assert(b);
    for (size_t i = 0; i < count; i++)
        lkv_test_set(dt, b, i, x[i]);
    return b;
}

/* Decodes src with the scalar path and with isa into every dtype and
 * requires the same status, diagnostics and bytes. Returns the status. */
static lkv_status check_decode(lkv_isa isa, const lkv_params *p, const uint8_t *src, size_t len,
                               size_t n, const char *ctx)
{
    lkv_status sr = LKV_OK;
    for (size_t t = 0; t < 3; t++) {
        const lkv_dtype dt = all_dtypes[t];
        const size_t out = n * p->dim * lkv_dtype_size(dt);
        uint8_t *ref = malloc(out + GUARD), *got = malloc(out + GUARD);
        cr_assert(ref && got);
        memset(ref, CANARY, out + GUARD);
        memset(got, CANARY, out + GUARD);
        lkv_diag dr = {0}, dg = {0};
        sr = lkv_p2_decode_isa(p, src, len, n, dt, ref, LKV_ISA_SCALAR, &dr);
        const lkv_status sg = lkv_p2_decode_isa(p, src, len, n, dt, got, isa, &dg);
        cr_assert_eq(sg, sr, "%s: decode to %s: %s gave %s, scalar %s (%s)", ctx,
                     lkv_dtype_name(dt), lkv_isa_name(isa), lkv_status_name(sg),
                     lkv_status_name(sr), dr.msg);
        if (sr != LKV_OK) {
            cr_assert_eq(dg.index, dr.index, "%s: %s reports byte %llu, scalar %llu", ctx,
                         lkv_isa_name(isa), (unsigned long long)dg.index,
                         (unsigned long long)dr.index);
            cr_assert_str_eq(dg.msg, dr.msg, "%s: messages differ", ctx);
        }
        /* On failure the output is unspecified (the AVX-512 path decodes two
         * chunks side by side and may have written the later one). */
        size_t at = 0;
        while (sr == LKV_OK && at < out && ref[at] == got[at])
            at++;
        if (sr != LKV_OK)
            at = out;
        cr_assert_eq(at, out, "%s: decode to %s: %s differs from scalar at byte %zu (vector %zu)",
                     ctx, lkv_dtype_name(dt), lkv_isa_name(isa), at,
                     at / (p->dim * lkv_dtype_size(dt)));
        for (size_t i = 0; i < GUARD; i++)
            cr_assert_eq(got[out + i], CANARY, "%s: %s wrote past its output", ctx,
                         lkv_isa_name(isa));
        free(ref);
        free(got);
    }
    return sr;
}

static void datasets(lkv_isa isa)
{
    need(isa);
    static const uint32_t qs[] = {1, 3, 5, 8, 17, 38, 54, 127, 300, 1023};
    for (size_t f = 0; f < NFORMATS; f++)
        for (int ds = 0; ds < DS_COUNT; ds++)
            for (size_t qi = 0; qi < sizeof qs / sizeof qs[0]; qi++) {
                const size_t n = pair_and_partial(formats[f]);
                const lkv_params p = p2f(qs[qi], 128, formats[f]);
                float *x = make_dataset(ds, n, p.dim, 0x5eed0000u + (uint64_t)ds * 97u + qi);
                char ctx[96];
                snprintf(ctx, sizeof ctx, "format=%u %s q=%u", p.format, ds_name[ds], p.q);
                for (size_t t = 0; t < 2; t++) {
                    void *xt = as_dtype(x, n * p.dim, all_dtypes[t]);
                    coded e = encode_both(isa, &p, all_dtypes[t], xt, n, ctx);
                    cr_assert(e.buf, "%s", ctx);
                    free(e.buf);
                    free(xt);
                }
                coded c = encode_both(isa, &p, LKV_DTYPE_FP32, x, n, ctx);
                cr_assert_eq(check_decode(isa, &p, c.buf, c.len, n, ctx), LKV_OK, "%s", ctx);
                free(c.buf);
                free(x);
            }
}

Test(p2_isa, avx2_datasets)
{
    datasets(LKV_ISA_AVX2);
}
Test(p2_isa, avx512_datasets)
{
    datasets(LKV_ISA_AVX512);
}

/* Every head_dim 8..1024 in steps of 8 (powers of two and split ones), at
 * two Q, with a count that leaves a partial chunk with a partial slot. */
static void all_dims(lkv_isa isa)
{
    need(isa);
    static const uint32_t qs[] = {6, 54};
    for (size_t f = 0; f < NFORMATS; f++)
        for (uint32_t dim = 8; dim <= LKV_DIM_MAX; dim += 8)
            for (size_t qi = 0; qi < 2; qi++) {
                /* pairs of chunks up to D = 256 */
                const size_t n = dim <= 256 ? pair_and_partial(formats[f]) : 70;
                const lkv_params p = p2f(qs[qi], dim, formats[f]);
                float *x = make_dataset((int)(dim / 8 % DS_COUNT), n, dim, dim * 31u + qi);
                char ctx[64];
                snprintf(ctx, sizeof ctx, "format=%u dim=%u q=%u", p.format, dim, p.q);
                coded c = encode_both(isa, &p, LKV_DTYPE_FP32, x, n, ctx);
                cr_assert_eq(check_decode(isa, &p, c.buf, c.len, n, ctx), LKV_OK, "%s", ctx);
                free(c.buf);
                free(x);
            }
}

Test(p2_isa, avx2_all_dims)
{
    all_dims(LKV_ISA_AVX2);
}
Test(p2_isa, avx512_all_dims)
{
    all_dims(LKV_ISA_AVX512);
}

/* Vector counts around the slot (32) and chunk (128 in version 2, 256 in
 * version 3) sizes, and around pairs of chunks. */
static void counts(lkv_isa isa)
{
    need(isa);
    static const size_t ns[] = {1,   2,   31,  32,  33,  63,  64,  65,  96,  127, 128, 129,
                                160, 255, 256, 257, 383, 384, 385, 511, 512, 513, 767, 768};
    for (size_t f = 0; f < NFORMATS; f++)
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
            const lkv_params p = p2f(54, 64, formats[f]);
            float *x = make_dataset(DS_T3, ns[i], p.dim, 77 + i);
            char ctx[32];
            snprintf(ctx, sizeof ctx, "format=%u n=%zu", p.format, ns[i]);
            coded c = encode_both(isa, &p, LKV_DTYPE_FP32, x, ns[i], ctx);
            cr_assert_eq(check_decode(isa, &p, c.buf, c.len, ns[i], ctx), LKV_OK, "%s", ctx);
            free(c.buf);
            free(x);
        }
}

Test(p2_isa, avx2_counts)
{
    counts(LKV_ISA_AVX2);
}
Test(p2_isa, avx512_counts)
{
    counts(LKV_ISA_AVX512);
}

/* Corrupt payloads: flipped bytes anywhere (lengths, norms, states, words),
 * cuts, and in versions 3 and 4 a nonzero pad byte after an odd norm field. Same
 * error, same bytes written. */
static void corrupt(lkv_isa isa)
{
    need(isa);
    static const uint32_t qs[] = {4, 54, 700};
    for (size_t f = 0; f < NFORMATS; f++) {
        lkv_rng r = {0xc0ffee};
        int failed = 0;
        for (size_t qi = 0; qi < 3; qi++) {
            const lkv_params p = p2f(qs[qi], 128, formats[f]);
            /* a pair of full chunks and a partial one; in versions 3, 4 of 89
             * vectors, whose norm field (89 bytes) takes a pad byte */
            const size_t n = pair_and_partial(p.format) + (p.format != LKV_FMT_VERSION_P2);
            float *x = make_dataset(DS_NORMAL, n, p.dim, 9 + qi);
            coded c = encode(&p, x, n);
            uint8_t *t = malloc(c.len);
            cr_assert(t);
            for (int k = 0; k < 200; k++) {
                memcpy(t, c.buf, c.len);
                const int flips = 1 + (int)(lkv_rng_next(&r) % 3);
                for (int fl = 0; fl < flips; fl++)
                    t[lkv_rng_next(&r) % c.len] ^= (uint8_t)(1u << (lkv_rng_next(&r) % 8));
                char ctx[64];
                snprintf(ctx, sizeof ctx, "format=%u q=%u flip round %d", p.format, p.q, k);
                failed += check_decode(isa, &p, t, c.len, n, ctx) != LKV_OK;
            }
            /* Cuts in the last chunk and in the second chunk of the pair. */
            for (size_t cut = c.len > 400 ? c.len - 400 : 0; cut < c.len; cut += 7) {
                char ctx[64];
                snprintf(ctx, sizeof ctx, "format=%u q=%u cut at %zu", p.format, p.q, cut);
                cr_assert_neq(check_decode(isa, &p, c.buf, cut, n, ctx), LKV_OK, "%s", ctx);
            }
            for (size_t cut = c.len / 2; cut < c.len / 2 + 300; cut += 11) {
                char ctx[64];
                snprintf(ctx, sizeof ctx, "format=%u q=%u cut at %zu", p.format, p.q, cut);
                cr_assert_neq(check_decode(isa, &p, c.buf, cut, n, ctx), LKV_OK, "%s", ctx);
            }
            if (p.format != LKV_FMT_VERSION_P2) {
                /* The last chunk starts after two full ones; its pad byte
                 * follows 89 norm bytes. */
                const size_t cv = lkv_p2_chunk_vectors(&p), cnt = n - 2 * cv;
                size_t b0 = 0, b1 = 0;
                cr_assert_eq(lkv_p2_chunk_size(&p, c.buf, c.len, cv, &b0, NULL), LKV_OK);
                cr_assert_eq(lkv_p2_chunk_size(&p, c.buf + b0, c.len - b0, cv, &b1, NULL), LKV_OK);
                const size_t pad = b0 + b1 + 4 + cnt;
                cr_assert_eq(cnt % 2, 1);
                cr_assert_eq(c.buf[pad], 0, "q=%u: pad byte 0x%02x", p.q, c.buf[pad]);
                memcpy(t, c.buf, c.len);
                t[pad] = 0x40;
                char ctx[64];
                snprintf(ctx, sizeof ctx, "format=%u q=%u pad byte", p.format, p.q);
                cr_assert_eq(check_decode(isa, &p, t, c.len, n, ctx), LKV_ERR_CORRUPT, "%s", ctx);
            }
            free(t);
            free(c.buf);
            free(x);
        }
        /* The flips must mostly hit the symbol streams and be caught there. */
        cr_assert_gt(failed, 300, "format=%u: only %d of 600 corruptions were detected", formats[f],
                     failed);
    }
}

Test(p2_isa, avx2_corrupt)
{
    corrupt(LKV_ISA_AVX2);
}
Test(p2_isa, avx512_corrupt)
{
    corrupt(LKV_ISA_AVX512);
}

/* Inputs that cannot be coded (NaN, Inf, a norm past the code's top: fp16's
 * 65520 in version 2, 2^31.75 in version 3) at several places of a
 * multi-chunk tensor: the same status, vector and message. A norm of 70000
 * codes in versions 3 and 4, to the same bytes. */
static void bad_inputs(lkv_isa isa)
{
    need(isa);
    static const uint32_t dims[] = {8, 64, 128, 136, 1024};
    static const size_t at[] = {0, 15, 16, 31, 33, 130, 199, 257, 290};
    const float vals[] = {NAN, INFINITY, -INFINITY, 70000.0f, -1e10f};
    for (size_t f = 0; f < NFORMATS; f++)
        for (size_t di = 0; di < 5; di++)
            for (size_t ai = 0; ai < sizeof at / sizeof at[0]; ai++)
                for (size_t vi = 0; vi < sizeof vals / sizeof vals[0]; vi++) {
                    const lkv_params p = p2f(54, dims[di], formats[f]);
                    const size_t n = 300;
                    /* fp16 holds no 70000: there it is Inf */
                    const int codes = p.format != LKV_FMT_VERSION_P2 && fabsf(vals[vi]) == 70000.0f;
                    float *x = make_dataset(DS_NORMAL, n, p.dim, 3 + di);
                    x[at[ai] * p.dim + (at[ai] * 7) % p.dim] = vals[vi];
                    char ctx[80];
                    snprintf(ctx, sizeof ctx, "format=%u dim=%u vector %zu value %g", p.format,
                             p.dim, at[ai], (double)vals[vi]);
                    for (size_t t = 0; t < 3; t++) {
                        void *xt = as_dtype(x, n * p.dim, all_dtypes[t]);
                        coded e = encode_both(isa, &p, all_dtypes[t], xt, n, ctx);
                        if (codes && all_dtypes[t] != LKV_DTYPE_FP16)
                            cr_assert_not_null(e.buf, "%s: refused", ctx);
                        else
                            cr_assert_null(e.buf, "%s: encoded", ctx);
                        free(e.buf);
                        free(xt);
                    }
                    free(x);
                }
}

Test(p2_isa, avx2_bad_inputs)
{
    bad_inputs(LKV_ISA_AVX2);
}
Test(p2_isa, avx512_bad_inputs)
{
    bad_inputs(LKV_ISA_AVX512);
}

/* A buffer too small for the payload: the same error at every size, from
 * none to one byte short (full slots shed their words in another order of
 * operations, so the check must still fire exactly where the scalar's does). */
static void small_buffers(lkv_isa isa)
{
    need(isa);
    for (size_t f = 0; f < NFORMATS; f++) {
        const lkv_params p = p2f(54, 128, formats[f]);
        const size_t n = 300;
        float *x = make_dataset(DS_NORMAL, n, p.dim, 21);
        coded c = encode(&p, x, n);
        uint8_t *r = malloc(c.len), *g = malloc(c.len);
        cr_assert(r && g);
        for (size_t cap = 0; cap < c.len; cap += cap < 64 ? 1 : 97) {
            lkv_diag dr = {0}, dg = {0};
            size_t lr = 0, lg = 0;
            const lkv_status sr =
                lkv_p2_encode_isa(&p, LKV_DTYPE_FP32, x, n, r, cap, &lr, LKV_ISA_SCALAR, &dr);
            const lkv_status sg =
                lkv_p2_encode_isa(&p, LKV_DTYPE_FP32, x, n, g, cap, &lg, isa, &dg);
            cr_assert_eq(sr, LKV_ERR_BUFFER_SMALL, "format=%u cap %zu of %zu: scalar %s", p.format,
                         cap, c.len, lkv_status_name(sr));
            cr_assert_eq(sg, sr, "format=%u cap %zu: %s gave %s", p.format, cap, lkv_isa_name(isa),
                         lkv_status_name(sg));
            cr_assert_eq(dg.index, dr.index, "format=%u cap %zu: index %llu, scalar %llu", p.format,
                         cap, (unsigned long long)dg.index, (unsigned long long)dr.index);
            cr_assert_str_eq(dg.msg, dr.msg, "format=%u cap %zu", p.format, cap);
        }
        free(r);
        free(g);
        free(c.buf);
        free(x);
    }
}

Test(p2_isa, avx2_small_buffers)
{
    small_buffers(LKV_ISA_AVX2);
}
Test(p2_isa, avx512_small_buffers)
{
    small_buffers(LKV_ISA_AVX512);
}

/* The container path passes its isa through; an unsupported one is refused
 * by name, and AUTO decodes the same bytes as scalar. */
Test(p2_isa, container_isa_and_auto)
{
    for (size_t f = 0; f < NFORMATS; f++) {
        const lkv_params p = p2f(54, 128, formats[f]);
        const size_t n = 600;
        float *x = make_dataset(DS_KEYS, n, p.dim, 5);
        coded c = encode(&p, x, n);
        float *a = malloc(n * p.dim * 4), *b = malloc(n * p.dim * 4);
        cr_assert(a && b);
        lkv_diag d;
        cr_assert_eq(lkv_p2_decode_isa(&p, c.buf, c.len, n, LKV_DTYPE_FP32, a, LKV_ISA_SCALAR, &d),
                     LKV_OK, "%s", d.msg);
        cr_assert_eq(lkv_p2_decode(&p, c.buf, c.len, n, LKV_DTYPE_FP32, b, &d), LKV_OK, "%s",
                     d.msg);
        cr_assert_eq(memcmp(a, b, n * p.dim * 4), 0, "format=%u: AUTO (%s) differs from scalar",
                     p.format, lkv_isa_name(lkv_isa_best()));
        /* A container decoded on each path: the same bytes as scalar. */
        const uint64_t shape[2] = {n, p.dim};
        const size_t bound = lkv_compress_bound(&p, shape, 2);
        uint8_t *buf = malloc(bound);
        size_t len = 0, ylen = 0;
        cr_assert_eq(lkv_compress(&p, LKV_DTYPE_FP32, shape, 2, x, n * p.dim * 4, buf, bound, &len,
                                  LKV_ISA_SCALAR, &d),
                     LKV_OK, "%s", d.msg);
        for (int i = LKV_ISA_SCALAR; i <= LKV_ISA_AVX512; i++) {
            if (!lkv_isa_supported((lkv_isa)i)) {
                cr_assert_eq(
                    lkv_p2_decode_isa(&p, c.buf, c.len, n, LKV_DTYPE_FP32, b, (lkv_isa)i, &d),
                    LKV_ERR_ISA);
                cr_assert(strstr(d.msg, lkv_isa_name((lkv_isa)i)), "%s", d.msg);
                continue;
            }
            size_t len2 = 0;
            uint8_t *buf2 = malloc(bound);
            cr_assert_eq(lkv_compress(&p, LKV_DTYPE_FP32, shape, 2, x, n * p.dim * 4, buf2, bound,
                                      &len2, (lkv_isa)i, &d),
                         LKV_OK, "%s", d.msg);
            cr_assert(len2 == len && memcmp(buf, buf2, len) == 0,
                      "format=%u: container from %s differs from scalar's", p.format,
                      lkv_isa_name((lkv_isa)i));
            free(buf2);
            memset(b, 0, n * p.dim * 4);
            cr_assert_eq(lkv_decompress(buf, len, LKV_DTYPE_FP32, b, n * p.dim * 4, &ylen, NULL,
                                        (lkv_isa)i, &d),
                         LKV_OK, "%s", d.msg);
            cr_assert_eq(memcmp(a, b, n * p.dim * 4), 0, "format=%u: container on %s differs",
                         p.format, lkv_isa_name((lkv_isa)i));
        }
        cr_assert_eq(lkv_p2_decode_isa(&p, c.buf, c.len, n, LKV_DTYPE_FP32, b, (lkv_isa)9, &d),
                     LKV_ERR_ISA);
        free(buf);
        free(a);
        free(b);
        free(c.buf);
        free(x);
    }
}

/* Version 4: offset of the first piece's header of the chunk at `at` with
 * cnt vectors (after the u32 body length and the cnt * pieces norm bytes,
 * rounded up to even). Its first byte is the piece's mode. */
static size_t v4_first_header(size_t at, size_t cnt, uint32_t dim)
{
    const size_t nb = cnt * lkv_piece_count(dim);
    return at + 4 + nb + (nb & 1);
}

/* Data whose channels follow dataset lo in elements [0, split) and
 * dataset hi from split on. */
static float *make_mixed(int lo, int hi, uint32_t split, size_t n, uint32_t dim, uint64_t seed)
{
    float *a = make_dataset(lo, n, dim, seed), *b = make_dataset(hi, n, dim, seed + 1);
    for (size_t i = 0; i < n; i++)
        memcpy(a + i * dim + split, b + i * dim + split, (dim - split) * sizeof *a);
    free(b);
    return a;
}

/* Version 4's two modes on every path: i.i.d. normal data codes rotated
 * (mode 0), lognormal channel scales and keys with outlier channels code in
 * the channel domain (mode 1), in every chunk including the partial one;
 * with pieces (D = 96: 64 + 32, D = 112: 64 + 32 + 16) the first piece's
 * byte says the same. A chunk whose first piece is normal and whose second
 * is lognormal mixes the modes: its first byte is 0 and it is shorter than
 * version 3's chunk plus the two rotated headers, which only a channel
 * second piece can make it. The SIMD path writes the scalar bytes and
 * decodes them to the scalar output. */
static void v4_modes(lkv_isa isa)
{
    need(isa);
    static const struct {
        int lo, hi;
        uint32_t dim, split;
        unsigned mode; /* of every chunk's first piece */
        int mixed;     /* the second piece is the other mode */
    } cases[] = {
        {DS_NORMAL, DS_NORMAL, 128, 0, 0, 0},      {DS_NORMAL, DS_NORMAL, 64, 0, 0, 0},
        {DS_NORMAL, DS_NORMAL, 112, 0, 0, 0},      {DS_LOGNORMAL, DS_LOGNORMAL, 128, 0, 1, 0},
        {DS_LOGNORMAL, DS_LOGNORMAL, 16, 0, 1, 0}, {DS_LOGNORMAL, DS_LOGNORMAL, 96, 0, 1, 0},
        {DS_KEYS, DS_KEYS, 128, 0, 1, 0},          {DS_KEYS, DS_KEYS, 112, 0, 1, 0},
        {DS_NORMAL, DS_LOGNORMAL, 96, 64, 0, 1},
    };
    static const uint32_t qs[] = {20, 59, 300};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (size_t qi = 0; qi < 3; qi++) {
            const uint32_t dim = cases[i].dim;
            const size_t n = pair_and_partial(LKV_FMT_VERSION_P4) + 1; /* 2 x 256 + 89 */
            const lkv_params p = p2f(qs[qi], dim, LKV_FMT_VERSION_P4);
            const lkv_params p3 = p2f(qs[qi], dim, LKV_FMT_VERSION_P3);
            float *x = make_mixed(cases[i].lo, cases[i].hi, cases[i].split ? cases[i].split : dim,
                                  n, dim, 0xd00d + 13 * i + qi);
            char ctx[96];
            snprintf(ctx, sizeof ctx, "format=4 %s/%s dim=%u q=%u", ds_name[cases[i].lo],
                     ds_name[cases[i].hi], dim, p.q);
            coded c = encode_both(isa, &p, LKV_DTYPE_FP32, x, n, ctx);
            cr_assert(c.buf, "%s", ctx);
            coded c3 = encode(&p3, x, n);
            size_t at = 0, at3 = 0;
            for (size_t first = 0, k = 0; first < n; first += 256, k++) {
                const size_t cnt = n - first < 256 ? n - first : 256;
                size_t b = 0, b3 = 0;
                cr_assert_eq(lkv_p2_chunk_size(&p, c.buf + at, c.len - at, cnt, &b, NULL), LKV_OK);
                cr_assert_eq(lkv_p2_chunk_size(&p3, c3.buf + at3, c3.len - at3, cnt, &b3, NULL),
                             LKV_OK);
                const size_t h = v4_first_header(at, cnt, dim);
                cr_expect_eq(c.buf[h], cases[i].mode, "%s chunk %zu: first piece's mode %u", ctx, k,
                             c.buf[h]);
                if (c.buf[h] == 0)
                    cr_expect_eq(c.buf[h + 1], 0, "%s chunk %zu: pad byte", ctx, k);
                const size_t rotated = b3 + 2 * lkv_piece_count(dim);
                if (cases[i].mixed)
                    cr_expect_lt(b, rotated, "%s chunk %zu: %zu bytes, all rotated %zu", ctx, k, b,
                                 rotated);
                else
                    cr_expect_eq(b == rotated, cases[i].mode == 0,
                                 "%s chunk %zu: %zu bytes, all rotated %zu", ctx, k, b, rotated);
                at += b;
                at3 += b3;
            }
            cr_assert_eq(at, c.len);
            cr_assert_eq(check_decode(isa, &p, c.buf, c.len, n, ctx), LKV_OK, "%s", ctx);
            /* bf16 input takes the same paths */
            void *xb = as_dtype(x, n * dim, LKV_DTYPE_BF16);
            coded e = encode_both(isa, &p, LKV_DTYPE_BF16, xb, n, ctx);
            cr_assert(e.buf, "%s", ctx);
            free(e.buf), free(xb), free(c.buf), free(c3.buf), free(x);
        }
}

Test(p2_isa, avx2_v4_modes)
{
    v4_modes(LKV_ISA_AVX2);
}
Test(p2_isa, avx512_v4_modes)
{
    v4_modes(LKV_ISA_AVX512);
}

/* Version 4's mode changing from chunk to chunk: chunks of lognormal
 * channels (channel mode) and of normal data (rotated) in turn, whole and
 * partial. The SIMD encoder's estimate computes the points of the mode the
 * previous chunk coded (p2.c est_channel), so every chunk after the first
 * here finds the other mode's points and must compute its own: the same
 * bytes as the scalar path either way. */
static void v4_mode_flips(lkv_isa isa)
{
    need(isa);
    static const uint32_t dims[] = {128, 96};
    for (size_t di = 0; di < 2; di++) {
        const uint32_t dim = dims[di];
        const size_t n = 4 * 256 + 45;
        const lkv_params p = p2f(59, dim, LKV_FMT_VERSION_P4);
        float *x = make_dataset(DS_LOGNORMAL, n, dim, 0xf11b + di);
        float *y = make_dataset(DS_NORMAL, n, dim, 0xf11c + di);
        for (size_t v = 256; v < n; v++)
            if (v / 256 % 2)
                memcpy(x + v * dim, y + v * dim, dim * sizeof *x);
        char ctx[48];
        snprintf(ctx, sizeof ctx, "format=4 mode flips dim=%u", dim);
        coded c = encode_both(isa, &p, LKV_DTYPE_FP32, x, n, ctx);
        cr_assert(c.buf, "%s", ctx);
        size_t at = 0;
        for (size_t first = 0; first < n; first += 256) {
            const size_t cnt = n - first < 256 ? n - first : 256;
            size_t b = 0;
            cr_assert_eq(lkv_p2_chunk_size(&p, c.buf + at, c.len - at, cnt, &b, NULL), LKV_OK);
            cr_assert_eq(c.buf[v4_first_header(at, cnt, dim)], first / 256 % 2 ? 0 : 1,
                         "%s: chunk at %zu", ctx, first);
            at += b;
        }
        cr_assert_eq(check_decode(isa, &p, c.buf, c.len, n, ctx), LKV_OK, "%s", ctx);
        free(c.buf), free(x), free(y);
    }
}

Test(p2_isa, avx2_v4_mode_flips)
{
    v4_mode_flips(LKV_ISA_AVX2);
}
Test(p2_isa, avx512_v4_mode_flips)
{
    v4_mode_flips(LKV_ISA_AVX512);
}
