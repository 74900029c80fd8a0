/*  cert.h - certificates, secret keys, the revocation list, the trust store.

    Files are ZPL text (CZMQ's zconfig format) so that a certificate is also
    a valid zcert public certificate: zauth's certificate store reads the
    same files the rest of sharebus does. Secret key files are written in
    the same form but never parsed by CZMQ, which frees what it parsed
    without wiping it: cert.c reads exactly the layout it writes, in memory
    it wipes, and refuses a key file that group or others can read or
    write.

      DIR/root.cert      root's Ed25519 public key (self-signed)
      DIR/root.key       root's Ed25519 secret key          (0600)
      DIR/subject.key    the bus's subject key              (0600)
      DIR/ID.cert        agency certificate, signed by the root
      DIR/ID.key         the agency's three secret keys      (0600)
      DIR/broker.cert    the broker's certificate (agency id "broker")
      DIR/revoked.crl    root-signed revocation list
      DIR/serial         the next serial number
*/
#ifndef SBI_CERT_H_INCLUDED
#define SBI_CERT_H_INCLUDED

#include "sbi.h"

typedef enum { SBI_CERT_AGENCY, SBI_CERT_BROKER, SBI_CERT_ROOT } sbi_cert_kind_t;

typedef struct {
    sbi_cert_kind_t kind;
    char agency[SBI_AGENCY_MAX + 1];
    char name[SBI_NAME_MAX + 1];
    uint64_t serial;
    uint64_t not_before_ms;
    uint64_t not_after_ms;
    uint8_t curve_public[32];   /* CURVE transport (zero for the root) */
    uint8_t sign_public[32];    /* Ed25519 */
    uint8_t box_public[32];     /* X25519 (zero for the root) */
    uint8_t signature[64];      /* root's Ed25519 over the canonical form */
} sbi_cert_t;

typedef struct {
    sbi_cert_t cert;
    uint8_t curve_secret[32];
    uint8_t sign_secret[64];
    uint8_t box_secret[32];
} sbi_keys_t;

/* Makes fresh key pairs for an agency (or broker) certificate; the caller
   fills the remaining fields and signs with sbi_cert_sign(). */
void sbi_keys_generate(sbi_keys_t *keys, sbi_cert_kind_t kind);

/* Zeroes every secret in `keys`. */
void sbi_keys_wipe(sbi_keys_t *keys);

/* Signs `cert` with the root's secret key. */
void sbi_cert_sign(sbi_cert_t *cert, const uint8_t root_secret[64]);

/* Checks the root's signature on `cert`: SB_OK or SB_EBADCERT. */
int sbi_cert_verify(const sbi_cert_t *cert, const uint8_t root_public[32])
    SBI_UNUSED_RESULT;

/* Parses certificate text. SB_EMALFORMED names nothing more: callers say
   which file. Does not check the signature. */
int sbi_cert_parse(const char *text, sbi_cert_t *cert) SBI_UNUSED_RESULT;

/* Reads and parses a certificate file (SB_EIO, SB_ETOOBIG, SB_EMALFORMED). */
int sbi_cert_load(const char *path, sbi_cert_t *cert) SBI_UNUSED_RESULT;

/* Writes `cert` to `path` (0644), atomically, failing if it exists. */
int sbi_cert_save(const sbi_cert_t *cert, const char *path) SBI_UNUSED_RESULT;

/* Certificate text; the caller frees it. */
char *sbi_cert_format(const sbi_cert_t *cert);

/* Reads a secret key file (ID.key, broker.key, root.key); `keys->cert` gets
   only the kind, agency, serial and the public keys derived from the
   secrets (load the .cert for the rest). The file must be a regular file
   of mode 0600 or stricter and hold exactly what sbi_keys_save() writes
   (comment and empty lines aside). SB_EIO with errno when it cannot be
   read, and with errno EACCES when group or others may read or write it;
   SB_ETOOBIG past 4 KiB; SB_EMALFORMED. Every buffer that held its text
   is wiped, and `keys` is wiped on failure. Every failure is logged as
   one error line naming the file and why (the reason errno gives, the
   line, or the mode and "chmod 600 FILE"): callers need not say it again. */
int sbi_keys_load(const char *path, sbi_keys_t *keys) SBI_UNUSED_RESULT;

/* sbi_keys_load() without logging: `err` gets a one-line reason naming the
   file, whatever the failure. */
int sbi_keys_read(const char *path, sbi_keys_t *keys, char *err, size_t err_size)
    SBI_UNUSED_RESULT;

/* Writes the secret keys to `path`, mode 0600, atomically and exclusively. */
int sbi_keys_save(const sbi_keys_t *keys, const char *path) SBI_UNUSED_RESULT;

/* Parses secret key text as sbi_keys_load() does (for the fuzzer). */
int sbi_keys_parse(const char *text, sbi_keys_t *keys) SBI_UNUSED_RESULT;

/* Reads a 32-byte secret such as DIR/subject.key, with the checks, codes
   and logging of sbi_keys_load(). */
