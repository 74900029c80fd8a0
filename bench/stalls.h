/*  stalls.h - how long the machine itself stopped while a benchmark ran.

    A probe thread asks to sleep 1 ms at a time, at real-time priority
    (SCHED_FIFO) when the process may have it, so that no thread of the
    benchmark delays its wake-ups; a wake-up 2 ms or more later than asked
    is a stall of the whole machine (a virtual machine's vCPUs held by
    its host, a long interrupt), not of the code measured. At normal
    priority (no permission), a stall can also be a wait for a core.

    Open-loop benchmarks use it to say which of their slowest requests
    overlapped such a stall (bench/requester --rate). Never linked into
    sharebus. */
#ifndef BENCH_STALLS_H_INCLUDED
#define BENCH_STALLS_H_INCLUDED

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct bench_stalls_t bench_stalls_t;

/* Starts the probe; NULL when no thread can be started. */
bench_stalls_t *bench_stalls_start(void);

/* Stops the probe; what it recorded stays readable. */
void bench_stalls_stop(bench_stalls_t *self);

/* Frees the probe (stopping it first) and sets *self_p to NULL. */
void bench_stalls_destroy(bench_stalls_t **self_p);

/* True when a stall overlaps [from_ns, to_ns] (bench_now_ns clock).
   Only after bench_stalls_stop. */
bool bench_stalls_overlap(const bench_stalls_t *self, int64_t from_ns, int64_t to_ns);

/* Adds "machine_stalls" to `obj`: the probe's priority ("SCHED_FIFO" or
   "normal"), and within [from_ns, to_ns) the number of stalls, their
   total and longest in ms, and the fraction of the window they took.
   Only after bench_stalls_stop. */
void bench_stalls_json(const bench_stalls_t *self, json_object *obj, int64_t from_ns,
                       int64_t to_ns);

#endif
