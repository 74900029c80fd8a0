/*  agent.c - the agent's set-up, main loop and broker side. */
#include "agent.h"
#include "record.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define S_HELLO_MS 5000          /* heartbeat once welcomed */
#define S_HELLO_EARLY_MS 500     /* until the broker answers */
#define S_BATCH_MAX 256          /* messages handled per socket per turn */
#define S_SIGN_MAX 64            /* envelopes signed together, at most */
#define S_COMMIT_MS 50           /* the agent's log commits at most this often */

char **agent_strv(const char *const *items, size_t count)
{
    char **strv = calloc(count + 1, sizeof *strv);
    assert(strv);
    for (size_t i = 0; i < count; i++)
        strv[i] = strdup(items[i]);
    return strv;
}

void agent_strv_free(char ***strv_p)
{
    char **strv = *strv_p;
    for (size_t i = 0; strv && strv[i]; i++)
        free(strv[i]);
    free(strv);
    *strv_p = NULL;
}

bool agent_strv_has(char **strv, const char *item)
{
    for (size_t i = 0; strv && strv[i]; i++)
        if (strcmp(strv[i], item) == 0)
            return true;
    return false;
}

static void s_pending_free(void **item_p)
{
    agent_pending_t *p = *item_p;
    if (p) {
        assert(!p->pub);    /* a publication's view is settled before it goes */
        zframe_destroy(&p->client);
        agent_strv_free(&p->fields);
        free(p);
        *item_p = NULL;
    }
}

static void s_serving_free(void **item_p)
{
    agent_serving_t *s = *item_p;
    if (s) {
        free(s->dataset);
        free(s->purpose);
        free(s->rule_id);
        agent_strv_free(&s->flow);
        free(s);
        *item_p = NULL;
    }
}

static void s_frame_free(void **item_p)
{
    zframe_destroy((zframe_t **) item_p);
}

