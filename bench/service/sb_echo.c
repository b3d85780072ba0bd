/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sb_echo.c - the gRPC yardsticks of service_bench: a minimal gRPC C-core
 * server (this program started as a separate process with --echo-server
 * PORT, so that its CPU is measured apart from the clients' and its gRPC
 * runs with latticekvd's defaults) and the blocking client calls.
 *   grpc-echo  returns each raw bf16 message as is;
 *   grpc-raw   answers Put-shaped calls (the block in, an empty reply) and
 *              Get-shaped calls (4 bytes in, the block out from a static
 *              buffer): what gRPC alone costs for the calls latticekv
 *              serves, its ceiling with no codec, no store, no hand-offs.
 */
#include "service_bench.h"

#include "lkv_grpc_tune.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { ECHO_NEW, ECHO_READ, ECHO_DONE } echo_state;

typedef struct echo_call {
    echo_state state;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *msg;
    int cancelled;
} echo_call;

/* What grpc-raw's Get-shaped calls send back. */
static uint8_t raw_block[1 << 20];

typedef struct echo_server {
    grpc_server *server;
    grpc_completion_queue *cq;
    pthread_t threads[2];
    int port;
    int shutdown_tag;
} echo_server;

static void echo_post(echo_server *s)
{
    echo_call *ec = calloc(1, sizeof *ec);
    if (!ec)
        sb_die("out of memory");
    grpc_call_details_init(&ec->details);
    grpc_metadata_array_init(&ec->md);
    if (grpc_server_request_call(s->server, &ec->call, &ec->details, &ec->md, s->cq, s->cq, ec) !=
        GRPC_CALL_OK)
        sb_die("grpc_server_request_call failed");
}

static void echo_free(echo_call *ec)
{
    if (ec->msg)
        grpc_byte_buffer_destroy(ec->msg);
    if (ec->call)
        grpc_call_unref(ec->call);
    grpc_call_details_destroy(&ec->details);
    grpc_metadata_array_destroy(&ec->md);
    free(ec);
}

/* One step of a call's state machine: NEW -> READ -> DONE. */
static void echo_step(echo_server *s, echo_call *ec, int success)
{
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    switch (ec->state) {
    case ECHO_NEW:
        if (!success) { /* shutting down: the request was never matched */
            echo_free(ec);
            return;
        }
        echo_post(s);
        ec->state = ECHO_READ;
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[1].op = GRPC_OP_RECV_MESSAGE;
        ops[1].data.recv_message.recv_message = &ec->msg;
        if (grpc_call_start_batch(ec->call, ops, 2, ec, NULL) != GRPC_CALL_OK)
            echo_free(ec);
        return;
    case ECHO_READ: {
        if (!success) {
            echo_free(ec);
            return;
        }
        ec->state = ECHO_DONE;
        size_t n = 0;
        if (ec->msg && grpc_slice_str_cmp(ec->details.method, "/bench.Echo/Echo") != 0) {
            /* grpc-raw: a Put-shaped call gets an empty reply, a Get-shaped one
             * the number of bytes its 4-byte request asks for (no copy). */
            uint32_t want = 0;
            if (grpc_slice_str_cmp(ec->details.method, "/bench.Raw/Get") == 0) {
                grpc_byte_buffer_reader rd;
                if (grpc_byte_buffer_reader_init(&rd, ec->msg)) {
                    grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
                    if (GRPC_SLICE_LENGTH(all) == sizeof want)
                        memcpy(&want, GRPC_SLICE_START_PTR(all), sizeof want);
                    grpc_slice_unref(all);
                    grpc_byte_buffer_reader_destroy(&rd);
                }
                if (want > sizeof raw_block)
                    want = 0;
            }
            grpc_byte_buffer_destroy(ec->msg);
            grpc_slice sl = grpc_slice_from_static_buffer(raw_block, want);
            ec->msg = grpc_raw_byte_buffer_create(&sl, 1);
        }
        if (ec->msg) {
            ops[n].op = GRPC_OP_SEND_MESSAGE;
            ops[n++].data.send_message.send_message = ec->msg;
        }
        ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        ops[n].data.send_status_from_server.status = GRPC_STATUS_OK;
        ops[n++].data.send_status_from_server.trailing_metadata_count = 0;
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n++].data.recv_close_on_server.cancelled = &ec->cancelled;
        if (grpc_call_start_batch(ec->call, ops, n, ec, NULL) != GRPC_CALL_OK)
            echo_free(ec);
        return;
    }
    case ECHO_DONE: echo_free(ec); return;
    }
}

static void *echo_loop(void *arg)
{
    echo_server *s = arg;
    for (;;) {
        const grpc_event ev =
            grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            return NULL;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        if (ev.tag == &s->shutdown_tag) {
            grpc_completion_queue_shutdown(s->cq);
            continue;
        }
        echo_step(s, ev.tag, ev.success);
    }
}

