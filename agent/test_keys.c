/*  test_keys.c - which of its key pairs an agent takes another agency's
    MAC under: its own, a retired one while it is still valid (a sender
    may not have seen the switch yet); one whose certificate is revoked
    only with the sender's signature (its secret may be in other hands).
    And the switch to a new certificate of ours. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "ca.h"
#include "testing.h"

typedef struct {
    char dir[64];
    char certs[128];
    uint64_t old_serial;      /* mois's first certificate, retired */
    agent_t *agent;           /* mois's agent, on its second certificate */
} s_fixture_t;

/* mois rotated once (its first key pair kept as mois.SERIAL.key), nts
   sends; the agent's broker is nowhere. */
static void s_setup(s_fixture_t *f)
{
    strcpy(f->dir, "/tmp/sharebus-test-keys.XXXXXX");
    if (!mkdtemp(f->dir))
        abort();
    char data[128], listen[128], err[256];
    snprintf(f->certs, sizeof f->certs, "%s/certs", f->dir);
    snprintf(data, sizeof data, "%s/agent", f->dir);
    snprintf(listen, sizeof listen, "ipc://%s/mois.sock", f->dir);
    CHECK_EQ(sbi_ca_init(f->certs, err, sizeof err), SB_OK);
    CHECK_EQ(sbi_ca_issue(f->certs, SBI_CERT_BROKER, "broker", "broker", 30, false, NULL, err,
                          sizeof err), SB_OK);
    CHECK_EQ(sbi_ca_issue(f->certs, SBI_CERT_AGENCY, "nts", "nts", 30, false, NULL, err,
                          sizeof err), SB_OK);
    CHECK_EQ(sbi_ca_issue(f->certs, SBI_CERT_AGENCY, "mois", "mois", 30, false, &f->old_serial,
                          err, sizeof err), SB_OK);
    CHECK_EQ(sbi_ca_issue(f->certs, SBI_CERT_AGENCY, "mois", "mois", 30, true, NULL, err,
                          sizeof err), SB_OK);
    agent_config_t config = {.agency = "mois", .certs = f->certs,
                             .broker = "tcp://127.0.0.1:9", .listen = listen, .data = data};
    f->agent = agent_new(&config);
    CHECK(f->agent != NULL);
}

static void s_teardown(s_fixture_t *f)
{
    agent_destroy(&f->agent);
    char command[128];
    snprintf(command, sizeof command, "rm -rf %s", f->dir);
    if (system(command) != 0)
        fprintf(stderr, "cannot remove %s\n", f->dir);
}

/* A request from nts to mois sealed and MACed for mois's first
   certificate, as nts makes it before it has seen mois switch; `forged`:
   its signature spoilt and its MAC made again with that certificate's
   secret, as whoever holds the secret could make it in nts's name. What
   agent_keys_verify says of it; one it takes must open too. */
