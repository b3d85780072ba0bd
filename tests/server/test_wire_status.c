/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_wire_status.c - the one status table, and reply layouts written by
 * wire.c checked against protobuf-c's own unpacker.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "latticekv/v1/latticekv.pb-c.h"
#include "lkv_server.h"

Test(status, every_code_maps_as_service_md_section_2_says)
{
    cr_assert_eq(lkv_status_to_grpc(LKV_OK), LKV_GRPC_OK);
    const lkv_status invalid[] = {LKV_ERR_VARIANT,       LKV_ERR_Q_RANGE,         LKV_ERR_HEAD_DIM,
                                  LKV_ERR_DTYPE,         LKV_ERR_SHAPE,           LKV_ERR_NONFINITE,
                                  LKV_ERR_NORM_OVERFLOW, LKV_ERR_INVALID_ARGUMENT};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
        cr_assert_eq(lkv_status_to_grpc(invalid[i]), LKV_GRPC_INVALID_ARGUMENT, "%s",
                     lkv_status_name(invalid[i]));
    const lkv_status loss[] = {LKV_ERR_TRUNCATED, LKV_ERR_MAGIC, LKV_ERR_VERSION, LKV_ERR_CHECKSUM,
                               LKV_ERR_CORRUPT};
    for (size_t i = 0; i < sizeof loss / sizeof loss[0]; i++)
        cr_assert_eq(lkv_status_to_grpc(loss[i]), LKV_GRPC_DATA_LOSS, "%s",
                     lkv_status_name(loss[i]));
    cr_assert_eq(lkv_status_to_grpc(LKV_ERR_NOT_FOUND), LKV_GRPC_NOT_FOUND);
    cr_assert_eq(lkv_status_to_grpc(LKV_ERR_LIMIT), LKV_GRPC_RESOURCE_EXHAUSTED);
    cr_assert_eq(lkv_status_to_grpc(LKV_ERR_NOMEM), LKV_GRPC_RESOURCE_EXHAUSTED);
    cr_assert_eq(lkv_status_to_grpc(LKV_ERR_UNAVAILABLE), LKV_GRPC_UNAVAILABLE);
    cr_assert_eq(lkv_status_to_grpc(LKV_ERR_AUTH), LKV_GRPC_UNAUTHENTICATED);
    cr_assert_eq(lkv_status_to_grpc(LKV_ERR_PERMISSION), LKV_GRPC_PERMISSION_DENIED);
    for (int s = 1; s < LKV_STATUS_COUNT; s++)
        cr_assert_neq(lkv_status_to_grpc((lkv_status)s), LKV_GRPC_OK, "%s maps to OK",
                      lkv_status_name((lkv_status)s));
    cr_assert_eq(lkv_status_to_grpc((lkv_status)999), LKV_GRPC_INTERNAL);
    cr_assert_str_eq(lkv_grpc_code_name(LKV_GRPC_DATA_LOSS), "DATA_LOSS");
}

Test(wire, varints_match_the_protobuf_encoding)
{
    uint8_t buf[16];
    const uint64_t v[] = {0, 1, 127, 128, 300, 16383, 16384, UINT32_MAX, UINT64_MAX};
    const size_t n[] = {1, 1, 1, 2, 2, 2, 3, 5, 10};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        cr_assert_eq(lkv_wire_varint_size(v[i]), n[i]);
        cr_assert_eq((size_t)(lkv_wire_put_varint(buf, v[i]) - buf), n[i]);
    }
    lkv_wire_put_varint(buf, 300);
    cr_assert(buf[0] == 0xac && buf[1] == 0x02);
}

