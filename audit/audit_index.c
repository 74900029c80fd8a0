/*  audit_index.c - the indexes held against the records, and rebuilt.

    Queries and reports find records through the indexes (audit_query.c):
    an index that lost a record's entry hides the record without a word, and
    one that names a record under a key it does not have adds it where it
    does not belong. So verify checks that every record has exactly its
    entries (sbi_audit_index_keys) in every index, and nothing else is
    there, without a lookup per record: while the walk decodes the records,
    each of its ranges sums a hash of every entry its records should have,
    per index and per block of 65536 sequence numbers; each index is read
    through once, in key order, by the first range done with its records,
    and summed the same way. The hash is keyed afresh for every verify, so
    that nobody who can write the store can make a changed index add up to
    the same sums. Only a block whose sums differ is read again, record by
    record, to name the first record whose entries are missing or wrong.

    A record's time index key is the latest time of any record up to it
    (append raises it when the clock steps back), which a range that starts
    in the middle of the log cannot know: it takes the key the time index
    has for the record before it, and the join holds that key against the
    one the range before computed. The stored time slack must cover how
    far any key was raised, or a query with --until stops too early.
*/
#include "audit_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_BLOCK_BITS 16
#define S_NONE UINT64_MAX
#define S_CACHE 256 /* agency and dataset names hashed, per range */
_Static_assert(S_CACHE == 256, "a name's slot is the top byte of its hash");
#define S_WORDS_MAX (SBI_HASH_SIZE / 8) /* a subject reference */

/* A name's hash, kept: a log has few agencies and datasets, and SipHash
   for each record's names would cost the walk a tenth of its time. */
typedef struct {
    uint64_t hash;
    uint64_t head, tail; /* its first and last 8 bytes: all of a short one */
    uint8_t index, size;
    uint8_t key[SBI_AUDIT_KEY_MAX];
} s_cached_t;
_Static_assert(SBI_AUDIT_KEY_MAX <= UINT8_MAX, "a cached key's size fits its byte");

struct sbi_audit_ixrange_t {
    const sbi_audit_ixcheck_t *check;
    uint64_t first;
    uint64_t *sums;      /* [block][index]: the entries its records call for */
    uint64_t *time_max;  /* [block]: the latest time of its records there */
    uint64_t start_key;  /* the time index key of record first - 1, as stored */
    bool start_found;    /* ...and it was found (always, from record 1) */
    uint64_t index_time; /* the time index key of the last record added */
    uint64_t slack_seq;  /* the first record the stored slack does not cover */
    s_cached_t names[S_CACHE];
};

/* Reading an index through: summed by block, or (with `per`) subtracted
   record by record for records first..last. */
typedef struct {
    MDB_txn *txn;
    bool newer; /* txn may see records appended since the check's */
    uint64_t *per;
    uint64_t first, last;
    uint64_t dangling; /* the lowest seq named that is not a record here */
    bool malformed;    /* a value that is not a sequence number */
    int rc;            /* SB_OK, or why the index could not be read */
} s_scan_t;

struct sbi_audit_ixcheck_t {
    sbi_audit_t *audit;
    uint8_t keys[SBI_AUDIT_INDEXES][crypto_shorthash_KEYBYTES];
    uint64_t word_keys[SBI_AUDIT_INDEXES][S_WORDS_MAX + 1];
    uint64_t slack; /* meta "time-slack" */
    uint64_t last;  /* records 1..last */
    uint64_t blocks;
    unsigned n;
    sbi_audit_ixrange_t ranges[SBI_AUDIT_RANGES_MAX];
    uint64_t *expected; /* [block][index], the ranges' sums joined */
    uint64_t *time_max; /* [block], joined */
    /* Reading the indexes, each by the first range done with its records: */
    uint64_t *actual[SBI_AUDIT_INDEXES]; /* [block] */
    s_scan_t scans[SBI_AUDIT_INDEXES];
    unsigned next_read; /* the next index to read (atomic) */
};

/* What was found wrong with one index: the record, and what. */
typedef struct {
    uint64_t seq; /* S_NONE: nothing */
    char detail[400];
} s_found_t;

/* ------------------------------------------------------------- hashing */