/* Keys and certificates: our own, the broker's (pinned), the subject key. */
static int s_load_identity(agent_t *self)
{
    const agent_config_t *c = &self->config;
    char err[512], path[4096];
    self->trust = sbi_trust_new(c->certs, err, sizeof err);
    if (!self->trust) {
        sbi_error("cannot load certificates: %s", err);
        return -1;
    }
    self->me = sbi_trust_find(self->trust, c->agency);
    self->broker = sbi_trust_find(self->trust, "broker");
    if (!self->me || sbi_trust_check(self->trust, self->me, sbi_now_ms()) != SB_OK) {
        sbi_error("%s/%s.cert: no valid, unrevoked certificate for agency '%s'", c->certs,
                  c->agency, c->agency);
        return -1;
    }
    if (!self->broker) {
        sbi_error("%s/broker.cert: no valid broker certificate", c->certs);
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s.key", c->certs, c->agency);
    char why[2 * sizeof path + 128];
    if (sbi_crypto_load(path, self->me, &self->crypto, why, sizeof why) != SB_OK) {
        sbi_error("%s", why);
        return -1;
    }
    snprintf(path, sizeof path, "%s/subject.key", c->certs);
    if (sbi_secret_load(path, self->subject_key) != SB_OK)
        return -1;  /* logged, naming the file and why */
    return 0;
}

static int s_open_store(agent_t *self)
{
    char err[512], path[4096];
    if (mkdir(self->config.data, 0700) != 0 && errno != EEXIST) {
        sbi_error("%s: %s", self->config.data, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/store", self->config.data);
    self->store = sbi_store_open(path, 0, 0, 0, SBI_AUDIT_DBS + 4, err, sizeof err);
    if (self->store)
        self->audit = sbi_audit_open(self->store, err, sizeof err);
    if (!self->audit) {
        sbi_error("cannot open the agent's store: %s", err);
        return -1;
    }
    if (agent_events_open(self) != SB_OK) {
        sbi_error("cannot open the event store in %s", path);
        return -1;
    }
    return 0;
}

static bool s_loopback(const char *endpoint)
{
    const char *host = endpoint + strlen("tcp://");
    return strncmp(host, "127.", 4) == 0 || strncmp(host, "localhost:", 10) == 0
           || strncmp(host, "[::1]:", 6) == 0;
}

zsock_t *agent_bus_new(agent_t *self, sbi_crypto_t *crypto, const uint8_t server_key[32],
                       zsock_t **monitor_p)
{
    const sbi_keys_t *keys = sbi_crypto_keys(crypto);
    zsock_t *bus = zsock_new(ZMQ_DEALER);
    zsock_set_curve_serverkey_bin(bus, server_key);
    zsock_set_curve_publickey_bin(bus, keys->cert.curve_public);
    zsock_set_curve_secretkey_bin(bus, keys->curve_secret);
    zsock_set_sndhwm(bus, 100000);
    zsock_set_rcvhwm(bus, 100000);
    zsock_set_maxmsgsize(bus, SBI_FRAME_MAX);
    zsock_set_linger(bus, 2000);
    zsock_set_rcvtimeo(bus, 0);         /* the loop reads until none is left */
    zsock_set_reconnect_ivl(bus, 100);
    zsock_set_reconnect_ivl_max(bus, 2000);
    zsock_set_heartbeat_ivl(bus, 2000);
    zsock_set_heartbeat_timeout(bus, 6000);
    /* Say hello as soon as a (re)connection completes its CURVE handshake,
       so the broker can route to us at once after either side restarts. */
    static unsigned count;
    char monitor[80];
    snprintf(monitor, sizeof monitor, "inproc://agent-monitor-%p-%u", (void *) self, count++);
    zmq_socket_monitor(zsock_resolve(bus), monitor, ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
    *monitor_p = zsock_new(ZMQ_PAIR);
    zsock_connect(*monitor_p, "%s", monitor);
    if (zsock_connect(bus, "%s", self->config.broker) != 0) {
        sbi_error("cannot connect to broker %s: %s", self->config.broker,
                  zmq_strerror(zmq_errno()));
        zmq_socket_monitor(zsock_resolve(bus), NULL, 0);
        zsock_destroy(monitor_p);
        zsock_destroy(&bus);
    }
    return bus;
}

static int s_open_sockets(agent_t *self)
{
    const agent_config_t *c = &self->config;
    self->bus = agent_bus_new(self, self->crypto, self->broker->curve_public, &self->monitor);
    if (!self->bus)
        return -1;
    if (strncmp(c->listen, "ipc://", 6) != 0
        && !(strncmp(c->listen, "tcp://", 6) == 0 && s_loopback(c->listen))) {
        sbi_error("--listen %s: use ipc://PATH or tcp:// on a loopback address", c->listen);
        return -1;
    }
    self->front = zsock_new(ZMQ_ROUTER);
    zsock_set_router_mandatory(self->front, 1);
    zsock_set_sndhwm(self->front, 100000);
    zsock_set_rcvhwm(self->front, 100000);
    zsock_set_rcvtimeo(self->front, 0);
    zsock_set_maxmsgsize(self->front, SBI_FRAME_MAX);
    /* Back-ends of this agency only: owner and group. The socket file is
       made under a umask that leaves others out, so that it is never open
       to them, not even until the chmod below (which takes the group's
       execute bit away too). */
    mode_t umask_was = umask(0007);
    int bound = zsock_bind(self->front, "%s", c->listen);
    umask(umask_was);
    if (bound < 0) {
        sbi_error("cannot listen on %s: %s", c->listen, zmq_strerror(zmq_errno()));
        return -1;
    }
    if (strncmp(c->listen, "ipc://", 6) == 0 && chmod(c->listen + 6, 0660) != 0) {
        sbi_error("%s: %s", c->listen + 6, strerror(errno));
        return -1;
    }
    return 0;
}

agent_t *agent_new(const agent_config_t *config)
{
    agent_t *self = calloc(1, sizeof *self);
    assert(self);
    self->config = *config;
    self->pending = zhashx_new();
    zhashx_set_destructor(self->pending, s_pending_free);
    self->serving = zhashx_new();
    zhashx_set_destructor(self->serving, s_serving_free);
    self->providers = zhashx_new();
    zhashx_set_destructor(self->providers, s_frame_free);
    self->outgoing = calloc(S_SIGN_MAX, sizeof *self->outgoing);
    assert(self->outgoing);
    /* Tokens name what a back-end is handed (a request to serve, an event)
       and come back with its answer or acknowledgement. Each run starts
       them at a random point below 2^52, so that one handed out before a
       restart names nothing now instead of another citizen's request or
       an event the back-end has not seen. */
    randombytes_buf(&self->next_token, sizeof self->next_token);
    self->next_token >>= 12;
    if (s_load_identity(self) != 0 || s_open_store(self) != 0 || agent_log_start(self) != 0
        || s_open_sockets(self) != 0 || agent_keys_open(self) != 0)
        agent_destroy(&self);
    return self;
}

void agent_destroy(agent_t **self_p)
{
    agent_t *self = *self_p;
    if (!self)
        return;
    if (self->bus && self->front)
        agent_front_stop(self);
    /* The events of the last batches are acknowledged once those are
       written: their EVENT_ACKs go with the rest, or the broker would
       send them all again after a restart. */
    agent_log_drain(self);
    if (self->bus)
        agent_flush(self);      /* nothing is sealed without a bus to send on */
    agent_log_stop(self);       /* the records of what was just sent */
    for (size_t i = 0; i < self->n_outgoing; i++)
        sbi_sealed_destroy(&self->outgoing[i]);   /* acknowledgements of that last batch */
    free(self->outgoing);
    agent_keys_close(self);
    /* A publication still waiting for the broker is answered now. */
    for (agent_pending_t *p = self->pending ? zhashx_first(self->pending) : NULL; p;
         p = zhashx_next(self->pending))
        if (p->pub)
            agent_publication_settle(self, p, SB_EUNAVAILABLE,
                                     "the agent stopped before the broker acknowledged the event");
    if (self->front)
        zsock_set_linger(self->front, 1000);    /* the answers above reach the back-ends */
    zsock_destroy(&self->front);
    if (self->bus)
        zmq_socket_monitor(zsock_resolve(self->bus), NULL, 0);
    zsock_destroy(&self->monitor);
    zsock_destroy(&self->bus);
    zhashx_destroy(&self->pending);
    zhashx_destroy(&self->serving);
    zhashx_destroy(&self->providers);
    agent_events_close(self);
    sbi_policy_destroy(&self->policy);
    sbi_audit_close(&self->audit);
    sbi_store_close(&self->store);
    sbi_crypto_destroy(&self->crypto);
    sbi_trust_destroy(&self->trust);
    sodium_memzero(self->subject_key, sizeof self->subject_key);
    free(self);
    *self_p = NULL;
}

void agent_log(agent_t *self, Sharebus__AuditKind kind, const Sharebus__Header *h,
               const Sharebus__Envelope *envelope)
{
    Sharebus__AuditRecord r = SHAREBUS__AUDIT_RECORD__INIT;
    r.kind = kind;
    r.message_id = h->message_id;
    r.correlation_id = h->correlation_id;
    r.from = h->from;
    r.to = h->to;
    r.dataset = h->dataset;
    r.purpose = h->purpose;
    r.subject_ref = h->subject_ref;
    r.n_fields_requested = h->kind == SHAREBUS__KIND__KIND_REQUEST ? h->n_fields : 0;
    r.fields_requested = h->fields;
    r.n_fields_delivered = h->kind == SHAREBUS__KIND__KIND_REPLY ? h->n_fields : 0;
    r.fields_delivered = h->fields;
    r.rule_id = h->rule_id;
    r.consent_id = h->consent_id;
    r.error = h->error;
    r.reason = h->reason;
    r.payload_hash = h->payload_hash;
    if (envelope)
        sbi_envelope_proof(envelope, &r);
    /* The time it happened, not the time the log thread writes it. */
    r.time_ms = sbi_now_ms();
    size_t size = sharebus__audit_record__get_packed_size(&r);
    if (size > SBI_AUDIT_RECORD_MAX) {
        sbi_error("agent log: a record of %zu bytes is too large to log", size);
        return;
    }
    sharebus__audit_record__pack(&r, agent_log_reserve(self, 'R', size));
}

bool agent_subject_matches(agent_t *self, const Sharebus__Header *h, const char *subject_id)
{
    if (!*subject_id)
        return h->subject_ref.len == 0;
    uint8_t ref[SBI_HASH_SIZE];
    return h->subject_ref.len == SBI_HASH_SIZE
           && sbi_subject_ref(self->subject_key, subject_id, ref) == SB_OK
           && sodium_memcmp(ref, h->subject_ref.data, SBI_HASH_SIZE) == 0;
}

int agent_send(agent_t *self, const sbi_cert_t *to, Sharebus__Header *header,
               const Sharebus__Payload *payload)
{
    if (!(zsock_events(self->bus) & ZMQ_POLLOUT))
        return SB_EUNAVAILABLE;
    if (self->n_outgoing == S_SIGN_MAX)
        agent_flush(self);
    sbi_sealed_t *sealed = NULL;
    int rc = sbi_envelope_seal_later(self->crypto, to, header, payload, &sealed);
    if (rc == SB_OK)
        self->outgoing[self->n_outgoing++] = sealed;
    return rc;
}

void agent_flush(agent_t *self)
{
    if (self->n_outgoing == 0)
        return;
    zframe_t *frames[S_SIGN_MAX];
    size_t count = self->n_outgoing;
    sbi_envelope_sign_batch(self->crypto, self->outgoing, count, frames);
    self->n_outgoing = 0;
    for (size_t i = 0; i < count; i++) {
        /* Log from the frame itself: the exact header bytes and signature. */
        sbi_envelope_t env;
        if (sbi_envelope_decode(&env, zframe_data(frames[i]), zframe_size(frames[i])) == SB_OK) {
            agent_log(self, SHAREBUS__AUDIT_KIND__AUDIT_MESSAGE_SENT, env.header, env.envelope);
            sbi_envelope_clear(&env);
        }
        if (zframe_send(&frames[i], self->bus, ZFRAME_DONTWAIT) != 0) {
            sbi_warning("the connection to the broker took no more: %zu message(s) dropped",
                        count - i);
            for (; i < count; i++)
                zframe_destroy(&frames[i]);
        }
    }
}

#define S_REASON_MAX 1024      /* bytes of a reason an agent sends */

void agent_send_error(agent_t *self, const char *to, const uint8_t *correlation, int code,
                      const char *reason)
{
    const sbi_cert_t *cert = sbi_trust_find(self->trust, to);
    if (!cert)
        return;
    /* A back-end's reason can be any length: cut on a character boundary,
       so that the header stays within SBI_HEADER_MAX. */
    char cut[S_REASON_MAX + 1];
    size_t n = strlen(reason);
    if (n > S_REASON_MAX) {
        n = S_REASON_MAX;
        while (n > 0 && ((unsigned char) reason[n] & 0xc0) == 0x80)
            n--;
        memcpy(cut, reason, n);
        cut[n] = '\0';
        reason = cut;
    }
    sbi_header_t h;
    sbi_header_init(&h, SHAREBUS__KIND__KIND_ERROR, self->config.agency, to);
    h.header.correlation_id = (ProtobufCBinaryData){SBI_ID_SIZE, (uint8_t *) correlation};
    h.header.error = sbi_error_kind(code);
    h.header.reason = (char *) reason;
    if (agent_send(self, cert, &h.header, NULL) != SB_OK)
        sbi_warning("cannot send an error to %s", to);
}

static void s_hello(agent_t *self)
{
    sbi_header_t h;
    sbi_header_init(&h, SHAREBUS__KIND__KIND_HELLO, self->config.agency, "broker");
    if (self->policy)
        h.header.policy_version = (ProtobufCBinaryData){32, (uint8_t *) sbi_policy_version(self->policy)};
    agent_send(self, self->broker, &h.header, NULL);
    self->next_hello = zclock_mono() + (self->welcomed ? S_HELLO_MS : S_HELLO_EARLY_MS);
}

static void s_on_policy(agent_t *self, Sharebus__Payload *payload)
{
    if (payload->body_case != SHAREBUS__PAYLOAD__BODY_POLICY) {
        sbi_warning("policy message without a policy bundle");
        return;
    }
    zlistx_t *errors = zlistx_new();
    zlistx_set_destructor(errors, (zlistx_destructor_fn *) zstr_free);
    sbi_policy_t *policy = sbi_policy_load_bundle(payload->policy, NULL, errors);
    if (!policy) {
        sbi_error("the broker's policy does not load here (%zu error(s)); keeping ours",
                  zlistx_size(errors));
        for (char *e = zlistx_first(errors); e; e = zlistx_next(errors))
            sbi_error("  %s", e);
    }
    else {
        sbi_policy_destroy(&self->policy);
        self->policy = policy;
        char hex[65];
        sbi_info("policy %s received from the broker", sbi_hex(sbi_policy_version(policy), 32, hex));
    }
    zlistx_destroy(&errors);
}

static void s_on_checkpoint(agent_t *self, Sharebus__Payload *payload)
{
    if (payload->body_case != SHAREBUS__PAYLOAD__BODY_CHECKPOINT
        || sbi_checkpoint_verify(payload->checkpoint, self->broker->sign_public) != SB_OK) {
        sbi_warning("checkpoint from the broker does not verify: not kept");
        return;
    }
    Sharebus__Checkpoint *cp = payload->checkpoint;
    cp->received_ms = sbi_now_ms();
    sharebus__checkpoint__pack(cp, agent_log_reserve(self, 'C',
                                                     sharebus__checkpoint__get_packed_size(cp)));
}

/* One message from the broker: verify, open when it carries a payload,
   and dispatch by kind. */
static void s_on_bus(agent_t *self, zframe_t *frame)
{
    sbi_envelope_t env;
    int rc = sbi_envelope_decode(&env, zframe_data(frame), zframe_size(frame));
    if (rc == SB_OK)
        rc = agent_keys_verify(self, &env);
    if (rc == SB_OK && strcmp(env.header->to, self->config.agency) != 0)
        rc = SB_EPROTOCOL;
    if (rc != SB_OK) {
        char id[33];
        if (env.header)
            sbi_warning("message %s from %s refused: %s", sbi_id_hex(env.header->message_id, id),
                        env.header->from, sb_strerror(rc));
        else
            sbi_warning("message from the broker refused: %s", sb_strerror(rc));
        sbi_envelope_clear(&env);
        return;
    }
    agent_log(self, SHAREBUS__AUDIT_KIND__AUDIT_MESSAGE_RECEIVED, env.header, env.envelope);
    Sharebus__Payload *payload = NULL;
    rc = agent_keys_open_payload(self, &env, &payload);
    if (rc != SB_OK) {
        char id[33];
        sbi_warning("message %s from %s does not open: %s",
                    sbi_id_hex(env.header->message_id, id), env.header->from, sb_strerror(rc));
        sbi_envelope_clear(&env);
        return;
    }
    bool from_broker = env.sender == self->broker;
    switch (env.header->kind) {
    case SHAREBUS__KIND__KIND_WELCOME:
        if (from_broker && !self->welcomed) {
            self->welcomed = true;
            sbi_info("connected to the broker");
        }
        break;
    case SHAREBUS__KIND__KIND_POLICY:
        if (from_broker)
            s_on_policy(self, payload);
        break;
    case SHAREBUS__KIND__KIND_CHECKPOINT:
        if (from_broker)
            s_on_checkpoint(self, payload);
        break;
    case SHAREBUS__KIND__KIND_REQUEST: agent_front_incoming(self, &env, payload); break;
    case SHAREBUS__KIND__KIND_REPLY: agent_front_reply(self, &env, payload); break;
    case SHAREBUS__KIND__KIND_ERROR: agent_front_error(self, &env); break;
    case SHAREBUS__KIND__KIND_EVENT: agent_event_receive(self, &env, &payload); break;
    case SHAREBUS__KIND__KIND_EVENT_ACK:
        if (from_broker)
            agent_front_event_ack(self, &env);
        break;
    case SHAREBUS__KIND__KIND_CONSENT_RESULT:
        if (from_broker)
            agent_front_consent_result(self, &env, payload);
        break;
    default:
        sbi_warning("unexpected %s message from %s", protobuf_c_enum_descriptor_get_value(
                        &sharebus__kind__descriptor, env.header->kind)->name, env.header->from);
    }
    if (payload)
        sharebus__payload__free_unpacked(payload, NULL);
    sbi_envelope_clear(&env);
}

/* One message from a back-end, if one is waiting: false when none was.
   Read frame by frame: ZMQ_MAXMSGSIZE bounds each frame, not how many a
   message has, and zmsg_recv would hold them all (200,000 empty frames
   took 130 MB). Frames past the call are read and dropped one at a time,
   and the call is refused. */
static bool s_on_front(agent_t *self)
{
    zframe_t *client = zframe_recv(self->front);
    if (!client)
        return false;
    zframe_t *frame = zframe_more(client) ? zframe_recv(self->front) : NULL;
    bool extra = frame && zframe_more(frame);
    if (extra) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        while (zmq_msg_recv(&part, zsock_resolve(self->front), 0) >= 0 && zmq_msg_more(&part))
            ;
        zmq_msg_close(&part);
        /* Answered under the call's id, when it has one, for the library
           to hand the refusal to its caller. */
        Sharebus__ClientMessage *m = sbi_client_message_decode(zframe_data(frame),
                                                               zframe_size(frame));
        agent_front_result(self, client, m ? m->id : 0, SB_EMALFORMED, "one frame per message",
                           NULL);
        if (m)
            sharebus__client_message__free_unpacked(m, NULL);
    }
    else if (frame)
        agent_front_message(self, client, frame);
    zframe_destroy(&client);
    zframe_destroy(&frame);
    return true;
}

int agent_run(agent_t *self)
{
    zpoller_t *poller = zpoller_new(self->bus, self->front, self->monitor, self->logger, NULL);
    agent_keys_attach(self, poller);
    s_hello(self);
    agent_flush(self);
    while (!zsys_interrupted) {
        int64_t next = self->next_hello;
        if (agent_log_pending(self) && self->next_commit < next)
            next = self->next_commit;
        int wait = (int) (next - zclock_mono());
        zpoller_wait(poller, wait < 0 ? 0 : wait > 100 ? 100 : wait);
        if (zpoller_terminated(poller))
            break;
        /* Both sockets' receive timeouts are 0: read until none is left. */
        zframe_t *frame;
        for (int n = 0; n < S_BATCH_MAX && (frame = zframe_recv(self->bus)); n++) {
            s_on_bus(self, frame);
            zframe_destroy(&frame);
        }
        zframe_t *drained;   /* after a switch of keys, from the old connection */
        for (int n = 0; n < S_BATCH_MAX && (drained = agent_keys_recv(self)); n++) {
            s_on_bus(self, drained);
            zframe_destroy(&drained);
        }
        for (int n = 0; n < S_BATCH_MAX && s_on_front(self); n++)
            ;
        while (zsock_events(self->monitor) & ZMQ_POLLIN) {
            zmsg_t *event = zmsg_recv(self->monitor);
            zmsg_destroy(&event);
            self->next_hello = 0;   /* a fresh connection: hello now */
        }
        agent_log_settle(self);     /* before the acknowledgements are flushed */
        agent_keys_tick(self);
        if (zclock_mono() >= self->next_hello)
            s_hello(self);
        if (zclock_mono() >= self->next_sweep) {
            agent_front_sweep(self);
            self->next_sweep = zclock_mono() + 100;
        }
        agent_flush(self);      /* what this turn sent: one signature */
        /* The agent's own log commits in groups, in its own thread: at
           most every S_COMMIT_MS, so that fsyncs neither cap its
           throughput nor hold this loop. */
        if (zclock_mono() >= self->next_commit) {
            agent_log_commit(self);
            self->next_commit = zclock_mono() + S_COMMIT_MS;
        }
    }
    agent_keys_attach(self, NULL);
    zpoller_destroy(&poller);
    sbi_info("stopping");
    return 0;
}
