/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_p2.h - codec profile 2 internals (docs/codec-v2.md, codec/FORMAT.md
 * version 2): the static per-(Q, D) entropy models and the rANS constants.
 *
 * Design note: a model is a pure function of Q and the piece's D, built by
 * integer arithmetic and a fixed sequence of IEEE fp64 operations (our own
 * exp, no libm), so every build on every machine gets the same integers. It
 * is rebuilt on each call (tens of microseconds) because the library keeps
 * no globals and allocates nothing. Not installed.
 */
#ifndef LKV_P2_H
#define LKV_P2_H

#include "lkv_codec_internal.h"

/* rANS: 32-bit state in [2^16, 2^32), 16-bit words, 15-bit probabilities. */
#define LKV_P2_PROB_BITS 15u
#define LKV_P2_PROB_ONE  (1u << LKV_P2_PROB_BITS)
#define LKV_P2_RANS_LOW  (1u << 16)
#define LKV_P2_LANES     32u
#define LKV_P2_NBINS_MAX 512u /* bins of one table; more points share bins */
#define LKV_P2_LUT_SHIFT 6u   /* decode lookup: one entry per 64 slots     */
#define LKV_P2_LUT_SIZE  (LKV_P2_PROB_ONE >> LKV_P2_LUT_SHIFT)

/*
 * One table: the points p2 = m*j + r (p2 = twice the lattice coordinate),
 * j = jlo .. jlo + n - 1. A point's offset u = j - jlo is coded as its bin
 * u >> b from the table, then b raw bits u & (2^b - 1) (uniform symbol).
 */
typedef struct lkv_p2_table {
    int32_t jlo;
    uint32_t n, b, nbins;
    uint32_t cum[LKV_P2_NBINS_MAX + 1]; /* cum[h] = start of bin h; cum[nbins] = ONE */
    uint32_t rcp[LKV_P2_NBINS_MAX];     /* floor((2^32 - 1) / freq): the encoder's
                                           division as a multiply and a fix-up  */
    uint16_t lut[LKV_P2_LUT_SIZE];      /* bin holding slot i << LUT_SHIFT        */
} lkv_p2_table;

/* The model of one piece (a power-of-two D). Table [c][0] codes coordinates
 * 0..6 of a block of coset c (0 integer, 1 half-integer); [c][1 + parity]
 * codes coordinate 7, whose parity the first seven fix. */
typedef struct lkv_p2_model {
    uint32_t q, dim, log2d, nblocks;
    uint32_t box;          /* L: integer coordinates in [-L, L], half ones in [-L+1/2, L-1/2] */
    uint32_t coset_f1;     /* frequency of the half-integer coset                         */
    uint32_t coset_rcp[2]; /* floor((2^32 - 1) / freq) of the two coset symbols       */
    uint32_t sym_block, sym_vec; /* rANS symbols per block and per vector             */
    float qf, box_f, out_scale;  /* fp32 Q, L, 4/D                                     */
    lkv_p2_table t[2][3];
    uint32_t level;                 /* a channel level 0..31, or LKV_P2_LEVEL_ROTATED            */
    double theta[2];                /* a level's Gaussian sums over the box's integer and
                                       half-integer points (lkv_p2_coset_f1); 0 when rotated */
    uint16_t est[LKV_P2_NBINS_MAX]; /* version 4's size estimate of a bin of t[0][0]:
                                       lkv_p2_est_cost of its frequency and raw bits */
} lkv_p2_model;

#define LKV_P2_LEVEL_ROTATED 0xffffffffu

/* floor((2^32 - 1) / f), f >= 1: with it x / f = floor(x * rcp / 2^32)
 * plus at most one correction, exactly, for every 32-bit x: rcp >= 2^32/f - 1
 * and x < 2^32 put the estimate above x/f - 1 (tests/codec/test_p2.c). */
static inline uint32_t lkv_p2_rcp(uint32_t f)
{
    return 0xffffffffu / f;
}

/* Builds the model of (q, dim), dim a power of two in 8..1024, q in 1..1023.
 * Returns 0 only if a table would exceed LKV_P2_NBINS_MAX (never, for valid
 * parameters; a test walks all of them). */
int lkv_p2_model_build(uint32_t q, uint32_t dim, lkv_p2_model *m);

