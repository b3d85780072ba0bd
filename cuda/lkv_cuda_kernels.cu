/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_cuda_kernels.cu - fused batched encode and decode kernels of the
 * latticekv codec, and the launchers behind lkv_cuda_encode/_decode.
 *
 * Design note.
 *   Work split: a vector of D elements is held by TPV = D / EPT threads of
 *   one warp, each with EPT contiguous elements in registers (EPT = D up to
 *   32, then 32, for large batches; see kEptLarge/kEptSmall), so a warp
 *   codes VPW = 32 / TPV vectors at once. Contiguous
 *   chunks make every determinism rule of codec/ref.c cheap to honour:
 *     - the pairwise sum-of-squares tree is an in-thread tree over the chunk
 *       followed by xor shuffles across the TPV lanes (a + b == b + a
 *       exactly, so both partners hold the same value);
 *     - the butterfly stages h < EPT run in registers; stages h >= EPT
 *       exchange with lane ^ (h / EPT), the lower lane computing a + b and
 *       the upper one b' - a', written as fma(+-1, mine, partner), which is
 *       exact because multiplying by +-1 is;
 *     - the E8/D4 blocks of a chunk belong to one thread, so the box search
 *       and the index are the per-block functions of lkv_cuda_block.cuh,
 *       shared with the host-side test.
 *   Memory: each warp copies its input span (VPW whole vectors, contiguous
 *   in global memory) with 16-byte coalesced loads into shared memory laid
 *   out one padded chunk per lane (no bank conflicts when a lane reads its
 *   chunk back), and stages its records in shared memory, where the lanes
 *   OR their bit fields in (neighbouring blocks share words), before one
 *   coalesced copy out. Everything after the loads is warp-synchronous:
 *   no __syncthreads, no atomics in global memory.
 *   Errors: a vector with NaN/Inf, or whose norm overflows fp16, is coded as
 *   zeros, its record is all zero bytes (which decoders reject) and its
 *   status byte says why; a corrupt record decodes to zeros with
 *   ERR_CORRUPT. The other vectors of the batch are unaffected.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <stddef.h>
#include <stdint.h>

#include "lkv_codec_backend.h"
#include "lkv_cuda.h"
#include "lkv_cuda_block.cuh"
#include "lkv_cuda_internal.h"

