/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_config.c - libFuzzer target for latticekvd's config-file reader
 * (server/config.c, `--config FILE`): an operator's file, but bytes the
 * daemon must never crash on, whatever they are.
 *
 * The input is the file's content, handed to lkv_config_load through a
 * memfd (/proc/self/fd/N), exactly as the daemon reads a file. Every input
 * must load or fail with ERR_INVALID_ARGUMENT and a one-line message; a
 * loaded configuration must hold only values its table allows (bounded
 * lists, NUL-terminated strings, choices in range), and loading the same
 * file twice gives the same answer and configuration (reading is
 * deterministic, no state leaks from one load to the next).
 */
#define _GNU_SOURCE /* memfd_create */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lkv_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lkv_status load(int fd, lkv_config *cfg, char *err, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    char *argv[] = {"latticekvd", "--config", path, NULL};
    lkv_config_action action;
    return lkv_config_load(cfg, 3, argv, NULL, NULL, &action, err, cap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const int fd = memfd_create("lkv-fuzz-config", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    static lkv_config a, b;
    char err[512], err2[512];
    err[0] = err2[0] = '\0';
    const lkv_status st = load(fd, &a, err, sizeof err);
    const lkv_status st2 = load(fd, &b, err2, sizeof err2);
    close(fd);
    if (st != st2 || strcmp(err, err2) != 0)
        abort(); /* the same file read twice must give the same answer */
    if (st != LKV_OK) {
        if (st != LKV_ERR_INVALID_ARGUMENT || err[0] == '\0' || strchr(err, '\n'))
            abort();
        return 0;
    }
    if (a.n_listen != b.n_listen || a.host_mem_bytes != b.host_mem_bytes ||
        a.max_message_bytes != b.max_message_bytes || a.backend != b.backend ||
        memcmp(a.listen, b.listen, sizeof a.listen) != 0 ||
        strcmp(a.metrics_listen, b.metrics_listen) != 0)
        abort();
    if (a.n_listen > LKV_LISTEN_MAX || a.backend > LKV_BACKEND_CUDA || a.default_q < LKV_Q_MIN ||
        a.default_q > LKV_Q_MAX || a.batch_max_vectors == 0 || a.unix_socket_mode > 0777 ||
        a.reflection > 1)
        abort();
    for (uint32_t i = 0; i < a.n_listen; i++)
        if (!memchr(a.listen[i], 0, sizeof a.listen[i]) || a.listen[i][0] == '\0')
            abort();
    if (!memchr(a.metrics_listen, 0, sizeof a.metrics_listen))
        abort();
    return 0;
}
