/*  route.c - what the broker does with each message: authenticate it,
    refuse replays, apply the policy gate, and route. One small action per
    message kind, dispatched through a table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define S_MAX_TIMEOUT_MS 60000

/* What every action gets; `env` is verified. */
typedef struct {
    broker_t *broker;
    const sbi_cert_t *cert;
    zframe_t *routing;
    zframe_t *frame;          /* the frame as received, to forward as is */
    sbi_envelope_t *env;
    int64_t read_us;          /* when the loop read it */
} s_msg_t;

typedef void(s_action_fn)(s_msg_t *m);

void broker_pending_free(void **item_p)
{
    broker_pending_t *p = *item_p;
    if (!p)
        return;
    free(p->dataset);
    free(p->purpose);
    free(p->rule_id);
    free(p->consent_id);
    for (size_t i = 0; p->flow && p->flow[i]; i++)
        free(p->flow[i]);
    free(p->flow);
    free(p);
    *item_p = NULL;
}

static void s_refuse(s_msg_t *m, Sharebus__AuditKind kind, int code, const char *reason)
{
    broker_refuse(m->broker, m->cert, m->routing, m->env, kind, code, reason);
}

/* The route to `agency`, valid or not: for its own messages (a HELLO with
   a new certificate replaces it). What goes out uses broker_peer_valid. */
static broker_peer_t *s_peer(broker_t *self, const char *agency)
{
    return zhashx_lookup(self->peers, agency);
}

broker_peer_t *broker_peer_valid(broker_t *self, const char *agency)
{
    broker_peer_t *peer = s_peer(self, agency);
    const sbi_cert_t *cert = peer ? sbi_trust_by_curve(self->trust, peer->curve) : NULL;
    if (peer && (!cert || sbi_trust_check(self->trust, cert, sbi_now_ms()) != SB_OK))
        return NULL;
    return peer;
}

/* Forwards the received frame, unchanged, to `agency`. */
static void s_forward(s_msg_t *m, broker_peer_t *peer, const char *pending_key)
{
    zframe_t *copy = zframe_dup(m->frame);
    broker_forward(m->broker, peer->routing, &copy, pending_key, m->read_us);
}

/* -------------------------------------------------------------- hello */

static void route_hello(s_msg_t *m)
{
    broker_t *b = m->broker;
    const char *agency = m->cert->agency;
    broker_peer_t *peer = s_peer(b, agency);
    bool fresh = !peer || !zframe_eq(peer->routing, m->routing);
    if (!peer) {
        peer = calloc(1, sizeof *peer);
        assert(peer);
        snprintf(peer->agency, sizeof peer->agency, "%s", agency);
        zhashx_insert(b->peers, agency, peer);
    }
    /* Seal to the certificate this connection uses: an agent switching to
       a new certificate opens with the keys it connected with. */
    memcpy(peer->curve, m->cert->curve_public, sizeof peer->curve);
    if (fresh) {
        broker_events_reset(b, agency);
        zframe_destroy(&peer->routing);
        peer->routing = zframe_dup(m->routing);
        peer->last_seen = zclock_mono();
        Sharebus__AuditRecord r = SHAREBUS__AUDIT_RECORD__INIT;
        r.kind = SHAREBUS__AUDIT_KIND__AUDIT_AGENT_CONNECTED;
        r.message_id = m->env->header->message_id;
        r.from = (char *) agency;
        r.to = "broker";
        r.decision = SHAREBUS__DECISION__DECISION_ALLOW;
        sbi_envelope_proof(m->env->envelope, &r);
        char serial[40];
        snprintf(serial, sizeof serial, "certificate serial %llu",
                 (unsigned long long) m->cert->serial);
        r.detail = serial;
        broker_audit(b, &r);
        sbi_notice("%s connected (%s)", agency, serial);
    }
    sbi_header_t h;
    sbi_header_init(&h, SHAREBUS__KIND__KIND_WELCOME, "broker", agency);
    const uint8_t *version = sbi_policy_version(b->policy);
    h.header.policy_version = (ProtobufCBinaryData){32, (uint8_t *) version};
    broker_send_to(b, agency, &h.header, NULL);

    const Sharebus__Header *hello = m->env->header ? m->env->header : NULL;
    bool current = hello && hello->policy_version.len == 32
                   && memcmp(hello->policy_version.data, version, 32) == 0;
    if (!current) {
        Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
        payload.body_case = SHAREBUS__PAYLOAD__BODY_POLICY;
        payload.policy = (Sharebus__PolicyBundle *) sbi_policy_bundle(b->policy);
        sbi_header_init(&h, SHAREBUS__KIND__KIND_POLICY, "broker", agency);
        h.header.policy_version = (ProtobufCBinaryData){32, (uint8_t *) version};
        int rc = broker_send_to(b, agency, &h.header, &payload);
        if (rc != SB_OK)
            sbi_error("cannot send the policy to %s: %s", agency, sb_strerror(rc));
    }
    if (fresh && b->checkpoint) {
        Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
        payload.body_case = SHAREBUS__PAYLOAD__BODY_CHECKPOINT;
        payload.checkpoint = b->checkpoint;
        sbi_header_init(&h, SHAREBUS__KIND__KIND_CHECKPOINT, "broker", agency);
        broker_send_to(b, agency, &h.header, &payload);
    }
}

