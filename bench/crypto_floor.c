/*  crypto-floor - the round trips per second that this design's public-key
    signature work alone allows on this machine: the limit the full path can
    approach, measured with libsodium in the same run.

    crypto-floor [--threads N] [--seconds S] [--size BYTES] [--agent-verify]

    One round trip of the full path performs, counted from the code
    (core/envelope.c, agent/agent.c, agent/keys.c, agent/front.c,
    broker/route.c, audit/audit.c), when both agents are current and each
    envelope is signed by itself (one in flight):

      Ed25519 sign     2  consumer agent signs the REQUEST header,
                          provider agent signs the REPLY header
                          (sbi_envelope_seal)
      Ed25519 verify   2  broker verifies the REQUEST and the REPLY
                          (broker_route)
      BLAKE2b MAC      4  keyed, over header and signature: the sending agent
                          makes it (sbi_envelope_seal), the receiving agent
                          checks it instead of an Ed25519 verify
                          (agent_keys_verify -> sbi_envelope_verify_mac)
      box seal         2  crypto_box_easy_afternm: the request's payload (the
                          subject id) and the reply's record
      box open         2  crypto_box_open_easy_afternm, at the recipients
      BLAKE2b payload  6  each sealed payload hashed once when sealed and
                          once at each of its two verifications
      BLAKE2b audit    6  the hash chain: the broker appends 2 records
                          (request routed, reply forwarded), each agent 2
                          (message sent, message received)
      BLAKE2b keyed    1  the subject reference, at the consumer agent
      random           4  two message ids (16 B), two nonces (24 B)

    Agents sign the envelopes of a loop turn together (batch signatures,
    docs/protocol.md), so with many in flight a round trip needs fewer
    signs and verifies than this counts: bench/run reports how many
    Ed25519 verifies the broker ran per round trip. The floor stays the
    work of envelopes signed one by one, the cost the batching saves.

    With --agent-verify, the design before the MAC (and an agent receiving
    from an agent that predates it): the receiving agents verify the
    Ed25519 signature instead, 4 verifies and no MAC per round trip.

    Each of N threads (default 2: one per core of the target machine) runs
    the work of whole round trips for S seconds. Prints one JSON object:
    round_trips_per_s is the authentication floor (2 signs, 2 verifies and
    4 MACs per round trip, or 2 signs and 4 verifies with --agent-verify;
    every thread busy); all_crypto_round_trips_per_s adds the sealing,
    hashing and randomness for a reply of --size bytes (default 512). The
    *_by_cpu_time figures are what N cores give by the CPU time the threads
    actually got: other work on the machine lowers the clock figures, not
    these. per_round_trip gives the counts of the mode measured. */
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "stats.h"

#define S_HEADER 320         /* a REQUEST/REPLY header as signed: ~300 bytes */
#define S_REQUEST_PAYLOAD 48 /* Payload{subject_id}, packed */
#define S_AUDIT_RECORD 600   /* an audit record with header bytes and signature */

typedef struct {
    bool all;          /* all crypto, or authentication only */
    bool agent_verify; /* agents verify Ed25519 rather than a MAC */
    size_t size;
    int64_t end;
    uint64_t round_trips;
    double cpu_s; /* this thread's CPU time */
} s_job_t;

typedef struct {
    uint8_t sign_pk[32], sign_sk[64];
    uint8_t shared[crypto_box_BEFORENMBYTES];
    uint8_t mac_key[crypto_kdf_KEYBYTES];
    uint8_t subject_key[32];
    uint8_t header[S_HEADER];
    uint8_t *plain, *sealed;
    uint8_t audit[S_AUDIT_RECORD];
} s_keys_t;

static void s_keys_init(s_keys_t *k, size_t size)
{
    uint8_t pk[32], sk[32];
    crypto_sign_keypair(k->sign_pk, k->sign_sk);
    crypto_box_keypair(pk, sk);
    if (crypto_box_beforenm(k->shared, pk, sk) != 0)
        abort();
    crypto_kdf_derive_from_key(k->mac_key, sizeof k->mac_key, 1, "sbenvmac", k->shared);
    randombytes_buf(k->subject_key, sizeof k->subject_key);
    randombytes_buf(k->header, sizeof k->header);
    randombytes_buf(k->audit, sizeof k->audit);
    k->plain = calloc(1, size);
    k->sealed = calloc(1, size + crypto_box_NONCEBYTES + crypto_box_MACBYTES);
    sodium_memzero(sk, sizeof sk);
}

