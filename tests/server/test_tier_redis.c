/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_tier_redis.c - the Redis tier against real redis-server processes
 * that each test starts on free loopback ports (in temporary directories)
 * and stops again: a single server (round trips, binary keys, misses,
 * pipelined requests, a restart), a 3-master Redis Cluster (keys over every
 * master, ASK and MOVED during a slot migration, a master killed and
 * restarted), bad seeds and the password file. Skipped when redis-server
 * is missing.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "lkv_tier.h"

/* ---- servers the tests start ------------------------------------------- */

#define MAX_SRV 4

typedef struct srv {
    pid_t pid;
    int port;
    int cluster;
    char dir[128];
    char pass[64];
} srv;

static srv g_srv[MAX_SRV];
static int g_nsrv;
static uv_loop_t g_loop;
static char g_tmp[128]; /* scratch directory (password files) */

static const char *server_bin(void)
{
    const char *p = getenv("LKV_REDIS_SERVER");
    return p && p[0] ? p : "/usr/bin/redis-server";
}

static const char *cli_bin(void)
{
    const char *p = getenv("LKV_REDIS_CLI");
    return p && p[0] ? p : "/usr/bin/redis-cli";
}

static void need_redis(void)
{
    if (access(server_bin(), X_OK) != 0 || access(cli_bin(), X_OK) != 0)
        cr_skip_test("redis-server or redis-cli not found (%s, %s): the Redis tier tests need "
                     "them (set LKV_REDIS_SERVER / LKV_REDIS_CLI)",
                     server_bin(), cli_bin());
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    g_nsrv = 0;
    memset(g_srv, 0, sizeof g_srv);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/lkv_redis_test_XXXXXX");
    cr_assert_not_null(mkdtemp(g_tmp));
    cr_assert_eq(uv_loop_init(&g_loop), 0);
}

