/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_codec.h - the KakeyaLattice nested-lattice codec for KV-cache vectors.
 *
 * This is the one public header of latticekv's portable codec library. It is
 * the daemon's CPU backend and the oracle the CUDA kernels are tested against.
 * The algorithm is specified in docs/codec.md; the coded container is
 * specified byte for byte in codec/FORMAT.md.
 *
 * Library rules
 *   - Pure: no I/O, no threads, no allocation, no mutable globals, no CUDA.
 *     Every buffer is owned by the caller; the library never keeps a pointer
 *     past the call that received it.
 *   - Thread-safe: every function may be called concurrently from any number
 *     of threads on disjoint output buffers.
 *   - Deterministic: the same input produces the same bytes on every run, for
 *     every batch size, every instruction-set path (scalar, AVX2, AVX-512) and
 *     on the GPU (cuda/include/lkv_cuda.h).
 *   - Every function that can fail returns an lkv_status. On failure it fills
 *     the optional lkv_diag (pass NULL when you do not need the message) with
 *     a one-line message that names the offending field and value.
 *
 * Units used below
 *   vector  : one head_dim-long row of the KV tensor (the last dimension).
 *   record  : the coded form of one vector: r16, m16 and D/n block indices,
 *             exactly lkv_bits_per_vector() bits, padded to whole bytes.
 *   container: a self-describing coded block: header + records (FORMAT.md).
 */
#ifndef LKV_CODEC_H
#define LKV_CODEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The shared library (liblatticekv.so) is built with hidden visibility and
 * exports exactly what this header declares, plus nothing outside lkv_*
 * (codec/liblatticekv.map). The pragma marks these declarations as the
 * library's interface; a consumer built with -fvisibility=hidden still
 * imports them.
 */
#if defined(__GNUC__) && !defined(__CUDACC__)
#pragma GCC visibility push(default)
#endif

/* The library's version, "MAJOR.MINOR.PATCH" (the project version that built
 * it). `latticekv --version` and `latticekvd --version` print the same. */
const char *lkv_version_string(void);

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

/*
 * The codec's error list, as an X-macro: X(NAME, default message). LKV_OK
 * is zero; every other value is a failure. The daemon numbers its own
 * statuses (not found, auth, permission) after these and maps every code
 * to a gRPC status in exactly one table (server/status.c).
 */
#define LKV_STATUS_LIST(X)                                                         \
    X(OK, "ok")                                                                    \
    X(ERR_VARIANT, "unknown lattice variant")                                      \
    X(ERR_Q_RANGE, "q_range outside 1..1023")                                      \
    X(ERR_HEAD_DIM, "head_dim is not a multiple of the block size in block..1024") \
    X(ERR_DTYPE, "unknown dtype")                                                  \
    X(ERR_SHAPE, "tensor shape does not match head_dim or data length")            \
    X(ERR_NONFINITE, "input holds NaN or Inf")                                     \
    X(ERR_NORM_OVERFLOW, "vector norm is too large for the fp16 scale (>= 65520)") \
    X(ERR_BUFFER_SMALL, "output buffer too small")                                 \
    X(ERR_TRUNCATED, "coded container is truncated")                               \
    X(ERR_MAGIC, "not a latticekv container (bad magic)")                          \
    X(ERR_VERSION, "unknown container format version")                             \
    X(ERR_CHECKSUM, "container checksum mismatch")                                 \
    X(ERR_CORRUPT, "coded data is corrupt")                                        \
    X(ERR_ISA, "instruction-set path not supported on this CPU")                   \
    X(ERR_NOMEM, "out of memory")                                                  \
    X(ERR_LIMIT, "size or capacity limit exceeded")                                \
    X(ERR_UNAVAILABLE, "unavailable")                                              \
    X(ERR_INTERNAL, "internal error")                                              \
    X(ERR_INVALID_ARGUMENT, "request field missing or invalid")

typedef enum lkv_status {
#define LKV_X_ENUM(name, msg) LKV_##name,
    LKV_STATUS_LIST(LKV_X_ENUM)
#undef LKV_X_ENUM
        LKV_STATUS_COUNT
} lkv_status;

