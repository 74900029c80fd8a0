/*  checkpoint.c - the broker's signed statements of its log head: making,
    storing, listing, verifying, and their stored and JSON forms. */
#include "audit_int.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#define S_CHECKPOINT_MAX 1024 /* a packed checkpoint is about 150 bytes */
#define S_CONFLICTS_MAX 8     /* conflicting checkpoints kept per seq */

void sbi_checkpoint_signed_bytes(uint64_t seq, const uint8_t head_hash[SBI_HASH_SIZE],
                                 uint64_t time_ms, uint8_t out[SBI_CHECKPOINT_SIGNED_SIZE])
{
    memcpy(out, "sharebus-checkpoint-v1", 22);
    sbi_be64_put(out + 22, seq);
    memcpy(out + 30, head_hash, SBI_HASH_SIZE);
    sbi_be64_put(out + 30 + SBI_HASH_SIZE, time_ms);
}

static bool s_shape_ok(const Sharebus__Checkpoint *cp)
{
    return cp->head_hash.len == SBI_HASH_SIZE && cp->signature.len == crypto_sign_BYTES &&
           sbi_agency_valid(cp->signer, true);
}

int sbi_checkpoint_verify(const Sharebus__Checkpoint *checkpoint, const uint8_t sign_public[32])
{
    assert(checkpoint && sign_public);
    if (!s_shape_ok(checkpoint))
        return SB_EMALFORMED;
    uint8_t signed_bytes[SBI_CHECKPOINT_SIGNED_SIZE];
    sbi_checkpoint_signed_bytes(checkpoint->seq, checkpoint->head_hash.data, checkpoint->time_ms,
                                signed_bytes);
    if (crypto_sign_verify_detached(checkpoint->signature.data, signed_bytes, sizeof signed_bytes,
                                    sign_public) != 0)
        return SB_EBADSIG;
    return SB_OK;
}

/* A checkpoint whose every part protobuf-c's default allocator can free. */
static Sharebus__Checkpoint *s_checkpoint_new(uint64_t seq, const uint8_t *head_hash,
                                              uint64_t time_ms, const char *signer,
                                              const uint8_t *signature)
{
    Sharebus__Checkpoint *cp = malloc(sizeof *cp);
    assert(cp);
    sharebus__checkpoint__init(cp);
    cp->seq = seq;
    cp->time_ms = time_ms;
    cp->head_hash.data = malloc(SBI_HASH_SIZE);
    cp->signature.data = malloc(crypto_sign_BYTES);
    cp->signer = strdup(signer);
    assert(cp->head_hash.data && cp->signature.data && cp->signer);
    cp->head_hash.len = SBI_HASH_SIZE;
    cp->signature.len = crypto_sign_BYTES;
    memcpy(cp->head_hash.data, head_hash, SBI_HASH_SIZE);
    memcpy(cp->signature.data, signature, crypto_sign_BYTES);
    return cp;
}

static int s_put(MDB_txn *txn, MDB_dbi dbi, const Sharebus__Checkpoint *cp, unsigned flags)
{
    uint8_t key_bytes[8];
    sbi_be64_put(key_bytes, cp->seq);
    MDB_val key = {8, key_bytes}, val = {sharebus__checkpoint__get_packed_size(cp), NULL};
    int rc = mdb_put(txn, dbi, &key, &val, MDB_RESERVE | flags);
    if (rc != 0)
        return sbi_store_code(rc);
    sharebus__checkpoint__pack(cp, val.mv_data);
    return SB_OK;
}

