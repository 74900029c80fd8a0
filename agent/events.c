/*  events.c - the agent's side of proactive sharing.

    Publishing: one EVENT per subscriber the policy names, each carrying
    only the fields that subscriber may see, sealed for it; the back-end's
    sb_publish returns when the broker has durably queued every one.

    Subscribing: events arrive in order, at least once. An event already
    acknowledged (kept by id in the agent's store) is acknowledged again and
    dropped, so a back-end sees each event once. The agent acknowledges an
    event to the broker only after its back-end has, and after the agent has
    recorded that durably.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "record.h"

#define S_VIEW_WAIT_MS 5000    /* the broker has this long to queue a view */

struct agent_publication_t {
    zframe_t *client;
    uint64_t client_id;
    size_t remaining;         /* views not yet acknowledged or refused */
    int code;
    char reason[300];
};

typedef struct {
    uint8_t id[SBI_ID_SIZE];
    char hex[2 * SBI_ID_SIZE + 1];
    char token_key[24];       /* decimal token, the key in inbox_index too */
    uint64_t token;
    void *handle;             /* its place in the inbox list */
    bool sent;                /* handed to the current back-end */
    Sharebus__Payload *payload;
    char *topic;
    char *publisher;
    uint64_t published_ms;
} s_event_t;

static void s_event_free(void **item_p)
{
    s_event_t *e = *item_p;
    if (e) {
        sharebus__payload__free_unpacked(e->payload, NULL);
        free(e->topic);
        free(e->publisher);
        free(e);
        *item_p = NULL;
    }
}

int agent_events_open(agent_t *self)
{
    self->subscriptions = zhashx_new();
    zhashx_set_destructor(self->subscriptions, (zhashx_destructor_fn *) zframe_destroy);
    self->inbox = zlistx_new();
    zlistx_set_destructor(self->inbox, s_event_free);
    self->inbox_index = zhashx_new();   /* hex id and decimal token -> event */
    self->marked = zhashx_new();
    return sbi_store_dbi(self->store, "events.seen", 0, &self->events_seen);
}

void agent_events_close(agent_t *self)
{
    zhashx_destroy(&self->subscriptions);
    zhashx_destroy(&self->inbox_index);
    zlistx_destroy(&self->inbox);
    zhashx_destroy(&self->marked);
}

/* ----------------------------------------------------------- publishing */

static void s_publication_done(agent_t *self, agent_publication_t *pub)
{
    agent_front_result(self, pub->client, pub->client_id, pub->code,
                       pub->code == SB_OK ? NULL : pub->reason, NULL);
    zframe_destroy(&pub->client);
    free(pub);
}

/* One view of a publication is settled (acknowledged with SB_OK, refused,
   or timed out); the back-end hears when all are. */
void agent_publication_settle(agent_t *self, agent_pending_t *p, int code, const char *reason)
{
    agent_publication_t *pub = p->pub;
    p->pub = NULL;
    if (code != SB_OK && pub->code == SB_OK) {
        pub->code = code;
        snprintf(pub->reason, sizeof pub->reason, "%s", reason ? reason : sb_strerror(code));
    }
    if (--pub->remaining == 0)
        s_publication_done(self, pub);
}

/* The view of `record` a subscriber may see; `kept` has room for all. */
static Sharebus__Record s_view(const Sharebus__Record *record, const sbi_subscriber_t *sub,
                               Sharebus__Field **kept, char **names)
{
    Sharebus__Record view = SHAREBUS__RECORD__INIT;
    view.fields = kept;
    for (size_t i = 0; i < record->n_fields; i++)
        for (size_t j = 0; j < sub->n_fields; j++)
            if (strcmp(record->fields[i]->name, sub->fields[j]) == 0) {
                names[view.n_fields] = record->fields[i]->name;
                kept[view.n_fields++] = record->fields[i];
                break;
            }
    return view;
}

