/*  parse.c - a policy file's document into datasets, topics and rules.

    Pass 1 (pol_parse_declarations) reads every file's version, datasets and
    topics; pass 2 (pol_parse_rules) reads the rules, which may name a
    dataset declared in any file. Every error is reported, each at the line
    and column of the value that is wrong. */
#include "yaml.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_DATASET_FIELDS_MAX 1024
#define S_DAY_MS 86400000ull

/* What pass 1 leaves for pass 2 of each file. */
typedef struct {
    pol_yaml_t *yaml;
    struct fy_node *rules;
    pol_mark_t rules_at;
} s_file_t;

static const pol_list_spec_t s_fields_spec = {"field", false, 1, S_DATASET_FIELDS_MAX};
static const pol_list_spec_t s_rule_fields_spec = {"field", false, 1, SBI_FIELDS_MAX};
static const pol_list_spec_t s_purposes_spec = {"purpose", false, 1, SBI_FIELDS_MAX};
static const pol_list_spec_t s_consent_by_spec = {"agency", true, 0, SBI_FIELDS_MAX};

static pol_arena_t *s_arena(pol_ctx_t *c)
{
    return &c->ld->policy->arena;
}

static char *s_copy(pol_ctx_t *c, const char *text)
{
    return pol_strdup(s_arena(c), text);
}

/* A set of the list's items (keys and values point into the arena). */
static zhashx_t *s_set(const pol_list_t *list)
{
    zhashx_t *set = zhashx_new();
    zhashx_set_key_duplicator(set, NULL);
    zhashx_set_key_destructor(set, NULL);
    for (size_t i = 0; i < list->count; i++)
        zhashx_insert(set, list->items[i], (void *)list->items[i]);
    return set;
}

/* Reports each item of `list` that `set` lacks, as not declared by `owner`. */
static void s_subset(pol_ctx_t *c, const pol_list_t *list, zhashx_t *set, const char *owner)
{
    for (size_t i = 0; i < list->count; i++)
        if (!zhashx_lookup(set, list->items[i]))
            pol_err(c, list->marks[i], "field '%s' is not declared by %s", list->items[i], owner);
}

/* ----------------------------------------------------------- datasets */

static void s_dataset_body(pol_ctx_t *c, pol_dataset_t *d, pol_key_t *keys)
{
    pol_key_t *provider = pol_key(keys, "provider"), *subject = pol_key(keys, "subject"),
              *fields = pol_key(keys, "fields"), *description = pol_key(keys, "description");
    if (provider->seen)
        d->pub.provider = s_copy(c, pol_agency(c, provider->value, "'provider'", provider->at));
    const char *text =
        subject->seen ? pol_scalar(c, subject->value, "'subject'", subject->at) : NULL;
    if (text && strcmp(text, "resident") != 0 && strcmp(text, "none") != 0)
        pol_err(c, pol_mark(subject->value, subject->at),
                "subject must be 'resident' or 'none', not '%s'", text);
    d->pub.about_resident = text && strcmp(text, "resident") == 0;
    pol_list_t list;
    if (fields->seen && pol_list(c, fields->value, "fields", &s_fields_spec, fields->at, &list)) {
        d->pub.fields = list.items;
        d->pub.n_fields = list.count;
        d->field_set = s_set(&list);
    }
    if (description->seen)
        d->pub.description =
            s_copy(c, pol_scalar(c, description->value, "'description'", description->at));
}

static void s_dataset_register(pol_ctx_t *c, pol_dataset_t *d)
{
    sbi_policy_t *policy = c->ld->policy;
    pol_dataset_t *first = zhashx_lookup(policy->dataset_index, d->pub.id);
    char where[4400];
    if (first)
        pol_err(c, d->at, "dataset '%s' is declared twice: first at %s", d->pub.id,
                pol_where(c->ld, first->file, first->at, where, sizeof where));
    else if (pol_vec_push(&policy->datasets, d) == SB_OK)
        zhashx_insert(policy->dataset_index, d->pub.id, d);
    else
        pol_err(c, d->at, "out of memory");
    if (first)
        zhashx_destroy(&d->field_set);
}

