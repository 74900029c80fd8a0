/*  events.c - proactive sharing: events fanned out under policy, kept in a
    durable queue per subscriber until its agent acknowledges them.

    The publisher's agent sends one EVENT per subscriber, each sealed for
    that subscriber with only the fields the policy lets it see, so the
    broker never reads an event's content. The broker checks each against
    the policy's topic, appends it to the subscriber's queue and audits it
    in the same batch, and acknowledges it to the publisher once that batch
    is durable. Delivery is in order, at least once: a window of events is
    sent to the connected subscriber, each removed (and audited delivered)
    when its agent acknowledges it, and everything unacknowledged is sent
    again when the agent reconnects. The policy is checked again at
    delivery: an event queued for a subscription since withdrawn (or for
    fields since narrowed) leaves the queue undelivered, as event-refused.

    Database queue.events: subscriber agency, a zero byte, seq (u64 BE) ->
    the event's frame exactly as the publisher's agent sent it.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

/* Events in flight per subscriber. The agent acknowledges after its own
   commit (every 50 ms), so the window is what one commit can carry: a
   catching-up subscriber gets up to S_WINDOW events per agent commit. */
#define S_WINDOW 1024

typedef struct {
    uint64_t seq;
    uint8_t id[SBI_ID_SIZE];
    char publisher[SBI_AGENCY_MAX + 1];
    char topic[SBI_NAME_MAX + 1];
    uint8_t subject_ref[SBI_HASH_SIZE];
    char **fields;            /* the fields the event carries */
    size_t n_fields;
} s_inflight_t;

static void s_inflight_free(void **item_p)
{
    s_inflight_t *e = *item_p;
    if (e) {
        for (size_t i = 0; i < e->n_fields; i++)
            free(e->fields[i]);
        free(e->fields);
        free(e);
        *item_p = NULL;
    }
}

struct broker_queue_t {
    char agency[SBI_AGENCY_MAX + 1];
    uint64_t last_seq;            /* highest seq assigned */
    uint64_t depth;               /* events waiting, delivered or not */
    uint64_t sent_upto;           /* highest seq sent on this connection */
    zhashx_t *inflight;           /* hex event id -> s_inflight_t */
    zhashx_t *acked;              /* decimal seq of an event acknowledged -> the number of
                                     the batch deleting it, until LMDB has applied that
                                     batch: it is not sent again meanwhile */
    zlistx_t *acked_order;        /* the same seqs (char *), oldest batch first */
};

/* The acknowledgements owed to one publisher for the batch being built:
   one EVENT_ACK for up to SBI_ACKS_MAX events, sealed when the batch is
   handed to the writer and sent once it is durable. */
typedef struct {
    char agency[SBI_AGENCY_MAX + 1];
    zframe_t *routing;            /* the publisher's latest connection */
    size_t n;
    uint8_t ids[SBI_ACKS_MAX][SBI_ID_SIZE];
} s_acks_t;

static void s_acks_free(void **item_p)
{
    s_acks_t *a = *item_p;
    if (a) {
        zframe_destroy(&a->routing);
        free(a);
        *item_p = NULL;
    }
}

static size_t s_key(uint8_t *key, const char *agency, uint64_t seq)
{
    size_t n = strlen(agency);
    memcpy(key, agency, n + 1);
    sbi_be64_put(key + n + 1, seq);
    return n + 9;
}

static void s_queue_free(void **item_p)
{
    broker_queue_t *q = *item_p;
    if (q) {
        zhashx_destroy(&q->inflight);
        zhashx_destroy(&q->acked);
        zlistx_destroy(&q->acked_order);
        free(q);
        *item_p = NULL;
    }
}

static broker_queue_t *s_queue(broker_t *b, const char *agency)
{
    broker_queue_t *q = zhashx_lookup(b->queues, agency);
    if (!q) {
        q = calloc(1, sizeof *q);
        assert(q);
        snprintf(q->agency, sizeof q->agency, "%s", agency);
        q->inflight = zhashx_new();
        zhashx_set_destructor(q->inflight, s_inflight_free);
        q->acked = zhashx_new();
        q->acked_order = zlistx_new();
        zlistx_set_destructor(q->acked_order, (zlistx_destructor_fn *) zstr_free);
        zhashx_insert(b->queues, agency, q);
    }
    return q;
}

