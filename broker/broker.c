/*  broker.c - set-up, the main loop, the audited batch, reload. */
#include "broker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_BATCH_MAX 512
#define S_WAL_SIZE (16u << 20)    /* the journal ring */
#define S_SEEN_KEEP_MS(self) (2 * (int64_t) (self)->config.skew_ms + 1000)

static void s_peer_free(void **item_p)
{
    broker_peer_t *peer = *item_p;
    if (peer) {
        zframe_destroy(&peer->routing);
        free(peer);
        *item_p = NULL;
    }
}

void broker_count(broker_t *self, const char *name)
{
    uint64_t *n = zhashx_lookup(self->counters, name);
    if (!n) {
        n = calloc(1, sizeof *n);
        assert(n);
        zhashx_insert(self->counters, name, n);
    }
    (*n)++;
}

static int s_load_keys(broker_t *self)
{
    char path[4096];
    self->me = sbi_trust_find(self->trust, "broker");
    if (!self->me || sbi_trust_check(self->trust, self->me, sbi_now_ms()) != SB_OK) {
        sbi_error("%s/broker.cert: no valid broker certificate (sharebus-cert issue --broker)",
                  self->config.certs);
        return -1;
    }
    snprintf(path, sizeof path, "%s/broker.key", self->config.certs);
    char err[2 * sizeof path + 128];
    if (sbi_crypto_load(path, self->me, &self->crypto, err, sizeof err) != SB_OK) {
        sbi_error("%s", err);
        return -1;
    }
    return 0;
}

/* Not checked against the certificates: revoking an agency must not stop
   the policy from loading (sharebus-policy check --certs does that check). */
static sbi_policy_t *s_load_policy(broker_t *self, zlistx_t *errors)
{
    return sbi_policy_load(self->config.policy, NULL, errors);
}

