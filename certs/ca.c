/*  ca.c - certificate authority operations on a certificate directory. */
#include "ca.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_PATH(buf, ...) snprintf(buf, sizeof buf, __VA_ARGS__)

/* "what: why" into err; returns rc. */
static int s_fail(char *err, size_t size, int rc, const char *what)
{
    snprintf(err, size, "%s: %s", what, rc == SB_EIO ? strerror(errno) : sb_strerror(rc));
    return rc;
}

static int s_root_secret(const char *dir, uint8_t secret[64], char *err, size_t size)
{
    char path[4096];
    S_PATH(path, "%s/root.key", dir);
    sbi_keys_t root;
    int rc = sbi_keys_load(path, &root);
    if (rc == SB_OK && root.cert.kind != SBI_CERT_ROOT)
        rc = SB_EMALFORMED;
    if (rc != SB_OK)
    {
        s_fail(err, size, rc, path);
        strncat(err, " (run sharebus-cert init first)", size - strlen(err) - 1);
        return rc;
    }
    memcpy(secret, root.sign_secret, 64);
    sbi_keys_wipe(&root);
    return SB_OK;
}

int sbi_ca_init(const char *dir, char *err, size_t err_size)
{
    char path[4096];
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return s_fail(err, err_size, SB_EIO, dir);
    S_PATH(path, "%s/root.key", dir);
    if (access(path, F_OK) == 0)
        return s_fail(err, err_size, SB_EEXISTS, path);

    sbi_keys_t root;
    sbi_keys_generate(&root, SBI_CERT_ROOT);
    strcpy(root.cert.agency, "root");
    strcpy(root.cert.name, "sharebus root");
    root.cert.not_before_ms = sbi_now_ms() / 1000 * 1000;
    root.cert.not_after_ms = root.cert.not_before_ms + 20ull * 365 * 86400 * 1000;
    sbi_cert_sign(&root.cert, root.sign_secret);
    uint8_t subject[32];
    randombytes_buf(subject, sizeof subject);

    int rc = sbi_keys_save(&root, path);
    if (rc != SB_OK)
        s_fail(err, err_size, rc, path);
    if (rc == SB_OK) {
        S_PATH(path, "%s/subject.key", dir);
        rc = sbi_secret_save(path, subject);
        if (rc != SB_OK)
            s_fail(err, err_size, rc, path);
    }
    if (rc == SB_OK) {
        S_PATH(path, "%s/root.cert", dir);
        rc = sbi_cert_save(&root.cert, path);
        if (rc != SB_OK)
            s_fail(err, err_size, rc, path);
    }
    if (rc == SB_OK) {
        S_PATH(path, "%s/serial", dir);
        rc = sbi_file_write(path, "1\n", 2, 0644, false);
        if (rc != SB_OK)
            s_fail(err, err_size, rc, path);
    }
    if (rc != SB_OK) {
        /* All or nothing: a half-made root would be worse than none. */
        const char *files[] = {"root.key", "subject.key", "root.cert", "serial"};
        for (size_t i = 0; i < 4; i++) {
            S_PATH(path, "%s/%s", dir, files[i]);
            unlink(path);
        }
    }
    sbi_keys_wipe(&root);
    sodium_memzero(subject, sizeof subject);
    return rc;
}

static int s_next_serial(const char *dir, uint64_t *serial)
{
    char path[4096], *text = NULL;
    S_PATH(path, "%s/serial", dir);
    int rc = sbi_file_read(path, 64, &text, NULL);
    if (rc != SB_OK)
        return rc;
    char *end = NULL;
    *serial = strtoull(text, &end, 10);
    rc = *serial > 0 && end && (*end == '\n' || *end == 0) ? SB_OK : SB_EMALFORMED;
    free(text);
    if (rc == SB_OK) {
        char next[32];
        int n = snprintf(next, sizeof next, "%" PRIu64 "\n", *serial + 1);
        rc = sbi_file_write(path, next, (size_t) n, 0644, false);
    }
    return rc;
}

/* Moves the current certificate and key of `agency` aside as *.SERIAL. */
static int s_retire(const char *dir, const char *agency, char *err, size_t err_size)
{
    char cert_path[4096], key_path[4096], old_cert[4200], old_key[4200];
    S_PATH(cert_path, "%s/%s.cert", dir, agency);
    S_PATH(key_path, "%s/%s.key", dir, agency);
    sbi_cert_t old;
    int rc = sbi_cert_load(cert_path, &old);
    if (rc == SB_EIO && errno == ENOENT)
        return SB_OK;
    if (rc != SB_OK)
        return s_fail(err, err_size, rc, cert_path);
    S_PATH(old_cert, "%s/%s.%" PRIu64 ".cert", dir, agency, old.serial);
    S_PATH(old_key, "%s/%s.%" PRIu64 ".key", dir, agency, old.serial);
    if (rename(key_path, old_key) != 0 && errno != ENOENT)
        return s_fail(err, err_size, SB_EIO, key_path);
    if (rename(cert_path, old_cert) != 0)
        return s_fail(err, err_size, SB_EIO, cert_path);
    return SB_OK;
}

