/* SPDX-License-Identifier: Apache-2.0 */
/*
 * p2_avx512.h - profile 2's decoder for one full slot (32 vectors) on the
 * AVX-512 path. Included only by simd_avx512.c, after its primitives and
 * simd_kernel.h, whose butterfly (sk_fwht) and transposing store
 * (sk_store_chunk) it reuses.
 *
 * Design note: the 32 rANS lanes of a slot are two zmm registers of 16
 * lanes, lanes 0..15 and 16..31, and every symbol position is decoded in
 * all of them at once. What makes the bytes and the stream position the
 * scalar decoder's (p2.c decode_chunk):
 *   - lanes never depend on each other except through the shared word
 *     stream, and the scalar decoder refills lane after lane in lane order.
 *     Lanes that need a word form a mask; the k-th of them, in lane order,
 *     takes the k-th word from the current position (a masked load of
 *     popcount words, then an expand to the lanes of the mask). Register 0
 *     refills before register 1, so lane order holds across the two.
 *   - the slot -> bin lookup is the scalar one done with gathers: the
 *     table's lut entry, then the same linear walk up cum[] for the lanes
 *     still below their bin, then cum[s] for the frequency.
 *   - the raw-bit count of a coordinate is lane 0's table's, as in the
 *     scalar decoder; every table of a kind has the same count anyway.
 * Any failure (a refill past the end, a point outside its table) returns 0
 * and the caller decodes the chunk again with the scalar decoder, which
 * reports the error and its message; the SIMD path reports none itself.
 *
 * The float part is profile 1's decode arithmetic on lanes: p = (2k + c)/2
 * divided by Q, the butterfly in stage order, times 4/D, times r; the same
 * fp32 operations in the same order as p2.c reconstruct, one vector per lane.
 *
 * Two chunks can be decoded side by side (lkv_p2_slot2_avx512, pieces of
 * D <= LKV_P2_PAIR_DIM_MAX): each stream is one long dependency chain
 * (gather, multiply, refill, next symbol), and two of them keep the core
 * busy where one leaves it waiting. The loops over the registers of the
 * streams carry "GCC unroll": rolled up, GCC keeps the lane states x[] on the
 * stack, and every symbol's chain then pays store-to-load forwarding twice.
 *
 * Stack: the slot's points as int16 [dim][32] (64 KiB at D = 1024; the pair
 * path only runs for D <= 256: 32 KiB) and the float scratch vf[dim]
 * (64 KiB).
 */
#ifndef LKV_P2_AVX512_H
#define LKV_P2_AVX512_H

#include <stddef.h>

#define P2V_REGS (LKV_P2_LANES / 16u)

/* The per-table fields the lanes need, indexed by the table number
 * c * 3 + tab (0..5), as 16-entry permute tables. */
typedef struct p2v_tabs {
    vi jlo, n, b;
} p2v_tabs;

/* Refills the lanes of x below 2^16 from the word stream, in lane order.
 * 0 when the stream ends first. No early return when no lane needs a word:
 * after a coset symbol that is a third of the registers, at random, and the
 * mispredicted branch cost more than an empty load and expand. */
static inline int p2v_refill(vi *x, const uint8_t *body, size_t len, size_t *pos)
{
    const __mmask16 need = _mm512_cmplt_epu32_mask(*x, _mm512_set1_epi32((int)LKV_P2_RANS_LOW));
    const unsigned cnt = (unsigned)__builtin_popcount(need);
    if (len - *pos < 2u * cnt)
        return 0;
    const __m256i w = _mm256_maskz_loadu_epi16((__mmask16)((1u << cnt) - 1u), body + *pos);
    const vi wv = _mm512_maskz_expand_epi32(need, _mm512_cvtepu16_epi32(w));
    *x = _mm512_mask_or_epi32(*x, need, _mm512_slli_epi32(*x, 16), wv);
    *pos += 2u * cnt;
    return 1;
}

