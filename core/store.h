/*  store.h - an LMDB environment with the habits sharebus needs: named
    databases opened once, a map that grows when full, stale readers cleared
    after a crash, and readers that follow another process's resize. */
#ifndef SBI_STORE_H_INCLUDED
#define SBI_STORE_H_INCLUDED

#include <lmdb.h>

#include "sbi.h"

typedef struct sbi_store_t sbi_store_t;

#define SBI_STORE_READONLY 1u
/* Reads come at random places (an index query on a log larger than
   memory): no read-ahead around a page read from the disk (LMDB's
   MDB_NORDAHEAD), which would otherwise read up to the disk's
   read_ahead_kb around every record. */
#define SBI_STORE_RANDOM 2u

/* Opens (creating unless read-only) the environment in directory `path`
   with an initial map of `map_size` bytes (0 = 64 MiB) and room for `max_dbs`
   named databases. The map never grows past `map_max` (0 = 64 GiB). NULL on
   failure, with the reason in `err`. */
sbi_store_t *sbi_store_open(const char *path, unsigned flags, size_t map_size,
                            size_t map_max, unsigned max_dbs, char *err, size_t err_size);

void sbi_store_close(sbi_store_t **self_p);

MDB_env *sbi_store_env(sbi_store_t *self);

/* Opens (creating unless read-only) the named database `name` with `flags`
   (MDB_DUPSORT, MDB_DUPFIXED, MDB_INTEGERKEY ...) in its own committed
   transaction. Call once per database at start-up, with no transaction open. */
int sbi_store_dbi(sbi_store_t *self, const char *name, unsigned flags, MDB_dbi *dbi)
    SBI_UNUSED_RESULT;

/* Begins a transaction; a read-only one follows a map another process grew. */
int sbi_store_begin(sbi_store_t *self, bool write, MDB_txn **txn_p) SBI_UNUSED_RESULT;

/* A read-only transaction that another thread of the process may hold
   while one thread writes and grows the map: sbi_store_grow waits until
   every such read has ended (LMDB moves the map only when no transaction
   of the process is open). End it soon with sbi_store_read_end, which
   aborts it and sets *txn_p to NULL (nothing when it is NULL already). */
int sbi_store_read_begin(sbi_store_t *self, MDB_txn **txn_p) SBI_UNUSED_RESULT;
void sbi_store_read_end(sbi_store_t *self, MDB_txn **txn_p);

/* After a write failed with MDB_MAP_FULL (and its transaction was aborted):
   doubles the map up to its maximum, once no sbi_store_read_begin
   transaction is open. SB_EFULL when it cannot grow. */
int sbi_store_grow(sbi_store_t *self) SBI_UNUSED_RESULT;

/* Current map size and bytes in use (last page number times page size). */
void sbi_store_usage(sbi_store_t *self, size_t *map_size, size_t *used);

/* The SB_E* code for an LMDB return code (MDB_MAP_FULL -> SB_EFULL, ...). */
int sbi_store_code(int mdb_rc);

/* Big-endian 64-bit keys, so that LMDB's byte order is numeric order. */
static inline void sbi_be64_put(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t) v;
}
static inline uint64_t sbi_be64_get(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | in[i];
    return v;
}

#endif
