/* SPDX-License-Identifier: Apache-2.0 */
/*
 * codec_quality.c - rate-distortion report of the KakeyaLattice codec.
 *
 * Design note: the program measures the relative MSE
 * sum ||x - x^||^2 / sum ||x||^2 (accumulated in double) of the E8 and D4
 * variants at Q in {2, 5, 10, 19, 38, 76, 152}, through the public API only
 * (lkv_encode / lkv_decode, fp32 in and out, LKV_ISA_AUTO; the bit budget is
 * lkv_bits_per_vector), beside scalar quantisers a KV cache could use instead
 * at similar budgets. The data is synthetic and KV-like, D = 128, drawn from
 * the benchmarks' seeded xoshiro256** generator (bench/common), so a run is reproducible
 * bit for bit on any machine: the same command prints the same numbers.
 *
 * The baselines are written here, not taken from the codec, and all store
 * one fp16 scale per vector (16 bits) beside 128 codes:
 *   absmax int-N   scale = fp16(max|x| / (2^(N-1) - 1)), codes rint(x / scale)
 *                  clamped to +-(2^(N-1) - 1)   (the clamp matters only when
 *                  fp16 rounds the scale down);
 *   Hadamard int-N the same on H x, H the normalised Walsh-Hadamard matrix,
 *                  then H again to decode (H is its own inverse);
 *   fp8 e4m3       scale = fp16(max|x| / 448), x / scale rounded to nearest
 *                  even on the e4m3 grid (3 mantissa bits, subnormal step
 *                  2^-9, largest finite 448).
 * bf16 (2048 bits, the uncompressed KV cache) is listed as the anchor of the
 * "ratio vs bf16" column.
 *
 * Output: a table on stdout, --json FILE (read by plot_rd.py), --markdown
 * FILE (docs/quality.md). --oracle DIR additionally compares the codec with
 * the reference implementation's own reconstructions of the same inputs
 * (shared/data/reference-oracle). Single-threaded on purpose: the report is
 * about quality, and the development machine is shared.
 */
#include "lkv_bench.h"
#include "lkv_codec.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DIM             128u
#define BF16_BITS       (DIM * 16u)
#define SCALE_BITS      16u
#define DEFAULT_VECTORS 65536u
#define DEFAULT_SEED    0x6b616b6579614c31ull /* "kakeyaL1" */
#define FP8_E4M3_MAX    448.0f
#define MAX_RESULTS     48
#define N_QS            7
#define N_QS_2K         6

/* The Q values of the issue (and of the reference's own reports). */
static const uint32_t k_qs[N_QS] = {2, 5, 10, 19, 38, 76, 152};
/* Extra E8 and D4 series, Q = 2^k - 1: then B = 2Q + 1 = 2^(k+1) - 1 and
 * the rounded-up index widths waste little, unlike e.g. Q = 38 (E8:
 * 8 log2 77 = 50.1 -> 51 bits; D4: 4 log2 77 - 1 = 24.07 -> 25 bits).
 * They show what the choice of Q costs. */
static const uint32_t k_qs_2k[N_QS_2K] = {3, 7, 15, 31, 63, 127};

/* ------------------------------------------------------------------------ */
/* Datasets                                                                  */
/* ------------------------------------------------------------------------ */

/* The reference does not state its log-normal sigma; 1.5 reproduces its five
 * figures in docs/codec.md section 8 to about 1 % (1.0 gives +15 %, 2.0 gives
 * -16 %), so this row of the reference check is a calibration, not a test. */
#define LOGNORMAL_SIGMA   1.5
#define KEY_OUTLIERS      4u
#define KEY_OUTLIER_SCALE 20.0
#define KEY_OFFSET_SIGMA  1.0

typedef void (*gen_fn)(lkv_bench_rng *r, float *x, size_t n);

static void gen_normal(lkv_bench_rng *r, float *x, size_t n)
{
    for (size_t i = 0; i < n * DIM; i++)
        x[i] = (float)lkv_bench_rng_normal(r);
}

/* t = z / sqrt(chi2_3 / 3), chi2_3 the sum of three squared normals. */
static void gen_student_t3(lkv_bench_rng *r, float *x, size_t n)
{
    for (size_t i = 0; i < n * DIM; i++) {
        const double z = lkv_bench_rng_normal(r);
        double chi2 = 0.0;
        for (int k = 0; k < 3; k++) {
            const double g = lkv_bench_rng_normal(r);
            chi2 += g * g;
        }
        x[i] = (float)(z / sqrt(chi2 / 3.0));
    }
}

/* One scale per channel, exp(sigma * N(0,1)), shared by all vectors. */
static void gen_lognormal_channels(lkv_bench_rng *r, float *x, size_t n)
{
    double scale[DIM];
    for (uint32_t j = 0; j < DIM; j++)
        scale[j] = exp(LOGNORMAL_SIGMA * lkv_bench_rng_normal(r));
    for (size_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < DIM; j++)
            x[i * DIM + j] = (float)(scale[j] * lkv_bench_rng_normal(r));
}

/* Keys: N(0,1) per element, KEY_OUTLIERS channels (drawn once) scaled by
 * KEY_OUTLIER_SCALE, plus a per-channel offset N(0, KEY_OFFSET_SIGMA^2)
 * shared by all vectors - the pattern of pre-RoPE keys in many LLMs. */
static void gen_keys_dim(lkv_bench_rng *r, float *x, size_t n, uint32_t dim)
{
    double scale[LKV_DIM_MAX], offset[LKV_DIM_MAX];
    uint32_t perm[LKV_DIM_MAX];
    for (uint32_t j = 0; j < dim; j++) {
        scale[j] = 1.0;
        offset[j] = KEY_OFFSET_SIGMA * lkv_bench_rng_normal(r);
        perm[j] = j;
    }
    for (uint32_t j = 0; j < KEY_OUTLIERS; j++) { /* partial Fisher-Yates */
        const uint32_t k = j + (uint32_t)(lkv_bench_rng_next(r) % (dim - j));
        const uint32_t t = perm[j];
        perm[j] = perm[k];
        perm[k] = t;
        scale[perm[j]] = KEY_OUTLIER_SCALE;
    }
    for (size_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < dim; j++)
            x[i * dim + j] = (float)(scale[j] * lkv_bench_rng_normal(r) + offset[j]);
}

static void gen_keys(lkv_bench_rng *r, float *x, size_t n)
{
    gen_keys_dim(r, x, n, DIM);
}

typedef struct dataset {
    const char *name;  /* JSON key */
    const char *title; /* heading */
    const char *how;   /* one sentence on how it is generated */
    gen_fn gen;
} dataset;

