/*  audit_int.h - what the audit module's files share; not for other modules.

    The log object, the stored-entry decoder (with an arena so that walking
    millions of records does not call malloc per record), and the names of
    the databases, so that tests and the fixture can reach the bytes.
*/
#ifndef SBI_AUDIT_INT_H_INCLUDED
#define SBI_AUDIT_INT_H_INCLUDED

#include "audit.h"

#define SBI_AUDIT_DB_LOG "audit.log"
#define SBI_AUDIT_DB_SUBJECT "audit.subject"
#define SBI_AUDIT_DB_AGENCY "audit.agency"
#define SBI_AUDIT_DB_DATASET "audit.dataset"
#define SBI_AUDIT_DB_TIME "audit.time"
#define SBI_AUDIT_DB_CHECKPOINTS "audit.checkpoints"
#define SBI_AUDIT_DB_RECEIVED "audit.received"
#define SBI_AUDIT_DB_CONFLICTS "audit.conflicts"
#define SBI_AUDIT_DB_META "audit.meta"

/* Largest stored entry: a record at its maximum plus the entry framing. */
#define SBI_AUDIT_ENTRY_MAX (SBI_AUDIT_RECORD_MAX + 64)

/* Longest index key for agency and dataset names: longer names are indexed
   under their first SBI_NAME_MAX bytes, and queries compare in full. */
#define SBI_AUDIT_KEY_MAX SBI_NAME_MAX

struct sbi_audit_t {
    sbi_store_t *store;
    bool readonly;
    MDB_dbi log, subject, agency, dataset, time, checkpoints, received, conflicts, meta;
    bool has_conflicts; /* false: a read-only store written before it existed */
    int damaged;        /* SB_OK, or why appends are refused */
    /* The committed head, and the pending one including uncommitted appends.
       index_time: the time index key of the last record (never decreases);
       slack: the most any record's index time exceeds its own time. */
    uint64_t seq, pending_seq;
    uint8_t hash[SBI_HASH_SIZE], pending_hash[SBI_HASH_SIZE];
    uint64_t index_time, pending_index_time;
    uint64_t slack, pending_slack;
    uint8_t *buf; /* packing scratch */
    size_t buf_size;
};

/* A bump allocator for protobuf-c with the same budget as sbi_unpack_t
   (SBI_UNPACK_BUDGET of the input size), reused from one decode to the
   next. Its free does nothing: reset it instead. */
typedef struct {
    ProtobufCAllocator allocator;
    uint8_t *base;
    size_t capacity;
    size_t used;
    size_t budget;
} sbi_arena_t;

/* Decodes stored entries: the AuditEntry, its hash checked against the
   record bytes, then the AuditRecord. What it returns lives until the next
   decode or clear. */
typedef struct {
    sbi_arena_t entry_arena;
    sbi_arena_t record_arena;
    const char *why; /* after a failure: what was wrong */
} sbi_audit_decoder_t;

void sbi_audit_decoder_init(sbi_audit_decoder_t *self);
void sbi_audit_decoder_clear(sbi_audit_decoder_t *self);

/* SB_OK with the record and its hash; SB_ETOOBIG (over SBI_AUDIT_ENTRY_MAX),
   SB_EMALFORMED (entry or record does not decode, hash not 32 bytes),
   SB_EBADSIG (record bytes do not match their hash), SB_ENOMEM; `why` says
   which in words. */
int sbi_audit_entry_decode(sbi_audit_decoder_t *self, const void *data, size_t size,
                           Sharebus__AuditRecord **record_p,
                           uint8_t hash[SBI_HASH_SIZE]) SBI_UNUSED_RESULT;

/* Records a fault in `report` unless it already holds one at a lower or
   equal sequence number: verification names the first bad record. */
void sbi_audit_report_fault(sbi_audit_report_t *report, sbi_audit_fault_t fault, uint64_t seq,
                            const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Walks the whole log in `txn`'s snapshot (split across threads on a long
   log), recording faults, the records checked and the head in `report`;
   *last_p is the highest sequence number stored. SB_OK, or the code of a
   store that cannot be read at all. */
int sbi_audit_walk(sbi_audit_t *self, MDB_txn *txn, sbi_audit_report_t *report,
                   uint64_t *last_p) SBI_UNUSED_RESULT;

/* Logs shorter than this are walked by one thread (tests lower it). */
extern uint64_t sbi_audit_parallel_min;

/* Reads a u64 from the meta database (0 when absent or not 8 bytes). */
uint64_t sbi_audit_meta_get(sbi_audit_t *self, MDB_txn *txn, const char *name);

/* The bytes the checkpoint signature covers: "sharebus-checkpoint-v1" ||
   seq u64 BE || head_hash || time_ms u64 BE. */
#define SBI_CHECKPOINT_SIGNED_SIZE (22 + 8 + SBI_HASH_SIZE + 8)
void sbi_checkpoint_signed_bytes(uint64_t seq, const uint8_t head_hash[SBI_HASH_SIZE],
                                 uint64_t time_ms, uint8_t out[SBI_CHECKPOINT_SIGNED_SIZE]);

#endif
