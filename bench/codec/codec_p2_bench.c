/* SPDX-License-Identifier: Apache-2.0 */
/*
 * codec_p2_bench.c - single-core encode/decode throughput of codec profile 2
 * against profile 1 at the same error (issue 14, item 4, CPU part).
 *
 * Design note: the rows are profile 1 E8 Q=38 and profile 2 at Q=59
 * (container version 3, the default), each on its best instruction-set
 * path, on the scalar one and on AVX2 (the path of CPUs without AVX-512;
 * left out where the CPU lacks AVX2), and profile 2 in container version 2
 * at Q=54 on the best path. Q=59 (v3) and Q=54 (v2) are the Qs whose error
 * is at most profile 1 Q=38's on normal data (4.05e-4; docs/codec-v2.md). All rows code
 * the same standard-normal bf16 vectors (2^20 by default, D=128), one thread.
 * Rounds are interleaved (every row once per round, in order) so that a
 * burst of load from other work on a shared machine hits all rows alike;
 * each row reports the median over rounds, by the thread's CPU clock (time
 * actually running: the per-core figure on a shared machine) and by the wall
 * clock. The program also reports bits per vector and rel-MSE of each row,
 * so the speed is quoted at a checked operating point. JSON to --json
 * (default bench/results/codec-p2-<machine>.json).
 *
 * --v4: container version 4 (the channel mode) beside version 3 instead,
 * Q=59 on AVX-512 (where the CPU has it) and AVX2, on the standard-normal
 * vectors and on "lognormal" ones (each channel scaled by exp(1.5 N(0,1)),
 * drawn once: codec_quality's lognormal_channels), where version 4 picks
 * the channel mode. JSON default bench/results/codec-p2-v4-<machine>.json.
 */
#define _GNU_SOURCE
#include "lkv_bench.h"
#include "lkv_codec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct row {
    const char *name;
    lkv_params p;
    lkv_isa isa;
    int data; /* 0: standard normal, 1: lognormal channels (--v4) */
    double enc_cpu[64], dec_cpu[64], enc_wall[64], dec_wall[64];
    double bits, rel_mse;
    size_t coded_len;
} row;

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, lkv_status st, const lkv_diag *d)
{
    fprintf(stderr, "codec_p2_bench: %s: %s: %s\n", what, lkv_status_name(st), d->msg);
    exit(1);
}

static int is_p2(const row *r)
{
    return lkv_profile_of(&r->p) == LKV_PROFILE_2;
}

static void encode_row(row *r, const uint16_t *x, size_t n, unsigned char *coded, size_t cap)
{
    lkv_diag d;
    lkv_status st;
    if (is_p2(r))
        st = lkv_p2_encode_isa(&r->p, LKV_DTYPE_BF16, x, n, coded, cap, &r->coded_len, r->isa, &d);
    else {
        st = lkv_encode(&r->p, LKV_DTYPE_BF16, x, n, coded, r->isa, &d);
        r->coded_len = n * lkv_record_bytes(&r->p);
    }
    if (st != LKV_OK)
        die(r->name, st, &d);
}

static void decode_row(row *r, const unsigned char *coded, size_t n, uint16_t *y)
{
    lkv_diag d;
    lkv_status st;
    if (is_p2(r))
        st = lkv_p2_decode_isa(&r->p, coded, r->coded_len, n, LKV_DTYPE_BF16, y, r->isa, &d);
    else
        st = lkv_decode(&r->p, coded, n, LKV_DTYPE_BF16, y, r->isa, &d);
    if (st != LKV_OK)
        die(r->name, st, &d);
}

static double median(const double *v, int n)
{
    double t[64];
    memcpy(t, v, (size_t)n * sizeof *t);
    return lkv_bench_median(t, (size_t)n);
}

