/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tiers_bench.h - what the rooms of tiers_bench share.
 *
 *   tiers_bench.c  options, the cells (Put phase, Get phase, what each tier
 *                  holds afterwards) and the JSON rows
 *   tb_tcp.c       raw TCP throughput across the shaped link, and its server
 */
#ifndef LKV_TIERS_BENCH_H
#define LKV_TIERS_BENCH_H

#include <stddef.h>
#include <stdint.h>

#define TB_MAX_CLIENTS 64

/* Monotonic seconds. */
double tb_now(void);

/* Prints "tiers_bench: error: ...", exits 1. */
void tb_die(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;

/* "IPv4:PORT" -> host, port; 0, or -1 when malformed. */
int tb_parse_hostport(const char *s, char *host, size_t cap, int *port);

/* The server side of the TCP test; runs until killed or max_seconds. */
int tb_tcp_serve(const char *hostport, unsigned max_seconds);
/* Upload then download with `streams` connections for `seconds` each; the
 * rates in Gbit/s (1e9 bit/s). Dies when a stream fails. */
void tb_tcp_test(const char *hostport, unsigned streams, double seconds, double *up_gbit,
                 double *down_gbit);

#endif /* LKV_TIERS_BENCH_H */
