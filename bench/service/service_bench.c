/* SPDX-License-Identifier: Apache-2.0 */
/*
 * service_bench.c - Put/Get throughput and latency of latticekvd, beside
 * the same bytes through a plain gRPC echo and through Redis.
 *
 * Design note. One run measures, on the same machine and in the same
 * minutes, six ways of moving KV blocks (K and V x T tokens x 8 heads x
 * head_dim 128, bf16; T = 16, 64, 256) with 1, 8 and 64 concurrent clients:
 *
 *   latticekv      latticekvd with batching on (--batch-max-wait-us 200)
 *   latticekv-nb   latticekvd with batching off (--batch-max-wait-us 0)
 *   latticekv-stream  the first daemon through PutStream / GetStream, 8
 *                  blocks per call (lkv_client_put_many / get_many)
 *   grpc-echo      a minimal gRPC C-core server (this program started as
 *                  a separate process with --echo-server PORT) that
 *                  returns each raw bf16 message as is
 *   grpc-raw       the same server answering Put-shaped calls (the block in,
 *                  an empty reply) and Get-shaped calls (4 bytes in, the block
 *                  out from a static buffer): what gRPC alone costs for the
 *                  calls latticekv serves, i.e. its ceiling with no codec,
 *                  no store and no thread hand-offs
 *   redis          a local redis-server (no persistence), hiredis SET / GET
 *
 * The bench starts latticekvd (twice), the echo server and redis-server itself on free
 * loopback ports and stops them at the end. Each client is a thread with
 * its own connection. A cell runs a warm-up, then every client loops for a
 * fixed time; throughput is bf16-equivalent bytes over the wall time of
 * the window, latency percentiles are over every call of the window.
 * "Put+Get" is the rate of moving each block in and out once: bytes in +
 * bytes out over the time of a Put plus a Get (an echo call does both).
 * Each cell also records the CPU time per call of the server process and
 * of this process (the clients), and the machine's idle share and the share
 * other processes used meanwhile (a disturbance to discount).
 *
 * Output: a table on stdout and JSON with the CPU model name, written to
 * bench/results/service-<cpu-slug>.json unless --out says otherwise.
 * service_bench.h maps the files this program is made of.
 */
#include "service_bench.h"

#include "lkv_bench.h"
#include "lkv_grpc_tune.h"

#include <grpc/grpc.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The cells' block sizes and client counts (--tokens, --clients, --quick). */
static int token_list[MAX_LIST] = {16, 64, 256};
static int client_list[MAX_LIST] = {1, 8, 64};
static int n_tokens = 3, n_clients = 3;

