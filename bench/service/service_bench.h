/* SPDX-License-Identifier: Apache-2.0 */
/*
 * service_bench.h - the rooms of service_bench and what they share.
 *
 *   service_bench.c  main: options, starting the servers, the rounds
 *   sb_supervisor.c  child processes (latticekvd, redis-server, the echo
 *                    server), free ports, the log folder, die()
 *   sb_echo.c        the gRPC echo / raw server (a process of its own,
 *                    this program with --echo-server PORT) and its client
 *   sb_redis.c       redis-server start-up and the hiredis calls
 *   sb_cells.c       one cell: the client threads, their calls (latticekv
 *                    through lkv_load.h, the library `latticekv bench` also
 *                    uses), latencies and CPU accounting
 *   sb_report.c      the median round of each cell, the tables, the JSON
 *
 * gRPC's headers are included by sb_echo.c and by main (for grpc_init, and
 * the clients' gRPC settings made before it), hiredis's only by sb_redis.c;
 * the other rooms see their objects through the opaque pointers below.
 */
#ifndef LKV_SERVICE_BENCH_H
#define LKV_SERVICE_BENCH_H

#include "lkv_client.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HEADS       8
#define DIM         128
#define MAX_MSG     (64 << 20)
#define MAX_ROUNDS  9
#define MAX_CLIENTS 64
/* The most block sizes and client counts (--tokens, --clients). */
#define MAX_LIST 8
/* Cells per round: 4 systems x Put, Get + the echo, per block size and client count. */
#define MAX_CELLS (MAX_LIST * MAX_LIST * 9)
/* Blocks per PutStream / GetStream call in the latticekv-stream cells. */
#define STREAM_BLOCKS 8

typedef enum {
    SYS_LKV,
    SYS_LKV_NB,
    SYS_LKV_STREAM,
    SYS_ECHO,
    SYS_RAW,
    SYS_REDIS,
    SYS_COUNT
} sys_id;
extern const char *const sb_sys_name[SYS_COUNT];

typedef enum { OP_PUT, OP_GET, OP_ECHO } op_id;
extern const char *const sb_op_name[3];

/* ---- sb_supervisor.c ---------------------------------------------------- */

/* The servers' logs (kept when the bench fails); set by main. */
extern char sb_logdir[64];
/* Set when this process chose GRPC_POLL_STRATEGY for its clients: children
 * then get gRPC's default back. */
extern int sb_clients_poll_strategy;

/* Prints "service_bench: error: ...", stops the children, exits 1. */
void sb_die(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;
void sb_stop_children(void);
void sb_remove_logdir(void);
int sb_free_port(void);
/* Starts argv[0] with its output appended to `log`; returns the pid. */
pid_t sb_spawn(char *const argv[], const char *log);
/* SIGTERM, wait, and a warning when it did not exit 0. */
void sb_stop_child(pid_t pid, const char *what);
/* Waits until something accepts TCP connections on 127.0.0.1:port. */
void sb_wait_port(int port, const char *what, const char *log);
/* latticekvd on 127.0.0.1:port, serving before it returns. */
pid_t sb_start_daemon(const char *daemon, const char *backend, int port, int wait_us,
                      const char *log);

/* ---- sb_echo.c ---------------------------------------------------------- */

/* The echo / raw server's process (main of --echo-server PORT). */
int sb_echo_server_main(int port);

/* Echo: the block there and back. Raw put: the block there, an empty reply.
 * Raw get: 4 bytes there, the block back. */
typedef enum { MODE_ECHO, MODE_RAW_PUT, MODE_RAW_GET } echo_mode;

typedef struct sb_echo_client sb_echo_client;
/* NULL when the channel cannot be made. */
sb_echo_client *sb_echo_client_open(int port);
/* One blocking call; 0 on success, else -1 with the reason in err. */
int sb_echo_client_call(sb_echo_client *ec, echo_mode mode, const void *data, size_t len, char *err,
                        size_t cap);
void sb_echo_client_close(sb_echo_client *ec);

/* ---- sb_redis.c --------------------------------------------------------- */

typedef struct sb_redis sb_redis;
/* redis-server on 127.0.0.1:port, no persistence, answering PING. */
pid_t sb_redis_start(const char *redis, int port, const char *dir, const char *log);
/* NULL when no connection could be made. */
sb_redis *sb_redis_connect(int port);
/* SET key block (op OP_PUT) or GET key checking the length; 0 or -1 with err. */
int sb_redis_call(sb_redis *r, op_id op, const char *key, const void *block, size_t bytes,
                  char *err, size_t cap);
void sb_redis_close(sb_redis *r);

/* ---- sb_cells.c --------------------------------------------------------- */

typedef struct cell_cfg {
    sys_id sys;
    op_id op;
    int tokens, clients;
    double seconds;
    const char *lkv_addr;
    int port;         /* echo or redis */
    pid_t server_pid; /* latticekvd, the echo server or redis-server */
} cell_cfg;

typedef struct result {
    sys_id sys;
    op_id op;
    int tokens, clients;
    size_t calls;
    double seconds, gbps, p50_ms, p99_ms, calls_per_s;
    double min_gbps, max_gbps; /* over the rounds */
    /* CPU over the window: the server process and this process (the clients)
     * in microseconds per call, and the machine's idle and other-process
     * shares of all cores, in percent. */
    double server_us, client_us, idle_pct, other_pct;
} result;

/* Opens (or closes, with open=0) the per-client connections of a system;
 * they are kept between the Put and the Get cell of a system. */
void sb_connections(sys_id sys, const char *lkv_addr, int port, int n, int open);
/* Runs one cell: warm-up, then every client loops for c->seconds. */
result sb_run_cell(const cell_cfg *c);

/* ---- sb_report.c -------------------------------------------------------- */

typedef struct sb_run_info {
    const char *cpu, *backend;
    long cores;
    double seconds, load_start;
    int rounds;
    const int *tokens, *clients; /* the lists of block sizes and client counts */
    int n_tokens, n_clients;
} sb_run_info;

/* Keeps the median round (by throughput) of each cell of runs[rounds x
 * per_round] in rs (with the rounds' min and max); returns per_round. */
size_t sb_median_rounds(const result *runs, size_t nruns, int rounds, result *rs);
void sb_print_tables(const sb_run_info *ri, const result *rs, size_t nr);
/* Writes the JSON results file; exits through sb_die when it cannot. */
void sb_write_json(const char *path, const sb_run_info *ri, const result *rs, size_t nr);

#endif /* LKV_SERVICE_BENCH_H */
