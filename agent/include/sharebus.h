/*  sharebus.h - the sharebus client library, libsharebus.

    A back-end talks only to its own agency's agent, over ZeroMQ (ipc:// or
    tcp:// on loopback). The agent holds the agency's keys, signs, seals,
    verifies and opens; the back-end sees clear records and typed errors.

    Conventions:
    - Functions that can fail return 0 or a negative SB_E* code; constructors
      return NULL on failure. sb_strerror() names a code; the object's
      sb_client_reason() gives the human detail of its last failure.
    - After SIGINT or SIGTERM (caught by CZMQ on the first sb_client_new),
      every call that would send to the agent returns SB_EINTERNAL at
      once, with the reason "interrupted", and sends nothing; a receive
      call (sb_result_recv, sb_incoming_recv, sb_event_recv) still hands
      out what comes within its timeout (none: what has come), then
      returns SB_EINTERNAL "interrupted".
    - `*_destroy(x_p)` frees the object, sets *x_p to NULL, and is safe on a
      NULL or already-destroyed object.
    - Strings passed in are copied; strings returned are owned by the object
      they came from and live until it changes or is destroyed.
*/
#ifndef SHAREBUS_H_INCLUDED
#define SHAREBUS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SHAREBUS_BUILDING)
#define SB_EXPORT __attribute__((visibility("default")))
#else
#define SB_EXPORT
#endif

/* ---------------------------------------------------------------- errors */

/* Error codes. Each is the negative of the wire ErrorKind of the same name
   (proto/sharebus.proto), so a refusal keeps its kind from broker to back-end. */
typedef enum {
    SB_OK = 0,
    SB_EINVAL = -1,       /* invalid argument */
    SB_ENOMEM = -2,       /* out of memory */
    SB_EIO = -3,          /* system or file error */
    SB_EMALFORMED = -4,   /* bytes do not decode */
    SB_ETOOBIG = -5,      /* over a size limit */
    SB_EBADSIG = -6,      /* signature, MAC or payload hash does not verify */
    SB_EBADCERT = -7,     /* certificate unreadable or not signed by the root */
    SB_EREVOKED = -8,     /* certificate revoked */
    SB_EEXPIRED = -9,     /* certificate or consent outside its validity */
    SB_EUNKNOWN = -10,    /* unknown agency */
    SB_ESENDER = -11,     /* sender is not the authenticated agency */
    SB_EREPLAY = -12,     /* message id already seen */
    SB_ESTALE = -13,      /* timestamp outside the clock-skew window */
    SB_EDENIED = -14,     /* no policy rule allows it */
    SB_ENODATASET = -15,  /* dataset or topic not declared */
    SB_ENOCONSENT = -16,  /* no active consent where the rule requires one */
    SB_ERATE = -17,       /* rate limit reached */
    SB_EUNAVAILABLE = -18,/* peer offline, or the bus cannot take it now */
    SB_ETIMEOUT = -19,    /* deadline passed */
    SB_EEXISTS = -20,     /* already exists */
    SB_ENOTFOUND = -21,   /* no such thing */
    SB_EFULL = -22,       /* store or queue full */
    SB_EPROTOCOL = -23,   /* unexpected message for this state */
    SB_EFIELDS = -24,     /* fields beyond what was asked or allowed */
    SB_EINTERNAL = -25,   /* a bug: please report it */
} sb_error_t;

#define SB_ERROR_MIN SB_EINTERNAL

/* A sentence describing `code`, e.g. "no active consent". Never NULL. */
SB_EXPORT const char *sb_strerror(int code);

/* The short stable name of `code` used in logs, JSON and the CLI, e.g.
   "no-consent", "rate-limited", "denied". Never NULL. */
SB_EXPORT const char *sb_errname(int code);

/* The code whose sb_errname() is `name`, or SB_EINVAL when none is. */
SB_EXPORT int sb_errcode(const char *name);

