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
#include <stddef.h>
#include <string.h>

#include "lkv_wire.h"

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
    p = put_key(p, field, LKV_WIRE_LEN);
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
    p = put_key(p, field, LKV_WIRE_VARINT);
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

static int get_varint(lkv_wire_reader *r, uint64_t *v)
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

int lkv_wire_next(lkv_wire_reader *r, lkv_wire_field *f)
{
    if (r->p == r->end)
        return 0;
    uint64_t k, n;
    if (get_varint(r, &k) != 0 || (k >> 3) == 0 || (k >> 3) > UINT32_MAX)
        return -1;
    f->num = (uint32_t)(k >> 3);
    f->wt = (unsigned)(k & 7);
    switch (f->wt) {
    case LKV_WIRE_VARINT: return get_varint(r, &f->v) == 0 ? 1 : -1;
    case LKV_WIRE_LEN:
        if (get_varint(r, &n) != 0 || n > (uint64_t)(r->end - r->p))
            return -1;
        f->data = r->p;
        f->len = (size_t)n;
        r->p += n;
        return 1;
    case 1: /* fixed64 and fixed32 are skipped: no request has one */
    case 5: n = f->wt == 1 ? 8 : 4; break;
    default: return -1; /* groups are not proto3 */
    }
    if ((size_t)(r->end - r->p) < n)
        return -1;
    r->p += n;
    return 1;
}

/*
 * Each request message is a table of its known fields: number, kind and
 * where its value goes in the reader's output struct. One walk (read_msg)
 * applies the proto3 rules to every message: unknown fields are skipped, a
 * known field with the wrong wire type makes the message invalid, the last
 * scalar wins, repeated sub-messages merge, and a field of a oneof that
 * switches the oneof starts its sub-message afresh.
 */
enum {
    K_ENUM,  /* int64_t: proto3 enums are int32 on the wire */
    K_U32,   /* uint32_t */
    K_BOOL,  /* int */
    K_BYTES, /* pointer into the message, and its length at len_off */
    K_COUNT, /* size_t: how many times the field occurs */
    K_MSG,   /* a sub-message read by its own table */
    K_SHAPE, /* Tensor.shape: repeated uint64, packed or not */
};

typedef struct msg_spec msg_spec;

typedef struct field_spec {
    uint32_t num;
    int kind;
    size_t off;          /* the member its value goes to */
    size_t len_off;      /* K_BYTES: the member its length goes to */
    const msg_spec *sub; /* K_MSG */
    int oneof;           /* the oneof case this field selects, or 0 */
} field_spec;

struct msg_spec {
    const field_spec *fields;
    size_t n_fields;
    size_t size;
    int present_off; /* an int set to 1 when the message is read, or -1 */
    int oneof_off;   /* the int holding the oneof's case, or -1 */
};

#define N_FIELDS(a) (sizeof(a) / sizeof(a)[0])

static int read_msg(const uint8_t *p, size_t n, const msg_spec *m, void *out);

static void shape_push(lkv_wire_tensor *t, uint64_t v)
{
    if (t->n_shape < LKV_MAX_NDIM)
        t->shape[t->n_shape] = v;
    t->n_shape++;
}

static int read_shape(const lkv_wire_field *f, lkv_wire_tensor *t)
{
    if (f->wt == LKV_WIRE_VARINT) {
        shape_push(t, f->v);
        return 0;
    }
    lkv_wire_reader r = {f->data, f->data + f->len};
    uint64_t v;
    while (r.p < r.end) {
        if (get_varint(&r, &v) != 0)
            return -1;
        shape_push(t, v);
    }
    return 0;
}

/* read_field and read_msg recurse once per sub-message table (K_MSG), and no
 * table nests itself: the depth is fixed by the message tables below (a
 * request and its sub-messages), never by the request bytes. */
static int read_field( // NOLINT(misc-no-recursion)
    const field_spec *s, const lkv_wire_field *f, uint8_t *base, int oneof_off)
{
    uint8_t *at = base + s->off;
    if (s->kind == K_SHAPE)
        return f->wt == LKV_WIRE_VARINT || f->wt == LKV_WIRE_LEN
                   ? read_shape(f, (lkv_wire_tensor *)base)
                   : -1;
    if (f->wt != (s->kind <= K_BOOL ? LKV_WIRE_VARINT : LKV_WIRE_LEN))
        return -1;
    if (s->oneof) {
        int *which = (int *)(base + oneof_off);
        if (s->kind == K_MSG && *which != s->oneof)
            memset(at, 0, s->sub->size);
        *which = s->oneof;
    }
    switch (s->kind) {
    case K_ENUM: *(int64_t *)at = (int64_t)(int32_t)(uint32_t)f->v; return 0;
    case K_U32: *(uint32_t *)at = (uint32_t)f->v; return 0;
    case K_BOOL: *(int *)at = f->v != 0; return 0;
    case K_BYTES:
        /* The member is a const char * or a const uint8_t *: same representation. */
        memcpy(at, &f->data, sizeof f->data);
        *(size_t *)(base + s->len_off) = f->len;
        return 0;
    case K_COUNT: (*(size_t *)at)++; return 0;
    default: return read_msg(f->data, f->len, s->sub, at);
    }
}

