/*  log.c - the agent's own log, written by a thread of its own.

    The loop never waits for the disk. What goes into the log (a message
    sent or received, a checkpoint of the broker, an event marked seen) is
    appended to the open batch in memory, as one operation:

        kind (1 byte: 'R' record, 'C' checkpoint, 'S' event seen)
        size (4 bytes, host order), then that many bytes

    At most every S_COMMIT_MS the loop hands the batch to the log thread,
    which appends its operations in one LMDB transaction and commits it:
    the page writes and two syncs that used to hold the loop for about
    2.7 ms every 50 ms (docs/performance.md). The batch comes back with the
    result; only then are the events it marks seen acknowledged to the
    broker (events.c), as before. A batch that meets a full map grows the
    map and is written again.

    The log thread owns the audit chain (self->audit) once it runs. The
    loop reads the store only to look for events seen (events.c), in
    transactions of sbi_store_read_begin, which the log thread's
    sbi_store_grow waits for: LMDB moves the map only when no transaction
    of the process is open. */
#include "agent.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define S_OP_HEAD 5
#define S_GROW_TRIES 4            /* doublings of the map for one batch */

struct agent_batch_t {
    int rc;                   /* set by the log thread */
    zlistx_t *acks;           /* hex ids to acknowledge once it commits */
    size_t records;
    uint8_t *ops;
    size_t size, max;
};

static agent_batch_t *s_batch_new(void)
{
    agent_batch_t *b = calloc(1, sizeof *b);
    assert(b);
    b->acks = zlistx_new();
    zlistx_set_destructor(b->acks, (zlistx_destructor_fn *) zstr_free);
    return b;
}

static void s_batch_destroy(agent_batch_t **b_p)
{
    agent_batch_t *b = *b_p;
    if (b) {
        zlistx_destroy(&b->acks);
        free(b->ops);
        free(b);
        *b_p = NULL;
    }
}

/* ------------------------------------------------------ the log thread */

/* Grows the map when more than `quarters` quarters of it are in use. */
static int s_grow_beyond(agent_t *self, size_t quarters)
{
    size_t map, used;
    sbi_store_usage(self->store, &map, &used);
    if (used <= map / 4 * quarters)
        return SB_OK;
    return sbi_store_grow(self->store);
}

static int s_apply_one(agent_t *self, MDB_txn *txn, uint8_t kind, const uint8_t *data,
                       size_t size)
{
    int rc = SB_OK;
    if (kind == 'R') {
        Sharebus__AuditRecord *r = sharebus__audit_record__unpack(NULL, size, data);
        if (!r)
            return SB_EINTERNAL;
        rc = sbi_audit_append(self->audit, txn, r);
        sharebus__audit_record__free_unpacked(r, NULL);
    }
    else if (kind == 'C') {
        Sharebus__Checkpoint *cp = NULL;
        int crc = sbi_checkpoint_decode(data, size, &cp);
        if (crc == SB_OK)
            crc = sbi_audit_store_checkpoint(self->audit, txn, cp);
        if (crc == SB_EEXISTS)
            /* Kept in this transaction all the same: it is the evidence. */
            sbi_error("the broker signed a different head for record %llu than the checkpoint "
                      "kept for it: the first is kept, the other as evidence (sharebus-audit "
                      "checkpoint --all); the broker's log may have been rewritten",
                      (unsigned long long) cp->seq);
        else if (crc != SB_OK)
            sbi_warning("cannot store the broker's checkpoint");
        if (cp)
            sharebus__checkpoint__free_unpacked(cp, NULL);
    }
    else if (kind == 'S' && size == SBI_ID_SIZE + 8) {
        MDB_val key = {SBI_ID_SIZE, (void *) data}, value = {8, (void *) (data + SBI_ID_SIZE)};
        rc = sbi_store_code(mdb_put(txn, self->events_seen, &key, &value, 0));
    }
    else
        rc = SB_EINTERNAL;
    return rc;
}

static int s_write(agent_t *self, agent_batch_t *b)
{
    MDB_txn *txn = NULL;
    int rc = sbi_store_begin(self->store, true, &txn);
    for (size_t at = 0; rc == SB_OK && at < b->size;) {
        uint32_t size;
        memcpy(&size, b->ops + at + 1, 4);
        rc = s_apply_one(self, txn, b->ops[at], b->ops + at + S_OP_HEAD, size);
        at += S_OP_HEAD + size;
    }
    if (rc == SB_OK)
        rc = sbi_store_code(mdb_txn_commit(txn));
    else if (txn)
        mdb_txn_abort(txn);
    if (rc == SB_OK)
        sbi_audit_commit(self->audit);
    else
        sbi_audit_abort(self->audit);
    return rc;
}

