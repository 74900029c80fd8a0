/*  envelope.c - sign, seal, MAC, decode, verify, open. */
#include "envelope.h"

#include <stdlib.h>
#include <string.h>

#define S_SHARED_CACHE_MAX 4096
#define S_MAC_CONTEXT "sbenvmac"   /* crypto_kdf context: the MAC key is not the box key */
#define S_MAC_LONE 1               /* its subkey for an envelope signed alone */
#define S_MAC_BATCHED 2            /* and for one signed in a batch */

struct sbi_crypto_t {
    sbi_keys_t keys;
    zhashx_t *shared;   /* Z85 peer box key -> s_shared_t */
};

/* What one peer's X25519 key gives us, computed once. */
typedef struct {
    uint8_t box[crypto_box_BEFORENMBYTES];  /* crypto_box_beforenm */
    uint8_t mac[crypto_kdf_KEYBYTES];       /* derived from it: MACs of lone envelopes */
    uint8_t batch_mac[crypto_kdf_KEYBYTES]; /* and of envelopes signed in a batch */
} s_shared_t;

static void s_shared_free(void **item_p)
{
    if (*item_p) {
        sodium_memzero(*item_p, sizeof(s_shared_t));
        free(*item_p);
        *item_p = NULL;
    }
}

sbi_crypto_t *sbi_crypto_new(const sbi_keys_t *keys)
{
    sbi_crypto_t *self = calloc(1, sizeof *self);
    assert(self);
    self->keys = *keys;
    self->shared = zhashx_new();
    zhashx_set_destructor(self->shared, s_shared_free);
    return self;
}

int sbi_crypto_load(const char *path, const sbi_cert_t *cert, sbi_crypto_t **crypto_p,
                    char *err, size_t err_size)
{
    *crypto_p = NULL;
    sbi_keys_t keys;
    int rc = sbi_keys_read(path, &keys, err, err_size);
    if (rc == SB_OK && (memcmp(keys.cert.sign_public, cert->sign_public, 32) != 0
                        || memcmp(keys.cert.curve_public, cert->curve_public, 32) != 0
                        || memcmp(keys.cert.box_public, cert->box_public, 32) != 0)) {
        snprintf(err, err_size, "%s: its keys are not those of %s's certificate (serial %llu)",
                 path, cert->agency, (unsigned long long) cert->serial);
        rc = SB_EBADCERT;
    }
    if (rc == SB_OK) {
        keys.cert = *cert;
        *crypto_p = sbi_crypto_new(&keys);
    }
    sbi_keys_wipe(&keys);
    return rc;
}

void sbi_crypto_destroy(sbi_crypto_t **self_p)
{
    sbi_crypto_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy(&self->shared);
    sbi_keys_wipe(&self->keys);
    free(self);
    *self_p = NULL;
}

const sbi_keys_t *sbi_crypto_keys(sbi_crypto_t *self)
{
    return &self->keys;
}

/* The keys shared with `peer`; valid until the next call. */
static const s_shared_t *s_shared_key(sbi_crypto_t *self, const uint8_t peer[32])
{
    char z85[41];
    zmq_z85_encode(z85, peer, 32);
    s_shared_t *key = zhashx_lookup(self->shared, z85);
    if (key)
        return key;
    if (zhashx_size(self->shared) >= S_SHARED_CACHE_MAX)
        zhashx_purge(self->shared);
    key = malloc(sizeof *key);
    assert(key);
    if (crypto_box_beforenm(key->box, peer, self->keys.box_secret) != 0) {
        free(key);
        return NULL;    /* a low-order point: not a key anyone holds */
    }
    crypto_kdf_derive_from_key(key->mac, sizeof key->mac, S_MAC_LONE, S_MAC_CONTEXT, key->box);
    crypto_kdf_derive_from_key(key->batch_mac, sizeof key->batch_mac, S_MAC_BATCHED,
                               S_MAC_CONTEXT, key->box);
    zhashx_insert(self->shared, z85, key);
    return key;
}

static void s_be32(uint32_t value, uint8_t out[4])
{
    out[0] = (uint8_t) (value >> 24);
    out[1] = (uint8_t) (value >> 16);
    out[2] = (uint8_t) (value >> 8);
    out[3] = (uint8_t) value;
}

