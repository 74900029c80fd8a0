/*  writer.c - the broker's store writer: group commit in its own thread.

    The main thread decides messages and writes what the store must hold as
    a journal of operations (audit records, puts, deletes) in the current
    batch, together with what may leave once the batch is durable (the
    outbox). broker_flush hands the batch to the writer and goes on with the
    next messages. The writer applies every batch handed to it meanwhile in
    one transaction, commits it with one fsync, and hands the batches back;
    the main thread then sends their outboxes. So durability costs one fsync
    per turn of the writer, however many messages arrived during it.

    The map grows in the writer (mdb_env_set_mapsize needs no transaction
    open in the process): main-thread readers hold `map_lock` for reading,
    the writer takes it for writing while it grows the map.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "broker.h"

#define S_GROUP_MAX 64            /* batches one transaction takes, at most */

struct broker_batch_t {
    zlistx_t *ops;                /* zchunk_t journal */
    zlistx_t *outbox;             /* broker_out_t */
    int status;                   /* set by the writer */
    bool checkpoint;              /* sign a checkpoint once committed */
    Sharebus__Checkpoint *cp;     /* ... here */
    int64_t commit_us;
    uint64_t head;                /* audit head after the commit */
};

static void s_out_free(void **item_p)
{
    broker_out_t *out = *item_p;
    if (out) {
        zframe_destroy(&out->to);
        zframe_destroy(&out->frame);
        free(out);
        *item_p = NULL;
    }
}

broker_batch_t *broker_batch_new(void)
{
    broker_batch_t *batch = calloc(1, sizeof *batch);
    assert(batch);
    batch->ops = zlistx_new();
    zlistx_set_destructor(batch->ops, (zlistx_destructor_fn *) zchunk_destroy);
    batch->outbox = zlistx_new();
    zlistx_set_destructor(batch->outbox, s_out_free);
    return batch;
}

void broker_batch_destroy(broker_batch_t **batch_p)
{
    broker_batch_t *batch = *batch_p;
    if (!batch)
        return;
    zlistx_destroy(&batch->ops);
    zlistx_destroy(&batch->outbox);
    if (batch->cp)
        sharebus__checkpoint__free_unpacked(batch->cp, NULL);
    free(batch);
    *batch_p = NULL;
}

bool broker_batch_empty(const broker_batch_t *batch)
{
    return zlistx_size(batch->ops) == 0 && zlistx_size(batch->outbox) == 0 && !batch->checkpoint;
}

void broker_batch_op(broker_batch_t *batch, zchunk_t *op)
{
    zlistx_add_end(batch->ops, op);
}

void broker_batch_send(broker_batch_t *batch, broker_out_t *out)
{
    zlistx_add_end(batch->outbox, out);
}

void broker_batch_want_checkpoint(broker_batch_t *batch)
{
    batch->checkpoint = true;
}

int broker_batch_status(const broker_batch_t *batch)
{
    return batch->status;
}

zlistx_t *broker_batch_outbox(broker_batch_t *batch)
{
    return batch->outbox;
}

Sharebus__Checkpoint *broker_batch_take_checkpoint(broker_batch_t *batch)
{
    Sharebus__Checkpoint *cp = batch->cp;
    batch->cp = NULL;
    return cp;
}

int64_t broker_batch_commit_us(const broker_batch_t *batch)
{
    return batch->commit_us;
}

uint64_t broker_batch_head(const broker_batch_t *batch)
{
    return batch->head;
}

/* ------------------------------------------------------------ the writer */

typedef struct {
    broker_t *broker;
    MDB_txn *txn;
} s_writer_t;

/* One journal operation: 'A' packed AuditRecord; 'P' dbi (4), key length
   (4), key, value; 'D' dbi (4), key. */
static int s_apply(s_writer_t *w, zchunk_t *op)
{
    broker_t *b = w->broker;
    const uint8_t *data = zchunk_data(op);
    size_t size = zchunk_size(op);
    if (data[0] == 'A') {
        Sharebus__AuditRecord *r = sharebus__audit_record__unpack(NULL, size - 1, data + 1);
        int rc = r ? sbi_audit_append(b->audit, w->txn, r) : SB_EINTERNAL;
        if (r)
            sharebus__audit_record__free_unpacked(r, NULL);
        return rc;
    }
    uint32_t dbi, klen = 0;
    memcpy(&dbi, data + 1, 4);
    if (data[0] == 'P')
        memcpy(&klen, data + 5, 4);
    else
        klen = (uint32_t) (size - 5);
    size_t at = data[0] == 'P' ? 9 : 5;
    MDB_val key = {klen, (void *) (data + at)};
    MDB_val value = {size - at - klen, (void *) (data + at + klen)};
    int mrc = data[0] == 'P' ? mdb_put(w->txn, dbi, &key, &value, 0)
                             : mdb_del(w->txn, dbi, &key, NULL);
    return mrc == MDB_NOTFOUND ? SB_OK : sbi_store_code(mrc);
}

static void s_abort(s_writer_t *w)
{
    if (w->txn)
        mdb_txn_abort(w->txn);
    w->txn = NULL;
    sbi_audit_abort(w->broker->audit);
}

