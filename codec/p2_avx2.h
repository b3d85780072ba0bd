/* SPDX-License-Identifier: Apache-2.0 */
/*
 * p2_avx2.h - profile 2's full-slot kernels on the AVX2 path: the decoder
 * of one slot (32 vectors), the encoder's front end for 8 vectors, and one
 * block of a slot through the encoder's rANS. Included only by simd_avx2.c, after its primitives
 * and simd_kernel.h (butterfly sk_fwht, closest point sk_e8, sk_load_norm and the transposing store
 * sk_store_chunk).
 *
 * Design note: the AVX-512 kernels (p2_avx512.h) step for step, on four ymm
 * registers of 8 lanes per slot instead of two zmm registers of 16; the
 * bytes, the stream positions and the failures are the scalar coder's for
 * the same reasons given there. What AVX2 lacks is built as follows:
 *   - masks are vectors of all-ones lanes, read as bits by movemask;
 *   - expand (a refill's k-th word to the k-th lane that needs one) and
 *     compress (an encoder's shed words to memory in lane order) are a
 *     permutevar8x32 by a per-mask index table (p2a_tab: 256 masks, 3-bit
 *     indices packed in nibbles, constant);
 *   - a refill reads 16 bytes when that many are left in the stream, else
 *     copies the few words it needs first: it never reads past the end;
 *   - the encoder writes its words right-aligned in a 16-byte store ending
 *     at the stream's old end, when the 16 bytes below lie above the limit
 *     (the bytes below the new end are not yet part of the stream and are
 *     overwritten by the next words), else through a copy;
 *   - unsigned compares are signed ones: every compared value is below
 *     2^31 (slots, cumulative frequencies, offsets), and a state is tested
 *     against 2^16 by its high half.
 */
#ifndef LKV_P2_AVX2_H
#define LKV_P2_AVX2_H

#include <stddef.h>
#include <string.h>

#define P2A_REGS (LKV_P2_LANES / 8u)

/* [0][m]: expand, nibble l = the rank of lane l among the set lanes of m;
 * [1][m]: compress to the top, nibble 8 - popcount(m) + k = the lane of
 * m's k-th set bit (lower nibbles 0). Constant expressions, not a table
 * built at load time: code in this file is compiled for AVX2, and a CPU
 * without it must be able to load the library. */
#define P2A_PC(m, l) ((uint64_t)__builtin_popcount((m) & ((1u << (l)) - 1u)))
#define P2A_EX(m, l) (P2A_PC(m, l) << (4 * (l)))
#define P2A_CO(m, l) \
    (((m) >> (l)&1u) ? (uint64_t)(l) << (4 * (8 - P2A_PC(m, 8) + P2A_PC(m, l))) : 0u)
#define P2A_ROW(F, m) \
    (uint32_t)(F(m, 0) | F(m, 1) | F(m, 2) | F(m, 3) | F(m, 4) | F(m, 5) | F(m, 6) | F(m, 7))
#define P2A_R4(F, m)  P2A_ROW(F, m), P2A_ROW(F, (m) + 1), P2A_ROW(F, (m) + 2), P2A_ROW(F, (m) + 3)
#define P2A_R16(F, m) P2A_R4(F, m), P2A_R4(F, (m) + 4), P2A_R4(F, (m) + 8), P2A_R4(F, (m) + 12)
#define P2A_R64(F, m) \
    P2A_R16(F, m), P2A_R16(F, (m) + 16), P2A_R16(F, (m) + 32), P2A_R16(F, (m) + 48)
#define P2A_R256(F) P2A_R64(F, 0u), P2A_R64(F, 64u), P2A_R64(F, 128u), P2A_R64(F, 192u)
static const uint32_t p2a_tab[2][256] = {{P2A_R256(P2A_EX)}, {P2A_R256(P2A_CO)}};

