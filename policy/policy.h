/*  policy.h - the sharing policy: datasets, rules and topics, loaded from a
    directory of YAML files (or the bundle the broker sends agents), merged,
    checked completely, and evaluated with default deny.

    A loaded policy is immutable: the broker swaps a whole new one in on
    reload, so no request ever sees half a policy.
*/
#ifndef SBI_POLICY_H_INCLUDED
#define SBI_POLICY_H_INCLUDED

#include "cert.h"

typedef struct sbi_policy_t sbi_policy_t;

typedef struct {
    const char *id;
    const char *file; /* file name within the policy directory */
    int line;
    const char *provider; /* agency that serves it */
    bool about_resident;  /* subject: resident */
    const char *const *fields;
    size_t n_fields;
    const char *description; /* or NULL */
} sbi_dataset_t;

typedef struct {
    const char *id;
    const char *file;
    int line;
    size_t index; /* 0..sbi_policy_rule_count()-1 */
    const char *consumer;
    const char *dataset;
    const char *const *purposes;
    size_t n_purposes;
    const char *const *fields; /* a subset of the dataset's */
    size_t n_fields;
    bool consent_required;
    const char *const *consent_by; /* agencies besides the consumer that may
                                      record consent for this rule */
    size_t n_consent_by;
    uint32_t rate_count;     /* 0 = no limit */
    uint32_t rate_period_ms; /* 1000 for N/s, 60000 for N/min */
    uint64_t valid_from_ms;  /* 0 = open */
    uint64_t valid_until_ms; /* 0 = open; inclusive to the end of that day */
} sbi_rule_t;

typedef struct {
    const char *agency;
    const char *const *fields;
    size_t n_fields;
} sbi_subscriber_t;

typedef struct {
    const char *id;
    const char *file;
    int line;
    const char *publisher;
    const sbi_subscriber_t *subscribers;
    size_t n_subscribers;
    const char *const *fields; /* the fields events carry, when declared:
                                  subscribers' fields are a subset */
    size_t n_fields;           /* 0 when not declared */
    const char *description;   /* or NULL */
} sbi_topic_t;

/* Loads every *.yaml and *.yml file of `dir` (not recursive), merged.
   Returns NULL when there is any error, after appending every error found
   to `errors` (a zlistx_t of char* the caller owns, with a destructor set)
   as "file:line:column: message". With `trust` non-NULL, every agency the
   policy names must have an unrevoked certificate there that is valid now.
   Each string added is malloc'd and handed over to the list (so the list
   must have a destructor such as free and no duplicator); `errors` may be
   NULL. Errors come in file, line and column order; "file" is `dir`/name
   (just `dir` for errors about the directory itself). Files whose names
   start with '.' are ignored. At most 1000 errors are reported. */
sbi_policy_t *sbi_policy_load(const char *dir, sbi_trust_t *trust, zlistx_t *errors);

/* The same from a bundle of files (what agents receive from the broker).
   Errors name the files by their bundle names. File names must be plain
   *.yaml or *.yml names; a bundle holds 1 to 256 files of at most
   SBI_FILE_MAX bytes each. When the bundle carries a version, it must be
   the version of its files. */
sbi_policy_t *sbi_policy_load_bundle(const Sharebus__PolicyBundle *bundle, sbi_trust_t *trust,
                                     zlistx_t *errors);

void sbi_policy_destroy(sbi_policy_t **self_p);

/* The version hash: BLAKE2b-256 over the files in name order, each as
   name, a zero byte, its length as 8 bytes big-endian, and its content. */
const uint8_t *sbi_policy_version(sbi_policy_t *self);

/* The files the policy was loaded from, as a bundle owned by the policy. */
const Sharebus__PolicyBundle *sbi_policy_bundle(sbi_policy_t *self);

const sbi_dataset_t *sbi_policy_dataset(sbi_policy_t *self, const char *id);
/* The rule with this id, or NULL. */
const sbi_rule_t *sbi_policy_rule(sbi_policy_t *self, const char *id);
const sbi_topic_t *sbi_policy_topic(sbi_policy_t *self, const char *id);
size_t sbi_policy_rule_count(sbi_policy_t *self);
const sbi_rule_t *sbi_policy_rule_at(sbi_policy_t *self, size_t index);
size_t sbi_policy_dataset_count(sbi_policy_t *self);
const sbi_dataset_t *sbi_policy_dataset_at(sbi_policy_t *self, size_t index);
size_t sbi_policy_topic_count(sbi_policy_t *self);
const sbi_topic_t *sbi_policy_topic_at(sbi_policy_t *self, size_t index);

typedef struct {
    int code;                         /* SB_OK (allow), SB_ENODATASET, SB_EDENIED */
    const sbi_rule_t *rule;           /* the rule that allowed it, or NULL */
    char reason[256];                 /* why, naming what did not match */
    const char *flow[SBI_FIELDS_MAX]; /* fields that would flow (allow) */
    size_t n_flow;
} sbi_decision_t;

/* Decides consumer x dataset x purpose x fields at `now_ms`. No fields
   requested means every field the rule allows. A requested field the rule
   does not allow is a denial naming the field. Consent and rate limits are
   the broker's checks; the decision says whether the rule needs consent. */
int sbi_policy_decide(sbi_policy_t *self, const char *consumer, const char *dataset,
                      const char *purpose, const char *const *fields, size_t n_fields,
                      uint64_t now_ms, sbi_decision_t *decision);

/* True when `recorder` may record a consent for `rule` (the consumer itself,
   or an agency listed in consent_by). */
bool sbi_rule_consent_recorder(const sbi_rule_t *rule, const char *recorder);

/* The subscriber entry of `agency` in `topic`, or NULL. */
const sbi_subscriber_t *sbi_topic_subscriber(const sbi_topic_t *topic, const char *agency);

/* True when `now_ms` is inside the rule's validity window. */
bool sbi_rule_valid_at(const sbi_rule_t *rule, uint64_t now_ms);

/* The rule's validity window as written in policy files,
   "2014-03-28..2030-12-31" (a side is empty when open, ".." when always
   valid), into `buf` (32 bytes are enough). Returns buf. */
const char *sbi_rule_window(const sbi_rule_t *rule, char *buf, size_t size);

/* The rule's rate limit, "50/s" or "600/min", or "none", into `buf` (24
   bytes are enough). Returns buf. */
const char *sbi_rule_rate(const sbi_rule_t *rule, char *buf, size_t size);

#endif
