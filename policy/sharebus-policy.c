/*  sharebus-policy - the bus administrator's policy tool.

    sharebus-policy check   PDIR [--certs DIR]
    sharebus-policy explain PDIR --consumer C --dataset D --purpose P
                            [--fields a,b] [--at DATE] [--certs DIR] [--json]
    sharebus-policy show    PDIR [--certs DIR] [--json]

    Exit status: 0 success (explain: allowed); 1 failure (check: the policy
    has errors; explain: denied, or the policy does not load); 2 usage.
*/
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

enum {
    O_CERTS = 1 << 0,
    O_CONSUMER = 1 << 1,
    O_DATASET = 1 << 2,
    O_PURPOSE = 1 << 3,
    O_FIELDS = 1 << 4,
    O_AT = 1 << 5,
    O_JSON = 1 << 6,
};

typedef struct {
    const char *dir;
    const char *certs;
    const char *consumer;
    const char *dataset;
    const char *purpose;
    const char *fields;
    const char *at;
    bool json;
    unsigned given;     /* O_* options on the command line */
} args_t;

typedef struct {
    const char *name;
    int (*fn)(args_t *args);
    unsigned options;   /* O_* options the command takes */
    const char *usage;
} command_t;

/* Loads PDIR (with the trust store of --certs), printing every error to
   `out`. Returns the number of errors through n_errors. */
static sbi_policy_t *s_load(args_t *args, FILE *out, size_t *n_errors)
{
    sbi_trust_t *trust = NULL;
    *n_errors = 0;
    if (args->certs) {
        char err[4200];
        trust = sbi_trust_new(args->certs, err, sizeof err);
        if (!trust) {
            fprintf(stderr, "sharebus-policy: %s: %s\n", args->certs, err);
            return NULL;
        }
    }
    zlistx_t *errors = zlistx_new();
    zlistx_set_destructor(errors, (zlistx_destructor_fn *)zstr_free);
    sbi_policy_t *policy = sbi_policy_load(args->dir, trust, errors);
    for (char *error = zlistx_first(errors); error; error = zlistx_next(errors))
        fprintf(out, "%s\n", error);
    *n_errors = zlistx_size(errors);
    if (!policy && *n_errors == 0) {
        fprintf(stderr, "sharebus-policy: %s: cannot load the policy\n", args->dir);
        *n_errors = 1;
    }
    zlistx_destroy(&errors);
    sbi_trust_destroy(&trust);
    return policy;
}

static const char *s_version_hex(sbi_policy_t *policy, char hex[SBI_HASH_SIZE * 2 + 1])
{
    return sbi_hex(sbi_policy_version(policy), SBI_HASH_SIZE, hex);
}

/* The validity window for people: "always" rather than "..". */
static const char *s_window(const sbi_rule_t *rule, char *buf, size_t size)
{
    sbi_rule_window(rule, buf, size);
    if (strcmp(buf, "..") == 0)
        snprintf(buf, size, "always");
    return buf;
}

/* "PDIR/file.yaml:12", the place an administrator opens. */
static const char *s_place(const args_t *args, const char *file, int line, char *buf, size_t size)
{
    size_t len = strlen(args->dir);
    int dir_len = (int)(len && args->dir[len - 1] == '/' ? len - 1 : len);
    snprintf(buf, size, "%.*s/%s:%d", dir_len, args->dir, file, line);
    return buf;
}

static int cmd_check(args_t *args)
{
    size_t n_errors;
    sbi_policy_t *policy = s_load(args, stdout, &n_errors);
    if (!policy) {
        /* No errors: the trust store of --certs did not load, said above. */
        if (n_errors)
            printf("%s: %zu error%s\n", args->dir, n_errors, n_errors == 1 ? "" : "s");
        return 1;
    }
    char hex[SBI_HASH_SIZE * 2 + 1];
    printf("%s: %zu datasets, %zu rules, %zu topics, version %s\n", args->dir,
           sbi_policy_dataset_count(policy), sbi_policy_rule_count(policy),
           sbi_policy_topic_count(policy), s_version_hex(policy, hex));
    sbi_policy_destroy(&policy);
    return 0;
}

