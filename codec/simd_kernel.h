/* SPDX-License-Identifier: Apache-2.0 */
/*
 * simd_kernel.h - the encode and decode kernels of the SIMD paths, written
 * once and compiled twice: by simd_avx2.c (8 lanes) and simd_avx512.c
 * (16 lanes). Not a public header; include it only from those two files,
 * after they have defined the primitives listed below.
 *
 * Design note: one vector per lane. A batch of LKV_L vectors is transposed
 * into buf[j] = coordinate j of every vector, so each step of ref.c becomes
 * the same fp32 operation applied lane-wise: the pairwise norm tree, the
 * true divisions, the butterfly (stages h = 1, 2, ... in order, kept in
 * registers up to SK_MAX_STAGES stages per pass), the box-constrained D_n
 * search with its tie rules as masked selects, the E8 distances summed in
 * index order. Nothing is reassociated and no FMA is ever formed (the build
 * uses -ffp-contract=off, and no fma intrinsic appears), so each lane
 * computes exactly the scalar path's values, and the bytes agree.
 *
 * E8 indices use 32-bit pieces for Q <= 127 (SK_Q_MAX): with B = 2Q + 1 and
 * C = 2Q, the integer-coset index is (X*B^4 + Y) / 2 and the half-integer
 * index M_a + X*(C^3*Q) + Y, where X, Y, B^4 and C^3*Q all fit in 32 bits;
 * the one 64-bit product per block is a widening 32x32 multiply. Decoding
 * splits the index back into X and Y (per ISA) and then extracts digits
 * with a multiply-high by floor(2^32/M) plus one correction step.
 * D4 indices stay below 2^44 for every Q (B^4 with B <= 2047), so D4 always
 * works on 64-bit lanes: v = (u0*B + u1)*B^2 + (u2*B + u3), two 22-bit
 * pieces and one widening multiply; decoding splits v by B^2 with an exact
 * double division. E8 with Q >= 128 ("big" route) has indices up to 88
 * bits: the same pieces give X, Y < 2^44 in 64-bit lanes, and only the
 * final X*K + Y (a 44x44-bit product), the bit packing and, when decoding,
 * one 128/64-bit division per block run per lane.
 *
 * Records are written and read by a bit accumulator that is the same for
 * every lane (all lanes sit at the same bit position), so it runs on 64-bit
 * vector lanes; only the final copy between the word scratch and the
 * records is per lane. A batch with a failing lane (NaN/Inf, norm overflow,
 * corrupt record) is handed to the scalar range kernel, which reports the
 * same first index and message as the scalar path.
 *
 * The kernels keep their scratch (sk_scratch: 64 KiB of coordinates plus
 * 22 KiB of record words at 16 lanes) on the stack, since the library may
 * not allocate; callers' threads need a stack of a few hundred KiB.
 *
 * Primitives the including file defines (all static inline):
 *   LKV_L            lanes (8 or 16); SK_MAX_STAGES butterfly stages per pass
 *   vf, vi, vm, vq   fp32 vector, int32 vector, lane mask, uint64 vector of
 *                    LKV_L/2 lanes (vq "even" holds lanes 0,2,4..; "odd" 1,3..)
 *   vf_set1 vf_add vf_sub vf_mul vf_div vf_sqrt vf_min vf_max vf_abs vf_rint
 *   vm_lt vm_gt vm_ge vm_ne (ordered fp compares) vm_and vm_or vm_andn(a & ~b)
 *   vm_gt_and(m, a, b) = m & (a > b), vm_eq_and(m, a, b) = m & (a == b)
 *   vm_any vm_bits vm_nonfinite vf_blend(m, t, f) vi_blend(m, t, f)
 *   vi_set1 vi_add vi_sub vi_mul(low 32) vi_and vi_srli1 vi_slli1
 *   vi_from_f(exact ints) vf_from_i vm_ieq vm_uge(unsigned) vi_mulhi(u32)
 *   vi_h_from_f(fp32 -> fp16 bits, RNE) vf_from_h(fp16 bits -> fp32)
 *   vq_set1 vq_load vq_store vq_or vq_and vq_add vq_sll vq_srl(count >= 64 -> 0)
 *   vq_even vq_odd vi_from_eo vq_uge_bits vq_nz_bits vm_from_bits
 *   vq_mul_e(a, b) vq_mul_o(a, b)  widening products of the even / odd lanes
 *   sk_split_by(e, o, m, &q, &r)   64-bit lanes / 32-bit lane m, for values
 *                                  below 2^44 and m, quotient below 2^22
 *   sk_idx64(X, K, Y, half, ma, &e, &o)      (X*K+Y)>>1, or ma+X*K+Y if half
 *   sk_split(c, e, o, &X, &Y, &half) -> bad lane bits (index >= codebook)
 *   sk_load_chunk(dt, rows, off, out)  LKV_L elements of LKV_L rows, transposed
 *   sk_store_chunk(dt, rows, cnt, off, in)
 */
#ifndef LKV_SIMD_KERNEL_H
#define LKV_SIMD_KERNEL_H

#include <string.h>

#define SK_Q_MAX 127u
/* Words of the longest record the vector writer packs (D4 at D = 1024,
 * Q = 1023: 256 indices of 43 bits; E8 records it packs have k <= 64), plus
 * one zero word read past the end. */
#define SK_MAX_WORDS ((LKV_DIM_MAX / 4u * 43u + LKV_FMT_REC_HEAD_BITS + 63u) / 64u + 2u)
#define SK_INLINE    static inline __attribute__((always_inline))

typedef struct sk_consts {
    uint32_t dim, n, nblocks, k, bits, rec_bytes, full_words, tail_bytes;
    uint32_t q, b, c, mag_b, mag_c, mag_q;
    uint32_t b4, c3q;      /* B^4, C^3*Q as 32 bits: the E8 Q <= 127 route  */
    uint32_t b2, c2, cq;   /* B^2, C^2, C*Q: below 2^22 for every Q        */
    uint64_t b4w, c3qw;    /* B^4, C^3*Q without truncation (below 2^44)  */
    uint64_t ma, codebook; /* M_a and the codebook size where they fit 64 bits
                            * (not E8 Q >= 128, which uses lkv_derived's) */
    uint64_t kmask;
    float qf, inv_sqrt_d, e8_margin;
} sk_consts;

typedef struct sk_scratch {
    vf buf[LKV_DIM_MAX];                 /* buf[j]: coordinate j of each lane */
    uint64_t words[SK_MAX_WORDS][LKV_L]; /* [w][slot]: record word w of a lane */
} sk_scratch;

