/* SPDX-License-Identifier: Apache-2.0 */
/*
 * p2.c - codec profile 2 (docs/codec-v2.md): entry points. The coder lands
 * in the next commits; until then every call says so by name.
 */
#include "lkv_codec_internal.h"

static lkv_status not_yet(lkv_diag *diag)
{
    return lkv_fail(diag, LKV_ERR_UNAVAILABLE, UINT64_MAX, "profile=2 is not built yet");
}

size_t lkv_p2_payload_bound(const lkv_params *p, uint64_t n)
{
    (void)p;
    (void)n;
    return 0;
}

size_t lkv_compress_bound(const lkv_params *p, const uint64_t *shape, uint32_t ndim)
{
    lkv_container_info info;
    if (lkv_container_plan(p, LKV_DTYPE_FP32, shape, ndim, &info, NULL) != LKV_OK)
        return 0;
    return info.total_bytes;
}

lkv_status lkv_p2_encode(const lkv_params *p, lkv_dtype dt, const void *src, size_t n, void *dst,
                         size_t dst_cap, size_t *dst_len, lkv_diag *diag)
{
    (void)p, (void)dt, (void)src, (void)n, (void)dst, (void)dst_cap, (void)dst_len;
    return not_yet(diag);
}

lkv_status lkv_p2_decode(const lkv_params *p, const void *src, size_t src_len, size_t n,
                         lkv_dtype dt, void *dst, lkv_diag *diag)
{
    (void)p, (void)src, (void)src_len, (void)n, (void)dt, (void)dst;
    return not_yet(diag);
}

lkv_status lkv_p2_chunk_size(const lkv_params *p, const void *src, size_t src_len,
                             size_t n_in_chunk, size_t *chunk_bytes, lkv_diag *diag)
{
    (void)p, (void)src, (void)src_len, (void)n_in_chunk, (void)chunk_bytes;
    return not_yet(diag);
}
