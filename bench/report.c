/*  report - assembles the parts bench/run measured into one document,
    bench/results/latest.json, and prints the table.

    report --dir PARTS --out FILE [--commit C] [--started TEXT]
           [--load-start LOAD] [--quick | --events-only | --fixed-only]

    PARTS holds one JSON object per measurement, named by bench/run:
      ceiling-SIZE-N.json, full-SIZE-N.json      closed loop, N in flight
      nats-SIZE-N-MODE.json                      MODE buffered or asap
      cpu-SIZE-N.json                            CPU ms per round trip of
                                                 each process of the full path,
                                                 and the broker's Ed25519
                                                 verifies per round trip
      full-fixed.json                            open loop at a fixed rate
      full-fixed-split.json                      the same, the broker on one core
                                                 and the agencies on the other
      full-fixed-memory.json                     the same as placed, the broker's
                                                 store and journal in memory
      status-PART-before.json, -after.json       the broker's status --json right
                                                 before and after fixed-load PART
      crypto.json                                crypto-floor
      audit.json, consent.json, consent-full.json, consent-fixed.json,
      agents.json, agents-issue.json,            the other measurements
      events-publish.json, events-receive-SUB.json,
      events-load.json, events-catchup.json,
      events-restart.json
      machine-stalls-LOAD.json                   bench/machine-stalls under
                                                 LOAD (idle, cpu, io, cpu-io)
      *.note                                     a sentence to show instead
    A missing part is reported as not measured, never invented. */
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "stats.h"

static const long s_sizes[] = {512, 16384};
static const long s_inflight[] = {1, 16, 128};
#define S_NSIZES 2
#define S_NINFLIGHT 3

typedef struct {
    const char *dir;
    bool quick;
    bool events_only;   /* bench/run with BENCH_ONLY=events */
    bool fixed_only;    /* bench/run with BENCH_ONLY=fixed */
} s_report_t;

static json_object *s_part(const s_report_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static json_object *s_part(const s_report_t *r, const char *fmt, ...)
{
    char name[256], path[4400];
    va_list args;
    va_start(args, fmt);
    vsnprintf(name, sizeof name, fmt, args);
    va_end(args);
    snprintf(path, sizeof path, "%s/%s", r->dir, name);
    if (access(path, R_OK) != 0)
        return NULL;
    return json_object_from_file(path);
}

/* The note bench/run left for part `name`, or NULL. */
static char *s_note(const s_report_t *r, const char *name)
{
    char path[4400], *text = NULL;
    snprintf(path, sizeof path, "%s/%s.note", r->dir, name);
    FILE *f = fopen(path, "r");
    size_t size = 0;
    if (f && getline(&text, &size, f) > 0)
        text[strcspn(text, "\n")] = 0;
    if (f)
        fclose(f);
    return text;
}

/* obj.key (a path "a.b") as a number; NAN when absent. */
static double s_num(json_object *obj, const char *path)
{
    char copy[128];
    snprintf(copy, sizeof copy, "%s", path);
    json_object *at = obj;
    for (char *save, *key = strtok_r(copy, ".", &save); key && at; key = strtok_r(NULL, ".", &save))
        if (!json_object_object_get_ex(at, key, &at))
            at = NULL;
    return at ? json_object_get_double(at) : NAN;
}

static void s_put(json_object *obj, const char *key, double value)
{
    if (isnan(value))
        json_object_object_add(obj, key, NULL);
    else
        bench_json_put(obj, key, value);
}

/* The crypto floor, measured right before and right after the full path at
   512 B x 128: its rates are the means of the two, which are kept as
   "before" and "after". One alone (an older run's parts) is used as is. */
static json_object *s_floor(const s_report_t *r)
{
    static const char *rates[] = {"round_trips_per_s", "round_trips_per_s_by_cpu_time",
                                  "all_crypto_round_trips_per_s",
                                  "all_crypto_round_trips_per_s_by_cpu_time",
                                  "sign_per_s_one_core", "verify_per_s_one_core"};
    json_object *before = s_part(r, "crypto.json"), *after = s_part(r, "crypto-after.json");
    json_object *floor = NULL;
    if (!before || !after || json_object_deep_copy(before, &floor, NULL) != 0) {
        json_object_put(after);
        return before;
    }
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++)
        s_put(floor, rates[i], (s_num(before, rates[i]) + s_num(after, rates[i])) / 2);
    json_object_object_add(floor, "before", before);
    json_object_object_add(floor, "after", after);
    return floor;
}

/* ------------------------------------------------------------ machine */

