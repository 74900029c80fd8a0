/*  ca.h - the bus's certificate authority, working on a certificate
    directory (layout in core/cert.h). Used by sharebus-cert and by tests
    that need a real directory of certificates. */
#ifndef SBI_CA_H_INCLUDED
#define SBI_CA_H_INCLUDED

#include "cert.h"

/* Every function takes an exclusive lock on DIR, checks before it writes,
   and on failure removes what it wrote: nothing half-written is left. `err`
   gets a one-line reason naming the file concerned. */

/* Creates DIR (0700) if needed (not its parents), the root key pair
   (root.key 0600, root.cert), the subject key (subject.key 0600) and the
   serial counter. Fails with SB_EEXISTS, changing nothing, if any of these
   files is already there. */
int sbi_ca_init(const char *dir, char *err, size_t err_size) SBI_UNUSED_RESULT;

/* Issues a certificate valid for `days` (1..36500) from now: DIR/ID.cert
   and DIR/ID.key (0600), signed by the root (agency "broker" for kind
   SBI_CERT_BROKER). SB_EINVAL for an id the CA does not issue (invalid,
   reserved, or ending in '.' and digits, which would collide with a
   retired file), a bad name or days; SB_EIO/SB_EBADCERT when the root is
   missing or root.key does not match root.cert. With `replace`, the
   current certificate of the agency is kept as DIR/ID.SERIAL.cert (and its
   key as DIR/ID.SERIAL.key) so that it stays usable until revoked: key
   rotation. Without it, an existing certificate is SB_EEXISTS. On success
   *serial_p holds the new serial. */
int sbi_ca_issue(const char *dir, sbi_cert_kind_t kind, const char *agency,
                 const char *name, int days, bool replace, uint64_t *serial_p,
                 char *err, size_t err_size) SBI_UNUSED_RESULT;

/* Revokes the certificate with `serial` of `agency`, or (serial 0) every
   unrevoked certificate the agency has in DIR, and re-signs DIR/revoked.crl.
   SB_EINVAL for a bad id, SB_EBADCERT when the root or the current list
   does not verify, SB_ENOTFOUND when there is nothing left to revoke. */
int sbi_ca_revoke(const char *dir, const char *agency, uint64_t serial, char *err,
                  size_t err_size) SBI_UNUSED_RESULT;

#endif
