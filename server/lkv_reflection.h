/* SPDX-License-Identifier: Apache-2.0 */
/* lkv_reflection.h - grpc.reflection.v1alpha answers (reflection.c). */
#ifndef LKV_REFLECTION_H
#define LKV_REFLECTION_H

#include <stddef.h>
#include <stdint.h>

/* 1 when this build embeds the API's descriptors (protoc was found). */
int lkv_reflection_available(void);
/* Answers one grpc.reflection.v1alpha ServerReflectionRequest (msg, len)
 * with a ServerReflectionResponse, malloc'd into *reply (the caller frees
 * it). Questions it cannot answer get the response's error_response (e.g.
 * NOT_FOUND for an unknown symbol), not a failure. Returns 0, -1 when msg
 * is not a valid request, -2 when out of memory. */
int lkv_reflection_answer(const uint8_t *msg, size_t len, uint8_t **reply, size_t *reply_len);

#endif
