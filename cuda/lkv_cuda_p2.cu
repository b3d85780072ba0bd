/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_cuda_p2.cu - codec profile 2 on the GPU (lkv_cuda_p2.h), byte-identical
 * to codec/p2.c, in both of its container versions: 3 (chunks of 256
 * vectors, one-byte norm codes) and 2 (chunks of 128, fp16 norms). The
 * version comes from the model's parameters into the Plan (chunk, slog,
 * v3), so one instantiation of each kernel serves both.
 *
 * Each direction is two kernels with the points between them (int16
 * 2k + c per coordinate: Rows below), so that the serial rANS work runs at
 * the occupancy its registers allow instead of sharing the SM with a
 * shared-memory transpose:
 *   - vector kernels (quantise, reconstruct): one warp per slot of 32
 *     vectors; D/E lanes hold one vector (E contiguous elements each, so
 *     every lane holds whole E8 blocks: model_layout); norm, division,
 *     butterfly and closest point (encode) or the inverse (decode), across
 *     lanes by xor shuffles, in profile 2's operation order;
 *   - rANS kernels: one warp per chunk (up to 256 vectors = 8 slots of
 *     32; version 2: 128 = 4), lane l codes vector l of each slot, all lanes in lockstep over
 *     the same symbol positions (a block's symbol count does not depend on
 *     its point). The shared word stream's positions come from a ballot of
 *     the lanes that move a word and a popcount of the lanes before them in
 *     the C coder's lane order: ascending when decoding, descending when
 *     encoding. A block's warps loop over chunks (a persistent grid), so
 *     the models are copied to shared memory once per block.
 * Encode writes each chunk into a worst-case scratch slot (words backwards
 * from its end; those of every piece but the last then moved behind its
 * states, as p2.c does), the chunk sizes are scanned (cub) into offsets,
 * and a copy kernel compacts: the slot's head, then the last piece's words
 * from where the rANS kernel left them.
 *
 * Exactness: the float operations are p2.c's, one for one, with the
 * explicit _rn intrinsics (no contraction); sums of squares pair in index
 * order, and a cross-lane pair adds the same two values in either lane
 * (IEEE addition commutes). Everything after the closest point is integer.
 */
#if !defined(LKV_P2_EMU) /* tests/gpu/p2_emu.cpp runs the kernels on the host */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cub/device/device_scan.cuh>
#endif

#include <stdlib.h>
#include <string.h>

#include "lkv_codec_backend.h"
#include "lkv_codec_p2.h"
#include "lkv_cuda_block.cuh"
#if !defined(LKV_P2_EMU)
#include "lkv_cuda_internal.h"
#endif
#include "lkv_cuda_p2.h"

#if !defined(LKV_P2_EMU)
#define LKV_P2_SMEM(name) extern __shared__ __align__(16) uint8_t name[]
#endif

namespace
{

constexpr uint32_t kFull = 0xffffffffu;
constexpr uint32_t kLanes = LKV_P2_LANES;
constexpr uint32_t kVecWarps = 8;   /* warps per block of a vector kernel */
constexpr uint32_t kRansWarps = 16; /* warps per block of a rANS kernel */
/* rANS blocks resident per SM (__launch_bounds__): two 16-warp blocks hold
 * the kernels to 64 registers. Three (42 registers) spilled and decoded
 * slower on an H100 (1.13 against 1.07 ms for 2^20 vectors). */
constexpr uint32_t kRansBlocksPerSm = 2;
/* Reconstruct blocks resident per SM (__launch_bounds__) for up to 16
 * elements a lane: four hold it to 64 registers (32 warps), without a
 * spill. Left free it took 74 once it read the row's first point from a
 * lane's own load (H100, 2^20 x 128 bf16: 24 warps, 269 us; bounded, 245
 * us, against main's 265). At 32 elements a lane (D > 512) it would spill:
 * left free there. */
constexpr uint32_t kReconBlocksPerSm = 4;
/* models held in shared memory when at most this many pieces */
constexpr uint32_t kSmemModels = 2;

struct Piece {
    uint32_t dim, off, sym, e, lpv, log2d;
};

/* Constants of one call, passed by value. The container version enters
 * here only: chunk (vectors per chunk, 32 << slog: the kernels shift by
 * slog, which in the rANS kernels took fewer registers than a multiply)
 * and v3 (norm codes of one byte, the field padded to an even size, and
 * the divisor r^(k); else fp16 norms and the divisor r). */
struct Plan {
    uint32_t np, dim, esz, dt, fast, full, dmax, smem_models, warps;
    uint32_t chunk, slog, v3;
    /* v4: container version 4 (v3 is set too: its norms and chunks), whose
     * pieces carry a mode; the models array then holds each piece's 32
     * channel-level models after the np rotated ones (level_models) */
    uint32_t v4;
    uint64_t n, nchunks, cap; /* cap: bytes of one chunk's scratch slot */
    Piece pc[LKV_PIECES_MAX];
};

/* Bytes of the norm field of a chunk of cnt vectors (p2.c norm_bytes). */
__host__ __device__ __forceinline__ uint32_t norm_field(const Plan &P, uint32_t cnt)
{
    const uint32_t k = cnt * P.np;
    return P.v3 ? (k + 1u) & ~1u : 2u * k;
}

__device__ __forceinline__ uint32_t lanemask_lt()
{
#if defined(LKV_P2_EMU)
    return emu_lanemask_lt();
#else
    uint32_t m;
    asm("mov.u32 %0, %%lanemask_lt;" : "=r"(m));
    return m;
#endif
}

__device__ __forceinline__ uint32_t lanemask_gt()
{
#if defined(LKV_P2_EMU)
    return emu_lanemask_gt();
#else
    uint32_t m;
    asm("mov.u32 %0, %%lanemask_gt;" : "=r"(m));
    return m;
#endif
}

/* Little-endian u32 at a 2-byte aligned address. */
__device__ __forceinline__ uint32_t ld32a2(const uint8_t *p)
{
    const uint16_t *h = reinterpret_cast<const uint16_t *>(p);
    return (uint32_t)h[0] | ((uint32_t)h[1] << 16);
}

__device__ __forceinline__ void st32a2(uint8_t *p, uint32_t v)
{
    uint16_t *h = reinterpret_cast<uint16_t *>(p);
    h[0] = (uint16_t)v;
    h[1] = (uint16_t)(v >> 16);
}

/* ------------------------------------------------------------------------ */
/* Vector arithmetic (lane holds e <= E contiguous elements of a vector of   */
/* lpv lanes; li is the lane's index in its vector)                          */

template <int E>
__device__ __forceinline__ void load_elems(const uint8_t *p, uint32_t dt, int e, bool fast,
                                           float *x)
{
    if (fast) {
        if (dt == LKV_DTYPE_FP32) {
#pragma unroll
            for (int j = 0; j < E / 4; j++)
                if (4 * j < e) {
                    const uint4 v = reinterpret_cast<const uint4 *>(p)[j];
                    x[4 * j] = __uint_as_float(v.x);
                    x[4 * j + 1] = __uint_as_float(v.y);
                    x[4 * j + 2] = __uint_as_float(v.z);
                    x[4 * j + 3] = __uint_as_float(v.w);
                }
            return;
        }
#pragma unroll
        for (int j = 0; j < E / 8; j++)
            if (8 * j < e) {
                const uint4 v = reinterpret_cast<const uint4 *>(p)[j];
                const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    if (dt == LKV_DTYPE_BF16) {
                        x[8 * j + 2 * i] = __uint_as_float(w[i] << 16);
                        x[8 * j + 2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
                    } else {
                        x[8 * j + 2 * i] =
                            __half2float(__ushort_as_half((unsigned short)(w[i] & 0xffffu)));
                        x[8 * j + 2 * i + 1] =
                            __half2float(__ushort_as_half((unsigned short)(w[i] >> 16)));
                    }
                }
            }
        return;
    }
#pragma unroll
    for (int i = 0; i < E; i++)
        if (i < e) {
            if (dt == LKV_DTYPE_FP32) {
                x[i] = reinterpret_cast<const float *>(p)[i];
            } else {
                const uint16_t h = reinterpret_cast<const uint16_t *>(p)[i];
                x[i] = dt == LKV_DTYPE_BF16 ? __uint_as_float((uint32_t)h << 16)
                                            : __half2float(__ushort_as_half(h));
            }
        }
}

/* fp32 -> fp16 / bf16 bits, round to nearest even, by the hardware's
 * conversions: for finite inputs and infinities (the only ones they get
 * here) the same bits as lkv_math_f32_to_f16 / _bf16, which the emulator
 * uses. */
__device__ __forceinline__ uint32_t f16_bits(float f)
{
#if defined(LKV_P2_EMU)
    return lkv_math_f32_to_f16(__float_as_uint(f));
#else
    return __half_as_ushort(__float2half_rn(f));
#endif
}

__device__ __forceinline__ uint32_t bf16_bits(float f)
{
#if defined(LKV_P2_EMU)
    return lkv_math_f32_to_bf16(__float_as_uint(f));
#else
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
#endif
}

/* Rounds to dt with lkv_store_vec's conversions (nearest even). */
template <int E>
__device__ __forceinline__ void store_elems(uint8_t *p, uint32_t dt, int e, bool fast,
                                            const float *x)
{
    if (dt == LKV_DTYPE_FP32) {
#pragma unroll
        for (int j = 0; j < E / 4; j++)
            if (4 * j < e) {
                if (fast)
                    reinterpret_cast<uint4 *>(p)[j] =
                        make_uint4(__float_as_uint(x[4 * j]), __float_as_uint(x[4 * j + 1]),
                                   __float_as_uint(x[4 * j + 2]), __float_as_uint(x[4 * j + 3]));
                else
#pragma unroll
                    for (int i = 0; i < 4; i++)
                        reinterpret_cast<float *>(p)[4 * j + i] = x[4 * j + i];
            }
        return;
    }
#pragma unroll
    for (int j = 0; j < E / 8; j++)
        if (8 * j < e) {
            uint32_t w[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const float a = x[8 * j + 2 * i], b = x[8 * j + 2 * i + 1];
                const uint32_t ha = dt == LKV_DTYPE_BF16 ? bf16_bits(a) : f16_bits(a);
                const uint32_t hb = dt == LKV_DTYPE_BF16 ? bf16_bits(b) : f16_bits(b);
                w[i] = ha | (hb << 16);
            }
            if (fast) {
                reinterpret_cast<uint4 *>(p)[j] = make_uint4(w[0], w[1], w[2], w[3]);
            } else {
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    reinterpret_cast<uint16_t *>(p)[8 * j + 2 * i] = (uint16_t)w[i];
                    reinterpret_cast<uint16_t *>(p)[8 * j + 2 * i + 1] = (uint16_t)(w[i] >> 16);
                }
            }
        }
}

/* Profile 1's pairwise sum of squares over index order: the lane's aligned
 * subtree, then the subtrees of neighbouring lanes. */
template <int E> __device__ __forceinline__ float sum_squares(const float *x, int e, int lpv)
{
    float t[E / 2];
#pragma unroll
    for (int i = 0; i < E / 2; i++)
        t[i] = __fadd_rn(__fmul_rn(x[2 * i], x[2 * i]), __fmul_rn(x[2 * i + 1], x[2 * i + 1]));
#pragma unroll
    for (int len = E / 2; len > 1; len >>= 1)
        if (len <= e / 2) {
#pragma unroll
            for (int i = 0; i < len / 2; i++)
                t[i] = __fadd_rn(t[2 * i], t[2 * i + 1]);
        }
    float s = t[0];
    for (int d = 1; d < lpv; d <<= 1)
        s = __fadd_rn(s, __shfl_xor_sync(kFull, s, d));
    return s;
}

/* The butterfly (stages h = 1 .. D/2, (a + b, a - b)) without a scale. */
template <int E> __device__ __forceinline__ void butterfly(float *x, int e, int lpv, int li)
{
#pragma unroll
    for (int h = 1; h < E; h <<= 1)
        if (h < e) {
#pragma unroll
            for (int i = 0; i < E; i++)
                if ((i & h) == 0 && i + h < E) {
                    const float a = x[i], b = x[i + h];
                    x[i] = __fadd_rn(a, b);
                    x[i + h] = __fsub_rn(a, b);
                }
        }
    /* across lanes, the lower lane of a pair x + o and the upper o - x, as
     * one o + sg x: the product by +-1 is exact, so it rounds as the sum
     * and the difference do, zeros included (one FFMA where a sum, a
     * difference and a select took three) */
    for (int d = 1; d < lpv; d <<= 1) {
        const float sg = (li & d) != 0 ? -1.0f : 1.0f;
#pragma unroll
        for (int i = 0; i < E; i++)
            if (i < e)
                x[i] = __fmaf_rn(sg, x[i], __shfl_xor_sync(kFull, x[i], d));
    }
}