static json_object *s_machine(const char *commit, const char *started, const char *load_start)
{
    json_object *m = json_object_new_object();
    json_object_object_add(m, "nproc", json_object_new_int64(sysconf(_SC_NPROCESSORS_ONLN)));
    char line[512], model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0 && strchr(line, ':')) {
            snprintf(model, sizeof model, "%s", strchr(line, ':') + 2);
            model[strcspn(model, "\n")] = 0;
            break;
        }
    if (f)
        fclose(f);
    json_object_object_add(m, "cpu_model", json_object_new_string(model));
    struct utsname u;
    uname(&u);
    json_object_object_add(m, "kernel", json_object_new_string(u.release));
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    json_object_object_add(m, "memory_mib", json_object_new_int64((int64_t)pages * page >> 20));
    char date[64];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    json_object_object_add(m, "date", json_object_new_string(date));
    json_object_object_add(m, "started", json_object_new_string(started ? started : date));
    json_object_object_add(m, "git_commit", json_object_new_string(commit ? commit : "unknown"));
    if (load_start)
        bench_json_put(m, "loadavg_1min_at_start", atof(load_start));
    double load[3];
    if (getloadavg(load, 3) == 3)
        bench_json_put(m, "loadavg_1min_at_end", load[0]);
    return m;
}

/* Whether the machine stops by itself, under loads without sharebus: into
   machine.stalls, one entry per load measured. */
static const char *s_stall_loads[] = {"idle", "cpu", "io", "cpu-io"};
#define S_NSTALL_LOADS 4

static void s_machine_stalls(const s_report_t *r, json_object *doc)
{
    json_object *list = json_object_new_array();
    for (int i = 0; i < S_NSTALL_LOADS; i++) {
        json_object *part = s_part(r, "machine-stalls-%s.json", s_stall_loads[i]);
        if (!part)
            continue;
        json_object_object_add(part, "load", json_object_new_string(s_stall_loads[i]));
        json_object_array_add(list, part);
    }
    if (json_object_array_length(list) > 0)
        json_object_object_add(json_object_object_get(doc, "machine"), "stalls", list);
    else
        json_object_put(list);
}

static void s_machine_stalls_lines(json_object *doc)
{
    json_object *list = NULL;
    if (!json_object_object_get_ex(json_object_object_get(doc, "machine"), "stalls", &list))
        return;
    printf("the machine alone (bench/machine-stalls, nothing of sharebus running), stops of 2 ms or more:\n");
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *m = json_object_array_get_idx(list, i);
        printf("  %.0f computing thread(s), %5.0f O_DSYNC 4 KiB writes/s: %3.0f stops, %6.1f ms in "
               "%.0f s (%.2f%%), longest %.1f ms\n",
               s_num(m, "spinning_threads"), s_num(m, "dsync_writes_per_s"),
               s_num(m, "machine_stalls.count"), s_num(m, "machine_stalls.stalled_ms"),
               s_num(m, "seconds"), 100 * s_num(m, "machine_stalls.fraction"),
               s_num(m, "machine_stalls.longest_ms"));
    }
}

/* --------------------------------------------------- request / reply */

static bool s_measured(long size, long inflight, bool quick)
{
    return !quick || (size == 512 && inflight == 128);
}

/* NATS at one point: the better of libnats's two send modes. */
static json_object *s_nats_best(const s_report_t *r, long size, long n)
{
    json_object *best = NULL;
    double best_rate = -1;
    static const char *modes[] = {"buffered", "asap"};
    for (int m = 0; m < 2; m++) {
        json_object *part = s_part(r, "nats-%ld-%ld-%s.json", size, n, modes[m]);
        double rate = part ? s_num(part, "round_trips_per_s") : NAN;
        if (part && rate > best_rate) {
            json_object_put(best);
            best = part;
            best_rate = rate;
        } else
            json_object_put(part);
    }
    return best;
}

/* The q-quantile of counts[0..n) over buckets with upper bounds le[0..n-1)
   (the last count above the last bound), interpolated within its bucket
   as the broker interpolates its own. */
static double s_bucket_quantile(const double *le, const double *counts, size_t n, double q)
{
    double total = 0, below = 0;
    for (size_t i = 0; i < n; i++)
        total += counts[i];
    double rank = q * total;
    for (size_t i = 0; total > 0 && i < n; i++) {
        if (counts[i] > 0 && below + counts[i] >= rank) {
            double lo = i ? le[i - 1] : 0, hi = i + 1 < n ? le[i] : lo;
            return lo + (hi - lo) * (rank - below) / counts[i];
        }
        below += counts[i];
    }
    return NAN;
}

/* The broker's histogram `histogram` during a fixed-load run, into `part`
   as `key`: the difference of its status read right `before` and right
   `after` the run. */
static void s_broker_during(json_object *before, json_object *after, const char *histogram,
                            const char *key, json_object *part)
{
    json_object *hb = NULL, *ha = NULL, *le = NULL, *cb = NULL, *ca = NULL;
    if (before && after && json_object_object_get_ex(before, histogram, &hb)
        && json_object_object_get_ex(after, histogram, &ha)
        && json_object_object_get_ex(ha, "le_ms", &le) && json_object_object_get_ex(hb, "counts", &cb)
        && json_object_object_get_ex(ha, "counts", &ca)) {
        size_t n = json_object_array_length(ca);
        double bounds[64], counts[64], total = 0;
        if (n <= 64 && n == json_object_array_length(cb) && n == json_object_array_length(le) + 1) {
            for (size_t i = 0; i < n; i++) {
                bounds[i] = i + 1 < n ? json_object_get_double(json_object_array_get_idx(le, i)) : 0;
                counts[i] = (double) (json_object_get_int64(json_object_array_get_idx(ca, i))
                                      - json_object_get_int64(json_object_array_get_idx(cb, i)));
                total += counts[i];
            }
            double answered = s_num(part, "answered_total");
            json_object *w = json_object_new_object();
            s_put(w, "count", total);
            s_put(w, "per_round_trip", answered > 0 ? total / answered : NAN);
            s_put(w, "p50_ms", s_bucket_quantile(bounds, counts, n, 0.5));
            s_put(w, "p90_ms", s_bucket_quantile(bounds, counts, n, 0.9));
            s_put(w, "p99_ms", s_bucket_quantile(bounds, counts, n, 0.99));
            json_object_object_add(part, key, w);
        }
    }
}

