/* SPDX-License-Identifier: Apache-2.0 */
/*
 * host_tier.h - the host tier (server/store.c) driven synchronously, as the
 * tests use it: it completes every request before the submitting call
 * returns, so each helper checks that done() ran and returns its result.
 */
#ifndef LKV_TEST_HOST_TIER_H
#define LKV_TEST_HOST_TIER_H

#include <criterion/criterion.h>

#include "lkv_server.h"
#include "lkv_stack.h"

static void host_tier_done(lkv_tier_req *req)
{
    *(int *)req->ud = 1;
}

static inline lkv_tier *host_tier(uint64_t capacity)
{
    const lkv_host_config hc = {.capacity_bytes = capacity, .high_pct = 100, .low_pct = 100};
    lkv_tier *t = NULL;
    lkv_diag d;
    cr_assert_eq(lkv_tier_host_create(&hc, &t, &d), LKV_OK);
    return t;
}

static inline lkv_tier_req host_req(const char *ns, size_t ns_len, const uint8_t *key,
                                    size_t key_len, lkv_blob *blob, int *ran)
{
    *ran = 0;
    return (lkv_tier_req){.ns = ns,
                          .ns_len = ns_len,
                          .key = key,
                          .key_len = key_len,
                          .blob = blob,
                          .done = host_tier_done,
                          .ud = ran};
}

static inline lkv_status host_put(lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *key,
                                  size_t key_len, lkv_blob *blob, lkv_diag *diag)
{
    int ran;
    lkv_tier_req r = host_req(ns, ns_len, key, key_len, blob, &ran);
    lkv_tier_put(t, &r);
    cr_assert(ran, "the host tier completes a put before it returns");
    if (diag)
        *diag = r.diag;
    return r.status;
}

/* A new reference, or NULL on a miss. */
static inline lkv_blob *host_get(lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *key,
                                 size_t key_len)
{
    int ran;
    lkv_tier_req r = host_req(ns, ns_len, key, key_len, NULL, &ran);
    lkv_tier_get(t, &r);
    cr_assert(ran && r.status == LKV_OK);
    return r.found ? r.blob : NULL;
}

static inline int host_del(lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *key,
                           size_t key_len)
{
    int ran;
    lkv_tier_req r = host_req(ns, ns_len, key, key_len, NULL, &ran);
    lkv_tier_del(t, &r);
    cr_assert(ran && r.status == LKV_OK);
    return r.found;
}

static inline int host_has(const lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *key,
                           size_t key_len)
{
    return t->contains(t, ns, ns_len, key, key_len) == LKV_TIER_PRESENT;
}

#endif