/* "LKV_ERR_Q_RANGE" for LKV_ERR_Q_RANGE; "LKV_UNKNOWN" outside the list. */
const char *lkv_status_name(lkv_status s);
/* The default one-line message of a code (never NULL). */
const char *lkv_status_message(lkv_status s);

/*
 * Diagnostics of a failed call. code repeats the return value; index is the
 * vector (or byte offset, for containers) the error refers to, or UINT64_MAX
 * when it refers to no element; msg names the field and the offending value,
 * e.g. "head_dim=100 is not a multiple of 8 in 8..1024 for E8".
 */
typedef struct lkv_diag {
    lkv_status code;
    uint64_t index;
    char msg[192];
} lkv_diag;

/* ------------------------------------------------------------------------ */
/* Parameters                                                                */
/* ------------------------------------------------------------------------ */

/* Numeric values equal the wire enums of proto/latticekv/v1 (Variant, DType). */
typedef enum lkv_variant { LKV_VARIANT_E8 = 1, LKV_VARIANT_D4 = 2 } lkv_variant;
typedef enum lkv_dtype { LKV_DTYPE_BF16 = 1, LKV_DTYPE_FP16 = 2, LKV_DTYPE_FP32 = 3 } lkv_dtype;

#define LKV_Q_MIN     1u
#define LKV_Q_MAX     1023u
#define LKV_Q_DEFAULT 38u
#define LKV_DIM_MAX   1024u

/* Codec profiles (codec/FORMAT.md). Profile 1 is the reference-exact
 * KakeyaLattice codec: fixed-size records, container version 1. Profile 2
 * (docs/codec-v2.md) keeps one fp16 norm per vector and entropy-codes the E8
 * point with static per-Q models: variable-size chunks, container version 2.
 * A profile of 0 means profile 1, so positional initialisers that predate
 * the field ({variant, q, dim}) keep today's codec. */
#define LKV_PROFILE_1 1u
#define LKV_PROFILE_2 2u

typedef struct lkv_params {
    lkv_variant variant; /* E8 (block n = 8) or D4 (block n = 4)            */
    uint32_t q;          /* Q, 1..1023: profile 1's box half-width; profile
                            2's step (a larger Q: finer, more bits)          */
    uint32_t dim;        /* head_dim D: a multiple of n, n <= D <= 1024      */
    uint32_t profile;    /* 0 or 1: profile 1; 2: profile 2 (E8 only)        */
    uint32_t format;     /* profile 2's layout: 0 = the newest (container
                            version 3); 2 or 3 = that container version.
                            Encoders write it; lkv_container_parse_header
                            sets it from the header. Profile 1: 0 or 1.   */
} lkv_params;

/* The profile p selects: 1 for 0 or 1, else p->profile as given. */
uint32_t lkv_profile_of(const lkv_params *p);

/* Profile 2's container version p selects: 3 for 0, else p->format. */
uint32_t lkv_p2_format_of(const lkv_params *p);

/* Vectors per profile 2 chunk of that layout: 128 (version 2), 256 (3). */
uint32_t lkv_p2_chunk_vectors(const lkv_params *p);

/* Checks profile, variant, q and dim. LKV_OK or ERR_VARIANT (also for an
 * unknown profile, "profile=N", and for profile 2 with D4, which profile 2
 * refuses) / ERR_Q_RANGE / ERR_HEAD_DIM. */
lkv_status lkv_params_check(const lkv_params *p, lkv_diag *diag);
/* Checks a dtype value. LKV_OK or ERR_DTYPE. */
lkv_status lkv_dtype_check(int dtype, lkv_diag *diag);

/* Bytes per element of a dtype: 2, 2, 4; 0 for an unknown dtype. */
size_t lkv_dtype_size(lkv_dtype dt);
/* "bf16", "fp16", "fp32"; "?" for an unknown dtype. */
const char *lkv_dtype_name(lkv_dtype dt);
/* "E8", "D4"; "?" for an unknown variant. */
const char *lkv_variant_name(lkv_variant v);

