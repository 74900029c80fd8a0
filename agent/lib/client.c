/*  client.c - libsharebus: a back-end's connection to its agent.

    One DEALER socket, one frame per ClientMessage. Answers arrive in any
    order, so whatever a call is not waiting for is queued for the call that
    will want it: results, and requests to serve. */
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consent.h"
#include "record.h"

#define S_DEFAULT_TIMEOUT_MS 5000
#define S_TIMEOUT_MAX_MS 60000     /* the broker waits no longer */
#define S_GRACE_MS 2000     /* the agent answers timeouts itself; this is a backstop */
#define S_REFRESH_MS 2000   /* registrations are said again this often */
#define S_ABANDONED_MS 120000   /* a given-up call's late answer is dropped this long */

struct sb_client_t {
    zsock_t *socket;
    uint64_t next_id;
    char reason[512];
    zlistx_t *results;      /* Sharebus__ClientMessage * with a result */
    zlistx_t *incoming;     /* Sharebus__ClientMessage * with an incoming request */
    zlistx_t *events;       /* Sharebus__ClientMessage * with an event */
    zlistx_t *serving;      /* datasets served (char *) */
    zlistx_t *topics;       /* topics subscribed (char *) */
    zhashx_t *abandoned;    /* decimal ids of calls that gave up -> when to forget them */
    int64_t next_refresh;
};

struct sb_incoming_t {
    Sharebus__ClientMessage *message;
};

static void s_message_free(void **item_p)
{
    if (*item_p) {
        sharebus__client_message__free_unpacked(*item_p, NULL);
        *item_p = NULL;
    }
}

/* libsodium and CZMQ are set up once per process. CZMQ would do it on the
   first socket, but not safely when threads create their first clients
   at the same time (zsys_init asserts that no socket is open yet). */
static void s_init_once(void)
{
    sbi_init();
    zsys_init();
}

sb_client_t *sb_client_new(const char *endpoint)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, s_init_once);
    if (!endpoint || (strncmp(endpoint, "ipc://", 6) != 0 && strncmp(endpoint, "tcp://", 6) != 0))
        return NULL;
    sb_client_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->socket = zsock_new(ZMQ_DEALER);
    if (self->socket) {
        zsock_set_linger(self->socket, 1000);
        zsock_set_rcvhwm(self->socket, 100000);
        zsock_set_sndhwm(self->socket, 100000);
        zsock_set_maxmsgsize(self->socket, SBI_FRAME_MAX);
    }
    if (!self->socket || zsock_connect(self->socket, "%s", endpoint) != 0) {
        zsock_destroy(&self->socket);
        free(self);
        return NULL;
    }
    self->results = zlistx_new();
    self->incoming = zlistx_new();
    self->next_refresh = zclock_mono() + S_REFRESH_MS;
    zlistx_set_destructor(self->results, s_message_free);
    zlistx_set_destructor(self->incoming, s_message_free);
    self->events = zlistx_new();
    zlistx_set_destructor(self->events, s_message_free);
    self->serving = zlistx_new();
    zlistx_set_destructor(self->serving, (zlistx_destructor_fn *) zstr_free);
    zlistx_set_comparator(self->serving, (zlistx_comparator_fn *) strcmp);
    self->topics = zlistx_new();
    zlistx_set_destructor(self->topics, (zlistx_destructor_fn *) zstr_free);
    zlistx_set_comparator(self->topics, (zlistx_comparator_fn *) strcmp);
    self->abandoned = zhashx_new();
    return self;
}

void sb_client_destroy(sb_client_t **self_p)
{
    sb_client_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    zlistx_destroy(&self->results);
    zlistx_destroy(&self->incoming);
    zlistx_destroy(&self->events);
    zlistx_destroy(&self->serving);
    zlistx_destroy(&self->topics);
    zhashx_destroy(&self->abandoned);
    zsock_destroy(&self->socket);
    free(self);
    *self_p = NULL;
}

const char *sb_client_reason(const sb_client_t *self)
{
    return self->reason;
}

void *sb_client_socket(sb_client_t *self)
{
    return self->socket;
}

static int s_fail(sb_client_t *self, int code, const char *reason)
{
    snprintf(self->reason, sizeof self->reason, "%s: %s", sb_errname(code),
             reason && *reason ? reason : sb_strerror(code));
    return code;
}