static inline vi p2a_perm(unsigned which, unsigned m)
{
    const vi sh = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)p2a_tab[which][m]), sh),
                            _mm256_set1_epi32(15));
}

static inline unsigned p2a_bits(vi m)
{
    return (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(m));
}

/* a <= b lane-wise for values below 2^31 (a mask vector). */
static inline vi p2a_le(vi a, vi b)
{
    return _mm256_xor_si256(_mm256_cmpgt_epi32(a, b), _mm256_set1_epi32(-1));
}

static inline vi p2a_blend(vi m, vi t, vi f)
{
    return _mm256_blendv_epi8(f, t, m);
}

/* Refills the lanes of x below 2^16 from the word stream, in lane order;
 * 0 when the stream ends first. */
static inline int p2a_refill(vi *x, const uint8_t *body, size_t len, size_t *pos)
{
    const vi need = _mm256_cmpeq_epi32(_mm256_srli_epi32(*x, 16), _mm256_setzero_si256());
    const unsigned m = p2a_bits(need), cnt = (unsigned)__builtin_popcount(m);
    const size_t left = len - *pos;
    if (left < 2u * cnt)
        return 0;
    __m128i w;
    if (left >= 16)
        w = _mm_loadu_si128((const __m128i *)(body + *pos));
    else {
        uint8_t tmp[16] = {0};
        memcpy(tmp, body + *pos, 2u * cnt);
        w = _mm_loadu_si128((const __m128i *)tmp);
    }
    const vi wv = _mm256_permutevar8x32_epi32(_mm256_cvtepu16_epi32(w), p2a_perm(0, m));
    *x = p2a_blend(need, _mm256_or_si256(_mm256_slli_epi32(*x, 16), wv), *x);
    *pos += 2u * cnt;
    return 1;
}

/* The coset symbol of every lane of x: returns the coset mask. */
static inline vi p2a_coset(vi *x, uint32_t f1)
{
    const uint32_t f0 = LKV_P2_PROB_ONE - f1;
    const vi slot = _mm256_and_si256(*x, _mm256_set1_epi32((int)(LKV_P2_PROB_ONE - 1u)));
    const vi hi = _mm256_srli_epi32(*x, (int)LKV_P2_PROB_BITS);
    const vi f0v = _mm256_set1_epi32((int)f0);
    const vi c = p2a_le(f0v, slot);
    const vi f = p2a_blend(c, _mm256_set1_epi32((int)f1), f0v);
    *x = _mm256_add_epi32(_mm256_mullo_epi32(f, hi),
                          _mm256_sub_epi32(slot, _mm256_and_si256(c, f0v)));
    return c;
}

/* The lx entries (lkv_p2_vtab) at the 8 indices li, their low halves to
 * *lo and high halves to *hi, by 8 scalar loads, as p2v_lx (which gives
 * the reason and the measurement): on Zen 4 they cost less than the two
 * 8-lane gathers of the halves they replace. */
