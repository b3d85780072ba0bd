/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_client.c - blocking unary calls to latticekvd over gRPC C core.
 *
 * Design note. Every public call is the same four steps: build a protobuf-c
 * request on the stack, pack it into one gRPC slice, run one batch of six
 * ops (send metadata, message and close; receive metadata, message and
 * status) on a completion queue private to the call, and unpack the reply.
 * A private pluck queue per call is what makes one lkv_client safe to share
 * between threads without a lock: gRPC channels are thread-safe, queues
 * only allow a handful of concurrent pluckers. Method paths are registered
 * once per channel so calls skip the path lookup.
 *
 * Copies: the request is packed once (protobuf-c writes into the slice gRPC
 * sends); the reply is read into one contiguous buffer and unpacked, and the
 * unpacked tensor or container bytes are handed to the caller as is (the
 * pointer is taken out of the protobuf-c message before it is freed), so a
 * big Get costs one copy beyond the socket.
 */
#include "lkv_client.h"
#include "lkv_grpc_tune.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "grpc/health/v1/health.pb-c.h"
#include "latticekv/v1/latticekv.pb-c.h"
#include "lkv_rpc_table.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_MAX_MESSAGE (64u << 20)

/* The daemon closes a connection that pings more often than it allows
 * (lkv_grpc_tune.h); the shortest client interval keeps a 2x margin. */
_Static_assert(LKV_CLIENT_KEEPALIVE_MIN_MS >= 2u * LKV_GRPC_MIN_PING_INTERVAL_MS,
               "client keepalive floor below the daemon's ping allowance");

/* The methods, one per row of the daemon's table (lkv_rpc_table.h). */
enum method {
#define X_ENUM(name, service, method, streaming, handler) M_##name,
    LKV_RPC_LIST(X_ENUM)
#undef X_ENUM
        M_COUNT
};

static const char *const method_path[M_COUNT] = {
#define X_PATH(name, service, method, streaming, handler) LKV_RPC_PATH(service, method),
    LKV_RPC_LIST(X_PATH)
#undef X_PATH
};

struct lkv_client {
    grpc_channel *channel;
    void *method[M_COUNT]; /* registered-call handles */
    uint32_t timeout_ms;
    uint32_t md_flags; /* flags of SEND_INITIAL_METADATA (wait-for-ready) */
    char *addr;
    grpc_metadata auth_md; /* "authorization: Bearer TOKEN" */
    size_t n_md;           /* 1 with a token, else 0 */
};

/* Reads a PEM file whole (NUL-terminated) or fails naming it. */
static char *read_pem(const char *what, const char *path, lkv_client_error *err, int *rc);

/* ------------------------------------------------------------------------ */
/* Errors and small helpers                                                  */
/* ------------------------------------------------------------------------ */

