/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log.c - structured log lines: one event per line, key=value pairs or JSON.
 *
 * Design note. Every line starts with "ts=<UTC ISO-8601 ms> level=<l>
 * event=<name>" so a log shipper can split it without a grammar. The line is
 * formatted into one buffer and written with one write(2), which keeps
 * lines from different threads (loop, completion queue, workers) whole
 * without a lock.
 *
 * Client bytes never reach a line unescaped. A value that a client chose (a
 * namespace, an error message naming one) goes through lkv_log_quote, which
 * writes it as a double-quoted string with '"', '\\', control bytes and
 * non-ASCII bytes escaped; so a namespace holding "\n... level=error" stays
 * inside its quotes on its own line. As a second guard, lkv_log itself
 * escapes any control byte left in the formatted fields, so even a call site
 * that forgets to quote cannot start a new line.
 *
 * --log-format json writes the same event as one JSON object per line. The
 * fields are still written by call sites as key=value text; because quoted
 * values use only JSON-compatible escapes (plus \xNN, which becomes \u00NN),
 * the text splits back into keys and values without ambiguity. The second
 * guard holds there too: bytes inside quotes that lkv_log_quote did not
 * write are escaped again, and a line longer than the buffer is cut between
 * two fields and marked "truncated":true, so every line parses as JSON.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lkv_log.h"

static lkv_log_level g_level = LKV_LOG_INFO;
static lkv_log_format g_format = LKV_LOG_FORMAT_KV;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

#define LINE_MAX_BYTES 2048

void lkv_log_set_level(lkv_log_level level)
{
    g_level = level;
}

void lkv_log_set_format(lkv_log_format format)
{
    g_format = format;
}

int lkv_log_enabled(lkv_log_level level)
{
    return level <= g_level;
}

/* The escape of byte c inside a quoted value, written to e (at most 5 bytes
 * with the NUL); 0 when c stands for itself. */
static int escape_byte(unsigned char c, char e[5])
{
    switch (c) {
    case '"': memcpy(e, "\\\"", 3); return 2;
    case '\\': memcpy(e, "\\\\", 3); return 2;
    case '\n': memcpy(e, "\\n", 3); return 2;
    case '\r': memcpy(e, "\\r", 3); return 2;
    case '\t': memcpy(e, "\\t", 3); return 2;
    default: break;
    }
    if (c < 0x20 || c >= 0x7f) {
        snprintf(e, 5, "\\x%02x", c);
        return 4;
    }
    return 0;
}

const char *lkv_log_quote(char *dst, size_t cap, const void *src, size_t len)
{
    static const char ellipsis[] = "...";
    if (cap < 8) { /* room for "" and a few bytes; callers use LKV_LOG_QUOTE_MAX */
        if (cap)
            dst[0] = '\0';
        return dst;
    }
    const unsigned char *s = src;
    size_t n = 0;
    dst[n++] = '"';
    /* Keep room for the ellipsis, the closing quote and the NUL. */
    const size_t limit = cap - (sizeof ellipsis - 1) - 2;
    size_t i = 0;
    for (; i < len; i++) {
        char e[5] = {(char)s[i]}; /* the byte itself unless it has an escape */
        const int el = escape_byte(s[i], e);
        const size_t need = el ? (size_t)el : 1;
        if (n + need > limit)
            break;
        memcpy(dst + n, e, need);
        n += need;
    }
    if (i < len) {
        memcpy(dst + n, ellipsis, sizeof ellipsis - 1);
        n += sizeof ellipsis - 1;
    }
    dst[n++] = '"';
    dst[n] = '\0';
    return dst;
}

const char *lkv_log_quote_str(char *dst, size_t cap, const char *s)
{
    return lkv_log_quote(dst, cap, s, s ? strlen(s) : 0);
}

/* Copies src (n bytes) to dst (cap bytes) escaping control bytes; returns
 * the bytes written (no NUL). The second guard of the design note. */
static size_t copy_no_controls(char *dst, size_t cap, const char *src, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)src[i];
        char e[5] = {(char)c}; /* the byte itself unless it is a control byte */
        const size_t el = c < 0x20 || c == 0x7f ? (size_t)escape_byte(c, e) : 1;
        if (o + el > cap)
            break;
        memcpy(dst + o, e, el);
        o += el;
    }
    return o;
}

/* JSON output, appended to p[n..cap). What does not fit is dropped and
 * `full` set; fields_to_json then takes back the field that did not fit,
 * so a long line is cut between fields and stays one valid object. */
typedef struct jbuf {
    char *p;
    size_t n, cap;
    int full;
} jbuf;

static void jput(jbuf *j, const char *s, size_t len)
{
    if (j->n + len > j->cap) {
        len = j->cap - j->n;
        j->full = 1;
    }
    memcpy(j->p + j->n, s, len);
    j->n += len;
}

static void jputs(jbuf *j, const char *s)
{
    jput(j, s, strlen(s));
}

/* One byte of a JSON string: '"' and '\\' escaped, control bytes and
 * bytes outside ASCII as \u00NN (so a line is always printable ASCII). */
