/* SPDX-License-Identifier: Apache-2.0 */
/*
 * redis.c - the Redis / Redis Cluster tier: hiredis async on the libuv loop.
 *
 * Design note. Each node (a seed, or a slot owner named by the cluster) has
 * at most one hiredis async connection. A request is routed by the slot of
 * its Redis key (computed here, as Redis does) through a 16384-entry map; a
 * single server owns every slot. Commands on one connection are pipelined
 * and answered in order, so requests on one key keep their submission order.
 * MOVED updates the map, re-sends the request to the new owner and refreshes
 * the whole map (CLUSTER SLOTS); ASK re-sends it once, after ASKING, without
 * touching the map.
 *
 * hiredis 0.14 has no timeouts for async commands and its libuv adapter
 * drops poll errors (a refused connect would then never complete), so this
 * file has its own adapter (ev_*) and a tick timer that drops a connection
 * whose connect or oldest reply is late. A dropped connection fails its
 * requests with ERR_UNAVAILABLE, and the node is retried after a backoff
 * that doubles per failure; until then requests for it fail at once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "lkv_lru.h"
#include "lkv_tier.h"

#define NSLOTS            16384u
#define RD_ERR_PERMISSION ((lkv_status)LKV_ERR_PERMISSION)

/* ------------------------------------------------------------------------ */
/* Keys and slots                                                            */
/* ------------------------------------------------------------------------ */

/* CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection,
 * which is the function Redis Cluster's key slots use. */
static uint16_t crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned lkv_redis_key_slot(const uint8_t *key, size_t len)
{
    /* The tag is between the first '{' and the first '}' after it, when
     * that is not empty. */
    const uint8_t *open = memchr(key, '{', len);
    if (open) {
        const size_t from = (size_t)(open - key) + 1;
        const uint8_t *close = memchr(open + 1, '}', len - from);
        if (close && close > open + 1)
            return crc16(open + 1, (size_t)(close - open - 1)) & (NSLOTS - 1);
    }
    return crc16(key, len) & (NSLOTS - 1);
}

/* The slot of a key whose hash tag is the 16 hex digits of h. */
static unsigned tag_slot(uint64_t h)
{
    char tag[17];
    snprintf(tag, sizeof tag, "%016" PRIx64, h);
    return crc16((const uint8_t *)tag, 16) & (NSLOTS - 1);
}

/* lkv:{<16 hex of the hash>}:<ns_len>:<ns>:<key> (README.md). */
size_t lkv_redis_key(const char *ns, size_t ns_len, const uint8_t *key, size_t key_len,
                     uint8_t *out, size_t cap)
{
    char head[64];
    const int n =
        snprintf(head, sizeof head,
                 "lkv:{%016" PRIx64 "}:%zu:", lkv_lru_hash(ns, ns_len, key, key_len), ns_len);
    const size_t total = (size_t)n + ns_len + 1 + key_len;
    if (out && cap >= total) {
        memcpy(out, head, (size_t)n);
        if (ns_len)
            memcpy(out + n, ns, ns_len);
        out[(size_t)n + ns_len] = ':';
        memcpy(out + n + ns_len + 1, key, key_len);
    }
    return total;
}

/* ------------------------------------------------------------------------ */
/* State                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct rtier rtier;
typedef struct node node;

typedef enum nstate { N_DOWN = 0, N_CONNECTING = 1, N_UP = 2 } nstate;

/* One request in flight (req->t_priv). */
typedef struct rq {
    lkv_tier_req *req;
    uint8_t *rkey;
    size_t rkey_len;
    unsigned slot;
    unsigned redirects;
    int asking;
    lkv_blob *blob;   /* put: the tier's reference, kept for redirects */
    int internal;     /* a write-back drain write, not a caller's request */
    node *n;          /* the node it was last sent to */
    uint64_t sent_at; /* loop time (ms) */
    struct rq *next;  /* the node's in-flight FIFO, or the tier's waiting list */
} rq;

struct node {
    rtier *t;
    char host[256];
    int port;
    int seed;
    nstate state;
    int ever_failed;
    redisAsyncContext *ac;
    uint64_t since;    /* loop time the connect started */
    uint64_t retry_at; /* DOWN: no connect before this */
    unsigned backoff;
    unsigned owned; /* slots this node owns in the map */
    uv_timer_t retry;
    rq *fifo_head, *fifo_tail;
    char err[200]; /* why it is down */
};

struct rtier {
    lkv_tier base;
    uv_loop_t *loop;
    lkv_redis_config cfg;
    char *password;
    size_t password_len;
    node **nodes;
    size_t nnodes, cap_nodes;
    node *map[NSLOTS];
    int mode; /* -1 unknown, 0 single, 1 cluster */
    int refreshing;
    int refresh_denied; /* a node refused the map for want of a password */
    size_t refresh_tries;
    rq *wait_head, *wait_tail; /* submitted before the first map */
    uv_timer_t tick;
    uv_timer_t soon;  /* a map refresh asked for from inside node_connect */
    unsigned handles; /* uv handles not yet closed */
    int depth;
    int closing;
    int tick_closed;
    lkv_tier_closed_fn closed;
    void *closed_ud;
    lkv_tier_stats st;
    lkv_redis_stats rs;
    /* write-back queue (cfg.queue_bytes > 0): its recency list is the
     * queue's order, oldest (the next to drain) first */
    lkv_lru wb;
    unsigned wb_sending;
    int wb_draining, wb_redo;
};

/* The replies of a server that wants (another) password. */
static int auth_refused(const char *msg)
{
    return !strncmp(msg, "NOAUTH", 6) || !strncmp(msg, "WRONGPASS", 9) ||
           !strncmp(msg, "NOPERM", 6);
}

static const char *k_link_names[] = {"connecting", "up", "degraded", "down"};

const char *lkv_redis_link_name(lkv_redis_link l)
{
    return (unsigned)l < 4 ? k_link_names[l] : NULL;
}

void lkv_redis_config_defaults(lkv_redis_config *cfg)
{
    *cfg = (lkv_redis_config){.connect_timeout_ms = 1000,
                              .op_timeout_ms = 2000,
                              .backoff_min_ms = 100,
                              .backoff_max_ms = 5000,
                              .max_redirects = 5};
}

static void last_error(rtier *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void last_error(rtier *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->rs.last_error, sizeof t->rs.last_error, fmt, ap);
    va_end(ap);
}

/* The loop's time, refreshed: the cached value can be seconds old when the
 * loop has not run for a while (a tier created long after the loop was). */
static uint64_t now_ms(const rtier *t)
{
    uv_update_time(t->loop);
    return uv_now(t->loop);
}

static void route(rtier *t, rq *q);
static void refresh(rtier *t);
static void wb_drain(rtier *t);
static void node_connect(node *n);

/* ------------------------------------------------------------------------ */
/* Completion and teardown                                                   */
/* ------------------------------------------------------------------------ */

