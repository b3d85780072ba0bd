/* SPDX-License-Identifier: Apache-2.0 */
/*
 * config.c - latticekvd's settings, declared once.
 *
 * Design note. Every setting is one row of `settings[]`: its name, type,
 * bounds, default (as text, parsed by the same code as user input, so the
 * default shown by --help is exactly what runs), the offset of its field in
 * lkv_config, and a help line. From that one table come the command-line
 * flags (--host-mem-bytes), the environment variables
 * (LATTICEKV_HOST_MEM_BYTES), the config-file keys (host-mem-bytes = ...)
 * and the --help text; adding a setting is adding a row.
 *
 * Layers apply lowest first: defaults, config file, environment, flags. A
 * list setting (listen) given at a higher layer replaces the lower layer's
 * list instead of appending to it, so `--listen X` means "only X". Errors
 * name the setting as the user wrote it (flag, variable or file:line) and
 * the offending value.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lkv_config.h"
#include "lkv_log.h"

typedef enum cfg_type {
    CFG_LIST,   /* repeatable list: char[LKV_LISTEN_MAX][LKV_ADDR_MAX] + uint32 count */
    CFG_PATH,   /* one string */
    CFG_U64,    /* integer in [min, max] */
    CFG_SIZE,   /* byte size with K/M/G/T suffixes, in [min, max] */
    CFG_CHOICE, /* one of `choices`, stored as uint32 */
    CFG_MODE,   /* octal permission bits in [min, max], stored as uint64 */
    CFG_TCP,    /* one host:port or [v6]:port, or empty (off); a string */
} cfg_type;

typedef struct cfg_choice {
    const char *name;
    uint32_t value;
} cfg_choice;

typedef struct cfg_setting {
    const char *name; /* flag without "--"; file key */
    cfg_type type;
    uint64_t min, max;
    const char *def;
    size_t offset;
    const char *arg; /* metavariable in --help */
    const cfg_choice *choices;
    const char *help;
} cfg_setting;

static const cfg_choice backend_choices[] = {
    {"auto", LKV_BACKEND_AUTO}, {"cpu", LKV_BACKEND_CPU}, {"cuda", LKV_BACKEND_CUDA}, {NULL, 0}};
static const cfg_choice variant_choices[] = {
    {"e8", LKV_VARIANT_E8}, {"d4", LKV_VARIANT_D4}, {NULL, 0}};
static const cfg_choice level_choices[] = {{"error", LKV_LOG_ERROR},
                                           {"warn", LKV_LOG_WARN},
                                           {"info", LKV_LOG_INFO},
                                           {"debug", LKV_LOG_DEBUG},
                                           {NULL, 0}};
static const cfg_choice onoff_choices[] = {{"off", 0}, {"on", 1}, {NULL, 0}};
static const cfg_choice format_choices[] = {
    {"kv", LKV_LOG_FORMAT_KV}, {"json", LKV_LOG_FORMAT_JSON}, {NULL, 0}};

#define OFF(f) offsetof(lkv_config, f)

static const char *listen_check(const char *item);
static const char *redis_check(const char *item);
static const char *quota_check(const char *item);
static const cfg_choice fsync_choices[] = {{"never", 0}, {"batch", 1}, {"always", 2}, {NULL, 0}};
static const cfg_choice policy_choices[] = {{"write-through", 0}, {"write-back", 1}, {NULL, 0}};

