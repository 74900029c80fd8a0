/*  cert.c - certificates, secret key files and the revocation list. */
#include "cert.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static const char *s_kind_names[] = {"agency", "broker", "root"};

/* Z85 text of `size` bytes (a multiple of 4) into `out` (size*5/4+1). */
static void s_z85(const uint8_t *data, size_t size, char *out)
{
    zmq_z85_encode(out, data, size);
}

static int s_unz85(const char *text, uint8_t *out, size_t size)
{
    if (!text || strlen(text) != size * 5 / 4 || !zmq_z85_decode(out, text))
        return SB_EMALFORMED;
    return SB_OK;
}

static bool s_text_valid(const char *text, size_t max)
{
    size_t len = strlen(text);
    if (len == 0 || len > max)
        return false;
    for (const char *c = text; *c; c++)
        if ((unsigned char) *c < ' ' || *c == '"' || *c == 127)
            return false;
    return true;
}

/* The bytes the root signs: fixed order, one "key=value" line each. */
static char *s_canonical(const sbi_cert_t *cert)
{
    char curve[41], sign[41], box[41];
    s_z85(cert->curve_public, 32, curve);
    s_z85(cert->sign_public, 32, sign);
    s_z85(cert->box_public, 32, box);
    return zsys_sprintf("sharebus-certificate-v1\nkind=%s\nagency=%s\nname=%s\n"
                        "serial=%" PRIu64 "\nnot-before=%" PRIu64 "\nnot-after=%" PRIu64
                        "\ncurve=%s\nsign=%s\nbox=%s\n",
                        s_kind_names[cert->kind], cert->agency, cert->name, cert->serial,
                        cert->not_before_ms, cert->not_after_ms, curve, sign, box);
}

void sbi_keys_generate(sbi_keys_t *keys, sbi_cert_kind_t kind)
{
    memset(keys, 0, sizeof *keys);
    keys->cert.kind = kind;
    crypto_sign_keypair(keys->cert.sign_public, keys->sign_secret);
    if (kind != SBI_CERT_ROOT) {
        crypto_box_keypair(keys->cert.box_public, keys->box_secret);
        crypto_box_keypair(keys->cert.curve_public, keys->curve_secret);
    }
}

void sbi_keys_wipe(sbi_keys_t *keys)
{
    sodium_memzero(keys->curve_secret, sizeof keys->curve_secret);
    sodium_memzero(keys->sign_secret, sizeof keys->sign_secret);
    sodium_memzero(keys->box_secret, sizeof keys->box_secret);
}

void sbi_cert_sign(sbi_cert_t *cert, const uint8_t root_secret[64])
{
    char *text = s_canonical(cert);
    crypto_sign_detached(cert->signature, NULL, (const uint8_t *) text, strlen(text),
                         root_secret);
    zstr_free(&text);
}

int sbi_cert_verify(const sbi_cert_t *cert, const uint8_t root_public[32])
{
    char *text = s_canonical(cert);
    int rc = crypto_sign_verify_detached(cert->signature, (const uint8_t *) text,
                                         strlen(text), root_public);
    zstr_free(&text);
    return rc == 0 ? SB_OK : SB_EBADCERT;
}

static int s_get_u64(zconfig_t *root, const char *path, uint64_t *value)
{
    const char *text = zconfig_get(root, path, NULL);
    char *end = NULL;
    if (!text || !*text || *text == '-')
        return SB_EMALFORMED;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end)
        return SB_EMALFORMED;
    *value = v;
    return SB_OK;
}

static int s_get_time(zconfig_t *root, const char *path, uint64_t *ms)
{
    const char *text = zconfig_get(root, path, NULL);
    return text && sbi_time_parse(text, ms) == SB_OK ? SB_OK : SB_EMALFORMED;
}

static int s_get_text(zconfig_t *root, const char *path, char *out, size_t size)
{
    const char *text = zconfig_get(root, path, NULL);
    if (!text || !s_text_valid(text, size - 1))
        return SB_EMALFORMED;
    strcpy(out, text);
    return SB_OK;
}

