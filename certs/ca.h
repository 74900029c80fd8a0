/*  ca.h - the bus's certificate authority, working on a certificate
    directory (layout in core/cert.h). Used by sharebus-cert and by tests
    that need a real directory of certificates. */
#ifndef SBI_CA_H_INCLUDED
#define SBI_CA_H_INCLUDED

#include "cert.h"

/* Creates DIR (0700) if needed, a root key pair and the subject key. Fails
   with SB_EEXISTS if a root is already there. `err` gets the reason. */
int sbi_ca_init(const char *dir, char *err, size_t err_size) SBI_UNUSED_RESULT;

/* Issues a certificate valid for `days` from now: DIR/ID.cert and DIR/ID.key
   (agency "broker" for kind SBI_CERT_BROKER). With `replace`, an existing
   certificate of the agency is kept as DIR/ID.cert.SERIAL (with its key) so
   that it stays usable until revoked: key rotation. Without it, an existing
   certificate is SB_EEXISTS. On success *serial_p holds the new serial. */
int sbi_ca_issue(const char *dir, sbi_cert_kind_t kind, const char *agency,
                 const char *name, int days, bool replace, uint64_t *serial_p,
                 char *err, size_t err_size) SBI_UNUSED_RESULT;

/* Revokes the certificate with `serial` of `agency`, or (serial 0) every
   unrevoked certificate the agency has in DIR. SB_ENOTFOUND when there is
   nothing to revoke. */
int sbi_ca_revoke(const char *dir, const char *agency, uint64_t serial, char *err,
                  size_t err_size) SBI_UNUSED_RESULT;

#endif
