/*  keys.c - the agent's certificates and key pairs over time: reloading the
    certificate directory, and switching to a new certificate without
    losing a message.

    Other agencies' certificates. The agent reloads its certificate
    directory when it changes (checked every few seconds: file names,
    sizes and times), when a message comes from a key it does not know
    (when the directory changed since), and on SIGHUP. An agency may hold two valid
    certificates while it rotates: its messages verify under either, and
    what we seal for it goes to the certificate it was last seen signing
    with (sbi_trust_prefer), so it can open it whether or not it has
    switched yet.

    Our own certificate (SIGHUP only). When the directory holds a newer
    valid certificate of our agency with its key file, the agent connects
    to the broker a second time, with the new CURVE key, and keeps working
    on the old connection meanwhile (make before break). Once the broker
    has admitted the new key (the handshake succeeded), it signs with the
    new keys and sends on the new connection; the old one stays open for
    S_DRAIN_MS to receive what the broker had already routed to it. Every
    key pair it held stays in memory to open what was sealed for it
    (replies to requests signed with the old key, queued events), and the
    retired key files ID.SERIAL.key found in the directory at start are
    loaded for the same reason. Once a certificate of ours is revoked, its
    key pair still opens, but a MAC made for it no longer proves anything
    (whoever holds its secret can make one in any agency's name): such an
    envelope is taken only when its sender's signature holds too. If the
    broker never admits the new key (it was not reloaded with the new
    certificate), the agent stays on the old one and says so every
    S_NAG_MS; if the new certificate is gone from the directory (or no
    longer valid) when its connection comes up, the agent stays on the old
    one too.
*/
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent.h"

#define S_DRAIN_MS 5000       /* the old connection stays open this long */
#define S_CHECK_MS 2000       /* how often the directory is looked at */
#define S_NAG_MS 10000        /* how often a switch waiting for the broker is logged */
#define S_UNKNOWN_GAP_MS 100  /* unknown keys make us look at the directory this often */
#define S_HUP_MS 50           /* how often a pending SIGHUP is looked for */

struct agent_keys_t {
    zlistx_t *retired;        /* sbi_crypto_t *: earlier key pairs, to open with */
    sbi_crypto_t *next;       /* a newer certificate's keys, until its connection is up */
    uint8_t next_server[32];  /* the broker's CURVE key that connection expects */
    zsock_t *next_bus;
    zsock_t *next_monitor;
    int64_t next_since;
    int64_t next_nag;
    zsock_t *old_bus;         /* the previous connection, draining */
    int64_t old_until;
    zpoller_t *poller;        /* the loop's */
    uint8_t stamp[32];        /* of the directory when last loaded */
    int64_t loaded_at;
    int64_t next_check;
    int64_t next_hup;         /* when to look for a SIGHUP next (a system call) */
    int64_t unknown_check;    /* when a message from an unknown key last made us look */
};

bool agent_keys_switching(const agent_t *self)
{
    return self->keys && self->keys->next;
}

static void s_crypto_free(void **item_p)
{
    sbi_crypto_destroy((sbi_crypto_t **) item_p);
}

/* A digest of the names, sizes and times of the certificate directory's
   certificate and revocation files: it changes when any of them does. */
static void s_stamp(const char *dir, uint8_t stamp[32])
{
    crypto_generichash_state state;
    crypto_generichash_init(&state, NULL, 0, 32);
    uint8_t sum[32] = {0};
    DIR *handle = opendir(dir);
    struct dirent *entry;
    while (handle && (entry = readdir(handle))) {
        size_t n = strlen(entry->d_name);
        if (n < 5 || (strcmp(entry->d_name + n - 5, ".cert") != 0
                      && strcmp(entry->d_name + n - 4, ".crl") != 0))
            continue;
        char path[4400];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
        if (stat(path, &st) != 0)
            continue;
        /* Order-free: add up one digest per file. */
        uint8_t one[32];
        char line[4600];
        int len = snprintf(line, sizeof line, "%s %lld %lld.%09ld", entry->d_name,
                           (long long) st.st_size, (long long) st.st_mtim.tv_sec,
                           st.st_mtim.tv_nsec);
        crypto_generichash(one, sizeof one, (const uint8_t *) line, (size_t) len, NULL, 0);
        sodium_add(sum, one, sizeof sum);
    }
    if (handle)
        closedir(handle);
    crypto_generichash_update(&state, sum, sizeof sum);
    crypto_generichash_final(&state, stamp, 32);
}