static const dataset k_datasets[] = {
    {"normal", "Standard normal", "i.i.d. N(0, 1) elements.", gen_normal},
    {"student_t3", "Student-t, 3 degrees of freedom",
     "i.i.d. Student-t elements with 3 degrees of freedom (z / sqrt(chi2_3 / 3)): heavy tails.",
     gen_student_t3},
    {"lognormal_channels", "Normal x per-channel log-normal scale",
     "N(0, 1) elements times one scale per channel, exp(1.5 N(0, 1)), drawn once and shared by "
     "all vectors.",
     gen_lognormal_channels},
    {"keys", "Keys: 4 outlier channels (20x) plus a per-channel offset",
     "N(0, 1) elements; 4 channels (drawn once) scaled by 20; plus one offset per channel, "
     "N(0, 1), shared by all vectors.",
     gen_keys},
};
#define N_DATASETS (sizeof k_datasets / sizeof k_datasets[0])

/* ------------------------------------------------------------------------ */
/* Measurement                                                               */
/* ------------------------------------------------------------------------ */

typedef struct result {
    char label[32];     /* "E8 Q=38", "absmax int6", ...        */
    const char *family; /* "E8", "D4", "E8_q2k", "D4_q2k", "absmax", "hadamard", "fp8",
                           "bf16" */
    uint32_t param;     /* Q, N, or 0                            */
    uint32_t bits;      /* bits per vector                       */
    double rel_mse;
} result;

typedef struct report {
    result res[N_DATASETS][MAX_RESULTS];
    int nres[N_DATASETS];
} report;