static uint64_t s_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* A key of whole 64-bit words (a subject reference, a time): each word
   mixed with a key word of its own, side by side, and added. The walk
   hashes two of these per record, where SipHash took 60-80 ns for a
   subject reference. The mix is a bijection: two keys that differ hash
   alike only under some key words, which nobody who writes the store
   knows. */
static uint64_t s_words_hash(const uint64_t *key_words, const uint8_t *bytes, size_t words)
{
    uint64_t h = key_words[0];
    for (size_t i = 0; i < words; i++) {
        uint64_t w;
        memcpy(&w, bytes + 8 * i, 8);
        h += s_mix(w ^ key_words[i + 1]);
    }
    return h;
}

static uint64_t s_key_hash(const sbi_audit_ixcheck_t *c, sbi_audit_index_t index, const void *key,
                           size_t size)
{
    if ((index == SBI_AUDIT_INDEX_SUBJECT && size == SBI_HASH_SIZE) ||
        (index == SBI_AUDIT_INDEX_TIME && size == 8))
        return s_words_hash(c->word_keys[index], key, size / 8);
    uint8_t out[crypto_shorthash_BYTES];
    crypto_shorthash(out, key, size, c->keys[index]);
    uint64_t h;
    memcpy(&h, out, sizeof h);
    return h;
}

/* One entry: the key's hash and the seq, mixed so that moving seqs between
   keys changes the sum. */
static uint64_t s_entry(uint64_t key_hash, uint64_t seq)
{
    return s_mix(key_hash + seq * 0x9e3779b97f4a7c15ull);
}

/* ------------------------------------------------------------ lifecycle */

sbi_audit_ixcheck_t *sbi_audit_ixcheck_new(sbi_audit_t *audit, MDB_txn *txn)
{
    assert(audit && txn);
    sbi_audit_ixcheck_t *self = calloc(1, sizeof *self);
    assert(self);
    self->audit = audit;
    randombytes_buf(self->keys, sizeof self->keys);
    randombytes_buf(self->word_keys, sizeof self->word_keys);
    self->slack = sbi_audit_meta_get(audit, txn, "time-slack");
    return self;
}

void sbi_audit_ixcheck_destroy(sbi_audit_ixcheck_t **self_p)
{
    sbi_audit_ixcheck_t *self = *self_p;
    if (!self)
        return;
    for (unsigned k = 0; k < SBI_AUDIT_RANGES_MAX; k++) {
        free(self->ranges[k].sums);
        free(self->ranges[k].time_max);
    }
    free(self->expected);
    free(self->time_max);
    for (int index = 0; index < SBI_AUDIT_INDEXES; index++)
        free(self->actual[index]);
    sodium_memzero(self->keys, sizeof self->keys);
    sodium_memzero(self->word_keys, sizeof self->word_keys);
    free(self);
    *self_p = NULL;
}

void sbi_audit_ixcheck_plan(sbi_audit_ixcheck_t *self, uint64_t last, unsigned n)
{
    assert(self && n > 0 && n <= SBI_AUDIT_RANGES_MAX && self->n == 0);
    self->last = last;
    self->blocks = (last >> S_BLOCK_BITS) + 1;
    self->n = n;
    for (unsigned k = 0; k < n; k++) {
        self->ranges[k].check = self;
        self->ranges[k].sums = calloc(self->blocks * SBI_AUDIT_INDEXES, sizeof(uint64_t));
        self->ranges[k].time_max = calloc(self->blocks, sizeof(uint64_t));
        assert(self->ranges[k].sums && self->ranges[k].time_max);
    }
    for (int index = 0; index < SBI_AUDIT_INDEXES; index++) {
        self->actual[index] = calloc(self->blocks, sizeof(uint64_t));
        assert(self->actual[index]);
    }
}

sbi_audit_ixrange_t *sbi_audit_ixcheck_range(sbi_audit_ixcheck_t *self, unsigned k, uint64_t first)
{
    assert(self && k < self->n);
    self->ranges[k].first = first;
    return &self->ranges[k];
}

/* ----------------------------------------------------------- the walk */

/* The key under which the time index holds `seq`, a record of time `time`.
   In a sound index it lies between time and time + slack, and the index is
   in sequence order, so a binary search over the keys finds it. */
