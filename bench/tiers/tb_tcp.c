/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tb_tcp.c - raw TCP throughput across the shaped link, measured before the
 * tiers so the JSON records what the link really carries.
 *
 * The server (tiers_bench --tcp-serve IP:PORT, run in the server namespace)
 * accepts connections; the first byte of each says what to do: 'U' read and
 * discard until the client's EOF, then close (upload), or 'D' followed by a
 * 4-byte little-endian millisecond count: send for that long, then close
 * (download). The client opens `streams` connections per direction and
 * times each direction from the first byte to the last one received at the
 * far end (an upload ends when the server closes after the EOF), so bytes
 * still sitting in socket buffers are never counted.
 */
#include "tiers_bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (1u << 20)

int tb_parse_hostport(const char *s, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= cap)
        return -1;
    char *end;
    const long p = strtol(colon + 1, &end, 10);
    if (*end || p < 1 || p > 65535)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    *port = (int)p;
    return 0;
}

static int make_addr(const char *host, int port, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        const ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n)
{
    char *c = p;
    while (n) {
        const ssize_t r = recv(fd, c, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

/* ---- server ----------------------------------------------------------- */

static void *serve_conn(void *arg)
{
    const int fd = *(int *)arg;
    free(arg);
    char *buf = malloc(CHUNK);
    unsigned char cmd = 0;
    if (buf && read_all(fd, &cmd, 1) == 0) {
        if (cmd == 'U') {
            while (recv(fd, buf, CHUNK, 0) > 0) {
            }
        } else if (cmd == 'D') {
            unsigned char ms[4];
            if (read_all(fd, ms, 4) == 0) {
                const uint32_t dur = ms[0] | ms[1] << 8 | ms[2] << 16 | (uint32_t)ms[3] << 24;
                memset(buf, 0x5a, CHUNK);
                const double end = tb_now() + dur / 1000.0;
                while (tb_now() < end && write_all(fd, buf, CHUNK) == 0) {
                }
            }
        }
    }
    free(buf);
    close(fd);
    return NULL;
}

int tb_tcp_serve(const char *hostport, unsigned max_seconds)
{
    char host[64];
    int port;
    struct sockaddr_in sa;
    if (tb_parse_hostport(hostport, host, sizeof host, &port) || make_addr(host, port, &sa)) {
        fprintf(stderr, "tiers_bench: --tcp-serve %s is not IPv4:PORT\n", hostport);
        return 2;
    }
    const int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) || listen(ls, 64)) {
        perror("tiers_bench: tcp server");
        return 1;
    }
    /* Bounded: the process ends by itself even if nobody stops it. */
    alarm(max_seconds);
    printf("tiers_bench: tcp server on %s for at most %u s\n", hostport, max_seconds);
    fflush(stdout);
    for (;;) {
        const int fd = accept(ls, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            perror("tiers_bench: accept");
            return 1;
        }
        pthread_t t;
        int *arg = malloc(sizeof *arg);
        if (arg)
            *arg = fd;
        if (arg && pthread_create(&t, NULL, serve_conn, arg) == 0) {
            pthread_detach(t);
        } else {
            free(arg);
            close(fd);
        }
    }
}

/* ---- client ----------------------------------------------------------- */

typedef struct tcp_stream {
    struct sockaddr_in sa;
    int download;
    double seconds;
    uint64_t bytes;
    double t_end;
    int failed;
} tcp_stream;

static void *run_stream(void *arg)
{
    tcp_stream *s = arg;
    char *buf = malloc(CHUNK);
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (!buf || fd < 0 || connect(fd, (struct sockaddr *)&s->sa, sizeof s->sa)) {
        s->failed = 1;
        goto out;
    }
    if (s->download) {
        const uint32_t ms = (uint32_t)(s->seconds * 1000);
        const unsigned char hdr[5] = {'D', (unsigned char)ms, (unsigned char)(ms >> 8),
                                      (unsigned char)(ms >> 16), (unsigned char)(ms >> 24)};
        if (write_all(fd, hdr, sizeof hdr)) {
            s->failed = 1;
            goto out;
        }
        ssize_t r;
        while ((r = recv(fd, buf, CHUNK, 0)) > 0)
            s->bytes += (uint64_t)r;
        s->failed = r < 0;
    } else {
        memset(buf, 0xa5, CHUNK);
        const char cmd = 'U';
        const double end = tb_now() + s->seconds;
        if (write_all(fd, &cmd, 1)) {
            s->failed = 1;
            goto out;
        }
        while (tb_now() < end) {
            if (write_all(fd, buf, CHUNK)) {
                s->failed = 1;
                goto out;
            }
            s->bytes += CHUNK;
        }
        /* The server closes after reading everything: that is the end. */
        shutdown(fd, SHUT_WR);
        while (recv(fd, buf, CHUNK, 0) > 0) {
        }
    }
    s->t_end = tb_now();
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    return NULL;
}

static double one_direction(const struct sockaddr_in *sa, int download, unsigned streams,
                            double seconds)
{
    tcp_stream s[TB_MAX_CLIENTS];
    pthread_t t[TB_MAX_CLIENTS];
    const double t0 = tb_now();
    for (unsigned i = 0; i < streams; i++) {
        s[i] = (tcp_stream){.sa = *sa, .download = download, .seconds = seconds};
        if (pthread_create(&t[i], NULL, run_stream, &s[i]))
            tb_die("pthread_create failed");
    }
    uint64_t bytes = 0;
    double t_end = t0;
    int failed = 0;
    for (unsigned i = 0; i < streams; i++) {
        pthread_join(t[i], NULL);
        bytes += s[i].bytes;
        failed |= s[i].failed;
        if (s[i].t_end > t_end)
            t_end = s[i].t_end;
    }
    if (failed)
        tb_die("tcp test: a %s stream failed", download ? "download" : "upload");
    return (double)bytes * 8 / (t_end - t0) / 1e9;
}

void tb_tcp_test(const char *hostport, unsigned streams, double seconds, double *up_gbit,
                 double *down_gbit)
{
    char host[64];
    int port;
    struct sockaddr_in sa;
    if (tb_parse_hostport(hostport, host, sizeof host, &port) || make_addr(host, port, &sa))
        tb_die("--tcp-test %s is not IPv4:PORT", hostport);
    if (streams < 1 || streams > TB_MAX_CLIENTS)
        tb_die("tcp streams %u outside 1..%d", streams, TB_MAX_CLIENTS);
    signal(SIGPIPE, SIG_IGN);
    *up_gbit = one_direction(&sa, 0, streams, seconds);
    *down_gbit = one_direction(&sa, 1, streams, seconds);
}
