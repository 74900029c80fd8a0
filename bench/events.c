/*  events - event fan-out and catch-up, measured through libsharebus and
    the real broker and agents.

    events publish --agent EP --topic T --count N [--threads K] [--size B]
        K publishers (one client each) publish N events in all, each a
        record of about B bytes (default 256) about a different subject;
        sb_publish returns when the broker has queued every subscriber's
        view durably. Prints {"published","seconds","per_s","start","end"},
        the last two wall-clock times.

    events receive --agent EP --topic T --count N [--timeout S]
        Subscribes, acknowledges every event, and stops after N (or S
        seconds of silence). Prints {"received","seconds","per_s",
        "in_order","first","last"}: seconds from the first event to the
        last, whether each publisher's events came in its order, and the
        wall-clock times of the first and last event.

    events load --data DDIR --certs DIR --publisher ID --subscriber ID
                --topic T --count N [--size B]
        Writes N events from ID to the subscriber straight into the queue
        of a stopped broker whose --data is DDIR, in the broker's layout
        (broker/events.c: queue.events, key = agency, 0, seq u64 BE; value
        = the publisher's signed, sealed frame): a queue of an agent that
        was offline, without publishing N events first. Prints
        {"loaded","seconds"}. */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "envelope.h"
#include "sharebus.h"
#include "store.h"

typedef struct {
    const char *agent, *topic, *data, *certs, *publisher, *subscriber;
    long count, threads, size, timeout;
} s_args_t;

/* Wall-clock seconds: bench/run compares the times of several processes. */
static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The record of event `i`: the address-change fields, padded to `size`. */
static sb_record_t *s_record(long i, long size)
{
    sb_record_t *r = sb_record_new();
    char address[64];
    snprintf(address, sizeof address, "%ld Sejong-daero", i);
    sb_record_set_text(r, "new_address", address);
    sb_record_set_text(r, "moved_on", "2026-11-20");
    long pad = size > 64 ? size - 64 : 0;
    char *padding = malloc((size_t) pad + 1);
    memset(padding, 'x', (size_t) pad);
    padding[pad] = 0;
    sb_record_set_text(r, "previous_address", padding);
    free(padding);
    return r;
}

typedef struct {
    const s_args_t *a;
    long thread, first, count, failed;
} s_worker_t;

/* Subject ids name the publishing thread and the event's number in it
   ("E" tt nnnnnnn), so that a subscriber can check the order of each
   publisher's events. */
static void s_subject(char *subject, size_t size, long thread, long i)
{
    snprintf(subject, size, "E%02ld%07ld", thread, i);
}

static void *s_publisher(void *arg)
{
    s_worker_t *w = arg;
    sb_client_t *client = sb_client_new(w->a->agent);
    for (long i = w->first; client && i < w->first + w->count; i++) {
        char subject[24];
        s_subject(subject, sizeof subject, w->thread, i);
        sb_record_t *r = s_record(i, w->a->size);
        if (sb_publish(client, w->a->topic, subject, r) != SB_OK) {
            if (!w->failed)
                fprintf(stderr, "events: publish: %s\n", sb_client_reason(client));
            w->failed++;
        }
        sb_record_destroy(&r);
    }
    sb_client_destroy(&client);
    return NULL;
}

static int s_publish(const s_args_t *a)
{
    long k = a->threads > 0 ? a->threads : 1;
    pthread_t threads[64];
    s_worker_t workers[64];
    if (k > 64)
        k = 64;
    double start = s_now();
    for (long t = 0; t < k; t++) {
        workers[t] = (s_worker_t){a, t, a->count * t / k, a->count * (t + 1) / k - a->count * t / k, 0};
        pthread_create(&threads[t], NULL, s_publisher, &workers[t]);
    }
    long failed = 0;
    for (long t = 0; t < k; t++) {
        pthread_join(threads[t], NULL);
        failed += workers[t].failed;
    }
    double took = s_now() - start;
    printf("{\"published\":%ld,\"failed\":%ld,\"threads\":%ld,\"seconds\":%.3f,\"per_s\":%.1f,"
           "\"start\":%.3f,\"end\":%.3f}\n",
           a->count - failed, failed, k, took, (a->count - failed) / took, start, start + took);
    return failed ? 1 : 0;
}

