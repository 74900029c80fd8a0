/*  rogue - a hostile or misbehaving agent, for the integration tests.

    rogue --certs DIR --agency ID --broker EP MODE [ARG]

    Connects to the broker with ID's keys (or a random CURVE key for
    `stranger`), sends what MODE says and prints the broker's answer to each
    message as "answer: <error name>" ("ok" for a WELCOME or a result,
    "none" when nothing came within two seconds). Modes:

      hello             a well-formed HELLO
      forge             a request whose signature is corrupted
      burst N           N requests sent at once, signed in batches of 25,
                        every fifth with a corrupted signature or batch path:
                        prints "forged-refused F of K" and "others-answered
                        A of N-K" with what the others got
      replay            the same signed request twice
      impersonate AG    a request claiming to come from agency AG
      stale             a request created ten minutes ago
      far-future        a request created at about 2^63 + 5 ms
      garbage           random bytes
      resend FILE...    each file's bytes as one frame (envelopes captured by
                        the broker's --capture): prints "KIND answer" for each
      oversize          a frame over the broker's size limit
      frames N          a request followed by N - 1 empty frames, one message
      front-frames N    (EP is an agent's --listen endpoint, not the broker)
                        as a back-end: a consent list call followed by N - 1
                        empty frames, one message; prints the agent's answer
      flood N           N garbage frames as fast as possible, then a HELLO
      forged-consent    a consent grant with a corrupted consent signature
      long-revoke N     a consent revocation whose reason is N bytes long
      revokes N         N revocations of unknown consents at once: prints
                        "KIND COUNT" for each kind of answer
      ack-reconnect PUB (as a subscriber of resident.address-changed) PUB
                        publishes two events to us; we acknowledge the first
                        and reconnect at once: prints "again N" and
                        "acknowledged-again yes|no"
      stranger          connect with a CURVE key no certificate holds
      strangers N       N connections at once, each with its own such key
      bighead           a signed envelope whose header is over SBI_HEADER_MAX
                        (the frame itself well within ZMQ_MAXMSGSIZE)
      swap              a signed request carrying another request's payload
      asks N SUBJECT    N requests to nhis for the checkup about SUBJECT, at once
      subject-swap A B  a request to nhis for the checkup (exam_date), signed
                        and sealed as it should be, whose header names
                        citizen A (the broker checks A's consent) while the
                        sealed id is B's: nhis's agent must refuse it
      badmac SUBJECT    a request to nhis about SUBJECT (for the checkup,
                        exam_date) with a valid signature and a wrong MAC:
                        the broker passes it, nhis's agent must refuse it
      overreply         (as a provider's agency) take its route with a HELLO,
                        wait for one request and reply with a field the rule
                        does not let flow; prints "waiting", then the answer
      impostor          (with --agency broker) listen on EP as a broker with a
                        fresh CURVE key, until SIGTERM: prints "listening",
                        "event NAME" for each connection event, "message N
                        bytes" for each message, and "received N" at the end
      impostor-real     the same with the broker's real CURVE key (a control:
                        agents that pin the broker's key do talk to it)
      silent SECONDS    say HELLO, then read and ignore everything (a provider
                        that never answers)
      hello-until UNIX  a HELLO, then another on the same connection once the
                        clock has passed UNIX seconds (a certificate that
                        expires while its connection is open)
      backdate SECONDS  re-sign ID's certificate (issued by sharebus-cert) with the
                        root so that its validity ends SECONDS from now
                        (negative: already ended); prints the end, Unix seconds
      keystrings        print every key of the certificate directory, one per
                        line, as Z85 and as hex: the secret and public keys of
                        every *.key file and the subject key (for log greps)
      inspect CAPDIR    try to open every envelope captured in CAPDIR with ID's
                        keys: prints "own N" (addressed to ID, opened), "opened N"
                        (addressed to others, opened) and "sealed N" (not opened)
*/
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "envelope.h"

static sbi_trust_t *s_trust;
static sbi_crypto_t *s_crypto;
static const char *s_agency;

static zsock_t *s_connect(const char *certs, const char *endpoint, bool stranger)
{
    const sbi_cert_t *broker = sbi_trust_find(s_trust, "broker");
    zsock_t *sock = zsock_new(ZMQ_DEALER);
    uint8_t pub[32], sec[32];
    if (stranger)
        crypto_box_keypair(pub, sec);
    else {
        memcpy(pub, sbi_crypto_keys(s_crypto)->cert.curve_public, 32);
        memcpy(sec, sbi_crypto_keys(s_crypto)->curve_secret, 32);
    }
    zsock_set_curve_serverkey_bin(sock, broker->curve_public);
    zsock_set_curve_publickey_bin(sock, pub);
    zsock_set_curve_secretkey_bin(sock, sec);
    zsock_set_linger(sock, 500);
    zsock_set_sndhwm(sock, 1000000);
    zsock_connect(sock, "%s", endpoint);
    return sock;
}

/* The broker's answer to our message `id` (or to anything, id NULL). */
static const char *s_answer(zsock_t *sock, const uint8_t *id)
{
    int64_t deadline = zclock_mono() + 2000;
    while (zclock_mono() < deadline) {
        zpoller_t *poller = zpoller_new(sock, NULL);
        void *which = zpoller_wait(poller, (int) (deadline - zclock_mono()));
        zpoller_destroy(&poller);
        if (!which)
            break;
        zframe_t *frame = zframe_recv(sock);
        sbi_envelope_t env;
        int rc = sbi_envelope_decode(&env, zframe_data(frame), zframe_size(frame));
        zframe_destroy(&frame);
        if (rc != SB_OK)
            continue;
        const Sharebus__Header *h = env.header;
        bool ours = !id || (h->correlation_id.len == SBI_ID_SIZE
                            && memcmp(h->correlation_id.data, id, SBI_ID_SIZE) == 0);
        const char *answer = NULL;
        if (h->kind == SHAREBUS__KIND__KIND_ERROR && (ours || !id))
            answer = sb_errname(sbi_error_code(h->error));
        else if (h->kind == SHAREBUS__KIND__KIND_WELCOME && !id)
            answer = "ok";
        else if (h->kind == SHAREBUS__KIND__KIND_CONSENT_RESULT && ours)
            answer = "ok";
        sbi_envelope_clear(&env);
        if (answer)
            return answer;
    }
    return "none";
}

