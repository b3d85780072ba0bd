/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_pool.c - the thread hand-offs: the worker pool runs every pushed job
 * exactly once (also those still queued at free), and the loop's inbox
 * delivers events from many producer threads, each producer's in order.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include "lkv_server.h"

#define WORKERS 3
#define JOBS    2000

typedef struct job {
    lkv_event ev;
    atomic_int runs;
} job;

static atomic_int per_worker[WORKERS];
static atomic_int bad_index;

static void run_job(lkv_event *ev, unsigned worker, void *ud)
{
    (void)ud;
    if (worker >= WORKERS)
        atomic_fetch_add(&bad_index, 1);
    else
        atomic_fetch_add(&per_worker[worker], 1);
    atomic_fetch_add(&((job *)ev)->runs, 1);
}

Test(pool, every_job_runs_once_even_if_queued_at_free)
{
    static job jobs[JOBS];
    lkv_pool *p = lkv_pool_create(WORKERS, run_job, NULL);
    cr_assert_not_null(p);
    for (int i = 0; i < JOBS; i++)
        lkv_pool_push(p, &jobs[i].ev);
    lkv_pool_free(p); /* drains, then joins */
    int total = 0;
    for (int w = 0; w < WORKERS; w++)
        total += atomic_load(&per_worker[w]);
    cr_assert_eq(total, JOBS);
    cr_assert_eq(atomic_load(&bad_index), 0);
    for (int i = 0; i < JOBS; i++)
        cr_assert_eq(atomic_load(&jobs[i].runs), 1, "job %d", i);
}

#define PRODUCERS    4
#define PER_PRODUCER 500

typedef struct msg {
    lkv_event ev;
    int producer;
    int seq;
} msg;

typedef struct inbox_test {
    lkv_inbox *in;
    msg msgs[PRODUCERS][PER_PRODUCER];
    int next[PRODUCERS];
    int received;
    int out_of_order;
    int idles;
} inbox_test;

static void on_msg(lkv_event *ev, void *ud)
{
    inbox_test *t = ud;
    msg *m = (msg *)ev;
    if (m->seq != t->next[m->producer])
        t->out_of_order++;
    t->next[m->producer] = m->seq + 1;
    if (++t->received == PRODUCERS * PER_PRODUCER)
        lkv_inbox_close(t->in);
}

static void on_idle(void *ud)
{
    ((inbox_test *)ud)->idles++;
}

typedef struct producer_arg {
    inbox_test *t;
    int id;
} producer_arg;

static void *produce(void *arg)
{
    producer_arg *a = arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        msg *m = &a->t->msgs[a->id][i];
        m->ev.kind = LKV_EV_BATCH;
        m->producer = a->id;
        m->seq = i;
        lkv_inbox_push(a->t->in, &m->ev);
    }
    return NULL;
}

Test(inbox, events_from_many_threads_arrive_once_and_in_order_per_producer)
{
    static inbox_test t;
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    t.in = lkv_inbox_create(&loop, on_msg, on_idle, &t);
    cr_assert_not_null(t.in);
    pthread_t th[PRODUCERS];
    producer_arg args[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        args[i] = (producer_arg){&t, i};
        pthread_create(&th[i], NULL, produce, &args[i]);
    }
    /* Runs until on_msg closes the inbox after the last event. */
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(t.received, PRODUCERS * PER_PRODUCER);
    cr_assert_eq(t.out_of_order, 0);
    cr_assert_geq(t.idles, 1, "the idle hook runs after each drain");
    cr_assert_eq(uv_loop_close(&loop), 0);
}
