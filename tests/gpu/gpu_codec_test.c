/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpu_codec_test.c - the CUDA codec against the C codec (the oracle).
 *
 * Every check compares bytes: GPU-encoded records with CPU-encoded ones,
 * and GPU decodes of records with CPU decodes of the same records, over
 * every dtype, head_dim and a spread of Q, the edge cases of docs/codec.md
 * section 5, per-vector status, corrupt records, unaligned buffers, large
 * batches, the host-buffer context and the reference oracle's inputs.
 *
 * A plain program (no Criterion: CUDA must not be initialised in a process
 * that forks test workers). Without a CUDA device it prints
 * "SKIP: no CUDA device" and "0 passed, 0 failed" and exits with
 * LKV_TEST_SKIP_CODE (ctest reports it skipped).
 * --quick shrinks the batches (for compute-sanitizer runs).
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_codec.h"
#include "lkv_cuda.h"

static unsigned long g_pass, g_fail;
static int g_quick;

static void check(int ok, const char *fmt, ...)
{
    if (ok) {
        g_pass++;
        return;
    }
    g_fail++;
    if (g_fail <= 40) {
        va_list ap;
        va_start(ap, fmt);
        printf("FAIL: ");
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
    }
}

#define CUDA_OK(call)                                                                           \
    do {                                                                                        \
        const cudaError_t e_ = (call);                                                          \
        if (e_ != cudaSuccess) {                                                                \
            printf("FATAL %s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(2);                                                                            \
        }                                                                                       \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Data                                                                      */

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}
static double urand(void)
{
    return (double)(rnd() >> 11) * (1.0 / 9007199254740992.0);
}
static double nrand(void)
{
    const double u = urand() + 1e-300, v = urand();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static void put_elem(lkv_dtype dt, void *buf, size_t i, float f)
{
    unsigned char *b = buf;
    if (dt == LKV_DTYPE_FP32) {
        memcpy(b + 4 * i, &f, 4);
    } else {
        const uint16_t h = dt == LKV_DTYPE_BF16 ? lkv_f32_to_bf16(f) : lkv_f32_to_f16(f);
        memcpy(b + 2 * i, &h, 2);
    }
}

static void put_bits16(lkv_dtype dt, void *buf, size_t i, uint16_t h16, uint32_t f32)
{
    unsigned char *b = buf;
    if (dt == LKV_DTYPE_FP32)
        memcpy(b + 4 * i, &f32, 4);
    else
        memcpy(b + 2 * i, &h16, 2);
}

/* Normal data with a per-channel log-normal scale and a per-batch scale. */
static void fill_random(lkv_dtype dt, void *buf, size_t n, uint32_t dim, double scale)
{
    double ch[LKV_DIM_MAX];
    for (uint32_t j = 0; j < dim; j++)
        ch[j] = exp(0.5 * nrand());
    for (size_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < dim; j++)
            put_elem(dt, buf, i * dim + j, (float)(nrand() * ch[j] * scale));
}

/* ------------------------------------------------------------------------ */
/* GPU helpers                                                               */

typedef struct gpu_buf {
    void *d;
    size_t len;
} gpu_buf;

static void *dalloc(size_t len)
{
    void *d = NULL;
    CUDA_OK(cudaMalloc(&d, len ? len : 1));
    return d;
}

/* Encodes n vectors on the GPU from a host buffer; src_off/rec_off shift the
 * device pointers (unaligned cases). Returns the launch status. */
static lkv_status gpu_encode(const lkv_params *p, lkv_dtype dt, const void *src, size_t n,
                             void *rec, uint8_t *status, size_t src_off, size_t rec_off)
{
    const size_t in = n * p->dim * lkv_dtype_size(dt), out = n * lkv_record_bytes(p);
    uint8_t *d_src = dalloc(in + src_off), *d_rec = dalloc(out + rec_off), *d_st = dalloc(n);
    CUDA_OK(cudaMemcpy(d_src + src_off, src, in, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemset(d_rec, 0xa5, out + rec_off)); /* poison: every byte must be written */
    CUDA_OK(cudaMemset(d_st, 0xee, n ? n : 1));
    lkv_diag dg;
    const lkv_status st =
        lkv_cuda_encode(p, dt, d_src + src_off, n, d_rec + rec_off, d_st, NULL, &dg);
    if (st == LKV_OK) {
        CUDA_OK(cudaDeviceSynchronize());
        CUDA_OK(cudaMemcpy(rec, d_rec + rec_off, out, cudaMemcpyDeviceToHost));
        if (status)
            CUDA_OK(cudaMemcpy(status, d_st, n, cudaMemcpyDeviceToHost));
    }
    CUDA_OK(cudaFree(d_src));
    CUDA_OK(cudaFree(d_rec));
    CUDA_OK(cudaFree(d_st));
    return st;
}

static lkv_status gpu_decode(const lkv_params *p, const void *rec, size_t n, lkv_dtype dt,
                             void *dst, uint8_t *status, size_t rec_off, size_t dst_off)
{
    const size_t in = n * lkv_record_bytes(p), out = n * p->dim * lkv_dtype_size(dt);
    uint8_t *d_rec = dalloc(in + rec_off), *d_dst = dalloc(out + dst_off), *d_st = dalloc(n);
    CUDA_OK(cudaMemcpy(d_rec + rec_off, rec, in, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemset(d_dst, 0x5a, out + dst_off));
    CUDA_OK(cudaMemset(d_st, 0xee, n ? n : 1));
    lkv_diag dg;
    const lkv_status st =
        lkv_cuda_decode(p, d_rec + rec_off, n, dt, d_dst + dst_off, d_st, NULL, &dg);
    if (st == LKV_OK) {
        CUDA_OK(cudaDeviceSynchronize());
        CUDA_OK(cudaMemcpy(dst, d_dst + dst_off, out, cudaMemcpyDeviceToHost));
        if (status)
            CUDA_OK(cudaMemcpy(status, d_st, n, cudaMemcpyDeviceToHost));
    }
    CUDA_OK(cudaFree(d_rec));
    CUDA_OK(cudaFree(d_dst));
    CUDA_OK(cudaFree(d_st));
    return st;
}

static size_t first_diff(const void *a, const void *b, size_t len)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < len; i++)
        if (x[i] != y[i])
            return i;
    return len;
}

static const lkv_dtype k_dtypes[3] = {LKV_DTYPE_BF16, LKV_DTYPE_FP16, LKV_DTYPE_FP32};

/* ------------------------------------------------------------------------ */
/* 1. Random data: every variant, head_dim, dtype, a spread of Q            */

/* Encodes on both sides, compares records; decodes the CPU records on both
 * sides into out_dt and compares; decodes the GPU records on the CPU. */
static void identity_case(const lkv_params *p, lkv_dtype dt, lkv_dtype out_dt, const void *src,
                          size_t n, const char *what)
{
    const size_t rb = lkv_record_bytes(p), ob = (size_t)p->dim * lkv_dtype_size(out_dt);
    uint8_t *rc = malloc(n * rb + 1), *rg = malloc(n * rb + 1), *st = malloc(n + 1);
    uint8_t *oc = malloc(n * ob + 1), *og = malloc(n * ob + 1), *ogc = malloc(n * ob + 1);
    lkv_diag dg;
    const lkv_status sc = lkv_encode(p, dt, src, n, rc, LKV_ISA_SCALAR, &dg);
    const lkv_status sg = gpu_encode(p, dt, src, n, rg, st, 0, 0);
    check(sc == LKV_OK && sg == LKV_OK, "%s: encode status cpu=%d gpu=%d", what, sc, sg);
    if (sc == LKV_OK && sg == LKV_OK) {
        size_t bad_st = n;
        for (size_t i = 0; i < n && bad_st == n; i++)
            if (st[i] != LKV_OK)
                bad_st = i;
        check(bad_st == n, "%s: vector %zu status %d", what, bad_st, bad_st < n ? st[bad_st] : 0);
        const size_t d = first_diff(rc, rg, n * rb);
        check(d == n * rb, "%s: GPU records differ from CPU at byte %zu (vector %zu)", what, d,
              d / rb);
        const lkv_status dc = lkv_decode(p, rc, n, out_dt, oc, LKV_ISA_SCALAR, &dg);
        const lkv_status dgs = gpu_decode(p, rc, n, out_dt, og, st, 0, 0);
        check(dc == LKV_OK && dgs == LKV_OK, "%s: decode status cpu=%d gpu=%d", what, dc, dgs);
        if (dc == LKV_OK && dgs == LKV_OK) {
            const size_t e = first_diff(oc, og, n * ob);
            check(e == n * ob, "%s: GPU decode (%s) differs from CPU at byte %zu (vector %zu)",
                  what, lkv_dtype_name(out_dt), e, e / ob);
        }
        /* GPU records decode on the CPU to the GPU's values. */
        const lkv_status dcg = lkv_decode(p, rg, n, out_dt, ogc, LKV_ISA_SCALAR, &dg);
        check(dcg == LKV_OK && first_diff(ogc, og, n * ob) == n * ob,
              "%s: CPU decode of GPU records differs from the GPU decode", what);
    }
    free(rc);
    free(rg);
    free(st);
    free(oc);
    free(og);
    free(ogc);
}

static void test_random_sweep(void)
{
    const uint32_t qs[] = {1, 2, 10, 38, 127, 128, 152, 1023};
    int t = 0;
    for (int vi = 0; vi < 2; vi++) {
        const lkv_variant var = vi == 0 ? LKV_VARIANT_E8 : LKV_VARIANT_D4;
        for (uint32_t dim = lkv_block_size(var); dim <= LKV_DIM_MAX; dim *= 2) {
            for (size_t qi = 0; qi < sizeof qs / sizeof qs[0]; qi++) {
                for (int di = 0; di < 3; di++, t++) {
                    const lkv_params p = {var, qs[qi], dim};
                    const lkv_dtype dt = k_dtypes[di], out_dt = k_dtypes[(di + t) % 3];
                    const size_t n = (g_quick ? 2048 : 65536) / dim + 7 + (size_t)(rnd() % 5);
                    void *src = malloc(n * dim * 4);
                    const double scale = pow(10.0, -2.0 + 3.0 * urand());
                    fill_random(dt, src, n, dim, scale);
                    char what[96];
                    snprintf(what, sizeof what, "random %s Q=%u D=%u %s n=%zu",
                             lkv_variant_name(var), qs[qi], dim, lkv_dtype_name(dt), n);
                    identity_case(&p, dt, out_dt, src, n, what);
                    free(src);
                }
            }
        }
    }
}

/* Head dims that are not a power of two (one launch per piece, strided
 * loads and stores): every variant, a spread of Q and dtypes, small and
 * large batches (both layouts of each piece). */
static void test_split_dims(void)
{
    const uint32_t dims[] = {12, 24, 40, 80, 96, 112, 160, 192, 200, 576, 1016, 1020};
    const uint32_t qs[] = {2, 38, 127, 152, 1023};
    int t = 0;
    for (int vi = 0; vi < 2; vi++) {
        const lkv_variant var = vi == 0 ? LKV_VARIANT_E8 : LKV_VARIANT_D4;
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
            const uint32_t dim = dims[di];
            if (dim % lkv_block_size(var))
                continue;
            for (size_t qi = 0; qi < sizeof qs / sizeof qs[0]; qi++, t++) {
                if (g_quick && qi != 1)
                    continue;
                const lkv_params p = {var, qs[qi], dim};
                const lkv_dtype dt = k_dtypes[t % 3], out_dt = k_dtypes[(t + 1) % 3];
                const int large = t % 2 == 0 && !g_quick;
                const size_t n = (large     ? 65536 * 64
                                  : g_quick ? 2048
                                            : 65536) /
                                     dim +
                                 7 + (size_t)(rnd() % 5);
                void *src = malloc(n * dim * 4);
                fill_random(dt, src, n, dim, pow(10.0, -2.0 + 3.0 * urand()));
                char what[96];
                snprintf(what, sizeof what, "split %s Q=%u D=%u %s n=%zu", lkv_variant_name(var),
                         qs[qi], dim, lkv_dtype_name(dt), n);
                identity_case(&p, dt, out_dt, src, n, what);
                free(src);
            }
        }
    }
}

/* The kernels pick a layout by batch size (64 elements per lane for large
 * batches, fewer for small ones, below 65536 lanes' worth); the sweep above
 * is all small batches, so here each head_dim runs once just above the
 * switch, with both variants and a narrow and a wide Q. */
static void test_large_layout(void)
{
    const uint32_t qs[] = {38, 152};
    for (int vi = 0; vi < 2; vi++) {
        const lkv_variant var = vi == 0 ? LKV_VARIANT_E8 : LKV_VARIANT_D4;
        for (uint32_t dim = 16; dim <= LKV_DIM_MAX; dim *= 2) {
            if (g_quick && dim != 128 && dim != 1024)
                continue;
            for (int qi = 0; qi < 2; qi++) {
                const lkv_params p = {var, qs[qi], dim};
                const uint32_t big = dim <= 64 ? dim : 64;
                const size_t n = 65536 / (dim / big) + 5;
                const lkv_dtype dt = k_dtypes[(vi + qi + dim) % 3];
                void *src = malloc(n * dim * 4);
                fill_random(dt, src, n, dim, 0.5);
                char what[96];
                snprintf(what, sizeof what, "large-layout %s Q=%u D=%u %s n=%zu",
                         lkv_variant_name(var), qs[qi], dim, lkv_dtype_name(dt), n);
                identity_case(&p, dt, k_dtypes[(vi + dim) % 3], src, n, what);
                free(src);
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* 2. Edge cases of docs/codec.md section 5, per vector                      */

/* Fills vector i of a batch with edge-case pattern k; returns a name. */
static const char *edge_vector(lkv_dtype dt, void *buf, size_t i, uint32_t dim, int k)
{
    const size_t b = i * dim;
    switch (k) {
    case 0:
        for (uint32_t j = 0; j < dim; j++)
            put_elem(dt, buf, b + j, 0.0f);
        return "zeros";
    case 1:
        for (uint32_t j = 0; j < dim; j++)
            put_elem(dt, buf, b + j, j == 0 ? 1.0f : 0.0f);
        return "one-hot";
    case 2:
        for (uint32_t j = 0; j < dim; j++)
            put_elem(dt, buf, b + j, (j & 1) ? -0.75f : 0.75f);
        return "alternating";
    case 3:
        for (uint32_t j = 0; j < dim; j++)
            put_elem(dt, buf, b + j, 3.0f);
        return "constant";
    case 4: /* tiny: fp16 subnormal norms, fp32/bf16 tiny values */
        for (uint32_t j = 0; j < dim; j++)
            put_elem(dt, buf, b + j, (float)(nrand() * 1e-7));
        return "tiny";
    case 5: /* smallest subnormals of the dtype */
        for (uint32_t j = 0; j < dim; j++)
            put_bits16(dt, buf, b + j,
                       (uint16_t)((j % 3) == 0   ? 0x0001
                                  : (j % 3) == 1 ? 0x8001
                                                 : 0),
                       (j % 3) == 0   ? 0x00000001u
                       : (j % 3) == 1 ? 0x80000001u
                                      : 0);
        return "subnormal";
    case 6: /* NaN in one element */
        for (uint32_t j = 0; j < dim; j++)
            put_elem(dt, buf, b + j, (float)nrand());
        put_bits16(dt, buf, b + dim / 2, dt == LKV_DTYPE_BF16 ? 0x7fc0 : 0x7e00, 0x7fc00000u);
        return "nan";
    case 7: /* -Inf in the last element */
        for (uint32_t j = 0; j < dim; j++)
            put_elem(dt, buf, b + j, (float)nrand());
        put_bits16(dt, buf, b + dim - 1, dt == LKV_DTYPE_BF16 ? 0xff80 : 0xfc00, 0xff800000u);
        return "-inf";
    case 8: /* huge norm: >= 65520 (fp16 inputs top out at 65504 per element) */
        for (uint32_t j = 0; j < dim; j++)
            put_elem(dt, buf, b + j, j < 4 ? 60000.0f : 100.0f);
        return "huge";
    case 9: /* norm just under the fp16 limit */
        for (uint32_t j = 0; j < dim; j++)
            put_elem(dt, buf, b + j, j == 0 ? 65000.0f : 0.0f);
        return "just-under";
    case 10: /* powers of two: many exact halves after scaling (ties) */
        for (uint32_t j = 0; j < dim; j++)
            put_elem(dt, buf, b + j, ldexpf((j & 2) ? -1.0f : 1.0f, (int)(j % 5)));
        return "ties";
    case 11: /* a dominant element: its block sits on the box edge */
        for (uint32_t j = 0; j < dim; j++)
            put_elem(dt, buf, b + j, j == 3 ? 40.0f : (float)(nrand() * 0.01));
        return "box-edge";
    default:
        for (uint32_t j = 0; j < dim; j++)
            put_elem(dt, buf, b + j, (float)(nrand() * 1e3));
        return "large";
    }
}

#define N_EDGE 13

static void test_edge_cases(void)
{
    const lkv_params ps[] = {
        {LKV_VARIANT_E8, 38, 128},   {LKV_VARIANT_E8, 152, 64},  {LKV_VARIANT_D4, 10, 64},
        {LKV_VARIANT_D4, 1023, 256}, {LKV_VARIANT_E8, 1, 8},     {LKV_VARIANT_D4, 2, 4},
        {LKV_VARIANT_E8, 38, 96},    {LKV_VARIANT_E8, 152, 576}, {LKV_VARIANT_D4, 10, 12}};
    for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++) {
        const lkv_params *p = &ps[pi];
        for (int di = 0; di < 3; di++) {
            const lkv_dtype dt = k_dtypes[di];
            const size_t n = 3 * N_EDGE + 1, rb = lkv_record_bytes(p);
            const size_t eb = lkv_dtype_size(dt), vb = p->dim * eb;
            uint8_t *src = malloc(n * vb), *rg = malloc(n * rb), *st = malloc(n);
            uint8_t *rc = malloc(rb), *zero = calloc(1, rb), *oc_scratch = malloc(p->dim * 4);
            const char *names[3 * N_EDGE + 1];
            for (size_t i = 0; i < n; i++)
                names[i] = edge_vector(dt, src, i, p->dim, (int)(i % N_EDGE));
            const lkv_status sg = gpu_encode(p, dt, src, n, rg, st, 0, 0);
            check(sg == LKV_OK, "edge %s Q=%u D=%u %s: launch status %d",
                  lkv_variant_name(p->variant), p->q, p->dim, lkv_dtype_name(dt), sg);
            if (sg != LKV_OK)
                goto next;
            for (size_t i = 0; i < n; i++) {
                lkv_diag dg;
                const lkv_status sc = lkv_encode(p, dt, src + i * vb, 1, rc, LKV_ISA_SCALAR, &dg);
                check(st[i] == (uint8_t)sc,
                      "edge %s Q=%u D=%u %s vector %zu (%s): status gpu=%d cpu=%d",
                      lkv_variant_name(p->variant), p->q, p->dim, lkv_dtype_name(dt), i, names[i],
                      st[i], sc);
                if (sc == LKV_OK)
                    check(memcmp(rc, rg + i * rb, rb) == 0,
                          "edge %s Q=%u D=%u %s vector %zu (%s): record differs at byte %zu",
                          lkv_variant_name(p->variant), p->q, p->dim, lkv_dtype_name(dt), i,
                          names[i], first_diff(rc, rg + i * rb, rb));
                else if ((p->dim & (p->dim - 1)) == 0)
                    check(memcmp(zero, rg + i * rb, rb) == 0,
                          "edge %s vector %zu (%s): failed vector's record is not all zero",
                          lkv_variant_name(p->variant), i, names[i]);
                else /* a failed piece is all zero: the record is invalid */
                    check(lkv_decode(p, rg + i * rb, 1, dt, oc_scratch, LKV_ISA_SCALAR, &dg) ==
                              LKV_ERR_CORRUPT,
                          "edge %s D=%u vector %zu (%s): failed vector's record decodes",
                          lkv_variant_name(p->variant), p->dim, i, names[i]);
            }
            /* Decode what encoded: a zero record of a failed vector is corrupt. */
            {
                const lkv_dtype od = k_dtypes[(di + 1) % 3];
                const size_t ob = p->dim * lkv_dtype_size(od);
                uint8_t *og = malloc(n * ob), *oc = malloc(ob), *ost = malloc(n);
                const lkv_status sd = gpu_decode(p, rg, n, od, og, ost, 0, 0);
                check(sd == LKV_OK, "edge decode launch %d", sd);
                for (size_t i = 0; sd == LKV_OK && i < n; i++) {
                    lkv_diag dg;
                    const lkv_status sc =
                        lkv_decode(p, rg + i * rb, 1, od, oc, LKV_ISA_SCALAR, &dg);
                    check(ost[i] == (uint8_t)sc,
                          "edge decode vector %zu (%s): status gpu=%d cpu=%d", i, names[i], ost[i],
                          sc);
                    if (sc == LKV_OK)
                        check(memcmp(oc, og + i * ob, ob) == 0,
                              "edge decode %s Q=%u D=%u vector %zu (%s): output differs",
                              lkv_variant_name(p->variant), p->q, p->dim, i, names[i]);
                }
                free(og);
                free(oc);
                free(ost);
            }
        next:
            free(src);
            free(rg);
            free(st);
            free(rc);
            free(zero);
            free(oc_scratch);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* 3. Corrupt records: per-vector ERR_CORRUPT, the others unaffected         */

static void test_corrupt(void)
{
    const lkv_params ps[] = {
        {LKV_VARIANT_E8, 38, 128}, {LKV_VARIANT_E8, 38, 8},     {LKV_VARIANT_E8, 1023, 64},
        {LKV_VARIANT_D4, 10, 64},  {LKV_VARIANT_D4, 200, 4},    {LKV_VARIANT_E8, 2, 16},
        {LKV_VARIANT_E8, 38, 96},  {LKV_VARIANT_E8, 1023, 576}, {LKV_VARIANT_D4, 10, 12}};
    for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++) {
        const lkv_params *p = &ps[pi];
        const size_t n = 300, rb = lkv_record_bytes(p);
        const uint32_t bits = lkv_bits_per_vector(p);
        const lkv_dtype dt = LKV_DTYPE_FP32;
        const size_t ob = p->dim * 4;
        float *src = malloc(n * ob);
        uint8_t *rec = malloc(n * rb), *og = malloc(n * ob), *oc = malloc(ob), *st = malloc(n);
        fill_random(dt, src, n, p->dim, 1.0);
        lkv_diag dg;
        check(lkv_encode(p, dt, src, n, rec, LKV_ISA_SCALAR, &dg) == LKV_OK, "corrupt: encode");
        for (size_t i = 0; i < n; i++) {
            uint8_t *r = rec + i * rb;
            switch (i % 10) {
            case 0: r[0] = r[1] = 0; break; /* r16 = 0 */
            case 1:
                r[0] = 0x00;
                r[1] = 0x7c;
                break; /* r16 = inf */
            case 2:
                r[2] = 0x01;
                r[3] = 0x00;
                break;                                      /* m16 = 1 (< eps) */
            case 3: r[3] = 0xfe; break;                     /* m16 negative */
            case 4: memset(r + 4, 0xff, rb - 4); break;     /* indices all ones */
            case 5: r[rb - 1] ^= (uint8_t)(1u << 7); break; /* top bit: padding or index */
            case 6:
                for (size_t j = 0; j < rb; j++)
                    r[j] = (uint8_t)rnd();
                break;
            case 7: r[4 + (rnd() % (rb - 4))] ^= (uint8_t)(1u << (rnd() % 8)); break;
            default: break; /* untouched */
            }
        }
        const lkv_status sd = gpu_decode(p, rec, n, dt, og, st, 0, 0);
        check(sd == LKV_OK, "corrupt: launch %d", sd);
        size_t n_bad = 0;
        for (size_t i = 0; sd == LKV_OK && i < n; i++) {
            const lkv_status sc = lkv_decode(p, rec + i * rb, 1, dt, oc, LKV_ISA_SCALAR, &dg);
            n_bad += sc != LKV_OK;
            check(st[i] == (uint8_t)sc,
                  "corrupt %s Q=%u D=%u (bits %u) record %zu: status gpu=%d cpu=%d",
                  lkv_variant_name(p->variant), p->q, p->dim, bits, i, st[i], sc);
            if (sc == LKV_OK)
                check(memcmp(oc, og + i * ob, ob) == 0, "corrupt: record %zu output differs", i);
            else if ((p->dim & (p->dim - 1)) == 0) { /* split dims: the bad piece only */
                int zero = 1;
                for (size_t j = 0; j < ob; j++)
                    zero &= og[i * ob + j] == 0;
                check(zero, "corrupt: record %zu (ERR_CORRUPT) did not decode to zeros", i);
            }
        }
        check(n_bad >= n / 10 * 4, "corrupt %s: only %zu of %zu records were rejected",
              lkv_variant_name(p->variant), n_bad, n);
        free(src);
        free(rec);
        free(og);
        free(oc);
        free(st);
    }
}

/* ------------------------------------------------------------------------ */
/* 4. API contract: n = 0, bad parameters, NULL buffers                      */

static void test_api(void)
{
    lkv_diag dg;
    const lkv_params ok = {LKV_VARIANT_E8, 38, 128};
    check(lkv_cuda_encode(&ok, LKV_DTYPE_BF16, NULL, 0, NULL, NULL, NULL, &dg) == LKV_OK,
          "n=0 encode is valid with NULL buffers");
    check(lkv_cuda_decode(&ok, NULL, 0, LKV_DTYPE_BF16, NULL, NULL, NULL, &dg) == LKV_OK,
          "n=0 decode is valid with NULL buffers");
    const lkv_params bad_dim = {LKV_VARIANT_E8, 38, 100};
    check(lkv_cuda_encode(&bad_dim, LKV_DTYPE_BF16, NULL, 4, NULL, NULL, NULL, &dg) ==
                  LKV_ERR_HEAD_DIM &&
              strstr(dg.msg, "head_dim=100") != NULL,
          "head_dim=100 -> ERR_HEAD_DIM naming the value (got '%s')", dg.msg);
    const lkv_params bad_d4 = {LKV_VARIANT_E8, 38, 4};
    check(lkv_cuda_decode(&bad_d4, NULL, 4, LKV_DTYPE_BF16, NULL, NULL, NULL, &dg) ==
              LKV_ERR_HEAD_DIM,
          "E8 with head_dim=4 -> ERR_HEAD_DIM");
    const lkv_params bad_q = {LKV_VARIANT_D4, 1024, 128};
    check(lkv_cuda_encode(&bad_q, LKV_DTYPE_FP32, NULL, 4, NULL, NULL, NULL, &dg) ==
                  LKV_ERR_Q_RANGE &&
              strstr(dg.msg, "1024") != NULL,
          "q=1024 -> ERR_Q_RANGE (got '%s')", dg.msg);
    const lkv_params bad_q0 = {LKV_VARIANT_D4, 0, 128};
    check(lkv_cuda_encode(&bad_q0, LKV_DTYPE_FP32, NULL, 4, NULL, NULL, NULL, &dg) ==
              LKV_ERR_Q_RANGE,
          "q=0 -> ERR_Q_RANGE");
    const lkv_params bad_v = {(lkv_variant)7, 38, 128};
    check(lkv_cuda_encode(&bad_v, LKV_DTYPE_FP32, NULL, 4, NULL, NULL, NULL, &dg) ==
              LKV_ERR_VARIANT,
          "variant=7 -> ERR_VARIANT");
    check(lkv_cuda_encode(&ok, (lkv_dtype)9, NULL, 4, NULL, NULL, NULL, &dg) == LKV_ERR_DTYPE &&
              strstr(dg.msg, "9") != NULL,
          "dtype=9 -> ERR_DTYPE (got '%s')", dg.msg);
    void *d = dalloc(4096);
    check(lkv_cuda_encode(&ok, LKV_DTYPE_FP32, NULL, 4, d, NULL, NULL, &dg) ==
                  LKV_ERR_INVALID_ARGUMENT &&
              strstr(dg.msg, "d_src") != NULL,
          "NULL d_src with n=4 -> ERR_INVALID_ARGUMENT naming it (got '%s')", dg.msg);
    check(lkv_cuda_decode(&ok, d, 4, LKV_DTYPE_FP32, NULL, NULL, NULL, &dg) ==
                  LKV_ERR_INVALID_ARGUMENT &&
              strstr(dg.msg, "d_dst") != NULL,
          "NULL d_dst with n=4 -> ERR_INVALID_ARGUMENT naming it (got '%s')", dg.msg);
    CUDA_OK(cudaFree(d));
    char name[256];
    check(lkv_cuda_device_name(0, name, sizeof name) == LKV_OK && name[0] != '\0', "device name");
    check(lkv_cuda_device_name(lkv_cuda_device_count(), name, sizeof name) != LKV_OK,
          "device name of a device that does not exist fails");
}

/* ------------------------------------------------------------------------ */
/* 5. Unaligned device pointers, without status array, on a stream          */

static void test_alignment_and_stream(void)
{
    const lkv_params p = {LKV_VARIANT_E8, 38, 128};
    for (int di = 0; di < 3; di++) {
        const lkv_dtype dt = k_dtypes[di];
        const size_t n = 333, rb = lkv_record_bytes(&p), vb = p.dim * lkv_dtype_size(dt);
        uint8_t *src = malloc(n * vb), *rc = malloc(n * rb), *rg = malloc(n * rb);
        uint8_t *oc = malloc(n * vb), *og = malloc(n * vb);
        fill_random(dt, src, n, p.dim, 2.0);
        lkv_diag dg;
        lkv_encode(&p, dt, src, n, rc, LKV_ISA_SCALAR, &dg);
        lkv_decode(&p, rc, n, dt, oc, LKV_ISA_SCALAR, &dg);
        const size_t offs[][2] = {{lkv_dtype_size(dt), 1}, {16 + lkv_dtype_size(dt), 3}, {4, 2}};
        for (size_t k = 0; k < 3; k++) {
            check(gpu_encode(&p, dt, src, n, rg, NULL, offs[k][0], offs[k][1]) == LKV_OK &&
                      memcmp(rc, rg, n * rb) == 0,
                  "unaligned encode %s src+%zu rec+%zu", lkv_dtype_name(dt), offs[k][0],
                  offs[k][1]);
            check(gpu_decode(&p, rc, n, dt, og, NULL, offs[k][1], offs[k][0]) == LKV_OK &&
                      memcmp(oc, og, n * vb) == 0,
                  "unaligned decode %s rec+%zu dst+%zu", lkv_dtype_name(dt), offs[k][1],
                  offs[k][0]);
        }
        /* On a user stream, no status array, results ready after the stream. */
        cudaStream_t s;
        CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
        uint8_t *d_src = dalloc(n * vb), *d_rec = dalloc(n * rb);
        CUDA_OK(cudaMemcpyAsync(d_src, src, n * vb, cudaMemcpyHostToDevice, s));
        check(lkv_cuda_encode(&p, dt, d_src, n, d_rec, NULL, s, &dg) == LKV_OK, "stream encode");
        CUDA_OK(cudaMemcpyAsync(rg, d_rec, n * rb, cudaMemcpyDeviceToHost, s));
        CUDA_OK(cudaStreamSynchronize(s));
        check(memcmp(rc, rg, n * rb) == 0, "stream encode %s differs", lkv_dtype_name(dt));
        CUDA_OK(cudaFree(d_src));
        CUDA_OK(cudaFree(d_rec));
        CUDA_OK(cudaStreamDestroy(s));
        free(src);
        free(rc);
        free(rg);
        free(oc);
        free(og);
    }
}

/* ------------------------------------------------------------------------ */
/* 6. Large batch, determinism across batch splits                           */

static void test_large(void)
{
    const lkv_params p = {LKV_VARIANT_E8, 38, 128};
    const lkv_dtype dt = LKV_DTYPE_BF16;
    const size_t n = g_quick ? (1u << 14) : (1u << 20);
    const size_t rb = lkv_record_bytes(&p), vb = p.dim * 2;
    uint8_t *src = malloc(n * vb), *rc = malloc(n * rb), *rg = malloc(n * rb),
            *rg2 = malloc(n * rb);
    uint8_t *oc = malloc(n * vb), *og = malloc(n * vb), *st = malloc(n);
    fill_random(dt, src, n, p.dim, 0.3);
    lkv_diag dg;
    check(lkv_encode(&p, dt, src, n, rc, LKV_ISA_SCALAR, &dg) == LKV_OK, "large: cpu encode");
    check(gpu_encode(&p, dt, src, n, rg, st, 0, 0) == LKV_OK, "large: gpu encode");
    check(memcmp(rc, rg, n * rb) == 0, "large: %zu vectors: records differ at byte %zu", n,
          first_diff(rc, rg, n * rb));
    /* the same vectors in a batch that starts elsewhere give the same bytes */
    const size_t off = 12345 % n, m = n - off;
    check(gpu_encode(&p, dt, src + off * vb, m, rg2, NULL, 0, 0) == LKV_OK &&
              memcmp(rg2, rg + off * rb, m * rb) == 0,
          "large: sub-batch from vector %zu differs", off);
    check(lkv_decode(&p, rc, n, dt, oc, LKV_ISA_SCALAR, &dg) == LKV_OK, "large: cpu decode");
    check(gpu_decode(&p, rc, n, dt, og, st, 0, 0) == LKV_OK && memcmp(oc, og, n * vb) == 0,
          "large: decode differs at byte %zu", first_diff(oc, og, n * vb));
    free(src);
    free(rc);
    free(rg);
    free(rg2);
    free(oc);
    free(og);
    free(st);
}

/* ------------------------------------------------------------------------ */
/* 7. Host-buffer context                                                    */

static void test_ctx(void)
{
    lkv_cuda_ctx *ctx = NULL;
    lkv_diag dg;
    lkv_cuda_ctx *none = NULL;
    check(lkv_cuda_ctx_create(-1, &none, &dg) == LKV_ERR_INVALID_ARGUMENT && none == NULL &&
              strstr(dg.msg, "device=-1") != NULL,
          "ctx on device -1 -> ERR_INVALID_ARGUMENT (got '%s')", dg.msg);
    const lkv_status cs = lkv_cuda_ctx_create(0, &ctx, &dg);
    check(cs == LKV_OK, "ctx create: %s", dg.msg);
    if (cs != LKV_OK)
        return;
    const lkv_params p = {LKV_VARIANT_D4, 38, 256};
    const lkv_dtype dt = LKV_DTYPE_FP16;
    const size_t n = 1000, rb = lkv_record_bytes(&p), vb = p.dim * 2;
    uint8_t *src = malloc(n * vb), *rc = malloc(n * rb), *rg = malloc(n * rb);
    uint8_t *oc = malloc(n * vb), *og = malloc(n * vb);
    fill_random(dt, src, n, p.dim, 1.0);
    lkv_encode(&p, dt, src, n, rc, LKV_ISA_SCALAR, &dg);
    lkv_decode(&p, rc, n, dt, oc, LKV_ISA_SCALAR, &dg);
    for (int rep = 0; rep < 2; rep++) { /* second round reuses the grown buffers */
        check(lkv_cuda_ctx_encode(ctx, &p, dt, src, n, rg, &dg) == LKV_OK &&
                  memcmp(rc, rg, n * rb) == 0,
              "ctx encode");
        check(lkv_cuda_ctx_decode(ctx, &p, rc, n, dt, og, &dg) == LKV_OK &&
                  memcmp(oc, og, n * vb) == 0,
              "ctx decode");
    }
    /* first failing vector is reported like the CPU codec does, with the
     * same message (the element too) */
    put_bits16(dt, src, 517 * p.dim + 3, 0x7c00, 0);
    lkv_diag cpu_dg;
    (void)lkv_encode(&p, dt, src, n, og, LKV_ISA_SCALAR, &cpu_dg); /* og: scratch, big enough */
    const lkv_status s = lkv_cuda_ctx_encode(ctx, &p, dt, src, n, rg, &dg);
    check(s == LKV_ERR_NONFINITE && dg.index == 517 && strcmp(dg.msg, cpu_dg.msg) == 0,
          "ctx: NaN in vector 517 -> %d index %llu '%s' (CPU: '%s')", s,
          (unsigned long long)dg.index, dg.msg, cpu_dg.msg);
    rc[700 * rb + 1] = 0x7c; /* r16 = inf-ish: corrupt */
    const lkv_status s2 = lkv_cuda_ctx_decode(ctx, &p, rc, n, dt, og, &dg);
    check(s2 == LKV_ERR_CORRUPT && dg.index == 700, "ctx: corrupt record 700 -> %d index %llu", s2,
          (unsigned long long)dg.index);
    lkv_cuda_ctx_free(ctx);
    free(src);
    free(rc);
    free(rg);
    free(oc);
    free(og);
}

/* ------------------------------------------------------------------------ */
/* 8. Reference oracle: 2048 x 128 fp32 inputs and the reference's output   */

/* The data folder: $LKV_GPU_DATA_DIR (run.sh sets it, so prebuilt binaries
 * find the repository's copy), else the source tree's tests/gpu/data. */
static const char *data_dir(void)
{
    const char *d = getenv("LKV_GPU_DATA_DIR");
    return d && *d ? d : LKV_GPU_DATA_DIR;
}

static float *read_f32(const char *name, size_t count)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", data_dir(), name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    float *buf = malloc(count * 4);
    const size_t got = fread(buf, 4, count, f);
    fclose(f);
    if (got != count) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void test_oracle(void)
{
    const size_t rows = 2048, dim = 128, cnt = rows * dim;
    float *x = read_f32("input.f32", cnt);
    check(x != NULL, "oracle: %s/input.f32 is readable", data_dir());
    if (!x)
        return;
    const struct {
        lkv_variant v;
        uint32_t q;
        const char *file;
    } cases[] = {{LKV_VARIANT_E8, 10, "e8_q10.f32"},
                 {LKV_VARIANT_E8, 152, "e8_q152.f32"},
                 {LKV_VARIANT_D4, 10, "d4_q10.f32"},
                 {LKV_VARIANT_D4, 152, "d4_q152.f32"}};
    for (size_t c = 0; c < 4; c++) {
        const lkv_params p = {cases[c].v, cases[c].q, (uint32_t)dim};
        const size_t rb = lkv_record_bytes(&p);
        uint8_t *rg = malloc(rows * rb), *rc = malloc(rows * rb);
        float *xg = malloc(cnt * 4), *xc = malloc(cnt * 4);
        float *ref = read_f32(cases[c].file, cnt);
        lkv_diag dg;
        check(gpu_encode(&p, LKV_DTYPE_FP32, x, rows, rg, NULL, 0, 0) == LKV_OK &&
                  gpu_decode(&p, rg, rows, LKV_DTYPE_FP32, xg, NULL, 0, 0) == LKV_OK,
              "oracle %s: GPU roundtrip", cases[c].file);
        lkv_encode(&p, LKV_DTYPE_FP32, x, rows, rc, LKV_ISA_SCALAR, &dg);
        lkv_decode(&p, rc, rows, LKV_DTYPE_FP32, xc, LKV_ISA_SCALAR, &dg);
        /* bit identity of the decoded floats is the claim, so bytes are compared */
        // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison,cert-exp42-c,cert-flp37-c)
        check(memcmp(rg, rc, rows * rb) == 0 && memcmp(xg, xc, cnt * 4) == 0,
              "oracle %s: GPU roundtrip differs from CPU", cases[c].file);
        if (ref) {
            double e_ours = 0, e_ref = 0, e_diff = 0, sx = 0;
            for (size_t i = 0; i < cnt; i++) {
                const double a = x[i], b = xg[i], r = ref[i];
                e_ours += (a - b) * (a - b);
                e_ref += (a - r) * (a - r);
                e_diff += (b - r) * (b - r);
                sx += a * a;
            }
            const double ratio = e_ours / e_ref;
            printf("  oracle %-12s rel-MSE ours %.4e reference %.4e (ratio %.4f), "
                   "|ours-ref|^2/|x|^2 %.2e\n",
                   cases[c].file, e_ours / sx, e_ref / sx, ratio, e_diff / sx);
            /* E8's box rule costs +0.6..1.4 % (docs/codec.md section 3); D4 matches. */
            check(ratio > 0.99 && ratio < 1.03,
                  "oracle %s: rel-MSE ratio %.4f outside [0.99, 1.03]", cases[c].file, ratio);
            check(e_diff < 0.25 * e_ref, "oracle %s: reconstruction far from the reference's",
                  cases[c].file);
            free(ref);
        } else {
            check(0, "oracle: %s missing", cases[c].file);
        }
        free(rg);
        free(rc);
        free(xg);
        free(xc);
    }
    free(x);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--quick") == 0)
            g_quick = 1;
    if (lkv_cuda_device_count() == 0) {
        printf("SKIP: no CUDA device (the CUDA codec compiled; GPU tests need a GPU)\n");
        printf("0 passed, 0 failed\n");
        return LKV_TEST_SKIP_CODE;
    }
    char name[256] = "?";
    lkv_cuda_device_name(0, name, sizeof name);
    printf("gpu_codec_test on %s%s\n", name, g_quick ? " (quick)" : "");
    struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {{"api", test_api},
                 {"random_sweep", test_random_sweep},
                 {"large_layout", test_large_layout},
                 {"split_dims", test_split_dims},
                 {"edge_cases", test_edge_cases},
                 {"corrupt", test_corrupt},
                 {"alignment_stream", test_alignment_and_stream},
                 {"large", test_large},
                 {"ctx", test_ctx},
                 {"oracle", test_oracle}};
    for (size_t t = 0; t < sizeof tests / sizeof tests[0]; t++) {
        const unsigned long f0 = g_fail, p0 = g_pass;
        tests[t].fn();
        printf("  %-18s %6lu checks, %lu failed\n", tests[t].name, g_pass + g_fail - p0 - f0 + 0,
               g_fail - f0);
    }
    printf("%lu passed, %lu failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
