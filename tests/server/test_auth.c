/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_auth.c - the token table (server/auth.c): the file format and its
 * errors, lookup, bearer parsing, namespace grants, references.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lkv_auth.h"

static lkv_auth_table *parse_ok(const char *text)
{
    lkv_auth_table *t = NULL;
    lkv_diag d = {0};
    cr_assert_eq(lkv_auth_parse(text, strlen(text), "tokens", &t, &d), LKV_OK, "%s", d.msg);
    cr_assert_not_null(t);
    return t;
}

static const lkv_auth_principal *find(const lkv_auth_table *t, const char *tok)
{
    return lkv_auth_find(t, (const uint8_t *)tok, strlen(tok));
}

Test(auth, file_format_comments_lists_and_star)
{
    lkv_auth_table *t = parse_ok("# operators\n"
                                 "root-token *   # everything\n"
                                 "\n"
                                 "   team-a  alpha,beta\n"
                                 "team-empty \"\",gamma\n");
    cr_assert_eq(lkv_auth_table_size(t), 3);
    const lkv_auth_principal *root = find(t, "root-token");
    const lkv_auth_principal *a = find(t, "team-a");
    const lkv_auth_principal *e = find(t, "team-empty");
    cr_assert(root && a && e);
    cr_assert(lkv_auth_all(root));
    cr_assert(lkv_auth_allows(root, "anything", 8));
    cr_assert_not(lkv_auth_all(a));
    cr_assert(lkv_auth_allows(a, "alpha", 5));
    cr_assert(lkv_auth_allows(a, "beta", 4));
    cr_assert_not(lkv_auth_allows(a, "alph", 4), "prefixes are not grants");
    cr_assert_not(lkv_auth_allows(a, "alphabet", 8));
    cr_assert_not(lkv_auth_allows(a, "", 0));
    cr_assert(lkv_auth_allows(e, "", 0), "\"\" grants the empty namespace");
    cr_assert(lkv_auth_allows(e, "gamma", 5));
    cr_assert_eq(lkv_auth_line(a), 4);
    lkv_auth_table_unref(t);
}

Test(auth, lookup_is_exact)
{
    lkv_auth_table *t = parse_ok("abcdef x\nabc y\nzzzzzz z\n");
    cr_assert_not_null(find(t, "abcdef"));
    cr_assert(lkv_auth_allows(find(t, "abc"), "y", 1));
    cr_assert_null(find(t, "ab"), "a prefix of a token is not the token");
    cr_assert_null(find(t, "abcd"));
    cr_assert_null(find(t, "abcdefg"), "nor is a longer one");
    cr_assert_null(find(t, "abcabc"), "the modulo walk never matches a repeat");
    cr_assert_null(find(t, "ABCDEF"));
    cr_assert_null(lkv_auth_find(t, (const uint8_t *)"", 0));
    cr_assert_null(lkv_auth_find(NULL, (const uint8_t *)"abc", 3));
    lkv_auth_table_unref(t);
}

Test(auth, bad_lines_name_file_and_line_never_the_token)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"ok *\nsecret-one\n", "tokens:2: is not \"TOKEN NAMESPACE"},
        {"secret-two a, b\n", "tokens:1: has text after the namespace list"},
        {"secret-3 a,,b\n", "tokens:1: has an empty namespace"},
        {"secret-4 a,\n", "tokens:1: has an empty namespace"},
        {"secret-5 a,*\n", "tokens:1: \"*\" must stand alone"},
        {"dup-secret a\ndup-secret b\n", "tokens:2: repeats the token"},
        {"sec\x01ret a\n", "tokens:1: has a token with a byte outside printable ASCII"},
        {"sec,ret a\n", "tokens:1: has a token with a byte outside printable ASCII, or a comma"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lkv_auth_table *t = (lkv_auth_table *)1;
        lkv_diag d = {0};
        cr_assert_eq(lkv_auth_parse(cases[i].text, strlen(cases[i].text), "tokens", &t, &d),
                     LKV_ERR_INVALID_ARGUMENT, "case %zu", i);
        cr_assert_null(t);
        cr_assert(strstr(d.msg, cases[i].want), "case %zu: %s", i, d.msg);
        cr_assert_null(strstr(d.msg, "secret"), "case %zu leaks the token: %s", i, d.msg);
    }
    char longtok[LKV_AUTH_TOKEN_MAX + 8];
    memset(longtok, 'k', LKV_AUTH_TOKEN_MAX + 1);
    strcpy(longtok + LKV_AUTH_TOKEN_MAX + 1, " a\n");
    lkv_auth_table *t = NULL;
    lkv_diag d = {0};
    cr_assert_eq(lkv_auth_parse(longtok, strlen(longtok), "tokens", &t, &d),
                 LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d.msg, "longer than 512"), "%s", d.msg);
}

