/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpu.c - the GPU tier: coded records resident in device memory
 * (lkv_tier_gpu.h).
 *
 * Design note. The tier reserves one arena of --gpu-mem-bytes at start and
 * carves blocks out of it with a first-fit allocator on the host, rather
 * than calling cudaMalloc per block: cudaFree synchronises the whole device
 * (it would stall every decode in flight on each eviction), cudaMalloc
 * costs tens of microseconds against a 27 KiB block's few microseconds of
 * copy, and a reservation made at start cannot later be starved by another
 * process on the card. The price is fragmentation: when no free range fits
 * a block although the bytes would, the tier evicts further least recently
 * used blocks until one does (their neighbours coalesce), and refuses with
 * ERR_LIMIT only when nothing is left to evict.
 *
 * Only the records live on the device, each range starting on a 256-byte
 * boundary so the kernels take their aligned path; the header (a few dozen
 * bytes: shape, parameters, CRCs) stays in the host index, so a Get plans
 * its reply without touching the device. A put verifies the whole container
 * (header and payload CRC) before it copies the records over, so every
 * resident block was checked once; device memory is ECC-protected from
 * then on and is not re-checked per Get.
 *
 * Puts, evictions (a device-to-host copy into a fresh blob for the tier
 * below) and deletes run on the loop thread and are synchronous; only the
 * decode of a Get goes to libuv's threadpool. A block being decoded holds a
 * reference, so evicting or replacing it only unlists it: its arena range is
 * freed when the last decode is back.
 */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "lkv_lru.h"
#include "lkv_status.h"
#include "lkv_store.h"
#include "lkv_tier_gpu.h"

/* ---- the arena allocator ------------------------------------------------ */

typedef struct range {
    struct range *next; /* by offset */
    uint64_t off, len;
} range;

struct lkv_gpu_arena {
    range *free; /* sorted by offset, never adjacent (coalesced) */
    uint64_t size, free_bytes;
};

lkv_gpu_arena *lkv_gpu_arena_create(uint64_t bytes)
{
    lkv_gpu_arena *a = calloc(1, sizeof *a);
    range *r = a ? malloc(sizeof *r) : NULL;
    if (!r) {
        free(a);
        return NULL;
    }
    a->size = a->free_bytes = bytes - bytes % LKV_GPU_ALIGN;
    *r = (range){NULL, 0, a->size};
    a->free = a->size ? r : NULL;
    if (!a->free)
        free(r);
    return a;
}

void lkv_gpu_arena_free(lkv_gpu_arena *a)
{
    if (!a)
        return;
    for (range *r = a->free, *n; r; r = n) {
        n = r->next;
        free(r);
    }
    free(a);
}

int lkv_gpu_arena_alloc(lkv_gpu_arena *a, uint64_t bytes, uint64_t *off)
{
    for (range **p = &a->free; *p; p = &(*p)->next) {
        range *r = *p;
        if (r->len < bytes)
            continue;
        *off = r->off;
        r->off += bytes;
        r->len -= bytes;
        if (r->len == 0) {
            *p = r->next;
            free(r);
        }
        a->free_bytes -= bytes;
        return 0;
    }
    return -1;
}

void lkv_gpu_arena_release(lkv_gpu_arena *a, uint64_t off, uint64_t bytes)
{
    range **p = &a->free, *prev = NULL;
    while (*p && (*p)->off < off) {
        prev = *p;
        p = &(*p)->next;
    }
    range *next = *p;
    a->free_bytes += bytes;
    if (prev && prev->off + prev->len == off) {
        prev->len += bytes;
        if (next && prev->off + prev->len == next->off) {
            prev->len += next->len;
            prev->next = next->next;
            free(next);
        }
        return;
    }
    if (next && off + bytes == next->off) {
        next->off = off;
        next->len += bytes;
        return;
    }
    range *r = malloc(sizeof *r);
    if (!r) {
        /* Out of host memory for one list node: the range is leaked to the
         * arena (unusable until restart) rather than crashing. */
        a->free_bytes -= bytes;
        return;
    }
    *r = (range){next, off, bytes};
    *p = r;
}

uint64_t lkv_gpu_arena_free_bytes(const lkv_gpu_arena *a)
{
    return a->free_bytes;
}

uint64_t lkv_gpu_arena_largest(const lkv_gpu_arena *a)
{
    uint64_t m = 0;
    for (const range *r = a->free; r; r = r->next)
        if (r->len > m)
            m = r->len;
    return m;
}

/* ---- the tier ----------------------------------------------------------- */

