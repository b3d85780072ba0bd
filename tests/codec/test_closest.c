/* SPDX-License-Identifier: Apache-2.0 */
/* Closest point in the box: tie rules, box edges, and optimality against
 * brute force over the whole codebook for small Q. */
#include <criterion/criterion.h>
#include <math.h>
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

static void closest(lkv_variant v, uint32_t q, const float *z, int32_t *p2)
{
    const lkv_derived d = derive(v, q);
    lkv_ref_closest(&d, z, p2);
}

static double dist2(const float *z, const int32_t *p2, uint32_t n)
{
    double s = 0;
    for (uint32_t i = 0; i < n; i++) {
        const double e = (double)z[i] - 0.5 * p2[i];
        s += e * e;
    }
    return s;
}

Test(closest, d4_round_half_to_even_and_parity_fix)
{
    int32_t p[4];
    closest(LKV_VARIANT_D4, 38, (float[]){0.5f, 0, 0, 0}, p);
    cr_expect(p[0] == 0 && p[1] == 0 && p[2] == 0 && p[3] == 0, "0.5 rounds to even 0");
    closest(LKV_VARIANT_D4, 38, (float[]){1.5f, 0.5f, 0, 0}, p);
    cr_expect(p[0] == 4 && p[1] == 0, "1.5 -> 2, 0.5 -> 0: sum even, kept");
    /* f = (1,0,0,0) is odd; |d| = 0.4 on coordinate 0 is the largest: move it toward y */
    closest(LKV_VARIANT_D4, 38, (float[]){0.6f, 0.1f, 0, 0}, p);
    cr_expect(p[0] == 0 && p[1] == 0);
    /* tie |d0| = |d1| = 0.3: the lowest index moves */
    closest(LKV_VARIANT_D4, 38, (float[]){0.75f, 0.25f, 0, 0}, p);
    cr_expect(p[0] == 0 && p[1] == 0, "lowest index on ties: (0,0) not (2,2)");
    /* d = -0.0 counts as d >= 0: toward move is +1 */
    closest(LKV_VARIANT_D4, 38, (float[]){-0.0f, 1.0f, 0.0f, 0.0f}, p);
    cr_expect(p[0] == 2 && p[1] == 2 && p[2] == 0 && p[3] == 0, "got %d %d %d %d", p[0], p[1], p[2],
              p[3]);
}

Test(closest, d4_box_edges)
{
    int32_t p[4];
    /* clamped to 1 on three coordinates (toward moves leave the box): the free one moves */
    closest(LKV_VARIANT_D4, 1, (float[]){3, 3, 3, -0.2f}, p);
    cr_expect(p[0] == 2 && p[1] == 2 && p[2] == 2 && p[3] == -2);
    /* every coordinate clamped, far outside */
    closest(LKV_VARIANT_D4, 2, (float[]){9, -9, 9, 0.9f}, p);
    for (int i = 0; i < 4; i++)
        cr_expect(p[i] >= -4 && p[i] <= 4, "inside the box");
    cr_expect_eq(((p[0] + p[1] + p[2] + p[3]) / 2) & 1, 0, "a D4 point");
}

Test(closest, e8_ties_go_to_integer_coset)
{
    int32_t p[8];
    float z[8];
    for (int i = 0; i < 8; i++)
        z[i] = 0.25f; /* da = db = 0.5 */
    closest(LKV_VARIANT_E8, 38, z, p);
    for (int i = 0; i < 8; i++)
        cr_expect_eq(p[i], 0, "integer coset wins the tie");
    for (int i = 0; i < 8; i++)
        z[i] = 0.5f; /* exactly the half-integer point (1/2)^8, da = 2 */
    closest(LKV_VARIANT_E8, 38, z, p);
    for (int i = 0; i < 8; i++)
        cr_expect_eq(p[i], 1);
}

Test(closest, e8_half_coset_stays_inside_box)
{
    /* The reference would pick (Q+1/2, ...) and clamp it to a non-lattice point;
     * the box rule keeps half-integer coordinates within +-(Q - 1/2). */
    const uint32_t q = 5;
    float z[8] = {5.49f, 5.4f, 5.45f, 5.3f, 5.48f, 5.42f, 5.44f, 5.41f};
    int32_t p[8];
    closest(LKV_VARIANT_E8, q, z, p);
    for (int i = 0; i < 8; i++)
        cr_expect(p[i] >= -2 * (int)q && p[i] <= 2 * (int)q, "coordinate %d inside", i);
    int odd = p[0] & 1;
    for (int i = 1; i < 8; i++)
        cr_expect_eq(p[i] & 1, odd, "one coset");
}

/* Brute force: the minimum distance over the whole codebook. */
static double brute(const lkv_derived *d, const float *z)
{
    const int32_t q = (int32_t)d->p.q;
    double best = INFINITY;
    for (int coset = 0; coset < (d->n == 8 ? 2 : 1); coset++) {
        const int32_t lo = coset ? -2 * q + 1 : -2 * q, hi = coset ? 2 * q - 1 : 2 * q;
        int32_t p2[8];
        for (uint32_t i = 0; i < d->n; i++)
            p2[i] = lo;
        for (;;) {
            int32_t sum = 0;
            for (uint32_t i = 0; i < d->n; i++)
                sum += coset ? (p2[i] - 1) / 2 : p2[i] / 2;
            if ((sum & 1) == 0) {
                const double e = dist2(z, p2, d->n);
                if (e < best)
                    best = e;
            }
            uint32_t i = 0;
            while (i < d->n && p2[i] == hi) {
                p2[i] = lo;
                i++;
            }
            if (i == d->n)
                break;
            p2[i] += 2;
        }
    }
    return best;
}

static void check_optimal(lkv_variant v, uint32_t q, int trials, double spread)
{
    const lkv_derived d = derive(v, q);
    lkv_rng r = {1000u + q + 17u * (unsigned)v};
    for (int t = 0; t < trials; t++) {
        float z[8];
        for (uint32_t i = 0; i < d.n; i++) {
            /* mostly inside the box, sometimes past its edges, sometimes on half-integers */
            double x = (2 * lkv_rng_uniform(&r) - 1) * (q + spread);
            if (lkv_rng_next(&r) % 5 == 0)
                x = floor(x) + 0.5;
            z[i] = (float)x;
        }
        int32_t p2[8];
        lkv_ref_closest(&d, z, p2);
        for (uint32_t i = 0; i < d.n; i++)
            cr_assert(abs(p2[i]) <= 2 * (int)q, "inside the box");
        const double got = dist2(z, p2, d.n), best = brute(&d, z);
        cr_assert(got <= best * (1 + 1e-6) + 1e-9, "v=%d q=%u trial %d: %.9g > optimum %.9g",
                  (int)v, q, t, got, best);
    }
}

Test(closest, d4_matches_brute_force)
{
    for (uint32_t q = 1; q <= 6; q++)
        check_optimal(LKV_VARIANT_D4, q, 3000, 2.0);
}

Test(closest, e8_matches_brute_force, .timeout = 120)
{
    check_optimal(LKV_VARIANT_E8, 1, 1500, 1.5);
    check_optimal(LKV_VARIANT_E8, 2, 150, 1.5);
}
