/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stream_p2.c - `latticekv codec encode|decode|roundtrip` for codec profile 2
 * (container versions 2 and 3, codec/FORMAT.md): any input size in bounded
 * memory.
 *
 * Design note. Profile 2's chunks have data-dependent sizes, so stream.c's
 * engine (records at computed offsets, written by many threads in any
 * order) does not fit; this one is sequential and single-threaded. Input is
 * read in batches of a multiple of 256 vectors (whole chunks in either
 * version): a chunk depends only on its own vectors, so the payloads of the
 * batches, concatenated, are the bytes lkv_compress writes for the whole
 * tensor. The header (payload size and
 * CRC, known last) is written at offset 0 of a regular output at the end; a
 * pipe gets the payload spooled to an unlinked temporary file first, as in
 * stream.c. decode reads the header, then chunk by chunk (each chunk's u32
 * length says how much to read), decodes batches, and at the end checks the
 * payload size, the payload CRC and that nothing follows.
 */
#define _GNU_SOURCE
#include "cli.h"
#include "lkv_codec.h"
#include "lkv_format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A batch's input, as fp32 (the largest dtype): 8 MiB. With the coded
 * bound, the decoded copy and the output the peak stays near 36 MiB. */
#define P2_BATCH_BYTES (8u << 20)

typedef struct p2_io {
    int in_fd, out_fd, spool_fd;
    int out_seekable, out_created;
    const char *in_path, *out_path;
} p2_io;

