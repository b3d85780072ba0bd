/* SPDX-License-Identifier: Apache-2.0 */
/*
 * p2_model.c - the static entropy models of codec profile 2.
 *
 * After the Q-scaled rotation every coordinate of every vector has RMS
 * sigma = Q/4 (docs/codec-v2.md), so one discretised Gaussian of that width
 * per table fits all data. The frequencies are integers summing to 2^15,
 * each at least 1 (every point of the box stays codable), built here by
 * integer arithmetic and fixed-order fp64 operations only.
 */
#include "lkv_p2.h"

#include <string.h>

/* exp(-e), e >= 0: e = n ln2 + r with |r| <= ln2/2, exp(-r) by a degree-14
 * Taylor polynomial in Horner form, then times 2^-n built from its bits. The
 * operations and their order are fixed, so the result is the same double on
 * every IEEE machine (the build forbids contraction into FMA). */
double lkv_p2_exp_neg(double e)
{
    if (!(e >= 0.0))
        e = 0.0;
    if (e > 60.0)
        return 0.0;
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const int n = (int)(e * 1.44269504088896338700 + 0.5);
    const double r = (e - (double)n * ln2_hi) - (double)n * ln2_lo;
    /* 1/k, k = 1..14, each the correctly rounded double the compiler folds. */
    static const double inv[15] = {0.0,      1.0,      1.0 / 2,  1.0 / 3,  1.0 / 4,
                                   1.0 / 5,  1.0 / 6,  1.0 / 7,  1.0 / 8,  1.0 / 9,
                                   1.0 / 10, 1.0 / 11, 1.0 / 12, 1.0 / 13, 1.0 / 14};
    double s = 1.0;
    for (int k = 14; k >= 1; k--)
        s = 1.0 - (r * inv[k]) * s;
    uint64_t bits = (uint64_t)(1023 - n) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return s * scale;
}

static int32_t floor_div(int32_t a, int32_t m)
{
    const int32_t q = a / m;
    return (a % m != 0 && a < 0) ? q - 1 : q;
}

/* Integer ceil(sqrt(v)). */
static uint64_t ceil_sqrt(uint64_t v)
{
    uint64_t s = 0;
    for (uint64_t bit = 1ull << 31; bit; bit >>= 1)
        if ((s + bit) * (s + bit) <= v)
            s += bit;
    return s * s < v ? s + 1 : s;
}

/* Frequencies from weights: one each, the rest in proportion (floored),
 * the remainder to the largest (the first of equals; the middle bin when
 * every weight is 0). */
static void normalise(const double *w, uint32_t nbins, uint32_t *cum)
{
    double total = 0.0;
    for (uint32_t h = 0; h < nbins; h++)
        total = total + w[h];
    const uint32_t avail = LKV_P2_PROB_ONE - nbins;
    uint32_t f[LKV_P2_NBINS_MAX], sum = 0, best = 0;
    for (uint32_t h = 0; h < nbins; h++) {
        const double share = total > 0.0 ? (w[h] * (double)avail) / total : 0.0;
        uint32_t extra = (uint32_t)share;
        if (extra > avail)
            extra = avail;
        f[h] = 1u + extra;
        sum += f[h];
        if (f[h] > f[best])
            best = h;
    }
    if (total == 0.0)
        best = nbins / 2;        /* a channel level far below the grid: the middle */
    if (sum > LKV_P2_PROB_ONE) { /* cannot happen: floors never exceed avail in sum */
        for (uint32_t h = 0; h < nbins; h++)
            f[h] = 1;
        sum = nbins;
        best = 0;
    }
    f[best] += LKV_P2_PROB_ONE - sum;
    cum[0] = 0;
    for (uint32_t h = 0; h < nbins; h++)
        cum[h + 1] = cum[h] + f[h];
}

/* Points p2 = m*j + r inside [lo2, hi2]: the first j and the count. */
static void table_range(int32_t m, int32_t r, int32_t lo2, int32_t hi2, int32_t *jlo, uint32_t *n)
{
    *jlo = -floor_div(-(lo2 - r), m); /* ceil((lo2 - r) / m) */
    *n = (uint32_t)(floor_div(hi2 - r, m) - *jlo + 1);
}

/* Raw low bits a table of n points needs to fit LKV_P2_NBINS_MAX bins. */
static uint32_t bits_for(uint32_t n)
{
    uint32_t b = 0;
    while (((n - 1) >> b) + 1 > LKV_P2_NBINS_MAX)
        b++;
    return b;
}

