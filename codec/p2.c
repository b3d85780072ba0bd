/* SPDX-License-Identifier: Apache-2.0 */
/*
 * p2.c - codec profile 2 (docs/codec-v2.md): one fp16 norm per vector, a
 * Q-scaled Walsh-Hadamard rotation, profile 1's closest E8 point, and
 * interleaved rANS with the static models of p2_model.c.
 *
 * Layout of a chunk of cnt vectors (codec/FORMAT.md): at most 256 in
 * container version 3, 128 in version 2.
 *   u32 body length, then the body:
 *   norms[cnt][pieces]             vector-major: version 3 one byte, the
 *                                  norm code k (lkv_p2_norm_code), then a
 *                                  zero byte when cnt * pieces is odd;
 *                                  version 2 the fp16 norm r16
 *   per piece: u32 state[nl]       nl = min(cnt, 32) lanes' initial states
 *              u16 words[]         read forward by the decoder
 * Lane l codes vectors l, l + 32, l + 64, ... The decoder steps through
 * the symbols of a slot (32 vectors) together: for each symbol position,
 * lanes 0..nl-1 in turn decode one symbol and refill from the shared word
 * stream. The encoder runs the exact reverse (last slot, last symbol, last
 * lane first) and writes the words backwards from the end of its buffer,
 * then moves them into place. A piece's stream ends where its decoder stops
 * reading, so the next piece follows without a length field.
 *
 * Memory: versions 2 and 3 allocate nothing in a call (the model cache
 * below allocates once per process and model). The scalar path's largest
 * frame holds one slot's points (32 x 1024 int16, 64 KiB) and one model
 * (about 31 KiB): about 120 KiB of stack in all. The SIMD paths add the
 * packed decode tables (68 KiB), the slot's points symbol-major (64 KiB)
 * and profile 1's lane scratch: up to about 330 KiB (docs/codec-v2.md).
 * Version 4's channel mode allocates at first use in a call: the level
 * models the cache does not hold (up to 32 x 31 KiB), their SIMD decode
 * tables (68 KiB each) or encoder symbols (24 KiB each, lkv_p2_etab), and
 * the encoder's channel trial (a chunk's points and one piece, about
 * 1 MiB); at its end the call keeps them for the next (models_free: up to
 * LKV_P2_SPARES sets). The cache's level entries get their own SIMD
 * tables at first use: at most 256 x (31 + 68 + 24) KiB, about 31 MiB, in
 * a process that codes channel pieces of many (Q, D).
 *
 * Models shared by calls: the rotated model of a (Q, D) with its SIMD
 * tables, and version 4's level models, are built once per process and
 * kept (the model cache, above level_model), for the first pairs and
 * triples a process uses; later ones are built in each call, as before.
 *
 * Instruction sets: lkv_p2_encode_isa / lkv_p2_decode_isa run full slots
 * (32 vectors) on the kernels of a SIMD path (lkv_p2_kernels: p2_avx512.h,
 * p2_avx2.h) and everything else (partial slots, scalar) on the code here;
 * the bytes and the errors are the same on every path
 * (tests/codec/test_p2_isa.c).
 */
#include "lkv_p2.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static inline float bits_f32(uint32_t x)
{
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static inline uint32_t f32_bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    return x;
}

static uint16_t ld16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)ld16(p) | ((uint32_t)ld16(p + 2) << 16);
}
static void st16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void st32(uint8_t *p, uint32_t v)
{
    st16(p, v & 0xffffu);
    st16(p + 2, v >> 16);
}

/* ------------------------------------------------------------------------ */
/* Per-vector arithmetic                                                     */

/* Profile 1's norm order (ref.c): a pairwise tree over index order. */
static float norm_pairwise(const float *x, uint32_t dim)
{
    float t[LKV_DIM_MAX / 2];
    uint32_t len = dim / 2;
    for (uint32_t i = 0; i < len; i++)
        t[i] = x[2 * i] * x[2 * i] + x[2 * i + 1] * x[2 * i + 1];
    while (len > 1) {
        len /= 2;
        for (uint32_t i = 0; i < len; i++)
            t[i] = t[2 * i] + t[2 * i + 1];
    }
    return sqrtf(t[0]);
}

/* Profile 1's butterfly (stages h = 1, 2, ..., dim/2) without its scale. */
static void butterfly(float *v, uint32_t dim)
{
    for (uint32_t h = 1; h < dim; h <<= 1)
        for (uint32_t i = 0; i < dim; i += 2 * h)
            for (uint32_t j = i; j < i + h; j++) {
                const float a = v[j], b = v[j + h];
                v[j] = a + b;
                v[j + h] = a - b;
            }
}

/* The norm of a piece as stored, r = max(|x|, 2^-23): version 3 the code k
 * of the smallest r^(k) >= r, and the divisor r^(k); version 2 fp16(r) and
 * the divisor r. 0 when the code overflows (v3: r above 2^31.75; v2: fp16
 * inf, r >= 65520). */
static int piece_norm(const float *x, uint32_t dim, uint32_t fmt, uint16_t *code, float *div)
{
    float r = norm_pairwise(x, dim);
    if (!(r >= LKV_EPS))
        r = LKV_EPS;
    if (fmt == LKV_FMT_VERSION_P2) {
        *code = lkv_math_f32_to_f16(f32_bits(r));
        *div = r;
        return *code != LKV_F16_INF_BITS;
    }
    const uint32_t k = lkv_p2_norm_code(f32_bits(r));
    *code = (uint16_t)k;
    *div = bits_f32(lkv_p2_norm_bits(k & 0xffu));
    return k <= 0xffu;
}

/* The decoder's norm of a stored code. */
static float norm_value(uint32_t fmt, uint16_t code)
{
    return bits_f32(fmt == LKV_FMT_VERSION_P2 ? lkv_math_f16_to_f32(code) : lkv_p2_norm_bits(code));
}

/* One piece of one vector to its point: k (the coset-relative integer
 * coordinates, p = k + c/2) and the coset c of each block. ch = 0: the
 * rotated domain (butterfly, times Q/4); else version 4's channel domain,
 * times ch = lkv_p2_chan_scale. 0 on overflow. */
static int quantise(const lkv_p2_model *m, uint32_t fmt, float ch, const float *x, uint16_t *code,
                    int16_t *k, uint8_t *cos)
{
    float r;
    if (!piece_norm(x, m->dim, fmt, code, &r))
        return 0;
    float y[LKV_DIM_MAX];
    if (ch != 0.0f) {
        for (uint32_t j = 0; j < m->dim; j++)
            y[j] = (x[j] / r) * ch;
    } else {
        for (uint32_t j = 0; j < m->dim; j++)
            y[j] = x[j] / r;
        butterfly(y, m->dim);
        for (uint32_t j = 0; j < m->dim; j++)
            y[j] = (y[j] * m->qf) * 0.25f;
    }
    for (uint32_t b = 0; b < m->nblocks; b++) {
        int32_t pt[8];
        cos[b] = (uint8_t)lkv_ref_e8_box(y + 8 * b, m->box_f, pt);
        for (int i = 0; i < 8; i++)
            k[8 * b + i] = (int16_t)pt[i];
    }
    return 1;
}

/* The decoder's arithmetic: t = p / Q, the butterfly, times 4/D, times r;
 * in the channel domain (ch != 0) p / ch times r. */
static void reconstruct(const lkv_p2_model *m, float ch, const int16_t *k, const uint8_t *cos,
                        float r, float *out)
{
    if (ch != 0.0f) {
        for (uint32_t j = 0; j < m->dim; j++) {
            const int32_t p2 = 2 * (int32_t)k[j] + cos[j / 8];
            out[j] = (((float)p2 * 0.5f) / ch) * r;
        }
        return;
    }
    for (uint32_t b = 0; b < m->nblocks; b++)
        for (uint32_t i = 0; i < 8; i++) {
            const int32_t p2 = 2 * (int32_t)k[8 * b + i] + cos[b];
            out[8 * b + i] = ((float)p2 * 0.5f) / m->qf;
        }
    butterfly(out, m->dim);
    for (uint32_t j = 0; j < m->dim; j++)
        out[j] = (out[j] * m->out_scale) * r;
}

/* ------------------------------------------------------------------------ */
/* Symbols                                                                   */

typedef struct p2_sym {
    uint32_t start, freq, rcp;
} p2_sym;

/* A block's symbols are kept symbol-major, syms[symbol][lane], so that one
 * symbol of all lanes is contiguous. SYM_STEP: the stride between one
 * lane's symbols. */
#define SYM_STEP LKV_P2_LANES

/* Appends the symbols of offset u in table t: its bin, then b raw bits. */
static p2_sym *table_syms(const lkv_p2_table *t, uint32_t u, p2_sym *s)
{
    const uint32_t hi = u >> t->b;
    s->start = t->cum[hi];
    s->freq = t->cum[hi + 1] - t->cum[hi];
    s->rcp = t->rcp[hi];
    s += SYM_STEP;
    if (t->b) {
        const uint32_t f = LKV_P2_PROB_ONE >> t->b;
        s->start = (u & ((1u << t->b) - 1u)) * f;
        s->freq = f;
        s->rcp = lkv_p2_rcp(f);
        s += SYM_STEP;
    }
    return s;
}

/* What one piece of one chunk is coded with (lkv_p2.h): per-coordinate
 * models, per-block coset frequencies, the channel scale (0: rotated). */
typedef lkv_p2_piece p2_piece;

static void piece_rotated(const lkv_p2_model *m, p2_piece *pc)
{
    for (uint32_t i = 0; i < m->dim; i++)
        pc->mc[i] = m;
    for (uint32_t b = 0; b < m->nblocks; b++) {
        pc->f1[b] = m->coset_f1;
        pc->rcp[b][0] = m->coset_rcp[0];
        pc->rcp[b][1] = m->coset_rcp[1];
    }
    pc->ch = 0.0f;
}

/* The m->sym_block symbols of block b, in decoding order: the coset,
 * coordinates 0..6 from their tables [c][0], coordinate 7 from [c][1 +
 * parity]. 0 when a coordinate lies outside its table (never, for encoder
 * points). */
