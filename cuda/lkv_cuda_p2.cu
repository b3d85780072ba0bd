/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_cuda_p2.cu - codec profile 2 on the GPU (lkv_cuda_p2.h), byte-identical
 * to codec/p2.c.
 *
 * One warp codes one chunk (up to 128 vectors = 4 slots of 32); a block's
 * warps loop over chunks (a persistent grid), so the models are copied to
 * shared memory once per block.
 *
 * Per slot, two phases with a shared-memory buffer of the slot's points
 * between them (kb: one row of D int16 per vector):
 *   - vector phase: D/E lanes hold one vector (E = max(8, Dmax/32)
 *     contiguous elements each, so every lane holds whole E8 blocks); norm,
 *     division, butterfly and closest point (encode) or the inverse
 *     (decode), across lanes by xor shuffles, in profile 2's operation
 *     order;
 *   - rANS phase: lane l codes vector l of the slot, all lanes in lockstep
 *     over the same symbol positions (a block's symbol count does not
 *     depend on its point). The shared word stream's positions come from a
 *     ballot of the lanes that move a word and a popcount of the lanes
 *     before them in the C coder's lane order: ascending when decoding,
 *     descending when encoding.
 * Encode writes each chunk into a worst-case scratch slot (words backwards
 * from its end, then moved behind the states, as p2.c does), the chunk
 * sizes are scanned (cub) into offsets, and a copy kernel compacts.
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
constexpr uint32_t kChunk = LKV_P2_CHUNK_VECTORS;
constexpr uint32_t kLanes = LKV_P2_LANES;
constexpr uint32_t kMaxWarps = 8;
/* models held in shared memory when at most this many pieces */
constexpr uint32_t kSmemModels = 2;
constexpr size_t kSmemBudget = 200u * 1024u;

struct Piece {
    uint32_t dim, off, sym, e, lpv, log2d;
};

/* Constants of one call, passed by value. */
struct Plan {
    uint32_t np, dim, esz, dt, fast, dmax, kstride, cstride, smem_models, warps;
    uint64_t n, nchunks, cap; /* cap: bytes of one chunk's scratch slot */
    Piece pc[LKV_PIECES_MAX];
};

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
                const uint32_t a = __float_as_uint(x[8 * j + 2 * i]);
                const uint32_t b = __float_as_uint(x[8 * j + 2 * i + 1]);
                const uint32_t ha =
                    dt == LKV_DTYPE_BF16 ? lkv_math_f32_to_bf16(a) : lkv_math_f32_to_f16(a);
                const uint32_t hb =
                    dt == LKV_DTYPE_BF16 ? lkv_math_f32_to_bf16(b) : lkv_math_f32_to_f16(b);
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
    for (int d = 1; d < lpv; d <<= 1) {
        const bool upper = (li & d) != 0;
#pragma unroll
        for (int i = 0; i < E; i++)
            if (i < e) {
                const float o = __shfl_xor_sync(kFull, x[i], d);
                x[i] = upper ? __fsub_rn(o, x[i]) : __fadd_rn(x[i], o);
            }
    }
}

/* a / b correctly rounded, y = lkv_recip_of(b): lkv_div_by (three
 * instructions, exact for |a| >= 2^-100 and the b of the codec: see
 * lkv_cuda_block.cuh and tests/gpu/div_exhaustive); IEEE division below
 * that and for zeros (lkv_div_by would give +0 for -0). */
__device__ __forceinline__ float div_exact(float a, float b, float y)
{
    return fabsf(a) >= 7.88860905221011805411728565283e-31f ? lkv_div_by(a, b, y) : __fdiv_rn(a, b);
}

/* ------------------------------------------------------------------------ */
/* Shared memory                                                             */

/* Copies the models to shared memory (when they fit) and returns the base
 * the warps read them from. */
__device__ const lkv_p2_model *stage_models(const Plan &P, const lkv_p2_model *g, uint8_t *smem)
{
    if (!P.smem_models)
        return g;
    const uint32_t words = (uint32_t)(P.np * sizeof(lkv_p2_model) / 4);
    const uint32_t *src = reinterpret_cast<const uint32_t *>(g);
    uint32_t *dst = reinterpret_cast<uint32_t *>(smem);
    for (uint32_t i = threadIdx.x; i < words; i += blockDim.x)
        dst[i] = src[i];
    __syncthreads();
    return reinterpret_cast<const lkv_p2_model *>(smem);
}