/* Block size n: 8 for E8, 4 for D4, 0 for an unknown variant. */
uint32_t lkv_block_size(lkv_variant v);
/* Bits of one block index: k8 = bitlength(B^8), k4 = bitlength(B^4 - 1) - 1,
 * B = 2Q + 1. 0 when variant or q is invalid. */
uint32_t lkv_bits_per_block(lkv_variant v, uint32_t q);
/* (D/n)*k + 32 (the record head, LKV_FMT_REC_HEAD_BITS): the reference's
 * bits_per_token_per_head. A D that is not a power of two is the sum over
 * its pieces (codec/FORMAT.md). 0 when invalid. */
uint32_t lkv_bits_per_vector(const lkv_params *p);
/* ceil(bits_per_vector / 8): bytes one record occupies (for a D that is not
 * a power of two, the sum of its pieces' records). 0 when invalid. */
size_t lkv_record_bytes(const lkv_params *p);

/* ------------------------------------------------------------------------ */
/* Instruction-set paths                                                     */
/* ------------------------------------------------------------------------ */

/* All paths produce identical bytes; AUTO picks the best the CPU supports. */
typedef enum lkv_isa {
    LKV_ISA_AUTO = 0,
    LKV_ISA_SCALAR = 1,
    LKV_ISA_AVX2 = 2,
    LKV_ISA_AVX512 = 3
} lkv_isa;

/* 1 when this build and this CPU can run the path (AUTO and SCALAR: always). */
int lkv_isa_supported(lkv_isa isa);
/* The path AUTO resolves to on this CPU. */
lkv_isa lkv_isa_best(void);
/* "auto", "scalar", "avx2", "avx512". */
const char *lkv_isa_name(lkv_isa isa);

/* ------------------------------------------------------------------------ */
/* Vector records                                                            */
/* ------------------------------------------------------------------------ */

/*
 * Encodes n vectors of p->dim elements of dtype `dt` (little-endian, row-major)
 * into n records of lkv_record_bytes(p) bytes each, written contiguously to
 * `records`. src and records must not overlap. n = 0 is valid and writes
 * nothing.
 *
 * Fails with ERR_NONFINITE when any element is NaN/Inf and ERR_NORM_OVERFLOW
 * when a vector's norm rounds to +inf in fp16 (>= 65520); diag->index is then
 * the vector's index. On failure the content of `records` is unspecified.
 */
lkv_status lkv_encode(const lkv_params *p, lkv_dtype dt, const void *src, size_t n, void *records,
                      lkv_isa isa, lkv_diag *diag);

/*
 * Decodes n records into n vectors of dtype `dt` (round to nearest even).
 * Records are untrusted: an index outside the codebook, or a scale that is
 * not finite and positive, fails with ERR_CORRUPT (diag->index = vector).
 * Whatever the bytes, the call reads only n * lkv_record_bytes(p) bytes and
 * writes only n * dim * lkv_dtype_size(dt) bytes.
 */
lkv_status lkv_decode(const lkv_params *p, const void *records, size_t n, lkv_dtype dt, void *dst,
                      lkv_isa isa, lkv_diag *diag);

/* ------------------------------------------------------------------------ */
/* Coded-block container (codec/FORMAT.md)                                   */
/* ------------------------------------------------------------------------ */

#define LKV_MAX_NDIM 8u

/* What a container header says, after validation. */
typedef struct lkv_container_info {
    lkv_params params;
    lkv_dtype dtype;              /* dtype the tensor had when encoded        */
    uint32_t ndim;                /* 1..LKV_MAX_NDIM                          */
    uint64_t shape[LKV_MAX_NDIM]; /* shape[ndim-1] == params.dim              */
    uint64_t n_vectors;           /* prod(shape) / dim                        */
    size_t record_bytes;          /* lkv_record_bytes(&params); 0: profile 2  */
    size_t header_bytes;          /* offset of the first record (or chunk)    */
    size_t total_bytes;           /* header_bytes + n_vectors * record_bytes,
                                     profile 2: header_bytes + payload bytes;
                                     lkv_container_plan: profile 2's bound    */
    uint32_t payload_crc;         /* CRC32C of the records                    */
} lkv_container_info;

