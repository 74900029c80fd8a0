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

/* `text` with its first `from` replaced by `to`; the caller frees it. */
static char *s_replaced(const char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    CHECK(at != NULL);
    if (!at)
        return strdup(text);
    size_t head = (size_t) (at - text);
    char *out = malloc(strlen(text) - strlen(from) + strlen(to) + 1);
    memcpy(out, text, head);
    strcpy(out + head, to);
    strcat(out, at + strlen(from));
    return out;
}

/* Group or others may read, write or run the file: refused, naming the
   file, its mode and the fix; 0600, 0400 and 0700 are fine. */
TEST(test_key_file_open_to_group_or_others_is_refused)
{
    fixture_t f;
    s_fixture(&f);
    char path[128], secret[128], err[512], want[256];
    snprintf(path, sizeof path, "%s/nhis.key", f.dir);
    snprintf(secret, sizeof secret, "%s/subject.key", f.dir);
    CHECK_EQ(sbi_keys_save(&f.a, path), SB_OK);
    uint8_t subject[32], back[32];
    randombytes_buf(subject, sizeof subject);
    CHECK_EQ(sbi_secret_save(secret, subject), SB_OK);
    static const mode_t open_modes[] = {0644, 0640, 0604, 0620, 0602, 0660, 0610, 0601};
    sbi_keys_t keys;
    for (size_t i = 0; i < sizeof open_modes / sizeof open_modes[0]; i++) {
        CHECK_EQ(chmod(path, open_modes[i]), 0);
        CHECK_EQ(chmod(secret, open_modes[i]), 0);
        errno = 0;
        CHECK_EQ(sbi_keys_load(path, &keys), SB_EIO);
        CHECK_EQ(errno, EACCES);
        CHECK_EQ(sbi_secret_load(secret, back), SB_EIO);
        CHECK_EQ(errno, EACCES);
        CHECK_EQ(sbi_keys_read(path, &keys, err, sizeof err), SB_EIO);
        snprintf(want, sizeof want, "%s: mode %04o ", path, (unsigned) open_modes[i]);
        CHECK(strncmp(err, want, strlen(want)) == 0);
        snprintf(want, sizeof want, "chmod 600 %s", path);
        CHECK(strstr(err, want) != NULL);
        CHECK_EQ(sbi_secret_read(secret, back, err, sizeof err), SB_EIO);
        snprintf(want, sizeof want, "chmod 600 %s", secret);
        CHECK(strstr(err, want) != NULL);
    }
    uint8_t zero[64] = {0};
    CHECK(memcmp(keys.sign_secret, zero, 64) == 0);
    static const mode_t private_modes[] = {0600, 0400, 0700};
    for (size_t i = 0; i < 3; i++) {
        CHECK_EQ(chmod(path, private_modes[i]), 0);
        CHECK_EQ(chmod(secret, private_modes[i]), 0);
        CHECK_EQ(sbi_keys_load(path, &keys), SB_OK);
        CHECK(memcmp(keys.sign_secret, f.a.sign_secret, 64) == 0);
        sbi_keys_wipe(&keys);
        CHECK_EQ(sbi_secret_load(secret, back), SB_OK);
        CHECK(memcmp(back, subject, 32) == 0);
    }
    /* Unreadable and missing files keep errno for the caller. */
    snprintf(path, sizeof path, "%s/missing.key", f.dir);
    CHECK_EQ(sbi_keys_load(path, &keys), SB_EIO);
    CHECK_EQ(errno, ENOENT);
    CHECK_EQ(sbi_keys_load(f.dir, &keys), SB_EIO);
    CHECK_EQ(errno, EINVAL);
    s_cleanup(&f);
}

/* Writes `size` bytes of `text` to `path` (0600) and checks that reading
   it as keys (or as a subject key) is refused at the reason `want`. */
