/*  audit_query.c - find records through the indexes.

    Plans, in order of preference: the smallest of the subject, agency and
    dataset indexes the filter names (their duplicates are sequence numbers,
    so they come in sequence order); otherwise a scan of the log itself from
    the first record the time index places at or after `since`. Every other
    filter is applied to the decoded record.

    The time index is kept in sequence order: its key is the record's time,
    raised to the previous key when the clock stepped back, and meta
    "time-slack" is the largest such raise. So the first record with index
    time >= since is where a window starts, and once a record's own time
    reaches until + slack no later record can fall inside the window.
*/
#include "audit_int.h"

#include <inttypes.h>
#include <string.h>

typedef int (*s_each_fn)(const Sharebus__AuditRecord *record, const uint8_t hash[SBI_HASH_SIZE],
                         void *arg);

typedef struct {
    sbi_audit_t *audit;
    const sbi_audit_filter_t *filter;
    MDB_txn *txn;
    sbi_audit_decoder_t decoder;
    uint64_t stop_time; /* a record at or past this ends the query */
    size_t matched;
    int result; /* SB_OK, or SB_EMALFORMED after damage */
    s_each_fn each;
    void *arg;
} s_query_t;

static bool s_same(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static bool s_matches(const sbi_audit_filter_t *f, const Sharebus__AuditRecord *r)
{
    if (f->subject_ref && (r->subject_ref.len != SBI_HASH_SIZE ||
                           memcmp(r->subject_ref.data, f->subject_ref, SBI_HASH_SIZE) != 0))
        return false;
    if (f->agency && !s_same(r->from, f->agency) && !s_same(r->to, f->agency))
        return false;
    if (f->dataset && !s_same(r->dataset, f->dataset))
        return false;
    if (f->purpose && !s_same(r->purpose, f->purpose))
        return false;
    if (f->kind != SHAREBUS__AUDIT_KIND__AUDIT_NONE && r->kind != f->kind)
        return false;
    if (r->time_ms < f->since_ms || (f->until_ms && r->time_ms >= f->until_ms))
        return false;
    return true;
}

/* Decodes, filters and hands on one entry. True when the query is over. */
static bool s_visit(s_query_t *q, uint64_t seq, const MDB_val *val)
{
    Sharebus__AuditRecord *record;
    uint8_t hash[SBI_HASH_SIZE];
    if (sbi_audit_entry_decode(&q->decoder, val->mv_data, val->mv_size, &record, hash) != SB_OK ||
        record->seq != seq) {
        sbi_warning("audit record %" PRIu64 " is damaged (%s): skipped; run sharebus-audit verify",
                    seq, q->decoder.why ? q->decoder.why : "wrong seq");
        q->result = SB_EMALFORMED;
        return false;
    }
    if (record->time_ms >= q->stop_time)
        return true;
    if (!s_matches(q->filter, record))
        return false;
    q->matched++;
    if (q->each(record, hash, q->arg))
        return true;
    return q->filter->limit && q->matched >= q->filter->limit;
}

/* The first seq a query can match: after after_seq, and at the first record
   of the time window. 0 when nothing can. */
static uint64_t s_start(s_query_t *q)
{
    uint64_t start = q->filter->after_seq + 1;
    if (!q->filter->since_ms || start == 0)
        return start;
    MDB_cursor *cursor;
    if (mdb_cursor_open(q->txn, q->audit->time, &cursor) != 0)
        return start;
    uint8_t since[8];
    sbi_be64_put(since, q->filter->since_ms);
    MDB_val key = {8, since}, val;
    uint64_t first = 0;
    if (mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE) == 0 && val.mv_size == 8)
        first = sbi_be64_get(val.mv_data);
    mdb_cursor_close(cursor);
    return first == 0 ? 0 : first > start ? first : start;
}

static void s_scan_log(s_query_t *q, uint64_t start)
{
    MDB_cursor *cursor;
    int rc = mdb_cursor_open(q->txn, q->audit->log, &cursor);
    if (rc != 0) {
        q->result = sbi_store_code(rc);
        return;
    }
    uint8_t start_be[8];
    sbi_be64_put(start_be, start);
    MDB_val key = {8, start_be}, val;
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT))
        if (key.mv_size == 8 && s_visit(q, sbi_be64_get(key.mv_data), &val))
            break;
    if (rc != 0 && rc != MDB_NOTFOUND)
        q->result = sbi_store_code(rc);
    mdb_cursor_close(cursor);
}

/* Positions a cursor on `name` in index `dbi` and counts its entries. */
static size_t s_index_open(s_query_t *q, MDB_dbi dbi, const void *name, size_t size,
                           MDB_cursor **cursor_p)
{
    *cursor_p = NULL;
    if (size > SBI_AUDIT_KEY_MAX)
        size = SBI_AUDIT_KEY_MAX;
    MDB_val key = {size, (void *)name}, val;
    size_t count = 0;
    if (size == 0 || mdb_cursor_open(q->txn, dbi, cursor_p) != 0)
        return 0;
    if (mdb_cursor_get(*cursor_p, &key, &val, MDB_SET) != 0 ||
        mdb_cursor_count(*cursor_p, &count) != 0)
        count = 0;
    return count;
}

