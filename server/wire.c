/* SPDX-License-Identifier: Apache-2.0 */
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
 *
 * Every request is read here too, in place: the readers below return
 * pointers into the received buffer, so no request field is copied, and
 * they are the only code that reads network bytes (fuzzed by
 * tests/fuzz/fuzz_wire.c).
 */
#include <string.h>

#include "lkv_wire.h"

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

static size_t key_size(uint32_t field)
{
    return lkv_wire_varint_size((uint64_t)field << 3);
}

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
static size_t tensor_size(lkv_dtype dt, const uint64_t *shape, uint32_t ndim, size_t data_len)
{
    size_t n = varint_field_size(1, (uint64_t)dt);
    if (ndim)
        n += lkv_wire_len_field_size(2, shape_body(shape, ndim));
    return n + lkv_wire_len_field_size(3, data_len);
}

static uint8_t *put_tensor_head(uint8_t *p, lkv_dtype dt, const uint64_t *shape, uint32_t ndim,
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
    const size_t t = tensor_size(dt, shape, ndim, data_len);
    l->payload_off = key_size(1) + lkv_wire_varint_size(t) + (t - data_len);
    l->total = key_size(1) + lkv_wire_varint_size(t) + t +
               (tier ? lkv_wire_len_field_size(3, strlen(tier)) : 0);
}

