/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpu_tier_check.c - the GPU tier on a real device (server/tier/gpu.c with
 * the CUDA operations of server/backend_cuda.c).
 *
 * Checks, each against the C codec as the oracle:
 *   - a resident block decodes on the device to the bytes lkv_decompress
 *     gives, for bf16, fp16 and fp32 output, E8 and D4, several Q, a
 *     head_dim that is not a power of two, and a block big enough (over
 *     16 MiB of output) that the decode runs in several pipelined chunks;
 *   - eight decodes in flight at once on the threadpool (one context each);
 *   - the coded get copies the container back byte for byte;
 *   - in the stack over a host tier: a full GPU tier evicts into host, the
 *     evicted block is byte-identical there, a Get promotes it back and it
 *     is byte-identical on the device again (GPU -> host -> GPU), and the
 *     host tier's copy decodes on the CUDA backend (lkv_cuda_ctx_decode) to
 *     the same bytes as the GPU tier's decode of the same key.
 * A plain program (CUDA must not start inside Criterion's parent); without a
 * device it prints SKIP and exits with LKV_TEST_SKIP_CODE.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "lkv_cuda.h"
#include "lkv_server.h"
#include "lkv_stack.h"
#include "tier/lkv_tier_gpu.h"

static int passed, failed;

static void check(int ok, const char *what)
{
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAIL %s\n", what);
    }
}

static uv_loop_t loop;
static uint32_t rng = 12345;

static lkv_blob *block(const lkv_params *p, const uint64_t *shape, uint32_t ndim)
{
    size_t n = 1;
    for (uint32_t i = 0; i < ndim; i++)
        n *= shape[i];
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        rng = rng * 1664525u + 1013904223u;
        x[i] = (float)((int)(rng >> 8) - (1 << 23)) / (float)(1 << 21);
    }
    lkv_container_info info;
    if (lkv_container_plan(p, LKV_DTYPE_FP32, shape, ndim, &info, NULL) != LKV_OK)
        abort();
    lkv_blob *b = lkv_blob_create(info.total_bytes);
    size_t len = 0;
    if (!b || lkv_compress(p, LKV_DTYPE_FP32, shape, ndim, x, n * 4, b->data, b->len, &len,
                           LKV_ISA_AUTO, NULL) != LKV_OK)
        abort();
    free(x);
    return b;
}

static void req_done(lkv_tier_req *r)
{
    *(int *)r->ud = 1;
}

static lkv_tier_req treq(const char *key, lkv_blob *b, int *ran)
{
    *ran = 0;
    return (lkv_tier_req){.ns = "t",
                          .ns_len = 1,
                          .key = (const uint8_t *)key,
                          .key_len = strlen(key),
                          .blob = b,
                          .done = req_done,
                          .ud = ran};
}

typedef struct dec {
    lkv_gpu_decode_req r;
    int ran;
} dec;

static void dec_done(lkv_gpu_decode_req *r)
{
    ((dec *)r->ud)->ran = 1;
}

static void dec_start(lkv_tier *t, dec *d, const char *key, lkv_dtype dt, uint8_t *dst, size_t cap)
{
    memset(d, 0, sizeof *d);
    d->r = (lkv_gpu_decode_req){.ns = "t",
                                .ns_len = 1,
                                .key = (const uint8_t *)key,
                                .key_len = strlen(key),
                                .dtype = dt,
                                .dst = dst,
                                .dst_cap = cap,
                                .done = dec_done,
                                .ud = d};
    lkv_tier_gpu_decode(t, &d->r);
}