/* A request for the checkup dataset from us to nhis, as `from`, made
   `age_ms` ago: sealed, to be signed (sbi_envelope_sign_batch). */
static sbi_sealed_t *s_request_sealed(const char *from, uint64_t age_ms, uint8_t id[SBI_ID_SIZE])
{
    sbi_header_t h;
    sbi_header_init(&h, SHAREBUS__KIND__KIND_REQUEST, from, "nhis");
    h.header.created_ms -= age_ms;
    h.header.expires_ms = h.header.created_ms + 5000;
    h.header.dataset = "health.checkup.vision-hearing";
    h.header.purpose = "driver-licence-renewal";
    uint8_t ref[SBI_HASH_SIZE];
    randombytes_buf(ref, sizeof ref);
    h.header.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, ref};
    Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
    payload.subject_id = "000000-0000000";
    sbi_sealed_t *sealed = NULL;
    const sbi_cert_t *to = sbi_trust_find(s_trust, "nhis");
    if (!to || sbi_envelope_seal_later(s_crypto, to, &h.header, &payload, &sealed) != SB_OK)
        exit(3);
    memcpy(id, h.message_id, SBI_ID_SIZE);
    return sealed;
}

/* The same, signed alone. */
static zframe_t *s_request(const char *from, uint64_t age_ms, uint8_t id[SBI_ID_SIZE])
{
    sbi_sealed_t *sealed = s_request_sealed(from, age_ms, id);
    zframe_t *frame = NULL;
    sbi_envelope_sign_batch(s_crypto, &sealed, 1, &frame);
    return frame;
}

static void s_send_and_report(zsock_t *sock, zframe_t **frame_p, const uint8_t *id)
{
    zframe_send(frame_p, sock, 0);
    printf("answer: %s\n", s_answer(sock, id));
}

/* Flips one bit of the envelope's signature, or of its batch path. */
static zframe_t *s_forged(zframe_t **frame_p, bool path)
{
    sbi_envelope_t env;
    if (sbi_envelope_decode(&env, zframe_data(*frame_p), zframe_size(*frame_p)) != SB_OK
        || (path && env.envelope->batch_path.len == 0))
        exit(3);
    if (path)
        env.envelope->batch_path.data[5] ^= 1;
    else
        env.envelope->signature.data[5] ^= 1;
    zframe_t *forged = zframe_new(NULL, sharebus__envelope__get_packed_size(env.envelope));
    sharebus__envelope__pack(env.envelope, zframe_data(forged));
    sbi_envelope_clear(&env);
    zframe_destroy(frame_p);
    return forged;
}

/* A message of `kind` from us to the broker with `payload`, sealed for it;
   its message id in `id`. */
static zframe_t *s_for_broker(Sharebus__Kind kind, const Sharebus__Payload *payload,
                              uint8_t id[SBI_ID_SIZE])
{
    sbi_header_t h;
    sbi_header_init(&h, kind, s_agency, "broker");
    zframe_t *frame = NULL;
    if (sbi_envelope_seal(s_crypto, sbi_trust_find(s_trust, "broker"), &h.header, payload,
                          &frame) != SB_OK)
        exit(3);
    memcpy(id, h.message_id, SBI_ID_SIZE);
    return frame;
}

/* N requests at once, signed in batches of 25 as an agent signs a loop
   turn's, so that the broker checks many in one turn: each forged one (its
   signature or its path changed) must be refused as such, and the others
   answered alike. */
static int s_burst(zsock_t *sock, long n)
{
    if (n < 1 || n > 4096)
        return 2;
    uint8_t (*ids)[SBI_ID_SIZE] = calloc((size_t) n, SBI_ID_SIZE);
    char **answers = calloc((size_t) n, sizeof *answers);
    assert(ids && answers);
    for (long first = 0; first < n; first += 25) {
        sbi_sealed_t *sealed[25];
        zframe_t *frames[25];
        size_t count = n - first < 25 ? (size_t) (n - first) : 25;
        for (size_t j = 0; j < count; j++)
            sealed[j] = s_request_sealed(s_agency, 0, ids[first + (long) j]);
        sbi_envelope_sign_batch(s_crypto, sealed, count, frames);
        for (size_t j = 0; j < count; j++) {
            long i = first + (long) j;
            if (i % 5 == 2)
                frames[j] = s_forged(&frames[j], count > 1 && i % 10 == 7);
            zframe_send(&frames[j], sock, 0);
        }
    }
    long got = 0;
    while (got < n) {
        zpoller_t *poller = zpoller_new(sock, NULL);
        void *which = zpoller_wait(poller, 5000);
        zpoller_destroy(&poller);
        if (!which)
            break;
        zframe_t *frame = zframe_recv(sock);
        sbi_envelope_t env;
        if (sbi_envelope_decode(&env, zframe_data(frame), zframe_size(frame)) == SB_OK
            && env.header->kind == SHAREBUS__KIND__KIND_ERROR
            && env.header->correlation_id.len == SBI_ID_SIZE)
            for (long i = 0; i < n; i++)
                if (!answers[i] && memcmp(ids[i], env.header->correlation_id.data, SBI_ID_SIZE) == 0) {
                    answers[i] = strdup(sb_errname(sbi_error_code(env.header->error)));
                    got++;
                }
        sbi_envelope_clear(&env);
        zframe_destroy(&frame);
    }
    long forged = 0, refused = 0, others = 0, alike = 0;
    const char *first = NULL;
    for (long i = 0; i < n; i++) {
        if (i % 5 == 2) {
            forged++;
            refused += answers[i] && strcmp(answers[i], "bad-signature") == 0;
            continue;
        }
        others++;
        if (!first && answers[i])
            first = answers[i];
        alike += answers[i] && first && strcmp(answers[i], first) == 0
                 && strcmp(answers[i], "bad-signature") != 0;
    }
    printf("forged-refused %ld of %ld\n", refused, forged);
    printf("others-answered %ld of %ld %s\n", alike, others, first ? first : "none");
    for (long i = 0; i < n; i++)
        free(answers[i]);
    free(answers);
    free(ids);
    return 0;
}

