/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rpc.c - latticekvd's gRPC layer: the only file that includes grpc/grpc.h.
 *
 * Design note. gRPC C core reports everything through one completion queue.
 * A dedicated thread blocks in grpc_completion_queue_next: it stores
 * `success` in the tag, copies a received message out of its byte buffer
 * (the one copy a request makes, kept off the loop thread), and pushes the
 * tag, which is an lkv_event embedded in the call, into the loop's inbox.
 * All call state is then handled on the libuv loop thread, so calls, the
 * store and the batcher share no locks, and the completion-queue thread is
 * never held up by codec work (that runs on the worker pool).
 *
 * Calls. Every known method is registered; unary methods with
 * GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, so a unary call costs two
 * completions: "new call with its request" and "reply, status and close
 * sent" (one batch). A generic request_call catches every other method and
 * answers UNIMPLEMENTED. Each call is a small state machine driven by which
 * of its four tags completed:
 *
 *   TAG_NEW    matched a client call  -> unary: hand the request to the
 *              service; stream: send initial metadata + first RECV_MESSAGE,
 *              and RECV_CLOSE_ON_SERVER to learn about cancellation
 *   TAG_RECV   a stream message (or the end of input) -> to the service;
 *              the next read is posted while fewer than stream-window
 *              requests of this stream are unanswered (flow control)
 *   TAG_SEND   a reply went out -> send the next one in sequence order; when
 *              input has ended and every reply is out, send the status
 *   TAG_CLOSE  the call is over (cancelled says whether the client left)
 *
 * Stream replies can finish out of order (batches complete on different
 * workers); they wait in a ring indexed by sequence number and leave in
 * request order, one SEND_MESSAGE at a time as gRPC requires. The first
 * error of a stream ends it with that status after the earlier replies.
 * A call is freed only when no batch of it is pending and the service owes
 * it no reply.
 *
 * Replies never act inside the service. lkv_rpc_reply only files a reply
 * (in the unary slot or the stream's ring) and puts the call on the ready
 * list; lkv_rpc_flush, run by the loop after every event and after the
 * batcher's completions, sends what is due and frees what is finished. So a
 * reply that comes back while lkv_service_handle is still running (an error,
 * Lookup, Stats) cannot free or advance the call under its caller's feet,
 * and no call path re-enters this file. A call on the ready list is not
 * freed until the flush has seen it.
 *
 * Shutdown is two-phase. Phase 1 (lkv_rpc_shutdown_begin) starts as a lame
 * duck: new calls are still accepted but answered UNAVAILABLE at once, a
 * stream that sends a new message gets UNAVAILABLE, and calls in flight run
 * to completion. Once no call is active and none has arrived for 100 ms
 * (or for at most a second of lame duck), gRPC is told to stop accepting
 * (grpc_server_shutdown_and_notify); doing that earlier would make gRPC
 * reset the calls that race it, which clients see as CANCELLED. Phase 2
 * (lkv_rpc_free) starts once the shutdown tag is back and no call is left:
 * gRPC sends that tag only when every connection is closed, so connections
 * that stay open and idle are closed from this side a quiet period after
 * it stopped accepting, once no call is left (lkv_rpc_shutdown_progress);
 * then the completion queue is shut down, its thread joined and everything
 * destroyed. lkv_rpc_cancel_all ends a phase 1 that takes too long.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/status.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lkv_grpc_tune.h"
#include "lkv_log.h"
#include "lkv_rpc.h"

/*
 * gRPC core is not built with ThreadSanitizer, so TSan cannot see that a tag
 * handed to gRPC by the loop thread (with everything the loop wrote before)
 * reaches the completion-queue thread only through gRPC's own locks, nor
 * that a reply buffer reaches gRPC's free callback that way. These two
 * annotations state those hand-offs; they compile to nothing otherwise.
 */
#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define LKV_HANDOFF(p) __tsan_release(p)
#define LKV_TAKEN(p)   __tsan_acquire(p)
#else
#define LKV_HANDOFF(p) ((void)(p))
#define LKV_TAKEN(p)   ((void)(p))
#endif

/* lkv_grpc_code must equal grpc_status_code value for value. */
#define LKV_X_SAME(name, value) \
    _Static_assert(LKV_GRPC_##name == (int)GRPC_STATUS_##name, "gRPC code " #name);
LKV_GRPC_CODE_LIST(LKV_X_SAME)
#undef LKV_X_SAME

enum { GENERIC = -1, UNARY_REQUESTS = 16, STREAM_REQUESTS = 4, GENERIC_REQUESTS = 4 };
enum { IN_NONE = 0, IN_OK, IN_UNREADABLE, IN_NOMEM, IN_OVER_BUDGET };
#define LKV_SHUTDOWN_QUIET_NS (100u * 1000u * 1000u)
#define LKV_LAME_DUCK_MAX_NS  (1000u * 1000u * 1000u)

typedef enum tag_kind { TAG_NEW, TAG_RECV, TAG_SEND, TAG_CLOSE, TAG_SHUTDOWN } tag_kind;

typedef struct call call;

typedef struct tag {
    lkv_event ev; /* first: the inbox hands back this pointer */
    tag_kind kind;
    int ok;
    call *c;
} tag;

typedef enum call_state {
    CALL_REQUESTED, /* waiting for a client call to match */
    CALL_ACTIVE,    /* receiving and answering */
    CALL_FINISHING, /* status sent or being sent; waiting for the last completions */
} call_state;

typedef struct slot {
    int ready;
    lkv_reply rep;
} slot;

struct call {
    lkv_rpc *rpc;
    int method; /* lkv_method, or GENERIC */
    call_state state;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *payload; /* unary request, pre-read */
    grpc_byte_buffer *recv_buf;
    /* The received message, gathered by the completion-queue thread. */
    uint8_t *in_buf;
    size_t in_len;
    int in_state; /* IN_* */
    grpc_byte_buffer *send_buf;
    grpc_slice status_msg;
    int has_status_msg;
    tag t_new, t_recv, t_send, t_close;
    int cancelled;
    unsigned pending_ops;
    unsigned in_service;
    uint64_t next_seq, next_send;
    int input_done, recv_pending, send_pending, failed, md_sent;
    int unary_ready; /* unary: unary_rep waits for the flush */
    lkv_reply unary_rep;
    int queued; /* on the rpc's ready list */
    call *ready_next;
    lkv_grpc_code final_code;
    char final_msg[256];
    slot *ring; /* streams: stream-window slots */
    call *live_next, *live_prev;
    /* Admitted with a token: the table it was found in (a reference) and
     * its principal; both NULL when no token is needed. */
    lkv_auth_table *auth;
    const lkv_auth_principal *who;
};

/* One TCP listener's TLS: what its certificate fetcher last handed gRPC. */
typedef struct tls_listener {
    lkv_tls *tls;
    uint64_t seen;
    char addr[LKV_ADDR_MAX];
} tls_listener;

struct lkv_rpc {
    const lkv_config *cfg;
    lkv_service *svc;
    lkv_inbox *inbox;
    grpc_server *server;
    grpc_completion_queue *cq;
    pthread_t cq_thread;
    int cq_thread_started;
    void *reg[LKV_METHOD_COUNT];
    tag t_shutdown;
    int lame_duck; /* phase 1a: answering new calls UNAVAILABLE */
    uint64_t lame_duck_ns;
    int shutdown_started; /* phase 1b: grpc_server_shutdown_and_notify called */
    int shutdown_done;
    uint64_t stop_ns;      /* when stop_accepting ran */
    int idle_closed;       /* idle connections were closed (see shutdown_progress) */
    unsigned active;       /* calls in CALL_ACTIVE */
    unsigned matched;      /* calls matched to a client call and not yet freed */
    uint64_t last_call_ns; /* when the last call was matched */
    unsigned live;
    call *live_head;
    call *ready_head, **ready_tail; /* calls with a reply filed since the last flush */
    uint64_t window;
    lkv_budget *budget;            /* bytes in flight (--max-inflight-bytes) */
    int path_lock[LKV_LISTEN_MAX]; /* unix_lock fds, held until lkv_rpc_free */
    unsigned n_path_locks;
    lkv_rpc_security sec;                /* sec.tokens: the current table (a reference) */
    tls_listener *tls_l[LKV_LISTEN_MAX]; /* freed after grpc_shutdown */
    unsigned n_tls_l;
};

/* The daemon's in-flight budget. Static, not in lkv_rpc: reply slices give
 * their bytes back to it when gRPC frees them (a slice's destroy function
 * has no user pointer), which can happen on gRPC's threads until
 * grpc_shutdown() is done, after lkv_rpc is gone. One daemon, one server. */
static lkv_budget daemon_budget;
static lkv_budget *slice_budget = &daemon_budget;

static void call_maybe_free(call *c);
static void stream_progress(call *c);
static void reply_drop(lkv_reply *rep);

/*
 * Completion-queue thread: copies a received byte buffer into one malloc'd
 * buffer (its only copy; the service then uses payloads in place) and
 * destroys it, so big messages are not copied on the loop thread. The call's
 * in_* fields are handed over with the event through the inbox's mutex.
 */
static void gather(call *c, grpc_byte_buffer **bbp)
{
    grpc_byte_buffer_reader rd;
    c->in_buf = NULL;
    c->in_len = 0;
    c->in_state = IN_UNREADABLE;
    if (grpc_byte_buffer_reader_init(&rd, *bbp)) {
        const size_t len = grpc_byte_buffer_length(rd.buffer_out);
        c->in_len = len;
        if (!lkv_budget_try_take(c->rpc->budget, len)) {
            /* Over the budget: gRPC's copy is freed now and the request refused. */
            c->in_state = IN_OVER_BUDGET;
            grpc_byte_buffer_reader_destroy(&rd);
            grpc_byte_buffer_destroy(*bbp);
            *bbp = NULL;
            return;
        }
        uint8_t *buf = malloc(len ? len : 1);
        grpc_slice sl;
        size_t off = 0;
        while (grpc_byte_buffer_reader_next(&rd, &sl)) {
            const size_t n = GRPC_SLICE_LENGTH(sl);
            if (buf && off + n <= len)
                memcpy(buf + off, GRPC_SLICE_START_PTR(sl), n);
            off += n;
            grpc_slice_unref(sl);
        }
        grpc_byte_buffer_reader_destroy(&rd);
        if (!buf) {
            c->in_state = IN_NOMEM;
        } else if (off != len) {
            free(buf);
        } else {
            c->in_buf = buf;
            c->in_state = IN_OK;
        }
        /* Only a buffer handed on keeps its bytes charged. */
        if (c->in_state != IN_OK)
            lkv_budget_give(c->rpc->budget, len);
    }
    grpc_byte_buffer_destroy(*bbp);
    *bbp = NULL;
}

static void *cq_main(void *arg)
{
    lkv_rpc *r = arg;
    pthread_setname_np(pthread_self(), "lkv-grpc-cq");
    for (;;) {
        const grpc_event ev =
            grpc_completion_queue_next(r->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        tag *t = ev.tag;
        LKV_TAKEN(t);
        t->ok = ev.success;
        if (t->ok && t->kind == TAG_RECV && t->c->recv_buf)
            gather(t->c, &t->c->recv_buf);
        else if (t->ok && t->kind == TAG_NEW && t->c->payload)
            gather(t->c, &t->c->payload);
        lkv_inbox_push(r->inbox, &t->ev);
    }
    return NULL;
}

static void tag_init(tag *t, tag_kind kind, call *c)
{
    t->ev.kind = LKV_EV_GRPC;
    t->kind = kind;
    t->c = c;
}

/* Posts one request for a new call of `method`. */
static void request_call(lkv_rpc *r, int method)
{
    call *c = calloc(1, sizeof *c);
    if (!c) {
        lkv_log(LKV_LOG_ERROR, "oom", "what=call");
        return;
    }
    *c = (call){.rpc = r, .method = method, .state = CALL_REQUESTED};
    tag_init(&c->t_new, TAG_NEW, c);
    tag_init(&c->t_recv, TAG_RECV, c);
    tag_init(&c->t_send, TAG_SEND, c);
    tag_init(&c->t_close, TAG_CLOSE, c);
    grpc_metadata_array_init(&c->md);
    LKV_HANDOFF(&c->t_new);
    grpc_call_error e;
    if (method == GENERIC) {
        grpc_call_details_init(&c->details);
        e = grpc_server_request_call(r->server, &c->call, &c->details, &c->md, r->cq, r->cq,
                                     &c->t_new);
    } else {
        e = grpc_server_request_registered_call(
            r->server, r->reg[method], &c->call, &c->deadline, &c->md,
            lkv_method_streaming((lkv_method)method) ? NULL : &c->payload, r->cq, r->cq, &c->t_new);
    }
    if (e != GRPC_CALL_OK) {
        lkv_log(LKV_LOG_ERROR, "request_call_failed", "method=%s error=%d",
                method == GENERIC ? "*" : lkv_method_path((lkv_method)method), (int)e);
        grpc_metadata_array_destroy(&c->md);
        if (method == GENERIC)
            grpc_call_details_destroy(&c->details);
        free(c);
        return;
    }
    c->live_next = r->live_head;
    if (r->live_head)
        r->live_head->live_prev = c;
    r->live_head = c;
    r->live++;
}

/* Frees a received message that no request took, and its budget. */
static void drop_in(call *c)
{
    if (c->in_buf)
        lkv_budget_give(c->rpc->budget, c->in_len);
    free(c->in_buf);
    c->in_buf = NULL;
    c->in_state = IN_NONE;
}

static void call_free(call *c)
{
    lkv_rpc *r = c->rpc;
    if (c->call)
        grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    if (c->method == GENERIC)
        grpc_call_details_destroy(&c->details);
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    if (c->recv_buf)
        grpc_byte_buffer_destroy(c->recv_buf);
    if (c->send_buf) /* a send whose batch could not start (start_batch) */
        grpc_byte_buffer_destroy(c->send_buf);
    drop_in(c);
    if (c->has_status_msg)
        grpc_slice_unref(c->status_msg);
    if (c->ring) {
        for (uint64_t i = 0; i < r->window; i++)
            if (c->ring[i].ready)
                reply_drop(&c->ring[i].rep);
        free(c->ring);
    }
    if (c->unary_ready)
        reply_drop(&c->unary_rep);
    lkv_auth_table_unref(c->auth);
    if (c->state != CALL_REQUESTED)
        r->matched--;
    if (c->live_prev)
        c->live_prev->live_next = c->live_next;
    else
        r->live_head = c->live_next;
    if (c->live_next)
        c->live_next->live_prev = c->live_prev;
    r->live--;
    free(c);
}

/* 1 when the batch was started (its tag will come back), else 0. */
static int start_batch(call *c, const grpc_op *ops, size_t n, tag *t)
{
    LKV_HANDOFF(t);
    const grpc_call_error e = grpc_call_start_batch(c->call, ops, n, t, NULL);
    if (e != GRPC_CALL_OK) {
        /* Only a bug in this file gets here; the call is abandoned safely. */
        lkv_log(LKV_LOG_ERROR, "start_batch_failed", "error=%d tag=%d", (int)e, (int)t->kind);
        c->failed = 1;
        return 0;
    }
    c->pending_ops++;
    return 1;
}

static void free_reply_buf(void *p, size_t len)
{
    LKV_TAKEN(p);
    free(p);
    lkv_budget_give(slice_budget, len);
}

/* Runs a reply's held-back effect, if any: it is the reply's turn. */
static void reply_commit(lkv_reply *rep)
{
    if (rep->commit)
        rep->commit(rep->effect, rep);
    rep->commit = NULL;
    rep->drop = NULL;
    rep->effect = NULL;
}

/* Frees a reply that will not be sent, and drops its effect. */
static void reply_drop(lkv_reply *rep)
{
    if (rep->buf)
        lkv_budget_give(slice_budget, rep->len);
    free(rep->buf);
    rep->buf = NULL;
    if (rep->drop)
        rep->drop(rep->effect);
    rep->commit = NULL;
    rep->drop = NULL;
    rep->effect = NULL;
}

static grpc_byte_buffer *take_reply(lkv_reply *rep)
{
    /* The reply buffer becomes the slice: gRPC frees it when it is sent. */
    if (rep->len)
        LKV_HANDOFF(rep->buf);
    grpc_slice s =
        rep->len ? grpc_slice_new_with_len(rep->buf, rep->len, free_reply_buf) : grpc_empty_slice();
    if (!rep->len)
        free(rep->buf);
    rep->buf = NULL;
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/*
 * The unary reply and every call's end: initial metadata (unless a stream
 * already sent it), an optional message, the status and, for unary calls,
 * RECV_CLOSE_ON_SERVER, all in one batch.
 */
static void send_final(call *c, lkv_grpc_code code, const char *msg, lkv_reply *rep)
{
    grpc_op ops[4];
    size_t n = 0;
    const int stream = c->method != GENERIC && lkv_method_streaming((lkv_method)c->method);
    if (!c->md_sent) {
        c->md_sent = 1;
        ops[n++] = (grpc_op){.op = GRPC_OP_SEND_INITIAL_METADATA};
    }
    if (rep && rep->code == LKV_GRPC_OK) {
        c->send_buf = take_reply(rep);
        ops[n++] =
            (grpc_op){.op = GRPC_OP_SEND_MESSAGE, .data.send_message.send_message = c->send_buf};
    }
    if (msg && *msg) {
        c->status_msg = grpc_slice_from_copied_string(msg);
        c->has_status_msg = 1;
    }
    ops[n++] = (grpc_op){.op = GRPC_OP_SEND_STATUS_FROM_SERVER,
                         .data.send_status_from_server.status = (grpc_status_code)code,
                         .data.send_status_from_server.status_details =
                             msg && *msg ? &c->status_msg : NULL};
    if (!stream)
        ops[n++] = (grpc_op){.op = GRPC_OP_RECV_CLOSE_ON_SERVER,
                             .data.recv_close_on_server.cancelled = &c->cancelled};
    if (c->state == CALL_ACTIVE)
        c->rpc->active--;
    c->state = CALL_FINISHING;
    c->send_pending = start_batch(c, ops, n, &c->t_send);
}

static void recv_next(call *c)
{
    const grpc_op op = {.op = GRPC_OP_RECV_MESSAGE, .data.recv_message.recv_message = &c->recv_buf};
    c->recv_pending = start_batch(c, &op, 1, &c->t_recv);
}

/* Hands the received message (gathered by the completion-queue thread) to
 * the service, which takes the buffer; it replies through lkv_rpc_reply,
 * which only files the reply (see the design note). */
static void serve_message(call *c, uint64_t seq)
{
    uint8_t *buf = c->in_buf;
    const size_t len = c->in_len;
    const int state = c->in_state;
    c->in_buf = NULL;
    c->in_state = IN_NONE;
    c->in_service++;
    if (state == IN_OK) {
        lkv_service_handle(c->rpc->svc, (lkv_method)c->method, c, seq, buf, len);
        return;
    }
    const lkv_budget *b = c->rpc->budget;
    const int exhausted = state == IN_NOMEM || state == IN_OVER_BUDGET;
    lkv_reply rep = {.code = exhausted ? LKV_GRPC_RESOURCE_EXHAUSTED : LKV_GRPC_INTERNAL};
    if (state == IN_OVER_BUDGET)
        snprintf(rep.msg, sizeof rep.msg,
                 "request of %zu bytes refused: %llu bytes already in flight, "
                 "max-inflight-bytes=%llu",
                 len, (unsigned long long)atomic_load(&b->used), (unsigned long long)b->limit);
    else
        snprintf(rep.msg, sizeof rep.msg, "request message of %zu bytes could not be read", len);
    lkv_service_count_method(c->rpc->svc, (lkv_method)c->method, rep.code);
    lkv_rpc_reply(c, seq, &rep);
}

static void stream_fail(call *c, lkv_grpc_code code, const char *msg)
{
    if (c->failed)
        return;
    c->failed = 1;
    c->final_code = code;
    snprintf(c->final_msg, sizeof c->final_msg, "%s", msg);
}

/*
 * Tokens. With a token table every call but Health (probes must reach it)
 * carries "authorization: Bearer TOKEN"; calls over a unix socket are
 * trusted without one when --auth-unix off. A missing or unknown token is
 * UNAUTHENTICATED, Admin/Stats without "*" PERMISSION_DENIED; namespaces are
 * checked per request message by the service (ns_allowed). Answers name no
 * token. 1 when admitted, else the call is answered.
 */
static int admit(call *c)
{
    lkv_rpc *r = c->rpc;
    lkv_auth_table *t = r->sec.tokens;
    if (!t || c->method == LKV_METHOD_HEALTH_CHECK)
        return 1;
    if (!r->sec.auth_unix) {
        char *peer = grpc_call_get_peer(c->call);
        const int is_unix = peer && strncmp(peer, "unix", 4) == 0;
        gpr_free(peer);
        if (is_unix)
            return 1;
    }
    const lkv_auth_principal *who = NULL;
    int seen = 0;
    for (size_t i = 0; i < c->md.count; i++) {
        if (grpc_slice_str_cmp(c->md.metadata[i].key, "authorization") != 0)
            continue;
        const grpc_slice v = c->md.metadata[i].value;
        const uint8_t *tok;
        size_t len;
        seen = 1;
        if (lkv_auth_bearer(GRPC_SLICE_START_PTR(v), GRPC_SLICE_LENGTH(v), &tok, &len) == 0)
            who = lkv_auth_find(t, tok, len);
        break;
    }
    /* The codes come from the one status table (status.c). */
    const lkv_grpc_code unauth = lkv_status_to_grpc(LKV_ERR_AUTH);
    const lkv_grpc_code denied = lkv_status_to_grpc(LKV_ERR_PERMISSION);
    if (!who) {
        lkv_auth_count_unauthenticated();
        lkv_service_count_method(r->svc, c->method, unauth);
        send_final(c, unauth,
                   seen ? "the bearer token is not known to latticekvd (authorization metadata)"
                        : "a bearer token is needed: send metadata \"authorization: Bearer "
                          "TOKEN\"",
                   NULL);
        return 0;
    }
    if (c->method == LKV_METHOD_STATS && !lkv_auth_all(who)) {
        lkv_auth_count_permission();
        lkv_service_count_method(r->svc, c->method, denied);
        send_final(c, denied,
                   "Admin/Stats needs a token granted \"*\" (this one has a namespace list)", NULL);
        return 0;
    }
    lkv_auth_table_ref(t);
    c->auth = t;
    c->who = who;
    return 1;
}

/* The service's namespace check (lkv_service_set_authz): calls admitted
 * without a token (no table, trusted unix socket) may use any namespace. */
static int ns_allowed(void *callp, const char *ns, size_t len)
{
    const call *c = callp;
    if (!c->auth || lkv_auth_allows(c->who, ns, len))
        return 1;
    lkv_auth_count_permission();
    return 0;
}

void lkv_rpc_set_tokens(lkv_rpc *r, lkv_auth_table *t)
{
    lkv_auth_table_ref(t);
    lkv_auth_table_unref(r->sec.tokens);
    r->sec.tokens = t;
}

static void on_new(call *c, int ok)
{
    lkv_rpc *r = c->rpc;
    if (!ok) {
        /* The server is shutting down: this request will never match. */
        call_free(c);
        return;
    }
    if (!r->shutdown_started)
        request_call(r, c->method);
    c->state = CALL_ACTIVE;
    r->active++;
    r->matched++;
    r->last_call_ns = lkv_now_ns();
    if (r->lame_duck && c->method != LKV_METHOD_HEALTH_CHECK) {
        /* Still accepting, so late callers hear UNAVAILABLE rather than a reset. */
        lkv_service_count_method(r->svc, (lkv_method)c->method, LKV_GRPC_UNAVAILABLE);
        send_final(c, LKV_GRPC_UNAVAILABLE, "latticekvd is shutting down", NULL);
        call_maybe_free(c);
        return;
    }
    if (c->method != GENERIC && !admit(c)) {
        call_maybe_free(c);
        return;
    }
    if (c->method == GENERIC) {
        char msg[300];
        char *path = grpc_slice_to_c_string(c->details.method);
        snprintf(msg, sizeof msg, "method %.200s is not implemented by latticekvd", path);
        gpr_free(path);
        lkv_service_count_method(r->svc, LKV_METHOD_COUNT, LKV_GRPC_UNIMPLEMENTED);
        send_final(c, LKV_GRPC_UNIMPLEMENTED, msg, NULL);
        call_maybe_free(c);
        return;
    }
    if (!lkv_method_streaming((lkv_method)c->method)) {
        if (c->in_state == IN_NONE) {
            lkv_service_count_method(r->svc, (lkv_method)c->method, LKV_GRPC_INVALID_ARGUMENT);
            send_final(c, LKV_GRPC_INVALID_ARGUMENT, "the request message is missing", NULL);
            call_maybe_free(c);
            return;
        }
        serve_message(c, 0);
        call_maybe_free(c);
        return;
    }
    c->ring = calloc(r->window, sizeof *c->ring);
    if (!c->ring) {
        send_final(c, LKV_GRPC_RESOURCE_EXHAUSTED, "out of memory for a stream", NULL);
        call_maybe_free(c);
        return;
    }
    const grpc_op ops[2] = {
        {.op = GRPC_OP_SEND_INITIAL_METADATA},
        {.op = GRPC_OP_RECV_MESSAGE, .data.recv_message.recv_message = &c->recv_buf}};
    c->md_sent = 1;
    c->recv_pending = start_batch(c, ops, 2, &c->t_recv);
    const grpc_op close_op = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER,
                              .data.recv_close_on_server.cancelled = &c->cancelled};
    start_batch(c, &close_op, 1, &c->t_close);
    stream_progress(c);
    call_maybe_free(c);
}

static void on_recv(call *c, int ok)
{
    c->pending_ops--;
    c->recv_pending = 0;
    if (!ok || c->in_state == IN_NONE) {
        c->input_done = 1;
    } else if (c->failed || c->state != CALL_ACTIVE) {
        /* Nothing more is answered on this stream. */
        drop_in(c);
    } else if (lkv_service_shutting_down(c->rpc->svc)) {
        /* This message's answer is the stream's end, after the earlier replies. */
        lkv_service_count_method(c->rpc->svc, (lkv_method)c->method, LKV_GRPC_UNAVAILABLE);
        slot *s = &c->ring[c->next_seq++ % c->rpc->window];
        s->rep = (lkv_reply){.code = LKV_GRPC_UNAVAILABLE, .msg = "latticekvd is shutting down"};
        s->ready = 1;
        c->input_done = 1;
        drop_in(c);
    } else {
        serve_message(c, c->next_seq++);
    }
    stream_progress(c);
    call_maybe_free(c);
}

/* Streams: send the next reply in order, read on, or finish. */
static void stream_progress(call *c)
{
    lkv_rpc *r = c->rpc;
    if (c->state != CALL_ACTIVE)
        return;
    if (!c->send_pending && !c->failed) {
        slot *s = &c->ring[c->next_send % r->window];
        /* Every reply before this one has gone out and the stream is good:
         * its effect (a PutStream block's store) happens now, in order, and
         * may still fail it. Later replies that are ready keep theirs until
         * their own turn, so a failing request leaves the ones after it
         * without effect. */
        if (c->next_send < c->next_seq && s->ready)
            reply_commit(&s->rep);
        if (c->next_send < c->next_seq && s->ready && s->rep.code != LKV_GRPC_OK) {
            /* Every reply before it has gone out: this error ends the stream. */
            reply_drop(&s->rep);
            s->ready = 0;
            c->next_send++;
            stream_fail(c, s->rep.code, s->rep.msg);
        } else if (c->next_send < c->next_seq && s->ready) {
            c->send_buf = take_reply(&s->rep);
            const grpc_op op = {.op = GRPC_OP_SEND_MESSAGE,
                                .data.send_message.send_message = c->send_buf};
            s->ready = 0;
            c->next_send++;
            c->send_pending = start_batch(c, &op, 1, &c->t_send);
        }
    }
    /* While the in-flight budget is spent, a stream that has requests of its
     * own in flight reads on only when one of them is done (its reply moves
     * the stream on again); one with none reads, and the message is admitted
     * or refused against the budget when it arrives. */
    const int budget_room =
        atomic_load_explicit(&r->budget->used, memory_order_relaxed) < r->budget->limit;
    if (!c->input_done && !c->failed && !c->recv_pending &&
        c->next_seq - c->next_send < r->window &&
        (budget_room || (c->next_seq == c->next_send && c->in_service == 0)))
        recv_next(c);
    if (!c->send_pending &&
        (c->failed || (c->input_done && c->in_service == 0 && c->next_send == c->next_seq)))
        send_final(c, c->failed ? c->final_code : LKV_GRPC_OK, c->failed ? c->final_msg : NULL,
                   NULL);
}

static void on_send(call *c, int ok)
{
    c->pending_ops--;
    c->send_pending = 0;
    if (c->send_buf) {
        grpc_byte_buffer_destroy(c->send_buf);
        c->send_buf = NULL;
    }
    if (!ok && c->state == CALL_ACTIVE)
        stream_fail(c, LKV_GRPC_CANCELLED, "the client went away");
    stream_progress(c);
    call_maybe_free(c);
}

static void on_close(call *c, int ok)
{
    (void)ok;
    c->pending_ops--;
    c->input_done = 1;
    if (c->cancelled)
        stream_fail(c, LKV_GRPC_CANCELLED, "the call was cancelled");
    stream_progress(c);
    call_maybe_free(c);
}

static void call_maybe_free(call *c)
{
    if (c->state == CALL_FINISHING && c->pending_ops == 0 && c->in_service == 0 && !c->queued)
        call_free(c);
}

void lkv_rpc_reply(void *callp, uint64_t seq, lkv_reply *rep)
{
    call *c = callp;
    lkv_rpc *r = c->rpc;
    c->in_service--;
    if (c->state != CALL_ACTIVE || c->failed) {
        reply_drop(rep);
    } else if (!lkv_method_streaming((lkv_method)c->method)) {
        c->unary_rep = *rep;
        c->unary_ready = 1;
    } else {
        /* Errors wait their turn too: the replies before them go out first. */
        slot *s = &c->ring[seq % r->window];
        s->rep = *rep;
        s->ready = 1;
    }
    *rep = (lkv_reply){0}; /* its buffer and effect are the call's now */
    if (!c->queued) {
        c->queued = 1;
        c->ready_next = NULL;
        *r->ready_tail = c;
        r->ready_tail = &c->ready_next;
    }
}

void lkv_rpc_flush(lkv_rpc *r)
{
    while (r->ready_head) {
        call *c = r->ready_head;
        r->ready_head = c->ready_next;
        if (!r->ready_head)
            r->ready_tail = &r->ready_head;
        c->queued = 0;
        if (c->unary_ready) {
            lkv_reply *rep = &c->unary_rep;
            c->unary_ready = 0;
            if (c->state == CALL_ACTIVE) {
                reply_commit(rep);
                send_final(c, rep->code, rep->code == LKV_GRPC_OK ? NULL : rep->msg, rep);
            }
            reply_drop(rep);
        } else if (lkv_method_streaming((lkv_method)c->method)) {
            stream_progress(c);
        }
        call_maybe_free(c);
    }
}

void lkv_rpc_on_event(lkv_rpc *r, lkv_event *ev)
{
    tag *t = (tag *)ev;
    if (t->kind == TAG_SHUTDOWN) {
        r->shutdown_done = 1;
        lkv_log(LKV_LOG_INFO, "grpc_shutdown_complete", "calls_left=%u", r->live);
        return;
    }
    call *c = t->c;
    switch (t->kind) {
    case TAG_NEW: on_new(c, t->ok); break;
    case TAG_RECV: on_recv(c, t->ok); break;
    case TAG_SEND: on_send(c, t->ok); break;
    case TAG_CLOSE: on_close(c, t->ok); break;
    case TAG_SHUTDOWN: break;
    }
    lkv_rpc_flush(r);
}

/*
 * Listeners. gRPC core reports a port it cannot bind as a multi-line error
 * tree on stderr and returns 0, and it unlinks any socket file at a unix:
 * path before binding there, even one another daemon is serving. So the
 * daemon checks a unix path itself first (in_use / stale / not a socket),
 * keeps gRPC's own log quiet while it binds, and on a failure finds the
 * reason by trying the same bind itself (bind_reason), which gives one
 * line: the address and the system's reason.
 */

/* Set while grpc_server_add_http2_port runs: its failure is reported by us. */
static atomic_int g_grpc_log_quiet;

/* gRPC's own log lines go through lkv_log (one line each, quoted). */
static void grpc_log_fn(gpr_log_func_args *a)
{
    if (atomic_load(&g_grpc_log_quiet))
        return;
    const lkv_log_level level = a->severity == GPR_LOG_SEVERITY_ERROR  ? LKV_LOG_ERROR
                                : a->severity == GPR_LOG_SEVERITY_INFO ? LKV_LOG_INFO
                                                                       : LKV_LOG_DEBUG;
    if (!lkv_log_enabled(level))
        return;
    char q[LKV_LOG_QUOTE_MAX * 2], fq[LKV_LOG_QUOTE_MAX];
    const char *file = a->file ? strrchr(a->file, '/') : NULL;
    lkv_log(level, "grpc", "msg=%s at=%s:%d", lkv_log_quote_str(q, sizeof q, a->message),
            lkv_log_quote_str(fq, sizeof fq, file ? file + 1 : a->file), a->line);
}

static lkv_status listen_fail(lkv_diag *diag, uint32_t i, const char *addr, const char *why)
{
    if (diag) {
        diag->code = LKV_ERR_UNAVAILABLE;
        diag->index = i;
        snprintf(diag->msg, sizeof diag->msg, "listen=%.96s: %.80s", addr, why);
    }
    return LKV_ERR_UNAVAILABLE;
}

/*
 * Before binding unix:PATH: nothing there is fine; a socket that answers a
 * connect() belongs to a running process and is refused; a socket nobody
 * answers on is a stale leftover (a killed daemon) and is removed; anything
 * that is not a socket is refused and left alone.
 */
static lkv_status unix_prepare(const char *addr, uint32_t i, lkv_diag *diag)
{
    const char *path = addr + 5;
    struct stat stt;
    if (lstat(path, &stt) != 0) {
        if (errno == ENOENT)
            return LKV_OK;
        return listen_fail(diag, i, addr, strerror(errno));
    }
    if (!S_ISSOCK(stt.st_mode))
        return listen_fail(diag, i, addr, "the path exists and is not a socket; not replacing it");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    /* Non-blocking: a listener whose backlog is full makes a blocking
     * connect() wait for it to accept, which a busy or stuck one may never
     * do; here that is EAGAIN, and it too means someone is listening. */
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return listen_fail(diag, i, addr, strerror(errno));
    const int rc = connect(fd, (const struct sockaddr *)&sa, sizeof sa);
    const int e = errno;
    close(fd);
    if (rc == 0 || e == EAGAIN || e == EINPROGRESS)
        return listen_fail(diag, i, addr,
                           "another process is listening on this socket (is a latticekvd "
                           "already running?)");
    if (e != ECONNREFUSED)
        return listen_fail(diag, i, addr, strerror(e));
    if (unlink(path) != 0 && errno != ENOENT)
        return listen_fail(diag, i, addr, strerror(errno));
    lkv_log(LKV_LOG_INFO, "stale_socket_removed", "addr=%s", addr);
    return LKV_OK;
}

/*
 * The check above and gRPC's bind are two steps: two daemons started at
 * once on one path could both find nothing there, and the second bind
 * (gRPC unlinks the path first) would take the socket from the first. So
 * each daemon first takes a lock named after the path, held until
 * lkv_rpc_free: an abstract unix socket "@latticekvd-sock-<16 hex>", the
 * FNV-1a 64 hash of the path made absolute (realpath of its directory).
 * The kernel releases it when the process dies however it dies, and it
 * leaves no file behind. It is per network namespace: daemons in
 * different namespaces sharing a directory are still told apart by the
 * connect() check, only not when they start in the same instant.
 */
static int unix_lock(const char *addr, uint32_t i, lkv_diag *diag, int *fd_out)
{
    const char *path = addr + 5;
    char abs[PATH_MAX + 1];
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    const size_t dl = slash ? (size_t)(slash - path) : 0;
    if (dl >= sizeof dir)
        return listen_fail(diag, i, addr, "the directory name is too long");
    memcpy(dir, path, dl);
    dir[dl] = '\0';
    char real[PATH_MAX];
    if (!realpath(slash ? (dl ? dir : "/") : ".", real))
        return listen_fail(diag, i, addr, strerror(errno));
    snprintf(abs, sizeof abs, "%s/%s", strcmp(real, "/") ? real : "", slash ? slash + 1 : path);
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a 64 */
    for (const unsigned char *p = (const unsigned char *)abs; *p; p++)
        h = (h ^ *p) * 0x100000001b3u;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    const int nl = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "latticekvd-sock-%016llx",
                            (unsigned long long)h);
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return listen_fail(diag, i, addr, strerror(errno));
    if (bind(fd, (const struct sockaddr *)&sa,
             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)nl)) != 0) {
        const int e = errno;
        close(fd);
        return listen_fail(diag, i, addr,
                           e == EADDRINUSE ? "another latticekvd is starting or serving on this "
                                             "socket"
                                           : strerror(e));
    }
    *fd_out = fd;
    return LKV_OK;
}