static bool s_time_key_of(const sbi_audit_ixcheck_t *c, MDB_txn *txn, uint64_t seq, uint64_t time,
                          uint64_t *key_p)
{
    MDB_cursor *cursor;
    if (mdb_cursor_open(txn, c->audit->time, &cursor) != 0)
        return false;
    uint64_t lo = time, hi = time > UINT64_MAX - c->slack ? UINT64_MAX : time + c->slack;
    bool found = false;
    while (lo <= hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        uint8_t mid_be[8], seq_be[8];
        sbi_be64_put(mid_be, mid);
        MDB_val key = {8, mid_be}, val;
        bool here = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE) == 0 && key.mv_size == 8 &&
                    val.mv_size == 8 && sbi_be64_get(key.mv_data) <= hi;
        if (!here || sbi_be64_get(val.mv_data) > seq) { /* it is below mid */
            if (mid == lo)
                break;
            hi = mid - 1;
            continue;
        }
        uint64_t at = sbi_be64_get(key.mv_data);
        if (mdb_cursor_get(cursor, &key, &val, MDB_LAST_DUP) != 0 || val.mv_size != 8)
            break;
        if (sbi_be64_get(val.mv_data) < seq) { /* it is above this key */
            if (at == hi)
                break;
            lo = at + 1;
            continue;
        }
        sbi_be64_put(seq_be, seq);
        MDB_val want = {8, seq_be};
        found = mdb_cursor_get(cursor, &key, &want, MDB_GET_BOTH) == 0;
        if (found)
            *key_p = at;
        break;
    }
    mdb_cursor_close(cursor);
    return found;
}

void sbi_audit_ixrange_begin(sbi_audit_ixrange_t *range, MDB_txn *txn)
{
    assert(range && range->check);
    range->start_found = range->first <= 1;
    if (range->start_found)
        return;
    uint64_t seq = range->first - 1;
    uint8_t seq_be[8], hash[SBI_HASH_SIZE];
    sbi_be64_put(seq_be, seq);
    MDB_val key = {8, seq_be}, val;
    sbi_audit_decoder_t decoder;
    sbi_audit_decoder_init(&decoder);
    Sharebus__AuditRecord *record;
    if (mdb_get(txn, range->check->audit->log, &key, &val) == 0 &&
        sbi_audit_entry_decode(&decoder, val.mv_data, val.mv_size, &record, hash) == SB_OK) {
        /* Not found: the join names the record; its own time is a guess. */
        range->start_key = record->time_ms;
        range->start_found =
            s_time_key_of(range->check, txn, seq, record->time_ms, &range->start_key);
    }
    sbi_audit_decoder_clear(&decoder);
    range->index_time = range->start_key;
}

static uint64_t s_name_hash(sbi_audit_ixrange_t *range, const sbi_audit_ikey_t *key)
{
    const uint8_t *bytes = key->key;
    size_t n = key->size < 8 ? key->size : 8;
    uint64_t head = 0, tail = 0;
    memcpy(&head, bytes, n);
    memcpy(&tail, bytes + key->size - n, n);
    uint64_t slot = (head * 0x9e3779b97f4a7c15ull ^ tail * 0xc2b2ae3d27d4eb4full ^ key->size ^
                     (uint64_t)key->index << 8) >>
                    56;
    s_cached_t *c = &range->names[slot];
    if (c->size != key->size || c->index != key->index || c->head != head || c->tail != tail ||
        (key->size > 16 && memcmp(c->key + 8, bytes + 8, key->size - 16) != 0)) {
        c->hash = s_key_hash(range->check, key->index, bytes, key->size);
        c->head = head;
        c->tail = tail;
        c->index = (uint8_t)key->index;
        c->size = (uint8_t)key->size;
        memcpy(c->key, bytes, key->size);
    }
    return c->hash;
}

void sbi_audit_ixrange_add(sbi_audit_ixrange_t *range, const Sharebus__AuditRecord *record)
{
    const sbi_audit_ixcheck_t *c = range->check;
    uint64_t seq = record->seq, time = record->time_ms;
    if (seq == 0 || seq > c->last)
        return; /* not a record of this snapshot: the walk names it */
    if (time > range->index_time)
        range->index_time = time;
    if (range->index_time - time > c->slack && !range->slack_seq)
        range->slack_seq = seq;
    uint64_t block = seq >> S_BLOCK_BITS;
    if (time > range->time_max[block])
        range->time_max[block] = time;
    uint8_t time_be[8];
    sbi_be64_put(time_be, range->index_time);
    sbi_audit_ikey_t keys[SBI_AUDIT_IKEYS_MAX];
    size_t n = sbi_audit_index_keys(record, time_be, keys);
    uint64_t *sums = range->sums + block * SBI_AUDIT_INDEXES;
    for (size_t i = 0; i < n; i++) {
        bool name =
            keys[i].index == SBI_AUDIT_INDEX_AGENCY || keys[i].index == SBI_AUDIT_INDEX_DATASET;
        uint64_t h = name ? s_name_hash(range, &keys[i])
                          : s_key_hash(c, keys[i].index, keys[i].key, keys[i].size);
        sums[keys[i].index] += s_entry(h, seq);
    }
}

