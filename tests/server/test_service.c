/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_service.c - the RPC handlers end to end without a network: requests
 * go in as protobuf bytes, codec work runs through the real batcher and the
 * CPU codec, replies come out as protobuf bytes. Checks byte identity with
 * the one-shot codec calls and the store semantics of docs/service.md section 2.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "latticekv/v1/latticekv.pb-c.h"
#include "host_tier.h"
#include "lkv_format.h"

#define MAXQ 256

static lkv_batch *queued[MAXQ];
static int nqueued;
static lkv_reply last;
static int replies;

static void enqueue(lkv_batch *b, void *ud)
{
    (void)ud;
    cr_assert_lt(nqueued, MAXQ);
    queued[nqueued++] = b;
}

static void on_reply(void *call, uint64_t seq, lkv_reply *r)
{
    (void)call;
    (void)seq;
    if (r->commit) /* as rpc.c: the reply's turn is now */
        r->commit(r->effect, r);
    free(last.buf);
    last = *r;
    r->buf = NULL;
    replies++;
}

typedef struct fixture {
    lkv_config cfg;
    lkv_tier *store; /* the stack's host tier */
    lkv_stack *stack;
    lkv_batcher *batcher;
    lkv_service *svc;
} fixture;

static fixture fx;

static void setup(void)
{
    lkv_config_defaults(&fx.cfg);
    fx.cfg.host_mem_bytes = 1 << 20;
    fx.store = host_tier(fx.cfg.host_mem_bytes);
    const lkv_batcher_cfg bc = {64, 0, 4, 64};
    fx.batcher = lkv_batcher_create(&bc, enqueue, NULL);
    fx.stack = lkv_stack_create(fx.store, NULL, NULL, LKV_TIER_WRITE_THROUGH);
    fx.svc = lkv_service_create(&fx.cfg, fx.stack, fx.batcher, "cpu", on_reply);
    memset(&last, 0, sizeof last);
    replies = 0;
    nqueued = 0;
}

static void teardown(void)
{
    free(last.buf);
    last.buf = NULL;
    lkv_service_free(fx.svc);
    lkv_batcher_free(fx.batcher);
    lkv_stack_close(fx.stack, NULL, NULL); /* the host tier closes at once */
}

/* Runs the batcher until every queued launch has run on the CPU codec. */
static void pump(void)
{
    for (;;) {
        lkv_batcher_poll(fx.batcher, lkv_now_ns());
        if (nqueued == 0)
            return;
        lkv_batch *b = queued[--nqueued];
        lkv_backend_run_cpu(b);
        lkv_batcher_complete(fx.batcher, b);
    }
}

static void call(lkv_method m, const ProtobufCMessage *msg)
{
    const size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n + 1);
    protobuf_c_message_pack(msg, buf);
    const int before = replies;
    lkv_service_handle(fx.svc, m, NULL, 0, buf, n); /* takes buf */
    pump();
    cr_assert_eq(replies, before + 1, "exactly one reply");
}

/* 2 x 4 x 128 fp32 values, smooth and finite. */
static float tensor_data[2 * 4 * 128];
static uint64_t tensor_shape[] = {2, 4, 128};

static Latticekv__V1__Tensor make_tensor(void)
{
    for (size_t i = 0; i < sizeof tensor_data / sizeof tensor_data[0]; i++)
        tensor_data[i] = sinf((float)i * 0.37f) * 3.0f;
    Latticekv__V1__Tensor t = LATTICEKV__V1__TENSOR__INIT;
    t.dtype = LATTICEKV__V1__DTYPE__DTYPE_FP32;
    t.n_shape = 3;
    t.shape = tensor_shape;
    t.data.data = (uint8_t *)tensor_data;
    t.data.len = sizeof tensor_data;
    return t;
}

static size_t reference_container(uint8_t *out, size_t cap)
{
    const lkv_params p = {LKV_VARIANT_E8, 38, 128};
    size_t n = 0;
    cr_assert_eq(lkv_compress(&p, LKV_DTYPE_FP32, tensor_shape, 3, tensor_data, sizeof tensor_data,
                              out, cap, &n, LKV_ISA_AUTO, NULL),
                 LKV_OK);
    return n;
}