Test(wire, compress_reply_unpacks_with_protobuf_c)
{
    const size_t sizes[] = {0, 5, 127, 128, 40000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        const size_t coded = sizes[k];
        lkv_wire_layout l;
        lkv_wire_compress_plan(coded, 123456, 848, &l);
        uint8_t *buf = malloc(l.total + 1);
        for (size_t i = 0; i < coded; i++)
            buf[l.payload_off + i] = (uint8_t)(i * 7);
        lkv_wire_compress_finish(buf, coded, 123456, 848);
        Latticekv__V1__CompressResponse *r =
            latticekv__v1__compress_response__unpack(NULL, l.total, buf);
        cr_assert_not_null(r, "size %zu", coded);
        cr_assert_eq(r->coded.len, coded);
        for (size_t i = 0; i < coded; i++)
            cr_assert_eq(r->coded.data[i], (uint8_t)(i * 7));
        cr_assert_eq(r->raw_bytes, 123456);
        cr_assert_eq(r->coded_bytes, coded);
        cr_assert_eq(r->bits_per_vector, 848);
        if (coded == 0)
            goto next; /* we write an empty `coded` that proto3 would omit: still valid */
        /* Same bytes as protobuf-c would write. */
        const size_t n = latticekv__v1__compress_response__get_packed_size(r);
        cr_assert_eq(n, l.total);
        uint8_t *ref = malloc(n + 1);
        latticekv__v1__compress_response__pack(r, ref);
        cr_assert_eq(memcmp(ref, buf, n), 0);
        free(ref);
    next:
        latticekv__v1__compress_response__free_unpacked(r, NULL);
        free(buf);
    }
}

