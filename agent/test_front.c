/*  test_front.c - what the agent does with answers that do not fit what it
    waits for: a broker's consent result correlated to a request or to an
    event's view (not a consent operation) is dropped, and the request or
    the view keeps waiting for its own answer. And the back-ends' socket is
    never open to others, not even between its bind and its chmod. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "record.h"
#include "ca.h"
#include "testing.h"

typedef struct {
    char dir[64];
    agent_t *agent;
    zframe_t *client;
} s_fixture_t;

/* Starts the fixture's agent as `agency` (again, after agent_destroy: a
   restart on the same store). */
static void s_start(s_fixture_t *f, const char *agency)
{
    char certs[128], policy[128], data[128], listen[128];
    snprintf(certs, sizeof certs, "%s/certs", f->dir);
    snprintf(policy, sizeof policy, "%s/policy", f->dir);
    snprintf(data, sizeof data, "%s/agent", f->dir);
    snprintf(listen, sizeof listen, "ipc://%s/%s.sock", f->dir, agency);
    agent_config_t config = {.agency = agency, .certs = certs, .broker = "tcp://127.0.0.1:9",
                             .listen = listen, .data = data};
    f->agent = agent_new(&config);
    CHECK(f->agent != NULL);
    if (!f->agent)
        abort();
    zlistx_t *errors = zlistx_new();
    f->agent->policy = sbi_policy_load(policy, NULL, errors);
    CHECK(f->agent->policy != NULL);
    zlistx_destroy(&errors);
}

/* An agent of `agency` under the example events policy, its broker
   nowhere: what it sends waits in its socket. */
static void s_setup_as(s_fixture_t *f, const char *agency)
{
    strcpy(f->dir, "/tmp/sharebus-test-front.XXXXXX");
    if (!mkdtemp(f->dir))
        abort();
    char certs[128], policy[128], path[192], err[256];
    snprintf(certs, sizeof certs, "%s/certs", f->dir);
    snprintf(policy, sizeof policy, "%s/policy", f->dir);
    CHECK_EQ(sbi_ca_init(certs, err, sizeof err), SB_OK);
    CHECK_EQ(sbi_ca_issue(certs, SBI_CERT_BROKER, "broker", "broker", 30, false, NULL, err,
                          sizeof err), SB_OK);
    CHECK_EQ(sbi_ca_issue(certs, SBI_CERT_AGENCY, "mois", "mois", 30, false, NULL, err,
                          sizeof err), SB_OK);
    CHECK_EQ(sbi_ca_issue(certs, SBI_CERT_AGENCY, "nts", "nts", 30, false, NULL, err,
                          sizeof err), SB_OK);  /* the one subscriber with a certificate */
    CHECK_EQ(mkdir(policy, 0700), 0);
    char *text = NULL;
    size_t size = 0;
    snprintf(path, sizeof path, "%s/events.yaml", policy);
    CHECK_EQ(sbi_file_read(SB_SOURCE_ROOT "/policy/examples/events.yaml", SBI_FILE_MAX, &text,
                           &size), SB_OK);
    CHECK_EQ(sbi_file_write(path, text, size, 0600, false), SB_OK);
    free(text);
    s_start(f, agency);
    f->client = zframe_new("back-end", 8);
}

static void s_setup(s_fixture_t *f)
{
    s_setup_as(f, "mois");
}

static void s_teardown(s_fixture_t *f)
{
    zframe_destroy(&f->client);
    agent_destroy(&f->agent);
    char command[128];
    snprintf(command, sizeof command, "rm -rf %s", f->dir);
    if (system(command) != 0)
        fprintf(stderr, "cannot remove %s\n", f->dir);
}

static void s_from_client(s_fixture_t *f, Sharebus__ClientMessage *m)
{
    zframe_t *frame = zframe_new(NULL, sharebus__client_message__get_packed_size(m));
    sharebus__client_message__pack(m, zframe_data(frame));
    agent_front_message(f->agent, f->client, frame);
    zframe_destroy(&frame);
}

/* The broker's consent result for the one thing pending, as the agent's
   loop hands it on once verified. */
