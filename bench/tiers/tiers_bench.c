/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tiers_bench.c - Put and Get throughput of KV blocks through a storage
 * tier, raw bf16 against latticekvd's coded containers (bench/tiers).
 *
 * One cell = one system, one block size, one client count: every client
 * (a thread with its own connection) Puts its share of the volume under
 * distinct keys, then Gets each key back and checks it, then what the tier
 * holds is measured and the keys are removed. The systems:
 *
 *   redis-raw  hiredis SET / GET of the raw bf16 bytes, pipelined (a window
 *              of 2 MiB per client, 32 MiB in all at most; 1..16 commands)
 *   files-raw  one file per block in DIR, written as the SSD tier writes
 *              (temporary, rename; --fsync never|batch|always as
 *              server/tier/ssd.c: batch is a group commit of every write
 *              that finished meanwhile, then one directory fsync)
 *   lkv        latticekvd Put (the daemon encodes, E8 Q=38) and Get (it
 *              decodes to bf16) over ADDR (unix:PATH); the tier behind it is
 *              the daemon's configuration. --redis and --dir say where to
 *              measure the bytes held.
 *
 * Throughput is bf16-equivalent: bytes of bf16 blocks moved per wall second
 * (1e9 B = 1 GB), Put and Get phases timed separately; put+get is both
 * volumes over both times. With --cold, every file in --dir is synced and
 * dropped from the page cache between the phases, so Gets read the device.
 * With --warm, an untimed Put pass comes first and the timed one overwrites.
 *
 * The shaped link and the processes around it are set up by run.sh.
 */
#define _GNU_SOURCE
#include "tiers_bench.h"

#include "lkv_bench.h"
#include "lkv_client.h"
#include "lkv_codec.h"
#include "lkv_load.h"

#include <hiredis/hiredis.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADS        8
#define DIM          128
#define MAX_LIST     4
#define MAX_TAGS     8
#define MAX_TIERNAME 8
#define NS           "tiersbench"

typedef enum { SYS_REDIS_RAW, SYS_FILES_RAW, SYS_LKV } sys_kind;
typedef enum { FS_NEVER, FS_BATCH, FS_ALWAYS } fsync_mode;
static const char *const fsync_names[] = {"never", "batch", "always"};

double tb_now(void)
{
    return lkv_bench_now_s();
}

void tb_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tiers_bench: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* ---- options ------------------------------------------------------------ */

typedef struct opts {
    sys_kind sys;
    const char *label; /* the row's "system" */
    const char *redis; /* IPv4:PORT */
    const char *dir;
    const char *lkv;
    fsync_mode fsync;
    int tokens[MAX_LIST], ntokens;
    int clients[MAX_LIST], nclients;
    unsigned mib;
    double max_seconds;
    int cold;
    int warm;
    const char *json;
    const char *tags[MAX_TAGS];
    int ntags;
} opts;

static opts g_o;

/* ---- group commit of files-raw --fsync batch ---------------------------- */

typedef struct pending {
    int fd;
    const char *tmp, *final;
    int done, err;
    struct pending *next;
} pending;

static pthread_mutex_t g_gc_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_gc_cv = PTHREAD_COND_INITIALIZER;
static pending *g_gc_queue;
static int g_gc_flushing;
static int g_dirfd = -1;
static uint64_t g_syncs;

/* Queues a written temporary; returns when a flush has synced and renamed it
 * (the caller's thread may be the one that flushes). */
static int group_commit(pending *p)
{
    pthread_mutex_lock(&g_gc_mu);
    p->next = g_gc_queue;
    g_gc_queue = p;
    while (!p->done) {
        if (g_gc_flushing) {
            pthread_cond_wait(&g_gc_cv, &g_gc_mu);
            continue;
        }
        g_gc_flushing = 1;
        pending *batch = g_gc_queue;
        g_gc_queue = NULL;
        pthread_mutex_unlock(&g_gc_mu);
        uint64_t syncs = 1;
        for (pending *b = batch; b; b = b->next) {
            syncs++;
            if (fdatasync(b->fd) || renameat(g_dirfd, b->tmp, g_dirfd, b->final))
                b->err = errno;
            close(b->fd);
        }
        const int dir_err = fsync(g_dirfd) ? errno : 0;
        pthread_mutex_lock(&g_gc_mu);
        for (pending *b = batch; b;) {
            pending *next = b->next; /* b may be gone once done is seen */
            if (!b->err)
                b->err = dir_err;
            b->done = 1;
            b = next;
        }
        g_syncs += syncs;
        g_gc_flushing = 0;
        pthread_cond_broadcast(&g_gc_cv);
    }
    pthread_mutex_unlock(&g_gc_mu);
    return p->err;
}