int sbi_ca_issue(const char *dir, sbi_cert_kind_t kind, const char *agency,
                 const char *name, int days, bool replace, uint64_t *serial_p,
                 char *err, size_t err_size)
{
    assert(kind != SBI_CERT_ROOT);
    if (!sbi_agency_valid(agency, kind == SBI_CERT_BROKER)
        || (kind == SBI_CERT_BROKER && strcmp(agency, "broker") != 0)) {
        snprintf(err, err_size,
                 "invalid agency id '%s': use 1-%d of a-z, 0-9, '-', '.', starting "
                 "with a letter or digit ('broker' and 'root' are reserved)",
                 agency, SBI_AGENCY_MAX);
        return SB_EINVAL;
    }
    if (!name || !*name || strlen(name) > SBI_NAME_MAX || strpbrk(name, "\"\n\r\t")) {
        snprintf(err, err_size, "invalid name: 1-%d printable characters, no quotes",
                 SBI_NAME_MAX);
        return SB_EINVAL;
    }
    if (days <= 0 || days > 36500) {
        snprintf(err, err_size, "invalid --days %d: 1 to 36500", days);
        return SB_EINVAL;
    }
    char cert_path[4096], key_path[4096];
    S_PATH(cert_path, "%s/%s.cert", dir, agency);
    S_PATH(key_path, "%s/%s.key", dir, agency);
    uint8_t root_secret[64];
    int rc = s_root_secret(dir, root_secret, err, err_size);
    if (rc != SB_OK)
        return rc;
    if (!replace && (access(cert_path, F_OK) == 0 || access(key_path, F_OK) == 0)) {
        sodium_memzero(root_secret, sizeof root_secret);
        snprintf(err, err_size, "%s: already exists (use --replace to rotate keys)", cert_path);
        return SB_EEXISTS;
    }
    sbi_keys_t keys;
    sbi_keys_generate(&keys, kind);
    strcpy(keys.cert.agency, agency);
    strcpy(keys.cert.name, name);
    keys.cert.not_before_ms = sbi_now_ms() / 1000 * 1000;
    keys.cert.not_after_ms = keys.cert.not_before_ms + (uint64_t) days * 86400 * 1000;
    rc = s_next_serial(dir, &keys.cert.serial);
    if (rc != SB_OK)
        s_fail(err, err_size, rc, dir);
    if (rc == SB_OK && replace)
        rc = s_retire(dir, agency, err, err_size);
    if (rc == SB_OK) {
        sbi_cert_sign(&keys.cert, root_secret);
        rc = sbi_keys_save(&keys, key_path);
        if (rc != SB_OK)
            s_fail(err, err_size, rc, key_path);
    }
    if (rc == SB_OK) {
        rc = sbi_cert_save(&keys.cert, cert_path);
        if (rc != SB_OK) {
            s_fail(err, err_size, rc, cert_path);
            unlink(key_path);
        }
    }
    if (rc == SB_OK && serial_p)
        *serial_p = keys.cert.serial;
    sbi_keys_wipe(&keys);
    sodium_memzero(root_secret, sizeof root_secret);
    return rc;
}

int sbi_ca_revoke(const char *dir, const char *agency, uint64_t serial, char *err,
                  size_t err_size)
{
    char trust_err[512];
    sbi_trust_t *trust = sbi_trust_new(dir, trust_err, sizeof trust_err);
    if (!trust) {
        snprintf(err, err_size, "%s", trust_err);
        return SB_EBADCERT;
    }
    char path[4096];
    S_PATH(path, "%s/revoked.crl", dir);
    sbi_crl_t crl;
    int rc = sbi_crl_load(path, &crl);
    if (rc == SB_ENOTFOUND)
        rc = SB_OK;
    size_t added = 0;
    for (size_t i = 0; rc == SB_OK && i < sbi_trust_count(trust); i++) {
        const sbi_cert_t *cert = sbi_trust_at(trust, i);
        if (strcmp(cert->agency, agency) != 0 || (serial && cert->serial != serial)
            || sbi_crl_revoked(&crl, cert->serial))
            continue;
        rc = sbi_crl_add(&crl, agency, cert->serial, sbi_now_ms());
        added++;
    }
    if (rc == SB_OK && added == 0) {
        rc = SB_ENOTFOUND;
        if (serial)
            snprintf(err, err_size, "no unrevoked certificate of %s with serial %" PRIu64, agency, serial);
        else
            snprintf(err, err_size, "no unrevoked certificate of %s in %s", agency, dir);
    }
    uint8_t root_secret[64];
    if (rc == SB_OK)
        rc = s_root_secret(dir, root_secret, err, err_size);
    if (rc == SB_OK) {
        rc = sbi_crl_save(&crl, root_secret, path);
        if (rc != SB_OK)
            s_fail(err, err_size, rc, path);
        sodium_memzero(root_secret, sizeof root_secret);
    }
    sbi_crl_clear(&crl);
    sbi_trust_destroy(&trust);
    return rc;
}