static void s_consent_result_to_pending(s_fixture_t *f)
{
    CHECK_EQ(zhashx_size(f->agent->pending), 1);
    if (!zhashx_first(f->agent->pending))
        return;
    const char *key = zhashx_cursor(f->agent->pending);
    uint8_t id[SBI_ID_SIZE];
    CHECK_EQ(sodium_hex2bin(id, sizeof id, key, strlen(key), NULL, NULL, NULL), 0);
    Sharebus__Header h = SHAREBUS__HEADER__INIT;
    h.kind = SHAREBUS__KIND__KIND_CONSENT_RESULT;
    h.from = "broker";
    h.to = "mois";
    h.correlation_id = (ProtobufCBinaryData){SBI_ID_SIZE, id};
    sbi_envelope_t env;
    memset(&env, 0, sizeof env);
    env.header = &h;
    Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
    agent_front_consent_result(f->agent, &env, &payload);
}

/* The back-end's call `id`: publish a change of address. */
static void s_publish_from_client(s_fixture_t *f, uint64_t id)
{
    Sharebus__Field field = SHAREBUS__FIELD__INIT;
    field.name = "new_address";
    field.value_case = SHAREBUS__FIELD__VALUE_TEXT;
    field.text = "1 Sejong-daero";
    Sharebus__Field *fields[] = {&field};
    Sharebus__Record record = SHAREBUS__RECORD__INIT;
    record.n_fields = 1;
    record.fields = fields;
    Sharebus__ClientPublish publish = SHAREBUS__CLIENT_PUBLISH__INIT;
    publish.topic = "resident.address-changed";
    publish.subject_id = "900101-1234567";
    publish.record = &record;
    Sharebus__ClientMessage m = SHAREBUS__CLIENT_MESSAGE__INIT;
    m.id = id;
    m.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_PUBLISH;
    m.publish = &publish;
    s_from_client(f, &m);
}

TEST(test_a_consent_result_does_not_answer_an_event)
{
    s_fixture_t f;
    s_setup(&f);
    s_publish_from_client(&f, 7);
    s_consent_result_to_pending(&f);    /* used to abort in s_pending_free */
    CHECK_EQ(zhashx_size(f.agent->pending), 1);
    s_teardown(&f);
}

/* A publication that fails for several subscribers is answered with the
   first failure (the views go out in the policy's order: nts, koroad,
   nhis; only nts has a certificate here). */
TEST(test_a_publication_is_answered_with_its_first_failure)
{
    s_fixture_t f;
    s_setup(&f);
    char endpoint[128];
    snprintf(endpoint, sizeof endpoint, "ipc://%s/mois.sock", f.dir);
    zsock_t *backend = zsock_new(ZMQ_DEALER);
    zsock_set_identity(backend, "back-end");
    zsock_set_rcvtimeo(backend, 5000);
    CHECK_EQ(zsock_connect(backend, "%s", endpoint), 0);
    /* Connected (the agent has heard from it), so that its answer reaches it. */
    zstr_send(backend, "");
    zpoller_t *poller = zpoller_new(f.agent->front, NULL);
    CHECK(zpoller_wait(poller, 5000) == f.agent->front);
    zpoller_destroy(&poller);
    zmsg_t *hello = zmsg_recv(f.agent->front);
    zmsg_destroy(&hello);
    s_publish_from_client(&f, 9);
    agent_destroy(&f.agent);    /* nts's view is settled: the back-end hears */
    zframe_t *frame = zframe_recv(backend);
    Sharebus__ClientMessage *answer
        = frame ? sbi_client_message_decode(zframe_data(frame), zframe_size(frame)) : NULL;
    CHECK(answer && answer->body_case == SHAREBUS__CLIENT_MESSAGE__BODY_RESULT);
    if (answer && answer->body_case == SHAREBUS__CLIENT_MESSAGE__BODY_RESULT) {
        CHECK_EQ(answer->id, 9);
        CHECK_STR(answer->result->reason, "cannot send the event to koroad: unknown agency");
    }
    if (answer)
        sharebus__client_message__free_unpacked(answer, NULL);
    zframe_destroy(&frame);
    zsock_destroy(&backend);
    s_teardown(&f);
}

