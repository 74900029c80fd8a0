/*  sharebus.h - the sharebus client library, libsharebus.

    A back-end talks only to its own agency's agent, over ZeroMQ (ipc:// or
    tcp:// on loopback). The agent holds the agency's keys, signs, seals,
    verifies and opens; the back-end sees clear records and typed errors.

    Conventions:
    - Functions that can fail return 0 or a negative SB_E* code; constructors
      return NULL on failure. sb_strerror() names a code; the object's
      sb_client_reason() gives the human detail of its last failure.
    - `*_destroy(x_p)` frees the object, sets *x_p to NULL, and is safe on a
      NULL or already-destroyed object.
    - Strings passed in are copied; strings returned are owned by the object
      they came from and live until it changes or is destroyed.
*/
#ifndef SHAREBUS_H_INCLUDED
#define SHAREBUS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SHAREBUS_BUILDING)
#define SB_EXPORT __attribute__((visibility("default")))
#else
#define SB_EXPORT
#endif

/* ---------------------------------------------------------------- errors */

/* Error codes. Each is the negative of the wire ErrorKind of the same name
   (proto/sharebus.proto), so a refusal keeps its kind from broker to back-end. */
typedef enum {
    SB_OK = 0,
    SB_EINVAL = -1,       /* invalid argument */
    SB_ENOMEM = -2,       /* out of memory */
    SB_EIO = -3,          /* system or file error */
    SB_EMALFORMED = -4,   /* bytes do not decode */
    SB_ETOOBIG = -5,      /* over a size limit */
    SB_EBADSIG = -6,      /* signature or payload hash does not verify */
    SB_EBADCERT = -7,     /* certificate unreadable or not signed by the root */
    SB_EREVOKED = -8,     /* certificate revoked */
    SB_EEXPIRED = -9,     /* certificate or consent outside its validity */
    SB_EUNKNOWN = -10,    /* unknown agency */
    SB_ESENDER = -11,     /* sender is not the authenticated agency */
    SB_EREPLAY = -12,     /* message id already seen */
    SB_ESTALE = -13,      /* timestamp outside the clock-skew window */
    SB_EDENIED = -14,     /* no policy rule allows it */
    SB_ENODATASET = -15,  /* dataset or topic not declared */
    SB_ENOCONSENT = -16,  /* no active consent where the rule requires one */
    SB_ERATE = -17,       /* rate limit reached */
    SB_EUNAVAILABLE = -18,/* peer offline, or the bus cannot take it now */
    SB_ETIMEOUT = -19,    /* deadline passed */
    SB_EEXISTS = -20,     /* already exists */
    SB_ENOTFOUND = -21,   /* no such thing */
    SB_EFULL = -22,       /* store or queue full */
    SB_EPROTOCOL = -23,   /* unexpected message for this state */
    SB_EFIELDS = -24,     /* fields beyond what was asked or allowed */
    SB_EINTERNAL = -25,   /* a bug: please report it */
} sb_error_t;

#define SB_ERROR_MIN SB_EINTERNAL

/* A sentence describing `code`, e.g. "no active consent". Never NULL. */
SB_EXPORT const char *sb_strerror(int code);

/* The short stable name of `code` used in logs, JSON and the CLI, e.g.
   "no-consent", "rate-limited", "denied". Never NULL. */
SB_EXPORT const char *sb_errname(int code);

/* The code whose sb_errname() is `name`, or SB_EINVAL when none is. */
SB_EXPORT int sb_errcode(const char *name);

#ifdef __cplusplus
}
#endif

#endif