/* a / b correctly rounded, y = lkv_recip_of(b): lkv_div_by (three
 * instructions) for |a| >= amin = div_min(b), IEEE division below that and
 * for zeros (lkv_div_by would give +0 for -0). lkv_div_by is exact for
 * |a| >= 2^-100 while its quotients stay normal (lkv_cuda_block.cuh: the
 * significands by tests/gpu/div_exhaustive, the exponents by its scaling
 * argument); its stated b < 2^17 ensures that, but version 3's divisor
 * r^(k) reaches 2^31.75, so amin also keeps |a / b| >= 2^-124:
 * amin = max(2^-100, b 2^-124), which is 2^-100 for every b < 2^24 (every
 * version 2 norm, below 65520). */
constexpr float kDivMin = 7.88860905221011805411728565283e-31f;  /* 2^-100 */
constexpr float kDivQuot = 4.70197740328915003187494614623e-38f; /* 2^-124 */

__device__ __forceinline__ float div_min(float b)
{
    return fmaxf(kDivMin, __fmul_rn(b, kDivQuot));
}

__device__ __forceinline__ float div_exact(float a, float b, float y, float amin)
{
    return fabsf(a) >= amin ? lkv_div_by(a, b, y) : __fdiv_rn(a, b);
}

/* ------------------------------------------------------------------------ */
/* Shared memory and the points between the kernels                          */

/* Copies n objects of type T (the models, or the decoder's tables) to
 * shared memory when SM (they fit: P.smem_models) and returns the base the
 * warps read them from. A compile-time choice, so that the reads of the
 * tables are shared-memory loads, not generic ones (which wait on the long
 * scoreboard). */
template <bool SM, class T>
__device__ __forceinline__ const T *stage(uint32_t n, const T *g, uint8_t *smem)
{
    if (!SM)
        return g;
    const uint32_t words = (uint32_t)(n * sizeof(T) / 4);
    const uint32_t *src = reinterpret_cast<const uint32_t *>(g);
    uint32_t *dst = reinterpret_cast<uint32_t *>(smem);
    for (uint32_t i = threadIdx.x; i < words; i += blockDim.x)
        dst[i] = src[i];
    __syncthreads();
    return reinterpret_cast<const T *>(smem);
}

__host__ __device__ constexpr size_t align16(size_t v)
{
    return (v + 15) & ~(size_t)15;
}

__host__ __device__ inline size_t models_smem(const Plan &P)
{
    return P.smem_models ? align16(P.np * sizeof(lkv_p2_model)) : 0;
}

/* ------------------------------------------------------------------------ */
/* Container version 4's channel mode (codec/FORMAT.md, p2.c encode_channel) */

/* The LKV_P2_LEVELS channel-level models of piece j, in global memory after
 * the np rotated models (too many for shared memory: 32 of about 31 KiB). */
__device__ __forceinline__ const lkv_p2_model *level_models(const Plan &P, const lkv_p2_model *gm,
                                                            uint32_t j)
{
    return gm + P.np + (size_t)j * LKV_P2_LEVELS;
}

/* The channel mode's scale c = fp32(fp32(Q / 4) sqrt(D)) (p2.c chan_scale). */
__device__ __forceinline__ float chan_scale(const lkv_p2_model *m)
{
    return __fmul_rn(__fmul_rn(m->qf, 0.25f), __uint_as_float(lkv_p2_sqrt_dim_bits(m->log2d)));
}

/* A channel-mode piece's block b, as the rANS kernels read it: the 8 levels
 * of its coordinates (5 bits each, coordinate i at bits 5i; the header's
 * own 40 bits of the block) and the coset frequency f1 at bits 40..54. One
 * u64 a block in a per-warp shared array of P.dmax / 8 entries. */
__device__ __forceinline__ uint64_t block_pack(uint64_t lv40, const lkv_p2_model *lev)
{
    double a[8], h[8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const lkv_p2_model *t = lev + ((lv40 >> (5 * i)) & 31u);
        a[i] = t->theta[0];
        h[i] = t->theta[1];
    }
    return lv40 | ((uint64_t)lkv_p2_coset_f1(a, h) << 40);
}

/* Shared bytes of the per-warp block packs (version 4 only). */
__host__ __device__ inline size_t packs_smem(const Plan &P)
{
    return P.v4 ? (size_t)P.warps * (P.dmax / 8) * 8 : 0;
}

/* Bytes of a version 4 piece header (p2.c piece_hdr): the mode byte, in
 * channel mode the levels, padded to an even length. */
__host__ __device__ inline uint32_t piece_hdr(uint32_t dim, bool channel)
{
    return (2u + (channel ? 5u * dim / 8u : 0u)) & ~1u;
}

/* Version 4's estimate of coding the integer n with model m's table t[0][0]
 * (p2.c est_of: lkv_p2_est_cost of n's bin, in 1/16 bit, n clamped to the
 * table). */
__device__ __forceinline__ uint32_t est_of(const lkv_p2_model *m, int32_t n)
{
    const lkv_p2_table *t = &m->t[0][0];
    int32_t u = n - t->jlo;
    u = u < 0 ? 0 : u >= (int32_t)t->n ? (int32_t)t->n - 1 : u;
    return m->est[(uint32_t)u >> t->b];
}

/* Where version 4's channel values n = rint((x / r) c) of vector v wait
 * between the quantise kernel and the mode kernel: in v's chunk's scratch
 * slot, behind its norm field (chan_off, 16-byte aligned), a row of dim
 * int16 per vector of the chunk. The rANS kernel overwrites them only
 * after the mode kernel has read them; model_layout makes the slot hold
 * them. */
__host__ __device__ inline uint32_t chan_off(const Plan &P)
{
    return (uint32_t)align16(4 + norm_field(P, P.chunk));
}

__device__ __forceinline__ int16_t *chan_row(const Plan &P, uint8_t *scratch, uint64_t v,
                                             uint32_t off)
{
    const uint64_t c = v >> (5u + P.slog), l = v & (P.chunk - 1u);
    return reinterpret_cast<int16_t *>(scratch + c * P.cap + chan_off(P) + 2u * (l * P.dim + off));
}

/* The sum of a u32 over the warp's lanes (every lane gets it). */
__device__ __forceinline__ uint32_t warp_sum(uint32_t a)
{
    for (int d = 1; d < 32; d <<= 1)
        a += __shfl_xor_sync(kFull, a, d);
    return a;
}

/* The first point of every row of a channel-mode piece is stored with bit
 * 14 flipped between the rANS decode and the reconstruct: a point lies in
 * [-2L-1, 2L+1], |p2| <= 16371 < 2^14, so its bits 15 and 14 agree, and a
 * flipped one tells the reconstruct (which cannot find the piece's header:
 * it follows the streams of the pieces before it) that the piece is in the
 * channel domain. kDead (0x8000) would be -16384 flipped: no point. */
constexpr uint32_t kChanMark = 0x4000u;

/* Where the points wait between the vector kernel and the rANS kernel of a
 * direction: one int16 2k + c per coordinate (k the lattice index of
 * profile 2's records, c the coset of its block), a row of the piece's dim
 * per vector and piece. Encode keeps them in the payload buffer, which the
 * compaction fills only afterwards; decode in the vector's own output,
 * which the vector kernel then overwrites (an element has >= 2 bytes). */
struct Rows {
    uint8_t *base;
    uint64_t stride; /* bytes from one vector's rows to the next */
    uint32_t esz;    /* bytes per element of a piece offset */
    uint32_t wide;   /* every block 16-byte aligned: one uint4 access */
};

/* A bad decode chunk's mark in the first point of each of its rows (a
 * point lies in [-2L-1, 2L+1] with L <= 8185, far from it): the vector
 * kernel writes zeros there. */
constexpr int16_t kDead = (int16_t)0x8000;

__device__ __forceinline__ int16_t *row_of(const Rows &R, uint64_t v, uint32_t off)
{
    return reinterpret_cast<int16_t *>(R.base + v * R.stride + (uint64_t)off * R.esz);
}

/* The 8 points of a block, two per word. */
__device__ __forceinline__ void put_block(int16_t *p, bool wide, const uint32_t pk[4])
{
    if (wide) {
        *reinterpret_cast<uint4 *>(p) = make_uint4(pk[0], pk[1], pk[2], pk[3]);
        return;
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        p[2 * i] = (int16_t)(pk[i] & 0xffffu);
        p[2 * i + 1] = (int16_t)(pk[i] >> 16);
    }
}

__device__ __forceinline__ void get_block(const int16_t *p, bool wide, uint32_t pk[4])
{
    if (wide) {
        const uint4 q = *reinterpret_cast<const uint4 *>(p);
        pk[0] = q.x;
        pk[1] = q.y;
        pk[2] = q.z;
        pk[3] = q.w;
        return;
    }
#pragma unroll
    for (int i = 0; i < 4; i++)
        pk[i] = (uint32_t)(uint16_t)p[2 * i] | ((uint32_t)(uint16_t)p[2 * i + 1] << 16);
}

/* The slots of the vector kernels: warp s takes vectors 32 s .. 32 s + 31
 * (slot s % 2^slog of chunk s >> slog), every piece. */
