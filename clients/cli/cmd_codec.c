/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cmd_codec.c - `latticekv codec info|encode|decode|roundtrip|inspect`: the
 * codec offline, on raw little-endian row-major arrays, with no daemon.
 *
 * encode writes a coded container (codec/FORMAT.md); decode reads one and
 * takes every parameter from it; roundtrip writes the reconstruction and
 * prints the error; inspect checks a container. The three that code data
 * parse their flags here and run the streaming engine (stream.c). Invalid
 * input exits non-zero with one line on stderr.
 */
#include "cli.h"
#include "lkv_codec.h"
#include "lkv_format.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char info_usage[] =
    "usage: latticekv codec info [--profile 1|2] [--format 2|3|4] --variant e8|d4 --q Q --dim D\n"
    "                            [--json]\n"
    "Prints the bit budget of one vector and the compression ratios; for profile 2\n"
    "(variable size) the mean over a reference Gaussian set and the worst case, in the\n"
    "container version --format names.\n";
static const char encode_usage[] =
    "usage: latticekv codec encode [--profile 1|2] [--format 2|3|4] --variant e8|d4 --q Q --dim D\n"
    "                              --in FILE --in-dtype f32|f16|bf16\n"
    "                              --out FILE [--shape N,..,D] [-T N] [--isa auto|scalar|avx2|"
    "avx512]\n"
    "                              [--no-progress] [-f|--force]\n"
    "Writes a coded container (codec/FORMAT.md).\n";
static const char decode_usage[] =
    "usage: latticekv codec decode --in FILE --out FILE [--out-dtype f32|f16|bf16] [-T N]\n"
    "                              [--isa auto|scalar|avx2|avx512] [--no-progress] [-f|--force]\n"
    "Writes the reconstruction; every parameter comes from the container.\n";
static const char roundtrip_usage[] =
    "usage: latticekv codec roundtrip [--profile 1|2] [--format 2|3|4] --variant e8|d4 --q Q "
    "--dim D\n"
    "                                 --in FILE --in-dtype T\n"
    "                                 --out FILE [--out-dtype T] [--shape N,..,D] [-T N]\n"
    "                                 [--isa auto|scalar|avx2|avx512] [--no-progress] "
    "[-f|--force]\n"
    "Encodes and decodes, writes the reconstruction and prints the relative error.\n";
static const char inspect_usage[] =
    "usage: latticekv codec inspect FILE [--json]\n"
    "Prints a container's header (its format version), shape and parameters and whether\n"
    "its length and both checksums hold (exit 0 when they all do, 1 otherwise).\n";
static const char common_usage[] =
    "Arrays are raw little-endian, row-major; the last dimension is head_dim.\n"
    "--variant defaults to e8, --q (1..1023) to 38; --dim is a multiple of the block (8 or 4), "
    "block..1024.\n"
    "--profile 1 (default) is the reference codec (fixed-size records, container version 1);\n"
    "--profile 2 entropy-codes E8 points (E8 only, variable size, one thread); a larger --q\n"
    "gives a finer step and more bits in both profiles.\n"
    "--format picks profile 2's container version: 3 (default: chunks of 256 vectors, one-byte\n"
    "norms), 4 (version 3 plus a channel mode, chosen per chunk where it is shorter: far\n"
    "fewer bits on data whose channels differ in scale, as keys do; a little slower to\n"
    "encode) or 2 (the older layout: chunks of 128, 16-bit norms; at the same --q it\n"
    "spends more bits for a little less error). decode and inspect read versions 1 to 4.\n"
    "Profile 1 takes only --format 1.\n"
    "FILE \"-\" is stdin or stdout. Work streams in chunks, in bounded memory (under 64 MiB)\n"
    "whatever the size, on -T N threads (--threads N; default and -T0: every core).\n"
    "A progress line goes to stderr when it is a terminal (never into a file or a pipe).\n"
    "An existing --out file is not overwritten without -f/--force.\n";

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

/* --format into p->format: profile 2's container version (2, 3 or 4;
 * absent: 0, the default 3); profile 1 takes only its own version 1 (stored as 0). The
 * codec would refuse a wrong pairing too, but without naming the flags. */
