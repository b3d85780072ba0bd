/* SPDX-License-Identifier: Apache-2.0 */
/*
 * peer.c - Push and Pull: coded blocks from one latticekvd to another.
 *
 * Design note. A transfer (one Push or Pull call) is a list of keys and a
 * gRPC channel to the other daemon. Each key is one block and goes through
 * two steps, one local and one remote:
 *
 *   Push  local Get(want_coded) of this daemon  ->  remote Put(coded)
 *   Pull  remote Get(want_coded)                ->  local Put(coded)
 *
 * The local steps are ordinary requests made through
 * lkv_service_handle_local, so a block is read from whichever tier holds it
 * (a damaged stored copy is dropped and answered DATA_LOSS, as for any Get)
 * and stored through the coded Put path, which verifies the container and
 * makes it visible only once it is complete; nothing is ever re-encoded and
 * only containers cross the network. The remote steps are unary calls, one
 * per block, so a failed key (NOT_FOUND, DATA_LOSS, a quota on the receiver)
 * is that key's result and the others go on; a unary message is delivered
 * whole or not at all, so a link cut mid-block leaves nothing behind.
 *
 * Threads. Outbound calls are started on the loop thread
 * (grpc_call_start_batch never blocks); their completions arrive on this
 * file's own completion queue, whose thread only forwards each tag into an
 * inbox of the loop. So the loop never waits on the network, and every
 * transfer's state is touched by the loop thread only.
 *
 * Flow control. A transfer starts the next key only while the bytes it has
 * in flight (blocks read and not yet stored on the other side, plus an
 * estimate for each block still being fetched, the largest seen so far)
 * stay within --peer-inflight-bytes; one block is always allowed. The bytes
 * are charged to the daemon's in-flight budget too.
 *
 * Peer links dial in plaintext and send no bearer token: TLS addresses are
 * refused by the service, and a receiver with --auth-tokens answers each key
 * UNAUTHENTICATED (server/README.md, "Peer links").
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latticekv/v1/latticekv.pb-c.h"
#include "lkv_grpc_tune.h"
#include "lkv_log.h"
#include "lkv_peer.h"
#include "lkv_pool.h"

/*
 * gRPC core is not built with ThreadSanitizer: an item handed to gRPC on the
 * loop thread reaches the completion-queue thread, and a request buffer
 * reaches gRPC's free, through locks TSan cannot see. These state the
 * hand-offs (as rpc.c does); they compile to nothing otherwise.
 */
#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define PEER_HANDOFF(p) __tsan_release(p)
#define PEER_TAKEN(p)   __tsan_acquire(p)
#else
#define PEER_HANDOFF(p) ((void)(p))
#define PEER_TAKEN(p)   ((void)(p))
#endif

/* Each block's remote call must finish within this (a receiver that stops
 * answering cannot hold a transfer for ever). */
#define PEER_CALL_TIMEOUT_S 60
/* The first block's size estimate, before any block was seen. */
#define PEER_FIRST_ESTIMATE (256u << 10)

typedef struct job job;

/* The two kinds of event this file's inbox carries (its own meaning of
 * lkv_event.kind): a remote call completed, or a transfer has room to go on. */
#define EV_REMOTE LKV_EV_GRPC
#define EV_KICK   LKV_EV_BATCH

typedef enum item_state { ITEM_WAITING = 0, ITEM_ACTIVE, ITEM_DONE } item_state;

/* One key of a transfer. */
typedef struct item {
    lkv_event ev; /* first: the remote call's completion comes back as it */
    job *j;
    item_state state;
    int ok;
    const uint8_t *key; /* in the transfer's key bytes */
    size_t key_len;
    uint64_t charged; /* bytes in flight for it (flow control and budget) */
    /* the remote call */
    grpc_call *call;
    grpc_byte_buffer *send, *recv;
    grpc_metadata_array md, trailing;
    grpc_status_code status;
    grpc_slice details;
    /* the result */
    uint32_t code;
    uint64_t bytes;
    char msg[200];
} item;

struct job {
    lkv_event kick; /* first: "start more keys" comes back through the inbox */
    int kick_queued;
    lkv_peer *p;
    int pull;
    void *call; /* the Push or Pull call to answer */
    uint64_t seq;
    grpc_channel *ch;
    char *ns; /* NUL-terminated (checked to hold no NUL) */
    size_t ns_len;
    size_t n, next, finished;
    unsigned active;
    uint64_t inflight, est;
    int pumping;
    item *items;
    uint8_t *keybuf;
    job *prev_job, *next_job;
    char target[LKV_ADDR_MAX];
};

