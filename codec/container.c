/* SPDX-License-Identifier: Apache-2.0 */
/*
 * container.c - the coded-block container (codec/FORMAT.md) and CRC32C.
 *
 * Design note: the container is parsed as untrusted bytes. Every field is
 * read with explicit little-endian loads from inside the checked length, the
 * header checksum is verified before any field is believed, and all sizes
 * are computed with overflow checks, so no input can make the parser read
 * past `len` or size a buffer from an unchecked product.
 */
#include "lkv_codec_internal.h"
#include "lkv_format.h"
#include "lkv_p2.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define LKV_HAVE_CRC_SSE42 1
#endif

static const uint32_t crc32c_table[256] = {
    0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu, 0x26a1e7e8u,
    0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu, 0x4d43cfd0u, 0xbf284cd3u,
    0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu, 0xf165b798u, 0x030e349bu, 0xd7c45070u,
    0x25afd373u, 0x36ff2087u, 0xc494a384u, 0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u,
    0x5d1d08bfu, 0xaf768bbcu, 0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u,
    0x33ed7d2au, 0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
    0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau, 0x30e349b1u,
    0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu, 0x1642ae59u, 0xe4292d5au,
    0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au, 0x7da08661u, 0x8fcb0562u, 0x9c9bf696u,
    0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu, 0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u,
    0x67dafa54u, 0x95b17957u, 0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu,
    0xfe53516fu, 0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
    0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu, 0x3ac7f2ebu,
    0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u, 0x61c69362u, 0x93ad1061u,
    0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu, 0x4767748au, 0xb50cf789u, 0xeb1fcbadu,
    0x197448aeu, 0x0a24bb5au, 0xf84f3859u, 0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u,
    0x7198540du, 0x83f3d70eu, 0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u,
    0xa55230e6u, 0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
    0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu, 0x456cac67u,
    0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u, 0xe9141340u, 0x1b7f9043u,
    0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu, 0x92a8fc17u, 0x60c37f14u, 0x73938ce0u,
    0x81f80fe3u, 0x55326b08u, 0xa759e80bu, 0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu,
    0xf94ad42fu, 0x0b21572cu, 0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u,
    0x502036a5u, 0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
    0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u, 0x0e330a81u,
    0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du, 0x758fe5d6u, 0x87e466d5u,
    0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u, 0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u,
    0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu, 0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u,
    0x0417b1dbu, 0xf67c32d8u, 0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu,
    0x5a048dffu, 0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
    0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u, 0x590ab964u,
    0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u, 0x7fab5e8cu, 0x8dc0dd8fu,
    0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu, 0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u,
    0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u, 0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u,
    0x4f48173du, 0xbd23943eu, 0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au,
    0xc69f7b69u, 0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
    0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};

static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t len)
{
    while (len--)
        crc = crc32c_table[(crc ^ *p++) & 0xffu] ^ (crc >> 8);
    return crc;
}

#if defined(LKV_HAVE_CRC_SSE42)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p,
                                                            size_t len)
{
    uint64_t c = crc;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        len -= 8;
    }
    crc = (uint32_t)c;
    while (len--)
        crc = _mm_crc32_u8(crc, *p++);
    return crc;
}
#endif

uint32_t lkv_crc32c(uint32_t crc, const void *buf, size_t len)
{
    crc = ~crc;
#if defined(LKV_HAVE_CRC_SSE42)
    if (__builtin_cpu_supports("sse4.2"))
        return ~crc32c_hw(crc, (const uint8_t *)buf, len);
#endif
    return ~crc32c_sw(crc, (const uint8_t *)buf, len);
}

static uint16_t ld16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)ld16(p) | ((uint32_t)ld16(p + 2) << 16);
}
static uint64_t ld64(const uint8_t *p)
{
    return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32);
}
static void st16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void st32(uint8_t *p, uint32_t v)
{
    st16(p, (uint16_t)v);
    st16(p + 2, (uint16_t)(v >> 16));
}
static void st64(uint8_t *p, uint64_t v)
{
    st32(p, (uint32_t)v);
    st32(p + 4, (uint32_t)(v >> 32));
}

