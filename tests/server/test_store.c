/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_store.c - the host-memory store: LRU order, capacity, replacement,
 * failed puts, namespaces and blob lifetimes.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "host_tier.h"

static lkv_blob *blob_of(size_t len, uint8_t fill)
{
    lkv_blob *b = lkv_blob_create(len);
    cr_assert_not_null(b);
    memset(b->data, fill, len);
    return b;
}

/* Puts a blob of `len` bytes under ("n", key) and drops the caller's reference. */
static lkv_status put(lkv_tier *s, const char *key, size_t len, uint8_t fill)
{
    lkv_blob *b = blob_of(len, fill);
    lkv_diag d;
    const lkv_status st = host_put(s, "n", 1, (const uint8_t *)key, strlen(key), b, &d);
    lkv_blob_unref(b);
    return st;
}

static int has(lkv_tier *s, const char *key)
{
    return host_has(s, "n", 1, (const uint8_t *)key, strlen(key));
}

static uint8_t first_byte(lkv_tier *s, const char *key)
{
    lkv_blob *b = host_get(s, "n", 1, (const uint8_t *)key, strlen(key));
    cr_assert_not_null(b, "key %s missing", key);
    const uint8_t v = b->data[0];
    lkv_blob_unref(b);
    return v;
}

Test(store, put_get_delete_and_counters)
{
    lkv_tier *s = host_tier(1 << 20);
    cr_assert_eq(put(s, "a", 100, 7), LKV_OK);
    cr_assert_eq(first_byte(s, "a"), 7);
    cr_assert_null(host_get(s, "n", 1, (const uint8_t *)"b", 1));
    lkv_tier_stats st;
    s->stats(s, &st);
    cr_assert_eq(st.hits, 1);
    cr_assert_eq(st.misses, 1);
    cr_assert_eq(st.blocks, 1);
    cr_assert_eq(st.used_bytes, 100 + 1 + 1, "charge = block + namespace + key");
    cr_assert_eq(host_del(s, "n", 1, (const uint8_t *)"a", 1), 1);
    cr_assert_eq(host_del(s, "n", 1, (const uint8_t *)"a", 1), 0);
    s->stats(s, &st);
    cr_assert_eq(st.used_bytes, 0);
    cr_assert_eq(st.blocks, 0);
    s->close(s, NULL, NULL);
}

Test(store, lru_evicts_least_recently_used_first)
{
    /* Room for exactly three 98-byte blocks with 1-byte namespace and key. */
    lkv_tier *s = host_tier(300);
    cr_assert_eq(put(s, "a", 98, 1), LKV_OK);
    cr_assert_eq(put(s, "b", 98, 2), LKV_OK);
    cr_assert_eq(put(s, "c", 98, 3), LKV_OK);
    cr_assert_eq(first_byte(s, "a"), 1); /* a is now the most recent */
    cr_assert_eq(put(s, "d", 98, 4), LKV_OK);
    cr_assert(!has(s, "b"), "b was least recently used");
    cr_assert(has(s, "a") && has(s, "c") && has(s, "d"));
    cr_assert_eq(put(s, "e", 98, 5), LKV_OK);
    cr_assert(!has(s, "c"), "c is next");
    /* Lookup-style probes do not refresh: a stays older than d and e. */
    cr_assert(has(s, "a"));
    cr_assert_eq(put(s, "f", 98, 6), LKV_OK);
    cr_assert(!has(s, "a"));
    lkv_tier_stats st;
    s->stats(s, &st);
    cr_assert_eq(st.evictions, 3);
    cr_assert_eq(st.blocks, 3);
    cr_assert_leq(st.used_bytes, 300);
    s->close(s, NULL, NULL);
}

Test(store, a_block_larger_than_capacity_fails_and_keeps_the_old_value)
{
    lkv_tier *s = host_tier(1000);
    cr_assert_eq(put(s, "k", 500, 9), LKV_OK);
    cr_assert_eq(put(s, "x", 100, 8), LKV_OK);
    lkv_blob *big = blob_of(2000, 1);
    lkv_diag d;
    cr_assert_eq(host_put(s, "n", 1, (const uint8_t *)"k", 1, big, &d), LKV_ERR_LIMIT);
    cr_assert(strstr(d.msg, "2002") && strstr(d.msg, "1000"), "%s", d.msg);
    lkv_blob_unref(big);
    cr_assert_eq(first_byte(s, "k"), 9, "the previous value is untouched");
    cr_assert(has(s, "x"), "nothing was evicted by the failed put");
    s->close(s, NULL, NULL);
}

