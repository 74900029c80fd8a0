/*  agents - what 1,000 connected agents cost the broker.

    agents issue --certs DIR [--count N]
    agents connect --certs DIR --broker EP --pid BROKER_PID [--count N]
                   [--provider ID --dataset D --purpose P]

    `issue` makes N agency certificates (bench-a0000 ...) in the bus's
    certificate directory with the CA library (certs/ca.h); start the broker
    after it, so that it trusts them. The policy needs no rule for them:
    connecting needs only a certificate.

    `connect` opens N DEALER sockets in this one process, each with its own
    agency's CURVE key, sends a signed HELLO from each and waits for every
    WELCOME, then one REQUEST each (which the policy refuses: no rule names
    these agencies) and waits for every answer, then disconnects. It reads
    the broker's resident memory and open file descriptors from
    /proc/PID/status and /proc/PID/fd before, with all connected, after the
    requests, and after the disconnect. Prints one JSON object. */
#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca.h"
#include "envelope.h"
#include "stats.h"

#define S_WAIT_MS 120000

typedef struct {
    const char *certs, *broker, *provider, *dataset, *purpose;
    long count, pid;
} s_args_t;

typedef struct {
    char agency[SBI_AGENCY_MAX + 1];
    sbi_crypto_t *crypto;
    zsock_t *sock;
    uint8_t waiting[SBI_ID_SIZE]; /* the message an answer is expected to */
    bool answered;
} s_agent_t;

static void s_agency(long i, char out[SBI_AGENCY_MAX + 1])
{
    snprintf(out, SBI_AGENCY_MAX + 1, "bench-a%04ld", i);
}

static int cmd_issue(const s_args_t *a)
{
    int64_t start = bench_now_ns();
    long issued = 0;
    for (long i = 0; i < a->count; i++) {
        char agency[SBI_AGENCY_MAX + 1], path[4200], err[512];
        s_agency(i, agency);
        snprintf(path, sizeof path, "%s/%s.cert", a->certs, agency);
        if (access(path, F_OK) == 0)
            continue;
        uint64_t serial;
        if (sbi_ca_issue(a->certs, SBI_CERT_AGENCY, agency, agency, 2, false, &serial, err,
                         sizeof err) != SB_OK) {
            fprintf(stderr, "agents: %s\n", err);
            return 1;
        }
        issued++;
    }
    double secs = (double)(bench_now_ns() - start) / 1e9;
    json_object *out = json_object_new_object();
    json_object_object_add(out, "issued", json_object_new_int64(issued));
    bench_json_put(out, "issue_s", secs);
    puts(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
    json_object_put(out);
    return 0;
}

/* The broker's VmRSS, VmHWM (KiB), threads and open descriptors. */
static json_object *s_sample(long pid)
{
    char path[64], line[256];
    json_object *out = json_object_new_object();
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) {
        long value;
        if (sscanf(line, "VmRSS: %ld", &value) == 1)
            bench_json_put(out, "rss_mib", (double)value / 1024);
        else if (sscanf(line, "VmHWM: %ld", &value) == 1)
            bench_json_put(out, "peak_rss_mib", (double)value / 1024);
        else if (sscanf(line, "Threads: %ld", &value) == 1)
            json_object_object_add(out, "threads", json_object_new_int64(value));
    }
    if (f)
        fclose(f);
    snprintf(path, sizeof path, "/proc/%ld/fd", pid);
    DIR *dir = opendir(path);
    long fds = 0;
    for (struct dirent *e; dir && (e = readdir(dir));)
        fds += e->d_name[0] != '.';
    if (dir)
        closedir(dir);
    json_object_object_add(out, "open_fds", json_object_new_int64(fds));
    return out;
}

