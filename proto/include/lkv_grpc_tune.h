/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lkv_grpc_tune.h - process-wide gRPC settings shared by latticekvd,
 * lkv_client and the service benchmark (internal; not part of any public
 * API).
 *
 * Debian's abseil is built without NDEBUG, so every absl::Mutex that gRPC C
 * core takes runs abseil's debug deadlock detector (a lock graph with a stack
 * trace per acquisition). Upstream release builds leave it off. Turning it off
 * measured about 10% less CPU per call on both sides of a 64 KiB unary call
 * (bench/service, 64 clients). The setter is C++, so it is looked up by its
 * mangled names (Debian's and upstream's inline namespace); if none is
 * found, nothing changes. Idempotent and safe at any time: it only stops
 * further checks.
 */
#ifndef LKV_GRPC_TUNE_H
#define LKV_GRPC_TUNE_H

#include <dlfcn.h>
#include <grpc/grpc.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Keepalive pings. Clients (lkv_client, the CLI, the Python package) ping
 * while calls are in flight so that a daemon which stops answering is
 * noticed; gRPC servers by default treat more than one ping per 5 minutes
 * without data as abuse and close the connection ("too_many_pings"), which
 * would turn that probe into failed calls. latticekvd accepts one ping per
 * this many milliseconds, with or without calls in flight; clients never
 * ping more often than twice this.
 */
#define LKV_GRPC_MIN_PING_INTERVAL_MS 1000

/* One integer channel argument, for the grpc_arg arrays each end builds. */
static inline grpc_arg lkv_grpc_int_arg(const char *key, int value)
{
    grpc_arg a = {.type = GRPC_ARG_INTEGER, .key = (char *)key};
    a.value.integer = value;
    return a;
}

static inline void lkv_grpc_quiet_absl_deadlock_detection(void)
{
    static const char *const names[] = {
        "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
        "_ZN4absl12lts_2022062329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
        "_ZN4absl29SetMutexDeadlockDetectionModeENS_15OnDeadlockCycleE",
    };
    void *self = dlopen(NULL, RTLD_LAZY); /* the program and the libraries it loaded */
    if (!self)
        return;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *sym = dlsym(self, names[i]);
        if (sym) {
            /* ISO C has no cast from an object pointer to a function
             * pointer; the detour through uintptr_t is the portable one. */
            // NOLINTNEXTLINE(performance-no-int-to-ptr)
            void (*set_mode)(int) = (void (*)(int))(uintptr_t)sym;
            set_mode(0); /* absl::OnDeadlockCycle::kIgnore */
            break;
        }
    }
    dlclose(self);
}

#endif /* LKV_GRPC_TUNE_H */