/* ------------------------------------------------------------ output */

static json_object *s_strings(const char *const *list, size_t count)
{
    json_object *array = json_object_new_array();
    for (size_t i = 0; i < count; i++)
        json_object_array_add(array, json_object_new_string(list[i]));
    return array;
}

static void s_print_list(const char *label, const char *const *list, size_t count)
{
    printf("%s", label);
    for (size_t i = 0; i < count; i++)
        printf("%s%s", i ? ", " : "", list[i]);
    printf("\n");
}

static void s_print_json(json_object *obj)
{
    puts(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN));
    json_object_put(obj);
}

static void s_add(json_object *obj, const char *key, const char *value)
{
    json_object_object_add(obj, key, value ? json_object_new_string(value) : NULL);
}

static json_object *s_rule_json(const args_t *args, const sbi_rule_t *rule)
{
    char buf[4300];
    json_object *obj = json_object_new_object();
    s_add(obj, "id", rule->id);
    s_add(obj, "file", s_place(args, rule->file, rule->line, buf, sizeof buf));
    json_object_object_add(obj, "line", json_object_new_int(rule->line));
    s_add(obj, "consumer", rule->consumer);
    s_add(obj, "dataset", rule->dataset);
    json_object_object_add(obj, "purposes", s_strings(rule->purposes, rule->n_purposes));
    json_object_object_add(obj, "fields", s_strings(rule->fields, rule->n_fields));
    s_add(obj, "consent", rule->consent_required ? "required" : "none");
    json_object_object_add(obj, "consent_by", s_strings(rule->consent_by, rule->n_consent_by));
    s_add(obj, "rate", sbi_rule_rate(rule, buf, sizeof buf));
    s_add(obj, "valid", sbi_rule_window(rule, buf, sizeof buf));
    return obj;
}

/* ----------------------------------------------------------- explain */

static json_object *s_decision_json(const args_t *args, const sbi_decision_t *d, uint64_t at_ms)
{
    char when[32];
    json_object *obj = json_object_new_object();
    s_add(obj, "decision", d->code == SB_OK ? "allow" : "deny");
    s_add(obj, "consumer", args->consumer);
    s_add(obj, "dataset", args->dataset);
    s_add(obj, "purpose", args->purpose);
    s_add(obj, "at", sbi_time_format(at_ms, when, sizeof when));
    if (d->code != SB_OK) {
        s_add(obj, "error", sb_errname(d->code));
        s_add(obj, "reason", d->reason);
        return obj;
    }
    json_object_object_add(obj, "rule", s_rule_json(args, d->rule));
    s_add(obj, "consent", d->rule->consent_required ? "required" : "none");
    json_object_object_add(obj, "flow", s_strings(d->flow, d->n_flow));
    return obj;
}

static void s_decision_print(const args_t *args, sbi_policy_t *policy, const sbi_decision_t *d)
{
    char buf[4300];
    printf("decision: %s\n", d->code == SB_OK ? "allow" : "deny");
    if (d->code != SB_OK) {
        printf("error:    %s\n", sb_errname(d->code));
        printf("reason:   %s\n", d->reason);
        return;
    }
    const sbi_rule_t *rule = d->rule;
    printf("rule:     %s (%s)\n", rule->id, s_place(args, rule->file, rule->line, buf, sizeof buf));
    printf("provider: %s\n", sbi_policy_dataset(policy, rule->dataset)->provider);
    if (!rule->consent_required)
        printf("consent:  none\n");
    else {
        printf("consent:  required, recorded by %s", rule->consumer);
        for (size_t i = 0; i < rule->n_consent_by; i++)
            printf(" or %s", rule->consent_by[i]);
        printf("\n");
    }
    printf("rate:     %s\n", sbi_rule_rate(rule, buf, sizeof buf));
    printf("valid:    %s\n", s_window(rule, buf, sizeof buf));
    s_print_list("fields:   ", d->flow, d->n_flow);
}

