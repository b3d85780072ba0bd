/* SPDX-License-Identifier: Apache-2.0 */
/*
 * service.c - what each latticekv RPC does, without any gRPC type.
 *
 * Design note. rpc.c hands every request message here as bytes, with an
 * opaque call pointer and the message's sequence number in its stream; the
 * answer goes back through the reply function, either at once (Lookup,
 * Delete, Stats, Health, errors, Get of coded bytes) or when the request's
 * codec work comes back from the batcher. Everything runs on the loop
 * thread; only the codec work itself runs on the workers.
 *
 * Validation happens before any work is queued, so a bad request costs only
 * itself, and every error names the field and the value. Replies with a big
 * payload are laid out with wire.c and the codec writes into them in place:
 * Compress and Get write one malloc'd buffer that becomes the gRPC slice
 * without a copy. Put encodes into a fresh blob and swaps it into the store
 * only after the encode succeeded, so a failed Put leaves the old value.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "latticekv/v1/latticekv.pb-c.h"
#include "lkv_log.h"
#include "lkv_reflection.h"
#include "lkv_stack.h"
#include "lkv_service.h"
#include "tier/lkv_tier_gpu.h"
#include "lkv_wire.h"

static const char *const method_paths[] = {
#define LKV_X_PATH(name, service, method, streaming, handler) LKV_RPC_PATH(service, method),
    LKV_RPC_SERVED_LIST(LKV_X_PATH)
#undef LKV_X_PATH
};
static const int method_streaming[] = {
#define LKV_X_STREAMING(name, service, method, streaming, handler) streaming,
    LKV_RPC_SERVED_LIST(LKV_X_STREAMING)
#undef LKV_X_STREAMING
};

const char *lkv_method_path(lkv_method m)
{
    return (unsigned)m < LKV_METHOD_COUNT ? method_paths[m] : "?";
}

int lkv_method_streaming(lkv_method m)
{
    return (unsigned)m < LKV_METHOD_COUNT ? method_streaming[m] : 0;
}

struct lkv_service {
    const lkv_config *cfg;
    lkv_stack *stack;
    lkv_batcher *batcher;
    const char *backend_name;
    lkv_reply_fn reply;
    int ready;
    int shutting_down;
    uint64_t start_ns;
    struct {
        uint64_t requests, errors, raw_bytes_in, coded_bytes_out;
    } c;                          /* LKV_STATS_LIST's counters */
    lkv_reply_counts replies;     /* by method and code */
    lkv_budget *budget;           /* bytes in flight; NULL: not counted */
    lkv_authz_fn authz;           /* namespace grants of the call's token; NULL: all */
    lkv_peer_start_fn peer_start; /* Push and Pull; NULL: UNIMPLEMENTED */
    void *peer;
};

/* One request message in flight. */
typedef struct req {
    lkv_service *svc;
    lkv_method m;
    void *call;
    uint64_t seq;
    lkv_reply_fn reply_to;   /* the service's reply function, or a local caller's */
    int local;               /* lkv_service_handle_local: no bearer token to check */
    uint8_t *in;             /* the request bytes (owned); payloads point into them */
    size_t in_len;           /* their length, charged to the in-flight budget */
    lkv_wire_put put;        /* Put: the parsed request; Delete: its key */
    lkv_wire_get get;        /* Get: the parsed request */
    lkv_tier_req treq;       /* Put, Get, Delete: the tier stack's request */
    lkv_gpu_decode_req gdec; /* Get served by the GPU tier */
    lkv_work work;
    lkv_wire_layout lay;
    lkv_container_info info;
    lkv_dtype out_dt;
    uint64_t raw_bytes;
    uint8_t *buf;   /* reply being built */
    size_t buf_len; /* its length, charged to the in-flight budget */
    lkv_blob *blob; /* Put: the new block; Get: the block being decoded */
    /* the OK reply's held-back effect (lkv_reply.commit/drop/effect) */
    void (*commit)(void *effect, lkv_reply *rep);
    void (*drop)(void *effect);
    void *effect;
} req;

lkv_service *lkv_service_create(const lkv_config *cfg, lkv_stack *stack, lkv_batcher *batcher,
                                const char *backend_name, lkv_reply_fn reply)
{
    lkv_service *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cfg = cfg;
    s->stack = stack;
    s->batcher = batcher;
    s->backend_name = backend_name;
    s->reply = reply;
    s->start_ns = lkv_now_ns();
    return s;
}

void lkv_service_set_budget(lkv_service *s, lkv_budget *b)
{
    s->budget = b;
}

void lkv_service_set_authz(lkv_service *s, lkv_authz_fn allowed)
{
    s->authz = allowed;
}

lkv_budget *lkv_service_budget(const lkv_service *s)
{
    return s->budget;
}

void lkv_service_free(lkv_service *s)
{
    free(s);
}
void lkv_service_set_ready(lkv_service *s, int ready)
{
    s->ready = ready;
}
void lkv_service_set_shutting_down(lkv_service *s)
{
    s->shutting_down = 1;
}
int lkv_service_shutting_down(const lkv_service *s)
{
    return s->shutting_down;
}

static void count_reply(lkv_service *s, lkv_method m, lkv_grpc_code code)
{
    const unsigned row = (unsigned)m < LKV_METHOD_COUNT ? (unsigned)m : LKV_METHOD_COUNT;
    const unsigned col = (unsigned)code < LKV_GRPC_CODE_COUNT ? (unsigned)code : LKV_GRPC_UNKNOWN;
    s->replies.n[row][col]++;
}

void lkv_service_count_method(lkv_service *s, lkv_method m, lkv_grpc_code code)
{
    s->c.requests++;
    if (code != LKV_GRPC_OK)
        s->c.errors++;
    count_reply(s, m, code);
}

const lkv_reply_counts *lkv_service_replies(const lkv_service *s)
{
    return &s->replies;
}

static void req_free(req *r)
{
    if (r->in)
        lkv_budget_give(r->svc->budget, r->in_len);
    free(r->in);
    lkv_blob_unref(r->blob);
    if (r->buf)
        lkv_budget_give(r->svc->budget, r->buf_len);
    free(r->buf);
    if (r->drop) /* an effect that no reply took */
        r->drop(r->effect);
    free(r);
}

/* Makes rep (its msg already written) an error reply with code: counts it
 * and logs it. Every failed request goes through here. */
static void error_reply(lkv_service *s, lkv_method m, lkv_reply *rep, lkv_grpc_code code)
{
    rep->code = code;
    s->c.errors++;
    count_reply(s, m, code);
    if (lkv_log_enabled(LKV_LOG_DEBUG)) {
        char q[LKV_LOG_QUOTE_MAX]; /* the message may carry client bytes */
        lkv_log(LKV_LOG_DEBUG, "request_failed", "method=%s code=%s msg=%s", lkv_method_path(m),
                lkv_grpc_code_name(code), lkv_log_quote_str(q, sizeof q, rep->msg));
    }
}

