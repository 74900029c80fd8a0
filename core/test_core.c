/*  test_core.c - certificates, revocation, trust and envelopes. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#include "envelope.h"
#include "store.h"
#include "testing.h"

typedef struct {
    char dir[64];
    sbi_keys_t root;
    sbi_keys_t a, b;    /* agencies "nhis" and "koroad" */
} fixture_t;

static void s_issue(fixture_t *f, sbi_keys_t *keys, const char *agency, uint64_t serial,
                    int64_t valid_from_s, int64_t valid_to_s)
{
    sbi_keys_generate(keys, SBI_CERT_AGENCY);
    strcpy(keys->cert.agency, agency);
    strcpy(keys->cert.name, agency);
    keys->cert.serial = serial;
    uint64_t now = sbi_now_ms() / 1000 * 1000;
    keys->cert.not_before_ms = now + (uint64_t) (valid_from_s * 1000);
    keys->cert.not_after_ms = now + (uint64_t) (valid_to_s * 1000);
    sbi_cert_sign(&keys->cert, f->root.sign_secret);
    char path[128];
    snprintf(path, sizeof path, "%s/%s.cert", f->dir, agency);
    unlink(path);
    CHECK_EQ(sbi_cert_save(&keys->cert, path), SB_OK);
}

static void s_fixture(fixture_t *f)
{
    strcpy(f->dir, "/tmp/sb-test-core-XXXXXX");
    CHECK(mkdtemp(f->dir));
    sbi_keys_generate(&f->root, SBI_CERT_ROOT);
    strcpy(f->root.cert.agency, "root");
    strcpy(f->root.cert.name, "root");
    f->root.cert.not_before_ms = 0;
    f->root.cert.not_after_ms = 4102444800000ull;
    sbi_cert_sign(&f->root.cert, f->root.sign_secret);
    char path[128];
    snprintf(path, sizeof path, "%s/root.cert", f->dir);
    CHECK_EQ(sbi_cert_save(&f->root.cert, path), SB_OK);
    s_issue(f, &f->a, "nhis", 1, -10, 3600);
    s_issue(f, &f->b, "koroad", 2, -10, 3600);
}

static void s_cleanup(fixture_t *f)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    CHECK_EQ(system(cmd), 0);
}

static sbi_trust_t *s_trust(fixture_t *f)
{
    char err[256];
    sbi_trust_t *trust = sbi_trust_new(f->dir, err, sizeof err);
    if (!trust)
        fprintf(stderr, "  trust: %s\n", err);
    CHECK(trust);
    return trust;
}

/* A sealed request from a to b carrying one text field. */
static zframe_t *s_sealed(fixture_t *f, sbi_keys_t *from, sbi_keys_t *to)
{
    sbi_crypto_t *crypto = sbi_crypto_new(from);
    sbi_header_t h;
    sbi_header_init(&h, SHAREBUS__KIND__KIND_REQUEST, from->cert.agency, to->cert.agency);
    h.header.dataset = "health.checkup";
    h.header.purpose = "driver-licence-renewal";
    Sharebus__Field field = SHAREBUS__FIELD__INIT, *fields[] = {&field};
    field.name = "vision_left";
    field.value_case = SHAREBUS__FIELD__VALUE_TEXT;
    field.text = "1.0";
    Sharebus__Record record = SHAREBUS__RECORD__INIT;
    record.n_fields = 1;
    record.fields = fields;
    Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
    payload.subject_id = "900101-1234567";
    payload.body_case = SHAREBUS__PAYLOAD__BODY_RECORD;
    payload.record = &record;
    zframe_t *frame = NULL;
    CHECK_EQ(sbi_envelope_seal(crypto, &to->cert, &h.header, &payload, &frame), SB_OK);
    sbi_crypto_destroy(&crypto);
    CHECK(crypto == NULL);
    return frame;
}

/* Decode, verify as an agent does (the MAC when there is one, else the
   signature) and open as `me`: the first failing code, or SB_OK. */
static int s_receive(sbi_trust_t *trust, sbi_keys_t *me, const uint8_t *data, size_t size)
{
    sbi_envelope_t env;
    int rc = sbi_envelope_decode(&env, data, size);
    if (rc != SB_OK)
        return rc;
    /* As an agent does: the broker's envelopes by their signature, another
       agency's by the MAC it must carry. */
    sbi_crypto_t *crypto = sbi_crypto_new(me);
    if (strcmp(env.header->from, "broker") == 0)
        rc = sbi_envelope_verify(&env, trust, NULL, sbi_now_ms());
    else
        rc = sbi_envelope_verify_mac(&env, trust, crypto, sbi_now_ms());
    Sharebus__Payload *payload = NULL;
    if (rc == SB_OK)
        rc = sbi_envelope_open(&env, crypto, &payload);
    sbi_crypto_destroy(&crypto);
    if (payload)
        sharebus__payload__free_unpacked(payload, NULL);
    sbi_envelope_clear(&env);
    return rc;
}

/* The decoded envelope packed again, as a rogue sender or broker would. */
static zframe_t *s_repacked(const sbi_envelope_t *env)
{
    zframe_t *frame = zframe_new(NULL, sharebus__envelope__get_packed_size(env->envelope));
    sharebus__envelope__pack(env->envelope, zframe_data(frame));
    return frame;
}

TEST(test_agency_ids_are_checked)
{
    CHECK(sbi_agency_valid("nhis", false));
    CHECK(sbi_agency_valid("police.seoul-1", false));
    CHECK(!sbi_agency_valid("NHIS", false));
    CHECK(!sbi_agency_valid("-nhis", false));
    CHECK(!sbi_agency_valid("", false));
    CHECK(!sbi_agency_valid("a/b", false));
    CHECK(!sbi_agency_valid("abcdefghijklmnopqrstuvwxyz0123456", false));
    CHECK(!sbi_agency_valid("broker", false));
    CHECK(sbi_agency_valid("broker", true));
}

