/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_tier_ssd.c - the SSD directory tier on real files: round trips,
 * overwrite and delete ordering, LRU eviction, the index rebuilt at open,
 * damaged and leftover files dropped and counted, injected and real ENOSPC,
 * bad arguments. Each test runs its own libuv loop in a fresh temporary
 * directory, removed afterwards.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>
#include <uv.h>

#include "lkv_tier.h"

static char g_dir[256];
static char g_mnt[300]; /* a tmpfs mounted by the test, or "" */
static uv_loop_t g_loop;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/lkv_tier_test_XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
    g_mnt[0] = 0;
    cr_assert_eq(uv_loop_init(&g_loop), 0);
}

static void teardown(void)
{
    if (g_mnt[0])
        umount2(g_mnt, MNT_DETACH);
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    uv_run(&g_loop, UV_RUN_DEFAULT);
    uv_loop_close(&g_loop);
}

TestSuite(tier_ssd, .init = setup, .fini = teardown, .timeout = 60);

/* ---- helpers ------------------------------------------------------------ */

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

/* Submits a put without waiting; the blob reference stays the caller's. */
static void submit_put(lkv_tier *t, op *o, const char *ns, const void *key, size_t key_len,
                       lkv_blob *b)
{
    init_op(o, ns, key, key_len);
    o->req.blob = b;
    lkv_tier_put(t, &o->req);
}

static lkv_status put_sync(lkv_tier *t, const char *ns, const char *key, size_t len, uint32_t seed,
                           char *msg)
{
    lkv_blob *b = make_blob(len, seed);
    op o;
    submit_put(t, &o, ns, key, strlen(key), b);
    lkv_blob_unref(b); /* the tier holds its own reference */
    wait_op(&o);
    if (msg)
        snprintf(msg, 192, "%s", o.req.status ? o.req.diag.msg : "");
    return o.req.status;
}

/* Gets (ns, key): returns the blob (NULL on a miss) and the status. */
static lkv_blob *get_sync(lkv_tier *t, const char *ns, const char *key, lkv_status *st)
{
    op o;
    init_op(&o, ns, key, strlen(key));
    lkv_tier_get(t, &o.req);
    wait_op(&o);
    *st = o.req.status;
    cr_assert_eq(o.req.found, o.req.blob != NULL);
    return o.req.blob;
}

/* Asserts that (ns, key) holds exactly the block put with (len, seed). */
static void expect_block(lkv_tier *t, const char *ns, const char *key, size_t len, uint32_t seed)
{
    lkv_status st;
    lkv_blob *got = get_sync(t, ns, key, &st);
    cr_assert_eq(st, LKV_OK, "get %s/%s: %s", ns, key, lkv_status_name(st));
    cr_assert_not_null(got, "get %s/%s missed", ns, key);
    lkv_blob *want = make_blob(len, seed);
    cr_assert_eq(got->len, len, "%s: %zu bytes, expected %zu", key, got->len, len);
    cr_assert(memcmp(got->data, want->data, len) == 0, "%s: bytes differ", key);
    lkv_blob_unref(want);
    lkv_blob_unref(got);
}

static void expect_miss(lkv_tier *t, const char *ns, const char *key)
{
    lkv_status st;
    lkv_blob *got = get_sync(t, ns, key, &st);
    cr_assert_eq(st, LKV_OK);
    cr_assert_null(got, "%s/%s should miss", ns, key);
    cr_assert_eq(t->contains(t, ns, strlen(ns), (const uint8_t *)key, strlen(key)),
                 LKV_TIER_ABSENT);
}

static void closed_cb(void *ud)
{
    (*(int *)ud)++;
}

static void close_sync(lkv_tier *t)
{
    int closed = 0;
    t->close(t, closed_cb, &closed);
    while (!closed)
        uv_run(&g_loop, UV_RUN_ONCE);
    cr_assert_eq(closed, 1);
}

static lkv_ssd_config cfg_for(const char *dir, uint64_t cap)
{
    lkv_ssd_config c;
    lkv_ssd_config_defaults(&c);
    c.dir = dir;
    c.capacity_bytes = cap;
    return c;
}

static lkv_tier *open_tier(const lkv_ssd_config *c)
{
    lkv_tier *t = NULL;
    lkv_diag d = {0};
    const lkv_status st = lkv_tier_ssd_create(&g_loop, c, &t, &d);
    cr_assert_eq(st, LKV_OK, "create: %s %s", lkv_status_name(st), d.msg);
    cr_assert_str_eq(t->name, "ssd");
    return t;
}

/* Counts directory entries whose names start with prefix / end with suffix. */
static int count_files(const char *dir, const char *prefix, const char *suffix)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const size_t l = strlen(de->d_name), sl = strlen(suffix);
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0 && l >= sl &&
            strcmp(de->d_name + l - sl, suffix) == 0)
            n++;
    }
    closedir(d);
    return n;
}

/* Finds the block file holding (ns, key) by reading the documented format:
 * a 40-byte header, then the namespace and key bytes. */
static int file_of(const char *dir, const char *ns, const char *key, char *path, size_t cap)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    struct dirent *de;
    int found = 0;
    const size_t nl = strlen(ns), kl = strlen(key);
    while (!found && (de = readdir(d)) != NULL) {
        const size_t l = strlen(de->d_name);
        if (l < 4 || strcmp(de->d_name + l - 4, ".lkv") != 0)
            continue;
        snprintf(path, cap, "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "rb");
        cr_assert_not_null(f);
        uint8_t buf[40 + 64];
        const size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        if (n >= 40 + nl + kl && memcmp(buf, "LKVS", 4) == 0 && buf[8] == nl && buf[12] == kl &&
            memcmp(buf + 40, ns, nl) == 0 && memcmp(buf + 40 + nl, key, kl) == 0)
            found = 1;
    }
    closedir(d);
    return found;
}

static uint64_t file_size(const char *path)
{
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0, "stat %s", path);
    return (uint64_t)sb.st_size;
}

static lkv_tier_stats stats_of(const lkv_tier *t)
{
    lkv_tier_stats s;
    t->stats(t, &s);
    return s;
}

/* ---- round trips ----------------------------------------------------------- */

