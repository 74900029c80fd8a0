/*  stats.h - what every benchmark program shares: a monotonic clock, a
    latency recorder with percentiles, and its JSON form.

    Benchmarks print one JSON object on stdout; bench/report assembles
    them into bench/results/latest.json. Never linked into sharebus. */
#ifndef BENCH_STATS_H_INCLUDED
#define BENCH_STATS_H_INCLUDED

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t bench_now_ns(void);

/* A set of latency samples, in nanoseconds. */
typedef struct bench_stats_t bench_stats_t;

/* An empty set; aborts when out of memory (a benchmark has no better plan). */
bench_stats_t *bench_stats_new(void);

/* Frees the set and sets *self_p to NULL; safe twice. */
void bench_stats_destroy(bench_stats_t **self_p);

/* Adds one sample. */
void bench_stats_add(bench_stats_t *self, int64_t ns);

/* Number of samples. */
size_t bench_stats_count(const bench_stats_t *self);

/* The `p`-th percentile (0 < p <= 100) in milliseconds, nearest rank;
   0 when the set is empty. */
double bench_stats_percentile_ms(bench_stats_t *self, double p);

/* Adds samples, mean_ms, p50_ms, p90_ms, p99_ms, p999_ms and max_ms to `obj`. */
void bench_stats_json(bench_stats_t *self, json_object *obj);

/* The result of a closed-loop request/reply run (ceiling, NATS): its
   parameters, the requests lost, the round trips/s answered inside the
   measured window and the latency statistics. */
json_object *bench_closed_loop_json(long size, long request_size, long inflight, long seconds,
                                    uint64_t lost, uint64_t answered, bench_stats_t *stats);

/* Adds a double to `obj`, rounded to 4 significant decimals for reading. */
void bench_json_put(json_object *obj, const char *key, double value);

/* Parses a positive integer option value; exits with status 2 on a bad one. */
long bench_arg_long(const char *program, const char *option, const char *value);

#endif
