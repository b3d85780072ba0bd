/* SPDX-License-Identifier: Apache-2.0 */
/*
 * auth_bench.c - what a call's token check costs (lkv_auth_find), by the
 * number of tokens in the file and where the presented token matches: the
 * first line, the last line, or none (same length, one byte off at the
 * end, the worst case for a comparison that would exit early). A constant-
 * time lookup should show the three equal within noise; its cost grows
 * with tokens x token length, which this measures for sizing a token file.
 *
 * Usage: auth_bench [--json FILE] [--machine NAME]
 * Prints a table; with --json writes the rows (bench/results/auth-*.json).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_auth.h"
#include "lkv_bench.h"

#define TOKEN_LEN 43 /* 32 random bytes in base64url, as an operator would make them */
#define REPS      15

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* ns per lookup of tok: the median of REPS timings of `iters` lookups. */
static double time_lookup(const lkv_auth_table *t, const char *tok, size_t iters)
{
    double v[REPS];
    volatile uintptr_t sink = 0;
    for (int r = 0; r < REPS; r++) {
        const double t0 = lkv_bench_now_s();
        for (size_t i = 0; i < iters; i++)
            sink += (uintptr_t)lkv_auth_find(t, (const uint8_t *)tok, TOKEN_LEN);
        v[r] = (lkv_bench_now_s() - t0) / (double)iters * 1e9;
    }
    (void)sink;
    return lkv_bench_median(v, REPS);
}

int main(int argc, char **argv)
{
    const char *json = NULL, *machine = "dev-vm-2core";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--json") == 0)
            json = argv[i + 1];
        else if (strcmp(argv[i], "--machine") == 0)
            machine = argv[i + 1];
    }
    static const size_t sizes[] = {1, 16, 256, 4096};
    enum { NSIZES = sizeof sizes / sizeof sizes[0] };
    double res[NSIZES][3];
    lkv_bench_rng rng;
    lkv_bench_rng_seed(&rng, 13);
    printf("%8s %12s %12s %12s   (ns per lookup, token of %d bytes)\n", "tokens", "first", "last",
           "miss", TOKEN_LEN);
    for (size_t s = 0; s < NSIZES; s++) {
        const size_t n = sizes[s];
        const size_t line = TOKEN_LEN + 8;
        char *text = malloc(n * line + 1);
        char *first = malloc(TOKEN_LEN + 1), *last = malloc(TOKEN_LEN + 1);
        char *miss = malloc(TOKEN_LEN + 1);
        size_t len = 0;
        for (size_t k = 0; k < n; k++) {
            char *tok = text + len;
            for (int b = 0; b < TOKEN_LEN; b++)
                tok[b] = alphabet[lkv_bench_rng_next(&rng) % 64];
            if (k == 0)
                memcpy(first, tok, TOKEN_LEN);
            if (k == n - 1)
                memcpy(last, tok, TOKEN_LEN);
            len += TOKEN_LEN;
            len += (size_t)sprintf(text + len, " ns%zu\n", k % 1000);
        }
        memcpy(miss, last, TOKEN_LEN);
        miss[TOKEN_LEN - 1] = miss[TOKEN_LEN - 1] == 'A' ? 'B' : 'A';
        lkv_auth_table *t = NULL;
        lkv_diag d;
        if (lkv_auth_parse(text, len, "bench", &t, &d) != LKV_OK) {
            fprintf(stderr, "auth_bench: %s\n", d.msg);
            return 1;
        }
        const size_t iters = 2000000 / n + 100;
        res[s][0] = time_lookup(t, first, iters);
        res[s][1] = time_lookup(t, last, iters);
        res[s][2] = time_lookup(t, miss, iters);
        printf("%8zu %12.1f %12.1f %12.1f\n", n, res[s][0], res[s][1], res[s][2]);
        lkv_auth_table_unref(t);
        free(text);
        free(first);
        free(last);
        free(miss);
    }
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            perror(json);
            return 1;
        }
        lkv_bench_cpu cpu;
        lkv_bench_cpu_probe(&cpu);
        char date[32];
        lkv_bench_utc(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ");
        lkv_json j;
        lkv_json_start(&j, f);
        lkv_json_str(&j, "bench", "auth_bench");
        lkv_json_str(&j, "machine", machine);
        lkv_json_str(&j, "cpu", cpu.model);
        lkv_json_str(&j, "date", date);
        lkv_json_num(&j, "loadavg", "%.2f", lkv_bench_loadavg());
        lkv_json_int(&j, "token_bytes", TOKEN_LEN);
        lkv_json_str(&j, "unit", "ns per lookup (median of 15 runs)");
        lkv_json_array(&j, "rows", LKV_JSON_BLOCK);
        for (size_t s = 0; s < NSIZES; s++) {
            lkv_json_object(&j, NULL, LKV_JSON_INLINE);
            lkv_json_uint(&j, "tokens", sizes[s]);
            lkv_json_num(&j, "first_ns", "%.1f", res[s][0]);
            lkv_json_num(&j, "last_ns", "%.1f", res[s][1]);
            lkv_json_num(&j, "miss_ns", "%.1f", res[s][2]);
            lkv_json_end(&j);
        }
        lkv_json_end(&j);
        const int bad = lkv_json_finish(&j);
        fclose(f);
        if (bad)
            return 1;
    }
    return 0;
}
