/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_cuda_p2.h - codec profile 2 on the GPU: encode and decode of profile 2
 * payloads (codec/FORMAT.md, container versions 3 and 2) byte-identical to
 * the C coder (lkv_p2_encode / lkv_p2_decode are the oracle). The version is
 * the model's: lkv_p2_format_of(p) of the parameters it was created with
 * (p->format 0 or 3: version 3, chunks of 256 vectors and one-byte norm
 * codes; 2: version 2, chunks of 128 and fp16 norms).
 *
 * API shape as lkv_cuda.h: caller-owned device memory, the stream passed
 * in, calls only enqueue work, per-vector status bytes. Two differences
 * come from the variable-length chunks:
 *   - a model object holds the per-(Q, piece) tables on the device, built
 *     once (lkv_cuda_p2_model_create allocates; encode and decode do not);
 *   - chunk c (vectors Cc .. Cc + C - 1, C = lkv_p2_chunk_vectors(p))
 *     starts at byte offs[c] of the payload, offs[nchunks] being the
 *     payload's length. The encoder writes this table (a scan of the chunk
 *     sizes); the decoder reads it, so that every chunk decodes in
 *     parallel. For a payload that came from elsewhere, lkv_cuda_p2_index
 *     builds it on the host from the chunks' length fields.
 * Failed vectors: encode marks a vector with a NaN/Inf element
 * (ERR_NONFINITE) or a norm its version cannot code (ERR_NORM_OVERFLOW:
 * version 3 above r^(255) = fp32(2^0.75) 2^31, version 2 fp16 infinity) in
 * d_status; its chunk is still written but every decoder rejects it
 * (version 2: the vector's stored norm is invalid; version 3, where every
 * norm code is valid: the chunk's first rANS state is). The C encoder
 * refuses such a batch, so byte identity is defined for batches without
 * failures. Decode marks every vector of a corrupt chunk ERR_CORRUPT and
 * writes zeros for that chunk (version 3 adds one check: a nonzero pad
 * byte after an odd number of norm codes).
 * Buffers: d_payload 2-byte aligned (cudaMalloc gives 256).
 */
#ifndef LKV_CUDA_P2_H
#define LKV_CUDA_P2_H

#include "lkv_codec.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lkv_cuda_p2_model lkv_cuda_p2_model;

/* Builds the models of p (profile 2) and copies them to device dev's
 * memory. ERR_VARIANT etc. for bad parameters, ERR_UNAVAILABLE without a
 * device. */
lkv_status lkv_cuda_p2_model_create(const lkv_params *p, int dev, lkv_cuda_p2_model **out,
                                    lkv_diag *diag);
void lkv_cuda_p2_model_free(lkv_cuda_p2_model *m);

/* Number of chunks of n vectors in p's container version:
 * ceil(n / lkv_p2_chunk_vectors(p)); 0 for p NULL. */
size_t lkv_cuda_p2_chunks(const lkv_params *p, size_t n);

/* Device workspace bytes lkv_cuda_p2_encode needs for n vectors (the chunks'
 * worst-case scratch, their sizes and the scan's temporary storage; format
 * 4 also the channel points and the mode choice's estimates and modes). */
size_t lkv_cuda_p2_encode_workspace(const lkv_cuda_p2_model *m, size_t n);

/*
 * Enqueues the encode of n vectors (dtype dt, device memory d_src) into the
 * payload at d_payload (cap bytes, at least lkv_p2_payload_bound(p, n)).
 * d_offs: device array of lkv_cuda_p2_chunks(p, n) + 1 u64 that receives the
 * chunk offsets; d_offs[nchunks] is the payload's length. d_work: device
 * workspace of work_bytes >= lkv_cuda_p2_encode_workspace(m, n). The call
 * also uses d_payload as scratch (the points between its kernels): bytes
 * past the payload's length are left undefined.
 */
lkv_status lkv_cuda_p2_encode(const lkv_cuda_p2_model *m, lkv_dtype dt, const void *d_src, size_t n,
                              void *d_payload, size_t cap, uint64_t *d_offs, void *d_work,
                              size_t work_bytes, uint8_t *d_status, void *stream, lkv_diag *diag);

/* Enqueues the decode of a payload of len bytes holding n vectors in m's
 * container version (a model of the parameters lkv_container_parse_header
 * returns, whose format names the header's version), with its chunk
 * offsets d_offs (device, nchunks + 1 u64), into d_dst (dtype dt). */
lkv_status lkv_cuda_p2_decode(const lkv_cuda_p2_model *m, const void *d_payload, size_t len,
                              const uint64_t *d_offs, size_t n, lkv_dtype dt, void *d_dst,
                              uint8_t *d_status, void *stream, lkv_diag *diag);

/* Host: the chunk offsets of a payload of len bytes holding n vectors in p's
 * container version (offs: lkv_cuda_p2_chunks(p, n) + 1 entries), from the
 * chunks' length fields, with the C coder's checks and messages
 * (ERR_TRUNCATED, ERR_CORRUPT, trailing bytes). */
lkv_status lkv_cuda_p2_index(const lkv_params *p, const void *payload, size_t len, size_t n,
                             uint64_t *offs, lkv_diag *diag);

#ifdef __cplusplus
}
#endif

#endif /* LKV_CUDA_P2_H */
