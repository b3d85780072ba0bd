/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_cuda.h - the CUDA backend of the latticekv codec: fused, batched
 * encode and decode kernels that are byte-identical to the C codec
 * (codec/include/lkv_codec.h is the oracle).
 *
 * API shape (as nvcomp's low-level C API):
 *   - batch-first: one call encodes or decodes n vectors of one lkv_params;
 *   - caller-owned device memory: every pointer marked "device" must point to
 *     device memory (cudaMalloc); the library allocates nothing per call;
 *   - the CUDA stream is passed in; calls only enqueue work: no hidden
 *     synchronisation, results are ready when the stream is;
 *   - per-vector status: an optional device array of n uint8_t that receives
 *     LKV_OK or the lkv_status of that vector (ERR_NONFINITE,
 *     ERR_NORM_OVERFLOW when encoding; ERR_CORRUPT when decoding);
 *   - "no CUDA device" is detected and is not an error (lkv_cuda_device_count
 *     returns 0).
 * Compiled only when nvcc is found (LKV_HAVE_CUDA); this header is plain C.
 * Thread-safety: calls on different streams may run concurrently.
 *
 * Sizes: a batch of n vectors is n * lkv_record_bytes(p) bytes of records
 * and n * p->dim * lkv_dtype_size(dt) bytes of vectors (lkv_codec.h).
 * Alignment: any byte address works; 16-byte aligned buffers (cudaMalloc
 * gives 256) take the fast, fully coalesced path, others a byte-wise one
 * that produces the same bytes.
 * Failed vectors (byte-identical behaviour is only defined for the others):
 *   - encode: the record of a vector with ERR_NONFINITE or
 *     ERR_NORM_OVERFLOW is all zero bytes (which every decoder rejects as
 *     ERR_CORRUPT); the other records of the batch are unaffected;
 *   - decode: a record with ERR_CORRUPT decodes to zeros.
 * A head_dim that is not a power of two is coded piece by piece
 * (codec/FORMAT.md), one launch per piece on the same stream; of a failed
 * vector only the failing pieces' records are zero (still rejected by every
 * decoder), and only the corrupt pieces of a corrupt record decode to zeros.
 * Every call checks p and dt first (ERR_VARIANT, ERR_Q_RANGE, ERR_HEAD_DIM,
 * ERR_DTYPE with a message naming the field and value), returns LKV_OK for
 * n = 0 without touching any pointer, and ERR_INVALID_ARGUMENT for a NULL
 * buffer with n > 0.
 */
#ifndef LKV_CUDA_H
#define LKV_CUDA_H

#include "lkv_codec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices; 0 when there is no driver or no device. */
int lkv_cuda_device_count(void);

/* Name of device `dev` into buf (e.g. "NVIDIA H100 80GB HBM3"). */
lkv_status lkv_cuda_device_name(int dev, char *buf, size_t cap);

/*
 * Enqueue the encode of n vectors (dtype dt, dim p->dim, device memory
 * d_src, row-major) into n records written contiguously at d_records
 * (n * lkv_record_bytes(p) bytes, device memory). d_status: device array of
 * n bytes or NULL. stream: a cudaStream_t (NULL = the default stream).
 * Returns a launch-level status (bad params, launch failure); per-vector
 * failures are reported through d_status only.
 */
lkv_status lkv_cuda_encode(const lkv_params *p, lkv_dtype dt, const void *d_src, size_t n,
                           void *d_records, uint8_t *d_status, void *stream, lkv_diag *diag);

/* Enqueue the decode of n records (device memory) into n vectors of dtype dt
 * (device memory). d_status as for lkv_cuda_encode (ERR_CORRUPT per vector). */
lkv_status lkv_cuda_decode(const lkv_params *p, const void *d_records, size_t n, lkv_dtype dt,
                           void *d_dst, uint8_t *d_status, void *stream, lkv_diag *diag);

/*
 * Host-buffer convenience for the daemon: a context owns one device, one
 * stream and growable device + pinned staging buffers. lkv_cuda_ctx_encode /
 * _decode copy host input in, run the kernel, copy output back and
 * synchronise; they return the first failing vector's status (diag->index =
 * vector), like lkv_encode / lkv_decode. One context must not be used by two
 * threads at once.
 */
typedef struct lkv_cuda_ctx lkv_cuda_ctx;
lkv_status lkv_cuda_ctx_create(int dev, lkv_cuda_ctx **out, lkv_diag *diag);
void lkv_cuda_ctx_free(lkv_cuda_ctx *ctx);
lkv_status lkv_cuda_ctx_encode(lkv_cuda_ctx *ctx, const lkv_params *p, lkv_dtype dt,
                               const void *src, size_t n, void *records, lkv_diag *diag);
lkv_status lkv_cuda_ctx_decode(lkv_cuda_ctx *ctx, const lkv_params *p, const void *records,
                               size_t n, lkv_dtype dt, void *dst, lkv_diag *diag);

/*
 * Device-resident records (the daemon's GPU tier, server/tier/gpu.c):
 * decodes n records already in device memory (d_records, on the context's
 * device) into the host buffer dst, in chunks of 16 MiB of output so the
 * staging stays bounded and the host copy of one chunk overlaps the device
 * work of the next. The records never leave the device. Returns the first
 * failing vector's status (ERR_CORRUPT, diag->index = vector); dst is then
 * fully written, with zeros for the failing vectors.
 */
lkv_status lkv_cuda_ctx_decode_device(lkv_cuda_ctx *ctx, const lkv_params *p, const void *d_records,
                                      size_t n, lkv_dtype dt, void *dst, lkv_diag *diag);

/* One cudaMalloc of bytes on device dev (ERR_NOMEM naming the size and the
 * device's free memory); freed by lkv_cuda_arena_free. */
lkv_status lkv_cuda_arena_alloc(int dev, size_t bytes, void **d_base, lkv_diag *diag);
void lkv_cuda_arena_free(int dev, void *d_base);
/* Synchronous copy of n bytes between host and device memory of device dev. */
lkv_status lkv_cuda_copy(int dev, void *dst, const void *src, size_t n, int to_device,
                         lkv_diag *diag);

#ifdef __cplusplus
}
#endif

#endif /* LKV_CUDA_H */