static const cfg_setting settings[] = {
    {"listen", CFG_LIST, 0, 0, "127.0.0.1:50051,unix:/tmp/latticekvd.sock", OFF(listen), "ADDR",
     NULL, "address to serve on: host:port, [v6]:port or unix:PATH (repeatable)"},
    {"config", CFG_PATH, 0, 0, "", OFF(config_file), "FILE", NULL,
     "read 'key = value' settings from FILE (below environment and flags)"},
    {"backend", CFG_CHOICE, 0, 0, "auto", OFF(backend), "auto|cpu|cuda", backend_choices,
     "codec backend; auto = CUDA when a device is present, else the C codec"},
    {"host-mem-bytes", CFG_SIZE, 4096, UINT64_C(1) << 44, "1GiB", OFF(host_mem_bytes), "N", NULL,
     "capacity of the host-memory block store (LRU eviction)"},
    {"host-high-watermark", CFG_U64, 1, 100, "100", OFF(host_high_pct), "PCT", NULL,
     "host memory: a Put that would fill more than PCT% of host-mem-bytes evicts (LRU)"},
    {"host-low-watermark", CFG_U64, 1, 100, "100", OFF(host_low_pct), "PCT", NULL,
     "host memory: eviction goes down to PCT% of host-mem-bytes (at most the high "
     "watermark); 100/100 = evict only what each Put needs"},
    {"max-message-bytes", CFG_SIZE, 1024, INT32_MAX, "64MiB", OFF(max_message_bytes), "N", NULL,
     "largest gRPC message received or sent"},
    {"batch-max-vectors", CFG_U64, 1, UINT64_C(1) << 24, "4096", OFF(batch_max_vectors), "N", NULL,
     "most vectors in one codec launch; larger requests are split into chunks"},
    {"batch-max-wait-us", CFG_U64, 0, 1000000, "200", OFF(batch_max_wait_us), "N", NULL,
     "longest wait to coalesce work into a batch; 0 = batching off"},
    {"threads", CFG_U64, 0, 256, "0", OFF(threads), "N", NULL,
     "codec worker threads; 0 = number of CPU cores"},
    {"cuda-inline-vectors", CFG_U64, 0, 4096, "256", OFF(cuda_inline_vectors), "N", NULL,
     "cuda backend, no other batch in flight: batches of at most N vectors run on the C codec "
     "on the loop thread; 0 = all on the GPU"},
    {"default-variant", CFG_CHOICE, 0, 0, "e8", OFF(default_variant), "e8|d4", variant_choices,
     "lattice variant used when a request leaves it unspecified"},
    {"default-q", CFG_U64, LKV_Q_MIN, LKV_Q_MAX, "38", OFF(default_q), "N", NULL,
     "Q used when a request sends q_range = 0"},
    {"stream-window", CFG_U64, 1, 1024, "16", OFF(stream_window), "N", NULL,
     "requests of one stream processed at once (replies stay in order)"},
    {"max-key-bytes", CFG_SIZE, 1, 1u << 20, "1KiB", OFF(max_key_bytes), "N", NULL,
     "longest block key a request may name; longer keys are INVALID_ARGUMENT"},
    {"max-namespace-bytes", CFG_SIZE, 0, 1u << 16, "256", OFF(max_namespace_bytes), "N", NULL,
     "longest namespace a request may name; longer ones are INVALID_ARGUMENT"},
    {"shutdown-grace-ms", CFG_U64, 0, 3600000, "10000", OFF(shutdown_grace_ms), "N", NULL,
     "after SIGTERM, how long in-flight calls may finish before they are cancelled"},
    {"log-level", CFG_CHOICE, 0, 0, "info", OFF(log_level), "error|warn|info|debug", level_choices,
     "least severe log lines written to stderr"},
    {"log-format", CFG_CHOICE, 0, 0, "kv", OFF(log_format), "kv|json", format_choices,
     "log lines as key=value text or as one JSON object each"},
    {"unix-socket-mode", CFG_MODE, 0, 0777, "0660", OFF(unix_socket_mode), "MODE", NULL,
     "permission bits (octal) of the unix:PATH sockets the daemon creates"},
    {"reflection", CFG_CHOICE, 0, 0, "off", OFF(reflection), "off|on", onoff_choices,
     "serve gRPC server reflection (grpc.reflection.v1alpha) for grpcurl-style tools"},
    {"max-inflight-bytes", CFG_SIZE, 0, UINT64_C(1) << 44, "0", OFF(max_inflight_bytes), "N", NULL,
     "bytes of requests and replies in flight; beyond it requests get RESOURCE_EXHAUSTED; "
     "0 = host-mem-bytes/4, at least 2 x max-message-bytes"},
    /* Peer links, Push and Pull (server/peer.c). */
    {"peer-inflight-bytes", CFG_SIZE, 1, UINT64_C(1) << 40, "64MiB", OFF(peer_inflight_bytes), "N",
     NULL,
     "Push/Pull: bytes of coded blocks one transfer has read and not yet seen stored "
     "(at most one block more)"},
    /* The storage tiers (server/stack.c, docs/service.md). */
    {"gpu-mem-bytes", CFG_SIZE, 0, UINT64_C(1) << 44, "0", OFF(gpu_mem_bytes), "N", NULL,
     "GPU tier capacity in device memory, in front of host memory; needs the cuda backend; "
     "0 = no GPU tier"},
    {"gpu-high-watermark", CFG_U64, 1, 100, "100", OFF(gpu_high_pct), "PCT", NULL,
     "GPU tier: a Put that would fill more than PCT% of gpu-mem-bytes evicts (LRU) into host"},
    {"gpu-low-watermark", CFG_U64, 1, 100, "90", OFF(gpu_low_pct), "PCT", NULL,
     "GPU tier: eviction goes down to PCT% of gpu-mem-bytes (at most the high watermark)"},
    {"ssd-dir", CFG_PATH, 0, 0, "", OFF(ssd_dir), "DIR", NULL,
     "SSD tier: an existing directory for one file per block; empty = no SSD tier"},
    {"ssd-bytes", CFG_SIZE, 0, UINT64_C(1) << 50, "0", OFF(ssd_bytes), "N", NULL,
     "SSD tier capacity in file bytes (LRU eviction between the ssd watermarks); required "
     "with --ssd-dir"},
    {"ssd-high-watermark", CFG_U64, 1, 100, "100", OFF(ssd_high_pct), "PCT", NULL,
     "SSD tier: a write that would fill more than PCT% of ssd-bytes evicts (LRU)"},
    {"ssd-low-watermark", CFG_U64, 1, 100, "90", OFF(ssd_low_pct), "PCT", NULL,
     "SSD tier: eviction goes down to PCT% of ssd-bytes (at most the high watermark)"},
    {"ssd-fsync", CFG_CHOICE, 0, 0, "never", OFF(ssd_fsync), "never|batch|always", fsync_choices,
     "SSD tier: never = write + rename before the reply (survives kill -9); batch = group "
     "fdatasync; always = fdatasync per block (both also survive power loss)"},
    {"redis", CFG_LIST, 0, 0, "", OFF(redis), "redis://HOST:PORT", NULL,
     "Redis tier: a server, or Redis Cluster seeds (repeatable); empty = no Redis tier"},
    {"redis-password-file", CFG_PATH, 0, 0, "", OFF(redis_password_file), "FILE", NULL,
     "Redis tier: AUTH with the first line of FILE"},
    {"redis-queue-bytes", CFG_SIZE, 1, UINT64_C(1) << 44, "256MiB", OFF(redis_queue_bytes), "N",
     NULL,
     "Redis tier, write-back: bytes queued for Redis; beyond it the oldest remote copies are "
     "dropped and counted"},
    {"tier-policy", CFG_CHOICE, 0, 0, "write-through", OFF(tier_policy), "write-through|write-back",
     policy_choices,
     "write-through: a Put is acknowledged once the SSD tier (and Redis) have it; write-back: "
     "once host memory has it (SSD fed by evictions, Redis by a bounded queue)"},
    {"namespace-quota", CFG_LIST, 0, 0, "", OFF(namespace_quota), "NS=BYTES", NULL,
     "bytes a namespace may hold in host memory; beyond it Put is RESOURCE_EXHAUSTED "
     "(repeatable)"},
    /* Transport security and tokens: one group (tls.c, auth.c). */
    {"tls-cert", CFG_PATH, 0, 0, "", OFF(tls_cert), "FILE", NULL,
     "PEM certificate chain served on TCP listeners (TLS); re-read on SIGHUP"},
    {"tls-key", CFG_PATH, 0, 0, "", OFF(tls_key), "FILE", NULL,
     "PEM private key of --tls-cert; re-read on SIGHUP"},
    {"tls-client-ca", CFG_PATH, 0, 0, "", OFF(tls_client_ca), "FILE", NULL,
     "PEM CA certificates: TCP clients must present a certificate they sign (mutual TLS)"},
    {"insecure-listen", CFG_CHOICE, 0, 0, "off", OFF(insecure_listen), "off|on", onoff_choices,
     "allow plaintext TCP listeners on non-loopback addresses (without --tls-cert)"},
    {"auth-tokens", CFG_PATH, 0, 0, "", OFF(auth_tokens), "FILE", NULL,
     "bearer tokens, lines 'TOKEN NS[,NS...]' ('*' = all, Admin/Stats); re-read on SIGHUP; "
     "none = no token checks"},
    {"auth-unix", CFG_CHOICE, 0, 0, "on", OFF(auth_unix), "off|on", onoff_choices,
     "with --auth-tokens: off = calls over unix sockets are trusted without a token"},
    /* Metrics (issue 13 item 3). */
    {"metrics-listen", CFG_TCP, 0, 0, "", OFF(metrics_listen), "ADDR", NULL,
     "serve Prometheus metrics at http://ADDR/metrics (host:port or [v6]:port); empty = off"},
};
#define N_SETTINGS (sizeof settings / sizeof settings[0])