void agent_publish(agent_t *self, zframe_t *client, uint64_t id, const Sharebus__ClientPublish *c,
                   uint64_t expires_ms)
{
    static const Sharebus__Record empty = SHAREBUS__RECORD__INIT;
    const Sharebus__Record *record = c->record ? c->record : &empty;
    const sbi_topic_t *topic = self->policy ? sbi_policy_topic(self->policy, c->topic) : NULL;
    uint8_t ref[SBI_HASH_SIZE];
    char reason[300];
    int rc = SB_OK;
    if (!self->policy) {
        rc = SB_EUNAVAILABLE;
        snprintf(reason, sizeof reason, "the agent has not received the policy yet");
    }
    else if (!topic) {
        rc = SB_ENODATASET;
        snprintf(reason, sizeof reason, "topic %s is not declared in the policy", c->topic);
    }
    else if (strcmp(topic->publisher, self->config.agency) != 0) {
        rc = SB_EDENIED;
        snprintf(reason, sizeof reason, "%s is not the publisher of %s", self->config.agency,
                 c->topic);
    }
    else if (!sbi_record_pb_valid(record) || strlen(c->subject_id) > SBI_SUBJECT_MAX
             || sbi_subject_ref(self->subject_key, c->subject_id, ref) != SB_OK) {
        rc = SB_EINVAL;
        snprintf(reason, sizeof reason,
                 "an event needs a subject id of 1-64 characters and a well-formed record");
    }
    if (rc != SB_OK) {
        sbi_header_t h;
        sbi_header_init(&h, SHAREBUS__KIND__KIND_EVENT, self->config.agency, "broker");
        h.header.dataset = c->topic;
        h.header.error = sbi_error_kind(rc);
        h.header.reason = reason;
        agent_log(self, SHAREBUS__AUDIT_KIND__AUDIT_EVENT_REFUSED, &h.header, NULL);
        agent_front_result(self, client, id, rc, reason, NULL);
        return;
    }
    agent_publication_t *pub = calloc(1, sizeof *pub);
    assert(pub);
    pub->client = zframe_dup(client);
    pub->client_id = id;
    pub->remaining = 1;     /* held until every view is sent */
    uint8_t publication[SBI_ID_SIZE];
    sbi_id_new(publication);
    Sharebus__Field **kept = calloc(record->n_fields + 1, sizeof *kept);
    char **names = calloc(record->n_fields + 1, sizeof *names);
    assert(kept && names);
    for (size_t i = 0; i < topic->n_subscribers; i++) {
        const sbi_subscriber_t *sub = &topic->subscribers[i];
        const sbi_cert_t *cert = sbi_trust_find(self->trust, sub->agency);
        Sharebus__Record view = s_view(record, sub, kept, names);
        sbi_header_t h;
        sbi_header_init(&h, SHAREBUS__KIND__KIND_EVENT, self->config.agency, sub->agency);
        h.header.dataset = c->topic;
        h.header.correlation_id = (ProtobufCBinaryData){SBI_ID_SIZE, publication};
        h.header.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, ref};
        /* Within sb_publish's own wait: 5 s, or what is left of it. The
           broker queues no view after that (stale): the back-end, told
           timeout, may publish again without the change arriving twice. */
        h.header.expires_ms = agent_expires(h.header.created_ms, S_VIEW_WAIT_MS, expires_ms);
        h.header.fields = names;
        h.header.n_fields = view.n_fields;
        Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
        payload.subject_id = c->subject_id;
        payload.body_case = SHAREBUS__PAYLOAD__BODY_RECORD;
        payload.record = &view;
        rc = cert ? agent_send(self, cert, &h.header, &payload) : SB_EUNKNOWN;
        if (rc != SB_OK) {
            if (pub->code == SB_OK) {   /* the back-end hears of the first failure */
                pub->code = rc;
                snprintf(pub->reason, sizeof pub->reason, "cannot send the event to %s: %s",
                         sub->agency, sb_strerror(rc));
            }
            continue;
        }
        agent_pending_t *p = calloc(1, sizeof *p);
        assert(p);
        p->pub = pub;
        uint64_t left = h.header.expires_ms > h.header.created_ms
                            ? h.header.expires_ms - h.header.created_ms : 0;
        p->deadline = zclock_mono() + (int64_t) left;
        pub->remaining++;
        char key[33];
        zhashx_update(self->pending, sbi_hex(h.message_id, SBI_ID_SIZE, key), p);
    }
    free(kept);
    free(names);
    if (--pub->remaining == 0)
        s_publication_done(self, pub);
}