/* The model of channel level `level` (0..31, lkv_p2_level) of (q, dim),
 * container version 4's channel mode: the same box, shape and tables as
 * lkv_p2_model_build's, of Gaussians of standard deviation
 * (Q/4) sqrt(dim) 2^(-level/2) (level log2(dim) has the rotated model's
 * tables), and theta set. 0 for a level out of range. */
int lkv_p2_model_build_level(uint32_t q, uint32_t dim, uint32_t level, lkv_p2_model *m);

/* rANS symbols per vector of a piece (the model's sym_vec), without
 * building the model: for buffer bounds. */
uint32_t lkv_p2_syms_per_vec(uint32_t q, uint32_t dim);

/* exp(-e) for e >= 0 in fixed-order fp64 (0 beyond e = 60); for tests. */
double lkv_p2_exp_neg(double e);

/* E8 closest point in the box: profile 1's rule (ref.c), exported so that
 * profile 2 uses the same one. Returns 1 for the half-integer coset. */
int lkv_ref_e8_box(const float *y, float q, int32_t *pt);

/*
 * The decode tables of the SIMD paths, derived from a model: for table
 * ti = c * 3 + tab and s = lut[i],
 *   lx[ti][i] = s | row << 9 | cum[s] << 16 | cum[s + 1] << 32 | cum[s + 2] << 48
 * (cum[s + 2] as 0xffff past the last bin), and
 *   cc[ti][s] = cum[s] | cum[s + 1] << 16.
 * cum[s] < 2^15 for a bin s and cum[s + 1] <= 2^15, so every field fits 16
 * bits (s < 2^9). One lookup then gives what the scalar walk reads from up
 * to four places.
 *
 * A lut window where some slot lies two or more bins past s (the tails of
 * the distribution, runs of bins of frequency 1 to a few) would need a walk
 * of up to 63 dependent steps. The first LKV_P2_FINE_ROWS such windows, the
 * coordinate 0..6 tables first, get a row of their own: row != 0 in their lx
 * entries, and for each slot i << LUT_SHIFT | o of the window, with s the
 * bin holding it,
 *   fx[row - 1][o] = s | cum[s] << 16 | cum[s + 1] << 32.
 * Windows left without a row (row 0) are walked through cc. About 68 KiB.
 */
#define LKV_P2_FINE_ROWS 64u
typedef struct lkv_p2_vtab {
    uint64_t lx[6][LKV_P2_LUT_SIZE];
    uint32_t cc[6][LKV_P2_NBINS_MAX];
    uint64_t fx[LKV_P2_FINE_ROWS][1u << LKV_P2_LUT_SHIFT];
} lkv_p2_vtab;

/* The SIMD lookups index a table as ti * 512 + i with one shift. (C++:
 * cuda/ reads this header through codec/backend/lkv_codec_p2.h.) */
#ifdef __cplusplus
static_assert(LKV_P2_LUT_SIZE == 512 && LKV_P2_NBINS_MAX == 512, "vtab rows of 512");
#else
_Static_assert(LKV_P2_LUT_SIZE == 512 && LKV_P2_NBINS_MAX == 512, "vtab rows of 512");
_Static_assert(LKV_P2_NBINS_MAX <= 1u << 9 && LKV_P2_FINE_ROWS < 1u << 7, "lx's s and row fields");
#endif

void lkv_p2_vtab_build(const lkv_p2_model *m, lkv_p2_vtab *vt);

/* p2.c keeps the rotated models (and their vtabs) of the first
 * LKV_P2_CACHE_SLOTS (Q, D) pairs a process codes, and the level models of
 * the first LKV_P2_CACHE_LEVEL_SLOTS (Q, D, level) triples (with their
 * SIMD tables, built at first use), and a call's buffers for the next
 * call; lkv_p2_cache_disable(1) makes every call build and allocate its
 * own again (tests compare the two), (0) uses the cache again. */
#define LKV_P2_CACHE_SLOTS       32u
#define LKV_P2_CACHE_LEVEL_SLOTS 256u
void lkv_p2_cache_disable(int off);