/* The coset symbol of every lane of x: returns the coset mask. */
static inline __mmask16 p2v_coset(vi *x, uint32_t f1)
{
    const uint32_t f0 = LKV_P2_PROB_ONE - f1;
    const vi slot = _mm512_and_si512(*x, _mm512_set1_epi32((int)(LKV_P2_PROB_ONE - 1u)));
    const vi hi = _mm512_srli_epi32(*x, (int)LKV_P2_PROB_BITS);
    const __mmask16 c = _mm512_cmpge_epu32_mask(slot, _mm512_set1_epi32((int)f0));
    const vi f = _mm512_mask_blend_epi32(c, _mm512_set1_epi32((int)f0), _mm512_set1_epi32((int)f1));
    const vi sub = _mm512_maskz_mov_epi32(c, _mm512_set1_epi32((int)f0));
    *x = _mm512_add_epi32(_mm512_mullo_epi32(f, hi), _mm512_sub_epi32(slot, sub));
    return c;
}

/* The lx entries (lkv_p2_vtab) at the 16 indices li, lanes 0..7 to *ga and
 * 8..15 to *gb, by 16 scalar loads and inserts instead of two 8-lane
 * gathers. On Zen 4 an 8-lane 64-bit gather of random entries takes about
 * 13 cycles of throughput from L1 and 22 from L2, and the lx rows of a
 * channel piece (a level's 24 KiB per coordinate, about 20 levels on
 * log-normal channels) mostly come from L2; the loads go three a cycle.
 * Measured (codec_p2_bench --v4, one core of the dev VM, 5 alternating
 * runs, medians): channel decode 4.14 -> 4.86 M vectors/s, version 3
 * 4.95 -> 5.45; the AVX2 twin (p2a_lx) 3.70 -> 4.30 and 3.89 -> 4.92. */
static inline void p2v_lx(const uint64_t *lx, vi li, vi *ga, vi *gb)
{
    uint32_t ix[16];
    _mm512_storeu_si512(ix, li);
    __m128i p[8];
    for (unsigned k = 0; k < 8; k++)
        p[k] = _mm_insert_epi64(_mm_cvtsi64_si128((long long)lx[ix[2 * k]]),
                                (long long)lx[ix[2 * k + 1]], 1);
    __m256i q[4];
    for (unsigned k = 0; k < 4; k++)
        q[k] = _mm256_inserti128_si256(_mm256_castsi128_si256(p[2 * k]), p[2 * k + 1], 1);
    *ga = _mm512_inserti64x4(_mm512_castsi256_si512(q[0]), q[1], 1);
    *gb = _mm512_inserti64x4(_mm512_castsi256_si512(q[2]), q[3], 1);
}

/* The bin symbol of every lane of x from table ti (0..5) of each lane;
 * returns the bin. One 64-bit lookup per lane (p2v_lx) gives the
 * lut's bin, its start and end and the next bin's end: a lut window holds
 * at most one bin boundary except in the tails, so one step up covers
 * nearly every lane. A lane further up reads its slot's own entry from the
 * window's fine row (lkv_p2_vtab), one more lookup instead of a walk of up
 * to 63 dependent gathers; only windows left without a row (none at Q = 54,
 * D = 128) walk up cc one bin per gather. The fine lookup stays behind a
 * branch: unconditional gathers with empty masks cost more on AMD Zen than
 * the branch's mispredictions. */