#define FOR_EACH_SLOT(P, s)                                                          \
    for (uint64_t s = (uint64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), \
                  s##_end = ((P).n + kLanes - 1) / kLanes;                           \
         s < s##_end; s += (uint64_t)gridDim.x * (blockDim.x >> 5))

/* ------------------------------------------------------------------------ */
/* Encode                                                                    */

/* The closest point of the block y (8 values) in m's box, as 2k + c per
 * coordinate, to p (zeros when !ok). */
__device__ __forceinline__ void put_closest(const float *y, const lkv_p2_model *m, bool fastbox,
                                            float margin, bool ok, int16_t *p, bool wide)
{
    uint32_t wd[8];
    const uint32_t half =
        (uint32_t)(fastbox ? lkv_e8_closest(y, m->box_f, margin, wd) : lkv_e8_box(y, m->box_f, wd));
    uint32_t pk[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint32_t lo = ok ? 2u * (wd[2 * i] - m->box) + half : 0u;
        const uint32_t hi = ok ? 2u * (wd[2 * i + 1] - m->box) + half : 0u;
        pk[i] = (lo & 0xffffu) | (hi << 16);
    }
    put_block(p, wide, pk);
}

/* Vector kernel: norm, division, butterfly and closest point of every
 * vector and piece, in p2.c's operation order; the norm codes go into the
 * chunk's scratch slot (vector-major: one byte each in version 3, an fp16
 * in version 2), the points into R, the statuses into status. Version 4
 * also writes the channel domain's points into R2, and for the mode
 * choice (p2.c est_channel) the channel values rounded to integers
 * (chan_row) and each slot's estimate of its rotated piece, crot[s * np +
 * j]: the sum of est_of over the rotated values rounded to integers (at
 * most 32 * 1024 * 16 (15 + 15) < 2^24). V4 is P.v4, a template argument
 * so that versions 2 and 3 run without version 4's registers (with them,
 * ptxas spilled 80 to 112 bytes a thread at E = 8, 32 without). */
template <int E, int DT, bool V4>
__global__ void __launch_bounds__(kVecWarps * 32, 4)
    p2_quantise_kernel(Plan P, const lkv_p2_model *models, const uint8_t *src, Rows R, Rows R2,
                       uint8_t *scratch, uint8_t *status, uint32_t *crot)
{
    /* DT >= 0: that dtype, whole lanes (e == E) and 16-byte aligned rows,
     * known to the compiler; DT < 0: all from the plan */
    const uint32_t dt = DT >= 0 ? (uint32_t)DT : P.dt;
    const bool fast = DT >= 0 || P.fast != 0;
    const uint32_t lane = threadIdx.x & 31u;
    FOR_EACH_SLOT(P, s)
    {
        const uint64_t first = s * kLanes;
        const uint32_t nk = (uint32_t)(P.n - first < kLanes ? P.n - first : kLanes);
        if (status && lane < nk)
            status[first + lane] = LKV_OK;
        __syncwarp();
        for (uint32_t j = 0; j < P.np; j++) {
            const lkv_p2_model *m = models + j;
            const Piece pc = P.pc[j];
            const int e = DT >= 0 ? E : (int)pc.e, lpv = (int)pc.lpv;
            const uint32_t vpp = kLanes / pc.lpv, vp = lane / pc.lpv, li = lane % pc.lpv;
            /* profile 1's fast closest point, checked against lkv_e8_box for
             * boxes up to 1023 (tests/gpu/gpu_block_test); beyond, the box */
            const bool fastbox = m->box <= 1023u;
            const float margin = lkv_e8_margin(m->box_f);
            uint32_t est = 0; /* version 4: the lane's part of crot */
            for (uint32_t pass = 0; pass < pc.lpv; pass++) {
                const uint32_t vl = pass * vpp + vp;
                const bool valid = vl < nk;
                const uint64_t v = first + vl;
                float xv[E];
#pragma unroll
                for (int i = 0; i < E; i++)
                    xv[i] = 0.0f;
                if (valid)
                    load_elems<E>(src + (v * P.dim + pc.off + li * e) * P.esz, dt, e, fast, xv);
                bool fin = true;
#pragma unroll
                for (int i = 0; i < E; i++)
                    if (i < e)
                        fin = fin && isfinite(xv[i]);
                /* a whole vector's verdict: its lanes are aligned groups */
                const uint32_t gmask = (pc.lpv == 32 ? kFull : ((1u << pc.lpv) - 1u))
                                       << (vp * pc.lpv);
                const bool allfin = (__ballot_sync(kFull, !fin) & gmask) == 0;
                if (!allfin)
#pragma unroll
                    for (int i = 0; i < E; i++)
                        xv[i] = 0.0f;
                float r = __fsqrt_rn(sum_squares<E>(xv, e, lpv));
                if (!(r >= LKV_EPS))
                    r = LKV_EPS;
                /* the stored code and the divisor: version 3 the smallest
                 * r^(k) >= r (k > 255: overflow), version 2 fp16(r) and r */
                uint32_t code;
                bool ok;
                if (P.v3) {
                    code = lkv_p2_norm_code(__float_as_uint(r));
                    ok = allfin && code <= 0xffu;
                    r = __uint_as_float(lkv_p2_norm_bits(code & 0xffu));
                } else {
                    code = f16_bits(r);
                    ok = allfin && code != LKV_F16_INF_BITS;
                }
                /* the code and status now, so that the code is not held
                 * through the closest point */
                if (valid && li == 0) {
                    /* the chunk's norm field: vector-major, a byte (v3)
                     * or a u16 (v2) per vector and piece */
                    uint8_t *codes = scratch + (s >> P.slog) * P.cap + 4;
                    const uint32_t ci =
                        ((uint32_t)(s & ((1u << P.slog) - 1u)) * kLanes + vl) * P.np + j;
                    if (P.v3)
                        codes[ci] = ok ? (uint8_t)code : (uint8_t)0;
                    else
                        reinterpret_cast<uint16_t *>(codes)[ci] = ok ? (uint16_t)code : 0;
                    /* a NaN/Inf anywhere in the vector outranks an
                     * overflowing piece, as in the C coder */
                    if (!ok && status && (!allfin || status[v] != LKV_ERR_NONFINITE))
                        status[v] = allfin ? LKV_ERR_NORM_OVERFLOW : LKV_ERR_NONFINITE;
                }
                if (!ok)
                    r = 1.0f;
                const float ry = lkv_recip_of(r), amin = div_min(r);
                /* lkv_div_by alone when no element of the warp is a nonzero
                 * below its range (zeros may change sign there, which no
                 * point depends on: the closest point treats -0 as 0) */
                bool tiny = false;
#pragma unroll
                for (int i = 0; i < E; i++)
                    tiny = tiny || (xv[i] != 0.0f && !(fabsf(xv[i]) >= amin));
                if (__any_sync(kFull, tiny)) {
#pragma unroll
                    for (int i = 0; i < E; i++)
                        if (i < e)
                            xv[i] = ok ? div_exact(xv[i], r, ry, amin) : 0.0f;
                } else {
#pragma unroll
                    for (int i = 0; i < E; i++)
                        xv[i] = ok ? lkv_div_by(xv[i], r, ry) : 0.0f;
                }
                /* version 4's channel domain: x / r times c, no butterfly
                 * (p2.c quantise with ch): the points into R2, the values
                 * rounded to integers (ties to even, p2.c est_channel's
                 * lrintf) into the scratch slot */
                if (V4 && valid) {
                    const float ch = chan_scale(m);
                    int16_t *row2 = row_of(R2, v, pc.off) + li * e;
                    int16_t *rown = chan_row(P, scratch, v, pc.off) + li * e;
#pragma unroll
                    for (int bb = 0; bb < E / 8; bb++)
                        if (8 * bb < e) {
                            float yc[8];
                            uint32_t pk[4];
#pragma unroll
                            for (int i = 0; i < 8; i++)
                                yc[i] = __fmul_rn(xv[8 * bb + i], ch);
#pragma unroll
                            for (int i = 0; i < 4; i++)
                                pk[i] = ((uint32_t)__float2int_rn(yc[2 * i]) & 0xffffu) |
                                        ((uint32_t)__float2int_rn(yc[2 * i + 1]) << 16);
                            put_block(rown + 8 * bb, ((uintptr_t)scratch & 15u) == 0, pk);
                            put_closest(yc, m, fastbox, margin, ok, row2 + 8 * bb, R2.wide != 0);
                        }
                }
                butterfly<E>(xv, e, lpv, (int)li);
#pragma unroll
                for (int i = 0; i < E; i++)
                    xv[i] = __fmul_rn(__fmul_rn(xv[i], m->qf), 0.25f);
                /* version 4: the rotated values rounded as the channel
                 * ones, exactly those the closest point gets */
                if (V4 && valid)
#pragma unroll
                    for (int i = 0; i < E; i++)
                        if (i < e)
                            est += est_of(m, __float2int_rn(xv[i]));
                if (valid) {
                    int16_t *row = row_of(R, v, pc.off) + li * e;
#pragma unroll
                    for (int bb = 0; bb < E / 8; bb++)
                        if (8 * bb < e)
                            put_closest(xv + 8 * bb, m, fastbox, margin, ok, row + 8 * bb,
                                        R.wide != 0);
                }
            }
            if (V4) {
                est = warp_sum(est);
                if (lane == 0)
                    crot[s * P.np + j] = est;
            }
            __syncwarp();
        }
    }
}

/* rANS put of one symbol for every active lane, lanes nk-1 .. 0 in turn
 * (p2.c rans_put): the words go backwards from *wp (u16 index). */
__device__ __forceinline__ void put_sym(uint32_t &x, bool act, uint32_t start, uint32_t freq,
                                        uint32_t rcp, uint16_t *w, uint32_t &wp)
{
    const bool need = act && (uint64_t)x >= ((uint64_t)freq << 17);
    const uint32_t bal = __ballot_sync(kFull, need);
    if (need) {
        w[wp - 1u - (uint32_t)__popc(bal & lanemask_gt())] = (uint16_t)(x & 0xffffu);
        x >>= 16;
    }
    wp -= (uint32_t)__popc(bal);
    if (act && freq) { /* freq >= 1 for every point of a table */
        uint32_t q = __umulhi(x, rcp);
        uint32_t r = x - q * freq;
        while (r >= freq) {
            q++;
            r -= freq;
        }
        x = (q << LKV_P2_PROB_BITS) + r + start;
    }
}

/* The slots of one piece of one chunk through the rANS encoder, last slot,
 * block and symbol first, the words backwards from *wp (u16 index into
 * w16); returns the lane's final state. CH as in decode_slots: false the
 * piece's model m, true version 4's channel mode (the level models lev,
 * each block's levels and coset frequency from packs[b]). */
template <bool CH>
__device__ __forceinline__ uint32_t encode_slots(const lkv_p2_model *m, const lkv_p2_model *lev,
                                                 const uint64_t *packs, const Rows &R,
                                                 uint64_t first, uint32_t cnt, uint32_t off,
                                                 uint16_t *w16, uint32_t &wp)
{
    const uint32_t lane = threadIdx.x & 31u;
    const uint32_t nslots = (cnt + kLanes - 1) / kLanes;
    uint32_t x = LKV_P2_RANS_LOW;
    const uint32_t b6 = m->t[0][0].b, b7 = m->t[0][1].b;
    /* the raw bits' symbol: frequency ONE >> b, its reciprocal */
    const uint32_t f6 = LKV_P2_PROB_ONE >> b6, f7 = LKV_P2_PROB_ONE >> b7;
    const uint32_t r6 = 0xffffffffu / f6, r7 = 0xffffffffu / f7;
    for (uint32_t k = nslots; k-- > 0;) {
        const uint32_t nk = cnt - k * kLanes < kLanes ? cnt - k * kLanes : kLanes;
        const bool act = lane < nk;
        const int16_t *row = act ? row_of(R, first + k * kLanes + lane, off) : nullptr;
        /* blocks backwards, each block's points loaded while the
         * one before is coded */
        uint32_t qn[4] = {0, 0, 0, 0};
        if (act)
            get_block(row + 8 * (m->nblocks - 1), R.wide != 0, qn);
        for (uint32_t b = m->nblocks; b-- > 0;) {
            int32_t kk[8];
            uint32_t cs = 0;
            uint32_t q[4] = {qn[0], qn[1], qn[2], qn[3]};
            if (act && b > 0)
                get_block(row + 8 * (b - 1), R.wide != 0, qn);
            if (act) {
                cs = q[0] & 1u;
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    kk[2 * i] = (int32_t)(int16_t)(q[i] & 0xffffu) >> 1;
                    kk[2 * i + 1] = (int32_t)(int16_t)(q[i] >> 16) >> 1;
                }
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++)
                    kk[i] = 0;
            }
            uint64_t pb = 0;
            uint32_t f1 = m->coset_f1;
            if (CH) {
                pb = packs[b];
                f1 = (uint32_t)(pb >> 40);
            }
            uint32_t par = 0;
#pragma unroll
            for (int i = 0; i < 7; i++)
                par ^= (uint32_t)kk[i] & 1u;
            /* every table entry of the block first: they depend on
             * the points only, and loaded in the chain of puts each
             * waited on shared memory (ncu: short scoreboard); the
             * ranges (jlo) are the piece model's in either mode */
            const lkv_p2_table *t7 = &m->t[cs][1 + par];
            const lkv_p2_table *t0 = &m->t[cs][0];
            uint32_t u[8], st[8], fr[8], rc[8];
#pragma unroll
            for (int i = 0; i < 8; i++) {
                const lkv_p2_table *t =
                    CH       ? &lev[(uint32_t)(pb >> (5 * i)) & 31u].t[cs][i == 7 ? 1 + par : 0]
                    : i == 7 ? t7
                             : t0;
                u[i] = i == 7 ? (uint32_t)(((kk[7] - (int32_t)par) >> 1) - t7->jlo)
                              : (uint32_t)(kk[i] - t0->jlo);
                const uint32_t hi = act ? u[i] >> (i == 7 ? b7 : b6) : 0u;
                st[i] = t->cum[hi];
                fr[i] = t->cum[hi + 1] - st[i];
                rc[i] = t->rcp[hi];
            }
            /* an offset in reverse: raw bits first, then the bin */
            if (b7)
                put_sym(x, act, (u[7] & ((1u << b7) - 1u)) * f7, f7, r7, w16, wp);
            put_sym(x, act, st[7], fr[7], rc[7], w16, wp);
#pragma unroll
            for (int i = 6; i >= 0; i--) {
                if (b6)
                    put_sym(x, act, (u[i] & ((1u << b6) - 1u)) * f6, f6, r6, w16, wp);
                put_sym(x, act, st[i], fr[i], rc[i], w16, wp);
            }
            const uint32_t fc = cs ? f1 : LKV_P2_PROB_ONE - f1;
            put_sym(x, act, cs ? LKV_P2_PROB_ONE - f1 : 0u, fc,
                    CH ? 0xffffffffu / fc : m->coset_rcp[cs], w16, wp);
        }
    }
    return x;
}

/* Moves nw words of w16 from index from down to index to (to <= from),
 * forward, in rounds that read before they write: the target lies below,
 * so a round may be any size; 8 words a lane, so that the round trips to
 * L2 overlap. As p2.c's memmove. */
__device__ __forceinline__ void move_words(uint16_t *w16, uint32_t from, uint32_t nw, uint32_t to)
{
    const uint32_t lane = threadIdx.x & 31u;
    __syncwarp();
    for (uint32_t i0 = 0; i0 < nw; i0 += kLanes * 8) {
        uint16_t wv[8];
#pragma unroll
        for (uint32_t r = 0; r < 8; r++) {
            const uint32_t i = i0 + r * kLanes + lane;
            wv[r] = i < nw ? w16[from + i] : (uint16_t)0;
        }
        __syncwarp();
#pragma unroll
        for (uint32_t r = 0; r < 8; r++) {
            const uint32_t i = i0 + r * kLanes + lane;
            if (i < nw)
                w16[to + i] = wv[r];
        }
        __syncwarp();
    }
}

/* Version 4's levels of a channel-mode piece (p2.c encode_channel): each
 * channel's sum of its squared points p2 over the chunk's cnt vectors, in
 * exact integers (lane b sums the 8 channels of block b), its level
 * (lkv_p2_level), and the block packs. */
__device__ __forceinline__ void chan_levels(const lkv_p2_model *m, const lkv_p2_model *lev,
                                            const Rows &R2, uint64_t first, uint32_t cnt,
                                            uint32_t off, uint64_t *packs)
{
    const uint32_t lane = threadIdx.x & 31u;
    const double e = (double)((uint64_t)cnt * m->q * m->q * m->dim); /* exact: below 2^53 */
    for (uint32_t b = lane; b < m->nblocks; b += kLanes) {
        uint64_t sq[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (uint32_t v = 0; v < cnt; v++) {
            uint32_t q[4];
            get_block(row_of(R2, first + v, off) + 8 * b, R2.wide != 0, q);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                /* |p2| <= 16371: the square fits 32 bits */
                const int32_t lo = (int16_t)(q[i] & 0xffffu), hi = (int16_t)(q[i] >> 16);
                sq[2 * i] += (uint32_t)(lo * lo);
                sq[2 * i + 1] += (uint32_t)(hi * hi);
            }
        }
        uint64_t lv = 0;
#pragma unroll
        for (int i = 0; i < 8; i++)
            lv |= (uint64_t)lkv_p2_level(sq[i], e) << (5 * i);
        packs[b] = block_pack(lv, lev);
    }
    __syncwarp();
}