static int s_hello(zsock_t *sock)
{
    sbi_header_t h;
    sbi_header_init(&h, SHAREBUS__KIND__KIND_HELLO, s_agency, "broker");
    zframe_t *frame = NULL;
    if (sbi_envelope_seal(s_crypto, sbi_trust_find(s_trust, "broker"), &h.header, NULL, &frame))
        return 3;
    zframe_send(&frame, sock, 0);
    printf("answer: %s\n", s_answer(sock, NULL));
    return 0;
}

static int s_forged_consent(zsock_t *sock)
{
    Sharebus__Consent c = SHAREBUS__CONSENT__INIT;
    uint8_t ref[SBI_HASH_SIZE], cid[SBI_ID_SIZE];
    char id_hex[33];
    randombytes_buf(ref, sizeof ref);
    sbi_id_new(cid);
    c.id = sbi_hex(cid, SBI_ID_SIZE, id_hex);
    c.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, ref};
    c.consumer = (char *) s_agency;
    c.dataset = "health.checkup.vision-hearing";
    c.purpose = "driver-licence-renewal";
    c.granted_ms = sbi_now_ms();
    c.until_ms = c.granted_ms + 86400000;
    c.recorded_by = (char *) s_agency;
    uint8_t bytes[1024], sig[64];
    size_t size = sharebus__consent__pack(&c, bytes);
    crypto_sign_detached(sig, NULL, bytes, size, sbi_crypto_keys(s_crypto)->sign_secret);
    sig[10] ^= 0x40;
    Sharebus__SignedConsent sc = SHAREBUS__SIGNED_CONSENT__INIT;
    sc.consent = (ProtobufCBinaryData){size, bytes};
    sc.signature = (ProtobufCBinaryData){64, sig};
    Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
    payload.body_case = SHAREBUS__PAYLOAD__BODY_CONSENT;
    payload.consent = &sc;
    uint8_t id[SBI_ID_SIZE];
    zframe_t *frame = s_for_broker(SHAREBUS__KIND__KIND_CONSENT_GRANT, &payload, id);
    s_send_and_report(sock, &frame, id);
    return 0;
}

/* A revocation of a fresh consent id with `reason`; its message id in `id`. */
static zframe_t *s_revoke(const char *reason, uint8_t id[SBI_ID_SIZE])
{
    uint8_t cid[SBI_ID_SIZE];
    char id_hex[33];
    sbi_id_new(cid);
    Sharebus__ConsentRevoke revoke = SHAREBUS__CONSENT_REVOKE__INIT;
    revoke.id = sbi_hex(cid, SBI_ID_SIZE, id_hex);
    revoke.reason = (char *) reason;
    Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
    payload.body_case = SHAREBUS__PAYLOAD__BODY_REVOKE;
    payload.revoke = &revoke;
    return s_for_broker(SHAREBUS__KIND__KIND_CONSENT_REVOKE, &payload, id);
}

/* N revocations at once: prints how many answers of each kind came back. */
static int s_revokes(zsock_t *sock, long n)
{
    if (n < 1 || n > 1000)
        return 2;
    for (long i = 0; i < n; i++) {
        uint8_t id[SBI_ID_SIZE];
        zframe_t *frame = s_revoke("bulk", id);
        zframe_send(&frame, sock, 0);
    }
    zhashx_t *counts = zhashx_new();
    for (long i = 0; i < n; i++) {
        const char *answer = s_answer(sock, NULL);
        if (strcmp(answer, "none") == 0)
            break;
        zhashx_update(counts, answer, (char *) zhashx_lookup(counts, answer) + 1);
    }
    zlistx_t *kinds = zhashx_keys(counts);
    zlistx_set_comparator(kinds, (zlistx_comparator_fn *) strcmp);
    zlistx_sort(kinds);
    for (const char *k = zlistx_first(kinds); k; k = zlistx_next(kinds))
        printf("%s %zu\n", k, (size_t) (uintptr_t) zhashx_lookup(counts, k));
    zlistx_destroy(&kinds);
    zhashx_destroy(&counts);
    return 0;
}

/* A revocation of a consent id with a reason of `size` bytes. */
static int s_long_revoke(zsock_t *sock, long size)
{
    if (size < 0 || size > 900000)
        return 2;
    char *reason = malloc((size_t) size + 1);
    assert(reason);
    memset(reason, 'r', (size_t) size);
    reason[size] = '\0';
    uint8_t id[SBI_ID_SIZE];
    zframe_t *frame = s_revoke(reason, id);
    free(reason);
    s_send_and_report(sock, &frame, id);
    return 0;
}

/* N connections at once, each with a fresh CURVE key no certificate holds,
   each sending a frame so that its handshake completes; closed after 2 s. */
static int s_strangers(const char *certs, const char *endpoint, long n)
{
    if (n < 1 || n > 2000)
        return 2;
    zsock_t **socks = calloc((size_t) n, sizeof *socks);
    assert(socks);
    for (long i = 0; i < n; i++) {
        socks[i] = s_connect(certs, endpoint, true);
        zstr_send(socks[i], "hello?");
    }
    zclock_sleep(2000);
    for (long i = 0; i < n; i++)
        zsock_destroy(&socks[i]);
    free(socks);
    printf("connected %ld\n", n);
    return 0;
}

