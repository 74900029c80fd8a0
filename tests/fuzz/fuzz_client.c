/*  fuzz_client - hostile frames of the client protocol (back-end <-> agent).

    Both sides decode a frame with sbi_client_message_decode (the agent in
    agent_front_message, the library in its receive loop): every input goes
    through it, and the records it carries through the agent's check
    (sbi_record_pb_valid) and the library's conversion, which must agree.

    Then the library's real receive path, live: a ROUTER in this process
    plays the agent, sends the bytes to an sb_client_t over ipc, and the
    public calls take whatever they decoded to: sb_result_recv,
    sb_incoming_recv (every accessor, then sb_incoming_refuse),
    sb_event_recv (every accessor, then sb_event_ack). A frame that decodes
    as a result is also given, as the answer, to sb_consent_list, which
    turns the consents it carries into JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char s_dir[64];
static zsock_t *s_agent;       /* plays the agent */
static sb_client_t *s_client;
static zframe_t *s_peer;       /* the client's routing id */
static uint64_t s_next_id;     /* the id of the client's next call */

static void s_cleanup(void)
{
    sb_client_destroy(&s_client);
    zframe_destroy(&s_peer);
    zsock_destroy(&s_agent);
    char path[128];
    snprintf(path, sizeof path, "%s/agent.sock", s_dir);
    unlink(path);
    rmdir(s_dir);
}

static void s_setup(void)
{
    sbi_init();
    zsys_set_logstream(NULL);
    strcpy(s_dir, "/tmp/sb-fuzz-client-XXXXXX");
    if (!mkdtemp(s_dir))
        abort();
    s_agent = zsock_new(ZMQ_ROUTER);
    zsock_set_sndhwm(s_agent, 0);
    if (zsock_bind(s_agent, "ipc://%s/agent.sock", s_dir) < 0)
        abort();
    char endpoint[128];
    snprintf(endpoint, sizeof endpoint, "ipc://%s/agent.sock", s_dir);
    s_client = sb_client_new(endpoint);
    if (!s_client)
        abort();
    /* One frame from the client so that the ROUTER learns its id. */
    zstr_send(sb_client_socket(s_client), "hello");
    zmsg_t *hello = zmsg_recv(s_agent);
    s_peer = zmsg_pop(hello);
    zmsg_destroy(&hello);
    atexit(s_cleanup);
}

/* Sends one frame to the client and waits until it can be read. */
static void s_to_client(const void *data, size_t size)
{
    zframe_t *to = zframe_dup(s_peer), *frame = zframe_new(data, size);
    if (zframe_send(&to, s_agent, ZFRAME_MORE) != 0 || zframe_send(&frame, s_agent, 0) != 0)
        abort();
    zmq_pollitem_t item = {zsock_resolve(sb_client_socket(s_client)), 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, 5000) != 1)
        abort();
}

/* Whatever the client sent back (answers, acks, calls) is dropped. */
static void s_drain(void)
{
    while (zsock_events(s_agent) & ZMQ_POLLIN) {
        zmsg_t *msg = zmsg_recv(s_agent);
        zmsg_destroy(&msg);
    }
}

static void s_check_record(const Sharebus__Record *pb)
{
    if (!pb)
        return;
    sb_record_t *record = sbi_record_from_pb(pb);
    if (sbi_record_pb_valid(pb) != (record != NULL))
        abort();    /* the agent and the library must agree */
    sb_record_destroy(&record);
}

static void s_decoded(const Sharebus__ClientMessage *m)
{
    switch (m->body_case) {
    case SHAREBUS__CLIENT_MESSAGE__BODY_RESULT: s_check_record(m->result->record); break;
    case SHAREBUS__CLIENT_MESSAGE__BODY_ANSWER: s_check_record(m->answer->record); break;
    case SHAREBUS__CLIENT_MESSAGE__BODY_PUBLISH: s_check_record(m->publish->record); break;
    case SHAREBUS__CLIENT_MESSAGE__BODY_EVENT: s_check_record(m->event->record); break;
    default: break;
    }
}

/* The library's receive path, through its public calls. */
static void s_library(const uint8_t *data, size_t size)
{
    s_to_client(data, size);
    sb_result_t result;
    while (sb_result_recv(s_client, &result, 0) == SB_OK) {
        if (result.code == SB_OK && !result.record)
            abort();
        sb_record_destroy(&result.record);
    }
    sb_incoming_t *incoming;
    while (sb_incoming_recv(s_client, &incoming, 0) == SB_OK) {
        volatile size_t n = strlen(sb_incoming_consumer(incoming)) + strlen(sb_incoming_dataset(incoming))
                            + strlen(sb_incoming_purpose(incoming)) + strlen(sb_incoming_subject(incoming))
                            + strlen(sb_incoming_rule(incoming));
        for (size_t i = 0; i < sb_incoming_field_count(incoming); i++)
            n += strlen(sb_incoming_field(incoming, i));
        (void) n;
        if (sb_incoming_refuse(s_client, &incoming, SB_EDENIED, "fuzz") != SB_OK || incoming)
            abort();
    }
    sb_event_t *event;
    while (sb_event_recv(s_client, &event, 0) == SB_OK) {
        volatile size_t n = strlen(sb_event_topic(event)) + strlen(sb_event_publisher(event))
                            + strlen(sb_event_subject(event)) + strlen(sb_event_id(event))
                            + (size_t) sb_event_time(event);
        (void) n;
        free(sb_record_to_json(sb_event_record(event)));
        if (sb_event_ack(s_client, &event) != SB_OK)
            abort();
    }
    s_drain();
}

/* A result handed to sb_consent_list as its answer. Packed again it can
   be shorter than the input (protobuf merges a repeated occurrence of a
   field), and then over the decoder's memory budget for its size: such an
   answer is one the library rightly ignores, so it is not given. */
static void s_consent_list(Sharebus__ClientMessage *m)
{
    size_t size = sharebus__client_message__get_packed_size(m);
    uint8_t *bytes = malloc(size ? size : 1);
    sharebus__client_message__pack(m, bytes);
    Sharebus__ClientMessage *again = sbi_client_message_decode(bytes, size);
    free(bytes);
    if (!again)
        return;
    sharebus__client_message__free_unpacked(again, NULL);
    m->id = ++s_next_id;
    size = sharebus__client_message__get_packed_size(m);
    bytes = malloc(size ? size : 1);
    sharebus__client_message__pack(m, bytes);
    s_to_client(bytes, size);
    free(bytes);
    char *json = NULL;
    int rc = sb_consent_list(s_client, "900101-1234567", &json);
    if (rc == SB_ETIMEOUT && m->result->error != SHAREBUS__ERROR_KIND__ERR_TIMEOUT)
        abort();    /* it was there: it must have been found (or say timeout itself) */
    free(json);
    s_drain();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!s_client)
        s_setup();
    if (size > SBI_FRAME_MAX)
        return 0;
    Sharebus__ClientMessage *m = sbi_client_message_decode(data, size);
    if (m)
        s_decoded(m);
    s_library(data, size);
    if (m && m->body_case == SHAREBUS__CLIENT_MESSAGE__BODY_RESULT)
        s_consent_list(m);
    if (m)
        sharebus__client_message__free_unpacked(m, NULL);
    return 0;
}