Test(store, replace_accounts_and_evicts_others_only_as_needed)
{
    lkv_tier *s = host_tier(1000);
    cr_assert_eq(put(s, "k", 400, 1), LKV_OK);
    cr_assert_eq(put(s, "o", 400, 2), LKV_OK);
    /* Replacing k with 590 bytes fits once the old k is gone: o stays. */
    cr_assert_eq(put(s, "k", 590, 3), LKV_OK);
    lkv_tier_stats st;
    s->stats(s, &st);
    cr_assert_eq(st.used_bytes, 402 + 592);
    cr_assert_eq(st.evictions, 0);
    cr_assert_eq(first_byte(s, "k"), 3);
    cr_assert(has(s, "o"));
    s->close(s, NULL, NULL);
}

Test(store, namespaces_are_separate_keys)
{
    lkv_tier *s = host_tier(1 << 20);
    lkv_blob *b1 = blob_of(10, 1), *b2 = blob_of(10, 2);
    cr_assert_eq(host_put(s, "a", 1, (const uint8_t *)"bc", 2, b1, NULL), LKV_OK);
    cr_assert_eq(host_put(s, "ab", 2, (const uint8_t *)"c", 1, b2, NULL), LKV_OK);
    lkv_blob *g = host_get(s, "a", 1, (const uint8_t *)"bc", 2);
    cr_assert_eq(g->data[0], 1);
    lkv_blob_unref(g);
    g = host_get(s, "ab", 2, (const uint8_t *)"c", 1);
    cr_assert_eq(g->data[0], 2);
    lkv_blob_unref(g);
    cr_assert(!host_has(s, "", 0, (const uint8_t *)"abc", 3));
    lkv_blob_unref(b1);
    lkv_blob_unref(b2);
    s->close(s, NULL, NULL);
}

Test(store, a_reference_outlives_replacement_and_eviction)
{
    lkv_tier *s = host_tier(200);
    cr_assert_eq(put(s, "k", 150, 4), LKV_OK);
    lkv_blob *held = host_get(s, "n", 1, (const uint8_t *)"k", 1);
    cr_assert_eq(put(s, "k", 150, 5), LKV_OK);
    cr_assert_eq(put(s, "z", 150, 6), LKV_OK); /* evicts the new k */
    cr_assert_eq(held->data[149], 4, "a reader's bytes stay valid");
    lkv_blob_unref(held);
    s->close(s, NULL, NULL);
}

Test(store, many_keys_survive_table_growth)
{
    lkv_tier *s = host_tier(1ull << 30);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        cr_assert_eq(put(s, key, 16, (uint8_t)i), LKV_OK);
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        cr_assert_eq(first_byte(s, key), (uint8_t)i);
    }
    lkv_tier_stats st;
    s->stats(s, &st);
    cr_assert_eq(st.blocks, 5000);
    s->close(s, NULL, NULL);
}

static int evicted;
static char evicted_key[16];

static void on_evict(lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *key, size_t key_len,
                     lkv_blob *blob, void *ud)
{
    (void)t;
    (void)ud;
    cr_assert_eq(ns_len, 1);
    cr_assert_eq(ns[0], 'n');
    cr_assert_not_null(blob, "the host tier hands the evicted bytes down");
    evicted++;
    snprintf(evicted_key, sizeof evicted_key, "%.*s", (int)key_len, (const char *)key);
}

Test(store, evictions_call_the_hook_oldest_first_with_the_bytes)
{
    lkv_tier *s = host_tier(300);
    s->set_evict_hook(s, on_evict, NULL);
    evicted = 0;
    cr_assert_eq(put(s, "a", 98, 1), LKV_OK);
    cr_assert_eq(put(s, "b", 98, 2), LKV_OK);
    cr_assert_eq(put(s, "c", 98, 3), LKV_OK);
    cr_assert_eq(first_byte(s, "a"), 1); /* a is now the most recent */
    cr_assert_eq(put(s, "d", 98, 4), LKV_OK);
    cr_assert_eq(evicted, 1);
    cr_assert_str_eq(evicted_key, "b");
    s->close(s, NULL, NULL);
}

