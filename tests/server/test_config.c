/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_config.c - the declarative settings table: defaults, flags, the
 * environment, the config file, precedence and bound errors.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lkv_server.h"

/* A fake environment: NULL-terminated name/value pairs. */
static const char *fake_env(const char *name, void *ud)
{
    const char *const *kv = ud;
    for (; kv && kv[0]; kv += 2)
        if (strcmp(kv[0], name) == 0)
            return kv[1];
    return NULL;
}

static lkv_status load(lkv_config *cfg, const char *const *env, char *err, int argc, ...)
{
    char *argv[32] = {"latticekvd"};
    va_list ap;
    va_start(ap, argc);
    for (int i = 1; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    lkv_config_action action;
    return lkv_config_load(cfg, argc, argv, fake_env, (void *)env, &action, err, 256);
}

Test(config, defaults_run_without_configuration)
{
    lkv_config c;
    char err[256] = "";
    cr_assert_eq(load(&c, NULL, err, 1), LKV_OK, "%s", err);
    cr_assert_eq(c.n_listen, 2);
    cr_assert_str_eq(c.listen[0], "127.0.0.1:50051");
    cr_assert_str_eq(c.listen[1], "unix:/tmp/latticekvd.sock");
    cr_assert_eq(c.host_mem_bytes, 1ull << 30);
    cr_assert_eq(c.max_message_bytes, 64ull << 20);
    cr_assert_eq(c.batch_max_vectors, 4096);
    cr_assert_eq(c.batch_max_wait_us, 200);
    cr_assert_eq(c.default_q, 38);
    cr_assert_eq(c.default_variant, LKV_VARIANT_E8);
    cr_assert_eq(c.backend, LKV_BACKEND_AUTO);
    cr_assert_eq(c.cuda_inline_vectors, 256);
}

Test(config, flags_both_forms_and_repeatable_listen_replaces_default)
{
    lkv_config c;
    char err[256] = "";
    cr_assert_eq(load(&c, NULL, err, 8, "--listen", "127.0.0.1:7001", "--listen=unix:/tmp/a.sock",
                      "--host-mem-bytes=64MiB", "--backend", "cpu", "--default-variant=D4"),
                 LKV_OK, "%s", err);
    cr_assert_eq(c.n_listen, 2);
    cr_assert_str_eq(c.listen[0], "127.0.0.1:7001");
    cr_assert_str_eq(c.listen[1], "unix:/tmp/a.sock");
    cr_assert_eq(c.host_mem_bytes, 64ull << 20);
    cr_assert_eq(c.backend, LKV_BACKEND_CPU);
    cr_assert_eq(c.default_variant, LKV_VARIANT_D4);
}

Test(config, environment_and_flag_precedence)
{
    const char *env[] = {"LATTICEKV_BATCH_MAX_VECTORS",
                         "128",
                         "LATTICEKV_BATCH_MAX_WAIT_US",
                         "0",
                         "LATTICEKV_LISTEN",
                         "127.0.0.1:1, unix:/tmp/b.sock",
                         NULL};
    lkv_config c;
    char err[256] = "";
    cr_assert_eq(load(&c, env, err, 4, "--batch-max-vectors", "256", "--cuda-inline-vectors=0"),
                 LKV_OK, "%s", err);
    cr_assert_eq(c.cuda_inline_vectors, 0);
    cr_assert_eq(c.batch_max_vectors, 256, "the flag wins over the environment");
    cr_assert_eq(c.batch_max_wait_us, 0);
    cr_assert_eq(c.n_listen, 2);
    cr_assert_str_eq(c.listen[0], "127.0.0.1:1");
    cr_assert_str_eq(c.listen[1], "unix:/tmp/b.sock");
}

static char *write_file(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/lkv_cfg_test_%d.conf", (int)getpid());
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

Test(config, file_is_below_environment_and_flags)
{
    char *path = write_file("# comment\n"
                            "host_mem_bytes = 2G   # trailing comment\n"
                            "default-q=76\n"
                            "\n"
                            "listen = 127.0.0.1:9\n"
                            "listen = 127.0.0.1:10\n"
                            "threads = 3\n");
    const char *env[] = {"LATTICEKV_DEFAULT_Q", "19", NULL};
    lkv_config c;
    char err[256] = "";
    cr_assert_eq(load(&c, env, err, 5, "--config", path, "--threads", "1"), LKV_OK, "%s", err);
    unlink(path);
    cr_assert_eq(c.host_mem_bytes, 2ull << 30);
    cr_assert_eq(c.default_q, 19, "environment wins over the file");
    cr_assert_eq(c.threads, 1, "flag wins over the file");
    cr_assert_eq(c.n_listen, 2, "repeated file keys append within the file");
    cr_assert_str_eq(c.listen[1], "127.0.0.1:10");
    cr_assert_str_eq(c.config_file, path);
}

Test(config, errors_name_setting_origin_and_value)
{
    lkv_config c;
    char err[256] = "";
    cr_assert_eq(load(&c, NULL, err, 3, "--batch-max-vectors", "0"), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "--batch-max-vectors=0") && strstr(err, "1..16777216"), "%s", err);

    const char *env[] = {"LATTICEKV_DEFAULT_Q", "2000", NULL};
    cr_assert_eq(load(&c, env, err, 1), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "LATTICEKV_DEFAULT_Q=2000") && strstr(err, "1..1023"), "%s", err);

    char *path = write_file("threads = 2\nmax-message-bytes = lots\n");
    char flag[128];
    snprintf(flag, sizeof flag, "--config=%s", path);
    cr_assert_eq(load(&c, NULL, err, 2, flag), LKV_ERR_INVALID_ARGUMENT);
    unlink(path);
    cr_assert(strstr(err, ":2: max-message-bytes=lots"), "%s", err);

    cr_assert_eq(load(&c, NULL, err, 3, "--backend", "tpu"), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "--backend=tpu") && strstr(err, "auto|cpu|cuda"), "%s", err);
    cr_assert_eq(load(&c, NULL, err, 3, "--cuda-inline-vectors", "5000"), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "--cuda-inline-vectors=5000") && strstr(err, "0..4096"), "%s", err);
    cr_assert_eq(load(&c, NULL, err, 2, "--frobnicate"), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "--frobnicate"), "%s", err);
    cr_assert_eq(load(&c, NULL, err, 2, "--threads"), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "needs a value"), "%s", err);
    cr_assert_eq(load(&c, NULL, err, 3, "--listen", "nohostport"), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "nohostport"), "%s", err);
    cr_assert_eq(load(&c, NULL, err, 3, "--listen", "127.0.0.1:70000"), LKV_ERR_INVALID_ARGUMENT);
    cr_assert_eq(load(&c, NULL, err, 3, "--host-mem-bytes", "12Q"), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "--host-mem-bytes=12Q"), "%s", err);
}

