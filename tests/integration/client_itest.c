/* SPDX-License-Identifier: Apache-2.0 */
/*
 * client_itest.c - the C client (lkv_client.h) against a running latticekvd.
 *
 * Usage: lkv_client_itest --addr ADDR. The pytest suite starts the daemon
 * and runs this program once per transport (TCP and unix socket). Expected
 * values come from the codec library linked here: the daemon's containers
 * and reconstructions must equal lkv_compress / lkv_decompress byte for
 * byte. Prints one line per failed check and exits 1 if there was any.
 *
 * Hang check: lkv_client_itest --addr ADDR --hang-check TIMEOUT KEEPALIVE
 * EXPECT WITHIN_MS [CALLS] connects (TIMEOUT: ms, 0 = the library default,
 * "none" = no deadline; KEEPALIVE: ms, 0 = default; keepalive pings time out
 * after 1 s when KEEPALIVE is set), prints "ready", waits for a line on stdin
 * (the test stops the daemon with SIGSTOP meanwhile) and then makes CALLS
 * calls (default: all five kinds below) that must each end with the code
 * EXPECT (e.g. DEADLINE_EXCEEDED) within WITHIN_MS.
 *
 * TLS and tokens: every client this program makes uses the environment's
 * LKV_ITEST_TLS_CA, LKV_ITEST_TLS_CERT, LKV_ITEST_TLS_KEY and
 * LKV_ITEST_TOKEN when set (lkv_client_options). Auth check:
 * lkv_client_itest --addr ADDR --auth-check NS EXPECT STATS_EXPECT makes a
 * Put, Get, Lookup and Delete in namespace NS that must each end with code
 * EXPECT (OK, UNAUTHENTICATED, PERMISSION_DENIED, ...; a PERMISSION_DENIED
 * message must name NS), an Admin/Stats that must end with STATS_EXPECT,
 * and a health check that must succeed whatever the token.
 */
#include "lkv_client.h"
#include "lkv_codec.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            failures++;                                                     \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
        }                                                                   \
    } while (0)

static const char *addr;

/* The environment's TLS files and token (see the top of the file). */
static void security_options(lkv_client_options *o)
{
    o->tls_ca_file = getenv("LKV_ITEST_TLS_CA");
    o->tls_cert_file = getenv("LKV_ITEST_TLS_CERT");
    o->tls_key_file = getenv("LKV_ITEST_TLS_KEY");
    o->token = getenv("LKV_ITEST_TOKEN");
}

static lkv_client *open_client(int own)
{
    lkv_client_options o = {.timeout_ms = 120000, .own_connection = own, .wait_for_ready = 1};
    security_options(&o);
    lkv_client *c = NULL;
    lkv_client_error e;
    const int rc = lkv_client_create(addr, &o, &c, &e);
    CHECK(rc == LKV_RPC_OK, "create: %s", e.msg);
    return c;
}

/* Deterministic pseudo-random values in [-4, 4) of dtype dt. */
static void fill(void *dst, lkv_dtype dt, size_t n, uint32_t seed)
{
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        const float f = ((float)(s >> 8) / 16777216.0f - 0.5f) * 8.0f;
        if (dt == LKV_DTYPE_FP32)
            ((float *)dst)[i] = f;
        else if (dt == LKV_DTYPE_FP16)
            ((uint16_t *)dst)[i] = lkv_f32_to_f16(f);
        else
            ((uint16_t *)dst)[i] = lkv_f32_to_bf16(f);
    }
}

static lkv_key key_of(const char *s)
{
    return (lkv_key){s, strlen(s)};
}

