/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cmd_codec.c - `latticekv codec info|encode|decode|roundtrip`: the codec
 * offline, on raw little-endian row-major arrays, with no daemon.
 *
 * encode writes a coded container (codec/FORMAT.md); decode reads one and
 * takes every parameter from it; roundtrip writes the reconstruction and
 * prints the error. Invalid input exits non-zero with one line on stderr.
 */
#include "cli.h"
#include "lkv_codec.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char info_usage[] =
    "usage: latticekv codec info --variant e8|d4 --q Q --dim D [--json]\n"
    "Prints the bit budget of one vector and the compression ratios.\n";
static const char encode_usage[] =
    "usage: latticekv codec encode --variant e8|d4 --q Q --dim D --in FILE --in-dtype "
    "f32|f16|bf16\n"
    "                              --out FILE [--shape N,..,D] [--isa auto|scalar|avx2|avx512]\n"
    "                              [-f|--force]\n"
    "Writes a coded container (codec/FORMAT.md).\n";
static const char decode_usage[] =
    "usage: latticekv codec decode --in FILE --out FILE [--out-dtype f32|f16|bf16]\n"
    "                              [--isa auto|scalar|avx2|avx512] [-f|--force]\n"
    "Writes the reconstruction; every parameter comes from the container.\n";
static const char roundtrip_usage[] =
    "usage: latticekv codec roundtrip --variant e8|d4 --q Q --dim D --in FILE --in-dtype T\n"
    "                                 --out FILE [--out-dtype T] [--shape N,..,D]\n"
    "                                 [--isa auto|scalar|avx2|avx512] [-f|--force]\n"
    "Encodes and decodes, writes the reconstruction and prints the relative error.\n";
static const char common_usage[] =
    "Arrays are raw little-endian, row-major; the last dimension is head_dim.\n"
    "--variant defaults to e8, --q (1..1023) to 38; --dim is a multiple of the block (8 or 4), "
    "block..1024.\n"
    "An existing --out file is not overwritten without -f/--force (\"-\" is stdout).\n";

/* Prints a subcommand's usage (and the notes they share) on stdout; 0. */
static int help(const char *usage)
{
    fputs(usage, stdout);
    fputs(common_usage, stdout);
    return 0;
}

static int parse_dtype(const char *name, const char *s, lkv_dtype *out)
{
    if (!s) {
        lkv_cli_error(2, "--%s is required (f32, f16 or bf16)", name);
        return 0;
    }
    if (!strcmp(s, "f32") || !strcmp(s, "fp32") || !strcmp(s, "float32"))
        *out = LKV_DTYPE_FP32;
    else if (!strcmp(s, "f16") || !strcmp(s, "fp16") || !strcmp(s, "float16"))
        *out = LKV_DTYPE_FP16;
    else if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16"))
        *out = LKV_DTYPE_BF16;
    else {
        lkv_cli_error(2, "--%s=%s is not one of f32, f16, bf16", name, s);
        return 0;
    }
    return 1;
}

static int parse_isa(int argc, char **argv, lkv_isa *isa)
{
    const char *s = lkv_cli_opt(argc, argv, "isa");
    *isa = LKV_ISA_AUTO;
    if (!s || !strcmp(s, "auto"))
        return 1;
    for (int i = LKV_ISA_SCALAR; i <= LKV_ISA_AVX512; i++)
        if (!strcmp(s, lkv_isa_name((lkv_isa)i))) {
            *isa = (lkv_isa)i;
            return 1;
        }
    {
        lkv_cli_error(2, "--isa=%s is not one of auto, scalar, avx2, avx512", s);
        return 0;
    }
}

/* --variant, --q, --dim into p, checked by the codec itself. */
static int parse_params(int argc, char **argv, lkv_params *p)
{
    const char *v = lkv_cli_opt(argc, argv, "variant");
    const char *q = lkv_cli_opt(argc, argv, "q");
    const char *d = lkv_cli_opt(argc, argv, "dim");
    unsigned long long qv = LKV_Q_DEFAULT, dv = 0;
    p->variant = LKV_VARIANT_E8;
    if (v) {
        if (!strcmp(v, "e8") || !strcmp(v, "E8"))
            p->variant = LKV_VARIANT_E8;
        else if (!strcmp(v, "d4") || !strcmp(v, "D4"))
            p->variant = LKV_VARIANT_D4;
        else {
            lkv_cli_error(2, "--variant=%s is not one of e8, d4", v);
            return 0;
        }
    }
    if (q && !lkv_cli_u64("q", q, LKV_Q_MIN, LKV_Q_MAX, &qv))
        return 0;
    if (!d) {
        lkv_cli_error(2, "--dim is required (head_dim, a multiple of the block size)");
        return 0;
    }
    if (!lkv_cli_u64("dim", d, 1, LKV_DIM_MAX, &dv))
        return 0;
    p->q = (uint32_t)qv;
    p->dim = (uint32_t)dv;
    lkv_diag diag;
    if (lkv_params_check(p, &diag) != LKV_OK) {
        lkv_cli_error(2, "%s: %s", lkv_status_name(diag.code), diag.msg);
        return 0;
    }
    return 1;
}