static void s_dataset(pol_ctx_t *c, struct fy_node *key, struct fy_node *value, pol_mark_t at)
{
    at = pol_mark(key, at);
    const char *id = pol_name(c, key, "a dataset id", "dataset id", at);
    char what[160];
    snprintf(what, sizeof what, "dataset '%s'", id ? id : "?");
    if (!fy_node_is_mapping(value) || fy_node_is_alias(value)) {
        pol_err(c, pol_mark(value, at),
                "%s must be a mapping of provider, subject and fields, "
                "not %s",
                what, pol_describe(value));
        return;
    }
    pol_key_t keys[] = {{.name = "provider", .required = true},
                        {.name = "subject", .required = true},
                        {.name = "fields", .required = true},
                        {.name = "description", .required = false},
                        {.name = NULL}};
    pol_keys(c, value, keys, "a dataset", at);
    pol_keys_required(c, keys, what, at);
    pol_dataset_t *d = pol_alloc(s_arena(c), sizeof *d);
    if (!d) {
        pol_err(c, at, "out of memory");
        return;
    }
    d->file = c->file;
    d->at = at;
    d->pub.id = s_copy(c, id);
    d->pub.file = c->ld->files[c->file].name;
    d->pub.line = at.line;
    s_dataset_body(c, d, keys);
    if (d->pub.id)
        s_dataset_register(c, d);
    else
        zhashx_destroy(&d->field_set);
}

/* ------------------------------------------------------------- topics */

static bool s_subscriber(pol_ctx_t *c, const pol_topic_t *t, zhashx_t *topic_fields,
                         struct fy_node *item, pol_mark_t at, sbi_subscriber_t *out)
{
    at = pol_mark(item, at);
    if (!fy_node_is_mapping(item) || fy_node_is_alias(item)) {
        pol_err(c, at, "each subscriber must be a mapping of agency and fields, not %s",
                pol_describe(item));
        return false;
    }
    pol_key_t keys[] = {
        {.name = "agency", .required = true}, {.name = "fields", .required = true}, {.name = NULL}};
    pol_keys(c, item, keys, "a subscriber", at);
    pol_keys_required(c, keys, "a subscriber", at);
    if (keys[0].seen)
        out->agency = s_copy(c, pol_agency(c, keys[0].value, "'agency'", keys[0].at));
    pol_list_t list;
    if (keys[1].seen && pol_list(c, keys[1].value, "fields", &s_fields_spec, keys[1].at, &list)) {
        out->fields = list.items;
        out->n_fields = list.count;
        char owner[160];
        snprintf(owner, sizeof owner, "topic '%s'", t->pub.id ? t->pub.id : "?");
        if (topic_fields)
            s_subset(c, &list, topic_fields, owner);
    }
    return out->agency != NULL;
}

static void s_subscribers(pol_ctx_t *c, pol_topic_t *t, zhashx_t *topic_fields, pol_key_t *key)
{
    if (!fy_node_is_sequence(key->value) || fy_node_is_alias(key->value)) {
        pol_err(c, pol_mark(key->value, key->at), "'subscribers' must be a list, not %s",
                pol_describe(key->value));
        return;
    }
    size_t n = (size_t)fy_node_sequence_item_count(key->value);
    sbi_subscriber_t *subscribers = pol_alloc(s_arena(c), (n + 1) * sizeof *subscribers);
    zhashx_t *seen = zhashx_new();
    void *iter = NULL;
    struct fy_node *item;
    if (!subscribers)
        pol_err(c, key->at, "out of memory");
    while (subscribers && (item = fy_node_sequence_iterate(key->value, &iter))) {
        sbi_subscriber_t *s = &subscribers[t->pub.n_subscribers];
        if (!s_subscriber(c, t, topic_fields, item, key->at, s))
            continue;
        if (zhashx_insert(seen, s->agency, s) == 0)
            t->pub.n_subscribers++;
        else
            pol_err(c, pol_mark(item, key->at), "agency '%s' subscribes twice to topic '%s'",
                    s->agency, t->pub.id ? t->pub.id : "?");
    }
    zhashx_destroy(&seen);
    t->pub.subscribers = subscribers;
    if (n == 0)
        pol_err(c, pol_mark(key->value, key->at), "'subscribers' is empty: list at least one");
}

