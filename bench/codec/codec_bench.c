/* SPDX-License-Identifier: Apache-2.0 */
/*
 * codec_bench.c - single-core encode/decode throughput of the codec, per
 * lattice variant, Q, head_dim and instruction-set path.
 *
 * Design note: each row encodes (or decodes) a fixed set of standard-normal
 * bf16 vectors, large enough (2^16 vectors by default, 16 MiB at D=128) that
 * the result does not hinge on one cache level, several times; the row
 * reports the median. Each repetition is timed twice: by the wall clock and
 * by the thread's CPU clock. On a machine shared with other work the CPU
 * clock is the per-core figure (time the thread was actually running), the
 * wall clock a lower bound; on an idle machine they agree. With --rounds K
 * every row is measured in each round and the best median over the rounds
 * is kept (the least disturbed one). Before timing a SIMD
 * path the program checks that it produces exactly the scalar path's bytes,
 * so a fast wrong path cannot produce a number. Results go to stdout as a
 * table and to a JSON file (default bench/results/codec-<cpu-slug>.json).
 */
#define _GNU_SOURCE
#include "lkv_bench.h"
#include "lkv_codec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct bench_case {
    lkv_variant variant;
    uint32_t q;
    uint32_t dim;
} bench_case;

/* The rows of issue 2: every variant and Q at D=128, plus D=64/256 for E8 Q=38;
 * then head dims that are not a power of two (issue 15: Phi-3's 96, MLA's 576). */
static const bench_case cases[] = {
    {LKV_VARIANT_E8, 10, 128}, {LKV_VARIANT_E8, 38, 128}, {LKV_VARIANT_E8, 152, 128},
    {LKV_VARIANT_D4, 10, 128}, {LKV_VARIANT_D4, 38, 128}, {LKV_VARIANT_D4, 152, 128},
    {LKV_VARIANT_E8, 38, 64},  {LKV_VARIANT_E8, 38, 256}, {LKV_VARIANT_E8, 38, 96},
    {LKV_VARIANT_D4, 38, 96},  {LKV_VARIANT_E8, 38, 576},
};
#define NCASES (sizeof cases / sizeof cases[0])
#define NISA   3

/* Best median over rounds, vectors/s; 0 = not run. "cpu" divides by the
 * thread's CPU time, "wall" by elapsed time. */
typedef struct bench_row {
    double enc_cpu, dec_cpu, enc_wall, dec_wall;
} bench_row;

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, lkv_status st, const lkv_diag *dg)
{
    fprintf(stderr, "codec_bench: %s failed: %s: %s\n", what, lkv_status_name(st), dg->msg);
    exit(1);
}

static void usage(void)
{
    fprintf(stderr, "usage: codec_bench [--json FILE] [--vectors N] [--reps R] [--rounds K]\n"
                    "                   [--isa scalar|avx2|avx512|all] [--note TEXT]\n"
                    "  Encode/decode throughput, bf16 in and out, one thread. Each row is the\n"
                    "  median of R repetitions over N vectors; with K rounds the best median.\n");
}

