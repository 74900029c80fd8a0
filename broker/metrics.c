/*  metrics.c - what the broker counts and times, for `status` and for a
    Prometheus scrape.

    Counters: requests by consumer, provider and dataset (labels are
    bounded: a dataset the policy does not declare and a recipient without
    a certificate count as "-", so a hostile agent cannot grow the table),
    and every broker_count() name. Histograms: request latency (the broker
    routed the request -> the provider's answer is forwarded), the
    duration of each journal write that makes a batch durable (writer.c),
    and how long the broker held each request and each reply it forwarded
    (its loop read it -> sent it on: the checks, its journal write, and
    whatever it waited behind; not the time it waited in the socket).

    --metrics HOST:PORT serves them from the broker's own loop on a
    ZMQ_STREAM socket speaking just enough HTTP/1.0: GET /metrics answers
    the text exposition format and closes the connection. Nothing secret is
    exposed: agency ids, dataset names, counts and times.
*/
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "broker.h"

#define S_CONNS_MAX 64             /* scrapers at once */
#define S_REQUEST_MAX 8192         /* bytes of one HTTP request */
#define S_CONN_IDLE_MS 10000       /* a scraper that sends nothing is dropped */

/* Upper bounds, seconds: from 0.1 ms, where a journal write on a fast
   disk falls, to 10 s. */
static const double s_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                  0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10};
#define S_BUCKETS (sizeof s_bounds / sizeof s_bounds[0])

typedef struct {
    uint64_t counts[S_BUCKETS + 1]; /* per bucket; the last is +Inf */
    uint64_t count;
    double sum;                     /* seconds */
} s_histogram_t;

typedef struct {
    zchunk_t *request;
    int64_t since;                  /* zclock_mono ms */
} s_conn_t;

/* The histograms: their key in status, their name and help in the
   metrics, in the order both give them. */
enum { S_LATENCY, S_COMMIT, S_HOLD_REQUEST, S_HOLD_REPLY, S_HISTOGRAMS };
static const struct {
    const char *key, *metric, *help;
} s_histograms[S_HISTOGRAMS] = {
    [S_LATENCY] = {"latency", "sharebus_request_duration_seconds",
                   "Time from routing a request to forwarding its provider's answer."},
    [S_COMMIT] = {"audit_commit", "sharebus_audit_commit_duration_seconds",
                  "Time to make one group of batches durable: its synchronous journal write."},
    [S_HOLD_REQUEST] = {"hold_request", "sharebus_request_hold_seconds",
                        "Time from reading a request to forwarding it: checks, its journal write, waits."},
    [S_HOLD_REPLY] = {"hold_reply", "sharebus_reply_hold_seconds",
                      "Time from reading a reply to forwarding it: checks, its journal write, waits."},
};

struct broker_metrics_t {
    zhashx_t *requests;             /* "consumer\tprovider\tdataset" -> uint64_t * */
    s_histogram_t histograms[S_HISTOGRAMS];
    zsock_t *http;
    zhashx_t *conns;                /* hex routing id -> s_conn_t */
    uint64_t started_ms;            /* wall clock */
};

/* --------------------------------------------------------- counting */