static void round_trip(lkv_ssd_fsync policy)
{
    lkv_ssd_config c = cfg_for(g_dir, 64 << 20);
    c.fsync = policy;
    lkv_tier *t = open_tier(&c);
    /* Keys that would be unsafe as file names, and a binary one. */
    cr_assert_eq(put_sync(t, "ns", "../../etc/passwd", 1, 1, NULL), LKV_OK);
    cr_assert_eq(put_sync(t, "ns", "a/b\\c d", 300000, 2, NULL), LKV_OK);
    cr_assert_eq(put_sync(t, "other", "a/b\\c d", 4096, 3, NULL), LKV_OK);
    cr_assert_eq(put_sync(t, "", "no namespace", 10, 4, NULL), LKV_OK);
    static const uint8_t bin[] = {0, 0xff, '/', 0, '.', '\n'};
    lkv_blob *b = make_blob(777, 5);
    op o;
    submit_put(t, &o, "ns", bin, sizeof bin, b);
    lkv_blob_unref(b);
    wait_op(&o);
    cr_assert_eq(o.req.status, LKV_OK, "%s", o.req.diag.msg);

    expect_block(t, "ns", "../../etc/passwd", 1, 1);
    expect_block(t, "ns", "a/b\\c d", 300000, 2);
    expect_block(t, "other", "a/b\\c d", 4096, 3);
    expect_block(t, "", "no namespace", 10, 4);
    init_op(&o, "ns", bin, sizeof bin);
    lkv_tier_get(t, &o.req);
    wait_op(&o);
    cr_assert(o.req.found && o.req.blob->len == 777);
    cr_assert_eq(o.req.tier, t, "req->tier names the tier that answered");
    lkv_blob *want = make_blob(777, 5);
    cr_assert(memcmp(o.req.blob->data, want->data, 777) == 0);
    lkv_blob_unref(want);
    lkv_blob_unref(o.req.blob);
    expect_miss(t, "ns", "absent");
    expect_miss(t, "nx", "a/b\\c d"); /* same key, other namespace */

    const lkv_tier_stats s = stats_of(t);
    cr_assert_eq(s.blocks, 5);
    cr_assert_eq(s.puts, 5);
    cr_assert_eq(s.hits, 5);
    cr_assert_eq(s.misses, 2);
    cr_assert_eq(s.errors, 0);
    cr_assert_eq(s.inflight, 0);
    cr_assert_eq(s.capacity_bytes, 64 << 20);
    /* One put at a time: always and batch both sync the file and the
     * directory once per put (a batch of one); never does not sync. */
    cr_assert_eq(s.syncs, policy == LKV_SSD_FSYNC_NEVER ? 0 : 2 * s.puts, "%llu syncs",
                 (unsigned long long)s.syncs);
    /* Charged per file: 40-byte header + namespace + key + block. */
    cr_assert_eq(s.used_bytes, (40 + 2 + 16 + 1) + (40 + 2 + 7 + 300000) + (40 + 5 + 7 + 4096) +
                                   (40 + 0 + 12 + 10) + (40 + 2 + 6 + 777));
    cr_assert_eq(count_files(g_dir, "", ".lkv"), 5);
    cr_assert_eq(count_files(g_dir, ".tmp-", ""), 0);
    char path[512];
    cr_assert(file_of(g_dir, "ns", "a/b\\c d", path, sizeof path));
    cr_assert_eq(file_size(path), 40 + 2 + 7 + 300000);
    close_sync(t);
}

Test(tier_ssd, put_get_byte_identical_fsync_never)
{
    round_trip(LKV_SSD_FSYNC_NEVER);
}

Test(tier_ssd, put_get_byte_identical_fsync_batch)
{
    round_trip(LKV_SSD_FSYNC_BATCH);
}

Test(tier_ssd, put_get_byte_identical_fsync_always)
{
    round_trip(LKV_SSD_FSYNC_ALWAYS);
}

Test(tier_ssd, fsync_names_parse)
{
    lkv_ssd_fsync f;
    cr_assert_eq(lkv_ssd_fsync_parse("batch", &f), 0);
    cr_assert_eq(f, LKV_SSD_FSYNC_BATCH);
    cr_assert_eq(lkv_ssd_fsync_parse("always", &f), 0);
    cr_assert_eq(f, LKV_SSD_FSYNC_ALWAYS);
    cr_assert_eq(lkv_ssd_fsync_parse("sometimes", &f), -1);
    cr_assert_str_eq(lkv_ssd_fsync_name(LKV_SSD_FSYNC_NEVER), "never");
    cr_assert_null(lkv_ssd_fsync_name((lkv_ssd_fsync)7));
}

/* ---- overwrite and ordering ----------------------------------------------- */

static void overwrites_in_flight(lkv_ssd_fsync policy)
{
    lkv_ssd_config c = cfg_for(g_dir, 64 << 20);
    c.fsync = policy;
    lkv_tier *t = open_tier(&c);
    cr_assert_eq(put_sync(t, "n", "k", 5000, 100, NULL), LKV_OK);
    expect_block(t, "n", "k", 5000, 100);
    /* 20 puts of one key and 20 of other keys, all in flight at once: the
     * last submitted for "k" must be what stays, on disk too. */
    enum { N = 20 };
    op ops[2 * N];
    char keys[N][16];
    for (int i = 0; i < N; i++) {
        lkv_blob *b = make_blob(1000 + (size_t)i * 10, 200 + (uint32_t)i);
        submit_put(t, &ops[i], "n", "k", 1, b);
        lkv_blob_unref(b);
        snprintf(keys[i], sizeof keys[i], "o%d", i);
        b = make_blob(3000, 300 + (uint32_t)i);
        submit_put(t, &ops[N + i], "n", keys[i], strlen(keys[i]), b);
        lkv_blob_unref(b);
    }
    cr_assert_gt(stats_of(t).inflight, 0);
    for (int i = 0; i < 2 * N; i++) {
        wait_op(&ops[i]);
        cr_assert_eq(ops[i].req.status, LKV_OK, "put %d: %s", i, ops[i].req.diag.msg);
    }
    expect_block(t, "n", "k", 1000 + (N - 1) * 10, 200 + N - 1);
    const lkv_tier_stats s = stats_of(t);
    cr_assert_eq(s.blocks, 1 + N);
    cr_assert_eq(s.used_bytes, (40 + 1 + 1 + 1000 + (N - 1) * 10) + N * (40 + 1 + 2 + 3000) +
                                   10 /* keys o10..o19 are one byte longer */);
    cr_assert_eq(count_files(g_dir, "", ".lkv"), 1 + N);
    /* Batch: one fdatasync per put plus one directory fsync per group. */
    const uint64_t syncs = s.syncs;
    if (policy == LKV_SSD_FSYNC_BATCH)
        cr_assert(syncs > s.puts && syncs <= 2 * s.puts, "%llu syncs for %llu puts",
                  (unsigned long long)syncs, (unsigned long long)s.puts);
    else if (policy == LKV_SSD_FSYNC_ALWAYS)
        cr_assert_eq(syncs, 2 * s.puts);
    else
        cr_assert_eq(syncs, 0);
    close_sync(t);
    t = open_tier(&c);
    expect_block(t, "n", "k", 1000 + (N - 1) * 10, 200 + N - 1);
    for (int i = 0; i < N; i++)
        expect_block(t, "n", keys[i], 3000, 300 + (uint32_t)i);
    close_sync(t);
}

