/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpu_p2_test - codec profile 2 on the GPU against the C coder (the oracle),
 * in the three container versions (3: chunks of 256, byte norm codes; 2:
 * chunks of 128, fp16 norms; 4: version 3 with a rotated or channel mode
 * per piece, the channel one for the log-normal channels and the keys):
 *   - encode: the GPU payload equals lkv_p2_encode's, byte for byte, and its
 *     chunk offsets equal those lkv_cuda_p2_index reads from the CPU payload;
 *   - decode: the GPU decode of the CPU payload equals lkv_p2_decode's
 *     output bit for bit;
 * on the four quality datasets (normal, Student-t 3, per-channel log-normal
 * scales, outlier keys), several Q, D = 8, 64, 128, 200 (three pieces), 576
 * (two), bf16 / fp16 / fp32, full and partial chunks; then per-vector
 * status: NaN and norm overflow on encode (v2: fp16 infinity; v3: a norm
 * above the top code), whose chunks every decoder rejects; on decode a
 * zeroed norm, a flipped word, version 3's nonzero pad byte and a final
 * offset past the payload (the GPU verdict and output per chunk equal the C
 * coder's on that chunk alone).
 * Prints "N passed, M failed"; without a GPU "SKIP: no CUDA device" and exits
 * with LKV_TEST_SKIP_CODE. --quick runs a smaller matrix.
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_codec.h"
#include "lkv_codec_math.h"
#include "lkv_format.h"
#include "lkv_cuda.h"
#include "lkv_cuda_p2.h"

#ifndef LKV_TEST_SKIP_CODE
#define LKV_TEST_SKIP_CODE 77
#endif

static int g_pass, g_fail;

#define EXPECT(cond, ...)                               \
    do {                                                \
        if (cond) {                                     \
            g_pass++;                                   \
        } else {                                        \
            g_fail++;                                   \
            printf("FAIL %s:%d: ", __FILE__, __LINE__); \
            printf(__VA_ARGS__);                        \
            printf("\n");                               \
        }                                               \
    } while (0)

static void die_cuda(cudaError_t e, const char *what)
{
    if (e != cudaSuccess) {
        printf("FATAL %s: CUDA error %d (%s)\n", what, (int)e, cudaGetErrorString(e));
        exit(1);
    }
}

/* splitmix64 and Box-Muller: reproducible data without libc's rand. */
typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_normal(rng *r)
{
    const double u1 = ((double)(rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
    const double u2 = (double)(rng_next(r) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

enum { DS_NORMAL, DS_T3, DS_LOGNORMAL, DS_KEYS, DS_COUNT };
static const char *const k_ds_name[DS_COUNT] = {"normal", "student_t3", "lognormal_channels",
                                                "keys"};

/* The four datasets of bench/quality/codec_quality (same recipes, own
 * generator). */
static void gen(int ds, rng *r, float *x, size_t n, uint32_t dim)
{
    double scale[LKV_DIM_MAX], offset[LKV_DIM_MAX];
    for (uint32_t j = 0; j < dim; j++) {
        scale[j] = ds == DS_LOGNORMAL ? exp(1.5 * rng_normal(r)) : 1.0;
        offset[j] = ds == DS_KEYS ? rng_normal(r) : 0.0;
    }
    if (ds == DS_KEYS)
        for (int o = 0; o < 4; o++)
            scale[rng_next(r) % dim] = 20.0;
    for (size_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < dim; j++) {
            double v = rng_normal(r);
            if (ds == DS_T3) {
                double chi = 0.0;
                for (int k = 0; k < 3; k++) {
                    const double g = rng_normal(r);
                    chi += g * g;
                }
                v = v / sqrt(chi / 3.0);
            }
            x[i * dim + j] = (float)(scale[j] * v + offset[j]);
        }
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* x as dtype dt (round to nearest even). */
static void to_dtype(const float *x, size_t count, lkv_dtype dt, uint8_t *out)
{
    for (size_t i = 0; i < count; i++) {
        if (dt == LKV_DTYPE_FP32) {
            memcpy(out + 4 * i, &x[i], 4);
        } else {
            const uint16_t h = dt == LKV_DTYPE_BF16 ? lkv_math_f32_to_bf16(f32_bits(x[i]))
                                                    : lkv_math_f32_to_f16(f32_bits(x[i]));
            memcpy(out + 2 * i, &h, 2);
        }
    }
}

/* Device buffers of one case. */
typedef struct dev {
    void *src, *pay, *work, *dst;
    uint64_t *offs;
    uint8_t *st;
} dev;

static void dev_free(dev *d)
{
    cudaFree(d->src);
    cudaFree(d->pay);
    cudaFree(d->work);
    cudaFree(d->dst);
    cudaFree(d->offs);
    cudaFree(d->st);
    memset(d, 0, sizeof *d);
}

/* With LKV_P2_DUMP=DIR, the first failing case leaves its CPU and GPU bytes
 * there for offline comparison. */
static int g_dumped;

static void dump(const char *name, const char *what, const void *p, size_t len)
{
    const char *dir = getenv("LKV_P2_DUMP");
    if (!dir || g_dumped)
        return;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, what);
    FILE *f = fopen(path, "wb");
    if (!f)
        return;
    if (len)
        fwrite(p, 1, len, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/case.txt", dir);
    f = fopen(path, "a");
    if (f) {
        fprintf(f, "%s: %s %zu bytes\n", name, what, len);
        fclose(f);
    }
}

static size_t count_not(const uint8_t *st, size_t n, uint8_t want)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += st[i] != want;
    return c;
}

/* One case: GPU encode == CPU encode, GPU decode == CPU decode. */
static void one_case(uint32_t fmt, int ds, uint32_t q, uint32_t dim, lkv_dtype dt, size_t n,
                     uint64_t seed)
{
    const lkv_params p = {LKV_VARIANT_E8, q, dim, LKV_PROFILE_2, fmt};
    const size_t esz = lkv_dtype_size(dt), nc = lkv_cuda_p2_chunks(&p, n);
    char name[128];
    snprintf(name, sizeof name, "v%u %s q=%u dim=%u %s n=%zu", fmt, k_ds_name[ds], q, dim,
             lkv_dtype_name(dt), n);
    rng r = {seed};
    float *x = malloc(n * dim * sizeof *x);
    uint8_t *src = malloc(n * dim * esz);
    const size_t bound = lkv_p2_payload_bound(&p, n);
    uint8_t *cpu = malloc(bound), *gpu = malloc(bound);
    uint8_t *out_c = malloc(n * dim * esz), *out_g = malloc(n * dim * esz);
    uint64_t *offs_h = malloc((nc + 1) * 8), *offs_g = malloc((nc + 1) * 8);
    uint8_t *st = malloc(n);
    gen(ds, &r, x, n, dim);
    to_dtype(x, n * dim, dt, src);
    lkv_diag dg;
    size_t clen = 0;
    lkv_status s = lkv_p2_encode(&p, dt, src, n, cpu, bound, &clen, &dg);
    EXPECT(s == LKV_OK, "%s: CPU encode %d %s", name, (int)s, dg.msg);
    s = lkv_p2_decode(&p, cpu, clen, n, dt, out_c, &dg);
    EXPECT(s == LKV_OK, "%s: CPU decode %d %s", name, (int)s, dg.msg);
    s = lkv_cuda_p2_index(&p, cpu, clen, n, offs_h, &dg);
    EXPECT(s == LKV_OK, "%s: index %d %s", name, (int)s, dg.msg);

    lkv_cuda_p2_model *m = NULL;
    s = lkv_cuda_p2_model_create(&p, 0, &m, &dg);
    EXPECT(s == LKV_OK, "%s: model %d %s", name, (int)s, dg.msg);
    if (s != LKV_OK)
        goto out;
    dev d = {0};
    const size_t wb = lkv_cuda_p2_encode_workspace(m, n);
    die_cuda(cudaMalloc(&d.src, n * dim * esz), "malloc src");
    die_cuda(cudaMalloc(&d.pay, bound), "malloc payload");
    die_cuda(cudaMalloc(&d.work, wb), "malloc work");
    die_cuda(cudaMalloc(&d.dst, n * dim * esz), "malloc dst");
    die_cuda(cudaMalloc((void **)&d.offs, (nc + 1) * 8), "malloc offs");
    die_cuda(cudaMalloc((void **)&d.st, n), "malloc status");
    die_cuda(cudaMemcpy(d.src, src, n * dim * esz, cudaMemcpyHostToDevice), "copy src");
    die_cuda(cudaMemset(d.pay, 0xa5, bound), "poison payload");
    die_cuda(cudaMemset(d.st, 0xee, n), "poison status");

    /* encode */
    s = lkv_cuda_p2_encode(m, dt, d.src, n, d.pay, bound, d.offs, d.work, wb, d.st, NULL, &dg);
    EXPECT(s == LKV_OK, "%s: GPU encode %d %s", name, (int)s, dg.msg);
    die_cuda(cudaDeviceSynchronize(), "encode");
    die_cuda(cudaMemcpy(offs_g, d.offs, (nc + 1) * 8, cudaMemcpyDeviceToHost), "offs back");
    die_cuda(cudaMemcpy(st, d.st, n, cudaMemcpyDeviceToHost), "status back");
    const size_t glen = (size_t)offs_g[nc];
    EXPECT(glen == clen, "%s: GPU payload %zu bytes, CPU %zu", name, glen, clen);
    EXPECT(memcmp(offs_g, offs_h, (nc + 1) * 8) == 0, "%s: chunk offsets differ", name);
    EXPECT(count_not(st, n, LKV_OK) == 0, "%s: %zu encode statuses not OK", name,
           count_not(st, n, LKV_OK));
    if (glen <= bound) {
        die_cuda(cudaMemcpy(gpu, d.pay, glen, cudaMemcpyDeviceToHost), "payload back");
        size_t at = 0;
        while (at < glen && at < clen && gpu[at] == cpu[at])
            at++;
        EXPECT(glen == clen && at == clen, "%s: payloads differ from byte %zu", name, at);
        if (!(glen == clen && at == clen) && n <= 1000) {
            dump(name, "enc_cpu.bin", cpu, clen);
            dump(name, "enc_gpu.bin", gpu, glen);
            dump(name, "offs_gpu.bin", offs_g, (nc + 1) * 8);
            dump(name, "src.bin", src, n * dim * esz);
            g_dumped = 1;
        }
    }

    /* decode of the CPU payload with the host-built index */
    die_cuda(cudaMemcpy(d.pay, cpu, clen, cudaMemcpyHostToDevice), "cpu payload in");
    die_cuda(cudaMemcpy(d.offs, offs_h, (nc + 1) * 8, cudaMemcpyHostToDevice), "offs in");
    die_cuda(cudaMemset(d.dst, 0x7f, n * dim * esz), "poison dst");
    die_cuda(cudaMemset(d.st, 0xee, n), "poison status");
    s = lkv_cuda_p2_decode(m, d.pay, clen, d.offs, n, dt, d.dst, d.st, NULL, &dg);
    EXPECT(s == LKV_OK, "%s: GPU decode %d %s", name, (int)s, dg.msg);
    die_cuda(cudaDeviceSynchronize(), "decode");
    die_cuda(cudaMemcpy(out_g, d.dst, n * dim * esz, cudaMemcpyDeviceToHost), "dst back");
    die_cuda(cudaMemcpy(st, d.st, n, cudaMemcpyDeviceToHost), "status back");
    EXPECT(count_not(st, n, LKV_OK) == 0, "%s: %zu decode statuses not OK", name,
           count_not(st, n, LKV_OK));
    size_t bad = 0, first_bad = 0;
    for (size_t i = 0; i < n * dim * esz; i++)
        if (out_g[i] != out_c[i] && bad++ == 0)
            first_bad = i;
    EXPECT(bad == 0, "%s: %zu decoded bytes differ, first at element %zu", name, bad,
           first_bad / esz);
    if (bad && n <= 1000) {
        dump(name, "dec_cpu.bin", out_c, n * dim * esz);
        dump(name, "dec_gpu.bin", out_g, n * dim * esz);
        dump(name, "dec_status.bin", st, n);
        dump(name, "enc_cpu2.bin", cpu, clen);
        g_dumped = 1;
    }
    dev_free(&d);
    lkv_cuda_p2_model_free(m);
out:
    free(x);
    free(src);
    free(cpu);
    free(gpu);
    free(out_c);
    free(out_g);
    free(offs_h);
    free(offs_g);
    free(st);
}

/* Whether chunk c (cnt vectors from first) holds vector v. */
static int holds(size_t first, size_t cnt, size_t v)
{
    return v >= first && v < first + cnt;
}

/* Encode: a NaN (vector 5) and a norm the version cannot code (vector 200:
 * v2 30000 in every element, fp16 infinity; v3 one element 2^32, above the
 * top code r^(255)) are marked; the rest stay OK; the chunks that hold
 * them are rejected by the C decoder and by the GPU decoder. */
static void status_encode(uint32_t fmt)
{
    const uint32_t dim = 128;
    const size_t n = 301;
    const lkv_params p = {LKV_VARIANT_E8, 54, dim, LKV_PROFILE_2, fmt};
    const size_t chunk = lkv_p2_chunk_vectors(&p), nc = lkv_cuda_p2_chunks(&p, n);
    rng r = {99};
    float *x = malloc(n * dim * sizeof *x);
    gen(DS_NORMAL, &r, x, n, dim);
    x[5 * dim + 17] = NAN;
    if (fmt == LKV_FMT_VERSION_P2)
        for (uint32_t j = 0; j < dim; j++)
            x[200 * dim + j] = 30000.0f;
    else
        x[200 * dim + 3] = 4294967296.0f;
    uint8_t *src = malloc(n * dim * 4), st[301];
    to_dtype(x, n * dim, LKV_DTYPE_FP32, src);
    lkv_cuda_p2_model *m = NULL;
    lkv_diag dg;
    lkv_status s = lkv_cuda_p2_model_create(&p, 0, &m, &dg);
    EXPECT(s == LKV_OK, "v%u status_encode: model %s", fmt, dg.msg);
    if (s != LKV_OK)
        return;
    dev d = {0};
    const size_t bound = lkv_p2_payload_bound(&p, n), wb = lkv_cuda_p2_encode_workspace(m, n);
    uint64_t *offs = malloc((nc + 1) * 8);
    uint8_t *pay = malloc(bound), *out = malloc(chunk * dim * 4);
    die_cuda(cudaMalloc(&d.src, n * dim * 4), "malloc");
    die_cuda(cudaMalloc(&d.pay, bound), "malloc");
    die_cuda(cudaMalloc(&d.work, wb), "malloc");
    die_cuda(cudaMalloc(&d.dst, n * dim * 4), "malloc");
    die_cuda(cudaMalloc((void **)&d.offs, (nc + 1) * 8), "malloc");
    die_cuda(cudaMalloc((void **)&d.st, n), "malloc");
    die_cuda(cudaMemcpy(d.src, src, n * dim * 4, cudaMemcpyHostToDevice), "copy");
    s = lkv_cuda_p2_encode(m, LKV_DTYPE_FP32, d.src, n, d.pay, bound, d.offs, d.work, wb, d.st,
                           NULL, &dg);
    EXPECT(s == LKV_OK, "v%u status_encode: encode %s", fmt, dg.msg);
    die_cuda(cudaDeviceSynchronize(), "encode");
    die_cuda(cudaMemcpy(st, d.st, n, cudaMemcpyDeviceToHost), "status back");
    die_cuda(cudaMemcpy(offs, d.offs, (nc + 1) * 8, cudaMemcpyDeviceToHost), "offs back");
    EXPECT(st[5] == LKV_ERR_NONFINITE, "v%u status_encode: NaN vector has status %d", fmt, st[5]);
    EXPECT(st[200] == LKV_ERR_NORM_OVERFLOW, "v%u status_encode: overflow vector has status %d",
           fmt, st[200]);
    st[5] = st[200] = LKV_OK;
    EXPECT(count_not(st, n, LKV_OK) == 0, "v%u status_encode: other vectors not OK", fmt);
    /* the chunks of the failed vectors: rejected by every decoder */
    const size_t glen = offs[nc] <= bound ? (size_t)offs[nc] : 0;
    die_cuda(cudaMemcpy(pay, d.pay, glen, cudaMemcpyDeviceToHost), "payload back");
    die_cuda(cudaMemset(d.st, 0xee, n), "poison status");
    s = lkv_cuda_p2_decode(m, d.pay, glen, d.offs, n, LKV_DTYPE_FP32, d.dst, d.st, NULL, &dg);
    EXPECT(s == LKV_OK, "v%u status_encode: decode %s", fmt, dg.msg);
    die_cuda(cudaDeviceSynchronize(), "decode");
    die_cuda(cudaMemcpy(st, d.st, n, cudaMemcpyDeviceToHost), "status back");
    size_t wrong = 0;
    for (size_t c = 0; c < nc; c++) {
        const size_t first = c * chunk, cnt = n - first < chunk ? n - first : chunk;
        const int bad = holds(first, cnt, 5) || holds(first, cnt, 200);
        const lkv_status cs = lkv_p2_decode(&p, pay + offs[c], (size_t)(offs[c + 1] - offs[c]), cnt,
                                            LKV_DTYPE_FP32, out, &dg);
        wrong += (cs != LKV_OK) != bad;
        wrong += count_not(st + first, cnt, bad ? LKV_ERR_CORRUPT : LKV_OK);
    }
    EXPECT(wrong == 0, "v%u status_encode: %zu wrong verdicts on the failed vectors' chunks", fmt,
           wrong);
    /* small buffers are refused with a named error */
    s = lkv_cuda_p2_encode(m, LKV_DTYPE_FP32, d.src, n, d.pay, bound - 1, d.offs, d.work, wb, d.st,
                           NULL, &dg);
    EXPECT(s == LKV_ERR_BUFFER_SMALL && strstr(dg.msg, "cap="), "status_encode: small cap: %d %s",
           (int)s, dg.msg);
    s = lkv_cuda_p2_encode(m, LKV_DTYPE_FP32, d.src, n, d.pay, bound, d.offs, d.work, wb - 1, d.st,
                           NULL, &dg);
    EXPECT(s == LKV_ERR_BUFFER_SMALL && strstr(dg.msg, "work_bytes="),
           "status_encode: small workspace: %d %s", (int)s, dg.msg);
    const lkv_params p1 = {LKV_VARIANT_E8, 54, dim, LKV_PROFILE_1, 0};
    lkv_cuda_p2_model *m1 = NULL;
    s = lkv_cuda_p2_model_create(&p1, 0, &m1, &dg);
    EXPECT(s == LKV_ERR_VARIANT && m1 == NULL && strstr(dg.msg, "profile=1"),
           "status_encode: profile 1 model: %d %s", (int)s, dg.msg);
    dev_free(&d);
    lkv_cuda_p2_model_free(m);
    free(x);
    free(src);
    free(offs);
    free(pay);
    free(out);
}

/* Decode of a damaged CPU payload of 2 chunks + 45 vectors at D = 64 (the
 * last chunk's cnt * np is odd): mode 0 zeroes chunk 1's first norm (v2: an
 * invalid norm; v3: a valid code, which the C decoder reads too), mode 1
 * flips a word of chunk 1's stream, mode 2 (v3) sets the last chunk's pad
 * byte. Each chunk's GPU statuses and output equal the C decoder's on that
 * chunk alone (zeros for a rejected chunk); then a final offset past the
 * payload fails the last chunk. */
static void status_decode(uint32_t fmt, int mode)
{
    const uint32_t dim = 64;
    const lkv_params p = {LKV_VARIANT_E8, 38, dim, LKV_PROFILE_2, fmt};
    const size_t chunk = lkv_p2_chunk_vectors(&p), n = 2 * chunk + 45, vb = dim * 2;
    enum { NC = 3 };
    char name[64];
    snprintf(name, sizeof name, "v%u status_decode(%d)", fmt, mode);
    rng r = {7 + (uint64_t)mode};
    float *x = malloc(n * dim * sizeof *x);
    gen(DS_NORMAL, &r, x, n, dim);
    uint8_t *src = malloc(n * vb);
    to_dtype(x, n * dim, LKV_DTYPE_BF16, src);
    const size_t bound = lkv_p2_payload_bound(&p, n);
    uint8_t *pay = malloc(bound), *ref = malloc(chunk * vb), *out = malloc(n * vb), *st = malloc(n);
    uint64_t offs[NC + 1];
    size_t len = 0;
    lkv_diag dg;
    EXPECT(lkv_cuda_p2_chunks(&p, n) == NC, "%s: chunks", name);
    EXPECT(lkv_p2_encode(&p, LKV_DTYPE_BF16, src, n, pay, bound, &len, &dg) == LKV_OK,
           "%s: CPU encode %s", name, dg.msg);
    EXPECT(lkv_cuda_p2_index(&p, pay, len, n, offs, &dg) == LKV_OK, "%s: index %s", name, dg.msg);
    long want = -2; /* the chunk the C decoder must reject, -1 none, -2 any */
    if (mode == 0) {
        pay[offs[1] + 4] = 0;
        if (fmt == LKV_FMT_VERSION_P2)
            pay[offs[1] + 5] = 0;
        want = fmt == LKV_FMT_VERSION_P2 ? 1 : -1;
    } else if (mode == 1) {
        pay[(size_t)(offs[1] + offs[2]) / 2 & ~(size_t)1] ^= 0x5a;
    } else {
        const size_t at = offs[2] + 4 + 45 * lkv_piece_count(dim);
        EXPECT(pay[at] == 0, "%s: pad byte 0x%02x", name, pay[at]);
        pay[at] = 0x01;
        want = 2;
    }
    lkv_cuda_p2_model *m = NULL;
    lkv_status s = lkv_cuda_p2_model_create(&p, 0, &m, &dg);
    EXPECT(s == LKV_OK, "%s: model %s", name, dg.msg);
    if (s != LKV_OK)
        return;
    dev d = {0};
    die_cuda(cudaMalloc(&d.pay, len + 2), "malloc");
    die_cuda(cudaMalloc(&d.dst, n * vb), "malloc");
    die_cuda(cudaMalloc((void **)&d.offs, sizeof offs), "malloc");
    die_cuda(cudaMalloc((void **)&d.st, n), "malloc");
    die_cuda(cudaMemcpy(d.pay, pay, len, cudaMemcpyHostToDevice), "copy");
    die_cuda(cudaMemcpy(d.offs, offs, sizeof offs, cudaMemcpyHostToDevice), "copy");
    die_cuda(cudaMemset(d.dst, 0x7f, n * vb), "poison dst");
    s = lkv_cuda_p2_decode(m, d.pay, len, d.offs, n, LKV_DTYPE_BF16, d.dst, d.st, NULL, &dg);
    EXPECT(s == LKV_OK, "%s: launch %s", name, dg.msg);
    die_cuda(cudaDeviceSynchronize(), "decode");
    die_cuda(cudaMemcpy(out, d.dst, n * vb, cudaMemcpyDeviceToHost), "back");
    die_cuda(cudaMemcpy(st, d.st, n, cudaMemcpyDeviceToHost), "back");
    size_t wrong_st = 0, wrong_bytes = 0;
    long nbad = 0, last_bad = -1;
    for (size_t c = 0; c < NC; c++) {
        const size_t first = c * chunk, cnt = n - first < chunk ? n - first : chunk;
        const int ok = lkv_p2_decode(&p, pay + offs[c], (size_t)(offs[c + 1] - offs[c]), cnt,
                                     LKV_DTYPE_BF16, ref, &dg) == LKV_OK;
        if (!ok) {
            nbad++;
            last_bad = (long)c;
        }
        wrong_st += count_not(st + first, cnt, ok ? LKV_OK : LKV_ERR_CORRUPT);
        for (size_t i = 0; i < cnt * vb; i++)
            wrong_bytes += out[first * vb + i] != (ok ? ref[i] : 0);
    }
    EXPECT(wrong_st == 0 && wrong_bytes == 0, "%s: %zu statuses and %zu bytes differ", name,
           wrong_st, wrong_bytes);
    if (want != -2)
        EXPECT(nbad == (want >= 0) && last_bad == want,
               "%s: the C decoder rejects %ld chunks (last %ld), want %ld", name, nbad, last_bad,
               want);
    /* a wrong final offset (trailing bytes) fails the last chunk */
    const uint64_t lie = len + 2;
    die_cuda(cudaMemcpy(d.offs + NC, &lie, 8, cudaMemcpyHostToDevice), "copy");
    lkv_cuda_p2_decode(m, d.pay, len, d.offs, n, LKV_DTYPE_BF16, d.dst, d.st, NULL, &dg);
    die_cuda(cudaDeviceSynchronize(), "decode");
    die_cuda(cudaMemcpy(st, d.st, n, cudaMemcpyDeviceToHost), "back");
    EXPECT(count_not(st + 2 * chunk, 45, LKV_ERR_CORRUPT) == 0,
           "%s: offset past the payload accepted", name);
    dev_free(&d);
    lkv_cuda_p2_model_free(m);
    free(x);
    free(src);
    free(pay);
    free(ref);
    free(out);
    free(st);
}

/* Every case in the three container versions, the same data in each
 * (version 4: the channel mode for the log-normal channels and the keys,
 * the rotated one elsewhere). */
enum { NFMT = 3 };
static const uint32_t k_fmts[NFMT] = {LKV_FMT_VERSION_P3, LKV_FMT_VERSION_P2, LKV_FMT_VERSION_P4};

static void status_all(void)
{
    for (int f = 0; f < NFMT; f++) {
        status_encode(k_fmts[f]);
        status_decode(k_fmts[f], 0);
        status_decode(k_fmts[f], 1);
    }
    status_decode(LKV_FMT_VERSION_P3, 2);
    status_decode(LKV_FMT_VERSION_P4, 2);
}

int main(int argc, char **argv)
{
    const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    const int tiny = argc > 1 && strcmp(argv[1], "--tiny") == 0;
    if (lkv_cuda_device_count() == 0) {
        printf("SKIP: no CUDA device\n0 passed, 0 failed\n");
        return LKV_TEST_SKIP_CODE;
    }
    static const lkv_dtype dts[3] = {LKV_DTYPE_BF16, LKV_DTYPE_FP16, LKV_DTYPE_FP32};
    if (tiny) { /* for compute-sanitizer: every kernel shape once, few vectors */
        for (int f = 0; f < NFMT; f++) {
            one_case(k_fmts[f], DS_KEYS, 54, 128, LKV_DTYPE_BF16, 300, 11);
            one_case(k_fmts[f], DS_NORMAL, 38, 8, LKV_DTYPE_FP32, 70, 12);
            one_case(k_fmts[f], DS_T3, 54, 576, LKV_DTYPE_FP16, 129, 13);
            one_case(k_fmts[f], DS_LOGNORMAL, 200, 1024, LKV_DTYPE_BF16, 40, 14);
            one_case(k_fmts[f], DS_NORMAL, 38, 200, LKV_DTYPE_BF16, 257, 15);
        }
        status_all();
        printf("%d passed, %d failed\n", g_pass, g_fail);
        return g_fail ? 1 : 0;
    }
    static const uint32_t qs[] = {1, 5, 38, 54, 200, 1023};
    static const uint32_t dims[] = {8, 64, 128, 200, 576, 1024};
    for (int f = 0; f < NFMT; f++) {
        const uint32_t fmt = k_fmts[f];
        uint64_t seed = 1;
        /* every dataset at D = 128, bf16, each Q; partial last chunk */
        for (int ds = 0; ds < DS_COUNT; ds++)
            for (size_t qi = 0; qi < sizeof qs / sizeof qs[0]; qi++)
                one_case(fmt, ds, qs[qi], 128, LKV_DTYPE_BF16, quick ? 1000 : 5000, seed++);
        /* dims (200: three pieces, models in global memory) and dtypes */
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
            for (int t = 0; t < 3; t++)
                for (int ds = 0; ds < DS_COUNT; ds += quick ? 3 : 1)
                    one_case(fmt, ds, dims[di] == 576 ? 54 : 38, dims[di], dts[t], 333, seed++);
        /* tiny and exact-chunk batches; 257 and 45 x 3 pieces: odd norm
         * fields in version 3 */
        one_case(fmt, DS_NORMAL, 54, 128, LKV_DTYPE_BF16, 1, seed++);
        one_case(fmt, DS_KEYS, 54, 128, LKV_DTYPE_BF16, 31, seed++);
        one_case(fmt, DS_NORMAL, 54, 128, LKV_DTYPE_BF16, 33, seed++);
        one_case(fmt, DS_T3, 54, 128, LKV_DTYPE_FP16, 256, seed++);
        one_case(fmt, DS_NORMAL, 54, 128, LKV_DTYPE_BF16, 257, seed++);
        one_case(fmt, DS_NORMAL, 38, 200, LKV_DTYPE_BF16, 45, seed++);
        one_case(fmt, DS_T3, 54, 128, LKV_DTYPE_BF16, 512, seed++);
        one_case(fmt, DS_NORMAL, 54, 96, LKV_DTYPE_BF16, 200, seed++);
        if (!quick)
            one_case(fmt, DS_NORMAL, 54, 128, LKV_DTYPE_BF16, 1u << 17, seed++);
    }
    status_all();
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