static void stop_srv(srv *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

static void teardown(void)
{
    for (int i = 0; i < g_nsrv; i++) {
        stop_srv(&g_srv[i]);
        if (g_srv[i].dir[0])
            nftw(g_srv[i].dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    nftw(g_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    uv_run(&g_loop, UV_RUN_NOWAIT);
    uv_loop_close(&g_loop);
}

TestSuite(tier_redis, .init = setup, .fini = teardown, .timeout = 120);

/* A port p where both p and p + 10000 (the cluster bus) can be bound. */
static int can_bind(int port)
{
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static int free_port(void)
{
    static unsigned seq;
    unsigned x = (unsigned)getpid() * 7919u + (unsigned)time(NULL) + seq++ * 104729u;
    for (int tries = 0; tries < 2000; tries++) {
        x = x * 1103515245u + 12345u;
        const int p = 20000 + (int)((x >> 8) % 10000);
        int taken = 0;
        for (int i = 0; i < g_nsrv; i++)
            taken |= g_srv[i].port == p;
        if (!taken && can_bind(p) && can_bind(p + 10000))
            return p;
    }
    cr_assert_fail("no free loopback port pair found");
    return -1;
}

static redisContext *connect_sync(int port)
{
    const struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* One command on a fresh connection; the reply (caller frees) or NULL. */
static redisReply *cmd(const srv *s, const char *fmt, ...)
{
    redisContext *c = connect_sync(s->port);
    if (!c)
        return NULL;
    if (s->pass[0]) {
        redisReply *a = redisCommand(c, "AUTH %s", s->pass);
        freeReplyObject(a);
    }
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts (or restarts, same port and directory) server s; waits for PING. */
static void launch(srv *s)
{
    char port[16], log[200];
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(log, sizeof log, "%s/redis.log", s->dir);
    const char *argv[40];
    int a = 0;
    argv[a++] = server_bin();
    argv[a++] = "--bind";
    argv[a++] = "127.0.0.1";
    argv[a++] = "--port";
    argv[a++] = port;
    argv[a++] = "--save";
    argv[a++] = "";
    argv[a++] = "--appendonly";
    argv[a++] = "no";
    argv[a++] = "--daemonize";
    argv[a++] = "no";
    argv[a++] = "--dir";
    argv[a++] = s->dir;
    argv[a++] = "--logfile";
    argv[a++] = log;
    if (s->pass[0]) {
        argv[a++] = "--requirepass";
        argv[a++] = s->pass;
    }
    if (s->cluster) {
        argv[a++] = "--cluster-enabled";
        argv[a++] = "yes";
        argv[a++] = "--cluster-config-file";
        argv[a++] = "nodes.conf";
        /* Long enough that a node killed for a few seconds is never failed
         * over, and the others keep serving their slots meanwhile. */
        argv[a++] = "--cluster-node-timeout";
        argv[a++] = "60000";
        argv[a++] = "--cluster-require-full-coverage";
        argv[a++] = "no";
    }
    argv[a] = NULL;
    const pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        const int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    for (int i = 0; i < 200; i++) {
        redisReply *r = cmd(s, "PING");
        const int ok = r && r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        if (ok)
            return;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            s->pid = 0;
            cr_assert_fail("redis-server on port %d exited at start (see %s)", s->port, log);
        }
        sleep_ms(50);
    }
    cr_assert_fail("redis-server on port %d did not answer PING within 10 s", s->port);
}

static srv *start_srv(int cluster, const char *pass)
{
    cr_assert_lt(g_nsrv, MAX_SRV);
    srv *s = &g_srv[g_nsrv++];
    s->cluster = cluster;
    snprintf(s->pass, sizeof s->pass, "%s", pass ? pass : "");
    snprintf(s->dir, sizeof s->dir, "/tmp/lkv_redis_node_XXXXXX");
    cr_assert_not_null(mkdtemp(s->dir));
    s->port = free_port();
    launch(s);
    return s;
}

/* Three cluster masters with every slot assigned, cluster_state:ok. */
static void start_cluster(srv *n[3])
{
    for (int i = 0; i < 3; i++)
        n[i] = start_srv(1, NULL);
    char addr[3][32], log[256];
    for (int i = 0; i < 3; i++)
        snprintf(addr[i], sizeof addr[i], "127.0.0.1:%d", n[i]->port);
    snprintf(log, sizeof log, "%s/create.log", g_tmp);
    const char *argv[] = {cli_bin(), "--cluster",          "create", addr[0],         addr[1],
                          addr[2],   "--cluster-replicas", "0",      "--cluster-yes", NULL};
    /* redis-cli run directly (no shell), its output kept in create.log */
    const pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
    if (pid == 0) {
        const int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(126);
        close(fd);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "redis-cli --cluster create failed (status %d, %s)", status, log);
    for (int tries = 0; tries < 400; tries++) {
        int ok = 0;
        for (int i = 0; i < 3; i++) {
            redisReply *r = cmd(n[i], "CLUSTER INFO");
            ok += r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok");
            freeReplyObject(r);
        }
        if (ok == 3)
            return;
        sleep_ms(50);
    }
    cr_assert_fail("the cluster did not reach cluster_state:ok within 20 s");
}

/* ---- tier helpers ------------------------------------------------------- */

typedef struct op {
    lkv_tier_req req;
    int done;
} op;

static void on_done(lkv_tier_req *r)
{
    ((op *)r->ud)->done++;
}

static void wait_op(op *o)
{
    while (!o->done)
        uv_run(&g_loop, UV_RUN_ONCE);
    cr_assert_eq(o->done, 1, "done() ran %d times", o->done);
}

static void init_op(op *o, const char *ns, const void *key, size_t key_len)
{
    memset(o, 0, sizeof *o);
    o->req.ns = ns;
    o->req.ns_len = strlen(ns);
    o->req.key = key;
    o->req.key_len = key_len;
    o->req.done = on_done;
    o->req.ud = o;
}

static lkv_blob *make_blob(size_t len, uint32_t seed)
{
    lkv_blob *b = lkv_blob_create(len);
    cr_assert_not_null(b);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b->data[i] = (uint8_t)x;
    }
    return b;
}

static lkv_status put_b(lkv_tier *t, const char *ns, const void *key, size_t klen, size_t len,
                        uint32_t seed, lkv_diag *diag)
{
    lkv_blob *b = make_blob(len, seed);
    op o;
    init_op(&o, ns, key, klen);
    o.req.blob = b;
    lkv_tier_put(t, &o.req);
    lkv_blob_unref(b); /* the tier holds its own reference */
    wait_op(&o);
    if (diag)
        *diag = o.req.diag;
    return o.req.status;
}

static lkv_status put_s(lkv_tier *t, const char *ns, const char *key, size_t len, uint32_t seed)
{
    return put_b(t, ns, key, strlen(key), len, seed, NULL);
}

/* Gets and compares with make_blob(len, seed); returns the status, *found. */
static lkv_status get_check(lkv_tier *t, const char *ns, const void *key, size_t klen, size_t len,
                            uint32_t seed, int *found, lkv_diag *diag)
{
    op o;
    init_op(&o, ns, key, klen);
    lkv_tier_get(t, &o.req);
    wait_op(&o);
    cr_assert_eq(o.req.found, o.req.blob != NULL);
    *found = o.req.found;
    if (diag)
        *diag = o.req.diag;
    if (o.req.blob) {
        lkv_blob *want = make_blob(len, seed);
        cr_assert_eq(o.req.blob->len, want->len, "length %zu, expected %zu", o.req.blob->len,
                     want->len);
        cr_assert(memcmp(o.req.blob->data, want->data, len) == 0, "bytes differ");
        lkv_blob_unref(want);
        lkv_blob_unref(o.req.blob);
    }
    return o.req.status;
}

static lkv_status del_k(lkv_tier *t, const char *ns, const void *key, size_t klen, int *found)
{
    op o;
    init_op(&o, ns, key, klen);
    lkv_tier_del(t, &o.req);
    wait_op(&o);
    *found = o.req.found;
    return o.req.status;
}

static lkv_tier *make_tier(const char *const *seeds, size_t n, const char *pass_file)
{
    lkv_redis_config cfg;
    lkv_redis_config_defaults(&cfg);
    cfg.seeds = seeds;
    cfg.nseeds = n;
    cfg.password_file = pass_file;
    cfg.backoff_min_ms = 20;
    cfg.backoff_max_ms = 200;
    lkv_tier *t = NULL;
    lkv_diag d = {0};
    const lkv_status st = lkv_tier_redis_create(&g_loop, &cfg, &t, &d);
    cr_assert_eq(st, LKV_OK, "create: %s", d.msg);
    cr_assert_not_null(t);
    return t;
}

static void on_closed(void *ud)
{
    ++*(int *)ud;
}

static void close_tier(lkv_tier *t)
{
    int closed = 0;
    t->close(t, on_closed, &closed);
    while (!closed)
        uv_run(&g_loop, UV_RUN_ONCE);
    cr_assert_eq(closed, 1);
}

static void seed_of(char *out, size_t cap, const srv *s)
{
    snprintf(out, cap, "redis://127.0.0.1:%d", s->port);
}

/* Runs the loop for about ms milliseconds. */
static void on_timer(uv_timer_t *h)
{
    ++*(int *)h->data;
}
static void run_for(int ms)
{
    uv_timer_t tm;
    int fired = 0;
    uv_timer_init(&g_loop, &tm);
    tm.data = &fired;
    uv_timer_start(&tm, on_timer, (uint64_t)ms, 0);
    while (!fired)
        uv_run(&g_loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tm, NULL);
    uv_run(&g_loop, UV_RUN_NOWAIT);
}

/* ---- key layout and slots (no server) ----------------------------------- */

static unsigned slot_s(const char *k)
{
    return lkv_redis_key_slot((const uint8_t *)k, strlen(k));
}

Test(tier_redis, key_slots_follow_the_cluster_spec)
{
    /* CRC16/XMODEM check value: "123456789" -> 0x31C3. */
    cr_assert_eq(slot_s("123456789"), 0x31C3u & 16383u);
    /* Hash tags: the first {...} that is not empty. */
    cr_assert_eq(slot_s("{user1000}.following"), slot_s("user1000"));
    cr_assert_eq(slot_s("{user1000}.followers"), slot_s("user1000"));
    cr_assert_eq(slot_s("foo{bar}{zap}"), slot_s("bar"));
    cr_assert_eq(slot_s("foo{{bar}}zap"), slot_s("{bar"));
    /* An empty tag means the whole key. */
    const uint8_t whole[] = "foo{}{bar}";
    cr_assert_eq(slot_s("foo{}{bar}"), lkv_redis_key_slot(whole, sizeof whole - 1));
    cr_assert_neq(slot_s("foo{}{bar}"), slot_s("bar"));
}

Test(tier_redis, key_layout_is_binary_safe_and_namespaced)
{
    const uint8_t key[] = {0, '{', '}', ':', 0xff};
    uint8_t a[128], b[128];
    const size_t la = lkv_redis_key("ns", 2, key, sizeof key, a, sizeof a);
    cr_assert_eq(lkv_redis_key("nt", 2, key, sizeof key, b, sizeof b), la);
    cr_assert_eq(lkv_redis_key("ns", 2, key, sizeof key, NULL, 0), la);
    cr_assert_eq(la, strlen("lkv:{0123456789abcdef}:2:ns:") + sizeof key);
    cr_assert(memcmp(a, "lkv:{", 5) == 0 && a[21] == '}');
    cr_assert(memcmp(a + 22, ":2:ns:", 6) == 0);
    cr_assert(memcmp(a + 28, key, sizeof key) == 0);
    /* Another namespace: another key and (almost surely) another tag. */
    cr_assert(memcmp(a, b, la) != 0);
    /* The slot comes from the 16-hex tag, never from the key's own braces. */
    cr_assert_eq(lkv_redis_key_slot(a, la), lkv_redis_key_slot(a + 5, 16));
    /* ("ab", "c") and ("a", "bc") differ. */
    uint8_t c[128], d[128];
    const size_t lc = lkv_redis_key("ab", 2, (const uint8_t *)"c", 1, c, sizeof c);
    const size_t ld = lkv_redis_key("a", 1, (const uint8_t *)"bc", 2, d, sizeof d);
    cr_assert(lc != ld || memcmp(c, d, lc) != 0);
}

/* ---- a single server ---------------------------------------------------- */

Test(tier_redis, single_server_round_trips)
{
    need_redis();
    srv *s = start_srv(0, NULL);
    char seed[64];
    seed_of(seed, sizeof seed, s);
    const char *seeds[] = {seed};
    lkv_tier *t = make_tier(seeds, 1, NULL);
    cr_assert_str_eq(t->name, "redis");
    int found;
    cr_assert_eq(get_check(t, "ns", "missing", 7, 0, 0, &found, NULL), LKV_OK);
    cr_assert_eq(found, 0);
    cr_assert_eq(put_s(t, "ns", "k1", 27200, 1), LKV_OK);
    cr_assert_eq(get_check(t, "ns", "k1", 2, 27200, 1, &found, NULL), LKV_OK);
    cr_assert_eq(found, 1);
    /* The same key in another namespace is another block. */
    cr_assert_eq(get_check(t, "other", "k1", 2, 0, 0, &found, NULL), LKV_OK);
    cr_assert_eq(found, 0);
    /* Overwrite, a 1 MiB block, an empty namespace, binary keys. */
    cr_assert_eq(put_s(t, "ns", "k1", 434240, 2), LKV_OK);
    cr_assert_eq(get_check(t, "ns", "k1", 2, 434240, 2, &found, NULL), LKV_OK);
    cr_assert_eq(found, 1);
    cr_assert_eq(put_s(t, "ns", "big", 1u << 20, 3), LKV_OK);
    cr_assert_eq(get_check(t, "ns", "big", 3, 1u << 20, 3, &found, NULL), LKV_OK);
    cr_assert_eq(found, 1);
    const uint8_t bkey[] = {0, 1, '{', 'x', '}', ':', 0xfe, 0};
    cr_assert_eq(put_b(t, "", bkey, sizeof bkey, 100, 4, NULL), LKV_OK);
    cr_assert_eq(get_check(t, "", bkey, sizeof bkey, 100, 4, &found, NULL), LKV_OK);
    cr_assert_eq(found, 1);
    cr_assert_eq(get_check(t, "", bkey, sizeof bkey - 1, 0, 0, &found, NULL), LKV_OK);
    cr_assert_eq(found, 0, "a key that is a prefix of another must miss");

    /* The stored value is the container verbatim under the documented key. */
    uint8_t rk[128];
    const size_t rl = lkv_redis_key("", 0, bkey, sizeof bkey, rk, sizeof rk);
    redisReply *r = cmd(s, "GET %b", rk, rl);
    cr_assert(r && r->type == REDIS_REPLY_STRING && r->len == 100);
    lkv_blob *want = make_blob(100, 4);
    cr_assert(memcmp(r->str, want->data, 100) == 0);
    lkv_blob_unref(want);
    freeReplyObject(r);

    /* Delete: found, then not; a get after it misses. */
    cr_assert_eq(del_k(t, "ns", "k1", 2, &found), LKV_OK);
    cr_assert_eq(found, 1);
    cr_assert_eq(del_k(t, "ns", "k1", 2, &found), LKV_OK);
    cr_assert_eq(found, 0);
    cr_assert_eq(get_check(t, "ns", "k1", 2, 0, 0, &found, NULL), LKV_OK);
    cr_assert_eq(found, 0);

    /* Bad arguments are refused before any I/O, and named. */
    op o;
    init_op(&o, "ns", "", 0);
    lkv_tier_get(t, &o.req);
    cr_assert_eq(o.done, 1);
    cr_assert_eq(o.req.status, LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(o.req.diag.msg, "key of 0 bytes"), "%s", o.req.diag.msg);
    cr_assert_eq(t->contains(t, "ns", 2, (const uint8_t *)"big", 3), LKV_TIER_UNKNOWN);

    lkv_tier_stats st;
    t->stats(t, &st);
    cr_assert_eq(st.puts, 4);
    cr_assert_eq(st.hits, 4);
    cr_assert_eq(st.misses, 4);
    cr_assert_eq(st.errors, 1);
    cr_assert_eq(st.inflight, 0);
    cr_assert_eq(st.capacity_bytes, 0);
    lkv_redis_stats rs;
    lkv_tier_redis_stats(t, &rs);
    cr_assert_eq(rs.cluster, 0);
    cr_assert_eq(rs.link, LKV_REDIS_LINK_UP, "link %s", lkv_redis_link_name(rs.link));
    cr_assert_eq(rs.nodes_up, 1);
    close_tier(t);
}

Test(tier_redis, pipelined_requests_keep_their_order)
{
    need_redis();
    srv *s = start_srv(0, NULL);
    char seed[64];
    seed_of(seed, sizeof seed, s);
    const char *seeds[] = {seed};
    lkv_tier *t = make_tier(seeds, 1, NULL);
    enum { N = 200 };
    static op puts[N], gets[N], puts2[N];
    static char keys[N][16];
    /* put, get, put again of each key, all in flight at once before the
     * first answer: the get sees the first put, the tier ends with the second. */
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "key-%d", i);
        lkv_blob *b = make_blob(1000 + (size_t)i, (uint32_t)i);
        init_op(&puts[i], "ns", keys[i], strlen(keys[i]));
        puts[i].req.blob = b;
        lkv_tier_put(t, &puts[i].req);
        lkv_blob_unref(b);
        init_op(&gets[i], "ns", keys[i], strlen(keys[i]));
        lkv_tier_get(t, &gets[i].req);
        b = make_blob(500, (uint32_t)i + 1000);
        init_op(&puts2[i], "ns", keys[i], strlen(keys[i]));
        puts2[i].req.blob = b;
        lkv_tier_put(t, &puts2[i].req);
        lkv_blob_unref(b);
    }
    lkv_tier_stats st;
    t->stats(t, &st);
    cr_assert_eq(st.inflight, 3 * N);
    for (int i = 0; i < N; i++) {
        wait_op(&puts[i]);
        wait_op(&gets[i]);
        wait_op(&puts2[i]);
        cr_assert_eq(puts[i].req.status, LKV_OK);
        cr_assert_eq(gets[i].req.status, LKV_OK);
        cr_assert_eq(puts2[i].req.status, LKV_OK);
        cr_assert_eq(gets[i].req.found, 1);
        lkv_blob *want = make_blob(1000 + (size_t)i, (uint32_t)i);
        cr_assert_eq(gets[i].req.blob->len, want->len);
        cr_assert(memcmp(gets[i].req.blob->data, want->data, want->len) == 0);
        lkv_blob_unref(want);
        lkv_blob_unref(gets[i].req.blob);
    }
    for (int i = 0; i < N; i++) {
        int found;
        cr_assert_eq(
            get_check(t, "ns", keys[i], strlen(keys[i]), 500, (uint32_t)i + 1000, &found, NULL),
            LKV_OK);
        cr_assert_eq(found, 1);
    }
    close_tier(t);
}

Test(tier_redis, single_server_killed_and_restarted)
{
    need_redis();
    srv *s = start_srv(0, NULL);
    char seed[64];
    seed_of(seed, sizeof seed, s);
    const char *seeds[] = {seed};
    lkv_tier *t = make_tier(seeds, 1, NULL);
    int found;
    cr_assert_eq(put_s(t, "ns", "a", 5000, 7), LKV_OK);
    stop_srv(s);
    /* The first request finds the connection gone. */
    lkv_diag d;
    const lkv_status st1 = get_check(t, "ns", "a", 1, 5000, 7, &found, &d);
    cr_assert_eq(st1, LKV_ERR_UNAVAILABLE, "status %d: %s", st1, d.msg);
    char port[16];
    snprintf(port, sizeof port, ":%d", s->port);
    cr_assert(strstr(d.msg, port), "the message names the node: %s", d.msg);
    /* While the node is in its backoff, requests fail at once (done()
     * before the submitting call returns), named, and counted. */
    op o;
    init_op(&o, "ns", "a", 1);
    lkv_blob *b = make_blob(10, 1);
    o.req.blob = b;
    lkv_tier_put(t, &o.req);
    lkv_blob_unref(b);
    cr_assert_eq(o.done, 1, "a put to an unreachable node must fail fast");
    cr_assert_eq(o.req.status, LKV_ERR_UNAVAILABLE);
    cr_assert(strstr(o.req.diag.msg, "unreachable"), "%s", o.req.diag.msg);
    lkv_tier_stats st;
    t->stats(t, &st);
    cr_assert_geq(st.errors, 2);
    lkv_redis_stats rs;
    lkv_tier_redis_stats(t, &rs);
    cr_assert_geq(rs.unavailable, 2);
    cr_assert_eq(rs.link, LKV_REDIS_LINK_DOWN, "link %s", lkv_redis_link_name(rs.link));
    cr_assert_neq(rs.last_error[0], 0);

    /* Back on the same port: the tier reconnects by itself. */
    launch(s);
    lkv_status pst = LKV_ERR_UNAVAILABLE;
    for (int i = 0; i < 200 && pst != LKV_OK; i++) {
        pst = put_s(t, "ns", "a", 5000, 8);
        if (pst != LKV_OK)
            run_for(50);
    }
    cr_assert_eq(pst, LKV_OK, "no reconnection within 10 s");
    cr_assert_eq(get_check(t, "ns", "a", 1, 5000, 8, &found, NULL), LKV_OK);
    cr_assert_eq(found, 1);
    lkv_tier_redis_stats(t, &rs);
    cr_assert_geq(rs.connects, 2);
    cr_assert_eq(rs.link, LKV_REDIS_LINK_UP);
    close_tier(t);
}

/* ---- seeds and the password file ---------------------------------------- */

Test(tier_redis, bad_seeds_are_named)
{
    const char *bad[] = {"127.0.0.1:6379",           "http://127.0.0.1:6379",
                         "redis://127.0.0.1",        "redis://:6379",
                         "redis://127.0.0.1:0",      "redis://127.0.0.1:65536",
                         "redis://127.0.0.1:12ab",   "redis://user:pw@127.0.0.1:6379",
                         "redis://127.0.0.1:6379/0", "redis://[::1:6379"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lkv_redis_config cfg;
        lkv_redis_config_defaults(&cfg);
        const char *seeds[] = {"redis://127.0.0.1:6379", bad[i]};
        cfg.seeds = seeds;
        cfg.nseeds = 2;
        lkv_tier *t = (lkv_tier *)1;
        lkv_diag d = {0};
        cr_assert_eq(lkv_tier_redis_create(&g_loop, &cfg, &t, &d), LKV_ERR_INVALID_ARGUMENT, "%s",
                     bad[i]);
        cr_assert_null(t);
        cr_assert(strstr(d.msg, bad[i]), "message names the seed %s: %s", bad[i], d.msg);
    }
    lkv_redis_config cfg;
    lkv_redis_config_defaults(&cfg);
    lkv_tier *t = NULL;
    lkv_diag d = {0};
    cr_assert_eq(lkv_tier_redis_create(&g_loop, &cfg, &t, &d), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d.msg, "no seed"), "%s", d.msg);
    const char *one[] = {"redis://127.0.0.1:6379"};
    cfg.seeds = one;
    cfg.nseeds = 1;
    cfg.backoff_min_ms = 500;
    cfg.backoff_max_ms = 100;
    cr_assert_eq(lkv_tier_redis_create(&g_loop, &cfg, &t, &d), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d.msg, "backoff=500..100"), "%s", d.msg);
    lkv_redis_config_defaults(&cfg);
    cfg.seeds = one;
    cfg.nseeds = 1;
    cfg.password_file = "/nonexistent/lkv/pass";
    cr_assert_eq(lkv_tier_redis_create(&g_loop, &cfg, &t, &d), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d.msg, "redis-password-file=\"/nonexistent/lkv/pass\""), "%s", d.msg);
    char empty[200];
    snprintf(empty, sizeof empty, "%s/empty", g_tmp);
    fclose(fopen(empty, "w"));
    cfg.password_file = empty;
    cr_assert_eq(lkv_tier_redis_create(&g_loop, &cfg, &t, &d), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d.msg, "empty"), "%s", d.msg);
}