Test(tier_ssd, overwrite_last_submitted_wins_never)
{
    overwrites_in_flight(LKV_SSD_FSYNC_NEVER);
}

Test(tier_ssd, overwrite_last_submitted_wins_batch)
{
    overwrites_in_flight(LKV_SSD_FSYNC_BATCH);
}

Test(tier_ssd, overwrite_last_submitted_wins_always)
{
    overwrites_in_flight(LKV_SSD_FSYNC_ALWAYS);
}

Test(tier_ssd, delete_and_its_order_with_puts)
{
    lkv_ssd_config c = cfg_for(g_dir, 1 << 20);
    lkv_tier *t = open_tier(&c);
    cr_assert_eq(put_sync(t, "n", "a", 100, 1, NULL), LKV_OK);
    cr_assert_eq(put_sync(t, "n", "b", 100, 2, NULL), LKV_OK);
    op d;
    init_op(&d, "n", "a", 1);
    lkv_tier_del(t, &d.req);
    wait_op(&d);
    cr_assert_eq(d.req.status, LKV_OK);
    cr_assert_eq(d.req.found, 1);
    expect_miss(t, "n", "a");
    cr_assert_eq(count_files(g_dir, "", ".lkv"), 1, "the file of a is gone");
    init_op(&d, "n", "a", 1);
    lkv_tier_del(t, &d.req);
    wait_op(&d);
    cr_assert_eq(d.req.found, 0, "deleting an absent key finds nothing");
    /* put then delete submitted together: the delete comes second and wins. */
    lkv_blob *bl = make_blob(100, 9);
    op p;
    submit_put(t, &p, "n", "c", 1, bl);
    init_op(&d, "n", "c", 1);
    lkv_tier_del(t, &d.req);
    /* delete then put: the put comes second and wins. */
    op d2, p2;
    init_op(&d2, "n", "b", 1);
    lkv_tier_del(t, &d2.req);
    submit_put(t, &p2, "n", "b", 1, bl);
    lkv_blob_unref(bl);
    wait_op(&p);
    wait_op(&d);
    wait_op(&d2);
    wait_op(&p2);
    cr_assert_eq(p.req.status, LKV_OK);
    cr_assert_eq(d.req.found, 1, "the delete saw the put before it");
    cr_assert_eq(d2.req.found, 1);
    expect_miss(t, "n", "c");
    expect_block(t, "n", "b", 100, 9);
    const lkv_tier_stats s = stats_of(t);
    cr_assert_eq(s.blocks, 1);
    cr_assert_eq(s.used_bytes, 40 + 1 + 1 + 100);
    close_sync(t);
    t = open_tier(&c);
    expect_miss(t, "n", "a");
    expect_miss(t, "n", "c");
    expect_block(t, "n", "b", 100, 9);
    close_sync(t);
}

/* ---- capacity and eviction ------------------------------------------------ */

typedef struct evicted {
    char keys[16][8];
    int n;
} evicted;

static void on_evict(lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *key, size_t key_len,
                     lkv_blob *blob, void *ud)
{
    (void)t;
    evicted *e = ud;
    cr_assert_eq(ns_len, 1);
    cr_assert_eq(ns[0], 'n');
    cr_assert_null(blob, "the ssd tier does not hold evicted bytes in memory");
    cr_assert_lt(e->n, 16);
    snprintf(e->keys[e->n++], 8, "%.*s", (int)key_len, (const char *)key);
}

Test(tier_ssd, capacity_evicts_least_recently_used)
{
    const uint64_t file = 40 + 1 + 1 + 1000; /* each block's file */
    lkv_ssd_config c = cfg_for(g_dir, 3 * file);
    c.low_pct = 100; /* evict exactly what is needed */
    lkv_tier *t = open_tier(&c);
    evicted ev = {0};
    t->set_evict_hook(t, on_evict, &ev);
    cr_assert_eq(put_sync(t, "n", "a", 1000, 1, NULL), LKV_OK);
    cr_assert_eq(put_sync(t, "n", "b", 1000, 2, NULL), LKV_OK);
    cr_assert_eq(put_sync(t, "n", "c", 1000, 3, NULL), LKV_OK);
    expect_block(t, "n", "a", 1000, 1); /* a is now the most recent */
    /* contains does not refresh: b stays the least recently used. */
    cr_assert_eq(t->contains(t, "n", 1, (const uint8_t *)"b", 1), LKV_TIER_PRESENT);
    cr_assert_eq(put_sync(t, "n", "d", 1000, 4, NULL), LKV_OK);
    cr_assert_eq(ev.n, 1);
    cr_assert_str_eq(ev.keys[0], "b");
    expect_miss(t, "n", "b");
    expect_block(t, "n", "a", 1000, 1);
    expect_block(t, "n", "c", 1000, 3);
    expect_block(t, "n", "d", 1000, 4);
    cr_assert_eq(put_sync(t, "n", "e", 1000, 5, NULL), LKV_OK);
    cr_assert_eq(ev.n, 2);
    cr_assert_str_eq(ev.keys[1], "a", "a was read before c and d");
    lkv_tier_stats s = stats_of(t);
    cr_assert_eq(s.evictions, 2);
    cr_assert_eq(s.blocks, 3);
    cr_assert_eq(s.used_bytes, 3 * file);
    uv_run(&g_loop, UV_RUN_DEFAULT); /* the evicted files' unlinks */
    cr_assert_eq(count_files(g_dir, "", ".lkv"), 3);

    /* A full tier can still rewrite a key: the old file's bytes come back. */
    cr_assert_eq(put_sync(t, "n", "e", 1000, 55, NULL), LKV_OK);
    cr_assert_eq(stats_of(t).evictions, 2, "rewriting e evicted nothing");
    expect_block(t, "n", "e", 1000, 55);

    /* A block bigger than the tier is refused before any I/O. */
    char msg[192];
    cr_assert_eq(put_sync(t, "n", "big", 3 * file, 6, msg), LKV_ERR_LIMIT);
    cr_assert(strstr(msg, "capacity"), "%s", msg);
    s = stats_of(t);
    cr_assert_eq(s.blocks, 3, "the refused put evicted nothing");
    close_sync(t);
}

