/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_lru.h - the index every tier keeps (lru.c): a chained hash table of
 * intrusive nodes plus a recency list, most recent first.
 *
 * A tier embeds lkv_lru_node first in its own entry and compares keys
 * itself (the eq callback of lkv_lru_find), so the host tier (namespace and
 * key bytes), the SSD tier (a 128-bit file name hash) and the Redis tier's
 * write-back queue (its list is the queue, oldest first) share one table.
 * A node can be in the table without being on the list (the SSD tier keeps
 * a slot for a key whose write is in flight). Loop thread only; no lock.
 */
#ifndef LKV_LRU_H
#define LKV_LRU_H

#include <stddef.h>
#include <stdint.h>

typedef struct lkv_lru_node {
    struct lkv_lru_node *chain;         /* next in the bucket */
    struct lkv_lru_node *newer, *older; /* recency list, while listed */
    uint64_t hash;
} lkv_lru_node;

typedef struct lkv_lru {
    lkv_lru_node **buckets;
    size_t nbuckets; /* power of two */
    size_t count;    /* nodes in the table */
    lkv_lru_node *newest, *oldest;
} lkv_lru;

/* 0, or -1 when out of memory. */
int lkv_lru_init(lkv_lru *t);
/* Frees the buckets; the nodes are the caller's. */
void lkv_lru_fini(lkv_lru *t);
/* The link pointing at the first node of hash h that eq(node, ctx) accepts,
 * or at the NULL that ends its bucket (where lkv_lru_insert would put it). */
lkv_lru_node **lkv_lru_find(const lkv_lru *t, uint64_t h,
                            int (*eq)(const lkv_lru_node *n, const void *ctx), const void *ctx);
/* Adds n (n->hash set) to the table, not to the list. */
void lkv_lru_insert(lkv_lru *t, lkv_lru_node *n);
/* Takes n out of the table and off the list. */
void lkv_lru_remove(lkv_lru *t, lkv_lru_node *n);
/* Makes n the most recent, listing it if it was not. */
void lkv_lru_touch(lkv_lru *t, lkv_lru_node *n);
/* Takes n off the list (nothing if it is not on it). */
void lkv_lru_unlist(lkv_lru *t, lkv_lru_node *n);

/* FNV-1a over the namespace length (4 bytes, little-endian), the namespace
 * and the key, then a full-avalanche mix (splitmix64's), so the low bits
 * used for the bucket depend on every input byte. It names blocks outside
 * the daemon too (the SSD tier's file names, the Redis keys' hash tags):
 * changing it orphans what those tiers hold. */
uint64_t lkv_lru_hash(const char *ns, size_t ns_len, const uint8_t *key, size_t key_len);

#endif
