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

    Databases (all named "audit.*", see SBI_AUDIT_DBS): log (seq -> entry),
    subject, agency, dataset and time indexes (key -> seq, DUPSORT|DUPFIXED),
    checkpoints (this log's own, signed here), received (the broker's
    checkpoints an agent keeps), conflicts (received checkpoints that name
    another head for a seq already held: evidence, never the held copy),
    meta (format, head, time-index slack).

    One sbi_audit_t is used by one writer thread; queries and verification
    only read the store and may run in any thread or another process.
*/
#ifndef SBI_AUDIT_H_INCLUDED
#define SBI_AUDIT_H_INCLUDED

#include "cert.h"
#include "store.h"

typedef struct sbi_audit_t sbi_audit_t;

/* Number of named databases the audit log uses in a store: pass at least
   this (plus your own) as max_dbs to sbi_store_open. */
#define SBI_AUDIT_DBS 9

/* Largest serialized record the log accepts (SB_ETOOBIG beyond). */
#define SBI_AUDIT_RECORD_MAX 65536

/* Opens (creating when the store is writable) the audit databases and
   reads the head. When the last stored record is damaged the log still
   opens for reading, but appends fail with SB_EMALFORMED (and say so in
   the log): a broken chain is never extended. */
sbi_audit_t *sbi_audit_open(sbi_store_t *store, char *err, size_t err_size);

void sbi_audit_close(sbi_audit_t **self_p);

/* Appends `record` in `txn`: sets seq, time_ms (when 0) and prev_hash,
   writes the entry and its index entries. On failure (SB_EFULL on a full
   map, SB_ETOOBIG over SBI_AUDIT_RECORD_MAX, SB_EMALFORMED when the last
   stored record is damaged, ...) the caller aborts the transaction and
   calls sbi_audit_abort. The stored record carries prev_hash; the caller's
   `record` gets seq and time_ms, and its own prev_hash is left as it was
   (so the caller's ownership of every pointer in it is unchanged). */
int sbi_audit_append(sbi_audit_t *self, MDB_txn *txn,
                     Sharebus__AuditRecord *record) SBI_UNUSED_RESULT;

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

/* Stores a checkpoint received from the broker (agents keep every one),
   apart from this log's own: verify does not hold them against this log.
   A checkpoint held for a seq is never replaced. The same head again for
   that seq (a resend, or the head signed again later) is SB_OK and changes
   nothing. Another head for a held seq is equivocation (the broker's key
   signed two histories, e.g. after the log was rewritten): the held one
   stays, the new one is kept apart in `txn` as evidence (see
   sbi_audit_conflicts) and the result is SB_EEXISTS; commit `txn` all the
   same. SB_EMALFORMED when it has the wrong shape; check its signature
   first. */
int sbi_audit_store_checkpoint(sbi_audit_t *self, MDB_txn *txn,
                               const Sharebus__Checkpoint *checkpoint) SBI_UNUSED_RESULT;

/* SB_OK when the checkpoint's signature holds under `sign_public`;
   SB_EMALFORMED when it has the wrong shape, SB_EBADSIG otherwise. */
int sbi_checkpoint_verify(const Sharebus__Checkpoint *checkpoint,
                          const uint8_t sign_public[32]) SBI_UNUSED_RESULT;

/* Calls `each` for every stored checkpoint in sequence order: this log's
   own (`received` false) or those received from the broker (true). Stops
   when `each` returns non-zero. SB_EMALFORMED (after visiting the rest)
   when a stored checkpoint does not decode. */
int sbi_audit_checkpoints(sbi_audit_t *self, bool received,
                          int (*each)(const Sharebus__Checkpoint *checkpoint, void *arg),
                          void *arg) SBI_UNUSED_RESULT;

/* Calls `each` for every received checkpoint that named another head than
   the one held for its seq (sbi_audit_store_checkpoint's SB_EEXISTS), in
   sequence order; at most 8 are kept per seq. SB_OK and no call on a
   read-only store written before these were kept. */
