/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ssd.c - the SSD directory tier: one checksummed file per block.
 *
 * Design note. The index lives in memory on the loop thread: a hash table of
 * slots, one per file name, and an LRU list of the slots that hold a block.
 * A file's name is a 128-bit hash of (namespace, key) in hex, so any bytes
 * are safe as a key; the file carries the namespace and key themselves, and
 * every read checks them, so a hash collision can only ever replace a block,
 * never serve the wrong one. Every read also checks the checksum.
 *
 * All file I/O runs in libuv's threadpool (uv_queue_work); its completion
 * callback runs on the loop thread, which alone touches the index. The
 * operations that change a file (write, delete, eviction's unlink) queue on
 * their slot and run one at a time, in submission order, so two puts of one
 * key can never rename out of order; reads do not queue: a rename or unlink
 * is atomic, and a reader that opened the old file keeps reading it whole.
 *
 * A write goes to DIR/.tmp-<seq>, then is renamed over DIR/<name>.lkv. With
 * fsync=batch, writes run in parallel up to the temporary file; one flush job
 * then fdatasyncs the temporaries that finished meanwhile, renames them,
 * fsyncs the directory once and acknowledges them all (group commit: a batch
 * is whatever finished writing while the previous flush ran).
 *
 * Accounting: a put reserves its file's size when it is submitted (so puts
 * in flight cannot overcommit the capacity) and evicts at that moment;
 * used_bytes includes those reservations.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include "lkv_lru.h"
#include "lkv_tier.h"

/* The daemon's "permission denied" (lkv_server.h lists the statuses the
 * codec never returns), typed as the lkv_status this tier's calls return. */
#define SSD_ERR_PERMISSION ((lkv_status)LKV_ERR_PERMISSION)

/* ------------------------------------------------------------------------ */
/* On-disk format (README.md)                                                */
/* ------------------------------------------------------------------------ */

#define HDR_BYTES   40u
#define HDR_CRC_OFF 36u
#define FMT_VERSION 1u
static const uint8_t k_magic[4] = {'L', 'K', 'V', 'S'};

#define NAME_HEX   32u             /* two 64-bit hashes */
#define NAME_LEN   (NAME_HEX + 4u) /* + ".lkv" */
#define TMP_PREFIX ".tmp-"
#define LOCK_NAME  ".lock"

/* The header's integers are little-endian, n (2, 4 or 8) bytes each. */
static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Two independent 64-bit hashes of (ns_len, ns, key): a is lkv_lru_hash
 * (FNV-1a), b a multiply-xorshift, each finished by a full-avalanche mix.
 * The namespace length goes in first so ("ab","c") and ("a","bc") differ. */
typedef struct name_hash {
    uint64_t a, b;
} name_hash;

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static void hash_feed(uint64_t *b, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        *b = (*b + p[i] + 1) * 0x9e3779b97f4a7c15ull;
        *b ^= *b >> 29;
    }
}

static name_hash hash_name(const char *ns, size_t ns_len, const uint8_t *key, size_t key_len)
{
    name_hash h = {lkv_lru_hash(ns, ns_len, key, key_len), 0x6a09e667f3bcc909ull};
    uint8_t len[4];
    put_le(len, (uint32_t)ns_len, 4);
    hash_feed(&h.b, len, 4);
    hash_feed(&h.b, (const uint8_t *)ns, ns_len);
    hash_feed(&h.b, key, key_len);
    h.b = mix64(h.b ^ key_len);
    return h;
}

static void format_name(char *out, name_hash h)
{
    snprintf(out, NAME_LEN + 1, "%016" PRIx64 "%016" PRIx64 ".lkv", h.a, h.b);
}

/* Parses "<32 lowercase hex>.lkv"; 0 on success. */
static int parse_name(const char *s, name_hash *h)
{
    if (strlen(s) != NAME_LEN || strcmp(s + NAME_HEX, ".lkv") != 0 ||
        strspn(s, "0123456789abcdef") != NAME_HEX)
        return -1;
    char half[17] = {0}; /* 16 hex digits: no sign, no "0x", no blanks */
    memcpy(half, s, 16);
    h->a = strtoull(half, NULL, 16);
    memcpy(half, s + 16, 16);
    h->b = strtoull(half, NULL, 16);
    return 0;
}

/* Fills the 40-byte header; the checksum covers header[0,36) + ns + key + data. */
static void build_header(uint8_t *hdr, uint32_t ns_len, uint32_t key_len, uint64_t data_len,
                         uint64_t seq, const char *ns, const uint8_t *key, const uint8_t *data)
{
    memcpy(hdr, k_magic, 4);
    put_le(hdr + 4, FMT_VERSION, 2);
    put_le(hdr + 6, HDR_BYTES, 2);
    put_le(hdr + 8, ns_len, 4);
    put_le(hdr + 12, key_len, 4);
    put_le(hdr + 16, data_len, 8);
    put_le(hdr + 24, seq, 8);
    put_le(hdr + 32, 0, 4);
    uint32_t crc = lkv_crc32c(0, hdr, HDR_CRC_OFF);
    crc = lkv_crc32c(crc, ns, ns_len);
    crc = lkv_crc32c(crc, key, key_len);
    crc = lkv_crc32c(crc, data, data_len);
    put_le(hdr + HDR_CRC_OFF, crc, 4);
}

/* A parsed header. */
typedef struct hdr_info {
    uint32_t ns_len, key_len;
    uint64_t data_len, seq, file_len;
    uint32_t crc;
} hdr_info;

/*
 * Checks a header against the file's size: ERR_TRUNCATED when the file is
 * shorter than the header says (a torn write), ERR_MAGIC / ERR_VERSION /
 * ERR_CORRUPT otherwise.
 */