/* Why gRPC could not bind addr: tries the bind itself. Writes a reason. */
static void bind_reason(const char *addr, char *why, size_t cap)
{
    snprintf(why, cap, "cannot be bound");
    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", addr + 5);
        const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return;
        if (bind(fd, (const struct sockaddr *)&sa, sizeof sa) != 0)
            snprintf(why, cap, "%s", strerror(errno));
        else
            unlink(sa.sun_path); /* our probe made it */
        close(fd);
        return;
    }
    if (strncmp(addr, "unix-abstract:", 14) == 0)
        return;
    /* host:port or [v6]:port (config.c checked the shape). */
    char host[LKV_ADDR_MAX];
    const char *port = lkv_addr_host(addr, host, sizeof host);
    if (!port)
        return;
    const struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    const int g = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (g != 0) {
        snprintf(why, cap, "cannot resolve the host: %s", gai_strerror(g));
        return;
    }
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            snprintf(why, cap, "%s", strerror(errno));
            continue;
        }
        const int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* as gRPC does */
        const int rc = bind(fd, ai->ai_addr, ai->ai_addrlen);
        const int e = errno;
        close(fd);
        if (rc != 0) {
            snprintf(why, cap, "%s", strerror(e));
            break;
        }
    }
    freeaddrinfo(res);
}