lkv_status lkv_container_plan(const lkv_params *p, lkv_dtype dt, const uint64_t *shape,
                              uint32_t ndim, lkv_container_info *info, lkv_diag *diag)
{
    lkv_status st = lkv_params_check(p, diag);
    if (st == LKV_OK)
        st = lkv_dtype_check((int)dt, diag);
    if (st != LKV_OK)
        return st;
    if (ndim == 0 || ndim > LKV_MAX_NDIM)
        return lkv_fail(diag, LKV_ERR_SHAPE, UINT64_MAX,
                        "tensor.shape has %u dimensions, want 1..%u", ndim, LKV_MAX_NDIM);
    if (shape[ndim - 1] != p->dim)
        return lkv_fail(diag, LKV_ERR_SHAPE, UINT64_MAX,
                        "tensor.shape[%u]=%llu does not equal head_dim=%u", ndim - 1,
                        (unsigned long long)shape[ndim - 1], p->dim);
    memset(info, 0, sizeof *info);
    uint64_t elems = 1;
    for (uint32_t i = 0; i < ndim; i++) {
        if (shape[i] != 0 && elems > UINT64_MAX / shape[i])
            return lkv_fail(diag, LKV_ERR_SHAPE, UINT64_MAX, "tensor.shape overflows 64 bits");
        elems *= shape[i];
        info->shape[i] = shape[i];
    }
    info->params = *p;
    info->dtype = dt;
    info->ndim = ndim;
    info->n_vectors = elems / p->dim;
    info->record_bytes = lkv_record_bytes(p);
    info->header_bytes = LKV_FMT_HEADER_BYTES(ndim);
    if (lkv_profile_of(p) == LKV_PROFILE_2) {
        info->header_bytes = LKV_FMT_HEADER_BYTES_P2(ndim);
        /* Variable-size chunks: plan for the worst case. */
        const size_t bound = lkv_p2_payload_bound(p, info->n_vectors);
        if ((bound == 0 && info->n_vectors != 0) || bound > SIZE_MAX - info->header_bytes ||
            elems > SIZE_MAX / 4)
            return lkv_fail(diag, LKV_ERR_SHAPE, UINT64_MAX, "tensor of %llu vectors is too large",
                            (unsigned long long)info->n_vectors);
        info->total_bytes = info->header_bytes + bound;
        return LKV_OK;
    }
    if (info->n_vectors > (SIZE_MAX - info->header_bytes) / info->record_bytes ||
        elems > SIZE_MAX / 4)
        return lkv_fail(diag, LKV_ERR_SHAPE, UINT64_MAX, "tensor of %llu vectors is too large",
                        (unsigned long long)info->n_vectors);
    info->total_bytes = info->header_bytes + (size_t)info->n_vectors * info->record_bytes;
    return LKV_OK;
}

lkv_status lkv_container_write_header(const lkv_container_info *info, void *dst, size_t dst_cap,
                                      lkv_diag *diag)
{
    if (dst_cap < info->header_bytes)
        return lkv_fail(diag, LKV_ERR_BUFFER_SMALL, UINT64_MAX,
                        "header needs %zu bytes, buffer has %zu", info->header_bytes, dst_cap);
    uint8_t *h = (uint8_t *)dst;
    const int p2 = lkv_profile_of(&info->params) == LKV_PROFILE_2;
    memcpy(h + LKV_FMT_OFF_MAGIC, LKV_FMT_MAGIC, 4);
    st16(h + LKV_FMT_OFF_VERSION, p2 ? lkv_p2_format_of(&info->params) : LKV_FMT_VERSION);
    st16(h + LKV_FMT_OFF_HEADER_BYTES, (uint16_t)info->header_bytes);
    h[LKV_FMT_OFF_VARIANT] = (uint8_t)info->params.variant;
    h[LKV_FMT_OFF_DTYPE] = (uint8_t)info->dtype;
    h[LKV_FMT_OFF_NDIM] = (uint8_t)info->ndim;
    h[LKV_FMT_OFF_RESERVED] = p2 ? (uint8_t)LKV_PROFILE_2 : 0;
    st16(h + LKV_FMT_OFF_Q, (uint16_t)info->params.q);
    st16(h + LKV_FMT_OFF_DIM, (uint16_t)info->params.dim);
    st64(h + LKV_FMT_OFF_NVEC, info->n_vectors);
    for (uint32_t i = 0; i < info->ndim; i++)
        st64(h + LKV_FMT_OFF_SHAPE + 8 * i, info->shape[i]);
    const size_t crc_off = info->header_bytes - 8;
    if (p2)
        st64(h + crc_off - 8, info->total_bytes - info->header_bytes);
    st32(h + crc_off, info->payload_crc);
    st32(h + crc_off + 4, lkv_crc32c(0, h, crc_off + 4));
    return LKV_OK;
}

