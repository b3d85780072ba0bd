/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_tls.h - the daemon's TLS material: certificate chain, key and the
 * optional client CA, checked with OpenSSL and re-read on SIGHUP (tls.c).
 *
 * rpc.c hands the PEM text to gRPC's SSL server credentials through a
 * certificate-config fetcher that gRPC calls, on its own threads, before
 * every new handshake; lkv_tls_if_newer is what that fetcher asks. So a
 * reload changes what new connections see and leaves established ones (and
 * their calls) alone. Everything but lkv_tls_if_newer runs on the loop
 * thread; a mutex guards the swap.
 */
#ifndef LKV_TLS_H
#define LKV_TLS_H

#include <stdint.h>

#include "lkv_status.h"

typedef struct lkv_tls lkv_tls;

/*
 * Reads and checks cert (a PEM chain, leaf first), key (its PEM private
 * key) and client_ca (PEM certificates; NULL or "" = no client
 * certificates asked for). Checked: every file opens and parses, the key
 * matches the leaf, the leaf is valid now (not expired, not before its
 * start). A failure is ERR_INVALID_ARGUMENT with diag naming the setting,
 * the file and the reason.
 */
lkv_status lkv_tls_create(const char *cert, const char *key, const char *client_ca, lkv_tls **out,
                          lkv_diag *diag);
/* Re-reads the same three files; on any failure keeps the material in use
 * and returns the error (the caller logs it). */
lkv_status lkv_tls_reload(lkv_tls *t, lkv_diag *diag);
/* 1 when clients must present a certificate signed by the client CA. */
int lkv_tls_mutual(const lkv_tls *t);
/* The leaf's notAfter as seconds since the epoch (for logs). */
int64_t lkv_tls_not_after(const lkv_tls *t);

/*
 * Any thread. When the material changed since *seen (start: 0), calls
 * fn(ud, cert_chain, key, client_ca_or_NULL) under the lock, sets *seen and
 * returns 1; else returns 0 without calling fn.
 */
int lkv_tls_if_newer(lkv_tls *t, uint64_t *seen,
                     void (*fn)(void *ud, const char *cert, const char *key, const char *ca),
                     void *ud);
void lkv_tls_free(lkv_tls *t);

#endif