TEST(test_subject_ref_ignores_formatting_but_not_the_key)
{
    uint8_t key[32] = {1}, other[32] = {2}, r1[32], r2[32], r3[32];
    CHECK_EQ(sbi_subject_ref(key, "900101-1234567", r1), SB_OK);
    CHECK_EQ(sbi_subject_ref(key, " 9001011234567 ", r2), SB_OK);
    CHECK_EQ(sbi_subject_ref(other, "900101-1234567", r3), SB_OK);
    CHECK(memcmp(r1, r2, 32) == 0);
    CHECK(memcmp(r1, r3, 32) != 0);
    CHECK_EQ(sbi_subject_ref(key, " - ", r1), SB_EINVAL);
}

TEST(test_certificate_round_trips_and_verifies)
{
    fixture_t f;
    s_fixture(&f);
    char path[128];
    snprintf(path, sizeof path, "%s/nhis.cert", f.dir);
    sbi_cert_t cert;
    CHECK_EQ(sbi_cert_load(path, &cert), SB_OK);
    CHECK_STR(cert.agency, "nhis");
    CHECK(memcmp(cert.box_public, f.a.cert.box_public, 32) == 0);
    CHECK_EQ(sbi_cert_verify(&cert, f.root.cert.sign_public), SB_OK);
    /* zauth must be able to read it as a CURVE certificate. */
    zcert_t *zcert = zcert_load(path);
    CHECK(zcert && memcmp(zcert_public_key(zcert), cert.curve_public, 32) == 0);
    zcert_destroy(&zcert);
    s_cleanup(&f);
}

TEST(test_tampered_certificate_is_rejected)
{
    fixture_t f;
    s_fixture(&f);
    sbi_cert_t cert = f.a.cert;
    strcpy(cert.agency, "koroad");
    CHECK_EQ(sbi_cert_verify(&cert, f.root.cert.sign_public), SB_EBADCERT);
    cert = f.a.cert;
    cert.not_after_ms += 1000;
    CHECK_EQ(sbi_cert_verify(&cert, f.root.cert.sign_public), SB_EBADCERT);
    s_cleanup(&f);
}

TEST(test_certificate_from_another_root_is_rejected)
{
    fixture_t f, g;
    s_fixture(&f);
    s_fixture(&g);
    CHECK_EQ(sbi_cert_verify(&g.a.cert, f.root.cert.sign_public), SB_EBADCERT);
    /* and the trust store leaves it out */
    char path[128];
    snprintf(path, sizeof path, "%s/stranger.cert", f.dir);
    sbi_cert_t stranger = g.a.cert;
    strcpy(stranger.agency, "stranger");
    CHECK_EQ(sbi_cert_save(&stranger, path), SB_OK);
    sbi_trust_t *trust = s_trust(&f);
    CHECK(trust && sbi_trust_find(trust, "stranger") == NULL);
    sbi_trust_destroy(&trust);
    s_cleanup(&f);
    s_cleanup(&g);
}

TEST(test_garbage_certificate_text_is_malformed)
{
    sbi_cert_t cert;
    CHECK_EQ(sbi_cert_parse("", &cert), SB_EMALFORMED);
    CHECK_EQ(sbi_cert_parse("metadata\n    kind = \"agency\"\n", &cert), SB_EMALFORMED);
    CHECK_EQ(sbi_cert_parse("\x01\x02\xff garbage", &cert), SB_EMALFORMED);
    CHECK_EQ(sbi_cert_load("/nonexistent/x.cert", &cert), SB_EIO);
}

TEST(test_secret_keys_are_private_and_round_trip)
{
    fixture_t f;
    s_fixture(&f);
    char path[128];
    snprintf(path, sizeof path, "%s/nhis.key", f.dir);
    CHECK_EQ(sbi_keys_save(&f.a, path), SB_OK);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK_EQ(sbi_keys_save(&f.a, path), SB_EEXISTS);
    sbi_keys_t keys;
    CHECK_EQ(sbi_keys_load(path, &keys), SB_OK);
    CHECK(memcmp(keys.sign_secret, f.a.sign_secret, 64) == 0);
    CHECK(memcmp(keys.cert.box_public, f.a.cert.box_public, 32) == 0);
    CHECK(memcmp(keys.cert.curve_public, f.a.cert.curve_public, 32) == 0);
    sbi_keys_wipe(&keys);
    uint8_t zero[64] = {0};
    CHECK(memcmp(keys.sign_secret, zero, 64) == 0);
    s_cleanup(&f);
}

TEST(test_revocation_list_is_signed_and_honoured)
{
    fixture_t f;
    s_fixture(&f);
    char path[128];
    snprintf(path, sizeof path, "%s/revoked.crl", f.dir);
    sbi_crl_t crl = {0};
    CHECK_EQ(sbi_crl_add(&crl, "nhis", 1, sbi_now_ms()), SB_OK);
    CHECK_EQ(sbi_crl_save(&crl, f.root.sign_secret, path), SB_OK);
    sbi_crl_clear(&crl);
    CHECK_EQ(sbi_crl_load(path, &crl), SB_OK);
    CHECK_EQ(crl.count, 1);
    CHECK_EQ(sbi_crl_verify(&crl, f.root.cert.sign_public), SB_OK);
    crl.entries[0].serial = 2;
    CHECK_EQ(sbi_crl_verify(&crl, f.root.cert.sign_public), SB_EBADCERT);
    sbi_crl_clear(&crl);

    sbi_trust_t *trust = s_trust(&f);
    CHECK(sbi_trust_find(trust, "nhis") == NULL);
    CHECK_EQ(sbi_trust_check(trust, &f.a.cert, sbi_now_ms()), SB_EREVOKED);
    CHECK_EQ(sbi_trust_check(trust, &f.b.cert, sbi_now_ms()), SB_OK);
    CHECK(sbi_trust_by_curve(trust, f.b.cert.curve_public) != NULL);
    sbi_trust_destroy(&trust);
    CHECK(trust == NULL);
    sbi_trust_destroy(&trust);
    s_cleanup(&f);
}

