/*  audit-fixture - builds and damages audit stores for test-cli.sh. Tests only.

    audit-fixture make DIR            DIR/certs (root, broker, agencies,
                                      subject.key), DIR/broker/store (a
                                      story of 16 records, checkpoints after
                                      9 and 16), DIR/agent/store (koroad's own
                                      log and the broker's checkpoints)
    audit-fixture flip DDIR SEQ [OFFSET]
    audit-fixture delete DDIR SEQ
    audit-fixture truncate DDIR SEQ   (and lowers the meta head, as a careful
                                      forger would)
    audit-fixture rewrite DDIR SEQ    (recomputes the chain from SEQ)
    audit-fixture drop-checkpoints DDIR
    audit-fixture forge-checkpoint DDIR   (signed with a key of its own)
    audit-fixture rotate DIR          a new broker certificate (the old one
                                      kept as broker.1.cert and revoked), two
                                      more records and a checkpoint under the
                                      new key; DIR/late.cp: a checkpoint the
                                      old key signed after its revocation
    audit-fixture seeds DDIR OUT      the fuzz seed corpus: every stored entry
                                      and record, every checkpoint (packed and
                                      as JSON), as files in OUT
    audit-fixture equivocate BROKER_DDIR AGENT_DDIR KEY SEQ...
                                      what an operator with the broker's key
                                      does after a rewrite: signs the log's
                                      records SEQ... again, replaces the
                                      broker's stored checkpoints with them and
                                      sends them to the agent, which stores them
                                      as it stores any checkpoint (prints what
                                      that returned)
    audit-fixture midnight DDIR SUBJECT_KEY
                                      appends a request of subject A at
                                      2026-03-06T23:59:59.950Z (17) and its
                                      reply 80 ms later, the next day (18)
    audit-fixture unindex DDIR INDEX SEQ
                                      deletes record SEQ's entries from the
                                      index INDEX (subject, agency, dataset
                                      or time); the record stays in the log
*/
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tamper.h"

#define T0 1772355600000ull /* 2026-03-01T09:00:00Z */
#define MINUTE 60000ull
#define DAY 86400000ull

static const char *s_subject_a = "900101-1234567";
static const char *s_subject_b = "850505-7654321";

typedef struct {
    sbi_store_t *store;
    sbi_audit_t *audit;
    MDB_txn *txn;
    uint8_t subject_key[32];
} s_log_t;

static void s_die(const char *what, int rc)
{
    fprintf(stderr, "audit-fixture: %s: %s\n", what, sb_strerror(rc));
    exit(1);
}

static void s_open(s_log_t *log, const char *ddir)
{
    char path[4096], err[4200];
    snprintf(path, sizeof path, "%s/store", ddir);
    mkdir(ddir, 0700);
    log->store = sbi_store_open(path, 0, 0, 0, SBI_AUDIT_DBS, err, sizeof err);
    log->audit = log->store ? sbi_audit_open(log->store, err, sizeof err) : NULL;
    if (!log->audit) {
        fprintf(stderr, "audit-fixture: %s\n", err);
        exit(1);
    }
}

static void s_close(s_log_t *log)
{
    sbi_audit_close(&log->audit);
    sbi_store_close(&log->store);
}

static void s_begin(s_log_t *log)
{
    int rc = sbi_store_begin(log->store, true, &log->txn);
    if (rc != SB_OK)
        s_die("begin", rc);
}

static void s_commit(s_log_t *log)
{
    int rc = sbi_store_code(mdb_txn_commit(log->txn));
    if (rc != SB_OK)
        s_die("commit", rc);
    sbi_audit_commit(log->audit);
}

typedef struct {
    Sharebus__AuditKind kind;
    uint64_t time_ms;
    const char *from, *to, *dataset, *purpose, *subject;
    const char *fields; /* comma-separated */
    bool delivered;
    int answers; /* seq of the request this answers, or of the event
                    publication this delivers (whose message id it carries) */
    Sharebus__Decision decision;
    const char *rule, *consent;
    Sharebus__ErrorKind error;
    const char *reason, *detail;
} s_story_t;