/* Signs and sends an envelope from `keys` to the broker's agency `to`. */
static void s_send_as(zsock_t *sock, sbi_crypto_t *keys, Sharebus__Header *h, const char *to,
                      const Sharebus__Payload *payload)
{
    zframe_t *frame = NULL;
    if (sbi_envelope_seal(keys, sbi_trust_find(s_trust, to), h, payload, &frame) != SB_OK)
        exit(3);
    zframe_send(&frame, sock, 0);
}

/* The ids of the events that reach `sock` within `ms` (at most 8). */
static int s_events_within(zsock_t *sock, int ms, uint8_t ids[8][SBI_ID_SIZE])
{
    int n = 0;
    int64_t end = zclock_mono() + ms;
    zpoller_t *poller = zpoller_new(sock, NULL);
    while (zclock_mono() < end && zpoller_wait(poller, (int) (end - zclock_mono()))) {
        zframe_t *frame = zframe_recv(sock);
        sbi_envelope_t env;
        if (frame && sbi_envelope_decode(&env, zframe_data(frame), zframe_size(frame)) == SB_OK) {
            if (env.header->kind == SHAREBUS__KIND__KIND_EVENT && n < 8)
                memcpy(ids[n++], env.header->message_id.data, SBI_ID_SIZE);
            sbi_envelope_clear(&env);
        }
        zframe_destroy(&frame);
    }
    zpoller_destroy(&poller);
    return n;
}

/* As a subscriber of resident.address-changed: `publisher` publishes two
   events for us; we take both, acknowledge the first and at once say HELLO
   from a new connection, before the broker's store has applied the
   acknowledgement. Prints "again N" (events the new connection got) and
   "acknowledged-again yes|no". */
static int s_ack_reconnect(const char *certs, const char *endpoint, const char *publisher)
{
    char path[4096];
    sbi_crypto_t *pub_keys = NULL;
    snprintf(path, sizeof path, "%s/%s.key", certs, publisher);
    char err[2 * sizeof path + 128];
    if (sbi_crypto_load(path, sbi_trust_find(s_trust, publisher), &pub_keys, err, sizeof err)
        != SB_OK) {
        fprintf(stderr, "rogue: %s\n", err);
        return 3;
    }
    sbi_crypto_t *mine = s_crypto;
    s_crypto = pub_keys;
    zsock_t *pub = s_connect(certs, endpoint, false);
    s_crypto = mine;
    zsock_t *first = s_connect(certs, endpoint, false), *second = s_connect(certs, endpoint, false);
    sbi_header_t h;
    sbi_header_init(&h, SHAREBUS__KIND__KIND_HELLO, publisher, "broker");
    s_send_as(pub, pub_keys, &h.header, "broker", NULL);
    for (int i = 0; i < 2; i++) {
        uint8_t ref[SBI_HASH_SIZE];
        randombytes_buf(ref, sizeof ref);
        char *fields[] = {"new_address"};
        sbi_header_init(&h, SHAREBUS__KIND__KIND_EVENT, publisher, s_agency);
        h.header.dataset = "resident.address-changed";
        h.header.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, ref};
        h.header.fields = fields;
        h.header.n_fields = 1;
        Sharebus__Record record = SHAREBUS__RECORD__INIT;
        Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
        payload.body_case = SHAREBUS__PAYLOAD__BODY_RECORD;
        payload.record = &record;
        s_send_as(pub, pub_keys, &h.header, s_agency, &payload);
    }
    uint8_t ids[8][SBI_ID_SIZE], again[8][SBI_ID_SIZE];
    s_hello(first);
    int n = s_events_within(first, 1000, ids);
    if (n != 2) {
        printf("events %d\n", n);
        return 1;
    }
    sbi_header_init(&h, SHAREBUS__KIND__KIND_EVENT_ACK, s_agency, "broker");
    h.header.correlation_id = (ProtobufCBinaryData){SBI_ID_SIZE, ids[0]};
    s_send_as(first, s_crypto, &h.header, "broker", NULL);
    sbi_header_init(&h, SHAREBUS__KIND__KIND_HELLO, s_agency, "broker");
    s_send_as(second, s_crypto, &h.header, "broker", NULL);
    int m = s_events_within(second, 1000, again);
    bool acked_again = false;
    for (int i = 0; i < m; i++)
        acked_again |= memcmp(again[i], ids[0], SBI_ID_SIZE) == 0;
    printf("again %d\nacknowledged-again %s\n", m, acked_again ? "yes" : "no");
    zsock_destroy(&pub);
    zsock_destroy(&first);
    zsock_destroy(&second);
    sbi_crypto_destroy(&pub_keys);
    return 0;
}

/* An envelope whose header alone is over SBI_HEADER_MAX, properly signed. */
static zframe_t *s_bighead(void)
{
    sbi_header_t h;
    sbi_header_init(&h, SHAREBUS__KIND__KIND_HELLO, s_agency, "broker");
    char *reason = malloc(SBI_HEADER_MAX + 1);
    memset(reason, 'x', SBI_HEADER_MAX);
    reason[SBI_HEADER_MAX] = 0;
    h.header.reason = reason;
    size_t size = sharebus__header__get_packed_size(&h.header);
    uint8_t *bytes = malloc(size), signature[crypto_sign_BYTES];
    sharebus__header__pack(&h.header, bytes);
    crypto_sign_detached(signature, NULL, bytes, size, sbi_crypto_keys(s_crypto)->sign_secret);
    Sharebus__Envelope envelope = SHAREBUS__ENVELOPE__INIT;
    envelope.header = (ProtobufCBinaryData){size, bytes};
    envelope.signature = (ProtobufCBinaryData){sizeof signature, signature};
    zframe_t *frame = zframe_new(NULL, sharebus__envelope__get_packed_size(&envelope));
    sharebus__envelope__pack(&envelope, zframe_data(frame));
    free(bytes);
    free(reason);
    return frame;
}

