/*
 * lkv_server.h - the internal modules of latticekvd and how they meet.
 *
 * latticekvd is split so that only one file (rpc.c) knows gRPC and every
 * other module can be unit-tested without a network:
 *
 *   config.c   one declarative table -> flags, LATTICEKV_* env, config file, --help
 *   log.c      structured key=value (or JSON) log lines on stderr, client bytes quoted
 *   status.c   the one lkv_status -> gRPC status table
 *   store.c    the host-memory block store: (namespace, key) -> blob, LRU, capacity
 *   batcher.c  dynamic batching: coalesces and splits codec work (pure logic)
 *   pool.c     codec worker threads; the loop's inbox (mutex + uv_async)
 *   backend.c  the codec backend vtable and the CPU backend
 *   backend_cuda.c  the CUDA backend (built when the lkv_cuda target exists)
 *   wire.c     protobuf wire: zero-copy request readers, replies written in place
 *   service.c  what each RPC does: validation, store, batcher; no gRPC types
 *   reflection.c  grpc.reflection.v1alpha answers from descriptors embedded at build time
 *   rpc.c      gRPC C core: listeners, completion queue thread, call state machines
 *   main.c     start-up, the libuv loop, signals, two-phase shutdown
 *
 * Threads: the libuv loop thread owns every call, the store, the batcher and
 * the counters, so none of them needs a lock. The completion-queue thread and
 * the codec workers never touch that state: they push events into the inbox,
 * whose uv_async callback drains it on the loop thread.
 */
#ifndef LKV_SERVER_H
#define LKV_SERVER_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lkv_codec.h"
#include "lkv_rpc_table.h"

/* ------------------------------------------------------------------------ */
/* Configuration (config.c)                                                  */
/* ------------------------------------------------------------------------ */

#define LKV_LISTEN_MAX 16
#define LKV_ADDR_MAX   256

typedef enum lkv_backend_kind {
    LKV_BACKEND_AUTO = 0,
    LKV_BACKEND_CPU = 1,
    LKV_BACKEND_CUDA = 2
} lkv_backend_kind;

typedef enum lkv_log_level {
    LKV_LOG_ERROR = 0,
    LKV_LOG_WARN = 1,
    LKV_LOG_INFO = 2,
    LKV_LOG_DEBUG = 3
} lkv_log_level;

typedef enum lkv_log_format { LKV_LOG_FORMAT_KV = 0, LKV_LOG_FORMAT_JSON = 1 } lkv_log_format;

typedef struct lkv_config {
    char listen[LKV_LISTEN_MAX][LKV_ADDR_MAX];
    uint32_t n_listen;
    char config_file[LKV_ADDR_MAX];
    uint32_t backend; /* lkv_backend_kind */
    uint64_t host_mem_bytes;
    uint64_t max_message_bytes;
    uint64_t batch_max_vectors;
    uint64_t batch_max_wait_us;
    uint64_t threads;             /* 0: number of cores */
    uint64_t cuda_inline_vectors; /* see lkv_inline_max_vectors */
    uint32_t default_variant;     /* lkv_variant */
    uint64_t default_q;
    uint64_t stream_window;
    uint64_t max_key_bytes;       /* longest BlockKey.key / LookupRequest.keys[i] */
    uint64_t max_namespace_bytes; /* longest namespace */
    uint64_t shutdown_grace_ms;
    uint32_t log_level;          /* lkv_log_level */
    uint32_t log_format;         /* lkv_log_format */
    uint64_t unix_socket_mode;   /* permission bits of unix:PATH sockets */
    uint32_t reflection;         /* 1: serve grpc.reflection.v1alpha */
    uint64_t max_inflight_bytes; /* 0: lkv_inflight_budget's default */
} lkv_config;

/* What lkv_config_load asks the caller to do besides serving. */
typedef enum lkv_config_action {
    LKV_CONFIG_RUN = 0,
    LKV_CONFIG_HELP = 1,
    LKV_CONFIG_VERSION = 2
} lkv_config_action;

/* Looks an environment variable up; getenv in the daemon, a table in tests. */
typedef const char *(*lkv_getenv_fn)(const char *name, void *ud);

/* Fills cfg with the embedded defaults. */
void lkv_config_defaults(lkv_config *cfg);

