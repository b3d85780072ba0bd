/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_metrics.c - the Prometheus generator (metrics.c): histograms, the
 * rendering of a snapshot, and the HTTP request-head reader of the metrics
 * listener. The listener itself is tested end to end against the real
 * daemon (tests/integration/test_metrics.py).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "lkv_server.h"

Test(metrics, histogram_buckets_hold_their_upper_bound)
{
    static const double bounds[] = {1, 10, 100};
    lkv_histogram h;
    lkv_histogram_init(&h, bounds, 3);
    const double obs[] = {0, 1, 1.5, 10, 11, 100, 1000, 1e9};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
        lkv_histogram_observe(&h, obs[i]);
    cr_assert_eq(h.counts[0], 2); /* 0, 1 */
    cr_assert_eq(h.counts[1], 2); /* 1.5, 10 */
    cr_assert_eq(h.counts[2], 2); /* 11, 100 */
    cr_assert_eq(h.counts[3], 2); /* +Inf */
    cr_assert_eq(h.count, 8);
    cr_assert_float_eq(h.sum, 0 + 1 + 1.5 + 10 + 11 + 100 + 1000 + 1e9, 1e-3);
}

static lkv_metrics_snapshot snapshot(lkv_histogram *hv, lkv_reply_counts *rc)
{
    static const double bounds[] = {1, 4};
    lkv_histogram_init(hv, bounds, 2);
    lkv_histogram_observe(hv, 3);
    lkv_histogram_observe(hv, 5);
    memset(rc, 0, sizeof *rc);
    rc->n[LKV_METHOD_PUT][LKV_GRPC_OK] = 7;
    rc->n[LKV_METHOD_PUT][LKV_GRPC_RESOURCE_EXHAUSTED] = 2;
    rc->n[LKV_METHOD_COUNT][LKV_GRPC_UNIMPLEMENTED] = 1;
    rc->n[LKV_METHOD_GET][LKV_GRPC_UNAUTHENTICATED] = 3;
    lkv_metrics_snapshot m;
    memset(&m, 0, sizeof m);
    m.stats.uptime_ms = 1500;
    m.stats.raw_bytes_in = 3400;
    m.stats.coded_bytes_out = 1000;
    m.version = "9.9.9";
    m.backend = "cu\"da";
    m.replies = rc;
    m.batch_vectors = hv;
    m.queue_depth = 12;
    m.auth_failures[LKV_AUTH_FAILURE_UNAUTHENTICATED] = 3;
    m.tiers[0].name = "host";
    m.tiers[0].st.hits = 5;
    m.tiers[1].name = "ssd";
    m.tiers[1].st.evictions = 6;
    m.n_tiers = 2;
    return m;
}

