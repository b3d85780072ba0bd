/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_tier.h - the storage tiers of latticekvd behind one interface.
 *
 * A tier maps (namespace, key) to one coded container (an lkv_blob) under a
 * byte capacity. The daemon stacks tiers (docs/service.md §4): GPU memory ->
 * host memory -> a local SSD directory -> Redis. Every tier, synchronous
 * (host memory) or doing I/O (SSD, Redis), is driven through the same small
 * vtable, so the code that stacks them (promotion on hit, demotion on
 * eviction, write-through or write-back) never needs to know which is which.
 *
 * Threads
 *   Every call in this header is made on the libuv loop thread that owns the
 *   daemon's state (server/lkv_server.h), and every completion is delivered
 *   on that same thread. A tier that does I/O does it elsewhere (libuv's
 *   threadpool, an io_uring, a hiredis connection on the loop) and brings the
 *   result back to the loop thread before it calls done(). So the caller
 *   needs no lock, and a tier's index and counters need none either.
 *
 * The completion rule
 *   put, get and del take a caller-owned lkv_tier_req and always finish by
 *   calling req->done(req) exactly once, on the loop thread. A synchronous
 *   tier (host memory), or any tier that can answer at once (an SSD miss is
 *   answered from the in-memory index, a bad argument is refused before any
 *   I/O), calls done() before the submitting call returns; a tier that does
 *   I/O calls it later, from a loop callback. Callers therefore write one
 *   path: everything that follows the operation lives in done(). (This is
 *   the rule lkv_service_handle already follows for replies.) done() may
 *   submit further requests, to this tier or another, including reusing the
 *   same req.
 *
 * Ownership
 *   - req: owned by the caller. Between submission and done() the tier may
 *     use every field; the caller must neither touch nor free it. After
 *     done() it is the caller's again.
 *   - req->ns and req->key: caller-owned bytes that must stay valid and
 *     unchanged until done(). The tier copies what it keeps in its index.
 *   - req->blob on put: the caller's reference; the tier takes its own
 *     reference (lkv_blob_ref) for as long as it needs the bytes (the host
 *     tier keeps it, the SSD tier keeps it until the write completed) and the
 *     caller may drop its own reference right after submitting.
 *   - req->blob on get: NULL on submission; on a hit, a new reference that
 *     the caller owns (and must lkv_blob_unref). On anything else NULL.
 *   - The tier itself: created by its own create function (lkv_tier_ssd_create,
 *     ...), freed by close(), which is asynchronous because I/O in flight must
 *     come back first.
 *
 * Results
 *   req->status is LKV_OK or a failure with req->diag naming the tier, the
 *   object (file, node) and the value. A miss is not a failure: get returns
 *   LKV_OK with req->found = 0 (ERR_NOT_FOUND is for the service to say).
 *   Failures a client can act on:
 *     ERR_LIMIT             the block can never fit (larger than the tier),
 *                           the tier is full of blocks that cannot be evicted
 *                           yet, or the device is full (ENOSPC): RESOURCE_EXHAUSTED
 *     ERR_CHECKSUM/CORRUPT/TRUNCATED/MAGIC/VERSION  get found the stored copy damaged; the
 *                           tier has already dropped it (it will miss from now
 *                           on): DATA_LOSS, never the damaged bytes
 *     ERR_UNAVAILABLE       the tier is closing, or a remote tier is unreachable
 *     ERR_INTERNAL          an I/O error (EIO, ...): the message has errno's text
 *     ERR_INVALID_ARGUMENT  a namespace or key the tier cannot hold (too long)
 *   A failed put changes nothing the tier serves: the previous value of the
 *   key (if any) is still served. (Blocks evicted to make room for it stay
 *   evicted; the SSD tier's one exception, a failed directory fsync after
 *   the rename, is described in server/tier/README.md.)
 *
 * Ordering
 *   Requests on one key take effect in submission order: a get submitted
 *   after a put's done() sees that put's value (or a later one); a put
 *   submitted after a delete's done() is not undone by it. Requests on
 *   different keys may complete in any order.
 *
 * Capacity and eviction
 *   Each tier is charged in bytes of its own medium (the host tier: container
 *   + namespace + key; the SSD tier: file size) against capacity_bytes, with
 *   two watermarks: when a put would take the charged bytes above the high
 *   watermark, the tier evicts least recently used blocks until the bytes,
 *   the new block included, are at or below the low watermark
 *   (lkv_tier_watermarks). A put makes its block the most recent when it
 *   completes (so puts in flight together rank in completion order); get
 *   refreshes a block's recency; contains does not.
 *   Each eviction calls the evict hook, if one is set, on the loop thread,
 *   so the stack can demote the block to the next tier down (write-back) or
 *   count the loss. The hook receives the block's bytes when the tier holds
 *   them in memory (host, GPU) and blob = NULL otherwise (SSD: the file is
 *   already being unlinked; a tier below an SSD is fed by write-through).
 *
 * Promotion
 *   Promotion on hit is the stack's job and needs nothing more: a get that
 *   hits a lower tier returns a blob reference, which the stack puts into the
 *   tiers above it (no copy; the blob is immutable and reference-counted).
 */