static void put_tensor(const char *key, Latticekv__V1__Tensor *t)
{
    Latticekv__V1__BlockKey k = LATTICEKV__V1__BLOCK_KEY__INIT;
    k.namespace_ = "ns";
    k.key.data = (uint8_t *)key;
    k.key.len = strlen(key);
    Latticekv__V1__PutRequest q = LATTICEKV__V1__PUT_REQUEST__INIT;
    q.key = &k;
    q.payload_case = LATTICEKV__V1__PUT_REQUEST__PAYLOAD_TENSOR;
    q.tensor = t;
    call(LKV_METHOD_PUT, &q.base);
}

static void get_key(const char *key, int want_coded)
{
    Latticekv__V1__BlockKey k = LATTICEKV__V1__BLOCK_KEY__INIT;
    k.namespace_ = "ns";
    k.key.data = (uint8_t *)key;
    k.key.len = strlen(key);
    Latticekv__V1__GetRequest q = LATTICEKV__V1__GET_REQUEST__INIT;
    q.key = &k;
    q.want_coded = want_coded;
    call(LKV_METHOD_GET, &q.base);
}

TestSuite(service, .init = setup, .fini = teardown);

Test(service, compress_matches_the_one_shot_codec_byte_for_byte)
{
    Latticekv__V1__Tensor t = make_tensor();
    Latticekv__V1__CompressRequest q = LATTICEKV__V1__COMPRESS_REQUEST__INIT;
    q.tensor = &t;
    call(LKV_METHOD_COMPRESS, &q.base);
    cr_assert_eq(last.code, LKV_GRPC_OK, "%s", last.msg);
    Latticekv__V1__CompressResponse *r =
        latticekv__v1__compress_response__unpack(NULL, last.len, last.buf);
    cr_assert_not_null(r);
    static uint8_t ref[65536];
    const size_t n = reference_container(ref, sizeof ref);
    cr_assert_eq(r->coded.len, n);
    cr_assert_eq(memcmp(r->coded.data, ref, n), 0, "server-encoded container differs");
    cr_assert_eq(r->raw_bytes, sizeof tensor_data);
    cr_assert_eq(r->bits_per_vector, 848);
    latticekv__v1__compress_response__free_unpacked(r, NULL);
}

Test(service, put_then_get_decodes_like_decompress)
{
    Latticekv__V1__Tensor t = make_tensor();
    put_tensor("k", &t);
    cr_assert_eq(last.code, LKV_GRPC_OK, "%s", last.msg);
    get_key("k", 0);
    cr_assert_eq(last.code, LKV_GRPC_OK, "%s", last.msg);
    Latticekv__V1__GetResponse *g = latticekv__v1__get_response__unpack(NULL, last.len, last.buf);
    cr_assert_not_null(g);
    cr_assert_str_eq(g->tier, "host");
    cr_assert_eq(g->payload_case, LATTICEKV__V1__GET_RESPONSE__PAYLOAD_TENSOR);
    static uint8_t ref[65536], dec[sizeof tensor_data];
    const size_t n = reference_container(ref, sizeof ref);
    size_t dn = 0;
    cr_assert_eq(lkv_decompress(ref, n, 0, dec, sizeof dec, &dn, NULL, LKV_ISA_AUTO, NULL), LKV_OK);
    cr_assert_eq(g->tensor->data.len, dn);
    cr_assert_eq(memcmp(g->tensor->data.data, dec, dn), 0);
    cr_assert_eq(g->tensor->n_shape, 3);
    latticekv__v1__get_response__free_unpacked(g, NULL);

    get_key("k", 1);
    g = latticekv__v1__get_response__unpack(NULL, last.len, last.buf);
    cr_assert_eq(g->payload_case, LATTICEKV__V1__GET_RESPONSE__PAYLOAD_CODED);
    cr_assert_eq(g->coded.len, n);
    cr_assert_eq(memcmp(g->coded.data, ref, n), 0);
    latticekv__v1__get_response__free_unpacked(g, NULL);
}

Test(service, a_failed_put_leaves_the_previous_value)
{
    Latticekv__V1__Tensor t = make_tensor();
    put_tensor("k", &t);
    cr_assert_eq(last.code, LKV_GRPC_OK);
    tensor_data[300] = NAN;
    Latticekv__V1__Tensor bad = t;
    put_tensor("k", &bad);
    cr_assert_eq(last.code, LKV_GRPC_INVALID_ARGUMENT);
    cr_assert(strstr(last.msg, "NaN"), "%s", last.msg);
    get_key("k", 1);
    cr_assert_eq(last.code, LKV_GRPC_OK);
    Latticekv__V1__GetResponse *g = latticekv__v1__get_response__unpack(NULL, last.len, last.buf);
    static uint8_t ref[65536];
    make_tensor(); /* restores the finite data */
    const size_t n = reference_container(ref, sizeof ref);
    cr_assert_eq(g->coded.len, n);
    cr_assert_eq(memcmp(g->coded.data, ref, n), 0, "old value intact");
    latticekv__v1__get_response__free_unpacked(g, NULL);
}