/* Per-ISA pieces, defined by the including file after this header. */
static inline void sk_idx64(vi x, vi k, vi y, vm half, uint64_t ma, vq *e, vq *o);
static inline unsigned sk_split(const sk_consts *c, vq e, vq o, vi *x, vi *y, vm *half);
static inline void sk_split_by(vq e, vq o, vi m, vi *q, vi *r);
static inline void sk_load_chunk(lkv_dtype dt, const uint8_t *const *rows, uint32_t off, vf *out);
static inline void sk_store_chunk(lkv_dtype dt, uint8_t *const *rows, unsigned cnt, uint32_t off,
                                  const vf *in);

/* Where a lane's 64-bit word lives in words[w]: even lanes first. */
static inline unsigned sk_slot(unsigned lane)
{
    return (lane & 1u) * (LKV_L / 2u) + (lane >> 1);
}

/* floor(2^32 / m), capped so it fits 32 bits (m = 1); see sk_divmod. */
static inline uint32_t sk_magic(uint32_t m)
{
    const uint64_t v = (1ull << 32) / m;
    return v > 0xffffffffull ? 0xffffffffu : (uint32_t)v;
}

static void sk_setup(const lkv_derived *d, sk_consts *c)
{
    memset(c, 0, sizeof *c);
    c->dim = d->p.dim;
    c->n = d->n;
    c->nblocks = d->nblocks;
    c->k = d->k;
    c->bits = d->bits;
    c->rec_bytes = d->rec_bytes;
    c->full_words = d->rec_bytes / 8u;
    c->tail_bytes = d->rec_bytes % 8u;
    c->q = d->p.q;
    c->b = 2u * c->q + 1u;
    c->c = 2u * c->q;
    c->b4 = c->b * c->b * c->b * c->b;
    c->c3q = c->c * c->c * c->c * c->q;
    c->mag_b = sk_magic(c->b);
    c->mag_c = sk_magic(c->c);
    c->mag_q = sk_magic(c->q);
    c->b2 = c->b * c->b;
    c->c2 = c->c * c->c;
    c->cq = c->c * c->q;
    c->b4w = (uint64_t)c->b2 * c->b2;
    c->c3qw = (uint64_t)c->c2 * c->cq;
    c->ma = (uint64_t)d->e8_int_count;
    c->codebook = (uint64_t)d->codebook;
    c->kmask = c->k >= 64u ? ~0ull : (1ull << c->k) - 1u;
    c->qf = d->qf;
    c->inv_sqrt_d = d->inv_sqrt_d;
    /* lkv_e8_margin of cuda/lkv_cuda_block.cuh: 2^-13 + (Q + 2) 2^-21 */
    c->e8_margin = 1.220703125e-4f + (d->qf + 2.0f) * 4.76837158203125e-7f;
}

/* ------------------------------------------------------------------------ */
/* Walsh-Hadamard butterfly on lanes                                         */

enum { SK_FIRST = 1, SK_LAST = 2, SK_DEC = 4 };

/*
 * s consecutive stages h0, 2*h0, ... of the butterfly on the 2^s values
 * v[k*h0] kept in registers. The first pass of an encode divides by r
 * before stage 1 (u = x / r); the last pass multiplies by 1/sqrt(D) and
 * then either tracks max |y| (encode) or multiplies by r (decode), exactly
 * the order of ref.c.
 */
SK_INLINE void sk_group(vf *v, uint32_t h0, int s, int flags, vf pre, vf scale, vf post, vf *mx)
{
    vf x[1 << SK_MAX_STAGES];
    const int nv = 1 << s;
#pragma GCC unroll 16
    for (int k = 0; k < nv; k++) {
        x[k] = v[(uint32_t)k * h0];
        if ((flags & SK_FIRST) && !(flags & SK_DEC))
            x[k] = vf_div(x[k], pre);
    }
/* Pair p of stage h is (j, j + h) with j = (p / h) * 2h + p % h; the
 * masks only keep the compiler's bounds analysis of the unrolled,
 * not-yet-specialised loop quiet (they never change an index). */
#pragma GCC unroll 4
    for (int h = 1; h < nv; h <<= 1)
#pragma GCC unroll 8
        for (int p = 0; p < nv / 2; p++) {
            const int j = ((p / h) * 2 * h + p % h) & ((1 << SK_MAX_STAGES) - 1);
            const int jh = (j + h) & ((1 << SK_MAX_STAGES) - 1);
            const vf a = x[j], b = x[jh];
            x[j] = vf_add(a, b);
            x[jh] = vf_sub(a, b);
        }
#pragma GCC unroll 16
    for (int k = 0; k < nv; k++) {
        if (flags & SK_LAST) {
            x[k] = vf_mul(x[k], scale);
            if (flags & SK_DEC)
                x[k] = vf_mul(x[k], post);
            else
                *mx = vf_max(*mx, vf_abs(x[k]));
        }
        v[(uint32_t)k * h0] = x[k];
    }
}

SK_INLINE void sk_pass(vf *v, uint32_t dim, uint32_t h0, int s, int flags, vf pre, vf scale,
                       vf post, vf *mx)
{
    const uint32_t span = h0 << s;
    for (uint32_t base = 0; base < dim; base += span)
        for (uint32_t j = 0; j < h0; j++)
            sk_group(v + base + j, h0, s, flags, pre, scale, post, mx);
}

/* One pass with compile-time stage count and flags, so that sk_group's
 * values stay in registers. */
#define SK_PASS_CASES(FL)                                                           \
    switch (s) {                                                                    \
    case 1: sk_pass(v, dim, h0, 1, (FL), pre, scale, post, mx); break;              \
    case 2: sk_pass(v, dim, h0, 2, (FL), pre, scale, post, mx); break;              \
    case 3: sk_pass(v, dim, h0, 3, (FL), pre, scale, post, mx); break;              \
    default: sk_pass(v, dim, h0, SK_MAX_STAGES, (FL), pre, scale, post, mx); break; \
    }

/* The whole butterfly: passes of at most SK_MAX_STAGES stages. */
SK_INLINE void sk_fwht(vf *v, uint32_t dim, const int dec, vf pre, vf scale, vf post, vf *mx)
{
    const int df = dec ? SK_DEC : 0;
    uint32_t h0 = 1;
    while (h0 < dim) {
        int s = 0;
        while (s < SK_MAX_STAGES && (h0 << s) < dim)
            s++;
        const int first = h0 == 1, last = (h0 << s) >= dim;
        if (first && last)
            SK_PASS_CASES(SK_FIRST | SK_LAST | df)
        else if (first)
            SK_PASS_CASES(SK_FIRST | df)
        else if (last)
            SK_PASS_CASES(SK_LAST | df)
        else
            SK_PASS_CASES(df)
        h0 <<= s;
    }
}

/* ------------------------------------------------------------------------ */
/* Closest point (docs/codec.md section 3), lane-wise                        */

