/*  envelope.h - the signed, sealed unit of the bus.

    Sending: sbi_header_init(), fill the header, sbi_envelope_seal() packs
    the Payload, seals it for the recipient's X25519 key, hashes the
    ciphertext into the header, signs the header bytes, adds the MAC when
    sender and recipient are both agencies, and returns one frame.

    Receiving: sbi_envelope_decode() (bounded, any bytes at all give a code
    or an envelope), then sbi_envelope_verify() (sender certificate,
    signature, payload hash: the broker, and agents for the broker's) or
    sbi_envelope_verify_mac() (the same with the MAC in place of the
    signature: agents, for what another agency sealed for them), then
    sbi_envelope_open() (only the recipient can).
*/
#ifndef SBI_ENVELOPE_H_INCLUDED
#define SBI_ENVELOPE_H_INCLUDED

#include "cert.h"

#define SBI_NONCE_SIZE crypto_box_NONCEBYTES
#define SBI_MAC_SIZE 32   /* keyed BLAKE2b-256 */

/* An agency's own keys with a cache of precomputed X25519 shared keys, so
   that sealing and opening cost a symmetric operation, not a scalar mult. */
typedef struct sbi_crypto_t sbi_crypto_t;

/* Copies `keys` (the caller may wipe its copy). */
sbi_crypto_t *sbi_crypto_new(const sbi_keys_t *keys);

/* Loads the key file `path` for certificate `cert`: SB_OK with *crypto_p
   set, SB_EIO (errno kept) when unreadable or refused for its mode,
   SB_ETOOBIG or SB_EMALFORMED when not a key file, SB_EBADCERT when its
   keys are not the certificate's. Logs nothing: on failure `err` gets one
   line naming the file and why, for the caller to log or not. */
int sbi_crypto_load(const char *path, const sbi_cert_t *cert, sbi_crypto_t **crypto_p,
                    char *err, size_t err_size) SBI_UNUSED_RESULT;

/* Wipes every secret and frees. */
void sbi_crypto_destroy(sbi_crypto_t **self_p);

/* The keys it holds, with the certificate loaded beside them. */
const sbi_keys_t *sbi_crypto_keys(sbi_crypto_t *self);

/* A header ready to fill, with its own storage for the message id. */
typedef struct {
    Sharebus__Header header;
    uint8_t message_id[SBI_ID_SIZE];
} sbi_header_t;

/* Sets version, kind, a fresh message id, from, to and created time. The
   strings are borrowed and must outlive the seal. */
void sbi_header_init(sbi_header_t *self, Sharebus__Kind kind, const char *from,
                     const char *to);

/* Makes `header` acknowledge `n` ids (1 to SBI_ACKS_MAX): the first in
   correlation_id, the others in acked_ids, pointing into `ids` through
   `more` (room for n - 1). `ids` and `more` must outlive the header. */
void sbi_header_set_acks(Sharebus__Header *header, uint8_t (*ids)[SBI_ID_SIZE], size_t n,
                         ProtobufCBinaryData *more);

/* The `i`th id an EVENT_ACK acknowledges, for i from 0 to n_acked_ids. */
static inline const uint8_t *sbi_header_acked(const Sharebus__Header *header, size_t i)
{
    return i == 0 ? header->correlation_id.data : header->acked_ids[i - 1].data;
}

/* Seals `payload` (NULL for none) for `to`, signs `header` and returns the
   envelope frame in *frame_p. Sets header->payload_hash. When `me` and `to`
   are both agencies the envelope carries the MAC (sbi_envelope_mac) too.
   SB_EBADCERT when `to`'s X25519 key is unusable, SB_ETOOBIG. */
int sbi_envelope_seal(sbi_crypto_t *me, const sbi_cert_t *to, Sharebus__Header *header,
                      const Sharebus__Payload *payload, zframe_t **frame_p)
    SBI_UNUSED_RESULT;

/* Batch signatures: an agent seals the envelopes of a loop turn at once
   (sbi_envelope_seal_later), then signs them all with one Ed25519
   signature (sbi_envelope_sign_batch) over the root of a hash tree of
   their headers: leaf BLAKE2b-256(0x00 || header), node BLAKE2b-256(0x01 ||
   left || right), the leaves padded with zero nodes to a power of two, the
   signature over "sharebus batch v1" || root. Each envelope carries the
   signature, the sibling hashes up to the root (batch_path) and its leaf's
   index, so that it proves its sender by itself, as a lone signature does:
   to the broker, and to anyone holding an audit record of it. */
#define SBI_BATCH_LEVELS 8                        /* a path of 8 hashes at most */
#define SBI_BATCH_MAX (1u << SBI_BATCH_LEVELS)    /* envelopes per signature */

/* An envelope sealed and MACed but not signed yet. */
typedef struct sbi_sealed_t sbi_sealed_t;

/* Seals as sbi_envelope_seal() does and packs the header, leaving the
   signature for sbi_envelope_sign_batch(). Same errors. */
int sbi_envelope_seal_later(sbi_crypto_t *me, const sbi_cert_t *to, Sharebus__Header *header,
                            const Sharebus__Payload *payload, sbi_sealed_t **sealed_p)
    SBI_UNUSED_RESULT;

/* Signs `count` (1 to SBI_BATCH_MAX) sealed envelopes with one signature
   and puts their frames in frames[0..count), in order; takes and frees
   each sealed[i]. One alone is signed over its header, without a path:
   exactly what sbi_envelope_seal() makes. */