Test(service, a_corrupted_stored_block_is_data_loss_and_dropped)
{
    Latticekv__V1__Tensor t = make_tensor();
    put_tensor("k", &t);
    lkv_blob *b = host_get(fx.store, "ns", 2, (const uint8_t *)"k", 1);
    b->data[b->len - 1] ^= 0x10; /* flip a bit in the last record */
    lkv_blob_unref(b);
    get_key("k", 0);
    cr_assert_eq(last.code, LKV_GRPC_DATA_LOSS, "%s", last.msg);
    cr_assert(!host_has(fx.store, "ns", 2, (const uint8_t *)"k", 1), "dropped");
    get_key("k", 0);
    cr_assert_eq(last.code, LKV_GRPC_NOT_FOUND);
}

Test(service, put_of_damaged_coded_bytes_is_data_loss_and_stores_nothing)
{
    static uint8_t ref[65536];
    const size_t n = reference_container(ref, sizeof ref);
    ref[n / 2] ^= 1;
    Latticekv__V1__BlockKey k = LATTICEKV__V1__BLOCK_KEY__INIT;
    k.namespace_ = "ns";
    k.key.data = (uint8_t *)"c";
    k.key.len = 1;
    Latticekv__V1__PutRequest q = LATTICEKV__V1__PUT_REQUEST__INIT;
    q.key = &k;
    q.payload_case = LATTICEKV__V1__PUT_REQUEST__PAYLOAD_CODED;
    q.coded.data = ref;
    q.coded.len = n;
    call(LKV_METHOD_PUT, &q.base);
    cr_assert_eq(last.code, LKV_GRPC_DATA_LOSS, "%s", last.msg);
    cr_assert(!host_has(fx.store, "ns", 2, (const uint8_t *)"c", 1));
    q.coded.len = 20;
    call(LKV_METHOD_PUT, &q.base);
    cr_assert_eq(last.code, LKV_GRPC_DATA_LOSS, "%s", last.msg);
}

Test(service, a_coded_profile2_put_is_stored_as_is)
{
    /* A profile 2 container of any version (3, the default, 2, the older
     * layout still in the field, and 4 with its channel mode) is verified
     * and kept byte for byte, at its real (variable) length; Get returns it
     * coded or decodes it by the version its header names. */
    static const uint32_t formats[] = {LKV_FMT_VERSION_P2, LKV_FMT_VERSION_P3, LKV_FMT_VERSION_P4};
    static const char *const keys[] = {"p2", "p3", "p4"};
    static uint8_t c2[3][65536], dec[sizeof tensor_data];
    size_t n[3] = {0, 0, 0};
    make_tensor();
    for (int i = 0; i < 3; i++) {
        const lkv_params p = {LKV_VARIANT_E8, 54, 128, LKV_PROFILE_2, formats[i]};
        cr_assert_eq(lkv_compress(&p, LKV_DTYPE_FP32, tensor_shape, 3, tensor_data,
                                  sizeof tensor_data, c2[i], sizeof c2[i], &n[i], LKV_ISA_AUTO,
                                  NULL),
                     LKV_OK);
        cr_assert_eq(c2[i][LKV_FMT_OFF_VERSION], formats[i]);
        Latticekv__V1__BlockKey k = LATTICEKV__V1__BLOCK_KEY__INIT;
        k.namespace_ = "ns";
        k.key.data = (uint8_t *)keys[i];
        k.key.len = 2;
        Latticekv__V1__PutRequest q = LATTICEKV__V1__PUT_REQUEST__INIT;
        q.key = &k;
        q.payload_case = LATTICEKV__V1__PUT_REQUEST__PAYLOAD_CODED;
        q.coded.data = c2[i];
        q.coded.len = n[i];
        call(LKV_METHOD_PUT, &q.base);
        cr_assert_eq(last.code, LKV_GRPC_OK, "%s", last.msg);
        lkv_blob *b = host_get(fx.store, "ns", 2, (const uint8_t *)keys[i], 2);
        cr_assert_not_null(b);
        cr_assert_eq(b->len, n[i]);
        cr_assert_eq(memcmp(b->data, c2[i], n[i]), 0, "stored as is");
        lkv_blob_unref(b);
    }
    cr_assert(n[0] != n[1] || memcmp(c2[0], c2[1], n[0]) != 0, "two layouts");
    cr_assert(n[1] != n[2] || memcmp(c2[1], c2[2], n[1]) != 0, "version 4's own bytes");
    for (int i = 0; i < 3; i++) {
        get_key(keys[i], 1);
        cr_assert_eq(last.code, LKV_GRPC_OK, "%s", last.msg);
        Latticekv__V1__GetResponse *g =
            latticekv__v1__get_response__unpack(NULL, last.len, last.buf);
        cr_assert_not_null(g);
        cr_assert_eq(g->payload_case, LATTICEKV__V1__GET_RESPONSE__PAYLOAD_CODED);
        cr_assert_eq(g->coded.len, n[i]);
        cr_assert_eq(memcmp(g->coded.data, c2[i], n[i]), 0);
        latticekv__v1__get_response__free_unpacked(g, NULL);

        get_key(keys[i], 0);
        cr_assert_eq(last.code, LKV_GRPC_OK, "%s", last.msg);
        g = latticekv__v1__get_response__unpack(NULL, last.len, last.buf);
        cr_assert_not_null(g);
        cr_assert_eq(g->payload_case, LATTICEKV__V1__GET_RESPONSE__PAYLOAD_TENSOR);
        size_t dn = 0;
        cr_assert_eq(lkv_decompress(c2[i], n[i], 0, dec, sizeof dec, &dn, NULL, LKV_ISA_AUTO, NULL),
                     LKV_OK);
        cr_assert_eq(dn, sizeof tensor_data);
        cr_assert_eq(g->tensor->data.len, dn);
        cr_assert_eq(memcmp(g->tensor->data.data, dec, dn), 0, "decoded as version %u", formats[i]);
        latticekv__v1__get_response__free_unpacked(g, NULL);
    }
}

