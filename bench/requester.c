/*  requester - the consumer back-end of the full-path benchmark: requests
    through libsharebus (sb_request_send / sb_result_recv), every request a
    real one through the consumer's agent, the broker and the provider's
    agent, recording each request's latency.

    requester --agent EP --provider ID --dataset D --purpose P
              (--subject ID | --subjects N) [--fields a,b]
              [--inflight N | --rate PER_S] [--seconds S] [--warmup S]
              [--timeout MS]

    Closed loop (--inflight N, default 16): keeps N requests outstanding and
    measures from each send. Open loop (--rate R): sends on a fixed schedule
    of R per second whatever the answers do, and measures from the
    scheduled time, so that a stall shows up in the latency instead of
    slowing the load down (no coordinated omission); a probe thread
    (stalls.h) meanwhile records when the machine itself stopped, and the
    report says how many of the slowest requests overlapped such a stall,
    and the p99 of the requests that did not. With --subjects N the
    subject of each request is drawn at random from B0000000..B(N-1), the
    subjects bench/consent-load records consents for. Prints one JSON
    object; answers other than records are counted by error name. */
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <czmq.h>

#include "sharebus.h"
#include "stalls.h"
#include "stats.h"

#define S_RING 65536 /* scheduled/sent times, indexed by ticket */
#define S_OPEN_MAX (S_RING / 2)
#define S_FIELDS_MAX 64

typedef struct {
    const char *agent;
    sb_request_t request;
    long subjects, inflight, rate, seconds, warmup;
} s_args_t;

typedef struct {
    sb_client_t *client;
    const s_args_t *args;
    int64_t sent[S_RING];
    int64_t start, end; /* the measured window */
    long outstanding, in_window, answered_total, outcomes[1 - SB_ERROR_MIN];
    bench_stats_t *stats;
    struct { int64_t sent, ns; } *answers;   /* open loop: each answer in the window */
    size_t n_answers, room;
    char subject[16];
} s_run_t;

static int s_send(s_run_t *r, int64_t when)
{
    sb_request_t req = r->args->request;
    if (r->args->subjects) {
        snprintf(r->subject, sizeof r->subject, "B%07u", (unsigned)(random() % r->args->subjects));
        req.subject = r->subject;
    }
    uint64_t ticket;
    int rc = sb_request_send(r->client, &req, &ticket);
    if (rc != SB_OK)
        return rc;
    r->sent[ticket % S_RING] = when;
    r->outstanding++;
    return SB_OK;
}

/* One answer: counts its outcome and, inside the window, its latency. */
static void s_answer(s_run_t *r, sb_result_t *result)
{
    int64_t now = bench_now_ns();
    r->outstanding--;
    r->answered_total++;
    if (now >= r->start && now < r->end) {
        r->in_window++;
        r->outcomes[-result->code]++;
        int64_t sent = r->sent[result->ticket % S_RING];
        if (result->code == SB_OK)
            bench_stats_add(r->stats, now - sent);
        if (result->code == SB_OK && r->args->rate) {
            if (r->n_answers == r->room) {
                r->room = r->room ? r->room * 2 : 4096;
                r->answers = realloc(r->answers, r->room * sizeof *r->answers);
                if (!r->answers)
                    abort();
            }
            r->answers[r->n_answers].sent = sent;
            r->answers[r->n_answers++].ns = now - sent;
        }
    }
    sb_record_destroy(&result->record);
}

static int s_closed(s_run_t *r)
{
    while (!zsys_interrupted) {
        while (bench_now_ns() < r->end && r->outstanding < r->args->inflight)
            if (s_send(r, bench_now_ns()) != SB_OK)
                return -1;
        if (r->outstanding == 0)
            return 0;
        sb_result_t result;
        int rc = sb_result_recv(r->client, &result, r->args->request.timeout_ms + 3000);
        if (rc != SB_OK)
            return -1;
        s_answer(r, &result);
    }
    return -1;
}

/* Sends every request at its scheduled time; between sends, sleeps in
   ppoll on the socket's ZMQ_FD with a nanosecond timeout, so that neither
   a send nor an answer waits for a millisecond tick. */
