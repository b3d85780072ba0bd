/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_container.c - libFuzzer target for the decoders of untrusted bytes:
 * the container parser + decompressor, and the raw record decoder.
 *
 * Input layout: byte 0 selects the mode. Even: the rest is a container,
 * decompressed to the dtype chosen by bits 2..3 of byte 0; with bit 1 set
 * the harness first rewrites both checksums, so the fuzzer can reach the
 * field validation behind them. Odd: bytes 1..4 choose
 * variant, Q and dim (a power of two, or with bit 1 of byte 1 any multiple
 * of 4), the rest are records decoded as such. Any input must
 * return without a crash, a leak or an out-of-bounds access (run under
 * ASan/UBSan); a container that parses must also decode or report
 * ERR_CORRUPT, never anything else.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_codec.h"

#define MAX_OUT (1u << 22)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
        abort(); /* a parsed container can only fail on its records */
    free(out);
}

static void fuzz_records(const uint8_t *data, size_t size)
{
    if (size < 5)
        return;
    /* bit 1 of byte 1: any multiple of 4 up to 2048 (most not powers of
     * two, some invalid), else a power of two */
    const uint32_t any_dim = 4u * (1u + ((uint32_t)data[4] | (uint32_t)(data[3] >> 2 & 1) << 8));
    const lkv_params p = {(lkv_variant)(1 + (data[1] & 1)),
                          1u + ((uint32_t)data[2] | (uint32_t)(data[3] & 3) << 8),
                          (data[1] & 2) ? any_dim : 1u << (2 + data[4] % 9)};
    if (lkv_params_check(&p, NULL) != LKV_OK)
        return;
    const size_t rb = lkv_record_bytes(&p);
    const size_t n = (size - 5) / rb;
    if (n == 0 || n * p.dim * 4 > MAX_OUT)
        return;
    float *out = malloc(n * p.dim * 4);
    lkv_decode(&p, data + 5, n, LKV_DTYPE_FP32, out, LKV_ISA_AUTO, NULL);
    free(out);
}

/* Recomputes the payload and header CRC32C of a container candidate. */
static void fix_checksums(uint8_t *buf, size_t len)
{
    if (len < 11)
        return;
    const size_t ndim = buf[10] & 15u, crc_off = 24 + 8 * ndim;
    if (len < crc_off + 8)
        return;
    const uint32_t pcrc = lkv_crc32c(0, buf + crc_off + 8, len - crc_off - 8);
    memcpy(buf + crc_off, &pcrc, 4);
    const uint32_t hcrc = lkv_crc32c(0, buf, crc_off + 4);
    memcpy(buf + crc_off + 4, &hcrc, 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1)
        fuzz_records(data, size);
    else if (data[0] & 2) {
        uint8_t *copy = malloc(size);
        memcpy(copy, data + 1, size - 1);
        fix_checksums(copy, size - 1);
        fuzz_container(copy, size - 1, (data[0] >> 2) & 3); /* 0 = as encoded */
        free(copy);
    } else
        fuzz_container(data + 1, size - 1, (data[0] >> 2) & 3);
    return 0;
}
