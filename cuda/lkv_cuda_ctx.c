/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_cuda_ctx.c - device discovery and the host-buffer context of the CUDA
 * backend (cuda/include/lkv_cuda.h).
 *
 * Design note: the daemon hands the backend host buffers; a context turns
 * one such call into pinned staging -> device -> kernel -> device -> pinned
 * on its own stream, then synchronises once. Buffers only grow (to the
 * largest request seen), so a steady stream of requests allocates nothing.
 * "No driver" and "no device" are normal answers here (count 0), never
 * errors: the daemon then runs the CPU backend.
 */
#include "lkv_cuda.h"

#include <cuda_runtime_api.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_codec_backend.h"
#include "lkv_cuda_internal.h"

struct lkv_cuda_ctx {
    int dev;
    cudaStream_t stream;
    void *d_in, *d_out;
    uint8_t *d_status;
    void *h_in, *h_out;
    uint8_t *h_status;
    size_t in_cap, out_cap, status_cap;
    cudaEvent_t ev[2]; /* lkv_cuda_ctx_decode_device: one per half of the buffers */
};

lkv_status lkv_cuda_fail(cudaError_t e, lkv_diag *diag, const char *what)
{
    const lkv_status code = e == cudaErrorMemoryAllocation ? LKV_ERR_NOMEM
                            : (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver)
                                ? LKV_ERR_UNAVAILABLE
                                : LKV_ERR_INTERNAL;
    return lkv_fail(diag, code, UINT64_MAX, "%s: CUDA error %d (%s)", what, (int)e,
                    cudaGetErrorString(e));
}

int lkv_cuda_device_count(void)
{
    int n = 0;
    /* cudaErrorInsufficientDriver (35) or cudaErrorNoDevice: no GPU here. */
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

lkv_status lkv_cuda_device_name(int dev, char *buf, size_t cap)
{
    const int n = lkv_cuda_device_count();
    if (dev < 0 || dev >= n)
        return LKV_ERR_INVALID_ARGUMENT;
    if (!buf || cap == 0)
        return LKV_ERR_BUFFER_SMALL;
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, dev) != cudaSuccess)
        return LKV_ERR_UNAVAILABLE;
    const size_t len = strnlen(prop.name, sizeof prop.name);
    if (len >= cap)
        return LKV_ERR_BUFFER_SMALL;
    memcpy(buf, prop.name, len);
    buf[len] = '\0';
    return LKV_OK;
}

lkv_status lkv_cuda_ctx_create(int dev, lkv_cuda_ctx **out, lkv_diag *diag)
{
    *out = NULL;
    const int n = lkv_cuda_device_count();
    if (n == 0)
        return lkv_fail(diag, LKV_ERR_UNAVAILABLE, UINT64_MAX, "no CUDA device");
    if (dev < 0 || dev >= n)
        return lkv_fail(diag, LKV_ERR_INVALID_ARGUMENT, UINT64_MAX, "device=%d is not in 0..%d",
                        dev, n - 1);
    lkv_cuda_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return lkv_fail(diag, LKV_ERR_NOMEM, UINT64_MAX, "lkv_cuda_ctx: out of host memory");
    c->dev = dev;
    cudaError_t e = cudaSetDevice(dev);
    if (e == cudaSuccess)
        e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        free(c);
        return lkv_cuda_fail(e, diag, "lkv_cuda_ctx_create");
    }
    *out = c;
    return LKV_OK;
}

void lkv_cuda_ctx_free(lkv_cuda_ctx *c)
{
    if (!c)
        return;
    (void)cudaSetDevice(c->dev);
    if (c->stream)
        (void)cudaStreamSynchronize(c->stream);
    cudaFree(c->d_in);
    cudaFree(c->d_out);
    cudaFree(c->d_status);
    cudaFreeHost(c->h_in);
    cudaFreeHost(c->h_out);
    cudaFreeHost(c->h_status);
    for (int i = 0; i < 2; i++)
        if (c->ev[i])
            cudaEventDestroy(c->ev[i]);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    free(c);
}

/* Grows a device + pinned buffer pair to at least `need` bytes. */
static cudaError_t grow(void **d, void **h, size_t *cap, size_t need)
{
    if (need <= *cap)
        return cudaSuccess;
    size_t want = *cap ? *cap : 1u << 20;
    while (want < need)
        want *= 2;
    cudaFree(*d);
    cudaFreeHost(*h);
    *d = *h = NULL;
    *cap = 0;
    cudaError_t e = cudaMalloc(d, want);
    if (e == cudaSuccess)
        e = cudaMallocHost(h, want);
    if (e != cudaSuccess) {
        cudaFree(*d);
        *d = NULL;
        return e;
    }
    *cap = want;
    return cudaSuccess;
}

typedef enum { OP_ENCODE, OP_DECODE } ctx_op;