void lkv_wire_tensor_reply_finish(uint8_t *buf, lkv_dtype dt, const uint64_t *shape, uint32_t ndim,
                                  size_t data_len, const char *tier)
{
    const size_t t = tensor_size(dt, shape, ndim, data_len);
    uint8_t *p = lkv_wire_put_len_field(buf, 1, t);
    p = put_tensor_head(p, dt, shape, ndim, data_len) + data_len;
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

/* ---- zero-copy request readers ----------------------------------------- */

typedef struct reader {
    const uint8_t *p, *end;
} reader;

static int get_varint(reader *r, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            return -1;
        const uint8_t b = *r->p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1; /* more than 10 bytes */
}

/* Reads a field key; 1 when one was read, 0 at the end, -1 when malformed. */
static int get_key(reader *r, uint32_t *field, unsigned *wt)
{
    if (r->p == r->end)
        return 0;
    uint64_t k;
    if (get_varint(r, &k) != 0 || (k >> 3) == 0 || (k >> 3) > UINT32_MAX)
        return -1;
    *field = (uint32_t)(k >> 3);
    *wt = (unsigned)(k & 7);
    return 1;
}

static int get_len(reader *r, const uint8_t **data, size_t *len)
{
    uint64_t n;
    if (get_varint(r, &n) != 0 || n > (uint64_t)(r->end - r->p))
        return -1;
    *data = r->p;
    *len = (size_t)n;
    r->p += n;
    return 0;
}

/* Skips a field of an unknown number (proto3 keeps going). */
static int skip(reader *r, unsigned wt)
{
    uint64_t v;
    const uint8_t *d;
    size_t n;
    switch (wt) {
    case 0: return get_varint(r, &v);
    case 1:
        if (r->end - r->p < 8)
            return -1;
        r->p += 8;
        return 0;
    case 2: return get_len(r, &d, &n);
    case 5:
        if (r->end - r->p < 4)
            return -1;
        r->p += 4;
        return 0;
    default: return -1; /* groups are not proto3 */
    }
}

/*
 * One field at a time: next_field() reads a varint or a length-delimited
 * value and skips the fixed-width types, so each reader is a switch over
 * field numbers. A known field with the wrong wire type makes the message
 * invalid.
 */
typedef struct field {
    uint32_t num;
    unsigned wt;
    uint64_t v;       /* wire type 0 */
    const uint8_t *d; /* wire type 2 */
    size_t len;
} field;

/* 1 when a field was read, 0 at the end, -1 when malformed. */
static int next_field(reader *r, field *f)
{
    const int k = get_key(r, &f->num, &f->wt);
    if (k != 1)
        return k;
    if (f->wt == WT_VARINT)
        return get_varint(r, &f->v) == 0 ? 1 : -1;
    if (f->wt == WT_LEN)
        return get_len(r, &f->d, &f->len) == 0 ? 1 : -1;
    return skip(r, f->wt) == 0 ? 1 : -1;
}

static int64_t enum_value(uint64_t v)
{
    return (int64_t)(int32_t)(uint32_t)v; /* proto3 enums are int32 */
}

static void shape_push(lkv_wire_tensor *t, uint64_t v)
{
    if (t->n_shape < LKV_MAX_NDIM)
        t->shape[t->n_shape] = v;
    t->n_shape++;
}

/* Tensor { dtype = 1; repeated shape = 2 (packed or not); data = 3 } */
static int parse_tensor(const uint8_t *p, size_t n, lkv_wire_tensor *t)
{
    reader r = {p, p + n};
    field f;
    int k;
    t->present = 1;
    while ((k = next_field(&r, &f)) == 1) {
        if (f.num == 1 && f.wt == WT_VARINT) {
            t->dtype = enum_value(f.v);
        } else if (f.num == 2 && f.wt == WT_VARINT) {
            shape_push(t, f.v);
        } else if (f.num == 2 && f.wt == WT_LEN) {
            reader pr = {f.d, f.d + f.len};
            uint64_t v;
            while (pr.p < pr.end) {
                if (get_varint(&pr, &v) != 0)
                    return -1;
                shape_push(t, v);
            }
        } else if (f.num == 3 && f.wt == WT_LEN) {
            t->data = f.d;
            t->data_len = f.len;
        } else if (f.num <= 3) {
            return -1;
        }
    }
    return k;
}

/* CodecParams { variant = 1; q_range = 2 } */
static int parse_params(const uint8_t *p, size_t n, lkv_wire_params *pr)
{
    reader r = {p, p + n};
    field f;
    int k;
    while ((k = next_field(&r, &f)) == 1) {
        if (f.num <= 2 && f.wt != WT_VARINT)
            return -1;
        if (f.num == 1)
            pr->variant = enum_value(f.v);
        else if (f.num == 2)
            pr->q_range = (uint32_t)f.v;
    }
    return k;
}

/* BlockKey { namespace = 1; key = 2 } */
static int parse_key(const uint8_t *p, size_t n, lkv_wire_key *key)
{
    reader r = {p, p + n};
    field f;
    int k;
    key->present = 1;
    while ((k = next_field(&r, &f)) == 1) {
        if (f.num <= 2 && f.wt != WT_LEN)
            return -1;
        if (f.num == 1) {
            key->ns = (const char *)f.d;
            key->ns_len = f.len;
        } else if (f.num == 2) {
            key->key = f.d;
            key->key_len = f.len;
        }
    }
    return k;
}

int lkv_wire_parse_put(const uint8_t *p, size_t n, lkv_wire_put *out)
{
    memset(out, 0, sizeof *out);
    out->key.ns = "";
    reader r = {p, p + n};
    field f;
    int k;
    while ((k = next_field(&r, &f)) == 1) {
        if (f.num <= 4 && f.wt != WT_LEN)
            return -1;
        int rc = 0;
        switch (f.num) {
        case 1: rc = parse_key(f.d, f.len, &out->key); break;
        case 2:
            /* Switching the oneof to tensor starts a fresh tensor. */
            if (out->payload != LKV_WIRE_PAYLOAD_TENSOR)
                memset(&out->tensor, 0, sizeof out->tensor);
            out->payload = LKV_WIRE_PAYLOAD_TENSOR;
            rc = parse_tensor(f.d, f.len, &out->tensor);
            break;
        case 3:
            out->payload = LKV_WIRE_PAYLOAD_CODED;
            out->coded = f.d;
            out->coded_len = f.len;
            break;
        case 4: rc = parse_params(f.d, f.len, &out->params); break;
        default: break; /* unknown fields are skipped */
        }
        if (rc < 0)
            return -1;
    }
    return k;
}

int lkv_wire_parse_compress(const uint8_t *p, size_t n, lkv_wire_tensor *tensor,
                            lkv_wire_params *params)
{
    memset(tensor, 0, sizeof *tensor);
    memset(params, 0, sizeof *params);
    reader r = {p, p + n};
    field f;
    int k;
    while ((k = next_field(&r, &f)) == 1) {
        if (f.num <= 2 && f.wt != WT_LEN)
            return -1;
        if (f.num == 1 && parse_tensor(f.d, f.len, tensor) < 0)
            return -1;
        if (f.num == 2 && parse_params(f.d, f.len, params) < 0)
            return -1;
    }
    return k;
}

/* ---- the other requests ------------------------------------------------ */

int lkv_wire_parse_decompress(const uint8_t *p, size_t n, lkv_wire_decompress *out)
{
    memset(out, 0, sizeof *out);
    out->coded = p; /* an absent coded field is empty, not NULL */
    reader r = {p, p + n};
    field f;
    int k;
    while ((k = next_field(&r, &f)) == 1) {
        if (f.num == 1 && f.wt == WT_LEN) {
            out->coded = f.d;
            out->coded_len = f.len;
        } else if (f.num == 2 && f.wt == WT_VARINT) {
            out->out_dtype = enum_value(f.v);
        } else if (f.num <= 2) {
            return -1;
        }
    }
    return k;
}

int lkv_wire_parse_get(const uint8_t *p, size_t n, lkv_wire_get *out)
{
    memset(out, 0, sizeof *out);
    out->key.ns = "";
    reader r = {p, p + n};
    field f;
    int k;
    while ((k = next_field(&r, &f)) == 1) {
        if (f.num == 1 && f.wt == WT_LEN) {
            if (parse_key(f.d, f.len, &out->key) < 0)
                return -1;
        } else if (f.num == 2 && f.wt == WT_VARINT) {
            out->want_coded = f.v != 0;
        } else if (f.num == 3 && f.wt == WT_VARINT) {
            out->out_dtype = enum_value(f.v);
        } else if (f.num <= 3) {
            return -1;
        }
    }
    return k;
}

int lkv_wire_parse_delete(const uint8_t *p, size_t n, lkv_wire_key *key)
{
    memset(key, 0, sizeof *key);
    key->ns = "";
    reader r = {p, p + n};
    field f;
    int k;
    while ((k = next_field(&r, &f)) == 1) {
        if (f.num == 1 && (f.wt != WT_LEN || parse_key(f.d, f.len, key) < 0))
            return -1;
    }
    return k;
}

int lkv_wire_parse_lookup(const uint8_t *p, size_t n, lkv_wire_lookup *out)
{
    memset(out, 0, sizeof *out);
    out->ns = "";
    out->msg = p;
    out->msg_len = n;
    reader r = {p, p + n};
    field f;
    int k;
    while ((k = next_field(&r, &f)) == 1) {
        if (f.num <= 2 && f.wt != WT_LEN)
            return -1;
        if (f.num == 1) {
            out->ns = (const char *)f.d;
            out->ns_len = f.len;
        } else if (f.num == 2) {
            out->n_keys++;
        }
    }
    return k;
}

int lkv_wire_lookup_next(const lkv_wire_lookup *l, size_t *pos, const uint8_t **key, size_t *len)
{
    reader r = {l->msg + *pos, l->msg + l->msg_len};
    field f;
    while (next_field(&r, &f) == 1) {
        if (f.num == 2) {
            *key = f.d;
            *len = f.len;
            *pos = (size_t)(r.p - l->msg);
            return 1;
        }
    }
    *pos = l->msg_len;
    return 0;
}

int lkv_wire_parse_health(const uint8_t *p, size_t n, const char **service, size_t *len)
{
    *service = "";
    *len = 0;
    reader r = {p, p + n};
    field f;
    int k;
    while ((k = next_field(&r, &f)) == 1) {
        if (f.num == 1 && f.wt != WT_LEN)
            return -1;
        if (f.num == 1) {
            *service = (const char *)f.d;
            *len = f.len;
        }
    }
    return k;
}

int lkv_wire_parse_empty(const uint8_t *p, size_t n)
{
    reader r = {p, p + n};
    field f;
    int k;
    while ((k = next_field(&r, &f)) == 1) {
    }
    return k;
}
