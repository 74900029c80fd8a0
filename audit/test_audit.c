/*  test_audit.c - the audit log: appends and their transactions, a full map,
    every kind of tampering, checkpoints, queries, and kill -9. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tamper.h"
#include "testing.h"

#define T0 1772355600000ull /* 2026-03-01T09:00:00Z */
#define MINUTE 60000ull

typedef struct {
    char dir[64];
    sbi_store_t *store;
    sbi_audit_t *audit;
    sbi_keys_t broker;
    size_t map_size, map_max;
    unsigned flags;     /* of sbi_store_open */
} fx_t;

static const uint8_t s_subject_key[32] = "test subject key, 32 bytes long";

/* ------------------------------------------------------------- fixture */

static void s_open(fx_t *f)
{
    char err[256] = "";
    f->store =
        sbi_store_open(f->dir, f->flags, f->map_size, f->map_max, SBI_AUDIT_DBS, err, sizeof err);
    CHECK(f->store);
    f->audit = f->store ? sbi_audit_open(f->store, err, sizeof err) : NULL;
    if (!f->audit)
        fprintf(stderr, "  open: %s\n", err);
    CHECK(f->audit);
}

static void s_close(fx_t *f)
{
    sbi_audit_close(&f->audit);
    CHECK(f->audit == NULL);
    sbi_audit_close(&f->audit); /* safe twice */
    sbi_store_close(&f->store);
}

static void s_setup(fx_t *f, size_t map_size, size_t map_max)
{
    memset(f, 0, sizeof *f);
    strcpy(f->dir, "/tmp/sb-test-audit-XXXXXX");
    CHECK(mkdtemp(f->dir));
    f->map_size = map_size;
    f->map_max = map_max;
    sbi_keys_generate(&f->broker, SBI_CERT_BROKER);
    strcpy(f->broker.cert.agency, "broker");
    s_open(f);
}

static void s_teardown(fx_t *f)
{
    s_close(f);
    sbi_keys_wipe(&f->broker);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    CHECK_EQ(system(cmd), 0);
}

/* ------------------------------------------------------------- records */

static const char *s_agencies[] = {"koroad", "nts", "police"};
static const char *s_datasets[] = {"health.checkup.vision-hearing", "vehicle.registration"};
static const char *s_purposes[] = {"driver-licence-renewal", "tax-audit", "investigation"};

/* What the test log holds at seq i (1-based): a mirror for brute force. */
typedef struct {
    Sharebus__AuditKind kind;
    const char *from, *to, *dataset, *purpose;
    int subject; /* -1: none */
    uint64_t time_ms;
} s_row_t;

static s_row_t s_row(uint64_t i)
{
    static const Sharebus__AuditKind kinds[] = {
        SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_ROUTED, SHAREBUS__AUDIT_KIND__AUDIT_REPLY_FORWARDED,
        SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED, SHAREBUS__AUDIT_KIND__AUDIT_CONSENT_GRANTED};
    s_row_t row = {kinds[i % 4],      s_agencies[i % 3],       i % 2 ? "nhis" : "molit",
                   s_datasets[i % 2], s_purposes[(i / 2) % 3], (int)(i % 7) - 1,
                   T0 + i * MINUTE};
    return row;
}

static void s_subject(int n, uint8_t ref[SBI_HASH_SIZE])
{
    char id[32];
    snprintf(id, sizeof id, "900101-%07d", n);
    CHECK_EQ(sbi_subject_ref(s_subject_key, id, ref), SB_OK);
}

typedef struct {
    Sharebus__AuditRecord record;
    uint8_t subject[SBI_HASH_SIZE];
    uint8_t message_id[SBI_ID_SIZE];
    uint8_t header[200];
    char *fields[2];
} s_record_t;

static void s_fill(s_record_t *r, s_row_t row)
{
    sharebus__audit_record__init(&r->record);
    r->record.kind = row.kind;
    r->record.from = (char *)row.from;
    r->record.to = (char *)row.to;
    r->record.dataset = (char *)row.dataset;
    r->record.purpose = (char *)row.purpose;
    r->record.time_ms = row.time_ms;
    r->record.rule_id = "licence-renewal-uses-checkup";
    r->record.decision = SHAREBUS__DECISION__DECISION_ALLOW;
    sbi_id_new(r->message_id);
    r->record.message_id = (ProtobufCBinaryData){SBI_ID_SIZE, r->message_id};
    randombytes_buf(r->header, sizeof r->header);
    r->record.header = (ProtobufCBinaryData){sizeof r->header, r->header};
    r->fields[0] = "vision_left";
    r->fields[1] = "vision_right";
    r->record.fields_requested = r->fields;
    r->record.n_fields_requested = 2;
    if (row.subject >= 0) {
        s_subject(row.subject, r->subject);
        r->record.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, r->subject};
    }
}

/* Appends rows first..last (inclusive) in one transaction and commits. */
static int s_append_failed; /* what the last failing sbi_audit_append returned */

static int s_append_rows(fx_t *f, uint64_t first, uint64_t last)
{
    MDB_txn *txn;
    int rc = sbi_store_begin(f->store, true, &txn);
    for (uint64_t i = first; rc == SB_OK && i <= last; i++) {
        s_record_t r;
        s_fill(&r, s_row(i));
        rc = sbi_audit_append(f->audit, txn, &r.record);
        if (rc == SB_OK)
            CHECK_EQ(r.record.seq, i);
        else
            s_append_failed = rc;
    }
    if (rc == SB_OK)
        rc = sbi_store_code(mdb_txn_commit(txn));
    else
        mdb_txn_abort(txn);
    if (rc == SB_OK)
        sbi_audit_commit(f->audit);
    else
        sbi_audit_abort(f->audit);
    return rc;
}

static sbi_audit_report_t s_verify(fx_t *f, Sharebus__Checkpoint *const *extra, size_t n)
{
    sbi_audit_report_t report;
    int rc = sbi_audit_verify(f->audit, f->broker.cert.sign_public, extra, n, &report);
    CHECK_EQ(rc, report.fault == SBI_AUDIT_INTACT ? SB_OK : SB_EBADSIG);
    return report;
}

static void s_expect_intact(fx_t *f, uint64_t records)
{
    sbi_audit_report_t report = s_verify(f, NULL, 0);
    if (report.fault != SBI_AUDIT_INTACT)
        fprintf(stderr, "  verify: %s at %" PRIu64 ": %s\n", sbi_audit_fault_name(report.fault),
                report.seq, report.detail);
    CHECK_EQ(report.fault, SBI_AUDIT_INTACT);
    CHECK_EQ(report.records, records);
}

static void s_expect_fault(fx_t *f, sbi_audit_fault_t fault, uint64_t seq)
{
    sbi_audit_report_t report = s_verify(f, NULL, 0);
    CHECK_EQ(report.fault, fault);
    CHECK_EQ(report.seq, seq);
    CHECK(report.detail[0]);
}

static Sharebus__Checkpoint *s_checkpoint(fx_t *f)
{
    MDB_txn *txn;
    Sharebus__Checkpoint *cp = NULL;
    CHECK_EQ(sbi_store_begin(f->store, true, &txn), SB_OK);
    CHECK_EQ(sbi_audit_checkpoint(f->audit, txn, &f->broker, &cp), SB_OK);
    CHECK_EQ(mdb_txn_commit(txn), 0);
    return cp;
}

/* -------------------------------------------------------------- appends */

TEST(test_append_commit_and_reopen_keeps_the_head)
{
    fx_t f;
    s_setup(&f, 0, 0);
    uint8_t hash[SBI_HASH_SIZE], again[SBI_HASH_SIZE], zeros[SBI_HASH_SIZE] = {0};
    CHECK_EQ(sbi_audit_head(f.audit, hash), 0);
    CHECK(memcmp(hash, zeros, sizeof zeros) == 0);
    CHECK_EQ(s_append_rows(&f, 1, 10), SB_OK);
    CHECK_EQ(s_append_rows(&f, 11, 25), SB_OK);
    CHECK_EQ(sbi_audit_head(f.audit, hash), 25);
    CHECK(memcmp(hash, zeros, sizeof zeros) != 0);
    s_close(&f);
    s_open(&f);
    CHECK_EQ(sbi_audit_head(f.audit, again), 25);
    CHECK(memcmp(hash, again, sizeof hash) == 0);
    CHECK_EQ(s_append_rows(&f, 26, 30), SB_OK);
    s_expect_intact(&f, 30);
    s_teardown(&f);
}

