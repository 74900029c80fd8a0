/*  cert.c - certificates, secret key files and the revocation list. */
#include "cert.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
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

/* ---------------------------------------------------- secret key files

   Key files never reach CZMQ: zconfig copies the text it parses into
   buffers it frees without wiping them. A key file is read into memory
   from sodium_malloc(), parsed in place by the small parser below, which
   takes exactly what sbi_keys_save() and sbi_secret_save() write, and
   every copy of a secret (the file's text, Z85 text, decoded keys) is
   wiped on every path. A file that group or others may read or write is
   refused, as OpenSSH refuses such a private key: the key may already be
   in other hands, and a daemon that used it silently would hide that. */

#define S_KEY_FILE_MAX 4096     /* a key file is under 600 bytes */
#define S_WHY_MAX 160

static void (*s_wipe_hook)(const void *data, size_t size);

void sbi_keys_set_wipe_hook(void (*hook)(const void *data, size_t size))
{
    s_wipe_hook = hook;
}

static void s_wipe(void *data, size_t size)
{
    sodium_memzero(data, size);
    if (s_wipe_hook)
        s_wipe_hook(data, size);
}

/* One `name = "value"` line a key file must hold, in this order. */
typedef struct {
    const char *section;
    const char *name;
} s_key_field_t;

/* Where a value is in the text: never copied out of it. */
typedef struct {
    const char *text;
    size_t size;
    size_t line;
} s_key_value_t;

static const s_key_field_t s_keys_layout[] = {
    {"metadata", "sharebus-secret-keys"}, {"metadata", "kind"}, {"metadata", "agency"},
    {"metadata", "serial"}, {"curve", "secret-key"}, {"sign", "secret-key"},
    {"box", "secret-key"}};
enum { S_KEYS_FIELDS = sizeof s_keys_layout / sizeof s_keys_layout[0] };

static const s_key_field_t s_secret_layout[] = {{"secret", "key"}};

/* "line N: why" into `why`; returns SB_EMALFORMED. Never quotes the text:
   it may hold a key. */