/* --shape a,b,...,D or, by default, [len / (D * size), D]. Returns 0, or
 * the exit status after printing why: 2 for a malformed --shape, 1 when
 * the input is not a whole number of rows. */
static int parse_shape(int argc, char **argv, const lkv_params *p, lkv_dtype dt, size_t len,
                       uint64_t *shape, uint32_t *ndim)
{
    const char *s = lkv_cli_opt(argc, argv, "shape");
    const size_t row = (size_t)p->dim * lkv_dtype_size(dt);
    if (!s) {
        if (len % row)
            return lkv_cli_error(1,
                                 "--in holds %zu bytes, not a whole number of %u-element %s rows",
                                 len, p->dim, lkv_dtype_name(dt));
        shape[0] = len / row;
        shape[1] = p->dim;
        *ndim = 2;
        return 0;
    }
    *ndim = 0;
    const char *c = s;
    while (*c) {
        if (*ndim == LKV_MAX_NDIM)
            return lkv_cli_error(2, "--shape=%s has more than %u dimensions", s, LKV_MAX_NDIM);
        /* Plain digits only: strtoull would take " 3" and "-1" (as 2^64 - 1)
         * and saturate on overflow, which the codec then reports without
         * naming --shape. */
        char *end = (char *)c;
        errno = 0;
        if (*c >= '0' && *c <= '9')
            shape[*ndim] = strtoull(c, &end, 10);
        if (end == c || errno || (*end && *end != ','))
            return lkv_cli_error(2, "--shape=%s is not a comma-separated list of sizes", s);
        (*ndim)++;
        c = *end ? end + 1 : end;
    }
    if (*ndim == 0)
        return lkv_cli_error(2, "--shape is empty");
    return 0;
}

static int codec_info(int argc, char **argv)
{
    static const char *const known[] = {"variant", "q", "dim", NULL};
    static const char *const flags[] = {"json", "help", NULL};
    lkv_params p;
    if (lkv_cli_wants_help(argc, argv))
        return help(info_usage);
    if (lkv_cli_check(argc, argv, known, flags) || !parse_params(argc, argv, &p))
        return 2;
    const uint32_t bits = lkv_bits_per_vector(&p);
    const size_t bytes = lkv_record_bytes(&p);
    const double raw = (double)p.dim * 16.0;
    if (lkv_cli_flag(argc, argv, "json")) {
        printf("{\"variant\":\"%s\",\"q\":%u,\"dim\":%u,\"block\":%u,\"bits_per_block\":%u,"
               "\"bits_per_vector\":%u,\"bytes_per_vector\":%zu,\"ratio_vs_bf16\":%.4f,"
               "\"ratio_vs_fp16\":%.4f,\"ratio_vs_fp32\":%.4f}\n",
               lkv_variant_name(p.variant), p.q, p.dim, lkv_block_size(p.variant),
               lkv_bits_per_block(p.variant, p.q), bits, bytes, raw / bits, raw / bits,
               2 * raw / bits);
        return 0;
    }
    printf("variant          %s (block of %u)\n", lkv_variant_name(p.variant),
           lkv_block_size(p.variant));
    printf("q_range          %u\n", p.q);
    printf("head_dim         %u\n", p.dim);
    printf("bits per block   %u\n", lkv_bits_per_block(p.variant, p.q));
    printf("bits per vector  %u\n", bits);
    printf("bytes per vector %zu\n", bytes);
    printf("ratio vs bf16    %.3fx\nratio vs fp16    %.3fx\nratio vs fp32    %.3fx\n", raw / bits,
           raw / bits, 2 * raw / bits);
    return 0;
}

