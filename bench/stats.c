/*  stats.c - clock, latency percentiles, JSON helpers for the benchmarks. */
#include "stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct bench_stats_t {
    int64_t *samples;
    size_t count;
    size_t capacity;
    int sorted;
};

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

bench_stats_t *bench_stats_new(void)
{
    bench_stats_t *self = calloc(1, sizeof *self);
    if (!self)
        abort();
    return self;
}

void bench_stats_destroy(bench_stats_t **self_p)
{
    if (*self_p) {
        free((*self_p)->samples);
        free(*self_p);
        *self_p = NULL;
    }
}

void bench_stats_add(bench_stats_t *self, int64_t ns)
{
    if (self->count == self->capacity) {
        self->capacity = self->capacity ? self->capacity * 2 : 65536;
        self->samples = realloc(self->samples, self->capacity * sizeof *self->samples);
        if (!self->samples)
            abort();
    }
    self->samples[self->count++] = ns;
    self->sorted = 0;
}

size_t bench_stats_count(const bench_stats_t *self)
{
    return self->count;
}

static int s_compare(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

double bench_stats_percentile_ms(bench_stats_t *self, double p)
{
    if (self->count == 0)
        return 0;
    if (!self->sorted) {
        qsort(self->samples, self->count, sizeof *self->samples, s_compare);
        self->sorted = 1;
    }
    size_t rank = (size_t)ceil(p / 100.0 * (double)self->count);
    if (rank < 1)
        rank = 1;
    if (rank > self->count)
        rank = self->count;
    return (double)self->samples[rank - 1] / 1e6;
}

void bench_json_put(json_object *obj, const char *key, double value)
{
    char text[64];
    if (value == (double) (int64_t) value && value > -1e15 && value < 1e15)
        snprintf(text, sizeof text, "%.0f", value);   /* counts stay counts, not 1e+06 */
    else
        snprintf(text, sizeof text, "%.4g", value);
    json_object_object_add(obj, key, json_object_new_double_s(value, text));
}

json_object *bench_closed_loop_json(long size, long request_size, long inflight, long seconds,
                                    uint64_t lost, uint64_t answered, bench_stats_t *stats)
{
    json_object *out = json_object_new_object();
    json_object_object_add(out, "size", json_object_new_int64(size));
    json_object_object_add(out, "request_size", json_object_new_int64(request_size));
    json_object_object_add(out, "inflight", json_object_new_int64(inflight));
    json_object_object_add(out, "seconds", json_object_new_int64(seconds));
    json_object_object_add(out, "lost", json_object_new_int64((int64_t) lost));
    bench_json_put(out, "round_trips_per_s", (double) answered / (double) seconds);
    bench_stats_json(stats, out);
    return out;
}

void bench_stats_json(bench_stats_t *self, json_object *obj)
{
    double sum = 0;
    for (size_t i = 0; i < self->count; i++)
        sum += (double)self->samples[i];
    json_object_object_add(obj, "samples", json_object_new_int64((int64_t)self->count));
    bench_json_put(obj, "mean_ms", self->count ? sum / (double)self->count / 1e6 : 0);
    bench_json_put(obj, "p50_ms", bench_stats_percentile_ms(self, 50));
    bench_json_put(obj, "p90_ms", bench_stats_percentile_ms(self, 90));
    bench_json_put(obj, "p99_ms", bench_stats_percentile_ms(self, 99));
    bench_json_put(obj, "p999_ms", bench_stats_percentile_ms(self, 99.9));
    bench_json_put(obj, "max_ms", bench_stats_percentile_ms(self, 100));
}

long bench_arg_long(const char *program, const char *option, const char *value)
{
    char *end;
    long n = strtol(value, &end, 10);
    if (!*value || *end || n <= 0) {
        fprintf(stderr, "%s: --%s needs a positive number, not '%s'\n", program, option, value);
        exit(2);
    }
    return n;
}