/* Version 4's mode choice (p2.c est_channel): one warp per piece j of chunk
 * c, modes[c * np + j] = 1 when the estimate of its channel piece is below
 * that of its rotated one. The rotated estimate is the quantise kernel's
 * slots' crot plus the header's 16 * 8 * 2; the channel one, from the
 * values chan_row holds, lane l taking channels 2l, 2l + 1 of each 64: each
 * channel's sum of (2 n)^2 over the chunk's cnt vectors (exact u64), its
 * level (lkv_p2_level), then est_of of the level's model over the same
 * values (read again, from L1 or L2), plus the header's 16 * 8 bytes.
 * Every sum is of integers below 2^32 (at most 256 * 1024 * 480 plus the
 * header), so its order does not matter. */
__global__ void __launch_bounds__(kVecWarps * 32)
    p2_mode_kernel(Plan P, const lkv_p2_model *gm, uint8_t *scratch, const uint32_t *crot,
                   uint8_t *modes)
{
    const uint32_t lane = threadIdx.x & 31u;
    const uint64_t items = P.nchunks * P.np;
    for (uint64_t it = (uint64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); it < items;
         it += (uint64_t)gridDim.x * (blockDim.x >> 5)) {
        const uint64_t c = it / P.np, first = c << (5u + P.slog);
        const uint32_t j = (uint32_t)(it % P.np);
        const uint32_t cnt = (uint32_t)(P.n - first < P.chunk ? P.n - first : P.chunk);
        const lkv_p2_model *m = gm + j, *lev = level_models(P, gm, j);
        const uint32_t pd = P.pc[j].dim, off = P.pc[j].off;
        const uint32_t nsl = (cnt + kLanes - 1) / kLanes;
        uint32_t rot = lane < nsl ? crot[((c << P.slog) + lane) * P.np + j] : 0u;
        rot = warp_sum(rot) + 16u * 8u * piece_hdr(pd, false);
        const double e = (double)((uint64_t)cnt * m->q * m->q * pd); /* exact: below 2^53 */
        /* a u32 holds two values; from one row to the next, dim / 2 */
        const uint64_t stride = (uint64_t)P.dim / 2;
        uint32_t est = 0;
        for (uint32_t i = 2 * lane; i < pd; i += 2 * kLanes) {
            const uint32_t *w =
                reinterpret_cast<const uint32_t *>(chan_row(P, scratch, first, off + i));
            uint64_t s0 = 0, s1 = 0;
            for (uint32_t v = 0; v < cnt; v++) {
                const uint32_t q = w[v * stride];
                /* |n| <= L + 1 < 2^14: 4 n^2 fits 32 bits */
                const int32_t lo = (int16_t)(q & 0xffffu), hi = (int16_t)(q >> 16);
                s0 += (uint32_t)(4 * lo * lo);
                s1 += (uint32_t)(4 * hi * hi);
            }
            const lkv_p2_model *l0 = lev + lkv_p2_level(s0, e), *l1 = lev + lkv_p2_level(s1, e);
            for (uint32_t v = 0; v < cnt; v++) {
                const uint32_t q = w[v * stride];
                est += est_of(l0, (int16_t)(q & 0xffffu)) + est_of(l1, (int16_t)(q >> 16));
            }
        }
        est = warp_sum(est) + 16u * 8u * piece_hdr(pd, true);
        if (lane == 0)
            modes[it] = est < rot;
    }
}

/* rANS kernel: one warp codes one chunk, lane l the vector l of each slot,
 * into the chunk's worst-case scratch slot (words backwards from its end,
 * then, but for the last piece's, moved behind the states, as p2.c does);
 * sizes[c] = its bytes, heads[c] = its bytes before the last piece's
 * words, which stay at the slot's end for the compaction to copy (moved
 * here, every warp read and wrote them again as it finished: the grid's
 * warps all finish together, one wave). The
 * norm field is the quantise kernel's, version 3's pad byte the
 * compaction's. Version 4 codes each piece in the mode p2_mode_kernel
 * chose (modes[c * np + j]), as p2.c encode_chunk: rotated, its header 0,
 * 0; or channel, from R2, its header mode 1, the levels (chan_levels) and
 * a zero pad. */
template <bool SM, bool V4>
__global__ void __launch_bounds__(kRansWarps * 32, kRansBlocksPerSm)
    p2_rans_encode_kernel(Plan P, const lkv_p2_model *gm, Rows R, Rows R2, const uint8_t *modes,
                          uint8_t *scratch, uint64_t *sizes, uint32_t *heads)
{
    LKV_P2_SMEM(smem);
    const lkv_p2_model *models = stage<SM>(P.np, gm, smem);
    const uint32_t warp = threadIdx.x >> 5, lane = threadIdx.x & 31u;
    uint64_t *packs = reinterpret_cast<uint64_t *>(smem + models_smem(P)) + warp * (P.dmax / 8);
    const uint64_t nwarps = (uint64_t)gridDim.x * P.warps;
    for (uint64_t c = (uint64_t)blockIdx.x * P.warps + warp; c < P.nchunks; c += nwarps) {
        const uint64_t first = c << (5u + P.slog);
        const uint32_t cnt = (uint32_t)(P.n - first < P.chunk ? P.n - first : P.chunk);
        const uint32_t nl = cnt < kLanes ? cnt : kLanes;
        uint8_t *chunk = scratch + c * P.cap;
        uint16_t *w16 = reinterpret_cast<uint16_t *>(chunk);
        uint32_t pos = 4 + norm_field(P, cnt); /* bytes from the chunk's start */
        for (uint32_t j = 0; j < P.np; j++) {
            const lkv_p2_model *m = models + j;
            const uint32_t off = P.pc[j].off;
            const bool chan = V4 && modes[c * P.np + j] != 0; /* warp-uniform */
            const lkv_p2_model *lev = chan ? level_models(P, gm, j) : nullptr;
            if (chan) {
                /* the header: mode 1, the levels (byte i of the field is
                 * bits 8i .. 8i + 7, 5 bytes a block), a zero pad */
                chan_levels(m, lev, R2, first, cnt, off, packs);
                const uint32_t hdr = piece_hdr(m->dim, true), lvb = 5u * m->dim / 8u;
                for (uint32_t i = lane; i < hdr; i += kLanes)
                    chunk[pos + i] = i == 0 ? (uint8_t)1
                                     : i - 1 < lvb
                                         ? (uint8_t)(packs[(i - 1) / 5] >> (8 * ((i - 1) % 5)))
                                         : (uint8_t)0;
                pos += hdr;
            } else if (V4) { /* the rotated mode's header: mode 0, a zero pad */
                if (lane == 0)
                    w16[pos / 2] = 0;
                pos += 2;
            }
            uint32_t wp = (uint32_t)(P.cap / 2); /* u16 index, writing backwards */
            const uint32_t x =
                chan ? encode_slots<true>(m, lev, packs, R2, first, cnt, off, w16, wp)
                     : encode_slots<false>(m, nullptr, nullptr, R, first, cnt, off, w16, wp);
            /* the states, then the words moved behind them */
            if (lane < nl)
                st32a2(chunk + pos + 4 * lane, x);
            pos += 4 * nl;
            const uint32_t nw = (uint32_t)(P.cap / 2) - wp;
            if (j + 1 < P.np)
                move_words(w16, wp, nw, pos / 2);
            else if (lane == 0)
                heads[c] = pos;
            pos += 2 * nw;
            /* the packs are written again for the next piece's levels */
            __syncwarp();
        }
        if (lane == 0) {
            st32a2(chunk, pos - 4);
            sizes[c] = pos;
        }
        __syncwarp();
    }
}

/* Copies nw 2-byte words from s to d (both 2-byte aligned, apart), the
 * block's threads in turn: one word first when d is 2 mod 4, then u32
 * stores, of u32 loads when s is then 4-aligned too, else of two u16
 * loads (never reading past the words). */
__device__ __forceinline__ void copy_words(const uint16_t *s, uint16_t *d, uint64_t nw)
{
    if (nw == 0)
        return;
    if ((uintptr_t)d & 2u) {
        if (threadIdx.x == 0)
            d[0] = s[0];
        s++;
        d++;
        nw--;
    }
    const uint64_t nq = nw / 2;
    uint32_t *d4 = reinterpret_cast<uint32_t *>(d);
    if (((uintptr_t)s & 2u) == 0) {
        const uint32_t *s4 = reinterpret_cast<const uint32_t *>(s);
        for (uint64_t i = threadIdx.x; i < nq; i += blockDim.x)
            d4[i] = s4[i];
    } else {
        for (uint64_t i = threadIdx.x; i < nq; i += blockDim.x)
            d4[i] = (uint32_t)s[2 * i] | ((uint32_t)s[2 * i + 1] << 16);
    }
    if ((nw & 1u) && threadIdx.x == 0)
        d[nw - 1] = s[nw - 1];
}

/* Moves each chunk from its scratch slot to its offset (both even): the
 * slot's first heads[c] bytes, then the last piece's words from the
 * slot's end. In version 3 it also writes the chunk's last touches, which
 * the rANS kernel's registers are better spent without: the zero pad byte
 * after an odd number of norm codes, and, since no norm code is invalid
 * there, the mark of a chunk with a vector the quantise kernel could not
 * code (its code 0, below the k >= 36 of every r >= 2^-23): piece 0's
 * first state 0 (version 4: piece 0's mode byte 2), which every decoder
 * rejects, as version 2's zero norm makes them. */
