/* SPDX-License-Identifier: Apache-2.0 */
/*
 * auth.c - the token table: parsing, constant-time lookup, namespace grants.
 *
 * Design note. The table is parsed once per (re)load into one immutable,
 * reference-counted block; calls hold a reference for their whole life, so
 * a reload swaps the daemon's pointer and old calls keep what they were
 * admitted with. Lookup compares the presented token with every token of
 * the table, each over the presented length, and folds the differences
 * with OR: no early exit, no branch on a secret byte, so the time taken
 * says nothing about how close a guess was or which line matched. Tokens
 * never reach a log line or an error message; errors name the file and the
 * line.
 */
#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_auth.h"

struct lkv_auth_principal {
    uint8_t *token;
    size_t token_len;
    int all;        /* "*" */
    char **ns;      /* granted namespaces (NUL-terminated copies) */
    size_t *ns_len; /* their lengths */
    size_t n_ns;
    unsigned line;
};

struct lkv_auth_table {
    unsigned refs;
    size_t n;
    lkv_auth_principal *p;
};

static atomic_uint_fast64_t fail_unauth, fail_perm;

void lkv_auth_count_unauthenticated(void)
{
    atomic_fetch_add_explicit(&fail_unauth, 1, memory_order_relaxed);
}

void lkv_auth_count_permission(void)
{
    atomic_fetch_add_explicit(&fail_perm, 1, memory_order_relaxed);
}

void lkv_auth_get_failures(lkv_auth_failures *out)
{
    out->unauthenticated = atomic_load_explicit(&fail_unauth, memory_order_relaxed);
    out->permission = atomic_load_explicit(&fail_perm, memory_order_relaxed);
}

static void principal_clear(lkv_auth_principal *p)
{
    if (p->token) {
        /* Volatile stores so the wipe is not optimised away before free. */
        volatile uint8_t *v = p->token;
        for (size_t i = 0; i < p->token_len; i++)
            v[i] = 0;
    }
    free(p->token);
    for (size_t i = 0; i < p->n_ns; i++)
        free(p->ns[i]);
    free(p->ns);
    free(p->ns_len);
}

static void table_free(lkv_auth_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        principal_clear(&t->p[i]);
    free(t->p);
    free(t);
}

void lkv_auth_table_ref(lkv_auth_table *t)
{
    if (t)
        t->refs++;
}

void lkv_auth_table_unref(lkv_auth_table *t)
{
    if (t && --t->refs == 0)
        table_free(t);
}

size_t lkv_auth_table_size(const lkv_auth_table *t)
{
    return t ? t->n : 0;
}

static int token_byte_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != ',';
}

/* Adds the namespace list `s` (n bytes, no spaces) to p. */
static int parse_namespaces(lkv_auth_principal *p, const char *s, size_t n)
{
    if (n == 1 && s[0] == '*') {
        p->all = 1;
        return 0;
    }
    size_t count = 1;
    for (size_t i = 0; i < n; i++)
        count += s[i] == ',';
    p->ns = calloc(count, sizeof *p->ns);
    p->ns_len = calloc(count, sizeof *p->ns_len);
    if (!p->ns || !p->ns_len)
        return -2;
    const char *item = s;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != ',')
            continue;
        size_t len = (size_t)(s + i - item);
        if (len == 0)
            return -1; /* "a,,b" or a trailing comma */
        if (len == 1 && item[0] == '*')
            return -3; /* "*" only alone */
        /* "" (two quotes) names the empty namespace. */
        if (len == 2 && item[0] == '"' && item[1] == '"')
            len = 0;
        char *copy = malloc(len + 1);
        if (!copy)
            return -2;
        memcpy(copy, item, len);
        copy[len] = '\0';
        p->ns[p->n_ns] = copy;
        p->ns_len[p->n_ns++] = len;
        item = s + i + 1;
    }
    return 0;
}

