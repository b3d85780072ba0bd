/*
 * main.c - latticekvd: start-up, the libuv loop, signals and shutdown.
 *
 * Design note. Start-up builds the modules in dependency order (config,
 * backend, store, batcher, worker pool, service, gRPC) and fails before
 * serving if any of them cannot start: a bad setting exits 2, a listener
 * that cannot be bound or a CUDA backend without a device exits 1. Health
 * turns SERVING only after all of that.
 *
 * The loop thread owns all state. Three kinds of wake-ups reach it: the
 * inbox (completions from the gRPC thread, finished batches from the
 * workers), the batch timer (a timerfd watched with uv_poll, because libuv
 * timers have millisecond resolution and --batch-max-wait-us is in
 * microseconds) and signals. After every inbox drain the batcher is polled,
 * so work that arrived together leaves together as one batch.
 *
 * Small batches on an idle CPU codec run inline. When the batcher launches a
 * batch of at most LKV_INLINE_MAX_VECTORS vectors and no other batch is in
 * flight (low load: one or a few clients), the CPU backend runs it right here
 * on the loop thread instead of waking a worker and being woken back: the
 * two hand-offs cost more than a 16-token block's codec work (measured 10-20%
 * more Put/Get throughput and ~40 us less daemon CPU per call at 1 client).
 * Under load batches are in flight and go to the workers as before, so the
 * loop is never held for more than one small batch (~90 us at 512 vectors).
 * The cuda backend does the same for batches of at most
 * --cuda-inline-vectors (default 256): at low load a GPU call's copies,
 * launch, synchronisation and hand-offs cost more than the C codec there,
 * while under load those batches still go to the GPU (H200 node: 16-token
 * blocks at 1 client 1.6x faster; see docs/gpu.md).
 *
 * Shutdown. The first SIGTERM/SIGINT starts phase 1: Health reports
 * NOT_SERVING, new calls are answered UNAVAILABLE, the batcher stops
 * waiting, in-flight calls finish, and then gRPC stops accepting;
 * --shutdown-grace-ms later anything still running is cancelled (a second
 * signal cancels at once). Phase 2 runs when no call
 * is left: the gRPC thread and the workers are joined, handles are closed
 * and the process exits 0.
 */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <uv.h>

#include "lkv_server.h"

extern char **environ; /* unistd.h declares it only under _GNU_SOURCE */

typedef struct daemon_state {
    lkv_config cfg;
    uv_loop_t *loop;
    lkv_backend *backend;
    lkv_store *store;
    lkv_batcher *batcher;
    lkv_pool *pool;
    lkv_inbox *inbox;
    lkv_service *svc;
    lkv_rpc *rpc;
    int timer_fd;
    uv_poll_t timer_poll;
    uv_timer_t grace;
    uv_timer_t tick; /* phase 1: re-checks shutdown progress while nothing happens */
    uv_signal_t sigterm, sigint;
    int phase;                             /* 0 serving, 1 draining, 2 stopped */
    size_t inline_max;                     /* see the design note; 0 = never */
    uint64_t inline_batches;               /* batches run inline so far */
    lkv_event *inline_done, **inline_tail; /* batches run inline, to complete */
    uint64_t stop_ns;
} daemon_state;

static const char *getenv_real(const char *name, void *ud)
{
    (void)ud;
    return getenv(name);
}

static void warn_env(const char *msg, void *ud)
{
    (void)ud;
    char q[LKV_LOG_QUOTE_MAX];
    lkv_log(LKV_LOG_WARN, "unknown_env", "msg=%s", lkv_log_quote_str(q, sizeof q, msg));
}

/* Arms the batch timer for `ns` from now (UINT64_MAX: disarm). */
static void arm_timer(daemon_state *d, uint64_t ns)
{
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    if (ns != UINT64_MAX) {
        if (ns == 0)
            ns = 1;
        its.it_value.tv_sec = (time_t)(ns / 1000000000u);
        its.it_value.tv_nsec = (long)(ns % 1000000000u);
    }
    timerfd_settime(d->timer_fd, 0, &its, NULL);
}

static void poll_batcher(daemon_state *d)
{
    for (;;) {
        const uint64_t next = lkv_batcher_poll(d->batcher, lkv_now_ns());
        if (!d->inline_done) {
            arm_timer(d, next);
            return;
        }
        /* Batches that ran inline complete now (outside the batcher's poll);
         * that frees their slots, so poll again. */
        lkv_event *ev = d->inline_done;
        d->inline_done = NULL;
        d->inline_tail = &d->inline_done;
        while (ev) {
            lkv_event *next_ev = ev->next;
            lkv_batcher_complete(d->batcher, (lkv_batch *)ev);
            ev = next_ev;
        }
    }
}

static void stop_now(daemon_state *d);

static void after_events(void *ud)
{
    daemon_state *d = ud;
    if (d->phase == 2)
        return;
    poll_batcher(d);
    if (d->rpc)
        lkv_rpc_flush(d->rpc); /* the replies of the work that just completed */
    if (d->phase == 1) {
        lkv_rpc_shutdown_progress(d->rpc, lkv_now_ns());
        if (lkv_rpc_drained(d->rpc))
            stop_now(d);
    }
}

