/*  make_seeds - writes the seed corpora of fuzz_payload, fuzz_consent and
    fuzz_client: one well-formed message of each kind, built with the same
    code the bus uses, so the fuzzers start from real shapes.

    make_seeds CORPUS_DIR        (tests/fuzz/corpus)

    The checkpoint is signed with the key fuzz_payload derives from the same
    seed, so it verifies there. Ids and keys are fixed: the output is the
    same on every run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "audit_int.h"
#include "consent.h"
#include "envelope.h"
#include "record.h"

static const char *s_root;
static uint8_t s_ref[SBI_HASH_SIZE];
static const char *s_id = "0123456789abcdef0123456789abcdef";

static void s_write(const char *corpus, const char *name, const void *data, size_t size)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", s_root, corpus);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", s_root, corpus, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        fprintf(stderr, "make_seeds: cannot write %s\n", path);
        exit(1);
    }
}

#define S_PACK(corpus, name, type, msg)                                  \
    do {                                                                  \
        size_t n_ = sharebus__##type##__get_packed_size(msg);             \
        uint8_t *b_ = malloc(n_ ? n_ : 1);                                \
        sharebus__##type##__pack(msg, b_);                                \
        s_write(corpus, name, b_, n_);                                    \
        free(b_);                                                         \
    } while (0)

static sb_record_t *s_record(void)
{
    sb_record_t *r = sb_record_new();
    if (sb_record_set_text(r, "exam_date", "2025-10-02") || sb_record_set_text(r, "vision_left", "1.0")
        || sb_record_set_integer(r, "age", 51) || sb_record_set_real(r, "score", 0.75)
        || sb_record_set_flag(r, "fit_to_drive", true) || sb_record_set_blob(r, "photo", "\x01\x02", 2))
        exit(1);
    return r;
}

/* A Consent packed, and an entry as the registry stores it. */
static size_t s_consent_bytes(uint8_t *out)
{
    Sharebus__Consent c = SHAREBUS__CONSENT__INIT;
    c.id = (char *) s_id;
    c.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, s_ref};
    c.consumer = "koroad";
    c.dataset = "health.checkup.vision-hearing";
    c.purpose = "driver-licence-renewal";
    c.granted_ms = 1764000000000;
    c.until_ms = 1924905600000;
    c.recorded_by = "koroad";
    c.evidence = "signed form at the counter";
    return sharebus__consent__pack(&c, out);
}

