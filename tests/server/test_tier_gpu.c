/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_tier_gpu.c - the GPU tier's logic without a GPU: the arena
 * allocator, the index, LRU between watermarks, eviction into host and
 * promotion back through the stack, fragmentation, decodes that outlive
 * their block, close, and a Get through the service (tier "gpu", the
 * device's decode, no coded byte copied out). The "device" is host memory behind lkv_gpu_dev_ops
 * (the real operations are in server/backend_cuda.c and are checked on a
 * GPU by tests/gpu/gpu_tier_check.c); it counts its copies so the tests can
 * assert that a decode never copies coded bytes to the host.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "latticekv/v1/latticekv.pb-c.h"
#include "lkv_server.h"
#include "lkv_stack.h"
#include "lkv_tier_gpu.h"

/* ---- a device made of host memory --------------------------------------- */

typedef struct fake_dev {
    uint8_t *base;
    uint64_t size;
    unsigned to_host, to_device, decodes;
    int fail_alloc;
    int freed;
} fake_dev;

static lkv_status fd_alloc(void *ctx, uint64_t bytes, void **base, lkv_diag *diag)
{
    fake_dev *f = ctx;
    if (f->fail_alloc)
        return lkv_diag_fail(diag, LKV_ERR_NOMEM, "fake device: no room for %llu bytes",
                             (unsigned long long)bytes);
    f->base = malloc(bytes);
    f->size = bytes;
    *base = f->base;
    return LKV_OK;
}

static void fd_free(void *ctx, void *base)
{
    fake_dev *f = ctx;
    cr_assert_eq(base, f->base);
    free(base);
    f->freed = 1;
}

static void in_arena(const fake_dev *f, const void *p, size_t n)
{
    cr_assert((const uint8_t *)p >= f->base && (const uint8_t *)p + n <= f->base + f->size,
              "device address outside the arena");
}

static lkv_status fd_to_device(void *ctx, void *dst, const void *src, size_t n, lkv_diag *diag)
{
    (void)diag;
    fake_dev *f = ctx;
    in_arena(f, dst, n);
    cr_assert_eq(((uintptr_t)dst - (uintptr_t)f->base) % LKV_GPU_ALIGN, 0, "records not aligned");
    memcpy(dst, src, n);
    f->to_device++;
    return LKV_OK;
}

static lkv_status fd_to_host(void *ctx, void *dst, const void *src, size_t n, lkv_diag *diag)
{
    (void)diag;
    fake_dev *f = ctx;
    in_arena(f, src, n);
    memcpy(dst, src, n);
    f->to_host++;
    return LKV_OK;
}

static lkv_status fd_decode(void *ctx, const lkv_params *p, const void *rec, size_t n, lkv_dtype dt,
                            void *dst, lkv_diag *diag)
{
    fake_dev *f = ctx;
    in_arena(f, rec, n * lkv_record_bytes(p));
    __atomic_add_fetch(&f->decodes, 1, __ATOMIC_RELAXED);
    return lkv_decode(p, rec, n, dt, dst, LKV_ISA_AUTO, diag);
}

static uv_loop_t g_loop;
static fake_dev g_dev;

static lkv_tier *gpu_tier(uint64_t capacity, unsigned high, unsigned low)
{
    const lkv_gpu_config c = {
        .capacity_bytes = capacity,
        .high_pct = high,
        .low_pct = low,
        .ops = {fd_alloc, fd_free, fd_to_device, fd_to_host, fd_decode, &g_dev}};
    lkv_tier *t = NULL;
    lkv_diag d;
    cr_assert_eq(lkv_tier_gpu_create(&g_loop, &c, &t, &d), LKV_OK, "%s", d.msg);
    return t;
}

static void setup(void)
{
    memset(&g_dev, 0, sizeof g_dev);
    cr_assert_eq(uv_loop_init(&g_loop), 0);
}

static void teardown(void)
{
    uv_run(&g_loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&g_loop), 0);
}

TestSuite(tier_gpu, .init = setup, .fini = teardown);

/* ---- blocks --------------------------------------------------------------- */

static const lkv_params P = {.variant = LKV_VARIANT_E8, .q = 38, .dim = 128};

/* A container of `tokens` x 2 heads x 128 bf16 values seeded by `seed`. */
static lkv_blob *block(unsigned tokens, unsigned seed)
{
    const uint64_t shape[3] = {tokens, 2, 128};
    const size_t n = (size_t)tokens * 2 * 128;
    uint16_t *x = malloc(n * 2);
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = lkv_f32_to_bf16((float)((int)(s >> 16) - 32768) / 8192.0f);
    }
    lkv_container_info info;
    cr_assert_eq(lkv_container_plan(&P, LKV_DTYPE_BF16, shape, 3, &info, NULL), LKV_OK);
    lkv_blob *b = lkv_blob_create(info.total_bytes);
    size_t len = 0;
    cr_assert_eq(lkv_compress(&P, LKV_DTYPE_BF16, shape, 3, x, n * 2, b->data, b->len, &len,
                              LKV_ISA_AUTO, NULL),
                 LKV_OK);
    free(x);
    return b;
}

