/*  audit_verify.c - recompute the chain (audit_walk.c) and hold it against
    the checkpoints: every checkpoint (the log's own and those handed in,
    e.g. agencies' copies) must carry a valid signature and name a record
    that exists with the hash it signed. An operator who rewrites history
    and recomputes the chain cannot sign.
*/
#include "audit_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    sbi_audit_t *audit;
    MDB_txn *txn;
    const sbi_audit_key_t *keys; /* a checkpoint holds under any of them */
    size_t n_keys;
    sbi_audit_decoder_t decoder;
    uint64_t last; /* the highest key in the log */
    sbi_audit_report_t *report;
} s_verifier_t;

const char *sbi_audit_fault_name(sbi_audit_fault_t fault)
{
    switch (fault) {
    case SBI_AUDIT_INTACT: return "intact";
    case SBI_AUDIT_ALTERED: return "altered record";
    case SBI_AUDIT_MISSING: return "missing record";
    case SBI_AUDIT_TRUNCATED: return "truncated log";
    case SBI_AUDIT_BAD_CHECKPOINT: return "bad checkpoint";
    }
    return "unknown fault";
}

/* The hash stored with record `seq`, or a fault. */
static bool s_hash_at(s_verifier_t *v, uint64_t seq, uint8_t hash[SBI_HASH_SIZE])
{
    uint8_t key_bytes[8];
    sbi_be64_put(key_bytes, seq);
    MDB_val key = {8, key_bytes}, val;
    if (mdb_get(v->txn, v->audit->log, &key, &val) != 0) {
        sbi_audit_report_fault(v->report, SBI_AUDIT_MISSING, seq, "record %" PRIu64 " is absent",
                               seq);
        return false;
    }
    Sharebus__AuditRecord *record;
    if (sbi_audit_entry_decode(&v->decoder, val.mv_data, val.mv_size, &record, hash) != SB_OK) {
        sbi_audit_report_fault(v->report, SBI_AUDIT_ALTERED, seq, "%s", v->decoder.why);
        return false;
    }
    return true;
}

/* SB_OK when a key good at the checkpoint's time signed it; SB_EEXPIRED
   when only a key outside its time did. */
static int s_signature(s_verifier_t *v, const Sharebus__Checkpoint *cp)
{
    if (cp->head_hash.len != SBI_HASH_SIZE)
        return SB_EMALFORMED;
    int rc = SB_OK;
    for (size_t i = 0; i < v->n_keys; i++) {
        const sbi_audit_key_t *key = &v->keys[i];
        int one = sbi_checkpoint_verify(cp, key->sign_public);
        if (one == SB_EMALFORMED)
            return one;
        bool in_time =
            cp->time_ms >= key->from_ms && (key->until_ms == 0 || cp->time_ms < key->until_ms);
        if (one == SB_OK && in_time)
            return SB_OK;
        rc = one == SB_OK || rc == SB_EEXPIRED ? SB_EEXPIRED : one;
    }
    return rc;
}

static void s_check_checkpoint(s_verifier_t *v, const Sharebus__Checkpoint *cp, const char *origin)
{
    char when[32];
    sbi_time_format(cp->time_ms, when, sizeof when);
    v->report->checkpoints++;
    int rc = s_signature(v, cp);
    if (rc != SB_OK) {
        sbi_audit_report_fault(v->report, SBI_AUDIT_BAD_CHECKPOINT, cp->seq,
                               "%s checkpoint of %s %s", origin, when,
                               rc == SB_EBADSIG    ? "is not signed by the broker's key"
                               : rc == SB_EEXPIRED ? "is signed by a broker key that was not "
                                                     "valid then (revoked or expired)"
                                                   : "is malformed");
        return;
    }
    static const uint8_t zeros[SBI_HASH_SIZE];
    if (cp->seq == 0) {
        if (memcmp(cp->head_hash.data, zeros, SBI_HASH_SIZE) != 0)
            sbi_audit_report_fault(v->report, SBI_AUDIT_BAD_CHECKPOINT, 0,
                                   "%s checkpoint of %s names seq 0 with a hash", origin, when);
        return;
    }
    if (cp->seq > v->last) {
        sbi_audit_report_fault(v->report, SBI_AUDIT_TRUNCATED, v->last + 1,
                               "the log ends at record %" PRIu64
                               " but the %s checkpoint of %s covers record %" PRIu64,
                               v->last, origin, when, cp->seq);
        return;
    }
    uint8_t hash[SBI_HASH_SIZE];
    if (s_hash_at(v, cp->seq, hash) && memcmp(hash, cp->head_hash.data, SBI_HASH_SIZE) != 0)
        sbi_audit_report_fault(
            v->report, SBI_AUDIT_ALTERED, cp->seq,
            "record %" PRIu64
            " is not the one the %s checkpoint of %s signed: history was rewritten",
            cp->seq, origin, when);
}

