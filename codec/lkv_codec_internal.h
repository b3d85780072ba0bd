/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_codec_internal.h - what the codec's instruction-set paths share.
 *
 * Design note: lkv_encode/lkv_decode validate their arguments once, derive
 * the per-parameter constants (lkv_derived) once, and hand a batch of
 * vectors to one path's kernel. A path (scalar, AVX2, AVX-512) only
 * implements the two batch kernels below; the reference semantics are those
 * of the scalar path in ref.c, which every other path must match byte for byte.
 * Not installed; not part of the public API. What the CUDA backend shares
 * with these paths is codec/backend/lkv_codec_backend.h.
 */
#ifndef LKV_CODEC_INTERNAL_H
#define LKV_CODEC_INTERNAL_H

#include "lkv_codec.h"
#include "lkv_codec_backend.h"
#include "lkv_codec_math.h"
#include "lkv_format.h"

/*
 * Batch kernels of one path. Inputs have been validated for dtype and
 * parameters; encode kernels still check each vector for NaN/Inf and norm
 * overflow, decode kernels still check each record (both report the first
 * failing vector through lkv_fail).
 */
typedef lkv_status (*lkv_encode_kernel)(const lkv_derived *d, lkv_dtype dt, const void *src,
                                        size_t n, uint8_t *dst, lkv_diag *diag);
typedef lkv_status (*lkv_decode_kernel)(const lkv_derived *d, const uint8_t *src, size_t n,
                                        lkv_dtype dt, void *dst, lkv_diag *diag);

lkv_status lkv_encode_scalar(const lkv_derived *d, lkv_dtype dt, const void *src, size_t n,
                             uint8_t *dst, lkv_diag *diag);
lkv_status lkv_decode_scalar(const lkv_derived *d, const uint8_t *src, size_t n, lkv_dtype dt,
                             void *dst, lkv_diag *diag);
/* The scalar kernels on vectors first..end-1 of a batch (src and dst are the
 * batch's bases; a failure reports the batch-wide vector index). SIMD paths
 * hand a tail or a batch holding a bad vector to these. */
lkv_status lkv_encode_scalar_range(const lkv_derived *d, lkv_dtype dt, const void *src,
                                   size_t first, size_t end, uint8_t *dst, lkv_diag *diag);
lkv_status lkv_decode_scalar_range(const lkv_derived *d, const uint8_t *src, size_t first,
                                   size_t end, lkv_dtype dt, void *dst, lkv_diag *diag);

/* The scalar kernels of a head_dim of several pieces (ref.c), on vectors
 * first..end-1: each whole vector is loaded (a NaN/Inf reports its element
 * in the whole vector) and each piece coded by lkv_ref_encode_vec /
 * lkv_ref_decode_vec into its place in the record. */
lkv_status lkv_encode_split_range(const lkv_split *s, lkv_dtype dt, const void *src, size_t first,
                                  size_t end, uint8_t *dst, lkv_diag *diag);
lkv_status lkv_decode_split_range(const lkv_split *s, const uint8_t *src, size_t first, size_t end,
                                  lkv_dtype dt, void *dst, lkv_diag *diag);

#if defined(LKV_HAVE_AVX2)
lkv_status lkv_encode_avx2(const lkv_derived *d, lkv_dtype dt, const void *src, size_t n,
                           uint8_t *dst, lkv_diag *diag);
lkv_status lkv_decode_avx2(const lkv_derived *d, const uint8_t *src, size_t n, lkv_dtype dt,
                           void *dst, lkv_diag *diag);
#endif
#if defined(LKV_HAVE_AVX512)
lkv_status lkv_encode_avx512(const lkv_derived *d, lkv_dtype dt, const void *src, size_t n,
                             uint8_t *dst, lkv_diag *diag);
lkv_status lkv_decode_avx512(const lkv_derived *d, const uint8_t *src, size_t n, lkv_dtype dt,
                             void *dst, lkv_diag *diag);
#endif

/*
 * Scalar single-vector pieces, exported so that SIMD paths can hand a tail
 * or an unusual vector to the reference and stay byte-identical.
 *   lkv_ref_encode_vec: x holds dim finite fp32 values; writes one record
 *     (rec_bytes bytes, fully overwritten). ERR_NORM_OVERFLOW when r16 = inf.
 *   lkv_ref_decode_vec: reads one record; writes dim fp32 values.
 *     ERR_CORRUPT for an invalid record.
 */
lkv_status lkv_ref_encode_vec(const lkv_derived *d, const float *x, uint8_t *rec);
lkv_status lkv_ref_decode_vec(const lkv_derived *d, const uint8_t *rec, float *out);

/*
 * Block-level pieces of the reference, for tests and other paths. Lattice
 * points are passed doubled (p2 = 2p) so both E8 cosets are integers.
 *   lkv_ref_closest: closest codebook point of one block z (n floats).
 *   lkv_ref_point_index: index of a codebook point (must be in the codebook).
 *   lkv_ref_index_point: point of an index; 0 when idx is outside the codebook.
 */
void lkv_ref_closest(const lkv_derived *d, const float *z, int32_t *p2);
lkv_u128 lkv_ref_point_index(const lkv_derived *d, const int32_t *p2);
int lkv_ref_index_point(const lkv_derived *d, lkv_u128 idx, int32_t *p2);

/* Stores dim fp32 values as vector i of a batch in dtype dt (RNE). */
void lkv_store_vec(lkv_dtype dt, void *dst, size_t i, uint32_t dim, const float *x);

/* A little-endian bit stream (profile 1 records, version 4's levels):
 * writes the low k bits of v at bit position pos, LSB first (rec zeroed). */
static inline void lkv_put_bits(uint8_t *rec, uint32_t pos, lkv_u128 v, uint32_t k)
{
    while (k) {
        const uint32_t off = pos & 7u;
        uint32_t take = 8u - off;
        if (take > k)
            take = k;
        rec[pos >> 3] |= (uint8_t)(((uint32_t)v & ((1u << take) - 1u)) << off);
        v >>= take;
        pos += take;
        k -= take;
    }
}

static inline lkv_u128 lkv_get_bits(const uint8_t *rec, uint32_t pos, uint32_t k)
{
    lkv_u128 v = 0;
    uint32_t got = 0;
    while (got < k) {
        const uint32_t off = pos & 7u;
        uint32_t take = 8u - off;
        if (take > k - got)
            take = k - got;
        const uint32_t bits = ((uint32_t)rec[pos >> 3] >> off) & ((1u << take) - 1u);
        v |= (lkv_u128)bits << got;
        got += take;
        pos += take;
    }
    return v;
}

#endif /* LKV_CODEC_INTERNAL_H */