/* 0, or -1 when the bytes are not a valid message of m's type. */
static int read_msg( // NOLINT(misc-no-recursion)
    const uint8_t *p, size_t n, const msg_spec *m, void *out)
{
    lkv_wire_reader r = {p, p + n};
    lkv_wire_field f;
    int k;
    if (m->present_off >= 0)
        *(int *)((uint8_t *)out + m->present_off) = 1;
    while ((k = lkv_wire_next(&r, &f)) == 1)
        for (size_t i = 0; i < m->n_fields; i++)
            if (m->fields[i].num == f.num) {
                if (read_field(&m->fields[i], &f, out, m->oneof_off) < 0)
                    return -1;
                break;
            }
    return k;
}

/* Tensor { dtype = 1; repeated shape = 2; data = 3 } */
static const field_spec tensor_fields[] = {
    {1, K_ENUM, offsetof(lkv_wire_tensor, dtype), 0, NULL, 0},
    {2, K_SHAPE, offsetof(lkv_wire_tensor, shape), 0, NULL, 0},
    {3, K_BYTES, offsetof(lkv_wire_tensor, data), offsetof(lkv_wire_tensor, data_len), NULL, 0},
};
static const msg_spec tensor_msg = {tensor_fields, N_FIELDS(tensor_fields), sizeof(lkv_wire_tensor),
                                    offsetof(lkv_wire_tensor, present), -1};

/* CodecParams { variant = 1; q_range = 2; profile = 3 } */
static const field_spec params_fields[] = {
    {1, K_ENUM, offsetof(lkv_wire_params, variant), 0, NULL, 0},
    {2, K_U32, offsetof(lkv_wire_params, q_range), 0, NULL, 0},
    {3, K_U32, offsetof(lkv_wire_params, profile), 0, NULL, 0},
};
static const msg_spec params_msg = {params_fields, N_FIELDS(params_fields), sizeof(lkv_wire_params),
                                    -1, -1};

/* BlockKey { namespace = 1; key = 2 } */
static const field_spec key_fields[] = {
    {1, K_BYTES, offsetof(lkv_wire_key, ns), offsetof(lkv_wire_key, ns_len), NULL, 0},
    {2, K_BYTES, offsetof(lkv_wire_key, key), offsetof(lkv_wire_key, key_len), NULL, 0},
};
static const msg_spec key_msg = {key_fields, N_FIELDS(key_fields), sizeof(lkv_wire_key),
                                 offsetof(lkv_wire_key, present), -1};

/* PutRequest { key = 1; oneof payload { tensor = 2; coded = 3; } params = 4 } */
static const field_spec put_fields[] = {
    {1, K_MSG, offsetof(lkv_wire_put, key), 0, &key_msg, 0},
    {2, K_MSG, offsetof(lkv_wire_put, tensor), 0, &tensor_msg, LKV_WIRE_PAYLOAD_TENSOR},
    {3, K_BYTES, offsetof(lkv_wire_put, coded), offsetof(lkv_wire_put, coded_len), NULL,
     LKV_WIRE_PAYLOAD_CODED},
    {4, K_MSG, offsetof(lkv_wire_put, params), 0, &params_msg, 0},
};
static const msg_spec put_msg = {put_fields, N_FIELDS(put_fields), sizeof(lkv_wire_put), -1,
                                 offsetof(lkv_wire_put, payload)};

int lkv_wire_parse_put(const uint8_t *p, size_t n, lkv_wire_put *out)
{
    *out = (lkv_wire_put){.key.ns = ""};
    return read_msg(p, n, &put_msg, out);
}

/* CompressRequest { tensor = 1; params = 2 } */
typedef struct compress_req {
    lkv_wire_tensor tensor;
    lkv_wire_params params;
} compress_req;
static const field_spec compress_fields[] = {
    {1, K_MSG, offsetof(compress_req, tensor), 0, &tensor_msg, 0},
    {2, K_MSG, offsetof(compress_req, params), 0, &params_msg, 0},
};
static const msg_spec compress_msg = {compress_fields, N_FIELDS(compress_fields),
                                      sizeof(compress_req), -1, -1};