static lkv_status ctx_run(lkv_cuda_ctx *c, ctx_op op, const lkv_params *p, lkv_dtype dt,
                          const void *src, size_t n, void *dst, lkv_diag *diag)
{
    lkv_status st = lkv_params_check(p, diag);
    if (st == LKV_OK)
        st = lkv_dtype_check((int)dt, diag);
    if (st != LKV_OK || n == 0)
        return st;
    const size_t vec_bytes = (size_t)p->dim * lkv_dtype_size(dt);
    const size_t rec = lkv_record_bytes(p);
    if (n > SIZE_MAX / vec_bytes)
        return lkv_fail(diag, LKV_ERR_LIMIT, UINT64_MAX, "n=%zu vectors overflows size_t", n);
    const size_t in_bytes = n * (op == OP_ENCODE ? vec_bytes : rec);
    const size_t out_bytes = n * (op == OP_ENCODE ? rec : vec_bytes);
    cudaError_t e = cudaSetDevice(c->dev);
    if (e == cudaSuccess)
        e = grow(&c->d_in, &c->h_in, &c->in_cap, in_bytes);
    if (e == cudaSuccess)
        e = grow(&c->d_out, &c->h_out, &c->out_cap, out_bytes);
    if (e == cudaSuccess)
        e = grow((void **)&c->d_status, (void **)&c->h_status, &c->status_cap, n);
    if (e != cudaSuccess)
        return lkv_cuda_fail(e, diag, "lkv_cuda_ctx: buffers");
    memcpy(c->h_in, src, in_bytes);
    e = cudaMemcpyAsync(c->d_in, c->h_in, in_bytes, cudaMemcpyHostToDevice, c->stream);
    if (e != cudaSuccess)
        return lkv_cuda_fail(e, diag, "lkv_cuda_ctx: copy in");
    st = op == OP_ENCODE
             ? lkv_cuda_encode(p, dt, c->d_in, n, c->d_out, c->d_status, c->stream, diag)
             : lkv_cuda_decode(p, c->d_in, n, dt, c->d_out, c->d_status, c->stream, diag);
    if (st != LKV_OK) {
        (void)cudaStreamSynchronize(c->stream);
        return st;
    }
    e = cudaMemcpyAsync(c->h_out, c->d_out, out_bytes, cudaMemcpyDeviceToHost, c->stream);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(c->h_status, c->d_status, n, cudaMemcpyDeviceToHost, c->stream);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess)
        return lkv_cuda_fail(e, diag, "lkv_cuda_ctx: run");
    for (size_t i = 0; i < n; i++) {
        if (c->h_status[i] == LKV_OK)
            continue;
        const lkv_status vs = (lkv_status)c->h_status[i];
        if (vs == LKV_ERR_NONFINITE) {
            /* the kernel reports the vector; the element is found here, on
             * the error path only, so the message is the C codec's */
            float x[LKV_DIM_MAX];
            uint32_t bad = 0;
            (void)lkv_load_vec(dt, src, i, p->dim, x, &bad);
            return lkv_fail(diag, vs, i, "tensor.data: vector %zu element %u is NaN or Inf", i,
                            bad);
        }
        if (vs == LKV_ERR_NORM_OVERFLOW)
            return lkv_fail(diag, vs, i,
                            "tensor.data: vector %zu has norm >= 65520 (fp16 overflow)", i);
        return lkv_fail(diag, vs, i, "record %zu holds an invalid index or scale", i);
    }
    memcpy(dst, c->h_out, out_bytes);
    return LKV_OK;
}

lkv_status lkv_cuda_ctx_encode(lkv_cuda_ctx *ctx, const lkv_params *p, lkv_dtype dt,
                               const void *src, size_t n, void *records, lkv_diag *diag)
{
    return ctx_run(ctx, OP_ENCODE, p, dt, src, n, records, diag);
}

lkv_status lkv_cuda_ctx_decode(lkv_cuda_ctx *ctx, const lkv_params *p, const void *records,
                               size_t n, lkv_dtype dt, void *dst, lkv_diag *diag)
{
    return ctx_run(ctx, OP_DECODE, p, dt, records, n, dst, diag);
}

/* ---- device-resident records (the daemon's GPU tier) --------------------- */

/* Output bytes per chunk of lkv_cuda_ctx_decode_device: big enough that a
 * launch and a copy cost little against the work, small enough that the
 * staging stays a few tens of MiB whatever the block's size. */
#define LKV_CUDA_DEVICE_CHUNK (16u << 20)

static lkv_status chunk_status(const uint8_t *h_status, size_t first, size_t cnt, lkv_diag *diag)
{
    for (size_t i = 0; i < cnt; i++)
        if (h_status[i] != LKV_OK)
            return lkv_fail(diag, (lkv_status)h_status[i], first + i,
                            "record %zu holds an invalid index or scale", first + i);
    return LKV_OK;
}

