/* SPDX-License-Identifier: Apache-2.0 */
/*
 * codec_call_bench.c - the time of one small codec call: what a service that
 * codes a few KV blocks per request pays per call, beside the per-vector
 * rate of codec_p2_bench.
 *
 * Design note: a KV block of 16 tokens and 8 heads is 128 vectors, and the
 * daemon calls the codec once per block or batch, so a fixed cost per call
 * (building profile 2's models and tables, say) matters there far more
 * than at 2^20 vectors. Rows: profile 1 E8 Q=38 and profile 2 Q=59 in
 * container versions 3 and 4 (normal data), and version 4 on data with
 * per-channel scales exp(1.5 N(0, 1)), which it codes in the channel mode
 * (outlier-channel keys: 32 level models a piece), on the CPU's best instruction
 * set, one thread, calls of 32, 128, 256, 1024 and 8192 vectors (D = 128,
 * bf16). A measurement is a batch of back-to-back calls of at least 20 ms
 * (the first call of a row is a warm-up outside it); rounds interleave
 * every row and size, and each cell reports the median over rounds of the
 * microseconds per call by the thread's CPU clock. To compare two builds
 * of the codec, run each build's binary in turn (A/B), as the results file
 * names. JSON to --json (default bench/results/codec-call-<machine>.json).
 */
#define _GNU_SOURCE
#include "lkv_bench.h"
#include "lkv_codec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NSIZES  5
#define NROWS   4
#define MAXRNDS 32

static const size_t sizes[NSIZES] = {32, 128, 256, 1024, 8192};

typedef struct row {
    const char *name;
    lkv_params p;
    int chan; /* the data: 0 normal, 1 per-channel scales (version 4's channel mode) */
    double enc_us[NSIZES][MAXRNDS], dec_us[NSIZES][MAXRNDS];
} row;

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void check(const char *what, const row *r, lkv_status st, const lkv_diag *d)
{
    if (st != LKV_OK) {
        fprintf(stderr, "codec_call_bench: %s %s: %s: %s\n", r->name, what, lkv_status_name(st),
                d->msg);
        exit(1);
    }
}

static uint16_t bf16_of(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16); /* ties to even */
}

/* One call of row r on n vectors: encode (into coded, *len) or decode. */
static void call(const row *r, int decode, const uint16_t *x, size_t n, unsigned char *coded,
                 size_t cap, size_t *len, uint16_t *y)
{
    lkv_diag d;
    const int p2 = lkv_profile_of(&r->p) == LKV_PROFILE_2;
    if (!decode) {
        if (p2) {
            check("encode", r, lkv_p2_encode(&r->p, LKV_DTYPE_BF16, x, n, coded, cap, len, &d), &d);
        } else {
            check("encode", r, lkv_encode(&r->p, LKV_DTYPE_BF16, x, n, coded, LKV_ISA_AUTO, &d),
                  &d);
            *len = n * lkv_record_bytes(&r->p);
        }
    } else if (p2) {
        check("decode", r, lkv_p2_decode(&r->p, coded, *len, n, LKV_DTYPE_BF16, y, &d), &d);
    } else {
        check("decode", r, lkv_decode(&r->p, coded, n, LKV_DTYPE_BF16, y, LKV_ISA_AUTO, &d), &d);
    }
}

/* Microseconds per call of a batch of at least 20 ms of CPU time. */
static double batch_us(const row *r, int decode, const uint16_t *x, size_t n, unsigned char *coded,
                       size_t cap, size_t *len, uint16_t *y)
{
    size_t calls = 0;
    const double t0 = cpu_s();
    double t = t0;
    while (t - t0 < 0.02) {
        for (int i = 0; i < 8; i++)
            call(r, decode, x, n, coded, cap, len, y);
        calls += 8;
        t = cpu_s();
    }
    return (t - t0) / (double)calls * 1e6;
}

static double median(const double *v, int n)
{
    double t[MAXRNDS];
    memcpy(t, v, (size_t)n * sizeof *t);
    return lkv_bench_median(t, (size_t)n);
}

