/* SPDX-License-Identifier: Apache-2.0 */
/*
 * backend_cuda.c - the CUDA codec backend (cuda/include/lkv_cuda.h).
 *
 * Design note. Each worker thread owns one lkv_cuda_ctx (a device, a stream
 * and growable staging buffers), because a context must not be shared by two
 * threads; two workers keep copies and kernels overlapping. A batch is
 * gathered into one contiguous host buffer and run as one kernel launch,
 * which is the point of batching on a GPU, and the results are scattered
 * back into each request's reply buffer. If the launch reports a failing
 * vector, the segments are re-run one by one so that only the request that
 * holds the bad vector fails (a rare path: NaN/Inf or norm overflow).
 *
 * Built with LKV_HAVE_CUDA_BACKEND when the lkv_cuda target exists; without
 * it lkv_backend_cuda_create reports ERR_UNAVAILABLE.
 */
#include <stdlib.h>
#include <string.h>

#include "lkv_backend.h"
#include "lkv_status.h"
#include "tier/lkv_tier_gpu.h"

#ifdef LKV_HAVE_CUDA_BACKEND
#include <pthread.h>

#include "lkv_cuda.h"

typedef struct cuda_backend {
    lkv_backend be;
    unsigned n;
    struct cuda_worker {
        lkv_cuda_ctx *ctx;
        uint8_t *in, *out; /* gather / scatter buffers */
        size_t in_cap, out_cap;
    } * w;
} cuda_backend;

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap >= need)
        return 0;
    uint8_t *p = realloc(*buf, need);
    if (!p)
        return -1;
    *buf = p;
    *cap = need;
    return 0;
}

static lkv_status run_one(struct cuda_worker *w, lkv_op op, const lkv_params *p, lkv_dtype dt,
                          const void *src, size_t n, void *dst, lkv_diag *diag)
{
    return op == LKV_OP_ENCODE ? lkv_cuda_ctx_encode(w->ctx, p, dt, src, n, dst, diag)
                               : lkv_cuda_ctx_decode(w->ctx, p, src, n, dt, dst, diag);
}

static void cuda_run(lkv_backend *be, unsigned worker, lkv_batch *b)
{
    cuda_backend *cb = (cuda_backend *)be;
    struct cuda_worker *w = &cb->w[worker % cb->n];
    const size_t vec = (size_t)b->params.dim * lkv_dtype_size(b->dtype);
    const size_t rec = lkv_record_bytes(&b->params);
    const size_t in_stride = b->op == LKV_OP_ENCODE ? vec : rec;
    const size_t out_stride = b->op == LKV_OP_ENCODE ? rec : vec;

    if (b->nseg == 1) {
        lkv_seg *s = &b->seg[0];
        s->status = run_one(w, b->op, &b->params, b->dtype, s->src, s->n, s->dst, &s->diag);
        return;
    }
    if (grow(&w->in, &w->in_cap, b->nvec * in_stride) != 0 ||
        grow(&w->out, &w->out_cap, b->nvec * out_stride) != 0) {
        lkv_backend_run_cpu(b); /* no room to gather: the CPU path needs none */
        return;
    }
    size_t off = 0;
    for (size_t i = 0; i < b->nseg; i++) {
        memcpy(w->in + off * in_stride, b->seg[i].src, b->seg[i].n * in_stride);
        off += b->seg[i].n;
    }
    lkv_diag d;
    const lkv_status st = run_one(w, b->op, &b->params, b->dtype, w->in, b->nvec, w->out, &d);
    if (st != LKV_OK) {
        /* Find who failed: run each segment alone. */
        for (size_t i = 0; i < b->nseg; i++) {
            lkv_seg *s = &b->seg[i];
            s->status = run_one(w, b->op, &b->params, b->dtype, s->src, s->n, s->dst, &s->diag);
        }
        return;
    }
    off = 0;
    for (size_t i = 0; i < b->nseg; i++) {
        memcpy(b->seg[i].dst, w->out + off * out_stride, b->seg[i].n * out_stride);
        b->seg[i].status = LKV_OK;
        off += b->seg[i].n;
    }
}

static int cuda_supports(const lkv_backend *be, const lkv_params *p, lkv_dtype dt)
{
    (void)be;
    return lkv_params_check(p, NULL) == LKV_OK && lkv_dtype_check((int)dt, NULL) == LKV_OK;
}

static void cuda_free(lkv_backend *be)
{
    cuda_backend *cb = (cuda_backend *)be;
    for (unsigned i = 0; i < cb->n; i++) {
        if (cb->w[i].ctx)
            lkv_cuda_ctx_free(cb->w[i].ctx);
        free(cb->w[i].in);
        free(cb->w[i].out);
    }
    free(cb->w);
    free(cb);
}

int lkv_backend_cuda_devices(void)
{
    return lkv_cuda_device_count();
}

lkv_status lkv_backend_cuda_create(unsigned workers, lkv_backend **out, lkv_diag *diag)
{
    const int devs = lkv_cuda_device_count();
    if (devs <= 0)
        return lkv_diag_fail(diag, LKV_ERR_UNAVAILABLE, "backend=cuda: no CUDA device is present");
    cuda_backend *cb = calloc(1, sizeof *cb);
    if (!cb || !(cb->w = calloc(workers ? workers : 1, sizeof *cb->w))) {
        free(cb);
        return LKV_ERR_NOMEM;
    }
    cb->n = workers ? workers : 1;
    for (unsigned i = 0; i < cb->n; i++) {
        /* Spread the workers over the devices. */
        lkv_status st = lkv_cuda_ctx_create((int)(i % (unsigned)devs), &cb->w[i].ctx, diag);
        if (st != LKV_OK) {
            cuda_free(&cb->be);
            return st;
        }
    }
    cb->be.name = "cuda";
    cb->be.kind = LKV_BACKEND_CUDA;
    cb->be.supports = cuda_supports;
    cb->be.encode = cuda_run;
    cb->be.decode = cuda_run;
    cb->be.free = cuda_free;
    *out = &cb->be;
    return LKV_OK;
}