/* The message of an lkv_status failure: the codec's (or our) diag, else the
 * status's own. */
static const char *status_msg(lkv_status st, const lkv_diag *d)
{
    return d && d->msg[0] ? d->msg : lkv_server_status_message(st);
}

/* Sends an error reply and frees the request; returns -1, so that every
 * step of a handler can end with `return reply_error(...)`. */
static int reply_error(req *r, lkv_grpc_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int reply_error(req *r, lkv_grpc_code code, const char *fmt, ...)
{
    lkv_reply rep = {.code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rep.msg, sizeof rep.msg, fmt, ap);
    va_end(ap);
    error_reply(r->svc, r->m, &rep, code);
    r->reply_to(r->call, r->seq, &rep);
    req_free(r);
    return -1;
}

static int reply_status(req *r, lkv_status st, const lkv_diag *d)
{
    return reply_error(r, lkv_status_to_grpc(st), "%s", status_msg(st, d));
}

/* Sends r->buf (len bytes) as the OK reply and frees the request. */
static int reply_ok(req *r, size_t len)
{
    if (!r->commit) /* else counted when committed */
        count_reply(r->svc, r->m, LKV_GRPC_OK);
    lkv_reply rep = {.code = LKV_GRPC_OK,
                     .buf = r->buf,
                     .len = len,
                     .commit = r->commit,
                     .drop = r->drop,
                     .effect = r->effect};
    r->buf = NULL;
    r->buf_len = 0;
    r->commit = NULL;
    r->drop = NULL;
    r->effect = NULL;
    r->reply_to(r->call, r->seq, &rep);
    req_free(r);
    return 0;
}

static void charge_reply(req *r, size_t n)
{
    lkv_budget_take(r->svc->budget, n);
    r->buf_len = n;
}

static int reply_packed(req *r, const ProtobufCMessage *msg)
{
    const size_t n = protobuf_c_message_get_packed_size(msg);
    /* Small replies (Stats, Lookup, Put's) are charged but never refused. */
    r->buf = malloc(n ? n : 1);
    if (!r->buf)
        return reply_error(r, LKV_GRPC_RESOURCE_EXHAUSTED, "out of memory for a %zu-byte reply", n);
    charge_reply(r, n);
    protobuf_c_message_pack(msg, r->buf);
    return reply_ok(r, n);
}

/* 0 when a reply of r->lay.total bytes may be sent, else the error is sent. */
static int reply_fits(req *r)
{
    if (r->lay.total > r->svc->cfg->max_message_bytes)
        return reply_error(r, LKV_GRPC_RESOURCE_EXHAUSTED,
                           "reply of %zu bytes exceeds max-message-bytes=%llu", r->lay.total,
                           (unsigned long long)r->svc->cfg->max_message_bytes);
    return 0;
}

/* Allocates the reply buffer of a planned layout; 0 or an error already sent.
 * check_limit 0: the layout is a worst case, and the caller checks the
 * message limit once the reply's real size is known. */
static int alloc_reply_as(req *r, int check_limit)
{
    if (check_limit && reply_fits(r) != 0)
        return -1;
    if (!lkv_budget_try_take(r->svc->budget, r->lay.total))
        return reply_error(r, LKV_GRPC_RESOURCE_EXHAUSTED,
                           "reply of %zu bytes refused: %llu bytes already in flight, "
                           "max-inflight-bytes=%llu",
                           r->lay.total, (unsigned long long)atomic_load(&r->svc->budget->used),
                           (unsigned long long)r->svc->budget->limit);
    r->buf = malloc(r->lay.total ? r->lay.total : 1);
    if (!r->buf) {
        lkv_budget_give(r->svc->budget, r->lay.total);
        return reply_error(r, LKV_GRPC_RESOURCE_EXHAUSTED, "out of memory for a %zu-byte reply",
                           r->lay.total);
    }
    r->buf_len = r->lay.total;
    return 0;
}

static int alloc_reply(req *r)
{
    return alloc_reply_as(r, 1);
}

/* Queues r's codec work; its done function replies. Returns 0. */
static int submit(req *r, lkv_op op, const lkv_params *p, lkv_dtype dt, const uint8_t *src,
                  uint8_t *dst, size_t n, void (*done)(lkv_work *))
{
    r->work.op = op;
    r->work.params = *p;
    r->work.dtype = dt;
    r->work.src = src;
    r->work.dst = dst;
    r->work.n = n;
    r->work.done = done;
    r->work.ud = r;
    lkv_batcher_submit(r->svc->batcher, &r->work, lkv_now_ns());
    return 0;
}

/* ---- validation -------------------------------------------------------- */

static const char *shape_text(const uint64_t *shape, size_t n, char *buf, size_t cap)
{
    size_t o = 0;
    buf[o++] = '[';
    for (size_t i = 0; i < n && o + 24 < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%llu", i ? "," : "",
                              (unsigned long long)shape[i]);
    snprintf(buf + o, cap - o, "]");
    return buf;
}

static int dtype_ok(req *r, int64_t dt, const char *field)
{
    if (dt == LKV_DTYPE_BF16 || dt == LKV_DTYPE_FP16 || dt == LKV_DTYPE_FP32)
        return 1;
    if (dt == 0)
        reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "%s is DTYPE_UNSPECIFIED; use BF16, FP16 or FP32",
                    field);
    else
        reply_error(r, LKV_GRPC_INVALID_ARGUMENT,
                    "%s=%lld is not a known dtype (1=BF16, 2=FP16, 3=FP32)", field, (long long)dt);
    return 0;
}

/*
 * Checks a tensor and the codec params for encoding it; fills r->info and
 * the params. 0 when valid, else the error reply is already sent.
 */