/* Opens the queue database. */
int broker_events_open(broker_t *b)
{
    b->queues = zhashx_new();
    zhashx_set_destructor(b->queues, s_queue_free);
    b->event_acks = zhashx_new();
    zhashx_set_destructor(b->event_acks, s_acks_free);
    return broker_dbi_open(b, "queue.events", 0, &b->queue_events);
}

/* Counts what every queue holds (after the journal is applied): at start,
   and again once a store that failed takes writes again. */
int broker_events_load(broker_t *b)
{
    MDB_txn *txn;
    int rc = sbi_store_begin(b->store, false, &txn);
    if (rc != SB_OK)
        return rc;
    for (broker_queue_t *q = zhashx_first(b->queues); q; q = zhashx_next(b->queues)) {
        q->depth = 0;
        zhashx_purge(q->acked);
        zlistx_purge(q->acked_order);
    }
    MDB_cursor *cursor;
    MDB_val key, value;
    mdb_cursor_open(txn, b->queue_events, &cursor);
    for (int mrc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)) {
        const char *agency = key.mv_data;
        size_t n = strnlen(agency, key.mv_size);
        if (n + 9 != key.mv_size || !sbi_agency_valid(agency, false))
            continue;   /* not a key we wrote */
        broker_queue_t *q = s_queue(b, agency);
        q->depth++;
        uint64_t seq = sbi_be64_get((const uint8_t *) key.mv_data + n + 1);
        q->last_seq = seq > q->last_seq ? seq : q->last_seq;
    }
    mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
    uint64_t total = 0;
    for (broker_queue_t *q = zhashx_first(b->queues); q; q = zhashx_next(b->queues))
        total += q->depth;
    if (total)
        sbi_notice("%llu queued event(s) waiting for %zu subscriber(s)",
                   (unsigned long long) total, zhashx_size(b->queues));
    return SB_OK;
}

void broker_events_close(broker_t *b)
{
    zhashx_destroy(&b->queues);
    zhashx_destroy(&b->event_acks);
}

/* Seals one EVENT_ACK for what `a` holds into the current batch. A
   publisher whose certificate is gone meanwhile gets none: its agent
   answers its back-end `timeout`, though the events are queued. */
static void s_acks_send(broker_t *b, s_acks_t *a)
{
    const sbi_cert_t *cert = sbi_trust_find(b->trust, a->agency);
    ProtobufCBinaryData more[SBI_ACKS_MAX - 1];
    if (cert && a->n > 0) {
        sbi_header_t ack;
        sbi_header_init(&ack, SHAREBUS__KIND__KIND_EVENT_ACK, "broker", a->agency);
        sbi_header_set_acks(&ack.header, a->ids, a->n, more);
        zframe_t *out = NULL;
        if (sbi_envelope_seal(b->crypto, cert, &ack.header, NULL, &out) == SB_OK)
            broker_forward(b, a->routing, &out, NULL, 0);
    }
    a->n = 0;
}

/* Event `id` is queued in the batch being built: its publisher hears so,
   with the batch's other events, once the batch is durable. */
static void s_ack_publisher(broker_t *b, const char *agency, const zframe_t *routing,
                            const uint8_t id[SBI_ID_SIZE])
{
    s_acks_t *a = zhashx_lookup(b->event_acks, agency);
    if (!a) {
        a = calloc(1, sizeof *a);
        assert(a);
        snprintf(a->agency, sizeof a->agency, "%s", agency);
        zhashx_insert(b->event_acks, agency, a);
    }
    if (!a->routing || !zframe_eq(a->routing, (zframe_t *) routing)) {
        zframe_destroy(&a->routing);
        a->routing = zframe_dup((zframe_t *) routing);
    }
    memcpy(a->ids[a->n++], id, SBI_ID_SIZE);
    if (a->n == SBI_ACKS_MAX)
        s_acks_send(b, a);
}

void broker_events_flush_acks(broker_t *b)
{
    for (s_acks_t *a = zhashx_first(b->event_acks); a; a = zhashx_next(b->event_acks))
        s_acks_send(b, a);
    zhashx_purge(b->event_acks);
}

