/* SPDX-License-Identifier: Apache-2.0 */
/* lkv_log.h - structured log lines on stderr (log.c). */
#ifndef LKV_LOG_H
#define LKV_LOG_H

#include <stddef.h>

typedef enum lkv_log_level {
    LKV_LOG_ERROR = 0,
    LKV_LOG_WARN = 1,
    LKV_LOG_INFO = 2,
    LKV_LOG_DEBUG = 3
} lkv_log_level;

typedef enum lkv_log_format { LKV_LOG_FORMAT_KV = 0, LKV_LOG_FORMAT_JSON = 1 } lkv_log_format;

void lkv_log_set_level(lkv_log_level level);
/* key=value lines (the default) or one JSON object per line. */
void lkv_log_set_format(lkv_log_format format);
int lkv_log_enabled(lkv_log_level level);
/* One line: "ts=... level=info event=<event> <fields>\n"; fields is printf-style
 * "key=value ..." text where a value is a bare word (numbers, names the daemon
 * chose) or a string quoted by lkv_log_quote. Control bytes that reach the
 * formatted fields anyway are escaped, so no value can start a new line.
 * Safe from any thread (one write per line). */
void lkv_log(lkv_log_level level, const char *event, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Every value a client chose (namespace, key, a message naming them) is
 * logged through this: writes src (len bytes, any bytes) into dst as a
 * double-quoted string, escaping '"', '\\', \n, \r, \t and every other byte
 * outside printable ASCII as \xNN, and cutting it with "..." before the
 * closing quote when it does not fit cap. Returns dst, for use as a %s
 * argument: lkv_log(..., "namespace=%s", lkv_log_quote(q, sizeof q, ns, n)).
 */
#define LKV_LOG_QUOTE_MAX 320
const char *lkv_log_quote(char *dst, size_t cap, const void *src, size_t len);
/* The same for a NUL-terminated string (NULL logs as ""). */
const char *lkv_log_quote_str(char *dst, size_t cap, const char *s);

#endif