SK_INLINE vi p2v_bin(const lkv_p2_vtab *vt, vi ti, vi *x)
{
    const vi slot = _mm512_and_si512(*x, _mm512_set1_epi32((int)(LKV_P2_PROB_ONE - 1u)));
    const vi tb = _mm512_slli_epi32(ti, 9); /* 512 entries per table */
    const vi li = _mm512_add_epi32(tb, _mm512_srli_epi32(slot, (int)LKV_P2_LUT_SHIFT));
    vi ga, gb;
    p2v_lx(&vt->lx[0][0], li, &ga, &gb);
    const vi even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const vi odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const vi lo = _mm512_permutex2var_epi32(ga, even, gb); /* s | row << 9 | c0 << 16 */
    const vi hi = _mm512_permutex2var_epi32(ga, odd, gb);  /* c1 | c2 << 16 */
    const vi mask16 = _mm512_set1_epi32(0xffff);
    vi s = _mm512_and_si512(lo, _mm512_set1_epi32(0x1ff));
    vi c0 = _mm512_srli_epi32(lo, 16);
    vi c1 = _mm512_and_si512(hi, mask16);
    const __mmask16 step = _mm512_cmple_epu32_mask(c1, slot);
    s = _mm512_mask_add_epi32(s, step, s, _mm512_set1_epi32(1));
    c0 = _mm512_mask_mov_epi32(c0, step, c1);
    c1 = _mm512_mask_mov_epi32(c1, step, _mm512_srli_epi32(hi, 16));
    __mmask16 up = _mm512_cmple_epu32_mask(c1, slot);
    if (up) {
        const vi rowf = _mm512_and_si512(lo, _mm512_set1_epi32(0xfe00)); /* (row + 1) << 9 */
        const __mmask16 fine = _mm512_mask_test_epi32_mask(up, rowf, rowf);
        if (fine) {
            /* fx[row][slot & 63] = fx[0][(row + 1) * 64 - 64 + (slot & 63)] */
            const vi fi = _mm512_add_epi32(
                _mm512_sub_epi32(_mm512_srli_epi32(rowf, 3), _mm512_set1_epi32(64)),
                _mm512_and_si512(slot, _mm512_set1_epi32((1 << LKV_P2_LUT_SHIFT) - 1)));
            const vi fa = _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), (__mmask8)fine,
                                                      _mm512_castsi512_si256(fi), vt->fx, 8);
            const vi fb = _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), (__mmask8)(fine >> 8),
                                                      _mm512_extracti64x4_epi64(fi, 1), vt->fx, 8);
            const vi flo = _mm512_permutex2var_epi32(fa, even, fb); /* s | c0 << 16 */
            const vi fhi = _mm512_permutex2var_epi32(fa, odd, fb);  /* c1 */
            s = _mm512_mask_and_epi32(s, fine, flo, mask16);
            c0 = _mm512_mask_srli_epi32(c0, fine, flo, 16);
            c1 = _mm512_mask_mov_epi32(c1, fine, fhi);
            up &= (__mmask16)~fine;
        }
        if (up) {
            vi cc = _mm512_or_si512(c0, _mm512_slli_epi32(c1, 16));
            do {
                s = _mm512_mask_add_epi32(s, up, s, _mm512_set1_epi32(1));
                cc = _mm512_mask_i32gather_epi32(cc, up, _mm512_add_epi32(tb, s), vt->cc, 4);
                up = _mm512_mask_cmple_epu32_mask(up, _mm512_srli_epi32(cc, 16), slot);
            } while (up);
            c0 = _mm512_and_si512(cc, mask16);
            c1 = _mm512_srli_epi32(cc, 16);
        }
    }
    const vi xh = _mm512_srli_epi32(*x, (int)LKV_P2_PROB_BITS);
    *x = _mm512_add_epi32(_mm512_mullo_epi32(_mm512_sub_epi32(c1, c0), xh),
                          _mm512_sub_epi32(slot, c0));
    return s;
}

/* b raw bits of every lane of x, b in 1..12. */
static inline vi p2v_raw(uint32_t b, vi *x)
{
    const uint32_t sh = LKV_P2_PROB_BITS - b;
    const vi slot = _mm512_and_si512(*x, _mm512_set1_epi32((int)(LKV_P2_PROB_ONE - 1u)));
    const vi hi = _mm512_srli_epi32(*x, (int)LKV_P2_PROB_BITS);
    *x = _mm512_add_epi32(_mm512_sll_epi32(hi, _mm_cvtsi32_si128((int)sh)),
                          _mm512_and_si512(slot, _mm512_set1_epi32((int)((1u << sh) - 1u))));
    return _mm512_srl_epi32(slot, _mm_cvtsi32_si128((int)sh));
}

