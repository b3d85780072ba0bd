/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_sched.c - where batches run: the inline rule per backend kind, and a
 * small batch on an idle daemon coded on the loop thread while a large one
 * goes to a worker and comes back through the inbox.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <uv.h>

#include "lkv_server.h"

static const char *no_env(const char *name, void *ud)
{
    (void)name;
    (void)ud;
    return NULL;
}

static lkv_status load(lkv_config *cfg, char *err, int argc, char **args)
{
    char *argv[8] = {"latticekvd"};
    for (int i = 1; i < argc; i++)
        argv[i] = args[i - 1];
    lkv_config_action action;
    return lkv_config_load(cfg, argc, argv, no_env, NULL, &action, err, 256);
}

Test(sched, inline_batch_limit_per_backend)
{
    lkv_config c;
    char err[256] = "";
    lkv_backend *cpu = NULL;
    cr_assert_eq(lkv_backend_cpu_create(1, &cpu, NULL), LKV_OK);
    const lkv_backend cuda = {.name = "cuda", .kind = LKV_BACKEND_CUDA};
    cr_assert_eq(load(&c, err, 1, NULL), LKV_OK, "%s", err);
    cr_assert_eq(lkv_sched_inline_max(&c, cpu), LKV_INLINE_MAX_VECTORS);
    cr_assert_eq(lkv_sched_inline_max(&c, &cuda), 256);
    cr_assert_eq(load(&c, err, 3, (char *[]){"--cuda-inline-vectors", "1024"}), LKV_OK, "%s", err);
    cr_assert_eq(lkv_sched_inline_max(&c, &cuda), 1024);
    cr_assert_eq(lkv_sched_inline_max(&c, cpu), LKV_INLINE_MAX_VECTORS,
                 "the setting is the cuda backend's only");
    cr_assert_eq(load(&c, err, 3, (char *[]){"--cuda-inline-vectors", "0"}), LKV_OK, "%s", err);
    cr_assert_eq(lkv_sched_inline_max(&c, &cuda), 0, "0: every batch goes to the GPU");
    /* The rule follows the vtable's kind, not the name. */
    const lkv_backend renamed = {.name = "cpu", .kind = LKV_BACKEND_CUDA};
    cr_assert_eq(lkv_sched_inline_max(&c, &renamed), 0);
    const lkv_backend unknown = {.name = "cuda", .kind = LKV_BACKEND_AUTO};
    cr_assert_eq(lkv_sched_inline_max(&c, &unknown), 0, "an unknown kind never runs inline");
    cpu->free(cpu);
}

typedef struct loop_ctx {
    lkv_sched *sched;
    int done;
} loop_ctx;

static void on_done(lkv_work *w)
{
    ((loop_ctx *)w->ud)->done++;
}

static void on_event(lkv_event *ev, void *ud)
{
    cr_assert_eq(ev->kind, LKV_EV_BATCH);
    lkv_sched_on_batch_done(((loop_ctx *)ud)->sched, (lkv_batch *)ev);
}

static void on_idle(void *ud)
{
    lkv_sched_poll(((loop_ctx *)ud)->sched, lkv_now_ns());
}

/* Encode work of n zero bf16 vectors of dim 128 (E8, Q=38). */
static void make_work(lkv_work *w, size_t n, uint8_t *src, uint8_t *dst, loop_ctx *ctx)
{
    memset(w, 0, sizeof *w);
    w->op = LKV_OP_ENCODE;
    w->params = (lkv_params){LKV_VARIANT_E8, 38, 128};
    w->dtype = LKV_DTYPE_BF16;
    w->src = src;
    w->dst = dst;
    w->n = n;
    w->done = on_done;
    w->ud = ctx;
}

Test(sched, small_batch_on_an_idle_daemon_runs_inline_large_one_on_a_worker)
{
    lkv_config c;
    char err[256] = "";
    cr_assert_eq(load(&c, err, 3, (char *[]){"--batch-max-wait-us", "0"}), LKV_OK, "%s", err);
    lkv_backend *cpu = NULL;
    cr_assert_eq(lkv_backend_cpu_create(1, &cpu, NULL), LKV_OK);
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    loop_ctx ctx = {0};
    lkv_inbox *in = lkv_inbox_create(&loop, on_event, on_idle, &ctx);
    ctx.sched = lkv_sched_create(&c, cpu, 1, in);
    cr_assert_not_null(ctx.sched);
    enum { BIG = LKV_INLINE_MAX_VECTORS + 1 };
    static uint8_t src[BIG * 256], dst[BIG * 256]; /* bf16 dim 128: 256 bytes in, fewer out */
    lkv_work small, large;
    make_work(&small, 16, src, dst, &ctx);
    lkv_batcher_submit(lkv_sched_batcher(ctx.sched), &small, lkv_now_ns());
    cr_assert_eq(lkv_sched_poll(ctx.sched, lkv_now_ns()), UINT64_MAX);
    cr_assert_eq(ctx.done, 1, "coded and completed within the poll, no worker involved");
    cr_assert_eq(small.status, LKV_OK);
    lkv_sched_stats st;
    lkv_sched_get_stats(ctx.sched, &st);
    cr_assert_eq(st.inline_batches, 1);
    cr_assert_eq(st.inline_max, LKV_INLINE_MAX_VECTORS);

    make_work(&large, BIG, src, dst, &ctx);
    lkv_batcher_submit(lkv_sched_batcher(ctx.sched), &large, lkv_now_ns());
    lkv_sched_poll(ctx.sched, lkv_now_ns());
    cr_assert_eq(ctx.done, 1, "handed to a worker: completes only through the inbox");
    while (ctx.done < 2)
        uv_run(&loop, UV_RUN_ONCE); /* the worker's batch comes back through the inbox */
    cr_assert_eq(large.status, LKV_OK);
    lkv_sched_get_stats(ctx.sched, &st);
    cr_assert_eq(st.inline_batches, 1, "a batch over the limit is not run inline");

    lkv_sched_stop_workers(ctx.sched);
    lkv_inbox_close(in);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
    lkv_sched_free(ctx.sched);
    cpu->free(cpu);
}