static const char *skip_space(const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    return s;
}

/* A decimal integer after optional blanks; *end is where its digits stop. */
static int parse_digits(const char *s, uint64_t *v, const char **end)
{
    s = skip_space(s);
    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *e;
    *v = strtoull(s, &e, 10);
    *end = e;
    return errno == ERANGE ? -1 : 0;
}

int lkv_parse_size(const char *s, uint64_t *out)
{
    static const char units[] = "KMGT"; /* powers of 1024 */
    uint64_t v;
    const char *end;
    if (parse_digits(s, &v, &end) != 0)
        return -1;
    const char *u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
    const unsigned shift = u ? 10u * (unsigned)(u - units + 1) : 0;
    end += u != NULL;
    if (shift && (end[0] == 'i' || end[0] == 'I') && (end[1] == 'B' || end[1] == 'b'))
        end += 2;
    else if (end[0] == 'B' || end[0] == 'b')
        end++;
    if (*skip_space(end) != '\0' || (shift && v > (UINT64_MAX >> shift)))
        return -1;
    *out = v << shift;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    const char *end;
    return parse_digits(s, out, &end) == 0 && *skip_space(end) == '\0' ? 0 : -1;
}

/* Octal permission bits: "0660" or "660". */
static int parse_mode(const char *s, uint64_t *out)
{
    s = skip_space(s);
    if (*s < '0' || *s > '7')
        return -1;
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '7'; s++) {
        v = v * 8 + (uint64_t)(*s - '0');
        if (v > 07777)
            return -1;
    }
    if (*skip_space(s) != '\0')
        return -1;
    *out = v;
    return 0;
}