__global__ void p2_compact_kernel(Plan P, const uint8_t *scratch, const uint64_t *offs,
                                  const uint32_t *heads, uint8_t *dst)
{
    const uint64_t cap = P.cap;
    for (uint64_t c = blockIdx.x; c < P.nchunks; c += gridDim.x) {
        const uint64_t o = offs[c], len = offs[c + 1] - o, head = heads[c];
        const uint8_t *s = scratch + c * cap;
        uint8_t *d = dst + o;
        const uint16_t *s2 = reinterpret_cast<const uint16_t *>(s);
        uint16_t *d2 = reinterpret_cast<uint16_t *>(d);
        const uint64_t nw = (len - head) / 2;
        copy_words(s2, d2, head / 2);
        copy_words(s2 + cap / 2 - nw, d2 + head / 2, nw);
        if (P.v3) {
            const uint64_t first = c << (5u + P.slog);
            const uint32_t cnt = (uint32_t)(P.n - first < P.chunk ? P.n - first : P.chunk);
            const uint32_t k = cnt * P.np;
            bool fail = false;
            for (uint32_t i = threadIdx.x; i < k; i += blockDim.x)
                fail = fail || s[4 + i] == 0;
            /* after the copy: its writes may share a word with these */
            fail = __syncthreads_or(fail) != 0;
            if (threadIdx.x == 0) {
                if (k & 1u)
                    d[4 + k] = 0;
                if (fail && P.v4) {
                    d[4 + norm_field(P, cnt)] = 2; /* piece 0's mode: neither 0 nor 1 */
                } else if (fail) {
                    uint16_t *st = reinterpret_cast<uint16_t *>(d + 4 + norm_field(P, cnt));
                    st[0] = st[1] = 0;
                }
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Decode                                                                    */

/* A rotated model's tables as the decoder reads them (built on the host by
 * dtab_build from the model the encoder uses, so the bins are the same).
 * The model's lut has a window of 64 slots and the bin within it took a
 * binary search over cum for some lane of almost every warp step, then two
 * more loads for the bin's start and end: on an H100 the decode stalled on
 * those shared-memory loads (short scoreboard). Here a window holds 16
 * slots and its entry the first bin and how many more the window touches
 * (0 in all but the tails' narrow bins), and a bin's start and frequency
 * are one word. Table ti = 3 c + k is the model's t[c][k]. */
constexpr uint32_t kFineShift = 4;
constexpr uint32_t kFine = LKV_P2_PROB_ONE >> kFineShift;

struct DecTab {
    uint32_t dim, nblocks, coset_f1, b6, b7;
    int32_t jlo[6];
    uint32_t n[6];
    uint32_t sf[6][LKV_P2_NBINS_MAX]; /* bin h: start | freq << 16 */
    uint16_t fine[6][kFine];          /* window w: first bin | (last - first) << 9 */
};

static void dtab_build(const lkv_p2_model *m, DecTab *d)
{
    memset(d, 0, sizeof *d);
    d->dim = m->dim;
    d->nblocks = m->nblocks;
    d->coset_f1 = m->coset_f1;
    d->b6 = m->t[0][0].b;
    d->b7 = m->t[0][1].b;
    for (uint32_t ti = 0; ti < 6; ti++) {
        const lkv_p2_table *t = &m->t[ti / 3][ti % 3];
        d->jlo[ti] = t->jlo;
        d->n[ti] = t->n;
        for (uint32_t h = 0; h < t->nbins; h++)
            d->sf[ti][h] = t->cum[h] | (t->cum[h + 1] - t->cum[h]) << 16;
        uint32_t h = 0; /* the bin of slot w << kFineShift, then of the window's last */
        for (uint32_t w = 0; w < kFine; w++) {
            while (t->cum[h + 1] <= w << kFineShift)
                h++;
            uint32_t e = h;
            while (t->cum[e + 1] <= ((w + 1) << kFineShift) - 1)
                e++;
            d->fine[ti][w] = (uint16_t)(h | (e - h) << 9);
        }
    }
}

/* A decode warp's window on its chunk's word stream, in shared memory: the
 * refills are the one dependent load of a symbol step, and from L1 or L2
 * they stalled the rANS kernel more than anything else (H100, ncu: long
 * scoreboard 12.3 cycles per issued instruction). Positions count words
 * from a (the body's word offset from a 16-byte boundary) below the body,
 * so that position k lies at ga[k] and at ring[k & (kRing - 1)], both on
 * the same 16-byte grid. Words [lo, re) are the piece's stream and the
 * rest of the body; those below hi are in the ring or on their way there,
 * those below ready in it. Each block starts by asking for kFill more
 * words whenever they fit (stream_more: asynchronous 16-byte copies, which
 * the warp does not wait for) and waits only when the words its symbols
 * can take (kBlockWords) are not all ready: a warp that copied
 * synchronously spent a quarter of its stalls there (ncu, H100). */
constexpr uint32_t kRing = 2048;
constexpr uint32_t kFill = 512;
constexpr uint32_t kBlockWords = kLanes * 17; /* 17 refills a block at most */
static_assert(kBlockWords <= kRing - kFill, "a block's words fit behind a fill");

struct Stream {
    const uint16_t *ga; /* the body's words, from the 16-byte boundary below */
    uint16_t *ring;
    uint32_t a, lo, re;        /* a: the body's word 0; [lo, re): the words to copy */
    uint32_t hi, hprev, ready; /* copies asked for below hi (hprev before the last) */
};

__device__ __forceinline__ void copy16_async(uint16_t *dst, const uint16_t *src)
{
#if !defined(LKV_P2_EMU)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(
                     (uint32_t)__cvta_generic_to_shared(dst)),
                 "l"(src));
#else
    memcpy(dst, src, 16);
#endif
}

/* Asks for the words [hi, hi + kFill) of the stream, then hi += kFill:
 * whole 16-byte units inside [lo, re) asynchronously, the words of the
 * (at most two) units cut by lo or re one at a time now. */
__device__ __forceinline__ void stream_more(Stream &S)
{
    const uint32_t lane = threadIdx.x & 31u;
    __syncwarp(); /* every lane has read the words whose places these take */
#pragma unroll
    for (uint32_t r = 0; r < kFill / 8 / kLanes; r++) {
        const uint32_t k = S.hi + 8 * (lane + r * kLanes);
        uint16_t *dst = S.ring + (k & (kRing - 1u));
        if (k >= S.lo && k + 8 <= S.re) {
            copy16_async(dst, S.ga + k);
        } else {
            for (uint32_t i = 0; i < 8; i++)
                if (k + i >= S.lo && k + i < S.re)
                    dst[i] = S.ga[k + i];
        }
    }
#if !defined(LKV_P2_EMU)
    asm volatile("cp.async.commit_group;\n" ::);
#endif
    S.hprev = S.hi;
    S.hi += kFill;
}

/* Before a block: more words while the ring has room for them (a fill
 * takes the places of the words kRing below, which must lie below the
 * read position rp), then, unless the block's words are all in, a wait
 * for all but the last fill (or for it too). Warp-uniform. */
__device__ __forceinline__ void stream_block(Stream &S, uint32_t rp)
{
    while (S.hi + kFill <= rp + kRing)
        stream_more(S);
    if (rp + kBlockWords > S.ready) {
#if !defined(LKV_P2_EMU)
        if (rp + kBlockWords <= S.hprev)
            asm volatile("cp.async.wait_group 1;\n" ::);
        else
            asm volatile("cp.async.wait_all;\n" ::);
#endif
        S.ready = rp + kBlockWords <= S.hprev ? S.hprev : S.hi;
        __syncwarp();
    }
}

/* The stream of the piece whose words start at byte pos of the body
 * (2-byte aligned) of blen bytes; rp: its read position. */
__device__ __forceinline__ Stream stream_open(const uint8_t *body, uint32_t blen, uint32_t pos,
                                              uint16_t *ring, uint32_t &rp)
{
    Stream S;
    S.a = (uint32_t)(((uintptr_t)body >> 1) & 7u);
    S.ga = reinterpret_cast<const uint16_t *>(body) - S.a;
    S.ring = ring;
    S.lo = S.a + pos / 2;
    S.re = S.a + blen / 2;
    S.hi = S.lo & ~7u;
    S.hprev = S.ready = S.hi;
    rp = S.lo;
    return S;
}

/* Waits for the copies still on their way (before the ring is used for
 * another piece or chunk). */
__device__ __forceinline__ void stream_close()
{
#if !defined(LKV_P2_EMU)
    asm volatile("cp.async.wait_all;\n" ::);
#endif
    __syncwarp();
}

/* Shared bytes of the decode tables (DecTab), held there as the models
 * are. */
__host__ __device__ inline size_t dtabs_smem(const Plan &P)
{
    return P.smem_models ? align16(P.np * sizeof(DecTab)) : 0;
}

__host__ __device__ inline size_t dec_smem(const Plan &P)
{
    return dtabs_smem(P) + (size_t)P.warps * kRing * 2 + packs_smem(P);
}

/* Refill of every active lane, lanes 0..nk-1 in turn reading the shared
 * word stream at ring position rp. A corrupt stream may read past its end
 * (stale ring words): the caller checks rp <= re once, at the piece's end. */
__device__ __forceinline__ void refill(uint32_t &x, bool act, const uint16_t *ring, uint32_t &rp)
{
    const bool need = act && x < LKV_P2_RANS_LOW;
    const uint32_t bal = __ballot_sync(kFull, need);
    if (need)
        x = (x << 16) | ring[(rp + (uint32_t)__popc(bal & lanemask_lt())) & (kRing - 1u)];
    rp += (uint32_t)__popc(bal);
}

/* The rest of an offset whose bin the active lanes have taken from x (u =
 * bin << b): refill, and with raw bits (b > 0, warp-uniform) those, their
 * refill and the range check (without them u < nbins <= n). */
__device__ __forceinline__ uint32_t offset_tail(uint32_t &x, bool act, uint32_t u, uint32_t b,
                                                const uint32_t *n, const uint16_t *ring,
                                                uint32_t &rp, uint32_t &bad)
{
    refill(x, act, ring, rp);
    if (b) {
        if (act) {
            const uint32_t slot = x & (LKV_P2_PROB_ONE - 1u);
            const uint32_t sh = LKV_P2_PROB_BITS - b;
            x = ((x >> LKV_P2_PROB_BITS) << sh) + (slot & ((1u << sh) - 1u));
            u |= slot >> sh;
        }
        refill(x, act, ring, rp);
        if (act && u >= *n) {
            bad = 1;
            u = 0;
        }
    }
    return u;
}

/* One offset of a level model's table t (version 4's channel mode, in
 * global memory): the bin by the model's lut. */
__device__ __forceinline__ uint32_t get_offset(uint32_t &x, bool act, const lkv_p2_table *t,
                                               uint32_t b, const uint16_t *ring, uint32_t &rp,
                                               uint32_t &bad)
{
    uint32_t u = 0;
    if (act) {
        /* the bin holding slot lies between the bins holding the first
         * slots of its lut window and of the next one: a binary search
         * there (a walk from the first took up to 63 dependent loads in
         * the tails, and a warp waits for its slowest lane) */
        const uint32_t slot = x & (LKV_P2_PROB_ONE - 1u);
        const uint32_t wi = slot >> LKV_P2_LUT_SHIFT;
        uint32_t lo = t->lut[wi];
        uint32_t hi = wi + 1 < LKV_P2_LUT_SIZE ? t->lut[wi + 1] : t->nbins - 1;
        while (lo < hi) {
            const uint32_t mid = (lo + hi + 1) >> 1;
            if (t->cum[mid] <= slot)
                lo = mid;
            else
                hi = mid - 1;
        }
        const uint32_t c0 = t->cum[lo];
        x = (t->cum[lo + 1] - c0) * (x >> LKV_P2_PROB_BITS) + slot - c0;
        u = lo << b;
    }
    return offset_tail(x, act, u, b, &t->n, ring, rp, bad);
}

/* One offset of table ti of a rotated model's decode tables d. */
__device__ __forceinline__ uint32_t get_fast(uint32_t &x, bool act, const DecTab *d, uint32_t ti,
                                             uint32_t b, const uint16_t *ring, uint32_t &rp,
                                             uint32_t &bad)
{
    uint32_t u = 0;
    if (act) {
        const uint32_t slot = x & (LKV_P2_PROB_ONE - 1u);
        const uint32_t e = d->fine[ti][slot >> kFineShift];
        uint32_t lo = e & 511u, hi = lo + (e >> 9);
        while (lo < hi) {
            const uint32_t mid = (lo + hi + 1) >> 1;
            if ((d->sf[ti][mid] & 0xffffu) <= slot)
                lo = mid;
            else
                hi = mid - 1;
        }
        const uint32_t sf = d->sf[ti][lo];
        x = (sf >> 16) * (x >> LKV_P2_PROB_BITS) + slot - (sf & 0xffffu);
        u = lo << b;
    }
    return offset_tail(x, act, u, b, &d->n[ti], ring, rp, bad);
}

/* Blocks b and b + 1 of the rows of the lanes 2i and 2i + 1 (each lane's
 * points of them in lo and hi; rows 16-byte aligned) as whole 32-byte
 * sectors: the pair's lanes swap one block, then each store writes one
 * row's sector, lane 2i its first half and lane 2i + 1 its second. A lane
 * that wrote its blocks as they came wrote half a sector at a time, about
 * 6 us apart at 2^20 vectors, and with 131 072 rows being written many a
 * half sector left L2 before its other half came: DRAM then read the rest
 * of the sector to write it back whole (H100, ncu: the rANS decode read
 * 297 MB for a 99 MB payload, and took 812 us instead of 495). */
__device__ __forceinline__ void put_pair(int16_t *row, uint32_t b, const uint32_t lo[4],
                                         const uint32_t hi[4])
{
    const bool odd = (threadIdx.x & 1u) != 0;
    uint32_t sw[4]; /* lane 2i: lane 2i + 1's lo; lane 2i + 1: lane 2i's hi */
#pragma unroll
    for (int i = 0; i < 4; i++)
        sw[i] = __shfl_xor_sync(kFull, odd ? lo[i] : hi[i], 1);
    int16_t *const other =
        reinterpret_cast<int16_t *>(__shfl_xor_sync(kFull, (unsigned long long)row, 1));
    int16_t *const even_row = odd ? other : row, *const odd_row = odd ? row : other;
    /* word by word: a select between the arrays themselves (w0 = odd ?
     * sw : lo) took their addresses, which put them, the caller's block
     * points with them, in local memory (H100, ncu: 55 M local sectors
     * in one decode, and a fifth of the kernel's stall samples on their
     * loads) */
    uint32_t w0[4], w1[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        w0[i] = odd ? sw[i] : lo[i];
        w1[i] = odd ? hi[i] : sw[i];
    }
    const uint32_t at = 8 * (odd ? b + 1 : b);
    *reinterpret_cast<uint4 *>(even_row + at) = make_uint4(w0[0], w0[1], w0[2], w0[3]);
    *reinterpret_cast<uint4 *>(odd_row + at) = make_uint4(w1[0], w1[1], w1[2], w1[3]);
}

/* The blocks of one slot of one piece, decoded into the points at row:
 * CH = false the rotated mode, every coordinate from the piece's decode
 * tables d; CH = true version 4's channel mode, coordinate i of block b
 * from the level model of its level and the block's coset frequency, both
 * from packs[b] (block_pack), and the row's first point marked
 * (kChanMark). ALL: every lane has a vector (a full slot), so no lane
 * waits out a symbol. */
template <bool CH, bool ALL>
__device__ __forceinline__ void
decode_slot(const DecTab *d, const lkv_p2_model *lev, const uint64_t *packs, int16_t *row,
            bool wide, bool act_, uint32_t &x, Stream &S, uint32_t &rp, uint32_t &bad)
{
    const bool act = ALL || act_;
    const uint32_t b6 = d->b6, b7 = d->b7;
    const int32_t jlo0 = d->jlo[0], jlo1 = d->jlo[3];
    const uint32_t nb = d->nblocks;
    uint32_t pe[4] = {0, 0, 0, 0}; /* the points of the even block before b */
    for (uint32_t b = 0; b < nb; b++) {
        stream_block(S, rp);
        uint64_t pb = 0;
        uint32_t f1 = d->coset_f1;
        if (CH) {
            pb = packs[b];
            f1 = (uint32_t)(pb >> 40);
        }
        uint32_t cs = 0;
        if (act) {
            const uint32_t slot = x & (LKV_P2_PROB_ONE - 1u);
            const uint32_t f0 = LKV_P2_PROB_ONE - f1;
            cs = slot >= f0;
            x = cs ? f1 * (x >> LKV_P2_PROB_BITS) + slot - f0 : f0 * (x >> LKV_P2_PROB_BITS) + slot;
        }
        refill(x, act, S.ring, rp);
        uint32_t par = 0;
        uint32_t pk[4] = {0, 0, 0, 0};
        const int32_t jl = cs ? jlo1 : jlo0;
#pragma unroll
        for (int i = 0; i < 7; i++) {
            int32_t kv;
            if (CH) {
                const lkv_p2_table *t0 = &lev[(uint32_t)(pb >> (5 * i)) & 31u].t[cs][0];
                kv = t0->jlo + (int32_t)get_offset(x, act, t0, b6, S.ring, rp, bad);
            } else {
                kv = jl + (int32_t)get_fast(x, act, d, 3 * cs, b6, S.ring, rp, bad);
            }
            par ^= (uint32_t)kv & 1u;
            const uint32_t p2 = (uint32_t)(2 * kv + (int32_t)cs) & 0xffffu;
            pk[i / 2] |= p2 << (16 * (i & 1));
        }
        int32_t j7;
        if (CH) {
            const lkv_p2_table *t7 = &lev[(uint32_t)(pb >> 35) & 31u].t[cs][1 + par];
            j7 = t7->jlo + (int32_t)get_offset(x, act, t7, b7, S.ring, rp, bad);
        } else {
            const uint32_t ti = 3 * cs + 1 + par;
            j7 = d->jlo[ti] + (int32_t)get_fast(x, act, d, ti, b7, S.ring, rp, bad);
        }
        const int32_t k7 = 2 * j7 + (int32_t)par;
        pk[3] |= ((uint32_t)(2 * k7 + (int32_t)cs) & 0xffffu) << 16;
        if (CH && b == 0)
            pk[0] ^= kChanMark;
        if (ALL && wide) {
            if ((b & 1u) == 0 && b + 1 < nb) {
#pragma unroll
                for (int i = 0; i < 4; i++)
                    pe[i] = pk[i];
                continue;
            }
            if (b & 1u) {
                put_pair(row, b - 1, pe, pk);
                continue;
            }
        }
        if (act)
            put_block(row + 8 * b, wide, pk);
    }
}

/* The slots of one piece of one chunk (decode_slot), full ones without the
 * lane checks. */
template <bool CH>
__device__ __forceinline__ void decode_slots(const DecTab *d, const lkv_p2_model *lev,
                                             const uint64_t *packs, const Rows &R, uint64_t first,
                                             uint32_t cnt, uint32_t off, uint32_t &x, Stream &S,
                                             uint32_t &rp, uint32_t &bad)
{
    const uint32_t lane = threadIdx.x & 31u;
    const uint32_t nslots = (cnt + kLanes - 1) / kLanes;
    for (uint32_t k = 0; k < nslots; k++) {
        const uint32_t nk = cnt - k * kLanes < kLanes ? cnt - k * kLanes : kLanes;
        const bool act = lane < nk;
        int16_t *row = act ? row_of(R, first + k * kLanes + lane, off) : nullptr;
        if (nk == kLanes)
            decode_slot<CH, true>(d, lev, packs, row, R.wide != 0, true, x, S, rp, bad);
        else
            decode_slot<CH, false>(d, lev, packs, row, R.wide != 0, act, x, S, rp, bad);
    }
}

/* rANS kernel: one warp decodes one chunk, lane l the vector l of each
 * slot, into the points R (in the output). A chunk that fails any check
 * gets kDead in its rows and LKV_ERR_CORRUPT in status. Version 4: each
 * piece's header first (p2.c decode_chunk's checks), its levels into the
 * warp's block packs in channel mode. */
template <bool SM, bool V4>
__global__ void __launch_bounds__(kRansWarps * 32, kRansBlocksPerSm)
    p2_rans_decode_kernel(Plan P, const lkv_p2_model *gm, const DecTab *gd, const uint8_t *payload,
                          uint64_t len, const uint64_t *offs, Rows R, uint8_t *status)
{
    LKV_P2_SMEM(smem);
    const DecTab *dts = stage<SM>(P.np, gd, smem);
    const uint32_t warp = threadIdx.x >> 5, lane = threadIdx.x & 31u;
    uint16_t *ring = reinterpret_cast<uint16_t *>(smem + dtabs_smem(P)) + warp * kRing;
    uint64_t *packs =
        reinterpret_cast<uint64_t *>(smem + dtabs_smem(P) + (size_t)P.warps * kRing * 2) +
        warp * (P.dmax / 8);
    const uint64_t nwarps = (uint64_t)gridDim.x * P.warps;
    for (uint64_t c = (uint64_t)blockIdx.x * P.warps + warp; c < P.nchunks; c += nwarps) {
        const uint64_t first = c << (5u + P.slog);
        const uint32_t cnt = (uint32_t)(P.n - first < P.chunk ? P.n - first : P.chunk);
        const uint32_t nl = cnt < kLanes ? cnt : kLanes;
        bool bad = false;
        const uint64_t o = offs[c], o1 = offs[c + 1];
        uint32_t blen = 0;
        if (o1 < o || o1 - o < 4 || o1 > len || (o & 1u) || (c + 1 == P.nchunks && o1 != len)) {
            bad = true;
        } else {
            blen = ld32a2(payload + o);
            if ((uint64_t)blen + 4 != o1 - o)
                bad = true;
        }
        const uint8_t *body = payload + o + 4;
        const uint16_t *b16 = reinterpret_cast<const uint16_t *>(body);
        uint32_t pos = norm_field(P, cnt); /* bytes into the body */
        if (!bad && pos > blen)
            bad = true;
        /* the norm field: version 2 fp16 norms in [2^-23, inf), version 3
         * any code but a zero pad byte */
        if (!bad && !P.v3)
            for (uint32_t i = lane; i < cnt * P.np; i += kLanes) {
                const uint16_t r16 = b16[i];
                if (r16 < LKV_F16_EPS_BITS || r16 >= LKV_F16_INF_BITS)
                    bad = true;
            }
        if (!bad && P.v3 && lane == 0 && ((cnt * P.np) & 1u) && body[pos - 1] != 0)
            bad = true;
        bad = __any_sync(kFull, bad);
        for (uint32_t j = 0; j < P.np && !bad; j++) {
            const DecTab *m = dts + j;
            const uint32_t off = P.pc[j].off;
            bool chan = false;
            if (V4) {
                /* the header: a mode 0 or 1, in channel mode the levels,
                 * a zero pad byte to an even length (warp-uniform reads) */
                const uint32_t mode = blen - pos >= 2 ? body[pos] : 0u;
                const uint32_t lvb = mode == 1 ? 5u * m->dim / 8u : 0u;
                const uint32_t hdr = piece_hdr(m->dim, mode == 1);
                if (blen - pos < hdr || mode > 1 || (hdr > 1 + lvb && body[pos + hdr - 1] != 0)) {
                    bad = true;
                    break;
                }
                chan = mode == 1;
                if (chan) {
                    const lkv_p2_model *lev = level_models(P, gm, j);
                    for (uint32_t b = lane; b < m->nblocks; b += kLanes) {
                        const uint8_t *h = body + pos + 1 + 5 * b;
                        uint64_t v = 0;
#pragma unroll
                        for (int i = 0; i < 5; i++)
                            v |= (uint64_t)h[i] << (8 * i);
                        packs[b] = block_pack(v, lev);
                    }
                    __syncwarp();
                }
                pos += hdr;
            }
            if (blen - pos < 4 * nl) {
                bad = true;
                break;
            }
            uint32_t x = lane < nl ? ld32a2(body + pos + 4 * lane) : LKV_P2_RANS_LOW;
            uint32_t lbad = x < LKV_P2_RANS_LOW;
            pos += 4 * nl;
            uint32_t rp;
            Stream S = stream_open(body, blen, pos, ring, rp);
            if (chan)
                decode_slots<true>(m, level_models(P, gm, j), packs, R, first, cnt, off, x, S, rp,
                                   lbad);
            else
                decode_slots<false>(m, nullptr, nullptr, R, first, cnt, off, x, S, rp, lbad);
            stream_close();
            /* every final state 2^16, no word read past the body */
            if ((lane < nl && x != LKV_P2_RANS_LOW) || rp > S.re)
                lbad = 1;
            pos = 2 * (rp - S.a);
            bad = __any_sync(kFull, lbad != 0);
        }
        if (!bad && pos != blen)
            bad = true;
        if (bad) {
            __syncwarp();
            for (uint32_t i = lane; i < cnt * P.np; i += kLanes)
                *row_of(R, first + i / P.np, P.pc[i % P.np].off) = kDead;
        }
        if (status)
            for (uint32_t v = lane; v < cnt; v += kLanes)
                status[first + v] = bad ? (uint8_t)LKV_ERR_CORRUPT : (uint8_t)LKV_OK;
        __syncwarp();
    }
}

/* Vector kernel: t = p / Q, butterfly, times 4/D, times r, over the points
 * in place; zeros for the rows of a bad chunk. */
template <int E, int DT>
__global__ void __launch_bounds__(kVecWarps * 32, E <= 16 ? kReconBlocksPerSm : 1)
    p2_reconstruct_kernel(Plan P, const lkv_p2_model *models, const uint8_t *payload,
                          const uint64_t *offs, Rows R, uint8_t *dst)
{
    /* DT as in p2_quantise_kernel (R.wide == P.fast here) */
    const uint32_t dt = DT >= 0 ? (uint32_t)DT : P.dt;
    const bool fast = DT >= 0 || P.fast != 0;
    const uint32_t lane = threadIdx.x & 31u;
    FOR_EACH_SLOT(P, s)
    {
        const uint64_t first = s * kLanes;
        const uint32_t nk = (uint32_t)(P.n - first < kLanes ? P.n - first : kLanes);
        /* the slot's norm codes, read only for a chunk that passed its
         * checks: code i of the slot, a byte (v3) or a u16 (v2), at byte
         * i << (1 - v3) */
        const uint8_t *codes = payload + offs[s >> P.slog] + 4 +
                               (((s & ((1u << P.slog) - 1u)) * kLanes * P.np) << (1u - P.v3));
        for (uint32_t j = 0; j < P.np; j++) {
            const lkv_p2_model *m = models + j;
            const Piece pc = P.pc[j];
            const int e = DT >= 0 ? E : (int)pc.e, lpv = (int)pc.lpv;
            const uint32_t vpp = kLanes / pc.lpv, vp = lane / pc.lpv, li = lane % pc.lpv;
            /* p2.c's ((2k + c) / 2) / Q as (2k + c) / 2Q, and in version
             * 4's channel mode ((2k + c) / 2) / c as (2k + c) / 2c (c =
             * chan_scale, ch2 = 2c): both doublings are exact, and each
             * quotient is the same real number rounded once */
            const float q2 = __fmul_rn(m->qf, 2.0f), qy = lkv_recip_of(q2);
            const float ch2 = P.v4 ? __fmul_rn(chan_scale(m), 2.0f) : 1.0f;
            const float ch2y = P.v4 ? lkv_recip_of(ch2) : 1.0f;
            for (uint32_t pass = 0; pass < pc.lpv; pass++) {
                const uint32_t vl = pass * vpp + vp;
                const bool valid = vl < nk;
                const uint64_t v = first + vl;
                const int16_t *row = valid ? row_of(R, v, pc.off) : nullptr;
                uint32_t ww[E / 2];
#pragma unroll
                for (int i = 0; i < E / 2; i++)
                    ww[i] = 0;
                if (valid)
#pragma unroll
                    for (int q = 0; q < E / 8; q++)
                        if (8 * q < e)
                            get_block(row + li * e + 8 * q, fast, ww + 4 * q);
                /* the row's first point, from the vector's first lane: a bad
                 * chunk's mark or version 4's channel mark (one load a pass:
                 * reading it apart made every pass wait for two loads in a
                 * row) */
                const uint32_t r0 = __shfl_sync(kFull, ww[0] & 0xffffu, (int)(vp * pc.lpv));
                const bool dead = valid && r0 == (uint16_t)kDead;
                const bool mark = valid && !dead && (((r0 >> 14) ^ (r0 >> 15)) & 1u) != 0;
                /* a slot lies in one chunk: the mode is the warp's */
                const bool chan = P.v4 && __any_sync(kFull, mark);
                /* r^(k) in version 3, fp32(r16) in version 2; read only for
                 * a chunk that passed its checks */
                const uint32_t ci = vl * P.np + j;
                const float r = !valid || dead ? 0.0f
                                : P.v3         ? __uint_as_float(lkv_p2_norm_bits(codes[ci]))
                                               : __uint_as_float(lkv_math_f16_to_f32(
                                                     reinterpret_cast<const uint16_t *>(codes)[ci]));
                if (valid && chan && li == 0)
                    ww[0] ^= kChanMark;
                /* a dead row: points +0, so every step below gives +0 */
                if (dead)
#pragma unroll
                    for (int i = 0; i < E / 2; i++)
                        ww[i] = 0;
                float xv[E];
#pragma unroll
                for (int i = 0; i < E; i++)
                    xv[i] = (float)(int16_t)((i & 1) ? ww[i / 2] >> 16 : ww[i / 2] & 0xffffu);
                if (valid) {
                    /* the dividends are +0 or integers, the divisors 2Q and
                     * 2c below 2^15: lkv_div_by's range, where it is IEEE
                     * division (+0 included) */
                    const float dv = chan ? ch2 : q2, dy = chan ? ch2y : qy;
#pragma unroll
                    for (int i = 0; i < E; i++)
                        xv[i] = lkv_div_by(xv[i], dv, dy);
                }
                if (!chan)
                    butterfly<E>(xv, e, lpv, (int)li);
                /* every lane of the vector has read its points (the
                 * butterfly's shuffles, or the any above, wait for them)
                 * before any writes */
                __syncwarp();
                if (valid) {
                    /* p2.c's (t 4/D) r as t (4/D r): 4/D is a power of two
                     * and both products stay normal (t is 0 or a multiple
                     * of 2^-34, the least ulp of a quotient (2k + c) / 2Q;
                     * 4/D >= 2^-8; r >= 2^-23, or 0 in a dead row), so the
                     * first is exact either way and the last rounds the
                     * same real number once */
                    const float s = chan ? r : __fmul_rn(m->out_scale, r);
#pragma unroll
                    for (int i = 0; i < E; i++)
                        xv[i] = __fmul_rn(xv[i], s);
                    store_elems<E>(dst + (v * P.dim + pc.off + li * e) * P.esz, dt, e, fast, xv);
                }
            }
        }
    }
}

/* The vector kernels' instantiation for a plan: E, and the dtype when its
 * lanes are whole and its rows aligned (the usual case, where the compiler
 * then knows every loop bound and conversion), else DT = -1. Calls
 * f(VecShape<E, DT>()). */
template <int E_, int DT_> struct VecShape {
    static constexpr int E = E_, DT = DT_;
};

template <int E, class F> void vec_dispatch_dt(const Plan &P, F &&f)
{
    if (!P.full || !P.fast)
        f(VecShape<E, -1>());
    else if (P.dt == LKV_DTYPE_BF16)
        f(VecShape<E, LKV_DTYPE_BF16>());
    else if (P.dt == LKV_DTYPE_FP16)
        f(VecShape<E, LKV_DTYPE_FP16>());
    else
        f(VecShape<E, LKV_DTYPE_FP32>());
}

template <class F> void vec_dispatch(const Plan &P, uint32_t e, F &&f)
{
    if (e == 8)
        vec_dispatch_dt<8>(P, f);
    else if (e == 16)
        vec_dispatch_dt<16>(P, f);
    else
        vec_dispatch_dt<32>(P, f);
}

} /* namespace */

/* ------------------------------------------------------------------------ */
/* Host                                                                      */

/* Elements a lane holds from D = 128 up, in versions 2 and 3 (8, 16 or
 * 32; H100, 2^20 x 128 bf16: 16 took the version 3 encode from 1.036 to
 * 0.970 ms and the decode from 1.126 to 1.091; 32 spills, 1.21 and 1.15
 * ms). */
#ifndef LKV_P2_EPT_LARGE
#define LKV_P2_EPT_LARGE 16u
#endif

struct lkv_cuda_p2_model {
    lkv_params p;
    int dev;
    uint32_t np, dim, dmax, e;
    uint32_t chunk, v3; /* the container version's: lkv_p2_chunk_vectors(p), version 3 */
    uint32_t v4;        /* version 4: the level models follow the rotated ones   */
    uint32_t off[LKV_PIECES_MAX], pdim[LKV_PIECES_MAX], sym[LKV_PIECES_MAX];
    uint64_t cap; /* one chunk's scratch: 4 + body bound of a full chunk, rounded to 16 */
    lkv_p2_model *d_models;
    void *d_dtabs; /* the decoder's DecTab of the np rotated models (void: the type is
                    * in this file's anonymous namespace, the struct is not) */
};

/* The host fields of m for checked profile 2 parameters p (everything but
 * dev and d_models): the pieces, the chunk layout of p's container version
 * and the scratch slot, whose size is p2.c's worst-case body of a full
 * chunk (the norm field, then per piece the states and a word per symbol). */
static void model_layout(const lkv_params *p, lkv_cuda_p2_model *m)
{
    lkv_params p1 = *p;
    p1.profile = LKV_PROFILE_1; /* lkv_split_init only cuts the dim */
    p1.format = 0;
    lkv_split sp;
    lkv_split_init(&p1, &sp);
    m->p = *p;
    m->np = sp.count;
    m->dim = sp.dim;
    m->chunk = lkv_p2_chunk_vectors(p);
    m->v3 = lkv_p2_format_of(p) != LKV_FMT_VERSION_P2;
    m->v4 = lkv_p2_format_of(p) == LKV_FMT_VERSION_P4;
    m->dmax = 0;
    const uint64_t k = (uint64_t)m->chunk * sp.count, nf = m->v3 ? (k + 1) & ~(uint64_t)1 : 2 * k;
    uint64_t body = nf;
    for (uint32_t j = 0; j < sp.count; j++) {
        m->off[j] = sp.off[j];
        m->pdim[j] = sp.d[j].p.dim;
        if (m->pdim[j] > m->dmax)
            m->dmax = m->pdim[j];
        m->sym[j] = lkv_p2_syms_per_vec(p->q, m->pdim[j]);
        body += (m->v4 ? piece_hdr(m->pdim[j], true) : 0u) + 4ull * kLanes +
                2ull * m->chunk * m->sym[j];
    }
    /* elements a lane holds: LKV_P2_EPT_LARGE from D = 128 up (at D = 128
     * and 16, 8 lanes a vector instead of 16: one cross-lane butterfly
     * stage less, and a pass's per-vector work on half the lanes; ncu:
     * quantise 422 -> 357 M instructions), D / 32 past that, 8 below 128.
     * Version 4 keeps 8: its quantise kernel, which also writes the
     * channel domain, spills more at 16 (encode 2.08 -> 2.53 ms on channel
     * data) */
    const uint32_t el = m->dmax >= 128 && !m->v4 ? LKV_P2_EPT_LARGE : 8u;
    m->e = m->dmax / 32 > el ? m->dmax / 32 : el;
    m->cap = align16(4 + body);
    /* version 4: the slot also holds the channel values behind the norm
     * field (chan_row) until the rANS kernel codes it; it does already
     * (at least 9 symbols of 2 bytes per 8 coordinates), this makes sure */
    const uint64_t vals = align16(4 + nf) + 2ull * m->chunk * sp.dim;
    if (m->v4 && m->cap < vals)
        m->cap = align16(vals);
}

/* Models a model object holds on the device: the np rotated ones, then in
 * version 4 each piece's LKV_P2_LEVELS level models (level_models). */
static size_t models_count(const lkv_cuda_p2_model *m)
{
    return (size_t)m->np * (m->v4 ? 1u + LKV_P2_LEVELS : 1u);
}

/* Builds them on the host into h[models_count(m)] with the C coder's own
 * builders; the piece whose model fails, or -1. */
static int models_build(const lkv_cuda_p2_model *m, lkv_p2_model *h)
{
    for (uint32_t j = 0; j < m->np; j++) {
        if (!lkv_p2_model_build(m->p.q, m->pdim[j], &h[j]) || h[j].sym_vec != m->sym[j])
            return (int)j;
        if (m->v4)
            for (uint32_t l = 0; l < LKV_P2_LEVELS; l++)
                if (!lkv_p2_model_build_level(m->p.q, m->pdim[j], l,
                                              &h[m->np + j * LKV_P2_LEVELS + l]))
                    return (int)j;
    }
    return -1;
}

static void plan_init(const lkv_cuda_p2_model *m, lkv_dtype dt, size_t n, bool aligned, Plan *P)
{
    memset(P, 0, sizeof *P);
    P->np = m->np;
    P->dim = m->dim;
    P->esz = (uint32_t)lkv_dtype_size(dt);
    P->dt = (uint32_t)dt;
    P->dmax = m->dmax;
    P->n = n;
    P->chunk = m->chunk;
    P->slog = 0;
    while ((kLanes << P->slog) < m->chunk)
        P->slog++;
    P->v3 = m->v3;
    P->v4 = m->v4;
    P->nchunks = (n + m->chunk - 1) / m->chunk;
    P->cap = m->cap;
    bool fast = aligned && (m->dim * P->esz) % 16 == 0;
    for (uint32_t j = 0; j < m->np; j++) {
        Piece &pc = P->pc[j];
        pc.dim = m->pdim[j];
        pc.off = m->off[j];
        pc.sym = m->sym[j];
        pc.e = pc.dim < m->e ? pc.dim : m->e;
        pc.lpv = pc.dim / pc.e;
        while ((1u << pc.log2d) < pc.dim)
            pc.log2d++;
        if ((pc.off * P->esz) % 16 != 0)
            fast = false;
    }
    P->fast = fast;
    P->full = 1;
    for (uint32_t j = 0; j < m->np; j++)
        if (P->pc[j].e != m->e)
            P->full = 0;
    P->smem_models = m->np <= kSmemModels;
    P->warps = kRansWarps;
}

static lkv_status p2_params(const lkv_params *p, lkv_diag *diag)
{
    lkv_status st = lkv_params_check(p, diag);
    if (st == LKV_OK && lkv_profile_of(p) != LKV_PROFILE_2)
        st = lkv_fail(diag, LKV_ERR_VARIANT, UINT64_MAX,
                      "profile=%u given to a profile 2 call (want profile=2)", p->profile);
    return st;
}

extern "C" size_t lkv_cuda_p2_chunks(const lkv_params *p, size_t n)
{
    if (!p)
        return 0;
    const size_t v = lkv_p2_chunk_vectors(p);
    return n / v + (n % v != 0);
}

/* Version 4's workspace after the scratch: the channel domain's points
 * (R2, 2 bytes a coordinate), the slots' rotated estimates (crot, a u32
 * per slot and piece) and the modes (a byte per chunk and piece). */
static size_t v4_work(const lkv_cuda_p2_model *m, size_t n)
{
    const size_t nc = lkv_cuda_p2_chunks(&m->p, n), nslots = (n + kLanes - 1) / kLanes;
    return align16(2 * n * (size_t)m->dim) + align16(4 * nslots * m->np) + align16(nc * m->np);
}

#if !defined(LKV_P2_EMU) /* what follows talks to the CUDA runtime */

extern "C" lkv_status lkv_cuda_p2_model_create(const lkv_params *p, int dev,
                                               lkv_cuda_p2_model **out, lkv_diag *diag)
{
    if (!out)
        return lkv_fail(diag, LKV_ERR_INVALID_ARGUMENT, UINT64_MAX, "out is NULL");
    *out = NULL;
    lkv_status st = p2_params(p, diag);
    if (st != LKV_OK)
        return st;
    lkv_cuda_p2_model *m = (lkv_cuda_p2_model *)calloc(1, sizeof *m);
    if (m)
        model_layout(p, m);
    const size_t nm = m ? models_count(m) : 0;
    lkv_p2_model *h = m ? (lkv_p2_model *)calloc(nm, sizeof *h) : NULL;
    if (!m || !h) {
        free(m);
        free(h);
        return lkv_fail(diag, LKV_ERR_NOMEM, UINT64_MAX, "profile=2 model: out of host memory");
    }
    m->dev = dev;
    const int bad = models_build(m, h);
    if (bad >= 0) {
        const uint32_t pd = m->pdim[bad];
        free(h);
        free(m);
        return lkv_fail(diag, LKV_ERR_INTERNAL, UINT64_MAX, "profile=2: q=%u dim=%u has no model",
                        p->q, pd);
    }
    DecTab *hd = (DecTab *)calloc(m->np, sizeof *hd);
    if (!hd) {
        free(h);
        free(m);
        return lkv_fail(diag, LKV_ERR_NOMEM, UINT64_MAX, "profile=2 model: out of host memory");
    }
    for (uint32_t j = 0; j < m->np; j++)
        dtab_build(&h[j], &hd[j]);
    cudaError_t ce = cudaSetDevice(dev);
    if (ce == cudaSuccess)
        ce = cudaMalloc((void **)&m->d_models, nm * sizeof *h);
    if (ce == cudaSuccess)
        ce = cudaMemcpy(m->d_models, h, nm * sizeof *h, cudaMemcpyHostToDevice);
    if (ce == cudaSuccess)
        ce = cudaMalloc(&m->d_dtabs, m->np * sizeof *hd);
    if (ce == cudaSuccess)
        ce = cudaMemcpy(m->d_dtabs, hd, m->np * sizeof *hd, cudaMemcpyHostToDevice);
    free(h);
    free(hd);
    if (ce != cudaSuccess) {
        cudaFree(m->d_models);
        cudaFree(m->d_dtabs);
        free(m);
        return lkv_cuda_fail(ce, diag, "profile=2 model upload");
    }
    *out = m;
    return LKV_OK;
}

extern "C" void lkv_cuda_p2_model_free(lkv_cuda_p2_model *m)
{
    if (!m)
        return;
    cudaFree(m->d_models);
    cudaFree(m->d_dtabs);
    free(m);
}

/* Blocks of a vector kernel: one warp per slot, the rest by its grid
 * stride. */
static unsigned vec_grid(const Plan &P)
{
    const uint64_t b = ((P.n + kLanes - 1) / kLanes + kVecWarps - 1) / kVecWarps;
    return b < (1u << 20) ? (unsigned)b : (1u << 20);
}

/* Blocks of the mode kernel: a warp per chunk and piece. */
static unsigned mode_grid(const Plan &P)
{
    const uint64_t b = (P.nchunks * P.np + kVecWarps - 1) / kVecWarps;
    return b < (1u << 20) ? (unsigned)b : (1u << 20);
}

/* Grid of a persistent kernel: blocks that fit the device at once, at most
 * one warp per chunk. */
static cudaError_t grid_of(const void *kern, const Plan &P, size_t smem, unsigned *grid)
{
    cudaError_t ce =
        cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    /* all of L1 that may be shared memory: otherwise the driver may pick a
     * smaller carveout than the occupancy below assumes, and the blocks of
     * this persistent grid that do not fit wait for a second wave (H100:
     * the decode's 63 KiB blocks ran one per SM) */
    if (ce == cudaSuccess)
        ce = cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout,
                                  cudaSharedmemCarveoutMaxShared);
    if (ce != cudaSuccess)
        return ce;
    int dev = 0, sms = 0, per = 0;
    if ((ce = cudaGetDevice(&dev)) != cudaSuccess ||
        (ce = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess ||
        (ce = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, kern, (int)P.warps * 32, smem)) !=
            cudaSuccess)
        return ce;
    if (per < 1)
        per = 1;
    uint64_t g = (uint64_t)sms * (uint64_t)per;
    const uint64_t need = (P.nchunks + P.warps - 1) / P.warps;
    if (g > need)
        g = need;
    *grid = (unsigned)(g ? g : 1);
    return cudaSuccess;
}