static void s_topic_body(pol_ctx_t *c, pol_topic_t *t, pol_key_t *keys)
{
    pol_key_t *publisher = pol_key(keys, "publisher"), *fields = pol_key(keys, "fields"),
              *subscribers = pol_key(keys, "subscribers"),
              *description = pol_key(keys, "description");
    if (publisher->seen)
        t->pub.publisher = s_copy(c, pol_agency(c, publisher->value, "'publisher'", publisher->at));
    pol_list_t list;
    zhashx_t *topic_fields = NULL;
    if (fields->seen && pol_list(c, fields->value, "fields", &s_fields_spec, fields->at, &list)) {
        t->pub.fields = list.items;
        t->pub.n_fields = list.count;
        topic_fields = s_set(&list);
    }
    if (subscribers->seen)
        s_subscribers(c, t, topic_fields, subscribers);
    zhashx_destroy(&topic_fields);
    if (description->seen)
        t->pub.description =
            s_copy(c, pol_scalar(c, description->value, "'description'", description->at));
}

static void s_topic(pol_ctx_t *c, struct fy_node *key, struct fy_node *value, pol_mark_t at)
{
    at = pol_mark(key, at);
    const char *id = pol_name(c, key, "a topic id", "topic id", at);
    char what[160], where[4400];
    snprintf(what, sizeof what, "topic '%s'", id ? id : "?");
    if (!fy_node_is_mapping(value) || fy_node_is_alias(value)) {
        pol_err(c, pol_mark(value, at),
                "%s must be a mapping of publisher and subscribers, "
                "not %s",
                what, pol_describe(value));
        return;
    }
    pol_key_t keys[] = {{.name = "publisher", .required = true},
                        {.name = "subscribers", .required = true},
                        {.name = "fields", .required = false},
                        {.name = "description", .required = false},
                        {.name = NULL}};
    pol_keys(c, value, keys, "a topic", at);
    pol_keys_required(c, keys, what, at);
    pol_topic_t *t = pol_alloc(s_arena(c), sizeof *t);
    if (!t) {
        pol_err(c, at, "out of memory");
        return;
    }
    *t = (pol_topic_t){.file = c->file, .at = at};
    t->pub.id = s_copy(c, id);
    t->pub.file = c->ld->files[c->file].name;
    t->pub.line = at.line;
    s_topic_body(c, t, keys);
    sbi_policy_t *policy = c->ld->policy;
    pol_topic_t *first = id ? zhashx_lookup(policy->topic_index, t->pub.id) : NULL;
    if (first)
        pol_err(c, at, "topic '%s' is declared twice: first at %s", id,
                pol_where(c->ld, first->file, first->at, where, sizeof where));
    else if (t->pub.id && pol_vec_push(&policy->topics, t) == SB_OK)
        zhashx_insert(policy->topic_index, t->pub.id, t);
}

/* ------------------------------------------------------- declarations */

/* datasets: or topics: - a mapping of id to declaration. */
static void s_section(pol_ctx_t *c, pol_key_t *key,
                      void (*read)(pol_ctx_t *, struct fy_node *, struct fy_node *, pol_mark_t))
{
    if (!key->seen || !key->value)
        return; /* an empty section declares nothing */
    if (!fy_node_is_mapping(key->value) || fy_node_is_alias(key->value)) {
        pol_err(c, pol_mark(key->value, key->at), "'%s' must be a mapping of ids, not %s",
                key->name, pol_describe(key->value));
        return;
    }
    void *iter = NULL;
    struct fy_node_pair *pair;
    while ((pair = fy_node_mapping_iterate(key->value, &iter)))
        read(c, fy_node_pair_key(pair), fy_node_pair_value(pair), key->at);
}

