/*  broker.h - the sharebus broker: transport authentication, the policy
    gate, consent, the audit writer and routing. Internal to sharebus-broker.

    The main thread decides every message and journals what the store must
    hold (audit records, consent changes, queued events) into a batch, with
    what the batch lets leave. A writer thread (writer.c) writes every
    batch handed to it meanwhile as one record of the write-ahead journal
    (wal.c), one synchronous write (the main thread writes a batch itself
    when it has nothing else to do); only then does the main thread send what
    those batches produced: nothing an agency sent leaves the broker before
    its audit record is durable. An applier thread commits the journal's
    records to LMDB behind it.
*/
#ifndef BROKER_H_INCLUDED
#define BROKER_H_INCLUDED

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>

#include "audit.h"
#include "envelope.h"
#include "policy.h"
#include "store.h"

typedef struct {
    const char *certs;
    const char *policy;
    const char *data;
    const char *bind;
    int skew_ms;              /* accepted clock difference; default 30 s */
    int checkpoint_ms;        /* checkpoint interval; default 10 s */
    size_t map_max;           /* store map limit in bytes; 0 = 64 GiB */
    size_t wal_size;          /* the journal's ring in bytes; 0 = 16 MiB */
    uint64_t queue_max;       /* events waiting per subscriber, at most */
    const char *capture;      /* write every received frame here (diagnostics) */
    const char *metrics;      /* HOST:PORT to serve Prometheus metrics on, or NULL */
} broker_config_t;

/* A connected agent, as last seen. */
typedef struct {
    char agency[SBI_AGENCY_MAX + 1];
    zframe_t *routing;
    int64_t last_seen;
    uint64_t received;
    uint64_t refused;
    uint8_t curve[32];        /* the CURVE key its connection authenticated with */
} broker_peer_t;

/* A routed request waiting for its reply. */
typedef struct {
    uint8_t id[SBI_ID_SIZE];
    char consumer[SBI_AGENCY_MAX + 1];
    char provider[SBI_AGENCY_MAX + 1];
    char *dataset;
    char *purpose;
    char *rule_id;
    char *consent_id;
    uint8_t subject_ref[SBI_HASH_SIZE];
    bool has_subject;         /* datasets not about residents have none */
    char **flow;              /* fields the reply may carry */
    int64_t deadline;         /* zclock_mono ms */
    int fail_code;            /* set when forwarding failed: answer now */
    bool stopped;             /* the broker is stopping: answer now */
    int64_t started_us;       /* zclock_usecs when routed, for the latency histogram */
} broker_pending_t;

/* Something to send once the batch is durable. */
typedef struct {
    zframe_t *to;             /* routing id */
    zframe_t *frame;
    char pending_key[2 * SBI_ID_SIZE + 1]; /* forwarded request, if any */
    bool forward;             /* an agency's message: leaves only if audited */
    int64_t read_us;          /* a routed request's or reply's: when the loop read it */
} broker_out_t;

typedef struct {
    double tokens;
    int64_t last;             /* zclock_mono ms */
} broker_bucket_t;

typedef struct broker_queue_t broker_queue_t;
typedef struct broker_batch_t broker_batch_t;
typedef struct broker_journal_t broker_journal_t;
typedef struct broker_metrics_t broker_metrics_t;
typedef struct broker_verifier_t broker_verifier_t;
typedef struct broker_seen_t broker_seen_t;
typedef struct broker_wal_t broker_wal_t;

/* A named database of the store, opened at start (broker_dbi_open). */
typedef struct {
    char name[32];
    MDB_dbi dbi;
} broker_dbi_t;

/* What the applier reports after each commit, or failed commit. */
typedef struct {
    int status;               /* SB_OK, or why the store took nothing */
    uint64_t last;            /* the last batch committed */
    uint64_t head;            /* audit head after the commit */
    int64_t commit_us;
    Sharebus__Checkpoint *cp; /* signed after the commit, when asked */
} broker_applied_t;

/* One message from an agency's connection, read in a loop turn: decoded
   and verified (verify.c), then routed (route.c). */
