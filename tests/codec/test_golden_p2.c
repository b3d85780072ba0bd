/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Golden profile 2 containers, both container versions: committed in
 * tests/golden/p2/ with their SHA-256 pinned in tests/golden/p2/SHA256SUMS.
 * Re-encoding the same inputs must give the same bytes on every machine,
 * every instruction-set path and every future version of the codec; a
 * change here is a format change (the CUDA kernels are held to these bytes
 * too).
 *
 * Version 2 (p2_*.lkv, format = 2): two chunks of 128, a partial chunk,
 * pieces (D = 96), the small-Q coset model and Q = 1023. Version 3
 * (p2v3_*.lkv, format = 3): the same four inputs in the new layout (one
 * chunk of 256 for the 160 vectors of the first; a pad byte after the 33
 * norms of p2v3_q3_d8), and two of its own: 301 vectors of D = 112 (a full
 * chunk of 256 and one of 45, three pieces, 135 norm bytes and a pad byte),
 * and norms near 4e5, past version 2's fp16 limit of 65520. Version 4
 * (p2v4_*.lkv, format = 4, a mode byte per piece): three of the inputs
 * above, whose i.i.d. elements code rotated (mode 0, version 3's piece
 * behind two zero bytes), and three whose channels are scaled by powers of
 * two 2^-4 .. 2^4 drawn per channel ("_chan"), which code in the channel
 * domain (mode 1, 5-bit levels per channel): D = 128 in a full chunk and a
 * partial one, D = 96 (pieces of 64 and 32) in fp16, and D = 16 (a pad
 * byte after its 10 level bytes). The test reads each chunk's first mode
 * byte and requires the mode the input was made for; a rotated one must
 * decode exactly as the version 3 file of the same input.
 *
 * The decoder's output is pinned as well: tests/golden/p2/DECODED_SHA256SUMS
 * holds the SHA-256 of each file decoded to fp32 (the decoder's arithmetic
 * is IEEE fp32 in a fixed order, codec/FORMAT.md), which every path must
 * reproduce bit for bit.
 *
 * How the files were made: each case's input is Irwin-Hall noise from the
 * test PRNG seeded by the case's input name (below), encoded with
 * lkv_compress. `LKV_UPDATE_GOLDEN=1 build/tests/codec/codec_test_golden_p2`
 * writes every file from the current codec; then `sha256sum` of the files
 * that were meant to change is pasted into SHA256SUMS by hand (the version
 * 3 files were added so, in the commit that introduced version 3, with
 * `sha256sum -c SHA256SUMS` showing the version 2 files unchanged; the
 * version 4 files so too, with versions 2 and 3 unchanged). The update
 * also prints each file's decoded SHA-256 as a DECODED_SHA256SUMS line.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_codec.h"
#include "lkv_format.h"
#include "lkv_p2.h"
#include "testutil.h"

#define GOLDEN_P2_DIR LKV_GOLDEN_DIR "/p2"

typedef struct golden {
    const char *name;
    const char *input; /* seeds the input: version 3 reuses version 2's */
    uint32_t format;   /* container version, 2, 3 or 4 */
    uint32_t q, dim;
    lkv_dtype dt;
    uint64_t shape[3];
    uint32_t ndim;
    double scale;
    int chan; /* per-channel power-of-two scales (channel mode's input)   */
    int mode; /* version 4: every chunk's first piece's mode; -1: either */
} golden;