static void jchar(jbuf *j, unsigned char c)
{
    char e[8];
    if (c < 0x20 || c >= 0x7f)
        jput(j, e, (size_t)snprintf(e, sizeof e, "\\u%04x", c));
    else if (c == '"' || c == '\\')
        jput(j, (const char[]){'\\', (char)c}, 2);
    else
        jput(j, (const char *)&c, 1);
}

/* A JSON string of raw text: escapes what JSON requires. */
static void jstring_raw(jbuf *j, const char *s, size_t len)
{
    jput(j, "\"", 1);
    for (size_t i = 0; i < len; i++)
        jchar(j, (unsigned char)s[i]);
    jput(j, "\"", 1);
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The body of a quoted value (between the quotes) as a JSON string. The
 * escapes lkv_log_quote writes are JSON's already, except \xNN, which
 * becomes \u00NN. Anything else - a call site that put its own quotes
 * around raw bytes - is escaped byte by byte like raw text, so no control
 * byte, stray backslash or non-ASCII byte reaches the JSON line as is. */
static void jstring_quoted(jbuf *j, const char *s, size_t len)
{
    jput(j, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\\' && i + 3 < len && s[i + 1] == 'x' && is_hex(s[i + 2]) &&
            is_hex(s[i + 3])) {
            jputs(j, "\\u00");
            jput(j, s + i + 2, 2);
            i += 3;
        } else if (s[i] == '\\' && i + 1 < len && memchr("\"\\nrt", s[i + 1], 5)) {
            jput(j, s + i, 2);
            i++;
        } else {
            jchar(j, (unsigned char)s[i]);
        }
    }
    jput(j, "\"", 1);
}

static int is_number(const char *s, size_t len)
{
    size_t i = 0;
    if (i < len && s[i] == '-')
        i++;
    if (i >= len || s[i] < '0' || s[i] > '9' || (s[i] == '0' && i + 1 < len && s[i + 1] != '.'))
        return 0;
    int dot = 0;
    for (; i < len; i++) {
        if (s[i] == '.' && !dot && i + 1 < len)
            dot = 1;
        else if (s[i] < '0' || s[i] > '9')
            return 0;
    }
    return 1;
}

/* Turns "k=v k2=\"q v\" ..." into ,"k":v,"k2":"q v" (numbers stay numbers). */
static void fields_to_json(jbuf *j, const char *f, size_t len)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && f[i] == ' ')
            i++;
        if (i >= len)
            break;
        const size_t k0 = i;
        while (i < len && f[i] != '=' && f[i] != ' ')
            i++;
        const size_t klen = i - k0;
        const size_t mark = j->n; /* taken back if the field does not fit */
        jput(j, ",", 1);
        const int bare = i >= len || f[i] != '='; /* a bare word: kept under "_" */
        jstring_raw(j, bare ? "_" : f + k0, bare ? 1 : klen);
        jput(j, ":", 1);
        if (bare) {
            jstring_raw(j, f + k0, klen);
        } else if (++i < len && f[i] == '"') { /* past the '=' */
            const size_t v0 = ++i;
            while (i < len && f[i] != '"')
                i += (f[i] == '\\' && i + 1 < len) ? 2 : 1;
            jstring_quoted(j, f + v0, (i < len ? i : len) - v0);
            if (i < len)
                i++; /* closing quote */
        } else {
            const size_t v0 = i;
            while (i < len && f[i] != ' ')
                i++;
            if (is_number(f + v0, i - v0))
                jput(j, f + v0, i - v0);
            else
                jstring_raw(j, f + v0, i - v0);
        }
        if (j->full) {
            j->n = mark;
            return;
        }
    }
}

void lkv_log(lkv_log_level level, const char *event, const char *fields, ...)
{
    if (level > g_level)
        return;
    char raw[LINE_MAX_BYTES];
    size_t rn = 0;
    if (fields && *fields) {
        va_list ap;
        va_start(ap, fields);
        const int m = vsnprintf(raw, sizeof raw, fields, ap);
        va_end(ap);
        if (m > 0)
            rn = (size_t)m < sizeof raw ? (size_t)m : sizeof raw - 1;
    }

    char ts[96];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);

    static const char cut[] = ",\"truncated\":true";
    char line[2 * LINE_MAX_BYTES];
    /* Room is kept for the JSON cut mark and "}\n". */
    jbuf j = {.p = line, .n = 0, .cap = sizeof line - 2 - (sizeof cut - 1)};
    if (g_format == LKV_LOG_FORMAT_JSON) {
        jputs(&j, "{\"ts\":\"");
        jputs(&j, ts);
        jputs(&j, "\",\"level\":\"");
        jputs(&j, level_names[level]);
        jputs(&j, "\",\"event\":");
        jstring_raw(&j, event, strlen(event));
        fields_to_json(&j, raw, rn);
        if (j.full) {
            memcpy(line + j.n, cut, sizeof cut - 1);
            j.n += sizeof cut - 1;
        }
        line[j.n++] = '}';
    } else {
        jputs(&j, "ts=");
        jputs(&j, ts);
        jputs(&j, " level=");
        jputs(&j, level_names[level]);
        jputs(&j, " event=");
        jputs(&j, event);
        if (rn) {
            jput(&j, " ", 1);
            j.n += copy_no_controls(line + j.n, j.cap - j.n, raw, rn);
        }
    }
    line[j.n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, j.n);
    (void)w;
}
