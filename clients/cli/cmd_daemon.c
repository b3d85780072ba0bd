/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cmd_daemon.c - the `latticekv` commands that talk to a running latticekvd:
 * put, get, lookup, delete, stats, bench and demo. All take --addr ADDR
 * (host:port or unix:PATH) and go through the C client (lkv_client.h) only.
 *
 * Exit status follows cli.h: 0 done, 1 the daemon (or the data) said no,
 * 2 usage. A daemon error is printed as one line, "CODE: message", where
 * the message is the daemon's own (it names the field and the value).
 * Validation of tensors is left to the daemon on purpose: the CLI sends
 * what it is given, so what a user sees is the daemon's verdict.
 */
#include "cli.h"
#include "lkv_bench.h"
#include "lkv_client.h"
#include "lkv_codec.h"
#include "lkv_load.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_ADDR "127.0.0.1:50051"

/* ------------------------------------------------------------------------ */
/* Shared pieces                                                             */
/* ------------------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int rpc_error(const lkv_client_error *e)
{
    return lkv_cli_error(1, "%s: %s", lkv_rpc_code_name(e->code), e->msg);
}

/* The options every daemon command takes, appended to its usage. */
static const char connect_usage[] =
    "  --addr ADDR        host:port or unix:PATH (default " DEFAULT_ADDR ")\n"
    "  --timeout-ms MS    deadline of each call (default 10000; 0 = none): a daemon that\n"
    "                     stops answering fails the command with DEADLINE_EXCEEDED\n"
    "  --keepalive-ms MS  ping interval while a call waits (default 30000, at least 2000;\n"
    "                     0 = no pings); an unanswered ping fails the call with UNAVAILABLE\n"
    "  --tls-ca FILE      PEM CA of the daemon's certificate: connect with TLS\n"
    "  --tls-cert FILE    this client's PEM certificate (mutual TLS; with --tls-key)\n"
    "  --tls-key FILE     its PEM private key\n"
    "  --tls-server-name NAME  name to verify in the daemon's certificate (default: the host)\n"
    "  --token-file FILE  bearer token (first line of FILE); else $LATTICEKV_TOKEN if set.\n"
    "                     The token is sent as \"authorization: Bearer ...\", never printed\n";

/* The connection options every daemon command accepts besides its own. */
static const char *const security_opts[] = {"tls-ca",          "tls-cert",   "tls-key",
                                            "tls-server-name", "token-file", NULL};

/* TLS and token settings of this run (daemon_check fills them); every
 * client the command makes starts from these. */
static lkv_client_options g_conn;
static char g_token[1024];

/* The token: first line of --token-file, else $LATTICEKV_TOKEN. 0 when
 * fine (or none), else the error is printed (naming the file, never the
 * token) and the exit status returned. */
static int load_token(int argc, char **argv)
{
    const char *file = lkv_cli_opt(argc, argv, "token-file");
    const char *env = getenv("LATTICEKV_TOKEN");
    g_token[0] = '\0';
    if (file) {
        FILE *f = fopen(file, "r");
        if (!f)
            return lkv_cli_error(2, "--token-file=%s: %s", file, strerror(errno));
        const int got = fgets(g_token, sizeof g_token, f) != NULL;
        fclose(f);
        if (!got)
            return lkv_cli_error(2, "--token-file=%s is empty", file);
    } else if (env) {
        snprintf(g_token, sizeof g_token, "%s", env);
    } else {
        return 0;
    }
    size_t n = strlen(g_token);
    while (n && (g_token[n - 1] == '\n' || g_token[n - 1] == '\r' || g_token[n - 1] == ' '))
        g_token[--n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)g_token[i] <= 0x20 || (unsigned char)g_token[i] >= 0x7f) {
            n = 0;
            break;
        }
    if (n == 0)
        return lkv_cli_error(2, "%s: the token is empty or has spaces or non-ASCII bytes",
                             file ? "--token-file" : "LATTICEKV_TOKEN");
    g_conn.token = g_token;
    return 0;
}

/* Prints a daemon command's usage and the connection options; exit 0. */
static int daemon_help(const char *usage)
{
    fputs(usage, stdout);
    fputs(connect_usage, stdout);
    return 0;
}

/* lkv_cli_check, then the connection options' values: a bad one is a usage
 * error (exit 2) found before any work. */
static int daemon_check(int argc, char **argv, const char *const *known, const char *const *flags)
{
    unsigned long long v;
    const char *s;
    const char *all[64];
    size_t n = 0;
    for (; known[n] && n < 48; n++)
        all[n] = known[n];
    for (size_t k = 0; security_opts[k]; k++)
        all[n++] = security_opts[k];
    all[n] = NULL;
    if (lkv_cli_check(argc, argv, all, flags))
        return 2;
    memset(&g_conn, 0, sizeof g_conn);
    g_conn.tls_ca_file = lkv_cli_opt(argc, argv, "tls-ca");
    g_conn.tls_cert_file = lkv_cli_opt(argc, argv, "tls-cert");
    g_conn.tls_key_file = lkv_cli_opt(argc, argv, "tls-key");
    g_conn.tls_server_name = lkv_cli_opt(argc, argv, "tls-server-name");
    if (!g_conn.tls_cert_file != !g_conn.tls_key_file)
        return lkv_cli_error(2, "--tls-cert and --tls-key go together");
    if (g_conn.tls_cert_file && !g_conn.tls_ca_file)
        return lkv_cli_error(2, "--tls-cert needs --tls-ca (mutual TLS is TLS)");
    if (load_token(argc, argv))
        return 2;
    if (((s = lkv_cli_opt(argc, argv, "timeout-ms")) &&
         !lkv_cli_u64("timeout-ms", s, 0, UINT32_MAX - 1, &v)) ||
        ((s = lkv_cli_opt(argc, argv, "keepalive-ms")) &&
         !lkv_cli_u64("keepalive-ms", s, 0, UINT32_MAX - 1, &v)))
        return 2;
    return 0;
}

/* Creates the client of --addr (default DEFAULT_ADDR) with --timeout-ms and
 * --keepalive-ms; 0 turns either off, absent keeps the library's default. */
