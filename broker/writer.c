/*  writer.c - the broker's store writer: group commit on two threads.

    The main thread decides messages and writes what the store must hold as
    a journal of operations (audit records, puts, deletes) in the current
    batch, together with what may leave once the batch is durable (the
    outbox). broker_flush hands the batch to the writer and goes on with the
    next messages; or, when nothing is at the writer and no message waits,
    writes it itself (broker_writer_write): the main thread would only
    sleep meanwhile, and the two hand-offs it saves are wake-ups across
    threads, which at low load cost more than the wait (docs/performance.md).

    The writer takes every batch handed to it meanwhile, writes their
    operations as one record of the write-ahead journal (wal.c: one
    synchronous write of a few blocks) and hands the batches back: they are
    durable, and the main thread sends their outboxes. It passes the record
    on to the applier, which applies every record waiting in one LMDB
    transaction, with the number of the last batch applied, and commits it
    with LMDB's own fsyncs. So a forward waits for one journal write, not
    for an LMDB commit, and LMDB still commits as often as it can.

    The applier reports each commit to the main thread (broker_applied_t):
    the audit head, a checkpoint signed after it, or the error that stopped
    it (it keeps the records and tries again every second, and the main
    thread refuses traffic meanwhile). What the main thread reads from the
    store (consents, event queues) is what the applier committed; it waits
    for the applier (broker_sync) where it must read its own writes.

    The map grows in the applier (mdb_env_set_mapsize needs no transaction
    open in the process): the main thread reads the store in transactions
    of sbi_store_read_begin, which sbi_store_grow waits for.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/statvfs.h>

#include "broker.h"

#define S_GROUP_MAX 64            /* batches one journal record takes, at most */
#define S_GROUP_BYTES (4 << 20)   /* ... and bytes of operations, unless one batch has more */
#define S_APPLY_MAX 256           /* records one transaction takes, at most */
#define S_RETRY_MS 1000           /* after a failed commit */
#define S_APPLY_MS 100            /* between LMDB commits, unless asked sooner */
#define S_ROOM_WAIT_US 2000000    /* for room in the journal, while LMDB commits */

struct broker_batch_t {
    zlistx_t *ops;                /* zchunk_t journal */
    zlistx_t *outbox;             /* broker_out_t */
    int status;                   /* set by the writer */
    size_t bytes;                 /* of its operations */
    bool checkpoint;              /* sign a checkpoint once committed */
    int64_t commit_us;            /* the journal write */
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
    free(batch);
    *batch_p = NULL;
}

bool broker_batch_empty(const broker_batch_t *batch)
{
    return zlistx_size(batch->ops) == 0 && zlistx_size(batch->outbox) == 0 && !batch->checkpoint;
}