Test(tier_redis, unreachable_seeds_fail_requests_not_the_tier)
{
    const int p1 = free_port(), p2 = free_port();
    char s1[64], s2[64];
    snprintf(s1, sizeof s1, "redis://127.0.0.1:%d", p1);
    snprintf(s2, sizeof s2, "redis://127.0.0.1:%d", p2);
    const char *seeds[] = {s1, s2};
    lkv_tier *t = make_tier(seeds, 2, NULL);
    int found;
    lkv_diag d;
    cr_assert_eq(get_check(t, "ns", "k", 1, 0, 0, &found, &d), LKV_ERR_UNAVAILABLE);
    char want[32];
    snprintf(want, sizeof want, "127.0.0.1:%d", p1);
    cr_assert(strstr(d.msg, want), "names the first seed: %s", d.msg);
    snprintf(want, sizeof want, "127.0.0.1:%d", p2);
    cr_assert(strstr(d.msg, want), "names the second seed: %s", d.msg);
    lkv_redis_stats rs;
    lkv_tier_redis_stats(t, &rs);
    cr_assert_eq(rs.link, LKV_REDIS_LINK_DOWN);
    cr_assert_eq(rs.cluster, -1);
    lkv_tier_stats st;
    t->stats(t, &st);
    cr_assert_eq(st.errors, 1);
    close_tier(t);
}