lkv_status lkv_compress(const lkv_params *p, lkv_dtype dt, const uint64_t *shape, uint32_t ndim,
                        const void *src, size_t src_bytes, void *dst, size_t dst_cap,
                        size_t *dst_len, lkv_isa isa, lkv_diag *diag)
{
    lkv_container_info info;
    lkv_status st = lkv_container_plan(p, dt, shape, ndim, &info, diag);
    if (st != LKV_OK)
        return st;
    const size_t want = (size_t)info.n_vectors * p->dim * lkv_dtype_size(dt);
    if (src_bytes != want)
        return lkv_fail(diag, LKV_ERR_SHAPE, UINT64_MAX,
                        "tensor.data has %zu bytes, shape and dtype %s need %zu", src_bytes,
                        lkv_dtype_name(dt), want);
    uint8_t *payload = (uint8_t *)dst + info.header_bytes;
    if (lkv_profile_of(p) == LKV_PROFILE_2) {
        /* Variable size: the buffer need only hold what the data takes. */
        if (dst_cap < info.header_bytes)
            return lkv_fail(diag, LKV_ERR_BUFFER_SMALL, UINT64_MAX,
                            "container needs at least %zu bytes, buffer has %zu", info.header_bytes,
                            dst_cap);
        size_t plen = 0;
        st = lkv_p2_encode_isa(p, dt, src, (size_t)info.n_vectors, payload,
                               dst_cap - info.header_bytes, &plen, isa, diag);
        if (st != LKV_OK)
            return st;
        info.total_bytes = info.header_bytes + plen;
    } else {
        if (dst_cap < info.total_bytes)
            return lkv_fail(diag, LKV_ERR_BUFFER_SMALL, UINT64_MAX,
                            "container needs %zu bytes, buffer has %zu", info.total_bytes, dst_cap);
        st = lkv_encode(p, dt, src, (size_t)info.n_vectors, payload, isa, diag);
        if (st != LKV_OK)
            return st;
    }
    info.payload_crc = lkv_crc32c(0, payload, info.total_bytes - info.header_bytes);
    st = lkv_container_write_header(&info, dst, dst_cap, diag);
    if (st == LKV_OK && dst_len)
        *dst_len = info.total_bytes;
    return st;
}

lkv_status lkv_container_parse_header(const void *buf, size_t len, lkv_container_info *info,
                                      lkv_diag *diag)
{
    const uint8_t *h = (const uint8_t *)buf;
    if (len < LKV_FMT_OFF_VERSION + 2)
        return lkv_fail(diag, LKV_ERR_TRUNCATED, len, "coded: %zu bytes is shorter than a header",
                        len);
    if (memcmp(h, LKV_FMT_MAGIC, 4) != 0)
        return lkv_fail(diag, LKV_ERR_MAGIC, 0, "coded: magic %02x%02x%02x%02x is not \"LKVB\"",
                        h[0], h[1], h[2], h[3]);
    const uint16_t version = ld16(h + LKV_FMT_OFF_VERSION);
    if (version != LKV_FMT_VERSION && version != LKV_FMT_VERSION_P2 &&
        version != LKV_FMT_VERSION_P3 && version != LKV_FMT_VERSION_P4)
        return lkv_fail(diag, LKV_ERR_VERSION, LKV_FMT_OFF_VERSION,
                        "coded: format version %u is unknown (this build reads %u, %u, %u and %u)",
                        version, LKV_FMT_VERSION, LKV_FMT_VERSION_P2, LKV_FMT_VERSION_P3,
                        LKV_FMT_VERSION_P4);
    const int p2 = version != LKV_FMT_VERSION;
    if (len < LKV_FMT_HEADER_BYTES(1))
        return lkv_fail(diag, LKV_ERR_TRUNCATED, len, "coded: %zu bytes is shorter than a header",
                        len);
    const uint32_t ndim = h[LKV_FMT_OFF_NDIM];
    const size_t hbytes = ld16(h + LKV_FMT_OFF_HEADER_BYTES);
    if (ndim == 0 || ndim > LKV_MAX_NDIM ||
        hbytes != (p2 ? LKV_FMT_HEADER_BYTES_P2(ndim) : LKV_FMT_HEADER_BYTES(ndim)))
        return lkv_fail(diag, LKV_ERR_CORRUPT, LKV_FMT_OFF_NDIM,
                        "coded: ndim=%u with header_bytes=%zu is inconsistent", ndim, hbytes);
    if (len < hbytes)
        return lkv_fail(diag, LKV_ERR_TRUNCATED, len,
                        "coded: %zu bytes is shorter than its %zu-byte header", len, hbytes);
    const size_t crc_off = hbytes - 8;
    const uint32_t hcrc = ld32(h + crc_off + 4);
    const uint32_t hcrc_calc = lkv_crc32c(0, h, crc_off + 4);
    if (hcrc != hcrc_calc)
        return lkv_fail(diag, LKV_ERR_CHECKSUM, crc_off + 4,
                        "coded: header checksum %08x, computed %08x", hcrc, hcrc_calc);

    if (p2 && h[LKV_FMT_OFF_PROFILE] != LKV_PROFILE_2)
        return lkv_fail(diag, LKV_ERR_CORRUPT, LKV_FMT_OFF_PROFILE,
                        "coded: version %u container names profile=%u (want 2)", version,
                        h[LKV_FMT_OFF_PROFILE]);
    lkv_params p = {(lkv_variant)h[LKV_FMT_OFF_VARIANT], ld16(h + LKV_FMT_OFF_Q),
                    ld16(h + LKV_FMT_OFF_DIM), p2 ? LKV_PROFILE_2 : LKV_PROFILE_1,
                    p2 ? version : 0};
    uint64_t shape[LKV_MAX_NDIM];
    for (uint32_t i = 0; i < ndim; i++)
        shape[i] = ld64(h + LKV_FMT_OFF_SHAPE + 8 * i);
    lkv_diag inner;
    if (lkv_container_plan(&p, (lkv_dtype)h[LKV_FMT_OFF_DTYPE], shape, ndim, info, &inner) !=
        LKV_OK)
        return lkv_fail(diag, LKV_ERR_CORRUPT, 0, "coded: header is inconsistent: %s", inner.msg);
    if (info->n_vectors != ld64(h + LKV_FMT_OFF_NVEC))
        return lkv_fail(diag, LKV_ERR_CORRUPT, LKV_FMT_OFF_NVEC,
                        "coded: vector count %llu does not match the shape",
                        (unsigned long long)ld64(h + LKV_FMT_OFF_NVEC));
    if (p2) {
        /* The plan holds the worst case; the header says what was written. */
        const uint64_t pbytes = ld64(h + crc_off - 8);
        if (pbytes > info->total_bytes - info->header_bytes)
            return lkv_fail(diag, LKV_ERR_CORRUPT, crc_off - 8,
                            "coded: payload of %llu bytes exceeds the bound %zu of %llu vectors",
                            (unsigned long long)pbytes, info->total_bytes - info->header_bytes,
                            (unsigned long long)info->n_vectors);
        info->total_bytes = info->header_bytes + (size_t)pbytes;
    }
    info->payload_crc = ld32(h + crc_off);
    return LKV_OK;
}

