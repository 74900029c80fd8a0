/*  consent.c - the consent registry: citizens' consents, stored under the
    subject reference (never the clear id), checked on every request whose
    rule requires consent, with their whole history kept.

    Databases in the broker's store:
      consent.records   id (32 hex) -> ConsentEntry (signed consent, state, history)
      consent.match     subject_ref|consumer|0|dataset|0|purpose -> ids (DUPSORT|DUPFIXED)
      consent.subject   subject_ref -> ids (DUPSORT|DUPFIXED)
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "consent.h"

#define S_ID_LEN 32

int broker_consent_open(broker_t *b)
{
    int rc = broker_dbi_open(b, "consent.records", 0, &b->consent_records);
    if (rc == SB_OK)
        rc = broker_dbi_open(b, "consent.match", MDB_DUPSORT | MDB_DUPFIXED,
                           &b->consent_match);
    if (rc == SB_OK)
        rc = broker_dbi_open(b, "consent.subject", MDB_DUPSORT | MDB_DUPFIXED,
                           &b->consent_subject);
    return rc;
}

static size_t s_match_key(uint8_t *key, size_t size, const uint8_t *subject_ref,
                          const char *consumer, const char *dataset, const char *purpose)
{
    int n = snprintf((char *) key + SBI_HASH_SIZE, size - SBI_HASH_SIZE, "%s%c%s%c%s",
                     consumer, 0, dataset, 0, purpose);
    memcpy(key, subject_ref, SBI_HASH_SIZE);
    return SBI_HASH_SIZE + (size_t) n;
}

/* The stored entry of consent `id`, decoded. */
static int s_load(broker_t *b, MDB_txn *txn, const char *id, Sharebus__ConsentEntry **entry_p,
                  Sharebus__Consent **consent_p)
{
    MDB_val key = {S_ID_LEN, (void *) id}, value;
    int rc = mdb_get(txn, b->consent_records, &key, &value);
    if (rc != 0)
        return sbi_store_code(rc);
    return sbi_consent_entry_decode(value.mv_data, value.mv_size, entry_p, consent_p);
}

static void s_free(Sharebus__ConsentEntry **entry_p, Sharebus__Consent **consent_p)
{
    if (*entry_p)
        sharebus__consent_entry__free_unpacked(*entry_p, NULL);
    if (*consent_p)
        sharebus__consent__free_unpacked(*consent_p, NULL);
    *entry_p = NULL;
    *consent_p = NULL;
}

/* Appends a history event and writes the entry back (in the batch).
   History is only ever appended to: grant, revoke and expiry each stay on
   record. */
static void s_transition(broker_t *b, const char *id, Sharebus__ConsentEntry *entry,
                         Sharebus__ConsentState state, const char *by, const char *reason)
{
    Sharebus__ConsentEvent event = SHAREBUS__CONSENT_EVENT__INIT;
    event.state = state;
    event.time_ms = sbi_now_ms();
    event.by = (char *) by;
    event.reason = (char *) (reason ? reason : "");
    Sharebus__ConsentEvent **history = malloc((entry->n_history + 1) * sizeof *history);
    assert(history);
    memcpy(history, entry->history, entry->n_history * sizeof *history);
    history[entry->n_history] = &event;
    Sharebus__ConsentEntry updated = *entry;
    updated.state = state;
    updated.history = history;
    updated.n_history = entry->n_history + 1;
    size_t size = sharebus__consent_entry__get_packed_size(&updated);
    uint8_t *buf = malloc(size);
    assert(buf);
    sharebus__consent_entry__pack(&updated, buf);
    broker_put(b, b->consent_records, id, S_ID_LEN, buf, size);
    free(buf);
    free(history);
}

static void s_audit_consent(broker_t *b, Sharebus__AuditKind kind, const Sharebus__Consent *c,
                            const char *by, const Sharebus__Header *h, const char *reason)
{
    Sharebus__AuditRecord r = SHAREBUS__AUDIT_RECORD__INIT;
    char until[32];
    r.kind = kind;
    if (h) {
        r.message_id = h->message_id;
        r.header = (ProtobufCBinaryData){0, NULL};
    }
    r.from = (char *) by;
    r.to = c->consumer;
    r.dataset = c->dataset;
    r.purpose = c->purpose;
    r.subject_ref = c->subject_ref;
    r.consent_id = c->id;
    r.decision = SHAREBUS__DECISION__DECISION_ALLOW;
    r.reason = (char *) (reason ? reason : "");
    r.detail = (char *) sbi_time_format(c->until_ms, until, sizeof until);
    broker_audit(b, &r);
}

