/*  decide.c - the rule index and the decision: default deny.

    Rules are grouped by consumer x dataset in a hash table, so a decision
    is two read-only lookups (dataset, group) and a scan of that pair's few
    rules, with no allocation and nothing written: threads may share a
    policy.
    No two rules of a group share a purpose in overlapping validity windows
    (the loader refuses that), so at most one rule can decide a request. */
#include "internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool pol_group_key(const char *consumer, const char *dataset, char *buf)
{
    size_t c = strlen(consumer), d = strlen(dataset);
    if (c > SBI_AGENCY_MAX || d > SBI_NAME_MAX)
        return false;
    /* Neither agency ids nor names hold a space. */
    memcpy(buf, consumer, c);
    buf[c] = ' ';
    memcpy(buf + c + 1, dataset, d + 1);
    return true;
}

static bool s_windows_overlap(const sbi_rule_t *a, const sbi_rule_t *b)
{
    uint64_t a_until = a->valid_until_ms ? a->valid_until_ms : UINT64_MAX;
    uint64_t b_until = b->valid_until_ms ? b->valid_until_ms : UINT64_MAX;
    return a->valid_from_ms <= b_until && b->valid_from_ms <= a_until;
}

/* Frees a list of the overlap index (see pol_index_rules). */
static void s_vec_free(void **item)
{
    pol_vec_t *vec = *item;
    pol_vec_clear(vec);
    free(vec);
    *item = NULL;
}

/* Reports `rule` when it overlaps an earlier rule of its group: the first
   such rule in load order, with the first purpose of `rule` they share. */
static void s_check_overlap(pol_loader_t *ld, zhashx_t *by_purpose, const pol_rule_t *rule)
{
    const pol_rule_t *first = NULL;
    const char *purpose = NULL;
    char key[POL_GROUP_KEY_SIZE + 1 + SBI_NAME_MAX + 1], where[4400];
    if (!pol_group_key(rule->pub.consumer, rule->pub.dataset, key))
        return;
    size_t prefix = strlen(key);
    for (size_t p = 0; p < rule->pub.n_purposes; p++) {
        snprintf(key + prefix, sizeof key - prefix, " %s", rule->pub.purposes[p]);
        pol_vec_t *earlier = zhashx_lookup(by_purpose, key);
        if (!earlier && (earlier = calloc(1, sizeof *earlier)))
            zhashx_insert(by_purpose, key, earlier);
        if (!earlier) {
            pol_error(ld, POL_NO_FILE, (pol_mark_t){0}, "out of memory");
            return;
        }
        for (size_t i = 0; i < earlier->count; i++) {
            const pol_rule_t *other = earlier->items[i];
            if (first && other->pub.index >= first->pub.index)
                break;
            if (s_windows_overlap(&rule->pub, &other->pub)) {
                first = other;
                purpose = rule->pub.purposes[p];
                break;
            }
        }
        if (pol_vec_push(earlier, (void *)rule) != SB_OK)
            pol_error(ld, POL_NO_FILE, (pol_mark_t){0}, "out of memory");
    }
    if (first)
        pol_error(ld, rule->file, rule->at,
                  "rule '%s' overlaps rule '%s' (%s): both let %s obtain %s for purpose '%s' "
                  "in overlapping validity windows",
                  rule->pub.id, first->pub.id,
                  pol_where(ld, first->file, first->at, where, sizeof where), rule->pub.consumer,
                  rule->pub.dataset, purpose);
}

static pol_group_t *s_group(sbi_policy_t *policy, const pol_rule_t *rule)
{
    char key[POL_GROUP_KEY_SIZE];
    if (!rule->pub.consumer || !rule->pub.dataset ||
        !pol_group_key(rule->pub.consumer, rule->pub.dataset, key))
        return NULL;
    pol_group_t *group = zhashx_lookup(policy->groups, key);
    if (!group && (group = pol_alloc(&policy->arena, sizeof *group)))
        zhashx_insert(policy->groups, key, group);
    return group;
}

