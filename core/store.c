/*  store.c - LMDB environment helpers. */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct sbi_store_t {
    MDB_env *env;
    bool readonly;
    size_t map_max;
    pthread_rwlock_t map_lock;    /* reads of other threads vs growing the map */
};

sbi_store_t *sbi_store_open(const char *path, unsigned flags, size_t map_size,
                            size_t map_max, unsigned max_dbs, char *err, size_t err_size)
{
    sbi_store_t *self = calloc(1, sizeof *self);
    assert(self);
    self->readonly = flags & SBI_STORE_READONLY;
    self->map_max = map_max ? map_max : (size_t) 64 << 30;
    if (!self->readonly && mkdir(path, 0700) != 0 && errno != EEXIST) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        free(self);
        return NULL;
    }
    pthread_rwlock_init(&self->map_lock, NULL);
    int rc = mdb_env_create(&self->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(self->env, max_dbs);
    /* The first map is never larger than the limit: a --map-max below the
       64 MiB default must hold from the start. */
    size_t first = map_size ? map_size : (size_t) 64 << 20;
    if (first > self->map_max)
        first = self->map_max;
    if (rc == 0 && !self->readonly)
        rc = mdb_env_set_mapsize(self->env, first);
    if (rc == 0)
        rc = mdb_env_open(self->env, path,
                          MDB_NOTLS | (self->readonly ? MDB_RDONLY : 0)
                              | (flags & SBI_STORE_RANDOM ? MDB_NORDAHEAD : 0),
                          0600);
    if (rc != 0) {
        snprintf(err, err_size, "%s: %s", path, mdb_strerror(rc));
        sbi_store_close(&self);
        return NULL;
    }
    int dead = 0;
    mdb_reader_check(self->env, &dead);
    if (dead)
        sbi_notice("%s: cleared %d stale reader slot(s)", path, dead);
    return self;
}

void sbi_store_close(sbi_store_t **self_p)
{
    sbi_store_t *self = *self_p;
    if (!self)
        return;
    if (self->env)
        mdb_env_close(self->env);
    pthread_rwlock_destroy(&self->map_lock);
    free(self);
    *self_p = NULL;
}

MDB_env *sbi_store_env(sbi_store_t *self)
{
    return self->env;
}

int sbi_store_begin(sbi_store_t *self, bool write, MDB_txn **txn_p)
{
    unsigned flags = write ? 0 : MDB_RDONLY;
    int rc = mdb_txn_begin(self->env, NULL, flags, txn_p);
    if (rc == MDB_MAP_RESIZED) {
        mdb_env_set_mapsize(self->env, 0);
        rc = mdb_txn_begin(self->env, NULL, flags, txn_p);
    }
    return rc == 0 ? SB_OK : sbi_store_code(rc);
}

int sbi_store_dbi(sbi_store_t *self, const char *name, unsigned flags, MDB_dbi *dbi)
{
    MDB_txn *txn;
    int rc = sbi_store_begin(self, !self->readonly, &txn);
    if (rc != SB_OK)
        return rc;
    int mrc = mdb_dbi_open(txn, name, flags | (self->readonly ? 0 : MDB_CREATE), dbi);
    if (mrc == 0)
        mrc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    return mrc == 0 ? SB_OK : sbi_store_code(mrc);
}

int sbi_store_read_begin(sbi_store_t *self, MDB_txn **txn_p)
{
    pthread_rwlock_rdlock(&self->map_lock);
    int rc = sbi_store_begin(self, false, txn_p);
    if (rc != SB_OK) {
        *txn_p = NULL;
        pthread_rwlock_unlock(&self->map_lock);
    }
    return rc;
}

void sbi_store_read_end(sbi_store_t *self, MDB_txn **txn_p)
{
    if (*txn_p) {
        mdb_txn_abort(*txn_p);
        *txn_p = NULL;
        pthread_rwlock_unlock(&self->map_lock);
    }
}

int sbi_store_grow(sbi_store_t *self)
{
    MDB_envinfo info;
    mdb_env_info(self->env, &info);
    if (info.me_mapsize >= self->map_max)
        return SB_EFULL;
    size_t size = info.me_mapsize * 2;
    if (size > self->map_max)
        size = self->map_max;
    pthread_rwlock_wrlock(&self->map_lock);
    int rc = mdb_env_set_mapsize(self->env, size);
    pthread_rwlock_unlock(&self->map_lock);
    if (rc != 0)
        return SB_EFULL;
    sbi_notice("store map grown to %zu MiB", size >> 20);
    return SB_OK;
}

void sbi_store_usage(sbi_store_t *self, size_t *map_size, size_t *used)
{
    MDB_envinfo info;
    MDB_stat stat;
    mdb_env_info(self->env, &info);
    mdb_env_stat(self->env, &stat);
    *map_size = info.me_mapsize;
    *used = (info.me_last_pgno + 1) * (size_t) stat.ms_psize;
}

int sbi_store_code(int mdb_rc)
{
    switch (mdb_rc) {
    case 0: return SB_OK;
    case MDB_MAP_FULL: return SB_EFULL;
    case MDB_NOTFOUND: return SB_ENOTFOUND;
    case MDB_KEYEXIST: return SB_EEXISTS;
    case ENOMEM: return SB_ENOMEM;
    case ENOSPC: return SB_EFULL;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH: return SB_EMALFORMED;
    default: return SB_EIO;
    }
}