/*
 * TLS. Each TCP listener gets SSL server credentials with a certificate
 * fetcher: gRPC calls it before every handshake, on its own threads, and it
 * answers "unchanged" until a SIGHUP reload (lkv_tls_reload) made new
 * material, which it then hands over once. So new connections see the new
 * certificate and the connections already up keep theirs.
 */
static void make_cert_config(void *ud, const char *cert, const char *key, const char *ca)
{
    grpc_ssl_server_certificate_config **out = ud;
    grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
    /* gRPC asserts root certificates even when it asks clients for none;
     * without a client CA they are never used, so the chain stands in. */
    *out = grpc_ssl_server_certificate_config_create(ca ? ca : cert, &pair, 1); /* copies */
}

static grpc_ssl_certificate_config_reload_status
fetch_cert(void *ud, grpc_ssl_server_certificate_config **cfg)
{
    tls_listener *l = ud;
    grpc_ssl_server_certificate_config *fresh = NULL;
    if (!lkv_tls_if_newer(l->tls, &l->seen, make_cert_config, &fresh))
        return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    if (!fresh)
        return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
    *cfg = fresh;
    lkv_log(LKV_LOG_INFO, "tls_certificate_in_use", "addr=%s generation=%llu", l->addr,
            (unsigned long long)l->seen);
    return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
}