/* --------------------------------------------------------- subscribing */

/* One mark of `hex` fewer among the batches not committed. */
static void s_unmark(agent_t *self, const char *hex)
{
    uintptr_t marks = (uintptr_t) zhashx_lookup(self->marked, hex);
    if (marks > 1)
        zhashx_update(self->marked, hex, (void *) (marks - 1));
    else
        zhashx_delete(self->marked, hex);
}

/* Seen: marked in a batch not committed yet, or in the store. */
static bool s_seen(agent_t *self, const uint8_t id[SBI_ID_SIZE], const char *hex)
{
    if (zhashx_lookup(self->marked, hex))
        return true;
    MDB_txn *txn;
    bool seen = false;
    if (sbi_store_read_begin(self->store, &txn) == SB_OK) {
        MDB_val key = {SBI_ID_SIZE, (void *) id}, value;
        seen = mdb_get(txn, self->events_seen, &key, &value) == 0;
        sbi_store_read_end(self->store, &txn);
    }
    return seen;
}

/* Marks event `id` seen in the open batch, so that a copy the broker sends
   again is dropped, and acknowledges it to the broker once that batch has
   committed. A mark that cannot be written makes the batch fail;
   agent_events_failed() marks it again in the next. */
static void s_mark_and_ack(agent_t *self, const uint8_t id[SBI_ID_SIZE], const char *hex)
{
    uint64_t now = sbi_now_ms();
    uint8_t *op = agent_log_reserve(self, 'S', SBI_ID_SIZE + sizeof now);
    memcpy(op, id, SBI_ID_SIZE);
    memcpy(op + SBI_ID_SIZE, &now, sizeof now);
    zlistx_add_end(agent_log_acks(self), strdup(hex));
    uintptr_t marks = (uintptr_t) zhashx_lookup(self->marked, hex);
    zhashx_update(self->marked, hex, (void *) (marks + 1));
}

static void s_deliver(agent_t *self, s_event_t *e)
{
    zframe_t *client = zhashx_lookup(self->subscriptions, e->topic);
    if (!client || e->sent)
        return;
    Sharebus__ClientEvent ev = SHAREBUS__CLIENT_EVENT__INIT;
    ev.token = e->token;
    ev.topic = e->topic;
    ev.publisher = e->publisher;
    ev.subject_id = e->payload->subject_id;
    ev.message_id = (ProtobufCBinaryData){SBI_ID_SIZE, e->id};
    ev.published_ms = e->published_ms;
    ev.record = e->payload->record;
    Sharebus__ClientMessage message = SHAREBUS__CLIENT_MESSAGE__INIT;
    message.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_EVENT;
    message.event = &ev;
    e->sent = agent_front_send(self, client, &message);
    if (!e->sent)
        zhashx_delete(self->subscriptions, e->topic);   /* that back-end is gone */
}

/* An event waiting in the inbox, by hex id or by token: hashed, since a
   catching-up subscriber may hold a whole delivery window. */
static s_event_t *s_find(agent_t *self, const char *hex, uint64_t token)
{
    char key[24];
    if (!hex)
        snprintf(key, sizeof key, "%llu", (unsigned long long) token);
    return zhashx_lookup(self->inbox_index, hex ? hex : key);
}