static int s_open(s_agent_t *agent, sbi_trust_t *trust, const s_args_t *a)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.key", a->certs, agent->agency);
    sbi_keys_t keys;
    const sbi_cert_t *cert = sbi_trust_find(trust, agent->agency);
    if (!cert || sbi_keys_load(path, &keys) != SB_OK) {
        fprintf(stderr, "agents: no certificate or key for %s in %s (agents issue first)\n",
                agent->agency, a->certs);
        return -1;
    }
    keys.cert = *cert;
    agent->crypto = sbi_crypto_new(&keys);
    agent->sock = zsock_new(ZMQ_DEALER);
    zsock_set_curve_serverkey_bin(agent->sock, sbi_trust_find(trust, "broker")->curve_public);
    zsock_set_curve_publickey_bin(agent->sock, keys.cert.curve_public);
    zsock_set_curve_secretkey_bin(agent->sock, keys.curve_secret);
    zsock_set_linger(agent->sock, 0);
    sbi_keys_wipe(&keys);
    return zsock_connect(agent->sock, "%s", a->broker);
}

static void s_send(s_agent_t *agent, sbi_trust_t *trust, Sharebus__Kind kind, const s_args_t *a)
{
    sbi_header_t h;
    Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
    uint8_t ref[SBI_HASH_SIZE];
    const sbi_cert_t *to = sbi_trust_find(trust, "broker");
    if (kind == SHAREBUS__KIND__KIND_HELLO)
        sbi_header_init(&h, kind, agent->agency, "broker");
    else {
        sbi_header_init(&h, kind, agent->agency, a->provider);
        h.header.dataset = (char *)a->dataset;
        h.header.purpose = (char *)a->purpose;
        h.header.expires_ms = h.header.created_ms + 10000;
        randombytes_buf(ref, sizeof ref);
        h.header.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, ref};
        payload.subject_id = "B0000000";
        to = sbi_trust_find(trust, a->provider);
    }
    zframe_t *frame = NULL;
    if (!to ||
        sbi_envelope_seal(agent->crypto, to, &h.header,
                          kind == SHAREBUS__KIND__KIND_HELLO ? NULL : &payload, &frame) != SB_OK) {
        fprintf(stderr, "agents: cannot seal for %s\n", agent->agency);
        return;
    }
    memcpy(agent->waiting, h.message_id, SBI_ID_SIZE);
    agent->answered = false;
    zframe_send(&frame, agent->sock, 0);
}

/* True when `frame` answers what `agent` waits for: a WELCOME after a
   HELLO, or an ERROR/REPLY correlated to its request. */
static bool s_answers(s_agent_t *agent, zframe_t *frame, bool hello)
{
    sbi_envelope_t env;
    if (sbi_envelope_decode(&env, zframe_data(frame), zframe_size(frame)) != SB_OK)
        return false;
    const Sharebus__Header *h = env.header;
    bool yes = hello ? h->kind == SHAREBUS__KIND__KIND_WELCOME
                     : h->correlation_id.len == SBI_ID_SIZE &&
                           memcmp(h->correlation_id.data, agent->waiting, SBI_ID_SIZE) == 0;
    sbi_envelope_clear(&env);
    return yes;
}

/* Waits until every agent has its answer; returns how many did. */
static long s_collect(s_agent_t *agents, long n, bool hello, double *secs)
{
    zmq_pollitem_t *items = calloc((size_t)n, sizeof *items);
    for (long i = 0; i < n; i++)
        items[i] = (zmq_pollitem_t){zsock_resolve(agents[i].sock), 0, ZMQ_POLLIN, 0};
    long answered = 0;
    int64_t start = bench_now_ns(), deadline = start + (int64_t)S_WAIT_MS * 1000000;
    while (answered < n && bench_now_ns() < deadline && !zsys_interrupted) {
        if (zmq_poll(items, (int)n, 1000) <= 0)
            continue;
        for (long i = 0; i < n; i++) {
            if (!(items[i].revents & ZMQ_POLLIN))
                continue;
            zframe_t *frame;
            while ((frame = zframe_recv_nowait(agents[i].sock))) {
                if (!agents[i].answered && s_answers(&agents[i], frame, hello)) {
                    agents[i].answered = true;
                    answered++;
                }
                zframe_destroy(&frame);
            }
        }
    }
    *secs = (double)(bench_now_ns() - start) / 1e9;
    free(items);
    return answered;
}