static s_file_t *s_file(pol_loader_t *ld, size_t file)
{
    if (!ld->yaml)
        ld->yaml = calloc(ld->n_files, sizeof(s_file_t));
    return ld->yaml ? &((s_file_t *)ld->yaml)[file] : NULL;
}

void pol_parse_declarations(pol_loader_t *ld, size_t file)
{
    pol_ctx_t ctx = {ld, file}, *c = &ctx;
    s_file_t *state = s_file(ld, file);
    pol_mark_t start = {1, 1};
    if (!ld->files[file].content)
        return; /* unreadable: reported already */
    if (!state || !(state->yaml = pol_yaml_parse(c, &ld->files[file]))) {
        if (!state)
            pol_err(c, start, "out of memory");
        return;
    }
    struct fy_node *root = pol_yaml_root(state->yaml);
    if (!fy_node_is_mapping(root) || fy_node_is_alias(root)) {
        pol_err(c, pol_mark(root, start),
                "a policy file must be a mapping of version, "
                "datasets, rules and topics, not %s",
                pol_describe(root));
        pol_yaml_destroy(&state->yaml);
        return;
    }
    pol_key_t keys[] = {{.name = "version", .required = true},
                        {.name = "datasets", .required = false},
                        {.name = "rules", .required = false},
                        {.name = "topics", .required = false},
                        {.name = NULL}};
    pol_keys(c, root, keys, "a policy file", start);
    pol_keys_required(c, keys, "the file", start);
    const char *version =
        keys[0].seen ? pol_scalar(c, keys[0].value, "'version'", keys[0].at) : NULL;
    if (version && strcmp(version, "1") != 0)
        pol_err(c, pol_mark(keys[0].value, keys[0].at), "version must be 1, not '%s'", version);
    s_section(c, &keys[1], s_dataset);
    s_section(c, &keys[3], s_topic);
    state->rules = keys[2].value;
    state->rules_at = keys[2].at;
}

/* -------------------------------------------------------------- rules */

static bool s_date(const char *text, size_t len, uint64_t *ms)
{
    char date[11], back[32];
    if (len != 10)
        return false;
    for (size_t i = 0; i < 10; i++)
        if (i == 4 || i == 7 ? text[i] != '-' : !isdigit((unsigned char)text[i]))
            return false;
    memcpy(date, text, 10);
    date[10] = 0;
    /* The round trip refuses dates such as 2025-02-30. */
    return sbi_time_parse(date, ms) == SB_OK &&
           strncmp(sbi_time_format(*ms, back, sizeof back), date, 10) == 0;
}

/* "FROM..UNTIL", either side empty for open; UNTIL counts to its end. */
static bool s_window(const char *text, uint64_t *from, uint64_t *until)
{
    const char *dots = strstr(text, "..");
    *from = *until = 0;
    if (!dots)
        return false;
    size_t left = (size_t)(dots - text), right = strlen(dots + 2);
    if (left && !s_date(text, left, from))
        return false;
    if (right && !s_date(dots + 2, right, until))
        return false;
    if (right)
        *until += S_DAY_MS - 1;
    return true;
}

/* "N/s" or "N/min", N >= 1. */
static bool s_rate(const char *text, uint32_t *count, uint32_t *period_ms)
{
    if (!isdigit((unsigned char)text[0]))
        return false;
    errno = 0;
    char *end;
    unsigned long long n = strtoull(text, &end, 10);
    if (errno || n < 1 || n > UINT32_MAX)
        return false;
    if (strcmp(end, "/s") == 0)
        *period_ms = 1000;
    else if (strcmp(end, "/min") == 0)
        *period_ms = 60000;
    else
        return false;
    *count = (uint32_t)n;
    return true;
}

