/*  audit_walk.c - recompute the hash chain, fast.

    The walk trusts nothing in the store: every entry is decoded with a
    bounded allocator, its hash recomputed, its seq checked against its key
    and its prev_hash against the previous record's hash. Hashing and
    decoding are the cost, and each record's hash depends only on its own
    bytes, so a long log is cut into contiguous ranges walked by one thread
    each (each in its own read transaction: records up to the last one seen
    never change in an append-only log); the link between two ranges is
    checked when they are joined.
*/
#include "audit_int.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

uint64_t sbi_audit_parallel_min = 65536;

typedef struct {
    sbi_audit_t *audit;
    MDB_txn *txn; /* read-only; a thread's own, or the caller's */
    bool own_txn;
    bool threaded;
    uint64_t first, last;      /* this range: [first, last] */
    sbi_audit_report_t report; /* its faults, records and last record */
    bool linked;               /* first_prev is set: check it on joining */
    uint8_t first_prev[SBI_HASH_SIZE];
    sbi_audit_ixrange_t *ix; /* the index check's share, or NULL */
    int rc;
    pthread_t thread;
} s_range_t;

void sbi_audit_report_fault(sbi_audit_report_t *report, sbi_audit_fault_t fault, uint64_t seq,
                            const char *fmt, ...)
{
    if (report->fault != SBI_AUDIT_INTACT && report->seq <= seq)
        return;
    report->fault = fault;
    report->seq = seq;
    va_list args;
    va_start(args, fmt);
    vsnprintf(report->detail, sizeof report->detail, fmt, args);
    va_end(args);
}

/* The chain checks of one decoded record; the first of a range (other than
   the log's first) keeps its prev_hash for the join. */
static bool s_check_record(s_range_t *r, const Sharebus__AuditRecord *record, uint64_t seq,
                           const uint8_t prev[SBI_HASH_SIZE])
{
    sbi_audit_report_t *report = &r->report;
    if (record->seq != seq) {
        sbi_audit_report_fault(report, SBI_AUDIT_ALTERED, seq,
                               "the record says it is %" PRIu64 " but is stored as %" PRIu64,
                               record->seq, seq);
        return false;
    }
    if (record->prev_hash.len != SBI_HASH_SIZE) {
        sbi_audit_report_fault(report, SBI_AUDIT_ALTERED, seq, "its prev_hash is not 32 bytes");
        return false;
    }
    if (seq == r->first && seq != 1) {
        memcpy(r->first_prev, record->prev_hash.data, SBI_HASH_SIZE);
        r->linked = true;
    } else if (memcmp(record->prev_hash.data, prev, SBI_HASH_SIZE) != 0) {
        sbi_audit_report_fault(report, SBI_AUDIT_ALTERED, seq,
                               "the record does not chain to record %" PRIu64
                               " (one of the two was rewritten)",
                               seq - 1);
        return false;
    }
    return true;
}

/* One entry of the walk; false when it breaks the chain. */
static bool s_check_entry(s_range_t *r, sbi_audit_decoder_t *decoder, const MDB_val *key,
                          const MDB_val *val, uint64_t expected, uint8_t prev[SBI_HASH_SIZE])
{
    sbi_audit_report_t *report = &r->report;
    if (key->mv_size != 8) {
        sbi_audit_report_fault(report, SBI_AUDIT_ALTERED, expected,
                               "a key after record %" PRIu64 " is not a sequence number",
                               expected - 1);
        return false;
    }
    uint64_t seq = sbi_be64_get(key->mv_data);
    if (seq < expected) {
        sbi_audit_report_fault(report, SBI_AUDIT_ALTERED, seq,
                               "record %" PRIu64 " has an invalid key", seq);
        return false;
    }
    if (seq > expected) {
        sbi_audit_report_fault(report, SBI_AUDIT_MISSING, expected,
                               "record %" PRIu64 " is absent; the next stored record is %" PRIu64,
                               expected, seq);
        return false;
    }
    Sharebus__AuditRecord *record;
    uint8_t hash[SBI_HASH_SIZE];
    if (sbi_audit_entry_decode(decoder, val->mv_data, val->mv_size, &record, hash) != SB_OK) {
        sbi_audit_report_fault(report, SBI_AUDIT_ALTERED, seq, "%s", decoder->why);
        return false;
    }
    if (!s_check_record(r, record, seq, prev))
        return false;
    if (r->ix)
        sbi_audit_ixrange_add(r->ix, record);
    memcpy(prev, hash, SBI_HASH_SIZE);
    report->records++;
    report->head_seq = seq;
    memcpy(report->head_hash, hash, SBI_HASH_SIZE);
    return true;
}

static void s_walk_cursor(s_range_t *r, MDB_cursor *cursor)
{
    sbi_audit_decoder_t decoder;
    sbi_audit_decoder_init(&decoder);
    uint8_t first_be[8], prev[SBI_HASH_SIZE] = {0};
    sbi_be64_put(first_be, r->first);
    MDB_val key = {8, first_be}, val;
    uint64_t expected = r->first;
    int rc;
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT), expected++) {
        if (key.mv_size == 8 && sbi_be64_get(key.mv_data) > r->last && expected > r->last)
            break;
        if (!s_check_entry(r, &decoder, &key, &val, expected, prev))
            break;
    }
    sbi_audit_decoder_clear(&decoder);
    if (rc != 0 && rc != MDB_NOTFOUND)
        sbi_audit_report_fault(&r->report, SBI_AUDIT_ALTERED, expected,
                               "the store cannot be read past record %" PRIu64 ": %s", expected - 1,
                               mdb_strerror(rc));
    else if (rc == MDB_NOTFOUND && expected <= r->last && r->last != UINT64_MAX)
        sbi_audit_report_fault(&r->report, SBI_AUDIT_MISSING, expected,
                               "record %" PRIu64 " is absent", expected);
}