static void s_key_text_refused(const char *path, const char *text, size_t size, bool subject,
                               const char *want, const char *secret_z85)
{
    unlink(path);
    CHECK_EQ(sbi_file_write(path, text, size, 0600, true), SB_OK);
    char err[512] = "";
    sbi_keys_t keys;
    uint8_t key[32];
    int rc = subject ? sbi_secret_read(path, key, err, sizeof err)
                     : sbi_keys_read(path, &keys, err, sizeof err);
    CHECK_EQ(rc, SB_EMALFORMED);
    char head[256];
    snprintf(head, sizeof head, "%s: %s", path, want);
    if (strncmp(err, head, strlen(head)) != 0)
        fprintf(stderr, "  got '%s', expected '%s...'\n", err, head);
    CHECK(strncmp(err, head, strlen(head)) == 0);
    CHECK(strstr(err, "not a sharebus key file") != NULL);
    CHECK(!strstr(err, secret_z85));   /* a reason never quotes the file */
    if (!subject && strlen(text) == size)
        CHECK_EQ(sbi_keys_parse(text, &keys), SB_EMALFORMED);
}

TEST(test_key_file_holds_exactly_the_written_format)
{
    fixture_t f;
    s_fixture(&f);
    char path[128], bad_path[128];
    snprintf(path, sizeof path, "%s/nhis.key", f.dir);
    snprintf(bad_path, sizeof bad_path, "%s/bad.key", f.dir);
    CHECK_EQ(sbi_keys_save(&f.a, path), SB_OK);
    char *text = NULL;
    CHECK_EQ(sbi_file_read(path, 4096, &text, NULL), SB_OK);
    char curve[41];
    zmq_z85_encode(curve, f.a.curve_secret, 32);
    CHECK(strstr(text, curve) != NULL);

    /* What sbi_keys_save writes, for every kind, reads back. */
    sbi_keys_t broker, keys;
    sbi_keys_generate(&broker, SBI_CERT_BROKER);
    strcpy(broker.cert.agency, "broker");
    broker.cert.serial = UINT64_MAX;
    sbi_keys_t *each[] = {&f.root, &f.a, &broker};
    for (size_t i = 0; i < 3; i++) {
        snprintf(bad_path, sizeof bad_path, "%s/kind%zu.key", f.dir, i);
        CHECK_EQ(sbi_keys_save(each[i], bad_path), SB_OK);
        CHECK_EQ(sbi_keys_load(bad_path, &keys), SB_OK);
        CHECK_EQ(keys.cert.kind, each[i]->cert.kind);
        CHECK_STR(keys.cert.agency, each[i]->cert.agency);
        CHECK_EQ(keys.cert.serial, each[i]->cert.serial);
        CHECK(memcmp(keys.sign_secret, each[i]->sign_secret, 64) == 0);
        CHECK(memcmp(keys.curve_secret, each[i]->curve_secret, 32) == 0);
        CHECK(memcmp(keys.box_secret, each[i]->box_secret, 32) == 0);
        CHECK(memcmp(keys.cert.sign_public, each[i]->cert.sign_public, 32) == 0);
        if (each[i]->cert.kind != SBI_CERT_ROOT)
            CHECK(memcmp(keys.cert.box_public, each[i]->cert.box_public, 32) == 0);
        sbi_keys_wipe(&keys);
    }
    sbi_keys_wipe(&broker);
    snprintf(bad_path, sizeof bad_path, "%s/bad.key", f.dir);

    /* Comments and empty lines are skipped. */
    char *spaced = s_replaced(text, "curve\n", "\n# the CURVE key\n\ncurve\n");
    unlink(bad_path);
    CHECK_EQ(sbi_file_write(bad_path, spaced, strlen(spaced), 0600, true), SB_OK);
    CHECK_EQ(sbi_keys_load(bad_path, &keys), SB_OK);
    CHECK(memcmp(keys.curve_secret, f.a.curve_secret, 32) == 0);
    sbi_keys_wipe(&keys);
    free(spaced);

    /* Lines: 1 comment, 2 metadata, 3 version, 4 kind, 5 agency, 6 serial,
       7 curve, 8 its key, 9 sign, 10 its key, 11 box, 12 its key. */
    char no_z85[41], short_z85[41];
    strcpy(no_z85, curve);
    no_z85[7] = '~';
    snprintf(short_z85, sizeof short_z85, "%.39s", curve);
    static const char *zero_z85 = "0000000000000000000000000000000000000000";
    char dup_box[128];
    snprintf(dup_box, sizeof dup_box, "box\n    secret-key = \"%s\"\n", zero_z85);
    const char *edits[][3] = {
        {"sharebus-secret-keys = \"1\"", "sharebus-secret-keys = \"2\"", "line 3: unknown version"},
        {"\"1\"\n", "\"1\"\r\n", "line 3: expected '    sharebus-secret-keys = \"...\"'"},
        {"\"1\"\n", "\"1\" # note\n", "line 3: expected '    sharebus-secret-keys"},
        {"kind = \"agency\"", "kind = \"spy\"", "line 4: kind is not"},
        {"    kind", "\tkind", "line 4: expected '    kind = "},
        {"    kind", "      kind", "line 4: expected '    kind = "},
        {"metadata\n", "metadata\n    sharebus-secret-keys = \"1\"\n", "line 4: expected '    kind"},
        {"agency = \"nhis\"", "agency = \"nhis", "line 5: expected '    agency"},
        {"agency = \"nhis\"", "agency = \"\"", "line 5: expected '    agency"},
        {"agency = \"nhis\"", "agency = \"a b\"", "line 5: agency holds a character"},
        {"agency = \"nhis\"", "agency = \"123456789012345678901234567890123\"",
         "line 5: agency id longer than 32"},
        {"    serial", "    name = \"x\"\n    serial", "line 6: expected '    serial"},
        {"serial = \"1\"", "serial = \"-1\"", "line 6: expected a decimal number"},
        {"serial = \"1\"", "serial = \"18446744073709551616\"", "line 6: expected a decimal"},
        {"curve\n", "curve \n", "line 7: expected the line 'curve'"},
        {"curve\n", "Curve\n", "line 7: expected the line 'curve'"},
        {"curve\n", "metadata\ncurve\n", "line 7: expected the line 'curve'"},
        {curve, no_z85, "line 8: not Z85 text"},
        {curve, short_z85, "line 8: expected 40 characters of Z85"},
        {"sign\n", "extra\n    x = \"1\"\nsign\n", "line 9: expected the line 'sign'"},
        {"box\n", dup_box, "line 13: nothing may follow the last key"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char *bad = s_replaced(text, edits[i][0], edits[i][1]);
        s_key_text_refused(bad_path, bad, strlen(bad), false, edits[i][2], curve);
        free(bad);
    }
    char *truncated = strdup(text);
    *strstr(truncated, "box\n") = 0;
    s_key_text_refused(bad_path, truncated, strlen(truncated), false,
                       "line 11: the file ends before 'secret-key' in 'box'", curve);
    free(truncated);
    s_key_text_refused(bad_path, "", 0, false,
                       "line 1: the file ends before 'sharebus-secret-keys' in 'metadata'",
                       curve);
    char *nul = strdup(text);
    *strstr(nul, "nhis\"\n") = 0;
    s_key_text_refused(bad_path, nul, strlen(text), false, "line 5: holds a NUL byte", curve);
    free(nul);
    char *trailing = s_replaced(text, "box\n", "box\n");
    trailing = realloc(trailing, strlen(text) + 16);
    strcat(trailing, "extra\n");
    s_key_text_refused(bad_path, trailing, strlen(trailing), false,
                       "line 13: nothing may follow the last key", curve);
    free(trailing);
    /* A key file is small: a big one is refused before it is read. */
    char big[5000];
    memset(big, '#', sizeof big);
    unlink(bad_path);
    CHECK_EQ(sbi_file_write(bad_path, big, sizeof big, 0600, true), SB_OK);
    CHECK_EQ(sbi_keys_load(bad_path, &keys), SB_ETOOBIG);

    /* The subject key: "secret", then its key. */
    char subject_path[128];
    snprintf(subject_path, sizeof subject_path, "%s/subject.key", f.dir);
    uint8_t subject[32], back[32];
    randombytes_buf(subject, sizeof subject);
    CHECK_EQ(sbi_secret_save(subject_path, subject), SB_OK);
    CHECK_EQ(sbi_secret_load(subject_path, back), SB_OK);
    CHECK(memcmp(back, subject, 32) == 0);
    char *secret_text = NULL, secret_z85[41];
    zmq_z85_encode(secret_z85, subject, 32);
    CHECK_EQ(sbi_file_read(subject_path, 4096, &secret_text, NULL), SB_OK);
    const char *secret_edits[][3] = {
        {"secret\n", "secrets\n", "line 2: expected the line 'secret'"},
        {"    key =", "    key  =", "line 3: expected '    key = \"...\"' (in 'secret')"},
        {"\"\n", "\"\nsecret\n", "line 4: nothing may follow the last key"},
        {secret_z85, "x", "line 3: expected 40 characters of Z85"},
    };
    for (size_t i = 0; i < sizeof secret_edits / sizeof secret_edits[0]; i++) {
        char *bad = s_replaced(secret_text, secret_edits[i][0], secret_edits[i][1]);
        s_key_text_refused(bad_path, bad, strlen(bad), true, secret_edits[i][2], secret_z85);
        free(bad);
    }
    /* A key file is not a subject key, nor the other way round. */
    s_key_text_refused(bad_path, text, strlen(text), true,
                       "line 2: expected the line 'secret'", secret_z85);
    s_key_text_refused(bad_path, secret_text, strlen(secret_text), false,
                       "line 2: expected the line 'metadata'", secret_z85);
    sodium_memzero(secret_text, strlen(secret_text));
    free(secret_text);
    sodium_memzero(text, strlen(text));
    free(text);
    s_cleanup(&f);
}

/* What the wipe hook saw: how many buffers, the largest, whether every
   byte of every one was zero. */
static struct {
    size_t count, largest;
    bool all_zero;
} s_wiped;

static void s_wipe_seen(const void *data, size_t size)
{
    s_wiped.count++;
    s_wiped.largest = size > s_wiped.largest ? size : s_wiped.largest;
    for (size_t i = 0; i < size; i++)
        s_wiped.all_zero = s_wiped.all_zero && ((const uint8_t *) data)[i] == 0;
}

static void s_wipe_reset(void)
{
    s_wiped.count = s_wiped.largest = 0;
    s_wiped.all_zero = true;
}

/* Every buffer that held key text is wiped before it is freed, on success
   and on failure: the file's text (its size + 1 for the NUL), and each Z85
   copy (81 bytes). What CZMQ frees never held it: the loader does not
   call it. */
TEST(test_key_file_buffers_are_wiped_before_they_are_freed)
{
    fixture_t f;
    s_fixture(&f);
    char path[128], secret[128];
    snprintf(path, sizeof path, "%s/nhis.key", f.dir);
    snprintf(secret, sizeof secret, "%s/subject.key", f.dir);
    sbi_keys_set_wipe_hook(s_wipe_seen);

    s_wipe_reset();
    CHECK_EQ(sbi_keys_save(&f.a, path), SB_OK);
    CHECK(s_wiped.count >= 4 && s_wiped.all_zero);     /* three Z85 keys, the text */
    struct stat st;
    CHECK_EQ(stat(path, &st), 0);

    sbi_keys_t keys;
    s_wipe_reset();
    CHECK_EQ(sbi_keys_load(path, &keys), SB_OK);
    CHECK_EQ(s_wiped.count, 4);                        /* the text, three Z85 keys */
    CHECK_EQ(s_wiped.largest, (size_t) st.st_size + 1);
    CHECK(s_wiped.all_zero);
    sbi_keys_wipe(&keys);

    /* Refused at the last key, after the others were decoded. */
    char *text = NULL;
    CHECK_EQ(sbi_file_read(path, 4096, &text, NULL), SB_OK);
    char *bad = s_replaced(text, "box\n    secret-key = \"", "box\n    secret-key = \"~");
    unlink(path);
    CHECK_EQ(sbi_file_write(path, bad, strlen(bad), 0600, true), SB_OK);
    s_wipe_reset();
    CHECK_EQ(sbi_keys_load(path, &keys), SB_EMALFORMED);
    CHECK_EQ(s_wiped.count, 3);                        /* the text, two Z85 keys */
    CHECK_EQ(s_wiped.largest, strlen(bad) + 1);
    CHECK(s_wiped.all_zero);
    uint8_t zero[64] = {0};
    CHECK(memcmp(keys.sign_secret, zero, 64) == 0 && memcmp(keys.curve_secret, zero, 32) == 0);
    sodium_memzero(bad, strlen(bad));
    free(bad);
    sodium_memzero(text, strlen(text));
    free(text);

    uint8_t subject[32], back[32];
    randombytes_buf(subject, sizeof subject);
    CHECK_EQ(sbi_secret_save(secret, subject), SB_OK);
    CHECK_EQ(stat(secret, &st), 0);
    s_wipe_reset();
    CHECK_EQ(sbi_secret_load(secret, back), SB_OK);
    CHECK_EQ(s_wiped.count, 2);
    CHECK_EQ(s_wiped.largest, (size_t) st.st_size + 1);
    CHECK(s_wiped.all_zero);

    sbi_keys_set_wipe_hook(NULL);
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
    int accepted = 0, tested = 0, unproven = 0;
    /* Refused by the broker (signature, path) or by the recipient (MAC);
       and what the recipient alone takes (a dishonest broker) still holds
       its sender's signature (see the test below). */
    for (size_t bit = 0; bit < size * 8; bit++) {
        memcpy(copy, zframe_data(frames[1]), size);
        copy[bit / 8] ^= (uint8_t) (1u << (bit % 8));
        tested++;
        if (s_receive(trust, &f.a, copy, size) != SB_OK)
            continue;
        if (s_broker_check(trust, &f, copy, size, NULL) == SB_OK)
            accepted++;
        sbi_envelope_t env;
        CHECK_EQ(sbi_envelope_decode(&env, copy, size), SB_OK);
        if (sbi_envelope_verify(&env, trust, NULL, sbi_now_ms()) != SB_OK)
            unproven++;
        sbi_envelope_clear(&env);
    }
    CHECK(tested > 1000);
    CHECK_EQ(accepted, 0);
    CHECK_EQ(unproven, 0);
    free(copy);
    for (size_t i = 0; i < 3; i++)
        zframe_destroy(&frames[i]);
    sbi_trust_destroy(&trust);
    s_cleanup(&f);
}

/* The MAC an agent of the previous version gave an envelope signed in a
   batch: header || signature || batch_path, under subkey 1. */
static void s_previous_mac(const sbi_keys_t *from, const sbi_cert_t *to, Sharebus__Envelope *e)
{
    uint8_t shared[crypto_box_BEFORENMBYTES], key[crypto_kdf_KEYBYTES];
    CHECK(crypto_box_beforenm(shared, to->box_public, from->box_secret) == 0);
    crypto_kdf_derive_from_key(key, sizeof key, 1, "sbenvmac", shared);
    crypto_generichash_state state;
    crypto_generichash_init(&state, key, sizeof key, SBI_MAC_SIZE);
    crypto_generichash_update(&state, e->header.data, e->header.len);
    crypto_generichash_update(&state, e->signature.data, e->signature.len);
    crypto_generichash_update(&state, e->batch_path.data, e->batch_path.len);
    crypto_generichash_final(&state, e->mac.data, SBI_MAC_SIZE);
    sodium_memzero(shared, sizeof shared);
    sodium_memzero(key, sizeof key);
}

/* A dishonest broker cannot make the MAC, so it must not be able to hand
   the recipient a batched envelope whose MAC holds while its signature
   does not: the recipient would act on it and log a proof that fails
   (the sender could deny it). Its index, and where header, signature and
   path begin and end, are under the MAC (flipped bits: the test above).
   An envelope with the MAC of the agents before that (an event the broker
   queued before the upgrade, sent again until it is acknowledged: refused,
   it would come back at every reconnection and hold its place in the
   subscriber's window for ever) is taken when its signature holds. */
TEST(test_what_the_recipient_takes_of_a_batch_proves_its_sender)
{
    fixture_t f;
    s_fixture(&f);
    sbi_trust_t *trust = s_trust(&f);
    zframe_t *frames[3];
    s_batch(&f, 3, frames);

    /* Another index that fits the path: leaf 0 instead of 1. */
    sbi_envelope_t env;
    CHECK_EQ(sbi_envelope_decode(&env, zframe_data(frames[1]), zframe_size(frames[1])), SB_OK);
    CHECK_EQ(env.envelope->batch_index, 1);
    CHECK_EQ(env.envelope->batch_path.len, 2 * SBI_HASH_SIZE);
    env.envelope->batch_index = 0;
    zframe_t *changed = s_repacked(&env);
    env.envelope->batch_index = 1;
    CHECK_EQ(s_receive(trust, &f.a, zframe_data(changed), zframe_size(changed)), SB_EBADSIG);
    zframe_destroy(&changed);

    /* The previous MAC: taken with the signature; with another index, the
       MAC holds and the signature does not. */
    ProtobufCBinaryData mac_was = env.envelope->mac;
    uint8_t previous_mac[SBI_MAC_SIZE];
    env.envelope->mac = (ProtobufCBinaryData){sizeof previous_mac, previous_mac};
    s_previous_mac(&f.b, &f.a.cert, env.envelope);
    zframe_t *previous = s_repacked(&env);
    CHECK_EQ(s_receive(trust, &f.a, zframe_data(previous), zframe_size(previous)), SB_OK);
    zframe_destroy(&previous);
    env.envelope->batch_index = 0;
    s_previous_mac(&f.b, &f.a.cert, env.envelope);
    previous = s_repacked(&env);
    CHECK_EQ(s_receive(trust, &f.a, zframe_data(previous), zframe_size(previous)), SB_EBADSIG);
    zframe_destroy(&previous);
    env.envelope->batch_index = 1;
    env.envelope->mac = mac_was;

    /* The same bytes cut elsewhere: the signature's first half moved into
       the header, the path's first hash into the signature. */
    const Sharebus__Envelope *e = env.envelope;
    size_t header_len = e->header.len;
    uint8_t *header = malloc(header_len + 32), signature[64];
    memcpy(header, e->header.data, header_len);
    memcpy(header + header_len, e->signature.data, 32);
    memcpy(signature, e->signature.data + 32, 32);
    memcpy(signature + 32, e->batch_path.data, 32);
    Sharebus__Envelope shifted = *e;
    shifted.header = (ProtobufCBinaryData){header_len + 32, header};
    shifted.signature = (ProtobufCBinaryData){64, signature};
    shifted.batch_path = (ProtobufCBinaryData){32, e->batch_path.data + 32};
    shifted.batch_index = 0;
    sbi_crypto_t *nhis = sbi_crypto_new(&f.a);
    const sbi_cert_t *koroad = sbi_trust_find(trust, "koroad");
    uint8_t mac[SBI_MAC_SIZE], mac_shifted[SBI_MAC_SIZE];
    CHECK_EQ(sbi_envelope_mac(nhis, koroad, e, mac), SB_OK);
    CHECK(memcmp(mac, e->mac.data, sizeof mac) == 0);
    CHECK_EQ(sbi_envelope_mac(nhis, koroad, &shifted, mac_shifted), SB_OK);
    CHECK(memcmp(mac, mac_shifted, sizeof mac) != 0);
    sbi_crypto_destroy(&nhis);
    free(header);
    sbi_envelope_clear(&env);
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
