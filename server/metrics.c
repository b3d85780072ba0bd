/* SPDX-License-Identifier: Apache-2.0 */
/*
 * metrics.c - the Prometheus text exposition and the HTTP listener that
 * serves it (--metrics-listen).
 *
 * Design note. Rendering is one generator over the rows the rest of the
 * daemon already lists once: LKV_STATS_LIST (the Admin/Stats reply and the
 * "stopped" log line use the same rows) and LKV_TIER_STATS_LIST for every
 * tier of the snapshot, plus the families that only a scrape needs (replies
 * by method and code, histograms, gauges of what is in flight, info
 * metrics). The "stopped" log line's text is rendered here too
 * (lkv_stats_render). A new stats row appears in all three renderings
 * without a change here; `exposition[]` only renames the rows whose field
 * name does not make a good Prometheus name.
 *
 * The listener is a deliberately small HTTP/1.1 responder on the libuv
 * loop: it reads one request head (at most LKV_HTTP_HEAD_MAX bytes), answers
 * it and closes the connection (Connection: close; Prometheus reconnects per
 * scrape happily). The loop never waits for a client: reads and writes are
 * libuv's, a connection that has not been answered and flushed within
 * LKV_HTTP_TIMEOUT_MS is closed, and at most LKV_HTTP_MAX_CONNECTIONS are
 * open (more are closed at accept), so a slow or hostile client costs at
 * most a bounded buffer and a timer. The answer is rendered at once from a
 * snapshot taken on the loop thread, so it is consistent and needs no lock.
 */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "lkv_log.h"
#include "lkv_metrics.h"
#include "lkv_status.h"

/* ---- histograms -------------------------------------------------------- */

void lkv_histogram_init(lkv_histogram *h, const double *bounds, size_t n_bounds)
{
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->n_bounds = n_bounds < LKV_HISTOGRAM_MAX_BOUNDS ? n_bounds : LKV_HISTOGRAM_MAX_BOUNDS;
}