typedef enum { S_ACTIVE, S_NOT_YET, S_REVOKED, S_EXPIRED } s_state_t;

/* Where consent `id` stands at `now`. One whose validity has ended is
   noticed here: its expiry goes into its history and the audit log, once
   (LMDB has the change only when its batch is applied). */
static s_state_t s_state(broker_t *b, const char *id, Sharebus__ConsentEntry *entry,
                         const Sharebus__Consent *c, uint64_t now)
{
    if (entry->state == SHAREBUS__CONSENT_STATE__CONSENT_REVOKED)
        return S_REVOKED;
    if (entry->state == SHAREBUS__CONSENT_STATE__CONSENT_EXPIRED) {
        zhashx_delete(b->consents_expiring, id);    /* LMDB has it now */
        return S_EXPIRED;
    }
    if (c->until_ms < now) {
        if (!zhashx_lookup(b->consents_expiring, id)) {
            /* the batch its record goes into */
            zhashx_insert(b->consents_expiring, id, (void *) (uintptr_t) (b->submitted + 1));
            s_transition(b, id, entry, SHAREBUS__CONSENT_STATE__CONSENT_EXPIRED, "broker",
                         "validity ended");
            s_audit_consent(b, SHAREBUS__AUDIT_KIND__AUDIT_CONSENT_EXPIRED, c, "broker", NULL,
                            "validity ended");
        }
        return S_EXPIRED;
    }
    return c->granted_ms <= now + (uint64_t) b->config.skew_ms ? S_ACTIVE : S_NOT_YET;
}

int broker_consent_active(broker_t *b, const char *id, char *reason, size_t reason_size)
{
    MDB_txn *txn = NULL;
    if (sbi_store_read_begin(b->store, &txn) != SB_OK) {
        snprintf(reason, reason_size, "consent registry unavailable");
        return SB_EUNAVAILABLE;
    }
    Sharebus__ConsentEntry *entry = NULL;
    Sharebus__Consent *c = NULL;
    s_state_t state = strlen(id) == S_ID_LEN && s_load(b, txn, id, &entry, &c) == SB_OK
                          ? s_state(b, id, entry, c, sbi_now_ms()) : S_REVOKED;
    s_free(&entry, &c);
    sbi_store_read_end(b->store, &txn);
    if (state == S_ACTIVE)
        return SB_OK;
    snprintf(reason, reason_size, "consent %s %s before the reply was released", id,
             state == S_EXPIRED ? "expired" : "was revoked");
    return SB_ENOCONSENT;
}

int broker_consent_find(broker_t *b, const Sharebus__Header *h, char *consent_id,
                        size_t id_size, char *reason, size_t reason_size)
{
    MDB_txn *txn = NULL;
    if (sbi_store_read_begin(b->store, &txn) != SB_OK) {
        snprintf(reason, reason_size, "consent registry unavailable");
        return SB_EUNAVAILABLE;
    }
    uint8_t kbuf[SBI_HASH_SIZE + 3 * (SBI_NAME_MAX + 1)];
    MDB_val key = {s_match_key(kbuf, sizeof kbuf, h->subject_ref.data, h->from, h->dataset,
                               h->purpose), kbuf}, value;
    MDB_cursor *cursor;
    mdb_cursor_open(txn, b->consent_match, &cursor);
    int mrc = mdb_cursor_get(cursor, &key, &value, MDB_SET_KEY);
    uint64_t now = sbi_now_ms();
    bool revoked = false, expired = false;
    int rc = SB_ENOCONSENT;
    for (; mrc == 0 && rc != SB_OK; mrc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT_DUP)) {
        char id[S_ID_LEN + 1];
        memcpy(id, value.mv_data, S_ID_LEN);
        id[S_ID_LEN] = 0;
        Sharebus__ConsentEntry *entry;
        Sharebus__Consent *c;
        if (s_load(b, txn, id, &entry, &c) != SB_OK)
            continue;
        s_state_t state = s_state(b, id, entry, c, now);
        revoked |= state == S_REVOKED;
        expired |= state == S_EXPIRED;
        if (state == S_ACTIVE) {
            snprintf(consent_id, id_size, "%s", id);
            rc = SB_OK;
        }
        s_free(&entry, &c);
    }
    mdb_cursor_close(cursor);
    sbi_store_read_end(b->store, &txn);
    if (rc != SB_OK)
        snprintf(reason, reason_size, "no active consent of this subject for %s to obtain %s "
                 "for %s%s", h->from, h->dataset, h->purpose,
                 revoked ? " (a consent was revoked)" : expired ? " (a consent has expired)" : "");
    return rc;
}

