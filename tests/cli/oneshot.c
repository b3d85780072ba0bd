/* SPDX-License-Identifier: Apache-2.0 */
/*
 * oneshot.c - the codec library's one-shot path on whole files, for the CLI
 * tests: the streaming CLI's bytes must equal these.
 *
 *   lkv_oneshot encode VARIANT Q DIM DTYPE IN OUT [PROFILE [FORMAT]]
 *                                                   (lkv_compress, shape [n, DIM])
 *   lkv_oneshot decode IN OUT [DTYPE]               (lkv_decompress)
 *   lkv_oneshot maxrss PROG ARGS...                 (runs PROG; its peak RSS)
 *
 * DTYPE is the wire number (1 bf16, 2 fp16, 3 fp32), VARIANT 1 E8, 2 D4;
 * PROFILE and FORMAT are lkv_params.profile and .format (default 0: profile
 * 1; profile 2's newest container version).
 *
 * maxrss exists because a process forked from the test's Python inherits
 * Python's peak RSS in ru_maxrss; forked from this small program, PROG's
 * figure is its own. It prints "maxrss_kb=N" as the last line on stderr and
 * exits with PROG's status.
 */
#include "lkv_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static int num(const char *s)
{
    return (int)strtol(s, NULL, 10);
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0)
        return NULL;
    const long n = ftell(f);
    rewind(f);
    unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int spill(const char *path, const void *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    const int bad = !f || fwrite(b, 1, len, f) != len;
    return (f && fclose(f) != 0) || bad;
}

static int maxrss(char **argv)
{
    const pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid)
        return 1;
    fprintf(stderr, "maxrss_kb=%ld\n", ru.ru_maxrss);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

int main(int argc, char **argv)
{
    lkv_diag d;
    if (argc >= 3 && strcmp(argv[1], "maxrss") == 0)
        return maxrss(argv + 2);
    size_t len = 0, out_len = 0;
    if (argc >= 8 && argc <= 10 && strcmp(argv[1], "encode") == 0) {
        const lkv_params p = {(lkv_variant)num(argv[2]), (uint32_t)num(argv[3]),
                              (uint32_t)num(argv[4]), argc >= 9 ? (uint32_t)num(argv[8]) : 0u,
                              argc == 10 ? (uint32_t)num(argv[9]) : 0u};
        const lkv_dtype dt = (lkv_dtype)num(argv[5]);
        unsigned char *src = slurp(argv[6], &len);
        const uint64_t shape[2] = {len / (p.dim * lkv_dtype_size(dt)), p.dim};
        lkv_container_info info;
        if (!src || lkv_container_plan(&p, dt, shape, 2, &info, &d) != LKV_OK) {
            free(src);
            return 1;
        }
        unsigned char *dst = malloc(info.total_bytes);
        int rc = !dst || lkv_compress(&p, dt, shape, 2, src, len, dst, info.total_bytes, &out_len,
                                      LKV_ISA_AUTO, &d) != LKV_OK;
        if (rc)
            fprintf(stderr, "oneshot: %s\n", dst ? d.msg : "out of memory");
        else
            rc = spill(argv[7], dst, out_len);
        free(dst);
        free(src);
        return rc;
    }
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "decode") == 0) {
        unsigned char *src = slurp(argv[2], &len);
        lkv_container_info info;
        if (!src || lkv_container_parse(src, len, &info, &d) != LKV_OK) {
            fprintf(stderr, "oneshot: %s\n", src ? d.msg : "cannot read");
            free(src);
            return 1;
        }
        const int dt = argc == 5 ? num(argv[4]) : (int)info.dtype;
        const size_t cap = (size_t)info.n_vectors * info.params.dim * lkv_dtype_size(dt) + 1;
        unsigned char *dst = malloc(cap);
        int rc = !dst ||
                 lkv_decompress(src, len, dt, dst, cap, &out_len, NULL, LKV_ISA_AUTO, &d) != LKV_OK;
        if (rc)
            fprintf(stderr, "oneshot: %s\n", dst ? d.msg : "out of memory");
        else
            rc = spill(argv[3], dst, out_len);
        free(dst);
        free(src);
        return rc;
    }
    fputs("usage: lkv_oneshot encode VARIANT Q DIM DTYPE IN OUT [PROFILE [FORMAT]] | decode IN OUT "
          "[DTYPE]\n",
          stderr);
    return 2;
}