/* ------------------------------------------------------------ request */

/* Token bucket per rule and consumer: SB_OK or SB_ERATE. */
int broker_bucket_take(zhashx_t *buckets, const char *key, unsigned count, int64_t period_ms)
{
    broker_bucket_t *bucket = zhashx_lookup(buckets, key);
    int64_t now = zclock_mono();
    if (!bucket) {
        bucket = calloc(1, sizeof *bucket);
        assert(bucket);
        bucket->tokens = count;
        bucket->last = now;
        zhashx_insert(buckets, key, bucket);
    }
    bucket->tokens += (double) (now - bucket->last) * count / period_ms;
    if (bucket->tokens > count)
        bucket->tokens = count;
    bucket->last = now;
    if (bucket->tokens < 1)
        return SB_ERATE;
    bucket->tokens -= 1;
    return SB_OK;
}

static int s_rate(broker_t *b, const sbi_rule_t *rule, const char *consumer)
{
    if (!rule->rate_count)
        return SB_OK;
    char key[SBI_NAME_MAX + SBI_AGENCY_MAX + 2];
    snprintf(key, sizeof key, "%s/%s", rule->id, consumer);
    return broker_bucket_take(b->buckets, key, rule->rate_count, rule->rate_period_ms);
}

/* Waits for the answer to the request `r` records (its request-routed
   record), until `expires_ms` (0: the longest the broker waits) and at most
   S_MAX_TIMEOUT_MS after it was routed; `key` gets its key in b->pending. */
static void s_pending_add(broker_t *b, const Sharebus__AuditRecord *r, uint64_t expires_ms,
                          char key[33])
{
    broker_pending_t *p = calloc(1, sizeof *p);
    assert(p);
    memcpy(p->id, r->message_id.data, SBI_ID_SIZE);
    snprintf(p->consumer, sizeof p->consumer, "%s", r->from);
    snprintf(p->provider, sizeof p->provider, "%s", r->to);
    p->dataset = strdup(r->dataset);
    p->purpose = strdup(r->purpose);
    p->rule_id = strdup(r->rule_id);
    p->consent_id = strdup(r->consent_id);
    p->has_subject = r->subject_ref.len == SBI_HASH_SIZE;
    if (p->has_subject)
        memcpy(p->subject_ref, r->subject_ref.data, SBI_HASH_SIZE);
    p->flow = calloc(r->n_fields_requested + 1, sizeof *p->flow);
    assert(p->flow);
    for (size_t i = 0; i < r->n_fields_requested; i++)
        p->flow[i] = strdup(r->fields_requested[i]);
    uint64_t now = sbi_now_ms(), routed_ms = r->time_ms ? r->time_ms : now;
    uint64_t end = routed_ms + S_MAX_TIMEOUT_MS;
    if (expires_ms && expires_ms < end)
        end = expires_ms;
    p->deadline = zclock_mono() + (int64_t) (end > now ? end - now : 0);
    p->started_us = zclock_usecs();
    sbi_hex(p->id, SBI_ID_SIZE, key);
    zhashx_update(b->pending, key, p);
}