static int s_send(sb_client_t *self, Sharebus__ClientMessage *message)
{
    size_t size = sharebus__client_message__get_packed_size(message);
    if (size > SBI_FRAME_MAX)
        return s_fail(self, SB_ETOOBIG, "message larger than 1 MiB");
    zframe_t *frame = zframe_new(NULL, size);
    sharebus__client_message__pack(message, zframe_data(frame));
    if (zframe_send(&frame, self->socket, 0) != 0) {
        zframe_destroy(&frame);
        return s_fail(self, SB_EUNAVAILABLE, "cannot send to the agent");
    }
    return SB_OK;
}

/* A blocking call gave up on message `id`: its answer, should the agent
   send one after all, is dropped rather than queued for nobody. */
static void s_abandon(sb_client_t *self, uint64_t id)
{
    char key[24];
    snprintf(key, sizeof key, "%llu", (unsigned long long) id);
    zhashx_update(self->abandoned, key, (void *) (intptr_t) (zclock_mono() + S_ABANDONED_MS));
}

/* Whether `message` answers a call that gave up (and forgets that call). */
static bool s_abandoned(sb_client_t *self, const Sharebus__ClientMessage *message)
{
    if (message->body_case != SHAREBUS__CLIENT_MESSAGE__BODY_RESULT || !message->id
        || zhashx_size(self->abandoned) == 0)
        return false;
    char key[24];
    snprintf(key, sizeof key, "%llu", (unsigned long long) message->id);
    if (!zhashx_lookup(self->abandoned, key))
        return false;
    zhashx_delete(self->abandoned, key);
    return true;
}

/* Says this client's registrations again (id 0: the agent does not
   answer), so that an agent that restarted knows them without the back-end
   doing anything; forgets the given-up calls no answer came for. */
static void s_refresh(sb_client_t *self)
{
    if (zclock_mono() < self->next_refresh)
        return;
    self->next_refresh = zclock_mono() + S_REFRESH_MS;
    if (zhashx_size(self->abandoned)) {
        zlistx_t *ids = zhashx_keys(self->abandoned);
        for (char *id = zlistx_first(ids); id; id = zlistx_next(ids))
            if ((intptr_t) zhashx_lookup(self->abandoned, id) <= zclock_mono())
                zhashx_delete(self->abandoned, id);
        zlistx_destroy(&ids);
    }
    for (char *dataset = zlistx_first(self->serving); dataset; dataset = zlistx_next(self->serving)) {
        Sharebus__ClientServe body = SHAREBUS__CLIENT_SERVE__INIT;
        body.dataset = dataset;
        Sharebus__ClientMessage message = SHAREBUS__CLIENT_MESSAGE__INIT;
        message.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_SERVE;
        message.serve = &body;
        s_send(self, &message);
    }
    for (char *topic = zlistx_first(self->topics); topic; topic = zlistx_next(self->topics)) {
        Sharebus__ClientSubscribe body = SHAREBUS__CLIENT_SUBSCRIBE__INIT;
        body.topic = topic;
        Sharebus__ClientMessage message = SHAREBUS__CLIENT_MESSAGE__INIT;
        message.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_SUBSCRIBE;
        message.subscribe = &body;
        s_send(self, &message);
    }
}

Sharebus__ClientMessage *sbi_client_message_decode(const uint8_t *data, size_t size)
{
    if (size > SBI_FRAME_MAX)
        return NULL;
    sbi_unpack_t budget;
    return sharebus__client_message__unpack(sbi_unpack_init(&budget, size), size, data);
}

/* Reads one message from the agent into the right queue. SB_ETIMEOUT when
   nothing came within `timeout_ms` (or a signal came first); SB_EINTERNAL
   when interrupted (SIGINT or SIGTERM, zsys_interrupted). */
static int s_pump(sb_client_t *self, int timeout_ms)
{
    s_refresh(self);
    if (timeout_ms < 0 || timeout_ms > S_REFRESH_MS)
        timeout_ms = S_REFRESH_MS;  /* wake up to refresh; the caller loops */
    zmq_pollitem_t item = {zsock_resolve(self->socket), 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&item, 1, timeout_ms);
    if (rc < 0)     /* a signal the program handles wakes us early: wait on */
        return errno == EINTR && !zsys_interrupted ? SB_ETIMEOUT : SB_EINTERNAL;
    if (rc == 0)
        return SB_ETIMEOUT;
    zframe_t *frame = zframe_recv(self->socket);
    if (!frame)
        return SB_EINTERNAL;
    Sharebus__ClientMessage *message
        = sbi_client_message_decode(zframe_data(frame), zframe_size(frame));
    zframe_destroy(&frame);
    if (!message)
        return SB_OK;   /* not from a sharebus agent: ignore */
    if (s_abandoned(self, message)) {
        sharebus__client_message__free_unpacked(message, NULL);
        return SB_OK;
    }
    if (message->body_case == SHAREBUS__CLIENT_MESSAGE__BODY_RESULT && message->id == 0)
        /* The agent's answer to a message it could not read: no call of
           ours has ticket 0, and sb_result_recv must not hand it out. */
        sharebus__client_message__free_unpacked(message, NULL);
    else if (message->body_case == SHAREBUS__CLIENT_MESSAGE__BODY_RESULT)
        zlistx_add_end(self->results, message);
    else if (message->body_case == SHAREBUS__CLIENT_MESSAGE__BODY_INCOMING)
        zlistx_add_end(self->incoming, message);
    else if (message->body_case == SHAREBUS__CLIENT_MESSAGE__BODY_EVENT)
        zlistx_add_end(self->events, message);
    else
        sharebus__client_message__free_unpacked(message, NULL);
    return SB_OK;
}