const char *lkv_rpc_code_name(int code)
{
    switch (code) {
#define X_NAME(name, value) \
    case value: return #name;
        LKV_GRPC_CODE_LIST(X_NAME)
#undef X_NAME
    }
    return "UNKNOWN_CODE";
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
fail(lkv_client_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int ok(lkv_client_error *err)
{
    if (err) {
        err->code = LKV_RPC_OK;
        err->msg[0] = '\0';
    }
    return LKV_RPC_OK;
}

void lkv_tensor_clear(lkv_tensor *t)
{
    if (!t)
        return;
    free(t->data);
    memset(t, 0, sizeof *t);
}

void lkv_buf_clear(lkv_buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

void lkv_client_stats_clear(lkv_client_stats *st)
{
    if (!st)
        return;
    free(st->tiers);
    memset(st, 0, sizeof *st);
}

/* Copies a NUL-terminated string into a fixed field, truncating. */
static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* ------------------------------------------------------------------------ */
/* Channel                                                                   */
/* ------------------------------------------------------------------------ */

int lkv_client_create(const char *addr, const lkv_client_options *opts, lkv_client **out,
                      lkv_client_error *err)
{
    if (!out)
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: out is NULL");
    *out = NULL;
    if (!addr || !*addr)
        return fail(err, LKV_RPC_INVALID_ARGUMENT,
                    "client: addr is empty (want host:port or unix:PATH)");
    const lkv_client_options none = {0};
    if (!opts)
        opts = &none;
    size_t max_msg = opts->max_message_bytes ? opts->max_message_bytes : DEFAULT_MAX_MESSAGE;
    if (max_msg > (size_t)INT32_MAX)
        max_msg = (size_t)INT32_MAX; /* gRPC takes an int */

    lkv_client *c = calloc(1, sizeof *c);
    if (c)
        c->addr = strdup(addr);
    if (!c || !c->addr) {
        free(c);
        return fail(err, LKV_RPC_RESOURCE_EXHAUSTED, "client: out of memory");
    }
    /* Internally 0 means "no deadline". */
    c->timeout_ms = opts->timeout_ms == 0                       ? LKV_CLIENT_DEFAULT_TIMEOUT_MS
                    : opts->timeout_ms == LKV_CLIENT_NO_TIMEOUT ? 0
                                                                : opts->timeout_ms;
    c->md_flags = opts->wait_for_ready ? GRPC_INITIAL_METADATA_WAIT_FOR_READY : 0;

    if (!opts->tls_ca_file && (opts->tls_cert_file || opts->tls_key_file)) {
        free(c->addr);
        free(c);
        return fail(err, LKV_RPC_INVALID_ARGUMENT,
                    "client: tls_cert_file and tls_key_file need tls_ca_file (mutual TLS is TLS)");
    }
    if (!opts->tls_cert_file != !opts->tls_key_file) {
        free(c->addr);
        free(c);
        return fail(err, LKV_RPC_INVALID_ARGUMENT,
                    "client: tls_cert_file and tls_key_file go together");
    }
    if (opts->token) {
        size_t tl = strlen(opts->token);
        int bad = tl == 0;
        for (size_t i = 0; i < tl; i++)
            bad |= (unsigned char)opts->token[i] <= 0x20 || (unsigned char)opts->token[i] >= 0x7f;
        if (bad) {
            free(c->addr);
            free(c);
            return fail(err, LKV_RPC_INVALID_ARGUMENT,
                        "client: token is empty or has a byte outside printable ASCII");
        }
    }

    lkv_grpc_quiet_absl_deadlock_detection();
    grpc_init();
    grpc_arg args[10];
    int nargs = 0;
    /* The daemon is normally on the same node: reconnect after a restart in
     * 100 ms rather than gRPC's default 1 s, and never back off past 2 s. */
    args[nargs++] = lkv_grpc_int_arg(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args[nargs++] = lkv_grpc_int_arg(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    args[nargs++] = lkv_grpc_int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (int)max_msg);
    args[nargs++] = lkv_grpc_int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, (int)max_msg);
    if (opts->keepalive_time_ms != LKV_CLIENT_NO_KEEPALIVE) {
        uint32_t every =
            opts->keepalive_time_ms ? opts->keepalive_time_ms : LKV_CLIENT_KEEPALIVE_TIME_MS;
        if (every < LKV_CLIENT_KEEPALIVE_MIN_MS)
            every = LKV_CLIENT_KEEPALIVE_MIN_MS;
        const uint32_t wait = opts->keepalive_timeout_ms ? opts->keepalive_timeout_ms
                                                         : LKV_CLIENT_KEEPALIVE_TIMEOUT_MS;
        /* Pings only while calls are in flight (an idle connection costs the
         * daemon nothing), and with no cap on pings between data frames, so
         * a call that waits long for its reply keeps being probed. */
        args[nargs++] = lkv_grpc_int_arg(GRPC_ARG_KEEPALIVE_TIME_MS,
                                         every > INT32_MAX ? INT32_MAX : (int)every);
        args[nargs++] = lkv_grpc_int_arg(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                                         wait > INT32_MAX ? INT32_MAX : (int)wait);
        args[nargs++] = lkv_grpc_int_arg(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
        args[nargs++] = lkv_grpc_int_arg(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    }
    if (opts->own_connection) {
        args[nargs++] = lkv_grpc_int_arg(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    }
    if (opts->tls_server_name) {
        args[nargs].type = GRPC_ARG_STRING;
        args[nargs].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        args[nargs++].value.string = (char *)opts->tls_server_name;
    }
    const grpc_channel_args chargs = {.num_args = (size_t)nargs, .args = args};
    grpc_channel_credentials *creds = NULL;
    if (opts->tls_ca_file) {
        int rc = LKV_RPC_OK;
        char *ca = read_pem("tls_ca_file", opts->tls_ca_file, err, &rc);
        char *crt = ca && opts->tls_cert_file
                        ? read_pem("tls_cert_file", opts->tls_cert_file, err, &rc)
                        : NULL;
        char *key = crt ? read_pem("tls_key_file", opts->tls_key_file, err, &rc) : NULL;
        if (rc == LKV_RPC_OK) {
            grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = crt};
            creds = grpc_ssl_credentials_create(ca, crt ? &pair : NULL, NULL, NULL);
        }
        free(ca);
        free(crt);
        if (key) {
            memset(key, 0, strlen(key));
            free(key);
        }
        if (rc != LKV_RPC_OK) {
            free(c->addr);
            free(c);
            grpc_shutdown();
            return rc;
        }
    } else {
        creds = grpc_insecure_credentials_create();
    }
    c->channel = creds ? grpc_channel_create(addr, creds, &chargs) : NULL;
    if (creds)
        grpc_channel_credentials_release(creds);
    if (c->channel && opts->token) {
        const size_t tl = strlen(opts->token);
        grpc_slice v = grpc_slice_malloc(7 + tl);
        memcpy(GRPC_SLICE_START_PTR(v), "Bearer ", 7);
        memcpy(GRPC_SLICE_START_PTR(v) + 7, opts->token, tl);
        c->auth_md.key = grpc_slice_from_static_string("authorization");
        c->auth_md.value = v;
        c->n_md = 1;
    }
    if (!c->channel) {
        free(c->addr);
        free(c);
        grpc_shutdown();
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: cannot create a channel to %s", addr);
    }
    for (int m = 0; m < M_COUNT; m++)
        c->method[m] = grpc_channel_register_call(c->channel, method_path[m], NULL, NULL);
    *out = c;
    return ok(err);
}

static char *read_pem(const char *what, const char *path, lkv_client_error *err, int *rc)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;
    if (f) {
        buf = malloc((1u << 20) + 1);
        len = buf ? fread(buf, 1, 1u << 20, f) : 0;
        fclose(f);
    }
    if (!buf || len == 0) {
        const char *why = !f ? strerror(errno) : !buf ? "out of memory" : "empty or unreadable";
        *rc = fail(err, !f || buf ? LKV_RPC_INVALID_ARGUMENT : LKV_RPC_RESOURCE_EXHAUSTED,
                   "client: %s=%s: %s", what, path, why);
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

void lkv_client_free(lkv_client *c)
{
    if (!c)
        return;
    if (c->n_md)
        grpc_slice_unref(c->auth_md.value);
    grpc_channel_destroy(c->channel);
    free(c->addr);
    free(c);
    grpc_shutdown();
}

const char *lkv_client_addr(const lkv_client *c)
{
    return c ? c->addr : "";
}

/* ------------------------------------------------------------------------ */
/* One unary call                                                            */
/* ------------------------------------------------------------------------ */

/*
 * Sends `req` to method m and unpacks the reply as `desc` into *resp (free
 * with protobuf_c_message_free_unpacked). Returns the call's status.
 */
static int unary_timeout(lkv_client *c, enum method m, uint32_t timeout_ms,
                         const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                         ProtobufCMessage **resp, lkv_client_error *err)
{
    *resp = NULL;
    const size_t len = protobuf_c_message_get_packed_size(req);
    grpc_slice out = grpc_slice_malloc(len);
    protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(out));
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&out, 1);
    grpc_slice_unref(out);

    const gpr_timespec deadline = timeout_ms
                                      ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                     gpr_time_from_millis(timeout_ms, GPR_TIMESPAN))
                                      : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_call *call = grpc_channel_create_registered_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS,
                                                          cq, c->method[m], deadline, NULL);

    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata_array_init(&initial_md);
    grpc_metadata_array_init(&trailing_md);
    grpc_byte_buffer *recv = NULL;
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    const char *error_string = NULL;

    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].flags = c->md_flags;
    ops[0].data.send_initial_metadata.count = c->n_md;
    ops[0].data.send_initial_metadata.metadata = c->n_md ? &c->auth_md : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    ops[5].data.recv_status_on_client.error_string = &error_string;

    int rc;
    void *const tag = &ops; /* any unique address of this call */
    const grpc_call_error ce = grpc_call_start_batch(call, ops, 6, tag, NULL);
    if (ce != GRPC_CALL_OK) {
        rc = fail(err, LKV_RPC_INTERNAL, "client: grpc_call_start_batch failed (%d)", (int)ce);
    } else {
        const grpc_event ev =
            grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE) {
            rc = fail(err, LKV_RPC_INTERNAL, "client: completion queue returned event %d",
                      (int)ev.type);
        } else if (status != GRPC_STATUS_OK) {
            const size_t n = GRPC_SLICE_LENGTH(details);
            rc = fail(err, (int)status, "%.*s", (int)(n < 500 ? n : 500),
                      (const char *)GRPC_SLICE_START_PTR(details));
            if (err && n == 0)
                snprintf(err->msg, sizeof err->msg, "%s from %s", lkv_rpc_code_name(status),
                         c->addr);
        } else if (!recv) {
            rc = fail(err, LKV_RPC_INTERNAL, "client: the daemon sent OK without a reply");
        } else {
            grpc_byte_buffer_reader reader;
            if (!grpc_byte_buffer_reader_init(&reader, recv)) {
                rc = fail(err, LKV_RPC_INTERNAL, "client: cannot read the reply");
            } else {
                grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
                grpc_byte_buffer_reader_destroy(&reader);
                *resp = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(all),
                                                  GRPC_SLICE_START_PTR(all));
                grpc_slice_unref(all);
                rc = *resp ? ok(err)
                           : fail(err, LKV_RPC_INTERNAL, "client: reply of %s does not parse",
                                  method_path[m]);
            }
        }
    }

    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_byte_buffer_destroy(send);
    grpc_slice_unref(details);
    gpr_free((void *)error_string);
    grpc_metadata_array_destroy(&initial_md);
    grpc_metadata_array_destroy(&trailing_md);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Message helpers                                                           */