TEST(test_a_consent_result_does_not_answer_a_request)
{
    s_fixture_t f;
    s_setup(&f);
    Sharebus__ClientRequest request = SHAREBUS__CLIENT_REQUEST__INIT;
    request.provider = "mois";
    request.dataset = "resident.address";
    request.purpose = "tax-notice";
    request.subject_id = "900101-1234567";
    Sharebus__ClientMessage m = SHAREBUS__CLIENT_MESSAGE__INIT;
    m.id = 8;
    m.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_REQUEST;
    m.request = &request;
    s_from_client(&f, &m);
    s_consent_result_to_pending(&f);    /* used to answer it SB_OK, empty */
    CHECK_EQ(zhashx_size(f.agent->pending), 1);
    s_teardown(&f);
}

/* EVENT `id` of mois on resident.address-changed, for the fixture's agent
   (nts), as its loop hands it on once verified and opened: its header
   names new_address, its record carries new_address and, when
   `moved_on` is not NULL, moved_on too. */
static void s_event_carrying(s_fixture_t *f, const uint8_t id[SBI_ID_SIZE], const char *address,
                             const char *moved_on)
{
    Sharebus__Field field = SHAREBUS__FIELD__INIT, moved = SHAREBUS__FIELD__INIT;
    field.name = "new_address";
    field.value_case = SHAREBUS__FIELD__VALUE_TEXT;
    field.text = (char *) address;
    moved.name = "moved_on";
    moved.value_case = SHAREBUS__FIELD__VALUE_TEXT;
    moved.text = (char *) moved_on;
    Sharebus__Field *fields[] = {&field, &moved};
    Sharebus__Record record = SHAREBUS__RECORD__INIT;
    record.n_fields = moved_on ? 2 : 1;
    record.fields = fields;
    Sharebus__Payload sealed = SHAREBUS__PAYLOAD__INIT;
    sealed.subject_id = "900101-1234567";
    sealed.body_case = SHAREBUS__PAYLOAD__BODY_RECORD;
    sealed.record = &record;
    uint8_t bytes[512];
    size_t size = sharebus__payload__pack(&sealed, bytes);
    Sharebus__Payload *payload = sharebus__payload__unpack(NULL, size, bytes);
    CHECK(payload != NULL);
    uint8_t ref[SBI_HASH_SIZE];
    CHECK_EQ(sbi_subject_ref(f->agent->subject_key, sealed.subject_id, ref), SB_OK);
    char *names[] = {"new_address"};
    Sharebus__Header h = SHAREBUS__HEADER__INIT;
    h.kind = SHAREBUS__KIND__KIND_EVENT;
    h.message_id = (ProtobufCBinaryData){SBI_ID_SIZE, (uint8_t *) id};
    h.from = "mois";
    h.to = "nts";
    h.dataset = "resident.address-changed";
    h.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, ref};
    h.fields = names;
    h.n_fields = 1;
    h.created_ms = sbi_now_ms();
    sbi_envelope_t env;
    memset(&env, 0, sizeof env);
    env.header = &h;
    agent_event_receive(f->agent, &env, &payload);
    if (payload)
        sharebus__payload__free_unpacked(payload, NULL);
}

static void s_event_from_broker(s_fixture_t *f, const uint8_t id[SBI_ID_SIZE],
                                const char *address)
{
    s_event_carrying(f, id, address, NULL);
}

/* The back-end's acknowledgement, as the library sends it. */
static void s_ack_from_client(s_fixture_t *f, uint64_t token, const uint8_t id[SBI_ID_SIZE])
{
    Sharebus__ClientAck ack = SHAREBUS__CLIENT_ACK__INIT;
    ack.token = token;
    ack.message_id = (ProtobufCBinaryData){SBI_ID_SIZE, (uint8_t *) id};
    Sharebus__ClientMessage m = SHAREBUS__CLIENT_MESSAGE__INIT;
    m.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_ACK;
    m.ack = &ack;
    s_from_client(f, &m);
}

/* nts's agent hands event `old` to the back-end, restarts and receives
   `new`, which the back-end has not had: the token the back-end holds. */
static uint64_t s_restart_between_events(s_fixture_t *f, uint8_t old[SBI_ID_SIZE],
                                         uint8_t new[SBI_ID_SIZE])
{
    s_setup_as(f, "nts");
    sbi_id_new(old);
    sbi_id_new(new);
    s_event_from_broker(f, old, "1 Sejong-daero");
    CHECK_EQ(zlistx_size(f->agent->inbox), 1);
    uint64_t held = f->agent->next_token;
    agent_destroy(&f->agent);
    s_start(f, "nts");
    s_event_from_broker(f, new, "2 Sejong-daero");
    CHECK_EQ(zlistx_size(f->agent->inbox), 1);
    return held;
}

