/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_format.h - byte layout of the coded-block container and of one vector
 * record, defined once for the C codec (container.c, the record coders) and
 * the CUDA kernels, and compiled by both the C compiler and nvcc. The prose
 * specification with the same offsets is codec/FORMAT.md.
 *
 * All multi-byte fields are little-endian. The header is 32 + 8*ndim bytes;
 * the vector records follow it immediately, record i at
 * header_bytes + i * record_bytes.
 */
#ifndef LKV_FORMAT_H
#define LKV_FORMAT_H

#define LKV_FMT_MAGIC      "LKVB"
#define LKV_FMT_VERSION    1u /* profile 1: fixed-size records            */
#define LKV_FMT_VERSION_P2 2u /* profile 2: chunks of variable size    */
#define LKV_FMT_VERSION_P3 3u /* profile 2, newest: chunks of 256, byte norms */
#define LKV_FMT_VERSION_P4 4u /* profile 2: version 3 plus a channel-domain mode */

#define LKV_FMT_OFF_MAGIC        0  /* 4 bytes "LKVB"                        */
#define LKV_FMT_OFF_VERSION      4  /* u16 format version (1)                */
#define LKV_FMT_OFF_HEADER_BYTES 6  /* u16 header size = 32 + 8*ndim         */
#define LKV_FMT_OFF_VARIANT      8  /* u8 1 = E8, 2 = D4                      */
#define LKV_FMT_OFF_DTYPE        9  /* u8 source dtype 1 bf16, 2 fp16, 3 fp32 */
#define LKV_FMT_OFF_NDIM         10 /* u8 1..8                                */
#define LKV_FMT_OFF_RESERVED     11 /* u8 0 (version 1); the profile, 2 (version 2) */
#define LKV_FMT_OFF_PROFILE      11
#define LKV_FMT_OFF_Q            12 /* u16 Q                                  */
#define LKV_FMT_OFF_DIM          14 /* u16 head_dim                           */
#define LKV_FMT_OFF_NVEC         16 /* u64 vector count = prod(shape)/dim     */
#define LKV_FMT_OFF_SHAPE        24 /* u64[ndim] tensor shape                 */
/* then (version 2 only): u64 payload bytes;
 * then: u32 payload CRC32C, u32 header CRC32C of all bytes before it */

#define LKV_FMT_HEADER_BYTES(ndim)    (32u + 8u * (unsigned)(ndim))
#define LKV_FMT_HEADER_BYTES_P2(ndim) (40u + 8u * (unsigned)(ndim))

/* A vector record is a little-endian bit string that opens with a 32-bit
 * head, r16 (fp16 bits of the norm) in bits 0..15 and m16 (fp16 bits of the
 * max-abs scale) in bits 16..31; the block indices follow from bit
 * LKV_FMT_REC_HEAD_BITS on, k bits each. */
#define LKV_FMT_REC_HEAD_BITS 32u

#if defined(__cplusplus)
static_assert(LKV_FMT_HEADER_BYTES(1) == 40, "header of a 1-d tensor");
static_assert(LKV_FMT_OFF_SHAPE % 8 == 0, "shape is 8-byte aligned");
static_assert(LKV_FMT_REC_HEAD_BITS == 2 * 16, "head: r16 then m16");
#else
_Static_assert(LKV_FMT_HEADER_BYTES(1) == 40, "header of a 1-d tensor");
_Static_assert(LKV_FMT_OFF_SHAPE % 8 == 0, "shape is 8-byte aligned");
_Static_assert(LKV_FMT_REC_HEAD_BITS == 2 * 16, "head: r16 then m16");
#endif

#endif /* LKV_FORMAT_H */