#ifndef LKV_TIER_H
#define LKV_TIER_H

#include <stddef.h>
#include <stdint.h>

#include "lkv_server.h"

typedef struct lkv_tier lkv_tier;

typedef enum lkv_tier_op {
    LKV_TIER_OP_PUT = 0,
    LKV_TIER_OP_GET = 1,
    LKV_TIER_OP_DELETE = 2
} lkv_tier_op;

/* One request to a tier. Fields marked "in" are set by the caller before
 * submitting; "out" fields are valid in done(); the rest is the tier's. */
typedef struct lkv_tier_req {
    /* in */
    const char *ns; /* namespace bytes, not NUL-terminated */
    size_t ns_len;
    const uint8_t *key; /* arbitrary bytes, key_len >= 1 */
    size_t key_len;
    lkv_blob *blob;                         /* put: in; get: out (a new reference) */
    void (*done)(struct lkv_tier_req *req); /* loop thread, exactly once */
    void *ud;                               /* the caller's */
    /* out */
    lkv_tier_op op;    /* set by lkv_tier_put/get/del */
    lkv_status status; /* LKV_OK, or the failure with diag */
    lkv_diag diag;
    int found;      /* get: 1 on a hit; delete: 1 when the key was there */
    lkv_tier *tier; /* the tier that completed it (its name goes in Get's `tier` field) */
    /* the tier's, between submission and done() */
    void *t_priv;
} lkv_tier_req;

/*
 * Per-tier counters, all since the tier was created. capacity/used/blocks
 * describe now; used_bytes counts what the tier is charged (see above),
 * including bytes reserved by puts in flight.
 */
typedef struct lkv_tier_stats {
    uint64_t capacity_bytes;
    uint64_t used_bytes;
    uint64_t blocks;
    uint64_t hits;
    uint64_t misses;
    uint64_t evictions;
    uint64_t errors;   /* failed I/O and damaged blocks found by get */
    uint64_t puts;     /* acknowledged puts (status OK) */
    uint64_t inflight; /* requests submitted and not yet done */
    uint64_t syncs;    /* SSD: fdatasync + fsync calls (batch groups them) */
    /* Found when the tier opened its medium (SSD: rebuilding the index): */
    uint64_t dropped_truncated; /* files shorter than their header says */
    uint64_t dropped_corrupt;   /* bad magic/version/size/checksum/name */
    uint64_t removed_temporary; /* leftover temporaries of unfinished writes */
    uint64_t loaded_blocks;     /* blocks taken into the index */
} lkv_tier_stats;

/* Called on the loop thread for each block the tier evicts, from inside the
 * put that needed the room. ns/key are valid during the call only; blob is
 * borrowed (ref it to keep it) and NULL when the tier does not hold the bytes
 * in memory. The hook may submit requests to other tiers (demotion), never
 * to the tier that is calling it. */
