/*  front.c - the agent's back-end side: requests going out, requests coming
    in to be answered, and the answers to both. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "consent.h"
#include "record.h"

#define S_GRACE_MS 250   /* the broker times out first; this covers a dead broker */
#define S_TIMEOUT_MAX_MS 60000  /* the broker's longest wait for an answer */

bool agent_front_send(agent_t *self, zframe_t *client, Sharebus__ClientMessage *message)
{
    zframe_t *frame = zframe_new(NULL, sharebus__client_message__get_packed_size(message));
    sharebus__client_message__pack(message, zframe_data(frame));
    zframe_t *to = zframe_dup(client);
    bool sent = zframe_send(&to, self->front, ZFRAME_MORE | ZFRAME_DONTWAIT) == 0
                && zframe_send(&frame, self->front, ZFRAME_DONTWAIT) == 0;
    if (!sent)
        sbi_debug("back-end gone; message dropped");
    zframe_destroy(&to);
    zframe_destroy(&frame);
    return sent;
}

void agent_front_result(agent_t *self, zframe_t *client, uint64_t id, int code,
                        const char *reason, const Sharebus__Record *record)
{
    Sharebus__ClientResult result = SHAREBUS__CLIENT_RESULT__INIT;
    result.error = code == SB_OK ? SHAREBUS__ERROR_KIND__ERR_NONE : sbi_error_kind(code);
    result.reason = (char *) (reason ? reason : "");
    result.record = (Sharebus__Record *) record;
    Sharebus__ClientMessage message = SHAREBUS__CLIENT_MESSAGE__INIT;
    message.id = id;
    message.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_RESULT;
    message.result = &result;
    agent_front_send(self, client, &message);
}

static char *s_id_key(const uint8_t *id, char out[2 * SBI_ID_SIZE + 1])
{
    return sbi_hex(id, SBI_ID_SIZE, out);
}

uint64_t agent_expires(uint64_t now, uint32_t limit_ms, uint64_t expires_ms)
{
    return expires_ms && expires_ms < now + limit_ms ? expires_ms : now + limit_ms;
}

/* The monotonic time at wall-clock time `expires_ms`, plus the grace. */
static int64_t s_deadline(uint64_t now, uint64_t expires_ms)
{
    return zclock_mono() + (int64_t) (expires_ms > now ? expires_ms - now : 0) + S_GRACE_MS;
}

/* A back-end asks for data: check our copy of the policy, seal the subject
   id for the provider, send, and remember who asked, until the request's
   deadline (`expires_ms`, the library's, or 0). */