namespace
{

constexpr unsigned kFull = 0xffffffffu;
constexpr int kWarpsPerBlock = 4;
/* Measured on an H200 (docs/gpu.md): both kernels are instruction- and
 * latency-bound, not memory-bound; the E8 box search is over half of the
 * encode's instructions. */

/* Elements per thread: LKV_CUDA_EPT_LARGE for large batches, max(8, D/32)
 * for small ones (more lanes per vector: shorter dependency chains, lower
 * latency). The kernels are latency-bound (ncu on an H200: ~40 % of issue
 * slots busy at 16 warps per SM), so the large shape trades some repeated
 * per-vector work (more lanes per vector) for fewer registers per thread and
 * more resident warps: LKV_CUDA_MIN_BLOCKS blocks of 4 warps per SM. */
#ifndef LKV_CUDA_EPT_LARGE
#define LKV_CUDA_EPT_LARGE 32
#endif
#ifndef LKV_CUDA_MIN_BLOCKS
#define LKV_CUDA_MIN_BLOCKS 8 /* encode (H200: 6 -> 8 blocks, -2 %) */
#endif
#ifndef LKV_CUDA_MIN_BLOCKS_DEC
#define LKV_CUDA_MIN_BLOCKS_DEC 10 /* decode (H200: 8 -> 10 blocks, -1 %) */
#endif
/* ... for head_dim 32..256; the other shapes spill registers at 10 and
 * keep 8 blocks per SM. */
template <int D> constexpr int kDecBlocks = D >= 32 && D <= 256 ? LKV_CUDA_MIN_BLOCKS_DEC : 8;
template <int D> constexpr int kEptLarge = D <= LKV_CUDA_EPT_LARGE ? D : LKV_CUDA_EPT_LARGE;
template <int D> constexpr int kEptSmall = D <= 8 ? D : (D / 32 > 8 ? D / 32 : 8);

template <int D, int EPT_> struct Shape {
    static constexpr int EPT = EPT_;     /* elements per thread            */
    static constexpr int TPV = D / EPT;  /* threads per vector             */
    static constexpr int VPW = 32 / TPV; /* vectors per warp               */
};

/* Lowest power of two (<= 16) dividing x. */
__device__ __forceinline__ uint32_t gran_of(uintptr_t x)
{
    x |= 16u;
    return (uint32_t)(x & (~x + 1u));
}

/* ------------------------------------------------------------------------ */
/* Shared-memory staging                                                     */

/* The decode asks L2 for the records of the warp this many bytes ahead, a
 * little under one wave of resident warps on an H200 (132 SMs x 40 warps x
 * 848 bytes at E8 Q=38 D=128), so that later warps find their records in
 * L2 (H200: E8 decode 0.1803 -> 0.1781 ms, D4 0.1699 -> 0.1675 ms; 2 MiB
 * the same, 8 MiB less; prefetching the encode's input made it slower). */
constexpr size_t kDecPrefetch = (size_t)4 << 20;

/* Asks L2 for the 128-byte lines of [g, g + bytes), one line per lane (up
 * to 32), skipping those at or past end: a hint, nothing waits for it. */
__device__ __forceinline__ void prefetch_l2(const uint8_t *g, uint32_t bytes, const uint8_t *end,
                                            uint32_t lane)
{
    const uint8_t *p = reinterpret_cast<const uint8_t *>(
        (reinterpret_cast<uintptr_t>(g) & ~(uintptr_t)127) + (uintptr_t)lane * 128u);
    if (p < g + bytes && p < end)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

/*
 * Copies `bytes` from global g into shared memory, lane-chunk by lane-chunk:
 * byte o of the span goes to sb[(o / chunk) * stride + o % chunk]. chunk is
 * a power of two; with gran 16, every lane keeps 8 loads in flight.
 */
__device__ __forceinline__ void copy_in(uint8_t *sb, const uint8_t *g, uint32_t bytes,
                                        uint32_t chunk_log2, uint32_t stride, uint32_t lane)
{
    const uint32_t cmask = (1u << chunk_log2) - 1u;
    const uint32_t gran = gran_of((uintptr_t)g | bytes | (1u << chunk_log2));
    if (gran == 16) {
        const uint32_t n16 = bytes >> 4;
        const uint4 *g16 = reinterpret_cast<const uint4 *>(g);
        for (uint32_t base = 0; base < n16; base += 32 * 8) {
            uint4 t[8];
#pragma unroll
            for (int u = 0; u < 8; u++) {
                const uint32_t i = base + u * 32 + lane;
                if (i < n16)
                    t[u] = __ldcs(g16 + i);
            }
#pragma unroll
            for (int u = 0; u < 8; u++) {
                const uint32_t i = base + u * 32 + lane;
                if (i < n16) {
                    const uint32_t o = i << 4;
                    *reinterpret_cast<uint4 *>(sb + (o >> chunk_log2) * stride + (o & cmask)) =
                        t[u];
                }
            }
        }
        return;
    }
    /* Unaligned source: byte copy (correct for any address; not tuned). */
    for (uint32_t o = lane; o < bytes; o += 32)
        sb[(o >> chunk_log2) * stride + (o & cmask)] = g[o];
}

/* The inverse of copy_in: shared chunks to a contiguous global span. */
__device__ __forceinline__ void copy_out(uint8_t *g, const uint8_t *sb, uint32_t bytes,
                                         uint32_t chunk_log2, uint32_t stride, uint32_t lane)
{
    const uint32_t cmask = (1u << chunk_log2) - 1u;
    const uint32_t gran = gran_of((uintptr_t)g | bytes | (1u << chunk_log2));
    if (gran == 16) {
        const uint32_t n16 = bytes >> 4;
        uint4 *g16 = reinterpret_cast<uint4 *>(g);
        for (uint32_t i = lane; i < n16; i += 32) {
            const uint32_t o = i << 4;
            __stcs(g16 + i,
                   *reinterpret_cast<const uint4 *>(sb + (o >> chunk_log2) * stride + (o & cmask)));
        }
        return;
    }
    if (gran >= 4) {
        const uint32_t n4 = bytes >> 2;
        uint32_t *g4 = reinterpret_cast<uint32_t *>(g);
        for (uint32_t i = lane; i < n4; i += 32) {
            const uint32_t o = i << 2;
            g4[i] =
                *reinterpret_cast<const uint32_t *>(sb + (o >> chunk_log2) * stride + (o & cmask));
        }
        return;
    }
    for (uint32_t o = lane; o < bytes; o += 32)
        g[o] = sb[(o >> chunk_log2) * stride + (o & cmask)];
}

/* Records: a plain contiguous copy (chunk = whole span, no remapping). */
__device__ __forceinline__ void records_in(uint8_t *sb, const uint8_t *g, uint32_t bytes,
                                           uint32_t region, uint32_t lane)
{
    const uint32_t gran = gran_of((uintptr_t)g | bytes);
    if (gran == 16) {
        const uint4 *g16 = reinterpret_cast<const uint4 *>(g);
        for (uint32_t i = lane; i < (bytes >> 4); i += 32)
            reinterpret_cast<uint4 *>(sb)[i] = __ldcs(g16 + i);
    } else if (gran >= 4) {
        const uint32_t *g4 = reinterpret_cast<const uint32_t *>(g);
        for (uint32_t i = lane; i < (bytes >> 2); i += 32)
            reinterpret_cast<uint32_t *>(sb)[i] = g4[i];
    } else {
        for (uint32_t o = lane; o < bytes; o += 32)
            sb[o] = g[o];
    }
    /* Zero the rest of the region (a multiple of 16 bytes): bit readers may
     * touch the words after a record's last byte. */
    const uint32_t b16 = (bytes + 15u) & ~15u;
    for (uint32_t o = bytes + lane; o < b16; o += 32)
        sb[o] = 0;
    for (uint32_t o = b16 + 16u * lane; o < region; o += 512u)
        *reinterpret_cast<uint4 *>(sb + o) = make_uint4(0, 0, 0, 0);
}

__device__ __forceinline__ void records_out(uint8_t *g, const uint8_t *sb, uint32_t bytes,
                                            uint32_t lane)
{
    const uint32_t gran = gran_of((uintptr_t)g | bytes);
    if (gran == 16) {
        uint4 *g16 = reinterpret_cast<uint4 *>(g);
        for (uint32_t i = lane; i < (bytes >> 4); i += 32)
            __stcs(g16 + i, reinterpret_cast<const uint4 *>(sb)[i]);
    } else if (gran >= 4) {
        uint32_t *g4 = reinterpret_cast<uint32_t *>(g);
        for (uint32_t i = lane; i < (bytes >> 2); i += 32)
            g4[i] = reinterpret_cast<const uint32_t *>(sb)[i];
    } else {
        for (uint32_t o = lane; o < bytes; o += 32)
            g[o] = sb[o];
    }
}

/* ------------------------------------------------------------------------ */
/* Element conversion                                                        */

/* Reads a lane's chunk (EPT elements of dtype dt) from shared memory into
 * fp32 registers (exact conversions). NaN/Inf are not looked for here: they
 * make the vector's sum of squares non-finite, and the kernel looks at the
 * elements only then. The chunk is 16-byte aligned when it is 16 bytes or
 * more, else 8-byte aligned. */
template <int EPT> __device__ __forceinline__ void load_chunk(const uint8_t *p, int dt, float *x)
{
    if (dt == LKV_DTYPE_FP32) {
#pragma unroll
        for (int j = 0; j < EPT / 4; j++) {
            const uint4 v = reinterpret_cast<const uint4 *>(p)[j];
            x[4 * j] = __uint_as_float(v.x);
            x[4 * j + 1] = __uint_as_float(v.y);
            x[4 * j + 2] = __uint_as_float(v.z);
            x[4 * j + 3] = __uint_as_float(v.w);
        }
        return;
    }
    uint32_t w[EPT / 2];
    if constexpr (EPT >= 8) {
#pragma unroll
        for (int j = 0; j < EPT / 8; j++) {
            const uint4 v = reinterpret_cast<const uint4 *>(p)[j];
            w[4 * j] = v.x;
            w[4 * j + 1] = v.y;
            w[4 * j + 2] = v.z;
            w[4 * j + 3] = v.w;
        }
    } else {
        const uint2 v = *reinterpret_cast<const uint2 *>(p);
        w[0] = v.x;
        w[1] = v.y;
    }
    if (dt == LKV_DTYPE_BF16) {
#pragma unroll
        for (int j = 0; j < EPT / 2; j++) {
            x[2 * j] = __uint_as_float(w[j] << 16);
            x[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
        }
    } else {
#pragma unroll
        for (int j = 0; j < EPT / 2; j++) {
            /* fp16 -> fp32 is exact: the hardware conversion equals
             * lkv_math_f16_to_f32 (NaN/Inf stay NaN/Inf). */
            x[2 * j] = __half2float(__ushort_as_half((unsigned short)(w[j] & 0xffffu)));
            x[2 * j + 1] = __half2float(__ushort_as_half((unsigned short)(w[j] >> 16)));
        }
    }
}

/* Writes a lane's chunk in dtype dt (round to nearest even) to shared memory. */
template <int EPT> __device__ __forceinline__ void store_chunk(uint8_t *p, int dt, const float *x)
{
    if (dt == LKV_DTYPE_FP32) {
#pragma unroll
        for (int j = 0; j < EPT / 4; j++)
            reinterpret_cast<uint4 *>(p)[j] =
                make_uint4(__float_as_uint(x[4 * j]), __float_as_uint(x[4 * j + 1]),
                           __float_as_uint(x[4 * j + 2]), __float_as_uint(x[4 * j + 3]));
        return;
    }
    /* The paired hardware conversions (one instruction per two elements)
     * are IEEE round-to-nearest-even with subnormals kept and overflow to
     * inf, as lkv_math_f32_to_bf16/_f16 for the finite values seen here;
     * the first element goes to the low half. */
    uint32_t w[EPT / 2];
    if (dt == LKV_DTYPE_BF16) {
#pragma unroll
        for (int j = 0; j < EPT / 2; j++) {
            const __nv_bfloat162 h = __floats2bfloat162_rn(x[2 * j], x[2 * j + 1]);
            w[j] = *reinterpret_cast<const uint32_t *>(&h);
        }
    } else {
#pragma unroll
        for (int j = 0; j < EPT / 2; j++) {
            const __half2 h = __floats2half2_rn(x[2 * j], x[2 * j + 1]);
            w[j] = *reinterpret_cast<const uint32_t *>(&h);
        }
    }
    if constexpr (EPT >= 8) {
#pragma unroll
        for (int j = 0; j < EPT / 8; j++)
            reinterpret_cast<uint4 *>(p)[j] =
                make_uint4(w[4 * j], w[4 * j + 1], w[4 * j + 2], w[4 * j + 3]);
    } else {
        *reinterpret_cast<uint2 *>(p) = make_uint2(w[0], w[1]);
    }
}

/* ------------------------------------------------------------------------ */
/* Per-vector arithmetic                                                     */

template <int V> __host__ __device__ constexpr int ilog2()
{
    return V <= 1 ? 0 : 1 + ilog2<V / 2>();
}

/* The pairwise tree of ref.c over LEN contiguous elements (LEN >= 2):
 * level 0 adds x[2i]^2 + x[2i+1]^2, each next level adds neighbours; the
 * recursion below builds exactly that balanced tree, in registers. */
template <int LEN> __device__ __forceinline__ float sq_tree(const float *x)
{
    if constexpr (LEN == 2)
        return __fadd_rn(__fmul_rn(x[0], x[0]), __fmul_rn(x[1], x[1]));
    else
        return __fadd_rn(sq_tree<LEN / 2>(x), sq_tree<LEN / 2>(x + LEN / 2));
}

/* Sum of squares of a vector: the in-thread tree over the chunk (an aligned
 * subtree), then the upper levels across the vector's lanes. */
template <int EPT, int TPV> __device__ __forceinline__ float sum_squares(const float *x)
{
    float s = sq_tree<EPT>(x);
#pragma unroll
    for (int hh = 1; hh < TPV; hh <<= 1)
        s = __fadd_rn(s, __shfl_xor_sync(kFull, s, hh));
    return s;
}

/* Walsh-Hadamard butterfly, stages h = 1 .. D/2 in order, then the scale. */
template <int EPT, int TPV> __device__ __forceinline__ void fwht(float *x, uint32_t lv, float scale)
{
#pragma unroll
    for (int st = 0; st < ilog2<EPT>(); st++) {
        const int h = 1 << st;
#pragma unroll
        for (int p = 0; p < EPT / 2; p++) {
            const int j = (p / h) * 2 * h + p % h;
            const float a = x[j], b = x[j + h];
            x[j] = __fadd_rn(a, b);
            x[j + h] = __fsub_rn(a, b);
        }
    }
#pragma unroll
    for (int hh = 1; hh < TPV; hh <<= 1) {
        /* lower lane: mine + partner; upper lane: partner - mine */
        const float sg = (lv & (uint32_t)hh) ? -1.0f : 1.0f;
#pragma unroll
        for (int j = 0; j < EPT; j++) {
            const float p = __shfl_xor_sync(kFull, x[j], hh);
            x[j] = __fmaf_rn(sg, x[j], p);
        }
    }
#pragma unroll
    for (int j = 0; j < EPT; j++)
        x[j] = __fmul_rn(x[j], scale);
}

/* x[j] / b for a chunk, correctly rounded: the invariant-divisor form when
 * fast (see encode_kernel), else the full-range division. */
template <int EPT> __device__ __forceinline__ void div_chunk(float *x, float b, bool fast)
{
    if (!fast) {
#pragma unroll
        for (int j = 0; j < EPT; j++)
            x[j] = __fdiv_rn(x[j], b);
        return;
    }
    const float y = lkv_recip_of(b);
#pragma unroll
    for (int j = 0; j < EPT; j++)
        x[j] = lkv_div_by(x[j], b, y);
}

template <int TPV> __device__ __forceinline__ float vec_max(float m)
{
#pragma unroll
    for (int hh = 1; hh < TPV; hh <<= 1)
        m = fmaxf(m, __shfl_xor_sync(kFull, m, hh));
    return m;
}

template <int TPV> __device__ __forceinline__ bool vec_any(bool b, uint32_t vs)
{
    const uint32_t vmask = TPV == 32 ? kFull : ((1u << TPV) - 1u) << (vs * TPV);
    return (__ballot_sync(kFull, b) & vmask) != 0;
}

/* ------------------------------------------------------------------------ */
/* Pieces of a head_dim that is not a power of two                           */

/*
 * A head_dim that is not a power of two is coded piece by piece
 * (codec/FORMAT.md): one launch per piece, whose vectors are every
 * vstride-th span of D elements (D = the piece) and whose records are every
 * rstride-th span of P.rec_bytes bytes. For a power of two, vstride and
 * rstride are the natural sizes and the spans are contiguous. The first
 * piece writes every status; a later one (merge) only worsens it, with
 * ERR_NONFINITE ahead of ERR_NORM_OVERFLOW as the C codec checks them.
 */
struct Piece {
    uint32_t vstride; /* bytes from one whole vector to the next            */
    uint32_t rstride; /* bytes from one whole record to the next            */
    uint32_t merge;   /* 0 for the first piece                              */
};

__device__ __forceinline__ void status_out(uint8_t *status, size_t v, uint8_t st, uint32_t merge)
{
    if (!merge)
        status[v] = st;
    else if (st != LKV_OK && (st == LKV_ERR_NONFINITE || status[v] == LKV_OK))
        status[v] = st;
}

/* Records of a strided span: nv records of `bytes` each, every `rstride`
 * bytes of g, packed contiguously into sb (and the region zeroed past them,
 * as records_in does). */
__device__ __forceinline__ void records_in_strided(uint8_t *sb, const uint8_t *g, uint32_t nv,
                                                   uint32_t bytes, uint32_t rstride,
                                                   uint32_t region, uint32_t lane)
{
    const uint32_t total = nv * bytes;
    if (gran_of((uintptr_t)g | bytes | rstride) >= 4) {
        const uint32_t w = bytes >> 2;
        for (uint32_t i = lane; i < total >> 2; i += 32)
            reinterpret_cast<uint32_t *>(sb)[i] =
                *reinterpret_cast<const uint32_t *>(g + (size_t)(i / w) * rstride + ((i % w) << 2));
    } else {
        for (uint32_t o = lane; o < total; o += 32)
            sb[o] = g[(size_t)(o / bytes) * rstride + o % bytes];
    }
    const uint32_t b16 = (total + 15u) & ~15u;
    for (uint32_t o = total + lane; o < b16; o += 32)
        sb[o] = 0;
    for (uint32_t o = b16 + 16u * lane; o < region; o += 512u)
        *reinterpret_cast<uint4 *>(sb + o) = make_uint4(0, 0, 0, 0);
}

/* ------------------------------------------------------------------------ */
/* Kernels                                                                   */

template <int NB, int D, int EPT_, bool WIDE>
__global__ void __launch_bounds__(kWarpsPerBlock * 32, WIDE ? 4 : LKV_CUDA_MIN_BLOCKS)
    encode_kernel(const lkv_cuda_plan P, const uint8_t *__restrict__ src, size_t n,
                  uint8_t *__restrict__ dst, uint8_t *__restrict__ status, int dt,
                  uint32_t warp_smem, uint32_t esz_log2, const Piece pc)
{
    constexpr int EPT = Shape<D, EPT_>::EPT, TPV = Shape<D, EPT_>::TPV;
    constexpr int VPW = Shape<D, EPT_>::VPW, BPT = EPT / NB;
    extern __shared__ uint4 lkv_smem[];
    const uint32_t lane = threadIdx.x & 31u;
    uint8_t *sb = reinterpret_cast<uint8_t *>(lkv_smem) + (threadIdx.x >> 5) * warp_smem;
    const size_t v0 = ((size_t)blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5)) * VPW;
    if (v0 >= n)
        return;
    const uint32_t nvalid = (uint32_t)((n - v0) < (size_t)VPW ? (n - v0) : (size_t)VPW);
    const uint32_t chunk_log2 = esz_log2 + (uint32_t)__ffs(EPT) - 1u;
    const uint32_t chunk = 1u << chunk_log2;
    const uint32_t stride = chunk >= 16 ? chunk + 16 : chunk;

    /* A 16-byte aligned span of chunks of 8 to 64 bytes (bf16/fp16) is
     * read straight into registers, each lane its own chunk (a warp's
     * four 16-byte loads cover the span; the sectors a load leaves half
     * used are served by L1 to the next). Other spans, fp32's 128-byte
     * chunks among them (measured slower direct), are staged through
     * shared memory first. */
    const uint32_t vbytes = (uint32_t)D << esz_log2;
    const bool whole = pc.vstride == vbytes; /* contiguous span of whole vectors */
    const uint8_t *gsrc = src + v0 * pc.vstride;
    const bool direct = whole && chunk >= 8 && chunk <= 64 && ((uintptr_t)gsrc & 15u) == 0;
    if (!whole) {
        for (uint32_t v = 0; v < nvalid; v++)
            copy_in(sb + v * TPV * stride, gsrc + (size_t)v * pc.vstride, vbytes, chunk_log2,
                    stride, lane);
        __syncwarp();
    } else if (!direct) {
        copy_in(sb, gsrc, nvalid * vbytes, chunk_log2, stride, lane);
        __syncwarp();
    }

    const uint32_t vs = lane / TPV, lv = lane % TPV;
    const bool live = vs < nvalid;
    float x[EPT];
    if (live && direct) {
        load_chunk<EPT>(gsrc + lane * chunk, dt, x);
    } else if (live) {
        load_chunk<EPT>(sb + lane * stride, dt, x);
    } else {
#pragma unroll
        for (int j = 0; j < EPT; j++)
            x[j] = 0.0f;
    }
    const float ss = sum_squares<EPT, TPV>(x);
    /* Both divisions (x / r, then y / s) may take the invariant-divisor
     * form when every element of the vector has |x| >= 2^-50: then |x| and,
     * r being below 65520, every nonzero |u| = |x / r| are >= 2^-66, so the
     * butterfly's nonzero sums are multiples of 2^-89 and every nonzero |y|
     * is >= 2^-94, inside lkv_div_by's range (|a| >= 2^-100), as are r and
     * s. Zeros also divide right there, but their sign may differ from
     * IEEE's -0 / b, and that sign never reaches the record (rint, the
     * box and the index treat -0 as 0); vectors with zeros still go the
     * safe way, being rare. */
    float amin = fabsf(x[0]);
#pragma unroll
    for (int j = 1; j < EPT; j++)
        amin = fminf(amin, fabsf(x[j]));
    const bool fast_div = !vec_any<TPV>(!(amin >= 8.8817841970012523e-16f /* 2^-50 */), vs);
    /* NaN or Inf anywhere make ss NaN or +inf (every term is >= 0, so no
     * inf - inf); finite values can overflow it too, so only then are the
     * elements examined. */
    bool bad = false;
    if (!(ss <= 3.40282347e38f)) {
#pragma unroll
        for (int j = 0; j < EPT; j++)
            bad |= !(fabsf(x[j]) <= 3.40282347e38f);
    }
    const bool vbad = vec_any<TPV>(bad, vs);
    /* A rejected vector (vbad, or ovf below) is not written: its record
     * stays zero and only its status says why, so the arithmetic may run
     * on whatever it holds (NaN included: no conversion here is undefined
     * on the GPU), with r kept finite and positive. */
    float r = __fsqrt_rn(ss);
    if (!(r >= LKV_EPS) || vbad)
        r = LKV_EPS;
    /* fp32 -> fp16 by the hardware: IEEE round-to-nearest-even with
     * subnormals and overflow to inf, as lkv_math_f32_to_f16 (r > 0). */
    const uint16_t r16 = __half_as_ushort(__float2half_rn(r));
    const bool ovf = r16 == LKV_F16_INF_BITS;
    if (ovf)
        r = 1.0f;
    div_chunk<EPT>(x, r, fast_div);
    fwht<EPT, TPV>(x, lv, P.inv_sqrt_d);
    float m = 0.0f;
#pragma unroll
    for (int j = 0; j < EPT; j++)
        m = fmaxf(m, fabsf(x[j]));
    m = vec_max<TPV>(m);
    if (!(m >= LKV_EPS))
        m = LKV_EPS;
    const __half m16h = __float2half_rn(m);
    const uint16_t m16 = __half_as_ushort(m16h);
    /* m16 / Q by the invariant-divisor form (exact for every positive
     * fp16 m16 and Q <= 1023: gpu_block_test checks them all) */
    const float s = lkv_div_by(__half2float(m16h), P.qf, P.rq);
    div_chunk<EPT>(x, s, fast_div);

    /* Stage the records: zero, then OR the fields in. */
    const uint32_t region = ((VPW * P.rec_bytes + 15u) & ~15u) + 16u;
    uint32_t *words = reinterpret_cast<uint32_t *>(sb);
    __syncwarp();
    for (uint32_t i = lane; i < region / 16; i += 32) /* region: a multiple of 16 */
        reinterpret_cast<uint4 *>(sb)[i] = make_uint4(0, 0, 0, 0);
    __syncwarp();
    const uint8_t st = vbad  ? (uint8_t)LKV_ERR_NONFINITE
                       : ovf ? (uint8_t)LKV_ERR_NORM_OVERFLOW
                             : (uint8_t)LKV_OK;
    if (live && st == LKV_OK) {
        const uint32_t rbase = vs * P.rec_bytes * 8u;
        if (lv == 0)
            lkv_put_bits(words, rbase, (uint64_t)r16 | ((uint64_t)m16 << 16), 0,
                         LKV_FMT_REC_HEAD_BITS);
        /* The box search is most of the kernel's code: one rolled copy
         * over the lane's blocks, read back from shared memory, keeps the
         * kernel small enough for the instruction cache (H200: fetch
         * stalls 2.1 -> 0.8 cycles per issue, encode -9 %). */
        float *zs = reinterpret_cast<float *>(sb + region + lane * (EPT * 4u + 16u));
#pragma unroll
        for (int j = 0; j < EPT / 4; j++)
            reinterpret_cast<float4 *>(zs)[j] =
                make_float4(x[4 * j], x[4 * j + 1], x[4 * j + 2], x[4 * j + 3]);
#pragma unroll 1
        for (int b = 0; b < BPT; b++) {
            const uint32_t pos = rbase + LKV_FMT_REC_HEAD_BITS + (lv * BPT + (uint32_t)b) * P.k;
            uint32_t w[NB];
            float zb[NB];
#pragma unroll
            for (int j = 0; j < NB / 4; j++) {
                const float4 t = reinterpret_cast<const float4 *>(zs + b * NB)[j];
                zb[4 * j] = t.x;
                zb[4 * j + 1] = t.y;
                zb[4 * j + 2] = t.z;
                zb[4 * j + 3] = t.w;
            }
            if constexpr (NB == 8) {
                const int half = lkv_e8_closest(zb, P.qf, P.e8_margin, w);
                if constexpr (WIDE) {
                    const lkv_u128 idx = lkv_index_wide<8>(&P, w, half);
                    lkv_put_bits(words, pos, (uint64_t)idx, (uint64_t)(idx >> 64), P.k);
                } else {
                    lkv_put_bits(words, pos, lkv_e8_index_narrow(&P, w, half), 0, P.k);
                }
            } else {
                lkv_d4_closest(zb, P.qf, w);
                if constexpr (WIDE) {
                    const lkv_u128 idx = lkv_index_wide<4>(&P, w, 0);
                    lkv_put_bits(words, pos, (uint64_t)idx, (uint64_t)(idx >> 64), P.k);
                } else {
                    lkv_put_bits(words, pos, lkv_d4_index_narrow(&P, w), 0, P.k);
                }
            }
        }
    }
    __syncwarp();
    if (pc.rstride == P.rec_bytes)
        records_out(dst + v0 * P.rec_bytes, sb, nvalid * P.rec_bytes, lane);
    else
        for (uint32_t v = 0; v < nvalid; v++)
            records_out(dst + (v0 + v) * pc.rstride, sb + v * P.rec_bytes, P.rec_bytes, lane);
    if (status && live && lv == 0)
        status_out(status, v0 + vs, st, pc.merge);
}

template <int NB, int D, int EPT_, bool WIDE>
__global__ void __launch_bounds__(kWarpsPerBlock * 32, WIDE ? 4 : kDecBlocks<D>)
    decode_kernel(const lkv_cuda_plan P, const uint8_t *__restrict__ src, size_t n,
                  uint8_t *__restrict__ dst, uint8_t *__restrict__ status, int dt,
                  uint32_t warp_smem, uint32_t esz_log2, const Piece pc)
{
    constexpr int EPT = Shape<D, EPT_>::EPT, TPV = Shape<D, EPT_>::TPV;
    constexpr int VPW = Shape<D, EPT_>::VPW, BPT = EPT / NB;
    extern __shared__ uint4 lkv_smem[];
    const uint32_t lane = threadIdx.x & 31u;
    uint8_t *sb = reinterpret_cast<uint8_t *>(lkv_smem) + (threadIdx.x >> 5) * warp_smem;
    const size_t v0 = ((size_t)blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5)) * VPW;
    if (v0 >= n)
        return;
    const uint32_t nvalid = (uint32_t)((n - v0) < (size_t)VPW ? (n - v0) : (size_t)VPW);
    const uint32_t region = ((VPW * P.rec_bytes + 15u) & ~15u) + 16u;
    if (pc.rstride == P.rec_bytes) {
        prefetch_l2(src + v0 * P.rec_bytes + kDecPrefetch, nvalid * P.rec_bytes,
                    src + n * P.rec_bytes, lane);
        records_in(sb, src + v0 * P.rec_bytes, nvalid * P.rec_bytes, region, lane);
    } else {
        records_in_strided(sb, src + v0 * pc.rstride, nvalid, P.rec_bytes, pc.rstride, region,
                           lane);
    }
    __syncwarp();

    const uint32_t vs = lane / TPV, lv = lane % TPV;
    const bool live = vs < nvalid;
    const uint32_t *words = reinterpret_cast<const uint32_t *>(sb);
    float x[EPT];
    bool bad = false;
    float r = 0.0f;
    if (live) {
        const uint32_t rbase = vs * P.rec_bytes * 8u;
        const uint32_t hdr = (uint32_t)lkv_get_bits64(words, rbase, LKV_FMT_REC_HEAD_BITS);
        const uint32_t r16 = hdr & 0xffffu, m16 = hdr >> 16;
        bad = r16 < LKV_F16_EPS_BITS || r16 >= LKV_F16_INF_BITS || m16 < LKV_F16_EPS_BITS ||
              m16 >= LKV_F16_INF_BITS;
        if ((P.bits & 7u) && lv == TPV - 1)
            bad |= (sb[vs * P.rec_bytes + P.rec_bytes - 1] >> (P.bits & 7u)) != 0;
        r = __half2float(__ushort_as_half((unsigned short)r16));
        /* the decoders give 2p; 2p * (s / 2) is p * s, s / 2 being exact */
        const float s2 = __fmul_rn(
            lkv_div_by(__half2float(__ushort_as_half((unsigned short)m16)), P.qf, P.rq), 0.5f);
#pragma unroll
        for (int b = 0; b < BPT; b++) {
            const uint32_t pos = rbase + LKV_FMT_REC_HEAD_BITS + (lv * BPT + (uint32_t)b) * P.k;
            float pt[NB];
            int ok;
            if constexpr (WIDE) {
                ok = lkv_point2_wide<NB>(&P, lkv_get_bits128(words, pos, P.k), pt);
            } else if constexpr (NB == 8) {
                ok = lkv_e8_point2_narrow(&P, lkv_get_bits64(words, pos, P.k), pt);
            } else {
                ok = lkv_d4_point2_narrow(&P, lkv_get_bits64(words, pos, P.k), pt);
            }
            bad |= !ok;
#pragma unroll
            for (int i = 0; i < NB; i++)
                x[b * NB + i] = __fmul_rn(pt[i], s2);
        }
    }
    const bool vbad = vec_any<TPV>(bad, vs);
    /* a warp-uniform branch: the selects run only where they are needed */
    if (__any_sync(kFull, !live || vbad) && (!live || vbad)) {
#pragma unroll
        for (int j = 0; j < EPT; j++)
            x[j] = 0.0f;
        r = 0.0f;
    }
    fwht<EPT, TPV>(x, lv, P.inv_sqrt_d);
#pragma unroll
    for (int j = 0; j < EPT; j++)
        x[j] = __fmul_rn(x[j], r);

    const uint32_t chunk_log2 = esz_log2 + (uint32_t)__ffs(EPT) - 1u;
    const uint32_t chunk = 1u << chunk_log2;
    const uint32_t stride = chunk >= 16 ? chunk + 16 : chunk;
    /* as the encode's load: aligned spans are written from registers */
    const uint32_t vbytes = (uint32_t)D << esz_log2;
    uint8_t *gdst = dst + v0 * pc.vstride;
    if (pc.vstride == vbytes && chunk >= 8 && chunk <= 64 && ((uintptr_t)gdst & 15u) == 0) {
        if (live)
            store_chunk<EPT>(gdst + lane * chunk, dt, x);
    } else {
        __syncwarp();
        store_chunk<EPT>(sb + lane * stride, dt, x);
        __syncwarp();
        if (pc.vstride == vbytes)
            copy_out(gdst, sb, nvalid * vbytes, chunk_log2, stride, lane);
        else
            for (uint32_t v = 0; v < nvalid; v++)
                copy_out(gdst + (size_t)v * pc.vstride, sb + v * TPV * stride, vbytes, chunk_log2,
                         stride, lane);
    }
    if (status && live && lv == 0)
        status_out(status, v0 + vs, vbad ? (uint8_t)LKV_ERR_CORRUPT : (uint8_t)LKV_OK, pc.merge);
}

/* ------------------------------------------------------------------------ */
/* Launchers                                                                 */

enum class Op { Encode, Decode };

struct Launch {
    lkv_cuda_plan plan;
    const uint8_t *src;
    uint8_t *dst;
    uint8_t *status;
    size_t n;
    int dt;
    uint32_t esz_log2;
    Piece piece;
    cudaStream_t stream;
};

/* Asks for the largest shared-memory carveout once per kernel and device
 * (done: one bit per device, owned by the kernel's launcher), so that shared
 * memory never caps the resident blocks below what the registers allow. */
void prefer_shared(const void *kernel, std::atomic<uint64_t> &done)
{
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
        (void)cudaGetLastError();
        return;
    }
    const uint64_t bit = 1ull << dev;
    if (done.load(std::memory_order_relaxed) & bit)
        return;
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                             cudaSharedmemCarveoutMaxShared) == cudaSuccess)
        done.fetch_or(bit, std::memory_order_relaxed);
    else
        (void)cudaGetLastError();
}

