/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stack.c - the tiers of latticekvd stacked (lkv_stack.h).
 *
 * Design note. Every operation that touches more than the host tier is one
 * `op` that owns an inner lkv_tier_req per lower tier and finishes the
 * caller's request when the last of them is done. The host tier completes
 * synchronously, so the only asynchronous parts are SSD I/O and Redis
 * round trips. Write-back feeds the SSD tier from the host tier's evict hook
 * (the hook gets the block's bytes); a Put first drops an older SSD copy of
 * the key, so a failed demotion can never resurrect stale bytes.
 *
 * The GPU tier (lkv_stack_set_gpu), when there is one, sits above host and
 * is exclusive with it: a block is resident in one of the two. Puts and
 * promotions go to the GPU tier and drop the host copy; the GPU tier's
 * evictions go down into host (which may cascade into the SSD tier under
 * write-back); a block the GPU tier refuses (larger than it, no room) goes
 * to host as before. Exclusive, because a device copy and a host copy of
 * the same bytes would charge both memories for one block.
 */
#include <stdlib.h>
#include <string.h>

#include "lkv_stack.h"

struct lkv_stack {
    lkv_tier *tier[LKV_STACK_TIERS_MAX]; /* gpu?, host, then the optional ones, top down */
    size_t n;
    lkv_tier *gpu, *host, *ssd, *redis;
    lkv_tier_policy policy;
    uint64_t writes;  /* Puts and Deletes sent below host so far */
    unsigned closing; /* tiers still closing */
    void (*closed)(void *ud);
    void *closed_ud;
};

/* One stack operation; sub[i] goes to tier[i] (put/del) or is reused (get). */
typedef struct op {
    lkv_stack *s;
    lkv_tier_req *req; /* the caller's; NULL for a demotion */
    lkv_tier_req sub[3];
    unsigned pending;
    size_t next;      /* get: the next tier to ask */
    lkv_tier_req err; /* get: the first damaged-copy failure */
    uint8_t *name;    /* demotion: its own copy of ns + key */
    uint64_t writes;  /* get: the stack's writes when it started */
} op;

static op *op_new(lkv_stack *s, lkv_tier_req *req)
{
    op *o = calloc(1, sizeof *o);
    if (o) {
        o->s = s;
        o->req = req;
    }
    return o;
}

static void fail_now(lkv_tier_req *req, lkv_status st, const char *what)
{
    lkv_tier_done(req, lkv_diag_fail(&req->diag, st, "tier stack: out of memory for a %s", what));
}

static void sub_init(op *o, lkv_tier_req *sub, const lkv_tier_req *like,
                     void (*done)(lkv_tier_req *))
{
    memset(sub, 0, sizeof *sub);
    sub->ns = like->ns;
    sub->ns_len = like->ns_len;
    sub->key = like->key;
    sub->key_len = like->key_len;
    sub->blob = like->blob;
    sub->done = done;
    sub->ud = o;
}

/* ---- put ---------------------------------------------------------------- */

static void put_sub_done(lkv_tier_req *sub)
{
    op *o = sub->ud;
    lkv_tier_req *req = o->req;
    /* The SSD's failure fails the put; Redis' is counted in its own tier. */
    if (sub->status != LKV_OK && sub->tier == o->s->ssd && req->status == LKV_OK) {
        req->status = sub->status;
        req->diag = sub->diag;
    }
    if (--o->pending)
        return;
    free(o);
    req->done(req);
}

static void ignore_done(lkv_tier_req *sub)
{
    free(sub->ud);
}

void lkv_stack_put_below(lkv_stack *s, lkv_tier_req *req)
{
    memset(&req->diag, 0, sizeof req->diag);
    req->status = lkv_tier_host_admit(s->host, req->ns, req->ns_len, req->key, req->key_len,
                                      req->blob->len, &req->diag);
    if (req->status != LKV_OK || s->n == 1) {
        req->done(req);
        return;
    }
    op *o = op_new(s, req);
    if (!o) {
        fail_now(req, LKV_ERR_NOMEM, "put");
        return;
    }
    s->writes++;
    lkv_tier *to[2];
    unsigned n = 0;
    if (s->ssd && s->policy == LKV_TIER_WRITE_THROUGH)
        to[n++] = s->ssd;
    if (s->redis)
        to[n++] = s->redis;
    if (s->ssd && s->policy == LKV_TIER_WRITE_BACK &&
        s->ssd->contains(s->ssd, req->ns, req->ns_len, req->key, req->key_len) ==
            LKV_TIER_PRESENT) {
        /* The host tier will hold the newer value; its demotion replaces
         * this copy, and if that fails the old one must not come back. */
        op *d = op_new(s, NULL);
        if (d) {
            sub_init(d, &d->sub[0], req, ignore_done);
            lkv_tier_del(s->ssd, &d->sub[0]);
        }
    }
    if (n == 0) {
        free(o);
        req->done(req);
        return;
    }
    o->pending = n + 1; /* + 1 until every sub is submitted */
    for (unsigned i = 0; i < n; i++) {
        sub_init(o, &o->sub[i], req, put_sub_done);
        lkv_tier_put(to[i], &o->sub[i]);
    }
    lkv_tier_req last = {.ud = o, .status = LKV_OK};
    put_sub_done(&last);
}

lkv_status lkv_stack_put_host(lkv_stack *s, const char *ns, size_t ns_len, const uint8_t *key,
                              size_t key_len, lkv_blob *blob, lkv_diag *diag)
{
    lkv_tier_req r = {.ns = ns, .ns_len = ns_len, .key = key, .key_len = key_len, .blob = blob};
    r.done = ignore_done; /* synchronous: nothing to free (ud is NULL) */
    if (s->gpu) {
        lkv_tier_put(s->gpu, &r);
        if (r.status == LKV_OK) {
            lkv_tier_req d = r;
            lkv_tier_del(s->host, &d); /* exclusive: the host copy is now stale or a twin */
            if (diag)
                *diag = r.diag;
            return LKV_OK;
        }
        /* Refused by the GPU tier (too large, no room, a device error):
         * host memory holds it instead, and an older GPU copy of the key
         * must go, or Gets would keep finding it first. */
        r = (lkv_tier_req){
            .ns = ns, .ns_len = ns_len, .key = key, .key_len = key_len, .done = ignore_done};
        lkv_tier_del(s->gpu, &r);
        r.blob = blob;
    }
    lkv_tier_put(s->host, &r);
    if (diag)
        *diag = r.diag;
    return r.status;
}

static void demote_done(lkv_tier_req *sub)
{
    op *o = sub->ud;
    free(o->name);
    free(o);
}

/* A copy of the block into the SSD tier that nobody waits for (its
 * failures are counted there); the op holds its own ns + key. */
static void ssd_copy(lkv_stack *s, const char *ns, size_t ns_len, const uint8_t *key,
                     size_t key_len, lkv_blob *blob)
{
    op *o = op_new(s, NULL);
    uint8_t *name = o ? malloc(ns_len + key_len + 1) : NULL;
    if (!name) {
        free(o); /* lost from the daemon, like an eviction without a tier below */
        return;
    }
    memcpy(name, ns, ns_len);
    memcpy(name + ns_len, key, key_len);
    o->name = name;
    const lkv_tier_req like = {.ns = (const char *)name,
                               .ns_len = ns_len,
                               .key = name + ns_len,
                               .key_len = key_len,
                               .blob = blob};
    sub_init(o, &o->sub[0], &like, demote_done);
    lkv_tier_put(s->ssd, &o->sub[0]);
}

/* A block the GPU tier evicts goes down into host memory (blob is NULL
 * when its copy to the host failed: it is lost, and counted there). */
static void gpu_demote(lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *key,
                       size_t key_len, lkv_blob *blob, void *ud)
{
    (void)t;
    lkv_stack *s = ud;
    if (!blob)
        return;
    lkv_tier_req r = {.ns = ns, .ns_len = ns_len, .key = key, .key_len = key_len, .blob = blob};
    r.done = ignore_done;
    lkv_tier_put(s->host, &r);
}

/* Write-back: a block the host tier evicts goes down to the SSD tier. */
static void demote(lkv_tier *t, const char *ns, size_t ns_len, const uint8_t *key, size_t key_len,
                   lkv_blob *blob, void *ud)
{
    (void)t;
    ssd_copy(ud, ns, ns_len, key, key_len, blob);
}

/* ---- get ---------------------------------------------------------------- */

static int damaged(lkv_status st)
{
    return st == LKV_ERR_CHECKSUM || st == LKV_ERR_CORRUPT || st == LKV_ERR_TRUNCATED ||
           st == LKV_ERR_MAGIC || st == LKV_ERR_VERSION;
}

static void get_next(op *o);

static void get_sub_done(lkv_tier_req *sub)
{
    op *o = sub->ud;
    lkv_tier_req *req = o->req;
    if (sub->status == LKV_OK && sub->found) {
        /* Promotion: the same blob goes into the top tier, GPU or host (a
         * refusal, e.g. the namespace's quota, only means it stays below). */
        if (sub->tier != o->s->tier[0])
            lkv_stack_put_host(o->s, req->ns, req->ns_len, req->key, req->key_len, sub->blob, NULL);
        /*
         * A Redis hit goes into the SSD tier too (write-through; under
         * write-back the host tier's demotion takes it there), so a restart
         * or a host eviction does not cross the network for it again. Not
         * when a Put or Delete went below host since this Get started: the
         * SSD tier runs a key's writes in the order they are sent, so this
         * copy, sent last, would put back bytes older than that write's.
         * Any key's write counts: cheap, and only costs a promotion.
         */
        if (sub->tier == o->s->redis && o->s->ssd && o->s->policy == LKV_TIER_WRITE_THROUGH &&
            o->s->writes == o->writes)
            ssd_copy(o->s, req->ns, req->ns_len, req->key, req->key_len, sub->blob);
        req->status = LKV_OK;
        req->found = 1;
        req->blob = sub->blob;
        req->tier = sub->tier;
        free(o);
        req->done(req);
        return;
    }
    if (damaged(sub->status) && o->err.status == LKV_OK)
        o->err = *sub;
    get_next(o);
}

static void get_next(op *o)
{
    lkv_tier_req *req = o->req;
    if (o->next == o->s->n) {
        req->status = o->err.status;
        req->diag = o->err.diag;
        req->found = 0;
        req->tier = o->err.status == LKV_OK ? NULL : o->err.tier;
        free(o);
        req->done(req);
        return;
    }
    lkv_tier *t = o->s->tier[o->next++];
    sub_init(o, &o->sub[0], req, get_sub_done);
    lkv_tier_get(t, &o->sub[0]);
}

void lkv_stack_get(lkv_stack *s, lkv_tier_req *req)
{
    op *o = op_new(s, req);
    if (!o) {
        fail_now(req, LKV_ERR_NOMEM, "get");
        return;
    }
    req->blob = NULL;
    o->writes = s->writes;
    get_next(o);
}

/* ---- delete ------------------------------------------------------------- */

static void del_sub_done(lkv_tier_req *sub)
{
    op *o = sub->ud;
    lkv_tier_req *req = o->req;
    if (sub->status == LKV_OK)
        req->found |= sub->found;
    else if (req->status == LKV_OK) {
        req->status = sub->status;
        req->diag = sub->diag;
    }
    if (--o->pending)
        return;
    free(o);
    req->done(req);
}

void lkv_stack_del(lkv_stack *s, lkv_tier_req *req)
{
    op *o = op_new(s, req);
    if (!o) {
        fail_now(req, LKV_ERR_NOMEM, "delete");
        return;
    }
    req->status = LKV_OK;
    req->found = 0;
    memset(&req->diag, 0, sizeof req->diag);
    s->writes++;
    o->pending = (unsigned)s->n + 1; /* + 1 until every sub is submitted */
    for (size_t i = 0; i < s->n; i++) {
        sub_init(o, &o->sub[i], req, del_sub_done);
        lkv_tier_del(s->tier[i], &o->sub[i]);
    }
    lkv_tier_req last = {.ud = o, .status = LKV_OK};
    del_sub_done(&last);
}

int lkv_stack_contains(const lkv_stack *s, const char *ns, size_t ns_len, const uint8_t *key,
                       size_t key_len)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->tier[i] != s->redis &&
            s->tier[i]->contains(s->tier[i], ns, ns_len, key, key_len) == LKV_TIER_PRESENT)
            return 1;
    return 0;
}