static void free_tier(rtier *t)
{
    lkv_tier_closed_fn cb = t->closed;
    void *ud = t->closed_ud;
    for (size_t i = 0; i < t->nnodes; i++)
        free(t->nodes[i]);
    free(t->nodes);
    lkv_lru_fini(&t->wb);
    if (t->password) {
        memset(t->password, 0, t->password_len);
        free(t->password);
    }
    free(t);
    if (cb)
        cb(ud);
}

static void on_handle_closed(uv_handle_t *h);

static void maybe_free(rtier *t)
{
    /* The tick outlives the last reply of a closing tier (it drops a hung
     * node), then goes too. */
    if (t->closing && t->st.inflight == 0 && !t->tick_closed) {
        t->tick_closed = 1;
        uv_close((uv_handle_t *)&t->tick, on_handle_closed);
    }
    if (t->closing && t->depth == 0 && t->st.inflight == 0 && t->handles == 0)
        free_tier(t);
}

static void on_handle_closed(uv_handle_t *h)
{
    rtier *t = h->data;
    t->handles--;
    maybe_free(t);
}

/* Completes a request that never got an rq (refused at submission, or
 * answered from the write-back queue); st != OK with req->diag written. */
static void finish_early(rtier *t, lkv_tier_req *req, lkv_status st)
{
    req->status = st;
    if (st != LKV_OK)
        t->st.errors++;
    if (st == LKV_ERR_UNAVAILABLE)
        t->rs.unavailable++;
    t->depth++;
    req->done(req);
    t->depth--;
    maybe_free(t);
}

/* Completes a request in flight; st != OK with q->req->diag written. */
static void finish(rtier *t, rq *q, lkv_status st)
{
    lkv_tier_req *req = q->req;
    if (st != LKV_OK && req->blob && req->op == LKV_TIER_OP_GET) {
        lkv_blob_unref(req->blob);
        req->blob = NULL;
    }
    lkv_blob_unref(q->blob);
    free(q->rkey);
    free(q);
    req->t_priv = NULL;
    t->st.inflight--;
    finish_early(t, req, st);
}

/* ------------------------------------------------------------------------ */
/* The libuv adapter (hiredis' ev hooks)                                     */
/* ------------------------------------------------------------------------ */

typedef struct uvev {
    redisAsyncContext *ac;
    rtier *t;
    uv_poll_t poll;
    int events;
} uvev;

