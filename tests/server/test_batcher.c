/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_batcher.c - dynamic batching: coalescing, waiting, splitting,
 * fairness, the in-flight limit, batching off, and error propagation.
 * The batcher has no clock of its own, so the tests step time by hand.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "lkv_server.h"

#define MAXB 64

typedef struct sink {
    lkv_batch *b[MAXB];
    int n;
} sink;

static void collect(lkv_batch *b, void *ud)
{
    sink *s = ud;
    cr_assert_lt(s->n, MAXB);
    s->b[s->n++] = b;
}

static int done_count;
static void on_done(lkv_work *w)
{
    (void)w;
    done_count++;
}

/* Encode work of n bf16 vectors of dim 128 (256 bytes in, 106 bytes out at E8 Q=38). */
static void make_work(lkv_work *w, size_t n, uint8_t *src, uint8_t *dst, uint32_t q)
{
    memset(w, 0, sizeof *w);
    w->op = LKV_OP_ENCODE;
    w->params = (lkv_params){LKV_VARIANT_E8, q, 128};
    w->dtype = LKV_DTYPE_BF16;
    w->src = src;
    w->dst = dst;
    w->n = n;
    w->done = on_done;
}

static lkv_batcher *make(sink *s, size_t maxv, uint64_t wait, unsigned inflight)
{
    memset(s, 0, sizeof *s);
    done_count = 0;
    const lkv_batcher_cfg cfg = {maxv, wait, inflight, 64};
    return lkv_batcher_create(&cfg, collect, s);
}

Test(batcher, while_the_codec_is_busy_work_waits_and_is_coalesced)
{
    sink s;
    lkv_batcher *b = make(&s, 100, 1000, 4);
    static uint8_t src[4][10 * 256], dst[4][10 * 106];
    lkv_work w[4];
    make_work(&w[3], 10, src[3], dst[3], 38);
    lkv_batcher_submit(b, &w[3], 0);
    lkv_batcher_poll(b, 0);
    cr_assert_eq(s.n, 1, "an idle codec takes work at once");
    for (int i = 0; i < 3; i++) {
        make_work(&w[i], 10, src[i], dst[i], 38);
        lkv_batcher_submit(b, &w[i], 100);
    }
    cr_assert_eq(lkv_batcher_poll(b, 100), 1000, "waits for more work");
    cr_assert_eq(s.n, 1);
    cr_assert_eq(lkv_batcher_poll(b, 500), 600);
    cr_assert_eq(lkv_batcher_poll(b, 1100), UINT64_MAX);
    cr_assert_eq(s.n, 2, "one launch for the three requests");
    cr_assert_eq(s.b[1]->nseg, 3);
    cr_assert_eq(s.b[1]->nvec, 30);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(s.b[1]->seg[i].work, &w[i], "FIFO order");
        cr_assert_eq(s.b[1]->seg[i].src, src[i]);
    }
    lkv_batcher_complete(b, s.b[0]);
    lkv_batcher_complete(b, s.b[1]);
    cr_assert_eq(done_count, 4);
    lkv_batcher_stats st;
    lkv_batcher_get_stats(b, &st);
    cr_assert_eq(st.batches, 2);
    cr_assert_eq(st.batched_vectors, 40);
    lkv_batcher_free(b);
}

Test(batcher, work_that_arrives_together_at_an_idle_codec_is_one_launch)
{
    sink s;
    lkv_batcher *b = make(&s, 100, 1000, 4);
    static uint8_t src[3][10 * 256], dst[3][10 * 106];
    lkv_work w[3];
    for (int i = 0; i < 3; i++) {
        make_work(&w[i], 10, src[i], dst[i], 38);
        lkv_batcher_submit(b, &w[i], 0);
    }
    cr_assert_eq(lkv_batcher_poll(b, 0), UINT64_MAX);
    cr_assert_eq(s.n, 1);
    cr_assert_eq(s.b[0]->nseg, 3);
    lkv_batcher_complete(b, s.b[0]);
    cr_assert_eq(done_count, 3);
    lkv_batcher_free(b);
}