int sbi_audit_checkpoint(sbi_audit_t *self, MDB_txn *txn, const sbi_keys_t *keys,
                         Sharebus__Checkpoint **checkpoint_p)
{
    assert(self && txn && keys && checkpoint_p);
    *checkpoint_p = NULL;
    uint64_t now = sbi_now_ms();
    uint8_t signed_bytes[SBI_CHECKPOINT_SIGNED_SIZE], signature[crypto_sign_BYTES];
    sbi_checkpoint_signed_bytes(self->seq, self->hash, now, signed_bytes);
    crypto_sign_detached(signature, NULL, signed_bytes, sizeof signed_bytes, keys->sign_secret);
    Sharebus__Checkpoint *cp =
        s_checkpoint_new(self->seq, self->hash, now, keys->cert.agency, signature);
    int rc = s_put(txn, self->checkpoints, cp, 0);
    if (rc != SB_OK) {
        sharebus__checkpoint__free_unpacked(cp, NULL);
        return rc;
    }
    *checkpoint_p = cp;
    return SB_OK;
}

/* Keeps `cp`, which names another head than the held checkpoint of its
   seq, under seq || BLAKE2b(its bytes without the time of receipt): the
   same one twice is one entry, with its first receipt, and at most
   S_CONFLICTS_MAX are kept per seq (a broker that signs more adds nothing
   an auditor needs). */
static int s_put_conflict(sbi_audit_t *self, MDB_txn *txn, const Sharebus__Checkpoint *cp,
                          const uint8_t *packed, size_t size)
{
    uint8_t key_bytes[8 + SBI_HASH_SIZE], signed_part[S_CHECKPOINT_MAX];
    Sharebus__Checkpoint unreceived = *cp;
    unreceived.received_ms = 0;
    sbi_be64_put(key_bytes, cp->seq);
    crypto_generichash(key_bytes + 8, SBI_HASH_SIZE, signed_part,
                       sharebus__checkpoint__pack(&unreceived, signed_part), NULL, 0);
    MDB_cursor *cursor;
    int rc = mdb_cursor_open(txn, self->conflicts, &cursor);
    if (rc != 0)
        return sbi_store_code(rc);
    MDB_val key = {8, key_bytes}, val;
    size_t held = 0;
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE);
         rc == 0 && key.mv_size == sizeof key_bytes && memcmp(key.mv_data, key_bytes, 8) == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT))
        held++;
    mdb_cursor_close(cursor);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return sbi_store_code(rc);
    if (held >= S_CONFLICTS_MAX)
        return SB_OK;
    key = (MDB_val){sizeof key_bytes, key_bytes};
    val = (MDB_val){size, (void *)packed};
    rc = mdb_put(txn, self->conflicts, &key, &val, MDB_NOOVERWRITE);
    return rc == 0 || rc == MDB_KEYEXIST ? SB_OK : sbi_store_code(rc);
}

int sbi_audit_store_checkpoint(sbi_audit_t *self, MDB_txn *txn,
                               const Sharebus__Checkpoint *checkpoint)
{
    assert(self && txn && checkpoint);
    assert(!self->readonly);
    if (!s_shape_ok(checkpoint))
        return SB_EMALFORMED;
    uint8_t key_bytes[8];
    sbi_be64_put(key_bytes, checkpoint->seq);
    MDB_val key = {8, key_bytes}, held;
    int rc = mdb_get(txn, self->received, &key, &held);
    if (rc == MDB_NOTFOUND)
        return s_put(txn, self->received, checkpoint, MDB_NOOVERWRITE);
    if (rc != 0)
        return sbi_store_code(rc);
    /* Held already: it is never replaced. The same head again (a resend,
       or the head signed again at another time) changes nothing, its
       time of receipt included: the first is kept. */
    size_t size = sharebus__checkpoint__get_packed_size(checkpoint);
    uint8_t packed[S_CHECKPOINT_MAX];
    if (size > sizeof packed)
        return SB_ETOOBIG;
    sharebus__checkpoint__pack(checkpoint, packed);
    if (held.mv_size == size && memcmp(held.mv_data, packed, size) == 0)
        return SB_OK;
    Sharebus__Checkpoint *old;
    bool same_head = sbi_checkpoint_decode(held.mv_data, held.mv_size, &old) == SB_OK &&
                     memcmp(old->head_hash.data, checkpoint->head_hash.data, SBI_HASH_SIZE) == 0;
    if (old)
        sharebus__checkpoint__free_unpacked(old, NULL);
    if (same_head)
        return SB_OK;
    rc = s_put_conflict(self, txn, checkpoint, packed, size);
    return rc == SB_OK ? SB_EEXISTS : rc;
}