static int block_syms(const p2_piece *pc, uint32_t b, const int16_t *k, uint32_t c, p2_sym *s)
{
    const uint32_t f1 = pc->f1[b];
    const lkv_p2_model *const *mc = pc->mc + 8 * b;
    s->start = c ? LKV_P2_PROB_ONE - f1 : 0u;
    s->freq = c ? f1 : LKV_P2_PROB_ONE - f1;
    s->rcp = pc->rcp[b][c];
    s += SYM_STEP;
    uint32_t par = 0;
    for (int i = 0; i < 7; i++) {
        const lkv_p2_table *t = &mc[i]->t[c][0];
        const uint32_t u = (uint32_t)((int32_t)k[i] - t->jlo);
        if (u >= t->n)
            return 0;
        par ^= (uint32_t)k[i] & 1u;
        s = table_syms(t, u, s);
    }
    const lkv_p2_table *t = &mc[7]->t[c][1 + par];
    if ((((uint32_t)k[7] ^ par) & 1u) != 0)
        return 0;
    const uint32_t u = (uint32_t)((((int32_t)k[7] - (int32_t)par) >> 1) - t->jlo);
    if (u >= t->n)
        return 0;
    table_syms(t, u, s);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Chunk bounds                                                              */

/* A piece's slice of the parameters. */
typedef struct p2_layout {
    lkv_split split;              /* pieces (dims and offsets)          */
    uint32_t sym[LKV_PIECES_MAX]; /* rANS symbols per vector of each piece */
    uint32_t fmt;                 /* container version, 2 or 3          */
    uint32_t chunk;               /* vectors per chunk: 128 or 256      */
} p2_layout;

static void layout_init(const lkv_params *p, p2_layout *lo)
{
    lkv_params p1 = *p;
    p1.profile = LKV_PROFILE_1; /* lkv_split_init only cuts the dim */
    p1.format = 0;
    lkv_split_init(&p1, &lo->split);
    lo->fmt = lkv_p2_format_of(p);
    lo->chunk = lkv_p2_chunk_vectors(p);
    for (uint32_t j = 0; j < lo->split.count; j++)
        lo->sym[j] = lkv_p2_syms_per_vec(p->q, lo->split.d[j].p.dim);
}

/* Bytes of a chunk's norm field: 2 per norm (v2), or 1 per norm and a
 * zero byte to an even size (v3). */
static uint64_t norm_bytes(const p2_layout *lo, uint64_t cnt)
{
    const uint64_t n = cnt * lo->split.count;
    return lo->fmt == LKV_FMT_VERSION_P2 ? 2 * n : (n + 1) & ~(uint64_t)1;
}

/* The norm code of vector v, piece j, in a body. */
static uint16_t norm_code_at(const p2_layout *lo, const uint8_t *body, size_t v, uint32_t j)
{
    const size_t i = v * lo->split.count + j;
    return lo->fmt == LKV_FMT_VERSION_P2 ? ld16(body + 2 * i) : body[i];
}

static void norm_code_put(const p2_layout *lo, uint8_t *body, size_t v, uint32_t j, uint16_t c)
{
    const size_t i = v * lo->split.count + j;
    if (lo->fmt == LKV_FMT_VERSION_P2)
        st16(body + 2 * i, c);
    else
        body[i] = (uint8_t)c;
}

/* Whether a chunk's norm field is valid: v2 every r16 finite and at least
 * fp16(2^-23); v3 the pad byte, if any, zero (every code is a norm). */
static int norms_ok(const p2_layout *lo, const uint8_t *body, size_t cnt)
{
    const size_t n = cnt * lo->split.count;
    if (lo->fmt != LKV_FMT_VERSION_P2)
        return (n & 1u) == 0 || body[n] == 0;
    for (size_t i = 0; i < n; i++) {
        const uint16_t r16 = ld16(body + 2 * i);
        if (r16 < LKV_F16_EPS_BITS || r16 >= LKV_F16_INF_BITS)
            return 0;
    }
    return 1;
}

/* Bytes of a piece's header: in version 4 its mode byte, in channel mode
 * then its levels (5 bits per channel), and a zero byte to an even size;
 * none before version 4. */
static size_t piece_hdr(const p2_layout *lo, uint32_t dim, int channel)
{
    if (lo->fmt != LKV_FMT_VERSION_P4)
        return 0;
    return (2 + (channel ? 5 * (size_t)dim / 8 : 0)) & ~(size_t)1;
}

/* Worst-case bytes of one piece of a chunk of cnt vectors: every symbol
 * refills at most one 16-bit word. */
static uint64_t piece_bound(const p2_layout *lo, uint32_t j, uint64_t cnt)
{
    const uint64_t nl = cnt < LKV_P2_LANES ? cnt : LKV_P2_LANES;
    return piece_hdr(lo, lo->split.d[j].p.dim, 1) + 4 * nl + 2 * cnt * lo->sym[j];
}

/* Worst-case body bytes of a chunk of cnt vectors. */
static uint64_t body_bound(const p2_layout *lo, uint64_t cnt)
{
    uint64_t b = norm_bytes(lo, cnt);
    for (uint32_t j = 0; j < lo->split.count; j++)
        b += piece_bound(lo, j, cnt);
    return b;
}

/* Version 4's levels: 5 bits per channel, channel i at bits 5i .. 5i + 4
 * of the field read as one little-endian number. */
static void levels_put(uint8_t *h, const uint8_t *lv, uint32_t dim)
{
    memset(h, 0, 5 * (size_t)dim / 8);
    for (uint32_t i = 0; i < dim; i++)
        lkv_put_bits(h, 5 * i, lv[i], 5);
}

static void levels_get(const uint8_t *h, uint8_t *lv, uint32_t dim)
{
    for (uint32_t i = 0; i < dim; i++)
        lv[i] = (uint8_t)lkv_get_bits(h, 5 * i, 5);
}

size_t lkv_p2_payload_bound(const lkv_params *p, uint64_t n)
{
    if (lkv_params_check(p, NULL) != LKV_OK || lkv_profile_of(p) != LKV_PROFILE_2)
        return 0;
    p2_layout lo;
    layout_init(p, &lo);
    const uint64_t full = n / lo.chunk, rest = n % lo.chunk;
    const uint64_t per_full = 4 + body_bound(&lo, lo.chunk);
    if (full > (UINT64_MAX / 2) / per_full)
        return 0;
    uint64_t total = full * per_full + (rest ? 4 + body_bound(&lo, rest) : 0);
    if (n == 0)
        total = 0;
    if (total > (uint64_t)SIZE_MAX / 2)
        return 0;
    return (size_t)total;
}

size_t lkv_compress_bound(const lkv_params *p, const uint64_t *shape, uint32_t ndim)
{
    lkv_container_info info;
    if (lkv_container_plan(p, LKV_DTYPE_FP32, shape, ndim, &info, NULL) != LKV_OK)
        return 0;
    return info.total_bytes;
}

/* ------------------------------------------------------------------------ */
/* Encoder                                                                   */

/* The buffers of a call (version 4's channel mode), allocated at their
 * first use and kept for the next call (models_take, models_free). */
typedef struct p2_bufs {
    lkv_p2_model *lev;          /* level models not from the cache (LKV_P2_LEVELS of them) */
    void *lt[2][LKV_P2_LEVELS]; /* SIMD tables of level models not from the cache */
    const lkv_p2_etab **ec;     /* a channel piece's encoder symbols, per coordinate */
    int16_t *ck;                /* a chunk's channel-domain points [cnt][dim] */
    uint8_t *cc;                /* and cosets [cnt][dim / 8] */
    uint8_t *cout;              /* the channel trial's piece */
    size_t cout_cap;
    int16_t *cn; /* the mode estimate's channel values [dim][chunk up to 16] */
} p2_bufs;

/* The model of piece j, rebuilt only when the piece changes; version 4's
 * channel mode adds the level models and the encoder's channel trial,
 * allocated at their first use (models_free). */
typedef struct p2_models {
    const p2_layout *lo;
    uint32_t q;
    int built;                  /* piece index + 1 of m or cm, 0 when none */
    const struct p2_cached *cm; /* piece built's model from the cache, or NULL: m */
    lkv_p2_model m;
    int vt_built; /* piece index + 1 of vt (SIMD decode only), 0 when none */
    lkv_p2_vtab vt;
    /* level l's model of dimension lev_dim (bit l of lev_have: set), its
     * cache entry or NULL (built in b.lev), and its SIMD tables of kind k
     * (LT_DEC, LT_ENC): the entry's or b.lt[k][l] (bit l of lt_have[k]) */
    const lkv_p2_model *levp[LKV_P2_LEVELS];
    struct p2_cached *levc[LKV_P2_LEVELS];
    uint32_t lev_dim, lev_have;
    const void *ltp[2][LKV_P2_LEVELS];
    uint32_t lt_have[2];
    p2_bufs b;      /* the call's buffers */
    uint32_t chans; /* bit j: the last chunk coded piece j in the channel mode */
} p2_models;
_Static_assert(LKV_PIECES_MAX <= 32, "p2_models.chans: a bit per piece");

/*
 * The model cache. Building a model and its SIMD tables is most of a small
 * call's time: a 32-vector call of version 3 took about 70 us, 77 % of it in
 * build_table and lkv_p2_vtab_build, and a version 4 encode rebuilt up to 32
 * level models a call (perf, dev VM); a service codes a few hundred vectors
 * a call. So the rotated models (with their vtab) of the first
 * LKV_P2_CACHE_SLOTS (Q, D) pairs a process codes, and the level models of
 * the first LKV_P2_CACHE_LEVEL_SLOTS (Q, D, level) triples, are built once
 * and kept until the process ends, never changed (about 130 and 31 KiB
 * each). Slots fill in order, each by one compare-and-swap from NULL after
 * its entry is complete, so a reader that loads a slot (acquire) sees a
 * whole entry and takes no lock. Two calls that miss at once may both
 * build; the loser frees its copy and takes the winner's. When every slot
 * holds something else, the call builds its own in its frame, as before.
 * A level entry also gets its SIMD tables at their first use (the same
 * compare-and-swap, 68 KiB for the decoder's, 24 for the encoder's): built
 * per call, they were most of a channel-mode call's time (a 128-vector
 * decode took 225 us, against 24 in the rotated mode).
 */
typedef struct p2_cached {
    uint32_t q, dim, level; /* level: LKV_P2_LEVEL_ROTATED or 0..31 */
    _Atomic(void *) lt[2];  /* a level's SIMD tables of kind LT_DEC, LT_ENC, or NULL */
    lkv_p2_model m;
    lkv_p2_vtab vt[]; /* one for a rotated model, none for a level's */
} p2_cached;

static _Atomic(p2_cached *) rot_cache[LKV_P2_CACHE_SLOTS];
static _Atomic(p2_cached *) level_cache[LKV_P2_CACHE_LEVEL_SLOTS];
static atomic_int cache_off;

void lkv_p2_cache_disable(int off)
{
    atomic_store(&cache_off, off);
}

/*
 * The buffers a call allocates at their first use (version 4's channel
 * mode: the trial's points and piece, the mode estimate's values, the
 * tables of levels the cache does not hold), kept between calls: a call's
 * malloc and free of about 1 MiB at the heap's top made glibc trim and
 * regrow the heap on every call (2500 brk calls in one codec_call_bench
 * run, a 128-vector version 4 encode 50 -> 81 us, once the level tables
 * stopped being allocated per call). A call takes a set from one of
 * LKV_P2_SPARES slots by an atomic exchange (so no two calls share one)
 * and at its end puts its buffers back into an empty slot by a
 * compare-and-swap from NULL, or frees them when every slot is full. The
 * points' buffers are sized for the largest chunk, so any layout can use
 * a set.
 */
#define LKV_P2_SPARES 8u

static _Atomic(p2_bufs *) spares[LKV_P2_SPARES];

/* ms's buffers from a spare set, when a slot holds one (none with the
 * cache off: lkv_p2_cache_disable). */
static void models_take(p2_models *ms)
{
    if (atomic_load_explicit(&cache_off, memory_order_relaxed))
        return;
    for (uint32_t i = 0; i < LKV_P2_SPARES; i++) {
        if (!atomic_load_explicit(&spares[i], memory_order_relaxed))
            continue;
        p2_bufs *sp = atomic_exchange_explicit(&spares[i], NULL, memory_order_acq_rel);
        if (!sp)
            continue;
        ms->b = *sp;
        free(sp);
        return;
    }
}

/* ms's buffers into an empty slot, else (or with the cache off) freed; a
 * call that has none (versions 2 and 3, rotated pieces) gives back
 * nothing, so it allocates nothing and leaves the slots to sets that hold
 * buffers. */
static void models_free(p2_models *ms)
{
    static const p2_bufs none_held;
    if (!memcmp(&ms->b, &none_held, sizeof ms->b))
        return;
    p2_bufs *sp = atomic_load_explicit(&cache_off, memory_order_relaxed)
                      ? NULL
                      : (p2_bufs *)malloc(sizeof *sp);
    if (sp) {
        *sp = ms->b;
        for (uint32_t i = 0; i < LKV_P2_SPARES; i++) {
            p2_bufs *none = NULL;
            if (atomic_compare_exchange_strong_explicit(&spares[i], &none, sp, memory_order_acq_rel,
                                                        memory_order_relaxed))
                return;
        }
        free(sp);
    }
    for (uint32_t l = 0; l < LKV_P2_LEVELS; l++) {
        free(ms->b.lt[0][l]);
        free(ms->b.lt[1][l]);
    }
    free(ms->b.ec);
    free(ms->b.lev);
    free(ms->b.ck);
    free(ms->b.cc);
    free(ms->b.cn);
    free(ms->b.cout);
}

static p2_cached *cached_build(uint32_t q, uint32_t dim, uint32_t level)
{
    const int rot = level == LKV_P2_LEVEL_ROTATED;
    p2_cached *e = (p2_cached *)malloc(sizeof *e + (rot ? sizeof(lkv_p2_vtab) : 0));
    if (!e || !(rot ? lkv_p2_model_build(q, dim, &e->m)
                    : lkv_p2_model_build_level(q, dim, level, &e->m))) {
        free(e);
        return NULL;
    }
    e->q = q;
    e->dim = dim;
    e->level = level;
    atomic_init(&e->lt[0], NULL);
    atomic_init(&e->lt[1], NULL);
    if (rot)
        lkv_p2_vtab_build(&e->m, e->vt);
    return e;
}

/* The cached model of (q, dim, level) in slots, or NULL (cache full or off,
 * out of memory). */
static p2_cached *cache_get(_Atomic(p2_cached *) *slots, uint32_t nslots, uint32_t q, uint32_t dim,
                            uint32_t level)
{
    if (atomic_load_explicit(&cache_off, memory_order_relaxed))
        return NULL;
    p2_cached *mine = NULL;
    for (uint32_t i = 0; i < nslots; i++) {
        p2_cached *e = atomic_load_explicit(&slots[i], memory_order_acquire);
        if (!e) {
            if (!mine && !(mine = cached_build(q, dim, level)))
                return NULL;
            if (atomic_compare_exchange_strong_explicit(&slots[i], &e, mine, memory_order_acq_rel,
                                                        memory_order_acquire))
                return mine;
            /* another call filled slot i first: e is its entry */
        }
        if (e->q == q && e->dim == dim && e->level == level) {
            free(mine);
            return e;
        }
    }
    free(mine);
    return NULL;
}

/* The kinds of a level model's SIMD tables: the decoder's (lkv_p2_vtab)
 * and the encoder's symbols (lkv_p2_etab). */
enum { LT_DEC, LT_ENC };

static void build_vtab(const lkv_p2_model *m, void *t)
{
    lkv_p2_vtab_build(m, (lkv_p2_vtab *)t);
}

static void build_etab(const lkv_p2_model *m, void *t)
{
    lkv_p2_etab_build(m, (lkv_p2_etab *)t);
}

static const struct {
    size_t size;
    void (*build)(const lkv_p2_model *, void *);
} lt_kind[2] = {{sizeof(lkv_p2_vtab), build_vtab}, {sizeof(lkv_p2_etab), build_etab}};

/* A cached level model's tables of kind k, built at their first use in
 * the process (one compare-and-swap, as the slots); NULL when out of
 * memory (the caller builds its own). */
static const void *cached_table(p2_cached *e, int k)
{
    void *t = atomic_load_explicit(&e->lt[k], memory_order_acquire);
    if (t)
        return t;
    void *mine = malloc(lt_kind[k].size);
    if (!mine)
        return NULL;
    lt_kind[k].build(&e->m, mine);
    if (atomic_compare_exchange_strong_explicit(&e->lt[k], &t, mine, memory_order_acq_rel,
                                                memory_order_acquire))
        return mine;
    free(mine); /* another call's came first: t */
    return t;
}

/* Level l's model of dimension dim: from the cache, else built in ms->b.lev;
 * NULL when out of memory. */
static const lkv_p2_model *level_model(p2_models *ms, uint32_t dim, uint32_t l)
{
    if (ms->lev_dim != dim) {
        ms->lev_dim = dim;
        ms->lev_have = 0;
        ms->lt_have[LT_DEC] = ms->lt_have[LT_ENC] = 0;
    }
    if (!((ms->lev_have >> l) & 1u)) {
        p2_cached *e = cache_get(level_cache, LKV_P2_CACHE_LEVEL_SLOTS, ms->q, dim, l);
        ms->levc[l] = e;
        if (e) {
            ms->levp[l] = &e->m;
        } else {
            if (!ms->b.lev &&
                !(ms->b.lev = (lkv_p2_model *)malloc(LKV_P2_LEVELS * sizeof *ms->b.lev)))
                return NULL;
            if (!lkv_p2_model_build_level(ms->q, dim, l, &ms->b.lev[l]))
                return NULL;
            ms->levp[l] = &ms->b.lev[l];
        }
        ms->lev_have |= 1u << l;
    }
    return ms->levp[l];
}

/* The channel mode's scale c = fp32(fp32(Q / 4) * sqrt(D)). */
static float chan_scale(const lkv_p2_model *m)
{
    return (m->qf * 0.25f) * bits_f32(lkv_p2_sqrt_dim_bits(m->log2d));
}

/* pc for a channel-mode piece of m's dimension with levels lv. 0 when out
 * of memory. */
static int piece_channel(p2_models *ms, const lkv_p2_model *m, const uint8_t *lv, p2_piece *pc)
{
    for (uint32_t i = 0; i < m->dim; i++)
        if (!(pc->mc[i] = level_model(ms, m->dim, lv[i])))
            return 0;
    for (uint32_t b = 0; b < m->nblocks; b++) {
        double a[8], h[8];
        for (uint32_t i = 0; i < 8; i++) {
            a[i] = pc->mc[8 * b + i]->theta[0];
            h[i] = pc->mc[8 * b + i]->theta[1];
        }
        pc->f1[b] = lkv_p2_coset_f1(a, h);
        pc->rcp[b][0] = lkv_p2_rcp(LKV_P2_PROB_ONE - pc->f1[b]);
        pc->rcp[b][1] = lkv_p2_rcp(pc->f1[b]);
    }
    pc->ch = chan_scale(m);
    return 1;
}

/* The SIMD tables of kind k of level model m (from level_model) for this
 * call: its cache entry's, else built at their first use in the call;
 * NULL when out of memory. */
static const void *level_table(p2_models *ms, int k, const lkv_p2_model *m)
{
    const uint32_t l = m->level;
    if (!((ms->lt_have[k] >> l) & 1u)) {
        const void *t = ms->levc[l] ? cached_table(ms->levc[l], k) : NULL;
        if (!t) {
            if (!ms->b.lt[k][l] && !(ms->b.lt[k][l] = malloc(lt_kind[k].size)))
                return NULL;
            lt_kind[k].build(m, ms->b.lt[k][l]);
            t = ms->b.lt[k][l];
        }
        ms->ltp[k][l] = t;
        ms->lt_have[k] |= 1u << l;
    }
    return ms->ltp[k][l];
}

/* The SIMD decode tables of a piece's coordinates: vt everywhere for a
 * rotated piece, each channel's level tables (level_table, of the level
 * models piece_channel set) for a channel piece. 0 when out of memory. */
static int piece_vtabs(p2_models *ms, const lkv_p2_vtab *vt, uint32_t dim, p2_piece *pc)
{
    if (pc->ch == 0.0f) {
        for (uint32_t i = 0; i < dim; i++)
            pc->vc[i] = vt;
        return 1;
    }
    for (uint32_t i = 0; i < dim; i++) {
        const void *t = level_table(ms, LT_DEC, pc->mc[i]);
        if (!t)
            return 0;
        pc->vc[i] = (const lkv_p2_vtab *)t;
    }
    return 1;
}

/* Each coordinate's SIMD encoder symbols of a channel piece (piece_channel
 * set its level models): its level's (level_table). The pointers live in
 * ms, not in the piece, whose copies sit on the stack. 0 when out of
 * memory. */
static int piece_etabs(p2_models *ms, uint32_t dim, p2_piece *pc)
{
    if (!ms->b.ec && !(ms->b.ec = (const lkv_p2_etab **)malloc(LKV_DIM_MAX * sizeof *ms->b.ec)))
        return 0;
    pc->ec = ms->b.ec;
    for (uint32_t i = 0; i < dim; i++) {
        const void *t = level_table(ms, LT_ENC, pc->mc[i]);
        if (!t)
            return 0;
        ms->b.ec[i] = (const lkv_p2_etab *)t;
    }
    return 1;
}

#if defined(LKV_P2_SIMD)
typedef lkv_p2_kernels p2_kern;
#else
typedef struct p2_kern p2_kern; /* no SIMD path in this build */
#endif

/* The kernels of path isa, NULL for the scalar steps. */
static const p2_kern *kernels_of(lkv_isa isa)
{
#if defined(LKV_HAVE_AVX512)
    if (isa == LKV_ISA_AVX512)
        return &lkv_p2_kernels_avx512;
#endif
#if defined(LKV_HAVE_AVX2)
    if (isa == LKV_ISA_AVX2)
        return &lkv_p2_kernels_avx2;
#endif
    (void)isa;
    return NULL;
}

/* Piece j's model: from the cache, else built in ms->m. */
static const lkv_p2_model *model_of(p2_models *ms, uint32_t j)
{
    if (ms->built != (int)j + 1) {
        const uint32_t dim = ms->lo->split.d[j].p.dim;
        ms->cm = cache_get(rot_cache, LKV_P2_CACHE_SLOTS, ms->q, dim, LKV_P2_LEVEL_ROTATED);
        if (!ms->cm && !lkv_p2_model_build(ms->q, dim, &ms->m))
            return NULL;
        ms->built = (int)j + 1;
        ms->vt_built = 0;
    }
    return ms->cm ? &ms->cm->m : &ms->m;
}

/* The SIMD decode tables of piece j's model, which must be current. */
static const lkv_p2_vtab *vtab_of(p2_models *ms, uint32_t j)
{
    if (ms->cm)
        return ms->cm->vt;
    if (ms->vt_built != (int)j + 1) {
        lkv_p2_vtab_build(&ms->m, &ms->vt);
        ms->vt_built = (int)j + 1;
    }
    return &ms->vt;
}

/* Why a chunk failed; the caller reports the first failing vector. */
enum { ENC_OK, ENC_BAD_VECTOR, ENC_FULL, ENC_INTERNAL, ENC_NOMEM };

/* rANS encode of one symbol with its refill: at most one word out. */
static inline int rans_put(uint32_t *x, p2_sym s, uint8_t *base, size_t *wp, size_t limit)
{
    uint32_t v = *x;
    if ((uint64_t)v >= ((uint64_t)s.freq << 17)) {
        if (*wp < limit + 2)
            return 0;
        *wp -= 2;
        st16(base + *wp, v & 0xffffu);
        v >>= 16;
    }
    /* v / freq without a divide: the estimate is at most 1 below
     * (lkv_p2_rcp), so the loop steps at most once. */
    uint32_t q = (uint32_t)(((uint64_t)v * s.rcp) >> 32);
    uint32_t r = v - q * s.freq;
    while (r >= s.freq) {
        q++;
        r -= s.freq;
    }
    *x = (q << LKV_P2_PROB_BITS) + r + s.start;
    return 1;
}

/* rANS of one slot's nk lanes, last block first: lane l's points at
 * k + l * ks and cosets at c + l * cs. */
static int code_slot(const p2_piece *pc, const lkv_p2_model *m, size_t nk, const int16_t *k,
                     size_t ks, const uint8_t *c, size_t cs, uint32_t *state, uint8_t *dst,
                     size_t *wp, size_t limit)
{
    p2_sym syms[1 + 2 * 8][LKV_P2_LANES];
    for (uint32_t b = m->nblocks; b-- > 0;) {
        for (size_t l = 0; l < nk; l++)
            if (!block_syms(pc, b, k + l * ks + 8 * b, c[l * cs + b], &syms[0][l]))
                return ENC_INTERNAL;
        for (uint32_t s = m->sym_block; s-- > 0;)
            for (size_t l = nk; l-- > 0;)
                if (!rans_put(&state[l], syms[s][l], dst, wp, limit))
                    return ENC_FULL;
    }
    return ENC_OK;
}

#if defined(LKV_P2_SIMD)
/* code_slot of a full slot on a SIMD path's kernels, from symbol-major
 * points kt and cosets ct: a rotated piece with its decode tables vt, a
 * channel piece with pc (the same symbols and words as the scalar). */
static int code_slot_simd(const p2_kern *ks, const lkv_p2_model *m, const lkv_p2_vtab *vt,
                          const p2_piece *pc, const int16_t *kt, const uint8_t *ct, uint32_t *state,
                          uint8_t *dst, size_t *wp, size_t limit)
{
    for (uint32_t b = m->nblocks; b-- > 0;) {
        const int r = ks->encode_block(m, vt, pc, b, kt + 8 * b * LKV_P2_LANES,
                                       ct + b * LKV_P2_LANES, state, dst, wp, limit);
        if (r)
            return r == 1 ? ENC_INTERNAL : ENC_FULL;
    }
    return ENC_OK;
}
#endif

/* A slot's points and cosets in ms->b.ck and ms->b.cc. */
#define SLOT_K (LKV_DIM_MAX * LKV_P2_LANES)
#define SLOT_C (LKV_DIM_MAX / 8 * LKV_P2_LANES)

/* ms->b.ck and ms->b.cc for a chunk's slots, allocated at their first use. 0
 * when out of memory. */
static int slot_points(p2_models *ms)
{
    if (!ms->b.ck) {
        const size_t slots = (LKV_P2_CHUNK_VECTORS + LKV_P2_LANES - 1) / LKV_P2_LANES;
        ms->b.ck = (int16_t *)malloc(slots * SLOT_K * sizeof *ms->b.ck);
        ms->b.cc = (uint8_t *)malloc(slots * SLOT_C);
    }
    return ms->b.ck && ms->b.cc;
}

/*
 * Version 4's channel trial of piece j (model m) of the chunk of vectors
 * first .. first+cnt-1: their points in the channel domain, each channel's
 * level from the exact sum of its squared points, and the piece (header,
 * states, words) coded into ms->b.cout, *len bytes. Slot k's points lie at
 * ms->b.ck + k * 32 * LKV_DIM_MAX: a full slot on a SIMD path symbol-major
 * (kt[i * 32 + l], as encode_chunk's), quantised and coded by the kernels
 * (ks), or already there from est_channel when pts is set; any other slot
 * vector-major, rows of LKV_DIM_MAX. Either way the same points, levels,
 * symbols and words.
 */
static int encode_channel(p2_models *ms, const lkv_p2_model *m, uint32_t j, lkv_dtype dt,
                          const uint8_t *src, size_t first, size_t cnt, p2_piece *pc, size_t *len,
                          const p2_kern *ks, int pts)
{
    const p2_layout *lo = ms->lo;
    const uint32_t pd = m->dim, off = lo->split.off[j], dim = lo->split.dim;
    const size_t esz = lkv_dtype_size(dt), cap = (size_t)piece_bound(lo, j, lo->chunk);
    const size_t nslots = (cnt + LKV_P2_LANES - 1) / LKV_P2_LANES, KS = SLOT_K, CS = SLOT_C;
    if (ms->b.cout_cap < cap) {
        free(ms->b.cout);
        ms->b.cout = (uint8_t *)malloc(cap);
        ms->b.cout_cap = ms->b.cout ? cap : 0;
    }
    if (!slot_points(ms) || !ms->b.cout)
        return ENC_NOMEM;
    const float ch = chan_scale(m);
    uint64_t sq[LKV_DIM_MAX] = {0};
    float x[LKV_DIM_MAX];
    for (size_t k = 0; k < nslots; k++) {
        const size_t v0 = k * LKV_P2_LANES, nk = cnt - v0 < LKV_P2_LANES ? cnt - v0 : LKV_P2_LANES;
        int16_t *kr = ms->b.ck + k * KS;
        uint8_t *cr = ms->b.cc + k * CS;
#if defined(LKV_P2_SIMD)
        if (ks) {
            const int full = nk == LKV_P2_LANES;
            const unsigned wd = ks->width;
            int16_t(*kv)[LKV_DIM_MAX] = (int16_t(*)[LKV_DIM_MAX])kr;
            uint8_t(*cv)[LKV_DIM_MAX / 8] = (uint8_t(*)[LKV_DIM_MAX / 8]) cr;
            /* a full slot's points may be est_channel's already */
            for (size_t l0 = 0; l0 < nk && !(full && pts); l0 += wd) {
                const unsigned gc = nk - l0 < wd ? (unsigned)(nk - l0) : wd;
                const uint8_t *rows[LKV_P2_WIDTH_MAX];
                uint16_t code[LKV_P2_WIDTH_MAX];
                for (unsigned l = 0; l < wd; l++)
                    rows[l] = src + ((first + v0 + l0 + (l < gc ? l : 0)) * dim + off) * esz;
                if (ks->quantise(m, lo->fmt, ch, dt, rows, gc, code, full ? NULL : kv + l0,
                                 full ? NULL : cv + l0, full ? kr + l0 : NULL,
                                 full ? cr + l0 : NULL))
                    return ENC_BAD_VECTOR;
            }
            if (full)
                continue; /* its squares below, with the other full slots' */
        } else
#else
        (void)ks, (void)pts;
#endif
            for (size_t l = 0; l < nk; l++) {
                uint16_t code;
                uint32_t bad = 0;
                if (!lkv_load_vec(dt, src + ((first + v0 + l) * dim + off) * esz, 0, pd, x, &bad) ||
                    !quantise(m, lo->fmt, ch, x, &code, kr + l * LKV_DIM_MAX,
                              cr + l * (LKV_DIM_MAX / 8)))
                    return ENC_BAD_VECTOR;
            }
        for (size_t l = 0; l < nk; l++)
            for (uint32_t i = 0; i < pd; i++) {
                const int64_t p2 =
                    2 * (int64_t)kr[l * LKV_DIM_MAX + i] + cr[l * (LKV_DIM_MAX / 8) + i / 8];
                sq[i] += (uint64_t)(p2 * p2);
            }
    }
#if defined(LKV_P2_SIMD)
    if (ks)
        ks->pt_squares(pd, cnt / LKV_P2_LANES, ms->b.ck, KS, ms->b.cc, CS, sq);
#endif
    uint8_t lv[LKV_DIM_MAX];
    double thr[LKV_P2_LEVELS - 1];
    lkv_p2_level_thresholds((double)((uint64_t)cnt * ms->q * ms->q * pd), thr);
    for (uint32_t i = 0; i < pd; i++)
        lv[i] = (uint8_t)lkv_p2_level_at(sq[i], thr);
    if (!piece_channel(ms, m, lv, pc) || (ks && !piece_etabs(ms, pd, pc)))
        return ENC_NOMEM;
    uint8_t *out = ms->b.cout;
    const size_t hdr = piece_hdr(lo, pd, 1), nl = cnt < LKV_P2_LANES ? cnt : LKV_P2_LANES;
    out[0] = 1;
    levels_put(out + 1, lv, pd);
    out[hdr - 1] = hdr > 1 + 5 * (size_t)pd / 8 ? 0 : out[hdr - 1];
    uint32_t state[LKV_P2_LANES];
    for (size_t l = 0; l < nl; l++)
        state[l] = LKV_P2_RANS_LOW;
    const size_t limit = hdr + 4 * nl;
    size_t wp = cap;
    for (size_t k = nslots; k-- > 0;) {
        const size_t v0 = k * LKV_P2_LANES, nk = cnt - v0 < LKV_P2_LANES ? cnt - v0 : LKV_P2_LANES;
        const int16_t *kr = ms->b.ck + k * KS;
        const uint8_t *cr = ms->b.cc + k * CS;
#if defined(LKV_P2_SIMD)
        if (ks && nk == LKV_P2_LANES) {
            const int r = code_slot_simd(ks, m, NULL, pc, kr, cr, state, out, &wp, limit);
            if (r != ENC_OK)
                return r;
            continue;
        }
#endif
        const int r =
            code_slot(pc, m, nk, kr, LKV_DIM_MAX, cr, LKV_DIM_MAX / 8, state, out, &wp, limit);
        if (r != ENC_OK)
            return r;
    }
    for (size_t l = 0; l < nl; l++)
        st32(out + hdr + 4 * l, state[l]);
    memmove(out + limit, out + wp, cap - wp);
    *len = limit + (cap - wp);
    return ENC_OK;
}

/* Which points est_channel left in ms->b.ck, ms->b.cc: none, the rotated or
 * the channel ones. */
enum { PTS_NONE, PTS_ROT, PTS_CHAN };

/* The estimate of coding the integer coordinate n with model m's table
 * t[0][0] (lkv_p2_est_cost), n clamped to the table. */
static inline uint32_t est_of(const lkv_p2_model *m, int32_t n)
{
    const lkv_p2_table *t = &m->t[0][0];
    int32_t u = n - t->jlo;
    u = u < 0 ? 0 : u >= (int32_t)t->n ? (int32_t)t->n - 1 : u;
    return m->est[(uint32_t)u >> t->b];
}

/*
 * Version 4's mode choice for piece j (model m) of the chunk of vectors
 * first .. first+cnt-1, before any closest-point search: the front ends'
 * values of both domains rounded to the integer grid (fp32 rint, ties to
 * even), the channel levels they give (lkv_p2_level of the sums of (2 n)^2)
 * and the estimates of both pieces (est_of summed, plus the headers). *chan
 * is 1 when the channel piece's estimate is the smaller. Also puts the norm
 * codes (both modes share them) into the chunk's norm field. On a SIMD path
 * the kernels (ks->estimate, est_squares, est_chan) compute the same
 * integers; the channel values lie coordinate-major either way, value i of
 * vector v at ms->b.cn[i * stride + v]. On a SIMD path the estimate kernel
 * also puts the points of each full slot k into ms->b.ck + k * SLOT_K and
 * ms->b.cc + k * SLOT_C (symbol-major, quantise's) in the mode the last chunk
 * coded piece j in, so that the mode coded next need not compute them again
 * where that guess holds (lognormal channels: every chunk after the first);
 * *pts is then PTS_ROT or PTS_CHAN, else PTS_NONE. The guess only saves
 * work: the points are the same either way.
 */
static int est_channel(p2_models *ms, const lkv_p2_model *m, uint32_t j, lkv_dtype dt,
                       const uint8_t *src, size_t first, size_t cnt, uint8_t *body, int *chan,
                       const p2_kern *ks, int *pts)
{
    const p2_layout *lo = ms->lo;
    const uint32_t pd = m->dim, off = lo->split.off[j], dim = lo->split.dim;
    const size_t esz = lkv_dtype_size(dt);
    /* rows of the chunk rounded up to 16: a kernel writes whole groups of width */
    const size_t stride = ((size_t)lo->chunk + 15u) & ~(size_t)15u;
    const size_t smax = ((size_t)LKV_P2_CHUNK_VECTORS + 15u) & ~(size_t)15u;
    if (!ms->b.cn && !(ms->b.cn = (int16_t *)malloc(smax * LKV_DIM_MAX * sizeof *ms->b.cn)))
        return ENC_NOMEM;
    const float ch = chan_scale(m);
    uint64_t s[LKV_DIM_MAX] = {0}, crot = 16u * 8u * piece_hdr(lo, pd, 0);
    *pts = PTS_NONE;
#if defined(LKV_P2_SIMD)
    if (ks) {
        const unsigned wd = ks->width;
        const size_t nfull = cnt / LKV_P2_LANES * LKV_P2_LANES;
        const int guess = (ms->chans >> j) & 1u;
        *pts = guess ? PTS_CHAN : PTS_ROT;
        if (!slot_points(ms))
            return ENC_NOMEM;
        for (size_t v0 = 0; v0 < cnt; v0 += wd) {
            const unsigned gc = cnt - v0 < wd ? (unsigned)(cnt - v0) : wd;
            const size_t k = v0 / LKV_P2_LANES, l0 = v0 % LKV_P2_LANES;
            const uint8_t *rows[LKV_P2_WIDTH_MAX];
            uint16_t code[LKV_P2_WIDTH_MAX];
            for (unsigned l = 0; l < wd; l++)
                rows[l] = src + ((first + v0 + (l < gc ? l : 0)) * dim + off) * esz;
            /* The next group's rows, while this one is coded: the kernel
             * reads a group across its rows (a new 4 KiB page per group at
             * D = 128 in bf16, where hardware prefetchers stop), and its
             * loads' misses were the front end's largest cost (perf). */
            for (size_t v = v0 + wd; v < v0 + 2u * wd && v < cnt; v++)
                for (size_t b = 0; b < pd * esz; b += 64)
                    __builtin_prefetch(src + ((first + v) * dim + off) * esz + b);
            if (ks->estimate(m, lo->fmt, ch, dt, rows, gc, code, ms->b.cn + v0, stride, &crot,
                             v0 < nfull ? ms->b.ck + k * SLOT_K + l0 : NULL,
                             v0 < nfull ? ms->b.cc + k * SLOT_C + l0 : NULL, guess))
                return ENC_BAD_VECTOR;
            for (unsigned l = 0; l < gc; l++)
                norm_code_put(lo, body, v0 + l, j, code[l]);
        }
        ks->est_squares(pd, ms->b.cn, stride, cnt, s);
    } else
#else
    (void)ks;
#endif
    {
        float x[LKV_DIM_MAX], y[LKV_DIM_MAX];
        for (size_t v = 0; v < cnt; v++) {
            uint32_t bad = 0;
            uint16_t code;
            float r;
            if (!lkv_load_vec(dt, src + ((first + v) * dim + off) * esz, 0, pd, x, &bad) ||
                !piece_norm(x, pd, lo->fmt, &code, &r))
                return ENC_BAD_VECTOR;
            norm_code_put(lo, body, v, j, code);
            for (uint32_t i = 0; i < pd; i++) {
                y[i] = x[i] / r;
                const int32_t n = (int32_t)lrintf(y[i] * ch);
                ms->b.cn[i * stride + v] = (int16_t)n; /* |n| <= L + 1 < 2^14 */
                s[i] += (uint64_t)(4 * (int64_t)n * n);
            }
            butterfly(y, pd);
            for (uint32_t i = 0; i < pd; i++)
                crot += est_of(m, (int32_t)lrintf((y[i] * m->qf) * 0.25f));
        }
    }
    double thr[LKV_P2_LEVELS - 1];
    lkv_p2_level_thresholds((double)((uint64_t)cnt * ms->q * ms->q * pd), thr);
    const lkv_p2_model *mc[LKV_DIM_MAX];
    for (uint32_t i = 0; i < pd; i++)
        if (!(mc[i] = level_model(ms, pd, lkv_p2_level_at(s[i], thr))))
            return ENC_NOMEM;
    uint64_t cch = 16u * 8u * piece_hdr(lo, pd, 1);
#if defined(LKV_P2_SIMD)
    if (ks)
        cch += ks->est_chan(mc, pd, ms->b.cn, stride, cnt);
    else
#endif
        for (uint32_t i = 0; i < pd; i++)
            for (size_t v = 0; v < cnt; v++)
                cch += est_of(mc[i], ms->b.cn[i * stride + v]);
    *chan = cch < crot;
    ms->chans = (ms->chans & ~(1u << j)) | (uint32_t)*chan << j;
    return ENC_OK;
}

/* Encodes vectors first .. first+cnt-1 of src as one chunk at dst[0..cap). */
static int encode_chunk(p2_models *ms, lkv_dtype dt, const uint8_t *src, size_t first, size_t cnt,
                        uint8_t *dst, size_t cap, size_t *len, const p2_kern *ks)
{
    const p2_layout *lo = ms->lo;
    const lkv_split *sp = &lo->split;
    const uint32_t np = sp->count, dim = sp->dim, fmt = lo->fmt;
    const size_t esz = lkv_dtype_size(dt);
    const size_t nl = cnt < LKV_P2_LANES ? cnt : LKV_P2_LANES;
    const size_t nslots = (cnt + LKV_P2_LANES - 1) / LKV_P2_LANES;
    size_t pos = 4 + (size_t)norm_bytes(lo, cnt);
    if (cap < pos)
        return ENC_FULL;
    if (pos > 4 + (fmt == LKV_FMT_VERSION_P2 ? 2 : 1) * cnt * np)
        dst[pos - 1] = 0; /* v3's pad byte */
    int16_t kk[LKV_P2_LANES][LKV_DIM_MAX];
    uint8_t cc[LKV_P2_LANES][LKV_DIM_MAX / 8];
    float x[LKV_DIM_MAX];
    p2_piece pc, pch;
#if defined(LKV_P2_SIMD)
    int16_t kt[LKV_DIM_MAX * LKV_P2_LANES]; /* a full slot's points, symbol-major */
    uint8_t ct[LKV_DIM_MAX / 8 * LKV_P2_LANES];
#endif
    for (uint32_t j = 0; j < np; j++) {
        const lkv_p2_model *m = model_of(ms, j);
        if (!m)
            return ENC_INTERNAL;
        const uint32_t pd = m->dim, off = sp->off[j];
        uint32_t state[LKV_P2_LANES];
        for (size_t l = 0; l < nl; l++)
            state[l] = LKV_P2_RANS_LOW;
        piece_rotated(m, &pc);
        const size_t start = pos, hdr = piece_hdr(lo, pd, 0);
        int chan = 0, pts = PTS_NONE;
        if (hdr) {
            /* Version 4: the channel domain where the estimate says it is
             * the shorter (est_channel), else the rotated one; on a SIMD
             * path the estimate has put the full slots' points of the mode
             * it guessed in ms->b.ck. */
            int r = est_channel(ms, m, j, dt, src, first, cnt, dst + 4, &chan, ks, &pts);
            size_t clen = 0;
            if (r == ENC_OK && chan)
                r = encode_channel(ms, m, j, dt, src, first, cnt, &pch, &clen, ks, pts == PTS_CHAN);
            if (r != ENC_OK)
                return r;
            if (chan) {
                if (cap - start < clen)
                    return ENC_FULL;
                memcpy(dst + start, ms->b.cout, clen);
                pos = start + clen;
                continue;
            }
        }
        if (hdr) { /* version 4: the rotated mode's header, a mode 0 and a pad */
            if (cap < pos + hdr)
                return ENC_FULL;
            memset(dst + pos, 0, hdr);
            pos += hdr;
        }
        const size_t limit = pos + 4 * nl;
        size_t wp = cap;
        if (cap < limit)
            return ENC_FULL;
        for (size_t k = nslots; k-- > 0;) {
            const size_t nk =
                cnt - k * LKV_P2_LANES < LKV_P2_LANES ? cnt - k * LKV_P2_LANES : LKV_P2_LANES;
#if defined(LKV_P2_SIMD)
            /* ks->width vectors at a time on a SIMD path; the same points,
             * symbol-major for a full slot, whose rANS is vectorised too. */
            const int full = ks && nk == LKV_P2_LANES, rp = full && pts == PTS_ROT;
            const int16_t *ktk = rp ? ms->b.ck + k * SLOT_K : kt;
            const uint8_t *ctk = rp ? ms->b.cc + k * SLOT_C : ct;
            if (rp) {
                /* points and norm codes from est_channel */
            } else if (ks) {
                const unsigned wd = ks->width;
                for (size_t l0 = 0; l0 < nk; l0 += wd) {
                    const unsigned gc = nk - l0 < wd ? (unsigned)(nk - l0) : wd;
                    const uint8_t *rows[LKV_P2_WIDTH_MAX];
                    uint16_t code[LKV_P2_WIDTH_MAX];
                    for (unsigned l = 0; l < wd; l++)
                        rows[l] =
                            src +
                            ((first + k * LKV_P2_LANES + l0 + (l < gc ? l : 0)) * dim + off) * esz;
                    if (ks->quantise(m, fmt, 0.0f, dt, rows, gc, code, full ? NULL : kk + l0,
                                     full ? NULL : cc + l0, full ? kt + l0 : NULL,
                                     full ? ct + l0 : NULL))
                        return ENC_BAD_VECTOR;
                    for (unsigned l = 0; l < gc; l++)
                        norm_code_put(lo, dst + 4, k * LKV_P2_LANES + l0 + l, j, code[l]);
                }
            } else
#else
            (void)ks;
#endif
                for (size_t l = 0; l < nk; l++) {
                    const size_t v = k * LKV_P2_LANES + l;
                    const uint8_t *row = src + ((first + v) * dim + off) * esz;
                    uint32_t bad = 0;
                    uint16_t code;
                    if (!lkv_load_vec(dt, row, 0, pd, x, &bad) ||
                        !quantise(m, fmt, 0.0f, x, &code, kk[l], cc[l]))
                        return ENC_BAD_VECTOR;
                    norm_code_put(lo, dst + 4, v, j, code);
                }
#if defined(LKV_P2_SIMD)
            /* A full slot on a SIMD path: the same symbols and words,
             * written in the same places; full exactly when the scalar is. */
            if (full) {
                const int r =
                    code_slot_simd(ks, m, vtab_of(ms, j), NULL, ktk, ctk, state, dst, &wp, limit);
                if (r != ENC_OK)
                    return r;
                continue;
            }
#endif
            const int r = code_slot(&pc, m, nk, kk[0], LKV_DIM_MAX, cc[0], LKV_DIM_MAX / 8, state,
                                    dst, &wp, limit);
            if (r != ENC_OK)
                return r;
        }
        for (size_t l = 0; l < nl; l++)
            st32(dst + pos + 4 * l, state[l]);
        const size_t wlen = cap - wp;
        memmove(dst + limit, dst + wp, wlen);
        pos = limit + wlen;
    }
    st32(dst, (uint32_t)(pos - 4));
    *len = pos;
    return ENC_OK;
}

/* The first vector of first..end-1 that cannot be coded, in order, as
 * profile 1 reports it. */
static lkv_status first_bad(const p2_layout *lo, lkv_dtype dt, const void *src, size_t first,
                            size_t end, lkv_diag *diag)
{
    float x[LKV_DIM_MAX];
    for (size_t i = first; i < end; i++) {
        uint32_t bad = 0;
        if (!lkv_load_vec(dt, src, i, lo->split.dim, x, &bad))
            return lkv_fail(diag, LKV_ERR_NONFINITE, i,
                            "tensor.data: vector %zu element %u is NaN or Inf", i, bad);
        for (uint32_t j = 0; j < lo->split.count; j++) {
            float r;
            uint16_t code;
            if (!piece_norm(x + lo->split.off[j], lo->split.d[j].p.dim, lo->fmt, &code, &r))
                return lkv_fail(diag, LKV_ERR_NORM_OVERFLOW, i,
                                lo->fmt == LKV_FMT_VERSION_P2
                                    ? "tensor.data: vector %zu has norm >= 65520 (fp16 overflow)"
                                    : "tensor.data: vector %zu has norm above 3.6e9 (2^31.75, "
                                      "the norm code's top)",
                                i);
        }
    }
    return lkv_fail(diag, LKV_ERR_INTERNAL, UINT64_MAX, "profile=2: a vector failed to code");
}

static lkv_status p2_check(const lkv_params *p, lkv_dtype dt, lkv_diag *diag)
{
    lkv_status st = lkv_params_check(p, diag);
    if (st == LKV_OK && lkv_profile_of(p) != LKV_PROFILE_2)
        st = lkv_fail(diag, LKV_ERR_VARIANT, UINT64_MAX,
                      "profile=%u given to a profile 2 call (want profile=2)", p->profile);
    if (st == LKV_OK)
        st = lkv_dtype_check((int)dt, diag);
    return st;
}

/* The path a call runs: isa, or the best this CPU has for AUTO. Profile 2
 * has scalar, AVX2 and AVX-512 kernels. */
static lkv_status p2_isa(lkv_isa isa, lkv_isa *out, lkv_diag *diag)
{
    if (isa == LKV_ISA_AUTO)
        isa = lkv_isa_best();
    if (!lkv_isa_supported(isa))
        return lkv_fail(diag, LKV_ERR_ISA, UINT64_MAX, "isa=%s is not supported here",
                        lkv_isa_name(isa));
    *out = isa;
    return LKV_OK;
}

lkv_status lkv_p2_encode(const lkv_params *p, lkv_dtype dt, const void *src, size_t n, void *dst,
                         size_t dst_cap, size_t *dst_len, lkv_diag *diag)
{
    return lkv_p2_encode_isa(p, dt, src, n, dst, dst_cap, dst_len, LKV_ISA_AUTO, diag);
}

lkv_status lkv_p2_encode_isa(const lkv_params *p, lkv_dtype dt, const void *src, size_t n,
                             void *dst, size_t dst_cap, size_t *dst_len, lkv_isa isa,
                             lkv_diag *diag)
{
    lkv_status st = p2_check(p, dt, diag);
    if (st == LKV_OK)
        st = p2_isa(isa, &isa, diag);
    if (st != LKV_OK)
        return st;
    p2_layout lo;
    layout_init(p, &lo);
    p2_models ms = {.lo = &lo, .q = p->q};
    models_take(&ms);
    uint8_t *out = (uint8_t *)dst;
    size_t pos = 0;
    for (size_t first = 0; first < n && st == LKV_OK; first += lo.chunk) {
        const size_t cnt = n - first < lo.chunk ? n - first : lo.chunk;
        size_t len = 0;
        const int r = encode_chunk(&ms, dt, (const uint8_t *)src, first, cnt, out + pos,
                                   dst_cap - pos, &len, kernels_of(isa));
        if (r == ENC_BAD_VECTOR)
            st = first_bad(&lo, dt, src, first, first + cnt, diag);
        else if (r == ENC_FULL)
            st = lkv_fail(diag, LKV_ERR_BUFFER_SMALL, first,
                          "profile=2 payload does not fit %zu bytes (chunk of vector %zu)", dst_cap,
                          first);
        else if (r == ENC_NOMEM)
            st = lkv_fail(diag, LKV_ERR_NOMEM, first,
                          "profile=2 format=4: no memory for the channel mode (chunk of "
                          "vector %zu)",
                          first);
        else if (r != ENC_OK)
            st = lkv_fail(diag, LKV_ERR_INTERNAL, first, "profile=2: q=%u dim=%u has no model",
                          p->q, p->dim);
        pos += len;
    }
    models_free(&ms);
    if (st == LKV_OK && dst_len)
        *dst_len = pos;
    return st;
}

/* ------------------------------------------------------------------------ */
/* Decoder                                                                   */

typedef struct p2_reader {
    const uint8_t *body;
    size_t pos, len;
} p2_reader;

/* Decodes one symbol of table t; the slot's bin, before the refill. */
static inline uint32_t rans_bin(const lkv_p2_table *t, uint32_t *x)
{
    const uint32_t slot = *x & (LKV_P2_PROB_ONE - 1u);
    uint32_t s = t->lut[slot >> LKV_P2_LUT_SHIFT];
    while (t->cum[s + 1] <= slot)
        s++;
    *x = (t->cum[s + 1] - t->cum[s]) * (*x >> LKV_P2_PROB_BITS) + slot - t->cum[s];
    return s;
}

static inline uint32_t rans_raw(uint32_t b, uint32_t *x)
{
    const uint32_t slot = *x & (LKV_P2_PROB_ONE - 1u);
    const uint32_t sh = LKV_P2_PROB_BITS - b;
    *x = ((*x >> LKV_P2_PROB_BITS) << sh) + (slot & ((1u << sh) - 1u));
    return slot >> sh;
}

/* Refills x from the word stream at *pos (body[0..len)); 0 when the chunk
 * ends first. Callers keep pos in a local: through a pointer it would be
 * reloaded after every byte load, which may alias anything. */
static inline int refill(uint32_t *x, const uint8_t *body, size_t len, size_t *pos)
{
    if (*x < LKV_P2_RANS_LOW) {
        if (len - *pos < 2)
            return 0;
        *x = (*x << 16) | ld16(body + *pos);
        *pos += 2;
    }
    return 1;
}

/* One coordinate of every lane (its model m): bin then raw bits, lane by
 * lane. */
static int decode_coord(const lkv_p2_model *m, size_t nk, const uint8_t *cs, const uint8_t *tab,
                        uint32_t *state, p2_reader *rd, uint32_t *u)
{
    const uint8_t *const body = rd->body;
    const size_t len = rd->len;
    size_t pos = rd->pos;
    for (size_t l = 0; l < nk; l++) {
        const lkv_p2_table *t = &m->t[cs[l]][tab[l]];
        uint32_t x = state[l];
        u[l] = rans_bin(t, &x) << t->b;
        if (!refill(&x, body, len, &pos))
            return 0;
        state[l] = x;
    }
    const uint32_t b = m->t[0][tab[0]].b;
    if (b)
        for (size_t l = 0; l < nk; l++) {
            uint32_t x = state[l];
            u[l] |= rans_raw(b, &x);
            if (!refill(&x, body, len, &pos))
                return 0;
            state[l] = x;
        }
    rd->pos = pos;
    for (size_t l = 0; l < nk; l++)
        if (u[l] >= m->t[cs[l]][tab[l]].n)
            return 0;
    return 1;
}

/* Decodes one chunk's body (len bytes) into vectors first .. first+cnt-1. */
static lkv_status decode_chunk(p2_models *ms, const uint8_t *body, size_t len, size_t cnt,
                               lkv_dtype dt, uint8_t *dst, size_t first, size_t at,
                               const p2_kern *ks, lkv_diag *diag)
{
    const p2_layout *lo = ms->lo;
    const lkv_split *sp = &lo->split;
    const uint32_t np = sp->count, dim = sp->dim, fmt = lo->fmt;
    const size_t esz = lkv_dtype_size(dt);
    const size_t nl = cnt < LKV_P2_LANES ? cnt : LKV_P2_LANES;
    const size_t nslots = (cnt + LKV_P2_LANES - 1) / LKV_P2_LANES;
    p2_reader rd = {body, (size_t)norm_bytes(lo, cnt), len};
    if (rd.pos > len)
        return lkv_fail(diag, LKV_ERR_CORRUPT, at,
                        "coded: chunk at byte %zu: %zu bytes hold no "
                        "%zu norms",
                        at, len, cnt * np);
    if (!norms_ok(lo, body, cnt)) {
        if (fmt != LKV_FMT_VERSION_P2)
            return lkv_fail(diag, LKV_ERR_CORRUPT, at,
                            "coded: chunk at byte %zu: the pad byte after its norms is 0x%02x, "
                            "not 0",
                            at, body[rd.pos - 1]);
        for (size_t i = 0; i < cnt * np; i++) {
            const uint16_t r16 = ld16(body + 2 * i);
            if (r16 < LKV_F16_EPS_BITS || r16 >= LKV_F16_INF_BITS)
                return lkv_fail(diag, LKV_ERR_CORRUPT, at,
                                "coded: chunk at byte %zu: norm %zu is 0x%04x (not finite, "
                                "positive)",
                                at, i, r16);
        }
    }
    int16_t kk[LKV_P2_LANES][LKV_DIM_MAX];
    uint8_t cc[LKV_P2_LANES][LKV_DIM_MAX / 8];
    float out[LKV_DIM_MAX];
    p2_piece pc;
    for (uint32_t j = 0; j < np; j++) {
        const lkv_p2_model *m = model_of(ms, j);
        if (!m)
            return lkv_fail(diag, LKV_ERR_INTERNAL, UINT64_MAX, "profile=2: no model");
        piece_rotated(m, &pc);
        if (fmt == LKV_FMT_VERSION_P4) {
            /* The piece's header: its mode, in channel mode its levels. */
            const uint8_t mode = len - rd.pos >= 2 ? body[rd.pos] : 0;
            const size_t hdr = piece_hdr(lo, m->dim, mode == 1);
            if (len - rd.pos < hdr)
                return lkv_fail(diag, LKV_ERR_CORRUPT, at,
                                "coded: chunk at byte %zu ends inside the header of piece %u", at,
                                j);
            if (mode > 1)
                return lkv_fail(diag, LKV_ERR_CORRUPT, at,
                                "coded: chunk at byte %zu: piece %u's mode is %u, not 0 (rotated) "
                                "or 1 (channel)",
                                at, j, mode);
            if (hdr > 1 + (mode ? 5 * (size_t)m->dim / 8 : 0) && body[rd.pos + hdr - 1] != 0)
                return lkv_fail(diag, LKV_ERR_CORRUPT, at,
                                "coded: chunk at byte %zu: the pad byte of piece %u's header is "
                                "0x%02x, not 0",
                                at, j, body[rd.pos + hdr - 1]);
            if (mode) {
                uint8_t lv[LKV_DIM_MAX];
                levels_get(body + rd.pos + 1, lv, m->dim);
                if (!piece_channel(ms, m, lv, &pc) || (ks && !piece_vtabs(ms, NULL, m->dim, &pc)))
                    return lkv_fail(diag, LKV_ERR_NOMEM, at,
                                    "profile=2 format=4: no memory for the channel mode (chunk "
                                    "at byte %zu)",
                                    at);
            }
            rd.pos += hdr;
        }
        uint32_t state[LKV_P2_LANES];
        if (len - rd.pos < 4 * nl)
            return lkv_fail(diag, LKV_ERR_CORRUPT, at,
                            "coded: chunk at byte %zu ends inside the states of piece %u", at, j);
        for (size_t l = 0; l < nl; l++) {
            state[l] = ld32(body + rd.pos + 4 * l);
            if (state[l] < LKV_P2_RANS_LOW)
                return lkv_fail(diag, LKV_ERR_CORRUPT, at,
                                "coded: chunk at byte %zu: lane %zu state 0x%08x is below 2^16", at,
                                l, state[l]);
        }
        rd.pos += 4 * nl;
        for (size_t k = 0; k < nslots; k++) {
            const size_t nk =
                cnt - k * LKV_P2_LANES < LKV_P2_LANES ? cnt - k * LKV_P2_LANES : LKV_P2_LANES;
#if defined(LKV_P2_SIMD)
            /* A full slot on a SIMD path: it fails exactly where the scalar
             * steps below would, and the message names only the chunk, so
             * the error is the scalar one. Channel pieces decode with
             * their per-coordinate tables (pc.vc). */
            if (ks && nk == LKV_P2_LANES) {
                const int chan = pc.ch != 0.0f;
                float rn[LKV_P2_LANES];
                uint8_t *rows[LKV_P2_LANES];
                for (size_t l = 0; l < nk; l++) {
                    const size_t v = k * LKV_P2_LANES + l;
                    rn[l] = norm_value(fmt, norm_code_at(lo, body, v, j));
                    rows[l] = dst + ((first + v) * dim + sp->off[j]) * esz;
                }
                if (!ks->slot(m, chan ? NULL : vtab_of(ms, j), chan ? &pc : NULL, body, len,
                              &rd.pos, state, rn, rows, dt))
                    goto corrupt;
                continue;
            }
#else
            (void)ks;
#endif
            for (uint32_t b = 0; b < m->nblocks; b++) {
                uint8_t cs[LKV_P2_LANES], tab[LKV_P2_LANES], par[LKV_P2_LANES];
                uint32_t u[LKV_P2_LANES];
                const lkv_p2_model *const *mc = pc.mc + 8 * b;
                for (size_t l = 0; l < nk; l++) {
                    const uint32_t slot = state[l] & (LKV_P2_PROB_ONE - 1u);
                    const uint32_t f1 = pc.f1[b], f0 = LKV_P2_PROB_ONE - f1;
                    cs[l] = slot >= f0;
                    state[l] = cs[l] ? f1 * (state[l] >> LKV_P2_PROB_BITS) + slot - f0
                                     : f0 * (state[l] >> LKV_P2_PROB_BITS) + slot;
                    if (!refill(&state[l], rd.body, rd.len, &rd.pos))
                        goto truncated;
                    cc[l][b] = cs[l];
                    tab[l] = 0;
                    par[l] = 0;
                }
                for (int i = 0; i < 7; i++) {
                    if (!decode_coord(mc[i], nk, cs, tab, state, &rd, u))
                        goto corrupt;
                    for (size_t l = 0; l < nk; l++) {
                        const int32_t kv = mc[i]->t[cs[l]][0].jlo + (int32_t)u[l];
                        kk[l][8 * b + (uint32_t)i] = (int16_t)kv;
                        par[l] ^= (uint8_t)((uint32_t)kv & 1u);
                    }
                }
                for (size_t l = 0; l < nk; l++)
                    tab[l] = (uint8_t)(1 + par[l]);
                if (!decode_coord(mc[7], nk, cs, tab, state, &rd, u))
                    goto corrupt;
                for (size_t l = 0; l < nk; l++) {
                    const int32_t jv = mc[7]->t[cs[l]][tab[l]].jlo + (int32_t)u[l];
                    kk[l][8 * b + 7] = (int16_t)(2 * jv + par[l]);
                }
            }
            for (size_t l = 0; l < nk; l++) {
                const size_t v = k * LKV_P2_LANES + l;
                reconstruct(m, pc.ch, kk[l], cc[l], norm_value(fmt, norm_code_at(lo, body, v, j)),
                            out);
                lkv_store_vec(dt, dst + ((first + v) * dim + sp->off[j]) * esz, 0, m->dim, out);
            }
        }
        for (size_t l = 0; l < nl; l++)
            if (state[l] != LKV_P2_RANS_LOW)
                return lkv_fail(diag, LKV_ERR_CORRUPT, at,
                                "coded: chunk at byte %zu: lane %zu of piece %u ends in state "
                                "0x%08x, not 0x%08x",
                                at, l, j, state[l], LKV_P2_RANS_LOW);
    }
    if (rd.pos != len)
        return lkv_fail(diag, LKV_ERR_CORRUPT, at,
                        "coded: chunk at byte %zu: %zu bytes follow its last symbol", at,
                        len - rd.pos);
    return LKV_OK;
truncated:
corrupt:
    return lkv_fail(diag, LKV_ERR_CORRUPT, at,
                    "coded: chunk at byte %zu: the symbol stream is corrupt (ends early or "
                    "leaves the box)",
                    at);
}

#if defined(LKV_P2_SIMD)
/*
 * Two full chunks decoded side by side on a SIMD path: their streams are
 * independent, so each slot runs both (ks->slot2). Every check
 * of decode_chunk is made, but without a message: 0 when either chunk fails
 * one, and the caller decodes the two one after the other, which reports the
 * first error exactly as the scalar path does. body[c] and len[c]: chunk c's
 * body (after its length word).
 */
static int decode_pair(p2_models *ms, const p2_kern *ks, const uint8_t *const *body,
                       const size_t *len, lkv_dtype dt, uint8_t *dst, size_t first)
{
    const p2_layout *lo = ms->lo;
    const lkv_split *sp = &lo->split;
    const uint32_t np = sp->count, dim = sp->dim, fmt = lo->fmt;
    const size_t esz = lkv_dtype_size(dt), cnt = lo->chunk;
    size_t pos[2];
    p2_piece pcs[2];
    for (int c = 0; c < 2; c++) {
        pos[c] = (size_t)norm_bytes(lo, cnt);
        if (pos[c] > len[c] || !norms_ok(lo, body[c], cnt))
            return 0;
    }
    for (uint32_t j = 0; j < np; j++) {
        const lkv_p2_model *m = model_of(ms, j);
        if (!m)
            return 0;
        const lkv_p2_vtab *vt = vtab_of(ms, j);
        uint32_t state[2][LKV_P2_LANES];
        int chan = 0;
        for (int c = 0; c < 2; c++) {
            /* version 4: the piece's header, as decode_chunk reads it */
            piece_rotated(m, &pcs[c]);
            if (fmt == LKV_FMT_VERSION_P4) {
                const uint8_t mode = len[c] - pos[c] >= 2 ? body[c][pos[c]] : 0;
                const size_t hdr = piece_hdr(lo, m->dim, mode == 1);
                if (len[c] - pos[c] < hdr || mode > 1 ||
                    (hdr > 1 + (mode ? 5 * (size_t)m->dim / 8 : 0) &&
                     body[c][pos[c] + hdr - 1] != 0))
                    return 0;
                if (mode) {
                    uint8_t lv[LKV_DIM_MAX];
                    levels_get(body[c] + pos[c] + 1, lv, m->dim);
                    if (!piece_channel(ms, m, lv, &pcs[c]))
                        return 0;
                    chan = 1;
                }
                pos[c] += hdr;
            }
            if (len[c] - pos[c] < 4 * LKV_P2_LANES)
                return 0;
            for (size_t l = 0; l < LKV_P2_LANES; l++) {
                state[c][l] = ld32(body[c] + pos[c] + 4 * l);
                if (state[c][l] < LKV_P2_RANS_LOW)
                    return 0;
            }
            pos[c] += 4 * LKV_P2_LANES;
        }
        /* a channel piece in either: both decode with their pieces */
        for (int c = 0; c < 2 && chan; c++)
            if (!piece_vtabs(ms, vt, m->dim, &pcs[c]))
                return 0;
        for (size_t k = 0; k < cnt / LKV_P2_LANES; k++) {
            float rn[2][LKV_P2_LANES];
            uint8_t *rows[2][LKV_P2_LANES];
            lkv_p2_slot_io io[2];
            for (size_t c = 0; c < 2; c++) {
                for (size_t l = 0; l < LKV_P2_LANES; l++) {
                    const size_t v = k * LKV_P2_LANES + l;
                    rn[c][l] = norm_value(fmt, norm_code_at(lo, body[c], v, j));
                    rows[c][l] = dst + ((first + c * cnt + v) * dim + sp->off[j]) * esz;
                }
                io[c] = (lkv_p2_slot_io){
                    body[c], len[c], pos[c], state[c], rn[c], rows[c], chan ? &pcs[c] : NULL};
            }
            if (!ks->slot2(m, vt, io, dt))
                return 0;
            pos[0] = io[0].pos;
            pos[1] = io[1].pos;
        }
        for (int c = 0; c < 2; c++)
            for (size_t l = 0; l < LKV_P2_LANES; l++)
                if (state[c][l] != LKV_P2_RANS_LOW)
                    return 0;
    }
    return pos[0] == len[0] && pos[1] == len[1];
}

/* Whether every piece is small enough for decode_pair's stack. */
static int pair_fits(const p2_layout *lo)
{
    for (uint32_t j = 0; j < lo->split.count; j++)
        if (lo->split.d[j].p.dim > LKV_P2_PAIR_DIM_MAX)
            return 0;
    return 1;
}
#endif

static lkv_status chunk_size(const p2_layout *lo, const uint8_t *src, size_t avail, size_t cnt,
                             size_t at, size_t *bytes, lkv_diag *diag)
{
    if (avail < 4)
        return lkv_fail(diag, LKV_ERR_TRUNCATED, at,
                        "coded: chunk at byte %zu: %zu bytes hold no length", at, avail);
    const uint32_t body = ld32(src);
    const uint64_t bound = body_bound(lo, cnt);
    if (body > bound)
        return lkv_fail(diag, LKV_ERR_CORRUPT, at,
                        "coded: chunk at byte %zu: length %u exceeds the bound %llu of %zu vectors",
                        at, body, (unsigned long long)bound, cnt);
    if (avail - 4 < body)
        return lkv_fail(diag, LKV_ERR_TRUNCATED, at,
                        "coded: chunk at byte %zu: length %u, %zu bytes left", at, body, avail - 4);
    *bytes = 4 + (size_t)body;
    return LKV_OK;
}

lkv_status lkv_p2_chunk_size(const lkv_params *p, const void *src, size_t src_len,
                             size_t n_in_chunk, size_t *chunk_bytes, lkv_diag *diag)
{
    lkv_status st = p2_check(p, LKV_DTYPE_FP32, diag);
    if (st != LKV_OK)
        return st;
    p2_layout lo;
    layout_init(p, &lo);
    if (n_in_chunk == 0 || n_in_chunk > lo.chunk)
        return lkv_fail(diag, LKV_ERR_INVALID_ARGUMENT, UINT64_MAX,
                        "n_in_chunk=%zu is outside 1..%u", n_in_chunk, lo.chunk);
    return chunk_size(&lo, (const uint8_t *)src, src_len, n_in_chunk, 0, chunk_bytes, diag);
}

lkv_status lkv_p2_decode(const lkv_params *p, const void *src, size_t src_len, size_t n,
                         lkv_dtype dt, void *dst, lkv_diag *diag)
{
    return lkv_p2_decode_isa(p, src, src_len, n, dt, dst, LKV_ISA_AUTO, diag);
}

lkv_status lkv_p2_decode_isa(const lkv_params *p, const void *src, size_t src_len, size_t n,
                             lkv_dtype dt, void *dst, lkv_isa isa, lkv_diag *diag)
{
    lkv_status st = p2_check(p, dt, diag);
    if (st == LKV_OK)
        st = p2_isa(isa, &isa, diag);
    if (st != LKV_OK)
        return st;
    p2_layout lo;
    layout_init(p, &lo);
    p2_models ms = {.lo = &lo, .q = p->q};
    models_take(&ms);
    const uint8_t *in = (const uint8_t *)src;
    size_t pos = 0;
    const p2_kern *ks = kernels_of(isa);
#if defined(LKV_P2_SIMD)
    const int pair = ks && ks->slot2 && pair_fits(&lo);
#endif
    for (size_t first = 0; first < n; first += lo.chunk) {
        const size_t cnt = n - first < lo.chunk ? n - first : lo.chunk;
        size_t bytes = 0;
#if defined(LKV_P2_SIMD)
        if (pair && n - first >= 2 * (size_t)lo.chunk) {
            size_t b1 = 0;
            if (chunk_size(&lo, in + pos, src_len - pos, cnt, pos, &bytes, NULL) == LKV_OK &&
                chunk_size(&lo, in + pos + bytes, src_len - pos - bytes, cnt, pos + bytes, &b1,
                           NULL) == LKV_OK) {
                const uint8_t *const body[2] = {in + pos + 4, in + pos + bytes + 4};
                const size_t blen[2] = {bytes - 4, b1 - 4};
                if (decode_pair(&ms, ks, body, blen, dt, (uint8_t *)dst, first)) {
                    pos += bytes + b1;
                    first += lo.chunk;
                    continue;
                }
            }
        }
#endif
        st = chunk_size(&lo, in + pos, src_len - pos, cnt, pos, &bytes, diag);
        if (st == LKV_OK)
            st = decode_chunk(&ms, in + pos + 4, bytes - 4, cnt, dt, (uint8_t *)dst, first, pos, ks,
                              diag);
        if (st != LKV_OK)
            break;
        pos += bytes;
    }
    models_free(&ms);
    if (st != LKV_OK)
        return st;
    if (pos != src_len)
        return lkv_fail(diag, LKV_ERR_CORRUPT, pos,
                        "coded: %zu trailing bytes after the last chunk", src_len - pos);
    return LKV_OK;
}