/* One stream's slot: its word stream, lane states, norms and rows. */
typedef struct p2v_stream {
    const uint8_t *body;
    size_t len, pos;
    uint32_t *state;
    const float *rn; /* the norms the decoder multiplies by */
    uint8_t *const *rows;
    const lkv_p2_piece *pc; /* p2v_slots with chan: this stream's piece */
} p2v_stream;

/* Register g of ns streams belongs to stream g / P2V_REGS. */
#define P2V_MAXR (2u * P2V_REGS)

/* One coordinate of all lanes of every stream: bins (with refills), then
 * raw bits (with refills), then the range check. u receives the offsets.
 * Stream 0 looks its bins up in vt0, stream 1 in vt1. */
SK_INLINE int p2v_coord(const lkv_p2_vtab *vt0, const lkv_p2_vtab *vt1, const p2v_tabs *tb,
                        const vi *ti, const uint32_t *rawb, vi *x, p2v_stream *st, unsigned nr,
                        vi *u)
{
    vi s[P2V_MAXR];
#pragma GCC unroll 4
    for (unsigned g = 0; g < nr; g++)
        s[g] = p2v_bin(g / P2V_REGS ? vt1 : vt0, ti[g], &x[g]);
#pragma GCC unroll 4
    for (unsigned g = 0; g < nr; g++) {
        p2v_stream *t = &st[g / P2V_REGS];
        u[g] = _mm512_sllv_epi32(s[g], _mm512_permutexvar_epi32(ti[g], tb->b));
        if (!p2v_refill(&x[g], t->body, t->len, &t->pos))
            return 0;
    }
#pragma GCC unroll 4
    for (unsigned g = 0; g < nr; g++)
        if (rawb[g / P2V_REGS])
            u[g] = _mm512_or_si512(u[g], p2v_raw(rawb[g / P2V_REGS], &x[g]));
#pragma GCC unroll 4
    for (unsigned g = 0; g < nr; g++) {
        p2v_stream *t = &st[g / P2V_REGS];
        if (rawb[g / P2V_REGS] && !p2v_refill(&x[g], t->body, t->len, &t->pos))
            return 0;
    }
#pragma GCC unroll 4
    for (unsigned g = 0; g < nr; g++)
        if (_mm512_cmpge_epu32_mask(u[g], _mm512_permutexvar_epi32(ti[g], tb->n)))
            return 0;
    return 1;
}

static void p2v_tabs_init(const lkv_p2_model *m, p2v_tabs *tb)
{
    int32_t jlo[16] = {0}, n[16] = {0}, b[16] = {0};
    for (unsigned c = 0; c < 2; c++)
        for (unsigned t = 0; t < 3; t++) {
            const lkv_p2_table *p = &m->t[c][t];
            jlo[c * 3 + t] = p->jlo;
            n[c * 3 + t] = (int32_t)p->n;
            b[c * 3 + t] = (int32_t)p->b;
        }
    tb->jlo = _mm512_loadu_si512(jlo);
    tb->n = _mm512_loadu_si512(n);
    tb->b = _mm512_loadu_si512(b);
}

/* Decodes one full slot (32 vectors) of a piece in each of ns streams
 * (independent chunks: their dependency chains overlap); see p2.c. kt
 * holds the points, [dim][ns * 32]. chan: every stream has its piece st->pc
 * (version 4: channel, or rotated with vc = vt), whose per-coordinate
 * tables, per-block coset frequencies and scale it decodes with; else m's
 * tables through vt everywhere. 1 on success. */
