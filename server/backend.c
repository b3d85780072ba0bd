/* SPDX-License-Identifier: Apache-2.0 */
/*
 * backend.c - the codec backend vtable and the CPU backend.
 *
 * Design note. The server picks one backend at start (CUDA when a device is
 * present, else this one) and drives it only through lkv_backend, so the
 * batcher, the store and the RPC code never know which is running. The CPU
 * backend is the portable C codec with the best instruction-set path
 * (LKV_ISA_AUTO); parallelism comes from the worker pool, one batch per
 * worker, and the codec needs no per-thread state. A batch's segments run
 * one by one, each with its own status, so one request holding a NaN fails
 * alone and the others in the same launch still succeed. The CPU path is also
 * every other backend's fallback for parameters it does not support.
 */
#include <stdlib.h>

#include "lkv_backend.h"
#include "lkv_status.h"

/* Profile 2's variable-size payloads: one segment, the whole work. */
static void run_p2(lkv_batch *b, lkv_seg *s)
{
    if (b->op == LKV_OP_ENCODE)
        s->status = lkv_p2_encode(&b->params, b->dtype, s->src, s->n, s->dst, s->dst_cap,
                                  &s->dst_len, &s->diag);
    else
        s->status = lkv_p2_decode(&b->params, s->src, s->src_len, s->n, b->dtype, s->dst, &s->diag);
}

void lkv_backend_run_cpu(lkv_batch *b)
{
    const int p2 = lkv_profile_of(&b->params) == LKV_PROFILE_2;
    for (size_t i = 0; i < b->nseg; i++) {
        lkv_seg *s = &b->seg[i];
        if (p2)
            run_p2(b, s);
        else if (b->op == LKV_OP_ENCODE)
            s->status =
                lkv_encode(&b->params, b->dtype, s->src, s->n, s->dst, LKV_ISA_AUTO, &s->diag);
        else
            s->status =
                lkv_decode(&b->params, s->src, s->n, b->dtype, s->dst, LKV_ISA_AUTO, &s->diag);
    }
}

void lkv_backend_run(lkv_backend *be, unsigned worker, lkv_batch *b)
{
    /* Profile 2 has only the C codec; no other backend is asked. */
    if (lkv_profile_of(&b->params) == LKV_PROFILE_2 || !be->supports(be, &b->params, b->dtype)) {
        lkv_backend_run_cpu(b);
        return;
    }
    if (b->op == LKV_OP_ENCODE)
        be->encode(be, worker, b);
    else
        be->decode(be, worker, b);
}

static int cpu_supports(const lkv_backend *be, const lkv_params *p, lkv_dtype dt)
{
    (void)be;
    return lkv_params_check(p, NULL) == LKV_OK && lkv_dtype_check((int)dt, NULL) == LKV_OK;
}

static void cpu_run(lkv_backend *be, unsigned worker, lkv_batch *b)
{
    (void)be;
    (void)worker;
    lkv_backend_run_cpu(b);
}

static void cpu_free(lkv_backend *be)
{
    free(be);
}

lkv_status lkv_backend_cpu_create(unsigned workers, lkv_backend **out, lkv_diag *diag)
{
    (void)workers;
    lkv_backend *be = calloc(1, sizeof *be);
    if (!be)
        return lkv_diag_fail(diag, LKV_ERR_NOMEM, "out of memory for the CPU backend");
    be->name = "cpu";
    be->kind = LKV_BACKEND_CPU;
    be->supports = cpu_supports;
    be->encode = cpu_run;
    be->decode = cpu_run;
    be->free = cpu_free;
    *out = be;
    return LKV_OK;
}