static double rel_mse(const float *x, const float *y, size_t count)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < count; i++) {
        const double d = (double)x[i] - (double)y[i];
        num += d * d;
        den += (double)x[i] * (double)x[i];
    }
    return den > 0.0 ? num / den : 0.0;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("codec_quality: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* Roundtrip through the public codec API; returns the bits per vector. */
static uint32_t codec_roundtrip(lkv_variant v, uint32_t q, const float *x, size_t n, float *xhat,
                                uint8_t *rec)
{
    const lkv_params p = {.variant = v, .q = q, .dim = DIM};
    lkv_diag diag;
    lkv_status st = lkv_encode(&p, LKV_DTYPE_FP32, x, n, rec, LKV_ISA_AUTO, &diag);
    if (st != LKV_OK)
        die("lkv_encode %s Q=%u: %s: %s", lkv_variant_name(v), q, lkv_status_name(st), diag.msg);
    st = lkv_decode(&p, rec, n, LKV_DTYPE_FP32, xhat, LKV_ISA_AUTO, &diag);
    if (st != LKV_OK)
        die("lkv_decode %s Q=%u: %s: %s", lkv_variant_name(v), q, lkv_status_name(st), diag.msg);
    return lkv_bits_per_vector(&p);
}

/* Normalised Walsh-Hadamard transform, in place; its own inverse. */
static void wht(float *v)
{
    for (uint32_t h = 1; h < DIM; h <<= 1)
        for (uint32_t i = 0; i < DIM; i += 2 * h)
            for (uint32_t j = i; j < i + h; j++) {
                const float a = v[j], b = v[j + h];
                v[j] = a + b;
                v[j + h] = a - b;
            }
    const float inv_sqrt_d = 0.088388347648318440550f; /* fp32(1/sqrt(128)) */
    for (uint32_t j = 0; j < DIM; j++)
        v[j] *= inv_sqrt_d;
}

static float absmax(const float *v)
{
    float m = 0.0f;
    for (uint32_t j = 0; j < DIM; j++)
        m = fmaxf(m, fabsf(v[j]));
    return m;
}

/* The per-vector scale as it would be stored: rounded to fp16. */
static float fp16_scale(float amax, float top)
{
    return lkv_f16_to_f32(lkv_f32_to_f16(amax / top));
}

/* Per-vector absmax int-N of one vector, in place. */
static void int_n_vec(float *v, uint32_t nbits)
{
    const float qmax = (float)((1u << (nbits - 1u)) - 1u);
    const float s = fp16_scale(absmax(v), qmax);
    for (uint32_t j = 0; j < DIM; j++) {
        if (!(s > 0.0f)) { /* all-zero (or fp16-underflowing) vector */
            v[j] = 0.0f;
            continue;
        }
        const float c = fminf(fmaxf(rintf(v[j] / s), -qmax), qmax);
        v[j] = c * s;
    }
}

static uint32_t int_n_roundtrip(const float *x, size_t n, float *xhat, uint32_t nbits, int rotate)
{
    for (size_t i = 0; i < n; i++) {
        float *v = xhat + i * DIM;
        memcpy(v, x + i * DIM, DIM * sizeof *v);
        if (rotate)
            wht(v);
        int_n_vec(v, nbits);
        if (rotate)
            wht(v);
    }
    return DIM * nbits + SCALE_BITS;
}

/* Round to the nearest e4m3 value (ties to even); saturates at +-448. */
static float round_e4m3(float v)
{
    const float a = fabsf(v);
    if (a >= FP8_E4M3_MAX)
        return copysignf(FP8_E4M3_MAX, v);
    int e;
    (void)frexpf(a, &e); /* a in [2^(e-1), 2^e) */
    int ex = e - 1;
    if (ex < -6) /* below the smallest normal: the subnormal grid, step 2^-9 */
        ex = -6;
    const float ulp = ldexpf(1.0f, ex - 3);
    return copysignf(rintf(a / ulp) * ulp, v); /* a / ulp is exact */
}

static uint32_t fp8_roundtrip(const float *x, size_t n, float *xhat)
{
    for (size_t i = 0; i < n; i++) {
        const float *v = x + i * DIM;
        float *o = xhat + i * DIM;
        const float s = fp16_scale(absmax(v), FP8_E4M3_MAX);
        for (uint32_t j = 0; j < DIM; j++)
            o[j] = s > 0.0f ? round_e4m3(v[j] / s) * s : 0.0f;
    }
    return DIM * 8u + SCALE_BITS;
}

static uint32_t bf16_roundtrip(const float *x, size_t n, float *xhat)
{
    for (size_t i = 0; i < n * DIM; i++)
        xhat[i] = lkv_bf16_to_f32(lkv_f32_to_bf16(x[i]));
    return BF16_BITS;
}

static void add_result(report *rep, size_t ds, const char *family, uint32_t param, uint32_t bits,
                       double mse, const char *fmt, ...)
{
    if (rep->nres[ds] >= MAX_RESULTS)
        die("too many results for one dataset");
    result *r = &rep->res[ds][rep->nres[ds]++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->label, sizeof r->label, fmt, ap);
    va_end(ap);
    r->family = family;
    r->param = param;
    r->bits = bits;
    r->rel_mse = mse;
}

static void measure_dataset(report *rep, size_t ds, const float *x, size_t n, float *xhat,
                            uint8_t *rec)
{
    const size_t count = n * DIM;
    const lkv_variant vars[2] = {LKV_VARIANT_E8, LKV_VARIANT_D4};
    for (int vi = 0; vi < 2; vi++)
        for (int qi = 0; qi < N_QS; qi++) {
            const uint32_t bits = codec_roundtrip(vars[vi], k_qs[qi], x, n, xhat, rec);
            add_result(rep, ds, lkv_variant_name(vars[vi]), k_qs[qi], bits, rel_mse(x, xhat, count),
                       "%s Q=%u", lkv_variant_name(vars[vi]), k_qs[qi]);
        }
    for (int vi = 0; vi < 2; vi++)
        for (int qi = 0; qi < N_QS_2K; qi++) {
            const uint32_t bits = codec_roundtrip(vars[vi], k_qs_2k[qi], x, n, xhat, rec);
            add_result(rep, ds, vi ? "D4_q2k" : "E8_q2k", k_qs_2k[qi], bits,
                       rel_mse(x, xhat, count), "%s Q=%u (2^k-1)", lkv_variant_name(vars[vi]),
                       k_qs_2k[qi]);
        }
    for (int rot = 0; rot < 2; rot++)
        for (uint32_t nb = 4; nb <= 8; nb++) {
            const uint32_t bits = int_n_roundtrip(x, n, xhat, nb, rot);
            add_result(rep, ds, rot ? "hadamard" : "absmax", nb, bits, rel_mse(x, xhat, count),
                       "%s int%u", rot ? "Hadamard" : "absmax", nb);
        }
    uint32_t bits = fp8_roundtrip(x, n, xhat);
    add_result(rep, ds, "fp8", 8, bits, rel_mse(x, xhat, count), "fp8 e4m3");
    bits = bf16_roundtrip(x, n, xhat);
    add_result(rep, ds, "bf16", 16, bits, rel_mse(x, xhat, count), "bf16");
}

static const result *find_result(const report *rep, size_t ds, const char *family, uint32_t param)
{
    for (int i = 0; i < rep->nres[ds]; i++)
        if (strcmp(rep->res[ds][i].family, family) == 0 && rep->res[ds][i].param == param)
            return &rep->res[ds][i];
    return NULL;
}

/*
 * Bits per vector at which a lattice variant reaches `target` rel-MSE:
 * log10(rel-MSE) interpolated linearly in bits between neighbouring Q
 * (it is close to linear: about 6 dB per bit per block coordinate).
 * Returns NAN when the target lies outside the measured Q range.
 */
static double bits_at_mse(const report *rep, size_t ds, const char *family, double target)
{
    const int q2k = strstr(family, "_q2k") != NULL;
    const uint32_t *qs = q2k ? k_qs_2k : k_qs;
    const int nq = q2k ? N_QS_2K : N_QS;
    for (int qi = 0; qi + 1 < nq; qi++) {
        const result *a = find_result(rep, ds, family, qs[qi]);
        const result *b = find_result(rep, ds, family, qs[qi + 1]);
        if (!a || !b)
            continue;
        if (target <= a->rel_mse && target >= b->rel_mse) {
            const double la = log10(a->rel_mse), lb = log10(b->rel_mse), lt = log10(target);
            const double t = la == lb ? 0.0 : (la - lt) / (la - lb);
            return a->bits + t * ((double)b->bits - a->bits);
        }
    }
    return NAN;
}

/* ------------------------------------------------------------------------ */
/* Checks against the reference (docs/codec.md section 8, the oracle files)  */
/* ------------------------------------------------------------------------ */

typedef struct spec_fig {
    const char *dataset, *family;
    uint32_t param;
    double ref;
} spec_fig;

/* The reference's figures, copied from docs/codec.md section 8. */
static const spec_fig k_spec[] = {
    {"normal", "D4", 10, 8.79e-3},
    {"normal", "E8", 10, 5.82e-3},
    {"normal", "D4", 38, 6.09e-4},
    {"normal", "E8", 38, 4.03e-4},
    {"normal", "E8", 152, 2.52e-5},
    {"normal", "absmax", 6, 7.00e-4},
    {"normal", "absmax", 8, 4.17e-5},
    {"normal", "fp8", 8, 6.62e-4},
    {"lognormal_channels", "D4", 10, 6.87e-3},
    {"lognormal_channels", "E8", 10, 4.54e-3},
    {"lognormal_channels", "D4", 38, 4.75e-4},
    {"lognormal_channels", "E8", 38, 3.14e-4},
    {"lognormal_channels", "E8", 152, 1.97e-5},
};
#define N_SPEC (sizeof k_spec / sizeof k_spec[0])

static size_t dataset_index(const char *name)
{
    for (size_t i = 0; i < N_DATASETS; i++)
        if (strcmp(k_datasets[i].name, name) == 0)
            return i;
    return 0;
}

typedef struct oracle_row {
    const char *file;
    lkv_variant variant;
    uint32_t q;
    double ref_mse, our_mse;
    size_t same, total; /* vectors whose reconstructions agree to 1e-5 of ||x|| */
} oracle_row;

typedef struct oracle {
    int have;
    size_t n;
    oracle_row rows[4];
} oracle;

static float *read_f32(const char *dir, const char *name, size_t count)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open %s: %s", path, strerror(errno));
    float *buf = malloc(count * sizeof *buf);
    if (!buf)
        die("out of memory reading %s", path);
    const size_t got = fread(buf, sizeof *buf, count, f);
    const int extra = fgetc(f);
    fclose(f);
    if (got != count || extra != EOF)
        die("%s: expected exactly %zu float32 values", path, count);
    return buf;
}

static void run_oracle(oracle *o, const char *dir)
{
    const size_t n = 2048; /* shared/data/reference-oracle/manifest.json */
    const oracle_row init[4] = {
        {"d4_q10.f32", LKV_VARIANT_D4, 10, 0, 0, 0, 0},
        {"e8_q10.f32", LKV_VARIANT_E8, 10, 0, 0, 0, 0},
        {"d4_q152.f32", LKV_VARIANT_D4, 152, 0, 0, 0, 0},
        {"e8_q152.f32", LKV_VARIANT_E8, 152, 0, 0, 0, 0},
    };
    float *x = read_f32(dir, "input.f32", n * DIM);
    float *ours = malloc(n * DIM * sizeof *ours);
    const lkv_params largest = {.variant = LKV_VARIANT_E8, .q = 152, .dim = DIM};
    uint8_t *rec = malloc(n * lkv_record_bytes(&largest));
    if (!ours || !rec)
        die("out of memory");
    o->have = 1;
    o->n = n;
    for (int k = 0; k < 4; k++) {
        oracle_row *row = &o->rows[k];
        *row = init[k];
        float *ref = read_f32(dir, row->file, n * DIM);
        codec_roundtrip(row->variant, row->q, x, n, ours, rec);
        row->ref_mse = rel_mse(x, ref, n * DIM);
        row->our_mse = rel_mse(x, ours, n * DIM);
        row->total = n;
        for (size_t i = 0; i < n; i++) {
            double d2 = 0.0, x2 = 0.0;
            for (uint32_t j = 0; j < DIM; j++) {
                const double d = (double)ours[i * DIM + j] - (double)ref[i * DIM + j];
                d2 += d * d;
                x2 += (double)x[i * DIM + j] * (double)x[i * DIM + j];
            }
            if (d2 <= 1e-10 * x2)
                row->same++;
        }
        free(ref);
    }
    free(x);
    free(ours);
    free(rec);
}

