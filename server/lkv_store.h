/* SPDX-License-Identifier: Apache-2.0 */
/* lkv_store.h - blobs and the host-memory block store (store.c). */
#ifndef LKV_STORE_H
#define LKV_STORE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "lkv_codec.h"

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

#endif