/* Audits event `h` as `kind`: allowed (rc SB_OK), or denied for `reason`. */
static void s_audit_event(broker_t *b, Sharebus__AuditKind kind, const Sharebus__Header *h,
                          const sbi_envelope_t *env, int rc, const char *reason)
{
    Sharebus__AuditRecord r = SHAREBUS__AUDIT_RECORD__INIT;
    r.kind = kind;
    r.message_id = h->message_id;
    r.correlation_id = h->correlation_id;
    r.from = h->from;
    r.to = h->to;
    r.dataset = h->dataset;
    r.subject_ref = h->subject_ref;
    if (rc == SB_OK) {
        r.fields_delivered = h->fields;
        r.n_fields_delivered = h->n_fields;
        r.decision = SHAREBUS__DECISION__DECISION_ALLOW;
    }
    else {
        r.fields_requested = h->fields;
        r.n_fields_requested = h->n_fields;
        r.decision = SHAREBUS__DECISION__DECISION_DENY;
        r.error = sbi_error_kind(rc);
        r.reason = (char *) reason;
    }
    r.payload_hash = h->payload_hash;
    sbi_envelope_proof(env->envelope, &r);
    broker_audit(b, &r);
}

/* Whether the policy in force lets event `h` go from its publisher to its
   subscriber with the fields it carries: SB_OK, or the refusal and why. */
static int s_allowed(broker_t *b, const Sharebus__Header *h, char *reason, size_t size)
{
    const sbi_topic_t *topic = sbi_policy_topic(b->policy, h->dataset);
    const sbi_subscriber_t *sub = topic ? sbi_topic_subscriber(topic, h->to) : NULL;
    if (!topic) {
        snprintf(reason, size, "topic %s is not declared in the policy", h->dataset);
        return SB_ENODATASET;
    }
    if (strcmp(topic->publisher, h->from) != 0) {
        snprintf(reason, size, "%s is not the publisher of %s", h->from, h->dataset);
        return SB_EDENIED;
    }
    if (!sub) {
        snprintf(reason, size, "%s does not subscribe to %s", h->to, h->dataset);
        return SB_EDENIED;
    }
    for (size_t i = 0; i < h->n_fields; i++) {
        bool allowed = false;
        for (size_t j = 0; j < sub->n_fields && !allowed; j++)
            allowed = strcmp(sub->fields[j], h->fields[i]) == 0;
        if (!allowed) {
            snprintf(reason, size, "%s may not see field '%s' of %s", h->to, h->fields[i],
                     h->dataset);
            return SB_EFIELDS;
        }
    }
    return SB_OK;
}

/* An event from a publisher's agent for one subscriber. */
void broker_event_publish(broker_t *b, const sbi_cert_t *cert, const zframe_t *routing,
                          sbi_envelope_t *env, zframe_t *frame)
{
    const Sharebus__Header *h = env->header;
    char reason[300];
    int rc = SB_OK;
    if (h->subject_ref.len != SBI_HASH_SIZE || env->envelope->payload.len == 0) {
        rc = SB_EMALFORMED;
        snprintf(reason, sizeof reason, "an event needs a subject reference and a payload");
    }
    else
        rc = s_allowed(b, h, reason, sizeof reason);
    broker_queue_t *q = rc == SB_OK ? s_queue(b, h->to) : NULL;
    if (q && q->depth >= b->config.queue_max) {
        rc = SB_EFULL;
        snprintf(reason, sizeof reason, "the queue of %s is full (%llu events): %s is not "
                 "acknowledging", h->to, (unsigned long long) q->depth, h->to);
        sbi_warning("%s", reason);
    }
    if (rc != SB_OK) {
        broker_refuse(b, cert, routing, env,
                      rc == SB_EFULL ? SHAREBUS__AUDIT_KIND__AUDIT_EVENT_QUEUE_FULL
                                     : SHAREBUS__AUDIT_KIND__AUDIT_EVENT_REFUSED,
                      rc, reason);
        return;
    }
    uint8_t key[SBI_AGENCY_MAX + 9];
    size_t n = s_key(key, h->to, ++q->last_seq);
    broker_put(b, b->queue_events, key, n, zframe_data(frame), zframe_size(frame));
    b->apply_now = true;    /* the pump reads what LMDB has */
    q->depth++;
    s_audit_event(b, SHAREBUS__AUDIT_KIND__AUDIT_EVENT_PUBLISHED, h, env, SB_OK, NULL);
    broker_count(b, "events.published");

    s_ack_publisher(b, h->from, routing, h->message_id.data);
}

