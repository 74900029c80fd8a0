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

typedef struct sbi_audit_ixcheck_t sbi_audit_ixcheck_t;
typedef struct sbi_audit_ixrange_t sbi_audit_ixrange_t;

/* Walks the whole log in `txn`'s snapshot (split across threads on a long
   log), recording faults, the records checked and the head in `report`,
   and handing each record to `ix` (when not NULL); *last_p is the highest
   sequence number stored. SB_OK, or the code of a store that cannot be
   read at all. */
int sbi_audit_walk(sbi_audit_t *self, MDB_txn *txn, sbi_audit_ixcheck_t *ix,
                   sbi_audit_report_t *report, uint64_t *last_p) SBI_UNUSED_RESULT;

/* The most ranges (threads) a walk is split into. */
#define SBI_AUDIT_RANGES_MAX 4

/* Logs shorter than this are walked by one thread (tests lower it). */
extern uint64_t sbi_audit_parallel_min;

/* The secondary indexes, in the order verify names them. */
typedef enum {
    SBI_AUDIT_INDEX_SUBJECT,
    SBI_AUDIT_INDEX_AGENCY,
    SBI_AUDIT_INDEX_DATASET,
    SBI_AUDIT_INDEX_TIME,
    SBI_AUDIT_INDEXES
} sbi_audit_index_t;

/* One index entry of a record: `key` in `index` -> the record's seq. */
typedef struct {
    sbi_audit_index_t index;
    const void *key;
    size_t size;
} sbi_audit_ikey_t;

/* Subject, sender, recipient, dataset, time. */
#define SBI_AUDIT_IKEYS_MAX 5

/* The index entries `record` has when its time index key is `time_be`
   (8 bytes, big-endian; it and the record must outlive `out`), as append
   writes them: none for an empty field or a subject reference that is not
   32 bytes, names cut to SBI_AUDIT_KEY_MAX, one agency entry when sender
   and recipient are the same. Returns how many. */
size_t sbi_audit_index_keys(const Sharebus__AuditRecord *record, const uint8_t time_be[8],
                            sbi_audit_ikey_t out[SBI_AUDIT_IKEYS_MAX]);

/* The database of an index, and its short name ("subject", ...). */
MDB_dbi sbi_audit_index_dbi(const sbi_audit_t *self, sbi_audit_index_t index);
const char *sbi_audit_index_name(sbi_audit_index_t index);

/* Writes the index entries of `record` (its seq in `seq_be`) in `txn`. */
int sbi_audit_index_put(sbi_audit_t *self, MDB_txn *txn, const Sharebus__AuditRecord *record,
                        const uint8_t seq_be[8], uint64_t index_time) SBI_UNUSED_RESULT;

/* Checks the indexes against the records while the walk decodes them
   (audit_index.c): each range of the walk sums a keyed hash of the entries
   its records should have, per index and per block of 65536 sequence
   numbers; the indexes are then read through once and summed the same way,
   and only a block whose sums differ is looked at record by record, to
   name the first record whose entries are missing or wrong.

   sbi_audit_ixcheck_new: a check of `self`'s indexes against the snapshot
   of `txn` (which gives the stored time slack). */
sbi_audit_ixcheck_t *sbi_audit_ixcheck_new(sbi_audit_t *self, MDB_txn *txn);
void sbi_audit_ixcheck_destroy(sbi_audit_ixcheck_t **self_p);

/* The walk's plan: records 1..last in `n` ranges (at most 4). */
void sbi_audit_ixcheck_plan(sbi_audit_ixcheck_t *self, uint64_t last, unsigned n);

/* Range `k` of the plan, which starts at record `first`. */
sbi_audit_ixrange_t *sbi_audit_ixcheck_range(sbi_audit_ixcheck_t *self, unsigned k, uint64_t first);

/* Called in the range's thread before its first record, with its
   transaction: finds where the time index has the record before it. */
void sbi_audit_ixrange_begin(sbi_audit_ixrange_t *range, MDB_txn *txn);

/* Each record of the range, in order, once its chain checks passed. */
void sbi_audit_ixrange_add(sbi_audit_ixrange_t *range, const Sharebus__AuditRecord *record);

/* Once the range's records are walked, in its thread: reads through the
   indexes no other range has taken yet, in its transaction (`newer`: one
   begun after the check's, which may see records appended since). Each
   index is read once, by the first range free, so that a range done early
   does not wait idle for the others. */
void sbi_audit_ixrange_read(sbi_audit_ixrange_t *range, MDB_txn *txn, bool newer);

/* After a walk that found the chain intact: reads the indexes the ranges
   left in `txn` and holds them against the records. SB_OK with `report`
   INTACT, or with SBI_AUDIT_BAD_INDEX naming the index and the first
   record whose entries are missing or wrong; the code of a store that
   cannot be read. */
int sbi_audit_ixcheck_finish(sbi_audit_ixcheck_t *self, MDB_txn *txn,
                             sbi_audit_report_t *report) SBI_UNUSED_RESULT;

/* Reads a u64 from the meta database (0 when absent or not 8 bytes). */
uint64_t sbi_audit_meta_get(sbi_audit_t *self, MDB_txn *txn, const char *name);

/* Writes a u64 to the meta database in `txn`. */
int sbi_audit_meta_put(sbi_audit_t *self, MDB_txn *txn, const char *name,
                       uint64_t value) SBI_UNUSED_RESULT;

/* The bytes the checkpoint signature covers: "sharebus-checkpoint-v1" ||
   seq u64 BE || head_hash || time_ms u64 BE. */
#define SBI_CHECKPOINT_SIGNED_SIZE (22 + 8 + SBI_HASH_SIZE + 8)
void sbi_checkpoint_signed_bytes(uint64_t seq, const uint8_t head_hash[SBI_HASH_SIZE],
                                 uint64_t time_ms, uint8_t out[SBI_CHECKPOINT_SIGNED_SIZE]);

#endif