static lkv_status fail(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static lkv_status fail(char *err, size_t cap, const char *fmt, ...)
{
    if (err && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return LKV_ERR_INVALID_ARGUMENT;
}

/* Accepts unix:PATH, unix-abstract:NAME, host:port and [v6]:port. */
static int address_ok(const char *a)
{
    if (strncmp(a, "unix:", 5) == 0)
        return a[5] != '\0' && strlen(a + 5) < 108;
    if (strncmp(a, "unix-abstract:", 14) == 0)
        return a[14] != '\0';
    const char *colon = strrchr(a, ':');
    if (!colon || colon == a)
        return 0;
    if (a[0] == '[' && colon[-1] != ']')
        return 0;
    uint64_t port;
    return parse_u64(colon + 1, &port) == 0 && port <= 65535;
}

/*
 * The one naming rule, for flags and config-file keys alike: a setting is
 * named exactly as its flag without the leading "--" (batch-max-wait-us),
 * and '_' may be written for '-' (batch_max_wait_us), as in the
 * environment variables. Nothing else matches: no other case, no dropped
 * separators. A name that matches nothing is reported with the nearest
 * known one (nearest_setting).
 */
static const cfg_setting *find_setting(const char *name, size_t len)
{
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const char *n = settings[i].name;
        size_t j = 0;
        for (; j < len && n[j]; j++) {
            const char a = name[j] == '_' ? '-' : name[j];
            if (a != n[j])
                break;
        }
        if (j == len && n[j] == '\0')
            return &settings[i];
    }
    return NULL;
}

/* Edit distance between a (alen bytes, compared lower-cased with '_' as '-')
 * and the setting name b. */
static size_t name_distance(const char *a, size_t alen, const char *b)
{
    size_t row[128];
    const size_t blen = strlen(b);
    if (alen >= sizeof row / sizeof row[0])
        alen = sizeof row / sizeof row[0] - 1;
    for (size_t j = 0; j <= alen; j++)
        row[j] = j;
    for (size_t i = 1; i <= blen; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= alen; j++) {
            const char c = a[j - 1] == '_' ? '-' : (char)tolower((unsigned char)a[j - 1]);
            const size_t sub = diag + (c != b[i - 1]);
            const size_t del = row[j] + 1, ins = row[j - 1] + 1;
            diag = row[j];
            row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    }
    return row[alen];
}

/* Whether name (compared lower-cased, '_' as '-') begins setting name n. */
static int find_prefix(const char *name, size_t len, const char *n)
{
    for (size_t j = 0; j < len; j++) {
        const char c = name[j] == '_' ? '-' : (char)tolower((unsigned char)name[j]);
        if (n[j] == '\0' || c != n[j])
            return 0;
    }
    return 1;
}

/* The known setting whose name is nearest to name (never NULL). */
static const cfg_setting *nearest_setting(const char *name, size_t len)
{
    const cfg_setting *best = &settings[0];
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < N_SETTINGS; i++) {
        size_t d = name_distance(name, len, settings[i].name);
        /* A cut-short name (host-mem for host-mem-bytes) is a strong hint. */
        if (len >= 3 && len < strlen(settings[i].name) && find_prefix(name, len, settings[i].name))
            d = 1;
        if (d < best_d) {
            best_d = d;
            best = &settings[i];
        }
    }
    return best;
}

static const char *listen_check(const char *item)
{
    return address_ok(item) ? NULL : "host:port, [v6]:port or unix:PATH";
}

static const char *redis_check(const char *item)
{
    const char *want = "redis://HOST:PORT (an IP address, [v6] in brackets; port 1..65535)";
    if (strncmp(item, "redis://", 8) != 0 || strchr(item + 8, '/') || strchr(item + 8, '@'))
        return want;
    const char *colon = strrchr(item + 8, ':');
    uint64_t port;
    if (!colon || colon == item + 8 || parse_u64(colon + 1, &port) != 0 || port == 0 ||
        port > 65535)
        return want;
    return NULL;
}

static const char *quota_check(const char *item)
{
    const char *want = "NS=BYTES (a namespace, then a byte size of at least 1, e.g. llama=4GiB)";
    const char *eq = strrchr(item, '=');
    uint64_t v;
    if (!eq || lkv_parse_size(eq + 1, &v) != 0 || v == 0)
        return want;
    return NULL;
}

/* Each CFG_LIST setting: its items, their count, and their check (NULL:
 * the item is fine, else what it should look like). */