/*
 * The SIMD encoder's symbols of a channel level's model: for table
 * ti = c * 3 + tab and bin s < nbins (no other entry is set),
 *   e[ti][s] = cum[s] | (cum[s + 1] - cum[s]) << 16 | rcp[s] << 32.
 * The model keeps them in three arrays, which cost a channel coordinate
 * three gathers of 16 lanes; one 64-bit lookup gives all three (the
 * frequency is at most 2^15). 24 KiB.
 */
typedef struct lkv_p2_etab {
    uint64_t e[6][LKV_P2_NBINS_MAX];
} lkv_p2_etab;

void lkv_p2_etab_build(const lkv_p2_model *m, lkv_p2_etab *et);

/*
 * What one piece of one chunk is coded with (p2.c): the model of each
 * coordinate and the coset frequency of each block. Rotated mode: the
 * piece's model everywhere. Version 4's channel mode: coordinate i's level
 * model, block b's frequency from its 8 levels (lkv_p2_coset_f1), and the
 * scale ch. vc: each coordinate's SIMD decode tables (set by the SIMD
 * decoder only); ec: its SIMD encoder symbols (set by the SIMD encoder of a
 * channel piece only). Every level model has the piece model's box, raw-bit
 * counts and table ranges (jlo, n, b): only the frequencies differ.
 */
typedef struct lkv_p2_piece {
    const lkv_p2_model *mc[LKV_DIM_MAX];
    const lkv_p2_vtab *vc[LKV_DIM_MAX];
    const lkv_p2_etab *const *ec; /* [dim] */
    uint32_t f1[LKV_DIM_MAX / 8];
    uint32_t rcp[LKV_DIM_MAX / 8][2];
    float ch; /* 0: rotated */
} lkv_p2_piece;

#if defined(LKV_HAVE_AVX512) || defined(LKV_HAVE_AVX2)
#define LKV_P2_SIMD 1

/* One chunk's side of a two-chunk slot decode (slot2 below); pc: NULL for
 * a rotated piece, else its channel piece. */
typedef struct lkv_p2_slot_io {
    const uint8_t *body;
    size_t len, pos;
    uint32_t *state;
    const float *rn;
    uint8_t *const *rows;
    const lkv_p2_piece *pc;
} lkv_p2_slot_io;

/* Pieces up to this D may be decoded two chunks at a time. */
#define LKV_P2_PAIR_DIM_MAX 256u

/*
 * A SIMD path's kernels (p2_avx512.h, p2_avx2.h); p2.c runs full slots
 * (LKV_P2_LANES vectors) on them and everything else on its scalar steps,
 * with the same bytes and the same failures.
 *   slot: decodes one full slot of a piece at body[*pos..len) with the
 *     lanes' states, writes the vectors to rows[l] (the piece's first
 *     element in vector l's row) and advances *pos and the states as the
 *     scalar decoder does. 0 when the stream is corrupt (the scalar decoder
 *     fails in the same slot). rn: the lanes' norms as the decoder
 *     multiplies by them (fp32(r16) in version 2, r^(k) in version 3).
 *     pc: NULL for a rotated piece (m's tables, vt), else version 4's
 *     channel piece (per-coordinate tables pc->vc, per-block pc->f1, no
 *     butterfly: out = ((p2 / 2) / pc->ch) * r); m still gives the shape.
 *   slot2: slot for the same slot of the same piece of two chunks at once
 *     (their streams are independent; pieces up to LKV_P2_PAIR_DIM_MAX). 0
 *     when either is corrupt: the caller then decodes the two chunks one
 *     after the other for the error. io[c].pc: NULL in both (rotated
 *     pieces, m's tables), or set in both, a rotated one then with vc = vt
 *     and ch = 0. NULL where one chunk at a time is faster.
 *   quantise: the encoder's front end (p2.c quantise) for cnt <= width
 *     vectors of one piece at rows[0..width) (rows past cnt repeat row 0)
 *     in container version fmt, in the rotated domain (ch = 0) or version
 *     4's channel domain (times ch): lane l's norm code (r16 in version 2, k in
 *     3), points and cosets to code[l], k[l], c[l], or with
 *     kt non-NULL symbol-major (kt[j * 32 + l], ct[block * 32 + l], lanes
 *     l < width from the given pointers). Returns the lanes that cannot be
 *     coded (nonfinite element, norm overflow), 0 when all can.
 *   encode_block: block b of a full slot, from quantise's symbol-major
 *     points (kt, ct: the block's), through the encoder's rANS (symbols
 *     and puts). pc: NULL for a rotated piece (m's tables through vt), else
 *     version 4's channel piece (the models pc->mc, coset pc->f1[b]). 0 on
 *     success, 1 for a point outside its table, 2 when the words would go
 *     below limit.
 * Version 4's mode estimate (p2.c est_channel), the channel values stored
 * coordinate-major: value i of vector v at cn[i * stride + v].
 *   estimate: for cnt <= width vectors at rows (as quantise; the first at
 *     cn[0]): lane l's norm code to code[l] (l < cnt); its channel values
 *     lrintf((x / r^) * ch) to cn[i * stride + l] for every lane (lanes
 *     past cnt: row 0's); and adds to *crot the estimates (est_of, m's
 *     t[0][0]) of the rotated values lrintf((butterfly(x / r^) * Q) / 4) of
 *     the lanes < cnt. With kt non-NULL (a full slot's vectors) also the
 *     points and cosets symbol-major, exactly as quantise's kt, ct: with
 *     ch = 0 (the rotated points) when kchan is 0, else with ch (the
 *     channel points). Returns the lanes that cannot be coded, as
 *     quantise.
 *   est_squares: sq[i] += the sum of 4 n^2 over the values n of row i,
 *     v < cnt (every v < cnt rounded up to width may be read).
 *   est_chan: the sum over i < dim, v < cnt of est_of(mc[i], n); every
 *     mc[i] has mc[0]'s t[0][0] ranges (jlo, n, b).
 *   pt_squares: sq[i] += the sum over nslots full slots, slot k's
 *     symbol-major points (quantise's) at kt + k * ks and ct + k * cs, and
 *     their 32 vectors l, of (2 kt[i * 32 + l] + ct[(i / 8) * 32 + l])^2
 *     (the channel levels of p2.c encode_channel).
 */