/* The key pair in `path` if it matches `cert`, else NULL (quietly when the
   file does not exist). */
static sbi_crypto_t *s_load_pair(const char *path, const sbi_cert_t *cert)
{
    sbi_crypto_t *crypto = NULL;
    char err[2 * 4096 + 128];
    int rc = sbi_crypto_load(path, cert, &crypto, err, sizeof err);
    if (rc != SB_OK && !(rc == SB_EIO && errno == ENOENT))
        sbi_warning("%s", err);
    return crypto;
}

static bool s_holds(agent_t *self, const uint8_t box_public[32])
{
    agent_keys_t *k = self->keys;
    if (memcmp(sbi_crypto_keys(self->crypto)->cert.box_public, box_public, 32) == 0)
        return true;
    for (sbi_crypto_t *c = zlistx_first(k->retired); c; c = zlistx_next(k->retired))
        if (memcmp(sbi_crypto_keys(c)->cert.box_public, box_public, 32) == 0)
            return true;
    return false;
}

/* Retired key files of our agency, ID.SERIAL.key, for opening. */
static void s_load_retired(agent_t *self)
{
    const char *agency = self->config.agency;
    for (size_t i = 0; i < sbi_trust_count(self->trust); i++) {
        const sbi_cert_t *cert = sbi_trust_at(self->trust, i);
        if (strcmp(cert->agency, agency) != 0 || s_holds(self, cert->box_public))
            continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s.%llu.key", self->config.certs, agency,
                 (unsigned long long) cert->serial);
        sbi_crypto_t *crypto = s_load_pair(path, cert);
        if (crypto) {
            zlistx_add_end(self->keys->retired, crypto);
            sbi_info("keys of the retired certificate serial %llu loaded, to open what was "
                     "sealed for them", (unsigned long long) cert->serial);
        }
    }
}

int agent_keys_open(agent_t *self)
{
    agent_keys_t *k = calloc(1, sizeof *k);
    assert(k);
    k->retired = zlistx_new();
    zlistx_set_destructor(k->retired, s_crypto_free);
    self->keys = k;
    s_stamp(self->config.certs, k->stamp);
    k->loaded_at = zclock_mono();
    k->next_check = k->loaded_at + S_CHECK_MS;
    s_load_retired(self);
    return 0;
}

static void s_drop_socket(agent_keys_t *k, zsock_t **sock_p, bool monitored)
{
    if (!*sock_p)
        return;
    if (k->poller)
        zpoller_remove(k->poller, *sock_p);
    if (monitored)
        zmq_socket_monitor(zsock_resolve(*sock_p), NULL, 0);
    zsock_destroy(sock_p);
}

static void s_drop_next(agent_keys_t *k)
{
    s_drop_socket(k, &k->next_bus, true);
    s_drop_socket(k, &k->next_monitor, false);
    sbi_crypto_destroy(&k->next);
}

void agent_keys_close(agent_t *self)
{
    agent_keys_t *k = self->keys;
    if (!k)
        return;
    s_drop_next(k);
    s_drop_socket(k, &k->old_bus, false);
    zlistx_destroy(&k->retired);
    free(k);
    self->keys = NULL;
}

void agent_keys_attach(agent_t *self, zpoller_t *poller)
{
    self->keys->poller = poller;
}

/* Loads the directory afresh, keeping our identity (the certificate of the
   keys we use) and the preferences learnt. 0, or -1 keeping the old. */