typedef struct cfg_list {
    size_t offset, count_offset;
    const char *(*check)(const char *item);
} cfg_list;

static const cfg_list lists[] = {{OFF(listen), OFF(n_listen), listen_check},
                                 {OFF(redis), OFF(n_redis), redis_check},
                                 {OFF(namespace_quota), OFF(n_namespace_quota), quota_check}};

static uint32_t *list_count(lkv_config *cfg, const cfg_setting *st, const cfg_list **out)
{
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        if (lists[i].offset == st->offset) {
            *out = &lists[i];
            return (uint32_t *)((char *)cfg + lists[i].count_offset);
        }
    return NULL; /* a CFG_LIST row without a lists[] entry: caught by the tests */
}

/* Adds one list item (already trimmed). */
static lkv_status list_add(lkv_config *cfg, const cfg_setting *st, const char *item, size_t len,
                           const char *shown, char *err, size_t cap)
{
    char buf[LKV_ADDR_MAX];
    char(*items)[LKV_ADDR_MAX] = (char(*)[LKV_ADDR_MAX])((char *)cfg + st->offset);
    const cfg_list *li = NULL;
    uint32_t *n = list_count(cfg, st, &li);
    if (!n)
        return fail(err, cap, "%s: internal error (list)", shown);
    if (len == 0)
        return fail(err, cap, "%s: empty item", shown);
    if (len >= sizeof buf)
        return fail(err, cap, "%s=%.40s... is longer than %d bytes", shown, item, LKV_ADDR_MAX - 1);
    memcpy(buf, item, len);
    buf[len] = '\0';
    const char *want = li->check(buf);
    if (want)
        return fail(err, cap, "%s=%s is not %s", shown, buf, want);
    /* Twice the same address would fail at bind with a misleading reason
     * (the address "in use", by this very daemon). */
    for (uint32_t k = 0; k < *n; k++)
        if (strcmp(items[k], buf) == 0)
            return fail(err, cap, "%s=%s is listed twice", shown, buf);
    if (*n >= LKV_LISTEN_MAX)
        return fail(err, cap, "%s=%s: more than %d items", shown, buf, LKV_LISTEN_MAX);
    memcpy(items[(*n)++], buf, len + 1);
    return LKV_OK;
}

static lkv_status apply(lkv_config *cfg, const cfg_setting *st, const char *value,
                        const char *shown, char *err, size_t cap)
{
    char *field = (char *)cfg + st->offset;
    uint64_t v;
    switch (st->type) {
    case CFG_LIST: {
        /* Comma-separated items; the caller decides whether to clear first. */
        const char *p = value;
        if (*p == '\0')
            return LKV_OK; /* an empty default */
        for (;;) {
            p = skip_space(p);
            const char *e = strchr(p, ',');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            while (n && isspace((unsigned char)p[n - 1]))
                n--;
            lkv_status s = list_add(cfg, st, p, n, shown, err, cap);
            if (s != LKV_OK)
                return s;
            if (!e)
                return LKV_OK;
            p = e + 1;
        }
    }
    case CFG_TCP:
        if (*value && (strncmp(value, "unix", 4) == 0 || !address_ok(value)))
            return fail(err, cap, "%s=%s is not host:port or [v6]:port", shown, value);
        __attribute__((fallthrough)); /* stored as a string */
    case CFG_PATH:
        if (strlen(value) >= LKV_ADDR_MAX)
            return fail(err, cap, "%s is longer than %d bytes", shown, LKV_ADDR_MAX - 1);
        strcpy(field, value);
        return LKV_OK;
    case CFG_U64:
    case CFG_SIZE:
        if ((st->type == CFG_SIZE ? lkv_parse_size(value, &v) : parse_u64(value, &v)) != 0)
            return fail(err, cap, "%s=%s is not %s", shown, value,
                        st->type == CFG_SIZE ? "a byte size (e.g. 512MiB)"
                                             : "a non-negative integer");
        if (v < st->min || v > st->max)
            return fail(err, cap, "%s=%s is outside %" PRIu64 "..%" PRIu64, shown, value, st->min,
                        st->max);
        memcpy(field, &v, sizeof v);
        return LKV_OK;
    case CFG_MODE:
        if (parse_mode(value, &v) != 0 || v < st->min || v > st->max)
            return fail(err, cap, "%s=%s is not octal permission bits in 0..0777 (e.g. 0660)",
                        shown, value);
        memcpy(field, &v, sizeof v);
        return LKV_OK;
    case CFG_CHOICE:
        for (const cfg_choice *c = st->choices; c->name; c++)
            if (strcasecmp(c->name, value) == 0) {
                memcpy(field, &c->value, sizeof c->value);
                return LKV_OK;
            }
        return fail(err, cap, "%s=%s is not one of %s", shown, value, st->arg);
    }
    return fail(err, cap, "%s: internal error (type)", shown);
}

