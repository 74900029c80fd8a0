/*  tamper.c - forgeries for the tests (see tamper.h). */
#include "tamper.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi log, meta;
} s_forge_t;

/* A forgery needs no fsync: the tests flip hundreds of bytes one by one. */
static int s_begin(sbi_store_t *store, s_forge_t *forge)
{
    forge->env = sbi_store_env(store);
    mdb_env_set_flags(forge->env, MDB_NOSYNC, 1);
    int rc = sbi_store_dbi(store, SBI_AUDIT_DB_LOG, 0, &forge->log);
    if (rc == SB_OK)
        rc = sbi_store_dbi(store, SBI_AUDIT_DB_META, 0, &forge->meta);
    if (rc == SB_OK)
        rc = sbi_store_begin(store, true, &forge->txn);
    if (rc != SB_OK)
        mdb_env_set_flags(forge->env, MDB_NOSYNC, 0);
    return rc;
}

static int s_end(s_forge_t *forge, int rc)
{
    if (rc == SB_OK)
        rc = sbi_store_code(mdb_txn_commit(forge->txn));
    else
        mdb_txn_abort(forge->txn);
    mdb_env_set_flags(forge->env, MDB_NOSYNC, 0);
    return rc;
}

static MDB_val s_key(uint8_t bytes[8], uint64_t seq)
{
    sbi_be64_put(bytes, seq);
    return (MDB_val){8, bytes};
}

size_t sbi_tamper_entry_size(sbi_store_t *store, uint64_t seq)
{
    s_forge_t forge;
    if (s_begin(store, &forge) != SB_OK)
        return 0;
    uint8_t bytes[8];
    MDB_val key = s_key(bytes, seq), val = {0, NULL};
    size_t size = mdb_get(forge.txn, forge.log, &key, &val) == 0 ? val.mv_size : 0;
    s_end(&forge, SB_EINVAL);
    return size;
}

int sbi_tamper_flip(sbi_store_t *store, uint64_t seq, size_t offset)
{
    s_forge_t forge;
    int rc = s_begin(store, &forge);
    if (rc != SB_OK)
        return rc;
    uint8_t bytes[8];
    MDB_val key = s_key(bytes, seq), val;
    rc = sbi_store_code(mdb_get(forge.txn, forge.log, &key, &val));
    if (rc == SB_OK && val.mv_size > 0) {
        uint8_t *copy = malloc(val.mv_size);
        assert(copy);
        memcpy(copy, val.mv_data, val.mv_size);
        copy[offset % val.mv_size] ^= 0xff;
        val.mv_data = copy;
        rc = sbi_store_code(mdb_put(forge.txn, forge.log, &key, &val, 0));
        free(copy);
    }
    return s_end(&forge, rc);
}

int sbi_tamper_delete(sbi_store_t *store, uint64_t seq)
{
    s_forge_t forge;
    int rc = s_begin(store, &forge);
    if (rc != SB_OK)
        return rc;
    uint8_t bytes[8];
    MDB_val key = s_key(bytes, seq);
    return s_end(&forge, sbi_store_code(mdb_del(forge.txn, forge.log, &key, NULL)));
}

int sbi_tamper_truncate(sbi_store_t *store, uint64_t seq, bool fix_meta)
{
    s_forge_t forge;
    int rc = s_begin(store, &forge);
    if (rc != SB_OK)
        return rc;
    MDB_cursor *cursor;
    rc = sbi_store_code(mdb_cursor_open(forge.txn, forge.log, &cursor));
    if (rc != SB_OK)
        return s_end(&forge, rc);
    uint8_t bytes[8];
    MDB_val key = s_key(bytes, seq), val;
    while (rc == SB_OK && mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE) == 0) {
        rc = sbi_store_code(mdb_cursor_del(cursor, 0));
        key = s_key(bytes, seq);
    }
    mdb_cursor_close(cursor);
    if (rc == SB_OK && fix_meta) {
        uint8_t head[8];
        sbi_be64_put(head, seq - 1);
        MDB_val name = {4, "head"}, value = {8, head};
        rc = sbi_store_code(mdb_put(forge.txn, forge.meta, &name, &value, 0));
    }
    return s_end(&forge, rc);
}

/* Replaces record `seq` with the same record under `purpose`, chained to
   `prev`; leaves the new hash in `prev`. */
