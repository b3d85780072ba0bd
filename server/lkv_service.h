/* SPDX-License-Identifier: Apache-2.0 */
/* lkv_service.h - what each RPC does, counters and statistics (service.c). */
#ifndef LKV_SERVICE_H
#define LKV_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include "lkv_batcher.h"
#include "lkv_budget.h"
#include "lkv_config.h"
#include "lkv_rpc_table.h"
#include "lkv_status.h"
#include "lkv_store.h"

typedef struct lkv_stack lkv_stack; /* lkv_stack.h */

/* The methods served, one per row of LKV_RPC_SERVED_LIST (lkv_rpc_table.h); rpc.c
 * registers their paths, service.c dispatches to their handlers. */
typedef enum lkv_method {
#define LKV_X_METHOD(name, service, method, streaming, handler) LKV_METHOD_##name,
    LKV_RPC_SERVED_LIST(LKV_X_METHOD)
#undef LKV_X_METHOD
        LKV_METHOD_COUNT
} lkv_method;

const char *lkv_method_path(lkv_method m);
int lkv_method_streaming(lkv_method m);

/* A finished reply: OK with a message (buf, len: malloc'd, ownership moves to
 * the receiver) or an error code with a one-line message. */
typedef struct lkv_reply {
    lkv_grpc_code code;
    uint8_t *buf;
    size_t len;
    char msg[256];
    /* Optional effect held back until the reply's turn (PutStream's store):
     * rpc.c calls commit once every earlier reply of the stream has gone
     * out and the stream has not failed (for a unary call, right away);
     * commit may turn the reply into an error. A reply that is never sent
     * gets drop instead. Either one frees effect. */
    void (*commit)(void *effect, struct lkv_reply *rep);
    void (*drop)(void *effect);
    void *effect;
} lkv_reply;

/* Called on the loop thread when the reply to message `seq` of call `call` is ready. */
typedef void (*lkv_reply_fn)(void *call, uint64_t seq, lkv_reply *reply);

typedef struct lkv_service lkv_service;

lkv_service *lkv_service_create(const lkv_config *cfg, lkv_stack *stack, lkv_batcher *batcher,
                                const char *backend_name, lkv_reply_fn reply);
void lkv_service_free(lkv_service *s);
/* Loop thread: handles one request message of len bytes. msg was malloc'd
 * and ownership moves to the service (payloads are used in place, never
 * copied). The reply comes through reply_fn, possibly before this returns. */
void lkv_service_handle(lkv_service *s, lkv_method m, void *call, uint64_t seq, uint8_t *msg,
                        size_t len);
void lkv_service_set_ready(lkv_service *s, int ready);
void lkv_service_set_shutting_down(lkv_service *s);
int lkv_service_shutting_down(const lkv_service *s);
/* Counts a reply the rpc layer made itself (UNIMPLEMENTED, UNAVAILABLE),
 * under the method it was made for (LKV_METHOD_COUNT: none or unknown). */
void lkv_service_count_method(lkv_service *s, lkv_method m, lkv_grpc_code code);

/* Replies answered, by method (row LKV_METHOD_COUNT: a call to no served
 * method) and gRPC code: the requests_total{method,code} metric. A
 * PutStream block is counted when its reply's turn comes (commit); one
 * whose stream ended before that is never answered and not counted. */
#define LKV_GRPC_CODE_COUNT 17
typedef struct lkv_reply_counts {
    uint64_t n[LKV_METHOD_COUNT + 1][LKV_GRPC_CODE_COUNT];
} lkv_reply_counts;
const lkv_reply_counts *lkv_service_replies(const lkv_service *s);

/*
 * The daemon's statistics, listed once: every rendering (the Stats reply,
 * the "stopped" log line, a metrics endpoint) is generated from these rows.
 * X(name, kind, help): name is the StatsResponse / TierStats field; kind is
 * counter (only grows) or gauge. The tier rows are one per tier of the stack
 * (host, then ssd and redis when configured).
 */
#define LKV_STATS_LIST(X)                                        \
    X(uptime_ms, gauge, "milliseconds since latticekvd started") \
    X(requests, counter, "requests answered, errors included")   \
    X(errors, counter, "requests answered with an error")        \
    X(raw_bytes_in, counter, "bytes of tensors encoded")         \
    X(coded_bytes_out, counter, "bytes of containers produced")  \
    X(batches, counter, "codec launches")                        \
    X(batched_vectors, counter, "vectors coded in those launches")