/* ------------------------------------------------------------------------ */
/* Head dims other than 128 (codec/FORMAT.md: pieces)                        */
/* ------------------------------------------------------------------------ */

/* The head dims of issue 15 (powers of two among them, for comparison), E8
 * and D4 at three Q, on N(0, 1) data and on the keys data generated at each
 * head_dim; HD_VECTORS vectors per head_dim and dataset. */
#define N_HD       9
#define N_HD_QS    3
#define HD_VECTORS 16384u
static const uint32_t k_hd_dims[N_HD] = {64, 80, 96, 112, 128, 160, 192, 256, 576};
static const uint32_t k_hd_qs[N_HD_QS] = {10, 38, 152};

typedef struct hd_row {
    uint32_t dim, q, bits;
    lkv_variant v;
    size_t rec_bytes;
    double mse_normal, mse_keys;
} hd_row;

typedef struct hd_report {
    hd_row rows[N_HD * 2 * N_HD_QS];
    int n;
    size_t vectors;
} hd_report;

static double hd_roundtrip(const lkv_params *p, const float *x, size_t n, float *xhat, uint8_t *rec)
{
    lkv_diag diag;
    if (lkv_encode(p, LKV_DTYPE_FP32, x, n, rec, LKV_ISA_AUTO, &diag) != LKV_OK ||
        lkv_decode(p, rec, n, LKV_DTYPE_FP32, xhat, LKV_ISA_AUTO, &diag) != LKV_OK)
        die("%s Q=%u D=%u: %s", lkv_variant_name(p->variant), p->q, p->dim, diag.msg);
    return rel_mse(x, xhat, n * p->dim);
}

static void measure_head_dims(hd_report *h, uint64_t seed)
{
    const size_t n = HD_VECTORS;
    float *xn = malloc(n * LKV_DIM_MAX * sizeof *xn), *xk = malloc(n * LKV_DIM_MAX * sizeof *xk);
    float *xhat = malloc(n * LKV_DIM_MAX * sizeof *xhat);
    const lkv_params widest = {LKV_VARIANT_E8, 152, LKV_DIM_MAX};
    uint8_t *rec = malloc(n * lkv_record_bytes(&widest));
    if (!xn || !xk || !xhat || !rec)
        die("out of memory for the head-dim table");
    h->n = 0;
    h->vectors = n;
    for (int di = 0; di < N_HD; di++) {
        const uint32_t dim = k_hd_dims[di];
        lkv_bench_rng r;
        uint64_t st = seed + 100u + dim;
        lkv_bench_rng_seed(&r, lkv_bench_splitmix64(&st));
        for (size_t i = 0; i < n * dim; i++)
            xn[i] = (float)lkv_bench_rng_normal(&r);
        gen_keys_dim(&r, xk, n, dim);
        for (int vi = 0; vi < 2; vi++)
            for (int qi = 0; qi < N_HD_QS; qi++) {
                const lkv_params p = {vi ? LKV_VARIANT_D4 : LKV_VARIANT_E8, k_hd_qs[qi], dim};
                hd_row *row = &h->rows[h->n++];
                row->dim = dim;
                row->q = p.q;
                row->v = p.variant;
                row->bits = lkv_bits_per_vector(&p);
                row->rec_bytes = lkv_record_bytes(&p);
                row->mse_normal = hd_roundtrip(&p, xn, n, xhat, rec);
                row->mse_keys = hd_roundtrip(&p, xk, n, xhat, rec);
            }
    }
    free(xn);
    free(xk);
    free(xhat);
    free(rec);
}

/* ------------------------------------------------------------------------ */
/* Output                                                                    */
/* ------------------------------------------------------------------------ */

static int cmp_bits(const void *a, const void *b)
{
    const result *ra = *(const result *const *)a, *rb = *(const result *const *)b;
    if (ra->bits != rb->bits)
        return ra->bits < rb->bits ? -1 : 1;
    return strcmp(ra->label, rb->label);
}

/* Pointers to a dataset's results ordered by bits per vector. */
static int sorted_results(const report *rep, size_t ds, const result **out)
{
    const int m = rep->nres[ds];
    for (int i = 0; i < m; i++)
        out[i] = &rep->res[ds][i];
    qsort(out, (size_t)m, sizeof *out, cmp_bits);
    return m;
}

static void print_table(const report *rep, size_t n)
{
    for (size_t ds = 0; ds < N_DATASETS; ds++) {
        const result *rs[MAX_RESULTS];
        const int m = sorted_results(rep, ds, rs);
        printf("\n%s (%zu vectors, D = %u)\n", k_datasets[ds].title, n, DIM);
        printf("  %-16s %12s %14s %12s\n", "method", "bits/vector", "ratio vs bf16", "rel-MSE");
        for (int i = 0; i < m; i++)
            printf("  %-16s %12u %14.2f %12.3e\n", rs[i]->label, rs[i]->bits,
                   (double)BF16_BITS / rs[i]->bits, rs[i]->rel_mse);
    }
}

static void print_checks(const report *rep, const oracle *o)
{
    printf("\nCheck against docs/codec.md section 8 (reference figures, other seed):\n");
    for (size_t k = 0; k < N_SPEC; k++) {
        const result *r =
            find_result(rep, dataset_index(k_spec[k].dataset), k_spec[k].family, k_spec[k].param);
        if (r)
            printf("  %-20s %-14s ours %.3e  reference %.3e  %+6.2f %%\n", k_spec[k].dataset,
                   r->label, r->rel_mse, k_spec[k].ref, 100.0 * (r->rel_mse / k_spec[k].ref - 1.0));
    }
    if (!o->have)
        return;
    printf("\nSame inputs as the reference (oracle, %zu vectors):\n", o->n);
    for (int k = 0; k < 4; k++) {
        const oracle_row *row = &o->rows[k];
        printf("  %s Q=%-4u ours %.4e  reference %.4e  %+6.2f %%  same reconstruction %zu/%zu\n",
               lkv_variant_name(row->variant), row->q, row->our_mse, row->ref_mse,
               100.0 * (row->our_mse / row->ref_mse - 1.0), row->same, row->total);
    }
}

