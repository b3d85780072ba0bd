/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_codec_backend.h - what a second implementation of the codec (the CUDA
 * backend, cuda/) takes from the C codec, and nothing else.
 *
 * Design note: the C codec is the oracle; another backend must produce the
 * same bytes and the same error messages. It therefore reuses the C codec's
 * per-parameter constants (lkv_derive), its error formatting (lkv_fail) and
 * its fp32 loader (lkv_load_vec, to name the bad element of a vector the
 * way the C codec does), plus the bit-exact inline arithmetic of
 * lkv_codec_math.h beside this file. Only the lkv_codec_backend CMake
 * target exports this folder; applications, the server and the clients see
 * codec/include/ alone. Not installed.
 */
#ifndef LKV_CODEC_BACKEND_H
#define LKV_CODEC_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "lkv_codec.h"
#include "lkv_codec_math.h"
#include "lkv_format.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Constants of one checked parameter set, derived once per call. */
typedef struct lkv_derived {
    lkv_params p;
    uint32_t n;            /* block size, 4 or 8                         */
    uint32_t nblocks;      /* dim / n                                    */
    uint32_t k;            /* bits per block index                       */
    uint32_t log2d;        /* log2(dim)                                  */
    uint32_t bits;         /* bits per vector: nblocks * k + head bits   */
    uint32_t rec_bytes;    /* ceil(bits / 8)                             */
    float qf;              /* (float)q                                   */
    float inv_sqrt_d;      /* fp32(1/sqrt(dim))                          */
    lkv_u128 e8_int_count; /* M_a (E8 only)                            */
    lkv_u128 codebook;     /* number of valid indices                    */
} lkv_derived;

/* Fills d from a p that passed lkv_params_check and whose dim is a power
 * of two (one piece). */
void lkv_derive(const lkv_params *p, lkv_derived *d);

/* A head_dim cut into its power-of-two pieces (codec/FORMAT.md): piece j
 * holds elements [off[j], off[j] + d[j].p.dim) of a vector and bytes
 * [rec_off[j], rec_off[j] + d[j].rec_bytes) of its record. */
typedef struct lkv_split {
    uint32_t dim;       /* the whole head_dim                               */
    uint32_t count;     /* pieces, 1 for a power of two                     */
    uint32_t bits;      /* the record's bits, padding of pieces excluded    */
    uint32_t rec_bytes; /* the record's bytes: the pieces' sum              */
    uint32_t off[LKV_PIECES_MAX];
    uint32_t rec_off[LKV_PIECES_MAX];
    lkv_derived d[LKV_PIECES_MAX];
} lkv_split;

/* Fills s from a p that passed lkv_params_check. */
void lkv_split_init(const lkv_params *p, lkv_split *s);

/* Formats diag (when non-NULL) as the C codec does and returns code. */
lkv_status lkv_fail(lkv_diag *diag, lkv_status code, uint64_t index, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Loads vector i of a batch as fp32; returns 0 when an element is NaN/Inf
 * (*bad_elem receives its index). */
int lkv_load_vec(lkv_dtype dt, const void *src, size_t i, uint32_t dim, float *x,
                 uint32_t *bad_elem);

#ifdef __cplusplus
}
#endif

#endif /* LKV_CODEC_BACKEND_H */