#define K(name) SHAREBUS__AUDIT_KIND__AUDIT_##name
#define ALLOW SHAREBUS__DECISION__DECISION_ALLOW
#define DENY SHAREBUS__DECISION__DECISION_DENY
#define CHECKUP "health.checkup.vision-hearing"
#define CHECKUP_FIELDS "exam_date,vision_left,vision_right,hearing_left,hearing_right"
#define RENEWAL "driver-licence-renewal"
#define RULE "licence-renewal-uses-checkup"

static const s_story_t s_story[] = {
    {K(BROKER_STARTED), T0, "broker", "", "", "", NULL, "", false, 0, 0, "", "", 0, "", ""},
    {K(AGENT_CONNECTED), T0 + 1 * MINUTE, "koroad", "broker", "", "", NULL, "", false, 0, 0, "", "",
     0, "", ""},
    {K(AGENT_CONNECTED), T0 + 2 * MINUTE, "nhis", "broker", "", "", NULL, "", false, 0, 0, "", "",
     0, "", ""},
    {K(CONSENT_GRANTED), T0 + 5 * MINUTE, "koroad", "broker", CHECKUP, RENEWAL, "A", "", false, 0,
     0, "", "c-0001", 0, "", "until 2026-06-01; signed at the counter"},
    {K(REQUEST_ROUTED), T0 + 6 * MINUTE, "koroad", "nhis", CHECKUP, RENEWAL, "A", CHECKUP_FIELDS,
     false, 0, ALLOW, RULE, "c-0001", 0, "", ""},
    {K(REPLY_FORWARDED), T0 + 6 * MINUTE + 80, "nhis", "koroad", CHECKUP, RENEWAL, "A",
     CHECKUP_FIELDS, true, 5, ALLOW, RULE, "c-0001", 0, "", ""},
    {K(REQUEST_REFUSED), T0 + DAY, "koroad", "nhis", CHECKUP, "marketing", "A",
     "vision_left,blood_pressure", false, 0, DENY, "", "", SHAREBUS__ERROR_KIND__ERR_DENIED,
     "no rule lets koroad obtain health.checkup.vision-hearing for marketing", ""},
    {K(REQUEST_ROUTED), T0 + DAY + 30 * MINUTE, "police", "molit", "vehicle.registration",
     "investigation", "B", "plate,owner", false, 0, ALLOW, "police-vehicle-lookup", "", 0, "", ""},
    {K(REPLY_FORWARDED), T0 + DAY + 30 * MINUTE + 50, "molit", "police", "vehicle.registration",
     "investigation", "B", "plate,owner", true, 8, ALLOW, "police-vehicle-lookup", "", 0, "", ""},
    {K(REQUEST_ROUTED), T0 + 2 * DAY, "koroad", "nhis", CHECKUP, RENEWAL, "A", "exam_date", false,
     0, ALLOW, RULE, "c-0001", 0, "", ""},
    {K(TIMEOUT), T0 + 2 * DAY + 5000, "nhis", "koroad", CHECKUP, RENEWAL, "A", "", false, 10, 0,
     RULE, "", SHAREBUS__ERROR_KIND__ERR_TIMEOUT, "no reply within 5000 ms", ""},
    {K(EVENT_PUBLISHED), T0 + 3 * DAY, "mois", "nts", "resident.address-changed", "", "A",
     "new_address,moved_on", true, 0, ALLOW, "", "", 0, "", ""},
    {K(EVENT_DELIVERED), T0 + 3 * DAY + 10, "mois", "nts", "resident.address-changed", "", "A",
     "new_address,moved_on", true, 12, ALLOW, "", "", 0, "", ""},
    {K(EVENT_DELIVERED), T0 + 3 * DAY + 20, "mois", "koroad", "resident.address-changed", "", "A",
     "new_address", true, 0, ALLOW, "", "", 0, "", ""},
    {K(POLICY_LOADED), T0 + 3 * DAY + 60 * MINUTE, "broker", "", "", "", NULL, "", false, 0, 0, "",
     "", 0, "", "policy version 5f1c9e"},
    {K(CONSENT_REVOKED), T0 + 4 * DAY, "koroad", "broker", CHECKUP, RENEWAL, "A", "", false, 0, 0,
     "", "c-0001", 0, "the citizen withdrew it, online", ""},
};