/* ------------------------------------------------------------------------ */

/* Fills a wire Tensor that borrows t's shape and data. */
static int tensor_to_wire(const lkv_tensor *t, Latticekv__V1__Tensor *w, uint64_t *shape,
                          lkv_client_error *err)
{
    if (!t)
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: tensor is NULL");
    if (t->ndim > LKV_CLIENT_MAX_NDIM)
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: tensor.ndim=%u exceeds %u", t->ndim,
                    LKV_CLIENT_MAX_NDIM);
    if (t->data_bytes && !t->data)
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: tensor.data is NULL with %zu bytes",
                    t->data_bytes);
    latticekv__v1__tensor__init(w);
    w->dtype = (Latticekv__V1__DType)t->dtype;
    memcpy(shape, t->shape, t->ndim * sizeof *shape);
    w->n_shape = t->ndim;
    w->shape = shape;
    w->data.len = t->data_bytes;
    w->data.data = t->data;
    return LKV_RPC_OK;
}

/* Moves a wire Tensor into *out, taking its data buffer (protobuf-c's default
 * allocator is malloc, so the buffer is the caller's to free()). */
static int tensor_from_wire(Latticekv__V1__Tensor *w, lkv_tensor *out, lkv_client_error *err)
{
    if (!w)
        return fail(err, LKV_RPC_INTERNAL, "client: the reply holds no tensor");
    if (w->n_shape > LKV_CLIENT_MAX_NDIM)
        return fail(err, LKV_RPC_INTERNAL, "client: the reply's tensor has %zu dims (max %u)",
                    w->n_shape, LKV_CLIENT_MAX_NDIM);
    out->dtype = (int)w->dtype;
    out->ndim = (uint32_t)w->n_shape;
    memcpy(out->shape, w->shape, w->n_shape * sizeof *w->shape);
    out->data = w->data.data;
    out->data_bytes = w->data.len;
    w->data.data = NULL;
    w->data.len = 0;
    return LKV_RPC_OK;
}

static void bytes_from_wire(ProtobufCBinaryData *b, lkv_buf *out)
{
    out->data = b->data;
    out->len = b->len;
    b->data = NULL;
    b->len = 0;
}

static void params_to_wire(const lkv_client_params *p, Latticekv__V1__CodecParams *w)
{
    latticekv__v1__codec_params__init(w);
    if (p) {
        w->variant = (Latticekv__V1__Variant)p->variant;
        w->q_range = p->q;
        w->profile = p->profile;
    }
}

static int key_to_wire(const char *ns, lkv_key key, Latticekv__V1__BlockKey *w,
                       lkv_client_error *err)
{
    if (key.len && !key.data)
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: key.data is NULL with %zu bytes",
                    key.len);
    latticekv__v1__block_key__init(w);
    w->namespace_ = (char *)(ns ? ns : "");
    w->key.data = (uint8_t *)key.data;
    w->key.len = key.len;
    return LKV_RPC_OK;
}

#define UNARY(c, m, req, desc, resp, err)                                             \
    unary_timeout((c), (m), (c)->timeout_ms, (const ProtobufCMessage *)(req), (desc), \
                  (ProtobufCMessage **)(resp), (err))

/* ------------------------------------------------------------------------ */
/* Health                                                                    */
/* ------------------------------------------------------------------------ */