/*
 * D_n in the box [lo, hi]^n; f receives integer-valued floats. Follows
 * ref.c's dn_box step by step: the toward-move search keeps the first lane
 * of the largest |d| (strict >), the away-move fallback the first of the
 * smallest |d| (strict <); only lanes with an odd sum move.
 */
SK_INLINE void sk_dnbox(const vf *y, int n, vf lo, vf hi, vf *f)
{
    const vf zero = vf_set1(0.0f), one = vf_set1(1.0f), mone = vf_set1(-1.0f);
    vf d[8], sum = zero;
#pragma GCC unroll 16
    for (int i = 0; i < n; i++) {
        /* ref.c clamps with compares; min/max differ only in the sign of a
         * zero (hi = 0 when Q = 1), which no later step can observe: d's
         * sign test is d >= 0 and every other use is squared, added to a
         * nonzero number or converted to an integer. */
        const vf r = vf_min(vf_max(vf_rint(y[i]), lo), hi);
        f[i] = r;
        d[i] = vf_sub(y[i], r);
        sum = vf_add(sum, r); /* small integers: exact in any order */
    }
    const vm odd = vm_ieq(vi_and(vi_from_f(sum), vi_set1(1)), vi_set1(1));
    if (!vm_any(odd))
        return;
    /* Toward y means +1 when d >= 0 (also -0.0), else -1; since f is an
     * integer already in [lo, hi], that move stays in the box exactly when
     * f is not the bound it moves to: f != (d >= 0 ? hi : lo). */
    vf best_abs = mone, best_i = mone, best_d = zero;
#pragma GCC unroll 16
    for (int i = 0; i < n; i++) {
        const vm ok = vm_ne(f[i], vf_blend(vm_ge(d[i], zero), hi, lo));
        const vf a = vf_abs(d[i]);
        const vm take = vm_gt_and(ok, a, best_abs);
        best_abs = vf_blend(take, a, best_abs);
        best_i = vf_blend(take, vf_set1((float)i), best_i);
        best_d = vf_blend(take, d[i], best_d);
    }
    vf dir = vf_blend(vm_ge(best_d, zero), one, mone);
    const vm none = vm_and(odd, vm_lt(best_abs, zero));
    if (vm_any(none)) {
        /* No toward move fits: move away on the first smallest |d|. */
        vf small = vf_set1(INFINITY), fb_i = zero, fb_d = zero;
#pragma GCC unroll 16
        for (int i = 0; i < n; i++) {
            const vf a = vf_abs(d[i]);
            const vm take = vm_lt(a, small);
            small = vf_blend(take, a, small);
            fb_i = vf_blend(take, vf_set1((float)i), fb_i);
            fb_d = vf_blend(take, d[i], fb_d);
        }
        best_i = vf_blend(none, fb_i, best_i);
        dir = vf_blend(none, vf_blend(vm_ge(fb_d, zero), mone, one), dir);
    }
#pragma GCC unroll 16
    for (int i = 0; i < n; i++) {
        const vm hit = vm_eq_and(odd, best_i, vf_set1((float)i));
        f[i] = vf_blend(hit, vf_add(f[i], dir), f[i]);
    }
}

/* E8 in [-Q, Q]^8: g receives the chosen coset's integer part (a, or b
 * with p = b + 1/2), half the lanes that chose the half-integer coset. */
SK_INLINE void sk_e8(const vf *z, vf qf, vf *g, vm *half)
{
    const vf h = vf_set1(0.5f), lo = vf_sub(vf_set1(0.0f), qf);
    vf a[8], b[8], ym[8];
    sk_dnbox(z, 8, lo, qf, a);
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++)
        ym[i] = vf_sub(z[i], h);
    sk_dnbox(ym, 8, lo, vf_sub(qf, vf_set1(1.0f)), b);
    vf da = vf_set1(0.0f), db = da;
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++) {
        const vf ea = vf_sub(z[i], a[i]);
        const vf eb = vf_sub(z[i], vf_add(b[i], h));
        da = vf_add(da, vf_mul(ea, ea));
        db = vf_add(db, vf_mul(eb, eb));
    }
    *half = vm_gt(da, db); /* ref.c: integer coset when da <= db; both finite */
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++)
        g[i] = vf_blend(*half, b[i], a[i]);
}

/*
 * The same points in fewer steps: the keyed search and the coset estimate
 * of lkv_e8_closest in cuda/lkv_cuda_block.cuh, whose design note says why
 * they are exact. Lanes outside their conditions (about 1 block in 1000)
 * are redone by sk_dnbox/sk_e8 above, which mirror ref.c.
 */

/* Keys of one candidate: f = rint(clamp(y)), k = clamp(y) - f; returns
 * max |k|, the sum of f in *sum and, with est, sum |k| and the clamp
 * excess sum (|y| - |clamp(y)|) in est[0], est[1]. */
SK_INLINE vf sk_keys(const vf *y, int n, vf lo, vf hi, vf *f, vf *k, vf *sum, vf *est)
{
    vf m = vf_set1(0.0f), s = m, sk = m, sx = m;
#pragma GCC unroll 16
    for (int i = 0; i < n; i++) {
        const vf yc = vf_min(vf_max(y[i], lo), hi);
        f[i] = vf_rint(yc);
        k[i] = vf_sub(yc, f[i]);
        const vf a = vf_abs(k[i]);
        m = vf_max(m, a);
        s = vf_add(s, f[i]);
        if (est) {
            sk = vf_add(sk, a);
            sx = vf_add(sx, vf_sub(vf_abs(y[i]), vf_abs(yc)));
        }
    }
    *sum = s;
    if (est) {
        est[0] = sk;
        est[1] = sx;
    }
    return m;
}

/* The parity fix of the odd lanes at their first |k| == m, toward y. */
SK_INLINE void sk_fix(vf *f, const vf *k, vf m, vm odd, int n)
{
    const vf zero = vf_set1(0.0f), one = vf_set1(1.0f), mone = vf_set1(-1.0f);
    vm todo = odd;
#pragma GCC unroll 16
    for (int i = 0; i < n; i++) {
        const vm hit = vm_eq_and(todo, vf_abs(k[i]), m);
        todo = vm_andn(todo, hit);
        f[i] = vf_blend(hit, vf_add(f[i], vf_blend(vm_ge(k[i], zero), one, mone)), f[i]);
    }
}

SK_INLINE vm sk_odd(vf sum)
{
    return vm_ieq(vi_and(vi_from_f(sum), vi_set1(1)), vi_set1(1));
}