/*
 * Validates a tensor description and computes its sizes: n_vectors and the
 * exact container size. Fails with ERR_SHAPE when ndim is 0 or above 8, when
 * the last dimension is not p->dim, or when the sizes overflow.
 */
lkv_status lkv_container_plan(const lkv_params *p, lkv_dtype dt, const uint64_t *shape,
                              uint32_t ndim, lkv_container_info *info, lkv_diag *diag);

/*
 * Encodes a tensor into a container. src holds src_bytes bytes, which must
 * equal prod(shape) * dtype size (else ERR_SHAPE). dst receives the container
 * (ERR_BUFFER_SMALL when dst_cap is below its size); *dst_len its size. The
 * output is a pure function of the input: no timestamps, no random ids.
 */
lkv_status lkv_compress(const lkv_params *p, lkv_dtype dt, const uint64_t *shape, uint32_t ndim,
                        const void *src, size_t src_bytes, void *dst, size_t dst_cap,
                        size_t *dst_len, lkv_isa isa, lkv_diag *diag);

/*
 * Writes the container header for `info` (as filled by lkv_container_plan,
 * with payload_crc set) into dst (info->header_bytes bytes). For backends
 * that produce the records elsewhere (the GPU) and assemble the container.
 */
lkv_status lkv_container_write_header(const lkv_container_info *info, void *dst, size_t dst_cap,
                                      lkv_diag *diag);

/*
 * Parses and fully validates an untrusted container of len bytes: magic,
 * version, header checksum, parameters, shape, exact length and the payload
 * checksum. Errors: ERR_TRUNCATED, ERR_MAGIC, ERR_VERSION, ERR_CHECKSUM,
 * ERR_CORRUPT (inconsistent header). Reads at most len bytes, whatever they are.
 */
lkv_status lkv_container_parse(const void *buf, size_t len, lkv_container_info *info,
                               lkv_diag *diag);

/*
 * The header alone, for readers that stream the records (the CLI): buf holds
 * at least the header's len bytes (LKV_FMT_HEADER_BYTES(ndim), at most
 * LKV_FMT_HEADER_BYTES(LKV_MAX_NDIM); the u16 at LKV_FMT_OFF_HEADER_BYTES
 * says how many). Runs every check of lkv_container_parse up to the vector
 * count, fills info (payload_crc is the stored one) and does not look at the
 * records: the caller checks that exactly info->total_bytes - header_bytes
 * record bytes follow and that their CRC32C equals payload_crc.
 */
lkv_status lkv_container_parse_header(const void *buf, size_t len, lkv_container_info *info,
                                      lkv_diag *diag);

/*
 * Parses `buf` (as lkv_container_parse) and decodes it into dst as dtype
 * `out_dt`; pass 0 to get the dtype that was encoded. *dst_len receives the
 * tensor's byte size; ERR_BUFFER_SMALL when dst_cap is below it. `info` may
 * be NULL.
 */
lkv_status lkv_decompress(const void *buf, size_t len, int out_dt, void *dst, size_t dst_cap,
                          size_t *dst_len, lkv_container_info *info, lkv_isa isa, lkv_diag *diag);

/* ------------------------------------------------------------------------ */
/* Profile 2: variable-size records in chunks (docs/codec-v2.md)             */
/* ------------------------------------------------------------------------ */

/*
 * Profile 2 codes vectors in chunks of up to LKV_P2_CHUNK_VECTORS; a chunk is
 * a u32 length then that many bytes (codec/FORMAT.md, version 2), and its
 * size depends on the data. lkv_encode/lkv_decode and lkv_record_bytes are
 * fixed-size-record calls: they refuse profile 2 (ERR_VARIANT) and return 0.
 * lkv_compress/lkv_decompress/lkv_container_* take both profiles.
 */
#define LKV_P2_CHUNK_VECTORS    256u /* the newest layout (version 3); the most */
#define LKV_P2_CHUNK_VECTORS_V2 128u /* container version 2                    */

/* Worst-case bytes of the profile 2 payload of n vectors (every chunk at its
 * bound); 0 when p is invalid, not profile 2, or the size overflows. */
