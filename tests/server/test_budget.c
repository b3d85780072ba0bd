/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_budget.c - the in-flight byte budget (budget.c) and what the service
 * charges to it, and which coded Puts keep their request buffer as the block
 * (issue 17, items 1 and 2). No network: the service runs with the real
 * batcher and the CPU codec, as in test_service.c.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "latticekv/v1/latticekv.pb-c.h"
#include "host_tier.h"

static const char *no_env(const char *name, void *ud)
{
    (void)name;
    (void)ud;
    return NULL;
}

Test(budget, default_is_a_quarter_of_the_store_but_at_least_two_messages)
{
    lkv_config cfg;
    lkv_config_defaults(&cfg);
    cr_assert_eq(cfg.max_inflight_bytes, 0);
    cr_assert_eq(lkv_inflight_budget(&cfg), UINT64_C(256) << 20, "1 GiB / 4");
    cfg.host_mem_bytes = 8 << 20;
    cr_assert_eq(lkv_inflight_budget(&cfg), UINT64_C(128) << 20, "2 x 64 MiB messages");
    char err[256];
    lkv_config_action action;
    char *ok_argv[] = {"latticekvd", "--max-inflight-bytes", "3MiB", NULL};
    cr_assert_eq(lkv_config_load(&cfg, 3, ok_argv, no_env, NULL, &action, err, sizeof err), LKV_OK,
                 "%s", err);
    cr_assert_eq(lkv_inflight_budget(&cfg), UINT64_C(3) << 20);
    char *bad_argv[] = {"latticekvd", "--max-inflight-bytes", "lots", NULL};
    cr_assert_eq(lkv_config_load(&cfg, 3, bad_argv, no_env, NULL, &action, err, sizeof err),
                 LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "max-inflight-bytes=lots"), "%s", err);
}

Test(budget, a_lone_request_is_admitted_and_the_rest_wait_for_room)
{
    lkv_budget b;
    lkv_budget_init(&b, 100);
    cr_assert(lkv_budget_try_take(&b, 500), "nothing in flight: admitted");
    cr_assert(!lkv_budget_try_take(&b, 1), "over the limit");
    lkv_budget_give(&b, 500);
    cr_assert(lkv_budget_try_take(&b, 60));
    cr_assert(lkv_budget_try_take(&b, 40), "exactly the limit");
    cr_assert(!lkv_budget_try_take(&b, 1));
    cr_assert_eq(atomic_load(&b.refused), 2);
    lkv_budget_take(&b, 10); /* small replies pass the limit */
    cr_assert_eq(atomic_load(&b.used), 110);
    lkv_budget_give(&b, 110);
    cr_assert_eq(atomic_load(&b.used), 0);
    cr_assert(lkv_budget_try_take(NULL, UINT64_MAX), "no budget: no limit");
}

Test(budget, memory_is_trimmed_once_a_big_burst_has_drained)
{
    lkv_budget b;
    lkv_budget_init(&b, UINT64_C(1) << 40);
    const uint64_t chunk = LKV_TRIM_AFTER_BYTES / 4;
    for (int i = 0; i < 4; i++)
        cr_assert(lkv_budget_try_take(&b, chunk));
    lkv_budget_give(&b, 3 * chunk);
    cr_assert_eq(atomic_load(&b.trims), 0, "still in flight");
    lkv_budget_give(&b, chunk);
    cr_assert_eq(atomic_load(&b.trims), 1, "drained after 64 MiB");
    cr_assert(lkv_budget_try_take(&b, chunk));
    lkv_budget_give(&b, chunk);
    cr_assert_eq(atomic_load(&b.trims), 1, "too little traffic since");
}

/* ---- the service's side ------------------------------------------------- */

static lkv_reply last;
static int replies;
static int hold_effect; /* keep a reply's effect uncommitted in last */
static lkv_batch *queued[64];
static int nqueued;

static void enqueue(lkv_batch *b, void *ud)
{
    (void)ud;
    cr_assert_lt(nqueued, 64);
    queued[nqueued++] = b;
}

static void on_reply(void *call, uint64_t seq, lkv_reply *r)
{
    (void)call;
    (void)seq;
    if (r->commit && !hold_effect)
        r->commit(r->effect, r);
    last = *r; /* the buffer (and its charge) is ours until release() */
    r->buf = NULL;
    r->commit = NULL;
    r->drop = NULL;
    r->effect = NULL;
    replies++;
}

static lkv_config cfg;
static lkv_tier *store; /* the stack's host tier */
static lkv_stack *stack;
static lkv_batcher *batcher;
static lkv_service *svc;
static lkv_budget budget;