/* A lone envelope: header || signature, the signature 64 bytes, so the
   bytes split one way only. A batched one, `framed`, under a key of its
   own: the header's length first, then header, signature, index and path,
   so that no byte can move from one to another and the index is covered:
   what the recipient takes and logs is what the sender signed. Agents
   before that MACed a batched one unframed, as header || signature ||
   batch_path under the lone key: taken only with the sender's signature
   (s_made_by). */
static void s_mac(const s_shared_t *key, const Sharebus__Envelope *e, bool framed,
                  uint8_t mac[SBI_MAC_SIZE])
{
    crypto_generichash_state state;
    crypto_generichash_init(&state, framed ? key->batch_mac : key->mac, sizeof key->mac,
                            SBI_MAC_SIZE);
    uint8_t length[4], index[4];
    if (framed) {
        s_be32((uint32_t) e->header.len, length);
        crypto_generichash_update(&state, length, sizeof length);
    }
    crypto_generichash_update(&state, e->header.data, e->header.len);
    crypto_generichash_update(&state, e->signature.data, e->signature.len);
    if (framed) {
        s_be32(e->batch_index, index);
        crypto_generichash_update(&state, index, sizeof index);
    }
    if (e->batch_path.len > 0)
        crypto_generichash_update(&state, e->batch_path.data, e->batch_path.len);
    crypto_generichash_final(&state, mac, SBI_MAC_SIZE);
    sodium_memzero(&state, sizeof state);
}

int sbi_envelope_mac(sbi_crypto_t *me, const sbi_cert_t *peer,
                     const Sharebus__Envelope *envelope, uint8_t mac[SBI_MAC_SIZE])
{
    const s_shared_t *key = s_shared_key(me, peer->box_public);
    if (!key)
        return SB_EBADCERT;
    s_mac(key, envelope, envelope->batch_path.len > 0, mac);
    return SB_OK;
}

void sbi_header_init(sbi_header_t *self, Sharebus__Kind kind, const char *from,
                     const char *to)
{
    sharebus__header__init(&self->header);
    sbi_id_new(self->message_id);
    self->header.version = 1;
    self->header.kind = kind;
    self->header.message_id.data = self->message_id;
    self->header.message_id.len = SBI_ID_SIZE;
    self->header.from = (char *) from;
    self->header.to = (char *) to;
    self->header.created_ms = sbi_now_ms();
}

void sbi_header_set_acks(Sharebus__Header *header, uint8_t (*ids)[SBI_ID_SIZE], size_t n,
                         ProtobufCBinaryData *more)
{
    assert(n >= 1 && n <= SBI_ACKS_MAX);
    header->correlation_id = (ProtobufCBinaryData){SBI_ID_SIZE, ids[0]};
    for (size_t i = 1; i < n; i++)
        more[i - 1] = (ProtobufCBinaryData){SBI_ID_SIZE, ids[i]};
    header->acked_ids = more;
    header->n_acked_ids = n - 1;
}

/* ------------------------------------------------------ batch signatures */

struct sbi_sealed_t {
    size_t header_size;
    uint8_t *header;                  /* packed */
    uint8_t *payload;                 /* sealed, or NULL */
    size_t payload_size;
    bool with_mac;
    uint8_t mac_key[crypto_kdf_KEYBYTES];       /* s_shared_t's, for either kind */
    uint8_t batch_mac_key[crypto_kdf_KEYBYTES];
};

void sbi_sealed_destroy(sbi_sealed_t **self_p)
{
    sbi_sealed_t *self = *self_p;
    if (!self)
        return;
    sodium_memzero(self->mac_key, sizeof self->mac_key);
    sodium_memzero(self->batch_mac_key, sizeof self->batch_mac_key);
    free(self->header);
    free(self->payload);
    free(self);
    *self_p = NULL;
}