static void s_observe(s_histogram_t *h, int64_t usecs)
{
    double s = usecs > 0 ? (double) usecs / 1e6 : 0;
    size_t i = 0;
    while (i < S_BUCKETS && s > s_bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += s;
}

void broker_metrics_request(broker_t *self, const Sharebus__Header *h)
{
    broker_metrics_t *m = self->metrics;
    if (!m)
        return;
    const char *dataset = sbi_policy_dataset(self->policy, h->dataset) ? h->dataset : "-";
    const char *provider = sbi_trust_find(self->trust, h->to) ? h->to : "-";
    char key[3 * SBI_NAME_MAX + 3];
    snprintf(key, sizeof key, "%s\t%s\t%s", h->from, provider, dataset);
    uint64_t *n = zhashx_lookup(m->requests, key);
    if (!n) {
        n = calloc(1, sizeof *n);
        assert(n);
        zhashx_insert(m->requests, key, n);
    }
    (*n)++;
}

void broker_metrics_latency(broker_t *self, int64_t usecs)
{
    if (self->metrics)
        s_observe(&self->metrics->histograms[S_LATENCY], usecs);
}

void broker_metrics_commit(broker_t *self, int64_t usecs)
{
    if (self->metrics)
        s_observe(&self->metrics->histograms[S_COMMIT], usecs);
}

void broker_metrics_hold(broker_t *self, bool request, int64_t usecs)
{
    if (self->metrics)
        s_observe(&self->metrics->histograms[request ? S_HOLD_REQUEST : S_HOLD_REPLY], usecs);
}

/* ------------------------------------------------------- life cycle */

static void s_conn_free(void **item_p)
{
    s_conn_t *conn = *item_p;
    if (conn) {
        zchunk_destroy(&conn->request);
        free(conn);
        *item_p = NULL;
    }
}

int broker_metrics_endpoint(const char *host_port, char *endpoint, size_t size)
{
    const char *hp = strncmp(host_port, "tcp://", 6) == 0 ? host_port + 6 : host_port;
    const char *colon = strrchr(hp, ':');
    if (!colon || colon == hp || strlen(hp) > 255)
        return SB_EINVAL;
    if (hp[0] == '[' && colon[-1] != ']')
        return SB_EINVAL;   /* [v6]:port */
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || port < 1 || port > 65535)
        return SB_EINVAL;
    for (const char *c = hp; c < colon; c++)
        if (*c <= ' ' || *c == '/' || *c == '*')
            return SB_EINVAL;
    if (endpoint)
        snprintf(endpoint, size, "tcp://%s", hp);
    return SB_OK;
}

int broker_metrics_open(broker_t *self)
{
    broker_metrics_t *m = calloc(1, sizeof *m);
    assert(m);
    m->requests = zhashx_new();
    zhashx_set_destructor(m->requests, (zhashx_destructor_fn *) zstr_free);
    m->conns = zhashx_new();
    zhashx_set_destructor(m->conns, s_conn_free);
    m->started_ms = sbi_now_ms();
    self->metrics = m;
    if (!self->config.metrics)
        return 0;
    char endpoint[300];
    if (broker_metrics_endpoint(self->config.metrics, endpoint, sizeof endpoint) != SB_OK) {
        sbi_error("--metrics %s: not HOST:PORT", self->config.metrics);
        return -1;
    }
    m->http = zsock_new(ZMQ_STREAM);
    zsock_set_linger(m->http, 0);
    zsock_set_maxmsgsize(m->http, S_REQUEST_MAX);
    if (zsock_bind(m->http, "%s", endpoint) < 0) {
        sbi_error("cannot serve metrics on %s: %s", endpoint, zmq_strerror(zmq_errno()));
        return -1;
    }
    sbi_notice("metrics on http://%s/metrics", endpoint + 6);
    return 0;
}

void broker_metrics_close(broker_t *self)
{
    broker_metrics_t *m = self->metrics;
    if (!m)
        return;
    zsock_destroy(&m->http);
    zhashx_destroy(&m->conns);
    zhashx_destroy(&m->requests);
    free(m);
    self->metrics = NULL;
}

zsock_t *broker_metrics_socket(broker_t *self)
{
    return self->metrics ? self->metrics->http : NULL;
}

/* ------------------------------------------------- Prometheus text */

/* A label value with \, " and newlines escaped. */
static const char *s_label(const char *value, char *buf, size_t size)
{
    size_t n = 0;
    for (; *value && n + 3 < size; value++) {
        if (*value == '\\' || *value == '"' || *value == '\n') {
            buf[n++] = '\\';
            buf[n++] = *value == '\n' ? 'n' : *value;
        }
        else
            buf[n++] = *value;
    }
    buf[n] = 0;
    return buf;
}

/* A metric name part: [a-z0-9_] only. */
static const char *s_name(const char *text, char *buf, size_t size)
{
    size_t n = 0;
    for (; *text && n + 1 < size; text++)
        buf[n++] = (*text >= 'a' && *text <= 'z') || (*text >= '0' && *text <= '9') ? *text
                   : (*text >= 'A' && *text <= 'Z')                               ? *text + 32
                                                                                  : '_';
    buf[n] = 0;
    return buf;
}