Test(batcher, a_full_batch_leaves_without_waiting)
{
    sink s;
    lkv_batcher *b = make(&s, 32, 1000000, 4);
    static uint8_t src[64 * 256], dst[64 * 106];
    lkv_work w[2];
    make_work(&w[0], 16, src, dst, 38);
    make_work(&w[1], 16, src + 16 * 256, dst + 16 * 106, 38);
    lkv_batcher_submit(b, &w[0], 0);
    lkv_batcher_submit(b, &w[1], 0);
    lkv_batcher_poll(b, 0);
    cr_assert_eq(s.n, 1);
    cr_assert_eq(s.b[0]->nvec, 32);
    lkv_batcher_complete(b, s.b[0]);
    cr_assert_eq(done_count, 2);
    lkv_batcher_free(b);
}

Test(batcher, a_large_request_is_split_into_chunks_with_the_right_offsets)
{
    sink s;
    lkv_batcher *b = make(&s, 100, 0, 8);
    static uint8_t src[250 * 256], dst[250 * 106];
    lkv_work w;
    make_work(&w, 250, src, dst, 38);
    lkv_batcher_submit(b, &w, 0);
    lkv_batcher_poll(b, 0);
    cr_assert_eq(s.n, 3);
    const size_t want_n[] = {100, 100, 50};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(s.b[i]->nseg, 1);
        cr_assert_eq(s.b[i]->seg[0].n, want_n[i]);
        cr_assert_eq(s.b[i]->seg[0].first, (size_t)i * 100);
        cr_assert_eq(s.b[i]->seg[0].src, src + i * 100 * 256);
        cr_assert_eq(s.b[i]->seg[0].dst, dst + i * 100 * 106);
    }
    /* Completion in any order; done runs once, after the last chunk. */
    lkv_batcher_complete(b, s.b[2]);
    lkv_batcher_complete(b, s.b[0]);
    cr_assert_eq(done_count, 0);
    lkv_batcher_complete(b, s.b[1]);
    cr_assert_eq(done_count, 1);
    lkv_batcher_free(b);
}

Test(batcher, a_huge_request_does_not_starve_a_small_one)
{
    sink s;
    lkv_batcher *b = make(&s, 100, 10, 1);
    static uint8_t src[1000 * 256], dst[1000 * 106], s2[10 * 256], d2[10 * 106];
    lkv_work big, small;
    make_work(&big, 1000, src, dst, 38);
    make_work(&small, 10, s2, d2, 38);
    lkv_batcher_submit(b, &big, 0);
    lkv_batcher_submit(b, &small, 1);
    lkv_batcher_poll(b, 5);
    cr_assert_eq(s.n, 1, "in-flight limit 1");
    cr_assert_eq(s.b[0]->seg[0].work, &big);
    cr_assert_eq(s.b[0]->nvec, 100);
    lkv_batcher_complete(b, s.b[0]);
    lkv_batcher_poll(b, 20);
    cr_assert_eq(s.n, 2);
    cr_assert_eq(s.b[1]->seg[0].work, &small, "the small request goes in the next launch");
    cr_assert_eq(s.b[1]->nvec, 100, "topped up with the big one's next chunk");
    lkv_batcher_complete(b, s.b[1]);
    cr_assert_eq(done_count, 1);
    lkv_batcher_free(b);
}

Test(batcher, inflight_limit_holds_work_back)
{
    sink s;
    lkv_batcher *b = make(&s, 10, 0, 2);
    static uint8_t src[50 * 256], dst[50 * 106];
    lkv_work w;
    make_work(&w, 50, src, dst, 38);
    lkv_batcher_submit(b, &w, 0);
    lkv_batcher_poll(b, 0);
    cr_assert_eq(s.n, 2);
    lkv_batcher_stats st;
    lkv_batcher_get_stats(b, &st);
    cr_assert_eq(st.inflight, 2);
    cr_assert_eq(st.pending_vectors, 30);
    lkv_batcher_complete(b, s.b[0]);
    lkv_batcher_poll(b, 0);
    cr_assert_eq(s.n, 3);
    for (int i = 1; i < 3; i++)
        lkv_batcher_complete(b, s.b[i]);
    lkv_batcher_poll(b, 0);
    lkv_batcher_complete(b, s.b[3]);
    lkv_batcher_complete(b, s.b[4]);
    cr_assert_eq(s.n, 5);
    cr_assert_eq(done_count, 1);
    lkv_batcher_free(b);
}