static void s_payloads(void)
{
    uint8_t consent[1024], signature[64] = {1};
    size_t consent_size = s_consent_bytes(consent);
    Sharebus__SignedConsent sc = SHAREBUS__SIGNED_CONSENT__INIT;
    sc.consent = (ProtobufCBinaryData){consent_size, consent};
    sc.signature = (ProtobufCBinaryData){64, signature};

    Sharebus__Payload p = SHAREBUS__PAYLOAD__INIT;
    S_PACK("payload", "empty", payload, &p);
    p.subject_id = "900101-1234567";
    S_PACK("payload", "request-subject", payload, &p);

    sb_record_t *record = s_record();
    p.body_case = SHAREBUS__PAYLOAD__BODY_RECORD;
    p.record = sbi_record_pb(record);
    S_PACK("payload", "record", payload, &p);
    sbi_record_pb_free(&p.record);
    sb_record_destroy(&record);

    char path[4096];
    Sharebus__PolicyFile files[2] = {SHAREBUS__POLICY_FILE__INIT, SHAREBUS__POLICY_FILE__INIT};
    Sharebus__PolicyFile *fp[2] = {&files[0], &files[1]};
    const char *names[2] = {"health.yaml", "events.yaml"};
    char *texts[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        size_t n = 0;
        snprintf(path, sizeof path, "%s/../../../policy/examples/%s", s_root, names[i]);
        if (sbi_file_read(path, SBI_FILE_MAX, &texts[i], &n) != SB_OK) {
            fprintf(stderr, "make_seeds: cannot read %s\n", path);
            exit(1);
        }
        files[i].name = (char *) names[i];
        files[i].content = (ProtobufCBinaryData){n, (uint8_t *) texts[i]};
    }
    Sharebus__PolicyBundle bundle = SHAREBUS__POLICY_BUNDLE__INIT;
    uint8_t version[32] = {0};
    bundle.version = (ProtobufCBinaryData){32, version};
    bundle.files = fp;
    bundle.n_files = 2;
    p.body_case = SHAREBUS__PAYLOAD__BODY_POLICY;
    p.policy = &bundle;
    S_PACK("payload", "policy", payload, &p);
    free(texts[0]);
    free(texts[1]);

    uint8_t seed[32], pub[32], secret[64], head[SBI_HASH_SIZE], signed_bytes[SBI_CHECKPOINT_SIGNED_SIZE];
    memset(seed, 7, sizeof seed);
    crypto_sign_seed_keypair(pub, secret, seed);
    memset(head, 0x5a, sizeof head);
    sbi_checkpoint_signed_bytes(42, head, 1764000000000, signed_bytes);
    uint8_t cp_sig[64];
    crypto_sign_detached(cp_sig, NULL, signed_bytes, sizeof signed_bytes, secret);
    Sharebus__Checkpoint cp = SHAREBUS__CHECKPOINT__INIT;
    cp.seq = 42;
    cp.head_hash = (ProtobufCBinaryData){SBI_HASH_SIZE, head};
    cp.time_ms = 1764000000000;
    cp.signer = "broker";
    cp.signature = (ProtobufCBinaryData){64, cp_sig};
    p.body_case = SHAREBUS__PAYLOAD__BODY_CHECKPOINT;
    p.checkpoint = &cp;
    S_PACK("payload", "checkpoint", payload, &p);

    p.body_case = SHAREBUS__PAYLOAD__BODY_CONSENT;
    p.consent = &sc;
    S_PACK("payload", "consent-grant", payload, &p);

    Sharebus__ConsentRevoke rv = SHAREBUS__CONSENT_REVOKE__INIT;
    rv.id = (char *) s_id;
    rv.reason = "withdrawn";
    p.body_case = SHAREBUS__PAYLOAD__BODY_REVOKE;
    p.revoke = &rv;
    S_PACK("payload", "consent-revoke-id", payload, &p);
    rv.id = "";
    rv.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, s_ref};
    rv.consumer = "koroad";
    S_PACK("payload", "consent-revoke-match", payload, &p);

    Sharebus__ConsentQuery q = SHAREBUS__CONSENT_QUERY__INIT;
    q.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, s_ref};
    p.body_case = SHAREBUS__PAYLOAD__BODY_QUERY;
    p.query = &q;
    S_PACK("payload", "consent-query", payload, &p);

    Sharebus__ConsentEvent ev[2] = {SHAREBUS__CONSENT_EVENT__INIT, SHAREBUS__CONSENT_EVENT__INIT};
    Sharebus__ConsentEvent *history[2] = {&ev[0], &ev[1]};
    ev[0].state = SHAREBUS__CONSENT_STATE__CONSENT_ACTIVE;
    ev[0].time_ms = 1764000000000;
    ev[0].by = "koroad";
    ev[0].reason = "granted";
    ev[1].state = SHAREBUS__CONSENT_STATE__CONSENT_REVOKED;
    ev[1].time_ms = 1764000100000;
    ev[1].by = "koroad";
    ev[1].reason = "withdrawn";
    Sharebus__ConsentEntry entry = SHAREBUS__CONSENT_ENTRY__INIT, *entries[] = {&entry};
    entry.signed_ = &sc;
    entry.state = SHAREBUS__CONSENT_STATE__CONSENT_REVOKED;
    entry.history = history;
    entry.n_history = 2;
    char *ids[] = {(char *) s_id};
    Sharebus__ConsentList list = SHAREBUS__CONSENT_LIST__INIT;
    list.entries = entries;
    list.n_entries = 1;
    list.ids = ids;
    list.n_ids = 1;
    p.body_case = SHAREBUS__PAYLOAD__BODY_CONSENTS;
    p.consents = &list;
    S_PACK("payload", "consent-list", payload, &p);

    /* The registry's stored forms. */
    S_PACK("consent", "entry-revoked", consent_entry, &entry);
    entry.state = SHAREBUS__CONSENT_STATE__CONSENT_ACTIVE;
    entry.n_history = 1;
    S_PACK("consent", "entry-active", consent_entry, &entry);
    s_write("consent", "consent", consent, consent_size);
}