static void ev_poll_cb(uv_poll_t *h, int status, int events)
{
    uvev *p = h->data;
    /* On a poll error (a refused connect, a reset) libuv stops the handle;
     * let hiredis try the I/O it was waiting for, so it finds the error and
     * tears the connection down. */
    const int ev = status < 0 ? p->events : events;
    if (p->ac && (ev & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void ev_update(uvev *p, int add, int del)
{
    p->events = (p->events | add) & ~del;
    if (p->events)
        uv_poll_start(&p->poll, p->events, ev_poll_cb);
    else
        uv_poll_stop(&p->poll);
}

static void ev_add_read(void *d)
{
    ev_update(d, UV_READABLE, 0);
}
static void ev_del_read(void *d)
{
    ev_update(d, 0, UV_READABLE);
}
static void ev_add_write(void *d)
{
    ev_update(d, UV_WRITABLE, 0);
}
static void ev_del_write(void *d)
{
    ev_update(d, 0, UV_WRITABLE);
}

static void ev_closed(uv_handle_t *h)
{
    uvev *p = h->data;
    rtier *t = p->t;
    free(p);
    t->handles--;
    maybe_free(t);
}

static void ev_cleanup(void *d)
{
    uvev *p = d;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, ev_closed);
}

static int ev_attach(rtier *t, redisAsyncContext *ac)
{
    uvev *p = calloc(1, sizeof *p);
    if (!p)
        return -1;
    if (uv_poll_init(t->loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return -1;
    }
    p->ac = ac;
    p->t = t;
    p->poll.data = p;
    t->handles++;
    ac->ev.data = p;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Nodes                                                                     */
/* ------------------------------------------------------------------------ */

/* The node host:port, added (with its retry timer) when it is new. */
static node *add_node(rtier *t, const char *host, int port)
{
    for (size_t i = 0; i < t->nnodes; i++)
        if (t->nodes[i]->port == port && strcmp(t->nodes[i]->host, host) == 0)
            return t->nodes[i];
    node *n = NULL;
    if (strlen(host) >= sizeof n->host)
        return NULL;
    if (t->nnodes == t->cap_nodes) {
        const size_t cap = t->cap_nodes ? t->cap_nodes * 2 : 8;
        node **nn = realloc(t->nodes, cap * sizeof *nn);
        if (!nn)
            return NULL;
        t->nodes = nn;
        t->cap_nodes = cap;
    }
    n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->t = t;
    snprintf(n->host, sizeof n->host, "%s", host);
    n->port = port;
    n->backoff = t->cfg.backoff_min_ms;
    if (uv_timer_init(t->loop, &n->retry) != 0) {
        free(n);
        return NULL;
    }
    n->retry.data = t;
    t->handles++;
    t->nodes[t->nnodes++] = n;
    return n;
}

/* Appends q to a list of requests (a node's FIFO, or the tier's waiting list). */
static void rq_append(rq **head, rq **tail, rq *q)
{
    q->next = NULL;
    if (*tail)
        (*tail)->next = q;
    else
        *head = q;
    *tail = q;
}

static void fifo_remove(node *n, rq *q)
{
    rq **pp = &n->fifo_head, *prev = NULL;
    while (*pp && *pp != q) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = q->next;
    if (n->fifo_tail == q)
        n->fifo_tail = prev;
    q->next = NULL;
}

static void on_retry(uv_timer_t *h)
{
    node *n = (node *)((char *)h - offsetof(node, retry));
    rtier *t = n->t;
    if (t->closing || n->state != N_DOWN)
        return;
    /* Only nodes that matter are retried: slot owners, and seeds while no
     * map is known. */
    if (n->owned || (t->mode < 0 && n->seed))
        node_connect(n);
}

/*
 * Marks n down after its connection failed or went away, and schedules the
 * retry. 1 when the slot map should be refreshed (a cluster slot owner went
 * down); the caller decides when.
 */
static int node_down(node *n, const char *why)
{
    rtier *t = n->t;
    const int was_up = n->state == N_UP;
    n->ac = NULL;
    n->state = N_DOWN;
    n->ever_failed = 1;
    snprintf(n->err, sizeof n->err, "%s", why && why[0] ? why : "connection lost");
    last_error(t, "%s:%d: %s", n->host, n->port, n->err);
    t->rs.disconnects++;
    if (was_up)
        t->rs.nodes_up--;
    if (t->closing)
        return 0;
    lkv_log(LKV_LOG_WARN, "redis_down", "node=%s:%d reason=\"%s\" retry_ms=%u", n->host, n->port,
            n->err, n->backoff);
    n->retry_at = now_ms(t) + n->backoff;
    uv_timer_start(&n->retry, on_retry, n->backoff, 0);
    n->backoff = n->backoff >= t->cfg.backoff_max_ms / 2 ? t->cfg.backoff_max_ms : n->backoff * 2;
    /* A slot owner gone: ask the others whether the cluster moved its slots. */
    return t->mode == 1 && n->owned;
}

/*
 * The connection ac of n is gone (refused, reset, timed out, or freed by
 * us). Marks n down and schedules the retry. Safe to call more than once
 * per connection: only the first call for the current connection counts.
 * Never called from node_connect (see there), so the map refresh it starts
 * cannot lead back here.
 */
static void node_lost(node *n, const redisAsyncContext *ac, const char *why)
{
    if (n->ac != ac || n->state == N_DOWN)
        return;
    if (node_down(n, why))
        refresh(n->t);
}

/* The refresh a connect that failed at once asked for, run from the loop. */
static void on_soon(uv_timer_t *h)
{
    rtier *t = h->data;
    if (t->closing)
        return;
    t->depth++;
    refresh(t);
    t->depth--;
    maybe_free(t);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    node *n = ac->data;
    rtier *t = n->t;
    if (status != REDIS_OK) {
        node_lost(n, ac, ac->errstr);
        return;
    }
    if (n->ac != ac)
        return;
    n->state = N_UP;
    n->backoff = t->cfg.backoff_min_ms;
    t->rs.connects++;
    t->rs.nodes_up++;
    lkv_log(LKV_LOG_INFO, "redis_up", "node=%s:%d", n->host, n->port);
    if (t->mode < 0 && !t->refreshing)
        refresh(t);
    else
        wb_drain(t);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    node_lost(ac->data, ac, ac->errstr ? ac->errstr : "connection closed");
}

static void on_auth(redisAsyncContext *ac, void *r, void *priv)
{
    (void)priv;
    const redisReply *rep = r;
    node *n = ac->data;
    if (rep && rep->type == REDIS_REPLY_ERROR) {
        last_error(n->t, "%s:%d: AUTH failed: %s", n->host, n->port, rep->str);
        lkv_log(LKV_LOG_WARN, "redis_auth", "node=%s:%d reason=\"AUTH failed\"", n->host, n->port);
    }
}

/* A connect that failed before it started: n stays DOWN with a retry
 * scheduled. The map refresh this may call for is left to the next loop
 * turn: node_connect runs inside refresh_next and send_to, and starting a
 * refresh here would re-enter them. */
static void connect_failed(node *n, const char *why)
{
    rtier *t = n->t;
    if (node_down(n, why))
        uv_timer_start(&t->soon, on_soon, 0, 0);
}

/* Starts a connection to a DOWN node (a failure leaves it DOWN with a retry
 * scheduled). */
static void node_connect(node *n)
{
    rtier *t = n->t;
    uv_timer_stop(&n->retry);
    redisAsyncContext *ac = redisAsyncConnect(n->host, n->port);
    if (!ac || ac->err) {
        char why[200];
        snprintf(why, sizeof why, "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        connect_failed(n, why);
        return;
    }
    ac->data = n;
    if (ev_attach(t, ac) != 0) {
        redisAsyncFree(ac);
        connect_failed(n, "cannot watch the socket");
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    n->ac = ac;
    n->state = N_CONNECTING;
    n->since = now_ms(t);
    if (t->password) {
        const char *argv[2] = {"AUTH", t->password};
        const size_t len[2] = {4, t->password_len};
        redisAsyncCommandArgv(ac, on_auth, NULL, 2, argv, len);
    }
}

/* Drops n's connection now (a timeout): its requests fail UNAVAILABLE. */
static void node_drop(node *n, const char *why)
{
    redisAsyncContext *ac = n->ac;
    node_lost(n, ac, why);
    if (ac)
        redisAsyncFree(ac); /* runs the pending callbacks with no reply */
}

/* Whether n can take a command now (connecting to it first if its backoff
 * is over). */
static int node_ready(node *n)
{
    if (n->state == N_DOWN && !n->t->closing && now_ms(n->t) >= n->retry_at)
        node_connect(n);
    return n->state != N_DOWN && n->ac;
}

static void on_tick(uv_timer_t *h)
{
    rtier *t = h->data;
    const uint64_t now = now_ms(t);
    char why[96];
    for (size_t i = 0; i < t->nnodes; i++) {
        node *n = t->nodes[i];
        if (n->state == N_CONNECTING && now - n->since > t->cfg.connect_timeout_ms)
            snprintf(why, sizeof why, "connect timed out after %u ms", t->cfg.connect_timeout_ms);
        else if (n->state == N_UP && n->fifo_head &&
                 now - n->fifo_head->sent_at > t->cfg.op_timeout_ms)
            snprintf(why, sizeof why, "no reply within %u ms", t->cfg.op_timeout_ms);
        else
            continue;
        t->rs.timeouts++;
        node_drop(n, why);
    }
}

/* ------------------------------------------------------------------------ */
/* The slot map                                                              */
/* ------------------------------------------------------------------------ */

static void dispatch_waiting(rtier *t, lkv_status st, const char *why)
{
    rq *q = t->wait_head;
    t->wait_head = t->wait_tail = NULL;
    while (q) {
        rq *next = q->next;
        q->next = NULL;
        if (st == LKV_OK)
            route(t, q);
        else
            finish(t, q, lkv_diag_fail(&q->req->diag, st, "%s", why));
        q = next;
    }
}

static void set_owned(rtier *t)
{
    for (size_t i = 0; i < t->nnodes; i++)
        t->nodes[i]->owned = 0;
    for (unsigned s = 0; s < NSLOTS; s++)
        if (t->map[s])
            t->map[s]->owned++;
}

/* Takes a CLUSTER SLOTS reply; 0 on success. */
static int take_slots(rtier *t, node *from, const redisReply *r)
{
    node **next_map = calloc(NSLOTS, sizeof *next_map);
    if (!next_map)
        return -1;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
            goto bad;
        const redisReply *m = e->element[2];
        if (m->element[0]->type != REDIS_REPLY_STRING || m->element[1]->type != REDIS_REPLY_INTEGER)
            goto bad;
        const long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        const long long port = m->element[1]->integer;
        if (lo < 0 || hi >= NSLOTS || lo > hi || port < 1 || port > 65535)
            goto bad;
        /* An empty or "?" endpoint means "the node you asked". */
        const char *host = m->element[0]->str;
        if (!host[0] || strcmp(host, "?") == 0)
            host = from->host;
        node *n = add_node(t, host, (int)port);
        if (!n)
            goto bad;
        for (long long s = lo; s <= hi; s++)
            next_map[s] = n;
    }
    memcpy(t->map, next_map, sizeof t->map);
    free(next_map);
    return 0;
bad:
    free(next_map);
    return -1;
}

static void refresh_next(rtier *t);

static void on_slots(redisAsyncContext *ac, void *r, void *priv)
{
    (void)priv;
    rtier *t = ((node *)ac->data)->t;
    node *from = ac->data;
    const redisReply *rep = r;
    int ok = 0;
    if (t->closing) {
        t->refreshing = 0;
        return;
    }
    if (rep && rep->type == REDIS_REPLY_ARRAY) {
        ok = take_slots(t, from, rep) == 0;
        if (ok)
            t->mode = 1;
    } else if (rep && rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "cluster support")) {
        for (unsigned s = 0; s < NSLOTS; s++)
            t->map[s] = from;
        t->mode = 0;
        ok = 1;
    } else if (rep && rep->type == REDIS_REPLY_ERROR) {
        last_error(t, "%s:%d: CLUSTER SLOTS: %s", from->host, from->port, rep->str);
        snprintf(from->err, sizeof from->err, "%s", rep->str);
        if (auth_refused(rep->str))
            t->refresh_denied = 1;
    }
    t->depth++;
    if (ok) {
        t->refreshing = 0;
        t->rs.map_refreshes++;
        set_owned(t);
        t->rs.cluster = t->mode;
        dispatch_waiting(t, LKV_OK, NULL);
        wb_drain(t);
    } else {
        refresh_next(t);
    }
    t->depth--;
    maybe_free(t);
}

/* Asks the next candidate node for the slot map; when every node has been
 * tried, gives up (requests waiting for a first map fail). */
static void refresh_next(rtier *t)
{
    while (!t->closing && t->refresh_tries < t->nnodes) {
        /* Connected nodes first, then the rest in order. */
        node *pick = NULL;
        for (size_t i = 0; i < t->nnodes && !pick; i++)
            if (t->nodes[(t->refresh_tries + i) % t->nnodes]->state == N_UP)
                pick = t->nodes[(t->refresh_tries + i) % t->nnodes];
        if (!pick)
            pick = t->nodes[t->refresh_tries % t->nnodes];
        t->refresh_tries++;
        if (!node_ready(pick))
            continue;
        static const char *argv[2] = {"CLUSTER", "SLOTS"};
        static const size_t len[2] = {7, 5};
        if (redisAsyncCommandArgv(pick->ac, on_slots, NULL, 2, argv, len) == REDIS_OK)
            return;
    }
    t->refreshing = 0;
    if (t->mode < 0) {
        char why[512];
        size_t off =
            (size_t)snprintf(why, sizeof why, "redis tier unavailable: no seed answered (");
        for (size_t i = 0; i < t->nnodes && off < sizeof why; i++)
            off += (size_t)snprintf(why + off, sizeof why - off, "%sredis://%s:%d: %s",
                                    i ? "; " : "", t->nodes[i]->host, t->nodes[i]->port,
                                    t->nodes[i]->err[0] ? t->nodes[i]->err : "no answer");
        if (off < sizeof why)
            snprintf(why + off, sizeof why - off, ")");
        dispatch_waiting(t, t->refresh_denied ? RD_ERR_PERMISSION : LKV_ERR_UNAVAILABLE, why);
    }
}

static void refresh(rtier *t)
{
    if (t->refreshing || t->closing || t->nnodes == 0)
        return;
    t->refreshing = 1;
    t->refresh_tries = 0;
    t->refresh_denied = 0;
    refresh_next(t);
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                  */
/* ------------------------------------------------------------------------ */

static void on_reply(redisAsyncContext *ac, void *r, void *priv);

/* The Redis command of each lkv_tier_op. */
static const char *const k_verbs[] = {"SET", "GET", "DEL"};

static void unavailable(rtier *t, rq *q, const node *n)
{
    lkv_diag_fail(&q->req->diag, LKV_ERR_UNAVAILABLE, "redis tier: node %s:%d is unreachable: %s",
                  n->host, n->port, n->err[0] ? n->err : "not connected");
    finish(t, q, LKV_ERR_UNAVAILABLE);
}

static void send_to(rtier *t, rq *q, node *n)
{
    if (!node_ready(n)) {
        unavailable(t, q, n);
        return;
    }
    const int put = q->req->op == LKV_TIER_OP_PUT;
    const char *argv[3] = {k_verbs[q->req->op], (const char *)q->rkey,
                           put ? (const char *)q->blob->data : NULL};
    const size_t len[3] = {3, q->rkey_len, put ? q->blob->len : 0};
    const int argc = put ? 3 : 2;
    if ((q->asking && redisAsyncCommand(n->ac, NULL, NULL, "ASKING") != REDIS_OK) ||
        redisAsyncCommandArgv(n->ac, on_reply, q, argc, argv, len) != REDIS_OK) {
        unavailable(t, q, n);
        return;
    }
    q->n = n;
    q->sent_at = now_ms(t);
    rq_append(&n->fifo_head, &n->fifo_tail, q);
}

static void route(rtier *t, rq *q)
{
    node *n = t->map[q->slot];
    if (!n) {
        lkv_diag_fail(&q->req->diag, LKV_ERR_UNAVAILABLE,
                      "redis tier: slot %u has no owner in the cluster's slot map", q->slot);
        finish(t, q, LKV_ERR_UNAVAILABLE);
        return;
    }
    send_to(t, q, n);
}

/* "MOVED 3999 127.0.0.1:6381" / "ASK ...": 0 and the target on success. */
static int parse_redirect(const char *s, unsigned *slot, char *host, size_t host_cap, int *port)
{
    const char *sp = strchr(s, ' ');
    if (!sp)
        return -1;
    char *end;
    const unsigned long sl = strtoul(sp + 1, &end, 10);
    if (end == sp + 1 || *end != ' ' || sl >= NSLOTS)
        return -1;
    const char *addr = end + 1;
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || (size_t)(colon - addr) >= host_cap)
        return -1;
    const long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || p < 1 || p > 65535)
        return -1;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    /* "[::1]:6379" in some versions */
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host) - 2);
        host[strlen(host) - 2] = 0;
    }
    *slot = (unsigned)sl;
    *port = (int)p;
    return 0;
}

