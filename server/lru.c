/* SPDX-License-Identifier: Apache-2.0 */
/* lru.c - the hash table and recency list the tiers share (lkv_lru.h). */
#include <stdlib.h>

#include "lkv_lru.h"

int lkv_lru_init(lkv_lru *t)
{
    *t = (lkv_lru){.nbuckets = 1024, .buckets = calloc(1024, sizeof *t->buckets)};
    return t->buckets ? 0 : -1;
}

void lkv_lru_fini(lkv_lru *t)
{
    free(t->buckets);
    t->buckets = NULL;
}

lkv_lru_node **lkv_lru_find(const lkv_lru *t, uint64_t h,
                            int (*eq)(const lkv_lru_node *n, const void *ctx), const void *ctx)
{
    lkv_lru_node **pp = &t->buckets[h & (t->nbuckets - 1)];
    while (*pp && ((*pp)->hash != h || !eq(*pp, ctx)))
        pp = &(*pp)->chain;
    return pp;
}

static void grow(lkv_lru *t)
{
    const size_t n = t->nbuckets * 2;
    lkv_lru_node **nb = calloc(n, sizeof *nb);
    if (!nb)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (lkv_lru_node *e = t->buckets[i], *next; e; e = next) {
            next = e->chain;
            e->chain = nb[e->hash & (n - 1)];
            nb[e->hash & (n - 1)] = e;
        }
    }
    free(t->buckets);
    t->buckets = nb;
    t->nbuckets = n;
}

void lkv_lru_insert(lkv_lru *t, lkv_lru_node *n)
{
    lkv_lru_node **slot = &t->buckets[n->hash & (t->nbuckets - 1)];
    n->chain = *slot;
    n->newer = n->older = NULL;
    *slot = n;
    if (++t->count > t->nbuckets)
        grow(t);
}

void lkv_lru_unlist(lkv_lru *t, lkv_lru_node *n)
{
    if (!n->newer && !n->older && t->newest != n)
        return;
    if (n->newer)
        n->newer->older = n->older;
    else
        t->newest = n->older;
    if (n->older)
        n->older->newer = n->newer;
    else
        t->oldest = n->newer;
    n->newer = n->older = NULL;
}

void lkv_lru_remove(lkv_lru *t, lkv_lru_node *n)
{
    lkv_lru_unlist(t, n);
    lkv_lru_node **pp = &t->buckets[n->hash & (t->nbuckets - 1)];
    while (*pp != n)
        pp = &(*pp)->chain;
    *pp = n->chain;
    t->count--;
}

void lkv_lru_touch(lkv_lru *t, lkv_lru_node *n)
{
    lkv_lru_unlist(t, n);
    n->older = t->newest;
    if (t->newest)
        t->newest->newer = n;
    t->newest = n;
    if (!t->oldest)
        t->oldest = n;
}

uint64_t lkv_lru_hash(const char *ns, size_t ns_len, const uint8_t *key, size_t key_len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < 4; i++)
        h = (h ^ (uint8_t)(ns_len >> (8 * i))) * 0x100000001b3ull;
    for (size_t i = 0; i < ns_len; i++)
        h = (h ^ (uint8_t)ns[i]) * 0x100000001b3ull;
    for (size_t i = 0; i < key_len; i++)
        h = (h ^ key[i]) * 0x100000001b3ull;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}