static inline void p2a_lx(const uint64_t *lx, vi li, vi *lo, vi *hi)
{
    uint32_t ix[8];
    _mm256_storeu_si256((__m256i *)ix, li);
    __m128i p[4];
    for (unsigned k = 0; k < 4; k++)
        p[k] = _mm_insert_epi64(_mm_cvtsi64_si128((long long)lx[ix[2 * k]]),
                                (long long)lx[ix[2 * k + 1]], 1);
    /* entries 0, 1, 4, 5 and 2, 3, 6, 7: the shuffles' 128-bit lanes then
     * hold entries 0..3 and 4..7 */
    const __m256 a =
        _mm256_castsi256_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(p[0]), p[2], 1));
    const __m256 b =
        _mm256_castsi256_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(p[1]), p[3], 1));
    *lo = _mm256_castps_si256(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
    *hi = _mm256_castps_si256(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* The bin symbol of every lane of x from table ti (0..5) of each lane, as
 * p2v_bin: one 64-bit lookup (p2a_lx), one step up, the fine row, the
 * walk. The halves of an entry were read as two 8-lane gathers before,
 * which decoded 4.5-4.7 M vectors/s against 3.7-4.5 for 4-lane 64-bit
 * gathers and a deinterleave (codec_p2_bench, 2^19 vectors, two
 * alternating runs each, dev VM). */
static inline vi p2a_bin(const lkv_p2_vtab *vt, vi ti, vi *x)
{
    const vi slot = _mm256_and_si256(*x, _mm256_set1_epi32((int)(LKV_P2_PROB_ONE - 1u)));
    const vi tb = _mm256_slli_epi32(ti, 9); /* 512 entries per table */
    const vi li = _mm256_add_epi32(tb, _mm256_srli_epi32(slot, (int)LKV_P2_LUT_SHIFT));
    vi lo, hi;
    p2a_lx(&vt->lx[0][0], li, &lo, &hi);
    const vi mask16 = _mm256_set1_epi32(0xffff);
    vi s = _mm256_and_si256(lo, _mm256_set1_epi32(0x1ff));
    vi c0 = _mm256_srli_epi32(lo, 16);
    vi c1 = _mm256_and_si256(hi, mask16);
    const vi step = p2a_le(c1, slot);
    s = _mm256_sub_epi32(s, step);
    c0 = p2a_blend(step, c1, c0);
    c1 = p2a_blend(step, _mm256_srli_epi32(hi, 16), c1);
    vi up = p2a_le(c1, slot);
    if (p2a_bits(up)) {
        const vi rowf = _mm256_and_si256(lo, _mm256_set1_epi32(0xfe00)); /* (row + 1) << 9 */
        const vi fine = _mm256_andnot_si256(_mm256_cmpeq_epi32(rowf, _mm256_setzero_si256()), up);
        if (p2a_bits(fine)) {
            const vi fi = _mm256_add_epi32(
                _mm256_sub_epi32(_mm256_srli_epi32(rowf, 3), _mm256_set1_epi32(64)),
                _mm256_and_si256(slot, _mm256_set1_epi32((1 << LKV_P2_LUT_SHIFT) - 1)));
            const int *fx = (const int *)vt->fx;
            const vi fi2 = _mm256_add_epi32(fi, fi), z = _mm256_setzero_si256();
            const vi flo = _mm256_mask_i32gather_epi32(z, fx, fi2, fine, 4);     /* s | c0 << 16 */
            const vi fhi = _mm256_mask_i32gather_epi32(z, fx + 1, fi2, fine, 4); /* c1 */
            s = p2a_blend(fine, _mm256_and_si256(flo, mask16), s);
            c0 = p2a_blend(fine, _mm256_srli_epi32(flo, 16), c0);
            c1 = p2a_blend(fine, fhi, c1);
            up = _mm256_andnot_si256(fine, up);
        }
        if (p2a_bits(up)) {
            vi cc = _mm256_or_si256(c0, _mm256_slli_epi32(c1, 16));
            do {
                s = _mm256_sub_epi32(s, up);
                cc = _mm256_mask_i32gather_epi32(cc, (const int *)vt->cc, _mm256_add_epi32(tb, s),
                                                 up, 4);
                up = _mm256_and_si256(up, p2a_le(_mm256_srli_epi32(cc, 16), slot));
            } while (p2a_bits(up));
            c0 = _mm256_and_si256(cc, mask16);
            c1 = _mm256_srli_epi32(cc, 16);
        }
    }
    const vi xh = _mm256_srli_epi32(*x, (int)LKV_P2_PROB_BITS);
    *x = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_sub_epi32(c1, c0), xh),
                          _mm256_sub_epi32(slot, c0));
    return s;
}

