/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ref.c - the scalar reference path: one vector at a time, written to read
 * like docs/codec.md. Every other path (AVX2, AVX-512, CUDA) must produce the
 * same bytes as this file.
 *
 * Determinism rules that this file fixes for all paths:
 *   - the sum of squares for the norm is a full pairwise tree over index
 *     order: level 0 adds x[2i]^2 + x[2i+1]^2, each next level adds
 *     neighbours t[2i] + t[2i+1] (so a warp can reproduce it with xor
 *     shuffles, and a SIMD lane with the same adds);
 *   - the Walsh-Hadamard butterfly runs stages h = 1, 2, 4, ..., D/2 with
 *     (a + b, a - b), then multiplies by fp32(1/sqrt(D));
 *   - the two E8 distances are summed in index order 0..7;
 *   - all divisions are true fp32 divisions; the build uses -ffp-contract=off.
 */
#include "lkv_codec_internal.h"

#include <math.h>
#include <string.h>

static inline float bits_f32(uint32_t x)
{
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static inline uint32_t f32_bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    return x;
}

int lkv_load_vec(lkv_dtype dt, const void *src, size_t i, uint32_t dim, float *x,
                 uint32_t *bad_elem)
{
    const unsigned char *base = (const unsigned char *)src;
    switch (dt) {
    case LKV_DTYPE_FP32: {
        const unsigned char *p = base + i * dim * 4;
        for (uint32_t j = 0; j < dim; j++) {
            uint32_t b;
            memcpy(&b, p + 4 * j, 4);
            if ((b & 0x7f800000u) == 0x7f800000u) {
                *bad_elem = j;
                return 0;
            }
            x[j] = bits_f32(b);
        }
        return 1;
    }
    case LKV_DTYPE_BF16: {
        const unsigned char *p = base + i * dim * 2;
        for (uint32_t j = 0; j < dim; j++) {
            uint16_t b;
            memcpy(&b, p + 2 * j, 2);
            if ((b & 0x7f80u) == 0x7f80u) {
                *bad_elem = j;
                return 0;
            }
            x[j] = bits_f32((uint32_t)b << 16);
        }
        return 1;
    }
    case LKV_DTYPE_FP16: {
        const unsigned char *p = base + i * dim * 2;
        for (uint32_t j = 0; j < dim; j++) {
            uint16_t b;
            memcpy(&b, p + 2 * j, 2);
            if ((b & 0x7c00u) == 0x7c00u) {
                *bad_elem = j;
                return 0;
            }
            x[j] = bits_f32(lkv_math_f16_to_f32(b));
        }
        return 1;
    }
    }
    return 0;
}

void lkv_store_vec(lkv_dtype dt, void *dst, size_t i, uint32_t dim, const float *x)
{
    unsigned char *base = (unsigned char *)dst;
    switch (dt) {
    case LKV_DTYPE_FP32: memcpy(base + i * dim * 4, x, (size_t)dim * 4); return;
    case LKV_DTYPE_BF16: {
        unsigned char *p = base + i * dim * 2;
        for (uint32_t j = 0; j < dim; j++) {
            const uint16_t b = lkv_math_f32_to_bf16(f32_bits(x[j]));
            memcpy(p + 2 * j, &b, 2);
        }
        return;
    }
    case LKV_DTYPE_FP16: {
        unsigned char *p = base + i * dim * 2;
        for (uint32_t j = 0; j < dim; j++) {
            const uint16_t b = lkv_math_f32_to_f16(f32_bits(x[j]));
            memcpy(p + 2 * j, &b, 2);
        }
        return;
    }
    }
}

/* In-place Walsh-Hadamard butterfly, stages h = 1, 2, ..., dim/2, then the
 * 1/sqrt(dim) scale. */
static void fwht(float *v, uint32_t dim, float scale)
{
    for (uint32_t h = 1; h < dim; h <<= 1)
        for (uint32_t i = 0; i < dim; i += 2 * h)
            for (uint32_t j = i; j < i + h; j++) {
                const float a = v[j], b = v[j + h];
                v[j] = a + b;
                v[j + h] = a - b;
            }
    for (uint32_t j = 0; j < dim; j++)
        v[j] = v[j] * scale;
}