static int s_bad_line(char *why, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int s_bad_line(char *why, size_t line, const char *fmt, ...)
{
    int n = snprintf(why, S_WHY_MAX, "line %zu: ", line);
    va_list args;
    va_start(args, fmt);
    vsnprintf(why + n, S_WHY_MAX - (size_t) n, fmt, args);
    va_end(args);
    return SB_EMALFORMED;
}

/* Reads key text as sbi_keys_save() and sbi_secret_save() write it: for
   each field of `layout`, in order, the line holding its section's name
   (once per section) and then the line `    NAME = "VALUE"`, VALUE being
   printable ASCII without spaces or '"'. Lines are ended by '\n'; lines
   that are empty or start with '#' are skipped. Anything else, a missing
   or extra field included, is SB_EMALFORMED with its line in `why`. */
static int s_key_text_parse(const char *text, size_t size, const s_key_field_t *layout,
                            size_t count, s_key_value_t *values, char *why)
{
    size_t next = 0, line = 0;
    const char *section = NULL;
    for (size_t at = 0; at < size;) {
        const char *start = text + at;
        const char *end = memchr(start, '\n', size - at);
        size_t len = end ? (size_t) (end - start) : size - at;
        at += len + (end != NULL);
        line++;
        if (memchr(start, 0, len))
            return s_bad_line(why, line, "holds a NUL byte");
        if (len == 0 || start[0] == '#')
            continue;
        if (next == count)
            return s_bad_line(why, line, "nothing may follow the last key");
        const s_key_field_t *want = &layout[next];
        if (!section || strcmp(section, want->section) != 0) {
            if (len != strlen(want->section) || memcmp(start, want->section, len) != 0)
                return s_bad_line(why, line, "expected the line '%s'", want->section);
            section = want->section;
            continue;
        }
        size_t name = strlen(want->name), head = 4 + name + 4;
        if (len < head + 2 || memcmp(start, "    ", 4) != 0
            || memcmp(start + 4, want->name, name) != 0 || memcmp(start + 4 + name, " = \"", 4) != 0
            || start[len - 1] != '"')
            return s_bad_line(why, line, "expected '    %s = \"...\"' (in '%s')", want->name,
                              want->section);
        for (size_t i = head; i < len - 1; i++)
            if (start[i] <= ' ' || start[i] > '~' || start[i] == '"')
                return s_bad_line(why, line, "%s holds a character a key file never has",
                                  want->name);
        values[next++] = (s_key_value_t){start + head, len - head - 1, line};
    }
    if (next < count)
        return s_bad_line(why, line + 1, "the file ends before '%s' in '%s'",
                          layout[next].name, layout[next].section);
    return SB_OK;
}

static bool s_value_is(const s_key_value_t *value, const char *text)
{
    return value->size == strlen(text) && memcmp(value->text, text, value->size) == 0;
}

/* Decodes a Z85 value of `size` bytes; the NUL-terminated copy
   zmq_z85_decode() needs is wiped. */
static int s_value_z85(const s_key_value_t *value, uint8_t *out, size_t size, char *why)
{
    char z85[81];
    assert(size * 5 / 4 < sizeof z85);
    if (value->size != size * 5 / 4)
        return s_bad_line(why, value->line, "expected %zu characters of Z85 text",
                          size * 5 / 4);
    memcpy(z85, value->text, value->size);
    z85[value->size] = 0;
    bool ok = zmq_z85_decode(out, z85) != NULL;
    s_wipe(z85, sizeof z85);
    if (!ok) {
        sodium_memzero(out, size);
        return s_bad_line(why, value->line, "not Z85 text");
    }
    return SB_OK;
}

static int s_value_u64(const s_key_value_t *value, uint64_t *out, char *why)
{
    uint64_t v = 0;
    for (size_t i = 0; i < value->size; i++) {
        unsigned digit = (unsigned) (value->text[i] - '0');
        if (digit > 9 || v > (UINT64_MAX - digit) / 10)
            return s_bad_line(why, value->line, "expected a decimal number");
        v = v * 10 + digit;
    }
    *out = v;
    return SB_OK;
}

static int s_keys_parse(const char *text, size_t size, sbi_keys_t *keys, char *why)
{
    memset(keys, 0, sizeof *keys);
    s_key_value_t v[S_KEYS_FIELDS];
    int rc = s_key_text_parse(text, size, s_keys_layout, S_KEYS_FIELDS, v, why);
    if (rc == SB_OK && !s_value_is(&v[0], "1"))
        rc = s_bad_line(why, v[0].line, "unknown version (this sharebus reads \"1\")");
    if (rc == SB_OK) {
        if (s_value_is(&v[1], "agency"))
            keys->cert.kind = SBI_CERT_AGENCY;
        else if (s_value_is(&v[1], "broker"))
            keys->cert.kind = SBI_CERT_BROKER;
        else if (s_value_is(&v[1], "root"))
            keys->cert.kind = SBI_CERT_ROOT;
        else
            rc = s_bad_line(why, v[1].line, "kind is not agency, broker or root");
    }
    if (rc == SB_OK) {
        if (v[2].size > SBI_AGENCY_MAX)
            rc = s_bad_line(why, v[2].line, "agency id longer than %d", SBI_AGENCY_MAX);
        else
            memcpy(keys->cert.agency, v[2].text, v[2].size);
    }
    if (rc == SB_OK)
        rc = s_value_u64(&v[3], &keys->cert.serial, why);
    if (rc == SB_OK)
        rc = s_value_z85(&v[4], keys->curve_secret, 32, why);
    if (rc == SB_OK)
        rc = s_value_z85(&v[5], keys->sign_secret, 64, why);
    if (rc == SB_OK)
        rc = s_value_z85(&v[6], keys->box_secret, 32, why);
    if (rc == SB_OK && keys->cert.kind == SBI_CERT_ROOT) {
        /* The root has only a signing key (its file holds zeros). */
        sodium_memzero(keys->curve_secret, sizeof keys->curve_secret);
        sodium_memzero(keys->box_secret, sizeof keys->box_secret);
    }
    if (rc == SB_OK) {
        crypto_sign_ed25519_sk_to_pk(keys->cert.sign_public, keys->sign_secret);
        crypto_scalarmult_base(keys->cert.curve_public, keys->curve_secret);
        crypto_scalarmult_base(keys->cert.box_public, keys->box_secret);
    }
    else
        sbi_keys_wipe(keys);
    return rc;
}

static int s_secret_parse(const char *text, size_t size, uint8_t key[32], char *why)
{
    s_key_value_t value;
    int rc = s_key_text_parse(text, size, s_secret_layout, 1, &value, why);
    if (rc == SB_OK)
        rc = s_value_z85(&value, key, 32, why);
    return rc;
}

int sbi_keys_parse(const char *text, sbi_keys_t *keys)
{
    char why[S_WHY_MAX];
    size_t size = strnlen(text, S_KEY_FILE_MAX + 1);
    if (size > S_KEY_FILE_MAX) {
        memset(keys, 0, sizeof *keys);
        return SB_EMALFORMED;
    }
    return s_keys_parse(text, size, keys, why);
}

/* Reads key file `path` into `*text_p` (from sodium_malloc, NUL-terminated;
   free it with s_key_file_free). On failure `err` says why, naming the
   file; `*refused` tells a file refused for its mode or size from one
   that could not be read (SB_EIO with errno kept). */
static int s_key_file_read(const char *path, char **text_p, size_t *size_p, bool *refused,
                           char *err, size_t err_size)
{
    *text_p = NULL;
    *size_p = 0;
    *refused = false;
    /* O_NONBLOCK: a FIFO in place of a key file must not hang us. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    bool ok = fd >= 0 && fstat(fd, &st) == 0;
    if (ok && !S_ISREG(st.st_mode)) {
        errno = EINVAL;
        ok = false;
    }
    if (!ok) {
        int saved = errno;
        if (fd >= 0)
            close(fd);
        snprintf(err, err_size, "%s: %s", path, strerror(saved));
        errno = saved;
        return SB_EIO;
    }
    int rc = SB_OK;
    if (st.st_mode & 077) {
        snprintf(err, err_size,
                 "%s: mode %04o opens a secret key to group or others: run chmod 600 %s",
                 path, (unsigned) (st.st_mode & 07777), path);
        rc = SB_EIO;
        errno = EACCES;
    }
    else if (st.st_size > S_KEY_FILE_MAX) {
        snprintf(err, err_size, "%s: larger than %d bytes: not a sharebus key file", path,
                 S_KEY_FILE_MAX);
        rc = SB_ETOOBIG;
    }
    if (rc != SB_OK) {
        int saved = errno;
        close(fd);
        *refused = true;
        errno = saved;
        return rc;
    }
    size_t size = (size_t) st.st_size, got = 0;
    char *text = sodium_malloc(size + 1);
    while (text && got < size) {
        ssize_t n = read(fd, text + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            errno = n == 0 ? EIO : errno;
            break;
        }
        got += (size_t) n;
    }
    int saved = errno;
    close(fd);
    if (!text || got != size) {
        if (text) {
            s_wipe(text, size + 1);
            sodium_free(text);
        }
        snprintf(err, err_size, "%s: %s", path, text ? strerror(saved) : "out of memory");
        errno = saved;
        return text ? SB_EIO : SB_ENOMEM;
    }
    text[size] = 0;
    *text_p = text;
    *size_p = size;
    return SB_OK;
}

/* sodium_free() wipes too; the explicit wipe lets tests see it happen. */
static void s_key_file_free(char **text_p, size_t size)
{
    if (*text_p) {
        s_wipe(*text_p, size + 1);
        sodium_free(*text_p);
        *text_p = NULL;
    }
}

/* Reads and parses a key file with `parse`, which gets `out`. */
static int s_key_file_load(const char *path, int (*parse)(const char *, size_t, void *, char *),
                           void *out, bool *refused, char *err, size_t err_size)
{
    char *text = NULL;
    size_t size = 0;
    int rc = s_key_file_read(path, &text, &size, refused, err, err_size);
    if (rc == SB_OK) {
        char why[S_WHY_MAX];
        rc = parse(text, size, out, why);
        if (rc != SB_OK) {
            snprintf(err, err_size, "%s: %s: not a sharebus key file", path, why);
            *refused = true;
        }
    }
    int saved = errno;
    s_key_file_free(&text, size);
    errno = saved;
    return rc;
}

static int s_keys_parse_any(const char *text, size_t size, void *out, char *why)
{
    return s_keys_parse(text, size, out, why);
}

static int s_secret_parse_any(const char *text, size_t size, void *out, char *why)
{
    return s_secret_parse(text, size, out, why);
}

/* Every failure is logged here, once: the SB_E* code alone cannot say why
   (errno is kept for callers that tell a missing file apart). */
static int s_report(int rc, const char *err)
{
    if (rc != SB_OK) {
        int saved = errno;
        sbi_error("%s", err);
        errno = saved;
    }
    return rc;
}

int sbi_keys_read(const char *path, sbi_keys_t *keys, char *err, size_t err_size)
{
    bool refused;
    memset(keys, 0, sizeof *keys);
    return s_key_file_load(path, s_keys_parse_any, keys, &refused, err, err_size);
}

int sbi_keys_load(const char *path, sbi_keys_t *keys)
{
    char err[2 * 4096 + 256];
    bool refused;
    memset(keys, 0, sizeof *keys);
    int rc = s_key_file_load(path, s_keys_parse_any, keys, &refused, err, sizeof err);
    return s_report(rc, err);
}

int sbi_keys_save(const sbi_keys_t *keys, const char *path)
{
    /* Formatted on the stack, not by zsys_sprintf(): it formats into a
       256-byte buffer first and frees it unwiped when the text is longer. */
    char curve[41], sign[81], box[41], text[1024];
    s_z85(keys->curve_secret, 32, curve);
    s_z85(keys->sign_secret, 64, sign);
    s_z85(keys->box_secret, 32, box);
    int n = snprintf(text, sizeof text,
                     "#   sharebus secret keys of %s: keep private (mode 0600), never copy\n"
                     "metadata\n    sharebus-secret-keys = \"1\"\n    kind = \"%s\"\n"
                     "    agency = \"%s\"\n    serial = \"%" PRIu64 "\"\n"
                     "curve\n    secret-key = \"%s\"\nsign\n    secret-key = \"%s\"\n"
                     "box\n    secret-key = \"%s\"\n",
                     keys->cert.agency, s_kind_names[keys->cert.kind], keys->cert.agency,
                     keys->cert.serial, curve, sign, box);
    s_wipe(curve, sizeof curve);
    s_wipe(sign, sizeof sign);
    s_wipe(box, sizeof box);
    int rc = n > 0 && (size_t) n < sizeof text
                 ? sbi_file_write(path, text, (size_t) n, 0600, true) : SB_EINVAL;
    s_wipe(text, sizeof text);
    return rc;
}

int sbi_secret_read(const char *path, uint8_t key[32], char *err, size_t err_size)
{
    bool refused;
    return s_key_file_load(path, s_secret_parse_any, key, &refused, err, err_size);
}

int sbi_secret_load(const char *path, uint8_t key[32])
{
    char err[2 * 4096 + 256];
    bool refused;
    int rc = s_key_file_load(path, s_secret_parse_any, key, &refused, err, sizeof err);
    return s_report(rc, err);
}

int sbi_secret_save(const char *path, const uint8_t key[32])
{
    char z85[41], text[256];
    s_z85(key, 32, z85);
    int n = snprintf(text, sizeof text, "#   sharebus subject key: keep private (mode 0600)\n"
                                        "secret\n    key = \"%s\"\n", z85);
    s_wipe(z85, sizeof z85);
    int rc = n > 0 && (size_t) n < sizeof text
                 ? sbi_file_write(path, text, (size_t) n, 0600, true) : SB_EINVAL;
    s_wipe(text, sizeof text);
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
