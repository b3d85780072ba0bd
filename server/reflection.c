/* SPDX-License-Identifier: Apache-2.0 */
/*
 * reflection.c - gRPC server reflection (grpc.reflection.v1alpha), so that
 * grpcurl-style tools can list and call the API without .proto files.
 *
 * Design note. gRPC's C core has no reflection service, so this answers the
 * protocol by hand from the descriptors that protoc compiles from proto/ at
 * build time (a FileDescriptorSet embedded as lkv_descriptor_set, see
 * server/CMakeLists.txt). Each ServerReflectionRequest gets one
 * ServerReflectionResponse:
 *
 *   list_services            every service of every embedded file
 *   file_by_filename         that file ("latticekv/v1/latticekv.proto")
 *   file_containing_symbol   the file whose package and top-level message,
 *                            enum or service name begin the symbol
 *                            (latticekv.v1.KVStore, latticekv.v1.KVStore.Put)
 *   extensions               error NOT_FOUND: the API (proto3) has none
 *
 * Files are returned with the files they import. Only the descriptor bytes
 * are walked (names are read straight out of them); nothing is allocated
 * but the reply (and, for list_services, the list before it is copied in).
 * The service runs it on the loop thread; it holds no state.
 */
#include <stdlib.h>
#include <string.h>

#include "lkv_reflection.h"
#include "lkv_status.h"
#include "lkv_wire.h"

#ifdef LKV_HAVE_DESCRIPTORS
extern const unsigned char lkv_descriptor_set[];
extern const size_t lkv_descriptor_set_len;
#endif

/* The first length-delimited field num of a message (its name, mostly). */
static int pb_find(const uint8_t *p, size_t n, uint32_t num, const uint8_t **out, size_t *out_len)
{
    lkv_wire_reader c = {p, p + n};
    lkv_wire_field f = {0};
    int r;
    while ((r = lkv_wire_next(&c, &f)) == 1)
        if (f.num == num && f.wt == LKV_WIRE_LEN) {
            *out = f.data;
            *out_len = f.len;
            return 1;
        }
    return 0;
}

/* ---- the embedded files ---------------------------------------------- */

#define MAX_FILES 16

typedef struct file {
    const uint8_t *p; /* a serialized FileDescriptorProto */
    size_t n;
} file;

static size_t files(file *out)
{
#ifdef LKV_HAVE_DESCRIPTORS
    lkv_wire_reader c = {lkv_descriptor_set, lkv_descriptor_set + lkv_descriptor_set_len};
    lkv_wire_field f = {0};
    size_t k = 0;
    while (k < MAX_FILES && lkv_wire_next(&c, &f) == 1)
        if (f.num == 1 && f.wt == LKV_WIRE_LEN) /* FileDescriptorSet.file */
            out[k++] = (file){f.data, f.len};
    return k;
#else
    (void)out;
    return 0;
#endif
}

int lkv_reflection_available(void)
{
    file fs[MAX_FILES];
    return files(fs) > 0;
}

/* Whether symbol is pkg.Name or pkg.Name.more for a top-level message (4),
 * enum (5) or service (6) Name of file f. */
static int file_has_symbol(const file *f, const char *sym, size_t slen)
{
    const uint8_t *pkg = (const uint8_t *)"";
    size_t plen = 0;
    pb_find(f->p, f->n, 2, &pkg, &plen);
    if (plen) {
        if (slen <= plen + 1 || memcmp(sym, pkg, plen) != 0 || sym[plen] != '.')
            return 0;
        sym += plen + 1;
        slen -= plen + 1;
    }
    const char *dot = memchr(sym, '.', slen);
    const size_t head = dot ? (size_t)(dot - sym) : slen;
    lkv_wire_reader c = {f->p, f->p + f->n};
    lkv_wire_field fl;
    while (lkv_wire_next(&c, &fl) == 1) {
        if (fl.wt != LKV_WIRE_LEN || (fl.num != 4 && fl.num != 5 && fl.num != 6))
            continue;
        const uint8_t *name;
        size_t nlen;
        if (pb_find(fl.data, fl.len, 1, &name, &nlen) && nlen == head &&
            memcmp(name, sym, head) == 0)
            return 1;
    }
    return 0;
}

static int file_named(const file *f, const uint8_t *name, size_t nlen)
{
    const uint8_t *fn;
    size_t fl;
    return pb_find(f->p, f->n, 1, &fn, &fl) && fl == nlen && memcmp(fn, name, nlen) == 0;
}

/* Marks file i and, transitively, the embedded files it imports (field 3).
 * The recursion is over the descriptors embedded at build time, never over
 * request bytes, and each file is visited once: its depth is bounded by the
 * number of embedded files. */
static void mark_with_deps( // NOLINT(misc-no-recursion)
    const file *fs, size_t nf, size_t i, int *mark)
{
    if (mark[i])
        return;
    mark[i] = 1;
    lkv_wire_reader c = {fs[i].p, fs[i].p + fs[i].n};
    lkv_wire_field f = {0};
    while (lkv_wire_next(&c, &f) == 1)
        if (f.num == 3 && f.wt == LKV_WIRE_LEN)
            for (size_t j = 0; j < nf; j++)
                if (file_named(&fs[j], f.data, f.len))
                    mark_with_deps(fs, nf, j, mark);
}

/* ---- the reply --------------------------------------------------------- */

/* A growing output buffer; ok turns 0 on OOM. */
typedef struct out {
    uint8_t *p;
    size_t n, cap;
    int ok;
} out;

