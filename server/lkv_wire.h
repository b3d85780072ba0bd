/* SPDX-License-Identifier: Apache-2.0 */
/* lkv_wire.h - protobuf wire: zero-copy request readers, replies in place (wire.c). */
#ifndef LKV_WIRE_H
#define LKV_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "lkv_codec.h"

size_t lkv_wire_varint_size(uint64_t v);
uint8_t *lkv_wire_put_varint(uint8_t *p, uint64_t v);
/* Field key + length of a length-delimited field. */
size_t lkv_wire_len_field_size(uint32_t field, size_t len);
uint8_t *lkv_wire_put_len_field(uint8_t *p, uint32_t field, size_t len);

/*
 * Reply layouts built around one large payload that a worker writes in
 * place. plan() returns the total size and the payload's offset; finish()
 * writes every byte except the payload. tier may be NULL.
 */
typedef struct lkv_wire_layout {
    size_t total;
    size_t payload_off;
} lkv_wire_layout;

/* CompressResponse { coded, raw_bytes, coded_bytes, bits_per_vector } */
void lkv_wire_compress_plan(size_t coded_len, uint64_t raw, uint32_t bits, lkv_wire_layout *l);
void lkv_wire_compress_finish(uint8_t *buf, size_t coded_len, uint64_t raw, uint32_t bits);
/* DecompressResponse { tensor } or GetResponse { tensor, tier } */
void lkv_wire_tensor_reply_plan(lkv_dtype dt, const uint64_t *shape, uint32_t ndim, size_t data_len,
                                const char *tier, lkv_wire_layout *l);
void lkv_wire_tensor_reply_finish(uint8_t *buf, lkv_dtype dt, const uint64_t *shape, uint32_t ndim,
                                  size_t data_len, const char *tier);
/* GetResponse { coded, tier } */
void lkv_wire_coded_reply_plan(size_t coded_len, const char *tier, lkv_wire_layout *l);
void lkv_wire_coded_reply_finish(uint8_t *buf, size_t coded_len, const char *tier);

/*
 * A cursor over protobuf bytes and the field it read last: the request
 * readers below and reflection.c walk messages with it. lkv_wire_next()
 * returns 1 and the field (a varint's value, or a length-delimited field's
 * bytes, which point into the message; fixed-width fields are skipped), 0
 * at the end, or -1 when the bytes are malformed.
 */
enum { LKV_WIRE_VARINT = 0, LKV_WIRE_LEN = 2 };

typedef struct lkv_wire_reader {
    const uint8_t *p, *end;
} lkv_wire_reader;

typedef struct lkv_wire_field {
    uint32_t num;
    unsigned wt;
    uint64_t v;          /* LKV_WIRE_VARINT */
    const uint8_t *data; /* LKV_WIRE_LEN */
    size_t len;
} lkv_wire_field;

int lkv_wire_next(lkv_wire_reader *r, lkv_wire_field *f);

/*
 * Zero-copy readers of request messages, starting with those that carry a
 * large payload (PutRequest, CompressRequest): every pointer refers into
 * the message buffer, which must outlive the result. Proto3 rules: unknown
 * fields are skipped, the last scalar wins, repeated occurrences of a
 * sub-message merge, shape may be packed or not. They return 0, or -1 when
 * the bytes are not a valid message of that type.
 */
typedef struct lkv_wire_tensor {
    int present;
    int64_t dtype; /* raw enum value; may be unknown */
    uint64_t shape[LKV_MAX_NDIM];
    size_t n_shape; /* may exceed LKV_MAX_NDIM: only the first ones are kept */
    const uint8_t *data;
    size_t data_len;
} lkv_wire_tensor;

typedef struct lkv_wire_params {
    int64_t variant;
    uint32_t q_range;
    uint32_t profile; /* 0 or 1: profile 1; 2: profile 2; else refused by the codec's check */
} lkv_wire_params;

typedef struct lkv_wire_key {
    int present;
    const char *ns; /* not NUL-terminated */
    size_t ns_len;
    const uint8_t *key;
    size_t key_len;
} lkv_wire_key;

enum { LKV_WIRE_PAYLOAD_NONE = 0, LKV_WIRE_PAYLOAD_TENSOR = 2, LKV_WIRE_PAYLOAD_CODED = 3 };

typedef struct lkv_wire_put {
    lkv_wire_key key;
    int payload; /* LKV_WIRE_PAYLOAD_* (the oneof's last field seen) */
    lkv_wire_tensor tensor;
    const uint8_t *coded;
    size_t coded_len;
    lkv_wire_params params;
} lkv_wire_put;

int lkv_wire_parse_put(const uint8_t *p, size_t n, lkv_wire_put *out);
int lkv_wire_parse_compress(const uint8_t *p, size_t n, lkv_wire_tensor *tensor,
                            lkv_wire_params *params);

/* The other requests, read the same way (every request's bytes go through
 * wire.c; protobuf-c only writes small replies). Absent fields read as
 * zero / empty; ns is "" when the key has no namespace. */
typedef struct lkv_wire_decompress {
    const uint8_t *coded;
    size_t coded_len;
    int64_t out_dtype; /* raw enum value */
} lkv_wire_decompress;

typedef struct lkv_wire_get {
    lkv_wire_key key;
    int want_coded;
    int64_t out_dtype;
} lkv_wire_get;

/* LookupRequest: the keys stay in the message; lkv_wire_lookup_next walks them. */
typedef struct lkv_wire_lookup {
    const char *ns;
    size_t ns_len;
    size_t n_keys;
    const uint8_t *msg;
    size_t msg_len;
} lkv_wire_lookup;

int lkv_wire_parse_decompress(const uint8_t *p, size_t n, lkv_wire_decompress *out);
int lkv_wire_parse_get(const uint8_t *p, size_t n, lkv_wire_get *out);
int lkv_wire_parse_delete(const uint8_t *p, size_t n, lkv_wire_key *key);
int lkv_wire_parse_lookup(const uint8_t *p, size_t n, lkv_wire_lookup *out);
/* The next key after byte *pos (start at 0) of a parsed LookupRequest: 1 and
 * the key, or 0 after the last one. */
int lkv_wire_lookup_next(const lkv_wire_lookup *l, size_t *pos, const uint8_t **key, size_t *len);
/* HealthCheckRequest { string service = 1; }: service is not NUL-terminated. */
int lkv_wire_parse_health(const uint8_t *p, size_t n, const char **service, size_t *len);
/* A message with no fields of its own (StatsRequest): checks it is well formed. */
int lkv_wire_parse_empty(const uint8_t *p, size_t n);

#endif