/* b raw bits of every lane of x, b in 1..12. */
static inline vi p2a_raw(uint32_t b, vi *x)
{
    const uint32_t sh = LKV_P2_PROB_BITS - b;
    const vi slot = _mm256_and_si256(*x, _mm256_set1_epi32((int)(LKV_P2_PROB_ONE - 1u)));
    const vi hi = _mm256_srli_epi32(*x, (int)LKV_P2_PROB_BITS);
    *x = _mm256_add_epi32(_mm256_sll_epi32(hi, _mm_cvtsi32_si128((int)sh)),
                          _mm256_and_si256(slot, _mm256_set1_epi32((int)((1u << sh) - 1u))));
    return _mm256_srl_epi32(slot, _mm_cvtsi32_si128((int)sh));
}

/* The per-table fields (table c * 3 + tab), for permutevar8x32 by ti. */
typedef struct p2a_tabs {
    vi jlo, n, b;
} p2a_tabs;

static void p2a_tabs_init(const lkv_p2_model *m, p2a_tabs *tb)
{
    int32_t jlo[8] = {0}, n[8] = {0}, b[8] = {0};
    for (unsigned c = 0; c < 2; c++)
        for (unsigned t = 0; t < 3; t++) {
            const lkv_p2_table *p = &m->t[c][t];
            jlo[c * 3 + t] = p->jlo;
            n[c * 3 + t] = (int32_t)p->n;
            b[c * 3 + t] = (int32_t)p->b;
        }
    tb->jlo = _mm256_loadu_si256((const __m256i *)jlo);
    tb->n = _mm256_loadu_si256((const __m256i *)n);
    tb->b = _mm256_loadu_si256((const __m256i *)b);
}

static inline vi p2a_of(vi tab, vi ti)
{
    return _mm256_permutevar8x32_epi32(tab, ti);
}

/* A slot's word stream, lane states, norms and rows. */
typedef struct p2a_stream {
    const uint8_t *body;
    size_t len, pos;
    uint32_t *state;
    const float *rn; /* the norms the decoder multiplies by */
    uint8_t *const *rows;
} p2a_stream;

/* One coordinate of all lanes: bins with refills, raw bits with refills,
 * then the range check. u receives the offsets. */
SK_INLINE int p2a_coord(const lkv_p2_vtab *vt, const p2a_tabs *tb, const vi *ti, uint32_t rawb,
                        vi *x, p2a_stream *t, vi *u)
{
    vi s[P2A_REGS];
#pragma GCC unroll 4
    for (unsigned g = 0; g < P2A_REGS; g++)
        s[g] = p2a_bin(vt, ti[g], &x[g]);
#pragma GCC unroll 4
    for (unsigned g = 0; g < P2A_REGS; g++) {
        u[g] = _mm256_sllv_epi32(s[g], p2a_of(tb->b, ti[g]));
        if (!p2a_refill(&x[g], t->body, t->len, &t->pos))
            return 0;
    }
    if (rawb) {
#pragma GCC unroll 4
        for (unsigned g = 0; g < P2A_REGS; g++)
            u[g] = _mm256_or_si256(u[g], p2a_raw(rawb, &x[g]));
#pragma GCC unroll 4
        for (unsigned g = 0; g < P2A_REGS; g++)
            if (!p2a_refill(&x[g], t->body, t->len, &t->pos))
                return 0;
    }
#pragma GCC unroll 4
    for (unsigned g = 0; g < P2A_REGS; g++)
        if (p2a_bits(p2a_le(p2a_of(tb->n, ti[g]), u[g])))
            return 0;
    return 1;
}

/* Decodes one full slot of a piece (see p2.c and p2v_slots); kt holds the
 * points, [dim][32]. pc: NULL for a rotated piece (m's tables through vt),
 * else version 4's channel piece (per-coordinate tables pc->vc, coset
 * frequencies pc->f1, scale pc->ch); chan = (pc != NULL), a constant per
 * instance. 1 on success. One stream only: AVX2's 16 registers do not hold
 * two streams' chains (lkv_p2_kernels_avx2). */