static lkv_status parse_header(const uint8_t *p, uint64_t size, const char *file, hdr_info *h,
                               lkv_diag *d)
{
    if (size < HDR_BYTES)
        return lkv_diag_fail(d, LKV_ERR_TRUNCATED,
                             "ssd tier: file %s: %" PRIu64 " bytes, header needs %u", file, size,
                             HDR_BYTES);
    if (memcmp(p, k_magic, 4) != 0)
        return lkv_diag_fail(d, LKV_ERR_MAGIC, "ssd tier: file %s: bad magic", file);
    const unsigned version = (unsigned)get_le(p + 4, 2), hdr_bytes = (unsigned)get_le(p + 6, 2);
    if (version != FMT_VERSION || hdr_bytes != HDR_BYTES)
        return lkv_diag_fail(d, LKV_ERR_VERSION,
                             "ssd tier: file %s: version %u header %u, expected %u %u", file,
                             version, hdr_bytes, FMT_VERSION, HDR_BYTES);
    h->ns_len = (uint32_t)get_le(p + 8, 4);
    h->key_len = (uint32_t)get_le(p + 12, 4);
    h->data_len = get_le(p + 16, 8);
    h->seq = get_le(p + 24, 8);
    h->crc = (uint32_t)get_le(p + HDR_CRC_OFF, 4);
    if (h->ns_len > LKV_SSD_MAX_NS_LEN || h->key_len > LKV_SSD_MAX_KEY_LEN || h->key_len == 0 ||
        h->data_len > (UINT64_MAX >> 2))
        return lkv_diag_fail(d, LKV_ERR_CORRUPT,
                             "ssd tier: file %s: ns_len=%u key_len=%u data_len=%" PRIu64
                             " out of range",
                             file, h->ns_len, h->key_len, h->data_len);
    h->file_len = HDR_BYTES + (uint64_t)h->ns_len + h->key_len + h->data_len;
    if (size < h->file_len)
        return lkv_diag_fail(d, LKV_ERR_TRUNCATED,
                             "ssd tier: file %s: %" PRIu64 " bytes, header says %" PRIu64, file,
                             size, h->file_len);
    if (size > h->file_len)
        return lkv_diag_fail(d, LKV_ERR_CORRUPT,
                             "ssd tier: file %s: %" PRIu64 " bytes, header says %" PRIu64, file,
                             size, h->file_len);
    return LKV_OK;
}

/* Verifies the checksum of a whole file held in buf. */
static lkv_status check_crc(const uint8_t *buf, const hdr_info *h, const char *file, lkv_diag *d)
{
    uint32_t crc = lkv_crc32c(0, buf, HDR_CRC_OFF);
    crc = lkv_crc32c(crc, buf + HDR_BYTES, h->file_len - HDR_BYTES);
    if (crc != h->crc)
        return lkv_diag_fail(d, LKV_ERR_CHECKSUM, "ssd tier: file %s: checksum %08x, computed %08x",
                             file, h->crc, crc);
    return LKV_OK;
}

