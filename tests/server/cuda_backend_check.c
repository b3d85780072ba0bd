/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cuda_backend_check.c - the daemon's CUDA backend against its CPU backend.
 *
 * Design note. The server's CUDA backend gathers the segments of a batch
 * (pieces of different requests) into one launch and scatters the results
 * back, and re-runs segments alone when the launch reports a failing
 * vector. This program checks exactly that layer, byte for byte against the
 * CPU backend: multi-segment batches of every dtype, both variants, several
 * Q and head_dim, encode and decode, and a batch where one segment holds a
 * NaN (only that segment may fail). It is a plain program, not a Criterion
 * test, because CUDA must not be initialised in Criterion's parent process;
 * without a device it prints that it skipped and exits with
 * LKV_TEST_SKIP_CODE (ctest reports it skipped).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_server.h"

static int passed, failed;

static void check(int ok, const char *what)
{
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAIL %s\n", what);
    }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float normal(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    const double u1 = ((double)(rng_state >> 11) + 1.0) / 9007199254740993.0;
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    const double u2 = (double)(rng_state >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static void fill(uint8_t *dst, lkv_dtype dt, size_t n_elems)
{
    for (size_t i = 0; i < n_elems; i++) {
        const float v = normal() * 2.0f;
        if (dt == LKV_DTYPE_FP32) {
            memcpy(dst + 4 * i, &v, 4);
        } else {
            const uint16_t h = dt == LKV_DTYPE_BF16 ? lkv_f32_to_bf16(v) : lkv_f32_to_f16(v);
            memcpy(dst + 2 * i, &h, 2);
        }
    }
}

#define NSEG 3

/* A batch of NSEG segments over one contiguous src/dst pair. */
static lkv_batch *make_batch(lkv_op op, const lkv_params *p, lkv_dtype dt, const size_t *n,
                             const uint8_t *src, uint8_t *dst)
{
    lkv_batch *b = calloc(1, sizeof *b + NSEG * sizeof b->seg[0]);
    b->op = op;
    b->params = *p;
    b->dtype = dt;
    b->cap = NSEG;
    lkv_work w = {.op = op, .params = *p, .dtype = dt};
    const size_t in = lkv_work_src_stride(&w), out = lkv_work_dst_stride(&w);
    size_t off = 0;
    for (size_t i = 0; i < NSEG; i++) {
        b->seg[i].src = src + off * in;
        b->seg[i].dst = dst + off * out;
        b->seg[i].n = n[i];
        b->nvec += n[i];
        off += n[i];
    }
    b->nseg = NSEG;
    return b;
}

static void run_case(lkv_backend *cpu, lkv_backend *gpu, const lkv_params *p, lkv_dtype dt,
                     int with_nan)
{
    const size_t n[NSEG] = {1, 37, 300};
    const size_t total = n[0] + n[1] + n[2];
    const size_t vec = (size_t)p->dim * lkv_dtype_size(dt), rec = lkv_record_bytes(p);
    uint8_t *x = malloc(total * vec);
    uint8_t *rc = calloc(total, rec), *rg = calloc(total, rec);
    uint8_t *yc = calloc(total, vec), *yg = calloc(total, vec);
    fill(x, dt, total * p->dim);
    if (with_nan) {
        /* Vector 5 of the middle segment. */
        const size_t at = (n[0] + 5) * p->dim + 3;
        if (dt == LKV_DTYPE_FP32) {
            const float nan = NAN;
            memcpy(x + 4 * at, &nan, 4);
        } else {
            const uint16_t h = dt == LKV_DTYPE_BF16 ? 0x7fc0 : 0x7e00;
            memcpy(x + 2 * at, &h, 2);
        }
    }
    char what[160];
    snprintf(what, sizeof what, "%s q=%u dim=%u %s%s", lkv_variant_name(p->variant), p->q, p->dim,
             lkv_dtype_name(dt), with_nan ? " with NaN" : "");

    lkv_batch *bc = make_batch(LKV_OP_ENCODE, p, dt, n, x, rc);
    lkv_batch *bg = make_batch(LKV_OP_ENCODE, p, dt, n, x, rg);
    lkv_backend_run(cpu, 0, bc);
    lkv_backend_run(gpu, 1, bg);
    for (size_t i = 0; i < NSEG; i++) {
        char m[240];
        snprintf(m, sizeof m, "%s: encode segment %zu status cpu=%s cuda=%s", what, i,
                 lkv_status_name(bc->seg[i].status), lkv_status_name(bg->seg[i].status));
        check(bc->seg[i].status == bg->seg[i].status, m);
        const lkv_status want = with_nan && i == 1 ? LKV_ERR_NONFINITE : LKV_OK;
        snprintf(m, sizeof m, "%s: encode segment %zu is %s", what, i, lkv_status_name(want));
        check(bg->seg[i].status == want, m);
        if (bc->seg[i].status == LKV_OK && bg->seg[i].status == LKV_OK) {
            snprintf(m, sizeof m, "%s: encode segment %zu bytes", what, i);
            check(memcmp(bc->seg[i].dst, bg->seg[i].dst, n[i] * rec) == 0, m);
        }
    }
    if (!with_nan) {
        lkv_batch *dc = make_batch(LKV_OP_DECODE, p, dt, n, rc, yc);
        lkv_batch *dg = make_batch(LKV_OP_DECODE, p, dt, n, rc, yg);
        lkv_backend_run(cpu, 0, dc);
        lkv_backend_run(gpu, 0, dg);
        int ok = 1;
        for (size_t i = 0; i < NSEG; i++)
            ok = ok && dc->seg[i].status == LKV_OK && dg->seg[i].status == LKV_OK;
        snprintf(what + strlen(what), sizeof what - strlen(what), ": decode");
        check(ok && memcmp(yc, yg, total * vec) == 0, what);
        free(dc);
        free(dg);
    }
    free(bc);
    free(bg);
    free(x);
    free(rc);
    free(rg);
    free(yc);
    free(yg);
}

int main(void)
{
    if (lkv_backend_cuda_devices() <= 0) {
        printf("cuda_backend_check: skipped (no CUDA device or a build without CUDA)\n");
        return LKV_TEST_SKIP_CODE;
    }
    lkv_backend *cpu, *gpu;
    lkv_diag d = {0};
    if (lkv_backend_cpu_create(2, &cpu, &d) != LKV_OK ||
        lkv_backend_cuda_create(2, &gpu, &d) != LKV_OK) {
        printf("cuda_backend_check: cannot create the backends: %s\n", d.msg);
        return 1;
    }
    const lkv_variant variants[] = {LKV_VARIANT_E8, LKV_VARIANT_D4};
    const uint32_t qs[] = {38, 152};
    const uint32_t dims[] = {64, 128, 256};
    const lkv_dtype dts[] = {LKV_DTYPE_BF16, LKV_DTYPE_FP16, LKV_DTYPE_FP32};
    for (size_t v = 0; v < 2; v++)
        for (size_t q = 0; q < 2; q++)
            for (size_t k = 0; k < 3; k++)
                for (size_t t = 0; t < 3; t++) {
                    const lkv_params p = {variants[v], qs[q], dims[k]};
                    run_case(cpu, gpu, &p, dts[t], 0);
                }
    const lkv_params p = {LKV_VARIANT_E8, 38, 128};
    for (size_t t = 0; t < 3; t++)
        run_case(cpu, gpu, &p, dts[t], 1);
    gpu->free(gpu);
    cpu->free(cpu);
    printf("cuda_backend_check: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
