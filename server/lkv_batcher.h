/* SPDX-License-Identifier: Apache-2.0 */
/* lkv_batcher.h - dynamic batching of codec work, pure logic (batcher.c). */
#ifndef LKV_BATCHER_H
#define LKV_BATCHER_H

#include <stddef.h>
#include <stdint.h>

#include "lkv_codec.h"
#include "lkv_pool.h"

typedef enum lkv_op { LKV_OP_ENCODE = 0, LKV_OP_DECODE = 1 } lkv_op;

/*
 * The codec work of one request: n vectors from src to dst. Encode reads
 * vectors (dim * dtype size bytes each) and writes records; decode the other
 * way round. Owned by the caller until done() runs on the loop thread.
 *
 * Profile 2 (params.profile == 2) has no fixed record size: its encode
 * writes a payload of at most dst_cap bytes (the size lands in dst_len),
 * its decode reads src_len payload bytes. Such a work is never split and
 * never shares a batch: it runs as one segment on the CPU codec.
 */
typedef struct lkv_work {
    lkv_op op;
    lkv_params params;
    lkv_dtype dtype;
    const uint8_t *src;
    uint8_t *dst;
    size_t n;
    size_t src_len; /* profile 2 decode: payload bytes at src */
    size_t dst_cap; /* profile 2 encode: room at dst */
    size_t dst_len; /* profile 2 encode: payload bytes written (set before done) */
    void (*done)(struct lkv_work *w); /* loop thread, once every chunk is back */
    void *ud;
    /* Filled by the batcher. */
    lkv_status status;  /* first failing chunk's status */
    lkv_diag diag;      /* its message; index = vector within this work */
    size_t next;        /* first vector not yet handed to a batch */
    size_t outstanding; /* chunks in flight */
    uint64_t enq_ns;
    struct lkv_work *q_next;
} lkv_work;

/* One contiguous run of a work's vectors inside a batch. */
typedef struct lkv_seg {
    lkv_work *work;
    const uint8_t *src;
    uint8_t *dst;
    size_t first; /* index of the first vector within the work */
    size_t n;
    size_t src_len, dst_cap, dst_len; /* profile 2: as in lkv_work */
    lkv_status status;
    lkv_diag diag;
} lkv_seg;

/* One codec launch: segments that share op, params and dtype. */
typedef struct lkv_batch {
    lkv_event ev; /* first: handed to the pool, then back to the loop */
    lkv_op op;
    lkv_params params;
    lkv_dtype dtype;
    size_t nvec;
    uint64_t run_ns; /* set by whoever runs it: time in the codec (metrics) */
    size_t nseg;
    size_t cap;
    lkv_seg seg[];
} lkv_batch;

typedef struct lkv_batcher_cfg {
    size_t max_vectors;    /* vectors per batch (and chunk size); >= 1 */
    uint64_t max_wait_ns;  /* 0: batching off, every chunk runs alone */
    unsigned max_inflight; /* batches dispatched and not yet complete */
    size_t max_segments;   /* segments per batch */
} lkv_batcher_cfg;

typedef struct lkv_batcher lkv_batcher;
typedef void (*lkv_dispatch_fn)(lkv_batch *b, void *ud);

lkv_batcher *lkv_batcher_create(const lkv_batcher_cfg *cfg, lkv_dispatch_fn dispatch, void *ud);
void lkv_batcher_free(lkv_batcher *b);
/* Queues a work (n may be 0: it completes at the next poll). */
void lkv_batcher_submit(lkv_batcher *b, lkv_work *w, uint64_t now_ns);
/*
 * Dispatches every batch that is ready: its group has max_vectors pending,
 * its oldest work has waited max_wait_ns, or batching is off; never more
 * than max_inflight at once. Returns the ns until the next deadline
 * (UINT64_MAX: nothing is waiting on time).
 */
uint64_t lkv_batcher_poll(lkv_batcher *b, uint64_t now_ns);
/* A dispatched batch is back: records statuses, runs done() of works that
 * are complete, frees the batch. */
void lkv_batcher_complete(lkv_batcher *b, lkv_batch *batch);
/* Sets "dispatch everything now, no waiting" (shutdown). */
void lkv_batcher_flush_mode(lkv_batcher *b, int on);

typedef struct lkv_batcher_stats {
    uint64_t batches;
    uint64_t batched_vectors;
    uint64_t works;
    uint64_t pending_vectors;
    unsigned inflight;
} lkv_batcher_stats;
void lkv_batcher_get_stats(const lkv_batcher *b, lkv_batcher_stats *out);
/* Histograms (lkv_metrics.h) of completed batches: vectors per batch and
 * seconds in the codec (lkv_batch.run_ns). Valid while b lives. */
struct lkv_histogram;
const struct lkv_histogram *lkv_batcher_batch_vectors(const lkv_batcher *b);
const struct lkv_histogram *lkv_batcher_codec_seconds(const lkv_batcher *b);

/* Bytes of one vector on the source / destination side of a work (0 for
 * profile 2's side that has no fixed size). */
size_t lkv_work_src_stride(const lkv_work *w);
size_t lkv_work_dst_stride(const lkv_work *w);

#endif