/* Encodes --in into a malloc'd container. */
static int encode_input(int argc, char **argv, lkv_params *p, lkv_dtype *dt, void **raw,
                        size_t *raw_len, void **coded, size_t *coded_len, uint64_t *nvec)
{
    const char *in = lkv_cli_opt(argc, argv, "in");
    lkv_isa isa;
    if (!parse_params(argc, argv, p) ||
        !parse_dtype("in-dtype", lkv_cli_opt(argc, argv, "in-dtype"), dt) ||
        !parse_isa(argc, argv, &isa))
        return 2;
    if (!in)
        return lkv_cli_error(2, "--in FILE is required");
    *raw = lkv_cli_read_file(in, raw_len);
    if (!*raw)
        return 1;
    uint64_t shape[LKV_MAX_NDIM];
    uint32_t ndim = 0;
    const int bad_shape = parse_shape(argc, argv, p, *dt, *raw_len, shape, &ndim);
    if (bad_shape)
        return bad_shape;
    lkv_container_info info;
    lkv_diag diag;
    if (lkv_container_plan(p, *dt, shape, ndim, &info, &diag) != LKV_OK)
        return lkv_cli_error(1, "%s: %s", lkv_status_name(diag.code), diag.msg);
    *coded = malloc(info.total_bytes ? info.total_bytes : 1);
    if (!*coded)
        return lkv_cli_error(1, "out of memory for %zu bytes", info.total_bytes);
    if (lkv_compress(p, *dt, shape, ndim, *raw, *raw_len, *coded, info.total_bytes, coded_len, isa,
                     &diag) != LKV_OK)
        return lkv_cli_error(1, "%s: %s", lkv_status_name(diag.code), diag.msg);
    *nvec = info.n_vectors;
    return 0;
}

static int codec_encode(int argc, char **argv)
{
    static const char *const known[] = {"variant", "q",     "dim", "in", "in-dtype",
                                        "out",     "shape", "isa", NULL};
    static const char *const flags[] = {"force", "help", NULL};
    if (lkv_cli_wants_help(argc, argv))
        return help(encode_usage);
    if (lkv_cli_check(argc, argv, known, flags))
        return 2;
    const char *out = lkv_cli_opt(argc, argv, "out");
    const int force = lkv_cli_flag(argc, argv, "force");
    if (!out)
        return lkv_cli_error(2, "--out FILE is required");
    if (lkv_cli_check_out(out, force))
        return 1;
    lkv_params p;
    lkv_dtype dt;
    void *raw = NULL, *coded = NULL;
    size_t raw_len = 0, coded_len = 0;
    uint64_t nvec = 0;
    int rc = encode_input(argc, argv, &p, &dt, &raw, &raw_len, &coded, &coded_len, &nvec);
    if (rc == 0)
        rc = lkv_cli_write_file(out, coded, coded_len, force);
    if (rc == 0 && strcmp(out, "-") != 0)
        fprintf(stderr, "encoded %llu vectors: %zu -> %zu bytes (%.3fx smaller than %s)\n",
                (unsigned long long)nvec, raw_len, coded_len,
                coded_len ? (double)raw_len / (double)coded_len : 0.0, lkv_dtype_name(dt));
    free(raw);
    free(coded);
    return rc;
}

static int decode_to(const void *coded, size_t len, int out_dt, lkv_isa isa, void **dst,
                     size_t *dst_len, lkv_container_info *info)
{
    lkv_diag diag;
    if (lkv_container_parse(coded, len, info, &diag) != LKV_OK)
        return lkv_cli_error(1, "%s: %s", lkv_status_name(diag.code), diag.msg);
    const lkv_dtype dt = out_dt ? (lkv_dtype)out_dt : info->dtype;
    const size_t need = (size_t)info->n_vectors * info->params.dim * lkv_dtype_size(dt);
    *dst = malloc(need ? need : 1);
    if (!*dst)
        return lkv_cli_error(1, "out of memory for %zu bytes", need);
    if (lkv_decompress(coded, len, (int)dt, *dst, need, dst_len, NULL, isa, &diag) != LKV_OK)
        return lkv_cli_error(1, "%s: %s", lkv_status_name(diag.code), diag.msg);
    return 0;
}