/* Milliseconds left until `deadline` (a zclock_mono time), at least 0. */
static int s_left(int64_t deadline)
{
    int64_t left = deadline - zclock_mono();
    return left > 0 ? (int) left : 0;
}

/* Takes the first queued message of `queue` with id `id` (0 = any). */
static Sharebus__ClientMessage *s_take(zlistx_t *queue, uint64_t id)
{
    for (Sharebus__ClientMessage *m = zlistx_first(queue); m; m = zlistx_next(queue))
        if (id == 0 || m->id == id) {
            zlistx_detach_cur(queue);
            return m;
        }
    return NULL;
}

/* Whether SIGINT or SIGTERM came (CZMQ's handler sets zsys_interrupted):
   then every blocking call ends at once with SB_EINTERNAL, and sends
   nothing, so that nothing is done after the program was told to stop. */
static bool s_interrupted(sb_client_t *self)
{
    if (!zsys_interrupted)
        return false;
    s_fail(self, SB_EINTERNAL, "interrupted");
    return true;
}

/* Waits until a message is queued in `queue` with `id` (0 = any). After
   SIGINT or SIGTERM it still hands out what has come, or comes within a
   finite timeout (a program collecting the answers to what it sent before
   it stops), then ends "interrupted"; without a timeout it only looks. */
static int s_wait(sb_client_t *self, zlistx_t *queue, uint64_t id, int timeout_ms,
                  Sharebus__ClientMessage **message_p)
{
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : zclock_mono() + timeout_ms;
    bool last = false;
    while (!(*message_p = s_take(queue, id))) {
        if (last)
            return s_fail(self, SB_EINTERNAL, "interrupted");
        int wait = timeout_ms < 0 ? (zsys_interrupted ? 0 : 1000) : s_left(deadline);
        int rc = s_pump(self, wait);
        if (rc == SB_EINTERNAL && !zsys_interrupted)
            return s_fail(self, SB_EINTERNAL, "cannot read from the agent's socket");
        if (zsys_interrupted)
            last = timeout_ms < 0 || s_left(deadline) == 0;    /* one more look */
        else if (rc == SB_ETIMEOUT && timeout_ms >= 0 && s_left(deadline) == 0)
            return SB_ETIMEOUT;
    }
    return SB_OK;
}

/* The code of a result, setting the reason. */
static int s_result_code(sb_client_t *self, const Sharebus__ClientResult *result)
{
    if (result->error == SHAREBUS__ERROR_KIND__ERR_NONE) {
        self->reason[0] = 0;
        return SB_OK;
    }
    return s_fail(self, sbi_error_code(result->error), result->reason);
}

static bool s_request_valid(const sb_request_t *r)
{
    if (!r || !sbi_agency_valid(r->provider, false) || !sbi_name_valid(r->dataset)
        || !sbi_name_valid(r->purpose)
        || (r->subject && (!*r->subject || strlen(r->subject) > SBI_SUBJECT_MAX))
        || r->n_fields > SBI_FIELDS_MAX || r->timeout_ms < 0 || r->timeout_ms > S_TIMEOUT_MAX_MS
        || (r->n_fields && !r->fields))
        return false;
    for (size_t i = 0; i < r->n_fields; i++)
        if (!sbi_name_valid(r->fields[i]))
            return false;
    return true;
}