static int s_check_stored(s_verifier_t *v)
{
    MDB_cursor *cursor;
    int rc = mdb_cursor_open(v->txn, v->audit->checkpoints, &cursor);
    if (rc != 0)
        return sbi_store_code(rc);
    MDB_val key, val;
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        uint64_t seq = key.mv_size == 8 ? sbi_be64_get(key.mv_data) : 0;
        Sharebus__Checkpoint *cp;
        if (sbi_checkpoint_decode(val.mv_data, val.mv_size, &cp) != SB_OK || cp->seq != seq) {
            if (cp)
                sharebus__checkpoint__free_unpacked(cp, NULL);
            v->report->checkpoints++;
            sbi_audit_report_fault(v->report, SBI_AUDIT_BAD_CHECKPOINT, seq,
                                   "stored checkpoint %" PRIu64 " is malformed", seq);
            continue;
        }
        s_check_checkpoint(v, cp, "stored");
        sharebus__checkpoint__free_unpacked(cp, NULL);
    }
    mdb_cursor_close(cursor);
    return rc == MDB_NOTFOUND ? SB_OK : sbi_store_code(rc);
}

/* The meta head is written with every append: a log that ends before it
   lost its tail (a careful forger fixes it too; checkpoints catch that). */
static void s_check_meta(s_verifier_t *v)
{
    uint64_t head = sbi_audit_meta_get(v->audit, v->txn, "head");
    if (head > v->last)
        sbi_audit_report_fault(v->report, SBI_AUDIT_TRUNCATED, v->last + 1,
                               "the log ends at record %" PRIu64 " but its head was %" PRIu64,
                               v->last, head);
}

int sbi_audit_verify(sbi_audit_t *self, const uint8_t sign_public[32],
                     Sharebus__Checkpoint *const *extra, size_t n_extra, sbi_audit_report_t *report)
{
    sbi_audit_key_t key = {.from_ms = 0};
    if (sign_public)
        memcpy(key.sign_public, sign_public, sizeof key.sign_public);
    return sbi_audit_verify_keys(self, &key, sign_public ? 1 : 0, extra, n_extra, report);
}

int sbi_audit_verify_keys(sbi_audit_t *self, const sbi_audit_key_t *keys, size_t n_keys,
                          Sharebus__Checkpoint *const *extra, size_t n_extra,
                          sbi_audit_report_t *report)
{
    assert(self && report && (extra || !n_extra) && (keys || !n_keys));
    memset(report, 0, sizeof *report);
    s_verifier_t v = {.audit = self, .keys = keys, .n_keys = n_keys, .report = report};
    int rc = sbi_store_begin(self->store, false, &v.txn);
    if (rc != SB_OK) {
        snprintf(report->detail, sizeof report->detail, "cannot read the store: %s",
                 sb_strerror(rc));
        return rc;
    }
    sbi_audit_decoder_init(&v.decoder);
    rc = sbi_audit_walk(self, v.txn, report, &v.last);
    if (rc == SB_OK) {
        s_check_meta(&v);
        rc = s_check_stored(&v);
    }
    for (size_t i = 0; rc == SB_OK && i < n_extra; i++)
        s_check_checkpoint(&v, extra[i], "given");
    sbi_audit_decoder_clear(&v.decoder);
    mdb_txn_abort(v.txn);
    if (rc != SB_OK) {
        snprintf(report->detail, sizeof report->detail, "cannot read the store: %s",
                 sb_strerror(rc));
        return rc;
    }
    return report->fault != SBI_AUDIT_INTACT ? SB_EBADSIG : SB_OK;
}