typedef struct {
    zframe_t *routing;
    zframe_t *frame;
    const sbi_cert_t *cert;   /* the certificate its connection authenticated with */
    sbi_envelope_t env;       /* decoded when decode_rc is SB_OK */
    int decode_rc;            /* sbi_envelope_decode */
    int verify_rc;            /* sbi_envelope_verify; decode_rc when that failed */
    int64_t read_us;          /* zclock_usecs when the loop read it */
} broker_in_t;

typedef struct {
    broker_config_t config;
    sbi_trust_t *trust;
    sbi_crypto_t *crypto;
    const sbi_cert_t *me;
    sbi_policy_t *policy;
    sbi_store_t *store;
    sbi_audit_t *audit;
    broker_batch_t *batch;    /* being built: journal and outbox */
    zactor_t *writer;         /* the journal writer thread (writer.c) */
    broker_journal_t *journal; /* what it writes with, shared with the main thread */
    zactor_t *applier;        /* the thread committing the journal to LMDB */
    broker_wal_t *wal;        /* the write-ahead journal (wal.c) */
    MDB_dbi wal_dbi;          /* "wal": the last batch applied */
    _Atomic uint64_t wal_applied; /* ... as the applier last committed it */
    atomic_bool wal_stuck;    /* the applier's last commit failed */
    uint64_t submitted;       /* number of the last batch handed to the writer (less those it could not write) */
    uint64_t applied;         /* ... and committed by the applier, as reported */
    bool apply_now;           /* the batch queues events: ask LMDB to commit it now */
    broker_dbi_t dbis[8];
    size_t n_dbis;
    broker_verifier_t *verifier; /* checks envelopes with the main thread (verify.c) */
    broker_in_t *in;          /* the messages of a loop turn */
    int in_flight;            /* batches handed to it, not yet back */
    uint64_t audit_seq;       /* audit head as of the last commit */
    bool store_full;          /* refusing until space is back */
    zsock_t *zap;             /* admits connections (zap.c) */
    zsock_t *router;
    zsock_t *monitor;
    zsock_t *admin;
    zhashx_t *peers;          /* agency -> broker_peer_t */
    zhashx_t *pending;        /* hex id -> broker_pending_t */
    broker_seen_t *seen;      /* the replay window (seen.c) */
    zhashx_t *buckets;        /* "rule/consumer" -> broker_bucket_t */
    zhashx_t *consent_buckets; /* agency -> broker_bucket_t: its consent operations */
    zhashx_t *consents_expiring; /* consent id noticed expired -> the batch recording it,
                                    until LMDB has it (dropped if that batch fails) */
    int64_t started;
    int64_t next_sweep;
    int64_t refusals_second;  /* connections refused by ZAP: the second counted (mono s), */
    unsigned refusals;        /* ... how many in it, */
    uint64_t refusals_unrecorded; /* ... and how many since the last summary went unrecorded */
    char refusals_last[64];   /* the address of the last one unrecorded */
    int64_t next_peer_sweep;
    int64_t next_checkpoint;
    uint64_t checkpointed_seq;
    Sharebus__Checkpoint *checkpoint; /* the latest */
    zhashx_t *counters;       /* "name" -> uint64_t*, for status */
    uint64_t captured;
    MDB_dbi queue_events;
    zhashx_t *queues;         /* subscriber agency -> broker_queue_t */
    zhashx_t *event_acks;     /* publisher agency -> what the batch acknowledges */
    MDB_dbi consent_records;
    MDB_dbi consent_match;
    MDB_dbi consent_subject;
    broker_metrics_t *metrics; /* counters and histograms (metrics.c) */
} broker_t;

broker_t *broker_new(const broker_config_t *config);
void broker_destroy(broker_t **self_p);
int broker_run(broker_t *self);

/* Loads certificates and policy afresh and swaps them in, or keeps the old
   ones. Returns 0, or -1 with every error appended to `errors`, logged,
   and the refusal audited (policy-rejected). */