static void s_request(agent_t *self, zframe_t *client, uint64_t id,
                      const Sharebus__ClientRequest *req, uint64_t expires_ms)
{
    char reason[300];
    if (!self->policy) {
        agent_front_result(self, client, id, SB_EUNAVAILABLE,
                           "the agent has not received the policy from the broker yet", NULL);
        return;
    }
    if (!sbi_agency_valid(req->provider, false) || !sbi_name_valid(req->dataset)
        || !sbi_name_valid(req->purpose) || strlen(req->subject_id) > SBI_SUBJECT_MAX) {
        agent_front_result(self, client, id, SB_EINVAL, "malformed request", NULL);
        return;
    }
    /* The request names the fields the back-end named, or none for "every
       field the rule allows": the broker resolves that under its current
       policy, which our copy may trail just after a reload. A request our
       copy would deny still goes to the broker, which refuses it there:
       every refusal is then on the bus's audit record, in the citizen's
       report. */
    sbi_decision_t d;
    d.n_flow = req->n_fields < SBI_FIELDS_MAX ? req->n_fields : SBI_FIELDS_MAX;
    for (size_t i = 0; i < d.n_flow; i++)
        d.flow[i] = req->fields[i];
    int rc = SB_OK;
    const sbi_cert_t *provider = sbi_trust_find(self->trust, req->provider);
    if (!provider) {
        snprintf(d.reason, sizeof d.reason, "no valid certificate for %s", req->provider);
        rc = SB_EUNKNOWN;
    }
    /* A request about no one (a dataset whose subject is none) has no
       subject reference; the broker decides whether the dataset needs one. */
    uint8_t subject_ref[SBI_HASH_SIZE];
    bool has_subject = *req->subject_id != 0;
    if (rc == SB_OK && has_subject
        && sbi_subject_ref(self->subject_key, req->subject_id, subject_ref) != SB_OK) {
        snprintf(d.reason, sizeof d.reason, "the subject id has nothing but separators");
        rc = SB_EINVAL;
    }
    if (rc != SB_OK) {
        /* Refused here, before anything left: on the agent's own record. */
        sbi_header_t h;
        sbi_header_init(&h, SHAREBUS__KIND__KIND_REQUEST, self->config.agency, req->provider);
        h.header.dataset = req->dataset;
        h.header.purpose = req->purpose;
        h.header.fields = req->fields;
        h.header.n_fields = req->n_fields;
        h.header.error = sbi_error_kind(rc);
        h.header.reason = d.reason;
        agent_log(self, SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED, &h.header, NULL);
        agent_front_result(self, client, id, rc, d.reason, NULL);
        return;
    }
    uint32_t timeout = req->timeout_ms ? req->timeout_ms : 5000;
    if (timeout > S_TIMEOUT_MAX_MS)
        timeout = S_TIMEOUT_MAX_MS;     /* the broker waits no longer */
    sbi_header_t h;
    sbi_header_init(&h, SHAREBUS__KIND__KIND_REQUEST, self->config.agency, req->provider);
    h.header.dataset = req->dataset;
    h.header.purpose = req->purpose;
    if (has_subject)
        h.header.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, subject_ref};
    h.header.fields = (char **) d.flow;
    h.header.n_fields = d.n_flow;
    h.header.expires_ms = agent_expires(h.header.created_ms, timeout, expires_ms);
    h.header.policy_version = (ProtobufCBinaryData){32, (uint8_t *) sbi_policy_version(self->policy)};
    Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
    payload.subject_id = req->subject_id;
    rc = agent_send(self, provider, &h.header, &payload);
    if (rc == SB_ETOOBIG) {
        /* Retrying would not help: say what is too large. */
        agent_front_result(self, client, id, SB_ETOOBIG,
                           "the request's header (its field names) is over 8 KiB", NULL);
        return;
    }
    if (rc != SB_OK) {
        snprintf(reason, sizeof reason, "cannot send to the broker: %s", sb_strerror(rc));
        agent_front_result(self, client, id, SB_EUNAVAILABLE, reason, NULL);
        return;
    }
    agent_pending_t *p = calloc(1, sizeof *p);
    assert(p);
    p->client = zframe_dup(client);
    p->client_id = id;
    p->deadline = s_deadline(h.header.created_ms, h.header.expires_ms);
    p->fields = d.n_flow ? agent_strv(d.flow, d.n_flow) : NULL;
    snprintf(p->provider, sizeof p->provider, "%s", req->provider);
    char key[33];
    zhashx_update(self->pending, s_id_key(h.message_id, key), p);
}

/* A back-end registers as the provider of a dataset. */
static void s_serve(agent_t *self, zframe_t *client, uint64_t id, const Sharebus__ClientServe *s)
{
    const sbi_dataset_t *dataset = self->policy ? sbi_policy_dataset(self->policy, s->dataset) : NULL;
    char reason[300];
    if (self->policy && (!dataset || strcmp(dataset->provider, self->config.agency) != 0)) {
        snprintf(reason, sizeof reason, "the policy does not make %s the provider of %s",
                 self->config.agency, s->dataset);
        if (id)
            agent_front_result(self, client, id, SB_ENODATASET, reason, NULL);
        return;
    }
    /* A call takes the dataset over; the library's refresh (id 0) only
       claims it when no back-end holds it (after an agent restart), or two
       back-ends would take turns every refresh. */
    zframe_t *known = zhashx_lookup(self->providers, s->dataset);
    if (!known || (id && !zframe_eq(known, client))) {
        zhashx_update(self->providers, s->dataset, zframe_dup(client));
        sbi_info("a back-end now serves %s", s->dataset);
    }
    if (id)     /* id 0: the library refreshing its registration */
        agent_front_result(self, client, id, SB_OK, NULL, NULL);
}