int lkv_stack_flushed(const lkv_stack *s)
{
    if (!s->redis)
        return 1;
    lkv_redis_stats rs;
    lkv_tier_redis_stats(s->redis, &rs);
    return rs.queued_blocks == 0 || rs.nodes_up == 0;
}

size_t lkv_stack_tiers(const lkv_stack *s, const lkv_tier *out[LKV_STACK_TIERS_MAX])
{
    for (size_t i = 0; i < s->n; i++)
        out[i] = s->tier[i];
    return s->n;
}

const char *lkv_stack_link(const lkv_stack *s, const lkv_tier *t)
{
    if (!t || t != s->redis)
        return "";
    lkv_redis_stats rs;
    lkv_tier_redis_stats(t, &rs);
    return lkv_redis_link_name(rs.link);
}

/* ---- life --------------------------------------------------------------- */

lkv_stack *lkv_stack_create(lkv_tier *host, lkv_tier *ssd, lkv_tier *redis, lkv_tier_policy policy)
{
    lkv_stack *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->tier[s->n++] = host;
    s->host = host;
    if (ssd)
        s->tier[s->n++] = ssd;
    if (redis)
        s->tier[s->n++] = redis;
    s->ssd = ssd;
    s->redis = redis;
    s->policy = policy;
    if (ssd && policy == LKV_TIER_WRITE_BACK)
        host->set_evict_hook(host, demote, s);
    return s;
}

static void tier_closed(void *ud)
{
    lkv_stack *s = ud;
    if (--s->closing)
        return;
    void (*closed)(void *) = s->closed;
    void *cud = s->closed_ud;
    free(s);
    if (closed)
        closed(cud);
}

void lkv_stack_close(lkv_stack *s, void (*closed)(void *ud), void *ud)
{
    s->closed = closed;
    s->closed_ud = ud;
    s->closing = (unsigned)s->n + 1;
    s->host->set_evict_hook(s->host, NULL, NULL);
    if (s->gpu)
        s->gpu->set_evict_hook(s->gpu, NULL, NULL);
    for (size_t i = 0; i < s->n; i++)
        s->tier[i]->close(s->tier[i], tier_closed, s);
    tier_closed(s);
}

void lkv_stack_set_gpu(lkv_stack *s, lkv_tier *gpu)
{
    memmove(&s->tier[1], &s->tier[0], s->n * sizeof s->tier[0]);
    s->tier[0] = gpu;
    s->n++;
    s->gpu = gpu;
    gpu->set_evict_hook(gpu, gpu_demote, s);
}

lkv_tier *lkv_stack_gpu(const lkv_stack *s)
{
    return s->gpu;
}