TEST(test_forged_revocation_list_stops_the_trust_store)
{
    fixture_t f, g;
    s_fixture(&f);
    s_fixture(&g);
    char path[128];
    snprintf(path, sizeof path, "%s/revoked.crl", f.dir);
    sbi_crl_t crl = {0};
    CHECK_EQ(sbi_crl_save(&crl, g.root.sign_secret, path), SB_OK);
    char err[256];
    sbi_trust_t *trust = sbi_trust_new(f.dir, err, sizeof err);
    CHECK(trust == NULL);
    CHECK(strstr(err, "not signed by the root") != NULL);
    s_cleanup(&f);
    s_cleanup(&g);
}

TEST(test_sealed_envelope_opens_for_its_recipient_only)
{
    fixture_t f;
    s_fixture(&f);
    sbi_trust_t *trust = s_trust(&f);
    zframe_t *frame = s_sealed(&f, &f.b, &f.a);
    CHECK_EQ(s_receive(trust, &f.a, zframe_data(frame), zframe_size(frame)), SB_OK);
    /* koroad, the sender, cannot open what it sealed for nhis */
    CHECK_EQ(s_receive(trust, &f.b, zframe_data(frame), zframe_size(frame)), SB_EBADSIG);

    sbi_envelope_t env;
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(frame), zframe_size(frame)), SB_OK);
    CHECK_STR(env.header->from, "koroad");
    CHECK_EQ(sbi_envelope_verify(&env, trust, NULL, sbi_now_ms()), SB_OK);
    Sharebus__Payload *payload = NULL;
    sbi_crypto_t *crypto = sbi_crypto_new(&f.a);
    CHECK_EQ(sbi_envelope_open(&env, crypto, &payload), SB_OK);
    CHECK(payload && payload->record && payload->record->n_fields == 1);
    CHECK_STR(payload->subject_id, "900101-1234567");
    sharebus__payload__free_unpacked(payload, NULL);
    sbi_crypto_destroy(&crypto);
    sbi_envelope_clear(&env);
    zframe_destroy(&frame);
    sbi_trust_destroy(&trust);
    s_cleanup(&f);
}

/* Every bit of the envelope, the signature and the MAC included, is
   covered; a flip in the MAC's own protobuf tag leaves an envelope without
   a MAC, which an agency's envelope may not be. */
TEST(test_every_flipped_bit_is_rejected)
{
    fixture_t f;
    s_fixture(&f);
    sbi_trust_t *trust = s_trust(&f);
    zframe_t *frame = s_sealed(&f, &f.b, &f.a);
    size_t size = zframe_size(frame);
    CHECK_EQ(zframe_data(frame)[size - SBI_MAC_SIZE - 2], 0x22);   /* mac = 4, packed last */
    uint8_t *copy = malloc(size);
    int accepted = 0, tested = 0;
    for (size_t bit = 0; bit < size * 8; bit++) {
        memcpy(copy, zframe_data(frame), size);
        copy[bit / 8] ^= (uint8_t) (1u << (bit % 8));
        int rc = s_receive(trust, &f.a, copy, size);
        tested++;
        if (rc == SB_OK)
            accepted++;
        else if (rc != SB_EMALFORMED && rc != SB_EBADSIG && rc != SB_EUNKNOWN)
            fprintf(stderr, "  bit %zu: unexpected %s\n", bit, sb_errname(rc)), accepted++;
    }
    CHECK(tested > 1000);
    CHECK_EQ(accepted, 0);
    free(copy);
    zframe_destroy(&frame);
    sbi_trust_destroy(&trust);
    s_cleanup(&f);
}

/* `count` requests from b to a, signed together: their frames in frames[]. */
static void s_batch(fixture_t *f, size_t count, zframe_t **frames)
{
    sbi_crypto_t *crypto = sbi_crypto_new(&f->b);
    sbi_sealed_t *sealed[16];
    CHECK(count <= 16);
    for (size_t i = 0; i < count; i++) {
        sbi_header_t h;
        sbi_header_init(&h, SHAREBUS__KIND__KIND_REQUEST, f->b.cert.agency, f->a.cert.agency);
        h.header.dataset = "health.checkup";
        h.header.purpose = "driver-licence-renewal";
        Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
        payload.subject_id = "900101-1234567";
        CHECK_EQ(sbi_envelope_seal_later(crypto, &f->a.cert, &h.header, &payload, &sealed[i]),
                 SB_OK);
    }
    sbi_envelope_sign_batch(crypto, sealed, count, frames);
    for (size_t i = 0; i < count; i++)
        CHECK(sealed[i] == NULL);
    sbi_crypto_destroy(&crypto);
}

/* As the broker checks an envelope from b's connection, `like` as its
   verify thread would pass it: SB_OK or the code. */
static int s_broker_check(sbi_trust_t *trust, fixture_t *f, const uint8_t *data, size_t size,
                          const sbi_envelope_t *like)
{
    sbi_envelope_t env;
    int rc = sbi_envelope_decode(&env, data, size);
    if (rc == SB_OK)
        rc = sbi_envelope_verify_like(&env, trust, sbi_trust_find(trust, f->b.cert.agency), like,
                                      sbi_now_ms());
    sbi_envelope_clear(&env);
    return rc;
}