SK_INLINE int p2v_slots(const lkv_p2_model *m, const lkv_p2_vtab *vt, p2v_stream *st,
                        const unsigned ns, int16_t *kt, lkv_dtype dt, const int chan)
{
    const unsigned nr = ns * P2V_REGS, kw = ns * LKV_P2_LANES;
    p2v_tabs tb;
    p2v_tabs_init(m, &tb);
    vi x[P2V_MAXR];
#pragma GCC unroll 4
    for (unsigned g = 0; g < nr; g++)
        x[g] = _mm512_loadu_si512(st[g / P2V_REGS].state + 16u * (g % P2V_REGS));
    const vi one = _mm512_set1_epi32(1), three = _mm512_set1_epi32(3);
    const uint32_t raw6[2] = {m->t[0][0].b, m->t[0][0].b};
    for (uint32_t blk = 0; blk < m->nblocks; blk++) {
        vi ti[P2V_MAXR], cs[P2V_MAXR], par[P2V_MAXR], u[P2V_MAXR];
        __mmask16 c[P2V_MAXR];
#pragma GCC unroll 4
        for (unsigned g = 0; g < nr; g++)
            c[g] = p2v_coset(&x[g], chan ? st[g / P2V_REGS].pc->f1[blk] : m->coset_f1);
#pragma GCC unroll 4
        for (unsigned g = 0; g < nr; g++) {
            p2v_stream *t = &st[g / P2V_REGS];
            if (!p2v_refill(&x[g], t->body, t->len, &t->pos))
                return 0;
            cs[g] = _mm512_maskz_mov_epi32(c[g], one);
            ti[g] = _mm512_maskz_mov_epi32(c[g], three);
            par[g] = _mm512_setzero_si512();
        }
        const lkv_p2_vtab *const *vc0 = chan ? st[0].pc->vc + 8 * blk : NULL;
        const lkv_p2_vtab *const *vc1 = chan ? st[ns - 1].pc->vc + 8 * blk : NULL;
        for (uint32_t i = 0; i < 7; i++) {
            if (!p2v_coord(chan ? vc0[i] : vt, chan ? vc1[i] : vt, &tb, ti, raw6, x, st, nr, u))
                return 0;
#pragma GCC unroll 4
            for (unsigned g = 0; g < nr; g++) {
                const vi kv = _mm512_add_epi32(_mm512_permutexvar_epi32(ti[g], tb.jlo), u[g]);
                par[g] = _mm512_xor_si512(par[g], _mm512_and_si512(kv, one));
                const vi p2 = _mm512_add_epi32(_mm512_add_epi32(kv, kv), cs[g]);
                vi_store16(&kt[(8 * blk + i) * kw + 16u * g], p2);
            }
        }
        uint32_t raw7[2] = {0, 0};
#pragma GCC unroll 4
        for (unsigned g = 0; g < nr; g++) {
            ti[g] = _mm512_add_epi32(ti[g], _mm512_add_epi32(par[g], one));
            /* lane 0 of each stream picks the raw-bit count, as in p2.c */
            if (g % P2V_REGS == 0)
                raw7[g / P2V_REGS] =
                    m->t[0][1 + (uint32_t)_mm_cvtsi128_si32(_mm512_castsi512_si128(par[g]))].b;
        }
        if (!p2v_coord(chan ? vc0[7] : vt, chan ? vc1[7] : vt, &tb, ti, raw7, x, st, nr, u))
            return 0;
#pragma GCC unroll 4
        for (unsigned g = 0; g < nr; g++) {
            const vi jv = _mm512_add_epi32(_mm512_permutexvar_epi32(ti[g], tb.jlo), u[g]);
            const vi k7 = _mm512_add_epi32(_mm512_slli_epi32(jv, 1), par[g]);
            const vi p2 = _mm512_add_epi32(_mm512_add_epi32(k7, k7), cs[g]);
            vi_store16(&kt[(8 * blk + 7) * kw + 16u * g], p2);
        }
    }
#pragma GCC unroll 4
    for (unsigned g = 0; g < nr; g++)
        _mm512_storeu_si512(st[g / P2V_REGS].state + 16u * (g % P2V_REGS), x[g]);

    /* The float part, 16 vectors at a time. */
    vf buf[LKV_DIM_MAX];
    const vf half = vf_set1(0.5f), qf = vf_set1(m->qf);
#pragma GCC unroll 4
    for (unsigned g = 0; g < nr; g++) {
        const p2v_stream *t = &st[g / P2V_REGS];
        const unsigned gl = 16u * (g % P2V_REGS);
        vf r;
        memcpy(&r, t->rn + gl, sizeof r);
        if (chan && t->pc->ch != 0.0f) {
            /* version 4's channel domain: ((p2 / 2) / ch) * r, as reconstruct */
            const vf cv = vf_set1(t->pc->ch);
            for (uint32_t j = 0; j < m->dim; j++) {
                const vi p2 = _mm512_cvtepi16_epi32(
                    _mm256_loadu_si256((const __m256i *)&kt[j * kw + 16u * g]));
                buf[j] = vf_mul(vf_div(vf_mul(vf_from_i(p2), half), cv), r);
            }
        } else {
            for (uint32_t j = 0; j < m->dim; j++) {
                const vi p2 = _mm512_cvtepi16_epi32(
                    _mm256_loadu_si256((const __m256i *)&kt[j * kw + 16u * g]));
                buf[j] = vf_div(vf_mul(vf_from_i(p2), half), qf);
            }
            vf unused = r;
            sk_fwht(buf, m->dim, 1, r, vf_set1(m->out_scale), r, &unused);
        }
        uint8_t *const *gr = t->rows + gl;
        if (m->dim >= 16) {
            for (uint32_t ch = 0; ch < m->dim / 16u; ch++)
                sk_store_chunk(dt, gr, 16, ch * 16u, buf + ch * 16u);
        } else {
            float tmp[16];
            for (unsigned l = 0; l < 16; l++) {
                for (uint32_t j = 0; j < m->dim; j++)
                    tmp[j] = ((const float *)&buf[j])[l];
                lkv_store_vec(dt, gr[l], 0, m->dim, tmp);
            }
        }
    }
    return 1;
}