typedef struct run_info {
    char cpu[256];
    char command[1024];
    uint64_t seed;
    size_t n;
    const char *isa;
    double seconds;
} run_info;

static void write_json(const char *path, const report *rep, const oracle *o, const run_info *ri,
                       const hd_report *hd)
{
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write %s: %s", path, strerror(errno));
    lkv_json j;
    lkv_json_start(&j, f);
    lkv_json_str(&j, "benchmark", "codec_quality");
    lkv_json_str(&j, "cpu", ri->cpu);
    lkv_json_str(&j, "isa", ri->isa);
    lkv_json_str(&j, "command", ri->command);
    lkv_json_uint(&j, "seed", ri->seed);
    lkv_json_uint(&j, "vectors", ri->n);
    lkv_json_uint(&j, "dim", DIM);
    lkv_json_uint(&j, "bf16_bits", BF16_BITS);
    lkv_json_num(&j, "seconds", "%.2f", ri->seconds);
    lkv_json_array(&j, "datasets", LKV_JSON_BLOCK);
    for (size_t ds = 0; ds < N_DATASETS; ds++) {
        lkv_json_object(&j, NULL, LKV_JSON_BLOCK);
        lkv_json_str(&j, "name", k_datasets[ds].name);
        lkv_json_str(&j, "title", k_datasets[ds].title);
        lkv_json_str(&j, "generation", k_datasets[ds].how);
        lkv_json_array(&j, "results", LKV_JSON_BLOCK);
        for (int i = 0; i < rep->nres[ds]; i++) {
            const result *r = &rep->res[ds][i];
            lkv_json_object(&j, NULL, LKV_JSON_INLINE);
            lkv_json_str(&j, "method", r->label);
            lkv_json_str(&j, "family", r->family);
            lkv_json_uint(&j, "param", r->param);
            lkv_json_uint(&j, "bits_per_vector", r->bits);
            lkv_json_num(&j, "ratio_vs_bf16", "%.4f", (double)BF16_BITS / r->bits);
            lkv_json_num(&j, "rel_mse", "%.6e", r->rel_mse);
            lkv_json_end(&j);
        }
        lkv_json_end(&j);
        lkv_json_end(&j);
    }
    lkv_json_end(&j);
    lkv_json_array(&j, "reference_check", LKV_JSON_BLOCK);
    for (size_t k = 0; k < N_SPEC; k++) {
        const result *r =
            find_result(rep, dataset_index(k_spec[k].dataset), k_spec[k].family, k_spec[k].param);
        lkv_json_object(&j, NULL, LKV_JSON_INLINE);
        lkv_json_str(&j, "dataset", k_spec[k].dataset);
        lkv_json_str(&j, "method", r ? r->label : "?");
        lkv_json_num(&j, "rel_mse", "%.6e", r ? r->rel_mse : NAN);
        lkv_json_num(&j, "reference", "%.3e", k_spec[k].ref);
        lkv_json_end(&j);
    }
    lkv_json_end(&j);
    if (o->have) {
        lkv_json_array(&j, "oracle", LKV_JSON_BLOCK);
        for (int k = 0; k < 4; k++) {
            const oracle_row *row = &o->rows[k];
            lkv_json_object(&j, NULL, LKV_JSON_INLINE);
            lkv_json_str(&j, "variant", lkv_variant_name(row->variant));
            lkv_json_uint(&j, "q", row->q);
            lkv_json_uint(&j, "vectors", row->total);
            lkv_json_num(&j, "rel_mse", "%.6e", row->our_mse);
            lkv_json_num(&j, "reference_rel_mse", "%.6e", row->ref_mse);
            lkv_json_uint(&j, "same_reconstruction", row->same);
            lkv_json_end(&j);
        }
        lkv_json_end(&j);
    }
    lkv_json_array(&j, "head_dims", LKV_JSON_BLOCK);
    for (int k = 0; k < hd->n; k++) {
        const hd_row *row = &hd->rows[k];
        lkv_json_object(&j, NULL, LKV_JSON_INLINE);
        lkv_json_uint(&j, "dim", row->dim);
        lkv_json_str(&j, "variant", lkv_variant_name(row->v));
        lkv_json_uint(&j, "q", row->q);
        lkv_json_uint(&j, "vectors", hd->vectors);
        lkv_json_uint(&j, "bits_per_vector", row->bits);
        lkv_json_uint(&j, "record_bytes", row->rec_bytes);
        lkv_json_num(&j, "rel_mse_normal", "%.6e", row->mse_normal);
        lkv_json_num(&j, "rel_mse_keys", "%.6e", row->mse_keys);
        lkv_json_end(&j);
    }
    lkv_json_end(&j);
    if (lkv_json_finish(&j) != 0 || fclose(f) != 0)
        die("error writing %s", path);
}

/* The head-dim table (markdown rows, also printed on stdout). */
static void md_head_dims(FILE *f, const hd_report *hd)
{
    fprintf(f, "| head_dim | pieces | method | bytes/vector | bits/coordinate | rel-MSE N(0,1) | "
               "rel-MSE keys |\n|---:|---|---|---:|---:|---:|---:|\n");
    for (int k = 0; k < hd->n; k++) {
        const hd_row *row = &hd->rows[k];
        char pc[64];
        size_t at = 0;
        pc[0] = 0;
        for (uint32_t bit = LKV_DIM_MAX; bit; bit >>= 1)
            if (row->dim & bit)
                at += (size_t)snprintf(pc + at, sizeof pc - at, "%s%u", at ? " + " : "", bit);
        fprintf(f, "| %u | %s | %s Q=%u | %zu | %.2f | %.3e | %.3e |\n", row->dim, pc,
                lkv_variant_name(row->v), row->q, row->rec_bytes,
                8.0 * (double)row->rec_bytes / row->dim, row->mse_normal, row->mse_keys);
    }
}

/* "1.23e-4" in markdown as 1.23e-4 (plain, greppable, sorts the eye). */
static void md_results(FILE *f, const report *rep, size_t ds)
{
    const result *rs[MAX_RESULTS];
    const int m = sorted_results(rep, ds, rs);
    fprintf(f, "| method | bits/vector | ratio vs bf16 | rel-MSE |\n|---|---:|---:|---:|\n");
    for (int i = 0; i < m; i++) {
        const int lattice = strcmp(rs[i]->family, "E8") == 0 || strcmp(rs[i]->family, "D4") == 0;
        fprintf(f, "| %s%s%s | %u | %.2f | %.3e |\n", lattice ? "**" : "", rs[i]->label,
                lattice ? "**" : "", rs[i]->bits, (double)BF16_BITS / rs[i]->bits, rs[i]->rel_mse);
    }
}

/* 100 (a / b - 1) rounded to a whole percent, never "-0". */
static double pct(double a, double b)
{
    const double r = nearbyint(100.0 * (a / b - 1.0));
    return r == 0.0 ? 0.0 : r;
}