static size_t scan_temp(size_t items)
{
    size_t t = 0;
    cub::DeviceScan::ExclusiveSum(nullptr, t, (const uint64_t *)nullptr, (uint64_t *)nullptr,
                                  (int)items);
    return t;
}

extern "C" size_t lkv_cuda_p2_encode_workspace(const lkv_cuda_p2_model *m, size_t n)
{
    if (!m)
        return 0;
    const size_t nc = lkv_cuda_p2_chunks(&m->p, n);
    return align16((nc + 1) * 8) + align16(4 * nc) + align16(scan_temp(nc + 1)) +
           nc * (size_t)m->cap + (m->v4 ? v4_work(m, n) : 0);
}

static lkv_status check_dt(lkv_dtype dt, lkv_diag *diag)
{
    return lkv_dtype_check((int)dt, diag);
}

extern "C" lkv_status lkv_cuda_p2_encode(const lkv_cuda_p2_model *m, lkv_dtype dt,
                                         const void *d_src, size_t n, void *d_payload, size_t cap,
                                         uint64_t *d_offs, void *d_work, size_t work_bytes,
                                         uint8_t *d_status, void *stream, lkv_diag *diag)
{
    if (!m)
        return lkv_fail(diag, LKV_ERR_INVALID_ARGUMENT, UINT64_MAX, "model is NULL");
    lkv_status st = check_dt(dt, diag);
    if (st != LKV_OK || n == 0)
        return st;
    if (!d_src || !d_payload || !d_offs || !d_work)
        return lkv_fail(diag, LKV_ERR_INVALID_ARGUMENT, UINT64_MAX,
                        "a device buffer is NULL with n=%zu", n);
    if (((uintptr_t)d_payload & 1u) != 0)
        return lkv_fail(diag, LKV_ERR_INVALID_ARGUMENT, UINT64_MAX,
                        "d_payload=%p is not 2-byte aligned", d_payload);
    const size_t bound = lkv_p2_payload_bound(&m->p, n);
    if (bound == 0 || cap < bound)
        return lkv_fail(diag, LKV_ERR_BUFFER_SMALL, UINT64_MAX,
                        "cap=%zu is below the worst case %zu of n=%zu vectors", cap, bound, n);
    const size_t need = lkv_cuda_p2_encode_workspace(m, n);
    if (work_bytes < need)
        return lkv_fail(diag, LKV_ERR_BUFFER_SMALL, UINT64_MAX,
                        "work_bytes=%zu is below the %zu n=%zu vectors need", work_bytes, need, n);
    Plan P;
    plan_init(m, dt, n, ((uintptr_t)d_src & 15u) == 0, &P);
    const size_t nc = P.nchunks;
    uint8_t *w = (uint8_t *)d_work;
    uint64_t *sizes = (uint64_t *)w;
    uint32_t *heads = (uint32_t *)(w + align16((nc + 1) * 8));
    const size_t tbytes = scan_temp(nc + 1);
    void *temp = (uint8_t *)heads + align16(4 * nc);
    uint8_t *scratch = (uint8_t *)temp + align16(tbytes);
    cudaStream_t s = (cudaStream_t)stream;
    /* the rANS kernel: models in shared memory or not, version 4 or not */
    void (*const ek[2][2])(Plan, const lkv_p2_model *, Rows, Rows, const uint8_t *, uint8_t *,
                           uint64_t *, uint32_t *) = {
        {p2_rans_encode_kernel<false, false>, p2_rans_encode_kernel<false, true>},
        {p2_rans_encode_kernel<true, false>, p2_rans_encode_kernel<true, true>}};
    const auto kern = ek[P.smem_models != 0][P.v4 != 0];
    const size_t smem = models_smem(P) + packs_smem(P);
    /* the points wait in the payload buffer: cap >= the bound > 2 n dim;
     * version 4's channel points, estimates and modes in the workspace
     * (v4_work) */
    const Rows R = {(uint8_t *)d_payload, 2ull * P.dim, 2, ((uintptr_t)d_payload & 15u) == 0};
    uint8_t *r2 = P.v4 ? scratch + nc * (size_t)m->cap : nullptr;
    const Rows R2 = {r2, 2ull * P.dim, 2, ((uintptr_t)r2 & 15u) == 0};
    uint32_t *crot = P.v4 ? (uint32_t *)(r2 + align16(2 * n * (size_t)P.dim)) : nullptr;
    uint8_t *modes =
        P.v4 ? (uint8_t *)crot + align16(4 * ((n + kLanes - 1) / kLanes) * P.np) : nullptr;
    unsigned grid = 1;
    cudaError_t ce = cudaSetDevice(m->dev);
    if (ce == cudaSuccess)
        ce = grid_of((const void *)kern, P, smem, &grid);
    if (ce == cudaSuccess)
        ce = cudaMemsetAsync(sizes + nc, 0, 8, s);
    if (ce == cudaSuccess) {
        const uint8_t *src = (const uint8_t *)d_src;
        const unsigned vg = vec_grid(P), vt = kVecWarps * 32;
        vec_dispatch(P, m->e, [&](auto sh) {
            if (P.v4)
                p2_quantise_kernel<decltype(sh)::E, decltype(sh)::DT, true>
                    <<<vg, vt, 0, s>>>(P, m->d_models, src, R, R2, scratch, d_status, crot);
            else
                p2_quantise_kernel<decltype(sh)::E, decltype(sh)::DT, false>
                    <<<vg, vt, 0, s>>>(P, m->d_models, src, R, R2, scratch, d_status, crot);
        });
        ce = cudaGetLastError();
    }
    if (ce == cudaSuccess && P.v4) {
        p2_mode_kernel<<<mode_grid(P), kVecWarps * 32, 0, s>>>(P, m->d_models, scratch, crot,
                                                               modes);
        ce = cudaGetLastError();
    }
    if (ce == cudaSuccess) {
        kern<<<grid, P.warps * 32, smem, s>>>(P, m->d_models, R, R2, modes, scratch, sizes, heads);
        ce = cudaGetLastError();
    }
    if (ce == cudaSuccess) {
        size_t tb = tbytes;
        ce = cub::DeviceScan::ExclusiveSum(temp, tb, sizes, d_offs, (int)(nc + 1), s);
    }
    if (ce == cudaSuccess) {
        const unsigned cg = nc < 65535u ? (unsigned)nc : 65535u;
        p2_compact_kernel<<<cg, 256, 0, s>>>(P, scratch, d_offs, heads, (uint8_t *)d_payload);
        ce = cudaGetLastError();
    }
    if (ce != cudaSuccess)
        return lkv_cuda_fail(ce, diag, "profile=2 encode launch");
    return LKV_OK;
}