int sb_request_send(sb_client_t *self, const sb_request_t *request, uint64_t *ticket_p)
{
    if (!s_request_valid(request))
        return s_fail(self, SB_EINVAL, "provider, dataset and purpose are required, and "
                                       "everything must be well-formed");
    Sharebus__ClientRequest body = SHAREBUS__CLIENT_REQUEST__INIT;
    body.provider = (char *) request->provider;
    body.dataset = (char *) request->dataset;
    body.purpose = (char *) request->purpose;
    body.subject_id = (char *) (request->subject ? request->subject : "");
    body.fields = (char **) request->fields;
    body.n_fields = request->n_fields;
    body.timeout_ms = (uint32_t) (request->timeout_ms ? request->timeout_ms : S_DEFAULT_TIMEOUT_MS);
    Sharebus__ClientMessage message = SHAREBUS__CLIENT_MESSAGE__INIT;
    message.id = ++self->next_id;
    message.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_REQUEST;
    message.request = &body;
    message.expires_ms = sbi_now_ms() + body.timeout_ms;
    int rc = s_send(self, &message);
    if (rc == SB_OK && ticket_p)
        *ticket_p = message.id;
    return rc;
}

/* Fills `result` from a result message (taken). */
static void s_result(sb_client_t *self, Sharebus__ClientMessage *message, sb_result_t *result)
{
    result->ticket = message->id;
    result->code = s_result_code(self, message->result);
    result->record = NULL;
    if (result->code == SB_OK) {
        const Sharebus__Record *pb = message->result->record;
        static const Sharebus__Record empty = SHAREBUS__RECORD__INIT;
        result->record = sbi_record_from_pb(pb ? pb : &empty);
        if (!result->record)
            result->code = s_fail(self, SB_EMALFORMED, "the agent returned a malformed record");
    }
    sharebus__client_message__free_unpacked(message, NULL);
}

int sb_result_recv(sb_client_t *self, sb_result_t *result, int timeout_ms)
{
    Sharebus__ClientMessage *message = NULL;
    int rc = s_wait(self, self->results, 0, timeout_ms, &message);
    if (rc == SB_OK)
        s_result(self, message, result);
    return rc;
}

int sb_request(sb_client_t *self, const sb_request_t *request, sb_record_t **record_p)
{
    *record_p = NULL;
    if (s_interrupted(self))
        return SB_EINTERNAL;
    uint64_t ticket;
    int rc = sb_request_send(self, request, &ticket);
    if (rc != SB_OK)
        return rc;
    int timeout = request->timeout_ms ? request->timeout_ms : S_DEFAULT_TIMEOUT_MS;
    Sharebus__ClientMessage *message = NULL;
    rc = s_wait(self, self->results, ticket, timeout + S_GRACE_MS, &message);
    if (rc != SB_OK)
        s_abandon(self, ticket);
    if (rc == SB_ETIMEOUT)
        return s_fail(self, SB_ETIMEOUT, "no answer from the agent");
    if (rc != SB_OK)
        return rc;
    sb_result_t result;
    s_result(self, message, &result);
    *record_p = result.record;
    return result.code;
}

int sb_client_serve(sb_client_t *self, const char *dataset)
{
    if (!sbi_name_valid(dataset))
        return s_fail(self, SB_EINVAL, "invalid dataset name");
    if (s_interrupted(self))
        return SB_EINTERNAL;
    Sharebus__ClientServe body = SHAREBUS__CLIENT_SERVE__INIT;
    body.dataset = (char *) dataset;
    Sharebus__ClientMessage message = SHAREBUS__CLIENT_MESSAGE__INIT;
    message.id = ++self->next_id;
    message.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_SERVE;
    message.serve = &body;
    int rc = s_send(self, &message);
    Sharebus__ClientMessage *answer = NULL;
    if (rc == SB_OK)
        rc = s_wait(self, self->results, message.id, S_DEFAULT_TIMEOUT_MS, &answer);
    if (rc == SB_ETIMEOUT || rc == SB_EINTERNAL)
        s_abandon(self, message.id);
    if (rc == SB_ETIMEOUT)
        return s_fail(self, SB_EUNAVAILABLE, "the agent did not answer");
    if (rc != SB_OK)
        return rc;
    rc = s_result_code(self, answer->result);
    sharebus__client_message__free_unpacked(answer, NULL);
    if (rc == SB_OK && !zlistx_find(self->serving, (void *) dataset))
        zlistx_add_end(self->serving, strdup(dataset));
    return rc;
}

int sb_incoming_recv(sb_client_t *self, sb_incoming_t **incoming_p, int timeout_ms)
{
    *incoming_p = NULL;
    Sharebus__ClientMessage *message = NULL;
    int rc = s_wait(self, self->incoming, 0, timeout_ms, &message);
    if (rc != SB_OK)
        return rc;
    sb_incoming_t *incoming = malloc(sizeof *incoming);
    if (!incoming) {
        sharebus__client_message__free_unpacked(message, NULL);
        return SB_ENOMEM;
    }
    incoming->message = message;
    *incoming_p = incoming;
    return SB_OK;
}