/* ------------------------------------------------------------- grant */

/* Checks a consent as received: shape, signature, policy. SB_OK or the
   refusal with its reason. */
static int s_check_grant(broker_t *b, const sbi_cert_t *by, const Sharebus__SignedConsent *sc,
                         Sharebus__Consent **consent_p, char *reason, size_t size)
{
    Sharebus__Consent *c = NULL;
    int shape = sbi_consent_decode(sc->consent, &c);
    *consent_p = c;
    if (shape != SB_OK || sc->signature.len != crypto_sign_BYTES) {
        snprintf(reason, size, "malformed consent record");
        return SB_EMALFORMED;
    }
    /* Signed with the keys of the certificate the recorder's connection
       uses, which during a key rotation need not be its newest. */
    const char *recorder = by->agency;
    const sbi_cert_t *cert = by;
    if (strcmp(c->recorded_by, recorder) != 0
        || crypto_sign_verify_detached(sc->signature.data, sc->consent.data, sc->consent.len,
                                       cert->sign_public) != 0) {
        snprintf(reason, size, "consent signature is not %s's", recorder);
        return SB_EBADSIG;
    }
    uint64_t now = sbi_now_ms(), skew = (uint64_t) b->config.skew_ms;
    if (c->until_ms <= now || c->granted_ms > now + skew || c->granted_ms + skew < now) {
        snprintf(reason, size, "consent must start now and end in the future");
        return SB_EINVAL;
    }
    sbi_decision_t d;
    int rc = sbi_policy_decide(b->policy, c->consumer, c->dataset, c->purpose, NULL, 0, now, &d);
    if (rc != SB_OK) {
        snprintf(reason, size, "no rule lets %s obtain %s for %s: %s", c->consumer, c->dataset,
                 c->purpose, d.reason);
        return rc;
    }
    if (!d.rule->consent_required) {
        snprintf(reason, size, "rule %s does not require consent: a consent "
                 "would change nothing", d.rule->id);
        return SB_EDENIED;
    }
    if (!sbi_rule_consent_recorder(d.rule, recorder)) {
        snprintf(reason, size, "%s may not record consent for %s under rule %s", recorder,
                 c->consumer, d.rule->id);
        return SB_EDENIED;
    }
    return SB_OK;
}

static void s_store_grant(broker_t *b, const Sharebus__SignedConsent *sc,
                          const Sharebus__Consent *c)
{
    Sharebus__ConsentEvent event = SHAREBUS__CONSENT_EVENT__INIT, *history[] = {&event};
    event.state = SHAREBUS__CONSENT_STATE__CONSENT_ACTIVE;
    event.time_ms = sbi_now_ms();
    event.by = c->recorded_by;
    event.reason = "granted";
    Sharebus__ConsentEntry entry = SHAREBUS__CONSENT_ENTRY__INIT;
    entry.signed_ = (Sharebus__SignedConsent *) sc;
    entry.state = SHAREBUS__CONSENT_STATE__CONSENT_ACTIVE;
    entry.history = history;
    entry.n_history = 1;
    size_t size = sharebus__consent_entry__get_packed_size(&entry);
    uint8_t *buf = malloc(size), kbuf[SBI_HASH_SIZE + 3 * (SBI_NAME_MAX + 1)];
    assert(buf);
    sharebus__consent_entry__pack(&entry, buf);
    broker_put(b, b->consent_records, c->id, S_ID_LEN, buf, size);
    free(buf);
    size_t n = s_match_key(kbuf, sizeof kbuf, c->subject_ref.data, c->consumer, c->dataset,
                           c->purpose);
    broker_put(b, b->consent_match, kbuf, n, c->id, S_ID_LEN);
    broker_put(b, b->consent_subject, c->subject_ref.data, SBI_HASH_SIZE, c->id, S_ID_LEN);
}

/* The answer to a consent operation leaves only once the batch holding
   the change is durable; the caller then waits (broker_sync) until the
   store has applied it, before reading the next message. */