/* The fixed-load runs, in the order they run: the key in full_path (and
   of p99_ms_at_KEY), the part bench/run wrote, and how the table names it
   after the first. */
static const struct {
    const char *key, *part, *label;
} s_fixed_runs[] = {
    {"fixed_load", "full-fixed", NULL},
    {"fixed_load_memory", "full-fixed-memory",
     "the broker's store and journal in memory (not durable; what the disk costs)"},
    {"fixed_load_split", "full-fixed-split", "the broker on core 0 and the agencies on core 1"},
};

/* The fixed-load runs into `full`: p99_ms_at_fixed_load and fixed_load
   (the bus as the scheduler places it), the same with _memory (the
   broker's store and journal in memory: what the disk's synchronous writes
   cost) and _split (the broker on one core, the agencies on the other). */
static void s_fixed(const s_report_t *r, json_object *full)
{
    for (size_t i = 0; i < sizeof s_fixed_runs / sizeof s_fixed_runs[0]; i++) {
        json_object *run = s_part(r, "%s.json", s_fixed_runs[i].part);
        char p99[64];
        snprintf(p99, sizeof p99, "p99_ms_at_%s", s_fixed_runs[i].key);
        s_put(full, p99, run ? s_num(run, "p99_ms") : NAN);
        if (run) {
            /* The broker's status right before and right after the run
               (status-PART-before.json, -after.json). */
            json_object *before = s_part(r, "status-%s-before.json", s_fixed_runs[i].part);
            json_object *after = s_part(r, "status-%s-after.json", s_fixed_runs[i].part);
            s_broker_during(before, after, "audit_commit", "journal_writes", run);
            s_broker_during(before, after, "hold_request", "broker_held_requests", run);
            s_broker_during(before, after, "hold_reply", "broker_held_replies", run);
            json_object_put(before);
            json_object_put(after);
            json_object_object_add(full, s_fixed_runs[i].key, run);
        }
    }
}

/* The comparison runs: arrays of points, and the headline 512 B x 128. */
static void s_request_reply(const s_report_t *r, json_object *doc)
{
    json_object *ceiling = json_object_new_object(), *full = json_object_new_object(),
                *nats = json_object_new_object();
    json_object *cr = json_object_new_array(), *fr = json_object_new_array(),
                *nr = json_object_new_array();
    for (int s = 0; s < S_NSIZES; s++)
        for (int i = 0; i < S_NINFLIGHT; i++) {
            long size = s_sizes[s], n = s_inflight[i];
            if (!s_measured(size, n, r->quick))
                continue;
            json_object *c = s_part(r, "ceiling-%ld-%ld.json", size, n);
            json_object *f = s_part(r, "full-%ld-%ld.json", size, n);
            json_object *x = s_nats_best(r, size, n);
            double crate = c ? s_num(c, "round_trips_per_s") : NAN;
            double frate = f ? s_num(f, "round_trips_per_s") : NAN;
            if (f) {
                json_object_object_add(f, "size", json_object_new_int64(size));
                s_put(f, "ratio_to_ceiling", frate / crate);
                json_object *cpu = s_part(r, "cpu-%ld-%ld.json", size, n);
                double total = cpu ? s_num(cpu, "total") : NAN;
                if (cpu)
                    json_object_object_add(f, "cpu_ms_per_round_trip", cpu);
                /* What the path's CPU cost allows with every core busy:
                   other load on the machine does not change it. */
                s_put(f, "cpu_bound_round_trips_per_s",
                      total > 0 ? (double)sysconf(_SC_NPROCESSORS_ONLN) * 1000 / total : NAN);
            }
            if (x)
                s_put(x, "ratio_to_full_path", s_num(x, "round_trips_per_s") / frate);
            if (size == 512 && n == 128) {
                s_put(ceiling, "round_trips_per_s", crate);
                s_put(ceiling, "p99_ms", c ? s_num(c, "p99_ms") : NAN);
                s_put(full, "round_trips_per_s", frate);
                s_put(full, "ratio_to_ceiling", frate / crate);
                s_put(full, "p99_ms", f ? s_num(f, "p99_ms") : NAN);
                s_put(full, "cpu_ms_per_round_trip",
                      f ? s_num(f, "cpu_ms_per_round_trip.total") : NAN);
                s_put(full, "cpu_bound_round_trips_per_s",
                      f ? s_num(f, "cpu_bound_round_trips_per_s") : NAN);
                s_put(full, "broker_ed25519_verifies_per_round_trip",
                      f ? s_num(f, "cpu_ms_per_round_trip.broker_ed25519_verifies") : NAN);
                double xrate = x ? s_num(x, "round_trips_per_s") : NAN;
                s_put(nats, "round_trips_per_s", xrate);
                s_put(nats, "p99_ms", x ? s_num(x, "p99_ms") : NAN);
                s_put(nats, "ratio_to_full_path", xrate / frate);
            }
            if (c)
                json_object_array_add(cr, c);
            if (f)
                json_object_array_add(fr, f);
            if (x)
                json_object_array_add(nr, x);
        }
    json_object_object_add(ceiling, "runs", cr);
    json_object_object_add(full, "runs", fr);
    json_object_object_add(nats, "runs", nr);
    s_fixed(r, full);
    json_object *crypto = s_floor(r);
    double floor_rate = crypto ? s_num(crypto, "round_trips_per_s") : NAN;
    s_put(full, "ratio_to_crypto_floor", s_num(full, "round_trips_per_s") / floor_rate);
    /* The same comparison by CPU cost, which other work on the machine
       hardly moves: what the full path's CPU time per round trip allows
       with every core busy, against what the signatures' CPU time allows. */
    s_put(full, "cpu_bound_ratio_to_crypto_floor",
          s_num(full, "cpu_bound_round_trips_per_s") /
              (crypto ? s_num(crypto, "round_trips_per_s_by_cpu_time") : NAN));
    json_object_object_add(doc, "ceiling", ceiling);
    json_object_object_add(doc, "full_path", full);
    json_object_object_add(doc, "crypto_floor", crypto ? crypto : json_object_new_object());
    if (!crypto)
        json_object_object_add(json_object_object_get(doc, "crypto_floor"), "round_trips_per_s",
                               NULL);
    char *note = s_note(r, "nats");
    if (note)
        json_object_object_add(nats, "note", json_object_new_string(note));
    free(note);
    json_object_object_add(doc, "nats", nats);
}