const char *sb_incoming_consumer(const sb_incoming_t *self)
{
    return self->message->incoming->consumer;
}

const char *sb_incoming_dataset(const sb_incoming_t *self)
{
    return self->message->incoming->dataset;
}

const char *sb_incoming_purpose(const sb_incoming_t *self)
{
    return self->message->incoming->purpose;
}

const char *sb_incoming_subject(const sb_incoming_t *self)
{
    return self->message->incoming->subject_id;
}

const char *sb_incoming_rule(const sb_incoming_t *self)
{
    return self->message->incoming->rule_id;
}

size_t sb_incoming_field_count(const sb_incoming_t *self)
{
    return self->message->incoming->n_fields;
}

const char *sb_incoming_field(const sb_incoming_t *self, size_t index)
{
    const Sharebus__ClientIncoming *in = self->message->incoming;
    return index < in->n_fields ? in->fields[index] : NULL;
}

void sb_incoming_destroy(sb_incoming_t **self_p)
{
    sb_incoming_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    sharebus__client_message__free_unpacked(self->message, NULL);
    free(self);
    *self_p = NULL;
}

static int s_answer(sb_client_t *self, sb_incoming_t **incoming_p, int code,
                    const char *reason, const sb_record_t *record)
{
    Sharebus__ClientAnswer body = SHAREBUS__CLIENT_ANSWER__INIT;
    body.token = (*incoming_p)->message->incoming->token;
    body.error = code == SB_OK ? SHAREBUS__ERROR_KIND__ERR_NONE : sbi_error_kind(code);
    body.reason = (char *) (reason ? reason : "");
    body.record = record ? sbi_record_pb(record) : NULL;
    Sharebus__ClientMessage message = SHAREBUS__CLIENT_MESSAGE__INIT;
    message.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_ANSWER;
    message.answer = &body;
    int rc = record && !body.record ? SB_ENOMEM : s_send(self, &message);
    sbi_record_pb_free(&body.record);
    if (rc == SB_ETOOBIG) {
        /* The consumer is told why, rather than waiting for its timeout. */
        body.error = sbi_error_kind(SB_ETOOBIG);
        body.reason = "the provider's reply is larger than 1 MiB";
        s_send(self, &message);
        s_fail(self, SB_ETOOBIG, "the reply is larger than 1 MiB: the consumer was told");
    }
    sb_incoming_destroy(incoming_p);
    return rc;
}

int sb_incoming_reply(sb_client_t *self, sb_incoming_t **incoming_p, sb_record_t **record_p)
{
    int rc = s_answer(self, incoming_p, SB_OK, NULL, *record_p);
    sb_record_destroy(record_p);
    return rc;
}

int sb_incoming_refuse(sb_client_t *self, sb_incoming_t **incoming_p, int code,
                       const char *reason)
{
    if (code >= 0)
        code = SB_EINVAL;
    /* The agent passes on the first SBI_REASON_MAX bytes: only those are
       sent, cut on a character boundary, so that a long reason (up to the
       1 MiB of a frame and past it) still refuses with `code`. */
    char cut[SBI_REASON_MAX + 1];
    size_t n = reason ? strlen(reason) : 0;
    if (n > SBI_REASON_MAX) {
        n = SBI_REASON_MAX;
        while (n > 0 && ((unsigned char) reason[n] & 0xc0) == 0x80)
            n--;
        memcpy(cut, reason, n);
        cut[n] = '\0';
        reason = cut;
    }
    return s_answer(self, incoming_p, code, reason, NULL);
}

int sb_client_run(sb_client_t *self, sb_handler_fn *handler, void *arg)
{
    while (!zsys_interrupted) {
        sb_incoming_t *incoming = NULL;
        int rc = sb_incoming_recv(self, &incoming, 500);
        if (rc == SB_ETIMEOUT)
            continue;
        if (rc != SB_OK)
            return zsys_interrupted ? SB_OK : rc;
        /* Its deadline passed while it waited for us (the handler was busy
           with the ones before): the broker has answered the consumer
           timeout, and an answer now would be dropped. Skipping it lets a
           back-end that fell behind catch up instead of staying late. */
        uint64_t expires = incoming->message->incoming->expires_ms;
        if (expires && expires <= sbi_now_ms()) {
            sb_incoming_destroy(&incoming);
            continue;
        }
        sb_record_t *reply = sb_record_new();
        rc = reply ? handler(incoming, reply, arg) : SB_ENOMEM;
        if (rc == SB_OK)
            rc = sb_incoming_reply(self, &incoming, &reply);
        else
            rc = sb_incoming_refuse(self, &incoming, rc, NULL);
        sb_record_destroy(&reply);
        if (rc != SB_OK && rc != SB_ETOOBIG)    /* too big: that consumer was told */
            return rc;
    }
    return SB_OK;
}