/* A request the broker passes (signed, about a subject with consent) whose
   MAC is not what nhis's agent computes. */
/* A request koroad could send nhis for the checkup: the header's subject
   reference is `subject`'s, the sealed id `sealed`'s; with `bad_mac` its
   MAC for nhis is wrong. */
static zframe_t *s_to_nhis(const char *certs, const char *subject, const char *sealed,
                           bool bad_mac, uint8_t id[SBI_ID_SIZE])
{
    char path[4096];
    uint8_t key[32], ref[SBI_HASH_SIZE];
    snprintf(path, sizeof path, "%s/subject.key", certs);
    if (sbi_secret_load(path, key) != SB_OK || sbi_subject_ref(key, subject, ref) != SB_OK)
        exit(3);
    sodium_memzero(key, sizeof key);
    sbi_header_t h;
    sbi_header_init(&h, SHAREBUS__KIND__KIND_REQUEST, s_agency, "nhis");
    h.header.expires_ms = h.header.created_ms + 5000;
    h.header.dataset = "health.checkup.vision-hearing";
    h.header.purpose = "driver-licence-renewal";
    h.header.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, ref};
    char *fields[] = {"exam_date"};
    h.header.fields = fields;
    h.header.n_fields = 1;
    Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
    payload.subject_id = (char *) sealed;
    zframe_t *frame = NULL;
    const sbi_cert_t *to = sbi_trust_find(s_trust, "nhis");
    if (!to || sbi_envelope_seal(s_crypto, to, &h.header, &payload, &frame) != SB_OK)
        exit(3);
    memcpy(id, h.message_id, SBI_ID_SIZE);
    if (!bad_mac)
        return frame;
    sbi_envelope_t env;
    if (sbi_envelope_decode(&env, zframe_data(frame), zframe_size(frame)) != SB_OK
        || env.envelope->mac.len != SBI_MAC_SIZE)
        exit(3);
    env.envelope->mac.data[7] ^= 1;
    zframe_t *forged = zframe_new(NULL, sharebus__envelope__get_packed_size(env.envelope));
    sharebus__envelope__pack(env.envelope, zframe_data(forged));
    sbi_envelope_clear(&env);
    zframe_destroy(&frame);
    return forged;
}

/* Request `id`'s signed header with another request's sealed payload. */
static zframe_t *s_swapped(uint8_t id[SBI_ID_SIZE])
{
    uint8_t other[SBI_ID_SIZE];
    zframe_t *mine = s_request(s_agency, 0, id), *theirs = s_request(s_agency, 0, other);
    sbi_envelope_t a, b;
    if (sbi_envelope_decode(&a, zframe_data(mine), zframe_size(mine)) != SB_OK
        || sbi_envelope_decode(&b, zframe_data(theirs), zframe_size(theirs)) != SB_OK)
        exit(3);
    ProtobufCBinaryData payload = a.envelope->payload;
    a.envelope->payload = b.envelope->payload;
    zframe_t *frame = zframe_new(NULL, sharebus__envelope__get_packed_size(a.envelope));
    sharebus__envelope__pack(a.envelope, zframe_data(frame));
    a.envelope->payload = payload;
    sbi_envelope_clear(&a);
    sbi_envelope_clear(&b);
    zframe_destroy(&mine);
    zframe_destroy(&theirs);
    return frame;
}

/* A provider that answers beyond the rule: the request's fields and one
   more, blood_pressure, which no rule lets flow. */
static int s_overreply(zsock_t *sock)
{
    sbi_header_t h;
    sbi_header_init(&h, SHAREBUS__KIND__KIND_HELLO, s_agency, "broker");
    zframe_t *frame = NULL;
    if (sbi_envelope_seal(s_crypto, sbi_trust_find(s_trust, "broker"), &h.header, NULL, &frame))
        return 3;
    zframe_send(&frame, sock, 0);
    /* The route is ours once the broker welcomes us. */
    if (strcmp(s_answer(sock, NULL), "ok") != 0)
        return 3;
    printf("waiting\n");
    fflush(stdout);
    int64_t deadline = zclock_mono() + 30000;
    while (zclock_mono() < deadline) {
        zpoller_t *poller = zpoller_new(sock, NULL);
        void *which = zpoller_wait(poller, 500);
        zpoller_destroy(&poller);
        if (!which)
            continue;
        frame = zframe_recv(sock);
        sbi_envelope_t env;
        int rc = sbi_envelope_decode(&env, zframe_data(frame), zframe_size(frame));
        zframe_destroy(&frame);
        if (rc != SB_OK)
            continue;
        const Sharebus__Header *q = env.header;
        const sbi_cert_t *consumer = sbi_trust_find(s_trust, q->from);
        if (q->kind != SHAREBUS__KIND__KIND_REQUEST || !consumer) {
            sbi_envelope_clear(&env);
            continue;
        }
        char *names[SBI_FIELDS_MAX + 1];
        Sharebus__Field fields[SBI_FIELDS_MAX + 1], *pointers[SBI_FIELDS_MAX + 1];
        size_t n = 0;
        for (size_t i = 0; i < q->n_fields && i < SBI_FIELDS_MAX; i++)
            names[n++] = q->fields[i];
        names[n++] = "blood_pressure";
        for (size_t i = 0; i < n; i++) {
            sharebus__field__init(&fields[i]);
            fields[i].name = names[i];
            fields[i].value_case = SHAREBUS__FIELD__VALUE_TEXT;
            fields[i].text = "128/84";
            pointers[i] = &fields[i];
        }
        Sharebus__Record record = SHAREBUS__RECORD__INIT;
        record.fields = pointers;
        record.n_fields = n;
        Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
        payload.body_case = SHAREBUS__PAYLOAD__BODY_RECORD;
        payload.record = &record;
        sbi_header_t r;
        sbi_header_init(&r, SHAREBUS__KIND__KIND_REPLY, s_agency, q->from);
        r.header.correlation_id = q->message_id;
        r.header.dataset = q->dataset;
        r.header.purpose = q->purpose;
        r.header.subject_ref = q->subject_ref;
        r.header.fields = names;
        r.header.n_fields = n;
        rc = sbi_envelope_seal(s_crypto, consumer, &r.header, &payload, &frame);
        sbi_envelope_clear(&env);
        if (rc != SB_OK)
            return 3;
        s_send_and_report(sock, &frame, r.message_id);
        return 0;
    }
    printf("answer: no request came\n");
    return 1;
}