Test(config, missing_config_file_is_an_error)
{
    lkv_config c;
    char err[256] = "";
    cr_assert_eq(load(&c, NULL, err, 3, "--config", "/nonexistent/lkv.conf"),
                 LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "/nonexistent/lkv.conf"), "%s", err);
}

Test(config, help_and_version_actions)
{
    lkv_config c;
    char err[256];
    char *argv[] = {"latticekvd", "--threads", "2", "--help"};
    lkv_config_action a;
    cr_assert_eq(lkv_config_load(&c, 4, argv, fake_env, NULL, &a, err, sizeof err), LKV_OK);
    cr_assert_eq(a, LKV_CONFIG_HELP);
    char *argv2[] = {"latticekvd", "--version"};
    cr_assert_eq(lkv_config_load(&c, 2, argv2, fake_env, NULL, &a, err, sizeof err), LKV_OK);
    cr_assert_eq(a, LKV_CONFIG_VERSION);
}

Test(config, help_lists_every_flag_with_env_and_default)
{
    char buf[8192];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    lkv_config_help(f);
    fclose(f);
    const char *flags[] = {"--listen ADDR",
                           "--config FILE",
                           "--backend auto|cpu|cuda",
                           "--host-mem-bytes N",
                           "--max-message-bytes N",
                           "--batch-max-vectors N",
                           "--batch-max-wait-us N",
                           "--threads N",
                           "--cuda-inline-vectors N",
                           "--default-q N",
                           "LATTICEKV_HOST_MEM_BYTES",
                           "default 64MiB"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        cr_assert(strstr(buf, flags[i]), "help lacks %s", flags[i]);
}

Test(config, parse_size_suffixes)
{
    uint64_t v;
    cr_assert_eq(lkv_parse_size("4096", &v), 0);
    cr_assert_eq(v, 4096);
    cr_assert_eq(lkv_parse_size("64MiB", &v), 0);
    cr_assert_eq(v, 64ull << 20);
    cr_assert_eq(lkv_parse_size("2g", &v), 0);
    cr_assert_eq(v, 2ull << 30);
    cr_assert_eq(lkv_parse_size("1T", &v), 0);
    cr_assert_eq(v, 1ull << 40);
    cr_assert_eq(lkv_parse_size("-1", &v), -1);
    cr_assert_eq(lkv_parse_size("1X", &v), -1);
    cr_assert_eq(lkv_parse_size("", &v), -1);
    cr_assert_eq(lkv_parse_size("99999999999999999999T", &v), -1);
}

Test(config, one_naming_rule_for_keys_and_flags)
{
    /* A key is the flag's name; '_' may stand for '-'; nothing else. */
    char *path = write_file("batch_max_wait_us = 7\nlog-level = debug\n");
    lkv_config c;
    char err[256] = "";
    cr_assert_eq(load(&c, NULL, err, 3, "--config", path), LKV_OK, "%s", err);
    cr_assert_eq(c.batch_max_wait_us, 7);
    cr_assert_eq(c.log_level, LKV_LOG_DEBUG);
    cr_assert_eq(load(&c, NULL, err, 3, "--batch_max_vectors", "9"), LKV_OK, "%s", err);
    cr_assert_eq(c.batch_max_vectors, 9, "flags follow the same rule");

    const char *bad[][2] = {{"batchmaxwaitus = 1\n", "\"batch-max-wait-us\""},
                            {"Log-Level = warn\n", "\"log-level\""},
                            {"host-mem = 1G\n", "\"host-mem-bytes\""},
                            {"thraeds = 2\n", "\"threads\""}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        path = write_file(bad[i][0]);
        cr_assert_eq(load(&c, NULL, err, 3, "--config", path), LKV_ERR_INVALID_ARGUMENT,
                     "%s was accepted", bad[i][0]);
        cr_assert(strstr(err, ":1: unknown setting") && strstr(err, bad[i][1]),
                  "%s -> %s (wants the nearest %s)", bad[i][0], err, bad[i][1]);
    }
    unlink(path);
    cr_assert_eq(load(&c, NULL, err, 3, "--host-mem", "1G"), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "--host-mem-bytes"), "%s", err);
}