void broker_batch_op(broker_batch_t *batch, zchunk_t *op)
{
    batch->bytes += zchunk_size(op) + 4;
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

int64_t broker_batch_commit_us(const broker_batch_t *batch)
{
    return batch->commit_us;
}

/* ------------------------------------------------------------ applying */

typedef struct {
    broker_t *broker;
    MDB_txn *txn;
} s_applier_t;

/* One operation: 'A' packed AuditRecord; 'P' name length (1), database
   name, key length (4), key, value; 'D' name length (1), name, key. The
   database goes by name, so a journal replays into whatever handles the
   next start opens. */
static int s_apply_op(s_applier_t *w, const uint8_t *data, size_t size)
{
    broker_t *b = w->broker;
    if (size >= 1 && data[0] == 'A') {
        Sharebus__AuditRecord *r = sharebus__audit_record__unpack(NULL, size - 1, data + 1);
        int rc = r ? sbi_audit_append(b->audit, w->txn, r) : SB_EINTERNAL;
        if (r)
            sharebus__audit_record__free_unpacked(r, NULL);
        return rc;
    }
    if (size < 2 || (data[0] != 'P' && data[0] != 'D') || size < 2u + data[1])
        return SB_EINTERNAL;
    MDB_dbi dbi;
    if (broker_dbi_find(b, (const char *) data + 2, data[1], &dbi) != SB_OK)
        return SB_EINTERNAL;
    size_t at = 2u + data[1];
    uint32_t klen = (uint32_t) (size - at);
    if (data[0] == 'P') {
        if (size < at + 4)
            return SB_EINTERNAL;
        memcpy(&klen, data + at, 4);
        at += 4;
        if (klen > size - at)
            return SB_EINTERNAL;
    }
    MDB_val key = {klen, (void *) (data + at)};
    MDB_val value = {size - at - klen, (void *) (data + at + klen)};
    int mrc = data[0] == 'P' ? mdb_put(w->txn, dbi, &key, &value, 0)
                             : mdb_del(w->txn, dbi, &key, NULL);
    return mrc == MDB_NOTFOUND ? SB_OK : sbi_store_code(mrc);
}

/* A record's body: operations, each after its length (4). */
static int s_apply_body(s_applier_t *w, const uint8_t *body, size_t size)
{
    int rc = SB_OK;
    for (size_t at = 0; rc == SB_OK && at < size;) {
        uint32_t len;
        if (size - at < 4)
            return SB_EINTERNAL;
        memcpy(&len, body + at, 4);
        at += 4;
        if (len > size - at)
            return SB_EINTERNAL;
        rc = s_apply_op(w, body + at, len);
        at += len;
    }
    return rc;
}

static int s_put_applied(s_applier_t *w, uint64_t last)
{
    uint8_t v[8];
    sbi_be64_put(v, last);
    MDB_val key = {7, "applied"}, value = {8, v};
    return sbi_store_code(mdb_put(w->txn, w->broker->wal_dbi, &key, &value, 0));
}

typedef struct {
    uint64_t first, last;
    uint32_t flags;
    size_t size;
    uint8_t body[];
} s_record_t;

#define S_FLAG_CHECKPOINT 1u

/* Applies and commits records[0..n) with the number of the last. On a full
   map: grow (with no reader in the way) and apply them all again, until
   they fit or the map is at its limit. */
static int s_commit(s_applier_t *w, s_record_t **records, size_t n, bool quiet)
{
    broker_t *b = w->broker;
    for (;;) {
        int rc = sbi_store_begin(b->store, true, &w->txn);
        for (size_t i = 0; rc == SB_OK && i < n; i++)
            rc = s_apply_body(w, records[i]->body, records[i]->size);
        if (rc == SB_OK)
            rc = s_put_applied(w, records[n - 1]->last);
        int mrc = 0;
        bool map_full = rc == SB_EFULL;     /* mdb_put: MDB_MAP_FULL */
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
            if (!quiet && statvfs(b->config.data, &fs) == 0)
                sbi_error("audit commit failed: %s (%llu bytes free on the file system of %s)",
                          mdb_strerror(mrc), (unsigned long long) fs.f_bavail * fs.f_frsize,
                          b->config.data);
            else if (!quiet)
                sbi_error("audit commit failed: %s", mdb_strerror(mrc));
            map_full = mrc == MDB_MAP_FULL;
            rc = map_full || mrc == ENOSPC ? SB_EFULL : SB_EIO;
        }
        else {
            if (w->txn)
                mdb_txn_abort(w->txn);
            w->txn = NULL;
            sbi_audit_abort(b->audit);
        }
        if (rc != SB_EFULL || !map_full)
            return rc;      /* a full file system: a larger map would not help */
        rc = sbi_store_grow(b->store);
        if (rc != SB_OK) {
            if (!quiet)
                sbi_error("audit commit failed: MDB_MAP_FULL: the map is at its limit (--map-max)");
            return SB_EFULL;
        }
    }
}

static Sharebus__Checkpoint *s_checkpoint(s_applier_t *w)
{
    broker_t *b = w->broker;
    Sharebus__Checkpoint *cp = NULL;
    if (sbi_store_begin(b->store, true, &w->txn) != SB_OK)
        return NULL;
    int rc = sbi_audit_checkpoint(b->audit, w->txn, sbi_crypto_keys(b->crypto), &cp);
    if (rc == SB_OK && mdb_txn_commit(w->txn) == 0) {
        w->txn = NULL;
        return cp;
    }
    if (rc != SB_OK)
        mdb_txn_abort(w->txn);
    w->txn = NULL;
    if (cp)
        sharebus__checkpoint__free_unpacked(cp, NULL);
    sbi_warning("checkpoint failed");
    return NULL;
}

/* Commits what is waiting and tells the main thread (unless `pipe` is
   NULL: stopping): true when nothing is left waiting. Every failed try is
   told (broker_sync waits for one); the log says it once, until a commit
   succeeds. */
