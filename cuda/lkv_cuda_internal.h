/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_cuda_internal.h - what the CUDA library's own files share (not
 * installed; the public API is lkv_cuda.h).
 */
#ifndef LKV_CUDA_INTERNAL_H
#define LKV_CUDA_INTERNAL_H

#include <cuda_runtime_api.h>

#include "lkv_codec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Maps a CUDA error to a named status (allocation -> NOMEM, no device or
 * driver -> UNAVAILABLE, else INTERNAL) and fills diag with "what: CUDA
 * error N (text)". */
lkv_status lkv_cuda_fail(cudaError_t e, lkv_diag *diag, const char *what);

#ifdef __cplusplus
}
#endif

#endif /* LKV_CUDA_INTERNAL_H */