/* ZPL text is hostile input: CZMQ's parser must see a bounded, NUL-free
   string, and we never trust what it returns beyond the fields we check. */
static zconfig_t *s_zpl_load(const char *text)
{
    if (!text || strlen(text) > SBI_FILE_MAX)
        return NULL;
    return zconfig_str_load(text);
}

int sbi_cert_parse(const char *text, sbi_cert_t *cert)
{
    memset(cert, 0, sizeof *cert);
    zconfig_t *root = s_zpl_load(text);
    if (!root)
        return SB_EMALFORMED;
    int rc = SB_OK;
    const char *version = zconfig_get(root, "metadata/sharebus-certificate", "");
    const char *kind = zconfig_get(root, "metadata/kind", "");
    if (strcmp(version, "1") != 0)
        rc = SB_EMALFORMED;
    else if (strcmp(kind, "agency") == 0)
        cert->kind = SBI_CERT_AGENCY;
    else if (strcmp(kind, "broker") == 0)
        cert->kind = SBI_CERT_BROKER;
    else if (strcmp(kind, "root") == 0)
        cert->kind = SBI_CERT_ROOT;
    else
        rc = SB_EMALFORMED;
    if (rc == SB_OK)
        rc = s_get_text(root, "metadata/agency", cert->agency, sizeof cert->agency);
    if (rc == SB_OK)
        rc = s_get_text(root, "metadata/name", cert->name, sizeof cert->name);
    if (rc == SB_OK)
        rc = s_get_u64(root, "metadata/serial", &cert->serial);
    if (rc == SB_OK)
        rc = s_get_time(root, "metadata/not-before", &cert->not_before_ms);
    if (rc == SB_OK)
        rc = s_get_time(root, "metadata/not-after", &cert->not_after_ms);
    if (rc == SB_OK)
        rc = s_unz85(zconfig_get(root, "metadata/sign-public-key", NULL), cert->sign_public, 32);
    if (rc == SB_OK)
        rc = s_unz85(zconfig_get(root, "metadata/signature", NULL), cert->signature, 64);
    if (rc == SB_OK && cert->kind != SBI_CERT_ROOT) {
        rc = s_unz85(zconfig_get(root, "curve/public-key", NULL), cert->curve_public, 32);
        if (rc == SB_OK)
            rc = s_unz85(zconfig_get(root, "metadata/box-public-key", NULL), cert->box_public, 32);
    }
    bool reserved_ok = cert->kind != SBI_CERT_AGENCY;
    if (rc == SB_OK && !sbi_agency_valid(cert->agency, reserved_ok))
        rc = SB_EMALFORMED;
    if (rc == SB_OK && cert->kind == SBI_CERT_BROKER && strcmp(cert->agency, "broker") != 0)
        rc = SB_EMALFORMED;
    if (rc == SB_OK && cert->kind == SBI_CERT_ROOT && strcmp(cert->agency, "root") != 0)
        rc = SB_EMALFORMED;
    zconfig_destroy(&root);
    return rc;
}

int sbi_cert_load(const char *path, sbi_cert_t *cert)
{
    char *text = NULL;
    int rc = sbi_file_read(path, SBI_FILE_MAX, &text, NULL);
    if (rc == SB_OK)
        rc = sbi_cert_parse(text, cert);
    free(text);
    return rc;
}