TEST(test_batch_signature_proves_each_envelope)
{
    fixture_t f;
    s_fixture(&f);
    sbi_trust_t *trust = s_trust(&f);
    zframe_t *frames[5];
    s_batch(&f, 5, frames);
    for (size_t i = 0; i < 5; i++) {
        sbi_envelope_t env;
        CHECK_EQ(sbi_envelope_decode(&env, zframe_data(frames[i]), zframe_size(frames[i])), SB_OK);
        CHECK(env.batched);
        CHECK_EQ(env.envelope->batch_index, i);
        CHECK_EQ(env.envelope->batch_path.len, 3 * SBI_HASH_SIZE);   /* 5 leaves: 8 wide */
        sbi_envelope_clear(&env);
        CHECK_EQ(s_broker_check(trust, &f, zframe_data(frames[i]), zframe_size(frames[i]), NULL),
                 SB_OK);
        CHECK_EQ(s_receive(trust, &f.a, zframe_data(frames[i]), zframe_size(frames[i])), SB_OK);
        zframe_destroy(&frames[i]);
    }
    /* One alone is signed over its header, with no path: as sbi_envelope_seal makes. */
    s_batch(&f, 1, frames);
    sbi_envelope_t env;
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(frames[0]), zframe_size(frames[0])), SB_OK);
    CHECK(!env.batched && env.envelope->batch_path.len == 0);
    CHECK_EQ(sbi_envelope_verify(&env, trust, NULL, sbi_now_ms()), SB_OK);
    sbi_envelope_clear(&env);
    zframe_destroy(&frames[0]);
    sbi_trust_destroy(&trust);
    s_cleanup(&f);
}

TEST(test_batch_signature_does_not_cover_a_changed_envelope)
{
    fixture_t f;
    s_fixture(&f);
    sbi_trust_t *trust = s_trust(&f);
    const sbi_cert_t *b = sbi_trust_find(trust, f.b.cert.agency);
    zframe_t *frames[6], *other[2];
    s_batch(&f, 6, frames);
    s_batch(&f, 2, other);
    /* The first one verified; the broker's thread passes it as `like`. */
    sbi_envelope_t like;
    CHECK_EQ(sbi_envelope_decode(&like, zframe_data(frames[0]), zframe_size(frames[0])), SB_OK);
    CHECK_EQ(sbi_envelope_verify_like(&like, trust, b, NULL, sbi_now_ms()), SB_OK);
    CHECK_EQ(like.public_key_ops, 1);
    sbi_envelope_t env;
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(frames[1]), zframe_size(frames[1])), SB_OK);
    CHECK_EQ(sbi_envelope_verify_like(&env, trust, b, &like, sbi_now_ms()), SB_OK);
    CHECK_EQ(env.public_key_ops, 0);      /* the shortcut */
    sbi_envelope_clear(&env);

    zframe_t *changed;
    /* A header byte changed (the dataset's last letter): its leaf, so its
       root, is no longer the one signed, `like` or not. */
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(frames[2]), zframe_size(frames[2])), SB_OK);
    uint8_t *at = memmem(env.envelope->header.data, env.envelope->header.len, "checkup", 7);
    CHECK(at);
    at[6] ^= 1;
    changed = s_repacked(&env);
    sbi_envelope_clear(&env);
    CHECK_EQ(s_broker_check(trust, &f, zframe_data(changed), zframe_size(changed), &like),
             SB_EBADSIG);
    zframe_destroy(&changed);
    /* A bit of the path, and another index. */
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(frames[3]), zframe_size(frames[3])), SB_OK);
    env.envelope->batch_path.data[40] ^= 4;
    changed = s_repacked(&env);
    env.envelope->batch_path.data[40] ^= 4;
    CHECK_EQ(s_broker_check(trust, &f, zframe_data(changed), zframe_size(changed), &like),
             SB_EBADSIG);
    zframe_destroy(&changed);
    env.envelope->batch_index = 4;
    changed = s_repacked(&env);
    CHECK_EQ(s_broker_check(trust, &f, zframe_data(changed), zframe_size(changed), &like),
             SB_EBADSIG);
    zframe_destroy(&changed);
    /* Paths that are not whole hashes, too long, or an index beyond one. */
    ProtobufCBinaryData path = env.envelope->batch_path;
    uint8_t long_path[9 * SBI_HASH_SIZE] = {0};
    env.envelope->batch_index = 3;
    env.envelope->batch_path.len = path.len - 1;
    changed = s_repacked(&env);
    CHECK_EQ(s_broker_check(trust, &f, zframe_data(changed), zframe_size(changed), NULL),
             SB_EMALFORMED);
    zframe_destroy(&changed);
    env.envelope->batch_path = (ProtobufCBinaryData){sizeof long_path, long_path};
    changed = s_repacked(&env);
    CHECK_EQ(s_broker_check(trust, &f, zframe_data(changed), zframe_size(changed), NULL),
             SB_EMALFORMED);
    zframe_destroy(&changed);
    env.envelope->batch_path = path;
    env.envelope->batch_index = 8;
    changed = s_repacked(&env);
    CHECK_EQ(s_broker_check(trust, &f, zframe_data(changed), zframe_size(changed), NULL),
             SB_EMALFORMED);
    zframe_destroy(&changed);
    env.envelope->batch_index = 0;
    env.envelope->batch_path = (ProtobufCBinaryData){0, NULL};
    env.envelope->batch_index = 2;
    changed = s_repacked(&env);
    CHECK_EQ(s_broker_check(trust, &f, zframe_data(changed), zframe_size(changed), NULL),
             SB_EMALFORMED);
    zframe_destroy(&changed);
    env.envelope->batch_path = path;
    sbi_envelope_clear(&env);
    /* Another batch's envelope carrying this batch's signature. */
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(other[0]), zframe_size(other[0])), SB_OK);
    ProtobufCBinaryData own = env.envelope->signature;
    env.envelope->signature = like.envelope->signature;
    changed = s_repacked(&env);
    env.envelope->signature = own;
    sbi_envelope_clear(&env);
    CHECK_EQ(s_broker_check(trust, &f, zframe_data(changed), zframe_size(changed), &like),
             SB_EBADSIG);
    zframe_destroy(&changed);
    /* The rest of the batch passes, with the shortcut. */
    CHECK_EQ(s_broker_check(trust, &f, zframe_data(frames[4]), zframe_size(frames[4]), &like),
             SB_OK);
    sbi_envelope_clear(&like);
    for (size_t i = 0; i < 6; i++)
        zframe_destroy(&frames[i]);
    zframe_destroy(&other[0]);
    zframe_destroy(&other[1]);
    sbi_trust_destroy(&trust);
    s_cleanup(&f);
}

