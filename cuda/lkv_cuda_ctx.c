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