/* --------------------------------------------------------------- records */

/* A record: an ordered set of named, typed fields, e.g. a checkup result
   {exam_date: "2025-10-02", vision_left: 1.0, ...}. Names are 1-128
   printable ASCII characters without spaces, unique within a record. */
typedef struct sb_record_t sb_record_t;

typedef enum {
    SB_FIELD_NONE = 0,   /* no such field */
    SB_FIELD_TEXT,
    SB_FIELD_INTEGER,
    SB_FIELD_REAL,
    SB_FIELD_FLAG,
    SB_FIELD_BLOB,
} sb_field_type_t;

/* An empty record, or NULL when out of memory. */
SB_EXPORT sb_record_t *sb_record_new(void);

/* Frees the record and sets *self_p to NULL. */
SB_EXPORT void sb_record_destroy(sb_record_t **self_p);

/* Sets field `name` (replacing any value it had). SB_EINVAL for a bad name
   or a real that is not finite (NaN or infinity: JSON has neither),
   SB_ETOOBIG past 1,024 fields or a 1 MiB value. */
SB_EXPORT int sb_record_set_text(sb_record_t *self, const char *name, const char *value);
SB_EXPORT int sb_record_set_integer(sb_record_t *self, const char *name, int64_t value);
SB_EXPORT int sb_record_set_real(sb_record_t *self, const char *name, double value);
SB_EXPORT int sb_record_set_flag(sb_record_t *self, const char *name, bool value);
SB_EXPORT int sb_record_set_blob(sb_record_t *self, const char *name, const void *data,
                                 size_t size);

/* Removes field `name`: SB_OK, or SB_ENOTFOUND. */
SB_EXPORT int sb_record_remove(sb_record_t *self, const char *name);

/* Number of fields. */
SB_EXPORT size_t sb_record_size(const sb_record_t *self);

/* Name of the field at `index` (0-based, in insertion order), or NULL. */
SB_EXPORT const char *sb_record_name(const sb_record_t *self, size_t index);

/* Type of field `name`, SB_FIELD_NONE when absent. */
SB_EXPORT sb_field_type_t sb_record_type(const sb_record_t *self, const char *name);

/* Reads field `name`: SB_OK, SB_ENOTFOUND when absent, SB_EINVAL when it has
   another type. Returned pointers live as long as the field. */
SB_EXPORT int sb_record_text(const sb_record_t *self, const char *name, const char **value);
SB_EXPORT int sb_record_integer(const sb_record_t *self, const char *name, int64_t *value);
SB_EXPORT int sb_record_real(const sb_record_t *self, const char *name, double *value);
SB_EXPORT int sb_record_flag(const sb_record_t *self, const char *name, bool *value);
SB_EXPORT int sb_record_blob(const sb_record_t *self, const char *name, const void **data,
                             size_t *size);

/* The record as a JSON object (blobs as base64 strings); the caller frees
   the string with free(). NULL when out of memory. */
SB_EXPORT char *sb_record_to_json(const sb_record_t *self);

/* A record from a JSON object whose values are strings, integers, reals or
   booleans. NULL when `json` is not such an object, or has anything but
   white space after it; when a string holds "\u0000" (a text field ends at
   its first NUL); or when an integer is outside -(2^63 - 1) .. 2^63 - 1
   (int64_t's range without its lowest value, which json-c's parser cannot
   tell from a larger negative number clamped to it). */
SB_EXPORT sb_record_t *sb_record_from_json(const char *json);

/* ---------------------------------------------------------------- client */

/* A connection from a back-end to its own agency's agent. Not thread-safe:
   use one client per thread. Threads may create their clients at the same
   time. */
typedef struct sb_client_t sb_client_t;

/* Connects to the agent at `endpoint` ("ipc:///run/sharebus/koroad.sock" or
   "tcp://127.0.0.1:7001"). Connecting is asynchronous: an agent that is not
   up yet is reached when it comes up. NULL on a malformed endpoint. */