/* Splits "a,b" into a NULL-ended array the caller frees with the copy. */
static const char **s_split_fields(char *copy, size_t *count)
{
    size_t n = 1;
    for (const char *c = copy; *c; c++)
        n += *c == ',';
    const char **fields = calloc(n + 1, sizeof *fields);
    *count = 0;
    for (char *save = NULL, *field = strtok_r(copy, ",", &save); fields && field;
         field = strtok_r(NULL, ",", &save))
        fields[(*count)++] = field;
    return fields;
}

static int s_explain(args_t *args, sbi_policy_t *policy, uint64_t at_ms)
{
    char *copy = strdup(args->fields ? args->fields : "");
    size_t n_fields = 0;
    const char **fields = copy ? s_split_fields(copy, &n_fields) : NULL;
    if (!fields) {
        free(copy);
        fprintf(stderr, "sharebus-policy: out of memory\n");
        return 1;
    }
    sbi_decision_t decision;
    sbi_policy_decide(policy, args->consumer, args->dataset, args->purpose, fields, n_fields, at_ms,
                      &decision);
    if (args->json)
        s_print_json(s_decision_json(args, &decision, at_ms));
    else
        s_decision_print(args, policy, &decision);
    free(fields);
    free(copy);
    return decision.code == SB_OK ? 0 : 1;
}

static int cmd_explain(args_t *args)
{
    if (!args->consumer || !args->dataset || !args->purpose) {
        fprintf(stderr, "sharebus-policy: explain needs --consumer, --dataset and --purpose\n");
        return 2;
    }
    uint64_t at_ms = sbi_now_ms();
    if (args->at && sbi_time_parse(args->at, &at_ms) != SB_OK) {
        fprintf(stderr, "sharebus-policy: --at needs YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ\n");
        return 2;
    }
    size_t n_errors;
    sbi_policy_t *policy = s_load(args, stderr, &n_errors);
    if (!policy)
        return 1;
    int status = s_explain(args, policy, at_ms);
    sbi_policy_destroy(&policy);
    return status;
}

/* -------------------------------------------------------------- show */

static json_object *s_policy_json(const args_t *args, sbi_policy_t *policy)
{
    char hex[SBI_HASH_SIZE * 2 + 1], buf[4300];
    json_object *obj = json_object_new_object(), *list = json_object_new_array();
    s_add(obj, "version", s_version_hex(policy, hex));
    const Sharebus__PolicyBundle *bundle = sbi_policy_bundle(policy);
    for (size_t i = 0; i < bundle->n_files; i++)
        json_object_array_add(list, json_object_new_string(bundle->files[i]->name));
    json_object_object_add(obj, "files", list);
    json_object_object_add(obj, "datasets", list = json_object_new_array());
    for (size_t i = 0; i < sbi_policy_dataset_count(policy); i++) {
        const sbi_dataset_t *d = sbi_policy_dataset_at(policy, i);
        json_object *item = json_object_new_object();
        s_add(item, "id", d->id);
        s_add(item, "file", s_place(args, d->file, d->line, buf, sizeof buf));
        s_add(item, "provider", d->provider);
        s_add(item, "subject", d->about_resident ? "resident" : "none");
        json_object_object_add(item, "fields", s_strings(d->fields, d->n_fields));
        s_add(item, "description", d->description);
        json_object_array_add(list, item);
    }
    json_object_object_add(obj, "rules", list = json_object_new_array());
    for (size_t i = 0; i < sbi_policy_rule_count(policy); i++)
        json_object_array_add(list, s_rule_json(args, sbi_policy_rule_at(policy, i)));
    json_object_object_add(obj, "topics", list = json_object_new_array());
    for (size_t i = 0; i < sbi_policy_topic_count(policy); i++) {
        const sbi_topic_t *t = sbi_policy_topic_at(policy, i);
        json_object *item = json_object_new_object(), *subscribers = json_object_new_array();
        s_add(item, "id", t->id);
        s_add(item, "file", s_place(args, t->file, t->line, buf, sizeof buf));
        s_add(item, "publisher", t->publisher);
        json_object_object_add(item, "fields",
                               t->n_fields ? s_strings(t->fields, t->n_fields) : NULL);
        s_add(item, "description", t->description);
        for (size_t s = 0; s < t->n_subscribers; s++) {
            json_object *sub = json_object_new_object();
            s_add(sub, "agency", t->subscribers[s].agency);
            json_object_object_add(sub, "fields",
                                   s_strings(t->subscribers[s].fields, t->subscribers[s].n_fields));
            json_object_array_add(subscribers, sub);
        }
        json_object_object_add(item, "subscribers", subscribers);
        json_object_array_add(list, item);
    }
    return obj;
}