static void done_flag(lkv_tier_req *r)
{
    *(int *)r->ud = 1;
}

static lkv_status put(lkv_tier *t, const char *key, lkv_blob *b)
{
    int ran = 0;
    lkv_tier_req r = {.ns = "m",
                      .ns_len = 1,
                      .key = (const uint8_t *)key,
                      .key_len = strlen(key),
                      .blob = b,
                      .done = done_flag,
                      .ud = &ran};
    lkv_tier_put(t, &r);
    cr_assert(ran, "put completes synchronously");
    return r.status;
}

static lkv_blob *get(lkv_tier *t, const char *key)
{
    int ran = 0;
    lkv_tier_req r = {.ns = "m",
                      .ns_len = 1,
                      .key = (const uint8_t *)key,
                      .key_len = strlen(key),
                      .done = done_flag,
                      .ud = &ran};
    lkv_tier_get(t, &r);
    cr_assert(ran);
    cr_assert_eq(r.status, LKV_OK, "%s", r.diag.msg);
    return r.found ? r.blob : NULL;
}

static int has(const lkv_tier *t, const char *key)
{
    return t->contains(t, "m", 1, (const uint8_t *)key, strlen(key)) == LKV_TIER_PRESENT;
}

static int same(const lkv_blob *a, const lkv_blob *b)
{
    return a && b && a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

static uint64_t charge(const lkv_blob *b)
{
    lkv_container_info i;
    cr_assert_eq(lkv_container_parse(b->data, b->len, &i, NULL), LKV_OK);
    const uint64_t r = i.total_bytes - i.header_bytes;
    return (r + LKV_GPU_ALIGN - 1) / LKV_GPU_ALIGN * LKV_GPU_ALIGN;
}

/* ---- the arena -------------------------------------------------------------- */

Test(tier_gpu, arena_first_fit_and_coalescing)
{
    lkv_gpu_arena *a = lkv_gpu_arena_create(10 * 256 + 100); /* rounded down */
    cr_assert_eq(lkv_gpu_arena_free_bytes(a), 2560);
    uint64_t o[5];
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(lkv_gpu_arena_alloc(a, 512, &o[i]), 0);
        cr_assert_eq(o[i], (uint64_t)i * 512);
    }
    uint64_t x;
    cr_assert_eq(lkv_gpu_arena_alloc(a, 256, &x), -1, "full");
    lkv_gpu_arena_release(a, o[1], 512);
    lkv_gpu_arena_release(a, o[3], 512);
    cr_assert_eq(lkv_gpu_arena_free_bytes(a), 1024);
    cr_assert_eq(lkv_gpu_arena_largest(a), 512, "two holes, not adjacent");
    cr_assert_eq(lkv_gpu_arena_alloc(a, 768, &x), -1, "fragmented");
    lkv_gpu_arena_release(a, o[2], 512); /* joins both neighbours */
    cr_assert_eq(lkv_gpu_arena_largest(a), 1536);
    cr_assert_eq(lkv_gpu_arena_alloc(a, 768, &x), 0);
    cr_assert_eq(x, 512, "first fit at the joined hole");
    lkv_gpu_arena_release(a, x, 768);
    lkv_gpu_arena_release(a, o[0], 512);
    lkv_gpu_arena_release(a, o[4], 512);
    cr_assert_eq(lkv_gpu_arena_largest(a), 2560, "everything coalesced back into one range");
    lkv_gpu_arena_free(a);
}

/* ---- the tier alone ------------------------------------------------------------ */

Test(tier_gpu, put_get_delete_round_trip)
{
    lkv_tier *t = gpu_tier(1 << 20, 100, 100);
    cr_assert(lkv_tier_is_gpu(t));
    cr_assert_str_eq(t->name, "gpu");
    lkv_blob *b = block(16, 1);
    cr_assert_eq(put(t, "a", b), LKV_OK);
    cr_assert(has(t, "a"));
    lkv_tier_stats st;
    t->stats(t, &st);
    cr_assert_eq(st.blocks, 1);
    cr_assert_eq(st.used_bytes, charge(b));
    lkv_blob *back = get(t, "a");
    cr_assert(same(back, b), "the coded get returns the container byte for byte");
    lkv_blob_unref(back);
    cr_assert_null(get(t, "zz"));
    int ran = 0;
    lkv_tier_req d = {.ns = "m",
                      .ns_len = 1,
                      .key = (const uint8_t *)"a",
                      .key_len = 1,
                      .done = done_flag,
                      .ud = &ran};
    lkv_tier_del(t, &d);
    cr_assert(ran && d.found);
    t->stats(t, &st);
    cr_assert_eq(st.blocks, 0);
    cr_assert_eq(st.used_bytes, 0);
    lkv_blob_unref(b);
    t->close(t, NULL, NULL);
    cr_assert(g_dev.freed, "close frees the arena");
}