/* The equal-error comparison: bits E8 and D4 need to match each baseline. */
static void md_equal_error(FILE *f, const report *rep, size_t ds)
{
    static const struct {
        const char *family;
        uint32_t param;
    } base[] = {{"absmax", 4},   {"absmax", 6},   {"absmax", 8}, {"hadamard", 4},
                {"hadamard", 6}, {"hadamard", 8}, {"fp8", 8}};
    fprintf(f, "| baseline | its bits | its rel-MSE | E8 bits at that rel-MSE | D4 bits | "
               "E8 (Q=2^k-1) bits | D4 (Q=2^k-1) bits |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for (size_t k = 0; k < sizeof base / sizeof base[0]; k++) {
        const result *b = find_result(rep, ds, base[k].family, base[k].param);
        if (!b)
            continue;
        fprintf(f, "| %s | %u | %.3e |", b->label, b->bits, b->rel_mse);
        const char *fams[4] = {"E8", "D4", "E8_q2k", "D4_q2k"};
        for (int v = 0; v < 4; v++) {
            const double eb = bits_at_mse(rep, ds, fams[v], b->rel_mse);
            if (isnan(eb))
                fprintf(f, " outside the Q range |");
            else
                fprintf(f, " %.0f (%+.0f %%) |", eb, pct(eb, b->bits));
        }
        fputc('\n', f);
    }
}

/*
 * One cell of the summary: the bits `fam` needs to reach the error of each
 * point of family `other`, relative to that point's bits, as a range over the
 * points whose error lies inside fam's measured range. Negative: fam is
 * cheaper.
 */
static int delta_range(const report *rep, size_t ds, const char *fam, const char *other,
                       double *lo_out, double *hi_out)
{
    double lo = INFINITY, hi = -INFINITY;
    int cnt = 0;
    for (int i = 0; i < rep->nres[ds]; i++) {
        const result *r = &rep->res[ds][i];
        if (strcmp(r->family, other) != 0)
            continue;
        const double eb = bits_at_mse(rep, ds, fam, r->rel_mse);
        if (isnan(eb))
            continue;
        const double d = pct(eb, r->bits);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
        cnt++;
    }
    *lo_out = lo;
    *hi_out = hi;
    return cnt;
}

/* Widens [*lo, *hi] by fam-vs-other over datasets first..last. */
static void delta_range_over(const report *rep, size_t first, size_t last, const char *fam,
                             const char *other, double *lo, double *hi)
{
    *lo = INFINITY;
    *hi = -INFINITY;
    for (size_t ds = first; ds <= last; ds++) {
        double l, h;
        if (delta_range(rep, ds, fam, other, &l, &h)) {
            *lo = l < *lo ? l : *lo;
            *hi = h > *hi ? h : *hi;
        }
    }
}

static void md_delta_range(FILE *f, const report *rep, size_t ds, const char *fam,
                           const char *other)
{
    double lo, hi;
    if (!delta_range(rep, ds, fam, other, &lo, &hi))
        fprintf(f, " - |");
    else if (hi - lo < 0.5)
        fprintf(f, " %+.0f %% |", lo);
    else
        fprintf(f, " %+.0f .. %+.0f %% |", lo, hi);
}

static void md_summary(FILE *f, const report *rep)
{
    fprintf(f, "| dataset | E8 vs D4 | E8 vs absmax int-N | E8 vs Hadamard int-N | E8 vs fp8 "
               "e4m3 | E8 vs D4, both Q=2^k-1 | E8 Q=2^k-1 vs Hadamard int-N |\n"
               "|---|---:|---:|---:|---:|---:|---:|\n");
    for (size_t ds = 0; ds < N_DATASETS; ds++) {
        fprintf(f, "| %s |", k_datasets[ds].title);
        md_delta_range(f, rep, ds, "E8", "D4");
        md_delta_range(f, rep, ds, "E8", "absmax");
        md_delta_range(f, rep, ds, "E8", "hadamard");
        md_delta_range(f, rep, ds, "E8", "fp8");
        md_delta_range(f, rep, ds, "E8_q2k", "D4_q2k");
        md_delta_range(f, rep, ds, "E8_q2k", "hadamard");
        fputc('\n', f);
    }
}