static bool s_apply_waiting(s_applier_t *w, zsock_t *pipe, zlistx_t *waiting, bool *failed)
{
    s_record_t *records[S_APPLY_MAX];
    while (zlistx_size(waiting) > 0) {
        size_t n = 0;
        bool checkpoint = false;
        for (s_record_t *r = zlistx_first(waiting); r && n < S_APPLY_MAX; r = zlistx_next(waiting)) {
            records[n++] = r;
            checkpoint |= (r->flags & S_FLAG_CHECKPOINT) != 0;
        }
        int64_t began = zclock_usecs();
        int rc = s_commit(w, records, n, *failed);
        broker_applied_t *done = calloc(1, sizeof *done);
        assert(done);
        done->status = rc;
        done->commit_us = zclock_usecs() - began;
        if (rc == SB_OK) {
            uint8_t hash[SBI_HASH_SIZE];
            done->last = records[n - 1]->last;
            done->head = sbi_audit_head(w->broker->audit, hash);
            atomic_store(&w->broker->wal_applied, done->last);
            if (checkpoint && done->head)
                done->cp = s_checkpoint(w);
            for (size_t i = 0; i < n; i++)
                free(zlistx_detach(waiting, NULL));
            *failed = false;
            atomic_store(&w->broker->wal_stuck, false);
        }
        if (pipe)
            zsock_send(pipe, "p", done);
        else
            broker_applied_destroy(&done);
        if (rc != SB_OK) {
            *failed = true;
            atomic_store(&w->broker->wal_stuck, true);
            return false;
        }
    }
    return true;
}

/* Commits at most every S_APPLY_MS, so that LMDB's syncs and page writes
   come in few large commits instead of one per journal record, and the
   applier wakes up ten times a second, not once per record: records that
   arrive meanwhile wait in the socket. "NOW" from the main thread (a
   consent change or an event waits for LMDB) commits as soon as anything
   is there. */
static void s_applier_actor(zsock_t *pipe, void *arg)
{
    s_applier_t w = {arg, NULL};
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "inproc://sharebus-apply-%p", arg);
    zsock_t *in = zsock_new_pull(endpoint);
    assert(in);
    /* SIGTERM is the main thread's: these pollers stop only on $TERM. */
    zpoller_t *any = zpoller_new(pipe, in, NULL), *commands = zpoller_new(pipe, NULL);
    zpoller_set_nonstop(any, true);
    zpoller_set_nonstop(commands, true);
    zlistx_t *waiting = zlistx_new();
    zsock_signal(pipe, 0);
    bool failed = false, stop = false, now = false;
    int64_t last = 0;
    while (!stop) {
        /* Until the next commit is due, only commands wake it. */
        int64_t due = failed ? last + S_RETRY_MS : last + S_APPLY_MS;
        int64_t wait = due - zclock_mono();
        bool gap = !now && wait > 0 && (failed || zlistx_size(waiting) > 0
                                        || (zsock_events(in) & ZMQ_POLLIN));
        void *which = zpoller_wait(gap ? commands : any, gap ? (int) wait : -1);
        if (which == pipe) {
            char *command = zstr_recv(pipe);
            stop = !command || strcmp(command, "$TERM") == 0;
            now |= command && strcmp(command, "NOW") == 0;
            zstr_free(&command);
        }
        if (!which && zpoller_terminated(gap ? commands : any))
            stop = true;
        /* On $TERM too: the writer has stopped, so what it sent is here. */
        while (zsock_events(in) & ZMQ_POLLIN) {
            void *record = NULL;
            if (zsock_recv(in, "p", &record) != 0)
                break;
            zlistx_add_end(waiting, record);
        }
        if (zlistx_size(waiting) == 0 || (!now && !stop && zclock_mono() < due))
            continue;
        s_apply_waiting(&w, stop ? NULL : pipe, waiting, &failed);
        last = zclock_mono();
        now = false;
    }
    if (zlistx_size(waiting) > 0)
        sbi_error("%zu journal record(s) not applied to the store: the next start applies them",
                  zlistx_size(waiting));
    for (void *r = zlistx_first(waiting); r; r = zlistx_next(waiting))
        free(r);
    zlistx_destroy(&waiting);
    zpoller_destroy(&any);
    zpoller_destroy(&commands);
    zsock_destroy(&in);
}