/* A description, every line of it after `indent` ("    | "; a block scalar
   has several lines), so that none reads as a line of show's own. */
static void s_print_text(const char *indent, const char *text)
{
    size_t len = strlen(text);
    while (len && text[len - 1] == '\n')
        len--;
    for (size_t at = 0; at < len;) {
        size_t line = strcspn(text + at, "\n");
        line = line < len - at ? line : len - at;
        printf("%.*s%.*s\n", (int)(strlen(indent) - (line ? 0 : 1)), indent, (int)line, text + at);
        at += line + 1;
    }
}

static void s_show_rule(const args_t *args, const sbi_rule_t *rule)
{
    char buf[4300];
    printf("  %s (%s)\n", rule->id, s_place(args, rule->file, rule->line, buf, sizeof buf));
    printf("    %s may obtain %s for ", rule->consumer, rule->dataset);
    s_print_list("", rule->purposes, rule->n_purposes);
    s_print_list("    fields: ", rule->fields, rule->n_fields);
    printf("    consent: %s", rule->consent_required ? "required" : "none");
    if (rule->n_consent_by)
        s_print_list(", also recorded by ", rule->consent_by, rule->n_consent_by);
    else
        printf("\n");
    printf("    rate: %s", sbi_rule_rate(rule, buf, sizeof buf));
    printf("  valid: %s\n", s_window(rule, buf, sizeof buf));
}

static void s_show(const args_t *args, sbi_policy_t *policy)
{
    char hex[SBI_HASH_SIZE * 2 + 1], buf[4300];
    printf("policy %s\nversion %s\n", args->dir, s_version_hex(policy, hex));
    printf("\ndatasets (%zu)\n", sbi_policy_dataset_count(policy));
    for (size_t i = 0; i < sbi_policy_dataset_count(policy); i++) {
        const sbi_dataset_t *d = sbi_policy_dataset_at(policy, i);
        printf("  %s (%s)\n", d->id, s_place(args, d->file, d->line, buf, sizeof buf));
        printf("    provider: %s  subject: %s\n", d->provider,
               d->about_resident ? "resident" : "none");
        s_print_list("    fields: ", d->fields, d->n_fields);
        if (d->description)
            s_print_text("    | ", d->description);
    }
    printf("\nrules (%zu)\n", sbi_policy_rule_count(policy));
    for (size_t i = 0; i < sbi_policy_rule_count(policy); i++)
        s_show_rule(args, sbi_policy_rule_at(policy, i));
    printf("\ntopics (%zu)\n", sbi_policy_topic_count(policy));
    for (size_t i = 0; i < sbi_policy_topic_count(policy); i++) {
        const sbi_topic_t *t = sbi_policy_topic_at(policy, i);
        printf("  %s (%s)\n", t->id, s_place(args, t->file, t->line, buf, sizeof buf));
        printf("    publisher: %s\n", t->publisher);
        if (t->n_fields)
            s_print_list("    fields: ", t->fields, t->n_fields);
        for (size_t s = 0; s < t->n_subscribers; s++) {
            printf("    subscriber %s: ", t->subscribers[s].agency);
            s_print_list("", t->subscribers[s].fields, t->subscribers[s].n_fields);
        }
        if (t->description)
            s_print_text("    | ", t->description);
    }
}