static int check_tensor(req *r, const lkv_wire_tensor *t, const lkv_wire_params *cp, lkv_params *p)
{
    if (!t->present)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "tensor is missing");
    if (!dtype_ok(r, t->dtype, "tensor.dtype"))
        return -1;
    if (t->n_shape == 0)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT,
                           "tensor.shape is empty; the last dim is head_dim");
    if (t->n_shape > LKV_MAX_NDIM)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "tensor.shape has %zu dims; at most %u",
                           t->n_shape, LKV_MAX_NDIM);
    const uint64_t head_dim = t->shape[t->n_shape - 1];
    /* An out-of-range enum value stays out of range, so the check below names it. */
    const int64_t v = cp->variant;
    const int variant =
        v == 0 ? (int)r->svc->cfg->default_variant : (v < 0 || v > 1000 ? 1000 : (int)v);
    const uint32_t q = cp->q_range ? cp->q_range : (uint32_t)r->svc->cfg->default_q;
    p->variant = (lkv_variant)variant;
    p->q = q;
    p->dim = head_dim > UINT32_MAX ? UINT32_MAX : (uint32_t)head_dim;
    p->profile = cp->profile; /* 0 or 1: profile 1; the check below refuses unknown ones */
    p->format = 0;            /* profile 2 encodes its newest layout */
    lkv_diag d;
    lkv_status st = lkv_params_check(p, &d);
    if (st == LKV_ERR_HEAD_DIM)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT,
                           "tensor.shape[-1] (head_dim)=%llu is not supported: %s",
                           (unsigned long long)head_dim, d.msg);
    if (st != LKV_OK)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "params: %s", d.msg);
    st = lkv_container_plan(p, (lkv_dtype)t->dtype, t->shape, (uint32_t)t->n_shape, &r->info, &d);
    if (st != LKV_OK)
        return reply_status(r, st, &d);
    const size_t esz = lkv_dtype_size((lkv_dtype)t->dtype);
    const uint64_t want = r->info.n_vectors * (uint64_t)p->dim * esz;
    if (t->data_len != want) {
        char sh[160];
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT,
                           "tensor.data has %zu bytes, but shape %s of %s needs %llu", t->data_len,
                           shape_text(t->shape, t->n_shape, sh, sizeof sh),
                           lkv_dtype_name((lkv_dtype)t->dtype), (unsigned long long)want);
    }
    r->raw_bytes = want;
    return 0;
}

/*
 * Namespaces are text: every byte but NUL, compared exactly (a NUL would
 * let "a\0b" and "a" alias wherever a namespace is a C string). Keys are
 * exact bytes, NULs included. Both have a length cap. 0 when valid, else
 * the error reply is already sent.
 */
static int check_namespace(req *r, const char *ns, size_t len, const char *field)
{
    const char *nul = memchr(ns, 0, len);
    if (nul)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT,
                           "%s has a NUL byte at offset %zu; a namespace is text without NUL bytes",
                           field, (size_t)(nul - ns));
    if (len > r->svc->cfg->max_namespace_bytes)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT,
                           "%s is %zu bytes; max-namespace-bytes=%llu", field, len,
                           (unsigned long long)r->svc->cfg->max_namespace_bytes);
    if (r->call && !r->local && r->svc->authz && !r->svc->authz(r->call, ns, len))
        return reply_error(r, lkv_status_to_grpc(LKV_ERR_PERMISSION),
                           "%s=\"%.*s\" is not a namespace this bearer token may use", field,
                           len < 64 ? (int)len : 64, ns);
    return 0;
}

/* index < 0: field is one key, else the index-th of a list. */
static int check_key_len(req *r, size_t len, const char *field, long index)
{
    if (len <= r->svc->cfg->max_key_bytes)
        return 0;
    char name[48];
    if (index < 0)
        snprintf(name, sizeof name, "%s", field);
    else
        snprintf(name, sizeof name, "%s[%ld]", field, index);
    return reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "%s is %zu bytes; max-key-bytes=%llu", name,
                       len, (unsigned long long)r->svc->cfg->max_key_bytes);
}

/* Every RPC names a block the same way. */
static int check_key(req *r, const lkv_wire_key *k)
{
    if (!k->present)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "key is missing");
    if (k->key_len == 0)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "key.key is empty");
    if (check_key_len(r, k->key_len, "key.key", -1) != 0)
        return -1;
    return check_namespace(r, k->ns, k->ns_len, "key.namespace");
}

static int is_p2(const lkv_params *p)
{
    return lkv_profile_of(p) == LKV_PROFILE_2;
}

/* Finishes an encoded container in place: payload checksum, then header.
 * Profile 2's container is as long as the payload the codec wrote (the
 * plan's total_bytes was its worst case); from here on r->info.total_bytes
 * is the actual size, which is what every reply, charge and stat uses. */
static void seal_container(req *r, uint8_t *container)
{
    const size_t payload =
        is_p2(&r->info.params) ? r->work.dst_len : (size_t)r->info.n_vectors * r->info.record_bytes;
    r->info.total_bytes = r->info.header_bytes + payload;
    r->info.payload_crc = lkv_crc32c(0, container + r->info.header_bytes, payload);
    lkv_container_write_header(&r->info, container, r->info.header_bytes, NULL);
    r->svc->c.raw_bytes_in += r->raw_bytes;
    r->svc->c.coded_bytes_out += r->info.total_bytes;
}

/* ---- Codec ------------------------------------------------------------- */

/* CompressResponse.bits_per_vector: profile 1's exact record bits; profile
 * 2's mean over this tensor, payload bits per vector rounded up (0 when
 * there are no vectors). */
static uint32_t reply_bits(const req *r)
{
    if (!is_p2(&r->info.params))
        return lkv_bits_per_vector(&r->info.params);
    const uint64_t n = r->info.n_vectors;
    const uint64_t bits = 8u * (uint64_t)(r->info.total_bytes - r->info.header_bytes);
    return n ? (uint32_t)((bits + n - 1) / n) : 0;
}

/* Profile 2: the reply was laid out for the worst case. Lays it out again
 * for the container's actual size, moves the container to its new offset
 * and gives the bytes no longer needed back to the in-flight budget. */
static void compress_relayout(req *r)
{
    uint8_t *old = r->buf + r->lay.payload_off;
    const size_t old_total = r->lay.total;
    lkv_wire_compress_plan(r->info.total_bytes, r->raw_bytes, reply_bits(r), &r->lay);
    memmove(r->buf + r->lay.payload_off, old, r->info.total_bytes);
    uint8_t *nb = realloc(r->buf, r->lay.total ? r->lay.total : 1);
    if (nb)
        r->buf = nb;
    lkv_budget_give(r->svc->budget, old_total - r->lay.total);
    r->buf_len = r->lay.total;
}

static void compress_done(lkv_work *w)
{
    req *r = w->ud;
    if (w->status != LKV_OK) {
        reply_status(r, w->status, &w->diag);
        return;
    }
    seal_container(r, r->buf + r->lay.payload_off);
    if (is_p2(&r->info.params)) {
        compress_relayout(r);
        if (reply_fits(r) != 0)
            return;
    }
    lkv_wire_compress_finish(r->buf, r->info.total_bytes, r->raw_bytes, reply_bits(r));
    reply_ok(r, r->lay.total);
}

