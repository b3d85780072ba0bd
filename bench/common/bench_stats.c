/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_stats.c - sorting, nearest-rank quantiles and medians, and the
 * growable sample list the load threads record latencies into.
 */
#include "lkv_bench.h"

#include <math.h>
#include <stdlib.h>

int lkv_bench_cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void lkv_bench_sort(double *v, size_t n)
{
    if (n > 1)
        qsort(v, n, sizeof *v, lkv_bench_cmp_double);
}

double lkv_bench_quantile(const double *sorted, size_t n, double q)
{
    if (!n)
        return 0.0;
    size_t i = (size_t)ceil(q * (double)n);
    i = i ? i - 1 : 0;
    return sorted[i < n ? i : n - 1];
}

double lkv_bench_median(double *v, size_t n)
{
    if (!n)
        return 0.0;
    lkv_bench_sort(v, n);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int lkv_bench_samples_push(lkv_bench_samples *s, double x)
{
    if (s->n == s->cap) {
        const size_t cap = s->cap ? 2 * s->cap : 1024;
        double *nv = realloc(s->v, cap * sizeof *nv);
        if (!nv)
            return -1;
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return 0;
}

void lkv_bench_samples_free(lkv_bench_samples *s)
{
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}