static void write_markdown(const char *path, const report *rep, const oracle *o, const run_info *ri,
                           const hd_report *hd)
{
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write %s: %s", path, strerror(errno));
    const result *e8_38 = find_result(rep, 0, "E8", 38), *d4_38 = find_result(rep, 0, "D4", 38);
    const result *e8_38_keys = find_result(rep, N_DATASETS - 1, "E8", 38);
    const result *had6 = find_result(rep, 0, "hadamard", 6);
    double abs_lo, abs_hi, had_lo, had_hi, fp8_lo, fp8_hi, d4_lo, d4_hi, q2k_lo, q2k_hi;
    double d42_lo, d42_hi, had2_lo, had2_hi;
    delta_range_over(rep, 1, N_DATASETS - 1, "E8", "absmax", &abs_lo, &abs_hi);
    delta_range_over(rep, 0, N_DATASETS - 1, "E8", "hadamard", &had_lo, &had_hi);
    delta_range_over(rep, 0, N_DATASETS - 1, "E8", "fp8", &fp8_lo, &fp8_hi);
    delta_range_over(rep, 0, N_DATASETS - 1, "E8", "D4", &d4_lo, &d4_hi);
    delta_range_over(rep, 0, N_DATASETS - 1, "E8_q2k", "E8", &q2k_lo, &q2k_hi);
    delta_range_over(rep, 0, N_DATASETS - 1, "E8_q2k", "D4_q2k", &d42_lo, &d42_hi);
    delta_range_over(rep, 0, N_DATASETS - 1, "E8_q2k", "hadamard", &had2_lo, &had2_hi);
    const double e8_at_had6 = bits_at_mse(rep, 0, "E8", had6->rel_mse);

    fprintf(f, "# Codec quality: rate versus distortion\n\n");
    fprintf(f,
            "<!-- Generated by bench/quality/codec_quality --markdown; do not edit by hand. -->\n\n"
            "Relative MSE, `sum ||x - x^||^2 / sum ||x||^2` (accumulated in double), of the "
            "KakeyaLattice codec (E8 and D4 at Q = 2 ... 152, through the public `lkv_encode` / "
            "`lkv_decode` API, fp32 in and out) beside scalar quantisers at similar bit budgets, "
            "on four kinds of KV-like synthetic data with head_dim D = %u. \"Ratio vs bf16\" "
            "is %u bits (an uncompressed bf16 vector) divided by the bits per vector; all "
            "baselines include a 16-bit fp16 scale per vector, the lattice codec its 32 bits "
            "of `r16` and `m16`.\n\n",
            DIM, BF16_BITS);
    fprintf(f, "![rate-distortion curves](rd.png)\n\n");

    fprintf(f, "## What it shows\n\n");
    fprintf(f, "Bits per vector E8 needs to reach the same rel-MSE as the other method, "
               "relative to that method's bits (negative: E8 is smaller at equal error), over "
               "the other method's points that fall inside E8's measured range:\n\n");
    md_summary(f, rep);
    fputc('\n', f);
    fprintf(f,
            "- **Against plain scalar codes the codec wins where the data is not i.i.d.** On "
            "the heavy-tailed, per-channel-scaled and outlier-channel data E8 reaches the "
            "error of per-vector absmax int-N with %.0f to %.0f %% fewer bits, and the "
            "error of fp8 e4m3 (1040 bits) with %.0f to %.0f %% fewer. On i.i.d. normal data "
            "absmax has no outliers to pay for and ties E8.\n",
            -abs_hi, -abs_lo, -fp8_hi, -fp8_lo);
    fprintf(f,
            "- **That gain comes from the rotation, not from the lattice.** Hadamard int-N, "
            "the same normalised Walsh-Hadamard rotation followed by a plain per-vector int-N, "
            "does as well: the bits E8 needs at equal error differ from Hadamard int-N's by "
            "%+.0f to %+.0f %% over the four datasets (positive: E8 needs more; e.g. standard "
            "normal: Hadamard int6 has %.3e at %u bits, E8 needs %.0f bits for it). E8's "
            "granular gain over the integer grid (normalised second moment 0.0717 against "
            "1/12: 0.65 dB, about 0.11 bit per coordinate, 14 bits per vector at D = 128) is "
            "spent by the codec's bit accounting: two fp16 scales per vector (r16 and m16, 32 "
            "bits) where int-N stores one (16 bits), and index widths rounded up per block "
            "(E8 at Q = 38: 51 bits for 50.1, 14 bits per vector). With Q = 2^k - 1, where that "
            "rounding wastes least, E8 moves by %+.0f to %+.0f %% against its Q list and is "
            "%+.0f to %+.0f %% from Hadamard int-N: a tie, not a win.\n",
            had_lo, had_hi, had6->rel_mse, had6->bits, e8_at_had6, q2k_lo, q2k_hi, had2_lo,
            had2_hi);
    fprintf(f,
            "- **E8 against D4:** at equal error the bits E8 needs differ from D4's by %+.0f to "
            "%+.0f %% on the issue's Q list, and by %+.0f to %+.0f %% when both use Q = 2^k - 1 "
            "(the lattices alone differ by 0.29 dB, about 0.05 bit per coordinate; the rest is "
            "index rounding, e.g. D4 at Q = 38 spends 25 bits per block for 24.07). At the "
            "default Q = 38, D4 (%u bits) has %.2fx the error of E8 (%u bits) on standard "
            "normal data. E8 stays the better default variant.\n",
            d4_lo, d4_hi, d42_lo, d42_hi, d4_38->bits, d4_38->rel_mse / e8_38->rel_mse,
            e8_38->bits);
    fprintf(f,
            "- **Structure across channels lowers the relative error** of every rotated "
            "method: E8 Q=38 gives %.2e on standard normal data but %.2e on the keys. After the "
            "rotation, a few dominant channels spread evenly over all coordinates, so the "
            "largest rotated coordinate, which sets the step, is small relative to the norm.\n",
            e8_38->rel_mse, e8_38_keys->rel_mse);
    fprintf(f, "- **Caveats:** relative MSE of synthetic vectors, not attention-output error or "
               "model quality; real KV tensors (post-RoPE keys, values of particular heads) "
               "should be measured the same way before drawing product conclusions.\n\n");
    fprintf(f, "## How it was generated\n\n");
    fprintf(f,
            "```\n%s\n```\n\n"
            "%zu vectors per dataset, D = %u, seed %llu (0x%016llx; dataset k is generated "
            "from a xoshiro256** generator seeded with splitmix64(seed + k); normals by "
            "Box-Muller in double, then rounded to fp32). The codec and the baselines are "
            "deterministic, and so is the data given the same C library (it uses libm's log, "
            "sin, cos, exp and sqrt), so the same command prints the same numbers; this "
            "run used the `%s` path on %s and took %.1f s on one core. The plot is "
            "`/usr/bin/python3 bench/quality/plot_rd.py` reading the JSON this run wrote.\n\n",
            ri->command, ri->n, DIM, (unsigned long long)ri->seed, (unsigned long long)ri->seed,
            ri->isa, ri->cpu, ri->seconds);
    fprintf(f, "Baselines (written in `bench/quality/codec_quality.c`):\n\n"
               "- **absmax int-N**: scale = fp16(max|x| / (2^(N-1) - 1)), codes = rint(x / "
               "scale) clamped to +-(2^(N-1) - 1); 128 N + 16 bits.\n"
               "- **Hadamard int-N**: the same applied to H x, H the normalised "
               "Walsh-Hadamard matrix (1/sqrt(D) scaling), decoded through H again; 128 N + 16 "
               "bits.\n"
               "- **fp8 e4m3**: scale = fp16(max|x| / 448), x / scale rounded to nearest even "
               "on the e4m3 grid; 128 x 8 + 16 = 1040 bits.\n"
               "- **bf16**: the uncompressed cache, for scale.\n\n");

    for (size_t ds = 0; ds < N_DATASETS; ds++) {
        fprintf(f, "## %s\n\n%s\n\n", k_datasets[ds].title, k_datasets[ds].how);
        md_results(f, rep, ds);
        fprintf(f, "\nEqual-error bit budgets:\n\n");
        md_equal_error(f, rep, ds);
        fputc('\n', f);
    }

    fprintf(f, "## Check against the reference\n\n");
    fprintf(f, "docs/codec.md section 8 lists the reference package's figures (65 536 vectors "
               "measured on an H200, a different random draw). Our E8 is expected to be up to "
               "about 1.4 %% worse from the box rule (docs/codec.md section 3); D4 should match. "
               "The reference does not state its log-normal scale distribution; ours, "
               "exp(1.5 N(0, 1)), was chosen because it reproduces the reference's row (sigma 1.0 "
               "gives about +15 %%, "
               "2.0 about -16 %%), so that row is a calibration, not an independent check.\n\n"
               "| dataset | method | ours | reference | difference |\n|---|---|---:|---:|---:|\n");
    for (size_t k = 0; k < N_SPEC; k++) {
        const result *r =
            find_result(rep, dataset_index(k_spec[k].dataset), k_spec[k].family, k_spec[k].param);
        if (r)
            fprintf(f, "| %s | %s | %.3e | %.2e | %+.2f %% |\n", k_spec[k].dataset, r->label,
                    r->rel_mse, k_spec[k].ref, 100.0 * (r->rel_mse / k_spec[k].ref - 1.0));
    }
    if (o->have) {
        fprintf(f,
                "\nOn the **same inputs** as the reference (`shared/data/reference-oracle`: %zu "
                "vectors of 0.3 x N(0, 1), with the reference's own reconstructions), "
                "\"same\" counting vectors whose reconstructions agree to within 1e-5 of the "
                "vector's norm:\n\n"
                "| method | ours | reference | difference | same reconstruction |\n"
                "|---|---:|---:|---:|---:|\n",
                o->n);
        for (int k = 0; k < 4; k++) {
            const oracle_row *row = &o->rows[k];
            fprintf(f, "| %s Q=%u | %.4e | %.4e | %+.2f %% | %zu / %zu |\n",
                    lkv_variant_name(row->variant), row->q, row->our_mse, row->ref_mse,
                    100.0 * (row->our_mse / row->ref_mse - 1.0), row->same, row->total);
        }
    }
    fprintf(f,
            "\n## Head dims that are not a power of two\n\n"
            "A head_dim that is not a power of two is coded as its binary expansion, each piece "
            "rotated, scaled and coded on its own ([codec/FORMAT.md](../codec/FORMAT.md"
            "#head-dims-that-are-not-a-power-of-two)); the powers of two are listed beside them. "
            "%zu vectors per head_dim: N(0, 1) elements, and the keys data above generated at "
            "that head_dim (dataset seed: splitmix64(seed + 100 + head_dim)). Bytes per vector "
            "include each piece's 32-bit header and byte padding. The relative error grows slowly "
            "with the size of a rotated vector (its scale follows the largest rotated "
            "coordinate, which grows with D), so a split head_dim's error lies between those of "
            "its pieces' sizes; the price of a split is its extra header bits.\n\n",
            hd->vectors);
    md_head_dims(f, hd);
    if (fclose(f) != 0)
        die("error writing %s", path);
}