Test(service, profile2_compress_writes_container_version_3)
{
    /* A Compress (or Put) with profile 2 encodes the newest layout. */
    Latticekv__V1__Tensor t = make_tensor();
    Latticekv__V1__CodecParams cp = LATTICEKV__V1__CODEC_PARAMS__INIT;
    cp.q_range = 54;
    cp.profile = 2;
    Latticekv__V1__CompressRequest q = LATTICEKV__V1__COMPRESS_REQUEST__INIT;
    q.tensor = &t;
    q.params = &cp;
    call(LKV_METHOD_COMPRESS, &q.base);
    cr_assert_eq(last.code, LKV_GRPC_OK, "%s", last.msg);
    Latticekv__V1__CompressResponse *r =
        latticekv__v1__compress_response__unpack(NULL, last.len, last.buf);
    cr_assert_not_null(r);
    const lkv_params p = {LKV_VARIANT_E8, 54, 128, LKV_PROFILE_2, LKV_FMT_VERSION_P3};
    static uint8_t ref[65536];
    size_t n = 0;
    cr_assert_eq(lkv_compress(&p, LKV_DTYPE_FP32, tensor_shape, 3, tensor_data, sizeof tensor_data,
                              ref, sizeof ref, &n, LKV_ISA_AUTO, NULL),
                 LKV_OK);
    cr_assert_eq(r->coded.len, n);
    cr_assert_eq(memcmp(r->coded.data, ref, n), 0, "server-encoded container differs");
    cr_assert_eq(r->coded.data[LKV_FMT_OFF_VERSION], LKV_FMT_VERSION_P3);
    latticekv__v1__compress_response__free_unpacked(r, NULL);
}

Test(service, a_block_larger_than_the_tier_is_resource_exhausted)
{
    fx.cfg.host_mem_bytes = 4096;
    lkv_stack_close(fx.stack, NULL, NULL); /* the host tier closes at once */
    fx.store = host_tier(4096);
    lkv_service_free(fx.svc);
    fx.stack = lkv_stack_create(fx.store, NULL, NULL, LKV_TIER_WRITE_THROUGH);
    fx.svc = lkv_service_create(&fx.cfg, fx.stack, fx.batcher, "cpu", on_reply);
    static float big[64 * 128];
    static uint64_t shape[] = {64, 128};
    Latticekv__V1__Tensor t = LATTICEKV__V1__TENSOR__INIT;
    t.dtype = LATTICEKV__V1__DTYPE__DTYPE_FP32;
    t.n_shape = 2;
    t.shape = shape;
    t.data.data = (uint8_t *)big;
    t.data.len = sizeof big;
    put_tensor("big", &t);
    cr_assert_eq(last.code, LKV_GRPC_RESOURCE_EXHAUSTED, "%s", last.msg);
}