static float norm_pairwise(const float *x, uint32_t dim)
{
    float t[LKV_DIM_MAX / 2];
    uint32_t len = dim / 2;
    for (uint32_t i = 0; i < len; i++)
        t[i] = x[2 * i] * x[2 * i] + x[2 * i + 1] * x[2 * i + 1];
    while (len > 1) {
        len /= 2;
        for (uint32_t i = 0; i < len; i++)
            t[i] = t[2 * i] + t[2 * i + 1];
    }
    return sqrtf(t[0]);
}

/*
 * Closest point of D_n in the box [lo, hi]^n (docs/codec.md section 3).
 * f receives integers (as int32). y must be finite.
 */
static void dn_box(const float *y, uint32_t n, float lo, float hi, int32_t *f)
{
    float d[8];
    int32_t sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        float r = rintf(y[i]);
        r = r < lo ? lo : r > hi ? hi : r;
        f[i] = (int32_t)r;
        d[i] = y[i] - r;
        sum += f[i];
    }
    if ((sum & 1) == 0)
        return;
    int best = -1;
    float best_abs = -1.0f;
    int32_t best_dir = 0;
    for (uint32_t i = 0; i < n; i++) {
        const int32_t dir = d[i] >= 0.0f ? 1 : -1;
        const float t = (float)(f[i] + dir);
        const float a = fabsf(d[i]);
        if (t >= lo && t <= hi && a > best_abs) {
            best = (int)i;
            best_abs = a;
            best_dir = dir;
        }
    }
    if (best < 0) {
        /* No move toward y stays in the box: move away on the smallest |d|. */
        float small = INFINITY;
        for (uint32_t i = 0; i < n; i++) {
            const float a = fabsf(d[i]);
            if (a < small) {
                small = a;
                best = (int)i;
            }
        }
        best_dir = d[best] >= 0.0f ? -1 : 1;
    }
    f[best] += best_dir;
}

/* E8 in [-Q, Q]^8. Returns 0 for the integer coset (p = a, integers) or 1
 * for the half-integer coset (p = b = w' + 1/2; w receives b - 1/2). */
static int e8_box(const float *y, float q, int32_t *pt)
{
    int32_t a[8], b[8];
    float ym[8];
    dn_box(y, 8, -q, q, a);
    for (int i = 0; i < 8; i++)
        ym[i] = y[i] - 0.5f;
    dn_box(ym, 8, -q, q - 1.0f, b);
    float da = 0.0f, db = 0.0f;
    for (int i = 0; i < 8; i++) {
        const float ea = y[i] - (float)a[i];
        const float eb = y[i] - ((float)b[i] + 0.5f);
        da = da + ea * ea;
        db = db + eb * eb;
    }
    if (da <= db) {
        memcpy(pt, a, sizeof a);
        return 0;
    }
    memcpy(pt, b, sizeof b);
    return 1;
}

/* Profile 2 (p2.c) finds its points with the same rule (lkv_p2.h). */
int lkv_ref_e8_box(const float *y, float q, int32_t *pt);
int lkv_ref_e8_box(const float *y, float q, int32_t *pt)
{
    return e8_box(y, q, pt);
}

void lkv_ref_closest(const lkv_derived *d, const float *z, int32_t *p2)
{
    int32_t pt[8];
    if (d->n == 4) {
        dn_box(z, 4, -d->qf, d->qf, pt);
        for (int i = 0; i < 4; i++)
            p2[i] = 2 * pt[i];
        return;
    }
    const int half = e8_box(z, d->qf, pt);
    for (int i = 0; i < 8; i++)
        p2[i] = 2 * pt[i] + half;
}

lkv_u128 lkv_ref_point_index(const lkv_derived *d, const int32_t *p2)
{
    const int32_t q = (int32_t)d->p.q;
    const uint64_t bb = 2 * (uint64_t)q + 1;
    if (d->n == 4 || (p2[0] & 1) == 0) {
        lkv_u128 v = 0;
        for (uint32_t i = 0; i < d->n; i++)
            v = v * bb + (uint64_t)(p2[i] / 2 + q);
        return v >> 1;
    }
    /* half-integer coset: w_i = p_i - 1/2 + Q = (p2_i - 1) / 2 + Q */
    const uint64_t c = 2 * (uint64_t)q;
    lkv_u128 r = 0;
    for (int i = 0; i < 7; i++)
        r = r * c + (uint64_t)((p2[i] - 1) / 2 + q);
    const uint64_t h = (uint64_t)((p2[7] - 1) / 2 + q) >> 1;
    return d->e8_int_count + r * (uint64_t)q + h;
}