static void setup(void)
{
    lkv_config_defaults(&cfg);
    cfg.host_mem_bytes = 1 << 20;
    store = host_tier(cfg.host_mem_bytes);
    const lkv_batcher_cfg bc = {64, 0, 4, 64};
    batcher = lkv_batcher_create(&bc, enqueue, NULL);
    stack = lkv_stack_create(store, NULL, NULL, LKV_TIER_WRITE_THROUGH);
    svc = lkv_service_create(&cfg, stack, batcher, "cpu", on_reply);
    lkv_budget_init(&budget, 1 << 20);
    lkv_service_set_budget(svc, &budget);
    memset(&last, 0, sizeof last);
    replies = 0;
    hold_effect = 0;
    nqueued = 0;
}

/* What rpc.c does with a reply it has sent. */
static void release(void)
{
    if (last.buf)
        lkv_budget_give(&budget, last.len);
    free(last.buf);
    last.buf = NULL;
}

static void teardown(void)
{
    release();
    lkv_service_free(svc);
    lkv_batcher_free(batcher);
    lkv_stack_close(stack, NULL, NULL); /* the host tier closes at once */
}

static void pump(void)
{
    for (;;) {
        lkv_batcher_poll(batcher, lkv_now_ns());
        if (nqueued == 0)
            return;
        lkv_batch *b = queued[--nqueued];
        lkv_backend_run_cpu(b);
        lkv_batcher_complete(batcher, b);
    }
}

/* Hands len bytes to the service as rpc.c does: charged, then owned by it. */
static void handle(lkv_method m, const uint8_t *bytes, size_t len)
{
    uint8_t *buf = malloc(len ? len : 1);
    memcpy(buf, bytes, len);
    cr_assert(lkv_budget_try_take(&budget, len));
    const int before = replies;
    lkv_service_handle(svc, m, NULL, 0, buf, len);
    pump();
    cr_assert_eq(replies, before + 1);
}

static float data[4 * 2 * 128];
static uint64_t shape[] = {4, 2, 128};

static size_t container(uint8_t *out, size_t cap)
{
    for (size_t i = 0; i < sizeof data / sizeof data[0]; i++)
        data[i] = cosf((float)i * 0.21f);
    const lkv_params p = {LKV_VARIANT_E8, 38, 128};
    size_t n = 0;
    cr_assert_eq(lkv_compress(&p, LKV_DTYPE_FP32, shape, 3, data, sizeof data, out, cap, &n,
                              LKV_ISA_AUTO, NULL),
                 LKV_OK);
    return n;
}

/* A coded PutRequest for key, plus `pad` bytes of unknown field 1000. */
static size_t put_request(uint8_t *out, size_t cap, const char *key, const uint8_t *coded, size_t n,
                          size_t pad)
{
    Latticekv__V1__BlockKey k = LATTICEKV__V1__BLOCK_KEY__INIT;
    k.namespace_ = "ns";
    k.key.data = (uint8_t *)key;
    k.key.len = strlen(key);
    Latticekv__V1__PutRequest q = LATTICEKV__V1__PUT_REQUEST__INIT;
    q.key = &k;
    q.payload_case = LATTICEKV__V1__PUT_REQUEST__PAYLOAD_CODED;
    q.coded.data = (uint8_t *)coded;
    q.coded.len = n;
    size_t len = protobuf_c_message_get_packed_size(&q.base);
    cr_assert_lt(len + pad + 16, cap);
    protobuf_c_message_pack(&q.base, out);
    if (pad) {
        uint8_t *p = lkv_wire_put_len_field(out + len, 1000, pad);
        memset(p, 0xab, pad);
        len = (size_t)(p - out) + pad;
    }
    return len;
}

static lkv_blob *stored(const char *key)
{
    lkv_blob *b = host_get(store, "ns", 2, (const uint8_t *)key, strlen(key));
    cr_assert_not_null(b);
    return b;
}

Test(budget, a_padded_coded_put_stores_a_copy_of_its_container_only, .init = setup,
     .fini = teardown)
{
    static uint8_t coded[16384], req[1 << 17];
    const size_t n = container(coded, sizeof coded);

    size_t len = put_request(req, sizeof req, "plain", coded, n, 0);
    handle(LKV_METHOD_PUT, req, len);
    cr_assert_eq(last.code, LKV_GRPC_OK, "%s", last.msg);
    lkv_blob *b = stored("plain");
    cr_assert_not_null(b->base, "a plain request buffer is the block");
    cr_assert_eq(b->len, n);
    lkv_blob_unref(b);
    release();

    len = put_request(req, sizeof req, "padded", coded, n, 100000);
    handle(LKV_METHOD_PUT, req, len);
    cr_assert_eq(last.code, LKV_GRPC_OK, "%s", last.msg);
    b = stored("padded");
    cr_assert_null(b->base, "the container is copied out, the request freed");
    cr_assert_eq(b->len, n);
    cr_assert_eq(memcmp(b->data, coded, n), 0);
    lkv_blob_unref(b);
    release();
    cr_assert_eq(atomic_load(&budget.used), 0, "every request byte given back");
}