/* ------------------------------------------------------ reading indexes */

/* A record appended after the check's snapshot (another reader's is newer). */
static bool s_in_log(const sbi_audit_ixcheck_t *c, MDB_txn *txn, uint64_t seq)
{
    uint8_t seq_be[8];
    sbi_be64_put(seq_be, seq);
    MDB_val key = {8, seq_be}, val;
    return mdb_get(txn, c->audit->log, &key, &val) == 0;
}

static void s_values(sbi_audit_ixcheck_t *c, sbi_audit_index_t index, s_scan_t *scan,
                     uint64_t key_hash, const uint8_t *values, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t seq = sbi_be64_get(values + 8 * i);
        if (seq == 0 || seq > c->last) {
            if (seq < scan->dangling && !(seq && scan->newer && s_in_log(c, scan->txn, seq)))
                scan->dangling = seq;
        } else if (!scan->per)
            c->actual[index][seq >> S_BLOCK_BITS] += s_entry(key_hash, seq);
        else if (seq >= scan->first && seq <= scan->last)
            scan->per[seq - scan->first] -= s_entry(key_hash, seq);
    }
}

/* Reads `index` through in `txn`: a key's sequence numbers come a page at
   a time (MDB_GET_MULTIPLE: the indexes are DUPFIXED). */
static int s_scan(sbi_audit_ixcheck_t *c, MDB_txn *txn, sbi_audit_index_t index, s_scan_t *scan)
{
    MDB_cursor *cursor;
    int rc = mdb_cursor_open(txn, sbi_audit_index_dbi(c->audit, index), &cursor);
    if (rc != 0)
        return sbi_store_code(rc);
    MDB_val key, val, many;
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT_NODUP)) {
        if (val.mv_size != 8) {
            scan->malformed = true;
            continue;
        }
        uint64_t h = s_key_hash(c, index, key.mv_data, key.mv_size);
        size_t count = 1;
        if (mdb_cursor_count(cursor, &count) != 0 || count <= 1) {
            s_values(c, index, scan, h, val.mv_data, 1);
            continue;
        }
        int mrc;
        for (mrc = mdb_cursor_get(cursor, &key, &many, MDB_GET_MULTIPLE); mrc == 0;
             mrc = mdb_cursor_get(cursor, &key, &many, MDB_NEXT_MULTIPLE))
            s_values(c, index, scan, h, many.mv_data, many.mv_size / 8);
        if (mrc != MDB_NOTFOUND) {
            rc = mrc;
            break;
        }
    }
    mdb_cursor_close(cursor);
    return rc == MDB_NOTFOUND ? SB_OK : sbi_store_code(rc);
}

/* ------------------------------------------------------------- naming */

static void s_clean(const void *text, size_t size, char *out, size_t out_size)
{
    size_t n = 0;
    const char *in = text;
    for (; n < size && n + 1 < out_size; n++)
        out[n] = (unsigned char)in[n] < 0x20 || in[n] == 0x7f ? '?' : in[n];
    out[n] = 0;
}

