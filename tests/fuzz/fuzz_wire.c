/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_wire.c - libFuzzer target for every reader of network bytes in
 * latticekvd: wire.c's request readers and the service's handling of what
 * they return.
 *
 * Input layout: byte 0 selects the method (its row of LKV_RPC_LIST, modulo
 * the number of rows); the rest is that method's request message. Each
 * input is first read by the method's wire.c reader, whose results must
 * point inside the message (Lookup's key walk must find exactly n_keys
 * keys), and then handled by a fresh service with a small store and the
 * real batcher, its codec work run on the CPU codec, exactly as the
 * daemon's loop would. Any input must produce exactly one reply, without a
 * crash, a leak or an out-of-bounds access (run under ASan/UBSan); a
 * malformed message must be INVALID_ARGUMENT. A Put is followed by a Get
 * of the same key, so stored blocks are read back. The in-flight budget is
 * charged and given back as rpc.c does (the request on receipt, a reply
 * when it is sent): after every request it must hold nothing and never
 * have underflowed, so every path pairs its charges and gives.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_server.h"
#include "lkv_stack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXQ 64

static lkv_batch *queued[MAXQ];
static int nqueued;
static int replies;
static lkv_grpc_code last_code;
static lkv_budget budget;

static void enqueue(lkv_batch *b, void *ud)
{
    (void)ud;
    if (nqueued == MAXQ)
        abort(); /* max_inflight below keeps this from happening */
    queued[nqueued++] = b;
}

static void on_reply(void *call, uint64_t seq, lkv_reply *r)
{
    (void)call;
    (void)seq;
    if (r->commit)
        r->commit(r->effect, r);
    if (r->buf) /* sent: rpc.c gives a reply's bytes back when gRPC frees it */
        lkv_budget_give(&budget, r->len);
    free(r->buf);
    r->buf = NULL;
    last_code = r->code;
    replies++;
}

static void inside(const void *p, size_t len, const uint8_t *msg, size_t n)
{
    const uint8_t *b = p;
    if (len && (b < msg || b + len > msg + n || b + len < b))
        abort();
}

/* Reads msg with the method's wire.c reader; returns its result (0 / -1). */
static int read_wire(lkv_method m, const uint8_t *msg, size_t n)
{
    switch (m) {
    case LKV_METHOD_PUT:
    case LKV_METHOD_PUT_STREAM: {
        lkv_wire_put q;
        const int rc = lkv_wire_parse_put(msg, n, &q);
        if (rc == 0) {
            inside(q.key.ns, q.key.ns_len, msg, n);
            inside(q.key.key, q.key.key_len, msg, n);
            inside(q.coded, q.coded_len, msg, n);
            inside(q.tensor.data, q.tensor.data_len, msg, n);
        }
        return rc;
    }
    case LKV_METHOD_COMPRESS:
    case LKV_METHOD_COMPRESS_STREAM: {
        lkv_wire_tensor t;
        lkv_wire_params p;
        const int rc = lkv_wire_parse_compress(msg, n, &t, &p);
        if (rc == 0)
            inside(t.data, t.data_len, msg, n);
        return rc;
    }
    case LKV_METHOD_DECOMPRESS:
    case LKV_METHOD_DECOMPRESS_STREAM: {
        lkv_wire_decompress q;
        const int rc = lkv_wire_parse_decompress(msg, n, &q);
        if (rc == 0)
            inside(q.coded, q.coded_len, msg, n);
        return rc;
    }
    case LKV_METHOD_GET:
    case LKV_METHOD_GET_STREAM: {
        lkv_wire_get q;
        const int rc = lkv_wire_parse_get(msg, n, &q);
        if (rc == 0) {
            inside(q.key.ns, q.key.ns_len, msg, n);
            inside(q.key.key, q.key.key_len, msg, n);
        }
        return rc;
    }
    case LKV_METHOD_DELETE: {
        lkv_wire_key k;
        const int rc = lkv_wire_parse_delete(msg, n, &k);
        if (rc == 0)
            inside(k.key, k.key_len, msg, n);
        return rc;
    }
    case LKV_METHOD_LOOKUP:
    case LKV_METHOD_PUSH: /* a Lookup's namespace and keys, plus fields the */
    case LKV_METHOD_PULL: /* service reads with lkv_wire_next (target, prefix) */
    {
        lkv_wire_lookup q;
        const int rc = lkv_wire_parse_lookup(msg, n, &q);
        if (rc == 0) {
            inside(q.ns, q.ns_len, msg, n);
            size_t pos = 0, len, seen = 0;
            const uint8_t *key;
            while (lkv_wire_lookup_next(&q, &pos, &key, &len)) {
                inside(key, len, msg, n);
                seen++;
            }
            if (seen != q.n_keys)
                abort();
        }
        return rc;
    }
    case LKV_METHOD_HEALTH_CHECK: {
        const char *s;
        size_t len;
        const int rc = lkv_wire_parse_health(msg, n, &s, &len);
        if (rc == 0)
            inside(s, len, msg, n);
        return rc;
    }
    case LKV_METHOD_STATS: return lkv_wire_parse_empty(msg, n);
    case LKV_METHOD_REFLECTION: {
        /* reflection.c reads its own requests: check it on its own first. */
        uint8_t *reply = NULL;
        size_t reply_len = 0;
        const int rc = lkv_reflection_answer(msg, n, &reply, &reply_len);
        free(reply);
        if (rc == -2)
            abort(); /* nothing here should run out of memory */
        return rc;
    }
    default: abort();
    }
}