template <int NB, int D, int EPT, bool WIDE> cudaError_t launch_shape(Op op, const Launch &L)
{
    constexpr int VPW = Shape<D, EPT>::VPW;
    const uint32_t chunk = (uint32_t)EPT << L.esz_log2;
    const uint32_t in_bytes = 32u * (chunk >= 16 ? chunk + 16 : chunk);
    const uint32_t rec_region = ((VPW * L.plan.rec_bytes + 15u) & ~15u) + 16u;
    /* The encode's rolled block loop keeps y / s (one fp32 chunk per lane)
     * after the records. */
    const uint32_t need = rec_region + (op == Op::Encode ? 32u * ((uint32_t)EPT * 4u + 16u) : 0u);
    const uint32_t warp_smem = in_bytes > need ? in_bytes : need;
    const size_t warps = (L.n + VPW - 1) / VPW;
    const size_t blocks = (warps + kWarpsPerBlock - 1) / kWarpsPerBlock;
    if (blocks > 0x7fffffffu)
        return cudaErrorInvalidConfiguration;
    const size_t smem = (size_t)warp_smem * kWarpsPerBlock;
    if (op == Op::Encode) {
        auto k = encode_kernel<NB, D, EPT, WIDE>;
        static std::atomic<uint64_t> done{0};
        prefer_shared(reinterpret_cast<const void *>(k), done);
        if (smem > 48 * 1024) {
            const cudaError_t e =
                cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
            if (e != cudaSuccess)
                return e;
        }
        k<<<(unsigned)blocks, kWarpsPerBlock * 32, smem, L.stream>>>(
            L.plan, L.src, L.n, L.dst, L.status, L.dt, warp_smem, L.esz_log2, L.piece);
    } else {
        auto k = decode_kernel<NB, D, EPT, WIDE>;
        static std::atomic<uint64_t> done{0};
        prefer_shared(reinterpret_cast<const void *>(k), done);
        if (smem > 48 * 1024) {
            const cudaError_t e =
                cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
            if (e != cudaSuccess)
                return e;
        }
        k<<<(unsigned)blocks, kWarpsPerBlock * 32, smem, L.stream>>>(
            L.plan, L.src, L.n, L.dst, L.status, L.dt, warp_smem, L.esz_log2, L.piece);
    }
    return cudaGetLastError();
}