/* rANS encode of one symbol in the 16 lanes of x, lanes in descending
 * order: the lanes that shed a word write it below *wp, the highest lane
 * first, so in memory they lie in lane order (a compress). */
SK_INLINE int p2v_put(vi *x, vi start, vi freq, vi rcp, uint8_t *base, size_t *wp, size_t limit)
{
    const __mmask16 emit = _mm512_cmpge_epu32_mask(_mm512_srli_epi32(*x, 17), freq);
    if (emit) {
        const unsigned cnt = (unsigned)__builtin_popcount(emit);
        if (*wp < limit + 2u * cnt)
            return 0;
        *wp -= 2u * cnt;
        const vi w =
            _mm512_maskz_compress_epi32(emit, _mm512_and_si512(*x, _mm512_set1_epi32(0xffff)));
        _mm256_mask_storeu_epi16(base + *wp, (__mmask16)((1u << cnt) - 1u),
                                 _mm512_cvtepi32_epi16(w));
        *x = _mm512_mask_srli_epi32(*x, emit, *x, 16);
    }
    /* x / freq: the multiply-high estimate q is at most 1 below
     * (lkv_p2_rcp), so the remainder r < 2 freq. A step up (q + 1,
     * r - freq) adds 2^15 - freq to the new state. */
    const vi q = vi_mulhi(*x, rcp);
    const vi r = _mm512_sub_epi32(*x, _mm512_mullo_epi32(q, freq));
    const __mmask16 up = _mm512_cmpge_epu32_mask(r, freq);
    const vi step = _mm512_sub_epi32(_mm512_set1_epi32((int)LKV_P2_PROB_ONE), freq);
    const vi y =
        _mm512_add_epi32(_mm512_add_epi32(_mm512_slli_epi32(q, (int)LKV_P2_PROB_BITS), start), r);
    *x = _mm512_mask_add_epi32(y, up, y, step);
    return 1;
}

/* The symbols of one table coordinate in 16 lanes: u (already checked
 * against the table's n) to its bin symbol and, with rawb bits, its raw
 * symbol; *ns advances by the symbols written. Rotated (chan = 0): the bin's
 * start and end from vt->cc, one gather, its rcp from m's tables (rcpbase:
 * their rcp[] as offsets from m->t), another; a channel coordinate all
 * three from its level's et, one 64-bit lookup (two gathers of 8). */