static lkv_client *connect_addr(int argc, char **argv, int own_connection)
{
    const char *addr = lkv_cli_opt(argc, argv, "addr");
    const char *tmo = lkv_cli_opt(argc, argv, "timeout-ms");
    const char *ka = lkv_cli_opt(argc, argv, "keepalive-ms");
    unsigned long long t = 0, k = 0;
    if ((tmo && !lkv_cli_u64("timeout-ms", tmo, 0, UINT32_MAX - 1, &t)) ||
        (ka && !lkv_cli_u64("keepalive-ms", ka, 0, UINT32_MAX - 1, &k)))
        return NULL;
    lkv_client_options o = g_conn;
    o.own_connection = own_connection;
    if (tmo)
        o.timeout_ms = t ? (uint32_t)t : LKV_CLIENT_NO_TIMEOUT;
    if (ka)
        o.keepalive_time_ms = k ? (uint32_t)k : LKV_CLIENT_NO_KEEPALIVE;
    lkv_client *c = NULL;
    lkv_client_error e;
    if (lkv_client_create(addr ? addr : DEFAULT_ADDR, &o, &c, &e) != LKV_RPC_OK) {
        rpc_error(&e);
        return NULL;
    }
    return c;
}

static int parse_dtype(const char *name, const char *s, int *out)
{
    if (!strcmp(s, "f32") || !strcmp(s, "fp32") || !strcmp(s, "float32"))
        *out = LKV_DTYPE_FP32;
    else if (!strcmp(s, "f16") || !strcmp(s, "fp16") || !strcmp(s, "float16"))
        *out = LKV_DTYPE_FP16;
    else if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16"))
        *out = LKV_DTYPE_BF16;
    else
        return lkv_cli_error(2, "--%s=%s is not one of f32, f16, bf16", name, s) * 0;
    return 1;
}

/* --variant, --q and --profile; absent ones stay 0 (the daemon's default;
 * profile 0 is profile 1). Only commands that list "profile" as known
 * accept --profile. */
static int parse_params(int argc, char **argv, lkv_client_params *p)
{
    const char *v = lkv_cli_opt(argc, argv, "variant");
    const char *q = lkv_cli_opt(argc, argv, "q");
    const char *pr = lkv_cli_opt(argc, argv, "profile");
    unsigned long long qv = 0, prof = 0;
    p->variant = 0;
    if (pr && !lkv_cli_u64("profile", pr, 1, 2, &prof))
        return 0;
    p->profile = (uint32_t)prof;
    if (v) {
        if (!strcmp(v, "e8") || !strcmp(v, "E8"))
            p->variant = LKV_VARIANT_E8;
        else if (!strcmp(v, "d4") || !strcmp(v, "D4"))
            p->variant = LKV_VARIANT_D4;
        else
            return lkv_cli_error(2, "--variant=%s is not one of e8, d4", v) * 0;
    }
    if (q && !lkv_cli_u64("q", q, LKV_Q_MIN, LKV_Q_MAX, &qv))
        return 0;
    p->q = (uint32_t)qv;
    return 1;
}

static int parse_shape(const char *s, lkv_tensor *t)
{
    t->ndim = 0;
    const char *p = s;
    while (*p) {
        if (t->ndim == LKV_CLIENT_MAX_NDIM)
            return lkv_cli_error(2, "--shape=%s has more than %u dimensions", s,
                                 LKV_CLIENT_MAX_NDIM) *
                   0;
        char *end = NULL;
        if (*p < '0' || *p > '9')
            return lkv_cli_error(2, "--shape=%s is not a comma-separated list of sizes", s) * 0;
        t->shape[t->ndim++] = strtoull(p, &end, 10);
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            return lkv_cli_error(2, "--shape=%s is not a comma-separated list of sizes", s) * 0;
    }
    if (!t->ndim)
        return lkv_cli_error(2, "--shape is empty") * 0;
    return 1;
}

static lkv_key key_of(const char *s)
{
    return (lkv_key){s, strlen(s)};
}

/* ------------------------------------------------------------------------ */
/* put / get / lookup / delete / stats                                       */
/* ------------------------------------------------------------------------ */

static const char put_usage[] =
    "usage: latticekv put --addr ADDR --key KEY [--ns NS] --in FILE\n"
    "                     (--in-dtype f32|f16|bf16 (--dim D | --shape N,..,D) [--variant e8|d4] "
    "[--q Q]\n"
    "                      [--profile 1|2] | --coded) [--timeout-ms MS] [--keepalive-ms MS]\n"
    "Stores a raw little-endian array (the daemon encodes it) or, with --coded, a container\n"
    "made by `latticekv codec encode` (either profile, any --format; the container names\n"
    "it). Prints the stored size. --q is 1..1023 (default: the daemon's), --dim 1..1024,\n"
    "--profile 1 (default: fixed-size records) or 2 (E8 only, entropy-coded, variable size;\n"
    "the daemon writes container version 3).\n";

