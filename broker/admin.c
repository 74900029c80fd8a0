/*  admin.c - the broker's admin socket, DDIR/admin.sock: only the broker's
    own user can reach it (the socket file is mode 0600). Commands:
      RELOAD  -> "OK" VERSION | "FAIL" ERROR...
      STATUS  -> "OK" JSON
    and the printing of a STATUS answer for people.
*/
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "broker.h"

int broker_admin_open(broker_t *self)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/admin.sock", self->config.data);
    self->admin = zsock_new(ZMQ_REP);
    mode_t old = umask(0077);
    int rc = zsock_bind(self->admin, "ipc://%s", path);
    umask(old);
    if (rc < 0) {
        sbi_error("cannot bind the admin socket %s: %s", path, zmq_strerror(zmq_errno()));
        return -1;
    }
    chmod(path, 0600);
    return broker_metrics_open(self);
}

const sbi_cert_t *broker_peer_cert(broker_t *self, const char *agency)
{
    broker_peer_t *peer = zhashx_lookup(self->peers, agency);
    if (!peer)
        return NULL;
    static const uint8_t none[32] = {0};
    const sbi_cert_t *cert = memcmp(peer->curve, none, 32) != 0
                                 ? sbi_trust_by_curve(self->trust, peer->curve) : NULL;
    return cert && strcmp(cert->agency, agency) == 0 ? cert : sbi_trust_find(self->trust, agency);
}

uint64_t broker_peer_serial(broker_t *self, const char *agency)
{
    const sbi_cert_t *cert = broker_peer_cert(self, agency);
    return cert ? cert->serial : 0;
}

/* Bytes of DDIR/store/data.mdb on disk. */
static uint64_t s_file_size(broker_t *self)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/store/data.mdb", self->config.data);
    return stat(path, &st) == 0 ? (uint64_t) st.st_blocks * 512 : 0;
}

static json_object *s_status(broker_t *self)
{
    char hex[65];
    json_object *obj = json_object_new_object();
    json_object_object_add(obj, "uptime_s",
                           json_object_new_int64((zclock_mono() - self->started) / 1000));
    json_object_object_add(obj, "policy_version", json_object_new_string(
        sbi_hex(sbi_policy_version(self->policy), 32, hex)));
    json_object *agencies = json_object_new_array();
    for (broker_peer_t *p = zhashx_first(self->peers); p; p = zhashx_next(self->peers))
        json_object_array_add(agencies, json_object_new_string(p->agency));
    json_object_object_add(obj, "connected", agencies);
    json_object_object_add(obj, "audit_seq",
                           json_object_new_uint64(self->audit_seq));
    json_object_object_add(obj, "pending_requests",
                           json_object_new_uint64(zhashx_size(self->pending)));
    size_t map_size, used;
    sbi_store_usage(self->store, &map_size, &used);
    json_object_object_add(obj, "store_map_bytes", json_object_new_uint64(map_size));
    json_object_object_add(obj, "store_used_bytes", json_object_new_uint64(used));
    json_object_object_add(obj, "store_full", json_object_new_boolean(self->store_full));
    json_object *counters = json_object_new_object();
    for (uint64_t *n = zhashx_first(self->counters); n; n = zhashx_next(self->counters))
        json_object_object_add(counters, zhashx_cursor(self->counters), json_object_new_uint64(*n));
    json_object_object_add(obj, "counters", counters);

    /* Over copies of the keys: a lookup disturbs a table's iteration. */
    json_object *connections = json_object_new_object();
    zlistx_t *keys = zhashx_keys(self->peers);
    for (const char *agency = zlistx_first(keys); agency; agency = zlistx_next(keys)) {
        json_object *c = json_object_new_object();
        json_object_object_add(c, "serial",
                               json_object_new_uint64(broker_peer_serial(self, agency)));
        json_object_object_add(connections, agency, c);
    }
    zlistx_destroy(&keys);
    json_object_object_add(obj, "connections", connections);
    json_object_object_add(obj, "audit_checkpointed_seq",
                           json_object_new_uint64(self->checkpointed_seq));
    json_object *queues = json_object_new_object();
    keys = zhashx_keys(self->queues);
    for (const char *agency = zlistx_first(keys); agency; agency = zlistx_next(keys))
        json_object_object_add(queues, agency,
                               json_object_new_uint64(broker_events_depth(self, agency)));
    zlistx_destroy(&keys);
    json_object_object_add(obj, "event_queues", queues);
    size_t map_max = self->config.map_max ? self->config.map_max : (size_t) 64 << 30;
    json_object_object_add(obj, "store_map_max_bytes", json_object_new_uint64(map_max));
    json_object_object_add(obj, "store_file_bytes", json_object_new_uint64(s_file_size(self)));
    json_object_object_add(obj, "store_use_percent",
                           json_object_new_double(map_size ? 100.0 * (double) used
                                                                 / (double) map_size : 0));
    if (self->config.metrics)
        json_object_object_add(obj, "metrics", json_object_new_string(self->config.metrics));
    broker_metrics_status(self, obj);
    return obj;
}

