/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_tier_gpu.h - the GPU tier (gpu.c): coded containers held in device
 * memory, the first tier above host memory (issue 12).
 *
 * The tier keeps the records of each container in one device arena that it
 * reserves at start (see gpu.c for why one arena rather than an allocation
 * per block) and the small container header (32 + 8 * ndim bytes) with its
 * index entry on the host. A Get served from it decodes on the device
 * straight from the resident records; only the decoded tensor crosses to
 * the host (lkv_tier_gpu_decode). The generic lkv_tier get copies the
 * container to a host blob: that is for callers that want the coded bytes
 * (Get with want_coded), never the decode path.
 *
 * The device is reached through lkv_gpu_dev_ops so that the index, the
 * arena allocator, LRU and watermarks are tested without a GPU
 * (tests/server/test_tier_gpu.c runs them over host memory); the CUDA
 * operations are in server/backend_cuda.c.
 */
#ifndef LKV_TIER_GPU_H
#define LKV_TIER_GPU_H

#include "lkv_tier.h"

/*
 * What the tier needs of a device. Every pointer named dev_* is a device
 * address inside the arena. arena_alloc, arena_free, to_device and to_host
 * are called on the loop thread; decode on a libuv threadpool thread, several
 * at once (the implementation keeps a stream per call).
 */
typedef struct lkv_gpu_dev_ops {
    lkv_status (*arena_alloc)(void *ctx, uint64_t bytes, void **dev_base, lkv_diag *diag);
    void (*arena_free)(void *ctx, void *dev_base);
    lkv_status (*to_device)(void *ctx, void *dev_dst, const void *src, size_t n, lkv_diag *diag);
    lkv_status (*to_host)(void *ctx, void *dst, const void *dev_src, size_t n, lkv_diag *diag);
    /* Decodes n records at dev_records into n vectors of dtype dt at the host
     * buffer dst; the first failing vector's status (diag->index = vector). */
    lkv_status (*decode)(void *ctx, const lkv_params *p, const void *dev_records, size_t n,
                         lkv_dtype dt, void *dst, lkv_diag *diag);
    void *ctx;
} lkv_gpu_dev_ops;

typedef struct lkv_gpu_config {
    uint64_t capacity_bytes; /* the arena, >= 1; charged per block: records rounded up to 256 */
    unsigned high_pct, low_pct;
    lkv_gpu_dev_ops ops;
} lkv_gpu_config;

/* Reserves the arena (ERR_NOMEM naming the size when the device has no room). */
lkv_status lkv_tier_gpu_create(void *uv_loop, const lkv_gpu_config *cfg, lkv_tier **out,
                               lkv_diag *diag);

/* Whether t is a GPU tier (the stack and the service branch on it). */
int lkv_tier_is_gpu(const lkv_tier *t);

/* lkv_tier_host_each for the GPU tier: the blocks of namespace ns held in
 * device memory whose key starts with prefix, oldest first (Push by_prefix;
 * the two tiers are exclusive, so together they list each block once). */
void lkv_tier_gpu_each(const lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *prefix,
                       size_t plen, int (*fn)(const uint8_t *key, size_t key_len, void *ud),
                       void *ud);

/* What the tier would refuse a put of blob_len bytes for, without changing
 * anything: ERR_LIMIT when its records can never fit the arena. */
lkv_status lkv_tier_gpu_admit(const lkv_tier *t, uint64_t blob_len, lkv_diag *diag);

/* The container header of a resident block, parsed (no device access,
 * recency unchanged); 1 on a hit, 0 on a miss. */
int lkv_tier_gpu_info(const lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *key,
                      size_t key_len, lkv_container_info *info);

/* A decode of a resident block into a host buffer. */
typedef struct lkv_gpu_decode_req {
    /* in */
    const char *ns;
    size_t ns_len;
    const uint8_t *key;
    size_t key_len;
    lkv_dtype dtype; /* output dtype */
    uint8_t *dst;    /* n_vectors * dim * lkv_dtype_size(dtype) bytes */
    size_t dst_cap;
    void (*done)(struct lkv_gpu_decode_req *r); /* loop thread, exactly once */
    void *ud;
    /* out */
    lkv_status status;
    lkv_diag diag;
    int found;
    lkv_container_info info;
    /* the tier's */
    void *t_priv;
} lkv_gpu_decode_req;

/*
 * Decodes the resident block of (ns, key) on the device into r->dst on a
 * threadpool thread, then calls done() on the loop thread. A hit refreshes
 * recency and counts as a hit; a miss (found = 0, LKV_OK) completes before
 * the call returns. The block's device bytes stay allocated until the decode
 * is back, even if it is evicted, replaced or deleted meanwhile.
 * ERR_BUFFER_SMALL when dst_cap is below the tensor's size.
 */
void lkv_tier_gpu_decode(lkv_tier *t, lkv_gpu_decode_req *r);

/* Arena bytes in use by blocks that have left the index but are still being
 * decoded (their ranges free when the decode is back). */
uint64_t lkv_tier_gpu_pinned_bytes(const lkv_tier *t);

/* The allocator behind the arena, exposed for its unit test: first fit over
 * a free list sorted by offset, coalescing on free. Offsets and sizes are
 * multiples of LKV_GPU_ALIGN. */
#define LKV_GPU_ALIGN 256u
typedef struct lkv_gpu_arena lkv_gpu_arena;
lkv_gpu_arena *lkv_gpu_arena_create(uint64_t bytes);
void lkv_gpu_arena_free(lkv_gpu_arena *a);
/* 0 and *off on success, -1 when no free range is large enough. */
int lkv_gpu_arena_alloc(lkv_gpu_arena *a, uint64_t bytes, uint64_t *off);
void lkv_gpu_arena_release(lkv_gpu_arena *a, uint64_t off, uint64_t bytes);
/* Free bytes, and the largest free range. */
uint64_t lkv_gpu_arena_free_bytes(const lkv_gpu_arena *a);
uint64_t lkv_gpu_arena_largest(const lkv_gpu_arena *a);

#endif
