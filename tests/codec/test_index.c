/* SPDX-License-Identifier: Apache-2.0 */
/* Index maps: point <-> index is a bijection onto [0, codebook size). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_codec_internal.h"
#include "testutil.h"

static lkv_derived derive(lkv_variant v, uint32_t q)
{
    const lkv_params p = {v, q, 128};
    lkv_derived d;
    lkv_derive(&p, &d);
    return d;
}

/* Visits every codebook point of D4/E8 in [-Q,Q]^n (doubled coordinates). */
static size_t for_each_point(const lkv_derived *d, unsigned char *seen)
{
    const int32_t q = (int32_t)d->p.q;
    const uint32_t n = d->n;
    size_t count = 0;
    for (int coset = 0; coset < (n == 8 ? 2 : 1); coset++) {
        const int32_t lo = coset ? -2 * q + 1 : -2 * q, hi = coset ? 2 * q - 1 : 2 * q;
        int32_t p2[8];
        for (uint32_t i = 0; i < n; i++)
            p2[i] = lo;
        for (;;) {
            int32_t sum = 0;
            for (uint32_t i = 0; i < n; i++)
                sum += coset ? (p2[i] - 1) / 2 : p2[i] / 2;
            if ((sum & 1) == 0) {
                const lkv_u128 idx = lkv_ref_point_index(d, p2);
                cr_assert(idx < d->codebook, "index inside the codebook");
                cr_assert_eq(seen[(size_t)idx], 0, "index %llu is hit twice",
                             (unsigned long long)idx);
                seen[(size_t)idx] = 1;
                int32_t back[8];
                cr_assert(lkv_ref_index_point(d, idx, back));
                cr_assert_eq(memcmp(back, p2, n * sizeof *p2), 0, "index -> point -> same point");
                count++;
            }
            uint32_t i = 0;
            while (i < n && p2[i] == hi) {
                p2[i] = lo;
                i++;
            }
            if (i == n)
                break;
            p2[i] += 2;
        }
    }
    return count;
}

Test(index, d4_exhaustive_bijection_small_q)
{
    for (uint32_t q = 1; q <= 12; q++) {
        const lkv_derived d = derive(LKV_VARIANT_D4, q);
        unsigned char *seen = calloc((size_t)d.codebook, 1);
        const size_t count = for_each_point(&d, seen);
        cr_assert_eq(count, (size_t)d.codebook, "q=%u: every index used exactly once", q);
        cr_assert_leq((double)d.codebook, (double)((lkv_u128)1 << d.k), "fits k bits");
        free(seen);
    }
}

Test(index, e8_exhaustive_bijection_small_q, .timeout = 60)
{
    for (uint32_t q = 1; q <= 2; q++) {
        const lkv_derived d = derive(LKV_VARIANT_E8, q);
        unsigned char *seen = calloc((size_t)d.codebook, 1);
        const size_t count = for_each_point(&d, seen);
        cr_assert_eq(count, (size_t)d.codebook, "q=%u", q);
        cr_assert(d.codebook <= ((lkv_u128)1 << d.k));
        free(seen);
    }
}

static void random_point(lkv_rng *r, const lkv_derived *d, int32_t *p2)
{
    const int32_t q = (int32_t)d->p.q;
    for (;;) {
        const int half = d->n == 8 ? (int)(lkv_rng_next(r) & 1) : 0;
        int32_t sum = 0;
        for (uint32_t i = 0; i < d->n; i++) {
            const int32_t span = half ? 2 * q : 2 * q + 1;
            const int32_t v = (int32_t)(lkv_rng_next(r) % (uint64_t)span) - q; /* integer part */
            p2[i] = 2 * v + half;
            sum += v;
        }
        if ((sum & 1) == 0)
            return;
    }
}

Test(index, random_roundtrip_large_q_including_128_bit_indices)
{
    lkv_rng r = {42};
    const uint32_t qs[] = {37, 38, 127, 128, 152, 500, 1022, 1023};
    for (size_t t = 0; t < sizeof qs / sizeof qs[0]; t++)
        for (int v = 1; v <= 2; v++) {
            const lkv_derived d = derive((lkv_variant)v, qs[t]);
            for (int i = 0; i < 20000; i++) {
                int32_t p2[8], back[8];
                random_point(&r, &d, p2);
                const lkv_u128 idx = lkv_ref_point_index(&d, p2);
                cr_assert(idx < d.codebook);
                cr_assert(lkv_ref_index_point(&d, idx, back));
                cr_assert_eq(memcmp(back, p2, d.n * sizeof *p2), 0, "q=%u v=%d", qs[t], v);
                /* and index -> point -> index from a random index */
                lkv_u128 ri = ((lkv_u128)lkv_rng_next(&r) << 64 | lkv_rng_next(&r)) % d.codebook;
                cr_assert(lkv_ref_index_point(&d, ri, back));
                cr_assert(lkv_ref_point_index(&d, back) == ri);
            }
            /* the extremes of the index space */
            int32_t pt[8];
            cr_assert(lkv_ref_index_point(&d, 0, pt));
            cr_assert(lkv_ref_index_point(&d, d.codebook - 1, pt));
            cr_assert(lkv_ref_point_index(&d, pt) == d.codebook - 1);
            cr_assert_not(lkv_ref_index_point(&d, d.codebook, pt), "first invalid index");
        }
}