static void s_answer(broker_t *b, const sbi_cert_t *cert, const zframe_t *routing,
                     const Sharebus__Header *h, Sharebus__ConsentList *list)
{
    Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
    payload.body_case = SHAREBUS__PAYLOAD__BODY_CONSENTS;
    payload.consents = list;
    sbi_header_t r;
    sbi_header_init(&r, SHAREBUS__KIND__KIND_CONSENT_RESULT, "broker", cert->agency);
    r.header.correlation_id = h->message_id;
    zframe_t *frame = NULL;
    if (sbi_envelope_seal(b->crypto, cert, &r.header, &payload, &frame) == SB_OK)
        broker_forward(b, routing, &frame, NULL, 0);
}

/* Whether consent `id` exists (committed: the caller synced the writer). */
static int s_exists(broker_t *b, const char *id)
{
    MDB_txn *txn = NULL;
    int rc = sbi_store_read_begin(b->store, &txn);
    if (rc != SB_OK)
        return rc;
    MDB_val key = {S_ID_LEN, (void *) id}, value;
    rc = mdb_get(txn, b->consent_records, &key, &value) == 0 ? SB_EEXISTS : SB_OK;
    sbi_store_read_end(b->store, &txn);
    return rc;
}

/* Each grant and revocation holds the loop until the store has it (a few
   ms): an agency sending them as fast as it can would stop routing for
   every other. A counter serves a citizen at a time; these are plenty. */
#define S_CONSENT_OPS 20            /* per second per agency, */
#define S_CONSENT_BURST_S 2         /* ... and this many seconds' worth at once */

static bool s_consent_rate_ok(broker_t *b, const sbi_cert_t *cert, const zframe_t *routing,
                              sbi_envelope_t *env)
{
    if (broker_bucket_take(b->consent_buckets, cert->agency, S_CONSENT_OPS * S_CONSENT_BURST_S,
                           1000 * S_CONSENT_BURST_S) == SB_OK)
        return true;
    broker_refuse(b, cert, routing, env, SHAREBUS__AUDIT_KIND__AUDIT_CONSENT_REFUSED, SB_ERATE,
                  "at most 20 consent grants and revocations a second per agency");
    return false;
}

void broker_consent_grant(broker_t *b, const sbi_cert_t *cert, const zframe_t *routing,
                          sbi_envelope_t *env, Sharebus__Payload *payload)
{
    if (!s_consent_rate_ok(b, cert, routing, env))
        return;
    char reason[300];
    Sharebus__Consent *c = NULL;
    int rc = payload->body_case == SHAREBUS__PAYLOAD__BODY_CONSENT
                 ? s_check_grant(b, cert, payload->consent, &c, reason, sizeof reason)
                 : SB_EMALFORMED;
    if (rc == SB_EMALFORMED && payload->body_case != SHAREBUS__PAYLOAD__BODY_CONSENT)
        snprintf(reason, sizeof reason, "consent grant without a consent");
    if (rc == SB_OK) {
        /* Read what is committed, after everything before this message. */
        broker_sync(b);
        rc = b->store_full ? SB_EUNAVAILABLE : s_exists(b, c->id);
        if (rc == SB_EEXISTS)
            snprintf(reason, sizeof reason, "consent %s already exists", c->id);
        else if (rc != SB_OK)
            snprintf(reason, sizeof reason, "consent registry cannot store it: %s", sb_strerror(rc));
    }
    if (rc == SB_OK) {
        s_store_grant(b, payload->consent, c);
        s_audit_consent(b, SHAREBUS__AUDIT_KIND__AUDIT_CONSENT_GRANTED, c, c->recorded_by,
                        env->header, NULL);
    }
    if (rc != SB_OK) {
        broker_refuse(b, cert, routing, env, SHAREBUS__AUDIT_KIND__AUDIT_CONSENT_REFUSED,
                      rc, reason);
        broker_flush(b);
    }
    else {
        char *ids[] = {c->id};
        Sharebus__ConsentList list = SHAREBUS__CONSENT_LIST__INIT;
        list.ids = ids;
        list.n_ids = 1;
        s_answer(b, cert, routing, env->header, &list);
        /* Nothing is read before the store has it: a request that follows
           the answer finds the consent. */
        broker_sync(b);
        sbi_info("consent %s recorded by %s for %s", c->id, cert->agency, c->consumer);
        broker_count(b, "consents.granted");
    }
    if (c)
        sharebus__consent__free_unpacked(c, NULL);
}

/* ------------------------------------------------------------ revoke */

/* May `agency` act on consent `c`? Its recorder, its consumer, or an agency
   the rule lets record consent for it. */