static void on_error_reply(rtier *t, rq *q, node *n, const char *msg)
{
    const int moved = strncmp(msg, "MOVED ", 6) == 0, ask = strncmp(msg, "ASK ", 4) == 0;
    if ((moved || ask) && t->closing) {
        /* No new nodes (and timers) once closing. */
        lkv_diag_fail(&q->req->diag, LKV_ERR_UNAVAILABLE, "redis tier is closing (redirected: %s)",
                      msg);
        finish(t, q, LKV_ERR_UNAVAILABLE);
        return;
    }
    if (moved || ask) {
        unsigned slot;
        char host[256];
        int port;
        if (parse_redirect(msg, &slot, host, sizeof host, &port) != 0) {
            lkv_diag_fail(&q->req->diag, LKV_ERR_INTERNAL,
                          "redis tier: node %s:%d: bad redirect \"%s\"", n->host, n->port, msg);
            finish(t, q, LKV_ERR_INTERNAL);
            return;
        }
        if (q->redirects++ >= t->cfg.max_redirects) {
            lkv_diag_fail(&q->req->diag, LKV_ERR_UNAVAILABLE,
                          "redis tier: more than %u redirects for slot %u (last: %s)",
                          t->cfg.max_redirects, q->slot, msg);
            finish(t, q, LKV_ERR_UNAVAILABLE);
            return;
        }
        node *to = add_node(t, host, port);
        if (!to) {
            lkv_diag_fail(&q->req->diag, LKV_ERR_NOMEM, "redis tier: no memory for node %s:%d",
                          host, port);
            finish(t, q, LKV_ERR_NOMEM);
            return;
        }
        if (moved) {
            t->rs.moved++;
            if (t->map[slot] != to) {
                if (t->map[slot])
                    t->map[slot]->owned--;
                t->map[slot] = to;
                to->owned++;
            }
            q->asking = 0;
            refresh(t);
        } else {
            t->rs.ask++;
            q->asking = 1;
        }
        send_to(t, q, to);
        return;
    }
    lkv_status st = LKV_ERR_INTERNAL;
    if (!strncmp(msg, "TRYAGAIN", 8) || !strncmp(msg, "CLUSTERDOWN", 11) ||
        !strncmp(msg, "LOADING", 7) || !strncmp(msg, "MASTERDOWN", 10))
        st = LKV_ERR_UNAVAILABLE;
    else if (auth_refused(msg))
        st = RD_ERR_PERMISSION;
    else if (!strncmp(msg, "OOM", 3))
        st = LKV_ERR_LIMIT;
    lkv_diag_fail(&q->req->diag, st, "redis tier: node %s:%d: %s", n->host, n->port, msg);
    finish(t, q, st);
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    rq *q = priv;
    node *n = ac->data;
    rtier *t = n->t;
    const redisReply *rep = r;
    lkv_tier_req *req = q->req;
    fifo_remove(n, q);
    t->depth++;
    if (!rep) {
        /* The connection went away with this request unanswered. */
        node_lost(n, ac, ac->errstr);
        lkv_diag_fail(&req->diag, LKV_ERR_UNAVAILABLE,
                      "redis tier: node %s:%d: connection lost before the reply (%s)", n->host,
                      n->port, n->err[0] ? n->err : "closed");
        finish(t, q, LKV_ERR_UNAVAILABLE);
    } else if (rep->type == REDIS_REPLY_ERROR) {
        on_error_reply(t, q, n, rep->str);
    } else if (req->op == LKV_TIER_OP_PUT && rep->type == REDIS_REPLY_STATUS &&
               strcmp(rep->str, "OK") == 0) {
        if (!q->internal)
            t->st.puts++;
        finish(t, q, LKV_OK);
    } else if (req->op == LKV_TIER_OP_GET && rep->type == REDIS_REPLY_NIL) {
        t->st.misses++;
        req->found = 0;
        finish(t, q, LKV_OK);
    } else if (req->op == LKV_TIER_OP_GET && rep->type == REDIS_REPLY_STRING) {
        lkv_blob *b = lkv_blob_create((size_t)rep->len);
        if (!b) {
            lkv_diag_fail(&req->diag, LKV_ERR_NOMEM, "redis tier: no memory for %zu bytes",
                          (size_t)rep->len);
            finish(t, q, LKV_ERR_NOMEM);
        } else {
            if (rep->len)
                memcpy(b->data, rep->str, (size_t)rep->len);
            req->blob = b;
            req->found = 1;
            t->st.hits++;
            finish(t, q, LKV_OK);
        }
    } else if (req->op == LKV_TIER_OP_DELETE && rep->type == REDIS_REPLY_INTEGER) {
        req->found |= rep->integer > 0; /* or it was in the write-back queue */
        finish(t, q, LKV_OK);
    } else {
        lkv_diag_fail(&req->diag, LKV_ERR_INTERNAL, "redis tier: node %s:%d: %s answered type %d",
                      n->host, n->port, k_verbs[req->op], rep->type);
        finish(t, q, LKV_ERR_INTERNAL);
    }
    t->depth--;
    maybe_free(t);
}

