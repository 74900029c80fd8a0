/*  nats-rr - the same request/reply workload through NATS, the broker a team
    would pick instead: Debian's nats-server with TLS, the C client libnats.

    nats-rr --url tls://localhost:PORT --ca CA.pem [--size BYTES]
            [--request-size BYTES] [--inflight N] [--seconds S] [--warmup S]
            [--send-asap]

    Forks a responder process (subscribes to bench.rr and answers every
    request with --size bytes), then keeps N requests outstanding from this
    process, each published with a reply subject on one inbox the requester
    subscribes to (libnats's own request style, without the one-at-a-time
    wait); every message carries a sequence number to match its latency.
    Both connections use TLS, verified against CA.pem. libnats buffers
    publishes and flushes them from a thread of its own; --send-asap sends
    each at once instead (lower latency with few in flight, lower throughput
    with many). Prints one JSON object. */
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nats/nats.h>

#include "stats.h"

#define S_RING 65536

typedef struct {
    const char *url, *ca;
    bool send_asap;
    long size, request_size, inflight, seconds, warmup;
} s_args_t;

static volatile sig_atomic_t s_stop;

static void s_on_term(int sig)
{
    (void)sig;
    s_stop = 1;
}

static natsConnection *s_connect(const s_args_t *a)
{
    natsOptions *opts = NULL;
    natsConnection *conn = NULL;
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(opts, a->url);
    if (s == NATS_OK)
        s = natsOptions_SetSecure(opts, true);
    if (s == NATS_OK)
        s = natsOptions_LoadCATrustedCertificates(opts, a->ca);
    if (s == NATS_OK)
        s = natsOptions_SetMaxPendingMsgs(opts, 1000000);
    if (s == NATS_OK)
        s = natsOptions_SetSendAsap(opts, a->send_asap);
    for (int tries = 0; s == NATS_OK && tries < 50; tries++) {
        s = natsConnection_Connect(&conn, opts);
        if (s != NATS_NO_SERVER)
            break;
        s = NATS_OK;
        nats_Sleep(100); /* the server may still be starting */
    }
    if (s != NATS_OK || !conn) {
        fprintf(stderr, "nats-rr: cannot connect to %s: %s\n", a->url, natsStatus_GetText(s));
        nats_PrintLastErrorStack(stderr);
        conn = NULL;
    }
    natsOptions_Destroy(opts);
    return conn;
}

static int s_responder(const s_args_t *a)
{
    signal(SIGTERM, s_on_term);
    natsConnection *conn = s_connect(a);
    natsSubscription *sub = NULL;
    if (!conn || natsConnection_SubscribeSync(&sub, conn, "bench.rr") != NATS_OK)
        return 1;
    natsSubscription_SetPendingLimits(sub, 1000000, 1 << 30);
    natsConnection_Flush(conn);
    char *body = calloc(1, (size_t)a->size);
    while (!s_stop) {
        natsMsg *msg = NULL;
        natsStatus s = natsSubscription_NextMsg(&msg, sub, 200);
        if (s == NATS_TIMEOUT)
            continue;
        if (s != NATS_OK)
            break;
        if (natsMsg_GetDataLength(msg) >= 8 && natsMsg_GetReply(msg)) {
            memcpy(body, natsMsg_GetData(msg), 8);
            natsConnection_Publish(conn, natsMsg_GetReply(msg), body, (int)a->size);
        }
        natsMsg_Destroy(msg);
    }
    free(body);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(conn);
    return 0;
}

static void s_request(natsConnection *conn, const char *inbox, char *body, long size, uint64_t seq)
{
    memcpy(body, &seq, 8);
    natsConnection_PublishRequest(conn, "bench.rr", inbox, body, (int)size);
}

