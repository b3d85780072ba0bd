/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli_stream_bench.c - `latticekv codec encode|decode`, file to file, as a
 * user runs it: wall time, vectors per second and peak RSS of the whole
 * process, for the CLI under test and (with --before) an older CLI on the
 * same input in the same run.
 *
 * Design note: the input is --vectors standard-normal bf16 vectors of
 * --dim (a 2^16-vector block, tiled: the codec does not care, the page
 * cache and the disk see every byte). Each repetition runs every CLI's
 * encode then decode, interleaved, so that a burst of load from other work
 * on a shared machine falls on both; the row keeps every wall time and
 * reports the median. The output file is removed before each run (a new
 * file, as a user's first run makes), and sync(2) writes back what earlier
 * runs left dirty, so that no run shares the cores with the kernel's
 * write-back of the one before (its output still lands in the page cache,
 * as a user's does). Each CLI is a child of this small
 * process, so its ru_maxrss is its own (a child of a large process inherits
 * the parent's peak). The first repetition also checks that both CLIs
 * wrote the same bytes. With --big-gib G the CLI under test alone also
 * encodes, decodes and round-trips a G GiB input once (the bounded-memory
 * claim); the older CLI would need the whole input in memory.
 */
#define _GNU_SOURCE
#include "lkv_bench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct run_stat {
    double wall_s;
    double cpu_s; /* user + system, all threads */
    long maxrss_kb;
    int rc;
} run_stat;

/* Runs argv with stdout/stderr to /dev/null; wall time and peak RSS. */
static run_stat run(char *const *argv)
{
    run_stat r = {0, 0, 0, -1};
    const double t0 = lkv_bench_now_s();
    const pid_t pid = fork();
    if (pid < 0)
        return r;
    if (pid == 0) {
        const int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid)
        return r;
    r.wall_s = lkv_bench_now_s() - t0;
    r.maxrss_kb = ru.ru_maxrss;
    r.cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
              (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    return r;
}

static void die(const char *fmt, const char *a)
{
    fprintf(stderr, "cli_stream_bench: ");
    fprintf(stderr, fmt, a);
    fputc('\n', stderr);
    exit(1);
}

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

/* Writes n vectors of dim bf16 (a 2^16-vector block, tiled) to path. */
static void make_input(const char *path, uint64_t n, unsigned dim, uint64_t seed)
{
    const size_t block_vec = 1u << 16;
    const size_t elems = block_vec * dim;
    uint16_t *b = malloc(elems * 2);
    if (!b)
        die("out of memory for %s", path);
    lkv_bench_rng r;
    lkv_bench_rng_seed(&r, seed);
    for (size_t i = 0; i < elems; i++)
        b[i] = to_bf16((float)lkv_bench_rng_normal(&r));
    FILE *f = fopen(path, "wb");
    if (!f)
        die("cannot create %s", path);
    for (uint64_t left = n; left;) {
        const size_t v = left < block_vec ? (size_t)left : block_vec;
        if (fwrite(b, 2 * (size_t)dim, v, f) != v)
            die("cannot write %s", path);
        left -= v;
    }
    if (fclose(f) != 0)
        die("cannot write %s", path);
    free(b);
}

static int same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    static unsigned char x[1 << 16], y[1 << 16];
    while (same) {
        const size_t na = fread(x, 1, sizeof x, fa), nb = fread(y, 1, sizeof y, fb);
        same = na == nb && memcmp(x, y, na) == 0;
        if (na == 0)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

typedef struct row {
    const char *cli, *op;
    double wall[16], cpu[16];
    long rss_kb;
    double load[16];
    int n;
} row;

static const char *arg(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return def;
}

int main(int argc, char **argv)
{
    const char *cli = arg(argc, argv, "--cli", NULL);
    const char *before = arg(argc, argv, "--before", NULL);
    const char *dir = arg(argc, argv, "--dir", "/var/tmp");
    const char *machine = arg(argc, argv, "--machine", "dev-vm-2core");
    const char *json_path = arg(argc, argv, "--json", NULL);
    const uint64_t n = strtoull(arg(argc, argv, "--vectors", "1048576"), NULL, 10);
    const unsigned reps = (unsigned)strtoul(arg(argc, argv, "--reps", "3"), NULL, 10);
    const unsigned big_gib = (unsigned)strtoul(arg(argc, argv, "--big-gib", "0"), NULL, 10);
    const unsigned dim = 128;
    if (!cli || reps < 1 || reps > 16 || n == 0) {
        fputs("usage: cli_stream_bench --cli LATTICEKV [--before OLD_LATTICEKV] [--vectors N]\n"
              "                        [--reps R (1..16)] [--big-gib G] [--dir DIR]\n"
              "                        [--machine NAME] [--json FILE]\n"
              "Times `codec encode` and `codec decode` file to file (E8 Q=38, D=128, bf16).\n",
              stderr);
        return 2;
    }
    char work[4096], in[4200], coded[4200], out[4200], ref[4200];
    snprintf(work, sizeof work, "%s/lkv_cli_bench_XXXXXX", dir);
    if (!mkdtemp(work))
        die("cannot create a directory in %s", dir);
    snprintf(in, sizeof in, "%s/x.bf16", work);
    snprintf(coded, sizeof coded, "%s/x.lkv", work);
    snprintf(out, sizeof out, "%s/out", work);
    snprintf(ref, sizeof ref, "%s/ref.lkv", work);
    make_input(in, n, dim, 42);

    const char *clis[2] = {cli, before};
    const char *names[2] = {"this", "before"};
    const int ncli = before ? 2 : 1;
    row rows[4];
    memset(rows, 0, sizeof rows);
    char dims[16];
    snprintf(dims, sizeof dims, "%u", dim);
    const double load_start = lkv_bench_loadavg();
    for (unsigned rep = 0; rep < reps; rep++) {
        for (int op = 0; op < 2; op++) {
            for (int c = 0; c < ncli; c++) {
                row *rw = &rows[c * 2 + op];
                rw->cli = names[c];
                rw->op = op ? "decode" : "encode";
                char *enc[] = {(char *)clis[c],
                               "codec",
                               "encode",
                               "--variant",
                               "e8",
                               "--q",
                               "38",
                               "--dim",
                               dims,
                               "--in-dtype",
                               "bf16",
                               "--in",
                               in,
                               "--out",
                               out,
                               NULL};
                /* Decode reads the container the CLI under test wrote. */
                char *dec[] = {(char *)clis[c], "codec", "decode", "--in",
                               coded,           "--out", out,      NULL};
                unlink(out);
                sync();
                rw->load[rw->n] = lkv_bench_loadavg();
                const run_stat st = run(op ? dec : enc);
                if (st.rc != 0)
                    die("%s failed", clis[c]);
                rw->cpu[rw->n] = st.cpu_s;
                rw->wall[rw->n++] = st.wall_s;
                if (st.maxrss_kb > rw->rss_kb)
                    rw->rss_kb = st.maxrss_kb;
                if (op == 0 && rep == 0 && rename(out, c == 0 ? coded : ref) != 0)
                    die("cannot keep %s", out);
            }
        }
        if (rep == 0 && before && !same_file(coded, ref))
            die("%s", "the two CLIs wrote different containers");
    }
    const double load_end = lkv_bench_loadavg();

    printf("%-7s %-7s %9s %12s %9s %14s %10s  (median of %u; %llu vectors D=%u bf16, E8 "
           "Q=38)\n",
           "cli", "op", "wall s", "vectors/s", "cpu s", "vectors/cpu-s", "peak RSS", reps,
           (unsigned long long)n, dim);
    double med[4], med_cpu[4];
    for (int i = 0; i < ncli * 2; i++) {
        double w[16];
        memcpy(w, rows[i].wall, sizeof w);
        med[i] = lkv_bench_median(w, (size_t)rows[i].n);
        memcpy(w, rows[i].cpu, sizeof w);
        med_cpu[i] = lkv_bench_median(w, (size_t)rows[i].n);
        printf("%-7s %-7s %9.3f %12.0f %9.3f %14.0f %6.1f MiB\n", rows[i].cli, rows[i].op, med[i],
               (double)n / med[i], med_cpu[i], (double)n / med_cpu[i],
               (double)rows[i].rss_kb / 1024.0);
    }

    /* The bounded-memory claim on a big input: the CLI under test only. */
    run_stat big[3];
    uint64_t big_n = 0;
    if (big_gib) {
        unlink(out);
        unlink(ref);
        big_n = ((uint64_t)big_gib << 30) / (2u * dim);
        make_input(in, big_n, dim, 43);
        char *enc[] = {(char *)cli, "codec", "encode", "--dim", dims, "--in-dtype", "bf16",
                       "--in",      in,      "--out",  coded,   "-f", NULL};
        char *dec[] = {(char *)cli, "codec", "decode", "--in", coded, "--out", out, NULL};
        char *rt[] = {(char *)cli, "codec", "roundtrip", "--dim", dims,        "--in-dtype",
                      "bf16",      "--in",  in,          "--out", "/dev/null", NULL};
        big[0] = run(enc);
        big[1] = run(dec);
        unlink(out);
        big[2] = run(rt);
        static const char *const ops[] = {"encode", "decode", "roundtrip"};
        for (int i = 0; i < 3; i++) {
            if (big[i].rc != 0)
                die("the %s of the big input failed", ops[i]);
            printf("big     %-9s %8.3f %14.0f %8.1f MiB  (%u GiB input)\n", ops[i], big[i].wall_s,
                   (double)big_n / big[i].wall_s, (double)big[i].maxrss_kb / 1024.0, big_gib);
        }
    }
    unlink(in);
    unlink(coded);
    unlink(out);
    unlink(ref);
    rmdir(work);

    if (!json_path)
        return 0;
    FILE *f = fopen(json_path, "w");
    if (!f)
        die("cannot create %s", json_path);
    lkv_bench_cpu cpu;
    lkv_bench_cpu_probe(&cpu);
    char date[64];
    lkv_bench_utc(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ");
    lkv_json j;
    lkv_json_start(&j, f);
    lkv_json_str(&j, "benchmark", "cli_stream_bench");
    lkv_json_str(&j, "date", date);
    lkv_json_str(&j, "machine", machine);
    lkv_json_str(&j, "cpu", cpu.model);
    lkv_json_int(&j, "cores", lkv_bench_cores());
    lkv_json_str(&j, "case", "E8 Q=38, D=128, bf16 in, file to file (page cache)");
    lkv_json_uint(&j, "vectors", (unsigned long long)n);
    lkv_json_uint(&j, "reps", reps);
    lkv_json_num(&j, "load_average_at_start", "%.2f", load_start);
    lkv_json_num(&j, "load_average_at_end", "%.2f", load_end);
    lkv_json_str(&j, "units",
                 "vectors_per_s = vectors / median wall seconds of the whole process (start, "
                 "read, code, write, exit); cpu_s = its user + system seconds, all threads "
                 "(vectors_per_cpu_s does not depend on how busy the machine was); "
                 "peak_rss_mib = the process's ru_maxrss");
    lkv_json_array(&j, "results", LKV_JSON_BLOCK);
    for (int i = 0; i < ncli * 2; i++) {
        lkv_json_object(&j, NULL, LKV_JSON_INLINE);
        lkv_json_str(&j, "cli", rows[i].cli);
        lkv_json_str(&j, "op", rows[i].op);
        lkv_json_num(&j, "median_wall_s", "%.4f", med[i]);
        lkv_json_num(&j, "vectors_per_s", "%.0f", (double)n / med[i]);
        lkv_json_num(&j, "median_cpu_s", "%.4f", med_cpu[i]);
        lkv_json_num(&j, "vectors_per_cpu_s", "%.0f", (double)n / med_cpu[i]);
        lkv_json_num(&j, "peak_rss_mib", "%.1f", (double)rows[i].rss_kb / 1024.0);
        lkv_json_array(&j, "wall_s", LKV_JSON_INLINE);
        for (int k = 0; k < rows[i].n; k++)
            lkv_json_num(&j, NULL, "%.4f", rows[i].wall[k]);
        lkv_json_end(&j);
        lkv_json_array(&j, "cpu_s", LKV_JSON_INLINE);
        for (int k = 0; k < rows[i].n; k++)
            lkv_json_num(&j, NULL, "%.4f", rows[i].cpu[k]);
        lkv_json_end(&j);
        lkv_json_array(&j, "load_average", LKV_JSON_INLINE);
        for (int k = 0; k < rows[i].n; k++)
            lkv_json_num(&j, NULL, "%.2f", rows[i].load[k]);
        lkv_json_end(&j);
        lkv_json_end(&j);
    }
    lkv_json_end(&j);
    if (big_gib) {
        static const char *const ops[] = {"encode", "decode", "roundtrip"};
        lkv_json_array(&j, "big", LKV_JSON_BLOCK);
        for (int i = 0; i < 3; i++) {
            lkv_json_object(&j, NULL, LKV_JSON_INLINE);
            lkv_json_str(&j, "op", ops[i]);
            lkv_json_uint(&j, "input_gib", big_gib);
            lkv_json_uint(&j, "vectors", (unsigned long long)big_n);
            lkv_json_num(&j, "wall_s", "%.3f", big[i].wall_s);
            lkv_json_num(&j, "cpu_s", "%.3f", big[i].cpu_s);
            lkv_json_num(&j, "vectors_per_s", "%.0f", (double)big_n / big[i].wall_s);
            lkv_json_num(&j, "peak_rss_mib", "%.1f", (double)big[i].maxrss_kb / 1024.0);
            lkv_json_end(&j);
        }
        lkv_json_end(&j);
    }
    if (lkv_json_finish(&j) != 0 || fclose(f) != 0)
        die("cannot write %s", json_path);
    return 0;
}