static int s_made_for_the_old_key(s_fixture_t *f, bool forged)
{
    char err[256], path[256];
    sbi_trust_t *trust = sbi_trust_new(f->certs, err, sizeof err);
    CHECK(trust != NULL);
    if (!trust)
        return SB_EINTERNAL;
    const sbi_cert_t *old = NULL, *nts = sbi_trust_find(trust, "nts");
    for (size_t i = 0; i < sbi_trust_count(trust); i++)
        if (sbi_trust_at(trust, i)->serial == f->old_serial)
            old = sbi_trust_at(trust, i);
    CHECK(old && nts);
    sbi_crypto_t *sender = NULL, *holder = NULL;
    snprintf(path, sizeof path, "%s/nts.key", f->certs);
    CHECK_EQ(sbi_crypto_load(path, nts, &sender, err, sizeof err), SB_OK);
    snprintf(path, sizeof path, "%s/mois.%llu.key", f->certs, (unsigned long long) f->old_serial);
    CHECK_EQ(sbi_crypto_load(path, old, &holder, err, sizeof err), SB_OK);
    int rc = SB_EINTERNAL;
    if (sender && holder) {
        sbi_header_t h;
        sbi_header_init(&h, SHAREBUS__KIND__KIND_REQUEST, "nts", "mois");
        h.header.dataset = "resident.address";
        h.header.purpose = "tax-notice";
        Sharebus__Payload payload = SHAREBUS__PAYLOAD__INIT;
        payload.subject_id = "900101-1234567";
        zframe_t *frame = NULL;
        CHECK_EQ(sbi_envelope_seal(sender, old, &h.header, &payload, &frame), SB_OK);
        sbi_envelope_t env;
        CHECK_EQ(sbi_envelope_decode(&env, zframe_data(frame), zframe_size(frame)), SB_OK);
        if (forged) {
            env.envelope->signature.data[0] ^= 1;     /* not nts's any more */
            CHECK_EQ(sbi_envelope_mac(holder, nts, env.envelope, env.envelope->mac.data), SB_OK);
        }
        rc = agent_keys_verify(f->agent, &env);
        Sharebus__Payload *opened = NULL;
        if (rc == SB_OK) {
            CHECK_EQ(agent_keys_open_payload(f->agent, &env, &opened), SB_OK);
            CHECK(opened && strcmp(opened->subject_id, "900101-1234567") == 0);
        }
        if (opened)
            sharebus__payload__free_unpacked(opened, NULL);
        sbi_envelope_clear(&env);
        zframe_destroy(&frame);
    }
    sbi_crypto_destroy(&sender);
    sbi_crypto_destroy(&holder);
    sbi_trust_destroy(&trust);
    return rc;
}

TEST(test_a_mac_for_a_retired_key_is_taken_alone_until_it_is_revoked)
{
    s_fixture_t f;
    s_setup(&f);
    CHECK(f.agent && f.agent->me->serial != f.old_serial);
    if (f.agent) {
        /* Retired, still valid: the MAC is enough. */
        CHECK_EQ(s_made_for_the_old_key(&f, false), SB_OK);
        CHECK_EQ(s_made_for_the_old_key(&f, true), SB_OK);
        char err[256];
        CHECK_EQ(sbi_ca_revoke(f.certs, "mois", f.old_serial, err, sizeof err), SB_OK);
        agent_keys_reload(f.agent, false);
        /* Revoked: the signature must hold too. */
        CHECK_EQ(s_made_for_the_old_key(&f, false), SB_OK);
        CHECK_EQ(s_made_for_the_old_key(&f, true), SB_EBADSIG);
    }
    s_teardown(&f);
}

/* Revoked before the agent starts: its key file is still loaded, to open
   what was sealed for it, but its MAC alone proves nothing. */
TEST(test_a_mac_for_a_key_revoked_before_start_needs_the_signature)
{
    s_fixture_t f;
    s_setup(&f);
    char err[256];
    CHECK_EQ(sbi_ca_revoke(f.certs, "mois", f.old_serial, err, sizeof err), SB_OK);
    agent_destroy(&f.agent);
    char data[128], listen[128];
    snprintf(data, sizeof data, "%s/agent", f.dir);
    snprintf(listen, sizeof listen, "ipc://%s/mois.sock", f.dir);
    agent_config_t config = {.agency = "mois", .certs = f.certs,
                             .broker = "tcp://127.0.0.1:9", .listen = listen, .data = data};
    f.agent = agent_new(&config);
    CHECK(f.agent != NULL);
    if (f.agent) {
        CHECK_EQ(s_made_for_the_old_key(&f, false), SB_OK);
        CHECK_EQ(s_made_for_the_old_key(&f, true), SB_EBADSIG);
    }
    s_teardown(&f);
}

/* A CURVE server with the broker's key (and no ZAP handler: it admits any
   client), for the agent's connections to complete their handshakes. */
