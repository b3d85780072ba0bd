/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_p2.c - libFuzzer target for the profile 2 decoders (docs/codec-v2.md):
 * raw chunk payloads and containers, of every container version (2: chunks
 * of 128 vectors, fp16 norms; 3: chunks of 256, byte norms and a pad byte;
 * 4: version 3 with a header per piece, its mode byte and in the channel
 * mode 5-bit levels per channel and a pad byte).
 *
 * Input layout: byte 0 selects the mode. Even: bits 1..3 of byte 0 choose
 * the layout (bit 1 clear: format 2; set: with bit 3 set format 4, else
 * format 3, or with bit 2 also set format 0, which means 3), bytes 1..4
 * choose Q (10 bits), the head dim (a multiple of 8; some invalid) and the
 * vector count (1..256); the rest is a payload for lkv_p2_decode, which
 * must return OK, ERR_CORRUPT or ERR_TRUNCATED. Odd: the rest is a
 * container (its header's version field picks the layout); with bit 1 set
 * the harness first rewrites both checksums of a profile 2 header, so the
 * fuzzer reaches the chunk decoder behind them; a container that parses
 * must decode or report ERR_CORRUPT.
 * Any input must return without a crash, a leak or an out-of-bounds access
 * (run under ASan/UBSan).
 *
 * corpus_p2 holds libFuzzer's merged inputs (hence the hashes as names).
 * The version 3 seeds were added with version 3: a one-off program encoded
 * Gaussian vectors with format 3 at (Q, D, n) = (54, 128, 1), (54, 128, 33),
 * (20, 112, 71: a pad byte), (8, 64, 256: norms near 1e5), (38, 96, 40),
 * (3, 8, 255), (700, 16, 64) and (1, 24, 17), each as a payload (mode byte
 * 0x02 or 0x06 and bytes 1..4 as above) and as a container (0x01 or 0x07),
 * and `fuzz_p2 -merge=1 tests/fuzz/corpus_p2 SEEDS` kept the 14 that add
 * coverage. The version 4 seeds were added the same way with version 4:
 * format 4 payloads (mode byte 0x0a) and containers (0x03) of normal and
 * lognormal-channel vectors (rotated and channel pieces) at (Q, D, n) =
 * (54, 128, 71), (54, 128, 256), (20, 96, 40), (8, 16, 33), (3, 8, 100),
 * (300, 64, 200) and (38, 112, 129); the merge kept 17 of those 28.
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
    const uint32_t format = !(data[0] & 2)  ? LKV_FMT_VERSION_P2
                            : (data[0] & 8) ? LKV_FMT_VERSION_P4
                            : (data[0] & 4) ? 0u
                                            : LKV_FMT_VERSION_P3;
    const lkv_params p = {LKV_VARIANT_E8, 1u + ((uint32_t)data[1] | (uint32_t)(data[2] & 3) << 8),
                          8u * (1u + ((uint32_t)data[3] | (uint32_t)(data[2] >> 2 & 1) << 8)),
                          LKV_PROFILE_2, format};
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