/* Compress/Decompress/Put/Get of one tensor against the local codec. */
static void roundtrip(lkv_client *c, lkv_dtype dt, lkv_variant v, uint32_t q, uint32_t dim)
{
    const uint64_t shape[3] = {2, 5, dim};
    const size_t n = 10 * (size_t)dim, bytes = n * lkv_dtype_size(dt);
    void *src = malloc(bytes);
    fill(src, dt, n, q * 31 + dim + (uint32_t)dt);
    const lkv_params p = {v, q, dim};

    lkv_container_info info;
    lkv_container_plan(&p, dt, shape, 3, &info, NULL);
    void *local = malloc(info.total_bytes);
    void *local_dec = malloc(bytes);
    size_t local_len = 0, dec_len = 0;
    CHECK(lkv_compress(&p, dt, shape, 3, src, bytes, local, info.total_bytes, &local_len,
                       LKV_ISA_AUTO, NULL) == LKV_OK,
          "local compress");
    CHECK(lkv_decompress(local, local_len, 0, local_dec, bytes, &dec_len, NULL, LKV_ISA_AUTO,
                         NULL) == LKV_OK,
          "local decompress");

    lkv_tensor t = {
        .dtype = (int)dt, .ndim = 3, .shape = {2, 5, dim}, .data = src, .data_bytes = bytes};
    const lkv_client_params cp = {(int)v, q};
    lkv_buf coded = {0};
    lkv_compress_info ci = {0};
    lkv_client_error e;
    int rc = lkv_client_compress(c, &t, &cp, &coded, &ci, &e);
    CHECK(rc == LKV_RPC_OK, "compress %s %s q=%u dim=%u: %s", lkv_dtype_name(dt),
          lkv_variant_name(v), q, dim, e.msg);
    CHECK(coded.len == local_len && memcmp(coded.data, local, local_len) == 0,
          "daemon container differs from lkv_compress (%s %s q=%u dim=%u)", lkv_dtype_name(dt),
          lkv_variant_name(v), q, dim);
    CHECK(ci.coded_bytes == local_len && ci.raw_bytes == bytes &&
              ci.bits_per_vector == lkv_bits_per_vector(&p),
          "compress info %llu %llu %u", (unsigned long long)ci.coded_bytes,
          (unsigned long long)ci.raw_bytes, ci.bits_per_vector);

    lkv_tensor out = {0};
    rc = lkv_client_decompress(c, local, local_len, 0, &out, &e);
    CHECK(rc == LKV_RPC_OK, "decompress: %s", e.msg);
    CHECK(out.dtype == (int)dt && out.ndim == 3 && out.shape[2] == dim && out.data_bytes == bytes &&
              memcmp(out.data, local_dec, bytes) == 0,
          "daemon reconstruction differs from lkv_decompress");
    lkv_tensor_clear(&out);

    char key[64];
    snprintf(key, sizeof key, "c-%d-%d-%u-%u", (int)dt, (int)v, q, dim);
    uint64_t stored = 0;
    rc = lkv_client_put(c, "c-itest", key_of(key), &t, &cp, &stored, &e);
    CHECK(rc == LKV_RPC_OK && stored == local_len, "put: %s (stored %llu)", e.msg,
          (unsigned long long)stored);
    char tier[LKV_CLIENT_TIER_MAX];
    rc = lkv_client_get(c, "c-itest", key_of(key), 0, &out, tier, &e);
    CHECK(rc == LKV_RPC_OK && out.data_bytes == bytes && memcmp(out.data, local_dec, bytes) == 0,
          "get: %s", e.msg);
    lkv_tensor_clear(&out);
    lkv_buf back = {0};
    rc = lkv_client_get_coded(c, "c-itest", key_of(key), &back, &e);
    CHECK(rc == LKV_RPC_OK && back.len == local_len && memcmp(back.data, local, local_len) == 0,
          "get_coded: %s", e.msg);
    lkv_buf_clear(&back);
    lkv_buf_clear(&coded);
    free(src), free(local), free(local_dec);
}