static void start_rq(rtier *t, lkv_tier_req *req, int internal);
static int wb_intercept(rtier *t, lkv_tier_req *req);

static void submit(lkv_tier *base, lkv_tier_req *req)
{
    rtier *t = (rtier *)base;
    req->found = 0;
    req->t_priv = NULL;
    if (t->closing) {
        lkv_diag_fail(&req->diag, LKV_ERR_UNAVAILABLE, "redis tier is closing");
        finish_early(t, req, LKV_ERR_UNAVAILABLE);
        return;
    }
    if (req->key_len == 0 || req->key_len > LKV_REDIS_MAX_KEY_LEN ||
        req->ns_len > LKV_REDIS_MAX_NS_LEN) {
        lkv_diag_fail(&req->diag, LKV_ERR_INVALID_ARGUMENT,
                      "redis tier: key of %zu bytes (1..%u) or namespace of %zu bytes (0..%u)",
                      req->key_len, LKV_REDIS_MAX_KEY_LEN, req->ns_len, LKV_REDIS_MAX_NS_LEN);
        finish_early(t, req, LKV_ERR_INVALID_ARGUMENT);
        return;
    }
    if (req->op == LKV_TIER_OP_PUT && !req->blob) {
        lkv_diag_fail(&req->diag, LKV_ERR_INVALID_ARGUMENT, "redis tier: put without a blob");
        finish_early(t, req, LKV_ERR_INVALID_ARGUMENT);
        return;
    }
    if (t->cfg.queue_bytes && wb_intercept(t, req))
        return;
    start_rq(t, req, 0);
}

/* Builds the request's Redis key and sends it (or parks it until the first
 * map). */
static void start_rq(rtier *t, lkv_tier_req *req, int internal)
{
    rq *q = calloc(1, sizeof *q);
    const size_t klen = lkv_redis_key(req->ns, req->ns_len, req->key, req->key_len, NULL, 0);
    uint8_t *k = q ? malloc(klen) : NULL;
    if (!k) {
        free(q);
        lkv_diag_fail(&req->diag, LKV_ERR_NOMEM, "redis tier: out of memory for a request");
        finish_early(t, req, LKV_ERR_NOMEM);
        return;
    }
    lkv_redis_key(req->ns, req->ns_len, req->key, req->key_len, k, klen);
    q->req = req;
    q->internal = internal;
    if (req->op == LKV_TIER_OP_PUT)
        q->blob = lkv_blob_ref(req->blob);
    q->rkey = k;
    q->rkey_len = klen;
    q->slot = lkv_redis_key_slot(k, klen);
    req->t_priv = q;
    t->st.inflight++;
    t->depth++;
    if (t->mode >= 0) {
        route(t, q);
    } else {
        rq_append(&t->wait_head, &t->wait_tail, q);
        if (!t->refreshing)
            refresh(t);
    }
    t->depth--;
    maybe_free(t);
}

