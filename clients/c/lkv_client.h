/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_client.h - the blocking C client of latticekvd.
 *
 * This is the one public header of the lkv_client library. It speaks the
 * latticekv.v1 wire API (proto/latticekv/v1/latticekv.proto, docs/service.md
 * section 1) over gRPC and hides gRPC and protobuf-c completely: nothing in
 * this header needs either of them, and a program that links lkv_client
 * never includes a gRPC header.
 *
 * The model
 *   - One lkv_client is one gRPC channel to one daemon address. Creating it
 *     does not connect; the first call does (or lkv_client_wait_ready). A
 *     lost connection is retried in the background (first retry after
 *     100 ms, backing off to 2 s); calls made while it is down fail at once
 *     with UNAVAILABLE.
 *   - Every call blocks until the daemon answers, the per-call deadline
 *     (lkv_client_options.timeout_ms, 10 s unless set) passes or the
 *     connection fails. No call waits forever by default: a daemon that
 *     stops answering (frozen, wedged, its host gone) ends each call with
 *     DEADLINE_EXCEEDED at its deadline, and keepalive pings (sent while
 *     calls are in flight, every 30 s unless set) close a connection whose
 *     daemon does not answer a ping within 10 s, failing its calls with
 *     UNAVAILABLE even when they have no deadline.
 *   - Thread-safety: an lkv_client may be used by any number of threads at
 *     once; each call has its own completion queue. lkv_client_free must not
 *     race with calls on the same client.
 *   - Performance: many threads each blocking in calls do better with gRPC's
 *     "poll" engine than with its default (epoll1 lets one thread at a time
 *     poll every connection): run such a program with
 *     GRPC_POLL_STRATEGY=poll, as bench/service/service_bench does for its
 *     clients. A program that moves blocks above 128 KiB should also raise
 *     glibc's mmap threshold (mallopt(M_MMAP_THRESHOLD, 64 << 20) and
 *     M_TRIM_THRESHOLD, or MALLOC_MMAP_THRESHOLD_ in the environment), as
 *     latticekvd does: otherwise every received block is a fresh mmap,
 *     faulted in page by page and unmapped when freed; on the 2-core dev VM
 *     that halved the Get throughput of 1 MiB blocks (bench/tiers). Both are
 *     process-wide settings, so the library leaves them to the program. The
 *     library also turns off abseil's debug deadlock detector, which
 *     Debian's abseil build leaves on (lkv_grpc_tune.h).
 *   - The library checks only what it needs to build a request (pointers,
 *     ndim). Everything else - head_dim, Q, dtype, shape against data length,
 *     NaN/Inf - is the daemon's to judge, so a caller (or a test) can send any
 *     tensor and get the daemon's verdict.
 *
 * Errors
 *   Every call returns an lkv_rpc_code: LKV_RPC_OK (0) on success, else the
 *   gRPC status code of the failure, numerically equal to grpc_status_code.
 *   When `err` is not NULL it receives the code and a one-line message: the
 *   daemon's status message (which names the field and value, e.g.
 *   "tensor.shape[2]=90: head_dim is not a multiple of 8"), or for failures
 *   detected here a message starting with "client: ". Local failures use
 *   LKV_RPC_INVALID_ARGUMENT (bad argument), LKV_RPC_RESOURCE_EXHAUSTED (out
 *   of memory) and LKV_RPC_INTERNAL (a reply that does not parse).
 *
 * Memory
 *   Inputs are borrowed for the duration of the call only. Outputs (tensor
 *   data, coded bytes, stats tiers) are allocated with malloc by the library
 *   and owned by the caller from then on: release them with free() or with
 *   lkv_tensor_clear / lkv_buf_clear / lkv_client_stats_clear. On failure no
 *   output is allocated (the output structs are zeroed).
 *
 * Numeric values
 *   dtype: the wire DType - 1 bf16, 2 fp16, 3 fp32 (the same numbers as
 *   lkv_dtype in lkv_codec.h); 0 means "unspecified" where a call allows it.
 *   variant: the wire Variant - 1 E8, 2 D4 (as lkv_variant); 0 = daemon
 *   default. Values outside these lists are sent unchanged, and the daemon
 *   answers INVALID_ARGUMENT.
 */
#ifndef LKV_CLIENT_H
#define LKV_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "lkv_rpc_table.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