static const char *s_event_name(uint16_t event)
{
    switch (event) {
    case ZMQ_EVENT_LISTENING: return "listening";
    case ZMQ_EVENT_ACCEPTED: return "accepted";
    case ZMQ_EVENT_DISCONNECTED: return "disconnected";
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: return "handshake-succeeded";
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL: return "handshake-failed";
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL: return "handshake-failed";
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: return "handshake-failed";
    default: return NULL;
    }
}

/* A broker impostor on `endpoint`: a CURVE server that admits any client
   key (no ZAP handler) and counts what reaches it. */
static int s_impostor(const char *endpoint, bool real)
{
    uint8_t pub[32], sec[32];
    if (real) {
        memcpy(pub, sbi_crypto_keys(s_crypto)->cert.curve_public, 32);
        memcpy(sec, sbi_crypto_keys(s_crypto)->curve_secret, 32);
    }
    else
        crypto_box_keypair(pub, sec);
    zsock_t *router = zsock_new(ZMQ_ROUTER);
    zsock_set_curve_server(router, 1);
    zsock_set_curve_publickey_bin(router, pub);
    zsock_set_curve_secretkey_bin(router, sec);
    sodium_memzero(sec, sizeof sec);
    zmq_socket_monitor(zsock_resolve(router), "inproc://impostor-monitor", ZMQ_EVENT_ALL);
    zsock_t *monitor = zsock_new(ZMQ_PAIR);
    zsock_connect(monitor, "inproc://impostor-monitor");
    if (zsock_bind(router, "%s", endpoint) < 0) {
        fprintf(stderr, "rogue: cannot bind %s\n", endpoint);
        zsock_destroy(&monitor);
        zsock_destroy(&router);
        return 3;
    }
    printf("listening\n");
    fflush(stdout);
    zpoller_t *poller = zpoller_new(router, monitor, NULL);
    long received = 0;
    while (!zsys_interrupted) {
        void *which = zpoller_wait(poller, 100);
        if (which == router) {
            zmsg_t *msg = zmsg_recv(router);
            printf("message %zu bytes\n", msg ? zmsg_content_size(msg) : 0);
            received++;
            zmsg_destroy(&msg);
        }
        else if (which == monitor) {
            zmsg_t *event = zmsg_recv(monitor);
            zframe_t *first = event ? zmsg_first(event) : NULL;
            uint16_t number = 0;
            if (first && zframe_size(first) >= 2)
                memcpy(&number, zframe_data(first), 2);
            const char *name = s_event_name(number);
            if (name)
                printf("event %s\n", name);
            zmsg_destroy(&event);
        }
        fflush(stdout);
    }
    printf("received %ld\n", received);
    zpoller_destroy(&poller);
    zmq_socket_monitor(zsock_resolve(router), NULL, 0);
    zsock_destroy(&monitor);
    zsock_destroy(&router);
    return 0;
}

static int s_backdate(const char *certs, long long seconds)
{
    char path[4096];
    sbi_cert_t cert;
    sbi_keys_t root;
    snprintf(path, sizeof path, "%s/root.key", certs);
    if (sbi_keys_load(path, &root) != SB_OK)
        return 3;
    snprintf(path, sizeof path, "%s/%s.cert", certs, s_agency);
    if (sbi_cert_load(path, &cert) != SB_OK)
        return 3;
    cert.not_after_ms = (uint64_t) ((long long) (sbi_now_ms() / 1000) + seconds) * 1000;
    cert.not_before_ms = cert.not_after_ms - 86400 * 1000;
    sbi_cert_sign(&cert, root.sign_secret);
    sbi_keys_wipe(&root);
    unlink(path);
    if (sbi_cert_save(&cert, path) != SB_OK)
        return 3;
    printf("%llu\n", (unsigned long long) (cert.not_after_ms / 1000));
    return 0;
}

static void s_print_key(const uint8_t *key, size_t size)
{
    char z85[128], hex[160];
    zmq_z85_encode(z85, key, size);
    printf("%s\n%s\n", z85, sbi_hex(key, size, hex));
}

static int s_keystrings(const char *certs)
{
    DIR *handle = opendir(certs);
    if (!handle)
        return 3;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(handle))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".key") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", certs, e->d_name);
        sbi_keys_t keys;
        uint8_t secret[32];
        if (strcmp(e->d_name, "subject.key") == 0) {
            if (sbi_secret_load(path, secret) != SB_OK)
                return 3;
            s_print_key(secret, 32);
            sodium_memzero(secret, sizeof secret);
            continue;
        }
        if (sbi_keys_load(path, &keys) != SB_OK)
            return 3;
        s_print_key(keys.sign_secret, 64);
        s_print_key(keys.cert.sign_public, 32);
        if (keys.cert.kind != SBI_CERT_ROOT) {
            s_print_key(keys.curve_secret, 32);
            s_print_key(keys.cert.curve_public, 32);
            s_print_key(keys.box_secret, 32);
            s_print_key(keys.cert.box_public, 32);
        }
        sbi_keys_wipe(&keys);
    }
    closedir(handle);
    return 0;
}