static int s_open_store(broker_t *self)
{
    char path[4096], err[512];
    if (mkdir(self->config.data, 0700) != 0 && errno != EEXIST) {
        sbi_error("%s: %s", self->config.data, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/store", self->config.data);
    self->store = sbi_store_open(path, 0, 0, self->config.map_max, SBI_AUDIT_DBS + 8, err,
                                 sizeof err);
    if (self->store)
        self->audit = sbi_audit_open(self->store, err, sizeof err);
    if (!self->audit) {
        sbi_error("cannot open the store: %s", err);
        return -1;
    }
    if (broker_consent_open(self) != SB_OK) {
        sbi_error("cannot open the consent registry in %s", path);
        return -1;
    }
    if (broker_events_open(self) != SB_OK) {
        sbi_error("cannot open the event queues in %s", path);
        return -1;
    }
    char wal[4096];
    snprintf(wal, sizeof wal, "%s/wal", self->config.data);
    size_t wal_size = self->config.wal_size ? self->config.wal_size : S_WAL_SIZE;
    if (sbi_store_dbi(self->store, "wal", 0, &self->wal_dbi) != SB_OK) {
        sbi_error("cannot open the journal's database in %s", path);
        return -1;
    }
    if (!(self->wal = broker_wal_open(wal, wal_size, &self->wal_applied, err, sizeof err))) {
        sbi_error("cannot open the journal: %s", err);
        return -1;
    }
    int rc = broker_wal_recover(self, &self->applied);
    if (rc != SB_OK) {
        sbi_error("cannot apply the journal %s to the store: %s", wal, sb_strerror(rc));
        return -1;
    }
    self->submitted = self->applied;
    if (broker_events_load(self) != SB_OK) {
        sbi_error("cannot read the event queues in %s", path);
        return -1;
    }
    return 0;
}

/* Message ids seen within the skew window survive a restart: reload them
   from the audit log, so a replay across a restart is still refused. */
static int s_remember_seen(const Sharebus__AuditRecord *record, void *arg)
{
    broker_t *self = arg;
    if (record->message_id.len == SBI_ID_SIZE)
        broker_seen_add(self->seen, record->message_id.data,
                        record->time_ms + (uint64_t) S_SEEN_KEEP_MS(self), sbi_now_ms());
    return 0;
}

static int s_open_sockets(broker_t *self)
{
    /* The ZAP handler first, before any bind, and alive until the sockets
       it admits to are gone. */
    self->zap = broker_zap_new();
    if (!self->zap) {
        sbi_error("cannot bind the ZAP handler: %s", zmq_strerror(zmq_errno()));
        return -1;
    }

    const sbi_keys_t *keys = sbi_crypto_keys(self->crypto);
    self->router = zsock_new(ZMQ_ROUTER);
    zsock_set_zap_domain(self->router, "sharebus");
    zsock_set_curve_server(self->router, 1);
    zsock_set_curve_publickey_bin(self->router, keys->cert.curve_public);
    zsock_set_curve_secretkey_bin(self->router, keys->curve_secret);
    zsock_set_router_mandatory(self->router, 1);
    zsock_set_maxmsgsize(self->router, SBI_FRAME_MAX);
    zsock_set_sndhwm(self->router, 100000);
    zsock_set_rcvhwm(self->router, 100000);
    zsock_set_linger(self->router, 1000);
    zsock_set_rcvtimeo(self->router, 0);     /* the loop reads until none is left */
    zsock_set_heartbeat_ivl(self->router, 2000);
    zsock_set_heartbeat_timeout(self->router, 6000);
    char monitor[64];
    snprintf(monitor, sizeof monitor, "inproc://broker-monitor-%p", (void *) self);
    zmq_socket_monitor(zsock_resolve(self->router), monitor, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
    self->monitor = zsock_new(ZMQ_PAIR);
    zsock_connect(self->monitor, "%s", monitor);
    if (zsock_bind(self->router, "%s", self->config.bind) < 0) {
        sbi_error("cannot bind %s: %s", self->config.bind, zmq_strerror(zmq_errno()));
        return -1;
    }
    return broker_admin_open(self);
}

static void s_collect(broker_t *self, bool wait);
static void s_wait_applied(broker_t *self);

broker_t *broker_new(const broker_config_t *config)
{
    broker_t *self = calloc(1, sizeof *self);
    assert(self);
    self->config = *config;
    self->started = zclock_mono();
    self->peers = zhashx_new();
    zhashx_set_destructor(self->peers, s_peer_free);
    self->pending = zhashx_new();
    zhashx_set_destructor(self->pending, broker_pending_free);
    self->seen = broker_seen_new();
    self->buckets = zhashx_new();
    zhashx_set_destructor(self->buckets, (zhashx_destructor_fn *) zstr_free);
    self->consent_buckets = zhashx_new();
    zhashx_set_destructor(self->consent_buckets, (zhashx_destructor_fn *) zstr_free);
    self->consents_expiring = zhashx_new();
    self->counters = zhashx_new();
    zhashx_set_destructor(self->counters, (zhashx_destructor_fn *) zstr_free);
    self->batch = broker_batch_new();

    char err[512];
    self->trust = sbi_trust_new(config->certs, err, sizeof err);
    if (!self->trust) {
        sbi_error("cannot load certificates: %s", err);
        broker_destroy(&self);
        return NULL;
    }
    zlistx_t *errors = zlistx_new();
    zlistx_set_destructor(errors, (zlistx_destructor_fn *) zstr_free);
    self->policy = s_load_policy(self, errors);
    for (char *e = zlistx_first(errors); e; e = zlistx_next(errors))
        sbi_error("%s", e);
    zlistx_destroy(&errors);
    if (!self->policy) {
        sbi_error("policy %s does not load: not starting", config->policy);
        broker_destroy(&self);
        return NULL;
    }
    if (s_load_keys(self) != 0 || s_open_store(self) != 0 || s_open_sockets(self) != 0) {
        broker_destroy(&self);
        return NULL;
    }
    sbi_audit_filter_t recent = {.since_ms = sbi_now_ms() - (uint64_t) S_SEEN_KEEP_MS(self)};
    if (sbi_audit_query(self->audit, &recent, s_remember_seen, self) != SB_OK)
        sbi_warning("cannot read recent message ids from the audit log");
    broker_pending_recover(self);
    uint8_t head[SBI_HASH_SIZE];
    self->audit_seq = sbi_audit_head(self->audit, head);
    self->in = calloc(S_BATCH_MAX, sizeof *self->in);
    assert(self->in);
    self->verifier = broker_verifier_new();
    /* From here on the audit log and every store write are the writer's
       and the applier's. */
    self->applier = broker_applier_new(self);
    self->writer = broker_writer_new(self);
    return self;
}


void broker_destroy(broker_t **self_p)
{
    broker_t *self = *self_p;
    if (!self)
        return;
    if (self->writer) {
        s_collect(self, true);
        s_wait_applied(self);
        broker_writer_destroy(self);
    }
    zactor_destroy(&self->applier);
    broker_wal_close(&self->wal);
    broker_verifier_destroy(&self->verifier);
    free(self->in);
    broker_batch_destroy(&self->batch);
    zsock_destroy(&self->admin);
    broker_metrics_close(self);
    if (self->router)
        zmq_socket_monitor(zsock_resolve(self->router), NULL, 0);
    zsock_destroy(&self->monitor);
    zsock_destroy(&self->router);
    zsock_destroy(&self->zap);
    zhashx_destroy(&self->peers);
    zhashx_destroy(&self->pending);
    broker_seen_destroy(&self->seen);
    zhashx_destroy(&self->buckets);
    zhashx_destroy(&self->consent_buckets);
    zhashx_destroy(&self->consents_expiring);
    zhashx_destroy(&self->counters);
    if (self->checkpoint)
        sharebus__checkpoint__free_unpacked(self->checkpoint, NULL);
    sbi_policy_destroy(&self->policy);
    broker_events_close(self);
    sbi_audit_close(&self->audit);
    sbi_store_close(&self->store);
    sbi_crypto_destroy(&self->crypto);
    sbi_trust_destroy(&self->trust);
    free(self);
    *self_p = NULL;
}

/* ------------------------------------------------------------ the batch */

/* A zeroed operation of `size` bytes (zchunk_new(NULL, n) has size 0). */
static zchunk_t *s_op_new(size_t size)
{
    zchunk_t *op = zchunk_new(NULL, size);
    zchunk_fill(op, 0, size);
    return op;
}

void broker_audit(broker_t *self, Sharebus__AuditRecord *record)
{
    /* Its time is when it was decided, not when LMDB applied it (which,
       after a crash, is the next start). */
    uint64_t time_ms = record->time_ms;
    char *reason = record->reason, *detail = record->detail;
    if (!time_ms)
        record->time_ms = sbi_now_ms();
    size_t size = sharebus__audit_record__get_packed_size(record);
    if (size > SBI_AUDIT_RECORD_MAX) {
        /* Only free text can make a record this large (a header is at most
           SBI_HEADER_MAX), and the store would refuse the record for ever
           after the journal had it: the text goes, the record stays. */
        sbi_error("an audit record of %zu bytes: its reason and detail are dropped", size);
        record->reason = "(dropped: over the size of an audit record)";
        record->detail = "";
        size = sharebus__audit_record__get_packed_size(record);
    }
    zchunk_t *op = s_op_new(size + 1);
    zchunk_data(op)[0] = 'A';
    sharebus__audit_record__pack(record, zchunk_data(op) + 1);
    record->time_ms = time_ms;
    record->reason = reason;
    record->detail = detail;
    broker_batch_op(self->batch, op);
}

int broker_dbi_open(broker_t *self, const char *name, unsigned flags, MDB_dbi *dbi)
{
    assert(self->n_dbis < sizeof self->dbis / sizeof self->dbis[0]);
    assert(strlen(name) < sizeof self->dbis[0].name);
    int rc = sbi_store_dbi(self->store, name, flags, dbi);
    if (rc == SB_OK) {
        broker_dbi_t *d = &self->dbis[self->n_dbis++];
        snprintf(d->name, sizeof d->name, "%s", name);
        d->dbi = *dbi;
    }
    return rc;
}

int broker_dbi_find(broker_t *self, const char *name, size_t len, MDB_dbi *dbi)
{
    for (size_t i = 0; i < self->n_dbis; i++)
        if (strlen(self->dbis[i].name) == len && memcmp(self->dbis[i].name, name, len) == 0) {
            *dbi = self->dbis[i].dbi;
            return SB_OK;
        }
    return SB_ENOTFOUND;
}

/* A put ('P') or delete ('D') of `key` in `dbi`, which goes by its name;
   `extra` bytes after the key are left for the caller. */
static zchunk_t *s_key_op(broker_t *self, char kind, MDB_dbi dbi, const void *key,
                          size_t key_size, size_t extra, uint8_t **rest)
{
    const char *name = NULL;
    for (size_t i = 0; i < self->n_dbis && !name; i++)
        if (self->dbis[i].dbi == dbi)
            name = self->dbis[i].name;
    assert(name);
    size_t nlen = strlen(name), at = 2 + nlen + (kind == 'P' ? 4 : 0);
    zchunk_t *op = s_op_new(at + key_size + extra);
    uint8_t *data = zchunk_data(op);
    data[0] = (uint8_t) kind;
    data[1] = (uint8_t) nlen;
    memcpy(data + 2, name, nlen);
    if (kind == 'P') {
        uint32_t k = (uint32_t) key_size;
        memcpy(data + 2 + nlen, &k, 4);
    }
    memcpy(data + at, key, key_size);
    *rest = data + at + key_size;
    return op;
}

void broker_put(broker_t *self, MDB_dbi dbi, const void *key, size_t key_size, const void *value,
                size_t value_size)
{
    uint8_t *rest;
    zchunk_t *op = s_key_op(self, 'P', dbi, key, key_size, value_size, &rest);
    memcpy(rest, value, value_size);
    broker_batch_op(self->batch, op);
}

void broker_del(broker_t *self, MDB_dbi dbi, const void *key, size_t key_size)
{
    uint8_t *rest;
    broker_batch_op(self->batch, s_key_op(self, 'D', dbi, key, key_size, 0, &rest));
}

static void s_queue(broker_t *self, const zframe_t *to, zframe_t **frame_p, const char *pending_key,
                    bool durable, int64_t read_us)
{
    broker_out_t *out = calloc(1, sizeof *out);
    assert(out);
    out->to = zframe_dup((zframe_t *) to);
    out->frame = *frame_p;
    *frame_p = NULL;
    if (pending_key)
        snprintf(out->pending_key, sizeof out->pending_key, "%s", pending_key);
    out->forward = durable;
    out->read_us = read_us;
    broker_batch_send(self->batch, out);
}

void broker_send(broker_t *self, const zframe_t *to, zframe_t **frame_p, const char *pending_key)
{
    s_queue(self, to, frame_p, pending_key, false, 0);
}

void broker_forward(broker_t *self, const zframe_t *to, zframe_t **frame_p,
                    const char *pending_key, int64_t read_us)
{
    s_queue(self, to, frame_p, pending_key, true, read_us);
}

static void s_deliver(broker_t *self, broker_out_t *out)
{
    if (zframe_send(&out->to, self->router, ZFRAME_MORE | ZFRAME_DONTWAIT) == 0
        && zframe_send(&out->frame, self->router, ZFRAME_DONTWAIT) == 0) {
        if (out->read_us)
            broker_metrics_hold(self, out->pending_key[0] != 0, zclock_usecs() - out->read_us);
        return;
    }
    /* Peer gone (ROUTER_MANDATORY) or its queue full: a forwarded request
       is answered "unavailable" by the next sweep; anything else is lost
       with its peer, which hears it again on reconnect. */
    broker_pending_t *p = out->pending_key[0] ? zhashx_lookup(self->pending, out->pending_key) : NULL;
    if (p) {
        p->fail_code = SB_EUNAVAILABLE;
        p->deadline = 0;
        self->next_sweep = 0;
    }
}

/* The store cannot be written: refuse traffic until a probe finds it
   writable again. */
static void s_store_failed(broker_t *self, int rc)
{
    broker_events_reset_all(self);
    if (!self->store_full) {
        self->store_full = true;
        sbi_error("audit log cannot be written (%s): refusing traffic until it can be%s",
                  sb_strerror(rc), rc == SB_EFULL ? " (space is back, or --map-max is raised)" : "");
    }
}

/* The writer handed a batch back: when it is durable (in the journal),
   what it produced leaves; when not, nothing an agency sent leaves, and
   the store is full until a probe finds it writable. */
static void s_batch_done(broker_t *self, broker_batch_t *batch)
{
    self->in_flight--;
    int rc = broker_batch_status(batch);
    if (rc != SB_OK) {
        /* Expiries noticed into it (or into a later one) are noticed, and
           recorded, again by the next request that finds them. */
        zlistx_t *ids = zhashx_keys(self->consents_expiring);
        for (const char *id = zlistx_first(ids); id; id = zlistx_next(ids))
            if ((uintptr_t) zhashx_lookup(self->consents_expiring, id) >= self->submitted)
                zhashx_delete(self->consents_expiring, id);
        zlistx_destroy(&ids);
        self->submitted--;      /* not in the journal: no number, nothing to apply */
        s_store_failed(self, rc);
    }
    else
        broker_metrics_commit(self, broker_batch_commit_us(batch));
    zlistx_t *outbox = broker_batch_outbox(batch);
    for (broker_out_t *out = zlistx_first(outbox); out; out = zlistx_next(outbox)) {
        if (rc == SB_OK || !out->forward) {
            s_deliver(self, out);
            continue;
        }
        /* Nothing unaudited is forwarded. A forwarded request is answered
           "unavailable" by the next sweep; the broker's refusals still go. */
        broker_pending_t *p = out->pending_key[0] ? zhashx_lookup(self->pending, out->pending_key) : NULL;
        if (p) {
            p->fail_code = SB_EUNAVAILABLE;
            p->deadline = 0;
        }
    }
    broker_batch_destroy(&batch);
}

/* The applier committed the journal to LMDB up to a batch, signing a
   checkpoint when one was asked for, or could not. */
static void s_applied(broker_t *self, broker_applied_t *done)
{
    if (done->status != SB_OK)
        s_store_failed(self, done->status);
    else {
        self->applied = done->last;
        self->audit_seq = done->head;
    }
    if (done->cp) {
        if (self->checkpoint)
            sharebus__checkpoint__free_unpacked(self->checkpoint, NULL);
        self->checkpoint = done->cp;
        done->cp = NULL;
        self->checkpointed_seq = self->checkpoint->seq;
        Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
        payload.body_case = SHAREBUS__PAYLOAD__BODY_CHECKPOINT;
        payload.checkpoint = self->checkpoint;
        broker_broadcast(self, SHAREBUS__KIND__KIND_CHECKPOINT, &payload);
    }
    broker_applied_destroy(&done);
}

/* Takes back every batch the writer has finished, waiting for them when
   `wait` is set (until none is in flight), and what the applier said. */
static void s_collect(broker_t *self, bool wait)
{
    while (self->in_flight > 0 && (wait || (zsock_events(self->writer) & ZMQ_POLLIN))) {
        broker_batch_t *batch = broker_writer_done(self->writer);
        if (!batch)
            break;
        s_batch_done(self, batch);
    }
    while (zsock_events(self->applier) & ZMQ_POLLIN) {
        broker_applied_t *done = broker_applier_done(self->applier);
        if (!done)
            break;
        s_applied(self, done);
    }
}

/* Waits until LMDB has committed every batch handed over, or the applier
   failed. Called with every batch back from the writer, so every record is
   at the applier: one "NOW" commits them all (in reports of S_APPLY_MAX
   records, after any report it sent before it). */
static void s_wait_applied(broker_t *self)
{
    if (self->applied < self->submitted)
        zstr_send(self->applier, "NOW");
    while (self->applied < self->submitted) {
        broker_applied_t *done = broker_applier_done(self->applier);
        if (!done)
            break;
        bool failed = done->status != SB_OK;
        s_applied(self, done);
        if (failed)
            break;
    }
}

/* Makes the current batch durable; what it produced leaves once it is.
   When nothing is at the writer and no message waits, the main thread
   would only sleep meanwhile, so it writes the batch itself: two thread
   hand-offs fewer. Otherwise the writer writes it, and the main thread
   goes on deciding the next messages. */
void broker_flush(broker_t *self)
{
    broker_events_flush_acks(self);
    if (broker_batch_empty(self->batch))
        return;
    broker_batch_t *batch = self->batch;
    self->batch = broker_batch_new();
    self->in_flight++;
    self->submitted++;
    if (self->in_flight == 1 && !(zsock_events(self->router) & ZMQ_POLLIN)) {
        broker_writer_write(self, batch);
        s_batch_done(self, batch);
    }
    else
        broker_writer_submit(self->writer, batch);
    if (self->apply_now) {
        zstr_send(self->applier, "NOW");    /* events to pump: commit them soon */
        self->apply_now = false;
    }
}

void broker_sync(broker_t *self)
{
    broker_flush(self);
    s_collect(self, true);
    s_wait_applied(self);
    /* Checkpoints broadcast on the way are sent too. */
    if (!broker_batch_empty(self->batch)) {
        broker_flush(self);
        s_collect(self, true);
        s_wait_applied(self);
    }
}

/* ----------------------------------------------------- broker messages */

int broker_send_to(broker_t *self, const char *agency, Sharebus__Header *header,
                   const Sharebus__Payload *payload)
{
    broker_peer_t *peer = zhashx_lookup(self->peers, agency);
    const sbi_cert_t *cert = broker_peer_cert(self, agency);
    if (!peer || !cert)
        return SB_EUNAVAILABLE;
    zframe_t *frame = NULL;
    int rc = sbi_envelope_seal(self->crypto, cert, header, payload, &frame);
    if (rc == SB_OK)
        broker_send(self, peer->routing, &frame, NULL);
    return rc;
}

void broker_broadcast(broker_t *self, Sharebus__Kind kind, const Sharebus__Payload *payload)
{
    /* Over a copy of the keys: sending looks peers up, which must not
       disturb an iteration of the same table. */
    zlistx_t *agencies = zhashx_keys(self->peers);
    for (const char *agency = zlistx_first(agencies); agency; agency = zlistx_next(agencies)) {
        sbi_header_t h;
        sbi_header_init(&h, kind, "broker", agency);
        if (kind == SHAREBUS__KIND__KIND_POLICY)
            h.header.policy_version = (ProtobufCBinaryData){32, (uint8_t *) sbi_policy_version(self->policy)};
        broker_send_to(self, agency, &h.header, payload);
    }
    zlistx_destroy(&agencies);
}

void broker_refuse(broker_t *self, const sbi_cert_t *cert, const zframe_t *routing,
                   sbi_envelope_t *env, Sharebus__AuditKind kind, int code, const char *reason)
{
    Sharebus__AuditRecord r = SHAREBUS__AUDIT_RECORD__INIT;
    const Sharebus__Header *h = env ? env->header : NULL;
    const char *agency = cert->agency;
    r.kind = kind;
    r.decision = SHAREBUS__DECISION__DECISION_DENY;
    r.error = sbi_error_kind(code);
    r.reason = (char *) reason;
    r.from = (char *) agency;
    if (h) {
        r.message_id = h->message_id;
        r.correlation_id = h->correlation_id;
        r.to = h->to;
        r.dataset = h->dataset;
        r.purpose = h->purpose;
        r.subject_ref = h->subject_ref;
        r.fields_requested = h->fields;
        r.n_fields_requested = h->n_fields;
        r.payload_hash = h->payload_hash;
        sbi_envelope_proof(env->envelope, &r);
    }
    char count[64];
    snprintf(count, sizeof count, "refused.%s", sb_errname(code));
    broker_count(self, count);
    char id[33] = "-";
    if (h)
        sbi_id_hex(h->message_id, id);
    sbi_info("refused %s from %s: %s: %s", id, agency, sb_errname(code), reason);
    broker_audit(self, &r);

    /* Answer the sender, through the connection it came on, even when its
       certificate is what is wrong: it should know why. */
    if (routing) {
        sbi_header_t e;
        sbi_header_init(&e, SHAREBUS__KIND__KIND_ERROR, "broker", agency);
        if (h)
            e.header.correlation_id = h->message_id;
        e.header.error = sbi_error_kind(code);
        e.header.reason = (char *) reason;
        zframe_t *frame = NULL;
        if (sbi_envelope_seal(self->crypto, cert, &e.header, NULL, &frame) == SB_OK)
            broker_send(self, routing, &frame, NULL);
    }
}

/* ------------------------------------------------------------- reload */

/* Loads certificates and policy; swaps them in only when both load. */
static int s_reload(broker_t *self, zlistx_t *errors)
{
    char err[512];
    sbi_trust_t *trust = sbi_trust_new(self->config.certs, err, sizeof err);
    if (!trust) {
        zlistx_add_end(errors, zsys_sprintf("certificates: %s", err));
        return -1;
    }
    sbi_policy_t *policy = s_load_policy(self, errors);
    if (!policy) {
        sbi_trust_destroy(&trust);
        return -1;
    }
    /* Swap whole: no request ever sees half a policy. The broker's own key
       pair stays (rotating it is a restart). */
    const sbi_cert_t *me = sbi_trust_find(trust, "broker");
    if (!me || memcmp(me->sign_public, self->me->sign_public, 32) != 0) {
        zlistx_add_end(errors, strdup("certificates: broker.cert changed; restart the broker "
                                      "to rotate its keys"));
        sbi_policy_destroy(&policy);
        sbi_trust_destroy(&trust);
        return -1;
    }
    sbi_trust_destroy(&self->trust);
    self->trust = trust;
    self->me = me;
    sbi_policy_destroy(&self->policy);
    self->policy = policy;
    /* Rate buckets ("rule/consumer") of rules now gone or no longer
       limited go too; the others keep counting across the reload. A rule
       id may hold a '/', an agency id never does: the id ends at the last. */
    zlistx_t *buckets = zhashx_keys(self->buckets);
    for (char *key = zlistx_first(buckets); key; key = zlistx_next(buckets)) {
        char id[SBI_NAME_MAX + 1];
        const char *slash = strrchr(key, '/');
        snprintf(id, sizeof id, "%.*s", (int) (slash ? slash - key : 0), key);
        const sbi_rule_t *rule = sbi_policy_rule(policy, id);
        if (!rule || !rule->rate_count)
            zhashx_delete(self->buckets, key);
    }
    zlistx_destroy(&buckets);

    /* Agencies no longer trusted are cut off: forget their connections,
       and those made with a certificate revoked since (a rotated-out key). */
    zlistx_t *agencies = zhashx_keys(self->peers);
    for (char *a = zlistx_first(agencies); a; a = zlistx_next(agencies))
        if (!sbi_trust_find(self->trust, a)
            || sbi_trust_check(self->trust, broker_peer_cert(self, a), sbi_now_ms()) != SB_OK) {
            sbi_notice("%s is no longer trusted: disconnected", a);
            broker_peer_forget(self, a);
        }
    zlistx_destroy(&agencies);

    char hex[65];
    sbi_hex(sbi_policy_version(policy), 32, hex);
    Sharebus__AuditRecord r = SHAREBUS__AUDIT_RECORD__INIT;
    r.kind = SHAREBUS__AUDIT_KIND__AUDIT_POLICY_LOADED;
    r.from = "broker";
    r.decision = SHAREBUS__DECISION__DECISION_ALLOW;
    r.detail = hex;
    broker_audit(self, &r);

    Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
    payload.body_case = SHAREBUS__PAYLOAD__BODY_POLICY;
    payload.policy = (Sharebus__PolicyBundle *) sbi_policy_bundle(policy);
    broker_broadcast(self, SHAREBUS__KIND__KIND_POLICY, &payload);
    broker_sync(self);      /* a reload answered OK is on the record */
    sbi_notice("policy %s loaded", hex);
    return 0;
}

static void s_reload_logged(broker_t *self)
{
    zlistx_t *errors = zlistx_new();
    zlistx_set_destructor(errors, (zlistx_destructor_fn *) zstr_free);
    broker_reload(self, errors);
    zlistx_destroy(&errors);
}

int broker_reload(broker_t *self, zlistx_t *errors)
{
    if (s_reload(self, errors) == 0)
        return 0;
    sbi_error("reload refused, the old policy stays (%zu error(s)):", zlistx_size(errors));
    for (char *e = zlistx_first(errors); e; e = zlistx_next(errors))
        sbi_error("  %s", e);
    Sharebus__AuditRecord r = SHAREBUS__AUDIT_RECORD__INIT;
    r.kind = SHAREBUS__AUDIT_KIND__AUDIT_POLICY_REJECTED;
    r.from = "broker";
    r.decision = SHAREBUS__DECISION__DECISION_DENY;
    r.reason = zlistx_first(errors);
    broker_audit(self, &r);
    broker_sync(self);
    return -1;
}

/* A SIGHUP sent since the last call, taken off the pending set: it is
   blocked in every thread (main.c) and waited for here, with no wait. */
static bool s_hup_taken(void)
{
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    static const struct timespec now = {0, 0};
    return sigtimedwait(&hup, NULL, &now) == SIGHUP;
}

/* -------------------------------------------------------- checkpoints */

static void s_checkpoint(broker_t *self, bool force)
{
    if (self->audit_seq == 0 || (self->audit_seq == self->checkpointed_seq && !force)
        || self->store_full)
        return;
    broker_batch_want_checkpoint(self->batch);
    broker_flush(self);
}

/* ------------------------------------------------------------ the loop */

/* Takes one message read off the router into `in`: true when it is an
   agency's to route, false when it was dropped or refused here. */
/* One message from the router, frame by frame: its routing id and its
   first frame, and whether more frames followed. Those are read and
   dropped one at a time, never held (zmsg_recv would keep every one: a
   message of a million empty frames took 750 MB). NULL routing when
   nothing waits. */
static zframe_t *s_recv_router(broker_t *self, zframe_t **frame_p, bool *extra_p)
{
    zframe_t *routing = zframe_recv(self->router);
    *frame_p = routing && zframe_more(routing) ? zframe_recv(self->router) : NULL;
    *extra_p = *frame_p && zframe_more(*frame_p);
    if (*extra_p) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        while (zmq_msg_recv(&part, zsock_resolve(self->router), 0) >= 0 && zmq_msg_more(&part))
            ;
        zmq_msg_close(&part);
    }
    return routing;
}

static bool s_read_router(broker_t *self, zframe_t *routing, zframe_t *frame, bool extra,
                          broker_in_t *in)
{
    /* Admission (zap.c) put the client's CURVE key (Z85) in User-Id: that,
       not what the envelope says, is who sent this. */
    const char *user = frame ? zframe_meta(frame, "User-Id") : NULL;
    uint8_t curve[32];
    const sbi_cert_t *cert = user && strlen(user) == 40 && zmq_z85_decode(curve, user)
                                 ? sbi_trust_by_curve(self->trust, curve)
                                 : NULL;
    if (self->config.capture && frame) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%08llu.env", self->config.capture,
                 (unsigned long long) ++self->captured);
        if (sbi_file_write(path, zframe_data(frame), zframe_size(frame), 0600, false) != SB_OK)
            sbi_warning("capture: cannot write %s", path);
    }
    bool route = false;
    if (!cert || cert->kind != SBI_CERT_AGENCY)
        sbi_warning("message from an unknown CURVE key dropped");
    else if (extra)
        broker_refuse(self, cert, routing, NULL,
                      SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED, SB_EMALFORMED,
                      "one frame per message");
    else {
        *in = (broker_in_t) {.routing = routing, .frame = frame, .cert = cert};
        routing = frame = NULL;
        route = true;
    }
    zframe_destroy(&routing);
    zframe_destroy(&frame);
    return route;
}

