/*  ca.c - certificate authority operations on a certificate directory.

    Every operation takes an exclusive lock on the directory (flock on the
    directory itself, so no lock file is left lying around), checks all it
    can before writing anything, and undoes its own writes when a later step
    fails: a failed command leaves the directory as it found it, apart from a
    serial number that may have been used up. */
#include "ca.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_PATH(buf, ...) snprintf(buf, sizeof buf, __VA_ARGS__)
#define S_DAYS_MAX 36500

/* "what: why" into err; returns rc. Reads errno for SB_EIO. */
static int s_fail(char *err, size_t size, int rc, const char *what)
{
    snprintf(err, size, "%s: %s", what, rc == SB_EIO ? strerror(errno) : sb_strerror(rc));
    return rc;
}

/* Paths are built in 4096-byte buffers: refuse a directory name that
   would truncate them rather than act on a truncated path. */
static int s_dir_ok(const char *dir, char *err, size_t size)
{
    if (dir && *dir && strlen(dir) < 3072)
        return SB_OK;
    snprintf(err, size, "invalid directory name (empty or too long)");
    return SB_EINVAL;
}

static bool s_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Locks `dir` against other sharebus-cert runs; -1 with errno on failure. */
static int s_lock(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        fd = -1;
    }
    return fd;
}

static void s_unlock(int fd)
{
    if (fd >= 0)
        close(fd);  /* releases the flock */
}

/* Agency ids the CA will issue: valid on the wire, and not a name that
   would collide with another file of the directory layout: "subject"
   (subject.key) or "ID.N" (a retired certificate, ID.SERIAL.cert). */
static bool s_issuable(const char *agency, sbi_cert_kind_t kind)
{
    if (kind == SBI_CERT_BROKER)
        return agency && strcmp(agency, "broker") == 0;
    if (!sbi_agency_valid(agency, false) || strcmp(agency, "subject") == 0)
        return false;
    const char *last = strrchr(agency, '.');
    if (!last || !last[1])
        return true;
    for (const char *c = last + 1; *c; c++)
        if (!isdigit((unsigned char) *c))
            return true;
    return false;
}

/* Display names: 1..SBI_NAME_MAX bytes of UTF-8 text without control
   characters or '"' (the certificate is quoted ZPL text). */
static bool s_name_valid(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > SBI_NAME_MAX)
        return false;
    const unsigned char *c = (const unsigned char *) name;
    while (*c) {
        if (*c < 0x80) {
            if (*c < ' ' || *c == 0x7f || *c == '"')
                return false;
            c++;
            continue;
        }
        int more = (*c & 0xe0) == 0xc0 ? 1 : (*c & 0xf0) == 0xe0 ? 2 : (*c & 0xf8) == 0xf0 ? 3 : 0;
        if (more == 0 || *c == 0xc0 || *c == 0xc1 || *c > 0xf4)
            return false;
        uint32_t point = *c & (0x3fu >> more);
        for (int i = 1; i <= more; i++) {
            if ((c[i] & 0xc0) != 0x80)
                return false;
            point = point << 6 | (c[i] & 0x3f);
        }
        if ((more == 2 && point < 0x800) || (more == 3 && point < 0x10000)
            || (point >= 0xd800 && point <= 0xdfff) || point > 0x10ffff
            || (point >= 0x80 && point <= 0x9f))
            return false;
        c += more + 1;
    }
    return true;
}

/* The root's secret signing key, checked against DIR/root.cert: a root.key
   that does not match the root certificate would sign certificates and
   revocation lists that nobody can verify. */
static int s_root_secret(const char *dir, uint8_t secret[64], char *err, size_t size)
{
    char path[4096];
    S_PATH(path, "%s/root.cert", dir);
    sbi_cert_t cert;
    int rc = sbi_cert_load(path, &cert);
    if (rc == SB_OK && (cert.kind != SBI_CERT_ROOT
                        || sbi_cert_verify(&cert, cert.sign_public) != SB_OK))
        rc = SB_EBADCERT;
    if (rc != SB_OK) {
        s_fail(err, size, rc, path);
        if (rc == SB_EIO && errno == ENOENT)
            strncat(err, " (run sharebus-cert init first)", size - strlen(err) - 1);
        return rc;
    }
    S_PATH(path, "%s/root.key", dir);
    sbi_keys_t root;
    rc = sbi_keys_read(path, &root, err, size);  /* names the line, or the mode to fix */
    if (rc == SB_OK && root.cert.kind != SBI_CERT_ROOT) {
        sbi_keys_wipe(&root);
        snprintf(err, size, "%s: not the root's secret key", path);
        rc = SB_EMALFORMED;
    }
    if (rc != SB_OK) {
        if (rc == SB_EIO && errno == ENOENT)
            strncat(err, " (the root's secret key is needed here)", size - strlen(err) - 1);
        return rc;
    }
    if (sodium_memcmp(root.cert.sign_public, cert.sign_public, 32) != 0) {
        sbi_keys_wipe(&root);
        snprintf(err, size, "%s: does not match %s/root.cert", path, dir);
        return SB_EBADCERT;
    }
    memcpy(secret, root.sign_secret, 64);
    sbi_keys_wipe(&root);
    return SB_OK;
}