static void usage(void)
{
    fputs("usage: service_bench [--daemon PATH] [--redis-server PATH] [--seconds S]\n"
          "                     [--rounds N] [--out FILE] [--quick] [--backend cpu|cuda]\n"
          "                     [--systems NAME,...] [--tokens T,...] [--clients C,...]\n"
          "Starts latticekvd (batching on, then off), a gRPC echo server and redis-server on\n"
          "free loopback ports and measures Put/Get of bf16 KV blocks (K,V x T tokens x 8 heads\n"
          "x 128; T = 16, 64, 256) at 1, 8 and 64 clients. --quick: 16 tokens, 1 and 64 clients.\n"
          "--systems: a subset of latticekv,latticekv-nb,latticekv-stream,grpc-echo,grpc-raw,\n"
          "redis\n"
          "(default: all). --tokens / --clients: other block sizes (tokens per block) and\n"
          "client counts (1..64), comma-separated. --backend: the daemons' codec backend\n"
          "(default cpu).\n",
          stderr);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--echo-server"))
        return sb_echo_server_main(atoi(argv[2]));
    const char *daemon = LKV_BENCH_DAEMON, *redis = "redis-server", *out = NULL, *backend = "cpu";
    double seconds = 1.0;
    int quick = 0, rounds = 3, custom_tokens = 0, custom_clients = 0;
    unsigned systems = (1u << SYS_COUNT) - 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--daemon") && i + 1 < argc)
            daemon = argv[++i];
        else if (!strcmp(argv[i], "--redis-server") && i + 1 < argc)
            redis = argv[++i];
        else if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
            backend = argv[++i];
            if (strcmp(backend, "cpu") && strcmp(backend, "cuda")) {
                fprintf(stderr, "service_bench: --backend must be cpu or cuda, got '%s'\n",
                        backend);
                return 2;
            }
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if ((!strcmp(argv[i], "--tokens") || !strcmp(argv[i], "--clients")) && i + 1 < argc) {
            const int is_tokens = argv[i][2] == 't';
            int *list = is_tokens ? token_list : client_list, n = 0;
            for (char *p = argv[++i], *end; *p && n < MAX_LIST; p = *end ? end + 1 : end) {
                const long v = strtol(p, &end, 10);
                if (end == p || (*end && *end != ',') || v < 1 || v > (is_tokens ? 4096 : 64)) {
                    usage();
                    return 2;
                }
                list[n++] = (int)v;
            }
            *(is_tokens ? &n_tokens : &n_clients) = n;
            if (!is_tokens)
                custom_clients = 1;
            else
                custom_tokens = 1;
        } else if (!strcmp(argv[i], "--systems") && i + 1 < argc) {
            systems = 0;
            for (int k = 0; k < SYS_COUNT; k++) {
                const char *hit = strstr(argv[i + 1], sb_sys_name[k]);
                /* "latticekv" is a prefix of "latticekv-nb": match whole items. */
                while (hit && ((hit > argv[i + 1] && hit[-1] != ',') ||
                               (hit[strlen(sb_sys_name[k])] && hit[strlen(sb_sys_name[k])] != ',')))
                    hit = strstr(hit + 1, sb_sys_name[k]);
                if (hit)
                    systems |= 1u << k;
            }
            i++;
        } else {
            usage();
            return 2;
        }
    }
    if ((!daemon[0] && (systems & 7u)) || seconds <= 0 || !systems || rounds < 1 ||
        rounds > MAX_ROUNDS) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* Blocks of up to 1 MiB are allocated and freed on every call by every
     * client library here (gRPC, lkv_client, hiredis), and 64 client threads
     * poll their calls: the allocator and poller settings every benchmark's
     * clients share (lkv_bench.h), applied to every system alike; a
     * GRPC_POLL_STRATEGY set by the caller wins. And abseil's debug deadlock
     * detector off (lkv_grpc_tune.h). */
    sb_clients_poll_strategy = lkv_bench_tune_clients();
    atexit(sb_stop_children);
    lkv_grpc_quiet_absl_deadlock_detection();
    grpc_init();

    lkv_bench_cpu cpu;
    char cslug[256], default_out[1024];
    lkv_bench_cpu_probe(&cpu);
    lkv_bench_slug(cpu.model, cslug, sizeof cslug);
    snprintf(default_out, sizeof default_out, "%s/bench/results/service-%s.json", LKV_SOURCE_DIR,
             cslug);
    if (!out)
        out = default_out;
    const double load_start = lkv_bench_loadavg();
    char tmp[] = "/tmp/lkv-service-bench-XXXXXX";
    if (!mkdtemp(tmp))
        sb_die("mkdtemp: %s", strerror(errno));
    snprintf(sb_logdir, sizeof sb_logdir, "%s", tmp);
    char log_lkv[1100], log_redis[1100], log_echo[1100];
    snprintf(log_lkv, sizeof log_lkv, "%s/latticekvd.log", tmp);
    snprintf(log_redis, sizeof log_redis, "%s/redis.log", tmp);
    snprintf(log_echo, sizeof log_echo, "%s/echo.log", tmp);

    if (quick && !custom_tokens)
        n_tokens = 1; /* 16 */
    if (quick && !custom_clients) {
        client_list[0] = 1;
        client_list[1] = 64;
        n_clients = 2;
    }
    const int nt = n_tokens, nc = n_clients;
    const int *cl = client_list;
    /* All servers run for the whole bench, and every round visits every
     * system for each block size and client count in turn, so that load
     * from other processes on a shared machine hits all systems alike. The
     * reported cell is the round with the median throughput. */
    pid_t pid[SYS_COUNT] = {0};
    int port[SYS_COUNT] = {0};
    char addr[SYS_COUNT][64] = {{0}};
    for (int s = 0; s < SYS_COUNT; s++) {
        if (!(systems & (1u << s)))
            continue;
        if (s == SYS_LKV_STREAM && pid[SYS_LKV] > 0) { /* the batching daemon, shared */
            port[s] = port[SYS_LKV];
            snprintf(addr[s], sizeof addr[s], "%s", addr[SYS_LKV]);
        } else if (s == SYS_LKV || s == SYS_LKV_NB || s == SYS_LKV_STREAM) {
            port[s] = sb_free_port();
            snprintf(addr[s], sizeof addr[s], "127.0.0.1:%d", port[s]);
            pid[s] = sb_start_daemon(daemon, backend, port[s], s == SYS_LKV_NB ? 0 : 200, log_lkv);
        } else if (s == SYS_ECHO || s == SYS_RAW) { /* one server process for both */
            const int other = s == SYS_ECHO ? SYS_RAW : SYS_ECHO;
            if (pid[other] > 0) {
                pid[s] = pid[other];
                port[s] = port[other];
            } else {
                char p[16];
                port[s] = sb_free_port();
                snprintf(p, sizeof p, "%d", port[s]);
                char *const av[] = {"/proc/self/exe", "--echo-server", p, NULL};
                pid[s] = sb_spawn(av, log_echo);
                sb_wait_port(port[s], "echo server", log_echo);
            }
        } else {
            port[s] = sb_free_port();
            pid[s] = sb_redis_start(redis, port[s], tmp, log_redis);
        }
    }
    const int tty = isatty(STDERR_FILENO);
    static result runs[MAX_ROUNDS * MAX_CELLS];
    size_t nruns = 0;
    for (int round = 0; round < rounds; round++)
        for (int ti = 0; ti < nt; ti++)
            for (int ci = 0; ci < nc; ci++)
                for (int s = 0; s < SYS_COUNT; s++) {
                    if (!(systems & (1u << s)))
                        continue;
                    const int tokens = token_list[ti], clients = cl[ci];
                    sb_connections((sys_id)s, addr[s], port[s], clients, 1);
                    for (int op = OP_PUT; op <= OP_ECHO; op++) {
                        if ((s == SYS_ECHO) != (op == OP_ECHO))
                            continue;
                        /* The stream cells share the batching daemon. */
                        const pid_t sp = s == SYS_LKV_STREAM && !pid[s] ? pid[SYS_LKV] : pid[s];
                        const cell_cfg cfg = {(sys_id)s, (op_id)op, tokens,  clients,
                                              seconds,   addr[s],   port[s], sp};
                        /* One status line redrawn on a terminal; in a log
                         * (tests/gpu/daemon/run.sh) one line per cell. */
                        fprintf(stderr, "%sround %d/%d %-16s %-4s tokens=%-3d clients=%-2d ...%s",
                                tty ? "\r" : "", round + 1, rounds, sb_sys_name[s], sb_op_name[op],
                                tokens, clients, tty ? "" : "\n");
                        runs[nruns++] = sb_run_cell(&cfg);
                    }
                    sb_connections((sys_id)s, addr[s], port[s], clients, 0);
                }
    for (int s = 0; s < SYS_COUNT; s++)
        if (pid[s] > 0)
            sb_stop_child(pid[s], sb_sys_name[s]);

    /* The median round of each cell. */
    static result rs[MAX_CELLS];
    const size_t nr = sb_median_rounds(runs, nruns, rounds, rs);
    if (tty)
        fprintf(stderr, "\r%60s\r", "");
    const sb_run_info ri = {.cpu = cpu.model,
                            .backend = backend,
                            .cores = lkv_bench_cores(),
                            .seconds = seconds,
                            .load_start = load_start,
                            .rounds = rounds,
                            .tokens = token_list,
                            .clients = cl,
                            .n_tokens = nt,
                            .n_clients = nc};
    sb_print_tables(&ri, rs, nr);
    sb_write_json(out, &ri, rs, nr);
    printf("\nwrote %s\n", out);
    grpc_shutdown();
    sb_stop_children();
    sb_remove_logdir();
    return 0;
}