static int handle_compress(req *r, const uint8_t *msg, size_t len)
{
    lkv_wire_tensor t;
    lkv_wire_params cp;
    if (lkv_wire_parse_compress(msg, len, &t, &cp) != 0)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "request is not a valid CompressRequest");
    lkv_params p;
    if (check_tensor(r, &t, &cp, &p) != 0)
        return -1;
    /* Profile 2: the worst case (total_bytes is its bound until sealed, and
     * bits_per_vector is at most 8 * record bound, which fits 5 varint bytes). */
    lkv_wire_compress_plan(r->info.total_bytes, r->raw_bytes,
                           is_p2(&p) ? UINT32_MAX : lkv_bits_per_vector(&p), &r->lay);
    /* Profile 2's worst case may exceed the message limit where the
     * container does not: compress_done checks the real reply. */
    if (alloc_reply_as(r, !is_p2(&p)) != 0)
        return -1;
    r->work.dst_cap = r->info.total_bytes - r->info.header_bytes;
    return submit(r, LKV_OP_ENCODE, &p, (lkv_dtype)t.dtype, t.data,
                  r->buf + r->lay.payload_off + r->info.header_bytes, r->info.n_vectors,
                  compress_done);
}

static void decode_done(lkv_work *w)
{
    req *r = w->ud;
    if (w->status != LKV_OK) {
        reply_status(r, w->status, &w->diag);
        return;
    }
    const size_t data_len =
        (size_t)r->info.n_vectors * r->info.params.dim * lkv_dtype_size(r->out_dt);
    lkv_wire_tensor_reply_finish(
        r->buf, r->out_dt, r->info.shape, r->info.ndim, data_len,
        r->m == LKV_METHOD_DECOMPRESS || r->m == LKV_METHOD_DECOMPRESS_STREAM ? NULL
                                                                              : r->treq.tier->name);
    reply_ok(r, r->lay.total);
}

/* Plans and queues the decode of a parsed container at `container`. */
static int start_decode(req *r, const uint8_t *container, int64_t out_dtype, const char *tier)
{
    if (out_dtype != 0 && !dtype_ok(r, out_dtype, "out_dtype"))
        return -1;
    r->out_dt = out_dtype ? (lkv_dtype)out_dtype : r->info.dtype;
    const size_t data_len =
        (size_t)r->info.n_vectors * r->info.params.dim * lkv_dtype_size(r->out_dt);
    lkv_wire_tensor_reply_plan(r->out_dt, r->info.shape, r->info.ndim, data_len, tier, &r->lay);
    if (alloc_reply(r) != 0)
        return -1;
    r->work.src_len = r->info.total_bytes - r->info.header_bytes; /* profile 2 reads it */
    return submit(r, LKV_OP_DECODE, &r->info.params, r->out_dt, container + r->info.header_bytes,
                  r->buf + r->lay.payload_off, r->info.n_vectors, decode_done);
}

static int handle_decompress(req *r, const uint8_t *msg, size_t len)
{
    lkv_wire_decompress q;
    if (lkv_wire_parse_decompress(msg, len, &q) != 0)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT,
                           "request is not a valid DecompressRequest");
    lkv_diag d;
    const lkv_status st = lkv_container_parse(q.coded, q.coded_len, &r->info, &d);
    if (st != LKV_OK)
        return reply_status(r, st, &d);
    return start_decode(r, q.coded, q.out_dtype, NULL);
}

/* ---- KVStore ----------------------------------------------------------- */

/*
 * A PutStream block is stored when its reply's turn comes (rpc.c calls
 * commit once every earlier reply of the stream is out and the stream has
 * not failed), so a stream that fails at block k stores no block after k.
 * The pending store owns a copy of the key and a reference to the block,
 * whose bytes stay charged to the in-flight budget until the store takes
 * them or the block is dropped: a stream can hold stream-window blocks
 * behind one slow request, and they are in no store yet.
 */
typedef struct pending_put {
    lkv_service *svc;
    lkv_blob *blob;
    uint64_t charged; /* the block's bytes, charged to the in-flight budget */
    size_t ns_len, key_len;
    char name[]; /* ns, then key */
} pending_put;

static void pending_put_drop(void *effect)
{
    pending_put *pp = effect;
    lkv_budget_give(pp->svc->budget, pp->charged);
    lkv_blob_unref(pp->blob);
    free(pp);
}

static void pending_put_commit(void *effect, lkv_reply *rep)
{
    pending_put *pp = effect;
    lkv_diag d = {0};
    const lkv_status st =
        lkv_stack_put_host(pp->svc->stack, pp->name, pp->ns_len,
                           (const uint8_t *)pp->name + pp->ns_len, pp->key_len, pp->blob, &d);
    if (st != LKV_OK) {
        if (rep->buf)
            lkv_budget_give(pp->svc->budget, rep->len);
        free(rep->buf);
        rep->buf = NULL;
        rep->len = 0;
        snprintf(rep->msg, sizeof rep->msg, "%s", status_msg(st, &d));
        error_reply(pp->svc, LKV_METHOD_PUT_STREAM, rep, lkv_status_to_grpc(st));
    } else {
        count_reply(pp->svc, LKV_METHOD_PUT_STREAM, LKV_GRPC_OK);
    }
    pending_put_drop(pp);
}

/* Aims r's tier request at key k; the stack calls done with it. */
static lkv_tier_req *tier_req_of(req *r, const lkv_wire_key *k, void (*done)(lkv_tier_req *))
{
    r->treq = (lkv_tier_req){.ns = k->ns,
                             .ns_len = k->ns_len,
                             .key = k->key,
                             .key_len = k->key_len,
                             .done = done,
                             .ud = r};
    return &r->treq;
}

/* The tiers below host have the block (or refused it): a unary Put now
 * stores it in host memory and replies; a PutStream block waits for its
 * reply's turn (pending_put_commit). */
static void put_below_done(lkv_tier_req *tr)
{
    req *r = tr->ud;
    if (tr->status != LKV_OK) {
        reply_status(r, tr->status, &tr->diag);
        return;
    }
    const lkv_wire_key *k = &r->put.key;
    if (r->m == LKV_METHOD_PUT_STREAM) {
        pending_put *pp = malloc(sizeof *pp + k->ns_len + k->key_len);
        if (!pp) {
            reply_error(r, LKV_GRPC_RESOURCE_EXHAUSTED, "out of memory for a pending store");
            return;
        }
        pp->svc = r->svc;
        pp->blob = lkv_blob_ref(r->blob);
        pp->charged = r->blob->len;
        lkv_budget_take(r->svc->budget, pp->charged);
        pp->ns_len = k->ns_len;
        pp->key_len = k->key_len;
        if (k->ns_len)
            memcpy(pp->name, k->ns, k->ns_len);
        if (k->key_len)
            memcpy(pp->name + k->ns_len, k->key, k->key_len);
        r->commit = pending_put_commit;
        r->drop = pending_put_drop;
        r->effect = pp;
    } else {
        lkv_diag d = {0};
        const lkv_status st =
            lkv_stack_put_host(r->svc->stack, k->ns, k->ns_len, k->key, k->key_len, r->blob, &d);
        if (st != LKV_OK) {
            reply_status(r, st, &d);
            return;
        }
    }
    Latticekv__V1__PutResponse resp = LATTICEKV__V1__PUT_RESPONSE__INIT;
    resp.coded_bytes = r->blob->len;
    reply_packed(r, &resp.base);
}