int sbi_ca_init(const char *dir, char *err, size_t err_size)
{
    static const char *files[] = {"root.key", "subject.key", "root.cert", "serial"};
    enum { S_FILES = sizeof files / sizeof files[0] };
    char path[4096];
    if (s_dir_ok(dir, err, err_size) != SB_OK)
        return SB_EINVAL;
    bool made_dir = mkdir(dir, 0700) == 0;
    struct stat st;
    if (!made_dir && (errno != EEXIST || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        if (errno == EEXIST)
            errno = ENOTDIR;
        return s_fail(err, err_size, SB_EIO, dir);
    }
    int lock = s_lock(dir);
    if (lock < 0) {
        s_fail(err, err_size, SB_EIO, dir);
        if (made_dir)
            rmdir(dir);
        return SB_EIO;
    }
    /* Refuse before writing anything: never mix a new root with old files. */
    for (size_t i = 0; i < S_FILES; i++) {
        S_PATH(path, "%s/%s", dir, files[i]);
        if (s_exists(path)) {
            snprintf(err, err_size, "%s: already exists (a root is already there; "
                     "nothing was changed)", path);
            s_unlock(lock);
            return SB_EEXISTS;
        }
    }

    sbi_keys_t root;
    sbi_keys_generate(&root, SBI_CERT_ROOT);
    strcpy(root.cert.agency, "root");
    strcpy(root.cert.name, "sharebus root");
    root.cert.not_before_ms = sbi_now_ms() / 1000 * 1000;
    root.cert.not_after_ms = root.cert.not_before_ms + 20ull * 365 * 86400 * 1000;
    sbi_cert_sign(&root.cert, root.sign_secret);
    uint8_t subject[32];
    randombytes_buf(subject, sizeof subject);

    size_t written = 0;
    int rc = SB_OK;
    for (size_t i = 0; rc == SB_OK && i < S_FILES; i++) {
        S_PATH(path, "%s/%s", dir, files[i]);
        switch (i) {
        case 0: rc = sbi_keys_save(&root, path); break;
        case 1: rc = sbi_secret_save(path, subject); break;
        case 2: rc = sbi_cert_save(&root.cert, path); break;
        default: rc = sbi_file_write(path, "1\n", 2, 0644, true); break;
        }
        if (rc == SB_OK)
            written++;
        else
            s_fail(err, err_size, rc, path);
    }
    if (rc != SB_OK) {
        /* All or nothing: a half-made root would be worse than none. Only
           what this call wrote is removed. */
        for (size_t i = 0; i < written; i++) {
            S_PATH(path, "%s/%s", dir, files[i]);
            unlink(path);
        }
        if (made_dir)
            rmdir(dir);
    }
    sbi_keys_wipe(&root);
    sodium_memzero(subject, sizeof subject);
    s_unlock(lock);
    return rc;
}

/* Takes the next serial from DIR/serial and writes back the one after. */
static int s_next_serial(const char *dir, uint64_t *serial, char *err, size_t size)
{
    char path[4096], *text = NULL;
    S_PATH(path, "%s/serial", dir);
    int rc = sbi_file_read(path, 64, &text, NULL);
    if (rc == SB_OK) {
        char *end = NULL;
        errno = 0;
        *serial = isdigit((unsigned char) text[0]) ? strtoull(text, &end, 10) : 0;
        rc = *serial > 0 && *serial < UINT64_MAX && !errno && end
                     && (*end == '\n' || *end == 0)
                 ? SB_OK : SB_EMALFORMED;
        free(text);
    }
    if (rc == SB_OK) {
        char next[32];
        int n = snprintf(next, sizeof next, "%" PRIu64 "\n", *serial + 1);
        rc = sbi_file_write(path, next, (size_t) n, 0644, false);
    }
    if (rc != SB_OK)
        s_fail(err, size, rc, path);
    return rc;
}

/* Hard-links `from` to `to`, then removes `from`: a rename that never
   replaces an existing `to`. */
static int s_move(const char *from, const char *to)
{
    if (link(from, to) != 0)
        return SB_EIO;
    if (unlink(from) != 0) {
        int saved = errno;
        unlink(to);
        errno = saved;
        return SB_EIO;
    }
    return SB_OK;
}

typedef struct {
    char cert[4096], key[4096];         /* DIR/ID.cert, DIR/ID.key */
    char old_cert[4200], old_key[4200]; /* DIR/ID.SERIAL.cert, .key */
    bool moved_cert, moved_key;
} s_rotation_t;

/* With --replace: moves the current certificate and key of `agency` aside
   as ID.SERIAL.*, so that they stay usable until revoked. */
static int s_retire(s_rotation_t *r, const char *dir, const char *agency, char *err,
                    size_t size)
{
    bool has_cert = s_exists(r->cert), has_key = s_exists(r->key);
    if (!has_cert && !has_key)
        return SB_OK;
    if (!has_cert) {
        snprintf(err, size, "%s exists without %s: move it away before issuing", r->key,
                 r->cert);
        return SB_EEXISTS;
    }
    sbi_cert_t old;
    int rc = sbi_cert_load(r->cert, &old);
    if (rc == SB_OK && strcmp(old.agency, agency) != 0)
        rc = SB_EMALFORMED;
    if (rc != SB_OK) {
        s_fail(err, size, rc, r->cert);
        strncat(err, " (cannot rotate it: move it away by hand)", size - strlen(err) - 1);
        return rc;
    }
    S_PATH(r->old_cert, "%s/%s.%" PRIu64 ".cert", dir, agency, old.serial);
    S_PATH(r->old_key, "%s/%s.%" PRIu64 ".key", dir, agency, old.serial);
    if (s_move(r->cert, r->old_cert) != SB_OK)
        return s_fail(err, size, errno == EEXIST ? SB_EEXISTS : SB_EIO, r->old_cert);
    r->moved_cert = true;
    if (has_key && s_move(r->key, r->old_key) != SB_OK)
        return s_fail(err, size, errno == EEXIST ? SB_EEXISTS : SB_EIO, r->old_key);
    r->moved_key = has_key;
    return SB_OK;
}

/* Puts back what s_retire moved. */
static void s_unretire(s_rotation_t *r)
{
    if (r->moved_key && s_move(r->old_key, r->key) == SB_OK)
        r->moved_key = false;
    if (r->moved_cert && s_move(r->old_cert, r->cert) == SB_OK)
        r->moved_cert = false;
}

int sbi_ca_issue(const char *dir, sbi_cert_kind_t kind, const char *agency,
                 const char *name, int days, bool replace, uint64_t *serial_p,
                 char *err, size_t err_size)
{
    assert(kind != SBI_CERT_ROOT);
    if (s_dir_ok(dir, err, err_size) != SB_OK)
        return SB_EINVAL;
    if (!s_issuable(agency, kind)) {
        snprintf(err, err_size,
                 "invalid agency id '%.64s': use 1-%d of a-z, 0-9, '-', '.', starting "
                 "with a letter or digit, not ending in '.' and digits ('broker', "
                 "'root' and 'subject' are reserved; use --broker for the broker)",
                 agency ? agency : "", SBI_AGENCY_MAX);
        return SB_EINVAL;
    }
    if (!s_name_valid(name)) {
        snprintf(err, err_size, "invalid name: 1-%d bytes of UTF-8 text, without control "
                 "characters or '\"'", SBI_NAME_MAX);
        return SB_EINVAL;
    }
    if (days <= 0 || days > S_DAYS_MAX) {
        snprintf(err, err_size, "invalid --days %d: 1 to %d", days, S_DAYS_MAX);
        return SB_EINVAL;
    }
    s_rotation_t r = {0};
    S_PATH(r.cert, "%s/%s.cert", dir, agency);
    S_PATH(r.key, "%s/%s.key", dir, agency);
    int lock = s_lock(dir);
    if (lock < 0) {
        s_fail(err, err_size, SB_EIO, dir);
        if (errno == ENOENT)
            strncat(err, " (run sharebus-cert init first)", err_size - strlen(err) - 1);
        return SB_EIO;
    }
    uint8_t root_secret[64];
    int rc = s_root_secret(dir, root_secret, err, err_size);
    if (rc != SB_OK) {
        s_unlock(lock);
        return rc;
    }
    if (!replace && (s_exists(r.cert) || s_exists(r.key))) {
        snprintf(err, err_size, "%s: already exists (use --replace to rotate keys)",
                 s_exists(r.cert) ? r.cert : r.key);
        rc = SB_EEXISTS;
    }
    sbi_keys_t keys;
    sbi_keys_generate(&keys, kind);
    strcpy(keys.cert.agency, agency);
    strcpy(keys.cert.name, name);
    keys.cert.not_before_ms = sbi_now_ms() / 1000 * 1000;
    keys.cert.not_after_ms = keys.cert.not_before_ms + (uint64_t) days * 86400 * 1000;
    if (rc == SB_OK)
        rc = s_next_serial(dir, &keys.cert.serial, err, err_size);
    if (rc == SB_OK && replace)
        rc = s_retire(&r, dir, agency, err, err_size);
    bool wrote_key = false;
    if (rc == SB_OK) {
        sbi_cert_sign(&keys.cert, root_secret);
        rc = sbi_keys_save(&keys, r.key);
        wrote_key = rc == SB_OK;
        if (rc != SB_OK)
            s_fail(err, err_size, rc, r.key);
    }
    if (rc == SB_OK) {
        rc = sbi_cert_save(&keys.cert, r.cert);
        if (rc != SB_OK)
            s_fail(err, err_size, rc, r.cert);
    }
    if (rc != SB_OK) {
        if (wrote_key)
            unlink(r.key);
        s_unretire(&r);
    }
    if (rc == SB_OK && serial_p)
        *serial_p = keys.cert.serial;
    sbi_keys_wipe(&keys);
    sodium_memzero(root_secret, sizeof root_secret);
    s_unlock(lock);
    return rc;
}

/* Revokes under the lock; `trust` was loaded under it. */
static int s_revoke(const char *dir, sbi_trust_t *trust, const char *agency, uint64_t serial,
                    char *err, size_t err_size)
{
    /* Start from the list the trust store verified, not a second read. */
    const sbi_crl_t *current = sbi_trust_crl(trust);
    sbi_crl_t crl = {0};
    int rc = SB_OK;
    for (size_t i = 0; rc == SB_OK && i < current->count; i++)
        rc = sbi_crl_add(&crl, current->entries[i].agency, current->entries[i].serial,
                         current->entries[i].revoked_ms);
    size_t added = 0;
    bool already = false;
    uint64_t now = sbi_now_ms();
    for (size_t i = 0; rc == SB_OK && i < sbi_trust_count(trust); i++) {
        const sbi_cert_t *cert = sbi_trust_at(trust, i);
        if (strcmp(cert->agency, agency) != 0 || (serial && cert->serial != serial))
            continue;
        if (sbi_crl_revoked(&crl, cert->serial)) {
            already = true;
            continue;
        }
        rc = sbi_crl_add(&crl, agency, cert->serial, now);
        added += rc == SB_OK;
    }
    if (rc != SB_OK)
        s_fail(err, err_size, rc, agency);
    else if (added == 0) {
        rc = SB_ENOTFOUND;
        if (serial)
            snprintf(err, err_size, "%s serial %" PRIu64 ": %s", agency, serial,
                     already ? "already revoked" : "no such certificate in the directory");
        else
            snprintf(err, err_size, "%s: %s", agency,
                     already ? "every certificate is already revoked"
                             : "no certificate of this agency in the directory");
    }
    uint8_t root_secret[64];
    if (rc == SB_OK)
        rc = s_root_secret(dir, root_secret, err, err_size);
    if (rc == SB_OK) {
        char path[4096];
        S_PATH(path, "%s/revoked.crl", dir);
        rc = sbi_crl_save(&crl, root_secret, path);
        if (rc != SB_OK)
            s_fail(err, err_size, rc, path);
        sodium_memzero(root_secret, sizeof root_secret);
    }
    sbi_crl_clear(&crl);
    return rc;
}

int sbi_ca_revoke(const char *dir, const char *agency, uint64_t serial, char *err,
                  size_t err_size)
{
    if (s_dir_ok(dir, err, err_size) != SB_OK)
        return SB_EINVAL;
    if (!sbi_agency_valid(agency, true) || strcmp(agency, "root") == 0) {
        snprintf(err, err_size, "invalid agency id '%.64s'", agency ? agency : "");
        return SB_EINVAL;
    }
    int lock = s_lock(dir);
    if (lock < 0)
        return s_fail(err, err_size, SB_EIO, dir);
    char trust_err[4200];
    sbi_trust_t *trust = sbi_trust_new(dir, trust_err, sizeof trust_err);
    int rc = SB_EBADCERT;
    if (!trust)
        snprintf(err, err_size, "%s", trust_err);
    else
        rc = s_revoke(dir, trust, agency, serial, err, err_size);
    sbi_trust_destroy(&trust);
    s_unlock(lock);
    return rc;
}