int sbi_checkpoint_decode(const uint8_t *data, size_t size, Sharebus__Checkpoint **checkpoint_p)
{
    *checkpoint_p = NULL;
    if (size > S_CHECKPOINT_MAX)
        return SB_ETOOBIG;
    sbi_unpack_t unpack;
    Sharebus__Checkpoint *cp =
        sharebus__checkpoint__unpack(sbi_unpack_init(&unpack, size), size, data);
    if (!cp)
        return SB_EMALFORMED;
    if (!s_shape_ok(cp)) {
        sharebus__checkpoint__free_unpacked(cp, NULL);
        return SB_EMALFORMED;
    }
    *checkpoint_p = cp;
    return SB_OK;
}

static int s_each_stored(sbi_audit_t *self, MDB_dbi dbi,
                         int (*each)(const Sharebus__Checkpoint *checkpoint, void *arg), void *arg)
{
    MDB_txn *txn;
    int rc = sbi_store_begin(self->store, false, &txn);
    if (rc != SB_OK)
        return rc;
    MDB_cursor *cursor;
    rc = sbi_store_code(mdb_cursor_open(txn, dbi, &cursor));
    if (rc != SB_OK) {
        mdb_txn_abort(txn);
        return rc;
    }
    MDB_val key, val;
    int result = SB_OK, mrc;
    for (mrc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        Sharebus__Checkpoint *cp;
        if (sbi_checkpoint_decode(val.mv_data, val.mv_size, &cp) != SB_OK) {
            sbi_warning("stored checkpoint %" PRIu64 " does not decode",
                        key.mv_size >= 8 ? sbi_be64_get(key.mv_data) : 0);
            result = SB_EMALFORMED;
            continue;
        }
        int stop = each(cp, arg);
        sharebus__checkpoint__free_unpacked(cp, NULL);
        if (stop)
            break;
    }
    if (mrc != 0 && mrc != MDB_NOTFOUND)
        result = sbi_store_code(mrc);
    mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
    return result;
}

int sbi_audit_checkpoints(sbi_audit_t *self, bool received,
                          int (*each)(const Sharebus__Checkpoint *checkpoint, void *arg), void *arg)
{
    assert(self && each);
    return s_each_stored(self, received ? self->received : self->checkpoints, each, arg);
}

int sbi_audit_conflicts(sbi_audit_t *self,
                        int (*each)(const Sharebus__Checkpoint *checkpoint, void *arg), void *arg)
{
    assert(self && each);
    if (!self->has_conflicts)
        return SB_OK;
    return s_each_stored(self, self->conflicts, each, arg);
}

int sbi_audit_checkpoint_latest(sbi_audit_t *self, bool received,
                                Sharebus__Checkpoint **checkpoint_p)
{
    assert(self && checkpoint_p);
    *checkpoint_p = NULL;
    MDB_txn *txn;
    int rc = sbi_store_begin(self->store, false, &txn);
    if (rc != SB_OK)
        return rc;
    MDB_cursor *cursor;
    rc = sbi_store_code(
        mdb_cursor_open(txn, received ? self->received : self->checkpoints, &cursor));
    MDB_val key, val;
    if (rc == SB_OK) {
        rc = sbi_store_code(mdb_cursor_get(cursor, &key, &val, MDB_LAST));
        if (rc == SB_OK)
            rc = sbi_checkpoint_decode(val.mv_data, val.mv_size, checkpoint_p);
        mdb_cursor_close(cursor);
    }
    mdb_txn_abort(txn);
    return rc;
}