Test(tier_ssd, watermarks_evict_down_to_low)
{
    const uint64_t file = 40 + 1 + 2 + 958; /* 1001 bytes */
    lkv_ssd_config c = cfg_for(g_dir, 10 * file);
    c.high_pct = 100;
    c.low_pct = 50;
    lkv_tier *t = open_tier(&c);
    char key[8];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "k%d", i);
        cr_assert_eq(put_sync(t, "n", key, 958, (uint32_t)i, NULL), LKV_OK);
    }
    cr_assert_eq(stats_of(t).evictions, 0);
    cr_assert_eq(put_sync(t, "n", "kx", 958, 99, NULL), LKV_OK);
    /* 11 blocks over a high watermark of 10: down to 5 including the new one. */
    const lkv_tier_stats s = stats_of(t);
    cr_assert_eq(s.evictions, 6);
    cr_assert_eq(s.blocks, 5);
    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof key, "k%d", i);
        expect_miss(t, "n", key);
    }
    for (int i = 6; i < 10; i++) {
        snprintf(key, sizeof key, "k%d", i);
        expect_block(t, "n", key, 958, (uint32_t)i);
    }
    close_sync(t);
}

Test(tier_ssd, bad_watermarks_and_config_are_named)
{
    lkv_ssd_config c = cfg_for(g_dir, 0);
    lkv_tier *t = NULL;
    lkv_diag d;
    cr_assert_eq(lkv_tier_ssd_create(&g_loop, &c, &t, &d), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d.msg, "ssd-bytes=0"), "%s", d.msg);
    c = cfg_for(g_dir, 1000);
    c.low_pct = 95;
    c.high_pct = 80;
    cr_assert_eq(lkv_tier_ssd_create(&g_loop, &c, &t, &d), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d.msg, "low watermark=95%"), "%s", d.msg);
    c = cfg_for(NULL, 1000);
    cr_assert_eq(lkv_tier_ssd_create(&g_loop, &c, &t, &d), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d.msg, "ssd-dir"), "%s", d.msg);
    c = cfg_for(g_dir, 1000);
    c.fsync = (lkv_ssd_fsync)5;
    cr_assert_eq(lkv_tier_ssd_create(&g_loop, &c, &t, &d), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d.msg, "ssd-fsync=5"), "%s", d.msg);
    cr_assert_null(t);
}

/* ---- reopen ------------------------------------------------------------------ */

Test(tier_ssd, reopen_rebuilds_index_and_write_order)
{
    const uint64_t file = 40 + 1 + 2 + 2000;
    lkv_ssd_config c = cfg_for(g_dir, 8 * file);
    c.low_pct = 100;
    lkv_tier *t = open_tier(&c);
    char key[8];
    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof key, "k%d", i);
        cr_assert_eq(put_sync(t, "n", key, 2000, (uint32_t)i, NULL), LKV_OK);
    }
    cr_assert_eq(put_sync(t, "n", "k0", 2000, 50, NULL), LKV_OK); /* k0 rewritten last */
    const lkv_tier_stats before = stats_of(t);
    close_sync(t);

    t = open_tier(&c);
    lkv_tier_stats s = stats_of(t);
    cr_assert_eq(s.loaded_blocks, 6);
    cr_assert_eq(s.blocks, 6);
    cr_assert_eq(s.used_bytes, before.used_bytes);
    cr_assert_eq(s.dropped_truncated + s.dropped_corrupt + s.removed_temporary, 0);
    expect_block(t, "n", "k0", 2000, 50);
    for (int i = 1; i < 6; i++) {
        snprintf(key, sizeof key, "k%d", i);
        cr_assert_eq(t->contains(t, "n", 1, (const uint8_t *)key, 2), LKV_TIER_PRESENT);
    }
    close_sync(t);

    /* Without reads, recency after a restart is write order: k1 is oldest. */
    t = open_tier(&c);
    evicted ev = {0};
    t->set_evict_hook(t, on_evict, &ev);
    cr_assert_eq(put_sync(t, "n", "k6", 2000, 6, NULL), LKV_OK);
    cr_assert_eq(put_sync(t, "n", "k7", 2000, 7, NULL), LKV_OK);
    cr_assert_eq(ev.n, 0);
    cr_assert_eq(put_sync(t, "n", "k8", 2000, 8, NULL), LKV_OK);
    cr_assert_eq(ev.n, 1);
    cr_assert_str_eq(ev.keys[0], "k1");
    /* New writes continue the sequence, so they are younger than k0. */
    cr_assert_eq(put_sync(t, "n", "k9", 2000, 9, NULL), LKV_OK);
    cr_assert_str_eq(ev.keys[1], "k2");
    close_sync(t);

    /* A smaller capacity at reopen evicts the oldest down to fit. */
    c.capacity_bytes = 3 * file;
    t = open_tier(&c);
    s = stats_of(t);
    cr_assert_eq(s.blocks, 3);
    cr_assert_eq(s.evictions, 5);
    expect_block(t, "n", "k9", 2000, 9);
    expect_block(t, "n", "k8", 2000, 8);
    expect_block(t, "n", "k7", 2000, 7);
    cr_assert_eq(count_files(g_dir, "", ".lkv"), 3);
    close_sync(t);
}

/* Flips one bit at byte off of the file. */
static void flip_bit(const char *path, long off)
{
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    cr_assert_eq(fseek(f, off, SEEK_SET), 0);
    const int c = fgetc(f);
    cr_assert_neq(c, EOF);
    cr_assert_eq(fseek(f, off, SEEK_SET), 0);
    fputc(c ^ 0x10, f);
    fclose(f);
}