TEST(test_abort_forgets_uncommitted_appends)
{
    fx_t f;
    s_setup(&f, 0, 0);
    CHECK_EQ(s_append_rows(&f, 1, 5), SB_OK);
    uint8_t before[SBI_HASH_SIZE], after[SBI_HASH_SIZE];
    sbi_audit_head(f.audit, before);
    MDB_txn *txn;
    CHECK_EQ(sbi_store_begin(f.store, true, &txn), SB_OK);
    for (int i = 6; i <= 8; i++) {
        s_record_t r;
        s_fill(&r, s_row((uint64_t)i));
        CHECK_EQ(sbi_audit_append(f.audit, txn, &r.record), SB_OK);
    }
    CHECK_EQ(sbi_audit_head(f.audit, NULL), 5); /* pending is not the head */
    mdb_txn_abort(txn);
    sbi_audit_abort(f.audit);
    CHECK_EQ(sbi_audit_head(f.audit, after), 5);
    CHECK(memcmp(before, after, sizeof before) == 0);
    CHECK_EQ(s_append_rows(&f, 6, 9), SB_OK); /* seq 6 again, chained to 5 */
    s_expect_intact(&f, 9);
    s_teardown(&f);
}

static int s_keep_first(const Sharebus__AuditRecord *record, const uint8_t hash[32], void *arg)
{
    uint8_t *out = arg;
    memcpy(out, hash, SBI_HASH_SIZE);
    CHECK_EQ(record->prev_hash.len, SBI_HASH_SIZE);
    memcpy(out + SBI_HASH_SIZE, record->prev_hash.data, SBI_HASH_SIZE);
    return 1;
}

TEST(test_append_sets_seq_time_and_chain_but_leaves_callers_prev_hash)
{
    fx_t f;
    s_setup(&f, 0, 0);
    CHECK_EQ(s_append_rows(&f, 1, 1), SB_OK);
    MDB_txn *txn;
    CHECK_EQ(sbi_store_begin(f.store, true, &txn), SB_OK);
    s_record_t r;
    s_fill(&r, s_row(2));
    r.record.time_ms = 0;
    uint8_t mine[4] = {1, 2, 3, 4};
    r.record.prev_hash = (ProtobufCBinaryData){4, mine};
    uint64_t before = sbi_now_ms();
    CHECK_EQ(sbi_audit_append(f.audit, txn, &r.record), SB_OK);
    CHECK_EQ(r.record.seq, 2);
    CHECK(r.record.time_ms >= before && r.record.time_ms <= sbi_now_ms());
    CHECK(r.record.prev_hash.data == mine && r.record.prev_hash.len == 4);
    CHECK_EQ(mdb_txn_commit(txn), 0);
    sbi_audit_commit(f.audit);
    uint8_t first[2 * SBI_HASH_SIZE], second[2 * SBI_HASH_SIZE];
    sbi_audit_filter_t filter = {.after_seq = 0};
    CHECK_EQ(sbi_audit_query_entries(f.audit, &filter, s_keep_first, first), SB_OK);
    filter.after_seq = 1;
    CHECK_EQ(sbi_audit_query_entries(f.audit, &filter, s_keep_first, second), SB_OK);
    CHECK(memcmp(second + SBI_HASH_SIZE, first, SBI_HASH_SIZE) == 0);
    uint8_t zeros[SBI_HASH_SIZE] = {0};
    CHECK(memcmp(first + SBI_HASH_SIZE, zeros, SBI_HASH_SIZE) == 0);
    s_teardown(&f);
}

TEST(test_oversized_record_is_refused_and_the_log_goes_on)
{
    fx_t f;
    s_setup(&f, 0, 0);
    MDB_txn *txn;
    CHECK_EQ(sbi_store_begin(f.store, true, &txn), SB_OK);
    s_record_t r;
    s_fill(&r, s_row(1));
    static uint8_t big[SBI_AUDIT_RECORD_MAX];
    r.record.header = (ProtobufCBinaryData){sizeof big, big};
    CHECK_EQ(sbi_audit_append(f.audit, txn, &r.record), SB_ETOOBIG);
    mdb_txn_abort(txn);
    sbi_audit_abort(f.audit);
    CHECK_EQ(s_append_rows(&f, 1, 3), SB_OK);
    s_expect_intact(&f, 3);
    s_teardown(&f);
}

TEST(test_full_map_surfaces_as_efull_and_the_log_stays_intact)
{
    fx_t f;
    s_setup(&f, 512 << 10, 1 << 20);
    uint64_t next = 1;
    int rc = SB_OK;
    s_append_failed = SB_OK;
    while ((rc = s_append_rows(&f, next, next + 49)) == SB_OK)
        next += 50;
    CHECK_EQ(rc, SB_EFULL);
    CHECK_EQ(s_append_failed, SB_EFULL); /* the append said so, not only the commit */
    uint64_t head = sbi_audit_head(f.audit, NULL);
    CHECK_EQ(head, next - 1);
    CHECK(head > 0);
    s_expect_intact(&f, head);
    CHECK_EQ(sbi_store_grow(f.store), SB_OK); /* 512 KiB -> 1 MiB */
    while ((rc = s_append_rows(&f, next, next + 49)) == SB_OK)
        next += 50;
    CHECK_EQ(rc, SB_EFULL);
    CHECK(sbi_audit_head(f.audit, NULL) > head);
    CHECK_EQ(sbi_store_grow(f.store), SB_EFULL); /* at its maximum */
    s_expect_intact(&f, next - 1);
    s_close(&f);
    s_open(&f);
    CHECK_EQ(sbi_audit_head(f.audit, NULL), next - 1);
    s_teardown(&f);
}

TEST(test_damaged_last_record_refuses_appends_but_reads)
{
    fx_t f;
    s_setup(&f, 0, 0);
    CHECK_EQ(s_append_rows(&f, 1, 5), SB_OK);
    s_close(&f);
    s_open(&f);
    CHECK_EQ(sbi_tamper_flip(f.store, 5, 40), SB_OK);
    s_close(&f);
    s_open(&f);
    CHECK_EQ(s_append_rows(&f, 6, 6), SB_EMALFORMED);
    s_expect_fault(&f, SBI_AUDIT_ALTERED, 5);
    s_teardown(&f);
}

TEST(test_readonly_store_without_audit_log_fails_cleanly)
{
    char dir[64] = "/tmp/sb-test-audit-XXXXXX", err[256] = "";
    CHECK(mkdtemp(dir));
    sbi_store_t *store = sbi_store_open(dir, 0, 0, 0, 4, err, sizeof err);
    MDB_dbi dbi;
    CHECK_EQ(sbi_store_dbi(store, "consent", 0, &dbi), SB_OK);
    sbi_store_close(&store);
    store = sbi_store_open(dir, SBI_STORE_READONLY, 0, 0, SBI_AUDIT_DBS, err, sizeof err);
    CHECK(store);
    CHECK(sbi_audit_open(store, err, sizeof err) == NULL);
    CHECK(strstr(err, "no audit log"));
    sbi_store_close(&store);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ(system(cmd), 0);
}

/* ------------------------------------------------------------ tampering */

TEST(test_altered_record_is_caught_with_its_seq)
{
    fx_t f;
    s_setup(&f, 0, 0);
    CHECK_EQ(s_append_rows(&f, 1, 12), SB_OK);
    s_expect_intact(&f, 12);
    size_t size = sbi_tamper_entry_size(f.store, 7);
    CHECK(size > 200);
    for (size_t offset = 0; offset < size; offset++) {
        CHECK_EQ(sbi_tamper_flip(f.store, 7, offset), SB_OK);
        s_expect_fault(&f, SBI_AUDIT_ALTERED, 7);
        CHECK_EQ(sbi_tamper_flip(f.store, 7, offset), SB_OK); /* and back */
    }
    s_expect_intact(&f, 12);
    CHECK_EQ(sbi_tamper_flip(f.store, 1, 3), SB_OK);
    CHECK_EQ(sbi_tamper_flip(f.store, 12, 100), SB_OK);
    s_expect_fault(&f, SBI_AUDIT_ALTERED, 1);
    s_teardown(&f);
}