int sbi_audit_conflicts(sbi_audit_t *self,
                        int (*each)(const Sharebus__Checkpoint *checkpoint, void *arg),
                        void *arg) SBI_UNUSED_RESULT;

/* The newest stored checkpoint (own or received) in *checkpoint_p, freed
   with sharebus__checkpoint__free_unpacked(cp, NULL); SB_ENOTFOUND when
   there is none. */
int sbi_audit_checkpoint_latest(sbi_audit_t *self, bool received,
                                Sharebus__Checkpoint **checkpoint_p) SBI_UNUSED_RESULT;

/* Decodes a packed Checkpoint (bounded; any bytes give a code or a
   checkpoint of the right shape: 32-byte hash, 64-byte signature, valid
   signer). Free with sharebus__checkpoint__free_unpacked(cp, NULL). */
int sbi_checkpoint_decode(const uint8_t *data, size_t size,
                          Sharebus__Checkpoint **checkpoint_p) SBI_UNUSED_RESULT;

/* One-line JSON form {"seq","head_hash","time_ms","time","signer",
   "signature"} (hex bytes); the caller frees the string. */
char *sbi_checkpoint_to_json(const Sharebus__Checkpoint *checkpoint);

/* Parses that JSON form (SB_EMALFORMED when it is not one). Free with
   sharebus__checkpoint__free_unpacked(cp, NULL). */
int sbi_checkpoint_from_json(const char *text,
                             Sharebus__Checkpoint **checkpoint_p) SBI_UNUSED_RESULT;

typedef enum {
    SBI_AUDIT_INTACT = 0,
    SBI_AUDIT_ALTERED,        /* an entry's hash or content does not match */
    SBI_AUDIT_MISSING,        /* a sequence number is absent */
    SBI_AUDIT_TRUNCATED,      /* the log ends before a checkpoint's head */
    SBI_AUDIT_BAD_CHECKPOINT, /* a checkpoint's signature or hash is wrong */
    SBI_AUDIT_CONFLICT,       /* two checkpoints name different heads for one seq */
    SBI_AUDIT_BAD_INDEX       /* an index lacks a record's entry, or has one it should not */
} sbi_audit_fault_t;

typedef struct {
    sbi_audit_fault_t fault;
    uint64_t seq;         /* first bad sequence number */
    uint64_t records;     /* records checked */
    uint64_t checkpoints; /* checkpoints checked */
    uint64_t head_seq;    /* the last record and its hash (when intact) */
    uint8_t head_hash[SBI_HASH_SIZE];
    /* History rewritten (a checkpoint no longer matches, or checkpoints
       conflict): records untrusted_from..seq cannot be trusted, where
       untrusted_from - 1 is the last checkpoint below seq that holds (0:
       none). 0 for every other fault. */
    uint64_t untrusted_from;
    /* SBI_AUDIT_BAD_INDEX: "subject", "agency", "dataset" or "time"; else
       NULL. */
    const char *index;
    char detail[512];
} sbi_audit_report_t;

/* "altered record", "missing record", "truncated log", "bad checkpoint",
   "conflicting checkpoints", "bad index". */
const char *sbi_audit_fault_name(sbi_audit_fault_t fault);

/* Recomputes the whole chain and checks every stored checkpoint and the
   `extra` ones (e.g. copies from agents) against the broker key
   `sign_public`. Returns SB_OK when intact, SB_EBADSIG otherwise, with the
   first fault (the lowest bad sequence number) in `report`; SB_EIO and the
   like when the store cannot be read at all. With `sign_public` NULL the
   checkpoints' hashes are checked against the log but not their
   signatures. Two checkpoints (stored or extra) whose signatures hold and
   that name different heads for one seq are SBI_AUDIT_CONFLICT at that
   seq, named before what those checkpoints find wrong with the log there.
   Received checkpoints (another log's) are not checked.
   Then the indexes: every record must have exactly its entries in each
   (subject, agency, dataset, time; see sbi_audit_reindex), no entry may
   name a record that is absent or does not have it, and the stored time
   slack must cover every record. A fault there is SBI_AUDIT_BAD_INDEX at
   the first record concerned, reported only when the chain and the
   checkpoints are sound (those faults come first). */
