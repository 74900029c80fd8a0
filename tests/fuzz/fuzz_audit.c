/*  fuzz_audit - hostile bytes through every decoder of the audit store, as
    verify and query meet them: a stored entry (raw, and as record bytes
    wrapped in an entry whose hash holds, so the record decoder and the
    chain checks see them), a stored checkpoint, and a checkpoint line of
    the JSON files auditors hand to `sharebus-audit verify --checkpoint`. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char s_dir[64];
static sbi_store_t *s_store;
static sbi_audit_t *s_audit;
static uint8_t s_key[32];

static void s_cleanup(void)
{
    sbi_audit_close(&s_audit);
    sbi_store_close(&s_store);
    char path[128];
    snprintf(path, sizeof path, "%s/data.mdb", s_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", s_dir);
    unlink(path);
    rmdir(s_dir);
}

/* One store for the whole run, without fsync: the bytes matter, not the disk. */
static void s_setup(void)
{
    sbi_init();
    sbi_log_setup("fuzz_audit", SBI_LOG_ERROR);
    strcpy(s_dir, "/tmp/sb-fuzz-audit-XXXXXX");
    char err[256];
    if (!mkdtemp(s_dir) ||
        !(s_store = sbi_store_open(s_dir, 0, 8 << 20, 8 << 20, SBI_AUDIT_DBS, err, sizeof err)) ||
        !(s_audit = sbi_audit_open(s_store, err, sizeof err)))
        abort();
    mdb_env_set_flags(sbi_store_env(s_store), MDB_NOSYNC, 1);
    randombytes_buf(s_key, sizeof s_key);
    atexit(s_cleanup);
}

static int s_each(const Sharebus__AuditRecord *record, void *arg)
{
    json_object_put(sbi_audit_record_json(record, NULL));
    (*(int *)arg)++;
    return 0;
}

/* Stores `entry` as record 1 and runs verify and a few queries over it. */
static void s_through_store(const uint8_t *entry, size_t size)
{
    MDB_txn *txn;
    if (size > SBI_AUDIT_ENTRY_MAX || sbi_store_begin(s_store, true, &txn) != SB_OK)
        return;
    uint8_t key_bytes[8];
    sbi_be64_put(key_bytes, 1);
    MDB_val key = {8, key_bytes}, val = {size, (void *)entry};
    if (mdb_put(txn, s_audit->log, &key, &val, 0) != 0 || mdb_txn_commit(txn) != 0)
        return;
    sbi_audit_report_t report;
    if (sbi_audit_verify(s_audit, s_key, NULL, 0, &report) == SB_OK && report.records != 1)
        abort();
    int seen = 0;
    sbi_audit_filter_t all = {.limit = 2},
                       window = {.since_ms = 1, .until_ms = 1ull << 50, .purpose = "p"};
    (void)sbi_audit_query(s_audit, &all, s_each, &seen);
    (void)sbi_audit_query(s_audit, &window, s_each, &seen);
}

static void s_entry(const uint8_t *data, size_t size)
{
    sbi_audit_decoder_t decoder;
    sbi_audit_decoder_init(&decoder);
    Sharebus__AuditRecord *record;
    uint8_t hash[SBI_HASH_SIZE];
    if (sbi_audit_entry_decode(&decoder, data, size, &record, hash) == SB_OK)
        json_object_put(sbi_audit_record_json(record, hash));
    else if (!decoder.why)
        abort(); /* every refusal says why */
    sbi_audit_decoder_clear(&decoder);
}

/* The input as record bytes, in an entry whose hash holds. */
static void s_record(const uint8_t *data, size_t size)
{
    uint8_t hash[SBI_HASH_SIZE];
    crypto_generichash(hash, sizeof hash, data, size, NULL, 0);
    Sharebus__AuditEntry entry = SHAREBUS__AUDIT_ENTRY__INIT;
    entry.record = (ProtobufCBinaryData){size, (uint8_t *)data};
    entry.hash = (ProtobufCBinaryData){SBI_HASH_SIZE, hash};
    size_t packed_size = sharebus__audit_entry__get_packed_size(&entry);
    uint8_t *packed = malloc(packed_size);
    if (!packed)
        return;
    sharebus__audit_entry__pack(&entry, packed);
    s_entry(packed, packed_size);
    s_through_store(packed, packed_size);
    free(packed);
}

static void s_checkpoint(const uint8_t *data, size_t size)
{
    Sharebus__Checkpoint *cp;
    if (sbi_checkpoint_decode(data, size, &cp) == SB_OK) {
        if (sbi_checkpoint_verify(cp, s_key) == SB_OK)
            abort(); /* nobody holds s_key's secret */
        char *json = sbi_checkpoint_to_json(cp);
        Sharebus__Checkpoint *back;
        if (sbi_checkpoint_from_json(json, &back) != SB_OK || back->seq != cp->seq ||
            back->time_ms != cp->time_ms || strcmp(back->signer, cp->signer) != 0 ||
            memcmp(back->head_hash.data, cp->head_hash.data, SBI_HASH_SIZE) != 0)
            abort(); /* what we write, we must read back the same */
        sharebus__checkpoint__free_unpacked(back, NULL);
        free(json);
        sharebus__checkpoint__free_unpacked(cp, NULL);
    }
    char *text = malloc(size + 1);
    if (!text)
        return;
    memcpy(text, data, size);
    text[size] = 0;
    if (sbi_checkpoint_from_json(text, &cp) == SB_OK)
        sharebus__checkpoint__free_unpacked(cp, NULL);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!s_audit)
        s_setup();
    s_entry(data, size);
    s_through_store(data, size);
    s_record(data, size);
    s_checkpoint(data, size);
    return 0;
}
