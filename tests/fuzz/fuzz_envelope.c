/*  fuzz_envelope - any bytes through the envelope decoder, and through
    verify and open when they decode. */
#include "envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sbi_crypto_t *crypto;
    if (!crypto) {
        sbi_init();
        sbi_keys_t keys;
        sbi_keys_generate(&keys, SBI_CERT_AGENCY);
        crypto = sbi_crypto_new(&keys);
        sbi_keys_wipe(&keys);
    }
    sbi_envelope_t env;
    if (sbi_envelope_decode(&env, data, size) != SB_OK)
        return 0;
    /* Pretend the signature held, to reach the opener with hostile bytes. */
    sbi_cert_t sender;
    memset(&sender, 0, sizeof sender);
    memcpy(sender.box_public, sbi_crypto_keys(crypto)->cert.box_public, 32);
    env.sender = &sender;
    Sharebus__Payload *payload = NULL;
    if (sbi_envelope_open(&env, crypto, &payload) == SB_OK)
        sharebus__payload__free_unpacked(payload, NULL);
    sbi_envelope_clear(&env);
    return 0;
}
