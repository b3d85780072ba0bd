/* SPDX-License-Identifier: Apache-2.0 */
/*
 * probe.c - one #include, compiled against one library's usage
 * requirements by the layer tests (tests/layers/CMakeLists.txt): a header
 * the library exports must compile, one of a higher room or of another
 * library's internals must not be found.
 */
#include LKV_PROBE_HEADER

int lkv_layer_probe;
