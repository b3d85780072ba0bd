/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_load.h - one client's share of a latticekvd load (library
 * lkv_bench_load), shared by service_bench and `latticekv bench`.
 *
 * A load is a KV-like bf16 block (K and V x tokens x heads x dim, see
 * lkv_load_fill_kv), the keys it is stored under and the calls that move
 * it: a unary Put / Get of one key, or with `stream` = N one PutStream /
 * GetStream of N keys holding the same block. The caller owns the
 * connection (an lkv_client, e.g. kept across several loads) and the loop
 * around the calls: service_bench runs each client for a fixed time, the
 * CLI for a number of requests. Each call here checks its outcome (a Get
 * must return every block at its full size), so a wrong answer cannot be
 * counted as a fast one.
 *
 * The library sits on the C client's public header and the codec's
 * (lkv_f32_to_bf16); it never sees gRPC. One lkv_load per thread.
 */
#ifndef LKV_LOAD_H
#define LKV_LOAD_H

#include "lkv_client.h"

#include <stddef.h>
#include <stdint.h>

/* What every client of a run does. */
typedef struct lkv_load_spec {
    const char *ns;                  /* namespace; NULL = the daemon's default */
    const lkv_client_params *params; /* NULL = the daemon's default */
    size_t tokens, heads, dim;       /* the block: [2][tokens][heads][dim] bf16 */
    size_t stream;                   /* blocks per PutStream/GetStream call; 0 = unary */
} lkv_load_spec;

/* One client's load; lkv_load_init fills it, lkv_load_free releases it. */
typedef struct lkv_load {
    const lkv_load_spec *spec;
    lkv_client *client; /* borrowed */
    uint16_t *data;     /* the block's values */
    size_t block_bytes; /* of one block */
    size_t nkeys;       /* stream ? stream : 1 */
    char (*names)[64];
    lkv_key *keys;
    lkv_tensor *in, *out; /* nkeys each: the block as sent, the blocks read back */
    lkv_client_error err; /* of the last failed call, its message prefixed by the call */
} lkv_load;

/*
 * Prepares a load on connection c: the block filled from `seed`, keys
 * "<prefix>-0" .. "<prefix>-<nkeys-1>". Returns LKV_RPC_OK, or
 * LKV_RPC_RESOURCE_EXHAUSTED with l->err saying what could not be
 * allocated (l is then safe to lkv_load_free).
 */
int lkv_load_init(lkv_load *l, const lkv_load_spec *spec, lkv_client *c, const char *prefix,
                  uint64_t seed);
/* Stores the block under every key (one Put, or one PutStream). Returns the
 * call's lkv_rpc_code; on failure l->err has the reason. */
int lkv_load_put(lkv_load *l);
/* Reads every key back as bf16 (one Get, or one GetStream) and checks each
 * block's size; a short block is LKV_RPC_DATA_LOSS. The blocks read are
 * freed before it returns. */
int lkv_load_get(lkv_load *l);
/* Bytes (bf16) one call moves one way: block_bytes x nkeys. */
size_t lkv_load_call_bytes(const lkv_load *l);
/* Frees what lkv_load_init allocated (not the connection); zeroes *l. */
void lkv_load_free(lkv_load *l);

/*
 * Fills dst[2][tokens][heads][dim] with bf16 values shaped like a KV block:
 * normal values times a per-channel log-normal scale; keys (dst's first
 * half) also get an outlier channel in 37 (x20) and an offset of 0.5 - the
 * shapes bench/quality's key data has. Deterministic in seed. Returns 0, or
 * -1 when the channel scales cannot be allocated (dst is then untouched).
 */
int lkv_load_fill_kv(uint16_t *dst, size_t tokens, size_t heads, size_t dim, uint64_t seed);

/* t describes the block at data ([2][tokens][heads][dim] bf16); t does not own it. */
void lkv_load_block_tensor(lkv_tensor *t, uint16_t *data, size_t tokens, size_t heads, size_t dim);

#endif /* LKV_LOAD_H */
