/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tls.c - reading and checking the daemon's certificate, key and client CA.
 *
 * Design note. gRPC takes PEM text and reports a bad certificate only when
 * a handshake fails, long after start-up and without naming the file. So
 * the files are parsed here with OpenSSL first: a wrong path, a file that
 * is not PEM, a key of another certificate or an expired leaf is a one-line
 * error at start (exit 2) and, on SIGHUP, a logged refusal that keeps the
 * material in use. The PEM text that passed is what gRPC gets, under a
 * generation number its fetcher compares (lkv_tls_if_newer).
 */
#define _GNU_SOURCE /* timegm */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lkv_tls.h"

#define PEM_FILE_MAX (1u << 20)

typedef struct material {
    char *cert, *key, *ca; /* PEM text; ca NULL without a client CA */
    int64_t not_after;
} material;

struct lkv_tls {
    char cert_path[256], key_path[256], ca_path[256];
    pthread_mutex_t mu;
    material cur;
    uint64_t gen;
};

static void wipe_free(char *s)
{
    if (s) {
        volatile char *v = s;
        for (size_t i = 0; s[i]; i++)
            v[i] = 0;
    }
    free(s);
}

static void material_clear(material *m)
{
    free(m->cert);
    wipe_free(m->key);
    free(m->ca);
    memset(m, 0, sizeof *m);
}

/* The whole file as a NUL-terminated string, or NULL with diag set. */
static char *read_pem(const char *setting, const char *path, lkv_diag *diag)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        lkv_diag_fail(diag, LKV_ERR_INVALID_ARGUMENT, "%s=%.120s: %s", setting, path,
                      strerror(errno));
        return NULL;
    }
    char *buf = malloc(PEM_FILE_MAX + 1);
    const size_t n = buf ? fread(buf, 1, PEM_FILE_MAX + 1, f) : 0;
    const int bad = ferror(f);
    fclose(f);
    if (!buf || bad || n > PEM_FILE_MAX || n == 0) {
        lkv_diag_fail(diag, LKV_ERR_INVALID_ARGUMENT, "%s=%.120s: %s", setting, path,
                      !buf  ? "out of memory"
                      : bad ? "read error"
                      : n   ? "larger than 1 MiB"
                            : "the file is empty");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* The first OpenSSL error as text (and the queue cleared). */
static const char *ssl_reason(char *buf, size_t cap)
{
    const unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, cap);
    else
        snprintf(buf, cap, "no PEM certificate found");
    ERR_clear_error();
    return buf;
}

/* Parses every certificate of pem; returns the first (the leaf) with one
 * reference, or NULL when there is none or one does not parse. */
static X509 *parse_certs(const char *pem, int *count)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (!bio)
        return NULL;
    X509 *first = NULL, *x;
    *count = 0;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (!first)
            first = x;
        else
            X509_free(x);
        (*count)++;
    }
    /* The loop ends on "no start line" at the end of the text: expected. */
    const unsigned long e = ERR_peek_last_error();
    if (ERR_GET_REASON(e) == PEM_R_NO_START_LINE && *count > 0)
        ERR_clear_error();
    else if (e) {
        X509_free(first);
        first = NULL;
    }
    BIO_free(bio);
    return first;
}

static int64_t asn1_epoch(const ASN1_TIME *t)
{
    struct tm tm = {0};
    if (!ASN1_TIME_to_tm(t, &tm))
        return 0;
    return (int64_t)timegm(&tm);
}