static int s_inspect(const char *dir)
{
    DIR *handle = opendir(dir);
    if (!handle)
        return 3;
    int opened = 0, sealed = 0, own = 0;
    struct dirent *e;
    while ((e = readdir(handle))) {
        char path[4096], *data = NULL;
        size_t size = 0;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_name[0] == '.' || sbi_file_read(path, SBI_FRAME_MAX, &data, &size) != SB_OK)
            continue;
        sbi_envelope_t env;
        if (sbi_envelope_decode(&env, (uint8_t *) data, size) == SB_OK
            && env.envelope->payload.len > 0
            && sbi_envelope_verify(&env, s_trust, NULL, sbi_now_ms()) == SB_OK) {
            Sharebus__Payload *payload = NULL;
            int rc = sbi_envelope_open(&env, s_crypto, &payload);
            if (strcmp(env.header->to, s_agency) == 0)
                own += rc == SB_OK;
            else if (rc == SB_OK)
                opened++;
            else
                sealed++;
            if (payload)
                sharebus__payload__free_unpacked(payload, NULL);
        }
        sbi_envelope_clear(&env);
        free(data);
    }
    closedir(handle);
    printf("own %d\nopened %d\nsealed %d\n", own, opened, sealed);
    return 0;
}

/* As a back-end on an agent's front socket (no CURVE there): a consent
   list call, then n - 1 empty frames in the same message. Prints the
   agent's answer to it: "ok", an error name, or "none" within two s. */
static int s_front_frames(const char *endpoint, long n)
{
    zsock_t *sock = zsock_new(ZMQ_DEALER);
    zsock_set_linger(sock, 500);
    zsock_set_sndhwm(sock, 1000000);
    zsock_set_rcvtimeo(sock, 2000);
    if (zsock_connect(sock, "%s", endpoint) != 0)
        return 3;
    Sharebus__ClientConsentList list = SHAREBUS__CLIENT_CONSENT_LIST__INIT;
    list.subject_id = "900101-1234567";
    Sharebus__ClientMessage m = SHAREBUS__CLIENT_MESSAGE__INIT;
    m.id = 7;
    m.body_case = SHAREBUS__CLIENT_MESSAGE__BODY_CONSENT_LIST;
    m.consent_list = &list;
    zframe_t *frame = zframe_new(NULL, sharebus__client_message__get_packed_size(&m));
    sharebus__client_message__pack(&m, zframe_data(frame));
    for (long i = 1; i < n; i++) {
        zframe_send(&frame, sock, ZFRAME_MORE);
        frame = zframe_new(NULL, 0);
    }
    zframe_send(&frame, sock, 0);
    const char *answer = "none";
    zframe_t *reply = zframe_recv(sock);
    Sharebus__ClientMessage *r = reply ? sharebus__client_message__unpack(
                                             NULL, zframe_size(reply), zframe_data(reply))
                                       : NULL;
    if (r && r->id == 7 && r->body_case == SHAREBUS__CLIENT_MESSAGE__BODY_RESULT)
        answer = r->result->error ? sb_errname(sbi_error_code(r->result->error)) : "ok";
    if (r)
        sharebus__client_message__free_unpacked(r, NULL);
    zframe_destroy(&reply);
    printf("answer: %s\n", answer);
    zsock_destroy(&sock);
    return 0;
}