static int s_reload_trust(agent_t *self, const char *why)
{
    agent_keys_t *k = self->keys;
    char err[512];
    s_stamp(self->config.certs, k->stamp);
    k->loaded_at = zclock_mono();
    sbi_trust_t *trust = sbi_trust_new(self->config.certs, err, sizeof err);
    if (!trust) {
        sbi_error("certificates not reloaded (%s): %s", why, err);
        return -1;
    }
    sbi_trust_inherit(trust, self->trust);
    const sbi_cert_t *me = sbi_trust_by_curve(trust, sbi_crypto_keys(self->crypto)->cert.curve_public);
    const sbi_cert_t *broker = sbi_trust_newest(trust, "broker", sbi_now_ms());
    if (!me || strcmp(me->agency, self->config.agency) != 0 || !broker) {
        sbi_error("certificates not reloaded (%s): %s", why,
                  broker ? "the certificate of the keys in use is gone from the directory"
                         : "no valid broker certificate");
        sbi_trust_destroy(&trust);
        return -1;
    }
    int rc = sbi_trust_check(trust, me, sbi_now_ms());
    if (rc != SB_OK)
        sbi_error("our certificate serial %llu is %s: install a new one and send SIGHUP",
                  (unsigned long long) me->serial, sb_strerror(rc));
    /* The broker we are connected to stays pinned until SIGHUP. */
    const sbi_cert_t *pinned = sbi_trust_by_curve(trust, self->broker->curve_public);
    if (!pinned || pinned->kind != SBI_CERT_BROKER)
        pinned = broker;
    if (pinned != broker)
        sbi_warning("broker.cert has a new key: send SIGHUP to reconnect with it");
    sbi_trust_prefer(trust, pinned);   /* what the broker's messages verify under first */
    sbi_trust_destroy(&self->trust);
    self->trust = trust;
    self->me = me;
    self->broker = pinned;
    sbi_info("certificates reloaded (%s): %zu", why, sbi_trust_count(trust));
    return 0;
}

void agent_keys_reload(agent_t *self, bool rotate)
{
    agent_keys_t *k = self->keys;
    if (s_reload_trust(self, rotate ? "SIGHUP" : "the directory changed") != 0 || !rotate)
        return;
    const sbi_cert_t *broker = sbi_trust_newest(self->trust, "broker", sbi_now_ms());
    bool new_broker = broker && broker != self->broker;
    if (!broker)
        broker = self->broker;
    const sbi_cert_t *newest = sbi_trust_newest(self->trust, self->config.agency, sbi_now_ms());
    if (!newest) {
        sbi_error("no valid certificate of %s in %s: staying on serial %llu",
                  self->config.agency, self->config.certs, (unsigned long long) self->me->serial);
        return;
    }
    if (newest == self->me && !new_broker) {
        sbi_notice("no newer certificate of %s: still serial %llu", self->config.agency,
                   (unsigned long long) self->me->serial);
        return;
    }
    sbi_crypto_t *next;
    if (newest == self->me) /* the same keys, to a broker with a new key */
        next = sbi_crypto_new(sbi_crypto_keys(self->crypto));
    else {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s.key", self->config.certs, self->config.agency);
        next = s_load_pair(path, newest);
        if (!next) {
            sbi_error("%s does not hold the keys of certificate serial %llu: staying on serial "
                      "%llu", path, (unsigned long long) newest->serial,
                      (unsigned long long) self->me->serial);
            return;
        }
    }
    s_drop_next(k);
    k->next = next;
    memcpy(k->next_server, broker->curve_public, 32);
    k->next_bus = agent_bus_new(self, next, broker->curve_public, &k->next_monitor);
    if (!k->next_bus) {
        s_drop_next(k);
        return;
    }
    if (k->poller) {
        zpoller_add(k->poller, k->next_bus);
        zpoller_add(k->poller, k->next_monitor);
    }
    k->next_since = zclock_mono();
    k->next_nag = k->next_since + S_NAG_MS;
    if (new_broker)
        sbi_notice("connecting to the broker's new key (broker certificate serial %llu)%s",
                   (unsigned long long) broker->serial,
                   newest == self->me ? "" : ", with our new certificate");
    if (newest != self->me)
        sbi_notice("switching to certificate serial %llu: connecting with its key",
                   (unsigned long long) newest->serial);
}