/* Small batches (fewer than ~64k lanes' worth of work with the large
 * shape) take the small shape; both give the same bytes. */
template <int NB, int D, bool WIDE> cudaError_t launch_one(Op op, const Launch &L)
{
    constexpr int big = kEptLarge<D>, small = kEptSmall<D>;
    if constexpr (big != small) {
        if (L.n * (size_t)(D / big) < 65536)
            return launch_shape<NB, D, small, WIDE>(op, L);
    }
    return launch_shape<NB, D, big, WIDE>(op, L);
}

template <int NB, bool WIDE> cudaError_t launch_dim(Op op, const Launch &L)
{
    switch (L.plan.dim) {
    case 4:
        if constexpr (NB == 4)
            return launch_one<NB, 4, WIDE>(op, L);
        break;
    case 8: return launch_one<NB, 8, WIDE>(op, L);
    case 16: return launch_one<NB, 16, WIDE>(op, L);
    case 32: return launch_one<NB, 32, WIDE>(op, L);
    case 64: return launch_one<NB, 64, WIDE>(op, L);
    case 128: return launch_one<NB, 128, WIDE>(op, L);
    case 256: return launch_one<NB, 256, WIDE>(op, L);
    case 512: return launch_one<NB, 512, WIDE>(op, L);
    case 1024: return launch_one<NB, 1024, WIDE>(op, L);
    default: break;
    }
    return cudaErrorInvalidValue;
}