static void semantics(lkv_client *c)
{
    lkv_client_error e;
    float data[4 * 64];
    fill(data, LKV_DTYPE_FP32, 4 * 64, 5);
    lkv_tensor t = {.dtype = LKV_DTYPE_FP32,
                    .ndim = 2,
                    .shape = {4, 64},
                    .data = data,
                    .data_bytes = sizeof data};
    const lkv_key keys[4] = {key_of("s0"), key_of("s1"), key_of("s2"), key_of("s3")};
    for (int i = 0; i < 4; i++) {
        if (i == 2)
            continue;
        CHECK(lkv_client_put(c, "c-sem", keys[i], &t, NULL, NULL, &e) == 0, "put: %s", e.msg);
    }
    uint32_t hits = 99;
    uint8_t present[4];
    CHECK(lkv_client_lookup(c, "c-sem", keys, 4, &hits, present, &e) == 0, "lookup: %s", e.msg);
    CHECK(hits == 2 && present[0] && present[1] && !present[2] && present[3],
          "lookup: hits=%u present=%d%d%d%d", hits, present[0], present[1], present[2], present[3]);
    int deleted = -1;
    CHECK(lkv_client_delete(c, "c-sem", keys[0], &deleted, &e) == 0 && deleted == 1, "delete");
    CHECK(lkv_client_delete(c, "c-sem", keys[0], &deleted, &e) == 0 && deleted == 0,
          "delete again");
    lkv_tensor out;
    int rc = lkv_client_get(c, "c-sem", keys[0], 0, &out, NULL, &e);
    CHECK(rc == LKV_RPC_NOT_FOUND && e.code == rc && e.msg[0], "get deleted: %s %s",
          lkv_rpc_code_name(rc), e.msg);
    CHECK(out.data == NULL && out.data_bytes == 0, "no output on failure");

    /* Bad input: the daemon's code and a message naming the value. */
    float bad[2 * 90] = {0};
    lkv_tensor tb = {.dtype = LKV_DTYPE_FP32,
                     .ndim = 2,
                     .shape = {2, 90},
                     .data = bad,
                     .data_bytes = sizeof bad};
    lkv_buf coded;
    rc = lkv_client_compress(c, &tb, NULL, &coded, NULL, &e);
    CHECK(rc == LKV_RPC_INVALID_ARGUMENT && strstr(e.msg, "90"), "head_dim 90: %s %s",
          lkv_rpc_code_name(rc), e.msg);
    data[7] = NAN;
    rc = lkv_client_put(c, "c-sem", keys[1], &t, NULL, NULL, &e);
    CHECK(rc == LKV_RPC_INVALID_ARGUMENT, "NaN: %s %s", lkv_rpc_code_name(rc), e.msg);
    data[7] = 0.0f;
    const lkv_client_params q0 = {LKV_VARIANT_E8, 1024};
    rc = lkv_client_put(c, "c-sem", keys[1], &t, &q0, NULL, &e);
    CHECK(rc == LKV_RPC_INVALID_ARGUMENT && strstr(e.msg, "1024"), "q 1024: %s %s",
          lkv_rpc_code_name(rc), e.msg);

    /* A corrupted container: DATA_LOSS, and the key keeps its value. */
    lkv_buf good = {0};
    CHECK(lkv_client_get_coded(c, "c-sem", keys[1], &good, &e) == 0, "get_coded: %s", e.msg);
    if (good.len > 8) {
        unsigned char *mangled = malloc(good.len);
        memcpy(mangled, good.data, good.len);
        mangled[good.len - 3] ^= 0x10;
        rc = lkv_client_put_coded(c, "c-sem", keys[1], mangled, good.len, NULL, &e);
        CHECK(rc == LKV_RPC_DATA_LOSS, "corrupt put: %s %s", lkv_rpc_code_name(rc), e.msg);
        rc = lkv_client_decompress(c, mangled, good.len - 1, 0, &out, &e);
        CHECK(rc == LKV_RPC_DATA_LOSS, "truncated decompress: %s %s", lkv_rpc_code_name(rc), e.msg);
        lkv_buf after = {0};
        CHECK(lkv_client_get_coded(c, "c-sem", keys[1], &after, &e) == 0 && after.len == good.len &&
                  memcmp(after.data, good.data, good.len) == 0,
              "the failed Put changed the stored value");
        lkv_buf_clear(&after);
        free(mangled);
    }
    lkv_buf_clear(&good);

    lkv_client_stats st;
    CHECK(lkv_client_stats_get(c, &st, &e) == 0, "stats: %s", e.msg);
    CHECK(strcmp(st.backend, "cpu") == 0 && st.requests > 0 && st.errors > 0,
          "stats backend=%s requests=%llu errors=%llu", st.backend, (unsigned long long)st.requests,
          (unsigned long long)st.errors);
    lkv_client_stats_clear(&st);
}