/* Appends one story line; message ids are fixed so that output is too. */
static void s_append(s_log_t *log, const s_story_t *s, uint64_t seq)
{
    Sharebus__AuditRecord r = SHAREBUS__AUDIT_RECORD__INIT;
    uint8_t id[SBI_ID_SIZE] = {0}, corr[SBI_ID_SIZE] = {0}, ref[SBI_HASH_SIZE];
    uint8_t header[64], signature[64];
    char fields_copy[256], *fields[16];
    size_t n_fields = 0;
    bool delivery = s->kind == SHAREBUS__AUDIT_KIND__AUDIT_EVENT_DELIVERED;
    id[0] = (uint8_t)(delivery && s->answers ? (uint64_t)s->answers : seq);
    corr[0] = (uint8_t)s->answers;
    memset(header, (int)seq, sizeof header);
    memset(signature, 0x5a, sizeof signature);
    snprintf(fields_copy, sizeof fields_copy, "%s", s->fields);
    for (char *save, *f = strtok_r(fields_copy, ",", &save); f && n_fields < 16;
         f = strtok_r(NULL, ",", &save))
        fields[n_fields++] = f;
    r.kind = s->kind;
    r.time_ms = s->time_ms;
    r.message_id = (ProtobufCBinaryData){sizeof id, id};
    if (s->answers && !delivery)
        r.correlation_id = (ProtobufCBinaryData){sizeof corr, corr};
    r.from = (char *)s->from;
    r.to = (char *)s->to;
    r.dataset = (char *)s->dataset;
    r.purpose = (char *)s->purpose;
    if (s->subject) {
        int rc =
            sbi_subject_ref(log->subject_key, *s->subject == 'A' ? s_subject_a : s_subject_b, ref);
        if (rc != SB_OK)
            s_die("subject", rc);
        r.subject_ref = (ProtobufCBinaryData){sizeof ref, ref};
    }
    if (s->delivered) {
        r.fields_delivered = fields;
        r.n_fields_delivered = n_fields;
    } else {
        r.fields_requested = fields;
        r.n_fields_requested = n_fields;
    }
    r.decision = s->decision;
    r.rule_id = (char *)s->rule;
    r.consent_id = (char *)s->consent;
    r.error = s->error;
    r.reason = (char *)s->reason;
    r.detail = (char *)s->detail;
    r.header = (ProtobufCBinaryData){sizeof header, header};
    r.signature = (ProtobufCBinaryData){sizeof signature, signature};
    int rc = sbi_audit_append(log->audit, log->txn, &r);
    if (rc != SB_OK)
        s_die("append", rc);
}

static void s_save_cert(const char *dir, sbi_keys_t *keys, const sbi_keys_t *root,
                        const char *agency, const char *name, uint64_t serial)
{
    strcpy(keys->cert.agency, agency);
    snprintf(keys->cert.name, sizeof keys->cert.name, "%s", name);
    keys->cert.serial = serial;
    keys->cert.not_before_ms = T0 - 30 * DAY;
    keys->cert.not_after_ms = 4102444800000ull;
    sbi_cert_sign(&keys->cert, root->sign_secret);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.cert", dir, agency);
    int rc = sbi_cert_save(&keys->cert, path);
    if (rc != SB_OK)
        s_die(path, rc);
}

static void s_save_keys(const char *dir, const sbi_keys_t *keys, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.key", dir, name);
    unlink(path);
    int rc = sbi_keys_save(keys, path);
    if (rc != SB_OK)
        s_die(path, rc);
}

static void s_load_keys(const char *dir, const char *name, sbi_keys_t *keys)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.key", dir, name);
    int rc = sbi_keys_load(path, keys);
    if (rc != SB_OK)
        s_die(path, rc);
}