SK_INLINE int p2a_slot(const lkv_p2_model *m, const lkv_p2_vtab *vt, const int chan,
                       const lkv_p2_piece *pc, p2a_stream *t, int16_t *kt, lkv_dtype dt)
{
    const unsigned kw = LKV_P2_LANES;
    p2a_tabs tb;
    p2a_tabs_init(m, &tb);
    vi x[P2A_REGS];
#pragma GCC unroll 4
    for (unsigned g = 0; g < P2A_REGS; g++)
        x[g] = _mm256_loadu_si256((const __m256i *)(t->state + 8u * g));
    const vi one = _mm256_set1_epi32(1), three = _mm256_set1_epi32(3);
    for (uint32_t blk = 0; blk < m->nblocks; blk++) {
        vi ti[P2A_REGS], cs[P2A_REGS], par[P2A_REGS], u[P2A_REGS];
#pragma GCC unroll 4
        for (unsigned g = 0; g < P2A_REGS; g++) {
            const vi c = p2a_coset(&x[g], chan ? pc->f1[blk] : m->coset_f1);
            cs[g] = _mm256_and_si256(c, one);
            ti[g] = _mm256_and_si256(c, three);
            par[g] = _mm256_setzero_si256();
        }
#pragma GCC unroll 4
        for (unsigned g = 0; g < P2A_REGS; g++)
            if (!p2a_refill(&x[g], t->body, t->len, &t->pos))
                return 0;
        const lkv_p2_vtab *const *vc = chan ? pc->vc + 8 * blk : NULL;
        for (uint32_t i = 0; i < 7; i++) {
            if (!p2a_coord(chan ? vc[i] : vt, &tb, ti, m->t[0][0].b, x, t, u))
                return 0;
#pragma GCC unroll 4
            for (unsigned g = 0; g < P2A_REGS; g++) {
                const vi kv = _mm256_add_epi32(p2a_of(tb.jlo, ti[g]), u[g]);
                par[g] = _mm256_xor_si256(par[g], _mm256_and_si256(kv, one));
                const vi p2 = _mm256_add_epi32(_mm256_add_epi32(kv, kv), cs[g]);
                vi_store16(&kt[(8 * blk + i) * kw + 8u * g], p2);
            }
        }
#pragma GCC unroll 4
        for (unsigned g = 0; g < P2A_REGS; g++)
            ti[g] = _mm256_add_epi32(ti[g], _mm256_add_epi32(par[g], one));
        /* lane 0 picks the raw-bit count, as in p2.c */
        const uint32_t raw7 = m->t[0][1 + (uint32_t)_mm256_cvtsi256_si32(par[0])].b;
        if (!p2a_coord(chan ? vc[7] : vt, &tb, ti, raw7, x, t, u))
            return 0;
#pragma GCC unroll 4
        for (unsigned g = 0; g < P2A_REGS; g++) {
            const vi jv = _mm256_add_epi32(p2a_of(tb.jlo, ti[g]), u[g]);
            const vi k7 = _mm256_add_epi32(_mm256_slli_epi32(jv, 1), par[g]);
            const vi p2 = _mm256_add_epi32(_mm256_add_epi32(k7, k7), cs[g]);
            vi_store16(&kt[(8 * blk + 7) * kw + 8u * g], p2);
        }
    }
#pragma GCC unroll 4
    for (unsigned g = 0; g < P2A_REGS; g++)
        _mm256_storeu_si256((__m256i *)(t->state + 8u * g), x[g]);

    /* The float part, 8 vectors at a time (piece dims are multiples of 8). */
    vf buf[LKV_DIM_MAX];
    const vf half = vf_set1(0.5f), qf = vf_set1(m->qf);
    for (unsigned g = 0; g < P2A_REGS; g++) {
        const unsigned gl = 8u * g;
        vf r;
        memcpy(&r, t->rn + gl, sizeof r);
        if (chan) {
            /* version 4's channel domain: ((p2 / 2) / ch) * r, as reconstruct */
            const vf cv = vf_set1(pc->ch);
            for (uint32_t j = 0; j < m->dim; j++) {
                const vi p2 =
                    _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)&kt[j * kw + gl]));
                buf[j] = vf_mul(vf_div(vf_mul(vf_from_i(p2), half), cv), r);
            }
        } else {
            for (uint32_t j = 0; j < m->dim; j++) {
                const vi p2 =
                    _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)&kt[j * kw + gl]));
                buf[j] = vf_div(vf_mul(vf_from_i(p2), half), qf);
            }
            vf unused = r;
            sk_fwht(buf, m->dim, 1, r, vf_set1(m->out_scale), r, &unused);
        }
        for (uint32_t ch = 0; ch < m->dim / 8u; ch++)
            sk_store_chunk(dt, t->rows + gl, 8, ch * 8u, buf + ch * 8u);
    }
    return 1;
}