/* Completions of many requests queued to seeds that fail: where on the
 * stack each done() ran. A chain that recursed per queued request (fail
 * one, re-route the next from inside it) would spread these over hundreds
 * of kilobytes. */
static uintptr_t g_sp_lo = UINTPTR_MAX, g_sp_hi;
static void on_done_sp(lkv_tier_req *r)
{
    volatile char here = 0;
    const uintptr_t sp = (uintptr_t)&here;
    g_sp_lo = sp < g_sp_lo ? sp : g_sp_lo;
    g_sp_hi = sp > g_sp_hi ? sp : g_sp_hi;
    on_done(r);
}

Test(tier_redis, queued_requests_fail_without_deepening_the_stack)
{
    /* The first seed accepts the connection (the kernel does) but never
     * answers CLUSTER SLOTS, so requests queue for the first map; closing
     * it resets the connection, and the second seed refuses at once. */
    const int p1 = free_port(), p2 = free_port();
    const int lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(lfd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p1)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0, "bind: %s", strerror(errno));
    cr_assert_eq(listen(lfd, 8), 0);
    char s1[64], s2[64];
    snprintf(s1, sizeof s1, "redis://127.0.0.1:%d", p1);
    snprintf(s2, sizeof s2, "redis://127.0.0.1:%d", p2);
    const char *seeds[] = {s1, s2};
    lkv_tier *t = make_tier(seeds, 2, NULL);
    enum { N = 5000 };
    op *ops = calloc(N, sizeof *ops);
    char(*keys)[16] = calloc(N, sizeof *keys);
    cr_assert(ops && keys);
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        init_op(&ops[i], "ns", keys[i], strlen(keys[i]));
        ops[i].req.done = on_done_sp;
        lkv_tier_get(t, &ops[i].req);
    }
    run_for(100);
    int early = 0;
    for (int i = 0; i < N; i++)
        early += ops[i].done;
    cr_assert_eq(early, 0, "%d requests finished before the first seed went away", early);
    close(lfd);
    for (int i = 0; i < N; i++) {
        wait_op(&ops[i]);
        cr_assert_eq(ops[i].req.status, LKV_ERR_UNAVAILABLE, "request %d: %d (%s)", i,
                     ops[i].req.status, ops[i].req.diag.msg);
    }
    cr_assert_lt(g_sp_hi - g_sp_lo, (uintptr_t)64 * 1024,
                 "done() ran %zu bytes of stack apart over %d requests",
                 (size_t)(g_sp_hi - g_sp_lo), N);
    free(keys);
    free(ops);
    close_tier(t);
}

