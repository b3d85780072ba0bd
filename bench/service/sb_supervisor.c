/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sb_supervisor.c - service_bench's child processes: latticekvd (twice),
 * the echo server and redis-server run on free loopback ports for the
 * whole bench and are stopped at the end, or by sb_die on any failure, so
 * that a failed run leaves no server behind (their logs stay, and the
 * message says where).
 */
#include "service_bench.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t children[4];
static int n_children;
char sb_logdir[64];
int sb_clients_poll_strategy;

void sb_stop_children(void)
{
    for (int i = 0; i < n_children; i++) {
        if (children[i] > 0) {
            kill(children[i], SIGTERM);
            waitpid(children[i], NULL, 0);
            children[i] = 0;
        }
    }
}

void sb_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("service_bench: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    sb_stop_children();
    if (sb_logdir[0])
        fprintf(stderr, "service_bench: the servers' logs are in %s\n", sb_logdir);
    exit(1);
}

/* Removes the log folder (flat: the servers' logs, redis's files). */
void sb_remove_logdir(void)
{
    DIR *d = opendir(sb_logdir);
    if (!d)
        return;
    const struct dirent *e;
    char path[600];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof path, "%s/%s", sb_logdir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(sb_logdir);
}

int sb_free_port(void)
{
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        sb_die("cannot find a free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

/* Starts argv[0] with its output appended to `log`; returns the pid. */
pid_t sb_spawn(char *const argv[], const char *log)
{
    const pid_t pid = fork();
    if (pid < 0)
        sb_die("fork: %s", strerror(errno));
    if (pid == 0) {
        FILE *f = freopen(log, "a", stdout);
        if (f)
            dup2(fileno(stdout), 2);
        if (sb_clients_poll_strategy)
            unsetenv("GRPC_POLL_STRATEGY"); /* the daemon keeps gRPC's default */
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    children[n_children++] = pid;
    return pid;
}

void sb_stop_child(pid_t pid, const char *what)
{
    for (int i = 0; i < n_children; i++)
        if (children[i] == pid) {
            int st = 0;
            kill(pid, SIGTERM);
            waitpid(pid, &st, 0);
            children[i] = 0;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                fprintf(stderr, "service_bench: warning: %s ended with status %d\n", what, st);
        }
}

/* Waits until something accepts TCP connections on 127.0.0.1:port. */
void sb_wait_port(int port, const char *what, const char *log)
{
    for (int i = 0; i < 500; i++) {
        const int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        const int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return;
        const struct timespec nap = {0, 20 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    sb_die("%s on port %d does not accept connections (log: %s)", what, port, log);
}

pid_t sb_start_daemon(const char *daemon, const char *backend, int port, int wait_us,
                      const char *log)
{
    char listen[64], wait[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(wait, sizeof wait, "%d", wait_us);
    char *const argv[] = {
        (char *)daemon,        "--listen", listen,        "--backend", (char *)backend,
        "--batch-max-wait-us", wait,       "--log-level", "warn",      NULL};
    const pid_t pid = sb_spawn(argv, log);
    lkv_client *c = NULL;
    lkv_client_error e;
    if (lkv_client_create(listen, NULL, &c, &e) || lkv_client_wait_ready(c, 30000, &e))
        sb_die("latticekvd on %s is not serving: %s (log: %s)", listen, e.msg, log);
    lkv_client_free(c);
    return pid;
}