/* PutStream / GetStream through put_many / get_many, against the local codec. */
static void streams(lkv_client *c)
{
    enum { N = 24, ELEMS = 2 * 4 * 8 * 128 };
    static uint16_t data[N][ELEMS];
    lkv_tensor t[N];
    lkv_key keys[N];
    char names[N][16];
    for (int i = 0; i < N; i++) {
        fill(data[i], LKV_DTYPE_BF16, ELEMS, 500u + (uint32_t)i);
        t[i] = (lkv_tensor){.dtype = LKV_DTYPE_BF16,
                            .ndim = 4,
                            .shape = {2, 4, 8, 128},
                            .data = data[i],
                            .data_bytes = sizeof data[i]};
        snprintf(names[i], sizeof names[i], "m-%d", i);
        keys[i] = key_of(names[i]);
    }
    uint64_t sizes[N];
    size_t done = 0;
    lkv_client_error e;
    int rc = lkv_client_put_many(c, "c-many", keys, t, N, NULL, sizes, &done, &e);
    CHECK(rc == LKV_RPC_OK && done == N, "put_many: %s (%zu done)", e.msg, done);
    const lkv_params p = {LKV_VARIANT_E8, 38, 128};
    const uint64_t shape[4] = {2, 4, 8, 128};
    static unsigned char local[16384];
    static uint16_t local_dec[ELEMS];
    lkv_tensor out[N];
    rc = lkv_client_get_many(c, "c-many", keys, N, 0, out, &done, &e);
    CHECK(rc == LKV_RPC_OK && done == N, "get_many: %s (%zu done)", e.msg, done);
    for (int i = 0; i < N; i++) {
        size_t len = 0, dlen = 0;
        lkv_compress(&p, LKV_DTYPE_BF16, shape, 4, data[i], sizeof data[i], local, sizeof local,
                     &len, LKV_ISA_AUTO, NULL);
        lkv_decompress(local, len, 0, local_dec, sizeof local_dec, &dlen, NULL, LKV_ISA_AUTO, NULL);
        CHECK(sizes[i] == len, "put_many size %d: %llu vs %zu", i, (unsigned long long)sizes[i],
              len);
        CHECK(out[i].data_bytes == sizeof local_dec &&
                  memcmp(out[i].data, local_dec, sizeof local_dec) == 0,
              "get_many block %d differs from lkv_decompress", i);
        lkv_tensor_clear(&out[i]);
    }
    /* A missing key in the middle: NOT_FOUND after the blocks before it. */
    lkv_key mixed[N];
    memcpy(mixed, keys, sizeof mixed);
    mixed[10] = key_of("m-missing");
    rc = lkv_client_get_many(c, "c-many", mixed, N, 0, out, &done, &e);
    CHECK(rc == LKV_RPC_NOT_FOUND && done == 10, "get_many missing: %s %s (%zu done)",
          lkv_rpc_code_name(rc), e.msg, done);
    for (size_t i = 0; i < done && i < N; i++)
        CHECK(out[i].data_bytes == sizeof data[i], "get_many block %zu before the missing key", i);
    for (int i = 0; i < N; i++)
        lkv_tensor_clear(&out[i]);
    /* A NaN block: INVALID_ARGUMENT, the blocks before it stored, it not.
     * (Blocks after it that were already in the daemon's stream window may
     * be stored too; the contract does not say, so this does not check.) */
    data[5][3] = 0x7FC0;
    char ns[64];
    snprintf(ns, sizeof ns, "c-many-%d-%s", (int)getpid(), addr);
    lkv_key fresh[N];
    char fnames[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(fnames[i], sizeof fnames[i], "f-%d", i);
        fresh[i] = key_of(fnames[i]);
    }
    rc = lkv_client_put_many(c, ns, fresh, t, N, NULL, NULL, &done, &e);
    CHECK(rc == LKV_RPC_INVALID_ARGUMENT && done == 5, "put_many NaN: %s %s (%zu done)",
          lkv_rpc_code_name(rc), e.msg, done);
    uint8_t present[N];
    uint32_t hits = 0;
    CHECK(lkv_client_lookup(c, ns, fresh, N, &hits, present, &e) == 0 && hits == 5 && !present[5],
          "after a failed put_many: prefix_hits=%u, want 5 (the NaN block absent)", hits);
    rc = lkv_client_put_many(c, ns, fresh, t, 0, NULL, NULL, &done, &e);
    CHECK(rc == LKV_RPC_OK && done == 0, "empty put_many: %s", e.msg);
}

/* Concurrency: threads with their own connection, and threads sharing one client. */
typedef struct worker {
    pthread_t tid;
    int id;
    lkv_client *shared;
    int bad;
} worker;