/* ------------------------------------------------------------------------ */
/* The write-back queue                                                      */
/* ------------------------------------------------------------------------ */

/* One block waiting for Redis. Queued entries are in t->wb (table and
 * list); an entry replaced, deleted or dropped while its write is in flight
 * leaves it and is freed when that write completes. */
typedef struct wb {
    lkv_lru_node node; /* first; hash: lkv_lru_hash of its name (its Redis key's tag) */
    lkv_tier_req req;  /* the drain write */
    size_t ns_len, key_len;
    unsigned slot; /* of its Redis key */
    lkv_blob *blob;
    uint64_t bytes;
    int queued;
    int sending;
    int tomb;       /* a tombstone: the key's newer value was dropped (see wb_to_tomb) */
    uint8_t name[]; /* ns + key */
} wb;

typedef struct wb_key {
    const char *ns;
    size_t ns_len;
    const uint8_t *key;
    size_t key_len;
} wb_key;

static int wb_same(const lkv_lru_node *n, const void *ctx)
{
    const wb *e = (const wb *)n;
    const wb_key *k = ctx;
    return e->ns_len == k->ns_len && e->key_len == k->key_len &&
           (k->ns_len == 0 || memcmp(e->name, k->ns, k->ns_len) == 0) &&
           memcmp(e->name + k->ns_len, k->key, k->key_len) == 0;
}

/* The queued entry of (ns, key), whose lkv_lru_hash is h, or NULL. */
static wb *wb_find(const rtier *t, uint64_t h, const char *ns, size_t ns_len, const uint8_t *key,
                   size_t key_len)
{
    const wb_key k = {ns, ns_len, key, key_len};
    return (wb *)*lkv_lru_find(&t->wb, h, wb_same, &k);
}

static void wb_free(wb *e)
{
    lkv_blob_unref(e->blob);
    free(e);
}

/* Takes e out of the queue (freeing it unless its write is in flight). */
static void wb_unqueue(rtier *t, wb *e)
{
    if (!e->queued)
        return;
    lkv_lru_remove(&t->wb, &e->node);
    e->queued = 0;
    if (e->tomb)
        t->rs.tombstones--;
    else
        t->rs.queued_blocks--;
    t->rs.queued_bytes -= e->bytes;
    if (!e->sending)
        wb_free(e);
}

/*
 * The queue is full: e's block is dropped (a lost remote copy, counted), but
 * Redis may still hold an older value of the key, which a later get would
 * serve. So e stays, in place, as a tombstone charged its name only: gets
 * of the key miss, and the drain sends DEL for it.
 */
static void wb_to_tomb(rtier *t, wb *e)
{
    t->rs.lost_blocks++;
    t->rs.lost_bytes += e->bytes;
    lkv_log(LKV_LOG_WARN, "redis_writeback_lost",
            "bytes=%" PRIu64 " reason=\"write-back queue full\"", e->bytes);
    lkv_blob_unref(e->blob);
    e->blob = NULL;
    e->tomb = 1;
    t->rs.queued_blocks--;
    t->rs.tombstones++;
    t->rs.queued_bytes -= e->bytes;
    e->bytes = e->ns_len + e->key_len;
    t->rs.queued_bytes += e->bytes;
}

static void wb_lose(rtier *t, wb *e, const char *why)
{
    if (e->tomb) {
        /* Not a block: a DEL that could not be sent. */
        t->rs.tombstones_dropped++;
        lkv_log(LKV_LOG_WARN, "redis_tombstone_dropped", "reason=\"%s\"", why);
        wb_unqueue(t, e);
        return;
    }
    t->rs.lost_blocks++;
    t->rs.lost_bytes += e->bytes;
    lkv_log(LKV_LOG_WARN, "redis_writeback_lost", "bytes=%" PRIu64 " reason=\"%s\"", e->bytes, why);
    wb_unqueue(t, e);
}

static void wb_done(lkv_tier_req *req)
{
    wb *e = req->ud;
    rtier *t = (rtier *)req->tier;
    const lkv_status st = req->status; /* req lives inside e, which may be freed below */
    e->sending = 0;
    t->wb_sending--;
    if (!e->queued) {
        wb_free(e); /* replaced, deleted or dropped meanwhile */
    } else if (st == LKV_OK) {
        if (!e->tomb)
            t->rs.written_back++;
        wb_unqueue(t, e);
    } else if (st != LKV_ERR_UNAVAILABLE) {
        wb_lose(t, e, req->diag.msg); /* Redis refused it: retrying will not help */
    }
    /* UNAVAILABLE: stays queued, and the node's reconnect drains it again
     * (draining now would only find the node down, or loop on it). */
    if (st != LKV_ERR_UNAVAILABLE)
        wb_drain(t);
}

/* Sends queued blocks whose node is connected, oldest first, up to 64 at once. */
static void wb_drain(rtier *t)
{
    if (!t->cfg.queue_bytes || t->mode < 0 || !t->wb.oldest || t->rs.nodes_up == 0)
        return;
    if (t->wb_draining) {
        t->wb_redo = 1;
        return;
    }
    t->wb_draining = 1;
    t->depth++;
    do {
        t->wb_redo = 0;
        wb *e = (wb *)t->wb.oldest;
        while (e && t->wb_sending < 64 && !t->closing) {
            wb *next = (wb *)e->node.newer;
            const node *n = t->map[e->slot];
            if (!e->sending && n && n->state == N_UP) {
                e->req = (lkv_tier_req){.ns = (const char *)e->name,
                                        .ns_len = e->ns_len,
                                        .key = e->name + e->ns_len,
                                        .key_len = e->key_len,
                                        .blob = e->blob,
                                        .done = wb_done,
                                        .ud = e,
                                        .op = e->tomb ? LKV_TIER_OP_DELETE : LKV_TIER_OP_PUT,
                                        .tier = &t->base};
                e->sending = 1;
                t->wb_sending++;
                start_rq(t, &e->req, 1);
            }
            /* next may have been freed by a synchronous completion that
             * unqueued it; restart from the head then. */
            if (t->wb_redo)
                break;
            e = next;
        }
    } while (t->wb_redo && !t->closing);
    t->wb_draining = 0;
    t->depth--;
}

