/* SPDX-License-Identifier: Apache-2.0 */
/*
 * p2_emu - runs the profile 2 kernels of cuda/lkv_cuda_p2.cu on the host, one
 * std::thread per GPU thread, with the warp collectives (ballot, xor
 * shuffle, any, syncwarp) and the block barrier built from std::barrier,
 * and checks them against the C coder: the encode kernel's chunks (scanned
 * and compacted as the library does) equal lkv_p2_encode's payload, and the
 * decode kernel's output equals lkv_p2_decode's, bit for bit.
 *
 * Why: the kernels' logic (lane layout, lockstep rANS with ballot-prefix
 * word positions, the butterfly across lanes) can be checked on a machine
 * without a GPU. It does not check the device's arithmetic (the _rn
 * intrinsics become IEEE host operations, compiled without contraction)
 * nor memory-model or timing effects: tests/gpu/gpu_p2_test does, on a GPU.
 * Prints "N passed, M failed".
 */
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

/* ------------------------------------------------------------------------ */
/* The CUDA surface the kernels use                                          */

#define LKV_P2_EMU 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct uint4 {
    uint32_t x, y, z, w;
};
static inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w)
{
    return uint4{x, y, z, w};
}
struct dim3e {
    uint32_t x;
};

namespace emu
{
struct Warp {
    std::barrier<> bar{32};
    uint32_t u[32];
    float f[32];
};
struct Block {
    explicit Block(uint32_t threads) : bar(threads), warps(threads / 32)
    {
    }
    std::barrier<> bar;
    std::vector<Warp> warps;
    std::vector<uint8_t> smem;
};
thread_local Block *blk;
thread_local uint32_t tid;
} // namespace emu

thread_local dim3e threadIdx;
static dim3e blockIdx, blockDim, gridDim;