/* Only the fields in `allowed` of `record`: the provider's minimisation. */
static Sharebus__Record s_minimise(const Sharebus__Record *record, char **allowed,
                                   Sharebus__Field **kept, size_t *dropped)
{
    Sharebus__Record out = SHAREBUS__RECORD__INIT;
    *dropped = 0;
    for (size_t i = 0; i < record->n_fields; i++) {
        if (agent_strv_has(allowed, record->fields[i]->name))
            kept[out.n_fields++] = record->fields[i];
        else
            (*dropped)++;
    }
    out.fields = kept;
    return out;
}

/* A back-end answers a request from another agency. */
static void s_answer(agent_t *self, const Sharebus__ClientAnswer *answer)
{
    char token[24];
    snprintf(token, sizeof token, "%llu", (unsigned long long) answer->token);
    agent_serving_t *s = zhashx_lookup(self->serving, token);
    if (!s) {
        sbi_debug("answer to unknown or expired request %s dropped", token);
        return;
    }
    if (answer->error != SHAREBUS__ERROR_KIND__ERR_NONE) {
        agent_send_error(self, s->consumer, s->message_id, sbi_error_code(answer->error),
                         *answer->reason ? answer->reason : "refused by the provider");
        zhashx_delete(self->serving, token);
        return;
    }
    static const Sharebus__Record empty = SHAREBUS__RECORD__INIT;
    const Sharebus__Record *record = answer->record ? answer->record : &empty;
    if (!sbi_record_pb_valid(record)) {
        agent_send_error(self, s->consumer, s->message_id, SB_EINTERNAL,
                         "the provider's back-end returned a malformed record");
        zhashx_delete(self->serving, token);
        return;
    }
    Sharebus__Field **kept = calloc(record->n_fields + 1, sizeof *kept);
    char **names = calloc(record->n_fields + 1, sizeof *names);
    assert(kept && names);
    size_t dropped;
    Sharebus__Record minimal = s_minimise(record, s->flow, kept, &dropped);
    if (dropped)
        sbi_info("dropped %zu field(s) the rule %s does not allow", dropped, s->rule_id);
    for (size_t i = 0; i < minimal.n_fields; i++)
        names[i] = minimal.fields[i]->name;

    sbi_header_t h;
    sbi_header_init(&h, SHAREBUS__KIND__KIND_REPLY, self->config.agency, s->consumer);
    h.header.correlation_id = (ProtobufCBinaryData){SBI_ID_SIZE, s->message_id};
    h.header.dataset = s->dataset;
    h.header.purpose = s->purpose;
    if (s->has_subject)
        h.header.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, s->subject_ref};
    h.header.fields = names;
    h.header.n_fields = minimal.n_fields;
    h.header.rule_id = s->rule_id;
    Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
    payload.body_case = SHAREBUS__PAYLOAD__BODY_RECORD;
    payload.record = &minimal;
    const sbi_cert_t *consumer = sbi_trust_find(self->trust, s->consumer);
    int rc = consumer ? agent_send(self, consumer, &h.header, &payload) : SB_EUNKNOWN;
    if (rc != SB_OK) {
        char reason[300];
        snprintf(reason, sizeof reason, "the provider's reply cannot be sent: %s", sb_strerror(rc));
        sbi_warning("%s", reason);
        agent_send_error(self, s->consumer, s->message_id, rc, reason);
    }
    free(kept);
    free(names);
    zhashx_delete(self->serving, token);
}

