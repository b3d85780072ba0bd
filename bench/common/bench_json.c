/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_json.c - the results files' JSON writer (layout in lkv_bench.h).
 * It keeps one flag per open container (block or inline, array or object)
 * and a member count, which is all it takes to place commas, line breaks
 * and indentation; values are escaped here so that a CPU name or a command
 * line with a quote cannot break a results file.
 */
#include "lkv_bench.h"

#include <math.h>

void lkv_json_write_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void indent(lkv_json *j, int level)
{
    fputc('\n', j->f);
    for (int i = 0; i < level; i++)
        fputs("  ", j->f);
}

/* The separator and key before a member of the innermost container. */
static void member(lkv_json *j, const char *key)
{
    const int d = j->depth;
    if (d > 0) {
        if (j->count[d]++)
            fputc(',', j->f);
        if (j->inline_[d]) {
            if (j->count[d] > 1)
                fputc(' ', j->f);
        } else {
            indent(j, d);
        }
    }
    if (key && !(d > 0 && j->is_array[d])) {
        lkv_json_write_string(j->f, key);
        fputs(": ", j->f);
    }
}

static void open_container(lkv_json *j, const char *key, lkv_json_layout layout, int array)
{
    member(j, key);
    fputc(array ? '[' : '{', j->f);
    if (j->depth + 1 >= LKV_JSON_MAX_DEPTH)
        return; /* a programming error; the writer stays at this depth */
    const int d = ++j->depth;
    j->inline_[d] = (unsigned char)(layout == LKV_JSON_INLINE || (d > 1 && j->inline_[d - 1]));
    j->is_array[d] = (unsigned char)array;
    j->count[d] = 0;
}

void lkv_json_start(lkv_json *j, FILE *f)
{
    j->f = f;
    j->depth = 0;
    open_container(j, NULL, LKV_JSON_BLOCK, 0);
}

void lkv_json_object(lkv_json *j, const char *key, lkv_json_layout layout)
{
    open_container(j, key, layout, 0);
}

void lkv_json_array(lkv_json *j, const char *key, lkv_json_layout layout)
{
    open_container(j, key, layout, 1);
}

void lkv_json_end(lkv_json *j)
{
    const int d = j->depth;
    if (d <= 0)
        return;
    if (!j->inline_[d] && j->count[d])
        indent(j, d - 1);
    fputc(j->is_array[d] ? ']' : '}', j->f);
    j->depth--;
}

void lkv_json_str(lkv_json *j, const char *key, const char *v)
{
    member(j, key);
    lkv_json_write_string(j->f, v ? v : "");
}

void lkv_json_int(lkv_json *j, const char *key, long long v)
{
    member(j, key);
    fprintf(j->f, "%lld", v);
}

void lkv_json_uint(lkv_json *j, const char *key, unsigned long long v)
{
    member(j, key);
    fprintf(j->f, "%llu", v);
}

void lkv_json_num(lkv_json *j, const char *key, const char *fmt, double v)
{
    member(j, key);
    if (isfinite(v))
        fprintf(j->f, fmt, v);
    else
        fputs("null", j->f);
}

int lkv_json_finish(lkv_json *j)
{
    while (j->depth > 0)
        lkv_json_end(j);
    fputc('\n', j->f);
    return fflush(j->f) == 0 && !ferror(j->f) ? 0 : -1;
}
