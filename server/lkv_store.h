/* SPDX-License-Identifier: Apache-2.0 */
/* lkv_store.h - blobs: the coded containers the tiers hold (store.c). */
#ifndef LKV_STORE_H
#define LKV_STORE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "lkv_codec.h"

/*
 * An immutable, reference-counted byte buffer holding one coded container.
 * Each tier holding it has one reference; a Get in flight holds another, so
 * eviction or replacement never frees bytes a worker is still decoding.
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
/* Cuts an unshared blob of lkv_blob_create to its first len bytes (profile
 * 2 encodes into a worst-case blob, then keeps the bytes it wrote) and
 * returns it; the blob may move. len <= b->len. */
lkv_blob *lkv_blob_shrink(lkv_blob *b, size_t len);
lkv_blob *lkv_blob_ref(lkv_blob *b);
void lkv_blob_unref(lkv_blob *b);

#endif