static void s_family(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void s_histogram(FILE *out, const char *name, const char *help, const s_histogram_t *h)
{
    s_family(out, name, "histogram", help);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < S_BUCKETS; i++) {
        cumulative += h->counts[i];
        fprintf(out, "%s_bucket{le=\"%g\"} %llu\n", name, s_bounds[i],
                (unsigned long long) cumulative);
    }
    fprintf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long) h->count);
    fprintf(out, "%s_sum %.6f\n%s_count %llu\n", name, h->sum, name,
            (unsigned long long) h->count);
}

/* The keys of `hash`, sorted, for output that reads the same each time. */
static zlistx_t *s_sorted(zhashx_t *hash)
{
    zlistx_t *keys = zhashx_keys(hash);
    zlistx_set_comparator(keys, (zlistx_comparator_fn *) strcmp);
    zlistx_sort(keys);
    return keys;
}

static void s_gauge(FILE *out, const char *name, const char *help, double value)
{
    s_family(out, name, "gauge", help);
    fprintf(out, "%s %.17g\n", name, value);
}

/* What each broker_count() name counts, for # HELP. */
static const char *s_help(const char *counter)
{
    static const struct {
        const char *name, *help;
    } helps[] = {
        {"messages.received", "Messages received from agents on authenticated connections."},
        {"signatures.verified", "Ed25519 verifies of agents' signatures (one serves a batch)."},
        {"requests.routed", "Requests allowed, audited and forwarded to their provider."},
        {"replies.forwarded", "Providers' replies audited and forwarded to the consumer."},
        {"replies.refused", "Providers' refusals (ERROR answers) forwarded to the consumer."},
        {"requests.timeout", "Routed requests whose provider did not answer in time."},
        {"requests.unavailable", "Routed requests whose provider could not be reached."},
        {"consents.granted", "Consents recorded."},
        {"consents.revoked", "Consents revoked."},
        {"events.published", "Events queued for a subscriber."},
        {"events.delivered", "Events acknowledged by their subscriber's agent."},
    };
    for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++)
        if (strcmp(helps[i].name, counter) == 0)
            return helps[i].help;
    return counter;
}

static void s_render_counters(broker_t *self, FILE *out)
{
    broker_metrics_t *m = self->metrics;
    char a[SBI_NAME_MAX * 2], b[SBI_NAME_MAX * 2], c[SBI_NAME_MAX * 2], name[SBI_NAME_MAX * 2 + 32];
    s_family(out, "sharebus_requests_total", "counter",
             "Authenticated requests received, by consumer, provider and dataset "
             "(\"-\": not declared in the policy, or no certificate).");
    zlistx_t *keys = s_sorted(m->requests);
    for (char *key = zlistx_first(keys); key; key = zlistx_next(keys)) {
        char copy[3 * SBI_NAME_MAX + 3];
        snprintf(copy, sizeof copy, "%s", key);
        char *provider = strchr(copy, '\t'), *dataset = provider ? strchr(provider + 1, '\t') : NULL;
        if (!dataset)
            continue;
        *provider++ = 0;
        *dataset++ = 0;
        fprintf(out, "sharebus_requests_total{consumer=\"%s\",provider=\"%s\",dataset=\"%s\"} %llu\n",
                s_label(copy, a, sizeof a), s_label(provider, b, sizeof b),
                s_label(dataset, c, sizeof c),
                (unsigned long long) *(uint64_t *) zhashx_lookup(m->requests, key));
    }
    zlistx_destroy(&keys);

    s_family(out, "sharebus_refusals_total", "counter",
             "Messages and connections refused, by error kind.");
    keys = s_sorted(self->counters);
    for (char *key = zlistx_first(keys); key; key = zlistx_next(keys))
        if (strncmp(key, "refused.", 8) == 0)
            fprintf(out, "sharebus_refusals_total{error=\"%s\"} %llu\n",
                    s_label(key + 8, a, sizeof a),
                    (unsigned long long) *(uint64_t *) zhashx_lookup(self->counters, key));
    for (char *key = zlistx_first(keys); key; key = zlistx_next(keys)) {
        if (strncmp(key, "refused.", 8) == 0)
            continue;
        snprintf(name, sizeof name, "sharebus_%s_total", s_name(key, a, sizeof a));
        s_family(out, name, "counter", s_help(key));
        fprintf(out, "%s %llu\n", name,
                (unsigned long long) *(uint64_t *) zhashx_lookup(self->counters, key));
    }
    zlistx_destroy(&keys);
}