/* ------------------------------------------------------------ consent */

#define S_CONSENT_TIMEOUT_MS 5000

/* Sends a consent operation to the broker, sealed for it, and remembers
   which back-end waits for the answer, until the call's deadline. */
static void s_to_broker(agent_t *self, zframe_t *client, uint64_t id, Sharebus__Kind kind,
                        Sharebus__Payload *payload, uint64_t expires_ms)
{
    sbi_header_t h;
    sbi_header_init(&h, kind, self->config.agency, "broker");
    h.header.expires_ms = agent_expires(h.header.created_ms, S_CONSENT_TIMEOUT_MS, expires_ms);
    int rc = agent_send(self, self->broker, &h.header, payload);
    if (rc != SB_OK) {
        agent_front_result(self, client, id, SB_EUNAVAILABLE, "cannot send to the broker", NULL);
        return;
    }
    agent_pending_t *p = calloc(1, sizeof *p);
    assert(p);
    p->client = zframe_dup(client);
    p->client_id = id;
    p->deadline = s_deadline(h.header.created_ms, h.header.expires_ms);
    p->consent = true;
    char key[33];
    zhashx_update(self->pending, s_id_key(h.message_id, key), p);
}

/* The subject reference of a back-end's clear id; answers the back-end
   itself when the id is unusable. */
static bool s_subject(agent_t *self, zframe_t *client, uint64_t id, const char *subject,
                      uint8_t ref[SBI_HASH_SIZE])
{
    if (strlen(subject) <= SBI_SUBJECT_MAX && sbi_subject_ref(self->subject_key, subject, ref) == SB_OK)
        return true;
    agent_front_result(self, client, id, SB_EINVAL, "missing or malformed subject id", NULL);
    return false;
}

static void s_consent_grant(agent_t *self, zframe_t *client, uint64_t id,
                            const Sharebus__ClientConsentGrant *g, uint64_t expires_ms)
{
    uint8_t ref[SBI_HASH_SIZE], cid[SBI_ID_SIZE];
    char consent_id[33];
    if (!s_subject(self, client, id, g->subject_id, ref))
        return;
    const char *bad = !sbi_agency_valid(g->consumer, false) ? "invalid consumer agency id"
                      : !sbi_name_valid(g->dataset)         ? "invalid dataset name"
                      : !sbi_name_valid(g->purpose)         ? "invalid purpose name"
                      : strlen(g->evidence) > SBI_REASON_MAX ? "evidence over 1024 bytes"
                                                              : NULL;
    if (bad) {
        agent_front_result(self, client, id, SB_EINVAL, bad, NULL);
        return;
    }
    sbi_id_new(cid);
    Sharebus__Consent c = SHAREBUS__CONSENT__INIT;
    c.id = sbi_hex(cid, SBI_ID_SIZE, consent_id);
    c.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, ref};
    c.consumer = g->consumer;
    c.dataset = g->dataset;
    c.purpose = g->purpose;
    c.granted_ms = sbi_now_ms();
    c.until_ms = g->until_ms;
    c.recorded_by = (char *) self->config.agency;
    c.evidence = g->evidence;
    uint8_t bytes[4096], signature[crypto_sign_BYTES];
    size_t size = sharebus__consent__pack(&c, bytes);
    crypto_sign_detached(signature, NULL, bytes, size, sbi_crypto_keys(self->crypto)->sign_secret);
    Sharebus__SignedConsent sc = SHAREBUS__SIGNED_CONSENT__INIT;
    sc.consent = (ProtobufCBinaryData){size, bytes};
    sc.signature = (ProtobufCBinaryData){sizeof signature, signature};
    Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
    payload.body_case = SHAREBUS__PAYLOAD__BODY_CONSENT;
    payload.consent = &sc;
    s_to_broker(self, client, id, SHAREBUS__KIND__KIND_CONSENT_GRANT, &payload, expires_ms);
}