char *sbi_cert_format(const sbi_cert_t *cert)
{
    char when[32], key[81];
    zconfig_t *root = zconfig_new("root", NULL);
    zconfig_set_comment(root, "   sharebus certificate (public): %s", cert->name);
    zconfig_set_comment(root, "   Verify it with: sharebus-cert verify FILE --dir DIR");
    zconfig_put(root, "metadata/sharebus-certificate", "1");
    zconfig_put(root, "metadata/kind", s_kind_names[cert->kind]);
    zconfig_put(root, "metadata/agency", cert->agency);
    zconfig_put(root, "metadata/name", cert->name);
    zconfig_putf(root, "metadata/serial", "%" PRIu64, cert->serial);
    zconfig_put(root, "metadata/not-before", sbi_time_format(cert->not_before_ms, when, sizeof when));
    zconfig_put(root, "metadata/not-after", sbi_time_format(cert->not_after_ms, when, sizeof when));
    s_z85(cert->sign_public, 32, key);
    zconfig_put(root, "metadata/sign-public-key", key);
    if (cert->kind != SBI_CERT_ROOT) {
        s_z85(cert->box_public, 32, key);
        zconfig_put(root, "metadata/box-public-key", key);
    }
    s_z85(cert->signature, 64, key);
    zconfig_put(root, "metadata/signature", key);
    if (cert->kind != SBI_CERT_ROOT) {
        s_z85(cert->curve_public, 32, key);
        zconfig_put(root, "curve/public-key", key);
    }
    char *text = zconfig_str_save(root);
    zconfig_destroy(&root);
    return text;
}

int sbi_cert_save(const sbi_cert_t *cert, const char *path)
{
    char *text = sbi_cert_format(cert);
    if (!text)
        return SB_ENOMEM;
    int rc = sbi_file_write(path, text, strlen(text), 0644, true);
    free(text);
    return rc;
}

int sbi_keys_parse(const char *text, sbi_keys_t *keys)
{
    memset(keys, 0, sizeof *keys);
    zconfig_t *root = s_zpl_load(text);
    if (!root)
        return SB_EMALFORMED;
    int rc = strcmp(zconfig_get(root, "metadata/sharebus-secret-keys", ""), "1") == 0
                 ? SB_OK : SB_EMALFORMED;
    const char *kind = zconfig_get(root, "metadata/kind", "");
    keys->cert.kind = strcmp(kind, "root") == 0     ? SBI_CERT_ROOT
                      : strcmp(kind, "broker") == 0 ? SBI_CERT_BROKER
                                                    : SBI_CERT_AGENCY;
    if (rc == SB_OK)
        rc = s_get_text(root, "metadata/agency", keys->cert.agency, sizeof keys->cert.agency);
    if (rc == SB_OK)
        rc = s_get_u64(root, "metadata/serial", &keys->cert.serial);
    if (rc == SB_OK)
        rc = s_unz85(zconfig_get(root, "sign/secret-key", NULL), keys->sign_secret, 64);
    if (rc == SB_OK && keys->cert.kind != SBI_CERT_ROOT) {
        rc = s_unz85(zconfig_get(root, "curve/secret-key", NULL), keys->curve_secret, 32);
        if (rc == SB_OK)
            rc = s_unz85(zconfig_get(root, "box/secret-key", NULL), keys->box_secret, 32);
    }
    if (rc == SB_OK) {
        crypto_sign_ed25519_sk_to_pk(keys->cert.sign_public, keys->sign_secret);
        crypto_scalarmult_base(keys->cert.curve_public, keys->curve_secret);
        crypto_scalarmult_base(keys->cert.box_public, keys->box_secret);
    }
    else
        sbi_keys_wipe(keys);
    /* The tree holds secrets as text: wipe each value before freeing. */
    for (zconfig_t *section = zconfig_child(root); section; section = zconfig_next(section))
        for (zconfig_t *item = zconfig_child(section); item; item = zconfig_next(item)) {
            char *value = zconfig_value(item);
            if (value)
                sodium_memzero(value, strlen(value));
        }
    zconfig_destroy(&root);
    return rc;
}

int sbi_keys_load(const char *path, sbi_keys_t *keys)
{
    char *text = NULL;
    size_t size = 0;
    int rc = sbi_file_read(path, 64 * 1024, &text, &size);
    if (rc == SB_OK)
        rc = sbi_keys_parse(text, keys);
    if (text)
        sodium_memzero(text, size);
    free(text);
    return rc;
}

