/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_server.h - the internal modules of latticekvd and how they meet.
 *
 * latticekvd is split so that only one file (rpc.c) knows gRPC and every
 * other module can be unit-tested without a network:
 *
 *   config.c   one declarative table -> flags, LATTICEKV_* env, config file, --help
 *   log.c      structured key=value (or JSON) log lines on stderr, client bytes quoted
 *   status.c   the one lkv_status -> gRPC status table
 *   store.c    blobs and the host-memory tier: (namespace, key) -> blob, LRU, quotas
 *   lru.c      the hash table + recency list the host and SSD tiers share
 *   stack.c    the tiers stacked: host -> ssd -> redis, write-through or write-back
 *   tier/      the tier interface, the SSD directory and Redis tiers
 *   batcher.c  dynamic batching: coalesces and splits codec work (pure logic)
 *   pool.c     codec worker threads; the loop's inbox (mutex + uv_async) and clock
 *   backend.c  the codec backend vtable and the CPU backend
 *   backend_cuda.c  the CUDA backend (built when the lkv_cuda target exists)
 *   sched.c    where a batch runs: inline on the loop thread or on a worker
 *   wire.c     protobuf wire: zero-copy request readers, replies written in place
 *   budget.c   the in-flight byte budget (bytes of requests and replies)
 *   service.c  what each RPC does: validation, store, batcher; no gRPC types
 *   metrics.c  the Prometheus text of every module's counters; GET /metrics on the loop
 *   reflection.c  grpc.reflection.v1alpha answers from descriptors embedded at build time
 *   auth.c     bearer tokens -> namespaces: the token file, constant-time lookup
 *   tls.c      certificate, key and client CA checked with OpenSSL; SIGHUP reload
 *   rpc.c      gRPC C core: listeners, completion queue thread, call state machines
 *   main.c     start-up, the libuv loop, signals, two-phase shutdown
 *
 * Threads: the libuv loop thread owns every call, the store, the batcher, the
 * scheduler and the counters, so none of them needs a lock. The completion-queue thread and
 * the codec workers never touch that state: they push events into the inbox,
 * whose uv_async callback drains it on the loop thread.
 *
 * Each module declares its API in its own header, lkv_<module>.h (log.c:
 * lkv_log.h, backend_cuda.c: lkv_backend.h), and each .c file includes only
 * the headers it uses. This file is the one map, plus every header for code
 * outside the room that drives the whole daemon (tests, server/tier).
 */
#ifndef LKV_SERVER_H
#define LKV_SERVER_H

#include "lkv_backend.h"
#include "lkv_batcher.h"
#include "lkv_budget.h"
#include "lkv_config.h"
#include "lkv_log.h"
#include "lkv_metrics.h"
#include "lkv_pool.h"
#include "lkv_reflection.h"
#include "lkv_rpc.h"
#include "lkv_sched.h"
#include "lkv_service.h"
#include "lkv_status.h"
#include "lkv_store.h"
#include "lkv_wire.h"

#endif /* LKV_SERVER_H */
