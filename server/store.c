/* SPDX-License-Identifier: Apache-2.0 */
/*
 * store.c - blobs, and the host-memory tier ("host" behind lkv_tier.h):
 * (namespace, key) -> coded container, LRU.
 *
 * Design note. The index is lkv_lru (a hash table and a recency list, shared
 * with the SSD tier). Values are reference-counted blobs: the tier owns one
 * reference, and a Get in flight holds another while a worker decodes, so
 * replacing or evicting a key never frees bytes still being read. The tier
 * is synchronous: every request completes before the submitting call
 * returns. Loop thread only, no lock; blob reference counts are atomic
 * because workers drop theirs.
 *
 * Accounting: an entry costs its container bytes plus the namespace and key
 * bytes, which is what a client can reason about. A put checks before it
 * changes anything (lkv_tier_host_admit): a block that cannot fit even in an
 * empty tier, or that would take its namespace over its quota, fails with
 * ERR_LIMIT and the previous value of the key stays in place.
 */
#include <stdlib.h>
#include <string.h>

#include "lkv_lru.h"
#include "tier/lkv_tier.h"

static lkv_blob *blob_init(lkv_blob *b, void *base, uint8_t *data, size_t len)
{
    atomic_init(&b->refs, 1);
    b->len = len;
    b->data = data;
    b->base = base;
    return b;
}

lkv_blob *lkv_blob_create(size_t len)
{
    lkv_blob *b = malloc(sizeof *b + (len ? len : 1));
    return b ? blob_init(b, NULL, (uint8_t *)(b + 1), len) : NULL;
}

lkv_blob *lkv_blob_shrink(lkv_blob *b, size_t len)
{
    lkv_blob *n = realloc(b, sizeof *b + (len ? len : 1));
    if (!n) /* a smaller block that cannot move stays where it is */
        n = b;
    n->len = len;
    n->data = (uint8_t *)(n + 1);
    return n;
}

lkv_blob *lkv_blob_adopt(void *base, uint8_t *data, size_t len)
{
    lkv_blob *b = malloc(sizeof *b);
    return b ? blob_init(b, base, data, len) : NULL;
}

lkv_blob *lkv_blob_ref(lkv_blob *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

void lkv_blob_unref(lkv_blob *b)
{
    if (!b)
        return;
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
        free(b->base);
        free(b);
    }
}

typedef struct entry {
    lkv_lru_node node; /* first */
    lkv_blob *blob;
    uint64_t charge;
    int quota; /* index into host.quota, or -1 */
    uint32_t ns_len;
    uint32_t key_len;
    uint8_t name[]; /* namespace bytes, then key bytes */
} entry;

typedef struct host {
    lkv_tier base;
    lkv_lru ix;
    uint64_t high, low;
    lkv_host_quota *quota; /* copies of the configured quotas */
    uint64_t *quota_used;
    size_t nquota;
    lkv_tier_evict_fn evict_fn;
    void *evict_ud;
    lkv_tier_stats st;
} host;

typedef struct name_ref {
    const char *ns;
    size_t ns_len;
    const uint8_t *key;
    size_t key_len;
} name_ref;

static int same_name(const lkv_lru_node *n, const void *ctx)
{
    const entry *e = (const entry *)n;
    const name_ref *r = ctx;
    return e->ns_len == r->ns_len && e->key_len == r->key_len &&
           memcmp(e->name, r->ns, r->ns_len) == 0 &&
           memcmp(e->name + r->ns_len, r->key, r->key_len) == 0;
}

static entry *find(const host *h, const char *ns, size_t ns_len, const uint8_t *key, size_t key_len)
{
    const name_ref r = {ns, ns_len, key, key_len};
    return (entry *)*lkv_lru_find(&h->ix, lkv_lru_hash(ns, ns_len, key, key_len), same_name, &r);
}

static int quota_of(const host *h, const char *ns, size_t ns_len)
{
    for (size_t i = 0; i < h->nquota; i++)
        if (h->quota[i].ns_len == ns_len && memcmp(h->quota[i].ns, ns, ns_len) == 0)
            return (int)i;
    return -1;
}

static void drop(host *h, entry *e)
{
    lkv_lru_remove(&h->ix, &e->node);
    h->st.used_bytes -= e->charge;
    h->st.blocks--;
    if (e->quota >= 0)
        h->quota_used[e->quota] -= e->charge;
    lkv_blob_unref(e->blob);
    free(e);
}