int lkv_wire_parse_compress(const uint8_t *p, size_t n, lkv_wire_tensor *tensor,
                            lkv_wire_params *params)
{
    compress_req c = {0};
    const int rc = read_msg(p, n, &compress_msg, &c);
    *tensor = c.tensor;
    *params = c.params;
    return rc;
}

/* DecompressRequest { coded = 1; out_dtype = 2 } */
static const field_spec decompress_fields[] = {
    {1, K_BYTES, offsetof(lkv_wire_decompress, coded), offsetof(lkv_wire_decompress, coded_len),
     NULL, 0},
    {2, K_ENUM, offsetof(lkv_wire_decompress, out_dtype), 0, NULL, 0},
};
static const msg_spec decompress_msg = {decompress_fields, N_FIELDS(decompress_fields),
                                        sizeof(lkv_wire_decompress), -1, -1};

int lkv_wire_parse_decompress(const uint8_t *p, size_t n, lkv_wire_decompress *out)
{
    *out = (lkv_wire_decompress){.coded = p}; /* an absent coded field is empty, not NULL */
    return read_msg(p, n, &decompress_msg, out);
}

/* GetRequest { key = 1; want_coded = 2; out_dtype = 3 } */
static const field_spec get_fields[] = {
    {1, K_MSG, offsetof(lkv_wire_get, key), 0, &key_msg, 0},
    {2, K_BOOL, offsetof(lkv_wire_get, want_coded), 0, NULL, 0},
    {3, K_ENUM, offsetof(lkv_wire_get, out_dtype), 0, NULL, 0},
};
static const msg_spec get_msg = {get_fields, N_FIELDS(get_fields), sizeof(lkv_wire_get), -1, -1};

int lkv_wire_parse_get(const uint8_t *p, size_t n, lkv_wire_get *out)
{
    *out = (lkv_wire_get){.key.ns = ""};
    return read_msg(p, n, &get_msg, out);
}

/* DeleteRequest { key = 1 } */
typedef struct delete_req {
    lkv_wire_key key;
} delete_req;
static const field_spec delete_fields[] = {{1, K_MSG, offsetof(delete_req, key), 0, &key_msg, 0}};
static const msg_spec delete_msg = {delete_fields, N_FIELDS(delete_fields), sizeof(delete_req), -1,
                                    -1};

int lkv_wire_parse_delete(const uint8_t *p, size_t n, lkv_wire_key *key)
{
    delete_req d = {.key = {.ns = ""}};
    const int rc = read_msg(p, n, &delete_msg, &d);
    *key = d.key;
    return rc;
}

/* LookupRequest { namespace = 1; repeated keys = 2 } */
static const field_spec lookup_fields[] = {
    {1, K_BYTES, offsetof(lkv_wire_lookup, ns), offsetof(lkv_wire_lookup, ns_len), NULL, 0},
    {2, K_COUNT, offsetof(lkv_wire_lookup, n_keys), 0, NULL, 0},
};
static const msg_spec lookup_msg = {lookup_fields, N_FIELDS(lookup_fields), sizeof(lkv_wire_lookup),
                                    -1, -1};

int lkv_wire_parse_lookup(const uint8_t *p, size_t n, lkv_wire_lookup *out)
{
    *out = (lkv_wire_lookup){.ns = "", .msg = p, .msg_len = n};
    return read_msg(p, n, &lookup_msg, out);
}

int lkv_wire_lookup_next(const lkv_wire_lookup *l, size_t *pos, const uint8_t **key, size_t *len)
{
    lkv_wire_reader r = {l->msg + *pos, l->msg + l->msg_len};
    lkv_wire_field f = {0};
    while (lkv_wire_next(&r, &f) == 1) {
        if (f.num == 2) {
            *key = f.data;
            *len = f.len;
            *pos = (size_t)(r.p - l->msg);
            return 1;
        }
    }
    *pos = l->msg_len;
    return 0;
}

/* HealthCheckRequest { service = 1 } */
typedef struct health_req {
    const char *service;
    size_t len;
} health_req;
static const field_spec health_fields[] = {
    {1, K_BYTES, offsetof(health_req, service), offsetof(health_req, len), NULL, 0}};
static const msg_spec health_msg = {health_fields, N_FIELDS(health_fields), sizeof(health_req), -1,
                                    -1};

int lkv_wire_parse_health(const uint8_t *p, size_t n, const char **service, size_t *len)
{
    health_req h = {"", 0};
    const int rc = read_msg(p, n, &health_msg, &h);
    *service = h.service;
    *len = h.len;
    return rc;
}

int lkv_wire_parse_empty(const uint8_t *p, size_t n)
{
    static const msg_spec empty = {NULL, 0, 0, -1, -1};
    return read_msg(p, n, &empty, NULL);
}
