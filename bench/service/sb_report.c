/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sb_report.c - what service_bench reports: for each cell the round with
 * the median throughput (all servers run for the whole bench and every
 * round visits every system in turn, so that load from other processes on
 * a shared machine hits all systems alike), a table per cell, a Put+Get
 * table per block size and client count, and the JSON results file.
 */
#include "service_bench.h"

#include "lkv_bench.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

size_t sb_median_rounds(const result *runs, size_t nruns, int rounds, result *rs)
{
    const size_t per_round = nruns / (size_t)rounds;
    for (size_t i = 0; i < per_round; i++) {
        result r[MAX_ROUNDS];
        for (int k = 0; k < rounds; k++)
            r[k] = runs[(size_t)k * per_round + i];
        for (int a = 1; a < rounds; a++) /* insertion sort by throughput */
            for (int b = a; b > 0 && r[b].gbps < r[b - 1].gbps; b--) {
                const result t = r[b];
                r[b] = r[b - 1];
                r[b - 1] = t;
            }
        rs[i] = r[rounds / 2];
        rs[i].min_gbps = r[0].gbps;
        rs[i].max_gbps = r[rounds - 1].gbps;
    }
    return per_round;
}

static const result *find(const result *rs, size_t n, sys_id s, op_id op, int t, int c)
{
    for (size_t i = 0; i < n; i++)
        if (rs[i].sys == s && rs[i].op == op && rs[i].tokens == t && rs[i].clients == c)
            return &rs[i];
    return NULL;
}

/* Put+Get rate: both directions' bytes over the time of one Put plus one Get. */
static double put_get(const result *rs, size_t n, sys_id s, int t, int c)
{
    if (s == SYS_ECHO) {
        const result *e = find(rs, n, s, OP_ECHO, t, c);
        return e ? e->gbps : 0;
    }
    const result *p = find(rs, n, s, OP_PUT, t, c), *g = find(rs, n, s, OP_GET, t, c);
    return p && g && p->gbps > 0 && g->gbps > 0 ? 2.0 / (1.0 / p->gbps + 1.0 / g->gbps) : 0;
}

/* One row of the Put+Get table: each system, then the ratios. */
typedef struct pg_row {
    double lkv, nb, stream, echo, raw, redis;
} pg_row;

static pg_row pg(const result *rs, size_t nr, int t, int c)
{
    return (pg_row){put_get(rs, nr, SYS_LKV, t, c),        put_get(rs, nr, SYS_LKV_NB, t, c),
                    put_get(rs, nr, SYS_LKV_STREAM, t, c), put_get(rs, nr, SYS_ECHO, t, c),
                    put_get(rs, nr, SYS_RAW, t, c),        put_get(rs, nr, SYS_REDIS, t, c)};
}

static double ratio(double a, double b)
{
    return b > 0 ? a / b : 0;
}

void sb_print_tables(const sb_run_info *ri, const result *rs, size_t nr)
{
    printf("service_bench on %s (%ld cores), median of %d rounds of %.1f s per cell;\n"
           "block = K,V x T tokens x %d heads x %d, bf16\n\n",
           ri->cpu, ri->cores, ri->rounds, ri->seconds, HEADS, DIM);
    printf("%-16s %-4s %6s %7s %9s %15s %9s %9s %9s %8s %8s %6s %6s\n", "system", "op", "tokens",
           "clients", "GB/s", "(min..max)", "calls/s", "p50 ms", "p99 ms", "srv us", "cli us",
           "idle%", "other%");
    for (size_t i = 0; i < nr; i++)
        printf("%-16s %-4s %6d %7d %9.3f %7.3f..%-7.3f %9.0f %9.3f %9.3f %8.1f %8.1f %6.1f %6.1f\n",
               sb_sys_name[rs[i].sys], sb_op_name[rs[i].op], rs[i].tokens, rs[i].clients,
               rs[i].gbps, rs[i].min_gbps, rs[i].max_gbps, rs[i].calls_per_s, rs[i].p50_ms,
               rs[i].p99_ms, rs[i].server_us, rs[i].client_us, rs[i].idle_pct, rs[i].other_pct);
    printf("\nsrv us / cli us: CPU microseconds per call of the server process / of this process\n"
           "(the clients); idle%% / other%%: the\n"
           "machine's idle share and the share used by other processes during the cell.\n");
    printf("\nPut+Get GB/s (bf16 in + out); stream = %d blocks per PutStream/GetStream call\n"
           "%6s %7s %10s %12s %8s %10s %9s %8s %10s %10s %12s %9s\n",
           STREAM_BLOCKS, "tokens", "clients", "latticekv", "latticekv-nb", "stream", "grpc-echo",
           "grpc-raw", "redis", "lkv/redis", "batch gain", "stream/redis", "raw/redis");
    for (int ti = 0; ti < ri->n_tokens; ti++)
        for (int ci = 0; ci < ri->n_clients; ci++) {
            const int t = ri->tokens[ti], c = ri->clients[ci];
            const pg_row p = pg(rs, nr, t, c);
            printf("%6d %7d %10.3f %12.3f %8.3f %10.3f %9.3f %8.3f %10.2f %10.2f %12.2f %9.2f\n", t,
                   c, p.lkv, p.nb, p.stream, p.echo, p.raw, p.redis, ratio(p.lkv, p.redis),
                   ratio(p.lkv, p.nb), ratio(p.stream, p.redis), ratio(p.raw, p.redis));
        }
}

