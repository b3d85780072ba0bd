/* SPDX-License-Identifier: Apache-2.0 */
/*
 * consumer.c - a program outside the tree, built against an installed
 * latticekv (through pkg-config or find_package; tests/install/check.sh).
 *
 *   consumer            round-trips a tensor through the codec library and
 *                       prints lkv_version_string();
 *   consumer ADDR       also stores the tensor in the latticekvd at ADDR with
 *                       the client library, reads it back and checks that the
 *                       daemon's bytes equal the local codec's.
 * Exit 0 when every check holds; each failure prints one line naming it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lkv_codec.h>
#ifdef LKV_CONSUMER_CLIENT
#include <lkv_client.h>
#endif

#define ROWS 64u
#define DIM  128u

static int fail(const char *what, const char *detail)
{
    fprintf(stderr, "consumer: %s: %s\n", what, detail);
    return 1;
}

int main(int argc, char **argv)
{
    static float src[ROWS * DIM], back[ROWS * DIM];
    static unsigned char coded[ROWS * DIM * 4 + 4096];
    unsigned s = 12345;
    for (size_t i = 0; i < ROWS * DIM; i++) {
        s = s * 1103515245u + 12345u;
        src[i] = (float)((s >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
    const lkv_params p = {LKV_VARIANT_E8, LKV_Q_DEFAULT, DIM};
    const uint64_t shape[2] = {ROWS, DIM};
    size_t coded_len = 0, back_len = 0;
    lkv_diag d;
    if (lkv_compress(&p, LKV_DTYPE_FP32, shape, 2, src, sizeof src, coded, sizeof coded, &coded_len,
                     LKV_ISA_AUTO, &d) != LKV_OK)
        return fail("lkv_compress", d.msg);
    if (lkv_decompress(coded, coded_len, 0, back, sizeof back, &back_len, NULL, LKV_ISA_AUTO, &d) !=
        LKV_OK)
        return fail("lkv_decompress", d.msg);
    double err = 0, ref = 0;
    for (size_t i = 0; i < ROWS * DIM; i++) {
        err += (double)(back[i] - src[i]) * (back[i] - src[i]);
        ref += (double)src[i] * src[i];
    }
    const double rel = sqrt(err / ref);
    if (back_len != sizeof back || !(rel < 0.05)) {
        char msg[96];
        snprintf(msg, sizeof msg, "%zu bytes back, relative error %.4f", back_len, rel);
        return fail("round trip", msg);
    }
    printf("version %s\nroundtrip %zu -> %zu bytes, relative error %.5f\n", lkv_version_string(),
           sizeof src, coded_len, rel);

#ifdef LKV_CONSUMER_CLIENT
    if (argc > 1) {
        lkv_client *c = NULL;
        lkv_client_error e;
        if (lkv_client_create(argv[1], NULL, &c, &e) != LKV_RPC_OK ||
            lkv_client_wait_ready(c, 10000, &e) != LKV_RPC_OK)
            return fail("connect", e.msg);
        const lkv_tensor t = {LKV_DTYPE_FP32, 2, {ROWS, DIM}, src, sizeof src};
        const lkv_key key = {"consumer", 8};
        lkv_buf stored = {0};
        int rc = lkv_client_put(c, "", key, &t, NULL, NULL, &e);
        if (rc == LKV_RPC_OK)
            rc = lkv_client_get_coded(c, "", key, &stored, &e);
        lkv_client_free(c);
        if (rc != LKV_RPC_OK)
            return fail(lkv_rpc_code_name(rc), e.msg);
        const int same = stored.len == coded_len && memcmp(stored.data, coded, coded_len) == 0;
        lkv_buf_clear(&stored);
        if (!same)
            return fail("daemon", "stored container differs from the local codec's");
        printf("daemon stored the same %zu bytes\n", coded_len);
    }
#else
    (void)argv;
    if (argc > 1)
        return fail("usage", "built without the client library");
#endif
    return 0;
}