static int s_rewrite_one(s_forge_t *forge, sbi_audit_decoder_t *decoder, uint64_t seq,
                         const char *purpose, uint8_t prev[SBI_HASH_SIZE])
{
    uint8_t bytes[8], hash[SBI_HASH_SIZE];
    MDB_val key = s_key(bytes, seq), val;
    int rc = sbi_store_code(mdb_get(forge->txn, forge->log, &key, &val));
    Sharebus__AuditRecord *record;
    if (rc == SB_OK)
        rc = sbi_audit_entry_decode(decoder, val.mv_data, val.mv_size, &record, hash);
    if (rc != SB_OK)
        return rc;
    record->purpose = (char *)purpose;
    record->prev_hash = (ProtobufCBinaryData){SBI_HASH_SIZE, prev};
    size_t size = sharebus__audit_record__get_packed_size(record);
    uint8_t *packed = malloc(size);
    assert(packed);
    sharebus__audit_record__pack(record, packed);
    crypto_generichash(hash, sizeof hash, packed, size, NULL, 0);
    Sharebus__AuditEntry entry = SHAREBUS__AUDIT_ENTRY__INIT;
    entry.record = (ProtobufCBinaryData){size, packed};
    entry.hash = (ProtobufCBinaryData){SBI_HASH_SIZE, hash};
    uint8_t *packed_entry = malloc(sharebus__audit_entry__get_packed_size(&entry));
    assert(packed_entry);
    val = (MDB_val){sharebus__audit_entry__pack(&entry, packed_entry), packed_entry};
    rc = sbi_store_code(mdb_put(forge->txn, forge->log, &key, &val, 0));
    memcpy(prev, hash, SBI_HASH_SIZE);
    free(packed);
    free(packed_entry);
    return rc;
}

int sbi_tamper_rewrite(sbi_store_t *store, uint64_t seq, uint64_t count, const char *purpose)
{
    s_forge_t forge;
    int rc = s_begin(store, &forge);
    if (rc != SB_OK)
        return rc;
    sbi_audit_decoder_t decoder;
    sbi_audit_decoder_init(&decoder);
    uint8_t prev[SBI_HASH_SIZE] = {0};
    if (seq > 1) {
        uint8_t bytes[8];
        MDB_val key = s_key(bytes, seq - 1), val;
        Sharebus__AuditRecord *record;
        rc = sbi_store_code(mdb_get(forge.txn, forge.log, &key, &val));
        if (rc == SB_OK)
            rc = sbi_audit_entry_decode(&decoder, val.mv_data, val.mv_size, &record, prev);
    }
    for (uint64_t s = seq; rc == SB_OK && (count == 0 || s < seq + count); s++) {
        rc = s_rewrite_one(&forge, &decoder, s, purpose, prev);
        if (rc == SB_ENOTFOUND && s > seq) {
            rc = SB_OK;
            break;
        }
    }
    sbi_audit_decoder_clear(&decoder);
    return s_end(&forge, rc);
}

/* The index database `index` ("subject" ...) in the forgery's store. */
static int s_index_dbi(sbi_store_t *store, const char *index, MDB_dbi *dbi)
{
    char name[64];
    snprintf(name, sizeof name, "audit.%s", index);
    return sbi_store_dbi(store, name, MDB_DUPSORT | MDB_DUPFIXED, dbi);
}

/* Finds an entry of `dbi` naming `seq` and deletes it: SB_ENOTFOUND when
   there is none. */
static int s_unindex_one(MDB_txn *txn, MDB_dbi dbi, uint64_t seq)
{
    MDB_cursor *cursor;
    int rc = sbi_store_code(mdb_cursor_open(txn, dbi, &cursor));
    if (rc != SB_OK)
        return rc;
    MDB_val key, val;
    int mrc;
    for (mrc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT))
        if (val.mv_size == 8 && sbi_be64_get(val.mv_data) == seq)
            break;
    rc = mrc == 0 ? sbi_store_code(mdb_cursor_del(cursor, 0)) : sbi_store_code(mrc);
    mdb_cursor_close(cursor);
    return rc;
}

/* The index named `index`, and a forging transaction. */
static int s_begin_index(sbi_store_t *store, const char *index, MDB_dbi *dbi, s_forge_t *forge)
{
    int rc = s_index_dbi(store, index, dbi);
    return rc == SB_OK ? s_begin(store, forge) : rc;
}

int sbi_tamper_unindex(sbi_store_t *store, const char *index, uint64_t seq)
{
    MDB_dbi dbi;
    s_forge_t forge;
    int rc = s_begin_index(store, index, &dbi, &forge);
    if (rc != SB_OK)
        return rc;
    int deleted = 0;
    while ((rc = s_unindex_one(forge.txn, dbi, seq)) == SB_OK)
        deleted++;
    return s_end(&forge, rc == SB_ENOTFOUND && deleted ? SB_OK : rc);
}

int sbi_tamper_index_add(sbi_store_t *store, const char *index, const void *key, size_t size,
                         uint64_t seq)
{
    MDB_dbi dbi;
    s_forge_t forge;
    int rc = s_begin_index(store, index, &dbi, &forge);
    if (rc != SB_OK)
        return rc;
    uint8_t bytes[8];
    MDB_val k = {size, (void *)key}, v = s_key(bytes, seq);
    return s_end(&forge, sbi_store_code(mdb_put(forge.txn, dbi, &k, &v, 0)));
}

int sbi_tamper_meta(sbi_store_t *store, const char *name, uint64_t value)
{
    s_forge_t forge;
    int rc = s_begin(store, &forge);
    if (rc != SB_OK)
        return rc;
    uint8_t bytes[8];
    MDB_val k = {strlen(name), (void *)name}, v = s_key(bytes, value);
    return s_end(&forge, sbi_store_code(mdb_put(forge.txn, forge.meta, &k, &v, 0)));
}
