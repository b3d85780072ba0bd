/* SPDX-License-Identifier: Apache-2.0 */
/*
 * main.c - latticekvd: start-up, the libuv loop, signals and shutdown.
 *
 * Design note. Start-up builds the modules in dependency order (config,
 * backend, store, scheduler with its batcher and workers, service, gRPC) and fails before
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
 * Where each batch runs, on this thread or a worker, is sched.c's to say.
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

#include "lkv_log.h"
#include "lkv_reflection.h"
#include "lkv_rpc.h"
#include "lkv_sched.h"

extern char **environ; /* unistd.h declares it only under _GNU_SOURCE */

typedef struct daemon_state {
    lkv_config cfg;
    uv_loop_t *loop;
    lkv_backend *backend;
    lkv_store *store;
    lkv_sched *sched;
    lkv_inbox *inbox;
    lkv_service *svc;
    lkv_rpc *rpc;
    int timer_fd;
    uv_poll_t timer_poll;
    uv_timer_t grace;
    uv_timer_t tick; /* phase 1: re-checks shutdown progress while nothing happens */
    uv_signal_t sigterm, sigint;
    int phase; /* 0 serving, 1 draining, 2 stopped */
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

static void stop_now(daemon_state *d);

static void after_events(void *ud)
{
    daemon_state *d = ud;
    if (d->phase == 2)
        return;
    arm_timer(d, lkv_sched_poll(d->sched, lkv_now_ns()));
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
        lkv_sched_on_batch_done(d->sched, (lkv_batch *)ev);
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
        lkv_batcher_flush_mode(lkv_sched_batcher(d->sched), 1);
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
    lkv_sched_stop_workers(d->sched);
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
        printf("latticekvd %s\n", lkv_version_string());
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
    d.loop = uv_default_loop();
    d.inbox = lkv_inbox_create(d.loop, on_event, after_events, &d);
    d.sched = d.inbox ? lkv_sched_create(&d.cfg, d.backend, threads, d.inbox) : NULL;
    d.svc = d.sched ? lkv_service_create(&d.cfg, d.store, lkv_sched_batcher(d.sched),
                                         d.backend->name, lkv_rpc_reply)
                    : NULL;
    d.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (!d.store || !d.svc || d.timer_fd < 0) {
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
    lkv_sched_stats ss;
    lkv_sched_get_stats(d.sched, &ss);
    lkv_log(LKV_LOG_INFO, "ready",
            "version=%s backend=%s threads=%u isa=%s host_mem_bytes=%llu max_message_bytes=%llu "
            "batch_max_vectors=%llu batch_max_wait_us=%llu inline_max_vectors=%zu",
            lkv_version_string(), d.backend->name, threads, lkv_isa_name(lkv_isa_best()),
            (unsigned long long)d.cfg.host_mem_bytes, (unsigned long long)d.cfg.max_message_bytes,
            (unsigned long long)d.cfg.batch_max_vectors,
            (unsigned long long)d.cfg.batch_max_wait_us, ss.inline_max);

    uv_run(d.loop, UV_RUN_DEFAULT);

    lkv_stats st;
    lkv_service_get_stats(d.svc, &st);
    lkv_sched_get_stats(d.sched, &ss);
    char stats[1024];
    lkv_stats_render(&st, LKV_STATS_LOG, stats, sizeof stats);
    lkv_log(LKV_LOG_INFO, "stopped", "drain_ms=%llu %s inline_batches=%llu",
            (unsigned long long)((lkv_now_ns() - d.stop_ns) / 1000000u), stats,
            (unsigned long long)ss.inline_batches);
    uv_loop_close(d.loop);
    close(d.timer_fd);
    lkv_service_free(d.svc);
    lkv_sched_free(d.sched);
    lkv_store_free(d.store);
    d.backend->free(d.backend);
    return 0;
}