/* Health/Check with an explicit deadline (wait_ready uses short ones). */
static int health_call(lkv_client *c, const char *service, uint32_t timeout_ms, int *serving,
                       lkv_client_error *err)
{
    if (!c)
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: client is NULL");
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)(service ? service : "");
    Grpc__Health__V1__HealthCheckResponse *resp = NULL;
    const int rc = unary_timeout(c, M_HEALTH_CHECK, timeout_ms, (const ProtobufCMessage *)&req,
                                 &grpc__health__v1__health_check_response__descriptor,
                                 (ProtobufCMessage **)&resp, err);
    if (rc == LKV_RPC_OK) {
        if (serving)
            *serving = (int)resp->status;
        grpc__health__v1__health_check_response__free_unpacked(resp, NULL);
    }
    return rc;
}

int lkv_client_health(lkv_client *c, const char *service, int *serving, lkv_client_error *err)
{
    return health_call(c, service, c ? c->timeout_ms : 0, serving, err);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int lkv_client_wait_ready(lkv_client *c, uint32_t timeout_ms, lkv_client_error *err)
{
    if (!c)
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: client is NULL");
    const uint64_t end = now_ms() + timeout_ms;
    int rc;
    for (;;) {
        /* Short per-try deadlines so that a daemon that accepts but hangs
         * does not eat the whole budget in one try. */
        int serving = 0;
        rc = health_call(c, NULL, 500, &serving, err);
        if (rc == LKV_RPC_OK && serving == 1)
            return rc;
        if (rc == LKV_RPC_OK)
            rc = fail(err, LKV_RPC_UNAVAILABLE, "client: %s reports health status %d", c->addr,
                      serving);
        if (now_ms() >= end)
            return rc;
        const struct timespec nap = {0, 20 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
}

/* ------------------------------------------------------------------------ */
/* Codec                                                                     */
/* ------------------------------------------------------------------------ */

int lkv_client_compress(lkv_client *c, const lkv_tensor *t, const lkv_client_params *params,
                        lkv_buf *coded, lkv_compress_info *info, lkv_client_error *err)
{
    if (!c || !coded)
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: client or coded is NULL");
    memset(coded, 0, sizeof *coded);
    Latticekv__V1__Tensor wt;
    uint64_t shape[LKV_CLIENT_MAX_NDIM];
    int rc = tensor_to_wire(t, &wt, shape, err);
    if (rc)
        return rc;
    Latticekv__V1__CodecParams wp;
    params_to_wire(params, &wp);
    Latticekv__V1__CompressRequest req = LATTICEKV__V1__COMPRESS_REQUEST__INIT;
    req.tensor = &wt;
    req.params = &wp;
    Latticekv__V1__CompressResponse *resp = NULL;
    rc = UNARY(c, M_COMPRESS, &req, &latticekv__v1__compress_response__descriptor, &resp, err);
    if (rc)
        return rc;
    if (info) {
        info->raw_bytes = resp->raw_bytes;
        info->coded_bytes = resp->coded_bytes;
        info->bits_per_vector = resp->bits_per_vector;
    }
    bytes_from_wire(&resp->coded, coded);
    latticekv__v1__compress_response__free_unpacked(resp, NULL);
    return LKV_RPC_OK;
}

int lkv_client_decompress(lkv_client *c, const void *coded, size_t coded_len, int out_dtype,
                          lkv_tensor *out, lkv_client_error *err)
{
    if (!c || !out)
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: client or out is NULL");
    memset(out, 0, sizeof *out);
    if (coded_len && !coded)
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: coded is NULL with %zu bytes",
                    coded_len);
    Latticekv__V1__DecompressRequest req = LATTICEKV__V1__DECOMPRESS_REQUEST__INIT;
    req.coded.data = (uint8_t *)coded;
    req.coded.len = coded_len;
    req.out_dtype = (Latticekv__V1__DType)out_dtype;
    Latticekv__V1__DecompressResponse *resp = NULL;
    int rc =
        UNARY(c, M_DECOMPRESS, &req, &latticekv__v1__decompress_response__descriptor, &resp, err);
    if (rc)
        return rc;
    rc = tensor_from_wire(resp->tensor, out, err);
    latticekv__v1__decompress_response__free_unpacked(resp, NULL);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* KVStore                                                                   */
/* ------------------------------------------------------------------------ */

int lkv_client_put(lkv_client *c, const char *ns, lkv_key key, const lkv_tensor *t,
                   const lkv_client_params *params, uint64_t *coded_bytes, lkv_client_error *err)
{
    if (!c)
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: client is NULL");
    Latticekv__V1__BlockKey wk;
    Latticekv__V1__Tensor wt;
    Latticekv__V1__CodecParams wp;
    uint64_t shape[LKV_CLIENT_MAX_NDIM];
    int rc = key_to_wire(ns, key, &wk, err);
    if (!rc)
        rc = tensor_to_wire(t, &wt, shape, err);
    if (rc)
        return rc;
    params_to_wire(params, &wp);
    Latticekv__V1__PutRequest req = LATTICEKV__V1__PUT_REQUEST__INIT;
    req.key = &wk;
    req.params = &wp;
    req.payload_case = LATTICEKV__V1__PUT_REQUEST__PAYLOAD_TENSOR;
    req.tensor = &wt;
    Latticekv__V1__PutResponse *resp = NULL;
    rc = UNARY(c, M_PUT, &req, &latticekv__v1__put_response__descriptor, &resp, err);
    if (rc)
        return rc;
    if (coded_bytes)
        *coded_bytes = resp->coded_bytes;
    latticekv__v1__put_response__free_unpacked(resp, NULL);
    return LKV_RPC_OK;
}

int lkv_client_put_coded(lkv_client *c, const char *ns, lkv_key key, const void *coded,
                         size_t coded_len, uint64_t *coded_bytes, lkv_client_error *err)
{
    if (!c)
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: client is NULL");
    if (coded_len && !coded)
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: coded is NULL with %zu bytes",
                    coded_len);
    Latticekv__V1__BlockKey wk;
    int rc = key_to_wire(ns, key, &wk, err);
    if (rc)
        return rc;
    Latticekv__V1__PutRequest req = LATTICEKV__V1__PUT_REQUEST__INIT;
    req.key = &wk;
    req.payload_case = LATTICEKV__V1__PUT_REQUEST__PAYLOAD_CODED;
    req.coded.data = (uint8_t *)coded;
    req.coded.len = coded_len;
    Latticekv__V1__PutResponse *resp = NULL;
    rc = UNARY(c, M_PUT, &req, &latticekv__v1__put_response__descriptor, &resp, err);
    if (rc)
        return rc;
    if (coded_bytes)
        *coded_bytes = resp->coded_bytes;
    latticekv__v1__put_response__free_unpacked(resp, NULL);
    return LKV_RPC_OK;
}

/* ------------------------------------------------------------------------ */
/* Streams                                                                   */
/* ------------------------------------------------------------------------ */

/* Packs request i of a stream (NULL when out of memory). */
typedef grpc_byte_buffer *(*stream_build_fn)(size_t i, void *ctx);
/* Takes reply i (owned by the callee); returns LKV_RPC_OK or a local error. */
typedef int (*stream_reply_fn)(size_t i, ProtobufCMessage *reply, void *ctx, lkv_client_error *err);

static grpc_byte_buffer *pack_message(const ProtobufCMessage *m)
{
    const size_t len = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(len);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/*
 * One bidirectional stream of n requests and (at most) n replies. A send and
 * a receive are kept outstanding together on a private queue, so neither
 * direction's flow control can stall the other whatever the message sizes.
 * *n_done receives the number of replies taken; the daemon ends a stream at
 * its first failing request, after the replies to the ones before it.
 */
static int stream_call(lkv_client *c, enum method m, size_t n, stream_build_fn build,
                       const ProtobufCMessageDescriptor *desc, stream_reply_fn reply, void *ctx,
                       size_t *n_done, lkv_client_error *err)
{
    enum { T_MD, T_SEND, T_CLOSE, T_RECV, T_STATUS, T_COUNT };
    char tags[T_COUNT]; /* the address of tags[t] is tag t */
    const gpr_timespec deadline =
        c->timeout_ms ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                     gpr_time_from_millis(c->timeout_ms, GPR_TIMESPAN))
                      : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    grpc_call *call = grpc_channel_create_registered_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS,
                                                          cq, c->method[m], deadline, NULL);
    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata_array_init(&initial_md);
    grpc_metadata_array_init(&trailing_md);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_byte_buffer *out = NULL, *in = NULL;
    int outstanding[T_COUNT] = {0};
    int local_rc = LKV_RPC_OK, closed = 0, send_failed = 0, recv_ended = 0;
    size_t sent = 0, got = 0;

    grpc_op op[2];
    memset(op, 0, sizeof op);
    op[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    op[0].flags = c->md_flags;
    op[0].data.send_initial_metadata.count = c->n_md;
    op[0].data.send_initial_metadata.metadata = c->n_md ? &c->auth_md : NULL;
    op[1].op = GRPC_OP_RECV_INITIAL_METADATA;
    op[1].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
    outstanding[T_MD] = grpc_call_start_batch(call, op, 2, &tags[T_MD], NULL) == GRPC_CALL_OK;
    memset(op, 0, sizeof op);
    op[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op[0].data.recv_status_on_client.trailing_metadata = &trailing_md;
    op[0].data.recv_status_on_client.status = &status;
    op[0].data.recv_status_on_client.status_details = &details;
    outstanding[T_STATUS] =
        grpc_call_start_batch(call, op, 1, &tags[T_STATUS], NULL) == GRPC_CALL_OK;
    if (!outstanding[T_MD] || !outstanding[T_STATUS]) {
        local_rc =
            fail(err, LKV_RPC_INTERNAL, "client: cannot start the %s stream", method_path[m]);
        grpc_call_cancel(call, NULL);
    }

    for (;;) {
        memset(op, 0, sizeof op);
        if (!outstanding[T_SEND] && !outstanding[T_CLOSE] && !local_rc && !send_failed &&
            sent < n) {
            out = build(sent, ctx);
            if (!out) {
                local_rc = fail(err, LKV_RPC_RESOURCE_EXHAUSTED, "client: out of memory");
                grpc_call_cancel(call, NULL);
            } else {
                op[0].op = GRPC_OP_SEND_MESSAGE;
                op[0].data.send_message.send_message = out;
                outstanding[T_SEND] =
                    grpc_call_start_batch(call, op, 1, &tags[T_SEND], NULL) == GRPC_CALL_OK;
                if (!outstanding[T_SEND]) {
                    grpc_byte_buffer_destroy(out);
                    send_failed = 1;
                }
            }
        } else if (!outstanding[T_SEND] && !closed && (sent == n || send_failed || local_rc)) {
            op[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
            closed = 1;
            outstanding[T_CLOSE] =
                grpc_call_start_batch(call, op, 1, &tags[T_CLOSE], NULL) == GRPC_CALL_OK;
        }
        if (!outstanding[T_RECV] && !recv_ended && got < n) {
            memset(op, 0, sizeof op);
            op[0].op = GRPC_OP_RECV_MESSAGE;
            op[0].data.recv_message.recv_message = &in;
            outstanding[T_RECV] =
                grpc_call_start_batch(call, op, 1, &tags[T_RECV], NULL) == GRPC_CALL_OK;
            if (!outstanding[T_RECV])
                recv_ended = 1;
        }
        int busy = 0;
        for (int t = 0; t < T_COUNT; t++)
            busy |= outstanding[t];
        if (!busy)
            break;
        const grpc_event ev =
            grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        const int t = (int)((char *)ev.tag - tags);
        outstanding[t] = 0;
        if (t == T_SEND) {
            grpc_byte_buffer_destroy(out);
            out = NULL;
            if (ev.success)
                sent++;
            else
                send_failed = 1;
        } else if (t == T_RECV) {
            if (!ev.success || !in) {
                recv_ended = 1;
                continue;
            }
            grpc_byte_buffer_reader reader;
            ProtobufCMessage *msg = NULL;
            if (grpc_byte_buffer_reader_init(&reader, in)) {
                grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
                grpc_byte_buffer_reader_destroy(&reader);
                msg = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(all),
                                                GRPC_SLICE_START_PTR(all));
                grpc_slice_unref(all);
            }
            grpc_byte_buffer_destroy(in);
            in = NULL;
            int rc = msg ? reply(got, msg, ctx, err)
                         : fail(err, LKV_RPC_INTERNAL, "client: reply of %s does not parse",
                                method_path[m]);
            if (rc == LKV_RPC_OK) {
                got++;
            } else if (!local_rc) {
                local_rc = rc;
                recv_ended = 1;
                grpc_call_cancel(call, NULL);
            }
        }
    }

    int rc;
    if (local_rc) {
        rc = local_rc;
    } else if (status != GRPC_STATUS_OK) {
        const size_t len = GRPC_SLICE_LENGTH(details);
        rc = fail(err, (int)status, "%.*s", (int)(len < 500 ? len : 500),
                  (const char *)GRPC_SLICE_START_PTR(details));
    } else if (got != n) {
        rc = fail(err, LKV_RPC_INTERNAL, "client: %s answered %zu of %zu requests", method_path[m],
                  got, n);
    } else {
        rc = ok(err);
    }
    if (n_done)
        *n_done = got;
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial_md);
    grpc_metadata_array_destroy(&trailing_md);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    return rc;
}

typedef struct put_many_ctx {
    const char *ns;
    const lkv_key *keys;
    const lkv_tensor *tensors;
    const lkv_client_params *params;
    uint64_t *coded_bytes;
} put_many_ctx;

static grpc_byte_buffer *put_many_build(size_t i, void *ctx)
{
    const put_many_ctx *x = ctx;
    Latticekv__V1__BlockKey wk;
    Latticekv__V1__Tensor wt;
    Latticekv__V1__CodecParams wp;
    uint64_t shape[LKV_CLIENT_MAX_NDIM];
    /* Arguments were checked before the stream started. */
    key_to_wire(x->ns, x->keys[i], &wk, NULL);
    tensor_to_wire(&x->tensors[i], &wt, shape, NULL);
    params_to_wire(x->params, &wp);
    Latticekv__V1__PutRequest req = LATTICEKV__V1__PUT_REQUEST__INIT;
    req.key = &wk;
    req.params = &wp;
    req.payload_case = LATTICEKV__V1__PUT_REQUEST__PAYLOAD_TENSOR;
    req.tensor = &wt;
    return pack_message((const ProtobufCMessage *)&req);
}

static int put_many_reply(size_t i, ProtobufCMessage *msg, void *ctx, lkv_client_error *err)
{
    (void)err;
    const put_many_ctx *x = ctx;
    Latticekv__V1__PutResponse *r = (Latticekv__V1__PutResponse *)msg;
    if (x->coded_bytes)
        x->coded_bytes[i] = r->coded_bytes;
    latticekv__v1__put_response__free_unpacked(r, NULL);
    return LKV_RPC_OK;
}

int lkv_client_put_many(lkv_client *c, const char *ns, const lkv_key *keys,
                        const lkv_tensor *tensors, size_t n, const lkv_client_params *params,
                        uint64_t *coded_bytes, size_t *n_done, lkv_client_error *err)
{
    if (n_done)
        *n_done = 0;
    if (!c || (n && (!keys || !tensors)))
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: client, keys or tensors is NULL");
    for (size_t i = 0; i < n; i++) {
        Latticekv__V1__BlockKey wk;
        Latticekv__V1__Tensor wt;
        uint64_t shape[LKV_CLIENT_MAX_NDIM];
        const int rc = key_to_wire(ns, keys[i], &wk, err);
        if (rc || tensor_to_wire(&tensors[i], &wt, shape, err))
            return err ? err->code : LKV_RPC_INVALID_ARGUMENT;
    }
    put_many_ctx x = {ns, keys, tensors, params, coded_bytes};
    return stream_call(c, M_PUT_STREAM, n, put_many_build, &latticekv__v1__put_response__descriptor,
                       put_many_reply, &x, n_done, err);
}

typedef struct get_many_ctx {
    const char *ns;
    const lkv_key *keys;
    int out_dtype;
    lkv_tensor *out;
} get_many_ctx;

static grpc_byte_buffer *get_many_build(size_t i, void *ctx)
{
    const get_many_ctx *x = ctx;
    Latticekv__V1__BlockKey wk;
    key_to_wire(x->ns, x->keys[i], &wk, NULL);
    Latticekv__V1__GetRequest req = LATTICEKV__V1__GET_REQUEST__INIT;
    req.key = &wk;
    req.out_dtype = (Latticekv__V1__DType)x->out_dtype;
    return pack_message((const ProtobufCMessage *)&req);
}

static int get_many_reply(size_t i, ProtobufCMessage *msg, void *ctx, lkv_client_error *err)
{
    const get_many_ctx *x = ctx;
    Latticekv__V1__GetResponse *r = (Latticekv__V1__GetResponse *)msg;
    int rc = r->payload_case == LATTICEKV__V1__GET_RESPONSE__PAYLOAD_TENSOR
                 ? tensor_from_wire(r->tensor, &x->out[i], err)
                 : fail(err, LKV_RPC_INTERNAL, "client: GetStream reply %zu has no tensor", i);
    latticekv__v1__get_response__free_unpacked(r, NULL);
    return rc;
}

int lkv_client_get_many(lkv_client *c, const char *ns, const lkv_key *keys, size_t n, int out_dtype,
                        lkv_tensor *out, size_t *n_done, lkv_client_error *err)
{
    if (n_done)
        *n_done = 0;
    if (!c || (n && (!keys || !out)))
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: client, keys or out is NULL");
    memset(out, 0, n * sizeof *out);
    for (size_t i = 0; i < n; i++)
        if (keys[i].len && !keys[i].data)
            return fail(err, LKV_RPC_INVALID_ARGUMENT,
                        "client: keys[%zu].data is NULL with %zu bytes", i, keys[i].len);
    get_many_ctx x = {ns, keys, out_dtype, out};
    return stream_call(c, M_GET_STREAM, n, get_many_build, &latticekv__v1__get_response__descriptor,
                       get_many_reply, &x, n_done, err);
}

/* One Get; the caller takes what it wants out of *resp. */
static int get_call(lkv_client *c, const char *ns, lkv_key key, int want_coded, int out_dtype,
                    Latticekv__V1__GetResponse **resp, lkv_client_error *err)
{
    if (!c)
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: client is NULL");
    Latticekv__V1__BlockKey wk;
    const int rc = key_to_wire(ns, key, &wk, err);
    if (rc)
        return rc;
    Latticekv__V1__GetRequest req = LATTICEKV__V1__GET_REQUEST__INIT;
    req.key = &wk;
    req.want_coded = want_coded != 0;
    req.out_dtype = (Latticekv__V1__DType)out_dtype;
    return UNARY(c, M_GET, &req, &latticekv__v1__get_response__descriptor, resp, err);
}

int lkv_client_get(lkv_client *c, const char *ns, lkv_key key, int out_dtype, lkv_tensor *out,
                   char *tier, lkv_client_error *err)
{
    if (!out)
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: out is NULL");
    memset(out, 0, sizeof *out);
    Latticekv__V1__GetResponse *resp = NULL;
    int rc = get_call(c, ns, key, 0, out_dtype, &resp, err);
    if (rc)
        return rc;
    if (resp->payload_case != LATTICEKV__V1__GET_RESPONSE__PAYLOAD_TENSOR)
        rc = fail(err, LKV_RPC_INTERNAL, "client: Get replied without a tensor (payload %d)",
                  (int)resp->payload_case);
    else
        rc = tensor_from_wire(resp->tensor, out, err);
    if (!rc && tier)
        copy_str(tier, LKV_CLIENT_TIER_MAX, resp->tier);
    latticekv__v1__get_response__free_unpacked(resp, NULL);
    return rc;
}

int lkv_client_get_coded(lkv_client *c, const char *ns, lkv_key key, lkv_buf *coded,
                         lkv_client_error *err)
{
    if (!coded)
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: coded is NULL");
    memset(coded, 0, sizeof *coded);
    Latticekv__V1__GetResponse *resp = NULL;
    int rc = get_call(c, ns, key, 1, 0, &resp, err);
    if (rc)
        return rc;
    if (resp->payload_case != LATTICEKV__V1__GET_RESPONSE__PAYLOAD_CODED)
        rc = fail(err, LKV_RPC_INTERNAL, "client: Get(want_coded) replied without coded bytes");
    else
        bytes_from_wire(&resp->coded, coded);
    latticekv__v1__get_response__free_unpacked(resp, NULL);
    return rc;
}

int lkv_client_lookup(lkv_client *c, const char *ns, const lkv_key *keys, size_t n,
                      uint32_t *prefix_hits, uint8_t *present, lkv_client_error *err)
{
    if (!c || (n && !keys))
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: client or keys is NULL");
    ProtobufCBinaryData *wk = calloc(n ? n : 1, sizeof *wk);
    if (!wk)
        return fail(err, LKV_RPC_RESOURCE_EXHAUSTED, "client: out of memory for %zu keys", n);
    for (size_t i = 0; i < n; i++) {
        if (keys[i].len && !keys[i].data) {
            free(wk);
            return fail(err, LKV_RPC_INVALID_ARGUMENT,
                        "client: keys[%zu].data is NULL with %zu bytes", i, keys[i].len);
        }
        wk[i].data = (uint8_t *)keys[i].data;
        wk[i].len = keys[i].len;
    }
    Latticekv__V1__LookupRequest req = LATTICEKV__V1__LOOKUP_REQUEST__INIT;
    req.namespace_ = (char *)(ns ? ns : "");
    req.n_keys = n;
    req.keys = wk;
    Latticekv__V1__LookupResponse *resp = NULL;
    int rc = UNARY(c, M_LOOKUP, &req, &latticekv__v1__lookup_response__descriptor, &resp, err);
    free(wk);
    if (rc)
        return rc;
    if (present && resp->n_present != n) {
        rc = fail(err, LKV_RPC_INTERNAL, "client: Lookup of %zu keys answered %zu present flags", n,
                  resp->n_present);
    } else {
        if (prefix_hits)
            *prefix_hits = resp->prefix_hits;
        for (size_t i = 0; present && i < n; i++)
            present[i] = resp->present[i] ? 1 : 0;
    }
    latticekv__v1__lookup_response__free_unpacked(resp, NULL);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Push and Pull                                                             */
/* ------------------------------------------------------------------------ */

/* The keys as wire bytes in *out (malloc'd), or the error. */
static int keys_to_wire(const lkv_key *keys, size_t n, ProtobufCBinaryData **out,
                        lkv_client_error *err)
{
    ProtobufCBinaryData *wk = calloc(n ? n : 1, sizeof *wk);
    if (!wk)
        return fail(err, LKV_RPC_RESOURCE_EXHAUSTED, "client: out of memory for %zu keys", n);
    for (size_t i = 0; i < n; i++) {
        if (keys[i].len && !keys[i].data) {
            free(wk);
            return fail(err, LKV_RPC_INVALID_ARGUMENT,
                        "client: keys[%zu].data is NULL with %zu bytes", i, keys[i].len);
        }
        wk[i].data = (uint8_t *)keys[i].data;
        wk[i].len = keys[i].len;
    }
    *out = wk;
    return 0;
}

/* PushResponse and PullResponse have the same fields. */
static int transfer_out(Latticekv__V1__PushResponse *resp, lkv_transfer *out, lkv_client_error *err)
{
    out->results = calloc(resp->n_results ? resp->n_results : 1, sizeof *out->results);
    if (!out->results) {
        latticekv__v1__push_response__free_unpacked(resp, NULL);
        return fail(err, LKV_RPC_RESOURCE_EXHAUSTED, "client: out of memory for %zu results",
                    resp->n_results);
    }
    out->n = resp->n_results;
    for (size_t i = 0; i < out->n; i++) {
        const Latticekv__V1__PeerKeyResult *r = resp->results[i];
        out->results[i] = (lkv_transfer_result){.key = {r->key.data, r->key.len},
                                                .code = (lkv_rpc_code)r->code,
                                                .message = r->message ? r->message : "",
                                                .coded_bytes = r->coded_bytes};
    }
    out->stored = resp->stored;
    out->coded_bytes = resp->coded_bytes;
    out->reply_ = resp;
    return 0;
}

int lkv_client_push(lkv_client *c, const char *to, const char *ns, const lkv_key *keys, size_t n,
                    const lkv_key *prefix, lkv_transfer *out, lkv_client_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!c || !out || (n && !keys))
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: client, keys or out is NULL");
    ProtobufCBinaryData *wk = NULL;
    const int krc = keys_to_wire(keys, n, &wk, err);
    if (krc)
        return krc;
    Latticekv__V1__PushRequest req = LATTICEKV__V1__PUSH_REQUEST__INIT;
    req.namespace_ = (char *)(ns ? ns : "");
    req.to = (char *)(to ? to : "");
    req.n_keys = n;
    req.keys = wk;
    if (prefix) {
        req.by_prefix = 1;
        req.key_prefix.data = (uint8_t *)prefix->data;
        req.key_prefix.len = prefix->len;
    }
    Latticekv__V1__PushResponse *resp = NULL;
    const int rc = UNARY(c, M_PUSH, &req, &latticekv__v1__push_response__descriptor, &resp, err);
    free(wk);
    return rc ? rc : transfer_out(resp, out, err);
}

int lkv_client_pull(lkv_client *c, const char *from, const char *ns, const lkv_key *keys, size_t n,
                    lkv_transfer *out, lkv_client_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!c || !out || (n && !keys))
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: client, keys or out is NULL");
    ProtobufCBinaryData *wk = NULL;
    const int krc = keys_to_wire(keys, n, &wk, err);
    if (krc)
        return krc;
    Latticekv__V1__PullRequest req = LATTICEKV__V1__PULL_REQUEST__INIT;
    req.namespace_ = (char *)(ns ? ns : "");
    req.from = (char *)(from ? from : "");
    req.n_keys = n;
    req.keys = wk;
    /* The reply is a PullResponse, field for field a PushResponse. */
    Latticekv__V1__PushResponse *resp = NULL;
    const int rc = UNARY(c, M_PULL, &req, &latticekv__v1__push_response__descriptor, &resp, err);
    free(wk);
    return rc ? rc : transfer_out(resp, out, err);
}

void lkv_transfer_clear(lkv_transfer *t)
{
    if (!t)
        return;
    free(t->results);
    if (t->reply_)
        latticekv__v1__push_response__free_unpacked(t->reply_, NULL);
    memset(t, 0, sizeof *t);
}

int lkv_client_delete(lkv_client *c, const char *ns, lkv_key key, int *deleted,
                      lkv_client_error *err)
{
    if (!c)
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: client is NULL");
    Latticekv__V1__BlockKey wk;
    int rc = key_to_wire(ns, key, &wk, err);
    if (rc)
        return rc;
    Latticekv__V1__DeleteRequest req = LATTICEKV__V1__DELETE_REQUEST__INIT;
    req.key = &wk;
    Latticekv__V1__DeleteResponse *resp = NULL;
    rc = UNARY(c, M_DELETE, &req, &latticekv__v1__delete_response__descriptor, &resp, err);
    if (rc)
        return rc;
    if (deleted)
        *deleted = resp->deleted ? 1 : 0;
    latticekv__v1__delete_response__free_unpacked(resp, NULL);
    return LKV_RPC_OK;
}

/* ------------------------------------------------------------------------ */
/* Admin                                                                     */
/* ------------------------------------------------------------------------ */

int lkv_client_stats_get(lkv_client *c, lkv_client_stats *st, lkv_client_error *err)
{
    if (!c || !st)
        return fail(err, LKV_RPC_INVALID_ARGUMENT, "client: client or st is NULL");
    memset(st, 0, sizeof *st);
    Latticekv__V1__StatsRequest req = LATTICEKV__V1__STATS_REQUEST__INIT;
    Latticekv__V1__StatsResponse *resp = NULL;
    const int rc = UNARY(c, M_STATS, &req, &latticekv__v1__stats_response__descriptor, &resp, err);
    if (rc)
        return rc;
    copy_str(st->version, sizeof st->version, resp->version);
    copy_str(st->backend, sizeof st->backend, resp->backend);
    st->uptime_ms = resp->uptime_ms;
    st->requests = resp->requests;
    st->errors = resp->errors;
    st->raw_bytes_in = resp->raw_bytes_in;
    st->coded_bytes_out = resp->coded_bytes_out;
    st->batches = resp->batches;
    st->batched_vectors = resp->batched_vectors;
    if (resp->n_tiers) {
        st->tiers = calloc(resp->n_tiers, sizeof *st->tiers);
        if (!st->tiers) {
            latticekv__v1__stats_response__free_unpacked(resp, NULL);
            return fail(err, LKV_RPC_RESOURCE_EXHAUSTED, "client: out of memory");
        }
        st->n_tiers = resp->n_tiers;
        for (size_t i = 0; i < resp->n_tiers; i++) {
            const Latticekv__V1__TierStats *t = resp->tiers[i];
            lkv_client_tier *o = &st->tiers[i];
            copy_str(o->name, sizeof o->name, t->name);
            o->capacity_bytes = t->capacity_bytes;
            o->used_bytes = t->used_bytes;
            o->blocks = t->blocks;
            o->hits = t->hits;
            o->misses = t->misses;
            o->evictions = t->evictions;
            o->errors = t->errors;
            o->dropped_blocks = t->dropped_blocks;
            o->lost_blocks = t->lost_blocks;
            copy_str(o->link, sizeof o->link, t->link);
        }
    }
    latticekv__v1__stats_response__free_unpacked(resp, NULL);
    return LKV_RPC_OK;
}