/* Write-back handling of a caller's request; 1 when it was answered here. */
static int wb_intercept(rtier *t, lkv_tier_req *req)
{
    const uint64_t h = lkv_lru_hash(req->ns, req->ns_len, req->key, req->key_len);
    if (!t->wb.buckets && lkv_lru_init(&t->wb) != 0)
        return 0; /* no memory: write-through */
    wb *e = wb_find(t, h, req->ns, req->ns_len, req->key, req->key_len);
    if (req->op == LKV_TIER_OP_GET) {
        if (!e)
            return 0;
        if (e->tomb) {
            t->st.misses++; /* whatever Redis holds for it is stale */
        } else {
            req->blob = lkv_blob_ref(e->blob);
            req->found = 1;
            t->st.hits++;
        }
        finish_early(t, req, LKV_OK);
        return 1;
    }
    if (req->op == LKV_TIER_OP_DELETE) {
        if (e) {
            req->found = !e->tomb;
            wb_unqueue(t, e);
        }
        return 0; /* the DEL goes to Redis too (an older copy may be there) */
    }
    uint64_t bytes = req->blob->len + req->ns_len + req->key_len;
    int tomb = 0;
    if (e)
        wb_unqueue(t, e);
    t->st.puts++;
    if (bytes > t->cfg.queue_bytes) {
        t->rs.lost_blocks++;
        t->rs.lost_bytes += bytes;
        lkv_log(LKV_LOG_WARN, "redis_writeback_lost",
                "bytes=%" PRIu64 " reason=\"larger than the queue (%" PRIu64 " bytes)\"", bytes,
                t->cfg.queue_bytes);
        /* Queued as a tombstone (older values in Redis are stale now). */
        tomb = 1;
        bytes = req->ns_len + req->key_len;
        if (bytes > t->cfg.queue_bytes) {
            t->rs.tombstones_dropped++;
            finish_early(t, req, LKV_OK);
            return 1;
        }
    }
    /* Make room: the oldest blocks become tombstones; only when no block is
     * left does the oldest tombstone go. Each step removes a block or an
     * entry, so this ends. */
    while (t->wb.oldest && t->rs.queued_bytes + bytes > t->cfg.queue_bytes) {
        wb *old = (wb *)t->wb.oldest;
        while (old && old->tomb)
            old = (wb *)old->node.newer;
        if (!old)
            wb_lose(t, (wb *)t->wb.oldest, "write-back queue full of tombstones");
        else if (old->sending)
            wb_unqueue(t, old); /* its write may still land: not counted */
        else
            wb_to_tomb(t, old);
    }
    e = calloc(1, sizeof *e + req->ns_len + req->key_len);
    if (!e) {
        t->st.puts--;
        return 0; /* no memory: write-through */
    }
    if (req->ns_len)
        memcpy(e->name, req->ns, req->ns_len);
    memcpy(e->name + req->ns_len, req->key, req->key_len);
    e->ns_len = req->ns_len;
    e->key_len = req->key_len;
    e->node.hash = h;
    e->slot = tag_slot(h);
    e->blob = tomb ? NULL : lkv_blob_ref(req->blob);
    e->tomb = tomb;
    e->bytes = bytes;
    e->queued = 1;
    lkv_lru_insert(&t->wb, &e->node);
    lkv_lru_touch(&t->wb, &e->node); /* the newest: the end of the queue */
    if (tomb)
        t->rs.tombstones++;
    else
        t->rs.queued_blocks++;
    t->rs.queued_bytes += bytes;
    finish_early(t, req, LKV_OK);
    wb_drain(t);
    return 1;
}

static int rd_contains(const lkv_tier *base, const char *ns, size_t ns_len, const uint8_t *key,
                       size_t key_len)
{
    rtier *t = (rtier *)base;
    const wb *e = t->wb.buckets && key_len
                      ? wb_find(t, lkv_lru_hash(ns, ns_len, key, key_len), ns, ns_len, key, key_len)
                      : NULL;
    if (e)
        return e->tomb ? LKV_TIER_ABSENT : LKV_TIER_PRESENT; /* queued for Redis */
    return LKV_TIER_UNKNOWN;
}

static void rd_stats(const lkv_tier *base, lkv_tier_stats *out)
{
    *out = ((const rtier *)base)->st;
}

void lkv_tier_redis_stats(const lkv_tier *base, lkv_redis_stats *out)
{
    const rtier *t = (const rtier *)base;
    *out = t->rs;
    out->queue_limit = t->cfg.queue_bytes;
    out->nodes = (unsigned)t->nnodes;
    out->cluster = t->mode;
    unsigned owners = 0, owners_up = 0, seeds_failed = 0, seeds = 0;
    for (size_t i = 0; i < t->nnodes; i++) {
        const node *n = t->nodes[i];
        owners += n->owned != 0;
        owners_up += n->owned && n->state == N_UP;
        seeds += n->seed != 0;
        seeds_failed += n->seed && n->ever_failed && n->state != N_UP;
    }
    if (t->mode < 0)
        out->link = seeds_failed == seeds ? LKV_REDIS_LINK_DOWN : LKV_REDIS_LINK_CONNECTING;
    else if (owners_up == owners && owners)
        out->link = LKV_REDIS_LINK_UP;
    else if (owners_up == 0)
        out->link = LKV_REDIS_LINK_DOWN;
    else
        out->link = LKV_REDIS_LINK_DEGRADED;
}

static void rd_set_evict_hook(lkv_tier *t, lkv_tier_evict_fn fn, void *ud)
{
    /* Redis evicts by its own maxmemory policy; this tier never calls it. */
    (void)t;
    (void)fn;
    (void)ud;
}

static void rd_close(lkv_tier *base, lkv_tier_closed_fn closed, void *ud)
{
    rtier *t = (rtier *)base;
    t->closing = 1;
    t->closed = closed;
    t->closed_ud = ud;
    t->depth++;
    dispatch_waiting(t, LKV_ERR_UNAVAILABLE, "redis tier is closing");
    /* What is still queued never reaches Redis: counted as lost. Writes in
     * flight complete (and are freed by wb_done). */
    while (t->wb.oldest) {
        wb *e = (wb *)t->wb.oldest;
        if (e->sending)
            wb_unqueue(t, e);
        else
            wb_lose(t, e, "tier closed");
    }
    uv_close((uv_handle_t *)&t->soon, on_handle_closed);
    for (size_t i = 0; i < t->nnodes; i++) {
        node *n = t->nodes[i];
        uv_timer_stop(&n->retry);
        uv_close((uv_handle_t *)&n->retry, on_handle_closed);
        if (n->ac && n->state == N_UP)
            redisAsyncDisconnect(n->ac); /* answers in flight still arrive */
        else if (n->ac)
            node_drop(n, "tier closed while connecting"); /* never wait on a connect */
    }
    t->depth--;
    maybe_free(t);
}

/* ------------------------------------------------------------------------ */
/* Creation                                                                  */
/* ------------------------------------------------------------------------ */