/* ---- one client --------------------------------------------------------- */

typedef struct tier_count {
    char name[LKV_CLIENT_TIER_MAX];
    uint64_t n;
} tier_count;

typedef struct worker {
    int id, tokens, clients; /* clients: of the cell (keys name it) */
    size_t nblocks;          /* to put */
    size_t put, got;         /* done */
    uint16_t *block;         /* [2][tokens][HEADS][DIM] bf16 */
    size_t bytes;            /* of the block */
    unsigned depth;          /* redis-raw pipeline */
    redisContext *rc;        /* redis-raw */
    lkv_client *lc;          /* lkv */
    uint64_t coded;          /* lkv: container bytes of the puts */
    double rel_mse;          /* lkv: of the first get */
    tier_count tiers[MAX_TIERNAME];
    double deadline;
    char err[512];
} worker;

typedef enum { PH_PUT, PH_GET, PH_DEL } phase;
typedef struct job {
    worker *w;
    phase ph;
    pthread_barrier_t *start;
} job;

static void key_of(const worker *w, size_t j, char *out, size_t cap, int raw_files)
{
    snprintf(out, cap, "%s%d-%d-%d-%zu", raw_files ? "raw-" : "", w->tokens, w->clients, w->id, j);
}

static void fail(worker *w, const char *fmt, ...)
{
    if (w->err[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
}

static void redis_phase(worker *w, phase ph)
{
    const size_t n = ph == PH_PUT ? w->nblocks : w->put;
    size_t sent = 0, answered = 0;
    int stop = 0;
    char key[96];
    for (;;) {
        while (!stop && sent < n && sent - answered < w->depth) {
            if (ph == PH_PUT && tb_now() > w->deadline) {
                stop = 1;
                break;
            }
            key_of(w, sent, key, sizeof key, 0);
            if (ph == PH_PUT)
                redisAppendCommand(w->rc, "SET %s %b", key, (const void *)w->block, w->bytes);
            else
                redisAppendCommand(w->rc, "GET %s", key);
            sent++;
        }
        if (answered == sent)
            break;
        redisReply *r = NULL;
        if (redisGetReply(w->rc, (void **)&r) != REDIS_OK || !r) {
            fail(w, "redis %s: %s", ph == PH_PUT ? "SET" : "GET", w->rc->errstr);
            break;
        }
        if (ph == PH_PUT && r->type != REDIS_REPLY_STATUS)
            fail(w, "redis SET: %s", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        if (ph == PH_GET && (r->type != REDIS_REPLY_STRING || (size_t)r->len != w->bytes ||
                             memcmp(r->str, w->block, w->bytes) != 0))
            fail(w, "redis GET of block %zu: not the bytes put", answered);
        freeReplyObject(r);
        if (w->err[0])
            break;
        answered++;
    }
    if (ph == PH_PUT)
        w->put = answered;
    else
        w->got = answered;
}

static int read_file(const char *path, void *buf, size_t cap, size_t *len)
{
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    for (;;) {
        const ssize_t r = read(fd, (char *)buf + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got == cap) {
            char extra;
            if (read(fd, &extra, 1) > 0)
                got++; /* longer than expected */
            break;
        }
    }
    close(fd);
    *len = got;
    return 0;
}

static int write_fd(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        const ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static void files_put(worker *w, size_t j)
{
    char final[96], tmp[112];
    key_of(w, j, final, sizeof final, 1);
    snprintf(tmp, sizeof tmp, ".tmp-%s", final);
    const int fd = openat(g_dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || write_fd(fd, w->block, w->bytes)) {
        fail(w, "write %s/%s: %s", g_o.dir, tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    if (g_o.fsync == FS_BATCH) {
        pending p = {.fd = fd, .tmp = tmp, .final = final};
        const int e = group_commit(&p);
        if (e)
            fail(w, "commit %s/%s: %s", g_o.dir, final, strerror(e));
        return;
    }
    int e = 0;
    if (g_o.fsync == FS_ALWAYS && fdatasync(fd))
        e = errno;
    close(fd);
    if (!e && renameat(g_dirfd, tmp, g_dirfd, final))
        e = errno;
    if (!e && g_o.fsync == FS_ALWAYS && fsync(g_dirfd))
        e = errno;
    if (g_o.fsync == FS_ALWAYS)
        __atomic_add_fetch(&g_syncs, 2, __ATOMIC_RELAXED);
    if (e)
        fail(w, "commit %s/%s: %s", g_o.dir, final, strerror(e));
}

static void files_phase(worker *w, phase ph)
{
    char name[96], path[4200];
    uint8_t *buf = ph == PH_GET ? malloc(w->bytes) : NULL;
    if (ph == PH_GET && !buf) {
        fail(w, "out of memory");
        return;
    }
    const size_t n = ph == PH_PUT ? w->nblocks : w->put;
    for (size_t j = 0; j < n && !w->err[0]; j++) {
        if (ph == PH_PUT) {
            if (tb_now() > w->deadline)
                break;
            files_put(w, j);
            if (!w->err[0])
                w->put++;
            continue;
        }
        key_of(w, j, name, sizeof name, 1);
        snprintf(path, sizeof path, "%s/%s", g_o.dir, name);
        if (ph == PH_DEL) {
            unlink(path);
            continue;
        }
        size_t len = 0;
        if (read_file(path, buf, w->bytes, &len) || len != w->bytes ||
            memcmp(buf, w->block, w->bytes) != 0)
            fail(w, "read %s: not the bytes written (%zu of %zu bytes)", path, len, w->bytes);
        else
            w->got++;
    }
    free(buf);
}

static double rel_mse(const uint16_t *a, const uint16_t *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        const double x = lkv_bf16_to_f32(a[i]), y = lkv_bf16_to_f32(b[i]);
        num += (x - y) * (x - y);
        den += x * x;
    }
    return den > 0 ? num / den : 0;
}

static void count_tier(worker *w, const char *name)
{
    for (int i = 0; i < MAX_TIERNAME; i++) {
        if (!w->tiers[i].name[0])
            snprintf(w->tiers[i].name, sizeof w->tiers[i].name, "%s", name);
        if (!strcmp(w->tiers[i].name, name)) {
            w->tiers[i].n++;
            return;
        }
    }
}

static void lkv_phase(worker *w, phase ph)
{
    lkv_tensor in;
    lkv_load_block_tensor(&in, w->block, (size_t)w->tokens, HEADS, DIM);
    const lkv_client_params params = {LKV_VARIANT_E8, 38};
    char name[96];
    const size_t n = ph == PH_PUT ? w->nblocks : w->put;
    for (size_t j = 0; j < n && !w->err[0]; j++) {
        if (ph == PH_PUT && tb_now() > w->deadline)
            break;
        key_of(w, j, name, sizeof name, 0);
        const lkv_key key = {name, strlen(name)};
        lkv_client_error e;
        int rc;
        if (ph == PH_PUT) {
            uint64_t coded = 0;
            rc = lkv_client_put(w->lc, NS, key, &in, &params, &coded, &e);
            if (!rc) {
                w->coded += coded;
                w->put++;
            }
        } else if (ph == PH_GET) {
            lkv_tensor out;
            char tier[LKV_CLIENT_TIER_MAX] = "";
            rc = lkv_client_get(w->lc, NS, key, LKV_DTYPE_BF16, &out, tier, &e);
            if (!rc && out.data_bytes != w->bytes) {
                fail(w, "get %s: %zu bytes, not %zu", name, out.data_bytes, w->bytes);
            } else if (!rc) {
                if (j == 0)
                    w->rel_mse = rel_mse(w->block, out.data, w->bytes / 2);
                count_tier(w, tier[0] ? tier : "unnamed");
                w->got++;
            }
            lkv_tensor_clear(&out);
        } else {
            rc = lkv_client_delete(w->lc, NS, key, NULL, &e);
        }
        if (rc)
            fail(w, "%s %s: %s: %s",
                 ph == PH_PUT   ? "put"
                 : ph == PH_GET ? "get"
                                : "delete",
                 name, lkv_rpc_code_name(rc), e.msg);
    }
}

static void *run_job(void *arg)
{
    job *jb = arg;
    pthread_barrier_wait(jb->start);
    switch (g_o.sys) {
    case SYS_REDIS_RAW:
        if (jb->ph != PH_DEL)
            redis_phase(jb->w, jb->ph);
        break;
    case SYS_FILES_RAW: files_phase(jb->w, jb->ph); break;
    case SYS_LKV: lkv_phase(jb->w, jb->ph); break;
    }
    return NULL;
}

/* Runs one phase on every worker at once; returns its wall seconds. */
static double run_phase(worker *ws, int n, phase ph)
{
    pthread_t t[TB_MAX_CLIENTS];
    job jobs[TB_MAX_CLIENTS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; i++) {
        jobs[i] = (job){&ws[i], ph, &start};
        if (pthread_create(&t[i], NULL, run_job, &jobs[i]))
            tb_die("pthread_create failed");
    }
    const double t0 = tb_now();
    for (int i = 0; i < n; i++)
        ws[i].deadline = t0 + g_o.max_seconds;
    pthread_barrier_wait(&start);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    return tb_now() - t0;
}

/* ---- what the tier holds ------------------------------------------------ */

static redisContext *redis_open(void)
{
    char host[64];
    int port;
    if (tb_parse_hostport(g_o.redis, host, sizeof host, &port))
        tb_die("--redis %s is not IPv4:PORT", g_o.redis);
    const struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err)
        tb_die("cannot connect to redis at %s: %s", g_o.redis, c ? c->errstr : "no memory");
    redisSetTimeout(c, (struct timeval){60, 0});
    return c;
}

static long long redis_info_num(redisContext *c, const char *section, const char *field)
{
    redisReply *r = redisCommand(c, "INFO %s", section);
    long long v = -1;
    if (r && r->type == REDIS_REPLY_STRING) {
        char pat[64];
        snprintf(pat, sizeof pat, "\n%s:", field);
        const char *p = strstr(r->str, pat);
        if (p)
            v = strtoll(p + strlen(pat), NULL, 10);
    }
    freeReplyObject(r);
    if (v < 0)
        tb_die("redis INFO %s has no %s", section, field);
    return v;
}

/* MEMORY USAGE of every key, summed: what Redis holds for the blocks (key,
 * value and their allocations), without the clients' buffers that
 * used_memory also counts. Bounded: at most 1e6 keys. */
static long long redis_keys_bytes(redisContext *c, long long *keys)
{
    long long sum = 0, n = 0;
    char cursor[32] = "0";
    for (int round = 0; round < 100000 && n < 1000000; round++) {
        redisReply *r = redisCommand(c, "SCAN %s COUNT 1000", cursor);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
            tb_die("redis SCAN: %s", r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        const redisReply *ks = r->element[1];
        for (size_t i = 0; i < ks->elements; i++)
            redisAppendCommand(c, "MEMORY USAGE %b SAMPLES 0", ks->element[i]->str,
                               (size_t)ks->element[i]->len);
        for (size_t i = 0; i < ks->elements; i++) {
            redisReply *u = NULL;
            if (redisGetReply(c, (void **)&u) != REDIS_OK || !u || u->type != REDIS_REPLY_INTEGER)
                tb_die("redis MEMORY USAGE: %s",
                       u && u->type == REDIS_REPLY_ERROR ? u->str : c->errstr);
            sum += u->integer;
            n++;
            freeReplyObject(u);
        }
        freeReplyObject(r);
        if (!strcmp(cursor, "0"))
            break;
    }
    *keys = n;
    return sum;
}

static void redis_flush(redisContext *c)
{
    redisReply *r = redisCommand(c, "FLUSHALL SYNC");
    if (!r || r->type == REDIS_REPLY_ERROR)
        tb_die("redis FLUSHALL: %s", r ? r->str : c->errstr);
    freeReplyObject(r);
}

/* Files (not dot files) in DIR: their count, sizes and allocated bytes. With
 * drop, each is synced and dropped from the page cache. */
static void dir_scan(const char *dir, int drop, uint64_t *files, uint64_t *bytes, uint64_t *alloc)
{
    *files = *bytes = *alloc = 0;
    DIR *d = opendir(dir);
    if (!d)
        tb_die("opendir %s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, 0) || !S_ISREG(st.st_mode))
            continue;
        (*files)++;
        *bytes += (uint64_t)st.st_size;
        *alloc += (uint64_t)st.st_blocks * 512;
        if (drop) {
            const int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                fdatasync(fd);
                posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
                close(fd);
            }
        }
    }
    closedir(d);
}

/* ---- a cell ------------------------------------------------------------- */

static void tags(lkv_json *j)
{
    for (int i = 0; i < g_o.ntags; i++) {
        const char *eq = strchr(g_o.tags[i], '=');
        char k[64];
        snprintf(k, sizeof k, "%.*s", (int)(eq - g_o.tags[i]), g_o.tags[i]);
        lkv_json_str(j, k, eq + 1);
    }
}

static void run_cell(lkv_json *j, int tokens, int clients)
{
    worker *ws = calloc((size_t)clients, sizeof *ws);
    if (!ws)
        tb_die("out of memory");
    const size_t bytes = (size_t)2 * tokens * HEADS * DIM * 2;
    size_t total = ((size_t)g_o.mib << 20) / bytes;
    size_t per = (total + (size_t)clients - 1) / (size_t)clients;
    if (per < 2)
        per = 2;
    redisContext *admin = g_o.redis ? redis_open() : NULL;
    long long mem0 = 0;
    if (admin) {
        redis_flush(admin);
        mem0 = redis_info_num(admin, "memory", "used_memory");
    }
    for (int i = 0; i < clients; i++) {
        worker *w = &ws[i];
        w->id = i;
        w->tokens = tokens;
        w->clients = clients;
        w->nblocks = per;
        w->bytes = bytes;
        /* A window of 2 MiB per client, 32 MiB in all at most. */
        const size_t window = clients > 16 ? (32u << 20) / (size_t)clients : 2u << 20;
        const size_t d = window / bytes;
        w->depth = d < 1 ? 1 : d > 16 ? 16 : (unsigned)d;
        w->block = malloc(bytes);
        if (!w->block ||
            lkv_load_fill_kv(w->block, (size_t)tokens, HEADS, DIM, 1000u + (unsigned)i))
            tb_die("out of memory");
        if (g_o.sys == SYS_REDIS_RAW) {
            w->rc = redis_open();
        } else if (g_o.sys == SYS_LKV) {
            const lkv_client_options co = {.max_message_bytes = 64u << 20,
                                           .timeout_ms = 60000,
                                           .own_connection = 1,
                                           .wait_for_ready = 1};
            lkv_client_error e;
            if (lkv_client_create(g_o.lkv, &co, &w->lc, &e) ||
                lkv_client_wait_ready(w->lc, 10000, &e))
                tb_die("latticekvd at %s: %s", g_o.lkv, e.msg);
        }
    }
    if (g_o.warm) {
        /* An untimed pass over the same keys: the timed Puts then overwrite,
         * as in a cache that is already full, instead of growing the
         * server's memory (fresh pages cost Redis several times the copy
         * on this VM). */
        run_phase(ws, clients, PH_PUT);
        for (int i = 0; i < clients; i++) {
            ws[i].nblocks = ws[i].put;
            ws[i].put = 0;
            ws[i].coded = 0;
        }
    }
    g_syncs = 0;
    const double t_put = run_phase(ws, clients, PH_PUT);
    const uint64_t syncs = g_syncs;
    uint64_t files = 0, fbytes = 0, falloc = 0;
    if (g_o.dir)
        dir_scan(g_o.dir, g_o.cold, &files, &fbytes, &falloc);
    const double t_get = run_phase(ws, clients, PH_GET);

    size_t put = 0, got = 0;
    uint64_t coded = 0;
    double mse = 0;
    const char *err = NULL;
    tier_count tiers[MAX_TIERNAME] = {{{0}, 0}};
    for (int i = 0; i < clients; i++) {
        put += ws[i].put;
        got += ws[i].got;
        coded += ws[i].coded;
        mse += ws[i].rel_mse / clients;
        if (ws[i].err[0] && !err)
            err = ws[i].err;
        for (int k = 0; k < MAX_TIERNAME && ws[i].tiers[k].name[0]; k++)
            for (int m = 0; m < MAX_TIERNAME; m++) {
                if (!tiers[m].name[0])
                    memcpy(tiers[m].name, ws[i].tiers[k].name, sizeof tiers[m].name);
                if (!strcmp(tiers[m].name, ws[i].tiers[k].name)) {
                    tiers[m].n += ws[i].tiers[k].n;
                    break;
                }
            }
    }
    long long mem1 = admin ? redis_info_num(admin, "memory", "used_memory") : 0;
    long long nkeys = 0;
    const long long kbytes = admin ? redis_keys_bytes(admin, &nkeys) : 0;
    lkv_client_stats st = {0};
    int have_stats = 0;
    if (g_o.sys == SYS_LKV) {
        lkv_client_error e;
        have_stats = lkv_client_stats_get(ws[0].lc, &st, &e) == LKV_RPC_OK;
    }
    const double bf16 = (double)put * (double)bytes;
    const double gput = bf16 / t_put / 1e9, gget = bf16 / t_get / 1e9;
    const double gboth = 2 * bf16 / (t_put + t_get) / 1e9;
    /* The medium's bytes: Redis' MEMORY USAGE of the keys, or the files' sizes. */
    const double held = admin ? (double)kbytes : g_o.dir ? (double)fbytes : 0;

    lkv_json_object(j, NULL, LKV_JSON_INLINE);
    lkv_json_str(j, "system", g_o.label);
    tags(j);
    if (g_o.sys == SYS_FILES_RAW)
        lkv_json_str(j, "fsync", fsync_names[g_o.fsync]);
    lkv_json_int(j, "tokens", tokens);
    lkv_json_uint(j, "block_bytes", bytes);
    lkv_json_int(j, "clients", clients);
    if (g_o.sys == SYS_REDIS_RAW)
        lkv_json_uint(j, "pipeline", ws[0].depth);
    lkv_json_str(j, "puts", g_o.warm ? "overwrite (after an untimed pass)" : "new keys");
    lkv_json_uint(j, "blocks", put);
    lkv_json_uint(j, "blocks_planned", per * (size_t)clients);
    lkv_json_uint(j, "gets_ok", got);
    lkv_json_num(j, "put_s", "%.3f", t_put);
    lkv_json_num(j, "get_s", "%.3f", t_get);
    lkv_json_num(j, "put_gbps", "%.4f", gput);
    lkv_json_num(j, "get_gbps", "%.4f", gget);
    lkv_json_num(j, "putget_gbps", "%.4f", gboth);
    if (coded) {
        lkv_json_uint(j, "coded_bytes", coded);
        lkv_json_num(j, "bf16_per_coded_byte", "%.4f", bf16 / (double)coded);
        lkv_json_num(j, "rel_mse", "%.3e", mse);
    }
    if (held > 0) {
        lkv_json_num(j, "tier_bytes", "%.0f", held);
        lkv_json_num(j, "bf16_per_tier_byte", "%.4f", bf16 / held);
    }
    if (admin) {
        lkv_json_int(j, "redis_used_memory_delta", mem1 - mem0);
        lkv_json_int(j, "redis_keys", nkeys);
    }
    if (g_o.dir) {
        lkv_json_uint(j, "dir_files", files);
        lkv_json_uint(j, "dir_bytes", fbytes);
        lkv_json_uint(j, "dir_alloc_bytes", falloc);
        lkv_json_str(j, "reads", g_o.cold ? "cold (page cache dropped)" : "page cache");
    }
    if (g_o.sys == SYS_FILES_RAW)
        lkv_json_num(j, "syncs_per_put", "%.3f", put ? (double)syncs / (double)put : 0);
    if (tiers[0].name[0]) {
        lkv_json_object(j, "get_tier", LKV_JSON_INLINE);
        for (int m = 0; m < MAX_TIERNAME && tiers[m].name[0]; m++)
            lkv_json_uint(j, tiers[m].name, tiers[m].n);
        lkv_json_end(j);
    }
    if (have_stats) {
        lkv_json_array(j, "daemon_tiers", LKV_JSON_INLINE);
        for (size_t k = 0; k < st.n_tiers; k++) {
            const lkv_client_tier *t = &st.tiers[k];
            lkv_json_object(j, NULL, LKV_JSON_INLINE);
            lkv_json_str(j, "name", t->name);
            lkv_json_uint(j, "capacity", t->capacity_bytes);
            lkv_json_uint(j, "used", t->used_bytes);
            lkv_json_uint(j, "blocks", t->blocks);
            lkv_json_uint(j, "hits", t->hits);
            lkv_json_uint(j, "misses", t->misses);
            lkv_json_uint(j, "evictions", t->evictions);
            lkv_json_end(j);
        }
        lkv_json_end(j);
    }
    lkv_json_num(j, "loadavg", "%.2f", lkv_bench_loadavg());
    if (err)
        lkv_json_str(j, "error", err);
    lkv_json_end(j);

    printf("%-10s %-18s %4d tok %3d cl %6zu blocks  put %7.3f  get %7.3f  put+get %7.3f GB/s",
           g_o.label, g_o.ntags ? g_o.tags[0] : "", tokens, clients, put, gput, gget, gboth);
    if (held > 0)
        printf("  %.3f bf16 B per tier B", bf16 / held);
    printf("\n");
    if (err)
        fprintf(stderr, "tiers_bench: %s: %s\n", g_o.label, err);

    /* Clean up, untimed: the keys go, so the next cell starts empty. */
    run_phase(ws, clients, PH_DEL);
    if (admin) {
        redis_flush(admin);
        redisFree(admin);
    }
    lkv_client_stats_clear(&st);
    for (int i = 0; i < clients; i++) {
        free(ws[i].block);
        if (ws[i].rc)
            redisFree(ws[i].rc);
        lkv_client_free(ws[i].lc);
    }
    free(ws);
    if (err || got != put || put == 0)
        tb_die("%s cell %d tokens x %d clients failed: %s", g_o.label, tokens, clients,
               err ? err : "gets short or nothing put");
}

/* ---- main --------------------------------------------------------------- */

static int parse_list(const char *s, int *out, int max, int lo, int hi)
{
    int n = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *end;
        const long v = strtol(t, &end, 10);
        if (*end || v < lo || v > hi || n == max) {
            free(copy);
            return -1;
        }
        out[n++] = (int)v;
    }
    free(copy);
    return n;
}

static void usage(void)
{
    fprintf(stderr,
            "usage:\n"
            "  tiers_bench --tcp-serve IP:PORT [--max-seconds N]\n"
            "  tiers_bench --tcp-test IP:PORT [--seconds S] [--streams N] [--json F] [--tag K=V]\n"
            "  tiers_bench --system redis-raw|files-raw|lkv [--label NAME] [--redis IP:PORT]\n"
            "              [--dir DIR] [--fsync never|batch|always] [--lkv unix:PATH]\n"
            "              [--tokens 16,256] [--clients 8,64] [--mib N] [--max-seconds S]\n"
            "              [--cold] [--warm] [--json FILE] [--tag K=V]...\n");
    exit(2);
}

static void bad(const char *flag, const char *v, const char *want)
{
    fprintf(stderr, "tiers_bench: %s %s: %s\n", flag, v, want);
    exit(2);
}

int main(int argc, char **argv)
{
    /* Every client process of the benchmarks is set up alike (lkv_bench.h):
     * the allocator and the gRPC poller as service_bench's clients, so the
     * raw systems and latticekv's client alike are not measured through
     * page faults on each block. */
    const int poll_chosen = lkv_bench_tune_clients();
    const char *tcp_serve = NULL, *tcp_test = NULL, *system = NULL;
    double seconds = 3;
    int streams = 4;
    g_o.mib = 256;
    g_o.max_seconds = 60;
    g_o.ntokens = parse_list("16,256", g_o.tokens, MAX_LIST, 1, 4096);
    g_o.nclients = parse_list("8,64", g_o.clients, MAX_LIST, 1, TB_MAX_CLIENTS);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--cold") || !strcmp(a, "--warm")) {
            *(a[2] == 'c' ? &g_o.cold : &g_o.warm) = 1;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--tcp-serve")) {
            tcp_serve = v;
        } else if (!strcmp(a, "--tcp-test")) {
            tcp_test = v;
        } else if (!strcmp(a, "--seconds")) {
            seconds = atof(v);
            if (!(seconds >= 0.5 && seconds <= 60))
                bad(a, v, "seconds outside 0.5..60");
        } else if (!strcmp(a, "--streams")) {
            if (parse_list(v, &streams, 1, 1, TB_MAX_CLIENTS) != 1)
                bad(a, v, "streams outside 1..64");
        } else if (!strcmp(a, "--system")) {
            system = v;
        } else if (!strcmp(a, "--label")) {
            g_o.label = v;
        } else if (!strcmp(a, "--redis")) {
            g_o.redis = v;
        } else if (!strcmp(a, "--dir")) {
            g_o.dir = v;
        } else if (!strcmp(a, "--lkv")) {
            g_o.lkv = v;
        } else if (!strcmp(a, "--fsync")) {
            int k = 0;
            while (k < 3 && strcmp(v, fsync_names[k]))
                k++;
            if (k == 3)
                bad(a, v, "not never, batch or always");
            g_o.fsync = (fsync_mode)k;
        } else if (!strcmp(a, "--tokens")) {
            if ((g_o.ntokens = parse_list(v, g_o.tokens, MAX_LIST, 1, 4096)) < 1)
                bad(a, v, "a list of up to 4 token counts in 1..4096");
        } else if (!strcmp(a, "--clients")) {
            if ((g_o.nclients = parse_list(v, g_o.clients, MAX_LIST, 1, TB_MAX_CLIENTS)) < 1)
                bad(a, v, "a list of up to 4 client counts in 1..64");
        } else if (!strcmp(a, "--mib")) {
            int m;
            if (parse_list(v, &m, 1, 1, 65536) != 1)
                bad(a, v, "MiB outside 1..65536");
            g_o.mib = (unsigned)m;
        } else if (!strcmp(a, "--max-seconds")) {
            g_o.max_seconds = atof(v);
            if (!(g_o.max_seconds >= 1 && g_o.max_seconds <= 7200))
                bad(a, v, "seconds outside 1..7200");
        } else if (!strcmp(a, "--json")) {
            g_o.json = v;
        } else if (!strcmp(a, "--tag")) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || eq - v > 60 || g_o.ntags == MAX_TAGS)
                bad(a, v, "not KEY=VALUE (at most 8)");
            g_o.tags[g_o.ntags++] = v;
        } else {
            usage();
        }
    }
    if (tcp_serve)
        return tb_tcp_serve(tcp_serve, (unsigned)g_o.max_seconds);

    /* Without --json the rows go nowhere, through the same writer. */
    const char *jpath = g_o.json ? g_o.json : "/dev/null";
    FILE *f = fopen(jpath, "w");
    if (!f)
        tb_die("--json %s: %s", jpath, strerror(errno));
    lkv_json j;
    {
        lkv_json_start(&j, f);
        char date[32];
        lkv_bench_utc(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ");
        lkv_json_str(&j, "date", date);
        lkv_json_num(&j, "loadavg_start", "%.2f", lkv_bench_loadavg());
        lkv_json_str(&j, "client_tuning",
                     poll_chosen
                         ? "mallopt mmap 64 MiB, trim 256 MiB; GRPC_POLL_STRATEGY=poll"
                         : "mallopt mmap 64 MiB, trim 256 MiB; GRPC_POLL_STRATEGY from the caller");
        lkv_json_array(&j, "rows", LKV_JSON_BLOCK);
    }
    if (tcp_test) {
        double up, down;
        tb_tcp_test(tcp_test, (unsigned)streams, seconds, &up, &down);
        printf("tcp %s: up %.3f Gbit/s, down %.3f Gbit/s (%d streams, %.1f s each)\n", tcp_test, up,
               down, streams, seconds);
        {
            lkv_json_object(&j, NULL, LKV_JSON_INLINE);
            lkv_json_str(&j, "system", "tcp");
            tags(&j);
            lkv_json_int(&j, "streams", streams);
            lkv_json_num(&j, "seconds", "%.1f", seconds);
            lkv_json_num(&j, "up_gbit", "%.4f", up);
            lkv_json_num(&j, "down_gbit", "%.4f", down);
            lkv_json_end(&j);
        }
    } else {
        if (!system)
            usage();
        if (!strcmp(system, "redis-raw"))
            g_o.sys = SYS_REDIS_RAW;
        else if (!strcmp(system, "files-raw"))
            g_o.sys = SYS_FILES_RAW;
        else if (!strcmp(system, "lkv"))
            g_o.sys = SYS_LKV;
        else
            bad("--system", system, "not redis-raw, files-raw or lkv");
        if (!g_o.label)
            g_o.label = system;
        if (g_o.sys == SYS_REDIS_RAW && !g_o.redis)
            bad("--system", system, "needs --redis IP:PORT");
        if (g_o.sys == SYS_FILES_RAW && !g_o.dir)
            bad("--system", system, "needs --dir DIR");
        if (g_o.sys == SYS_LKV && !g_o.lkv)
            bad("--system", system, "needs --lkv ADDR");
        if (g_o.dir) {
            g_dirfd = open(g_o.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (g_dirfd < 0)
                bad("--dir", g_o.dir, strerror(errno));
        }
        for (int t = 0; t < g_o.ntokens; t++)
            for (int c = 0; c < g_o.nclients; c++)
                run_cell(&j, g_o.tokens[t], g_o.clients[c]);
    }
    lkv_json_end(&j);
    lkv_json_num(&j, "loadavg_end", "%.2f", lkv_bench_loadavg());
    if (lkv_json_finish(&j) || fclose(f))
        tb_die("--json %s: write failed", jpath);
    return 0;
}