static lkv_status load(const lkv_tls *t, material *m, lkv_diag *diag)
{
    memset(m, 0, sizeof *m);
    char why[200];
    lkv_status st = LKV_ERR_INVALID_ARGUMENT;
    X509 *leaf = NULL;
    EVP_PKEY *pkey = NULL;
    ERR_clear_error();
    m->cert = read_pem("tls-cert", t->cert_path, diag);
    m->key = m->cert ? read_pem("tls-key", t->key_path, diag) : NULL;
    if (!m->key)
        goto out;
    if (t->ca_path[0] && !(m->ca = read_pem("tls-client-ca", t->ca_path, diag)))
        goto out;
    int n = 0;
    leaf = parse_certs(m->cert, &n);
    if (!leaf) {
        lkv_diag_fail(diag, st, "tls-cert=%.120s: not a PEM certificate chain (%s)", t->cert_path,
                      ssl_reason(why, sizeof why));
        goto out;
    }
    BIO *kb = BIO_new_mem_buf(m->key, -1);
    pkey = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    BIO_free(kb);
    if (!pkey) {
        lkv_diag_fail(diag, st, "tls-key=%.120s: not a PEM private key (%s)", t->key_path,
                      ssl_reason(why, sizeof why));
        goto out;
    }
    if (X509_check_private_key(leaf, pkey) != 1) {
        ERR_clear_error();
        lkv_diag_fail(diag, st, "tls-key=%.120s: does not match the certificate of tls-cert=%.120s",
                      t->key_path, t->cert_path);
        goto out;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0) {
        lkv_diag_fail(diag, st, "tls-cert=%.120s: the certificate expired (notAfter %lld)",
                      t->cert_path, (long long)asn1_epoch(X509_get0_notAfter(leaf)));
        goto out;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) {
        lkv_diag_fail(diag, st,
                      "tls-cert=%.120s: the certificate is not valid yet (notBefore %lld)",
                      t->cert_path, (long long)asn1_epoch(X509_get0_notBefore(leaf)));
        goto out;
    }
    m->not_after = asn1_epoch(X509_get0_notAfter(leaf));
    if (m->ca) {
        X509 *ca = parse_certs(m->ca, &n);
        if (!ca) {
            lkv_diag_fail(diag, st, "tls-client-ca=%.120s: not PEM certificates (%s)", t->ca_path,
                          ssl_reason(why, sizeof why));
            goto out;
        }
        X509_free(ca);
    }
    st = LKV_OK;
out:
    X509_free(leaf);
    EVP_PKEY_free(pkey);
    if (st != LKV_OK)
        material_clear(m);
    return st;
}

static int copy_path(char *dst, size_t cap, const char *src)
{
    return (size_t)snprintf(dst, cap, "%s", src ? src : "") < cap ? 0 : -1;
}

lkv_status lkv_tls_create(const char *cert, const char *key, const char *client_ca, lkv_tls **out,
                          lkv_diag *diag)
{
    *out = NULL;
    lkv_tls *t = calloc(1, sizeof *t);
    if (!t)
        return lkv_diag_fail(diag, LKV_ERR_NOMEM, "tls: out of memory");
    if (copy_path(t->cert_path, sizeof t->cert_path, cert) ||
        copy_path(t->key_path, sizeof t->key_path, key) ||
        copy_path(t->ca_path, sizeof t->ca_path, client_ca)) {
        free(t);
        return lkv_diag_fail(diag, LKV_ERR_INVALID_ARGUMENT, "tls: a path is too long");
    }
    const lkv_status st = load(t, &t->cur, diag);
    if (st != LKV_OK) {
        free(t);
        return st;
    }
    pthread_mutex_init(&t->mu, NULL);
    t->gen = 1;
    *out = t;
    return LKV_OK;
}

lkv_status lkv_tls_reload(lkv_tls *t, lkv_diag *diag)
{
    material m;
    const lkv_status st = load(t, &m, diag);
    if (st != LKV_OK)
        return st;
    pthread_mutex_lock(&t->mu);
    material old = t->cur;
    t->cur = m;
    t->gen++;
    pthread_mutex_unlock(&t->mu);
    material_clear(&old);
    return LKV_OK;
}

int lkv_tls_mutual(const lkv_tls *t)
{
    return t && t->ca_path[0];
}

int64_t lkv_tls_not_after(const lkv_tls *t)
{
    return t ? t->cur.not_after : 0;
}

int lkv_tls_if_newer(lkv_tls *t, uint64_t *seen,
                     void (*fn)(void *ud, const char *cert, const char *key, const char *ca),
                     void *ud)
{
    int called = 0;
    pthread_mutex_lock(&t->mu);
    if (*seen != t->gen) {
        fn(ud, t->cur.cert, t->cur.key, t->cur.ca);
        *seen = t->gen;
        called = 1;
    }
    pthread_mutex_unlock(&t->mu);
    return called;
}

void lkv_tls_free(lkv_tls *t)
{
    if (!t)
        return;
    material_clear(&t->cur);
    pthread_mutex_destroy(&t->mu);
    free(t);
}
