/*
 * log.c - structured log lines: one event per line, key=value pairs.
 *
 * Design note. Every line starts with "ts=<UTC ISO-8601 ms> level=<l>
 * event=<name>" so a log shipper can split it without a grammar. The line is
 * formatted into one buffer and written with one write(2), which keeps
 * lines from different threads (loop, completion queue, workers) whole
 * without a lock. Values that may hold spaces are quoted by the caller.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lkv_server.h"

static lkv_log_level g_level = LKV_LOG_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void lkv_log_set_level(lkv_log_level level)
{
    g_level = level;
}

int lkv_log_enabled(lkv_log_level level)
{
    return level <= g_level;
}

void lkv_log(lkv_log_level level, const char *event, const char *fields, ...)
{
    if (level > g_level)
        return;
    char line[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level], event);
    if (fields && *fields && n > 0 && (size_t)n < sizeof line - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fields);
        const int m = vsnprintf(line + n, sizeof line - (size_t)n, fields, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