static int s_receive(const s_args_t *a)
{
    sb_client_t *client = sb_client_new(a->agent);
    if (!client || sb_subscribe(client, a->topic) != SB_OK) {
        fprintf(stderr, "events: subscribe: %s\n", client ? sb_client_reason(client) : "endpoint");
        return 1;
    }
    long received = 0, last[100];
    for (int t = 0; t < 100; t++)
        last[t] = -1;
    bool in_order = true;
    double first = 0, latest = 0;
    while (received < a->count) {
        sb_event_t *event = NULL;
        int rc = sb_event_recv(client, &event, (int) (a->timeout * 1000));
        if (rc != SB_OK)
            break;
        latest = s_now();
        if (!received)
            first = latest;
        const char *subject = sb_event_subject(event);
        long thread = (subject[1] - '0') * 10 + (subject[2] - '0'), n = atol(subject + 3);
        if (strlen(subject) == 10 && thread >= 0 && thread < 100) {
            in_order = in_order && n > last[thread];
            last[thread] = n;
        } else
            in_order = false;
        received++;
        sb_event_ack(client, &event);
    }
    double took = received > 1 ? latest - first : 0;
    printf("{\"received\":%ld,\"seconds\":%.3f,\"per_s\":%.1f,\"in_order\":%s,"
           "\"first\":%.3f,\"last\":%.3f}\n",
           received, took, took > 0 ? received / took : 0.0, in_order ? "true" : "false", first,
           latest);
    sb_client_destroy(&client);
    return received == a->count ? 0 : 1;
}

/* ------------------------------------------------------------------ load */

/* The highest seq in the subscriber's queue (key prefix `key`), 0 when
   it is empty: loaded events go after what the broker queued. */
static uint64_t s_last_seq(sbi_store_t *store, MDB_dbi queue, uint8_t *key, size_t prefix)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cursor = NULL;
    uint64_t last = 0;
    if (sbi_store_begin(store, false, &txn) != SB_OK)
        return 0;
    sbi_be64_put(key + prefix, UINT64_MAX);
    MDB_val k = {prefix + 8, key}, v;
    mdb_cursor_open(txn, queue, &cursor);
    int mrc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
    mrc = mrc == 0 ? mdb_cursor_get(cursor, &k, &v, MDB_PREV)
                   : mdb_cursor_get(cursor, &k, &v, MDB_LAST);
    if (mrc == 0 && k.mv_size == prefix + 8 && memcmp(k.mv_data, key, prefix) == 0)
        last = sbi_be64_get((const uint8_t *) k.mv_data + prefix);
    mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
    return last;
}