/* Reads exactly n bytes at off; returns 0, an errno, or -1 on a short file. */
static int read_at(int fd, void *buf, size_t n, uint64_t off)
{
    uint8_t *p = buf;
    while (n) {
        const ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (r == 0)
            return -1;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Writes every byte of iov[0..n) (modifies iov); returns 0 or an errno. */
static int write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        const ssize_t w = writev(fd, iov, n > IOV_MAX ? IOV_MAX : n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        size_t left = (size_t)w;
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* State                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct ssd ssd;
typedef struct slot slot;

typedef enum io_kind {
    IO_WRITE = 0,  /* put: temporary file (+ sync + rename unless batched) */
    IO_FLUSH = 1,  /* batch: sync + rename a group of written temporaries */
    IO_READ = 2,   /* get */
    IO_DELETE = 3, /* delete: unlink (+ directory fsync) */
    IO_UNLINK = 4  /* eviction or dropping a damaged file: unlink */
} io_kind;

typedef struct io {
    uv_work_t work;
    ssd *s;
    io_kind kind;
    struct io *next;  /* slot queue */
    struct io *fnext; /* flush list (a write is on both at once) */
    slot *sl;         /* mutating kinds: the slot (kept alive while queued) */
    lkv_tier_req *req;
    lkv_blob *blob; /* write: the tier's reference */
    name_hash h;
    uint64_t seq;
    uint64_t charge;
    uint8_t *name; /* write: ns + key for the slot, allocated at submit */
    int fd;
    int renamed;      /* write: the final name now holds this block */
    int dropped_old;  /* write: failed after the rename, so the old block is gone too */
    int noop;         /* delete: the key is not there; nothing to unlink */
    int err;          /* errno of the failed step (0: none) */
    unsigned syncs;   /* fdatasync/fsync calls made by this job */
    const char *step; /* which step failed */
    lkv_status st;    /* read: outcome */
    lkv_diag diag;
    uint8_t *buf; /* read: the whole file */
    hdr_info hi;
    struct io *batch; /* flush: the writes it syncs */
    char final[NAME_LEN + 1];
    char tmp[32];
} io;

struct slot {
    lkv_lru_node node; /* first: hash h.a; listed (LRU) only while present */
    name_hash h;
    int present;
    int running; /* q_head is in the threadpool */
    uint64_t charge;
    uint64_t seq;
    uint32_t ns_len, key_len;
    uint8_t *name; /* ns + key of the present block */
    io *q_head, *q_tail;
};

struct ssd {
    lkv_tier base;
    uv_loop_t *loop;
    lkv_ssd_config cfg;
    char *dir;
    int dirfd;
    int lockfd;
    uint64_t high, low;
    lkv_lru ix;
    int depth; /* > 0 while a tier function or callback is on the stack */
    uint64_t next_seq;
    uint64_t ios;                /* io structs alive (close waits for 0) */
    io *flush_head, *flush_tail; /* written, waiting for a flush */
    int flushing;
    int closing;
    lkv_tier_closed_fn closed;
    void *closed_ud;
    lkv_tier_evict_fn evict_fn;
    void *evict_ud;
    lkv_tier_stats st;
};

static const char *k_fsync_names[] = {"never", "batch", "always"};

const char *lkv_ssd_fsync_name(lkv_ssd_fsync f)
{
    return (unsigned)f < 3 ? k_fsync_names[f] : NULL;
}

int lkv_ssd_fsync_parse(const char *s, lkv_ssd_fsync *out)
{
    for (unsigned i = 0; i < 3; i++) {
        if (s && strcmp(s, k_fsync_names[i]) == 0) {
            *out = (lkv_ssd_fsync)i;
            return 0;
        }
    }
    return -1;
}

void lkv_ssd_config_defaults(lkv_ssd_config *cfg)
{
    *cfg = (lkv_ssd_config){
        .high_pct = 100, .low_pct = 90, .fsync = LKV_SSD_FSYNC_NEVER, .verify_at_start = 1};
}

static int fault(const ssd *s, lkv_ssd_fault_point p)
{
    return s->cfg.fault ? s->cfg.fault(s->cfg.fault_ud, p) : 0;
}

/* ------------------------------------------------------------------------ */
/* Index                                                                     */
/* ------------------------------------------------------------------------ */

static int same_hash(const lkv_lru_node *n, const void *ctx)
{
    return ((const slot *)n)->h.b == ((const name_hash *)ctx)->b;
}

static slot *find_slot(const ssd *s, name_hash h)
{
    return (slot *)*lkv_lru_find(&s->ix, h.a, same_hash, &h);
}

static slot *get_or_add_slot(ssd *s, name_hash h)
{
    slot *e = find_slot(s, h);
    if (e)
        return e;
    e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->h = h;
    e->node.hash = h.a;
    lkv_lru_insert(&s->ix, &e->node);
    return e;
}

/* Takes the block out of the index (its file is the caller's business). */
static void make_absent(ssd *s, slot *e)
{
    if (!e->present)
        return;
    lkv_lru_unlist(&s->ix, &e->node);
    e->present = 0;
    s->st.used_bytes -= e->charge;
    s->st.blocks--;
}

/* Frees a slot that holds nothing and has nothing queued. */
static void maybe_free_slot(ssd *s, slot *e)
{
    if (e->present || e->running || e->q_head)
        return;
    lkv_lru_remove(&s->ix, &e->node);
    free(e->name);
    free(e);
}

static int same_key(const slot *e, const char *ns, size_t ns_len, const uint8_t *key,
                    size_t key_len)
{
    return e->ns_len == ns_len && e->key_len == key_len &&
           (ns_len == 0 || memcmp(e->name, ns, ns_len) == 0) &&
           memcmp(e->name + ns_len, key, key_len) == 0;
}

/* ------------------------------------------------------------------------ */
/* Threadpool side                                                           */
/* ------------------------------------------------------------------------ */

static void io_fail(io *o, int err, const char *step)
{
    if (!o->err) {
        o->err = err;
        o->step = step;
    }
}

/* Writes the temporary file; leaves o->fd open on success. */
static void write_tmp(io *o)
{
    ssd *s = o->s;
    lkv_tier_req *r = o->req;
    uint8_t hdr[HDR_BYTES];
    build_header(hdr, (uint32_t)r->ns_len, (uint32_t)r->key_len, o->blob->len, o->seq, r->ns,
                 r->key, o->blob->data);
    o->fd = openat(s->dirfd, o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (o->fd < 0) {
        io_fail(o, errno, "create");
        return;
    }
    struct iovec head[3] = {
        {hdr, HDR_BYTES}, {(void *)r->ns, r->ns_len}, {(void *)r->key, r->key_len}};
    int err = write_all(o->fd, head, 3);
    if (!err)
        err = fault(s, LKV_SSD_FAULT_WRITE);
    if (!err && o->blob->len) {
        struct iovec body = {o->blob->data, o->blob->len};
        err = write_all(o->fd, &body, 1);
    }
    if (err) {
        io_fail(o, err, "write");
        close(o->fd);
        o->fd = -1;
        unlinkat(s->dirfd, o->tmp, 0);
    }
}

/* fdatasync + rename of a written temporary; closes its fd. */
static void sync_and_rename(io *o, int do_sync)
{
    ssd *s = o->s;
    int err = 0;
    if (do_sync) {
        err = fault(s, LKV_SSD_FAULT_SYNC);
        if (!err) {
            o->syncs++;
            if (fdatasync(o->fd) != 0)
                err = errno;
        }
        if (err)
            io_fail(o, err, "fdatasync");
    }
    close(o->fd);
    o->fd = -1;
    if (!err) {
        err = fault(s, LKV_SSD_FAULT_RENAME);
        if (!err && renameat(s->dirfd, o->tmp, s->dirfd, o->final) != 0)
            err = errno;
        if (err)
            io_fail(o, err, "rename");
        else
            o->renamed = 1;
    }
    if (err)
        unlinkat(s->dirfd, o->tmp, 0);
}

/* After a failed directory fsync the renamed files' durability is unknown;
 * they are removed so that a failed put never leaves its block behind. */
static void dir_sync_failed(io *o, int err)
{
    io_fail(o, err, "fsync of the directory");
    if (o->renamed) {
        unlinkat(o->s->dirfd, o->final, 0);
        o->renamed = 0;
        o->dropped_old = 1;
    }
}

static void read_block(io *o)
{
    ssd *s = o->s;
    const lkv_tier_req *r = o->req;
    o->st = LKV_OK;
    int fd = openat(s->dirfd, o->final, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        o->err = errno; /* ENOENT: raced with a delete, a miss */
        return;
    }
    struct stat sb;
    int err = fault(s, LKV_SSD_FAULT_READ);
    if (!err && fstat(fd, &sb) != 0)
        err = errno;
    uint8_t hdr[HDR_BYTES] = {0};
    if (!err && (uint64_t)sb.st_size >= HDR_BYTES) {
        const int rr = read_at(fd, hdr, HDR_BYTES, 0);
        if (rr > 0)
            err = rr;
    }
    if (err) {
        close(fd);
        io_fail(o, err, "read");
        return;
    }
    o->st = parse_header(hdr, (uint64_t)sb.st_size, o->final, &o->hi, &o->diag);
    if (o->st == LKV_OK) {
        o->buf = malloc(o->hi.file_len);
        if (!o->buf) {
            o->st = lkv_diag_fail(&o->diag, LKV_ERR_NOMEM,
                                  "ssd tier: no memory for %" PRIu64 " bytes", o->hi.file_len);
        } else {
            const int rr = read_at(fd, o->buf, o->hi.file_len, 0);
            if (rr < 0)
                o->st = lkv_diag_fail(&o->diag, LKV_ERR_TRUNCATED,
                                      "ssd tier: file %s: shorter than %" PRIu64, o->final,
                                      o->hi.file_len);
            else if (rr > 0)
                io_fail(o, rr, "read");
            else
                o->st = check_crc(o->buf, &o->hi, o->final, &o->diag);
        }
    }
    close(fd);
    /* A valid file for another key (a hash collision, or raced with a put of
     * a colliding key) is a miss, not damage. */
    if (o->st == LKV_OK && !o->err &&
        (o->hi.ns_len != r->ns_len || o->hi.key_len != r->key_len ||
         memcmp(o->buf + HDR_BYTES, r->ns, r->ns_len) != 0 ||
         memcmp(o->buf + HDR_BYTES + r->ns_len, r->key, r->key_len) != 0))
        o->err = ENOENT;
}

static void work_cb(uv_work_t *w)
{
    io *o = w->data;
    ssd *s = o->s;
    switch (o->kind) {
    case IO_WRITE:
        write_tmp(o);
        if (!o->err && s->cfg.fsync != LKV_SSD_FSYNC_BATCH) {
            sync_and_rename(o, s->cfg.fsync == LKV_SSD_FSYNC_ALWAYS);
            if (!o->err && s->cfg.fsync == LKV_SSD_FSYNC_ALWAYS) {
                o->syncs++;
                if (fsync(s->dirfd) != 0)
                    dir_sync_failed(o, errno);
            }
        }
        break;
    case IO_FLUSH: {
        int any = 0;
        for (io *b = o->batch; b; b = b->fnext) {
            sync_and_rename(b, 1);
            o->syncs += b->syncs;
            b->syncs = 0;
            any |= b->renamed;
        }
        if (any && (o->syncs++, fsync(s->dirfd) != 0)) {
            const int e = errno;
            for (io *b = o->batch; b; b = b->fnext)
                dir_sync_failed(b, e);
        }
        break;
    }
    case IO_READ: read_block(o); break;
    case IO_DELETE:
    case IO_UNLINK:
        if (o->noop)
            break;
        if (unlinkat(s->dirfd, o->final, 0) != 0 && errno != ENOENT)
            io_fail(o, errno, "unlink");
        else if (o->kind == IO_DELETE && s->cfg.fsync != LKV_SSD_FSYNC_NEVER &&
                 (o->syncs++, fsync(s->dirfd) != 0))
            io_fail(o, errno, "fsync of the directory");
        break;
    }
}

/* ------------------------------------------------------------------------ */
/* Loop side                                                                 */
/* ------------------------------------------------------------------------ */

static void after_cb(uv_work_t *w, int status);
static void free_ssd(ssd *s);

static io *io_new(ssd *s, io_kind kind, lkv_tier_req *req, name_hash h)
{
    io *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    *o = (io){.s = s, .kind = kind, .req = req, .h = h, .fd = -1, .work.data = o};
    format_name(o->final, h);
    s->ios++;
    if (req)
        s->st.inflight++;
    return o;
}

/* Frees o; a request's io stops counting as in flight (io_new). */
static void io_free(io *o)
{
    ssd *s = o->s;
    if (o->req)
        s->st.inflight--;
    lkv_blob_unref(o->blob);
    free(o->name);
    free(o->buf);
    free(o);
    s->ios--;
}

static lkv_status errno_status(int err)
{
    switch (err) {
    case ENOSPC:
    case EDQUOT: return LKV_ERR_LIMIT;
    case ENOMEM: return LKV_ERR_NOMEM;
    case EACCES:
    case EPERM:
    case EROFS: return SSD_ERR_PERMISSION;
    default: return LKV_ERR_INTERNAL;
    }
}

/* Starts the slot's next mutating operation if none is running. */
static void slot_kick(ssd *s, slot *e)
{
    if (e->running || !e->q_head)
        return;
    io *o = e->q_head;
    e->running = 1;
    if (o->kind == IO_DELETE) {
        /* Whether the delete finds the key is decided now, in queue order. */
        o->req->found =
            e->present && same_key(e, o->req->ns, o->req->ns_len, o->req->key, o->req->key_len);
        if (o->req->found)
            make_absent(s, e);
        else
            o->noop = 1; /* absent, or the name holds a colliding key's block */
    }
    uv_queue_work(s->loop, &o->work, work_cb, after_cb);
}

static void slot_enqueue(ssd *s, slot *e, io *o)
{
    o->sl = e;
    o->next = NULL;
    if (e->q_tail)
        e->q_tail->next = o;
    else
        e->q_head = o;
    e->q_tail = o;
    slot_kick(s, e);
}

/* The running operation of e is over: start the next one. */
static void slot_done(ssd *s, slot *e)
{
    io *o = e->q_head;
    e->q_head = o->next;
    if (!e->q_head)
        e->q_tail = NULL;
    e->running = 0;
    slot_kick(s, e);
    maybe_free_slot(s, e);
}

static void evict(ssd *s, slot *e)
{
    make_absent(s, e);
    s->st.evictions++;
    if (s->evict_fn)
        s->evict_fn(&s->base, (const char *)e->name, e->ns_len, e->name + e->ns_len, e->key_len,
                    NULL, s->evict_ud);
    io *o = io_new(s, IO_UNLINK, NULL, e->h);
    if (o) {
        slot_enqueue(s, e, o);
    } else {
        s->st.errors++; /* the file stays until the next start, which reloads it */
        maybe_free_slot(s, e);
    }
}

/* Evicts least recently used blocks (never `keep`, never one with an
 * operation queued) per the watermarks, for `need` more bytes. */
static void make_room(ssd *s, uint64_t need, const slot *keep)
{
    if (s->st.used_bytes + need <= s->high)
        return;
    slot *e = (slot *)s->ix.oldest;
    while (e && s->st.used_bytes + need > s->low) {
        slot *next = (slot *)e->node.newer;
        if (e != keep && !e->running && !e->q_head)
            evict(s, e);
        e = next;
    }
}

static void after_write_ok(ssd *s, io *o)
{
    slot *e = o->sl;
    lkv_tier_req *r = o->req;
    s->st.used_bytes -= o->charge; /* the reservation becomes the charge below */
    if (e->present) {
        if (!same_key(e, r->ns, r->ns_len, r->key, r->key_len)) {
            /* A name collision: the other key's block was just replaced. */
            s->st.evictions++;
            if (s->evict_fn)
                s->evict_fn(&s->base, (const char *)e->name, e->ns_len, e->name + e->ns_len,
                            e->key_len, NULL, s->evict_ud);
        }
        make_absent(s, e);
    }
    free(e->name);
    e->name = o->name;
    o->name = NULL;
    e->ns_len = (uint32_t)r->ns_len;
    e->key_len = (uint32_t)r->key_len;
    e->charge = o->charge;
    e->seq = o->seq;
    e->present = 1;
    lkv_lru_touch(&s->ix, &e->node);
    s->st.used_bytes += e->charge;
    s->st.blocks++;
    s->st.puts++;
    r->status = LKV_OK;
}

/* Ends a write (after its own job, or after the flush that carried it). */
static void end_write(ssd *s, io *o)
{
    lkv_tier_req *r = o->req;
    if (o->err) {
        s->st.used_bytes -= o->charge;
        s->st.errors++;
        if (o->dropped_old)
            make_absent(s, o->sl);
        r->status =
            lkv_diag_fail(&r->diag, errno_status(o->err), "ssd tier: %s of %s/%s failed: %s",
                          o->step, s->dir, o->renamed ? o->final : o->tmp, strerror(o->err));
    } else {
        after_write_ok(s, o);
    }
    slot_done(s, o->sl);
    io_free(o);
    r->done(r);
}

static void start_flush(ssd *s)
{
    if (s->flushing || !s->flush_head)
        return;
    io *f = io_new(s, IO_FLUSH, NULL, (name_hash){0, 0});
    if (!f) {
        /* No memory for the flush job: fail the waiting writes. */
        io *b = s->flush_head;
        s->flush_head = s->flush_tail = NULL;
        while (b) {
            io *next = b->fnext;
            close(b->fd);
            unlinkat(s->dirfd, b->tmp, 0);
            b->fd = -1;
            io_fail(b, ENOMEM, "flush");
            end_write(s, b);
            b = next;
        }
        return;
    }
    f->batch = s->flush_head;
    s->flush_head = s->flush_tail = NULL;
    s->flushing = 1;
    uv_queue_work(s->loop, &f->work, work_cb, after_cb);
}

static void after_read(ssd *s, io *o)
{
    lkv_tier_req *r = o->req;
    slot *e = find_slot(s, o->h);
    r->status = LKV_OK;
    r->found = 0;
    if (o->st != LKV_OK || (o->err && o->err != ENOENT)) {
        /* Damaged or unreadable: never served; a damaged file is dropped. */
        s->st.errors++;
        if (o->st != LKV_OK) {
            r->status = o->st;
            r->diag = o->diag;
            if (e && e->present && e->seq == o->seq && !e->running && !e->q_head) {
                make_absent(s, e);
                io *u = io_new(s, IO_UNLINK, NULL, e->h);
                if (u)
                    slot_enqueue(s, e, u);
            }
        } else {
            r->status =
                lkv_diag_fail(&r->diag, errno_status(o->err), "ssd tier: %s of %s/%s failed: %s",
                              o->step, s->dir, o->final, strerror(o->err));
        }
    } else if (o->err == ENOENT) {
        s->st.misses++;
        /* The index still holds the version this read was sent for, and
         * nothing is changing the file: it was removed behind the daemon's
         * back. (A version written since is left alone.) */
        if (e && e->present && e->seq == o->seq && !e->running && !e->q_head) {
            s->st.errors++;
            make_absent(s, e);
            maybe_free_slot(s, e);
        }
    } else {
        const size_t off = HDR_BYTES + o->hi.ns_len + o->hi.key_len;
        lkv_blob *b = lkv_blob_adopt(o->buf, o->buf + off, o->hi.data_len);
        if (!b) {
            r->status = lkv_diag_fail(&r->diag, LKV_ERR_NOMEM, "ssd tier: no memory for a blob");
        } else {
            o->buf = NULL;
            r->blob = b;
            r->found = 1;
            s->st.hits++;
        }
    }
    io_free(o);
    r->done(r);
}

/* Every entry point brackets itself with enter/leave, so a done() or hook
 * that closes the tier frees it only once nothing of it is on the stack. */
static void enter(ssd *s)
{
    s->depth++;
}

static void leave(ssd *s)
{
    if (--s->depth == 0 && s->closing && s->ios == 0)
        free_ssd(s);
}

static void after_cb(uv_work_t *w, int status)
{
    (void)status; /* never cancelled */
    io *o = w->data;
    ssd *s = o->s;
    enter(s);
    s->st.syncs += o->syncs;
    o->syncs = 0;
    switch (o->kind) {
    case IO_WRITE:
        if (!o->err && s->cfg.fsync == LKV_SSD_FSYNC_BATCH) {
            o->fnext = NULL;
            if (s->flush_tail)
                s->flush_tail->fnext = o;
            else
                s->flush_head = o;
            s->flush_tail = o;
            start_flush(s);
        } else {
            end_write(s, o);
        }
        break;
    case IO_FLUSH: {
        io *b = o->batch;
        s->flushing = 0;
        io_free(o);
        while (b) {
            io *next = b->fnext;
            end_write(s, b);
            b = next;
        }
        start_flush(s);
        break;
    }
    case IO_READ: after_read(s, o); break;
    case IO_DELETE: {
        lkv_tier_req *r = o->req;
        r->status = LKV_OK;
        if (o->err) {
            s->st.errors++;
            r->status =
                lkv_diag_fail(&r->diag, errno_status(o->err), "ssd tier: %s of %s/%s failed: %s",
                              o->step, s->dir, o->final, strerror(o->err));
        }
        slot_done(s, o->sl);
        io_free(o);
        r->done(r);
        break;
    }
    case IO_UNLINK:
        if (o->err)
            s->st.errors++;
        slot_done(s, o->sl);
        io_free(o);
        break;
    }
    leave(s);
}

/* LKV_OK, or why the tier refuses req (req->diag written). */
static lkv_status check_req(const ssd *s, lkv_tier_req *req)
{
    if (s->closing)
        return lkv_diag_fail(&req->diag, LKV_ERR_UNAVAILABLE, "ssd tier: closing");
    if (req->op == LKV_TIER_OP_PUT && !req->blob)
        return lkv_diag_fail(&req->diag, LKV_ERR_INVALID_ARGUMENT, "ssd tier: put without a block");
    if (req->ns_len > LKV_SSD_MAX_NS_LEN || req->key_len == 0 || req->key_len > LKV_SSD_MAX_KEY_LEN)
        return lkv_diag_fail(&req->diag, LKV_ERR_INVALID_ARGUMENT,
                             "ssd tier: namespace of %zu bytes (max %u), key of %zu bytes (1..%u)",
                             req->ns_len, LKV_SSD_MAX_NS_LEN, req->key_len, LKV_SSD_MAX_KEY_LEN);
    return LKV_OK;
}

static void put_in(ssd *s, lkv_tier_req *req, name_hash h)
{
    const uint64_t charge = HDR_BYTES + (uint64_t)req->ns_len + req->key_len + req->blob->len;
    if (charge > s->high) {
        lkv_tier_done(req, lkv_diag_fail(&req->diag, LKV_ERR_LIMIT,
                                         "ssd tier: block file of %" PRIu64
                                         " bytes exceeds the ssd tier capacity of %" PRIu64
                                         " bytes (high watermark %" PRIu64 ")",
                                         charge, s->st.capacity_bytes, s->high));
        return;
    }
    slot *e = get_or_add_slot(s, h);
    io *o = e ? io_new(s, IO_WRITE, req, h) : NULL;
    uint8_t *name = o ? malloc(req->ns_len + req->key_len) : NULL;
    if (!name) {
        if (o)
            io_free(o);
        if (e)
            maybe_free_slot(s, e);
        lkv_tier_done(
            req, lkv_diag_fail(&req->diag, LKV_ERR_NOMEM, "ssd tier: out of memory for a put"));
        return;
    }
    /* Replacing a block frees its old charge when the put completes, so
     * admission counts only the growth (else a full tier could never
     * rewrite a key). */
    const uint64_t need = e->present && e->charge < charge ? charge - e->charge
                          : e->present                     ? 0
                                                           : charge;
    make_room(s, need, e);
    if (s->st.used_bytes + need > s->high) {
        free(name);
        io_free(o);
        maybe_free_slot(s, e);
        lkv_tier_done(req,
                      lkv_diag_fail(&req->diag, LKV_ERR_LIMIT,
                                    "ssd tier full: %" PRIu64 " of %" PRIu64
                                    " bytes held by blocks being written or "
                                    "deleted, none evictable for a block file of %" PRIu64 " bytes",
                                    s->st.used_bytes, s->high, charge));
        return;
    }
    if (req->ns_len)
        memcpy(name, req->ns, req->ns_len);
    memcpy(name + req->ns_len, req->key, req->key_len);
    o->name = name;
    o->blob = lkv_blob_ref(req->blob);
    o->seq = s->next_seq++;
    o->charge = charge;
    snprintf(o->tmp, sizeof o->tmp, TMP_PREFIX "%016" PRIx64, o->seq);
    s->st.used_bytes += charge;
    slot_enqueue(s, e, o);
}

static void get_in(ssd *s, lkv_tier_req *req, name_hash h)
{
    slot *e = find_slot(s, h);
    if (!e || !e->present || !same_key(e, req->ns, req->ns_len, req->key, req->key_len)) {
        s->st.misses++;
        lkv_tier_done(req, LKV_OK);
        return;
    }
    io *o = io_new(s, IO_READ, req, h);
    if (!o) {
        lkv_tier_done(
            req, lkv_diag_fail(&req->diag, LKV_ERR_NOMEM, "ssd tier: out of memory for a get"));
        return;
    }
    o->seq = e->seq; /* the version this read is for (see after_read) */
    lkv_lru_touch(&s->ix, &e->node);
    uv_queue_work(s->loop, &o->work, work_cb, after_cb);
}

static void del_in(ssd *s, lkv_tier_req *req, name_hash h)
{
    slot *e = find_slot(s, h);
    if (!e) {
        lkv_tier_done(req, LKV_OK);
        return;
    }
    io *o = io_new(s, IO_DELETE, req, h);
    if (!o) {
        lkv_tier_done(
            req, lkv_diag_fail(&req->diag, LKV_ERR_NOMEM, "ssd tier: out of memory for a delete"));
        return;
    }
    slot_enqueue(s, e, o);
}

/* One entry for put, get and delete: lkv_tier_put/get/del set req->op. */
static void ssd_submit(lkv_tier *t, lkv_tier_req *req)
{
    ssd *s = (ssd *)t;
    req->tier = t;
    req->found = 0;
    enter(s);
    const lkv_status st = check_req(s, req);
    const name_hash h = hash_name(req->ns, req->ns_len, req->key, req->key_len);
    if (st != LKV_OK)
        lkv_tier_done(req, st);
    else if (req->op == LKV_TIER_OP_PUT)
        put_in(s, req, h);
    else if (req->op == LKV_TIER_OP_GET)
        get_in(s, req, h);
    else
        del_in(s, req, h);
    leave(s);
}

static int ssd_contains(const lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *key,
                        size_t key_len)
{
    const ssd *s = (const ssd *)t;
    if (key_len == 0 || ns_len > LKV_SSD_MAX_NS_LEN || key_len > LKV_SSD_MAX_KEY_LEN)
        return LKV_TIER_ABSENT;
    const slot *e = find_slot(s, hash_name(ns, ns_len, key, key_len));
    return e && e->present && same_key(e, ns, ns_len, key, key_len) ? LKV_TIER_PRESENT
                                                                    : LKV_TIER_ABSENT;
}

static void ssd_stats(const lkv_tier *t, lkv_tier_stats *out)
{
    *out = ((const ssd *)t)->st;
}

static void ssd_set_evict_hook(lkv_tier *t, lkv_tier_evict_fn fn, void *ud)
{
    ssd *s = (ssd *)t;
    s->evict_fn = fn;
    s->evict_ud = ud;
}

static void free_ssd(ssd *s)
{
    lkv_tier_closed_fn cb = s->closed;
    void *ud = s->closed_ud;
    if (s->ix.buckets) {
        for (size_t i = 0; i < s->ix.nbuckets; i++) {
            for (lkv_lru_node *e = s->ix.buckets[i], *next; e; e = next) {
                next = e->chain;
                free(((slot *)e)->name);
                free(e);
            }
        }
        lkv_lru_fini(&s->ix);
    }
    if (s->dirfd >= 0)
        close(s->dirfd);
    if (s->lockfd >= 0)
        close(s->lockfd); /* releases the flock */
    free(s->dir);
    free(s);
    if (cb)
        cb(ud);
}

static void ssd_close(lkv_tier *t, lkv_tier_closed_fn closed, void *ud)
{
    ssd *s = (ssd *)t;
    s->closing = 1;
    s->closed = closed;
    s->closed_ud = ud;
    if (s->ios == 0 && s->depth == 0)
        free_ssd(s);
}

/* ------------------------------------------------------------------------ */
/* Opening: checks and the index rebuild                                     */
/* ------------------------------------------------------------------------ */

typedef struct found_block {
    name_hash h;
    uint64_t seq, charge;
    uint32_t ns_len, key_len;
    uint8_t *name;
} found_block;

/*
 * Reads and checks one block file. Returns LKV_OK with fb filled, or the
 * reason it must be dropped (TRUNCATED, or MAGIC/VERSION/CORRUPT/CHECKSUM),
 * or ERR_INTERNAL/NOMEM for a failure that says nothing about the file.
 */
static lkv_status load_block(ssd *s, const char *file, name_hash h, found_block *fb, lkv_diag *d)
{
    const int fd = openat(s->dirfd, file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return lkv_diag_fail(d, LKV_ERR_INTERNAL, "ssd tier: open %s/%s: %s", s->dir, file,
                             strerror(errno));
    struct stat sb;
    uint8_t hdr[HDR_BYTES] = {0};
    hdr_info hi;
    lkv_status st = LKV_OK;
    uint8_t *buf = NULL;
    if (fstat(fd, &sb) != 0) {
        st = lkv_diag_fail(d, LKV_ERR_INTERNAL, "ssd tier: stat %s/%s: %s", s->dir, file,
                           strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = lkv_diag_fail(d, LKV_ERR_INTERNAL, "ssd tier: %s/%s is not a regular file", s->dir,
                           file);
        goto out;
    }
    if ((uint64_t)sb.st_size >= HDR_BYTES && read_at(fd, hdr, HDR_BYTES, 0) != 0) {
        st = lkv_diag_fail(d, LKV_ERR_INTERNAL, "ssd tier: read %s/%s failed", s->dir, file);
        goto out;
    }
    st = parse_header(hdr, (uint64_t)sb.st_size, file, &hi, d);
    if (st != LKV_OK)
        goto out;
    /* The whole file when verifying, else the header and the names only. */
    const uint64_t want =
        s->cfg.verify_at_start ? hi.file_len : HDR_BYTES + (uint64_t)hi.ns_len + hi.key_len;
    buf = malloc(want);
    if (!buf) {
        st = lkv_diag_fail(d, LKV_ERR_NOMEM, "ssd tier: no memory to check %s", file);
        goto out;
    }
    if (read_at(fd, buf, want, 0) != 0) {
        st = lkv_diag_fail(d, LKV_ERR_TRUNCATED, "ssd tier: file %s: short read", file);
        goto out;
    }
    if (s->cfg.verify_at_start) {
        st = check_crc(buf, &hi, file, d);
        if (st != LKV_OK)
            goto out;
    }
    const name_hash want_h = hash_name((const char *)buf + HDR_BYTES, hi.ns_len,
                                       buf + HDR_BYTES + hi.ns_len, hi.key_len);
    if (want_h.a != h.a || want_h.b != h.b) {
        st = lkv_diag_fail(d, LKV_ERR_CORRUPT, "ssd tier: file %s: name does not match its key",
                           file);
        goto out;
    }
    fb->h = h;
    fb->seq = hi.seq;
    fb->charge = hi.file_len;
    fb->ns_len = hi.ns_len;
    fb->key_len = hi.key_len;
    fb->name = malloc(hi.ns_len + hi.key_len + 1u);
    if (!fb->name) {
        st = lkv_diag_fail(d, LKV_ERR_NOMEM, "ssd tier: no memory for the index");
        goto out;
    }
    memcpy(fb->name, buf + HDR_BYTES, hi.ns_len + hi.key_len);
out:
    free(buf);
    close(fd);
    return st;
}

static int by_seq(const void *a, const void *b)
{
    const found_block *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static lkv_status rebuild(ssd *s, lkv_diag *d)
{
    const int fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        if (fd >= 0)
            close(fd);
        return lkv_diag_fail(d, LKV_ERR_INTERNAL, "ssd-dir=\"%s\": cannot list: %s", s->dir,
                             strerror(errno));
    }
    found_block *fb = NULL;
    size_t n = 0, cap = 0;
    lkv_status st = LKV_OK;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        const char *nm = de->d_name;
        name_hash h;
        if (strncmp(nm, TMP_PREFIX, strlen(TMP_PREFIX)) == 0) {
            if (unlinkat(s->dirfd, nm, 0) == 0)
                s->st.removed_temporary++;
            continue;
        }
        if (parse_name(nm, &h) != 0)
            continue; /* not ours (".", "..", ".lock", anything else): left alone */
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            found_block *nb = realloc(fb, cap * sizeof *fb);
            if (!nb) {
                st = lkv_diag_fail(d, LKV_ERR_NOMEM, "ssd tier: no memory for the index");
                break;
            }
            fb = nb;
        }
        lkv_diag why;
        const lkv_status ls = load_block(s, nm, h, &fb[n], &why);
        if (ls == LKV_OK) {
            n++;
        } else if (ls == LKV_ERR_NOMEM) {
            st = ls;
            *d = why;
            break;
        } else if (ls == LKV_ERR_INTERNAL) {
            /* Unreadable (EIO, EACCES): not served, but not proof of damage
             * either, so the file stays for the next start or an operator. */
            s->st.errors++;
            lkv_log(LKV_LOG_WARN, "ssd_skip", "dir=\"%s\" file=%s reason=\"%s\"", s->dir, nm,
                    why.msg);
        } else {
            if (ls == LKV_ERR_TRUNCATED)
                s->st.dropped_truncated++;
            else
                s->st.dropped_corrupt++;
            lkv_log(LKV_LOG_WARN, "ssd_drop", "dir=\"%s\" file=%s reason=\"%s\"", s->dir, nm,
                    why.msg);
            unlinkat(s->dirfd, nm, 0);
        }
    }
    closedir(dir);
    if (st == LKV_OK) {
        /* Oldest write first, so the LRU list ends with the newest. */
        if (n)
            qsort(fb, n, sizeof *fb, by_seq);
        for (size_t i = 0; i < n && st == LKV_OK; i++) {
            slot *e = get_or_add_slot(s, fb[i].h);
            if (!e) {
                st = lkv_diag_fail(d, LKV_ERR_NOMEM, "ssd tier: no memory for the index");
                break;
            }
            e->name = fb[i].name;
            fb[i].name = NULL;
            e->ns_len = fb[i].ns_len;
            e->key_len = fb[i].key_len;
            e->charge = fb[i].charge;
            e->seq = fb[i].seq;
            e->present = 1;
            lkv_lru_touch(&s->ix, &e->node);
            s->st.used_bytes += e->charge;
            s->st.blocks++;
            s->st.loaded_blocks++;
            if (e->seq >= s->next_seq)
                s->next_seq = e->seq + 1;
        }
        /* More than fits (the capacity was lowered): drop the oldest now. */
        if (s->st.used_bytes > s->high) {
            while (s->ix.oldest && s->st.used_bytes > s->low) {
                slot *e = (slot *)s->ix.oldest;
                char file[NAME_LEN + 1];
                format_name(file, e->h);
                unlinkat(s->dirfd, file, 0);
                make_absent(s, e);
                s->st.evictions++;
                maybe_free_slot(s, e);
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        free(fb[i].name);
    free(fb);
    return st;
}

static lkv_status check_config(const lkv_ssd_config *c, lkv_diag *d)
{
    if (!c->dir || !c->dir[0])
        return lkv_diag_fail(d, LKV_ERR_INVALID_ARGUMENT, "ssd-dir is empty");
    if (strlen(c->dir) > 4000)
        return lkv_diag_fail(d, LKV_ERR_INVALID_ARGUMENT, "ssd-dir is %zu bytes long",
                             strlen(c->dir));
    if (c->capacity_bytes == 0)
        return lkv_diag_fail(d, LKV_ERR_INVALID_ARGUMENT,
                             "ssd-bytes=0: the ssd tier needs a capacity");
    if (c->high_pct < 1 || c->high_pct > 100)
        return lkv_diag_fail(d, LKV_ERR_INVALID_ARGUMENT,
                             "ssd high watermark=%u%% is outside 1..100", c->high_pct);
    if (c->low_pct < 1 || c->low_pct > c->high_pct)
        return lkv_diag_fail(d, LKV_ERR_INVALID_ARGUMENT,
                             "ssd low watermark=%u%% is outside 1..%u (the high watermark)",
                             c->low_pct, c->high_pct);
    if (!lkv_ssd_fsync_name(c->fsync))
        return lkv_diag_fail(d, LKV_ERR_INVALID_ARGUMENT,
                             "ssd-fsync=%d is not never, batch or always", (int)c->fsync);
    return LKV_OK;
}

lkv_status lkv_tier_ssd_create(void *uv_loop, const lkv_ssd_config *cfg, lkv_tier **out,
                               lkv_diag *diag)
{
    *out = NULL;
    lkv_status st = check_config(cfg, diag);
    if (st != LKV_OK)
        return st;
    struct stat sb;
    if (stat(cfg->dir, &sb) != 0)
        return lkv_diag_fail(diag, errno == EACCES ? SSD_ERR_PERMISSION : LKV_ERR_INVALID_ARGUMENT,
                             "ssd-dir=\"%s\": %s", cfg->dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return lkv_diag_fail(diag, LKV_ERR_INVALID_ARGUMENT, "ssd-dir=\"%s\": not a directory",
                             cfg->dir);
    if (access(cfg->dir, R_OK | W_OK | X_OK) != 0)
        return lkv_diag_fail(diag, SSD_ERR_PERMISSION, "ssd-dir=\"%s\" is not writable: %s",
                             cfg->dir, strerror(errno));

    ssd *s = calloc(1, sizeof *s);
    if (!s)
        return lkv_diag_fail(diag, LKV_ERR_NOMEM, "ssd tier: out of memory");
    s->dirfd = s->lockfd = -1;
    s->loop = uv_loop;
    s->cfg = *cfg;
    s->dir = strdup(cfg->dir);
    s->cfg.dir = s->dir;
    const int ix_failed = lkv_lru_init(&s->ix);
    s->next_seq = 1;
    s->st.capacity_bytes = cfg->capacity_bytes;
    lkv_tier_watermarks(cfg->capacity_bytes, cfg->high_pct, cfg->low_pct, &s->high, &s->low);
    s->base = (lkv_tier){.name = "ssd",
                         .put = ssd_submit,
                         .get = ssd_submit,
                         .del = ssd_submit,
                         .contains = ssd_contains,
                         .stats = ssd_stats,
                         .set_evict_hook = ssd_set_evict_hook,
                         .close = ssd_close};
    if (!s->dir || ix_failed) {
        st = lkv_diag_fail(diag, LKV_ERR_NOMEM, "ssd tier: out of memory");
        goto fail_out;
    }
    s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        st = lkv_diag_fail(diag,
                           errno_status(errno) == SSD_ERR_PERMISSION ? SSD_ERR_PERMISSION
                                                                     : LKV_ERR_INVALID_ARGUMENT,
                           "ssd-dir=\"%s\": %s", s->dir, strerror(errno));
        goto fail_out;
    }
    s->lockfd = openat(s->dirfd, LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->lockfd < 0) {
        const int e = errno;
        st = lkv_diag_fail(
            diag, errno_status(e) == SSD_ERR_PERMISSION ? SSD_ERR_PERMISSION : LKV_ERR_INTERNAL,
            "ssd-dir=\"%s\" is not writable: %s", s->dir, strerror(e));
        goto fail_out;
    }
    if (flock(s->lockfd, LOCK_EX | LOCK_NB) != 0) {
        st = lkv_diag_fail(diag, LKV_ERR_UNAVAILABLE,
                           "ssd-dir=\"%s\" is in use by another process (%s)", s->dir,
                           strerror(errno));
        goto fail_out;
    }
    st = rebuild(s, diag);
    if (st != LKV_OK)
        goto fail_out;
    lkv_log(LKV_LOG_INFO, "ssd_open",
            "dir=\"%s\" blocks=%" PRIu64 " used=%" PRIu64 " capacity=%" PRIu64
            " dropped_truncated=%" PRIu64 " dropped_corrupt=%" PRIu64 " removed_temporary=%" PRIu64
            " fsync=%s",
            s->dir, s->st.blocks, s->st.used_bytes, s->st.capacity_bytes, s->st.dropped_truncated,
            s->st.dropped_corrupt, s->st.removed_temporary, lkv_ssd_fsync_name(cfg->fsync));
    *out = &s->base;
    return LKV_OK;
fail_out:
    free_ssd(s);
    return st;
}