int lkv_ref_index_point(const lkv_derived *d, lkv_u128 idx, int32_t *p2)
{
    const uint64_t q = d->p.q;
    const uint64_t bb = 2 * q + 1;
    if (idx >= d->codebook)
        return 0;
    if (d->n == 4 || idx < d->e8_int_count) {
        lkv_u128 v = idx << 1;
        for (int i = (int)d->n - 1; i >= 0; i--) {
            p2[i] = 2 * ((int32_t)(uint32_t)(v % bb) - (int32_t)q);
            v /= bb;
        }
        return 1;
    }
    lkv_u128 rem = idx - d->e8_int_count;
    const uint32_t h = (uint32_t)(rem % q);
    lkv_u128 r = rem / q;
    const uint64_t c = 2 * q;
    uint32_t wsum = 0;
    for (int i = 6; i >= 0; i--) {
        const uint32_t w = (uint32_t)(r % c);
        r /= c;
        wsum += w;
        p2[i] = 2 * ((int32_t)w - (int32_t)q) + 1;
    }
    const uint32_t w7 = 2u * h + (wsum & 1u);
    p2[7] = 2 * ((int32_t)w7 - (int32_t)q) + 1;
    return 1;
}

lkv_status lkv_ref_encode_vec(const lkv_derived *d, const float *x, uint8_t *rec)
{
    const uint32_t dim = d->p.dim;
    float y[LKV_DIM_MAX];
    float r = norm_pairwise(x, dim);
    if (!(r >= LKV_EPS))
        r = LKV_EPS;
    const uint16_t r16 = lkv_math_f32_to_f16(f32_bits(r));
    if (r16 == LKV_F16_INF_BITS)
        return LKV_ERR_NORM_OVERFLOW;
    for (uint32_t j = 0; j < dim; j++)
        y[j] = x[j] / r;
    fwht(y, dim, d->inv_sqrt_d);
    float m = 0.0f;
    for (uint32_t j = 0; j < dim; j++) {
        const float a = fabsf(y[j]);
        if (a > m)
            m = a;
    }
    if (!(m >= LKV_EPS))
        m = LKV_EPS;
    const uint16_t m16 = lkv_math_f32_to_f16(f32_bits(m));
    const float s = bits_f32(lkv_math_f16_to_f32(m16)) / d->qf;
    for (uint32_t j = 0; j < dim; j++)
        y[j] = y[j] / s;

    memset(rec, 0, d->rec_bytes);
    rec[0] = (uint8_t)r16;
    rec[1] = (uint8_t)(r16 >> 8);
    rec[2] = (uint8_t)m16;
    rec[3] = (uint8_t)(m16 >> 8);
    uint32_t pos = LKV_FMT_REC_HEAD_BITS;
    for (uint32_t b = 0; b < d->nblocks; b++, pos += d->k) {
        int32_t p2[8];
        lkv_ref_closest(d, y + b * d->n, p2);
        lkv_put_bits(rec, pos, lkv_ref_point_index(d, p2), d->k);
    }
    return LKV_OK;
}

lkv_status lkv_ref_decode_vec(const lkv_derived *d, const uint8_t *rec, float *out)
{
    const uint16_t r16 = (uint16_t)(rec[0] | (rec[1] << 8));
    const uint16_t m16 = (uint16_t)(rec[2] | (rec[3] << 8));
    if (r16 < LKV_F16_EPS_BITS || r16 >= LKV_F16_INF_BITS || m16 < LKV_F16_EPS_BITS ||
        m16 >= LKV_F16_INF_BITS)
        return LKV_ERR_CORRUPT;
    /* Padding bits past the last index must be zero (canonical records). */
    if (d->bits & 7u) {
        const uint8_t last = rec[d->rec_bytes - 1];
        if (last >> (d->bits & 7u))
            return LKV_ERR_CORRUPT;
    }
    const float s = bits_f32(lkv_math_f16_to_f32(m16)) / d->qf;
    uint32_t pos = LKV_FMT_REC_HEAD_BITS;
    for (uint32_t b = 0; b < d->nblocks; b++, pos += d->k) {
        int32_t p2[8];
        if (!lkv_ref_index_point(d, lkv_get_bits(rec, pos, d->k), p2))
            return LKV_ERR_CORRUPT;
        for (uint32_t i = 0; i < d->n; i++)
            out[b * d->n + i] = ((float)p2[i] * 0.5f) * s;
    }
    fwht(out, d->p.dim, d->inv_sqrt_d);
    const float r = bits_f32(lkv_math_f16_to_f32(r16));
    for (uint32_t j = 0; j < d->p.dim; j++)
        out[j] = out[j] * r;
    return LKV_OK;
}