TEST(test_every_flipped_bit_of_a_batched_envelope_is_rejected)
{
    fixture_t f;
    s_fixture(&f);
    sbi_trust_t *trust = s_trust(&f);
    zframe_t *frames[3];
    s_batch(&f, 3, frames);
    size_t size = zframe_size(frames[1]);
    uint8_t *copy = malloc(size);
    int accepted = 0, tested = 0;
    /* Refused by the broker (signature, path) or by the recipient (MAC). */
    for (size_t bit = 0; bit < size * 8; bit++) {
        memcpy(copy, zframe_data(frames[1]), size);
        copy[bit / 8] ^= (uint8_t) (1u << (bit % 8));
        tested++;
        if (s_broker_check(trust, &f, copy, size, NULL) == SB_OK
            && s_receive(trust, &f.a, copy, size) == SB_OK)
            accepted++;
    }
    CHECK(tested > 1000);
    CHECK_EQ(accepted, 0);
    free(copy);
    for (size_t i = 0; i < 3; i++)
        zframe_destroy(&frames[i]);
    sbi_trust_destroy(&trust);
    s_cleanup(&f);
}

TEST(test_truncated_and_garbage_buffers_are_rejected)
{
    fixture_t f;
    s_fixture(&f);
    sbi_trust_t *trust = s_trust(&f);
    zframe_t *frame = s_sealed(&f, &f.b, &f.a);
    /* Cut just before the MAC (packed last), too: no MAC, refused. */
    for (size_t len = 0; len < zframe_size(frame); len++)
        CHECK(s_receive(trust, &f.a, zframe_data(frame), len) != SB_OK);
    uint8_t garbage[512];
    for (int round = 0; round < 200; round++) {
        randombytes_buf(garbage, sizeof garbage);
        CHECK(s_receive(trust, &f.a, garbage, 1 + round * 2) != SB_OK);
    }
    sbi_envelope_t env;
    CHECK_EQ(sbi_envelope_decode(&env, garbage, SBI_FRAME_MAX + 1), SB_ETOOBIG);
    zframe_destroy(&frame);
    sbi_trust_destroy(&trust);
    s_cleanup(&f);
}

/* An EVENT_ACK from `from` acknowledging `n` events; `kind` and `id_len`
   spoil it for the tests. The decoded result. */
static int s_acks(fixture_t *f, Sharebus__Kind kind, size_t n, size_t id_len)
{
    sbi_crypto_t *crypto = sbi_crypto_new(&f->b);
    sbi_header_t h;
    sbi_header_init(&h, kind, f->b.cert.agency, f->a.cert.agency);
    uint8_t ids[SBI_ACKS_MAX + 1][SBI_ID_SIZE];
    ProtobufCBinaryData more[SBI_ACKS_MAX + 1];
    randombytes_buf(ids, sizeof ids);
    h.header.correlation_id = (ProtobufCBinaryData){SBI_ID_SIZE, ids[0]};
    for (size_t i = 1; i < n; i++)
        more[i - 1] = (ProtobufCBinaryData){i == n - 1 ? id_len : SBI_ID_SIZE, ids[i]};
    h.header.acked_ids = more;
    h.header.n_acked_ids = n - 1;
    zframe_t *frame = NULL;
    CHECK_EQ(sbi_envelope_seal(crypto, &f->a.cert, &h.header, NULL, &frame), SB_OK);
    sbi_envelope_t env;
    int rc = sbi_envelope_decode(&env, zframe_data(frame), zframe_size(frame));
    if (rc == SB_OK) {
        CHECK_EQ(env.header->n_acked_ids, n - 1);
        sbi_envelope_clear(&env);
    }
    zframe_destroy(&frame);
    sbi_crypto_destroy(&crypto);
    return rc;
}

TEST(test_event_ack_carries_up_to_its_limit_of_ids)
{
    fixture_t f;
    s_fixture(&f);
    CHECK_EQ(s_acks(&f, SHAREBUS__KIND__KIND_EVENT_ACK, 1, SBI_ID_SIZE), SB_OK);
    CHECK_EQ(s_acks(&f, SHAREBUS__KIND__KIND_EVENT_ACK, SBI_ACKS_MAX, SBI_ID_SIZE), SB_OK);
    CHECK_EQ(s_acks(&f, SHAREBUS__KIND__KIND_EVENT_ACK, SBI_ACKS_MAX + 1, SBI_ID_SIZE),
             SB_EMALFORMED);
    CHECK_EQ(s_acks(&f, SHAREBUS__KIND__KIND_EVENT_ACK, 3, SBI_ID_SIZE - 1), SB_EMALFORMED);
    CHECK_EQ(s_acks(&f, SHAREBUS__KIND__KIND_REQUEST, 2, SBI_ID_SIZE), SB_EMALFORMED);
    s_cleanup(&f);
}