/* Parses "redis://HOST:PORT" ("redis://[v6]:PORT"); 0 on success. */
static lkv_status parse_seed(const char *s, char *host, size_t cap, int *port, lkv_diag *d)
{
    static const char scheme[] = "redis://";
    if (!s || strncmp(s, scheme, sizeof scheme - 1) != 0)
        return lkv_diag_fail(d, LKV_ERR_INVALID_ARGUMENT,
                             "redis=\"%s\": not redis://HOST:PORT (the scheme must be redis://)",
                             s ? s : "(null)");
    const char *h = s + sizeof scheme - 1, *colon;
    size_t hlen;
    if (strchr(h, '@') || strchr(h, '/'))
        return lkv_diag_fail(
            d, LKV_ERR_INVALID_ARGUMENT,
            "redis=\"%s\": only HOST:PORT may follow redis:// (no user, password or "
            "path; use the password file)",
            s);
    if (h[0] == '[') {
        const char *rb = strchr(h, ']');
        if (!rb || rb[1] != ':')
            return lkv_diag_fail(d, LKV_ERR_INVALID_ARGUMENT, "redis=\"%s\": bad [IPv6]:PORT", s);
        hlen = (size_t)(rb - h - 1);
        h++;
        colon = rb + 1;
    } else {
        colon = strrchr(h, ':');
        if (!colon)
            return lkv_diag_fail(d, LKV_ERR_INVALID_ARGUMENT, "redis=\"%s\": no :PORT", s);
        hlen = (size_t)(colon - h);
    }
    if (hlen == 0 || hlen >= cap)
        return lkv_diag_fail(d, LKV_ERR_INVALID_ARGUMENT, "redis=\"%s\": host is empty or too long",
                             s);
    char *end;
    errno = 0;
    const long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || errno || p < 1 || p > 65535)
        return lkv_diag_fail(d, LKV_ERR_INVALID_ARGUMENT,
                             "redis=\"%s\": port \"%s\" is not 1..65535", s, colon + 1);
    memcpy(host, h, hlen);
    host[hlen] = 0;
    *port = (int)p;
    return LKV_OK;
}

static lkv_status read_password(rtier *t, const char *file, lkv_diag *d)
{
    const int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lkv_diag_fail(d, errno == EACCES ? RD_ERR_PERMISSION : LKV_ERR_INVALID_ARGUMENT,
                             "redis-password-file=\"%s\": %s", file, strerror(errno));
    char buf[1025];
    size_t n = 0;
    while (n < sizeof buf - 1) {
        const ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    const char *nl = memchr(buf, '\n', n);
    if (!nl && n == sizeof buf - 1)
        return lkv_diag_fail(d, LKV_ERR_INVALID_ARGUMENT,
                             "redis-password-file=\"%s\": the first line is longer than %zu bytes",
                             file, sizeof buf - 2);
    size_t len = nl ? (size_t)(nl - buf) : n;
    if (len && buf[len - 1] == '\r')
        len--;
    if (len == 0)
        return lkv_diag_fail(d, LKV_ERR_INVALID_ARGUMENT,
                             "redis-password-file=\"%s\": empty first line", file);
    t->password = malloc(len + 1);
    if (!t->password)
        return lkv_diag_fail(d, LKV_ERR_NOMEM, "redis tier: out of memory");
    memcpy(t->password, buf, len);
    t->password[len] = 0;
    t->password_len = len;
    memset(buf, 0, sizeof buf);
    return LKV_OK;
}

static lkv_status check_config(const lkv_redis_config *c, lkv_diag *d)
{
    if (!c->seeds || c->nseeds == 0)
        return lkv_diag_fail(d, LKV_ERR_INVALID_ARGUMENT,
                             "redis: no seed given (redis://HOST:PORT)");
    if (c->connect_timeout_ms == 0 || c->op_timeout_ms == 0)
        return lkv_diag_fail(d, LKV_ERR_INVALID_ARGUMENT,
                             "redis connect timeout=%u ms, op timeout=%u ms: both must be >= 1",
                             c->connect_timeout_ms, c->op_timeout_ms);
    if (c->backoff_min_ms == 0 || c->backoff_max_ms < c->backoff_min_ms)
        return lkv_diag_fail(d, LKV_ERR_INVALID_ARGUMENT,
                             "redis backoff=%u..%u ms: need 1 <= min <= max", c->backoff_min_ms,
                             c->backoff_max_ms);
    return LKV_OK;
}

lkv_status lkv_tier_redis_create(void *uv_loop, const lkv_redis_config *cfg, lkv_tier **out,
                                 lkv_diag *diag)
{
    *out = NULL;
    lkv_status st = check_config(cfg, diag);
    if (st != LKV_OK)
        return st;
    char host[256];
    int port;
    for (size_t i = 0; i < cfg->nseeds; i++)
        if ((st = parse_seed(cfg->seeds[i], host, sizeof host, &port, diag)) != LKV_OK)
            return st;
    rtier *t = calloc(1, sizeof *t);
    if (!t)
        return lkv_diag_fail(diag, LKV_ERR_NOMEM, "redis tier: out of memory");
    t->loop = uv_loop;
    t->cfg = *cfg;
    t->cfg.seeds = NULL; /* not kept: the nodes hold the parsed addresses */
    t->mode = -1;
    t->rs.cluster = -1;
    t->base = (lkv_tier){.name = "redis",
                         .put = submit,
                         .get = submit,
                         .del = submit,
                         .contains = rd_contains,
                         .stats = rd_stats,
                         .set_evict_hook = rd_set_evict_hook,
                         .close = rd_close};
    if (cfg->password_file && (st = read_password(t, cfg->password_file, diag)) != LKV_OK) {
        free(t);
        return st;
    }
    if (uv_timer_init(t->loop, &t->tick) != 0) {
        free(t->password);
        free(t);
        return lkv_diag_fail(diag, LKV_ERR_INTERNAL, "redis tier: cannot create a timer");
    }
    t->tick.data = t;
    t->handles++;
    uv_timer_init(t->loop, &t->soon); /* cannot fail once the tick could be made */
    t->soon.data = t;
    t->handles++;
    for (size_t i = 0; i < cfg->nseeds; i++) {
        parse_seed(cfg->seeds[i], host, sizeof host, &port, NULL);
        node *n = add_node(t, host, port);
        if (!n) {
            t->closing = 1;
            rd_close(&t->base, NULL, NULL);
            return lkv_diag_fail(diag, LKV_ERR_NOMEM, "redis tier: out of memory");
        }
        n->seed = 1;
    }
    /* Timeouts are checked a few times per timeout; the tick does not keep
     * the loop alive by itself. */
    unsigned period =
        cfg->connect_timeout_ms < cfg->op_timeout_ms ? cfg->connect_timeout_ms : cfg->op_timeout_ms;
    period = period / 4 ? period / 4 : 1;
    uv_timer_start(&t->tick, on_tick, period, period);
    uv_unref((uv_handle_t *)&t->tick);
    refresh(t);
    *out = &t->base;
    return LKV_OK;
}