zactor_t *broker_applier_new(broker_t *broker)
{
    return zactor_new(s_applier_actor, broker);
}

broker_applied_t *broker_applier_done(zactor_t *applier)
{
    void *done = NULL;
    if (zsock_recv(applier, "p", &done) != 0)
        return NULL;
    return done;
}

void broker_applied_destroy(broker_applied_t **done_p)
{
    broker_applied_t *done = *done_p;
    if (done) {
        if (done->cp)
            sharebus__checkpoint__free_unpacked(done->cp, NULL);
        free(done);
        *done_p = NULL;
    }
}

/* At start, before the threads: applies the journal's records that LMDB
   has not, in order, S_APPLY_MAX to a commit, and gives the journal a new
   id. */
typedef struct {
    s_applier_t w;
    s_record_t *records[S_APPLY_MAX];
    size_t n;
} s_replay_t;

static int s_replay_commit(s_replay_t *r)
{
    int rc = r->n ? s_commit(&r->w, r->records, r->n, false) : SB_OK;
    for (size_t i = 0; i < r->n; i++)
        free(r->records[i]);
    r->n = 0;
    return rc;
}

static int s_replay_one(void *arg, uint64_t first, uint64_t last, uint32_t flags,
                        const uint8_t *body, size_t size)
{
    s_replay_t *r = arg;
    s_record_t *record = malloc(sizeof *record + size);
    assert(record);
    *record = (s_record_t) {.first = first, .last = last, .flags = flags, .size = size};
    memcpy(record->body, body, size);
    r->records[r->n++] = record;
    return r->n == S_APPLY_MAX ? s_replay_commit(r) : SB_OK;
}

int broker_wal_recover(broker_t *b, uint64_t *applied_p)
{
    s_replay_t replay = {.w = {b, NULL}};
    uint64_t applied = 0;
    MDB_txn *txn;
    int rc = sbi_store_begin(b->store, false, &txn);
    if (rc != SB_OK)
        return rc;
    MDB_val key = {7, "applied"}, value;
    if (mdb_get(txn, b->wal_dbi, &key, &value) == 0 && value.mv_size == 8)
        applied = sbi_be64_get(value.mv_data);
    mdb_txn_abort(txn);
    size_t replayed = 0;
    rc = broker_wal_replay(b->wal, applied, s_replay_one, &replay, &replayed);
    int last_rc = s_replay_commit(&replay);
    if (rc == SB_OK)
        rc = last_rc;
    if (rc != SB_OK)
        return rc;
    if (replayed > 0) {
        rc = sbi_store_begin(b->store, false, &txn);
        if (rc != SB_OK)
            return rc;
        if (mdb_get(txn, b->wal_dbi, &key, &value) == 0 && value.mv_size == 8)
            applied = sbi_be64_get(value.mv_data);
        mdb_txn_abort(txn);
        sbi_notice("applied %zu journal record(s) the store had not committed", replayed);
    }
    *applied_p = applied;
    atomic_store(&b->wal_applied, applied);
    return broker_wal_reset(b->wal);
}

/* ------------------------------------------------------------ the writer */

/* The journal's writing state: the writer thread's, or the main thread's
   while it writes a batch itself (broker_writer_write), under `lock`. */
struct broker_journal_t {
    pthread_mutex_t lock;
    zsock_t *apply;           /* to the applier */
    uint64_t number;          /* of the last batch written */
    s_record_t *record;       /* being built; the applier's once written */
    size_t room;              /* bytes of body it has room for */
};

/* Appends `n` bytes to the record being built, making one if there is
   none: the record's body is the buffer written and then handed on. */
static void s_body_add(broker_journal_t *j, const void *data, size_t n)
{
    s_record_t *r = j->record;
    if (!r || r->size + n > j->room) {
        j->room = ((r ? r->size : 0) + n) * 2 + 4096;
        j->record = realloc(r, sizeof *r + j->room);
        assert(j->record);
        if (!r)
            j->record->size = 0;
        r = j->record;
    }
    if (n > 0)
        memcpy(r->body + r->size, data, n);
    r->size += n;
}

/* Writes batches group[0..n) as one journal record, passes the record to
   the applier and sets each batch's status. */