int sbi_keys_save(const sbi_keys_t *keys, const char *path)
{
    char curve[41], sign[81], box[41];
    s_z85(keys->curve_secret, 32, curve);
    s_z85(keys->sign_secret, 64, sign);
    s_z85(keys->box_secret, 32, box);
    char *text = zsys_sprintf(
        "#   sharebus secret keys of %s: keep private (mode 0600), never copy\n"
        "metadata\n    sharebus-secret-keys = \"1\"\n    kind = \"%s\"\n"
        "    agency = \"%s\"\n    serial = \"%" PRIu64 "\"\n"
        "curve\n    secret-key = \"%s\"\nsign\n    secret-key = \"%s\"\n"
        "box\n    secret-key = \"%s\"\n",
        keys->cert.agency, s_kind_names[keys->cert.kind], keys->cert.agency,
        keys->cert.serial, curve, sign, box);
    sodium_memzero(curve, sizeof curve);
    sodium_memzero(sign, sizeof sign);
    sodium_memzero(box, sizeof box);
    if (!text)
        return SB_ENOMEM;
    int rc = sbi_file_write(path, text, strlen(text), 0600, true);
    sodium_memzero(text, strlen(text));
    zstr_free(&text);
    return rc;
}

int sbi_secret_load(const char *path, uint8_t key[32])
{
    char *text = NULL;
    size_t size = 0;
    int rc = sbi_file_read(path, 4096, &text, &size);
    if (rc != SB_OK)
        return rc;
    zconfig_t *root = s_zpl_load(text);
    rc = root ? s_unz85(zconfig_get(root, "secret/key", NULL), key, 32) : SB_EMALFORMED;
    if (root) {
        zconfig_t *item = zconfig_locate(root, "secret/key");
        if (item && zconfig_value(item))
            sodium_memzero(zconfig_value(item), strlen(zconfig_value(item)));
    }
    zconfig_destroy(&root);
    sodium_memzero(text, size);
    free(text);
    return rc;
}

int sbi_secret_save(const char *path, const uint8_t key[32])
{
    char z85[41];
    s_z85(key, 32, z85);
    char *text = zsys_sprintf("#   sharebus subject key: keep private (mode 0600)\n"
                              "secret\n    key = \"%s\"\n", z85);
    sodium_memzero(z85, sizeof z85);
    if (!text)
        return SB_ENOMEM;
    int rc = sbi_file_write(path, text, strlen(text), 0600, true);
    sodium_memzero(text, strlen(text));
    zstr_free(&text);
    return rc;
}

/* -------------------------------------------------- revocation list */

static char *s_crl_canonical(const sbi_crl_t *crl)
{
    zchunk_t *chunk = zchunk_new(NULL, 256);
    char line[128];
    int n = snprintf(line, sizeof line, "sharebus-crl-v1\nissued=%" PRIu64 "\n", crl->issued_ms);
    zchunk_extend(chunk, line, (size_t) n);
    for (size_t i = 0; i < crl->count; i++) {
        n = snprintf(line, sizeof line, "%" PRIu64 " %s %" PRIu64 "\n", crl->entries[i].serial,
                     crl->entries[i].agency, crl->entries[i].revoked_ms);
        zchunk_extend(chunk, line, (size_t) n);
    }
    zchunk_extend(chunk, "", 1);
    char *text = strdup((char *) zchunk_data(chunk));
    zchunk_destroy(&chunk);
    return text;
}

int sbi_crl_add(sbi_crl_t *crl, const char *agency, uint64_t serial, uint64_t when_ms)
{
    if (!sbi_agency_valid(agency, true) || crl->count >= 1000000)
        return SB_EINVAL;
    sbi_revocation_t *grown = realloc(crl->entries, (crl->count + 1) * sizeof *grown);
    if (!grown)
        return SB_ENOMEM;
    crl->entries = grown;
    sbi_revocation_t *entry = &crl->entries[crl->count++];
    memset(entry, 0, sizeof *entry);
    strcpy(entry->agency, agency);
    entry->serial = serial;
    entry->revoked_ms = when_ms / 1000 * 1000;
    return SB_OK;
}

