/*  audit.c - the audit log's lifecycle, appends and kind names. Queries are
    in audit_query.c, verification in audit_verify.c, checkpoints in
    checkpoint.c. */
#include "audit_int.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_FORMAT 1 /* meta "format": the layout of this file's databases */

typedef struct {
    const char *name;
    unsigned flags;
    size_t offset;
    bool optional; /* added after format 1: a read-only store may lack it */
} s_db_t;

#define S_DB(name, flags, field)                                                                   \
    {                                                                                              \
        name, flags, offsetof(sbi_audit_t, field), false                                           \
    }
static const s_db_t s_dbs[] = {
    S_DB(SBI_AUDIT_DB_LOG, 0, log),
    S_DB(SBI_AUDIT_DB_SUBJECT, MDB_DUPSORT | MDB_DUPFIXED, subject),
    S_DB(SBI_AUDIT_DB_AGENCY, MDB_DUPSORT | MDB_DUPFIXED, agency),
    S_DB(SBI_AUDIT_DB_DATASET, MDB_DUPSORT | MDB_DUPFIXED, dataset),
    S_DB(SBI_AUDIT_DB_TIME, MDB_DUPSORT | MDB_DUPFIXED, time),
    S_DB(SBI_AUDIT_DB_CHECKPOINTS, 0, checkpoints),
    S_DB(SBI_AUDIT_DB_RECEIVED, 0, received),
    {SBI_AUDIT_DB_CONFLICTS, 0, offsetof(sbi_audit_t, conflicts), true},
    S_DB(SBI_AUDIT_DB_META, 0, meta),
};
_Static_assert(sizeof s_dbs / sizeof s_dbs[0] == SBI_AUDIT_DBS, "SBI_AUDIT_DBS is the count");

uint64_t sbi_audit_meta_get(sbi_audit_t *self, MDB_txn *txn, const char *name)
{
    MDB_val key = {strlen(name), (void *)name}, val;
    if (mdb_get(txn, self->meta, &key, &val) != 0 || val.mv_size != 8)
        return 0;
    return sbi_be64_get(val.mv_data);
}

int sbi_audit_meta_put(sbi_audit_t *self, MDB_txn *txn, const char *name, uint64_t value)
{
    uint8_t bytes[8];
    sbi_be64_put(bytes, value);
    MDB_val key = {strlen(name), (void *)name}, val = {8, bytes};
    return sbi_store_code(mdb_put(txn, self->meta, &key, &val, 0));
}

/* Reads the last entry and the time index's last key. A last entry that
   does not decode leaves the log readable but refuses appends. */
static int s_load_head(sbi_audit_t *self, MDB_txn *txn)
{
    MDB_cursor *cursor;
    MDB_val key, val;
    int rc = mdb_cursor_open(txn, self->log, &cursor);
    if (rc != 0)
        return sbi_store_code(rc);
    rc = mdb_cursor_get(cursor, &key, &val, MDB_LAST);
    if (rc == 0) {
        sbi_audit_decoder_t decoder;
        sbi_audit_decoder_init(&decoder);
        Sharebus__AuditRecord *record;
        uint64_t seq = key.mv_size == 8 ? sbi_be64_get(key.mv_data) : 0;
        if (sbi_audit_entry_decode(&decoder, val.mv_data, val.mv_size, &record, self->hash) !=
                SB_OK ||
            record->seq != seq) {
            sbi_error("audit record %" PRIu64
                      " (the last) is damaged: %s; appends are refused until the log is repaired "
                      "(run sharebus-audit verify)",
                      seq, decoder.why ? decoder.why : "its seq is not its key");
            self->damaged = SB_EMALFORMED;
        }
        self->seq = seq;
        sbi_audit_decoder_clear(&decoder);
    }
    mdb_cursor_close(cursor);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return sbi_store_code(rc);
    rc = mdb_cursor_open(txn, self->time, &cursor);
    if (rc != 0)
        return sbi_store_code(rc);
    if (mdb_cursor_get(cursor, &key, &val, MDB_LAST) == 0 && key.mv_size == 8)
        self->index_time = sbi_be64_get(key.mv_data);
    mdb_cursor_close(cursor);
    self->slack = sbi_audit_meta_get(self, txn, "time-slack");
    self->pending_seq = self->seq;
    memcpy(self->pending_hash, self->hash, SBI_HASH_SIZE);
    self->pending_index_time = self->index_time;
    self->pending_slack = self->slack;
    return SB_OK;
}