TEST(test_envelope_from_revoked_or_expired_sender_is_rejected)
{
    fixture_t f;
    s_fixture(&f);
    sbi_keys_t old;
    s_issue(&f, &old, "mois", 3, -7200, -3600);     /* expired an hour ago */
    zframe_t *expired = s_sealed(&f, &old, &f.a);
    sbi_trust_t *trust = s_trust(&f);
    CHECK_EQ(s_receive(trust, &f.a, zframe_data(expired), zframe_size(expired)), SB_EEXPIRED);
    sbi_trust_destroy(&trust);

    char path[128];
    snprintf(path, sizeof path, "%s/revoked.crl", f.dir);
    sbi_crl_t crl = {0};
    CHECK_EQ(sbi_crl_add(&crl, "koroad", 2, sbi_now_ms()), SB_OK);
    CHECK_EQ(sbi_crl_save(&crl, f.root.sign_secret, path), SB_OK);
    sbi_crl_clear(&crl);
    zframe_t *revoked = s_sealed(&f, &f.b, &f.a);
    trust = s_trust(&f);
    CHECK_EQ(s_receive(trust, &f.a, zframe_data(revoked), zframe_size(revoked)), SB_EREVOKED);
    zframe_destroy(&expired);
    zframe_destroy(&revoked);
    sbi_trust_destroy(&trust);
    s_cleanup(&f);
}

TEST(test_sender_must_match_the_authenticated_certificate)
{
    fixture_t f;
    s_fixture(&f);
    sbi_trust_t *trust = s_trust(&f);
    zframe_t *frame = s_sealed(&f, &f.b, &f.a);
    sbi_envelope_t env;
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(frame), zframe_size(frame)), SB_OK);
    const sbi_cert_t *nhis = sbi_trust_find(trust, "nhis");
    CHECK_EQ(sbi_envelope_verify(&env, trust, nhis, sbi_now_ms()), SB_ESENDER);
    CHECK_EQ(sbi_envelope_verify(&env, trust, sbi_trust_find(trust, "koroad"), sbi_now_ms()),
             SB_OK);
    sbi_envelope_clear(&env);
    zframe_destroy(&frame);
    sbi_trust_destroy(&trust);
    s_cleanup(&f);
}

/* koroad rotates its keys: serial 2 (f.b) and serial 5 are both valid. */
TEST(test_rotating_sender_verifies_under_either_certificate)
{
    fixture_t f;
    s_fixture(&f);
    char from[128], to[128];
    snprintf(from, sizeof from, "%s/koroad.cert", f.dir);
    snprintf(to, sizeof to, "%s/koroad.2.cert", f.dir);
    CHECK_EQ(rename(from, to), 0);
    sbi_keys_t fresh;
    s_issue(&f, &fresh, "koroad", 5, -10, 3600);
    sbi_trust_t *trust = s_trust(&f);
    uint64_t now = sbi_now_ms();
    CHECK_EQ(sbi_trust_find(trust, "koroad")->serial, 5);
    zframe_t *by_old = s_sealed(&f, &f.b, &f.a), *by_new = s_sealed(&f, &fresh, &f.a);
    CHECK_EQ(s_receive(trust, &f.a, zframe_data(by_old), zframe_size(by_old)), SB_OK);
    CHECK_EQ(s_receive(trust, &f.a, zframe_data(by_new), zframe_size(by_new)), SB_OK);

    /* The sender is the certificate it signed with; sealing follows it. */
    sbi_envelope_t env;
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(by_old), zframe_size(by_old)), SB_OK);
    CHECK_EQ(sbi_envelope_verify(&env, trust, NULL, now), SB_OK);
    CHECK_EQ(env.sender->serial, 2);
    sbi_trust_prefer(trust, env.sender);
    CHECK_EQ(sbi_trust_find(trust, "koroad")->serial, 2);
    sbi_envelope_clear(&env);
    sbi_trust_t *again = s_trust(&f);
    sbi_trust_inherit(again, trust);
    CHECK_EQ(sbi_trust_find(again, "koroad")->serial, 2);
    CHECK_EQ(sbi_trust_newest(again, "koroad", now)->serial, 5);
    sbi_trust_destroy(&again);

    /* The broker's way: only the connection's certificate counts. */
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(by_new), zframe_size(by_new)), SB_OK);
    CHECK_EQ(sbi_envelope_verify(&env, trust, sbi_trust_find(trust, "koroad"), now), SB_EBADSIG);
    sbi_envelope_clear(&env);

    /* Serial 2 revoked: no longer preferred, and its signatures fail. */
    char path[128];
    snprintf(path, sizeof path, "%s/revoked.crl", f.dir);
    sbi_crl_t crl = {0};
    CHECK_EQ(sbi_crl_add(&crl, "koroad", 2, now), SB_OK);
    CHECK_EQ(sbi_crl_save(&crl, f.root.sign_secret, path), SB_OK);
    sbi_crl_clear(&crl);
    again = s_trust(&f);
    sbi_trust_inherit(again, trust);
    CHECK_EQ(sbi_trust_find(again, "koroad")->serial, 5);
    CHECK(s_receive(again, &f.a, zframe_data(by_old), zframe_size(by_old)) != SB_OK);
    CHECK_EQ(s_receive(again, &f.a, zframe_data(by_new), zframe_size(by_new)), SB_OK);
    sbi_trust_destroy(&again);
    sbi_keys_wipe(&fresh);
    zframe_destroy(&by_old);
    zframe_destroy(&by_new);
    sbi_trust_destroy(&trust);
    s_cleanup(&f);
}