TEST(test_deleted_record_is_caught_as_missing_with_its_seq)
{
    fx_t f;
    s_setup(&f, 0, 0);
    CHECK_EQ(s_append_rows(&f, 1, 12), SB_OK);
    CHECK_EQ(sbi_tamper_delete(f.store, 5), SB_OK);
    s_expect_fault(&f, SBI_AUDIT_MISSING, 5);
    CHECK_EQ(sbi_tamper_delete(f.store, 1), SB_OK);
    s_expect_fault(&f, SBI_AUDIT_MISSING, 1);
    s_teardown(&f);
}

TEST(test_truncated_tail_is_caught_by_the_head_and_by_a_checkpoint)
{
    fx_t f;
    s_setup(&f, 0, 0);
    CHECK_EQ(s_append_rows(&f, 1, 20), SB_OK);
    Sharebus__Checkpoint *cp = s_checkpoint(&f);
    CHECK_EQ(cp->seq, 20);
    sharebus__checkpoint__free_unpacked(cp, NULL);
    s_expect_intact(&f, 20);
    CHECK_EQ(sbi_tamper_truncate(f.store, 18, false), SB_OK); /* careless */
    s_expect_fault(&f, SBI_AUDIT_TRUNCATED, 18);
    CHECK_EQ(sbi_tamper_truncate(f.store, 16, true), SB_OK); /* careful */
    sbi_audit_report_t report = s_verify(&f, NULL, 0);
    CHECK_EQ(report.fault, SBI_AUDIT_TRUNCATED);
    CHECK_EQ(report.seq, 16);
    CHECK(strstr(report.detail, "checkpoint"));
    s_teardown(&f);
}

TEST(test_rewritten_history_is_caught_by_an_older_checkpoint)
{
    fx_t f;
    s_setup(&f, 0, 0);
    CHECK_EQ(s_append_rows(&f, 1, 10), SB_OK);
    Sharebus__Checkpoint *at10 = s_checkpoint(&f);
    CHECK_EQ(s_append_rows(&f, 11, 20), SB_OK);
    Sharebus__Checkpoint *at20 = s_checkpoint(&f);
    CHECK_EQ(s_append_rows(&f, 21, 30), SB_OK);
    s_expect_intact(&f, 30);
    CHECK_EQ(sbi_tamper_rewrite(f.store, 15, 0, "nothing-to-see"), SB_OK);
    /* The chain alone is consistent again; the checkpoint at 20 is not. */
    sbi_audit_report_t report = s_verify(&f, NULL, 0);
    CHECK_EQ(report.fault, SBI_AUDIT_ALTERED);
    CHECK_EQ(report.seq, 20);
    CHECK(strstr(report.detail, "rewritten"));
    CHECK_EQ(report.records, 30);
    /* A forger who also deletes the stored checkpoints is caught by an
       agency's copy. */
    MDB_txn *txn;
    CHECK_EQ(sbi_store_begin(f.store, true, &txn), SB_OK);
    CHECK_EQ(mdb_drop(txn, f.audit->checkpoints, 0), 0);
    CHECK_EQ(mdb_txn_commit(txn), 0);
    s_expect_intact(&f, 30);
    Sharebus__Checkpoint *copies[] = {at10, at20};
    report = s_verify(&f, copies, 2);
    CHECK_EQ(report.fault, SBI_AUDIT_ALTERED);
    CHECK_EQ(report.seq, 20);
    report = s_verify(&f, copies, 1); /* the one at 10 predates the rewrite */
    CHECK_EQ(report.fault, SBI_AUDIT_INTACT);
    CHECK_EQ(report.checkpoints, 1);
    sharebus__checkpoint__free_unpacked(at10, NULL);
    sharebus__checkpoint__free_unpacked(at20, NULL);
    s_teardown(&f);
}

TEST(test_forged_checkpoint_signature_is_a_bad_checkpoint)
{
    fx_t f;
    s_setup(&f, 0, 0);
    CHECK_EQ(s_append_rows(&f, 1, 10), SB_OK);
    Sharebus__Checkpoint *cp = s_checkpoint(&f);
    CHECK_EQ(sbi_checkpoint_verify(cp, f.broker.cert.sign_public), SB_OK);
    Sharebus__Checkpoint *copies[] = {cp};
    CHECK_EQ(s_verify(&f, copies, 1).fault, SBI_AUDIT_INTACT);
    cp->signature.data[5] ^= 1;
    CHECK_EQ(sbi_checkpoint_verify(cp, f.broker.cert.sign_public), SB_EBADSIG);
    sbi_audit_report_t report = s_verify(&f, copies, 1);
    CHECK_EQ(report.fault, SBI_AUDIT_BAD_CHECKPOINT);
    CHECK_EQ(report.seq, 10);
    cp->signature.data[5] ^= 1;
    cp->seq = 9; /* a valid signature over other contents */
    CHECK_EQ(s_verify(&f, copies, 1).fault, SBI_AUDIT_BAD_CHECKPOINT);
    cp->seq = 10;
    /* A checkpoint signed by another key (a forger's own) is refused too. */
    sbi_keys_t forger;
    sbi_keys_generate(&forger, SBI_CERT_BROKER);
    strcpy(forger.cert.agency, "broker");
    MDB_txn *txn;
    Sharebus__Checkpoint *forged;
    CHECK_EQ(sbi_store_begin(f.store, true, &txn), SB_OK);
    CHECK_EQ(sbi_audit_checkpoint(f.audit, txn, &forger, &forged), SB_OK);
    CHECK_EQ(mdb_txn_commit(txn), 0);
    report = s_verify(&f, NULL, 0);
    CHECK_EQ(report.fault, SBI_AUDIT_BAD_CHECKPOINT);
    CHECK_EQ(report.seq, 10);
    sbi_keys_wipe(&forger);
    sharebus__checkpoint__free_unpacked(forged, NULL);
    sharebus__checkpoint__free_unpacked(cp, NULL);
    s_teardown(&f);
}

TEST(test_parallel_walk_finds_the_same_faults_at_range_boundaries)
{
    fx_t f;
    s_setup(&f, 0, 0);
    uint64_t saved = sbi_audit_parallel_min;
    sbi_audit_parallel_min = 2; /* 40 records: ranges 1-20 and 21-40 on 2 cpus */
    CHECK_EQ(s_append_rows(&f, 1, 40), SB_OK);
    Sharebus__Checkpoint *cp = s_checkpoint(&f);
    s_expect_intact(&f, 40);
    uint8_t head[SBI_HASH_SIZE];
    sbi_audit_head(f.audit, head);
    sbi_audit_report_t report = s_verify(&f, NULL, 0);
    CHECK_EQ(report.head_seq, 40);
    CHECK(memcmp(report.head_hash, head, SBI_HASH_SIZE) == 0);
    static const uint64_t seqs[] = {1, 10, 19, 20, 21, 22, 30, 39, 40};
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        CHECK_EQ(sbi_tamper_flip(f.store, seqs[i], 50), SB_OK);
        s_expect_fault(&f, SBI_AUDIT_ALTERED, seqs[i]);
        CHECK_EQ(sbi_tamper_flip(f.store, seqs[i], 50), SB_OK);
    }
    CHECK_EQ(sbi_tamper_rewrite(f.store, 20, 1, "x"), SB_OK); /* breaks the 20-21 link */
    s_expect_fault(&f, SBI_AUDIT_ALTERED, 21);
    CHECK_EQ(sbi_tamper_rewrite(f.store, 1, 0, "x"), SB_OK); /* consistent, but signed */
    s_expect_fault(&f, SBI_AUDIT_ALTERED, 40);
    CHECK_EQ(sbi_tamper_delete(f.store, 21), SB_OK);
    s_expect_fault(&f, SBI_AUDIT_MISSING, 21);
    CHECK_EQ(sbi_tamper_delete(f.store, 20), SB_OK);
    s_expect_fault(&f, SBI_AUDIT_MISSING, 20);
    sharebus__checkpoint__free_unpacked(cp, NULL);
    sbi_audit_parallel_min = saved;
    s_teardown(&f);
}