static void evict(host *h, entry *e)
{
    h->st.evictions++;
    lkv_lru_unlist(&h->ix, &e->node); /* the hook sees it gone */
    if (h->evict_fn)
        h->evict_fn(&h->base, (const char *)e->name, e->ns_len, e->name + e->ns_len, e->key_len,
                    e->blob, h->evict_ud);
    drop(h, e);
}

lkv_status lkv_tier_host_admit(const lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *key,
                               size_t key_len, uint64_t blob_len, lkv_diag *diag)
{
    const host *h = (const host *)t;
    const uint64_t charge = blob_len + ns_len + key_len;
    if (charge > h->high)
        return lkv_diag_fail(diag, LKV_ERR_LIMIT,
                             "block of %llu bytes exceeds the host tier capacity of %llu bytes",
                             (unsigned long long)charge, (unsigned long long)h->high);
    if (ns_len > UINT32_MAX || key_len > UINT32_MAX)
        return lkv_diag_fail(diag, LKV_ERR_INVALID_ARGUMENT, "host tier: key too long");
    const int q = quota_of(h, ns, ns_len);
    if (q < 0)
        return LKV_OK;
    const entry *old = find(h, ns, ns_len, key, key_len);
    const uint64_t after = h->quota_used[q] - (old ? old->charge : 0) + charge;
    if (after > h->quota[q].bytes)
        return lkv_diag_fail(diag, LKV_ERR_LIMIT,
                             "namespace \"%.*s\" would hold %llu bytes, over its quota of %llu "
                             "bytes (namespace-quota)",
                             ns_len < 64 ? (int)ns_len : 64, ns, (unsigned long long)after,
                             (unsigned long long)h->quota[q].bytes);
    return LKV_OK;
}

static void host_put(lkv_tier *t, lkv_tier_req *req)
{
    host *h = (host *)t;
    memset(&req->diag, 0, sizeof req->diag);
    lkv_status st = lkv_tier_host_admit(t, req->ns, req->ns_len, req->key, req->key_len,
                                        req->blob->len, &req->diag);
    entry *e = st == LKV_OK ? malloc(sizeof *e + req->ns_len + req->key_len) : NULL;
    if (st == LKV_OK && !e)
        st = lkv_diag_fail(&req->diag, LKV_ERR_NOMEM, "out of memory for a host tier entry");
    if (st != LKV_OK) {
        lkv_tier_done(req, st);
        return;
    }
    /* Nothing can fail from here on, so replacing the old value is safe. */
    entry *old = find(h, req->ns, req->ns_len, req->key, req->key_len);
    if (old)
        drop(h, old);
    e->charge = (uint64_t)req->blob->len + req->ns_len + req->key_len;
    if (h->st.used_bytes + e->charge > h->high)
        while (h->ix.oldest && h->st.used_bytes + e->charge > h->low)
            evict(h, (entry *)h->ix.oldest);
    e->node.hash = lkv_lru_hash(req->ns, req->ns_len, req->key, req->key_len);
    e->blob = lkv_blob_ref(req->blob);
    e->quota = quota_of(h, req->ns, req->ns_len);
    e->ns_len = (uint32_t)req->ns_len;
    e->key_len = (uint32_t)req->key_len;
    memcpy(e->name, req->ns, req->ns_len);
    memcpy(e->name + req->ns_len, req->key, req->key_len);
    lkv_lru_insert(&h->ix, &e->node);
    lkv_lru_touch(&h->ix, &e->node);
    h->st.used_bytes += e->charge;
    h->st.blocks++;
    h->st.puts++;
    if (e->quota >= 0)
        h->quota_used[e->quota] += e->charge;
    lkv_tier_done(req, LKV_OK);
}

static void host_get(lkv_tier *t, lkv_tier_req *req)
{
    host *h = (host *)t;
    entry *e = find(h, req->ns, req->ns_len, req->key, req->key_len);
    req->found = e != NULL;
    if (e) {
        h->st.hits++;
        lkv_lru_touch(&h->ix, &e->node);
        req->blob = lkv_blob_ref(e->blob);
    } else {
        h->st.misses++;
    }
    lkv_tier_done(req, LKV_OK);
}

