/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_codec_p2.h - what the CUDA backend takes from codec profile 2: the
 * static models (lkv_p2_model, built on the host by lkv_p2_model_build and
 * copied to the device as they are) and the rANS constants.
 *
 * Design note: the models are the oracle's own bytes, not a second build,
 * so the GPU cannot drift from codec/p2_model.c. This header only forwards
 * codec/lkv_p2.h with C linkage for C++ (nvcc) translation units. Not
 * installed.
 */
#ifndef LKV_CODEC_P2_H
#define LKV_CODEC_P2_H

#ifdef __cplusplus
extern "C" {
#endif

#include "../lkv_p2.h"

#ifdef __cplusplus
}
#endif

#endif /* LKV_CODEC_P2_H */