static void s_rule_limits(pol_ctx_t *c, pol_rule_t *r, pol_key_t *rate, pol_key_t *valid)
{
    const char *text = rate->seen ? pol_scalar(c, rate->value, "'rate'", rate->at) : NULL;
    if (text && !s_rate(text, &r->pub.rate_count, &r->pub.rate_period_ms))
        pol_err(c, pol_mark(rate->value, rate->at),
                "rate '%s' is not N/s or N/min with N from 1 to 4294967295", text);
    text = valid->seen ? pol_scalar(c, valid->value, "'valid'", valid->at) : NULL;
    pol_mark_t at = pol_mark(valid->value, valid->at);
    if (text && !s_window(text, &r->pub.valid_from_ms, &r->pub.valid_until_ms))
        pol_err(c, at,
                "validity window '%s' is not YYYY-MM-DD..YYYY-MM-DD (either side may be "
                "empty)",
                text);
    else if (text && r->pub.valid_until_ms && r->pub.valid_from_ms > r->pub.valid_until_ms)
        pol_err(c, at, "validity window '%s' ends before it starts", text);
}

static void s_rule_consent(pol_ctx_t *c, pol_rule_t *r, pol_key_t *consent, pol_key_t *by)
{
    const char *text =
        consent->seen ? pol_scalar(c, consent->value, "'consent'", consent->at) : NULL;
    if (text && strcmp(text, "required") != 0 && strcmp(text, "none") != 0)
        pol_err(c, pol_mark(consent->value, consent->at),
                "consent must be 'required' or 'none', not '%s'", text);
    r->pub.consent_required = text && strcmp(text, "required") == 0;
    /* A consent is a person's: a dataset about no one has nobody to give it,
       and every request under the rule would be refused for the want of one. */
    pol_dataset_t *d =
        r->pub.dataset ? zhashx_lookup(c->ld->policy->dataset_index, r->pub.dataset) : NULL;
    if (r->pub.consent_required && d && !d->pub.about_resident)
        pol_err(c, pol_mark(consent->value, consent->at),
                "consent: required needs a dataset about a person; dataset '%s' is subject: none",
                d->pub.id);
    pol_list_t list;
    if (!by->seen || !pol_list(c, by->value, "consent_by", &s_consent_by_spec, by->at, &list))
        return;
    r->pub.consent_by = list.items;
    r->pub.n_consent_by = list.count;
    if (list.count && text && !r->pub.consent_required)
        pol_err(c, by->at, "consent_by needs consent: required");
}

static void s_rule_dataset(pol_ctx_t *c, pol_rule_t *r, pol_key_t *dataset, pol_key_t *fields)
{
    const char *id =
        dataset->seen ? pol_name(c, dataset->value, "'dataset'", "dataset id", dataset->at) : NULL;
    pol_dataset_t *d = id ? zhashx_lookup(c->ld->policy->dataset_index, id) : NULL;
    if (id && !d)
        pol_err(c, pol_mark(dataset->value, dataset->at), "dataset '%s' is not declared", id);
    r->pub.dataset = d ? d->pub.id : NULL;
    pol_list_t list;
    if (!fields->seen ||
        !pol_list(c, fields->value, "fields", &s_rule_fields_spec, fields->at, &list))
        return;
    r->pub.fields = list.items;
    r->pub.n_fields = list.count;
    char owner[160];
    snprintf(owner, sizeof owner, "dataset '%s'", id ? id : "?");
    if (d && d->field_set)
        s_subset(c, &list, d->field_set, owner);
}