typedef struct lkv_p2_kernels {
    unsigned width;
    int (*slot)(const lkv_p2_model *m, const lkv_p2_vtab *vt, const lkv_p2_piece *pc,
                const uint8_t *body, size_t len, size_t *pos, uint32_t *state, const float *rn,
                uint8_t *const *rows, lkv_dtype dt);
    int (*slot2)(const lkv_p2_model *m, const lkv_p2_vtab *vt, lkv_p2_slot_io *io, lkv_dtype dt);
    unsigned (*quantise)(const lkv_p2_model *m, uint32_t fmt, float ch, lkv_dtype dt,
                         const uint8_t *const *rows, unsigned cnt, uint16_t *code,
                         int16_t (*k)[LKV_DIM_MAX], uint8_t (*c)[LKV_DIM_MAX / 8], int16_t *kt,
                         uint8_t *ct);
    int (*encode_block)(const lkv_p2_model *m, const lkv_p2_vtab *vt, const lkv_p2_piece *pc,
                        uint32_t b, const int16_t *kt, const uint8_t *ct, uint32_t *state,
                        uint8_t *base, size_t *wp, size_t limit);
    unsigned (*estimate)(const lkv_p2_model *m, uint32_t fmt, float ch, lkv_dtype dt,
                         const uint8_t *const *rows, unsigned cnt, uint16_t *code, int16_t *cn,
                         size_t stride, uint64_t *crot, int16_t *kt, uint8_t *ct, int kchan);
    void (*est_squares)(uint32_t dim, const int16_t *cn, size_t stride, size_t cnt, uint64_t *sq);
    uint64_t (*est_chan)(const lkv_p2_model *const *mc, uint32_t dim, const int16_t *cn,
                         size_t stride, size_t cnt);
    void (*pt_squares)(uint32_t dim, size_t nslots, const int16_t *kt, size_t ks, const uint8_t *ct,
                       size_t cs, uint64_t *sq);
} lkv_p2_kernels;

#define LKV_P2_WIDTH_MAX 16u
#endif
#if defined(LKV_HAVE_AVX512)
extern const lkv_p2_kernels lkv_p2_kernels_avx512;
#endif
#if defined(LKV_HAVE_AVX2)
extern const lkv_p2_kernels lkv_p2_kernels_avx2;
#endif

#endif /* LKV_P2_H */
