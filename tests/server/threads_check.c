/* SPDX-License-Identifier: Apache-2.0 */
/*
 * threads_check.c - the daemon's cross-thread paths under load, as a plain
 * program so that it runs under ThreadSanitizer (Criterion's sandbox cannot
 * start in a TSan process: its arena is mapped at addresses TSan reserves).
 *
 * 1. The loop, the scheduler and 4 codec workers: 64 encode works of
 *    different sizes, submitted in waves while earlier batches are still on
 *    the workers, come back through the inbox; every record must equal the
 *    one-thread C codec's, and the batcher's counters and histograms (read
 *    on the loop thread, written from what the workers timed) must add up.
 * 2. The in-flight budget taken and given by 4 threads at once (rpc.c gives
 *    reply bytes back on the completion-queue thread): nothing left, no
 *    underflow.
 * Exit 0 when everything holds; any TSan report fails it (halt_on_error).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "lkv_server.h"

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "threads_check: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

enum { WORKS = 64, DIM = 128, WORKERS = 4 };

typedef struct ctx {
    lkv_sched *sched;
    int done;
} ctx;

static void on_done(lkv_work *w)
{
    ((ctx *)w->ud)->done++;
}

static void on_event(lkv_event *ev, void *ud)
{
    CHECK(ev->kind == LKV_EV_BATCH);
    lkv_sched_on_batch_done(((ctx *)ud)->sched, (lkv_batch *)ev);
}

static void on_idle(void *ud)
{
    lkv_sched_poll(((ctx *)ud)->sched, lkv_now_ns());
}

static const char *no_env(const char *name, void *ud)
{
    (void)name;
    (void)ud;
    return NULL;
}

static void check_sched(void)
{
    lkv_config cfg;
    char err[256];
    char *argv[] = {"latticekvd", "--batch-max-vectors", "700", NULL};
    lkv_config_action action;
    CHECK(lkv_config_load(&cfg, 3, argv, no_env, NULL, &action, err, sizeof err) == LKV_OK);
    lkv_backend *cpu = NULL;
    CHECK(lkv_backend_cpu_create(WORKERS, &cpu, NULL) == LKV_OK);
    uv_loop_t loop;
    CHECK(uv_loop_init(&loop) == 0);
    ctx c = {0};
    lkv_inbox *in = lkv_inbox_create(&loop, on_event, on_idle, &c);
    c.sched = lkv_sched_create(&cfg, cpu, WORKERS, in);
    CHECK(c.sched);

    const lkv_params p = {LKV_VARIANT_E8, 38, DIM};
    const size_t rb = lkv_record_bytes(&p);
    static lkv_work works[WORKS];
    float *src[WORKS];
    uint8_t *dst[WORKS];
    size_t total = 0;
    unsigned seed = 12345;
    for (int i = 0; i < WORKS; i++) {
        const size_t n = 1 + (size_t)(i * 97) % 1500;
        src[i] = malloc(n * DIM * sizeof(float));
        dst[i] = calloc(n, rb);
        CHECK(src[i] && dst[i]);
        for (size_t k = 0; k < n * DIM; k++)
            src[i][k] = (float)((int)(rand_r(&seed) % 2001) - 1000) / 250.0f;
        works[i] = (lkv_work){.op = LKV_OP_ENCODE,
                              .params = p,
                              .dtype = LKV_DTYPE_FP32,
                              .src = (const uint8_t *)src[i],
                              .dst = dst[i],
                              .n = n,
                              .done = on_done,
                              .ud = &c};
        total += n;
    }
    /* Waves of 8: each submitted while the previous ones are still running. */
    for (int i = 0; i < WORKS; i++) {
        lkv_batcher_submit(lkv_sched_batcher(c.sched), &works[i], lkv_now_ns());
        if (i % 8 == 7) {
            lkv_sched_poll(c.sched, lkv_now_ns());
            uv_run(&loop, UV_RUN_NOWAIT);
        }
    }
    lkv_sched_poll(c.sched, lkv_now_ns());
    while (c.done < WORKS)
        uv_run(&loop, UV_RUN_ONCE);

    for (int i = 0; i < WORKS; i++) {
        CHECK(works[i].status == LKV_OK);
        uint8_t *want = calloc(works[i].n, rb);
        CHECK(lkv_encode(&p, LKV_DTYPE_FP32, src[i], works[i].n, want, LKV_ISA_AUTO, NULL) ==
              LKV_OK);
        CHECK(memcmp(want, dst[i], works[i].n * rb) == 0);
        free(want);
        free(src[i]);
        free(dst[i]);
    }
    lkv_batcher_stats bs;
    lkv_batcher_get_stats(lkv_sched_batcher(c.sched), &bs);
    const lkv_histogram *hv = lkv_batcher_batch_vectors(lkv_sched_batcher(c.sched));
    const lkv_histogram *hs = lkv_batcher_codec_seconds(lkv_sched_batcher(c.sched));
    CHECK(bs.batched_vectors == total);
    CHECK(hv->count == bs.batches && hs->count == bs.batches);
    CHECK((size_t)hv->sum == total);
    CHECK(hs->sum > 0);
    CHECK(bs.inflight == 0 && bs.pending_vectors == 0);
    printf("sched: %d works, %zu vectors, %llu batches on %d workers, all byte-identical\n", WORKS,
           total, (unsigned long long)bs.batches, WORKERS);

    lkv_sched_stop_workers(c.sched);
    lkv_inbox_close(in);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
    lkv_sched_free(c.sched);
    cpu->free(cpu);
}

static lkv_budget budget;

static void *budget_thread(void *arg)
{
    const uint64_t n = *(const uint64_t *)arg;
    for (int i = 0; i < 20000; i++) {
        if (lkv_budget_try_take(&budget, n)) {
            lkv_budget_give(&budget, n);
        }
        lkv_budget_take(&budget, n + 1);
        lkv_budget_give(&budget, n + 1);
    }
    return NULL;
}

static void check_budget(void)
{
    lkv_budget_init(&budget, 1000);
    pthread_t t[4];
    static uint64_t sizes[4] = {100, 200, 300, 400};
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, budget_thread, &sizes[i]) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK(atomic_load(&budget.used) == 0);
    CHECK(atomic_load(&budget.underflows) == 0);
    printf("budget: 4 threads x 40000 charges, left=0 underflows=0 refused=%llu\n",
           (unsigned long long)atomic_load(&budget.refused));
}

int main(void)
{
    check_sched();
    check_budget();
    printf("threads_check: ok\n");
    return 0;
}