static uint8_t *out_room(out *o, size_t need)
{
    if (!o->ok)
        return NULL;
    if (o->n + need > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        while (cap < o->n + need)
            cap *= 2;
        uint8_t *p = realloc(o->p, cap);
        if (!p) {
            o->ok = 0;
            return NULL;
        }
        o->p = p;
        o->cap = cap;
    }
    return o->p + o->n;
}

static void put_len(out *o, uint32_t field, const void *data, size_t len)
{
    uint8_t *p = out_room(o, lkv_wire_len_field_size(field, len)); /* key, length and bytes */
    if (!p)
        return;
    p = lkv_wire_put_len_field(p, field, len);
    if (len)
        memcpy(p, data, len);
    o->n = (size_t)(p + len - o->p);
}

/* ErrorResponse { error_code, error_message } as field 7. */
static void put_error(out *o, lkv_grpc_code code, const char *msg)
{
    uint8_t body[256];
    const size_t mlen = strlen(msg) < 200 ? strlen(msg) : 200;
    uint8_t *p = lkv_wire_put_varint(body, 1u << 3 | LKV_WIRE_VARINT);
    p = lkv_wire_put_varint(p, (uint64_t)code);
    p = lkv_wire_put_len_field(p, 2, mlen);
    memcpy(p, msg, mlen);
    put_len(o, 7, body, (size_t)(p + mlen - body));
}

/* FileDescriptorResponse (field 4) holding the marked files. */
static void put_files(out *o, const file *fs, size_t nf, const int *mark)
{
    size_t body = 0;
    for (size_t i = 0; i < nf; i++)
        if (mark[i])
            body += lkv_wire_len_field_size(1, fs[i].n);
    uint8_t *p = out_room(o, lkv_wire_len_field_size(4, body));
    if (!p)
        return;
    p = lkv_wire_put_len_field(p, 4, body);
    for (size_t i = 0; i < nf; i++)
        if (mark[i]) {
            p = lkv_wire_put_len_field(p, 1, fs[i].n);
            memcpy(p, fs[i].p, fs[i].n);
            p += fs[i].n;
        }
    o->n = (size_t)(p - o->p);
}

/* ListServiceResponse (field 6): "package.Service" of every embedded file. */
static void put_services(out *o, const file *fs, size_t nf)
{
    out l = {.ok = 1};
    for (size_t i = 0; i < nf; i++) {
        const uint8_t *pkg = (const uint8_t *)"";
        size_t plen = 0;
        pb_find(fs[i].p, fs[i].n, 2, &pkg, &plen);
        lkv_wire_reader c = {fs[i].p, fs[i].p + fs[i].n};
        lkv_wire_field f;
        while (lkv_wire_next(&c, &f) == 1) {
            const uint8_t *name;
            size_t nlen;
            if (f.num != 6 || f.wt != LKV_WIRE_LEN || !pb_find(f.data, f.len, 1, &name, &nlen))
                continue;
            if (plen + 1 + nlen >= 256)
                continue;
            uint8_t sr[300]; /* ServiceResponse { name } */
            const size_t k = plen ? plen + 1 + nlen : nlen;
            uint8_t *q = lkv_wire_put_len_field(sr, 1, k);
            if (plen) {
                memcpy(q, pkg, plen);
                q[plen] = '.';
            }
            memcpy(q + k - nlen, name, nlen);
            put_len(&l, 1, sr, (size_t)(q + k - sr));
        }
    }
    if (!l.ok)
        o->ok = 0;
    put_len(o, 6, l.p, l.n);
    free(l.p);
}

int lkv_reflection_answer(const uint8_t *msg, size_t len, uint8_t **reply, size_t *reply_len)
{
    /* ServerReflectionRequest: host = 1, then the oneof 3..7 (last wins). */
    lkv_wire_reader c = {msg, msg + len};
    lkv_wire_field f, req = {0};
    const uint8_t *host = NULL;
    size_t host_len = 0;
    int r;
    while ((r = lkv_wire_next(&c, &f)) == 1) {
        if (f.num == 1 && f.wt == LKV_WIRE_LEN) {
            host = f.data;
            host_len = f.len;
        } else if (f.num >= 3 && f.num <= 7) {
            if (f.wt != LKV_WIRE_LEN)
                return -1;
            req = f;
        }
    }
    if (r < 0)
        return -1;

    file fs[MAX_FILES];
    const size_t nf = files(fs);
    int mark[MAX_FILES] = {0};
    out o = {.ok = 1};
    if (host_len)
        put_len(&o, 1, host, host_len);
    put_len(&o, 2, msg, len); /* original_request */
    switch (req.num) {
    case 7: put_services(&o, fs, nf); break;
    case 3:
    case 4: {
        int found = 0;
        for (size_t i = 0; i < nf; i++)
            if (req.num == 3 ? file_named(&fs[i], req.data, req.len)
                             : file_has_symbol(&fs[i], (const char *)req.data, req.len)) {
                mark_with_deps(fs, nf, i, mark);
                found = 1;
            }
        if (found)
            put_files(&o, fs, nf, mark);
        else
            put_error(&o, LKV_GRPC_NOT_FOUND,
                      req.num == 3 ? "no such file is served here"
                                   : "no such symbol is served here");
        break;
    }
    case 5:
    case 6: put_error(&o, LKV_GRPC_NOT_FOUND, "the API declares no extensions"); break;
    default: put_error(&o, LKV_GRPC_INVALID_ARGUMENT, "the request names no question"); break;
    }
    if (!o.ok) {
        free(o.p);
        return -2;
    }
    *reply = o.p;
    *reply_len = o.n;
    return 0;
}