SK_INLINE void p2v_coord_syms(const lkv_p2_model *m, const lkv_p2_vtab *vt, const lkv_p2_etab *et,
                              const int chan, vi ti, vi rcpbase, vi b, uint32_t rawb, vi u,
                              vi (*sy)[3], unsigned *ns)
{
    const vi hi = _mm512_srlv_epi32(u, b);
    const vi ei = _mm512_add_epi32(_mm512_slli_epi32(ti, 9), hi); /* 512 bins per table */
    if (chan) {
        const vi ga = _mm512_i32gather_epi64(_mm512_castsi512_si256(ei), et->e, 8);
        const vi gb = _mm512_i32gather_epi64(_mm512_extracti64x4_epi64(ei, 1), et->e, 8);
        const vi even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        const vi lo = _mm512_permutex2var_epi32(ga, even, gb); /* start | freq << 16 */
        sy[*ns][0] = _mm512_and_si512(lo, _mm512_set1_epi32(0xffff));
        sy[*ns][1] = _mm512_srli_epi32(lo, 16);
        sy[*ns][2] = _mm512_permutex2var_epi32(ga, _mm512_add_epi32(even, vi_set1(1)), gb);
    } else {
        const vi cc = _mm512_i32gather_epi32(ei, vt->cc, 4);
        const vi c0 = _mm512_and_si512(cc, _mm512_set1_epi32(0xffff));
        sy[*ns][0] = c0;
        sy[*ns][1] = _mm512_sub_epi32(_mm512_srli_epi32(cc, 16), c0);
        sy[*ns][2] = _mm512_i32gather_epi32(_mm512_add_epi32(rcpbase, hi), (const void *)m->t, 4);
    }
    (*ns)++;
    if (rawb) {
        const uint32_t f = LKV_P2_PROB_ONE >> rawb;
        sy[*ns][0] = _mm512_mullo_epi32(_mm512_and_si512(u, vi_set1((int32_t)((1u << rawb) - 1u))),
                                        vi_set1((int32_t)f));
        sy[*ns][1] = vi_set1((int32_t)f);
        sy[*ns][2] = vi_set1((int32_t)lkv_p2_rcp(f));
        (*ns)++;
    }
}

/* The offsets, in uint32 from m->t, of each table's rcp[], as a 16-entry
 * permute table. */
static inline vi p2v_rcp_base(const lkv_p2_model *m)
{
    int32_t rb[16] = {0};
    for (unsigned c = 0; c < 2; c++)
        for (unsigned t = 0; t < 3; t++)
            rb[c * 3 + t] = (int32_t)(((const uint8_t *)&m->t[c][t] + offsetof(lkv_p2_table, rcp) -
                                       (const uint8_t *)m->t) /
                                      4);
    return _mm512_loadu_si512(rb);
}

/*
 * One block of a full slot through rANS, from its symbol-major points
 * (kt[i * 32 + l], i = 0..7, ct[l]): p2.c block_syms lane-wise, then the
 * puts in reverse. chan: version 4's channel piece pc (coordinate i of
 * block b from pc->ec[8b + i], the symbols of its level, whose tables have
 * m's ranges; the coset from pc->f1[b]), else m's tables through vt. 0 on success, 1 for a point
 * outside its table (never for encoder points), 2 when the words would go
 * below limit.
 */