int sbi_envelope_seal_later(sbi_crypto_t *me, const sbi_cert_t *to, Sharebus__Header *header,
                            const Sharebus__Payload *payload, sbi_sealed_t **sealed_p)
{
    uint8_t hash[SBI_HASH_SIZE];
    bool with_mac = me->keys.cert.kind == SBI_CERT_AGENCY && to->kind == SBI_CERT_AGENCY;
    const s_shared_t *key = NULL;
    if (payload || with_mac) {
        key = s_shared_key(me, to->box_public);
        if (!key)
            return SB_EBADCERT;
    }
    sbi_sealed_t *self = calloc(1, sizeof *self);
    assert(self);
    if (payload) {
        size_t plain_size = sharebus__payload__get_packed_size(payload);
        if (plain_size > SBI_FRAME_MAX - SBI_HEADER_MAX - 256) {
            sbi_sealed_destroy(&self);
            return SB_ETOOBIG;
        }
        uint8_t *plain = malloc(plain_size + 1);
        self->payload_size = SBI_NONCE_SIZE + crypto_box_MACBYTES + plain_size;
        self->payload = malloc(self->payload_size);
        assert(plain && self->payload);
        sharebus__payload__pack(payload, plain);
        randombytes_buf(self->payload, SBI_NONCE_SIZE);
        crypto_box_easy_afternm(self->payload + SBI_NONCE_SIZE, plain, plain_size,
                                self->payload, key->box);
        sodium_memzero(plain, plain_size);
        free(plain);
        crypto_generichash(hash, sizeof hash, self->payload, self->payload_size, NULL, 0);
        header->payload_hash = (ProtobufCBinaryData){sizeof hash, hash};
    }
    else
        header->payload_hash = (ProtobufCBinaryData){0, NULL};
    self->header_size = sharebus__header__get_packed_size(header);
    if (self->header_size <= SBI_HEADER_MAX) {
        self->header = malloc(self->header_size);
        assert(self->header);
        sharebus__header__pack(header, self->header);
    }
    /* The header pointed into this stack frame: detach it. */
    header->payload_hash = (ProtobufCBinaryData){0, NULL};
    if (self->header_size > SBI_HEADER_MAX) {
        sbi_sealed_destroy(&self);
        return SB_ETOOBIG;
    }
    self->with_mac = with_mac;
    if (with_mac) {
        memcpy(self->mac_key, key->mac, sizeof self->mac_key);
        memcpy(self->batch_mac_key, key->batch_mac, sizeof self->batch_mac_key);
    }
    *sealed_p = self;
    return SB_OK;
}

/* BLAKE2b-256 of a tag byte followed by `a` and `b`: tag 0 makes a
   leaf from a header, tag 1 a node from its two children. */
static void s_tree_hash(uint8_t tag, const uint8_t *a, size_t a_size, const uint8_t *b,
                        size_t b_size, uint8_t out[SBI_HASH_SIZE])
{
    crypto_generichash_state state;
    crypto_generichash_init(&state, NULL, 0, SBI_HASH_SIZE);
    crypto_generichash_update(&state, &tag, 1);
    crypto_generichash_update(&state, a, a_size);
    crypto_generichash_update(&state, b, b_size);
    crypto_generichash_final(&state, out, SBI_HASH_SIZE);
}

static void s_leaf(const uint8_t *header, size_t size, uint8_t out[SBI_HASH_SIZE])
{
    s_tree_hash(0, header, size, NULL, 0, out);
}

static void s_node(const uint8_t left[SBI_HASH_SIZE], const uint8_t right[SBI_HASH_SIZE],
                   uint8_t out[SBI_HASH_SIZE])
{
    s_tree_hash(1, left, SBI_HASH_SIZE, right, SBI_HASH_SIZE, out);
}

/* What a batch signature signs: a fixed prefix, then the root. */
#define S_BATCH_PREFIX "sharebus batch v1"
#define S_BATCH_SIGNED (sizeof S_BATCH_PREFIX - 1 + SBI_HASH_SIZE)

static void s_batch_message(const uint8_t root[SBI_HASH_SIZE], uint8_t out[S_BATCH_SIGNED])
{
    memcpy(out, S_BATCH_PREFIX, sizeof S_BATCH_PREFIX - 1);
    memcpy(out + sizeof S_BATCH_PREFIX - 1, root, SBI_HASH_SIZE);
}

/* A path of whole hashes, 1 to SBI_BATCH_LEVELS of them, and an index that
   fits it. */
