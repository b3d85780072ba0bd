/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpu_block_test.cu - the CUDA codec's per-block functions (box search,
 * point <-> index, bit fields), run on the host against codec/ref.c.
 *
 * lkv_cuda_block.cuh is __host__ __device__, so this program checks the
 * very code the kernels inline, on any machine with nvcc and no GPU (CI).
 * Inputs stress the tie and box-edge rules: exact halves, the box faces
 * +-Q, +-(Q - 1/2), +-(Q + 1/2), signed zeros, far outside the box, and
 * random reals; indices cover both E8 cosets, the codebook's last index
 * and the first invalid ones. Prints "N passed, M failed"; exit 1 on failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_cuda_block.cuh"

extern "C" {
#include "lkv_codec_internal.h"
}

static unsigned long long g_pass, g_fail;

#define CHECK(cond, ...)                                    \
    do {                                                    \
        if (cond) {                                         \
            g_pass++;                                       \
        } else {                                            \
            if (g_fail < 20) {                              \
                printf("FAIL %s:%d: ", __FILE__, __LINE__); \
                printf(__VA_ARGS__);                        \
                printf("\n");                               \
            }                                               \
            g_fail++;                                       \
        }                                                   \
    } while (0)

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}
static float urand(float lo, float hi)
{
    return lo + (hi - lo) * (float)((rnd() >> 40) * (1.0 / 16777216.0));
}

/* A coordinate that exercises the rules around the box [-Q, Q]. */
static float special_coord(uint32_t q)
{
    const float qf = (float)q;
    switch (rnd() % 12) {
    case 0: return (float)((int)(rnd() % (4 * q + 5)) - (int)(2 * q + 2)) * 0.5f; /* halves */
    case 1: return (rnd() & 1) ? qf : -qf;
    case 2: return (rnd() & 1) ? qf - 0.5f : -qf + 0.5f;
    case 3: return (rnd() & 1) ? qf + 0.5f : -qf - 0.5f;
    case 4: return (rnd() & 1) ? 0.0f : -0.0f;
    case 5: return urand(-qf - 3.0f, qf + 3.0f) * 3.0f;
    case 6: return (rnd() & 1) ? qf - 1.0f : -qf + 1.0f;
    case 7: return urand(-1e-6f, 1e-6f);
    default: return urand(-qf - 1.5f, qf + 1.5f);
    }
}

static void test_closest_and_index(lkv_variant var, uint32_t q, int trials)
{
    const lkv_params p = {var, q, 64};
    lkv_derived d;
    lkv_derive(&p, &d);
    lkv_cuda_plan P;
    lkv_cuda_plan_init(&p, &P);
    const uint32_t n = d.n;
    for (int t = 0; t < trials; t++) {
        float z[8];
        const int mode = t % 5;
        const float qf = (float)q;
        for (uint32_t i = 0; i < n; i++) {
            switch (mode) {
            case 0: z[i] = special_coord(q); break;
            case 1: z[i] = urand(-qf, qf); break;
            case 2: z[i] = urand(-1.2f, 1.2f) * qf; break;
            case 3: /* near-integers and near-halves: the estimate's margins */
                z[i] = (float)((int)(rnd() % (2 * q + 1)) - (int)q) + 0.5f * (float)(rnd() & 1) +
                       urand(-1e-3f, 1e-3f) * (float)(1 << (rnd() % 4));
                break;
            default: /* as the codec sees them: a few near the face, most small */
                z[i] = urand(-1.0f, 1.0f) * urand(0.0f, 1.0f) * qf * (1.0f + 1.0f / 2048.0f);
                break;
            }
        }
        int32_t p2[8];
        lkv_ref_closest(&d, z, p2);
        const lkv_u128 ref_idx = lkv_ref_point_index(&d, p2);
        uint32_t w[8], wf[8];
        lkv_u128 idx;
        int half = 0, half_f = 0;
        if (n == 8) {
            half = lkv_e8_box(z, P.qf, w);
            half_f = lkv_e8_closest(z, P.qf, P.e8_margin, wf);
            idx = P.wide ? lkv_index_wide<8>(&P, w, half) : lkv_e8_index_narrow(&P, w, half);
        } else {
            lkv_d4_box(z, P.qf, w);
            lkv_d4_closest(z, P.qf, wf);
            idx = P.wide ? lkv_index_wide<4>(&P, w, 0) : lkv_d4_index_narrow(&P, w);
        }
        /* the fast search the kernels use equals the exact one */
        CHECK(half_f == half && memcmp(w, wf, n * sizeof w[0]) == 0,
              "%s Q=%u trial %d: fast closest point differs (z0=%.9g z1=%.9g)",
              lkv_variant_name(var), q, t, (double)z[0], (double)z[1]);
        /* the wide form must agree everywhere, the narrow one where used */
        const lkv_u128 idx_w =
            n == 8 ? lkv_index_wide<8>(&P, w, half) : lkv_index_wide<4>(&P, w, 0);
        int same_pt = 1;
        for (uint32_t i = 0; i < n; i++) {
            const int32_t mine =
                n == 8 ? 2 * ((int32_t)w[i] - (int32_t)q) + half : 2 * ((int32_t)w[i] - (int32_t)q);
            same_pt &= mine == p2[i];
        }
        CHECK(same_pt && idx == ref_idx && idx_w == ref_idx,
              "%s Q=%u trial %d: point/index differ from ref (z0=%.9g z1=%.9g)",
              lkv_variant_name(var), q, t, (double)z[0], (double)z[1]);
    }
}