/* The same with a library that acknowledges by token alone (before
   ClientAck had message_id): a token of the agent's previous run names
   nothing in this one, so it takes no event the back-end has not seen
   (nor, for a serving back-end, answers another request). */
TEST(test_a_token_from_before_a_restart_names_nothing)
{
    s_fixture_t f;
    uint8_t old[SBI_ID_SIZE], new[SBI_ID_SIZE];
    uint64_t held = s_restart_between_events(&f, old, new);
    Sharebus__ClientAck ack = SHAREBUS__CLIENT_ACK__INIT;
    ack.token = held;
    Sharebus__ClientMessage m = SHAREBUS__CLIENT_MESSAGE__INIT;
    m.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_ACK;
    m.ack = &ack;
    s_from_client(&f, &m);
    CHECK_EQ(zlistx_size(f.agent->inbox), 1);
    CHECK_EQ(zhashx_size(f.agent->marked), 0);
    s_teardown(&f);
}

/* An agent that stops right after its back-end acknowledged an event
   writes that down and tells the broker (an EVENT_ACK, on its log), rather
   than leave the broker to send the event again. */
TEST(test_a_stopping_agent_acknowledges_its_last_events)
{
    s_fixture_t f;
    s_setup_as(&f, "nts");
    uint8_t id[SBI_ID_SIZE], hash[SBI_HASH_SIZE];
    sbi_id_new(id);
    s_event_from_broker(&f, id, "1 Sejong-daero");
    uint64_t before = sbi_audit_head(f.agent->audit, hash);
    s_ack_from_client(&f, f.agent->next_token, id);
    agent_destroy(&f.agent);
    s_start(&f, "nts");
    CHECK_EQ(sbi_audit_head(f.agent->audit, hash), before + 1);   /* the EVENT_ACK sent */
    s_teardown(&f);
}

/* A back-end still holding an event of the agent's previous run
   acknowledges it after the agent restarted: the acknowledgement must not
   take a new event the back-end has never seen off the agent's hands (it
   would be marked seen and acknowledged to the broker: lost), and the old
   event, sent again by the broker, does not reach the back-end again. */
TEST(test_an_ack_from_before_a_restart_takes_no_other_event)
{
    s_fixture_t f;
    uint8_t old[SBI_ID_SIZE], new[SBI_ID_SIZE];
    uint64_t held = s_restart_between_events(&f, old, new);
    s_ack_from_client(&f, held, old);
    CHECK_EQ(zlistx_size(f.agent->inbox), 1);
    s_event_from_broker(&f, old, "1 Sejong-daero");   /* the broker sends it again */
    CHECK_EQ(zlistx_size(f.agent->inbox), 1);
    s_event_from_broker(&f, new, "2 Sejong-daero");
    CHECK_EQ(zlistx_size(f.agent->inbox), 1);
    s_teardown(&f);
}

/* A stand-in agent for the library: answers a subscription, sends one
   event (id in `arg`) and hands the ClientAck that comes back to the
   test through its pipe. */
