/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpu_codec_bench.c - throughput and latency of the CUDA codec.
 *
 * Measures, on device 0, in one run:
 *   - the card's device-to-device copy bandwidth (a 1 GiB cudaMemcpyAsync,
 *     bytes read + bytes written), the yardstick of the speed target;
 *   - encode and decode of 2^20 vectors for a table of configurations
 *     (variant, Q, head_dim, dtype), as time, GB/s (input bytes read +
 *     output bytes written) and the fraction of the copy bandwidth;
 *   - small-batch latency (1, 16, 256, 4096 vectors), both as GPU time
 *     between events and as host wall time of call + stream synchronise,
 *     which is what one decode step waits for;
 *   - the relative MSE of the main configuration on its own data, so the
 *     numbers can be matched with the PyTorch baseline's.
 * Times are medians of individually event-timed launches after warm-up.
 * Every launch's status is checked, and the first vectors are compared
 * with the C codec before anything is timed.
 *
 * Usage: gpu_codec_bench [--json FILE] [--quick] [--main | --first N]
 *   --main: only the target configuration (E8 Q=38 D=128 bf16) and no
 *   latency table, for quick A/B runs of kernel variants; --first N: the
 *   first N configurations of the table (2: E8 and D4 at Q=38 D=128).
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lkv_bench.h"
#include "lkv_codec.h"
#include "lkv_cuda.h"

#define CUDA_OK(call)                                                           \
    do {                                                                        \
        const cudaError_t e_ = (call);                                          \
        if (e_ != cudaSuccess) {                                                \
            fprintf(stderr, "FATAL %s:%d: %s: %s\n", __FILE__, __LINE__, #call, \
                    cudaGetErrorString(e_));                                    \
            exit(2);                                                            \
        }                                                                       \
    } while (0)

#define LKV_OK_OR_DIE(call)                                                       \
    do {                                                                          \
        lkv_diag d_;                                                              \
        memset(&d_, 0, sizeof d_);                                                \
        const lkv_status s_ = (call);                                             \
        if (s_ != LKV_OK) {                                                       \
            fprintf(stderr, "FATAL %s:%d: %s -> %s\n", __FILE__, __LINE__, #call, \
                    lkv_status_name(s_));                                         \
            exit(2);                                                              \
        }                                                                         \
    } while (0)

/* Median of n float times (cudaEventElapsedTime's type) through bench/common;
 * every caller here times at most 200 repetitions. */
