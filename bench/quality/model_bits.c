/* SPDX-License-Identifier: Apache-2.0 */
/*
 * model_bits.c - the README's tables of supported head dims and of the KV
 * cache size per token of a few common models, computed by the codec
 * (lkv_record_bytes, lkv_bits_per_vector), not typed by hand.
 *
 * Usage: model_bits            prints the tables (markdown)
 *        model_bits --check F  exits 1 unless file F holds exactly that text
 *                              between the lines "<!-- model_bits begin -->"
 *                              and "<!-- model_bits end -->" (a ctest)
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lkv_codec.h"

#define BEGIN_MARK "<!-- model_bits begin -->\n"
#define END_MARK   "<!-- model_bits end -->"

typedef struct model {
    const char *name;
    unsigned layers, kv_heads, head_dim;
    unsigned per_layer; /* vectors per layer and head: 2 (K and V), 1 (MLA's shared latent) */
} model;

static const model models[] = {
    {"Llama-3.1-8B", 32, 8, 128, 2},
    {"Phi-3-medium", 40, 10, 128, 2},
    {"Phi-3-mini", 32, 32, 96, 2},
    {"DeepSeek-V3 (MLA latent 512 + 64)", 61, 1, 576, 1},
};

static const unsigned dims[] = {64, 80, 96, 112, 128, 160, 192, 256, 576};

/* Appends to a growing string. */
typedef struct text {
    char *s;
    size_t len, cap;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        const int n = vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->cap = t->cap * 2 + (size_t)(n > 0 ? n : 64) + 1;
        t->s = realloc(t->s, t->cap);
        if (!t->s)
            exit(2);
    }
}

static void pieces(char *buf, size_t cap, unsigned d)
{
    size_t at = 0;
    buf[0] = 0;
    for (unsigned bit = 1024; bit; bit >>= 1)
        if (d & bit)
            at += (size_t)snprintf(buf + at, cap - at, "%s%u", at ? " + " : "", bit);
}

static void tables(text *t)
{
    put(t, "| head_dim | pieces | E8 Q=38 bytes/vector | bits/coordinate | D4 Q=38 "
           "bytes/vector | bits/coordinate |\n");
    put(t, "|---:|---|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        const lkv_params e8 = {LKV_VARIANT_E8, 38, dims[i]}, d4 = {LKV_VARIANT_D4, 38, dims[i]};
        char pc[64];
        pieces(pc, sizeof pc, dims[i]);
        put(t, "| %u | %s | %zu | %.2f | %zu | %.2f |\n", dims[i], pc, lkv_record_bytes(&e8),
            8.0 * (double)lkv_record_bytes(&e8) / dims[i], lkv_record_bytes(&d4),
            8.0 * (double)lkv_record_bytes(&d4) / dims[i]);
    }
    put(t, "\n");
    put(t, "| model | layers × KV heads × head_dim | vectors per token | bf16 bytes/token | "
           "E8 Q=38 bytes/token | bits/token | smaller by |\n");
    put(t, "|---|---|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        const model *m = &models[i];
        const lkv_params p = {LKV_VARIANT_E8, 38, m->head_dim};
        const unsigned long long vecs = (unsigned long long)m->layers * m->kv_heads * m->per_layer;
        const unsigned long long raw = vecs * m->head_dim * 2, coded = vecs * lkv_record_bytes(&p);
        put(t, "| %s | %u × %u × %u%s | %llu | %llu | %llu | %llu | %.2f× |\n", m->name, m->layers,
            m->kv_heads, m->head_dim, m->per_layer == 2 ? " (K and V)" : " (one latent)", vecs, raw,
            coded, coded * 8, (double)raw / (double)coded);
    }
}

int main(int argc, char **argv)
{
    text t = {malloc(256), 0, 256};
    if (!t.s)
        return 2;
    tables(&t);
    if (argc == 1) {
        fputs(t.s, stdout);
        return 0;
    }
    if (argc != 3 || strcmp(argv[1], "--check") != 0) {
        fprintf(stderr, "usage: model_bits [--check README.md]\n");
        return 2;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return 2;
    }
    static char buf[1 << 20];
    const size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *b = strstr(buf, BEGIN_MARK);
    const char *e = b ? strstr(b, END_MARK) : NULL;
    if (!b || !e) {
        fprintf(stderr, "%s: no %s ... %s section\n", argv[2], "<!-- model_bits begin -->",
                END_MARK);
        return 1;
    }
    b += strlen(BEGIN_MARK);
    if ((size_t)(e - b) != t.len || memcmp(b, t.s, t.len) != 0) {
        fprintf(stderr, "%s: the model_bits section differs from what the codec computes:\n%s",
                argv[2], t.s);
        return 1;
    }
    printf("%s: model_bits section matches the codec\n", argv[2]);
    free(t.s);
    return 0;
}