int broker_reload(broker_t *self, zlistx_t *errors);

/* The batch: append an audit record (copied; the caller keeps `record`),
   put or delete a key. Durable once the batch is in the journal
   (broker_flush, broker_sync); in LMDB once the applier commits it. */
void broker_audit(broker_t *self, Sharebus__AuditRecord *record);
void broker_put(broker_t *self, MDB_dbi dbi, const void *key, size_t key_size, const void *value,
                size_t value_size);
void broker_del(broker_t *self, MDB_dbi dbi, const void *key, size_t key_size);
void broker_send(broker_t *self, const zframe_t *to, zframe_t **frame_p, const char *pending_key);
/* Queues an agency's message forwarded as received (request, reply, event):
   it leaves only when the batch is durable, never when the store is full.
   `read_us`: when the loop read a request or a reply forwarded (its time
   in the broker goes to the hold histograms), or 0. */
void broker_forward(broker_t *self, const zframe_t *to, zframe_t **frame_p,
                    const char *pending_key, int64_t read_us);
/* Makes the current batch durable: hands it to the writer, or writes it
   on this thread when nothing is at the writer and no message waits;
   what it produced is sent once it is durable. broker_sync also waits
   until every batch handed over is durable and its outbox sent. */
void broker_flush(broker_t *self);
void broker_sync(broker_t *self);

/* The writer (writer.c). A batch is built by the main thread, applied and
   committed by the writer, and handed back. */
broker_batch_t *broker_batch_new(void);
void broker_batch_destroy(broker_batch_t **batch_p);
bool broker_batch_empty(const broker_batch_t *batch);
void broker_batch_op(broker_batch_t *batch, zchunk_t *op);
void broker_batch_send(broker_batch_t *batch, broker_out_t *out);
void broker_batch_want_checkpoint(broker_batch_t *batch);
int broker_batch_status(const broker_batch_t *batch);
zlistx_t *broker_batch_outbox(broker_batch_t *batch);
int64_t broker_batch_commit_us(const broker_batch_t *batch);
zactor_t *broker_writer_new(broker_t *broker);
void broker_writer_destroy(broker_t *broker);
void broker_writer_submit(zactor_t *writer, broker_batch_t *batch);
broker_batch_t *broker_writer_done(zactor_t *writer);
/* Writes `batch` to the journal on the calling thread and sets its status;
   only with no batch at the writer, so that batches stay in order. */
void broker_writer_write(broker_t *broker, broker_batch_t *batch);
/* The applier: start it before the writer, which sends it records. */
zactor_t *broker_applier_new(broker_t *broker);
broker_applied_t *broker_applier_done(zactor_t *applier);
void broker_applied_destroy(broker_applied_t **done_p);
/* At start, before the threads: commits what the journal holds and LMDB
   does not, and sets `applied` to the last batch number committed. */
int broker_wal_recover(broker_t *self, uint64_t *applied) SBI_UNUSED_RESULT;

/* Opens named database `name` of the store and remembers it by name, for
   journal operations; find it again by name. */
int broker_dbi_open(broker_t *self, const char *name, unsigned flags, MDB_dbi *dbi)
    SBI_UNUSED_RESULT;
int broker_dbi_find(broker_t *self, const char *name, size_t len, MDB_dbi *dbi);

/* The write-ahead journal (wal.c): the file at `path`, made with `size`
   bytes of zeros if it is missing or smaller. `applied` is the number of
   the last batch LMDB has committed, which frees the records up to it. */
broker_wal_t *broker_wal_open(const char *path, size_t size, const _Atomic uint64_t *applied,
                              char *err, size_t err_size);
void broker_wal_close(broker_wal_t **self_p);
/* Appends batches first..last (their operations in `body`), durably:
   SB_OK, SB_EFULL when no room came within `wait_us`, or SB_EIO. Writer
   only. */
int broker_wal_append(broker_wal_t *self, uint64_t first, uint64_t last, uint32_t flags,
                      const uint8_t *body, size_t size, int64_t wait_us) SBI_UNUSED_RESULT;