/* The most selective index the filter names (subject first on a tie); false
   when the filter names none. *cursor_p is NULL when a named key has no
   entries at all: nothing can match. */
static bool s_pick_index(s_query_t *q, MDB_cursor **cursor_p)
{
    const sbi_audit_filter_t *f = q->filter;
    struct {
        MDB_dbi dbi;
        const void *key;
        size_t size;
    } plans[] = {
        {q->audit->subject, f->subject_ref, SBI_HASH_SIZE},
        {q->audit->agency, f->agency, f->agency ? strlen(f->agency) : 0},
        {q->audit->dataset, f->dataset, f->dataset ? strlen(f->dataset) : 0},
    };
    MDB_cursor *best = NULL;
    size_t best_count = 0;
    bool named = false;
    for (size_t i = 0; i < sizeof plans / sizeof plans[0]; i++) {
        if (!plans[i].key)
            continue;
        MDB_cursor *cursor;
        size_t count = s_index_open(q, plans[i].dbi, plans[i].key, plans[i].size, &cursor);
        if (!named || count < best_count) {
            if (best)
                mdb_cursor_close(best);
            best = cursor;
            best_count = count;
        } else if (cursor)
            mdb_cursor_close(cursor);
        named = true;
    }
    if (best && best_count == 0) {
        mdb_cursor_close(best);
        best = NULL;
    }
    *cursor_p = best;
    return named;
}

static void s_walk_index(s_query_t *q, MDB_cursor *index, uint64_t start)
{
    MDB_val key, val;
    uint8_t start_be[8];
    sbi_be64_put(start_be, start);
    MDB_val from = {8, start_be};
    int rc = mdb_cursor_get(index, &key, &val, MDB_GET_CURRENT);
    if (rc == 0)
        rc = mdb_cursor_get(index, &key, &from, MDB_GET_BOTH_RANGE);
    for (val = from; rc == 0; rc = mdb_cursor_get(index, &key, &val, MDB_NEXT_DUP)) {
        if (val.mv_size != 8)
            continue;
        MDB_val log_key = val, entry;
        uint64_t seq = sbi_be64_get(val.mv_data);
        int grc = mdb_get(q->txn, q->audit->log, &log_key, &entry);
        if (grc == MDB_NOTFOUND) {
            sbi_warning("the index names audit record %" PRIu64
                        " but it is absent; run sharebus-audit verify",
                        seq);
            q->result = SB_EMALFORMED;
            continue;
        }
        if (grc != 0) {
            q->result = sbi_store_code(grc);
            return;
        }
        if (s_visit(q, seq, &entry))
            return;
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        q->result = sbi_store_code(rc);
}

int sbi_audit_query_entries(sbi_audit_t *self, const sbi_audit_filter_t *filter, s_each_fn each,
                            void *arg)
{
    assert(self && filter && each);
    s_query_t q = {.audit = self, .filter = filter, .each = each, .arg = arg};
    int rc = sbi_store_begin(self->store, false, &q.txn);
    if (rc != SB_OK)
        return rc;
    sbi_audit_decoder_init(&q.decoder);
    q.stop_time = UINT64_MAX;
    if (filter->until_ms) {
        uint64_t slack = sbi_audit_meta_get(self, q.txn, "time-slack");
        q.stop_time = filter->until_ms > UINT64_MAX - slack ? UINT64_MAX : filter->until_ms + slack;
    }
    uint64_t start = s_start(&q); /* 0: nothing at or after `since` */
    MDB_cursor *index = NULL;
    if (start && s_pick_index(&q, &index)) {
        if (index) {
            s_walk_index(&q, index, start);
            mdb_cursor_close(index);
        }
    } else if (start)
        s_scan_log(&q, start);
    sbi_audit_decoder_clear(&q.decoder);
    mdb_txn_abort(q.txn);
    return q.result;
}

typedef struct {
    int (*each)(const Sharebus__AuditRecord *record, void *arg);
    void *arg;
} s_plain_t;

static int s_plain(const Sharebus__AuditRecord *record, const uint8_t hash[SBI_HASH_SIZE],
                   void *arg)
{
    (void)hash;
    s_plain_t *plain = arg;
    return plain->each(record, plain->arg);
}

int sbi_audit_query(sbi_audit_t *self, const sbi_audit_filter_t *filter,
                    int (*each)(const Sharebus__AuditRecord *record, void *arg), void *arg)
{
    s_plain_t plain = {each, arg};
    return sbi_audit_query_entries(self, filter, s_plain, &plain);
}