int main(int argc, char **argv)
{
    const char *json_path = NULL;
    const char *isa_sel = "all";
    const char *note = NULL;
    size_t nvec = 1u << 16;
    int reps = 7, rounds = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json_path = argv[++i];
        else if (!strcmp(argv[i], "--vectors") && i + 1 < argc)
            nvec = (size_t)strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc)
            isa_sel = argv[++i];
        else if (!strcmp(argv[i], "--note") && i + 1 < argc)
            note = argv[++i];
        else {
            usage();
            return 2;
        }
    }
    if (nvec == 0 || reps < 1 || reps > 101 || rounds < 1) {
        usage();
        return 2;
    }

    lkv_bench_cpu cpu;
    char slug[256], default_json[512];
    lkv_bench_cpu_probe(&cpu);
    const char *model = cpu.model;
    const int family = cpu.family, modelnum = cpu.model_number;
    lkv_bench_slug(model, slug, sizeof slug);
    snprintf(default_json, sizeof default_json, "%s/codec-%s.json", LKV_BENCH_RESULTS_DIR, slug);
    if (!json_path)
        json_path = default_json;

    int run_isa[NISA + 1] = {0};
    for (int isa = LKV_ISA_SCALAR; isa <= LKV_ISA_AVX512; isa++)
        run_isa[isa] = lkv_isa_supported((lkv_isa)isa) &&
                       (!strcmp(isa_sel, "all") || !strcmp(isa_sel, lkv_isa_name((lkv_isa)isa)));

    uint32_t max_dim = 0;
    size_t max_rec = 0;
    for (size_t c = 0; c < NCASES; c++) {
        const lkv_params p = {cases[c].variant, cases[c].q, cases[c].dim};
        max_dim = cases[c].dim > max_dim ? cases[c].dim : max_dim;
        max_rec = lkv_record_bytes(&p) > max_rec ? lkv_record_bytes(&p) : max_rec;
    }
    uint16_t *src = malloc(nvec * max_dim * 2);
    uint16_t *out = malloc(nvec * max_dim * 2);
    uint16_t *out_ref = malloc(nvec * max_dim * 2);
    uint8_t *rec = malloc(nvec * max_rec);
    uint8_t *rec_ref = malloc(nvec * max_rec);
    if (!src || !out || !out_ref || !rec || !rec_ref) {
        fprintf(stderr, "codec_bench: out of memory\n");
        return 1;
    }
    /* Standard-normal input from the benchmarks' generator (bench/common). */
    lkv_bench_rng rng;
    lkv_bench_rng_seed(&rng, 0x9e3779b97f4a7c15ull);
    for (size_t i = 0; i < nvec * max_dim; i++)
        src[i] = lkv_f32_to_bf16((float)lkv_bench_rng_normal(&rng));

    static bench_row rows[NCASES][NISA + 1];
    double *tw = malloc((size_t)reps * sizeof *tw), *tc = malloc((size_t)reps * sizeof *tc);
    lkv_diag dg;
    for (int round = 0; round < rounds; round++) {
        for (size_t c = 0; c < NCASES; c++) {
            const lkv_params p = {cases[c].variant, cases[c].q, cases[c].dim};
            const size_t rb = lkv_record_bytes(&p);
            lkv_status st = lkv_encode(&p, LKV_DTYPE_BF16, src, nvec, rec_ref, LKV_ISA_SCALAR, &dg);
            if (st != LKV_OK)
                die("scalar encode", st, &dg);
            st = lkv_decode(&p, rec_ref, nvec, LKV_DTYPE_BF16, out_ref, LKV_ISA_SCALAR, &dg);
            if (st != LKV_OK)
                die("scalar decode", st, &dg);
            for (int isa = LKV_ISA_SCALAR; isa <= LKV_ISA_AVX512; isa++) {
                if (!run_isa[isa])
                    continue;
                /* Warm-up run doubles as the byte-identity check. */
                st = lkv_encode(&p, LKV_DTYPE_BF16, src, nvec, rec, (lkv_isa)isa, &dg);
                if (st != LKV_OK)
                    die("encode", st, &dg);
                st = lkv_decode(&p, rec, nvec, LKV_DTYPE_BF16, out, (lkv_isa)isa, &dg);
                if (st != LKV_OK)
                    die("decode", st, &dg);
                if (memcmp(rec, rec_ref, nvec * rb) || memcmp(out, out_ref, nvec * p.dim * 2)) {
                    fprintf(stderr, "codec_bench: %s differs from scalar for %s Q=%u D=%u\n",
                            lkv_isa_name((lkv_isa)isa), lkv_variant_name(p.variant), p.q, p.dim);
                    return 1;
                }
                bench_row *row = &rows[c][isa];
                for (int dir = 0; dir < 2; dir++) {
                    for (int r = 0; r < reps; r++) {
                        const double w0 = clock_s(CLOCK_MONOTONIC);
                        const double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
                        if (dir == 0)
                            lkv_encode(&p, LKV_DTYPE_BF16, src, nvec, rec, (lkv_isa)isa, NULL);
                        else
                            lkv_decode(&p, rec, nvec, LKV_DTYPE_BF16, out, (lkv_isa)isa, NULL);
                        tc[r] = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
                        tw[r] = clock_s(CLOCK_MONOTONIC) - w0;
                    }
                    const double vc = (double)nvec / lkv_bench_median(tc, (size_t)reps);
                    const double vw = (double)nvec / lkv_bench_median(tw, (size_t)reps);
                    double *bc = dir == 0 ? &row->enc_cpu : &row->dec_cpu;
                    double *bw = dir == 0 ? &row->enc_wall : &row->dec_wall;
                    *bc = vc > *bc ? vc : *bc;
                    *bw = vw > *bw ? vw : *bw;
                }
            }
        }
    }

    printf("codec_bench: %s (family %d model %d), %zu vectors, median of %d, best of %d "
           "round(s), bf16 in/out, 1 thread\n",
           model, family, modelnum, nvec, reps, rounds);
    printf("per core = per second of the thread's CPU time; wall = per elapsed second\n");
    printf("%-4s %4s %5s %-7s %6s %11s %9s %11s %9s %10s %10s\n", "var", "Q", "D", "isa", "bits",
           "enc Mvec/s", "enc GB/s", "dec Mvec/s", "dec GB/s", "enc(wall)", "dec(wall)");
    for (size_t c = 0; c < NCASES; c++) {
        const lkv_params p = {cases[c].variant, cases[c].q, cases[c].dim};
        for (int isa = LKV_ISA_SCALAR; isa <= LKV_ISA_AVX512; isa++) {
            if (!run_isa[isa])
                continue;
            const bench_row *row = &rows[c][isa];
            const double gb = p.dim * 2.0 / 1e9;
            printf("%-4s %4u %5u %-7s %6u %11.3f %9.3f %11.3f %9.3f %10.3f %10.3f\n",
                   lkv_variant_name(p.variant), p.q, p.dim, lkv_isa_name((lkv_isa)isa),
                   lkv_bits_per_vector(&p), row->enc_cpu / 1e6, row->enc_cpu * gb,
                   row->dec_cpu / 1e6, row->dec_cpu * gb, row->enc_wall / 1e6, row->dec_wall / 1e6);
        }
    }

    FILE *f = fopen(json_path, "w");
    if (!f) {
        perror(json_path);
        return 1;
    }
    char date[64];
    lkv_bench_utc(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ");
    lkv_json j;
    lkv_json_start(&j, f);
    lkv_json_str(&j, "benchmark", "codec_bench");
    lkv_json_str(&j, "cpu_model", model);
    lkv_json_int(&j, "cpu_family", family);
    lkv_json_int(&j, "cpu_model_number", modelnum);
    lkv_json_str(&j, "best_isa", lkv_isa_name(lkv_isa_best()));
    lkv_json_str(&j, "date", date);
    lkv_json_str(&j, "compiler", __VERSION__);
    lkv_json_int(&j, "threads", 1);
    lkv_json_str(&j, "dtype_in", "bf16");
    lkv_json_str(&j, "dtype_out", "bf16");
    lkv_json_str(&j, "data", "standard normal, converted to bf16 (RNE)");
    lkv_json_uint(&j, "vectors", nvec);
    lkv_json_int(&j, "repetitions", reps);
    lkv_json_int(&j, "rounds", rounds);
    lkv_json_str(&j, "statistic", "best over rounds of the median over repetitions");
    lkv_json_str(&j, "clocks",
                 "*_per_s: per second of the thread's CPU time (per core); "
                 "*_per_s_wall: per elapsed second");
    lkv_json_str(&j, "gb_per_s", "bf16 bytes of the uncompressed vectors (n*D*2) per second");
    lkv_json_str(&j, "notes", note ? note : "");
    lkv_json_array(&j, "rows", LKV_JSON_BLOCK);
    for (size_t c = 0; c < NCASES; c++) {
        const lkv_params p = {cases[c].variant, cases[c].q, cases[c].dim};
        for (int isa = LKV_ISA_SCALAR; isa <= LKV_ISA_AVX512; isa++) {
            if (!run_isa[isa])
                continue;
            const bench_row *row = &rows[c][isa];
            const double gb = p.dim * 2.0 / 1e9;
            lkv_json_object(&j, NULL, LKV_JSON_INLINE);
            lkv_json_str(&j, "variant", lkv_variant_name(p.variant));
            lkv_json_uint(&j, "q", p.q);
            lkv_json_uint(&j, "dim", p.dim);
            lkv_json_str(&j, "isa", lkv_isa_name((lkv_isa)isa));
            lkv_json_uint(&j, "bits_per_vector", lkv_bits_per_vector(&p));
            lkv_json_uint(&j, "record_bytes", lkv_record_bytes(&p));
            lkv_json_num(&j, "encode_vectors_per_s", "%.0f", row->enc_cpu);
            lkv_json_num(&j, "encode_gb_per_s", "%.4f", row->enc_cpu * gb);
            lkv_json_num(&j, "decode_vectors_per_s", "%.0f", row->dec_cpu);
            lkv_json_num(&j, "decode_gb_per_s", "%.4f", row->dec_cpu * gb);
            lkv_json_num(&j, "encode_vectors_per_s_wall", "%.0f", row->enc_wall);
            lkv_json_num(&j, "decode_vectors_per_s_wall", "%.0f", row->dec_wall);
            lkv_json_end(&j);
        }
    }
    lkv_json_end(&j);
    if (lkv_json_finish(&j) != 0 || fclose(f) != 0) {
        fprintf(stderr, "codec_bench: error writing %s\n", json_path);
        return 1;
    }
    printf("wrote %s\n", json_path);
    free(tw);
    free(tc);
    free(src);
    free(out);
    free(out_ref);
    free(rec);
    free(rec_ref);
    return 0;
}