static bool s_may_manage(broker_t *b, const char *agency, const Sharebus__Consent *c)
{
    if (strcmp(agency, c->recorded_by) == 0 || strcmp(agency, c->consumer) == 0)
        return true;
    sbi_decision_t d;
    return sbi_policy_decide(b->policy, c->consumer, c->dataset, c->purpose, NULL, 0,
                             sbi_now_ms(), &d) == SB_OK
           && sbi_rule_consent_recorder(d.rule, agency);
}

typedef struct {
    const char *agency;
    const Sharebus__ConsentRevoke *revoke;
    const Sharebus__Header *h;
    zlistx_t *ids;             /* revoked ids (char *) */
    bool forbidden;
} s_revoke_t;

static bool s_revoke_matches(const Sharebus__ConsentRevoke *rv, const Sharebus__Consent *c)
{
    if (*rv->id)
        return strcmp(rv->id, c->id) == 0;
    return (!*rv->consumer || strcmp(rv->consumer, c->consumer) == 0)
           && (!*rv->dataset || strcmp(rv->dataset, c->dataset) == 0)
           && (!*rv->purpose || strcmp(rv->purpose, c->purpose) == 0);
}

static void s_revoke_one(broker_t *b, MDB_txn *txn, s_revoke_t *r, const char *id)
{
    Sharebus__ConsentEntry *entry;
    Sharebus__Consent *c;
    if (s_load(b, txn, id, &entry, &c) != SB_OK)
        return;
    if (entry->state == SHAREBUS__CONSENT_STATE__CONSENT_ACTIVE && s_revoke_matches(r->revoke, c)) {
        if (!s_may_manage(b, r->agency, c))
            r->forbidden = true;
        else {
            const char *why = *r->revoke->reason ? r->revoke->reason : "revoked";
            s_transition(b, id, entry, SHAREBUS__CONSENT_STATE__CONSENT_REVOKED, r->agency, why);
            s_audit_consent(b, SHAREBUS__AUDIT_KIND__AUDIT_CONSENT_REVOKED, c, r->agency, r->h, why);
            zlistx_add_end(r->ids, strdup(id));
        }
    }
    s_free(&entry, &c);
}

/* Revokes what `r` names, reading committed state (the caller synced). */
static int s_revoke_all(broker_t *b, s_revoke_t *r)
{
    MDB_txn *txn = NULL;
    int rc = sbi_store_read_begin(b->store, &txn);
    if (rc != SB_OK)
        return rc;
    if (*r->revoke->id) {
        s_revoke_one(b, txn, r, r->revoke->id);
        sbi_store_read_end(b->store, &txn);
        return SB_OK;
    }
    MDB_cursor *cursor;
    MDB_val key = {SBI_HASH_SIZE, r->revoke->subject_ref.data}, value;
    mdb_cursor_open(txn, b->consent_subject, &cursor);
    zlistx_t *ids = zlistx_new();
    zlistx_set_destructor(ids, (zlistx_destructor_fn *) zstr_free);
    for (int mrc = mdb_cursor_get(cursor, &key, &value, MDB_SET_KEY); mrc == 0;
         mrc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT_DUP))
        zlistx_add_end(ids, zsys_sprintf("%.*s", S_ID_LEN, (char *) value.mv_data));
    mdb_cursor_close(cursor);
    for (char *id = zlistx_first(ids); id; id = zlistx_next(ids))
        s_revoke_one(b, txn, r, id);
    zlistx_destroy(&ids);
    sbi_store_read_end(b->store, &txn);
    return SB_OK;
}