static void host_del(lkv_tier *t, lkv_tier_req *req)
{
    host *h = (host *)t;
    entry *e = find(h, req->ns, req->ns_len, req->key, req->key_len);
    req->found = e != NULL;
    if (e)
        drop(h, e);
    lkv_tier_done(req, LKV_OK);
}

static int host_contains(const lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *key,
                         size_t key_len)
{
    return find((const host *)t, ns, ns_len, key, key_len) ? LKV_TIER_PRESENT : LKV_TIER_ABSENT;
}

static void host_stats(const lkv_tier *t, lkv_tier_stats *out)
{
    *out = ((const host *)t)->st;
}

static void host_set_evict_hook(lkv_tier *t, lkv_tier_evict_fn fn, void *ud)
{
    host *h = (host *)t;
    h->evict_fn = fn;
    h->evict_ud = ud;
}

static void host_free(host *h)
{
    while (h->ix.oldest)
        drop(h, (entry *)h->ix.oldest);
    lkv_lru_fini(&h->ix);
    for (size_t i = 0; i < h->nquota; i++)
        free((char *)h->quota[i].ns);
    free(h->quota);
    free(h->quota_used);
    free(h);
}

static void host_close(lkv_tier *t, lkv_tier_closed_fn closed, void *ud)
{
    host_free((host *)t);
    if (closed)
        closed(ud);
}

lkv_status lkv_tier_host_create(const lkv_host_config *cfg, lkv_tier **out, lkv_diag *diag)
{
    *out = NULL;
    if (cfg->capacity_bytes == 0 || cfg->low_pct < 1 || cfg->low_pct > cfg->high_pct ||
        cfg->high_pct > 100)
        return lkv_diag_fail(diag, LKV_ERR_INVALID_ARGUMENT,
                             "host tier: capacity %llu bytes, watermarks %u/%u%%",
                             (unsigned long long)cfg->capacity_bytes, cfg->high_pct, cfg->low_pct);
    host *h = calloc(1, sizeof *h);
    if (!h)
        return lkv_diag_fail(diag, LKV_ERR_NOMEM, "host tier: out of memory");
    const int ix_failed = lkv_lru_init(&h->ix);
    h->quota = calloc(cfg->nquotas + 1, sizeof *h->quota);
    h->quota_used = calloc(cfg->nquotas + 1, sizeof *h->quota_used);
    if (ix_failed || !h->quota || !h->quota_used) {
        host_free(h);
        return lkv_diag_fail(diag, LKV_ERR_NOMEM, "host tier: out of memory");
    }
    for (; h->nquota < cfg->nquotas; h->nquota++) {
        const lkv_host_quota *q = &cfg->quotas[h->nquota];
        char *ns = malloc(q->ns_len + 1);
        if (!ns) {
            host_free(h);
            return lkv_diag_fail(diag, LKV_ERR_NOMEM, "host tier: out of memory");
        }
        memcpy(ns, q->ns, q->ns_len);
        h->quota[h->nquota] = (lkv_host_quota){ns, q->ns_len, q->bytes};
    }
    h->st.capacity_bytes = cfg->capacity_bytes;
    lkv_tier_watermarks(cfg->capacity_bytes, cfg->high_pct, cfg->low_pct, &h->high, &h->low);
    h->base = (lkv_tier){.name = "host",
                         .put = host_put,
                         .get = host_get,
                         .del = host_del,
                         .contains = host_contains,
                         .stats = host_stats,
                         .set_evict_hook = host_set_evict_hook,
                         .close = host_close};
    *out = &h->base;
    return LKV_OK;
}

void lkv_tier_host_each(const lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *prefix,
                        size_t plen, int (*fn)(const uint8_t *key, size_t key_len, void *ud),
                        void *ud)
{
    const host *h = (const host *)t;
    /* The recency list holds every block of the host tier. */
    for (const lkv_lru_node *n = h->ix.oldest; n; n = n->newer) {
        const entry *e = (const entry *)n;
        /* (memcmp with a NULL pointer is undefined even for 0 bytes) */
        if (e->ns_len != ns_len || (ns_len && memcmp(e->name, ns, ns_len) != 0) ||
            e->key_len < plen || (plen && memcmp(e->name + ns_len, prefix, plen) != 0))
            continue;
        if (fn(e->name + ns_len, e->key_len, ud))
            return;
    }
}