static void s_write(broker_t *b, broker_batch_t **group, size_t n)
{
    broker_journal_t *j = b->journal;
    pthread_mutex_lock(&j->lock);
    uint32_t flags = 0;
    s_body_add(j, NULL, 0);        /* a record to fill, even of no operation */
    for (size_t i = 0; i < n; i++) {
        for (zchunk_t *op = zlistx_first(group[i]->ops); op; op = zlistx_next(group[i]->ops)) {
            uint32_t len = (uint32_t) zchunk_size(op);
            s_body_add(j, &len, 4);
            s_body_add(j, zchunk_data(op), len);
        }
        if (group[i]->checkpoint)
            flags |= S_FLAG_CHECKPOINT;
    }
    int64_t began = zclock_usecs();
    /* Wait for room only while the applier is committing, not failing. */
    int64_t wait = atomic_load(&b->wal_stuck) ? 0 : S_ROOM_WAIT_US;
    s_record_t *r = j->record;
    int rc = broker_wal_append(b->wal, j->number + 1, j->number + n, flags, r->body, r->size,
                               wait);
    int64_t took = zclock_usecs() - began;
    if (rc == SB_EFULL)
        sbi_error("the journal has no room: the store has not applied what is in it");
    else if (rc != SB_OK)
        sbi_error("journal write failed: %s", strerror(errno));
    if (rc == SB_OK) {
        r->first = j->number + 1;
        r->last = j->number + n;
        r->flags = flags;
        j->number += n;
        zsock_send(j->apply, "p", r);       /* the applier's now */
        j->record = NULL;
    }
    else
        r->size = 0;
    pthread_mutex_unlock(&j->lock);
    for (size_t i = 0; i < n; i++) {
        group[i]->status = rc;
        group[i]->commit_us = took;
    }
}

/* The next batch handed over, or NULL on $TERM (or a broken pipe). */
static broker_batch_t *s_next_batch(zsock_t *pipe)
{
    char *command = NULL;
    void *batch = NULL;
    if (zsock_recv(pipe, "sp", &command, &batch) != 0 || !command)
        return NULL;
    bool is_batch = strcmp(command, "BATCH") == 0;
    zstr_free(&command);
    return is_batch ? batch : NULL;
}

/* Takes whatever batches are waiting after `first`, up to a group, writes
   them as one journal record and hands them back in order. False when
   $TERM came meanwhile: the group is finished first, then the writer stops. */
static bool s_group(broker_t *b, zsock_t *pipe, broker_batch_t *first)
{
    broker_batch_t *group[S_GROUP_MAX] = {first};
    size_t n = 1, bytes = first->bytes;
    bool more = true;
    while (more && n < S_GROUP_MAX && bytes < S_GROUP_BYTES
           && (zsock_events(pipe) & ZMQ_POLLIN)) {
        broker_batch_t *next = s_next_batch(pipe);
        if (next) {
            group[n++] = next;
            bytes += next->bytes;
        }
        more = next != NULL;
    }
    s_write(b, group, n);
    for (size_t i = 0; i < n; i++)
        zsock_send(pipe, "p", group[i]);
    return more;
}

static void s_writer_actor(zsock_t *pipe, void *arg)
{
    zsock_signal(pipe, 0);
    broker_batch_t *batch;
    while ((batch = s_next_batch(pipe)) && s_group(arg, pipe, batch))
        ;
}

zactor_t *broker_writer_new(broker_t *b)
{
    broker_journal_t *j = calloc(1, sizeof *j);
    assert(j);
    pthread_mutex_init(&j->lock, NULL);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "inproc://sharebus-apply-%p", (void *) b);
    j->apply = zsock_new_push(endpoint);
    assert(j->apply);
    zsock_set_linger(j->apply, 1000);       /* what is sent reaches the applier */
    j->number = atomic_load(&b->wal_applied);
    b->journal = j;
    return zactor_new(s_writer_actor, b);
}

void broker_writer_destroy(broker_t *b)
{
    zactor_destroy(&b->writer);
    broker_journal_t *j = b->journal;
    if (j) {
        zsock_destroy(&j->apply);
        free(j->record);
        pthread_mutex_destroy(&j->lock);
        free(j);
        b->journal = NULL;
    }
}

/* Writes `batch` on the calling thread, with nothing at the writer: the
   main thread's way when it has nothing else to do meanwhile. */
void broker_writer_write(broker_t *b, broker_batch_t *batch)
{
    s_write(b, &batch, 1);
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