void broker_admin_handle(broker_t *self)
{
    char *command = zstr_recv(self->admin);
    if (!command)
        return;
    if (strcmp(command, "RELOAD") == 0) {
        zlistx_t *errors = zlistx_new();
        zlistx_set_destructor(errors, (zlistx_destructor_fn *) zstr_free);
        if (broker_reload(self, errors) == 0) {
            char hex[65];
            zstr_sendx(self->admin, "OK", sbi_hex(sbi_policy_version(self->policy), 32, hex), NULL);
        }
        else {
            zmsg_t *reply = zmsg_new();
            zmsg_addstr(reply, "FAIL");
            for (char *e = zlistx_first(errors); e; e = zlistx_next(errors))
                zmsg_addstr(reply, e);
            zmsg_send(&reply, self->admin);
        }
        zlistx_destroy(&errors);
    }
    else if (strcmp(command, "STATUS") == 0) {
        /* The store as of now: LMDB commits what the journal holds first
           (a few milliseconds), so audit_seq counts every record made. */
        if (!self->store_full)
            broker_sync(self);
        json_object *status = s_status(self);
        zstr_sendx(self->admin, "OK", json_object_to_json_string_ext(status, JSON_C_TO_STRING_PLAIN),
                   NULL);
        json_object_put(status);
    }
    else
        zstr_sendx(self->admin, "FAIL", "unknown admin command", NULL);
    zstr_free(&command);
}

/* ------------------------------------------- a STATUS answer, for people */

static json_object *s_get(json_object *obj, const char *key)
{
    json_object *value = NULL;
    return json_object_object_get_ex(obj, key, &value) ? value : NULL;
}

static uint64_t s_u64(json_object *obj, const char *key)
{
    json_object *value = s_get(obj, key);
    return value ? json_object_get_uint64(value) : 0;
}

static const char *s_bytes(double n, char *buf, size_t size)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t u = 0;
    while (n >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        n /= 1024;
        u++;
    }
    snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", n, units[u]);
    return buf;
}

/* "koroad 3, nhis 2" from {"koroad": 3, "nhis": 2}, keys sorted. */
static void s_pairs(FILE *out, const char *label, json_object *obj)
{
    fprintf(out, "%-18s", label);
    zlistx_t *keys = zlistx_new();
    zlistx_set_comparator(keys, (zlistx_comparator_fn *) strcmp);
    if (obj && json_object_is_type(obj, json_type_object)) {
        json_object_object_foreach(obj, key, value)
        {
            (void) value;
            zlistx_add_end(keys, key);
        }
    }
    zlistx_sort(keys);
    const char *sep = "";
    for (const char *key = zlistx_first(keys); key; key = zlistx_next(keys), sep = ", ")
        fprintf(out, "%s%s %llu", sep, key, (unsigned long long) s_u64(obj, key));
    fprintf(out, "%s\n", zlistx_size(keys) ? "" : "none");
    zlistx_destroy(&keys);
}

static void s_latency(FILE *out, const char *label, json_object *h, const char *what)
{
    if (!h || !s_u64(h, "count")) {
        fprintf(out, "%-18snone yet\n", label);
        return;
    }
    double p50 = json_object_get_double(s_get(h, "p50_ms")),
           p90 = json_object_get_double(s_get(h, "p90_ms")),
           p99 = json_object_get_double(s_get(h, "p99_ms"));
    fprintf(out, "%-18sp50 %.2f ms, p90 %.2f ms, p99 %.2f ms over %llu %s\n", label, p50, p90,
            p99, (unsigned long long) s_u64(h, "count"), what);
}