static void s_render_state(broker_t *self, FILE *out)
{
    char a[SBI_NAME_MAX * 2], hex[65];
    s_family(out, "sharebus_build_info", "gauge", "The broker's version.");
    fprintf(out, "sharebus_build_info{version=\"%s\"} 1\n", SHAREBUS_VERSION);
    s_gauge(out, "sharebus_start_time_seconds", "When the broker started (Unix time).",
            (double) self->metrics->started_ms / 1000);
    s_gauge(out, "sharebus_uptime_seconds", "Seconds since the broker started.",
            (double) (zclock_mono() - self->started) / 1000);
    s_family(out, "sharebus_policy_info", "gauge", "The version (hash) of the policy in force.");
    fprintf(out, "sharebus_policy_info{version=\"%s\"} 1\n",
            sbi_hex(sbi_policy_version(self->policy), 32, hex));
    s_gauge(out, "sharebus_connected_agencies", "Agencies the broker has a route to.",
            (double) zhashx_size(self->peers));
    s_family(out, "sharebus_agency_connected", "gauge",
             "1 for each connected agency, with the serial of the certificate it uses.");
    zlistx_t *keys = s_sorted(self->peers);
    for (char *agency = zlistx_first(keys); agency; agency = zlistx_next(keys))
        fprintf(out, "sharebus_agency_connected{agency=\"%s\",serial=\"%llu\"} 1\n",
                s_label(agency, a, sizeof a),
                (unsigned long long) broker_peer_serial(self, agency));
    zlistx_destroy(&keys);
    s_gauge(out, "sharebus_pending_requests", "Requests forwarded and not yet answered.",
            (double) zhashx_size(self->pending));
    s_gauge(out, "sharebus_audit_sequence", "Sequence number of the newest audit record.",
            (double) self->audit_seq);
    s_gauge(out, "sharebus_audit_checkpointed_sequence",
            "Sequence number of the newest signed checkpoint.", (double) self->checkpointed_seq);
    s_family(out, "sharebus_event_queue_depth", "gauge",
             "Events waiting for each subscriber, delivered or not, until acknowledged.");
    keys = s_sorted(self->queues);
    for (char *agency = zlistx_first(keys); agency; agency = zlistx_next(keys))
        fprintf(out, "sharebus_event_queue_depth{agency=\"%s\"} %llu\n",
                s_label(agency, a, sizeof a),
                (unsigned long long) broker_events_depth(self, agency));
    zlistx_destroy(&keys);
    size_t map_size, used;
    sbi_store_usage(self->store, &map_size, &used);
    s_gauge(out, "sharebus_store_map_bytes", "Size of the LMDB map.", (double) map_size);
    s_gauge(out, "sharebus_store_used_bytes", "Bytes of the LMDB map in use.", (double) used);
    s_gauge(out, "sharebus_store_map_max_bytes", "The largest the map may grow to (--map-max).",
            (double) (self->config.map_max ? self->config.map_max : (size_t) 64 << 30));
    s_gauge(out, "sharebus_store_full", "1 while the store cannot take audit records.",
            self->store_full ? 1 : 0);
}

char *broker_metrics_text(broker_t *self)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    assert(out);
    s_render_state(self, out);
    s_render_counters(self, out);
    for (int i = 0; i < S_HISTOGRAMS; i++)
        s_histogram(out, s_histograms[i].metric, s_histograms[i].help,
                    &self->metrics->histograms[i]);
    fclose(out);
    return text;
}

/* ------------------------------------------------------------ status */

/* The q-quantile in milliseconds, interpolated within its bucket. */
static double s_quantile(const s_histogram_t *h, double q)
{
    if (!h->count)
        return 0;
    double rank = q * (double) h->count, below = 0;
    for (size_t i = 0; i <= S_BUCKETS; i++) {
        if (below + (double) h->counts[i] >= rank && h->counts[i]) {
            double lo = i ? s_bounds[i - 1] : 0, hi = i < S_BUCKETS ? s_bounds[i] : lo;
            return 1000 * (lo + (hi - lo) * (rank - below) / (double) h->counts[i]);
        }
        below += (double) h->counts[i];
    }
    return 1000 * s_bounds[S_BUCKETS - 1];
}