static grpc_server_credentials *tls_credentials(lkv_rpc *r, const char *addr)
{
    tls_listener *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->tls = r->sec.tls;
    snprintf(l->addr, sizeof l->addr, "%s", addr);
    r->tls_l[r->n_tls_l++] = l;
    grpc_ssl_server_credentials_options *o =
        grpc_ssl_server_credentials_create_options_using_config_fetcher(
            lkv_tls_mutual(r->sec.tls) ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                       : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
            fetch_cert, l);
    return o ? grpc_ssl_server_credentials_create_with_options(o) : NULL; /* takes o */
}

static void tls_listeners_free(lkv_rpc *r)
{
    for (unsigned k = 0; k < r->n_tls_l; k++)
        free(r->tls_l[k]);
    r->n_tls_l = 0;
}

/* Binds one listen address, unix paths with the configured mode. */
static lkv_status add_listener(lkv_rpc *r, uint32_t i, lkv_diag *diag)
{
    const char *addr = r->cfg->listen[i];
    const int is_unix = strncmp(addr, "unix:", 5) == 0;
    if (is_unix) {
        int lock = -1;
        lkv_status st = unix_lock(addr, i, diag, &lock);
        if (st != LKV_OK)
            return st;
        r->path_lock[r->n_path_locks++] = lock;
        st = unix_prepare(addr, i, diag);
        if (st != LKV_OK)
            return st;
    }
    /* The socket file is created by bind() with 0777 & ~umask: narrow the
     * umask around it so it never exists with wider bits, then chmod to
     * the exact mode (umask can only take bits away). */
    const mode_t mode = (mode_t)r->cfg->unix_socket_mode;
    const mode_t old_mask = is_unix ? umask((mode_t)(~mode & 0777)) : 0;
    const int tcp = strncmp(addr, "unix", 4) != 0;
    grpc_server_credentials *creds =
        tcp && r->sec.tls ? tls_credentials(r, addr) : grpc_insecure_server_credentials_create();
    if (!creds)
        return listen_fail(diag, i, addr, "out of memory for its TLS state");
    atomic_store(&g_grpc_log_quiet, 1);
    const int port = grpc_server_add_http2_port(r->server, addr, creds);
    atomic_store(&g_grpc_log_quiet, 0);
    grpc_server_credentials_release(creds);
    if (is_unix)
        umask(old_mask);
    if (port == 0) {
        char why[160];
        bind_reason(addr, why, sizeof why);
        return listen_fail(diag, i, addr, why);
    }
    if (is_unix) {
        if (chmod(addr + 5, mode) != 0)
            return listen_fail(diag, i, addr, strerror(errno));
        lkv_log(LKV_LOG_INFO, "listening", "addr=%s mode=%04o", addr, (unsigned)mode);
    } else if (strncmp(addr, "unix", 4) == 0) {
        lkv_log(LKV_LOG_INFO, "listening", "addr=%s", addr);
    } else {
        lkv_log(LKV_LOG_INFO, "listening", "addr=%s port=%d tls=%s", addr, port,
                !r->sec.tls                  ? "off"
                : lkv_tls_mutual(r->sec.tls) ? "mutual"
                                             : "on");
    }
    return LKV_OK;
}

