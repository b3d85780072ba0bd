/* SPDX-License-Identifier: Apache-2.0 */
/*
 * store.c - the host-memory tier: (namespace, key) -> coded container, LRU.
 *
 * Design note. A chained hash table finds entries; an intrusive doubly
 * linked list orders them from most to least recently used (Get moves an
 * entry to the front, eviction takes from the back). Values are
 * reference-counted blobs: the store owns one reference, and a Get in flight
 * holds another while a worker decodes, so replacing or evicting a key never
 * frees bytes still being read. The store is used from the loop thread only
 * and takes no lock; blob reference counts are atomic because workers drop
 * theirs.
 *
 * Accounting: an entry costs its container bytes plus the namespace and key
 * bytes, which is what a client can reason about. A put plans its evictions
 * before changing anything: if the block cannot fit even in an empty tier it
 * fails with ERR_LIMIT and the previous value of the key stays in place.
 */
#include <stdlib.h>
#include <string.h>

#include "lkv_store.h"
#include "lkv_status.h"

lkv_blob *lkv_blob_create(size_t len)
{
    lkv_blob *b = malloc(sizeof *b + (len ? len : 1));
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->len = len;
    b->data = (uint8_t *)(b + 1);
    b->base = NULL;
    return b;
}

lkv_blob *lkv_blob_adopt(void *base, uint8_t *data, size_t len)
{
    lkv_blob *b = malloc(sizeof *b);
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->len = len;
    b->data = data;
    b->base = base;
    return b;
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
    struct entry *chain;         /* next in the bucket */
    struct entry *newer, *older; /* LRU list */
    uint64_t hash;
    lkv_blob *blob;
    uint64_t charge;
    uint32_t ns_len;
    uint32_t key_len;
    uint8_t name[]; /* namespace bytes, then key bytes */
} entry;

struct lkv_store {
    entry **buckets;
    size_t nbuckets; /* power of two */
    entry *newest, *oldest;
    lkv_store_stats st;
};

/* FNV-1a over the namespace, a separator and the key; then a final mix so
 * the low bits used for the bucket depend on every input byte. */
