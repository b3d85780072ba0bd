/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tier_ssd_bench.c - put and get throughput of the SSD tier (server/tier)
 * under each fsync policy, for the coded sizes of a 16-token and a 256-token
 * block, with 1 and 16 requests in flight.
 *
 * It measures the tier alone (no daemon, no codec): what the group commit of
 * fsync=batch buys over fsync=always, and what either costs over never. Gets
 * read what was just written, so they come from the page cache; they measure
 * the tier's read path and checksum, not the device.
 *
 * usage: tier_ssd_bench [--dir DIR] [--mib N] [--json FILE] [--note TEXT]
 * DIR (default: a new directory under /var/tmp, removed at the end) must be
 * on the file system to measure; N MiB are written per configuration.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "lkv_tier.h"

/* Blocks of 16 and 256 tokens x 8 KV heads x 128 dims, K and V, stored as
 * E8 Q=38 containers (sizes from lkv_container_plan). */
static const uint64_t k_tokens[] = {16, 256};
static const unsigned k_inflight[] = {1, 16};

typedef struct slotreq {
    lkv_tier_req req;
    int busy;
    char key[24];
} slotreq;

static uv_loop_t g_loop;
static uint64_t g_failures;

static void on_done(lkv_tier_req *r)
{
    slotreq *s = r->ud;
    s->busy = 0;
    if (r->status != LKV_OK) {
        if (g_failures++ < 3)
            fprintf(stderr, "tier_ssd_bench: %s\n", r->diag.msg);
    }
    if (r->op == LKV_TIER_OP_GET && r->blob)
        lkv_blob_unref(r->blob);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs n operations of kind op with `depth` in flight; returns seconds. */
static double run_ops(lkv_tier *t, lkv_tier_op op, size_t n, unsigned depth, lkv_blob *blob)
{
    slotreq *q = calloc(depth, sizeof *q);
    const double t0 = now_s();
    size_t next = 0, done_all = 0;
    while (!done_all) {
        for (unsigned i = 0; i < depth && next < n; i++) {
            if (q[i].busy)
                continue;
            slotreq *s = &q[i];
            memset(&s->req, 0, sizeof s->req);
            snprintf(s->key, sizeof s->key, "block-%zu", next++);
            s->req.ns = "bench";
            s->req.ns_len = 5;
            s->req.key = (const uint8_t *)s->key;
            s->req.key_len = strlen(s->key);
            s->req.done = on_done;
            s->req.ud = s;
            s->busy = 1;
            if (op == LKV_TIER_OP_PUT) {
                s->req.blob = blob;
                lkv_tier_put(t, &s->req);
            } else if (op == LKV_TIER_OP_GET) {
                lkv_tier_get(t, &s->req);
            } else {
                lkv_tier_del(t, &s->req);
            }
        }
        int any = 0;
        for (unsigned i = 0; i < depth; i++)
            any |= q[i].busy;
        if (any)
            uv_run(&g_loop, UV_RUN_ONCE);
        else if (next >= n)
            done_all = 1;
    }
    const double dt = now_s() - t0;
    free(q);
    return dt;
}

static void closed_cb(void *ud)
{
    *(int *)ud = 1;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *json = NULL, *note = "";
    unsigned mib = 64;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--mib") && i + 1 < argc)
            mib = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json = argv[++i];
        else if (!strcmp(argv[i], "--note") && i + 1 < argc)
            note = argv[++i];
        else {
            fprintf(stderr, "usage: tier_ssd_bench [--dir DIR] [--mib N] [--json FILE] "
                            "[--note TEXT]\n");
            return 2;
        }
    }
    if (mib < 1 || mib > 65536) {
        fprintf(stderr, "tier_ssd_bench: --mib %u is outside 1..65536\n", mib);
        return 2;
    }
    char made[] = "/var/tmp/lkv_tier_bench_XXXXXX";
    if (!dir) {
        if (!mkdtemp(made)) {
            perror("tier_ssd_bench: mkdtemp");
            return 1;
        }
        dir = made;
    }
    uv_loop_init(&g_loop);
    lkv_log_set_level(LKV_LOG_WARN);
    double loadavg[3] = {0, 0, 0};
    if (getloadavg(loadavg, 3) < 0)
        loadavg[0] = -1;

    FILE *js = json ? fopen(json, "w") : NULL;
    if (json && !js) {
        perror("tier_ssd_bench: --json");
        return 1;
    }
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    if (js)
        fprintf(js,
                "{\n  \"benchmark\": \"tier_ssd_bench\",\n  \"date\": \"%s\",\n"
                "  \"machine\": \"dev-vm-2core\",\n  \"dir\": \"%s\",\n  \"mib_per_config\": %u,\n"
                "  \"load_average_at_start\": %.2f,\n"
                "  \"units\": \"MB/s = 1e6 bytes of block data per wall second; gets come from "
                "the page cache (just written)\",\n  \"note\": \"%s\",\n  \"results\": [\n",
                date, dir, mib, loadavg[0], note);
    printf("%-7s %8s %6s %8s %10s %10s %10s %10s\n", "fsync", "block", "depth", "puts", "put/s",
           "put MB/s", "get MB/s", "syncs/put");
    int first = 1;
    for (int pol = 0; pol < 3; pol++) {
        for (size_t si = 0; si < sizeof k_tokens / sizeof *k_tokens; si++) {
            for (size_t di = 0; di < sizeof k_inflight / sizeof *k_inflight; di++) {
                const lkv_params prm = {LKV_VARIANT_E8, LKV_Q_DEFAULT, 128};
                const uint64_t shape[4] = {2, k_tokens[si], 8, 128};
                lkv_container_info ci;
                if (lkv_container_plan(&prm, LKV_DTYPE_BF16, shape, 4, &ci, NULL) != LKV_OK)
                    return 1;
                const size_t size = ci.total_bytes;
                const unsigned depth = k_inflight[di];
                const size_t n = ((size_t)mib << 20) / size;
                lkv_ssd_config c;
                lkv_ssd_config_defaults(&c);
                c.dir = dir;
                c.capacity_bytes = (uint64_t)mib << 21; /* no eviction */
                c.fsync = (lkv_ssd_fsync)pol;
                lkv_tier *t = NULL;
                lkv_diag d;
                if (lkv_tier_ssd_create(&g_loop, &c, &t, &d) != LKV_OK) {
                    fprintf(stderr, "tier_ssd_bench: %s\n", d.msg);
                    return 1;
                }
                lkv_blob *blob = lkv_blob_create(size);
                for (size_t i = 0; i < size; i++)
                    blob->data[i] = (uint8_t)(i * 131u + 7u);
                const double tp = run_ops(t, LKV_TIER_OP_PUT, n, depth, blob);
                lkv_tier_stats after_put;
                t->stats(t, &after_put);
                const double syncs_per_put = (double)after_put.syncs / (double)n;
                const double tg = run_ops(t, LKV_TIER_OP_GET, n, depth, NULL);
                run_ops(t, LKV_TIER_OP_DELETE, n, 16, NULL);
                lkv_blob_unref(blob);
                lkv_tier_stats st;
                t->stats(t, &st);
                int closed = 0;
                t->close(t, closed_cb, &closed);
                while (!closed)
                    uv_run(&g_loop, UV_RUN_ONCE);
                const double bytes = (double)n * (double)size;
                printf("%-7s %8zu %6u %8zu %10.0f %10.1f %10.1f %10.2f\n",
                       lkv_ssd_fsync_name((lkv_ssd_fsync)pol), size, depth, n, (double)n / tp,
                       bytes / tp / 1e6, bytes / tg / 1e6, syncs_per_put);
                if (st.hits != n)
                    fprintf(stderr, "tier_ssd_bench: %llu hits of %zu\n",
                            (unsigned long long)st.hits, n);
                if (js)
                    fprintf(js,
                            "%s    {\"fsync\": \"%s\", \"tokens\": %llu, \"block_bytes\": %zu, "
                            "\"inflight\": %u, "
                            "\"puts\": %zu, \"put_per_s\": %.1f, \"put_mb_per_s\": %.2f, "
                            "\"get_mb_per_s\": %.2f, \"syncs_per_put\": %.3f, \"hits\": %llu, "
                            "\"errors\": %llu}",
                            first ? "" : ",\n", lkv_ssd_fsync_name((lkv_ssd_fsync)pol),
                            (unsigned long long)k_tokens[si], size, depth, n, (double)n / tp,
                            bytes / tp / 1e6, bytes / tg / 1e6, syncs_per_put,
                            (unsigned long long)st.hits, (unsigned long long)st.errors);
                first = 0;
            }
        }
    }
    if (js) {
        fprintf(js, "\n  ]\n}\n");
        fclose(js);
    }
    if (dir == made) {
        char lock[64];
        snprintf(lock, sizeof lock, "%s/.lock", made);
        unlink(lock);
        rmdir(made);
    }
    uv_loop_close(&g_loop);
    return g_failures ? 1 : 0;
}