/* Releases the unix path locks (after the server, and so its sockets, is gone). */
static void unix_unlock_all(lkv_rpc *r)
{
    for (unsigned k = 0; k < r->n_path_locks; k++)
        close(r->path_lock[k]);
    r->n_path_locks = 0;
}

lkv_status lkv_rpc_create(const lkv_config *cfg, lkv_service *svc, lkv_inbox *inbox,
                          const lkv_rpc_security *sec, lkv_rpc **out, lkv_diag *diag)
{
    lkv_rpc *r = calloc(1, sizeof *r);
    if (!r)
        return LKV_ERR_NOMEM;
    r->cfg = cfg;
    r->svc = svc;
    r->inbox = inbox;
    r->window = cfg->stream_window;
    r->ready_tail = &r->ready_head;
    r->budget = &daemon_budget;
    if (sec)
        r->sec = *sec;
    lkv_auth_table_ref(r->sec.tokens);
    lkv_service_set_authz(svc, ns_allowed);
    lkv_budget_init(r->budget, lkv_inflight_budget(cfg));
    lkv_service_set_budget(svc, r->budget);
    tag_init(&r->t_shutdown, TAG_SHUTDOWN, NULL);
    lkv_grpc_quiet_absl_deadlock_detection(); /* lkv_grpc_tune.h */
    gpr_set_log_function(grpc_log_fn);
    grpc_init();

    /* Messages gRPC is still receiving (before gather() copies them out and
     * the budget sees them) get a gRPC memory quota: without one, 64 clients
     * sending 60 MiB each made gRPC hold gigabytes (bench/service/burst_rss.py).
     * Once it is spent gRPC resets streams at random, already received ones
     * too (RST_STREAM 11: RESOURCE_EXHAUSTED in the client), or closes idle
     * connections (GOAWAY). So it is the budget plus one whole message: a
     * lone message is always received, as the budget always admits it, and
     * partial messages as large as the budget leave room to finish one more.
     * At the budget alone gRPC reset a lone message bigger than the budget,
     * and at times every Put of a burst. */
    grpc_resource_quota *quota = grpc_resource_quota_create("latticekvd");
    grpc_resource_quota_resize(quota, (size_t)(r->budget->limit + cfg->max_message_bytes));
    grpc_arg args[] = {
        lkv_grpc_int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (int)cfg->max_message_bytes),
        lkv_grpc_int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, (int)cfg->max_message_bytes),
        /* Without this a second daemon could silently share our port. */
        lkv_grpc_int_arg(GRPC_ARG_ALLOW_REUSEPORT, 0),
        /* Clients' keepalive pings must not count as abuse (lkv_grpc_tune.h). */
        lkv_grpc_int_arg(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                         LKV_GRPC_MIN_PING_INTERVAL_MS),
        lkv_grpc_int_arg(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1),
        {.type = GRPC_ARG_POINTER,
         .key = GRPC_ARG_RESOURCE_QUOTA,
         .value.pointer = {quota, grpc_resource_quota_arg_vtable()}},
    };
    const grpc_channel_args chargs = {.num_args = sizeof args / sizeof args[0], .args = args};

    r->server = grpc_server_create(&chargs, NULL);
    grpc_resource_quota_unref(quota);
    r->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(r->server, r->cq, NULL);
    for (int m = 0; m < LKV_METHOD_COUNT; m++)
        r->reg[m] = grpc_server_register_method(r->server, lkv_method_path((lkv_method)m), NULL,
                                                lkv_method_streaming((lkv_method)m)
                                                    ? GRPC_SRM_PAYLOAD_NONE
                                                    : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
                                                0);

    lkv_status st = LKV_OK;
    for (uint32_t i = 0; i < cfg->n_listen && st == LKV_OK; i++)
        st = add_listener(r, i, diag);
    if (st != LKV_OK) {
        /* grpc_server_destroy needs a completed shutdown, even before start. */
        LKV_HANDOFF(&r->t_shutdown);
        grpc_server_shutdown_and_notify(r->server, r->cq, &r->t_shutdown);
        grpc_completion_queue_shutdown(r->cq);
        while (grpc_completion_queue_next(r->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN) {
        }
        grpc_server_destroy(r->server);
        grpc_completion_queue_destroy(r->cq);
        grpc_shutdown();
        unix_unlock_all(r);
        tls_listeners_free(r);
        lkv_auth_table_unref(r->sec.tokens);
        free(r);
        return st;
    }
    grpc_server_start(r->server);
    lkv_log(LKV_LOG_INFO, "inflight_budget", "max_inflight_bytes=%llu",
            (unsigned long long)r->budget->limit);
    for (int m = 0; m < LKV_METHOD_COUNT; m++) {
        const int n = lkv_method_streaming((lkv_method)m) ? STREAM_REQUESTS : UNARY_REQUESTS;
        for (int i = 0; i < n; i++)
            request_call(r, m);
    }
    for (int i = 0; i < GENERIC_REQUESTS; i++)
        request_call(r, GENERIC);
    if (pthread_create(&r->cq_thread, NULL, cq_main, r) == 0)
        r->cq_thread_started = 1;
    *out = r;
    return LKV_OK;
}

