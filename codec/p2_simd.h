/* SPDX-License-Identifier: Apache-2.0 */
/*
 * p2_simd.h - profile 2's encoder front end, written once against the
 * vector primitives of simd_kernel.h and compiled by both SIMD paths
 * (simd_avx2.c: 8 lanes, simd_avx512.c: 16), after simd_kernel.h. Besides
 * those primitives it needs vi_store16 and vi_store8 (the LKV_L lanes of a
 * vi as int16 or as bytes).
 *
 * p2_simd_quantise: LKV_L vectors of one piece, profile 1's lane-wise pieces
 * in p2.c quantise's order: the pairwise norm and r = max(norm, 2^-23)
 * (sk_load_rn), its code and divisor d (container version 3: the norm code
 * k, d = r^(k); version 2: r16 and d = r), u = x / d, the butterfly, times Q
 * (sk_fwht's last step), times 1/4, then the E8 box search of ref.c (sk_e8)
 * per block. Version 4's channel domain (ch != 0): u = x / d times ch, no
 * butterfly and no 1/4, as p2.c quantise.
 * rows[l] for l >= cnt repeat row 0. With kt: the points symbol-major
 * (kt[j * 32 + l], ct[blk * 32 + l]) for the vectorised rANS of a full
 * slot; else k[l] and c[l] receive lane l's points and cosets. code[l]
 * receives its norm code, for l < cnt. Returns the lanes < cnt that cannot be
 * coded (NaN/Inf, norm overflow); then nothing is valid and the caller
 * reports the first failing vector as the scalar path does.
 *
 * p2_simd_estimate, p2_simd_est_squares, p2_simd_est_chan: version 4's mode
 * estimate (p2.c est_channel) on the same front end; see lkv_p2.h.
 * Everything after the fp32 front end is integer, so lanes and sums may be
 * taken in any order.
 * p2_simd_pt_squares: the channel levels' sums of squared points of the
 * full slots (p2.c encode_channel).
 * Besides the primitives above they need vi_load16 (LKV_L int16, sign
 * extended), vi_load8u (LKV_L bytes, zero extended), vi_srl (a shift by a
 * count in a variable), vi_clamp (signed) and vi_lut (vi_lut_init,
 * vi_lut_get: lookups into a table of uint16).
 */
#ifndef LKV_P2_SIMD_H
#define LKV_P2_SIMD_H

#include <stddef.h>

/* The front end both kernels share: loads LKV_L vectors into sc->buf and
 * returns the divisor d of each lane (container version 3: r^(k) of the
 * norm code k, version 2: r), the codes of lanes < cnt to code[l]. *bad:
 * the lanes < cnt that cannot be coded. */
SK_INLINE vf p2_simd_front(const lkv_p2_model *m, uint32_t fmt, lkv_dtype dt,
                           const uint8_t *const *rows, unsigned cnt, uint16_t *code, sk_scratch *sc,
                           unsigned *bad_out)
{
    const unsigned live = cnt >= LKV_L ? (1u << LKV_L) - 1u : (1u << cnt) - 1u;
    sk_consts kc;
    memset(&kc, 0, sizeof kc);
    kc.dim = m->dim;
    unsigned bad = 0;
    vf d;
    if (fmt == LKV_FMT_VERSION_P2) {
        vi h;
        d = sk_load_r(&kc, dt, rows, sc, &h, &bad);
        int16_t hv[LKV_L];
        vi_store16(hv, h);
        for (unsigned l = 0; l < cnt; l++)
            code[l] = (uint16_t)hv[l];
    } else {
        /* a byte per vector: the code in scalar steps on the fp32 bits */
        const vf r = sk_load_rn(&kc, dt, rows, sc, &bad);
        uint32_t rb[LKV_L];
        memcpy(rb, &r, sizeof rb);
        for (unsigned l = 0; l < LKV_L; l++) {
            const uint32_t kn = lkv_p2_norm_code(rb[l]);
            if (kn > 0xffu)
                bad |= 1u << l;
            if (l < cnt)
                code[l] = (uint16_t)kn;
            rb[l] = lkv_p2_norm_bits(kn & 0xffu);
        }
        memcpy(&d, rb, sizeof d);
    }
    *bad_out = bad & live;
    return d;
}

