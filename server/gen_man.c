/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gen_man.c - writes latticekvd(8) at build time from the settings table
 * (config.c), so the man page and --help cannot drift apart. Not installed.
 */
#include <stdio.h>

#include "lkv_codec.h"
#include "lkv_config.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT.8\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "w");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    lkv_config_man(f, lkv_version_string());
    if (fclose(f) != 0) {
        perror(argv[1]);
        return 1;
    }
    return 0;
}