Test(tier_ssd, damaged_files_at_open_are_dropped_and_counted)
{
    lkv_ssd_config c = cfg_for(g_dir, 1 << 20);
    lkv_tier *t = open_tier(&c);
    cr_assert_eq(put_sync(t, "n", "trunc", 5000, 1, NULL), LKV_OK);
    cr_assert_eq(put_sync(t, "n", "flip", 5000, 2, NULL), LKV_OK);
    cr_assert_eq(put_sync(t, "n", "hdrflip", 5000, 3, NULL), LKV_OK);
    cr_assert_eq(put_sync(t, "n", "good", 5000, 4, NULL), LKV_OK);
    close_sync(t);

    char p_trunc[512], p_flip[512], p_hdr[512], tmp[512];
    cr_assert(file_of(g_dir, "n", "trunc", p_trunc, sizeof p_trunc));
    cr_assert(file_of(g_dir, "n", "flip", p_flip, sizeof p_flip));
    cr_assert(file_of(g_dir, "n", "hdrflip", p_hdr, sizeof p_hdr));
    cr_assert_eq(truncate(p_trunc, 40 + 1 + 5 + 2500), 0); /* torn in the data */
    flip_bit(p_flip, 40 + 1 + 4 + 4000);                   /* one bit of the data */
    flip_bit(p_hdr, 25);                                   /* the sequence number */
    snprintf(tmp, sizeof tmp, "%s/.tmp-00000000000000ff", g_dir);
    FILE *f = fopen(tmp, "wb");
    cr_assert_not_null(f);
    fputs("LKVS half a write", f);
    fclose(f);
    /* A symlink and a directory with block-file names: not followed, not
     * loaded, not removed. */
    char link[512], subdir[512];
    snprintf(link, sizeof link, "%s/%032d.lkv", g_dir, 1);
    cr_assert_eq(symlink(p_flip, link), 0);
    snprintf(subdir, sizeof subdir, "%s/%032d.lkv", g_dir, 2);
    cr_assert_eq(mkdir(subdir, 0755), 0);
    char foreign[512];
    snprintf(foreign, sizeof foreign, "%s/notes.txt", g_dir);
    f = fopen(foreign, "wb");
    fputs("not ours", f);
    fclose(f);

    t = open_tier(&c);
    const lkv_tier_stats s = stats_of(t);
    cr_assert_eq(s.dropped_truncated, 1);
    cr_assert_eq(s.dropped_corrupt, 2);
    cr_assert_eq(s.removed_temporary, 1);
    cr_assert_eq(s.loaded_blocks, 1);
    cr_assert_eq(s.errors, 2, "the symlink and the directory are counted as unreadable");
    cr_assert_eq(s.used_bytes, 40 + 1 + 4 + 5000);
    expect_miss(t, "n", "trunc");
    expect_miss(t, "n", "flip");
    expect_miss(t, "n", "hdrflip");
    expect_block(t, "n", "good", 5000, 4);
    cr_assert_eq(access(p_trunc, F_OK), -1, "the torn file is removed");
    cr_assert_eq(access(p_flip, F_OK), -1);
    cr_assert_eq(access(tmp, F_OK), -1, "the temporary is removed");
    cr_assert_eq(access(foreign, F_OK), 0, "files that are not ours are left alone");
    cr_assert_eq(access(subdir, F_OK), 0);
    cr_assert_eq(unlink(link), 0, "the symlink itself is left");
    cr_assert_eq(rmdir(subdir), 0);
    cr_assert_eq(count_files(g_dir, "", ".lkv"), 1);
    close_sync(t);
}

Test(tier_ssd, damage_found_by_get_is_data_loss_and_dropped)
{
    lkv_ssd_config c = cfg_for(g_dir, 1 << 20);
    c.verify_at_start = 0; /* headers only at open: the get must catch it */
    lkv_tier *t = open_tier(&c);
    cr_assert_eq(put_sync(t, "n", "flip", 5000, 2, NULL), LKV_OK);
    close_sync(t);
    char p[512];
    cr_assert(file_of(g_dir, "n", "flip", p, sizeof p));
    flip_bit(p, 40 + 1 + 4 + 17);
    t = open_tier(&c);
    cr_assert_eq(stats_of(t).loaded_blocks, 1);
    lkv_status st;
    lkv_blob *b = get_sync(t, "n", "flip", &st);
    cr_assert_null(b, "damaged bytes are never returned");
    cr_assert_eq(st, LKV_ERR_CHECKSUM);
    cr_assert_eq(t->contains(t, "n", 1, (const uint8_t *)"flip", 4), LKV_TIER_ABSENT);
    expect_miss(t, "n", "flip");
    uv_run(&g_loop, UV_RUN_DEFAULT);
    cr_assert_eq(access(p, F_OK), -1, "the damaged file is removed");
    cr_assert_eq(stats_of(t).errors, 1);
    cr_assert_eq(stats_of(t).blocks, 0);
    cr_assert_eq(stats_of(t).used_bytes, 0);

    /* Damage after the put, while running (verify_at_start is irrelevant). */
    cr_assert_eq(put_sync(t, "n", "late", 3000, 7, NULL), LKV_OK);
    cr_assert(file_of(g_dir, "n", "late", p, sizeof p));
    flip_bit(p, 12); /* key_len in the header */
    b = get_sync(t, "n", "late", &st);
    cr_assert_null(b);
    cr_assert_neq(st, LKV_OK);
    cr_assert_eq(lkv_status_to_grpc(st), LKV_GRPC_DATA_LOSS, "%s", lkv_status_name(st));
    close_sync(t);
}

/* ---- failures: injected and real ------------------------------------------- */

typedef struct fault_plan {
    atomic_int point; /* which lkv_ssd_fault_point fails, -1 none */
    atomic_int err;
    atomic_int seen[4];
} fault_plan;

static int fault_fn(void *ud, lkv_ssd_fault_point where)
{
    fault_plan *f = ud;
    atomic_fetch_add(&f->seen[where], 1);
    return atomic_load(&f->point) == (int)where ? atomic_load(&f->err) : 0;
}