lkv_status lkv_cuda_ctx_decode_device(lkv_cuda_ctx *c, const lkv_params *p, const void *d_records,
                                      size_t n, lkv_dtype dt, void *dst, lkv_diag *diag)
{
    lkv_status st = lkv_params_check(p, diag);
    if (st == LKV_OK)
        st = lkv_dtype_check((int)dt, diag);
    if (st != LKV_OK || n == 0)
        return st;
    if (!d_records || !dst)
        return lkv_fail(diag, LKV_ERR_INVALID_ARGUMENT, UINT64_MAX,
                        "lkv_cuda_ctx_decode_device: NULL buffer with n=%zu", n);
    const size_t vec = (size_t)p->dim * lkv_dtype_size(dt);
    const size_t rec = lkv_record_bytes(p);
    /* A multiple of 16 vectors, so every chunk's records start 16-byte
     * aligned when the first does (the kernels' coalesced path). */
    size_t per = LKV_CUDA_DEVICE_CHUNK / vec / 16 * 16;
    if (per == 0)
        per = 16;
    if (per > n)
        per = n;
    cudaError_t e = cudaSetDevice(c->dev);
    if (e == cudaSuccess)
        e = grow(&c->d_out, &c->h_out, &c->out_cap, 2 * per * vec);
    if (e == cudaSuccess)
        e = grow((void **)&c->d_status, (void **)&c->h_status, &c->status_cap, 2 * per);
    for (int i = 0; i < 2 && e == cudaSuccess; i++)
        if (!c->ev[i])
            e = cudaEventCreateWithFlags(&c->ev[i], cudaEventDisableTiming);
    if (e != cudaSuccess)
        return lkv_cuda_fail(e, diag, "lkv_cuda_ctx_decode_device: buffers");
    /* Chunk k decodes into half k % 2 and copies to the pinned half; while
     * the device works on chunk k, the host moves chunk k - 1 into dst. */
    const size_t chunks = (n + per - 1) / per;
    lkv_status first_bad = LKV_OK;
    lkv_diag bad_diag;
    for (size_t k = 0; k <= chunks; k++) {
        if (k < chunks) {
            const size_t h = k % 2, first = k * per, cnt = n - first < per ? n - first : per;
            uint8_t *d_out = (uint8_t *)c->d_out + h * per * vec;
            st = lkv_cuda_decode(p, (const uint8_t *)d_records + first * rec, cnt, dt, d_out,
                                 c->d_status + h * per, c->stream, diag);
            if (st != LKV_OK) {
                (void)cudaStreamSynchronize(c->stream);
                return st;
            }
            e = cudaMemcpyAsync((uint8_t *)c->h_out + h * per * vec, d_out, cnt * vec,
                                cudaMemcpyDeviceToHost, c->stream);
            if (e == cudaSuccess)
                e = cudaMemcpyAsync(c->h_status + h * per, c->d_status + h * per, cnt,
                                    cudaMemcpyDeviceToHost, c->stream);
            if (e == cudaSuccess)
                e = cudaEventRecord(c->ev[h], c->stream);
            if (e != cudaSuccess) {
                (void)cudaStreamSynchronize(c->stream);
                return lkv_cuda_fail(e, diag, "lkv_cuda_ctx_decode_device: enqueue");
            }
        }
        if (k == 0)
            continue;
        const size_t j = k - 1, h = j % 2, first = j * per, cnt = n - first < per ? n - first : per;
        e = cudaEventSynchronize(c->ev[h]);
        if (e != cudaSuccess) {
            (void)cudaStreamSynchronize(c->stream);
            return lkv_cuda_fail(e, diag, "lkv_cuda_ctx_decode_device: run");
        }
        if (first_bad == LKV_OK)
            first_bad = chunk_status(c->h_status + h * per, first, cnt, &bad_diag);
        memcpy((uint8_t *)dst + first * vec, (uint8_t *)c->h_out + h * per * vec, cnt * vec);
    }
    if (first_bad != LKV_OK && diag)
        *diag = bad_diag;
    return first_bad;
}

lkv_status lkv_cuda_arena_alloc(int dev, size_t bytes, void **d_base, lkv_diag *diag)
{
    *d_base = NULL;
    cudaError_t e = cudaSetDevice(dev);
    if (e == cudaSuccess)
        e = cudaMalloc(d_base, bytes);
    if (e != cudaSuccess) {
        *d_base = NULL;
        (void)cudaGetLastError();
        size_t free_b = 0, total = 0;
        (void)cudaMemGetInfo(&free_b, &total);
        return lkv_fail(diag, e == cudaErrorMemoryAllocation ? LKV_ERR_NOMEM : LKV_ERR_INTERNAL,
                        UINT64_MAX,
                        "gpu-mem-bytes=%zu: cudaMalloc on device %d failed: %s (%zu of %zu bytes "
                        "free)",
                        bytes, dev, cudaGetErrorString(e), free_b, total);
    }
    return LKV_OK;
}

void lkv_cuda_arena_free(int dev, void *d_base)
{
    if (!d_base)
        return;
    (void)cudaSetDevice(dev);
    cudaFree(d_base);
}

lkv_status lkv_cuda_copy(int dev, void *dst, const void *src, size_t n, int to_device,
                         lkv_diag *diag)
{
    cudaError_t e = cudaSetDevice(dev);
    if (e == cudaSuccess)
        e = cudaMemcpy(dst, src, n, to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost);
    if (e != cudaSuccess)
        return lkv_cuda_fail(e, diag,
                             to_device ? "gpu tier: copy to device" : "gpu tier: copy to host");
    return LKV_OK;
}