typedef struct blk {
    lkv_lru_node node; /* first */
    unsigned refs;     /* the index's (while listed) + one per decode in flight */
    int indexed;
    int pinned;           /* left the index while decodes held it: counted in gpu.pinned */
    uint64_t off, charge; /* arena range */
    lkv_container_info info;
    uint8_t *hdr; /* info.header_bytes bytes, host */
    uint32_t ns_len, key_len;
    uint8_t name[]; /* namespace bytes, then key bytes */
} blk;

typedef struct gpu {
    lkv_tier base;
    uv_loop_t *loop;
    lkv_gpu_dev_ops ops;
    void *dev_base;
    lkv_gpu_arena *arena;
    lkv_lru ix;
    uint64_t high, low;
    uint64_t pinned; /* charged bytes of unlisted blocks still being decoded */
    lkv_tier_evict_fn evict_fn;
    void *evict_ud;
    lkv_tier_stats st;
    int closing;
    lkv_tier_closed_fn closed;
    void *closed_ud;
} gpu;

typedef struct decode_job {
    uv_work_t work;
    gpu *g;
    blk *b;
    lkv_gpu_decode_req *r;
} decode_job;

static const char gpu_name[] = "gpu";

int lkv_tier_is_gpu(const lkv_tier *t)
{
    return t && t->name == gpu_name;
}

void lkv_tier_gpu_each(const lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *prefix,
                       size_t plen, int (*fn)(const uint8_t *key, size_t key_len, void *ud),
                       void *ud)
{
    const gpu *g = (const gpu *)t;
    for (const lkv_lru_node *n = g->ix.oldest; n; n = n->newer) {
        const blk *b = (const blk *)n;
        if (b->ns_len != ns_len || (ns_len && memcmp(b->name, ns, ns_len) != 0) ||
            b->key_len < plen || (plen && memcmp(b->name + ns_len, prefix, plen) != 0))
            continue;
        if (fn(b->name + ns_len, b->key_len, ud))
            return;
    }
}

typedef struct name_ref {
    const char *ns;
    size_t ns_len;
    const uint8_t *key;
    size_t key_len;
} name_ref;

static int same_name(const lkv_lru_node *n, const void *ctx)
{
    const blk *b = (const blk *)n;
    const name_ref *r = ctx;
    return b->ns_len == r->ns_len && b->key_len == r->key_len &&
           memcmp(b->name, r->ns, r->ns_len) == 0 &&
           memcmp(b->name + r->ns_len, r->key, r->key_len) == 0;
}

static blk *find(const gpu *g, const char *ns, size_t ns_len, const uint8_t *key, size_t key_len)
{
    const name_ref r = {ns, ns_len, key, key_len};
    return (blk *)*lkv_lru_find(&g->ix, lkv_lru_hash(ns, ns_len, key, key_len), same_name, &r);
}

/* At least one unit, so a block of no vectors still owns a range. */
static uint64_t charge_of(uint64_t record_bytes)
{
    const uint64_t c = (record_bytes + LKV_GPU_ALIGN - 1) / LKV_GPU_ALIGN * LKV_GPU_ALIGN;
    return c ? c : LKV_GPU_ALIGN;
}

static void *dev_at(const gpu *g, uint64_t off)
{
    return (uint8_t *)g->dev_base + off;
}

static void maybe_finish_close(gpu *g);

static void blk_unref(gpu *g, blk *b)
{
    if (--b->refs)
        return;
    if (b->charge)
        lkv_gpu_arena_release(g->arena, b->off, b->charge);
    if (b->pinned)
        g->pinned -= b->charge;
    free(b->hdr);
    free(b);
    maybe_finish_close(g);
}

/* Takes b out of the index; its range frees once no decode holds it. */
static void unindex(gpu *g, blk *b)
{
    lkv_lru_remove(&g->ix, &b->node);
    b->indexed = 0;
    g->st.used_bytes -= b->charge;
    g->st.blocks--;
    if (b->refs > 1) {
        g->pinned += b->charge;
        b->pinned = 1;
    }
    blk_unref(g, b);
}

/* The container of a resident block as a host blob (eviction, coded Get). */
static lkv_blob *to_host_blob(gpu *g, const blk *b, lkv_diag *diag, lkv_status *st)
{
    lkv_blob *h = lkv_blob_create(b->info.total_bytes);
    if (!h) {
        *st =
            lkv_diag_fail(diag, LKV_ERR_NOMEM, "gpu tier: out of host memory for a %zu-byte block",
                          b->info.total_bytes);
        return NULL;
    }
    memcpy(h->data, b->hdr, b->info.header_bytes);
    *st = g->ops.to_host(g->ops.ctx, h->data + b->info.header_bytes, dev_at(g, b->off),
                         b->info.total_bytes - b->info.header_bytes, diag);
    if (*st != LKV_OK) {
        lkv_blob_unref(h);
        return NULL;
    }
    return h;
}

