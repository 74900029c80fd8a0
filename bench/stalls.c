/*  stalls.c - the machine-stall probe of stalls.h. */
#include "stalls.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "stats.h"

#define S_TICK_NS 1000000LL  /* the probe's sleep */
#define S_LATE_NS 2000000LL  /* a wake-up this late is a stall */

typedef struct {
    int64_t from, to;
} s_stall_t;

struct bench_stalls_t {
    pthread_t thread;
    atomic_bool stop;
    bool fifo;                 /* it ran at SCHED_FIFO */
    s_stall_t *stalls;
    size_t count, room;
};

static void s_add(bench_stalls_t *self, int64_t from, int64_t to)
{
    if (self->count == self->room) {
        self->room = self->room ? self->room * 2 : 256;
        self->stalls = realloc(self->stalls, self->room * sizeof *self->stalls);
        if (!self->stalls)
            abort();
    }
    self->stalls[self->count++] = (s_stall_t) {from, to};
}

static void *s_probe(void *arg)
{
    bench_stalls_t *self = arg;
    struct sched_param param = {.sched_priority = sched_get_priority_min(SCHED_FIFO)};
    self->fifo = pthread_setschedparam(pthread_self(), SCHED_FIFO, &param) == 0;
    while (!atomic_load(&self->stop)) {
        int64_t asked = bench_now_ns() + S_TICK_NS;
        struct timespec at = {asked / 1000000000LL, asked % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR)
            ;
        int64_t woke = bench_now_ns();
        if (woke - asked >= S_LATE_NS)
            s_add(self, asked, woke);
    }
    return NULL;
}

bench_stalls_t *bench_stalls_start(void)
{
    bench_stalls_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    atomic_init(&self->stop, false);
    if (pthread_create(&self->thread, NULL, s_probe, self) != 0) {
        free(self);
        return NULL;
    }
    return self;
}

void bench_stalls_stop(bench_stalls_t *self)
{
    if (self && !atomic_exchange(&self->stop, true))
        pthread_join(self->thread, NULL);
}

void bench_stalls_destroy(bench_stalls_t **self_p)
{
    bench_stalls_t *self = *self_p;
    if (!self)
        return;
    bench_stalls_stop(self);
    free(self->stalls);
    free(self);
    *self_p = NULL;
}

bool bench_stalls_overlap(const bench_stalls_t *self, int64_t from_ns, int64_t to_ns)
{
    /* Stalls are in time order: find the first that ends after from_ns. */
    size_t lo = 0, hi = self->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (self->stalls[mid].to < from_ns)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < self->count && self->stalls[lo].from <= to_ns;
}

void bench_stalls_json(const bench_stalls_t *self, json_object *obj, int64_t from_ns,
                       int64_t to_ns)
{
    long count = 0;
    int64_t total = 0, longest = 0;
    for (size_t i = 0; i < self->count; i++) {
        const s_stall_t *s = &self->stalls[i];
        if (s->to <= from_ns || s->from >= to_ns)
            continue;
        int64_t length = s->to - s->from;
        count++;
        total += length;
        if (length > longest)
            longest = length;
    }
    json_object *out = json_object_new_object();
    json_object_object_add(out, "probe",
                           json_object_new_string(self->fifo ? "SCHED_FIFO" : "normal"));
    json_object_object_add(out, "count", json_object_new_int64(count));
    bench_json_put(out, "stalled_ms", (double) total / 1e6);
    bench_json_put(out, "longest_ms", (double) longest / 1e6);
    bench_json_put(out, "fraction", to_ns > from_ns ? (double) total / (double) (to_ns - from_ns) : 0);
    json_object_object_add(obj, "machine_stalls", out);
}