lkv_status lkv_container_parse(const void *buf, size_t len, lkv_container_info *info,
                               lkv_diag *diag)
{
    const lkv_status st = lkv_container_parse_header(buf, len, info, diag);
    if (st != LKV_OK)
        return st;
    if (len < info->total_bytes)
        return lkv_fail(diag, LKV_ERR_TRUNCATED, len, "coded: %zu bytes, the header promises %zu",
                        len, info->total_bytes);
    if (len > info->total_bytes)
        return lkv_fail(diag, LKV_ERR_CORRUPT, info->total_bytes,
                        "coded: %zu trailing bytes after the last record", len - info->total_bytes);
    const size_t hbytes = info->header_bytes;
    const uint32_t pcrc = lkv_crc32c(0, (const uint8_t *)buf + hbytes, info->total_bytes - hbytes);
    if (pcrc != info->payload_crc)
        return lkv_fail(diag, LKV_ERR_CHECKSUM, hbytes - 8,
                        "coded: payload checksum %08x, computed %08x", info->payload_crc, pcrc);
    return LKV_OK;
}

lkv_status lkv_decompress(const void *buf, size_t len, int out_dt, void *dst, size_t dst_cap,
                          size_t *dst_len, lkv_container_info *info_out, lkv_isa isa,
                          lkv_diag *diag)
{
    lkv_container_info info;
    lkv_status st = lkv_container_parse(buf, len, &info, diag);
    if (st != LKV_OK)
        return st;
    if (out_dt == 0)
        out_dt = (int)info.dtype;
    st = lkv_dtype_check(out_dt, diag);
    if (st != LKV_OK)
        return st;
    const size_t want =
        (size_t)info.n_vectors * info.params.dim * lkv_dtype_size((lkv_dtype)out_dt);
    if (dst_cap < want)
        return lkv_fail(diag, LKV_ERR_BUFFER_SMALL, UINT64_MAX,
                        "decoded tensor needs %zu bytes, buffer has %zu", want, dst_cap);
    if (lkv_profile_of(&info.params) == LKV_PROFILE_2) {
        st = lkv_p2_decode_isa(&info.params, (const uint8_t *)buf + info.header_bytes,
                               info.total_bytes - info.header_bytes, (size_t)info.n_vectors,
                               (lkv_dtype)out_dt, dst, isa, diag);
        /* The container's length is right (it parsed): a chunk that runs
         * past the payload is corrupt, not a short read. */
        if (st == LKV_ERR_TRUNCATED) {
            if (diag)
                diag->code = LKV_ERR_CORRUPT;
            st = LKV_ERR_CORRUPT;
        }
    } else
        st = lkv_decode(&info.params, (const uint8_t *)buf + info.header_bytes,
                        (size_t)info.n_vectors, (lkv_dtype)out_dt, dst, isa, diag);
    if (st != LKV_OK)
        return st;
    if (dst_len)
        *dst_len = want;
    if (info_out)
        *info_out = info;
    return LKV_OK;
}