SB_EXPORT sb_client_t *sb_client_new(const char *endpoint);

/* Closes the connection and frees the client; *self_p becomes NULL.
   Unanswered requests are abandoned. */
SB_EXPORT void sb_client_destroy(sb_client_t **self_p);

/* Human detail of the client's last failure, "NAME: detail", e.g.
   "denied: purpose 'marketing' is not allowed for koroad on
   health.checkup.vision-hearing (allowed: driver-licence-renewal)". Read it
   right after a call that failed: a call that succeeds does not always
   clear it. */
SB_EXPORT const char *sb_client_reason(const sb_client_t *self);

/* The underlying CZMQ socket (zsock_t *), readable when a message from the
   agent waits: add it to a zpoller or zloop to fit the client into an
   event loop, then call the *_recv functions with timeout 0 until they
   return SB_ETIMEOUT. Any call may already have read messages into the
   client's own queues, and those never make the socket readable again:
   drain the queues after each wake-up, not only when the socket fires. */
SB_EXPORT void *sb_client_socket(sb_client_t *self);

/* A request for a citizen's data, held by another agency. */
typedef struct {
    const char *provider;          /* agency id that holds the dataset */
    const char *dataset;           /* e.g. "health.checkup.vision-hearing" */
    const char *purpose;           /* e.g. "driver-licence-renewal" */
    const char *subject;           /* the citizen's national id, in clear
                                      (1-64 characters; "" is SB_EINVAL):
                                      only the provider's agent sees it.
                                      NULL for a dataset about no one
                                      (subject: none in the policy) */
    const char *const *fields;     /* fields wanted; NULL = all allowed */
    size_t n_fields;
    int timeout_ms;                /* deadline from now; 0 = 5000, at most
                                      60000 (the broker waits no longer) */
} sb_request_t;

/* Sends `request` and waits for the answer. On SB_OK *record_p holds the
   record (the caller destroys it): exactly the fields asked for that the
   policy allows. Otherwise *record_p is NULL and the code says why:
   SB_EDENIED, SB_ENOCONSENT, SB_ERATE, SB_EUNAVAILABLE, SB_ETIMEOUT,
   SB_ENODATASET, SB_ENOTFOUND (no such subject at the provider), ... with
   the detail in sb_client_reason(). */
SB_EXPORT int sb_request(sb_client_t *self, const sb_request_t *request,
                         sb_record_t **record_p);

/* Sends `request` without waiting; *ticket_p identifies its answer. Many
   requests may be in flight on one client. */
SB_EXPORT int sb_request_send(sb_client_t *self, const sb_request_t *request,
                              uint64_t *ticket_p);

/* The answer to one request sent with sb_request_send. */
typedef struct {
    uint64_t ticket;
    int code;                      /* SB_OK or the request's error */
    sb_record_t *record;           /* on SB_OK; the caller destroys it */
} sb_result_t;

/* Waits up to `timeout_ms` (-1 = forever) for the next answer. SB_OK when
   `result` was filled; SB_ETIMEOUT when none came; SB_EINTERNAL when
   interrupted by a signal and none came (after the signal, answers that
   come within a finite timeout are still handed out, so a program can
   collect what it asked for before it stops). */
SB_EXPORT int sb_result_recv(sb_client_t *self, sb_result_t *result, int timeout_ms);

/* ------------------------------------------------------------- providers */

/* A request from another agency that this back-end is to answer, already
   checked by the broker and opened by the agent. */
typedef struct sb_incoming_t sb_incoming_t;

/* Registers this client as the provider of `dataset`: the agent passes it
   every request for it. SB_ENODATASET when this agency does not provide it. */
SB_EXPORT int sb_client_serve(sb_client_t *self, const char *dataset);