/* Push and Pull with this daemon as both ends (its own address): the C
 * client's forms, results per key and named bad input. Plaintext only:
 * skipped when the run talks TLS or sends a token. */
static void transfers(lkv_client *c)
{
    if (getenv("LKV_ITEST_TLS_CA") || getenv("LKV_ITEST_TOKEN"))
        return;
    lkv_client_error e;
    lkv_transfer t;
    /* semantics() left s1 and s3 in c-sem (s0 deleted, s2 never stored). */
    const lkv_key keys[3] = {key_of("s1"), key_of("nope"), key_of("s3")};
    int rc = lkv_client_push(c, addr, "c-sem", keys, 3, NULL, &t, &e);
    CHECK(rc == 0, "push: %s", e.msg);
    if (rc == 0) {
        CHECK(t.n == 3 && t.stored == 2, "push: n=%zu stored=%u", t.n, t.stored);
        CHECK(t.n == 3 && t.results[0].code == LKV_RPC_OK && t.results[0].coded_bytes > 0 &&
                  t.results[1].code == LKV_RPC_NOT_FOUND && t.results[1].message[0] &&
                  t.results[2].code == LKV_RPC_OK,
              "push results");
        CHECK(t.n == 3 && t.results[1].key.len == 4 && !memcmp(t.results[1].key.data, "nope", 4),
              "push result key");
        CHECK(t.coded_bytes == t.results[0].coded_bytes + t.results[2].coded_bytes,
              "push coded_bytes");
    }
    lkv_transfer_clear(&t);
    const lkv_key prefix = key_of("s");
    rc = lkv_client_push(c, addr, "c-sem", NULL, 0, &prefix, &t, &e);
    CHECK(rc == 0 && t.n == 2 && t.stored == 2, "push prefix: rc=%d n=%zu %s", rc, t.n, e.msg);
    lkv_transfer_clear(&t);
    rc = lkv_client_pull(c, addr, "c-sem", keys + 2, 1, &t, &e);
    CHECK(rc == 0 && t.n == 1 && t.stored == 1, "pull: rc=%d %s", rc, e.msg);
    lkv_transfer_clear(&t);
    rc = lkv_client_push(c, "", "c-sem", keys, 1, NULL, &t, &e);
    CHECK(rc == LKV_RPC_INVALID_ARGUMENT && strstr(e.msg, "to is empty"), "push to \"\": %s",
          e.msg);
    CHECK(t.n == 0 && t.results == NULL, "no results on failure");
    lkv_transfer_clear(&t);
}

static void *work(void *arg)
{
    worker *w = arg;
    lkv_client *c = w->shared ? w->shared : open_client(1);
    uint16_t data[2 * 16 * 8 * 128];
    fill(data, LKV_DTYPE_BF16, sizeof data / 2, 100u + (uint32_t)w->id);
    const lkv_params p = {LKV_VARIANT_E8, 38, 128};
    const uint64_t shape[4] = {2, 16, 8, 128};
    unsigned char local[64 * 1024];
    size_t local_len = 0;
    if (lkv_compress(&p, LKV_DTYPE_BF16, shape, 4, data, sizeof data, local, sizeof local,
                     &local_len, LKV_ISA_AUTO, NULL) != LKV_OK)
        w->bad++;
    lkv_tensor t = {.dtype = LKV_DTYPE_BF16,
                    .ndim = 4,
                    .shape = {2, 16, 8, 128},
                    .data = data,
                    .data_bytes = sizeof data};
    char key[32];
    snprintf(key, sizeof key, "w-%d", w->id);
    lkv_client_error e;
    for (int r = 0; c && r < 4; r++) {
        lkv_buf b = {0};
        if (lkv_client_put(c, "c-conc", key_of(key), &t, NULL, NULL, &e) ||
            lkv_client_get_coded(c, "c-conc", key_of(key), &b, &e) || b.len != local_len ||
            memcmp(b.data, local, local_len) != 0) {
            fprintf(stderr, "worker %d round %d: %s\n", w->id, r, e.msg);
            w->bad++;
        }
        lkv_buf_clear(&b);
    }
    if (!w->shared)
        lkv_client_free(c);
    return NULL;
}