lkv_status run(Op op, const lkv_params *p, lkv_dtype dt, const void *src, size_t n, void *dst,
               uint8_t *status, void *stream, lkv_diag *diag)
{
    lkv_status st = lkv_params_check(p, diag);
    if (st == LKV_OK)
        st = lkv_dtype_check((int)dt, diag);
    if (st != LKV_OK || n == 0)
        return st;
    if (!src || !dst)
        return lkv_fail(diag, LKV_ERR_INVALID_ARGUMENT, UINT64_MAX, "%s is NULL with n=%zu",
                        !src ? (op == Op::Encode ? "d_src" : "d_records")
                             : (op == Op::Encode ? "d_records" : "d_dst"),
                        n);
    lkv_split sp;
    lkv_split_init(p, &sp);
    Launch L;
    L.status = status;
    L.n = n;
    L.dt = (int)dt;
    L.esz_log2 = dt == LKV_DTYPE_FP32 ? 2u : 1u;
    L.stream = static_cast<cudaStream_t>(stream);
    L.piece.vstride = sp.dim << L.esz_log2;
    L.piece.rstride = sp.rec_bytes;
    cudaError_t e = cudaSuccess;
    /* one launch per piece, in order on the stream (the status merge of a
     * later piece reads what the earlier one wrote) */
    for (uint32_t j = 0; j < sp.count && e == cudaSuccess; j++) {
        lkv_params pp = *p;
        pp.dim = sp.d[j].p.dim;
        lkv_cuda_plan_init(&pp, &L.plan);
        const size_t voff = (size_t)sp.off[j] << L.esz_log2, roff = sp.rec_off[j];
        L.src = static_cast<const uint8_t *>(src) + (op == Op::Encode ? voff : roff);
        L.dst = static_cast<uint8_t *>(dst) + (op == Op::Encode ? roff : voff);
        L.piece.merge = j > 0;
        if (L.plan.n == 8)
            e = L.plan.wide ? launch_dim<8, true>(op, L) : launch_dim<8, false>(op, L);
        else
            e = L.plan.wide ? launch_dim<4, true>(op, L) : launch_dim<4, false>(op, L);
    }
    if (e == cudaErrorInvalidConfiguration)
        return lkv_fail(diag, LKV_ERR_LIMIT, UINT64_MAX, "n=%zu vectors is too many for one launch",
                        n);
    if (e != cudaSuccess)
        return lkv_cuda_fail(e, diag, op == Op::Encode ? "lkv_cuda_encode" : "lkv_cuda_decode");
    return LKV_OK;
}