/* DIR/certs with the root, the broker and two agencies; the broker's keys. */
static void s_make_certs(const char *dir, sbi_keys_t *broker, uint8_t subject_key[32])
{
    char certs[4096], path[4200];
    snprintf(certs, sizeof certs, "%s/certs", dir);
    if (mkdir(certs, 0700) != 0)
        s_die(certs, SB_EIO);
    sbi_keys_t root, agency;
    sbi_keys_generate(&root, SBI_CERT_ROOT);
    s_save_cert(certs, &root, &root, "root", "root", 0);
    s_save_keys(certs, &root, "root");
    sbi_keys_generate(broker, SBI_CERT_BROKER);
    s_save_cert(certs, broker, &root, "broker", "sharebus broker", 1);
    s_save_keys(certs, broker, "broker");
    sbi_keys_generate(&agency, SBI_CERT_AGENCY);
    s_save_cert(certs, &agency, &root, "koroad", "Road Traffic Authority", 2);
    sbi_keys_generate(&agency, SBI_CERT_AGENCY);
    s_save_cert(certs, &agency, &root, "nhis", "National Health Insurance Service", 3);
    randombytes_buf(subject_key, 32);
    snprintf(path, sizeof path, "%s/subject.key", certs);
    int rc = sbi_secret_save(path, subject_key);
    if (rc != SB_OK)
        s_die(path, rc);
    sbi_keys_wipe(&root);
    sbi_keys_wipe(&agency);
}

/* The broker's log, with a checkpoint after record 9 and after 16, each
   also handed to the agent. */
static void s_make(const char *dir)
{
    sbi_keys_t broker;
    s_log_t b, a;
    char ddir[4096];
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        s_die(dir, SB_EIO);
    s_make_certs(dir, &broker, b.subject_key);
    memcpy(a.subject_key, b.subject_key, 32);
    snprintf(ddir, sizeof ddir, "%s/broker", dir);
    s_open(&b, ddir);
    snprintf(ddir, sizeof ddir, "%s/agent", dir);
    s_open(&a, ddir);
    const size_t cuts[] = {0, 9, sizeof s_story / sizeof s_story[0]};
    for (size_t k = 0; k + 1 < sizeof cuts / sizeof cuts[0]; k++) {
        size_t start = cuts[k], end = cuts[k + 1];
        s_begin(&b);
        for (size_t i = start; i < end; i++)
            s_append(&b, &s_story[i], i + 1);
        s_commit(&b);
        Sharebus__Checkpoint *cp;
        s_begin(&b);
        int rc = sbi_audit_checkpoint(b.audit, b.txn, &broker, &cp);
        if (rc != SB_OK)
            s_die("checkpoint", rc);
        s_commit(&b);
        s_begin(&a);
        rc = sbi_audit_store_checkpoint(a.audit, a.txn, cp);
        if (rc != SB_OK)
            s_die("store checkpoint", rc);
        s_commit(&a);
        sharebus__checkpoint__free_unpacked(cp, NULL);
    }
    s_begin(&a); /* the agent's own log: what it sent and received */
    s_story_t sent = s_story[4], received = s_story[5];
    sent.kind = K(MESSAGE_SENT);
    received.kind = K(MESSAGE_RECEIVED);
    s_append(&a, &sent, 1);
    s_append(&a, &received, 2);
    s_commit(&a);
    s_close(&a);
    s_close(&b);
    sbi_keys_wipe(&broker);
}

/* Appends two more records to the broker's log and checkpoints them with
   `broker`, handing the checkpoint to the agent. */