static void concurrency(lkv_client *shared, int n)
{
    worker *w = calloc((size_t)n, sizeof *w);
    for (int i = 0; i < n; i++) {
        w[i].id = i + (shared ? 1000 : 0);
        w[i].shared = shared;
        pthread_create(&w[i].tid, NULL, work, &w[i]);
    }
    int bad = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(w[i].tid, NULL);
        bad += w[i].bad;
    }
    CHECK(bad == 0, "%d failed rounds among %d %s clients", bad, n, shared ? "shared" : "own");
    free(w);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* The --hang-check mode (see the top of the file). */
static int hang_check(int argc, char **argv)
{
    if (argc < 7 || argc > 8) {
        fprintf(stderr, "usage: lkv_client_itest --addr ADDR --hang-check TIMEOUT KEEPALIVE "
                        "EXPECT WITHIN_MS [CALLS]\n");
        return 2;
    }
    lkv_client_options o = {0};
    o.timeout_ms =
        strcmp(argv[3], "none") == 0 ? LKV_CLIENT_NO_TIMEOUT : (uint32_t)strtoul(argv[3], NULL, 10);
    o.keepalive_time_ms = (uint32_t)strtoul(argv[4], NULL, 10);
    o.keepalive_timeout_ms = o.keepalive_time_ms ? 1000 : 0;
    const char *expect = argv[5];
    const double within = strtod(argv[6], NULL);
    const int calls = argc == 8 ? (int)strtol(argv[7], NULL, 10) : 5;
    lkv_client *c = NULL;
    lkv_client_error e;
    CHECK(lkv_client_create(addr, &o, &c, &e) == LKV_RPC_OK, "create: %s", e.msg);
    if (!c)
        return 1;
    /* The connection is up before the daemon stops. */
    CHECK(lkv_client_wait_ready(c, 30000, &e) == LKV_RPC_OK, "not ready: %s", e.msg);
    printf("ready\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin)) {
        lkv_client_free(c);
        return 2;
    }

    float data[2 * 64] = {0};
    lkv_tensor t = {.dtype = LKV_DTYPE_FP32,
                    .ndim = 2,
                    .shape = {2, 64},
                    .data = data,
                    .data_bytes = sizeof data};
    const lkv_key key = key_of("hang");
    for (int i = 0; i < calls; i++) {
        const double t0 = now_ms();
        const char *what = "";
        int rc = LKV_RPC_OK, serving = 0;
        lkv_client_stats st = {0};
        lkv_tensor out = {0};
        size_t done = 0;
        switch (i % 5) {
        case 0: what = "stats", rc = lkv_client_stats_get(c, &st, &e); break;
        case 1: what = "put", rc = lkv_client_put(c, "hang", key, &t, NULL, NULL, &e); break;
        case 2: what = "health", rc = lkv_client_health(c, NULL, &serving, &e); break;
        case 3:
            what = "get_many", rc = lkv_client_get_many(c, "hang", &key, 1, 0, &out, &done, &e);
            break;
        default:
            what = "put_many",
            rc = lkv_client_put_many(c, "hang", &key, &t, 1, NULL, NULL, &done, &e);
        }
        const double took = now_ms() - t0;
        lkv_client_stats_clear(&st);
        lkv_tensor_clear(&out);
        printf("%s: %s after %.0f ms: %s\n", what, lkv_rpc_code_name(rc), took, rc ? e.msg : "");
        CHECK(strcmp(lkv_rpc_code_name(rc), expect) == 0, "%s returned %s, want %s", what,
              lkv_rpc_code_name(rc), expect);
        CHECK(took <= within, "%s took %.0f ms, more than %.0f", what, took, within);
    }
    lkv_client_free(c);
    printf("client_itest hang check %s: %s (%d failures)\n", addr, failures ? "FAILED" : "ok",
           failures);
    return failures ? 1 : 0;
}

/* One call's outcome against the expected code name. */
static void expect_code(const char *what, int rc, const lkv_client_error *e, const char *want,
                        const char *ns)
{
    CHECK(strcmp(lkv_rpc_code_name(rc), want) == 0, "%s: %s (%s), want %s", what,
          lkv_rpc_code_name(rc), rc ? e->msg : "", want);
    if (rc == LKV_RPC_PERMISSION_DENIED && ns)
        CHECK(strstr(e->msg, ns) != NULL, "%s: the message does not name namespace %s: %s", what,
              ns, e->msg);
}