static float median(const float *v, int n)
{
    double d[256];
    const size_t m = n < 256 ? (size_t)n : 256;
    for (size_t i = 0; i < m; i++)
        d[i] = v[i];
    return (float)lkv_bench_median(d, m);
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

/* A pool of standard-normal floats; vectors are drawn from it with a
 * per-vector stride so that batches are not periodic in a way the codec
 * could notice (and generating 2^28 normals is avoided). */
#define POOL (1u << 22)
static float *g_pool;

static void fill(lkv_dtype dt, void *buf, size_t n, uint32_t dim)
{
    unsigned char *b = buf;
    for (size_t i = 0; i < n; i++) {
        const uint64_t h = (i * 0x9e3779b97f4a7c15ull) >> 40;
        const size_t base = (size_t)(h % (POOL - LKV_DIM_MAX));
        for (uint32_t j = 0; j < dim; j++) {
            const float f = g_pool[base + j];
            const size_t e = i * dim + j;
            if (dt == LKV_DTYPE_FP32) {
                memcpy(b + 4 * e, &f, 4);
            } else {
                const uint16_t h16 = dt == LKV_DTYPE_BF16 ? lkv_f32_to_bf16(f) : lkv_f32_to_f16(f);
                memcpy(b + 2 * e, &h16, 2);
            }
        }
    }
}

typedef struct result {
    lkv_params p;
    lkv_dtype dt;
    size_t n;
    double enc_ms, dec_ms, enc_gbps, dec_gbps, bytes;
    size_t identical; /* vectors whose records and decodes equal the C codec's */
} result;

static float time_op(int encode, const lkv_params *p, lkv_dtype dt, const void *d_in, size_t n,
                     void *d_out, uint8_t *d_st, int reps, cudaEvent_t e0, cudaEvent_t e1)
{
    float *t = malloc(sizeof(float) * (size_t)reps);
    for (int r = -3; r < reps; r++) {
        CUDA_OK(cudaEventRecord(e0, 0));
        if (encode)
            LKV_OK_OR_DIE(lkv_cuda_encode(p, dt, d_in, n, d_out, d_st, NULL, &d_));
        else
            LKV_OK_OR_DIE(lkv_cuda_decode(p, d_in, n, dt, d_out, d_st, NULL, &d_));
        CUDA_OK(cudaEventRecord(e1, 0));
        CUDA_OK(cudaEventSynchronize(e1));
        if (r >= 0)
            CUDA_OK(cudaEventElapsedTime(&t[r], e0, e1));
    }
    const float m = median(t, reps);
    free(t);
    return m;
}

/* Checks every vector of a GPU encode and decode against the C codec (its
 * best SIMD path, byte-identical to the scalar one) and every status byte;
 * exits on a mismatch (no timing of wrong code). Returns the vectors
 * compared. */
static size_t verify(const lkv_params *p, lkv_dtype dt, const void *h_src, const uint8_t *d_rec,
                     const void *d_out, const uint8_t *d_st, size_t n)
{
    const size_t m = n, rb = lkv_record_bytes(p);
    const size_t vb = (size_t)p->dim * lkv_dtype_size(dt);
    uint8_t *rc = malloc(m * rb), *rg = malloc(m * rb), *oc = malloc(m * vb), *og = malloc(m * vb);
    uint8_t *st = malloc(n);
    LKV_OK_OR_DIE(lkv_encode(p, dt, h_src, m, rc, LKV_ISA_AUTO, &d_));
    LKV_OK_OR_DIE(lkv_decode(p, rc, m, dt, oc, LKV_ISA_AUTO, &d_));
    CUDA_OK(cudaMemcpy(rg, d_rec, m * rb, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(og, d_out, m * vb, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(st, d_st, n, cudaMemcpyDeviceToHost));
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += st[i] != LKV_OK;
    if (memcmp(rc, rg, m * rb) || memcmp(oc, og, m * vb) || bad) {
        fprintf(stderr,
                "FATAL: GPU output differs from the C codec (%s Q=%u D=%u %s), %zu bad statuses\n",
                lkv_variant_name(p->variant), p->q, p->dim, lkv_dtype_name(dt), bad);
        exit(3);
    }
    free(rc);
    free(rg);
    free(oc);
    free(og);
    free(st);
    return m;
}

int main(int argc, char **argv)
{
    const char *json = NULL;
    int quick = 0, main_only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            json = argv[++i];
        else if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--main") == 0)
            main_only = 1;
        else if (strcmp(argv[i], "--first") == 0 && i + 1 < argc) {
            char *end;
            const long v = strtol(argv[++i], &end, 10);
            if (end == argv[i] || *end || v < 1 || v > 1000) {
                fprintf(stderr, "gpu_codec_bench: --first wants a count of 1 or more, got '%s'\n",
                        argv[i]);
                return 2;
            }
            main_only = (int)v;
        } else {
            fprintf(stderr,
                    "gpu_codec_bench: unknown argument '%s'\n"
                    "usage: gpu_codec_bench [--json FILE] [--quick] [--main | --first N]\n",
                    argv[i]);
            return 2;
        }
    }
    if (lkv_cuda_device_count() == 0) {
        printf("SKIP: no CUDA device\n");
        return 0;
    }
    char name[256];
    lkv_cuda_device_name(0, name, sizeof name);
    struct cudaDeviceProp prop;
    CUDA_OK(cudaGetDeviceProperties(&prop, 0));
    int clock_khz = 0, mem_khz = 0;
    cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0);
    cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, 0);
    printf("device: %s, %d SMs, L2 %d MB\n", name, prop.multiProcessorCount,
           prop.l2CacheSize >> 20);

    g_pool = malloc(sizeof(float) * POOL);
    lkv_bench_rng rng;
    lkv_bench_rng_seed(&rng, 0x853c49e6748fea9bull);
    for (size_t i = 0; i < POOL; i++)
        g_pool[i] = (float)lkv_bench_rng_normal(&rng);

    cudaEvent_t e0, e1;
    CUDA_OK(cudaEventCreate(&e0));
    CUDA_OK(cudaEventCreate(&e1));
    const int reps = quick ? 5 : 25;

    /* 1. device-to-device copy bandwidth */
    const size_t cbytes = (size_t)1 << 30;
    void *ca, *cb;
    CUDA_OK(cudaMalloc(&ca, cbytes));
    CUDA_OK(cudaMalloc(&cb, cbytes));
    CUDA_OK(cudaMemset(ca, 1, cbytes));
    float ct[32];
    for (int r = -3; r < reps; r++) {
        CUDA_OK(cudaEventRecord(e0, 0));
        CUDA_OK(cudaMemcpyAsync(cb, ca, cbytes, cudaMemcpyDeviceToDevice, 0));
        CUDA_OK(cudaEventRecord(e1, 0));
        CUDA_OK(cudaEventSynchronize(e1));
        if (r >= 0)
            CUDA_OK(cudaEventElapsedTime(&ct[r], e0, e1));
    }
    const double copy_ms = median(ct, reps);
    const double copy_gbps = 2.0 * (double)cbytes / (copy_ms * 1e-3) / 1e9;
    /* the bf16 copy of 2^20 vectors of D = 128, for scale */
    const size_t vbytes = ((size_t)1 << 20) * 128 * 2;
    for (int r = -3; r < reps; r++) {
        CUDA_OK(cudaEventRecord(e0, 0));
        CUDA_OK(cudaMemcpyAsync(cb, ca, vbytes, cudaMemcpyDeviceToDevice, 0));
        CUDA_OK(cudaEventRecord(e1, 0));
        CUDA_OK(cudaEventSynchronize(e1));
        if (r >= 0)
            CUDA_OK(cudaEventElapsedTime(&ct[r], e0, e1));
    }
    const double copy_vec_ms = median(ct, reps);
    CUDA_OK(cudaFree(ca));
    CUDA_OK(cudaFree(cb));
    printf("device-to-device copy: %.1f GB/s (read + write, 1 GiB); bf16 copy of 2^20 x 128: %.3f "
           "ms\n\n",
           copy_gbps, copy_vec_ms);

    /* 2. throughput table */
    const struct {
        lkv_variant v;
        uint32_t q, dim;
        lkv_dtype dt;
    } cfg[] = {
        {LKV_VARIANT_E8, 38, 128, LKV_DTYPE_BF16}, /* the target */
        {LKV_VARIANT_D4, 38, 128, LKV_DTYPE_BF16},
        {LKV_VARIANT_E8, 10, 128, LKV_DTYPE_BF16},
        {LKV_VARIANT_E8, 152, 128, LKV_DTYPE_BF16},
        {LKV_VARIANT_D4, 10, 128, LKV_DTYPE_BF16},
        {LKV_VARIANT_D4, 152, 128, LKV_DTYPE_BF16},
        {LKV_VARIANT_E8, 38, 64, LKV_DTYPE_BF16},
        {LKV_VARIANT_E8, 38, 256, LKV_DTYPE_BF16},
        {LKV_VARIANT_E8, 38, 512, LKV_DTYPE_BF16},
        {LKV_VARIANT_D4, 38, 64, LKV_DTYPE_BF16},
        {LKV_VARIANT_D4, 38, 256, LKV_DTYPE_BF16},
        {LKV_VARIANT_E8, 38, 128, LKV_DTYPE_FP16},
        {LKV_VARIANT_E8, 38, 128, LKV_DTYPE_FP32},
        {LKV_VARIANT_E8, 1023, 128, LKV_DTYPE_BF16},
        /* head dims that are not a power of two (Phi-3's 96, MLA's 576) */
        {LKV_VARIANT_E8, 38, 96, LKV_DTYPE_BF16},
        {LKV_VARIANT_E8, 38, 576, LKV_DTYPE_BF16},
        {LKV_VARIANT_D4, 38, 96, LKV_DTYPE_BF16},
        {LKV_VARIANT_E8, 38, 192, LKV_DTYPE_BF16},
    };
    const size_t ncfg = main_only > 0 && (size_t)main_only < sizeof cfg / sizeof cfg[0]
                            ? (size_t)main_only
                            : sizeof cfg / sizeof cfg[0];
    result res[sizeof cfg / sizeof cfg[0]];
    const size_t n = quick ? ((size_t)1 << 16) : ((size_t)1 << 20);
    double relmse_main = 0;
    printf("%-4s %5s %5s %5s %9s | %9s %8s %6s | %9s %8s %6s\n", "var", "Q", "D", "dtype", "n",
           "enc ms", "enc GB/s", "%copy", "dec ms", "dec GB/s", "%copy");
    for (size_t c = 0; c < ncfg; c++) {
        const lkv_params p = {cfg[c].v, cfg[c].q, cfg[c].dim};
        const lkv_dtype dt = cfg[c].dt;
        const size_t vb = (size_t)p.dim * lkv_dtype_size(dt), rb = lkv_record_bytes(&p);
        void *h_src = malloc(n * vb);
        fill(dt, h_src, n, p.dim);
        void *d_src, *d_rec, *d_out;
        uint8_t *d_st;
        CUDA_OK(cudaMalloc(&d_src, n * vb));
        CUDA_OK(cudaMalloc(&d_rec, n * rb));
        CUDA_OK(cudaMalloc(&d_out, n * vb));
        CUDA_OK(cudaMalloc((void **)&d_st, n));
        CUDA_OK(cudaMemcpy(d_src, h_src, n * vb, cudaMemcpyHostToDevice));
        CUDA_OK(cudaMemset(d_rec, 0xa5, n * rb));
        CUDA_OK(cudaMemset(d_out, 0x5a, n * vb));
        LKV_OK_OR_DIE(lkv_cuda_encode(&p, dt, d_src, n, d_rec, d_st, NULL, &d_));
        LKV_OK_OR_DIE(lkv_cuda_decode(&p, d_rec, n, dt, d_out, d_st, NULL, &d_));
        CUDA_OK(cudaDeviceSynchronize());
        const size_t identical = verify(&p, dt, h_src, d_rec, d_out, d_st, n);
        if (c == 0) { /* relative MSE of the main configuration */
            uint16_t *h_out = malloc(n * vb);
            CUDA_OK(cudaMemcpy(h_out, d_out, n * vb, cudaMemcpyDeviceToHost));
            const uint16_t *h_in = h_src;
            double se = 0, sx = 0;
            for (size_t i = 0; i < n * p.dim; i++) {
                const double a = lkv_bf16_to_f32(h_in[i]), b = lkv_bf16_to_f32(h_out[i]);
                se += (a - b) * (a - b);
                sx += a * a;
            }
            relmse_main = se / sx;
            free(h_out);
        }
        const double enc = time_op(1, &p, dt, d_src, n, d_rec, d_st, reps, e0, e1);
        const double dec = time_op(0, &p, dt, d_rec, n, d_out, d_st, reps, e0, e1);
        const double bytes = (double)n * (double)(vb + rb);
        res[c] = (result){
            p,     dt,       n, enc, dec, bytes / (enc * 1e-3) / 1e9, bytes / (dec * 1e-3) / 1e9,
            bytes, identical};
        printf("%-4s %5u %5u %5s %9zu | %9.4f %8.1f %5.1f%% | %9.4f %8.1f %5.1f%%\n",
               lkv_variant_name(p.variant), p.q, p.dim, lkv_dtype_name(dt), n, enc, res[c].enc_gbps,
               100.0 * res[c].enc_gbps / copy_gbps, dec, res[c].dec_gbps,
               100.0 * res[c].dec_gbps / copy_gbps);
        CUDA_OK(cudaFree(d_src));
        CUDA_OK(cudaFree(d_rec));
        CUDA_OK(cudaFree(d_out));
        CUDA_OK(cudaFree(d_st));
        free(h_src);
    }
    printf("relative MSE, E8 Q=38 D=128 bf16 roundtrip of the table's data: %.4e\n\n", relmse_main);
    if (main_only) {
        free(g_pool);
        return 0;
    }

    /* 3. small-batch latency, E8 Q=38 D=128 bf16 */
    const size_t lat_n[] = {1, 16, 256, 4096};
    double lat_gpu_enc[4], lat_gpu_dec[4], lat_wall_enc[4], lat_wall_dec[4];
    {
        const lkv_params p = {LKV_VARIANT_E8, 38, 128};
        const lkv_dtype dt = LKV_DTYPE_BF16;
        const size_t maxn = 4096, vb = 256, rb = lkv_record_bytes(&p);
        void *h_src = malloc(maxn * vb);
        fill(dt, h_src, maxn, p.dim);
        void *d_src, *d_rec, *d_out;
        uint8_t *d_st;
        CUDA_OK(cudaMalloc(&d_src, maxn * vb));
        CUDA_OK(cudaMalloc(&d_rec, maxn * rb));
        CUDA_OK(cudaMalloc(&d_out, maxn * vb));
        CUDA_OK(cudaMalloc((void **)&d_st, maxn));
        CUDA_OK(cudaMemcpy(d_src, h_src, maxn * vb, cudaMemcpyHostToDevice));
        cudaStream_t s;
        CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
        const int lreps = quick ? 20 : 200;
        float *tw = malloc(sizeof(float) * (size_t)lreps);
        printf("small batches, E8 Q=38 D=128 bf16 (median of %d):\n", lreps);
        printf("%6s | %12s %12s | %12s %12s\n", "n", "enc GPU us", "enc wall us", "dec GPU us",
               "dec wall us");
        for (int k = 0; k < 4; k++) {
            const size_t m = lat_n[k];
            lat_gpu_enc[k] = 1e3 * time_op(1, &p, dt, d_src, m, d_rec, d_st, lreps, e0, e1);
            lat_gpu_dec[k] = 1e3 * time_op(0, &p, dt, d_rec, m, d_out, d_st, lreps, e0, e1);
            for (int op = 0; op < 2; op++) {
                for (int r = -5; r < lreps; r++) {
                    const double t0 = now_us();
                    if (op == 0)
                        LKV_OK_OR_DIE(lkv_cuda_encode(&p, dt, d_src, m, d_rec, d_st, s, &d_));
                    else
                        LKV_OK_OR_DIE(lkv_cuda_decode(&p, d_rec, m, dt, d_out, d_st, s, &d_));
                    CUDA_OK(cudaStreamSynchronize(s));
                    if (r >= 0)
                        tw[r] = (float)(now_us() - t0);
                }
                (op == 0 ? lat_wall_enc : lat_wall_dec)[k] = median(tw, lreps);
            }
            printf("%6zu | %12.2f %12.2f | %12.2f %12.2f\n", m, lat_gpu_enc[k], lat_wall_enc[k],
                   lat_gpu_dec[k], lat_wall_dec[k]);
        }
        free(tw);
        CUDA_OK(cudaStreamDestroy(s));
        CUDA_OK(cudaFree(d_src));
        CUDA_OK(cudaFree(d_rec));
        CUDA_OK(cudaFree(d_out));
        CUDA_OK(cudaFree(d_st));
        free(h_src);
    }

    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            perror(json);
            return 1;
        }
        char date[32];
        lkv_bench_utc(date, sizeof date, "%Y-%m-%d");
        lkv_json j;
        lkv_json_start(&j, f);
        lkv_json_str(&j, "device", name);
        lkv_json_str(&j, "date", date);
        lkv_json_int(&j, "sm_count", prop.multiProcessorCount);
        lkv_json_int(&j, "sm_clock_mhz", clock_khz / 1000);
        lkv_json_int(&j, "mem_clock_mhz", mem_khz / 1000);
        lkv_json_num(&j, "copy_d2d_GBps", "%.1f", copy_gbps);
        lkv_json_num(&j, "copy_bf16_2^20x128_ms", "%.4f", copy_vec_ms);
        lkv_json_num(&j, "relmse_e8_q38_d128_bf16", "%.5e", relmse_main);
        lkv_json_array(&j, "throughput", LKV_JSON_BLOCK);
        for (size_t c = 0; c < ncfg; c++) {
            lkv_json_object(&j, NULL, LKV_JSON_INLINE);
            lkv_json_str(&j, "variant", lkv_variant_name(res[c].p.variant));
            lkv_json_uint(&j, "q", res[c].p.q);
            lkv_json_uint(&j, "dim", res[c].p.dim);
            lkv_json_str(&j, "dtype", lkv_dtype_name(res[c].dt));
            lkv_json_uint(&j, "n", res[c].n);
            lkv_json_num(&j, "bytes", "%.0f", res[c].bytes);
            lkv_json_num(&j, "encode_ms", "%.5f", res[c].enc_ms);
            lkv_json_num(&j, "decode_ms", "%.5f", res[c].dec_ms);
            lkv_json_num(&j, "encode_GBps", "%.1f", res[c].enc_gbps);
            lkv_json_num(&j, "decode_GBps", "%.1f", res[c].dec_gbps);
            lkv_json_num(&j, "encode_frac_copy", "%.3f", res[c].enc_gbps / copy_gbps);
            lkv_json_num(&j, "decode_frac_copy", "%.3f", res[c].dec_gbps / copy_gbps);
            lkv_json_uint(&j, "identical_to_cpu", res[c].identical);
            lkv_json_end(&j);
        }
        lkv_json_end(&j);
        lkv_json_array(&j, "latency_e8_q38_d128_bf16", LKV_JSON_BLOCK);
        for (int k = 0; k < 4; k++) {
            lkv_json_object(&j, NULL, LKV_JSON_INLINE);
            lkv_json_uint(&j, "n", lat_n[k]);
            lkv_json_num(&j, "encode_gpu_us", "%.2f", lat_gpu_enc[k]);
            lkv_json_num(&j, "encode_wall_us", "%.2f", lat_wall_enc[k]);
            lkv_json_num(&j, "decode_gpu_us", "%.2f", lat_gpu_dec[k]);
            lkv_json_num(&j, "decode_wall_us", "%.2f", lat_wall_dec[k]);
            lkv_json_end(&j);
        }
        lkv_json_end(&j);
        if (lkv_json_finish(&j) != 0 || fclose(f) != 0) {
            fprintf(stderr, "gpu_codec_bench: error writing %s\n", json);
            return 1;
        }
    }
    free(g_pool);
    return 0;
}