static void stop_accepting(lkv_rpc *r)
{
    if (r->shutdown_started)
        return;
    r->shutdown_started = 1;
    r->stop_ns = lkv_now_ns();
    LKV_HANDOFF(&r->t_shutdown);
    grpc_server_shutdown_and_notify(r->server, r->cq, &r->t_shutdown);
}

void lkv_rpc_shutdown_begin(lkv_rpc *r)
{
    r->lame_duck = 1;
    r->lame_duck_ns = lkv_now_ns();
}

void lkv_rpc_shutdown_progress(lkv_rpc *r, uint64_t now_ns)
{
    /* gRPC resets calls that arrive after its shutdown (clients see
     * CANCELLED), so it starts only once no call is active and none has
     * arrived for a quiet period: a client whose call just succeeded is
     * likely to send the next one right away, and that one should hear
     * UNAVAILABLE. Clients that keep retrying end the quiet wait after a
     * second. */
    if (r->lame_duck && r->active == 0 &&
        (now_ns - r->last_call_ns >= LKV_SHUTDOWN_QUIET_NS ||
         now_ns - r->lame_duck_ns >= LKV_LAME_DUCK_MAX_NS))
        stop_accepting(r);
    /* gRPC's shutdown completes only when every connection is closed, and
     * after its GOAWAY it waits for the clients to close theirs: a client
     * that keeps an idle connection open (or is itself stopped and cannot)
     * would hold the daemon until --shutdown-grace-ms although no call is
     * left. So once no matched call remains a quiet period after gRPC
     * stopped accepting, the idle connections are closed from this side
     * (cancelling all calls cancels none here; it disconnects them). */
    if (r->shutdown_started && !r->shutdown_done && !r->idle_closed && r->matched == 0 &&
        now_ns >= r->stop_ns + LKV_SHUTDOWN_QUIET_NS) {
        r->idle_closed = 1;
        lkv_log(LKV_LOG_INFO, "idle_connections_closed", "calls_left=0");
        grpc_server_cancel_all_calls(r->server);
    }
}