/* ------------------------------------------------------------ JSON form */

char *sbi_checkpoint_to_json(const Sharebus__Checkpoint *cp)
{
    assert(cp);
    char when[32], hash[2 * SBI_HASH_SIZE + 1], sig[2 * crypto_sign_BYTES + 1];
    bool ok = s_shape_ok(cp);
    json_object *obj = json_object_new_object();
    json_object_object_add(obj, "seq", json_object_new_uint64(cp->seq));
    json_object_object_add(
        obj, "head_hash",
        json_object_new_string(ok ? sbi_hex(cp->head_hash.data, SBI_HASH_SIZE, hash) : ""));
    json_object_object_add(obj, "time_ms", json_object_new_uint64(cp->time_ms));
    json_object_object_add(obj, "time",
                           json_object_new_string(sbi_time_format(cp->time_ms, when, sizeof when)));
    json_object_object_add(obj, "signer", json_object_new_string(cp->signer ? cp->signer : ""));
    json_object_object_add(
        obj, "signature",
        json_object_new_string(ok ? sbi_hex(cp->signature.data, crypto_sign_BYTES, sig) : ""));
    if (cp->received_ms) {      /* an agency's copy: when it came, by the agency's clock */
        json_object_object_add(obj, "received_ms", json_object_new_uint64(cp->received_ms));
        json_object_object_add(
            obj, "received",
            json_object_new_string(sbi_time_format(cp->received_ms, when, sizeof when)));
    }
    char *text = strdup(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN));
    json_object_put(obj);
    assert(text);
    return text;
}

static bool s_json_hex(json_object *obj, const char *name, uint8_t *out, size_t size)
{
    json_object *value;
    if (!json_object_object_get_ex(obj, name, &value) ||
        !json_object_is_type(value, json_type_string))
        return false;
    const char *hex = json_object_get_string(value);
    size_t got = 0;
    const char *end;
    return strlen(hex) == 2 * size &&
           sodium_hex2bin(out, size, hex, 2 * size, NULL, &got, &end) == 0 && got == size &&
           *end == 0;
}

static bool s_json_u64(json_object *obj, const char *name, uint64_t *out)
{
    json_object *value;
    if (!json_object_object_get_ex(obj, name, &value) || !json_object_is_type(value, json_type_int))
        return false;
    errno = 0;
    *out = json_object_get_uint64(value);
    return errno == 0 && json_object_get_int64(value) >= 0;
}

int sbi_checkpoint_from_json(const char *text, Sharebus__Checkpoint **checkpoint_p)
{
    assert(text && checkpoint_p);
    *checkpoint_p = NULL;
    json_object *obj = json_tokener_parse(text);
    uint8_t hash[SBI_HASH_SIZE], signature[crypto_sign_BYTES];
    uint64_t seq, time_ms, received_ms = 0;
    json_object *signer;
    bool ok = obj && json_object_is_type(obj, json_type_object) && s_json_u64(obj, "seq", &seq) &&
              s_json_u64(obj, "time_ms", &time_ms) &&
              s_json_hex(obj, "head_hash", hash, sizeof hash) &&
              s_json_hex(obj, "signature", signature, sizeof signature) &&
              json_object_object_get_ex(obj, "signer", &signer) &&
              json_object_is_type(signer, json_type_string) &&
              sbi_agency_valid(json_object_get_string(signer), true) &&
              (!json_object_object_get_ex(obj, "received_ms", NULL) ||
               s_json_u64(obj, "received_ms", &received_ms));
    if (ok) {
        *checkpoint_p =
            s_checkpoint_new(seq, hash, time_ms, json_object_get_string(signer), signature);
        (*checkpoint_p)->received_ms = received_ms;
    }
    json_object_put(obj);
    return ok ? SB_OK : SB_EMALFORMED;
}
