/* SPDX-License-Identifier: Apache-2.0 */
/*
 * batcher.c - dynamic batching of codec work.
 *
 * Design note. Requests that arrive close together are coalesced into one
 * codec launch: one batch is a list of segments (contiguous runs of one
 * request's vectors) that share op, parameters and dtype, so a backend can
 * run them in one pass (the CPU walks the segments; the GPU gathers them into
 * one kernel launch). The batcher is pure logic on the loop thread: no
 * threads, no clock of its own (callers pass now_ns), which is what lets the
 * unit tests drive it step by step.
 *
 * Policy. Pending works sit in one FIFO. A batch is formed for the group of
 * the oldest pending work when that group has max_vectors pending, when the
 * oldest work has waited max_wait_ns, when no batch is in flight (an idle
 * codec gains nothing from waiting, and work that arrived together is
 * already pending when the loop polls), or at once when batching is off
 * (max_wait_ns = 0: every chunk then runs alone). At most max_inflight
 * batches run at a time (one per worker), so while the workers are busy new
 * work accumulates and the next batch is larger: under load batching happens
 * with little or no waiting, and a lone client pays no wait at all.
 *
 * Splitting. A work larger than the room left in a batch contributes a chunk
 * and goes to the back of the FIFO with the rest, so one huge request is
 * served in max_vectors chunks interleaved with everyone else's work instead
 * of holding every worker, and no launch is larger than max_vectors (which
 * bounds device staging memory).
 */
#include <stdlib.h>
#include <string.h>

#include "lkv_batcher.h"
#include "lkv_metrics.h"

/* The buckets of the two histograms: vectors per launch, seconds per launch. */
static const double batch_vectors_bounds[] = {1,    4,     16,    64,     256,    1024,
                                              4096, 16384, 65536, 262144, 1048576};
static const double codec_seconds_bounds[] = {1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3,
                                              1e-2, 3e-2, 0.1,  0.3,  1,    3};
#define N_BOUNDS(a) (sizeof(a) / sizeof(a)[0])

struct lkv_batcher {
    lkv_batcher_cfg cfg;
    lkv_dispatch_fn dispatch;
    void *ud;
    lkv_work *head, *tail;
    lkv_work *done_head; /* n == 0 works, completed at the next poll */
    int flush;
    lkv_batcher_stats st;
    lkv_histogram batch_vectors, codec_seconds; /* of completed batches */
};

size_t lkv_work_src_stride(const lkv_work *w)
{
    return w->op == LKV_OP_ENCODE ? (size_t)w->params.dim * lkv_dtype_size(w->dtype)
                                  : lkv_record_bytes(&w->params);
}

size_t lkv_work_dst_stride(const lkv_work *w)
{
    return w->op == LKV_OP_ENCODE ? lkv_record_bytes(&w->params)
                                  : (size_t)w->params.dim * lkv_dtype_size(w->dtype);
}

lkv_batcher *lkv_batcher_create(const lkv_batcher_cfg *cfg, lkv_dispatch_fn dispatch, void *ud)
{
    lkv_batcher *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->cfg = *cfg;
    if (b->cfg.max_vectors == 0)
        b->cfg.max_vectors = 1;
    if (b->cfg.max_inflight == 0)
        b->cfg.max_inflight = 1;
    if (b->cfg.max_segments == 0)
        b->cfg.max_segments = 256;
    b->dispatch = dispatch;
    b->ud = ud;
    lkv_histogram_init(&b->batch_vectors, batch_vectors_bounds, N_BOUNDS(batch_vectors_bounds));
    lkv_histogram_init(&b->codec_seconds, codec_seconds_bounds, N_BOUNDS(codec_seconds_bounds));
    return b;
}

void lkv_batcher_free(lkv_batcher *b)
{
    free(b);
}

void lkv_batcher_flush_mode(lkv_batcher *b, int on)
{
    b->flush = on;
}

static int is_p2(const lkv_work *w)
{
    return lkv_profile_of(&w->params) == LKV_PROFILE_2;
}

static int same_group(const lkv_work *a, const lkv_work *b)
{
    return a->op == b->op && a->dtype == b->dtype && a->params.variant == b->params.variant &&
           a->params.q == b->params.q && a->params.dim == b->params.dim &&
           lkv_profile_of(&a->params) == lkv_profile_of(&b->params) &&
           (lkv_profile_of(&a->params) != LKV_PROFILE_2 ||
            lkv_p2_format_of(&a->params) == lkv_p2_format_of(&b->params));
}

static void fifo_push(lkv_batcher *b, lkv_work *w)
{
    w->q_next = NULL;
    if (b->tail)
        b->tail->q_next = w;
    else
        b->head = w;
    b->tail = w;
}

void lkv_batcher_submit(lkv_batcher *b, lkv_work *w, uint64_t now_ns)
{
    w->status = LKV_OK;
    w->dst_len = 0;
    w->diag = (lkv_diag){.code = LKV_OK, .index = UINT64_MAX};
    w->next = 0;
    w->outstanding = 0;
    w->enq_ns = now_ns;
    b->st.works++;
    if (w->n == 0) {
        w->q_next = b->done_head;
        b->done_head = w;
        return;
    }
    b->st.pending_vectors += w->n;
    fifo_push(b, w);
}