Test(auth, nul_bytes_in_the_file_are_refused)
{
    static const char text[] = "tok a\0b\n";
    lkv_auth_table *t = NULL;
    lkv_diag d = {0};
    cr_assert_eq(lkv_auth_parse(text, sizeof text - 1, "tokens", &t, &d), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d.msg, "tokens:1: has a NUL byte"), "%s", d.msg);
}

Test(auth, bearer_values)
{
    const uint8_t *tok;
    size_t len;
    static const char *const good[] = {"Bearer abc", "bearer abc", "BEARER  abc ", NULL};
    for (size_t i = 0; good[i]; i++) {
        cr_assert_eq(lkv_auth_bearer((const uint8_t *)good[i], strlen(good[i]), &tok, &len), 0,
                     "%s", good[i]);
        cr_assert_eq(len, 3);
        cr_assert_eq(memcmp(tok, "abc", 3), 0);
    }
    static const char *const bad[] = {"Basic abc", "Bearer",    "Bearer ", "Bearer    ",
                                      "abc",       "Bearerabc", NULL};
    for (size_t i = 0; bad[i]; i++)
        cr_assert_eq(lkv_auth_bearer((const uint8_t *)bad[i], strlen(bad[i]), &tok, &len), -1, "%s",
                     bad[i]);
}

Test(auth, references_keep_a_table_alive)
{
    lkv_auth_table *t = parse_ok("t1 a\n");
    const lkv_auth_principal *p = find(t, "t1");
    lkv_auth_table_ref(t);   /* a call admitted with it */
    lkv_auth_table_unref(t); /* the daemon swapped in a new table */
    cr_assert(lkv_auth_allows(p, "a", 1), "the call's reference keeps its principal");
    lkv_auth_table_unref(t);
    lkv_auth_table_unref(NULL);
}

Test(auth, load_reads_a_file_and_names_a_missing_one)
{
    char path[] = "/tmp/lkv-auth-XXXXXX";
    const int fd = mkstemp(path);
    cr_assert(fd >= 0);
    const char text[] = "file-token ns1\n";
    cr_assert_eq(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    lkv_auth_table *t = NULL;
    lkv_diag d = {0};
    cr_assert_eq(lkv_auth_load(path, &t, &d), LKV_OK, "%s", d.msg);
    cr_assert(lkv_auth_allows(find(t, "file-token"), "ns1", 3));
    lkv_auth_table_unref(t);
    unlink(path);
    cr_assert_eq(lkv_auth_load(path, &t, &d), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d.msg, "auth-tokens=") && strstr(d.msg, "No such file"), "%s", d.msg);
}

Test(auth, failure_counters_count)
{
    lkv_auth_failures a, b;
    lkv_auth_get_failures(&a);
    lkv_auth_count_unauthenticated();
    lkv_auth_count_permission();
    lkv_auth_count_permission();
    lkv_auth_get_failures(&b);
    cr_assert_eq(b.unauthenticated - a.unauthenticated, 1);
    cr_assert_eq(b.permission - a.permission, 2);
}
