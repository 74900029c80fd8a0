/*  consent.c - decoding consent records (bytes from an agent or from the
    store are hostile). */
#include "consent.h"

#include <string.h>

bool sbi_consent_id_valid(const char *id)
{
    if (!id || strlen(id) != SBI_CONSENT_ID_LEN)
        return false;
    for (const char *c = id; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return false;
    return true;
}

int sbi_consent_decode(ProtobufCBinaryData bytes, Sharebus__Consent **consent_p)
{
    sbi_unpack_t budget;
    Sharebus__Consent *c = sharebus__consent__unpack(sbi_unpack_init(&budget, bytes.len),
                                                     bytes.len, bytes.data);
    *consent_p = c;
    if (!c || !sbi_consent_id_valid(c->id) || c->subject_ref.len != SBI_HASH_SIZE
        || !sbi_agency_valid(c->consumer, false) || !sbi_name_valid(c->dataset)
        || !sbi_name_valid(c->purpose) || strlen(c->evidence) > SBI_EVIDENCE_MAX)
        return SB_EMALFORMED;
    return SB_OK;
}

int sbi_consent_entry_decode(const void *data, size_t size, Sharebus__ConsentEntry **entry_p,
                             Sharebus__Consent **consent_p)
{
    sbi_unpack_t budget;
    Sharebus__ConsentEntry *entry = sharebus__consent_entry__unpack(
        sbi_unpack_init(&budget, size), size, data);
    Sharebus__Consent *c = NULL;
    int rc = entry && entry->signed_ ? sbi_consent_decode(entry->signed_->consent, &c)
                                     : SB_EMALFORMED;
    if (rc == SB_OK && !sbi_agency_valid(c->recorded_by, false))
        rc = SB_EMALFORMED;
    if (rc != SB_OK) {
        if (c)
            sharebus__consent__free_unpacked(c, NULL);
        if (entry)
            sharebus__consent_entry__free_unpacked(entry, NULL);
        entry = NULL;
        c = NULL;
    }
    *entry_p = entry;
    *consent_p = c;
    return rc;
}