/* 1 when a block of `coded` bytes under r's key could never fit host memory
 * (the error reply is then sent), else 0. */
static int host_mem_refused(req *r, size_t coded)
{
    const lkv_wire_key *k = &r->put.key;
    if (coded + k->ns_len + k->key_len <= r->svc->cfg->host_mem_bytes)
        return 0;
    reply_error(r, LKV_GRPC_RESOURCE_EXHAUSTED,
                "block of %zu coded bytes exceeds host-mem-bytes=%llu", coded,
                (unsigned long long)r->svc->cfg->host_mem_bytes);
    return 1;
}

/* 0: the stack completes the request (put_below_done replies). */
static int put_store(req *r)
{
    lkv_tier_req *tr = tier_req_of(r, &r->put.key, put_below_done);
    tr->blob = r->blob;
    lkv_stack_put_below(r->svc->stack, tr);
    return 0;
}

static void put_encode_done(lkv_work *w)
{
    req *r = w->ud;
    if (w->status != LKV_OK) {
        reply_status(r, w->status, &w->diag);
        return;
    }
    seal_container(r, r->blob->data);
    if (is_p2(&r->info.params)) {
        /* The block keeps (and is charged) only the bytes it has. */
        r->blob = lkv_blob_shrink(r->blob, r->info.total_bytes);
        if (host_mem_refused(r, r->info.total_bytes))
            return;
    }
    put_store(r);
}

/*
 * The block of a coded Put. A plain PutRequest is the key, the container and
 * a few bytes of protobuf framing, so the request buffer itself becomes the
 * blob (no copy). A request that carries more than that (unknown fields, a
 * tensor before the coded member of the oneof, oversized params) would keep
 * bytes alive that the store never charges for: then only the container is
 * copied into a blob of its own and the request buffer is freed with the
 * request. Either way a stored block keeps at most its charge (container +
 * namespace + key) plus LKV_PUT_ADOPT_SLACK bytes of the request. 0, or the
 * error reply is already sent.
 */
static int put_keep_container(req *r, size_t len)
{
    const lkv_wire_put *q = &r->put;
    const size_t charged = q->coded_len + q->key.ns_len + q->key.key_len;
    if (len <= charged + LKV_PUT_ADOPT_SLACK) {
        r->blob = lkv_blob_adopt(r->in, (uint8_t *)q->coded, q->coded_len);
        if (r->blob) {
            /* Its bytes are the store's now, charged there. */
            lkv_budget_give(r->svc->budget, r->in_len);
            r->in = NULL;
        }
    } else {
        r->blob = lkv_blob_create(q->coded_len);
        if (r->blob)
            memcpy(r->blob->data, q->coded, q->coded_len);
    }
    if (!r->blob)
        return reply_error(r, LKV_GRPC_RESOURCE_EXHAUSTED, "out of memory for a %zu-byte block",
                           q->coded_len);
    return 0;
}

static int handle_put(req *r, const uint8_t *msg, size_t len)
{
    lkv_wire_put *q = &r->put;
    if (lkv_wire_parse_put(msg, len, q) != 0)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "request is not a valid PutRequest");
    if (check_key(r, &q->key) != 0)
        return -1;
    if (q->payload == LKV_WIRE_PAYLOAD_CODED) {
        lkv_diag d;
        const lkv_status st = lkv_container_parse(q->coded, q->coded_len, &r->info, &d);
        if (st != LKV_OK)
            return reply_status(r, st, &d);
        if (put_keep_container(r, len) != 0)
            return -1;
        return put_store(r);
    }
    if (q->payload != LKV_WIRE_PAYLOAD_TENSOR)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "payload is missing: set tensor or coded");
    lkv_params p;
    if (check_tensor(r, &q->tensor, &q->params, &p) != 0)
        return -1;
    /* Profile 2's size is known only after encoding (put_encode_done). */
    if (!is_p2(&p) && host_mem_refused(r, r->info.total_bytes))
        return -1;
    r->blob = lkv_blob_create(r->info.total_bytes);
    if (!r->blob)
        return reply_error(r, LKV_GRPC_RESOURCE_EXHAUSTED, "out of memory for a %zu-byte block",
                           r->info.total_bytes);
    r->work.dst_cap = r->info.total_bytes - r->info.header_bytes;
    return submit(r, LKV_OP_ENCODE, &p, (lkv_dtype)q->tensor.dtype, q->tensor.data,
                  r->blob->data + r->info.header_bytes, r->info.n_vectors, put_encode_done);
}

/* A block that no longer verifies is useless: every tier drops it. */
typedef struct drop_req {
    lkv_tier_req treq;
    char name[]; /* ns, then key */
} drop_req;

static void drop_done(lkv_tier_req *tr)
{
    free(tr->ud);
}

static void drop_block(lkv_service *s, const lkv_wire_key *k)
{
    drop_req *d = malloc(sizeof *d + k->ns_len + k->key_len);
    if (!d)
        return; /* it fails verification again on the next Get */
    memcpy(d->name, k->ns, k->ns_len);
    memcpy(d->name + k->ns_len, k->key, k->key_len);
    d->treq = (lkv_tier_req){.ns = d->name,
                             .ns_len = k->ns_len,
                             .key = (const uint8_t *)d->name + k->ns_len,
                             .key_len = k->key_len,
                             .done = drop_done,
                             .ud = d};
    lkv_stack_del(s->stack, &d->treq);
}