static int s_open(s_run_t *r)
{
    zsock_t *sock = sb_client_socket(r->client);
    struct pollfd pfd = {zsock_fd(sock), POLLIN, 0};
    int64_t interval = 1000000000LL / r->args->rate, next = bench_now_ns();
    long skipped = 0;
    while (!zsys_interrupted) {
        int64_t now = bench_now_ns();
        while (next <= now && next < r->end) {
            if (r->outstanding < S_OPEN_MAX) {
                if (s_send(r, next) != SB_OK)
                    return -1;
            } else
                skipped++;
            next += interval;
        }
        sb_result_t result;
        while (zsock_events(sock) & ZMQ_POLLIN)
            if (sb_result_recv(r->client, &result, 0) == SB_OK)
                s_answer(r, &result);
        now = bench_now_ns();
        if (next >= r->end) {
            if (r->outstanding == 0)
                break;
            if (sb_result_recv(r->client, &result, r->args->request.timeout_ms + 3000) != SB_OK)
                return -1;
            s_answer(r, &result);
            continue;
        }
        int64_t wait = next - now;
        if (wait > 0) {
            struct timespec ts = {wait / 1000000000LL, wait % 1000000000LL};
            ppoll(&pfd, 1, &ts, NULL);
        }
    }
    if (skipped)
        fprintf(stderr, "requester: %ld sends skipped: over %d outstanding\n", skipped, S_OPEN_MAX);
    return zsys_interrupted ? -1 : 0;
}

/* Open loop: of the answers at or above p99, the fraction whose time in
   flight overlapped a stall of the machine, and the latency of the answers
   that overlapped none. */
static void s_stalls_report(s_run_t *r, const bench_stalls_t *stalls, json_object *out)
{
    bench_stalls_json(stalls, out, r->start, r->end);
    int64_t p99 = (int64_t) (bench_stats_percentile_ms(r->stats, 99) * 1e6);
    long slow = 0, slow_in_stalls = 0;
    bench_stats_t *outside = bench_stats_new();
    for (size_t i = 0; i < r->n_answers; i++) {
        bool stalled = bench_stalls_overlap(stalls, r->answers[i].sent,
                                            r->answers[i].sent + r->answers[i].ns);
        if (r->answers[i].ns >= p99) {
            slow++;
            slow_in_stalls += stalled;
        }
        if (!stalled)
            bench_stats_add(outside, r->answers[i].ns);
    }
    json_object *ms = json_object_object_get(out, "machine_stalls");
    bench_json_put(ms, "slowest_1pct_overlapping", slow ? (double) slow_in_stalls / (double) slow : 0);
    json_object_object_add(ms, "answers_outside", json_object_new_int64((int64_t) bench_stats_count(outside)));
    bench_json_put(ms, "p99_ms_outside", bench_stats_percentile_ms(outside, 99));
    bench_stats_destroy(&outside);
}