/* -------------------------------------------------------------- others */

static void s_other(const s_report_t *r, json_object *doc, const char *key, const char *part)
{
    json_object *obj = s_part(r, "%s.json", part);
    char *note = s_note(r, part);
    if (!obj && (r->quick || note)) {
        obj = json_object_new_object();
        json_object_object_add(obj, "status",
                               json_object_new_string(note ? "not measured" : "not run (--quick)"));
    }
    if (obj && note)
        json_object_object_add(obj, "note", json_object_new_string(note));
    free(note);
    if (obj)
        json_object_object_add(doc, key, obj);
}

static void s_consent(const s_report_t *r, json_object *doc)
{
    s_other(r, doc, "consent", "consent");
    json_object *consent = json_object_object_get(doc, "consent");
    json_object *full = s_part(r, "consent-full.json"), *fixed = s_part(r, "consent-fixed.json");
    if (consent && full)
        json_object_object_add(consent, "full_path", full);
    else
        json_object_put(full);
    if (consent && fixed)
        json_object_object_add(consent, "fixed_load", fixed);
    else
        json_object_put(fixed);
}

static void s_agents(const s_report_t *r, json_object *doc)
{
    s_other(r, doc, "agents", "agents");
    json_object *agents = json_object_object_get(doc, "agents"), *issue;
    if (agents && (issue = s_part(r, "agents-issue.json")))
        json_object_object_add(agents, "issue", issue);
}

/* Events: the fan-out from the publisher's and subscribers' parts, the
   catch-up from the broker's restart to the last event received. */
static void s_events(const s_report_t *r, json_object *doc)
{
    static const char *subscribers[] = {"nts", "koroad", "nhis"};
    json_object *events = json_object_new_object();
    if (r->quick) {
        json_object_object_add(events, "status", json_object_new_string("not run (--quick)"));
        json_object_object_add(doc, "events", events);
        return;
    }
    json_object *publish = s_part(r, "events-publish.json");
    char *note = s_note(r, "events-publish");
    if (publish) {
        json_object *fan = json_object_new_object();
        double start = s_num(publish, "start"), last = NAN, delivered = 0;
        bool in_order = true;
        for (size_t i = 0; i < sizeof subscribers / sizeof *subscribers; i++) {
            json_object *got = s_part(r, "events-receive-%s.json", subscribers[i]), *order;
            if (!got)
                continue;
            delivered += s_num(got, "received");
            if (isnan(last) || s_num(got, "last") > last)
                last = s_num(got, "last");
            in_order = in_order && json_object_object_get_ex(got, "in_order", &order)
                       && json_object_get_boolean(order);
            json_object_put(got);
        }
        s_put(fan, "events", s_num(publish, "published"));
        s_put(fan, "subscribers", (double) (sizeof subscribers / sizeof *subscribers));
        s_put(fan, "publishers", s_num(publish, "threads"));
        s_put(fan, "published_per_s", s_num(publish, "per_s"));
        s_put(fan, "deliveries", delivered);
        s_put(fan, "seconds", last - start);
        s_put(fan, "deliveries_per_s", delivered / (last - start));
        json_object_object_add(fan, "in_order", json_object_new_boolean(in_order));
        json_object_object_add(events, "fan_out", fan);
        json_object_put(publish);
    } else
        json_object_object_add(events, "fan_out_note",
                               json_object_new_string(note ? note : "not measured"));
    free(note);
    json_object *load = s_part(r, "events-load.json"), *catchup = s_part(r, "events-catchup.json");
    json_object *restart = s_part(r, "events-restart.json");
    if (load && catchup && restart) {
        json_object *c = json_object_new_object(), *order;
        double started = s_num(restart, "broker_started");
        s_put(c, "events", s_num(catchup, "received"));
        s_put(c, "queued", s_num(load, "loaded"));
        s_put(c, "first_event_after_s", s_num(catchup, "first") - started);
        s_put(c, "seconds", s_num(catchup, "last") - started);
        s_put(c, "events_per_s", s_num(catchup, "received") / (s_num(catchup, "last") - started));
        json_object_object_add(c, "in_order",
                               json_object_new_boolean(
                                   json_object_object_get_ex(catchup, "in_order", &order)
                                   && json_object_get_boolean(order)));
        json_object_object_add(events, "catch_up", c);
    } else {
        char *why = s_note(r, load ? "events-catchup" : "events-load");
        json_object_object_add(events, "catch_up_note",
                               json_object_new_string(why ? why : "not measured"));
        free(why);
    }
    json_object_put(load);
    json_object_put(catchup);
    json_object_put(restart);
    json_object_object_add(doc, "events", events);
}