static void get_done(lkv_tier_req *tr)
{
    req *r = tr->ud;
    const lkv_wire_key *k = &r->get.key;
    if (tr->status != LKV_OK) {
        reply_status(r, tr->status, &tr->diag);
        return;
    }
    if (!tr->found) {
        reply_error(r, LKV_GRPC_NOT_FOUND, "key not found: namespace=\"%.*s\" key of %zu bytes",
                    k->ns_len < 64 ? (int)k->ns_len : 64, k->ns, k->key_len);
        return;
    }
    r->blob = tr->blob;
    const char *tier = tr->tier->name;
    lkv_diag d;
    const lkv_status st = lkv_container_parse(r->blob->data, r->blob->len, &r->info, &d);
    if (st != LKV_OK) {
        drop_block(r->svc, k);
        char qns[LKV_LOG_QUOTE_MAX], qr[LKV_LOG_QUOTE_MAX];
        lkv_log(LKV_LOG_WARN, "block_dropped", "namespace=%s tier=%s reason=%s",
                lkv_log_quote(qns, sizeof qns, k->ns, k->ns_len), tier,
                lkv_log_quote_str(qr, sizeof qr, d.msg));
        reply_error(r, LKV_GRPC_DATA_LOSS, "stored block failed verification and was dropped: %s",
                    d.msg);
        return;
    }
    if (r->get.want_coded) {
        lkv_wire_coded_reply_plan(r->blob->len, tier, &r->lay);
        if (alloc_reply(r) != 0)
            return;
        memcpy(r->buf + r->lay.payload_off, r->blob->data, r->blob->len);
        lkv_wire_coded_reply_finish(r->buf, r->blob->len, tier);
        reply_ok(r, r->lay.total);
        return;
    }
    start_decode(r, r->blob->data, r->get.out_dtype, tier);
}

/* A block resident in the GPU tier decodes there, from its device bytes,
 * into the reply buffer; the coded bytes never come to the host. */
static void gpu_decode_done(lkv_gpu_decode_req *g)
{
    req *r = g->ud;
    if (g->status != LKV_OK) {
        reply_status(r, g->status, &g->diag);
        return;
    }
    if (!g->found) { /* cannot happen: looked up in the same loop turn */
        reply_error(r, LKV_GRPC_INTERNAL, "block left the gpu tier before its decode");
        return;
    }
    lkv_wire_tensor_reply_finish(r->buf, r->out_dt, r->info.shape, r->info.ndim, g->dst_cap, "gpu");
    reply_ok(r, r->lay.total);
}

static int get_from_gpu(req *r, lkv_tier *gpu)
{
    const lkv_wire_key *k = &r->get.key;
    if (r->get.out_dtype != 0 && !dtype_ok(r, r->get.out_dtype, "out_dtype"))
        return -1;
    r->out_dt = r->get.out_dtype ? (lkv_dtype)r->get.out_dtype : r->info.dtype;
    const size_t data_len =
        (size_t)r->info.n_vectors * r->info.params.dim * lkv_dtype_size(r->out_dt);
    lkv_wire_tensor_reply_plan(r->out_dt, r->info.shape, r->info.ndim, data_len, "gpu", &r->lay);
    if (alloc_reply(r) != 0)
        return -1;
    r->gdec = (lkv_gpu_decode_req){.ns = k->ns,
                                   .ns_len = k->ns_len,
                                   .key = k->key,
                                   .key_len = k->key_len,
                                   .dtype = r->out_dt,
                                   .dst = r->buf + r->lay.payload_off,
                                   .dst_cap = data_len,
                                   .done = gpu_decode_done,
                                   .ud = r};
    lkv_tier_gpu_decode(gpu, &r->gdec);
    return 0;
}

static int handle_get(req *r, const uint8_t *msg, size_t len)
{
    if (lkv_wire_parse_get(msg, len, &r->get) != 0)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "request is not a valid GetRequest");
    const lkv_wire_key *k = &r->get.key;
    if (check_key(r, k) != 0)
        return -1;
    lkv_tier *gpu = lkv_stack_gpu(r->svc->stack);
    if (gpu && !r->get.want_coded &&
        lkv_tier_gpu_info(gpu, k->ns, k->ns_len, k->key, k->key_len, &r->info))
        return get_from_gpu(r, gpu);
    lkv_stack_get(r->svc->stack, tier_req_of(r, k, get_done));
    return 0;
}

static int handle_lookup(req *r, const uint8_t *msg, size_t len)
{
    lkv_wire_lookup q;
    if (lkv_wire_parse_lookup(msg, len, &q) != 0)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "request is not a valid LookupRequest");
    if (check_namespace(r, q.ns, q.ns_len, "namespace") != 0)
        return -1;
    size_t pos = 0, key_len;
    const uint8_t *key;
    for (size_t i = 0; lkv_wire_lookup_next(&q, &pos, &key, &key_len); i++)
        if (check_key_len(r, key_len, "keys", (long)i) != 0)
            return -1;
    protobuf_c_boolean *present = calloc(q.n_keys ? q.n_keys : 1, sizeof *present);
    if (!present)
        return reply_error(r, LKV_GRPC_RESOURCE_EXHAUSTED, "out of memory for %zu keys", q.n_keys);
    uint32_t prefix = 0;
    int in_prefix = 1;
    pos = 0;
    for (size_t i = 0; i < q.n_keys && lkv_wire_lookup_next(&q, &pos, &key, &key_len); i++) {
        present[i] = lkv_stack_contains(r->svc->stack, q.ns, q.ns_len, key, key_len);
        in_prefix = in_prefix && present[i];
        prefix += (uint32_t)in_prefix;
    }
    Latticekv__V1__LookupResponse resp = LATTICEKV__V1__LOOKUP_RESPONSE__INIT;
    resp.prefix_hits = prefix;
    resp.n_present = q.n_keys;
    resp.present = present;
    const int rc = reply_packed(r, &resp.base);
    free(present);
    return rc;
}

static void delete_done(lkv_tier_req *tr)
{
    req *r = tr->ud;
    if (tr->status != LKV_OK) {
        reply_status(r, tr->status, &tr->diag);
        return;
    }
    Latticekv__V1__DeleteResponse resp = LATTICEKV__V1__DELETE_RESPONSE__INIT;
    resp.deleted = tr->found;
    reply_packed(r, &resp.base);
}

static int handle_delete(req *r, const uint8_t *msg, size_t len)
{
    lkv_wire_key *k = &r->put.key;
    if (lkv_wire_parse_delete(msg, len, k) != 0)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "request is not a valid DeleteRequest");
    if (check_key(r, k) != 0)
        return -1;
    lkv_stack_del(r->svc->stack, tier_req_of(r, k, delete_done));
    return 0;
}

/* ---- Push and Pull: checked here, carried out by server/peer.c ---------- */

void lkv_service_set_peer(lkv_service *s, lkv_peer_start_fn start, void *peer)
{
    s->peer_start = start;
    s->peer = peer;
}

void lkv_service_finish(lkv_service *s, lkv_method m, void *call, uint64_t seq, lkv_reply *rep)
{
    if (rep->code != LKV_GRPC_OK)
        error_reply(s, m, rep, rep->code);
    else
        count_reply(s, m, LKV_GRPC_OK);
    s->reply(call, seq, rep);
}