void sbi_envelope_sign_batch(sbi_crypto_t *me, sbi_sealed_t **sealed, size_t count,
                             zframe_t **frames);

/* Frees a sealed envelope not signed after all. */
void sbi_sealed_destroy(sbi_sealed_t **self_p);

/* A received envelope, decoded. */
typedef struct {
    Sharebus__Envelope *envelope;  /* owns the header bytes and payload */
    Sharebus__Header *header;
    const sbi_cert_t *sender;      /* set by sbi_envelope_verify(_mac) */
    bool batched;                  /* signed in a batch: over batch_root */
    uint8_t batch_root[SBI_HASH_SIZE]; /* set when its signature is verified */
    int public_key_ops;            /* Ed25519 verifies its verification ran */
} sbi_envelope_t;

/* Decodes one frame. Returns SB_OK, SB_ETOOBIG or SB_EMALFORMED; never
   allocates more than a fixed multiple of `size`. Checks shape only: ids,
   names and lengths are well-formed, a batch path is whole hashes, at most
   SBI_BATCH_LEVELS, with an index that fits it. Clear with
   sbi_envelope_clear(). */
int sbi_envelope_decode(sbi_envelope_t *self, const uint8_t *data, size_t size)
    SBI_UNUSED_RESULT;

/* Verifies against the trust store: the sender's certificate exists and is
   valid (SB_EUNKNOWN, SB_EREVOKED, SB_EEXPIRED), the signature holds and the
   payload matches its hash (SB_EBADSIG). With `cert` non-NULL, that
   certificate must be the sender's (SB_ESENDER otherwise): the broker passes
   the certificate the connection authenticated with. */
int sbi_envelope_verify(sbi_envelope_t *self, sbi_trust_t *trust, const sbi_cert_t *cert,
                        uint64_t now_ms) SBI_UNUSED_RESULT;

/* sbi_envelope_verify() with a shortcut for batches: `like` (NULL for
   none) is an envelope this caller verified with the same `cert`; when
   both carry the same signature over the same batch root, the signature
   is not verified again (everything else is). So a batch of envelopes
   from one sender costs one Ed25519 verify. */
int sbi_envelope_verify_like(sbi_envelope_t *self, sbi_trust_t *trust, const sbi_cert_t *cert,
                             const sbi_envelope_t *like, uint64_t now_ms) SBI_UNUSED_RESULT;

/* The MAC of the envelope's header and signature between `me` and `peer`:
   keyed BLAKE2b-256 under a key derived (crypto_kdf, context "sbenvmac",
   subkey 1) from their precomputed X25519 shared key, the one that seals
   payloads between them. An envelope signed in a batch is MACed under
   subkey 2 over the header's length (4 bytes, big-endian), the header,
   the signature, batch_index (4 bytes, big-endian) and batch_path: so
   everything that proves its sender is covered, and no byte can move
   from one field to another. The key is the same in both directions; header.from and
   header.to, inside the MAC, say which way. SB_OK, or SB_EBADCERT when
   `peer`'s X25519 key is unusable. */
int sbi_envelope_mac(sbi_crypto_t *me, const sbi_cert_t *peer,
                     const Sharebus__Envelope *envelope, uint8_t mac[SBI_MAC_SIZE])
    SBI_UNUSED_RESULT;

/* Verifies as sbi_envelope_verify() does (sender certificate valid and
   unrevoked, any valid certificate of the sender during its key rotation,
   payload hash), with the envelope's MAC for `me` in place of the Ed25519
   signature: one BLAKE2b instead of a public-key operation. For agents,
   on envelopes from another agency; the broker cannot (it does not hold
   the key) and checks the signature. SB_EBADSIG also when the envelope
   has no MAC, or when it was made for another of the recipient's key
   pairs (an agent holding several tries each). The signature is not
   checked: the MAC covers it, so it is the sender's own bytes, and the
   broker refuses envelopes whose signature does not hold; but for an
   envelope signed in a batch whose MAC is the earlier kind (header ||
   signature || batch_path under subkey 1, from an agent before the
   change: an event queued before an upgrade), the signature must hold
   too. */
int sbi_envelope_verify_mac(sbi_envelope_t *self, sbi_trust_t *trust, sbi_crypto_t *me,
                            uint64_t now_ms) SBI_UNUSED_RESULT;

/* Opens the payload of a verified envelope addressed to `me`: SB_EBADSIG
   when it does not authenticate, SB_EMALFORMED when it does not decode.
   An empty payload gives an empty Payload. Free with
   sharebus__payload__free_unpacked(payload, NULL). */
int sbi_envelope_open(sbi_envelope_t *self, sbi_crypto_t *me, Sharebus__Payload **payload_p)
    SBI_UNUSED_RESULT;

void sbi_envelope_clear(sbi_envelope_t *self);

/* Puts what proves `envelope`'s sender into audit record `r`, borrowed
   from `envelope`: the header bytes, the signature and, for a batch, its
   path and index. */
void sbi_envelope_proof(const Sharebus__Envelope *envelope, Sharebus__AuditRecord *r);

/* Hex of a message id for logs ("-" when empty), into out[33]. */
const char *sbi_id_hex(ProtobufCBinaryData id, char out[2 * SBI_ID_SIZE + 1]);

#endif