typedef void (*lkv_tier_evict_fn)(lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *key,
                                  size_t key_len, lkv_blob *blob, void *ud);

/* Called on the loop thread once a closed tier has freed itself. */
typedef void (*lkv_tier_closed_fn)(void *ud);

/* Answers of contains(). */
enum { LKV_TIER_ABSENT = 0, LKV_TIER_PRESENT = 1, LKV_TIER_UNKNOWN = -1 };

/*
 * The vtable. An implementation embeds `struct lkv_tier` as the first member
 * of its own state. Every function is called on the loop thread only.
 */
struct lkv_tier {
    const char *name; /* "host", "ssd", "redis", "gpu": what Get reports */
    /* Stores req->blob under (ns, key), replacing any previous value. */
    void (*put)(lkv_tier *t, lkv_tier_req *req);
    /* Looks (ns, key) up; a hit refreshes its recency. */
    void (*get)(lkv_tier *t, lkv_tier_req *req);
    /* Removes (ns, key); found says whether it was there. */
    void (*del)(lkv_tier *t, lkv_tier_req *req);
    /* What the tier knows without I/O: PRESENT, ABSENT, or UNKNOWN (a remote
     * tier that would have to ask). Touches neither recency nor counters. A
     * key whose put is in flight is reported as it was before that put. */
    int (*contains)(const lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *key,
                    size_t key_len);
    void (*stats)(const lkv_tier *t, lkv_tier_stats *out);
    /* Replaces the evict hook (fn NULL: none). */
    void (*set_evict_hook)(lkv_tier *t, lkv_tier_evict_fn fn, void *ud);
    /*
     * Asynchronous free: new requests complete at once with ERR_UNAVAILABLE;
     * requests in flight complete normally (their done() still runs); then
     * the tier frees everything and calls closed(ud) (closed may be NULL).
     * Like uv_close, the loop must keep running until closed() has run. A
     * synchronous tier frees and calls closed() before returning.
     */
    void (*close)(lkv_tier *t, lkv_tier_closed_fn closed, void *ud);
};

/* Submission helpers: set req->op and req->tier, then call the vtable. */
static inline void lkv_tier_put(lkv_tier *t, lkv_tier_req *req)
{
    req->op = LKV_TIER_OP_PUT;
    req->tier = t;
    t->put(t, req);
}

static inline void lkv_tier_get(lkv_tier *t, lkv_tier_req *req)
{
    req->op = LKV_TIER_OP_GET;
    req->tier = t;
    req->blob = NULL;
    t->get(t, req);
}

static inline void lkv_tier_del(lkv_tier *t, lkv_tier_req *req)
{
    req->op = LKV_TIER_OP_DELETE;
    req->tier = t;
    t->del(t, req);
}

/* For tiers: completes req with st (its diag already written when st fails). */
static inline void lkv_tier_done(lkv_tier_req *req, lkv_status st)
{
    req->status = st;
    req->done(req);
}

/*
 * The watermarks of a tier in bytes: high = capacity * high_pct / 100, low =
 * capacity * low_pct / 100. Percentages must satisfy 1 <= low_pct <=
 * high_pct <= 100 (the create functions check and name them); high_pct = 100
 * evicts only when a put would otherwise exceed the capacity.
 */
static inline void lkv_tier_watermarks(uint64_t capacity, unsigned high_pct, unsigned low_pct,
                                       uint64_t *high, uint64_t *low)
{
    /* capacity / 100 * pct would lose up to 99 bytes; split to stay exact
     * without overflowing for capacities near 2^64. */
    *high = capacity / 100 * high_pct + capacity % 100 * high_pct / 100;
    *low = capacity / 100 * low_pct + capacity % 100 * low_pct / 100;
}

/* ------------------------------------------------------------------------ */
/* The host-memory tier (server/store.c)                                     */
/* ------------------------------------------------------------------------ */

/* A namespace's byte quota in the host tier. */
typedef struct lkv_host_quota {
    const char *ns;
    size_t ns_len;
    uint64_t bytes;
} lkv_host_quota;