/* -------------------------------------------------------------- targets */

static void s_target(json_object *list, const char *name, double value, double bound, bool below)
{
    json_object *t = json_object_new_object();
    json_object_object_add(t, "target", json_object_new_string(name));
    s_put(t, "value", value);
    s_put(t, "bound", bound);
    if (isnan(value))
        json_object_object_add(t, "met", NULL);
    else
        json_object_object_add(t, "met",
                               json_object_new_boolean(below ? value < bound : value >= bound));
    json_object_array_add(list, t);
}

static void s_targets(json_object *doc)
{
    json_object *t = json_object_new_array();
    s_target(t, "full path, 512 B, 128 in flight: round trips/s >= 5000",
             s_num(doc, "full_path.round_trips_per_s"), 5000, false);
    s_target(t, "full path / ceiling >= 0.10", s_num(doc, "full_path.ratio_to_ceiling"), 0.10,
             false);
    s_target(t, "full path / crypto floor >= 0.6", s_num(doc, "full_path.ratio_to_crypto_floor"),
             0.6, false);
    s_target(t, "p99 at 1,000 requests/s offered < 5 ms",
             s_num(doc, "full_path.p99_ms_at_fixed_load"), 5, true);
    s_target(t, "audit query by subject on 10M records < 10 ms",
             s_num(doc, "audit.records") >= 1e7 ? s_num(doc, "audit.query_subject_ms") : NAN, 10,
             true);
    s_target(t, "audit verify >= 500,000 records/s", s_num(doc, "audit.verify_records_per_s"),
             500000, false);
    json_object_object_add(doc, "targets", t);
}

/* ---------------------------------------------------------------- table */

/* `value` with `decimals` decimals, or "-" when it was not measured. */
static const char *s_fmt(char *buf, size_t size, int decimals, double value)
{
    if (isnan(value))
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%.*f", decimals, value);
    return buf;
}

static void s_cell(char *out, size_t size, json_object *run)
{
    if (!run) {
        snprintf(out, size, "not measured");
        return;
    }
    snprintf(out, size, "%7.0f  %6.2f/%6.2f/%6.2f", s_num(run, "round_trips_per_s"),
             s_num(run, "p50_ms"), s_num(run, "p99_ms"), s_num(run, "p999_ms"));
}

static json_object *s_run_at(json_object *doc, const char *section, long size, long n)
{
    json_object *runs = NULL, *sec = json_object_object_get(doc, section);
    if (!sec || !json_object_object_get_ex(sec, "runs", &runs))
        return NULL;
    for (size_t i = 0; i < json_object_array_length(runs); i++) {
        json_object *run = json_object_array_get_idx(runs, i);
        if (s_num(run, "size") == size && s_num(run, "inflight") == n)
            return run;
    }
    return NULL;
}

static void s_events_line(json_object *doc)
{
    json_object *events = json_object_object_get(doc, "events"), *x;
    if (json_object_object_get_ex(events, "status", &x)) {
        printf("events: %s\n", json_object_get_string(x));
        return;
    }
    if (json_object_object_get_ex(events, "fan_out", &x))
        printf("events fan-out: %.0f events from %.0f publishing clients to %.0f subscribers: "
               "%.0f deliveries/s (publication durable for all %.0f/s), %.2f s; in order: %s\n",
               s_num(x, "events"), s_num(x, "publishers"), s_num(x, "subscribers"),
               s_num(x, "deliveries_per_s"), s_num(x, "published_per_s"), s_num(x, "seconds"),
               json_object_get_boolean(json_object_object_get(x, "in_order")) ? "yes" : "NO");
    else
        printf("events fan-out: %s\n",
               json_object_get_string(json_object_object_get(events, "fan_out_note")));
    if (json_object_object_get_ex(events, "catch_up", &x))
        printf("events catch-up: %.0f of %.0f queued events at a subscriber %.1f s after the "
               "broker started (first after %.2f s): %.0f events/s; in order: %s\n",
               s_num(x, "events"), s_num(x, "queued"), s_num(x, "seconds"),
               s_num(x, "first_event_after_s"), s_num(x, "events_per_s"),
               json_object_get_boolean(json_object_object_get(x, "in_order")) ? "yes" : "NO");
    else
        printf("events catch-up: %s\n",
               json_object_get_string(json_object_object_get(events, "catch_up_note")));
}