Test(service, lookup_counts_the_present_prefix)
{
    Latticekv__V1__Tensor t = make_tensor();
    put_tensor("a", &t);
    put_tensor("b", &t);
    put_tensor("d", &t);
    ProtobufCBinaryData keys[4] = {
        {1, (uint8_t *)"a"}, {1, (uint8_t *)"b"}, {1, (uint8_t *)"c"}, {1, (uint8_t *)"d"}};
    Latticekv__V1__LookupRequest q = LATTICEKV__V1__LOOKUP_REQUEST__INIT;
    q.namespace_ = "ns";
    q.n_keys = 4;
    q.keys = keys;
    call(LKV_METHOD_LOOKUP, &q.base);
    Latticekv__V1__LookupResponse *r =
        latticekv__v1__lookup_response__unpack(NULL, last.len, last.buf);
    cr_assert_not_null(r);
    cr_assert_eq(r->prefix_hits, 2);
    cr_assert_eq(r->n_present, 4);
    cr_assert(r->present[0] && r->present[1] && !r->present[2] && r->present[3]);
    latticekv__v1__lookup_response__free_unpacked(r, NULL);
}

Test(service, malformed_bytes_and_missing_fields_are_invalid_argument)
{
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    uint8_t *copy = malloc(sizeof junk);
    memcpy(copy, junk, sizeof junk);
    lkv_service_handle(fx.svc, LKV_METHOD_PUT, NULL, 0, copy, sizeof junk);
    cr_assert_eq(last.code, LKV_GRPC_INVALID_ARGUMENT);
    cr_assert(strstr(last.msg, "PutRequest"), "%s", last.msg);

    Latticekv__V1__CompressRequest q = LATTICEKV__V1__COMPRESS_REQUEST__INIT;
    call(LKV_METHOD_COMPRESS, &q.base);
    cr_assert_eq(last.code, LKV_GRPC_INVALID_ARGUMENT);
    cr_assert_str_eq(last.msg, "tensor is missing");

    Latticekv__V1__Tensor t = make_tensor();
    static uint64_t odd[] = {2, 4, 90};
    t.shape = odd;
    q.tensor = &t;
    call(LKV_METHOD_COMPRESS, &q.base);
    cr_assert_eq(last.code, LKV_GRPC_INVALID_ARGUMENT);
    cr_assert(strstr(last.msg, "head_dim") && strstr(last.msg, "90"), "%s", last.msg);

    Latticekv__V1__CodecParams p = LATTICEKV__V1__CODEC_PARAMS__INIT;
    p.q_range = 1024;
    t = make_tensor();
    q.params = &p;
    call(LKV_METHOD_COMPRESS, &q.base);
    cr_assert_eq(last.code, LKV_GRPC_INVALID_ARGUMENT);
    cr_assert(strstr(last.msg, "q_range=1024"), "%s", last.msg);

    p.q_range = 0;
    p.profile = 9;
    t = make_tensor();
    call(LKV_METHOD_COMPRESS, &q.base);
    cr_assert_eq(last.code, LKV_GRPC_INVALID_ARGUMENT);
    cr_assert(strstr(last.msg, "profile=9"), "%s", last.msg);
}

Test(service, a_reply_over_the_message_limit_is_resource_exhausted)
{
    fx.cfg.max_message_bytes = 512;
    Latticekv__V1__Tensor t = make_tensor();
    Latticekv__V1__CompressRequest q = LATTICEKV__V1__COMPRESS_REQUEST__INIT;
    q.tensor = &t;
    call(LKV_METHOD_COMPRESS, &q.base);
    cr_assert_eq(last.code, LKV_GRPC_RESOURCE_EXHAUSTED, "%s", last.msg);
    cr_assert(strstr(last.msg, "max-message-bytes=512"), "%s", last.msg);
}