/* rANS encode of one symbol in the 8 lanes of x, lanes in descending order:
 * the lanes that shed a word write it below *wp, in lane order. */
SK_INLINE int p2a_put(vi *x, vi start, vi freq, vi rcp, uint8_t *base, size_t *wp, size_t limit)
{
    const vi emit = p2a_le(freq, _mm256_srli_epi32(*x, 17));
    const unsigned m = p2a_bits(emit);
    if (m) {
        const unsigned cnt = (unsigned)__builtin_popcount(m);
        if (*wp < limit + 2u * cnt)
            return 0;
        const vi w = _mm256_permutevar8x32_epi32(_mm256_and_si256(*x, _mm256_set1_epi32(0xffff)),
                                                 p2a_perm(1, m));
        const __m128i w16 =
            _mm_packus_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
        if (*wp >= limit + 16u)
            _mm_storeu_si128((__m128i *)(base + *wp - 16u), w16);
        else {
            uint8_t tmp[16];
            _mm_storeu_si128((__m128i *)tmp, w16);
            memcpy(base + *wp - 2u * cnt, tmp + 16u - 2u * cnt, 2u * cnt);
        }
        *wp -= 2u * cnt;
        *x = p2a_blend(emit, _mm256_srli_epi32(*x, 16), *x);
    }
    /* x / freq: the multiply-high estimate q is at most 1 below
     * (lkv_p2_rcp), r < 2 freq; a step up (q + 1, r - freq) adds 2^15 - freq
     * to the new state. */
    const vi q = vi_mulhi(*x, rcp);
    const vi r = _mm256_sub_epi32(*x, _mm256_mullo_epi32(q, freq));
    const vi step = _mm256_sub_epi32(_mm256_set1_epi32((int)LKV_P2_PROB_ONE), freq);
    const vi up = _mm256_and_si256(p2a_le(freq, r), step);
    const vi y =
        _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(q, (int)LKV_P2_PROB_BITS), start), r);
    *x = _mm256_add_epi32(y, up);
    return 1;
}

/* The symbols of one table coordinate in 8 lanes (p2v_coord_syms): rotated
 * from vt->cc and m's rcp[] (rcpbase), a channel coordinate from its
 * level's et, one 64-bit lookup. */