/* Calls `fn` for each record after batch `applied`, in order, stopping at
   a gap, a torn record or an error of `fn` (returned); counts them. */
typedef int (broker_wal_fn)(void *arg, uint64_t first, uint64_t last, uint32_t flags,
                            const uint8_t *body, size_t size);
int broker_wal_replay(broker_wal_t *self, uint64_t applied, broker_wal_fn *fn, void *arg,
                      size_t *replayed) SBI_UNUSED_RESULT;
/* A new id for the file: every record in it is old from now on. */
int broker_wal_reset(broker_wal_t *self) SBI_UNUSED_RESULT;

/* Seals and signs a message from the broker to `agency` and queues it. */
/* The route to `agency`, or NULL when it has none or the certificate its
   connection authenticated with has since expired or been revoked (a
   connection outlives its certificate: nothing goes out on it then). */
/* Takes a token from the bucket `key` of `buckets` (created full): `count`
   tokens come back every `period_ms`. SB_OK, or SB_ERATE when it is empty. */
int broker_bucket_take(zhashx_t *buckets, const char *key, unsigned count, int64_t period_ms);

broker_peer_t *broker_peer_valid(broker_t *self, const char *agency);

int broker_send_to(broker_t *self, const char *agency, Sharebus__Header *header,
                   const Sharebus__Payload *payload);

/* Sends the same payload to every connected agent. */
void broker_broadcast(broker_t *self, Sharebus__Kind kind, const Sharebus__Payload *payload);

/* Refuses message `env` (or an undecodable frame, env NULL) that came from
   `cert`'s connection: audits the refusal and answers with an ERROR. */
void broker_refuse(broker_t *self, const sbi_cert_t *cert, const zframe_t *routing,
                   sbi_envelope_t *env, Sharebus__AuditKind kind, int code, const char *reason);

/* Decodes and verifies in[0..count) against `trust` at `now_ms`, setting
   each one's decode_rc, env and verify_rc: on this thread and the
   verifier's helper together. `self` may be NULL (this thread alone). */
broker_verifier_t *broker_verifier_new(void);
void broker_verifier_destroy(broker_verifier_t **self_p);
void broker_verify(broker_verifier_t *self, sbi_trust_t *trust, broker_in_t *in, size_t count,
                   uint64_t now_ms);

/* Routing (route.c): one message from an authenticated agency, checked by
   broker_verify; the caller still owns and clears it. */
void broker_route(broker_t *self, broker_in_t *in);
void broker_sweep(broker_t *self);
/* Forgets `agency`'s route; the requests waiting on it as their provider
   are answered unavailable at the next sweep, not left to their deadlines. */
void broker_peer_forget(broker_t *self, const char *agency);
/* At start: takes back from the audit log the requests routed and not
   ended when the broker last stopped without closing them (a kill -9). */
void broker_pending_recover(broker_t *self);
/* Answers every request in flight unavailable, and records it: the broker stops. */
void broker_pending_stop(broker_t *self);
void broker_pending_free(void **item_p);

/* The consent registry (consent.c). */
int broker_consent_open(broker_t *self);
int broker_consent_find(broker_t *self, const Sharebus__Header *request, char *consent_id,
                        size_t id_size, char *reason, size_t reason_size);
/* SB_OK while consent `id` is active; SB_ENOCONSENT once it was revoked or
   has expired (noticing the expiry), with the reason naming it. */
int broker_consent_active(broker_t *self, const char *id, char *reason, size_t reason_size);
void broker_consent_grant(broker_t *self, const sbi_cert_t *cert, const zframe_t *routing,
                          sbi_envelope_t *env, Sharebus__Payload *payload);
void broker_consent_revoke(broker_t *self, const sbi_cert_t *cert, const zframe_t *routing,
                           sbi_envelope_t *env, Sharebus__Payload *payload);
void broker_consent_list(broker_t *self, const sbi_cert_t *cert, const zframe_t *routing,
                         sbi_envelope_t *env, Sharebus__Payload *payload);