static void s_report(s_run_t *r, const bench_stalls_t *stalls)
{
    const s_args_t *a = r->args;
    json_object *out = json_object_new_object();
    json_object_object_add(out, "dataset", json_object_new_string(a->request.dataset));
    if (a->rate)
        json_object_object_add(out, "offered_per_s", json_object_new_int64(a->rate));
    else
        json_object_object_add(out, "inflight", json_object_new_int64(a->inflight));
    json_object_object_add(out, "seconds", json_object_new_int64(a->seconds));
    json_object_object_add(out, "subjects", json_object_new_int64(a->subjects ? a->subjects : 1));
    bench_json_put(out, "round_trips_per_s", (double)r->outcomes[0] / (double)a->seconds);
    json_object_object_add(out, "answers", json_object_new_int64(r->in_window));
    json_object_object_add(out, "answered_total", json_object_new_int64(r->answered_total));
    json_object *outcomes = json_object_new_object();
    for (int i = 0; i <= -SB_ERROR_MIN; i++)
        if (r->outcomes[i])
            json_object_object_add(outcomes, i == 0 ? "ok" : sb_errname(-i),
                                   json_object_new_int64(r->outcomes[i]));
    json_object_object_add(out, "outcomes", outcomes);
    bench_stats_json(r->stats, out);
    if (stalls)
        s_stalls_report(r, stalls, out);
    puts(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
    json_object_put(out);
}

/* The bus is up when one request comes back with a record. */
static int s_ready(s_run_t *r)
{
    int64_t give_up = bench_now_ns() + 30000000000LL;
    while (!zsys_interrupted && bench_now_ns() < give_up) {
        sb_record_t *record = NULL;
        sb_request_t req = r->args->request;
        if (r->args->subjects)
            req.subject = "B0000000";
        int rc = sb_request(r->client, &req, &record);
        sb_record_destroy(&record);
        if (rc == SB_OK)
            return 0;
        fprintf(stderr, "requester: not ready: %s\n", sb_client_reason(r->client));
        zclock_sleep(200);
    }
    return -1;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"agent", required_argument, 0, 'a'},   {"provider", required_argument, 0, 'p'},
        {"dataset", required_argument, 0, 'd'}, {"purpose", required_argument, 0, 'P'},
        {"subject", required_argument, 0, 's'}, {"subjects", required_argument, 0, 'S'},
        {"fields", required_argument, 0, 'f'},  {"inflight", required_argument, 0, 'n'},
        {"rate", required_argument, 0, 'r'},    {"seconds", required_argument, 0, 't'},
        {"warmup", required_argument, 0, 'w'},  {"timeout", required_argument, 0, 'T'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    static s_run_t run;
    s_args_t a = {.inflight = 16, .seconds = 10, .warmup = 2, .request = {.timeout_ms = 5000}};
    const char *fields_arg = NULL;
    int opt, index = 0;
    while ((opt = getopt_long(argc, argv, "", options, &index)) != -1) {
        const char *name = options[index].name;
        switch (opt) {
        case 'a': a.agent = optarg; break;
        case 'p': a.request.provider = optarg; break;
        case 'd': a.request.dataset = optarg; break;
        case 'P': a.request.purpose = optarg; break;
        case 's': a.request.subject = optarg; break;
        case 'S': a.subjects = bench_arg_long("requester", name, optarg); break;
        case 'f': fields_arg = optarg; break;
        case 'n': a.inflight = bench_arg_long("requester", name, optarg); break;
        case 'r': a.rate = bench_arg_long("requester", name, optarg); break;
        case 't': a.seconds = bench_arg_long("requester", name, optarg); break;
        case 'w': a.warmup = atol(optarg); break;
        case 'T': a.request.timeout_ms = (int)bench_arg_long("requester", name, optarg); break;
        case 'h':
            puts("usage: requester --agent EP --provider ID --dataset D --purpose P\n"
                 "                 (--subject ID | --subjects N) [--fields a,b]\n"
                 "                 [--inflight N | --rate PER_S] [--seconds S] [--warmup S]\n"
                 "                 [--timeout MS]");
            return 0;
        default: return 2;
        }
    }
    if (a.subjects)
        a.request.subject = "B0000000";
    if (!a.agent || !a.request.provider || !a.request.dataset || !a.request.purpose ||
        !a.request.subject || a.inflight > S_OPEN_MAX) {
        fprintf(stderr,
                "requester: --agent, --provider, --dataset, --purpose and a subject "
                "are required; at most %d in flight\n",
                S_OPEN_MAX);
        return 2;
    }
    const char *fields[S_FIELDS_MAX];
    char *copy = fields_arg ? strdup(fields_arg) : NULL;
    for (char *save, *f = copy ? strtok_r(copy, ",", &save) : NULL;
         f && a.request.n_fields < S_FIELDS_MAX; f = strtok_r(NULL, ",", &save))
        fields[a.request.n_fields++] = f;
    a.request.fields = a.request.n_fields ? fields : NULL;
    srandom((unsigned)bench_now_ns());

    run.args = &a;
    run.client = sb_client_new(a.agent);
    run.stats = bench_stats_new();
    int rc = run.client ? s_ready(&run) : -1;
    bench_stalls_t *stalls = NULL;
    if (rc == 0) {
        if (a.rate && !(stalls = bench_stalls_start()))
            fprintf(stderr, "requester: no stall probe: cannot start a thread\n");
        run.start = bench_now_ns() + a.warmup * 1000000000LL;
        run.end = run.start + a.seconds * 1000000000LL;
        rc = a.rate ? s_open(&run) : s_closed(&run);
        bench_stalls_stop(stalls);
        if (rc != 0)
            fprintf(stderr, "requester: stopped with %ld outstanding: %s\n", run.outstanding,
                    sb_client_reason(run.client));
    }
    if (rc == 0)
        s_report(&run, stalls);
    bench_stalls_destroy(&stalls);
    free(run.answers);
    bench_stats_destroy(&run.stats);
    sb_client_destroy(&run.client);
    free(copy);
    return rc == 0 ? 0 : 1;
}
