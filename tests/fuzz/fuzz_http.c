/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_http.c - libFuzzer target for the metrics listener's request reader
 * (lkv_http_parse, server/metrics.c): the bytes any client on the network
 * sends to --metrics-listen.
 *
 * Every input, and every prefix of it (the listener parses what has
 * arrived after each read), must give one of the listener's answers; once
 * a prefix is answered, every longer prefix gives the same answer (the
 * head ends at the first blank line, so bytes after it never change the
 * verdict); and nothing is ever left waiting at LKV_HTTP_HEAD_MAX bytes.
 */
#include <stdint.h>
#include <stdlib.h>

#include "lkv_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int known(int code)
{
    return code == 0 || code == 200 || code == 400 || code == 404 || code == 405 || code == 431;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    int first = 0;
    /* Prefixes at a stride, so large inputs stay cheap; the whole input last. */
    const size_t step = size / 64 + 1;
    for (size_t n = 0; n <= size; n = n == size ? size + 1 : (n + step < size ? n + step : size)) {
        const int code = lkv_http_parse(p, n);
        if (!known(code))
            abort();
        if (first && code != first)
            abort();
        if (!first)
            first = code;
        if (n >= LKV_HTTP_HEAD_MAX && code == 0)
            abort();
    }
    return 0;
}