int lkv_cli_put(int argc, char **argv)
{
    static const char *const known[] = {
        "addr", "timeout-ms", "keepalive-ms", "key", "ns",      "in", "in-dtype",
        "dim",  "shape",      "variant",      "q",   "profile", NULL};
    static const char *const flags[] = {"coded", "help", NULL};
    if (lkv_cli_wants_help(argc, argv))
        return daemon_help(put_usage);
    if (daemon_check(argc, argv, known, flags))
        return 2;
    const char *key = lkv_cli_opt(argc, argv, "key");
    const char *in = lkv_cli_opt(argc, argv, "in");
    const int coded = lkv_cli_flag(argc, argv, "coded");
    if (!key || !in)
        return lkv_cli_error(2, "put needs --key and --in (see latticekv put --help)");

    lkv_tensor t = {0};
    lkv_client_params params = {0};
    if (!coded) {
        const char *dts = lkv_cli_opt(argc, argv, "in-dtype");
        const char *shape = lkv_cli_opt(argc, argv, "shape");
        const char *dim = lkv_cli_opt(argc, argv, "dim");
        if (!dts)
            return lkv_cli_error(2, "put needs --in-dtype (or --coded)");
        if (!shape && !dim)
            return lkv_cli_error(2, "put needs --dim D or --shape N,..,D (or --coded)");
        if (!parse_dtype("in-dtype", dts, &t.dtype) || !parse_params(argc, argv, &params))
            return 2;
        if (shape && !parse_shape(shape, &t))
            return 2;
        if (!shape) {
            unsigned long long d = 0;
            if (!lkv_cli_u64("dim", dim, 1, LKV_DIM_MAX, &d))
                return 2;
            t.ndim = 2;
            t.shape[1] = d;
        }
    }
    size_t len = 0;
    void *buf = lkv_cli_read_file(in, &len);
    if (!buf)
        return 1;
    if (!coded && t.ndim == 2 && !lkv_cli_opt(argc, argv, "shape")) {
        const size_t row = (size_t)t.shape[1] * lkv_dtype_size((lkv_dtype)t.dtype);
        if (len % row) {
            free(buf);
            return lkv_cli_error(1,
                                 "%s holds %zu bytes, not a whole number of %llu-element %s "
                                 "vectors",
                                 in, len, (unsigned long long)t.shape[1],
                                 lkv_dtype_name((lkv_dtype)t.dtype));
        }
        t.shape[0] = len / row;
    }
    t.data = buf;
    t.data_bytes = len;

    lkv_client *c = connect_addr(argc, argv, 0);
    if (!c) {
        free(buf);
        return 1;
    }
    const char *ns = lkv_cli_opt(argc, argv, "ns");
    uint64_t stored = 0;
    lkv_client_error e;
    const int rc = coded ? lkv_client_put_coded(c, ns, key_of(key), buf, len, &stored, &e)
                         : lkv_client_put(c, ns, key_of(key), &t, &params, &stored, &e);
    lkv_client_free(c);
    free(buf);
    if (rc)
        return rpc_error(&e);
    printf("put key=%s bytes_in=%zu coded_bytes=%llu\n", key, len, (unsigned long long)stored);
    return 0;
}

static const char get_usage[] =
    "usage: latticekv get --addr ADDR --key KEY [--ns NS] --out FILE [--out-dtype f32|f16|bf16]\n"
    "                     [--coded] [-f|--force] [--timeout-ms MS] [--keepalive-ms MS]\n"
    "Writes the block as a raw little-endian array (or, with --coded, the stored container)\n"
    "and prints its dtype, shape and tier. An existing --out file is not overwritten without\n"
    "-f/--force (\"-\" is stdout).\n";

int lkv_cli_get(int argc, char **argv)
{
    static const char *const known[] = {"addr", "timeout-ms", "keepalive-ms", "key",
                                        "ns",   "out",        "out-dtype",    NULL};
    static const char *const flags[] = {"coded", "force", "help", NULL};
    if (lkv_cli_wants_help(argc, argv))
        return daemon_help(get_usage);
    if (daemon_check(argc, argv, known, flags))
        return 2;
    const char *key = lkv_cli_opt(argc, argv, "key");
    const char *out = lkv_cli_opt(argc, argv, "out");
    const char *ods = lkv_cli_opt(argc, argv, "out-dtype");
    const int coded = lkv_cli_flag(argc, argv, "coded");
    const int force = lkv_cli_flag(argc, argv, "force");
    int odt = 0;
    if (!key || !out)
        return lkv_cli_error(2, "get needs --key and --out (see latticekv get --help)");
    if (ods && !parse_dtype("out-dtype", ods, &odt))
        return 2;
    if (ods && coded)
        return lkv_cli_error(2, "--out-dtype and --coded exclude each other");
    if (lkv_cli_check_out(out, force))
        return 1;
    lkv_client *c = connect_addr(argc, argv, 0);
    if (!c)
        return 1;
    const char *ns = lkv_cli_opt(argc, argv, "ns");
    lkv_client_error e;
    int rc;
    /* The summary goes to stderr when the data itself goes to stdout. */
    FILE *info = strcmp(out, "-") == 0 ? stderr : stdout;
    if (coded) {
        lkv_buf b = {0};
        rc = lkv_client_get_coded(c, ns, key_of(key), &b, &e);
        lkv_client_free(c);
        if (rc)
            return rpc_error(&e);
        rc = lkv_cli_write_file(out, b.data, b.len, force);
        if (!rc)
            fprintf(info, "get key=%s coded_bytes=%zu\n", key, b.len);
        lkv_buf_clear(&b);
        return rc;
    }
    lkv_tensor t = {0};
    char tier[LKV_CLIENT_TIER_MAX] = "";
    rc = lkv_client_get(c, ns, key_of(key), odt, &t, tier, &e);
    lkv_client_free(c);
    if (rc)
        return rpc_error(&e);
    rc = lkv_cli_write_file(out, t.data, t.data_bytes, force);
    if (!rc) {
        fprintf(info, "get key=%s dtype=%s shape=", key, lkv_dtype_name((lkv_dtype)t.dtype));
        for (uint32_t i = 0; i < t.ndim; i++)
            fprintf(info, "%s%llu", i ? "," : "", (unsigned long long)t.shape[i]);
        fprintf(info, " bytes=%zu tier=%s\n", t.data_bytes, tier[0] ? tier : "-");
    }
    lkv_tensor_clear(&t);
    return rc;
}

static const char lookup_usage[] =
    "usage: latticekv lookup --addr ADDR [--ns NS] --keys K1,K2,... [--timeout-ms MS]\n"
    "Prints how many keys from the start are all present (prefix_hits), then one line per key.\n";