/* Events (events.c). */
int broker_events_open(broker_t *self);
int broker_events_load(broker_t *self);
void broker_events_close(broker_t *self);
void broker_event_publish(broker_t *self, const sbi_cert_t *cert, const zframe_t *routing,
                          sbi_envelope_t *env, zframe_t *frame);
void broker_event_ack(broker_t *self, const sbi_cert_t *cert, sbi_envelope_t *env);
void broker_events_reset(broker_t *self, const char *agency);
void broker_events_reset_all(broker_t *self);
void broker_events_pump(broker_t *self);
/* Seals the batch's acknowledgements to publishers into it: one EVENT_ACK
   per publisher, sent when the batch is durable. */
void broker_events_flush_acks(broker_t *self);
uint64_t broker_events_depth(broker_t *self, const char *agency);

/* Remembers message id `key` (hex) until `expiry_ms`, for replay checks. */
/* The replay window (seen.c): message ids, each kept until its expiry. */
broker_seen_t *broker_seen_new(void);
void broker_seen_destroy(broker_seen_t **self_p);
/* True when `id` was added with an expiry not before `now_ms`. */
bool broker_seen_has(const broker_seen_t *self, const uint8_t id[SBI_ID_SIZE], uint64_t now_ms);
/* Adds `id` until `expiry_ms` (or keeps its later expiry); forgets ids
   expired by `now_ms` when it needs room. */
void broker_seen_add(broker_seen_t *self, const uint8_t id[SBI_ID_SIZE], uint64_t expiry_ms,
                     uint64_t now_ms);
/* Slots in use (live and expired ids not yet forgotten). */
size_t broker_seen_size(const broker_seen_t *self);

/* Counters for status. */
void broker_count(broker_t *self, const char *name);

/* The admin socket (admin.c). */
int broker_admin_open(broker_t *self);
void broker_admin_handle(broker_t *self);

/* ------------------------------------------------------------ zap.c */

/* The ZAP handler's socket, bound in the process's context: before any
   socket binds or connects. NULL when it cannot bind. */
zsock_t *broker_zap_new(void);

/* Answers one ZAP request waiting on self->zap from the trust store. */
void broker_zap_handle(broker_t *self);

/* The serial of the certificate `agency`'s connection authenticated with,
   or 0 when it is not connected. */
uint64_t broker_peer_serial(broker_t *self, const char *agency);

/* The certificate to seal to for a connected agency: the one its
   connection uses, so an agent that has not switched to a newer
   certificate yet can open what the broker sends it. NULL if none. */
const sbi_cert_t *broker_peer_cert(broker_t *self, const char *agency);

/* Prints a STATUS answer for people (sharebus-broker status). */
struct json_object;
void broker_status_print(FILE *out, struct json_object *status);

/* Metrics (metrics.c): made by broker_admin_open, served when
   config.metrics is set. */
int broker_metrics_open(broker_t *self);
void broker_metrics_close(broker_t *self);
zsock_t *broker_metrics_socket(broker_t *self);
void broker_metrics_handle(broker_t *self);
void broker_metrics_request(broker_t *self, const Sharebus__Header *request);
void broker_metrics_latency(broker_t *self, int64_t usecs);
void broker_metrics_commit(broker_t *self, int64_t usecs);
/* A request (or a reply) forwarded `usecs` after the loop read it. */
void broker_metrics_hold(broker_t *self, bool request, int64_t usecs);
void broker_metrics_status(broker_t *self, struct json_object *status);
/* The Prometheus text exposition; the caller frees it. */
char *broker_metrics_text(broker_t *self);
/* Checks "HOST:PORT" and writes "tcp://HOST:PORT" to `endpoint` (may be
   NULL): SB_OK or SB_EINVAL. */
int broker_metrics_endpoint(const char *host_port, char *endpoint, size_t size);

/* Backup (backup.c): copies DDIR/store, compacted, into DIR/store while
   the broker runs, refusing to overwrite. Prints what it copied. */
int broker_backup(const char *data, const char *to);

#endif
