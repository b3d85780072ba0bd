/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_p2.c - libFuzzer target for the profile 2 decoders (docs/codec-v2.md):
 * raw chunk payloads and version 2 containers.
 *
 * Input layout: byte 0 selects the mode. Even: bytes 1..4 choose Q (10
 * bits), the head dim (a multiple of 8; some invalid) and the vector count
 * (1..256); the rest is a payload for lkv_p2_decode, which must return OK,
 * ERR_CORRUPT or ERR_TRUNCATED. Odd: the rest is a container; with bit 1 set
 * the harness first rewrites both checksums of a version 2 header, so the
 * fuzzer reaches the chunk decoder behind them; a container that parses
 * must decode or report ERR_CORRUPT. Any input must return without a crash,
 * a leak or an out-of-bounds access (run under ASan/UBSan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_codec.h"
#include "lkv_format.h"

#define MAX_OUT (1u << 22)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_payload(const uint8_t *data, size_t size)
{
    if (size < 5)
        return;
    const lkv_params p = {LKV_VARIANT_E8, 1u + ((uint32_t)data[1] | (uint32_t)(data[2] & 3) << 8),
                          8u * (1u + ((uint32_t)data[3] | (uint32_t)(data[2] >> 2 & 1) << 8)),
                          LKV_PROFILE_2};
    const size_t n = 1u + data[4];
    if (lkv_params_check(&p, NULL) != LKV_OK || n * p.dim * 4 > MAX_OUT)
        return;
    float *out = malloc(n * p.dim * 4);
    const lkv_status st = lkv_p2_decode(&p, data + 5, size - 5, n, LKV_DTYPE_FP32, out, NULL);
    if (st != LKV_OK && st != LKV_ERR_CORRUPT && st != LKV_ERR_TRUNCATED)
        abort();
    free(out);
}

static void fix_checksums(uint8_t *buf, size_t len)
{
    if (len < LKV_FMT_OFF_NDIM + 1)
        return;
    const size_t ndim = buf[LKV_FMT_OFF_NDIM] & 15u;
    const size_t crc_off = LKV_FMT_HEADER_BYTES_P2(ndim) - 8;
    if (len < crc_off + 8)
        return;
    const uint32_t pcrc = lkv_crc32c(0, buf + crc_off + 8, len - crc_off - 8);
    memcpy(buf + crc_off, &pcrc, 4);
    const uint32_t hcrc = lkv_crc32c(0, buf, crc_off + 4);
    memcpy(buf + crc_off + 4, &hcrc, 4);
}

static void fuzz_container(const uint8_t *buf, size_t len, int dt)
{
    lkv_container_info info;
    if (lkv_container_parse(buf, len, &info, NULL) != LKV_OK)
        return;
    const size_t need = (size_t)info.n_vectors * info.params.dim * 4;
    if (need > MAX_OUT)
        return;
    void *out = malloc(need ? need : 1);
    size_t got = 0;
    const lkv_status st = lkv_decompress(buf, len, dt, out, need, &got, NULL, LKV_ISA_AUTO, NULL);
    if (st != LKV_OK && st != LKV_ERR_CORRUPT)
        abort(); /* a parsed container can only fail on its chunks */
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (!(data[0] & 1)) {
        fuzz_payload(data, size);
        return 0;
    }
    uint8_t *copy = malloc(size);
    memcpy(copy, data + 1, size - 1);
    if (data[0] & 2)
        fix_checksums(copy, size - 1);
    fuzz_container(copy, size - 1, (data[0] >> 2) & 3);
    free(copy);
    return 0;
}
