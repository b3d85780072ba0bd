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
 * signal cancels at once). SIGHUP re-reads the TLS files and the token
 * file (a bad file keeps what is in use). Phase 2 runs when no call
 * is left: the gRPC thread and the workers are joined, handles are closed
 * and the process exits 0.
 */
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <uv.h>

#include "lkv_log.h"
#include "lkv_metrics.h"
#include "lkv_peer.h"
#include "lkv_reflection.h"
#include "lkv_rpc.h"
#include "lkv_sched.h"
#include "lkv_stack.h"
#include "tier/lkv_tier_gpu.h"

extern char **environ; /* unistd.h declares it only under _GNU_SOURCE */

typedef struct daemon_state {
    lkv_config cfg;
    uv_loop_t *loop;
    lkv_backend *backend;
    lkv_stack *stack;
    lkv_sched *sched;
    lkv_inbox *inbox;
    lkv_service *svc;
    lkv_rpc *rpc;
    lkv_peer *peer;            /* Push and Pull's outbound calls */
    lkv_metrics_http *metrics; /* --metrics-listen; NULL: off */
    int timer_fd;
    uv_poll_t timer_poll;
    uv_timer_t grace;
    uv_timer_t tick;  /* phase 1: re-checks shutdown progress while nothing happens */
    uv_check_t tiers; /* after each loop turn: replies that tier I/O completed */
    uv_signal_t sigterm, sigint, sighup;
    lkv_tls *tls;           /* --tls-cert: TCP listeners serve TLS */
    lkv_auth_table *tokens; /* --auth-tokens: the table loaded last */
    int phase;              /* 0 serving, 1 draining, 2 stopped */
    lkv_stats final;        /* taken as it stops */
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
        /* Then the Redis write-back queue, while Redis takes it, within the grace. */
        const int grace_over =
            lkv_now_ns() - d->stop_ns > d->cfg.shutdown_grace_ms * UINT64_C(1000000);
        if (lkv_rpc_drained(d->rpc) && (lkv_stack_flushed(d->stack) || grace_over))
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
    lkv_peer_cancel_all(d->peer);
}

static void on_tick(uv_timer_t *t)
{
    after_events(t->data);
}