static int codec_decode(int argc, char **argv)
{
    static const char *const known[] = {"in", "out", "out-dtype", "isa", NULL};
    static const char *const flags[] = {"force", "help", NULL};
    if (lkv_cli_wants_help(argc, argv))
        return help(decode_usage);
    if (lkv_cli_check(argc, argv, known, flags))
        return 2;
    const char *in = lkv_cli_opt(argc, argv, "in"), *out = lkv_cli_opt(argc, argv, "out");
    const char *ods = lkv_cli_opt(argc, argv, "out-dtype");
    const int force = lkv_cli_flag(argc, argv, "force");
    lkv_dtype odt = 0;
    lkv_isa isa;
    if (!in || !out)
        return lkv_cli_error(2, "--in FILE and --out FILE are required");
    if ((ods && !parse_dtype("out-dtype", ods, &odt)) || !parse_isa(argc, argv, &isa))
        return 2;
    if (lkv_cli_check_out(out, force))
        return 1;
    size_t len = 0, dst_len = 0;
    void *coded = lkv_cli_read_file(in, &len), *dst = NULL;
    if (!coded)
        return 1;
    lkv_container_info info;
    int rc = decode_to(coded, len, (int)odt, isa, &dst, &dst_len, &info);
    if (rc == 0)
        rc = lkv_cli_write_file(out, dst, dst_len, force);
    free(coded);
    free(dst);
    return rc;
}

static double load_elem(lkv_dtype dt, const void *buf, size_t i)
{
    const unsigned char *p = buf;
    if (dt == LKV_DTYPE_FP32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return dt == LKV_DTYPE_FP16 ? lkv_f16_to_f32(h) : lkv_bf16_to_f32(h);
}

static int codec_roundtrip(int argc, char **argv)
{
    static const char *const known[] = {"variant", "q",         "dim",   "in",  "in-dtype",
                                        "out",     "out-dtype", "shape", "isa", NULL};
    static const char *const flags[] = {"force", "help", NULL};
    if (lkv_cli_wants_help(argc, argv))
        return help(roundtrip_usage);
    if (lkv_cli_check(argc, argv, known, flags))
        return 2;
    const char *out = lkv_cli_opt(argc, argv, "out");
    const char *ods = lkv_cli_opt(argc, argv, "out-dtype");
    const int force = lkv_cli_flag(argc, argv, "force");
    lkv_dtype odt = 0;
    lkv_isa isa;
    if (!out)
        return lkv_cli_error(2, "--out FILE is required");
    if ((ods && !parse_dtype("out-dtype", ods, &odt)) || !parse_isa(argc, argv, &isa))
        return 2;
    if (lkv_cli_check_out(out, force))
        return 1;
    lkv_params p;
    lkv_dtype dt;
    void *raw = NULL, *coded = NULL, *dst = NULL;
    size_t raw_len = 0, coded_len = 0, dst_len = 0;
    uint64_t nvec = 0;
    lkv_container_info info;
    int rc = encode_input(argc, argv, &p, &dt, &raw, &raw_len, &coded, &coded_len, &nvec);
    if (rc == 0)
        rc = decode_to(coded, coded_len, odt ? (int)odt : (int)dt, isa, &dst, &dst_len, &info);
    if (rc == 0)
        rc = lkv_cli_write_file(out, dst, dst_len, force);
    if (rc == 0) {
        const lkv_dtype o = odt ? odt : dt;
        double num = 0, den = 0;
        const size_t elems = (size_t)nvec * p.dim;
        for (size_t i = 0; i < elems; i++) {
            const double a = load_elem(dt, raw, i), b = load_elem(o, dst, i);
            num += (a - b) * (a - b);
            den += a * a;
        }
        fprintf(stderr,
                "roundtrip %s Q=%u D=%u: %llu vectors, %u bits/vector, %zu -> %zu bytes "
                "(%.3fx), rel_mse=%.4e\n",
                lkv_variant_name(p.variant), p.q, p.dim, (unsigned long long)nvec,
                lkv_bits_per_vector(&p), raw_len, coded_len,
                coded_len ? (double)raw_len / (double)coded_len : 0.0, den > 0 ? num / den : 0.0);
    }
    free(raw);
    free(coded);
    free(dst);
    return rc;
}

int lkv_cli_codec(int argc, char **argv)
{
    static const char *const all[] = {info_usage, encode_usage, decode_usage, roundtrip_usage};
    const int asked = argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"));
    if (argc < 1 || asked) {
        FILE *out = asked ? stdout : stderr;
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            fputs(all[i], out);
        fputs(common_usage, out);
        return asked ? 0 : 2;
    }
    if (!strcmp(argv[0], "info"))
        return codec_info(argc - 1, argv + 1);
    if (!strcmp(argv[0], "encode"))
        return codec_encode(argc - 1, argv + 1);
    if (!strcmp(argv[0], "decode"))
        return codec_decode(argc - 1, argv + 1);
    if (!strcmp(argv[0], "roundtrip"))
        return codec_roundtrip(argc - 1, argv + 1);
    return lkv_cli_error(2, "unknown codec command '%s' (info, encode, decode, roundtrip)",
                         argv[0]);
}
