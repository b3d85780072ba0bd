/*
 * wire.c - protobuf wire format written straight into reply buffers.
 *
 * Design note. The replies that carry a large payload (a coded container or
 * a decoded tensor) are laid out by hand: plan() computes the message size
 * and where the payload starts, the service allocates exactly that buffer,
 * a codec worker writes the payload in place, and finish() fills in the few
 * bytes around it. The buffer becomes the gRPC slice as is, so the payload
 * is written once and never copied (protobuf-c's pack would copy it). Only
 * the fields of latticekv.proto that these replies use are written, in
 * field-number order; zero scalars are omitted as proto3 does. The unit
 * tests check every layout against protobuf-c's own unpacker.
 */
#include <string.h>

#include "lkv_server.h"

enum { WT_VARINT = 0, WT_LEN = 2 };

size_t lkv_wire_varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

uint8_t *lkv_wire_put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static size_t key_size(uint32_t field) { return lkv_wire_varint_size((uint64_t)field << 3); }

static uint8_t *put_key(uint8_t *p, uint32_t field, unsigned wt)
{
    return lkv_wire_put_varint(p, ((uint64_t)field << 3) | wt);
}

size_t lkv_wire_len_field_size(uint32_t field, size_t len)
{
    return key_size(field) + lkv_wire_varint_size(len) + len;
}

uint8_t *lkv_wire_put_len_field(uint8_t *p, uint32_t field, size_t len)
{
    p = put_key(p, field, WT_LEN);
    return lkv_wire_put_varint(p, len);
}

static size_t varint_field_size(uint32_t field, uint64_t v)
{
    return v ? key_size(field) + lkv_wire_varint_size(v) : 0;
}

static uint8_t *put_varint_field(uint8_t *p, uint32_t field, uint64_t v)
{
    if (!v)
        return p;
    p = put_key(p, field, WT_VARINT);
    return lkv_wire_put_varint(p, v);
}

static size_t shape_body(const uint64_t *shape, uint32_t ndim)
{
    size_t n = 0;
    for (uint32_t i = 0; i < ndim; i++)
        n += lkv_wire_varint_size(shape[i]);
    return n;
}

/* Tensor { DType dtype = 1; repeated uint64 shape = 2 (packed); bytes data = 3; } */
size_t lkv_wire_tensor_size(lkv_dtype dt, const uint64_t *shape, uint32_t ndim, size_t data_len)
{
    size_t n = varint_field_size(1, (uint64_t)dt);
    if (ndim)
        n += lkv_wire_len_field_size(2, shape_body(shape, ndim));
    return n + lkv_wire_len_field_size(3, data_len);
}

uint8_t *lkv_wire_put_tensor_head(uint8_t *p, lkv_dtype dt, const uint64_t *shape, uint32_t ndim,
                                  size_t data_len)
{
    p = put_varint_field(p, 1, (uint64_t)dt);
    if (ndim) {
        p = lkv_wire_put_len_field(p, 2, shape_body(shape, ndim));
        for (uint32_t i = 0; i < ndim; i++)
            p = lkv_wire_put_varint(p, shape[i]);
    }
    return lkv_wire_put_len_field(p, 3, data_len);
}

/* CompressResponse { bytes coded = 1; uint64 raw_bytes = 2; uint64 coded_bytes = 3;
 *                    uint32 bits_per_vector = 4; } */
void lkv_wire_compress_plan(size_t coded_len, uint64_t raw, uint32_t bits, lkv_wire_layout *l)
{
    l->payload_off = key_size(1) + lkv_wire_varint_size(coded_len);
    l->total = l->payload_off + coded_len + varint_field_size(2, raw) +
               varint_field_size(3, coded_len) + varint_field_size(4, bits);
}

void lkv_wire_compress_finish(uint8_t *buf, size_t coded_len, uint64_t raw, uint32_t bits)
{
    uint8_t *p = lkv_wire_put_len_field(buf, 1, coded_len) + coded_len;
    p = put_varint_field(p, 2, raw);
    p = put_varint_field(p, 3, coded_len);
    put_varint_field(p, 4, bits);
}

/* DecompressResponse { Tensor tensor = 1; } and GetResponse { Tensor tensor = 1;
 * string tier = 3; } share this layout. */
void lkv_wire_tensor_reply_plan(lkv_dtype dt, const uint64_t *shape, uint32_t ndim, size_t data_len,
                                const char *tier, lkv_wire_layout *l)
{
    const size_t t = lkv_wire_tensor_size(dt, shape, ndim, data_len);
    l->payload_off = key_size(1) + lkv_wire_varint_size(t) + (t - data_len);
    l->total = key_size(1) + lkv_wire_varint_size(t) + t +
               (tier ? lkv_wire_len_field_size(3, strlen(tier)) : 0);
}

void lkv_wire_tensor_reply_finish(uint8_t *buf, lkv_dtype dt, const uint64_t *shape, uint32_t ndim,
                                  size_t data_len, const char *tier)
{
    const size_t t = lkv_wire_tensor_size(dt, shape, ndim, data_len);
    uint8_t *p = lkv_wire_put_len_field(buf, 1, t);
    p = lkv_wire_put_tensor_head(p, dt, shape, ndim, data_len) + data_len;
    if (tier) {
        const size_t n = strlen(tier);
        p = lkv_wire_put_len_field(p, 3, n);
        memcpy(p, tier, n);
    }
}

/* GetResponse { bytes coded = 2; string tier = 3; } */
void lkv_wire_coded_reply_plan(size_t coded_len, const char *tier, lkv_wire_layout *l)
{
    l->payload_off = key_size(2) + lkv_wire_varint_size(coded_len);
    l->total = l->payload_off + coded_len + (tier ? lkv_wire_len_field_size(3, strlen(tier)) : 0);
}

void lkv_wire_coded_reply_finish(uint8_t *buf, size_t coded_len, const char *tier)
{
    uint8_t *p = lkv_wire_put_len_field(buf, 2, coded_len) + coded_len;
    if (tier) {
        const size_t n = strlen(tier);
        p = lkv_wire_put_len_field(p, 3, n);
        memcpy(p, tier, n);
    }
}
