/* SPDX-License-Identifier: Apache-2.0 */
/*
 * latticekv.c - entry point of the `latticekv` tool: a table of commands,
 * each implemented in its own file (cmd_codec.c for the offline codec, the
 * daemon commands beside it), plus the small helpers they share.
 *
 * Design note: it is built twice. `latticekv` (LKV_CLI_CODEC_ONLY) holds the
 * codec commands only and links no gRPC: loading and relocating gRPC,
 * protobuf and abseil, and running their static constructors, cost ~30 ms of
 * CPU and ~50 ms of wall time at every start, a third of a 2^20-vector
 * `codec encode` (issue 15). A daemon command there execs the sibling
 * `latticekv-service`, the whole tool, with the same arguments: one exec of
 * a small binary more, next to a network call.
 */
#include "cli.h"
#include "lkv_codec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef LKV_CLI_CODEC_ONLY
/* Run by latticekv-service: main() execs it for a command with no run. */
#define SERVICE_CMD(fn) NULL
#else
#define SERVICE_CMD(fn) fn
#endif

static const lkv_cli_cmd commands[] = {
    {"codec", lkv_cli_codec, "codec info|encode|decode|inspect ...     offline codec, no daemon"},
    {"put", SERVICE_CMD(lkv_cli_put),
     "put --addr ADDR --key KEY --in FILE ...  store a block in latticekvd"},
    {"get", SERVICE_CMD(lkv_cli_get), "get --addr ADDR --key KEY --out FILE ... read a block back"},
    {"lookup", SERVICE_CMD(lkv_cli_lookup),
     "lookup --addr ADDR --keys K1,K2,...       prefix hits of keys"},
    {"delete", SERVICE_CMD(lkv_cli_delete),
     "delete --addr ADDR --key KEY              drop a block"},
    {"push", SERVICE_CMD(lkv_cli_push),
     "push --addr ADDR --to DEST KEY...         daemon sends blocks to another"},
    {"pull", SERVICE_CMD(lkv_cli_pull),
     "pull --addr ADDR --from SRC KEY...        daemon fetches blocks from another"},
    {"stats", SERVICE_CMD(lkv_cli_stats),
     "stats --addr ADDR [--json]                the daemon's counters"},
    {"bench", SERVICE_CMD(lkv_cli_bench),
     "bench --addr ADDR [--clients N] ...       Put/Get speed, latency"},
    {"demo", SERVICE_CMD(lkv_cli_demo),
     "demo --addr ADDR                          ratio, error, throughput"},
    {"health", SERVICE_CMD(lkv_cli_health),
     "health --addr ADDR                        SERVING or NOT_SERVING"},
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

/* One-letter spellings of valueless long options: "-f" is --force. */
static const char *const short_alias[][2] = {{"-f", "force"}, {"-h", "help"}};
/* One-letter spellings of options with a value, zstd's way: "-T4" and
 * "-T 4" are --threads 4. */
static const char *const short_value_alias[][2] = {{"-T", "threads"}};

static const char *match(const char *arg, const char *name)
{
    for (size_t i = 0; i < sizeof short_alias / sizeof short_alias[0]; i++)
        if (strcmp(arg, short_alias[i][0]) == 0 && strcmp(name, short_alias[i][1]) == 0)
            return arg + 2; /* "", as for "--name" */
    for (size_t i = 0; i < sizeof short_value_alias / sizeof short_value_alias[0]; i++)
        if (strncmp(arg, short_value_alias[i][0], 2) == 0 &&
            strcmp(name, short_value_alias[i][1]) == 0)
            return arg + 2; /* "" (the value follows) or the value */
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

int lkv_cli_wants_help(int argc, char **argv)
{
    return lkv_cli_flag(argc, argv, "help");
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
    /* strtoull would take " 7", "+7" and "-7" (as a huge value); only plain
     * digits are numbers here. The message names the flag's real range. */
    const unsigned long long v = s && *s >= '0' && *s <= '9' ? strtoull(s, &end, 10) : 0;
    if (!end || *end) {
        lkv_cli_error(2, "--%s=%s is not a number (want %llu..%llu)", name, s ? s : "", lo, hi);
        return 0;
    }
    if (errno || v < lo || v > hi) {
        lkv_cli_error(2, "--%s=%s is outside %llu..%llu", name, s, lo, hi);
        return 0;
    }
    *out = v;
    return 1;
}

void *lkv_cli_read_file(const char *path, size_t *len)
{
    const int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        lkv_cli_error(1, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    /* A regular file is read into a buffer of its size (plus one byte to see
     * the end); pipes grow the buffer by doubling. */
    size_t cap = 1 << 16, n = 0;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        if ((unsigned long long)st.st_size >= (unsigned long long)SIZE_MAX) {
            lkv_cli_error(1, "cannot read %s: %lld bytes do not fit in memory", path,
                          (long long)st.st_size);
            if (!is_stdin)
                fclose(f);
            return NULL;
        }
        cap = (size_t)st.st_size + 1;
    }
    unsigned char *buf = malloc(cap);
    const char *why = NULL; /* the reason of a failure */
    size_t want = cap;      /* the size of the allocation that failed */
    while (buf) {
        const size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) {
            if (ferror(f)) {
                why = strerror(errno);
                free(buf);
                buf = NULL;
            }
            break;
        }
        want = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
        unsigned char *nb = want > cap ? realloc(buf, want) : NULL;
        if (!nb)
            free(buf);
        buf = nb;
        cap = want;
    }
    if (!is_stdin)
        fclose(f);
    if (!buf) {
        if (why)
            lkv_cli_error(1, "cannot read %s: %s", path, why);
        else
            lkv_cli_error(1, "cannot read %s: out of memory (allocating %zu bytes)", path, want);
        return NULL;
    }
    *len = n;
    return buf;
}

int lkv_cli_check_out(const char *path, int force)
{
    struct stat st;
    if (force || strcmp(path, "-") == 0 || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    return lkv_cli_error(1, "%s already exists; not overwritten (use -f/--force)", path);
}

int lkv_cli_write_file(const char *path, const void *buf, size_t len, int force)
{
    FILE *f = stdout;
    if (strcmp(path, "-") != 0) {
        /* Without --force a regular file is created only if none is there
         * (O_EXCL: no window between the check and the open); devices and
         * pipes (/dev/null, a FIFO) are written as they are. */
        struct stat st;
        int flags = O_WRONLY | O_CREAT | O_TRUNC;
        if (!force && (stat(path, &st) != 0 || S_ISREG(st.st_mode)))
            flags = O_WRONLY | O_CREAT | O_EXCL;
        const int fd = open(path, flags, 0666);
        if (fd < 0 && errno == EEXIST)
            return lkv_cli_check_out(path, 0) ? 1 : lkv_cli_error(1, "cannot create %s", path);
        if (fd < 0 || !(f = fdopen(fd, "wb"))) {
            const int e = errno;
            if (fd >= 0)
                close(fd);
            return lkv_cli_error(1, "cannot create %s: %s", path, strerror(e));
        }
    }
    const int bad = fwrite(buf, 1, len, f) != len;
    const int close_bad = f != stdout ? fclose(f) != 0 : fflush(f) != 0;
    if (bad || close_bad)
        return lkv_cli_error(1, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

void lkv_cli_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(f, "\\u%04x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

static void usage(FILE *out)
{
    fputs("usage: latticekv COMMAND [ARGS]\n\ncommands:\n", out);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %s\n", commands[i].usage);
    fputs("\nThe daemon commands take --addr ADDR (host:port or unix:PATH; default "
          "127.0.0.1:50051),\n"
          "--timeout-ms MS (each call's deadline; default 10000, 0 = none) and --keepalive-ms MS\n"
          "(ping interval while a call waits; default 30000, 0 = no pings), and for a daemon\n"
          "with TLS or tokens --tls-ca FILE, --tls-cert FILE, --tls-key FILE and --token-file\n"
          "FILE (or $LATTICEKV_TOKEN).\n"
          "Outputs that exist are not overwritten without -f/--force.\n"
          "`latticekv COMMAND --help` describes one command; `latticekv --version` prints the\n"
          "version of the tool and of its codec library.\n",
          out);
}

#ifdef LKV_CLI_CODEC_ONLY
/* Replaces this process by latticekv-service in this binary's folder with
 * the same argv; returns only on failure (exit status 2, the path named). */
static int exec_service(char **argv)
{
    static const char name[] = "latticekv-service";
    char path[PATH_MAX];
    const ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0)
        return lkv_cli_error(2,
                             "command '%s': cannot find this program's folder "
                             "(/proc/self/exe): %s",
                             argv[1], strerror(errno));
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    const size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
    if (dir_len + sizeof name > sizeof path)
        return lkv_cli_error(2, "command '%s': program path too long", argv[1]);
    memcpy(path + dir_len, name, sizeof name);
    execv(path, argv);
    return lkv_cli_error(2, "command '%s' runs %s, which cannot be started: %s", argv[1], path,
                         strerror(errno));
}
#endif

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
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("latticekv %s\n", lkv_version_string());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) {
#ifdef LKV_CLI_CODEC_ONLY
            if (!commands[i].run)
                return exec_service(argv);
#endif
            return commands[i].run(argc - 2, argv + 2);
        }
    lkv_cli_error(2, "unknown command '%s'", argv[1]);
    usage(stderr);
    return 2;
}