/* Waits up to `timeout_ms` (-1 = forever) for the next request to answer.
   SB_OK with *incoming_p set; SB_ETIMEOUT when none came. */
SB_EXPORT int sb_incoming_recv(sb_client_t *self, sb_incoming_t **incoming_p,
                               int timeout_ms);

/* What the request says; strings live as long as the incoming request. */
SB_EXPORT const char *sb_incoming_consumer(const sb_incoming_t *self);
SB_EXPORT const char *sb_incoming_dataset(const sb_incoming_t *self);
SB_EXPORT const char *sb_incoming_purpose(const sb_incoming_t *self);
SB_EXPORT const char *sb_incoming_subject(const sb_incoming_t *self);
SB_EXPORT const char *sb_incoming_rule(const sb_incoming_t *self);
/* The fields the consumer may receive; the agent drops any others. */
SB_EXPORT size_t sb_incoming_field_count(const sb_incoming_t *self);
SB_EXPORT const char *sb_incoming_field(const sb_incoming_t *self, size_t index);

/* Answers with `*record_p` (taken, *record_p set to NULL) and frees the
   incoming request (*incoming_p set to NULL). SB_ETOOBIG when the reply
   is larger than 1 MiB: the consumer is answered too-big instead. */
SB_EXPORT int sb_incoming_reply(sb_client_t *self, sb_incoming_t **incoming_p,
                                sb_record_t **record_p);

/* Refuses with `code` (e.g. SB_ENOTFOUND when there is no such citizen) and
   `reason` (NULL for none: the consumer reads "refused by the provider";
   only its first 1024 bytes are sent, cut on a UTF-8 character boundary),
   and frees the incoming request. A `code` that is not negative refuses
   as SB_EINVAL, one below SB_ERROR_MIN as SB_EINTERNAL. */
SB_EXPORT int sb_incoming_refuse(sb_client_t *self, sb_incoming_t **incoming_p, int code,
                                 const char *reason);

/* Frees an incoming request without answering (the consumer times out). */
SB_EXPORT void sb_incoming_destroy(sb_incoming_t **self_p);

/* A provider's handler: fill `reply` from the request and return SB_OK, or
   return an error code (SB_ENOTFOUND, ...) to refuse. */
typedef int(sb_handler_fn)(const sb_incoming_t *request, sb_record_t *reply, void *arg);

/* Answers requests with `handler` until SIGINT or SIGTERM (returns SB_OK)
   or a failure of the connection to the agent (a reply too large for one
   request is answered too-big and the loop goes on). Other signals do not
   stop it, nor any blocking call of the library. A request whose deadline
   passed while it waited for the handler is skipped (the consumer has had
   its timeout). Call sb_client_serve first. */
SB_EXPORT int sb_client_run(sb_client_t *self, sb_handler_fn *handler, void *arg);

/* --------------------------------------------------------------- consent */

/* Size of a consent id with its terminating NUL (32 hex digits). */
#define SB_CONSENT_ID_SIZE 33

/* A citizen's consent: `subject` lets `consumer` obtain `dataset` for
   `purpose` until `until_ms` (Unix time in milliseconds). */
typedef struct {
    const char *subject;           /* national id, in clear: the agent turns it
                                      into a subject reference and the clear
                                      id never leaves it */
    const char *consumer;
    const char *dataset;
    const char *purpose;
    uint64_t until_ms;
    const char *evidence;          /* e.g. "signed form 2026-118 at the counter";
                                      never the national id. May be NULL. */
} sb_consent_t;

/* Records a consent given at this agency (the consumer itself, or an agency
   the policy lets record consent for it). The agent signs it; the broker
   checks and stores it. On SB_OK `id` holds the consent id. SB_EDENIED when
   this agency may not record it, or no rule lets the consumer obtain the
   dataset for the purpose with consent required; SB_EINVAL for a date in
   the past. */
