/* SPDX-License-Identifier: Apache-2.0 */
/* lkv_backend.h - the codec backend vtable and its backends (backend.c, backend_cuda.c). */
#ifndef LKV_BACKEND_H
#define LKV_BACKEND_H

#include "lkv_batcher.h"
#include "lkv_codec.h"
#include "lkv_config.h"

/*
 * A codec backend runs batches on worker threads. `worker` is the calling
 * worker's index (0..workers-1): a backend may keep per-worker state (a CUDA
 * context and stream each) and needs no lock for it. run() sets each
 * segment's status; a failing segment must not affect the others.
 */
typedef struct lkv_backend lkv_backend;
struct lkv_backend {
    const char *name;
    lkv_backend_kind kind; /* LKV_BACKEND_CPU or _CUDA: picks the inline rule (lkv_sched.h) */
    int (*supports)(const lkv_backend *be, const lkv_params *p, lkv_dtype dt);
    void (*encode)(lkv_backend *be, unsigned worker, lkv_batch *b);
    void (*decode)(lkv_backend *be, unsigned worker, lkv_batch *b);
    void (*free)(lkv_backend *be);
};

/* The C codec (LKV_ISA_AUTO). Never fails except on OOM. */
lkv_status lkv_backend_cpu_create(unsigned workers, lkv_backend **out, lkv_diag *diag);
/* CUDA devices usable by this build (0 when built without CUDA or no device). */
int lkv_backend_cuda_devices(void);
/* ERR_UNAVAILABLE when this build has no CUDA or there is no device. */
lkv_status lkv_backend_cuda_create(unsigned workers, lkv_backend **out, lkv_diag *diag);
/* The device operations of the GPU tier (server/tier/lkv_tier_gpu.h) on
 * device 0; ERR_UNAVAILABLE without CUDA or a device. The tier's arena_free
 * call frees what this allocated. */
struct lkv_gpu_dev_ops;
lkv_status lkv_backend_cuda_gpu_ops(struct lkv_gpu_dev_ops *ops, lkv_diag *diag);
/* Runs b with be, or with the CPU codec when be does not support its params. */
void lkv_backend_run(lkv_backend *be, unsigned worker, lkv_batch *b);
/* The CPU path of one batch (used by backends as their fallback). */
void lkv_backend_run_cpu(lkv_batch *b);

#endif