static void s_event_agent(zsock_t *pipe, void *arg)
{
    const uint8_t *id = arg;
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "ipc:///tmp/sharebus-test-ack-%d.sock", getpid());
    zsock_t *agent = zsock_new(ZMQ_ROUTER);
    bool bound = agent && zsock_bind(agent, "%s", endpoint) == 0;
    zsock_set_rcvtimeo(agent, 5000);
    zsock_signal(pipe, bound ? 0 : 1);
    Sharebus__ClientMessage *ack = NULL;
    for (int i = 0; bound && i < 10 && !ack; i++) {
        zmsg_t *msg = zmsg_recv(agent);
        if (!msg || zmsg_size(msg) != 2) {
            zmsg_destroy(&msg);
            break;
        }
        zframe_t *routing = zmsg_pop(msg), *frame = zmsg_pop(msg);
        Sharebus__ClientMessage *m = sbi_client_message_decode(zframe_data(frame),
                                                               zframe_size(frame));
        Sharebus__ClientMessage answer = SHAREBUS__CLIENT_MESSAGE__INIT;
        Sharebus__ClientResult result = SHAREBUS__CLIENT_RESULT__INIT;
        Sharebus__ClientEvent event = SHAREBUS__CLIENT_EVENT__INIT;
        if (m && m->body_case == SHAREBUS__CLIENT_MESSAGE__BODY_SUBSCRIBE && m->id) {
            answer.id = m->id;      /* subscribed; and here is an event */
            answer.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_RESULT;
            answer.result = &result;
            zframe_t *out = zframe_new(NULL, sharebus__client_message__get_packed_size(&answer));
            sharebus__client_message__pack(&answer, zframe_data(out));
            zframe_t *again = zframe_dup(routing);
            zframe_send(&again, agent, ZFRAME_MORE);
            zframe_send(&out, agent, 0);
            event.token = 1;
            event.topic = "resident.address-changed";
            event.publisher = "mois";
            event.subject_id = "900101-1234567";
            event.message_id = (ProtobufCBinaryData){SBI_ID_SIZE, (uint8_t *) id};
            answer = (Sharebus__ClientMessage) SHAREBUS__CLIENT_MESSAGE__INIT;
            answer.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_EVENT;
            answer.event = &event;
            out = zframe_new(NULL, sharebus__client_message__get_packed_size(&answer));
            sharebus__client_message__pack(&answer, zframe_data(out));
            zframe_send(&routing, agent, ZFRAME_MORE);
            zframe_send(&out, agent, 0);
        }
        else if (m && m->body_case == SHAREBUS__CLIENT_MESSAGE__BODY_ACK) {
            ack = m;
            m = NULL;
        }
        if (m)
            sharebus__client_message__free_unpacked(m, NULL);
        zframe_destroy(&routing);
        zframe_destroy(&frame);
        zmsg_destroy(&msg);
    }
    zsock_send(pipe, "p", ack);
    zsock_destroy(&agent);
    char *term = zstr_recv(pipe);   /* $TERM */
    zstr_free(&term);
}

static int s_keep_reason(const Sharebus__AuditRecord *record, void *arg)
{
    char **reason_p = arg;
    free(*reason_p);
    *reason_p = strdup(record->reason ? record->reason : "");
    return 0;
}

/* The reason of the last record of `kind` on the agent's log, or NULL. */
static char *s_last_reason(s_fixture_t *f, Sharebus__AuditKind kind)
{
    char *reason = NULL;
    sbi_audit_filter_t filter = {.kind = kind};
    CHECK_EQ(sbi_audit_query(f->agent->audit, &filter, s_keep_reason, &reason), SB_OK);
    return reason;
}

/* The broker audits an event's delivery with the fields its header
   names (it cannot read the record): a record carrying a field its header
   does not name is refused, even one the policy lets the subscriber see,
   or the audit log would not say that field was shared. */
TEST(test_an_event_carrying_a_field_its_header_does_not_name_is_refused)
{
    s_fixture_t f;
    s_setup_as(&f, "nts");
    uint8_t id[SBI_ID_SIZE];
    sbi_id_new(id);
    s_event_carrying(&f, id, "1 Sejong-daero", "2026-11-20");  /* nts may see moved_on */
    CHECK_EQ(zlistx_size(f.agent->inbox), 0);
    CHECK_EQ(zhashx_size(f.agent->marked), 1);     /* dropped, and acknowledged */
    agent_log_drain(f.agent);
    char *reason = s_last_reason(&f, SHAREBUS__AUDIT_KIND__AUDIT_EVENT_REFUSED);
    CHECK_STR(reason, "the record carries a field its header does not name");
    free(reason);
    sbi_id_new(id);
    s_event_carrying(&f, id, "1 Sejong-daero", NULL);
    CHECK_EQ(zlistx_size(f.agent->inbox), 1);
    s_teardown(&f);
}

/* The library's side: sb_event_ack names the event by its id, which the
   agent knows again after a restart, besides its token, which it does
   not. */