/* The new connection is up: sign and send with the new keys from now on,
   if their certificate is still one of ours, valid, in the directory (it
   may have been taken out, or revoked, since the switch began: then the
   new connection is dropped and we stay as we are). */
static void s_switch(agent_t *self)
{
    agent_keys_t *k = self->keys;
    uint64_t from = self->me->serial;
    const sbi_keys_t *next = sbi_crypto_keys(k->next);
    const sbi_cert_t *me = sbi_trust_by_curve(self->trust, next->cert.curve_public);
    int rc = !me || strcmp(me->agency, self->config.agency) != 0
                 ? SB_ENOTFOUND : sbi_trust_check(self->trust, me, sbi_now_ms());
    if (rc != SB_OK) {
        sbi_error("not switching to certificate serial %llu (%s): staying on serial %llu",
                  (unsigned long long) next->cert.serial,
                  rc == SB_ENOTFOUND ? "gone from the directory" : sb_strerror(rc),
                  (unsigned long long) from);
        s_drop_next(k);
        return;
    }
    agent_flush(self);          /* sealed with the old keys: signed and sent with them */
    s_drop_socket(k, &k->old_bus, false);        /* a drain still running */
    zlistx_add_end(k->retired, self->crypto);
    self->crypto = k->next;
    k->next = NULL;
    self->me = me;
    const sbi_cert_t *broker = sbi_trust_by_curve(self->trust, k->next_server);
    if (broker && broker->kind == SBI_CERT_BROKER) {
        self->broker = broker;
        sbi_trust_prefer(self->trust, broker);
    }
    zmq_socket_monitor(zsock_resolve(self->bus), NULL, 0);
    s_drop_socket(k, &self->monitor, false);
    k->old_bus = self->bus;
    k->old_until = zclock_mono() + S_DRAIN_MS;
    self->bus = k->next_bus;
    self->monitor = k->next_monitor;
    k->next_bus = NULL;
    k->next_monitor = NULL;
    self->welcomed = false;
    self->next_hello = 0;       /* the broker routes to us here from our hello */
    if (from != me->serial)
        sbi_notice("switched from certificate serial %llu to serial %llu; the old connection "
                   "drains for %d s", (unsigned long long) from, (unsigned long long) me->serial,
                   S_DRAIN_MS / 1000);
    else
        sbi_notice("switched to the broker's new key; the old connection drains for %d s",
                   S_DRAIN_MS / 1000);
}

void agent_keys_tick(agent_t *self)
{
    agent_keys_t *k = self->keys;
    int64_t now = zclock_mono();
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    static const struct timespec no_wait = {0, 0};
    if (now >= k->next_hup) {
        k->next_hup = now + S_HUP_MS;
        if (sigtimedwait(&hup, NULL, &no_wait) == SIGHUP)   /* blocked: see main.c */
            agent_keys_reload(self, true);
    }
    if (k->next_monitor && (zsock_events(k->next_monitor) & ZMQ_POLLIN)) {
        zmsg_t *event = zmsg_recv(k->next_monitor);
        zmsg_destroy(&event);
        s_switch(self);
    }
    else if (k->next && now >= k->next_nag) {
        sbi_warning("the new connection is not up after %lld s: the broker has not admitted "
                    "our new certificate (install it in the broker's certificate directory and "
                    "run sharebus-broker reload) or does not run with its new key yet",
                    (long long) (now - k->next_since) / 1000);
        k->next_nag = now + S_NAG_MS;
    }
    if (k->old_bus && now >= k->old_until) {
        s_drop_socket(k, &k->old_bus, false);
        sbi_info("the connection of the previous certificate is closed");
    }
    if (now >= k->next_check) {
        k->next_check = now + S_CHECK_MS;
        uint8_t stamp[32];
        s_stamp(self->config.certs, stamp);
        if (memcmp(stamp, k->stamp, sizeof stamp) != 0)
            agent_keys_reload(self, false);
    }
}