/* LKV_RPC_<NAME> for each row of LKV_GRPC_CODE_LIST (lkv_rpc_table.h, shared with
 * the daemon): values equal grpc_status_code. */
typedef enum lkv_rpc_code {
#define LKV_X_RPC_ENUM(name, value) LKV_RPC_##name = (value),
    LKV_GRPC_CODE_LIST(LKV_X_RPC_ENUM)
#undef LKV_X_RPC_ENUM
} lkv_rpc_code;

/* "INVALID_ARGUMENT" for 3; "UNKNOWN_CODE" outside the list. Never NULL. */
const char *lkv_rpc_code_name(int code);

/* The outcome of a failed call: the code again and a one-line message. */
typedef struct lkv_client_error {
    int code;
    char msg[512];
} lkv_client_error;

/* ------------------------------------------------------------------------ */
/* Values exchanged with the daemon                                          */
/* ------------------------------------------------------------------------ */

/* The most dimensions a tensor may have here (the codec allows 8). */
#define LKV_CLIENT_MAX_NDIM 16u

/*
 * A tensor on the wire: row-major, little-endian, last dimension = head_dim.
 * As an input, data points to data_bytes bytes the library only reads; as
 * an output, data is malloc'd by the library (NULL when data_bytes is 0).
 */
typedef struct lkv_tensor {
    int dtype;
    uint32_t ndim;
    uint64_t shape[LKV_CLIENT_MAX_NDIM];
    void *data;
    size_t data_bytes;
} lkv_tensor;

/* Frees t->data and zeroes *t. NULL is allowed. */
void lkv_tensor_clear(lkv_tensor *t);

/* A byte string returned by the library (coded containers). */
typedef struct lkv_buf {
    void *data;
    size_t len;
} lkv_buf;

/* Frees b->data and zeroes *b. NULL is allowed. */
void lkv_buf_clear(lkv_buf *b);

/* Codec parameters of a Compress or Put; pass NULL for the daemon default
 * (E8, Q = 38, profile 1). variant 0 / q 0 also select the default field by
 * field. profile: 0 or 1 = profile 1, 2 = profile 2 (E8 only; variable-size
 * container version 3, its newest layout); other values are sent unchanged and refused by the
 * daemon (INVALID_ARGUMENT naming profile=N). Decompress and Get need no
 * profile: the container names it. */
typedef struct lkv_client_params {
    int variant;
    uint32_t q;
    uint32_t profile;
} lkv_client_params;

/* A block key: an opaque byte string (e.g. a chained token-prefix hash). */
typedef struct lkv_key {
    const void *data;
    size_t len;
} lkv_key;

/* ------------------------------------------------------------------------ */
/* Connecting                                                                */
/* ------------------------------------------------------------------------ */

typedef struct lkv_client lkv_client;

/* The deadline of a call when lkv_client_options.timeout_ms is 0. A stream
 * call (put_many, get_many) has one deadline for the whole stream. It is
 * below gRPC's 20 s connect timeout, so a call to a daemon that accepts
 * connections but never answers (stopped, wedged) ends with
 * DEADLINE_EXCEEDED whether or not its connection was already up. */
#define LKV_CLIENT_DEFAULT_TIMEOUT_MS 10000u
/* timeout_ms value for calls without a deadline (keepalive still ends a call
 * whose connection dies). */
#define LKV_CLIENT_NO_TIMEOUT UINT32_MAX

/* Keepalive defaults: a ping after this long without an answer while a call
 * is in flight, and the connection closed when the ping is not answered
 * within the timeout. */
#define LKV_CLIENT_KEEPALIVE_TIME_MS    30000u
#define LKV_CLIENT_KEEPALIVE_TIMEOUT_MS 10000u
/* The shortest keepalive_time_ms honoured; shorter values are raised to it.
 * latticekvd accepts a ping every second and closes a connection that pings
 * faster ("too_many_pings"); twice that leaves room for jitter. */
#define LKV_CLIENT_KEEPALIVE_MIN_MS 2000u
/* keepalive_time_ms value that turns keepalive pings off. */
#define LKV_CLIENT_NO_KEEPALIVE UINT32_MAX

