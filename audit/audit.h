/*  audit.h - the hash-chained, append-only audit log in an LMDB store.

    Each record is kept under its sequence number (8 bytes big-endian) as an
    AuditEntry { record bytes, BLAKE2b-256 of those bytes }; the record holds
    the previous record's hash, so the entries form a chain. Secondary
    indexes (subject reference, agency, dataset, time) map to sequence
    numbers. Checkpoints are the broker's signed statements of the head.

    Writers append inside a write transaction they own, so that a batch of
    records (and the consent or queue changes they describe) commit together
    with one fsync: call sbi_audit_commit() after mdb_txn_commit succeeded,
    sbi_audit_abort() after the transaction was aborted.
*/
#ifndef SBI_AUDIT_H_INCLUDED
#define SBI_AUDIT_H_INCLUDED

#include "cert.h"
#include "store.h"

typedef struct sbi_audit_t sbi_audit_t;

/* Number of named databases the audit log uses in a store: pass at least
   this (plus your own) as max_dbs to sbi_store_open. */
#define SBI_AUDIT_DBS 7

/* Opens (creating when the store is writable) the audit databases. */
sbi_audit_t *sbi_audit_open(sbi_store_t *store, char *err, size_t err_size);

void sbi_audit_close(sbi_audit_t **self_p);

/* Appends `record` in `txn`: sets seq, time_ms (when 0) and prev_hash,
   writes the entry and its index entries. On failure (SB_EFULL on a full
   map, ...) the caller aborts the transaction and calls sbi_audit_abort. */
int sbi_audit_append(sbi_audit_t *self, MDB_txn *txn, Sharebus__AuditRecord *record)
    SBI_UNUSED_RESULT;

/* The transaction holding the appends since the last commit or abort has
   committed: they are now the head. */
void sbi_audit_commit(sbi_audit_t *self);

/* The transaction was aborted: forget the appends since the last commit. */
void sbi_audit_abort(sbi_audit_t *self);

/* Sequence number (0 when empty) and hash of the last committed record. */
uint64_t sbi_audit_head(sbi_audit_t *self, uint8_t hash[SBI_HASH_SIZE]);

/* Makes a checkpoint of the committed head, signed with `keys` (the
   broker's), stores it in `txn`, and returns it in *checkpoint_p (free with
   sharebus__checkpoint__free_unpacked(cp, NULL)). */
int sbi_audit_checkpoint(sbi_audit_t *self, MDB_txn *txn, const sbi_keys_t *keys,
                         Sharebus__Checkpoint **checkpoint_p) SBI_UNUSED_RESULT;

/* Stores a checkpoint received from the broker (agents keep every one). */
int sbi_audit_store_checkpoint(sbi_audit_t *self, MDB_txn *txn,
                               const Sharebus__Checkpoint *checkpoint) SBI_UNUSED_RESULT;

/* SB_OK when the checkpoint's signature holds under `sign_public`. */
int sbi_checkpoint_verify(const Sharebus__Checkpoint *checkpoint,
                          const uint8_t sign_public[32]) SBI_UNUSED_RESULT;

typedef enum {
    SBI_AUDIT_INTACT = 0,
    SBI_AUDIT_ALTERED,       /* an entry's hash or content does not match */
    SBI_AUDIT_MISSING,       /* a sequence number is absent */
    SBI_AUDIT_TRUNCATED,     /* the log ends before a checkpoint's head */
    SBI_AUDIT_BAD_CHECKPOINT /* a checkpoint's signature or hash is wrong */
} sbi_audit_fault_t;

typedef struct {
    sbi_audit_fault_t fault;
    uint64_t seq;            /* first bad sequence number */
    uint64_t records;        /* records checked */
    uint64_t checkpoints;    /* checkpoints checked */
    char detail[256];
} sbi_audit_report_t;

/* Recomputes the whole chain and checks every stored checkpoint and the
   `extra` ones (e.g. copies from agents) against the broker key
   `sign_public`. Returns SB_OK when intact, SB_EBADSIG otherwise, with the
   first fault in `report`. */
int sbi_audit_verify(sbi_audit_t *self, const uint8_t sign_public[32],
                     Sharebus__Checkpoint *const *extra, size_t n_extra,
                     sbi_audit_report_t *report) SBI_UNUSED_RESULT;

typedef struct {
    const char *agency;          /* from or to */
    const uint8_t *subject_ref;  /* 32 bytes */
    const char *dataset;
    const char *purpose;
    Sharebus__AuditKind kind;    /* AUDIT_NONE = any */
    uint64_t since_ms;           /* 0 = open */
    uint64_t until_ms;           /* 0 = open */
    uint64_t after_seq;          /* only records with seq > after_seq */
    size_t limit;                /* 0 = no limit */
} sbi_audit_filter_t;

/* Calls `each` for every matching record in sequence order, using an index
   when the filter has a subject, agency or dataset. `each` returns 0 to go
   on, non-zero to stop. */
int sbi_audit_query(sbi_audit_t *self, const sbi_audit_filter_t *filter,
                    int (*each)(const Sharebus__AuditRecord *record, void *arg), void *arg)
    SBI_UNUSED_RESULT;

/* Short lower-case name of an audit kind ("request-routed") and back. */
const char *sbi_audit_kind_name(Sharebus__AuditKind kind);
Sharebus__AuditKind sbi_audit_kind_parse(const char *name);

#endif