static void injected_failure(lkv_ssd_fsync policy, lkv_ssd_fault_point point, int err,
                             lkv_status want)
{
    fault_plan fp;
    atomic_init(&fp.point, -1);
    atomic_init(&fp.err, 0);
    for (int i = 0; i < 4; i++)
        atomic_init(&fp.seen[i], 0);
    lkv_ssd_config c = cfg_for(g_dir, 1 << 20);
    c.fsync = policy;
    c.fault = fault_fn;
    c.fault_ud = &fp;
    lkv_tier *t = open_tier(&c);
    cr_assert_eq(put_sync(t, "n", "k", 4000, 1, NULL), LKV_OK);
    const lkv_tier_stats before = stats_of(t);
    atomic_store(&fp.err, err);
    atomic_store(&fp.point, (int)point);
    char msg[192];
    cr_assert_eq(put_sync(t, "n", "k", 6000, 2, msg), want, "%s", msg);
    cr_assert(strstr(msg, strerror(err)), "message names the error: %s", msg);
    cr_assert(strstr(msg, g_dir), "message names the directory: %s", msg);
    cr_assert_eq(put_sync(t, "n", "new", 6000, 3, msg), want);
    atomic_store(&fp.point, -1);
    cr_assert_eq(count_files(g_dir, ".tmp-", ""), 0, "no temporary is left");
    cr_assert_eq(count_files(g_dir, "", ".lkv"), 1, "no torn or extra block file");
    expect_block(t, "n", "k", 4000, 1); /* the old value is still served */
    expect_miss(t, "n", "new");
    const lkv_tier_stats s = stats_of(t);
    cr_assert_eq(s.errors, before.errors + 2);
    cr_assert_eq(s.used_bytes, before.used_bytes, "failed puts release their reservation");
    cr_assert_eq(s.blocks, 1);
    /* The tier works again once the fault is gone. */
    cr_assert_eq(put_sync(t, "n", "new", 6000, 3, NULL), LKV_OK);
    expect_block(t, "n", "new", 6000, 3);
    close_sync(t);
    t = open_tier(&c);
    expect_block(t, "n", "k", 4000, 1);
    cr_assert_eq(stats_of(t).dropped_truncated + stats_of(t).dropped_corrupt, 0);
    close_sync(t);
}

Test(tier_ssd, enospc_on_write_is_resource_exhausted_without_torn_file)
{
    injected_failure(LKV_SSD_FSYNC_NEVER, LKV_SSD_FAULT_WRITE, ENOSPC, LKV_ERR_LIMIT);
}

Test(tier_ssd, enospc_on_write_batch)
{
    injected_failure(LKV_SSD_FSYNC_BATCH, LKV_SSD_FAULT_WRITE, ENOSPC, LKV_ERR_LIMIT);
}

Test(tier_ssd, eio_on_fdatasync_always)
{
    injected_failure(LKV_SSD_FSYNC_ALWAYS, LKV_SSD_FAULT_SYNC, EIO, LKV_ERR_INTERNAL);
}

Test(tier_ssd, eio_on_fdatasync_batch)
{
    injected_failure(LKV_SSD_FSYNC_BATCH, LKV_SSD_FAULT_SYNC, EIO, LKV_ERR_INTERNAL);
}

Test(tier_ssd, eio_on_rename_never)
{
    injected_failure(LKV_SSD_FSYNC_NEVER, LKV_SSD_FAULT_RENAME, EIO, LKV_ERR_INTERNAL);
}

Test(tier_ssd, eio_on_read_is_an_error_not_data)
{
    fault_plan fp;
    atomic_init(&fp.point, -1);
    atomic_init(&fp.err, EIO);
    for (int i = 0; i < 4; i++)
        atomic_init(&fp.seen[i], 0);
    lkv_ssd_config c = cfg_for(g_dir, 1 << 20);
    c.fault = fault_fn;
    c.fault_ud = &fp;
    lkv_tier *t = open_tier(&c);
    cr_assert_eq(put_sync(t, "n", "k", 4000, 1, NULL), LKV_OK);
    atomic_store(&fp.point, LKV_SSD_FAULT_READ);
    lkv_status st;
    cr_assert_null(get_sync(t, "n", "k", &st));
    cr_assert_eq(st, LKV_ERR_INTERNAL);
    atomic_store(&fp.point, -1);
    expect_block(t, "n", "k", 4000, 1); /* a read error does not drop the block */
    cr_assert_eq(stats_of(t).errors, 1);
    close_sync(t);
}

/* Mounts a tmpfs of `size` over g_dir/m (root only); 0 on success. */
static int mount_tmpfs(const char *opts)
{
    if (geteuid() != 0)
        return -1;
    snprintf(g_mnt, sizeof g_mnt, "%s/m", g_dir);
    cr_assert_eq(mkdir(g_mnt, 0755), 0);
    if (mount("lkv_tier_test", g_mnt, "tmpfs", 0, opts) != 0) {
        rmdir(g_mnt);
        g_mnt[0] = 0;
        return -1;
    }
    return 0;
}

Test(tier_ssd, full_tmpfs_gives_resource_exhausted_and_keeps_acknowledged_blocks)
{
    if (mount_tmpfs("size=256k") != 0)
        cr_skip_test("needs root and tmpfs to mount a small file system");
    lkv_ssd_config c = cfg_for(g_mnt, 64 << 20); /* the tier thinks it has room */
    lkv_tier *t = open_tier(&c);
    char key[16], msg[192];
    int ok = 0;
    lkv_status st = LKV_OK;
    for (int i = 0; i < 64 && st == LKV_OK; i++) {
        snprintf(key, sizeof key, "k%d", i);
        st = put_sync(t, "n", key, 40000, (uint32_t)i, msg);
        if (st == LKV_OK)
            ok++;
    }
    cr_assert_eq(st, LKV_ERR_LIMIT, "%s", msg);
    cr_assert(strstr(msg, "No space left"), "%s", msg);
    cr_assert_gt(ok, 2);
    cr_assert_lt(ok, 8);
    cr_assert_eq(count_files(g_mnt, ".tmp-", ""), 0, "no torn temporary is left");
    cr_assert_eq(count_files(g_mnt, "", ".lkv"), ok);
    for (int i = 0; i < ok; i++) {
        snprintf(key, sizeof key, "k%d", i);
        expect_block(t, "n", key, 40000, (uint32_t)i);
    }
    cr_assert_eq(stats_of(t).blocks, (uint64_t)ok);
    close_sync(t);
    t = open_tier(&c);
    cr_assert_eq(stats_of(t).loaded_blocks, (uint64_t)ok);
    cr_assert_eq(stats_of(t).dropped_truncated + stats_of(t).dropped_corrupt, 0);
    close_sync(t);
}

/* ---- bad arguments ----------------------------------------------------------- */