/* Layer bookkeeping: a list set at a new layer drops the older layer's items. */
typedef struct layers {
    int list_layer[N_SETTINGS];
} layers;

static lkv_status set_at(lkv_config *cfg, layers *ly, int layer, const cfg_setting *st,
                         const char *value, const char *shown, char *err, size_t cap)
{
    if (st->type == CFG_LIST) {
        const size_t i = (size_t)(st - settings);
        if (ly->list_layer[i] < layer) {
            const cfg_list *li;
            uint32_t *n = list_count(cfg, st, &li);
            if (n)
                *n = 0;
            ly->list_layer[i] = layer;
        }
    }
    return apply(cfg, st, value, shown, err, cap);
}

void lkv_config_defaults(lkv_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        char err[256];
        /* The defaults are ours; a failure here is a bug caught by the tests. */
        (void)apply(cfg, &settings[i], settings[i].def, settings[i].name, err, sizeof err);
    }
}

static void env_name(const cfg_setting *st, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "LATTICEKV_");
    for (const char *p = st->name; *p && n + 1 < cap; p++)
        buf[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    buf[n] = '\0';
}

static lkv_status load_file(lkv_config *cfg, layers *ly, const char *path, char *err, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return fail(err, cap, "config=%s cannot be opened: %s", path, strerror(errno));
    char line[1024];
    unsigned lineno = 0;
    lkv_status s = LKV_OK;
    while (s == LKV_OK && fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        char *hash = strchr(p, '#');
        if (hash)
            *hash = '\0';
        while (isspace((unsigned char)*p))
            p++;
        size_t n = strlen(p);
        while (n && isspace((unsigned char)p[n - 1]))
            p[--n] = '\0';
        if (n == 0)
            continue;
        char *eq = strchr(p, '=');
        if (!eq) {
            s = fail(err, cap, "%s:%u: \"%s\" is not key = value", path, lineno, p);
            break;
        }
        char *ke = eq;
        while (ke > p && isspace((unsigned char)ke[-1]))
            ke--;
        const char *v = skip_space(eq + 1);
        const cfg_setting *st = find_setting(p, (size_t)(ke - p));
        if (!st) {
            *ke = '\0';
            s = fail(err, cap, "%s:%u: unknown setting \"%s\" (did you mean \"%s\"?)", path, lineno,
                     p, nearest_setting(p, strlen(p))->name);
            break;
        }
        if (st->type == CFG_PATH && strcmp(st->name, "config") == 0) {
            s = fail(err, cap, "%s:%u: config files cannot include others", path, lineno);
            break;
        }
        char shown[LKV_ADDR_MAX + 64];
        snprintf(shown, sizeof shown, "%s:%u: %s", path, lineno, st->name);
        s = set_at(cfg, ly, 1, st, v, shown, err, cap);
    }
    fclose(f);
    return s;
}

const char *lkv_addr_host(const char *addr, char *host, size_t cap)
{
    const char *colon = strrchr(addr, ':');
    size_t hl = colon ? (size_t)(colon - addr) : 0;
    if (!colon || hl >= cap)
        return NULL;
    if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') {
        addr++;
        hl -= 2;
    }
    memcpy(host, addr, hl);
    host[hl] = '\0';
    return colon + 1;
}

/* 1 when a TCP listen address can only be reached from this host:
 * 127.0.0.0/8, ::1 or "localhost". An empty host binds every interface. */
static int loopback_only(const char *addr)
{
    char host[LKV_ADDR_MAX];
    if (!lkv_addr_host(addr, host, sizeof host))
        return 0;
    if (strcasecmp(host, "localhost") == 0)
        return 1;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return memcmp(&a6, &in6addr_loopback, sizeof a6) == 0;
    return 0;
}

/* The settings that only make sense together (the security group). */
static lkv_status check_security(const lkv_config *cfg, char *err, size_t cap)
{
    if (!cfg->tls_cert[0] != !cfg->tls_key[0])
        return fail(err, cap, "%s is set without %s: TLS needs both",
                    cfg->tls_cert[0] ? "tls-cert" : "tls-key",
                    cfg->tls_cert[0] ? "tls-key" : "tls-cert");
    if (cfg->tls_client_ca[0] && !cfg->tls_cert[0])
        return fail(err, cap, "tls-client-ca=%s needs tls-cert and tls-key (mutual TLS is TLS)",
                    cfg->tls_client_ca);
    if (cfg->tls_cert[0] || cfg->insecure_listen)
        return LKV_OK;
    for (uint32_t i = 0; i < cfg->n_listen; i++) {
        const char *a = cfg->listen[i];
        if (strncmp(a, "unix:", 5) == 0 || strncmp(a, "unix-abstract:", 14) == 0)
            continue;
        if (!loopback_only(a))
            return fail(err, cap,
                        "listen=%s is not a loopback address and would serve without TLS: set "
                        "tls-cert and tls-key, or insecure-listen=on to serve it in plaintext",
                        a);
    }
    return LKV_OK;
}

