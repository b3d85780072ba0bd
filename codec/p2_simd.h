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
 */
#ifndef LKV_P2_SIMD_H
#define LKV_P2_SIMD_H

static unsigned p2_simd_quantise(const lkv_p2_model *m, uint32_t fmt, float ch, lkv_dtype dt,
                                 const uint8_t *const *rows, unsigned cnt, uint16_t *code,
                                 int16_t (*k)[LKV_DIM_MAX], uint8_t (*c)[LKV_DIM_MAX / 8],
                                 int16_t *kt, uint8_t *ct)
{
    sk_scratch sc;
    const unsigned live = cnt >= LKV_L ? (1u << LKV_L) - 1u : (1u << cnt) - 1u;
    sk_consts kc;
    memset(&kc, 0, sizeof kc);
    kc.dim = m->dim;
    unsigned bad = 0;
    vf d;
    if (fmt == LKV_FMT_VERSION_P2) {
        vi h;
        d = sk_load_r(&kc, dt, rows, &sc, &h, &bad);
        int16_t hv[LKV_L];
        vi_store16(hv, h);
        for (unsigned l = 0; l < cnt; l++)
            code[l] = (uint16_t)hv[l];
    } else {
        /* a byte per vector: the code in scalar steps on the fp32 bits */
        const vf r = sk_load_rn(&kc, dt, rows, &sc, &bad);
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
    if (bad & live)
        return bad & live;
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
        sk_e8(z, box, g, &half);
        if (kt) {
            for (int i = 0; i < 8; i++)
                vi_store16(kt + (8 * blk + (uint32_t)i) * LKV_P2_LANES, vi_from_f(g[i]));
            vi_store8(ct + blk * LKV_P2_LANES, vi_blend(half, vi_set1(1), vi_set1(0)));
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

#endif /* LKV_P2_SIMD_H */
