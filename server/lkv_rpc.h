/* SPDX-License-Identifier: Apache-2.0 */
/* lkv_rpc.h - gRPC C core: listeners, calls, two-phase shutdown (rpc.c). */
#ifndef LKV_RPC_H
#define LKV_RPC_H

#include <stdint.h>

#include "lkv_auth.h"
#include "lkv_config.h"
#include "lkv_pool.h"
#include "lkv_service.h"
#include "lkv_tls.h"

typedef struct lkv_rpc lkv_rpc;

/* Who may call (docs/service.md, "TLS and tokens"). */
typedef struct lkv_rpc_security {
    lkv_tls *tls;           /* NULL: TCP listeners in plaintext; else TLS (mTLS with a client CA) */
    lkv_auth_table *tokens; /* NULL: no token checks; rpc takes its own reference */
    int auth_unix;          /* 0: calls over unix sockets need no token */
} lkv_rpc_security;

/* Creates the server, binds every cfg->listen address and starts it; on a
 * bind failure returns ERR_UNAVAILABLE with one line naming the address and
 * the reason. A unix:PATH that another process answers on is refused, a
 * stale socket there is removed, and sockets get cfg->unix_socket_mode.
 * TCP listeners serve TLS when sec->tls is set (sec may be NULL: none);
 * sec->tls must outlive the rpc. */
lkv_status lkv_rpc_create(const lkv_config *cfg, lkv_service *svc, lkv_inbox *inbox,
                          const lkv_rpc_security *sec, lkv_rpc **out, lkv_diag *diag);
/* Loop thread: new calls are checked against t (a SIGHUP reload); calls
 * already admitted keep the table they were admitted with. */
void lkv_rpc_set_tokens(lkv_rpc *r, lkv_auth_table *t);
/* Loop thread: a completion came back from the completion-queue thread. */
void lkv_rpc_on_event(lkv_rpc *r, lkv_event *ev);
/* The reply function handed to the service: files the reply (takes its
 * buffer and effect) and queues the call; nothing is sent until the flush. */
void lkv_rpc_reply(void *call, uint64_t seq, lkv_reply *reply);
/* Loop thread: sends the replies filed since the last flush and frees the
 * calls that are finished. Runs after every gRPC event; the loop also runs
 * it after the batcher completes work. */
void lkv_rpc_flush(lkv_rpc *r);
/* Phase 1: new calls are answered UNAVAILABLE; in-flight calls go on. */
void lkv_rpc_shutdown_begin(lkv_rpc *r);
/* Loop thread, after events and on a timer during phase 1: once no call is
 * active and none arrived for a quiet period, gRPC stops accepting
 * (grpc_server_shutdown_and_notify). */
void lkv_rpc_shutdown_progress(lkv_rpc *r, uint64_t now_ns);
/* Cancels every call still running (the grace period is over). */
void lkv_rpc_cancel_all(lkv_rpc *r);
/* Calls matched and not yet finished (the inflight_calls metric). */
unsigned lkv_rpc_calls(const lkv_rpc *r);
/* 1 once phase 1 is complete and no call is left. */
int lkv_rpc_drained(const lkv_rpc *r);
/* Phase 2: shuts the completion queue down, joins its thread, destroys. */
void lkv_rpc_free(lkv_rpc *r);

#endif
