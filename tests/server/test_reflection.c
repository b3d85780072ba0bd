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