int lkv_cli_lookup(int argc, char **argv)
{
    static const char *const known[] = {"addr", "timeout-ms", "keepalive-ms", "ns", "keys", NULL};
    static const char *const flags[] = {"help", NULL};
    if (lkv_cli_wants_help(argc, argv))
        return daemon_help(lookup_usage);
    if (daemon_check(argc, argv, known, flags))
        return 2;
    const char *list = lkv_cli_opt(argc, argv, "keys");
    if (!list || !*list)
        return lkv_cli_error(2, "lookup needs --keys K1,K2,...");
    char *copy = strdup(list);
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    lkv_key *keys = calloc(n, sizeof *keys);
    uint8_t *present = calloc(n, 1);
    if (!copy || !keys || !present) {
        free(copy), free(keys), free(present);
        return lkv_cli_error(1, "out of memory");
    }
    size_t i = 0;
    for (char *tok = copy, *next; tok; tok = next) {
        next = strchr(tok, ',');
        if (next)
            *next++ = '\0';
        keys[i++] = key_of(tok);
    }
    int rc = 1;
    lkv_client *c = connect_addr(argc, argv, 0);
    if (c) {
        uint32_t hits = 0;
        lkv_client_error e;
        if (lkv_client_lookup(c, lkv_cli_opt(argc, argv, "ns"), keys, n, &hits, present, &e)) {
            rpc_error(&e);
        } else {
            printf("prefix_hits=%u\n", hits);
            for (i = 0; i < n; i++)
                printf("%s %s\n", (const char *)keys[i].data, present[i] ? "present" : "absent");
            rc = 0;
        }
        lkv_client_free(c);
    }
    free(copy), free(keys), free(present);
    return rc;
}

static const char delete_usage[] =
    "usage: latticekv delete --addr ADDR --key KEY [--ns NS] [--timeout-ms MS]\n"
    "Prints deleted=true when the key existed, deleted=false otherwise (both exit 0).\n";

int lkv_cli_delete(int argc, char **argv)
{
    static const char *const known[] = {"addr", "timeout-ms", "keepalive-ms", "key", "ns", NULL};
    static const char *const flags[] = {"help", NULL};
    if (lkv_cli_wants_help(argc, argv))
        return daemon_help(delete_usage);
    if (daemon_check(argc, argv, known, flags))
        return 2;
    const char *key = lkv_cli_opt(argc, argv, "key");
    if (!key)
        return lkv_cli_error(2, "delete needs --key");
    lkv_client *c = connect_addr(argc, argv, 0);
    if (!c)
        return 1;
    int deleted = 0;
    lkv_client_error e;
    const int rc = lkv_client_delete(c, lkv_cli_opt(argc, argv, "ns"), key_of(key), &deleted, &e);
    lkv_client_free(c);
    if (rc)
        return rpc_error(&e);
    printf("deleted=%s\n", deleted ? "true" : "false");
    return 0;
}

static const char stats_usage[] =
    "usage: latticekv stats --addr ADDR [--json] [--timeout-ms MS]\n"
    "Prints the daemon's counters (one per line, or one JSON object).\n";

int lkv_cli_stats(int argc, char **argv)
{
    static const char *const known[] = {"addr", "timeout-ms", "keepalive-ms", NULL};
    static const char *const flags[] = {"json", "help", NULL};
    if (lkv_cli_wants_help(argc, argv))
        return daemon_help(stats_usage);
    if (daemon_check(argc, argv, known, flags))
        return 2;
    lkv_client *c = connect_addr(argc, argv, 0);
    if (!c)
        return 1;
    lkv_client_stats st;
    lkv_client_error e;
    const int rc = lkv_client_stats_get(c, &st, &e);
    lkv_client_free(c);
    if (rc)
        return rpc_error(&e);
    const uint64_t v[] = {st.uptime_ms,       st.requests, st.errors,         st.raw_bytes_in,
                          st.coded_bytes_out, st.batches,  st.batched_vectors};
    static const char *const names[] = {"uptime_ms",      "requests",        "errors",
                                        "raw_bytes_in",   "coded_bytes_out", "batches",
                                        "batched_vectors"};
    if (lkv_cli_flag(argc, argv, "json")) {
        printf("{\"version\": \"%s\", \"backend\": \"%s\"", st.version, st.backend);
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
            printf(", \"%s\": %llu", names[i], (unsigned long long)v[i]);
        printf(", \"tiers\": [");
        for (size_t i = 0; i < st.n_tiers; i++) {
            const lkv_client_tier *t = &st.tiers[i];
            printf("%s{\"name\": \"%s\", \"capacity_bytes\": %llu, \"used_bytes\": %llu, "
                   "\"blocks\": %llu, \"hits\": %llu, \"misses\": %llu, \"evictions\": %llu, "
                   "\"errors\": %llu, \"dropped_blocks\": %llu, \"lost_blocks\": %llu, "
                   "\"link\": \"%s\"}",
                   i ? ", " : "", t->name, (unsigned long long)t->capacity_bytes,
                   (unsigned long long)t->used_bytes, (unsigned long long)t->blocks,
                   (unsigned long long)t->hits, (unsigned long long)t->misses,
                   (unsigned long long)t->evictions, (unsigned long long)t->errors,
                   (unsigned long long)t->dropped_blocks, (unsigned long long)t->lost_blocks,
                   t->link);
        }
        printf("]}\n");
    } else {
        printf("version %s\nbackend %s\n", st.version, st.backend);
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
            printf("%s %llu\n", names[i], (unsigned long long)v[i]);
        /* One row per tier, top down. */
        printf("\n%-6s %14s %14s %9s %9s %9s %9s %7s %7s %7s %s\n", "tier", "capacity", "used",
               "blocks", "hits", "misses", "evicted", "errors", "dropped", "lost", "link");
        for (size_t i = 0; i < st.n_tiers; i++) {
            const lkv_client_tier *t = &st.tiers[i];
            printf("%-6s %14llu %14llu %9llu %9llu %9llu %9llu %7llu %7llu %7llu %s\n", t->name,
                   (unsigned long long)t->capacity_bytes, (unsigned long long)t->used_bytes,
                   (unsigned long long)t->blocks, (unsigned long long)t->hits,
                   (unsigned long long)t->misses, (unsigned long long)t->evictions,
                   (unsigned long long)t->errors, (unsigned long long)t->dropped_blocks,
                   (unsigned long long)t->lost_blocks, t->link[0] ? t->link : "-");
        }
    }
    lkv_client_stats_clear(&st);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* bench                                                                     */
/* ------------------------------------------------------------------------ */

static const char bench_usage[] =
    "usage: latticekv bench --addr ADDR [--clients N] [--requests N] [--tokens T] [--heads H]\n"
    "                       [--dim D] [--op put|get|both] [--variant e8|d4] [--q Q] [--ns NS]\n"
    "                       [--profile 1|2] [--stream N] [--no-progress]\n"
    "N clients (own connections) each run --requests Put and/or Get calls of one KV block\n"
    "(K and V, T tokens x H heads x D, bf16). Prints bf16-equivalent GB/s and p50/p99 latency;\n"
    "a progress bar goes to stderr. Defaults: 8 clients, 200 requests, 16 tokens, 8 heads, 128.\n"
    "--stream N: each request is one PutStream/GetStream call of N blocks (default: unary).\n"
    "The progress bar is drawn only when stderr is a terminal (never into a file or a pipe).\n";

enum { OP_PUT = 1, OP_GET = 2 };

typedef struct bench_worker {
    pthread_t tid;
    int id, ops;
    const char *addr;
    const lkv_load_spec *spec;
    size_t requests;
    double *lat_put, *lat_get; /* requests entries each */
    size_t done;               /* read by the progress thread */
    int rc;
    lkv_client_error err;
} bench_worker;

/* One client: its own connection, one block (lkv_load.h, the load
 * service_bench runs), --requests Puts and/or Gets of it. */
static void *bench_run(void *arg)
{
    bench_worker *w = arg;
    lkv_client *c = NULL;
    lkv_client_options o = g_conn;
    o.own_connection = 1;
    lkv_load l = {0};
    char prefix[32];
    snprintf(prefix, sizeof prefix, "bench-%d", w->id);
    w->rc = lkv_client_create(w->addr, &o, &c, &w->err);
    if (!w->rc && (w->rc = lkv_load_init(&l, w->spec, c, prefix, 1000u + (uint64_t)w->id)))
        w->err = l.err;
    if (!w->rc && !(w->ops & OP_PUT) && (w->rc = lkv_load_put(&l))) /* get-only: seed the keys */
        w->err = l.err;
    for (size_t i = 0; !w->rc && i < w->requests; i++) {
        if (w->ops & OP_PUT) {
            const double t0 = now_s();
            w->rc = lkv_load_put(&l);
            w->lat_put[i] = now_s() - t0;
        }
        if (!w->rc && (w->ops & OP_GET)) {
            const double t0 = now_s();
            w->rc = lkv_load_get(&l);
            w->lat_get[i] = now_s() - t0;
        }
        if (w->rc)
            w->err = l.err;
        __atomic_store_n(&w->done, i + 1, __ATOMIC_RELAXED);
    }
    lkv_load_free(&l);
    lkv_client_free(c);
    return NULL;
}

/* Draws "[#####.....]  42% 84/200 calls" on stderr, on one line. */
static void progress_bar(size_t done, size_t total, double elapsed)
{
    const int width = 30;
    const int fill = total ? (int)((double)width * (double)done / (double)total) : width;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r[%s] %3d%% %zu/%zu requests %.1fs", bar,
            total ? (int)(100.0 * (double)done / (double)total) : 100, done, total, elapsed);
    fflush(stderr);
}

