/* SPDX-License-Identifier: Apache-2.0 */
/*
 * testutil.h - helpers shared by the codec tests: a seeded PRNG (so every
 * test input is reproducible), synthetic KV-like data and SHA-256.
 */
#ifndef LKV_TESTUTIL_H
#define LKV_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "lkv_codec.h"

typedef struct lkv_rng {
    uint64_t s;
} lkv_rng;

uint64_t lkv_rng_next(lkv_rng *r);
double lkv_rng_uniform(lkv_rng *r); /* [0, 1) */
double lkv_rng_normal(lkv_rng *r);

/* n*dim standard-normal values times `scale`, stored as dtype dt (RNE). */
void *lkv_test_make(lkv_rng *r, lkv_dtype dt, size_t n, uint32_t dim, double scale);
/* Element i of a buffer of dtype dt as double. */
double lkv_test_get(lkv_dtype dt, const void *buf, size_t i);
/* Stores v as element i. */
void lkv_test_set(lkv_dtype dt, void *buf, size_t i, double v);

/* Reads a file of exactly `len` bytes into a malloc'd buffer; NULL if absent. */
void *lkv_test_read(const char *path, size_t *len);
/* Lower-case hex SHA-256 of buf into hex[65]. */
void lkv_test_sha256(const void *buf, size_t len, char hex[65]);

#endif
