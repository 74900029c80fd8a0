/*  backup.c - sharebus-broker backup: a consistent, compacted copy of the
    broker's store (audit log, checkpoints, consent registry, event queues)
    taken while the broker runs.

    The copy is LMDB's own (mdb_env_copy2 with MDB_CP_COMPACT) from an
    environment this process opens read-only: it reads one snapshot in one
    read transaction, so it is consistent whatever the broker commits
    meanwhile, and it never blocks the broker's writer. A long copy pins
    the pages of its snapshot until it ends; the broker's map may grow
    meanwhile, which the copy follows.

    DIR/store/data.mdb is the copy, laid out like DDIR so that
    `sharebus-audit verify --data DIR` reads it and restoring it is a move.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"

static int s_fail(const char *what, const char *why)
{
    fprintf(stderr, "sharebus-broker: backup: %s: %s\n", what, why);
    return SB_EIO;
}

/* fsync a file or directory by path. */
static int s_sync(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int s_copy(MDB_env *env, const char *to)
{
    int rc = mdb_env_copy2(env, to, MDB_CP_COMPACT);
    if (rc == MDB_MAP_RESIZED) {
        /* The broker grew its map: follow it, then copy again. */
        char path[4200];
        snprintf(path, sizeof path, "%s/data.mdb", to);
        unlink(path);
        mdb_env_set_mapsize(env, 0);
        rc = mdb_env_copy2(env, to, MDB_CP_COMPACT);
    }
    return rc;
}

/* Opens the copy and reports what it holds: the audit head proves it reads. */
static int s_report(const char *data, const char *dir, const char *store_dir, int64_t took_ms)
{
    char err[512], hex[65], path[4200], size[32];
    sbi_store_t *store = sbi_store_open(store_dir, SBI_STORE_READONLY, 0, 0, SBI_AUDIT_DBS + 8,
                                        err, sizeof err);
    sbi_audit_t *audit = store ? sbi_audit_open(store, err, sizeof err) : NULL;
    if (!audit) {
        sbi_store_close(&store);
        return s_fail("the copy does not open", err);
    }
    uint8_t head[SBI_HASH_SIZE];
    uint64_t seq = sbi_audit_head(audit, head);
    sbi_audit_close(&audit);
    sbi_store_close(&store);
    /* Opening made a lock file; the copy is the data file alone. */
    snprintf(path, sizeof path, "%s/lock.mdb", store_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/data.mdb", store_dir);
    struct stat st;
    snprintf(size, sizeof size, "%lld", stat(path, &st) == 0 ? (long long) st.st_size : -1LL);
    printf("backup of %s/store in %s/store: %s bytes, audit records 1..%llu, head %s (%lld ms)\n",
           data, dir, size, (unsigned long long) seq, sbi_hex(head, sizeof head, hex),
           (long long) took_ms);
    return SB_OK;
}

int broker_backup(const char *data, const char *to)
{
    char from[4096], store_dir[4096], file[4200], err[512];
    snprintf(from, sizeof from, "%s/store", data);
    if (snprintf(store_dir, sizeof store_dir, "%s/store", to) >= (int) sizeof store_dir)
        return s_fail(to, "path too long");
    struct stat st;
    snprintf(file, sizeof file, "%s/data.mdb", from);
    if (stat(file, &st) != 0)
        return s_fail(file, strerror(errno));
    if (mkdir(to, 0700) != 0 && errno != EEXIST)
        return s_fail(to, strerror(errno));
    if (mkdir(store_dir, 0700) != 0)
        return s_fail(store_dir, errno == EEXIST ? "exists: a backup is never overwritten; "
                                                   "choose a new --to directory"
                                                 : strerror(errno));
    sbi_store_t *store = sbi_store_open(from, SBI_STORE_READONLY, 0, 0, SBI_AUDIT_DBS + 8, err,
                                        sizeof err);
    if (!store) {
        rmdir(store_dir);
        return s_fail("cannot open the broker's store", err);
    }
    int64_t started = zclock_mono();
    mode_t mask = umask(0077);    /* the copy is as private as the store */
    int rc = s_copy(sbi_store_env(store), store_dir);
    umask(mask);
    sbi_store_close(&store);
    snprintf(file, sizeof file, "%s/data.mdb", store_dir);
    if (rc == 0 && (chmod(file, 0600) != 0 || s_sync(file) != 0 || s_sync(store_dir) != 0
                    || s_sync(to) != 0))
        rc = errno;
    if (rc != 0) {
        unlink(file);
        rmdir(store_dir);
        return s_fail("copy failed", mdb_strerror(rc));
    }
    return s_report(data, to, store_dir, zclock_mono() - started);
}