Test(tier_redis, password_file)
{
    need_redis();
    srv *s = start_srv(0, "s3cret-pw");
    char seed[64], good[200], bad[200];
    seed_of(seed, sizeof seed, s);
    snprintf(good, sizeof good, "%s/good", g_tmp);
    snprintf(bad, sizeof bad, "%s/bad", g_tmp);
    FILE *f = fopen(good, "w");
    fputs("s3cret-pw\n", f);
    fclose(f);
    f = fopen(bad, "w");
    fputs("wrong\n", f);
    fclose(f);
    const char *seeds[] = {seed};
    lkv_tier *t = make_tier(seeds, 1, good);
    int found;
    cr_assert_eq(put_s(t, "ns", "k", 100, 1), LKV_OK);
    cr_assert_eq(get_check(t, "ns", "k", 1, 100, 1, &found, NULL), LKV_OK);
    cr_assert_eq(found, 1);
    close_tier(t);
    t = make_tier(seeds, 1, bad);
    lkv_diag d;
    const lkv_status st = put_b(t, "ns", "k", 1, 100, 1, &d);
    cr_assert_eq(st, (lkv_status)LKV_ERR_PERMISSION, "status %d: %s", st, d.msg);
    close_tier(t);
}

/* ---- Redis Cluster ------------------------------------------------------ */

/* Which of the three nodes holds rkey now (the one that answers GET
 * without a redirect). */
static int owner_of(srv *n[3], const uint8_t *rk, size_t rl)
{
    for (int i = 0; i < 3; i++) {
        redisReply *r = cmd(n[i], "GET %b", rk, rl);
        const int mine = r && r->type != REDIS_REPLY_ERROR;
        freeReplyObject(r);
        if (mine)
            return i;
    }
    return -1;
}

static void node_id(const srv *s, char *out, size_t cap)
{
    redisReply *r = cmd(s, "CLUSTER MYID");
    cr_assert(r && r->type == REDIS_REPLY_STRING);
    snprintf(out, cap, "%s", r->str);
    freeReplyObject(r);
}

static void expect_ok(redisReply *r, const char *what)
{
    cr_assert(r && r->type != REDIS_REPLY_ERROR, "%s: %s", what, r ? r->str : "no reply");
    freeReplyObject(r);
}