static void *s_walk_range(void *arg)
{
    s_range_t *r = arg;
    MDB_cursor *cursor;
    r->rc = sbi_store_code(mdb_cursor_open(r->txn, r->audit->log, &cursor));
    if (r->rc == SB_OK && r->ix)
        sbi_audit_ixrange_begin(r->ix, r->txn);
    if (r->rc == SB_OK) {
        s_walk_cursor(r, cursor);
        mdb_cursor_close(cursor);
    }
    if (r->rc == SB_OK && r->ix && r->report.fault == SBI_AUDIT_INTACT)
        sbi_audit_ixrange_read(r->ix, r->txn, r->own_txn);
    return NULL;
}

/* The highest sequence number stored, and how many ranges to walk the log
   in: one, to the very end, when keys that are not sequence numbers follow
   it (the walk then names them). */
static unsigned s_plan(sbi_audit_t *self, MDB_txn *txn, uint64_t *last_p, uint64_t *end_p)
{
    MDB_cursor *cursor;
    MDB_val key, val;
    *last_p = *end_p = 0;
    if (mdb_cursor_open(txn, self->log, &cursor) != 0)
        return 1;
    int rc = mdb_cursor_get(cursor, &key, &val, MDB_LAST);
    for (; rc == 0 && key.mv_size != 8; rc = mdb_cursor_get(cursor, &key, &val, MDB_PREV))
        *end_p = UINT64_MAX;
    if (rc == 0)
        *last_p = sbi_be64_get(key.mv_data);
    mdb_cursor_close(cursor);
    if (*end_p == 0)
        *end_p = *last_p;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (*last_p < sbi_audit_parallel_min || *end_p == UINT64_MAX || cpus < 2)
        return 1;
    return cpus > SBI_AUDIT_RANGES_MAX ? SBI_AUDIT_RANGES_MAX : (unsigned)cpus;
}

/* Joins the ranges' reports into `report`, checking each link. */
static void s_join(s_range_t *ranges, unsigned n, sbi_audit_report_t *report)
{
    for (unsigned k = 0; k < n; k++) {
        sbi_audit_report_t *part = &ranges[k].report;
        if (part->fault != SBI_AUDIT_INTACT)
            sbi_audit_report_fault(report, part->fault, part->seq, "%s", part->detail);
        sbi_audit_report_t *before = k ? &ranges[k - 1].report : NULL;
        if (before && before->fault == SBI_AUDIT_INTACT && ranges[k].linked &&
            memcmp(before->head_hash, ranges[k].first_prev, SBI_HASH_SIZE) != 0)
            sbi_audit_report_fault(report, SBI_AUDIT_ALTERED, ranges[k].first,
                                   "the record does not chain to record %" PRIu64
                                   " (one of the two was rewritten)",
                                   ranges[k].first - 1);
        report->records += part->records;
        if (part->records) {
            report->head_seq = part->head_seq;
            memcpy(report->head_hash, part->head_hash, SBI_HASH_SIZE);
        }
    }
}

/* Each range's transaction. They are begun here, in the caller's thread
   while its own is open, and never through sbi_store_begin: following a map
   another process grew remaps the store under every open transaction of
   this process. A range that cannot have its own (MDB_MAP_RESIZED, no
   reader slot) is walked with the caller's, in the caller's thread. */
static void s_begin_ranges(sbi_audit_t *self, MDB_txn *txn, s_range_t *ranges, unsigned n)
{
    MDB_env *env = sbi_store_env(self->store);
    for (unsigned k = 0; k < n; k++) {
        ranges[k].txn = txn;
        if (k > 0 && mdb_txn_begin(env, NULL, MDB_RDONLY, &ranges[k].txn) == 0)
            ranges[k].own_txn = true;
        else
            ranges[k].txn = txn;
    }
}

int sbi_audit_walk(sbi_audit_t *self, MDB_txn *txn, sbi_audit_ixcheck_t *ix,
                   sbi_audit_report_t *report, uint64_t *last_p)
{
    uint64_t last;
    unsigned n = s_plan(self, txn, last_p, &last);
    s_range_t ranges[SBI_AUDIT_RANGES_MAX];
    memset(ranges, 0, sizeof ranges);
    if (ix)
        sbi_audit_ixcheck_plan(ix, *last_p, n);
    for (unsigned k = 0; k < n; k++) {
        ranges[k].audit = self;
        ranges[k].first = k == 0 ? 1 : ranges[k - 1].last + 1;
        ranges[k].last = k + 1 == n ? last : last / n * (k + 1);
        ranges[k].ix = ix ? sbi_audit_ixcheck_range(ix, k, ranges[k].first) : NULL;
    }
    s_begin_ranges(self, txn, ranges, n);
    for (unsigned k = 1; k < n; k++)
        if (ranges[k].own_txn &&
            pthread_create(&ranges[k].thread, NULL, s_walk_range, &ranges[k]) != 0)
            ranges[k].own_txn = false; /* walk it here, in its own transaction */
        else if (ranges[k].own_txn)
            ranges[k].threaded = true;
    for (unsigned k = 0; k < n; k++)
        if (!ranges[k].threaded)
            s_walk_range(&ranges[k]);
    int rc = SB_OK;
    for (unsigned k = 0; k < n; k++) {
        if (ranges[k].threaded)
            pthread_join(ranges[k].thread, NULL);
        if (ranges[k].txn != txn)
            mdb_txn_abort(ranges[k].txn);
        if (ranges[k].rc != SB_OK)
            rc = ranges[k].rc;
    }
    if (rc == SB_OK)
        s_join(ranges, n, report);
    return rc;
}