static void route_request(s_msg_t *m)
{
    broker_t *b = m->broker;
    const Sharebus__Header *h = m->env->header;
    char reason[300];
    broker_metrics_request(b, h);
    const sbi_dataset_t *dataset = sbi_policy_dataset(b->policy, h->dataset);
    if (!*h->dataset || !*h->purpose || h->correlation_id.len) {
        s_refuse(m, SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED, SB_EMALFORMED,
                 "a request needs a dataset and a purpose");
        return;
    }
    if (!dataset) {
        snprintf(reason, sizeof reason, "dataset %s is not declared in the policy", h->dataset);
        s_refuse(m, SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED, SB_ENODATASET, reason);
        return;
    }
    if (dataset->about_resident && h->subject_ref.len != SBI_HASH_SIZE) {
        snprintf(reason, sizeof reason, "dataset %s is about residents: the request needs a "
                 "subject", h->dataset);
        s_refuse(m, SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED, SB_EMALFORMED, reason);
        return;
    }
    if (strcmp(dataset->provider, h->to) != 0) {
        snprintf(reason, sizeof reason, "dataset %s is provided by %s, not %s", h->dataset,
                 dataset->provider, h->to);
        s_refuse(m, SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED, SB_EDENIED, reason);
        return;
    }
    sbi_decision_t d;
    int rc = sbi_policy_decide(b->policy, h->from, h->dataset, h->purpose,
                               (const char *const *) h->fields, h->n_fields, sbi_now_ms(), &d);
    if (rc != SB_OK) {
        s_refuse(m, SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED, rc, d.reason);
        return;
    }
    char consent_id[SBI_NAME_MAX + 1] = "";
    if (d.rule->consent_required && h->subject_ref.len != SBI_HASH_SIZE) {
        s_refuse(m, SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED, SB_ENOCONSENT,
                 "the rule requires consent, and the request names no subject");
        return;
    }
    if (d.rule->consent_required) {
        rc = broker_consent_find(b, h, consent_id, sizeof consent_id, reason, sizeof reason);
        if (rc != SB_OK) {
            s_refuse(m, SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED, rc, reason);
            return;
        }
    }
    if (s_rate(b, d.rule, h->from) != SB_OK) {
        snprintf(reason, sizeof reason, "rule %s allows %u per %s for %s", d.rule->id,
                 d.rule->rate_count, d.rule->rate_period_ms == 1000 ? "second" : "minute", h->from);
        s_refuse(m, SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED, SB_ERATE, reason);
        return;
    }
    broker_peer_t *provider = broker_peer_valid(b, h->to);
    if (!provider) {
        snprintf(reason, sizeof reason,
                 zhashx_lookup(b->peers, h->to)
                     ? "the certificate %s connected with has expired or been revoked"
                     : "provider %s is not connected", h->to);
        s_refuse(m, SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED, SB_EUNAVAILABLE, reason);
        return;
    }
    Sharebus__AuditRecord r = SHAREBUS__AUDIT_RECORD__INIT;
    r.kind = SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_ROUTED;
    r.message_id = h->message_id;
    r.from = h->from;
    r.to = h->to;
    r.dataset = h->dataset;
    r.purpose = h->purpose;
    r.subject_ref = h->subject_ref;
    r.fields_requested = (char **) d.flow;
    r.n_fields_requested = d.n_flow;
    r.decision = SHAREBUS__DECISION__DECISION_ALLOW;
    r.rule_id = (char *) d.rule->id;
    r.consent_id = consent_id;
    r.payload_hash = h->payload_hash;
    char key[33];
    s_pending_add(b, &r, h->expires_ms, key);
    sbi_envelope_proof(m->env->envelope, &r);
    broker_audit(b, &r);
    broker_count(b, "requests.routed");
    s_forward(m, provider, key);
}

/* -------------------------------------------------------------- reply */

/* The pending request a REPLY or ERROR from a provider answers, checking
   that it comes from that provider and goes to that consumer. */
static broker_pending_t *s_answered(s_msg_t *m, char key[33])
{
    const Sharebus__Header *h = m->env->header;
    if (h->correlation_id.len != SBI_ID_SIZE)
        return NULL;
    broker_pending_t *p = zhashx_lookup(m->broker->pending,
                                        sbi_hex(h->correlation_id.data, SBI_ID_SIZE, key));
    if (!p || strcmp(p->provider, h->from) != 0 || strcmp(p->consumer, h->to) != 0)
        return NULL;
    return p;
}

/* Audits an answer to `p` and forwards it to the consumer; a consumer gone
   meanwhile is recorded as such, not as a forward that never happened. */