typedef struct lkv_host_config {
    uint64_t capacity_bytes; /* >= 1; charged per block: container + namespace + key */
    unsigned high_pct, low_pct;
    const lkv_host_quota *quotas; /* copied; a namespace not listed has no quota */
    size_t nquotas;
} lkv_host_config;

/* The synchronous tier: every request completes before its call returns,
 * and the evict hook receives the evicted block's bytes. */
lkv_status lkv_tier_host_create(const lkv_host_config *cfg, lkv_tier **out, lkv_diag *diag);

/* What a put of blob_len bytes under (ns, key) would be refused for, without
 * changing anything: ERR_LIMIT when the block exceeds the tier or would take
 * its namespace over its quota (the message names both). */
lkv_status lkv_tier_host_admit(const lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *key,
                               size_t key_len, uint64_t blob_len, lkv_diag *diag);

/* Calls fn(key, key_len, ud) for every block of namespace ns held in the
 * host tier whose key starts with prefix (plen 0: every key), oldest first;
 * stops early when fn returns nonzero. Touches neither recency nor counters
 * (Push by_prefix, server/peer.c). */
void lkv_tier_host_each(const lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *prefix,
                        size_t plen, int (*fn)(const uint8_t *key, size_t key_len, void *ud),
                        void *ud);

/* ------------------------------------------------------------------------ */
/* The SSD directory tier (ssd.c)                                            */
/* ------------------------------------------------------------------------ */

/*
 * One file per block in one flat directory, written by libuv's threadpool
 * (uv_queue_work; UV_THREADPOOL_SIZE threads, 4 by default). The on-disk
 * format and what survives a crash are in server/tier/README.md.
 *
 * Why one file per block rather than a segment log: blocks are large (a
 * 16-token block of an 8-head, 128-dim model is ~27 KiB coded, a 256-token
 * block ~435 KiB), so the per-file cost (one inode, one rename) is small
 * against the data; a rename gives each block all-or-nothing visibility with
 * no log replay; deleting or evicting a block frees its space at once, with
 * no compaction pass and no garbage to account for; and a damaged file loses
 * one block, never its neighbours. A flat directory (ext4 and xfs index
 * large directories by hash) needs one directory fsync per batch.
 */

typedef enum lkv_ssd_fsync {
    LKV_SSD_FSYNC_NEVER = 0,  /* write + rename; no fsync (survives kill -9, not power loss) */
    LKV_SSD_FSYNC_BATCH = 1,  /* writes in parallel, then one group: fdatasync each, rename
                                 each, one directory fsync, then acknowledge them all */
    LKV_SSD_FSYNC_ALWAYS = 2, /* per block: write, fdatasync, rename, directory fsync */
} lkv_ssd_fsync;

/* "never", "batch", "always"; NULL outside the enum. */
const char *lkv_ssd_fsync_name(lkv_ssd_fsync f);
/* Parses the names above; 0 on success, -1 otherwise. */
int lkv_ssd_fsync_parse(const char *s, lkv_ssd_fsync *out);

/* Where the fault hook is consulted (tests only). */
typedef enum lkv_ssd_fault_point {
    LKV_SSD_FAULT_WRITE = 0,  /* before writing a block's data (its header is already written) */
    LKV_SSD_FAULT_SYNC = 1,   /* before fdatasync of a temporary file */
    LKV_SSD_FAULT_RENAME = 2, /* before renaming a temporary file to its final name */
    LKV_SSD_FAULT_READ = 3    /* before reading a block file */
} lkv_ssd_fault_point;

/*
 * Called on a threadpool thread (so it must be thread-safe); returns an
 * errno value to make that step fail as if the system call had (0: go on).
 */
typedef int (*lkv_ssd_fault_fn)(void *ud, lkv_ssd_fault_point where);

