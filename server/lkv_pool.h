/* SPDX-License-Identifier: Apache-2.0 */
/* lkv_pool.h - events into the loop, the loop's inbox and clock, codec workers (pool.c). */
#ifndef LKV_POOL_H
#define LKV_POOL_H

#include <stdint.h>

typedef enum lkv_event_kind { LKV_EV_GRPC = 1, LKV_EV_BATCH = 2 } lkv_event_kind;

/* Intrusive node; embedded in whatever is handed to the loop thread. */
typedef struct lkv_event {
    struct lkv_event *next;
    lkv_event_kind kind;
} lkv_event;

typedef struct lkv_inbox lkv_inbox;
typedef void (*lkv_inbox_fn)(lkv_event *ev, void *ud);
/* Drains call handle(ev) for each event in push order, then idle(ud). */
lkv_inbox *lkv_inbox_create(void *uv_loop, lkv_inbox_fn handle, void (*idle)(void *ud), void *ud);
/* Any thread. Wakes the loop. */
void lkv_inbox_push(lkv_inbox *in, lkv_event *ev);
/* Loop thread: closes the uv handle; free happens in the close callback. */
void lkv_inbox_close(lkv_inbox *in);

typedef struct lkv_pool lkv_pool;
/* n threads, each calling run(ev, worker_index, ud) on the events pushed. */
lkv_pool *lkv_pool_create(unsigned n, void (*run)(lkv_event *ev, unsigned worker, void *ud),
                          void *ud);
void lkv_pool_push(lkv_pool *p, lkv_event *ev);
/* Runs what is queued, then joins the threads. */
void lkv_pool_free(lkv_pool *p);

/* Monotonic nanoseconds: the clock of the loop, the batcher and shutdown. */
uint64_t lkv_now_ns(void);

#endif