Test(service, stats_count_requests_and_errors)
{
    Latticekv__V1__Tensor t = make_tensor();
    put_tensor("a", &t);
    get_key("zz", 0);
    lkv_stats c;
    lkv_service_get_stats(fx.svc, &c);
    cr_assert_eq(c.requests, 2);
    cr_assert_eq(c.errors, 1);
    cr_assert_eq(c.raw_bytes_in, sizeof tensor_data);
    Latticekv__V1__StatsRequest sq = LATTICEKV__V1__STATS_REQUEST__INIT;
    call(LKV_METHOD_STATS, &sq.base);
    Latticekv__V1__StatsResponse *r =
        latticekv__v1__stats_response__unpack(NULL, last.len, last.buf);
    cr_assert_not_null(r);
    cr_assert_str_eq(r->backend, "cpu");
    cr_assert_eq(r->n_tiers, 1);
    cr_assert_eq(r->tiers[0]->blocks, 1);
    cr_assert_eq(r->tiers[0]->misses, 1);
    cr_assert_geq(r->batches, 1);
    cr_assert_eq(r->batched_vectors, 8);
    latticekv__v1__stats_response__free_unpacked(r, NULL);
}

Test(service, stats_render_every_row_from_one_snapshot)
{
    Latticekv__V1__Tensor t = make_tensor();
    put_tensor("a", &t);
    get_key("a", 1);
    get_key("zz", 0);
    lkv_stats st;
    lkv_service_get_stats(fx.svc, &st);
    cr_assert_eq(st.requests, 3);
    cr_assert_eq(st.errors, 1);
    cr_assert_eq(st.raw_bytes_in, sizeof tensor_data);
    cr_assert_eq(st.tier[0].blocks, 1);
    cr_assert_eq(st.tier[0].hits, 1);
    cr_assert_eq(st.tier[0].misses, 1);

    char text[2048];
    const size_t n = lkv_stats_render(&st, LKV_STATS_LOG, text, sizeof text);
    cr_assert_eq(n, strlen(text));
    cr_assert(strstr(text, "requests=3 errors=1 raw_bytes_in=4096 "), "%s", text);
    cr_assert(strstr(text, " host_blocks=1 host_hits=1 host_misses=1 "), "%s", text);
    /* A short buffer is cut, terminated, and the full length still reported. */
    char small[16];
    cr_assert_eq(lkv_stats_render(&st, LKV_STATS_LOG, small, sizeof small), n);
    cr_assert_eq(strlen(small), sizeof small - 1);

    /* The Prometheus text is generated from the same rows (metrics.c). */
    lkv_metrics_snapshot m;
    memset(&m, 0, sizeof m);
    m.stats = st;
    m.replies = lkv_service_replies(fx.svc);
    m.tiers[0].name = "host";
    m.tiers[0].st = st.tier[0];
    m.n_tiers = 1;
    char prom[16384];
    cr_assert_lt(lkv_metrics_render(&m, prom, sizeof prom), sizeof prom);
    cr_assert(strstr(prom,
                     "# TYPE latticekv_requests_total counter\n"
                     "latticekv_requests_total{method=\"latticekv.v1.KVStore/Put\",code=\"OK\"} 1\n"
                     "latticekv_requests_total{method=\"latticekv.v1.KVStore/Get\",code=\"OK\"} 1\n"
                     "latticekv_requests_total{method=\"latticekv.v1.KVStore/Get\","
                     "code=\"NOT_FOUND\"} 1\n"),
              "%s", prom);
    cr_assert(strstr(prom, "# TYPE latticekv_uptime_seconds gauge\n"), "%s", prom);
    cr_assert(strstr(prom, "latticekv_raw_bytes_total 4096\n"), "%s", prom);
    cr_assert(strstr(prom, "latticekv_tier_hits_total{tier=\"host\"} 1\n"), "%s", prom);
    cr_assert(strstr(prom, "latticekv_tier_capacity_bytes{tier=\"host\"} 1048576\n"), "%s", prom);

    /* The Stats reply carries the same rows. */
    Latticekv__V1__StatsRequest sq = LATTICEKV__V1__STATS_REQUEST__INIT;
    call(LKV_METHOD_STATS, &sq.base);
    Latticekv__V1__StatsResponse *r =
        latticekv__v1__stats_response__unpack(NULL, last.len, last.buf);
    cr_assert_not_null(r);
    cr_assert_eq(r->requests, st.requests + 1, "Stats counts itself");
    cr_assert_eq(r->errors, st.errors);
    cr_assert_eq(r->coded_bytes_out, st.coded_bytes_out);
    cr_assert_eq(r->batched_vectors, st.batched_vectors);
    cr_assert_eq(r->tiers[0]->used_bytes, st.tier[0].used_bytes);
    cr_assert_eq(r->tiers[0]->hits, st.tier[0].hits);
    latticekv__v1__stats_response__free_unpacked(r, NULL);
}
