/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_probe.c - what the results files record about the machine: the
 * CPU's name (which also names the default results file, through the slug),
 * the core count, the load average at the start, the date; and the one
 * set-up every client process of a benchmark shares (lkv_bench_tune_clients).
 */
#include "lkv_bench.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void lkv_bench_cpu_probe(lkv_bench_cpu *cpu)
{
    snprintf(cpu->model, sizeof cpu->model, "unknown-cpu");
    cpu->family = cpu->model_number = -1;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    int got_name = 0;
    /* The first processor's block is enough: the others repeat it. */
    while (fgets(line, sizeof line, f) && line[0] != '\n') {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        char *val = colon + 1;
        while (*val == ' ' || *val == '\t')
            val++;
        val[strcspn(val, "\n")] = '\0';
        if (!got_name && strncmp(line, "model name", 10) == 0) {
            snprintf(cpu->model, sizeof cpu->model, "%s", val);
            got_name = 1;
        } else if (cpu->family < 0 && strncmp(line, "cpu family", 10) == 0) {
            cpu->family = atoi(val);
        } else if (cpu->model_number < 0 && strncmp(line, "model\t", 6) == 0) {
            cpu->model_number = atoi(val);
        }
    }
    fclose(f);
}

long lkv_bench_cores(void)
{
    return sysconf(_SC_NPROCESSORS_ONLN);
}

double lkv_bench_loadavg(void)
{
    double v = 0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v;
}

void lkv_bench_slug(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    int dash = 0;
    if (!cap)
        return;
    for (; *in && o + 1 < cap; in++) {
        const char c = *in;
        const int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (alnum || (c >= 'A' && c <= 'Z')) {
            if (dash && o) {
                if (o + 2 >= cap)
                    break; /* no room for "-x": stop at the last whole word */
                out[o++] = '-';
            }
            dash = 0;
            out[o++] = alnum ? c : (char)(c - 'A' + 'a');
        } else {
            dash = 1;
        }
    }
    out[o] = '\0';
}

void lkv_bench_utc(char *out, size_t cap, const char *fmt)
{
    const time_t now = time(NULL);
    struct tm tm;
    if (!gmtime_r(&now, &tm) || !strftime(out, cap, fmt, &tm))
        snprintf(out, cap, "?");
}

double lkv_bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int lkv_bench_tune_clients(void)
{
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    if (getenv("GRPC_POLL_STRATEGY"))
        return 0;
    setenv("GRPC_POLL_STRATEGY", "poll", 1);
    return 1;
}
