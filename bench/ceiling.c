/*  ceiling - the raw transport's ceiling: request/reply round trips through
    a plain CZMQ ROUTER broker between two DEALER peers, CURVE on every
    connection, tcp loopback, forwarding by a routing frame. Nothing else:
    no signatures, no sealing, no policy, no audit. sharebus's full path is
    measured against this, in the same run, with the same sizes and the same
    number of requests in flight.

    ceiling [--size BYTES] [--request-size BYTES] [--inflight N]
            [--seconds S] [--warmup S]

    Forks the broker and the responder as processes of their own (as the
    sharebus broker and agents are), runs the requester, and prints one JSON
    object: round_trips_per_s and latency percentiles. Requests carry
    --request-size bytes (default 512, about a sharebus request envelope),
    replies --size bytes (default 512).
*/
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <czmq.h>
#include <sodium.h>

#include "stats.h"

#define S_RING 65536 /* send times, indexed by sequence number */

typedef struct {
    uint8_t server_public[32], server_secret[32];
    uint8_t requester_public[32], requester_secret[32];
    uint8_t responder_public[32], responder_secret[32];
} s_keys_t;

typedef struct {
    long size, request_size, inflight, seconds, warmup;
} s_args_t;

static zsock_t *s_dealer(const s_keys_t *k, const uint8_t *pub, const uint8_t *sec,
                         const char *identity, int port)
{
    zsock_t *sock = zsock_new(ZMQ_DEALER);
    zsock_set_identity(sock, identity);
    zsock_set_curve_serverkey_bin(sock, k->server_public);
    zsock_set_curve_publickey_bin(sock, pub);
    zsock_set_curve_secretkey_bin(sock, sec);
    zsock_set_sndhwm(sock, 100000);
    zsock_set_rcvhwm(sock, 100000);
    zsock_set_linger(sock, 0);
    zsock_connect(sock, "tcp://127.0.0.1:%d", port);
    return sock;
}

/* The broker: [from][to][body] in, [to][from][body] out. Writes its port
   to `fd` once bound. */
static int s_broker(const s_keys_t *k, int fd)
{
    zactor_t *auth = zactor_new(zauth, NULL);
    zstr_sendx(auth, "CURVE", CURVE_ALLOW_ANY, NULL);
    zsock_wait(auth);
    zsock_t *router = zsock_new(ZMQ_ROUTER);
    zsock_set_zap_domain(router, "ceiling");
    zsock_set_curve_server(router, 1);
    zsock_set_curve_publickey_bin(router, k->server_public);
    zsock_set_curve_secretkey_bin(router, k->server_secret);
    zsock_set_router_mandatory(router, 1);
    zsock_set_sndhwm(router, 100000);
    zsock_set_rcvhwm(router, 100000);
    zsock_set_linger(router, 0);
    zsock_set_rcvtimeo(router, 200); /* to see zsys_interrupted: SIGTERM may land elsewhere */
    int port = zsock_bind(router, "tcp://127.0.0.1:*");
    if (write(fd, &port, sizeof port) != sizeof port || port < 0)
        return 1;
    close(fd);
    while (!zsys_interrupted) {
        zmsg_t *msg = zmsg_recv(router);
        if (!msg)
            continue;
        if (zmsg_size(msg) != 3) {
            zmsg_destroy(&msg);
            continue;
        }
        zframe_t *from = zmsg_pop(msg);
        zframe_t *to = zmsg_pop(msg);
        zmsg_prepend(msg, &from);
        zmsg_prepend(msg, &to);
        zmsg_send(&msg, router); /* unroutable: dropped, like a gone peer */
        zmsg_destroy(&msg);
    }
    zsock_destroy(&router);
    zactor_destroy(&auth);
    return 0;
}

/* The responder: answers every request with `size` bytes that start with
   the request's sequence number. */
static int s_responder(const s_keys_t *k, int port, long size)
{
    zsock_t *sock = s_dealer(k, k->responder_public, k->responder_secret, "rsp", port);
    zsock_set_rcvtimeo(sock, 200);
    uint8_t *body = calloc(1, (size_t)size);
    while (!zsys_interrupted) {
        zmsg_t *msg = zmsg_recv(sock);
        if (!msg)
            continue;
        zframe_t *from = zmsg_pop(msg);
        zframe_t *request = zmsg_pop(msg);
        if (from && request && zframe_size(request) >= 8) {
            memcpy(body, zframe_data(request), 8);
            zframe_t *reply = zframe_new(body, (size_t)size);
            zframe_send(&from, sock, ZFRAME_MORE);
            zframe_send(&reply, sock, 0);
        }
        zframe_destroy(&from);
        zframe_destroy(&request);
        zmsg_destroy(&msg);
    }
    free(body);
    zsock_destroy(&sock);
    return 0;
}

static void s_send(zsock_t *sock, uint8_t *body, long size, uint64_t seq)
{
    memcpy(body, &seq, 8);
    zstr_sendm(sock, "rsp");
    zframe_t *frame = zframe_new(body, (size_t)size);
    zframe_send(&frame, sock, 0);
}

/* Receives one reply; its sequence number, or UINT64_MAX on none. */
static uint64_t s_recv(zsock_t *sock)
{
    zmsg_t *msg = zmsg_recv(sock);
    uint64_t seq = UINT64_MAX;
    if (msg && zmsg_size(msg) == 2 && zframe_size(zmsg_last(msg)) >= 8)
        memcpy(&seq, zframe_data(zmsg_last(msg)), 8);
    zmsg_destroy(&msg);
    return seq;
}

