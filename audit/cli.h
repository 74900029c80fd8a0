/*  cli.h - what the files of sharebus-audit share. */
#ifndef SBI_AUDIT_CLI_H_INCLUDED
#define SBI_AUDIT_CLI_H_INCLUDED

#include "audit.h"

#define CLI_CHECKPOINTS_MAX 64

typedef struct {
    const char *data; /* DDIR: the store is DDIR/store */
    const char *certs;
    const char *signer; /* whose checkpoints: "broker" */
    const char *subject;
    const char *subject_key;
    const char *out;
    const char *format;
    const char *checkpoint_files[CLI_CHECKPOINTS_MAX];
    size_t n_checkpoint_files;
    sbi_audit_filter_t filter;
    uint8_t subject_ref[SBI_HASH_SIZE];
    bool json;
    bool all;
} cli_args_t;

/* The audit log of DDIR/store, opened read-only (for random reads when
   the filter names a subject); NULL after a message. */
sbi_audit_t *cli_open(const cli_args_t *args, sbi_store_t **store_p);

/* Copies `text` into `buf` with control characters replaced by '?', so that
   a hostile record cannot drive the terminal. "-" for an empty string. */
const char *cli_clean(const char *text, char *buf, size_t size);

/* The agencies' display names from the certificate directory, when given. */
const char *cli_agency(sbi_trust_t *trust, const char *agency, char *buf, size_t size);

int cli_report(cli_args_t *args);

#endif