/* Pending vectors of the head's group (stops counting at max_vectors). */
static size_t group_pending(const lkv_batcher *b)
{
    size_t n = 0;
    for (const lkv_work *w = b->head; w && n < b->cfg.max_vectors; w = w->q_next)
        if (same_group(w, b->head))
            n += w->n - w->next;
    return n;
}

/* Takes up to `room` vectors of w into batch; returns how many. A profile
 * 2 work goes whole: its chunks have no fixed size to cut at. */
static size_t take(lkv_batch *bt, lkv_work *w, size_t room)
{
    size_t n = w->n - w->next;
    if (n > room && !is_p2(w))
        n = room;
    lkv_seg *s = &bt->seg[bt->nseg++];
    s->work = w;
    s->first = w->next;
    s->n = n;
    s->src = w->src + w->next * lkv_work_src_stride(w);
    s->dst = w->dst + w->next * lkv_work_dst_stride(w);
    s->src_len = w->src_len;
    s->dst_cap = w->dst_cap;
    s->dst_len = 0;
    s->status = LKV_OK;
    s->diag = (lkv_diag){.code = LKV_OK, .index = UINT64_MAX};
    w->next += n;
    w->outstanding++;
    bt->nvec += n;
    return n;
}

static lkv_batch *form_batch(lkv_batcher *b)
{
    const int alone = b->cfg.max_wait_ns == 0 && !b->flush;
    const size_t cap = alone ? 1 : b->cfg.max_segments;
    lkv_batch *bt = malloc(sizeof *bt + cap * sizeof bt->seg[0]);
    if (!bt)
        return NULL;
    memset(bt, 0, sizeof *bt);
    lkv_work *first = b->head;
    bt->ev.kind = LKV_EV_BATCH;
    bt->op = first->op;
    bt->params = first->params;
    bt->dtype = first->dtype;
    bt->cap = cap;

    /* Walk the FIFO once; partially taken works move to the back. */
    lkv_work *requeue = NULL, **rq_tail = &requeue;
    lkv_work **pp = &b->head, *prev = NULL;
    size_t room = b->cfg.max_vectors;
    while (*pp && room > 0 && bt->nseg < cap) {
        lkv_work *w = *pp;
        if (!same_group(w, first)) {
            prev = w;
            pp = &w->q_next;
            continue;
        }
        const size_t took = take(bt, w, room);
        room = is_p2(w) ? 0 : room - took; /* profile 2: one work per batch */
        *pp = w->q_next;                   /* unlink */
        if (b->tail == w)
            b->tail = prev;
        if (w->next < w->n) {
            w->q_next = NULL;
            *rq_tail = w;
            rq_tail = &w->q_next;
        }
    }
    for (lkv_work *w = requeue; w;) {
        lkv_work *next = w->q_next;
        fifo_push(b, w);
        w = next;
    }
    b->st.pending_vectors -= bt->nvec;
    return bt;
}

uint64_t lkv_batcher_poll(lkv_batcher *b, uint64_t now_ns)
{
    while (b->done_head) {
        lkv_work *w = b->done_head;
        b->done_head = w->q_next;
        w->done(w);
    }
    while (b->head && b->st.inflight < b->cfg.max_inflight) {
        const uint64_t age = now_ns > b->head->enq_ns ? now_ns - b->head->enq_ns : 0;
        /* With nothing in flight the codec is idle: waiting would only add
         * latency, and whatever arrived together is already pending here. */
        const int ready = b->flush || b->cfg.max_wait_ns == 0 || b->st.inflight == 0 ||
                          age >= b->cfg.max_wait_ns || group_pending(b) >= b->cfg.max_vectors;
        if (!ready)
            return b->cfg.max_wait_ns - age;
        lkv_batch *bt = form_batch(b);
        if (!bt)
            return 1000000; /* out of memory: try again in a millisecond */
        b->st.inflight++;
        b->st.batches++;
        b->st.batched_vectors += bt->nvec;
        b->dispatch(bt, b->ud);
    }
    return UINT64_MAX;
}

void lkv_batcher_complete(lkv_batcher *b, lkv_batch *bt)
{
    b->st.inflight--;
    lkv_histogram_observe(&b->batch_vectors, (double)bt->nvec);
    lkv_histogram_observe(&b->codec_seconds, (double)bt->run_ns * 1e-9);
    for (size_t i = 0; i < bt->nseg; i++) {
        lkv_seg *s = &bt->seg[i];
        lkv_work *w = s->work;
        if (s->status != LKV_OK) {
            /* Keep the failure of the earliest vector, as a one-shot call would. */
            const uint64_t at = s->diag.index == UINT64_MAX ? s->first : s->first + s->diag.index;
            if (w->status == LKV_OK || at < w->diag.index) {
                w->status = s->status;
                w->diag = s->diag;
                w->diag.code = s->status;
                w->diag.index = at;
            }
        }
        w->dst_len += s->dst_len;
        if (--w->outstanding == 0 && w->next == w->n)
            w->done(w);
    }
    free(bt);
}

void lkv_batcher_get_stats(const lkv_batcher *b, lkv_batcher_stats *out)
{
    *out = b->st;
}

const lkv_histogram *lkv_batcher_batch_vectors(const lkv_batcher *b)
{
    return &b->batch_vectors;
}

const lkv_histogram *lkv_batcher_codec_seconds(const lkv_batcher *b)
{
    return &b->codec_seconds;
}