Test(tier_ssd, nonexistent_or_file_dir_is_a_named_error)
{
    char path[512];
    snprintf(path, sizeof path, "%s/missing", g_dir);
    lkv_ssd_config c = cfg_for(path, 1000);
    lkv_tier *t = NULL;
    lkv_diag d;
    cr_assert_eq(lkv_tier_ssd_create(&g_loop, &c, &t, &d), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d.msg, path) && strstr(d.msg, "No such file"), "%s", d.msg);
    cr_assert_null(t);
    snprintf(path, sizeof path, "%s/plain", g_dir);
    FILE *f = fopen(path, "wb");
    fclose(f);
    c.dir = path;
    cr_assert_eq(lkv_tier_ssd_create(&g_loop, &c, &t, &d), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d.msg, "not a directory"), "%s", d.msg);
}

Test(tier_ssd, unwritable_dir_is_permission_denied)
{
    const char *dir;
    char sub[512];
    if (geteuid() == 0) {
        /* root ignores mode bits: use a read-only file system instead */
        if (mount_tmpfs("size=64k") != 0 ||
            mount(NULL, g_mnt, NULL, MS_REMOUNT | MS_RDONLY, NULL) != 0)
            cr_skip_test("cannot mount a read-only tmpfs");
        dir = g_mnt;
    } else {
        snprintf(sub, sizeof sub, "%s/ro", g_dir);
        cr_assert_eq(mkdir(sub, 0555), 0);
        dir = sub;
    }
    lkv_ssd_config c = cfg_for(dir, 1000);
    lkv_tier *t = NULL;
    lkv_diag d;
    cr_assert_eq(lkv_tier_ssd_create(&g_loop, &c, &t, &d), LKV_ERR_PERMISSION, "%s", d.msg);
    cr_assert(strstr(d.msg, dir) && strstr(d.msg, "not writable"), "%s", d.msg);
    cr_assert_null(t);
}

Test(tier_ssd, second_tier_on_one_dir_is_refused)
{
    lkv_ssd_config c = cfg_for(g_dir, 1000);
    lkv_tier *t = open_tier(&c), *t2 = NULL;
    lkv_diag d;
    cr_assert_eq(lkv_tier_ssd_create(&g_loop, &c, &t2, &d), LKV_ERR_UNAVAILABLE);
    cr_assert(strstr(d.msg, "in use"), "%s", d.msg);
    close_sync(t);
    t = open_tier(&c); /* the lock went with the first tier */
    close_sync(t);
}

Test(tier_ssd, bad_keys_are_refused_at_once)
{
    lkv_ssd_config c = cfg_for(g_dir, 1 << 20);
    lkv_tier *t = open_tier(&c);
    lkv_blob *b = make_blob(10, 1);
    op o;
    submit_put(t, &o, "n", "", 0, b);
    cr_assert_eq(o.done, 1, "refused before returning, per the completion rule");
    cr_assert_eq(o.req.status, LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(o.req.diag.msg, "key of 0 bytes"), "%s", o.req.diag.msg);
    static char longkey[LKV_SSD_MAX_KEY_LEN + 1];
    memset(longkey, 'x', sizeof longkey);
    submit_put(t, &o, "n", longkey, sizeof longkey, b);
    cr_assert_eq(o.done, 1);
    cr_assert_eq(o.req.status, LKV_ERR_INVALID_ARGUMENT);
    lkv_blob_unref(b);
    cr_assert_eq(stats_of(t).blocks, 0);
    cr_assert_eq(count_files(g_dir, "", ".lkv"), 0);
    close_sync(t);
}

/* ---- close ---------------------------------------------------------------- */

Test(tier_ssd, close_waits_for_io_in_flight)
{
    lkv_ssd_config c = cfg_for(g_dir, 1 << 20);
    c.fsync = LKV_SSD_FSYNC_BATCH;
    lkv_tier *t = open_tier(&c);
    enum { N = 8 };
    op ops[N];
    char keys[N][8];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        lkv_blob *b = make_blob(2000, (uint32_t)i);
        submit_put(t, &ops[i], "n", keys[i], strlen(keys[i]), b);
        lkv_blob_unref(b);
    }
    int closed = 0;
    t->close(t, closed_cb, &closed);
    op late;
    lkv_blob *b = make_blob(10, 1);
    submit_put(t, &late, "n", "late", 4, b);
    lkv_blob_unref(b);
    cr_assert_eq(late.done, 1);
    cr_assert_eq(late.req.status, LKV_ERR_UNAVAILABLE);
    cr_assert_eq(closed, 0, "not before the writes are back");
    while (!closed)
        uv_run(&g_loop, UV_RUN_ONCE);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(ops[i].done, 1);
        cr_assert_eq(ops[i].req.status, LKV_OK);
    }
    t = open_tier(&c);
    for (int i = 0; i < N; i++)
        expect_block(t, "n", keys[i], 2000, (uint32_t)i);
    close_sync(t);
}

/* A done() that closes the tier from inside a completion. */
static void close_in_done(lkv_tier_req *r)
{
    op *o = r->ud;
    o->done++;
    r->tier->close(r->tier, closed_cb, &o->done);
}

Test(tier_ssd, close_from_inside_done)
{
    lkv_ssd_config c = cfg_for(g_dir, 1 << 20);
    lkv_tier *t = open_tier(&c);
    lkv_blob *b = make_blob(100, 1);
    op o;
    init_op(&o, "n", "k", 1);
    o.req.blob = b;
    o.req.done = close_in_done;
    lkv_tier_put(t, &o.req);
    lkv_blob_unref(b);
    while (o.done < 2)
        uv_run(&g_loop, UV_RUN_ONCE);
    cr_assert_eq(o.done, 2, "done() once, then closed() once");
}