/* The MAC of sbi_envelope_seal: keyed BLAKE2b over header and signature. */
static void s_mac(const s_keys_t *k, const uint8_t sig[crypto_sign_BYTES], uint8_t mac[32])
{
    crypto_generichash_state state;
    crypto_generichash_init(&state, k->mac_key, sizeof k->mac_key, 32);
    crypto_generichash_update(&state, k->header, sizeof k->header);
    crypto_generichash_update(&state, sig, crypto_sign_BYTES);
    crypto_generichash_final(&state, mac, 32);
}

/* A sign and the checks it meets on the way: the broker's verify, then the
   recipient agent's MAC check (or, with agent_verify, its verify). */
static int s_signed_hop(s_keys_t *k, bool agent_verify)
{
    uint8_t sig[crypto_sign_BYTES], mac[32], check[32];
    k->header[0]++;
    crypto_sign_detached(sig, NULL, k->header, sizeof k->header, k->sign_sk);
    if (!agent_verify)
        s_mac(k, sig, mac);
    int bad = crypto_sign_verify_detached(sig, k->header, sizeof k->header, k->sign_pk);
    if (agent_verify)
        return bad | crypto_sign_verify_detached(sig, k->header, sizeof k->header, k->sign_pk);
    s_mac(k, sig, check);
    return bad | sodium_memcmp(mac, check, sizeof mac);
}

/* Seal, hash at seal and at two verifications, open: one payload's trip. */
static int s_sealed_hop(s_keys_t *k, size_t size)
{
    uint8_t hash[32], *nonce = k->sealed;
    size_t sealed_size = crypto_box_NONCEBYTES + crypto_box_MACBYTES + size;
    randombytes_buf(nonce, crypto_box_NONCEBYTES);
    crypto_box_easy_afternm(k->sealed + crypto_box_NONCEBYTES, k->plain, size, nonce, k->shared);
    for (int i = 0; i < 3; i++)
        crypto_generichash(hash, sizeof hash, k->sealed, sealed_size, NULL, 0);
    return crypto_box_open_easy_afternm(k->plain, k->sealed + crypto_box_NONCEBYTES,
                                        sealed_size - crypto_box_NONCEBYTES, nonce, k->shared);
}

static int s_round_trip(s_keys_t *k, const s_job_t *job)
{
    int bad = s_signed_hop(k, job->agent_verify) | s_signed_hop(k, job->agent_verify);
    if (!job->all)
        return bad;
    uint8_t id[16], hash[32];
    randombytes_buf(id, sizeof id);
    crypto_generichash(hash, sizeof hash, (const uint8_t *)"900101-1234567", 14, k->subject_key,
                       sizeof k->subject_key);
    bad |= s_sealed_hop(k, S_REQUEST_PAYLOAD);
    randombytes_buf(id, sizeof id);
    bad |= s_sealed_hop(k, job->size);
    for (int i = 0; i < 6; i++) {
        k->audit[0] = hash[0]++;
        crypto_generichash(hash, sizeof hash, k->audit, sizeof k->audit, NULL, 0);
    }
    return bad;
}

static double s_thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *s_worker(void *arg)
{
    s_job_t *job = arg;
    double cpu = s_thread_cpu();
    s_keys_t k;
    s_keys_init(&k, job->size > S_REQUEST_PAYLOAD ? job->size : S_REQUEST_PAYLOAD);
    while (bench_now_ns() < job->end)
        for (int i = 0; i < 16; i++)
            if (s_round_trip(&k, job) != 0)
                abort(); /* a verification failed: the measurement is void */
            else
                job->round_trips++;
    job->cpu_s = s_thread_cpu() - cpu;
    free(k.plain);
    free(k.sealed);
    sodium_memzero(&k, sizeof k);
    return NULL;
}

/* Round trips per second with `threads` threads for `seconds`, by the
   clock; and in *cpu_rate, what `threads` cores would give by the CPU time
   the threads got (other work on the machine lowers the first, not this). */