lkv_status lkv_auth_parse(const char *text, size_t len, const char *name, lkv_auth_table **out,
                          lkv_diag *diag)
{
    *out = NULL;
    lkv_auth_table *t = calloc(1, sizeof *t);
    if (!t)
        return lkv_diag_fail(diag, LKV_ERR_NOMEM, "%s: out of memory", name);
    t->refs = 1;
    size_t cap = 0;
    unsigned lineno = 0;
    const char *end = text + len;
    for (const char *line = text; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *le = nl ? nl : end;
        const char *next = nl ? nl + 1 : end;
        lineno++;
        const char *hash = memchr(line, '#', (size_t)(le - line));
        if (hash)
            le = hash;
        const char *p = line;
        while (p < le && isspace((unsigned char)*p))
            p++;
        while (le > p && isspace((unsigned char)le[-1]))
            le--;
        line = next;
        if (p == le)
            continue;
        if (memchr(p, '\0', (size_t)(le - p))) {
            table_free(t);
            return lkv_diag_fail(diag, LKV_ERR_INVALID_ARGUMENT, "%s:%u: has a NUL byte", name,
                                 lineno);
        }
        const char *tok = p;
        while (p < le && !isspace((unsigned char)*p))
            p++;
        const size_t tok_len = (size_t)(p - tok);
        while (p < le && isspace((unsigned char)*p))
            p++;
        const char *nss = p;
        while (p < le && !isspace((unsigned char)*p))
            p++;
        const char *why = NULL;
        if (nss == le)
            why = "is not \"TOKEN NAMESPACE[,NAMESPACE...]\" (no namespace list)";
        else if (p != le)
            why = "has text after the namespace list (namespaces are separated by commas, "
                  "without spaces)";
        else if (tok_len > LKV_AUTH_TOKEN_MAX)
            why = "has a token longer than 512 bytes";
        for (size_t i = 0; !why && i < tok_len; i++)
            if (!token_byte_ok((unsigned char)tok[i]))
                why = "has a token with a byte outside printable ASCII, or a comma";
        for (size_t i = 0; !why && i < t->n; i++)
            if (t->p[i].token_len == tok_len && memcmp(t->p[i].token, tok, tok_len) == 0)
                why = "repeats the token of an earlier line";
        if (why) {
            const unsigned line_no = lineno;
            table_free(t);
            return lkv_diag_fail(diag, LKV_ERR_INVALID_ARGUMENT, "%s:%u: %s", name, line_no, why);
        }
        if (t->n == cap) {
            const size_t ncap = cap ? cap * 2 : 8;
            lkv_auth_principal *np = realloc(t->p, ncap * sizeof *np);
            if (!np) {
                table_free(t);
                return lkv_diag_fail(diag, LKV_ERR_NOMEM, "%s: out of memory", name);
            }
            t->p = np;
            cap = ncap;
        }
        lkv_auth_principal *pr = &t->p[t->n++];
        *pr = (lkv_auth_principal){.line = lineno};
        pr->token = malloc(tok_len);
        int rc = pr->token ? 0 : -2;
        if (pr->token) {
            memcpy(pr->token, tok, tok_len);
            pr->token_len = tok_len;
            rc = parse_namespaces(pr, nss, (size_t)(le - nss));
        }
        if (rc != 0) {
            table_free(t);
            if (rc == -2)
                return lkv_diag_fail(diag, LKV_ERR_NOMEM, "%s: out of memory", name);
            return lkv_diag_fail(diag, LKV_ERR_INVALID_ARGUMENT,
                                 rc == -3 ? "%s:%u: \"*\" must stand alone, not in a list"
                                          : "%s:%u: has an empty namespace in its list (write "
                                            "\"\" for the empty namespace)",
                                 name, lineno);
        }
    }
    *out = t;
    return LKV_OK;
}

lkv_status lkv_auth_load(const char *path, lkv_auth_table **out, lkv_diag *diag)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return lkv_diag_fail(diag, LKV_ERR_INVALID_ARGUMENT, "auth-tokens=%.120s: %s", path,
                             strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            if (cap >= (64u << 20)) {
                free(buf);
                fclose(f);
                return lkv_diag_fail(diag, LKV_ERR_INVALID_ARGUMENT,
                                     "auth-tokens=%.120s: larger than 64 MiB", path);
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    const int bad = ferror(f);
    fclose(f);
    if (!buf)
        return lkv_diag_fail(diag, LKV_ERR_NOMEM, "auth-tokens=%.120s: out of memory", path);
    lkv_status st;
    if (bad) {
        st = lkv_diag_fail(diag, LKV_ERR_INVALID_ARGUMENT, "auth-tokens=%.120s: read error", path);
    } else {
        char name[160];
        snprintf(name, sizeof name, "auth-tokens=%.120s", path);
        st = lkv_auth_parse(buf, len, name, out, diag);
    }
    volatile char *v = buf; /* the file's tokens do not outlive the parse */
    for (size_t i = 0; i < len; i++)
        v[i] = 0;
    free(buf);
    return st;
}

const lkv_auth_principal *lkv_auth_find(const lkv_auth_table *t, const uint8_t *token, size_t len)
{
    if (!t || len == 0)
        return NULL;
    size_t found = SIZE_MAX;
    for (size_t k = 0; k < t->n; k++) {
        const lkv_auth_principal *p = &t->p[k];
        /* Lengths differ -> nonzero; then every presented byte is compared
         * (the stored token indexed modulo its length, so always in bounds). */
        size_t diff = p->token_len ^ len;
        size_t j = 0; /* i modulo the stored length, without a division */
        for (size_t i = 0; i < len; i++) {
            diff |= (size_t)(token[i] ^ p->token[j]);
            j = j + 1 == p->token_len ? 0 : j + 1; /* depends on lengths only */
        }
        /* nz is 1 when diff != 0; mask is all ones when the token matched,
         * else 0; neither is a branch. */
        const size_t nz = (diff | ((size_t)0 - diff)) >> (sizeof(size_t) * 8 - 1);
        const size_t mask = nz - 1;
        found = (found & ~mask) | (k & mask);
    }
    return found == SIZE_MAX ? NULL : &t->p[found];
}

int lkv_auth_bearer(const uint8_t *value, size_t vlen, const uint8_t **tok, size_t *len)
{
    static const char scheme[] = "bearer ";
    const size_t sl = sizeof scheme - 1;
    if (vlen <= sl)
        return -1;
    for (size_t i = 0; i < sl; i++)
        if (tolower(value[i]) != scheme[i])
            return -1;
    size_t off = sl;
    while (off < vlen && value[off] == ' ')
        off++;
    size_t end = vlen;
    while (end > off && value[end - 1] == ' ')
        end--;
    if (end == off)
        return -1;
    *tok = value + off;
    *len = end - off;
    return 0;
}

int lkv_auth_allows(const lkv_auth_principal *p, const char *ns, size_t len)
{
    if (!p)
        return 0;
    if (p->all)
        return 1;
    for (size_t i = 0; i < p->n_ns; i++)
        if (p->ns_len[i] == len && memcmp(p->ns[i], ns, len) == 0)
            return 1;
    return 0;
}

int lkv_auth_all(const lkv_auth_principal *p)
{
    return p && p->all;
}

unsigned lkv_auth_line(const lkv_auth_principal *p)
{
    return p ? p->line : 0;
}