zframe_t *agent_keys_recv(agent_t *self)
{
    zsock_t *old = self->keys->old_bus;
    return old ? zframe_recv(old) : NULL;     /* its receive timeout is 0 */
}

/* The MAC of `env` for key pair `c`. When the certificate of `c` is
   revoked its secret may be in other hands, and whoever holds it can make
   a MAC for us in any agency's name (the broker passing it): then the
   sender's signature must hold too (what was sealed for that key before
   it was revoked, queued events say, still comes in). */
static int s_verify_mac(agent_t *self, sbi_envelope_t *env, sbi_crypto_t *c, uint64_t now)
{
    int rc = sbi_envelope_verify_mac(env, self->trust, c, now);
    const sbi_crl_t *crl = sbi_trust_crl(self->trust);
    if (rc == SB_OK && sbi_crl_revoked(crl, sbi_crypto_keys(c)->cert.serial))
        rc = sbi_envelope_verify(env, self->trust, NULL, now);
    return rc;
}

/* The broker's envelopes: its Ed25519 signature. Another agency's must
   carry a MAC for us, checked under each key pair we hold (it was made for
   the one the sender sealed to), with the signature as well for a key
   pair whose certificate is revoked; one without (stripped, or a flipped
   tag) is refused like a bad signature. */
static int s_verify(agent_t *self, sbi_envelope_t *env)
{
    agent_keys_t *k = self->keys;
    uint64_t now = sbi_now_ms();
    if (strcmp(env->header->from, "broker") == 0)
        return sbi_envelope_verify(env, self->trust, NULL, now);
    int rc = s_verify_mac(self, env, self->crypto, now);
    for (sbi_crypto_t *c = zlistx_first(k->retired); rc == SB_EBADSIG && c;
         c = zlistx_next(k->retired))
        rc = s_verify_mac(self, env, c, now);
    if (rc == SB_EBADSIG && k->next)
        rc = s_verify_mac(self, env, k->next, now);
    return rc;
}

int agent_keys_verify(agent_t *self, sbi_envelope_t *env)
{
    agent_keys_t *k = self->keys;
    int rc = s_verify(self, env);
    int64_t now = zclock_mono();
    if ((rc == SB_EUNKNOWN || rc == SB_EBADSIG) && strcmp(env->header->from, "broker") != 0
        && now - k->unknown_check >= S_UNKNOWN_GAP_MS) {
        k->unknown_check = now;
        /* Perhaps a certificate we have not loaded yet: look, and reload
           only when the directory changed (the broker checked the
           signature already, and we look at most every S_UNKNOWN_GAP_MS,
           so neither a bad signature nor a bad MAC is a flood's lever). */
        uint8_t stamp[32];
        s_stamp(self->config.certs, stamp);
        if (memcmp(stamp, k->stamp, sizeof stamp) != 0
            && s_reload_trust(self, "a sender's key is unknown") == 0)
            rc = s_verify(self, env);
    }
    if (rc == SB_OK && env->sender->kind == SBI_CERT_AGENCY)
        sbi_trust_prefer(self->trust, env->sender);
    return rc;
}

int agent_keys_open_payload(agent_t *self, sbi_envelope_t *env, Sharebus__Payload **payload_p)
{
    agent_keys_t *k = self->keys;
    int rc = sbi_envelope_open(env, self->crypto, payload_p);
    /* Sealed for a key pair we held before, or hold for the switch. */
    for (sbi_crypto_t *c = zlistx_first(k->retired); rc == SB_EBADSIG && c;
         c = zlistx_next(k->retired))
        rc = sbi_envelope_open(env, c, payload_p);
    if (rc == SB_EBADSIG && k->next)
        rc = sbi_envelope_open(env, k->next, payload_p);
    return rc;
}