struct lkv_peer {
    const lkv_config *cfg;
    lkv_service *svc;
    grpc_completion_queue *cq;
    pthread_t thread;
    int thread_started;
    lkv_inbox *inbox;
    job *jobs;
    unsigned n_jobs;
    int cancelled; /* shutdown: no new key starts */
};

static lkv_budget *budget_of(const lkv_peer *p)
{
    return lkv_service_budget(p->svc);
}

static void *cq_main(void *arg)
{
    lkv_peer *p = arg;
    pthread_setname_np(pthread_self(), "lkv-peer-cq");
    for (;;) {
        const grpc_event ev =
            grpc_completion_queue_next(p->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        item *it = ev.tag;
        PEER_TAKEN(it);
        it->ok = ev.success;
        lkv_inbox_push(p->inbox, &it->ev);
    }
    return NULL;
}

/* The key is over: its result is set, its bytes leave the flight. The next
 * keys start from the inbox (or from the pump already running), never from
 * inside the completion that finished this one, so no call chain loops. */
static void item_finish(item *it, uint32_t code, uint64_t bytes, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void item_finish(item *it, uint32_t code, uint64_t bytes, const char *fmt, ...)
{
    job *j = it->j;
    it->code = code;
    it->bytes = bytes;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->msg, sizeof it->msg, fmt, ap);
    va_end(ap);
    j->inflight -= it->charged;
    lkv_budget_give(budget_of(j->p), it->charged);
    it->charged = 0;
    it->state = ITEM_DONE;
    j->active--;
    j->finished++;
    if (!j->pumping && !j->kick_queued) {
        j->kick_queued = 1;
        lkv_inbox_push(j->p->inbox, &j->kick);
    }
}

/* Packs a BlockKey-bearing request for key it: Get (want_coded) or Put
 * (coded). NULL when out of memory. */
static uint8_t *pack_request(const item *it, const uint8_t *coded, size_t coded_len, size_t *len)
{
    Latticekv__V1__BlockKey k = LATTICEKV__V1__BLOCK_KEY__INIT;
    k.namespace_ = it->j->ns;
    k.key.data = (uint8_t *)it->key;
    k.key.len = it->key_len;
    const ProtobufCMessage *m;
    Latticekv__V1__GetRequest g = LATTICEKV__V1__GET_REQUEST__INIT;
    Latticekv__V1__PutRequest put = LATTICEKV__V1__PUT_REQUEST__INIT;
    if (coded) {
        put.key = &k;
        put.payload_case = LATTICEKV__V1__PUT_REQUEST__PAYLOAD_CODED;
        put.coded.data = (uint8_t *)coded;
        put.coded.len = coded_len;
        m = &put.base;
    } else {
        g.key = &k;
        g.want_coded = 1;
        m = &g.base;
    }
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        protobuf_c_message_pack(m, buf);
    return buf;
}

/* gRPC frees a request buffer once it is sent, on its own threads. */
static void free_request(void *p)
{
    PEER_TAKEN(p);
    free(p);
}

/* Starts the remote unary call of it with request buf (len bytes, taken). */
static void remote_start(item *it, const char *method, uint8_t *buf, size_t len)
{
    job *j = it->j;
    if (j->p->cancelled) { /* its local step ended after lkv_peer_cancel_all */
        free(buf);
        item_finish(it, LKV_GRPC_CANCELLED, 0, "not sent: the daemon is shutting down");
        return;
    }
    const gpr_timespec deadline = gpr_time_add(
        gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(PEER_CALL_TIMEOUT_S, GPR_TIMESPAN));
    it->call =
        grpc_channel_create_call(j->ch, NULL, GRPC_PROPAGATE_DEFAULTS, j->p->cq,
                                 grpc_slice_from_static_string(method), NULL, deadline, NULL);
    if (!it->call) {
        free(buf);
        item_finish(it, LKV_GRPC_INTERNAL, 0, "%s: could not create a call to %s", method,
                    j->target);
        return;
    }
    PEER_HANDOFF(buf);
    grpc_slice s = grpc_slice_new(buf, len, free_request);
    it->send = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    grpc_metadata_array_init(&it->md);
    grpc_metadata_array_init(&it->trailing);
    it->details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = it->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &it->md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &it->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &it->trailing;
    ops[5].data.recv_status_on_client.status = &it->status;
    ops[5].data.recv_status_on_client.status_details = &it->details;
    PEER_HANDOFF(it);
    const grpc_call_error e = grpc_call_start_batch(it->call, ops, 6, &it->ev, NULL);
    if (e != GRPC_CALL_OK) {
        /* Only a bug in this file gets here. */
        grpc_byte_buffer_destroy(it->send);
        it->send = NULL;
        grpc_metadata_array_destroy(&it->md);
        grpc_metadata_array_destroy(&it->trailing);
        grpc_call_unref(it->call);
        it->call = NULL;
        item_finish(it, LKV_GRPC_INTERNAL, 0, "%s: grpc_call_start_batch failed (%d)", method,
                    (int)e);
    }
}

/* The remote call is over; frees what it held. Returns the response bytes
 * (malloc'd, *len) when it succeeded with a message, else NULL. */
static uint8_t *remote_end(item *it, size_t *len)
{
    uint8_t *out = NULL;
    *len = 0;
    if (it->recv && it->ok && it->status == GRPC_STATUS_OK) {
        grpc_byte_buffer_reader rd;
        if (grpc_byte_buffer_reader_init(&rd, it->recv)) {
            grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
            grpc_byte_buffer_reader_destroy(&rd);
            *len = GRPC_SLICE_LENGTH(all);
            out = malloc(*len ? *len : 1);
            if (out && *len)
                memcpy(out, GRPC_SLICE_START_PTR(all), *len);
            grpc_slice_unref(all);
        }
    }
    if (it->recv)
        grpc_byte_buffer_destroy(it->recv);
    it->recv = NULL;
    grpc_byte_buffer_destroy(it->send);
    it->send = NULL;
    grpc_metadata_array_destroy(&it->md);
    grpc_metadata_array_destroy(&it->trailing);
    grpc_call_unref(it->call);
    it->call = NULL;
    return out;
}

/* ---- Push: local Get, then remote Put ---------------------------------- */

static void push_read_done(void *ctx, uint64_t seq, lkv_reply *rep)
{
    (void)seq;
    item *it = ctx;
    job *j = it->j;
    lkv_budget *b = budget_of(j->p);
    if (rep->code != LKV_GRPC_OK) {
        if (rep->buf)
            lkv_budget_give(b, rep->len);
        free(rep->buf);
        item_finish(it, rep->code, 0, "%s", rep->msg);
        return;
    }
    Latticekv__V1__GetResponse *g = latticekv__v1__get_response__unpack(NULL, rep->len, rep->buf);
    lkv_budget_give(b, rep->len);
    free(rep->buf);
    if (!g || g->payload_case != LATTICEKV__V1__GET_RESPONSE__PAYLOAD_CODED) {
        if (g)
            latticekv__v1__get_response__free_unpacked(g, NULL);
        item_finish(it, LKV_GRPC_INTERNAL, 0, "the local Get gave no coded block");
        return;
    }
    size_t len;
    uint8_t *buf = pack_request(it, g->coded.data, g->coded.len, &len);
    const size_t coded_len = g->coded.len;
    latticekv__v1__get_response__free_unpacked(g, NULL);
    if (!buf) {
        item_finish(it, LKV_GRPC_RESOURCE_EXHAUSTED, 0, "out of memory for a %zu-byte block",
                    coded_len);
        return;
    }
    it->charged = len;
    it->bytes = coded_len;
    j->inflight += len;
    if (len > j->est)
        j->est = len;
    lkv_budget_take(b, len);
    remote_start(it, "/latticekv.v1.KVStore/Put", buf, len);
}

static void push_start(item *it)
{
    size_t len;
    uint8_t *buf = pack_request(it, NULL, 0, &len);
    if (!buf) {
        item_finish(it, LKV_GRPC_RESOURCE_EXHAUSTED, 0, "out of memory for a request");
        return;
    }
    lkv_budget_take(budget_of(it->j->p), len);
    lkv_service_handle_local(it->j->p->svc, LKV_METHOD_GET, push_read_done, it, 0, buf, len);
}

static void push_sent(item *it)
{
    size_t len;
    uint8_t *resp = remote_end(it, &len);
    free(resp); /* PutResponse: coded_bytes, which we know */
    if (!it->ok)
        item_finish(it, LKV_GRPC_UNAVAILABLE, 0, "to %s: the call failed", it->j->target);
    else if (it->status != GRPC_STATUS_OK)
        item_finish(it, (uint32_t)it->status, 0, "receiver %s: %.*s", it->j->target,
                    (int)GRPC_SLICE_LENGTH(it->details), GRPC_SLICE_START_PTR(it->details));
    else
        item_finish(it, LKV_GRPC_OK, it->bytes, "stored");
    grpc_slice_unref(it->details);
}

/* ---- Pull: remote Get, then local Put ---------------------------------- */

static void pull_stored(void *ctx, uint64_t seq, lkv_reply *rep)
{
    (void)seq;
    item *it = ctx;
    if (rep->buf)
        lkv_budget_give(budget_of(it->j->p), rep->len);
    free(rep->buf);
    if (rep->code != LKV_GRPC_OK)
        item_finish(it, rep->code, 0, "%s", rep->msg);
    else
        item_finish(it, LKV_GRPC_OK, it->bytes, "stored");
}

static void pull_start(item *it)
{
    job *j = it->j;
    size_t len;
    uint8_t *buf = pack_request(it, NULL, 0, &len);
    if (!buf) {
        item_finish(it, LKV_GRPC_RESOURCE_EXHAUSTED, 0, "out of memory for a request");
        return;
    }
    /* The block's size is not known yet: reserve the estimate. */
    it->charged = j->est;
    j->inflight += j->est;
    lkv_budget_take(budget_of(j->p), j->est);
    remote_start(it, "/latticekv.v1.KVStore/Get", buf, len);
}

static void pull_fetched(item *it)
{
    job *j = it->j;
    size_t len;
    uint8_t *resp = remote_end(it, &len);
    const int ok = it->ok, status = (int)it->status;
    char details[160];
    snprintf(details, sizeof details, "%.*s",
             (int)GRPC_SLICE_LENGTH(it->details) < 150 ? (int)GRPC_SLICE_LENGTH(it->details) : 150,
             (const char *)GRPC_SLICE_START_PTR(it->details));
    grpc_slice_unref(it->details);
    if (!ok || status != GRPC_STATUS_OK || !resp) {
        free(resp);
        if (!ok)
            item_finish(it, LKV_GRPC_UNAVAILABLE, 0, "from %s: the call failed", j->target);
        else if (status != GRPC_STATUS_OK)
            item_finish(it, (uint32_t)status, 0, "sender %s: %s", j->target, details);
        else
            item_finish(it, LKV_GRPC_INTERNAL, 0, "sender %s: no reply message", j->target);
        return;
    }
    Latticekv__V1__GetResponse *g = latticekv__v1__get_response__unpack(NULL, len, resp);
    free(resp);
    if (!g || g->payload_case != LATTICEKV__V1__GET_RESPONSE__PAYLOAD_CODED) {
        if (g)
            latticekv__v1__get_response__free_unpacked(g, NULL);
        item_finish(it, LKV_GRPC_DATA_LOSS, 0, "sender %s: the reply holds no coded block",
                    j->target);
        return;
    }
    size_t put_len;
    uint8_t *put = pack_request(it, g->coded.data, g->coded.len, &put_len);
    it->bytes = g->coded.len;
    latticekv__v1__get_response__free_unpacked(g, NULL);
    if (!put) {
        item_finish(it, LKV_GRPC_RESOURCE_EXHAUSTED, 0, "out of memory for a %llu-byte block",
                    (unsigned long long)it->bytes);
        return;
    }
    /* The estimate becomes the block's real size. */
    lkv_budget *b = budget_of(j->p);
    j->inflight -= it->charged;
    lkv_budget_give(b, it->charged);
    it->charged = 0;
    if (put_len > j->est)
        j->est = put_len;
    /* The Put request is charged as any request; the store takes it. */
    lkv_budget_take(b, put_len);
    lkv_service_handle_local(j->p->svc, LKV_METHOD_PUT, pull_stored, it, 0, put, put_len);
}

/* ---- transfers --------------------------------------------------------- */

static void job_free(job *j)
{
    lkv_peer *p = j->p;
    if (j->prev_job)
        j->prev_job->next_job = j->next_job;
    else
        p->jobs = j->next_job;
    if (j->next_job)
        j->next_job->prev_job = j->prev_job;
    p->n_jobs--;
    if (j->ch)
        grpc_channel_destroy(j->ch);
    free(j->items);
    free(j->keybuf);
    free(j->ns);
    free(j);
}

/* Every key has its result: answer the Push or Pull call. */
static void job_reply(job *j)
{
    lkv_peer *p = j->p;
    Latticekv__V1__PeerKeyResult *res = calloc(j->n ? j->n : 1, sizeof *res);
    Latticekv__V1__PeerKeyResult **ptrs = calloc(j->n ? j->n : 1, sizeof *ptrs);
    lkv_reply rep = {.code = LKV_GRPC_OK};
    uint32_t stored = 0;
    uint64_t bytes = 0;
    if (res && ptrs) {
        for (size_t i = 0; i < j->n; i++) {
            const item *it = &j->items[i];
            latticekv__v1__peer_key_result__init(&res[i]);
            res[i].key.data = (uint8_t *)it->key;
            res[i].key.len = it->key_len;
            res[i].code = it->code;
            res[i].message = (char *)(it->code ? it->msg : "");
            res[i].coded_bytes = it->code ? 0 : it->bytes;
            ptrs[i] = &res[i];
            stored += it->code == 0;
            bytes += it->code ? 0 : it->bytes;
        }
        /* PushResponse and PullResponse are the same fields. */
        Latticekv__V1__PushResponse resp = LATTICEKV__V1__PUSH_RESPONSE__INIT;
        resp.n_results = j->n;
        resp.results = ptrs;
        resp.stored = stored;
        resp.coded_bytes = bytes;
        rep.len = protobuf_c_message_get_packed_size(&resp.base);
        rep.buf = malloc(rep.len ? rep.len : 1);
        if (rep.buf) {
            protobuf_c_message_pack(&resp.base, rep.buf);
            lkv_budget_take(budget_of(p), rep.len);
        }
    }
    if (!rep.buf) {
        rep.code = LKV_GRPC_RESOURCE_EXHAUSTED;
        rep.len = 0;
        snprintf(rep.msg, sizeof rep.msg, "out of memory for the reply of %zu keys", j->n);
    }
    free(res);
    free(ptrs);
    char qt[LKV_LOG_QUOTE_MAX];
    lkv_log(LKV_LOG_INFO, j->pull ? "pull_done" : "push_done",
            "peer=%s keys=%zu stored=%u coded_bytes=%llu",
            lkv_log_quote_str(qt, sizeof qt, j->target), j->n, stored, (unsigned long long)bytes);
    lkv_service_finish(p->svc, j->pull ? LKV_METHOD_PULL : LKV_METHOD_PUSH, j->call, j->seq, &rep);
    job_free(j);
}

/* Starts keys while the flight has room; answers once every key is done.
 * A key can finish inside its own start (a local miss): this loop sees it. */
static void pump(job *j)
{
    j->pumping = 1;
    const uint64_t limit = j->p->cfg->peer_inflight_bytes;
    while (j->next < j->n) {
        item *it = &j->items[j->next];
        if (j->p->cancelled) {
            j->next++;
            it->state = ITEM_DONE;
            it->code = LKV_GRPC_CANCELLED;
            snprintf(it->msg, sizeof it->msg, "not sent: the daemon is shutting down");
            j->finished++;
            continue;
        }
        if (j->active && j->inflight + j->est > limit)
            break;
        j->next++;
        it->state = ITEM_ACTIVE;
        j->active++;
        if (j->pull)
            pull_start(it);
        else
            push_start(it);
    }
    j->pumping = 0;
    if (j->finished == j->n)
        job_reply(j);
}

static void on_event(lkv_event *ev, void *ud)
{
    (void)ud;
    if (ev->kind == EV_KICK) {
        job *j = (job *)ev;
        j->kick_queued = 0;
        pump(j);
        return;
    }
    item *it = (item *)ev;
    if (it->j->pull)
        pull_fetched(it);
    else
        push_sent(it);
}

static void after_events(void *ud)
{
    (void)ud; /* main.c's check handle sends the replies after this loop turn */
}

static void peer_start(void *peer, const lkv_peer_spec *spec, void *call, uint64_t seq)
{
    lkv_peer *p = peer;
    const lkv_method m = spec->pull ? LKV_METHOD_PULL : LKV_METHOD_PUSH;
    size_t total = 0;
    for (size_t i = 0; i < spec->n_keys; i++)
        total += spec->key_lens[i];
    job *j = calloc(1, sizeof *j);
    if (j) {
        j->items = calloc(spec->n_keys ? spec->n_keys : 1, sizeof *j->items);
        j->keybuf = malloc(total ? total : 1);
        j->ns = malloc(spec->ns_len + 1);
    }
    if (!j || !j->items || !j->keybuf || !j->ns) {
        if (j) {
            free(j->items);
            free(j->keybuf);
            free(j->ns);
        }
        free(j);
        lkv_reply rep = {.code = LKV_GRPC_RESOURCE_EXHAUSTED};
        snprintf(rep.msg, sizeof rep.msg, "out of memory for a transfer of %zu keys", spec->n_keys);
        lkv_service_finish(p->svc, m, call, seq, &rep);
        return;
    }
    j->kick.kind = EV_KICK;
    j->p = p;
    j->pull = spec->pull;
    j->call = call;
    j->seq = seq;
    j->n = spec->n_keys;
    j->est = PEER_FIRST_ESTIMATE;
    if (spec->ns_len)
        memcpy(j->ns, spec->ns, spec->ns_len);
    j->ns[spec->ns_len] = 0;
    j->ns_len = spec->ns_len;
    snprintf(j->target, sizeof j->target, "%s", spec->target);
    size_t off = 0;
    for (size_t i = 0; i < spec->n_keys; i++) {
        item *it = &j->items[i];
        it->j = j;
        it->ev.kind = EV_REMOTE;
        if (spec->key_lens[i])
            memcpy(j->keybuf + off, spec->keys[i], spec->key_lens[i]);
        it->key = j->keybuf + off;
        it->key_len = spec->key_lens[i];
        off += spec->key_lens[i];
    }
    j->next_job = p->jobs;
    if (p->jobs)
        p->jobs->prev_job = j;
    p->jobs = j;
    p->n_jobs++;
    if (j->n) {
        const int max_msg =
            p->cfg->max_message_bytes > INT32_MAX ? INT32_MAX : (int)p->cfg->max_message_bytes;
        grpc_arg args[] = {lkv_grpc_int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, max_msg),
                           lkv_grpc_int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, max_msg)};
        const grpc_channel_args ca = {sizeof args / sizeof args[0], args};
        grpc_channel_credentials *cr = grpc_insecure_credentials_create();
        j->ch = grpc_channel_create(j->target, cr, &ca);
        grpc_channel_credentials_release(cr);
    }
    char qt[LKV_LOG_QUOTE_MAX];
    lkv_log(LKV_LOG_DEBUG, j->pull ? "pull_begin" : "push_begin", "peer=%s keys=%zu",
            lkv_log_quote_str(qt, sizeof qt, j->target), j->n);
    pump(j);
}

