/* SPDX-License-Identifier: Apache-2.0 */
/* lkv_status.h - every status to its gRPC code (status.c). */
#ifndef LKV_STATUS_H
#define LKV_STATUS_H

#include "lkv_codec.h"
#include "lkv_rpc_table.h"

/* gRPC status codes by their wire numbers, from the shared list in
 * lkv_rpc_table.h (rpc.c checks every one against grpc/status.h). */
typedef enum lkv_grpc_code {
#define LKV_X_GRPC_ENUM(name, value) LKV_GRPC_##name = (value),
    LKV_GRPC_CODE_LIST(LKV_X_GRPC_ENUM)
#undef LKV_X_GRPC_ENUM
} lkv_grpc_code;

/*
 * Statuses only the daemon returns (the codec never does), numbered after
 * the codec's LKV_STATUS_LIST: X(NAME, default message), LKV_NAME.
 */
#define LKV_SERVER_STATUS_LIST(X)  \
    X(ERR_NOT_FOUND, "not found")  \
    X(ERR_AUTH, "unauthenticated") \
    X(ERR_PERMISSION, "permission denied")

enum {
    LKV_SERVER_STATUS_BEFORE = LKV_STATUS_COUNT - 1,
#define LKV_X_SERVER_ENUM(name, msg) LKV_##name,
    LKV_SERVER_STATUS_LIST(LKV_X_SERVER_ENUM)
#undef LKV_X_SERVER_ENUM
        LKV_SERVER_STATUS_END /* one past the last status, codec's or daemon's */
};

/* The one table: every status, the codec's and the daemon's, to the gRPC
 * code a client sees. */
lkv_grpc_code lkv_status_to_grpc(int s);
/* The default message of any status ("unknown status" outside both lists). */
const char *lkv_server_status_message(int s);
/* "INVALID_ARGUMENT" etc. */
const char *lkv_grpc_code_name(lkv_grpc_code c);

/* Fills d (when not NULL) with st, no vector index and the printf-style
 * message, and returns st: the one way server modules report a failure
 * through an lkv_diag. */
lkv_status lkv_diag_fail(lkv_diag *d, lkv_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