TEST(test_mac_between_agencies_is_accepted)
{
    fixture_t f;
    s_fixture(&f);
    sbi_trust_t *trust = s_trust(&f);
    zframe_t *frame = s_sealed(&f, &f.b, &f.a);
    sbi_envelope_t env;
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(frame), zframe_size(frame)), SB_OK);
    CHECK_EQ(env.envelope->mac.len, SBI_MAC_SIZE);
    sbi_crypto_t *nhis = sbi_crypto_new(&f.a);
    CHECK_EQ(sbi_envelope_verify_mac(&env, trust, nhis, sbi_now_ms()), SB_OK);
    CHECK(env.sender == sbi_trust_find(trust, "koroad"));
    /* The signature is there as before, for the broker and the logs. */
    CHECK_EQ(sbi_envelope_verify(&env, trust, NULL, sbi_now_ms()), SB_OK);

    /* The MAC key is not the box key itself. */
    uint8_t box[crypto_box_BEFORENMBYTES], raw[SBI_MAC_SIZE];
    CHECK(crypto_box_beforenm(box, f.b.cert.box_public, f.a.box_secret) == 0);
    crypto_generichash_state state;
    crypto_generichash_init(&state, box, sizeof box, sizeof raw);
    crypto_generichash_update(&state, env.envelope->header.data, env.envelope->header.len);
    crypto_generichash_update(&state, env.envelope->signature.data, env.envelope->signature.len);
    crypto_generichash_final(&state, raw, sizeof raw);
    CHECK(memcmp(raw, env.envelope->mac.data, sizeof raw) != 0);
    sodium_memzero(box, sizeof box);
    sbi_envelope_clear(&env);
    zframe_destroy(&frame);

    /* To and from the broker: no MAC (it could not check one). */
    sbi_keys_t broker;
    sbi_keys_generate(&broker, SBI_CERT_BROKER);
    strcpy(broker.cert.agency, "broker");
    sbi_crypto_t *koroad = sbi_crypto_new(&f.b);
    sbi_header_t h;
    sbi_header_init(&h, SHAREBUS__KIND__KIND_HELLO, "koroad", "broker");
    CHECK_EQ(sbi_envelope_seal(koroad, &broker.cert, &h.header, NULL, &frame), SB_OK);
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(frame), zframe_size(frame)), SB_OK);
    CHECK_EQ(env.envelope->mac.len, 0);
    sbi_envelope_clear(&env);
    zframe_destroy(&frame);
    sbi_crypto_t *crypto = sbi_crypto_new(&broker);
    sbi_header_init(&h, SHAREBUS__KIND__KIND_WELCOME, "broker", "koroad");
    CHECK_EQ(sbi_envelope_seal(crypto, &f.b.cert, &h.header, NULL, &frame), SB_OK);
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(frame), zframe_size(frame)), SB_OK);
    CHECK_EQ(env.envelope->mac.len, 0);
    sbi_envelope_clear(&env);
    zframe_destroy(&frame);
    sbi_crypto_destroy(&crypto);
    sbi_crypto_destroy(&koroad);
    sbi_keys_wipe(&broker);
    sbi_crypto_destroy(&nhis);
    sbi_trust_destroy(&trust);
    s_cleanup(&f);
}

TEST(test_mac_over_a_changed_header_byte_is_refused)
{
    fixture_t f;
    s_fixture(&f);
    sbi_trust_t *trust = s_trust(&f);
    zframe_t *frame = s_sealed(&f, &f.b, &f.a);
    sbi_envelope_t env;
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(frame), zframe_size(frame)), SB_OK);
    /* "health.checkup" -> "health.checkuq": the header still decodes. */
    uint8_t *bytes = env.envelope->header.data;
    size_t len = env.envelope->header.len, at = 0;
    while (at + 14 <= len && memcmp(bytes + at, "health.checkup", 14) != 0)
        at++;
    CHECK(at + 14 <= len);
    bytes[at + 13] = 'q';
    zframe_t *changed = s_repacked(&env);
    sbi_envelope_clear(&env);
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(changed), zframe_size(changed)), SB_OK);
    CHECK_STR(env.header->dataset, "health.checkuq");
    sbi_crypto_t *nhis = sbi_crypto_new(&f.a);
    CHECK_EQ(sbi_envelope_verify_mac(&env, trust, nhis, sbi_now_ms()), SB_EBADSIG);
    CHECK(env.sender == NULL);
    CHECK_EQ(s_receive(trust, &f.a, zframe_data(changed), zframe_size(changed)), SB_EBADSIG);
    sbi_crypto_destroy(&nhis);
    sbi_envelope_clear(&env);
    zframe_destroy(&changed);
    zframe_destroy(&frame);
    sbi_trust_destroy(&trust);
    s_cleanup(&f);
}

/* mois, a third agency, replaces the MAC of koroad's envelope with one of
   its own for nhis: the signature still holds (the broker would pass it),
   the MAC does not. */
TEST(test_mac_made_with_a_third_agencys_key_is_refused)
{
    fixture_t f;
    s_fixture(&f);
    sbi_keys_t mois;
    s_issue(&f, &mois, "mois", 3, -10, 3600);
    sbi_trust_t *trust = s_trust(&f);
    zframe_t *frame = s_sealed(&f, &f.b, &f.a);
    sbi_envelope_t env;
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(frame), zframe_size(frame)), SB_OK);
    sbi_crypto_t *third = sbi_crypto_new(&mois);
    CHECK_EQ(sbi_envelope_mac(third, &f.a.cert, env.envelope, env.envelope->mac.data), SB_OK);
    zframe_t *forged = s_repacked(&env);
    sbi_envelope_clear(&env);
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(forged), zframe_size(forged)), SB_OK);
    CHECK_EQ(sbi_envelope_verify(&env, trust, sbi_trust_find(trust, "koroad"), sbi_now_ms()),
             SB_OK);
    sbi_crypto_t *nhis = sbi_crypto_new(&f.a);
    CHECK_EQ(sbi_envelope_verify_mac(&env, trust, nhis, sbi_now_ms()), SB_EBADSIG);
    CHECK_EQ(s_receive(trust, &f.a, zframe_data(forged), zframe_size(forged)), SB_EBADSIG);
    sbi_crypto_destroy(&nhis);
    sbi_crypto_destroy(&third);
    sbi_keys_wipe(&mois);
    sbi_envelope_clear(&env);
    zframe_destroy(&forged);
    zframe_destroy(&frame);
    sbi_trust_destroy(&trust);
    s_cleanup(&f);
}