SB_EXPORT int sb_consent_grant(sb_client_t *self, const sb_consent_t *consent,
                               char id[SB_CONSENT_ID_SIZE]);

/* Revokes consent `id` from the next request on, with `reason` (at most
   1024 bytes; NULL for none) on the record. SB_ENOTFOUND when no active
   consent has that id, SB_EDENIED when this agency is neither its
   recorder, nor its consumer, nor an agency the rule lets record it,
   SB_EINVAL for a longer reason. */
SB_EXPORT int sb_consent_revoke(sb_client_t *self, const char *id, const char *reason);

/* Revokes every active consent of `match->subject` whose consumer, dataset
   and purpose equal those of `match` that are not NULL. On SB_OK *count_p
   (when not NULL) holds how many were revoked. SB_EINVAL without a
   subject; SB_ENOTFOUND when no active consent matches that this agency
   may manage (never SB_EDENIED: it must not learn that the citizen
   consented to another agency). */
SB_EXPORT int sb_consent_revoke_matching(sb_client_t *self, const sb_consent_t *match,
                                         const char *reason, size_t *count_p);

/* A citizen's consents this agency may see, with their state and history,
   as a JSON array the caller frees with free():
   [{"id","consumer","dataset","purpose","recorded_by","granted","until",
     "evidence","state":"active|revoked|expired","history":[{"state","time",
     "by","reason"}]}] */
SB_EXPORT int sb_consent_list(sb_client_t *self, const char *subject, char **json_p);

/* ---------------------------------------------------------------- events */

/* Publishes an event about citizen `subject` on `topic` (e.g.
   "resident.address-changed"): every subscriber the policy names receives
   only the fields of `record` it may see. Returns SB_OK once the broker has
   durably queued the event for every subscriber; SB_EINVAL without a
   topic, a subject of 1-64 characters or a record, SB_EDENIED when this
   agency does not publish `topic`, SB_ENODATASET for an undeclared topic,
   SB_EFULL when a subscriber's queue is full. */
SB_EXPORT int sb_publish(sb_client_t *self, const char *topic, const char *subject,
                         const sb_record_t *record);

/* Subscribes this client to `topic`: events waiting at the agent, and every
   later one, arrive through sb_event_recv, in order. SB_EDENIED when the
   policy does not make this agency a subscriber. */
SB_EXPORT int sb_subscribe(sb_client_t *self, const char *topic);

/* An event received; acknowledge it with sb_event_ack once it is safely
   handled, or it comes again (at least once, never lost). */
typedef struct sb_event_t sb_event_t;

/* Waits up to `timeout_ms` (-1 = forever) for the next event. SB_OK with
   *event_p set; SB_ETIMEOUT when none came. */
SB_EXPORT int sb_event_recv(sb_client_t *self, sb_event_t **event_p, int timeout_ms);

/* What the event says; strings and the record live as long as the event. */
SB_EXPORT const char *sb_event_topic(const sb_event_t *self);
SB_EXPORT const char *sb_event_publisher(const sb_event_t *self);
SB_EXPORT const char *sb_event_subject(const sb_event_t *self);
SB_EXPORT const char *sb_event_id(const sb_event_t *self);   /* 32 hex digits */
SB_EXPORT uint64_t sb_event_time(const sb_event_t *self);    /* Unix ms, when published */
SB_EXPORT const sb_record_t *sb_event_record(const sb_event_t *self);

/* Acknowledges the event by its id (the agent records it and never hands
   it to a back-end again, also when the agent restarted since it handed
   it out) and frees it; *event_p becomes NULL. */
SB_EXPORT int sb_event_ack(sb_client_t *self, sb_event_t **event_p);

/* Frees an event without acknowledging it: the agent keeps it and hands it
   again to the next client that subscribes to its topic (or to this one
   after the agent restarts). */
SB_EXPORT void sb_event_destroy(sb_event_t **self_p);

#ifdef __cplusplus
}
#endif

#endif