__host__ __device__ constexpr size_t align16(size_t v)
{
    return (v + 15) & ~(size_t)15;
}

__host__ __device__ inline size_t models_smem(const Plan &P)
{
    return P.smem_models ? align16(P.np * sizeof(lkv_p2_model)) : 0;
}

__host__ __device__ inline size_t warp_smem(const Plan &P)
{
    return align16((size_t)kLanes * P.kstride * 2) + align16((size_t)kLanes * P.cstride);
}

/* ------------------------------------------------------------------------ */
/* Encode                                                                    */

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

/* An offset u of table t, in reverse (raw bits first, then the bin). */
__device__ __forceinline__ void put_offset(uint32_t &x, bool act, const lkv_p2_table *t, uint32_t b,
                                           uint32_t u, uint16_t *w, uint32_t &wp)
{
    if (b) {
        const uint32_t f = LKV_P2_PROB_ONE >> b;
        put_sym(x, act, (u & ((1u << b) - 1u)) * f, f, 0xffffffffu / f, w, wp);
    }
    const uint32_t hi = act ? u >> b : 0u;
    const uint32_t c0 = t->cum[hi];
    put_sym(x, act, c0, t->cum[hi + 1] - c0, t->rcp[hi], w, wp);
}

template <int E>
__global__ void __launch_bounds__(kMaxWarps * 32)
    p2_encode_kernel(Plan P, const lkv_p2_model *gm, const uint8_t *src, uint8_t *scratch,
                     uint64_t *sizes, uint8_t *status)
{
    LKV_P2_SMEM(smem);
    const lkv_p2_model *models = stage_models(P, gm, smem);
    const uint32_t warp = threadIdx.x >> 5, lane = threadIdx.x & 31u;
    uint8_t *ws = smem + models_smem(P) + warp * warp_smem(P);
    int16_t *kb = reinterpret_cast<int16_t *>(ws);
    uint8_t *cb = ws + align16((size_t)kLanes * P.kstride * 2);
    const uint64_t nwarps = (uint64_t)gridDim.x * P.warps;
    for (uint64_t c = (uint64_t)blockIdx.x * P.warps + warp; c < P.nchunks; c += nwarps) {
        const uint64_t first = c * kChunk;
        const uint32_t cnt = (uint32_t)(P.n - first < kChunk ? P.n - first : kChunk);
        const uint32_t nl = cnt < kLanes ? cnt : kLanes;
        const uint32_t nslots = (cnt + kLanes - 1) / kLanes;
        uint8_t *chunk = scratch + c * P.cap;
        uint8_t *body = chunk + 4;
        uint16_t *w16 = reinterpret_cast<uint16_t *>(chunk);
        uint32_t pos = 4 + 2 * cnt * P.np; /* bytes from the chunk's start */
        if (status)
            for (uint32_t v = lane; v < cnt; v += kLanes)
                status[first + v] = LKV_OK;
        __syncwarp();
        for (uint32_t j = 0; j < P.np; j++) {
            const lkv_p2_model *m = models + j;
            const Piece pc = P.pc[j];
            const int e = (int)pc.e, lpv = (int)pc.lpv;
            const uint32_t vpp = kLanes / pc.lpv, vp = lane / pc.lpv, li = lane % pc.lpv;
            uint32_t x = LKV_P2_RANS_LOW;
            uint32_t wp = (uint32_t)(P.cap / 2); /* u16 index, writing backwards */
            const uint32_t b6 = m->t[0][0].b, b7 = m->t[0][1].b;
            for (uint32_t k = nslots; k-- > 0;) {
                const uint32_t nk = cnt - k * kLanes < kLanes ? cnt - k * kLanes : kLanes;
                /* vector phase: the slot's points into kb / cb */
                for (uint32_t pass = 0; pass < pc.lpv; pass++) {
                    const uint32_t vl = pass * vpp + vp;
                    const bool valid = vl < nk;
                    const uint64_t v = first + k * kLanes + vl;
                    float xv[E];
#pragma unroll
                    for (int i = 0; i < E; i++)
                        xv[i] = 0.0f;
                    if (valid)
                        load_elems<E>(src + (v * P.dim + pc.off + li * pc.e) * P.esz, P.dt, e,
                                      P.fast != 0, xv);
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
                    const uint16_t r16 = lkv_math_f32_to_f16(__float_as_uint(r));
                    const bool ok = allfin && r16 != LKV_F16_INF_BITS;
                    if (!ok)
                        r = 1.0f;
                    const float ry = lkv_recip_of(r);
#pragma unroll
                    for (int i = 0; i < E; i++)
                        if (i < e)
                            xv[i] = ok ? div_exact(xv[i], r, ry) : 0.0f;
                    butterfly<E>(xv, e, lpv, (int)li);
#pragma unroll
                    for (int i = 0; i < E; i++)
                        xv[i] = __fmul_rn(__fmul_rn(xv[i], m->qf), 0.25f);
                    if (valid) {
                        if (li == 0) {
                            reinterpret_cast<uint16_t *>(body)[(k * kLanes + vl) * P.np + j] =
                                ok ? r16 : (uint16_t)0;
                            /* a NaN/Inf anywhere in the vector outranks an
                             * overflowing piece, as in the C coder */
                            if (!ok && status && (!allfin || status[v] != LKV_ERR_NONFINITE))
                                status[v] = allfin ? LKV_ERR_NORM_OVERFLOW : LKV_ERR_NONFINITE;
                        }
#pragma unroll
                        for (int bb = 0; bb < E / 8; bb++)
                            if (8 * bb < e) {
                                uint32_t wd[8];
                                const int half = lkv_e8_box(xv + 8 * bb, m->box_f, wd);
                                uint32_t pk[4];
#pragma unroll
                                for (int i = 0; i < 4; i++) {
                                    const uint32_t lo = ok ? wd[2 * i] - m->box : 0u;
                                    const uint32_t hi = ok ? wd[2 * i + 1] - m->box : 0u;
                                    pk[i] = (lo & 0xffffu) | (hi << 16);
                                }
                                const uint32_t at = li * pc.e + 8 * bb;
                                *reinterpret_cast<uint4 *>(kb + vl * P.kstride + at) =
                                    make_uint4(pk[0], pk[1], pk[2], pk[3]);
                                cb[vl * P.cstride + at / 8] = (uint8_t)(ok ? half : 0);
                            }
                    }
                }
                __syncwarp();
                /* rANS phase: lane = vector of the slot, blocks backwards */
                const bool act = lane < nk;
                const int16_t *row = kb + lane * P.kstride;
                for (uint32_t b = m->nblocks; b-- > 0;) {
                    int32_t kk[8];
                    uint32_t cs = 0;
                    if (act) {
                        const uint4 q4 = *reinterpret_cast<const uint4 *>(row + 8 * b);
                        const uint32_t q[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
                        for (int i = 0; i < 4; i++) {
                            kk[2 * i] = (int32_t)(int16_t)(q[i] & 0xffffu);
                            kk[2 * i + 1] = (int32_t)(int16_t)(q[i] >> 16);
                        }
                        cs = cb[lane * P.cstride + b];
                    } else {
#pragma unroll
                        for (int i = 0; i < 8; i++)
                            kk[i] = 0;
                    }
                    uint32_t par = 0;
#pragma unroll
                    for (int i = 0; i < 7; i++)
                        par ^= (uint32_t)kk[i] & 1u;
                    const lkv_p2_table *t7 = &m->t[cs][1 + par];
                    put_offset(x, act, t7, b7, (uint32_t)(((kk[7] - (int32_t)par) >> 1) - t7->jlo),
                               w16, wp);
                    const lkv_p2_table *t0 = &m->t[cs][0];
#pragma unroll
                    for (int i = 6; i >= 0; i--)
                        put_offset(x, act, t0, b6, (uint32_t)(kk[i] - t0->jlo), w16, wp);
                    const uint32_t f1 = m->coset_f1;
                    put_sym(x, act, cs ? LKV_P2_PROB_ONE - f1 : 0u, cs ? f1 : LKV_P2_PROB_ONE - f1,
                            m->coset_rcp[cs], w16, wp);
                }
                __syncwarp();
            }
            /* the states, then the words moved behind them (forward, in
             * rounds that read before they write: the target lies below) */
            if (lane < nl)
                st32a2(chunk + pos + 4 * lane, x);
            pos += 4 * nl;
            const uint32_t nw = (uint32_t)(P.cap / 2) - wp, to = pos / 2;
            __syncwarp();
            for (uint32_t i0 = 0; i0 < nw; i0 += kLanes) {
                const uint32_t i = i0 + lane;
                const uint16_t wv = i < nw ? w16[wp + i] : (uint16_t)0;
                __syncwarp();
                if (i < nw)
                    w16[to + i] = wv;
                __syncwarp();
            }
            pos += 2 * nw;
        }
        if (lane == 0) {
            st32a2(chunk, pos - 4);
            sizes[c] = pos;
        }
        __syncwarp();
    }
}

/* Moves each chunk from its scratch slot to its offset (both even). */
__global__ void p2_compact_kernel(const uint8_t *scratch, uint64_t cap, const uint64_t *offs,
                                  uint64_t nchunks, uint8_t *dst)
{
    for (uint64_t c = blockIdx.x; c < nchunks; c += gridDim.x) {
        const uint64_t o = offs[c], len = offs[c + 1] - o;
        const uint8_t *s = scratch + c * cap;
        uint8_t *d = dst + o;
        if ((o & 3u) == 0) {
            const uint32_t *s4 = reinterpret_cast<const uint32_t *>(s);
            uint32_t *d4 = reinterpret_cast<uint32_t *>(d);
            for (uint64_t i = threadIdx.x; i < len / 4; i += blockDim.x)
                d4[i] = s4[i];
            if ((len & 3u) && threadIdx.x == 0)
                reinterpret_cast<uint16_t *>(d)[len / 2 - 1] =
                    reinterpret_cast<const uint16_t *>(s)[len / 2 - 1];
        } else {
            /* d is 2 mod 4: one u16, then u32 stores of two u16 loads
             * (never reading past the chunk) */
            const uint16_t *s2 = reinterpret_cast<const uint16_t *>(s);
            uint16_t *d2 = reinterpret_cast<uint16_t *>(d);
            if (threadIdx.x == 0)
                d2[0] = s2[0];
            const uint64_t nq = (len - 2) / 4;
            uint32_t *d4 = reinterpret_cast<uint32_t *>(d + 2);
            for (uint64_t i = threadIdx.x; i < nq; i += blockDim.x)
                d4[i] = (uint32_t)s2[2 * i + 1] | ((uint32_t)s2[2 * i + 2] << 16);
            if (((len - 2) & 3u) && threadIdx.x == 0)
                d2[len / 2 - 1] = s2[len / 2 - 1];
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Decode                                                                    */

/* Refill of every active lane, lanes 0..nk-1 in turn reading the shared
 * word stream (u16 index *rp, end re). */
__device__ __forceinline__ void refill(uint32_t &x, bool act, const uint16_t *w, uint32_t &rp,
                                       uint32_t re, bool &bad)
{
    const bool need = act && x < LKV_P2_RANS_LOW;
    const uint32_t bal = __ballot_sync(kFull, need);
    if (need) {
        const uint32_t i = rp + (uint32_t)__popc(bal & lanemask_lt());
        if (i < re)
            x = (x << 16) | w[i];
        else
            bad = true;
    }
    rp += (uint32_t)__popc(bal);
}

/* One offset of table t (bin, refill, raw bits, refill). */
__device__ __forceinline__ uint32_t get_offset(uint32_t &x, bool act, const lkv_p2_table *t,
                                               uint32_t b, const uint16_t *w, uint32_t &rp,
                                               uint32_t re, bool &bad)
{
    uint32_t u = 0;
    if (act) {
        const uint32_t slot = x & (LKV_P2_PROB_ONE - 1u);
        uint32_t s = t->lut[slot >> LKV_P2_LUT_SHIFT];
        while (t->cum[s + 1] <= slot)
            s++;
        x = (t->cum[s + 1] - t->cum[s]) * (x >> LKV_P2_PROB_BITS) + slot - t->cum[s];
        u = s << b;
    }
    refill(x, act, w, rp, re, bad);
    if (b) {
        if (act) {
            const uint32_t slot = x & (LKV_P2_PROB_ONE - 1u);
            const uint32_t sh = LKV_P2_PROB_BITS - b;
            x = ((x >> LKV_P2_PROB_BITS) << sh) + (slot & ((1u << sh) - 1u));
            u |= slot >> sh;
        }
        refill(x, act, w, rp, re, bad);
    }
    if (act && u >= t->n) {
        bad = true;
        u = 0;
    }
    return u;
}

template <int E>
__global__ void __launch_bounds__(kMaxWarps * 32)
    p2_decode_kernel(Plan P, const lkv_p2_model *gm, const uint8_t *payload, uint64_t len,
                     const uint64_t *offs, uint8_t *dst, uint8_t *status)
{
    LKV_P2_SMEM(smem);
    const lkv_p2_model *models = stage_models(P, gm, smem);
    const uint32_t warp = threadIdx.x >> 5, lane = threadIdx.x & 31u;
    uint8_t *ws = smem + models_smem(P) + warp * warp_smem(P);
    int16_t *kb = reinterpret_cast<int16_t *>(ws);
    const uint64_t nwarps = (uint64_t)gridDim.x * P.warps;
    for (uint64_t c = (uint64_t)blockIdx.x * P.warps + warp; c < P.nchunks; c += nwarps) {
        const uint64_t first = c * kChunk;
        const uint32_t cnt = (uint32_t)(P.n - first < kChunk ? P.n - first : kChunk);
        const uint32_t nl = cnt < kLanes ? cnt : kLanes;
        const uint32_t nslots = (cnt + kLanes - 1) / kLanes;
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
        uint32_t pos = 2 * cnt * P.np; /* bytes into the body */
        if (!bad && pos > blen)
            bad = true;
        /* The refills read the body in order, one dependent load per
         * symbol step: bring the whole chunk into L2 now, so that the
         * steps that leave L1 wait for L2, not for memory. */
        if (!bad)
            for (uint32_t i = lane * 128u; i < blen; i += kLanes * 128u)
#if !defined(LKV_P2_EMU)
                asm volatile("prefetch.global.L2 [%0];" ::"l"(body + i));
#else
                (void)i;
#endif
        if (!bad)
            for (uint32_t i = lane; i < cnt * P.np; i += kLanes) {
                const uint16_t r16 = b16[i];
                if (r16 < LKV_F16_EPS_BITS || r16 >= LKV_F16_INF_BITS)
                    bad = true;
            }
        bad = __any_sync(kFull, bad);
        for (uint32_t j = 0; j < P.np && !bad; j++) {
            const lkv_p2_model *m = models + j;
            const Piece pc = P.pc[j];
            const int e = (int)pc.e, lpv = (int)pc.lpv;
            const uint32_t vpp = kLanes / pc.lpv, vp = lane / pc.lpv, li = lane % pc.lpv;
            const uint32_t b6 = m->t[0][0].b, b7 = m->t[0][1].b;
            const float qy = lkv_recip_of(m->qf);
            if (blen - pos < 4 * nl) {
                bad = true;
                break;
            }
            uint32_t x = lane < nl ? ld32a2(body + pos + 4 * lane) : LKV_P2_RANS_LOW;
            bool lbad = x < LKV_P2_RANS_LOW;
            pos += 4 * nl;
            uint32_t rp = pos / 2;
            const uint32_t re = blen / 2;
            for (uint32_t k = 0; k < nslots; k++) {
                const uint32_t nk = cnt - k * kLanes < kLanes ? cnt - k * kLanes : kLanes;
                const bool act = lane < nk;
                int16_t *row = kb + lane * P.kstride;
                for (uint32_t b = 0; b < m->nblocks; b++) {
                    uint32_t cs = 0;
                    if (act) {
                        const uint32_t slot = x & (LKV_P2_PROB_ONE - 1u);
                        const uint32_t f1 = m->coset_f1, f0 = LKV_P2_PROB_ONE - f1;
                        cs = slot >= f0;
                        x = cs ? f1 * (x >> LKV_P2_PROB_BITS) + slot - f0
                               : f0 * (x >> LKV_P2_PROB_BITS) + slot;
                    }
                    refill(x, act, b16, rp, re, lbad);
                    const lkv_p2_table *t0 = &m->t[cs][0];
                    uint32_t par = 0;
                    uint32_t pk[4] = {0, 0, 0, 0};
#pragma unroll
                    for (int i = 0; i < 7; i++) {
                        const uint32_t u = get_offset(x, act, t0, b6, b16, rp, re, lbad);
                        const int32_t kv = t0->jlo + (int32_t)u;
                        par ^= (uint32_t)kv & 1u;
                        const uint32_t p2 = (uint32_t)(2 * kv + (int32_t)cs) & 0xffffu;
                        pk[i / 2] |= p2 << (16 * (i & 1));
                    }
                    const lkv_p2_table *t7 = &m->t[cs][1 + par];
                    const uint32_t u = get_offset(x, act, t7, b7, b16, rp, re, lbad);
                    const int32_t k7 = 2 * (t7->jlo + (int32_t)u) + (int32_t)par;
                    pk[3] |= ((uint32_t)(2 * k7 + (int32_t)cs) & 0xffffu) << 16;
                    if (act)
                        *reinterpret_cast<uint4 *>(row + 8 * b) =
                            make_uint4(pk[0], pk[1], pk[2], pk[3]);
                }
                __syncwarp();
                /* vector phase: t = p / Q, butterfly, times 4/D, times r */
                for (uint32_t pass = 0; pass < pc.lpv; pass++) {
                    const uint32_t vl = pass * vpp + vp;
                    const bool valid = vl < nk;
                    float xv[E];
#pragma unroll
                    for (int i = 0; i < E; i++)
                        xv[i] = 0.0f;
                    if (valid) {
                        const int16_t *pr = kb + vl * P.kstride + li * pc.e;
#pragma unroll
                        for (int q = 0; q < E / 8; q++)
                            if (8 * q < e) {
                                const uint4 q4 = *reinterpret_cast<const uint4 *>(pr + 8 * q);
                                const uint32_t ww[4] = {q4.x, q4.y, q4.z, q4.w};
#pragma unroll
                                for (int i = 0; i < 4; i++) {
                                    xv[8 * q + 2 * i] = (float)(int16_t)(ww[i] & 0xffffu);
                                    xv[8 * q + 2 * i + 1] = (float)(int16_t)(ww[i] >> 16);
                                }
                            }
#pragma unroll
                        for (int i = 0; i < E; i++)
                            xv[i] = div_exact(__fmul_rn(xv[i], 0.5f), m->qf, qy);
                    }
                    butterfly<E>(xv, e, lpv, (int)li);
                    if (valid) {
                        const uint64_t v = first + k * kLanes + vl;
                        const float r =
                            __uint_as_float(lkv_math_f16_to_f32(b16[(k * kLanes + vl) * P.np + j]));
#pragma unroll
                        for (int i = 0; i < E; i++)
                            xv[i] = __fmul_rn(__fmul_rn(xv[i], m->out_scale), r);
                        store_elems<E>(dst + (v * P.dim + pc.off + li * pc.e) * P.esz, P.dt, e,
                                       P.fast != 0, xv);
                    }
                }
                __syncwarp();
            }
            if (lane < nl && x != LKV_P2_RANS_LOW)
                lbad = true;
            pos = rp * 2;
            bad = __any_sync(kFull, lbad);
        }
        if (!bad && pos != blen)
            bad = true;
        if (bad) {
            /* the whole chunk decodes to zeros */
            const uint64_t bytes = (uint64_t)cnt * P.dim * P.esz;
            uint8_t *d = dst + first * P.dim * P.esz;
            for (uint64_t i = lane; i < bytes; i += kLanes)
                d[i] = 0;
        }
        if (status)
            for (uint32_t v = lane; v < cnt; v += kLanes)
                status[first + v] = bad ? (uint8_t)LKV_ERR_CORRUPT : (uint8_t)LKV_OK;
        __syncwarp();
    }
}

} /* namespace */

/* ------------------------------------------------------------------------ */
/* Host                                                                      */

struct lkv_cuda_p2_model {
    lkv_params p;
    int dev;
    uint32_t np, dim, dmax, e;
    uint32_t off[LKV_PIECES_MAX], pdim[LKV_PIECES_MAX], sym[LKV_PIECES_MAX];
    uint64_t cap; /* one chunk's scratch: 4 + body bound of 128, rounded to 16 */
    lkv_p2_model *d_models;
};

static void plan_init(const lkv_cuda_p2_model *m, lkv_dtype dt, size_t n, bool aligned, Plan *P)
{
    memset(P, 0, sizeof *P);
    P->np = m->np;
    P->dim = m->dim;
    P->esz = (uint32_t)lkv_dtype_size(dt);
    P->dt = (uint32_t)dt;
    P->dmax = m->dmax;
    P->kstride = m->dmax + 8; /* rows 16 bytes apart mod 128: no bank conflicts */
    P->cstride = m->dmax / 8 + 1;
    P->n = n;
    P->nchunks = lkv_cuda_p2_chunks(n);
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
    P->smem_models = m->np <= kSmemModels;
    const size_t per = warp_smem(*P), base = models_smem(*P);
    size_t w = (kSmemBudget - base) / per;
    if (w > kMaxWarps)
        w = kMaxWarps;
    if (w < 1)
        w = 1;
    P->warps = (uint32_t)w;
}

static lkv_status p2_params(const lkv_params *p, lkv_diag *diag)
{
    lkv_status st = lkv_params_check(p, diag);
    if (st == LKV_OK && lkv_profile_of(p) != LKV_PROFILE_2)
        st = lkv_fail(diag, LKV_ERR_VARIANT, UINT64_MAX,
                      "profile=%u given to a profile 2 call (want profile=2)", p->profile);
    return st;
}

extern "C" size_t lkv_cuda_p2_chunks(size_t n)
{
    return (n + kChunk - 1) / kChunk;
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
    lkv_params p1 = *p;
    p1.profile = LKV_PROFILE_1; /* lkv_split_init only cuts the dim */
    lkv_split sp;
    lkv_split_init(&p1, &sp);
    lkv_cuda_p2_model *m = (lkv_cuda_p2_model *)calloc(1, sizeof *m);
    lkv_p2_model *h = (lkv_p2_model *)calloc(sp.count, sizeof *h);
    if (!m || !h) {
        free(m);
        free(h);
        return lkv_fail(diag, LKV_ERR_NOMEM, UINT64_MAX, "profile=2 model: out of host memory");
    }
    m->p = *p;
    m->dev = dev;
    m->np = sp.count;
    m->dim = sp.dim;
    uint64_t body = 2ull * kChunk * sp.count;
    for (uint32_t j = 0; j < sp.count; j++) {
        m->off[j] = sp.off[j];
        m->pdim[j] = sp.d[j].p.dim;
        if (m->pdim[j] > m->dmax)
            m->dmax = m->pdim[j];
        if (!lkv_p2_model_build(p->q, m->pdim[j], &h[j])) {
            const uint32_t pd = m->pdim[j];
            free(h);
            free(m);
            return lkv_fail(diag, LKV_ERR_INTERNAL, UINT64_MAX,
                            "profile=2: q=%u dim=%u has no model", p->q, pd);
        }
        m->sym[j] = h[j].sym_vec;
        body += 4ull * kLanes + 2ull * kChunk * m->sym[j];
    }
    m->e = m->dmax / 32 > 8 ? m->dmax / 32 : 8;
    m->cap = align16(4 + body);
    cudaError_t ce = cudaSetDevice(dev);
    if (ce == cudaSuccess)
        ce = cudaMalloc((void **)&m->d_models, sp.count * sizeof *h);
    if (ce == cudaSuccess)
        ce = cudaMemcpy(m->d_models, h, sp.count * sizeof *h, cudaMemcpyHostToDevice);
    free(h);
    if (ce != cudaSuccess) {
        if (m->d_models)
            cudaFree(m->d_models);
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
    free(m);
}

template <int E> static const void *enc_kernel()
{
    return (const void *)p2_encode_kernel<E>;
}
template <int E> static const void *dec_kernel()
{
    return (const void *)p2_decode_kernel<E>;
}

/* Grid of a persistent kernel: blocks that fit the device at once, at most
 * one warp per chunk. */
static cudaError_t grid_of(const void *kern, const Plan &P, size_t smem, unsigned *grid)
{
    cudaError_t ce =
        cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
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
    const size_t nc = lkv_cuda_p2_chunks(n);
    return align16((nc + 1) * 8) + align16(scan_temp(nc + 1)) + nc * (size_t)m->cap;
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
    const size_t tbytes = scan_temp(nc + 1);
    void *temp = w + align16((nc + 1) * 8);
    uint8_t *scratch = w + align16((nc + 1) * 8) + align16(tbytes);
    cudaStream_t s = (cudaStream_t)stream;
    const void *kern = m->e == 8    ? enc_kernel<8>()
                       : m->e == 16 ? enc_kernel<16>()
                                    : enc_kernel<32>();
    const size_t smem = models_smem(P) + P.warps * warp_smem(P);
    unsigned grid = 1;
    cudaError_t ce = cudaSetDevice(m->dev);
    if (ce == cudaSuccess)
        ce = grid_of(kern, P, smem, &grid);
    if (ce == cudaSuccess)
        ce = cudaMemsetAsync(sizes + nc, 0, 8, s);
    if (ce == cudaSuccess) {
        const uint8_t *src = (const uint8_t *)d_src;
        if (m->e == 8)
            p2_encode_kernel<8>
                <<<grid, P.warps * 32, smem, s>>>(P, m->d_models, src, scratch, sizes, d_status);
        else if (m->e == 16)
            p2_encode_kernel<16>
                <<<grid, P.warps * 32, smem, s>>>(P, m->d_models, src, scratch, sizes, d_status);
        else
            p2_encode_kernel<32>
                <<<grid, P.warps * 32, smem, s>>>(P, m->d_models, src, scratch, sizes, d_status);
        ce = cudaGetLastError();
    }
    if (ce == cudaSuccess) {
        size_t tb = tbytes;
        ce = cub::DeviceScan::ExclusiveSum(temp, tb, sizes, d_offs, (int)(nc + 1), s);
    }
    if (ce == cudaSuccess) {
        const unsigned cg = nc < 65535u ? (unsigned)nc : 65535u;
        p2_compact_kernel<<<cg, 256, 0, s>>>(scratch, m->cap, d_offs, nc, (uint8_t *)d_payload);
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
    const void *kern = m->e == 8    ? dec_kernel<8>()
                       : m->e == 16 ? dec_kernel<16>()
                                    : dec_kernel<32>();
    const size_t smem = models_smem(P) + P.warps * warp_smem(P);
    cudaStream_t s = (cudaStream_t)stream;
    unsigned grid = 1;
    cudaError_t ce = cudaSetDevice(m->dev);
    if (ce == cudaSuccess)
        ce = grid_of(kern, P, smem, &grid);
    if (ce == cudaSuccess) {
        const uint8_t *src = (const uint8_t *)d_payload;
        uint8_t *dst = (uint8_t *)d_dst;
        if (m->e == 8)
            p2_decode_kernel<8>
                <<<grid, P.warps * 32, smem, s>>>(P, m->d_models, src, len, d_offs, dst, d_status);
        else if (m->e == 16)
            p2_decode_kernel<16>
                <<<grid, P.warps * 32, smem, s>>>(P, m->d_models, src, len, d_offs, dst, d_status);
        else
            p2_decode_kernel<32>
                <<<grid, P.warps * 32, smem, s>>>(P, m->d_models, src, len, d_offs, dst, d_status);
        ce = cudaGetLastError();
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
    size_t pos = 0, c = 0;
    for (size_t first = 0; first < n; first += kChunk, c++) {
        const size_t cnt = n - first < kChunk ? n - first : kChunk;
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