static void evict(gpu *g, blk *b)
{
    g->st.evictions++;
    lkv_lru_unlist(&g->ix, &b->node); /* the hook sees it gone */
    if (g->evict_fn) {
        lkv_diag d;
        lkv_status st;
        lkv_blob *h = to_host_blob(g, b, &d, &st);
        if (!h)
            g->st.errors++; /* lost from the daemon; counted */
        g->evict_fn(&g->base, (const char *)b->name, b->ns_len, b->name + b->ns_len, b->key_len, h,
                    g->evict_ud);
        lkv_blob_unref(h);
    }
    unindex(g, b);
}

lkv_status lkv_tier_gpu_admit(const lkv_tier *t, uint64_t blob_len, lkv_diag *diag)
{
    const gpu *g = (const gpu *)t;
    const uint64_t c = charge_of(blob_len);
    if (c > g->high)
        return lkv_diag_fail(diag, LKV_ERR_LIMIT,
                             "block of %llu bytes exceeds the gpu tier capacity of %llu bytes",
                             (unsigned long long)blob_len, (unsigned long long)g->high);
    return LKV_OK;
}

static void done(lkv_tier_req *req, lkv_status st)
{
    req->status = st;
    req->done(req);
}

static void gpu_put(lkv_tier *t, lkv_tier_req *req)
{
    gpu *g = (gpu *)t;
    memset(&req->diag, 0, sizeof req->diag);
    if (g->closing) {
        done(req, lkv_diag_fail(&req->diag, LKV_ERR_UNAVAILABLE, "gpu tier: closing"));
        return;
    }
    lkv_container_info info;
    lkv_status st = lkv_container_parse(req->blob->data, req->blob->len, &info, &req->diag);
    /* The device decodes profile 1 records only: a profile 2 block is
     * refused here and so stays in host memory (the stack's rule for any
     * block this tier refuses), where the C codec serves it. */
    if (st == LKV_OK && lkv_profile_of(&info.params) != LKV_PROFILE_1)
        st = lkv_diag_fail(&req->diag, LKV_ERR_VARIANT,
                           "gpu tier: profile=%u blocks stay in host memory (no GPU decoder)",
                           lkv_profile_of(&info.params));
    if (st == LKV_OK)
        st = lkv_tier_gpu_admit(t, info.total_bytes - info.header_bytes, &req->diag);
    if (st == LKV_OK && (req->ns_len > UINT32_MAX || req->key_len > UINT32_MAX))
        st = lkv_diag_fail(&req->diag, LKV_ERR_INVALID_ARGUMENT, "gpu tier: key too long");
    blk *b = st == LKV_OK ? calloc(1, sizeof *b + req->ns_len + req->key_len) : NULL;
    uint8_t *hdr = b ? malloc(info.header_bytes) : NULL;
    if (st == LKV_OK && !hdr) {
        free(b);
        st = lkv_diag_fail(&req->diag, LKV_ERR_NOMEM, "gpu tier: out of memory for an entry");
    }
    if (st != LKV_OK) {
        done(req, st);
        return;
    }
    const uint64_t rec = info.total_bytes - info.header_bytes;
    b->charge = charge_of(rec);
    /* The old value goes first: its range may be what makes room. A put
     * that then fails leaves the key absent here, never stale; the stack
     * keeps the block in host memory in that case. */
    blk *old = find(g, req->ns, req->ns_len, req->key, req->key_len);
    if (old)
        unindex(g, old);
    if (g->st.used_bytes + b->charge > g->high)
        while (g->ix.oldest && g->st.used_bytes + b->charge > g->low)
            evict(g, (blk *)g->ix.oldest);
    while (lkv_gpu_arena_alloc(g->arena, b->charge, &b->off) != 0) {
        if (!g->ix.oldest) {
            free(hdr);
            free(b);
            done(req, lkv_diag_fail(&req->diag, LKV_ERR_LIMIT,
                                    "gpu tier: no free range of %llu bytes (largest %llu; %llu "
                                    "bytes held by decodes in flight)",
                                    (unsigned long long)rec,
                                    (unsigned long long)lkv_gpu_arena_largest(g->arena),
                                    (unsigned long long)g->pinned));
            return;
        }
        evict(g, (blk *)g->ix.oldest); /* fragmentation: free a neighbour */
    }
    st = rec ? g->ops.to_device(g->ops.ctx, dev_at(g, b->off), req->blob->data + info.header_bytes,
                                rec, &req->diag)
             : LKV_OK;
    if (st != LKV_OK) {
        lkv_gpu_arena_release(g->arena, b->off, b->charge);
        free(hdr);
        free(b);
        g->st.errors++;
        done(req, st);
        return;
    }
    memcpy(hdr, req->blob->data, info.header_bytes);
    b->hdr = hdr;
    b->info = info;
    b->refs = 1;
    b->indexed = 1;
    b->ns_len = (uint32_t)req->ns_len;
    b->key_len = (uint32_t)req->key_len;
    memcpy(b->name, req->ns, req->ns_len);
    memcpy(b->name + req->ns_len, req->key, req->key_len);
    b->node.hash = lkv_lru_hash(req->ns, req->ns_len, req->key, req->key_len);
    lkv_lru_insert(&g->ix, &b->node);
    lkv_lru_touch(&g->ix, &b->node);
    g->st.used_bytes += b->charge;
    g->st.blocks++;
    g->st.puts++;
    done(req, LKV_OK);
}