static bool s_path_valid(ProtobufCBinaryData path, uint32_t index)
{
    size_t levels = path.len / SBI_HASH_SIZE;
    return path.len % SBI_HASH_SIZE == 0 && levels >= 1 && levels <= SBI_BATCH_LEVELS
           && (index >> levels) == 0;
}

/* The root from a header's leaf up its (valid) path. */
static void s_root(const ProtobufCBinaryData header, ProtobufCBinaryData path, uint32_t index,
                   uint8_t root[SBI_HASH_SIZE])
{
    s_leaf(header.data, header.len, root);
    for (size_t level = 0; level < path.len / SBI_HASH_SIZE; level++) {
        const uint8_t *sibling = path.data + level * SBI_HASH_SIZE;
        if (index >> level & 1)
            s_node(sibling, root, root);
        else
            s_node(root, sibling, root);
    }
}

/* Builds one envelope frame from a sealed envelope and its signature. */
static zframe_t *s_frame(const sbi_sealed_t *sealed, const uint8_t signature[crypto_sign_BYTES],
                         const uint8_t *path, size_t path_size, uint32_t index)
{
    uint8_t mac[SBI_MAC_SIZE];
    Sharebus__Envelope envelope = SHAREBUS__ENVELOPE__INIT;
    envelope.header = (ProtobufCBinaryData){sealed->header_size, (uint8_t *) sealed->header};
    envelope.signature = (ProtobufCBinaryData){crypto_sign_BYTES, (uint8_t *) signature};
    envelope.payload = (ProtobufCBinaryData){sealed->payload_size, sealed->payload};
    envelope.batch_path = (ProtobufCBinaryData){path_size, (uint8_t *) path};
    envelope.batch_index = index;
    if (sealed->with_mac) {
        s_shared_t key;
        memcpy(key.mac, sealed->mac_key, sizeof key.mac);
        memcpy(key.batch_mac, sealed->batch_mac_key, sizeof key.batch_mac);
        s_mac(&key, &envelope, envelope.batch_path.len > 0, mac);
        sodium_memzero(&key, sizeof key);
        envelope.mac = (ProtobufCBinaryData){sizeof mac, mac};
    }
    zframe_t *frame = zframe_new(NULL, sharebus__envelope__get_packed_size(&envelope));
    sharebus__envelope__pack(&envelope, zframe_data(frame));
    return frame;
}

void sbi_envelope_sign_batch(sbi_crypto_t *me, sbi_sealed_t **sealed, size_t count,
                             zframe_t **frames)
{
    assert(count >= 1 && count <= SBI_BATCH_MAX);
    uint8_t signature[crypto_sign_BYTES];
    if (count == 1) {
        crypto_sign_detached(signature, NULL, sealed[0]->header, sealed[0]->header_size,
                             me->keys.sign_secret);
        frames[0] = s_frame(sealed[0], signature, NULL, 0, 0);
        sbi_sealed_destroy(&sealed[0]);
        return;
    }
    /* A complete binary tree over the leaves, padded with zero nodes:
       tree[1] is the root, the children of node i are 2i and 2i + 1, the
       leaves are at width .. 2 * width - 1. */
    size_t levels = 1, width = 2;
    while (width < count) {
        width *= 2;
        levels++;
    }
    uint8_t (*tree)[SBI_HASH_SIZE] = calloc(2 * width, SBI_HASH_SIZE);
    uint8_t *paths = malloc(levels * SBI_HASH_SIZE);
    assert(tree && paths);
    for (size_t i = 0; i < count; i++)
        s_leaf(sealed[i]->header, sealed[i]->header_size, tree[width + i]);
    for (size_t i = width - 1; i >= 1; i--)
        s_node(tree[2 * i], tree[2 * i + 1], tree[i]);
    uint8_t message[S_BATCH_SIGNED];
    s_batch_message(tree[1], message);
    crypto_sign_detached(signature, NULL, message, sizeof message, me->keys.sign_secret);
    for (size_t i = 0; i < count; i++) {
        size_t node = width + i;
        for (size_t level = 0; level < levels; level++, node /= 2)
            memcpy(paths + level * SBI_HASH_SIZE, tree[node ^ 1], SBI_HASH_SIZE);
        frames[i] = s_frame(sealed[i], signature, paths, levels * SBI_HASH_SIZE, (uint32_t) i);
        sbi_sealed_destroy(&sealed[i]);
    }
    free(paths);
    free(tree);
}

