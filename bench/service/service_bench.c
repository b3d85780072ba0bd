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
 */
#include "lkv_client.h"
#include "lkv_grpc_tune.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <hiredis/hiredis.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HEADS      8
#define DIM        128
#define MAX_MSG    (64 << 20)
#define MAX_ROUNDS 9

/* The cells' block sizes and client counts (--tokens, --clients, --quick). */
#define MAX_LIST 8
static int token_list[MAX_LIST] = {16, 64, 256};
static int client_list[MAX_LIST] = {1, 8, 64};
static int n_tokens = 3, n_clients = 3;
/* Cells per round: 4 systems x Put, Get + the echo, per block size and client count. */
#define MAX_CELLS (MAX_LIST * MAX_LIST * 9)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *fmt, ...);

/* ------------------------------------------------------------------------ */
/* Child processes: latticekvd and redis-server                              */
/* ------------------------------------------------------------------------ */

static pid_t children[4];
static int n_children;
static char g_logdir[64];         /* the servers' logs: kept when the bench fails */
static int clients_poll_strategy; /* set GRPC_POLL_STRATEGY for this process only */

static void stop_children(void)
{
    for (int i = 0; i < n_children; i++) {
        if (children[i] > 0) {
            kill(children[i], SIGTERM);
            waitpid(children[i], NULL, 0);
            children[i] = 0;
        }
    }
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("service_bench: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    stop_children();
    if (g_logdir[0])
        fprintf(stderr, "service_bench: the servers' logs are in %s\n", g_logdir);
    exit(1);
}

/* Removes the log folder (flat: the servers' logs, redis's files). */
static void remove_logdir(void)
{
    DIR *d = opendir(g_logdir);
    if (!d)
        return;
    const struct dirent *e;
    char path[600];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof path, "%s/%s", g_logdir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(g_logdir);
}

static int free_port(void)
{
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        die("cannot find a free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

/* Starts argv[0] with its output appended to `log`; returns the pid. */
static pid_t spawn(char *const argv[], const char *log)
{
    const pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        FILE *f = freopen(log, "a", stdout);
        if (f)
            dup2(fileno(stdout), 2);
        if (clients_poll_strategy)
            unsetenv("GRPC_POLL_STRATEGY"); /* the daemon keeps gRPC's default */
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    children[n_children++] = pid;
    return pid;
}

static void stop_child(pid_t pid, const char *what)
{
    for (int i = 0; i < n_children; i++)
        if (children[i] == pid) {
            int st = 0;
            kill(pid, SIGTERM);
            waitpid(pid, &st, 0);
            children[i] = 0;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                fprintf(stderr, "service_bench: warning: %s ended with status %d\n", what, st);
        }
}

/* Waits until something accepts TCP connections on 127.0.0.1:port. */
static void wait_port(int port, const char *what, const char *log)
{
    for (int i = 0; i < 500; i++) {
        const int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        const int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return;
        const struct timespec nap = {0, 20 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    die("%s on port %d does not accept connections (log: %s)", what, port, log);
}

static pid_t start_daemon(const char *daemon, const char *backend, int port, int wait_us,
                          const char *log)
{
    char listen[64], wait[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(wait, sizeof wait, "%d", wait_us);
    char *const argv[] = {
        (char *)daemon,        "--listen", listen,        "--backend", (char *)backend,
        "--batch-max-wait-us", wait,       "--log-level", "warn",      NULL};
    const pid_t pid = spawn(argv, log);
    lkv_client *c = NULL;
    lkv_client_error e;
    if (lkv_client_create(listen, NULL, &c, &e) || lkv_client_wait_ready(c, 30000, &e))
        die("latticekvd on %s is not serving: %s (log: %s)", listen, e.msg, log);
    lkv_client_free(c);
    return pid;
}

static redisContext *redis_connect(int port)
{
    const struct timeval tv = {5, 0};
    redisContext *r = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!r || r->err) {
        if (r)
            redisFree(r);
        return NULL;
    }
    return r;
}

static pid_t start_redis(const char *redis, int port, const char *dir, const char *log)
{
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    char *const argv[] = {(char *)redis,
                          "--bind",
                          "127.0.0.1",
                          "--port",
                          p,
                          "--save",
                          "",
                          "--appendonly",
                          "no",
                          "--dir",
                          (char *)dir,
                          "--protected-mode",
                          "no",
                          NULL};
    const pid_t pid = spawn(argv, log);
    for (int i = 0; i < 500; i++) {
        redisContext *r = redis_connect(port);
        if (r) {
            redisReply *rep = redisCommand(r, "PING");
            const int ok = rep && rep->type == REDIS_REPLY_STATUS;
            freeReplyObject(rep);
            redisFree(r);
            if (ok)
                return pid;
        }
        const struct timespec nap = {0, 20 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    die("redis-server on port %d did not answer PING (log: %s)", port, log);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* The gRPC echo server                                                      */
/* ------------------------------------------------------------------------ */

typedef enum { ECHO_NEW, ECHO_READ, ECHO_DONE } echo_state;

typedef struct echo_call {
    echo_state state;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *msg;
    int cancelled;
} echo_call;

/* What grpc-raw's Get-shaped calls send back. */
static uint8_t raw_block[1 << 20];

typedef struct echo_server {
    grpc_server *server;
    grpc_completion_queue *cq;
    pthread_t threads[2];
    int port;
    int shutdown_tag;
} echo_server;

static void echo_post(echo_server *s)
{
    echo_call *ec = calloc(1, sizeof *ec);
    if (!ec)
        die("out of memory");
    grpc_call_details_init(&ec->details);
    grpc_metadata_array_init(&ec->md);
    if (grpc_server_request_call(s->server, &ec->call, &ec->details, &ec->md, s->cq, s->cq, ec) !=
        GRPC_CALL_OK)
        die("grpc_server_request_call failed");
}

static void echo_free(echo_call *ec)
{
    if (ec->msg)
        grpc_byte_buffer_destroy(ec->msg);
    if (ec->call)
        grpc_call_unref(ec->call);
    grpc_call_details_destroy(&ec->details);
    grpc_metadata_array_destroy(&ec->md);
    free(ec);
}

/* One step of a call's state machine: NEW -> READ -> DONE. */
static void echo_step(echo_server *s, echo_call *ec, int success)
{
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    switch (ec->state) {
    case ECHO_NEW:
        if (!success) { /* shutting down: the request was never matched */
            echo_free(ec);
            return;
        }
        echo_post(s);
        ec->state = ECHO_READ;
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_RECV_MESSAGE;
        ops[1].data.recv_message.recv_message = &ec->msg;
        if (grpc_call_start_batch(ec->call, ops, 2, ec, NULL) != GRPC_CALL_OK)
            echo_free(ec);
        return;
    case ECHO_READ: {
        if (!success) {
            echo_free(ec);
            return;
        }
        ec->state = ECHO_DONE;
        size_t n = 0;
        if (ec->msg && grpc_slice_str_cmp(ec->details.method, "/bench.Echo/Echo") != 0) {
            /* grpc-raw: a Put-shaped call gets an empty reply, a Get-shaped one
             * the number of bytes its 4-byte request asks for (no copy). */
            uint32_t want = 0;
            if (grpc_slice_str_cmp(ec->details.method, "/bench.Raw/Get") == 0) {
                grpc_byte_buffer_reader rd;
                if (grpc_byte_buffer_reader_init(&rd, ec->msg)) {
                    grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
                    if (GRPC_SLICE_LENGTH(all) == sizeof want)
                        memcpy(&want, GRPC_SLICE_START_PTR(all), sizeof want);
                    grpc_slice_unref(all);
                    grpc_byte_buffer_reader_destroy(&rd);
                }
                if (want > sizeof raw_block)
                    want = 0;
            }
            grpc_byte_buffer_destroy(ec->msg);
            grpc_slice sl = grpc_slice_from_static_buffer(raw_block, want);
            ec->msg = grpc_raw_byte_buffer_create(&sl, 1);
        }
        if (ec->msg) {
            ops[n].op = GRPC_OP_SEND_MESSAGE;
            ops[n++].data.send_message.send_message = ec->msg;
        }
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = GRPC_STATUS_OK;
        ops[n++].data.send_status_from_server.trailing_metadata_count = 0;
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n++].data.recv_close_on_server.cancelled = &ec->cancelled;
        if (grpc_call_start_batch(ec->call, ops, n, ec, NULL) != GRPC_CALL_OK)
            echo_free(ec);
        return;
    }
    case ECHO_DONE: echo_free(ec); return;
    }
}

static void *echo_loop(void *arg)
{
    echo_server *s = arg;
    for (;;) {
        const grpc_event ev =
            grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            return NULL;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        if (ev.tag == &s->shutdown_tag) {
            grpc_completion_queue_shutdown(s->cq);
            continue;
        }
        echo_step(s, ev.tag, ev.success);
    }
}

static void echo_start(echo_server *s, int port)
{
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    grpc_arg args[2];
    args[0].type = args[1].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[0].value.integer = args[1].value.integer = MAX_MSG;
    const grpc_channel_args ca = {2, args};
    s->server = grpc_server_create(&ca, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    s->port = grpc_server_add_http2_port(s->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (s->port <= 0)
        die("echo server: cannot bind %s", addr);
    grpc_server_start(s->server);
    /* Enough pending accepts for 64 clients arriving at once. */
    for (int i = 0; i < 96; i++)
        echo_post(s);
    for (int i = 0; i < 2; i++)
        pthread_create(&s->threads[i], NULL, echo_loop, s);
}

static void echo_stop(echo_server *s)
{
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
    grpc_server_cancel_all_calls(s->server);
    for (int i = 0; i < 2; i++)
        pthread_join(s->threads[i], NULL);
    grpc_server_destroy(s->server);
    grpc_completion_queue_destroy(s->cq);
}

/* The echo / raw server as a process of its own (this program started with
 * --echo-server PORT), so that its CPU is measured apart from the clients'
 * and its gRPC runs with the same defaults as latticekvd's. */
static int echo_server_main(int port)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread started later inherits it */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    lkv_grpc_quiet_absl_deadlock_detection();
    grpc_init();
    echo_server s = {0};
    echo_start(&s, port);
    int sig = 0;
    sigwait(&set, &sig);
    echo_stop(&s);
    grpc_shutdown();
    return 0;
}

/* A client's blocking echo call: sends `len` bytes, checks the echo. */
typedef struct echo_client {
    grpc_channel *ch;
    void *method[3]; /* echo_mode */
} echo_client;

/* Echo: the block there and back. Raw put: the block there, an empty reply.
 * Raw get: 4 bytes there, the block back. */
typedef enum { MODE_ECHO, MODE_RAW_PUT, MODE_RAW_GET } echo_mode;

static int echo_client_open(echo_client *ec, int port)
{
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    grpc_arg args[3];
    args[0].type = args[1].type = args[2].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[2].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[0].value.integer = args[1].value.integer = MAX_MSG;
    args[2].value.integer = 1;
    const grpc_channel_args ca = {3, args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    ec->ch = grpc_channel_create(target, creds, &ca);
    grpc_channel_credentials_release(creds);
    static const char *const paths[3] = {"/bench.Echo/Echo", "/bench.Raw/Put", "/bench.Raw/Get"};
    for (int m = 0; m < 3; m++)
        ec->method[m] = grpc_channel_register_call(ec->ch, paths[m], NULL, NULL);
    return ec->ch ? 0 : -1;
}

/* 0 on success; else -1 with the reason in err. */
static int echo_client_call(echo_client *ec, echo_mode mode, const void *data, size_t len,
                            char *err, size_t cap)
{
    const uint32_t want = (uint32_t)len;
    grpc_slice out = mode == MODE_RAW_GET ? grpc_slice_from_copied_buffer((const char *)&want, 4)
                                          : grpc_slice_from_copied_buffer(data, len);
    const size_t expect = mode == MODE_RAW_PUT ? 0 : len;
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&out, 1);
    grpc_slice_unref(out);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_call *call = grpc_channel_create_registered_call(
        ec->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, ec->method[mode],
        gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    grpc_metadata_array im, tm;
    grpc_metadata_array_init(&im);
    grpc_metadata_array_init(&tm);
    grpc_byte_buffer *recv = NULL;
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    /* A connection attempt that fails while 64 clients connect at once is
     * retried instead of failing the cell. */
    ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &im;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &tm;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    int rc = -1;
    snprintf(err, cap, "echo: grpc_call_start_batch failed");
    if (grpc_call_start_batch(call, ops, 6, ops, NULL) == GRPC_CALL_OK) {
        const grpc_event ev =
            grpc_completion_queue_pluck(cq, ops, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE || status != GRPC_STATUS_OK || !recv) {
            char *d = grpc_slice_to_c_string(details);
            snprintf(err, cap, "echo: event %d, status %d (%s)%s", (int)ev.type, (int)status, d,
                     recv ? "" : ", no message");
            gpr_free(d);
        } else {
            /* Read the echo into one buffer, as a real consumer would. */
            grpc_byte_buffer_reader rd;
            if (grpc_byte_buffer_reader_init(&rd, recv)) {
                grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
                rc = GRPC_SLICE_LENGTH(all) == expect ? 0 : -1;
                if (rc)
                    snprintf(err, cap, "echo: %zu bytes back, want %zu", GRPC_SLICE_LENGTH(all),
                             expect);
                grpc_slice_unref(all);
                grpc_byte_buffer_reader_destroy(&rd);
            }
        }
    }
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_byte_buffer_destroy(send);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&im);
    grpc_metadata_array_destroy(&tm);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Data                                                                      */
/* ------------------------------------------------------------------------ */

static uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* A KV-like block: normal values with per-channel log-normal scales. */
static void fill_block(uint16_t *dst, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    float scale[HEADS * DIM];
    for (size_t c = 0; c < HEADS * DIM; c++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        scale[c] = expf(0.5f * ((float)(s >> 40) / 16777216.0f - 0.5f) * 3.4f);
    }
    for (size_t i = 0; i < n; i += 2) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        const double u1 = ((double)(s >> 11) + 1.0) * 0x1p-53;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        const double u2 = (double)(s >> 11) * 0x1p-53;
        const double r = sqrt(-2.0 * log(u1));
        dst[i] = f32_to_bf16((float)(r * cos(6.283185307179586 * u2)) * scale[i % (HEADS * DIM)]);
        if (i + 1 < n)
            dst[i + 1] = f32_to_bf16((float)(r * sin(6.283185307179586 * u2)) *
                                     scale[(i + 1) % (HEADS * DIM)]);
    }
}

/* ------------------------------------------------------------------------ */
/* Cells                                                                     */
/* ------------------------------------------------------------------------ */

typedef enum {
    SYS_LKV,
    SYS_LKV_NB,
    SYS_LKV_STREAM,
    SYS_ECHO,
    SYS_RAW,
    SYS_REDIS,
    SYS_COUNT
} sys_id;
static const char *const sys_name[SYS_COUNT] = {"latticekv", "latticekv-nb", "latticekv-stream",
                                                "grpc-echo", "grpc-raw",     "redis"};
/* Blocks per PutStream / GetStream call in the latticekv-stream cells. */
#define STREAM_BLOCKS 8
typedef enum { OP_PUT, OP_GET, OP_ECHO } op_id;
static const char *const op_name[] = {"put", "get", "echo"};

typedef struct cell_cfg {
    sys_id sys;
    op_id op;
    int tokens, clients;
    double seconds;
    const char *lkv_addr;
    int port;         /* echo or redis */
    pid_t server_pid; /* latticekvd or redis-server; 0 for the in-process echo */
} cell_cfg;

typedef struct worker {
    pthread_t tid;
    const cell_cfg *cfg;
    int id;
    pthread_barrier_t *ready;
    volatile int *stop;
    double *lat;
    size_t n, cap;
    double t_end;
    int failed;
    char err[600];
    /* connections, kept between the Put and the Get cell of a system */
} worker;

typedef struct conn {
    lkv_client *lkv;
    echo_client echo;
    redisContext *redis;
} conn;

static conn conns[64];

static void lat_push(worker *w, double v)
{
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 1024;
        double *nl = realloc(w->lat, w->cap * sizeof *nl);
        if (!nl)
            die("out of memory");
        w->lat = nl;
    }
    w->lat[w->n++] = v;
}

/* One call of the cell's operation; 0 on success. */
static int one_op(worker *w, const uint16_t *block, size_t bytes, const char *key)
{
    const cell_cfg *c = w->cfg;
    conn *k = &conns[w->id];
    lkv_client_error e;
    switch (c->sys) {
    case SYS_LKV:
    case SYS_LKV_NB: {
        if (c->op == OP_PUT) {
            const lkv_tensor t = {.dtype = 1,
                                  .ndim = 4,
                                  .shape = {2, (uint64_t)c->tokens, HEADS, DIM},
                                  .data = (void *)block,
                                  .data_bytes = bytes};
            if (lkv_client_put(k->lkv, "bench", (lkv_key){key, strlen(key)}, &t, NULL, NULL, &e))
                return snprintf(w->err, sizeof w->err, "put: %s", e.msg), -1;
            return 0;
        }
        lkv_tensor out;
        if (lkv_client_get(k->lkv, "bench", (lkv_key){key, strlen(key)}, 1, &out, NULL, &e))
            return snprintf(w->err, sizeof w->err, "get: %s", e.msg), -1;
        const int bad = out.data_bytes != bytes;
        lkv_tensor_clear(&out);
        return bad ? (snprintf(w->err, sizeof w->err, "get: wrong size"), -1) : 0;
    }
    case SYS_LKV_STREAM: {
        char names[STREAM_BLOCKS][80];
        lkv_key keys[STREAM_BLOCKS];
        lkv_tensor t[STREAM_BLOCKS];
        for (int j = 0; j < STREAM_BLOCKS; j++) {
            snprintf(names[j], sizeof names[j], "%s-%d", key, j);
            keys[j] = (lkv_key){names[j], strlen(names[j])};
            t[j] = (lkv_tensor){.dtype = 1,
                                .ndim = 4,
                                .shape = {2, (uint64_t)c->tokens, HEADS, DIM},
                                .data = (void *)block,
                                .data_bytes = bytes};
        }
        if (c->op == OP_PUT) {
            if (lkv_client_put_many(k->lkv, "bench", keys, t, STREAM_BLOCKS, NULL, NULL, NULL, &e))
                return snprintf(w->err, sizeof w->err, "put_many: %s", e.msg), -1;
            return 0;
        }
        const int rc = lkv_client_get_many(k->lkv, "bench", keys, STREAM_BLOCKS, 1, t, NULL, &e);
        int bad = rc != 0;
        for (int j = 0; j < STREAM_BLOCKS; j++) {
            bad |= !rc && t[j].data_bytes != bytes;
            lkv_tensor_clear(&t[j]);
        }
        return bad ? (snprintf(w->err, sizeof w->err, "get_many: %s", rc ? e.msg : "wrong size"),
                      -1)
                   : 0;
    }
    case SYS_ECHO:
        return echo_client_call(&k->echo, MODE_ECHO, block, bytes, w->err, sizeof w->err);
    case SYS_RAW:
        return echo_client_call(&k->echo, c->op == OP_PUT ? MODE_RAW_PUT : MODE_RAW_GET, block,
                                bytes, w->err, sizeof w->err);
    case SYS_REDIS: {
        redisReply *r = c->op == OP_PUT ? redisCommand(k->redis, "SET %s %b", key, block, bytes)
                                        : redisCommand(k->redis, "GET %s", key);
        int bad = !r || (c->op == OP_PUT ? r->type != REDIS_REPLY_STATUS
                                         : r->type != REDIS_REPLY_STRING || r->len != bytes);
        if (bad)
            snprintf(w->err, sizeof w->err, "redis %s: %s", op_name[c->op],
                     r ? (r->type == REDIS_REPLY_ERROR ? r->str : "bad reply") : k->redis->errstr);
        freeReplyObject(r);
        return bad ? -1 : 0;
    }
    default: return -1;
    }
}

static void *worker_run(void *arg)
{
    worker *w = arg;
    const cell_cfg *c = w->cfg;
    const size_t elems = 2u * (size_t)c->tokens * HEADS * DIM, bytes = elems * 2;
    uint16_t *block = malloc(bytes);
    if (!block)
        die("out of memory");
    fill_block(block, elems, (uint64_t)c->tokens * 1000u + (uint64_t)w->id);
    char key[64];
    snprintf(key, sizeof key, "blk-%d-%d", c->tokens, w->id);
    /* Warm-up: connect, and for Get make sure the key exists (a Put of the
     * system's own kind). */
    if (c->op == OP_GET) {
        cell_cfg put = *c;
        put.op = OP_PUT;
        w->cfg = &put;
        w->failed = one_op(w, block, bytes, key);
        w->cfg = c;
    }
    if (!w->failed)
        w->failed = one_op(w, block, bytes, key);
    pthread_barrier_wait(w->ready);
    while (!w->failed && !*w->stop) {
        const double t0 = now_s();
        w->failed = one_op(w, block, bytes, key);
        const double t1 = now_s();
        if (!w->failed)
            lat_push(w, t1 - t0);
    }
    w->t_end = now_s();
    free(block);
    return NULL;
}

typedef struct result {
    sys_id sys;
    op_id op;
    int tokens, clients;
    size_t calls;
    double seconds, gbps, p50_ms, p99_ms, calls_per_s;
    double min_gbps, max_gbps; /* over the rounds */
    /* CPU over the window: the server process and this process (the clients;
     * for the echo also its server) in microseconds per call, and the
     * machine's idle and other-process shares of all cores, in percent. */
    double server_us, client_us, idle_pct, other_pct;
} result;

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

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(const double *v, size_t n, double q)
{
    if (!n)
        return 0;
    size_t i = (size_t)ceil(q * (double)n);
    return v[(i ? i - 1 : 0) < n ? (i ? i - 1 : 0) : n - 1];
}

static result run_cell(const cell_cfg *c)
{
    worker w[64];
    volatile int stop = 0;
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, (unsigned)c->clients + 1);
    for (int i = 0; i < c->clients; i++) {
        w[i] = (worker){.cfg = c, .id = i, .ready = &ready, .stop = &stop};
        if (pthread_create(&w[i].tid, NULL, worker_run, &w[i]) != 0)
            die("pthread_create");
    }
    pthread_barrier_wait(&ready);
    const double t0 = now_s();
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
            die("%s %s tokens=%d client %d: %s", sys_name[c->sys], op_name[c->op], c->tokens, i,
                w[i].err);
        t_end = w[i].t_end > t_end ? w[i].t_end : t_end;
        n += w[i].n;
    }
    const double srv1 = c->server_pid ? cpu_s(c->server_pid) : 0, self1 = cpu_s(0);
    double busy1, idle1;
    machine_s(&busy1, &idle1);
    pthread_barrier_destroy(&ready);
    double *all = malloc((n ? n : 1) * sizeof *all);
    size_t off = 0;
    for (int i = 0; i < c->clients; i++) {
        memcpy(all + off, w[i].lat, w[i].n * sizeof *all);
        off += w[i].n;
        free(w[i].lat);
    }
    qsort(all, n, sizeof *all, cmp_double);
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
                .p50_ms = quantile(all, n, 0.5) * 1e3,
                .p99_ms = quantile(all, n, 0.99) * 1e3,
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

/* Opens (or closes, with open=0) the per-client connections of a system. */
static void connections(sys_id sys, const char *lkv_addr, int port, int n, int open)
{
    for (int i = 0; i < n; i++) {
        conn *k = &conns[i];
        if (!open) {
            lkv_client_free(k->lkv);
            if (k->echo.ch)
                grpc_channel_destroy(k->echo.ch);
            if (k->redis)
                redisFree(k->redis);
            memset(k, 0, sizeof *k);
            continue;
        }
        lkv_client_error e;
        const lkv_client_options o = {.own_connection = 1, .wait_for_ready = 1};
        if ((sys == SYS_LKV || sys == SYS_LKV_NB || sys == SYS_LKV_STREAM) &&
            lkv_client_create(lkv_addr, &o, &k->lkv, &e))
            die("client: %s", e.msg);
        if ((sys == SYS_ECHO || sys == SYS_RAW) && echo_client_open(&k->echo, port))
            die("echo client");
        if (sys == SYS_REDIS && !(k->redis = redis_connect(port)))
            die("cannot connect to redis on port %d", port);
    }
}

/* ------------------------------------------------------------------------ */
/* Main                                                                      */
/* ------------------------------------------------------------------------ */

static void cpu_model(char *out, size_t cap)
{
    snprintf(out, cap, "unknown-cpu");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            const char *v = strchr(line, ':');
            if (v) {
                v++;
                while (*v == ' ' || *v == '\t')
                    v++;
                snprintf(out, cap, "%s", v);
                out[strcspn(out, "\n")] = '\0';
            }
            break;
        }
    }
    if (f)
        fclose(f);
}

static void slug(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    int dash = 0;
    for (; *s && n + 1 < cap; s++) {
        if (isalnum((unsigned char)*s)) {
            if (dash && n)
                out[n++] = '-';
            dash = 0;
            if (n + 1 < cap)
                out[n++] = (char)tolower((unsigned char)*s);
        } else {
            dash = 1;
        }
    }
    out[n] = '\0';
}

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

static const result *find(const result *rs, size_t n, sys_id s, op_id op, int t, int c)
{
    for (size_t i = 0; i < n; i++)
        if (rs[i].sys == s && rs[i].op == op && rs[i].tokens == t && rs[i].clients == c)
            return &rs[i];
    return NULL;
}

/* Put+Get rate: both directions' bytes over the time of one Put plus one Get. */
static double put_get(const result *rs, size_t n, sys_id s, int t, int c)
{
    if (s == SYS_ECHO) {
        const result *e = find(rs, n, s, OP_ECHO, t, c);
        return e ? e->gbps : 0;
    }
    const result *p = find(rs, n, s, OP_PUT, t, c), *g = find(rs, n, s, OP_GET, t, c);
    return p && g && p->gbps > 0 && g->gbps > 0 ? 2.0 / (1.0 / p->gbps + 1.0 / g->gbps) : 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--echo-server"))
        return echo_server_main(atoi(argv[2]));
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
                const char *hit = strstr(argv[i + 1], sys_name[k]);
                /* "latticekv" is a prefix of "latticekv-nb": match whole items. */
                while (hit && ((hit > argv[i + 1] && hit[-1] != ',') ||
                               (hit[strlen(sys_name[k])] && hit[strlen(sys_name[k])] != ',')))
                    hit = strstr(hit + 1, sys_name[k]);
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
     * client library here (gRPC, lkv_client, hiredis); with glibc's default
     * thresholds each would be a fresh mmap with page faults (toolchain.md,
     * pitfall 4), which would measure the allocator, not the systems. */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    atexit(stop_children);
    /* The clients' gRPC settings (the daemons started here make their own):
     * gRPC's default epoll1 poller lets one thread at a time poll every
     * connection of the process and hand completions to the others, which
     * left a fifth of the two cores idle with 64 client threads; the "poll"
     * engine lets each client thread poll its own call. And abseil's debug
     * deadlock detector off (lkv_grpc_tune.h). Both apply to every gRPC
     * system here (latticekv, echo, raw); GRPC_POLL_STRATEGY set by the
     * caller wins. */
    if (!getenv("GRPC_POLL_STRATEGY")) {
        setenv("GRPC_POLL_STRATEGY", "poll", 1);
        clients_poll_strategy = 1;
    }
    lkv_grpc_quiet_absl_deadlock_detection();
    grpc_init();

    char cpu[256], cslug[256], default_out[1024];
    cpu_model(cpu, sizeof cpu);
    slug(cpu, cslug, sizeof cslug);
    snprintf(default_out, sizeof default_out, "%s/bench/results/service-%s.json", LKV_SOURCE_DIR,
             cslug);
    if (!out)
        out = default_out;
    double load_start = 0;
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf", &load_start) != 1)
            load_start = 0;
        fclose(la);
    }
    char tmp[] = "/tmp/lkv-service-bench-XXXXXX";
    if (!mkdtemp(tmp))
        die("mkdtemp: %s", strerror(errno));
    snprintf(g_logdir, sizeof g_logdir, "%s", tmp);
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
            port[s] = free_port();
            snprintf(addr[s], sizeof addr[s], "127.0.0.1:%d", port[s]);
            pid[s] = start_daemon(daemon, backend, port[s], s == SYS_LKV_NB ? 0 : 200, log_lkv);
        } else if (s == SYS_ECHO || s == SYS_RAW) { /* one server process for both */
            const int other = s == SYS_ECHO ? SYS_RAW : SYS_ECHO;
            if (pid[other] > 0) {
                pid[s] = pid[other];
                port[s] = port[other];
            } else {
                char p[16];
                port[s] = free_port();
                snprintf(p, sizeof p, "%d", port[s]);
                char *const av[] = {"/proc/self/exe", "--echo-server", p, NULL};
                pid[s] = spawn(av, log_echo);
                wait_port(port[s], "echo server", log_echo);
            }
        } else {
            port[s] = free_port();
            pid[s] = start_redis(redis, port[s], tmp, log_redis);
        }
    }
    static result runs[MAX_ROUNDS * MAX_CELLS];
    size_t nruns = 0;
    for (int round = 0; round < rounds; round++)
        for (int ti = 0; ti < nt; ti++)
            for (int ci = 0; ci < nc; ci++)
                for (int s = 0; s < SYS_COUNT; s++) {
                    if (!(systems & (1u << s)))
                        continue;
                    const int tokens = token_list[ti], clients = cl[ci];
                    connections((sys_id)s, addr[s], port[s], clients, 1);
                    for (int op = OP_PUT; op <= OP_ECHO; op++) {
                        if ((s == SYS_ECHO) != (op == OP_ECHO))
                            continue;
                        /* The stream cells share the batching daemon. */
                        const pid_t sp = s == SYS_LKV_STREAM && !pid[s] ? pid[SYS_LKV] : pid[s];
                        const cell_cfg cfg = {(sys_id)s, (op_id)op, tokens,  clients,
                                              seconds,   addr[s],   port[s], sp};
                        fprintf(stderr, "\rround %d/%d %-16s %-4s tokens=%-3d clients=%-2d ...",
                                round + 1, rounds, sys_name[s], op_name[op], tokens, clients);
                        runs[nruns++] = run_cell(&cfg);
                    }
                    connections((sys_id)s, addr[s], port[s], clients, 0);
                }
    for (int s = 0; s < SYS_COUNT; s++)
        if (pid[s] > 0)
            stop_child(pid[s], sys_name[s]);

    /* The median round of each cell. */
    static result rs[MAX_CELLS];
    size_t nr = 0;
    const size_t per_round = nruns / (size_t)rounds;
    for (size_t i = 0; i < per_round; i++) {
        result r[MAX_ROUNDS];
        for (int k = 0; k < rounds; k++)
            r[k] = runs[(size_t)k * per_round + i];
        for (int a = 1; a < rounds; a++) /* insertion sort by throughput */
            for (int b = a; b > 0 && r[b].gbps < r[b - 1].gbps; b--) {
                const result t = r[b];
                r[b] = r[b - 1];
                r[b - 1] = t;
            }
        rs[nr] = r[rounds / 2];
        rs[nr].min_gbps = r[0].gbps;
        rs[nr].max_gbps = r[rounds - 1].gbps;
        nr++;
    }
    fprintf(stderr, "\r%60s\r", "");

    printf("service_bench on %s (%ld cores), median of %d rounds of %.1f s per cell;\n"
           "block = K,V x T tokens x %d heads x %d, bf16\n\n",
           cpu, sysconf(_SC_NPROCESSORS_ONLN), rounds, seconds, HEADS, DIM);
    printf("%-16s %-4s %6s %7s %9s %15s %9s %9s %9s %8s %8s %6s %6s\n", "system", "op", "tokens",
           "clients", "GB/s", "(min..max)", "calls/s", "p50 ms", "p99 ms", "srv us", "cli us",
           "idle%", "other%");
    for (size_t i = 0; i < nr; i++)
        printf("%-16s %-4s %6d %7d %9.3f %7.3f..%-7.3f %9.0f %9.3f %9.3f %8.1f %8.1f %6.1f %6.1f\n",
               sys_name[rs[i].sys], op_name[rs[i].op], rs[i].tokens, rs[i].clients, rs[i].gbps,
               rs[i].min_gbps, rs[i].max_gbps, rs[i].calls_per_s, rs[i].p50_ms, rs[i].p99_ms,
               rs[i].server_us, rs[i].client_us, rs[i].idle_pct, rs[i].other_pct);
    printf("\nsrv us / cli us: CPU microseconds per call of the server process / of this process\n"
           "(the clients); idle%% / other%%: the\n"
           "machine's idle share and the share used by other processes during the cell.\n");
    printf("\nPut+Get GB/s (bf16 in + out); stream = %d blocks per PutStream/GetStream call\n"
           "%6s %7s %10s %12s %8s %10s %9s %8s %10s %10s %12s %9s\n",
           STREAM_BLOCKS, "tokens", "clients", "latticekv", "latticekv-nb", "stream", "grpc-echo",
           "grpc-raw", "redis", "lkv/redis", "batch gain", "stream/redis", "raw/redis");
    for (int ti = 0; ti < nt; ti++)
        for (int ci = 0; ci < nc; ci++) {
            const int t = token_list[ti], c = cl[ci];
            const double a = put_get(rs, nr, SYS_LKV, t, c), b = put_get(rs, nr, SYS_LKV_NB, t, c),
                         st = put_get(rs, nr, SYS_LKV_STREAM, t, c),
                         e = put_get(rs, nr, SYS_ECHO, t, c), w = put_get(rs, nr, SYS_RAW, t, c),
                         r = put_get(rs, nr, SYS_REDIS, t, c);
            printf("%6d %7d %10.3f %12.3f %8.3f %10.3f %9.3f %8.3f %10.2f %10.2f %12.2f %9.2f\n", t,
                   c, a, b, st, e, w, r, r > 0 ? a / r : 0, b > 0 ? a / b : 0, r > 0 ? st / r : 0,
                   r > 0 ? w / r : 0);
        }

    FILE *f = fopen(out, "w");
    if (!f)
        die("cannot write %s: %s", out, strerror(errno));
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fprintf(f,
            "{\n  \"bench\": \"service_bench\",\n  \"cpu\": \"%s\",\n  \"cores\": %ld,\n"
            "  \"date\": \"%s\",\n  \"backend\": \"%s\",\n  \"seconds_per_cell\": %.2f,\n"
            "  \"rounds\": %d,\n  \"load_average_at_start\": %.2f,\n"
            "  \"block\": {\"kv\": 2, \"heads\": %d, \"head_dim\": %d, \"dtype\": \"bf16\"},\n"
            "  \"batching\": {\"latticekv\": \"--batch-max-wait-us 200\", "
            "\"latticekv-nb\": \"--batch-max-wait-us 0\", \"latticekv-stream\": "
            "\"--batch-max-wait-us 200, %d blocks per PutStream/GetStream call\"},\n"
            "  \"cells\": [\n",
            cpu, sysconf(_SC_NPROCESSORS_ONLN), date, backend, seconds, rounds, load_start, HEADS,
            DIM, STREAM_BLOCKS);
    for (size_t i = 0; i < nr; i++)
        fprintf(f,
                "    {\"system\": \"%s\", \"op\": \"%s\", \"tokens\": %d, \"clients\": %d, "
                "\"block_bytes\": %d, \"calls\": %zu, \"seconds\": %.4f, \"gbps_bf16\": %.4f, "
                "\"gbps_min\": %.4f, \"gbps_max\": %.4f, "
                "\"calls_per_s\": %.1f, \"p50_ms\": %.4f, \"p99_ms\": %.4f, "
                "\"server_cpu_us_per_call\": %.1f, \"client_cpu_us_per_call\": %.1f, "
                "\"idle_pct\": %.1f, \"other_pct\": %.1f}%s\n",
                sys_name[rs[i].sys], op_name[rs[i].op], rs[i].tokens, rs[i].clients,
                2 * rs[i].tokens * HEADS * DIM * 2, rs[i].calls, rs[i].seconds, rs[i].gbps,
                rs[i].min_gbps, rs[i].max_gbps, rs[i].calls_per_s, rs[i].p50_ms, rs[i].p99_ms,
                rs[i].server_us, rs[i].client_us, rs[i].idle_pct, rs[i].other_pct,
                i + 1 < nr ? "," : "");
    fprintf(f, "  ],\n  \"put_get_gbps\": [\n");
    int first = 1;
    for (int ti = 0; ti < nt; ti++)
        for (int ci = 0; ci < nc; ci++) {
            const int t = token_list[ti], c = cl[ci];
            const double a = put_get(rs, nr, SYS_LKV, t, c), b = put_get(rs, nr, SYS_LKV_NB, t, c),
                         st = put_get(rs, nr, SYS_LKV_STREAM, t, c),
                         e = put_get(rs, nr, SYS_ECHO, t, c), w = put_get(rs, nr, SYS_RAW, t, c),
                         r = put_get(rs, nr, SYS_REDIS, t, c);
            fprintf(f,
                    "%s    {\"tokens\": %d, \"clients\": %d, \"latticekv\": %.4f, "
                    "\"latticekv_nb\": %.4f, \"latticekv_stream\": %.4f, \"grpc_echo\": %.4f, "
                    "\"grpc_raw\": %.4f, \"redis\": %.4f, \"latticekv_over_redis\": %.3f, "
                    "\"batching_gain\": %.3f, \"stream_over_redis\": %.3f, "
                    "\"grpc_raw_over_redis\": %.3f}",
                    first ? "" : ",\n", t, c, a, b, st, e, w, r, r > 0 ? a / r : 0,
                    b > 0 ? a / b : 0, r > 0 ? st / r : 0, r > 0 ? w / r : 0);
            first = 0;
        }
    fprintf(f, "\n  ]\n}\n");
    fclose(f);
    printf("\nwrote %s\n", out);
    grpc_shutdown();
    stop_children();
    remove_logdir();
    return 0;
}