/* Block blk's points g and coset lanes half, symbol-major (quantise's kt,
 * ct). */
SK_INLINE void p2_simd_put_pts(int16_t *kt, uint8_t *ct, uint32_t blk, const vf *g, vm half)
{
    for (int i = 0; i < 8; i++)
        vi_store16(kt + (8 * blk + (uint32_t)i) * LKV_P2_LANES, vi_from_f(g[i]));
    vi_store8(ct + blk * LKV_P2_LANES, vi_blend(half, vi_set1(1), vi_set1(0)));
}

/* The channel domain's E8 search: sk_e8's points, by profile 1's keyed
 * search (sk_e8_fast, which hands the blocks it cannot decide to sk_e8)
 * where the box is at most 1023, the bound of its exactness argument
 * (lkv_e8_margin, cuda/lkv_cuda_block.cuh; the GPU encoder makes the same
 * choice for both domains, cuda/lkv_cuda_p2.cu put_closest). About half
 * the estimate kernel's time was sk_e8. The rotated domain keeps sk_e8
 * here, so that version 3's encoder is the code it was. */
SK_INLINE void p2_simd_e8_chan(const lkv_p2_model *m, const vf *z, vf box, vf *g, vm *half)
{
    if (m->box <= 1023u)
        sk_e8_fast(z, box, vf_set1(1.220703125e-4f + (m->box_f + 2.0f) * 4.76837158203125e-7f), g,
                   half);
    else
        sk_e8(z, box, g, half);
}

static unsigned p2_simd_quantise(const lkv_p2_model *m, uint32_t fmt, float ch, lkv_dtype dt,
                                 const uint8_t *const *rows, unsigned cnt, uint16_t *code,
                                 int16_t (*k)[LKV_DIM_MAX], uint8_t (*c)[LKV_DIM_MAX / 8],
                                 int16_t *kt, uint8_t *ct)
{
    sk_scratch sc;
    unsigned bad;
    const vf d = p2_simd_front(m, fmt, dt, rows, cnt, code, &sc, &bad);
    if (bad)
        return bad;
    const int chan = ch != 0.0f;
    if (chan) {
        const vf cv = vf_set1(ch);
        for (uint32_t j = 0; j < m->dim; j++)
            sc.buf[j] = vf_mul(vf_div(sc.buf[j], d), cv);
    } else {
        vf unused = vf_set1(0.0f);
        sk_fwht(sc.buf, m->dim, 0, d, vf_set1(m->qf), d, &unused);
    }
    const vf quarter = vf_set1(0.25f), box = vf_set1(m->box_f);
    for (uint32_t blk = 0; blk < m->nblocks; blk++) {
        vf z[8], g[8];
        vm half;
        for (int i = 0; i < 8; i++)
            z[i] = chan ? sc.buf[8 * blk + (uint32_t)i]
                        : vf_mul(sc.buf[8 * blk + (uint32_t)i], quarter);
        if (chan)
            p2_simd_e8_chan(m, z, box, g, &half);
        else
            sk_e8(z, box, g, &half);
        if (kt) {
            p2_simd_put_pts(kt, ct, blk, g, half);
            continue;
        }
        int16_t t[8][LKV_L];
        for (int i = 0; i < 8; i++)
            vi_store16(t[i], vi_from_f(g[i]));
        const unsigned hb = vm_bits(half);
        for (unsigned l = 0; l < cnt; l++) {
            for (int i = 0; i < 8; i++)
                k[l][8 * blk + (uint32_t)i] = t[i][l];
            c[l][blk] = (uint8_t)((hb >> l) & 1u);
        }
    }
    return 0;
}

/* The lanes < n (n < LKV_L) all ones, the others zero. */
static inline vi p2_simd_live(unsigned n)
{
    int32_t a[LKV_L];
    for (unsigned l = 0; l < LKV_L; l++)
        a[l] = l < n ? -1 : 0;
    vi v;
    memcpy(&v, a, sizeof v);
    return v;
}

/* The sum of v's lanes < n (at most LKV_L). */
static inline uint64_t p2_simd_lane_sum(vi v, unsigned n)
{
    uint32_t a[LKV_L];
    memcpy(a, &v, sizeof a);
    uint64_t t = 0;
    for (unsigned l = 0; l < n && l < LKV_L; l++)
        t += a[l];
    return t;
}

