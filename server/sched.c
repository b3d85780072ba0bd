/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sched.c - where each codec batch runs: on the loop thread or a worker.
 *
 * Design note. The batcher decides what goes together; the scheduler decides
 * where it runs. Small batches on an idle codec run inline: when the batcher
 * launches a batch of at most lkv_sched_inline_max vectors and no other
 * batch is in flight (low load: one or a few clients), the loop thread codes
 * it right here on the C codec instead of waking a worker and being woken
 * back: the two hand-offs cost more than a 16-token block's codec work
 * (measured 10-20% more Put/Get throughput and ~40 us less daemon CPU per
 * call at 1 client). Under load batches are in flight and go to the workers
 * as before, so the loop is never held for more than one small batch (~90
 * us at 512 vectors). The cuda backend does the same for batches of at most
 * --cuda-inline-vectors (default 256): one GPU call alone beats the C codec
 * from ~256 vectors (bench/gpu/ctx_crossover), but at low load its copies,
 * launch, synchronisation and hand-offs cost more than the C codec there,
 * while under load those batches still go to the GPU (H200 node: 16-token
 * blocks at 1 client 1.6x faster; see docs/gpu.md). Larger settings hold
 * the loop thread longer (~0.8 ms at 4096). The rule keys off the backend's
 * kind, not its name.
 *
 * A batch run inline completes at the next lkv_sched_poll, outside the
 * batcher's own poll (which is still on the stack when it dispatches).
 */
#include <stdlib.h>

#include "lkv_sched.h"

struct lkv_sched {
    lkv_backend *backend;
    lkv_inbox *inbox;
    lkv_batcher *batcher;
    lkv_pool *pool;
    size_t inline_max;
    uint64_t inline_batches;
    lkv_event *inline_done, **inline_tail; /* batches run inline, to complete */
};

size_t lkv_sched_inline_max(const lkv_config *cfg, const lkv_backend *be)
{
    switch (be->kind) {
    case LKV_BACKEND_CPU: return LKV_INLINE_MAX_VECTORS;
    case LKV_BACKEND_CUDA: return (size_t)cfg->cuda_inline_vectors;
    case LKV_BACKEND_AUTO: break;
    }
    return 0;
}

static void dispatch_batch(lkv_batch *b, void *ud)
{
    lkv_sched *s = ud;
    lkv_batcher_stats bs;
    lkv_batcher_get_stats(s->batcher, &bs);
    if (b->nvec <= s->inline_max && bs.inflight == 1) { /* this batch is the only one */
        s->inline_batches++;
        const uint64_t t0 = lkv_now_ns();
        lkv_backend_run_cpu(b);
        b->run_ns = lkv_now_ns() - t0;
        b->ev.next = NULL;
        *s->inline_tail = &b->ev;
        s->inline_tail = &b->ev.next;
        return;
    }
    lkv_pool_push(s->pool, &b->ev);
}

static void worker_run(lkv_event *ev, unsigned worker, void *ud)
{
    lkv_sched *s = ud;
    lkv_batch *b = (lkv_batch *)ev;
    const uint64_t t0 = lkv_now_ns();
    lkv_backend_run(s->backend, worker, b);
    b->run_ns = lkv_now_ns() - t0;
    lkv_inbox_push(s->inbox, &b->ev);
}

lkv_sched *lkv_sched_create(const lkv_config *cfg, lkv_backend *be, unsigned threads,
                            lkv_inbox *inbox)
{
    lkv_sched *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->backend = be;
    s->inbox = inbox;
    s->inline_max = lkv_sched_inline_max(cfg, be);
    s->inline_tail = &s->inline_done;
    const lkv_batcher_cfg bcfg = {.max_vectors = (size_t)cfg->batch_max_vectors,
                                  .max_wait_ns = cfg->batch_max_wait_us * 1000u,
                                  .max_inflight = threads,
                                  .max_segments = 256};
    s->batcher = lkv_batcher_create(&bcfg, dispatch_batch, s);
    s->pool = s->batcher ? lkv_pool_create(threads, worker_run, s) : NULL;
    if (!s->pool) {
        lkv_sched_free(s);
        return NULL;
    }
    return s;
}

lkv_batcher *lkv_sched_batcher(lkv_sched *s)
{
    return s->batcher;
}

uint64_t lkv_sched_poll(lkv_sched *s, uint64_t now_ns)
{
    for (;;) {
        const uint64_t next = lkv_batcher_poll(s->batcher, now_ns);
        if (!s->inline_done)
            return next;
        /* Completing the inline batches frees their slots: poll again. */
        lkv_event *ev = s->inline_done;
        s->inline_done = NULL;
        s->inline_tail = &s->inline_done;
        while (ev) {
            lkv_event *next_ev = ev->next;
            lkv_batcher_complete(s->batcher, (lkv_batch *)ev);
            ev = next_ev;
        }
    }
}

void lkv_sched_on_batch_done(lkv_sched *s, lkv_batch *b)
{
    lkv_batcher_complete(s->batcher, b);
}

void lkv_sched_stop_workers(lkv_sched *s)
{
    lkv_pool_free(s->pool);
    s->pool = NULL;
}

void lkv_sched_free(lkv_sched *s)
{
    if (!s)
        return;
    lkv_pool_free(s->pool);
    lkv_batcher_free(s->batcher);
    free(s);
}

void lkv_sched_get_stats(const lkv_sched *s, lkv_sched_stats *out)
{
    out->inline_max = s->inline_max;
    out->inline_batches = s->inline_batches;
}
