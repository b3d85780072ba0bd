/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_reflection.c - server reflection answers without a network: the
 * questions grpcurl asks, unknown names, and malformed requests.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_server.h"

static int contains(const uint8_t *p, size_t n, const char *s)
{
    const size_t k = strlen(s);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(p + i, s, k) == 0)
            return 1;
    return 0;
}

/* A request: host "h" and one oneof member (field, text). */
static size_t request(uint8_t *buf, unsigned field, const char *text)
{
    size_t n = 0;
    buf[n++] = 0x0a;
    buf[n++] = 1;
    buf[n++] = 'h';
    buf[n++] = (uint8_t)(field << 3 | 2);
    buf[n++] = (uint8_t)strlen(text);
    memcpy(buf + n, text, strlen(text));
    return n + strlen(text);
}

Test(reflection, answers_list_services_and_symbols)
{
    if (!lkv_reflection_available())
        cr_skip_test("built without protoc: no descriptors embedded");
    uint8_t q[128], *out = NULL;
    size_t n;
    cr_assert_eq(lkv_reflection_answer(q, request(q, 7, ""), &out, &n), 0);
    cr_assert(contains(out, n, "latticekv.v1.KVStore") &&
              contains(out, n, "grpc.health.v1.Health"));
    cr_assert_eq(out[0], 0x0a, "valid_host comes first");
    free(out);

    cr_assert_eq(lkv_reflection_answer(q, request(q, 4, "latticekv.v1.KVStore.Put"), &out, &n), 0);
    cr_assert(contains(out, n, "latticekv/v1/latticekv.proto"), "the file holding the symbol");
    cr_assert(!contains(out, n, "grpc/health/v1/health.proto"), "and not an unrelated one");
    free(out);

    /* An unknown symbol: an error_response (field 7) with NOT_FOUND, not a failure. */
    cr_assert_eq(lkv_reflection_answer(q, request(q, 4, "latticekv.v1.Nope"), &out, &n), 0);
    const size_t err_at = n - (2 + 2 + 2 + strlen("no such symbol is served here"));
    cr_assert_eq(out[err_at], 0x3a, "field 7 (error_response) ends the reply");
    cr_assert_eq(out[err_at + 2], 0x08);
    cr_assert_eq(out[err_at + 3], LKV_GRPC_NOT_FOUND);
    cr_assert(contains(out, n, "no such symbol is served here"));
    free(out);
    /* A package prefix alone is not a symbol. */
    cr_assert_eq(lkv_reflection_answer(q, request(q, 4, "latticekv.v1x.KVStore"), &out, &n), 0);
    cr_assert(!contains(out, n, "latticekv/v1/latticekv.proto"));
    free(out);
}

Test(reflection, malformed_requests_are_rejected)
{
    uint8_t q[128], *out = NULL;
    size_t n;
    const size_t len = request(q, 4, "latticekv.v1.KVStore");
    for (size_t cut = 1; cut < len; cut++) {
        if (cut == 3) /* host alone is a complete (empty) question */
            continue;
        const int rc = lkv_reflection_answer(q, cut, &out, &n);
        if (rc == 0)
            free(out);
        cr_assert_eq(rc, -1, "a request cut at %zu bytes was accepted", cut);
    }
    const uint8_t varint_oneof[] = {0x20, 0x01}; /* field 4 as a varint */
    cr_assert_eq(lkv_reflection_answer(varint_oneof, sizeof varint_oneof, &out, &n), -1);
}

/* Top-level fields of a reply: each a known field of
 * ServerReflectionResponse, length-delimited, inside the buffer. */
static int reply_well_formed(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const uint8_t key = p[i++];
        const unsigned num = key >> 3;
        if ((key & 7) != 2 || !(num == 1 || num == 2 || num == 4 || num == 6 || num == 7))
            return 0;
        uint64_t len = 0;
        unsigned s = 0;
        while (i < n && (p[i] & 0x80) && s < 63) {
            len |= (uint64_t)(p[i++] & 0x7f) << s;
            s += 7;
        }
        if (i >= n)
            return 0;
        len |= (uint64_t)p[i++] << s;
        if (len > n - i)
            return 0;
        i += (size_t)len;
    }
    return 1;
}

/* Network bytes: mutated and random requests never crash or read outside
 * the message (run it under the ASan build), and every accepted one gets a
 * well-formed reply. */
Test(reflection, mutated_requests_are_answered_or_rejected)
{
    uint8_t seeds[4][128];
    size_t seed_len[4];
    seed_len[0] = request(seeds[0], 4, "latticekv.v1.KVStore.Put");
    seed_len[1] = request(seeds[1], 3, "latticekv/v1/latticekv.proto");
    seed_len[2] = request(seeds[2], 7, "");
    seed_len[3] = request(seeds[3], 6, "latticekv.v1.PutRequest");
    uint64_t x = 0x9e3779b97f4a7c15u;
    size_t accepted = 0, rejected = 0;
    for (int it = 0; it < 20000; it++) {
        uint8_t m[160];
        const size_t k = (size_t)it % 4;
        size_t len = seed_len[k];
        memcpy(m, seeds[k], len);
        const int edits = 1 + it % 4;
        for (int e = 0; e < edits; e++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            const size_t at = (size_t)(x >> 8) % (len ? len : 1);
            switch ((x >> 40) % 4) {
            case 0: m[at] = (uint8_t)(x >> 48); break;                /* a byte replaced */
            case 1: len = at; break;                                  /* cut short */
            case 2: m[at] ^= (uint8_t)(1u << ((x >> 52) % 8)); break; /* one bit */
            default:                                                  /* random bytes */
                len = 1 + (size_t)(x >> 56) % (sizeof m - 1);
                for (size_t b = 0; b < len; b++) {
                    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                    m[b] = (uint8_t)x;
                }
            }
        }
        /* An exact-size copy, so ASan sees any read past the message. */
        uint8_t *msg = malloc(len ? len : 1);
        cr_assert_not_null(msg);
        memcpy(msg, m, len);
        uint8_t *out = NULL;
        size_t n = 0;
        const int rc = lkv_reflection_answer(msg, len, &out, &n);
        free(msg);
        cr_assert(rc == 0 || rc == -1, "rc %d at iteration %d", rc, it);
        if (rc == 0) {
            cr_assert(out && n > 0 && reply_well_formed(out, n), "iteration %d", it);
            free(out);
            accepted++;
        } else {
            rejected++;
        }
    }
    cr_assert(accepted > 1000 && rejected > 1000, "both paths ran: %zu accepted, %zu rejected",
              accepted, rejected);
}