static void s_answer(s_msg_t *m, broker_pending_t *p, int code)
{
    broker_t *b = m->broker;
    const Sharebus__Header *h = m->env->header;
    broker_peer_t *consumer = broker_peer_valid(b, p->consumer);
    Sharebus__AuditRecord r = SHAREBUS__AUDIT_RECORD__INIT;
    r.kind = consumer ? SHAREBUS__AUDIT_KIND__AUDIT_REPLY_FORWARDED
                      : SHAREBUS__AUDIT_KIND__AUDIT_REPLY_REFUSED;
    r.message_id = h->message_id;
    r.correlation_id = h->correlation_id;
    r.from = h->from;
    r.to = h->to;
    r.dataset = p->dataset;
    r.purpose = p->purpose;
    r.subject_ref = (ProtobufCBinaryData){p->has_subject ? SBI_HASH_SIZE : 0, p->subject_ref};
    r.fields_delivered = code == SB_OK ? h->fields : NULL;
    r.n_fields_delivered = code == SB_OK ? h->n_fields : 0;
    r.decision = code == SB_OK ? SHAREBUS__DECISION__DECISION_ALLOW
                               : SHAREBUS__DECISION__DECISION_DENY;
    r.rule_id = p->rule_id;
    r.consent_id = p->consent_id;
    r.error = code == SB_OK ? SHAREBUS__ERROR_KIND__ERR_NONE : sbi_error_kind(code);
    r.reason = h->reason;
    if (!consumer) {
        r.error = SHAREBUS__ERROR_KIND__ERR_UNAVAILABLE;
        r.reason = "the consumer is no longer connected";
    }
    r.payload_hash = h->payload_hash;
    sbi_envelope_proof(m->env->envelope, &r);
    broker_audit(b, &r);
    broker_metrics_latency(b, zclock_usecs() - p->started_us);
    if (consumer)
        s_forward(m, consumer, NULL);
}

static void route_reply(s_msg_t *m)
{
    broker_t *b = m->broker;
    const Sharebus__Header *h = m->env->header;
    char key[33], reason[300];
    broker_pending_t *p = s_answered(m, key);
    if (!p) {
        s_refuse(m, SHAREBUS__AUDIT_KIND__AUDIT_REPLY_REFUSED, SB_EPROTOCOL,
                 "reply to no pending request of this provider (late, or not asked)");
        return;
    }
    for (size_t i = 0; i < h->n_fields; i++) {
        bool allowed = false;
        for (size_t j = 0; p->flow[j] && !allowed; j++)
            allowed = strcmp(p->flow[j], h->fields[i]) == 0;
        if (!allowed) {
            snprintf(reason, sizeof reason, "reply carries field '%s' beyond rule %s",
                     h->fields[i], p->rule_id);
            broker_refuse(b, m->cert, m->routing, m->env, SHAREBUS__AUDIT_KIND__AUDIT_REPLY_REFUSED,
                          SB_EFIELDS, reason);
            p->fail_code = SB_EFIELDS;
            p->deadline = 0;
            return;
        }
    }
    /* Consent is checked again at release: a citizen who revoked it while
       the provider was answering must not see the data go out after. */
    int rc = *p->consent_id ? broker_consent_active(b, p->consent_id, reason, sizeof reason)
                            : SB_OK;
    if (rc != SB_OK) {
        broker_refuse(b, m->cert, m->routing, m->env, SHAREBUS__AUDIT_KIND__AUDIT_REPLY_REFUSED,
                      rc, reason);
        p->fail_code = rc;
        p->deadline = 0;
        return;
    }
    s_answer(m, p, SB_OK);
    broker_count(b, "replies.forwarded");
    zhashx_delete(b->pending, key);
}

static void route_error(s_msg_t *m)
{
    broker_t *b = m->broker;
    char key[33];
    broker_pending_t *p = s_answered(m, key);
    if (!p) {
        Sharebus__AuditRecord r = SHAREBUS__AUDIT_RECORD__INIT;
        const Sharebus__Header *h = m->env->header;
        r.kind = SHAREBUS__AUDIT_KIND__AUDIT_REPLY_REFUSED;
        r.message_id = h->message_id;
        r.correlation_id = h->correlation_id;
        r.from = h->from;
        r.to = h->to;
        r.error = h->error;
        r.reason = h->reason;
        r.decision = SHAREBUS__DECISION__DECISION_DENY;
        broker_audit(b, &r);
        return;
    }
    s_answer(m, p, sbi_error_code(m->env->header->error));
    broker_count(b, "replies.refused");
    zhashx_delete(b->pending, key);
}