static void s_consent_revoke(agent_t *self, zframe_t *client, uint64_t id,
                             const Sharebus__ClientConsentRevoke *r, uint64_t expires_ms)
{
    uint8_t ref[SBI_HASH_SIZE];
    Sharebus__ConsentRevoke revoke = SHAREBUS__CONSENT_REVOKE__INIT;
    revoke.id = r->id;
    revoke.consumer = r->consumer;
    revoke.dataset = r->dataset;
    revoke.purpose = r->purpose;
    revoke.reason = r->reason;
    if (!*r->id) {
        if (!s_subject(self, client, id, r->subject_id, ref))
            return;
        revoke.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, ref};
    }
    Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
    payload.body_case = SHAREBUS__PAYLOAD__BODY_REVOKE;
    payload.revoke = &revoke;
    s_to_broker(self, client, id, SHAREBUS__KIND__KIND_CONSENT_REVOKE, &payload, expires_ms);
}

static void s_consent_list(agent_t *self, zframe_t *client, uint64_t id,
                           const Sharebus__ClientConsentList *l, uint64_t expires_ms)
{
    uint8_t ref[SBI_HASH_SIZE];
    if (!s_subject(self, client, id, l->subject_id, ref))
        return;
    Sharebus__ConsentQuery query = SHAREBUS__CONSENT_QUERY__INIT;
    query.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, ref};
    Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
    payload.body_case = SHAREBUS__PAYLOAD__BODY_QUERY;
    payload.query = &query;
    s_to_broker(self, client, id, SHAREBUS__KIND__KIND_CONSENT_LIST, &payload, expires_ms);
}

void agent_front_consent_result(agent_t *self, sbi_envelope_t *env, Sharebus__Payload *payload)
{
    const Sharebus__Header *h = env->header;
    char key[33];
    if (h->correlation_id.len != SBI_ID_SIZE)
        return;
    agent_pending_t *p = zhashx_lookup(self->pending, s_id_key(h->correlation_id.data, key));
    if (!p || !p->consent) {
        sbi_debug("consent result %s answers no consent operation: dropped", key);
        return;
    }
    Sharebus__ClientResult result = SHAREBUS__CLIENT_RESULT__INIT;
    result.reason = "";
    if (payload->body_case == SHAREBUS__PAYLOAD__BODY_CONSENTS) {
        result.consents = payload->consents;
        result.consent_id = payload->consents->n_ids ? payload->consents->ids[0] : "";
    }
    Sharebus__ClientMessage message = SHAREBUS__CLIENT_MESSAGE__INIT;
    message.id = p->client_id;
    message.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_RESULT;
    message.result = &result;
    agent_front_send(self, p->client, &message);
    zhashx_delete(self->pending, key);
}