static double s_run(int threads, long seconds, bool all, bool agent_verify, size_t size,
                    double *cpu_rate)
{
    pthread_t tid[64];
    s_job_t jobs[64];
    int64_t end = bench_now_ns() + seconds * 1000000000LL;
    for (int i = 0; i < threads; i++) {
        jobs[i] = (s_job_t){.all = all, .agent_verify = agent_verify, .size = size, .end = end};
        pthread_create(&tid[i], NULL, s_worker, &jobs[i]);
    }
    uint64_t total = 0;
    double cpu = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tid[i], NULL);
        total += jobs[i].round_trips;
        cpu += jobs[i].cpu_s;
    }
    *cpu_rate = cpu > 0 ? (double)total / cpu * threads : 0;
    return (double)total / (double)seconds;
}

/* Single-thread operations per second of sign and verify, for the report. */
static void s_unit_rates(json_object *out)
{
    s_keys_t k;
    s_keys_init(&k, 64);
    uint8_t sig[crypto_sign_BYTES];
    int n = 0;
    int64_t start = bench_now_ns();
    for (; bench_now_ns() - start < 500000000; n++)
        crypto_sign_detached(sig, NULL, k.header, sizeof k.header, k.sign_sk);
    bench_json_put(out, "sign_per_s_one_core", n / ((double)(bench_now_ns() - start) / 1e9));
    n = 0;
    start = bench_now_ns();
    for (; bench_now_ns() - start < 500000000; n++)
        if (crypto_sign_verify_detached(sig, k.header, sizeof k.header, k.sign_pk) != 0)
            abort();
    bench_json_put(out, "verify_per_s_one_core", n / ((double)(bench_now_ns() - start) / 1e9));
    free(k.plain);
    free(k.sealed);
    sodium_memzero(&k, sizeof k);
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"threads", required_argument, 0, 'n'}, {"seconds", required_argument, 0, 't'},
        {"size", required_argument, 0, 's'},    {"agent-verify", no_argument, 0, 'a'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    long threads = 2, seconds = 3, size = 512;
    bool agent_verify = false;
    int opt, index = 0;
    while ((opt = getopt_long(argc, argv, "", options, &index)) != -1) {
        const char *name = options[index].name;
        switch (opt) {
        case 'n': threads = bench_arg_long("crypto-floor", name, optarg); break;
        case 't': seconds = bench_arg_long("crypto-floor", name, optarg); break;
        case 's': size = bench_arg_long("crypto-floor", name, optarg); break;
        case 'a': agent_verify = true; break;
        case 'h':
            puts("usage: crypto-floor [--threads N] [--seconds S] [--size BYTES] [--agent-verify]");
            return 0;
        default: return 2;
        }
    }
    if (threads > 64 || sodium_init() < 0)
        return 2;
    json_object *out = json_object_new_object();
    json_object_object_add(out, "threads", json_object_new_int64(threads));
    json_object_object_add(out, "size", json_object_new_int64(size));
    json_object_object_add(out, "agents_verify",
                           json_object_new_string(agent_verify ? "ed25519" : "mac"));
    json_object *per = json_object_new_object();
    const struct {
        const char *name;
        int count;
    } counts[] = {{"ed25519_sign", 2},
                  {"ed25519_verify", agent_verify ? 4 : 2},
                  {"blake2b_mac", agent_verify ? 0 : 4},
                  {"box_seal_afternm", 2},
                  {"box_open_afternm", 2},
                  {"blake2b_payload", 6},
                  {"blake2b_audit_chain", 6},
                  {"blake2b_subject_ref", 1},
                  {"random_ids_and_nonces", 4}};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        json_object_object_add(per, counts[i].name, json_object_new_int(counts[i].count));
    json_object_object_add(out, "per_round_trip", per);
    s_unit_rates(out);
    double cpu_rate;
    bench_json_put(out, "round_trips_per_s",
                   s_run((int)threads, seconds, false, agent_verify, (size_t)size, &cpu_rate));
    bench_json_put(out, "round_trips_per_s_by_cpu_time", cpu_rate);
    bench_json_put(out, "all_crypto_round_trips_per_s",
                   s_run((int)threads, seconds, true, agent_verify, (size_t)size, &cpu_rate));
    bench_json_put(out, "all_crypto_round_trips_per_s_by_cpu_time", cpu_rate);
    puts(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
    json_object_put(out);
    return 0;
}
