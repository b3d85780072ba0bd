/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sb_cells.c - one cell of service_bench: a system, an operation, a block
 * size and a client count. Each client is a thread with its own connection
 * (opened by sb_connections and kept between a system's Put and Get
 * cells). A cell runs a warm-up (for Get, a Put of the system's own kind
 * first, so the key exists), then every client loops for a fixed time;
 * throughput is bf16-equivalent bytes over the wall time of the window,
 * latency percentiles are over every call of the window. Beside that the
 * cell records the CPU time per call of the server process and of this
 * process (the clients), and the machine's idle share and the share other
 * processes used meanwhile (a disturbance to discount).
 *
 * The latticekv systems go through lkv_load.h, the same calls
 * `latticekv bench` makes; the echo and Redis systems move that load's block.
 */
#include "service_bench.h"

#include "lkv_bench.h"
#include "lkv_load.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *const sb_sys_name[SYS_COUNT] = {"latticekv", "latticekv-nb", "latticekv-stream",
                                            "grpc-echo", "grpc-raw",     "redis"};
const char *const sb_op_name[3] = {"put", "get", "echo"};

typedef struct conn {
    lkv_client *lkv;
    sb_echo_client *echo;
    sb_redis *redis;
} conn;

static conn conns[MAX_CLIENTS];

typedef struct worker {
    pthread_t tid;
    const cell_cfg *cfg;
    int id;
    pthread_barrier_t *ready;
    volatile int *stop;
    lkv_load_spec spec;
    lkv_load load; /* the block, its keys and (latticekv) the calls */
    lkv_bench_samples lat;
    double t_end;
    int failed;
    char err[600];
} worker;

static int is_lkv(sys_id s)
{
    return s == SYS_LKV || s == SYS_LKV_NB || s == SYS_LKV_STREAM;
}

/* One call of operation op; 0 on success. */
static int one_op(worker *w, op_id op)
{
    const cell_cfg *c = w->cfg;
    conn *k = &conns[w->id];
    lkv_load *l = &w->load;
    switch (c->sys) {
    case SYS_LKV:
    case SYS_LKV_NB:
    case SYS_LKV_STREAM:
        if ((op == OP_PUT ? lkv_load_put(l) : lkv_load_get(l)) == LKV_RPC_OK)
            return 0;
        snprintf(w->err, sizeof w->err, "%s", l->err.msg);
        return -1;
    case SYS_ECHO:
        return sb_echo_client_call(k->echo, MODE_ECHO, l->data, l->block_bytes, w->err,
                                   sizeof w->err);
    case SYS_RAW:
        return sb_echo_client_call(k->echo, op == OP_PUT ? MODE_RAW_PUT : MODE_RAW_GET, l->data,
                                   l->block_bytes, w->err, sizeof w->err);
    case SYS_REDIS:
        return sb_redis_call(k->redis, op, l->names[0], l->data, l->block_bytes, w->err,
                             sizeof w->err);
    default: return -1;
    }
}

static void *worker_run(void *arg)
{
    worker *w = arg;
    const cell_cfg *c = w->cfg;
    w->spec = (lkv_load_spec){.ns = "bench",
                              .tokens = (size_t)c->tokens,
                              .heads = HEADS,
                              .dim = DIM,
                              .stream = c->sys == SYS_LKV_STREAM ? STREAM_BLOCKS : 0};
    char prefix[64];
    snprintf(prefix, sizeof prefix, "blk-%d-%d", c->tokens, w->id);
    if (lkv_load_init(&w->load, &w->spec, conns[w->id].lkv, prefix,
                      (uint64_t)c->tokens * 1000u + (uint64_t)w->id) != LKV_RPC_OK)
        sb_die("%s", w->load.err.msg);
    /* Warm-up: connect, and for Get make sure the keys exist (a Put of the
     * system's own kind). */
    if (c->op == OP_GET)
        w->failed = one_op(w, OP_PUT);
    if (!w->failed)
        w->failed = one_op(w, c->op);
    pthread_barrier_wait(w->ready);
    while (!w->failed && !*w->stop) {
        const double t0 = lkv_bench_now_s();
        w->failed = one_op(w, c->op);
        const double t1 = lkv_bench_now_s();
        if (!w->failed && lkv_bench_samples_push(&w->lat, t1 - t0))
            sb_die("out of memory");
    }
    w->t_end = lkv_bench_now_s();
    lkv_load_free(&w->load);
    return NULL;
}