void agent_front_message(agent_t *self, zframe_t *client, zframe_t *frame)
{
    Sharebus__ClientMessage *m = sbi_client_message_decode(zframe_data(frame), zframe_size(frame));
    if (!m) {
        agent_front_result(self, client, 0, SB_EMALFORMED, "not a sharebus client message", NULL);
        return;
    }
    /* A call that comes after its deadline (this agent was stopped or busy,
       or restarted, while the library held it): the back-end has stopped
       waiting, so nothing is done on its behalf. */
    uint64_t now = sbi_now_ms();
    if (m->expires_ms && m->expires_ms <= now && m->id) {
        sbi_info("a back-end's call came %llu ms after its deadline: answered timeout, not "
                 "carried out", (unsigned long long) (now - m->expires_ms));
        agent_front_result(self, client, m->id, SB_ETIMEOUT,
                           "the call reached the agent after its deadline", NULL);
        sharebus__client_message__free_unpacked(m, NULL);
        return;
    }
    uint64_t expires = m->expires_ms;
    switch (m->body_case) {
    case SHAREBUS__CLIENT_MESSAGE__BODY_REQUEST:
        s_request(self, client, m->id, m->request, expires);
        break;
    case SHAREBUS__CLIENT_MESSAGE__BODY_SERVE: s_serve(self, client, m->id, m->serve); break;
    case SHAREBUS__CLIENT_MESSAGE__BODY_ANSWER: s_answer(self, m->answer); break;
    case SHAREBUS__CLIENT_MESSAGE__BODY_CONSENT_GRANT:
        s_consent_grant(self, client, m->id, m->consent_grant, expires);
        break;
    case SHAREBUS__CLIENT_MESSAGE__BODY_CONSENT_REVOKE:
        s_consent_revoke(self, client, m->id, m->consent_revoke, expires);
        break;
    case SHAREBUS__CLIENT_MESSAGE__BODY_CONSENT_LIST:
        s_consent_list(self, client, m->id, m->consent_list, expires);
        break;
    case SHAREBUS__CLIENT_MESSAGE__BODY_PUBLISH:
        agent_publish(self, client, m->id, m->publish, expires);
        break;
    case SHAREBUS__CLIENT_MESSAGE__BODY_SUBSCRIBE:
        agent_subscribe(self, client, m->id, m->subscribe);
        break;
    case SHAREBUS__CLIENT_MESSAGE__BODY_ACK: agent_event_acked(self, m->ack); break;
    default:
        agent_front_result(self, client, m->id, SB_EPROTOCOL, "unexpected client message", NULL);
    }
    sharebus__client_message__free_unpacked(m, NULL);
}

/* A request from another agency, through the broker: hand it to the
   back-end serving the dataset, with the fields the rule lets flow. */
void agent_front_incoming(agent_t *self, sbi_envelope_t *env, Sharebus__Payload *payload)
{
    const Sharebus__Header *h = env->header;
    zframe_t *client = zhashx_lookup(self->providers, h->dataset);
    sbi_decision_t d;
    int rc = self->policy ? sbi_policy_decide(self->policy, h->from, h->dataset, h->purpose,
                                              (const char *const *) h->fields, h->n_fields,
                                              sbi_now_ms(), &d)
                          : SB_EUNAVAILABLE;
    if (rc == SB_EUNAVAILABLE)
        snprintf(d.reason, sizeof d.reason, "provider agent has no policy yet");
    if (rc == SB_OK && !client) {
        rc = SB_EUNAVAILABLE;
        snprintf(d.reason, sizeof d.reason, "no back-end of %s serves %s", self->config.agency,
                 h->dataset);
    }
    const sbi_dataset_t *dataset = self->policy ? sbi_policy_dataset(self->policy, h->dataset) : NULL;
    if (rc == SB_OK && dataset && dataset->about_resident
        && (!*payload->subject_id || h->subject_ref.len != SBI_HASH_SIZE)) {
        rc = SB_EMALFORMED;
        snprintf(d.reason, sizeof d.reason, "request without a subject");
    }
    if (rc == SB_OK && !agent_subject_matches(self, h, payload->subject_id)) {
        rc = SB_EMALFORMED;
        snprintf(d.reason, sizeof d.reason,
                 "the sealed subject is not the one the header's subject reference names");
        sbi_warning("request %s from %s refused: %s", h->dataset, h->from, d.reason);
    }
    if (rc != SB_OK) {
        agent_send_error(self, h->from, h->message_id.data, rc, d.reason);
        return;
    }
    agent_serving_t *s = calloc(1, sizeof *s);
    assert(s);
    memcpy(s->message_id, h->message_id.data, SBI_ID_SIZE);
    snprintf(s->consumer, sizeof s->consumer, "%s", h->from);
    s->dataset = strdup(h->dataset);
    s->purpose = strdup(h->purpose);
    s->rule_id = strdup(d.rule->id);
    if (h->subject_ref.len == SBI_HASH_SIZE)
        memcpy(s->subject_ref, h->subject_ref.data, SBI_HASH_SIZE);
    s->has_subject = h->subject_ref.len == SBI_HASH_SIZE;
    s->flow = agent_strv(d.flow, d.n_flow);
    uint64_t now = sbi_now_ms();
    int64_t left = h->expires_ms > now ? (int64_t) (h->expires_ms - now) : 0;
    s->deadline = zclock_mono() + left + S_GRACE_MS;
    uint64_t token = ++self->next_token;
    char key[24];
    snprintf(key, sizeof key, "%llu", (unsigned long long) token);
    zhashx_insert(self->serving, key, s);

    Sharebus__ClientIncoming in = SHAREBUS__CLIENT_INCOMING__INIT;
    in.token = token;
    in.consumer = h->from;
    in.dataset = h->dataset;
    in.purpose = h->purpose;
    in.subject_id = payload->subject_id;
    in.fields = (char **) d.flow;
    in.n_fields = d.n_flow;
    in.expires_ms = h->expires_ms;
    in.rule_id = (char *) d.rule->id;
    Sharebus__ClientMessage message = SHAREBUS__CLIENT_MESSAGE__INIT;
    message.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_INCOMING;
    message.incoming = &in;
    if (!agent_front_send(self, client, &message)) {
        /* The back-end went away: forget it, and say so at once. */
        snprintf(d.reason, sizeof d.reason, "the back-end of %s serving %s is gone",
                 self->config.agency, h->dataset);
        agent_send_error(self, h->from, h->message_id.data, SB_EUNAVAILABLE, d.reason);
        zhashx_delete(self->serving, key);
        zhashx_delete(self->providers, h->dataset);
    }
}