static void test_index_to_point(lkv_variant var, uint32_t q, int trials)
{
    const lkv_params p = {var, q, 64};
    lkv_derived d;
    lkv_derive(&p, &d);
    lkv_cuda_plan P;
    lkv_cuda_plan_init(&p, &P);
    const uint32_t n = d.n;
    for (int t = 0; t < trials; t++) {
        lkv_u128 idx;
        switch (t % 6) {
        case 0: idx = d.codebook - 1 - (lkv_u128)(rnd() % 4); break;
        case 1: idx = d.codebook + (lkv_u128)(rnd() % 4); break; /* invalid */
        case 2:
            idx = n == 8 ? d.e8_int_count - 1 + (lkv_u128)(rnd() % 3) : (lkv_u128)(rnd() % 3);
            break;
        case 3:
            idx = ((((lkv_u128)rnd() << 64) | rnd()) >> (128 - d.k));
            break; /* any k-bit value */
        default: idx = ((((lkv_u128)rnd() << 64) | rnd()) % d.codebook); break;
        }
        int32_t p2[8];
        const int ref_ok = lkv_ref_index_point(&d, idx, p2);
        float pt[8], ptw[8];
        int ok;
        if (P.wide)
            ok = n == 8 ? lkv_point_wide<8>(&P, idx, pt) : lkv_point_wide<4>(&P, idx, pt);
        else if (n == 8)
            ok = lkv_e8_point_narrow(&P, (uint64_t)idx, pt);
        else
            ok = lkv_d4_point_narrow(&P, (uint64_t)idx, pt);
        const int okw = n == 8 ? lkv_point_wide<8>(&P, idx, ptw) : lkv_point_wide<4>(&P, idx, ptw);
        int same = ok == ref_ok && okw == ref_ok;
        if (same && ref_ok)
            for (uint32_t i = 0; i < n; i++)
                same &= pt[i] == (float)p2[i] * 0.5f && ptw[i] == (float)p2[i] * 0.5f;
        CHECK(same, "%s Q=%u idx=%llx:%llx: point differs from ref (ok %d/%d ref %d)",
              lkv_variant_name(var), q, (unsigned long long)(uint64_t)(idx >> 64),
              (unsigned long long)(uint64_t)idx, ok, okw, ref_ok);
    }
}

/* Bit fields: random fields written with lkv_put_bits read back with the
 * getters and against a bit-by-bit model. */
