/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sb_redis.c - the Redis system of service_bench: a local redis-server
 * without persistence, driven through hiredis SET / GET of the same bf16
 * blocks the other systems move.
 */
#include "service_bench.h"

#include <hiredis/hiredis.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The handle is hiredis's context; the type stays opaque to the other rooms. */
struct sb_redis {
    redisContext *c;
};

/* hiredis's context, or NULL. */
static redisContext *connect_port(int port)
{
    const struct timeval tv = {5, 0};
    redisContext *r = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!r || r->err) {
        if (r)
            redisFree(r);
        return NULL;
    }
    return r;
}

sb_redis *sb_redis_connect(int port)
{
    redisContext *c = connect_port(port);
    sb_redis *r = c ? malloc(sizeof *r) : NULL;
    if (!r) {
        if (c)
            redisFree(c);
        return NULL;
    }
    r->c = c;
    return r;
}

void sb_redis_close(sb_redis *r)
{
    if (r) {
        redisFree(r->c);
        free(r);
    }
}

int sb_redis_call(sb_redis *r, op_id op, const char *key, const void *block, size_t bytes,
                  char *err, size_t cap)
{
    redisReply *rep = op == OP_PUT ? redisCommand(r->c, "SET %s %b", key, block, bytes)
                                   : redisCommand(r->c, "GET %s", key);
    const int bad = !rep || (op == OP_PUT ? rep->type != REDIS_REPLY_STATUS
                                          : rep->type != REDIS_REPLY_STRING || rep->len != bytes);
    if (bad)
        snprintf(err, cap, "redis %s: %s", sb_op_name[op],
                 rep ? (rep->type == REDIS_REPLY_ERROR ? rep->str : "bad reply") : r->c->errstr);
    freeReplyObject(rep);
    return bad ? -1 : 0;
}

pid_t sb_redis_start(const char *redis, int port, const char *dir, const char *log)
{
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    char *const argv[] = {(char *)redis,
                          "--bind",
                          "127.0.0.1",
                          "--port",
                          p,
                          "--save",
                          "",
                          "--appendonly",
                          "no",
                          "--dir",
                          (char *)dir,
                          "--protected-mode",
                          "no",
                          NULL};
    const pid_t pid = sb_spawn(argv, log);
    for (int i = 0; i < 500; i++) {
        redisContext *r = connect_port(port);
        if (r) {
            redisReply *rep = redisCommand(r, "PING");
            const int ok = rep && rep->type == REDIS_REPLY_STATUS;
            freeReplyObject(rep);
            redisFree(r);
            if (ok)
                return pid;
        }
        const struct timespec nap = {0, 20 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    sb_die("redis-server on port %d did not answer PING (log: %s)", port, log);
}
