/*  tamper.h - what a forger with write access to the store, but without the
    broker's signing key, can do to the log. For the tests and the CLI test
    fixture only; never linked into a tool or daemon.

    Each call runs in its own write transaction on a writable store. */
#ifndef SBI_TAMPER_H_INCLUDED
#define SBI_TAMPER_H_INCLUDED

#include "audit_int.h"

/* Flips the bits of byte `offset` (modulo the entry's size) of the stored
   entry `seq`, leaving everything else as it was. */
int sbi_tamper_flip(sbi_store_t *store, uint64_t seq, size_t offset) SBI_UNUSED_RESULT;

/* Size of the stored entry `seq` (0 when absent). */
size_t sbi_tamper_entry_size(sbi_store_t *store, uint64_t seq);

/* Deletes the entry `seq` (its index entries stay). */
int sbi_tamper_delete(sbi_store_t *store, uint64_t seq) SBI_UNUSED_RESULT;

/* Deletes every entry from `seq` on; with `fix_meta`, also lowers the meta
   head as a careful forger would. */
int sbi_tamper_truncate(sbi_store_t *store, uint64_t seq, bool fix_meta) SBI_UNUSED_RESULT;

/* Rewrites `count` records (0: every one) from `seq` on with `purpose`,
   recomputing each hash and prev_hash; to the end, the chain alone looks
   intact. */
int sbi_tamper_rewrite(sbi_store_t *store, uint64_t seq, uint64_t count,
                       const char *purpose) SBI_UNUSED_RESULT;

/* Deletes every entry of the index `index` ("subject", "agency",
   "dataset" or "time") that names record `seq`: the record stays in the
   log, but queries through that index no longer find it. SB_ENOTFOUND
   when there was none. */
int sbi_tamper_unindex(sbi_store_t *store, const char *index, uint64_t seq) SBI_UNUSED_RESULT;

/* Adds the entry `key` -> `seq` to the index `index`. */
int sbi_tamper_index_add(sbi_store_t *store, const char *index, const void *key, size_t size,
                         uint64_t seq) SBI_UNUSED_RESULT;

/* Sets the u64 `name` of the meta database (e.g. "time-slack"). */
int sbi_tamper_meta(sbi_store_t *store, const char *name, uint64_t value) SBI_UNUSED_RESULT;

#endif