/* -------------------------------------------------------------- indexes */

static void s_expect_bad_index(fx_t *f, const char *index, uint64_t seq)
{
    sbi_audit_report_t report = s_verify(f, NULL, 0);
    if (report.fault != SBI_AUDIT_BAD_INDEX || report.seq != seq)
        fprintf(stderr, "  want bad %s index at %" PRIu64 "; verify: %s at %" PRIu64 ": %s\n",
                index, seq, sbi_audit_fault_name(report.fault), report.seq, report.detail);
    CHECK_EQ(report.fault, SBI_AUDIT_BAD_INDEX);
    CHECK_EQ(report.seq, seq);
    CHECK(report.index && strcmp(report.index, index) == 0);
    CHECK(strstr(report.detail, "reindex"));
}

/* Rebuilds the indexes as `sharebus-audit reindex` does. */
static void s_reindex(fx_t *f, uint64_t records)
{
    MDB_txn *txn;
    uint64_t indexed;
    CHECK_EQ(sbi_store_begin(f->store, true, &txn), SB_OK);
    CHECK_EQ(sbi_audit_reindex(f->audit, txn, &indexed), SB_OK);
    CHECK_EQ(mdb_txn_commit(txn), 0);
    sbi_audit_commit(f->audit);
    CHECK_EQ(indexed, records);
}

/* Every index, at the first and last records and at the join of the two
   ranges of a parallel walk (1-20, 21-40); rebuilt after each. */
