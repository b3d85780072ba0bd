/* SPDX-License-Identifier: Apache-2.0 */
/* lkv_budget.h - the in-flight byte budget (budget.c). */
#ifndef LKV_BUDGET_H
#define LKV_BUDGET_H

#include <stdint.h>

#include "lkv_config.h"

/*
 * Bytes of requests in flight: received messages from the moment they are
 * copied out of gRPC until their request is done, and reply buffers from
 * their allocation until gRPC has sent them. Any thread may give bytes back.
 * A take fails when it would pass the limit while anything else is in
 * flight (a lone request is always admitted, so a budget smaller than one
 * message refuses nothing on an idle daemon).
 */
typedef struct lkv_budget {
    _Atomic uint64_t used;
    uint64_t limit;
    _Atomic uint64_t peak;       /* most used since the last trim */
    _Atomic uint64_t refused;    /* takes that failed */
    _Atomic uint64_t trims;      /* malloc_trim calls made (see budget.c) */
    _Atomic uint64_t since_trim; /* bytes taken since the last trim */
    _Atomic uint64_t underflows; /* gives of more than was in flight (a bug) */
} lkv_budget;

/* The budget in effect: cfg->max_inflight_bytes, or when that is 0,
 * host-mem-bytes / 4 but at least 2 * max-message-bytes. */
uint64_t lkv_inflight_budget(const lkv_config *cfg);
void lkv_budget_init(lkv_budget *b, uint64_t limit);
/* 1 when n bytes were taken, 0 when they would pass the limit. b may be NULL. */
int lkv_budget_try_take(lkv_budget *b, uint64_t n);
/* Takes n bytes whatever the limit (small replies). b may be NULL. */
void lkv_budget_take(lkv_budget *b, uint64_t n);
/* Gives n bytes back; giving more than is in flight is a charge and give
 * that do not pair (a bug): used stops at 0, the give is counted in
 * underflows and logged as budget_underflow. When nothing is left in
 * flight and at least
 * LKV_TRIM_AFTER_BYTES were taken since the last trim, returns the freed
 * heap to the system (malloc_trim). b may be NULL. */
void lkv_budget_give(lkv_budget *b, uint64_t n);
#define LKV_TRIM_AFTER_BYTES (UINT64_C(64) << 20)

#endif
