/* SPDX-License-Identifier: Apache-2.0 */
/*
 * budget.c - the in-flight byte budget (--max-inflight-bytes).
 *
 * Design note. rpc.c takes a received message's bytes when it copies the
 * message out of gRPC (a message that would pass the limit is refused there
 * with RESOURCE_EXHAUSTED, and gRPC's copy freed at once); service.c takes a
 * reply buffer's bytes when it allocates it (a big reply that would pass
 * the limit is refused the same way) and gives a request's bytes back when
 * the request is done or its buffer becomes a stored block (then the store
 * charges them). A reply's bytes come back when gRPC frees the sent slice,
 * on whichever thread that happens, so the counter is atomic. A lone
 * request is always admitted: nothing else in flight means nothing to wait
 * for, and a budget below one message then refuses nothing on an idle
 * daemon.
 */
#include <malloc.h>
#include <stdatomic.h>

#include "lkv_budget.h"
#include "lkv_log.h"

uint64_t lkv_inflight_budget(const lkv_config *cfg)
{
    if (cfg->max_inflight_bytes)
        return cfg->max_inflight_bytes;
    const uint64_t quarter = cfg->host_mem_bytes / 4;
    const uint64_t floor = 2 * cfg->max_message_bytes;
    return quarter > floor ? quarter : floor;
}

void lkv_budget_init(lkv_budget *b, uint64_t limit)
{
    atomic_init(&b->used, 0);
    b->limit = limit;
    atomic_init(&b->peak, 0);
    atomic_init(&b->refused, 0);
    atomic_init(&b->trims, 0);
    atomic_init(&b->since_trim, 0);
    atomic_init(&b->underflows, 0);
}

static void budget_note_peak(lkv_budget *b, uint64_t used, uint64_t n)
{
    atomic_fetch_add_explicit(&b->since_trim, n, memory_order_relaxed);
    uint64_t p = atomic_load_explicit(&b->peak, memory_order_relaxed);
    while (used > p && !atomic_compare_exchange_weak_explicit(
                           &b->peak, &p, used, memory_order_relaxed, memory_order_relaxed)) {
    }
}

int lkv_budget_try_take(lkv_budget *b, uint64_t n)
{
    if (!b)
        return 1;
    uint64_t cur = atomic_load_explicit(&b->used, memory_order_relaxed);
    do {
        if (cur != 0 && (n > b->limit || cur > b->limit - n)) {
            atomic_fetch_add_explicit(&b->refused, 1, memory_order_relaxed);
            return 0;
        }
    } while (!atomic_compare_exchange_weak_explicit(&b->used, &cur, cur + n, memory_order_relaxed,
                                                    memory_order_relaxed));
    budget_note_peak(b, cur + n, n);
    return 1;
}

void lkv_budget_take(lkv_budget *b, uint64_t n)
{
    if (b)
        budget_note_peak(b, atomic_fetch_add_explicit(&b->used, n, memory_order_relaxed) + n, n);
}

/*
 * Memory after a burst. main.c keeps messages up to 32 MiB on the heap and
 * up to 256 MiB of freed heap unreturned (mallopt), which is what makes
 * back-to-back calls fast; but after a burst of big requests that would
 * leave hundreds of MiB resident for good (gRPC's receive buffers, as big
 * as the messages, come from the same heap). So when the last byte in
 * flight comes back and at least LKV_TRIM_AFTER_BYTES have been taken since
 * the last trim, malloc_trim(0) returns every free heap page of every arena
 * to the kernel (it madvises free chunks inside the heap too, not only its
 * top). Small requests trim once per 64 MiB of traffic and only when the
 * daemon is momentarily idle; big ones (over the mmap threshold) were never
 * kept anyway. It runs on whichever thread gives the last bytes back.
 */
void lkv_budget_give(lkv_budget *b, uint64_t n)
{
    if (!b || n == 0)
        return;
    /* A give larger than what is in flight would wrap used to ~2^64 and
     * refuse every request from then on: used stops at 0 instead, and the
     * mismatch is counted and logged. */
    uint64_t before = atomic_load_explicit(&b->used, memory_order_relaxed);
    uint64_t after;
    do {
        after = before >= n ? before - n : 0;
    } while (!atomic_compare_exchange_weak_explicit(&b->used, &before, after, memory_order_acq_rel,
                                                    memory_order_relaxed));
    if (before < n) {
        atomic_fetch_add_explicit(&b->underflows, 1, memory_order_relaxed);
        lkv_log(LKV_LOG_ERROR, "budget_underflow", "give=%llu in_flight=%llu",
                (unsigned long long)n, (unsigned long long)before);
    }
    if (after != 0)
        return;
    if (atomic_load_explicit(&b->since_trim, memory_order_relaxed) < LKV_TRIM_AFTER_BYTES)
        return;
    atomic_store_explicit(&b->since_trim, 0, memory_order_relaxed);
    atomic_store_explicit(&b->peak, 0, memory_order_relaxed);
    malloc_trim(0);
    atomic_fetch_add_explicit(&b->trims, 1, memory_order_relaxed);
}