int sbi_secret_load(const char *path, uint8_t key[32]) SBI_UNUSED_RESULT;

/* sbi_secret_load() without logging, the reason in `err`. */
int sbi_secret_read(const char *path, uint8_t key[32], char *err, size_t err_size)
    SBI_UNUSED_RESULT;

/* Writes a 32-byte secret, mode 0600, atomically and exclusively. */
int sbi_secret_save(const char *path, const uint8_t key[32]) SBI_UNUSED_RESULT;

/* For tests: `hook` is shown every buffer that held secret key text (the
   file read, Z85 text) right after it is wiped and before it is freed or
   goes out of scope. NULL removes it. */
void sbi_keys_set_wipe_hook(void (*hook)(const void *data, size_t size));

/* ------------------------------------------------------ revocation list */

typedef struct {
    char agency[SBI_AGENCY_MAX + 1];
    uint64_t serial;
    uint64_t revoked_ms;
} sbi_revocation_t;

typedef struct {
    uint64_t issued_ms;
    size_t count;
    sbi_revocation_t *entries;
    uint8_t signature[64];
} sbi_crl_t;

/* Parses revocation-list text; frees with sbi_crl_clear(). */
int sbi_crl_parse(const char *text, sbi_crl_t *crl) SBI_UNUSED_RESULT;

/* Loads DIR/revoked.crl; a missing file is an empty, valid list. */
int sbi_crl_load(const char *path, sbi_crl_t *crl) SBI_UNUSED_RESULT;

/* Adds an entry (no check for duplicates: see sbi_crl_revoked). */
int sbi_crl_add(sbi_crl_t *crl, const char *agency, uint64_t serial,
                uint64_t when_ms) SBI_UNUSED_RESULT;

/* Signs and writes the list atomically. */
int sbi_crl_save(sbi_crl_t *crl, const uint8_t root_secret[64], const char *path)
    SBI_UNUSED_RESULT;

/* SB_OK or SB_EBADCERT when the root's signature does not hold. */
int sbi_crl_verify(const sbi_crl_t *crl, const uint8_t root_public[32])
    SBI_UNUSED_RESULT;

/* True when the certificate with this serial is revoked. */
bool sbi_crl_revoked(const sbi_crl_t *crl, uint64_t serial);

void sbi_crl_clear(sbi_crl_t *crl);

/* ------------------------------------------------------- trust store */

/* Everything a daemon or tool trusts, loaded from a certificate directory:
   the root, the revocation list and every certificate the root signed. */
typedef struct sbi_trust_t sbi_trust_t;

/* Loads DIR. Fails (NULL, reason in `err`) when the root or the revocation
   list is missing or bad. A certificate file that does not verify is left
   out and named in a warning. */
sbi_trust_t *sbi_trust_new(const char *dir, char *err, size_t err_size);

void sbi_trust_destroy(sbi_trust_t **self_p);

/* The root's public signing key. */
const uint8_t *sbi_trust_root(sbi_trust_t *self);

/* The newest unrevoked certificate of `agency` ("broker" for the broker),
   or NULL when there is none. */
const sbi_cert_t *sbi_trust_find(sbi_trust_t *self, const char *agency);

/* The certificate whose CURVE public key is `curve_public`, or NULL. */
const sbi_cert_t *sbi_trust_by_curve(sbi_trust_t *self, const uint8_t curve_public[32]);

/* SB_OK when `cert` is usable at `now_ms`; else SB_EREVOKED, SB_EEXPIRED. */
int sbi_trust_check(sbi_trust_t *self, const sbi_cert_t *cert, uint64_t now_ms)
    SBI_UNUSED_RESULT;

/* Every certificate loaded, in serial order; owned by the store. */
size_t sbi_trust_count(sbi_trust_t *self);
const sbi_cert_t *sbi_trust_at(sbi_trust_t *self, size_t index);

/* The revocation list the store loaded. */
const sbi_crl_t *sbi_trust_crl(sbi_trust_t *self);

/* Key rotation. An agency may hold several valid certificates while it
   moves to a new key. sbi_trust_find() returns, for sealing, the one the
   agency was last seen signing with (sbi_trust_prefer), else its newest:
   an agency that has not switched yet can open what is sealed for it. */

/* Makes `cert` (held by this store, unrevoked) the one sbi_trust_find
   returns for its agency. */
void sbi_trust_prefer(sbi_trust_t *self, const sbi_cert_t *cert);

/* Carries the preferences of `from` (an earlier load of the same
   directory) over to `self`, for certificates still unrevoked in `self`. */
void sbi_trust_inherit(sbi_trust_t *self, sbi_trust_t *from);

/* The valid (unrevoked, unexpired at `now_ms`) certificate of `agency`
   with the highest serial, whatever the preference; or NULL. */
const sbi_cert_t *sbi_trust_newest(sbi_trust_t *self, const char *agency, uint64_t now_ms);

#endif
