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

/* The rows of issue 2: every variant and Q at D=128, plus D=64/256 for E8 Q=38. */
static const bench_case cases[] = {
    {LKV_VARIANT_E8, 10, 128}, {LKV_VARIANT_E8, 38, 128}, {LKV_VARIANT_E8, 152, 128},
    {LKV_VARIANT_D4, 10, 128}, {LKV_VARIANT_D4, 38, 128}, {LKV_VARIANT_D4, 152, 128},
    {LKV_VARIANT_E8, 38, 64},  {LKV_VARIANT_E8, 38, 256},
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

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* xorshift64* + Box-Muller: reproducible standard-normal input. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double rng_uniform(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545f4914f6cdd1dull) >> 11) * 0x1.0p-53;
}
static double rng_normal(void)
{
    const double u = rng_uniform() + 0x1.0p-60, v = rng_uniform();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static void die(const char *what, lkv_status st, const lkv_diag *dg)
{
    fprintf(stderr, "codec_bench: %s failed: %s: %s\n", what, lkv_status_name(st), dg->msg);
    exit(1);
}

/* "AMD EPYC 9654 96-Core Processor" -> "amd-epyc-9654-96-core-processor". */
static void slugify(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    int dash = 0;
    for (; *in && o + 1 < cap; in++) {
        const char c = *in;
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            out[o++] = c;
            dash = 0;
        } else if (c >= 'A' && c <= 'Z') {
            out[o++] = (char)(c - 'A' + 'a');
            dash = 0;
        } else if (!dash && o > 0) {
            out[o++] = '-';
            dash = 1;
        }
    }
    while (o > 0 && out[o - 1] == '-')
        o--;
    out[o] = 0;
}

/* The "model name", "cpu family" and "model" lines of /proc/cpuinfo. */
static void cpu_identity(char *model, size_t cap, int *family, int *modelnum)
{
    snprintf(model, cap, "unknown-cpu");
    *family = *modelnum = -1;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    int got_name = 0;
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        char *val = colon + 1;
        while (*val == ' ' || *val == '\t')
            val++;
        val[strcspn(val, "\n")] = 0;
        if (!got_name && strncmp(line, "model name", 10) == 0) {
            snprintf(model, cap, "%s", val);
            got_name = 1;
        } else if (*family < 0 && strncmp(line, "cpu family", 10) == 0) {
            *family = atoi(val);
        } else if (*modelnum < 0 && strncmp(line, "model\t", 6) == 0) {
            *modelnum = atoi(val);
        }
    }
    fclose(f);
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

    char model[256], slug[256], default_json[512];
    int family, modelnum;
    cpu_identity(model, sizeof model, &family, &modelnum);
    slugify(model, slug, sizeof slug);
    snprintf(default_json, sizeof default_json, "%s/codec-%s.json", LKV_BENCH_RESULTS_DIR, slug);
    if (!json_path)
        json_path = default_json;

    int run_isa[NISA + 1] = {0};
    for (int isa = LKV_ISA_SCALAR; isa <= LKV_ISA_AVX512; isa++)
        run_isa[isa] = lkv_isa_supported((lkv_isa)isa) &&
                       (!strcmp(isa_sel, "all") || !strcmp(isa_sel, lkv_isa_name((lkv_isa)isa)));

    const uint32_t max_dim = 256;
    uint16_t *src = malloc(nvec * max_dim * 2);
    uint16_t *out = malloc(nvec * max_dim * 2);
    uint16_t *out_ref = malloc(nvec * max_dim * 2);
    uint8_t *rec = malloc(nvec * 256);
    uint8_t *rec_ref = malloc(nvec * 256);
    if (!src || !out || !out_ref || !rec || !rec_ref) {
        fprintf(stderr, "codec_bench: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < nvec * max_dim; i++)
        src[i] = lkv_f32_to_bf16((float)rng_normal());

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
                    const double vc = (double)nvec / median(tc, reps);
                    const double vw = (double)nvec / median(tw, reps);
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
    const time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fprintf(f, "{\n  \"benchmark\": \"codec_bench\",\n  \"cpu_model\": \"%s\",\n", model);
    fprintf(f, "  \"cpu_family\": %d,\n  \"cpu_model_number\": %d,\n", family, modelnum);
    fprintf(f, "  \"best_isa\": \"%s\",\n  \"date\": \"%s\",\n", lkv_isa_name(lkv_isa_best()),
            date);
    fprintf(f, "  \"compiler\": \"%s\",\n", __VERSION__);
    fprintf(f, "  \"threads\": 1,\n  \"dtype_in\": \"bf16\",\n  \"dtype_out\": \"bf16\",\n");
    fprintf(f, "  \"data\": \"standard normal, converted to bf16 (RNE)\",\n");
    fprintf(f, "  \"vectors\": %zu,\n  \"repetitions\": %d,\n  \"rounds\": %d,\n", nvec, reps,
            rounds);
    fprintf(f, "  \"statistic\": \"best over rounds of the median over repetitions\",\n");
    fprintf(f, "  \"clocks\": \"*_per_s: per second of the thread's CPU time (per core); "
               "*_per_s_wall: per elapsed second\",\n");
    fprintf(f, "  \"gb_per_s\": \"bf16 bytes of the uncompressed vectors (n*D*2) per second\",\n");
    fprintf(f, "  \"notes\": \"%s\",\n", note ? note : "");
    fprintf(f, "  \"rows\": [\n");
    int first = 1;
    for (size_t c = 0; c < NCASES; c++) {
        const lkv_params p = {cases[c].variant, cases[c].q, cases[c].dim};
        for (int isa = LKV_ISA_SCALAR; isa <= LKV_ISA_AVX512; isa++) {
            if (!run_isa[isa])
                continue;
            const bench_row *row = &rows[c][isa];
            const double gb = p.dim * 2.0 / 1e9;
            fprintf(f,
                    "%s    {\"variant\": \"%s\", \"q\": %u, \"dim\": %u, \"isa\": \"%s\", "
                    "\"bits_per_vector\": %u, \"record_bytes\": %zu, "
                    "\"encode_vectors_per_s\": %.0f, \"encode_gb_per_s\": %.4f, "
                    "\"decode_vectors_per_s\": %.0f, \"decode_gb_per_s\": %.4f, "
                    "\"encode_vectors_per_s_wall\": %.0f, \"decode_vectors_per_s_wall\": %.0f}",
                    first ? "" : ",\n", lkv_variant_name(p.variant), p.q, p.dim,
                    lkv_isa_name((lkv_isa)isa), lkv_bits_per_vector(&p), lkv_record_bytes(&p),
                    row->enc_cpu, row->enc_cpu * gb, row->dec_cpu, row->dec_cpu * gb, row->enc_wall,
                    row->dec_wall);
            first = 0;
        }
    }
    fprintf(f, "\n  ]\n}\n");
    fclose(f);
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
