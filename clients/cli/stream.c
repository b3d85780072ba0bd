/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stream.c - the chunked, multi-threaded engine behind `latticekv codec
 * encode|decode|roundtrip`: any input size in bounded memory, every core.
 *
 * Design note. The input is cut into chunks of whole vectors. Each worker
 * thread owns its buffers (allocated once, so the steady state takes no page
 * faults) and loops: claim the next chunk, read it, code it, write it, then
 * take the chunk's turn to commit. Three things are ordered by chunk index
 * and everything else runs in parallel:
 *   - reading a pipe (a regular file is read with pread, in any order);
 *   - the commit: folding the chunk into the payload CRC32C and the error
 *     sums, and writing a pipe (a regular file is written with pwrite);
 *   - reporting a failure: the lowest failing chunk wins, so the message
 *     does not depend on the thread count.
 * The bytes written depend neither on the thread count nor on the chunk size:
 * the codec is a per-vector function and the container is the one
 * lkv_compress writes (format version 1, codec/FORMAT.md).
 *
 * The container's header, which carries the payload CRC and the vector
 * count, precedes the records. A regular output file gets the records at
 * their offsets first and the header last. Any other output (a pipe, a
 * terminal) cannot be seeked back, so encode spools the records to an
 * unlinked temporary file ($TMPDIR, else /tmp) and copies them out after
 * the header: memory stays bounded, the price is one extra pass over the
 * coded bytes through the page cache.
 */
#define _GNU_SOURCE
#include "cli.h"
#include "lkv_codec.h"
#include "lkv_format.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Buffers of all workers together stay below this, so the peak RSS is this
 * plus the program (a few MiB): far under the 64 MiB the CLI promises. */
#define STREAM_BUFFER_BUDGET (32u << 20)
/* One worker's buffers, at most: big enough that a chunk's fixed costs
 * (two system calls, a lock) vanish, small enough that the chunk is still in
 * the core's cache when the kernel copies it out. On the 2-core development
 * VM (1 MiB L2 a core), 2 MiB decoded 2^20 vectors file to file in 0.07 s
 * where 6 MiB took 0.12 s (bench/cli, A/B in one run). */
#define STREAM_WORKER_MAX  (2u << 20)
#define STREAM_THREADS_MAX 64u

typedef struct stream_fd {
    const char *path; /* as given; "-" is stdin/stdout */
    int fd;
    int seekable;   /* a regular file, not O_APPEND: pread/pwrite at base + offset */
    int created;    /* a regular file this run opened for writing: removed on failure */
    uint64_t base;  /* byte offset of the stream's start in the file */
    uint64_t bytes; /* size of a readable regular file from base on */
} stream_fd;

typedef struct stream stream;

typedef struct stream_worker {
    stream *s;
    pthread_t tid;
    unsigned char *in, *mid, *out; /* raw|records, roundtrip's records, records|raw */
} stream_worker;

struct stream {
    const lkv_stream_job *job;
    lkv_stream_result *res;
    stream_fd in, out;
    int spool_fd;                       /* encode to a non-seekable output: the records, in order */
    size_t in_unit, mid_unit, out_unit; /* bytes per vector read, coded (roundtrip), written */
    uint64_t out_data;                  /* output offset of the first vector's bytes */
    uint64_t total;                     /* vectors to read; UINT64_MAX: until end of input */
    size_t chunk;                       /* vectors per chunk */
    lkv_params params;                  /* of the records */
    lkv_dtype in_dt, out_dt;

    pthread_mutex_t in_mu; /* claims and sequential reads */
    uint64_t next_chunk;
    uint64_t end_chunk; /* first chunk past the input; UINT64_MAX while unknown */
    uint64_t read_vectors;
    uint64_t tail_bytes; /* bytes of a partial row at the end of a pipe */