static void s_clients(void)
{
    Sharebus__ClientMessage m = SHAREBUS__CLIENT_MESSAGE__INIT;
    m.id = 1;
    char *fields[] = {"exam_date", "vision_left"};
    sb_record_t *record = s_record();
    Sharebus__Record *pb = sbi_record_pb(record);

    Sharebus__ClientRequest req = SHAREBUS__CLIENT_REQUEST__INIT;
    req.provider = "nhis";
    req.dataset = "health.checkup.vision-hearing";
    req.purpose = "driver-licence-renewal";
    req.subject_id = "900101-1234567";
    req.fields = fields;
    req.n_fields = 2;
    req.timeout_ms = 2000;
    m.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_REQUEST;
    m.request = &req;
    S_PACK("client", "request", client_message, &m);

    Sharebus__ClientResult res = SHAREBUS__CLIENT_RESULT__INIT;
    res.record = pb;
    res.rule_id = "licence-renewal-uses-checkup";
    m.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_RESULT;
    m.result = &res;
    S_PACK("client", "result-record", client_message, &m);
    res.record = NULL;
    res.error = SHAREBUS__ERROR_KIND__ERR_NOCONSENT;
    res.reason = "no active consent";
    S_PACK("client", "result-error", client_message, &m);

    uint8_t consent[1024], signature[64] = {1};
    size_t consent_size = s_consent_bytes(consent);
    Sharebus__SignedConsent sc = SHAREBUS__SIGNED_CONSENT__INIT;
    sc.consent = (ProtobufCBinaryData){consent_size, consent};
    sc.signature = (ProtobufCBinaryData){64, signature};
    Sharebus__ConsentEvent ev = SHAREBUS__CONSENT_EVENT__INIT, *history[] = {&ev};
    ev.state = SHAREBUS__CONSENT_STATE__CONSENT_ACTIVE;
    ev.time_ms = 1764000000000;
    ev.by = "koroad";
    ev.reason = "granted";
    Sharebus__ConsentEntry entry = SHAREBUS__CONSENT_ENTRY__INIT, *entries[] = {&entry};
    entry.signed_ = &sc;
    entry.state = SHAREBUS__CONSENT_STATE__CONSENT_ACTIVE;
    entry.history = history;
    entry.n_history = 1;
    Sharebus__ConsentList list = SHAREBUS__CONSENT_LIST__INIT;
    list.entries = entries;
    list.n_entries = 1;
    res.error = SHAREBUS__ERROR_KIND__ERR_NONE;
    res.reason = "";
    res.consents = &list;
    res.consent_id = (char *) s_id;
    S_PACK("client", "result-consents", client_message, &m);

    Sharebus__ClientServe serve = SHAREBUS__CLIENT_SERVE__INIT;
    serve.dataset = "health.checkup.vision-hearing";
    m.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_SERVE;
    m.serve = &serve;
    S_PACK("client", "serve", client_message, &m);

    Sharebus__ClientIncoming in = SHAREBUS__CLIENT_INCOMING__INIT;
    in.token = 7;
    in.consumer = "koroad";
    in.dataset = "health.checkup.vision-hearing";
    in.purpose = "driver-licence-renewal";
    in.subject_id = "900101-1234567";
    in.fields = fields;
    in.n_fields = 2;
    in.expires_ms = 1764000005000;
    in.rule_id = "licence-renewal-uses-checkup";
    m.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_INCOMING;
    m.incoming = &in;
    S_PACK("client", "incoming", client_message, &m);

    Sharebus__ClientAnswer answer = SHAREBUS__CLIENT_ANSWER__INIT;
    answer.token = 7;
    answer.record = pb;
    m.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_ANSWER;
    m.answer = &answer;
    S_PACK("client", "answer", client_message, &m);

    Sharebus__ClientConsentGrant grant = SHAREBUS__CLIENT_CONSENT_GRANT__INIT;
    grant.subject_id = "900101-1234567";
    grant.consumer = "koroad";
    grant.dataset = "health.checkup.vision-hearing";
    grant.purpose = "driver-licence-renewal";
    grant.until_ms = 1924905600000;
    grant.evidence = "form";
    m.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_CONSENT_GRANT;
    m.consent_grant = &grant;
    S_PACK("client", "consent-grant", client_message, &m);

    Sharebus__ClientConsentRevoke revoke = SHAREBUS__CLIENT_CONSENT_REVOKE__INIT;
    revoke.id = (char *) s_id;
    revoke.reason = "withdrawn";
    m.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_CONSENT_REVOKE;
    m.consent_revoke = &revoke;
    S_PACK("client", "consent-revoke", client_message, &m);

    Sharebus__ClientConsentList cl = SHAREBUS__CLIENT_CONSENT_LIST__INIT;
    cl.subject_id = "900101-1234567";
    m.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_CONSENT_LIST;
    m.consent_list = &cl;
    S_PACK("client", "consent-list", client_message, &m);

    Sharebus__ClientPublish pub = SHAREBUS__CLIENT_PUBLISH__INIT;
    pub.topic = "resident.address-changed";
    pub.subject_id = "900101-1234567";
    pub.record = pb;
    m.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_PUBLISH;
    m.publish = &pub;
    S_PACK("client", "publish", client_message, &m);

    Sharebus__ClientSubscribe sub = SHAREBUS__CLIENT_SUBSCRIBE__INIT;
    sub.topic = "resident.address-changed";
    m.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_SUBSCRIBE;
    m.subscribe = &sub;
    S_PACK("client", "subscribe", client_message, &m);

    uint8_t event_id[SBI_ID_SIZE];
    memset(event_id, 0x11, sizeof event_id);
    Sharebus__ClientEvent event = SHAREBUS__CLIENT_EVENT__INIT;
    event.token = 9;
    event.topic = "resident.address-changed";
    event.publisher = "mois";
    event.subject_id = "900101-1234567";
    event.message_id = (ProtobufCBinaryData){SBI_ID_SIZE, event_id};
    event.published_ms = 1764000000000;
    event.record = pb;
    m.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_EVENT;
    m.event = &event;
    S_PACK("client", "event", client_message, &m);

    Sharebus__ClientAck ack = SHAREBUS__CLIENT_ACK__INIT;
    ack.token = 9;
    m.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_ACK;
    m.ack = &ack;
    S_PACK("client", "ack", client_message, &m);

    sbi_record_pb_free(&pb);
    sb_record_destroy(&record);
}