Test(tier_ssd, full_of_blocks_in_flight_is_resource_exhausted)
{
    const uint64_t file = 40 + 1 + 2 + 1000;
    lkv_ssd_config c = cfg_for(g_dir, 3 * file);
    c.low_pct = 100;
    lkv_tier *t = open_tier(&c);
    /* Five puts submitted at once: three reserve the whole capacity, and
     * nothing can be evicted while they are in flight. */
    op ops[5];
    char keys[5][8];
    for (int i = 0; i < 5; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        lkv_blob *b = make_blob(1000, (uint32_t)i);
        submit_put(t, &ops[i], "n", keys[i], 2, b);
        lkv_blob_unref(b);
    }
    cr_assert_eq(t->contains(t, "n", 1, (const uint8_t *)"k0", 2), LKV_TIER_ABSENT,
                 "a put in flight is not there yet");
    for (int i = 3; i < 5; i++) {
        cr_assert_eq(ops[i].done, 1, "refused at once");
        cr_assert_eq(ops[i].req.status, LKV_ERR_LIMIT);
        cr_assert(strstr(ops[i].req.diag.msg, "ssd tier full"), "%s", ops[i].req.diag.msg);
    }
    for (int i = 0; i < 3; i++) {
        wait_op(&ops[i]);
        cr_assert_eq(ops[i].req.status, LKV_OK);
    }
    /* Once they are stored they can be evicted again (which one goes
     * depends on the order the three writes completed in). */
    cr_assert_eq(put_sync(t, "n", "k3", 1000, 3, NULL), LKV_OK);
    int present = 0;
    for (int i = 0; i < 3; i++)
        present += t->contains(t, "n", 1, (const uint8_t *)keys[i], 2) == LKV_TIER_PRESENT;
    cr_assert_eq(present, 2);
    expect_block(t, "n", "k3", 1000, 3);
    const lkv_tier_stats s = stats_of(t);
    cr_assert_eq(s.blocks, 3);
    cr_assert_eq(s.used_bytes, 3 * file);
    cr_assert_eq(s.puts, 4);
    close_sync(t);
}

Test(tier_ssd, put_without_block_is_refused)
{
    lkv_ssd_config c = cfg_for(g_dir, 1 << 20);
    lkv_tier *t = open_tier(&c);
    op o;
    init_op(&o, "n", "k", 1);
    t->put(t, &o.req); /* straight through the vtable */
    cr_assert_eq(o.done, 1);
    cr_assert_eq(o.req.status, LKV_ERR_INVALID_ARGUMENT);
    cr_assert_eq(o.req.tier, t);
    close_sync(t);
}

/* ---- kill -9 ------------------------------------------------------------------ */

typedef struct acker {
    op o;
    int fd;
    uint32_t i;
} acker;

static void ack_done(lkv_tier_req *r)
{
    acker *a = r->ud;
    a->o.done++;
    if (r->status == LKV_OK) {
        const ssize_t w = write(a->fd, &a->i, sizeof a->i);
        (void)w;
    }
}

/* The child: puts blocks until killed, reporting each acknowledged one. It
 * is bounded three ways should the parent fail: it dies with the parent
 * (PDEATHSIG, and SIGPIPE on its next report), the tier's capacity bounds
 * the disk it uses, and it stops after 20000 puts. */
static void put_until_killed(const char *dir, int fd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    uv_loop_t loop;
    uv_loop_init(&loop);
    lkv_ssd_config c = cfg_for(dir, 64 << 20);
    lkv_tier *t = NULL;
    lkv_diag d;
    if (lkv_tier_ssd_create(&loop, &c, &t, &d) != LKV_OK)
        _exit(3);
    enum { INFLIGHT = 8 };
    acker a[INFLIGHT];
    char keys[INFLIGHT][16];
    for (uint32_t i = 0; i < 20000; i++) {
        acker *x = &a[i % INFLIGHT];
        if (i >= INFLIGHT)
            while (!x->o.done)
                uv_run(&loop, UV_RUN_ONCE);
        snprintf(keys[i % INFLIGHT], 16, "k%u", i);
        lkv_blob *b = make_blob(20000 + i % 7 * 1000, i);
        memset(&x->o, 0, sizeof x->o);
        x->o.req.ns = "n";
        x->o.req.ns_len = 1;
        x->o.req.key = (const uint8_t *)keys[i % INFLIGHT];
        x->o.req.key_len = strlen(keys[i % INFLIGHT]);
        x->o.req.blob = b;
        x->o.req.done = ack_done;
        x->o.req.ud = x;
        x->fd = fd;
        x->i = i;
        lkv_tier_put(t, &x->o.req);
        lkv_blob_unref(b);
    }
}

Test(tier_ssd, acknowledged_puts_survive_kill_9)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    const pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(p[0]);
        put_until_killed(g_dir, p[1]);
        _exit(0);
    }
    close(p[1]);
    /* Kill it in the middle of its writes, after 150 acknowledgements. */
    uint32_t acked[4096];
    size_t n = 0;
    while (n < 150) {
        const ssize_t r = read(p[0], &acked[n], sizeof acked[n]);
        cr_assert_eq(r, (ssize_t)sizeof acked[n], "the child stopped early");
        n++;
    }
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* Acknowledgements already in the pipe count too. */
    ssize_t r;
    while (n < 4096 && (r = read(p[0], &acked[n], sizeof acked[n])) == (ssize_t)sizeof acked[n])
        n++;
    close(p[0]);

    lkv_ssd_config c = cfg_for(g_dir, 64 << 20);
    lkv_tier *t = open_tier(&c);
    const lkv_tier_stats s = stats_of(t);
    cr_assert_eq(s.evictions, 0);
    cr_assert_geq(s.loaded_blocks, n, "every acknowledged block is loaded");
    cr_assert_eq(s.dropped_truncated + s.dropped_corrupt, 0,
                 "a kill -9 tears no renamed file (temporaries removed: %llu)",
                 (unsigned long long)s.removed_temporary);
    char key[16];
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "k%u", acked[i]);
        expect_block(t, "n", key, 20000 + acked[i] % 7 * 1000, acked[i]);
    }
    cr_assert_eq(count_files(g_dir, ".tmp-", ""), 0);
    close_sync(t);
}

Test(tier_ssd, file_removed_behind_its_back_is_a_counted_miss)
{
    lkv_ssd_config c = cfg_for(g_dir, 1 << 20);
    lkv_tier *t = open_tier(&c);
    cr_assert_eq(put_sync(t, "n", "gone", 3000, 1, NULL), LKV_OK);
    cr_assert_eq(put_sync(t, "n", "kept", 3000, 2, NULL), LKV_OK);
    char p[512];
    cr_assert(file_of(g_dir, "n", "gone", p, sizeof p));
    cr_assert_eq(unlink(p), 0);
    expect_miss(t, "n", "gone");
    lkv_tier_stats s = stats_of(t);
    cr_assert_eq(s.errors, 1);
    cr_assert_eq(s.blocks, 1);
    cr_assert_eq(s.used_bytes, 40 + 1 + 4 + 3000, "its bytes are no longer charged");
    /* The key can be written again. */
    cr_assert_eq(put_sync(t, "n", "gone", 100, 3, NULL), LKV_OK);
    expect_block(t, "n", "gone", 100, 3);
    expect_block(t, "n", "kept", 3000, 2);
    close_sync(t);
}