static const golden cases[] = {
    {"p2_q54_d128_bf16", "p2_q54_d128_bf16", 2, 54, 128, LKV_DTYPE_BF16, {2, 80, 128}, 3, 1.0},
    {"p2_q8_d96_fp16", "p2_q8_d96_fp16", 2, 8, 96, LKV_DTYPE_FP16, {40, 96}, 2, 3.0},
    {"p2_q1023_d64_fp32", "p2_q1023_d64_fp32", 2, 1023, 64, LKV_DTYPE_FP32, {8, 64}, 2, 0.1},
    {"p2_q3_d8_bf16", "p2_q3_d8_bf16", 2, 3, 8, LKV_DTYPE_BF16, {33, 8}, 2, 1.0},
    {"p2v3_q54_d128_bf16", "p2_q54_d128_bf16", 3, 54, 128, LKV_DTYPE_BF16, {2, 80, 128}, 3, 1.0},
    {"p2v3_q8_d96_fp16", "p2_q8_d96_fp16", 3, 8, 96, LKV_DTYPE_FP16, {40, 96}, 2, 3.0},
    {"p2v3_q1023_d64_fp32", "p2_q1023_d64_fp32", 3, 1023, 64, LKV_DTYPE_FP32, {8, 64}, 2, 0.1},
    {"p2v3_q3_d8_bf16", "p2_q3_d8_bf16", 3, 3, 8, LKV_DTYPE_BF16, {33, 8}, 2, 1.0},
    {"p2v3_q38_d112_fp32", "p2v3_q38_d112_fp32", 3, 38, 112, LKV_DTYPE_FP32, {301, 112}, 2, 1.0},
    {"p2v3_q20_d64_fp32_big", "p2v3_q20_d64_fp32_big", 3, 20, 64, LKV_DTYPE_FP32, {20, 64}, 2, 5e4},
    {"p2v4_q54_d128_bf16",
     "p2_q54_d128_bf16",
     4,
     54,
     128,
     LKV_DTYPE_BF16,
     {2, 80, 128},
     3,
     1.0,
     0,
     0},
    {"p2v4_q38_d112_fp32",
     "p2v3_q38_d112_fp32",
     4,
     38,
     112,
     LKV_DTYPE_FP32,
     {301, 112},
     2,
     1.0,
     0,
     0},
    {"p2v4_q3_d8_bf16", "p2_q3_d8_bf16", 4, 3, 8, LKV_DTYPE_BF16, {33, 8}, 2, 1.0, 0, 0},
    {"p2v4_q54_d128_fp32_chan",
     "p2v4_q54_d128_fp32_chan",
     4,
     54,
     128,
     LKV_DTYPE_FP32,
     {300, 128},
     2,
     1.0,
     1,
     1},
    {"p2v4_q20_d96_fp16_chan",
     "p2v4_q20_d96_fp16_chan",
     4,
     20,
     96,
     LKV_DTYPE_FP16,
     {70, 96},
     2,
     1.0,
     1,
     1},
    {"p2v4_q8_d16_bf16_chan",
     "p2v4_q8_d16_bf16_chan",
     4,
     8,
     16,
     LKV_DTYPE_BF16,
     {40, 16},
     2,
     1.0,
     1,
     1},
};

/* Irwin-Hall inputs (additions only: no libm decides the pinned bytes);
 * with chan, channel j times 2^(k_j - 4), k_j = 0..8 drawn first (exact
 * doublings). */
static void *golden_input(lkv_rng *r, lkv_dtype dt, size_t n, uint32_t dim, double scale, int chan)
{
    void *buf = malloc(n * dim * lkv_dtype_size(dt) + 1);
    double cs[LKV_DIM_MAX];
    for (uint32_t j = 0; j < dim; j++) {
        cs[j] = 1.0 / 16.0;
        for (uint64_t k = chan ? lkv_rng_next(r) % 9 : 4; k > 0; k--)
            cs[j] *= 2.0;
    }
    for (size_t i = 0; i < n * dim; i++) {
        double s = 0.0;
        for (int k = 0; k < 12; k++)
            s += lkv_rng_uniform(r);
        lkv_test_set(dt, buf, i, scale * cs[i % dim] * (s - 6.0));
    }
    return buf;
}

static lkv_params case_params(const golden *g)
{
    const lkv_params p = {LKV_VARIANT_E8, g->q, g->dim, LKV_PROFILE_2, g->format};
    return p;
}

static unsigned char *encode_case(const golden *g, lkv_isa isa, size_t *len, void **input,
                                  size_t *n_out)
{
    lkv_rng r = {0};
    for (const char *c = g->input; *c; c++)
        r.s = r.s * 131 + (unsigned char)*c;
    size_t n = 1;
    for (uint32_t i = 0; i < g->ndim; i++)
        n *= g->shape[i];
    n /= g->dim;
    void *x = golden_input(&r, g->dt, n, g->dim, g->scale, g->chan);
    const lkv_params p = case_params(g);
    const size_t cap = lkv_compress_bound(&p, g->shape, g->ndim);
    unsigned char *buf = malloc(cap);
    lkv_diag d;
    cr_assert_eq(lkv_compress(&p, g->dt, g->shape, g->ndim, x, n * g->dim * lkv_dtype_size(g->dt),
                              buf, cap, len, isa, &d),
                 LKV_OK, "%s on %s: %s", g->name, lkv_isa_name(isa), d.msg);
    *input = x;
    *n_out = n;
    return buf;
}