static void s_unindex_each(fx_t *f)
{
    static const struct {
        const char *index;
        uint64_t seqs[4];
    } cases[] = {
        {"subject", {1, 20, 22, 40}}, /* 21 has no subject */
        {"agency", {1, 20, 21, 40}},
        {"dataset", {1, 20, 21, 40}},
        {"time", {1, 20, 21, 40}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (size_t i = 0; i < 4; i++) {
            CHECK_EQ(sbi_tamper_unindex(f->store, cases[c].index, cases[c].seqs[i]), SB_OK);
            s_expect_bad_index(f, cases[c].index, cases[c].seqs[i]);
            s_reindex(f, 40);
            s_expect_intact(f, 40);
        }
    CHECK_EQ(sbi_tamper_unindex(f->store, "subject", 33), SB_OK); /* the first found */
    CHECK_EQ(sbi_tamper_unindex(f->store, "time", 30), SB_OK);
    CHECK_EQ(sbi_tamper_unindex(f->store, "agency", 31), SB_OK);
    s_expect_bad_index(f, "time", 30);
    s_reindex(f, 40);
}

TEST(test_record_missing_from_an_index_is_caught_with_its_seq_and_index)
{
    fx_t f;
    s_setup(&f, 0, 0);
    CHECK_EQ(s_append_rows(&f, 1, 40), SB_OK);
    Sharebus__Checkpoint *cp = s_checkpoint(&f);
    s_expect_intact(&f, 40);
    s_unindex_each(&f); /* one range */
    uint64_t saved = sbi_audit_parallel_min;
    sbi_audit_parallel_min = 2;
    s_unindex_each(&f); /* two on 2 cpus */
    sbi_audit_parallel_min = saved;
    s_expect_intact(&f, 40);
    sharebus__checkpoint__free_unpacked(cp, NULL);
    s_teardown(&f);
}

TEST(test_index_entry_naming_the_wrong_or_an_absent_record_is_caught)
{
    fx_t f;
    s_setup(&f, 0, 0);
    CHECK_EQ(s_append_rows(&f, 1, 12), SB_OK);
    uint8_t ref[SBI_HASH_SIZE], time_be[8];
    s_subject(3, ref);
    CHECK_EQ(sbi_tamper_index_add(f.store, "subject", ref, sizeof ref, 99), SB_OK);
    s_expect_bad_index(&f, "subject", 99);
    sbi_audit_report_t report = s_verify(&f, NULL, 0);
    CHECK(strstr(report.detail, "not in the log"));
    CHECK_EQ(sbi_tamper_index_add(f.store, "agency", "nts", 3, 2), SB_OK); /* police>molit */
    s_expect_bad_index(&f, "agency", 2);
    CHECK_EQ(sbi_tamper_index_add(f.store, "dataset", "vehicle.registration", 20, 0), SB_OK);
    s_expect_bad_index(&f, "dataset", 0);
    s_reindex(&f, 12);
    s_expect_intact(&f, 12);
    /* Record 5 moved to another subject, and to another time. */
    s_subject(0, ref);
    CHECK_EQ(sbi_tamper_unindex(f.store, "subject", 5), SB_OK);
    CHECK_EQ(sbi_tamper_index_add(f.store, "subject", ref, sizeof ref, 5), SB_OK);
    s_expect_bad_index(&f, "subject", 5);
    s_reindex(&f, 12);
    sbi_be64_put(time_be, T0 + 5 * MINUTE + 1);
    CHECK_EQ(sbi_tamper_unindex(f.store, "time", 5), SB_OK);
    CHECK_EQ(sbi_tamper_index_add(f.store, "time", time_be, 8, 5), SB_OK);
    s_expect_bad_index(&f, "time", 5);
    /* The chain comes first: a broken one is named, not the index. */
    CHECK_EQ(sbi_tamper_flip(f.store, 9, 50), SB_OK);
    s_expect_fault(&f, SBI_AUDIT_ALTERED, 9);
    uint64_t indexed;
    MDB_txn *txn;
    CHECK_EQ(sbi_store_begin(f.store, true, &txn), SB_OK);
    CHECK_EQ(sbi_audit_reindex(f.audit, txn, &indexed), SB_EMALFORMED);
    mdb_txn_abort(txn);
    sbi_audit_abort(f.audit);
    s_teardown(&f);
}

/* Eight records whose clock steps back twice (T0 + 1000, 2000, 3000,
   1500, 2500, 4000, 500, 5000), committed. */
static void s_append_stepping_back(fx_t *f)
{
    static const uint64_t times[] = {1000, 2000, 3000, 1500, 2500, 4000, 500, 5000};
    MDB_txn *txn;
    CHECK_EQ(sbi_store_begin(f->store, true, &txn), SB_OK);
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        s_record_t r;
        s_fill(&r, s_row(i + 1));
        r.record.time_ms = T0 + times[i];
        CHECK_EQ(sbi_audit_append(f->audit, txn, &r.record), SB_OK);
    }
    CHECK_EQ(mdb_txn_commit(txn), 0);
    sbi_audit_commit(f->audit);
}

/* Records whose clock stepped back: raised time index keys, which the
   stored slack must cover, across the join of a parallel walk too. */
TEST(test_time_slack_that_does_not_cover_the_records_is_caught)
{
    fx_t f;
    s_setup(&f, 0, 0);
    s_append_stepping_back(&f);
    uint64_t saved = sbi_audit_parallel_min;
    for (int parallel = 0; parallel < 2; parallel++) {
        sbi_audit_parallel_min = parallel ? 2 : saved; /* ranges 1-4 and 5-8 */
        s_expect_intact(&f, 8);
        CHECK_EQ(sbi_tamper_meta(f.store, "time-slack", 1500), SB_OK); /* 3500 after 7 */
        s_expect_bad_index(&f, "time", 7);
        CHECK_EQ(sbi_tamper_meta(f.store, "time-slack", 0), SB_OK);
        s_expect_bad_index(&f, "time", 4);
        s_reindex(&f, 8);
        CHECK_EQ(sbi_tamper_unindex(f.store, "time", 4), SB_OK);
        s_expect_bad_index(&f, "time", 4);
        s_reindex(&f, 8);
        CHECK_EQ(sbi_tamper_unindex(f.store, "time", 5), SB_OK);
        s_expect_bad_index(&f, "time", 5);
        s_reindex(&f, 8);
    }
    sbi_audit_parallel_min = saved;
    s_expect_intact(&f, 8);
    s_teardown(&f);
}

/* Past the first block of 65536 records, and with a clock that jumped far
   ahead at record 30000 (every later record's time index key is raised to
   it, under one key, and the second range of the walk must find it). */
TEST(test_index_faults_past_the_first_block_are_named)
{
    fx_t f;
    s_setup(&f, 256 << 20, 0);
    const uint64_t n = 65536 + 300;
    MDB_txn *txn;
    CHECK_EQ(sbi_store_begin(f.store, true, &txn), SB_OK);
    for (uint64_t i = 1; i <= n; i++) {
        s_record_t r;
        s_fill(&r, s_row(i));
        r.record.time_ms = T0 + (i == 30000 ? 99 * MINUTE * n : i);
        CHECK_EQ(sbi_audit_append(f.audit, txn, &r.record), SB_OK);
    }
    CHECK_EQ(mdb_txn_commit(txn), 0);
    sbi_audit_commit(f.audit);
    s_expect_intact(&f, n);
    uint64_t saved = sbi_audit_parallel_min;
    sbi_audit_parallel_min = 2;
    s_expect_intact(&f, n);
    CHECK_EQ(sbi_tamper_unindex(f.store, "time", 40000), SB_OK);
    s_expect_bad_index(&f, "time", 40000);
    s_reindex(&f, n);
    sbi_audit_parallel_min = saved;
    CHECK_EQ(sbi_tamper_unindex(f.store, "time", 65600), SB_OK);
    s_expect_bad_index(&f, "time", 65600);
    s_reindex(&f, n);
    CHECK_EQ(sbi_tamper_unindex(f.store, "agency", 65537), SB_OK);
    s_expect_bad_index(&f, "agency", 65537);
    s_reindex(&f, n);
    s_expect_intact(&f, n);
    s_teardown(&f);
}

TEST(test_checkpoints_hold_only_under_a_key_good_at_their_time)
{
    fx_t f;
    s_setup(&f, 0, 0);
    CHECK_EQ(s_append_rows(&f, 1, 5), SB_OK);
    Sharebus__Checkpoint *cp = s_checkpoint(&f);
    sbi_keys_t other;
    sbi_keys_generate(&other, SBI_CERT_BROKER);
    sbi_audit_key_t keys[2] = {{.from_ms = 0}, {.from_ms = 0}};
    memcpy(keys[0].sign_public, other.cert.sign_public, 32); /* the new key after a rotation */
    memcpy(keys[1].sign_public, f.broker.cert.sign_public, 32);
    keys[1].until_ms = cp->time_ms + 1; /* revoked just after it signed */
    sbi_audit_report_t report;
    CHECK_EQ(sbi_audit_verify_keys(f.audit, keys, 2, NULL, 0, &report), SB_OK);
    keys[1].until_ms = cp->time_ms; /* revoked before */
    CHECK_EQ(sbi_audit_verify_keys(f.audit, keys, 2, NULL, 0, &report), SB_EBADSIG);
    CHECK_EQ(report.fault, SBI_AUDIT_BAD_CHECKPOINT);
    CHECK(strstr(report.detail, "not valid then"));
    keys[1].until_ms = 0;
    keys[1].from_ms = cp->time_ms + 1; /* not yet valid */
    CHECK_EQ(sbi_audit_verify_keys(f.audit, keys, 2, NULL, 0, &report), SB_EBADSIG);
    CHECK_EQ(sbi_audit_verify_keys(f.audit, keys, 1, NULL, 0, &report), SB_EBADSIG);
    CHECK(strstr(report.detail, "not signed by the broker's key"));
    CHECK_EQ(sbi_audit_verify_keys(f.audit, NULL, 0, NULL, 0, &report), SB_OK);
    sbi_keys_wipe(&other);
    sharebus__checkpoint__free_unpacked(cp, NULL);
    s_teardown(&f);
}

/* ---------------------------------------------------------- checkpoints */

static int s_count_checkpoint(const Sharebus__Checkpoint *cp, void *arg)
{
    uint64_t *last = arg;
    CHECK(cp->seq > *last);
    *last = cp->seq;
    return 0;
}

TEST(test_received_checkpoints_are_kept_apart_from_the_logs_own)
{
    fx_t broker, agent;
    s_setup(&broker, 0, 0);
    s_setup(&agent, 0, 0);
    CHECK_EQ(s_append_rows(&agent, 1, 3), SB_OK); /* the agent's own log */
    for (uint64_t n = 10; n <= 30; n += 10) {
        CHECK_EQ(s_append_rows(&broker, n - 9, n), SB_OK);
        Sharebus__Checkpoint *cp = s_checkpoint(&broker);
        MDB_txn *txn;
        CHECK_EQ(sbi_store_begin(agent.store, true, &txn), SB_OK);
        CHECK_EQ(sbi_audit_store_checkpoint(agent.audit, txn, cp), SB_OK);
        CHECK_EQ(mdb_txn_commit(txn), 0);
        sharebus__checkpoint__free_unpacked(cp, NULL);
    }
    uint64_t last = 0;
    CHECK_EQ(sbi_audit_checkpoints(agent.audit, true, s_count_checkpoint, &last), SB_OK);
    CHECK_EQ(last, 30);
    last = 0;
    CHECK_EQ(sbi_audit_checkpoints(agent.audit, false, s_count_checkpoint, &last), SB_OK);
    CHECK_EQ(last, 0);
    Sharebus__Checkpoint *latest = NULL;
    CHECK_EQ(sbi_audit_checkpoint_latest(agent.audit, false, &latest), SB_ENOTFOUND);
    CHECK_EQ(sbi_audit_checkpoint_latest(agent.audit, true, &latest), SB_OK);
    CHECK_EQ(latest->seq, 30);
    /* The agent's own log verifies without the broker's checkpoints... */
    s_expect_intact(&agent, 3);
    /* ...and its copy verifies the broker's log. */
    Sharebus__Checkpoint *copies[] = {latest};
    sbi_audit_report_t report = s_verify(&broker, copies, 1);
    CHECK_EQ(report.fault, SBI_AUDIT_INTACT);
    CHECK_EQ(report.checkpoints, 4);
    sharebus__checkpoint__free_unpacked(latest, NULL);
    s_teardown(&broker);
    s_teardown(&agent);
}

static int s_hash_of(const Sharebus__AuditRecord *record, const uint8_t hash[32], void *arg)
{
    (void)record;
    memcpy(arg, hash, SBI_HASH_SIZE);
    return 1;
}

/* What an operator holding the broker's key can do: sign any head for any
   seq at any time. This one names the log's record `seq` as it is now. */
static Sharebus__Checkpoint *s_sign_again(fx_t *f, uint64_t seq, uint64_t time_ms)
{
    uint8_t hash[SBI_HASH_SIZE], bytes[SBI_CHECKPOINT_SIGNED_SIZE], signature[64], packed[512];
    sbi_audit_filter_t at = {.after_seq = seq - 1};
    CHECK_EQ(sbi_audit_query_entries(f->audit, &at, s_hash_of, hash), SB_OK);
    sbi_checkpoint_signed_bytes(seq, hash, time_ms, bytes);
    crypto_sign_detached(signature, NULL, bytes, sizeof bytes, f->broker.sign_secret);
    Sharebus__Checkpoint cp = SHAREBUS__CHECKPOINT__INIT;
    cp.seq = seq;
    cp.time_ms = time_ms;
    cp.head_hash = (ProtobufCBinaryData){SBI_HASH_SIZE, hash};
    cp.signer = "broker";
    cp.signature = (ProtobufCBinaryData){sizeof signature, signature};
    Sharebus__Checkpoint *copy = NULL;
    CHECK_EQ(sbi_checkpoint_decode(packed, sharebus__checkpoint__pack(&cp, packed), &copy), SB_OK);
    return copy;
}

static int s_store_received(fx_t *agent, const Sharebus__Checkpoint *cp)
{
    MDB_txn *txn;
    CHECK_EQ(sbi_store_begin(agent->store, true, &txn), SB_OK);
    int rc = sbi_audit_store_checkpoint(agent->audit, txn, cp);
    CHECK_EQ(mdb_txn_commit(txn), 0); /* a conflict is kept: commit all the same */
    return rc;
}

typedef struct {
    size_t n;
    uint8_t hash[SBI_HASH_SIZE]; /* of the last one seen */
} s_seen_t;

static int s_see(const Sharebus__Checkpoint *cp, void *arg)
{
    s_seen_t *seen = arg;
    seen->n++;
    memcpy(seen->hash, cp->head_hash.data, SBI_HASH_SIZE);
    return 0;
}

TEST(test_received_checkpoint_is_never_replaced_and_a_conflict_is_kept_apart)
{
    fx_t broker, agent;
    s_setup(&broker, 0, 0);
    s_setup(&agent, 0, 0);
    CHECK_EQ(s_append_rows(&broker, 1, 10), SB_OK);
    Sharebus__Checkpoint *genuine = s_checkpoint(&broker);
    genuine->received_ms = genuine->time_ms + 2; /* the agent's clock, as it sets it */
    CHECK_EQ(s_store_received(&agent, genuine), SB_OK);
    genuine->received_ms += 60000;
    CHECK_EQ(s_store_received(&agent, genuine), SB_OK); /* sent again on a reconnect */
    /* The same head signed again later is the same statement: kept as it was. */
    Sharebus__Checkpoint *later = s_sign_again(&broker, 10, genuine->time_ms + 5000);
    CHECK_EQ(s_store_received(&agent, later), SB_OK);
    /* History rewritten from 3 and signed again for the seq the agent holds. */
    CHECK_EQ(sbi_tamper_rewrite(broker.store, 3, 0, "nothing-to-see"), SB_OK);
    Sharebus__Checkpoint *forged = s_sign_again(&broker, 10, genuine->time_ms + 1);
    CHECK(memcmp(forged->head_hash.data, genuine->head_hash.data, SBI_HASH_SIZE) != 0);
    forged->received_ms = forged->time_ms + 3;
    CHECK_EQ(s_store_received(&agent, forged), SB_EEXISTS);
    forged->received_ms += 60000;
    CHECK_EQ(s_store_received(&agent, forged), SB_EEXISTS); /* once as evidence */
    Sharebus__Checkpoint *held = NULL;
    CHECK_EQ(sbi_audit_checkpoint_latest(agent.audit, true, &held), SB_OK);
    CHECK(held && memcmp(held->head_hash.data, genuine->head_hash.data, SBI_HASH_SIZE) == 0);
    CHECK(held && held->time_ms == genuine->time_ms);
    CHECK(held && held->received_ms == genuine->time_ms + 2); /* the first receipt */
    s_seen_t seen = {0};
    CHECK_EQ(sbi_audit_checkpoints(agent.audit, true, s_see, &seen), SB_OK);
    CHECK_EQ(seen.n, 1);
    memset(&seen, 0, sizeof seen);
    CHECK_EQ(sbi_audit_conflicts(agent.audit, s_see, &seen), SB_OK);
    CHECK_EQ(seen.n, 1);
    CHECK(memcmp(seen.hash, forged->head_hash.data, SBI_HASH_SIZE) == 0);
    /* A broker signing ever more of them fills no disk: 8 per seq. */
    for (uint64_t k = 2; k < 20; k++) {
        Sharebus__Checkpoint *more = s_sign_again(&broker, 10, genuine->time_ms + k);
        CHECK_EQ(s_store_received(&agent, more), SB_EEXISTS);
        sharebus__checkpoint__free_unpacked(more, NULL);
    }
    memset(&seen, 0, sizeof seen);
    CHECK_EQ(sbi_audit_conflicts(agent.audit, s_see, &seen), SB_OK);
    CHECK_EQ(seen.n, 8);
    s_expect_intact(&agent, 0); /* the agent's own log is not concerned */
    sharebus__checkpoint__free_unpacked(held, NULL);
    sharebus__checkpoint__free_unpacked(forged, NULL);
    sharebus__checkpoint__free_unpacked(later, NULL);
    sharebus__checkpoint__free_unpacked(genuine, NULL);
    s_teardown(&broker);
    s_teardown(&agent);
}

TEST(test_verify_with_the_genuine_copies_catches_a_rewrite_signed_again)
{
    fx_t f;
    s_setup(&f, 0, 0);
    CHECK_EQ(s_append_rows(&f, 1, 5), SB_OK);
    Sharebus__Checkpoint *at5 = s_checkpoint(&f);
    CHECK_EQ(s_append_rows(&f, 6, 10), SB_OK);
    Sharebus__Checkpoint *at10 = s_checkpoint(&f);
    /* The operator rewrites from 7 and replaces the stored checkpoint of 10
       with one signed again over the rewritten log. */
    CHECK_EQ(sbi_tamper_rewrite(f.store, 7, 0, "nothing-to-see"), SB_OK);
    Sharebus__Checkpoint *forged = s_sign_again(&f, 10, at10->time_ms + 1);
    MDB_txn *txn;
    uint8_t key_bytes[8], packed[512];
    sbi_be64_put(key_bytes, 10);
    MDB_val key = {8, key_bytes}, val = {sharebus__checkpoint__pack(forged, packed), packed};
    CHECK_EQ(sbi_store_begin(f.store, true, &txn), SB_OK);
    CHECK_EQ(mdb_put(txn, f.audit->checkpoints, &key, &val, 0), 0);
    CHECK_EQ(mdb_txn_commit(txn), 0);
    s_expect_intact(&f, 10); /* the store alone cannot tell */
    Sharebus__Checkpoint *copies[] = {at5, at10, forged};
    sbi_audit_report_t report = s_verify(&f, copies, 2); /* the agencies' genuine copies */
    CHECK_EQ(report.fault, SBI_AUDIT_CONFLICT);
    CHECK_EQ(report.seq, 10);
    CHECK_EQ(report.untrusted_from, 6); /* the given one at 5 holds */
    CHECK(strstr(report.detail, "name different heads for record 10"));
    CHECK(strstr(report.detail, "the log has the stored one"));
    CHECK(strstr(report.detail, "records 6 to 10 cannot be trusted"));
    report = s_verify(&f, copies + 1, 1);
    CHECK_EQ(report.fault, SBI_AUDIT_CONFLICT);
    CHECK_EQ(report.untrusted_from, 1); /* the stored one at 5 does not count */
    /* Agencies' exports that disagree, with the stored ones gone. */
    CHECK_EQ(sbi_store_begin(f.store, true, &txn), SB_OK);
    CHECK_EQ(mdb_drop(txn, f.audit->checkpoints, 0), 0);
    CHECK_EQ(mdb_txn_commit(txn), 0);
    report = s_verify(&f, copies, 3);
    CHECK_EQ(report.fault, SBI_AUDIT_CONFLICT);
    CHECK_EQ(report.seq, 10);
    CHECK(strstr(report.detail, "the log has the given one"));
    CHECK_STR(sbi_audit_fault_name(report.fault), "conflicting checkpoints");
    sharebus__checkpoint__free_unpacked(forged, NULL);
    sharebus__checkpoint__free_unpacked(at10, NULL);
    sharebus__checkpoint__free_unpacked(at5, NULL);
    s_teardown(&f);
}

TEST(test_rewrite_names_the_records_after_the_last_checkpoint_that_holds)
{
    fx_t f;
    s_setup(&f, 0, 0);
    for (uint64_t n = 5; n <= 20; n += 5) {
        CHECK_EQ(s_append_rows(&f, n - 4, n), SB_OK);
        sharebus__checkpoint__free_unpacked(s_checkpoint(&f), NULL);
    }
    CHECK_EQ(sbi_tamper_rewrite(f.store, 12, 0, "nothing-to-see"), SB_OK);
    sbi_audit_report_t report = s_verify(&f, NULL, 0);
    CHECK_EQ(report.fault, SBI_AUDIT_ALTERED);
    CHECK_EQ(report.seq, 15); /* where it shows */
    CHECK_EQ(report.untrusted_from, 11);
    CHECK(strstr(report.detail, "records 11 to 15 cannot be trusted (the last checkpoint that "
                                "holds is at seq 10)"));
    CHECK_EQ(sbi_tamper_rewrite(f.store, 2, 0, "nothing-to-see"), SB_OK);
    report = s_verify(&f, NULL, 0);
    CHECK_EQ(report.seq, 5);
    CHECK_EQ(report.untrusted_from, 1);
    CHECK(strstr(report.detail, "records 1 to 5 cannot be trusted (no checkpoint before seq 5"));
    /* Other faults name one record, not a range. */
    CHECK_EQ(sbi_tamper_flip(f.store, 3, 40), SB_OK);
    report = s_verify(&f, NULL, 0);
    CHECK_EQ(report.seq, 3);
    CHECK_EQ(report.untrusted_from, 0);
    CHECK(!strstr(report.detail, "cannot be trusted"));
    s_teardown(&f);
}

TEST(test_readonly_store_from_before_conflicts_were_kept_opens)
{
    fx_t f;
    s_setup(&f, 0, 0);
    CHECK_EQ(s_append_rows(&f, 1, 3), SB_OK);
    MDB_txn *txn;
    CHECK_EQ(sbi_store_begin(f.store, true, &txn), SB_OK);
    CHECK_EQ(mdb_drop(txn, f.audit->conflicts, 1), 0); /* as an older version left it */
    CHECK_EQ(mdb_txn_commit(txn), 0);
    s_close(&f);
    f.flags = SBI_STORE_READONLY;
    s_open(&f);
    s_seen_t seen = {0};
    CHECK_EQ(sbi_audit_conflicts(f.audit, s_see, &seen), SB_OK);
    CHECK_EQ(seen.n, 0);
    s_expect_intact(&f, 3);
    s_teardown(&f);
}

TEST(test_checkpoint_json_round_trips_and_refuses_junk)
{
    fx_t f;
    s_setup(&f, 0, 0);
    CHECK_EQ(s_append_rows(&f, 1, 3), SB_OK);
    Sharebus__Checkpoint *cp = s_checkpoint(&f);
    char *json = sbi_checkpoint_to_json(cp);
    CHECK(strstr(json, "\"signer\":\"broker\""));
    Sharebus__Checkpoint *back = NULL;
    CHECK_EQ(sbi_checkpoint_from_json(json, &back), SB_OK);
    CHECK_EQ(back->seq, 3);
    CHECK_EQ(back->time_ms, cp->time_ms);
    CHECK_EQ(sbi_checkpoint_verify(back, f.broker.cert.sign_public), SB_OK);
    CHECK(strstr(json, "received") == NULL);    /* the broker's own: no receipt */
    CHECK_EQ(back->received_ms, 0);
    /* An agency's copy: when it came is kept, outside the signature. */
    cp->received_ms = cp->time_ms + 1500;
    char *copy = sbi_checkpoint_to_json(cp);
    CHECK(strstr(copy, "\"received\":\""));
    sharebus__checkpoint__free_unpacked(back, NULL);
    CHECK_EQ(sbi_checkpoint_from_json(copy, &back), SB_OK);
    CHECK_EQ(back->received_ms, cp->time_ms + 1500);
    CHECK_EQ(sbi_checkpoint_verify(back, f.broker.cert.sign_public), SB_OK);
    free(copy);
    const char *junk[] = {"",
                          "[]",
                          "{}",
                          "{\"seq\":-1}",
                          "null",
                          ("{\"seq\":1,\"time_ms\":1,\"head_hash\":\"00\",\"signer\":\"broker\","
                           "\"signature\":\"00\"}")};
    /* the whole checkpoint with a received_ms that is not a count of ms */
    char *bad_received = strdup(json);
    CHECK(bad_received && bad_received[strlen(bad_received) - 1] == '}');
    bad_received[strlen(bad_received) - 1] = 0;
    char *with_bad = NULL;
    CHECK(asprintf(&with_bad, "%s,\"received_ms\":\"soon\"}", bad_received) > 0);
    Sharebus__Checkpoint *refused = NULL;
    CHECK_EQ(sbi_checkpoint_from_json(with_bad, &refused), SB_EMALFORMED);
    CHECK(refused == NULL);
    free(with_bad);
    free(bad_received);
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        Sharebus__Checkpoint *bad = NULL;
        CHECK_EQ(sbi_checkpoint_from_json(junk[i], &bad), SB_EMALFORMED);
        CHECK(bad == NULL);
    }
    free(json);
    sharebus__checkpoint__free_unpacked(cp, NULL);
    sharebus__checkpoint__free_unpacked(back, NULL);
    s_teardown(&f);
}

