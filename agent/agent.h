/*  agent.h - one agency's agent: holds the agency's keys, talks to the
    broker for its back-ends, and serves its back-ends on a local endpoint.
    Internal to sharebus-agent. */
#ifndef AGENT_H_INCLUDED
#define AGENT_H_INCLUDED

#include <pthread.h>

#include "audit.h"
#include "envelope.h"
#include "policy.h"
#include "store.h"

typedef struct {
    const char *agency;
    const char *certs;
    const char *broker;       /* tcp://host:port of the broker */
    const char *listen;       /* back-ends' endpoint */
    const char *data;         /* the agent's own store */
} agent_config_t;

typedef struct agent_publication_t agent_publication_t;
typedef struct agent_keys_t agent_keys_t;
typedef struct agent_batch_t agent_batch_t;

/* A request of one of our back-ends, waiting for its reply; or one view of
   an event it published, waiting for the broker's acknowledgement. */
typedef struct {
    agent_publication_t *pub; /* set for an event's view */
    bool consent;             /* set for a consent operation */
    zframe_t *client;         /* routing id of the back-end */
    uint64_t client_id;       /* its ClientMessage id */
    int64_t deadline;         /* zclock_mono ms */
    char **fields;            /* what was asked (NULL-terminated) */
    char provider[SBI_AGENCY_MAX + 1]; /* who may answer, besides the broker */
} agent_pending_t;

/* A request from another agency that one of our back-ends is answering. */
typedef struct {
    uint8_t message_id[SBI_ID_SIZE];
    char consumer[SBI_AGENCY_MAX + 1];
    char *dataset;
    char *purpose;
    char *rule_id;
    uint8_t subject_ref[SBI_HASH_SIZE];
    bool has_subject;
    char **flow;              /* fields the reply may carry (NULL-terminated) */
    int64_t deadline;
} agent_serving_t;

typedef struct {
    agent_config_t config;
    sbi_trust_t *trust;
    sbi_crypto_t *crypto;
    const sbi_cert_t *me;
    const sbi_cert_t *broker;
    uint8_t subject_key[32];
    sbi_policy_t *policy;
    sbi_store_t *store;
    sbi_audit_t *audit;       /* the log thread's once it runs (log.c) */
    zactor_t *logger;         /* the log thread */
    agent_batch_t *batch;     /* the open batch of the log, in memory */
    size_t in_flight;         /* batches at the log thread */
    zsock_t *bus;             /* DEALER to the broker */
    zsock_t *front;           /* ROUTER for back-ends */
    zsock_t *monitor;         /* the bus socket's handshake events */
    zhashx_t *pending;        /* hex message id -> agent_pending_t */
    zhashx_t *serving;        /* decimal token -> agent_serving_t */
    zhashx_t *providers;      /* dataset -> zframe_t routing id of a back-end */
    uint64_t next_token;
    MDB_dbi events_seen;      /* event id -> time acknowledged */
    zhashx_t *subscriptions;  /* topic -> zframe_t routing id of a back-end */
    zlistx_t *inbox;          /* events waiting for the back-end, in order */
    zhashx_t *inbox_index;    /* the same, by hex id and by decimal token */
    zhashx_t *marked;         /* hex id -> marks seen not yet committed */
    int64_t next_hello;
    int64_t next_sweep;
    int64_t next_commit;
    bool welcomed;
    agent_keys_t *keys;       /* certificates and key pairs over time (keys.c) */
    sbi_sealed_t **outgoing;  /* sealed this turn, signed together by agent_flush */
    size_t n_outgoing;
} agent_t;

/* Sets up keys, store, sockets. NULL (having logged why) on failure. */
agent_t *agent_new(const agent_config_t *config);
void agent_destroy(agent_t **self_p);

/* Runs until SIGINT/SIGTERM. */
int agent_run(agent_t *self);

/* Seals `payload` (may be NULL) for `to` under `header`, to be signed and
   sent to the broker with the others of this loop turn by agent_flush.
   SB_EUNAVAILABLE when the connection to the broker takes nothing now,
   or an error of sbi_envelope_seal_later. */
int agent_send(agent_t *self, const sbi_cert_t *to, Sharebus__Header *header,
               const Sharebus__Payload *payload);

/* Signs what agent_send sealed with one signature (a batch), logs each
   envelope in the agent's audit log and sends them, in order. */
void agent_flush(agent_t *self);

/* Sends an ERROR answering message `correlation` to agency `to`. */
/* True when the national id sealed in a message is the one its header's
   subject reference stands for (both absent counts too). The broker checks
   consent and audits under the reference alone, so a receiver that used a
   different sealed id would serve a citizen nobody consented for, off the
   record. */
bool agent_subject_matches(agent_t *self, const Sharebus__Header *header, const char *subject_id);

void agent_send_error(agent_t *self, const char *to, const uint8_t *correlation, int code,
                      const char *reason);

/* Logs one message sent or received in the agent's own audit log. */
void agent_log(agent_t *self, Sharebus__AuditKind kind, const Sharebus__Header *header,
               const Sharebus__Envelope *envelope);

/* The log thread (log.c). Starts it once the store is open: 0, or -1. */
int agent_log_start(agent_t *self);
/* Hands the open batch to the log thread, if anything is in it. */
void agent_log_commit(agent_t *self);
/* The batches the log thread has handed back, without waiting (but for
   all of them in agent_log_stop). */