/* Zero-initialise and set what you need; NULL options = all defaults. */
typedef struct lkv_client_options {
    /* Largest message sent or received, in bytes; 0 = 64 MiB. It must be at
     * least the daemon's --max-message-bytes for big blocks to pass. */
    size_t max_message_bytes;
    /* Deadline of each call in milliseconds; 0 = LKV_CLIENT_DEFAULT_TIMEOUT_MS
     * (10 s), LKV_CLIENT_NO_TIMEOUT = none. */
    uint32_t timeout_ms;
    /* Nonzero: this client gets its own connection. By default gRPC shares
     * one connection between all channels of a process to the same address
     * with the same options; benchmarks that model separate clients want
     * separate connections. */
    int own_connection;
    /* Nonzero: a call waits, up to its deadline, for the connection to be
     * ready instead of failing at once with UNAVAILABLE while connecting
     * fails (a daemon restarting, or a transient connect failure under a
     * burst of new connections). With LKV_CLIENT_NO_TIMEOUT a call to an
     * absent daemon waits forever. Zero (default): fail fast. */
    int wait_for_ready;
    /* Keepalive ping interval while calls are in flight, in milliseconds;
     * 0 = LKV_CLIENT_KEEPALIVE_TIME_MS (30 s), values below
     * LKV_CLIENT_KEEPALIVE_MIN_MS are raised to it, LKV_CLIENT_NO_KEEPALIVE
     * = no pings. */
    uint32_t keepalive_time_ms;
    /* How long an unanswered ping may take before the connection is closed
     * (its calls fail with UNAVAILABLE); 0 = LKV_CLIENT_KEEPALIVE_TIMEOUT_MS
     * (10 s). */
    uint32_t keepalive_timeout_ms;
    /* TLS, for TCP addresses of a daemon started with --tls-cert. tls_ca_file:
     * PEM CA certificates that sign the daemon's certificate; set, the
     * channel is TLS (NULL: plaintext). tls_cert_file and tls_key_file: this
     * client's PEM certificate and key, for a daemon with --tls-client-ca
     * (mutual TLS; both or neither, and only with tls_ca_file). The files are
     * read by lkv_client_create; a missing or empty one is INVALID_ARGUMENT
     * naming it. A daemon whose certificate does not verify (wrong CA,
     * expired, another name) fails calls with UNAVAILABLE. */
    const char *tls_ca_file;
    const char *tls_cert_file;
    const char *tls_key_file;
    /* The name checked against the daemon's certificate instead of the
     * address's host (e.g. "localhost" when dialling 127.0.0.1 and the
     * certificate names only localhost). NULL: the address's host. */
    const char *tls_server_name;
    /* A bearer token sent with every call as "authorization: Bearer TOKEN"
     * (the daemon's --auth-tokens); copied, never printed in errors. NULL:
     * none. A daemon that wants one answers UNAUTHENTICATED without it and
     * PERMISSION_DENIED for a namespace it does not grant. */
    const char *token;
} lkv_client_options;

/*
 * Creates a client for `addr`: "host:port" (TCP, e.g. "127.0.0.1:7070") or
 * "unix:PATH" (a unix socket). Does not connect. Returns LKV_RPC_OK and
 * *out, or INVALID_ARGUMENT (empty address) / RESOURCE_EXHAUSTED with *out
 * set to NULL. Initialises gRPC (reference-counted with lkv_client_free).
 */
int lkv_client_create(const char *addr, const lkv_client_options *opts, lkv_client **out,
                      lkv_client_error *err);

/* Closes the channel and frees the client. NULL is allowed. */
void lkv_client_free(lkv_client *c);

/* The address the client was created with (owned by the client). */
const char *lkv_client_addr(const lkv_client *c);

/*
 * grpc.health.v1.Health/Check of `service` ("" or NULL = the whole daemon).
 * On LKV_RPC_OK *serving is the reply's status: 1 SERVING, 2 NOT_SERVING,
 * 0 UNKNOWN (the grpc.health.v1 enum).
 */
int lkv_client_health(lkv_client *c, const char *service, int *serving, lkv_client_error *err);

/*
 * Repeats the health check until the daemon says SERVING or `timeout_ms`
 * passes. LKV_RPC_OK when serving; else the last failure (typically
 * UNAVAILABLE: nothing listens at the address, or DEADLINE_EXCEEDED).
 */