static int auth_check(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: lkv_client_itest --addr ADDR --auth-check NS EXPECT "
                        "STATS_EXPECT\n");
        return 2;
    }
    const char *ns = argv[2], *want = argv[3], *want_stats = argv[4];
    /* Fail fast: a refused handshake is one of the outcomes checked. */
    lkv_client_options o = {.timeout_ms = 20000, .own_connection = 1};
    security_options(&o);
    lkv_client *c = NULL;
    lkv_client_error e;
    if (lkv_client_create(addr, &o, &c, &e) != LKV_RPC_OK) {
        fprintf(stderr, "create: %s\n", e.msg);
        return 1;
    }
    int serving = 0;
    const int hrc = lkv_client_health(c, "", &serving, &e);
    if (strcmp(want, "UNAVAILABLE") == 0)
        expect_code("health", hrc, &e, want, NULL); /* the handshake itself is refused */
    else
        CHECK(hrc == 0 && serving == 1, "health: %s", e.msg);
    float data[4 * 64];
    fill(data, LKV_DTYPE_FP32, 4 * 64, 7);
    lkv_tensor t = {.dtype = LKV_DTYPE_FP32,
                    .ndim = 2,
                    .shape = {4, 64},
                    .data = data,
                    .data_bytes = sizeof data};
    const lkv_key k = key_of("auth-block");
    expect_code("put", lkv_client_put(c, ns, k, &t, NULL, NULL, &e), &e, want, ns);
    lkv_tensor out = {0};
    expect_code("get", lkv_client_get(c, ns, k, LKV_DTYPE_FP32, &out, NULL, &e), &e, want, ns);
    lkv_tensor_clear(&out);
    uint32_t hits = 0;
    uint8_t present = 0;
    expect_code("lookup", lkv_client_lookup(c, ns, &k, 1, &hits, &present, &e), &e, want, ns);
    expect_code("delete", lkv_client_delete(c, ns, k, NULL, &e), &e, want, ns);
    lkv_client_stats st = {0};
    expect_code("stats", lkv_client_stats_get(c, &st, &e), &e, want_stats, NULL);
    lkv_client_stats_clear(&st);
    lkv_client_free(c);
    printf("client_itest auth check %s ns=%s: %s (%d failures)\n", addr, ns,
           failures ? "FAILED" : "ok", failures);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], "--addr") != 0 ||
        (argc > 3 && strcmp(argv[3], "--hang-check") != 0 &&
         strcmp(argv[3], "--auth-check") != 0)) {
        fprintf(stderr,
                "usage: lkv_client_itest --addr ADDR [--hang-check ... | --auth-check ...]\n");
        return 2;
    }
    addr = argv[2];
    if (argc > 3 && strcmp(argv[3], "--auth-check") == 0)
        return auth_check(argc - 2, argv + 2);
    if (argc > 3)
        return hang_check(argc - 1, argv + 1);
    lkv_client *c = open_client(0);
    if (!c)
        return 1;
    lkv_client_error e;
    CHECK(lkv_client_wait_ready(c, 30000, &e) == LKV_RPC_OK, "not ready: %s", e.msg);
    int serving = 0;
    CHECK(lkv_client_health(c, "", &serving, &e) == 0 && serving == 1, "health %d", serving);

    const lkv_dtype dts[] = {LKV_DTYPE_BF16, LKV_DTYPE_FP16, LKV_DTYPE_FP32};
    const lkv_variant vs[] = {LKV_VARIANT_E8, LKV_VARIANT_D4};
    const uint32_t qd[][2] = {{1, 8}, {10, 64}, {38, 128}, {152, 256}, {1023, 512}};
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 2; j++)
            for (size_t k = 0; k < sizeof qd / sizeof qd[0]; k++)
                roundtrip(c, dts[i], vs[j], qd[k][0], qd[k][1]);
    semantics(c);
    transfers(c);
    streams(c);
    concurrency(NULL, 64);
    concurrency(c, 32);

    lkv_client_free(c);
    printf("client_itest %s: %s (%d failures)\n", addr, failures ? "FAILED" : "ok", failures);
    return failures ? 1 : 0;
}