static void echo_start(echo_server *s, int port)
{
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    grpc_arg args[2];
    args[0].type = args[1].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[0].value.integer = args[1].value.integer = MAX_MSG;
    const grpc_channel_args ca = {2, args};
    s->server = grpc_server_create(&ca, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    s->port = grpc_server_add_http2_port(s->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (s->port <= 0)
        sb_die("echo server: cannot bind %s", addr);
    grpc_server_start(s->server);
    /* Enough pending accepts for 64 clients arriving at once. */
    for (int i = 0; i < 96; i++)
        echo_post(s);
    for (int i = 0; i < 2; i++)
        pthread_create(&s->threads[i], NULL, echo_loop, s);
}

static void echo_stop(echo_server *s)
{
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
    grpc_server_cancel_all_calls(s->server);
    for (int i = 0; i < 2; i++)
        pthread_join(s->threads[i], NULL);
    grpc_server_destroy(s->server);
    grpc_completion_queue_destroy(s->cq);
}

/* The echo / raw server as a process of its own (this program started with
 * --echo-server PORT), so that its CPU is measured apart from the clients'
 * and its gRPC runs with the same defaults as latticekvd's. */
int sb_echo_server_main(int port)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread started later inherits it */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    lkv_grpc_quiet_absl_deadlock_detection();
    grpc_init();
    echo_server s = {0};
    echo_start(&s, port);
    int sig = 0;
    sigwait(&set, &sig);
    echo_stop(&s);
    grpc_shutdown();
    return 0;
}

/* A client's channel and its three registered methods (echo_mode). */
struct sb_echo_client {
    grpc_channel *ch;
    void *method[3];
};

sb_echo_client *sb_echo_client_open(int port)
{
    sb_echo_client *ec = calloc(1, sizeof *ec);
    if (!ec)
        return NULL;
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    grpc_arg args[3];
    args[0].type = args[1].type = args[2].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[2].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[0].value.integer = args[1].value.integer = MAX_MSG;
    args[2].value.integer = 1;
    const grpc_channel_args ca = {3, args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    ec->ch = grpc_channel_create(target, creds, &ca);
    grpc_channel_credentials_release(creds);
    static const char *const paths[3] = {"/bench.Echo/Echo", "/bench.Raw/Put", "/bench.Raw/Get"};
    for (int m = 0; m < 3; m++)
        ec->method[m] = grpc_channel_register_call(ec->ch, paths[m], NULL, NULL);
    if (!ec->ch) {
        free(ec);
        return NULL;
    }
    return ec;
}

void sb_echo_client_close(sb_echo_client *ec)
{
    if (ec) {
        grpc_channel_destroy(ec->ch);
        free(ec);
    }
}

int sb_echo_client_call(sb_echo_client *ec, echo_mode mode, const void *data, size_t len, char *err,
                        size_t cap)
{
    const uint32_t want = (uint32_t)len;
    grpc_slice out = mode == MODE_RAW_GET ? grpc_slice_from_copied_buffer((const char *)&want, 4)
                                          : grpc_slice_from_copied_buffer(data, len);
    const size_t expect = mode == MODE_RAW_PUT ? 0 : len;
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&out, 1);
    grpc_slice_unref(out);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_call *call = grpc_channel_create_registered_call(
        ec->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, ec->method[mode],
        gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    grpc_metadata_array im, tm;
    grpc_metadata_array_init(&im);
    grpc_metadata_array_init(&tm);
    grpc_byte_buffer *recv = NULL;
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    /* A connection attempt that fails while 64 clients connect at once is
     * retried instead of failing the cell. */
    ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &im;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &tm;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    int rc = -1;
    snprintf(err, cap, "echo: grpc_call_start_batch failed");
    if (grpc_call_start_batch(call, ops, 6, ops, NULL) == GRPC_CALL_OK) {
        const grpc_event ev =
            grpc_completion_queue_pluck(cq, ops, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE || status != GRPC_STATUS_OK || !recv) {
            char *d = grpc_slice_to_c_string(details);
            snprintf(err, cap, "echo: event %d, status %d (%s)%s", (int)ev.type, (int)status, d,
                     recv ? "" : ", no message");
            gpr_free(d);
        } else {
            /* Read the echo into one buffer, as a real consumer would. */
            grpc_byte_buffer_reader rd;
            if (grpc_byte_buffer_reader_init(&rd, recv)) {
                grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
                rc = GRPC_SLICE_LENGTH(all) == expect ? 0 : -1;
                if (rc)
                    snprintf(err, cap, "echo: %zu bytes back, want %zu", GRPC_SLICE_LENGTH(all),
                             expect);
                grpc_slice_unref(all);
                grpc_byte_buffer_reader_destroy(&rd);
            }
        }
    }
    if (recv)
        grpc_byte_buffer_destroy(recv);
    grpc_byte_buffer_destroy(send);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&im);
    grpc_metadata_array_destroy(&tm);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
    return rc;
}