Test(wire, tensor_replies_unpack_as_decompress_and_get_responses)
{
    const uint64_t shape[] = {3, 200, 128};
    const size_t data_len = 3 * 200 * 128 * 2;
    lkv_wire_layout l;
    lkv_wire_tensor_reply_plan(LKV_DTYPE_FP16, shape, 3, data_len, NULL, &l);
    uint8_t *buf = malloc(l.total);
    memset(buf + l.payload_off, 0x5a, data_len);
    lkv_wire_tensor_reply_finish(buf, LKV_DTYPE_FP16, shape, 3, data_len, NULL);
    Latticekv__V1__DecompressResponse *d =
        latticekv__v1__decompress_response__unpack(NULL, l.total, buf);
    cr_assert_not_null(d);
    cr_assert_eq(d->tensor->dtype, LATTICEKV__V1__DTYPE__DTYPE_FP16);
    cr_assert_eq(d->tensor->n_shape, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(d->tensor->shape[i], shape[i]);
    cr_assert_eq(d->tensor->data.len, data_len);
    cr_assert_eq(d->tensor->data.data[data_len - 1], 0x5a);
    latticekv__v1__decompress_response__free_unpacked(d, NULL);
    free(buf);

    lkv_wire_tensor_reply_plan(LKV_DTYPE_BF16, shape, 2, 200 * 3 * 2, "host", &l);
    buf = malloc(l.total);
    memset(buf + l.payload_off, 1, 200 * 3 * 2);
    lkv_wire_tensor_reply_finish(buf, LKV_DTYPE_BF16, shape, 2, 200 * 3 * 2, "host");
    Latticekv__V1__GetResponse *g = latticekv__v1__get_response__unpack(NULL, l.total, buf);
    cr_assert_not_null(g);
    cr_assert_eq(g->payload_case, LATTICEKV__V1__GET_RESPONSE__PAYLOAD_TENSOR);
    cr_assert_str_eq(g->tier, "host");
    cr_assert_eq(g->tensor->n_shape, 2);
    cr_assert_eq(g->tensor->data.len, 1200);
    latticekv__v1__get_response__free_unpacked(g, NULL);
    free(buf);
}

Test(wire, coded_get_reply_unpacks)
{
    lkv_wire_layout l;
    lkv_wire_coded_reply_plan(300, "host", &l);
    uint8_t *buf = malloc(l.total);
    memset(buf + l.payload_off, 0xee, 300);
    lkv_wire_coded_reply_finish(buf, 300, "host");
    Latticekv__V1__GetResponse *g = latticekv__v1__get_response__unpack(NULL, l.total, buf);
    cr_assert_not_null(g);
    cr_assert_eq(g->payload_case, LATTICEKV__V1__GET_RESPONSE__PAYLOAD_CODED);
    cr_assert_eq(g->coded.len, 300);
    cr_assert_eq(g->coded.data[299], 0xee);
    cr_assert_str_eq(g->tier, "host");
    latticekv__v1__get_response__free_unpacked(g, NULL);
    free(buf);
}

/* Packs a PutRequest with protobuf-c; the zero-copy reader must agree. */
Test(wire, put_reader_agrees_with_protobuf_c)
{
    uint64_t shape[] = {2, 4, 128};
    uint8_t data[64];
    for (int i = 0; i < 64; i++)
        data[i] = (uint8_t)i;
    Latticekv__V1__Tensor t = LATTICEKV__V1__TENSOR__INIT;
    t.dtype = LATTICEKV__V1__DTYPE__DTYPE_FP16;
    t.n_shape = 3;
    t.shape = shape;
    t.data.data = data;
    t.data.len = sizeof data;
    Latticekv__V1__BlockKey k = LATTICEKV__V1__BLOCK_KEY__INIT;
    k.namespace_ = "tenant-a";
    k.key.data = (uint8_t *)"\x00\x01key";
    k.key.len = 5;
    Latticekv__V1__CodecParams p = LATTICEKV__V1__CODEC_PARAMS__INIT;
    p.variant = LATTICEKV__V1__VARIANT__VARIANT_D4;
    p.q_range = 152;
    p.profile = 2;
    Latticekv__V1__PutRequest q = LATTICEKV__V1__PUT_REQUEST__INIT;
    q.key = &k;
    q.params = &p;
    q.payload_case = LATTICEKV__V1__PUT_REQUEST__PAYLOAD_TENSOR;
    q.tensor = &t;
    uint8_t buf[512];
    const size_t n = latticekv__v1__put_request__pack(&q, buf);
    lkv_wire_put w;
    cr_assert_eq(lkv_wire_parse_put(buf, n, &w), 0);
    cr_assert(w.key.present);
    cr_assert_eq(w.key.ns_len, 8);
    cr_assert_eq(memcmp(w.key.ns, "tenant-a", 8), 0);
    cr_assert_eq(w.key.key_len, 5);
    cr_assert_eq(memcmp(w.key.key, "\x00\x01key", 5), 0);
    cr_assert_eq(w.payload, LKV_WIRE_PAYLOAD_TENSOR);
    cr_assert_eq(w.tensor.dtype, 2);
    cr_assert_eq(w.tensor.n_shape, 3);
    cr_assert_eq(w.tensor.shape[2], 128);
    cr_assert_eq(w.tensor.data_len, 64);
    cr_assert(w.tensor.data > buf && w.tensor.data < buf + n, "points into the message");
    cr_assert_eq(memcmp(w.tensor.data, data, 64), 0);
    cr_assert_eq(w.params.variant, 2);
    cr_assert_eq(w.params.q_range, 152);
    cr_assert_eq(w.params.profile, 2);

    /* Coded payload, no params, plus an unknown field (99, varint) that must be skipped. */
    q.params = NULL;
    q.payload_case = LATTICEKV__V1__PUT_REQUEST__PAYLOAD_CODED;
    q.coded.data = data;
    q.coded.len = 10;
    size_t m = latticekv__v1__put_request__pack(&q, buf);
    buf[m++] = ((99 << 3) & 0x7f) | 0x80; /* key 99<<3|0 as a 2-byte varint */
    buf[m++] = (99 << 3) >> 7;
    buf[m++] = 0x05;
    cr_assert_eq(lkv_wire_parse_put(buf, m, &w), 0);
    cr_assert_eq(w.payload, LKV_WIRE_PAYLOAD_CODED);
    cr_assert_eq(w.coded_len, 10);
    cr_assert_eq(w.params.q_range, 0);
    cr_assert_eq(w.params.variant, 0);
    cr_assert_eq(w.params.profile, 0);
}

Test(wire, readers_accept_unpacked_shape_and_reject_malformed_bytes)
{
    /* CompressRequest { tensor { dtype 1, shape 3 (unpacked), shape 128 (unpacked), data "ab" } }
     */
    const uint8_t msg[] = {0x0a, 0x0b, 0x08, 0x01, 0x10, 0x03, 0x10,
                           0x80, 0x01, 0x1a, 0x02, 'a',  'b'};
    lkv_wire_tensor t;
    lkv_wire_params p;
    cr_assert_eq(lkv_wire_parse_compress(msg, sizeof msg, &t, &p), 0);
    cr_assert(t.present);
    cr_assert_eq(t.n_shape, 2);
    cr_assert_eq(t.shape[0], 3);
    cr_assert_eq(t.shape[1], 128);
    cr_assert_eq(t.data_len, 2);
    /* Every truncation of it is malformed, except the empty message. */
    for (size_t n = 1; n < sizeof msg; n++)
        cr_assert_eq(lkv_wire_parse_compress(msg, n, &t, &p), -1, "prefix of %zu bytes", n);
    cr_assert_eq(lkv_wire_parse_compress(msg, 0, &t, &p), 0);
    cr_assert(!t.present);
    /* A known field with the wrong wire type; an 11-byte varint; a group. */
    const uint8_t wt[] = {0x0d, 0, 0, 0, 0};
    cr_assert_eq(lkv_wire_parse_compress(wt, sizeof wt, &t, &p), -1);
    const uint8_t longv[] = {0x10, 0xff, 0xff, 0xff, 0xff, 0xff,
                             0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    lkv_wire_put w;
    cr_assert_eq(lkv_wire_parse_put(longv, sizeof longv, &w), -1);
    const uint8_t group[] = {0x2b};
    cr_assert_eq(lkv_wire_parse_put(group, sizeof group, &w), -1);
}

Test(wire, small_request_readers_agree_with_protobuf_c)
{
    uint8_t buf[256];
    Latticekv__V1__BlockKey k = LATTICEKV__V1__BLOCK_KEY__INIT;
    k.namespace_ = "tenant-b";
    k.key.data = (uint8_t *)"\x00k\xff";
    k.key.len = 3;

    Latticekv__V1__GetRequest g = LATTICEKV__V1__GET_REQUEST__INIT;
    g.key = &k;
    g.want_coded = 1;
    g.out_dtype = LATTICEKV__V1__DTYPE__DTYPE_BF16;
    size_t n = latticekv__v1__get_request__pack(&g, buf);
    lkv_wire_get wg;
    cr_assert_eq(lkv_wire_parse_get(buf, n, &wg), 0);
    cr_assert(wg.key.present && wg.want_coded);
    cr_assert_eq(wg.out_dtype, 1);
    cr_assert_eq(wg.key.ns_len, 8);
    cr_assert_eq(memcmp(wg.key.ns, "tenant-b", 8), 0);
    cr_assert_eq(wg.key.key_len, 3);
    cr_assert_eq(memcmp(wg.key.key, "\x00k\xff", 3), 0);
    /* Cut inside the key (a length past the end) or after a field's tag. */
    cr_assert_eq(lkv_wire_parse_get(buf, 1, &wg), -1);
    cr_assert_eq(lkv_wire_parse_get(buf, 5, &wg), -1);
    cr_assert_eq(lkv_wire_parse_get(buf, n - 1, &wg), -1);

    Latticekv__V1__DeleteRequest del = LATTICEKV__V1__DELETE_REQUEST__INIT;
    del.key = &k;
    n = latticekv__v1__delete_request__pack(&del, buf);
    lkv_wire_key wk;
    cr_assert_eq(lkv_wire_parse_delete(buf, n, &wk), 0);
    cr_assert(wk.present);
    cr_assert_eq(wk.key_len, 3);
    cr_assert_eq(lkv_wire_parse_delete(buf, 0, &wk), 0);
    cr_assert(!wk.present, "an empty DeleteRequest has no key");

    ProtobufCBinaryData keys[3] = {{1, (uint8_t *)"a"}, {0, NULL}, {2, (uint8_t *)"bc"}};
    Latticekv__V1__LookupRequest lq = LATTICEKV__V1__LOOKUP_REQUEST__INIT;
    lq.namespace_ = "n";
    lq.n_keys = 3;
    lq.keys = keys;
    n = latticekv__v1__lookup_request__pack(&lq, buf);
    lkv_wire_lookup wl;
    cr_assert_eq(lkv_wire_parse_lookup(buf, n, &wl), 0);
    cr_assert_eq(wl.n_keys, 3);
    cr_assert_eq(wl.ns_len, 1);
    size_t pos = 0, len;
    const uint8_t *key;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(lkv_wire_lookup_next(&wl, &pos, &key, &len), 1);
        cr_assert_eq(len, keys[i].len, "key %d", i);
        cr_assert(len == 0 || memcmp(key, keys[i].data, len) == 0, "key %d", i);
    }
    cr_assert_eq(lkv_wire_lookup_next(&wl, &pos, &key, &len), 0);

    uint8_t coded[5] = {1, 2, 3, 4, 5};
    Latticekv__V1__DecompressRequest dq = LATTICEKV__V1__DECOMPRESS_REQUEST__INIT;
    dq.coded.data = coded;
    dq.coded.len = sizeof coded;
    dq.out_dtype = LATTICEKV__V1__DTYPE__DTYPE_FP32;
    n = latticekv__v1__decompress_request__pack(&dq, buf);
    lkv_wire_decompress wd;
    cr_assert_eq(lkv_wire_parse_decompress(buf, n, &wd), 0);
    cr_assert_eq(wd.coded_len, 5);
    cr_assert(wd.coded > buf && wd.coded < buf + n, "points into the message");
    cr_assert_eq(wd.out_dtype, 3);

    /* HealthCheckRequest { service = "latticekv.v1.Admin" }, then a StatsRequest
     * with an unknown field that must be skipped, then malformed ones. */
    const uint8_t hq[] = {0x0a, 18,  'l', 'a', 't', 't', 'i', 'c', 'e', 'k',
                          'v',  '.', 'v', '1', '.', 'A', 'd', 'm', 'i', 'n'};
    const char *svc;
    cr_assert_eq(lkv_wire_parse_health(hq, sizeof hq, &svc, &len), 0);
    cr_assert_eq(len, 18);
    cr_assert_eq(memcmp(svc, "latticekv.v1.Admin", 18), 0);
    const uint8_t hq_bad[] = {0x08, 0x01}; /* service as a varint */
    cr_assert_eq(lkv_wire_parse_health(hq_bad, sizeof hq_bad, &svc, &len), -1);
    const uint8_t stats[] = {0x08, 0x96, 0x01};
    cr_assert_eq(lkv_wire_parse_empty(stats, sizeof stats), 0);
    cr_assert_eq(lkv_wire_parse_empty(stats, 2), -1);
    const uint8_t zero_field[] = {0x00, 0x01};
    cr_assert_eq(lkv_wire_parse_empty(zero_field, sizeof zero_field), -1);
}

Test(status, the_daemons_own_statuses_follow_the_codecs)
{
    /* The codec never returns them, so they are the daemon's, numbered after its list. */
    cr_assert_eq(LKV_ERR_NOT_FOUND, LKV_STATUS_COUNT);
    cr_assert_eq(LKV_SERVER_STATUS_END, LKV_STATUS_COUNT + 3);
    for (int s = LKV_STATUS_COUNT; s < LKV_SERVER_STATUS_END; s++)
        cr_assert_neq(lkv_status_to_grpc(s), LKV_GRPC_OK, "daemon status %d maps to OK", s);
    cr_assert_str_eq(lkv_server_status_message(LKV_ERR_PERMISSION), "permission denied");
    cr_assert_str_eq(lkv_server_status_message(LKV_ERR_LIMIT), lkv_status_message(LKV_ERR_LIMIT));
    cr_assert_str_eq(lkv_server_status_message(LKV_SERVER_STATUS_END), "unknown status");
    cr_assert_eq(lkv_status_to_grpc(LKV_SERVER_STATUS_END), LKV_GRPC_INTERNAL);
}