void pol_index_rules(pol_loader_t *ld)
{
    sbi_policy_t *policy = ld->policy;
    for (size_t i = 0; i < policy->rules.count; i++) {
        pol_group_t *group = s_group(policy, policy->rules.items[i]);
        if (group)
            group->count++;
    }
    for (pol_group_t *group = zhashx_first(policy->groups); group;
         group = zhashx_next(policy->groups)) {
        group->rules = pol_alloc(&policy->arena, group->count * sizeof *group->rules + 1);
        group->count = 0;
    }
    /* The overlap index: "consumer dataset purpose" -> pol_vec_t of the
       rules so far, in load order. Comparing each rule's purposes with
       every earlier rule's of its group took seconds for a thousand rules
       with many purposes. */
    zhashx_t *by_purpose = zhashx_new();
    if (!by_purpose) {
        pol_error(ld, POL_NO_FILE, (pol_mark_t){0}, "out of memory");
        return;
    }
    zhashx_set_destructor(by_purpose, s_vec_free);
    for (size_t i = 0; i < policy->rules.count; i++) {
        pol_group_t *group = s_group(policy, policy->rules.items[i]);
        if (!group || !group->rules) {
            if (group)
                pol_error(ld, POL_NO_FILE, (pol_mark_t){0}, "out of memory");
            continue;
        }
        group->rules[group->count++] = policy->rules.items[i];
        s_check_overlap(ld, by_purpose, policy->rules.items[i]);
    }
    zhashx_destroy(&by_purpose);
}

/* ---------------------------------------------------------- deciding */

static bool s_lists(const char *const *list, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(list[i], name) == 0)
            return true;
    return false;
}

