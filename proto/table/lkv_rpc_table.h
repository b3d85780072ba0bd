/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_rpc_table.h - the RPCs latticekvd serves and the gRPC status codes,
 * each listed once, for every end of the wire.
 *
 * The daemon registers, dispatches and answers health checks from
 * LKV_RPC_LIST; the C client registers its calls from it; a pytest
 * (tests/integration/test_rpc_table.py) checks the Python client's stubs and
 * the .proto files against it. Adding an RPC is one row here plus its
 * handler in server/service.c (handle_<handler>). Plain macros only: no
 * gRPC or protobuf-c type, so any layer may include it.
 */
#ifndef LKV_RPC_TABLE_H
#define LKV_RPC_TABLE_H

#define LKV_RPC_SERVICE_CODEC      "latticekv.v1.Codec"
#define LKV_RPC_SERVICE_KVSTORE    "latticekv.v1.KVStore"
#define LKV_RPC_SERVICE_ADMIN      "latticekv.v1.Admin"
#define LKV_RPC_SERVICE_HEALTH     "grpc.health.v1.Health"
#define LKV_RPC_SERVICE_REFLECTION "grpc.reflection.v1alpha.ServerReflection"

/*
 * X(NAME, service, method, streaming, handler): the path is
 * "/" service "/" method; streaming is 1 for a bidirectional stream (one
 * reply per request, in order), 0 for a unary call; the streams share the
 * handler of their unary twin.
 */
#define LKV_RPC_LIST(X)                                                            \
    X(COMPRESS, LKV_RPC_SERVICE_CODEC, "Compress", 0, compress)                    \
    X(DECOMPRESS, LKV_RPC_SERVICE_CODEC, "Decompress", 0, decompress)              \
    X(COMPRESS_STREAM, LKV_RPC_SERVICE_CODEC, "CompressStream", 1, compress)       \
    X(DECOMPRESS_STREAM, LKV_RPC_SERVICE_CODEC, "DecompressStream", 1, decompress) \
    X(PUT, LKV_RPC_SERVICE_KVSTORE, "Put", 0, put)                                 \
    X(GET, LKV_RPC_SERVICE_KVSTORE, "Get", 0, get)                                 \
    X(PUT_STREAM, LKV_RPC_SERVICE_KVSTORE, "PutStream", 1, put)                    \
    X(GET_STREAM, LKV_RPC_SERVICE_KVSTORE, "GetStream", 1, get)                    \
    X(LOOKUP, LKV_RPC_SERVICE_KVSTORE, "Lookup", 0, lookup)                        \
    X(DELETE, LKV_RPC_SERVICE_KVSTORE, "Delete", 0, delete)                        \
    X(PUSH, LKV_RPC_SERVICE_KVSTORE, "Push", 0, push)                              \
    X(PULL, LKV_RPC_SERVICE_KVSTORE, "Pull", 0, pull)                              \
    X(STATS, LKV_RPC_SERVICE_ADMIN, "Stats", 0, stats)                             \
    X(HEALTH_CHECK, LKV_RPC_SERVICE_HEALTH, "Check", 0, health)

/*
 * RPCs the daemon serves that no latticekv client calls, in the same row
 * form: server reflection (--reflection on), for grpcurl-style tools.
 */
#define LKV_RPC_DAEMON_ONLY_LIST(X) \
    X(REFLECTION, LKV_RPC_SERVICE_REFLECTION, "ServerReflectionInfo", 1, reflection)

/* Every RPC the daemon serves. */
#define LKV_RPC_SERVED_LIST(X) LKV_RPC_LIST(X) LKV_RPC_DAEMON_ONLY_LIST(X)

/* The path of a row, as a string literal. */
#define LKV_RPC_PATH(service, method) "/" service "/" method

/* The gRPC status codes, X(NAME, value); values equal grpc_status_code. */
#define LKV_GRPC_CODE_LIST(X) \
    X(OK, 0)                  \
    X(CANCELLED, 1)           \
    X(UNKNOWN, 2)             \
    X(INVALID_ARGUMENT, 3)    \
    X(DEADLINE_EXCEEDED, 4)   \
    X(NOT_FOUND, 5)           \
    X(ALREADY_EXISTS, 6)      \
    X(PERMISSION_DENIED, 7)   \
    X(RESOURCE_EXHAUSTED, 8)  \
    X(FAILED_PRECONDITION, 9) \
    X(ABORTED, 10)            \
    X(OUT_OF_RANGE, 11)       \
    X(UNIMPLEMENTED, 12)      \
    X(INTERNAL, 13)           \
    X(UNAVAILABLE, 14)        \
    X(DATA_LOSS, 15)          \
    X(UNAUTHENTICATED, 16)

#endif /* LKV_RPC_TABLE_H */