void agent_log_settle(agent_t *self);
/* Every batch, the open one too, written and settled: the acknowledgements
   their events owe the broker are sealed, for agent_flush to send. */
void agent_log_drain(agent_t *self);
/* The last batch, written and settled; then the thread stops. */
void agent_log_stop(agent_t *self);
/* Room for one operation of `kind` ('R' a packed AuditRecord, 'C' a packed
   Checkpoint, 'S' an event id and the time, 8 bytes) and `size` bytes in
   the open batch: where to write them. */
uint8_t *agent_log_reserve(agent_t *self, char kind, size_t size);
/* The hex ids the open batch acknowledges to the broker once committed. */
zlistx_t *agent_log_acks(agent_t *self);
/* Whether the open batch holds anything. */
bool agent_log_pending(agent_t *self);
/* Forgets the open batch unwritten: for the agent's fuzzer, which drives
   the loop's handlers directly, between two inputs. */
void agent_log_drop(agent_t *self);

/* Back-end side (front.c). */
void agent_front_message(agent_t *self, zframe_t *client, zframe_t *frame);
/* The agent stops: every back-end call waiting for the broker, and every
   consumer waiting for this agency's back-ends, is answered unavailable. */
void agent_front_stop(agent_t *self);
/* The end of what a call may take from `now`, `limit_ms`, and no later
   than the call's own deadline `expires_ms` (0 = none), as a wall-clock
   time: the back-end waits no longer. */
uint64_t agent_expires(uint64_t now, uint32_t limit_ms, uint64_t expires_ms);
void agent_front_result(agent_t *self, zframe_t *client, uint64_t id, int code,
                        const char *reason, const Sharebus__Record *record);
bool agent_front_send(agent_t *self, zframe_t *client, Sharebus__ClientMessage *message);
void agent_front_incoming(agent_t *self, sbi_envelope_t *env, Sharebus__Payload *payload);
void agent_front_reply(agent_t *self, sbi_envelope_t *env, Sharebus__Payload *payload);
void agent_front_error(agent_t *self, sbi_envelope_t *env);
void agent_front_event_ack(agent_t *self, sbi_envelope_t *env);
void agent_front_consent_result(agent_t *self, sbi_envelope_t *env, Sharebus__Payload *payload);
void agent_front_sweep(agent_t *self);

/* Events (events.c). */
int agent_events_open(agent_t *self);
void agent_events_close(agent_t *self);
void agent_publish(agent_t *self, zframe_t *client, uint64_t id, const Sharebus__ClientPublish *c,
                   uint64_t expires_ms);
void agent_publication_settle(agent_t *self, agent_pending_t *p, int code, const char *reason);
void agent_event_receive(agent_t *self, sbi_envelope_t *env, Sharebus__Payload **payload_p);
void agent_subscribe(agent_t *self, zframe_t *client, uint64_t id, const Sharebus__ClientSubscribe *s);
void agent_event_acked(agent_t *self, const Sharebus__ClientAck *ack);
/* After a batch committed: tells the broker which of its events (`acks`,
   hex ids) are delivered. */
void agent_events_committed(agent_t *self, zlistx_t *acks);
/* After a batch failed: marks its delivered events seen again, in the open
   batch; the broker hears of them when that one commits. */
void agent_events_failed(agent_t *self, zlistx_t *acks);

/* A DEALER to the broker whose CURVE key is `server_key`, authenticated
   with `crypto`'s CURVE keys, and a PAIR in *monitor_p that reports each
   completed handshake. NULL (logged) on failure. */
zsock_t *agent_bus_new(agent_t *self, sbi_crypto_t *crypto, const uint8_t server_key[32],
                       zsock_t **monitor_p);

/* Certificates and keys (keys.c). */
int agent_keys_open(agent_t *self);
void agent_keys_close(agent_t *self);
/* The loop's poller, to which the switch adds and removes its sockets. */
void agent_keys_attach(agent_t *self, zpoller_t *poller);
/* Reloads the certificate directory; with `rotate`, also moves to the
   newest certificate of our agency if there is one (make before break). */
void agent_keys_reload(agent_t *self, bool rotate);
/* Each turn of the loop: a pending SIGHUP (blocked in every thread by
   main.c), the switch, the drain, directory changes. */
void agent_keys_tick(agent_t *self);
/* True while a switch to a newer certificate waits for its connection. */
bool agent_keys_switching(const agent_t *self);
/* A frame from the connection that drains after a switch, or NULL. */
zframe_t *agent_keys_recv(agent_t *self);
/* The broker's envelopes by sbi_envelope_verify, another agency's by
   sbi_envelope_verify_mac under each key pair we hold (one without a MAC
   is refused), and by its signature as well when the key pair the MAC
   holds for has a revoked certificate (SB_EBADSIG if not); reloading the
   directory once when the sender's key is not known, and remembering
   which certificate the sender used. */
int agent_keys_verify(agent_t *self, sbi_envelope_t *env);
/* sbi_envelope_open with our keys, or with any key pair we held before. */
int agent_keys_open_payload(agent_t *self, sbi_envelope_t *env, Sharebus__Payload **payload_p);

/* Copies of string lists, NULL-terminated; freed with agent_strv_free. */
char **agent_strv(const char *const *items, size_t count);
void agent_strv_free(char ***strv_p);
bool agent_strv_has(char **strv, const char *item);

#endif