TEST(test_an_event_is_acknowledged_by_its_id)
{
    uint8_t id[SBI_ID_SIZE];
    sbi_id_new(id);
    zactor_t *agent = zactor_new(s_event_agent, id);
    CHECK(agent != NULL);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "ipc:///tmp/sharebus-test-ack-%d.sock", getpid());
    sb_client_t *client = sb_client_new(endpoint);
    CHECK_EQ(sb_subscribe(client, "resident.address-changed"), SB_OK);
    sb_event_t *event = NULL;
    CHECK_EQ(sb_event_recv(client, &event, 5000), SB_OK);
    if (event)
        CHECK_EQ(sb_event_ack(client, &event), SB_OK);
    Sharebus__ClientMessage *ack = NULL;
    zsock_recv(agent, "p", &ack);
    CHECK(ack != NULL);
    if (ack) {
        CHECK_EQ(ack->ack->token, 1);
        CHECK(ack->ack->message_id.len == SBI_ID_SIZE
              && memcmp(ack->ack->message_id.data, id, SBI_ID_SIZE) == 0);
        sharebus__client_message__free_unpacked(ack, NULL);
    }
    sb_client_destroy(&client);
    zactor_destroy(&agent);
}

/* The library's side: a call that gave up (SB_ETIMEOUT) forgets its
   ticket, so the agent's late answer is dropped, neither queued for ever
   nor handed to sb_result_recv as the answer to some other request. */
TEST(test_a_late_answer_to_an_abandoned_call_is_dropped)
{
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "ipc:///tmp/sharebus-test-late-%d.sock", getpid());
    zsock_t *agent = zsock_new(ZMQ_ROUTER);   /* a slow agent: it answers late */
    CHECK(agent && zsock_bind(agent, "%s", endpoint) == 0);
    zsock_set_rcvtimeo(agent, 5000);
    sb_client_t *client = sb_client_new(endpoint);
    sb_request_t request = {.provider = "nhis", .dataset = "health.checkup.vision-hearing",
                            .purpose = "driver-licence-renewal", .timeout_ms = 100};
    sb_record_t *record = NULL;
    CHECK_EQ(sb_request(client, &request, &record), SB_ETIMEOUT);
    zmsg_t *asked = zmsg_recv(agent);
    CHECK(asked && zmsg_size(asked) == 2);
    if (asked && zmsg_size(asked) == 2) {
        zframe_t *routing = zmsg_pop(asked), *frame = zmsg_pop(asked);
        Sharebus__ClientMessage *m = sbi_client_message_decode(zframe_data(frame),
                                                               zframe_size(frame));
        CHECK(m && m->body_case == SHAREBUS__CLIENT_MESSAGE__BODY_REQUEST);
        Sharebus__ClientResult result = SHAREBUS__CLIENT_RESULT__INIT;
        result.error = SHAREBUS__ERROR_KIND__ERR_TIMEOUT;
        result.reason = "late";
        Sharebus__ClientMessage answer = SHAREBUS__CLIENT_MESSAGE__INIT;
        answer.id = m ? m->id : 0;
        answer.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_RESULT;
        answer.result = &result;
        zframe_t *out = zframe_new(NULL, sharebus__client_message__get_packed_size(&answer));
        sharebus__client_message__pack(&answer, zframe_data(out));
        zframe_send(&routing, agent, ZFRAME_MORE);
        zframe_send(&out, agent, 0);
        if (m)
            sharebus__client_message__free_unpacked(m, NULL);
        zframe_destroy(&frame);
    }
    zmsg_destroy(&asked);
    sb_result_t late = {0};
    CHECK_EQ(sb_result_recv(client, &late, 1000), SB_ETIMEOUT);
    sb_record_destroy(&late.record);
    sb_client_destroy(&client);
    zsock_destroy(&agent);
}

/* The mode the back-ends' socket had when the agent set its own: this
   test is linked with -Wl,--wrap=chmod (meson.build). */
static mode_t s_mode_at_chmod;
static bool s_chmod_seen;

int __real_chmod(const char *path, mode_t mode);
int __wrap_chmod(const char *path, mode_t mode);
int __wrap_chmod(const char *path, mode_t mode)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        s_mode_at_chmod = st.st_mode & 07777;
        s_chmod_seen = true;
    }
    return __real_chmod(path, mode);
}

TEST(test_the_back_end_socket_is_never_open_to_others)
{
    mode_t umask_was = umask(0);    /* as a daemon started with umask 0 */
    s_fixture_t f;
    s_setup(&f);
    umask(umask_was);
    CHECK(s_chmod_seen);
    CHECK_EQ(s_mode_at_chmod & 007, 0);
    char path[128];
    snprintf(path, sizeof path, "%s/mois.sock", f.dir);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0660);
    s_teardown(&f);
}

int main(int argc, char **argv)
{
    sbi_init();
    return RUN_TESTS();
}
