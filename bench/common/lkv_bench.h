/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_bench.h - the parts the benchmarks share (library lkv_bench_common).
 *
 * Each benchmark in bench/ is an ordinary program that prints a table and
 * writes JSON with the machine's name; what they have in common lives here,
 * written once:
 *   - a seeded PRNG (xoshiro256**, seeded through splitmix64) with uniform
 *     and standard-normal draws, so every input is reproducible bit for bit
 *     on any machine;
 *   - sorting, nearest-rank quantiles, medians and a growable sample list;
 *   - machine probes: the CPU's model name, family and model number, the
 *     online core count, the load average, a file-name slug and the date;
 *   - a small streaming JSON writer that escapes strings and writes the
 *     layout the results files use (one member per line, rows on one line).
 * Nothing here allocates behind the caller's back except the sample list,
 * and nothing is thread-safe beyond "one object per thread".
 */
#ifndef LKV_BENCH_H
#define LKV_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ------------------------------------------------------------------------ */
/* Random numbers                                                            */
/* ------------------------------------------------------------------------ */

/* splitmix64: adds the golden-ratio increment to *state and returns the
 * mixed value. Used to expand one seed into a generator's state. */
uint64_t lkv_bench_splitmix64(uint64_t *state);

/* xoshiro256** (Blackman and Vigna) with a spare normal for Box-Muller. */
typedef struct lkv_bench_rng {
    uint64_t s[4];
    int has_spare;
    double spare;
} lkv_bench_rng;

/* State = four successive splitmix64 outputs from `seed`. */
void lkv_bench_rng_seed(lkv_bench_rng *r, uint64_t seed);
uint64_t lkv_bench_rng_next(lkv_bench_rng *r);
/* Uniform in (0, 1]: never 0, so log() of it is always finite. */
double lkv_bench_rng_uniform(lkv_bench_rng *r);
/* Standard normal (Box-Muller; every second call returns the spare). */
double lkv_bench_rng_normal(lkv_bench_rng *r);

/* ------------------------------------------------------------------------ */
/* Statistics                                                                */
/* ------------------------------------------------------------------------ */

/* qsort comparator of doubles, ascending. */
int lkv_bench_cmp_double(const void *a, const void *b);
void lkv_bench_sort(double *v, size_t n);
/* The q-quantile (0..1) of n sorted values by nearest rank: the value at
 * rank ceil(q n) (1-based). 0 when n is 0. */
double lkv_bench_quantile(const double *sorted, size_t n, double q);
/* Sorts v and returns its median (the mean of the middle two for even n);
 * 0 when n is 0. */
double lkv_bench_median(double *v, size_t n);

/* A growable list of samples (e.g. one client's latencies). Zero-initialise. */
typedef struct lkv_bench_samples {
    double *v;
    size_t n, cap;
} lkv_bench_samples;

/* Appends x; 0, or -1 when out of memory (the list is unchanged). */
int lkv_bench_samples_push(lkv_bench_samples *s, double x);
/* Frees the list and zeroes it. */
void lkv_bench_samples_free(lkv_bench_samples *s);

/* ------------------------------------------------------------------------ */
/* The machine                                                               */
/* ------------------------------------------------------------------------ */

/* From /proc/cpuinfo: the first "model name", "cpu family" and "model".
 * Absent fields read "unknown-cpu" and -1. */
typedef struct lkv_bench_cpu {
    char model[256];
    int family, model_number;
} lkv_bench_cpu;

void lkv_bench_cpu_probe(lkv_bench_cpu *cpu);
/* Online cores (sysconf). */
long lkv_bench_cores(void);
/* The 1-minute load average (/proc/loadavg); 0 when unreadable. */
double lkv_bench_loadavg(void);
/* "AMD EPYC 9654 96-Core Processor" -> "amd-epyc-9654-96-core-processor":
 * lower-case letters and digits, one '-' for each run of anything else,
 * none at either end. */
void lkv_bench_slug(const char *in, char *out, size_t cap);
/* The current UTC time through strftime's `fmt` (e.g. "%Y-%m-%dT%H:%M:%SZ"). */
void lkv_bench_utc(char *out, size_t cap, const char *fmt);
/* Monotonic seconds. */
double lkv_bench_now_s(void);

/*
 * Sets up a process that runs many client threads moving blocks of up to a
 * few MiB, the same way in every benchmark, so a figure measures the systems
 * and not the client's allocator or poller: glibc's mmap threshold to 64 MiB
 * and trim threshold to 256 MiB (with the defaults every block above 128 KiB
 * is a fresh mmap, page-faulted on first touch and unmapped when freed: on
 * this VM that halved Get throughput through the C client), and gRPC's
 * "poll" engine unless GRPC_POLL_STRATEGY is set (the default epoll1 lets one
 * thread poll for all of them). Call it first in main, before any gRPC call.
 * Returns 1 when it chose the poll engine, 0 when the caller's setting stood.
 */
int lkv_bench_tune_clients(void);

/* ------------------------------------------------------------------------ */
/* JSON                                                                      */
/* ------------------------------------------------------------------------ */

/*
 * A streaming writer. Containers are "block" (one member per line, indented
 * two spaces per level) or "inline" (members on one line, ", " between);
 * an inline container's members are all inline. Keys are NULL inside
 * arrays and required inside objects. Strings are escaped; a number that
 * is not finite is written as null. lkv_json_finish closes what is open
 * and reports whether every write reached the file.
 *
 *   lkv_json j;
 *   lkv_json_start(&j, f);                        // {
 *   lkv_json_str(&j, "bench", "x");               //   "bench": "x",
 *   lkv_json_array(&j, "rows", LKV_JSON_BLOCK);    //   "rows": [
 *   lkv_json_object(&j, NULL, LKV_JSON_INLINE);    //     {"n": 1}
 *   lkv_json_int(&j, "n", 1);
 *   lkv_json_end(&j);                             //   ]
 *   lkv_json_end(&j);
 *   lkv_json_finish(&j);                          // }
 */
#define LKV_JSON_MAX_DEPTH 16

typedef enum { LKV_JSON_BLOCK = 0, LKV_JSON_INLINE = 1 } lkv_json_layout;

typedef struct lkv_json {
    FILE *f;
    int depth;
    unsigned char inline_[LKV_JSON_MAX_DEPTH];
    unsigned char is_array[LKV_JSON_MAX_DEPTH];
    size_t count[LKV_JSON_MAX_DEPTH];
} lkv_json;

/* Begins the top-level object (block layout) on f. */
void lkv_json_start(lkv_json *j, FILE *f);
void lkv_json_object(lkv_json *j, const char *key, lkv_json_layout layout);
void lkv_json_array(lkv_json *j, const char *key, lkv_json_layout layout);
/* Closes the innermost open container. */
void lkv_json_end(lkv_json *j);
void lkv_json_str(lkv_json *j, const char *key, const char *v);
void lkv_json_int(lkv_json *j, const char *key, long long v);
void lkv_json_uint(lkv_json *j, const char *key, unsigned long long v);
/* v through printf's `fmt` (one double conversion, e.g. "%.4f"). */
void lkv_json_num(lkv_json *j, const char *key, const char *fmt, double v);
/* Closes every open container, ends the line and flushes: 0 when all was
 * written, -1 on a write error. Does not close f. */
int lkv_json_finish(lkv_json *j);
/* Writes s as a JSON string literal (quotes, escapes). */
void lkv_json_write_string(FILE *f, const char *s);

#endif /* LKV_BENCH_H */
