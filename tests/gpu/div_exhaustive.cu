/* SPDX-License-Identifier: Apache-2.0 */
/*
 * div_exhaustive.cu - lkv_div_by (the kernels' three-instruction division by
 * an invariant) against IEEE division for every pair of binary32
 * significands: a and b in [1, 2), 2^23 x 2^23 = 2^46 pairs. lkv_div_by
 * commutes with scaling a and b by powers of two inside its stated range
 * (lkv_cuda_block.cuh), so this covers every quotient the kernels form.
 *
 * One thread per divisor walks all 2^23 dividends; the reference is the
 * device's correctly rounded __fdiv_rn. About a minute on an H200; run by
 * tests/gpu/run.sh. Prints "N passed, M failed" (one check per divisor),
 * or "SKIP: no CUDA device" and exits with LKV_TEST_SKIP_CODE (ctest:
 * skipped) where there is no GPU.
 * Options: --bits K checks only the divisors whose significand is a
 * multiple of 2^(23-K) (a quick sample; K = 23 is the full run).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_cuda_block.cuh"

__global__ void div_kernel(uint32_t b0, uint32_t nb, uint32_t bstep,
                           unsigned long long *bad_divisors, uint32_t *first_bad)
{
    const uint32_t t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= nb)
        return;
    const uint32_t bm = (b0 + t) * bstep;
    const float b = __uint_as_float(0x3f800000u | bm);
    const float y = lkv_recip_of(b);
    uint32_t bad = 0;
    for (uint32_t am = 0; am < (1u << 23); am++) {
        const float a = __uint_as_float(0x3f800000u | am);
        bad += __float_as_uint(lkv_div_by(a, b, y)) != __float_as_uint(__fdiv_rn(a, b));
    }
    if (bad) {
        atomicAdd(bad_divisors, 1ull);
        atomicMin(first_bad, bm);
    }
}

#define CUDA_OK(call)                                                                   \
    do {                                                                                \
        cudaError_t e_ = (call);                                                        \
        if (e_ != cudaSuccess) {                                                        \
            fprintf(stderr, "div_exhaustive: %s: %s\n", #call, cudaGetErrorString(e_)); \
            return 2;                                                                   \
        }                                                                               \
    } while (0)

int main(int argc, char **argv)
{
    int bits = 23;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--bits") == 0 && i + 1 < argc) {
            const long v = strtol(argv[++i], &end, 10);
            if (*end != '\0' || v < 1 || v > 23) {
                fprintf(stderr, "div_exhaustive: --bits wants 1..23, got '%s'\n", argv[i]);
                return 2;
            }
            bits = (int)v;
        } else {
            fprintf(stderr, "div_exhaustive: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("SKIP: no CUDA device\n");
        return LKV_TEST_SKIP_CODE;
    }
    unsigned long long *bad;
    uint32_t *first;
    CUDA_OK(cudaMallocManaged(&bad, sizeof *bad));
    CUDA_OK(cudaMallocManaged(&first, sizeof *first));
    *bad = 0;
    *first = UINT32_MAX;
    const uint32_t ndiv = 1u << bits, bstep = 1u << (23 - bits);
    const uint32_t chunk = 1u << 18; /* divisors per launch: a few full waves */
    for (uint32_t b0 = 0; b0 < ndiv; b0 += chunk) {
        const uint32_t nb = ndiv - b0 < chunk ? ndiv - b0 : chunk;
        div_kernel<<<(nb + 255) / 256, 256>>>(b0, nb, bstep, bad, first);
        CUDA_OK(cudaGetLastError());
        CUDA_OK(cudaDeviceSynchronize());
    }
    const unsigned long long pairs = (unsigned long long)ndiv << 23;
    if (*bad)
        printf("FAIL: %llu of %u divisors give a quotient that differs from IEEE division; "
               "first: b = 1 + 0x%06x * 2^-23\n",
               *bad, ndiv, *first);
    printf("div_exhaustive: %llu pairs (%u divisors x 2^23 dividends)\n", pairs, ndiv);
    printf("%llu passed, %llu failed\n", (unsigned long long)ndiv - *bad, *bad);
    return *bad != 0;
}
