/*  test_client - libsharebus without an agent: what a back-end does before
    and around talking to one. */
#include <czmq.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sharebus.h"
#include "sharebus.pb-c.h"
#include "testing.h"

#define S_THREADS 32
#define S_PROCESSES 40

static pthread_barrier_t s_start;

static void *s_connect(void *arg)
{
    const char *endpoint = arg;
    pthread_barrier_wait(&s_start);
    sb_client_t *client = sb_client_new(endpoint);
    if (!client)
        return (void *) 1;
    sb_client_destroy(&client);
    return NULL;
}

/* In a fresh process (nothing of CZMQ set up yet), S_THREADS threads
   create their first client at the same moment. */
static int s_race(const char *endpoint)
{
    pthread_t threads[S_THREADS];
    pthread_barrier_init(&s_start, NULL, S_THREADS);
    for (int i = 0; i < S_THREADS; i++)
        pthread_create(&threads[i], NULL, s_connect, (void *) endpoint);
    int failed = 0;
    for (int i = 0; i < S_THREADS; i++) {
        void *rc;
        pthread_join(threads[i], &rc);
        failed += rc != NULL;
    }
    pthread_barrier_destroy(&s_start);
    return failed;
}

TEST(test_threads_may_create_their_first_clients_at_once)
{
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "ipc:///tmp/sharebus-test-client-%d.sock", getpid());
    for (int p = 0; p < S_PROCESSES; p++) {
        pid_t child = fork();
        CHECK(child >= 0);
        if (child == 0)
            _exit(s_race(endpoint) == 0 ? 0 : 1);
        int status = 0;
        CHECK_EQ(waitpid(child, &status, 0), child);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fprintf(stderr, "  process %d: %s %d\n", p,
                    WIFSIGNALED(status) ? "killed by signal" : "exit status",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
}

TEST(test_client_needs_an_ipc_or_tcp_endpoint)
{
    CHECK(sb_client_new(NULL) == NULL);
    CHECK(sb_client_new("inproc://agent") == NULL);
    CHECK(sb_client_new("/run/sharebus/koroad.sock") == NULL);
    sb_client_t *client = sb_client_new("tcp://127.0.0.1:1");
    CHECK(client != NULL);
    sb_client_destroy(&client);
    CHECK(client == NULL);
}

TEST(test_a_request_waits_at_most_the_brokers_60_s)
{
    sb_client_t *client = sb_client_new("tcp://127.0.0.1:1");
    sb_request_t request = {.provider = "nhis", .dataset = "health.checkup.vision-hearing",
                            .purpose = "driver-licence-renewal", .timeout_ms = 60001};
    sb_record_t *record = NULL;
    CHECK_EQ(sb_request(client, &request, &record), SB_EINVAL);
    request.timeout_ms = 2147483000;    /* once overflowed into "wait for ever" */
    CHECK_EQ(sb_request(client, &request, &record), SB_EINVAL);
    sb_client_destroy(&client);
}

TEST(test_a_subject_is_1_to_64_characters_or_none)
{
    sb_client_t *client = sb_client_new("tcp://127.0.0.1:1");
    char long_id[66];
    memset(long_id, '1', 65);
    long_id[65] = 0;
    sb_request_t request = {.provider = "nhis", .dataset = "health.checkup.vision-hearing",
                            .purpose = "driver-licence-renewal", .subject = "",
                            .timeout_ms = 100};
    sb_record_t *record = NULL;
    CHECK_EQ(sb_request(client, &request, &record), SB_EINVAL);
    request.subject = long_id;
    CHECK_EQ(sb_request(client, &request, &record), SB_EINVAL);
    sb_record_t *event = sb_record_new();
    CHECK_EQ(sb_record_set_text(event, "new_address", "1 Sejong-daero"), SB_OK);
    CHECK_EQ(sb_publish(client, "resident.address-changed", long_id, event), SB_EINVAL);
    CHECK_EQ(sb_publish(client, "resident.address-changed", "", event), SB_EINVAL);
    sb_record_destroy(&event);
    sb_client_destroy(&client);
}

static void s_on_alarm(int signal)
{
}

static int64_t s_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t) t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* A signal the program handles (here SIGALRM, without SA_RESTART) wakes
   the library's poll early: the call waits on, to its own timeout. */