/* The messages waiting on the router, S_BATCH_MAX at most: read (with no
   wait: the router's receive timeout is 0), checked on two threads, routed
   in order. */
static void s_on_router(broker_t *self)
{
    size_t count = 0;
    zframe_t *routing, *frame;
    bool extra;
    int64_t now = zclock_usecs();
    for (int n = 0; n < S_BATCH_MAX && (routing = s_recv_router(self, &frame, &extra)); n++)
        if (s_read_router(self, routing, frame, extra, &self->in[count])) {
            self->in[count].read_us = now;
            count++;
        }
    broker_verify(self->verifier, self->trust, self->in, count, sbi_now_ms());
    for (size_t i = 0; i < count; i++) {
        broker_in_t *in = &self->in[i];
        broker_route(self, in);
        sbi_envelope_clear(&in->env);
        zframe_destroy(&in->routing);
        zframe_destroy(&in->frame);
    }
}

#define S_REFUSALS_PER_S 10  /* refused connections recorded one by one, each second */

/* One audit record (and log line) for a refused connection, or for
   `count` of them when more came than are recorded one by one. */
static void s_record_refusal(broker_t *self, const char *address, uint64_t count)
{
    char reason[96] = "CURVE key not admitted";
    if (count > 1)
        snprintf(reason, sizeof reason, "CURVE key not admitted: %llu more connections, the "
                 "last from this address", (unsigned long long) count);
    sbi_notice("connection from %s refused: %s", address, reason);
    Sharebus__AuditRecord r = SHAREBUS__AUDIT_RECORD__INIT;
    r.kind = SHAREBUS__AUDIT_KIND__AUDIT_AGENT_REFUSED;
    r.decision = SHAREBUS__DECISION__DECISION_DENY;
    r.error = SHAREBUS__ERROR_KIND__ERR_UNKNOWN;
    r.reason = reason;
    r.detail = (char *) address;
    broker_audit(self, &r);     /* committed with the loop's next batch */
}