/*
 * Builds the configuration: defaults, then the config file (--config or
 * LATTICEKV_CONFIG), then LATTICEKV_* variables, then argv[1..]. On an invalid
 * setting returns ERR_INVALID_ARGUMENT and writes one line naming the
 * setting, where it came from and the value into err. *action says whether
 * --help or --version was asked for.
 */
lkv_status lkv_config_load(lkv_config *cfg, int argc, char **argv, lkv_getenv_fn getenv_fn,
                           void *getenv_ud, lkv_config_action *action, char *err, size_t err_cap);

/*
 * Checks the environment (envp: "NAME=value" strings, NULL-terminated) for
 * LATTICEKV_* variables that name no setting (a misspelt
 * LATTICEKV_HOST_MEM would otherwise be ignored without a word). For each
 * one calls warn with a line naming it and the nearest known variable;
 * returns how many there were. They are not errors: the environment is
 * shared with other programs.
 */
size_t lkv_config_check_env(char *const *envp, void (*warn)(const char *msg, void *ud), void *ud);

/* Writes the --help text generated from the table. */
void lkv_config_help(FILE *out);

/*
 * The largest batch the daemon's loop thread codes itself, on the C codec,
 * when no other batch is in flight (low load), instead of handing it to a
 * worker: LKV_INLINE_MAX_VECTORS for the cpu backend (two thread hand-offs
 * cost more than a small batch's codec work), cfg->cuda_inline_vectors for
 * the cuda backend: one GPU call alone beats the C codec from ~256 vectors
 * (bench/gpu/ctx_crossover), but from the loop thread it also costs two
 * hand-offs to a worker, and 256-vector batches measured 1.6x faster inline
 * at one client (docs/gpu.md). Larger settings hold the loop thread longer
 * (~0.8 ms at 4096).
 */
#define LKV_INLINE_MAX_VECTORS 512
size_t lkv_inline_max_vectors(const lkv_config *cfg, const char *backend_name);

/* Parses "64MiB", "4k", "123" into bytes; 0 on success, -1 if malformed. */
int lkv_parse_size(const char *s, uint64_t *out);

/* ------------------------------------------------------------------------ */
/* Logging (log.c)                                                           */
/* ------------------------------------------------------------------------ */

void lkv_log_set_level(lkv_log_level level);
/* key=value lines (the default) or one JSON object per line. */
void lkv_log_set_format(lkv_log_format format);
int lkv_log_enabled(lkv_log_level level);
/* One line: "ts=... level=info event=<event> <fields>\n"; fields is printf-style
 * "key=value ..." text where a value is a bare word (numbers, names the daemon
 * chose) or a string quoted by lkv_log_quote. Control bytes that reach the
 * formatted fields anyway are escaped, so no value can start a new line.
 * Safe from any thread (one write per line). */