/* CPU seconds used so far by process pid (0: this process). */
static double cpu_s(pid_t pid)
{
    clockid_t id = CLOCK_PROCESS_CPUTIME_ID;
    struct timespec ts;
    if ((pid && clock_getcpuclockid(pid, &id) != 0) || clock_gettime(id, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Busy and idle seconds of all cores so far (/proc/stat). */
static void machine_s(double *busy, double *idle)
{
    unsigned long long v[10] = {0};
    FILE *f = fopen("/proc/stat", "r");
    *busy = *idle = 0;
    if (!f)
        return;
    const int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                         &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (n < 8)
        return;
    const double hz = (double)sysconf(_SC_CLK_TCK);
    *idle = (double)(v[3] + v[4]) / hz; /* idle + iowait */
    *busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz;
}

result sb_run_cell(const cell_cfg *c)
{
    static worker w[MAX_CLIENTS];
    volatile int stop = 0;
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, (unsigned)c->clients + 1);
    for (int i = 0; i < c->clients; i++) {
        w[i] = (worker){.cfg = c, .id = i, .ready = &ready, .stop = &stop};
        if (pthread_create(&w[i].tid, NULL, worker_run, &w[i]) != 0)
            sb_die("pthread_create");
    }
    pthread_barrier_wait(&ready);
    const double t0 = lkv_bench_now_s();
    double busy0, idle0;
    machine_s(&busy0, &idle0);
    const double srv0 = c->server_pid ? cpu_s(c->server_pid) : 0, self0 = cpu_s(0);
    const struct timespec nap = {(time_t)c->seconds,
                                 (long)((c->seconds - floor(c->seconds)) * 1e9)};
    nanosleep(&nap, NULL);
    stop = 1;
    double t_end = t0;
    size_t n = 0;
    for (int i = 0; i < c->clients; i++) {
        pthread_join(w[i].tid, NULL);
        if (w[i].failed)
            sb_die("%s %s tokens=%d client %d: %s", sb_sys_name[c->sys], sb_op_name[c->op],
                   c->tokens, i, w[i].err);
        t_end = w[i].t_end > t_end ? w[i].t_end : t_end;
        n += w[i].lat.n;
    }
    const double srv1 = c->server_pid ? cpu_s(c->server_pid) : 0, self1 = cpu_s(0);
    double busy1, idle1;
    machine_s(&busy1, &idle1);
    pthread_barrier_destroy(&ready);
    double *all = malloc((n ? n : 1) * sizeof *all);
    if (!all)
        sb_die("out of memory");
    size_t off = 0;
    for (int i = 0; i < c->clients; i++) {
        memcpy(all + off, w[i].lat.v, w[i].lat.n * sizeof *all);
        off += w[i].lat.n;
        lkv_bench_samples_free(&w[i].lat);
    }
    lkv_bench_sort(all, n);
    const double bytes = 2.0 * c->tokens * HEADS * DIM * 2.0;
    const double wall = t_end - t0;
    /* An echo moves the block in and out: count both directions; a stream
     * call moves STREAM_BLOCKS blocks. */
    const double per_call = c->op == OP_ECHO           ? 2 * bytes
                            : c->sys == SYS_LKV_STREAM ? STREAM_BLOCKS * bytes
                                                       : bytes;
    result r = {.sys = c->sys,
                .op = c->op,
                .tokens = c->tokens,
                .clients = c->clients,
                .calls = n,
                .seconds = wall,
                .gbps = per_call * (double)n / wall / 1e9,
                .p50_ms = lkv_bench_quantile(all, n, 0.5) * 1e3,
                .p99_ms = lkv_bench_quantile(all, n, 0.99) * 1e3,
                .calls_per_s = (double)n / wall};
    const double total = (busy1 - busy0) + (idle1 - idle0);
    if (n && total > 0) {
        r.server_us = (srv1 - srv0) / (double)n * 1e6;
        r.client_us = (self1 - self0) / (double)n * 1e6;
        r.idle_pct = 100.0 * (idle1 - idle0) / total;
        const double other = (busy1 - busy0) - (srv1 - srv0) - (self1 - self0);
        r.other_pct = other > 0 ? 100.0 * other / total : 0;
    }
    free(all);
    return r;
}

void sb_connections(sys_id sys, const char *lkv_addr, int port, int n, int open)
{
    for (int i = 0; i < n; i++) {
        conn *k = &conns[i];
        if (!open) {
            lkv_client_free(k->lkv);
            sb_echo_client_close(k->echo);
            sb_redis_close(k->redis);
            memset(k, 0, sizeof *k);
            continue;
        }
        lkv_client_error e;
        const lkv_client_options o = {.own_connection = 1, .wait_for_ready = 1};
        if (is_lkv(sys) && lkv_client_create(lkv_addr, &o, &k->lkv, &e))
            sb_die("client: %s", e.msg);
        if ((sys == SYS_ECHO || sys == SYS_RAW) && !(k->echo = sb_echo_client_open(port)))
            sb_die("echo client");
        if (sys == SYS_REDIS && !(k->redis = sb_redis_connect(port)))
            sb_die("cannot connect to redis on port %d", port);
    }
}