static void on_event(lkv_event *ev, void *ud)
{
    daemon_state *d = ud;
    if (ev->kind == LKV_EV_BATCH)
        lkv_batcher_complete(d->batcher, (lkv_batch *)ev);
    else if (d->rpc)
        lkv_rpc_on_event(d->rpc, ev);
}

static void on_timer(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    daemon_state *d = h->data;
    uint64_t expirations;
    ssize_t n = read(d->timer_fd, &expirations, sizeof expirations);
    (void)n;
    after_events(d);
}

static void dispatch_batch(lkv_batch *b, void *ud)
{
    daemon_state *d = ud;
    lkv_batcher_stats bs;
    lkv_batcher_get_stats(d->batcher, &bs);
    if (b->nvec <= d->inline_max && bs.inflight == 1) { /* this batch is the only one */
        d->inline_batches++;
        lkv_backend_run_cpu(b);
        b->ev.next = NULL;
        *d->inline_tail = &b->ev;
        d->inline_tail = &b->ev.next;
        return;
    }
    lkv_pool_push(d->pool, &b->ev);
}

static void worker_run(lkv_event *ev, unsigned worker, void *ud)
{
    daemon_state *d = ud;
    lkv_batch *b = (lkv_batch *)ev;
    lkv_backend_run(d->backend, worker, b);
    lkv_inbox_push(d->inbox, &b->ev);
}

static void on_grace(uv_timer_t *t)
{
    daemon_state *d = t->data;
    lkv_log(LKV_LOG_WARN, "shutdown_grace_over", "action=cancel_calls");
    lkv_rpc_cancel_all(d->rpc);
}

static void on_tick(uv_timer_t *t)
{
    after_events(t->data);
}

static void on_signal(uv_signal_t *h, int signum)
{
    daemon_state *d = h->data;
    if (d->phase == 0) {
        d->phase = 1;
        d->stop_ns = lkv_now_ns();
        lkv_log(LKV_LOG_INFO, "shutdown_begin", "signal=%s grace_ms=%llu",
                signum == SIGTERM ? "SIGTERM" : "SIGINT",
                (unsigned long long)d->cfg.shutdown_grace_ms);
        lkv_service_set_shutting_down(d->svc);
        lkv_batcher_flush_mode(d->batcher, 1);
        lkv_rpc_shutdown_begin(d->rpc);
        uv_timer_start(&d->grace, on_grace, d->cfg.shutdown_grace_ms, 0);
        uv_timer_start(&d->tick, on_tick, 20, 20);
        after_events(d);
    } else if (d->phase == 1) {
        lkv_log(LKV_LOG_WARN, "shutdown_forced", "signal=%s action=cancel_calls",
                signum == SIGTERM ? "SIGTERM" : "SIGINT");
        lkv_rpc_cancel_all(d->rpc);
    }
}