/* The lookup of m's estimates (m->est); t[0][0]'s values cluster around
 * the integer 0. */
static inline void p2_simd_est_lut(const lkv_p2_model *m, vi_lut *t)
{
    _Static_assert(offsetof(lkv_p2_model, est) >= 2, "est is read from 2 bytes before it");
    const uint8_t *p = (const uint8_t *)m + offsetof(lkv_p2_model, est) - 2;
    vi_lut_init(t, m->est, p, (uint32_t)-m->t[0][0].jlo >> m->t[0][0].b);
}

/* p2.c est_of for each lane's integer n: the estimate of t[0][0]'s bin of
 * n - jlo clamped to the table (top = its n - 1, b its raw bits). */
SK_INLINE vi p2_simd_est(const vi_lut *t, vi n, vi jlo, vi top, uint32_t b)
{
    const vi u = vi_clamp(vi_sub(n, jlo), vi_set1(0), top);
    return vi_lut_get(t, vi_srl(u, b));
}

/* lkv_p2_kernels.estimate: est_channel's first pass for cnt <= LKV_L
 * vectors; the same fp32 operations as p2.c est_channel (and as quantise's
 * front ends), lane-wise. The values of both domains before rounding are
 * quantise's (rotated: u = x / d, the butterfly, times Q, times 1/4;
 * channel: u times ch), so with kt the E8 search of either gives quantise's
 * points. */
static unsigned p2_simd_estimate(const lkv_p2_model *m, uint32_t fmt, float ch, lkv_dtype dt,
                                 const uint8_t *const *rows, unsigned cnt, uint16_t *code,
                                 int16_t *cn, size_t stride, uint64_t *crot, int16_t *kt,
                                 uint8_t *ct, int kchan)
{
    sk_scratch sc;
    unsigned bad;
    const vf d = p2_simd_front(m, fmt, dt, rows, cnt, code, &sc, &bad);
    if (bad)
        return bad;
    const vf cv = vf_set1(ch), box = vf_set1(m->box_f);
    if (kt && kchan) {
        /* the channel points, block by block, before the butterfly below
         * overwrites y */
        for (uint32_t blk = 0; blk < m->nblocks; blk++) {
            vf z[8], g[8];
            vm half;
            for (uint32_t i = 0; i < 8; i++) {
                const uint32_t j = 8 * blk + i;
                sc.buf[j] = vf_div(sc.buf[j], d);
                z[i] = vf_mul(sc.buf[j], cv);
                vi_store16(cn + j * stride, vi_from_f(z[i]));
            }
            p2_simd_e8_chan(m, z, box, g, &half);
            p2_simd_put_pts(kt, ct, blk, g, half);
        }
    } else
        for (uint32_t j = 0; j < m->dim; j++) {
            sc.buf[j] = vf_div(sc.buf[j], d); /* y = x / r^ */
            vi_store16(cn + j * stride, vi_from_f(vf_mul(sc.buf[j], cv)));
        }
    /* the butterfly, then times Q, then times 1/4: sk_fwht's decode order
     * with scale Q and post 1/4, no division */
    vf unused = vf_set1(0.0f);
    sk_fwht(sc.buf, m->dim, 1, unused, vf_set1(m->qf), vf_set1(0.25f), &unused);
    const lkv_p2_table *t = &m->t[0][0];
    vi_lut lut;
    p2_simd_est_lut(m, &lut);
    const vi jlo = vi_set1(t->jlo), top = vi_set1((int32_t)t->n - 1);
    vi acc = vi_set1(0);
    for (uint32_t j = 0; j < m->dim; j++)
        acc = vi_add(acc, p2_simd_est(&lut, vi_from_f(sc.buf[j]), jlo, top, t->b));
    *crot += p2_simd_lane_sum(acc, cnt);
    if (kt && !kchan)
        for (uint32_t blk = 0; blk < m->nblocks; blk++) {
            vf g[8];
            vm half;
            sk_e8(sc.buf + 8 * blk, box, g, &half);
            p2_simd_put_pts(kt, ct, blk, g, half);
        }
    return 0;
}