/* As sk_e8; margin as lkv_e8_margin. */
SK_INLINE void sk_e8_fast(const vf *z, vf qf, vf margin, vf *g, vm *half)
{
    const vf zero = vf_set1(0.0f), one = vf_set1(1.0f), two = vf_set1(2.0f);
    const vf lo = vf_sub(zero, qf);
    vf fa[8], ka[8], fb[8], kb[8], ym[8], est[2], sa, sb;
    const vf ma = sk_keys(z, 8, lo, qf, fa, ka, &sa, est);
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++)
        ym[i] = vf_sub(z[i], vf_set1(0.5f));
    const vf mb = sk_keys(ym, 8, lo, vf_sub(qf, one), fb, kb, &sb, NULL);
    const vm oa = sk_odd(sa), ob = sk_odd(sb);
    vf delta = vf_sub(vf_sub(est[0], est[1]), two);
    delta = vf_blend(oa, vf_add(delta, vf_sub(one, vf_mul(two, ma))), delta);
    delta = vf_blend(ob, vf_sub(delta, vf_sub(one, vf_mul(two, mb))), delta);
    const unsigned slow = vm_bits(vm_eq_and(oa, ma, zero)) | vm_bits(vm_eq_and(ob, mb, zero)) |
                          vm_bits(vm_gt(est[1], one)) |
                          (vm_bits(vm_gt(vf_abs(delta), margin)) ^ ((1u << LKV_L) - 1u));
    const vm h = vm_gt(delta, zero);
    const vm odd = vm_or(vm_and(h, ob), vm_andn(oa, h));
    vf k[8];
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++) {
        g[i] = vf_blend(h, fb[i], fa[i]);
        k[i] = vf_blend(h, kb[i], ka[i]);
    }
    sk_fix(g, k, vf_blend(h, mb, ma), odd, 8);
    *half = h;
    if (slow) {
        vf g2[8];
        vm h2;
        sk_e8(z, qf, g2, &h2);
        const vm sm = vm_from_bits(slow);
#pragma GCC unroll 16
        for (int i = 0; i < 8; i++)
            g[i] = vf_blend(sm, g2[i], g[i]);
        *half = vm_or(vm_andn(h, sm), vm_and(h2, sm));
    }
}

/* As sk_dnbox(z, 4, -Q, Q, g). */
SK_INLINE void sk_d4_fast(const vf *z, vf qf, vf *g)
{
    const vf lo = vf_sub(vf_set1(0.0f), qf);
    vf k[4], s;
    const vf m = sk_keys(z, 4, lo, qf, g, k, &s, NULL);
    const vm odd = sk_odd(s);
    sk_fix(g, k, m, odd, 4);
    const vm slow = vm_eq_and(odd, m, vf_set1(0.0f));
    if (vm_any(slow)) {
        vf g2[4];
        sk_dnbox(z, 4, lo, qf, g2);
#pragma GCC unroll 16
        for (int i = 0; i < 4; i++)
            g[i] = vf_blend(slow, g2[i], g[i]);
    }
}

/* ------------------------------------------------------------------------ */
/* Record words                                                              */

typedef struct sk_writer {
    vq acc_e, acc_o;
    uint32_t nacc, w;
} sk_writer;

/* Appends k bits per lane, LSB first. */
SK_INLINE void sk_put(sk_writer *wr, sk_scratch *sc, vq e, vq o, uint32_t k)
{
    wr->acc_e = vq_or(wr->acc_e, vq_sll(e, wr->nacc));
    wr->acc_o = vq_or(wr->acc_o, vq_sll(o, wr->nacc));
    wr->nacc += k;
    if (wr->nacc >= 64u) {
        vq_store(&sc->words[wr->w][0], wr->acc_e);
        vq_store(&sc->words[wr->w][LKV_L / 2], wr->acc_o);
        wr->w++;
        wr->nacc -= 64u;
        wr->acc_e = vq_srl(e, k - wr->nacc);
        wr->acc_o = vq_srl(o, k - wr->nacc);
    }
}

/* k bits at bit position pos of every lane's record. */
SK_INLINE void sk_get(const sk_consts *c, const sk_scratch *sc, uint32_t pos, vq *e, vq *o)
{
    const uint32_t w = pos >> 6, off = pos & 63u;
    const vq mask = vq_set1(c->kmask);
    *e = vq_and(vq_or(vq_srl(vq_load(&sc->words[w][0]), off),
                      vq_sll(vq_load(&sc->words[w + 1][0]), 64u - off)),
                mask);
    *o = vq_and(vq_or(vq_srl(vq_load(&sc->words[w][LKV_L / 2]), off),
                      vq_sll(vq_load(&sc->words[w + 1][LKV_L / 2]), 64u - off)),
                mask);
}

/* ------------------------------------------------------------------------ */
/* Encode                                                                    */

/* Loads a batch into sc->buf and returns its sums of squares (pairwise
 * tree of ref.c); *bad receives the lanes holding NaN/Inf. */
static vf sk_load_norm(const sk_consts *c, lkv_dtype dt, const uint8_t *const *rows, sk_scratch *sc,
                       unsigned *bad)
{
    const uint32_t dim = c->dim;
    vf *x = sc->buf;
    if (dim >= LKV_L) {
        vf part[LKV_DIM_MAX / LKV_L];
        vm nf = vm_lt(vf_set1(1.0f), vf_set1(0.0f)); /* all false */
        const uint32_t nch = dim / LKV_L;
        for (uint32_t ch = 0; ch < nch; ch++) {
            vf *xc = x + ch * LKV_L;
            sk_load_chunk(dt, rows, ch * LKV_L, xc);
            vf t[LKV_L / 2];
#pragma GCC unroll 16
            for (int i = 0; i < LKV_L / 2; i++) {
                nf = vm_or(nf, vm_or(vm_nonfinite(xc[2 * i]), vm_nonfinite(xc[2 * i + 1])));
                t[i] = vf_add(vf_mul(xc[2 * i], xc[2 * i]), vf_mul(xc[2 * i + 1], xc[2 * i + 1]));
            }
#pragma GCC unroll 16
            for (int len = LKV_L / 2; len > 1; len /= 2)
#pragma GCC unroll 16
                for (int i = 0; i < len / 2; i++)
                    t[i] = vf_add(t[2 * i], t[2 * i + 1]);
            part[ch] = t[0];
        }
        for (uint32_t len = nch; len > 1; len /= 2)
            for (uint32_t i = 0; i < len / 2; i++)
                part[i] = vf_add(part[2 * i], part[2 * i + 1]);
        *bad = vm_bits(nf);
        return part[0];
    }
    /* Fewer coordinates than lanes (D = 4 or 8): transpose element-wise. */
    float tmp[LKV_L];
    *bad = 0;
    for (unsigned l = 0; l < LKV_L; l++) {
        uint32_t bad_elem = 0;
        if (!lkv_load_vec(dt, rows[l], 0, dim, tmp, &bad_elem)) {
            *bad |= 1u << l;
            memset(tmp, 0, sizeof tmp);
        }
        for (uint32_t j = 0; j < dim; j++)
            ((float *)&x[j])[l] = tmp[j];
    }
    vf t[LKV_L / 2];
    uint32_t len = dim / 2; /* >= 2: dim is 4 or 8 here */
    t[0] = vf_set1(0.0f);
    for (uint32_t i = 0; i < len; i++)
        t[i] = vf_add(vf_mul(x[2 * i], x[2 * i]), vf_mul(x[2 * i + 1], x[2 * i + 1]));
    for (; len > 1; len /= 2)
        for (uint32_t i = 0; i < len / 2; i++)
            t[i] = vf_add(t[2 * i], t[2 * i + 1]);
    return t[0];
}

