/* SPDX-License-Identifier: Apache-2.0 */
/* lkv_sched.h - where each codec batch runs: inline or on a worker (sched.c). */
#ifndef LKV_SCHED_H
#define LKV_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "lkv_backend.h"
#include "lkv_batcher.h"
#include "lkv_config.h"
#include "lkv_pool.h"

/*
 * The largest batch the loop thread codes itself, on the C codec, while no
 * other batch is in flight: LKV_INLINE_MAX_VECTORS for a cpu backend,
 * cfg->cuda_inline_vectors for a cuda one, 0 (never) for any other. Why and
 * what was measured: the design note of sched.c.
 */
#define LKV_INLINE_MAX_VECTORS 512
size_t lkv_sched_inline_max(const lkv_config *cfg, const lkv_backend *be);

/* The scheduler owns the batcher and the worker pool. Loop thread only. */
typedef struct lkv_sched lkv_sched;

typedef struct lkv_sched_stats {
    size_t inline_max;       /* lkv_sched_inline_max of this daemon */
    uint64_t inline_batches; /* batches run inline so far */
} lkv_sched_stats;

/* A batcher (cfg's batch limits, `threads` batches in flight) and `threads`
 * workers running be; finished batches come back through inbox as
 * LKV_EV_BATCH events. NULL when out of memory or threads. */
lkv_sched *lkv_sched_create(const lkv_config *cfg, lkv_backend *be, unsigned threads,
                            lkv_inbox *inbox);
/* The batcher that requests submit their work to. */
lkv_batcher *lkv_sched_batcher(lkv_sched *s);
/* Dispatches what is ready and completes batches that ran inline; returns
 * the ns until the next batching deadline (UINT64_MAX: none). */
uint64_t lkv_sched_poll(lkv_sched *s, uint64_t now_ns);
/* A batch came back from a worker (its LKV_EV_BATCH event). */
void lkv_sched_on_batch_done(lkv_sched *s, lkv_batch *b);
/* Runs what the workers have queued, then joins them (shutdown, phase 2). */
void lkv_sched_stop_workers(lkv_sched *s);
/* Stops the workers if still running and frees the batcher. */
void lkv_sched_free(lkv_sched *s);
void lkv_sched_get_stats(const lkv_sched *s, lkv_sched_stats *out);

#endif