int sbi_envelope_seal(sbi_crypto_t *me, const sbi_cert_t *to, Sharebus__Header *header,
                      const Sharebus__Payload *payload, zframe_t **frame_p)
{
    sbi_sealed_t *sealed = NULL;
    int rc = sbi_envelope_seal_later(me, to, header, payload, &sealed);
    if (rc == SB_OK)
        sbi_envelope_sign_batch(me, &sealed, 1, frame_p);
    return rc;
}

static bool s_optional_name(const char *name)
{
    return !name || !*name || sbi_name_valid(name);
}

static bool s_bytes_len(ProtobufCBinaryData b, size_t len)
{
    return b.len == 0 || b.len == len;
}

static int s_check_header(const Sharebus__Header *h)
{
    if (h->version != 1 || h->kind <= SHAREBUS__KIND__KIND_NONE
        || h->kind > SHAREBUS__KIND__KIND_CHECKPOINT)
        return SB_EMALFORMED;
    if (h->message_id.len != SBI_ID_SIZE || !s_bytes_len(h->correlation_id, SBI_ID_SIZE)
        || !s_bytes_len(h->subject_ref, SBI_HASH_SIZE)
        || !s_bytes_len(h->payload_hash, SBI_HASH_SIZE)
        || !s_bytes_len(h->policy_version, SBI_HASH_SIZE))
        return SB_EMALFORMED;
    if (!sbi_agency_valid(h->from, true) || !sbi_agency_valid(h->to, true))
        return SB_EMALFORMED;
    if (!s_optional_name(h->dataset) || !s_optional_name(h->purpose)
        || !s_optional_name(h->rule_id) || !s_optional_name(h->consent_id))
        return SB_EMALFORMED;
    if (h->n_fields > SBI_FIELDS_MAX || strlen(h->reason) > 1024)
        return SB_EMALFORMED;
    for (size_t i = 0; i < h->n_fields; i++)
        if (!sbi_name_valid(h->fields[i]))
            return SB_EMALFORMED;
    /* Further acknowledged events: only on an EVENT_ACK that names a first. */
    if (h->n_acked_ids > 0
        && (h->kind != SHAREBUS__KIND__KIND_EVENT_ACK || h->correlation_id.len == 0
            || h->n_acked_ids > SBI_ACKS_MAX - 1))
        return SB_EMALFORMED;
    for (size_t i = 0; i < h->n_acked_ids; i++)
        if (h->acked_ids[i].len != SBI_ID_SIZE)
            return SB_EMALFORMED;
    return SB_OK;
}

int sbi_envelope_decode(sbi_envelope_t *self, const uint8_t *data, size_t size)
{
    memset(self, 0, sizeof *self);
    if (size > SBI_FRAME_MAX)
        return SB_ETOOBIG;
    sbi_unpack_t budget;
    self->envelope = sharebus__envelope__unpack(sbi_unpack_init(&budget, size), size, data);
    if (!self->envelope)
        return SB_EMALFORMED;
    Sharebus__Envelope *e = self->envelope;
    if (e->header.len == 0 || e->header.len > SBI_HEADER_MAX
        || e->signature.len != crypto_sign_BYTES || !s_bytes_len(e->mac, SBI_MAC_SIZE)
        || (e->batch_path.len == 0 && e->batch_index != 0)) {
        sbi_envelope_clear(self);
        return SB_EMALFORMED;
    }
    if (e->batch_path.len > 0) {
        if (!s_path_valid(e->batch_path, e->batch_index)) {
            sbi_envelope_clear(self);
            return SB_EMALFORMED;
        }
        self->batched = true;   /* its root is computed when it is verified */
    }
    self->header = sharebus__header__unpack(sbi_unpack_init(&budget, e->header.len),
                                            e->header.len, e->header.data);
    int rc = self->header ? s_check_header(self->header) : SB_EMALFORMED;
    if (rc == SB_OK && (e->payload.len > 0) != (self->header->payload_hash.len > 0))
        rc = SB_EMALFORMED;
    if (rc == SB_OK && e->payload.len > 0
        && e->payload.len < SBI_NONCE_SIZE + crypto_box_MACBYTES)
        rc = SB_EMALFORMED;
    if (rc != SB_OK)
        sbi_envelope_clear(self);
    return rc;
}

