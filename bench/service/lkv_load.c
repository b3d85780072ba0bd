/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_load.c - one client's Put/Get load against latticekvd (lkv_load.h).
 * service_bench's latticekv cells and `latticekv bench` both go through
 * these calls, so they move the same blocks the same way and check the
 * answers alike.
 */
#include "lkv_load.h"

#include "lkv_bench.h"
#include "lkv_codec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lkv_load_fill_kv(uint16_t *dst, size_t tokens, size_t heads, size_t dim, uint64_t seed)
{
    const size_t ch = heads * dim;
    double *scale = malloc(2 * ch * sizeof *scale);
    if (!scale)
        return -1;
    lkv_bench_rng r;
    lkv_bench_rng_seed(&r, seed);
    for (size_t i = 0; i < 2 * ch; i++)
        scale[i] = exp(0.5 * lkv_bench_rng_normal(&r));
    for (size_t i = 0; i < ch; i += 37)
        scale[i] *= 20.0; /* key outlier channels */
    for (size_t kv = 0; kv < 2; kv++) {
        const double offset = kv == 0 ? 0.5 : 0.0;
        for (size_t t = 0; t < tokens; t++)
            for (size_t c = 0; c < ch; c++) {
                const double x = lkv_bench_rng_normal(&r) * scale[kv * ch + c] + offset;
                dst[(kv * tokens + t) * ch + c] = lkv_f32_to_bf16((float)x);
            }
    }
    free(scale);
    return 0;
}

void lkv_load_block_tensor(lkv_tensor *t, uint16_t *data, size_t tokens, size_t heads, size_t dim)
{
    memset(t, 0, sizeof *t);
    t->dtype = LKV_DTYPE_BF16;
    t->ndim = 4;
    t->shape[0] = 2;
    t->shape[1] = tokens;
    t->shape[2] = heads;
    t->shape[3] = dim;
    t->data = data;
    t->data_bytes = 2 * tokens * heads * dim * sizeof *data;
}

int lkv_load_init(lkv_load *l, const lkv_load_spec *spec, lkv_client *c, const char *prefix,
                  uint64_t seed)
{
    memset(l, 0, sizeof *l);
    l->spec = spec;
    l->client = c;
    l->nkeys = spec->stream ? spec->stream : 1;
    const size_t elems = 2 * spec->tokens * spec->heads * spec->dim;
    l->data = malloc(elems * sizeof *l->data);
    l->names = calloc(l->nkeys, sizeof *l->names);
    l->keys = calloc(l->nkeys, sizeof *l->keys);
    l->in = calloc(l->nkeys, sizeof *l->in);
    l->out = calloc(l->nkeys, sizeof *l->out);
    if (!l->data || !l->names || !l->keys || !l->in || !l->out) {
        l->err.code = LKV_RPC_RESOURCE_EXHAUSTED;
        snprintf(l->err.msg, sizeof l->err.msg, "out of memory for a %zu-element block x %zu keys",
                 elems, l->nkeys);
        return l->err.code;
    }
    if (lkv_load_fill_kv(l->data, spec->tokens, spec->heads, spec->dim, seed)) {
        l->err.code = LKV_RPC_RESOURCE_EXHAUSTED;
        snprintf(l->err.msg, sizeof l->err.msg, "out of memory for the channel scales");
        return l->err.code;
    }
    lkv_tensor t;
    lkv_load_block_tensor(&t, l->data, spec->tokens, spec->heads, spec->dim);
    l->block_bytes = t.data_bytes;
    for (size_t j = 0; j < l->nkeys; j++) {
        snprintf(l->names[j], sizeof l->names[j], "%s-%zu", prefix, j);
        l->keys[j] = (lkv_key){l->names[j], strlen(l->names[j])};
        l->in[j] = t;
    }
    return LKV_RPC_OK;
}

/* Prefixes l->err's message with the call's name. */
static int failed(lkv_load *l, const char *call, int rc)
{
    char msg[sizeof l->err.msg];
    memcpy(msg, l->err.msg, sizeof msg);
    msg[sizeof msg - 1] = '\0';
    const int room = (int)(sizeof l->err.msg - strlen(call) - 3); /* ": " and the NUL */
    snprintf(l->err.msg, sizeof l->err.msg, "%s: %.*s", call, room > 0 ? room : 0, msg);
    l->err.code = rc;
    return rc;
}

int lkv_load_put(lkv_load *l)
{
    const lkv_load_spec *s = l->spec;
    const int rc = s->stream ? lkv_client_put_many(l->client, s->ns, l->keys, l->in, l->nkeys,
                                                   s->params, NULL, NULL, &l->err)
                             : lkv_client_put(l->client, s->ns, l->keys[0], &l->in[0], s->params,
                                              NULL, &l->err);
    return rc ? failed(l, s->stream ? "put_many" : "put", rc) : LKV_RPC_OK;
}

int lkv_load_get(lkv_load *l)
{
    const lkv_load_spec *s = l->spec;
    int rc = s->stream ? lkv_client_get_many(l->client, s->ns, l->keys, l->nkeys, LKV_DTYPE_BF16,
                                             l->out, NULL, &l->err)
                       : lkv_client_get(l->client, s->ns, l->keys[0], LKV_DTYPE_BF16, l->out, NULL,
                                        &l->err);
    size_t short_block = l->nkeys;
    for (size_t j = 0; j < l->nkeys; j++) {
        if (!rc && short_block == l->nkeys && l->out[j].data_bytes != l->block_bytes)
            short_block = j;
        lkv_tensor_clear(&l->out[j]);
    }
    const char *call = s->stream ? "get_many" : "get";
    if (rc)
        return failed(l, call, rc);
    if (short_block < l->nkeys) {
        l->err.code = LKV_RPC_DATA_LOSS;
        snprintf(l->err.msg, sizeof l->err.msg, "%s: key %s came back with the wrong size", call,
                 l->names[short_block]);
        return l->err.code;
    }
    return LKV_RPC_OK;
}

size_t lkv_load_call_bytes(const lkv_load *l)
{
    return l->block_bytes * l->nkeys;
}

void lkv_load_free(lkv_load *l)
{
    free(l->data);
    free(l->names);
    free(l->keys);
    free(l->in);
    free(l->out);
    memset(l, 0, sizeof *l);
}