/* Loads a batch into sc->buf and returns each lane's r = max(norm, 2^-23);
 * *bad receives the lanes holding NaN/Inf. */
SK_INLINE vf sk_load_rn(const sk_consts *c, lkv_dtype dt, const uint8_t *const *rows,
                        sk_scratch *sc, unsigned *bad)
{
    const vf ss = sk_load_norm(c, dt, rows, sc, bad);
    const vf eps = vf_set1(LKV_EPS);
    const vf r = vf_sqrt(ss);
    return vf_blend(vm_ge(r, eps), r, eps);
}

/* sk_load_rn, and *r16 receives r's fp16 bits; *bad also the lanes whose
 * r16 overflows. */
SK_INLINE vf sk_load_r(const sk_consts *c, lkv_dtype dt, const uint8_t *const *rows, sk_scratch *sc,
                       vi *r16, unsigned *bad)
{
    const vf r = sk_load_rn(c, dt, rows, sc, bad);
    *r16 = vi_h_from_f(r);
    *bad |= vm_bits(vm_ieq(*r16, vi_set1(LKV_F16_INF_BITS)));
    return r;
}

/*
 * Big route (E8, Q >= 128): per block, X and Y (64-bit lanes) and the coset
 * lanes are parked in the block's own buf slots, which the search has
 * already consumed: u64 [0, L) = X (even lanes, then odd), [L, 2L) = Y,
 * then a 32-bit lane mask of the half-integer coset.
 */
SK_INLINE void sk_park_xy(sk_scratch *sc, uint32_t blk, vq xe, vq xo, vq ye, vq yo, unsigned half)
{
    uint8_t *slot = (uint8_t *)&sc->buf[blk * 8u];
    vq_store((uint64_t *)slot, xe);
    vq_store((uint64_t *)(slot + 4u * LKV_L), xo);
    vq_store((uint64_t *)(slot + 8u * LKV_L), ye);
    vq_store((uint64_t *)(slot + 12u * LKV_L), yo);
    memcpy(slot + 16u * LKV_L, &half, 4);
}

/* Big route: LSB-first writer of up to 64 bits at a time into one record. */
typedef struct sk_bigw {
    uint8_t *rec;
    lkv_u128 acc;
    uint32_t nacc, byte;
} sk_bigw;

static inline void sk_bigw_put(sk_bigw *w, uint64_t v, uint32_t k)
{
    w->acc |= (lkv_u128)v << w->nacc;
    w->nacc += k;
    if (w->nacc >= 64u) {
        const uint64_t lo = (uint64_t)w->acc;
        memcpy(w->rec + w->byte, &lo, 8);
        w->byte += 8u;
        w->acc >>= 64;
        w->nacc -= 64u;
    }
}

/* Big route: indices (X*K + Y) and records of the first cnt lanes. */
static void sk_write_big(const lkv_derived *d, const sk_consts *c, const sk_scratch *sc, vi r16,
                         vi m16, unsigned cnt, uint8_t *dst)
{
    int32_t rr[LKV_L], mm[LKV_L];
    memcpy(rr, &r16, sizeof rr);
    memcpy(mm, &m16, sizeof mm);
    for (unsigned l = 0; l < cnt; l++) {
        sk_bigw w = {dst + (size_t)l * c->rec_bytes, 0, 0, 0};
        sk_bigw_put(&w, (uint64_t)(uint32_t)rr[l] | ((uint64_t)(uint32_t)mm[l] << 16),
                    LKV_FMT_REC_HEAD_BITS);
        const unsigned sl = sk_slot(l);
        for (uint32_t blk = 0; blk < c->nblocks; blk++) {
            const uint8_t *slot = (const uint8_t *)&sc->buf[blk * 8u];
            uint64_t x, y;
            unsigned half;
            memcpy(&x, slot + 8u * sl, 8);
            memcpy(&y, slot + 8u * (LKV_L + sl), 8);
            memcpy(&half, slot + 16u * LKV_L, 4);
            const lkv_u128 idx = (half >> l) & 1u ? d->e8_int_count + ((lkv_u128)x * c->c3qw + y)
                                                  : ((lkv_u128)x * c->b4w + y) >> 1;
            sk_bigw_put(&w, (uint64_t)idx, 64);
            sk_bigw_put(&w, (uint64_t)(idx >> 64), c->k - 64u); /* k8 > 64 for Q >= 128 */
        }
        for (uint32_t b = 0; w.byte < c->rec_bytes; b++, w.byte++)
            w.rec[w.byte] = (uint8_t)(w.acc >> (8u * b));
    }
}

/*
 * Encodes cnt <= LKV_L vectors starting at src into records at dst.
 * Returns the failing lanes (NaN/Inf or norm overflow) among the first cnt;
 * then nothing useful has been written.
 */