Test(tier_redis, cluster_spreads_keys_and_follows_moved_and_ask)
{
    need_redis();
    srv *n[3];
    start_cluster(n);
    char seed[64];
    seed_of(seed, sizeof seed, n[2]); /* one seed; the map names the rest */
    const char *seeds[] = {seed};
    lkv_tier *t = make_tier(seeds, 1, NULL);
    enum { N = 300 };
    char key[32];
    int found;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "blk-%d", i);
        cr_assert_eq(put_s(t, "model-a", key, 2000 + (size_t)i, (uint32_t)i), LKV_OK);
    }
    lkv_redis_stats rs;
    lkv_tier_redis_stats(t, &rs);
    cr_assert_eq(rs.cluster, 1);
    cr_assert_eq(rs.nodes, 3);
    cr_assert_eq(rs.nodes_up, 3);
    cr_assert_eq(rs.link, LKV_REDIS_LINK_UP);
    long long total = 0;
    for (int i = 0; i < 3; i++) {
        redisReply *r = cmd(n[i], "DBSIZE");
        cr_assert(r && r->type == REDIS_REPLY_INTEGER);
        cr_assert_gt(r->integer, N / 10, "master %d holds only %lld of %d keys", i, r->integer, N);
        total += r->integer;
        freeReplyObject(r);
    }
    cr_assert_eq(total, N);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "blk-%d", i);
        cr_assert_eq(
            get_check(t, "model-a", key, strlen(key), 2000 + (size_t)i, (uint32_t)i, &found, NULL),
            LKV_OK);
        cr_assert_eq(found, 1);
        /* Our slot is the server's slot. */
        uint8_t rk[128];
        const size_t rl =
            lkv_redis_key("model-a", 7, (const uint8_t *)key, strlen(key), rk, sizeof rk);
        if (i % 30 == 0) {
            redisReply *r = cmd(n[0], "CLUSTER KEYSLOT %b", rk, rl);
            cr_assert(r && r->type == REDIS_REPLY_INTEGER);
            cr_assert_eq((unsigned)r->integer, lkv_redis_key_slot(rk, rl));
            freeReplyObject(r);
        }
    }
    lkv_tier_redis_stats(t, &rs);
    cr_assert_eq(rs.moved, 0, "a fresh map needs no redirect");

    /* Migrate the slot of blk-0 from its owner A to B. */
    uint8_t rk[128];
    const size_t rl = lkv_redis_key("model-a", 7, (const uint8_t *)"blk-0", 5, rk, sizeof rk);
    const unsigned slot = lkv_redis_key_slot(rk, rl);
    const int a = owner_of(n, rk, rl);
    cr_assert_geq(a, 0);
    const int b = (a + 1) % 3, c = (a + 2) % 3;
    char ida[64], idb[64];
    node_id(n[a], ida, sizeof ida);
    node_id(n[b], idb, sizeof idb);
    expect_ok(cmd(n[b], "CLUSTER SETSLOT %u IMPORTING %s", slot, ida), "IMPORTING");
    expect_ok(cmd(n[a], "CLUSTER SETSLOT %u MIGRATING %s", slot, idb), "MIGRATING");
    /* A new key of that slot, absent on A: A answers ASK, the tier sends
     * ASKING + SET to B. */
    char key2[32];
    int k2 = -1;
    for (int i = 0; i < 2000000 && k2 < 0; i++) {
        snprintf(key2, sizeof key2, "ask-%d", i);
        uint8_t r2[128];
        const size_t l2 =
            lkv_redis_key("model-a", 7, (const uint8_t *)key2, strlen(key2), r2, sizeof r2);
        if (lkv_redis_key_slot(r2, l2) == slot)
            k2 = i;
    }
    cr_assert_geq(k2, 0);
    cr_assert_eq(put_s(t, "model-a", key2, 3000, 99), LKV_OK);
    lkv_tier_redis_stats(t, &rs);
    cr_assert_geq(rs.ask, 1, "the put of a key absent on the migrating node needs ASK");
    cr_assert_eq(rs.moved, 0);
    /* Move blk-0 itself, then hand the slot to B everywhere. */
    redisReply *m =
        cmd(n[a], "MIGRATE 127.0.0.1 %d %b 0 5000 KEYS %b", n[b]->port, "", (size_t)0, rk, rl);
    expect_ok(m, "MIGRATE");
    for (int i = 0; i < 3; i++)
        expect_ok(cmd(n[i], "CLUSTER SETSLOT %u NODE %s", slot, idb), "SETSLOT NODE");
    cr_assert_eq(owner_of(n, rk, rl), b);
    /* The tier's map still says A: MOVED takes it to B. */
    cr_assert_eq(get_check(t, "model-a", "blk-0", 5, 2000, 0, &found, NULL), LKV_OK);
    cr_assert_eq(found, 1);
    cr_assert_eq(get_check(t, "model-a", key2, strlen(key2), 3000, 99, &found, NULL), LKV_OK);
    cr_assert_eq(found, 1);
    lkv_tier_redis_stats(t, &rs);
    cr_assert_geq(rs.moved, 1);
    /* The refresh MOVED started answers on its own connection: wait for it. */
    for (int i = 0; i < 250 && rs.map_refreshes < 2; i++) {
        run_for(20);
        lkv_tier_redis_stats(t, &rs);
    }
    cr_assert_geq(rs.map_refreshes, 2, "MOVED refreshes the map");
    (void)c;
    close_tier(t);
}

Test(tier_redis, cluster_node_killed_and_restarted)
{
    need_redis();
    srv *n[3];
    start_cluster(n);
    char s0[64], s1[64];
    seed_of(s0, sizeof s0, n[0]);
    seed_of(s1, sizeof s1, n[1]);
    const char *seeds[] = {s0, s1};
    lkv_tier *t = make_tier(seeds, 2, NULL);
    enum { N = 60 };
    char key[32];
    int owner[N];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k%d", i);
        cr_assert_eq(put_s(t, "ns", key, 700, (uint32_t)i), LKV_OK);
        uint8_t rk[64];
        const size_t rl = lkv_redis_key("ns", 2, (const uint8_t *)key, strlen(key), rk, sizeof rk);
        owner[i] = owner_of(n, rk, rl);
        cr_assert_geq(owner[i], 0);
    }
    /* Kill the master that is not a seed. */
    stop_srv(n[2]);
    lkv_tier_stats st0;
    t->stats(t, &st0);
    int failed = 0, served = 0, found;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k%d", i);
        lkv_diag d;
        const lkv_status st = get_check(t, "ns", key, strlen(key), 700, (uint32_t)i, &found, &d);
        if (owner[i] == 2) {
            cr_assert_eq(st, LKV_ERR_UNAVAILABLE, "key on the dead node: status %d", st);
            failed++;
        } else {
            cr_assert_eq(st, LKV_OK, "key on a live node: %s", d.msg);
            cr_assert_eq(found, 1);
            served++;
        }
    }
    cr_assert_gt(failed, 0);
    cr_assert_gt(served, 0);
    lkv_tier_stats st1;
    t->stats(t, &st1);
    cr_assert_eq(st1.errors - st0.errors, (uint64_t)failed);
    lkv_redis_stats rs;
    lkv_tier_redis_stats(t, &rs);
    cr_assert_eq(rs.link, LKV_REDIS_LINK_DEGRADED, "link %s", lkv_redis_link_name(rs.link));

    /* Restarted (same port and nodes.conf): it rejoins, the tier reconnects.
     * Nothing was persisted, so its keys are put again. */
    launch(n[2]);
    int idx = -1;
    for (int i = 0; i < N && idx < 0; i++)
        if (owner[i] == 2)
            idx = i;
    snprintf(key, sizeof key, "k%d", idx);
    lkv_status pst = LKV_ERR_UNAVAILABLE;
    for (int i = 0; i < 400 && pst != LKV_OK; i++) {
        pst = put_s(t, "ns", key, 700, 5);
        if (pst != LKV_OK)
            run_for(50);
    }
    cr_assert_eq(pst, LKV_OK, "no reconnection to the restarted master within 20 s");
    cr_assert_eq(get_check(t, "ns", key, strlen(key), 700, 5, &found, NULL), LKV_OK);
    cr_assert_eq(found, 1);
    lkv_tier_redis_stats(t, &rs);
    cr_assert_eq(rs.link, LKV_REDIS_LINK_UP, "link %s", lkv_redis_link_name(rs.link));
    close_tier(t);
}