void broker_status_print(FILE *out, json_object *st)
{
    char a[32], b[32], c[32], d[32];
    json_object *counters = s_get(st, "counters"), *requests = s_get(st, "requests");
    uint64_t up = s_u64(st, "uptime_s");
    json_object *started = s_get(st, "started");
    fprintf(out, "%-18s%llud %02lluh %02llum %02llus (since %s)\n", "uptime",
            (unsigned long long) up / 86400, (unsigned long long) up / 3600 % 24,
            (unsigned long long) up / 60 % 60, (unsigned long long) up % 60,
            started ? json_object_get_string(started) : "?");
    json_object *version = s_get(st, "policy_version");
    fprintf(out, "%-18s%s\n", "policy version", version ? json_object_get_string(version) : "?");
    json_object *connections = s_get(st, "connections");
    fprintf(out, "%-18s", "connected");
    zlistx_t *keys = zlistx_new();
    zlistx_set_comparator(keys, (zlistx_comparator_fn *) strcmp);
    if (connections) {
        json_object_object_foreach(connections, agency, conn)
        {
            (void) conn;
            zlistx_add_end(keys, agency);
        }
    }
    zlistx_sort(keys);
    const char *sep = "";
    for (const char *id = zlistx_first(keys); id; id = zlistx_next(keys), sep = ", ")
        fprintf(out, "%s%s (serial %llu)", sep, id,
                (unsigned long long) s_u64(s_get(connections, id), "serial"));
    fprintf(out, "%s\n", zlistx_size(keys) ? "" : "none");
    zlistx_destroy(&keys);
    fprintf(out, "%-18s%llu: routed %llu, pending %llu\n", "requests",
            (unsigned long long) s_u64(requests, "total"),
            (unsigned long long) s_u64(counters, "requests.routed"),
            (unsigned long long) s_u64(st, "pending_requests"));
    s_pairs(out, "  by consumer", s_get(requests, "by_consumer"));
    s_pairs(out, "  by provider", s_get(requests, "by_provider"));
    s_pairs(out, "  by dataset", s_get(requests, "by_dataset"));
    fprintf(out, "%-18sforwarded %llu, provider errors %llu, timed out %llu, unreachable %llu\n",
            "answers", (unsigned long long) s_u64(counters, "replies.forwarded"),
            (unsigned long long) s_u64(counters, "replies.refused"),
            (unsigned long long) s_u64(counters, "requests.timeout"),
            (unsigned long long) s_u64(counters, "requests.unavailable"));
    s_pairs(out, "refusals", s_get(st, "refusals"));
    fprintf(out, "%-18spublished %llu, delivered %llu\n", "events",
            (unsigned long long) s_u64(counters, "events.published"),
            (unsigned long long) s_u64(counters, "events.delivered"));
    s_pairs(out, "event queues", s_get(st, "event_queues"));
    fprintf(out, "%-18sseq %llu, checkpointed %llu\n", "audit",
            (unsigned long long) s_u64(st, "audit_seq"),
            (unsigned long long) s_u64(st, "audit_checkpointed_seq"));
    json_object *percent = s_get(st, "store_use_percent");
    fprintf(out, "%-18s%s used of a %s map (%.1f%%), file %s, limit %s%s\n", "store",
            s_bytes((double) s_u64(st, "store_used_bytes"), a, sizeof a),
            s_bytes((double) s_u64(st, "store_map_bytes"), b, sizeof b),
            percent ? json_object_get_double(percent) : 0.0,
            s_bytes((double) s_u64(st, "store_file_bytes"), c, sizeof c),
            s_bytes((double) s_u64(st, "store_map_max_bytes"), d, sizeof d),
            json_object_get_boolean(s_get(st, "store_full")) ? "; FULL: refusing traffic" : "");
    s_latency(out, "latency", s_get(st, "latency"), "answers");
    s_latency(out, "audit commits", s_get(st, "audit_commit"), "commits");
    s_latency(out, "requests held", s_get(st, "hold_request"), "forwarded");
    s_latency(out, "replies held", s_get(st, "hold_reply"), "forwarded");
    json_object *metrics = s_get(st, "metrics");
    if (metrics) {
        const char *hp = json_object_get_string(metrics);
        fprintf(out, "%-18shttp://%s/metrics\n", "metrics",
                strncmp(hp, "tcp://", 6) == 0 ? hp + 6 : hp);
    }
}