static void collect(const char *msg, void *ud)
{
    char *buf = ud;
    strncat(buf, msg, 1023 - strlen(buf));
    strncat(buf, "\n", 1023 - strlen(buf));
}

Test(config, unknown_environment_variables_are_named_with_the_nearest)
{
    char *envp[] = {"PATH=/bin",
                    "LATTICEKV_HOST_MEM_BYTES=1G",
                    "LATTICEKV_CONFIG=/etc/lkv.conf",
                    "LATTICEKV_HOST_MEM=1G",
                    "LATTICEKV_BATCH_MAX_WAIT=5",
                    "LATTICEKV_LOGLEVEL=debug",
                    NULL};
    char buf[1024] = "";
    cr_assert_eq(lkv_config_check_env(envp, collect, buf), 3, "%s", buf);
    cr_assert(strstr(buf, "LATTICEKV_HOST_MEM is not") &&
                  strstr(buf, "did you mean LATTICEKV_HOST_MEM_BYTES?"),
              "%s", buf);
    cr_assert(strstr(buf, "did you mean LATTICEKV_BATCH_MAX_WAIT_US?"), "%s", buf);
    cr_assert(strstr(buf, "did you mean LATTICEKV_LOG_LEVEL?"), "%s", buf);
    cr_assert_null(strstr(buf, "PATH"), "%s", buf);
    cr_assert_null(strstr(buf, "LATTICEKV_CONFIG is"), "%s", buf);
}