/* The requester: waits for the path to answer, then keeps `inflight`
   requests outstanding; counts what completes inside the measured window. */
static int s_requester(const s_keys_t *k, int port, const s_args_t *a)
{
    zsock_t *sock = s_dealer(k, k->requester_public, k->requester_secret, "req", port);
    uint8_t *body = calloc(1, (size_t)a->request_size);
    zsock_set_rcvtimeo(sock, 100);
    int64_t give_up = bench_now_ns() + 10000000000LL;
    uint64_t probe = 1ULL << 63;
    for (;;) { /* the responder may not be connected yet: probe */
        s_send(sock, body, a->request_size, probe);
        uint64_t seq = s_recv(sock);
        if (seq == probe)
            break;
        if (bench_now_ns() > give_up || zsys_interrupted) {
            fprintf(stderr, "ceiling: the responder does not answer\n");
            return 1;
        }
    }
    zsock_set_rcvtimeo(sock, 2000);
    int64_t *sent = calloc(S_RING, sizeof *sent);
    bench_stats_t *stats = bench_stats_new();
    int64_t start = bench_now_ns() + a->warmup * 1000000000LL;
    int64_t end = start + a->seconds * 1000000000LL;
    uint64_t next = 0, done = 0, outstanding = 0, in_window = 0;
    while (!zsys_interrupted) {
        int64_t now = bench_now_ns();
        while (now < end && outstanding < (uint64_t)a->inflight) {
            sent[next % S_RING] = now;
            s_send(sock, body, a->request_size, next++);
            outstanding++;
        }
        if (outstanding == 0)
            break;
        uint64_t seq = s_recv(sock);
        if (seq == UINT64_MAX)
            break; /* lost: stop rather than wait forever */
        if (seq >= next)
            continue; /* a late probe */
        now = bench_now_ns();
        outstanding--;
        done++;
        if (now >= start && now < end) {
            in_window++;
            bench_stats_add(stats, now - sent[seq % S_RING]);
        }
    }
    json_object *out = bench_closed_loop_json(a->size, a->request_size, a->inflight, a->seconds,
                                              outstanding, in_window, stats);
    puts(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
    json_object_put(out);
    bench_stats_destroy(&stats);
    free(sent);
    free(body);
    zsock_destroy(&sock);
    return outstanding ? 1 : 0;
}

static pid_t s_fork(int (*child)(const s_keys_t *, int, long), const s_keys_t *k, int arg,
                    long arg2)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(child(k, arg, arg2));
    return pid;
}

/* SIGTERM, then SIGKILL if it has not gone within two seconds. */
static void s_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    for (int i = 0; i < 20; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        usleep(100000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static int s_broker_child(const s_keys_t *k, int fd, long unused)
{
    (void)unused;
    return s_broker(k, fd);
}

int main(int argc, char **argv)
{
    static const struct option options[] = {{"size", required_argument, 0, 's'},
                                            {"request-size", required_argument, 0, 'r'},
                                            {"inflight", required_argument, 0, 'n'},
                                            {"seconds", required_argument, 0, 't'},
                                            {"warmup", required_argument, 0, 'w'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    s_args_t a = {.size = 512, .request_size = 512, .inflight = 128, .seconds = 5, .warmup = 1};
    int opt, index = 0;
    while ((opt = getopt_long(argc, argv, "", options, &index)) != -1) {
        const char *name = options[index].name;
        switch (opt) {
        case 's': a.size = bench_arg_long("ceiling", name, optarg); break;
        case 'r': a.request_size = bench_arg_long("ceiling", name, optarg); break;
        case 'n': a.inflight = bench_arg_long("ceiling", name, optarg); break;
        case 't': a.seconds = bench_arg_long("ceiling", name, optarg); break;
        case 'w': a.warmup = atol(optarg); break;
        case 'h':
            puts("usage: ceiling [--size BYTES] [--request-size BYTES] [--inflight N] "
                 "[--seconds S] [--warmup S]");
            return 0;
        default: return 2;
        }
    }
    if (a.size < 8 || a.request_size < 8 || a.inflight > S_RING / 2) {
        fprintf(stderr, "ceiling: sizes of at least 8 bytes, at most %d in flight\n", S_RING / 2);
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    /* Keys before any socket: the children must not inherit a ZeroMQ context. */
    s_keys_t k;
    crypto_box_keypair(k.server_public, k.server_secret);
    crypto_box_keypair(k.requester_public, k.requester_secret);
    crypto_box_keypair(k.responder_public, k.responder_secret);
    int pipefd[2];
    if (pipe(pipefd) != 0)
        return 1;
    pid_t broker = s_fork(s_broker_child, &k, pipefd[1], 0);
    close(pipefd[1]);
    int port = -1;
    if (read(pipefd[0], &port, sizeof port) != sizeof port || port < 0) {
        fprintf(stderr, "ceiling: the broker did not bind\n");
        kill(broker, SIGTERM);
        waitpid(broker, NULL, 0);
        return 1;
    }
    close(pipefd[0]);
    pid_t responder = s_fork(s_responder, &k, port, a.size);
    int rc = s_requester(&k, port, &a);
    s_stop(responder);
    s_stop(broker);
    sodium_memzero(&k, sizeof k);
    return rc;
}
