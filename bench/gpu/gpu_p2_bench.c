/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpu_p2_bench - codec profile 2 on the GPU against the card's copy
 * bandwidth (issue 14, item 4), with profile 1 beside it in the same run.
 *
 * 2^20 vectors (--n), D = 128, bf16 (normal data), profile 2 at --q (default
 * the rate of profile 1's E8 Q = 38 error: Q = 59 in container version 3,
 * 54 in version 2) and profile 1 E8 Q = 38. Each
 * operation is timed with CUDA events, median of --reps runs after two
 * warm-ups, and reported as time, GB/s (input bytes read + output bytes
 * written) and the fraction of the device-to-device copy bandwidth measured
 * in the same run (a cudaMemcpyAsync of the bf16 tensor, read + written).
 * Encode is the whole call (quantise + rANS into scratch, scan, compaction);
 * decode is given the chunk offsets (the encoder's output). The first 64
 * chunks of the GPU payload are checked against the C coder first.
 * --format 3 (the default: container version 3, chunks of 256 vectors and
 * byte norm codes), 2 (version 2: chunks of 128, fp16 norms) or 4 (version
 * 3 plus the channel mode: each piece in the mode of the smaller estimate)
 * picks profile 2's layout; the table and the JSON name it. --data channel
 * multiplies each of the 128 channels by its own exp(1.5 N(0, 1)) (the
 * quality sets' log-normal channels, which version 4 codes in the channel
 * domain); the default, normal, keeps them equal.
 * --json FILE writes the numbers. Exit 77 without a GPU.
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_codec.h"
#include "lkv_cuda.h"
#include "lkv_cuda_p2.h"
#include "lkv_format.h"

#define CK(x)                                                                           \
    do {                                                                                \
        cudaError_t e_ = (x);                                                           \
        if (e_ != cudaSuccess) {                                                        \
            fprintf(stderr, "%s:%d: CUDA error %d (%s)\n", __FILE__, __LINE__, (int)e_, \
                    cudaGetErrorString(e_));                                            \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

#define LK(x)                                                                               \
    do {                                                                                    \
        lkv_status s_ = (x);                                                                \
        if (s_ != LKV_OK) {                                                                 \
            fprintf(stderr, "%s:%d: status %d: %s\n", __FILE__, __LINE__, (int)s_, dg.msg); \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

static int cmp_f(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static float median(float *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_f);
    return n % 2 ? t[n / 2] : 0.5f * (t[n / 2 - 1] + t[n / 2]);
}

typedef enum { OP_COPY, OP_P2_ENC, OP_P2_DEC, OP_P1_ENC, OP_P1_DEC } op_t;

typedef struct ctx {
    lkv_params p1, p2;
    lkv_cuda_p2_model *m;
    size_t n, bound, wb;
    void *src, *dst, *pay, *work, *rec;
    uint64_t *offs;
    size_t paylen;
} ctx;

static void run_op(ctx *c, op_t op)
{
    lkv_diag dg;
    const size_t vbytes = c->n * 128 * 2;
    switch (op) {
    case OP_COPY: CK(cudaMemcpyAsync(c->dst, c->src, vbytes, cudaMemcpyDeviceToDevice, 0)); break;
    case OP_P2_ENC:
        LK(lkv_cuda_p2_encode(c->m, LKV_DTYPE_BF16, c->src, c->n, c->pay, c->bound, c->offs,
                              c->work, c->wb, NULL, NULL, &dg));
        break;
    case OP_P2_DEC:
        LK(lkv_cuda_p2_decode(c->m, c->pay, c->paylen, c->offs, c->n, LKV_DTYPE_BF16, c->dst, NULL,
                              NULL, &dg));
        break;
    case OP_P1_ENC:
        LK(lkv_cuda_encode(&c->p1, LKV_DTYPE_BF16, c->src, c->n, c->rec, NULL, NULL, &dg));
        break;
    case OP_P1_DEC:
        LK(lkv_cuda_decode(&c->p1, c->rec, c->n, LKV_DTYPE_BF16, c->dst, NULL, NULL, &dg));
        break;
    }
}

static float time_op(ctx *c, op_t op, int reps)
{
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    float *t = malloc(sizeof *t * (size_t)reps);
    for (int i = 0; i < 2; i++)
        run_op(c, op);
    for (int i = 0; i < reps; i++) {
        CK(cudaEventRecord(a, 0));
        run_op(c, op);
        CK(cudaEventRecord(b, 0));
        CK(cudaEventSynchronize(b));
        CK(cudaEventElapsedTime(&t[i], a, b));
    }
    const float m = median(t, reps);
    free(t);
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return m;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int main(int argc, char **argv)
{
    size_t n = (size_t)1 << 20;
    int reps = 20;
    unsigned fmt = LKV_FMT_VERSION_P3, q = 0;
    const char *json = NULL;
    int chan = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
            n = (size_t)strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--q") == 0 && i + 1 < argc)
            q = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc)
            fmt = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            json = argv[++i];
        else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc &&
                 (strcmp(argv[i + 1], "normal") == 0 || strcmp(argv[i + 1], "channel") == 0))
            chan = strcmp(argv[++i], "channel") == 0;
        else {
            fprintf(stderr, "usage: gpu_p2_bench [--n N] [--reps R] [--format 2|3|4] [--q Q] "
                            "[--data normal|channel] [--json FILE]\n");
            return 2;
        }
    }
    if (n < 1 || reps < 1) {
        fprintf(stderr, "gpu_p2_bench: --n and --reps must be >= 1\n");
        return 2;
    }
    if (fmt < LKV_FMT_VERSION_P2 || fmt > LKV_FMT_VERSION_P4) {
        fprintf(stderr, "gpu_p2_bench: --format must be 2, 3 or 4\n");
        return 2;
    }
    if (q == 0)
        q = fmt == LKV_FMT_VERSION_P2 ? 54 : 59;
    if (q > LKV_Q_MAX) {
        fprintf(stderr, "gpu_p2_bench: --q must be 1..%u\n", LKV_Q_MAX);
        return 2;
    }
    if (lkv_cuda_device_count() == 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    char card[128] = "?";
    lkv_cuda_device_name(0, card, sizeof card);
    lkv_diag dg;
    ctx c = {0};
    c.n = n;
    c.p1 = (lkv_params){LKV_VARIANT_E8, 38, 128, LKV_PROFILE_1, 0};
    c.p2 = (lkv_params){LKV_VARIANT_E8, q, 128, LKV_PROFILE_2, fmt};
    const size_t vbytes = n * 128 * 2;
    /* normal data as bf16 (sum of 4 uniforms, scaled: close enough to
     * normal for timing; the rate is that of normal data) */
    uint16_t *h = malloc(vbytes);
    uint64_t s = 12345;
    float cs[128];
    for (int j = 0; j < 128; j++) {
        /* Box-Muller from two draws; 1 for every channel with --data normal */
        const double u1 = ((double)(rng_next(&s) >> 11) + 0.5) / 9007199254740992.0;
        const double u2 = (double)(rng_next(&s) >> 11) / 9007199254740992.0;
        cs[j] = chan ? (float)exp(1.5 * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2)) : 1.0f;
    }
    for (size_t i = 0; i < n * 128; i++) {
        const uint64_t r = rng_next(&s);
        const float u = ((float)(r & 0xffff) + (float)((r >> 16) & 0xffff) +
                         (float)((r >> 32) & 0xffff) + (float)(r >> 48)) /
                            65536.0f -
                        2.0f;
        float f = u * 1.7320508f * cs[i % 128];
        uint32_t b;
        memcpy(&b, &f, 4);
        h[i] = (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
    }
    LK(lkv_cuda_p2_model_create(&c.p2, 0, &c.m, &dg));
    c.bound = lkv_p2_payload_bound(&c.p2, n);
    c.wb = lkv_cuda_p2_encode_workspace(c.m, n);
    CK(cudaMalloc(&c.src, vbytes));
    CK(cudaMalloc(&c.dst, vbytes));
    CK(cudaMalloc(&c.pay, c.bound));
    CK(cudaMalloc(&c.work, c.wb));
    CK(cudaMalloc(&c.rec, n * lkv_record_bytes(&c.p1)));
    CK(cudaMalloc((void **)&c.offs, (lkv_cuda_p2_chunks(&c.p2, n) + 1) * 8));
    CK(cudaMemcpy(c.src, h, vbytes, cudaMemcpyHostToDevice));

    /* correctness of what is timed: the first chunks against the C coder */
    run_op(&c, OP_P2_ENC);
    CK(cudaDeviceSynchronize());
    const size_t nc = lkv_cuda_p2_chunks(&c.p2, n);
    uint64_t total = 0;
    CK(cudaMemcpy(&total, c.offs + nc, 8, cudaMemcpyDeviceToHost));
    c.paylen = (size_t)total;
    const size_t chk = 64 * (size_t)lkv_p2_chunk_vectors(&c.p2);
    const size_t nchk = n < chk ? n : chk;
    const size_t cb = lkv_p2_payload_bound(&c.p2, nchk);
    uint8_t *cpu = malloc(cb), *gpu = malloc(cb);
    size_t clen = 0;
    LK(lkv_p2_encode(&c.p2, LKV_DTYPE_BF16, h, nchk, cpu, cb, &clen, &dg));
    CK(cudaMemcpy(gpu, c.pay, clen, cudaMemcpyDeviceToHost));
    const int same = memcmp(cpu, gpu, clen) == 0;
    printf("check: first %zu vectors' GPU payload %s the C coder's (%zu bytes)\n", nchk,
           same ? "equals" : "DIFFERS FROM", clen);

    const float t_copy = time_op(&c, OP_COPY, reps);
    const float t_p2e = time_op(&c, OP_P2_ENC, reps);
    const float t_p2d = time_op(&c, OP_P2_DEC, reps);
    const float t_p1e = time_op(&c, OP_P1_ENC, reps);
    const float t_p1d = time_op(&c, OP_P1_DEC, reps);
    const double copy_gbps = 2.0 * (double)vbytes / (t_copy * 1e-3) / 1e9;
    const double p1b = (double)n * lkv_record_bytes(&c.p1);
    const double bits2 = 8.0 * (double)c.paylen / (double)n;
    char n2e[32], n2d[32];
    snprintf(n2e, sizeof n2e, "p2 Q=%u encode", q);
    snprintf(n2d, sizeof n2d, "p2 Q=%u decode", q);
    struct row {
        const char *name;
        float ms;
        double bytes;
    } rows[4] = {
        {n2e, t_p2e, (double)vbytes + (double)c.paylen},
        {n2d, t_p2d, (double)vbytes + (double)c.paylen},
        {"p1 E8 Q=38 encode", t_p1e, (double)vbytes + p1b},
        {"p1 E8 Q=38 decode", t_p1d, (double)vbytes + p1b},
    };
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            perror(json);
            return 1;
        }
        fprintf(f,
                "{\n  \"bench\": \"gpu_p2_bench\",\n  \"card\": \"%s\",\n  \"n\": %zu,\n"
                "  \"dim\": 128,\n  \"dtype\": \"bf16\",\n  \"data\": \"%s\",\n"
                "  \"p2_format\": %u,\n"
                "  \"p2_chunk_vectors\": %u,\n  \"reps\": %d,\n"
                "  \"check_first_chunks_equal_cpu\": %s,\n  \"copy_ms\": %.4f,\n"
                "  \"copy_d2d_GBps\": %.1f,\n  \"p2_q\": %u,\n  \"p2_bits_per_vector\": %.2f,\n"
                "  \"p1_q38_bits_per_vector\": %u,\n  \"rows\": [\n",
                card, n, chan ? "channel" : "normal", fmt, lkv_p2_chunk_vectors(&c.p2), reps,
                same ? "true" : "false", t_copy, copy_gbps, q, bits2,
                8u * (unsigned)lkv_record_bytes(&c.p1));
        for (int i = 0; i < 4; i++) {
            const double gbps = rows[i].bytes / (rows[i].ms * 1e-3) / 1e9;
            fprintf(f,
                    "    {\"op\": \"%s\", \"ms\": %.4f, \"GBps\": %.1f, \"frac_copy\": %.3f}%s\n",
                    rows[i].name, rows[i].ms, gbps, gbps / copy_gbps, i < 3 ? "," : "");
        }
        fprintf(f, "  ]\n}\n");
        fclose(f);
    }
    printf("card: %s; n = %zu, D = 128, bf16, %s data; p2 Q=%u (container version %u, chunks "
           "of %u): %.1f bits/vector; p1 E8 Q=38: %u\n",
           card, n, chan ? "channel" : "normal", q, fmt, lkv_p2_chunk_vectors(&c.p2), bits2,
           8u * (unsigned)lkv_record_bytes(&c.p1));
    printf("device-to-device copy: %.3f ms, %.1f GB/s (read + write)\n", t_copy, copy_gbps);
    printf("%-20s %9s %9s %7s\n", "op", "ms", "GB/s", "%copy");
    for (int i = 0; i < 4; i++) {
        const double gbps = rows[i].bytes / (rows[i].ms * 1e-3) / 1e9;
        printf("%-20s %9.3f %9.1f %6.1f%%\n", rows[i].name, rows[i].ms, gbps,
               100.0 * gbps / copy_gbps);
    }
    lkv_cuda_p2_model_free(c.m);
    cudaFree(c.src);
    cudaFree(c.dst);
    cudaFree(c.pay);
    cudaFree(c.work);
    cudaFree(c.rec);
    cudaFree(c.offs);
    free(h);
    free(cpu);
    free(gpu);
    return same ? 0 : 1;
}