static zsock_t *s_fake_broker(const char *certs, char *endpoint, size_t size)
{
    char path[256];
    snprintf(path, sizeof path, "%s/broker.key", certs);
    sbi_keys_t keys;
    CHECK_EQ(sbi_keys_load(path, &keys), SB_OK);
    zsock_t *server = zsock_new(ZMQ_ROUTER);
    zsock_set_curve_server(server, 1);
    zsock_set_curve_publickey_bin(server, keys.cert.curve_public);
    zsock_set_curve_secretkey_bin(server, keys.curve_secret);
    sbi_keys_wipe(&keys);
    int port = zsock_bind(server, "tcp://127.0.0.1:*");
    CHECK(port > 0);
    snprintf(endpoint, size, "tcp://127.0.0.1:%d", port);
    return server;
}

/* mois's agent, connected to a fake broker, is told to rotate to a second
   certificate (as by SIGHUP); `remove` takes that certificate out of the
   directory (rolling the rotation back) before its connection is up. The
   serial the agent is on once the new connection has had time to come up. */
static uint64_t s_rotate(bool remove, uint64_t *old_serial)
{
    char dir[] = "/tmp/sharebus-test-keys.XXXXXX", certs[128], data[128], listen[128];
    char endpoint[64], err[256], path[192];
    if (!mkdtemp(dir))
        abort();
    snprintf(certs, sizeof certs, "%s/certs", dir);
    snprintf(data, sizeof data, "%s/agent", dir);
    snprintf(listen, sizeof listen, "ipc://%s/mois.sock", dir);
    CHECK_EQ(sbi_ca_init(certs, err, sizeof err), SB_OK);
    CHECK_EQ(sbi_ca_issue(certs, SBI_CERT_BROKER, "broker", "broker", 30, false, NULL, err,
                          sizeof err), SB_OK);
    CHECK_EQ(sbi_ca_issue(certs, SBI_CERT_AGENCY, "mois", "mois", 30, false, old_serial, err,
                          sizeof err), SB_OK);
    zsock_t *broker = s_fake_broker(certs, endpoint, sizeof endpoint);
    agent_config_t config = {.agency = "mois", .certs = certs, .broker = endpoint,
                             .listen = listen, .data = data};
    agent_t *agent = agent_new(&config);
    CHECK(agent != NULL);
    uint64_t serial = 0;
    if (agent) {
        CHECK_EQ(sbi_ca_issue(certs, SBI_CERT_AGENCY, "mois", "mois", 30, true, NULL, err,
                              sizeof err), SB_OK);
        agent_keys_reload(agent, true);
        if (remove) {
            snprintf(path, sizeof path, "%s/mois.cert", certs);
            CHECK_EQ(unlink(path), 0);
            agent_keys_reload(agent, false);
        }
        /* Until the switch is over, one way or the other (its connection
           up); the bound only keeps a broken build from hanging. */
        for (int64_t end = zclock_mono() + 30000;
             zclock_mono() < end && agent_keys_switching(agent);)
        {
            agent_keys_tick(agent);
            zclock_sleep(10);
        }
        serial = agent->me->serial;
        agent_destroy(&agent);
    }
    zsock_destroy(&broker);
    char command[128];
    snprintf(command, sizeof command, "rm -rf %s", dir);
    if (system(command) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return serial;
}

TEST(test_rotation_switches_once_the_new_connection_is_up)
{
    uint64_t old = 0;
    uint64_t now = s_rotate(false, &old);
    CHECK(old != 0 && now != 0 && now != old);
}

/* The new certificate gone from the directory when its connection comes
   up: the agent stays on the one it has, instead of aborting. */
TEST(test_rotation_to_a_certificate_gone_meanwhile_stays_on_the_old_one)
{
    uint64_t old = 0;
    CHECK_EQ(s_rotate(true, &old), old);
}

int main(int argc, char **argv)
{
    sbi_init();
    return RUN_TESTS();
}