/* An agency's envelope without its MAC (stripped on the way) is refused
   by the recipient even though its signature holds; the signature path
   (the broker's) still takes it, and refuses a bad signature. */
TEST(test_envelope_without_mac_is_refused_by_the_recipient)
{
    fixture_t f;
    s_fixture(&f);
    sbi_trust_t *trust = s_trust(&f);
    zframe_t *frame = s_sealed(&f, &f.b, &f.a);
    sbi_envelope_t env;
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(frame), zframe_size(frame)), SB_OK);
    env.envelope->mac.len = 0;
    zframe_t *plain = s_repacked(&env);
    env.envelope->signature.data[5] ^= 1;
    zframe_t *forged = s_repacked(&env);
    sbi_envelope_clear(&env);
    CHECK_EQ(s_receive(trust, &f.a, zframe_data(plain), zframe_size(plain)), SB_EBADSIG);
    CHECK_EQ(s_receive(trust, &f.a, zframe_data(forged), zframe_size(forged)), SB_EBADSIG);
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(plain), zframe_size(plain)), SB_OK);
    CHECK_EQ(sbi_envelope_verify(&env, trust, NULL, sbi_now_ms()), SB_OK);
    sbi_envelope_clear(&env);
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(forged), zframe_size(forged)), SB_OK);
    CHECK_EQ(sbi_envelope_verify(&env, trust, NULL, sbi_now_ms()), SB_EBADSIG);
    sbi_envelope_clear(&env);
    zframe_destroy(&plain);
    zframe_destroy(&forged);
    zframe_destroy(&frame);
    sbi_trust_destroy(&trust);
    s_cleanup(&f);
}

TEST(test_error_names_round_trip)
{
    for (int code = 0; code >= SB_ERROR_MIN; code--)
        CHECK_EQ(sb_errcode(sb_errname(code)), code);
    CHECK_STR(sb_errname(SB_ENOCONSENT), "no-consent");
    CHECK_STR(sb_errname(SB_ERATE), "rate-limited");
    CHECK_STR(sb_errname(12345), "internal");
    CHECK_EQ(sbi_error_code(sbi_error_kind(SB_EDENIED)), SB_EDENIED);
}

TEST(test_atomic_write_leaves_no_partial_file)
{
    char dir[] = "/tmp/sb-test-write-XXXXXX";
    CHECK(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/f", dir);
    CHECK_EQ(sbi_file_write(path, "one", 3, 0600, true), SB_OK);
    CHECK_EQ(sbi_file_write(path, "two", 3, 0600, true), SB_EEXISTS);
    char *text = NULL;
    CHECK_EQ(sbi_file_read(path, 100, &text, NULL), SB_OK);
    CHECK_STR(text, "one");
    free(text);
    CHECK_EQ(sbi_file_read(path, 2, &text, NULL), SB_ETOOBIG);
    snprintf(path, sizeof path, "%s/missing/f", dir);
    CHECK_EQ(sbi_file_write(path, "x", 1, 0600, false), SB_EIO);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 1 && rm -rf %s", dir, dir);
    CHECK_EQ(system(cmd), 0);
}

typedef struct {
    sbi_store_t *store;
    atomic_bool done;
    int rc;
} s_grower_t;

static void *s_grow(void *arg)
{
    s_grower_t *g = arg;
    g->rc = sbi_store_grow(g->store);
    atomic_store(&g->done, true);
    return NULL;
}

TEST(test_store_grows_its_map_only_after_other_threads_reads)
{
    char dir[] = "/tmp/sb-test-store-XXXXXX";
    CHECK(mkdtemp(dir));
    char err[256];
    sbi_store_t *store = sbi_store_open(dir, 0, 1 << 20, 4 << 20, 4, err, sizeof err);
    CHECK(store != NULL);
    if (!store)
        return;
    MDB_txn *txn;
    CHECK_EQ(sbi_store_read_begin(store, &txn), SB_OK);
    s_grower_t g = {store, false, -1};
    pthread_t thread;
    CHECK_EQ(pthread_create(&thread, NULL, s_grow, &g), 0);
    usleep(100 * 1000);
    CHECK(!atomic_load(&g.done));       /* waiting for the read */
    size_t map, used;
    sbi_store_usage(store, &map, &used);
    CHECK_EQ(map, (size_t) 1 << 20);
    sbi_store_read_end(store, &txn);
    CHECK(txn == NULL);
    sbi_store_read_end(store, &txn);    /* ended already: nothing */
    pthread_join(thread, NULL);
    CHECK(atomic_load(&g.done));
    CHECK_EQ(g.rc, SB_OK);
    sbi_store_usage(store, &map, &used);
    CHECK_EQ(map, (size_t) 2 << 20);
    CHECK_EQ(sbi_store_read_begin(store, &txn), SB_OK);    /* reads go on */
    sbi_store_read_end(store, &txn);
    sbi_store_close(&store);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ(system(cmd), 0);
}

int main(int argc, char **argv)
{
    sbi_init();
    return RUN_TESTS();
}