int sbi_audit_verify(sbi_audit_t *self, const uint8_t sign_public[32],
                     Sharebus__Checkpoint *const *extra, size_t n_extra,
                     sbi_audit_report_t *report) SBI_UNUSED_RESULT;

/* A key checkpoints may be signed with, and when it was good: a checkpoint
   dated outside [from_ms, until_ms) does not hold under it (until_ms 0:
   open). A broker certificate's key is good from its not-before to its
   expiry or revocation, so checkpoints made before a rotation still hold. */
typedef struct {
    uint8_t sign_public[32];
    uint64_t from_ms;
    uint64_t until_ms;
} sbi_audit_key_t;

/* The same with every key the broker has signed with (its current and
   earlier certificates): a checkpoint must hold under one of them, at its
   time. With n_keys 0, signatures are not checked. */
int sbi_audit_verify_keys(sbi_audit_t *self, const sbi_audit_key_t *keys, size_t n_keys,
                          Sharebus__Checkpoint *const *extra, size_t n_extra,
                          sbi_audit_report_t *report) SBI_UNUSED_RESULT;

/* Rebuilds the indexes from the log in `txn`: empties them, then writes
   every record's entries again as append does, and the time slack they
   need; *records_p is how many records it indexed. SB_EMALFORMED (naming
   the seq in the log) when a record does not decode; SB_EFULL on a full
   map (abort, grow, redo). After the commit, call sbi_audit_commit; after
   an abort, sbi_audit_abort. Records are taken as they are: verify the
   chain first. */
int sbi_audit_reindex(sbi_audit_t *self, MDB_txn *txn, uint64_t *records_p) SBI_UNUSED_RESULT;

typedef struct {
    const char *agency;         /* from or to */
    const uint8_t *subject_ref; /* 32 bytes */
    const char *dataset;
    const char *purpose;
    Sharebus__AuditKind kind; /* AUDIT_NONE = any */
    uint64_t since_ms;        /* time_ms >= since_ms; 0 = open */
    uint64_t until_ms;        /* time_ms < until_ms; 0 = open */
    uint64_t after_seq;       /* only records with seq > after_seq */
    size_t limit;             /* 0 = no limit */
} sbi_audit_filter_t;

/* Calls `each` for every matching record in sequence order, using an index
   when the filter has a subject, agency or dataset. `each` returns 0 to go
   on, non-zero to stop. The record lives until `each` returns. Holds one
   read transaction for the query. A damaged record is skipped with a
   warning naming its seq, and the query then returns SB_EMALFORMED. */
int sbi_audit_query(sbi_audit_t *self, const sbi_audit_filter_t *filter,
                    int (*each)(const Sharebus__AuditRecord *record, void *arg),
                    void *arg) SBI_UNUSED_RESULT;

/* The same, also passing each record's stored hash (for exports that let
   another system re-check the chain). */
int sbi_audit_query_entries(sbi_audit_t *self, const sbi_audit_filter_t *filter,
                            int (*each)(const Sharebus__AuditRecord *record,
                                        const uint8_t hash[SBI_HASH_SIZE], void *arg),
                            void *arg) SBI_UNUSED_RESULT;

/* Every field of `record` as a JSON object (bytes as hex, kind, decision
   and error by name, time also as ISO 8601), plus "hash" when `hash` is
   not NULL. The caller puts the object. */
struct json_object;
struct json_object *sbi_audit_record_json(const Sharebus__AuditRecord *record, const uint8_t *hash);

/* Short lower-case name of an audit kind ("request-routed"; "unknown" for
   a number the enum does not have) and back (AUDIT_NONE for a name that is
   none of them, and for "none"). */
const char *sbi_audit_kind_name(Sharebus__AuditKind kind);
Sharebus__AuditKind sbi_audit_kind_parse(const char *name);

#endif