lkv_status lkv_config_load(lkv_config *cfg, int argc, char **argv, lkv_getenv_fn getenv_fn,
                           void *getenv_ud, lkv_config_action *action, char *err, size_t err_cap)
{
    layers ly = {0};
    lkv_config_defaults(cfg);
    *action = LKV_CONFIG_RUN;

    /* The config file comes first, so find --config before anything else. */
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            file = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            file = argv[i] + 9;
    }
    if (!file && getenv_fn)
        file = getenv_fn("LATTICEKV_CONFIG", getenv_ud);
    if (file && *file) {
        lkv_status s = load_file(cfg, &ly, file, err, err_cap);
        if (s != LKV_OK)
            return s;
        snprintf(cfg->config_file, sizeof cfg->config_file, "%s", file);
    }

    if (getenv_fn) {
        for (size_t i = 0; i < N_SETTINGS; i++) {
            if (strcmp(settings[i].name, "config") == 0)
                continue;
            char name[96];
            env_name(&settings[i], name, sizeof name);
            const char *v = getenv_fn(name, getenv_ud);
            if (!v)
                continue;
            lkv_status s = set_at(cfg, &ly, 2, &settings[i], v, name, err, err_cap);
            if (s != LKV_OK)
                return s;
        }
    }

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *action = LKV_CONFIG_HELP;
            return LKV_OK;
        }
        if (strcmp(a, "--version") == 0) {
            *action = LKV_CONFIG_VERSION;
            return LKV_OK;
        }
        if (strncmp(a, "--", 2) != 0)
            return fail(err, err_cap, "unexpected argument \"%s\" (see --help)", a);
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        const size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const cfg_setting *st = find_setting(name, nlen);
        if (!st)
            return fail(err, err_cap, "unknown flag --%.*s (did you mean --%s? see --help)",
                        (int)nlen, name, nearest_setting(name, nlen)->name);
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            return fail(err, err_cap, "--%s needs a value (%s)", st->name, st->arg);
        }
        char shown[96];
        snprintf(shown, sizeof shown, "--%s", st->name);
        lkv_status s = set_at(cfg, &ly, 3, st, value, shown, err, err_cap);
        if (s != LKV_OK)
            return s;
    }
    if (cfg->ssd_dir[0] && cfg->ssd_bytes == 0)
        return fail(err, err_cap, "--ssd-dir=%s needs --ssd-bytes (the SSD tier's capacity)",
                    cfg->ssd_dir);
    if (cfg->host_low_pct > cfg->host_high_pct)
        return fail(err, err_cap,
                    "--host-low-watermark=%llu is above --host-high-watermark=%llu: the host "
                    "tier evicts from the high one down to the low one",
                    (unsigned long long)cfg->host_low_pct, (unsigned long long)cfg->host_high_pct);
    if (cfg->gpu_low_pct > cfg->gpu_high_pct)
        return fail(err, err_cap,
                    "--gpu-low-watermark=%llu is above --gpu-high-watermark=%llu: the GPU tier "
                    "evicts from the high one down to the low one",
                    (unsigned long long)cfg->gpu_low_pct, (unsigned long long)cfg->gpu_high_pct);
    if (cfg->ssd_low_pct > cfg->ssd_high_pct)
        return fail(err, err_cap,
                    "--ssd-low-watermark=%llu is above --ssd-high-watermark=%llu: the SSD tier "
                    "evicts from the high one down to the low one",
                    (unsigned long long)cfg->ssd_low_pct, (unsigned long long)cfg->ssd_high_pct);
    if (!cfg->ssd_dir[0] && cfg->ssd_bytes)
        return fail(err, err_cap, "--ssd-bytes=%llu without --ssd-dir: no SSD tier to size",
                    (unsigned long long)cfg->ssd_bytes);
    return check_security(cfg, err, err_cap);
}

size_t lkv_config_check_env(char *const *envp, void (*warn)(const char *msg, void *ud), void *ud)
{
    static const char prefix[] = "LATTICEKV_";
    const size_t plen = sizeof prefix - 1;
    size_t unknown = 0;
    for (; envp && *envp; envp++) {
        const char *e = *envp;
        if (strncmp(e, prefix, plen) != 0)
            continue;
        const char *eq = strchr(e, '=');
        const size_t nlen = eq ? (size_t)(eq - e) : strlen(e);
        int known = nlen == plen + 6 && strncmp(e + plen, "CONFIG", 6) == 0;
        for (size_t i = 0; i < N_SETTINGS && !known; i++) {
            char name[96];
            env_name(&settings[i], name, sizeof name);
            known = strlen(name) == nlen && strncmp(name, e, nlen) == 0;
        }
        if (known)
            continue;
        unknown++;
        if (warn) {
            char near[96], msg[320];
            env_name(nearest_setting(e + plen, nlen - plen), near, sizeof near);
            snprintf(msg, sizeof msg,
                     "%.*s is not a latticekvd setting and is ignored (did you mean %s?)",
                     (int)(nlen > 160 ? 160 : nlen), e, near);
            warn(msg, ud);
        }
    }
    return unknown;
}