static void stop_now(daemon_state *d)
{
    d->phase = 2;
    lkv_rpc_free(d->rpc);
    d->rpc = NULL;
    lkv_pool_free(d->pool);
    d->pool = NULL;
    uv_timer_stop(&d->grace);
    uv_close((uv_handle_t *)&d->grace, NULL);
    uv_timer_stop(&d->tick);
    uv_close((uv_handle_t *)&d->tick, NULL);
    uv_poll_stop(&d->timer_poll);
    uv_close((uv_handle_t *)&d->timer_poll, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    lkv_inbox_close(d->inbox);
    d->inbox = NULL;
}

static unsigned cpu_count(void)
{
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1u;
}

static lkv_status make_backend(daemon_state *d, unsigned workers, lkv_diag *diag)
{
    switch ((lkv_backend_kind)d->cfg.backend) {
    case LKV_BACKEND_CPU: return lkv_backend_cpu_create(workers, &d->backend, diag);
    case LKV_BACKEND_CUDA: return lkv_backend_cuda_create(workers, &d->backend, diag);
    case LKV_BACKEND_AUTO:
        if (lkv_backend_cuda_devices() > 0) {
            const lkv_status st = lkv_backend_cuda_create(workers, &d->backend, diag);
            if (st == LKV_OK)
                return st;
            char q[LKV_LOG_QUOTE_MAX];
            lkv_log(LKV_LOG_WARN, "cuda_unusable", "reason=%s fallback=cpu",
                    lkv_log_quote_str(q, sizeof q, diag->msg));
        }
        return lkv_backend_cpu_create(workers, &d->backend, diag);
    }
    return LKV_ERR_INTERNAL;
}

int main(int argc, char **argv)
{
    /* Large messages are malloc'd and freed per call; keeping them off mmap
     * roughly doubles large-message throughput (toolchain notes). Setting the
     * mmap threshold also freezes the trim threshold at 128 KiB, so freed
     * buffers at the top of the heap went back to the kernel and came back as
     * page faults on every call: keep up to 256 MiB of free heap instead. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    signal(SIGPIPE, SIG_IGN);

    static daemon_state d;
    lkv_config_action action;
    char err[512];
    if (lkv_config_load(&d.cfg, argc, argv, getenv_real, NULL, &action, err, sizeof err) !=
        LKV_OK) {
        fprintf(stderr, "latticekvd: %s\n", err);
        return 2;
    }
    if (action == LKV_CONFIG_HELP) {
        lkv_config_help(stdout);
        return 0;
    }
    if (action == LKV_CONFIG_VERSION) {
        printf("latticekvd %s\n", LKV_VERSION);
        return 0;
    }
    lkv_log_set_level((lkv_log_level)d.cfg.log_level);
    lkv_log_set_format((lkv_log_format)d.cfg.log_format);
    lkv_config_check_env(environ, warn_env, NULL);
    if (d.cfg.reflection && !lkv_reflection_available()) {
        lkv_log(LKV_LOG_ERROR, "startup_failed",
                "reason=\"--reflection on: this build has no server reflection (protoc was not "
                "found when it was built)\"");
        return 1;
    }

    const unsigned threads = d.cfg.threads ? (unsigned)d.cfg.threads : cpu_count();
    lkv_diag diag = {.code = LKV_OK, .index = UINT64_MAX, .msg = ""};
    if (make_backend(&d, threads, &diag) != LKV_OK) {
        char q[LKV_LOG_QUOTE_MAX];
        lkv_log(LKV_LOG_ERROR, "startup_failed", "reason=%s",
                lkv_log_quote_str(q, sizeof q, diag.msg));
        return 1;
    }
    d.store = lkv_store_create(d.cfg.host_mem_bytes);
    const lkv_batcher_cfg bcfg = {.max_vectors = (size_t)d.cfg.batch_max_vectors,
                                  .max_wait_ns = d.cfg.batch_max_wait_us * 1000u,
                                  .max_inflight = threads,
                                  .max_segments = 256};
    d.batcher = lkv_batcher_create(&bcfg, dispatch_batch, &d);
    d.inline_tail = &d.inline_done;
    d.inline_max = lkv_inline_max_vectors(&d.cfg, d.backend->name);
    d.loop = uv_default_loop();
    d.inbox = lkv_inbox_create(d.loop, on_event, after_events, &d);
    d.pool = lkv_pool_create(threads, worker_run, &d);
    d.svc = lkv_service_create(&d.cfg, d.store, d.batcher, d.backend->name, lkv_rpc_reply);
    d.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (!d.store || !d.batcher || !d.inbox || !d.pool || !d.svc || d.timer_fd < 0) {
        lkv_log(LKV_LOG_ERROR, "startup_failed", "reason=\"out of memory or threads\"");
        return 1;
    }
    uv_poll_init(d.loop, &d.timer_poll, d.timer_fd);
    d.timer_poll.data = &d;
    uv_poll_start(&d.timer_poll, UV_READABLE, on_timer);
    uv_timer_init(d.loop, &d.grace);
    d.grace.data = &d;
    uv_timer_init(d.loop, &d.tick);
    d.tick.data = &d;
    uv_signal_init(d.loop, &d.sigterm);
    uv_signal_init(d.loop, &d.sigint);
    d.sigterm.data = d.sigint.data = &d;
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_signal_start(&d.sigint, on_signal, SIGINT);

    if (lkv_rpc_create(&d.cfg, d.svc, d.inbox, &d.rpc, &diag) != LKV_OK) {
        char q[LKV_LOG_QUOTE_MAX];
        lkv_log(LKV_LOG_ERROR, "startup_failed", "reason=%s",
                lkv_log_quote_str(q, sizeof q, diag.msg));
        return 1;
    }
    lkv_service_set_ready(d.svc, 1);
    lkv_log(LKV_LOG_INFO, "ready",
            "version=%s backend=%s threads=%u isa=%s host_mem_bytes=%llu max_message_bytes=%llu "
            "batch_max_vectors=%llu batch_max_wait_us=%llu inline_max_vectors=%zu",
            LKV_VERSION, d.backend->name, threads, lkv_isa_name(lkv_isa_best()),
            (unsigned long long)d.cfg.host_mem_bytes, (unsigned long long)d.cfg.max_message_bytes,
            (unsigned long long)d.cfg.batch_max_vectors,
            (unsigned long long)d.cfg.batch_max_wait_us, d.inline_max);

    uv_run(d.loop, UV_RUN_DEFAULT);

    lkv_stats st;
    lkv_service_get_stats(d.svc, &st);
    char stats[1024];
    lkv_stats_render(&st, LKV_STATS_LOG, stats, sizeof stats);
    lkv_log(LKV_LOG_INFO, "stopped", "drain_ms=%llu %s inline_batches=%llu",
            (unsigned long long)((lkv_now_ns() - d.stop_ns) / 1000000u), stats,
            (unsigned long long)d.inline_batches);
    uv_loop_close(d.loop);
    close(d.timer_fd);
    lkv_service_free(d.svc);
    lkv_batcher_free(d.batcher);
    lkv_store_free(d.store);
    d.backend->free(d.backend);
    return 0;
}