void lkv_histogram_observe(lkv_histogram *h, double v)
{
    size_t i = 0;
    while (i < h->n_bounds && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += v;
}

/* ---- rendering --------------------------------------------------------- */

typedef struct text {
    char *buf;
    size_t cap, len;
} text;

static void put(text *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const size_t at = o->len < o->cap ? o->len : o->cap;
    const int n = vsnprintf(o->buf ? o->buf + at : NULL, o->cap - at, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

/* "# HELP" and "# TYPE" of a family; counters are named with _total. */
static void family(text *o, const char *name, const char *kind, const char *help)
{
    const char *suffix = strcmp(kind, "counter") == 0 ? "_total" : "";
    put(o, "# HELP latticekv_%s%s %s\n# TYPE latticekv_%s%s %s\n", name, suffix, help, name, suffix,
        kind);
}

/*
 * How a LKV_STATS_LIST row is exposed when its field name is not the right
 * Prometheus name: renamed (raw_bytes_in -> raw_bytes), in base units
 * (uptime_ms -> uptime_seconds), or rendered by a labelled family instead
 * (requests and errors: requests_total{method,code}). Rows not listed are
 * exposed as latticekv_<row>.
 */
static const struct {
    const char *row;
    const char *name; /* NULL: not exposed as a plain row */
    double scale;
    const char *help; /* NULL: the row's */
} exposition[] = {
    {"uptime_ms", "uptime_seconds", 1e-3, "seconds since latticekvd started"},
    {"requests", NULL, 0, NULL},
    {"errors", NULL, 0, NULL},
    {"raw_bytes_in", "raw_bytes", 1, NULL},
    {"coded_bytes_out", "coded_bytes", 1, NULL},
};

static void stats_row(text *o, const char *row, const char *kind, const char *help, uint64_t v)
{
    const char *name = row;
    double scale = 1;
    for (size_t i = 0; i < sizeof exposition / sizeof exposition[0]; i++)
        if (strcmp(exposition[i].row, row) == 0) {
            if (!exposition[i].name)
                return;
            name = exposition[i].name;
            scale = exposition[i].scale;
            help = exposition[i].help ? exposition[i].help : help;
        }
    family(o, name, kind, help);
    const char *suffix = strcmp(kind, "counter") == 0 ? "_total" : "";
    if (scale == 1)
        put(o, "latticekv_%s%s %llu\n", name, suffix, (unsigned long long)v);
    else
        put(o, "latticekv_%s%s %.3f\n", name, suffix, (double)v * scale);
}

/* Label values: backslash, double quote and newline are escaped. */
static void put_label(text *o, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            put(o, "\\%c", *v);
        else if (*v == '\n')
            put(o, "\\n");
        else
            put(o, "%c", *v);
    }
}

static void histogram(text *o, const char *name, const char *help, const lkv_histogram *h)
{
    family(o, name, "histogram", help);
    uint64_t cum = 0;
    for (size_t i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        put(o, "latticekv_%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
            (unsigned long long)cum);
    }
    put(o, "latticekv_%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
    put(o, "latticekv_%s_sum %.17g\nlatticekv_%s_count %llu\n", name, h->sum, name,
        (unsigned long long)h->count);
}

static void gauge(text *o, const char *name, const char *help, uint64_t v)
{
    family(o, name, "gauge", help);
    put(o, "latticekv_%s %llu\n", name, (unsigned long long)v);
}

size_t lkv_stats_render(const lkv_stats *st, lkv_stats_format fmt, char *buf, size_t cap)
{
    text o = {buf, buf ? cap : 0, 0};
    if (o.cap)
        buf[0] = '\0';
    if (fmt == LKV_STATS_LOG) {
#define LKV_X_LOG(name, kind, help) \
    put(&o, "%s" #name "=%llu", o.len ? " " : "", (unsigned long long)st->name);
        LKV_STATS_LIST(LKV_X_LOG)
#undef LKV_X_LOG
        for (size_t i = 0; i < st->n_tiers; i++) {
            const lkv_tier_row *t = &st->tier[i];
            const char *tn = t->name;
#define LKV_X_LOG(name, kind, help) put(&o, " %s_" #name "=%llu", tn, (unsigned long long)t->name);
            LKV_TIER_STATS_LIST(LKV_X_LOG)
#undef LKV_X_LOG
            if (t->link[0])
                put(&o, " %s_link=%s", tn, t->link);
        }
    }
    return o.len;
}

static const char *const auth_labels[] = {
#define LKV_X_AUTH_LABEL(name, label) label,
    LKV_AUTH_FAILURE_LIST(LKV_X_AUTH_LABEL)
#undef LKV_X_AUTH_LABEL
};

size_t lkv_metrics_render(const lkv_metrics_snapshot *m, char *buf, size_t cap)
{
    text o = {buf, buf ? cap : 0, 0};
    if (o.cap)
        buf[0] = '\0';

    family(&o, "build_info", "gauge", "always 1; the version of latticekvd");
    put(&o, "latticekv_build_info{version=\"");
    put_label(&o, m->version ? m->version : "");
    put(&o, "\"} 1\n");
    family(&o, "backend_info", "gauge", "always 1; the codec backend in use");
    put(&o, "latticekv_backend_info{backend=\"");
    put_label(&o, m->backend ? m->backend : "");
    put(&o, "\"} 1\n");

#define LKV_X_ROW(name, kind, help) stats_row(&o, #name, #kind, help, m->stats.name);
    LKV_STATS_LIST(LKV_X_ROW)
#undef LKV_X_ROW

    family(&o, "requests", "counter",
           "requests answered, by method and gRPC status code (errors: code != OK)");
    if (m->replies)
        for (unsigned r = 0; r <= LKV_METHOD_COUNT; r++)
            for (unsigned c = 0; c < LKV_GRPC_CODE_COUNT; c++) {
                const uint64_t n = m->replies->n[r][c];
                if (!n)
                    continue;
                /* "/latticekv.v1.KVStore/Put" -> "latticekv.v1.KVStore/Put" */
                const char *path =
                    r < LKV_METHOD_COUNT ? lkv_method_path((lkv_method)r) + 1 : "unknown";
                put(&o, "latticekv_requests_total{method=\"%s\",code=\"%s\"} %llu\n", path,
                    lkv_grpc_code_name((lkv_grpc_code)c), (unsigned long long)n);
            }

    family(&o, "compression_ratio", "gauge",
           "raw bytes encoded / coded bytes produced since start (0 before any encode)");
    put(&o, "latticekv_compression_ratio %.17g\n",
        m->stats.coded_bytes_out ? (double)m->stats.raw_bytes_in / (double)m->stats.coded_bytes_out
                                 : 0.0);

    if (m->batch_vectors)
        histogram(&o, "batch_vectors", "vectors per codec launch", m->batch_vectors);
    if (m->codec_seconds)
        histogram(&o, "codec_seconds", "seconds one codec launch spent in the codec",
                  m->codec_seconds);
    gauge(&o, "queue_depth", "vectors waiting to be batched into a codec launch", m->queue_depth);
    gauge(&o, "batches_inflight", "codec launches running", m->batches_inflight);
    gauge(&o, "inflight_calls", "gRPC calls being served", m->inflight_calls);
    gauge(&o, "inflight_bytes", "bytes of requests and replies in flight (max-inflight-bytes)",
          m->inflight_bytes);
    gauge(&o, "inflight_bytes_limit", "max-inflight-bytes in effect", m->inflight_bytes_limit);

    family(&o, "auth_failures", "counter", "calls refused for their credentials, by reason");
    for (int i = 0; i < LKV_AUTH_FAILURE_COUNT; i++)
        put(&o, "latticekv_auth_failures_total{reason=\"%s\"} %llu\n", auth_labels[i],
            (unsigned long long)m->auth_failures[i]);

        /* One family per tier row, one sample per tier. */
#define LKV_X_TIER(row, kind, help)                                                             \
    family(&o, "tier_" #row, #kind, help);                                                      \
    for (size_t t = 0; t < m->n_tiers; t++) {                                                   \
        put(&o, "latticekv_tier_" #row "%s{tier=\"", strcmp(#kind, "counter") ? "" : "_total"); \
        put_label(&o, m->tiers[t].name);                                                        \
        put(&o, "\"} %llu\n", (unsigned long long)m->tiers[t].st.row);                          \
    }
    LKV_TIER_STATS_LIST(LKV_X_TIER)
#undef LKV_X_TIER
    return o.len;
}

/* ---- the request head -------------------------------------------------- */

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

int lkv_http_parse(const char *buf, size_t len)
{
    /* The head ends at the first blank line; bare LF line ends are accepted
     * (RFC 9112 allows a recipient to). */
    size_t end = 0;
    for (size_t i = 0; i < len && !end; i++)
        if (buf[i] == '\n' && ((i >= 1 && buf[i - 1] == '\n') ||
                               (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n')))
            end = i + 1;
    if (!end)
        return len >= LKV_HTTP_HEAD_MAX ? 431 : 0;
    if (end > LKV_HTTP_HEAD_MAX)
        return 431;

    /* Request line: method SP target SP HTTP/1.x */
    size_t i = 0;
    while (i < end && is_tchar((unsigned char)buf[i]))
        i++;
    const size_t method_len = i;
    if (method_len == 0 || i >= end || buf[i] != ' ')
        return 400;
    const size_t target = ++i;
    while (i < end && buf[i] > ' ' && buf[i] != 0x7f)
        i++;
    const size_t target_len = i - target;
    if (target_len == 0 || i >= end || buf[i] != ' ')
        return 400;
    i++;
    if (end - i < 9 || memcmp(buf + i, "HTTP/1.", 7) != 0 ||
        (buf[i + 7] != '0' && buf[i + 7] != '1'))
        return 400;
    i += 8;
    if (i < end && buf[i] == '\r')
        i++;
    if (i >= end || buf[i] != '\n')
        return 400;
    i++;
    /* Header lines: name ":" value; no obsolete line folding. */
    while (i < end) {
        size_t e = i;
        while (buf[e] != '\n')
            e++;
        size_t line_end = e > i && buf[e - 1] == '\r' ? e - 1 : e;
        if (line_end == i)
            break; /* the blank line */
        size_t k = i;
        while (k < line_end && is_tchar((unsigned char)buf[k]))
            k++;
        if (k == i || k >= line_end || buf[k] != ':')
            return 400;
        for (size_t v = k + 1; v < line_end; v++)
            if ((unsigned char)buf[v] < ' ' && buf[v] != '\t')
                return 400;
        i = e + 1;
    }
    if (method_len != 3 || memcmp(buf, "GET", 3) != 0)
        return 405;
    size_t path_len = 0;
    while (path_len < target_len && buf[target + path_len] != '?')
        path_len++;
    if (path_len == 8 && memcmp(buf + target, "/metrics", 8) == 0)
        return 200;
    return 404;
}

/* ---- the listener ------------------------------------------------------ */

struct lkv_metrics_http {
    uv_tcp_t server;
    uv_loop_t *loop;
    lkv_metrics_collect_fn collect;
    void *ud;
    lkv_budget *budget;
    unsigned conns;
    int closing;
    int server_open;   /* 0 once the listening handle's close callback ran */
    struct conn *head; /* open connections */
};

typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wr;
    uv_shutdown_t sd;
    lkv_metrics_http *h;
    struct conn *next, **pprev;
    char in[LKV_HTTP_HEAD_MAX];
    size_t in_len;
    char *reply;      /* being written */
    size_t reply_len; /* charged to the budget while reply is set */
    int answered;
    int handles_open;
} conn;

/* The listener is freed by whichever close callback comes last: libuv runs
 * close callbacks in no promised order. */
static void http_maybe_free(lkv_metrics_http *h)
{
    if (h->closing && !h->server_open && h->conns == 0)
        free(h);
}

static void conn_free_cb(uv_handle_t *hd)
{
    conn *c = hd->data;
    if (--c->handles_open > 0)
        return;
    lkv_metrics_http *h = c->h;
    free(c->reply);
    free(c);
    h->conns--;
    http_maybe_free(h);
}

static void conn_close(conn *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (c->reply) /* not sent: its charge goes back now, its memory when closed */
        lkv_budget_give(c->h->budget, c->reply_len);
    c->reply_len = 0;
    *c->pprev = c->next;
    if (c->next)
        c->next->pprev = c->pprev;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_free_cb);
    uv_close((uv_handle_t *)&c->tcp, conn_free_cb);
}

static void on_conn_timeout(uv_timer_t *t)
{
    conn *c = t->data;
    lkv_log(LKV_LOG_DEBUG, "metrics_timeout", "answered=%d bytes_read=%zu", c->answered, c->in_len);
    conn_close(c);
}

static void on_shutdown(uv_shutdown_t *sd, int status)
{
    (void)status;
    conn_close(sd->data);
}

static void on_written(uv_write_t *wr, int status)
{
    conn *c = wr->data;
    if (c->reply_len) { /* still charged: the write completed before any close */
        lkv_budget_give(c->h->budget, c->reply_len);
        c->reply_len = 0;
    }
    /* Send FIN before closing, so the answer is not cut by a reset. */
    c->sd.data = c;
    if (status != 0 || uv_is_closing((uv_handle_t *)&c->tcp) ||
        uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        conn_close(c);
}

static const char *reason(int code)
{
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    default: return "Internal Server Error";
    }
}

static void answer(conn *c, int code)
{
    lkv_metrics_http *h = c->h;
    c->answered = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    char *body = NULL;
    size_t body_len = 0;
    if (code == 200) {
        lkv_metrics_snapshot snap = {0};
        h->collect(&snap, h->ud);
        body_len = lkv_metrics_render(&snap, NULL, 0);
        body = malloc(body_len + 1);
        if (body)
            lkv_metrics_render(&snap, body, body_len + 1);
        else
            code = 500;
    }
    static const char refusal[] = "only GET /metrics is served here\n";
    if (code != 200) /* body is NULL: not asked for, or no memory for it */
        body_len = sizeof refusal - 1;
    char head[256];
    const int hl = snprintf(head, sizeof head,
                            "HTTP/1.1 %d %s\r\n"
                            "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                            "Content-Length: %zu\r\n"
                            "%s"
                            "Connection: close\r\n\r\n",
                            code, reason(code), body_len, code == 405 ? "Allow: GET\r\n" : "");
    c->reply = malloc((size_t)hl + body_len);
    if (!c->reply) {
        free(body);
        conn_close(c);
        return;
    }
    memcpy(c->reply, head, (size_t)hl);
    memcpy(c->reply + hl, body ? body : refusal, body_len);
    free(body);
    c->reply_len = (size_t)hl + body_len;
    lkv_budget_take(h->budget, c->reply_len);
    uv_buf_t b = uv_buf_init(c->reply, (unsigned)c->reply_len);
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0)
        on_written(&c->wr, -1);
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    conn *c = hd->data;
    /* Reads land straight in the head buffer; once it is full the head is
     * answered 431 and reading stops. */
    *b = uv_buf_init(c->in + c->in_len, (unsigned)(sizeof c->in - c->in_len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    conn *c = s->data;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->in_len += (size_t)n;
    const int code = lkv_http_parse(c->in, c->in_len);
    if (code == 0 && c->in_len == sizeof c->in)
        answer(c, 431);
    else if (code)
        answer(c, code);
}

static void on_connection(uv_stream_t *server, int status)
{
    lkv_metrics_http *h = server->data;
    if (status < 0 || h->closing)
        return;
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return; /* the connection stays in the backlog until memory returns */
    c->h = h;
    h->conns++;
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles_open = 2;
    c->next = h->head;
    if (h->head)
        h->head->pprev = &c->next;
    h->head = c;
    c->pprev = &h->head;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || h->conns > LKV_HTTP_MAX_CONNECTIONS) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_conn_timeout, LKV_HTTP_TIMEOUT_MS, 0);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* host:port or [v6]:port to a socket address (a name is resolved once, at start). */
static int resolve(const char *addr, struct sockaddr_storage *ss, char *why, size_t why_cap)
{
    char host[LKV_ADDR_MAX];
    const char *port = lkv_addr_host(addr, host, sizeof host);
    if (!port || port == addr + 1 || strlen(addr) >= sizeof host) {
        snprintf(why, why_cap, "not host:port");
        return -1;
    }
    const struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    const int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(why, why_cap, "%s", gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

lkv_status lkv_metrics_http_start(void *uv_loop, const char *addr, lkv_metrics_collect_fn collect,
                                  void *ud, lkv_budget *budget, lkv_metrics_http **out,
                                  lkv_diag *diag)
{
    *out = NULL;
    struct sockaddr_storage ss;
    char why[128];
    if (resolve(addr, &ss, why, sizeof why) != 0)
        return lkv_diag_fail(diag, LKV_ERR_UNAVAILABLE, "metrics-listen=%s: %s", addr, why);
    /* Bound and listening before any libuv handle exists, so a failure
     * leaves nothing for the loop to close. */
    const int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (const struct sockaddr *)&ss,
             ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in)) !=
            0 ||
        listen(fd, 64) != 0) {
        const int err = errno;
        if (fd >= 0)
            close(fd);
        return lkv_diag_fail(diag, LKV_ERR_UNAVAILABLE, "metrics-listen=%s: %s", addr,
                             strerror(err));
    }
    lkv_metrics_http *h = calloc(1, sizeof *h);
    if (!h) {
        close(fd);
        return lkv_diag_fail(diag, LKV_ERR_UNAVAILABLE, "metrics-listen=%s: out of memory", addr);
    }
    *h = (lkv_metrics_http){
        .loop = uv_loop, .collect = collect, .ud = ud, .budget = budget, .server_open = 1};
    uv_tcp_init(h->loop, &h->server);
    h->server.data = h;
    int rc = uv_tcp_open(&h->server, fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&h->server, 64, on_connection);
    if (rc != 0) {
        lkv_metrics_http_close(h);
        return lkv_diag_fail(diag, LKV_ERR_UNAVAILABLE, "metrics-listen=%s: %s", addr,
                             uv_strerror(rc));
    }
    *out = h;
    return LKV_OK;
}

static void server_closed(uv_handle_t *hd)
{
    lkv_metrics_http *h = hd->data;
    h->server_open = 0;
    http_maybe_free(h);
}

void lkv_metrics_http_close(lkv_metrics_http *h)
{
    if (!h)
        return;
    h->closing = 1;
    while (h->head)
        conn_close(h->head);
    uv_close((uv_handle_t *)&h->server, server_closed);
}