/* ---- write-back --------------------------------------------------------- */

static uint64_t drain_wait(lkv_tier *t, int max_ms)
{
    lkv_redis_stats rs;
    for (int waited = 0; waited < max_ms; waited += 20) {
        lkv_tier_redis_stats(t, &rs);
        if (rs.queued_blocks + rs.tombstones == 0)
            return 0;
        run_for(20);
    }
    lkv_tier_redis_stats(t, &rs);
    return rs.queued_blocks + rs.tombstones;
}

/* The bytes Redis holds under (ns, key) match make_blob(len, seed); 0 when absent. */
static int redis_has(const srv *s, const char *ns, const char *key, size_t len, uint32_t seed)
{
    uint8_t rk[128];
    const size_t rl =
        lkv_redis_key(ns, strlen(ns), (const uint8_t *)key, strlen(key), rk, sizeof rk);
    redisReply *r = cmd(s, "GET %b", rk, rl);
    cr_assert_not_null(r);
    int has = 0;
    if (r->type == REDIS_REPLY_STRING) {
        lkv_blob *want = make_blob(len, seed);
        cr_assert_eq((size_t)r->len, len);
        cr_assert(memcmp(r->str, want->data, len) == 0, "Redis holds other bytes for %s", key);
        lkv_blob_unref(want);
        has = 1;
    }
    freeReplyObject(r);
    return has;
}

Test(tier_redis, write_back_queue_rides_out_an_outage_and_counts_its_losses)
{
    need_redis();
    srv *s = start_srv(0, NULL);
    char seed[64];
    seed_of(seed, sizeof seed, s);
    const char *seeds[] = {seed};
    lkv_redis_config cfg;
    lkv_redis_config_defaults(&cfg);
    cfg.seeds = seeds;
    cfg.nseeds = 1;
    cfg.backoff_min_ms = 20;
    cfg.backoff_max_ms = 200;
    const size_t blk = 50000, charge = blk + 2 + 2; /* container + "ns" + "wN" */
    cfg.queue_bytes = 5 * charge + 100;             /* room for 5 blocks */
    lkv_tier *t = NULL;
    lkv_diag d = {0};
    cr_assert_eq(lkv_tier_redis_create(&g_loop, &cfg, &t, &d), LKV_OK, "%s", d.msg);
    char key[16];
    int found;
    /* Link up: acknowledged when queued, written back soon after. */
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "u%d", i);
        cr_assert_eq(put_s(t, "ns", key, blk, (uint32_t)i + 100), LKV_OK);
    }
    cr_assert_eq(drain_wait(t, 10000), 0, "the queue did not drain");
    lkv_redis_stats rs;
    lkv_tier_redis_stats(t, &rs);
    cr_assert_eq(rs.written_back, 5);
    cr_assert_eq(rs.queue_limit, cfg.queue_bytes);
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "u%d", i);
        cr_assert(redis_has(s, "ns", key, blk, (uint32_t)i + 100));
    }

    /* Outage. SAVE first, so the restarted server has u0..u4 again: the
     * older copies a dropped newer value must never bring back. */
    expect_ok(cmd(s, "SAVE"), "SAVE");
    stop_srv(s);
    /* The tier learns of the outage from a failed get... */
    cr_assert_eq(get_check(t, "ns", "u0", 2, blk, 100, &found, &d), LKV_ERR_UNAVAILABLE);
    /* ...and still acknowledges puts, at once. u0's new value, then w0..w9:
     * the queue keeps the newest 5 blocks; the 6 it drops (u0, w0..w4) are
     * counted and stay as tombstones (4 bytes each: "ns" + the key). */
    for (int i = -1; i < 10; i++) {
        if (i < 0)
            snprintf(key, sizeof key, "u0");
        else
            snprintf(key, sizeof key, "w%d", i);
        lkv_blob *b = make_blob(blk, i < 0 ? 200 : (uint32_t)i);
        op o;
        init_op(&o, "ns", key, strlen(key));
        o.req.blob = b;
        lkv_tier_put(t, &o.req);
        lkv_blob_unref(b);
        cr_assert_eq(o.done, 1, "a write-back put is acknowledged when queued");
        cr_assert_eq(o.req.status, LKV_OK, "%s", o.req.diag.msg);
    }
    lkv_tier_redis_stats(t, &rs);
    cr_assert_eq(rs.queued_blocks, 5);
    cr_assert_eq(rs.tombstones, 6);
    cr_assert_eq(rs.queued_bytes, 5 * charge + 6 * 4);
    cr_assert_eq(rs.lost_blocks, 6);
    cr_assert_eq(rs.lost_bytes, 6 * charge);
    /* Gets of queued blocks are answered from the queue, byte-identical. */
    op g;
    init_op(&g, "ns", "w7", 2);
    lkv_tier_get(t, &g.req);
    cr_assert_eq(g.done, 1);
    cr_assert_eq(g.req.status, LKV_OK);
    cr_assert_eq(g.req.found, 1);
    lkv_blob *want = make_blob(blk, 7);
    cr_assert(memcmp(g.req.blob->data, want->data, blk) == 0);
    lkv_blob_unref(want);
    lkv_blob_unref(g.req.blob);
    cr_assert_eq(t->contains(t, "ns", 2, (const uint8_t *)"w7", 2), LKV_TIER_PRESENT);
    cr_assert_eq(t->contains(t, "ns", 2, (const uint8_t *)"w0", 2), LKV_TIER_ABSENT);
    cr_assert_eq(t->contains(t, "ns", 2, (const uint8_t *)"u1", 2), LKV_TIER_UNKNOWN);
    /* A dropped key misses (its tombstone answers), even while Redis is down. */
    cr_assert_eq(get_check(t, "ns", "w0", 2, blk, 0, &found, NULL), LKV_OK);
    cr_assert_eq(found, 0);
    cr_assert_eq(get_check(t, "ns", "u0", 2, blk, 200, &found, NULL), LKV_OK);
    cr_assert_eq(found, 0);

    /* Back up (with u0..u4 from the SAVE): the queue drains by itself, and
     * the tombstones delete the stale copies. */
    launch(s);
    cr_assert_eq(drain_wait(t, 15000), 0, "the queue did not drain after the restart");
    lkv_tier_redis_stats(t, &rs);
    cr_assert_eq(rs.written_back, 10);
    cr_assert_eq(rs.lost_blocks, 6);
    cr_assert_eq(rs.tombstones_dropped, 0);
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "w%d", i);
        cr_assert_eq(redis_has(s, "ns", key, blk, (uint32_t)i), i >= 5, "%s", key);
    }
    cr_assert(!redis_has(s, "ns", "u0", blk, 100), "the stale u0 must be gone");
    cr_assert(redis_has(s, "ns", "u1", blk, 101));
    cr_assert_eq(get_check(t, "ns", "u0", 2, blk, 100, &found, NULL), LKV_OK);
    cr_assert_eq(found, 0, "a stale remote copy was served");
    /* A delete takes a queued block out and deletes it in Redis too. */
    cr_assert_eq(put_s(t, "ns", "w1", blk, 1), LKV_OK);
    cr_assert_eq(del_k(t, "ns", "w1", 2, &found), LKV_OK);
    cr_assert_eq(found, 1);
    cr_assert_eq(del_k(t, "ns", "w9", 2, &found), LKV_OK);
    cr_assert_eq(found, 1);
    cr_assert_eq(drain_wait(t, 5000), 0);
    cr_assert_eq(get_check(t, "ns", "w1", 2, blk, 1, &found, NULL), LKV_OK);
    cr_assert_eq(found, 0);
    cr_assert_eq(get_check(t, "ns", "w9", 2, blk, 9, &found, NULL), LKV_OK);
    cr_assert_eq(found, 0);
    cr_assert(!redis_has(s, "ns", "w1", blk, 1));
    /* A block larger than the whole queue is counted lost at once. */
    cr_assert_eq(put_s(t, "ns", "huge", cfg.queue_bytes, 3), LKV_OK);
    lkv_tier_redis_stats(t, &rs);
    cr_assert_eq(rs.lost_blocks, 7);
    cr_assert_eq(rs.tombstones, 1, "the block larger than the queue leaves a tombstone");
    cr_assert_eq(drain_wait(t, 5000), 0);
    close_tier(t);
}