/* Inverses for the narrow decode (lkv_cuda_block.cuh): the largest shift s
 * that keeps m = ceil(2^(w+s) / d) below 2^w for w-bit words ... */
uint32_t magic_shift(uint64_t d, unsigned w)
{
    uint32_t s = 0;
    while (s < 31 && (((lkv_u128)1 << (w + s + 1)) + d - 1) / d < ((lkv_u128)1 << w))
        s++;
    return s;
}

/* ... and m for a given s, when it is exact for every n <= nmax (else 0). */
uint64_t magic_at(uint64_t d, lkv_u128 nmax, unsigned w, uint32_t s)
{
    const lkv_u128 k2 = (lkv_u128)1 << (w + s);
    const lkv_u128 m = (k2 + d - 1) / d;
    return (m >> w) == 0 && (m * d - k2) * nmax < k2 ? (uint64_t)m : 0;
}

} // namespace

/* Declared in lkv_cuda_block.cuh; p must have passed lkv_params_check. */
void lkv_cuda_plan_init(const lkv_params *p, lkv_cuda_plan *P)
{
    lkv_derived d;
    lkv_derive(p, &d);
    *P = lkv_cuda_plan{};
    P->n = d.n;
    P->q = p->q;
    P->dim = p->dim;
    P->k = d.k;
    P->bits = d.bits;
    P->rec_bytes = d.rec_bytes;
    P->qf = d.qf;
    P->e8_margin = lkv_e8_margin(d.qf);
    P->rq = lkv_recip_of(d.qf);
    P->inv_sqrt_d = d.inv_sqrt_d;
    P->b = 2 * p->q + 1;
    P->c = 2 * p->q;
    P->b2 = P->b * P->b; /* < 2^22 */
    P->c2 = P->c * P->c;
    /* Narrow up to Q = 112, where base^4 fits 32 bits and every inverse of
     * the narrow decode is exact (checked here, not assumed; from Q = 113
     * on some are not). */
    int narrow = p->q <= 112;
    if (narrow) {
        P->b3 = P->b2 * P->b;
        P->c3 = P->c2 * P->c;
        P->b4 = P->b3 * P->b;
        P->c4 = P->c3 * P->c;
        const lkv_u128 b4 = P->b4, c4 = P->c4;
        P->mg_s = std::min(magic_shift(P->b, 32), magic_shift(P->c, 32));
        P->mg_b = (uint32_t)magic_at(P->b, b4 - 1, 32, P->mg_s);
        P->mg_c = (uint32_t)magic_at(P->c, c4 - 1, 32, P->mg_s);
        P->mg_s4 = std::min(magic_shift(P->b4, 64), magic_shift(P->c4, 64));
        P->mg_b4 = magic_at(P->b4, b4 * b4 - 1, 64, P->mg_s4);
        P->mg_c4 = magic_at(P->c4, c4 * c4 - 1, 64, P->mg_s4);
        narrow = P->mg_b && P->mg_c && P->mg_b4 && P->mg_c4;
        P->nb = 0u - P->b;
        P->nc = 0u - P->c;
        P->nb4 = 0u - P->b4;
        P->nc4 = 0u - P->c4;
    }
    P->wide = !narrow;
    P->minv_b32 = 0xffffffffu / P->b;
    P->minv_c32 = 0xffffffffu / P->c;
    P->minv_b64 = UINT64_MAX / P->b;
    P->minv_c64 = UINT64_MAX / P->c;
    P->minv_q64 = UINT64_MAX / P->q;
    P->minv_b2_64 = UINT64_MAX / P->b2;
    P->minv_c2_64 = UINT64_MAX / P->c2;
    P->ma64 = (uint64_t)d.e8_int_count;
    P->cb64 = (uint64_t)d.codebook;
    P->ma_lo = (uint64_t)d.e8_int_count;
    P->ma_hi = (uint64_t)(d.e8_int_count >> 64);
    P->cb_lo = (uint64_t)d.codebook;
    P->cb_hi = (uint64_t)(d.codebook >> 64);
}

extern "C" lkv_status lkv_cuda_encode(const lkv_params *p, lkv_dtype dt, const void *d_src,
                                      size_t n, void *d_records, uint8_t *d_status, void *stream,
                                      lkv_diag *diag)
{
    return run(Op::Encode, p, dt, d_src, n, d_records, d_status, stream, diag);
}

extern "C" lkv_status lkv_cuda_decode(const lkv_params *p, const void *d_records, size_t n,
                                      lkv_dtype dt, void *d_dst, uint8_t *d_status, void *stream,
                                      lkv_diag *diag)
{
    return run(Op::Decode, p, dt, d_records, n, d_dst, d_status, stream, diag);
}