/* Checks (and on a new writable log, records) the layout version. */
static int s_check_format(sbi_audit_t *self, char *err, size_t err_size)
{
    MDB_txn *txn;
    int rc = sbi_store_begin(self->store, !self->readonly, &txn);
    if (rc != SB_OK) {
        snprintf(err, err_size, "audit log: %s", sb_strerror(rc));
        return rc;
    }
    uint64_t format = sbi_audit_meta_get(self, txn, "format");
    if (format == 0 && !self->readonly) {
        rc = sbi_audit_meta_put(self, txn, "format", S_FORMAT);
        if (rc == SB_OK)
            rc = sbi_store_code(mdb_txn_commit(txn));
        else
            mdb_txn_abort(txn);
        if (rc != SB_OK)
            snprintf(err, err_size, "audit log: %s", sb_strerror(rc));
        return rc;
    }
    mdb_txn_abort(txn);
    if (format > S_FORMAT) {
        snprintf(err, err_size, "audit log format %" PRIu64 " is newer than this program's (%d)",
                 format, S_FORMAT);
        return SB_EMALFORMED;
    }
    return SB_OK;
}

sbi_audit_t *sbi_audit_open(sbi_store_t *store, char *err, size_t err_size)
{
    assert(store);
    sbi_audit_t *self = calloc(1, sizeof *self);
    assert(self);
    self->store = store;
    unsigned env_flags = 0;
    mdb_env_get_flags(sbi_store_env(store), &env_flags);
    self->readonly = env_flags & MDB_RDONLY;
    for (size_t i = 0; i < sizeof s_dbs / sizeof s_dbs[0]; i++) {
        MDB_dbi *dbi = (MDB_dbi *)((char *)self + s_dbs[i].offset);
        int rc = sbi_store_dbi(store, s_dbs[i].name, s_dbs[i].flags, dbi);
        if (rc == SB_ENOTFOUND && s_dbs[i].optional)
            continue; /* read as empty (has_conflicts stays false) */
        if (rc != SB_OK) {
            snprintf(err, err_size, "audit database %s: %s", s_dbs[i].name,
                     rc == SB_ENOTFOUND ? "not in this store (no audit log here)"
                                        : sb_strerror(rc));
            sbi_audit_close(&self);
            return NULL;
        }
        if (dbi == &self->conflicts)
            self->has_conflicts = true;
    }
    if (s_check_format(self, err, err_size) != SB_OK) {
        sbi_audit_close(&self);
        return NULL;
    }
    MDB_txn *txn;
    int rc = sbi_store_begin(store, false, &txn);
    if (rc == SB_OK) {
        rc = s_load_head(self, txn);
        mdb_txn_abort(txn);
    }
    if (rc != SB_OK) {
        snprintf(err, err_size, "audit log: %s", sb_strerror(rc));
        sbi_audit_close(&self);
    }
    return self;
}

void sbi_audit_close(sbi_audit_t **self_p)
{
    sbi_audit_t *self = *self_p;
    if (!self)
        return;
    free(self->buf);
    free(self);
    *self_p = NULL;
}

/* ---------------------------------------------------------------- append */

static size_t s_len(const char *text)
{
    return text ? strlen(text) : 0;
}

static size_t s_key_size(size_t size)
{
    return size > SBI_AUDIT_KEY_MAX ? SBI_AUDIT_KEY_MAX : size;
}

size_t sbi_audit_index_keys(const Sharebus__AuditRecord *record, const uint8_t time_be[8],
                            sbi_audit_ikey_t out[SBI_AUDIT_IKEYS_MAX])
{
    size_t n = 0;
    if (record->subject_ref.len == SBI_HASH_SIZE)
        out[n++] =
            (sbi_audit_ikey_t){SBI_AUDIT_INDEX_SUBJECT, record->subject_ref.data, SBI_HASH_SIZE};
    size_t from = s_key_size(s_len(record->from)), to = s_key_size(s_len(record->to));
    if (from)
        out[n++] = (sbi_audit_ikey_t){SBI_AUDIT_INDEX_AGENCY, record->from, from};
    if (to && (to != from || memcmp(record->from, record->to, to) != 0))
        out[n++] = (sbi_audit_ikey_t){SBI_AUDIT_INDEX_AGENCY, record->to, to};
    size_t dataset = s_key_size(s_len(record->dataset));
    if (dataset)
        out[n++] = (sbi_audit_ikey_t){SBI_AUDIT_INDEX_DATASET, record->dataset, dataset};
    out[n++] = (sbi_audit_ikey_t){SBI_AUDIT_INDEX_TIME, time_be, 8};
    return n;
}