static unsigned sk_enc_batch(const lkv_derived *d, const sk_consts *c, lkv_dtype dt,
                             const uint8_t *src, unsigned cnt, uint8_t *dst, sk_scratch *sc)
{
    const int big = c->n == 8 && c->q > SK_Q_MAX;
    const size_t vbytes = (size_t)c->dim * lkv_dtype_size(dt);
    const unsigned live = cnt >= 32u ? ~0u : (1u << cnt) - 1u;
    const uint8_t *rows[LKV_L];
    for (unsigned l = 0; l < LKV_L; l++)
        rows[l] = src + (l < cnt ? l : 0u) * vbytes; /* spare lanes repeat vector 0 */

    unsigned bad = 0;
    vi r16;
    const vf r = sk_load_r(c, dt, rows, sc, &r16, &bad);
    if (bad & live)
        return bad & live;
    const vf eps = vf_set1(LKV_EPS);

    vf m = vf_set1(0.0f);
    sk_fwht(sc->buf, c->dim, 0, r, vf_set1(c->inv_sqrt_d), r, &m);
    m = vf_blend(vm_ge(m, eps), m, eps);
    const vi m16 = vi_h_from_f(m);
    const vf qf = vf_set1(c->qf);
    const vf s = vf_div(vf_from_h(m16), qf);
    const vf margin = vf_set1(c->e8_margin);

    sk_writer wr;
    const vi hdr = vi_add(r16, vi_slli1(m16, 16));
    wr.acc_e = vq_even(hdr);
    wr.acc_o = vq_odd(hdr);
    wr.nacc = LKV_FMT_REC_HEAD_BITS;
    wr.w = 0;
    const vi qv = vi_set1((int32_t)c->q), bv = vi_set1((int32_t)c->b);
    for (uint32_t blk = 0; blk < c->nblocks; blk++) {
        const vf *yb = sc->buf + blk * c->n;
        vf z[8], g[8];
        vi gi[8];
        vq e, o;
        if (c->n == 8) {
#pragma GCC unroll 16
            for (int i = 0; i < 8; i++)
                z[i] = vf_div(yb[i], s);
            vm half;
            sk_e8_fast(z, qf, margin, g, &half);
#pragma GCC unroll 16
            for (int i = 0; i < 8; i++)
                gi[i] = vi_add(vi_from_f(g[i]), qv);
            if (big) { /* X = (g0*M + g1)*M^2 + (g2*M + g3), Y likewise */
                const vi m1 = vi_blend(half, vi_set1((int32_t)c->c), bv);
                const vi m2 = vi_blend(half, qv, bv);
                const vi m1sq = vi_blend(half, vi_set1((int32_t)c->c2), vi_set1((int32_t)c->b2));
                const vi m3 = vi_blend(half, vi_set1((int32_t)c->cq), vi_set1((int32_t)c->b2));
                const vi a0 = vi_add(vi_mul(gi[0], m1), gi[1]);
                const vi a1 = vi_add(vi_mul(gi[2], m1), gi[3]);
                const vi a2 = vi_add(vi_mul(gi[4], m1), gi[5]);
                const vi a3 = vi_add(vi_mul(gi[6], m2), vi_blend(half, vi_srli1(gi[7], 1), gi[7]));
                sk_park_xy(sc, blk, vq_add(vq_mul_e(a0, m1sq), vq_even(a1)),
                           vq_add(vq_mul_o(a0, m1sq), vq_odd(a1)),
                           vq_add(vq_mul_e(a2, m3), vq_even(a3)),
                           vq_add(vq_mul_o(a2, m3), vq_odd(a3)), vm_bits(half));
                continue;
            }
            const vi m1 = vi_blend(half, vi_set1((int32_t)c->c), bv);
            const vi m2 = vi_blend(half, qv, bv);
            const vi kk = vi_blend(half, vi_set1((int32_t)c->c3q), vi_set1((int32_t)c->b4));
            vi x = vi_add(vi_mul(gi[0], m1), gi[1]);
            x = vi_add(vi_mul(x, m1), gi[2]);
            x = vi_add(vi_mul(x, m1), gi[3]);
            vi y = vi_add(vi_mul(gi[4], m1), gi[5]);
            y = vi_add(vi_mul(y, m1), gi[6]);
            y = vi_add(vi_mul(y, m2), vi_blend(half, vi_srli1(gi[7], 1), gi[7]));
            sk_idx64(x, kk, y, half, c->ma, &e, &o);
        } else {
#pragma GCC unroll 16
            for (int i = 0; i < 4; i++)
                z[i] = vf_div(yb[i], s);
            sk_d4_fast(z, qf, g);
#pragma GCC unroll 16
            for (int i = 0; i < 4; i++)
                gi[i] = vi_add(vi_from_f(g[i]), qv);
            const vi b2v = vi_set1((int32_t)c->b2);
            const vi a0 = vi_add(vi_mul(gi[0], bv), gi[1]);
            const vi a1 = vi_add(vi_mul(gi[2], bv), gi[3]);
            e = vq_srl(vq_add(vq_mul_e(a0, b2v), vq_even(a1)), 1);
            o = vq_srl(vq_add(vq_mul_o(a0, b2v), vq_odd(a1)), 1);
        }
        sk_put(&wr, sc, e, o, c->k);
    }
    if (big) {
        sk_write_big(d, c, sc, r16, m16, cnt, dst);
        return 0;
    }
    if (wr.nacc) {
        vq_store(&sc->words[wr.w][0], wr.acc_e);
        vq_store(&sc->words[wr.w][LKV_L / 2], wr.acc_o);
    }
    for (unsigned l = 0; l < cnt; l++) {
        uint8_t *rec = dst + (size_t)l * c->rec_bytes;
        const unsigned slot = sk_slot(l);
        for (uint32_t w = 0; w < c->full_words; w++)
            memcpy(rec + 8u * w, &sc->words[w][slot], 8);
        if (c->tail_bytes)
            memcpy(rec + 8u * c->full_words, &sc->words[c->full_words][slot], c->tail_bytes);
    }
    return 0;
}

static lkv_status sk_encode(const lkv_derived *d, lkv_dtype dt, const void *src, size_t n,
                            uint8_t *dst, lkv_diag *diag)
{
    sk_consts c;
    sk_setup(d, &c);
    sk_scratch sc;
    const size_t vbytes = (size_t)c.dim * lkv_dtype_size(dt);
    for (size_t i = 0; i < n; i += LKV_L) {
        const unsigned cnt = n - i < LKV_L ? (unsigned)(n - i) : LKV_L;
        if (n - i > 2u * LKV_L) /* the next batch's rows, while this one computes */
            for (size_t b = 0; b < LKV_L * vbytes; b += 64)
                __builtin_prefetch((const uint8_t *)src + (i + LKV_L) * vbytes + b);
        if (sk_enc_batch(d, &c, dt, (const uint8_t *)src + i * vbytes, cnt, dst + i * c.rec_bytes,
                         &sc)) {
            const lkv_status st = lkv_encode_scalar_range(d, dt, src, i, i + cnt, dst, diag);
            if (st != LKV_OK)
                return st;
        }
    }
    return LKV_OK;
}

/* ------------------------------------------------------------------------ */
/* Decode                                                                    */

/* q, r = x / m, x % m per lane, for x < 2^32 and magic = sk_magic(m): the
 * estimate is q or q - 1, and one step corrects it. */
SK_INLINE vi sk_divmod(vi x, vi m, vi magic, vi *rem)
{
    vi q = vi_mulhi(x, magic);
    vi r = vi_sub(x, vi_mul(q, m));
    const vm over = vm_uge(r, m);
    q = vi_blend(over, vi_add(q, vi_set1(1)), q);
    *rem = vi_blend(over, vi_sub(r, m), r);
    return q;
}

/* Big route: k bits at bit pos of a record copied into a zero-padded
 * buffer (k <= 88, so two 64-bit windows and a byte cover it). */