void lkv_log(lkv_log_level level, const char *event, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Every value a client chose (namespace, key, a message naming them) is
 * logged through this: writes src (len bytes, any bytes) into dst as a
 * double-quoted string, escaping '"', '\\', \n, \r, \t and every other byte
 * outside printable ASCII as \xNN, and cutting it with "..." before the
 * closing quote when it does not fit cap. Returns dst, for use as a %s
 * argument: lkv_log(..., "namespace=%s", lkv_log_quote(q, sizeof q, ns, n)).
 */
#define LKV_LOG_QUOTE_MAX 320
const char *lkv_log_quote(char *dst, size_t cap, const void *src, size_t len);
/* The same for a NUL-terminated string (NULL logs as ""). */
const char *lkv_log_quote_str(char *dst, size_t cap, const char *s);

/* ------------------------------------------------------------------------ */
/* Status mapping (status.c)                                                 */
/* ------------------------------------------------------------------------ */

/* gRPC status codes by their wire numbers, from the shared list in
 * lkv_rpc_table.h (rpc.c checks every one against grpc/status.h). */
typedef enum lkv_grpc_code {
#define LKV_X_GRPC_ENUM(name, value) LKV_GRPC_##name = (value),
    LKV_GRPC_CODE_LIST(LKV_X_GRPC_ENUM)
#undef LKV_X_GRPC_ENUM
} lkv_grpc_code;

/*
 * Statuses only the daemon returns (the codec never does), numbered after
 * the codec's LKV_STATUS_LIST: X(NAME, default message), LKV_NAME.
 */
#define LKV_SERVER_STATUS_LIST(X)  \
    X(ERR_NOT_FOUND, "not found")  \
    X(ERR_AUTH, "unauthenticated") \
    X(ERR_PERMISSION, "permission denied")

enum {
    LKV_SERVER_STATUS_BEFORE = LKV_STATUS_COUNT - 1,
#define LKV_X_SERVER_ENUM(name, msg) LKV_##name,
    LKV_SERVER_STATUS_LIST(LKV_X_SERVER_ENUM)
#undef LKV_X_SERVER_ENUM
        LKV_SERVER_STATUS_END /* one past the last status, codec's or daemon's */
};

/* The one table: every status, the codec's and the daemon's, to the gRPC
 * code a client sees. */
lkv_grpc_code lkv_status_to_grpc(int s);
/* The default message of any status ("unknown status" outside both lists). */
const char *lkv_server_status_message(int s);
/* "INVALID_ARGUMENT" etc. */
const char *lkv_grpc_code_name(lkv_grpc_code c);

/* ------------------------------------------------------------------------ */
/* Blobs and the host-memory store (store.c)                                 */
/* ------------------------------------------------------------------------ */

/*
 * An immutable, reference-counted byte buffer holding one coded container.
 * The store holds one reference; a Get in flight holds another, so eviction
 * or replacement never frees bytes a worker is still decoding.
 */
typedef struct lkv_blob {
    atomic_uint refs;
    size_t len;
    uint8_t *data;
    void *base; /* adopted allocation to free, or NULL when data is inline */
} lkv_blob;

/* A blob of len bytes (content uninitialised), refs = 1. NULL on OOM. */
lkv_blob *lkv_blob_create(size_t len);
/* Wraps len bytes at data inside the malloc'd block base (ownership of base
 * moves to the blob; it is freed with the blob), refs = 1. NULL on OOM. */
lkv_blob *lkv_blob_adopt(void *base, uint8_t *data, size_t len);
/* A coded Put stores its request buffer as the block only when the buffer
 * holds at most this many bytes beyond the container, namespace and key (the
 * protobuf framing of a plain PutRequest is under 40); otherwise the
 * container is copied out and the request freed (service.c). */
#define LKV_PUT_ADOPT_SLACK 64
lkv_blob *lkv_blob_ref(lkv_blob *b);
void lkv_blob_unref(lkv_blob *b);

typedef struct lkv_store lkv_store;

typedef struct lkv_store_stats {
    uint64_t capacity_bytes;
    uint64_t used_bytes;
    uint64_t blocks;
    uint64_t hits;
    uint64_t misses;
    uint64_t evictions;
} lkv_store_stats;

/* Each entry is charged blob->len + namespace length + key length bytes. */
lkv_store *lkv_store_create(uint64_t capacity_bytes);
void lkv_store_free(lkv_store *s);
/*
 * Inserts or replaces (ns, key) -> blob, evicting least recently used entries
 * as needed; the store takes its own reference. A block larger than the
 * capacity fails with ERR_LIMIT and changes nothing (the old value stays).
 */
lkv_status lkv_store_put(lkv_store *s, const char *ns, size_t ns_len, const uint8_t *key,
                         size_t key_len, lkv_blob *blob, lkv_diag *diag);
/* A new reference to the block (the caller unrefs it), or NULL. Marks it most
 * recently used and counts a hit or a miss. */
lkv_blob *lkv_store_get(lkv_store *s, const char *ns, size_t ns_len, const uint8_t *key,
                        size_t key_len);
/* Whether the key is present; touches neither the LRU order nor the counters. */
int lkv_store_contains(const lkv_store *s, const char *ns, size_t ns_len, const uint8_t *key,
                       size_t key_len);
/* 1 when something was deleted. */
int lkv_store_delete(lkv_store *s, const char *ns, size_t ns_len, const uint8_t *key,
                     size_t key_len);
void lkv_store_get_stats(const lkv_store *s, lkv_store_stats *out);

/* ------------------------------------------------------------------------ */
/* Events into the loop (pool.c)                                             */
/* ------------------------------------------------------------------------ */

typedef enum lkv_event_kind { LKV_EV_GRPC = 1, LKV_EV_BATCH = 2 } lkv_event_kind;

/* Intrusive node; embedded in whatever is handed to the loop thread. */
typedef struct lkv_event {
    struct lkv_event *next;
    lkv_event_kind kind;
} lkv_event;

typedef struct lkv_inbox lkv_inbox;
typedef void (*lkv_inbox_fn)(lkv_event *ev, void *ud);
/* Drains call handle(ev) for each event in push order, then idle(ud). */
lkv_inbox *lkv_inbox_create(void *uv_loop, lkv_inbox_fn handle, void (*idle)(void *ud), void *ud);
/* Any thread. Wakes the loop. */
void lkv_inbox_push(lkv_inbox *in, lkv_event *ev);
/* Loop thread: processes whatever is queued now (used during shutdown). */
void lkv_inbox_drain(lkv_inbox *in);
/* Loop thread: closes the uv handle; free happens in the close callback. */
void lkv_inbox_close(lkv_inbox *in);

/* ------------------------------------------------------------------------ */
/* Dynamic batching (batcher.c)                                              */
/* ------------------------------------------------------------------------ */

typedef enum lkv_op { LKV_OP_ENCODE = 0, LKV_OP_DECODE = 1 } lkv_op;

/*
 * The codec work of one request: n vectors from src to dst. Encode reads
 * vectors (dim * dtype size bytes each) and writes records; decode the other
 * way round. Owned by the caller until done() runs on the loop thread.
 */
typedef struct lkv_work {
    lkv_op op;
    lkv_params params;
    lkv_dtype dtype;
    const uint8_t *src;
    uint8_t *dst;
    size_t n;
    void (*done)(struct lkv_work *w); /* loop thread, once every chunk is back */
    void *ud;
    /* Filled by the batcher. */
    lkv_status status;  /* first failing chunk's status */
    lkv_diag diag;      /* its message; index = vector within this work */
    size_t next;        /* first vector not yet handed to a batch */
    size_t outstanding; /* chunks in flight */
    uint64_t enq_ns;
    struct lkv_work *q_next;
} lkv_work;

/* One contiguous run of a work's vectors inside a batch. */
typedef struct lkv_seg {
    lkv_work *work;
    const uint8_t *src;
    uint8_t *dst;
    size_t first; /* index of the first vector within the work */
    size_t n;
    lkv_status status;
    lkv_diag diag;
} lkv_seg;

/* One codec launch: segments that share op, params and dtype. */
typedef struct lkv_batch {
    lkv_event ev; /* first: handed to the pool, then back to the loop */
    lkv_op op;
    lkv_params params;
    lkv_dtype dtype;
    size_t nvec;
    size_t nseg;
    size_t cap;
    lkv_seg seg[];
} lkv_batch;

typedef struct lkv_batcher_cfg {
    size_t max_vectors;    /* vectors per batch (and chunk size); >= 1 */
    uint64_t max_wait_ns;  /* 0: batching off, every chunk runs alone */
    unsigned max_inflight; /* batches dispatched and not yet complete */
    size_t max_segments;   /* segments per batch */
} lkv_batcher_cfg;

typedef struct lkv_batcher lkv_batcher;
typedef void (*lkv_dispatch_fn)(lkv_batch *b, void *ud);

lkv_batcher *lkv_batcher_create(const lkv_batcher_cfg *cfg, lkv_dispatch_fn dispatch, void *ud);
void lkv_batcher_free(lkv_batcher *b);
/* Queues a work (n may be 0: it completes at the next poll). */
void lkv_batcher_submit(lkv_batcher *b, lkv_work *w, uint64_t now_ns);
/*
 * Dispatches every batch that is ready: its group has max_vectors pending,
 * its oldest work has waited max_wait_ns, or batching is off; never more
 * than max_inflight at once. Returns the ns until the next deadline
 * (UINT64_MAX: nothing is waiting on time).
 */
uint64_t lkv_batcher_poll(lkv_batcher *b, uint64_t now_ns);
/* A dispatched batch is back: records statuses, runs done() of works that
 * are complete, frees the batch. */
void lkv_batcher_complete(lkv_batcher *b, lkv_batch *batch);
/* Sets "dispatch everything now, no waiting" (shutdown). */
void lkv_batcher_flush_mode(lkv_batcher *b, int on);

typedef struct lkv_batcher_stats {
    uint64_t batches;
    uint64_t batched_vectors;
    uint64_t works;
    uint64_t pending_vectors;
    unsigned inflight;
} lkv_batcher_stats;
void lkv_batcher_get_stats(const lkv_batcher *b, lkv_batcher_stats *out);

/* Bytes of one vector on the source / destination side of a work. */
size_t lkv_work_src_stride(const lkv_work *w);
size_t lkv_work_dst_stride(const lkv_work *w);

/* ------------------------------------------------------------------------ */
/* Codec backends (backend.c, backend_cuda.c)                               */
/* ------------------------------------------------------------------------ */

/*
 * A codec backend runs batches on worker threads. `worker` is the calling
 * worker's index (0..workers-1): a backend may keep per-worker state (a CUDA
 * context and stream each) and needs no lock for it. run() sets each
 * segment's status; a failing segment must not affect the others.
 */
typedef struct lkv_backend lkv_backend;
struct lkv_backend {
    const char *name;
    int (*supports)(const lkv_backend *be, const lkv_params *p, lkv_dtype dt);
    void (*encode)(lkv_backend *be, unsigned worker, lkv_batch *b);
    void (*decode)(lkv_backend *be, unsigned worker, lkv_batch *b);
    void (*free)(lkv_backend *be);
};

/* The C codec (LKV_ISA_AUTO). Never fails except on OOM. */
lkv_status lkv_backend_cpu_create(unsigned workers, lkv_backend **out, lkv_diag *diag);
/* CUDA devices usable by this build (0 when built without CUDA or no device). */
int lkv_backend_cuda_devices(void);
/* ERR_UNAVAILABLE when this build has no CUDA or there is no device. */
lkv_status lkv_backend_cuda_create(unsigned workers, lkv_backend **out, lkv_diag *diag);
/* Runs b with be, or with the CPU codec when be does not support its params. */
void lkv_backend_run(lkv_backend *be, unsigned worker, lkv_batch *b);
/* The CPU path of one batch (used by backends as their fallback). */
void lkv_backend_run_cpu(lkv_batch *b);

/* ------------------------------------------------------------------------ */
/* Worker pool (pool.c)                                                      */
/* ------------------------------------------------------------------------ */

typedef struct lkv_pool lkv_pool;
/* n threads, each calling run(ev, worker_index, ud) on the events pushed. */
lkv_pool *lkv_pool_create(unsigned n, void (*run)(lkv_event *ev, unsigned worker, void *ud),
                          void *ud);
void lkv_pool_push(lkv_pool *p, lkv_event *ev);
/* Runs what is queued, then joins the threads. */
void lkv_pool_free(lkv_pool *p);

/* ------------------------------------------------------------------------ */
/* Protobuf wire reading and writing (wire.c)                                */
/* ------------------------------------------------------------------------ */

size_t lkv_wire_varint_size(uint64_t v);
uint8_t *lkv_wire_put_varint(uint8_t *p, uint64_t v);
/* Field key + length of a length-delimited field. */
size_t lkv_wire_len_field_size(uint32_t field, size_t len);
uint8_t *lkv_wire_put_len_field(uint8_t *p, uint32_t field, size_t len);

/* Size of a Tensor message body with data_len data bytes. */
size_t lkv_wire_tensor_size(lkv_dtype dt, const uint64_t *shape, uint32_t ndim, size_t data_len);
/* Writes the Tensor body up to the data bytes; returns where data goes. */
uint8_t *lkv_wire_put_tensor_head(uint8_t *p, lkv_dtype dt, const uint64_t *shape, uint32_t ndim,
                                  size_t data_len);

/*
 * Reply layouts built around one large payload that a worker writes in
 * place. plan() returns the total size and the payload's offset; finish()
 * writes every byte except the payload. tier may be NULL.
 */
typedef struct lkv_wire_layout {
    size_t total;
    size_t payload_off;
} lkv_wire_layout;

/* CompressResponse { coded, raw_bytes, coded_bytes, bits_per_vector } */
void lkv_wire_compress_plan(size_t coded_len, uint64_t raw, uint32_t bits, lkv_wire_layout *l);
void lkv_wire_compress_finish(uint8_t *buf, size_t coded_len, uint64_t raw, uint32_t bits);
/* DecompressResponse { tensor } or GetResponse { tensor, tier } */
void lkv_wire_tensor_reply_plan(lkv_dtype dt, const uint64_t *shape, uint32_t ndim, size_t data_len,
                                const char *tier, lkv_wire_layout *l);
void lkv_wire_tensor_reply_finish(uint8_t *buf, lkv_dtype dt, const uint64_t *shape, uint32_t ndim,
                                  size_t data_len, const char *tier);
/* GetResponse { coded, tier } */
void lkv_wire_coded_reply_plan(size_t coded_len, const char *tier, lkv_wire_layout *l);
void lkv_wire_coded_reply_finish(uint8_t *buf, size_t coded_len, const char *tier);

/*
 * Zero-copy readers of request messages, starting with those that carry a
 * large payload (PutRequest, CompressRequest): every pointer refers into
 * the message buffer, which must outlive the result. Proto3 rules: unknown
 * fields are skipped, the last scalar wins, repeated occurrences of a
 * sub-message merge, shape may be packed or not. They return 0, or -1 when
 * the bytes are not a valid message of that type.
 */
typedef struct lkv_wire_tensor {
    int present;
    int64_t dtype; /* raw enum value; may be unknown */
    uint64_t shape[LKV_MAX_NDIM];
    size_t n_shape; /* may exceed LKV_MAX_NDIM: only the first ones are kept */
    const uint8_t *data;
    size_t data_len;
} lkv_wire_tensor;

typedef struct lkv_wire_params {
    int64_t variant;
    uint32_t q_range;
} lkv_wire_params;

typedef struct lkv_wire_key {
    int present;
    const char *ns; /* not NUL-terminated */
    size_t ns_len;
    const uint8_t *key;
    size_t key_len;
} lkv_wire_key;

enum { LKV_WIRE_PAYLOAD_NONE = 0, LKV_WIRE_PAYLOAD_TENSOR = 2, LKV_WIRE_PAYLOAD_CODED = 3 };

typedef struct lkv_wire_put {
    lkv_wire_key key;
    int payload; /* LKV_WIRE_PAYLOAD_* (the oneof's last field seen) */
    lkv_wire_tensor tensor;
    const uint8_t *coded;
    size_t coded_len;
    lkv_wire_params params;
} lkv_wire_put;

int lkv_wire_parse_put(const uint8_t *p, size_t n, lkv_wire_put *out);
int lkv_wire_parse_compress(const uint8_t *p, size_t n, lkv_wire_tensor *tensor,
                            lkv_wire_params *params);

/* The other requests, read the same way (every request's bytes go through
 * wire.c; protobuf-c only writes small replies). Absent fields read as
 * zero / empty; ns is "" when the key has no namespace. */
typedef struct lkv_wire_decompress {
    const uint8_t *coded;
    size_t coded_len;
    int64_t out_dtype; /* raw enum value */
} lkv_wire_decompress;

typedef struct lkv_wire_get {
    lkv_wire_key key;
    int want_coded;
    int64_t out_dtype;
} lkv_wire_get;

/* LookupRequest: the keys stay in the message; lkv_wire_lookup_next walks them. */
typedef struct lkv_wire_lookup {
    const char *ns;
    size_t ns_len;
    size_t n_keys;
    const uint8_t *msg;
    size_t msg_len;
} lkv_wire_lookup;

int lkv_wire_parse_decompress(const uint8_t *p, size_t n, lkv_wire_decompress *out);
int lkv_wire_parse_get(const uint8_t *p, size_t n, lkv_wire_get *out);
int lkv_wire_parse_delete(const uint8_t *p, size_t n, lkv_wire_key *key);
int lkv_wire_parse_lookup(const uint8_t *p, size_t n, lkv_wire_lookup *out);
/* The next key after byte *pos (start at 0) of a parsed LookupRequest: 1 and
 * the key, or 0 after the last one. */
int lkv_wire_lookup_next(const lkv_wire_lookup *l, size_t *pos, const uint8_t **key, size_t *len);
/* HealthCheckRequest { string service = 1; }: service is not NUL-terminated. */
int lkv_wire_parse_health(const uint8_t *p, size_t n, const char **service, size_t *len);
/* A message with no fields of its own (StatsRequest): checks it is well formed. */
int lkv_wire_parse_empty(const uint8_t *p, size_t n);

/* ------------------------------------------------------------------------ */
/* Service (service.c)                                                       */
/* ------------------------------------------------------------------------ */

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

typedef struct lkv_service_counters {
    uint64_t requests;
    uint64_t errors;
    uint64_t raw_bytes_in;
    uint64_t coded_bytes_out;
} lkv_service_counters;

lkv_service *lkv_service_create(const lkv_config *cfg, lkv_store *store, lkv_batcher *batcher,
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
/* Counts a reply the rpc layer made itself (UNIMPLEMENTED, UNAVAILABLE). */
void lkv_service_count(lkv_service *s, lkv_grpc_code code);
void lkv_service_get_counters(const lkv_service *s, lkv_service_counters *out);

/*
 * The daemon's statistics, listed once: every rendering (the Stats reply,
 * the "stopped" log line, a metrics endpoint) is generated from these rows.
 * X(name, kind, help): name is the StatsResponse / TierStats field; kind is
 * counter (only grows) or gauge. The tier rows are lkv_store_stats' fields.
 */
#define LKV_STATS_LIST(X)                                        \
    X(uptime_ms, gauge, "milliseconds since latticekvd started") \
    X(requests, counter, "requests answered, errors included")   \
    X(errors, counter, "requests answered with an error")        \
    X(raw_bytes_in, counter, "bytes of tensors encoded")         \
    X(coded_bytes_out, counter, "bytes of containers produced")  \
    X(batches, counter, "codec launches")                        \
    X(batched_vectors, counter, "vectors coded in those launches")
#define LKV_TIER_STATS_LIST(X)                                          \
    X(capacity_bytes, gauge, "bytes the tier may hold")                 \
    X(used_bytes, gauge, "bytes held: containers, namespaces and keys") \
    X(blocks, gauge, "blocks held")                                     \
    X(hits, counter, "Gets that found their block")                     \
    X(misses, counter, "Gets that did not")                             \
    X(evictions, counter, "blocks evicted to make room")

typedef struct lkv_stats {
#define LKV_X_STATS_FIELD(name, kind, help) uint64_t name;
    LKV_STATS_LIST(LKV_X_STATS_FIELD)
#undef LKV_X_STATS_FIELD
    lkv_store_stats host; /* the host tier, LKV_TIER_STATS_LIST */
} lkv_stats;

/* Loop thread: a snapshot of every statistic. */
void lkv_service_get_stats(const lkv_service *s, lkv_stats *out);

typedef enum lkv_stats_format {
    LKV_STATS_LOG = 0,       /* "requests=1 errors=0 ... host_hits=3 ..." (log fields) */
    LKV_STATS_PROMETHEUS = 1 /* text exposition format, latticekv_* metrics */
} lkv_stats_format;

/* Renders st into buf (always NUL-terminated when cap > 0); returns the
 * length the whole text needs, like snprintf. */
size_t lkv_stats_render(const lkv_stats *st, lkv_stats_format fmt, char *buf, size_t cap);

/* ------------------------------------------------------------------------ */
/* Server reflection (reflection.c)                                          */
/* ------------------------------------------------------------------------ */

/* 1 when this build embeds the API's descriptors (protoc was found). */
int lkv_reflection_available(void);
/* Answers one grpc.reflection.v1alpha ServerReflectionRequest (msg, len)
 * with a ServerReflectionResponse, malloc'd into *reply (the caller frees
 * it). Questions it cannot answer get the response's error_response (e.g.
 * NOT_FOUND for an unknown symbol), not a failure. Returns 0, -1 when msg
 * is not a valid request, -2 when out of memory. */
int lkv_reflection_answer(const uint8_t *msg, size_t len, uint8_t **reply, size_t *reply_len);

/* ------------------------------------------------------------------------ */
/* In-flight byte budget (rpc.c)                                             */
/* ------------------------------------------------------------------------ */

/*
 * Bytes of requests in flight: received messages from the moment they are
 * copied out of gRPC until their request is done, and reply buffers from
 * their allocation until gRPC has sent them. Any thread may give bytes back.
 * A take fails when it would pass the limit while anything else is in
 * flight (a lone request is always admitted, so a budget smaller than one
 * message refuses nothing on an idle daemon).
 */
typedef struct lkv_budget {
    _Atomic uint64_t used;
    uint64_t limit;
    _Atomic uint64_t peak;       /* most used since the last trim */
    _Atomic uint64_t refused;    /* takes that failed */
    _Atomic uint64_t trims;      /* malloc_trim calls made (see budget.c) */
    _Atomic uint64_t since_trim; /* bytes taken since the last trim */
    _Atomic uint64_t underflows; /* gives of more than was in flight (a bug) */
} lkv_budget;

/* The budget in effect: cfg->max_inflight_bytes, or when that is 0,
 * host-mem-bytes / 4 but at least 2 * max-message-bytes. */
uint64_t lkv_inflight_budget(const lkv_config *cfg);
void lkv_budget_init(lkv_budget *b, uint64_t limit);
/* 1 when n bytes were taken, 0 when they would pass the limit. b may be NULL. */
int lkv_budget_try_take(lkv_budget *b, uint64_t n);
/* Takes n bytes whatever the limit (small replies). b may be NULL. */
void lkv_budget_take(lkv_budget *b, uint64_t n);
/* Gives n bytes back; giving more than is in flight is a charge and give
 * that do not pair (a bug): used stops at 0, the give is counted in
 * underflows and logged as budget_underflow. When nothing is left in
 * flight and at least
 * LKV_TRIM_AFTER_BYTES were taken since the last trim, returns the freed
 * heap to the system (malloc_trim). b may be NULL. */
void lkv_budget_give(lkv_budget *b, uint64_t n);
#define LKV_TRIM_AFTER_BYTES (UINT64_C(64) << 20)
/* Loop thread: the service charges request and reply bytes to b. */
void lkv_service_set_budget(lkv_service *s, lkv_budget *b);

/* ------------------------------------------------------------------------ */
/* gRPC (rpc.c)                                                              */
/* ------------------------------------------------------------------------ */

typedef struct lkv_rpc lkv_rpc;

/* Creates the server, binds every cfg->listen address and starts it; on a
 * bind failure returns ERR_UNAVAILABLE with one line naming the address and
 * the reason. A unix:PATH that another process answers on is refused, a
 * stale socket there is removed, and sockets get cfg->unix_socket_mode. */
lkv_status lkv_rpc_create(const lkv_config *cfg, lkv_service *svc, lkv_inbox *inbox, lkv_rpc **out,
                          lkv_diag *diag);
/* Loop thread: a completion came back from the completion-queue thread. */
void lkv_rpc_on_event(lkv_rpc *r, lkv_event *ev);
/* The reply function handed to the service: files the reply (takes its
 * buffer and effect) and queues the call; nothing is sent until the flush. */
void lkv_rpc_reply(void *call, uint64_t seq, lkv_reply *reply);
/* Loop thread: sends the replies filed since the last flush and frees the
 * calls that are finished. Runs after every gRPC event; the loop also runs
 * it after the batcher completes work. */
void lkv_rpc_flush(lkv_rpc *r);
/* Phase 1: new calls are answered UNAVAILABLE; in-flight calls go on. */
void lkv_rpc_shutdown_begin(lkv_rpc *r);
/* Loop thread, after events and on a timer during phase 1: once no call is
 * active and none arrived for a quiet period, gRPC stops accepting
 * (grpc_server_shutdown_and_notify). */
void lkv_rpc_shutdown_progress(lkv_rpc *r, uint64_t now_ns);
/* Cancels every call still running (the grace period is over). */
void lkv_rpc_cancel_all(lkv_rpc *r);
/* 1 once phase 1 is complete and no call is left. */
int lkv_rpc_drained(const lkv_rpc *r);
/* Phase 2: shuts the completion queue down, joins its thread, destroys. */
void lkv_rpc_free(lkv_rpc *r);

/* Monotonic nanoseconds. */
uint64_t lkv_now_ns(void);

#endif /* LKV_SERVER_H */
