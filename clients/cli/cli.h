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

#include "lkv_codec.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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

/*
 * The streaming engine of `codec encode|decode|roundtrip` (stream.c): reads
 * `in`, writes `out` ("-" = stdin/stdout) chunk by chunk on `threads`
 * threads (0 = one per core), with buffers bounded whatever the input size.
 * The output bytes are those of the one-shot lkv_compress/lkv_decompress.
 * Prints its own error line; returns the exit status (0, 1).
 */
typedef enum lkv_stream_mode {
    LKV_STREAM_ENCODE = 0,
    LKV_STREAM_DECODE = 1,
    LKV_STREAM_ROUNDTRIP = 2
} lkv_stream_mode;

typedef struct lkv_stream_job {
    lkv_stream_mode mode;
    const char *in, *out;
    int force;
    unsigned threads;
    lkv_isa isa;
    int progress;          /* redraw a progress line on stderr (a terminal) */
    size_t chunk_vectors;  /* 0 = sized from the memory budget */
    lkv_params params;     /* encode, roundtrip */
    lkv_dtype in_dtype;    /* encode, roundtrip */
    const uint64_t *shape; /* encode, roundtrip: NULL = [n, dim] */
    uint32_t ndim;
    int out_dtype; /* decode, roundtrip: 0 = the source's */
} lkv_stream_job;

typedef struct lkv_stream_result {
    uint64_t n_vectors;
    uint64_t in_bytes, out_bytes; /* vector bytes read and written (no header) */
    size_t coded_bytes;           /* the container's size */
    double sq_err, sq_ref;        /* roundtrip: sum (x - x')^2 and sum x^2 */
    unsigned threads;             /* worker threads used */
    lkv_container_info info;
} lkv_stream_result;

int lkv_cli_stream(const lkv_stream_job *job, lkv_stream_result *res);
/* The same for codec profile 2 (stream_p2.c), sequential on one thread:
 * lkv_cli_stream hands it the open input (positioned after the header, for
 * decode, with the parsed header in info; NULL otherwise). */
int lkv_cli_stream_p2(const lkv_stream_job *job, lkv_stream_result *res, int in_fd,
                      const lkv_container_info *info);
/* CPUs this process may run on (its affinity mask). */
unsigned lkv_cli_cores(void);

/* `codec inspect`: the header of a container file (or "-") and what its
 * records hash to. Returns 1 (after an error line) when the file cannot be
 * read, else 0 with header_status saying whether the header holds; when it
 * does, payload_crc is the CRC32C of the first total_bytes - header_bytes
 * record bytes and file_bytes the whole length, for the caller to judge. */
typedef struct lkv_inspect_result {
    lkv_status header_status;
    lkv_diag diag; /* why the header does not hold */
    lkv_container_info info;
    uint64_t file_bytes;
    uint32_t payload_crc;
} lkv_inspect_result;

int lkv_cli_inspect(const char *path, lkv_inspect_result *r);

/* Writes s as a JSON string literal (quotes, escapes). */
void lkv_cli_json_string(FILE *f, const char *s);

/* Offline codec commands: `latticekv codec info|encode|decode|roundtrip|inspect`. */
int lkv_cli_codec(int argc, char **argv);

/* Daemon commands (cmd_daemon.c), all with --addr ADDR. */
int lkv_cli_put(int argc, char **argv);
int lkv_cli_get(int argc, char **argv);
int lkv_cli_lookup(int argc, char **argv);
int lkv_cli_push(int argc, char **argv);
int lkv_cli_pull(int argc, char **argv);
int lkv_cli_delete(int argc, char **argv);
int lkv_cli_stats(int argc, char **argv);
int lkv_cli_bench(int argc, char **argv);
int lkv_cli_demo(int argc, char **argv);
int lkv_cli_health(int argc, char **argv);

#endif /* LKV_CLI_H */