/* ---------------------------------------------------------------- consent */

/* Sends `message` and waits for its result (consent operations are quick:
   one round trip to the broker and one fsync). */
static int s_call(sb_client_t *self, Sharebus__ClientMessage *message,
                  Sharebus__ClientMessage **answer_p)
{
    if (s_interrupted(self))
        return SB_EINTERNAL;
    message->id = ++self->next_id;
    message->expires_ms = sbi_now_ms() + S_DEFAULT_TIMEOUT_MS;
    int rc = s_send(self, message);
    if (rc == SB_OK)
        rc = s_wait(self, self->results, message->id, S_DEFAULT_TIMEOUT_MS + S_GRACE_MS, answer_p);
    if (rc == SB_ETIMEOUT || rc == SB_EINTERNAL)
        s_abandon(self, message->id);
    if (rc == SB_ETIMEOUT)
        return s_fail(self, SB_ETIMEOUT, "no answer from the agent");
    if (rc != SB_OK)
        return rc;
    rc = s_result_code(self, (*answer_p)->result);
    if (rc != SB_OK) {
        sharebus__client_message__free_unpacked(*answer_p, NULL);
        *answer_p = NULL;
    }
    return rc;
}

static bool s_optional(const char *name)
{
    return !name || sbi_name_valid(name);
}

int sb_consent_grant(sb_client_t *self, const sb_consent_t *consent, char id[SB_CONSENT_ID_SIZE])
{
    if (!consent || !consent->subject || !*consent->subject
        || !sbi_agency_valid(consent->consumer, false) || !sbi_name_valid(consent->dataset)
        || !sbi_name_valid(consent->purpose) || !consent->until_ms)
        return s_fail(self, SB_EINVAL, "subject, consumer, dataset, purpose and until are required");
    Sharebus__ClientConsentGrant body = SHAREBUS__CLIENT_CONSENT_GRANT__INIT;
    body.subject_id = (char *) consent->subject;
    body.consumer = (char *) consent->consumer;
    body.dataset = (char *) consent->dataset;
    body.purpose = (char *) consent->purpose;
    body.until_ms = consent->until_ms;
    body.evidence = (char *) (consent->evidence ? consent->evidence : "");
    Sharebus__ClientMessage message = SHAREBUS__CLIENT_MESSAGE__INIT;
    message.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_CONSENT_GRANT;
    message.consent_grant = &body;
    Sharebus__ClientMessage *answer = NULL;
    int rc = s_call(self, &message, &answer);
    if (rc == SB_OK) {
        snprintf(id, SB_CONSENT_ID_SIZE, "%s", answer->result->consent_id);
        sharebus__client_message__free_unpacked(answer, NULL);
    }
    return rc;
}

static int s_revoke(sb_client_t *self, Sharebus__ClientConsentRevoke *body, size_t *count_p)
{
    if (strlen(body->reason) > SBI_REASON_MAX)
        return s_fail(self, SB_EINVAL, "a revocation's reason is at most 1024 bytes");
    Sharebus__ClientMessage message = SHAREBUS__CLIENT_MESSAGE__INIT;
    message.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_CONSENT_REVOKE;
    message.consent_revoke = body;
    Sharebus__ClientMessage *answer = NULL;
    int rc = s_call(self, &message, &answer);
    if (rc == SB_OK) {
        if (count_p)
            *count_p = answer->result->consents ? answer->result->consents->n_ids : 0;
        sharebus__client_message__free_unpacked(answer, NULL);
    }
    return rc;
}

int sb_consent_revoke(sb_client_t *self, const char *id, const char *reason)
{
    if (!id || strlen(id) != SB_CONSENT_ID_SIZE - 1
        || strspn(id, "0123456789abcdef") != SB_CONSENT_ID_SIZE - 1)
        return s_fail(self, SB_EINVAL, "a consent id is 32 lower-case hexadecimal digits");
    Sharebus__ClientConsentRevoke body = SHAREBUS__CLIENT_CONSENT_REVOKE__INIT;
    body.id = (char *) id;
    body.reason = (char *) (reason ? reason : "");
    return s_revoke(self, &body, NULL);
}

