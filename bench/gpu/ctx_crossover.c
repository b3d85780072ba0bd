/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ctx_crossover.c - where the GPU starts to pay for latticekvd's cuda
 * backend.
 *
 * The daemon's cuda backend codes host buffers through lkv_cuda_ctx: copy
 * in, launch, copy out, synchronise. For a small batch those fixed costs
 * outweigh the kernel, and the C codec on the worker's own core is faster.
 * This measures both, per call, for batches of 16 to 16384 vectors of
 * E8 Q=38 D=128 bf16 (median host wall time of many calls, after warm-up,
 * bytes checked equal first), and prints the smallest batch from which the
 * GPU is faster for encode and for decode: one measured basis of
 * latticekvd's --cuda-inline-vectors default (the other is service_bench,
 * which also counts the daemon's thread hand-offs).
 *
 * Usage: ctx_crossover [--json FILE]
 * Prints "SKIP: no CUDA device" and exits 0 where there is no GPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lkv_bench.h"
#include "lkv_codec.h"
#include "lkv_cuda.h"

static lkv_diag g_diag;

#define OK_OR_DIE(call)                                                    \
    do {                                                                   \
        if ((call) != LKV_OK) {                                            \
            fprintf(stderr, "ctx_crossover: %s: %s\n", #call, g_diag.msg); \
            exit(1);                                                       \
        }                                                                  \
    } while (0)

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

/* op: 0 CPU encode, 1 GPU encode, 2 CPU decode, 3 GPU decode; median µs */
static double time_call(int op, lkv_cuda_ctx *ctx, const lkv_params *p, const void *vec, void *rec,
                        void *out, size_t n, int reps)
{
    double *t = malloc(sizeof(double) * (size_t)reps);
    if (!t) {
        fprintf(stderr, "ctx_crossover: out of memory\n");
        exit(1);
    }
    for (int r = -5; r < reps; r++) {
        const double t0 = now_us();
        switch (op) {
        case 0: OK_OR_DIE(lkv_encode(p, LKV_DTYPE_BF16, vec, n, rec, LKV_ISA_AUTO, &g_diag)); break;
        case 1: OK_OR_DIE(lkv_cuda_ctx_encode(ctx, p, LKV_DTYPE_BF16, vec, n, rec, &g_diag)); break;
        case 2: OK_OR_DIE(lkv_decode(p, rec, n, LKV_DTYPE_BF16, out, LKV_ISA_AUTO, &g_diag)); break;
        default: OK_OR_DIE(lkv_cuda_ctx_decode(ctx, p, rec, n, LKV_DTYPE_BF16, out, &g_diag));
        }
        if (r >= 0)
            t[r] = now_us() - t0;
    }
    const double m = lkv_bench_median(t, (size_t)reps);
    free(t);
    return m;
}

int main(int argc, char **argv)
{
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            json = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0) {
            fprintf(stderr, "ctx_crossover: --json needs a file name\n");
            return 2;
        } else {
            fprintf(stderr,
                    "ctx_crossover: unknown argument '%s'\nusage: ctx_crossover [--json FILE]\n",
                    argv[i]);
            return 2;
        }
    }
    if (lkv_cuda_device_count() == 0) {
        printf("SKIP: no CUDA device\n");
        return 0;
    }
    FILE *f = json ? fopen(json, "w") : NULL;
    if (json && !f) {
        fprintf(stderr, "ctx_crossover: cannot write '%s'\n", json);
        return 2;
    }
    const lkv_params p = {LKV_VARIANT_E8, 38, 128};
    const size_t sizes[] = {16, 64, 128, 256, 512, 1024, 2048, 4096, 16384};
    const size_t nsz = sizeof sizes / sizeof sizes[0], nmax = sizes[nsz - 1];
    const size_t vb = (size_t)p.dim * 2, rb = lkv_record_bytes(&p);
    uint16_t *vec = malloc(nmax * vb);
    uint8_t *rc = malloc(nmax * rb), *rg = malloc(nmax * rb);
    uint8_t *oc = malloc(nmax * vb), *og = malloc(nmax * vb);
    if (!vec || !rc || !rg || !oc || !og) {
        fprintf(stderr, "ctx_crossover: out of memory\n");
        return 1;
    }
    lkv_bench_rng rng;
    lkv_bench_rng_seed(&rng, 0x853c49e6748fea9bull);
    for (size_t i = 0; i < nmax * p.dim; i++) /* uniform in (-2, 2]: ordinary vectors */
        vec[i] = lkv_f32_to_bf16((float)(4.0 * lkv_bench_rng_uniform(&rng) - 2.0));
    lkv_cuda_ctx *ctx;
    OK_OR_DIE(lkv_cuda_ctx_create(0, &ctx, &g_diag));
    OK_OR_DIE(lkv_encode(&p, LKV_DTYPE_BF16, vec, nmax, rc, LKV_ISA_AUTO, &g_diag));
    OK_OR_DIE(lkv_cuda_ctx_encode(ctx, &p, LKV_DTYPE_BF16, vec, nmax, rg, &g_diag));
    OK_OR_DIE(lkv_decode(&p, rc, nmax, LKV_DTYPE_BF16, oc, LKV_ISA_AUTO, &g_diag));
    OK_OR_DIE(lkv_cuda_ctx_decode(ctx, &p, rc, nmax, LKV_DTYPE_BF16, og, &g_diag));
    if (memcmp(rc, rg, nmax * rb) != 0 || memcmp(oc, og, nmax * vb) != 0) {
        fprintf(stderr, "ctx_crossover: GPU and C codec bytes differ\n");
        return 3;
    }

    lkv_json j;
    if (f) {
        lkv_json_start(&j, f);
        lkv_json_str(&j, "bench", "ctx_crossover");
        lkv_json_str(&j, "config", "E8 Q=38 D=128 bf16");
        lkv_json_array(&j, "rows", LKV_JSON_BLOCK);
    }
    printf("host-buffer calls, E8 Q=38 D=128 bf16, median wall us per call\n");
    printf("%7s | %10s %10s | %10s %10s\n", "vectors", "enc C", "enc GPU", "dec C", "dec GPU");
    size_t cross_enc = 0, cross_dec = 0;
    for (size_t k = 0; k < nsz; k++) {
        const size_t n = sizes[k];
        const int reps = n <= 1024 ? 201 : 41;
        const double ec = time_call(0, ctx, &p, vec, rc, oc, n, reps);
        const double eg = time_call(1, ctx, &p, vec, rg, og, n, reps);
        const double dc = time_call(2, ctx, &p, vec, rc, oc, n, reps);
        const double dg = time_call(3, ctx, &p, vec, rc, og, n, reps);
        /* the first size from which the GPU stays faster */
        if (eg >= ec)
            cross_enc = 0;
        else if (!cross_enc)
            cross_enc = n;
        if (dg >= dc)
            cross_dec = 0;
        else if (!cross_dec)
            cross_dec = n;
        printf("%7zu | %10.1f %10.1f | %10.1f %10.1f\n", n, ec, eg, dc, dg);
        if (f) {
            lkv_json_object(&j, NULL, LKV_JSON_INLINE);
            lkv_json_uint(&j, "vectors", n);
            lkv_json_num(&j, "encode_c_us", "%.2f", ec);
            lkv_json_num(&j, "encode_gpu_us", "%.2f", eg);
            lkv_json_num(&j, "decode_c_us", "%.2f", dc);
            lkv_json_num(&j, "decode_gpu_us", "%.2f", dg);
            lkv_json_end(&j);
        }
    }
    printf("GPU faster from: encode %zu vectors, decode %zu vectors (0: not within the table)\n",
           cross_enc, cross_dec);
    if (f) {
        lkv_json_end(&j);
        lkv_json_uint(&j, "gpu_faster_from_encode", cross_enc);
        lkv_json_uint(&j, "gpu_faster_from_decode", cross_dec);
        if (lkv_json_finish(&j) != 0 || fclose(f) != 0) {
            fprintf(stderr, "ctx_crossover: error writing '%s'\n", json);
            return 1;
        }
    }
    lkv_cuda_ctx_free(ctx);
    free(vec);
    free(rc);
    free(rg);
    free(oc);
    free(og);
    return 0;
}