static json_object *s_histogram_json(const s_histogram_t *h)
{
    json_object *obj = json_object_new_object();
    json_object_object_add(obj, "count", json_object_new_uint64(h->count));
    json_object_object_add(obj, "mean_ms",
                           json_object_new_double(h->count ? 1000 * h->sum / (double) h->count : 0));
    json_object_object_add(obj, "p50_ms", json_object_new_double(s_quantile(h, 0.5)));
    json_object_object_add(obj, "p90_ms", json_object_new_double(s_quantile(h, 0.9)));
    json_object_object_add(obj, "p99_ms", json_object_new_double(s_quantile(h, 0.99)));
    /* The buckets themselves, so that a script can take the difference of
       two readings: counts[i] is of (le_ms[i-1], le_ms[i]]; the last
       count is above the last bound. */
    json_object *le = json_object_new_array(), *counts = json_object_new_array();
    for (size_t i = 0; i <= S_BUCKETS; i++) {
        if (i < S_BUCKETS)
            json_object_array_add(le, json_object_new_double(1000 * s_bounds[i]));
        json_object_array_add(counts, json_object_new_uint64(h->counts[i]));
    }
    json_object_object_add(obj, "le_ms", le);
    json_object_object_add(obj, "counts", counts);
    return obj;
}

static void s_add(json_object *obj, const char *key, uint64_t n)
{
    json_object *old = NULL;
    uint64_t before = json_object_object_get_ex(obj, key, &old) ? json_object_get_uint64(old) : 0;
    json_object_object_add(obj, key, json_object_new_uint64(before + n));
}

void broker_metrics_status(broker_t *self, struct json_object *status)
{
    broker_metrics_t *m = self->metrics;
    json_object *requests = json_object_new_object(), *consumers = json_object_new_object(),
                *providers = json_object_new_object(), *datasets = json_object_new_object();
    uint64_t total = 0;
    for (uint64_t *n = zhashx_first(m->requests); n; n = zhashx_next(m->requests)) {
        char key[3 * SBI_NAME_MAX + 3];
        snprintf(key, sizeof key, "%s", (const char *) zhashx_cursor(m->requests));
        char *provider = strchr(key, '\t'), *dataset = provider ? strchr(provider + 1, '\t') : NULL;
        if (!dataset)
            continue;
        *provider++ = 0;
        *dataset++ = 0;
        s_add(consumers, key, *n);
        s_add(providers, provider, *n);
        s_add(datasets, dataset, *n);
        total += *n;
    }
    json_object_object_add(requests, "total", json_object_new_uint64(total));
    json_object_object_add(requests, "by_consumer", consumers);
    json_object_object_add(requests, "by_provider", providers);
    json_object_object_add(requests, "by_dataset", datasets);
    json_object_object_add(status, "requests", requests);
    json_object *refusals = json_object_new_object();
    for (uint64_t *n = zhashx_first(self->counters); n; n = zhashx_next(self->counters)) {
        const char *key = zhashx_cursor(self->counters);
        if (strncmp(key, "refused.", 8) == 0)
            json_object_object_add(refusals, key + 8, json_object_new_uint64(*n));
    }
    json_object_object_add(status, "refusals", refusals);
    for (int i = 0; i < S_HISTOGRAMS; i++)
        json_object_object_add(status, s_histograms[i].key, s_histogram_json(&m->histograms[i]));
    char when[32];
    json_object_object_add(status, "started",
                           json_object_new_string(sbi_time_format(m->started_ms, when, sizeof when)));
}

/* -------------------------------------------------------------- HTTP */

static void s_send(broker_metrics_t *m, zframe_t *id, const char *data, size_t size)
{
    zframe_t *to = zframe_dup(id), *frame = zframe_new(data, size);
    if (zframe_send(&to, m->http, ZFRAME_MORE | ZFRAME_DONTWAIT) != 0
        || zframe_send(&frame, m->http, ZFRAME_DONTWAIT) != 0) {
        zframe_destroy(&to);
        zframe_destroy(&frame);
    }
}

/* Closes the connection (after what was sent) and forgets it. */
static void s_close(broker_metrics_t *m, zframe_t *id, const char *key)
{
    s_send(m, id, NULL, 0);
    zhashx_delete(m->conns, key);
}

