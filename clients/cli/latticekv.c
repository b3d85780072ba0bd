/*
 * latticekv.c - entry point of the `latticekv` tool: a table of commands,
 * each implemented in its own file (cmd_codec.c for the offline codec, the
 * daemon commands beside it), plus the small helpers they share.
 */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const lkv_cli_cmd commands[] = {
    {"codec", lkv_cli_codec, "codec info|encode|decode|roundtrip ...   offline codec, no daemon"},
    {"put", lkv_cli_put, "put --addr ADDR --key KEY --in FILE ...  store a block in latticekvd"},
    {"get", lkv_cli_get, "get --addr ADDR --key KEY --out FILE ... read a block back"},
    {"lookup", lkv_cli_lookup, "lookup --addr ADDR --keys K1,K2,...       prefix hits of keys"},
    {"delete", lkv_cli_delete, "delete --addr ADDR --key KEY              drop a block"},
    {"stats", lkv_cli_stats, "stats --addr ADDR [--json]                the daemon's counters"},
    {"bench", lkv_cli_bench, "bench --addr ADDR [--clients N] ...       Put/Get speed, latency"},
    {"demo", lkv_cli_demo, "demo --addr ADDR                          ratio, error, throughput"},
};

int lkv_cli_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("latticekv: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

static const char *match(const char *arg, const char *name)
{
    if (strncmp(arg, "--", 2) != 0)
        return NULL;
    const size_t n = strlen(name);
    if (strncmp(arg + 2, name, n) != 0)
        return NULL;
    if (arg[2 + n] == '\0')
        return arg + 2 + n;
    if (arg[2 + n] == '=')
        return arg + 3 + n;
    return NULL;
}

const char *lkv_cli_opt(int argc, char **argv, const char *name)
{
    const char *val = NULL;
    for (int i = 0; i < argc; i++) {
        const char *m = match(argv[i], name);
        if (!m)
            continue;
        if (*m)
            val = m;
        else if (i + 1 < argc)
            val = argv[++i];
    }
    return val;
}

int lkv_cli_flag(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc; i++) {
        const char *m = match(argv[i], name);
        if (m && *m == '\0')
            return 1;
    }
    return 0;
}

static int in_list(const char *arg, const char *const *list, int *takes_value)
{
    for (size_t i = 0; list && list[i]; i++) {
        const char *m = match(arg, list[i]);
        if (m) {
            *takes_value = *m == '\0';
            return 1;
        }
    }
    return 0;
}

int lkv_cli_check(int argc, char **argv, const char *const *known, const char *const *flags)
{
    for (int i = 0; i < argc; i++) {
        int takes = 0;
        if (in_list(argv[i], flags, &takes))
            continue;
        if (in_list(argv[i], known, &takes)) {
            if (takes) {
                if (i + 1 >= argc)
                    return lkv_cli_error(2, "option %s needs a value", argv[i]);
                i++;
            }
            continue;
        }
        return lkv_cli_error(2, "unknown argument '%s'", argv[i]);
    }
    return 0;
}

int lkv_cli_u64(const char *name, const char *s, unsigned long long lo, unsigned long long hi,
                unsigned long long *out)
{
    char *end = NULL;
    errno = 0;
    if (!s || !*s || *s == '-') {
        lkv_cli_error(2, "--%s needs a number, got '%s'", name, s ? s : "");
        return 0;
    }
    const unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi) {
        lkv_cli_error(2, "--%s=%s is not a number in %llu..%llu", name, s, lo, hi);
        return 0;
    }
    *out = v;
    return 1;
}

void *lkv_cli_read_file(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        lkv_cli_error(1, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        const size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) {
            if (ferror(f)) {
                lkv_cli_error(1, "cannot read %s: %s", path, strerror(errno));
                free(buf);
                buf = NULL;
            }
            break;
        }
        unsigned char *nb = realloc(buf, cap * 2);
        if (!nb)
            free(buf);
        buf = nb;
        cap *= 2;
    }
    if (f != stdin)
        fclose(f);
    if (!buf) {
        lkv_cli_error(1, "cannot read %s", path);
        return NULL;
    }
    *len = n;
    return buf;
}

int lkv_cli_write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "wb");
    if (!f)
        return lkv_cli_error(1, "cannot create %s: %s", path, strerror(errno));
    const int bad = fwrite(buf, 1, len, f) != len;
    const int close_bad = f != stdout ? fclose(f) != 0 : fflush(f) != 0;
    if (bad || close_bad)
        return lkv_cli_error(1, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

static void usage(FILE *out)
{
    fputs("usage: latticekv COMMAND [ARGS]\n\ncommands:\n", out);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %s\n", commands[i].usage);
    fputs("\n`latticekv COMMAND --help` describes one command.\n", out);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 2, argv + 2);
    lkv_cli_error(2, "unknown command '%s'", argv[1]);
    usage(stderr);
    return 2;
}