Test(config, unix_socket_mode_and_log_format)
{
    lkv_config c;
    char err[256] = "";
    cr_assert_eq(load(&c, NULL, err, 1), LKV_OK, "%s", err);
    cr_assert_eq(c.unix_socket_mode, 0660);
    cr_assert_eq(c.log_format, LKV_LOG_FORMAT_KV);
    const char *env[] = {"LATTICEKV_UNIX_SOCKET_MODE", "600", "LATTICEKV_LOG_FORMAT", "json", NULL};
    cr_assert_eq(load(&c, env, err, 1), LKV_OK, "%s", err);
    cr_assert_eq(c.unix_socket_mode, 0600);
    cr_assert_eq(c.log_format, LKV_LOG_FORMAT_JSON);
    const char *bad[] = {"0680", "1777", "rw", "-1", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(load(&c, NULL, err, 3, "--unix-socket-mode", bad[i]), LKV_ERR_INVALID_ARGUMENT,
                     "%s accepted", bad[i]);
        cr_assert(strstr(err, "--unix-socket-mode=") && strstr(err, "0..0777"), "%s", err);
    }
    cr_assert_eq(load(&c, NULL, err, 3, "--log-format", "xml"), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "--log-format=xml") && strstr(err, "kv|json"), "%s", err);
}

Test(config, an_address_listed_twice_is_named)
{
    lkv_config c;
    char err[256] = "";
    cr_assert_eq(
        load(&c, NULL, err, 5, "--listen", "unix:/tmp/a.sock", "--listen", "unix:/tmp/a.sock"),
        LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "--listen=unix:/tmp/a.sock is listed twice"), "%s", err);
    cr_assert_eq(load(&c, NULL, err, 3, "--listen", "127.0.0.1:7001,127.0.0.1:7001"),
                 LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "127.0.0.1:7001 is listed twice"), "%s", err);
    /* A later layer replaces the list: the default is not a duplicate of a flag. */
    cr_assert_eq(load(&c, NULL, err, 3, "--listen", "127.0.0.1:50051"), LKV_OK, "%s", err);
    cr_assert_eq(c.n_listen, 1);
}

Test(config, tier_flags_parse_and_default)
{
    lkv_config c;
    char err[256] = "";
    cr_assert_eq(load(&c, NULL, err, 1), LKV_OK, "%s", err);
    cr_assert_str_eq(c.ssd_dir, "");
    cr_assert_eq(c.ssd_fsync, 0, "never: write + rename reach the kernel before the reply");
    cr_assert_eq(c.n_redis, 0);
    cr_assert_eq(c.tier_policy, 0, "write-through");
    cr_assert_eq(c.n_namespace_quota, 0);
    cr_assert_eq(load(&c, NULL, err, 15, "--ssd-dir", "/tmp", "--ssd-bytes", "1GiB", "--ssd-fsync",
                      "batch", "--redis", "redis://127.0.0.1:6379", "--redis=redis://[::1]:7000",
                      "--tier-policy", "write-back", "--namespace-quota", "a=1MiB",
                      "--namespace-quota=b=2"),
                 LKV_OK, "%s", err);
    cr_assert_str_eq(c.ssd_dir, "/tmp");
    cr_assert_eq(c.ssd_bytes, 1ull << 30);
    cr_assert_eq(c.ssd_fsync, 1);
    cr_assert_eq(c.n_redis, 2);
    cr_assert_str_eq(c.redis[1], "redis://[::1]:7000");
    cr_assert_eq(c.tier_policy, 1);
    cr_assert_eq(c.n_namespace_quota, 2);
    cr_assert_str_eq(c.namespace_quota[0], "a=1MiB");
}