int sb_consent_revoke_matching(sb_client_t *self, const sb_consent_t *match, const char *reason,
                               size_t *count_p)
{
    if (!match || !match->subject || !*match->subject
        || (match->consumer && !sbi_agency_valid(match->consumer, false))
        || !s_optional(match->dataset) || !s_optional(match->purpose))
        return s_fail(self, SB_EINVAL, "a subject is required");
    Sharebus__ClientConsentRevoke body = SHAREBUS__CLIENT_CONSENT_REVOKE__INIT;
    body.subject_id = (char *) match->subject;
    body.consumer = (char *) (match->consumer ? match->consumer : "");
    body.dataset = (char *) (match->dataset ? match->dataset : "");
    body.purpose = (char *) (match->purpose ? match->purpose : "");
    body.reason = (char *) (reason ? reason : "");
    return s_revoke(self, &body, count_p);
}

static const char *s_state_name(Sharebus__ConsentState state)
{
    switch (state) {
    case SHAREBUS__CONSENT_STATE__CONSENT_ACTIVE: return "active";
    case SHAREBUS__CONSENT_STATE__CONSENT_REVOKED: return "revoked";
    case SHAREBUS__CONSENT_STATE__CONSENT_EXPIRED: return "expired";
    default: return "unknown";
    }
}

static json_object *s_time_json(uint64_t ms)
{
    char when[32];
    return json_object_new_string(sbi_time_format(ms, when, sizeof when));
}

static json_object *s_consent_json(const Sharebus__ConsentEntry *entry)
{
    if (!entry->signed_)
        return NULL;
    sbi_unpack_t budget;
    const ProtobufCBinaryData *bytes = &entry->signed_->consent;
    Sharebus__Consent *c = sharebus__consent__unpack(sbi_unpack_init(&budget, bytes->len),
                                                     bytes->len, bytes->data);
    if (!c)
        return NULL;
    json_object *obj = json_object_new_object();
    json_object_object_add(obj, "id", json_object_new_string(c->id));
    json_object_object_add(obj, "consumer", json_object_new_string(c->consumer));
    json_object_object_add(obj, "dataset", json_object_new_string(c->dataset));
    json_object_object_add(obj, "purpose", json_object_new_string(c->purpose));
    json_object_object_add(obj, "recorded_by", json_object_new_string(c->recorded_by));
    json_object_object_add(obj, "granted", s_time_json(c->granted_ms));
    json_object_object_add(obj, "until", s_time_json(c->until_ms));
    json_object_object_add(obj, "evidence", json_object_new_string(c->evidence));
    json_object_object_add(obj, "state", json_object_new_string(s_state_name(entry->state)));
    json_object *history = json_object_new_array();
    for (size_t i = 0; i < entry->n_history; i++) {
        const Sharebus__ConsentEvent *e = entry->history[i];
        json_object *event = json_object_new_object();
        json_object_object_add(event, "state", json_object_new_string(s_state_name(e->state)));
        json_object_object_add(event, "time", s_time_json(e->time_ms));
        json_object_object_add(event, "by", json_object_new_string(e->by));
        json_object_object_add(event, "reason", json_object_new_string(e->reason));
        json_object_array_add(history, event);
    }
    json_object_object_add(obj, "history", history);
    sharebus__consent__free_unpacked(c, NULL);
    return obj;
}

int sb_consent_list(sb_client_t *self, const char *subject, char **json_p)
{
    *json_p = NULL;
    if (!subject || !*subject)
        return s_fail(self, SB_EINVAL, "a subject is required");
    Sharebus__ClientConsentList body = SHAREBUS__CLIENT_CONSENT_LIST__INIT;
    body.subject_id = (char *) subject;
    Sharebus__ClientMessage message = SHAREBUS__CLIENT_MESSAGE__INIT;
    message.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_CONSENT_LIST;
    message.consent_list = &body;
    Sharebus__ClientMessage *answer = NULL;
    int rc = s_call(self, &message, &answer);
    if (rc != SB_OK)
        return rc;
    json_object *array = json_object_new_array();
    const Sharebus__ConsentList *list = answer->result->consents;
    for (size_t i = 0; list && i < list->n_entries; i++) {
        json_object *item = s_consent_json(list->entries[i]);
        if (item)
            json_object_array_add(array, item);
    }
    *json_p = strdup(json_object_to_json_string_ext(array, JSON_C_TO_STRING_PLAIN));
    json_object_put(array);
    sharebus__client_message__free_unpacked(answer, NULL);
    return *json_p ? SB_OK : SB_ENOMEM;
}