/* The refusals not recorded one by one since the last summary: one record. */
static void s_summarise_refusals(broker_t *self)
{
    if (self->refusals_unrecorded)
        s_record_refusal(self, self->refusals_last, self->refusals_unrecorded);
    self->refusals_unrecorded = 0;
}

/* A handshake ZAP refused. Anyone who can reach the port can make these,
   as fast as they like: up to S_REFUSALS_PER_S a second are recorded one
   by one, the rest once a second, counted, so that a flood of strangers
   cannot fill the audit log or hold the loop on the disk. */
static void s_on_monitor(broker_t *self)
{
    zmsg_t *event = zmsg_recv(self->monitor);
    char *address = event && zmsg_size(event) == 2 ? zframe_strdup(zmsg_last(event)) : NULL;
    int64_t second = zclock_mono() / 1000;
    if (second != self->refusals_second) {
        s_summarise_refusals(self);
        self->refusals_second = second;
        self->refusals = 0;
    }
    if (self->refusals++ < S_REFUSALS_PER_S)
        s_record_refusal(self, address ? address : "?", 1);
    else {
        self->refusals_unrecorded++;
        snprintf(self->refusals_last, sizeof self->refusals_last, "%s", address ? address : "?");
    }
    zstr_free(&address);
    zmsg_destroy(&event);
    broker_count(self, "refused.connection");
}

