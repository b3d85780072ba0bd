/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_auth.c - libFuzzer target for the token file parser and the bearer
 * reader (server/auth.c): both read bytes the daemon does not choose (a
 * file an operator or a Secret mounts, a client's metadata).
 *
 * Any input is parsed as a token file. When it parses, the first word of
 * every line that is not blank or a comment must be found as a token and
 * grant what its line lists (checked for "*"), and the whole input used as
 * a token or a namespace must not crash the lookup. The input is also read
 * as an "authorization" value: a token found must lie inside it and hold
 * no leading or trailing space. Runs clean under ASan/UBSan; a violation
 * aborts.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checks every token line of a parsed file against the table. */
static void check_lines(const lkv_auth_table *t, const char *s, size_t n)
{
    size_t lines = 0;
    for (size_t i = 0; i < n;) {
        size_t e = i;
        while (e < n && s[e] != '\n')
            e++;
        size_t a = i;
        while (a < e && isspace((unsigned char)s[a]))
            a++;
        size_t w = a;
        while (w < e && !isspace((unsigned char)s[w]) && s[w] != '#')
            w++;
        if (a < e && s[a] != '#' && w > a) {
            const lkv_auth_principal *p = lkv_auth_find(t, (const uint8_t *)s + a, w - a);
            if (!p)
                abort(); /* a token of the file is not found */
            lines++;
            size_t v = w;
            while (v < e && isspace((unsigned char)s[v]))
                v++;
            if (v < e && s[v] == '*' &&
                (v + 1 == e || isspace((unsigned char)s[v + 1]) || s[v + 1] == '#') &&
                !lkv_auth_all(p))
                abort(); /* "*" did not grant everything */
        }
        i = e + 1;
    }
    if (lines != lkv_auth_table_size(t))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lkv_auth_table *t = NULL;
    lkv_diag d;
    if (lkv_auth_parse((const char *)data, size, "fuzz", &t, &d) == LKV_OK) {
        check_lines(t, (const char *)data, size);
        const lkv_auth_principal *p = lkv_auth_find(t, data, size);
        (void)lkv_auth_allows(p, (const char *)data, size);
        lkv_auth_table_unref(t);
    } else if (t || !memchr(d.msg, ':', sizeof d.msg)) {
        abort(); /* a refusal leaves no table and names where */
    }
    const uint8_t *tok = NULL;
    size_t len = 0;
    if (lkv_auth_bearer(data, size, &tok, &len) == 0) {
        if (tok < data || tok + len > data + size || len == 0 || tok[0] == ' ' ||
            tok[len - 1] == ' ')
            abort();
    }
    return 0;
}