int lkv_client_wait_ready(lkv_client *c, uint32_t timeout_ms, lkv_client_error *err);

/* ------------------------------------------------------------------------ */
/* Codec service: stateless                                                  */
/* ------------------------------------------------------------------------ */

/* What the daemon reports about a compression. */
typedef struct lkv_compress_info {
    uint64_t raw_bytes;
    uint64_t coded_bytes;
    uint32_t bits_per_vector;
} lkv_compress_info;

/*
 * Codec/Compress: encodes tensor `t` with `params` (NULL = default) and
 * returns the coded container in *coded (free with lkv_buf_clear). `info`
 * may be NULL.
 */
int lkv_client_compress(lkv_client *c, const lkv_tensor *t, const lkv_client_params *params,
                        lkv_buf *coded, lkv_compress_info *info, lkv_client_error *err);

/*
 * Codec/Decompress: decodes a container into *out as `out_dtype` (0 = the
 * dtype that was encoded). Free *out with lkv_tensor_clear.
 */
int lkv_client_decompress(lkv_client *c, const void *coded, size_t coded_len, int out_dtype,
                          lkv_tensor *out, lkv_client_error *err);

/* ------------------------------------------------------------------------ */
/* KVStore service                                                           */
/* ------------------------------------------------------------------------ */

/* Every KVStore call names a namespace (NULL = "") and a key. */

/*
 * KVStore/Put of a tensor the daemon encodes with `params` (NULL =
 * default). On success *coded_bytes (may be NULL) is the stored size. A
 * failed Put leaves the key's previous value in place (daemon contract).
 */
int lkv_client_put(lkv_client *c, const char *ns, lkv_key key, const lkv_tensor *t,
                   const lkv_client_params *params, uint64_t *coded_bytes, lkv_client_error *err);

/*
 * KVStore/Put of a container made by this codec (lkv_compress, Compress or
 * `latticekv codec encode`). The daemon verifies it: bad checksum, unknown
 * version or truncation -> DATA_LOSS.
 */
int lkv_client_put_coded(lkv_client *c, const char *ns, lkv_key key, const void *coded,
                         size_t coded_len, uint64_t *coded_bytes, lkv_client_error *err);

/* Size of the buffer lkv_client_get may fill with the tier name. */
#define LKV_CLIENT_TIER_MAX 32u

/*
 * KVStore/Get, decoded: *out receives the tensor as `out_dtype` (0 = the
 * dtype it was stored from). `tier` (NULL, or LKV_CLIENT_TIER_MAX bytes)
 * receives the tier that served it, e.g. "host". Missing key -> NOT_FOUND.
 */
int lkv_client_get(lkv_client *c, const char *ns, lkv_key key, int out_dtype, lkv_tensor *out,
                   char *tier, lkv_client_error *err);

/* KVStore/Get with want_coded: the stored container, as is. */
int lkv_client_get_coded(lkv_client *c, const char *ns, lkv_key key, lkv_buf *coded,
                         lkv_client_error *err);

/*
 * KVStore/Lookup of n keys. *prefix_hits (may be NULL) receives how many
 * keys from the start are all present; present (NULL, or n bytes) receives
 * 1/0 per key.
 */
int lkv_client_lookup(lkv_client *c, const char *ns, const lkv_key *keys, size_t n,
                      uint32_t *prefix_hits, uint8_t *present, lkv_client_error *err);

/* KVStore/Delete. *deleted (may be NULL) is 1 when the key existed. */
int lkv_client_delete(lkv_client *c, const char *ns, lkv_key key, int *deleted,
                      lkv_client_error *err);

/*
 * KVStore/PutStream: n tensors under n keys in one call, encoded with
 * `params` (NULL = default). Cheaper per block than n lkv_client_put calls
 * (one call setup, requests pipelined). coded_bytes (NULL, or n entries)
 * receives each stored size. The daemon stops at the first failing block:
 * the call then returns that block's code, and *n_done (may be NULL) says
 * how many blocks before it were stored. When the call ends on the
 * client's side instead (deadline, lost connection), the daemon may have
 * stored more than *n_done blocks, but always a prefix of keys: call
 * lkv_client_lookup(keys) afterwards; prefix_hits is how many were stored
 * (for keys that were absent before).
 */