/* The keys a by_prefix Push collects from the host tier. */
typedef struct key_list {
    const uint8_t **keys;
    size_t *lens;
    size_t n, cap;
    int oom;
} key_list;

static int key_list_add(const uint8_t *key, size_t key_len, void *ud)
{
    key_list *l = ud;
    if (l->n == l->cap) {
        const size_t cap = l->cap ? l->cap * 2 : 64;
        const uint8_t **k = realloc(l->keys, cap * sizeof *k);
        if (k)
            l->keys = k;
        size_t *n = k ? realloc(l->lens, cap * sizeof *n) : NULL;
        if (n)
            l->lens = n;
        if (!k || !n) {
            l->oom = 1;
            return 1;
        }
        l->cap = cap;
    }
    l->keys[l->n] = key;
    l->lens[l->n++] = key_len;
    return 0;
}

/* The target of a transfer: an address gRPC can dial in plaintext. */
static int check_peer_target(req *r, const lkv_wire_field *f, const char *field, char *out)
{
    if (!f || f->len == 0)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT,
                           "%s is empty: name the other daemon (host:port, [v6]:port or unix:PATH)",
                           field);
    if (f->len >= LKV_ADDR_MAX)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "%s is %zu bytes; at most %d", field,
                           f->len, LKV_ADDR_MAX - 1);
    if (memchr(f->data, 0, f->len))
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "%s has a NUL byte", field);
    memcpy(out, f->data, f->len);
    out[f->len] = 0;
    /* Peer links dial in plaintext this round; a TLS address is refused by
     * name rather than dialled without TLS. */
    static const char *const tls_schemes[] = {"https://", "grpcs://", "tls://", "ssl://"};
    for (size_t i = 0; i < sizeof tls_schemes / sizeof tls_schemes[0]; i++)
        if (strncmp(out, tls_schemes[i], strlen(tls_schemes[i])) == 0)
            return reply_error(r, LKV_GRPC_INVALID_ARGUMENT,
                               "%s=\"%s\": peer links are plaintext only (TLS peer addresses are "
                               "not supported yet); give host:port or unix:PATH",
                               field, out);
    return 0;
}

/* PushRequest and PullRequest share LookupRequest's first two fields
 * (namespace, keys), read by its reader; 3 is the address, 4 and 5 Push's
 * by_prefix and key_prefix. */
static int handle_transfer(req *r, const uint8_t *msg, size_t len, int pull)
{
    const char *what = pull ? "PullRequest" : "PushRequest";
    const char *field = pull ? "from" : "to";
    /* Bytes that do not parse are INVALID_ARGUMENT whatever else is true
     * (the wire fuzzer checks that of every method). */
    lkv_wire_lookup q;
    if (lkv_wire_parse_lookup(msg, len, &q) != 0)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "request is not a valid %s", what);
    if (!r->svc->peer_start)
        return reply_error(r, LKV_GRPC_UNIMPLEMENTED, "%s: peer links are not available here",
                           what);
    lkv_wire_field target = {0}, prefix = {0}, f;
    int have_target = 0, by_prefix = 0;
    lkv_wire_reader rd = {msg, msg + len};
    while (lkv_wire_next(&rd, &f) == 1) {
        if (f.num == 3 && f.wt == LKV_WIRE_LEN) {
            target = f;
            have_target = 1;
        } else if (!pull && f.num == 4 && f.wt == LKV_WIRE_VARINT) {
            by_prefix = f.v != 0;
        } else if (!pull && f.num == 5 && f.wt == LKV_WIRE_LEN) {
            prefix = f;
        }
    }
    char addr[LKV_ADDR_MAX];
    if (check_peer_target(r, have_target ? &target : NULL, field, addr) != 0)
        return -1;
    if (check_namespace(r, q.ns, q.ns_len, "namespace") != 0)
        return -1;
    if (by_prefix && q.n_keys)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT,
                           "by_prefix is set and %zu keys are named: give one or the other",
                           q.n_keys);
    if (!by_prefix && q.n_keys == 0)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "keys is empty: name at least one key%s",
                           pull ? "" : " or set by_prefix");
    if (prefix.len && check_key_len(r, prefix.len, "key_prefix", -1) != 0)
        return -1;
    key_list l = {0};
    if (by_prefix) {
        /* Host memory and, when there is one, the GPU tier above it (the
         * two hold disjoint sets of blocks). */
        const lkv_tier *tiers[LKV_STACK_TIERS_MAX];
        (void)lkv_stack_tiers(r->svc->stack, tiers); /* top down: gpu?, host, ... */
        const int has_gpu = lkv_tier_is_gpu(tiers[0]);
        if (has_gpu)
            lkv_tier_gpu_each(tiers[0], q.ns, q.ns_len, prefix.data, prefix.len, key_list_add, &l);
        lkv_tier_host_each(tiers[has_gpu], q.ns, q.ns_len, prefix.data, prefix.len, key_list_add,
                           &l);
    } else {
        size_t pos = 0, key_len;
        const uint8_t *key;
        for (size_t i = 0; lkv_wire_lookup_next(&q, &pos, &key, &key_len); i++) {
            if (key_len == 0) {
                free(l.keys);
                free(l.lens);
                return reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "keys[%zu] is empty", i);
            }
            if (check_key_len(r, key_len, "keys", (long)i) != 0) {
                free(l.keys);
                free(l.lens);
                return -1;
            }
            key_list_add(key, key_len, &l);
        }
    }
    if (l.oom) {
        free(l.keys);
        free(l.lens);
        return reply_error(r, LKV_GRPC_RESOURCE_EXHAUSTED, "out of memory for %zu keys", l.n);
    }
    const lkv_peer_spec spec = {.pull = pull,
                                .target = addr,
                                .ns = q.ns,
                                .ns_len = q.ns_len,
                                .n_keys = l.n,
                                .keys = l.keys,
                                .key_lens = l.lens};
    r->svc->peer_start(r->svc->peer, &spec, r->call, r->seq);
    free(l.keys);
    free(l.lens);
    /* The peer answers the call; the request itself is done. */
    req_free(r);
    return 0;
}

static int handle_push(req *r, const uint8_t *msg, size_t len)
{
    return handle_transfer(r, msg, len, 0);
}

static int handle_pull(req *r, const uint8_t *msg, size_t len)
{
    return handle_transfer(r, msg, len, 1);
}

/* ---- Admin and health -------------------------------------------------- */