int main(int argc, char **argv)
{
    size_t n = (size_t)1 << 20;
    int rounds = 5;
    const char *machine = "dev-vm-2core";
    const char *json = NULL;
    int v4 = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--v4"))
            v4 = 1;
        else if (!strcmp(argv[i], "--vectors") && i + 1 < argc)
            n = (size_t)strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--machine") && i + 1 < argc)
            machine = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json = argv[++i];
        else {
            fprintf(stderr, "usage: codec_p2_bench [--v4] [--vectors N] [--rounds K (1..64)] "
                            "[--machine NAME] [--json PATH]\n");
            return 2;
        }
    }
    if (rounds < 1 || rounds > 64 || n == 0) {
        fprintf(stderr, "codec_p2_bench: --rounds must be 1..64 and --vectors positive\n");
        return 2;
    }
    const uint32_t dim = 128;
    const lkv_params p3 = {LKV_VARIANT_E8, 59, dim, LKV_PROFILE_2, 3};
    const lkv_params p4 = {LKV_VARIANT_E8, 59, dim, LKV_PROFILE_2, 4};
    const row rows_v4[] = {
        {.name = "v3_normal_avx512", .p = p3, .isa = LKV_ISA_AVX512, .data = 0},
        {.name = "v4_normal_avx512", .p = p4, .isa = LKV_ISA_AVX512, .data = 0},
        {.name = "v3_lognorm_avx512", .p = p3, .isa = LKV_ISA_AVX512, .data = 1},
        {.name = "v4_lognorm_avx512", .p = p4, .isa = LKV_ISA_AVX512, .data = 1},
        {.name = "v3_normal_avx2", .p = p3, .isa = LKV_ISA_AVX2, .data = 0},
        {.name = "v4_normal_avx2", .p = p4, .isa = LKV_ISA_AVX2, .data = 0},
        {.name = "v3_lognorm_avx2", .p = p3, .isa = LKV_ISA_AVX2, .data = 1},
        {.name = "v4_lognorm_avx2", .p = p4, .isa = LKV_ISA_AVX2, .data = 1},
    };
    const row rows_v3[] = {
        {.name = "p1_e8_q38_best",
         .p = {LKV_VARIANT_E8, 38, dim, LKV_PROFILE_1},
         .isa = LKV_ISA_AUTO},
        {.name = "p1_e8_q38_scalar",
         .p = {LKV_VARIANT_E8, 38, dim, LKV_PROFILE_1},
         .isa = LKV_ISA_SCALAR},
        {.name = "p2_q59_best", .p = {LKV_VARIANT_E8, 59, dim, LKV_PROFILE_2}, .isa = LKV_ISA_AUTO},
        {.name = "p2_q59_scalar",
         .p = {LKV_VARIANT_E8, 59, dim, LKV_PROFILE_2},
         .isa = LKV_ISA_SCALAR},
        {.name = "p2v2_q54_best",
         .p = {LKV_VARIANT_E8, 54, dim, LKV_PROFILE_2, 2},
         .isa = LKV_ISA_AUTO},
        {.name = "p1_e8_q38_avx2",
         .p = {LKV_VARIANT_E8, 38, dim, LKV_PROFILE_1},
         .isa = LKV_ISA_AVX2},
        {.name = "p2_q59_avx2", .p = {LKV_VARIANT_E8, 59, dim, LKV_PROFILE_2}, .isa = LKV_ISA_AVX2},
    };
    row rows[16];
    _Static_assert(sizeof rows_v4 <= sizeof rows && sizeof rows_v3 <= sizeof rows, "rows");
    memcpy(rows, v4 ? rows_v4 : rows_v3, v4 ? sizeof rows_v4 : sizeof rows_v3);
    const size_t nall =
        v4 ? sizeof rows_v4 / sizeof rows_v4[0] : sizeof rows_v3 / sizeof rows_v3[0];
    /* rows of a path this CPU lacks are left out */
    int nrows = 0;
    for (size_t i = 0; i < nall; i++)
        if (rows[i].isa == LKV_ISA_AUTO || lkv_isa_supported(rows[i].isa))
            rows[nrows++] = rows[i];

    lkv_bench_rng rng;
    lkv_bench_rng_seed(&rng, 0x6B6C7632);
    uint16_t *xs[2] = {malloc(n * dim * 2), v4 ? malloc(n * dim * 2) : NULL},
             *y = malloc(n * dim * 2);
    uint16_t *x = xs[0];
    /* the largest bound of the profile 2 rows (v2's norms take more) */
    size_t cap = 0;
    for (int i = 0; i < nrows; i++)
        if (is_p2(&rows[i]) && lkv_p2_payload_bound(&rows[i].p, n) > cap)
            cap = lkv_p2_payload_bound(&rows[i].p, n);
    unsigned char *coded = malloc(cap);
    if (!x || !y || !coded || (v4 && !xs[1])) {
        fprintf(stderr, "codec_p2_bench: out of memory for %zu vectors\n", n);
        return 1;
    }
    for (size_t i = 0; i < n * dim; i++)
        x[i] = lkv_f32_to_bf16((float)lkv_bench_rng_normal(&rng));
    if (v4) {
        double scale[128];
        for (uint32_t j = 0; j < dim; j++)
            scale[j] = exp(1.5 * lkv_bench_rng_normal(&rng));
        for (size_t i = 0; i < n * dim; i++)
            xs[1][i] = lkv_f32_to_bf16((float)(scale[i % dim] * lkv_bench_rng_normal(&rng)));
    }
    memset(coded, 0, cap); /* fault the pages in before timing */
    memset(y, 0, n * dim * 2);

    for (int k = 0; k < rounds; k++)
        for (int i = 0; i < nrows; i++) {
            row *r = &rows[i];
            x = xs[r->data];
            double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
            encode_row(r, x, n, coded, cap);
            double c1 = clock_s(CLOCK_THREAD_CPUTIME_ID), w1 = clock_s(CLOCK_MONOTONIC);
            decode_row(r, coded, n, y);
            double c2 = clock_s(CLOCK_THREAD_CPUTIME_ID), w2 = clock_s(CLOCK_MONOTONIC);
            r->enc_cpu[k] = (double)n / (c1 - c0);
            r->dec_cpu[k] = (double)n / (c2 - c1);
            r->enc_wall[k] = (double)n / (w1 - w0);
            r->dec_wall[k] = (double)n / (w2 - w1);
            if (k == 0) {
                double num = 0.0, den = 0.0;
                for (size_t e = 0; e < n * dim; e++) {
                    const double a = lkv_bf16_to_f32(x[e]), b = lkv_bf16_to_f32(y[e]);
                    num += (a - b) * (a - b);
                    den += a * a;
                }
                r->rel_mse = num / den;
                r->bits = 8.0 * (double)r->coded_len / (double)n;
            }
            fprintf(stderr, "round %d %-18s enc %.3f M/s dec %.3f M/s (cpu clock)\n", k + 1,
                    r->name, r->enc_cpu[k] / 1e6, r->dec_cpu[k] / 1e6);
        }

    printf("%-18s %10s %10s %12s %12s %12s %12s\n", "row", "bits/vec", "rel-MSE", "enc M/s cpu",
           "dec M/s cpu", "enc M/s wall", "dec M/s wall");
    for (int i = 0; i < nrows; i++) {
        const row *r = &rows[i];
        printf("%-18s %10.1f %10.3g %12.3f %12.3f %12.3f %12.3f\n", r->name, r->bits, r->rel_mse,
               median(r->enc_cpu, rounds) / 1e6, median(r->dec_cpu, rounds) / 1e6,
               median(r->enc_wall, rounds) / 1e6, median(r->dec_wall, rounds) / 1e6);
    }

    char path[1024];
    if (!json) {
        snprintf(path, sizeof path, "%s/codec-p2-%s%s.json", LKV_BENCH_RESULTS_DIR, v4 ? "v4-" : "",
                 machine);
        json = path;
    }
    FILE *f = fopen(json, "w");
    if (!f) {
        fprintf(stderr, "codec_p2_bench: cannot write %s\n", json);
        return 1;
    }
    fprintf(f,
            "{\n  \"machine\": \"%s\",\n  \"note\": \"one thread on a machine shared with other "
            "work; medians over interleaved rounds; cpu = per thread CPU clock\",\n"
            "  \"isa_best\": \"%s\",\n  \"vectors\": %zu,\n  \"dim\": %u,\n  \"dtype\": \"bf16\",\n"
            "  \"rounds\": %d,\n  \"rows\": [\n",
            machine, lkv_isa_name(lkv_isa_best()), n, dim, rounds);
    for (int i = 0; i < nrows; i++) {
        const row *r = &rows[i];
        fprintf(f,
                "    {\"name\": \"%s\", \"profile\": %u, \"format\": %u, \"q\": %u, "
                "\"data\": \"%s\", \"isa\": \"%s\", "
                "\"bits_per_vector\": %.2f, \"rel_mse\": %.5g, "
                "\"encode_vps_cpu\": %.0f, \"decode_vps_cpu\": %.0f, "
                "\"encode_vps_wall\": %.0f, \"decode_vps_wall\": %.0f}%s\n",
                r->name, lkv_profile_of(&r->p), is_p2(r) ? lkv_p2_format_of(&r->p) : 1u, r->p.q,
                r->data ? "lognormal_channels" : "normal",
                lkv_isa_name(r->isa == LKV_ISA_AUTO ? lkv_isa_best() : r->isa), r->bits, r->rel_mse,
                median(r->enc_cpu, rounds), median(r->dec_cpu, rounds), median(r->enc_wall, rounds),
                median(r->dec_wall, rounds), i + 1 < nrows ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
    printf("wrote %s\n", json);
    free(xs[0]);
    free(xs[1]);
    free(y);
    free(coded);
    return 0;
}