/* What --help and the man page say before the list of settings. */
static const char config_intro[] =
    "latticekvd serves latticekv.v1.Codec, latticekv.v1.KVStore, latticekv.v1.Admin and\n"
    "grpc.health.v1.Health over gRPC. Every flag is also an environment variable\n"
    "(LATTICEKV_<NAME>) and a config-file key (<name> = value). Precedence, lowest\n"
    "first: default, config file, environment, flag. Byte sizes take K/M/G/T suffixes.\n"
    "Names: a config-file key is exactly the flag's name without \"--\"\n"
    "(batch-max-wait-us), and '_' may be written for '-' (batch_max_wait_us); any other\n"
    "spelling is an error naming the nearest setting. Unknown LATTICEKV_* variables\n"
    "are warned about and ignored.\n";

void lkv_config_help(FILE *out)
{
    fprintf(out, "usage: latticekvd [--flag VALUE | --flag=VALUE]...\n\n%s\n", config_intro);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const cfg_setting *st = &settings[i];
        char env[96], head[128];
        env_name(st, env, sizeof env);
        snprintf(head, sizeof head, "--%s %s", st->name, st->arg);
        fprintf(out, "  %-40s %s\n", head, st->help);
        if (st->type == CFG_U64 || st->type == CFG_SIZE)
            fprintf(out, "  %-40s env %s, default %s, range %" PRIu64 "..%" PRIu64 "\n", "", env,
                    st->def, st->min, st->max);
        else
            fprintf(out, "  %-40s env %s, default %s\n", "", env, *st->def ? st->def : "(none)");
    }
    fprintf(out, "  %-40s %s\n  %-40s %s\n", "--help", "print this and exit", "--version",
            "print the version and exit");
}

/* Writes s as troff text: backslashes and hyphens escaped (so flags copy and
 * paste as typed), and a line that would start with a control character
 * guarded by \&. */
static void man_text(FILE *out, const char *s)
{
    int at_line_start = 1;
    for (; *s; s++) {
        if (at_line_start && (*s == '.' || *s == '\''))
            fputs("\\&", out);
        if (*s == '\\')
            fputs("\\e", out);
        else if (*s == '-')
            fputs("\\-", out);
        else
            fputc(*s, out);
        at_line_start = *s == '\n';
    }
}

void lkv_config_man(FILE *out, const char *version)
{
    fprintf(out, ".TH LATTICEKVD 8 \"\" \"latticekv %s\" \"latticekv\"\n", version);
    fputs(".SH NAME\nlatticekvd \\- the latticekv KV\\-cache compression daemon\n"
          ".SH SYNOPSIS\n.B latticekvd\n[\\fB\\-\\-\\fR\\fIflag\\fR \\fIVALUE\\fR | "
          "\\fB\\-\\-\\fR\\fIflag\\fR=\\fIVALUE\\fR]...\n.SH DESCRIPTION\n",
          out);
    man_text(out, config_intro);
    fputs(".SH OPTIONS\n", out);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const cfg_setting *st = &settings[i];
        char env[96];
        env_name(st, env, sizeof env);
        fputs(".TP\n\\fB", out);
        man_text(out, "--");
        man_text(out, st->name);
        fputs("\\fR \\fI", out);
        man_text(out, st->arg);
        fputs("\\fR\n", out);
        man_text(out, st->help);
        fputs(".\n.br\nEnvironment ", out);
        man_text(out, env);
        fputs("; default ", out);
        man_text(out, *st->def ? st->def : "(none)");
        if (st->type == CFG_U64 || st->type == CFG_SIZE)
            fprintf(out, "; range %" PRIu64 "..%" PRIu64, st->min, st->max);
        fputs(".\n", out);
    }
    fputs(".TP\n\\fB\\-\\-help\\fR\nprint the options and exit.\n"
          ".TP\n\\fB\\-\\-version\\fR\nprint the version and exit.\n"
          ".SH ENVIRONMENT\n.TP\n.B LATTICEKV_CONFIG\n"
          "the config file, when \\fB\\-\\-config\\fR is not given.\n"
          ".TP\n.B LATTICEKV_\\fINAME\\fR\n"
          "each option above, named as listed under it.\n"
          ".SH SIGNALS\nSIGTERM and SIGINT stop the daemon: it stops accepting calls and lets "
          "the calls in flight finish for up to \\fB\\-\\-shutdown\\-grace\\-ms\\fR.\n"
          ".SH EXIT STATUS\n0 after a clean shutdown, 1 when the daemon could not start, "
          "2 for a bad option, variable or config-file line.\n"
          ".SH SEE ALSO\n.BR latticekv (1)\n",
          out);
}