int main(int argc, char **argv)
{
    int rounds = 5;
    const char *machine = "dev-vm-2core", *json = NULL, *label = "";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--machine") && i + 1 < argc)
            machine = argv[++i];
        else if (!strcmp(argv[i], "--label") && i + 1 < argc)
            label = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json = argv[++i];
        else {
            fprintf(stderr,
                    "usage: codec_call_bench [--rounds K (1..%d)] [--machine NAME] "
                    "[--label TEXT] [--json PATH]\n",
                    MAXRNDS);
            return 2;
        }
    }
    if (rounds < 1 || rounds > MAXRNDS) {
        fprintf(stderr, "codec_call_bench: --rounds=%d: must be 1..%d\n", rounds, MAXRNDS);
        return 2;
    }
    const uint32_t dim = 128;
    row rows[NROWS] = {
        {.name = "p1_e8_q38", .p = {LKV_VARIANT_E8, 38, dim, LKV_PROFILE_1, 0}},
        {.name = "p2_v3_q59", .p = {LKV_VARIANT_E8, 59, dim, LKV_PROFILE_2, 3}},
        {.name = "p2_v4_q59", .p = {LKV_VARIANT_E8, 59, dim, LKV_PROFILE_2, 4}},
        {.name = "p2_v4_q59_chan", .p = {LKV_VARIANT_E8, 59, dim, LKV_PROFILE_2, 4}, .chan = 1},
    };
    const size_t nmax = sizes[NSIZES - 1];
    uint16_t *x = malloc(nmax * dim * sizeof *x), *y = malloc(nmax * dim * sizeof *y);
    uint16_t *xc = malloc(nmax * dim * sizeof *xc);
    size_t cap = 0;
    for (int r = 0; r < NROWS; r++) {
        const size_t c = lkv_profile_of(&rows[r].p) == LKV_PROFILE_2
                             ? lkv_p2_payload_bound(&rows[r].p, nmax)
                             : nmax * lkv_record_bytes(&rows[r].p);
        cap = c > cap ? c : cap;
    }
    unsigned char *coded = malloc(cap);
    if (!x || !y || !xc || !coded) {
        fprintf(stderr, "codec_call_bench: out of memory\n");
        return 1;
    }
    lkv_bench_rng rng;
    lkv_bench_rng_seed(&rng, 42);
    double cs[128];
    for (uint32_t j = 0; j < dim; j++)
        cs[j] = exp(1.5 * lkv_bench_rng_normal(&rng));
    for (size_t i = 0; i < nmax * dim; i++) {
        const double g = lkv_bench_rng_normal(&rng);
        x[i] = bf16_of((float)g);
        xc[i] = bf16_of((float)(g * cs[i % dim]));
    }
    size_t len = 0;
    for (int r = 0; r < NROWS; r++) { /* warm-up: first calls, page faults */
        const uint16_t *xr = rows[r].chan ? xc : x;
        call(&rows[r], 0, xr, nmax, coded, cap, &len, y);
        call(&rows[r], 1, xr, nmax, coded, cap, &len, y);
    }
    for (int k = 0; k < rounds; k++)
        for (int s = 0; s < NSIZES; s++)
            for (int r = 0; r < NROWS; r++) {
                const uint16_t *xr = rows[r].chan ? xc : x;
                rows[r].enc_us[s][k] = batch_us(&rows[r], 0, xr, sizes[s], coded, cap, &len, y);
                rows[r].dec_us[s][k] = batch_us(&rows[r], 1, xr, sizes[s], coded, cap, &len, y);
            }
    printf("%-14s %8s %14s %14s %12s %12s\n", "row", "vectors", "encode us/call", "decode us/call",
           "enc M vec/s", "dec M vec/s");
    for (int r = 0; r < NROWS; r++)
        for (int s = 0; s < NSIZES; s++) {
            const double e = median(rows[r].enc_us[s], rounds),
                         d = median(rows[r].dec_us[s], rounds);
            printf("%-14s %8zu %14.1f %14.1f %12.3f %12.3f\n", rows[r].name, sizes[s], e, d,
                   (double)sizes[s] / e, (double)sizes[s] / d);
        }
    char path[512];
    if (!json) {
        snprintf(path, sizeof path, "%s/codec-call-%s.json", LKV_BENCH_RESULTS_DIR, machine);
        json = path;
    }
    FILE *f = fopen(json, "w");
    if (!f) {
        fprintf(stderr, "codec_call_bench: cannot write %s\n", json);
        return 1;
    }
    lkv_json j;
    lkv_json_start(&j, f);
    lkv_json_str(&j, "bench", "codec_call_bench");
    lkv_json_str(&j, "machine", machine);
    lkv_json_str(&j, "label", label);
    lkv_json_str(&j, "isa", lkv_isa_name(lkv_isa_best()));
    lkv_json_int(&j, "dim", dim);
    lkv_json_str(&j, "dtype", "bf16");
    lkv_json_int(&j, "rounds", rounds);
    lkv_json_str(&j, "unit", "microseconds per call, median over rounds, thread CPU clock");
    lkv_json_array(&j, "rows", LKV_JSON_BLOCK);
    for (int r = 0; r < NROWS; r++)
        for (int s = 0; s < NSIZES; s++) {
            lkv_json_object(&j, NULL, LKV_JSON_INLINE);
            lkv_json_str(&j, "row", rows[r].name);
            lkv_json_uint(&j, "vectors", sizes[s]);
            lkv_json_num(&j, "encode_us", "%.2f", median(rows[r].enc_us[s], rounds));
            lkv_json_num(&j, "decode_us", "%.2f", median(rows[r].dec_us[s], rounds));
            lkv_json_end(&j);
        }
    lkv_json_end(&j);
    if (lkv_json_finish(&j) != 0 || fclose(f) != 0) {
        fprintf(stderr, "codec_call_bench: write error on %s\n", json);
        return 1;
    }
    printf("wrote %s\n", json);
    free(x);
    free(y);
    free(xc);
    free(coded);
    return 0;
}