static inline lkv_u128 sk_big_get(const uint8_t *buf, uint32_t pos, uint32_t k)
{
    const uint32_t byte = pos >> 3, off = pos & 7u;
    uint64_t w0, w1;
    memcpy(&w0, buf + byte, 8);
    memcpy(&w1, buf + byte + 8, 8);
    const uint64_t b2 = buf[byte + 16];
    const uint64_t lo = off ? (w0 >> off) | (w1 << (64u - off)) : w0;
    const uint64_t hi = off ? (w1 >> off) | (b2 << (64u - off)) : w1;
    const lkv_u128 v = (lkv_u128)lo | ((lkv_u128)hi << 64);
    return k >= 128u ? v : v & ((((lkv_u128)1) << k) - 1u);
}

/* Big route: parses each record's indices (lanes past cnt repeat lane 0),
 * splits P = 2*index (integer coset) or index - M_a into X = P / K and
 * Y = P % K per lane and parks them like sk_park_xy; the records' first 32
 * bits go to hdr. Returns the lanes with an index outside the codebook or
 * nonzero padding bits. */
static unsigned sk_read_big(const lkv_derived *d, const sk_consts *c, const uint8_t *src,
                            unsigned cnt, sk_scratch *sc, int32_t *hdr)
{
    unsigned bad = 0;
    uint8_t buf[(LKV_DIM_MAX / 8u * 88u + LKV_FMT_REC_HEAD_BITS) / 8u + 32u];
    for (uint32_t blk = 0; blk < c->nblocks; blk++)
        memset((uint8_t *)&sc->buf[blk * 8u] + 16u * LKV_L, 0, 4);
    for (unsigned l = 0; l < LKV_L; l++) {
        const uint8_t *rec = src + (size_t)(l < cnt ? l : 0u) * c->rec_bytes;
        const unsigned sl = sk_slot(l);
        memcpy(buf, rec, c->rec_bytes);
        memset(buf + c->rec_bytes, 0, 24);
        hdr[l] = (int32_t)((uint32_t)rec[0] | (uint32_t)rec[1] << 8 | (uint32_t)rec[2] << 16 |
                           (uint32_t)rec[3] << 24);
        if ((c->bits & 7u) && (rec[c->rec_bytes - 1u] >> (c->bits & 7u)))
            bad |= 1u << l;
        uint32_t pos = LKV_FMT_REC_HEAD_BITS;
        for (uint32_t blk = 0; blk < c->nblocks; blk++, pos += c->k) {
            lkv_u128 idx = sk_big_get(buf, pos, c->k);
            if (idx >= d->codebook) {
                bad |= 1u << l;
                idx = 0;
            }
            const unsigned half = idx >= d->e8_int_count;
            const lkv_u128 p = half ? idx - d->e8_int_count : idx << 1;
            const uint64_t k = half ? c->c3qw : c->b4w;
            const uint64_t x = (uint64_t)(p / k), y = (uint64_t)(p - (lkv_u128)x * k);
            uint8_t *slot = (uint8_t *)&sc->buf[blk * 8u];
            unsigned hb;
            memcpy(slot + 8u * sl, &x, 8);
            memcpy(slot + 8u * (LKV_L + sl), &y, 8);
            memcpy(&hb, slot + 16u * LKV_L, 4);
            hb |= half << l;
            memcpy(slot + 16u * LKV_L, &hb, 4);
        }
    }
    return bad;
}

/* E8 digits -> the block's coordinates times s, both routes: g[0..7] are
 * the digits (g[7] = h for the half-integer coset, whose w7 = 2h + the
 * parity of w0..w6), p = w - Q (+ 1/2), written 2p * 0.5 * s exactly as
 * the scalar decoder rounds it. */
SK_INLINE void sk_e8_scaled_point(vi *g, vm half, vi qv, vf s, vf *yb)
{
    const vi one = vi_set1(1);
    vi par = g[0];
#pragma GCC unroll 16
    for (int i = 1; i < 7; i++)
        par = vi_add(par, g[i]);
    g[7] = vi_blend(half, vi_add(vi_add(g[7], g[7]), vi_and(par, one)), g[7]);
    const vi hb = vi_blend(half, one, vi_set1(0));
    const vf half_f = vf_set1(0.5f);
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++) {
        const vi d = vi_sub(g[i], qv);
        yb[i] = vf_mul(vf_mul(vf_from_i(vi_add(vi_add(d, d), hb)), half_f), s);
    }
}

/* Decodes cnt <= LKV_L records at src into vectors at dst; returns the
 * lanes (among the first cnt) whose record is corrupt. */