static uint64_t hash_key(const char *ns, size_t ns_len, const uint8_t *key, size_t key_len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < ns_len; i++)
        h = (h ^ (uint8_t)ns[i]) * 0x100000001b3ull;
    h = (h ^ 0xffu) * 0x100000001b3ull;
    for (size_t i = 0; i < key_len; i++)
        h = (h ^ key[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

lkv_store *lkv_store_create(uint64_t capacity_bytes)
{
    lkv_store *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->nbuckets = 1024;
    s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
    if (!s->buckets) {
        free(s);
        return NULL;
    }
    s->st.capacity_bytes = capacity_bytes;
    return s;
}

static void lru_unlink(lkv_store *s, entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        s->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        s->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push_front(lkv_store *s, entry *e)
{
    e->newer = NULL;
    e->older = s->newest;
    if (s->newest)
        s->newest->newer = e;
    s->newest = e;
    if (!s->oldest)
        s->oldest = e;
}

static entry **find_slot(const lkv_store *s, uint64_t h, const char *ns, size_t ns_len,
                         const uint8_t *key, size_t key_len)
{
    entry **pp = &s->buckets[h & (s->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->chain) {
        const entry *e = *pp;
        if (e->hash == h && e->ns_len == ns_len && e->key_len == key_len &&
            memcmp(e->name, ns, ns_len) == 0 && memcmp(e->name + ns_len, key, key_len) == 0)
            return pp;
    }
    return pp;
}

/* Unlinks *pp from its bucket and the LRU list and frees it. */
static void remove_at(lkv_store *s, entry **pp)
{
    entry *e = *pp;
    *pp = e->chain;
    lru_unlink(s, e);
    s->st.used_bytes -= e->charge;
    s->st.blocks--;
    lkv_blob_unref(e->blob);
    free(e);
}

static void remove_entry(lkv_store *s, entry *e)
{
    entry **pp = &s->buckets[e->hash & (s->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->chain;
    remove_at(s, pp);
}

static void grow(lkv_store *s)
{
    const size_t n = s->nbuckets * 2;
    entry **nb = calloc(n, sizeof *nb);
    if (!nb)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < s->nbuckets; i++) {
        entry *e = s->buckets[i];
        while (e) {
            entry *next = e->chain;
            entry **slot = &nb[e->hash & (n - 1)];
            e->chain = *slot;
            *slot = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = nb;
    s->nbuckets = n;
}

lkv_status lkv_store_put(lkv_store *s, const char *ns, size_t ns_len, const uint8_t *key,
                         size_t key_len, lkv_blob *blob, lkv_diag *diag)
{
    const uint64_t charge = (uint64_t)blob->len + ns_len + key_len;
    if (charge > s->st.capacity_bytes) {
        return lkv_diag_fail(diag, LKV_ERR_LIMIT,
                             "block of %llu bytes exceeds the host tier capacity of %llu bytes",
                             (unsigned long long)charge, (unsigned long long)s->st.capacity_bytes);
    }
    if (ns_len > UINT32_MAX || key_len > UINT32_MAX)
        return LKV_ERR_LIMIT;
    entry *e = malloc(sizeof *e + ns_len + key_len);
    if (!e) {
        return lkv_diag_fail(diag, LKV_ERR_NOMEM, "out of memory for a store entry");
    }
    const uint64_t h = hash_key(ns, ns_len, key, key_len);
    /* Nothing can fail from here on, so replacing the old value is safe. */
    entry **old = find_slot(s, h, ns, ns_len, key, key_len);
    if (*old)
        remove_at(s, old);
    while (s->st.used_bytes + charge > s->st.capacity_bytes && s->oldest) {
        remove_entry(s, s->oldest);
        s->st.evictions++;
    }
    e->hash = h;
    e->blob = lkv_blob_ref(blob);
    e->charge = charge;
    e->ns_len = (uint32_t)ns_len;
    e->key_len = (uint32_t)key_len;
    memcpy(e->name, ns, ns_len);
    memcpy(e->name + ns_len, key, key_len);
    entry **slot = &s->buckets[h & (s->nbuckets - 1)];
    e->chain = *slot;
    *slot = e;
    lru_push_front(s, e);
    s->st.used_bytes += charge;
    s->st.blocks++;
    if (s->st.blocks > s->nbuckets)
        grow(s);
    return LKV_OK;
}

lkv_blob *lkv_store_get(lkv_store *s, const char *ns, size_t ns_len, const uint8_t *key,
                        size_t key_len)
{
    entry **pp = find_slot(s, hash_key(ns, ns_len, key, key_len), ns, ns_len, key, key_len);
    if (!*pp) {
        s->st.misses++;
        return NULL;
    }
    entry *e = *pp;
    s->st.hits++;
    lru_unlink(s, e);
    lru_push_front(s, e);
    return lkv_blob_ref(e->blob);
}

int lkv_store_contains(const lkv_store *s, const char *ns, size_t ns_len, const uint8_t *key,
                       size_t key_len)
{
    return *find_slot(s, hash_key(ns, ns_len, key, key_len), ns, ns_len, key, key_len) != NULL;
}

int lkv_store_delete(lkv_store *s, const char *ns, size_t ns_len, const uint8_t *key,
                     size_t key_len)
{
    entry **pp = find_slot(s, hash_key(ns, ns_len, key, key_len), ns, ns_len, key, key_len);
    if (!*pp)
        return 0;
    remove_at(s, pp);
    return 1;
}

void lkv_store_get_stats(const lkv_store *s, lkv_store_stats *out)
{
    *out = s->st;
}

void lkv_store_free(lkv_store *s)
{
    if (!s)
        return;
    while (s->oldest)
        remove_entry(s, s->oldest);
    free(s->buckets);
    free(s);
}
