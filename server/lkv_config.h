/* SPDX-License-Identifier: Apache-2.0 */
/* lkv_config.h - the settings of latticekvd and their one table (config.c). */
#ifndef LKV_CONFIG_H
#define LKV_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "lkv_codec.h"

#define LKV_LISTEN_MAX 16
#define LKV_ADDR_MAX   256

typedef enum lkv_backend_kind {
    LKV_BACKEND_AUTO = 0,
    LKV_BACKEND_CPU = 1,
    LKV_BACKEND_CUDA = 2
} lkv_backend_kind;

typedef struct lkv_config {
    char listen[LKV_LISTEN_MAX][LKV_ADDR_MAX];
    uint32_t n_listen;
    char config_file[LKV_ADDR_MAX];
    uint32_t backend; /* lkv_backend_kind */
    uint64_t host_mem_bytes;
    uint64_t host_high_pct, host_low_pct; /* host tier watermarks, % of host_mem_bytes */
    uint64_t max_message_bytes;
    uint64_t batch_max_vectors;
    uint64_t batch_max_wait_us;
    uint64_t threads;             /* 0: number of cores */
    uint64_t cuda_inline_vectors; /* see lkv_sched_inline_max */
    uint32_t default_variant;     /* lkv_variant */
    uint64_t default_q;
    uint64_t stream_window;
    uint64_t max_key_bytes;       /* longest BlockKey.key / LookupRequest.keys[i] */
    uint64_t max_namespace_bytes; /* longest namespace */
    uint64_t shutdown_grace_ms;
    uint32_t log_level;           /* lkv_log_level */
    uint32_t log_format;          /* lkv_log_format */
    uint64_t unix_socket_mode;    /* permission bits of unix:PATH sockets */
    uint32_t reflection;          /* 1: serve grpc.reflection.v1alpha */
    uint64_t max_inflight_bytes;  /* 0: lkv_inflight_budget's default */
    uint64_t peer_inflight_bytes; /* Push/Pull: coded bytes in flight per transfer */
    /* The tiers (server/stack.c) */
    uint64_t gpu_mem_bytes;             /* 0: no GPU tier; > 0 needs the cuda backend */
    uint64_t gpu_high_pct, gpu_low_pct; /* GPU tier watermarks, % of gpu_mem_bytes */
    char ssd_dir[LKV_ADDR_MAX];         /* "": no SSD tier */
    uint64_t ssd_bytes;
    uint64_t ssd_high_pct, ssd_low_pct;       /* SSD tier watermarks, % of ssd_bytes */
    uint32_t ssd_fsync;                       /* lkv_ssd_fsync */
    char redis[LKV_LISTEN_MAX][LKV_ADDR_MAX]; /* seeds; none: no Redis tier */
    uint32_t n_redis;
    char redis_password_file[LKV_ADDR_MAX];
    uint64_t redis_queue_bytes;
    uint32_t tier_policy;                               /* lkv_tier_policy */
    char namespace_quota[LKV_LISTEN_MAX][LKV_ADDR_MAX]; /* "NS=BYTES" */
    uint32_t n_namespace_quota;
    /* Transport security and tokens (tls.c, auth.c; docs/service.md). */
    char tls_cert[LKV_ADDR_MAX];       /* PEM chain; "" = TCP listeners in plaintext */
    char tls_key[LKV_ADDR_MAX];        /* its private key */
    char tls_client_ca[LKV_ADDR_MAX];  /* "" = no client certificates asked for */
    uint32_t insecure_listen;          /* 1: plaintext TCP on non-loopback addresses allowed */
    char auth_tokens[LKV_ADDR_MAX];    /* token file; "" = no token checks */
    uint32_t auth_unix;                /* 1: unix-socket calls need tokens too */
    char metrics_listen[LKV_ADDR_MAX]; /* host:port of GET /metrics; "": off */
} lkv_config;

/* What lkv_config_load asks the caller to do besides serving. */
typedef enum lkv_config_action {
    LKV_CONFIG_RUN = 0,
    LKV_CONFIG_HELP = 1,
    LKV_CONFIG_VERSION = 2
} lkv_config_action;

/* Looks an environment variable up; getenv in the daemon, a table in tests. */
typedef const char *(*lkv_getenv_fn)(const char *name, void *ud);

/* Fills cfg with the embedded defaults. */
void lkv_config_defaults(lkv_config *cfg);

/*
 * Builds the configuration: defaults, then the config file (--config or
 * LATTICEKV_CONFIG), then LATTICEKV_* variables, then argv[1..]. On an invalid
 * setting returns ERR_INVALID_ARGUMENT and writes one line naming the
 * setting, where it came from and the value into err. *action says whether
 * --help or --version was asked for.
 */
lkv_status lkv_config_load(lkv_config *cfg, int argc, char **argv, lkv_getenv_fn getenv_fn,
                           void *getenv_ud, lkv_config_action *action, char *err, size_t err_cap);

/*
 * Checks the environment (envp: "NAME=value" strings, NULL-terminated) for
 * LATTICEKV_* variables that name no setting (a misspelt
 * LATTICEKV_HOST_MEM would otherwise be ignored without a word). For each
 * one calls warn with a line naming it and the nearest known variable;
 * returns how many there were. They are not errors: the environment is
 * shared with other programs.
 */
size_t lkv_config_check_env(char *const *envp, void (*warn)(const char *msg, void *ud), void *ud);

/* Writes the --help text generated from the table. */
void lkv_config_help(FILE *out);
/* Writes latticekvd(8), the man page, in troff from the same table and text
 * (built by server/gen_man.c at build time). */
void lkv_config_man(FILE *out, const char *version);

/* The host of "host:port" or "[v6]:port" (brackets dropped) into host, cap
 * bytes; returns the port text, or NULL without a ':' or when it does not fit. */
const char *lkv_addr_host(const char *addr, char *host, size_t cap);

/* Parses "64MiB", "4k", "123" into bytes; 0 on success, -1 if malformed. */
int lkv_parse_size(const char *s, uint64_t *out);

#endif