/* lkv_p2_kernels.est_squares: sq[i] += 4 n^2 over the cnt values of row i
 * of cn. |n| <= 2^13 (|x / r^| <= 1, ch <= 2^13), so 16 squares fit a
 * lane's 32 bits before they move to 64. */
static void p2_simd_est_squares(uint32_t dim, const int16_t *cn, size_t stride, size_t cnt,
                                uint64_t *sq)
{
    const vi tail = p2_simd_live((unsigned)(cnt % LKV_L));
    for (uint32_t i = 0; i < dim; i++) {
        const int16_t *row = cn + i * stride;
        uint64_t t = 0;
        vi acc = vi_set1(0);
        unsigned run = 0;
        for (size_t v = 0; v < cnt; v += LKV_L) {
            vi n = vi_load16(row + v);
            if (cnt - v < LKV_L)
                n = vi_and(n, tail);
            acc = vi_add(acc, vi_mul(n, n));
            if (++run == 16) {
                t += p2_simd_lane_sum(acc, LKV_L);
                acc = vi_set1(0);
                run = 0;
            }
        }
        sq[i] += 4 * (t + p2_simd_lane_sum(acc, LKV_L));
    }
}

/* lkv_p2_kernels.est_chan: the sum over the cnt values n of each row i of
 * cn of est_of(mc[i], n). Every level model has t[0][0]'s jlo, n and b of
 * mc[0]. One sum of the lanes at the end, not one per row: the lanes stay
 * below 2^32, at most 1024 rows of 256 / LKV_L estimates below 2^9. */
static uint64_t p2_simd_est_chan(const lkv_p2_model *const *mc, uint32_t dim, const int16_t *cn,
                                 size_t stride, size_t cnt)
{
    const lkv_p2_table *t = &mc[0]->t[0][0];
    const vi jlo = vi_set1(t->jlo), top = vi_set1((int32_t)t->n - 1);
    const vi tail = p2_simd_live((unsigned)(cnt % LKV_L));
    const uint32_t b = t->b;
    vi acc = vi_set1(0);
    for (uint32_t i = 0; i < dim; i++) {
        const int16_t *row = cn + i * stride;
        vi_lut lut;
        p2_simd_est_lut(mc[i], &lut);
        for (size_t v = 0; v < cnt; v += LKV_L) {
            vi e = p2_simd_est(&lut, vi_load16(row + v), jlo, top, b);
            if (cnt - v < LKV_L)
                e = vi_and(e, tail);
            acc = vi_add(acc, e);
        }
    }
    return p2_simd_lane_sum(acc, LKV_L);
}

/* lkv_p2_kernels.pt_squares: sq[i] += the sum over nslots full slots (slot
 * k's symbol-major points at kt + k * ks, ct + k * cs, quantise's) of the
 * 32 vectors' p2^2, p2 = 2 k + c the doubled point of coordinate i. Each
 * coordinate's lanes add up across the slots before one sum of the lanes
 * (that sum, per coordinate and slot, was most of the time): |p2| <= 2 L
 * < 2^14 (L <= 8185 at Q = 1023, D = 1024), so a lane holds 16 squares,
 * LKV_L / 2 slots of 32 / LKV_L each. */
static void p2_simd_pt_squares(uint32_t dim, size_t nslots, const int16_t *kt, size_t ks,
                               const uint8_t *ct, size_t cs, uint64_t *sq)
{
    for (uint32_t i = 0; i < dim; i++) {
        uint64_t t = 0;
        vi acc = vi_set1(0);
        unsigned run = 0;
        for (size_t k = 0; k < nslots; k++) {
            const int16_t *kr = kt + k * ks + i * LKV_P2_LANES;
            const uint8_t *cr = ct + k * cs + i / 8 * LKV_P2_LANES;
            for (unsigned l = 0; l < LKV_P2_LANES; l += LKV_L) {
                const vi kv = vi_load16(kr + l);
                const vi p2 = vi_add(vi_add(kv, kv), vi_load8u(cr + l));
                acc = vi_add(acc, vi_mul(p2, p2));
            }
            if (++run == LKV_L / 2) {
                t += p2_simd_lane_sum(acc, LKV_L);
                acc = vi_set1(0);
                run = 0;
            }
        }
        sq[i] += t + p2_simd_lane_sum(acc, LKV_L);
    }
}

#endif /* LKV_P2_SIMD_H */