void broker_consent_revoke(broker_t *b, const sbi_cert_t *cert, const zframe_t *routing,
                           sbi_envelope_t *env, Sharebus__Payload *payload)
{
    const Sharebus__ConsentRevoke *rv = payload->body_case == SHAREBUS__PAYLOAD__BODY_REVOKE
                                            ? payload->revoke : NULL;
    if (!s_consent_rate_ok(b, cert, routing, env))
        return;
    const char *malformed = NULL;
    if (!rv || (*rv->id ? !sbi_consent_id_valid(rv->id) : rv->subject_ref.len != SBI_HASH_SIZE))
        malformed = "a revocation names a consent id, or a subject";
    else if (strlen(rv->reason) > SBI_REASON_MAX)
        malformed = "a revocation's reason is over 1024 bytes";
    if (malformed) {
        broker_refuse(b, cert, routing, env, SHAREBUS__AUDIT_KIND__AUDIT_CONSENT_REFUSED,
                      SB_EMALFORMED, malformed);
        broker_flush(b);
        return;
    }
    s_revoke_t r = {cert->agency, rv, env->header, zlistx_new(), false};
    zlistx_set_destructor(r.ids, (zlistx_destructor_fn *) zstr_free);
    broker_sync(b);
    int rc = b->store_full ? SB_EUNAVAILABLE : s_revoke_all(b, &r);
    /* By subject, "denied" would tell any agency that knows a national id
       that the citizen has consented to someone else: not found. */
    if (rc == SB_OK && zlistx_size(r.ids) == 0)
        rc = r.forbidden && *rv->id ? SB_EDENIED : SB_ENOTFOUND;
    if (rc != SB_OK) {
        broker_refuse(b, cert, routing, env, SHAREBUS__AUDIT_KIND__AUDIT_CONSENT_REFUSED,
                      rc, rc == SB_EDENIED ? "not the recorder or consumer of that consent"
                          : rc == SB_ENOTFOUND ? "no active consent matches"
                                               : "consent registry cannot store it");
    }
    else {
        char **ids = calloc(zlistx_size(r.ids) + 1, sizeof *ids);
        size_t n = 0;
        for (char *id = zlistx_first(r.ids); id; id = zlistx_next(r.ids))
            ids[n++] = id;
        Sharebus__ConsentList list = SHAREBUS__CONSENT_LIST__INIT;
        list.ids = ids;
        list.n_ids = n;
        s_answer(b, cert, routing, env->header, &list);
        free(ids);
        broker_count(b, "consents.revoked");
    }
    broker_sync(b);     /* a request after the answer finds it revoked */
    zlistx_destroy(&r.ids);
}

/* -------------------------------------------------------------- list */

void broker_consent_list(broker_t *b, const sbi_cert_t *cert, const zframe_t *routing,
                         sbi_envelope_t *env, Sharebus__Payload *payload)
{
    const Sharebus__ConsentQuery *q = payload->body_case == SHAREBUS__PAYLOAD__BODY_QUERY
                                          ? payload->query : NULL;
    if (!q || q->subject_ref.len != SBI_HASH_SIZE) {
        broker_refuse(b, cert, routing, env, SHAREBUS__AUDIT_KIND__AUDIT_CONSENT_REFUSED,
                      SB_EMALFORMED, "a consent query names a subject");
        return;
    }
    MDB_txn *txn = NULL;
    if (sbi_store_read_begin(b->store, &txn) != SB_OK) {
        broker_refuse(b, cert, routing, env, SHAREBUS__AUDIT_KIND__AUDIT_CONSENT_REFUSED,
                      SB_EUNAVAILABLE, "the consent registry cannot be read now");
        return;
    }
    MDB_cursor *cursor;
    MDB_val key = {SBI_HASH_SIZE, q->subject_ref.data}, value;
    mdb_cursor_open(txn, b->consent_subject, &cursor);
    zlistx_t *entries = zlistx_new();
    uint64_t now = sbi_now_ms();
    for (int mrc = mdb_cursor_get(cursor, &key, &value, MDB_SET_KEY); mrc == 0;
         mrc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT_DUP)) {
        char id[S_ID_LEN + 1];
        memcpy(id, value.mv_data, S_ID_LEN);
        id[S_ID_LEN] = 0;
        Sharebus__ConsentEntry *entry;
        Sharebus__Consent *c;
        if (s_load(b, txn, id, &entry, &c) != SB_OK)
            continue;
        if (s_may_manage(b, cert->agency, c)) {
            if (entry->state == SHAREBUS__CONSENT_STATE__CONSENT_ACTIVE && c->until_ms < now)
                entry->state = SHAREBUS__CONSENT_STATE__CONSENT_EXPIRED;
            zlistx_add_end(entries, entry);
            entry = NULL;
        }
        s_free(&entry, &c);
    }
    mdb_cursor_close(cursor);
    sbi_store_read_end(b->store, &txn);
    Sharebus__ConsentList list = SHAREBUS__CONSENT_LIST__INIT;
    list.n_entries = zlistx_size(entries);
    list.entries = calloc(list.n_entries + 1, sizeof *list.entries);
    size_t n = 0;
    for (Sharebus__ConsentEntry *e = zlistx_first(entries); e; e = zlistx_next(entries))
        list.entries[n++] = e;
    s_answer(b, cert, routing, env->header, &list);
    for (size_t i = 0; i < n; i++)
        sharebus__consent_entry__free_unpacked(list.entries[i], NULL);
    free(list.entries);
    zlistx_destroy(&entries);
}