TEST(test_empty_log_checkpoint_names_seq_zero_and_verifies)
{
    fx_t f;
    s_setup(&f, 0, 0);
    Sharebus__Checkpoint *cp = s_checkpoint(&f);
    CHECK_EQ(cp->seq, 0);
    s_expect_intact(&f, 0);
    sharebus__checkpoint__free_unpacked(cp, NULL);
    s_teardown(&f);
}

/* -------------------------------------------------------------- queries */

typedef struct {
    uint64_t seqs[512];
    size_t n;
} s_seqs_t;

static int s_collect(const Sharebus__AuditRecord *record, void *arg)
{
    s_seqs_t *got = arg;
    if (got->n < 512)
        got->seqs[got->n++] = record->seq;
    return 0;
}

static bool s_row_matches(const sbi_audit_filter_t *f, uint64_t i)
{
    s_row_t row = s_row(i);
    uint8_t ref[SBI_HASH_SIZE];
    if (row.subject >= 0)
        s_subject(row.subject, ref);
    return (!f->subject_ref || (row.subject >= 0 && memcmp(ref, f->subject_ref, 32) == 0)) &&
           (!f->agency || strcmp(row.from, f->agency) == 0 || strcmp(row.to, f->agency) == 0) &&
           (!f->dataset || strcmp(row.dataset, f->dataset) == 0) &&
           (!f->purpose || strcmp(row.purpose, f->purpose) == 0) &&
           (!f->kind || row.kind == f->kind) && row.time_ms >= f->since_ms &&
           (!f->until_ms || row.time_ms < f->until_ms) && i > f->after_seq;
}