int sbi_crl_parse(const char *text, sbi_crl_t *crl)
{
    memset(crl, 0, sizeof *crl);
    zconfig_t *root = s_zpl_load(text);
    if (!root)
        return SB_EMALFORMED;
    int rc = strcmp(zconfig_get(root, "revocation-list/version", ""), "1") == 0
                 ? SB_OK : SB_EMALFORMED;
    if (rc == SB_OK)
        rc = s_get_time(root, "revocation-list/issued", &crl->issued_ms);
    if (rc == SB_OK)
        rc = s_unz85(zconfig_get(root, "revocation-list/signature", NULL), crl->signature, 64);
    zconfig_t *entries = zconfig_locate(root, "revoked");
    for (zconfig_t *item = entries ? zconfig_child(entries) : NULL; rc == SB_OK && item;
         item = zconfig_next(item)) {
        uint64_t serial = 0, when = 0;
        char agency[SBI_AGENCY_MAX + 1];
        rc = s_get_u64(item, "serial", &serial);
        if (rc == SB_OK)
            rc = s_get_text(item, "agency", agency, sizeof agency);
        if (rc == SB_OK)
            rc = s_get_time(item, "revoked-at", &when);
        if (rc == SB_OK)
            rc = sbi_crl_add(crl, agency, serial, when) == SB_OK ? SB_OK : SB_EMALFORMED;
    }
    zconfig_destroy(&root);
    if (rc != SB_OK)
        sbi_crl_clear(crl);
    return rc;
}

int sbi_crl_load(const char *path, sbi_crl_t *crl)
{
    char *text = NULL;
    int rc = sbi_file_read(path, 64 * 1024 * 1024, &text, NULL);
    if (rc == SB_EIO && errno == ENOENT) {
        memset(crl, 0, sizeof *crl);
        return SB_ENOTFOUND;
    }
    if (rc == SB_OK)
        rc = sbi_crl_parse(text, crl);
    free(text);
    return rc;
}

int sbi_crl_save(sbi_crl_t *crl, const uint8_t root_secret[64], const char *path)
{
    crl->issued_ms = sbi_now_ms() / 1000 * 1000;
    char *canonical = s_crl_canonical(crl);
    if (!canonical)
        return SB_ENOMEM;
    crypto_sign_detached(crl->signature, NULL, (const uint8_t *) canonical,
                         strlen(canonical), root_secret);
    free(canonical);

    char when[32], sig[81];
    zconfig_t *root = zconfig_new("root", NULL);
    zconfig_set_comment(root, "   sharebus revocation list, signed by the root");
    zconfig_put(root, "revocation-list/version", "1");
    zconfig_put(root, "revocation-list/issued", sbi_time_format(crl->issued_ms, when, sizeof when));
    s_z85(crl->signature, 64, sig);
    zconfig_put(root, "revocation-list/signature", sig);
    zconfig_t *entries = zconfig_new("revoked", root);
    for (size_t i = 0; i < crl->count; i++) {
        char name[32];
        snprintf(name, sizeof name, "%zu", i + 1);
        zconfig_t *item = zconfig_new(name, entries);
        zconfig_putf(item, "serial", "%" PRIu64, crl->entries[i].serial);
        zconfig_put(item, "agency", crl->entries[i].agency);
        zconfig_put(item, "revoked-at", sbi_time_format(crl->entries[i].revoked_ms, when, sizeof when));
    }
    char *text = zconfig_str_save(root);
    zconfig_destroy(&root);
    if (!text)
        return SB_ENOMEM;
    int rc = sbi_file_write(path, text, strlen(text), 0644, false);
    free(text);
    return rc;
}

int sbi_crl_verify(const sbi_crl_t *crl, const uint8_t root_public[32])
{
    char *canonical = s_crl_canonical(crl);
    if (!canonical)
        return SB_ENOMEM;
    int rc = crypto_sign_verify_detached(crl->signature, (const uint8_t *) canonical,
                                         strlen(canonical), root_public);
    free(canonical);
    return rc == 0 ? SB_OK : SB_EBADCERT;
}

bool sbi_crl_revoked(const sbi_crl_t *crl, uint64_t serial)
{
    for (size_t i = 0; i < crl->count; i++)
        if (crl->entries[i].serial == serial)
            return true;
    return false;
}

void sbi_crl_clear(sbi_crl_t *crl)
{
    free(crl->entries);
    memset(crl, 0, sizeof *crl);
}