/* Whether a reply to `p` may carry field `name`: one the back-end asked
   for or, when it asked for every field the rule allows, one the reply's
   header names (the broker checked those against the rule). */
static bool s_asked(const agent_pending_t *p, const Sharebus__Header *reply, const char *name)
{
    if (p->fields)
        return agent_strv_has(p->fields, name);
    for (size_t i = 0; i < reply->n_fields; i++)
        if (strcmp(reply->fields[i], name) == 0)
            return true;
    return false;
}

/* The reply to one of our requests: check it carries nothing we did not
   ask for, then hand it to the back-end. */
void agent_front_reply(agent_t *self, sbi_envelope_t *env, Sharebus__Payload *payload)
{
    const Sharebus__Header *h = env->header;
    char key[33];
    if (h->correlation_id.len != SBI_ID_SIZE)
        return;
    agent_pending_t *p = zhashx_lookup(self->pending, s_id_key(h->correlation_id.data, key));
    if (!p || strcmp(h->from, p->provider) != 0) {
        sbi_debug("late, unknown or misdirected reply %s from %s dropped", key, h->from);
        return;
    }
    const Sharebus__Record *record = payload->body_case == SHAREBUS__PAYLOAD__BODY_RECORD
                                         ? payload->record : NULL;
    int rc = record && sbi_record_pb_valid(record) ? SB_OK : SB_EMALFORMED;
    char reason[300] = "reply without a valid record";
    for (size_t i = 0; rc == SB_OK && i < record->n_fields; i++)
        if (!s_asked(p, h, record->fields[i]->name)) {
            rc = SB_EFIELDS;
            snprintf(reason, sizeof reason, "reply from %s carried field '%s' that was not asked for",
                     h->from, record->fields[i]->name);
        }
    if (rc != SB_OK)
        sbi_warning("%s", reason);
    Sharebus__ClientResult result = SHAREBUS__CLIENT_RESULT__INIT;
    result.error = rc == SB_OK ? SHAREBUS__ERROR_KIND__ERR_NONE : sbi_error_kind(rc);
    result.reason = rc == SB_OK ? "" : reason;
    result.record = rc == SB_OK ? (Sharebus__Record *) record : NULL;
    result.rule_id = h->rule_id;
    Sharebus__ClientMessage message = SHAREBUS__CLIENT_MESSAGE__INIT;
    message.id = p->client_id;
    message.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_RESULT;
    message.result = &result;
    agent_front_send(self, p->client, &message);
    zhashx_delete(self->pending, key);
}