static int pinned_sum_in(const char *file, const char *name, char hex[65])
{
    size_t len;
    char *sums = lkv_test_read(file, &len);
    if (!sums)
        return 0;
    char want[128];
    snprintf(want, sizeof want, "  %s.lkv\n", name);
    int found = 0;
    for (char *line = sums; line < sums + len;) {
        char *nl = memchr(line, '\n', (size_t)(sums + len - line));
        if (!nl)
            break;
        if ((size_t)(nl - line) == 64 + strlen(want) - 1 &&
            !memcmp(line + 64, want, strlen(want))) {
            memcpy(hex, line, 64);
            hex[64] = 0;
            found = 1;
        }
        line = nl + 1;
    }
    free(sums);
    return found;
}

static int pinned_sum(const char *name, char hex[65])
{
    return pinned_sum_in(GOLDEN_P2_DIR "/SHA256SUMS", name, hex);
}

/* The SHA-256 of container c decoded to fp32 on isa (n vectors of dim). */
static void decoded_sum(const unsigned char *c, size_t len, size_t n, uint32_t dim, lkv_isa isa,
                        char hex[65])
{
    float *y = malloc(n * dim * 4);
    lkv_diag d;
    cr_assert_eq(lkv_decompress(c, len, LKV_DTYPE_FP32, y, n * dim * 4, NULL, NULL, isa, &d),
                 LKV_OK, "%s: %s", lkv_isa_name(isa), d.msg);
    lkv_test_sha256(y, n * dim * 4, hex);
    free(y);
}

/* Version 4: every chunk's first piece's mode byte must be `mode`. */
static void check_modes(const golden *g, const unsigned char *c, size_t len, size_t n)
{
    lkv_container_info info;
    cr_assert_eq(lkv_container_parse(c, len, &info, NULL), LKV_OK);
    const size_t pieces = lkv_piece_count(g->dim), cv = lkv_p2_chunk_vectors(&info.params);
    size_t at = info.header_bytes, chunks = 0;
    for (size_t first = 0; first < n; first += cv, chunks++) {
        const size_t cnt = n - first < cv ? n - first : cv, nb = cnt * pieces;
        size_t bytes = 0;
        cr_assert_eq(lkv_p2_chunk_size(&info.params, c + at, len - at, cnt, &bytes, NULL), LKV_OK);
        /* u32 body length, the norms (rounded up to even), the header */
        const size_t h = at + 4 + nb + (nb & 1);
        cr_assert_lt(h + 1, at + bytes);
        cr_expect_eq(c[h], (unsigned)g->mode, "%s chunk %zu: mode %u", g->name, chunks, c[h]);
        if (c[h] == 0)
            cr_expect_eq(c[h + 1], 0, "%s chunk %zu: pad byte", g->name, chunks);
        at += bytes;
    }
    cr_assert_eq(at, len);
}