    pthread_mutex_t mu; /* commits and failures */
    pthread_cond_t cv;
    uint64_t commit_next;
    uint32_t crc;
    double sq_err, sq_ref;
    uint64_t done_vectors;
    unsigned running;
    uint64_t fail_chunk; /* lowest failing chunk; UINT64_MAX: none */
    int fail_rc;
    char fail_msg[320];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

unsigned lkv_cli_cores(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1u;
}

/* Records a failure of chunk `chunk` unless a lower chunk failed already.
 * Called with s->mu held. */
static void fail_locked(stream *s, uint64_t chunk, int rc, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static void fail_locked(stream *s, uint64_t chunk, int rc, const char *fmt, ...)
{
    if (chunk >= s->fail_chunk)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->fail_msg, sizeof s->fail_msg, fmt, ap);
    va_end(ap);
    s->fail_chunk = chunk;
    s->fail_rc = rc;
    pthread_cond_broadcast(&s->cv);
}

static int failed(stream *s)
{
    pthread_mutex_lock(&s->mu);
    const int f = s->fail_chunk != UINT64_MAX;
    pthread_mutex_unlock(&s->mu);
    return f;
}

/* read() until len bytes or the end; the count read, or -1 (errno). */
static ssize_t read_full(int fd, void *buf, size_t len)
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

static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        const ssize_t r = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
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

static int write_full(int fd, const void *buf, size_t len)
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

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
    while (len) {
        const ssize_t w = pwrite(fd, buf, len, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf = (const char *)buf + w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Whether fd can be read or written at offsets: a regular file that is not
 * in append mode (pwrite would append). base is its current position. */
static void probe_fd(stream_fd *f)
{
    struct stat st;
    f->seekable = 0;
    if (fstat(f->fd, &st) != 0 || !S_ISREG(st.st_mode))
        return;
    const int fl = fcntl(f->fd, F_GETFL);
    const off_t pos = lseek(f->fd, 0, SEEK_CUR);
    if (fl < 0 || (fl & O_APPEND) || pos < 0)
        return;
    f->seekable = 1;
    f->base = (uint64_t)pos;
    f->bytes = (uint64_t)st.st_size > f->base ? (uint64_t)st.st_size - f->base : 0;
}

static int open_in(stream_fd *f, const char *path)
{
    f->path = path;
    f->fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0)
        return lkv_cli_error(1, "cannot open %s: %s", path, strerror(errno));
    probe_fd(f);
    return 0;
}

/* Opens the output as lkv_cli_write_file does: a new regular file needs no
 * --force, an existing one does (O_EXCL closes the window between check and
 * open); devices and pipes are written as they are. */
static int open_out(stream_fd *f, const char *path, int force)
{
    f->path = path;
    if (strcmp(path, "-") == 0) {
        f->fd = STDOUT_FILENO;
        probe_fd(f);
        return 0;
    }
    struct stat st;
    const int exists = stat(path, &st) == 0;
    int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
    if (!force && (!exists || S_ISREG(st.st_mode)))
        flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
    f->fd = open(path, flags, 0666);
    if (f->fd < 0 && errno == EEXIST)
        return lkv_cli_check_out(path, 0) ? 1 : lkv_cli_error(1, "cannot create %s", path);
    if (f->fd < 0)
        return lkv_cli_error(1, "cannot create %s: %s", path, strerror(errno));
    probe_fd(f);
    f->created = f->seekable;
    return 0;
}

static void close_fd(stream_fd *f, int remove_it)
{
    if (f->fd > STDERR_FILENO)
        close(f->fd);
    if (remove_it && f->created)
        unlink(f->path);
    f->fd = -1;
}

static double load_elem(lkv_dtype dt, const unsigned char *p, size_t i)
{
    if (dt == LKV_DTYPE_FP32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return dt == LKV_DTYPE_FP16 ? lkv_f16_to_f32(h) : lkv_bf16_to_f32(h);
}

/* Claims the next chunk and, from a pipe, reads it. Returns its vector
 * count (0: nothing left) and its index in *chunk; -1 after a failure. */
static long long claim(stream_worker *w, uint64_t *chunk)
{
    stream *s = w->s;
    pthread_mutex_lock(&s->in_mu);
    if (s->next_chunk >= s->end_chunk || failed(s)) {
        pthread_mutex_unlock(&s->in_mu);
        return 0;
    }
    const uint64_t i = s->next_chunk++;
    *chunk = i;
    uint64_t n = s->chunk;
    if (s->total != UINT64_MAX) {
        const uint64_t first = i * s->chunk;
        n = s->total - first < n ? s->total - first : n;
        if ((i + 1) * s->chunk >= s->total)
            s->end_chunk = i + 1;
    }
    if (!s->in.seekable) {
        const size_t want = (size_t)n * s->in_unit;
        const ssize_t got = read_full(s->in.fd, w->in, want);
        if (got < 0) {
            const int e = errno;
            pthread_mutex_unlock(&s->in_mu);
            pthread_mutex_lock(&s->mu);
            fail_locked(s, i, 1, "cannot read %s: %s", s->in.path, strerror(e));
            pthread_mutex_unlock(&s->mu);
            return -1;
        }
        if ((size_t)got < want) {
            s->end_chunk = i + 1;
            s->tail_bytes = (size_t)got % s->in_unit;
            n = (size_t)got / s->in_unit;
        }
        s->read_vectors += n;
    }
    pthread_mutex_unlock(&s->in_mu);
    if (s->in.seekable) {
        const size_t want = (size_t)n * s->in_unit;
        const ssize_t got =
            pread_full(s->in.fd, w->in, want, s->in.base + i * s->chunk * s->in_unit);
        if (got < 0 || (size_t)got != want) {
            const int e = got < 0 ? errno : 0;
            pthread_mutex_lock(&s->mu);
            fail_locked(s, i, 1, "cannot read %s: %s", s->in.path,
                        e ? strerror(e) : "the file shrank while it was read");
            pthread_mutex_unlock(&s->mu);
            return -1;
        }
    }
    return (long long)n;
}

/* Codes one chunk of n vectors from w->in into w->out. */
static int code(stream_worker *w, uint64_t chunk, size_t n, double *sq_err, double *sq_ref)
{
    stream *s = w->s;
    const lkv_stream_job *j = s->job;
    lkv_diag d;
    lkv_status st;
    if (j->mode == LKV_STREAM_ENCODE)
        st = lkv_encode(&s->params, s->in_dt, w->in, n, w->out, j->isa, &d);
    else if (j->mode == LKV_STREAM_DECODE)
        st = lkv_decode(&s->params, w->in, n, s->out_dt, w->out, j->isa, &d);
    else {
        st = lkv_encode(&s->params, s->in_dt, w->in, n, w->mid, j->isa, &d);
        if (st == LKV_OK)
            st = lkv_decode(&s->params, w->mid, n, s->out_dt, w->out, j->isa, &d);
    }
    if (st != LKV_OK) {
        /* The codec's index is the chunk's; the message names the file's. */
        const unsigned long long at = chunk * s->chunk + (d.index < n ? d.index : 0);
        pthread_mutex_lock(&s->mu);
        fail_locked(s, chunk, 1, "%s: vector %llu: %s", lkv_status_name(st), at, d.msg);
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    if (j->mode == LKV_STREAM_ROUNDTRIP) {
        double num = 0, den = 0;
        const size_t elems = n * s->params.dim;
        for (size_t e = 0; e < elems; e++) {
            const double a = load_elem(s->in_dt, w->in, e), b = load_elem(s->out_dt, w->out, e);
            num += (a - b) * (a - b);
            den += a * a;
        }
        *sq_err = num;
        *sq_ref = den;
    }
    return 0;
}

/* Writes a coded chunk where it belongs (outside the commit turn when the
 * output takes offsets), then takes the chunk's turn to commit. */
static void commit(stream_worker *w, uint64_t chunk, size_t n, int ok, double sq_err, double sq_ref)
{
    stream *s = w->s;
    const size_t out_len = n * s->out_unit;
    const uint64_t out_off = s->out_data + chunk * s->chunk * s->out_unit;
    int wrote = 0, werr = 0;
    if (ok && s->spool_fd >= 0) {
        werr = pwrite_full(s->spool_fd, w->out, out_len, chunk * s->chunk * s->out_unit);
        wrote = 1;
    } else if (ok && s->out.seekable) {
        werr = pwrite_full(s->out.fd, w->out, out_len, out_off);
        wrote = 1;
    }
    const int e = errno;
    pthread_mutex_lock(&s->mu);
    while (s->commit_next != chunk)
        pthread_cond_wait(&s->cv, &s->mu);
    if (ok && werr)
        fail_locked(s, chunk, 1, "cannot write %s: %s",
                    s->spool_fd >= 0 ? "the spool file" : s->out.path, strerror(e));
    if (ok && chunk < s->fail_chunk) {
        /* The payload CRC covers the records: written by encode, read by decode. */
        const lkv_stream_mode m = s->job->mode;
        if (m == LKV_STREAM_ENCODE)
            s->crc = lkv_crc32c(s->crc, w->out, out_len);
        else if (m == LKV_STREAM_DECODE)
            s->crc = lkv_crc32c(s->crc, w->in, n * s->in_unit);
        s->sq_err += sq_err;
        s->sq_ref += sq_ref;
        if (!wrote && write_full(s->out.fd, w->out, out_len) != 0)
            fail_locked(s, chunk, 1, "cannot write %s: %s", s->out.path, strerror(errno));
        s->done_vectors += n;
    }
    s->commit_next++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void *worker_run(void *arg)
{
    stream_worker *w = arg;
    stream *s = w->s;
    for (;;) {
        uint64_t chunk = 0;
        const long long n = claim(w, &chunk);
        if (n < 0) {
            commit(w, chunk, 0, 0, 0, 0);
            continue;
        }
        if (n == 0)
            break;
        double e = 0, r = 0;
        const int ok = code(w, chunk, (size_t)n, &e, &r) == 0;
        commit(w, chunk, (size_t)n, ok, e, r);
    }
    pthread_mutex_lock(&s->mu);
    s->running--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void human(double b, char *out, size_t cap)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
}

/* One line, redrawn with \r; only ever on a terminal. */
static void progress(stream *s, uint64_t done, double t0)
{
    static const char *const verb[] = {"encode", "decode", "roundtrip"};
    const double in_bytes = (double)done * (double)s->in_unit;
    const double dt = now_s() - t0;
    char a[32], b[32];
    human(in_bytes, a, sizeof a);
    if (s->total != UINT64_MAX) {
        human((double)s->total * (double)s->in_unit, b, sizeof b);
        fprintf(stderr, "\r%s: %s of %s (%3.0f%%), %.1f M vectors/s   ", verb[s->job->mode], a, b,
                s->total ? 100.0 * (double)done / (double)s->total : 100.0,
                dt > 0 ? (double)done / dt / 1e6 : 0.0);
    } else {
        fprintf(stderr, "\r%s: %s, %.1f M vectors/s   ", verb[s->job->mode], a,
                dt > 0 ? (double)done / dt / 1e6 : 0.0);
    }
    fflush(stderr);
}

/* Picks the chunk size: the buffers of all workers within the budget. */
static size_t chunk_vectors(const stream *s, unsigned threads)
{
    const size_t per_vec = s->in_unit + s->mid_unit + s->out_unit;
    size_t cap = STREAM_BUFFER_BUDGET / threads;
    if (cap > STREAM_WORKER_MAX)
        cap = STREAM_WORKER_MAX;
    size_t n = cap / per_vec;
    if (s->job->chunk_vectors)
        n = s->job->chunk_vectors;
    return n ? n : 1;
}

/* Runs the workers to the end of the input; 0 or the failure's exit status. */
static int run_workers(stream *s)
{
    unsigned t = s->job->threads ? s->job->threads : lkv_cli_cores();
    if (t > STREAM_THREADS_MAX)
        t = STREAM_THREADS_MAX;
    s->chunk = chunk_vectors(s, t);
    if (s->total != UINT64_MAX) {
        const uint64_t chunks = (s->total + s->chunk - 1) / s->chunk;
        s->end_chunk = chunks;
        if (chunks < t)
            t = chunks ? (unsigned)chunks : 1;
    }
    stream_worker *w = calloc(t, sizeof *w);
    if (!w)
        return lkv_cli_error(1, "out of memory");
    unsigned started = 0;
    int rc = 0;
    for (; started < t; started++) {
        stream_worker *x = &w[started];
        x->s = s;
        x->in = malloc(s->chunk * s->in_unit);
        x->out = malloc(s->chunk * s->out_unit);
        x->mid = s->mid_unit ? malloc(s->chunk * s->mid_unit) : NULL;
        if (!x->in || !x->out || (s->mid_unit && !x->mid)) {
            rc = lkv_cli_error(1, "out of memory for the buffers of %u threads", t);
            break;
        }
        pthread_mutex_lock(&s->mu);
        s->running++;
        pthread_mutex_unlock(&s->mu);
        if (pthread_create(&x->tid, NULL, worker_run, x) != 0) {
            pthread_mutex_lock(&s->mu);
            s->running--;
            pthread_mutex_unlock(&s->mu);
            rc = lkv_cli_error(1, "cannot start thread %u", started + 1);
            break;
        }
    }
    if (rc) {
        /* Stop the ones running: they see a failure and drain. */
        pthread_mutex_lock(&s->mu);
        fail_locked(s, 0, rc, "cannot start the workers");
        pthread_mutex_unlock(&s->mu);
    }
    const double t0 = now_s();
    if (s->job->progress)
        progress(s, 0, t0);
    pthread_mutex_lock(&s->mu);
    while (s->running) {
        if (!s->job->progress) {
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        const uint64_t done = s->done_vectors;
        pthread_mutex_unlock(&s->mu);
        progress(s, done, t0);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    if (s->job->progress)
        fputs("\r\033[K", stderr);
    for (unsigned i = 0; i < started; i++)
        pthread_join(w[i].tid, NULL);
    for (unsigned i = 0; i < t; i++) {
        free(w[i].in);
        free(w[i].out);
        free(w[i].mid);
    }
    free(w);
    if (rc)
        return rc;
    if (s->fail_chunk != UINT64_MAX)
        return lkv_cli_error(s->fail_rc, "%s", s->fail_msg);
    s->res->threads = t;
    return 0;
}

/* Reads the container header from the input and parses it. */
static int read_header(stream *s, lkv_container_info *info)
{
    unsigned char h[LKV_FMT_HEADER_BYTES(LKV_MAX_NDIM)];
    size_t have = LKV_FMT_HEADER_BYTES(1);
    ssize_t got =
        s->in.seekable ? pread_full(s->in.fd, h, have, s->in.base) : read_full(s->in.fd, h, have);
    if (got < 0)
        return lkv_cli_error(1, "cannot read %s: %s", s->in.path, strerror(errno));
    size_t len = (size_t)got;
    /* The first call reports a short or foreign header; once the fixed part
     * holds, the header's own size says how much more to read. */
    lkv_diag d;
    lkv_status st = lkv_container_parse_header(h, len, info, &d);
    const size_t hb =
        len >= LKV_FMT_OFF_HEADER_BYTES + 2
            ? (size_t)(h[LKV_FMT_OFF_HEADER_BYTES] | h[LKV_FMT_OFF_HEADER_BYTES + 1] << 8)
            : 0;
    if (st == LKV_ERR_TRUNCATED && len == have && hb > have && hb <= sizeof h) {
        got = s->in.seekable ? pread_full(s->in.fd, h + have, hb - have, s->in.base + have)
                             : read_full(s->in.fd, h + have, hb - have);
        if (got < 0)
            return lkv_cli_error(1, "cannot read %s: %s", s->in.path, strerror(errno));
        len += (size_t)got;
        st = lkv_container_parse_header(h, len, info, &d);
    }
    if (st != LKV_OK)
        return lkv_cli_error(1, "%s: %s", lkv_status_name(st), d.msg);
    /* A regular file's length is known: check it before any work, in the
     * order lkv_container_parse does. */
    if (s->in.seekable && s->in.bytes != info->total_bytes) {
        if (s->in.bytes < info->total_bytes)
            return lkv_cli_error(1, "%s: coded: %llu bytes, the header promises %zu",
                                 lkv_status_name(LKV_ERR_TRUNCATED),
                                 (unsigned long long)s->in.bytes, info->total_bytes);
        return lkv_cli_error(1, "%s: coded: %llu trailing bytes after the last record",
                             lkv_status_name(LKV_ERR_CORRUPT),
                             (unsigned long long)(s->in.bytes - info->total_bytes));
    }
    return 0;
}

/* After a pipe's records: nothing may follow them. */
static int check_pipe_end(stream *s, const lkv_container_info *info)
{
    if (s->read_vectors < info->n_vectors || s->tail_bytes)
        return lkv_cli_error(
            1, "%s: coded: %llu bytes, the header promises %zu", lkv_status_name(LKV_ERR_TRUNCATED),
            ((unsigned long long)info->header_bytes +
             (unsigned long long)s->read_vectors * info->record_bytes + s->tail_bytes),
            info->total_bytes);
    unsigned char extra;
    const ssize_t got = read_full(s->in.fd, &extra, 1);
    if (got > 0)
        return lkv_cli_error(1, "%s: coded: trailing bytes after the last record",
                             lkv_status_name(LKV_ERR_CORRUPT));
    return 0;
}

/* Encode's end: the header (now that the CRC and count are known), and the
 * spooled records after it for an output that cannot seek. */
static int finish_encode(stream *s, lkv_container_info *info)
{
    const lkv_stream_job *j = s->job;
    uint64_t shape2[2];
    const uint64_t *shape = j->shape;
    uint32_t ndim = j->ndim;
    const uint64_t n = s->done_vectors;
    if (!shape) {
        shape2[0] = n;
        shape2[1] = s->params.dim;
        shape = shape2;
        ndim = 2;
    }
    lkv_diag d;
    if (lkv_container_plan(&s->params, s->in_dt, shape, ndim, info, &d) != LKV_OK)
        return lkv_cli_error(1, "%s: %s", lkv_status_name(d.code), d.msg);
    if (info->n_vectors != n)
        return lkv_cli_error(
            1, "%s: tensor.data has %llu bytes, shape and dtype %s need %llu",
            lkv_status_name(LKV_ERR_SHAPE), ((unsigned long long)n * s->in_unit + s->tail_bytes),
            lkv_dtype_name(s->in_dt), ((unsigned long long)info->n_vectors * s->in_unit));
    info->payload_crc = s->crc;
    unsigned char h[LKV_FMT_HEADER_BYTES(LKV_MAX_NDIM)];
    if (lkv_container_write_header(info, h, sizeof h, &d) != LKV_OK)
        return lkv_cli_error(1, "%s: %s", lkv_status_name(d.code), d.msg);
    if (s->spool_fd < 0)
        return pwrite_full(s->out.fd, h, info->header_bytes, s->out.base)
                   ? lkv_cli_error(1, "cannot write %s: %s", s->out.path, strerror(errno))
                   : 0;
    if (write_full(s->out.fd, h, info->header_bytes))
        return lkv_cli_error(1, "cannot write %s: %s", s->out.path, strerror(errno));
    const size_t cap = 1u << 20;
    unsigned char *buf = malloc(cap);
    if (!buf)
        return lkv_cli_error(1, "out of memory");
    int rc = 0;
    for (uint64_t off = 0, left = n * s->out_unit; left && !rc;) {
        const size_t want = left < cap ? (size_t)left : cap;
        const ssize_t got = pread_full(s->spool_fd, buf, want, off);
        if (got != (ssize_t)want)
            rc = lkv_cli_error(1, "cannot read the spool file back: %s",
                               got < 0 ? strerror(errno) : "short read");
        else if (write_full(s->out.fd, buf, want))
            rc = lkv_cli_error(1, "cannot write %s: %s", s->out.path, strerror(errno));
        off += want;
        left -= want;
    }
    free(buf);
    return rc;
}

/* An unlinked temporary file for the records of a non-seekable output. */
static int open_spool(void)
{
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/latticekv-spool-XXXXXX", dir && *dir ? dir : "/tmp");
    const int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) {
        lkv_cli_error(1, "cannot create a spool file in %s: %s", dir && *dir ? dir : "/tmp",
                      strerror(errno));
        return -1;
    }
    unlink(path);
    return fd;
}

int lkv_cli_stream(const lkv_stream_job *j, lkv_stream_result *res)
{
    stream s;
    memset(&s, 0, sizeof s);
    memset(res, 0, sizeof *res);
    s.job = j;
    s.res = res;
    s.in.fd = s.out.fd = s.spool_fd = -1;
    s.total = UINT64_MAX;
    s.end_chunk = UINT64_MAX;
    s.fail_chunk = UINT64_MAX;
    pthread_mutex_init(&s.in_mu, NULL);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    lkv_container_info info;
    memset(&info, 0, sizeof info);
    int rc = open_in(&s.in, j->in);
    /* Profile 2 (container versions 2, 3) has chunks of variable size: its own
     * sequential engine (stream_p2.c) takes over the open input. */
    int p2 = !rc && j->mode != LKV_STREAM_DECODE && lkv_profile_of(&j->params) == LKV_PROFILE_2;
    if (!rc && j->mode == LKV_STREAM_DECODE) {
        rc = read_header(&s, &info);
        p2 = !rc && lkv_profile_of(&info.params) == LKV_PROFILE_2;
        if (p2 && s.in.seekable &&
            lseek(s.in.fd, (off_t)(s.in.base + info.header_bytes), SEEK_SET) < 0)
            rc = lkv_cli_error(1, "cannot read %s: %s", s.in.path, strerror(errno));
    }
    if (p2) {
        if (!rc)
            rc = lkv_cli_stream_p2(j, res, s.in.fd, j->mode == LKV_STREAM_DECODE ? &info : NULL);
        close_fd(&s.in, 0);
        pthread_cond_destroy(&s.cv);
        pthread_mutex_destroy(&s.mu);
        pthread_mutex_destroy(&s.in_mu);
        return rc;
    }
    if (!rc && j->mode == LKV_STREAM_DECODE) {
        s.params = info.params;
        s.in_dt = info.dtype;
        s.out_dt = j->out_dtype ? (lkv_dtype)j->out_dtype : info.dtype;
        s.in_unit = info.record_bytes;
        s.out_unit = (size_t)info.params.dim * lkv_dtype_size(s.out_dt);
        s.total = info.n_vectors;
        s.in.base += info.header_bytes;
    } else if (!rc) {
        s.params = j->params;
        s.in_dt = j->in_dtype;
        s.out_dt = j->out_dtype ? (lkv_dtype)j->out_dtype : j->in_dtype;
        s.in_unit = (size_t)j->params.dim * lkv_dtype_size(j->in_dtype);
        const size_t rec = lkv_record_bytes(&j->params);
        s.mid_unit = j->mode == LKV_STREAM_ROUNDTRIP ? rec : 0;
        s.out_unit =
            j->mode == LKV_STREAM_ENCODE ? rec : (size_t)j->params.dim * lkv_dtype_size(s.out_dt);
        if (s.in.seekable) {
            /* The size is known: refuse a bad one before creating the output. */
            if (s.in.bytes % s.in_unit)
                rc = lkv_cli_error(
                    1, "--in holds %llu bytes, not a whole number of %u-element %s rows",
                    (unsigned long long)s.in.bytes, j->params.dim, lkv_dtype_name(j->in_dtype));
            s.total = s.in.bytes / s.in_unit;
        }
        lkv_diag d;
        uint64_t shape2[2] = {s.total == UINT64_MAX ? 0 : s.total, j->params.dim};
        if (!rc && lkv_container_plan(&j->params, j->in_dtype, j->shape ? j->shape : shape2,
                                      j->shape ? j->ndim : 2, &info, &d) != LKV_OK)
            rc = lkv_cli_error(1, "%s: %s", lkv_status_name(d.code), d.msg);
        if (!rc && j->shape && s.total != UINT64_MAX && info.n_vectors != s.total)
            rc = lkv_cli_error(1, "%s: tensor.data has %llu bytes, shape and dtype %s need %llu",
                               lkv_status_name(LKV_ERR_SHAPE), (unsigned long long)s.in.bytes,
                               lkv_dtype_name(j->in_dtype),
                               ((unsigned long long)info.n_vectors * s.in_unit));
    }
    if (!rc)
        rc = open_out(&s.out, j->out, j->force);
    if (!rc && j->mode == LKV_STREAM_ENCODE) {
        s.out_data = s.out.base + info.header_bytes;
        if (!s.out.seekable && (s.spool_fd = open_spool()) < 0)
            rc = 1;
    } else if (!rc) {
        s.out_data = s.out.base;
    }
    if (!rc && s.out.seekable && s.total != UINT64_MAX) {
        /* Reserve the file's blocks in one call: ext4 otherwise reserves
         * them page by page as the data arrives, which costs more kernel
         * time than coding the data (measured: bench/cli). Only a hint;
         * a file system without fallocate gets the data all the same. */
        const uint64_t len =
            j->mode == LKV_STREAM_ENCODE ? info.total_bytes : s.total * (uint64_t)s.out_unit;
        if (len)
            (void)fallocate(s.out.fd, 0, (off_t)s.out.base, (off_t)len);
    }
    if (!rc)
        rc = run_workers(&s);
    if (!rc && j->mode == LKV_STREAM_DECODE) {
        if (!s.in.seekable)
            rc = check_pipe_end(&s, &info);
        if (!rc && s.crc != info.payload_crc)
            rc = lkv_cli_error(1, "%s: coded: payload checksum %08x, computed %08x",
                               lkv_status_name(LKV_ERR_CHECKSUM), info.payload_crc, s.crc);
    } else if (!rc) {
        if (s.tail_bytes)
            rc = lkv_cli_error(1, "--in holds %llu bytes, not a whole number of %u-element %s rows",
                               ((unsigned long long)s.done_vectors * s.in_unit + s.tail_bytes),
                               j->params.dim, lkv_dtype_name(j->in_dtype));
        else if (j->mode == LKV_STREAM_ENCODE)
            rc = finish_encode(&s, &info);
        else {
            uint64_t shape2[2] = {s.done_vectors, j->params.dim};
            lkv_diag d;
            if (lkv_container_plan(&j->params, j->in_dtype, j->shape ? j->shape : shape2,
                                   j->shape ? j->ndim : 2, &info, &d) != LKV_OK)
                rc = lkv_cli_error(1, "%s: %s", lkv_status_name(d.code), d.msg);
            else if (info.n_vectors != s.done_vectors)
                rc = lkv_cli_error(
                    1, "%s: tensor.data has %llu bytes, shape and dtype %s need %llu",
                    lkv_status_name(LKV_ERR_SHAPE),
                    ((unsigned long long)s.done_vectors * s.in_unit), lkv_dtype_name(j->in_dtype),
                    ((unsigned long long)info.n_vectors * s.in_unit));
        }
    }
    /* A regular output file ends where the data does (--force over a longer
     * file); any failure removes what this run created. */
    if (!rc && s.out.seekable) {
        const uint64_t end = j->mode == LKV_STREAM_DECODE || j->mode == LKV_STREAM_ROUNDTRIP
                                 ? s.out_data + s.done_vectors * s.out_unit
                                 : s.out.base + info.total_bytes;
        if (ftruncate(s.out.fd, (off_t)end) != 0)
            rc = lkv_cli_error(1, "cannot write %s: %s", s.out.path, strerror(errno));
    }
    if (s.out.fd > STDERR_FILENO) {
        const int bad = close(s.out.fd) != 0;
        if (bad && !rc)
            rc = lkv_cli_error(1, "cannot write %s: %s", s.out.path, strerror(errno));
        s.out.fd = -1;
    }
    close_fd(&s.out, rc != 0);
    close_fd(&s.in, 0);
    if (s.spool_fd >= 0)
        close(s.spool_fd);
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.mu);
    pthread_mutex_destroy(&s.in_mu);
    res->info = info;
    res->n_vectors = s.done_vectors;
    res->in_bytes = s.done_vectors * s.in_unit;
    res->out_bytes = s.done_vectors * s.out_unit;
    res->coded_bytes = info.total_bytes;
    res->sq_err = s.sq_err;
    res->sq_ref = s.sq_ref;
    return rc;
}

int lkv_cli_inspect(const char *path, lkv_inspect_result *r)
{
    stream s;
    memset(&s, 0, sizeof s);
    memset(r, 0, sizeof *r);
    if (open_in(&s.in, path))
        return 1;
    int rc = 0;
    unsigned char h[LKV_FMT_HEADER_BYTES(LKV_MAX_NDIM)];
    size_t len = 0;
    ssize_t got = read_full(s.in.fd, h, LKV_FMT_HEADER_BYTES(1));
    if (got >= 0) {
        len = (size_t)got;
        const size_t hb =
            len >= LKV_FMT_OFF_HEADER_BYTES + 2
                ? (size_t)(h[LKV_FMT_OFF_HEADER_BYTES] | h[LKV_FMT_OFF_HEADER_BYTES + 1] << 8)
                : 0;
        if (hb > len && hb <= sizeof h && len == LKV_FMT_HEADER_BYTES(1)) {
            got = read_full(s.in.fd, h + len, hb - len);
            len += got > 0 ? (size_t)got : 0;
        }
    }
    if (got < 0) {
        rc = lkv_cli_error(1, "cannot read %s: %s", path, strerror(errno));
        close_fd(&s.in, 0);
        return rc;
    }
    r->header_status = lkv_container_parse_header(h, len, &r->info, &r->diag);
    r->file_bytes = len;
    if (r->header_status != LKV_OK) {
        close_fd(&s.in, 0);
        return 0;
    }
    /* The records: counted and summed, never held. */
    const size_t cap = 1u << 20;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        close_fd(&s.in, 0);
        return lkv_cli_error(1, "out of memory");
    }
    uint32_t crc = 0;
    const uint64_t want = r->info.total_bytes - r->info.header_bytes;
    uint64_t seen = 0;
    for (;;) {
        got = read_full(s.in.fd, buf, cap);
        if (got < 0) {
            rc = lkv_cli_error(1, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (got == 0)
            break;
        if (seen < want) {
            const uint64_t take = want - seen < (uint64_t)got ? want - seen : (uint64_t)got;
            crc = lkv_crc32c(crc, buf, (size_t)take);
        }
        seen += (uint64_t)got;
    }
    free(buf);
    close_fd(&s.in, 0);
    r->file_bytes += seen;
    r->payload_crc = crc;
    return rc;
}
