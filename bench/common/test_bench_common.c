/* SPDX-License-Identifier: Apache-2.0 */
/* bench/common: the PRNG's published values, quantiles, the slug and the
 * JSON writer's exact layout (the results files depend on all four). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_bench.h"

Test(rng, splitmix64_matches_the_reference_sequence)
{
    /* Vigna's splitmix64.c from state 0. */
    uint64_t st = 0;
    cr_expect_eq(lkv_bench_splitmix64(&st), 0xe220a8397b1dcdafull);
    cr_expect_eq(lkv_bench_splitmix64(&st), 0x6e789e6aa1b965f4ull);
    cr_expect_eq(lkv_bench_splitmix64(&st), 0x06c45d188009454full);
}

Test(rng, seeding_is_splitmix_and_draws_are_reproducible)
{
    lkv_bench_rng a, b;
    lkv_bench_rng_seed(&a, 0);
    cr_expect_eq(a.s[0], 0xe220a8397b1dcdafull);
    cr_expect_eq(a.s[1], 0x6e789e6aa1b965f4ull);
    lkv_bench_rng_seed(&b, 0);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(lkv_bench_rng_next(&a), lkv_bench_rng_next(&b));
    lkv_bench_rng_seed(&b, 1);
    cr_expect_neq(lkv_bench_rng_next(&a), lkv_bench_rng_next(&b));
}

Test(rng, uniform_in_the_half_open_unit_interval_and_normals_standard)
{
    lkv_bench_rng r;
    lkv_bench_rng_seed(&r, 42);
    const int n = 200000;
    double sum = 0, sq = 0;
    for (int i = 0; i < n; i++) {
        const double u = lkv_bench_rng_uniform(&r);
        cr_assert(u > 0.0 && u <= 1.0, "u = %g", u);
        const double z = lkv_bench_rng_normal(&r);
        sum += z;
        sq += z * z;
    }
    /* Five standard errors: mean 0 +- 0.011, variance 1 +- 0.016. */
    cr_expect(fabs(sum / n) < 0.011, "mean %g", sum / n);
    cr_expect(fabs(sq / n - 1.0) < 0.016, "variance %g", sq / n);
}

Test(stats, nearest_rank_quantiles_and_medians)
{
    double v[10];
    for (int i = 0; i < 10; i++)
        v[i] = 10 - i; /* 10 .. 1, unsorted */
    lkv_bench_sort(v, 10);
    cr_expect_eq(v[0], 1.0);
    cr_expect_eq(lkv_bench_quantile(v, 10, 0.0), 1.0);
    cr_expect_eq(lkv_bench_quantile(v, 10, 0.5), 5.0);  /* rank ceil(5) */
    cr_expect_eq(lkv_bench_quantile(v, 10, 0.51), 6.0); /* rank ceil(5.1) */
    cr_expect_eq(lkv_bench_quantile(v, 10, 0.99), 10.0);
    cr_expect_eq(lkv_bench_quantile(v, 10, 1.0), 10.0);
    cr_expect_eq(lkv_bench_quantile(v, 0, 0.5), 0.0);
    double even[4] = {4, 1, 3, 2}, odd[3] = {9, 7, 8};
    cr_expect_eq(lkv_bench_median(even, 4), 2.5);
    cr_expect_eq(lkv_bench_median(odd, 3), 8.0);
}

Test(stats, samples_grow_and_keep_their_order)
{
    lkv_bench_samples s = {0};
    for (int i = 0; i < 3000; i++)
        cr_assert_eq(lkv_bench_samples_push(&s, i), 0);
    cr_expect_eq(s.n, 3000);
    cr_expect_eq(s.v[0], 0.0);
    cr_expect_eq(s.v[2999], 2999.0);
    lkv_bench_samples_free(&s);
    cr_expect(s.v == NULL && s.n == 0 && s.cap == 0);
}

Test(probe, slug_of_cpu_names)
{
    char out[64];
    lkv_bench_slug("AMD EPYC 9654 96-Core Processor", out, sizeof out);
    cr_expect_str_eq(out, "amd-epyc-9654-96-core-processor");
    lkv_bench_slug("  Intel(R) Xeon(R) Platinum  ", out, sizeof out);
    cr_expect_str_eq(out, "intel-r-xeon-r-platinum");
    lkv_bench_slug("AMD EPYC", out, 5);
    cr_expect_str_eq(out, "amd");
    lkv_bench_cpu cpu;
    lkv_bench_cpu_probe(&cpu);
    cr_expect(cpu.model[0] != '\0');
}

Test(json, layout_escapes_and_non_finite_numbers)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert(f);
    lkv_json j;
    lkv_json_start(&j, f);
    lkv_json_str(&j, "cpu", "say \"hi\"\\\n");
    lkv_json_int(&j, "cores", -2);
    lkv_json_object(&j, "block", LKV_JSON_INLINE);
    lkv_json_uint(&j, "kv", 2);
    lkv_json_str(&j, "dtype", "bf16");
    lkv_json_end(&j);
    lkv_json_array(&j, "rows", LKV_JSON_BLOCK);
    for (int i = 0; i < 2; i++) {
        lkv_json_object(&j, NULL, LKV_JSON_INLINE);
        lkv_json_num(&j, "x", "%.2f", i ? NAN : 1.5);
        lkv_json_end(&j);
    }
    lkv_json_end(&j);
    lkv_json_array(&j, "empty", LKV_JSON_BLOCK);
    lkv_json_end(&j);
    lkv_json_array(&j, "sets", LKV_JSON_BLOCK);
    lkv_json_object(&j, NULL, LKV_JSON_BLOCK);
    lkv_json_str(&j, "name", "a");
    lkv_json_end(&j);
    cr_assert_eq(lkv_json_finish(&j), 0); /* closes "sets" and the top */
    fclose(f);
    cr_expect_str_eq(buf, "{\n"
                          "  \"cpu\": \"say \\\"hi\\\"\\\\\\u000a\",\n"
                          "  \"cores\": -2,\n"
                          "  \"block\": {\"kv\": 2, \"dtype\": \"bf16\"},\n"
                          "  \"rows\": [\n"
                          "    {\"x\": 1.50},\n"
                          "    {\"x\": null}\n"
                          "  ],\n"
                          "  \"empty\": [],\n"
                          "  \"sets\": [\n"
                          "    {\n"
                          "      \"name\": \"a\"\n"
                          "    }\n"
                          "  ]\n"
                          "}\n");
    free(buf);
}