extern "C" lkv_status lkv_cuda_p2_decode(const lkv_cuda_p2_model *m, const void *d_payload,
                                         size_t len, const uint64_t *d_offs, size_t n, lkv_dtype dt,
                                         void *d_dst, uint8_t *d_status, void *stream,
                                         lkv_diag *diag)
{
    if (!m)
        return lkv_fail(diag, LKV_ERR_INVALID_ARGUMENT, UINT64_MAX, "model is NULL");
    lkv_status st = check_dt(dt, diag);
    if (st != LKV_OK || n == 0)
        return st;
    if (!d_payload || !d_offs || !d_dst)
        return lkv_fail(diag, LKV_ERR_INVALID_ARGUMENT, UINT64_MAX,
                        "a device buffer is NULL with n=%zu", n);
    if (((uintptr_t)d_payload & 1u) != 0)
        return lkv_fail(diag, LKV_ERR_INVALID_ARGUMENT, UINT64_MAX,
                        "d_payload=%p is not 2-byte aligned", d_payload);
    Plan P;
    plan_init(m, dt, n, ((uintptr_t)d_dst & 15u) == 0, &P);
    /* the rANS kernel: tables in shared memory or not, version 4 or not */
    void (*const dk[2][2])(Plan, const lkv_p2_model *, const DecTab *, const uint8_t *, uint64_t,
                           const uint64_t *, Rows, uint8_t *) = {
        {p2_rans_decode_kernel<false, false>, p2_rans_decode_kernel<false, true>},
        {p2_rans_decode_kernel<true, false>, p2_rans_decode_kernel<true, true>}};
    const auto kern = dk[P.smem_models != 0][P.v4 != 0];
    const size_t smem = dec_smem(P);
    cudaStream_t s = (cudaStream_t)stream;
    uint8_t *dst = (uint8_t *)d_dst;
    /* the points wait in each vector's output */
    const Rows R = {dst, (uint64_t)P.dim * P.esz, P.esz, P.fast};
    unsigned grid = 1;
    cudaError_t ce = cudaSetDevice(m->dev);
    if (ce == cudaSuccess)
        ce = grid_of((const void *)kern, P, smem, &grid);
    if (ce == cudaSuccess) {
        const uint8_t *src = (const uint8_t *)d_payload;
        kern<<<grid, P.warps * 32, smem, s>>>(P, m->d_models, (const DecTab *)m->d_dtabs, src, len,
                                              d_offs, R, d_status);
        ce = cudaGetLastError();
        const unsigned vg = vec_grid(P), vt = kVecWarps * 32;
        if (ce == cudaSuccess) {
            vec_dispatch(P, m->e, [&](auto sh) {
                p2_reconstruct_kernel<decltype(sh)::E, decltype(sh)::DT>
                    <<<vg, vt, 0, s>>>(P, m->d_models, src, d_offs, R, dst);
            });
            ce = cudaGetLastError();
        }
    }
    if (ce != cudaSuccess)
        return lkv_cuda_fail(ce, diag, "profile=2 decode launch");
    return LKV_OK;
}