Test(config, tier_flags_bad_values_are_named)
{
    lkv_config c;
    char err[256] = "";
    static const struct {
        const char *flag, *value, *named;
    } bad[] = {
        {"--ssd-fsync", "sometimes", "never|batch|always"},
        {"--ssd-bytes", "lots", "--ssd-bytes=lots"},
        {"--redis", "http://127.0.0.1:1", "redis://HOST:PORT"},
        {"--redis", "redis://127.0.0.1", "redis://HOST:PORT"},
        {"--redis", "redis://u:p@127.0.0.1:1", "redis://HOST:PORT"},
        {"--redis", "redis://127.0.0.1:0", "redis://HOST:PORT"},
        {"--tier-policy", "write-around", "write-through|write-back"},
        {"--namespace-quota", "llama", "NS=BYTES"},
        {"--namespace-quota", "llama=0", "NS=BYTES"},
        {"--namespace-quota", "llama=big", "NS=BYTES"},
        {"--redis-queue-bytes", "0", "--redis-queue-bytes=0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(load(&c, NULL, err, 3, bad[i].flag, bad[i].value), LKV_ERR_INVALID_ARGUMENT,
                     "%s %s", bad[i].flag, bad[i].value);
        cr_assert(strstr(err, bad[i].named) && strstr(err, bad[i].value), "%s", err);
    }
    cr_assert_eq(load(&c, NULL, err, 3, "--ssd-dir", "/tmp"), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "--ssd-dir=/tmp needs --ssd-bytes"), "%s", err);
    cr_assert_eq(load(&c, NULL, err, 3, "--ssd-bytes", "1MiB"), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "without --ssd-dir"), "%s", err);
}

Test(config, plaintext_tcp_off_loopback_needs_insecure_listen)
{
    lkv_config c;
    char err[256];
    static const char *const local[] = {"127.0.0.1:1", "127.9.9.9:1",      "[::1]:1",
                                        "localhost:1", "unix:/tmp/x.sock", "unix-abstract:x"};
    for (size_t i = 0; i < sizeof local / sizeof local[0]; i++)
        cr_assert_eq(load(&c, NULL, err, 3, "--listen", local[i]), LKV_OK, "%s: %s", local[i], err);
    static const char *const open_addrs[] = {"0.0.0.0:50051", "[::]:1", "10.0.0.1:1",
                                             "example.com:1", "[::ffff:10.0.0.1]:1"};
    for (size_t i = 0; i < sizeof open_addrs / sizeof open_addrs[0]; i++) {
        cr_assert_eq(load(&c, NULL, err, 3, "--listen", open_addrs[i]), LKV_ERR_INVALID_ARGUMENT,
                     "%s", open_addrs[i]);
        cr_assert(strstr(err, open_addrs[i]) && strstr(err, "insecure-listen=on") &&
                      strstr(err, "tls-cert"),
                  "%s", err);
        cr_assert_eq(load(&c, NULL, err, 5, "--listen", open_addrs[i], "--insecure-listen", "on"),
                     LKV_OK, "%s", err);
        cr_assert_eq(c.insecure_listen, 1);
        cr_assert_eq(load(&c, NULL, err, 7, "--listen", open_addrs[i], "--tls-cert", "a.crt",
                          "--tls-key", "a.key"),
                     LKV_OK, "%s", err);
    }
}

Test(config, tls_settings_go_together)
{
    lkv_config c;
    char err[256];
    cr_assert_eq(load(&c, NULL, err, 3, "--tls-cert", "a.crt"), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "tls-cert is set without tls-key"), "%s", err);
    cr_assert_eq(load(&c, NULL, err, 3, "--tls-key", "a.key"), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "tls-key is set without tls-cert"), "%s", err);
    cr_assert_eq(load(&c, NULL, err, 3, "--tls-client-ca", "ca.crt"), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err, "tls-client-ca=ca.crt needs tls-cert"), "%s", err);
    const char *env[] = {"LATTICEKV_AUTH_TOKENS", "/etc/t", "LATTICEKV_AUTH_UNIX", "off", NULL};
    cr_assert_eq(load(&c, env, err, 1), LKV_OK, "%s", err);
    cr_assert_str_eq(c.auth_tokens, "/etc/t");
    cr_assert_eq(c.auth_unix, 0);
    cr_assert_eq(load(&c, NULL, err, 1), LKV_OK, "%s", err);
    cr_assert_eq(c.auth_unix, 1, "tokens apply to unix sockets unless turned off");
    cr_assert_str_eq(c.auth_tokens, "");
}
