/*  fuzz_consent - hostile bytes as a consent record, decoded the way the
    broker's registry reads what it stored (sbi_consent_entry_decode, used
    by broker/consent.c) and the way it reads a consent an agent signed
    (sbi_consent_decode). What decodes must have the checked shape. */
#include <stdlib.h>
#include <string.h>

#include "consent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        sbi_init();
        ready = true;
    }
    Sharebus__ConsentEntry *entry = NULL;
    Sharebus__Consent *c = NULL;
    if (sbi_consent_entry_decode(data, size, &entry, &c) == SB_OK) {
        if (!entry || !c || !entry->signed_ || c->subject_ref.len != SBI_HASH_SIZE
            || !sbi_consent_id_valid(c->id) || !sbi_agency_valid(c->recorded_by, false))
            abort();
        for (size_t i = 0; i < entry->n_history; i++)
            if (!entry->history[i]->by || !entry->history[i]->reason)
                abort();
        sharebus__consent__free_unpacked(c, NULL);
        sharebus__consent_entry__free_unpacked(entry, NULL);
    }
    else if (entry || c)
        abort();
    c = NULL;
    ProtobufCBinaryData bytes = {size, (uint8_t *) data};
    if (sbi_consent_decode(bytes, &c) == SB_OK && strlen(c->evidence) > SBI_EVIDENCE_MAX)
        abort();
    if (c)
        sharebus__consent__free_unpacked(c, NULL);
    return 0;
}