static int s_load(const s_args_t *a)
{
    char path[4096], err[2 * sizeof path + 128];
    sbi_trust_t *trust = sbi_trust_new(a->certs, err, sizeof err);
    const sbi_cert_t *from = trust ? sbi_trust_find(trust, a->publisher) : NULL;
    const sbi_cert_t *to = trust ? sbi_trust_find(trust, a->subscriber) : NULL;
    sbi_crypto_t *crypto = NULL;
    snprintf(path, sizeof path, "%s/%s.key", a->certs, a->publisher);
    if (!from || !to) {
        fprintf(stderr, "events: certificates of %s/%s missing in %s\n", a->publisher,
                a->subscriber, a->certs);
        return 1;
    }
    if (sbi_crypto_load(path, from, &crypto, err, sizeof err) != SB_OK) {
        fprintf(stderr, "events: %s\n", err);
        return 1;
    }
    uint8_t subject_key[32];
    snprintf(path, sizeof path, "%s/subject.key", a->certs);
    if (sbi_secret_load(path, subject_key) != SB_OK)
        return 1;
    snprintf(path, sizeof path, "%s/store", a->data);
    sbi_store_t *store = sbi_store_open(path, 0, 0, 0, 32, err, sizeof err);
    MDB_dbi queue;
    if (!store || sbi_store_dbi(store, "queue.events", 0, &queue) != SB_OK) {
        fprintf(stderr, "events: %s: %s\n", path, err);
        return 1;
    }
    uint8_t key[SBI_AGENCY_MAX + 9];
    size_t prefix = strlen(a->subscriber) + 1;
    memcpy(key, a->subscriber, prefix);
    uint64_t base = s_last_seq(store, queue, key, prefix);
    double start = s_now();
    MDB_txn *txn = NULL;
    char *fields[] = {"new_address", "moved_on"};
    for (long i = 0; i < a->count; i++) {
        if (!txn && sbi_store_begin(store, true, &txn) != SB_OK)
            return 1;
        char subject[24];
        s_subject(subject, sizeof subject, 0, i);
        uint8_t ref[SBI_HASH_SIZE];
        if (sbi_subject_ref(subject_key, subject, ref) != SB_OK)
            return 1;
        Sharebus__Field f1 = SHAREBUS__FIELD__INIT, f2 = SHAREBUS__FIELD__INIT, *fs[] = {&f1, &f2};
        char address[64];
        snprintf(address, sizeof address, "%ld Sejong-daero", i);
        f1.name = "new_address";
        f1.value_case = SHAREBUS__FIELD__VALUE_TEXT;
        f1.text = address;
        f2.name = "moved_on";
        f2.value_case = SHAREBUS__FIELD__VALUE_TEXT;
        f2.text = "2026-11-20";
        Sharebus__Record record = SHAREBUS__RECORD__INIT;
        record.fields = fs;
        record.n_fields = 2;
        Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
        payload.subject_id = subject;
        payload.body_case = SHAREBUS__PAYLOAD__BODY_RECORD;
        payload.record = &record;
        sbi_header_t h;
        sbi_header_init(&h, SHAREBUS__KIND__KIND_EVENT, a->publisher, a->subscriber);
        h.header.dataset = (char *) a->topic;
        h.header.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, ref};
        h.header.fields = fields;
        h.header.n_fields = 2;
        zframe_t *frame = NULL;
        if (sbi_envelope_seal(crypto, to, &h.header, &payload, &frame) != SB_OK)
            return 1;
        sbi_be64_put(key + prefix, base + (uint64_t) i + 1);
        MDB_val k = {prefix + 8, key}, v = {zframe_size(frame), zframe_data(frame)};
        int mrc = mdb_put(txn, queue, &k, &v, 0);
        zframe_destroy(&frame);
        if (mrc == MDB_MAP_FULL) {
            mdb_txn_abort(txn);
            txn = NULL;
            if (sbi_store_grow(store) != SB_OK)
                return 1;
            i = (i / 10000) * 10000 - 1;   /* redo this batch */
            continue;
        }
        if (mrc != 0) {
            fprintf(stderr, "events: put: %s\n", mdb_strerror(mrc));
            return 1;
        }
        if ((i + 1) % 10000 == 0 || i + 1 == a->count) {
            if (mdb_txn_commit(txn) != 0)
                return 1;
            txn = NULL;
        }
    }
    printf("{\"loaded\":%ld,\"seconds\":%.3f}\n", a->count, s_now() - start);
    sbi_store_close(&store);
    sbi_crypto_destroy(&crypto);
    sbi_trust_destroy(&trust);
    return 0;
}

int main(int argc, char **argv)
{
    sbi_init();
    static const struct option options[] = {
        {"agent", required_argument, 0, 'a'},      {"topic", required_argument, 0, 't'},
        {"count", required_argument, 0, 'n'},      {"threads", required_argument, 0, 'k'},
        {"size", required_argument, 0, 's'},       {"timeout", required_argument, 0, 'T'},
        {"data", required_argument, 0, 'd'},       {"certs", required_argument, 0, 'c'},
        {"publisher", required_argument, 0, 'p'},  {"subscriber", required_argument, 0, 'S'},
        {0, 0, 0, 0}};
    s_args_t a = {.count = 10000, .threads = 4, .size = 256, .timeout = 30};
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'a': a.agent = optarg; break;
        case 't': a.topic = optarg; break;
        case 'n': a.count = atol(optarg); break;
        case 'k': a.threads = atol(optarg); break;
        case 's': a.size = atol(optarg); break;
        case 'T': a.timeout = atol(optarg); break;
        case 'd': a.data = optarg; break;
        case 'c': a.certs = optarg; break;
        case 'p': a.publisher = optarg; break;
        case 'S': a.subscriber = optarg; break;
        default: return 2;
        }
    }
    const char *mode = optind < argc ? argv[optind] : "";
    if (strcmp(mode, "publish") == 0 && a.agent && a.topic)
        return s_publish(&a);
    if (strcmp(mode, "receive") == 0 && a.agent && a.topic)
        return s_receive(&a);
    if (strcmp(mode, "load") == 0 && a.data && a.certs && a.publisher && a.subscriber && a.topic)
        return s_load(&a);
    fprintf(stderr, "usage: events publish|receive|load ... (see bench/events.c)\n");
    return 2;
}