int main(int argc, char **argv)
{
    sbi_init();
    if (argc < 8 || strcmp(argv[1], "--certs") || strcmp(argv[3], "--agency")
        || strcmp(argv[5], "--broker")) {
        fprintf(stderr, "usage: rogue --certs DIR --agency ID --broker EP MODE [ARG]\n");
        return 2;
    }
    const char *certs = argv[2], *endpoint = argv[6], *mode = argv[7];
    const char *arg = argc > 8 ? argv[8] : NULL;
    s_agency = argv[4];
    char err[512], path[4096];
    s_trust = sbi_trust_new(certs, err, sizeof err);
    sbi_keys_t keys;
    snprintf(path, sizeof path, "%s/%s.key", certs, s_agency);
    if (!s_trust || sbi_keys_load(path, &keys) != SB_OK) {
        fprintf(stderr, "rogue: cannot load %s\n", path);
        return 3;
    }
    /* The certificate may be revoked (that is a test): take it from disk. */
    snprintf(path, sizeof path, "%s/%s.cert", certs, s_agency);
    if (sbi_cert_load(path, &keys.cert) != SB_OK)
        return 3;
    s_crypto = sbi_crypto_new(&keys);
    sbi_keys_wipe(&keys);
    if (strcmp(mode, "inspect") == 0)
        return arg ? s_inspect(arg) : 2;
    if (strcmp(mode, "keystrings") == 0)
        return s_keystrings(certs);
    if (strcmp(mode, "backdate") == 0)
        return arg ? s_backdate(certs, atoll(arg)) : 2;
    if (strcmp(mode, "impostor") == 0 || strcmp(mode, "impostor-real") == 0) {
        int status = s_impostor(endpoint, strcmp(mode, "impostor-real") == 0);
        sbi_crypto_destroy(&s_crypto);
        sbi_trust_destroy(&s_trust);
        return status;
    }

    if (strcmp(mode, "front-frames") == 0 && arg) {
        int status = s_front_frames(endpoint, atol(arg));
        sbi_crypto_destroy(&s_crypto);
        sbi_trust_destroy(&s_trust);
        return status;
    }

    zsock_t *sock = s_connect(certs, endpoint, strcmp(mode, "stranger") == 0);
    uint8_t id[SBI_ID_SIZE];
    zframe_t *frame = NULL;
    int rc = 0;
    if (strcmp(mode, "hello") == 0 || strcmp(mode, "stranger") == 0)
        rc = s_hello(sock);
    else if (strcmp(mode, "forge") == 0) {
        frame = s_request(s_agency, 0, id);
        frame = s_forged(&frame, false);
        s_send_and_report(sock, &frame, id);
    }
    else if (strcmp(mode, "resend") == 0 && arg) {
        for (int i = 8; i < argc; i++) {
            uint8_t *bytes = NULL;
            size_t size = 0;
            sbi_envelope_t env;
            if (sbi_file_read(argv[i], SBI_FRAME_MAX, (char **) &bytes, &size) != SB_OK
                || sbi_envelope_decode(&env, bytes, size) != SB_OK)
                return 3;
            memcpy(id, env.header->message_id.data, SBI_ID_SIZE);
            printf("%s ", protobuf_c_enum_descriptor_get_value(&sharebus__kind__descriptor,
                                                               env.header->kind)->name);
            sbi_envelope_clear(&env);
            frame = zframe_new(bytes, size);
            free(bytes);
            s_send_and_report(sock, &frame, id);
        }
    }
    else if (strcmp(mode, "burst") == 0 && arg)
        rc = s_burst(sock, atol(arg));
    else if (strcmp(mode, "replay") == 0) {
        frame = s_request(s_agency, 0, id);
        zframe_t *again = zframe_dup(frame);
        s_send_and_report(sock, &frame, id);
        s_send_and_report(sock, &again, id);
    }
    else if (strcmp(mode, "impersonate") == 0 && arg) {
        frame = s_request(arg, 0, id);
        s_send_and_report(sock, &frame, id);
    }
    else if (strcmp(mode, "stale") == 0) {
        frame = s_request(s_agency, 600000, id);
        s_send_and_report(sock, &frame, id);
    }
    else if (strcmp(mode, "far-future") == 0) {
        /* created at about 2^63 + 5: just past what a signed 64-bit time holds */
        frame = s_request(s_agency, sbi_now_ms() + (UINT64_C(1) << 63) - 5, id);
        s_send_and_report(sock, &frame, id);
    }
    else if (strcmp(mode, "garbage") == 0) {
        uint8_t junk[200];
        randombytes_buf(junk, sizeof junk);
        frame = zframe_new(junk, sizeof junk);
        s_send_and_report(sock, &frame, NULL);
    }
    else if (strcmp(mode, "frames") == 0 && arg) {
        /* A well-formed request, then N - 1 empty frames in the same message. */
        frame = s_request(s_agency, 0, id);
        long n = atol(arg);
        for (long i = 1; i < n; i++) {
            zframe_send(&frame, sock, ZFRAME_MORE);
            frame = zframe_new(NULL, 0);
        }
        s_send_and_report(sock, &frame, NULL);  /* refused before decoding: no correlation */
    }
    else if (strcmp(mode, "oversize") == 0) {
        frame = zframe_new(NULL, SBI_FRAME_MAX + 4096);
        memset(zframe_data(frame), 0x0a, zframe_size(frame));
        s_send_and_report(sock, &frame, NULL);
    }
    else if (strcmp(mode, "flood") == 0 && arg) {
        long n = atol(arg);
        uint8_t junk[64];
        for (long i = 0; i < n; i++) {
            randombytes_buf(junk, sizeof junk);
            frame = zframe_new(junk, sizeof junk);
            zframe_send(&frame, sock, 0);
        }
        printf("sent %ld\n", n);
    }
    else if (strcmp(mode, "silent") == 0 && arg) {
        rc = s_hello(sock);
        fflush(stdout);
        int64_t end = zclock_mono() + atol(arg) * 1000;
        while (zclock_mono() < end && !zsys_interrupted) {
            zpoller_t *poller = zpoller_new(sock, NULL);
            if (zpoller_wait(poller, 200)) {
                zframe_t *ignored = zframe_recv(sock);
                zframe_destroy(&ignored);
            }
            zpoller_destroy(&poller);
        }
    }
    else if (strcmp(mode, "hello-until") == 0 && arg) {
        rc = s_hello(sock);
        fflush(stdout);
        while (time(NULL) <= atoll(arg) && !zsys_interrupted)
            zclock_sleep(200);
        if (rc == 0)
            rc = s_hello(sock);
    }
    else if (strcmp(mode, "forged-consent") == 0)
        rc = s_forged_consent(sock);
    else if (strcmp(mode, "strangers") == 0 && arg)
        rc = s_strangers(certs, endpoint, atol(arg));
    else if (strcmp(mode, "ack-reconnect") == 0 && arg)
        rc = s_ack_reconnect(certs, endpoint, arg);
    else if (strcmp(mode, "revokes") == 0 && arg)
        rc = s_revokes(sock, atol(arg));
    else if (strcmp(mode, "long-revoke") == 0 && arg)
        rc = s_long_revoke(sock, atol(arg));
    else if (strcmp(mode, "bighead") == 0) {
        frame = s_bighead();
        s_send_and_report(sock, &frame, NULL);
    }
    else if (strcmp(mode, "overreply") == 0)
        rc = s_overreply(sock);
    else if (strcmp(mode, "badmac") == 0 && arg) {
        frame = s_to_nhis(certs, arg, arg, true, id);
        s_send_and_report(sock, &frame, id);
    }
    else if (strcmp(mode, "asks") == 0 && arg && argc > 9) {
        /* N requests at once: the broker decides them in one loop turn. */
        for (long i = 0; i < atol(arg); i++) {
            frame = s_to_nhis(certs, argv[9], argv[9], false, id);
            zframe_send(&frame, sock, 0);
        }
        zclock_sleep(500);
        printf("sent %ld\n", atol(arg));
    }
    else if (strcmp(mode, "subject-swap") == 0 && arg && argc > 9) {
        frame = s_to_nhis(certs, arg, argv[9], false, id);
        s_send_and_report(sock, &frame, id);
    }
    else if (strcmp(mode, "swap") == 0) {
        frame = s_swapped(id);
        s_send_and_report(sock, &frame, id);
    }
    else {
        fprintf(stderr, "rogue: unknown mode %s\n", mode);
        rc = 2;
    }
    zsock_destroy(&sock);
    sbi_crypto_destroy(&s_crypto);
    sbi_trust_destroy(&s_trust);
    return rc;
}