static int cmd_connect(const s_args_t *a)
{
    char err[512];
    if (!a->broker || a->pid <= 0) {
        fprintf(stderr, "agents connect: --broker and --pid are required\n");
        return 2;
    }
    /* Each DEALER is a ZeroMQ socket: raise the context's limit first. */
    zsys_set_max_sockets((size_t)a->count + 64);
    sbi_trust_t *trust = sbi_trust_new(a->certs, err, sizeof err);
    if (!trust) {
        fprintf(stderr, "agents: %s\n", err);
        return 1;
    }
    json_object *out = json_object_new_object();
    json_object_object_add(out, "agents", json_object_new_int64(a->count));
    json_object_object_add(out, "before", s_sample(a->pid));
    s_agent_t *agents = calloc((size_t)a->count, sizeof *agents);
    int rc = 0;
    for (long i = 0; rc == 0 && i < a->count; i++) {
        s_agency(i, agents[i].agency);
        rc = s_open(&agents[i], trust, a);
    }
    double secs = 0;
    long n = 0;
    if (rc == 0) {
        for (long i = 0; i < a->count; i++)
            s_send(&agents[i], trust, SHAREBUS__KIND__KIND_HELLO, a);
        n = s_collect(agents, a->count, true, &secs);
        json_object_object_add(out, "welcomed", json_object_new_int64(n));
        bench_json_put(out, "connect_all_s", secs);
        zclock_sleep(1000); /* let the broker settle after the burst */
        json_object_object_add(out, "connected", s_sample(a->pid));
        for (long i = 0; i < a->count; i++)
            s_send(&agents[i], trust, SHAREBUS__KIND__KIND_REQUEST, a);
        n = s_collect(agents, a->count, false, &secs);
        json_object_object_add(out, "requests_answered", json_object_new_int64(n));
        bench_json_put(out, "requests_all_s", secs);
        json_object_object_add(out, "after_requests", s_sample(a->pid));
    }
    for (long i = 0; i < a->count; i++) {
        zsock_destroy(&agents[i].sock);
        sbi_crypto_destroy(&agents[i].crypto);
    }
    free(agents);
    if (rc == 0) {
        zclock_sleep(3000);
        json_object_object_add(out, "disconnected", s_sample(a->pid));
        puts(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
    }
    json_object_put(out);
    sbi_trust_destroy(&trust);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {{"certs", required_argument, 0, 'c'},
                                            {"broker", required_argument, 0, 'b'},
                                            {"pid", required_argument, 0, 'P'},
                                            {"count", required_argument, 0, 'n'},
                                            {"provider", required_argument, 0, 'p'},
                                            {"dataset", required_argument, 0, 'd'},
                                            {"purpose", required_argument, 0, 'u'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    s_args_t a = {
        .count = 1000, .provider = "nhis", .dataset = "bench.record-512", .purpose = "benchmark"};
    const char *usage = "usage: agents issue --certs DIR [--count N]\n"
                        "       agents connect --certs DIR --broker EP --pid BROKER_PID "
                        "[--count N]\n"
                        "                      [--provider ID --dataset D --purpose P]\n";
    int opt, index = 0;
    while ((opt = getopt_long(argc, argv, "", options, &index)) != -1) {
        const char *name = options[index].name;
        switch (opt) {
        case 'c': a.certs = optarg; break;
        case 'b': a.broker = optarg; break;
        case 'P': a.pid = bench_arg_long("agents", name, optarg); break;
        case 'n': a.count = bench_arg_long("agents", name, optarg); break;
        case 'p': a.provider = optarg; break;
        case 'd': a.dataset = optarg; break;
        case 'u': a.purpose = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        default: return 2;
        }
    }
    const char *command = optind < argc ? argv[optind] : "";
    if (!a.certs || a.count > 9999 || optind + 1 != argc) {
        fputs(usage, stderr);
        return 2;
    }
    sbi_init();
    sbi_log_setup("agents", SBI_LOG_WARNING);
    if (strcmp(command, "issue") == 0)
        return cmd_issue(&a);
    if (strcmp(command, "connect") == 0)
        return cmd_connect(&a);
    fputs(usage, stderr);
    return 2;
}