static void s_respond(broker_t *self, zframe_t *id, const char *key, int code, const char *body)
{
    broker_metrics_t *m = self->metrics;
    const char *reason = code == 200 ? "OK" : code == 404 ? "Not Found"
                         : code == 405 ? "Method Not Allowed" : "Bad Request";
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.0 %d %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"
                     "\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                     code, reason, strlen(body));
    size_t size = (size_t) n + strlen(body);
    char *response = malloc(size);
    assert(response);
    memcpy(response, head, (size_t) n);
    memcpy(response + n, body, strlen(body));
    s_send(m, id, response, size);
    free(response);
    s_close(m, id, key);
}

/* A whole request head arrived: answer it. */
static void s_serve(broker_t *self, zframe_t *id, const char *key, const char *request)
{
    char method[8] = "", path[256] = "";
    if (sscanf(request, "%7s %255s HTTP/1.%*c", method, path) != 2) {
        s_respond(self, id, key, 400, "bad request\n");
        return;
    }
    bool head = strcmp(method, "HEAD") == 0;
    if (strcmp(method, "GET") != 0 && !head) {
        s_respond(self, id, key, 405, "only GET\n");
        return;
    }
    if (strcmp(path, "/metrics") != 0 && strncmp(path, "/metrics?", 9) != 0) {
        s_respond(self, id, key, 404, "see /metrics\n");
        return;
    }
    char *text = broker_metrics_text(self);
    s_respond(self, id, key, 200, head ? "" : text);
    free(text);
}

/* Drops scrapers that have not sent a whole request in time. */
static void s_sweep(broker_metrics_t *m)
{
    int64_t now = zclock_mono();
    zlistx_t *keys = zhashx_keys(m->conns);
    for (char *key = zlistx_first(keys); key; key = zlistx_next(keys)) {
        s_conn_t *conn = zhashx_lookup(m->conns, key);
        if (now - conn->since > S_CONN_IDLE_MS) {
            uint8_t raw[256];
            size_t size = strlen(key) / 2;
            if (size <= sizeof raw && sodium_hex2bin(raw, sizeof raw, key, strlen(key), NULL,
                                                     &size, NULL) == 0) {
                zframe_t *id = zframe_new(raw, size);
                s_close(m, id, key);
                zframe_destroy(&id);
            }
            else
                zhashx_delete(m->conns, key);
        }
    }
    zlistx_destroy(&keys);
}

void broker_metrics_handle(broker_t *self)
{
    broker_metrics_t *m = self->metrics;
    zmsg_t *msg = zmsg_recv(m->http);
    zframe_t *id = msg ? zmsg_pop(msg) : NULL, *data = msg ? zmsg_pop(msg) : NULL;
    zmsg_destroy(&msg);
    if (!id || !data || zframe_size(id) > 128) {
        zframe_destroy(&id);
        zframe_destroy(&data);
        return;
    }
    char key[257];
    sbi_hex(zframe_data(id), zframe_size(id), key);
    s_conn_t *conn = zhashx_lookup(m->conns, key);
    if (zframe_size(data) == 0) {
        /* A connection opened, or closed. */
        if (conn)
            zhashx_delete(m->conns, key);
        else {
            s_sweep(m);
            if (zhashx_size(m->conns) >= S_CONNS_MAX)
                s_send(m, id, NULL, 0);
            else {
                conn = calloc(1, sizeof *conn);
                assert(conn);
                conn->request = zchunk_new(NULL, 512);
                conn->since = zclock_mono();
                zhashx_insert(m->conns, key, conn);
            }
        }
    }
    else if (conn) {
        if (zchunk_size(conn->request) + zframe_size(data) >= S_REQUEST_MAX)
            s_respond(self, id, key, 400, "request too long\n");
        else {
            zchunk_extend(conn->request, zframe_data(data), zframe_size(data));
            char text[S_REQUEST_MAX + 1];
            memcpy(text, zchunk_data(conn->request), zchunk_size(conn->request));
            text[zchunk_size(conn->request)] = 0;
            if (strlen(text) != zchunk_size(conn->request))
                s_respond(self, id, key, 400, "bad request\n");
            else if (strstr(text, "\r\n\r\n") || strstr(text, "\n\n"))
                s_serve(self, id, key, text);
        }
    }
    zframe_destroy(&id);
    zframe_destroy(&data);
}