size_t lkv_p2_payload_bound(const lkv_params *p, uint64_t n);

/* Worst-case container size of a tensor, for either profile (profile 1: the
 * exact size). 0 when the parameters or the shape are invalid. */
size_t lkv_compress_bound(const lkv_params *p, const uint64_t *shape, uint32_t ndim);

/*
 * Encodes n vectors (any n, 0 included) into a profile 2 payload: ceil(n /
 * LKV_P2_CHUNK_VECTORS) chunks, chunk c holding vectors 128c .. 128c + 127.
 * *dst_len receives the payload's size; ERR_BUFFER_SMALL when dst_cap is
 * below it (lkv_p2_payload_bound(p, n) always suffices). Errors as
 * lkv_encode. The bytes of a chunk depend only on its own vectors, so a
 * caller may encode a tensor in pieces of any multiple of 128 vectors and
 * concatenate the payloads.
 */
lkv_status lkv_p2_encode(const lkv_params *p, lkv_dtype dt, const void *src, size_t n, void *dst,
                         size_t dst_cap, size_t *dst_len, lkv_diag *diag);

/* lkv_p2_encode on a chosen instruction-set path (LKV_ISA_AUTO: the best
 * this CPU has, which is what lkv_p2_encode runs). Every path writes the
 * same bytes and reports the same errors; ERR_ISA when the CPU lacks isa.
 * lkv_compress passes its isa here. */
lkv_status lkv_p2_encode_isa(const lkv_params *p, lkv_dtype dt, const void *src, size_t n,
                             void *dst, size_t dst_cap, size_t *dst_len, lkv_isa isa,
                             lkv_diag *diag);

/*
 * Decodes a profile 2 payload of exactly n vectors from src_len bytes.
 * Untrusted input: a chunk length past the end, a symbol stream that does
 * not end exactly at its chunk's end, a final rANS state that is not the
 * initial one, a bad scale or trailing bytes give ERR_CORRUPT (or
 * ERR_TRUNCATED when the bytes end early); diag->index is the byte offset.
 * Reads only src_len bytes; writes only n * dim * lkv_dtype_size(dt) bytes.
 */
lkv_status lkv_p2_decode(const lkv_params *p, const void *src, size_t src_len, size_t n,
                         lkv_dtype dt, void *dst, lkv_diag *diag);

/* lkv_p2_decode on a chosen instruction-set path (LKV_ISA_AUTO: the best
 * this CPU has, which is what lkv_p2_decode runs). Every path decodes the
 * same bytes and reports the same errors; ERR_ISA when the CPU lacks isa.
 * lkv_decompress passes its isa here. */
lkv_status lkv_p2_decode_isa(const lkv_params *p, const void *src, size_t src_len, size_t n,
                             lkv_dtype dt, void *dst, lkv_isa isa, lkv_diag *diag);

/* Bytes of the first chunk of a profile 2 payload of src_len bytes (its u32
 * length prefix included), for streaming readers: ERR_TRUNCATED when the
 * prefix or the chunk is not complete, ERR_CORRUPT when the length exceeds
 * the bound of a chunk of n_in_chunk vectors. */
lkv_status lkv_p2_chunk_size(const lkv_params *p, const void *src, size_t src_len,
                             size_t n_in_chunk, size_t *chunk_bytes, lkv_diag *diag);

/* ------------------------------------------------------------------------ */
/* Helpers shared by the rest of latticekv                                   */
/* ------------------------------------------------------------------------ */

/* CRC32C (Castagnoli); start with crc = 0. Uses SSE4.2 when the CPU has it. */
uint32_t lkv_crc32c(uint32_t crc, const void *buf, size_t len);

/* Scalar conversions with round-to-nearest-even, exactly as the codec uses. */
uint16_t lkv_f32_to_f16(float f);
float lkv_f16_to_f32(uint16_t h);
uint16_t lkv_f32_to_bf16(float f);
float lkv_bf16_to_f32(uint16_t b);

#if defined(__GNUC__) && !defined(__CUDACC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* LKV_CODEC_H */