static void pump(lkv_batcher *b)
{
    for (;;) {
        lkv_batcher_poll(b, lkv_now_ns());
        if (nqueued == 0)
            return;
        lkv_batch *batch = queued[--nqueued];
        lkv_backend_run_cpu(batch);
        lkv_batcher_complete(b, batch);
    }
}

static size_t varint_len(size_t v)
{
    size_t k = 1;
    for (; v >= 0x80; v >>= 7)
        k++;
    return k;
}

/* A length-delimited field's tag byte and length, written by hand so the
 * harness does not read its own requests with the code under test. */
static uint8_t *put_len(uint8_t *p, uint8_t tag, size_t len)
{
    *p++ = tag;
    for (; len >= 0x80; len >>= 7)
        *p++ = (uint8_t)(len | 0x80);
    *p++ = (uint8_t)len;
    return p;
}

/* One message through the service; it must answer exactly once. */
static lkv_grpc_code serve(lkv_service *svc, lkv_batcher *b, lkv_method m, const uint8_t *msg,
                           size_t n)
{
    uint8_t *copy = malloc(n ? n : 1); /* the service takes the buffer */
    if (!copy)
        abort();
    if (n)
        memcpy(copy, msg, n);
    const int before = replies;
    lkv_budget_take(&budget, n); /* as rpc.c's gather() does */
    lkv_service_handle(svc, m, NULL, 0, copy, n);
    pump(b);
    if (replies != before + 1)
        abort();
    if (atomic_load(&budget.used) != 0 || atomic_load(&budget.underflows) != 0)
        abort(); /* a charge and a give that do not pair */
    return last_code;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const lkv_method m = (lkv_method)(data[0] % LKV_METHOD_COUNT);
    const uint8_t *msg = data + 1;
    const size_t n = size - 1;
    const int valid = read_wire(m, msg, n) == 0;

    lkv_config cfg;
    lkv_config_defaults(&cfg);
    cfg.host_mem_bytes = 1u << 20;
    cfg.max_message_bytes = 4u << 20;
    cfg.reflection = 1;
    const lkv_host_config hc = {
        .capacity_bytes = cfg.host_mem_bytes, .high_pct = 100, .low_pct = 100};
    lkv_tier *host = NULL;
    lkv_diag d;
    if (lkv_tier_host_create(&hc, &host, &d) != LKV_OK)
        abort();
    lkv_stack *stack = lkv_stack_create(host, NULL, NULL, LKV_TIER_WRITE_THROUGH);
    const lkv_batcher_cfg bc = {64, 0, 4, 64};
    lkv_batcher *b = lkv_batcher_create(&bc, enqueue, NULL);
    lkv_service *svc = lkv_service_create(&cfg, stack, b, "cpu", on_reply);
    lkv_service_set_ready(svc, 1);
    lkv_budget_init(&budget, UINT64_C(1) << 40);
    lkv_service_set_budget(svc, &budget);
    nqueued = 0;

    const lkv_grpc_code code = serve(svc, b, m, msg, n);
    if (!valid && code != LKV_GRPC_INVALID_ARGUMENT)
        abort(); /* bytes the reader refuses are never served */
    if ((m == LKV_METHOD_PUT || m == LKV_METHOD_PUT_STREAM) && code == LKV_GRPC_OK) {
        /* Read the block back: GetRequest { key = BlockKey { namespace, key } }. */
        lkv_wire_put q;
        lkv_wire_parse_put(msg, n, &q);
        const size_t inner = 1 + varint_len(q.key.ns_len) + q.key.ns_len + 1 +
                             varint_len(q.key.key_len) + q.key.key_len;
        uint8_t *g = malloc(1 + varint_len(inner) + inner);
        if (!g)
            abort();
        uint8_t *p = put_len(g, 0x0a, inner);
        p = put_len(p, 0x0a, q.key.ns_len);
        memcpy(p, q.key.ns, q.key.ns_len);
        p = put_len(p + q.key.ns_len, 0x12, q.key.key_len);
        memcpy(p, q.key.key, q.key.key_len);
        p += q.key.key_len;
        if (serve(svc, b, LKV_METHOD_GET, g, (size_t)(p - g)) != LKV_GRPC_OK)
            abort(); /* a stored block reads back */
        free(g);
    }
    lkv_service_free(svc);
    lkv_batcher_free(b);
    lkv_stack_close(stack, NULL, NULL); /* the host tier closes at once */
    return 0;
}
