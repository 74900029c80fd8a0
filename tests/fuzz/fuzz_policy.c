/*  fuzz_policy - any bytes as a policy file, loaded from a bundle as agents
    load what the broker sends (no disk I/O). A policy that loads is also
    asked for decisions and loaded again from its own bundle. */
#include <stdlib.h>
#include <string.h>

#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every rule decides its own consumer x dataset x purpose, and nothing
   else; its own bundle loads back to the same version. */
static void s_exercise(sbi_policy_t *policy)
{
    for (size_t i = 0; i < sbi_policy_rule_count(policy); i++) {
        const sbi_rule_t *rule = sbi_policy_rule_at(policy, i);
        sbi_decision_t d;
        int rc = sbi_policy_decide(policy, rule->consumer, rule->dataset, rule->purposes[0],
                                   rule->fields, rule->n_fields, rule->valid_from_ms, &d);
        if (rc != SB_OK || d.rule != rule || d.n_flow != rule->n_fields)
            abort();
        if (sbi_policy_decide(policy, "", rule->dataset, rule->purposes[0], NULL, 0,
                              rule->valid_from_ms, &d) != SB_EDENIED)
            abort();
    }
    zlistx_t *errors = zlistx_new();
    zlistx_set_destructor(errors, (zlistx_destructor_fn *) zstr_free);
    sbi_policy_t *again = sbi_policy_load_bundle(sbi_policy_bundle(policy), NULL, errors);
    if (!again || memcmp(sbi_policy_version(again), sbi_policy_version(policy), 32) != 0)
        abort();
    sbi_policy_destroy(&again);
    zlistx_destroy(&errors);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Sharebus__PolicyFile file = SHAREBUS__POLICY_FILE__INIT, *files[] = {&file};
    Sharebus__PolicyBundle bundle = SHAREBUS__POLICY_BUNDLE__INIT;
    file.name = "fuzz.yaml";
    file.content.data = (uint8_t *) data;
    file.content.len = size;
    bundle.files = files;
    bundle.n_files = 1;
    zlistx_t *errors = zlistx_new();
    zlistx_set_destructor(errors, (zlistx_destructor_fn *) zstr_free);
    sbi_policy_t *policy = sbi_policy_load_bundle(&bundle, NULL, errors);
    if ((policy != NULL) != (zlistx_size(errors) == 0))
        abort(); /* a refusal always says why */
    if (policy)
        s_exercise(policy);
    sbi_policy_destroy(&policy);
    zlistx_destroy(&errors);
    return 0;
}