/* ----------------------------------------------------------------- events */

struct sb_event_t {
    Sharebus__ClientMessage *message;
    sb_record_t *record;
    char id[2 * SBI_ID_SIZE + 1];
};

int sb_publish(sb_client_t *self, const char *topic, const char *subject,
               const sb_record_t *record)
{
    if (!sbi_name_valid(topic) || !subject || !*subject || strlen(subject) > SBI_SUBJECT_MAX
        || !record)
        return s_fail(self, SB_EINVAL, "a topic, a subject of 1-64 characters and a record are "
                                       "required");
    Sharebus__ClientPublish body = SHAREBUS__CLIENT_PUBLISH__INIT;
    body.topic = (char *) topic;
    body.subject_id = (char *) subject;
    body.record = sbi_record_pb(record);
    if (!body.record)
        return s_fail(self, SB_ENOMEM, NULL);
    Sharebus__ClientMessage message = SHAREBUS__CLIENT_MESSAGE__INIT;
    message.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_PUBLISH;
    message.publish = &body;
    Sharebus__ClientMessage *answer = NULL;
    int rc = s_call(self, &message, &answer);
    sbi_record_pb_free(&body.record);
    if (answer)
        sharebus__client_message__free_unpacked(answer, NULL);
    return rc;
}

int sb_subscribe(sb_client_t *self, const char *topic)
{
    if (!sbi_name_valid(topic))
        return s_fail(self, SB_EINVAL, "invalid topic name");
    Sharebus__ClientSubscribe body = SHAREBUS__CLIENT_SUBSCRIBE__INIT;
    body.topic = (char *) topic;
    Sharebus__ClientMessage message = SHAREBUS__CLIENT_MESSAGE__INIT;
    message.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_SUBSCRIBE;
    message.subscribe = &body;
    Sharebus__ClientMessage *answer = NULL;
    int rc = s_call(self, &message, &answer);
    if (answer)
        sharebus__client_message__free_unpacked(answer, NULL);
    if (rc == SB_OK && !zlistx_find(self->topics, (void *) topic))
        zlistx_add_end(self->topics, strdup(topic));
    return rc;
}

int sb_event_recv(sb_client_t *self, sb_event_t **event_p, int timeout_ms)
{
    *event_p = NULL;
    Sharebus__ClientMessage *message = NULL;
    int rc = s_wait(self, self->events, 0, timeout_ms, &message);
    if (rc != SB_OK)
        return rc;
    static const Sharebus__Record empty = SHAREBUS__RECORD__INIT;
    const Sharebus__ClientEvent *ev = message->event;
    sb_event_t *event = calloc(1, sizeof *event);
    if (event)
        event->record = sbi_record_from_pb(ev->record ? ev->record : &empty);
    if (!event || !event->record || ev->message_id.len != SBI_ID_SIZE) {
        if (event)
            sb_record_destroy(&event->record);
        free(event);
        sharebus__client_message__free_unpacked(message, NULL);
        return s_fail(self, SB_EMALFORMED, "the agent sent a malformed event");
    }
    event->message = message;
    sbi_hex(ev->message_id.data, SBI_ID_SIZE, event->id);
    *event_p = event;
    return SB_OK;
}

const char *sb_event_topic(const sb_event_t *self)
{
    return self->message->event->topic;
}

const char *sb_event_publisher(const sb_event_t *self)
{
    return self->message->event->publisher;
}

const char *sb_event_subject(const sb_event_t *self)
{
    return self->message->event->subject_id;
}

const char *sb_event_id(const sb_event_t *self)
{
    return self->id;
}

uint64_t sb_event_time(const sb_event_t *self)
{
    return self->message->event->published_ms;
}

const sb_record_t *sb_event_record(const sb_event_t *self)
{
    return self->record;
}

void sb_event_destroy(sb_event_t **self_p)
{
    sb_event_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    sb_record_destroy(&self->record);
    sharebus__client_message__free_unpacked(self->message, NULL);
    free(self);
    *self_p = NULL;
}

int sb_event_ack(sb_client_t *self, sb_event_t **event_p)
{
    Sharebus__ClientAck body = SHAREBUS__CLIENT_ACK__INIT;
    body.token = (*event_p)->message->event->token;
    body.message_id = (*event_p)->message->event->message_id;
    Sharebus__ClientMessage message = SHAREBUS__CLIENT_MESSAGE__INIT;
    message.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_ACK;
    message.ack = &body;
    int rc = s_send(self, &message);
    sb_event_destroy(event_p);
    return rc;
}