static void s_found(s_found_t *found, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void s_found(s_found_t *found, uint64_t seq, const char *fmt, ...)
{
    if (seq >= found->seq)
        return;
    found->seq = seq;
    va_list args;
    va_start(args, fmt);
    vsnprintf(found->detail, sizeof found->detail, fmt, args);
    va_end(args);
}

/* "record 5 has no entry in the agency index under 'koroad'" */
static void s_missing(s_found_t *found, const sbi_audit_ikey_t *key, uint64_t seq,
                      uint64_t index_time)
{
    const char *name = sbi_audit_index_name(key->index);
    char text[72];
    switch (key->index) {
    case SBI_AUDIT_INDEX_SUBJECT:
        s_found(found, seq, "record %" PRIu64 " has no entry in the subject index", seq);
        break;
    case SBI_AUDIT_INDEX_TIME:
        s_found(found, seq, "record %" PRIu64 " has no entry in the time index at %s", seq,
                sbi_time_format(index_time, text, sizeof text));
        break;
    default:
        s_clean(key->key, key->size, text, sizeof text);
        s_found(found, seq, "record %" PRIu64 " has no entry in the %s index under '%s'", seq, name,
                text);
    }
}

/* Looks at block `block` of `index` record by record. */
static int s_pinpoint(sbi_audit_ixcheck_t *c, MDB_txn *txn, sbi_audit_index_t index, uint64_t block,
                      s_found_t *found)
{
    uint64_t first = block << S_BLOCK_BITS, last = first + ((1ull << S_BLOCK_BITS) - 1);
    first = first ? first : 1;
    last = last < c->last ? last : c->last;
    if (first > last)
        return SB_OK;
    s_scan_t scan = {.first = first, .last = last, .dangling = S_NONE};
    scan.per = calloc(last - first + 1, sizeof *scan.per);
    assert(scan.per);
    uint64_t index_time = 0; /* the latest time before the block */
    for (uint64_t b = 0; b < block; b++)
        index_time = c->time_max[b] > index_time ? c->time_max[b] : index_time;
    MDB_cursor *log, *ix;
    int rc = mdb_cursor_open(txn, c->audit->log, &log);
    if (rc == 0 && (rc = mdb_cursor_open(txn, sbi_audit_index_dbi(c->audit, index), &ix)) != 0)
        mdb_cursor_close(log);
    if (rc != 0) {
        free(scan.per);
        return sbi_store_code(rc);
    }
    sbi_audit_decoder_t decoder;
    sbi_audit_decoder_init(&decoder);
    uint8_t seq_be[8], hash[SBI_HASH_SIZE];
    sbi_be64_put(seq_be, first);
    MDB_val key = {8, seq_be}, val;
    MDB_cursor_op op = MDB_SET_KEY;
    for (uint64_t seq = first; seq <= last; seq++, op = MDB_NEXT) {
        Sharebus__AuditRecord *record;
        if (mdb_cursor_get(log, &key, &val, op) != 0 || key.mv_size != 8 ||
            sbi_be64_get(key.mv_data) != seq ||
            sbi_audit_entry_decode(&decoder, val.mv_data, val.mv_size, &record, hash) != SB_OK)
            break; /* the walk found the chain sound: only a store changing under us */
        uint64_t time = record->time_ms;
        index_time = time > index_time ? time : index_time;
        if (index == SBI_AUDIT_INDEX_TIME && index_time - time > c->slack)
            s_found(found, seq,
                    "the stored time slack (%" PRIu64 " ms) does not cover record %" PRIu64
                    ", whose time index key is %" PRIu64
                    " ms after its own time: query --until can stop before records it should show",
                    c->slack, seq, index_time - time);
        uint8_t time_be[8], at_be[8];
        sbi_be64_put(time_be, index_time);
        sbi_be64_put(at_be, seq);
        sbi_audit_ikey_t keys[SBI_AUDIT_IKEYS_MAX];
        size_t n = sbi_audit_index_keys(record, time_be, keys);
        for (size_t i = 0; i < n; i++) {
            if (keys[i].index != index)
                continue;
            scan.per[seq - first] += s_entry(s_key_hash(c, index, keys[i].key, keys[i].size), seq);
            MDB_val ikey = {keys[i].size, (void *)keys[i].key}, iseq = {8, at_be};
            if (mdb_cursor_get(ix, &ikey, &iseq, MDB_GET_BOTH) != 0)
                s_missing(found, &keys[i], seq, index_time);
        }
    }
    sbi_audit_decoder_clear(&decoder);
    mdb_cursor_close(ix);
    mdb_cursor_close(log);
    rc = s_scan(c, txn, index, &scan);
    for (uint64_t seq = first; rc == SB_OK && seq <= last && seq < found->seq; seq++)
        if (scan.per[seq - first] != 0)
            s_found(found, seq,
                    "the %s index has an entry for record %" PRIu64
                    " that the record does not call for",
                    sbi_audit_index_name(index), seq);
    free(scan.per);
    return rc;
}

/* Reads the indexes no one took yet, one at a time, in `txn`; `newer`: it
   may see records appended since the check's snapshot. */
static void s_read(sbi_audit_ixcheck_t *c, MDB_txn *txn, bool newer)
{
    static const sbi_audit_index_t longest_first[SBI_AUDIT_INDEXES] = {
        SBI_AUDIT_INDEX_TIME, SBI_AUDIT_INDEX_SUBJECT, SBI_AUDIT_INDEX_AGENCY,
        SBI_AUDIT_INDEX_DATASET};
    unsigned next;
    while ((next = __atomic_fetch_add(&c->next_read, 1, __ATOMIC_RELAXED)) < SBI_AUDIT_INDEXES) {
        sbi_audit_index_t index = longest_first[next];
        s_scan_t *scan = &c->scans[index];
        *scan = (s_scan_t){.txn = txn, .newer = newer, .dangling = S_NONE};
        scan->rc = s_scan(c, txn, index, scan);
    }
}

void sbi_audit_ixrange_read(sbi_audit_ixrange_t *range, MDB_txn *txn, bool newer)
{
    assert(range && range->check && txn);
    s_read((sbi_audit_ixcheck_t *)range->check, txn, newer);
}

/* ------------------------------------------------------------ the join */

/* Joins the ranges' sums; the first record whose time index key, as the
   next range took it from the index, is not the one its range computed
   (S_NONE: none). */
static uint64_t s_join(sbi_audit_ixcheck_t *c)
{
    c->expected = calloc(c->blocks * SBI_AUDIT_INDEXES, sizeof(uint64_t));
    c->time_max = calloc(c->blocks, sizeof(uint64_t));
    assert(c->expected && c->time_max);
    uint64_t broken = S_NONE;
    for (unsigned k = 0; k < c->n; k++) {
        const sbi_audit_ixrange_t *r = &c->ranges[k];
        for (uint64_t i = 0; i < c->blocks * SBI_AUDIT_INDEXES; i++)
            c->expected[i] += r->sums[i];
        for (uint64_t b = 0; b < c->blocks; b++)
            c->time_max[b] = r->time_max[b] > c->time_max[b] ? r->time_max[b] : c->time_max[b];
        if (k > 0 && broken == S_NONE &&
            (!r->start_found || r->start_key != c->ranges[k - 1].index_time))
            broken = r->first - 1;
    }
    return broken;
}

/* What is wrong with `index`, if anything. */
static int s_check_index(sbi_audit_ixcheck_t *c, MDB_txn *txn, sbi_audit_index_t index,
                         uint64_t broken, s_found_t *found)
{
    const char *name = sbi_audit_index_name(index);
    const s_scan_t *scan = &c->scans[index];
    if (scan->malformed)
        s_found(found, 0, "the %s index holds an entry that is not a sequence number", name);
    if (scan->dangling != S_NONE)
        s_found(found, scan->dangling,
                "the %s index names record %" PRIu64
                ", which is not in the log (the last is %" PRIu64 ")",
                name, scan->dangling, c->last);
    uint64_t block = S_NONE;
    for (uint64_t b = 0; b < c->blocks && block == S_NONE; b++)
        if (c->expected[b * SBI_AUDIT_INDEXES + index] != c->actual[index][b])
            block = b;
    int rc;
    if (index == SBI_AUDIT_INDEX_TIME) {
        if (broken != S_NONE && broken >> S_BLOCK_BITS < block)
            block = broken >> S_BLOCK_BITS;
        /* The ranges' own finding holds before the first block in doubt. */
        uint64_t slack_seq = 0;
        for (unsigned k = 0; k < c->n && !slack_seq; k++)
            slack_seq = c->ranges[k].slack_seq;
        if (slack_seq && (block == S_NONE || slack_seq < block << S_BLOCK_BITS))
            s_found(found, slack_seq,
                    "the stored time slack (%" PRIu64 " ms) does not cover record %" PRIu64
                    ": query --until can stop before records it should show",
                    c->slack, slack_seq);
    }
    if (block == S_NONE || block << S_BLOCK_BITS >= found->seq)
        return SB_OK;
    uint64_t before = found->seq, first = block << S_BLOCK_BITS ? block << S_BLOCK_BITS : 1;
    rc = s_pinpoint(c, txn, index, block, found);
    if (rc == SB_OK && found->seq == before) /* the sums differ, no record does */
        s_found(found, first, "the %s index does not match the records from record %" PRIu64 " on",
                name, first);
    return rc;
}

int sbi_audit_ixcheck_finish(sbi_audit_ixcheck_t *self, MDB_txn *txn, sbi_audit_report_t *report)
{
    assert(self && txn && report);
    if (self->n == 0)
        return SB_OK; /* nothing was walked */
    uint64_t broken = s_join(self);
    s_read(self, txn, false); /* what the ranges left */
    int rc = SB_OK;
    for (int index = 0; rc == SB_OK && index < SBI_AUDIT_INDEXES; index++)
        rc = self->scans[index].rc;
    if (rc != SB_OK)
        return rc;
    s_found_t first = {.seq = S_NONE};
    sbi_audit_index_t which = SBI_AUDIT_INDEX_SUBJECT;
    for (int index = 0; index < SBI_AUDIT_INDEXES; index++) {
        s_found_t found = {.seq = S_NONE};
        rc = s_check_index(self, txn, (sbi_audit_index_t)index, broken, &found);
        if (rc != SB_OK)
            return rc;
        if (found.seq < first.seq) {
            first = found;
            which = (sbi_audit_index_t)index;
        }
    }
    if (first.seq == S_NONE)
        return SB_OK;
    static const char *uses[SBI_AUDIT_INDEXES] = {"report, --subject", "--agency", "--dataset",
                                                  "--since, --until"};
    sbi_audit_report_fault(report, SBI_AUDIT_BAD_INDEX, first.seq,
                           "%s; what query and report find through the %s index (%s) may be "
                           "incomplete until the indexes are rebuilt: sharebus-audit reindex, "
                           "with the broker or agent stopped",
                           first.detail, sbi_audit_index_name(which), uses[which]);
    report->index = sbi_audit_index_name(which);
    return SB_OK;
}

/* ------------------------------------------------------------- rebuild */

int sbi_audit_reindex(sbi_audit_t *self, MDB_txn *txn, uint64_t *records_p)
{
    assert(self && txn && !self->readonly);
    *records_p = 0;
    int rc = SB_OK;
    for (int index = 0; rc == SB_OK && index < SBI_AUDIT_INDEXES; index++)
        rc = sbi_store_code(mdb_drop(txn, sbi_audit_index_dbi(self, (sbi_audit_index_t)index), 0));
    MDB_cursor *cursor;
    if (rc != SB_OK || (rc = sbi_store_code(mdb_cursor_open(txn, self->log, &cursor))) != SB_OK)
        return rc;
    sbi_audit_decoder_t decoder;
    sbi_audit_decoder_init(&decoder);
    uint64_t index_time = 0, slack = 0;
    MDB_val key, val;
    int mrc;
    for (mrc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); mrc == 0 && rc == SB_OK;
         mrc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        Sharebus__AuditRecord *record;
        uint8_t hash[SBI_HASH_SIZE];
        uint64_t seq = key.mv_size == 8 ? sbi_be64_get(key.mv_data) : 0;
        if (seq == 0 ||
            sbi_audit_entry_decode(&decoder, val.mv_data, val.mv_size, &record, hash) != SB_OK ||
            record->seq != seq) {
            sbi_error("audit record %" PRIu64 " is damaged (%s): the indexes were not rebuilt; "
                      "run sharebus-audit verify",
                      seq,
                      seq == 0      ? "its key is not a sequence number"
                      : decoder.why ? decoder.why
                                    : "its seq is not its key");
            rc = SB_EMALFORMED;
            break;
        }
        index_time = record->time_ms > index_time ? record->time_ms : index_time;
        slack = index_time - record->time_ms > slack ? index_time - record->time_ms : slack;
        rc = sbi_audit_index_put(self, txn, record, key.mv_data, index_time);
        (*records_p)++;
    }
    sbi_audit_decoder_clear(&decoder);
    mdb_cursor_close(cursor);
    if (rc == SB_OK && mrc != MDB_NOTFOUND)
        rc = sbi_store_code(mrc);
    if (rc == SB_OK)
        rc = sbi_audit_meta_put(self, txn, "time-slack", slack);
    if (rc == SB_OK) {
        self->pending_index_time = index_time;
        self->pending_slack = slack;
    }
    return rc;
}
