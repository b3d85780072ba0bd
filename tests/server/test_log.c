/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_log.c - log lines: client bytes are quoted and escaped, no value can
 * start a new line, and the JSON format is one object per line.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lkv_server.h"

Test(log, quote_escapes_quotes_controls_and_non_ascii)
{
    char q[LKV_LOG_QUOTE_MAX];
    const char raw[] = "a\"b\\c\nd\re\tf\x01g\xff";
    cr_assert_str_eq(lkv_log_quote(q, sizeof q, raw, sizeof raw - 1),
                     "\"a\\\"b\\\\c\\nd\\re\\tf\\x01g\\xff\"");
    /* Embedded NUL bytes are shown, not cut at. */
    cr_assert_str_eq(lkv_log_quote(q, sizeof q, "a\0b", 3), "\"a\\x00b\"");
    cr_assert_str_eq(lkv_log_quote_str(q, sizeof q, NULL), "\"\"");
}

Test(log, quote_cuts_long_values_inside_the_quotes)
{
    char big[1000];
    memset(big, '\n', sizeof big);
    char q[64];
    lkv_log_quote(q, sizeof q, big, sizeof big);
    const size_t n = strlen(q);
    cr_assert_lt(n, sizeof q);
    cr_assert_eq(q[0], '"');
    cr_assert_eq(q[n - 1], '"');
    cr_assert(strstr(q, "...\""), "%s", q);
    cr_assert_null(strchr(q, '\n'), "%s", q);
    /* An escape is never split by the cut. */
    cr_assert_eq(q[n - 5], 'n', "%s", q);
}

/* Runs fn with stderr sent to a file and returns what was written. */
static void capture(void (*fn)(void), char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/lkv_log_test_%d.txt", (int)getpid());
    fflush(stderr);
    const int saved = dup(STDERR_FILENO);
    FILE *f = fopen(path, "w+");
    cr_assert_not_null(f);
    dup2(fileno(f), STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(f);
    const size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    fclose(f);
    unlink(path);
}

static const char forged_ns[] = "x\nts=2026-01-01T00:00:00.000Z level=error event=forged";

static void log_forgery_attempts(void)
{
    char q[LKV_LOG_QUOTE_MAX];
    lkv_log(LKV_LOG_WARN, "block_dropped", "namespace=%s",
            lkv_log_quote(q, sizeof q, forged_ns, strlen(forged_ns)));
    /* A call site that forgot to quote still cannot start a line. */
    lkv_log(LKV_LOG_WARN, "careless", "namespace=%s", forged_ns);
}

Test(log, client_bytes_cannot_start_a_new_line)
{
    lkv_log_set_format(LKV_LOG_FORMAT_KV);
    char out[4096];
    capture(log_forgery_attempts, out, sizeof out);
    int lines = 0;
    for (const char *p = out; *p; p = strchr(p, '\n') + 1) {
        cr_assert(strncmp(p, "ts=", 3) == 0, "a line not made by lkv_log: %s", p);
        lines++;
        if (!strchr(p, '\n'))
            break;
    }
    cr_assert_eq(lines, 2, "%s", out);
    cr_assert(strstr(out, "namespace=\"x\\nts=2026-01-01"), "%s", out);
}

static void log_json_line(void)
{
    char q[LKV_LOG_QUOTE_MAX];
    lkv_log(LKV_LOG_INFO, "ready", "threads=%d name=%s addr=%s ratio=%s", 4,
            lkv_log_quote(q, sizeof q, "a \"b\"\n\x01", 7), "127.0.0.1:5", "0.25");
}

Test(log, json_format_is_one_object_per_line)
{
    lkv_log_set_format(LKV_LOG_FORMAT_JSON);
    char out[4096];
    capture(log_json_line, out, sizeof out);
    lkv_log_set_format(LKV_LOG_FORMAT_KV);
    cr_assert(strncmp(out, "{\"ts\":\"", 7) == 0, "%s", out);
    cr_assert(strstr(out, "\"level\":\"info\",\"event\":\"ready\",\"threads\":4,"
                          "\"name\":\"a \\\"b\\\"\\n\\u0001\",\"addr\":\"127.0.0.1:5\","
                          "\"ratio\":0.25}\n"),
              "%s", out);
    cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1, "one line: %s", out);
}

/* A call site that wraps client bytes in its own quotes instead of
 * lkv_log_quote: in JSON the value must still be one escaped string. */
static void log_json_careless(void)
{
    lkv_log(LKV_LOG_WARN, "careless", "a=\"%s\" c=\"\\q\\x4\" b=%s", "x\ny\x01\xff", "\"z\n");
}

Test(log, json_escapes_what_a_careless_call_site_quoted_itself)
{
    lkv_log_set_format(LKV_LOG_FORMAT_JSON);
    char out[4096];
    capture(log_json_careless, out, sizeof out);
    lkv_log_set_format(LKV_LOG_FORMAT_KV);
    cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1, "one line: %s", out);
    for (const char *p = out; *p != '\n'; p++)
        cr_assert((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f,
                  "raw byte 0x%02x in a JSON line: %s", (unsigned char)*p, out);
    cr_assert(strstr(out, "\"a\":\"x\\u000ay\\u0001\\u00ff\""), "%s", out);
    /* Escapes JSON does not have are kept as text, not passed through. */
    cr_assert(strstr(out, "\"c\":\"\\\\q\\\\x4\","), "%s", out);
    /* A quote the value opened and never closed ends with the line. */
    cr_assert(strstr(out, "\"b\":\"z\\u000a\"}\n"), "%s", out);
}

static void log_json_long(void)
{
    char v[1200];
    memset(v, 0x01, sizeof v - 1);
    v[sizeof v - 1] = '\0';
    /* Unquoted control bytes grow six-fold in JSON: more than a line holds. */
    lkv_log(LKV_LOG_INFO, "long", "n=1 a=%s b=%s", v, v);
}

Test(log, json_line_cut_at_its_limit_is_still_one_valid_object)
{
    lkv_log_set_format(LKV_LOG_FORMAT_JSON);
    char out[16384];
    capture(log_json_long, out, sizeof out);
    lkv_log_set_format(LKV_LOG_FORMAT_KV);
    const size_t n = strlen(out);
    cr_assert_eq(strchr(out, '\n'), out + n - 1, "one line: %.200s", out);
    cr_assert(strstr(out, "\"n\":1,"), "the fields before the cut stay: %.200s", out);
    /* Cut at a field boundary, said so, and closed. */
    cr_assert(n > 20 && strcmp(out + n - 19, ",\"truncated\":true}\n") == 0, "%s", out + n - 40);
}