TEST(test_a_signal_does_not_end_a_blocking_call)
{
    struct sigaction action = {.sa_handler = s_on_alarm};
    sigemptyset(&action.sa_mask);
    CHECK_EQ(sigaction(SIGALRM, &action, NULL), 0);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "ipc:///tmp/sharebus-test-silent-%d.sock", getpid());
    sb_client_t *client = sb_client_new(endpoint);  /* no agent there */
    sb_request_t request = {.provider = "nhis", .dataset = "health.checkup.vision-hearing",
                            .purpose = "driver-licence-renewal", .timeout_ms = 100};
    sb_record_t *record = NULL;
    int64_t start = s_now_ms();
    ualarm(300 * 1000, 0);
    CHECK_EQ(sb_request(client, &request, &record), SB_ETIMEOUT);
    CHECK(s_now_ms() - start >= 2000);  /* the timeout and the library's 2 s backstop */
    sb_client_destroy(&client);
    signal(SIGALRM, SIG_DFL);
}

/* Setting a blob field from its own value (as read with sb_record_blob)
   copies the value before the old one is freed. */
TEST(test_a_blob_may_be_set_from_its_own_value)
{
    sb_record_t *record = sb_record_new();
    CHECK_EQ(sb_record_set_blob(record, "photo", "hello", 5), SB_OK);
    const void *data = NULL;
    size_t size = 0;
    CHECK_EQ(sb_record_blob(record, "photo", &data, &size), SB_OK);
    CHECK_EQ(sb_record_set_blob(record, "photo", data, size), SB_OK);
    CHECK_EQ(sb_record_blob(record, "photo", &data, &size), SB_OK);
    CHECK(size == 5 && memcmp(data, "hello", 5) == 0);
    sb_record_destroy(&record);
}

/* A record is always valid JSON: a real is finite, NaN and infinity are
   refused (json-c would print them as bare nan and inf). */
TEST(test_a_real_is_finite)
{
    sb_record_t *record = sb_record_new();
    CHECK_EQ(sb_record_set_real(record, "vision_left", NAN), SB_EINVAL);
    CHECK_EQ(sb_record_set_real(record, "vision_left", INFINITY), SB_EINVAL);
    CHECK_EQ(sb_record_set_real(record, "vision_left", -INFINITY), SB_EINVAL);
    CHECK_EQ(sb_record_size(record), 0);
    CHECK_EQ(sb_record_set_real(record, "vision_left", 0.8), SB_OK);
    char *json = sb_record_to_json(record);
    CHECK_STR(json, "{\"vision_left\":0.8}");
    free(json);
    sb_record_destroy(&record);
    CHECK(sb_record_from_json("{\"vision_left\":1e400}") == NULL);    /* infinity */
}

/* One JSON object and nothing after it: a second object or trailing text
   is not "a JSON object", and would have been dropped without a word. */
TEST(test_a_record_from_json_is_one_object)
{
    sb_record_t *record = sb_record_from_json(" {\"exam_date\":\"2025-10-02\"}\n");
    CHECK(record != NULL);
    CHECK_EQ(sb_record_size(record), 1);
    sb_record_destroy(&record);
    CHECK(sb_record_from_json("{\"exam_date\":\"2025-10-02\"}{\"vision_left\":1}") == NULL);
    CHECK(sb_record_from_json("{\"exam_date\":\"2025-10-02\"} x") == NULL);
    CHECK(sb_record_from_json("{\"exam_date\":") == NULL);
    CHECK(sb_record_from_json("") == NULL);
    CHECK(sb_record_from_json(NULL) == NULL);
}

/* What json-c would hand over changed: an integer beyond int64 clamped
   to its limit, a text cut at "\u0000". Refused instead. */
TEST(test_a_record_from_json_keeps_values_whole)
{
    sb_record_t *record = sb_record_from_json(
        "{\"max\":9223372036854775807,\"low\":-9223372036854775807,\"text\":\"a\\u00e9b\"}");
    CHECK(record != NULL);
    int64_t integer = 0;
    CHECK_EQ(sb_record_integer(record, "max", &integer), SB_OK);
    CHECK(integer == INT64_MAX);
    CHECK_EQ(sb_record_integer(record, "low", &integer), SB_OK);
    CHECK(integer == -INT64_MAX);
    const char *text = NULL;
    CHECK_EQ(sb_record_text(record, "text", &text), SB_OK);
    CHECK_STR(text, "a\xc3\xa9" "b");
    sb_record_destroy(&record);
    CHECK(sb_record_from_json("{\"n\":9223372036854775808}") == NULL);
    CHECK(sb_record_from_json("{\"n\":18446744073709551616}") == NULL);
    CHECK(sb_record_from_json("{\"n\":99999999999999999999999}") == NULL);
    CHECK(sb_record_from_json("{\"n\":-9223372036854775808}") == NULL);
    CHECK(sb_record_from_json("{\"n\":-99999999999999999999999}") == NULL);
    CHECK(sb_record_from_json("{\"t\":\"eye\\u0000test\"}") == NULL);
}