/* ------------------------------------------------------------ consent */

/* Consent messages are addressed to the broker and sealed for it. */
static void s_consent(s_msg_t *m, void (*handle)(broker_t *, const sbi_cert_t *, const zframe_t *,
                                                 sbi_envelope_t *, Sharebus__Payload *))
{
    Sharebus__Payload *payload = NULL;
    if (strcmp(m->env->header->to, "broker") != 0
        || sbi_envelope_open(m->env, m->broker->crypto, &payload) != SB_OK) {
        s_refuse(m, SHAREBUS__AUDIT_KIND__AUDIT_CONSENT_REFUSED, SB_EMALFORMED,
                 "consent messages are sealed for the broker");
        return;
    }
    handle(m->broker, m->cert, m->routing, m->env, payload);
    sharebus__payload__free_unpacked(payload, NULL);
}

static void route_consent_grant(s_msg_t *m)
{
    s_consent(m, broker_consent_grant);
}

static void route_consent_revoke(s_msg_t *m)
{
    s_consent(m, broker_consent_revoke);
}

static void route_consent_list(s_msg_t *m)
{
    s_consent(m, broker_consent_list);
}

/* ------------------------------------------------------------- events */

static void route_event(s_msg_t *m)
{
    broker_event_publish(m->broker, m->cert, m->routing, m->env, m->frame);
}

static void route_event_ack(s_msg_t *m)
{
    if (strcmp(m->env->header->to, "broker") == 0)
        broker_event_ack(m->broker, m->cert, m->env);
}

/* ------------------------------------------------------------ dispatch */

static s_action_fn *const s_actions[] = {
    [SHAREBUS__KIND__KIND_HELLO] = route_hello,
    [SHAREBUS__KIND__KIND_REQUEST] = route_request,
    [SHAREBUS__KIND__KIND_REPLY] = route_reply,
    [SHAREBUS__KIND__KIND_ERROR] = route_error,
    [SHAREBUS__KIND__KIND_CONSENT_GRANT] = route_consent_grant,
    [SHAREBUS__KIND__KIND_CONSENT_REVOKE] = route_consent_revoke,
    [SHAREBUS__KIND__KIND_CONSENT_LIST] = route_consent_list,
    [SHAREBUS__KIND__KIND_EVENT] = route_event,
    [SHAREBUS__KIND__KIND_EVENT_ACK] = route_event_ack,
};
#define S_NACTIONS (sizeof s_actions / sizeof s_actions[0])

/* Replays and clocks: SB_OK, SB_EREPLAY or SB_ESTALE. */
static int s_fresh(broker_t *b, const Sharebus__Header *h, char *reason, size_t size)
{
    uint64_t now = sbi_now_ms(), skew = (uint64_t) b->config.skew_ms;
    if (broker_seen_has(b->seen, h->message_id.data, now)) {
        char key[33];
        snprintf(reason, size, "message id %s already seen",
                 sbi_hex(h->message_id.data, SBI_ID_SIZE, key));
        return SB_EREPLAY;
    }
    if (h->created_ms + skew < now || h->created_ms > now + skew) {
        /* A sender's clock can say anything, up to 2^64 - 1. */
        uint64_t ahead = h->created_ms > now ? h->created_ms - now : 0;
        long long off = ahead ? (long long) (ahead < INT64_MAX ? ahead : INT64_MAX)
                              : -(long long) (now - h->created_ms);
        snprintf(reason, size, "created %lld ms from the broker's clock (allowed %llu)", off,
                 (unsigned long long) skew);
        return SB_ESTALE;
    }
    if (h->expires_ms && h->expires_ms < now) {
        snprintf(reason, size, "expired %llu ms ago", (unsigned long long) (now - h->expires_ms));
        return SB_ESTALE;
    }
    broker_seen_add(b->seen, h->message_id.data, now + 2 * skew + 1000, now);
    return SB_OK;
}