/* Applies and commits the group. On a full map: grow (with no reader in
   the way) and apply it all again, until it fits or the map is at its
   limit. */
static int s_commit(s_writer_t *w, broker_batch_t **group, size_t n)
{
    broker_t *b = w->broker;
    for (;;) {
        int rc = sbi_store_begin(b->store, true, &w->txn);
        for (size_t i = 0; rc == SB_OK && i < n; i++)
            for (zchunk_t *op = zlistx_first(group[i]->ops); rc == SB_OK && op;
                 op = zlistx_next(group[i]->ops))
                rc = s_apply(w, op);
        int mrc = 0;
        if (rc == SB_OK) {
            mrc = mdb_txn_commit(w->txn);
            w->txn = NULL;
            if (mrc == 0) {
                sbi_audit_commit(b->audit);
                return SB_OK;
            }
            sbi_audit_abort(b->audit);
            /* LMDB reports a short write on a full file system as EIO: say
               how much room is left, so that the operator sees why. */
            struct statvfs fs;
            if (statvfs(b->config.data, &fs) == 0)
                sbi_error("audit commit failed: %s (%llu bytes free on the file system of %s)",
                          mdb_strerror(mrc), (unsigned long long) fs.f_bavail * fs.f_frsize,
                          b->config.data);
            else
                sbi_error("audit commit failed: %s", mdb_strerror(mrc));
            rc = mrc == MDB_MAP_FULL || mrc == ENOSPC ? SB_EFULL : SB_EIO;
        }
        else
            s_abort(w);
        if (rc != SB_EFULL)
            return rc;
        pthread_rwlock_wrlock(&b->map_lock);
        rc = sbi_store_grow(b->store);
        pthread_rwlock_unlock(&b->map_lock);
        if (rc != SB_OK) {
            sbi_error("audit commit failed: MDB_MAP_FULL: the map is at its limit (--map-max)");
            return SB_EFULL;
        }
    }
}

static void s_checkpoint(s_writer_t *w, broker_batch_t *batch)
{
    broker_t *b = w->broker;
    if (sbi_store_begin(b->store, true, &w->txn) != SB_OK)
        return;
    int rc = sbi_audit_checkpoint(b->audit, w->txn, sbi_crypto_keys(b->crypto), &batch->cp);
    if (rc == SB_OK && mdb_txn_commit(w->txn) == 0) {
        w->txn = NULL;
        return;
    }
    if (rc != SB_OK)
        mdb_txn_abort(w->txn);
    w->txn = NULL;
    if (batch->cp)
        sharebus__checkpoint__free_unpacked(batch->cp, NULL);
    batch->cp = NULL;
    sbi_warning("checkpoint failed");
}

/* Takes whatever batches are waiting, commits them together, hands them
   back in order. */
static void s_group(s_writer_t *w, zsock_t *pipe, broker_batch_t *first)
{
    broker_batch_t *group[S_GROUP_MAX] = {first};
    size_t n = 1;
    while (n < S_GROUP_MAX && (zsock_events(pipe) & ZMQ_POLLIN)) {
        char *command = NULL;
        void *next = NULL;
        if (zsock_recv(pipe, "sp", &command, &next) != 0 || !command)
            break;
        bool batch = strcmp(command, "BATCH") == 0;
        zstr_free(&command);
        if (!batch)
            break;      /* $TERM: finish this group first; the loop sees it next */
        group[n++] = next;
    }
    int64_t began = zclock_usecs();
    int rc = s_commit(w, group, n);
    int64_t took = zclock_usecs() - began;
    uint8_t hash[SBI_HASH_SIZE];
    uint64_t head = sbi_audit_head(w->broker->audit, hash);
    for (size_t i = 0; i < n; i++) {
        group[i]->status = rc;
        group[i]->commit_us = took;
        group[i]->head = head;
        if (rc == SB_OK && group[i]->checkpoint && head)
            s_checkpoint(w, group[i]);
        zsock_send(pipe, "p", group[i]);
    }
}

static void s_writer_actor(zsock_t *pipe, void *arg)
{
    s_writer_t w = {arg, NULL};
    zsock_signal(pipe, 0);
    while (true) {
        char *command = NULL;
        void *batch = NULL;
        if (zsock_recv(pipe, "sp", &command, &batch) != 0 || !command)
            break;
        bool stop = strcmp(command, "$TERM") == 0;
        zstr_free(&command);
        if (stop)
            break;
        s_group(&w, pipe, batch);
    }
}

zactor_t *broker_writer_new(broker_t *broker)
{
    return zactor_new(s_writer_actor, broker);
}

/* Hands `batch` to the writer (which owns it until it comes back). */
void broker_writer_submit(zactor_t *writer, broker_batch_t *batch)
{
    zsock_send(writer, "sp", "BATCH", batch);
}

/* A batch handed back, or NULL. */
broker_batch_t *broker_writer_done(zactor_t *writer)
{
    void *batch = NULL;
    if (zsock_recv(writer, "p", &batch) != 0)
        return NULL;
    return batch;
}