Test(tier_gpu, damaged_container_is_refused)
{
    lkv_tier *t = gpu_tier(1 << 20, 100, 100);
    lkv_blob *b = block(16, 2);
    b->data[b->len - 1] ^= 1; /* a record byte: the payload CRC fails */
    cr_assert_eq(put(t, "a", b), LKV_ERR_CHECKSUM);
    cr_assert_not(has(t, "a"));
    cr_assert_eq(g_dev.to_device, 0, "nothing reached the device");
    lkv_blob_unref(b);
    t->close(t, NULL, NULL);
}

Test(tier_gpu, profile2_blocks_are_refused_and_stay_above_it)
{
    /* The device has no profile 2 decoder: the tier refuses such a block
     * by name, of either container version (3, the newest, and 2), so the
     * stack keeps it in host memory. */
    lkv_tier *t = gpu_tier(1 << 20, 100, 100);
    static float x[16 * 128];
    for (size_t i = 0; i < 16 * 128; i++)
        x[i] = (float)((int)(i * 37 % 101) - 50) / 16.0f;
    const uint64_t shape[2] = {16, 128};
    for (uint32_t format = 2; format <= 3; format++) {
        const lkv_params p2 = {.variant = LKV_VARIANT_E8,
                               .q = 54,
                               .dim = 128,
                               .profile = LKV_PROFILE_2,
                               .format = format};
        lkv_blob *b = lkv_blob_create(lkv_compress_bound(&p2, shape, 2));
        size_t len = 0;
        cr_assert_eq(lkv_compress(&p2, LKV_DTYPE_FP32, shape, 2, x, sizeof x, b->data, b->len, &len,
                                  LKV_ISA_AUTO, NULL),
                     LKV_OK);
        b->len = len;
        cr_assert_eq(b->data[4], format, "the container's version field");
        cr_assert_eq(put(t, "p2", b), LKV_ERR_VARIANT, "version %u", format);
        cr_assert_not(has(t, "p2"));
        cr_assert_eq(g_dev.to_device, 0, "nothing reached the device");
        lkv_blob_unref(b);
    }
    t->close(t, NULL, NULL);
}

static int count_key(const uint8_t *key, size_t key_len, void *ud)
{
    (void)key;
    (void)key_len;
    ++*(int *)ud;
    return 0;
}

Test(tier_gpu, each_lists_a_namespace_prefix)
{
    lkv_tier *t = gpu_tier(1 << 20, 100, 100);
    lkv_blob *b = block(16, 3);
    cr_assert_eq(put(t, "a1", b), LKV_OK);
    cr_assert_eq(put(t, "a2", b), LKV_OK);
    cr_assert_eq(put(t, "b1", b), LKV_OK);
    int n = 0;
    lkv_tier_gpu_each(t, "m", 1, (const uint8_t *)"a", 1, count_key, &n);
    cr_assert_eq(n, 2, "two keys start with a");
    n = 0;
    lkv_tier_gpu_each(t, "m", 1, NULL, 0, count_key, &n);
    cr_assert_eq(n, 3);
    n = 0;
    lkv_tier_gpu_each(t, "other", 5, NULL, 0, count_key, &n);
    cr_assert_eq(n, 0, "another namespace holds nothing");
    lkv_blob_unref(b);
    t->close(t, NULL, NULL);
}

Test(tier_gpu, too_large_is_limit)
{
    lkv_blob *b = block(64, 3);
    lkv_tier *t = gpu_tier(charge(b) - LKV_GPU_ALIGN, 100, 100);
    lkv_diag d;
    cr_assert_eq(lkv_tier_gpu_admit(t, b->len, &d), LKV_ERR_LIMIT);
    cr_assert_eq(put(t, "a", b), LKV_ERR_LIMIT);
    lkv_blob_unref(b);
    t->close(t, NULL, NULL);
}

Test(tier_gpu, bad_config_and_failed_reservation)
{
    lkv_tier *t = NULL;
    lkv_diag d;
    lkv_gpu_config c = {.capacity_bytes = 1 << 20,
                        .high_pct = 50,
                        .low_pct = 60,
                        .ops = {fd_alloc, fd_free, fd_to_device, fd_to_host, fd_decode, &g_dev}};
    cr_assert_eq(lkv_tier_gpu_create(&g_loop, &c, &t, &d), LKV_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(d.msg, "50/60"), "%s", d.msg);
    c.low_pct = 40;
    g_dev.fail_alloc = 1;
    cr_assert_eq(lkv_tier_gpu_create(&g_loop, &c, &t, &d), LKV_ERR_NOMEM);
    cr_assert_null(t);
}