void lkv_rpc_cancel_all(lkv_rpc *r)
{
    stop_accepting(r);
    grpc_server_cancel_all_calls(r->server);
}

unsigned lkv_rpc_calls(const lkv_rpc *r)
{
    return r ? r->active : 0;
}

int lkv_rpc_drained(const lkv_rpc *r)
{
    return r->shutdown_done && r->live == 0;
}

void lkv_rpc_free(lkv_rpc *r)
{
    if (!r)
        return;
    stop_accepting(r);
    grpc_completion_queue_shutdown(r->cq);
    if (r->cq_thread_started)
        pthread_join(r->cq_thread, NULL);
    grpc_server_destroy(r->server);
    grpc_completion_queue_destroy(r->cq);
    grpc_shutdown();
    /* Every call is gone and gRPC has freed the reply slices, so every
     * charge has been given back: bytes left or an underflow are a charge
     * and a give that did not pair. */
    const uint64_t left = atomic_load(&r->budget->used);
    const uint64_t under = atomic_load(&r->budget->underflows);
    lkv_log(left || under ? LKV_LOG_ERROR : LKV_LOG_INFO, "inflight_budget_stats",
            "refused=%llu trims=%llu left=%llu underflows=%llu",
            (unsigned long long)atomic_load(&r->budget->refused),
            (unsigned long long)atomic_load(&r->budget->trims), (unsigned long long)left,
            (unsigned long long)under);
    unix_unlock_all(r);
    tls_listeners_free(r);
    lkv_auth_table_unref(r->sec.tokens);
    free(r);
}