typedef struct lkv_ssd_config {
    const char *dir;         /* an existing, writable directory (required) */
    uint64_t capacity_bytes; /* >= 1; charged per file: header + ns + key + block */
    unsigned high_pct;       /* default 100 */
    unsigned low_pct;        /* default 90 */
    lkv_ssd_fsync fsync;     /* default LKV_SSD_FSYNC_NEVER (see README.md) */
    /* 1 (default): read and checksum every file while rebuilding the index,
     * so damaged files are dropped at start; 0: check headers and sizes only
     * (start-up reads ~4 KiB per block; damage is then found by the get
     * that reads the file, which verifies the checksum every time). */
    int verify_at_start;
    lkv_ssd_fault_fn fault; /* tests only; NULL in the daemon */
    void *fault_ud;
} lkv_ssd_config;

/* Fills the defaults above (dir NULL, capacity 0: both must be set). */
void lkv_ssd_config_defaults(lkv_ssd_config *cfg);

/* Longest namespace and key the SSD tier stores (ERR_INVALID_ARGUMENT above). */
#define LKV_SSD_MAX_NS_LEN  4096u
#define LKV_SSD_MAX_KEY_LEN 65536u

/*
 * Opens the directory, takes an exclusive lock on DIR/.lock (a second daemon
 * on the same directory fails with ERR_UNAVAILABLE), rebuilds the index:
 * leftover temporaries are removed, truncated and corrupt block files are
 * removed and counted, and if the blocks found exceed the high watermark the
 * oldest are evicted. Runs on the calling (loop) thread and blocks until the
 * index is built; call it before serving.
 *
 * Errors, each with a diag naming the setting and the value:
 *   ERR_INVALID_ARGUMENT  dir missing/empty, not a directory, does not exist,
 *                         capacity 0, watermarks out of order, fsync unknown
 *   ERR_PERMISSION        the directory cannot be written (EACCES, EROFS, EPERM)
 *   ERR_UNAVAILABLE       another process holds the directory's lock
 *   ERR_INTERNAL/ERR_NOMEM  anything else (errno text in diag)
 * loop is the uv_loop_t * whose thread runs every other call.
 */
lkv_status lkv_tier_ssd_create(void *uv_loop, const lkv_ssd_config *cfg, lkv_tier **out,
                               lkv_diag *diag);

/* ------------------------------------------------------------------------ */
/* The Redis / Redis Cluster tier (redis.c)                                  */
/* ------------------------------------------------------------------------ */

/*
 * hiredis (async) on the loop, one connection per node. The seeds decide the
 * mode: the first seed that answers CLUSTER SLOTS gives the slot map (Redis
 * Cluster); one that answers "cluster support disabled" is a single server
 * that holds every key. Key layout, redirects, timeouts and what happens
 * while a node is unreachable: server/tier/README.md.
 *
 * Write-through (queue_bytes = 0, the default): a put is acknowledged when
 * Redis acknowledged the SET. Write-back (queue_bytes > 0): a put is
 * acknowledged once queued; the queue drains to Redis while the key's node
 * is connected, gets are answered from it first, and when it would exceed
 * queue_bytes its oldest blocks are dropped and counted as lost remote
 * copies (lost_blocks/lost_bytes), never silently; each leaves a tombstone
 * so that an older copy still in Redis is deleted, not served. Either way a request
 * that needs an unreachable node fails at once with ERR_UNAVAILABLE
 * (counted in errors).
 * capacity_bytes, used_bytes and blocks are 0: Redis' own maxmemory governs
 * the remote copy and the tier never evicts (the evict hook is never called).
 */

typedef enum lkv_redis_link {
    LKV_REDIS_LINK_CONNECTING = 0, /* no seed has answered yet and none has failed */
    LKV_REDIS_LINK_UP = 1,         /* every node that owns slots is connected */
    LKV_REDIS_LINK_DEGRADED = 2,   /* some of them are not */
    LKV_REDIS_LINK_DOWN = 3        /* none is (or no seed answered) */
} lkv_redis_link;

/* "connecting", "up", "degraded", "down"; NULL outside the enum. */
const char *lkv_redis_link_name(lkv_redis_link l);