static int parse_format(int argc, char **argv, lkv_params *p)
{
    const char *f = lkv_cli_opt(argc, argv, "format");
    p->format = 0;
    if (!f)
        return 1;
    const unsigned fv = !strcmp(f, "1")   ? 1u
                        : !strcmp(f, "2") ? 2u
                        : !strcmp(f, "3") ? 3u
                        : !strcmp(f, "4") ? 4u
                                          : 0u;
    const int p2 = p->profile == LKV_PROFILE_2;
    const int p2v = fv >= LKV_FMT_VERSION_P2 && fv <= LKV_FMT_VERSION_P4;
    if (p2 && !p2v)
        lkv_cli_error(2, "--format=%s is not one of 2, 3, 4 (profile 2's container versions)", f);
    else if (!p2 && p2v)
        lkv_cli_error(2, "--format=%s needs --profile 2 (profile 1 writes container version 1)", f);
    else if (!p2 && fv != LKV_FMT_VERSION)
        lkv_cli_error(
            2, "--format=%s is not 1, profile 1's container version (2, 3, 4: --profile 2)", f);
    else {
        p->format = p2 ? fv : 0;
        return 1;
    }
    return 0;
}

/* --profile, --format, --variant, --q, --dim into p, checked by the codec itself. */
static int parse_params(int argc, char **argv, lkv_params *p)
{
    const char *pr = lkv_cli_opt(argc, argv, "profile");
    unsigned long long prof = LKV_PROFILE_1;
    if (pr && !lkv_cli_u64("profile", pr, 1, 2, &prof))
        return 0;
    p->profile = (uint32_t)prof;
    if (!parse_format(argc, argv, p))
        return 0;
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

/* An explicit --shape a,b,...,D into shape (left alone when absent: the
 * tensor is then [n, D]). Returns 0, or 2 after saying why. */
static int parse_shape(int argc, char **argv, uint64_t *shape, uint32_t *ndim)
{
    const char *s = lkv_cli_opt(argc, argv, "shape");
    *ndim = 0;
    if (!s)
        return 0;
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

/* What encode, decode and roundtrip share: -T, --isa, the progress line. */
static int parse_stream(int argc, char **argv, lkv_stream_job *j)
{
    const char *t = lkv_cli_opt(argc, argv, "threads");
    unsigned long long threads = 0;
    if (t && !lkv_cli_u64("threads", t, 0, 1024, &threads))
        return 0;
    j->threads = (unsigned)threads;
    j->force = lkv_cli_flag(argc, argv, "force");
    j->progress = !lkv_cli_flag(argc, argv, "no-progress") && isatty(STDERR_FILENO);
    const char *chunk = getenv("LATTICEKV_CHUNK_VECTORS"); /* tests: many small chunks */
    unsigned long long cv = 0;
    if (chunk && *chunk && !lkv_cli_u64("LATTICEKV_CHUNK_VECTORS", chunk, 1, 1u << 24, &cv))
        return 0;
    j->chunk_vectors = (size_t)cv;
    return parse_isa(argc, argv, &j->isa);
}

/* Profile 2's bits per vector: the mean over a reference set (4096
 * standard-normal vectors from a fixed generator: sums of 12 uniforms of a
 * 64-bit LCG, no libm) and the worst case (a full chunk at its bound). */
static int p2_info(const lkv_params *p, int json)
{
    const size_t n = 4096;
    float *x = malloc(n * p->dim * sizeof *x);
    const size_t cap = lkv_p2_payload_bound(p, n);
    unsigned char *buf = malloc(cap);
    if (!x || !buf) {
        free(x);
        free(buf);
        return lkv_cli_error(1, "out of memory");
    }
    uint64_t st = 0x6c6b7632u;
    for (size_t i = 0; i < n * p->dim; i++) {
        double s = 0.0;
        for (int k = 0; k < 12; k++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            s += (double)(st >> 11) / 9007199254740992.0;
        }
        x[i] = (float)(s - 6.0);
    }
    size_t len = 0;
    lkv_diag d;
    const lkv_status rc = lkv_p2_encode(p, LKV_DTYPE_FP32, x, n, buf, cap, &len, &d);
    free(x);
    free(buf);
    if (rc != LKV_OK)
        return lkv_cli_error(1, "%s: %s", lkv_status_name(rc), d.msg);
    const double mean = 8.0 * (double)len / (double)n;
    const uint32_t chunk = lkv_p2_chunk_vectors(p);
    const double worst = 8.0 * (double)lkv_p2_payload_bound(p, chunk) / chunk;
    const double raw = (double)p->dim * 16.0;
    if (json) {
        printf("{\"profile\":2,\"format\":%u,\"chunk_vectors\":%u,\"variant\":\"%s\",\"q\":%u,"
               "\"dim\":%u,\"bits_per_vector_mean\":%.2f,\"bits_per_vector_worst\":%.2f,"
               "\"reference_vectors\":%zu,\"ratio_vs_bf16\":%.4f,\"ratio_vs_fp16\":%.4f,"
               "\"ratio_vs_fp32\":%.4f}\n",
               lkv_p2_format_of(p), chunk, lkv_variant_name(p->variant), p->q, p->dim, mean, worst,
               n, raw / mean, raw / mean, 2 * raw / mean);
        return 0;
    }
    printf("profile          2 (entropy-coded, variable size)\n");
    printf("format           container version %u (chunks of %u vectors)\n", lkv_p2_format_of(p),
           chunk);
    printf("variant          %s (block of %u)\n", lkv_variant_name(p->variant),
           lkv_block_size(p->variant));
    printf("q                %u\n", p->q);
    printf("head_dim         %u\n", p->dim);
    printf("bits per vector  %.1f mean over %zu reference Gaussian vectors\n", mean, n);
    printf("                 %.1f worst case (chunk bound)\n", worst);
    printf("ratio vs bf16    %.3fx\nratio vs fp16    %.3fx\nratio vs fp32    %.3fx\n", raw / mean,
           raw / mean, 2 * raw / mean);
    return 0;
}

static int codec_info(int argc, char **argv)
{
    static const char *const known[] = {"profile", "format", "variant", "q", "dim", NULL};
    static const char *const flags[] = {"json", "help", NULL};
    lkv_params p;
    if (lkv_cli_wants_help(argc, argv))
        return help(info_usage);
    if (lkv_cli_check(argc, argv, known, flags) || !parse_params(argc, argv, &p))
        return 2;
    if (lkv_profile_of(&p) == LKV_PROFILE_2)
        return p2_info(&p, lkv_cli_flag(argc, argv, "json"));
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

static int codec_encode(int argc, char **argv)
{
    static const char *const known[] = {"profile",  "format", "variant", "q",   "dim",     "in",
                                        "in-dtype", "out",    "shape",   "isa", "threads", NULL};
    static const char *const flags[] = {"force", "no-progress", "help", NULL};
    if (lkv_cli_wants_help(argc, argv))
        return help(encode_usage);
    if (lkv_cli_check(argc, argv, known, flags))
        return 2;
    lkv_stream_job j = {.mode = LKV_STREAM_ENCODE};
    uint64_t shape[LKV_MAX_NDIM];
    j.in = lkv_cli_opt(argc, argv, "in");
    j.out = lkv_cli_opt(argc, argv, "out");
    if (!j.out)
        return lkv_cli_error(2, "--out FILE is required");
    if (!parse_params(argc, argv, &j.params) ||
        !parse_dtype("in-dtype", lkv_cli_opt(argc, argv, "in-dtype"), &j.in_dtype) ||
        !parse_stream(argc, argv, &j))
        return 2;
    if (!j.in)
        return lkv_cli_error(2, "--in FILE is required");
    if (parse_shape(argc, argv, shape, &j.ndim))
        return 2;
    j.shape = j.ndim ? shape : NULL;
    if (lkv_cli_check_out(j.out, j.force))
        return 1;
    lkv_stream_result r;
    const int rc = lkv_cli_stream(&j, &r);
    if (rc == 0 && strcmp(j.out, "-") != 0)
        fprintf(stderr, "encoded %llu vectors: %llu -> %zu bytes (%.3fx smaller than %s)\n",
                (unsigned long long)r.n_vectors, (unsigned long long)r.in_bytes, r.coded_bytes,
                r.coded_bytes ? (double)r.in_bytes / (double)r.coded_bytes : 0.0,
                lkv_dtype_name(j.in_dtype));
    return rc;
}

static int codec_decode(int argc, char **argv)
{
    static const char *const known[] = {"in", "out", "out-dtype", "isa", "threads", NULL};
    static const char *const flags[] = {"force", "no-progress", "help", NULL};
    if (lkv_cli_wants_help(argc, argv))
        return help(decode_usage);
    if (lkv_cli_check(argc, argv, known, flags))
        return 2;
    lkv_stream_job j = {.mode = LKV_STREAM_DECODE};
    const char *ods = lkv_cli_opt(argc, argv, "out-dtype");
    lkv_dtype odt = 0;
    j.in = lkv_cli_opt(argc, argv, "in");
    j.out = lkv_cli_opt(argc, argv, "out");
    if (!j.in || !j.out)
        return lkv_cli_error(2, "--in FILE and --out FILE are required");
    if ((ods && !parse_dtype("out-dtype", ods, &odt)) || !parse_stream(argc, argv, &j))
        return 2;
    j.out_dtype = (int)odt;
    if (lkv_cli_check_out(j.out, j.force))
        return 1;
    lkv_stream_result r;
    return lkv_cli_stream(&j, &r);
}

static int codec_roundtrip(int argc, char **argv)
{
    static const char *const known[] = {"profile", "format",   "variant", "q",         "dim",
                                        "in",      "in-dtype", "out",     "out-dtype", "shape",
                                        "isa",     "threads",  NULL};
    static const char *const flags[] = {"force", "no-progress", "help", NULL};
    if (lkv_cli_wants_help(argc, argv))
        return help(roundtrip_usage);
    if (lkv_cli_check(argc, argv, known, flags))
        return 2;
    lkv_stream_job j = {.mode = LKV_STREAM_ROUNDTRIP};
    uint64_t shape[LKV_MAX_NDIM];
    const char *ods = lkv_cli_opt(argc, argv, "out-dtype");
    lkv_dtype odt = 0;
    j.in = lkv_cli_opt(argc, argv, "in");
    j.out = lkv_cli_opt(argc, argv, "out");
    if (!j.out)
        return lkv_cli_error(2, "--out FILE is required");
    if ((ods && !parse_dtype("out-dtype", ods, &odt)) || !parse_params(argc, argv, &j.params) ||
        !parse_dtype("in-dtype", lkv_cli_opt(argc, argv, "in-dtype"), &j.in_dtype) ||
        !parse_stream(argc, argv, &j))
        return 2;
    if (!j.in)
        return lkv_cli_error(2, "--in FILE is required");
    if (parse_shape(argc, argv, shape, &j.ndim))
        return 2;
    j.shape = j.ndim ? shape : NULL;
    j.out_dtype = (int)odt;
    if (lkv_cli_check_out(j.out, j.force))
        return 1;
    lkv_stream_result r;
    const int rc = lkv_cli_stream(&j, &r);
    const int p2 = lkv_profile_of(&j.params) == LKV_PROFILE_2;
    const double bits = p2 ? (r.n_vectors ? 8.0 * (double)(r.coded_bytes - r.info.header_bytes) /
                                                (double)r.n_vectors
                                          : 0.0)
                           : (double)lkv_bits_per_vector(&j.params);
    char version[32] = ""; /* profile 2: the container version it coded in */
    if (p2)
        snprintf(version, sizeof version, " (version %u)", lkv_p2_format_of(&j.params));
    if (rc == 0)
        fprintf(stderr,
                "roundtrip profile %u%s %s Q=%u D=%u: %llu vectors, %.1f bits/vector, %llu -> %zu "
                "bytes (%.3fx), rel_mse=%.4e\n",
                lkv_profile_of(&j.params), version, lkv_variant_name(j.params.variant), j.params.q,
                j.params.dim, (unsigned long long)r.n_vectors, bits, (unsigned long long)r.in_bytes,
                r.coded_bytes, r.coded_bytes ? (double)r.in_bytes / (double)r.coded_bytes : 0.0,
                r.sq_ref > 0 ? r.sq_err / r.sq_ref : 0.0);
    return rc;
}

static int codec_inspect(int argc, char **argv)
{
    static const char *const known[] = {"in", NULL};
    static const char *const flags[] = {"json", "help", NULL};
    if (lkv_cli_wants_help(argc, argv))
        return help(inspect_usage);
    const char *path = NULL;
    if (argc >= 1 && (argv[0][0] != '-' || strcmp(argv[0], "-") == 0)) {
        path = argv[0];
        argc--;
        argv++;
    }
    if (lkv_cli_check(argc, argv, known, flags))
        return 2;
    if (!path)
        path = lkv_cli_opt(argc, argv, "in");
    if (!path)
        return lkv_cli_error(2, "inspect needs a FILE (\"-\" is stdin)");
    const int json = lkv_cli_flag(argc, argv, "json");
    lkv_inspect_result r;
    if (lkv_cli_inspect(path, &r))
        return 1;
    if (r.header_status != LKV_OK) {
        if (json) {
            printf("{\"file\":");
            lkv_cli_json_string(stdout, path);
            printf(",\"header_ok\":false,\"error\":\"%s\",\"message\":",
                   lkv_status_name(r.header_status));
            lkv_cli_json_string(stdout, r.diag.msg);
            printf("}\n");
        }
        return lkv_cli_error(1, "%s: %s: %s", path, lkv_status_name(r.header_status), r.diag.msg);
    }
    const lkv_container_info *in = &r.info;
    const int len_ok = r.file_bytes == in->total_bytes;
    const int crc_ok = len_ok && r.payload_crc == in->payload_crc;
    const double raw = (double)in->n_vectors * in->params.dim * (double)lkv_dtype_size(in->dtype);
    const unsigned profile = lkv_profile_of(&in->params);
    const unsigned version =
        profile == LKV_PROFILE_2 ? lkv_p2_format_of(&in->params) : LKV_FMT_VERSION;
    /* Profile 2: the mean over this container's vectors (chunk overheads in). */
    const double bpv = profile == LKV_PROFILE_2
                           ? (in->n_vectors ? 8.0 * (double)(in->total_bytes - in->header_bytes) /
                                                  (double)in->n_vectors
                                            : 0.0)
                           : (double)lkv_bits_per_vector(&in->params);
    if (json) {
        printf("{\"file\":");
        lkv_cli_json_string(stdout, path);
        printf(",\"version\":%u,\"profile\":%u,\"header_bytes\":%zu,\"variant\":\"%s\","
               "\"q\":%u,\"dim\":%u,\"dtype\":\"%s\",\"shape\":[",
               version, profile, in->header_bytes, lkv_variant_name(in->params.variant),
               in->params.q, in->params.dim, lkv_dtype_name(in->dtype));
        for (uint32_t i = 0; i < in->ndim; i++)
            printf("%s%llu", i ? "," : "", (unsigned long long)in->shape[i]);
        printf("],\"n_vectors\":%llu,\"bits_per_vector\":%.2f,\"record_bytes\":%zu,"
               "\"total_bytes\":%zu,\"file_bytes\":%llu,\"header_ok\":true,\"length_ok\":%s,"
               "\"payload_crc\":\"%08x\",\"payload_crc_computed\":\"%08x\",\"payload_ok\":%s}\n",
               (unsigned long long)in->n_vectors, bpv, in->record_bytes, in->total_bytes,
               (unsigned long long)r.file_bytes, len_ok ? "true" : "false", in->payload_crc,
               r.payload_crc, crc_ok ? "true" : "false");
    } else {
        printf("file             %s\n", path);
        printf("format           LKVB version %u, header %zu bytes\n", version, in->header_bytes);
        printf("profile          %u%s\n", profile,
               profile == LKV_PROFILE_2 ? " (entropy-coded chunks)" : " (reference codec)");
        printf("variant          %s (block of %u)\n", lkv_variant_name(in->params.variant),
               lkv_block_size(in->params.variant));
        printf("q_range          %u\n", in->params.q);
        printf("head_dim         %u\n", in->params.dim);
        printf("source dtype     %s\n", lkv_dtype_name(in->dtype));
        printf("shape            [");
        for (uint32_t i = 0; i < in->ndim; i++)
            printf("%s%llu", i ? ", " : "", (unsigned long long)in->shape[i]);
        printf("]\n");
        printf("vectors          %llu\n", (unsigned long long)in->n_vectors);
        if (profile == LKV_PROFILE_2)
            printf("bits per vector  %.1f (mean over its vectors, chunks of %u)\n", bpv,
                   lkv_p2_chunk_vectors(&in->params));
        else
            printf("bits per vector  %u (%zu bytes a record)\n", lkv_bits_per_vector(&in->params),
                   in->record_bytes);
        printf("container bytes  %zu (%.3fx smaller than %s)\n", in->total_bytes,
               in->total_bytes ? raw / (double)in->total_bytes : 0.0, lkv_dtype_name(in->dtype));
        printf("header checksum  ok\n");
        if (len_ok)
            printf("length           ok\n");
        else
            printf("length           BAD: %llu bytes, the header promises %zu (%s)\n",
                   (unsigned long long)r.file_bytes, in->total_bytes,
                   r.file_bytes < in->total_bytes ? "truncated" : "trailing bytes");
        if (crc_ok)
            printf("payload checksum ok (%08x)\n", in->payload_crc);
        else
            printf("payload checksum BAD: stored %08x, computed %08x\n", in->payload_crc,
                   r.payload_crc);
    }
    return len_ok && crc_ok ? 0 : 1;
}

int lkv_cli_codec(int argc, char **argv)
{
    static const char *const all[] = {info_usage, encode_usage, decode_usage, roundtrip_usage,
                                      inspect_usage};
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
    if (!strcmp(argv[0], "inspect"))
        return codec_inspect(argc - 1, argv + 1);
    return lkv_cli_error(2, "unknown codec command '%s' (info, encode, decode, roundtrip, inspect)",
                         argv[0]);
}