MDB_dbi sbi_audit_index_dbi(const sbi_audit_t *self, sbi_audit_index_t index)
{
    switch (index) {
    case SBI_AUDIT_INDEX_SUBJECT: return self->subject;
    case SBI_AUDIT_INDEX_AGENCY: return self->agency;
    case SBI_AUDIT_INDEX_DATASET: return self->dataset;
    default: assert(index == SBI_AUDIT_INDEX_TIME); return self->time;
    }
}

const char *sbi_audit_index_name(sbi_audit_index_t index)
{
    static const char *names[SBI_AUDIT_INDEXES] = {"subject", "agency", "dataset", "time"};
    return index < SBI_AUDIT_INDEXES ? names[index] : "unknown";
}

/* The index entries of one record; the time index key never decreases, so
   that the time index is in sequence order (see audit_query.c). */
int sbi_audit_index_put(sbi_audit_t *self, MDB_txn *txn, const Sharebus__AuditRecord *record,
                        const uint8_t seq_be[8], uint64_t index_time)
{
    uint8_t time_be[8];
    sbi_be64_put(time_be, index_time);
    sbi_audit_ikey_t keys[SBI_AUDIT_IKEYS_MAX];
    size_t n = sbi_audit_index_keys(record, time_be, keys);
    int rc = SB_OK;
    for (size_t i = 0; rc == SB_OK && i < n; i++) {
        MDB_val key = {keys[i].size, (void *)keys[i].key}, val = {8, (void *)seq_be};
        rc = sbi_store_code(mdb_put(txn, sbi_audit_index_dbi(self, keys[i].index), &key, &val, 0));
    }
    return rc;
}

/* Packs `record` (with prev_hash set to the pending head) into self->buf. */
static int s_pack(sbi_audit_t *self, Sharebus__AuditRecord *record, size_t *size_p)
{
    ProtobufCBinaryData caller_prev = record->prev_hash;
    record->prev_hash.data = self->pending_hash;
    record->prev_hash.len = SBI_HASH_SIZE;
    size_t size = sharebus__audit_record__get_packed_size(record);
    int rc = SB_OK;
    if (size > SBI_AUDIT_RECORD_MAX)
        rc = SB_ETOOBIG;
    else if (size > self->buf_size) {
        uint8_t *buf = realloc(self->buf, size);
        if (buf) {
            self->buf = buf;
            self->buf_size = size;
        } else
            rc = SB_ENOMEM;
    }
    if (rc == SB_OK)
        *size_p = sharebus__audit_record__pack(record, self->buf);
    record->prev_hash = caller_prev;
    return rc;
}

/* Writes the packed record in self->buf as entry `seq`, returning its hash. */
static int s_put_entry(sbi_audit_t *self, MDB_txn *txn, const uint8_t seq_be[8], size_t size,
                       uint8_t hash[SBI_HASH_SIZE])
{
    crypto_generichash(hash, SBI_HASH_SIZE, self->buf, size, NULL, 0);
    Sharebus__AuditEntry entry = SHAREBUS__AUDIT_ENTRY__INIT;
    entry.record = (ProtobufCBinaryData){size, self->buf};
    entry.hash = (ProtobufCBinaryData){SBI_HASH_SIZE, hash};
    MDB_val key = {8, (void *)seq_be}, val = {sharebus__audit_entry__get_packed_size(&entry), NULL};
    int rc = mdb_put(txn, self->log, &key, &val, MDB_APPEND | MDB_RESERVE);
    if (rc == MDB_KEYEXIST) {
        sbi_error("audit record %" PRIu64 " already exists: another writer appends to this log",
                  sbi_be64_get(seq_be));
        return SB_EINTERNAL;
    }
    if (rc != 0)
        return sbi_store_code(rc);
    sharebus__audit_entry__pack(&entry, val.mv_data);
    return SB_OK;
}