static int cmd_show(args_t *args)
{
    size_t n_errors;
    sbi_policy_t *policy = s_load(args, stderr, &n_errors);
    if (!policy)
        return 1;
    if (args->json)
        s_print_json(s_policy_json(args, policy));
    else
        s_show(args, policy);
    sbi_policy_destroy(&policy);
    return 0;
}

/* -------------------------------------------------------------- main */

static const command_t s_commands[] = {
    {"check", cmd_check, O_CERTS, "check PDIR [--certs DIR]"},
    {"explain", cmd_explain,
     O_CERTS | O_CONSUMER | O_DATASET | O_PURPOSE | O_FIELDS | O_AT | O_JSON,
     "explain PDIR --consumer ID --dataset ID --purpose NAME [--fields a,b] [--at DATE]\n"
     "                               [--certs DIR] [--json]"},
    {"show", cmd_show, O_CERTS | O_JSON, "show PDIR [--certs DIR] [--json]"},
};
#define S_NCOMMANDS (sizeof s_commands / sizeof s_commands[0])

static int s_usage(FILE *out, int status)
{
    fprintf(out, "usage: sharebus-policy COMMAND PDIR [OPTIONS]\n");
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        fprintf(out, "       sharebus-policy %s\n", s_commands[i].usage);
    fprintf(out, "explain exits 0 when allowed, 1 when denied. See sharebus-policy(1).\n");
    return status;
}

static const command_t *s_command(const char *name)
{
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        if (strcmp(s_commands[i].name, name) == 0)
            return &s_commands[i];
    return NULL;
}

/* The name of the first O_* option in `bits`. */
static const char *s_option_name(unsigned bits)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{O_CERTS, "--certs"},   {O_CONSUMER, "--consumer"}, {O_DATASET, "--dataset"},
                 {O_PURPOSE, "--purpose"}, {O_FIELDS, "--fields"},     {O_AT, "--at"},
                 {O_JSON, "--json"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].bit & bits)
            return names[i].name;
    return "?";
}

int main(int argc, char **argv)
{
    sbi_init();
    sbi_log_setup("sharebus-policy", SBI_LOG_WARNING);
    static const struct option options[] = {
        {"certs", required_argument, 0, 'c'},   {"consumer", required_argument, 0, 'C'},
        {"dataset", required_argument, 0, 'd'}, {"purpose", required_argument, 0, 'p'},
        {"fields", required_argument, 0, 'f'},  {"at", required_argument, 0, 'a'},
        {"json", no_argument, 0, 'j'},          {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},       {0, 0, 0, 0}};
    args_t args = {0};
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'c': args.certs = optarg; args.given |= O_CERTS; break;
        case 'C': args.consumer = optarg; args.given |= O_CONSUMER; break;
        case 'd': args.dataset = optarg; args.given |= O_DATASET; break;
        case 'p': args.purpose = optarg; args.given |= O_PURPOSE; break;
        case 'f': args.fields = optarg; args.given |= O_FIELDS; break;
        case 'a': args.at = optarg; args.given |= O_AT; break;
        case 'j': args.json = true; args.given |= O_JSON; break;
        case 'h': return s_usage(stdout, 0);
        case 'V': puts("sharebus-policy " SHAREBUS_VERSION); return 0;
        default: return s_usage(stderr, 2);
        }
    }
    if (optind >= argc)
        return s_usage(stderr, 2);
    const char *name = argv[optind++];
    const command_t *command = s_command(name);
    if (!command) {
        fprintf(stderr, "sharebus-policy: unknown command '%s'\n", name);
        return s_usage(stderr, 2);
    }
    unsigned unused = args.given & ~command->options;
    if (unused) {
        fprintf(stderr, "sharebus-policy: %s does not take %s\nusage: sharebus-policy %s\n",
                command->name, s_option_name(unused), command->usage);
        return 2;
    }
    args.dir = optind < argc ? argv[optind++] : NULL;
    if (!args.dir || optind < argc) {
        fprintf(stderr, "usage: sharebus-policy %s\n", command->usage);
        return 2;
    }
    return command->fn(&args);
}
