/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_metrics.h - the Prometheus exposition of latticekvd and its HTTP
 * listener (metrics.c).
 *
 * The counters are owned by the modules that count (service: requests by
 * method and code, bytes; batcher: batches and their histograms; store and
 * tiers: occupancy, hits, evictions; rpc: calls in flight). main.c gathers
 * them into one lkv_metrics_snapshot on the loop thread, and
 * lkv_metrics_render is the one generator of the text format: the same
 * LKV_STATS_LIST / LKV_TIER_STATS_LIST rows that the Admin/Stats reply and
 * the "stopped" log line are made of, plus the labelled families below.
 */
#ifndef LKV_METRICS_H
#define LKV_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "lkv_service.h"

/* ---- histograms -------------------------------------------------------- */

#define LKV_HISTOGRAM_MAX_BOUNDS 16

/* A Prometheus histogram: counts[i] holds the observations v <= bounds[i]
 * that are above bounds[i-1] (not cumulative; the renderer sums them);
 * counts[n_bounds] the ones above every bound (+Inf). Loop thread only. */
typedef struct lkv_histogram {
    const double *bounds; /* ascending, n_bounds of them, static storage */
    size_t n_bounds;
    uint64_t counts[LKV_HISTOGRAM_MAX_BOUNDS + 1];
    uint64_t count;
    double sum;
} lkv_histogram;

/* Zeroes h and sets its bounds (n_bounds <= LKV_HISTOGRAM_MAX_BOUNDS). */
void lkv_histogram_init(lkv_histogram *h, const double *bounds, size_t n_bounds);
void lkv_histogram_observe(lkv_histogram *h, double v);

/* ---- the snapshot ------------------------------------------------------ */

/* One storage tier's rows (LKV_TIER_STATS_LIST). Tiers behind lkv_tier.h
 * fill it from their lkv_tier_stats, which has the same field names. */
typedef struct lkv_metrics_tier {
    const char *name; /* "host", "ssd", "redis", "gpu": the tier label */
    lkv_tier_row st;
} lkv_metrics_tier;

#define LKV_METRICS_TIERS_MAX 8

/* Why a call was refused before it reached its handler. */
#define LKV_AUTH_FAILURE_LIST(X) \
    X(UNAUTHENTICATED, "unauthenticated") X(PERMISSION_DENIED, "permission_denied")
typedef enum lkv_auth_failure {
#define LKV_X_AUTH_ENUM(name, label) LKV_AUTH_FAILURE_##name,
    LKV_AUTH_FAILURE_LIST(LKV_X_AUTH_ENUM)
#undef LKV_X_AUTH_ENUM
        LKV_AUTH_FAILURE_COUNT
} lkv_auth_failure;

typedef struct lkv_metrics_snapshot {
    lkv_stats stats;     /* LKV_STATS_LIST rows (the host tier is in tiers[] below) */
    const char *version; /* build_info{version} */
    const char *backend; /* backend_info{backend} */
    /* Replies by method and gRPC code (lkv_service_replies); NULL: none. */
    const lkv_reply_counts *replies;
    const lkv_histogram *batch_vectors; /* vectors per codec launch; NULL: none */
    const lkv_histogram *codec_seconds; /* time of one codec launch; NULL: none */
    uint64_t queue_depth;               /* vectors waiting to be batched */
    uint64_t batches_inflight;          /* codec launches running */
    uint64_t inflight_calls;            /* gRPC calls matched and not finished */
    uint64_t inflight_bytes;            /* the in-flight budget's bytes in use */
    uint64_t inflight_bytes_limit;      /* --max-inflight-bytes in effect */
    uint64_t auth_failures[LKV_AUTH_FAILURE_COUNT];
    lkv_metrics_tier tiers[LKV_METRICS_TIERS_MAX];
    size_t n_tiers;
} lkv_metrics_snapshot;

/*
 * Renders m in the Prometheus text exposition format (version 0.0.4) into
 * buf, always NUL-terminated when cap > 0; returns the length the whole text
 * needs, like snprintf, so a caller can size a buffer with cap = 0 first.
 */
size_t lkv_metrics_render(const lkv_metrics_snapshot *m, char *buf, size_t cap);

/* ---- the HTTP listener ------------------------------------------------- */

/*
 * A request head as the listener reads it. lkv_http_parse looks at the
 * bytes received so far (len of them) and answers:
 *   0    the head is not complete yet (no blank line), read on;
 *   200  GET /metrics (a query string is ignored);
 *   400  a malformed request line or header, or not HTTP/1.x;
 *   404  GET of another path;
 *   405  any other method;
 *   431  the head does not fit in LKV_HTTP_HEAD_MAX bytes.
 * Pure: no I/O, no allocation (a fuzz target feeds it any bytes).
 */
#define LKV_HTTP_HEAD_MAX 8192
int lkv_http_parse(const char *buf, size_t len);

/* Limits of the listener: connections served at once (more are closed at
 * accept), and how long one connection may take from accept to the last
 * byte of its answer before it is closed. */
#define LKV_HTTP_MAX_CONNECTIONS 16
#define LKV_HTTP_TIMEOUT_MS      5000

typedef struct lkv_metrics_http lkv_metrics_http;

/* Fills *out with the daemon's current numbers (loop thread). */
typedef void (*lkv_metrics_collect_fn)(lkv_metrics_snapshot *out, void *ud);

/*
 * Listens on addr (host:port, [v6]:port) on the libuv loop uv_loop and
 * answers GET /metrics with the rendered snapshot of collect(); each
 * answer's buffer is charged to budget (may be NULL) until it is sent or
 * its connection closed. Returns LKV_ERR_UNAVAILABLE with a line naming
 * the address and the reason when it cannot listen.
 */
lkv_status lkv_metrics_http_start(void *uv_loop, const char *addr, lkv_metrics_collect_fn collect,
                                  void *ud, lkv_budget *budget, lkv_metrics_http **out,
                                  lkv_diag *diag);
/* Closes the listener and every connection (their charges are given back
 * at once); the memory goes in close callbacks, so the loop must run on. */
void lkv_metrics_http_close(lkv_metrics_http *h);

#endif /* LKV_METRICS_H */
