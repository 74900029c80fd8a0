/*  audit_verify.c - recompute the chain (audit_walk.c) and hold it against
    the checkpoints: every checkpoint (the log's own and those handed in,
    e.g. agencies' copies) must carry a valid signature and name a record
    that exists with the hash it signed, and no two may name different
    heads for one record. An operator who rewrites history and recomputes
    the chain cannot sign; one who holds the broker's key and signs the
    rewritten log again is caught by the agencies' copies of the originals.
    Then the indexes queries go through, against the records
    (audit_index.c).
*/
#include "audit_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    sbi_audit_t *audit;
    MDB_txn *txn;
    const sbi_audit_key_t *keys; /* a checkpoint holds under any of them */
    size_t n_keys;
    sbi_audit_decoder_t decoder;
    uint64_t last; /* the highest key in the log */
    sbi_audit_report_t *report;
    Sharebus__Checkpoint *const *extra; /* the checkpoints handed in */
    size_t n_extra;
    int *extra_sig; /* s_signature of each, computed once */
    bool rewritten; /* history was rewritten up to rewritten_seq... */
    uint64_t rewritten_seq;
    sbi_audit_fault_t rewritten_fault; /* ...as this fault of the report said */
} s_verifier_t;

const char *sbi_audit_fault_name(sbi_audit_fault_t fault)
{
    switch (fault) {
    case SBI_AUDIT_INTACT: return "intact";
    case SBI_AUDIT_ALTERED: return "altered record";
    case SBI_AUDIT_MISSING: return "missing record";
    case SBI_AUDIT_TRUNCATED: return "truncated log";
    case SBI_AUDIT_BAD_CHECKPOINT: return "bad checkpoint";
    case SBI_AUDIT_CONFLICT: return "conflicting checkpoints";
    case SBI_AUDIT_BAD_INDEX: return "bad index";
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

/* The hash stored with record `seq`, without reporting a fault. */
static bool s_log_hash(s_verifier_t *v, uint64_t seq, uint8_t hash[SBI_HASH_SIZE])
{
    uint8_t key_bytes[8];
    sbi_be64_put(key_bytes, seq);
    MDB_val key = {8, key_bytes}, val;
    Sharebus__AuditRecord *record;
    return seq > 0 && mdb_get(v->txn, v->audit->log, &key, &val) == 0 &&
           sbi_audit_entry_decode(&v->decoder, val.mv_data, val.mv_size, &record, hash) == SB_OK;
}

/* A checkpoint that holds: signed by a key good at its time, and naming
   the record the log has at its seq. */
static bool s_holds(s_verifier_t *v, const Sharebus__Checkpoint *cp, int signature)
{
    uint8_t hash[SBI_HASH_SIZE];
    return signature == SB_OK && cp->head_hash.len == SBI_HASH_SIZE &&
           s_log_hash(v, cp->seq, hash) && memcmp(hash, cp->head_hash.data, SBI_HASH_SIZE) == 0;
}

/* Reports a fault that means history was rewritten up to `seq`; the range
   that cannot be trusted is added once every checkpoint has been seen. */
__attribute__((format(printf, 4, 5))) static void
s_rewritten(s_verifier_t *v, sbi_audit_fault_t fault, uint64_t seq, const char *fmt, ...)
{
    char detail[sizeof v->report->detail];
    va_list args;
    va_start(args, fmt);
    vsnprintf(detail, sizeof detail, fmt, args);
    va_end(args);
    bool takes = v->report->fault == SBI_AUDIT_INTACT || seq < v->report->seq;
    sbi_audit_report_fault(v->report, fault, seq, "%s", detail);
    if (takes) {
        v->rewritten = seq > 0;
        v->rewritten_seq = seq;
        v->rewritten_fault = fault;
    }
}

static void s_check_checkpoint(s_verifier_t *v, const Sharebus__Checkpoint *cp, const char *origin,
                               int rc)
{
    char when[32];
    sbi_time_format(cp->time_ms, when, sizeof when);
    v->report->checkpoints++;
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
        s_rewritten(v, SBI_AUDIT_ALTERED, cp->seq,
                    "record %" PRIu64
                    " is not the one the %s checkpoint of %s signed: history was rewritten",
                    cp->seq, origin, when);
}

/* The stored checkpoint of `seq`, or NULL. */
static Sharebus__Checkpoint *s_stored_at(s_verifier_t *v, uint64_t seq)
{
    uint8_t key_bytes[8];
    sbi_be64_put(key_bytes, seq);
    MDB_val key = {8, key_bytes}, val;
    Sharebus__Checkpoint *cp = NULL;
    if (mdb_get(v->txn, v->audit->checkpoints, &key, &val) == 0 &&
        sbi_checkpoint_decode(val.mv_data, val.mv_size, &cp) == SB_OK && cp->seq != seq) {
        sharebus__checkpoint__free_unpacked(cp, NULL);
        cp = NULL;
    }
    return cp;
}

static void s_conflict(s_verifier_t *v, const Sharebus__Checkpoint *a, const char *a_origin,
                       const Sharebus__Checkpoint *b)
{
    char a_when[32], b_when[32], held[64];
    sbi_time_format(a->time_ms, a_when, sizeof a_when);
    sbi_time_format(b->time_ms, b_when, sizeof b_when);
    uint8_t hash[SBI_HASH_SIZE];
    bool in_log = s_log_hash(v, a->seq, hash);
    if (in_log && memcmp(hash, a->head_hash.data, SBI_HASH_SIZE) == 0)
        snprintf(held, sizeof held, "the %s one of %s", a_origin, a_when);
    else if (in_log && memcmp(hash, b->head_hash.data, SBI_HASH_SIZE) == 0)
        snprintf(held, sizeof held, "the given one of %s", b_when);
    else
        snprintf(held, sizeof held, "neither");
    s_rewritten(v, SBI_AUDIT_CONFLICT, a->seq,
                "the %s checkpoint of %s and the given one of %s name different heads for "
                "record %" PRIu64 " (%s); the log has %s",
                a_origin, a_when, b_when, a->seq,
                v->n_keys ? "both signed by the broker's key: it signed two histories"
                          : "signatures not checked",
                held);
}

typedef struct {
    uint64_t seq;
    size_t i;
} s_order_t;

static int s_by_seq(const void *a, const void *b)
{
    const s_order_t *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq ? 1 : x->i < y->i ? -1 : x->i > y->i;
}

/* Checkpoints handed in, by seq: each whose signature holds against the
   stored one of its seq (when its signature holds too: checked only when
   they differ) and against the first given one of its seq. One conflict
   per seq is enough. */
static void s_check_conflicts(s_verifier_t *v)
{
    s_order_t *order = calloc(v->n_extra + 1, sizeof *order);
    assert(order);
    for (size_t i = 0; i < v->n_extra; i++)
        order[i] = (s_order_t){v->extra[i]->seq, i};
    qsort(order, v->n_extra, sizeof *order, s_by_seq);
    for (size_t at = 0, end; at < v->n_extra; at = end) {
        for (end = at; end < v->n_extra && order[end].seq == order[at].seq; end++)
            ;
        Sharebus__Checkpoint *stored = s_stored_at(v, order[at].seq);
        const Sharebus__Checkpoint *first = NULL;
        for (size_t k = at; k < end; k++) {
            const Sharebus__Checkpoint *cp = v->extra[order[k].i];
            if (v->extra_sig[order[k].i] != SB_OK)
                continue;
            if (stored && memcmp(stored->head_hash.data, cp->head_hash.data, SBI_HASH_SIZE) != 0) {
                if (s_signature(v, stored) == SB_OK) {
                    s_conflict(v, stored, "stored", cp);
                    break;
                }
                sharebus__checkpoint__free_unpacked(stored, NULL); /* a bad checkpoint */
                stored = NULL;
            }
            if (!first)
                first = cp;
            else if (memcmp(first->head_hash.data, cp->head_hash.data, SBI_HASH_SIZE) != 0) {
                s_conflict(v, first, "given", cp);
                break;
            }
        }
        if (stored)
            sharebus__checkpoint__free_unpacked(stored, NULL);
    }
    free(order);
}

/* The first record after the last checkpoint below `seq` that holds; with
   `stored` false, counting only those handed in. */
static uint64_t s_untrusted_from(s_verifier_t *v, uint64_t seq, bool stored)
{
    uint64_t held = 0;
    MDB_cursor *cursor;
    if (stored && mdb_cursor_open(v->txn, v->audit->checkpoints, &cursor) == 0) {
        uint8_t key_bytes[8];
        sbi_be64_put(key_bytes, seq);
        MDB_val key = {8, key_bytes}, val;
        int rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE);
        rc = mdb_cursor_get(cursor, &key, &val, rc == 0 ? MDB_PREV : MDB_LAST);
        for (; rc == 0 && held == 0; rc = mdb_cursor_get(cursor, &key, &val, MDB_PREV)) {
            Sharebus__Checkpoint *cp;
            if (sbi_checkpoint_decode(val.mv_data, val.mv_size, &cp) != SB_OK)
                continue;
            if (cp->seq < seq && s_holds(v, cp, s_signature(v, cp)))
                held = cp->seq;
            sharebus__checkpoint__free_unpacked(cp, NULL);
        }
        mdb_cursor_close(cursor);
    }
    for (size_t i = 0; i < v->n_extra; i++) {
        const Sharebus__Checkpoint *cp = v->extra[i];
        if (cp->seq > held && cp->seq < seq && s_holds(v, cp, v->extra_sig[i]))
            held = cp->seq;
    }
    return held + 1;
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
        s_check_checkpoint(v, cp, "stored", s_signature(v, cp));
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
    s_verifier_t v = {.audit = self,
                      .keys = keys,
                      .n_keys = n_keys,
                      .report = report,
                      .extra = extra,
                      .n_extra = n_extra};
    int rc = sbi_store_begin(self->store, false, &v.txn);
    if (rc != SB_OK) {
        snprintf(report->detail, sizeof report->detail, "cannot read the store: %s",
                 sb_strerror(rc));
        return rc;
    }
    sbi_audit_decoder_init(&v.decoder);
    v.extra_sig = calloc(n_extra + 1, sizeof *v.extra_sig);
    assert(v.extra_sig);
    for (size_t i = 0; i < n_extra; i++)
        v.extra_sig[i] = s_signature(&v, extra[i]);
    sbi_audit_ixcheck_t *ix = sbi_audit_ixcheck_new(self, v.txn);
    sbi_audit_report_t index_report = {.fault = SBI_AUDIT_INTACT};
    rc = sbi_audit_walk(self, v.txn, ix, report, &v.last);
    if (rc == SB_OK && report->fault == SBI_AUDIT_INTACT)
        rc = sbi_audit_ixcheck_finish(ix, v.txn, &index_report);
    sbi_audit_ixcheck_destroy(&ix);
    if (rc == SB_OK) {
        s_check_meta(&v);
        s_check_conflicts(&v); /* first: it names the fault best at its seq */
        rc = s_check_stored(&v);
    }
    for (size_t i = 0; rc == SB_OK && i < n_extra; i++)
        s_check_checkpoint(&v, extra[i], "given", v.extra_sig[i]);
    if (rc == SB_OK && v.rewritten && report->seq == v.rewritten_seq &&
        report->fault == v.rewritten_fault) {
        /* Once the broker's key signed two histories, checkpoints in the
           operator's store prove nothing: only copies handed in count. */
        bool conflict = report->fault == SBI_AUDIT_CONFLICT;
        report->untrusted_from = s_untrusted_from(&v, report->seq, !conflict);
        const char *which = conflict ? "given checkpoint" : "checkpoint";
        const char *why =
            conflict ? "; stored ones do not count once the key signed two histories" : "";
        size_t len = strlen(report->detail);
        if (report->untrusted_from > 1)
            snprintf(report->detail + len, sizeof report->detail - len,
                     "; records %" PRIu64 " to %" PRIu64
                     " cannot be trusted (the last %s that holds is at seq %" PRIu64 "%s)",
                     report->untrusted_from, report->seq, which, report->untrusted_from - 1, why);
        else
            snprintf(report->detail + len, sizeof report->detail - len,
                     "; records 1 to %" PRIu64 " cannot be trusted (no %s before seq %" PRIu64
                     " holds%s)",
                     report->seq, which, report->seq, why);
    }
    /* The log and its checkpoints come first: the indexes derive from it. */
    if (rc == SB_OK && report->fault == SBI_AUDIT_INTACT && index_report.fault) {
        report->fault = index_report.fault;
        report->seq = index_report.seq;
        report->index = index_report.index;
        memcpy(report->detail, index_report.detail, sizeof report->detail);
    }
    free(v.extra_sig);
    sbi_audit_decoder_clear(&v.decoder);
    mdb_txn_abort(v.txn);
    if (rc != SB_OK) {
        snprintf(report->detail, sizeof report->detail, "cannot read the store: %s",
                 sb_strerror(rc));
        return rc;
    }
    return report->fault != SBI_AUDIT_INTACT ? SB_EBADSIG : SB_OK;
}