/* After SIGINT (or SIGTERM) every blocking call ends at once with
   SB_EINTERNAL and the reason "interrupted", and sends the agent nothing:
   a request, consent or publication made after the signal is not carried
   out behind the back of a program told it was interrupted. */
TEST(test_after_a_signal_blocking_calls_end_at_once_and_send_nothing)
{
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "ipc:///tmp/sharebus-test-interrupted-%d.sock", getpid());
    sb_client_t *client = sb_client_new(endpoint);  /* sets up CZMQ's SIGINT handler */
    zsock_t *agent = zsock_new_router(endpoint);    /* a stand-in agent, to see what comes */
    CHECK(agent != NULL);
    raise(SIGINT);
    int64_t start = s_now_ms();
    sb_request_t request = {.provider = "nhis", .dataset = "health.checkup.vision-hearing",
                            .purpose = "driver-licence-renewal", .subject = "900101-1234567"};
    sb_record_t *record = NULL;
    CHECK_EQ(sb_request(client, &request, &record), SB_EINTERNAL);
    CHECK_STR(sb_client_reason(client), "internal: interrupted");
    sb_consent_t consent = {.subject = "900101-1234567", .consumer = "koroad",
                            .dataset = "health.checkup.vision-hearing",
                            .purpose = "driver-licence-renewal", .until_ms = 4102444800000};
    char id[SB_CONSENT_ID_SIZE];
    CHECK_EQ(sb_consent_grant(client, &consent, id), SB_EINTERNAL);
    sb_record_t *change = sb_record_new();
    CHECK_EQ(sb_record_set_text(change, "new_address", "261 Sejong-daero"), SB_OK);
    CHECK_EQ(sb_publish(client, "resident.address-changed", "900101-1234567", change),
             SB_EINTERNAL);
    sb_record_destroy(&change);
    CHECK_EQ(sb_client_serve(client, "health.checkup.vision-hearing"), SB_EINTERNAL);
    CHECK_STR(sb_client_reason(client), "internal: interrupted");
    sb_client_destroy(&client);
    client = sb_client_new(endpoint);   /* a fresh reason */
    sb_result_t result;
    CHECK_EQ(sb_result_recv(client, &result, -1), SB_EINTERNAL);
    CHECK_STR(sb_client_reason(client), "internal: interrupted");
    sb_incoming_t *incoming = NULL;
    CHECK_EQ(sb_incoming_recv(client, &incoming, -1), SB_EINTERNAL);
    sb_event_t *event = NULL;
    CHECK_EQ(sb_event_recv(client, &event, -1), SB_EINTERNAL);
    CHECK_STR(sb_client_reason(client), "internal: interrupted");
    /* Each used to poll up to 2 s first: 9 s in all. */
    CHECK(s_now_ms() - start < 5000);   /* not a speed claim: 9 s would be the bug */
    zsock_set_rcvtimeo(agent, 500);
    zmsg_t *sent = zmsg_recv(agent);
    CHECK(sent == NULL);
    zmsg_destroy(&sent);
    sb_client_destroy(&client);
    zsock_destroy(&agent);
    zsys_interrupted = 0;   /* for the tests after this one */
    zctx_interrupted = 0;
}

/* `client` asks for a checkup; the stand-in `agent` receives the request.
   Returns the client's identity at the stand-in; the ticket in *ticket_p. */
static zframe_t *s_asked(zsock_t *agent, sb_client_t *client, uint64_t *ticket_p)
{
    sb_request_t request = {.provider = "nhis", .dataset = "health.checkup.vision-hearing",
                            .purpose = "driver-licence-renewal", .timeout_ms = 1000};
    uint64_t ticket;
    CHECK_EQ(sb_request_send(client, &request, &ticket), SB_OK);
    if (ticket_p)
        *ticket_p = ticket;
    zmsg_t *first = zmsg_recv(agent);
    CHECK(first != NULL);
    zframe_t *identity = first ? zmsg_pop(first) : NULL;
    zmsg_destroy(&first);
    return identity;
}

/* A stand-in agent hands `client` one incoming request (after the
   client's first message told it the client's identity, returned in
   `identity_p`). */
static void s_incoming_from(zsock_t *agent, sb_client_t *client, zframe_t **identity_p)
{
    *identity_p = s_asked(agent, client, NULL);
    Sharebus__ClientIncoming in = SHAREBUS__CLIENT_INCOMING__INIT;
    in.token = 7;
    in.consumer = "koroad";
    in.dataset = "health.checkup.vision-hearing";
    in.purpose = "driver-licence-renewal";
    in.subject_id = "900101-1234567";
    in.rule_id = "licence-renewal-uses-checkup";
    Sharebus__ClientMessage message = SHAREBUS__CLIENT_MESSAGE__INIT;
    message.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_INCOMING;
    message.incoming = &in;
    zframe_t *frame = zframe_new(NULL, sharebus__client_message__get_packed_size(&message));
    sharebus__client_message__pack(&message, zframe_data(frame));
    zframe_t *to = zframe_dup(*identity_p);
    CHECK_EQ(zframe_send(&to, agent, ZFRAME_MORE), 0);
    CHECK_EQ(zframe_send(&frame, agent, 0), 0);
}

