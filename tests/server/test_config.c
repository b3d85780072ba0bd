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

Test(config, inline_batch_limit_per_backend)
{
    lkv_config c;
    char err[256] = "";
    cr_assert_eq(load(&c, NULL, err, 1), LKV_OK, "%s", err);
    cr_assert_eq(lkv_inline_max_vectors(&c, "cpu"), LKV_INLINE_MAX_VECTORS);
    cr_assert_eq(lkv_inline_max_vectors(&c, "cuda"), 256);
    cr_assert_eq(load(&c, NULL, err, 3, "--cuda-inline-vectors", "1024"), LKV_OK, "%s", err);
    cr_assert_eq(lkv_inline_max_vectors(&c, "cuda"), 1024);
    cr_assert_eq(lkv_inline_max_vectors(&c, "cpu"), LKV_INLINE_MAX_VECTORS,
                 "the setting is the cuda backend's only");
    cr_assert_eq(load(&c, NULL, err, 3, "--cuda-inline-vectors", "0"), LKV_OK, "%s", err);
    cr_assert_eq(lkv_inline_max_vectors(&c, "cuda"), 0, "0: every batch goes to the GPU");
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