int lkv_client_put_many(lkv_client *c, const char *ns, const lkv_key *keys,
                        const lkv_tensor *tensors, size_t n, const lkv_client_params *params,
                        uint64_t *coded_bytes, size_t *n_done, lkv_client_error *err);

/*
 * KVStore/GetStream: the blocks of n keys, decoded as `out_dtype` (0 = as
 * stored), into out[0..n-1] (zeroed first). On failure (e.g. NOT_FOUND for
 * one key) out[0..*n_done-1] hold the blocks before it; free every entry
 * with lkv_tensor_clear either way.
 */
int lkv_client_get_many(lkv_client *c, const char *ns, const lkv_key *keys, size_t n, int out_dtype,
                        lkv_tensor *out, size_t *n_done, lkv_client_error *err);

/* ------------------------------------------------------------------------ */
/* Daemon to daemon: Push and Pull                                           */
/* ------------------------------------------------------------------------ */

/* One key's result of a transfer: code LKV_RPC_OK when the block is stored
 * on the receiving daemon, else why not (NOT_FOUND on the sender, DATA_LOSS
 * for a damaged container, RESOURCE_EXHAUSTED for the receiver's quota,
 * UNAVAILABLE when the link failed); message names the side and the cause. */
typedef struct lkv_transfer_result {
    lkv_key key; /* points into the lkv_transfer */
    lkv_rpc_code code;
    const char *message; /* "" when stored */
    uint64_t coded_bytes;
} lkv_transfer_result;

typedef struct lkv_transfer {
    size_t n;
    lkv_transfer_result *results; /* n entries, in request order (prefix: the sender's) */
    uint32_t stored;
    uint64_t coded_bytes;
    void *reply_; /* the decoded reply the results point into */
} lkv_transfer;

/*
 * KVStore/Push: the daemon `c` talks to sends the coded blocks of keys[0..n-1]
 * of namespace ns to the daemon at `to` (host:port or unix:PATH, plaintext).
 * With prefix non-NULL (and n = 0) it sends every block of ns it holds in
 * host memory whose key starts with *prefix (length 0: all). Only containers
 * cross; the receiver verifies each and stores it without re-encoding. The
 * call fails as a whole only for a bad request (INVALID_ARGUMENT naming the
 * field) or a lost link to `c`; per-key failures are in out->results. Free
 * with lkv_transfer_clear.
 */
int lkv_client_push(lkv_client *c, const char *to, const char *ns, const lkv_key *keys, size_t n,
                    const lkv_key *prefix, lkv_transfer *out, lkv_client_error *err);
/* KVStore/Pull: the daemon `c` talks to fetches keys from the daemon at
 * `from` and stores them (verified, not re-encoded). As lkv_client_push. */
int lkv_client_pull(lkv_client *c, const char *from, const char *ns, const lkv_key *keys, size_t n,
                    lkv_transfer *out, lkv_client_error *err);
void lkv_transfer_clear(lkv_transfer *t);

/* ------------------------------------------------------------------------ */
/* Admin service                                                             */
/* ------------------------------------------------------------------------ */

typedef struct lkv_client_tier {
    char name[LKV_CLIENT_TIER_MAX];
    uint64_t capacity_bytes, used_bytes, blocks, hits, misses, evictions;
    uint64_t errors;         /* failed tier operations and damaged blocks found */
    uint64_t dropped_blocks; /* ssd: damaged files dropped at start */
    uint64_t lost_blocks;    /* redis: remote copies lost (write-back overflow) */
    char link[16];           /* redis: "connecting", "up", "degraded", "down"; else "" */
} lkv_client_tier;

typedef struct lkv_client_stats {
    char version[64];
    char backend[16]; /* "cpu" or "cuda" */
    uint64_t uptime_ms, requests, errors;
    uint64_t raw_bytes_in, coded_bytes_out; /* tensor bytes in, container bytes out */
    uint64_t batches, batched_vectors;
    size_t n_tiers;
    lkv_client_tier *tiers; /* n_tiers entries, malloc'd; lkv_client_stats_clear */
} lkv_client_stats;

/* Admin/Stats. Free with lkv_client_stats_clear. */
int lkv_client_stats_get(lkv_client *c, lkv_client_stats *st, lkv_client_error *err);
void lkv_client_stats_clear(lkv_client_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* LKV_CLIENT_H */