void broker_route(broker_t *self, broker_in_t *in)
{
    s_msg_t m = {self, in->cert, in->routing, in->frame, NULL, in->read_us};
    char reason[300];
    broker_count(self, "messages.received");
    if (in->decode_rc != SB_OK) {
        snprintf(reason, sizeof reason, "frame of %zu bytes does not decode as an envelope",
                 zframe_size(in->frame));
        s_refuse(&m, SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED, in->decode_rc, reason);
        return;
    }
    sbi_envelope_t *env = &in->env;
    m.env = env;
    for (int i = 0; i < env->public_key_ops; i++)
        broker_count(self, "signatures.verified");
    broker_peer_t *peer = s_peer(self, in->cert->agency);
    if (peer && zframe_eq(peer->routing, in->routing))
        peer->last_seen = zclock_mono();
    if (in->verify_rc != SB_OK) {
        snprintf(reason, sizeof reason, "%s (envelope from '%s' on %s's connection)",
                 sb_strerror(in->verify_rc), env->header->from, in->cert->agency);
        s_refuse(&m, SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED, in->verify_rc, reason);
        return;
    }
    if (self->store_full) {
        s_refuse(&m, SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED, SB_EUNAVAILABLE,
                 "the broker's audit store is full");
        return;
    }
    int rc = s_fresh(self, env->header, reason, sizeof reason);
    unsigned kind = (unsigned) env->header->kind;
    s_action_fn *action = kind < S_NACTIONS ? s_actions[kind] : NULL;
    if (rc == SB_OK && !action) {
        rc = SB_EPROTOCOL;
        snprintf(reason, sizeof reason, "agents do not send %s messages",
                 protobuf_c_enum_descriptor_get_value(&sharebus__kind__descriptor, (int) kind)->name);
    }
    if (rc == SB_OK && strcmp(env->header->to, "broker") != 0 && !sbi_trust_find(self->trust, env->header->to)) {
        rc = SB_EUNKNOWN;
        snprintf(reason, sizeof reason, "no valid certificate for recipient '%s'", env->header->to);
    }
    if (rc != SB_OK)
        s_refuse(&m, SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED, rc, reason);
    else
        action(&m);
}

void broker_peer_forget(broker_t *self, const char *agency)
{
    zhashx_delete(self->peers, agency);
    for (broker_pending_t *p = zhashx_first(self->pending); p; p = zhashx_next(self->pending))
        if (strcmp(p->provider, agency) == 0) {
            p->fail_code = SB_EUNAVAILABLE;
            p->deadline = 0;
        }
    self->next_sweep = 0;
}

/* Agents say hello every few seconds; one silent for S_PEER_SILENCE_MS is
   gone (its connection died without a word): forget its route, so that
   requests to it are answered unavailable at once and status tells true. */
#define S_PEER_SILENCE_MS 20000

static void s_sweep_peers(broker_t *self, int64_t now)
{
    zlistx_t *agencies = zhashx_keys(self->peers);
    for (char *a = zlistx_first(agencies); a; a = zlistx_next(agencies)) {
        broker_peer_t *peer = zhashx_lookup(self->peers, a);
        if (now - peer->last_seen > S_PEER_SILENCE_MS) {
            sbi_notice("%s silent for %d s: its route is forgotten", a, S_PEER_SILENCE_MS / 1000);
            broker_peer_forget(self, a);
        }
    }
    zlistx_destroy(&agencies);
}

/* Each record of the last minute before the broker stopped, in order: a
   request routed and not ended by a reply, an error or a timeout was in
   flight when the broker died (kill -9). It waits again for its
   provider's answer until its own deadline, so that an answer after the
   restart is forwarded and audited, and one that never comes is recorded
   as a timeout: no request-routed is left without its outcome. */
static int s_recover_one(const Sharebus__AuditRecord *r, void *arg)
{
    broker_t *self = arg;
    char key[33];
    bool routed = r->kind == SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_ROUTED;
    const ProtobufCBinaryData *id = routed ? &r->message_id : &r->correlation_id;
    if (id->len != SBI_ID_SIZE)
        return 0;
    if (!routed) {
        sbi_hex(id->data, SBI_ID_SIZE, key);
        if (r->kind == SHAREBUS__AUDIT_KIND__AUDIT_REPLY_FORWARDED
            || r->kind == SHAREBUS__AUDIT_KIND__AUDIT_REPLY_REFUSED
            || r->kind == SHAREBUS__AUDIT_KIND__AUDIT_TIMEOUT)
            zhashx_delete(self->pending, key);
        return 0;
    }
    sbi_unpack_t budget;
    Sharebus__Header *h = sharebus__header__unpack(sbi_unpack_init(&budget, r->header.len),
                                                   r->header.len, r->header.data);
    s_pending_add(self, r, h ? h->expires_ms : 0, key);
    if (h)
        sharebus__header__free_unpacked(h, NULL);
    return 0;
}