typedef struct lkv_redis_config {
    const char *const *seeds; /* "redis://HOST:PORT" (HOST may be [IPv6]); >= 1 */
    size_t nseeds;
    const char *password_file;   /* NULL: no AUTH; else AUTH with its first line */
    unsigned connect_timeout_ms; /* default 1000 */
    unsigned op_timeout_ms;      /* a reply later than this drops the connection; default 2000 */
    unsigned backoff_min_ms;     /* reconnect delay after a failure, doubled per failure; 100 */
    unsigned backoff_max_ms;     /* ... up to this; default 5000 */
    unsigned max_redirects;      /* MOVED/ASK followed per request; default 5 */
    uint64_t queue_bytes;        /* 0: write-through (default); else the write-back bound,
                                    charged per block as container + namespace + key */
} lkv_redis_config;

typedef struct lkv_redis_stats {
    lkv_redis_link link;
    int cluster;            /* 1: Redis Cluster, 0: a single server, -1: not known yet */
    unsigned nodes;         /* nodes known (seeds and slot owners) */
    unsigned nodes_up;      /* connected now */
    uint64_t moved;         /* MOVED replies followed */
    uint64_t ask;           /* ASK replies followed */
    uint64_t map_refreshes; /* slot maps (or the single-server answer) taken */
    uint64_t connects;      /* connections established */
    uint64_t disconnects;   /* connections lost or refused */
    uint64_t timeouts;      /* connections dropped for a late connect or reply */
    uint64_t unavailable;   /* requests failed with ERR_UNAVAILABLE */
    char last_error[256];   /* the last connection-level error, "" if none */
    /* Write-back (all 0 in write-through): */
    uint64_t queue_limit;   /* queue_bytes */
    uint64_t queued_blocks; /* waiting for (or being written to) Redis now */
    uint64_t queued_bytes;
    uint64_t written_back; /* queued blocks Redis acknowledged */
    uint64_t lost_blocks;  /* remote copies dropped: queue overflow, a write Redis
                              refused, or still queued at close */
    uint64_t lost_bytes;
    uint64_t tombstones;         /* queued DELs for keys whose newer value was lost, so
                                    Redis' older copy is never served */
    uint64_t tombstones_dropped; /* tombstones the queue had no room for (an older
                                    copy in Redis may then be served again) */
} lkv_redis_stats;

/* Fills the defaults above (seeds NULL: must be set). */
void lkv_redis_config_defaults(lkv_redis_config *cfg);

/* Longest namespace and key the Redis tier stores (ERR_INVALID_ARGUMENT above). */
#define LKV_REDIS_MAX_NS_LEN  4096u
#define LKV_REDIS_MAX_KEY_LEN 65536u

/*
 * Checks the configuration and starts connecting to the first seed; returns
 * at once (requests submitted before the first answer wait for it).
 * ERR_INVALID_ARGUMENT names the bad seed, timeout or password file;
 * ERR_PERMISSION: the password file cannot be read. An unreachable seed is
 * not an error here: requests then fail with ERR_UNAVAILABLE naming it, and
 * the tier keeps reconnecting with backoff.
 */
lkv_status lkv_tier_redis_create(void *uv_loop, const lkv_redis_config *cfg, lkv_tier **out,
                                 lkv_diag *diag);

/* The Redis-specific counters (t must come from lkv_tier_redis_create). */
void lkv_tier_redis_stats(const lkv_tier *t, lkv_redis_stats *out);

/* The Redis key of (ns, key): see README.md. Writes up to cap bytes to out
 * (out may be NULL when cap is 0) and returns the full length. */
size_t lkv_redis_key(const char *ns, size_t ns_len, const uint8_t *key, size_t key_len,
                     uint8_t *out, size_t cap);

/* The cluster slot (0..16383) of a Redis key: CRC16 (XMODEM) of its hash
 * tag when it has a non-empty {...}, else of the whole key, mod 16384. */
unsigned lkv_redis_key_slot(const uint8_t *key, size_t len);

#endif /* LKV_TIER_H */
