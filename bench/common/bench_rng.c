/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_rng.c - the benchmarks' one PRNG: xoshiro256** seeded through
 * splitmix64, Box-Muller normals. Written from the published algorithms;
 * the sequence for a seed is fixed, so a benchmark's inputs are the same on
 * every machine (codec_quality's report depends on that bit for bit).
 */
#include "lkv_bench.h"

#include <math.h>

uint64_t lkv_bench_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void lkv_bench_rng_seed(lkv_bench_rng *r, uint64_t seed)
{
    uint64_t st = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = lkv_bench_splitmix64(&st);
    r->has_spare = 0;
    r->spare = 0.0;
}

static uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t lkv_bench_rng_next(lkv_bench_rng *r)
{
    uint64_t *s = r->s;
    const uint64_t out = rotl64(s[1] * 5u, 7) * 9u;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return out;
}

double lkv_bench_rng_uniform(lkv_bench_rng *r)
{
    return (double)((lkv_bench_rng_next(r) >> 11) + 1u) * 0x1.0p-53;
}

double lkv_bench_rng_normal(lkv_bench_rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    const double rad = sqrt(-2.0 * log(lkv_bench_rng_uniform(r)));
    const double ang = 6.283185307179586476925 * lkv_bench_rng_uniform(r);
    r->spare = rad * sin(ang);
    r->has_spare = 1;
    return rad * cos(ang);
}