Test(batcher, batching_off_runs_each_request_alone)
{
    sink s;
    lkv_batcher *b = make(&s, 100, 0, 8);
    static uint8_t src[3][256], dst[3][106];
    lkv_work w[3];
    for (int i = 0; i < 3; i++) {
        make_work(&w[i], 1, src[i], dst[i], 38);
        lkv_batcher_submit(b, &w[i], 0);
    }
    lkv_batcher_poll(b, 0);
    cr_assert_eq(s.n, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(s.b[i]->nseg, 1);
        lkv_batcher_complete(b, s.b[i]);
    }
    cr_assert_eq(done_count, 3);
    lkv_batcher_free(b);
}

Test(batcher, different_parameters_never_share_a_launch)
{
    sink s;
    lkv_batcher *b = make(&s, 100, 10, 8);
    static uint8_t src[4][256], dst[4][200];
    lkv_work w[4];
    for (int i = 0; i < 4; i++) {
        make_work(&w[i], 1, src[i], dst[i], i % 2 ? 38 : 76);
        lkv_batcher_submit(b, &w[i], 0);
    }
    lkv_batcher_poll(b, 10);
    cr_assert_eq(s.n, 2);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(s.b[i]->nseg, 2);
        cr_assert_eq(s.b[i]->seg[0].work->params.q, s.b[i]->seg[1].work->params.q);
        cr_assert_eq(s.b[i]->params.q, s.b[i]->seg[0].work->params.q);
        lkv_batcher_complete(b, s.b[i]);
    }
    cr_assert_eq(done_count, 4);
    lkv_batcher_free(b);
}

Test(batcher, the_earliest_failing_vector_is_reported_with_its_offset)
{
    sink s;
    lkv_batcher *b = make(&s, 10, 0, 8);
    static uint8_t src[30 * 256], dst[30 * 106];
    lkv_work w;
    make_work(&w, 30, src, dst, 38);
    lkv_batcher_submit(b, &w, 0);
    lkv_batcher_poll(b, 0);
    cr_assert_eq(s.n, 3);
    s.b[2]->seg[0].status = LKV_ERR_NONFINITE;
    s.b[2]->seg[0].diag.index = 5;
    s.b[1]->seg[0].status = LKV_ERR_NONFINITE;
    s.b[1]->seg[0].diag.index = 3;
    lkv_batcher_complete(b, s.b[2]);
    lkv_batcher_complete(b, s.b[1]);
    lkv_batcher_complete(b, s.b[0]);
    cr_assert_eq(done_count, 1);
    cr_assert_eq(w.status, LKV_ERR_NONFINITE);
    cr_assert_eq(w.diag.index, 13, "vector 3 of the chunk starting at 10");
    lkv_batcher_free(b);
}

Test(batcher, empty_work_completes_at_the_next_poll)
{
    sink s;
    lkv_batcher *b = make(&s, 10, 1000, 8);
    lkv_work w;
    make_work(&w, 0, NULL, NULL, 38);
    lkv_batcher_submit(b, &w, 0);
    cr_assert_eq(done_count, 0);
    cr_assert_eq(lkv_batcher_poll(b, 0), UINT64_MAX);
    cr_assert_eq(done_count, 1);
    cr_assert_eq(s.n, 0);
    lkv_batcher_free(b);
}

Test(batcher, flush_mode_dispatches_without_waiting)
{
    sink s;
    lkv_batcher *b = make(&s, 100, 1000000, 8);
    static uint8_t src[3][256], dst[3][106];
    lkv_work w[3];
    make_work(&w[2], 1, src[2], dst[2], 38);
    lkv_batcher_submit(b, &w[2], 0);
    lkv_batcher_poll(b, 0); /* keeps the codec busy */
    for (int i = 0; i < 2; i++) {
        make_work(&w[i], 1, src[i], dst[i], 38);
        lkv_batcher_submit(b, &w[i], 0);
    }
    lkv_batcher_poll(b, 0);
    cr_assert_eq(s.n, 1, "waiting while busy");
    lkv_batcher_flush_mode(b, 1);
    lkv_batcher_poll(b, 0);
    cr_assert_eq(s.n, 2);
    cr_assert_eq(s.b[1]->nseg, 2);
    lkv_batcher_complete(b, s.b[0]);
    lkv_batcher_complete(b, s.b[1]);
    cr_assert_eq(done_count, 3);
    lkv_batcher_free(b);
}

/* Deterministic fp32 vectors in [-1, 1) (a 32-bit LCG). */
static void fill_f32(float *x, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) / (float)(1u << 23) - 1.0f;
    }
}