/* The broker's journal writes and holds, and the machine's stops, during
   a fixed-load run, where they were measured. */
static void s_print_during(json_object *fixed)
{
    if (fixed && !isnan(s_num(fixed, "journal_writes.count")))
        printf("  the broker's journal writes meanwhile: %.0f (%.2f per round trip), "
               "p50 %.2f  p90 %.2f  p99 %.2f ms (its histogram, buckets from 0.1 ms)\n",
               s_num(fixed, "journal_writes.count"), s_num(fixed, "journal_writes.per_round_trip"),
               s_num(fixed, "journal_writes.p50_ms"), s_num(fixed, "journal_writes.p90_ms"),
               s_num(fixed, "journal_writes.p99_ms"));
    if (fixed && !isnan(s_num(fixed, "broker_held_requests.count")))
        printf("  the broker held each request p50 %.2f  p99 %.2f ms and each reply p50 %.2f  "
               "p99 %.2f ms (from its loop reading one to sending it on)\n",
               s_num(fixed, "broker_held_requests.p50_ms"), s_num(fixed, "broker_held_requests.p99_ms"),
               s_num(fixed, "broker_held_replies.p50_ms"), s_num(fixed, "broker_held_replies.p99_ms"));
    if (!fixed || isnan(s_num(fixed, "machine_stalls.count")))
        return;
    printf("  the machine stopped %.0f times for 2 ms or more (%.1f ms in all, longest %.1f ms; "
           "%s probe): %.0f%% of the requests at or above p99 overlapped a stop; "
           "p99 of the others %.2f ms\n",
           s_num(fixed, "machine_stalls.count"), s_num(fixed, "machine_stalls.stalled_ms"),
           s_num(fixed, "machine_stalls.longest_ms"),
           json_object_get_string(
               json_object_object_get(json_object_object_get(fixed, "machine_stalls"), "probe")),
           100 * s_num(fixed, "machine_stalls.slowest_1pct_overlapping"),
           s_num(fixed, "machine_stalls.p99_ms_outside"));
}

/* The fixed-load runs, each with what was measured during it. */
static void s_fixed_lines(json_object *doc)
{
    json_object *full = json_object_object_get(doc, "full_path");
    for (size_t i = 0; i < sizeof s_fixed_runs / sizeof s_fixed_runs[0]; i++) {
        json_object *run = NULL;
        if (!json_object_object_get_ex(full, s_fixed_runs[i].key, &run) || !run)
            continue;
        if (s_fixed_runs[i].label)
            printf("the same, %s: ", s_fixed_runs[i].label);
        else
            printf("\nfull path at %.0f requests/s offered (open loop, 512 B): ",
                   s_num(run, "offered_per_s"));
        printf("achieved %.0f/s, p50 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms\n",
               s_num(run, "round_trips_per_s"), s_num(run, "p50_ms"), s_num(run, "p99_ms"),
               s_num(run, "p999_ms"), s_num(run, "max_ms"));
        s_print_during(run);
    }
}