static void print_lat(const char *op, double *lat, size_t n, double bytes, double wall)
{
    lkv_bench_sort(lat, n);
    printf("%-4s %8zu calls %9.3f GB/s bf16  p50 %8.3f ms  p99 %8.3f ms\n", op, n,
           bytes / wall / 1e9, lkv_bench_quantile(lat, n, 0.50) * 1e3,
           lkv_bench_quantile(lat, n, 0.99) * 1e3);
}

int lkv_cli_bench(int argc, char **argv)
{
    static const char *const known[] = {
        "addr",   "timeout-ms", "keepalive-ms", "clients", "requests",
        "tokens", "heads",      "dim",          "op",      "variant",
        "q",      "ns",         "stream",       "profile", NULL};
    static const char *const flags[] = {"no-progress", "help", NULL};
    if (lkv_cli_wants_help(argc, argv))
        return daemon_help(bench_usage);
    if (daemon_check(argc, argv, known, flags))
        return 2;
    unsigned long long clients = 8, requests = 200, tokens = 16, heads = 8, dim = 128, stream = 0;
    const char *s;
    if (((s = lkv_cli_opt(argc, argv, "clients")) &&
         !lkv_cli_u64("clients", s, 1, 1024, &clients)) ||
        ((s = lkv_cli_opt(argc, argv, "requests")) &&
         !lkv_cli_u64("requests", s, 1, 100000000, &requests)) ||
        ((s = lkv_cli_opt(argc, argv, "tokens")) &&
         !lkv_cli_u64("tokens", s, 1, 1u << 20, &tokens)) ||
        ((s = lkv_cli_opt(argc, argv, "heads")) && !lkv_cli_u64("heads", s, 1, 1024, &heads)) ||
        ((s = lkv_cli_opt(argc, argv, "dim")) && !lkv_cli_u64("dim", s, 1, 1u << 16, &dim)) ||
        ((s = lkv_cli_opt(argc, argv, "stream")) && !lkv_cli_u64("stream", s, 0, 4096, &stream)))
        return 2;
    int ops = OP_PUT | OP_GET;
    if ((s = lkv_cli_opt(argc, argv, "op"))) {
        if (!strcmp(s, "put"))
            ops = OP_PUT;
        else if (!strcmp(s, "get"))
            ops = OP_GET;
        else if (strcmp(s, "both"))
            return lkv_cli_error(2, "--op=%s is not one of put, get, both", s);
    }
    lkv_client_params params;
    if (!parse_params(argc, argv, &params))
        return 2;
    const char *addr = lkv_cli_opt(argc, argv, "addr");
    const char *ns = lkv_cli_opt(argc, argv, "ns");
    /* The benchmarks' client set-up (lkv_bench.h): without it each block
     * above 128 KiB is a fresh mmap in this process, which halved the Gets
     * measured here; before the first gRPC call. */
    (void)lkv_bench_tune_clients();
    /* Fail fast, with one clear line, when nothing serves at the address. */
    lkv_client *probe = connect_addr(argc, argv, 0);
    if (!probe)
        return 1;
    lkv_client_error e;
    if (lkv_client_wait_ready(probe, 2000, &e)) {
        lkv_client_free(probe);
        return rpc_error(&e);
    }
    lkv_client_free(probe);

    const size_t n = (size_t)clients, per = (size_t)requests;
    bench_worker *w = calloc(n, sizeof *w);
    double *lat = calloc(2 * n * per, sizeof *lat);
    if (!w || !lat) {
        free(w), free(lat);
        return lkv_cli_error(1, "out of memory for %zu x %zu latencies", n, per);
    }
    /* The bar redraws one line with \r: only a terminal shows that as a
     * bar; a file or a pipe would collect every frame. */
    const int show = !lkv_cli_flag(argc, argv, "no-progress") && isatty(STDERR_FILENO);
    const lkv_load_spec spec = {.ns = ns,
                                .params = &params,
                                .tokens = (size_t)tokens,
                                .heads = (size_t)heads,
                                .dim = (size_t)dim,
                                .stream = (size_t)stream};
    const double t0 = now_s();
    size_t started = 0;
    for (size_t i = 0; i < n; i++) {
        w[i] = (bench_worker){.id = (int)i,
                              .ops = ops,
                              .addr = addr ? addr : DEFAULT_ADDR,
                              .spec = &spec,
                              .requests = per,
                              .lat_put = lat + 2 * i * per,
                              .lat_get = lat + (2 * i + 1) * per};
        if (pthread_create(&w[i].tid, NULL, bench_run, &w[i]) != 0)
            break;
        started++;
    }
    /* The progress bar polls the workers' counters; it never blocks them. */
    for (;;) {
        size_t done = 0, finished = 0;
        for (size_t i = 0; i < started; i++) {
            const size_t d = __atomic_load_n(&w[i].done, __ATOMIC_RELAXED);
            done += d;
            finished += d == per || w[i].rc;
        }
        if (show)
            progress_bar(done, n * per, now_s() - t0);
        if (finished == started)
            break;
        const struct timespec nap = {0, 100 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    for (size_t i = 0; i < started; i++)
        pthread_join(w[i].tid, NULL);
    const double wall = now_s() - t0;
    if (show)
        fputc('\n', stderr);
    int rc = started == n ? 0 : lkv_cli_error(1, "could only start %zu of %zu clients", started, n);
    for (size_t i = 0; i < started && !rc; i++)
        if (w[i].rc)
            rc =
                lkv_cli_error(1, "client %zu: %s: %s", i, lkv_rpc_code_name(w[i].rc), w[i].err.msg);
    if (!rc) {
        const double one = 2.0 * (double)(tokens * heads * dim) * 2.0;
        const double block = one * (double)(stream ? stream : 1); /* bytes per call */
        printf("bench addr=%s clients=%zu requests=%zu block=2x%llux%llux%llu bf16 (%.0f KiB)%s",
               addr ? addr : DEFAULT_ADDR, n, per, tokens, heads, dim, one / 1024.0,
               stream ? "" : "\n");
        if (stream)
            printf(" x %llu blocks per stream call\n", stream);
        printf("wall=%.3fs; latencies are per call\n", wall);
        /* Gather each op's latencies contiguously for the percentiles. */
        double *all = malloc(n * per * sizeof *all);
        for (int op = OP_PUT; all && op <= OP_GET; op++) {
            if (!(ops & op))
                continue;
            for (size_t i = 0; i < n; i++)
                memcpy(all + i * per, op == OP_PUT ? w[i].lat_put : w[i].lat_get,
                       per * sizeof *all);
            print_lat(op == OP_PUT ? "put" : "get", all, n * per, block * (double)(n * per), wall);
        }
        if (ops == (OP_PUT | OP_GET))
            printf("put+get %.3f GB/s bf16 (in + out over the wall time)\n",
                   2.0 * block * (double)(n * per) / wall / 1e9);
        free(all);
    }
    free(w), free(lat);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* demo                                                                      */
/* ------------------------------------------------------------------------ */

static const char demo_usage[] =
    "usage: latticekv demo --addr ADDR [--tokens T] [--heads H] [--dim D] [--rounds N]\n"
    "                      [--variant e8|d4] [--q Q] [--timeout-ms MS]\n"
    "Generates a KV-like block (K and V, bf16), stores it in the daemon, reads it back and\n"
    "prints the compression ratio vs bf16, the relative error and the Put/Get throughput.\n";

int lkv_cli_demo(int argc, char **argv)
{
    static const char *const known[] = {"addr", "timeout-ms", "keepalive-ms", "tokens", "heads",
                                        "dim",  "rounds",     "variant",      "q",      NULL};
    static const char *const flags[] = {"help", NULL};
    if (lkv_cli_wants_help(argc, argv))
        return daemon_help(demo_usage);
    if (daemon_check(argc, argv, known, flags))
        return 2;
    unsigned long long tokens = 256, heads = 8, dim = 128, rounds = 20;
    const char *s;
    if (((s = lkv_cli_opt(argc, argv, "tokens")) &&
         !lkv_cli_u64("tokens", s, 1, 1u << 20, &tokens)) ||
        ((s = lkv_cli_opt(argc, argv, "heads")) && !lkv_cli_u64("heads", s, 1, 1024, &heads)) ||
        ((s = lkv_cli_opt(argc, argv, "dim")) && !lkv_cli_u64("dim", s, 1, LKV_DIM_MAX, &dim)) ||
        ((s = lkv_cli_opt(argc, argv, "rounds")) && !lkv_cli_u64("rounds", s, 1, 100000, &rounds)))
        return 2;
    lkv_client_params params;
    if (!parse_params(argc, argv, &params))
        return 2;
    lkv_client *c = connect_addr(argc, argv, 0);
    if (!c)
        return 1;
    lkv_client_error e;
    int rc = lkv_client_wait_ready(c, 5000, &e);
    const size_t elems = 2 * (size_t)(tokens * heads * dim);
    uint16_t *data = malloc(elems * sizeof *data);
    if (!rc && !data)
        rc = lkv_cli_error(1, "out of memory for %zu elements", elems) * 0 + 1;
    else if (rc)
        rc = rpc_error(&e);
    if (rc) {
        lkv_client_free(c);
        free(data);
        return rc;
    }
    if (lkv_load_fill_kv(data, (size_t)tokens, (size_t)heads, (size_t)dim, 42)) {
        lkv_client_free(c);
        free(data);
        return lkv_cli_error(1, "out of memory for the channel scales of %llu x %llu channels",
                             heads, dim);
    }
    lkv_tensor t;
    lkv_load_block_tensor(&t, data, (size_t)tokens, (size_t)heads, (size_t)dim);
    const lkv_key key = key_of("latticekv-demo");

    uint64_t coded = 0;
    lkv_tensor back = {0};
    char tier[LKV_CLIENT_TIER_MAX] = "";
    double put_s = 0, get_s = 0;
    for (unsigned long long r = 0; r < rounds && !rc; r++) {
        double t0 = now_s();
        rc = lkv_client_put(c, "demo", key, &t, &params, &coded, &e);
        put_s += now_s() - t0;
        if (rc)
            break;
        lkv_tensor_clear(&back);
        t0 = now_s();
        rc = lkv_client_get(c, "demo", key, LKV_DTYPE_BF16, &back, tier, &e);
        get_s += now_s() - t0;
    }
    /* The stored container says which parameters the daemon used. */
    lkv_container_info info = {0};
    if (!rc) {
        lkv_buf cb = {0};
        rc = lkv_client_get_coded(c, "demo", key, &cb, &e);
        lkv_diag diag;
        if (!rc && lkv_container_parse(cb.data, cb.len, &info, &diag) != LKV_OK)
            rc = lkv_cli_error(1, "the stored container does not parse: %s", diag.msg) * 0 - 1;
        lkv_buf_clear(&cb);
    }
    if (!rc) {
        int deleted = 0;
        rc = lkv_client_delete(c, "demo", key, &deleted, &e);
    }
    lkv_client_free(c);
    if (rc) {
        lkv_tensor_clear(&back);
        free(data);
        return rc < 0 ? 1 : rpc_error(&e);
    }
    if (back.data_bytes != t.data_bytes) {
        lkv_tensor_clear(&back);
        free(data);
        return lkv_cli_error(1, "Get returned %zu bytes for a %zu-byte block", back.data_bytes,
                             t.data_bytes);
    }
    double num = 0, den = 0;
    const uint16_t *y = back.data;
    for (size_t i = 0; i < elems; i++) {
        const double a = lkv_bf16_to_f32(data[i]), d = a - lkv_bf16_to_f32(y[i]);
        num += d * d;
        den += a * a;
    }
    const double raw = (double)t.data_bytes;
    printf("latticekv demo: block K,V x %llu tokens x %llu heads x %llu dims, bf16 = %.1f KiB\n",
           tokens, heads, dim, raw / 1024.0);
    printf("  stored        %llu bytes (%s, Q=%u, %u bits per vector)  ratio vs bf16 %.2fx"
           "  tier %s\n",
           (unsigned long long)coded, lkv_variant_name(info.params.variant), info.params.q,
           lkv_bits_per_vector(&info.params), raw / (double)coded, tier[0] ? tier : "-");
    printf("  rel. error    %.3e (sum |x - x'|^2 / sum |x|^2)\n", den > 0 ? num / den : 0.0);
    printf("  put           %.3f GB/s bf16  (%.3f ms per block)\n",
           raw * (double)rounds / put_s / 1e9, put_s / (double)rounds * 1e3);
    printf("  get           %.3f GB/s bf16  (%.3f ms per block)\n",
           raw * (double)rounds / get_s / 1e9, get_s / (double)rounds * 1e3);
    lkv_tensor_clear(&back);
    free(data);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* health                                                                    */
/* ------------------------------------------------------------------------ */

static const char health_usage[] =
    "usage: latticekv health --addr ADDR [--service NAME] [--timeout-ms MS]\n"
    "Asks grpc.health.v1.Health/Check and prints one line: SERVING, NOT_SERVING (the daemon\n"
    "is starting or draining) or UNKNOWN. Exit status 0 only when SERVING; 1 otherwise,\n"
    "including a daemon that cannot be reached (then an error line on stderr instead).\n"
    "--service names one service (latticekv.v1.KVStore, ...); default: the whole daemon.\n";

int lkv_cli_health(int argc, char **argv)
{
    static const char *const known[] = {"addr", "timeout-ms", "keepalive-ms", "service", NULL};
    static const char *const flags[] = {"help", NULL};
    if (lkv_cli_wants_help(argc, argv))
        return daemon_help(health_usage);
    if (daemon_check(argc, argv, known, flags))
        return 2;
    lkv_client *c = connect_addr(argc, argv, 0);
    if (!c)
        return 1;
    int serving = 0;
    lkv_client_error e;
    const int rc = lkv_client_health(c, lkv_cli_opt(argc, argv, "service"), &serving, &e);
    lkv_client_free(c);
    if (rc)
        return rpc_error(&e);
    /* The grpc.health.v1 ServingStatus values. */
    static const char *const names[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
    printf("%s\n", serving >= 0 && serving <= 3 ? names[serving] : "UNKNOWN");
    return serving == 1 ? 0 : 1;
}

/* ------------------------------------------------------------------------ */
/* push / pull: daemon to daemon                                             */
/* ------------------------------------------------------------------------ */

static const char push_usage[] =
    "usage: latticekv push --addr ADDR --to DEST [--ns NS] KEY... | --prefix P\n"
    "The daemon at ADDR sends the coded blocks of KEYs (or, with --prefix, every block of NS in\n"
    "its host memory whose key starts with P) to the daemon at DEST (host:port or unix:PATH,\n"
    "plaintext); only coded bytes cross and DEST stores them verified, not re-encoded.\n"
    "Prints one line per key (stored, or the code and why not) and a total; exits 0 when every\n"
    "key was stored, 3 when some were not.\n"
    "  --batch N          keys per call (default 64; the progress line advances per call)\n"
    "  --no-progress      no progress line (it is drawn only when stderr is a terminal)\n";

static const char pull_usage[] =
    "usage: latticekv pull --addr ADDR --from SRC [--ns NS] KEY...\n"
    "The daemon at ADDR fetches the coded blocks of KEYs from the daemon at SRC (host:port or\n"
    "unix:PATH, plaintext) and stores them verified, not re-encoded. Output and exit status as\n"
    "push.\n"
    "  --batch N          keys per call (default 64; the progress line advances per call)\n"
    "  --no-progress      no progress line (it is drawn only when stderr is a terminal)\n";

/* "[#####.....]  42% 84/200 keys 1.2 MB" on stderr, redrawn in place. */
static void transfer_progress(size_t done, size_t total, uint64_t bytes, double elapsed)
{
    const int width = 30;
    const int fill = total ? (int)((double)width * (double)done / (double)total) : width;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r[%s] %3d%% %zu/%zu keys %.1f MB %.1fs", bar,
            total ? (int)(100.0 * (double)done / (double)total) : 100, done, total,
            (double)bytes / 1e6, elapsed);
    fflush(stderr);
}

/* Splits argv into the options (kept in opt, for lkv_cli_check and
 * lkv_cli_opt) and the positional KEYs. An option takes the next word as
 * its value unless it is one of flags or written --name=value. */
static void split_positional(int argc, char **argv, const char *const *flags, char **opt,
                             int *n_opt, char **pos, size_t *n_pos)
{
    *n_opt = 0;
    *n_pos = 0;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0 || !argv[i][2]) {
            pos[(*n_pos)++] = argv[i];
            continue;
        }
        opt[(*n_opt)++] = argv[i];
        int is_flag = strchr(argv[i], '=') != NULL;
        for (size_t f = 0; flags[f] && !is_flag; f++)
            is_flag = strcmp(argv[i] + 2, flags[f]) == 0;
        if (!is_flag && i + 1 < argc)
            opt[(*n_opt)++] = argv[++i];
    }
}

static int transfer_cmd(int argc, char **argv, int pull)
{
    static const char *const known_push[] = {"addr", "timeout-ms", "keepalive-ms", "to",
                                             "ns",   "prefix",     "batch",        NULL};
    static const char *const known_pull[] = {"addr",  "timeout-ms", "keepalive-ms", "from", "ns",
                                             "batch", NULL};
    static const char *const flags[] = {"no-progress", "help", NULL};
    const char *usage = pull ? pull_usage : push_usage;
    if (lkv_cli_wants_help(argc, argv))
        return daemon_help(usage);
    char **opt = calloc((size_t)argc + 1, sizeof *opt);
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (!opt || !pos) {
        free(opt), free(pos);
        return lkv_cli_error(1, "out of memory");
    }
    int n_opt;
    size_t n_pos;
    split_positional(argc, argv, flags, opt, &n_opt, pos, &n_pos);
    int rc = 2;
    const char *peer = lkv_cli_opt(n_opt, opt, pull ? "from" : "to");
    const char *prefix = pull ? NULL : lkv_cli_opt(n_opt, opt, "prefix");
    const char *s = lkv_cli_opt(n_opt, opt, "batch");
    unsigned long long batch = 64;
    if (daemon_check(n_opt, opt, pull ? known_pull : known_push, flags) ||
        (s && !lkv_cli_u64("batch", s, 1, 1u << 20, &batch)))
        goto out;
    if (!peer || !*peer) {
        rc = lkv_cli_error(2, "%s needs --%s ADDR (the other daemon)", pull ? "pull" : "push",
                           pull ? "from" : "to");
        goto out;
    }
    if (prefix && n_pos) {
        rc = lkv_cli_error(2, "push takes KEYs or --prefix, not both");
        goto out;
    }
    if (!prefix && !n_pos) {
        rc = lkv_cli_error(2, "%s needs at least one KEY%s", pull ? "pull" : "push",
                           pull ? "" : " (or --prefix P)");
        goto out;
    }
    lkv_client *c = connect_addr(n_opt, opt, 0);
    if (!c) {
        rc = 1;
        goto out;
    }
    const char *ns = lkv_cli_opt(n_opt, opt, "ns");
    const int show = !lkv_cli_flag(n_opt, opt, "no-progress") && isatty(STDERR_FILENO);
    const size_t total = prefix ? 0 : n_pos;
    size_t done = 0, stored = 0, keys_seen = 0;
    uint64_t bytes = 0;
    const double t0 = now_s();
    rc = 0;
    lkv_key *keys = calloc(n_pos ? n_pos : 1, sizeof *keys);
    for (size_t i = 0; keys && i < n_pos; i++)
        keys[i] = key_of(pos[i]);
    if (!keys)
        rc = lkv_cli_error(1, "out of memory");
    /* A prefix is one call (the daemon lists the keys); KEYs go batch at a time. */
    while (keys && rc == 0 && (prefix ? done == 0 : done < total)) {
        const size_t n = prefix ? 0 : (total - done < batch ? total - done : (size_t)batch);
        const lkv_key pk = prefix ? key_of(prefix) : (lkv_key){NULL, 0};
        lkv_transfer t;
        lkv_client_error e;
        const int r =
            pull ? lkv_client_pull(c, peer, ns, keys + done, n, &t, &e)
                 : lkv_client_push(c, peer, ns, keys + done, n, prefix ? &pk : NULL, &t, &e);
        if (r) {
            if (show)
                fputc('\n', stderr);
            rc = rpc_error(&e);
            break;
        }
        for (size_t i = 0; i < t.n; i++) {
            const lkv_transfer_result *x = &t.results[i];
            if (x->code == LKV_RPC_OK)
                printf("%.*s stored %llu\n", (int)x->key.len, (const char *)x->key.data,
                       (unsigned long long)x->coded_bytes);
            else
                printf("%.*s %s: %s\n", (int)x->key.len, (const char *)x->key.data,
                       lkv_rpc_code_name(x->code), x->message);
        }
        stored += t.stored;
        bytes += t.coded_bytes;
        keys_seen += t.n;
        done += prefix ? 1 : n;
        lkv_transfer_clear(&t);
        if (show)
            transfer_progress(prefix ? keys_seen : done, prefix ? keys_seen : total, bytes,
                              now_s() - t0);
    }
    if (show)
        fputc('\n', stderr);
    if (rc == 0) {
        printf("stored=%zu/%zu coded_bytes=%llu\n", stored, keys_seen, (unsigned long long)bytes);
        rc = stored == keys_seen ? 0 : 3;
    }
    free(keys);
    lkv_client_free(c);
out:
    free(opt), free(pos);
    return rc;
}

int lkv_cli_push(int argc, char **argv)
{
    return transfer_cmd(argc, argv, 0);
}

int lkv_cli_pull(int argc, char **argv)
{
    return transfer_cmd(argc, argv, 1);
}
