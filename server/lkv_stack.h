/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_stack.h - the daemon's tiers stacked: host -> ssd (optional) -> redis
 * (optional) (stack.c; the tiers are server/tier/lkv_tier.h).
 *
 * A Put is two steps so that a PutStream can hold its block back until the
 * reply's turn: lkv_stack_put_below writes the tiers under the host tier
 * (asynchronous; with write-through the put is durable there per
 * --ssd-fsync before done), then lkv_stack_put_host makes it visible in host
 * memory (synchronous). Get looks top down and promotes a lower hit into the
 * host tier (the same blob, no copy); Delete goes to every tier.
 */
#ifndef LKV_STACK_H
#define LKV_STACK_H

#include "tier/lkv_tier.h"

typedef enum lkv_tier_policy {
    LKV_TIER_WRITE_THROUGH = 0, /* Put acknowledged once every tier below host has it */
    LKV_TIER_WRITE_BACK = 1     /* Put acknowledged from host; SSD fed by host evictions */
} lkv_tier_policy;

typedef struct lkv_stack lkv_stack;

/* gpu, host, ssd, redis */
#define LKV_STACK_TIERS_MAX 4

/* Takes ownership of the tiers (host required, ssd/redis may be NULL); NULL
 * when out of memory (the tiers are then still the caller's). */
lkv_stack *lkv_stack_create(lkv_tier *host, lkv_tier *ssd, lkv_tier *redis, lkv_tier_policy policy);
/* Puts the GPU tier (server/tier/lkv_tier_gpu.h) above host, once, before
 * any request; the stack takes ownership. Puts and promotions then go to
 * it, host holds what it evicts or refuses (stack.c). */
void lkv_stack_set_gpu(lkv_stack *s, lkv_tier *gpu);
/* The GPU tier, or NULL. */
lkv_tier *lkv_stack_gpu(const lkv_stack *s);
/* Closes every tier (asynchronous, as lkv_tier's close), then frees the stack
 * and calls closed(ud). The loop must run until then. */
void lkv_stack_close(lkv_stack *s, void (*closed)(void *ud), void *ud);

/* The tiers under host, per the policy; done() once. Refused at once with
 * ERR_LIMIT when the host tier would refuse the block (size, quota). A
 * failure of the Redis tier is counted there and does not fail the put: the
 * block lives in the local tiers. */
void lkv_stack_put_below(lkv_stack *s, lkv_tier_req *req);
/* The top tier, synchronous: GPU when there is one (then the host copy of
 * the key is dropped), else host, or host when the GPU tier refuses. */
lkv_status lkv_stack_put_host(lkv_stack *s, const char *ns, size_t ns_len, const uint8_t *key,
                              size_t key_len, lkv_blob *blob, lkv_diag *diag);
/* Top down; on a hit req->tier is where the block was found. A damaged lower
 * copy is dropped by its tier and reported (DATA_LOSS statuses) only when no
 * other tier has the block; an unreachable Redis is a miss (counted there). */
void lkv_stack_get(lkv_stack *s, lkv_tier_req *req);
/* Every tier; found = any had it. An SSD or Redis failure is the status. */
void lkv_stack_del(lkv_stack *s, lkv_tier_req *req);
/* Present in a local tier (host or SSD); Redis is not asked. */
int lkv_stack_contains(const lkv_stack *s, const char *ns, size_t ns_len, const uint8_t *key,
                       size_t key_len);
/* Whether nothing waits to be written back: the Redis write-back queue is
 * empty, or no Redis node is reachable to take it (shutdown waits for this). */
int lkv_stack_flushed(const lkv_stack *s);
/* The tiers top down (up to LKV_STACK_TIERS_MAX); returns how many. */
size_t lkv_stack_tiers(const lkv_stack *s, const lkv_tier *out[LKV_STACK_TIERS_MAX]);
/* The Redis link state ("up", "down", ...), or "" for a tier that has none. */
const char *lkv_stack_link(const lkv_stack *s, const lkv_tier *t);

#endif