static int s_deny(sbi_decision_t *decision, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int s_deny(sbi_decision_t *decision, int code, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(decision->reason, sizeof decision->reason, fmt, args);
    va_end(args);
    decision->code = code;
    decision->rule = NULL;
    decision->n_flow = 0;
    return code;
}

/* "no rule lets C obtain D for purpose P (allowed: a, b)". */
static int s_deny_purpose(sbi_decision_t *decision, const pol_group_t *group, const char *consumer,
                          const char *dataset, const char *purpose)
{
    char *reason = decision->reason;
    size_t size = sizeof decision->reason;
    int used =
        snprintf(reason, size, "purpose '%.64s' is not allowed for %s on %s (allowed:", purpose,
                 consumer, dataset);
    for (size_t r = 0; r < group->count; r++) {
        const sbi_rule_t *rule = &group->rules[r]->pub;
        for (size_t p = 0; p < rule->n_purposes && used >= 0 && (size_t)used < size; p++) {
            bool before = false;
            for (size_t q = 0; q < r && !before; q++)
                before = s_lists(group->rules[q]->pub.purposes, group->rules[q]->pub.n_purposes,
                                 rule->purposes[p]);
            if (!before && !s_lists(rule->purposes, p, rule->purposes[p]))
                used += snprintf(reason + used, size - (size_t)used, " %s", rule->purposes[p]);
        }
    }
    if (used >= 0 && (size_t)used < size)
        snprintf(reason + used, size - (size_t)used, ")");
    decision->code = SB_EDENIED;
    return SB_EDENIED;
}

/* The flow of an allowed request: the fields asked for, or all the rule's. */
static int s_allow(sbi_decision_t *decision, const sbi_rule_t *rule, const char *const *fields,
                   size_t n_fields)
{
    if (n_fields == 0) {
        for (size_t i = 0; i < rule->n_fields && i < SBI_FIELDS_MAX; i++)
            decision->flow[decision->n_flow++] = rule->fields[i];
    }
    for (size_t i = 0; i < n_fields; i++) {
        const char *field = fields[i] ? fields[i] : "";
        size_t j = 0;
        while (j < rule->n_fields && strcmp(rule->fields[j], field) != 0)
            j++;
        if (j == rule->n_fields)
            return s_deny(decision, SB_EDENIED, "field '%.64s' is not allowed by rule '%s'", field,
                          rule->id);
        if (!s_lists(decision->flow, decision->n_flow, field))
            decision->flow[decision->n_flow++] = rule->fields[j];
    }
    decision->code = SB_OK;
    decision->rule = rule;
    snprintf(decision->reason, sizeof decision->reason, "allowed by rule '%s'", rule->id);
    return SB_OK;
}

int sbi_policy_decide(sbi_policy_t *self, const char *consumer, const char *dataset,
                      const char *purpose, const char *const *fields, size_t n_fields,
                      uint64_t now_ms, sbi_decision_t *decision)
{
    assert(self);
    assert(decision);
    consumer = consumer ? consumer : "";
    dataset = dataset ? dataset : "";
    purpose = purpose ? purpose : "";
    decision->rule = NULL;
    decision->n_flow = 0;
    if (!pol_table_lookup(&self->dataset_table, dataset))
        return s_deny(decision, SB_ENODATASET, "dataset '%.128s' is not declared", dataset);
    if (n_fields > SBI_FIELDS_MAX)
        return s_deny(decision, SB_EDENIED, "more than %d fields requested", SBI_FIELDS_MAX);
    char key[POL_GROUP_KEY_SIZE];
    const pol_group_t *group =
        pol_group_key(consumer, dataset, key) ? pol_table_lookup(&self->group_table, key) : NULL;
    if (!group || group->count == 0)
        return s_deny(decision, SB_EDENIED, "no rule lets %.32s obtain %s", consumer, dataset);
    const sbi_rule_t *expired = NULL;
    for (size_t i = 0; i < group->count; i++) {
        const sbi_rule_t *rule = &group->rules[i]->pub;
        if (!s_lists(rule->purposes, rule->n_purposes, purpose))
            continue;
        if (sbi_rule_valid_at(rule, now_ms))
            return s_allow(decision, rule, fields, n_fields);
        expired = expired ? expired : rule;
    }
    if (!expired)
        return s_deny_purpose(decision, group, consumer, dataset, purpose);
    char window[40];
    return s_deny(decision, SB_EDENIED, "rule '%s' is not valid at this time (valid %s)",
                  expired->id, sbi_rule_window(expired, window, sizeof window));
}

/* ------------------------------------------------------------- rules */

bool sbi_rule_consent_recorder(const sbi_rule_t *rule, const char *recorder)
{
    assert(rule);
    if (!recorder)
        return false;
    return strcmp(rule->consumer, recorder) == 0 ||
           s_lists(rule->consent_by, rule->n_consent_by, recorder);
}

const sbi_subscriber_t *sbi_topic_subscriber(const sbi_topic_t *topic, const char *agency)
{
    assert(topic);
    for (size_t i = 0; agency && i < topic->n_subscribers; i++)
        if (strcmp(topic->subscribers[i].agency, agency) == 0)
            return &topic->subscribers[i];
    return NULL;
}

bool sbi_rule_valid_at(const sbi_rule_t *rule, uint64_t now_ms)
{
    assert(rule);
    return now_ms >= rule->valid_from_ms &&
           (!rule->valid_until_ms || now_ms <= rule->valid_until_ms);
}

const char *sbi_rule_window(const sbi_rule_t *rule, char *buf, size_t size)
{
    assert(rule);
    char from[32] = "", until[32] = "";
    if (rule->valid_from_ms)
        sbi_time_format(rule->valid_from_ms, from, sizeof from);
    if (rule->valid_until_ms)
        sbi_time_format(rule->valid_until_ms, until, sizeof until);
    from[10] = until[10] = 0; /* the date only */
    snprintf(buf, size, "%s..%s", from, until);
    return buf;
}

const char *sbi_rule_rate(const sbi_rule_t *rule, char *buf, size_t size)
{
    assert(rule);
    if (!rule->rate_count)
        snprintf(buf, size, "none");
    else
        snprintf(buf, size, "%" PRIu32 "/%s", rule->rate_count,
                 rule->rate_period_ms == 60000 ? "min" : "s");
    return buf;
}