/* The generic get: the container copied to a host blob. */
static void gpu_get(lkv_tier *t, lkv_tier_req *req)
{
    gpu *g = (gpu *)t;
    memset(&req->diag, 0, sizeof req->diag);
    blk *b = g->closing ? NULL : find(g, req->ns, req->ns_len, req->key, req->key_len);
    req->found = 0;
    if (!b) {
        g->st.misses++;
        done(req, LKV_OK);
        return;
    }
    lkv_status st;
    req->blob = to_host_blob(g, b, &req->diag, &st);
    if (!req->blob) {
        g->st.errors++;
        done(req, st);
        return;
    }
    g->st.hits++;
    lkv_lru_touch(&g->ix, &b->node);
    req->found = 1;
    done(req, LKV_OK);
}

static void gpu_del(lkv_tier *t, lkv_tier_req *req)
{
    gpu *g = (gpu *)t;
    memset(&req->diag, 0, sizeof req->diag);
    blk *b = find(g, req->ns, req->ns_len, req->key, req->key_len);
    req->found = b != NULL;
    if (b)
        unindex(g, b);
    done(req, LKV_OK);
}

static int gpu_contains(const lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *key,
                        size_t key_len)
{
    return find((const gpu *)t, ns, ns_len, key, key_len) ? LKV_TIER_PRESENT : LKV_TIER_ABSENT;
}

static void gpu_stats(const lkv_tier *t, lkv_tier_stats *out)
{
    *out = ((const gpu *)t)->st;
}

static void gpu_set_evict_hook(lkv_tier *t, lkv_tier_evict_fn fn, void *ud)
{
    gpu *g = (gpu *)t;
    g->evict_fn = fn;
    g->evict_ud = ud;
}

int lkv_tier_gpu_info(const lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *key,
                      size_t key_len, lkv_container_info *info)
{
    const blk *b = find((const gpu *)t, ns, ns_len, key, key_len);
    if (!b)
        return 0;
    *info = b->info;
    return 1;
}

uint64_t lkv_tier_gpu_pinned_bytes(const lkv_tier *t)
{
    return ((const gpu *)t)->pinned;
}

/* ---- the decode of a Get ------------------------------------------------ */

static void decode_work(uv_work_t *w)
{
    decode_job *j = w->data;
    const gpu *g = j->g;
    const blk *b = j->b;
    lkv_gpu_decode_req *r = j->r;
    r->status = g->ops.decode(g->ops.ctx, &b->info.params, dev_at(g, b->off), b->info.n_vectors,
                              r->dtype, r->dst, &r->diag);
}

static void decode_after(uv_work_t *w, int status)
{
    decode_job *j = w->data;
    gpu *g = j->g;
    lkv_gpu_decode_req *r = j->r;
    if (status != 0 && r->status == LKV_OK) /* uv_cancel: never called by the tier */
        r->status = lkv_diag_fail(&r->diag, LKV_ERR_INTERNAL, "gpu tier: decode cancelled");
    if (r->status != LKV_OK)
        g->st.errors++;
    g->st.inflight--;
    blk_unref(g, j->b);
    free(j);
    r->done(r);
}