Test(budget, a_reply_over_the_budget_is_refused_naming_it, .init = setup, .fini = teardown)
{
    static uint8_t coded[16384], req[1 << 17];
    const size_t n = container(coded, sizeof coded);
    handle(LKV_METHOD_PUT, req, put_request(req, sizeof req, "k", coded, n, 0));
    release();

    Latticekv__V1__BlockKey k = LATTICEKV__V1__BLOCK_KEY__INIT;
    k.namespace_ = "ns";
    k.key.data = (uint8_t *)"k";
    k.key.len = 1;
    Latticekv__V1__GetRequest g = LATTICEKV__V1__GET_REQUEST__INIT;
    g.key = &k;
    uint8_t greq[64];
    const size_t glen = latticekv__v1__get_request__pack(&g, greq);
    handle(LKV_METHOD_GET, greq, glen);
    cr_assert_eq(last.code, LKV_GRPC_OK, "%s", last.msg);
    cr_assert_eq(atomic_load(&budget.used), last.len, "the unsent reply is charged");
    const lkv_reply held = last;
    memset(&last, 0, sizeof last);

    budget.limit = held.len + 100; /* room for the request, not a second reply */
    handle(LKV_METHOD_GET, greq, glen);
    cr_assert_eq(last.code, LKV_GRPC_RESOURCE_EXHAUSTED);
    cr_assert(strstr(last.msg, "max-inflight-bytes="), "%s", last.msg);
    cr_assert_eq(atomic_load(&budget.used), held.len, "the refused request gave its bytes back");

    last = held;
    release();
    cr_assert_eq(atomic_load(&budget.used), 0);
}

Test(budget, a_give_that_does_not_pair_stops_at_zero_and_is_counted)
{
    lkv_budget b;
    lkv_budget_init(&b, 100);
    lkv_budget_take(&b, 30);
    lkv_budget_give(&b, 50); /* 20 more than was taken: a bug somewhere */
    cr_assert_eq(atomic_load(&b.used), 0, "used must not wrap below zero");
    cr_assert_eq(atomic_load(&b.underflows), 1);
    /* The budget still works: a wrapped counter would refuse everything. */
    cr_assert(lkv_budget_try_take(&b, 60));
    cr_assert(lkv_budget_try_take(&b, 40));
    cr_assert(!lkv_budget_try_take(&b, 1));
    lkv_budget_give(&b, 100);
    cr_assert_eq(atomic_load(&b.used), 0);
    cr_assert_eq(atomic_load(&b.underflows), 1, "paired gives are not counted");
}

/* A PutStream block waits for its reply's turn (rpc.c commits it after the
 * stream's earlier replies): meanwhile it is in no store, so its bytes stay
 * charged to the budget, until the store takes them or it is dropped. */
Test(budget, a_pending_put_stream_block_stays_charged_until_commit_or_drop, .init = setup,
     .fini = teardown)
{
    static uint8_t coded[16384], req[1 << 17];
    const size_t n = container(coded, sizeof coded);
    const size_t len = put_request(req, sizeof req, "s", coded, n, 0);
    hold_effect = 1;
    for (int commit = 1; commit >= 0; commit--) {
        handle(LKV_METHOD_PUT_STREAM, req, len);
        cr_assert_eq(last.code, LKV_GRPC_OK, "%s", last.msg);
        cr_assert_not_null(last.effect);
        cr_assert_eq(atomic_load(&budget.used), last.len + n,
                     "the reply and the pending block are charged");
        if (commit)
            last.commit(last.effect, &last);
        else
            last.drop(last.effect);
        cr_assert_eq(atomic_load(&budget.used), last.len, "only the reply is left in flight");
        release();
        cr_assert_eq(atomic_load(&budget.used), 0);
        cr_assert_eq(host_has(store, "ns", 2, (const uint8_t *)"s", 1), 1,
                     "stored by the commit (still there after the drop of the second)");
    }
    cr_assert_eq(atomic_load(&budget.underflows), 0);
}
