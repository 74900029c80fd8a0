/*  swarm - many agents in one process, each with its own certificate and
    CURVE identity, for the broker's load test (tests/integration/test-swarm.sh).

    swarm --certs DIR --issue N
        issues the certificates sw-0001 .. sw-N with the CA library
        (those already there are kept)
    swarm --certs DIR --policy PDIR --broker EP --stages 250,500,1000
          [--provider ID --dataset D --purpose P --subject ID]
        for each stage: connects agents up to the stage's count (each says
        HELLO, with the policy version so the broker need not send the
        policy, and waits for WELCOME), then every connected agent sends
        one request and waits for its answer; prints
          "stage N connected C answered A ok K"
        and reads a line from stdin before going on (the driver measures
        the broker meanwhile). After the last stage and one more line,
        closes every socket and prints "disconnected". */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "ca.h"
#include "envelope.h"
#include "policy.h"

#define S_WAIT_MS 120000

typedef struct {
    char agency[16];
    sbi_crypto_t *crypto;
    zsock_t *sock;
    bool welcomed;
    bool waiting;
    bool ok;
    uint8_t request[SBI_ID_SIZE];
} s_agent_t;

static sbi_trust_t *s_trust;
static const sbi_cert_t *s_broker, *s_provider;
static const uint8_t *s_version;
static uint8_t s_subject_key[32];
static const char *s_dataset = "swarm.echo", *s_purpose = "load-test",
                  *s_subject = "900101-1234567";

static int s_issue(const char *certs, int n)
{
    for (int i = 1; i <= n; i++) {
        char agency[16], path[4096], err[512];
        snprintf(agency, sizeof agency, "sw-%04d", i);
        snprintf(path, sizeof path, "%s/%s.cert", certs, agency);
        if (access(path, F_OK) == 0)
            continue;
        if (sbi_ca_issue(certs, SBI_CERT_AGENCY, agency, agency, 30, false, NULL, err, sizeof err)
            != SB_OK) {
            fprintf(stderr, "swarm: %s\n", err);
            return 1;
        }
    }
    printf("issued %d\n", n);
    return 0;
}

static int s_send(s_agent_t *a, Sharebus__Header *h, const sbi_cert_t *to,
                  const Sharebus__Payload *payload)
{
    zframe_t *frame = NULL;
    int rc = sbi_envelope_seal(a->crypto, to, h, payload, &frame);
    if (rc == SB_OK && zframe_send(&frame, a->sock, ZFRAME_DONTWAIT) != 0) {
        zframe_destroy(&frame);
        rc = SB_EUNAVAILABLE;
    }
    return rc;
}

/* HELLO, as agents say it on connecting and every 5 s after: the broker
   forgets the route of an agent silent for 20 s. */
static int s_hello(s_agent_t *a)
{
    sbi_header_t h;
    sbi_header_init(&h, SHAREBUS__KIND__KIND_HELLO, a->agency, "broker");
    h.header.policy_version = (ProtobufCBinaryData){32, (uint8_t *) s_version};
    return s_send(a, &h.header, s_broker, NULL);
}

static int s_connect(s_agent_t *a, const char *certs, const char *endpoint, int index)
{
    char path[4096];
    snprintf(a->agency, sizeof a->agency, "sw-%04d", index);
    snprintf(path, sizeof path, "%s/%s.key", certs, a->agency);
    sbi_keys_t keys;
    const sbi_cert_t *cert = sbi_trust_find(s_trust, a->agency);
    if (!cert || sbi_keys_load(path, &keys) != SB_OK) {
        fprintf(stderr, "swarm: no certificate or key for %s\n", a->agency);
        return -1;
    }
    keys.cert = *cert;
    a->crypto = sbi_crypto_new(&keys);
    a->sock = zsock_new(ZMQ_DEALER);
    zsock_set_curve_serverkey_bin(a->sock, s_broker->curve_public);
    zsock_set_curve_publickey_bin(a->sock, keys.cert.curve_public);
    zsock_set_curve_secretkey_bin(a->sock, keys.curve_secret);
    zsock_set_linger(a->sock, 0);
    sbi_keys_wipe(&keys);
    if (zsock_connect(a->sock, "%s", endpoint) != 0)
        return -1;
    return s_hello(a) == SB_OK ? 0 : -1;
}