static void s_rule_register(pol_ctx_t *c, pol_rule_t *r)
{
    sbi_policy_t *policy = c->ld->policy;
    pol_rule_t *first = zhashx_lookup(policy->rule_index, r->pub.id);
    char where[4400];
    if (first) {
        pol_err(c, r->at, "rule id '%s' is used twice: first at %s", r->pub.id,
                pol_where(c->ld, first->file, first->at, where, sizeof where));
        return;
    }
    r->pub.index = policy->rules.count;
    if (pol_vec_push(&policy->rules, r) == SB_OK)
        zhashx_insert(policy->rule_index, r->pub.id, r);
    else
        pol_err(c, r->at, "out of memory");
}

static void s_rule(pol_ctx_t *c, struct fy_node *item, pol_mark_t at)
{
    at = pol_mark(item, at);
    if (!fy_node_is_mapping(item) || fy_node_is_alias(item)) {
        pol_err(c, at,
                "each rule must be a mapping of id, consumer, dataset, purposes, fields "
                "and consent, not %s",
                pol_describe(item));
        return;
    }
    pol_key_t keys[] = {
        {.name = "id", .required = true},          {.name = "consumer", .required = true},
        {.name = "dataset", .required = true},     {.name = "purposes", .required = true},
        {.name = "fields", .required = true},      {.name = "consent", .required = true},
        {.name = "consent_by", .required = false}, {.name = "rate", .required = false},
        {.name = "valid", .required = false},      {.name = NULL}};
    pol_keys(c, item, keys, "a rule", at);
    pol_rule_t *r = pol_alloc(s_arena(c), sizeof *r);
    if (!r) {
        pol_err(c, at, "out of memory");
        return;
    }
    *r = (pol_rule_t){.file = c->file, .at = at};
    r->pub.file = c->ld->files[c->file].name;
    r->pub.line = at.line;
    if (keys[0].seen)
        r->pub.id = s_copy(c, pol_name(c, keys[0].value, "'id'", "rule id", keys[0].at));
    char what[160];
    if (r->pub.id)
        snprintf(what, sizeof what, "rule '%s'", r->pub.id);
    else
        snprintf(what, sizeof what, "a rule");
    pol_keys_required(c, keys, what, at);
    if (keys[1].seen)
        r->pub.consumer = s_copy(c, pol_agency(c, keys[1].value, "'consumer'", keys[1].at));
    s_rule_dataset(c, r, pol_key(keys, "dataset"), pol_key(keys, "fields"));
    pol_list_t purposes;
    pol_key_t *key = pol_key(keys, "purposes");
    if (key->seen && pol_list(c, key->value, "purposes", &s_purposes_spec, key->at, &purposes)) {
        r->pub.purposes = purposes.items;
        r->pub.n_purposes = purposes.count;
    }
    s_rule_consent(c, r, pol_key(keys, "consent"), pol_key(keys, "consent_by"));
    s_rule_limits(c, r, pol_key(keys, "rate"), pol_key(keys, "valid"));
    if (r->pub.id)
        s_rule_register(c, r);
}

void pol_parse_rules(pol_loader_t *ld, size_t file)
{
    pol_ctx_t ctx = {ld, file}, *c = &ctx;
    s_file_t *state = ld->yaml ? &((s_file_t *)ld->yaml)[file] : NULL;
    if (!state || !state->yaml)
        return;
    struct fy_node *rules = state->rules;
    if (rules && (!fy_node_is_sequence(rules) || fy_node_is_alias(rules)))
        pol_err(c, pol_mark(rules, state->rules_at), "'rules' must be a list, not %s",
                pol_describe(rules));
    else if (rules) {
        void *iter = NULL;
        struct fy_node *item;
        while ((item = fy_node_sequence_iterate(rules, &iter)))
            s_rule(c, item, state->rules_at);
    }
    pol_yaml_destroy(&state->yaml);
}

void pol_parse_cleanup(pol_loader_t *ld)
{
    s_file_t *files = ld->yaml;
    for (size_t i = 0; files && i < ld->n_files; i++)
        pol_yaml_destroy(&files[i].yaml);
    free(files);
    ld->yaml = NULL;
}