static void test_bits(int trials)
{
    for (int t = 0; t < trials; t++) {
        uint32_t words[16] = {0};
        uint8_t model[64] = {0};
        const uint32_t nbits = 1 + (uint32_t)(rnd() % 96);
        const uint32_t pos = (uint32_t)(rnd() % (512 - 96 - 32));
        lkv_u128 v = (((lkv_u128)rnd() << 64) | rnd());
        v &= (((lkv_u128)1) << nbits) - 1u;
        lkv_put_bits(words, pos, (uint64_t)v, (uint64_t)(v >> 64), nbits);
        for (uint32_t b = 0; b < nbits; b++)
            if ((v >> b) & 1u)
                model[(pos + b) >> 3] |= (uint8_t)(1u << ((pos + b) & 7u));
        int same = memcmp(words, model, sizeof model) == 0;
        same &= lkv_get_bits128(words, pos, nbits) == v;
        if (nbits <= 63)
            same &= lkv_get_bits64(words, pos, nbits) == (uint64_t)v;
        CHECK(same, "bits pos=%u nbits=%u", pos, nbits);
    }
}

/* The invariant-divisor division against the hardware one. */
static void test_udiv(int trials)
{
    const uint64_t ds[] = {
        1, 2, 3, 76, 77, 255, 2046, 2047, 456533, 3442951, 2047ull * 2047 * 2047};
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
        const uint64_t dd = ds[i];
        const uint64_t minv = UINT64_MAX / dd;
        for (int t = 0; t < trials; t++) {
            const uint64_t nn = t == 0   ? UINT64_MAX
                                : t == 1 ? 0
                                : t == 2 ? dd * 5 - 1
                                         : rnd() >> (rnd() % 64);
            uint64_t r;
            const uint64_t qq = lkv_udiv64(nn, dd, minv, &r);
            CHECK(qq == nn / dd && r == nn % dd, "udiv64 %llu / %llu", (unsigned long long)nn,
                  (unsigned long long)dd);
            if (dd <= 0xffffffffu) {
                const uint32_t n32 = (uint32_t)nn, d32 = (uint32_t)dd;
                uint32_t r32;
                const uint32_t q32 = lkv_udiv32(n32, d32, 0xffffffffu / d32, &r32);
                CHECK(q32 == n32 / d32 && r32 == n32 % d32, "udiv32 %u / %u", n32, d32);
            }
        }
    }
}

/* The narrow decode's exact inverses, for every Q that plan_init makes
 * narrow: n / base for n < base^4, v / base^4 for v < base^8, at random and
 * at the multiples of the divisor, their neighbours and the largest n. */
static void test_mdiv(int trials)
{
    unsigned narrow = 0;
    for (uint32_t q = 1; q <= 127; q++) {
        const lkv_params p = {LKV_VARIANT_E8, q, 64};
        lkv_cuda_plan P;
        lkv_cuda_plan_init(&p, &P);
        if (P.wide)
            continue;
        narrow++;
        for (int c = 0; c < 2; c++) {
            const uint32_t d = c ? P.c : P.b, d4 = c ? P.c4 : P.b4;
            const uint32_t m = c ? P.mg_c : P.mg_b;
            const uint64_t m4 = c ? P.mg_c4 : P.mg_b4;
            const uint64_t top = (uint64_t)d4 * d4 - 1; /* < 2^64 below Q = 128 */
            for (int t = 0; t < trials; t++) {
                const uint32_t k = (uint32_t)(rnd() % (d4 / d + 1));
                const uint32_t n = t == 0       ? d4 - 1
                                   : t % 3 == 0 ? (uint32_t)(rnd() % d4)
                                                : k * d - (uint32_t)(t % 3 == 1 && k);
                uint32_t r;
                const uint32_t qq = lkv_mdiv32(n, 0u - d, m, P.mg_s, &r);
                CHECK(qq == n / d && r == n % d, "mdiv32 Q=%u %u / %u", q, n, d);
                const uint64_t k64 = rnd() % (top / d4 + 1);
                const uint64_t v = t == 0       ? top
                                   : t % 3 == 0 ? rnd() % (top + 1)
                                                : k64 * d4 - (uint64_t)(t % 3 == 1 && k64);
                CHECK((lkv_umulhi64(v, m4) >> P.mg_s4) == v / d4, "mdiv64 Q=%u %llu / %u", q,
                      (unsigned long long)v, d4);
            }
        }
    }
    CHECK(narrow == 112, "%u narrow Q values, expected 1..112", narrow);
}