static ssize_t read_upto(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        const ssize_t r = read(fd, (char *)buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static int write_all(int fd, const void *buf, size_t len)
{
    while (len) {
        const ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf = (const char *)buf + w;
        len -= (size_t)w;
    }
    return 0;
}

/* in_fd is the caller's (stream.c opened it); the output is opened here. */
static int open_io(p2_io *io, int in_fd, const char *in, const char *out)
{
    memset(io, 0, sizeof *io);
    io->in_path = in;
    io->out_path = out;
    io->spool_fd = -1;
    io->in_fd = in_fd;
    if (!strcmp(out, "-")) {
        io->out_fd = STDOUT_FILENO;
    } else {
        io->out_fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (io->out_fd < 0)
            return lkv_cli_error(1, "cannot write %s: %s", out, strerror(errno));
        io->out_created = 1;
    }
    struct stat st;
    io->out_seekable =
        fstat(io->out_fd, &st) == 0 && S_ISREG(st.st_mode) && lseek(io->out_fd, 0, SEEK_CUR) == 0;
    return 0;
}

static int close_io(p2_io *io, int failed)
{
    if (io->spool_fd >= 0)
        close(io->spool_fd);
    if (io->out_fd != STDOUT_FILENO && close(io->out_fd) != 0 && !failed)
        failed = lkv_cli_error(1, "cannot write %s: %s", io->out_path, strerror(errno));
    if (failed && io->out_created)
        unlink(io->out_path);
    return failed;
}

static int open_spool(void)
{
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/latticekv-p2-XXXXXX", dir && *dir ? dir : "/tmp");
    const int fd = mkstemp(path);
    if (fd >= 0)
        unlink(path);
    return fd;
}

/* Vectors per batch: a multiple of the chunk size (of either layout: 256
 * is a multiple of 128), bounded in bytes. */
static size_t batch_vectors(uint32_t dim, size_t esz)
{
    size_t v = P2_BATCH_BYTES / ((size_t)dim * 4);
    v -= v % LKV_P2_CHUNK_VECTORS;
    (void)esz;
    return v ? v : LKV_P2_CHUNK_VECTORS;
}

static int encode_p2(const lkv_stream_job *j, lkv_stream_result *res, p2_io *io)
{
    const lkv_params *p = &j->params;
    const size_t esz = lkv_dtype_size(j->in_dtype), vbytes = (size_t)p->dim * esz;
    const size_t bv = batch_vectors(p->dim, esz);
    const int roundtrip = j->mode == LKV_STREAM_ROUNDTRIP;
    const lkv_dtype odt = (lkv_dtype)(j->out_dtype ? j->out_dtype : (int)j->in_dtype);
    const size_t obytes = (size_t)p->dim * lkv_dtype_size(odt);
    const size_t cap = lkv_p2_payload_bound(p, bv);
    const uint32_t ndim = j->shape ? j->ndim : 2;
    const size_t hbytes = LKV_FMT_HEADER_BYTES_P2(ndim);
    unsigned char *in = malloc(bv * vbytes), *coded = malloc(cap);
    unsigned char *out = roundtrip ? malloc(bv * obytes) : NULL;
    float *dec = roundtrip ? malloc(bv * p->dim * 4) : NULL;
    int rc = 0;
    if (!in || !coded || (roundtrip && (!out || !dec))) {
        rc = lkv_cli_error(1, "out of memory for a batch of %zu vectors", bv);
        goto done;
    }
    if (!roundtrip) {
        if (io->out_seekable) {
            if (lseek(io->out_fd, (off_t)hbytes, SEEK_SET) < 0) {
                rc = lkv_cli_error(1, "%s: %s", io->out_path, strerror(errno));
                goto done;
            }
        } else if ((io->spool_fd = open_spool()) < 0) {
            rc = lkv_cli_error(1, "cannot create a spool file: %s", strerror(errno));
            goto done;
        }
    }
    uint64_t n = 0, payload = 0;
    uint32_t crc = 0;
    for (;;) {
        const ssize_t got = read_upto(io->in_fd, in, bv * vbytes);
        if (got < 0) {
            rc = lkv_cli_error(1, "%s: %s", io->in_path, strerror(errno));
            goto done;
        }
        if (got == 0)
            break;
        if ((size_t)got % vbytes) {
            rc = lkv_cli_error(1,
                               "%s: %s: input ends inside a vector (%llu bytes after %llu "
                               "whole vectors of %zu bytes)",
                               io->in_path, lkv_status_name(LKV_ERR_SHAPE),
                               (unsigned long long)((size_t)got % vbytes),
                               (unsigned long long)n + (size_t)got / vbytes, vbytes);
            goto done;
        }
        const size_t cnt = (size_t)got / vbytes;
        size_t len = 0;
        lkv_diag d;
        lkv_status st = lkv_p2_encode(p, j->in_dtype, in, cnt, coded, cap, &len, &d);
        if (st != LKV_OK) {
            if (d.index != UINT64_MAX)
                d.index += n;
            rc = lkv_cli_error(1, "%s: %s: %s (vector %llu of the input)", io->in_path,
                               lkv_status_name(st), d.msg, (unsigned long long)d.index);
            goto done;
        }
        crc = lkv_crc32c(crc, coded, len);
        payload += len;
        if (roundtrip) {
            st = lkv_p2_decode(p, coded, len, cnt, odt, out, &d);
            if (st == LKV_OK)
                st = lkv_p2_decode(p, coded, len, cnt, LKV_DTYPE_FP32, dec, &d);
            if (st != LKV_OK) {
                rc = lkv_cli_error(1, "%s: %s", lkv_status_name(st), d.msg);
                goto done;
            }
            for (size_t i = 0; i < cnt * p->dim; i++) {
                float x;
                if (j->in_dtype == LKV_DTYPE_FP32)
                    memcpy(&x, in + 4 * i, 4);
                else {
                    uint16_t h;
                    memcpy(&h, in + 2 * i, 2);
                    x = j->in_dtype == LKV_DTYPE_BF16 ? lkv_bf16_to_f32(h) : lkv_f16_to_f32(h);
                }
                const double e = (double)x - (double)dec[i];
                res->sq_err += e * e;
                res->sq_ref += (double)x * (double)x;
            }
            if (write_all(io->out_fd, out, cnt * obytes)) {
                rc = lkv_cli_error(1, "%s: %s", io->out_path, strerror(errno));
                goto done;
            }
            res->out_bytes += cnt * obytes;
        } else if (write_all(io->spool_fd >= 0 ? io->spool_fd : io->out_fd, coded, len)) {
            rc = lkv_cli_error(1, "%s: %s", io->out_path, strerror(errno));
            goto done;
        }
        n += cnt;
        res->in_bytes += (uint64_t)got;
        if ((size_t)got < bv * vbytes)
            break;
    }
    /* The header: the shape given (its vectors must be the input's) or [n, dim]. */
    uint64_t shape[LKV_MAX_NDIM] = {n, p->dim};
    if (j->shape)
        memcpy(shape, j->shape, ndim * sizeof *shape);
    lkv_container_info info;
    lkv_diag d;
    const lkv_status st = lkv_container_plan(p, j->in_dtype, shape, ndim, &info, &d);
    if (st != LKV_OK) {
        rc = lkv_cli_error(1, "%s: %s", lkv_status_name(st), d.msg);
        goto done;
    }
    if (info.n_vectors != n) {
        rc =
            lkv_cli_error(1, "%s: tensor.data has %llu bytes, shape and dtype %s need %llu",
                          lkv_status_name(LKV_ERR_SHAPE), (unsigned long long)n * vbytes,
                          lkv_dtype_name(j->in_dtype), (unsigned long long)info.n_vectors * vbytes);
        goto done;
    }
    info.payload_crc = crc;
    info.total_bytes = info.header_bytes + (size_t)payload;
    res->n_vectors = n;
    res->coded_bytes = info.total_bytes;
    res->info = info;
    if (roundtrip)
        goto done;
    unsigned char h[LKV_FMT_HEADER_BYTES_P2(LKV_MAX_NDIM)];
    if (lkv_container_write_header(&info, h, sizeof h, &d) != LKV_OK) {
        rc = lkv_cli_error(1, "%s", d.msg);
        goto done;
    }
    if (io->out_seekable) {
        if (pwrite(io->out_fd, h, info.header_bytes, 0) != (ssize_t)info.header_bytes) {
            rc = lkv_cli_error(1, "%s: %s", io->out_path, strerror(errno));
            goto done;
        }
    } else {
        if (write_all(io->out_fd, h, info.header_bytes) || lseek(io->spool_fd, 0, SEEK_SET) < 0) {
            rc = lkv_cli_error(1, "%s: %s", io->out_path, strerror(errno));
            goto done;
        }
        for (;;) {
            const ssize_t r = read_upto(io->spool_fd, coded, cap);
            if (r <= 0 || write_all(io->out_fd, coded, (size_t)r)) {
                if (r < 0 || r > 0)
                    rc = lkv_cli_error(1, "%s: %s", io->out_path, strerror(errno));
                break;
            }
        }
    }
done:
    free(in);
    free(coded);
    free(out);
    free(dec);
    return rc;
}

static int decode_p2(const lkv_stream_job *j, lkv_stream_result *res, p2_io *io,
                     const lkv_container_info *hdr)
{
    const lkv_container_info info = *hdr;
    lkv_diag d;
    lkv_status st;
    const lkv_params *p = &info.params;
    const lkv_dtype odt = (lkv_dtype)(j->out_dtype ? j->out_dtype : (int)info.dtype);
    const size_t obytes = (size_t)p->dim * lkv_dtype_size(odt);
    const size_t bv = batch_vectors(p->dim, 4);
    const size_t chunk = lkv_p2_chunk_vectors(p); /* 128 in a version 2 file */
    const size_t cap = lkv_p2_payload_bound(p, bv);
    unsigned char *coded = malloc(cap), *out = malloc(bv * obytes);
    int rc = 0;
    if (!coded || !out) {
        rc = lkv_cli_error(1, "out of memory for a batch of %zu vectors", bv);
        goto done;
    }
    const uint64_t want = info.total_bytes - info.header_bytes;
    uint64_t done_v = 0, payload = 0;
    uint32_t crc = 0;
    while (done_v < info.n_vectors) {
        /* Gather whole chunks for up to bv vectors. */
        size_t len = 0, cnt = 0;
        while (cnt < bv && done_v + cnt < info.n_vectors) {
            const uint64_t left = info.n_vectors - done_v - cnt;
            const size_t in_chunk = left < chunk ? (size_t)left : chunk;
            if (read_upto(io->in_fd, coded + len, 4) != 4) {
                rc = lkv_cli_error(1,
                                   "%s: %s: coded: the input ends at byte %llu, the header "
                                   "promises %zu",
                                   io->in_path, lkv_status_name(LKV_ERR_TRUNCATED),
                                   (unsigned long long)info.header_bytes + payload + len,
                                   info.total_bytes);
                goto done;
            }
            const size_t body = (size_t)coded[len] | (size_t)coded[len + 1] << 8 |
                                (size_t)coded[len + 2] << 16 | (size_t)coded[len + 3] << 24;
            size_t whole = 0;
            /* The bound check needs only the prefix: pass a length that
             * claims the whole body is there. */
            st = lkv_p2_chunk_size(p, coded + len, cap - len, in_chunk, &whole, &d);
            if (st == LKV_OK && payload + len + 4 + body > want)
                st = LKV_ERR_CORRUPT;
            if (st != LKV_OK) {
                rc = lkv_cli_error(1, "%s: %s: coded: chunk at byte %llu: length %zu is corrupt",
                                   io->in_path, lkv_status_name(LKV_ERR_CORRUPT),
                                   (unsigned long long)info.header_bytes + payload + len, body);
                goto done;
            }
            if (read_upto(io->in_fd, coded + len + 4, body) != (ssize_t)body) {
                rc = lkv_cli_error(1,
                                   "%s: %s: coded: the input ends inside the chunk at byte "
                                   "%llu",
                                   io->in_path, lkv_status_name(LKV_ERR_TRUNCATED),
                                   (unsigned long long)info.header_bytes + payload + len);
                goto done;
            }
            len += 4 + body;
            cnt += in_chunk;
        }
        crc = lkv_crc32c(crc, coded, len);
        st = lkv_p2_decode(p, coded, len, cnt, odt, out, &d);
        if (st != LKV_OK) {
            rc = lkv_cli_error(1, "%s: %s: %s", io->in_path, lkv_status_name(st), d.msg);
            goto done;
        }
        if (write_all(io->out_fd, out, cnt * obytes)) {
            rc = lkv_cli_error(1, "%s: %s", io->out_path, strerror(errno));
            goto done;
        }
        payload += len;
        done_v += cnt;
        res->out_bytes += cnt * obytes;
    }
    unsigned char extra;
    if (payload != want || read_upto(io->in_fd, &extra, 1) != 0) {
        rc = lkv_cli_error(1,
                           "%s: %s: coded: bytes follow the last chunk (payload %llu, the "
                           "header says %llu)",
                           io->in_path, lkv_status_name(LKV_ERR_CORRUPT),
                           (unsigned long long)payload, (unsigned long long)want);
        goto done;
    }
    if (crc != info.payload_crc) {
        rc = lkv_cli_error(1, "%s: %s: coded: payload checksum %08x, computed %08x", io->in_path,
                           lkv_status_name(LKV_ERR_CHECKSUM), info.payload_crc, crc);
        goto done;
    }
    res->n_vectors = info.n_vectors;
    res->coded_bytes = info.total_bytes;
    res->info = info;
done:
    free(coded);
    free(out);
    return rc;
}

int lkv_cli_stream_p2(const lkv_stream_job *j, lkv_stream_result *res, int in_fd,
                      const lkv_container_info *info)
{
    memset(res, 0, sizeof *res);
    res->threads = 1;
    p2_io io;
    if (open_io(&io, in_fd, j->in, j->out))
        return 1;
    const int rc =
        j->mode == LKV_STREAM_DECODE ? decode_p2(j, res, &io, info) : encode_p2(j, res, &io);
    return close_io(&io, rc != 0);
}
