/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli.h - the commands of the `latticekv` command-line tool.
 *
 * Each command is a function taking the arguments after its own name and
 * returning the process exit status: 0 on success, 1 when the work failed
 * (bad data, daemon error), 2 on a usage error. Errors are printed as one
 * line on stderr by lkv_cli_error.
 */
#ifndef LKV_CLI_H
#define LKV_CLI_H

#include <stddef.h>

typedef struct lkv_cli_cmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage; /* one line, shown by `latticekv --help` */
} lkv_cli_cmd;

/* Prints "latticekv: error: <message>" on stderr; returns `code`. */
int lkv_cli_error(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/*
 * A minimal long-option scanner shared by all commands: accepts
 * "--name value" and "--name=value". lkv_cli_opt returns the value of the
 * last occurrence of --name (NULL when absent); lkv_cli_flag returns 1 when
 * a valueless --name is present. lkv_cli_check rejects options not in the
 * NULL-terminated `known` list (names without "--"); `flags` lists the ones
 * that take no value. "-f" and "-h" spell the flags --force and --help.
 */
const char *lkv_cli_opt(int argc, char **argv, const char *name);
int lkv_cli_flag(int argc, char **argv, const char *name);
int lkv_cli_check(int argc, char **argv, const char *const *known, const char *const *flags);
/* 1 when --help (or -h) is among the arguments: every command checks this
 * first and prints its usage on stdout, exit 0. */
int lkv_cli_wants_help(int argc, char **argv);
/* Parses an unsigned decimal option that must lie in lo..hi, the flag's
 * real range (the error names it); returns 0 and prints an error when bad. */
int lkv_cli_u64(const char *name, const char *s, unsigned long long lo, unsigned long long hi,
                unsigned long long *out);

/* Reads a whole file into a malloc'd buffer; NULL on failure, after an
 * error line naming the file and the reason (errno text, out of memory). */
void *lkv_cli_read_file(const char *path, size_t *len);
/* 0 when `path` may be written: "-", absent, not a regular file, or force;
 * else prints "PATH already exists; not overwritten" and returns 1. Commands
 * call it before doing work, so a refusal costs nothing. */
int lkv_cli_check_out(const char *path, int force);
/* Writes len bytes to path ("-" = stdout); 0 on success. An existing regular
 * file is replaced only with force (checked atomically at open). */
int lkv_cli_write_file(const char *path, const void *buf, size_t len, int force);

/* Offline codec commands: `latticekv codec info|encode|decode|roundtrip`. */
int lkv_cli_codec(int argc, char **argv);

/* Daemon commands (cmd_daemon.c), all with --addr ADDR. */
int lkv_cli_put(int argc, char **argv);
int lkv_cli_get(int argc, char **argv);
int lkv_cli_lookup(int argc, char **argv);
int lkv_cli_delete(int argc, char **argv);
int lkv_cli_stats(int argc, char **argv);
int lkv_cli_bench(int argc, char **argv);
int lkv_cli_demo(int argc, char **argv);
int lkv_cli_health(int argc, char **argv);

#endif /* LKV_CLI_H */