/* While the store is full, see every five seconds whether it can take writes
   again (the map may grow, or disk space came back): resume with a record
   that says so. */
static void s_probe_store(broker_t *self)
{
    bool was_full = self->store_full;
    self->store_full = false;
    /* First what the journal holds and LMDB does not (the applier grows
       the map when it can): the record that the store is writable again
       goes only to a store that took that, or it would join the backlog at
       every probe and be applied, many times over, once space is back. */
    broker_sync(self);
    if (self->store_full)
        return;
    Sharebus__AuditRecord r = SHAREBUS__AUDIT_RECORD__INIT;
    r.kind = SHAREBUS__AUDIT_KIND__AUDIT_STORE_RESUMED;
    r.from = "broker";
    r.detail = "the store is writable again";
    broker_audit(self, &r);
    broker_sync(self);
    if (was_full && !self->store_full) {
        /* Batches that failed took their acknowledgements with them: count
           the queues again from what LMDB holds. */
        if (broker_events_load(self) != SB_OK)
            sbi_warning("cannot count the event queues again");
        sbi_notice("the store is writable again: traffic resumes");
    }
}

/* The loop's sockets, polled together once a turn. What zmq_poll found is
   read from its revents: asking a socket again (zsock_events) costs a
   system call each time, as does a receive that finds nothing. */