static int s_request(s_agent_t *a)
{
    uint8_t ref[SBI_HASH_SIZE];
    if (sbi_subject_ref(s_subject_key, s_subject, ref) != SB_OK)
        return -1;
    char *fields[] = {"exam_date"};
    sbi_header_t h;
    sbi_header_init(&h, SHAREBUS__KIND__KIND_REQUEST, a->agency, s_provider->agency);
    h.header.dataset = (char *) s_dataset;
    h.header.purpose = (char *) s_purpose;
    h.header.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, ref};
    h.header.fields = fields;
    h.header.n_fields = 1;
    h.header.expires_ms = h.header.created_ms + 60000;
    h.header.policy_version = (ProtobufCBinaryData){32, (uint8_t *) s_version};
    Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
    payload.subject_id = (char *) s_subject;
    memcpy(a->request, h.message_id, SBI_ID_SIZE);
    a->waiting = true;
    return s_send(a, &h.header, s_provider, &payload);
}

static void s_receive(s_agent_t *a)
{
    zframe_t *frame = zframe_recv(a->sock);
    sbi_envelope_t env;
    if (frame && sbi_envelope_decode(&env, zframe_data(frame), zframe_size(frame)) == SB_OK) {
        const Sharebus__Header *h = env.header;
        bool answers = h->correlation_id.len == SBI_ID_SIZE
                       && memcmp(h->correlation_id.data, a->request, SBI_ID_SIZE) == 0;
        if (h->kind == SHAREBUS__KIND__KIND_WELCOME)
            a->welcomed = true;
        else if (a->waiting && answers && (h->kind == SHAREBUS__KIND__KIND_REPLY
                                           || h->kind == SHAREBUS__KIND__KIND_ERROR)) {
            a->waiting = false;
            a->ok = h->kind == SHAREBUS__KIND__KIND_REPLY;
            if (!a->ok)
                fprintf(stderr, "swarm: %s: %s: %s\n", a->agency,
                        sb_errname(sbi_error_code(h->error)), h->reason);
        }
        sbi_envelope_clear(&env);
    }
    zframe_destroy(&frame);
}

/* Polls agents [0, n) until `done` holds for all of them, or S_WAIT_MS. */
static void s_pump(s_agent_t *agents, int n, bool (*done)(const s_agent_t *))
{
    zmq_pollitem_t *items = calloc((size_t) n, sizeof *items);
    for (int i = 0; i < n; i++)
        items[i] = (zmq_pollitem_t){zsock_resolve(agents[i].sock), 0, ZMQ_POLLIN, 0};
    int64_t deadline = zclock_mono() + S_WAIT_MS, next_hello = zclock_mono() + 5000;
    while (zclock_mono() < deadline && !zsys_interrupted) {
        if (zclock_mono() >= next_hello) {
            for (int i = 0; i < n; i++)
                s_hello(&agents[i]);
            next_hello = zclock_mono() + 5000;
        }
        int left = 0;
        for (int i = 0; i < n; i++)
            left += !done(&agents[i]);
        if (!left)
            break;
        if (zmq_poll(items, n, 200) < 0)
            break;
        for (int i = 0; i < n; i++)
            while (zsock_events(agents[i].sock) & ZMQ_POLLIN)
                s_receive(&agents[i]);
    }
    free(items);
}

static bool s_welcomed(const s_agent_t *a) { return a->welcomed; }
static bool s_answered(const s_agent_t *a) { return !a->waiting; }

static void s_wait_line(void)
{
    char line[64];
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        return;
}