static void s_more(const char *dir, const sbi_keys_t *broker)
{
    char ddir[4096];
    s_log_t b, a;
    snprintf(ddir, sizeof ddir, "%s/broker", dir);
    s_open(&b, ddir);
    snprintf(ddir, sizeof ddir, "%s/agent", dir);
    s_open(&a, ddir);
    memset(b.subject_key, 0, sizeof b.subject_key);
    uint64_t head = sbi_audit_head(b.audit, NULL);
    s_begin(&b);
    s_append(&b, &s_story[1], head + 1);
    s_append(&b, &s_story[2], head + 2);
    s_commit(&b);
    Sharebus__Checkpoint *cp;
    s_begin(&b);
    int rc = sbi_audit_checkpoint(b.audit, b.txn, broker, &cp);
    if (rc != SB_OK)
        s_die("checkpoint", rc);
    s_commit(&b);
    s_begin(&a);
    rc = sbi_audit_store_checkpoint(a.audit, a.txn, cp);
    if (rc != SB_OK)
        s_die("store checkpoint", rc);
    s_commit(&a);
    sharebus__checkpoint__free_unpacked(cp, NULL);
    s_close(&a);
    s_close(&b);
}

/* A checkpoint of (seq, hash) signed by `keys` at `time_ms`, as JSON. */
static void s_sign_late(const char *path, const sbi_keys_t *keys, uint64_t seq,
                        const uint8_t hash[SBI_HASH_SIZE], uint64_t time_ms)
{
    uint8_t bytes[SBI_CHECKPOINT_SIGNED_SIZE], signature[64];
    sbi_checkpoint_signed_bytes(seq, hash, time_ms, bytes);
    crypto_sign_detached(signature, NULL, bytes, sizeof bytes, keys->sign_secret);
    Sharebus__Checkpoint cp = SHAREBUS__CHECKPOINT__INIT;
    cp.seq = seq;
    cp.time_ms = time_ms;
    cp.head_hash = (ProtobufCBinaryData){SBI_HASH_SIZE, (uint8_t *)hash};
    cp.signer = "broker";
    cp.signature = (ProtobufCBinaryData){64, signature};
    char *json = sbi_checkpoint_to_json(&cp);
    int rc = sbi_file_write(path, json, strlen(json), 0644, false);
    free(json);
    if (rc != SB_OK)
        s_die(path, rc);
}

static void s_rotate(const char *dir)
{
    char certs[4096], old[4200], now[4200], path[4200];
    snprintf(certs, sizeof certs, "%s/certs", dir);
    sbi_keys_t root, broker, fresh;
    s_load_keys(certs, "root", &root);
    s_load_keys(certs, "broker", &broker);
    snprintf(now, sizeof now, "%s/broker.cert", certs);
    snprintf(old, sizeof old, "%s/broker.1.cert", certs);
    if (rename(now, old) != 0)
        s_die(old, SB_EIO);
    sbi_keys_generate(&fresh, SBI_CERT_BROKER);
    s_save_cert(certs, &fresh, &root, "broker", "sharebus broker", 9);
    s_save_keys(certs, &fresh, "broker");
    uint64_t revoked = sbi_now_ms();
    sbi_crl_t crl;
    snprintf(path, sizeof path, "%s/revoked.crl", certs);
    int rc = sbi_crl_load(path, &crl);
    if (rc != SB_OK && rc != SB_ENOTFOUND)
        s_die(path, rc);
    if (sbi_crl_add(&crl, "broker", 1, revoked) != SB_OK ||
        sbi_crl_save(&crl, root.sign_secret, path) != SB_OK)
        s_die(path, SB_EIO);
    sbi_crl_clear(&crl);
    s_more(dir, &fresh);
    snprintf(path, sizeof path, "%s/late.cp", dir);
    uint8_t zeros[SBI_HASH_SIZE] = {0};
    s_sign_late(path, &broker, 0, zeros, revoked + 1000);
    sbi_keys_wipe(&root);
    sbi_keys_wipe(&broker);
    sbi_keys_wipe(&fresh);
}

static void s_forge_checkpoint(s_log_t *log)
{
    sbi_keys_t forger;
    sbi_keys_generate(&forger, SBI_CERT_BROKER);
    strcpy(forger.cert.agency, "broker");
    Sharebus__Checkpoint *cp;
    s_begin(log);
    int rc = sbi_audit_checkpoint(log->audit, log->txn, &forger, &cp);
    if (rc != SB_OK)
        s_die("checkpoint", rc);
    s_commit(log);
    sharebus__checkpoint__free_unpacked(cp, NULL);
    sbi_keys_wipe(&forger);
}