/* The query's answer equals brute force over rows 1..n. */
static void s_expect_query(fx_t *f, const sbi_audit_filter_t *filter, uint64_t n)
{
    s_seqs_t got = {.n = 0};
    CHECK_EQ(sbi_audit_query(f->audit, filter, s_collect, &got), SB_OK);
    size_t want = 0;
    bool same = true;
    for (uint64_t i = 1; i <= n; i++) {
        if (!s_row_matches(filter, i) || (filter->limit && want >= filter->limit))
            continue;
        same = same && want < got.n && got.seqs[want] == i;
        want++;
    }
    CHECK_EQ(got.n, want);
    CHECK(same);
}

TEST(test_queries_return_exactly_the_right_records)
{
    fx_t f;
    s_setup(&f, 0, 0);
    const uint64_t n = 200;
    CHECK_EQ(s_append_rows(&f, 1, n), SB_OK);
    uint8_t ref[SBI_HASH_SIZE], nobody[SBI_HASH_SIZE];
    s_subject(3, ref);
    s_subject(99, nobody);
    sbi_audit_filter_t filters[] = {
        {.subject_ref = ref},
        {.subject_ref = nobody},
        {.agency = "koroad"},
        {.agency = "nhis"},
        {.agency = "unknown-agency"},
        {.dataset = "vehicle.registration"},
        {.purpose = "tax-audit"},
        {.kind = SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED},
        {.since_ms = T0 + 50 * MINUTE, .until_ms = T0 + 80 * MINUTE},
        {.since_ms = T0 + 150 * MINUTE},
        {.until_ms = T0 + 10 * MINUTE},
        {.since_ms = T0 + 1000 * MINUTE},
        {.limit = 7},
        {.after_seq = 190},
        {.subject_ref = ref, .agency = "nts", .limit = 3},
        {.subject_ref = ref, .kind = SHAREBUS__AUDIT_KIND__AUDIT_REPLY_FORWARDED},
        {.agency = "police",
         .dataset = "vehicle.registration",
         .since_ms = T0 + 30 * MINUTE,
         .until_ms = T0 + 120 * MINUTE,
         .limit = 5},
        {.dataset = "health.checkup.vision-hearing", .purpose = "investigation", .after_seq = 100},
        {.subject_ref = ref, .since_ms = T0 + 100 * MINUTE, .until_ms = T0 + 101 * MINUTE},
    };
    /* Then the same, the store opened for random reads (no read-ahead,
       as sharebus-audit opens it for a subject). */
    for (int random = 0; random < 2; random++) {
        if (random) {
            s_close(&f);
            f.flags = SBI_STORE_RANDOM;
            s_open(&f);
        }
        for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++) {
            int before = s_failures;
            s_expect_query(&f, &filters[i], n);
            if (s_failures != before)
                fprintf(stderr, "  in filter %zu%s\n", i, random ? ", random reads" : "");
        }
    }
    s_teardown(&f);
}