lkv_status lkv_encode_scalar(const lkv_derived *d, lkv_dtype dt, const void *src, size_t n,
                             uint8_t *dst, lkv_diag *diag)
{
    return lkv_encode_scalar_range(d, dt, src, 0, n, dst, diag);
}

lkv_status lkv_encode_scalar_range(const lkv_derived *d, lkv_dtype dt, const void *src,
                                   size_t first, size_t end, uint8_t *dst, lkv_diag *diag)
{
    float x[LKV_DIM_MAX];
    for (size_t i = first; i < end; i++) {
        uint32_t bad = 0;
        if (!lkv_load_vec(dt, src, i, d->p.dim, x, &bad))
            return lkv_fail(diag, LKV_ERR_NONFINITE, i,
                            "tensor.data: vector %zu element %u is NaN or Inf", i, bad);
        if (lkv_ref_encode_vec(d, x, dst + i * d->rec_bytes) != LKV_OK)
            return lkv_fail(diag, LKV_ERR_NORM_OVERFLOW, i,
                            "tensor.data: vector %zu has norm >= 65520 (fp16 overflow)", i);
    }
    return LKV_OK;
}

lkv_status lkv_decode_scalar(const lkv_derived *d, const uint8_t *src, size_t n, lkv_dtype dt,
                             void *dst, lkv_diag *diag)
{
    return lkv_decode_scalar_range(d, src, 0, n, dt, dst, diag);
}

lkv_status lkv_decode_scalar_range(const lkv_derived *d, const uint8_t *src, size_t first,
                                   size_t end, lkv_dtype dt, void *dst, lkv_diag *diag)
{
    float x[LKV_DIM_MAX];
    for (size_t i = first; i < end; i++) {
        if (lkv_ref_decode_vec(d, src + i * d->rec_bytes, x) != LKV_OK)
            return lkv_fail(diag, LKV_ERR_CORRUPT, i, "record %zu holds an invalid index or scale",
                            i);
        lkv_store_vec(dt, dst, i, d->p.dim, x);
    }
    return LKV_OK;
}

lkv_status lkv_encode_split_range(const lkv_split *s, lkv_dtype dt, const void *src, size_t first,
                                  size_t end, uint8_t *dst, lkv_diag *diag)
{
    float x[LKV_DIM_MAX];
    for (size_t i = first; i < end; i++) {
        uint32_t bad = 0;
        if (!lkv_load_vec(dt, src, i, s->dim, x, &bad))
            return lkv_fail(diag, LKV_ERR_NONFINITE, i,
                            "tensor.data: vector %zu element %u is NaN or Inf", i, bad);
        for (uint32_t j = 0; j < s->count; j++)
            if (lkv_ref_encode_vec(&s->d[j], x + s->off[j],
                                   dst + i * s->rec_bytes + s->rec_off[j]) != LKV_OK)
                return lkv_fail(diag, LKV_ERR_NORM_OVERFLOW, i,
                                "tensor.data: vector %zu has norm >= 65520 (fp16 overflow)", i);
    }
    return LKV_OK;
}

lkv_status lkv_decode_split_range(const lkv_split *s, const uint8_t *src, size_t first, size_t end,
                                  lkv_dtype dt, void *dst, lkv_diag *diag)
{
    float x[LKV_DIM_MAX];
    for (size_t i = first; i < end; i++) {
        for (uint32_t j = 0; j < s->count; j++)
            if (lkv_ref_decode_vec(&s->d[j], src + i * s->rec_bytes + s->rec_off[j],
                                   x + s->off[j]) != LKV_OK)
                return lkv_fail(diag, LKV_ERR_CORRUPT, i,
                                "record %zu holds an invalid index or scale", i);
        lkv_store_vec(dt, dst, i, s->dim, x);
    }
    return LKV_OK;
}