void sb_write_json(const char *path, const sb_run_info *ri, const result *rs, size_t nr)
{
    FILE *f = fopen(path, "w");
    if (!f)
        sb_die("cannot write %s: %s", path, strerror(errno));
    char date[32], stream_how[96];
    lkv_bench_utc(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ");
    lkv_json j;
    lkv_json_start(&j, f);
    lkv_json_str(&j, "bench", "service_bench");
    lkv_json_str(&j, "cpu", ri->cpu);
    lkv_json_int(&j, "cores", ri->cores);
    lkv_json_str(&j, "date", date);
    lkv_json_str(&j, "backend", ri->backend);
    lkv_json_num(&j, "seconds_per_cell", "%.2f", ri->seconds);
    lkv_json_int(&j, "rounds", ri->rounds);
    lkv_json_num(&j, "load_average_at_start", "%.2f", ri->load_start);
    lkv_json_object(&j, "block", LKV_JSON_INLINE);
    lkv_json_int(&j, "kv", 2);
    lkv_json_int(&j, "heads", HEADS);
    lkv_json_int(&j, "head_dim", DIM);
    lkv_json_str(&j, "dtype", "bf16");
    lkv_json_end(&j);
    lkv_json_object(&j, "batching", LKV_JSON_INLINE);
    lkv_json_str(&j, "latticekv", "--batch-max-wait-us 200");
    lkv_json_str(&j, "latticekv-nb", "--batch-max-wait-us 0");
    snprintf(stream_how, sizeof stream_how,
             "--batch-max-wait-us 200, %d blocks per PutStream/GetStream call", STREAM_BLOCKS);
    lkv_json_str(&j, "latticekv-stream", stream_how);
    lkv_json_end(&j);
    lkv_json_array(&j, "cells", LKV_JSON_BLOCK);
    for (size_t i = 0; i < nr; i++) {
        const result *r = &rs[i];
        lkv_json_object(&j, NULL, LKV_JSON_INLINE);
        lkv_json_str(&j, "system", sb_sys_name[r->sys]);
        lkv_json_str(&j, "op", sb_op_name[r->op]);
        lkv_json_int(&j, "tokens", r->tokens);
        lkv_json_int(&j, "clients", r->clients);
        lkv_json_int(&j, "block_bytes", 2 * r->tokens * HEADS * DIM * 2);
        lkv_json_uint(&j, "calls", r->calls);
        lkv_json_num(&j, "seconds", "%.4f", r->seconds);
        lkv_json_num(&j, "gbps_bf16", "%.4f", r->gbps);
        lkv_json_num(&j, "gbps_min", "%.4f", r->min_gbps);
        lkv_json_num(&j, "gbps_max", "%.4f", r->max_gbps);
        lkv_json_num(&j, "calls_per_s", "%.1f", r->calls_per_s);
        lkv_json_num(&j, "p50_ms", "%.4f", r->p50_ms);
        lkv_json_num(&j, "p99_ms", "%.4f", r->p99_ms);
        lkv_json_num(&j, "server_cpu_us_per_call", "%.1f", r->server_us);
        lkv_json_num(&j, "client_cpu_us_per_call", "%.1f", r->client_us);
        lkv_json_num(&j, "idle_pct", "%.1f", r->idle_pct);
        lkv_json_num(&j, "other_pct", "%.1f", r->other_pct);
        lkv_json_end(&j);
    }
    lkv_json_end(&j);
    lkv_json_array(&j, "put_get_gbps", LKV_JSON_BLOCK);
    for (int ti = 0; ti < ri->n_tokens; ti++)
        for (int ci = 0; ci < ri->n_clients; ci++) {
            const int t = ri->tokens[ti], c = ri->clients[ci];
            const pg_row p = pg(rs, nr, t, c);
            lkv_json_object(&j, NULL, LKV_JSON_INLINE);
            lkv_json_int(&j, "tokens", t);
            lkv_json_int(&j, "clients", c);
            lkv_json_num(&j, "latticekv", "%.4f", p.lkv);
            lkv_json_num(&j, "latticekv_nb", "%.4f", p.nb);
            lkv_json_num(&j, "latticekv_stream", "%.4f", p.stream);
            lkv_json_num(&j, "grpc_echo", "%.4f", p.echo);
            lkv_json_num(&j, "grpc_raw", "%.4f", p.raw);
            lkv_json_num(&j, "redis", "%.4f", p.redis);
            lkv_json_num(&j, "latticekv_over_redis", "%.3f", ratio(p.lkv, p.redis));
            lkv_json_num(&j, "batching_gain", "%.3f", ratio(p.lkv, p.nb));
            lkv_json_num(&j, "stream_over_redis", "%.3f", ratio(p.stream, p.redis));
            lkv_json_num(&j, "grpc_raw_over_redis", "%.3f", ratio(p.raw, p.redis));
            lkv_json_end(&j);
        }
    lkv_json_end(&j);
    if (lkv_json_finish(&j) || fclose(f))
        sb_die("error writing %s", path);
}