void agent_front_error(agent_t *self, sbi_envelope_t *env)
{
    const Sharebus__Header *h = env->header;
    char key[33];
    if (h->correlation_id.len != SBI_ID_SIZE)
        return;
    agent_pending_t *p = zhashx_lookup(self->pending, s_id_key(h->correlation_id.data, key));
    bool from_broker = env->sender == self->broker;
    if (!p || (!from_broker && !p->pub && strcmp(h->from, p->provider) != 0)) {
        sbi_info("%s from %s: %s", sb_errname(sbi_error_code(h->error)), h->from, h->reason);
        return;
    }
    if (p->pub)
        agent_publication_settle(self, p, sbi_error_code(h->error), h->reason);
    else
        agent_front_result(self, p->client, p->client_id, sbi_error_code(h->error), h->reason,
                           NULL);
    zhashx_delete(self->pending, key);
}

/* The broker has durably queued one view of an event we published. */
void agent_front_event_ack(agent_t *self, sbi_envelope_t *env)
{
    const Sharebus__Header *h = env->header;
    if (h->correlation_id.len != SBI_ID_SIZE)
        return;
    /* The broker acknowledges every view it queued in one batch at once. */
    for (size_t i = 0; i <= h->n_acked_ids; i++) {
        char key[33];
        agent_pending_t *p = zhashx_lookup(self->pending, s_id_key(sbi_header_acked(h, i), key));
        if (p && p->pub) {
            agent_publication_settle(self, p, SB_OK, NULL);
            zhashx_delete(self->pending, key);
        }
    }
}

void agent_front_stop(agent_t *self)
{
    char reason[128];
    snprintf(reason, sizeof reason, "the agent of %s stopped before the answer came",
             self->config.agency);
    zlistx_t *keys = zhashx_keys(self->pending);
    for (char *key = zlistx_first(keys); key; key = zlistx_next(keys)) {
        agent_pending_t *p = zhashx_lookup(self->pending, key);
        if (p->pub)
            continue;   /* a publication is answered with its views, at destruction */
        agent_front_result(self, p->client, p->client_id, SB_EUNAVAILABLE, reason, NULL);
        zhashx_delete(self->pending, key);
    }
    zlistx_destroy(&keys);
    snprintf(reason, sizeof reason, "the agent of %s stopped before its back-end answered",
             self->config.agency);
    for (agent_serving_t *s = zhashx_first(self->serving); s; s = zhashx_next(self->serving))
        agent_send_error(self, s->consumer, s->message_id, SB_EUNAVAILABLE, reason);
    zhashx_purge(self->serving);
}

void agent_front_sweep(agent_t *self)
{
    int64_t now = zclock_mono();
    zlistx_t *keys = zhashx_keys(self->pending);
    for (char *key = zlistx_first(keys); key; key = zlistx_next(keys)) {
        agent_pending_t *p = zhashx_lookup(self->pending, key);
        if (p->deadline > now)
            continue;
        if (p->pub)
            agent_publication_settle(self, p, SB_ETIMEOUT, "the broker did not acknowledge the "
                                                           "event before the deadline");
        else
            agent_front_result(self, p->client, p->client_id, SB_ETIMEOUT,
                               "no answer from the broker before the deadline", NULL);
        zhashx_delete(self->pending, key);
    }
    zlistx_destroy(&keys);
    zlistx_t *tokens = zhashx_keys(self->serving);
    for (char *token = zlistx_first(tokens); token; token = zlistx_next(tokens)) {
        agent_serving_t *s = zhashx_lookup(self->serving, token);
        if (s->deadline <= now)
            zhashx_delete(self->serving, token);
    }
    zlistx_destroy(&tokens);
}