Test(golden_p2, containers_are_byte_stable)
{
    const int update = getenv("LKV_UPDATE_GOLDEN") != NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const golden *g = &cases[i];
        char path[512];
        snprintf(path, sizeof path, "%s/%s.lkv", GOLDEN_P2_DIR, g->name);
        size_t len, n;
        void *x;
        unsigned char *now = encode_case(g, LKV_ISA_AUTO, &len, &x, &n);
        if (update) {
            FILE *f = fopen(path, "wb");
            cr_assert(f && fwrite(now, 1, len, f) == len);
            fclose(f);
            char dhex[65];
            decoded_sum(now, len, n, g->dim, LKV_ISA_SCALAR, dhex);
            fprintf(stderr, "DECODED_SHA256SUMS: %s  %s.lkv\n", dhex, g->name);
            free(now);
            free(x);
            continue;
        }
        size_t glen;
        unsigned char *gold = lkv_test_read(path, &glen);
        cr_assert(gold, "missing golden file %s", path);
        char hex[65], pinned[65];
        lkv_test_sha256(gold, glen, hex);
        cr_assert(pinned_sum(g->name, pinned), "%s has no line in SHA256SUMS", g->name);
        cr_expect_str_eq(hex, pinned, "%s: file differs from its pinned SHA-256", g->name);
        cr_expect_eq(glen, len, "%s: size", g->name);
        cr_expect(glen == len && memcmp(gold, now, len) == 0, "%s: re-encoding changed the bytes",
                  g->name);
        /* Every instruction-set path writes the same bytes. */
        for (int isa = LKV_ISA_SCALAR; isa <= LKV_ISA_AVX512; isa++) {
            if (!lkv_isa_supported((lkv_isa)isa))
                continue;
            size_t ilen, in;
            void *ix;
            unsigned char *ib = encode_case(g, (lkv_isa)isa, &ilen, &ix, &in);
            cr_expect(ilen == glen && memcmp(ib, gold, glen) == 0, "%s: %s encodes other bytes",
                      g->name, lkv_isa_name((lkv_isa)isa));
            free(ib);
            free(ix);
        }
        /* The file says its version and decodes close to its input (the
         * error of Q; version 3 at most 2^0.5 times version 2's). */
        cr_expect_eq((uint32_t)(gold[LKV_FMT_OFF_VERSION] | gold[LKV_FMT_OFF_VERSION + 1] << 8),
                     g->format, "%s: version field", g->name);
        lkv_container_info info;
        cr_assert_eq(lkv_container_parse(gold, glen, &info, NULL), LKV_OK);
        cr_expect_eq(lkv_profile_of(&info.params), LKV_PROFILE_2);
        cr_expect_eq(info.params.format, g->format, "%s: parsed format", g->name);
        float *y = malloc(n * g->dim * 4);
        cr_assert_eq(lkv_decompress(gold, glen, LKV_DTYPE_FP32, y, n * g->dim * 4, NULL, NULL,
                                    LKV_ISA_AUTO, NULL),
                     LKV_OK);
        double num = 0.0, den = 0.0;
        for (size_t k = 0; k < n * g->dim; k++) {
            const double a = lkv_test_get(g->dt, x, k), e = a - y[k];
            num += e * e;
            den += a * a;
        }
        const double lattice = 1.147 / ((double)g->q * g->q);
        cr_expect_lt(num / den, 2.0 * lattice + 1e-4, "%s: rel-MSE %.3g", g->name, num / den);
        /* The decoded output is pinned, and every path decodes it so. */
        char dpin[65];
        cr_assert(pinned_sum_in(GOLDEN_P2_DIR "/DECODED_SHA256SUMS", g->name, dpin),
                  "%s has no line in DECODED_SHA256SUMS", g->name);
        for (int isa = LKV_ISA_SCALAR; isa <= LKV_ISA_AVX512; isa++) {
            if (!lkv_isa_supported((lkv_isa)isa))
                continue;
            char dhex[65];
            decoded_sum(gold, glen, n, g->dim, (lkv_isa)isa, dhex);
            cr_expect_str_eq(dhex, dpin, "%s: decoded on %s differs from the pinned output",
                             g->name, lkv_isa_name((lkv_isa)isa));
        }
        if (g->format == 4 && g->mode >= 0)
            check_modes(g, gold, glen, n);
        /* A rotated version 4 file holds version 3's pieces: it decodes to
         * the version 3 file of the same input bit for bit. */
        for (size_t j = 0; g->format == 4 && g->mode == 0 && j < sizeof cases / sizeof cases[0];
             j++) {
            if (cases[j].format != 3 || strcmp(cases[j].input, g->input) != 0)
                continue;
            char v3pin[65];
            cr_assert(pinned_sum_in(GOLDEN_P2_DIR "/DECODED_SHA256SUMS", cases[j].name, v3pin));
            cr_expect_str_eq(dpin, v3pin, "%s decodes other than %s", g->name, cases[j].name);
        }
        free(y);
        free(now);
        free(gold);
        free(x);
    }
}