static void s_table(json_object *doc)
{
    char a[128], b[128], c[128], d[64], e[64], f[64], g[64], h[64];
    json_object *m = json_object_object_get(doc, "machine");
    printf("\nsharebus bench  %s  |  %s x %d  |  kernel %s  |  commit %s\n",
           json_object_get_string(json_object_object_get(m, "date")),
           json_object_get_string(json_object_object_get(m, "cpu_model")), (int)s_num(m, "nproc"),
           json_object_get_string(json_object_object_get(m, "kernel")),
           json_object_get_string(json_object_object_get(m, "git_commit")));
    printf("load average (1 min) %s at the start, %s at the end: other work on the machine "
           "lowers every figure; the ratios are measured side by side\n",
           s_fmt(d, sizeof d, 2, s_num(m, "loadavg_1min_at_start")),
           s_fmt(e, sizeof e, 2, s_num(m, "loadavg_1min_at_end")));
    printf("\nrequest/reply: round trips/s   p50/p99/p99.9 ms; cpu = CPU ms per round trip, "
           "all processes of the full path\n");
    printf("%-7s %4s  %-31s %-31s %-6s %-5s %-31s\n", "size", "infl", "ceiling (ZeroMQ+CURVE)",
           "sharebus full path", "ratio", "cpu", "NATS+TLS");
    for (int s = 0; s < S_NSIZES; s++)
        for (int i = 0; i < S_NINFLIGHT; i++) {
            long size = s_sizes[s], n = s_inflight[i];
            json_object *full = s_run_at(doc, "full_path", size, n);
            if (!full && !s_run_at(doc, "ceiling", size, n))
                continue;
            s_cell(a, sizeof a, s_run_at(doc, "ceiling", size, n));
            s_cell(b, sizeof b, full);
            s_cell(c, sizeof c, s_run_at(doc, "nats", size, n));
            printf("%-7s %4ld  %-31s %-31s %-6s %-5s %-31s\n", size == 512 ? "512 B" : "16 KiB", n,
                   a, b, s_fmt(d, sizeof d, 3, full ? s_num(full, "ratio_to_ceiling") : NAN),
                   s_fmt(e, sizeof e, 2, full ? s_num(full, "cpu_ms_per_round_trip.total") : NAN),
                   c);
        }
    s_fixed_lines(doc);
    printf("crypto floor (2 Ed25519 signs + %s verifies + %s MACs per round trip, %s threads): %s "
           "round trips/s; with sealing and hashing: %s\n",
           s_fmt(g, sizeof g, 0, s_num(doc, "crypto_floor.per_round_trip.ed25519_verify")),
           s_fmt(h, sizeof h, 0, s_num(doc, "crypto_floor.per_round_trip.blake2b_mac")),
           s_fmt(d, sizeof d, 0, s_num(doc, "crypto_floor.threads")),
           s_fmt(e, sizeof e, 0, s_num(doc, "crypto_floor.round_trips_per_s")),
           s_fmt(f, sizeof f, 0, s_num(doc, "crypto_floor.all_crypto_round_trips_per_s")));
    if (!isnan(s_num(doc, "crypto_floor.after.round_trips_per_s")))
        printf("  the mean of %s right before the full path at 512 B x 128 and %s right after\n",
               s_fmt(d, sizeof d, 0, s_num(doc, "crypto_floor.before.round_trips_per_s")),
               s_fmt(e, sizeof e, 0, s_num(doc, "crypto_floor.after.round_trips_per_s")));
    printf(
        "  by CPU time (what the cores allow when nothing else runs): crypto floor %s, "
        "with sealing and hashing %s\n",
        s_fmt(d, sizeof d, 0, s_num(doc, "crypto_floor.round_trips_per_s_by_cpu_time")),
        s_fmt(e, sizeof e, 0, s_num(doc, "crypto_floor.all_crypto_round_trips_per_s_by_cpu_time")));
    if (!isnan(s_num(doc, "full_path.cpu_bound_round_trips_per_s")))
        printf("full path CPU cost %.2f ms per round trip (512 B x 128): %.0f round trips/s "
               "with every core busy, %.3f of the crypto floor by CPU time\n",
               s_num(doc, "full_path.cpu_ms_per_round_trip"),
               s_num(doc, "full_path.cpu_bound_round_trips_per_s"),
               s_num(doc, "full_path.cpu_bound_ratio_to_crypto_floor"));
    if (s_num(doc, "full_path.broker_ed25519_verifies_per_round_trip") > 0)
        printf("batch signatures (512 B x 128): the broker ran %.2f Ed25519 verifies per round "
               "trip where the floor counts 2 (envelopes signed one by one)\n",
               s_num(doc, "full_path.broker_ed25519_verifies_per_round_trip"));
    printf("full path / ceiling %s, / crypto floor %s;  NATS / full path %s\n",
           s_fmt(d, sizeof d, 3, s_num(doc, "full_path.ratio_to_ceiling")),
           s_fmt(e, sizeof e, 3, s_num(doc, "full_path.ratio_to_crypto_floor")),
           s_fmt(f, sizeof f, 2, s_num(doc, "nats.ratio_to_full_path")));

    json_object *audit = json_object_object_get(doc, "audit");
    if (audit && !isnan(s_num(audit, "records")))
        printf("\naudit (%.0f records, %.0f per commit): append %.0f records/s; query by subject "
               "%.3f ms (%.0f records, %.1f pages read from the disk; the same queries again "
               "%.3f ms), by agency first 100 %.3f ms; verify %.0f records/s\n",
               s_num(audit, "records"), s_num(audit, "batch"), s_num(audit, "append_records_per_s"),
               s_num(audit, "query_subject_ms"), s_num(audit, "query_subject_records"),
               s_num(audit, "query_subject_disk_reads"), s_num(audit, "query_subject_again_ms"),
               s_num(audit, "query_agency_first_100_ms"), s_num(audit, "verify_records_per_s"));
    else
        printf("\naudit: %s\n",
               audit ? json_object_get_string(json_object_object_get(audit, "status"))
                     : "not measured");
    json_object *consent = json_object_object_get(doc, "consent");
    if (consent && !isnan(s_num(consent, "consents"))) {
        printf("consent (%.0f on record): one check %.1f us (p99 %.1f us), %.0f checks/s",
               s_num(consent, "consents"), s_num(consent, "lookup.mean_ms") * 1000,
               s_num(consent, "lookup.p99_ms") * 1000, s_num(consent, "lookup.lookups_per_s"));
        if (!isnan(s_num(consent, "full_path.round_trips_per_s")))
            printf("; full path 512 B x 16 at random subjects %.0f round trips/s, p99 %.2f ms",
                   s_num(consent, "full_path.round_trips_per_s"),
                   s_num(consent, "full_path.p99_ms"));
        if (!isnan(s_num(consent, "fixed_load.p99_ms")))
            printf("; p99 at %.0f/s %.2f ms", s_num(consent, "fixed_load.offered_per_s"),
                   s_num(consent, "fixed_load.p99_ms"));
        printf("\n");
    } else
        printf("consent: %s\n",
               consent ? json_object_get_string(json_object_object_get(consent, "status"))
                       : "not measured");
    json_object *agents = json_object_object_get(doc, "agents");
    if (agents && !isnan(s_num(agents, "agents")))
        printf("broker with %.0f agents connected: RSS %.1f -> %.1f MiB, fds %.0f -> %.0f "
               "(%.0f welcomed in %.2f s; %.0f requests answered)\n",
               s_num(agents, "agents"), s_num(agents, "before.rss_mib"),
               s_num(agents, "connected.rss_mib"), s_num(agents, "before.open_fds"),
               s_num(agents, "connected.open_fds"), s_num(agents, "welcomed"),
               s_num(agents, "connect_all_s"), s_num(agents, "requests_answered"));
    else
        printf("agents: %s\n",
               agents ? json_object_get_string(json_object_object_get(agents, "status"))
                      : "not measured");
    s_events_line(doc);
    printf("\ntargets\n");
    json_object *targets = json_object_object_get(doc, "targets");
    for (size_t i = 0; i < json_object_array_length(targets); i++) {
        json_object *t = json_object_array_get_idx(targets, i), *met = NULL;
        json_object_object_get_ex(t, "met", &met);
        printf("  %-8s %-55s %s\n",
               !met                           ? "n/a"
               : json_object_get_boolean(met) ? "met"
                                              : "MISSED",
               json_object_get_string(json_object_object_get(t, "target")),
               s_fmt(a, sizeof a, 3, s_num(t, "value")));
    }
}