void lkv_tier_gpu_decode(lkv_tier *t, lkv_gpu_decode_req *r)
{
    gpu *g = (gpu *)t;
    memset(&r->diag, 0, sizeof r->diag);
    r->status = LKV_OK;
    blk *b = g->closing ? NULL : find(g, r->ns, r->ns_len, r->key, r->key_len);
    r->found = b != NULL;
    if (!b) {
        g->st.misses++;
        r->done(r);
        return;
    }
    r->info = b->info;
    const size_t need = (size_t)b->info.n_vectors * b->info.params.dim * lkv_dtype_size(r->dtype);
    decode_job *j = NULL;
    r->status = lkv_dtype_check((int)r->dtype, &r->diag);
    if (r->status == LKV_OK && r->dst_cap < need)
        r->status = lkv_diag_fail(&r->diag, LKV_ERR_BUFFER_SMALL,
                                  "gpu tier: decode buffer of %zu bytes, tensor needs %zu",
                                  r->dst_cap, need);
    else if (r->status == LKV_OK && !(j = calloc(1, sizeof *j)))
        r->status = lkv_diag_fail(&r->diag, LKV_ERR_NOMEM, "gpu tier: out of memory for a decode");
    if (r->status != LKV_OK) {
        r->done(r);
        return;
    }
    g->st.hits++;
    g->st.inflight++;
    lkv_lru_touch(&g->ix, &b->node);
    b->refs++;
    *j = (decode_job){.g = g, .b = b, .r = r};
    j->work.data = j;
    const int e = uv_queue_work(g->loop, &j->work, decode_work, decode_after);
    if (e != 0) {
        g->st.inflight--;
        free(j);
        r->status = lkv_diag_fail(&r->diag, LKV_ERR_INTERNAL, "gpu tier: uv_queue_work: %s",
                                  uv_strerror(e));
        blk_unref(g, b);
        r->done(r);
    }
}

/* ---- life --------------------------------------------------------------- */

static void gpu_free(gpu *g)
{
    if (g->dev_base)
        g->ops.arena_free(g->ops.ctx, g->dev_base);
    lkv_gpu_arena_free(g->arena);
    lkv_lru_fini(&g->ix);
    free(g);
}

static void maybe_finish_close(gpu *g)
{
    if (!g->closing || g->st.inflight || g->pinned || g->st.blocks)
        return;
    lkv_tier_closed_fn closed = g->closed;
    void *ud = g->closed_ud;
    gpu_free(g);
    if (closed)
        closed(ud);
}

static void gpu_close(lkv_tier *t, lkv_tier_closed_fn closed, void *ud)
{
    gpu *g = (gpu *)t;
    g->closed = closed;
    g->closed_ud = ud;
    g->evict_fn = NULL;
    /* closing is set after the loop, so no unindex frees the tier under it;
     * blocks held by decodes in flight free the tier when the last is back. */
    while (g->ix.oldest)
        unindex(g, (blk *)g->ix.oldest);
    g->closing = 1;
    maybe_finish_close(g);
}

lkv_status lkv_tier_gpu_create(void *uv_loop, const lkv_gpu_config *cfg, lkv_tier **out,
                               lkv_diag *diag)
{
    *out = NULL;
    if (cfg->capacity_bytes < LKV_GPU_ALIGN || cfg->low_pct < 1 || cfg->low_pct > cfg->high_pct ||
        cfg->high_pct > 100)
        return lkv_diag_fail(diag, LKV_ERR_INVALID_ARGUMENT,
                             "gpu tier: capacity %llu bytes (at least %u), watermarks %u/%u%%",
                             (unsigned long long)cfg->capacity_bytes, LKV_GPU_ALIGN, cfg->high_pct,
                             cfg->low_pct);
    gpu *g = calloc(1, sizeof *g);
    if (!g)
        return lkv_diag_fail(diag, LKV_ERR_NOMEM, "gpu tier: out of memory");
    g->loop = uv_loop;
    g->ops = cfg->ops;
    g->arena = lkv_gpu_arena_create(cfg->capacity_bytes);
    if (lkv_lru_init(&g->ix) != 0 || !g->arena) {
        gpu_free(g);
        return lkv_diag_fail(diag, LKV_ERR_NOMEM, "gpu tier: out of memory");
    }
    const uint64_t size = cfg->capacity_bytes - cfg->capacity_bytes % LKV_GPU_ALIGN;
    const lkv_status st = g->ops.arena_alloc(g->ops.ctx, size, &g->dev_base, diag);
    if (st != LKV_OK) {
        g->dev_base = NULL;
        gpu_free(g);
        return st;
    }
    g->st.capacity_bytes = size;
    lkv_tier_watermarks(size, cfg->high_pct, cfg->low_pct, &g->high, &g->low);
    g->base = (lkv_tier){.name = gpu_name,
                         .put = gpu_put,
                         .get = gpu_get,
                         .del = gpu_del,
                         .contains = gpu_contains,
                         .stats = gpu_stats,
                         .set_evict_hook = gpu_set_evict_hook,
                         .close = gpu_close};
    *out = &g->base;
    return LKV_OK;
}
