/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pool.c - the codec worker threads and the loop thread's inbox.
 *
 * Design note. Two queues move work between threads, both intrusive lists of
 * lkv_event so nothing is allocated per hand-off:
 *
 *   inbox  many producers (the completion-queue thread, the workers) -> the
 *          loop thread. push appends under a mutex and calls uv_async_send,
 *          which libuv coalesces; the async callback swaps the whole list out
 *          under the lock and handles every event in order, then calls the
 *          idle hook (which lets the batcher dispatch what just arrived
 *          together, as one batch).
 *   pool   the loop thread -> N workers: a mutex + condition variable FIFO.
 *          Each worker knows its index, so a backend can keep per-worker
 *          state (one CUDA context and stream each) without locks.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <uv.h>

#include "lkv_pool.h"

uint64_t lkv_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct lkv_inbox {
    uv_async_t async;
    pthread_mutex_t mu;
    lkv_event *head, *tail;
    lkv_inbox_fn handle;
    void (*idle)(void *ud);
    void *ud;
};

/* Loop thread: handles what is queued, again until nothing is, then idle(). */
static void on_async(uv_async_t *a)
{
    lkv_inbox *in = a->data;
    for (;;) {
        pthread_mutex_lock(&in->mu);
        lkv_event *ev = in->head;
        in->head = in->tail = NULL;
        pthread_mutex_unlock(&in->mu);
        if (!ev)
            break;
        while (ev) {
            lkv_event *next = ev->next;
            in->handle(ev, in->ud);
            ev = next;
        }
    }
    if (in->idle)
        in->idle(in->ud);
}

lkv_inbox *lkv_inbox_create(void *uv_loop, lkv_inbox_fn handle, void (*idle)(void *ud), void *ud)
{
    lkv_inbox *in = calloc(1, sizeof *in);
    if (!in)
        return NULL;
    *in = (lkv_inbox){.handle = handle, .idle = idle, .ud = ud};
    pthread_mutex_init(&in->mu, NULL);
    if (uv_async_init((uv_loop_t *)uv_loop, &in->async, on_async) != 0) {
        pthread_mutex_destroy(&in->mu);
        free(in);
        return NULL;
    }
    in->async.data = in;
    return in;
}

void lkv_inbox_push(lkv_inbox *in, lkv_event *ev)
{
    ev->next = NULL;
    pthread_mutex_lock(&in->mu);
    const int was_empty = in->head == NULL;
    if (in->tail)
        in->tail->next = ev;
    else
        in->head = ev;
    in->tail = ev;
    pthread_mutex_unlock(&in->mu);
    /* A non-empty list already has a wake-up on its way. */
    if (was_empty)
        uv_async_send(&in->async);
}

static void on_inbox_closed(uv_handle_t *h)
{
    lkv_inbox *in = h->data;
    pthread_mutex_destroy(&in->mu);
    free(in);
}

void lkv_inbox_close(lkv_inbox *in)
{
    uv_close((uv_handle_t *)&in->async, on_inbox_closed);
}

struct lkv_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    lkv_event *head, *tail;
    int stopping;
    unsigned n;
    void (*run)(lkv_event *ev, unsigned worker, void *ud);
    void *ud;
    struct worker {
        struct lkv_pool *pool;
        unsigned index;
        pthread_t thread;
    } * workers;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    lkv_pool *p = w->pool;
    char name[16];
    snprintf(name, sizeof name, "lkv-worker-%u", w->index);
    pthread_setname_np(pthread_self(), name);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        lkv_event *ev = p->head;
        if (!ev)
            break; /* stopping and drained */
        p->head = ev->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        p->run(ev, w->index, p->ud);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

lkv_pool *lkv_pool_create(unsigned n, void (*run)(lkv_event *ev, unsigned worker, void *ud),
                          void *ud)
{
    lkv_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->workers = calloc(n, sizeof *p->workers);
    if (!p->workers) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->run = run;
    p->ud = ud;
    for (unsigned i = 0; i < n; i++) {
        p->workers[i].pool = p;
        p->workers[i].index = i;
        if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0)
            break;
        p->n++;
    }
    if (p->n == 0) {
        lkv_pool_free(p);
        return NULL;
    }
    return p;
}

void lkv_pool_push(lkv_pool *p, lkv_event *ev)
{
    ev->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = ev;
    else
        p->head = ev;
    p->tail = ev;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void lkv_pool_free(lkv_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->n; i++)
        pthread_join(p->workers[i].thread, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
}