#endif /* !LKV_P2_EMU */

extern "C" lkv_status lkv_cuda_p2_index(const lkv_params *p, const void *payload, size_t len,
                                        size_t n, uint64_t *offs, lkv_diag *diag)
{
    lkv_status st = p2_params(p, diag);
    if (st != LKV_OK)
        return st;
    if (n > 0 && (!payload || !offs))
        return lkv_fail(diag, LKV_ERR_INVALID_ARGUMENT, UINT64_MAX,
                        "payload or offs is NULL with n=%zu", n);
    const uint8_t *in = (const uint8_t *)payload;
    const size_t chunk = lkv_p2_chunk_vectors(p);
    size_t pos = 0, c = 0;
    for (size_t first = 0; first < n; first += chunk, c++) {
        const size_t cnt = n - first < chunk ? n - first : chunk;
        size_t bytes = 0;
        offs[c] = pos;
        st = lkv_p2_chunk_size(p, in + pos, len - pos, cnt, &bytes, diag);
        if (st != LKV_OK) {
            if (diag)
                diag->index = pos;
            return st;
        }
        pos += bytes;
    }
    if (offs)
        offs[c] = pos;
    if (pos != len)
        return lkv_fail(diag, LKV_ERR_CORRUPT, pos,
                        "coded: %zu trailing bytes after the last chunk", len - pos);
    return LKV_OK;
}