/* Envelopes signed together (batch signatures): their paths and indexes
   are what the decoder checks first. */
static void s_batched_envelopes(void)
{
    sbi_keys_t from, to;
    sbi_keys_generate(&from, SBI_CERT_AGENCY);
    sbi_keys_generate(&to, SBI_CERT_AGENCY);
    strcpy(from.cert.agency, "koroad");
    strcpy(to.cert.agency, "nhis");
    sbi_crypto_t *crypto = sbi_crypto_new(&from);
    sbi_sealed_t *sealed[3];
    zframe_t *frames[3];
    for (size_t i = 0; i < 3; i++) {
        sbi_header_t h;
        sbi_header_init(&h, SHAREBUS__KIND__KIND_REQUEST, "koroad", "nhis");
        h.header.dataset = "health.checkup.vision-hearing";
        h.header.purpose = "driver-licence-renewal";
        h.header.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, s_ref};
        Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
        payload.subject_id = "900101-1234567";
        if (sbi_envelope_seal_later(crypto, &to.cert, &h.header, &payload, &sealed[i]) != SB_OK)
            exit(1);
    }
    sbi_envelope_sign_batch(crypto, sealed, 3, frames);
    for (size_t i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "batched-%zu", i);
        s_write("envelope", name, zframe_data(frames[i]), zframe_size(frames[i]));
        zframe_destroy(&frames[i]);
    }
    sbi_crypto_destroy(&crypto);
    sbi_keys_wipe(&from);
    sbi_keys_wipe(&to);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds CORPUS_DIR\n");
        return 2;
    }
    sbi_init();
    s_root = argv[1];
    memset(s_ref, 0x3c, sizeof s_ref);
    s_payloads();
    s_clients();
    s_batched_envelopes();
    return 0;
}