/*
 * The GPU tier's device (lkv_tier_gpu.h). Its decodes run on libuv's
 * threadpool, not on the backend's workers, so they keep contexts of their
 * own: a free list under a mutex, grown on demand (one per decode running at
 * once, UV_THREADPOOL_SIZE at most) and kept for reuse, since creating a
 * context (a stream, staging buffers) costs far more than a decode of a
 * small block. The arena lives on device 0, where the contexts are made.
 */
#define GPU_TIER_DEV 0

typedef struct gpu_dev {
    pthread_mutex_t mu;
    struct ctx_node {
        struct ctx_node *next;
        lkv_cuda_ctx *ctx;
    } * idle;
} gpu_dev;

static lkv_status gd_arena_alloc(void *ctx, uint64_t bytes, void **dev_base, lkv_diag *diag)
{
    (void)ctx;
    if (bytes > SIZE_MAX)
        return lkv_diag_fail(diag, LKV_ERR_LIMIT, "gpu-mem-bytes=%llu exceeds size_t",
                             (unsigned long long)bytes);
    return lkv_cuda_arena_alloc(GPU_TIER_DEV, (size_t)bytes, dev_base, diag);
}

/* The tier's last call: the contexts go with the arena. */
static void gd_arena_free(void *ctx, void *dev_base)
{
    gpu_dev *g = ctx;
    lkv_cuda_arena_free(GPU_TIER_DEV, dev_base);
    while (g->idle) {
        struct ctx_node *n = g->idle;
        g->idle = n->next;
        lkv_cuda_ctx_free(n->ctx);
        free(n);
    }
    pthread_mutex_destroy(&g->mu);
    free(g);
}

static lkv_status gd_to_device(void *ctx, void *dev_dst, const void *src, size_t n, lkv_diag *diag)
{
    (void)ctx;
    return lkv_cuda_copy(GPU_TIER_DEV, dev_dst, src, n, 1, diag);
}

static lkv_status gd_to_host(void *ctx, void *dst, const void *dev_src, size_t n, lkv_diag *diag)
{
    (void)ctx;
    return lkv_cuda_copy(GPU_TIER_DEV, dst, dev_src, n, 0, diag);
}

static lkv_status gd_decode(void *ctx, const lkv_params *p, const void *dev_records, size_t n,
                            lkv_dtype dt, void *dst, lkv_diag *diag)
{
    gpu_dev *g = ctx;
    pthread_mutex_lock(&g->mu);
    struct ctx_node *node = g->idle;
    if (node)
        g->idle = node->next;
    pthread_mutex_unlock(&g->mu);
    if (!node) {
        node = calloc(1, sizeof *node);
        if (!node)
            return lkv_diag_fail(diag, LKV_ERR_NOMEM, "gpu tier: out of memory for a context");
        const lkv_status st = lkv_cuda_ctx_create(GPU_TIER_DEV, &node->ctx, diag);
        if (st != LKV_OK) {
            free(node);
            return st;
        }
    }
    const lkv_status st = lkv_cuda_ctx_decode_device(node->ctx, p, dev_records, n, dt, dst, diag);
    pthread_mutex_lock(&g->mu);
    node->next = g->idle;
    g->idle = node;
    pthread_mutex_unlock(&g->mu);
    return st;
}

lkv_status lkv_backend_cuda_gpu_ops(lkv_gpu_dev_ops *ops, lkv_diag *diag)
{
    if (lkv_cuda_device_count() <= 0)
        return lkv_diag_fail(diag, LKV_ERR_UNAVAILABLE, "gpu tier: no CUDA device is present");
    gpu_dev *g = calloc(1, sizeof *g);
    if (!g || pthread_mutex_init(&g->mu, NULL) != 0) {
        free(g);
        return lkv_diag_fail(diag, LKV_ERR_NOMEM, "gpu tier: out of memory");
    }
    *ops = (lkv_gpu_dev_ops){.arena_alloc = gd_arena_alloc,
                             .arena_free = gd_arena_free,
                             .to_device = gd_to_device,
                             .to_host = gd_to_host,
                             .decode = gd_decode,
                             .ctx = g};
    return LKV_OK;
}

#else /* no CUDA in this build */

lkv_status lkv_backend_cuda_gpu_ops(lkv_gpu_dev_ops *ops, lkv_diag *diag)
{
    memset(ops, 0, sizeof *ops);
    return lkv_diag_fail(diag, LKV_ERR_UNAVAILABLE,
                         "gpu tier: this latticekvd was built without the CUDA backend");
}

int lkv_backend_cuda_devices(void)
{
    return 0;
}

lkv_status lkv_backend_cuda_create(unsigned workers, lkv_backend **out, lkv_diag *diag)
{
    (void)workers;
    *out = NULL;
    return lkv_diag_fail(diag, LKV_ERR_UNAVAILABLE,
                         "backend=cuda: this latticekvd was built without the CUDA backend");
}

#endif