Test(metrics, render_names_types_and_labels)
{
    lkv_histogram hv;
    lkv_reply_counts rc;
    const lkv_metrics_snapshot m = snapshot(&hv, &rc);
    char text[16384];
    const size_t n = lkv_metrics_render(&m, text, sizeof text);
    cr_assert_eq(n, strlen(text));
    static const char *const want[] = {
        "latticekv_build_info{version=\"9.9.9\"} 1\n",
        "latticekv_backend_info{backend=\"cu\\\"da\"} 1\n", /* label values are escaped */
        "# TYPE latticekv_uptime_seconds gauge\nlatticekv_uptime_seconds 1.500\n",
        "# TYPE latticekv_raw_bytes_total counter\nlatticekv_raw_bytes_total 3400\n",
        "latticekv_requests_total{method=\"latticekv.v1.KVStore/Put\",code=\"OK\"} 7\n",
        "latticekv_requests_total{method=\"latticekv.v1.KVStore/Put\",code=\"RESOURCE_EXHAUSTED\"} "
        "2\n",
        "latticekv_requests_total{method=\"unknown\",code=\"UNIMPLEMENTED\"} 1\n",
        "latticekv_compression_ratio 3.3999999999999999\n",
        "latticekv_batch_vectors_bucket{le=\"1\"} 0\nlatticekv_batch_vectors_bucket{le=\"4\"} 1\n"
        "latticekv_batch_vectors_bucket{le=\"+Inf\"} 2\nlatticekv_batch_vectors_sum 8\n"
        "latticekv_batch_vectors_count 2\n",
        "latticekv_queue_depth 12\n",
        "latticekv_auth_failures_total{reason=\"unauthenticated\"} 3\n",
        "latticekv_auth_failures_total{reason=\"permission_denied\"} 0\n",
        "# TYPE latticekv_tier_hits_total counter\nlatticekv_tier_hits_total{tier=\"host\"} 5\n"
        "latticekv_tier_hits_total{tier=\"ssd\"} 0\n",
        "latticekv_tier_evictions_total{tier=\"ssd\"} 6\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert(strstr(text, want[i]), "missing %s in:\n%s", want[i], text);
    /* Rows with a labelled family instead are not also plain samples. */
    cr_assert_null(strstr(text, "latticekv_requests_total 0"), "%s", text);
    cr_assert_null(strstr(text, "latticekv_errors"), "%s", text);
    /* No codec_seconds histogram was given: none is rendered. */
    cr_assert_null(strstr(text, "codec_seconds"), "%s", text);
}

Test(metrics, render_measures_like_snprintf)
{
    lkv_histogram hv;
    lkv_reply_counts rc;
    const lkv_metrics_snapshot m = snapshot(&hv, &rc);
    const size_t n = lkv_metrics_render(&m, NULL, 0);
    char full[16384], small[100];
    cr_assert_eq(lkv_metrics_render(&m, full, sizeof full), n);
    cr_assert_eq(lkv_metrics_render(&m, small, sizeof small), n);
    cr_assert_eq(strlen(small), sizeof small - 1);
    cr_assert_eq(memcmp(small, full, sizeof small - 1), 0);
}

Test(metrics, http_request_heads)
{
    static const struct {
        const char *head;
        int want;
    } cases[] = {
        {"", 0},
        {"GET /metrics HTTP/1.1\r\n", 0}, /* no blank line yet */
        {"GET /metrics HTTP/1.1\r\nHost: a\r\n", 0},
        {"GET /metrics HTTP/1.1\r\n\r\n", 200},
        {"GET /metrics HTTP/1.0\n\n", 200},
        {"GET /metrics?x=1 HTTP/1.1\r\nHost: a:1\r\nAccept: */*\r\n\r\n", 200},
        {"GET /metrics/ HTTP/1.1\r\n\r\n", 404},
        {"GET /metricsx HTTP/1.1\r\n\r\n", 404},
        {"GET / HTTP/1.1\r\n\r\n", 404},
        {"POST /metrics HTTP/1.1\r\n\r\n", 405},
        {"get /metrics HTTP/1.1\r\n\r\n", 405},
        {"GET /metrics HTTP/2.0\r\n\r\n", 400},
        {"GET /metrics HTTP/1.1 \r\n\r\n", 400},
        {"GET  /metrics HTTP/1.1\r\n\r\n", 400},
        {"GET /metrics\r\n\r\n", 400},
        {" GET /metrics HTTP/1.1\r\n\r\n", 400},
        {"GET /metrics HTTP/1.1\r\nBad Header: x\r\n\r\n", 400},
        {"GET /metrics HTTP/1.1\r\n: x\r\n\r\n", 400},
        {"GET /metrics HTTP/1.1\r\n folded\r\n\r\n", 400},
        {"GET /metrics HTTP/1.1\r\nX: a\x01\r\n\r\n", 400},
        {"\r\n\r\n", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_eq(lkv_http_parse(cases[i].head, strlen(cases[i].head)), cases[i].want, "%zu: %s",
                     i, cases[i].head);
    /* A head that does not end within LKV_HTTP_HEAD_MAX bytes is 431. */
    static char big[LKV_HTTP_HEAD_MAX + 64];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
    cr_assert_eq(lkv_http_parse(big, LKV_HTTP_HEAD_MAX), 431);
    cr_assert_eq(lkv_http_parse(big, 100), 0);
    memcpy(big + sizeof big - 4, "\r\n\r\n", 4);
    cr_assert_eq(lkv_http_parse(big, sizeof big), 431);
}
