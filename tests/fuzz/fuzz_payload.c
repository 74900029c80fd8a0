/*  fuzz_payload - hostile bytes as the plaintext of a sealed payload: opened
    by the real opener (sbi_envelope_open, bounded decoder) and then handed
    to what the broker and the agents do with each body:
      Record          the agents' and the library's checks and conversion
                      (sbi_record_pb_valid, sbi_record_from_pb, to JSON)
      PolicyBundle    the agent loads it (sbi_policy_load_bundle)
      Checkpoint      the agent verifies it and, when it holds, stores it
      SignedConsent   the broker's shape check of the Consent inside
      ConsentRevoke, ConsentQuery   the broker's checks
      ConsentList     every entry's consent, as the library lists them
    The checkpoint key is fixed (the seed of make_seeds), so seeds carry
    checkpoints that verify and reach the store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "consent.h"
#include "envelope.h"
#include "policy.h"
#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sbi_crypto_t *s_me;
static sbi_cert_t s_sender;
static uint8_t s_shared[crypto_box_BEFORENMBYTES];
static uint8_t s_checkpoint_key[32];
static char s_dir[64];
static sbi_store_t *s_store;
static sbi_audit_t *s_audit;

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

static void s_setup(void)
{
    sbi_init();
    sbi_log_setup("fuzz_payload", SBI_LOG_ERROR);
    sbi_keys_t keys;
    sbi_keys_generate(&keys, SBI_CERT_AGENCY);
    s_me = sbi_crypto_new(&keys);
    /* Sealed by "ourselves": the opener computes the same shared key. */
    memcpy(s_sender.box_public, keys.cert.box_public, 32);
    if (crypto_box_beforenm(s_shared, keys.cert.box_public, keys.box_secret) != 0)
        abort();
    sbi_keys_wipe(&keys);
    uint8_t seed[32], secret[64];
    memset(seed, 7, sizeof seed);   /* make_seeds.c signs with the same */
    crypto_sign_seed_keypair(s_checkpoint_key, secret, seed);
    strcpy(s_dir, "/tmp/sb-fuzz-payload-XXXXXX");
    char err[256];
    if (!mkdtemp(s_dir)
        || !(s_store = sbi_store_open(s_dir, 0, 8 << 20, 64 << 20, SBI_AUDIT_DBS, err, sizeof err))
        || !(s_audit = sbi_audit_open(s_store, err, sizeof err)))
        abort();
    mdb_env_set_flags(sbi_store_env(s_store), MDB_NOSYNC, 1);
    atexit(s_cleanup);
}

static void s_record(const Sharebus__Record *pb)
{
    bool valid = sbi_record_pb_valid(pb);
    sb_record_t *record = sbi_record_from_pb(pb);
    if (valid != (record != NULL))
        abort();    /* the agent and the library must agree */
    if (record) {
        free(sb_record_to_json(record));
        Sharebus__Record *again = sbi_record_pb(record);
        if (!again || !sbi_record_pb_valid(again) || again->n_fields != pb->n_fields)
            abort();
        sbi_record_pb_free(&again);
    }
    sb_record_destroy(&record);
}

static void s_checkpoint(const Sharebus__Checkpoint *cp)
{
    if (sbi_checkpoint_verify(cp, s_checkpoint_key) != SB_OK)
        return;
    MDB_txn *txn;
    if (sbi_store_begin(s_store, true, &txn) != SB_OK)
        abort();
    int rc = sbi_audit_store_checkpoint(s_audit, txn, cp);
    if (rc == SB_OK)
        mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
}

static void s_consent(ProtobufCBinaryData bytes)
{
    Sharebus__Consent *c = NULL;
    int rc = sbi_consent_decode(bytes, &c);
    if (rc == SB_OK && (!c || !sbi_consent_id_valid(c->id)))
        abort();
    if (c)
        sharebus__consent__free_unpacked(c, NULL);
}

static void s_body(const Sharebus__Payload *p)
{
    switch (p->body_case) {
    case SHAREBUS__PAYLOAD__BODY_RECORD: s_record(p->record); break;
    case SHAREBUS__PAYLOAD__BODY_POLICY: {
        zlistx_t *errors = zlistx_new();
        zlistx_set_destructor(errors, (zlistx_destructor_fn *) zstr_free);
        sbi_policy_t *policy = sbi_policy_load_bundle(p->policy, NULL, errors);
        if ((policy != NULL) != (zlistx_size(errors) == 0))
            abort();    /* a refusal always says why */
        sbi_policy_destroy(&policy);
        zlistx_destroy(&errors);
        break;
    }
    case SHAREBUS__PAYLOAD__BODY_CHECKPOINT: s_checkpoint(p->checkpoint); break;
    case SHAREBUS__PAYLOAD__BODY_CONSENT: s_consent(p->consent->consent); break;
    case SHAREBUS__PAYLOAD__BODY_REVOKE: {
        const Sharebus__ConsentRevoke *rv = p->revoke;
        volatile bool ok = *rv->id ? sbi_consent_id_valid(rv->id)
                                   : rv->subject_ref.len == SBI_HASH_SIZE;
        (void) ok;
        break;
    }
    case SHAREBUS__PAYLOAD__BODY_QUERY: break;
    case SHAREBUS__PAYLOAD__BODY_CONSENTS:
        for (size_t i = 0; i < p->consents->n_entries; i++)
            if (p->consents->entries[i]->signed_)
                s_consent(p->consents->entries[i]->signed_->consent);
        break;
    default: break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!s_me)
        s_setup();
    if (size > SBI_FRAME_MAX)
        return 0;
    size_t sealed_size = SBI_NONCE_SIZE + crypto_box_MACBYTES + size;
    uint8_t *sealed = malloc(sealed_size);
    memset(sealed, 0, SBI_NONCE_SIZE);
    crypto_box_easy_afternm(sealed + SBI_NONCE_SIZE, data, size, sealed, s_shared);
    Sharebus__Envelope envelope = SHAREBUS__ENVELOPE__INIT;
    envelope.payload = (ProtobufCBinaryData){sealed_size, sealed};
    sbi_envelope_t env = {.envelope = &envelope, .sender = &s_sender};
    Sharebus__Payload *payload = NULL;
    int rc = sbi_envelope_open(&env, s_me, &payload);
    if (rc == SB_OK)
        s_body(payload);
    if (payload)
        sharebus__payload__free_unpacked(payload, NULL);
    free(sealed);
    return 0;
}