static int s_first_hash(const Sharebus__AuditRecord *record, const uint8_t hash[SBI_HASH_SIZE],
                        void *arg)
{
    (void)record;
    memcpy(arg, hash, SBI_HASH_SIZE);
    return 1;
}

static void s_equivocate(const char *broker_ddir, const char *agent_ddir, const char *key_path,
                         char **seqs, int n)
{
    s_log_t b, a;
    sbi_keys_t keys;
    s_open(&b, broker_ddir);
    s_open(&a, agent_ddir);
    int rc = sbi_keys_load(key_path, &keys);
    if (rc != SB_OK)
        s_die(key_path, rc);
    for (int i = 0; i < n; i++) {
        uint64_t seq = strtoull(seqs[i], NULL, 10), now = sbi_now_ms();
        uint8_t hash[SBI_HASH_SIZE], bytes[SBI_CHECKPOINT_SIGNED_SIZE], signature[64];
        sbi_audit_filter_t at = {.after_seq = seq - 1};
        rc = sbi_audit_query_entries(b.audit, &at, s_first_hash, hash);
        if (rc != SB_OK)
            s_die("query", rc);
        sbi_checkpoint_signed_bytes(seq, hash, now, bytes);
        crypto_sign_detached(signature, NULL, bytes, sizeof bytes, keys.sign_secret);
        Sharebus__Checkpoint cp = SHAREBUS__CHECKPOINT__INIT;
        cp.seq = seq;
        cp.time_ms = now;
        cp.head_hash = (ProtobufCBinaryData){SBI_HASH_SIZE, hash};
        cp.signer = "broker";
        cp.signature = (ProtobufCBinaryData){sizeof signature, signature};
        uint8_t key_bytes[8], packed[512];
        sbi_be64_put(key_bytes, seq);
        MDB_val key = {8, key_bytes}, val = {sharebus__checkpoint__pack(&cp, packed), packed};
        s_begin(&b);
        rc = sbi_store_code(mdb_put(b.txn, b.audit->checkpoints, &key, &val, 0));
        if (rc != SB_OK)
            s_die("put", rc);
        s_commit(&b);
        s_begin(&a);
        rc = sbi_audit_store_checkpoint(a.audit, a.txn, &cp);
        printf("checkpoint %" PRIu64 ": %s\n", seq, sb_errname(rc));
        s_commit(&a);
    }
    sbi_keys_wipe(&keys);
    s_close(&a);
    s_close(&b);
}

/* A request just before midnight whose reply comes just after. */
static void s_midnight(const char *ddir, const char *key_path)
{
    s_log_t log;
    s_open(&log, ddir);
    int rc = sbi_secret_load(key_path, log.subject_key);
    if (rc != SB_OK)
        s_die(key_path, rc);
    uint64_t head = sbi_audit_head(log.audit, NULL);
    uint64_t late = T0 - 9 * 60 * MINUTE + 6 * DAY - 50; /* T0 is 09:00 */
    s_story_t request = s_story[4], reply = s_story[5];  /* koroad asks nhis, about A */
    request.time_ms = late;
    request.fields = reply.fields = "exam_date";
    reply.time_ms = late + 80;
    reply.answers = (int)head + 1;
    s_begin(&log);
    s_append(&log, &request, head + 1);
    s_append(&log, &reply, head + 2);
    s_commit(&log);
    s_close(&log);
}