/* Event `seq` leaves queue `q` (its delete is in the batch). LMDB still
   has it until the batch is applied: a reconnection before then must not
   send it again (a second acknowledgement, a second record, and the depth
   counted down twice). */
static void s_leave(broker_t *b, broker_queue_t *q, uint64_t seq)
{
    uint8_t key[SBI_AGENCY_MAX + 9];
    broker_del(b, b->queue_events, key, s_key(key, q->agency, seq));
    char seq_key[24];
    snprintf(seq_key, sizeof seq_key, "%llu", (unsigned long long) seq);
    if (!zhashx_lookup(q->acked, seq_key)) {
        zhashx_insert(q->acked, seq_key, (void *) (uintptr_t) (b->submitted + 1));
        zlistx_add_end(q->acked_order, strdup(seq_key));
    }
    if (q->depth > 0)
        q->depth--;
}

/* Event `id`, in flight to queue `q`'s subscriber, is delivered: it
   leaves the queue, and `event-delivered` carries the acknowledgement's
   header and signature. */
static void s_delivered(broker_t *b, broker_queue_t *q, const uint8_t id[SBI_ID_SIZE],
                        sbi_envelope_t *env)
{
    char key_hex[33];
    s_inflight_t *e = zhashx_lookup(q->inflight, sbi_hex(id, SBI_ID_SIZE, key_hex));
    if (!e)
        return;     /* acknowledged already: duplicates are harmless */
    Sharebus__AuditRecord r = SHAREBUS__AUDIT_RECORD__INIT;
    r.kind = SHAREBUS__AUDIT_KIND__AUDIT_EVENT_DELIVERED;
    r.message_id = (ProtobufCBinaryData){SBI_ID_SIZE, e->id};
    r.from = e->publisher;
    r.to = q->agency;
    r.dataset = e->topic;
    r.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, e->subject_ref};
    r.fields_delivered = e->fields;
    r.n_fields_delivered = e->n_fields;
    r.decision = SHAREBUS__DECISION__DECISION_ALLOW;
    sbi_envelope_proof(env->envelope, &r);
    broker_audit(b, &r);
    s_leave(b, q, e->seq);
    zhashx_delete(q->inflight, key_hex);
    broker_count(b, "events.delivered");
}

/* A subscriber's agent acknowledges events (the one in correlation_id,
   and up to 255 more in acked_ids): they leave the queue. */
void broker_event_ack(broker_t *b, const sbi_cert_t *cert, sbi_envelope_t *env)
{
    const Sharebus__Header *h = env->header;
    broker_queue_t *q = zhashx_lookup(b->queues, cert->agency);
    if (!q || h->correlation_id.len != SBI_ID_SIZE)
        return;
    for (size_t i = 0; i <= h->n_acked_ids; i++)
        s_delivered(b, q, sbi_header_acked(h, i), env);
}

/* The agent (re)connected: everything unacknowledged goes again. */
void broker_events_reset(broker_t *b, const char *agency)
{
    broker_queue_t *q = zhashx_lookup(b->queues, agency);
    if (q) {
        q->sent_upto = 0;
        zhashx_purge(q->inflight);
    }
}

/* A batch did not commit: the events it was to deliver never left, so
   every queue starts again from its head (the agents drop duplicates). */
void broker_events_reset_all(broker_t *b)
{
    for (broker_queue_t *q = zhashx_first(b->queues); q; q = zhashx_next(b->queues)) {
        q->sent_upto = 0;
        zhashx_purge(q->inflight);
    }
}

/* Event `seq` of queue `q`, which the policy in force no longer lets its
   subscriber receive (`rc`, `reason`): it leaves the queue undelivered. */
static void s_withdrawn(broker_t *b, broker_queue_t *q, uint64_t seq, const sbi_envelope_t *env,
                        int rc, const char *reason)
{
    char why[400];
    snprintf(why, sizeof why, "dropped from the queue of %s: %s", q->agency, reason);
    s_audit_event(b, SHAREBUS__AUDIT_KIND__AUDIT_EVENT_REFUSED, env->header, env, rc, why);
    s_leave(b, q, seq);
    sbi_info("event %s", why);
    broker_count(b, "events.withdrawn");
}