/* Table of the points p2 = m*j + r inside [lo2, hi2], b raw low bits. */
static int build_table(lkv_p2_table *t, double two_q2, int32_t m, int32_t r, int32_t lo2,
                       int32_t hi2, uint32_t b)
{
    table_range(m, r, lo2, hi2, &t->jlo, &t->n);
    t->b = b;
    t->nbins = ((t->n - 1) >> t->b) + 1;
    if (t->nbins > LKV_P2_NBINS_MAX || t->b > 12)
        return 0;
    double w[LKV_P2_NBINS_MAX];
    for (uint32_t h = 0; h < t->nbins; h++) {
        const uint32_t u0 = h << t->b;
        uint32_t u1 = ((h + 1) << t->b) - 1;
        if (u1 > t->n - 1)
            u1 = t->n - 1;
        /* P = 4p at the bin's centre, p = p2 / 2; the Gaussian of sigma = Q/4
         * is exp(-p^2 / (2 sigma^2)) = exp(-P^2 / (2 Q^2)), and two_q2 =
         * 2 (4 sigma)^2 = 2 Q^2 (a channel level's: 2 Q^2 D 2^-level). */
        const int64_t pc = (int64_t)m * (2 * (int64_t)t->jlo + u0 + u1) + 2 * (int64_t)r;
        const double pd = (double)pc;
        w[h] = (double)(u1 - u0 + 1) * lkv_p2_exp_neg((pd * pd) / two_q2);
    }
    normalise(w, t->nbins, t->cum);
    for (uint32_t h = 0; h < t->nbins; h++)
        t->rcp[h] = lkv_p2_rcp(t->cum[h + 1] - t->cum[h]);
    uint32_t s = 0;
    for (uint32_t i = 0; i < LKV_P2_LUT_SIZE; i++) {
        const uint32_t slot = i << LKV_P2_LUT_SHIFT;
        while (t->cum[s + 1] <= slot)
            s++;
        t->lut[i] = (uint16_t)s;
    }
    return 1;
}

/* Probability of the half-integer coset: theta_half^8 / (theta_int^8 +
 * theta_half^8) of the one-dimensional Gaussian sums; 1/2 from Q = 8 on,
 * where the two sums agree to far below one part in 2^15. */
/* The one-dimensional Gaussian sums over the box's integer (th[0]) and
 * half-integer (th[1]) points, in increasing order. */
static void thetas(double two_q2, uint32_t box, double *th)
{
    th[0] = th[1] = 0.0;
    for (int32_t p2 = -2 * (int32_t)box; p2 <= 2 * (int32_t)box; p2++) {
        const double pd = 2.0 * (double)p2; /* P = 4p = 2 p2 */
        th[p2 & 1] = th[p2 & 1] + lkv_p2_exp_neg((pd * pd) / two_q2);
    }
}

static uint32_t coset_freq(uint32_t q, uint32_t box)
{
    if (q >= 8)
        return LKV_P2_PROB_ONE / 2;
    double th[2];
    thetas(2.0 * (double)q * (double)q, box, th);
    double a = th[0], b = th[1];
    for (int i = 0; i < 3; i++) { /* eighth powers */
        a = a * a;
        b = b * b;
    }
    const double f = (b / (a + b)) * (double)LKV_P2_PROB_ONE + 0.5;
    uint32_t fi = f >= 1.0 ? (uint32_t)f : 1u;
    if (fi > LKV_P2_PROB_ONE - 1)
        fi = LKV_P2_PROB_ONE - 1;
    return fi;
}

/* The box L and the raw bits of the two kinds of table (coordinates 0..6;
 * coordinate 7). The lanes of a chunk step through their symbols together,
 * so a block's symbol count must not depend on its coset or parity: every
 * table of a kind gets the largest b any of them needs. */
static void model_shape(uint32_t q, uint32_t dim, uint32_t *box, uint32_t *b6, uint32_t *b7)
{
    /* |z_i| <= |z| = Q sqrt(D) / 4, and the closest point is within 1 of z
     * per coordinate: L = ceil(Q sqrt(D) / 4) + 1 never clips. */
    const uint64_t s = ceil_sqrt((uint64_t)q * q * dim);
    *box = (uint32_t)((s + 3) / 4) + 1;
    const int32_t l2 = 2 * (int32_t)*box;
    int32_t jlo;
    uint32_t n6, n7a, n7b;
    table_range(2, 0, -l2, l2, &jlo, &n6);
    table_range(4, 0, -l2, l2, &jlo, &n7a);
    table_range(4, 2, -l2, l2, &jlo, &n7b);
    *b6 = bits_for(n6);
    *b7 = bits_for(n7a > n7b ? n7a : n7b);
}

uint32_t lkv_p2_syms_per_vec(uint32_t q, uint32_t dim)
{
    uint32_t box, b6, b7;
    model_shape(q, dim, &box, &b6, &b7);
    return dim / 8u * (1u + 7u * (1u + (b6 > 0)) + 1u + (b7 > 0));
}