void agent_event_receive(agent_t *self, sbi_envelope_t *env, Sharebus__Payload **payload_p)
{
    const Sharebus__Header *h = env->header;
    char hex[33];
    sbi_hex(h->message_id.data, SBI_ID_SIZE, hex);
    if (s_seen(self, h->message_id.data, hex)) {
        /* A redelivery: the back-end had it. Acknowledged with the open
           batch, after the one that marked it. */
        s_mark_and_ack(self, h->message_id.data, hex);
        return;
    }
    if (s_find(self, hex, 0))
        return;                     /* already waiting for the back-end */
    const Sharebus__Payload *payload = *payload_p;
    const sbi_topic_t *topic = self->policy ? sbi_policy_topic(self->policy, h->dataset) : NULL;
    const sbi_subscriber_t *sub = topic ? sbi_topic_subscriber(topic, self->config.agency) : NULL;
    bool ok = sub && strcmp(topic->publisher, h->from) == 0
              && payload->body_case == SHAREBUS__PAYLOAD__BODY_RECORD
              && sbi_record_pb_valid(payload->record);
    for (size_t i = 0; ok && i < payload->record->n_fields; i++) {
        bool allowed = false;
        for (size_t j = 0; j < sub->n_fields && !allowed; j++)
            allowed = strcmp(sub->fields[j], payload->record->fields[i]->name) == 0;
        ok = allowed;
    }
    /* The broker checked and audits the fields the header names; it
       cannot read the record. One that carries more would be shared off
       the record. */
    bool named = true;
    for (size_t i = 0; ok && named && i < payload->record->n_fields; i++) {
        named = false;
        for (size_t j = 0; j < h->n_fields && !named; j++)
            named = strcmp(h->fields[j], payload->record->fields[i]->name) == 0;
    }
    const char *why = !ok ? "not allowed by this agent's policy"
                      : !named ? "the record carries a field its header does not name"
                               : NULL;
    int code = !ok ? SB_EDENIED : SB_EFIELDS;
    if (!why && !agent_subject_matches(self, h, payload->subject_id)) {
        why = "the sealed subject is not the one the header's subject reference names";
        code = SB_EMALFORMED;
    }
    if (why) {
        /* Not for us: dropped (acknowledged, so it does not block the
           queue), and on the agent's record with the reason. */
        sbi_warning("event %s from %s on %s dropped: %s", hex, h->from, h->dataset, why);
        Sharebus__Header logged = *h;
        logged.error = sbi_error_kind(code);
        logged.reason = (char *) why;
        agent_log(self, SHAREBUS__AUDIT_KIND__AUDIT_EVENT_REFUSED, &logged, env->envelope);
        s_mark_and_ack(self, h->message_id.data, hex);
        return;
    }
    s_event_t *e = calloc(1, sizeof *e);
    assert(e);
    memcpy(e->id, h->message_id.data, SBI_ID_SIZE);
    strcpy(e->hex, hex);
    e->token = ++self->next_token;
    e->payload = *payload_p;
    *payload_p = NULL;
    e->topic = strdup(h->dataset);
    e->publisher = strdup(h->from);
    e->published_ms = h->created_ms;
    snprintf(e->token_key, sizeof e->token_key, "%llu", (unsigned long long) e->token);
    e->handle = zlistx_add_end(self->inbox, e);
    zhashx_insert(self->inbox_index, e->hex, e);
    zhashx_insert(self->inbox_index, e->token_key, e);
    s_deliver(self, e);
}