SK_INLINE void p2a_coord_syms(const lkv_p2_model *m, const lkv_p2_vtab *vt, const lkv_p2_etab *et,
                              const int chan, vi ti, vi rcpbase, vi b, uint32_t rawb, vi u,
                              vi (*sy)[3], unsigned *ns)
{
    const vi hi = _mm256_srlv_epi32(u, b);
    const vi ei = _mm256_add_epi32(_mm256_slli_epi32(ti, 9), hi); /* 512 bins per table */
    if (chan) {
        /* lanes 0, 1, 4, 5 from ga and 2, 3, 6, 7 from gb: then the lanes'
         * low and high halves are one in-lane shuffle each */
        const vi eo = _mm256_permutevar8x32_epi32(ei, _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
        const long long *e = (const long long *)et->e;
        const __m256 ga =
            _mm256_castsi256_ps(_mm256_i32gather_epi64(e, _mm256_castsi256_si128(eo), 8));
        const __m256 gb =
            _mm256_castsi256_ps(_mm256_i32gather_epi64(e, _mm256_extracti128_si256(eo, 1), 8));
        const vi lo = _mm256_castps_si256(_mm256_shuffle_ps(ga, gb, 0x88)); /* start | freq << 16 */
        sy[*ns][0] = _mm256_and_si256(lo, _mm256_set1_epi32(0xffff));
        sy[*ns][1] = _mm256_srli_epi32(lo, 16);
        sy[*ns][2] = _mm256_castps_si256(_mm256_shuffle_ps(ga, gb, 0xdd));
    } else {
        const vi cc = _mm256_i32gather_epi32((const int *)vt->cc, ei, 4);
        const vi c0 = _mm256_and_si256(cc, _mm256_set1_epi32(0xffff));
        sy[*ns][0] = c0;
        sy[*ns][1] = _mm256_sub_epi32(_mm256_srli_epi32(cc, 16), c0);
        sy[*ns][2] = _mm256_i32gather_epi32((const int *)m->t, _mm256_add_epi32(rcpbase, hi), 4);
    }
    (*ns)++;
    if (rawb) {
        const uint32_t f = LKV_P2_PROB_ONE >> rawb;
        sy[*ns][0] = _mm256_mullo_epi32(_mm256_and_si256(u, vi_set1((int32_t)((1u << rawb) - 1u))),
                                        vi_set1((int32_t)f));
        sy[*ns][1] = vi_set1((int32_t)f);
        sy[*ns][2] = vi_set1((int32_t)lkv_p2_rcp(f));
        (*ns)++;
    }
}

/* The offsets, in uint32 from m->t, of each table's rcp[], for
 * permutevar8x32 by ti. */
static inline vi p2a_rcp_base(const lkv_p2_model *m)
{
    int32_t rb[8] = {0};
    for (unsigned c = 0; c < 2; c++)
        for (unsigned t = 0; t < 3; t++)
            rb[c * 3 + t] = (int32_t)(((const uint8_t *)&m->t[c][t] + offsetof(lkv_p2_table, rcp) -
                                       (const uint8_t *)m->t) /
                                      4);
    return _mm256_loadu_si256((const __m256i *)rb);
}

/* One block of a full slot through rANS, from its symbol-major points
 * (p2v_encode_blk; chan: version 4's channel piece pc): 0 on success, 1
 * for a point outside its table, 2 when the words would go below limit. */
SK_INLINE int p2a_encode_blk(const lkv_p2_model *m, const lkv_p2_vtab *vt, const int chan,
                             const lkv_p2_piece *pc, uint32_t b, const int16_t *kt,
                             const uint8_t *ct, uint32_t *state, uint8_t *base, size_t *wp,
                             size_t limit)
{
    p2a_tabs tb;
    p2a_tabs_init(m, &tb);
    const vi rbase = p2a_rcp_base(m), one = vi_set1(1);
    const lkv_p2_etab *const *ec = chan ? pc->ec + 8 * b : NULL;
    const uint32_t f1 = chan ? pc->f1[b] : m->coset_f1, b6 = m->t[0][0].b, b7 = m->t[0][1].b;
    const uint32_t cr0 = chan ? pc->rcp[b][0] : m->coset_rcp[0];
    const uint32_t cr1 = chan ? pc->rcp[b][1] : m->coset_rcp[1];
    vi sy[P2A_REGS][1 + 2 * 8][3];
    unsigned ns = 0;
    for (unsigned g = 0; g < P2A_REGS; g++) {
        const vi cv = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(ct + 8u * g)));
        const vi half = _mm256_cmpgt_epi32(cv, _mm256_setzero_si256());
        const vi f0v = vi_set1((int32_t)(LKV_P2_PROB_ONE - f1));
        sy[g][0][0] = _mm256_and_si256(half, f0v);
        sy[g][0][1] = p2a_blend(half, vi_set1((int32_t)f1), f0v);
        sy[g][0][2] = p2a_blend(half, vi_set1((int32_t)cr1), vi_set1((int32_t)cr0));
        ns = 1;
        vi ti = _mm256_and_si256(half, vi_set1(3)), par = _mm256_setzero_si256();
        const vi jlo0 = p2a_of(tb.jlo, ti), n0 = p2a_of(tb.n, ti);
        const vi bb0 = p2a_of(tb.b, ti), rb0 = p2a_of(rbase, ti);
        for (uint32_t i = 0; i < 7; i++) {
            const vi k = _mm256_cvtepi16_epi32(
                _mm_loadu_si128((const __m128i *)(kt + i * LKV_P2_LANES + 8u * g)));
            const vi u = _mm256_sub_epi32(k, jlo0);
            if (p2a_bits(
                    _mm256_or_si256(p2a_le(n0, u), _mm256_cmpgt_epi32(_mm256_setzero_si256(), u))))
                return 1;
            par = _mm256_xor_si256(par, _mm256_and_si256(k, one));
            p2a_coord_syms(m, vt, chan ? ec[i] : NULL, chan, ti, rb0, bb0, b6, u, sy[g], &ns);
        }
        const vi k7 = _mm256_cvtepi16_epi32(
            _mm_loadu_si128((const __m128i *)(kt + 7 * LKV_P2_LANES + 8u * g)));
        if (p2a_bits(_mm256_cmpeq_epi32(_mm256_and_si256(_mm256_xor_si256(k7, par), one), one)))
            return 1;
        ti = _mm256_add_epi32(ti, _mm256_add_epi32(par, one));
        const vi u =
            _mm256_sub_epi32(_mm256_srai_epi32(_mm256_sub_epi32(k7, par), 1), p2a_of(tb.jlo, ti));
        if (p2a_bits(_mm256_or_si256(p2a_le(p2a_of(tb.n, ti), u),
                                     _mm256_cmpgt_epi32(_mm256_setzero_si256(), u))))
            return 1;
        p2a_coord_syms(m, vt, chan ? ec[7] : NULL, chan, ti, p2a_of(rbase, ti), p2a_of(tb.b, ti),
                       b7, u, sy[g], &ns);
    }
    vi x[P2A_REGS];
    for (unsigned g = 0; g < P2A_REGS; g++)
        x[g] = _mm256_loadu_si256((const __m256i *)(state + 8u * g));
    int ok = 1;
    for (unsigned s = ns; ok && s-- > 0;)
        for (unsigned g = P2A_REGS; ok && g-- > 0;)
            ok = p2a_put(&x[g], sy[g][s][0], sy[g][s][1], sy[g][s][2], base, wp, limit);
    for (unsigned g = 0; g < P2A_REGS; g++)
        _mm256_storeu_si256((__m256i *)(state + 8u * g), x[g]);
    return ok ? 0 : 2;
}

/* lkv_p2_kernels.encode_block: one instance per mode, so the rotated one
 * is the code it was before the channel mode. */
static int p2a_encode_block(const lkv_p2_model *m, const lkv_p2_vtab *vt, const lkv_p2_piece *pc,
                            uint32_t b, const int16_t *kt, const uint8_t *ct, uint32_t *state,
                            uint8_t *base, size_t *wp, size_t limit)
{
    if (pc)
        return p2a_encode_blk(m, vt, 1, pc, b, kt, ct, state, base, wp, limit);
    return p2a_encode_blk(m, vt, 0, NULL, b, kt, ct, state, base, wp, limit);
}

#endif /* LKV_P2_AVX2_H */