enum { S_ROUTER, S_ZAP, S_MONITOR, S_ADMIN, S_WRITER, S_APPLIER, S_METRICS, S_SOCKETS };

int broker_run(broker_t *self)
{
    zmq_pollitem_t items[S_SOCKETS] = {
        [S_ROUTER] = {zsock_resolve(self->router), 0, ZMQ_POLLIN, 0},
        [S_ZAP] = {zsock_resolve(self->zap), 0, ZMQ_POLLIN, 0},
        [S_MONITOR] = {zsock_resolve(self->monitor), 0, ZMQ_POLLIN, 0},
        [S_ADMIN] = {zsock_resolve(self->admin), 0, ZMQ_POLLIN, 0},
        [S_WRITER] = {zsock_resolve(self->writer), 0, ZMQ_POLLIN, 0},
        [S_APPLIER] = {zsock_resolve(self->applier), 0, ZMQ_POLLIN, 0},
    };
    int count = S_METRICS;
    if (broker_metrics_socket(self))
        items[count++] = (zmq_pollitem_t) {zsock_resolve(broker_metrics_socket(self)), 0,
                                           ZMQ_POLLIN, 0};
    Sharebus__AuditRecord r = SHAREBUS__AUDIT_RECORD__INIT;
    char hex[65];
    r.kind = SHAREBUS__AUDIT_KIND__AUDIT_BROKER_STARTED;
    r.from = "broker";
    r.detail = sbi_hex(sbi_policy_version(self->policy), 32, hex);
    broker_audit(self, &r);
    r.kind = SHAREBUS__AUDIT_KIND__AUDIT_POLICY_LOADED;
    broker_audit(self, &r);
    broker_sync(self);
    self->next_checkpoint = zclock_mono() + self->config.checkpoint_ms;
    int64_t next_probe = 0;
    while (!zsys_interrupted) {
        if (zmq_poll(items, count, 50) < 0 && zmq_errno() != EINTR)
            break;      /* the context is terminating */
        if (zsys_interrupted)
            break;
        if ((items[S_WRITER].revents | items[S_APPLIER].revents) & ZMQ_POLLIN)
            s_collect(self, false);
        /* Bounded work in flight: with two batches at the writer, take no
           more until one comes back (it takes everything queued at once). */
        if (self->in_flight >= 2)
            s_collect(self, true);
        if (items[S_ROUTER].revents & ZMQ_POLLIN)
            s_on_router(self);
        /* Group commit: while the writer commits, the next batch grows. */
        if (self->in_flight == 0)
            broker_flush(self);
        broker_events_pump(self);
        if (items[S_ZAP].revents & ZMQ_POLLIN)
            while (zsock_events(self->zap) & ZMQ_POLLIN)
                broker_zap_handle(self);
        if (items[S_MONITOR].revents & ZMQ_POLLIN)
            while (zsock_events(self->monitor) & ZMQ_POLLIN)
                s_on_monitor(self);
        if (items[S_ADMIN].revents & ZMQ_POLLIN)
            broker_admin_handle(self);
        if (count > S_METRICS && (items[S_METRICS].revents & ZMQ_POLLIN))
            while (zsock_events(broker_metrics_socket(self)) & ZMQ_POLLIN)
                broker_metrics_handle(self);
        int64_t now = zclock_mono();
        if (now >= self->next_sweep) {
            if (now / 1000 != self->refusals_second)
                s_summarise_refusals(self);
            broker_sweep(self);
            broker_flush(self);
            self->next_sweep = now + 50;
            if (s_hup_taken())      /* a system call: every 50 ms, not every turn */
                s_reload_logged(self);
        }
        if (self->store_full && now >= next_probe) {
            s_probe_store(self);
            next_probe = now + 5000;
        }
        if (now >= self->next_checkpoint) {
            s_checkpoint(self, false);
            self->next_checkpoint = now + self->config.checkpoint_ms;
        }
    }
    broker_pending_stop(self);
    r.kind = SHAREBUS__AUDIT_KIND__AUDIT_BROKER_STOPPED;
    r.detail = "";
    broker_audit(self, &r);
    broker_sync(self);
    s_checkpoint(self, true);
    broker_sync(self);
    sbi_notice("stopped; audit head checkpointed");
    return 0;
}