Test(tier_redis, hung_server_times_out_and_recovers)
{
    need_redis();
    srv *s = start_srv(0, NULL);
    char seed[64];
    seed_of(seed, sizeof seed, s);
    const char *seeds[] = {seed};
    lkv_redis_config cfg;
    lkv_redis_config_defaults(&cfg);
    cfg.seeds = seeds;
    cfg.nseeds = 1;
    cfg.op_timeout_ms = 300;
    cfg.connect_timeout_ms = 300;
    cfg.backoff_min_ms = 20;
    cfg.backoff_max_ms = 100;
    lkv_tier *t = NULL;
    lkv_diag d = {0};
    cr_assert_eq(lkv_tier_redis_create(&g_loop, &cfg, &t, &d), LKV_OK, "%s", d.msg);
    int found;
    cr_assert_eq(put_s(t, "ns", "k", 4000, 1), LKV_OK);
    /* Stopped, not dead: the socket stays open and nothing answers. */
    cr_assert_eq(kill(s->pid, SIGSTOP), 0);
    const lkv_status st = get_check(t, "ns", "k", 1, 4000, 1, &found, &d);
    cr_assert_eq(st, LKV_ERR_UNAVAILABLE, "status %d: %s", st, d.msg);
    cr_assert(strstr(d.msg, "no reply within 300 ms"), "%s", d.msg);
    lkv_redis_stats rs;
    lkv_tier_redis_stats(t, &rs);
    cr_assert_geq(rs.timeouts, 1);
    cr_assert_neq(rs.link, LKV_REDIS_LINK_UP);
    cr_assert_eq(kill(s->pid, SIGCONT), 0);
    lkv_status gst = LKV_ERR_UNAVAILABLE;
    for (int i = 0; i < 200 && gst != LKV_OK; i++) {
        gst = get_check(t, "ns", "k", 1, 4000, 1, &found, NULL);
        if (gst != LKV_OK)
            run_for(50);
    }
    cr_assert_eq(gst, LKV_OK, "no recovery within 10 s of SIGCONT");
    cr_assert_eq(found, 1);
    close_tier(t);
}

Test(tier_redis, close_while_connecting_completes_everything)
{
    need_redis();
    srv *s = start_srv(0, NULL);
    char seed[64];
    seed_of(seed, sizeof seed, s);
    const char *seeds[] = {seed};
    lkv_tier *t = make_tier(seeds, 1, NULL);
    /* Before the loop ran: the seed is still connecting and the get waits
     * for the first map. */
    op o;
    init_op(&o, "ns", "k", 1);
    lkv_tier_get(t, &o.req);
    cr_assert_eq(o.done, 0);
    int closed = 0;
    t->close(t, on_closed, &closed);
    cr_assert_eq(o.done, 1, "close completes waiting requests");
    cr_assert_eq(o.req.status, LKV_ERR_UNAVAILABLE);
    cr_assert(strstr(o.req.diag.msg, "closing"), "%s", o.req.diag.msg);
    /* New requests are refused at once. */
    op n2;
    init_op(&n2, "ns", "k", 1);
    lkv_tier_get(t, &n2.req);
    cr_assert_eq(n2.done, 1);
    cr_assert_eq(n2.req.status, LKV_ERR_UNAVAILABLE);
    while (!closed)
        uv_run(&g_loop, UV_RUN_ONCE);
    cr_assert_eq(closed, 1);
}