/* A stand-in agent on an ipc endpoint named after `name`, and a client of it. */
static sb_client_t *s_stand_in(const char *name, zsock_t **agent_p)
{
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "ipc:///tmp/sharebus-test-%s-%d.sock", name, getpid());
    *agent_p = zsock_new_router(endpoint);
    CHECK(*agent_p != NULL);
    zsock_set_rcvtimeo(*agent_p, 5000);
    return sb_client_new(endpoint);
}

/* A refusal's reason may be any length: the library sends its first
   1024 bytes (cut on a character boundary), and the refusal keeps its
   code; a reason over the 1 MiB of a frame made it a too-big answer. */
TEST(test_a_refusal_with_a_long_reason_keeps_its_code)
{
    zsock_t *agent;
    sb_client_t *client = s_stand_in("refuse", &agent);
    zframe_t *identity = NULL;
    s_incoming_from(agent, client, &identity);
    sb_incoming_t *incoming = NULL;
    CHECK_EQ(sb_incoming_recv(client, &incoming, 5000), SB_OK);
    size_t size = 2 << 20;
    char *reason = malloc(size + 1);
    memset(reason, 'x', size);
    memcpy(reason + 1023, "\xc3\xa9", 2);     /* an é across the 1024-byte cut */
    reason[size] = 0;
    CHECK_EQ(sb_incoming_refuse(client, &incoming, SB_ENOTFOUND, reason), SB_OK);
    CHECK(incoming == NULL);
    free(reason);
    zmsg_t *answer = zmsg_recv(agent);
    CHECK(answer != NULL && zmsg_size(answer) == 2);
    zframe_t *body = answer ? zmsg_last(answer) : NULL;
    Sharebus__ClientMessage *m
        = body ? sharebus__client_message__unpack(NULL, zframe_size(body), zframe_data(body)) : NULL;
    CHECK(m && m->body_case == SHAREBUS__CLIENT_MESSAGE__BODY_ANSWER);
    if (m && m->body_case == SHAREBUS__CLIENT_MESSAGE__BODY_ANSWER) {
        CHECK_EQ(m->answer->token, 7);
        CHECK_EQ(m->answer->error, SHAREBUS__ERROR_KIND__ERR_NOTFOUND);
        CHECK_EQ(strlen(m->answer->reason), 1023);    /* not half the é */
        CHECK_EQ(strspn(m->answer->reason, "x"), 1023);
    }
    if (m)
        sharebus__client_message__free_unpacked(m, NULL);
    zmsg_destroy(&answer);
    zframe_destroy(&identity);
    sb_client_destroy(&client);
    zsock_destroy(&agent);
}

/* A program told to stop may still collect the answers to what it sent
   before: after SIGINT, sb_result_recv with a timeout hands out an answer
   that comes within it, then says "interrupted". */
TEST(test_after_a_signal_answers_already_asked_for_are_still_handed_out)
{
    zsock_t *agent;
    sb_client_t *client = s_stand_in("drain", &agent);
    uint64_t ticket;
    zframe_t *identity = s_asked(agent, client, &ticket);
    raise(SIGINT);
    Sharebus__ClientResult body = SHAREBUS__CLIENT_RESULT__INIT;
    Sharebus__ClientMessage message = SHAREBUS__CLIENT_MESSAGE__INIT;
    message.id = ticket;
    message.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_RESULT;
    message.result = &body;
    zframe_t *frame = zframe_new(NULL, sharebus__client_message__get_packed_size(&message));
    sharebus__client_message__pack(&message, zframe_data(frame));
    CHECK_EQ(zframe_send(&identity, agent, ZFRAME_MORE), 0);
    CHECK_EQ(zframe_send(&frame, agent, 0), 0);
    sb_result_t result;
    CHECK_EQ(sb_result_recv(client, &result, 5000), SB_OK);
    CHECK_EQ(result.ticket, ticket);
    sb_record_destroy(&result.record);
    CHECK_EQ(sb_result_recv(client, &result, 200), SB_EINTERNAL);
    CHECK_STR(sb_client_reason(client), "internal: interrupted");
    sb_client_destroy(&client);
    zsock_destroy(&agent);
    zsys_interrupted = 0;   /* for the tests after this one */
    zctx_interrupted = 0;
}

int main(int argc, char **argv)
{
    return RUN_TESTS();
}
