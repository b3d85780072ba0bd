/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpu_tier_bench.c - Get latency of a whole model context from latticekvd's
 * GPU tier and from its host tier, against moving the raw bf16 bytes.
 *
 * The context is Llama-3.1-8B-shaped: 32 layers, each one container of
 * shape [2 (K, V), T tokens, 8 KV heads, 128] bf16, coded E8 Q=38 (the
 * daemon's default). For each context length T it times, per round and
 * interleaved (the median of --reps rounds is reported):
 *   gpu_tier      32 Gets, one after another, served by the GPU tier: each a
 *                 decode on the device from the resident records into a host
 *                 buffer (lkv_tier_gpu_decode, what a daemon Get of a gpu
 *                 block runs), the coded bytes never leaving the device;
 *   gpu_tier_par  the same 32 Gets all in flight at once (libuv threadpool);
 *   host_tier     32 Gets served by the host tier on the cuda backend: the
 *                 coded bytes go host -> device, decode, bf16 device -> host
 *                 (lkv_cuda_ctx_decode, what a cuda worker runs for one batch);
 *   raw_d2h       the raw bf16 context copied device -> pageable host memory;
 *   raw_d2h2d     the raw bf16 copied device -> host -> device (pageable),
 *                 the plain way to park a context in host memory and bring it
 *                 back;
 *   raw_d2h2d_pinned  the same through pinned host memory (best case).
 * Only the codec and the copies are timed: no gRPC, no daemon (a 20k-token
 * layer is 80 MiB decoded, above the daemon's default message size). The
 * decoded bytes of layer 0 are checked against the C codec once per T.
 *
 * Usage: gpu_tier_bench [--tokens 1024,4096,20480] [--reps 5] [--json FILE]
 */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "lkv_bench.h"
#include "lkv_cuda.h"
#include "lkv_server.h"
#include "lkv_stack.h"
#include "tier/lkv_tier_gpu.h"

#define LAYERS 32
#define HEADS  8
#define DIM    128

static uv_loop_t loop;

typedef struct dec {
    lkv_gpu_decode_req r;
    int ran;
} dec;

static void dec_done(lkv_gpu_decode_req *r)
{
    ((dec *)r->ud)->ran = 1;
}

static void req_done(lkv_tier_req *r)
{
    *(int *)r->ud = 1;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "gpu_tier_bench: %s: %s\n", what, msg);
    exit(1);
}

static void cuda_ok(cudaError_t e, const char *what)
{
    if (e != cudaSuccess)
        die(what, cudaGetErrorString(e));
}

enum { M_GPU, M_GPU_PAR, M_HOST, M_D2H, M_D2H2D, M_D2H2D_PIN, M_COUNT };
static const char *const mname[M_COUNT] = {"gpu_tier_ms", "gpu_tier_par_ms", "host_tier_ms",
                                           "raw_d2h_ms",  "raw_d2h2d_ms",    "raw_d2h2d_pinned_ms"};

typedef struct result {
    unsigned tokens;
    size_t layer_raw, layer_coded;
    double ms[M_COUNT];
    int identical;
} result;

static void key_of(char *k, unsigned l)
{
    snprintf(k, 8, "L%02u", l);
}

static result run(unsigned tokens, unsigned reps)
{
    result res = {.tokens = tokens};
    const lkv_params p = {LKV_VARIANT_E8, 38, DIM};
    const uint64_t shape[4] = {2, tokens, HEADS, DIM};
    const size_t nvec = (size_t)2 * tokens * HEADS;
    const size_t raw = nvec * DIM * 2;
    res.layer_raw = raw;
    /* One layer of KV-like bf16 values, coded once; every layer holds a copy
     * under its own key (decode cost does not depend on the values). */
    uint16_t *x = malloc(raw);
    lkv_bench_rng rng;
    lkv_bench_rng_seed(&rng, tokens);
    for (size_t i = 0; i < nvec * DIM; i++)
        x[i] = lkv_f32_to_bf16((float)lkv_bench_rng_normal(&rng));
    lkv_container_info info;
    if (lkv_container_plan(&p, LKV_DTYPE_BF16, shape, 4, &info, NULL) != LKV_OK)
        die("plan", "shape");
    lkv_blob *blob = lkv_blob_create(info.total_bytes);
    size_t len = 0;
    lkv_diag d;
    if (!blob || lkv_compress(&p, LKV_DTYPE_BF16, shape, 4, x, raw, blob->data, blob->len, &len,
                              LKV_ISA_AUTO, &d) != LKV_OK)
        die("compress", d.msg);
    res.layer_coded = len;
    uint8_t *want = malloc(raw);
    if (lkv_decode(&p, blob->data + info.header_bytes, nvec, LKV_DTYPE_BF16, want, LKV_ISA_AUTO,
                   &d) != LKV_OK)
        die("decode", d.msg);

    /* The GPU tier, sized for the context, holding all 32 layers. */
    const uint64_t charge =
        (len - info.header_bytes + LKV_GPU_ALIGN - 1) / LKV_GPU_ALIGN * LKV_GPU_ALIGN;
    lkv_gpu_config gc = {.capacity_bytes = LAYERS * charge, .high_pct = 100, .low_pct = 100};
    lkv_tier *gpu = NULL;
    if (lkv_backend_cuda_gpu_ops(&gc.ops, &d) != LKV_OK ||
        lkv_tier_gpu_create(&loop, &gc, &gpu, &d) != LKV_OK)
        die("gpu tier", d.msg);
    char keys[LAYERS][8];
    for (unsigned l = 0; l < LAYERS; l++) {
        key_of(keys[l], l);
        int ran = 0;
        lkv_tier_req r = {.ns = "ctx",
                          .ns_len = 3,
                          .key = (const uint8_t *)keys[l],
                          .key_len = strlen(keys[l]),
                          .blob = blob,
                          .done = req_done,
                          .ud = &ran};
        lkv_tier_put(gpu, &r);
        if (r.status != LKV_OK)
            die("gpu tier put", r.diag.msg);
    }
    lkv_cuda_ctx *ctx = NULL;
    if (lkv_cuda_ctx_create(0, &ctx, &d) != LKV_OK)
        die("ctx", d.msg);

    /* Raw context on the device, its host landing buffers. */
    const size_t total = LAYERS * raw;
    uint8_t *d_raw = NULL, *d_back = NULL, *h_pin = NULL;
    cuda_ok(cudaMalloc((void **)&d_raw, total), "cudaMalloc raw");
    cuda_ok(cudaMalloc((void **)&d_back, total), "cudaMalloc back");
    cuda_ok(cudaMallocHost((void **)&h_pin, total), "cudaMallocHost");
    for (unsigned l = 0; l < LAYERS; l++)
        cuda_ok(cudaMemcpy(d_raw + l * raw, x, raw, cudaMemcpyHostToDevice), "fill");
    uint8_t *h = malloc(total);
    memset(h, 0, total); /* first touch outside the timings */

    double *t[M_COUNT];
    for (int m = 0; m < M_COUNT; m++)
        t[m] = calloc(reps + 1, sizeof(double));
    dec dq[LAYERS];
    res.identical = 1;
    for (unsigned rep = 0; rep <= reps; rep++) { /* round 0 warms up */
        double t0 = lkv_bench_now_s();
        for (unsigned l = 0; l < LAYERS; l++) {
            dq[l] = (dec){.r = {.ns = "ctx",
                                .ns_len = 3,
                                .key = (const uint8_t *)keys[l],
                                .key_len = strlen(keys[l]),
                                .dtype = LKV_DTYPE_BF16,
                                .dst = h + l * raw,
                                .dst_cap = raw,
                                .done = dec_done}};
            dq[l].r.ud = &dq[l];
            lkv_tier_gpu_decode(gpu, &dq[l].r);
            uv_run(&loop, UV_RUN_DEFAULT);
            if (!dq[l].ran || dq[l].r.status != LKV_OK)
                die("gpu tier decode", dq[l].r.diag.msg);
        }
        t[M_GPU][rep] = lkv_bench_now_s() - t0;
        if (rep == 0)
            res.identical &=
                memcmp(h, want, raw) == 0 && memcmp(h + (LAYERS - 1) * raw, want, raw) == 0;

        t0 = lkv_bench_now_s();
        for (unsigned l = 0; l < LAYERS; l++) {
            dq[l].ran = 0;
            lkv_tier_gpu_decode(gpu, &dq[l].r);
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        t[M_GPU_PAR][rep] = lkv_bench_now_s() - t0;
        for (unsigned l = 0; l < LAYERS; l++)
            if (!dq[l].ran || dq[l].r.status != LKV_OK)
                die("gpu tier decode (parallel)", dq[l].r.diag.msg);
        if (rep == 0)
            res.identical &= memcmp(h + 5 * raw, want, raw) == 0;

        t0 = lkv_bench_now_s();
        for (unsigned l = 0; l < LAYERS; l++)
            if (lkv_cuda_ctx_decode(ctx, &p, blob->data + info.header_bytes, nvec, LKV_DTYPE_BF16,
                                    h + l * raw, &d) != LKV_OK)
                die("host tier decode", d.msg);
        t[M_HOST][rep] = lkv_bench_now_s() - t0;
        if (rep == 0)
            res.identical &= memcmp(h + 7 * raw, want, raw) == 0;

        t0 = lkv_bench_now_s();
        cuda_ok(cudaMemcpy(h, d_raw, total, cudaMemcpyDeviceToHost), "d2h");
        t[M_D2H][rep] = lkv_bench_now_s() - t0;

        t0 = lkv_bench_now_s();
        cuda_ok(cudaMemcpy(h, d_raw, total, cudaMemcpyDeviceToHost), "d2h");
        cuda_ok(cudaMemcpy(d_back, h, total, cudaMemcpyHostToDevice), "h2d");
        t[M_D2H2D][rep] = lkv_bench_now_s() - t0;

        t0 = lkv_bench_now_s();
        cuda_ok(cudaMemcpy(h_pin, d_raw, total, cudaMemcpyDeviceToHost), "d2h pinned");
        cuda_ok(cudaMemcpy(d_back, h_pin, total, cudaMemcpyHostToDevice), "h2d pinned");
        t[M_D2H2D_PIN][rep] = lkv_bench_now_s() - t0;
    }
    for (int m = 0; m < M_COUNT; m++) {
        res.ms[m] = lkv_bench_median(t[m] + 1, reps) * 1e3;
        free(t[m]);
    }
    cudaFree(d_raw);
    cudaFree(d_back);
    cudaFreeHost(h_pin);
    free(h);
    lkv_cuda_ctx_free(ctx);
    gpu->close(gpu, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    lkv_blob_unref(blob);
    free(want);
    free(x);
    return res;
}

int main(int argc, char **argv)
{
    unsigned tokens[8] = {1024, 4096, 20480}, ntok = 3, reps = 5;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc) {
            ntok = 0;
            for (char *s = argv[++i], *e; *s && ntok < 8; s = *e ? e + 1 : e) {
                tokens[ntok++] = (unsigned)strtoul(s, &e, 10);
                if (e == s || tokens[ntok - 1] == 0)
                    die("--tokens", "a comma-separated list of token counts");
            }
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = (unsigned)strtoul(argv[++i], NULL, 10);
            if (reps == 0)
                die("--reps", "at least 1");
        } else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            json = argv[++i];
        } else {
            fprintf(stderr, "usage: gpu_tier_bench [--tokens 1024,4096,20480] [--reps 5] "
                            "[--json FILE]\n");
            return 2;
        }
    }
    if (lkv_cuda_device_count() <= 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    char dev[128] = "?";
    lkv_cuda_device_name(0, dev, sizeof dev);
    uv_loop_init(&loop);
    result res[8];
    printf("device %s; context 32 layers x [2, T, 8, 128] bf16, E8 Q=38; median of %u rounds\n",
           dev, reps);
    printf("%7s %10s %10s %9s %9s %9s %9s %9s %9s %4s\n", "tokens", "raw_MiB", "coded_MiB",
           "gpu_tier", "gpu_par", "host_tier", "raw_d2h", "d2h2d", "d2h2d_pin", "same");
    for (unsigned i = 0; i < ntok; i++) {
        res[i] = run(tokens[i], reps);
        const result *r = &res[i];
        printf("%7u %10.1f %10.1f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %4s\n", r->tokens,
               LAYERS * (double)r->layer_raw / (1 << 20),
               LAYERS * (double)r->layer_coded / (1 << 20), r->ms[M_GPU], r->ms[M_GPU_PAR],
               r->ms[M_HOST], r->ms[M_D2H], r->ms[M_D2H2D], r->ms[M_D2H2D_PIN],
               r->identical ? "yes" : "NO");
        fflush(stdout);
    }
    uv_loop_close(&loop);
    int ok = 1;
    for (unsigned i = 0; i < ntok; i++)
        ok &= res[i].identical;
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f)
            die("--json", json);
        lkv_json j;
        lkv_json_start(&j, f);
        lkv_json_str(&j, "bench", "gpu_tier_bench");
        lkv_json_str(&j, "device", dev);
        lkv_json_str(&j, "context", "Llama-3.1-8B-shaped: 32 layers x [2 (K,V), T, 8, 128] bf16");
        lkv_json_str(&j, "codec", "E8 Q=38 (daemon default)");
        lkv_json_str(&j, "unit", "ms per whole context (32 layer Gets), median");
        lkv_json_uint(&j, "reps", reps);
        lkv_json_array(&j, "rows", LKV_JSON_BLOCK);
        for (unsigned i = 0; i < ntok; i++) {
            lkv_json_object(&j, NULL, LKV_JSON_INLINE);
            lkv_json_uint(&j, "tokens", res[i].tokens);
            lkv_json_uint(&j, "raw_bytes", (unsigned long long)LAYERS * res[i].layer_raw);
            lkv_json_uint(&j, "coded_bytes", (unsigned long long)LAYERS * res[i].layer_coded);
            for (int m = 0; m < M_COUNT; m++)
                lkv_json_num(&j, mname[m], "%.3f", res[i].ms[m]);
            lkv_json_int(&j, "decoded_equals_c_codec", res[i].identical);
            lkv_json_end(&j);
        }
        lkv_json_end(&j);
        if (lkv_json_finish(&j) != 0 || fclose(f) != 0)
            die("--json", "write failed");
    }
    return ok ? 0 : 1;
}