Test(batcher, profile_2_work_runs_whole_in_a_batch_of_its_own)
{
    /* Profile 2 chunks have no fixed size, so a work larger than
     * max_vectors is not split, and it never shares a batch with profile 1
     * work of the same variant, Q and dim. (p: container version 3, the
     * newest; version 2 is in the test below.) */
    sink s;
    lkv_batcher *b = make(&s, 100, 0, 8);
    lkv_batcher_flush_mode(b, 1); /* take everything pending at once */
    enum { N = 250, D = 128 };
    static float x[N * D];
    static uint8_t y[N * D * 4], want_y[N * D * 4]; /* decoded fp32, compared as bytes */
    static uint8_t p2[N * D * 4], want[N * D * 4], p1src[10 * 256], p1dst[10 * 106];
    fill_f32(x, N * D, 7);
    const lkv_params p = {LKV_VARIANT_E8, 38, D, LKV_PROFILE_2};
    const size_t bound = lkv_p2_payload_bound(&p, N);
    cr_assert(bound > 0 && bound <= sizeof p2);
    size_t want_len = 0;
    cr_assert_eq(lkv_p2_encode(&p, LKV_DTYPE_FP32, x, N, want, sizeof want, &want_len, NULL),
                 LKV_OK);

    lkv_work p1, enc, empty;
    make_work(&p1, 10, p1src, p1dst, 38);
    memset(&enc, 0, sizeof enc);
    enc.op = LKV_OP_ENCODE;
    enc.params = p;
    enc.dtype = LKV_DTYPE_FP32;
    enc.src = (const uint8_t *)x;
    enc.dst = p2;
    enc.dst_cap = bound;
    enc.n = N;
    enc.done = on_done;
    empty = enc;
    empty.n = 0;
    lkv_batcher_submit(b, &enc, 0);
    lkv_batcher_submit(b, &p1, 0);
    lkv_batcher_submit(b, &empty, 0);
    lkv_batcher_poll(b, 0);
    cr_assert_eq(done_count, 1, "an empty work completes at once");
    cr_assert_eq(empty.dst_len, 0);
    cr_assert_eq(s.n, 2, "the profile 2 work and the profile 1 work: two launches");
    cr_assert_eq(s.b[0]->nseg, 1);
    cr_assert_eq(s.b[0]->seg[0].n, N, "not split at max_vectors");
    cr_assert_eq(s.b[1]->seg[0].work, &p1);
    lkv_backend_run_cpu(s.b[0]);
    lkv_batcher_complete(b, s.b[0]);
    cr_assert_eq(done_count, 2);
    cr_assert_eq(enc.status, LKV_OK);
    cr_assert_eq(enc.dst_len, want_len, "the payload's size comes back with the work");
    cr_assert_eq(memcmp(p2, want, want_len), 0, "byte-identical to lkv_p2_encode");
    lkv_batcher_complete(b, s.b[1]);

    /* And back: the decode reads exactly src_len payload bytes. */
    lkv_work dec;
    memset(&dec, 0, sizeof dec);
    dec.op = LKV_OP_DECODE;
    dec.params = p;
    dec.dtype = LKV_DTYPE_FP32;
    dec.src = p2;
    dec.src_len = enc.dst_len;
    dec.dst = y;
    dec.n = N;
    dec.done = on_done;
    lkv_batcher_submit(b, &dec, 0);
    lkv_batcher_poll(b, 0);
    cr_assert_eq(s.n, 3);
    lkv_backend_run_cpu(s.b[2]);
    lkv_batcher_complete(b, s.b[2]);
    cr_assert_eq(dec.status, LKV_OK);
    cr_assert_eq(lkv_p2_decode(&p, want, want_len, N, LKV_DTYPE_FP32, want_y, NULL), LKV_OK);
    cr_assert_eq(memcmp(y, want_y, sizeof y), 0);

    /* A payload cut short fails the work with the codec's status. */
    dec.src_len = enc.dst_len - 1;
    lkv_batcher_submit(b, &dec, 0);
    lkv_batcher_poll(b, 0);
    lkv_backend_run_cpu(s.b[3]);
    lkv_batcher_complete(b, s.b[3]);
    cr_assert_neq(dec.status, LKV_OK);
    lkv_batcher_free(b);
}