/* ------------------------------------------------------------------------ */
/* Main                                                                      */
/* ------------------------------------------------------------------------ */

static void cpu_name(char *buf, size_t cap)
{
    lkv_bench_cpu cpu;
    lkv_bench_cpu_probe(&cpu);
    snprintf(buf, cap, "%s", cpu.model);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: codec_quality [--vectors N] [--seed S] [--json FILE] [--markdown FILE]\n"
            "                     [--oracle DIR]\n"
            "  --vectors N     vectors per dataset (default %u)\n"
            "  --seed S        PRNG seed (default %llu)\n"
            "  --json FILE     write all results as JSON (for plot_rd.py)\n"
            "  --markdown FILE write the report (docs/quality.md)\n"
            "  --oracle DIR    also compare with the reference's reconstructions in DIR\n"
            "                  (shared/data/reference-oracle)\n",
            DEFAULT_VECTORS, (unsigned long long)DEFAULT_SEED);
}

static unsigned long long parse_u64(const char *flag, const char *s, unsigned long long max)
{
    char *end;
    errno = 0;
    const unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || s[0] == '-' || v > max)
        die("%s=%s is not an integer in 0..%llu", flag, s, max);
    return v;
}

int main(int argc, char **argv)
{
    static report rep;
    static oracle orc;
    run_info ri = {.seed = DEFAULT_SEED, .n = DEFAULT_VECTORS};
    const char *json_path = NULL, *md_path = NULL, *oracle_dir = NULL;

    size_t used = 0;
    for (int i = 0; i < argc && used + 1 < sizeof ri.command; i++)
        used += (size_t)snprintf(ri.command + used, sizeof ri.command - used, "%s%s", i ? " " : "",
                                 argv[i]);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            die("%s: missing value", a);
        }
        const char *v = argv[++i];
        if (strcmp(a, "--vectors") == 0)
            ri.n = (size_t)parse_u64(a, v, 1u << 22);
        else if (strcmp(a, "--seed") == 0)
            ri.seed = parse_u64(a, v, UINT64_MAX);
        else if (strcmp(a, "--json") == 0)
            json_path = v;
        else if (strcmp(a, "--markdown") == 0)
            md_path = v;
        else if (strcmp(a, "--oracle") == 0)
            oracle_dir = v;
        else {
            usage(stderr);
            die("unknown option %s", a);
        }
    }
    if (ri.n == 0)
        die("--vectors=0: need at least one vector");
    cpu_name(ri.cpu, sizeof ri.cpu);
    ri.isa = lkv_isa_name(lkv_isa_best());

    const size_t count = ri.n * DIM;
    float *x = malloc(count * sizeof *x);
    float *xhat = malloc(count * sizeof *xhat);
    size_t rec_bytes = 0;
    for (int qi = 0; qi < N_QS; qi++) {
        const lkv_params pe = {.variant = LKV_VARIANT_E8, .q = k_qs[qi], .dim = DIM};
        const lkv_params pd = {.variant = LKV_VARIANT_D4, .q = k_qs[qi], .dim = DIM};
        if (lkv_record_bytes(&pe) > rec_bytes)
            rec_bytes = lkv_record_bytes(&pe);
        if (lkv_record_bytes(&pd) > rec_bytes)
            rec_bytes = lkv_record_bytes(&pd);
    }
    uint8_t *rec = malloc(ri.n * rec_bytes);
    if (!x || !xhat || !rec)
        die("out of memory for %zu vectors", ri.n);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t ds = 0; ds < N_DATASETS; ds++) {
        lkv_bench_rng r;
        uint64_t st = ri.seed + ds;
        lkv_bench_rng_seed(&r, lkv_bench_splitmix64(&st));
        k_datasets[ds].gen(&r, x, ri.n);
        measure_dataset(&rep, ds, x, ri.n, xhat, rec);
        fprintf(stderr, "codec_quality: %s done\n", k_datasets[ds].name);
    }
    if (oracle_dir)
        run_oracle(&orc, oracle_dir);
    static hd_report hd;
    measure_head_dims(&hd, ri.seed);
    fprintf(stderr, "codec_quality: head dims done\n");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ri.seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);

    printf("codec_quality: D = %u, %zu vectors per dataset, seed %llu, isa %s, %s\n", DIM, ri.n,
           (unsigned long long)ri.seed, ri.isa, ri.cpu);
    print_table(&rep, ri.n);
    print_checks(&rep, &orc);
    printf("\nhead dims (%zu vectors each):\n", hd.vectors);
    md_head_dims(stdout, &hd);
    printf("\n%.1f s\n", ri.seconds);
    if (json_path)
        write_json(json_path, &rep, &orc, &ri, &hd);
    if (md_path)
        write_markdown(md_path, &rep, &orc, &ri, &hd);
    free(x);
    free(xhat);
    free(rec);
    return 0;
}