int sbi_audit_append(sbi_audit_t *self, MDB_txn *txn, Sharebus__AuditRecord *record)
{
    assert(self && txn && record);
    assert(!self->readonly);
    if (self->damaged)
        return self->damaged;
    uint64_t seq = self->pending_seq + 1;
    record->seq = seq;
    if (record->time_ms == 0)
        record->time_ms = sbi_now_ms();
    uint8_t hash[SBI_HASH_SIZE], seq_be[8];
    sbi_be64_put(seq_be, seq);
    size_t size;
    int rc = s_pack(self, record, &size);
    if (rc == SB_OK)
        rc = s_put_entry(self, txn, seq_be, size, hash);
    uint64_t index_time =
        record->time_ms > self->pending_index_time ? record->time_ms : self->pending_index_time;
    uint64_t slack = index_time - record->time_ms;
    if (rc == SB_OK)
        rc = sbi_audit_index_put(self, txn, record, seq_be, index_time);
    if (rc == SB_OK)
        rc = sbi_audit_meta_put(self, txn, "head", seq);
    if (rc == SB_OK && slack > self->pending_slack)
        rc = sbi_audit_meta_put(self, txn, "time-slack", slack);
    if (rc != SB_OK)
        return rc;
    self->pending_seq = seq;
    memcpy(self->pending_hash, hash, SBI_HASH_SIZE);
    self->pending_index_time = index_time;
    if (slack > self->pending_slack)
        self->pending_slack = slack;
    return SB_OK;
}

void sbi_audit_commit(sbi_audit_t *self)
{
    assert(self);
    self->seq = self->pending_seq;
    memcpy(self->hash, self->pending_hash, SBI_HASH_SIZE);
    self->index_time = self->pending_index_time;
    self->slack = self->pending_slack;
}

void sbi_audit_abort(sbi_audit_t *self)
{
    assert(self);
    self->pending_seq = self->seq;
    memcpy(self->pending_hash, self->hash, SBI_HASH_SIZE);
    self->pending_index_time = self->index_time;
    self->pending_slack = self->slack;
}

uint64_t sbi_audit_head(sbi_audit_t *self, uint8_t hash[SBI_HASH_SIZE])
{
    assert(self);
    if (hash)
        memcpy(hash, self->hash, SBI_HASH_SIZE);
    return self->seq;
}

/* ------------------------------------------------------------ kind names */

#define S_KINDS_MAX 64
static char s_kind_names[S_KINDS_MAX][48];
static pthread_once_t s_kind_once = PTHREAD_ONCE_INIT;

/* "AUDIT_REQUEST_ROUTED" -> "request-routed", from the enum's descriptor so
   that a kind added to the proto has a name without touching this file. */
static void s_kind_names_init(void)
{
    const ProtobufCEnumDescriptor *desc = &sharebus__audit_kind__descriptor;
    for (unsigned i = 0; i < desc->n_values; i++) {
        const ProtobufCEnumValue *value = &desc->values[i];
        if (value->value < 0 || value->value >= S_KINDS_MAX)
            continue;
        const char *from = value->name;
        if (strncmp(from, "AUDIT_", 6) == 0)
            from += 6;
        char *to = s_kind_names[value->value];
        size_t n = 0;
        for (; from[n] && n + 1 < sizeof s_kind_names[0]; n++)
            to[n] = from[n] == '_' ? '-' : (char)(from[n] | 0x20);
        to[n] = 0;
    }
}

const char *sbi_audit_kind_name(Sharebus__AuditKind kind)
{
    pthread_once(&s_kind_once, s_kind_names_init);
    int k = (int)kind;
    return k >= 0 && k < S_KINDS_MAX && s_kind_names[k][0] ? s_kind_names[k] : "unknown";
}

Sharebus__AuditKind sbi_audit_kind_parse(const char *name)
{
    pthread_once(&s_kind_once, s_kind_names_init);
    for (int k = 1; name && k < S_KINDS_MAX; k++)
        if (s_kind_names[k][0] && strcmp(s_kind_names[k], name) == 0)
            return (Sharebus__AuditKind)k;
    return SHAREBUS__AUDIT_KIND__AUDIT_NONE;
}