#define LKV_TIER_STATS_LIST(X)                                                     \
    X(capacity_bytes, gauge, "bytes the tier may hold")                            \
    X(used_bytes, gauge, "bytes held: containers, namespaces and keys")            \
    X(blocks, gauge, "blocks held")                                                \
    X(hits, counter, "Gets that found their block")                                \
    X(misses, counter, "Gets that did not")                                        \
    X(evictions, counter, "blocks evicted to make room")                           \
    X(errors, counter, "failed tier operations and damaged blocks found")          \
    X(dropped_blocks, counter, "damaged block files dropped when the tier opened") \
    X(lost_blocks, counter, "remote copies lost: write-back queue overflow or refusal")

#define LKV_TIERS_MAX 4 /* LKV_STACK_TIERS_MAX: gpu, host, ssd, redis */

typedef struct lkv_tier_row {
    const char *name; /* "host", "ssd", "redis" */
    const char *link; /* Redis: "connecting", "up", "degraded", "down"; else "" */
#define LKV_X_STATS_FIELD(name, kind, help) uint64_t name;
    LKV_TIER_STATS_LIST(LKV_X_STATS_FIELD)
#undef LKV_X_STATS_FIELD
} lkv_tier_row;

typedef struct lkv_stats {
#define LKV_X_STATS_FIELD(name, kind, help) uint64_t name;
    LKV_STATS_LIST(LKV_X_STATS_FIELD)
#undef LKV_X_STATS_FIELD
    lkv_tier_row tier[LKV_TIERS_MAX]; /* top down: gpu (if any), host, ... */
    size_t n_tiers;
} lkv_stats;

/* Loop thread: a snapshot of every statistic. */
void lkv_service_get_stats(const lkv_service *s, lkv_stats *out);

typedef enum lkv_stats_format {
    LKV_STATS_LOG = 0 /* "requests=1 errors=0 ... host_hits=3 ..." (log fields) */
} lkv_stats_format;

/* Renders st into buf (always NUL-terminated when cap > 0); returns the
 * length the whole text needs, like snprintf. metrics.c, next to the
 * Prometheus text of the same rows (lkv_metrics_render). */
size_t lkv_stats_render(const lkv_stats *st, lkv_stats_format fmt, char *buf, size_t cap);

/* Loop thread: every namespace a request names is passed to allowed(call,
 * ns, len) after it is checked as valid; 0 answers PERMISSION_DENIED naming
 * the namespace. Unset (or a NULL call): every namespace is allowed. */
typedef int (*lkv_authz_fn)(void *call, const char *ns, size_t len);
void lkv_service_set_authz(lkv_service *s, lkv_authz_fn allowed);

/*
 * Push and Pull (server/peer.c, which owns the outbound gRPC calls). The
 * service checks the request and hands the transfer over: spec's pointers
 * are valid during start only (the peer copies what it keeps), and the
 * peer answers the call later through lkv_service_finish. Without a peer
 * set, Push and Pull answer UNIMPLEMENTED.
 */
typedef struct lkv_peer_spec {
    int pull;           /* 0: Push (send to target), 1: Pull (fetch from target) */
    const char *target; /* the other daemon's address, NUL-terminated */
    const char *ns;
    size_t ns_len;
    size_t n_keys;
    const uint8_t *const *keys;
    const size_t *key_lens;
} lkv_peer_spec;
typedef void (*lkv_peer_start_fn)(void *peer, const lkv_peer_spec *spec, void *call, uint64_t seq);
void lkv_service_set_peer(lkv_service *s, lkv_peer_start_fn start, void *peer);
/* Loop thread: the reply to a call handed to the peer (rep->buf, if any, is
 * charged to the budget and taken); counted under method m. */
void lkv_service_finish(lkv_service *s, lkv_method m, void *call, uint64_t seq, lkv_reply *rep);
/* Loop thread: a request the daemon makes of itself (a transfer's Get or
 * Put): as lkv_service_handle, but msg is charged to the budget by the
 * caller, no bearer token is checked, and the reply goes to reply(ctx, seq,
 * rep), which then owns rep->buf (charged to the budget: give it back when
 * freeing). */
void lkv_service_handle_local(lkv_service *s, lkv_method m, lkv_reply_fn reply, void *ctx,
                              uint64_t seq, uint8_t *msg, size_t len);

/* Loop thread: the service charges request and reply bytes to b. */
void lkv_service_set_budget(lkv_service *s, lkv_budget *b);
lkv_budget *lkv_service_budget(const lkv_service *s);

#endif
