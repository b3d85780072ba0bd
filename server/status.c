/* SPDX-License-Identifier: Apache-2.0 */
/*
 * status.c - the one table from latticekv status codes to gRPC status codes.
 *
 * Design note. docs/service.md section 2 fixes what a client sees for each kind
 * of failure; this file is the only place that decision is made. Bad input
 * (parameters, shapes, NaN) is INVALID_ARGUMENT; damaged containers are
 * DATA_LOSS whichever check caught them; capacity and size limits are
 * RESOURCE_EXHAUSTED. Adding a code to LKV_STATUS_LIST (the codec's) or
 * LKV_SERVER_STATUS_LIST (the daemon's own, numbered after the codec's)
 * without a row here fails a static assertion below, so no code can fall
 * through to OK.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "lkv_status.h"

static const lkv_grpc_code status_table[LKV_SERVER_STATUS_END] = {
    [LKV_OK] = LKV_GRPC_OK,
    [LKV_ERR_VARIANT] = LKV_GRPC_INVALID_ARGUMENT,
    [LKV_ERR_Q_RANGE] = LKV_GRPC_INVALID_ARGUMENT,
    [LKV_ERR_HEAD_DIM] = LKV_GRPC_INVALID_ARGUMENT,
    [LKV_ERR_DTYPE] = LKV_GRPC_INVALID_ARGUMENT,
    [LKV_ERR_SHAPE] = LKV_GRPC_INVALID_ARGUMENT,
    [LKV_ERR_NONFINITE] = LKV_GRPC_INVALID_ARGUMENT,
    [LKV_ERR_NORM_OVERFLOW] = LKV_GRPC_INVALID_ARGUMENT,
    [LKV_ERR_BUFFER_SMALL] = LKV_GRPC_INTERNAL,
    [LKV_ERR_TRUNCATED] = LKV_GRPC_DATA_LOSS,
    [LKV_ERR_MAGIC] = LKV_GRPC_DATA_LOSS,
    [LKV_ERR_VERSION] = LKV_GRPC_DATA_LOSS,
    [LKV_ERR_CHECKSUM] = LKV_GRPC_DATA_LOSS,
    [LKV_ERR_CORRUPT] = LKV_GRPC_DATA_LOSS,
    [LKV_ERR_ISA] = LKV_GRPC_INTERNAL,
    [LKV_ERR_NOMEM] = LKV_GRPC_RESOURCE_EXHAUSTED,
    [LKV_ERR_LIMIT] = LKV_GRPC_RESOURCE_EXHAUSTED,
    [LKV_ERR_UNAVAILABLE] = LKV_GRPC_UNAVAILABLE,
    [LKV_ERR_INTERNAL] = LKV_GRPC_INTERNAL,
    [LKV_ERR_INVALID_ARGUMENT] = LKV_GRPC_INVALID_ARGUMENT,
    /* the daemon's own (LKV_SERVER_STATUS_LIST) */
    [LKV_ERR_NOT_FOUND] = LKV_GRPC_NOT_FOUND,
    [LKV_ERR_AUTH] = LKV_GRPC_UNAUTHENTICATED,
    [LKV_ERR_PERMISSION] = LKV_GRPC_PERMISSION_DENIED,
};

_Static_assert(LKV_STATUS_COUNT == 20, "a codec status was added: give it a row in status_table");
_Static_assert(LKV_SERVER_STATUS_END == 23,
               "a daemon status was added: give it a row in status_table");

/* Every code after OK must have a non-OK row (a forgotten row would read 0 = OK). */
lkv_grpc_code lkv_status_to_grpc(int s)
{
    if (s < 0 || s >= LKV_SERVER_STATUS_END)
        return LKV_GRPC_INTERNAL;
    const lkv_grpc_code c = status_table[s];
    return (s != LKV_OK && c == LKV_GRPC_OK) ? LKV_GRPC_INTERNAL : c;
}

const char *lkv_server_status_message(int s)
{
    static const char *const messages[] = {
#define LKV_X_MSG(name, msg) msg,
        LKV_SERVER_STATUS_LIST(LKV_X_MSG)
#undef LKV_X_MSG
    };
    if (s >= LKV_STATUS_COUNT && s < LKV_SERVER_STATUS_END)
        return messages[s - LKV_STATUS_COUNT];
    return lkv_status_message((lkv_status)s);
}

const char *lkv_grpc_code_name(lkv_grpc_code c)
{
    switch (c) {
#define LKV_X_NAME(name, value) \
    case LKV_GRPC_##name: return #name;
        LKV_GRPC_CODE_LIST(LKV_X_NAME)
#undef LKV_X_NAME
    }
    return "UNKNOWN";
}

lkv_status lkv_diag_fail(lkv_diag *d, lkv_status st, const char *fmt, ...)
{
    if (d) {
        va_list ap;
        va_start(ap, fmt);
        d->code = st;
        d->index = UINT64_MAX;
        vsnprintf(d->msg, sizeof d->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}