static inline emu::Warp &my_warp()
{
    return emu::blk->warps[emu::tid / 32];
}
static inline uint32_t my_lane()
{
    return emu::tid & 31u;
}
static inline uint32_t __ballot_sync(uint32_t, bool p)
{
    emu::Warp &w = my_warp();
    w.u[my_lane()] = p;
    w.bar.arrive_and_wait();
    uint32_t b = 0;
    for (int i = 0; i < 32; i++)
        b |= (w.u[i] ? 1u : 0u) << i;
    w.bar.arrive_and_wait();
    return b;
}
static inline bool __any_sync(uint32_t m, bool p)
{
    return __ballot_sync(m, p) != 0;
}
static inline float __shfl_xor_sync(uint32_t, float v, int d)
{
    emu::Warp &w = my_warp();
    w.f[my_lane()] = v;
    w.bar.arrive_and_wait();
    const float r = w.f[my_lane() ^ (uint32_t)d];
    w.bar.arrive_and_wait();
    return r;
}
static inline void __syncwarp()
{
    my_warp().bar.arrive_and_wait();
}
static inline void __syncthreads()
{
    emu::blk->bar.arrive_and_wait();
}
static inline uint32_t emu_lanemask_lt()
{
    return (1u << my_lane()) - 1u;
}
static inline uint32_t emu_lanemask_gt()
{
    return my_lane() == 31 ? 0u : ~((2u << my_lane()) - 1u);
}
static inline int __popc(uint32_t x)
{
    return __builtin_popcount(x);
}
static inline uint32_t __umulhi(uint32_t a, uint32_t b)
{
    return (uint32_t)(((uint64_t)a * b) >> 32);
}
static inline float __uint_as_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint32_t __float_as_uint(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float __fadd_rn(float a, float b)
{
    return a + b;
}
static inline float __fsub_rn(float a, float b)
{
    return a - b;
}
static inline float __fmul_rn(float a, float b)
{
    return a * b;
}
static inline float __fdiv_rn(float a, float b)
{
    return a / b;
}
static inline float __fsqrt_rn(float a)
{
    return sqrtf(a);
}
#define LKV_P2_SMEM(name) uint8_t *name = emu::blk->smem.data()

#include "lkv_codec_math.h"
static inline uint16_t __ushort_as_half(uint16_t h)
{
    return h;
}
static inline float __half2float(uint16_t h)
{
    return __uint_as_float(lkv_math_f16_to_f32(h));
}

#include "../../cuda/lkv_cuda_p2.cu"

/* Runs kernel body f on one block of `threads` threads (the persistent
 * kernels loop over every chunk with a grid of one block). */
template <class F> static void launch(uint32_t threads, size_t smem, F f)
{
    emu::Block b(threads);
    b.smem.assign(smem, 0xcd);
    blockIdx.x = 0;
    blockDim.x = threads;
    gridDim.x = 1;
    std::vector<std::thread> ts;
    for (uint32_t t = 0; t < threads; t++)
        ts.emplace_back([&b, t, &f] {
            emu::blk = &b;
            emu::tid = t;
            threadIdx.x = t;
            f();
        });
    for (auto &t : ts)
        t.join();
}

static int g_pass, g_fail;
#define EXPECT(c, ...)           \
    do {                         \
        if (c)                   \
            g_pass++;            \
        else {                   \
            g_fail++;            \
            printf("FAIL: ");    \
            printf(__VA_ARGS__); \
            printf("\n");        \
        }                        \
    } while (0)

/* The library's launch sequences, on the emulator: the vector kernel then
 * the rANS kernel (encode), the rANS kernel then the vector kernel
 * (decode), with the points between them where the library keeps them. */
static void emu_encode(const Plan &P, uint32_t e, const lkv_p2_model *models, const uint8_t *src,
                       uint8_t *payload, uint8_t *scratch, uint64_t *sizes, uint8_t *st)
{
    const Rows R = {payload, 2ull * P.dim, 2, ((uintptr_t)payload & 15u) == 0};
    vec_dispatch(P, e, [&](auto sh) {
        launch(kVecWarps * 32, 0, [&] {
            p2_quantise_kernel<decltype(sh)::E, decltype(sh)::DT>(P, models, src, R, scratch, st);
        });
    });
    launch(P.warps * 32, models_smem(P), [&] {
        if (P.smem_models)
            p2_rans_encode_kernel<true>(P, models, R, scratch, sizes);
        else
            p2_rans_encode_kernel<false>(P, models, R, scratch, sizes);
    });
}

static void emu_decode(const Plan &P, uint32_t e, const lkv_p2_model *models, const uint8_t *pay,
                       size_t len, const uint64_t *offs, uint8_t *dst, uint8_t *st)
{
    const Rows R = {dst, (uint64_t)P.dim * P.esz, P.esz, P.fast};
    launch(P.warps * 32, dec_smem(P), [&] {
        if (P.smem_models)
            p2_rans_decode_kernel<true>(P, models, pay, len, offs, R, st);
        else
            p2_rans_decode_kernel<false>(P, models, pay, len, offs, R, st);
    });
    vec_dispatch(P, e, [&](auto sh) {
        launch(kVecWarps * 32, 0, [&] {
            p2_reconstruct_kernel<decltype(sh)::E, decltype(sh)::DT>(P, models, pay, offs, R, dst);
        });
    });
}

static uint64_t g_s = 88172645463325252ull;
static double normal()
{
    auto nx = [] {
        g_s ^= g_s << 13;
        g_s ^= g_s >> 7;
        g_s ^= g_s << 17;
        return ((double)(g_s >> 11) + 0.5) / 9007199254740992.0;
    };
    return sqrt(-2.0 * log(nx())) * cos(6.283185307179586 * nx());
}

/* poison: 0 = a clean case; 1 = a NaN in vector 5 and an overflowing vector
 * 200 (encode statuses), and chunk 1's first norm zeroed (decode: that
 * chunk CORRUPT and zero, the others as the C coder's). */
static void one(uint32_t q, uint32_t dim, lkv_dtype dt, size_t n, double scale, int poison = 0)
{
    const lkv_params p = {LKV_VARIANT_E8, q, dim, LKV_PROFILE_2};
    const size_t esz = lkv_dtype_size(dt), nc = (n + 127) / 128;
    std::vector<uint8_t> src(n * dim * esz);
    for (size_t i = 0; i < n * dim; i++) {
        const float f = (float)(scale * normal());
        uint32_t b;
        memcpy(&b, &f, 4);
        if (dt == LKV_DTYPE_FP32)
            memcpy(&src[4 * i], &f, 4);
        else {
            const uint16_t h =
                dt == LKV_DTYPE_BF16 ? lkv_math_f32_to_bf16(b) : lkv_math_f32_to_f16(b);
            memcpy(&src[2 * i], &h, 2);
        }
    }
    if (poison) {
        for (uint32_t j = 0; j < dim; j++) {
            const float big = 30000.0f;
            memcpy(&src[(200 * dim + j) * 4], &big, 4);
        }
    }
    std::vector<uint8_t> clean = src;
    if (poison) {
        const float nan = NAN;
        memcpy(&src[(5 * dim + 17) * 4], &nan, 4);
        memcpy(&clean[(200 * dim) * 4], &clean[(199 * dim) * 4],
               dim * 4); /* CPU side: no overflow */
    }
    const size_t bound = lkv_p2_payload_bound(&p, n);
    std::vector<uint8_t> cpu(bound), ref(n * dim * esz), out(n * dim * esz, 0x55);
    size_t clen = 0;
    lkv_diag dg;
    EXPECT(lkv_p2_encode(&p, dt, clean.data(), n, cpu.data(), bound, &clen, &dg) == LKV_OK,
           "cpu enc %s", dg.msg);
    EXPECT(lkv_p2_decode(&p, cpu.data(), clen, n, dt, ref.data(), &dg) == LKV_OK, "cpu dec %s",
           dg.msg);

    /* the model object as lkv_cuda_p2_model_create fills it, host memory */
    lkv_params p1 = p;
    p1.profile = LKV_PROFILE_1;
    lkv_split sp;
    lkv_split_init(&p1, &sp);
    lkv_cuda_p2_model m;
    memset(&m, 0, sizeof m);
    m.p = p;
    m.np = sp.count;
    m.dim = sp.dim;
    std::vector<lkv_p2_model> models(sp.count);
    uint64_t body = 2ull * 128 * sp.count;
    for (uint32_t j = 0; j < sp.count; j++) {
        m.off[j] = sp.off[j];
        m.pdim[j] = sp.d[j].p.dim;
        if (m.pdim[j] > m.dmax)
            m.dmax = m.pdim[j];
        lkv_p2_model_build(q, m.pdim[j], &models[j]);
        m.sym[j] = models[j].sym_vec;
        body += 4ull * 32 + 2ull * 128 * m.sym[j];
    }
    m.e = m.dmax / 32 > 8 ? m.dmax / 32 : 8;
    m.cap = align16(4 + body);
    Plan P;
    plan_init(&m, dt, n, true, &P);
    char name[96];
    snprintf(name, sizeof name, "q=%u dim=%u %s n=%zu", q, dim, lkv_dtype_name(dt), n);

    /* encode: chunks into scratch, scan, compaction */
    std::vector<uint8_t> scratch(nc * m.cap, 0xee), gpu(bound, 0xa5), st(n, 0xee);
    std::vector<uint64_t> sizes(nc + 1, 0), offs(nc + 1, 0);
    emu_encode(P, m.e, models.data(), src.data(), gpu.data(), scratch.data(), sizes.data(),
               st.data());
    for (size_t c = 0; c < nc; c++)
        offs[c + 1] = offs[c] + sizes[c];
    launch(64, 0, [&] { p2_compact_kernel(scratch.data(), m.cap, offs.data(), nc, gpu.data()); });
    if (poison) {
        EXPECT(st[5] == LKV_ERR_NONFINITE && st[200] == LKV_ERR_NORM_OVERFLOW, "%s: statuses %d %d",
               name, st[5], st[200]);
        size_t nok = 0;
        for (size_t i = 0; i < n; i++)
            nok += st[i] != LKV_OK && i != 5 && i != 200;
        EXPECT(nok == 0, "%s: %zu other statuses not OK", name, nok);
        /* decode: chunk 1's first norm zeroed */
        std::vector<uint64_t> ho(nc + 1);
        lkv_cuda_p2_index(&p, cpu.data(), clen, n, ho.data(), &dg);
        cpu[ho[1] + 4] = cpu[ho[1] + 5] = 0;
        plan_init(&m, dt, n, true, &P);
        emu_decode(P, m.e, models.data(), cpu.data(), clen, ho.data(), out.data(), st.data());
        size_t bad = 0, nz = 0;
        for (size_t i = 0; i < n; i++)
            bad += st[i] != ((i >= 128 && i < 256) ? LKV_ERR_CORRUPT : LKV_OK);
        for (size_t i = 0; i < out.size(); i++) {
            const size_t v = i / (dim * esz);
            if (v >= 128 && v < 256)
                nz += out[i] != 0;
            else
                nz += out[i] != ref[i];
        }
        EXPECT(bad == 0 && nz == 0, "%s: corrupt chunk: %zu statuses, %zu bytes wrong", name, bad,
               nz);
        return;
    }
    size_t at = 0;
    while (at < clen && gpu[at] == cpu[at])
        at++;
    EXPECT(offs[nc] == clen && at == clen, "%s: encode: %llu bytes vs %zu, first difference at %zu",
           name, (unsigned long long)offs[nc], clen, at);
    size_t nok = 0;
    for (size_t i = 0; i < n; i++)
        nok += st[i] != LKV_OK;
    EXPECT(nok == 0, "%s: %zu encode statuses not OK", name, nok);

    /* decode the CPU payload */
    std::vector<uint64_t> ho(nc + 1);
    EXPECT(lkv_cuda_p2_index(&p, cpu.data(), clen, n, ho.data(), &dg) == LKV_OK, "index %s",
           dg.msg);
    plan_init(&m, dt, n, true, &P);
    emu_decode(P, m.e, models.data(), cpu.data(), clen, ho.data(), out.data(), st.data());
    size_t diff = 0;
    for (size_t i = 0; i < out.size(); i++)
        diff += out[i] != ref[i];
    nok = 0;
    for (size_t i = 0; i < n; i++)
        nok += st[i] != LKV_OK;
    EXPECT(diff == 0 && nok == 0, "%s: decode: %zu bytes differ, %zu statuses not OK", name, diff,
           nok);
}

int main()
{
    one(54, 128, LKV_DTYPE_BF16, 300, 1.0);
    one(38, 8, LKV_DTYPE_FP32, 70, 3.0);
    one(5, 64, LKV_DTYPE_FP16, 129, 0.5);
    one(54, 96, LKV_DTYPE_BF16, 200, 1.0);
    one(54, 576, LKV_DTYPE_BF16, 130, 1.0);
    one(200, 1024, LKV_DTYPE_FP32, 33, 1.0);
    one(1023, 128, LKV_DTYPE_BF16, 40, 1.0);
    one(54, 128, LKV_DTYPE_FP32, 300, 1.0, 1);
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