TEST(test_time_window_survives_a_clock_stepping_back)
{
    fx_t f;
    s_setup(&f, 0, 0);
    s_append_stepping_back(&f);
    struct {
        uint64_t since, until;
        size_t n;
        uint64_t seqs[8];
    } cases[] = {
        {1500, 2600, 3, {2, 4, 5}}, {0, 1600, 3, {1, 4, 7}}, {2600, 0, 3, {3, 6, 8}},
        {400, 600, 1, {7}},         {4500, 0, 1, {8}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sbi_audit_filter_t filter = {.since_ms = cases[c].since ? T0 + cases[c].since : 0,
                                     .until_ms = cases[c].until ? T0 + cases[c].until : 0};
        s_seqs_t got = {.n = 0};
        CHECK_EQ(sbi_audit_query(f.audit, &filter, s_collect, &got), SB_OK);
        CHECK_EQ(got.n, cases[c].n);
        for (size_t i = 0; i < got.n && i < cases[c].n; i++)
            CHECK_EQ(got.seqs[i], cases[c].seqs[i]);
    }
    s_teardown(&f);
}

TEST(test_long_names_are_indexed_by_prefix_and_matched_in_full)
{
    fx_t f;
    s_setup(&f, 0, 0);
    char a[300], b[300];
    memset(a, 'd', sizeof a - 1);
    a[sizeof a - 1] = 0;
    memcpy(b, a, sizeof a);
    b[200] = 'e'; /* same first SBI_AUDIT_KEY_MAX bytes */
    MDB_txn *txn;
    CHECK_EQ(sbi_store_begin(f.store, true, &txn), SB_OK);
    for (int i = 0; i < 3; i++) {
        s_record_t r;
        s_fill(&r, s_row((uint64_t)i + 1));
        r.record.dataset = i == 1 ? b : a;
        r.record.from = i == 1 ? b : a;
        CHECK_EQ(sbi_audit_append(f.audit, txn, &r.record), SB_OK);
    }
    CHECK_EQ(mdb_txn_commit(txn), 0);
    sbi_audit_commit(f.audit);
    sbi_audit_filter_t by_dataset = {.dataset = b}, by_agency = {.agency = a};
    s_seqs_t got = {.n = 0};
    CHECK_EQ(sbi_audit_query(f.audit, &by_dataset, s_collect, &got), SB_OK);
    CHECK_EQ(got.n, 1);
    CHECK_EQ(got.seqs[0], 2);
    got.n = 0;
    CHECK_EQ(sbi_audit_query(f.audit, &by_agency, s_collect, &got), SB_OK);
    CHECK_EQ(got.n, 2);
    CHECK_EQ(got.seqs[1], 3);
    s_teardown(&f);
}

static int s_stop_at_two(const Sharebus__AuditRecord *record, void *arg)
{
    s_seqs_t *got = arg;
    got->seqs[got->n++] = record->seq;
    return got->n == 2;
}

TEST(test_query_stops_when_asked_and_skips_damage_with_a_code)
{
    fx_t f;
    s_setup(&f, 0, 0);
    CHECK_EQ(s_append_rows(&f, 1, 20), SB_OK);
    sbi_audit_filter_t all = {.kind = SHAREBUS__AUDIT_KIND__AUDIT_NONE};
    s_seqs_t got = {.n = 0};
    CHECK_EQ(sbi_audit_query(f.audit, &all, s_stop_at_two, &got), SB_OK);
    CHECK_EQ(got.n, 2);
    CHECK_EQ(sbi_tamper_flip(f.store, 4, 30), SB_OK);
    got.n = 0;
    CHECK_EQ(sbi_audit_query(f.audit, &all, s_collect, &got), SB_EMALFORMED);
    CHECK_EQ(got.n, 19);
    CHECK_EQ(sbi_tamper_delete(f.store, 6), SB_OK); /* its index entries stay */
    got.n = 0;
    sbi_audit_filter_t by_agency = {.agency = s_row(6).from};
    CHECK_EQ(sbi_audit_query(f.audit, &by_agency, s_collect, &got), SB_EMALFORMED);
    for (size_t i = 0; i < got.n; i++)
        CHECK(got.seqs[i] != 6 && got.seqs[i] != 4);
    s_teardown(&f);
}

TEST(test_kind_names_follow_the_enum)
{
    CHECK_STR(sbi_audit_kind_name(SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_ROUTED), "request-routed");
    CHECK_STR(sbi_audit_kind_name(SHAREBUS__AUDIT_KIND__AUDIT_EVENT_QUEUE_FULL),
              "event-queue-full");
    CHECK_STR(sbi_audit_kind_name((Sharebus__AuditKind)999), "unknown");
    CHECK_EQ(sbi_audit_kind_parse("consent-granted"), SHAREBUS__AUDIT_KIND__AUDIT_CONSENT_GRANTED);
    CHECK_EQ(sbi_audit_kind_parse("bogus"), SHAREBUS__AUDIT_KIND__AUDIT_NONE);
    CHECK_EQ(sbi_audit_kind_parse(NULL), SHAREBUS__AUDIT_KIND__AUDIT_NONE);
    for (int k = 1; k <= SHAREBUS__AUDIT_KIND__AUDIT_BROKER_STOPPED; k++)
        CHECK_EQ(sbi_audit_kind_parse(sbi_audit_kind_name((Sharebus__AuditKind)k)), k);
}

/* ------------------------------------------------------------- kill -9 */

/* The child appends batches forever and reports each committed head. */
static void s_crash_child(const char *dir, int out)
{
    char err[256];
    sbi_store_t *store = sbi_store_open(dir, 0, 0, 0, SBI_AUDIT_DBS, err, sizeof err);
    sbi_audit_t *audit = store ? sbi_audit_open(store, err, sizeof err) : NULL;
    if (!audit)
        _exit(3);
    for (uint64_t batch = 0;; batch++) {
        MDB_txn *txn;
        if (sbi_store_begin(store, true, &txn) != SB_OK)
            _exit(4);
        uint64_t n = 1 + batch % 37;
        for (uint64_t i = 0; i < n; i++) {
            s_record_t r;
            s_fill(&r, s_row(sbi_audit_head(audit, NULL) + i + 1));
            if (sbi_audit_append(audit, txn, &r.record) != SB_OK)
                _exit(5);
        }
        if (mdb_txn_commit(txn) != 0)
            _exit(6);
        sbi_audit_commit(audit);
        uint64_t head = sbi_audit_head(audit, NULL);
        if (write(out, &head, sizeof head) != sizeof head)
            _exit(7);
    }
}

/* The last complete head the child reported. */
static uint64_t s_reported(int in)
{
    uint64_t head = 0, value;
    ssize_t got;
    while ((got = read(in, &value, sizeof value)) == (ssize_t)sizeof value)
        head = value;
    return head;
}

TEST(test_kill_9_at_random_points_leaves_an_intact_log_whose_head_only_grew)
{
    fx_t f;
    s_setup(&f, 0, 0);
    s_close(&f);
    uint64_t head = 0;
    for (int round = 0; round < 8; round++) {
        int fds[2];
        CHECK_EQ(pipe(fds), 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            s_crash_child(f.dir, fds[1]);
        }
        close(fds[1]);
        usleep(5000 + randombytes_uniform(40000));
        CHECK_EQ(kill(pid, SIGKILL), 0);
        int status;
        CHECK_EQ(waitpid(pid, &status, 0), pid);
        CHECK(WIFSIGNALED(status)); /* not an early exit on error */
        uint64_t reported = s_reported(fds[0]);
        close(fds[0]);
        s_open(&f);
        uint64_t now = sbi_audit_head(f.audit, NULL);
        CHECK(now >= reported);
        CHECK(now >= head);
        s_expect_intact(&f, now);
        head = now;
        s_close(&f);
    }
    CHECK(head > 0);
    s_open(&f);
    s_teardown(&f);
}

int main(int argc, char **argv)
{
    sbi_init();
    sbi_log_setup("test-audit", SBI_LOG_ERROR);
    return RUN_TESTS();
}