static void s_commit(agent_t *self, agent_batch_t *b)
{
    b->rc = s_write(self, b);
    /* A write that met a full map fails the whole batch: again in a map
       twice as large, up to S_GROW_TRIES times (a full disk reads as a
       full map too, and more map does not help it). */
    for (int tries = 0; b->rc == SB_EFULL && tries < S_GROW_TRIES; tries++)
        if (s_grow_beyond(self, 0) == SB_OK)
            b->rc = s_write(self, b);
        else
            break;
    if (b->rc != SB_OK)
        sbi_error("agent log: a batch of %zu record(s) failed: %s", b->records,
                  sb_strerror(b->rc));
    /* A quarter kept free, so that a batch (a catching-up subscriber's
       window, say) does not meet a full map. */
    else if (s_grow_beyond(self, 3) != SB_OK)
        sbi_warning("agent log: store nearly full and cannot grow");
}

static void s_log_actor(zsock_t *pipe, void *arg)
{
    agent_t *self = arg;
    zsock_signal(pipe, 0);
    while (true) {
        char *command = NULL;
        void *batch = NULL;
        /* SIGTERM is the main thread's: this thread stops only on $TERM,
           after every batch before it. */
        if (zsock_recv(pipe, "sp", &command, &batch) != 0) {
            if (zmq_errno() == EINTR)
                continue;
            break;
        }
        bool stop = !command || strcmp(command, "$TERM") == 0;
        zstr_free(&command);
        if (stop)
            break;
        s_commit(self, batch);
        zsock_send(pipe, "p", batch);
    }
}

/* ----------------------------------------------------------- the loop */

int agent_log_start(agent_t *self)
{
    self->batch = s_batch_new();
    self->logger = zactor_new(s_log_actor, self);
    if (!self->logger)
        return -1;
    zsock_set_rcvtimeo(zactor_sock(self->logger), 0);   /* the loop never waits */
    return 0;
}

/* The returned batches: acknowledgements for those that committed, the
   marks of those that failed written again in the open batch. */
void agent_log_settle(agent_t *self)
{
    while (self->in_flight > 0) {
        void *p = NULL;
        if (zsock_recv(zactor_sock(self->logger), "p", &p) != 0)
            break;
        agent_batch_t *b = p;
        self->in_flight--;
        if (b->rc == SB_OK)
            agent_events_committed(self, b->acks);
        else
            agent_events_failed(self, b->acks);
        s_batch_destroy(&b);
    }
}

void agent_log_commit(agent_t *self)
{
    if (!self->logger || self->batch->size == 0)
        return;
    agent_batch_t *b = self->batch;
    self->batch = s_batch_new();
    self->in_flight++;
    zsock_send(self->logger, "sp", "BATCH", b);
}

void agent_log_drain(agent_t *self)
{
    if (!self->logger)
        return;
    agent_log_commit(self);
    /* What is at the log thread comes back: waiting. */
    zsock_set_rcvtimeo(zactor_sock(self->logger), -1);
    agent_log_settle(self);
    zsock_set_rcvtimeo(zactor_sock(self->logger), 0);
}

void agent_log_stop(agent_t *self)
{
    agent_log_drain(self);
    zactor_destroy(&self->logger);
    s_batch_destroy(&self->batch);
}

uint8_t *agent_log_reserve(agent_t *self, char kind, size_t size)
{
    agent_batch_t *b = self->batch;
    assert(b && size <= UINT32_MAX);
    if (b->size + S_OP_HEAD + size > b->max) {
        size_t max = b->max ? b->max : 4096;
        while (max < b->size + S_OP_HEAD + size)
            max *= 2;
        b->ops = realloc(b->ops, max);
        assert(b->ops);
        b->max = max;
    }
    uint8_t *op = b->ops + b->size;
    uint32_t size32 = (uint32_t) size;
    op[0] = (uint8_t) kind;
    memcpy(op + 1, &size32, 4);
    b->size += S_OP_HEAD + size;
    b->records += kind == 'R';
    return op + S_OP_HEAD;
}

zlistx_t *agent_log_acks(agent_t *self)
{
    return self->batch->acks;
}

bool agent_log_pending(agent_t *self)
{
    return self->batch && self->batch->size > 0;
}

void agent_log_drop(agent_t *self)
{
    self->batch->size = 0;
    self->batch->records = 0;
    zlistx_purge(self->batch->acks);
}