static void on_tiers(uv_check_t *h)
{
    after_events(h->data);
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

/* SIGHUP: re-read the certificate, key, client CA and token file. A file
 * that does not pass keeps what is in use; either way one log line says so
 * (never with a token in it). */
static void on_reload(uv_signal_t *h, int signum)
{
    (void)signum;
    daemon_state *d = h->data;
    char q[LKV_LOG_QUOTE_MAX];
    lkv_diag diag = {.code = LKV_OK, .index = UINT64_MAX, .msg = ""};
    if (d->tls) {
        if (lkv_tls_reload(d->tls, &diag) == LKV_OK)
            lkv_log(LKV_LOG_INFO, "tls_reloaded", "not_after=%lld",
                    (long long)lkv_tls_not_after(d->tls));
        else
            lkv_log(LKV_LOG_ERROR, "tls_reload_failed", "action=kept_previous reason=%s",
                    lkv_log_quote_str(q, sizeof q, diag.msg));
    }
    if (d->cfg.auth_tokens[0]) {
        lkv_auth_table *t = NULL;
        if (lkv_auth_load(d->cfg.auth_tokens, &t, &diag) == LKV_OK) {
            if (d->rpc)
                lkv_rpc_set_tokens(d->rpc, t);
            lkv_auth_table_unref(d->tokens);
            d->tokens = t;
            lkv_log(LKV_LOG_INFO, "auth_tokens_reloaded", "tokens=%zu", lkv_auth_table_size(t));
        } else {
            lkv_log(LKV_LOG_ERROR, "auth_tokens_reload_failed", "action=kept_previous reason=%s",
                    lkv_log_quote_str(q, sizeof q, diag.msg));
        }
    }
}

static void stop_now(daemon_state *d)
{
    d->phase = 2;
    /* Before rpc: its last line checks that the budget holds nothing, and
     * the metrics answers still being written are charged to it. */
    lkv_metrics_http_close(d->metrics);
    d->metrics = NULL;
    lkv_peer_free(d->peer); /* no transfer is left: each holds its call open */
    d->peer = NULL;
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
    uv_check_stop(&d->tiers);
    uv_close((uv_handle_t *)&d->tiers, NULL);
    uv_close((uv_handle_t *)&d->sighup, NULL);
    lkv_inbox_close(d->inbox);
    d->inbox = NULL;
    lkv_service_get_stats(d->svc, &d->final); /* while the tiers are still there */
    lkv_stack_close(d->stack, NULL, NULL);    /* the loop runs until every tier closed */
    d->stack = NULL;
}

/* Logs why the daemon cannot start; returns its exit status. */
static int startup_failed(const char *reason)
{
    char q[LKV_LOG_QUOTE_MAX];
    lkv_log(LKV_LOG_ERROR, "startup_failed", "reason=%s", lkv_log_quote_str(q, sizeof q, reason));
    return 1;
}

/* The metrics snapshot: every module's counters, read on the loop thread. */
static void collect_metrics(lkv_metrics_snapshot *m, void *ud)
{
    const daemon_state *d = ud;
    lkv_service_get_stats(d->svc, &m->stats);
    m->version = lkv_version_string();
    m->backend = d->backend->name;
    m->replies = lkv_service_replies(d->svc);
    lkv_batcher *b = lkv_sched_batcher(d->sched);
    lkv_batcher_stats bs;
    lkv_batcher_get_stats(b, &bs);
    m->batch_vectors = lkv_batcher_batch_vectors(b);
    m->codec_seconds = lkv_batcher_codec_seconds(b);
    m->queue_depth = bs.pending_vectors;
    m->batches_inflight = bs.inflight;
    m->inflight_calls = lkv_rpc_calls(d->rpc);
    const lkv_budget *budget = lkv_service_budget(d->svc);
    if (budget) {
        m->inflight_bytes = atomic_load(&budget->used);
        m->inflight_bytes_limit = budget->limit;
    }
    /* Auth failures, counted by the token module (auth.c) where it refuses. */
    lkv_auth_failures af;
    lkv_auth_get_failures(&af);
    m->auth_failures[LKV_AUTH_FAILURE_UNAUTHENTICATED] = af.unauthenticated;
    m->auth_failures[LKV_AUTH_FAILURE_PERMISSION_DENIED] = af.permission;
    /* The tiers of the stack, top down (host, then ssd and redis). */
    for (size_t i = 0; i < m->stats.n_tiers && m->n_tiers < LKV_METRICS_TIERS_MAX; i++) {
        m->tiers[m->n_tiers].name = m->stats.tier[i].name;
        m->tiers[m->n_tiers++].st = m->stats.tier[i];
    }
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

/*
 * --gpu-mem-bytes > 0 asks for coded blocks in device memory, which only the
 * cuda backend can decode in place; with the C codec it is a setting that
 * cannot be honoured, so it is refused like a bad flag (exit 2) rather than
 * silently ignored.
 */
static int gpu_tier_refused(const daemon_state *d, char *err, size_t cap)
{
    if (d->cfg.gpu_mem_bytes == 0 || d->backend->kind == LKV_BACKEND_CUDA)
        return 0;
    snprintf(err, cap,
             "--gpu-mem-bytes=%llu needs the cuda backend; this daemon runs backend=%s "
             "(use --gpu-mem-bytes 0 for no GPU tier)",
             (unsigned long long)d->cfg.gpu_mem_bytes, d->backend->name);
    return 1;
}

/*
 * The tier stack of the configuration: host memory, then the SSD directory
 * and Redis when configured. A setting the tiers refuse (a missing
 * directory, a locked one, a bad password file) is reported like a bad flag.
 */
/* Closes the tiers made before one was refused, and lets them finish. */
static int drop_tiers(uv_loop_t *loop, lkv_tier *host, lkv_tier *ssd, lkv_tier *redis, int rc)
{
    if (redis)
        redis->close(redis, NULL, NULL);
    if (ssd)
        ssd->close(ssd, NULL, NULL);
    if (host)
        host->close(host, NULL, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    return rc;
}

static int make_stack(daemon_state *d, char *err, size_t cap)
{
    lkv_host_quota quotas[LKV_LISTEN_MAX];
    for (uint32_t i = 0; i < d->cfg.n_namespace_quota; i++) {
        const char *q = d->cfg.namespace_quota[i], *eq = strrchr(q, '=');
        quotas[i] = (lkv_host_quota){q, (size_t)(eq - q), 0};
        lkv_parse_size(eq + 1, &quotas[i].bytes); /* checked by config.c */
        for (uint32_t k = 0; k < i; k++)
            if (quotas[k].ns_len == quotas[i].ns_len &&
                memcmp(quotas[k].ns, q, quotas[i].ns_len) == 0) {
                snprintf(err, cap, "--namespace-quota=%s: namespace \"%.*s\" has a quota already",
                         q, (int)quotas[i].ns_len, q);
                return 2;
            }
    }
    const lkv_host_config hc = {.capacity_bytes = d->cfg.host_mem_bytes,
                                .high_pct = (unsigned)d->cfg.host_high_pct,
                                .low_pct = (unsigned)d->cfg.host_low_pct,
                                .quotas = quotas,
                                .nquotas = d->cfg.n_namespace_quota};
    lkv_tier *host = NULL, *ssd = NULL, *redis = NULL;
    lkv_diag diag = {.code = LKV_OK, .index = UINT64_MAX, .msg = ""};
    if (lkv_tier_host_create(&hc, &host, &diag) != LKV_OK) {
        snprintf(err, cap, "%s", diag.msg);
        return 1;
    }
    if (d->cfg.ssd_dir[0]) {
        lkv_ssd_config sc;
        lkv_ssd_config_defaults(&sc);
        sc.dir = d->cfg.ssd_dir;
        sc.capacity_bytes = d->cfg.ssd_bytes;
        sc.fsync = (lkv_ssd_fsync)d->cfg.ssd_fsync;
        sc.high_pct = (unsigned)d->cfg.ssd_high_pct;
        sc.low_pct = (unsigned)d->cfg.ssd_low_pct;
        if (lkv_tier_ssd_create(d->loop, &sc, &ssd, &diag) != LKV_OK) {
            snprintf(err, cap, "--ssd-dir=%s: %s", d->cfg.ssd_dir, diag.msg);
            return drop_tiers(d->loop, host, NULL, NULL, 2);
        }
    }
    if (d->cfg.n_redis) {
        const char *seeds[LKV_LISTEN_MAX];
        for (uint32_t i = 0; i < d->cfg.n_redis; i++)
            seeds[i] = d->cfg.redis[i];
        lkv_redis_config rc;
        lkv_redis_config_defaults(&rc);
        rc.seeds = seeds;
        rc.nseeds = d->cfg.n_redis;
        rc.password_file = d->cfg.redis_password_file[0] ? d->cfg.redis_password_file : NULL;
        rc.queue_bytes = d->cfg.tier_policy == LKV_TIER_WRITE_BACK ? d->cfg.redis_queue_bytes : 0;
        if (lkv_tier_redis_create(d->loop, &rc, &redis, &diag) != LKV_OK) {
            snprintf(err, cap, "--redis: %s", diag.msg);
            return drop_tiers(d->loop, host, ssd, NULL, 2);
        }
    }
    lkv_tier *gpu = NULL;
    if (d->cfg.gpu_mem_bytes) {
        lkv_gpu_config gc = {.capacity_bytes = d->cfg.gpu_mem_bytes,
                             .high_pct = (unsigned)d->cfg.gpu_high_pct,
                             .low_pct = (unsigned)d->cfg.gpu_low_pct};
        if (lkv_backend_cuda_gpu_ops(&gc.ops, &diag) != LKV_OK ||
            lkv_tier_gpu_create(d->loop, &gc, &gpu, &diag) != LKV_OK) {
            if (gc.ops.arena_free) /* the ops' state; no arena was made */
                gc.ops.arena_free(gc.ops.ctx, NULL);
            snprintf(err, cap, "--gpu-mem-bytes=%llu: %s", (unsigned long long)d->cfg.gpu_mem_bytes,
                     diag.msg);
            return drop_tiers(d->loop, host, ssd, redis, 2);
        }
    }
    d->stack = lkv_stack_create(host, ssd, redis, (lkv_tier_policy)d->cfg.tier_policy);
    if (!d->stack) {
        if (gpu)
            gpu->close(gpu, NULL, NULL);
        snprintf(err, cap, "out of memory for the tier stack");
        return drop_tiers(d->loop, host, ssd, redis, 1);
    }
    if (gpu)
        lkv_stack_set_gpu(d->stack, gpu);
    return 0;
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
    if (d.cfg.reflection && !lkv_reflection_available())
        return startup_failed("--reflection on: this build has no server reflection (protoc was "
                              "not found when it was built)");

    const unsigned threads = d.cfg.threads ? (unsigned)d.cfg.threads : cpu_count();
    lkv_diag diag = {.code = LKV_OK, .index = UINT64_MAX, .msg = ""};
    /* Certificate and token files are settings: a bad one exits 2. */
    if ((d.cfg.tls_cert[0] && lkv_tls_create(d.cfg.tls_cert, d.cfg.tls_key, d.cfg.tls_client_ca,
                                             &d.tls, &diag) != LKV_OK) ||
        (d.cfg.auth_tokens[0] && lkv_auth_load(d.cfg.auth_tokens, &d.tokens, &diag) != LKV_OK)) {
        fprintf(stderr, "latticekvd: %s\n", diag.msg);
        return 2;
    }
    if (make_backend(&d, threads, &diag) != LKV_OK)
        return startup_failed(diag.msg);
    if (gpu_tier_refused(&d, err, sizeof err)) {
        fprintf(stderr, "latticekvd: %s\n", err);
        d.backend->free(d.backend);
        lkv_auth_table_unref(d.tokens);
        lkv_tls_free(d.tls);
        return 2;
    }
    d.loop = uv_default_loop();
    const int stack_rc = make_stack(&d, err, sizeof err);
    if (stack_rc != 0) {
        fprintf(stderr, "latticekvd: %s\n", err);
        startup_failed(err);
        uv_loop_close(d.loop);
        d.backend->free(d.backend);
        lkv_auth_table_unref(d.tokens);
        lkv_tls_free(d.tls);
        return stack_rc;
    }
    d.inbox = lkv_inbox_create(d.loop, on_event, after_events, &d);
    d.sched = d.inbox ? lkv_sched_create(&d.cfg, d.backend, threads, d.inbox) : NULL;
    d.svc = d.sched ? lkv_service_create(&d.cfg, d.stack, lkv_sched_batcher(d.sched),
                                         d.backend->name, lkv_rpc_reply)
                    : NULL;
    d.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    d.peer = d.svc ? lkv_peer_create(d.loop, &d.cfg, d.svc) : NULL;
    if (!d.svc || !d.peer || d.timer_fd < 0)
        return startup_failed("out of memory or threads");
    uv_poll_init(d.loop, &d.timer_poll, d.timer_fd);
    d.timer_poll.data = &d;
    uv_poll_start(&d.timer_poll, UV_READABLE, on_timer);
    uv_timer_init(d.loop, &d.grace);
    d.grace.data = &d;
    uv_timer_init(d.loop, &d.tick);
    d.tick.data = &d;
    uv_check_init(d.loop, &d.tiers);
    d.tiers.data = &d;
    uv_check_start(&d.tiers, on_tiers);
    uv_signal_init(d.loop, &d.sigterm);
    uv_signal_init(d.loop, &d.sigint);
    d.sigterm.data = d.sigint.data = &d;
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_init(d.loop, &d.sighup);
    d.sighup.data = &d;
    uv_signal_start(&d.sighup, on_reload, SIGHUP);

    const lkv_rpc_security sec = {
        .tls = d.tls, .tokens = d.tokens, .auth_unix = (int)d.cfg.auth_unix};
    if (lkv_rpc_create(&d.cfg, d.svc, d.inbox, &sec, &d.rpc, &diag) != LKV_OK)
        return startup_failed(diag.msg);
    if (d.cfg.metrics_listen[0] &&
        lkv_metrics_http_start(d.loop, d.cfg.metrics_listen, collect_metrics, &d,
                               lkv_service_budget(d.svc), &d.metrics, &diag) != LKV_OK)
        return startup_failed(diag.msg);
    lkv_service_set_ready(d.svc, 1);
    lkv_sched_stats ss;
    lkv_sched_get_stats(d.sched, &ss);
    lkv_log(LKV_LOG_INFO, "ready",
            "version=%s backend=%s threads=%u isa=%s host_mem_bytes=%llu max_message_bytes=%llu "
            "batch_max_vectors=%llu batch_max_wait_us=%llu inline_max_vectors=%zu tls=%s "
            "auth_tokens=%zu auth_unix=%s metrics_listen=%s",
            lkv_version_string(), d.backend->name, threads, lkv_isa_name(lkv_isa_best()),
            (unsigned long long)d.cfg.host_mem_bytes, (unsigned long long)d.cfg.max_message_bytes,
            (unsigned long long)d.cfg.batch_max_vectors,
            (unsigned long long)d.cfg.batch_max_wait_us, ss.inline_max,
            !d.tls                  ? "off"
            : lkv_tls_mutual(d.tls) ? "mutual"
                                    : "on",
            lkv_auth_table_size(d.tokens), d.cfg.auth_unix ? "on" : "off",
            d.cfg.metrics_listen[0] ? d.cfg.metrics_listen : "off");

    uv_run(d.loop, UV_RUN_DEFAULT);

    lkv_sched_get_stats(d.sched, &ss);
    char stats[2048];
    lkv_stats_render(&d.final, LKV_STATS_LOG, stats, sizeof stats);
    lkv_log(LKV_LOG_INFO, "stopped", "drain_ms=%llu %s inline_batches=%llu",
            (unsigned long long)((lkv_now_ns() - d.stop_ns) / 1000000u), stats,
            (unsigned long long)ss.inline_batches);
    uv_loop_close(d.loop);
    close(d.timer_fd);
    lkv_service_free(d.svc);
    lkv_sched_free(d.sched);
    d.backend->free(d.backend);
    lkv_auth_table_unref(d.tokens);
    lkv_tls_free(d.tls);
    return 0;
}
