/*  machine-stalls - does this machine stop by itself under a given load?

    machine-stalls [--seconds S] [--spin N] [--dsync-writes PER_S]
                   [--wakeups PER_S] [--dir DIR]

    Runs N threads that only compute (--spin), one that writes 4 KiB
    blocks with O_DSYNC at PER_S a second into a 16 MiB file in DIR
    (--dsync-writes; default: none), the load a broker's journal puts on
    the machine, and one that sleeps 1/PER_S s at a time (--wakeups: a
    message crossing the bus wakes a thread at each hop), while the probe of stalls.h records every
    wake-up 2 ms or more late. Nothing of sharebus runs: stalls seen here are the
    machine's (on a virtual machine, its host holding the vCPUs), and
    bench/run reports them next to the fixed-load latency. Prints one JSON
    object: the load, the writes done, and machine_stalls. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stalls.h"
#include "stats.h"

#define S_BLOCK 4096
#define S_BLOCKS 4096 /* a 16 MiB ring */

static atomic_bool s_stop;

static void *s_spin(void *arg)
{
    volatile uint64_t x = (uint64_t) (uintptr_t) arg;
    while (!atomic_load(&s_stop))
        for (int i = 0; i < 100000; i++)
            x = x * 6364136223846793005ULL + 1;
    return NULL;
}

typedef struct {
    int fd;
    long rate;
    long done;
    int error;
} s_writer_t;

/* Sleeps 1/rate s at a time: a vCPU that goes idle and is woken by a
   timer, `rate` times a second (a message crossing the bus wakes a
   thread at each hop). */
static void *s_wake(void *arg)
{
    long rate = *(long *) arg;
    struct timespec ts = {0, 1000000000L / rate};
    while (!atomic_load(&s_stop))
        nanosleep(&ts, NULL);
    return NULL;
}

static void *s_write(void *arg)
{
    s_writer_t *w = arg;
    static char block[S_BLOCK];
    memset(block, 'j', sizeof block);
    int64_t next = bench_now_ns(), interval = 1000000000LL / w->rate;
    while (!atomic_load(&s_stop)) {
        if (pwrite(w->fd, block, sizeof block, (off_t) (w->done % S_BLOCKS) * S_BLOCK) < 0) {
            w->error = errno;
            break;
        }
        w->done++;
        next += interval;
        int64_t wait = next - bench_now_ns();
        if (wait > 0) {
            struct timespec ts = {wait / 1000000000LL, wait % 1000000000LL};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"seconds", required_argument, 0, 't'}, {"spin", required_argument, 0, 's'},
        {"dsync-writes", required_argument, 0, 'w'}, {"dir", required_argument, 0, 'd'},
        {"wakeups", required_argument, 0, 'u'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    long seconds = 5, spin = 0, rate = 0;
    long wakeups = 0;
    const char *dir = "/tmp";
    int opt, index = 0;
    while ((opt = getopt_long(argc, argv, "", options, &index)) != -1) {
        const char *name = options[index].name;
        switch (opt) {
        case 't': seconds = bench_arg_long("machine-stalls", name, optarg); break;
        case 's': spin = atol(optarg); break;
        case 'w': rate = atol(optarg); break;
        case 'd': dir = optarg; break;
        case 'u': wakeups = atol(optarg); break;
        case 'h':
            puts("usage: machine-stalls [--seconds S] [--spin N] [--dsync-writes PER_S]\n"
                 "                      [--wakeups PER_S] [--dir DIR]");
            return 0;
        default: return 2;
        }
    }
    if (spin < 0 || spin > 64 || rate < 0 || wakeups < 0 || wakeups > 1000000) {
        fprintf(stderr, "machine-stalls: --spin 0..64, --dsync-writes 0 or more, "
                        "--wakeups 0..1000000\n");
        return 2;
    }
    s_writer_t writer = {.fd = -1, .rate = rate};
    char path[4096];
    if (rate) {
        snprintf(path, sizeof path, "%s/machine-stalls.XXXXXX", dir);
        int fd = mkstemp(path);
        if (fd < 0 || ftruncate(fd, (off_t) S_BLOCK * S_BLOCKS) != 0) {
            fprintf(stderr, "machine-stalls: %s: %s\n", path, strerror(errno));
            return 1;
        }
        close(fd);
        /* Blocks written once, so that the measured writes overwrite. */
        writer.fd = open(path, O_WRONLY);
        static char zero[S_BLOCK];
        for (int i = 0; writer.fd >= 0 && i < S_BLOCKS; i++)
            if (pwrite(writer.fd, zero, sizeof zero, (off_t) i * S_BLOCK) < 0)
                break;
        if (writer.fd >= 0)
            fsync(writer.fd);
        close(writer.fd);
        writer.fd = open(path, O_WRONLY | O_DSYNC);
        unlink(path);
        if (writer.fd < 0) {
            fprintf(stderr, "machine-stalls: %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    atomic_init(&s_stop, false);
    pthread_t spinners[64], write_thread, wake_thread;
    if (wakeups)
        pthread_create(&wake_thread, NULL, s_wake, &wakeups);
    for (long i = 0; i < spin; i++)
        pthread_create(&spinners[i], NULL, s_spin, (void *) (uintptr_t) (i + 1));
    if (rate)
        pthread_create(&write_thread, NULL, s_write, &writer);
    bench_stalls_t *stalls = bench_stalls_start();
    int64_t start = bench_now_ns();
    sleep((unsigned) seconds);
    int64_t end = bench_now_ns();
    bench_stalls_stop(stalls);
    atomic_store(&s_stop, true);
    for (long i = 0; i < spin; i++)
        pthread_join(spinners[i], NULL);
    if (rate)
        pthread_join(write_thread, NULL);
    if (wakeups)
        pthread_join(wake_thread, NULL);
    if (writer.fd >= 0)
        close(writer.fd);
    if (writer.error) {
        fprintf(stderr, "machine-stalls: write: %s\n", strerror(writer.error));
        return 1;
    }
    json_object *out = json_object_new_object();
    json_object_object_add(out, "seconds", json_object_new_int64(seconds));
    json_object_object_add(out, "spinning_threads", json_object_new_int64(spin));
    json_object_object_add(out, "dsync_writes_asked_per_s", json_object_new_int64(rate));
    json_object_object_add(out, "wakeups_asked_per_s", json_object_new_int64(wakeups));
    bench_json_put(out, "dsync_writes_per_s", (double) writer.done * 1e9 / (double) (end - start));
    if (stalls)
        bench_stalls_json(stalls, out, start, end);
    puts(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
    json_object_put(out);
    bench_stalls_destroy(&stalls);
    return 0;
}
