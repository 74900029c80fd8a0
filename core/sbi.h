/*  sbi.h - what sharebus modules share: time, ids, files, logging, limits.

    Internal to the project (prefix sbi_); never installed. Every module
    includes this first.
*/
#ifndef SBI_H_INCLUDED
#define SBI_H_INCLUDED

#include <czmq.h>
#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sharebus.h"
#include "sharebus.pb-c.h"

#define SBI_UNUSED_RESULT __attribute__((warn_unused_result))

/* ------------------------------------------------------------- limits */

#define SBI_AGENCY_MAX 32         /* agency id length */
#define SBI_NAME_MAX 128          /* display names, dataset, purpose, topic */
#define SBI_SUBJECT_MAX 64        /* a national id, as a back-end gives it */
#define SBI_ID_SIZE 16            /* message id bytes */
#define SBI_HASH_SIZE 32          /* BLAKE2b-256 */
#define SBI_FRAME_MAX (1 << 20)   /* one envelope frame on the wire */
#define SBI_HEADER_MAX 8192       /* serialized header */
#define SBI_FIELDS_MAX 64         /* fields named in one header */
#define SBI_ACKS_MAX 256          /* events one EVENT_ACK acknowledges (18 header bytes each) */
#define SBI_FILE_MAX (1 << 20)    /* certificate, key, policy file */
#define SBI_UNPACK_BUDGET(n) ((size_t) (n) * 32 + 4096) /* decoder memory */

/* -------------------------------------------------------------- time */

/* Wall-clock Unix time in milliseconds. */
uint64_t sbi_now_ms(void);

/* Formats Unix milliseconds as "2026-11-26T19:41:58Z" into buf (>= 21). */
const char *sbi_time_format(uint64_t ms, char *buf, size_t size);

/* Parses "YYYY-MM-DD" (midnight UTC) or "YYYY-MM-DDTHH:MM:SSZ" into Unix ms. */
int sbi_time_parse(const char *text, uint64_t *ms) SBI_UNUSED_RESULT;

/* ------------------------------------------------------ ids and text */

/* Fills `id` with SBI_ID_SIZE random bytes. */
void sbi_id_new(uint8_t id[SBI_ID_SIZE]);

/* Lower-case hex of `size` bytes into `out` (2*size+1). Returns out. */
char *sbi_hex(const uint8_t *data, size_t size, char *out);

/* True when `id` is a valid agency id: 1..32 of [a-z0-9.-], starting with a
   letter or digit. "broker" and "root" are reserved and only valid when
   `allow_reserved` is set. */
bool sbi_agency_valid(const char *id, bool allow_reserved);

/* True when `name` is a valid dataset, topic, purpose, field or rule id:
   1..128 printable ASCII characters without spaces. */
bool sbi_name_valid(const char *name);

/* The subject reference of a national id: keyed BLAKE2b-256 under the bus's
   subject key of the id with spaces and '-' removed and letters upper-cased.
   Returns SB_EINVAL when nothing is left to hash. */
int sbi_subject_ref(const uint8_t key[32], const char *national_id,
                    uint8_t ref[SBI_HASH_SIZE]) SBI_UNUSED_RESULT;

/* True when `data` is UTF-8 text without NUL or control characters other
   than tab, newline and carriage return (libfyaml reports those unevenly,
   and can loop on broken UTF-8). Otherwise false, with the 1-based line and
   column of the first byte that is not allowed, and that byte. */
bool sbi_text_valid(const char *data, size_t size, size_t *line, size_t *column,
                    unsigned *byte);

/* True when YAML text `data` may hold an explicit-key indicator: a '?'
   where libfyaml might start a token, outside comments (util.c states the
   rules); with its 1-based line and column.  It errs towards refusing: a
   '?' inside a word or after a plain word ("Fit to drive? yes") passes,
   but some '?' that are text do not ("x: [a]? b").  Debian's libfyaml
   crashes on some explicit keys ("? ?:<TAB>:"), and sharebus's files never
   need one: callers refuse them before parsing. */
bool sbi_yaml_explicit_key(const char *data, size_t size, size_t *line, size_t *column);

/* ------------------------------------------------------------- files */

/* Reads at most `max` bytes of `path` into a NUL-terminated buffer the caller
   frees. SB_EIO (errno kept) when unreadable, SB_ETOOBIG when longer. */
int sbi_file_read(const char *path, size_t max, char **data_p, size_t *size_p)
    SBI_UNUSED_RESULT;

/* Writes `data` to `path` atomically (temporary file, fsync, rename) with
   `mode`. With `exclusive`, fails with SB_EEXISTS when `path` exists. No
   partial file is ever left behind. */
int sbi_file_write(const char *path, const void *data, size_t size, int mode,
                   bool exclusive) SBI_UNUSED_RESULT;

/* ----------------------------------------------------------- decoding */

/* A protobuf-c allocator that refuses to hand out more than `budget` bytes
   in total, so a hostile frame cannot make the decoder allocate without
   bound. Memory it gives is freed by protobuf-c's default free (pass NULL
   to *_free_unpacked). */
typedef struct {
    ProtobufCAllocator allocator;
    size_t budget;
    size_t used;
} sbi_unpack_t;

/* Returns the allocator to pass to a protobuf-c unpack of `size` bytes. */
ProtobufCAllocator *sbi_unpack_init(sbi_unpack_t *self, size_t size);

/* --------------------------------------------------------------- log */

typedef enum { SBI_LOG_ERROR, SBI_LOG_WARNING, SBI_LOG_NOTICE, SBI_LOG_INFO,
               SBI_LOG_DEBUG } sbi_log_level_t;

/* Sets the lowest level written, and the component name prefixed to lines. */
void sbi_log_setup(const char *component, sbi_log_level_t level);

/* Parses "error|warning|notice|info|debug". */
int sbi_log_level_parse(const char *name, sbi_log_level_t *level)
    SBI_UNUSED_RESULT;

/* One line to stderr: "<level> component: message". Never pass a key or a
   national id. */
void sbi_log(sbi_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define sbi_error(...) sbi_log(SBI_LOG_ERROR, __VA_ARGS__)
#define sbi_warning(...) sbi_log(SBI_LOG_WARNING, __VA_ARGS__)
#define sbi_notice(...) sbi_log(SBI_LOG_NOTICE, __VA_ARGS__)
#define sbi_info(...) sbi_log(SBI_LOG_INFO, __VA_ARGS__)
#define sbi_debug(...) sbi_log(SBI_LOG_DEBUG, __VA_ARGS__)

/* ------------------------------------------------------------ errors */

/* Wire form of an SB_E* code and back. */
static inline Sharebus__ErrorKind sbi_error_kind(int code)
{
    return code < 0 && code >= SB_ERROR_MIN ? (Sharebus__ErrorKind) -code
                                            : SHAREBUS__ERROR_KIND__ERR_INTERNAL;
}
static inline int sbi_error_code(Sharebus__ErrorKind kind)
{
    int k = (int) kind;
    return k > 0 && k <= -SB_ERROR_MIN ? -k : SB_EINTERNAL;
}

/* Initialises libsodium once; aborts the process if it cannot. */
void sbi_init(void);

#endif
