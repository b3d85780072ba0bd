/* SPDX-License-Identifier: Apache-2.0 */
/* lkv_peer.h - Push and Pull: coded blocks from daemon to daemon (peer.c). */
#ifndef LKV_PEER_H
#define LKV_PEER_H

#include "lkv_config.h"
#include "lkv_service.h"

typedef struct lkv_peer lkv_peer;

/* Loop thread: the outbound side (a completion queue and its thread);
 * registers itself as svc's peer. NULL when out of memory or threads. */
lkv_peer *lkv_peer_create(void *uv_loop, const lkv_config *cfg, lkv_service *svc);
/* Cancels every outbound call in flight (the shutdown grace is over): their
 * keys are answered CANCELLED and each transfer replies. */
void lkv_peer_cancel_all(lkv_peer *p);
/* Transfers still running. */
unsigned lkv_peer_transfers(const lkv_peer *p);
/* Loop thread, once no transfer is left: shuts the queue down, joins its
 * thread; the loop frees the rest when it next runs. */
void lkv_peer_free(lkv_peer *p);

#endif