/* A profile 2 decode work of n fp32 vectors from the payload src. */
static void make_p2_decode(lkv_work *w, const lkv_params *p, const uint8_t *src, size_t len,
                           uint8_t *dst, size_t n)
{
    memset(w, 0, sizeof *w);
    w->op = LKV_OP_DECODE;
    w->params = *p;
    w->dtype = LKV_DTYPE_FP32;
    w->src = src;
    w->src_len = len;
    w->dst = dst;
    w->n = n;
    w->done = on_done;
}

Test(batcher, profile_2_container_versions_are_separate_groups)
{
    /* Version 2 and version 3 payloads of the same Q, dim and dtype need
     * different decoders (chunks of 128 vectors and 16-bit norms, or of 256
     * and byte norms): work of one version never counts toward the other's
     * group (max_vectors) nor rides in its batch, and each batch carries its
     * own version to the backend. */
    sink s;
    lkv_batcher *b = make(&s, 100, 1000000, 8);
    enum { N = 60, D = 128 };
    static float x[N * D];
    static uint8_t coded[2][N * D * 4], y[3][N * D * 4], want_y[N * D * 4];
    static uint8_t p1src[256], p1dst[106];
    fill_f32(x, N * D, 11);
    const lkv_params p[2] = {{LKV_VARIANT_E8, 54, D, LKV_PROFILE_2, 2},
                             {LKV_VARIANT_E8, 54, D, LKV_PROFILE_2, 3}};
    size_t len[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(
            lkv_p2_encode(&p[i], LKV_DTYPE_FP32, x, N, coded[i], sizeof coded[i], &len[i], NULL),
            LKV_OK);
    cr_assert(len[0] != len[1] || memcmp(coded[0], coded[1], len[0]) != 0, "two layouts");

    lkv_work busy, v2, v3, v3b;
    make_work(&busy, 1, p1src, p1dst, 38);
    lkv_batcher_submit(b, &busy, 0);
    lkv_batcher_poll(b, 0);
    cr_assert_eq(s.n, 1, "the codec is busy");
    make_p2_decode(&v3, &p[1], coded[1], len[1], y[0], N);
    make_p2_decode(&v2, &p[0], coded[0], len[0], y[1], N);
    lkv_batcher_submit(b, &v3, 10);
    lkv_batcher_submit(b, &v2, 10);
    cr_assert_eq(lkv_batcher_poll(b, 10), 1000000,
                 "60 + 60 vectors of two versions are not 100 pending in one group");
    cr_assert_eq(s.n, 1);
    /* A second version 3 work fills the head's group: the version 3 work
     * goes (profile 2: one work a launch); the version 2 one still waits. */
    make_p2_decode(&v3b, &p[1], coded[1], len[1], y[2], N);
    lkv_batcher_submit(b, &v3b, 20);
    cr_assert_eq(lkv_batcher_poll(b, 20), 1000000 - 10);
    cr_assert_eq(s.n, 2);
    cr_assert_eq(s.b[1]->nseg, 1);
    cr_assert_eq(s.b[1]->seg[0].work, &v3);
    /* Flushed, the rest go each in a launch of its own, in FIFO order. */
    lkv_batcher_flush_mode(b, 1);
    lkv_batcher_poll(b, 30);
    cr_assert_eq(s.n, 4);
    const lkv_work *const order[] = {&v3, &v2, &v3b};
    for (int k = 1; k <= 3; k++) {
        cr_assert_eq(s.b[k]->nseg, 1);
        cr_assert_eq(s.b[k]->seg[0].work, order[k - 1]);
        cr_assert_eq(s.b[k]->seg[0].n, N);
        cr_assert_eq(lkv_p2_format_of(&s.b[k]->params), lkv_p2_format_of(&order[k - 1]->params));
        lkv_backend_run_cpu(s.b[k]);
        lkv_batcher_complete(b, s.b[k]);
    }
    lkv_batcher_complete(b, s.b[0]);
    cr_assert_eq(done_count, 4);
    /* Each decoded as its own version does. */
    const lkv_work *const dec[] = {&v3, &v2, &v3b};
    for (int k = 0; k < 3; k++) {
        const int v = dec[k] == &v2 ? 0 : 1;
        cr_assert_eq(dec[k]->status, LKV_OK, "%d", k);
        cr_assert_eq(lkv_p2_decode(&p[v], coded[v], len[v], N, LKV_DTYPE_FP32, want_y, NULL),
                     LKV_OK);
        cr_assert_eq(memcmp(dec[k]->dst, want_y, sizeof want_y), 0, "%d", k);
    }
    lkv_batcher_free(b);
}