static unsigned sk_dec_batch(const lkv_derived *d, const sk_consts *c, const uint8_t *src,
                             unsigned cnt, lkv_dtype dt, uint8_t *dst, sk_scratch *sc)
{
    const unsigned live = cnt >= 32u ? ~0u : (1u << cnt) - 1u;
    const uint32_t fw = c->full_words;
    const int big = c->n == 8 && c->q > SK_Q_MAX;
    unsigned bad = 0;
    vi hdr;
    if (big) {
        int32_t h[LKV_L];
        bad = sk_read_big(d, c, src, cnt, sc, h);
        memcpy(&hdr, h, sizeof hdr);
    }
    for (unsigned l = 0; l < LKV_L && !big; l++) {
        const uint8_t *rec = src + (size_t)(l < cnt ? l : 0u) * c->rec_bytes;
        const unsigned slot = sk_slot(l);
        for (uint32_t w = 0; w < fw; w++)
            memcpy(&sc->words[w][slot], rec + 8u * w, 8);
        sc->words[fw][slot] = 0;
        sc->words[fw + 1][slot] = 0;
        if (c->tail_bytes)
            memcpy(&sc->words[fw][slot], rec + 8u * fw, c->tail_bytes);
    }
    if (!big)
        hdr = vi_from_eo(vq_load(&sc->words[0][0]), vq_load(&sc->words[0][LKV_L / 2]));
    const vi r16 = vi_and(hdr, vi_set1(0xffff)), m16 = vi_srli1(hdr, 16);
    const vi lo_ok = vi_set1(LKV_F16_EPS_BITS), hi_bad = vi_set1(LKV_F16_INF_BITS);
    bad |= vm_bits(vm_or(
        vm_or(vm_uge(r16, hi_bad), vm_uge(m16, hi_bad)),
        vm_or(vm_uge(vi_sub(lo_ok, vi_set1(1)), r16), vm_uge(vi_sub(lo_ok, vi_set1(1)), m16))));
    if ((c->bits & 63u) && !big) { /* padding bits after the last index must be zero */
        const uint32_t w = (c->bits - 1u) >> 6;
        bad |= vq_nz_bits(vq_srl(vq_load(&sc->words[w][0]), c->bits & 63u),
                          vq_srl(vq_load(&sc->words[w][LKV_L / 2]), c->bits & 63u));
    }
    const vf qf = vf_set1(c->qf);
    const vf s = vf_div(vf_from_h(m16), qf);
    const vf half_f = vf_set1(0.5f);
    const vi qv = vi_set1((int32_t)c->q), bv = vi_set1((int32_t)c->b);
    const vi mag_b = vi_set1((int32_t)c->mag_b);
    uint32_t pos = LKV_FMT_REC_HEAD_BITS;
    for (uint32_t blk = 0; blk < c->nblocks; blk++, pos += c->k) {
        vq e, o;
        vf *yb = sc->buf + blk * c->n;
        vi g[8];
        if (big) {
            const uint8_t *slot = (const uint8_t *)yb;
            unsigned hbits;
            memcpy(&hbits, slot + 16u * LKV_L, 4);
            const vm half = vm_from_bits(hbits);
            const vi m1 = vi_blend(half, vi_set1((int32_t)c->c), bv);
            const vi g1 = vi_blend(half, vi_set1((int32_t)c->mag_c), mag_b);
            const vi m2 = vi_blend(half, qv, bv);
            const vi g2 = vi_blend(half, vi_set1((int32_t)c->mag_q), mag_b);
            const vi m1sq = vi_blend(half, vi_set1((int32_t)c->c2), vi_set1((int32_t)c->b2));
            const vi m3 = vi_blend(half, vi_set1((int32_t)c->cq), vi_set1((int32_t)c->b2));
            vi a0, a1, a2, a3;
            sk_split_by(vq_load((const uint64_t *)slot),
                        vq_load((const uint64_t *)(slot + 4u * LKV_L)), m1sq, &a0, &a1);
            sk_split_by(vq_load((const uint64_t *)(slot + 8u * LKV_L)),
                        vq_load((const uint64_t *)(slot + 12u * LKV_L)), m3, &a2, &a3);
            g[0] = sk_divmod(a0, m1, g1, &g[1]);
            g[2] = sk_divmod(a1, m1, g1, &g[3]);
            g[4] = sk_divmod(a2, m1, g1, &g[5]);
            g[6] = sk_divmod(a3, m2, g2, &g[7]);
            sk_e8_scaled_point(g, half, qv, s, yb);
            continue;
        }
        sk_get(c, sc, pos, &e, &o);
        if (c->n == 8) {
            vi x, y;
            vm half;
            bad |= sk_split(c, e, o, &x, &y, &half);
            const vi m1 = vi_blend(half, vi_set1((int32_t)c->c), bv);
            const vi g1 = vi_blend(half, vi_set1((int32_t)c->mag_c), mag_b);
            const vi m2 = vi_blend(half, qv, bv);
            const vi g2 = vi_blend(half, vi_set1((int32_t)c->mag_q), mag_b);
            x = sk_divmod(x, m1, g1, &g[3]);
            x = sk_divmod(x, m1, g1, &g[2]);
            g[0] = sk_divmod(x, m1, g1, &g[1]);
            y = sk_divmod(y, m2, g2, &g[7]);
            y = sk_divmod(y, m1, g1, &g[6]);
            g[4] = sk_divmod(y, m1, g1, &g[5]);
            sk_e8_scaled_point(g, half, qv, s, yb);
        } else {
            if (c->q <= SK_Q_MAX) { /* 2 * index < B^4 < 2^32: digits straight away */
                const vi idx = vi_from_eo(e, o);
                bad |= vm_bits(vm_uge(idx, vi_set1((int32_t)c->codebook)));
                vi v = vi_add(idx, idx);
                v = sk_divmod(v, bv, mag_b, &g[3]);
                v = sk_divmod(v, bv, mag_b, &g[2]);
                g[0] = sk_divmod(v, bv, mag_b, &g[1]);
            } else {
                vi a0, a1;
                bad |= vq_uge_bits(e, o, c->codebook);
                sk_split_by(vq_add(e, e), vq_add(o, o), vi_set1((int32_t)c->b2), &a0, &a1);
                g[0] = sk_divmod(a0, bv, mag_b, &g[1]);
                g[2] = sk_divmod(a1, bv, mag_b, &g[3]);
            }
#pragma GCC unroll 16
            for (int i = 0; i < 4; i++) {
                const vi pt = vi_sub(g[i], qv);
                yb[i] = vf_mul(vf_mul(vf_from_i(vi_add(pt, pt)), half_f), s);
            }
        }
    }
    if (bad & live)
        return bad & live;

    const vf r = vf_from_h(r16);
    vf unused = r;
    sk_fwht(sc->buf, c->dim, 1, r, vf_set1(c->inv_sqrt_d), r, &unused);

    const size_t vbytes = (size_t)c->dim * lkv_dtype_size(dt);
    if (c->dim >= LKV_L) {
        uint8_t *rows[LKV_L];
        for (unsigned l = 0; l < LKV_L; l++)
            rows[l] = dst + (l < cnt ? l : 0u) * vbytes;
        for (uint32_t ch = 0; ch < c->dim / LKV_L; ch++)
            sk_store_chunk(dt, rows, cnt, ch * LKV_L, sc->buf + ch * LKV_L);
    } else {
        float tmp[LKV_L];
        for (unsigned l = 0; l < cnt; l++) {
            for (uint32_t j = 0; j < c->dim; j++)
                tmp[j] = ((const float *)&sc->buf[j])[l];
            lkv_store_vec(dt, dst, l, c->dim, tmp);
        }
    }
    return 0;
}

static lkv_status sk_decode(const lkv_derived *d, const uint8_t *src, size_t n, lkv_dtype dt,
                            void *dst, lkv_diag *diag)
{
    sk_consts c;
    sk_setup(d, &c);
    sk_scratch sc;
    const size_t vbytes = (size_t)c.dim * lkv_dtype_size(dt);
    for (size_t i = 0; i < n; i += LKV_L) {
        const unsigned cnt = n - i < LKV_L ? (unsigned)(n - i) : LKV_L;
        if (n - i > 2u * LKV_L)
            for (size_t b = 0; b < LKV_L * c.rec_bytes; b += 64)
                __builtin_prefetch(src + (i + LKV_L) * c.rec_bytes + b);
        if (sk_dec_batch(d, &c, src + i * c.rec_bytes, cnt, dt, (uint8_t *)dst + i * vbytes, &sc)) {
            const lkv_status st = lkv_decode_scalar_range(d, src, i, i + cnt, dt, dst, diag);
            if (st != LKV_OK)
                return st;
        }
    }
    return LKV_OK;
}

#endif /* LKV_SIMD_KERNEL_H */