static int s_last_time(const Sharebus__AuditRecord *record, void *arg)
{
    *(uint64_t *) arg = record->time_ms;
    return 0;
}

void broker_pending_recover(broker_t *self)
{
    uint8_t head[SBI_HASH_SIZE];
    uint64_t seq = sbi_audit_head(self->audit, head), last = 0;
    sbi_audit_filter_t tail = {.after_seq = seq ? seq - 1 : 0};
    if (seq == 0 || sbi_audit_query(self->audit, &tail, s_last_time, &last) != SB_OK || !last)
        return;
    /* A request waits S_MAX_TIMEOUT_MS at most: those routed earlier ended. */
    uint64_t keep = S_MAX_TIMEOUT_MS + 1000;
    sbi_audit_filter_t recent = {.since_ms = last > keep ? last - keep : 1};
    if (sbi_audit_query(self->audit, &recent, s_recover_one, self) != SB_OK)
        sbi_warning("cannot read the requests in flight from the audit log");
    else if (zhashx_size(self->pending))
        sbi_notice("%zu request(s) in flight when the broker stopped: waiting for their answers",
                   zhashx_size(self->pending));
}

/* The broker stops: every request in flight is answered unavailable and
   closed on the record now, rather than left to the consumer's deadline
   with a request-routed that nothing ends (a reply after the restart would
   find no pending request). */
void broker_pending_stop(broker_t *self)
{
    for (broker_pending_t *p = zhashx_first(self->pending); p; p = zhashx_next(self->pending)) {
        p->fail_code = SB_EUNAVAILABLE;
        p->stopped = true;
        p->deadline = 0;
    }
    broker_sweep(self);
}

/* Requests whose deadline passed, or whose forwarding failed: audited and
   answered to the consumer. */
void broker_sweep(broker_t *self)
{
    int64_t now = zclock_mono();
    if (now >= self->next_peer_sweep) {
        s_sweep_peers(self, now);
        self->next_peer_sweep = now + 1000;
    }
    zlistx_t *keys = zhashx_keys(self->pending);
    for (char *key = zlistx_first(keys); key; key = zlistx_next(keys)) {
        broker_pending_t *p = zhashx_lookup(self->pending, key);
        if (p->deadline > now)
            continue;
        int code = p->fail_code ? p->fail_code : SB_ETIMEOUT;
        char reason[200];
        snprintf(reason, sizeof reason, p->stopped ? "the broker stopped before %s answered"
                                        : code == SB_ETIMEOUT ? "%s did not answer in time"
                                        : code == SB_EFIELDS ? "%s answered beyond the rule"
                                        : code == SB_ENOCONSENT
                                            ? "%s answered, and the consent ended before the "
                                              "answer could be released"
                                            : "%s is not reachable",
                 p->provider);
        Sharebus__AuditRecord r = SHAREBUS__AUDIT_RECORD__INIT;
        r.kind = code == SB_ETIMEOUT ? SHAREBUS__AUDIT_KIND__AUDIT_TIMEOUT
                                     : SHAREBUS__AUDIT_KIND__AUDIT_REPLY_REFUSED;
        r.correlation_id = (ProtobufCBinaryData){SBI_ID_SIZE, p->id};
        r.from = p->provider;
        r.to = p->consumer;
        r.dataset = p->dataset;
        r.purpose = p->purpose;
        r.subject_ref = (ProtobufCBinaryData){p->has_subject ? SBI_HASH_SIZE : 0, p->subject_ref};
        r.decision = SHAREBUS__DECISION__DECISION_DENY;
        r.rule_id = p->rule_id;
        r.consent_id = p->consent_id;
        r.error = sbi_error_kind(code);
        r.reason = reason;
        broker_audit(self, &r);
        sbi_header_t h;
        sbi_header_init(&h, SHAREBUS__KIND__KIND_ERROR, "broker", p->consumer);
        h.header.correlation_id = (ProtobufCBinaryData){SBI_ID_SIZE, p->id};
        h.header.error = sbi_error_kind(code);
        h.header.reason = reason;
        broker_send_to(self, p->consumer, &h.header, NULL);
        broker_count(self, code == SB_ETIMEOUT ? "requests.timeout" : "requests.unavailable");
        zhashx_delete(self->pending, key);
    }
    zlistx_destroy(&keys);
}