static int same_blob(const lkv_blob *a, const lkv_blob *b)
{
    return a && b && a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* The GPU decode of key equals lkv_decompress of b (out dtype dt). */
static void decode_matches(lkv_tier *t, const char *key, const lkv_blob *b, lkv_dtype dt,
                           const char *what)
{
    lkv_container_info info;
    if (lkv_container_parse(b->data, b->len, &info, NULL) != LKV_OK)
        abort();
    const size_t n = (size_t)info.n_vectors * info.params.dim * lkv_dtype_size(dt);
    uint8_t *want = malloc(n), *got = malloc(n);
    memset(got, 0xa5, n);
    size_t len = 0;
    lkv_decompress(b->data, b->len, (int)dt, want, n, &len, NULL, LKV_ISA_AUTO, NULL);
    dec d;
    dec_start(t, &d, key, dt, got, n);
    uv_run(&loop, UV_RUN_DEFAULT);
    char m[400];
    snprintf(m, sizeof m, "%s: decode %s (%s)", what, lkv_status_name(d.r.status), d.r.diag.msg);
    check(d.ran && d.r.found && d.r.status == LKV_OK, m);
    snprintf(m, sizeof m, "%s: GPU tier decode = C codec, %zu bytes", what, n);
    check(len == n && memcmp(want, got, n) == 0, m);
    free(want);
    free(got);
}

static lkv_tier *make_gpu(uint64_t bytes)
{
    lkv_gpu_config c = {.capacity_bytes = bytes, .high_pct = 100, .low_pct = 90};
    lkv_diag d;
    lkv_tier *t = NULL;
    if (lkv_backend_cuda_gpu_ops(&c.ops, &d) != LKV_OK ||
        lkv_tier_gpu_create(&loop, &c, &t, &d) != LKV_OK) {
        printf("FAIL gpu tier create: %s\n", d.msg);
        exit(1);
    }
    return t;
}

static void codec_cases(void)
{
    lkv_tier *t = make_gpu(256u << 20);
    const struct {
        lkv_variant v;
        uint32_t q, dim;
    } cases[] = {{LKV_VARIANT_E8, 38, 128},
                 {LKV_VARIANT_E8, 10, 128},
                 {LKV_VARIANT_E8, 152, 64},
                 {LKV_VARIANT_D4, 38, 128},
                 {LKV_VARIANT_E8, 38, 96}};
    const lkv_dtype dts[] = {LKV_DTYPE_BF16, LKV_DTYPE_FP16, LKV_DTYPE_FP32};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const lkv_params p = {cases[c].v, cases[c].q, cases[c].dim};
        const uint64_t shape[3] = {33, 8, p.dim};
        lkv_blob *b = block(&p, shape, 3);
        int ran;
        lkv_tier_req r = treq("c", b, &ran);
        lkv_tier_put(t, &r);
        check(ran && r.status == LKV_OK, "put");
        for (size_t i = 0; i < 3; i++) {
            char what[96];
            snprintf(what, sizeof what, "%s q=%u dim=%u -> %s", lkv_variant_name(p.variant), p.q,
                     p.dim, lkv_dtype_name(dts[i]));
            decode_matches(t, "c", b, dts[i], what);
        }
        r = treq("c", NULL, &ran);
        lkv_tier_get(t, &r);
        check(ran && r.found && same_blob(r.blob, b), "coded get = the container put");
        lkv_blob_unref(r.blob);
        lkv_blob_unref(b);
    }
    /* 2 x 4096 tokens x 8 heads = 65536 vectors: 32 MiB of fp32 output, 4 chunks. */
    const lkv_params p = {LKV_VARIANT_E8, 38, 128};
    const uint64_t shape[4] = {2, 4096, 8, 128};
    lkv_blob *big = block(&p, shape, 4);
    int ran;
    lkv_tier_req r = treq("big", big, &ran);
    lkv_tier_put(t, &r);
    check(ran && r.status == LKV_OK, "put of a 65536-vector block");
    decode_matches(t, "big", big, LKV_DTYPE_FP32, "65536 vectors, chunked");
    decode_matches(t, "big", big, LKV_DTYPE_BF16, "65536 vectors, chunked");
    /* Eight at once. */
    const size_t n = 65536u * 128 * 2;
    uint8_t *want = malloc(n);
    size_t len;
    lkv_decompress(big->data, big->len, LKV_DTYPE_BF16, want, n, &len, NULL, LKV_ISA_AUTO, NULL);
    dec d[8];
    uint8_t *got[8];
    for (int i = 0; i < 8; i++) {
        got[i] = malloc(n);
        dec_start(t, &d[i], "big", LKV_DTYPE_BF16, got[i], n);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    int all = 1;
    for (int i = 0; i < 8; i++) {
        all &= d[i].ran && d[i].r.status == LKV_OK && memcmp(got[i], want, n) == 0;
        free(got[i]);
    }
    check(all, "eight concurrent decodes of one block, all equal to the C codec");
    free(want);
    lkv_blob_unref(big);
    t->close(t, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
}

static int closed;

static void on_closed(void *ud)
{
    (void)ud;
    closed++;
}

static void stack_case(void)
{
    const lkv_params p = {LKV_VARIANT_E8, 38, 128};
    const uint64_t shape[3] = {16, 8, 128};
    lkv_blob *b[6];
    for (int i = 0; i < 6; i++)
        b[i] = block(&p, shape, 3);
    const uint64_t rec = 128u * lkv_record_bytes(&p);
    const uint64_t charge = (rec + LKV_GPU_ALIGN - 1) / LKV_GPU_ALIGN * LKV_GPU_ALIGN;
    lkv_gpu_config gc = {.capacity_bytes = 4 * charge, .high_pct = 100, .low_pct = 100};
    lkv_diag d;
    lkv_tier *gpu = NULL, *host = NULL;
    const lkv_host_config hc = {.capacity_bytes = 64u << 20, .high_pct = 100, .low_pct = 100};
    if (lkv_backend_cuda_gpu_ops(&gc.ops, &d) != LKV_OK ||
        lkv_tier_gpu_create(&loop, &gc, &gpu, &d) != LKV_OK ||
        lkv_tier_host_create(&hc, &host, &d) != LKV_OK) {
        printf("FAIL stack set-up: %s\n", d.msg);
        exit(1);
    }
    lkv_stack *s = lkv_stack_create(host, NULL, NULL, LKV_TIER_WRITE_THROUGH);
    lkv_stack_set_gpu(s, gpu);
    const char *keys[6] = {"0", "1", "2", "3", "4", "5"};
    for (int i = 0; i < 6; i++)
        check(lkv_stack_put_host(s, "t", 1, (const uint8_t *)keys[i], 1, b[i], &d) == LKV_OK,
              "stack put");
    check(host->contains(host, "t", 1, (const uint8_t *)"0", 1) == LKV_TIER_PRESENT &&
              gpu->contains(gpu, "t", 1, (const uint8_t *)"0", 1) == LKV_TIER_ABSENT,
          "a full GPU tier evicted block 0 into host");
    lkv_tier_stats st;
    gpu->stats(gpu, &st);
    check(st.evictions == 2 && st.blocks == 4, "two evictions, four resident");
    int ran;
    lkv_tier_req r = treq("0", NULL, &ran);
    lkv_tier_get(host, &r);
    check(r.found && same_blob(r.blob, b[0]), "GPU -> host: the evicted container is identical");
    /* The host tier's copy on the CUDA backend, as a host-tier Get runs it. */
    lkv_container_info info;
    lkv_container_parse(r.blob->data, r.blob->len, &info, NULL);
    const size_t n = (size_t)info.n_vectors * 128 * 2;
    uint8_t *from_host = malloc(n), *from_gpu = malloc(n), *cpu = malloc(n);
    lkv_cuda_ctx *ctx = NULL;
    check(lkv_cuda_ctx_create(0, &ctx, &d) == LKV_OK, "cuda ctx");
    check(lkv_cuda_ctx_decode(ctx, &info.params, r.blob->data + info.header_bytes, info.n_vectors,
                              LKV_DTYPE_BF16, from_host, &d) == LKV_OK,
          "host tier copy decodes on the cuda backend");
    lkv_blob_unref(r.blob);
    r = treq("0", NULL, &ran);
    lkv_stack_get(s, &r);
    check(ran && r.found && r.tier == host, "the stack serves block 0 from host");
    lkv_blob_unref(r.blob);
    check(gpu->contains(gpu, "t", 1, (const uint8_t *)"0", 1) == LKV_TIER_PRESENT &&
              host->contains(host, "t", 1, (const uint8_t *)"0", 1) == LKV_TIER_ABSENT,
          "and promotes it back to the GPU tier");
    r = treq("0", NULL, &ran);
    lkv_tier_get(gpu, &r);
    check(r.found && same_blob(r.blob, b[0]), "GPU -> host -> GPU: the container is identical");
    lkv_blob_unref(r.blob);
    dec dd;
    dec_start(gpu, &dd, "0", LKV_DTYPE_BF16, from_gpu, n);
    uv_run(&loop, UV_RUN_DEFAULT);
    size_t len;
    lkv_decompress(b[0]->data, b[0]->len, LKV_DTYPE_BF16, cpu, n, &len, NULL, LKV_ISA_AUTO, NULL);
    check(dd.r.status == LKV_OK && memcmp(from_gpu, cpu, n) == 0,
          "GPU tier decode of the promoted block = C codec");
    check(memcmp(from_host, cpu, n) == 0, "host tier decode on the cuda backend = C codec");
    lkv_cuda_ctx_free(ctx);
    free(from_host);
    free(from_gpu);
    free(cpu);
    for (int i = 0; i < 6; i++)
        lkv_blob_unref(b[i]);
    lkv_stack_close(s, on_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    check(closed == 1, "the stack with its GPU tier closed");
}

int main(void)
{
    if (lkv_cuda_device_count() <= 0) {
        printf("SKIP: no CUDA device\n");
        return LKV_TEST_SKIP_CODE;
    }
    uv_loop_init(&loop);
    codec_cases();
    stack_case();
    uv_loop_close(&loop);
    printf("gpu_tier_check: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
