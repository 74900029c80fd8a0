/*  fuzz_certificate - any text through the certificate, secret-key and
    revocation-list parsers (the files an administrator hands the bus). */
#include <stdlib.h>
#include <string.h>

#include "cert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    sbi_cert_t cert;
    if (sbi_cert_parse(text, &cert) == SB_OK) {
        char *again = sbi_cert_format(&cert);
        sbi_cert_t back;
        if (sbi_cert_parse(again, &back) != SB_OK || memcmp(&back, &cert, sizeof cert) != 0)
            abort();    /* what we print, we must read back the same */
        free(again);
    }
    sbi_keys_t keys;
    if (sbi_keys_parse(text, &keys) == SB_OK)
        sbi_keys_wipe(&keys);
    sbi_crl_t crl;
    if (sbi_crl_parse(text, &crl) == SB_OK)
        sbi_crl_clear(&crl);
    free(text);
    return 0;
}