/* The sender's certificate by name: newest unrevoked, else why not. */
static int s_sender_cert(sbi_trust_t *trust, const char *agency, const sbi_cert_t **cert_p)
{
    *cert_p = sbi_trust_find(trust, agency);
    if (*cert_p)
        return SB_OK;
    for (size_t i = 0; i < sbi_trust_count(trust); i++)
        if (strcmp(sbi_trust_at(trust, i)->agency, agency) == 0)
            return SB_EREVOKED;
    return SB_EUNKNOWN;
}

/* SB_OK when `cert`'s Ed25519 signature holds: over the header, or over
   the batch root. `like` (may be NULL) is an envelope whose signature was
   found to hold for `cert`: when this one carries the same signature over
   the same root, it holds too, without a public-key operation. */
static int s_signed_by(sbi_envelope_t *self, const sbi_cert_t *cert,
                       const sbi_envelope_t *like)
{
    const Sharebus__Envelope *e = self->envelope;
    if (self->batched)
        s_root(e->header, e->batch_path, e->batch_index, self->batch_root);
    if (like && like->batched && like->sender == cert && self->batched
        && memcmp(like->batch_root, self->batch_root, SBI_HASH_SIZE) == 0
        && memcmp(like->envelope->signature.data, e->signature.data, crypto_sign_BYTES) == 0)
        return SB_OK;
    self->public_key_ops++;
    if (!self->batched)
        return crypto_sign_verify_detached(e->signature.data, e->header.data, e->header.len,
                                           cert->sign_public) == 0 ? SB_OK : SB_EBADSIG;
    uint8_t message[S_BATCH_SIGNED];
    s_batch_message(self->batch_root, message);
    return crypto_sign_verify_detached(e->signature.data, message, sizeof message,
                                       cert->sign_public) == 0 ? SB_OK : SB_EBADSIG;
}

/* SB_OK when `cert`, valid now, made the envelope: its signature holds or,
   with `me`, its MAC for `me` does. */
static int s_made_by(sbi_envelope_t *self, sbi_trust_t *trust, const sbi_cert_t *cert,
                     sbi_crypto_t *me, const sbi_envelope_t *like, uint64_t now_ms)
{
    int rc = sbi_trust_check(trust, cert, now_ms);
    if (rc != SB_OK)
        return rc;
    const Sharebus__Envelope *e = self->envelope;
    if (me) {
        uint8_t mac[SBI_MAC_SIZE];
        const s_shared_t *key = s_shared_key(me, cert->box_public);
        if (e->mac.len != SBI_MAC_SIZE || !key)
            return SB_EBADSIG;
        s_mac(key, e, self->batched, mac);
        if (sodium_memcmp(mac, e->mac.data, sizeof mac) == 0)
            return SB_OK;
        if (!self->batched)
            return SB_EBADSIG;
        /* MACed by an agent of the previous version (an event queued at
           the broker before the upgrade, say): that MAC leaves the index
           out and the fields unframed, so the signature must hold too. */
        s_mac(key, e, false, mac);
        if (sodium_memcmp(mac, e->mac.data, sizeof mac) != 0)
            return SB_EBADSIG;
        return s_signed_by(self, cert, NULL);
    }
    return s_signed_by(self, cert, like);
}

