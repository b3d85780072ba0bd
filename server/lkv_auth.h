/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_auth.h - bearer tokens and the namespaces they may use (auth.c).
 *
 * A token file (--auth-tokens FILE) has one token per line:
 *
 *     # comment
 *     TOKEN  NAMESPACE[,NAMESPACE...]
 *     TOKEN  *                      (every namespace, and Admin/Stats)
 *
 * A token is 1..LKV_AUTH_TOKEN_MAX printable ASCII bytes without spaces or
 * commas; a namespace is what a request may name (any bytes but ',', space
 * and NUL here). A table is immutable once parsed and reference-counted, so
 * a SIGHUP that loads a new one never changes the permissions of a call that
 * already holds the old one. Everything here runs on the loop thread; the
 * failure counters may be read from any thread.
 */
#ifndef LKV_AUTH_H
#define LKV_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "lkv_status.h"

#define LKV_AUTH_TOKEN_MAX 512

typedef struct lkv_auth_table lkv_auth_table;
typedef struct lkv_auth_principal lkv_auth_principal;

/* Parses a token file's text (name is used in error messages: "FILE:LINE").
 * A bad line is ERR_INVALID_ARGUMENT with diag naming the line and what is
 * wrong (never the token itself). The table starts with one reference. */
lkv_status lkv_auth_parse(const char *text, size_t len, const char *name, lkv_auth_table **out,
                          lkv_diag *diag);
/* Reads and parses FILE. */
lkv_status lkv_auth_load(const char *path, lkv_auth_table **out, lkv_diag *diag);
void lkv_auth_table_ref(lkv_auth_table *t);
/* Drops a reference; frees the table (its tokens wiped) at the last. NULL ok. */
void lkv_auth_table_unref(lkv_auth_table *t);
size_t lkv_auth_table_size(const lkv_auth_table *t);

/* The principal of `token` (len bytes), or NULL when no line has it. Every
 * token of the table is compared with every call, in time that depends
 * only on len and the table's size, never on where the bytes differ. */
const lkv_auth_principal *lkv_auth_find(const lkv_auth_table *t, const uint8_t *token, size_t len);
/* The token from an "authorization" metadata value ("Bearer TOKEN", the
 * scheme in any case): sets tok and len, returns 0, or -1 when it is not
 * a bearer credential. */
int lkv_auth_bearer(const uint8_t *value, size_t vlen, const uint8_t **tok, size_t *len);

/* 1 when p may use namespace ns (len bytes). */
int lkv_auth_allows(const lkv_auth_principal *p, const char *ns, size_t len);
/* 1 when p was granted "*" (needed by Admin Stats). */
int lkv_auth_all(const lkv_auth_principal *p);
/* The line of the token file that granted p, for logs (never the token). */
unsigned lkv_auth_line(const lkv_auth_principal *p);

/*
 * Authentication and authorization failures since start, the counters a
 * metrics endpoint exports as latticekv_auth_failures_total{reason=...}:
 * unauthenticated = no or unknown token (UNAUTHENTICATED), permission =
 * a token used outside its namespaces or Stats without a "*" grant
 * (PERMISSION_DENIED).
 */
typedef struct lkv_auth_failures {
    uint64_t unauthenticated;
    uint64_t permission;
} lkv_auth_failures;
void lkv_auth_count_unauthenticated(void);
void lkv_auth_count_permission(void);
void lkv_auth_get_failures(lkv_auth_failures *out);

#endif
