/* SPDX-License-Identifier: Apache-2.0 */
/*
 * version.c - the library's version string. LKV_VERSION_STRING comes from
 * the project version in the top-level CMakeLists.txt, so the library, the
 * daemon, the CLI and the packages never disagree about it.
 */
#include "lkv_codec.h"

#ifndef LKV_VERSION_STRING
#error "LKV_VERSION_STRING must be defined by the build (codec/CMakeLists.txt)"
#endif

const char *lkv_version_string(void)
{
    return LKV_VERSION_STRING;
}