static int s_damage(const char *what, const char *ddir, uint64_t seq, size_t offset)
{
    s_log_t log;
    s_open(&log, ddir);
    int rc = SB_OK;
    if (strcmp(what, "flip") == 0)
        rc = sbi_tamper_flip(log.store, seq, offset);
    else if (strcmp(what, "delete") == 0)
        rc = sbi_tamper_delete(log.store, seq);
    else if (strcmp(what, "truncate") == 0)
        rc = sbi_tamper_truncate(log.store, seq, true);
    else if (strcmp(what, "rewrite") == 0)
        rc = sbi_tamper_rewrite(log.store, seq, 0, "nothing-to-see");
    else if (strcmp(what, "drop-checkpoints") == 0) {
        s_begin(&log);
        rc = sbi_store_code(mdb_drop(log.txn, log.audit->checkpoints, 0));
        s_commit(&log);
    } else if (strcmp(what, "forge-checkpoint") == 0)
        s_forge_checkpoint(&log);
    else {
        fprintf(stderr, "audit-fixture: unknown command %s\n", what);
        rc = SB_EINVAL;
    }
    s_close(&log);
    if (rc != SB_OK)
        s_die(what, rc);
    return 0;
}

static void s_unindex(const char *ddir, const char *index, uint64_t seq)
{
    s_log_t log;
    s_open(&log, ddir);
    int rc = sbi_tamper_unindex(log.store, index, seq);
    s_close(&log);
    if (rc != SB_OK)
        s_die("unindex", rc);
}

static void s_write(const char *dir, const char *name, uint64_t n, const void *data, size_t size)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s-%" PRIu64, dir, name, n);
    int rc = sbi_file_write(path, data, size, 0644, false);
    if (rc != SB_OK)
        s_die(path, rc);
}

static void s_seeds(const char *ddir, const char *out)
{
    s_log_t log;
    s_open(&log, ddir);
    MDB_txn *txn;
    MDB_cursor *cursor;
    MDB_val key, val;
    if (sbi_store_begin(log.store, false, &txn) != SB_OK)
        s_die("begin", SB_EIO);
    for (int db = 0; db < 2; db++) {
        mdb_cursor_open(txn, db ? log.audit->checkpoints : log.audit->log, &cursor);
        for (int rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
            uint64_t seq = sbi_be64_get(key.mv_data);
            s_write(out, db ? "checkpoint" : "entry", seq, val.mv_data, val.mv_size);
            Sharebus__AuditEntry *entry =
                db ? NULL : sharebus__audit_entry__unpack(NULL, val.mv_size, val.mv_data);
            if (entry)
                s_write(out, "record", seq, entry->record.data, entry->record.len);
            sharebus__audit_entry__free_unpacked(entry, NULL);
            Sharebus__Checkpoint *cp;
            if (db && sbi_checkpoint_decode(val.mv_data, val.mv_size, &cp) == SB_OK) {
                char *json = sbi_checkpoint_to_json(cp);
                s_write(out, "checkpoint-json", seq, json, strlen(json));
                free(json);
                sharebus__checkpoint__free_unpacked(cp, NULL);
            }
        }
        mdb_cursor_close(cursor);
    }
    mdb_txn_abort(txn);
    s_close(&log);
}

int main(int argc, char **argv)
{
    sbi_init();
    sbi_log_setup("audit-fixture", SBI_LOG_ERROR);
    if (argc == 3 && strcmp(argv[1], "make") == 0) {
        s_make(argv[2]);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "rotate") == 0) {
        s_rotate(argv[2]);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "seeds") == 0) {
        s_seeds(argv[2], argv[3]);
        return 0;
    }
    if (argc >= 6 && strcmp(argv[1], "equivocate") == 0) {
        s_equivocate(argv[2], argv[3], argv[4], argv + 5, argc - 5);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "midnight") == 0) {
        s_midnight(argv[2], argv[3]);
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "unindex") == 0) {
        s_unindex(argv[2], argv[3], strtoull(argv[4], NULL, 10));
        return 0;
    }
    if (argc >= 3 && argc <= 5) {
        uint64_t seq = argc > 3 ? strtoull(argv[3], NULL, 10) : 0;
        size_t offset = argc > 4 ? strtoull(argv[4], NULL, 10) : 20;
        return s_damage(argv[1], argv[2], seq, offset);
    }
    fprintf(stderr, "usage: audit-fixture make DIR | COMMAND DDIR [SEQ [OFFSET]]\n");
    return 2;
}