/* Sends the next events of one queue, up to the window. Reads only what
   is committed, so nothing leaves before its audit record is durable. */
static void s_pump(broker_t *b, MDB_txn *txn, broker_queue_t *q, broker_peer_t *peer)
{
    uint8_t kbuf[SBI_AGENCY_MAX + 9];
    MDB_val key = {s_key(kbuf, q->agency, q->sent_upto + 1), kbuf}, value;
    MDB_cursor *cursor;
    mdb_cursor_open(txn, b->queue_events, &cursor);
    size_t prefix = strlen(q->agency) + 1;
    int mrc = mdb_cursor_get(cursor, &key, &value, MDB_SET_RANGE);
    for (; mrc == 0 && zhashx_size(q->inflight) < S_WINDOW;
         mrc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)) {
        if (key.mv_size != prefix + 8 || memcmp(key.mv_data, q->agency, prefix) != 0)
            break;
        uint64_t seq = sbi_be64_get((const uint8_t *) key.mv_data + prefix);
        char seq_key[24];
        snprintf(seq_key, sizeof seq_key, "%llu", (unsigned long long) seq);
        if (zhashx_lookup(q->acked, seq_key)) {
            q->sent_upto = seq;     /* acknowledged; its delete is not applied yet */
            continue;
        }
        sbi_envelope_t env;
        char reason[300];
        bool decoded = sbi_envelope_decode(&env, value.mv_data, value.mv_size) == SB_OK;
        int rc = decoded ? s_allowed(b, env.header, reason, sizeof reason) : SB_EMALFORMED;
        if (decoded && rc != SB_OK)
            s_withdrawn(b, q, seq, &env, rc, reason);
        else if (rc == SB_OK) {
            s_inflight_t *e = calloc(1, sizeof *e);
            assert(e);
            e->seq = seq;
            memcpy(e->id, env.header->message_id.data, SBI_ID_SIZE);
            snprintf(e->publisher, sizeof e->publisher, "%s", env.header->from);
            snprintf(e->topic, sizeof e->topic, "%s", env.header->dataset);
            memcpy(e->subject_ref, env.header->subject_ref.data, SBI_HASH_SIZE);
            e->fields = calloc(env.header->n_fields + 1, sizeof *e->fields);
            assert(e->fields);
            for (size_t i = 0; i < env.header->n_fields; i++)
                e->fields[i] = strdup(env.header->fields[i]);
            e->n_fields = env.header->n_fields;
            char hex[33];
            zhashx_update(q->inflight, sbi_hex(e->id, SBI_ID_SIZE, hex), e);
            zframe_t *frame = zframe_new(value.mv_data, value.mv_size);
            broker_forward(b, peer->routing, &frame, NULL, 0);
        }
        sbi_envelope_clear(&env);
        q->sent_upto = seq;
    }
    mdb_cursor_close(cursor);
}

/* Forgets the acknowledged events whose deletes LMDB has applied. */
static void s_prune_acked(broker_t *b, broker_queue_t *q)
{
    char *seq;
    while ((seq = zlistx_first(q->acked_order))
           && (uintptr_t) zhashx_lookup(q->acked, seq) <= b->applied) {
        zhashx_delete(q->acked, seq);
        zlistx_delete(q->acked_order, zlistx_cursor(q->acked_order));
    }
}

void broker_events_pump(broker_t *b)
{
    MDB_txn *txn = NULL;
    for (broker_queue_t *q = zhashx_first(b->queues); q; q = zhashx_next(b->queues)) {
        if (zhashx_size(q->acked))
            s_prune_acked(b, q);
        broker_peer_t *peer = q->depth > zhashx_size(q->inflight)
                                  ? broker_peer_valid(b, q->agency) : NULL;
        if (!peer || zhashx_size(q->inflight) >= S_WINDOW)
            continue;
        if (!txn && sbi_store_read_begin(b->store, &txn) != SB_OK)
            return;
        s_pump(b, txn, q, peer);
    }
    sbi_store_read_end(b->store, &txn);
    broker_flush(b);
}

uint64_t broker_events_depth(broker_t *b, const char *agency)
{
    broker_queue_t *q = zhashx_lookup(b->queues, agency);
    return q ? q->depth : 0;
}