/* The invariant-divisor division against IEEE division: every significand
 * of a for hard divisors (significand 1, all ones, 1 + ulp), random a and b
 * over the codec's ranges (2^-100 <= |a| < 2^17, 2^-34 <= b < 2^17). */
static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bitsf(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* The kernels' s = m16 / Q by lkv_div_by with the plan's reciprocal,
 * against IEEE division: every finite positive fp16 m16, every Q. */
static void test_scale_div(void)
{
    unsigned long long bad = 0, n = 0;
    for (uint32_t q = 1; q <= 1023; q++) {
        const lkv_params p = {LKV_VARIANT_E8, q, 64};
        lkv_cuda_plan P;
        lkv_cuda_plan_init(&p, &P);
        const float y = P.rq;
        for (uint32_t h = 1; h < 0x7c00u; h++, n++) {
            const float m = bitsf(lkv_math_f16_to_f32((uint16_t)h));
            bad += lkv_div_by(m, P.qf, y) != m / P.qf;
        }
    }
    CHECK(bad == 0, "m16 / Q: %llu of %llu quotients differ from IEEE division", bad, n);
}

static void test_div(long random_pairs)
{
    const uint32_t hard_b[] = {0x3f800000u, 0x3fffffffu, 0x3f800001u, 0x3fc00000u, 0x3faaaaabu};
    const int a_exp[] = {-100, -3, 0, 16};
    /* each hard divisor at one scale inside the range, and at both ends of
     * it (b near 2^-34 and 2^16) */
    const int n_hard = (int)(sizeof hard_b / sizeof hard_b[0]);
    for (int t = 0; t < 3 * n_hard; t++) {
        const size_t i = (size_t)(t % n_hard);
        const int b_exp = t < n_hard ? (int)(i * 7 % 40) - 30 : t < 2 * n_hard ? -34 : 16;
        const float b = ldexpf(bitsf(hard_b[i]), b_exp);
        const float y = lkv_recip_of(b);
        unsigned long bad = 0;
        for (size_t e = 0; e < sizeof a_exp / sizeof a_exp[0]; e++)
            for (uint32_t m = 0; m < 0x800000u; m += (e == 1 ? 1u : 7u)) {
                const float a = ldexpf(bitsf(0x3f800000u | m), a_exp[e]) * ((m & 2) ? -1.0f : 1.0f);
                bad += fbits(lkv_div_by(a, b, y)) != fbits(a / b);
            }
        CHECK(bad == 0, "div: b=%a: %lu quotients differ from IEEE division", (double)b, bad);
    }
    unsigned long bad = 0;
    for (long t = 0; t < random_pairs; t++) {
        const float b =
            ldexpf(bitsf(0x3f800000u | (uint32_t)(rnd() & 0x7fffff)), (int)(rnd() % 51) - 34);
        const float a =
            ldexpf(bitsf(0x3f800000u | (uint32_t)(rnd() & 0x7fffff)), (int)(rnd() % 118) - 100) *
            ((rnd() & 1) ? -1.0f : 1.0f);
        bad += fbits(lkv_div_by(a, b, lkv_recip_of(b))) != fbits(a / b);
    }
    CHECK(bad == 0, "div: %lu of %ld random quotients differ from IEEE division", bad,
          random_pairs);
}

int main(void)
{
    const uint32_t qs[] = {1, 2, 3, 10, 37, 38, 100, 112, 113, 127, 128, 152, 500, 1023};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        test_closest_and_index(LKV_VARIANT_E8, qs[i], 30000);
        test_closest_and_index(LKV_VARIANT_D4, qs[i], 30000);
        test_index_to_point(LKV_VARIANT_E8, qs[i], 20000);
        test_index_to_point(LKV_VARIANT_D4, qs[i], 20000);
    }
    test_bits(20000);
    test_div(20000000);
    test_udiv(2000);
    test_mdiv(3000);
    test_scale_div();
    printf("gpu_block_test: %llu passed, %llu failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