lkv_peer *lkv_peer_create(void *uv_loop, const lkv_config *cfg, lkv_service *svc)
{
    lkv_peer *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->cfg = cfg;
    p->svc = svc;
    lkv_grpc_quiet_absl_deadlock_detection();
    grpc_init();
    p->cq = grpc_completion_queue_create_for_next(NULL);
    p->inbox = lkv_inbox_create(uv_loop, on_event, after_events, p);
    if (p->inbox && pthread_create(&p->thread, NULL, cq_main, p) == 0)
        p->thread_started = 1;
    if (!p->thread_started) {
        lkv_peer_free(p);
        return NULL;
    }
    lkv_service_set_peer(svc, peer_start, p);
    return p;
}

void lkv_peer_cancel_all(lkv_peer *p)
{
    if (!p)
        return;
    p->cancelled = 1;
    for (job *j = p->jobs; j; j = j->next_job)
        for (size_t i = 0; i < j->n; i++)
            if (j->items[i].call)
                grpc_call_cancel(j->items[i].call, NULL);
}

unsigned lkv_peer_transfers(const lkv_peer *p)
{
    return p ? p->n_jobs : 0;
}

void lkv_peer_free(lkv_peer *p)
{
    if (!p)
        return;
    lkv_service_set_peer(p->svc, NULL, NULL);
    grpc_completion_queue_shutdown(p->cq);
    if (p->thread_started)
        pthread_join(p->thread, NULL);
    grpc_completion_queue_destroy(p->cq);
    if (p->inbox)
        lkv_inbox_close(p->inbox);
    grpc_shutdown();
    free(p);
}