Test(store, a_namespace_quota_refuses_before_changing_anything)
{
    const lkv_host_quota q[] = {{"n", 1, 250}};
    const lkv_host_config hc = {
        .capacity_bytes = 1 << 20, .high_pct = 100, .low_pct = 100, .quotas = q, .nquotas = 1};
    lkv_tier *s = NULL;
    lkv_diag d;
    cr_assert_eq(lkv_tier_host_create(&hc, &s, &d), LKV_OK);
    cr_assert_eq(put(s, "a", 98, 1), LKV_OK); /* 100 bytes charged */
    cr_assert_eq(put(s, "b", 98, 2), LKV_OK); /* 200 */
    lkv_blob *b = blob_of(98, 3);
    cr_assert_eq(host_put(s, "n", 1, (const uint8_t *)"c", 1, b, &d), LKV_ERR_LIMIT);
    cr_assert(strstr(d.msg, "namespace \"n\"") && strstr(d.msg, "quota of 250 bytes"), "%s", d.msg);
    cr_assert_eq(put(s, "a", 148, 4), LKV_OK, "a replacement is charged its difference");
    cr_assert_eq(first_byte(s, "a"), 4);
    cr_assert_eq(host_put(s, "other", 5, (const uint8_t *)"c", 1, b, &d), LKV_OK,
                 "other namespaces are not bounded");
    cr_assert_eq(host_del(s, "n", 1, (const uint8_t *)"b", 1), 1);
    cr_assert_eq(host_put(s, "n", 1, (const uint8_t *)"c", 1, b, &d), LKV_OK, "deletes free quota");
    lkv_blob_unref(b);
    s->close(s, NULL, NULL);
}

/* lkv_tier_host_each (Push by_prefix): the keys of one namespace that start
 * with a prefix, oldest first, without touching recency. */
typedef struct seen_keys {
    char keys[8][8];
    int n, stop_after;
} seen_keys;

static int note_key(const uint8_t *key, size_t key_len, void *ud)
{
    seen_keys *s = ud;
    cr_assert_lt(s->n, 8);
    cr_assert_lt(key_len, 8);
    memcpy(s->keys[s->n], key, key_len);
    s->keys[s->n][key_len] = 0;
    s->n++;
    return s->n == s->stop_after;
}

Test(store, each_lists_a_namespace_prefix_oldest_first_and_can_stop)
{
    lkv_tier *s = host_tier(1 << 20);
    cr_assert_eq(put(s, "r1/a", 10, 1), LKV_OK);
    cr_assert_eq(put(s, "r2/a", 10, 2), LKV_OK);
    cr_assert_eq(put(s, "r1/b", 10, 3), LKV_OK);
    lkv_blob *b = blob_of(10, 4);
    cr_assert_eq(host_put(s, "m", 1, (const uint8_t *)"r1/c", 4, b, NULL), LKV_OK);
    lkv_blob_unref(b);
    seen_keys k = {.stop_after = 0};
    lkv_tier_host_each(s, "n", 1, (const uint8_t *)"r1/", 3, note_key, &k);
    cr_assert_eq(k.n, 2);
    cr_assert_str_eq(k.keys[0], "r1/a");
    cr_assert_str_eq(k.keys[1], "r1/b");
    /* An empty prefix is the whole namespace; fn's nonzero return stops. */
    seen_keys all = {.stop_after = 0};
    lkv_tier_host_each(s, "n", 1, NULL, 0, note_key, &all);
    cr_assert_eq(all.n, 3);
    seen_keys one = {.stop_after = 1};
    lkv_tier_host_each(s, "n", 1, NULL, 0, note_key, &one);
    cr_assert_eq(one.n, 1);
    /* Listing is not a Get: no hit was counted. */
    lkv_tier_stats st;
    s->stats(s, &st);
    cr_assert_eq(st.hits, 0);
    s->close(s, NULL, NULL);
}