static int s_run(const char *certs, const char *policy_dir, const char *endpoint, char *stages)
{
    char err[512], path[4096];
    s_trust = sbi_trust_new(certs, err, sizeof err);
    if (!s_trust)
        return fprintf(stderr, "swarm: %s\n", err), 1;
    s_broker = sbi_trust_find(s_trust, "broker");
    snprintf(path, sizeof path, "%s/subject.key", certs);
    zlistx_t *errors = zlistx_new();
    zlistx_set_destructor(errors, (zlistx_destructor_fn *) zstr_free);
    sbi_policy_t *policy = sbi_policy_load(policy_dir, NULL, errors);
    zlistx_destroy(&errors);
    if (!s_broker || !s_provider || !policy || sbi_secret_load(path, s_subject_key) != SB_OK)
        return fprintf(stderr, "swarm: certificates, policy or subject key missing\n"), 1;
    s_version = sbi_policy_version(policy);

    int counts[16], n_stages = 0;
    for (char *s = strtok(stages, ","); s && n_stages < 16; s = strtok(NULL, ","))
        counts[n_stages++] = atoi(s);
    int max = counts[n_stages - 1];
    s_agent_t *agents = calloc((size_t) max, sizeof *agents);
    int connected = 0;
    for (int st = 0; st < n_stages; st++) {
        for (; connected < counts[st]; connected++)
            if (s_connect(&agents[connected], certs, endpoint, connected + 1) != 0)
                return 1;
        s_pump(agents, connected, s_welcomed);
        int welcomed = 0, answered = 0, ok = 0;
        for (int i = 0; i < connected; i++) {
            welcomed += agents[i].welcomed;
            agents[i].ok = false;
            if (s_request(&agents[i]) != 0)
                return 1;
        }
        s_pump(agents, connected, s_answered);
        for (int i = 0; i < connected; i++) {
            answered += !agents[i].waiting;
            ok += agents[i].ok;
        }
        printf("stage %d connected %d welcomed %d answered %d ok %d\n", st + 1, connected,
               welcomed, answered, ok);
        s_wait_line();
    }
    for (int i = 0; i < connected; i++) {
        zsock_destroy(&agents[i].sock);
        sbi_crypto_destroy(&agents[i].crypto);
    }
    free(agents);
    printf("disconnected\n");
    fflush(stdout);
    s_wait_line();
    sbi_policy_destroy(&policy);
    sbi_trust_destroy(&s_trust);
    return 0;
}

int main(int argc, char **argv)
{
    sbi_init();
    static const struct option options[] = {
        {"certs", required_argument, 0, 'c'},    {"issue", required_argument, 0, 'i'},
        {"policy", required_argument, 0, 'P'},   {"broker", required_argument, 0, 'b'},
        {"stages", required_argument, 0, 's'},   {"provider", required_argument, 0, 'p'},
        {"dataset", required_argument, 0, 'd'},  {"purpose", required_argument, 0, 'u'},
        {"subject", required_argument, 0, 'S'},  {0, 0, 0, 0}};
    const char *certs = NULL, *policy = NULL, *broker = NULL, *provider = "nhis";
    char *stages = NULL;
    int issue = 0, opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'c': certs = optarg; break;
        case 'i': issue = atoi(optarg); break;
        case 'P': policy = optarg; break;
        case 'b': broker = optarg; break;
        case 's': stages = optarg; break;
        case 'p': provider = optarg; break;
        case 'd': s_dataset = optarg; break;
        case 'u': s_purpose = optarg; break;
        case 'S': s_subject = optarg; break;
        default: return 2;
        }
    }
    if (!certs || (!issue && (!policy || !broker || !stages)))
        return fprintf(stderr, "usage: see tests/swarm.c\n"), 2;
    if (issue)
        return s_issue(certs, issue);
    /* One socket and a few descriptors per agent. */
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    zsys_set_max_sockets(0);    /* as many as the descriptor limit allows */
    zsys_set_logstream(NULL);
    char err[512];
    sbi_trust_t *trust = sbi_trust_new(certs, err, sizeof err);
    s_provider = trust ? sbi_trust_find(trust, provider) : NULL;
    int rc = s_run(certs, policy, broker, stages);
    sbi_trust_destroy(&trust);
    return rc;
}