void lkv_service_get_stats(const lkv_service *s, lkv_stats *out)
{
    memset(out, 0, sizeof *out);
    lkv_batcher_stats bs;
    lkv_batcher_get_stats(s->batcher, &bs);
    out->uptime_ms = (lkv_now_ns() - s->start_ns) / 1000000u;
    out->requests = s->c.requests;
    out->errors = s->c.errors;
    out->raw_bytes_in = s->c.raw_bytes_in;
    out->coded_bytes_out = s->c.coded_bytes_out;
    out->batches = bs.batches;
    out->batched_vectors = bs.batched_vectors;
    const lkv_tier *tiers[LKV_TIERS_MAX];
    out->n_tiers = lkv_stack_tiers(s->stack, tiers);
    for (size_t i = 0; i < out->n_tiers; i++) {
        lkv_tier_stats ts;
        tiers[i]->stats(tiers[i], &ts);
        lkv_tier_row *row = &out->tier[i];
        row->name = tiers[i]->name;
        row->link = lkv_stack_link(s->stack, tiers[i]);
        row->capacity_bytes = ts.capacity_bytes;
        row->used_bytes = ts.used_bytes;
        row->blocks = ts.blocks;
        row->hits = ts.hits;
        row->misses = ts.misses;
        row->evictions = ts.evictions;
        row->errors = ts.errors;
        row->dropped_blocks = ts.dropped_truncated + ts.dropped_corrupt;
        if (row->link[0]) {
            lkv_redis_stats rs;
            lkv_tier_redis_stats(tiers[i], &rs);
            row->lost_blocks = rs.lost_blocks;
        }
    }
}

static int handle_stats(req *r, const uint8_t *msg, size_t len)
{
    if (lkv_wire_parse_empty(msg, len) != 0)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT, "request is not a valid StatsRequest");
    lkv_service *s = r->svc;
    /* This request counts itself, as it is being served. */
    lkv_stats st;
    lkv_service_get_stats(s, &st);

    Latticekv__V1__TierStats rows[LKV_TIERS_MAX], *tiers[LKV_TIERS_MAX];
    for (size_t i = 0; i < st.n_tiers; i++) {
        Latticekv__V1__TierStats *t = tiers[i] = &rows[i];
        latticekv__v1__tier_stats__init(t);
        t->name = (char *)st.tier[i].name;
        t->link = (char *)st.tier[i].link;
#define LKV_X_COPY(name, kind, help) t->name = st.tier[i].name;
        LKV_TIER_STATS_LIST(LKV_X_COPY)
#undef LKV_X_COPY
    }

    Latticekv__V1__StatsResponse resp = LATTICEKV__V1__STATS_RESPONSE__INIT;
    resp.version = (char *)lkv_version_string();
    resp.backend = (char *)s->backend_name;
#define LKV_X_COPY(name, kind, help) resp.name = st.name;
    LKV_STATS_LIST(LKV_X_COPY)
#undef LKV_X_COPY
    resp.n_tiers = st.n_tiers;
    resp.tiers = tiers;
    return reply_packed(r, &resp.base);
}

/* "" (the whole server) and every service of the method table. */
static int known_service(const char *name, size_t len)
{
    if (len == 0)
        return 1;
    for (int m = 0; m < LKV_METHOD_COUNT; m++) {
        const char *path = method_paths[m]; /* "/service/method" */
        if (len < strlen(path + 1) && memcmp(path + 1, name, len) == 0 && path[1 + len] == '/')
            return 1;
    }
    return 0;
}

static int handle_health(req *r, const uint8_t *msg, size_t len)
{
    const char *service;
    size_t service_len;
    if (lkv_wire_parse_health(msg, len, &service, &service_len) != 0)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT,
                           "request is not a valid HealthCheckRequest");
    /* A service name is text: it ends at a NUL, as protobuf-c's C strings did. */
    service_len = strnlen(service, service_len);
    if (!known_service(service, service_len))
        return reply_error(r, LKV_GRPC_NOT_FOUND, "service=\"%.*s\" is not served here",
                           service_len < 64 ? (int)service_len : 64, service);
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = r->svc->ready && !r->svc->shutting_down
                      ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    return reply_packed(r, &resp.base);
}

/* Server reflection (reflection.c), when --reflection on. */
static int handle_reflection(req *r, const uint8_t *msg, size_t len)
{
    if (!r->svc->cfg->reflection)
        return reply_error(r, LKV_GRPC_UNIMPLEMENTED,
                           "server reflection is off (start latticekvd with --reflection on)");
    size_t n = 0;
    const int rc = lkv_reflection_answer(msg, len, &r->buf, &n);
    if (rc == -1)
        return reply_error(r, LKV_GRPC_INVALID_ARGUMENT,
                           "request is not a valid ServerReflectionRequest");
    if (rc != 0)
        return reply_error(r, LKV_GRPC_RESOURCE_EXHAUSTED, "out of memory for a reflection reply");
    charge_reply(r, n); /* rpc.c gives every sent reply's bytes back */
    return reply_ok(r, n);
}

/* ---- dispatch ---------------------------------------------------------- */

static void dispatch(lkv_service *s, lkv_method m, lkv_reply_fn reply, int local, void *call,
                     uint64_t seq, uint8_t *msg, size_t len)
{
    req *r = calloc(1, sizeof *r);
    s->c.requests++;
    if (!r) {
        lkv_budget_give(s->budget, len);
        free(msg);
        lkv_reply rep = {.code = LKV_GRPC_RESOURCE_EXHAUSTED, .msg = "out of memory for a request"};
        s->c.errors++;
        count_reply(s, m, rep.code);
        reply(call, seq, &rep);
        return;
    }
    r->svc = s;
    r->m = m;
    r->call = call;
    r->reply_to = reply;
    r->local = local;
    r->seq = seq;
    r->in = msg; /* freed with the request, or adopted by a stored block */
    r->in_len = len;
    static int (*const handlers[])(req *, const uint8_t *, size_t) = {
#define LKV_X_HANDLER(name, service, method, streaming, handler) handle_##handler,
        LKV_RPC_SERVED_LIST(LKV_X_HANDLER)
#undef LKV_X_HANDLER
    };
    if ((unsigned)m < LKV_METHOD_COUNT)
        handlers[m](r, msg, len);
    else
        reply_error(r, LKV_GRPC_UNIMPLEMENTED, "method %d is not implemented", (int)m);
}

void lkv_service_handle(lkv_service *s, lkv_method m, void *call, uint64_t seq, uint8_t *msg,
                        size_t len)
{
    dispatch(s, m, s->reply, 0, call, seq, msg, len);
}

void lkv_service_handle_local(lkv_service *s, lkv_method m, lkv_reply_fn reply, void *ctx,
                              uint64_t seq, uint8_t *msg, size_t len)
{
    dispatch(s, m, reply, 1, ctx, seq, msg, len);
}