SK_INLINE int p2v_encode_blk(const lkv_p2_model *m, const lkv_p2_vtab *vt, const int chan,
                             const lkv_p2_piece *pc, uint32_t b, const int16_t *kt,
                             const uint8_t *ct, uint32_t *state, uint8_t *base, size_t *wp,
                             size_t limit)
{
    p2v_tabs tb;
    p2v_tabs_init(m, &tb);
    const vi rbase = p2v_rcp_base(m), one = vi_set1(1);
    const lkv_p2_etab *const *ec = chan ? pc->ec + 8 * b : NULL;
    const uint32_t f1 = chan ? pc->f1[b] : m->coset_f1, b6 = m->t[0][0].b, b7 = m->t[0][1].b;
    const uint32_t cr0 = chan ? pc->rcp[b][0] : m->coset_rcp[0];
    const uint32_t cr1 = chan ? pc->rcp[b][1] : m->coset_rcp[1];
    vi sy[P2V_REGS][1 + 2 * 8][3];
    unsigned ns = 0;
    for (unsigned g = 0; g < P2V_REGS; g++) {
        const vi cv = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(ct + 16u * g)));
        const __mmask16 half = _mm512_test_epi32_mask(cv, cv);
        ns = 0;
        sy[g][0][0] = _mm512_maskz_mov_epi32(half, vi_set1((int32_t)(LKV_P2_PROB_ONE - f1)));
        sy[g][0][1] = _mm512_mask_blend_epi32(half, vi_set1((int32_t)(LKV_P2_PROB_ONE - f1)),
                                              vi_set1((int32_t)f1));
        sy[g][0][2] = _mm512_mask_blend_epi32(half, vi_set1((int32_t)cr0), vi_set1((int32_t)cr1));
        ns = 1;
        vi ti = _mm512_maskz_mov_epi32(half, vi_set1(3)), par = _mm512_setzero_si512();
        const vi jlo0 = _mm512_permutexvar_epi32(ti, tb.jlo),
                 n0 = _mm512_permutexvar_epi32(ti, tb.n);
        const vi bb0 = _mm512_permutexvar_epi32(ti, tb.b),
                 rb0 = _mm512_permutexvar_epi32(ti, rbase);
        for (uint32_t i = 0; i < 7; i++) {
            const vi k = _mm512_cvtepi16_epi32(
                _mm256_loadu_si256((const __m256i *)(kt + i * LKV_P2_LANES + 16u * g)));
            const vi u = _mm512_sub_epi32(k, jlo0);
            if (_mm512_cmpge_epu32_mask(u, n0))
                return 1;
            par = _mm512_xor_si512(par, _mm512_and_si512(k, one));
            p2v_coord_syms(m, vt, chan ? ec[i] : NULL, chan, ti, rb0, bb0, b6, u, sy[g], &ns);
        }
        const vi k7 = _mm512_cvtepi16_epi32(
            _mm256_loadu_si256((const __m256i *)(kt + 7 * LKV_P2_LANES + 16u * g)));
        if (_mm512_test_epi32_mask(_mm512_xor_si512(k7, par), one))
            return 1;
        ti = _mm512_add_epi32(ti, _mm512_add_epi32(par, one));
        const vi u = _mm512_sub_epi32(_mm512_srai_epi32(_mm512_sub_epi32(k7, par), 1),
                                      _mm512_permutexvar_epi32(ti, tb.jlo));
        if (_mm512_cmpge_epu32_mask(u, _mm512_permutexvar_epi32(ti, tb.n)))
            return 1;
        p2v_coord_syms(m, vt, chan ? ec[7] : NULL, chan, ti, _mm512_permutexvar_epi32(ti, rbase),
                       _mm512_permutexvar_epi32(ti, tb.b), b7, u, sy[g], &ns);
    }
    vi x[P2V_REGS];
    for (unsigned g = 0; g < P2V_REGS; g++)
        x[g] = _mm512_loadu_si512(state + 16u * g);
    int ok = 1;
    for (unsigned s = ns; ok && s-- > 0;)
        for (unsigned g = P2V_REGS; ok && g-- > 0;)
            ok = p2v_put(&x[g], sy[g][s][0], sy[g][s][1], sy[g][s][2], base, wp, limit);
    for (unsigned g = 0; g < P2V_REGS; g++)
        _mm512_storeu_si512(state + 16u * g, x[g]);
    return ok ? 0 : 2;
}

/* lkv_p2_kernels.encode_block: one instance per mode, so the rotated one
 * is the code it was before the channel mode. */
static int p2v_encode_block(const lkv_p2_model *m, const lkv_p2_vtab *vt, const lkv_p2_piece *pc,
                            uint32_t b, const int16_t *kt, const uint8_t *ct, uint32_t *state,
                            uint8_t *base, size_t *wp, size_t limit)
{
    if (pc)
        return p2v_encode_blk(m, vt, 1, pc, b, kt, ct, state, base, wp, limit);
    return p2v_encode_blk(m, vt, 0, NULL, b, kt, ct, state, base, wp, limit);
}

#endif /* LKV_P2_AVX512_H */