/* The model of (q, dim) whose Gaussians have 2 (4 sigma)^2 = two_q2. */
static int model_build(uint32_t q, uint32_t dim, double two_q2, lkv_p2_model *m)
{
    memset(m, 0, sizeof *m);
    m->q = q;
    m->dim = dim;
    while ((1u << m->log2d) < dim)
        m->log2d++;
    m->nblocks = dim / 8u;
    uint32_t b6, b7;
    model_shape(q, dim, &m->box, &b6, &b7);
    m->coset_f1 = coset_freq(q, m->box);
    m->coset_rcp[0] = lkv_p2_rcp(LKV_P2_PROB_ONE - m->coset_f1);
    m->coset_rcp[1] = lkv_p2_rcp(m->coset_f1);
    m->qf = (float)q;
    m->box_f = (float)m->box;
    m->out_scale = 4.0f / (float)dim; /* a power of two: exact */
    const int32_t l2 = 2 * (int32_t)m->box;
    for (int32_t c = 0; c < 2; c++) {
        const int32_t lo2 = -l2 + c, hi2 = l2 - c;
        if (!build_table(&m->t[c][0], two_q2, 2, c, lo2, hi2, b6) ||
            !build_table(&m->t[c][1], two_q2, 4, c, lo2, hi2, b7) ||
            !build_table(&m->t[c][2], two_q2, 4, c + 2, lo2, hi2, b7))
            return 0;
    }
    m->sym_block = 1u + 7u * (1u + (b6 > 0)) + 1u + (b7 > 0);
    m->sym_vec = m->nblocks * m->sym_block;
    m->level = LKV_P2_LEVEL_ROTATED;
    const lkv_p2_table *t = &m->t[0][0];
    for (uint32_t h = 0; h < t->nbins; h++)
        m->est[h] = (uint16_t)lkv_p2_est_cost(t->cum[h + 1] - t->cum[h], t->b);
    return 1;
}

int lkv_p2_model_build(uint32_t q, uint32_t dim, lkv_p2_model *m)
{
    return model_build(q, dim, 2.0 * (double)q * (double)q, m);
}

int lkv_p2_model_build_level(uint32_t q, uint32_t dim, uint32_t level, lkv_p2_model *m)
{
    if (level >= LKV_P2_LEVELS || dim == 0 || (dim & (dim - 1u)) != 0)
        return 0;
    /* 2 Q^2 D 2^-level: an exact integer times a power of two. */
    uint64_t bits = (uint64_t)(1023u - level) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    const double two_q2 = (2.0 * (double)q * (double)q * (double)dim) * scale;
    if (!model_build(q, dim, two_q2, m))
        return 0;
    m->level = level;
    thetas(two_q2, m->box, m->theta);
    return 1;
}

void lkv_p2_etab_build(const lkv_p2_model *m, lkv_p2_etab *et)
{
    for (uint32_t c = 0; c < 2; c++)
        for (uint32_t k = 0; k < 3; k++) {
            const lkv_p2_table *t = &m->t[c][k];
            for (uint32_t s = 0; s < t->nbins; s++)
                et->e[c * 3 + k][s] = t->cum[s] | (uint64_t)(t->cum[s + 1] - t->cum[s]) << 16 |
                                      (uint64_t)t->rcp[s] << 32;
        }
}

void lkv_p2_vtab_build(const lkv_p2_model *m, lkv_p2_vtab *vt)
{
    memset(vt, 0, sizeof *vt);
    for (uint32_t c = 0; c < 2; c++)
        for (uint32_t k = 0; k < 3; k++) {
            const lkv_p2_table *t = &m->t[c][k];
            const uint32_t ti = c * 3 + k;
            for (uint32_t s = 0; s < t->nbins; s++)
                vt->cc[ti][s] = t->cum[s] | t->cum[s + 1] << 16;
            for (uint32_t i = 0; i < LKV_P2_LUT_SIZE; i++) {
                const uint32_t h = t->lut[i];
                const uint64_t c2 = h + 1u < t->nbins ? t->cum[h + 2u] : 0xffffu;
                vt->lx[ti][i] =
                    h | (uint64_t)t->cum[h] << 16 | (uint64_t)t->cum[h + 1u] << 32 | c2 << 48;
            }
        }
    /* Rows for the windows that a walk would cross more than one bin in,
     * the tables of coordinates 0..6 (7 of every 8 bin symbols) first. */
    static const uint8_t order[6] = {0, 3, 1, 2, 4, 5};
    const uint32_t win = 1u << LKV_P2_LUT_SHIFT;
    uint32_t rows = 0;
    for (uint32_t o = 0; o < 6 && rows < LKV_P2_FINE_ROWS; o++) {
        const uint32_t ti = order[o];
        const lkv_p2_table *t = &m->t[ti / 3][ti % 3];
        for (uint32_t i = 0; i < LKV_P2_LUT_SIZE && rows < LKV_P2_FINE_ROWS; i++) {
            uint32_t s = t->lut[i];
            if (s + 2u > t->nbins || t->cum[s + 2u] >= (i + 1u) * win)
                continue;
            for (uint32_t j = 0; j < win; j++) {
                while (t->cum[s + 1u] <= i * win + j)
                    s++;
                vt->fx[rows][j] = s | (uint64_t)t->cum[s] << 16 | (uint64_t)t->cum[s + 1u] << 32;
            }
            rows++;
            vt->lx[ti][i] |= (uint64_t)rows << 9;
        }
    }
}