void agent_subscribe(agent_t *self, zframe_t *client, uint64_t id, const Sharebus__ClientSubscribe *s)
{
    const sbi_topic_t *topic = self->policy ? sbi_policy_topic(self->policy, s->topic) : NULL;
    char reason[300];
    if (!self->policy) {
        if (id)
            agent_front_result(self, client, id, SB_EUNAVAILABLE,
                               "the agent has not received the policy yet", NULL);
        return;
    }
    if (!topic || !sbi_topic_subscriber(topic, self->config.agency)) {
        snprintf(reason, sizeof reason, "the policy does not make %s a subscriber of %s",
                 self->config.agency, s->topic);
        if (id)
            agent_front_result(self, client, id, topic ? SB_EDENIED : SB_ENODATASET, reason, NULL);
        return;
    }
    if (id)
        agent_front_result(self, client, id, SB_OK, NULL, NULL);
    /* As for a dataset: the library's refresh (id 0) never takes a topic
       from another back-end, which would be sent every unacknowledged
       event again. */
    zframe_t *known = zhashx_lookup(self->subscriptions, s->topic);
    if (known && (zframe_eq(known, client) || !id))
        return;
    zhashx_update(self->subscriptions, s->topic, zframe_dup(client));
    sbi_info("a back-end now subscribes to %s", s->topic);
    /* Whatever was waiting, in order; what an earlier back-end did not
       acknowledge goes again. */
    for (s_event_t *e = zlistx_first(self->inbox); e; e = zlistx_next(self->inbox))
        if (strcmp(e->topic, s->topic) == 0) {
            e->sent = false;
            s_deliver(self, e);
        }
}

/* The back-end has handled an event. By its id when the acknowledgement
   carries one (a token is this run's own: one the back-end got before
   the agent restarted names nothing now, and the event would reach it
   again); an event of an earlier run the broker has not sent again yet
   is marked seen all the same, and dropped when it comes. By token
   otherwise (a library without message_id). */
void agent_event_acked(agent_t *self, const Sharebus__ClientAck *ack)
{
    char hex[2 * SBI_ID_SIZE + 1];
    s_event_t *e;
    if (ack->message_id.len == SBI_ID_SIZE) {
        sbi_hex(ack->message_id.data, SBI_ID_SIZE, hex);
        e = s_find(self, hex, 0);
        if (!e && !s_seen(self, ack->message_id.data, hex))
            s_mark_and_ack(self, ack->message_id.data, hex);
    }
    else
        e = ack->message_id.len == 0 ? s_find(self, NULL, ack->token) : NULL;
    if (!e)
        return;
    s_mark_and_ack(self, e->id, e->hex);
    zhashx_delete(self->inbox_index, e->hex);
    zhashx_delete(self->inbox_index, e->token_key);
    zlistx_delete(self->inbox, e->handle);
}

void agent_events_failed(agent_t *self, zlistx_t *acks)
{
    for (char *hex = zlistx_first(acks); hex; hex = zlistx_next(acks)) {
        uint8_t id[SBI_ID_SIZE];
        if (sodium_hex2bin(id, sizeof id, hex, strlen(hex), NULL, NULL, NULL) == 0)
            s_mark_and_ack(self, id, hex);
        s_unmark(self, hex);    /* now marked in the open batch instead */
    }
}

/* One EVENT_ACK for `n` delivered events: one signature, one record in
   this agent's log and one verification at the broker for all. */
static void s_send_acks(agent_t *self, uint8_t (*ids)[SBI_ID_SIZE], size_t n)
{
    ProtobufCBinaryData more[SBI_ACKS_MAX - 1];
    sbi_header_t h;
    sbi_header_init(&h, SHAREBUS__KIND__KIND_EVENT_ACK, self->config.agency, "broker");
    sbi_header_set_acks(&h.header, ids, n, more);
    agent_send(self, self->broker, &h.header, NULL);
}

/* After the store committed: tell the broker which events are delivered. */
void agent_events_committed(agent_t *self, zlistx_t *acks)
{
    uint8_t ids[SBI_ACKS_MAX][SBI_ID_SIZE];
    size_t n = 0;
    for (char *hex = zlistx_first(acks); hex; hex = zlistx_next(acks)) {
        s_unmark(self, hex);    /* in the store now */
        if (sodium_hex2bin(ids[n], SBI_ID_SIZE, hex, strlen(hex), NULL, NULL, NULL) == 0
            && ++n == SBI_ACKS_MAX) {
            s_send_acks(self, ids, n);
            n = 0;
        }
    }
    if (n > 0)
        s_send_acks(self, ids, n);
}