/* Signature (`me` NULL) or MAC for `me`; see the callers. */
static int s_verify(sbi_envelope_t *self, sbi_trust_t *trust, const sbi_cert_t *cert,
                    sbi_crypto_t *me, const sbi_envelope_t *like, uint64_t now_ms)
{
    Sharebus__Header *h = self->header;
    if (cert && strcmp(cert->agency, h->from) != 0)
        return SB_ESENDER;
    bool given = cert != NULL;   /* the broker's: the connection's certificate */
    int rc = given ? SB_OK : s_sender_cert(trust, h->from, &cert);
    if (rc == SB_OK)
        rc = s_made_by(self, trust, cert, me, like, now_ms);
    if ((rc == SB_EBADSIG || rc == SB_EEXPIRED) && !given) {
        /* During a key rotation the sender may sign (and MAC) with another
           of its valid certificates than the one we would seal to. */
        for (size_t i = 0; rc != SB_OK && i < sbi_trust_count(trust); i++) {
            const sbi_cert_t *other = sbi_trust_at(trust, i);
            if (other != cert && strcmp(other->agency, h->from) == 0
                && s_made_by(self, trust, other, me, NULL, now_ms) == SB_OK) {
                cert = other;
                rc = SB_OK;
            }
        }
    }
    if (rc != SB_OK)
        return rc;
    const Sharebus__Envelope *e = self->envelope;
    if (e->payload.len > 0) {
        uint8_t hash[SBI_HASH_SIZE];
        crypto_generichash(hash, sizeof hash, e->payload.data, e->payload.len, NULL, 0);
        if (sodium_memcmp(hash, h->payload_hash.data, sizeof hash) != 0)
            return SB_EBADSIG;
    }
    self->sender = cert;
    return SB_OK;
}

int sbi_envelope_verify(sbi_envelope_t *self, sbi_trust_t *trust, const sbi_cert_t *cert,
                        uint64_t now_ms)
{
    return s_verify(self, trust, cert, NULL, NULL, now_ms);
}

int sbi_envelope_verify_like(sbi_envelope_t *self, sbi_trust_t *trust, const sbi_cert_t *cert,
                             const sbi_envelope_t *like, uint64_t now_ms)
{
    return s_verify(self, trust, cert, NULL, like, now_ms);
}

int sbi_envelope_verify_mac(sbi_envelope_t *self, sbi_trust_t *trust, sbi_crypto_t *me,
                            uint64_t now_ms)
{
    assert(me);
    return s_verify(self, trust, NULL, me, NULL, now_ms);
}

int sbi_envelope_open(sbi_envelope_t *self, sbi_crypto_t *me, Sharebus__Payload **payload_p)
{
    assert(self->sender);
    *payload_p = NULL;
    const ProtobufCBinaryData *sealed = &self->envelope->payload;
    if (sealed->len == 0) {
        *payload_p = malloc(sizeof(Sharebus__Payload));
        assert(*payload_p);
        sharebus__payload__init(*payload_p);
        return SB_OK;
    }
    const s_shared_t *key = s_shared_key(me, self->sender->box_public);
    if (!key)
        return SB_EBADSIG;
    size_t plain_size = sealed->len - SBI_NONCE_SIZE - crypto_box_MACBYTES;
    uint8_t *plain = malloc(plain_size + 1);
    assert(plain);
    int rc = SB_OK;
    if (crypto_box_open_easy_afternm(plain, sealed->data + SBI_NONCE_SIZE,
                                     sealed->len - SBI_NONCE_SIZE, sealed->data, key->box) != 0)
        rc = SB_EBADSIG;
    if (rc == SB_OK) {
        sbi_unpack_t budget;
        *payload_p = sharebus__payload__unpack(sbi_unpack_init(&budget, plain_size),
                                               plain_size, plain);
        rc = *payload_p ? SB_OK : SB_EMALFORMED;
    }
    sodium_memzero(plain, plain_size);
    free(plain);
    return rc;
}

void sbi_envelope_clear(sbi_envelope_t *self)
{
    if (self->header)
        sharebus__header__free_unpacked(self->header, NULL);
    if (self->envelope)
        sharebus__envelope__free_unpacked(self->envelope, NULL);
    memset(self, 0, sizeof *self);
}

void sbi_envelope_proof(const Sharebus__Envelope *envelope, Sharebus__AuditRecord *r)
{
    r->header = envelope->header;
    r->signature = envelope->signature;
    r->batch_path = envelope->batch_path;
    r->batch_index = envelope->batch_index;
}

const char *sbi_id_hex(ProtobufCBinaryData id, char out[2 * SBI_ID_SIZE + 1])
{
    if (id.len == 0 || id.len > SBI_ID_SIZE)
        return strcpy(out, "-");
    return sbi_hex(id.data, id.len, out);
}