static void evicted(lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *key, size_t key_len,
                    lkv_blob *blob, void *ud)
{
    (void)t;
    (void)ns;
    (void)ns_len;
    char *log = ud;
    cr_assert_not_null(blob, "the hook gets the bytes, copied to the host");
    strncat(log, (const char *)key, key_len);
}

Test(tier_gpu, lru_between_watermarks)
{
    lkv_blob *b[8];
    for (int i = 0; i < 8; i++)
        b[i] = block(16, 10 + (unsigned)i);
    const uint64_t c = charge(b[0]);
    /* Room for 8 blocks; evict above 75% (6) down to 50% (4). */
    lkv_tier *t = gpu_tier(8 * c, 75, 50);
    char log[16] = "";
    t->set_evict_hook(t, evicted, log);
    const char *keys[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    for (int i = 0; i < 6; i++)
        cr_assert_eq(put(t, keys[i], b[i]), LKV_OK);
    cr_assert_str_eq(log, "", "six blocks are at the high watermark");
    lkv_blob_unref(get(t, "a")); /* a becomes the most recent */
    cr_assert_eq(put(t, "g", b[6]), LKV_OK);
    /* 7 > 6: evict down to 4 including g: b, c, d go (a was refreshed). */
    cr_assert_str_eq(log, "bcd");
    cr_assert(has(t, "a") && has(t, "e") && has(t, "f") && has(t, "g"));
    lkv_tier_stats st;
    t->stats(t, &st);
    cr_assert_eq(st.evictions, 3);
    cr_assert_eq(st.blocks, 4);
    cr_assert_eq(st.used_bytes, 4 * c);
    for (int i = 0; i < 8; i++)
        lkv_blob_unref(b[i]);
    t->close(t, NULL, NULL);
}

Test(tier_gpu, fragmentation_evicts_until_a_range_fits)
{
    lkv_blob *small[4], *big = block(32, 99);
    for (int i = 0; i < 4; i++)
        small[i] = block(16, 20 + (unsigned)i);
    const uint64_t c = charge(small[0]);
    cr_assert(charge(big) > c && charge(big) <= 2 * c, "a 32-token block needs two ranges");
    lkv_tier *t = gpu_tier(4 * c, 100, 100);
    char log[16] = "";
    t->set_evict_hook(t, evicted, log);
    cr_assert_eq(put(t, "a", small[0]), LKV_OK);
    cr_assert_eq(put(t, "b", small[1]), LKV_OK);
    cr_assert_eq(put(t, "c", small[2]), LKV_OK);
    cr_assert_eq(put(t, "d", small[3]), LKV_OK);
    int ran = 0;
    lkv_tier_req d = {.ns = "m",
                      .ns_len = 1,
                      .key = (const uint8_t *)"b",
                      .key_len = 1,
                      .done = done_flag,
                      .ud = &ran};
    lkv_tier_del(t, &d); /* a hole of one range between a and c */
    lkv_blob_unref(get(t, "a"));
    /* 3 ranges used + 2 > 4: the watermark evicts c (oldest); then b's hole
     * and c's join into two ranges and the big block fits there. */
    cr_assert_eq(put(t, "big", big), LKV_OK);
    cr_assert_str_eq(log, "c");
    cr_assert(has(t, "a") && has(t, "d") && has(t, "big"));
    lkv_blob *back = get(t, "big");
    cr_assert(same(back, big));
    lkv_blob_unref(back);
    for (int i = 0; i < 4; i++)
        lkv_blob_unref(small[i]);
    lkv_blob_unref(big);
    t->close(t, NULL, NULL);
}

/* ---- decodes ------------------------------------------------------------------- */

typedef struct dec {
    lkv_gpu_decode_req r;
    int ran;
} dec;

static void dec_done(lkv_gpu_decode_req *r)
{
    ((dec *)r->ud)->ran = 1;
}

static void decode_start(lkv_tier *t, dec *d, const char *key, uint8_t *dst, size_t cap)
{
    memset(d, 0, sizeof *d);
    d->r = (lkv_gpu_decode_req){.ns = "m",
                                .ns_len = 1,
                                .key = (const uint8_t *)key,
                                .key_len = strlen(key),
                                .dtype = LKV_DTYPE_BF16,
                                .dst = dst,
                                .dst_cap = cap,
                                .done = dec_done,
                                .ud = d};
    lkv_tier_gpu_decode(t, &d->r);
}

Test(tier_gpu, decode_matches_the_c_codec_and_copies_no_coded_bytes)
{
    lkv_tier *t = gpu_tier(1 << 20, 100, 100);
    lkv_blob *b = block(16, 5);
    cr_assert_eq(put(t, "a", b), LKV_OK);
    lkv_container_info info;
    cr_assert(lkv_tier_gpu_info(t, "m", 1, (const uint8_t *)"a", 1, &info));
    cr_assert_eq(info.n_vectors, 32);
    const size_t n = 32 * 128 * 2;
    uint8_t *want = malloc(n), *got = malloc(n);
    size_t len = 0;
    cr_assert_eq(lkv_decompress(b->data, b->len, 0, want, n, &len, NULL, LKV_ISA_AUTO, NULL),
                 LKV_OK);
    const unsigned to_host = g_dev.to_host;
    dec d;
    decode_start(t, &d, "a", got, n);
    cr_assert_not(d.ran, "a hit decodes on the threadpool");
    uv_run(&g_loop, UV_RUN_DEFAULT);
    cr_assert(d.ran && d.r.found);
    cr_assert_eq(d.r.status, LKV_OK, "%s", d.r.diag.msg);
    cr_assert_eq(memcmp(want, got, n), 0);
    cr_assert_eq(g_dev.to_host, to_host, "no coded byte was copied to the host");
    cr_assert_eq(g_dev.decodes, 1);
    decode_start(t, &d, "a", got, n - 1);
    cr_assert(d.ran);
    cr_assert_eq(d.r.status, LKV_ERR_BUFFER_SMALL);
    decode_start(t, &d, "nope", got, n);
    cr_assert(d.ran && !d.r.found && d.r.status == LKV_OK, "a miss completes at once");
    free(want);
    free(got);
    lkv_blob_unref(b);
    t->close(t, NULL, NULL);
}

static int closed_calls;

static void on_closed(void *ud)
{
    (void)ud;
    closed_calls++;
}

Test(tier_gpu, a_decode_outlives_eviction_and_close)
{
    lkv_blob *a = block(16, 6), *b = block(16, 7);
    lkv_tier *t = gpu_tier(charge(a), 100, 100); /* room for one block */
    cr_assert_eq(put(t, "a", a), LKV_OK);
    const size_t n = 32 * 128 * 2;
    uint8_t *want = malloc(n), *got = malloc(n);
    size_t len;
    cr_assert_eq(lkv_decompress(a->data, a->len, 0, want, n, &len, NULL, LKV_ISA_AUTO, NULL),
                 LKV_OK);
    dec d;
    decode_start(t, &d, "a", got, n);
    /* a's range is held by the decode: b cannot take it. */
    cr_assert_eq(put(t, "b", b), LKV_ERR_LIMIT);
    cr_assert_not(has(t, "a"), "a was evicted to make room");
    cr_assert_eq(lkv_tier_gpu_pinned_bytes(t), charge(a));
    closed_calls = 0;
    t->close(t, on_closed, NULL);
    cr_assert_eq(closed_calls, 0, "close waits for the decode in flight");
    uv_run(&g_loop, UV_RUN_DEFAULT);
    cr_assert(d.ran);
    cr_assert_eq(d.r.status, LKV_OK);
    cr_assert_eq(memcmp(want, got, n), 0, "the evicted block still decoded from its own bytes");
    cr_assert_eq(closed_calls, 1);
    cr_assert(g_dev.freed);
    free(want);
    free(got);
    lkv_blob_unref(a);
    lkv_blob_unref(b);
}

/* ---- in the stack: gpu over host ------------------------------------------------ */

Test(tier_gpu, stack_demotes_to_host_and_promotes_back)
{
    lkv_blob *b[3];
    for (int i = 0; i < 3; i++)
        b[i] = block(16, 30 + (unsigned)i);
    const uint64_t c = charge(b[0]);
    const lkv_host_config hc = {.capacity_bytes = 1 << 20, .high_pct = 100, .low_pct = 100};
    lkv_tier *host = NULL, *gpu = gpu_tier(2 * c, 100, 100);
    cr_assert_eq(lkv_tier_host_create(&hc, &host, NULL), LKV_OK);
    lkv_stack *s = lkv_stack_create(host, NULL, NULL, LKV_TIER_WRITE_THROUGH);
    lkv_stack_set_gpu(s, gpu);
    cr_assert_eq(lkv_stack_gpu(s), gpu);
    const lkv_tier *tiers[LKV_STACK_TIERS_MAX];
    cr_assert_eq(lkv_stack_tiers(s, tiers), 2);
    cr_assert_eq(tiers[0], gpu);
    cr_assert_eq(tiers[1], host);

    const char *keys[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(lkv_stack_put_host(s, "m", 1, (const uint8_t *)keys[i], 1, b[i], NULL),
                     LKV_OK);
    /* Two fit on the GPU: a went down into host, byte for byte. */
    cr_assert_not(has(gpu, "a"));
    cr_assert(has(host, "a"));
    cr_assert(has(gpu, "b") && !has(host, "b"), "exclusive: one copy per block");
    lkv_blob *in_host = get(host, "a");
    cr_assert(same(in_host, b[0]), "GPU -> host keeps the bytes");
    lkv_blob_unref(in_host);

    /* A Get of a finds it in host and promotes it back (b goes down). */
    int ran = 0;
    lkv_tier_req r = {.ns = "m",
                      .ns_len = 1,
                      .key = (const uint8_t *)"a",
                      .key_len = 1,
                      .done = done_flag,
                      .ud = &ran};
    lkv_stack_get(s, &r);
    cr_assert(ran && r.found);
    cr_assert_eq(r.tier, host, "served from host this time");
    cr_assert(same(r.blob, b[0]));
    lkv_blob_unref(r.blob);
    cr_assert(has(gpu, "a") && !has(host, "a"), "promoted into the GPU tier");
    cr_assert(has(host, "b"), "the LRU block made room");
    lkv_blob *back = get(gpu, "a");
    cr_assert(same(back, b[0]), "GPU -> host -> GPU is byte-identical");
    lkv_blob_unref(back);

    /* Delete reaches both tiers. */
    ran = 0;
    r = (lkv_tier_req){.ns = "m",
                       .ns_len = 1,
                       .key = (const uint8_t *)"b",
                       .key_len = 1,
                       .done = done_flag,
                       .ud = &ran};
    lkv_stack_del(s, &r);
    cr_assert(ran && r.found && !has(host, "b") && !has(gpu, "b"));

    /* A block larger than the GPU tier lives in host instead. */
    lkv_blob *big = block(64, 40);
    cr_assert_eq(lkv_stack_put_host(s, "m", 1, (const uint8_t *)"big", 3, big, NULL), LKV_OK);
    cr_assert(has(host, "big") && !has(gpu, "big"));
    /* ... also as the new value of a key the GPU tier holds: the old GPU
     * copy goes, so a Get cannot find it first. */
    cr_assert(has(gpu, "a"));
    cr_assert_eq(lkv_stack_put_host(s, "m", 1, (const uint8_t *)"a", 1, big, NULL), LKV_OK);
    cr_assert(!has(gpu, "a") && has(host, "a"), "the refused new value lives in host alone");
    ran = 0;
    r = (lkv_tier_req){.ns = "m",
                       .ns_len = 1,
                       .key = (const uint8_t *)"a",
                       .key_len = 1,
                       .done = done_flag,
                       .ud = &ran};
    lkv_stack_get(s, &r);
    cr_assert(ran && r.found && same(r.blob, big), "Get sees the new value, not the stale one");
    lkv_blob_unref(r.blob);
    lkv_blob_unref(big);
    for (int i = 0; i < 3; i++)
        lkv_blob_unref(b[i]);
    closed_calls = 0;
    lkv_stack_close(s, on_closed, NULL);
    uv_run(&g_loop, UV_RUN_DEFAULT);
    cr_assert_eq(closed_calls, 1);
}

/* ---- through the service: a Get of a resident block ----------------------- */

static struct {
    lkv_config cfg;
    lkv_tier *host, *gpu;
    lkv_stack *stack;
    lkv_batcher *batcher;
    lkv_service *svc;
    lkv_batch *queued[64];
    int nqueued;
    lkv_reply last;
    int replies;
} sv;

static void sv_enqueue(lkv_batch *b, void *ud)
{
    (void)ud;
    cr_assert_lt(sv.nqueued, 64);
    sv.queued[sv.nqueued++] = b;
}

static void sv_reply(void *call, uint64_t seq, lkv_reply *r)
{
    (void)call;
    (void)seq;
    if (r->commit)
        r->commit(r->effect, r);
    free(sv.last.buf);
    sv.last = *r;
    r->buf = NULL;
    sv.replies++;
}

static void sv_setup(void)
{
    setup();
    memset(&sv, 0, sizeof sv);
    lkv_config_defaults(&sv.cfg);
    const lkv_host_config hc = {.capacity_bytes = 1 << 20, .high_pct = 100, .low_pct = 100};
    cr_assert_eq(lkv_tier_host_create(&hc, &sv.host, NULL), LKV_OK);
    /* Room for three of the test's containers (8 vectors, 848 bytes each). */
    sv.gpu = gpu_tier(3 * 1024, 100, 100);
    sv.stack = lkv_stack_create(sv.host, NULL, NULL, LKV_TIER_WRITE_THROUGH);
    lkv_stack_set_gpu(sv.stack, sv.gpu);
    const lkv_batcher_cfg bc = {64, 0, 4, 64};
    sv.batcher = lkv_batcher_create(&bc, sv_enqueue, NULL);
    sv.svc = lkv_service_create(&sv.cfg, sv.stack, sv.batcher, "cuda", sv_reply);
}

static void sv_teardown(void)
{
    free(sv.last.buf);
    lkv_service_free(sv.svc);
    lkv_batcher_free(sv.batcher);
    lkv_stack_close(sv.stack, NULL, NULL);
    teardown();
}

/* One request; codec batches run on the C codec, GPU-tier decodes on the
 * loop's threadpool; returns when its one reply is in. */
static void sv_call(lkv_method m, const ProtobufCMessage *msg)
{
    const size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n + 1);
    protobuf_c_message_pack(msg, buf);
    const int before = sv.replies;
    lkv_service_handle(sv.svc, m, NULL, 0, buf, n);
    for (int spins = 0; sv.replies == before && spins < 1000; spins++) {
        lkv_batcher_poll(sv.batcher, lkv_now_ns());
        while (sv.nqueued) {
            lkv_batch *b = sv.queued[--sv.nqueued];
            lkv_backend_run_cpu(b);
            lkv_batcher_complete(sv.batcher, b);
        }
        /* A decode on the threadpool keeps the loop alive: wait for it. */
        if (sv.replies == before && uv_loop_alive(&g_loop))
            uv_run(&g_loop, UV_RUN_ONCE);
    }
    cr_assert_eq(sv.replies, before + 1, "exactly one reply");
}

static float sv_data[2 * 4 * 128];
static uint64_t sv_shape[] = {2, 4, 128};

static void sv_put(const char *key, float scale)
{
    for (size_t i = 0; i < sizeof sv_data / sizeof sv_data[0]; i++)
        sv_data[i] = sinf((float)i * 0.37f) * scale;
    Latticekv__V1__Tensor t = LATTICEKV__V1__TENSOR__INIT;
    t.dtype = LATTICEKV__V1__DTYPE__DTYPE_FP32;
    t.n_shape = 3;
    t.shape = sv_shape;
    t.data.data = (uint8_t *)sv_data;
    t.data.len = sizeof sv_data;
    Latticekv__V1__BlockKey k = LATTICEKV__V1__BLOCK_KEY__INIT;
    k.namespace_ = "ns";
    k.key.data = (uint8_t *)key;
    k.key.len = strlen(key);
    Latticekv__V1__PutRequest q = LATTICEKV__V1__PUT_REQUEST__INIT;
    q.key = &k;
    q.payload_case = LATTICEKV__V1__PUT_REQUEST__PAYLOAD_TENSOR;
    q.tensor = &t;
    sv_call(LKV_METHOD_PUT, &q.base);
    cr_assert_eq(sv.last.code, LKV_GRPC_OK, "%s", sv.last.msg);
}

/* The container and the decoded bytes the C codec gives for scale. */
static size_t sv_reference(float scale, int out_dt, uint8_t *coded, size_t cap, uint8_t *want,
                           size_t dcap)
{
    for (size_t i = 0; i < sizeof sv_data / sizeof sv_data[0]; i++)
        sv_data[i] = sinf((float)i * 0.37f) * scale;
    const lkv_params p = {LKV_VARIANT_E8, 38, 128};
    size_t n = 0, dn = 0;
    cr_assert_eq(lkv_compress(&p, LKV_DTYPE_FP32, sv_shape, 3, sv_data, sizeof sv_data, coded, cap,
                              &n, LKV_ISA_AUTO, NULL),
                 LKV_OK);
    cr_assert_eq(lkv_decompress(coded, n, out_dt, want, dcap, &dn, NULL, LKV_ISA_AUTO, NULL),
                 LKV_OK);
    return n;
}

static Latticekv__V1__GetResponse *sv_get(const char *key, int want_coded, int out_dt)
{
    Latticekv__V1__BlockKey k = LATTICEKV__V1__BLOCK_KEY__INIT;
    k.namespace_ = "ns";
    k.key.data = (uint8_t *)key;
    k.key.len = strlen(key);
    Latticekv__V1__GetRequest q = LATTICEKV__V1__GET_REQUEST__INIT;
    q.key = &k;
    q.want_coded = want_coded;
    q.out_dtype = out_dt;
    sv_call(LKV_METHOD_GET, &q.base);
    cr_assert_eq(sv.last.code, LKV_GRPC_OK, "%s", sv.last.msg);
    Latticekv__V1__GetResponse *g =
        latticekv__v1__get_response__unpack(NULL, sv.last.len, sv.last.buf);
    cr_assert_not_null(g);
    return g;
}

TestSuite(service_gpu, .init = sv_setup, .fini = sv_teardown);

Test(service_gpu, get_decodes_on_the_device_and_says_gpu)
{
    sv_put("k", 3.0f);
    cr_assert(has(sv.gpu, "k") == 0, "has() looks in namespace m");
    cr_assert_eq(sv.gpu->contains(sv.gpu, "ns", 2, (const uint8_t *)"k", 1), LKV_TIER_PRESENT);
    cr_assert_eq(sv.host->contains(sv.host, "ns", 2, (const uint8_t *)"k", 1), LKV_TIER_ABSENT);
    static uint8_t coded[8192], dec32[4096], dec16[2048];
    const size_t n = sv_reference(3.0f, 0, coded, sizeof coded, dec32, sizeof dec32);
    sv_reference(3.0f, LKV_DTYPE_BF16, coded, sizeof coded, dec16, sizeof dec16);

    const unsigned to_host = g_dev.to_host, decodes = g_dev.decodes;
    Latticekv__V1__GetResponse *g = sv_get("k", 0, 0);
    cr_assert_str_eq(g->tier, "gpu");
    cr_assert_eq(g->payload_case, LATTICEKV__V1__GET_RESPONSE__PAYLOAD_TENSOR);
    cr_assert_eq(g->tensor->n_shape, 3);
    cr_assert_eq(g->tensor->dtype, LATTICEKV__V1__DTYPE__DTYPE_FP32);
    cr_assert_eq(g->tensor->data.len, sizeof dec32);
    cr_assert_eq(memcmp(g->tensor->data.data, dec32, sizeof dec32), 0);
    cr_assert_eq(g_dev.decodes, decodes + 1, "decoded by the device's decode");
    cr_assert_eq(g_dev.to_host, to_host, "no coded byte came to the host");
    latticekv__v1__get_response__free_unpacked(g, NULL);

    g = sv_get("k", 0, LATTICEKV__V1__DTYPE__DTYPE_BF16);
    cr_assert_str_eq(g->tier, "gpu");
    cr_assert_eq(g->tensor->data.len, sizeof dec16);
    cr_assert_eq(memcmp(g->tensor->data.data, dec16, sizeof dec16), 0);
    latticekv__v1__get_response__free_unpacked(g, NULL);

    g = sv_get("k", 1, 0);
    cr_assert_str_eq(g->tier, "gpu");
    cr_assert_eq(g->payload_case, LATTICEKV__V1__GET_RESPONSE__PAYLOAD_CODED);
    cr_assert_eq(g->coded.len, n);
    cr_assert_eq(memcmp(g->coded.data, coded, n), 0, "coded Get copies the container out");
    latticekv__v1__get_response__free_unpacked(g, NULL);

    Latticekv__V1__StatsRequest sq = LATTICEKV__V1__STATS_REQUEST__INIT;
    sv_call(LKV_METHOD_STATS, &sq.base);
    Latticekv__V1__StatsResponse *st =
        latticekv__v1__stats_response__unpack(NULL, sv.last.len, sv.last.buf);
    cr_assert_not_null(st);
    cr_assert_eq(st->n_tiers, 2);
    cr_assert_str_eq(st->tiers[0]->name, "gpu");
    cr_assert_str_eq(st->tiers[1]->name, "host");
    cr_assert_eq(st->tiers[0]->blocks, 1);
    latticekv__v1__stats_response__free_unpacked(st, NULL);
}

Test(service_gpu, evicted_to_host_then_promoted_back)
{
    sv_put("a", 1.0f);
    sv_put("b", 2.0f);
    sv_put("c", 3.0f);
    sv_put("d", 4.0f); /* room for three: a goes down into host */
    cr_assert_eq(sv.host->contains(sv.host, "ns", 2, (const uint8_t *)"a", 1), LKV_TIER_PRESENT);
    static uint8_t coded[8192], want[4096];
    const size_t n = sv_reference(1.0f, 0, coded, sizeof coded, want, sizeof want);
    Latticekv__V1__GetResponse *g = sv_get("a", 0, 0);
    cr_assert_str_eq(g->tier, "host");
    cr_assert_eq(memcmp(g->tensor->data.data, want, sizeof want), 0);
    latticekv__v1__get_response__free_unpacked(g, NULL);
    g = sv_get("a", 0, 0);
    cr_assert_str_eq(g->tier, "gpu", "promoted by the host hit");
    cr_assert_eq(memcmp(g->tensor->data.data, want, sizeof want), 0);
    latticekv__v1__get_response__free_unpacked(g, NULL);
    g = sv_get("a", 1, 0);
    cr_assert_eq(g->coded.len, n);
    cr_assert_eq(memcmp(g->coded.data, coded, n), 0, "GPU -> host -> GPU kept every byte");
    latticekv__v1__get_response__free_unpacked(g, NULL);
    /* Delete reaches the GPU tier. */
    Latticekv__V1__BlockKey k = LATTICEKV__V1__BLOCK_KEY__INIT;
    k.namespace_ = "ns";
    k.key.data = (uint8_t *)"a";
    k.key.len = 1;
    Latticekv__V1__DeleteRequest dq = LATTICEKV__V1__DELETE_REQUEST__INIT;
    dq.key = &k;
    sv_call(LKV_METHOD_DELETE, &dq.base);
    cr_assert_eq(sv.gpu->contains(sv.gpu, "ns", 2, (const uint8_t *)"a", 1), LKV_TIER_ABSENT);
}