int main(int argc, char **argv)
{
    static const struct option options[] = {{"dir", required_argument, 0, 'd'},
                                            {"out", required_argument, 0, 'o'},
                                            {"commit", required_argument, 0, 'c'},
                                            {"started", required_argument, 0, 's'},
                                            {"load-start", required_argument, 0, 'l'},
                                            {"quick", no_argument, 0, 'q'},
                                            {"events-only", no_argument, 0, 'e'},
                                            {"fixed-only", no_argument, 0, 'f'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    s_report_t r = {0};
    const char *out = NULL, *commit = NULL, *started = NULL, *load_start = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'd': r.dir = optarg; break;
        case 'o': out = optarg; break;
        case 'c': commit = optarg; break;
        case 's': started = optarg; break;
        case 'l': load_start = optarg; break;
        case 'q': r.quick = true; break;
        case 'e': r.events_only = true; break;
        case 'f': r.fixed_only = true; break;
        case 'h':
            puts("usage: report --dir PARTS --out FILE [--commit C] [--started TEXT]\n"
                 "              [--load-start LOAD] [--quick | --events-only | --fixed-only]");
            return 0;
        default: return 2;
        }
    }
    if (!r.dir || !out) {
        fprintf(stderr, "usage: report --dir PARTS --out FILE [--commit C] [--started TEXT] "
                        "[--quick]\n");
        return 2;
    }
    json_object *doc = json_object_new_object();
    json_object_object_add(doc, "sharebus_bench", json_object_new_int(1));
    json_object_object_add(doc, "mode",
                           json_object_new_string(r.events_only ? "events"
                                                  : r.fixed_only ? "fixed"
                                                  : r.quick ? "quick" : "full"));
    json_object_object_add(doc, "machine", s_machine(commit, started, load_start));
    if (r.events_only) {
        s_events(&r, doc);
        if (json_object_to_file_ext(out, doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED)
            != 0) {
            fprintf(stderr, "report: cannot write %s\n", out);
            return 1;
        }
        printf("\n");
        s_events_line(doc);
        json_object_put(doc);
        return 0;
    }
    if (r.fixed_only) {
        json_object *full = json_object_new_object();
        s_fixed(&r, full);
        json_object_object_add(doc, "full_path", full);
        if (json_object_to_file_ext(out, doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED)
            != 0) {
            fprintf(stderr, "report: cannot write %s\n", out);
            return 1;
        }
        s_fixed_lines(doc);
        json_object_put(doc);
        return 0;
    }
    s_request_reply(&r, doc);
    s_other(&r, doc, "audit", "audit");
    s_consent(&r, doc);
    s_agents(&r, doc);
    s_events(&r, doc);
    s_machine_stalls(&r, doc);
    s_targets(doc);
    if (json_object_to_file_ext(out, doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED) != 0) {
        fprintf(stderr, "report: cannot write %s\n", out);
        return 1;
    }
    s_table(doc);
    s_machine_stalls_lines(doc);
    json_object_put(doc);
    return 0;
}