static int s_requester(const s_args_t *a)
{
    natsConnection *conn = s_connect(a);
    natsSubscription *sub = NULL;
    char inbox[64];
    snprintf(inbox, sizeof inbox, "bench.reply.%d", (int)getpid());
    if (!conn || natsConnection_SubscribeSync(&sub, conn, inbox) != NATS_OK)
        return 1;
    natsSubscription_SetPendingLimits(sub, 1000000, 1 << 30);
    char *body = calloc(1, (size_t)a->request_size);
    uint64_t probe = 1ULL << 63;
    int64_t give_up = bench_now_ns() + 10000000000LL;
    bool ready = false;
    while (!ready && bench_now_ns() < give_up) { /* until the responder answers */
        s_request(conn, inbox, body, a->request_size, probe);
        natsMsg *msg = NULL;
        if (natsSubscription_NextMsg(&msg, sub, 200) == NATS_OK) {
            ready = natsMsg_GetDataLength(msg) >= 8 && memcmp(natsMsg_GetData(msg), &probe, 8) == 0;
            natsMsg_Destroy(msg);
        }
    }
    for (natsMsg *msg = NULL; natsSubscription_NextMsg(&msg, sub, 100) == NATS_OK; msg = NULL)
        natsMsg_Destroy(msg); /* late probes */
    if (!ready) {
        fprintf(stderr, "nats-rr: the responder does not answer\n");
        return 1;
    }
    int64_t *sent = calloc(S_RING, sizeof *sent);
    bench_stats_t *stats = bench_stats_new();
    int64_t start = bench_now_ns() + a->warmup * 1000000000LL;
    int64_t end = start + a->seconds * 1000000000LL;
    uint64_t next = 0, outstanding = 0, in_window = 0;
    for (;;) {
        int64_t now = bench_now_ns();
        while (now < end && outstanding < (uint64_t)a->inflight) {
            sent[next % S_RING] = now;
            s_request(conn, inbox, body, a->request_size, next++);
            outstanding++;
        }
        if (outstanding == 0)
            break;
        natsMsg *msg = NULL;
        if (natsSubscription_NextMsg(&msg, sub, 2000) != NATS_OK)
            break; /* lost: stop rather than wait forever */
        uint64_t seq = UINT64_MAX;
        if (natsMsg_GetDataLength(msg) >= 8)
            memcpy(&seq, natsMsg_GetData(msg), 8);
        natsMsg_Destroy(msg);
        if (seq >= next)
            continue;
        now = bench_now_ns();
        outstanding--;
        if (now >= start && now < end) {
            in_window++;
            bench_stats_add(stats, now - sent[seq % S_RING]);
        }
    }
    json_object *out = bench_closed_loop_json(a->size, a->request_size, a->inflight, a->seconds,
                                              outstanding, in_window, stats);
    json_object_object_add(out, "tls", json_object_new_boolean(1));
    json_object_object_add(out, "send_asap", json_object_new_boolean(a->send_asap));
    puts(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
    json_object_put(out);
    bench_stats_destroy(&stats);
    free(sent);
    free(body);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(conn);
    return outstanding ? 1 : 0;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"url", required_argument, 0, 'u'},      {"ca", required_argument, 0, 'c'},
        {"size", required_argument, 0, 's'},     {"request-size", required_argument, 0, 'r'},
        {"inflight", required_argument, 0, 'n'}, {"seconds", required_argument, 0, 't'},
        {"warmup", required_argument, 0, 'w'},   {"send-asap", no_argument, 0, 'a'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    s_args_t a = {.size = 512, .request_size = 512, .inflight = 128, .seconds = 5, .warmup = 1};
    int opt, index = 0;
    while ((opt = getopt_long(argc, argv, "", options, &index)) != -1) {
        const char *name = options[index].name;
        switch (opt) {
        case 'u': a.url = optarg; break;
        case 'c': a.ca = optarg; break;
        case 's': a.size = bench_arg_long("nats-rr", name, optarg); break;
        case 'r': a.request_size = bench_arg_long("nats-rr", name, optarg); break;
        case 'n': a.inflight = bench_arg_long("nats-rr", name, optarg); break;
        case 't': a.seconds = bench_arg_long("nats-rr", name, optarg); break;
        case 'w': a.warmup = atol(optarg); break;
        case 'a': a.send_asap = true; break;
        case 'h':
            puts("usage: nats-rr --url tls://localhost:PORT --ca CA.pem [--size BYTES]\n"
                 "               [--request-size BYTES] [--inflight N] [--seconds S] [--warmup S]\n"
                 "               [--send-asap]");
            return 0;
        default: return 2;
        }
    }
    if (!a.url || !a.ca || a.size < 8 || a.request_size < 8 || a.inflight > S_RING / 2) {
        fprintf(stderr, "nats-rr: --url and --ca are required; sizes of at least 8 bytes\n");
        return 2;
    }
    /* Fork before libnats starts its threads. */
    fflush(stdout);
    pid_t responder = fork();
    if (responder == 0)
        _exit(s_responder(&a));
    int rc = s_requester(&a);
    kill(responder, SIGTERM);
    for (int i = 0; i < 20 && waitpid(responder, NULL, WNOHANG) != responder; i++)
        usleep(100000);
    if (kill(responder, 0) == 0) {
        kill(responder, SIGKILL);
        waitpid(responder, NULL, 0);
    }
    nats_Close();
    return rc;
}
