/*  consent.h - decoding consent records: a Consent as an agent signed it,
    and a ConsentEntry as the broker's registry stores it. Pure functions
    over bytes, so that the broker, the client library and the fuzzer use
    the same checks. */
#ifndef SBI_CONSENT_H_INCLUDED
#define SBI_CONSENT_H_INCLUDED

#include "sbi.h"

#define SBI_CONSENT_ID_LEN 32       /* lower-case hex */
#define SBI_EVIDENCE_MAX 1024
#define SBI_REASON_MAX 1024         /* a revocation's reason */

/* True when `id` is a consent id: 32 lower-case hexadecimal digits. */
bool sbi_consent_id_valid(const char *id);

/* Decodes the Consent in `bytes` with a bounded allocator and checks its
   shape: the id, a 32-byte subject reference, the consumer's agency id,
   dataset and purpose names, evidence of at most SBI_EVIDENCE_MAX bytes.
   SB_OK, or SB_EMALFORMED; *consent_p is set whenever the bytes decode
   (free it with sharebus__consent__free_unpacked(c, NULL)), NULL otherwise. */
int sbi_consent_decode(ProtobufCBinaryData bytes, Sharebus__Consent **consent_p)
    SBI_UNUSED_RESULT;

/* Decodes a stored ConsentEntry and the Consent it carries, both checked:
   SB_OK with both set, or SB_EMALFORMED with both NULL. */
int sbi_consent_entry_decode(const void *data, size_t size, Sharebus__ConsentEntry **entry_p,
                             Sharebus__Consent **consent_p) SBI_UNUSED_RESULT;

#endif
