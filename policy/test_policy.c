/*  test_policy.c - loading, checking and deciding sharing policies.

    Most tests load YAML text as the one file "p.yaml" of a bundle, so that
    the errors read exactly "p.yaml:LINE:COLUMN: message"; the directory
    tests write files into a temporary directory. */
#include <ctype.h>
#include <fcntl.h>
#include <libfyaml.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "policy.h"
#include "testing.h"

/* ------------------------------------------------------------ helpers */

/* The errors of the last load, one per line. */
static char s_out[65536];

static void s_collect(zlistx_t *errors)
{
    size_t used = 0;
    s_out[0] = 0;
    for (char *e = zlistx_first(errors); e; e = zlistx_next(errors))
        used += (size_t)snprintf(s_out + used, sizeof s_out - used, "%s\n", e);
}

static zlistx_t *s_error_list(void)
{
    zlistx_t *errors = zlistx_new();
    zlistx_set_destructor(errors, (zlistx_destructor_fn *)zstr_free);
    return errors;
}

/* Loads files given as name, text pairs ending with NULL, as a bundle. */
static sbi_policy_t *s_load_files(sbi_trust_t *trust, const char *name, ...)
{
    Sharebus__PolicyFile files[8], *list[8];
    Sharebus__PolicyBundle bundle = SHAREBUS__POLICY_BUNDLE__INIT;
    va_list args;
    va_start(args, name);
    for (; name && bundle.n_files < 8; name = va_arg(args, const char *)) {
        const char *text = va_arg(args, const char *);
        Sharebus__PolicyFile *file = &files[bundle.n_files];
        sharebus__policy_file__init(file);
        file->name = (char *)name;
        file->content.data = (uint8_t *)text;
        file->content.len = strlen(text);
        list[bundle.n_files++] = file;
    }
    va_end(args);
    bundle.files = list;
    zlistx_t *errors = s_error_list();
    sbi_policy_t *policy = sbi_policy_load_bundle(&bundle, trust, errors);
    s_collect(errors);
    CHECK((policy != NULL) == (zlistx_size(errors) == 0));
    zlistx_destroy(&errors);
    return policy;
}

/* Loads `text` as p.yaml and checks that the errors are exactly `expected`. */
static void s_expect(const char *text, const char *expected)
{
    sbi_policy_t *policy = s_load_files(NULL, "p.yaml", text, NULL);
    CHECK_STR(s_out, expected);
    sbi_policy_destroy(&policy);
}

/* A temporary directory of policy files. */
typedef struct {
    char path[64];
} tmp_t;

static void s_tmp(tmp_t *tmp)
{
    strcpy(tmp->path, "/tmp/sb-test-policy-XXXXXX");
    CHECK(mkdtemp(tmp->path));
}

static void s_write(tmp_t *tmp, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmp->path, name);
    FILE *file = fopen(path, "w");
    CHECK(file);
    if (file) {
        fputs(text, file);
        fclose(file);
    }
}

static void s_rmtmp(tmp_t *tmp)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp->path);
    CHECK_EQ(system(cmd), 0);
}

static sbi_policy_t *s_load_dir(const char *dir, sbi_trust_t *trust)
{
    zlistx_t *errors = s_error_list();
    sbi_policy_t *policy = sbi_policy_load(dir, trust, errors);
    s_collect(errors);
    CHECK((policy != NULL) == (zlistx_size(errors) == 0));
    zlistx_destroy(&errors);
    return policy;
}

static uint64_t s_ms(const char *when)
{
    uint64_t ms = 0;
    CHECK_EQ(sbi_time_parse(when, &ms), SB_OK);
    return ms;
}

/* Lines 1-6: a dataset; rules and topics follow from line 7. */
#define S_DATASET                                                                                  \
    "version: 1\n"                                                                                 \
    "datasets:\n"                                                                                  \
    "  health.checkup:\n"                                                                          \
    "    provider: nhis\n"                                                                         \
    "    subject: resident\n"                                                                      \
    "    fields: [exam_date, vision_left, vision_right, blood_pressure]\n"

/* Lines 7-15: one rule. */
#define S_RULE                                                                                     \
    "rules:\n"                                                                                     \
    "  - id: renew\n"                                                                              \
    "    consumer: koroad\n"                                                                       \
    "    dataset: health.checkup\n"                                                                \
    "    purposes: [driver-licence-renewal]\n"                                                     \
    "    fields: [exam_date, vision_left, vision_right]\n"                                         \
    "    consent: required\n"                                                                      \
    "    rate: 50/s\n"                                                                             \
    "    valid: 2014-03-28..2030-12-31\n"

/* A rule from line 8 with the given key: value lines in place of the
   defaults after its id and consumer (lines 10 onwards). */
#define S_RULE_WITH(lines)                                                                         \
    "rules:\n"                                                                                     \
    "  - id: renew\n"                                                                              \
    "    consumer: koroad\n" lines

/* ------------------------------------------------------------ loading */

TEST(test_clean_policy_loads_with_its_rule)
{
    sbi_policy_t *policy = s_load_files(NULL, "p.yaml", S_DATASET S_RULE, NULL);
    CHECK_STR(s_out, "");
    CHECK(policy);
    if (!policy)
        return;
    CHECK_EQ(sbi_policy_dataset_count(policy), 1);
    CHECK_EQ(sbi_policy_rule_count(policy), 1);
    const sbi_rule_t *rule = sbi_policy_rule_at(policy, 0);
    CHECK_STR(rule->id, "renew");
    CHECK_STR(rule->file, "p.yaml");
    CHECK_EQ(rule->line, 8);
    CHECK_EQ(rule->n_fields, 3);
    CHECK(rule->consent_required);
    CHECK_EQ(rule->rate_count, 50);
    CHECK_EQ(rule->rate_period_ms, 1000);
    CHECK_EQ(rule->valid_from_ms, s_ms("2014-03-28"));
    CHECK_EQ(rule->valid_until_ms, s_ms("2031-01-01") - 1);
    CHECK(sbi_policy_rule(policy, "renew") == rule);
    const sbi_dataset_t *dataset = sbi_policy_dataset(policy, "health.checkup");
    CHECK(dataset && dataset->about_resident && dataset->n_fields == 4);
    CHECK(dataset && dataset->line == 3);
    sbi_policy_destroy(&policy);
    sbi_policy_destroy(&policy);
}

TEST(test_yaml_syntax_error_is_reported_with_line_and_column)
{
    s_expect("version: 1\nrules: [\n", "p.yaml:3:1: flow sequence without a closing bracket\n");
    s_expect("version: 1\n  datasets: x\n", "p.yaml:1:10: invalid multiline plain key\n");
}

TEST(test_yaml_errors_are_collected_not_printed)
{
    fflush(stderr);
    int saved = dup(2);
    char path[] = "/tmp/sb-test-policy-stderr-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && saved >= 0);
    dup2(fd, 2);
    s_expect("version: 1\nrules: [\n", "p.yaml:3:1: flow sequence without a closing bracket\n");
    s_expect("", "p.yaml:1:1: empty file: a policy file starts with 'version: 1'\n");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == 0);
    close(fd);
    unlink(path);
}

TEST(test_duplicate_yaml_key_is_reported)
{
    s_expect("version: 1\nversion: 1\n", "p.yaml:2:1: duplicate key\n");
}

TEST(test_unknown_key_is_reported_with_line_and_column)
{
    s_expect(S_DATASET "    colour: red\n",
             "p.yaml:7:5: unknown key 'colour' in a dataset (expected provider, subject, fields, "
             "description)\n");
    s_expect(S_DATASET S_RULE "    consnet: none\n",
             "p.yaml:16:5: unknown key 'consnet' in a rule (expected id, consumer, dataset, "
             "purposes, fields, consent, consent_by, rate, valid)\n");
    s_expect("version: 1\nrule: []\n",
             "p.yaml:2:1: unknown key 'rule' in a policy file (expected version, datasets, rules, "
             "topics)\n");
}

TEST(test_wrong_type_is_reported)
{
    s_expect("version: 1\ndatasets: [a]\n",
             "p.yaml:2:12: 'datasets' must be a mapping of ids, not a list\n");
    s_expect("version: 1\nrules: {a: 1}\n", "p.yaml:2:9: 'rules' must be a list, not a mapping\n");
    s_expect("version: 1\ndatasets:\n  d:\n    provider: [nhis]\n    subject: none\n"
             "    fields: [a]\n",
             "p.yaml:4:16: 'provider' must be a single value, not a list\n");
    s_expect(S_DATASET S_RULE_WITH("    dataset: health.checkup\n"
                                   "    purposes: driver-licence-renewal\n"
                                   "    fields: [exam_date]\n"
                                   "    consent: none\n"),
             "p.yaml:11:15: 'purposes' must be a list, not a single value\n");
    s_expect(S_DATASET S_RULE_WITH("    dataset: health.checkup\n"
                                   "    purposes: [p]\n"
                                   "    fields: [exam_date]\n"
                                   "    consent:\n"),
             "p.yaml:13:5: 'consent' must be a single value, not nothing\n");
    s_expect("- version: 1\n",
             "p.yaml:1:3: a policy file must be a mapping of version, datasets, rules and topics, "
             "not a list\n");
    s_expect("version: 1\nrules:\n  - 3\n",
             "p.yaml:3:5: each rule must be a mapping of id, consumer, dataset, purposes, fields "
             "and consent, not a single value\n");
}

TEST(test_missing_keys_are_reported)
{
    s_expect("datasets:\n", "p.yaml:1:1: the file is missing 'version'\n");
    s_expect("version: 1\ndatasets:\n  d:\n    provider: nhis\n    fields: [a]\n",
             "p.yaml:3:3: dataset 'd' is missing 'subject'\n");
    s_expect(S_DATASET S_RULE_WITH("    dataset: health.checkup\n"
                                   "    fields: [exam_date]\n"),
             "p.yaml:8:5: rule 'renew' is missing 'purposes'\n"
             "p.yaml:8:5: rule 'renew' is missing 'consent'\n");
}

TEST(test_rule_field_the_dataset_does_not_declare_is_reported)
{
    s_expect(S_DATASET S_RULE_WITH("    dataset: health.checkup\n"
                                   "    purposes: [driver-licence-renewal]\n"
                                   "    fields: [exam_date, blood_type, vision_left, shoe_size]\n"
                                   "    consent: required\n"),
             "p.yaml:12:25: field 'blood_type' is not declared by dataset 'health.checkup'\n"
             "p.yaml:12:50: field 'shoe_size' is not declared by dataset 'health.checkup'\n");
}

TEST(test_rule_for_an_unknown_dataset_is_reported)
{
    s_expect(S_DATASET S_RULE_WITH("    dataset: health.checkups\n"
                                   "    purposes: [driver-licence-renewal]\n"
                                   "    fields: [exam_date]\n"
                                   "    consent: required\n"),
             "p.yaml:10:14: dataset 'health.checkups' is not declared\n");
}

TEST(test_rule_may_use_a_dataset_declared_in_a_later_file)
{
    sbi_policy_t *policy =
        s_load_files(NULL, "a.yaml", "version: 1\n" S_RULE, "b.yaml", S_DATASET, NULL);
    CHECK_STR(s_out, "");
    CHECK(policy);
    sbi_policy_destroy(&policy);
}

TEST(test_invalid_agency_id_is_reported)
{
    s_expect("version: 1\ndatasets:\n  d:\n    provider: NHIS\n    subject: none\n"
             "    fields: [a]\n",
             "p.yaml:4:15: 'NHIS' is not a valid agency id (1 to 32 of a-z, 0-9, '.' and '-')\n");
    s_expect("version: 1\ndatasets:\n  d:\n    provider: broker\n    subject: none\n"
             "    fields: [a]\n",
             "p.yaml:4:15: 'broker' is not a valid agency id (1 to 32 of a-z, 0-9, '.' and '-')\n");
}

TEST(test_invalid_names_are_reported)
{
    s_expect("version: 1\ndatasets:\n  \"bad id\":\n    provider: nhis\n    subject: none\n"
             "    fields: [a, \"b c\"]\n",
             "p.yaml:3:3: 'bad id' is not a valid dataset id (1 to 128 printable characters, no "
             "spaces)\n"
             "p.yaml:6:17: 'b c' is not a valid field (1 to 128 printable characters, no "
             "spaces)\n");
    s_expect(S_DATASET "rules:\n  - id: \"my rule\"\n    consumer: koroad\n"
                       "    dataset: health.checkup\n    purposes: [\"to renew\"]\n"
                       "    fields: [exam_date]\n    consent: none\n",
             "p.yaml:8:9: 'my rule' is not a valid rule id (1 to 128 printable characters, no "
             "spaces)\n"
             "p.yaml:11:16: 'to renew' is not a valid purpose (1 to 128 printable characters, no "
             "spaces)\n");
}

TEST(test_control_characters_never_reach_the_messages)
{
    s_expect("version: 1\n\"\\e[31mred\": 1\n",
             "p.yaml:2:1: unknown key '?[31mred' in a policy file (expected version, datasets, "
             "rules, topics)\n");
}

TEST(test_control_characters_written_with_escapes_are_refused_in_values)
{
    /* An escape sequence in a description would reach the terminal of
       whoever runs `show`, and could rewrite the lines above it. */
    s_expect("version: 1\ndatasets:\n  d:\n    provider: nhis\n    subject: none\n"
             "    description: \"ok\\e[1A\\e[2K\"\n    fields: [a]\n",
             "p.yaml:6:18: 'description' holds the control character U+001B: only tab and "
             "newline may be written\n");
    s_expect("version: 1\ndatasets:\n  d:\n    provider: nhis\n    subject: none\n"
             "    description: \"a\\rb\"\n    fields: [a]\n"
             "  e:\n    provider: nhis\n    subject: none\n"
             "    description: \"a\\x85b\\x9b\"\n    fields: [a]\n",
             "p.yaml:6:18: 'description' holds the control character U+000D: only tab and "
             "newline may be written\n"
             "p.yaml:11:18: 'description' holds the control character U+0085: only tab and "
             "newline may be written\n");
    s_expect(S_DATASET "rules:\n  - id: \"r\\x7f\"\n    consumer: koroad\n"
                       "    dataset: health.checkup\n    purposes: [p]\n"
                       "    fields: [exam_date]\n    consent: none\n",
             "p.yaml:8:9: 'id' holds the control character U+007F: only tab and newline may be "
             "written\n");
    /* Tabs, newlines and other text are fine, as are CR LF line ends. */
    sbi_policy_t *policy = s_load_files(
        NULL, "p.yaml",
        "version: 1\r\ndatasets:\r\n  d:\r\n    provider: nhis\r\n    subject: none\r\n"
        "    description: |\r\n      Vision\tand hearing,\r\n      \xea\xb0\x80 \xc2\xa0 \"x\"\r\n"
        "    fields: [a]\r\n",
        NULL);
    CHECK(policy);
    if (policy)
        CHECK_STR(sbi_policy_dataset(policy, "d")->description,
                  "Vision\tand hearing,\n\xea\xb0\x80 \xc2\xa0 \"x\"\n");
    sbi_policy_destroy(&policy);
}

TEST(test_long_messages_are_cut_between_characters)
{
    char text[4096];
    size_t used = (size_t)snprintf(text, sizeof text, "version: 1\n");
    for (int i = 0; i < 700; i++)
        used += (size_t)snprintf(text + used, sizeof text - used, "\xea\xb0\x80");
    snprintf(text + used, sizeof text - used, ": 1\n");
    sbi_policy_t *policy = s_load_files(NULL, "p.yaml", text, NULL);
    CHECK(!policy);
    size_t len = strlen(s_out);
    CHECK(len > 1000 && len < 1100);
    /* Complete three-byte characters up to the end of the message. */
    const char *end = strchr(s_out, '\n');
    const char *key = strstr(s_out, "'");
    CHECK(end && key && (size_t)(end - key - 1) % 3 == 0);
}

TEST(test_dataset_declared_twice_names_both_places)
{
    sbi_policy_t *policy = s_load_files(NULL, "a.yaml", S_DATASET, "b.yaml", S_DATASET, NULL);
    CHECK_STR(s_out,
              "b.yaml:3:3: dataset 'health.checkup' is declared twice: first at a.yaml:3:3\n");
    CHECK(!policy);
}

TEST(test_topic_and_rule_id_declared_twice_are_reported)
{
    const char *topic = "version: 1\ntopics:\n  t:\n    publisher: mois\n"
                        "    subscribers:\n      - {agency: nts, fields: [a]}\n";
    sbi_policy_t *policy = s_load_files(NULL, "a.yaml", topic, "b.yml", topic, NULL);
    CHECK_STR(s_out, "b.yml:3:3: topic 't' is declared twice: first at a.yaml:3:3\n");
    CHECK(!policy);
    policy = s_load_files(NULL, "a.yaml", S_DATASET S_RULE, "b.yaml", "version: 1\n" S_RULE, NULL);
    CHECK_STR(s_out, "b.yaml:3:5: rule id 'renew' is used twice: first at a.yaml:8:5\n");
    CHECK(!policy);
}

TEST(test_empty_purposes_and_fields_are_reported)
{
    s_expect(S_DATASET S_RULE_WITH("    dataset: health.checkup\n"
                                   "    purposes: []\n"
                                   "    fields: []\n"
                                   "    consent: none\n"),
             "p.yaml:11:5: 'purposes' is empty: list at least one purpose\n"
             "p.yaml:12:5: 'fields' is empty: list at least one field\n");
}

TEST(test_item_listed_twice_is_reported)
{
    s_expect(S_DATASET S_RULE_WITH("    dataset: health.checkup\n"
                                   "    purposes: [p, q, p]\n"
                                   "    fields: [exam_date]\n"
                                   "    consent: none\n"),
             "p.yaml:11:22: 'purposes' lists 'p' twice\n");
}

/* A rule with only `key: value` changed from a valid one, at line 13. */
static void s_expect_rule_line(const char *line, const char *expected)
{
    char text[2048];
    snprintf(text, sizeof text,
             S_DATASET S_RULE_WITH("    dataset: health.checkup\n"
                                   "    purposes: [driver-licence-renewal]\n"
                                   "    fields: [exam_date]\n"
                                   "%s\n"),
             line);
    s_expect(text, expected);
}

TEST(test_bad_rate_is_reported)
{
    s_expect_rule_line(
        "    consent: none\n    rate: 0/s",
        "p.yaml:14:11: rate '0/s' is not N/s or N/min with N from 1 to 4294967295\n");
    s_expect_rule_line(
        "    consent: none\n    rate: 5/hour",
        "p.yaml:14:11: rate '5/hour' is not N/s or N/min with N from 1 to 4294967295\n");
    s_expect_rule_line("    consent: none\n    rate: 50",
                       "p.yaml:14:11: rate '50' is not N/s or N/min with N from 1 to 4294967295\n");
    s_expect_rule_line(
        "    consent: none\n    rate: -5/s",
        "p.yaml:14:11: rate '-5/s' is not N/s or N/min with N from 1 to 4294967295\n");
    s_expect_rule_line("    consent: none\n    rate: 99999999999/s",
                       "p.yaml:14:11: rate '99999999999/s' is not N/s or N/min with N from 1 to "
                       "4294967295\n");
}

TEST(test_rates_per_second_and_per_minute_are_read)
{
    sbi_policy_t *policy = s_load_files(
        NULL, "p.yaml",
        S_DATASET S_RULE_WITH("    dataset: health.checkup\n    purposes: [p]\n"
                              "    fields: [exam_date]\n    consent: none\n    rate: 600/min\n"),
        NULL);
    CHECK(policy);
    if (!policy)
        return;
    const sbi_rule_t *rule = sbi_policy_rule_at(policy, 0);
    char buf[32];
    CHECK_EQ(rule->rate_count, 600);
    CHECK_EQ(rule->rate_period_ms, 60000);
    CHECK_STR(sbi_rule_rate(rule, buf, sizeof buf), "600/min");
    CHECK_STR(sbi_rule_window(rule, buf, sizeof buf), "..");
    CHECK(!rule->consent_required);
    sbi_policy_destroy(&policy);
}

TEST(test_bad_validity_window_is_reported)
{
    const char *bad[] = {
        "2014-3-28..",    "2025-02-30..", "2020-01-01", "..2020-13-01", "2020-01-01...2021-01-01",
        "today..tomorrow"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char line[128], expected[256];
        snprintf(line, sizeof line, "    consent: none\n    valid: %s", bad[i]);
        snprintf(expected, sizeof expected,
                 "p.yaml:14:12: validity window '%s' is not YYYY-MM-DD..YYYY-MM-DD (either side "
                 "may be empty)\n",
                 bad[i]);
        s_expect_rule_line(line, expected);
    }
    s_expect_rule_line("    consent: none\n    valid: 2021-01-01..2020-12-31",
                       "p.yaml:14:12: validity window '2021-01-01..2020-12-31' ends before it "
                       "starts\n");
}

TEST(test_version_must_be_1)
{
    s_expect("version: 2\n", "p.yaml:1:10: version must be 1, not '2'\n");
    s_expect("version: [1]\n", "p.yaml:1:11: 'version' must be a single value, not a list\n");
}

TEST(test_consent_is_required_only_of_a_dataset_about_a_person)
{
    s_expect("version: 1\n"
             "datasets:\n"
             "  stats.visits:\n"
             "    provider: nhis\n"
             "    subject: none\n"
             "    fields: [count]\n"
             "rules:\n"
             "  - id: research\n"
             "    consumer: koroad\n"
             "    dataset: stats.visits\n"
             "    purposes: [research]\n"
             "    fields: [count]\n"
             "    consent: required\n",
             "p.yaml:13:14: consent: required needs a dataset about a person; dataset "
             "'stats.visits' is subject: none\n");
}

TEST(test_consent_must_be_required_or_none)
{
    s_expect_rule_line("    consent: sometimes",
                       "p.yaml:13:14: consent must be 'required' or 'none', not 'sometimes'\n");
    s_expect_rule_line("    consent: none\n    consent_by: [mois]",
                       "p.yaml:14:5: consent_by needs consent: required\n");
    s_expect_rule_line("    consent: required\n    consent_by: [mois, Mois]",
                       "p.yaml:14:24: 'Mois' is not a valid agency id (1 to 32 of a-z, 0-9, '.' "
                       "and '-')\n");
}

TEST(test_subject_must_be_resident_or_none)
{
    s_expect("version: 1\ndatasets:\n  d:\n    provider: nhis\n    subject: maybe\n"
             "    fields: [a]\n",
             "p.yaml:5:14: subject must be 'resident' or 'none', not 'maybe'\n");
}

TEST(test_topic_subscribers_are_checked)
{
    s_expect("version: 1\n"
             "topics:\n"
             "  resident.address-changed:\n"
             "    publisher: mois\n"
             "    fields: [new_address, moved_on]\n"
             "    subscribers:\n"
             "      - {agency: nts, fields: [new_address, moved_on, income]}\n"
             "      - {agency: nts, fields: [new_address]}\n"
             "      - {agency: nhis}\n"
             "      - {agency: koroad, fields: [new_address], colour: red}\n",
             "p.yaml:7:55: field 'income' is not declared by topic 'resident.address-changed'\n"
             "p.yaml:8:10: agency 'nts' subscribes twice to topic 'resident.address-changed'\n"
             "p.yaml:9:10: a subscriber is missing 'fields'\n"
             "p.yaml:10:49: unknown key 'colour' in a subscriber (expected agency, fields)\n");
}

TEST(test_topic_is_loaded_with_its_subscribers)
{
    sbi_policy_t *policy = s_load_files(NULL, "events.yaml",
                                        "version: 1\ntopics:\n  t:\n    publisher: mois\n"
                                        "    description: moves\n    subscribers:\n"
                                        "      - {agency: nts, fields: [a, b]}\n"
                                        "      - {agency: koroad, fields: [a]}\n",
                                        NULL);
    CHECK(policy);
    if (!policy)
        return;
    const sbi_topic_t *topic = sbi_policy_topic(policy, "t");
    CHECK(topic && topic->n_subscribers == 2 && topic->n_fields == 0);
    CHECK_STR(topic ? topic->description : NULL, "moves");
    const sbi_subscriber_t *koroad = topic ? sbi_topic_subscriber(topic, "koroad") : NULL;
    CHECK(koroad && koroad->n_fields == 1 && strcmp(koroad->fields[0], "a") == 0);
    CHECK(topic && !sbi_topic_subscriber(topic, "nhis"));
    CHECK(sbi_policy_topic_at(policy, 0) == topic && sbi_policy_topic_count(policy) == 1);
    sbi_policy_destroy(&policy);
}

TEST(test_overlapping_rules_are_reported)
{
    s_expect(S_DATASET S_RULE "  - id: renew-again\n"
                              "    consumer: koroad\n"
                              "    dataset: health.checkup\n"
                              "    purposes: [eye-test, driver-licence-renewal]\n"
                              "    fields: [exam_date]\n"
                              "    consent: none\n"
                              "    valid: 2030-12-31..\n",
             "p.yaml:16:5: rule 'renew-again' overlaps rule 'renew' (p.yaml:8:5): both let koroad "
             "obtain health.checkup for purpose 'driver-licence-renewal' in overlapping validity "
             "windows\n");
}

TEST(test_an_overlap_names_the_first_rule_and_the_first_shared_purpose)
{
    /* 'third' overlaps 'first' on x and 'second' on y: the message names
       the earliest rule, and of its purposes the first that rule lists. */
    s_expect("version: 1\ndatasets:\n  d: {provider: nhis, subject: none, fields: [a]}\n"
             "rules:\n"
             "  - {id: first, consumer: koroad, dataset: d, purposes: [w, x], fields: [a], "
             "consent: none}\n"
             "  - {id: second, consumer: koroad, dataset: d, purposes: [y], fields: [a], "
             "consent: none}\n"
             "  - {id: other, consumer: nts, dataset: d, purposes: [x, y], fields: [a], "
             "consent: none}\n"
             "  - {id: third, consumer: koroad, dataset: d, purposes: [y, z, x], fields: [a], "
             "consent: none, valid: 2020-01-01..}\n",
             "p.yaml:8:6: rule 'third' overlaps rule 'first' (p.yaml:5:6): both let koroad obtain "
             "d for purpose 'x' in overlapping validity windows\n");
}

TEST(test_many_rules_of_one_consumer_and_dataset_with_other_purposes_load)
{
    /* 1,000 rules of one consumer and dataset, 64 purposes each, none
       shared: no overlap. (The check once compared every purpose of every
       pair, some 10^10 steps, 15 s here; how long it takes is not asserted:
       speed is measured in bench/, never in a test.) */
    size_t size = 1000 * 64 * 8 + 1000 * 128 + 256, used = 0;
    char *text = malloc(size);
    CHECK(text);
    if (!text)
        return;
    used += (size_t)snprintf(text + used, size - used,
                             "version: 1\ndatasets:\n  d: {provider: nhis, subject: none, "
                             "fields: [a]}\nrules:\n");
    for (int r = 0; r < 1000; r++) {
        used += (size_t)snprintf(text + used, size - used,
                                 "  - {id: r%d, consumer: koroad, dataset: d, purposes: [", r);
        for (int p = 0; p < 64; p++)
            used += (size_t)snprintf(text + used, size - used, "%sp%d", p ? "," : "", r * 64 + p);
        used += (size_t)snprintf(text + used, size - used, "], fields: [a], consent: none}\n");
    }
    CHECK(used < size);
    sbi_policy_t *policy = s_load_files(NULL, "p.yaml", text, NULL);
    CHECK(policy && sbi_policy_rule_count(policy) == 1000);
    sbi_policy_destroy(&policy);
    free(text);
}

TEST(test_rules_with_other_purposes_windows_or_consumers_do_not_overlap)
{
    sbi_policy_t *policy = s_load_files(NULL, "p.yaml",
                                        S_DATASET S_RULE "  - id: later\n"
                                                         "    consumer: koroad\n"
                                                         "    dataset: health.checkup\n"
                                                         "    purposes: [driver-licence-renewal]\n"
                                                         "    fields: [exam_date]\n"
                                                         "    consent: none\n"
                                                         "    valid: 2031-01-01..\n"
                                                         "  - id: other-purpose\n"
                                                         "    consumer: koroad\n"
                                                         "    dataset: health.checkup\n"
                                                         "    purposes: [research]\n"
                                                         "    fields: [exam_date]\n"
                                                         "    consent: none\n"
                                                         "  - id: other-consumer\n"
                                                         "    consumer: nts\n"
                                                         "    dataset: health.checkup\n"
                                                         "    purposes: [driver-licence-renewal]\n"
                                                         "    fields: [exam_date]\n"
                                                         "    consent: none\n",
                                        NULL);
    CHECK_STR(s_out, "");
    CHECK(policy && sbi_policy_rule_count(policy) == 4);
    sbi_policy_destroy(&policy);
}

TEST(test_one_yaml_document_per_file)
{
    s_expect("version: 1\n---\nversion: 1\n",
             "p.yaml:3:1: a second YAML document: a policy file holds one\n");
    sbi_policy_t *policy = s_load_files(NULL, "p.yaml", "---\nversion: 1\n...\n", NULL);
    CHECK(policy);
    sbi_policy_destroy(&policy);
    /* Documents of nothing after it: a trailing "---", comments. */
    policy = s_load_files(NULL, "p.yaml", "version: 1\n---\n", NULL);
    CHECK_STR(s_out, "");
    sbi_policy_destroy(&policy);
    policy = s_load_files(NULL, "p.yaml", "version: 1\n---\n# the end\n---\n...\n", NULL);
    CHECK_STR(s_out, "");
    sbi_policy_destroy(&policy);
    /* Content after empty documents is still a second document, named
       where it is, as is an empty mapping (at its "---"). */
    s_expect("version: 1\n---\n---\nversion: 1\n",
             "p.yaml:4:1: a second YAML document: a policy file holds one\n");
    s_expect("version: 1\n--- {}\n",
             "p.yaml:2:1: a second YAML document: a policy file holds one\n");
    s_expect("version: 1\n---\n~\n",
             "p.yaml:3:1: a second YAML document: a policy file holds one\n");
    s_expect("version: 1\n--- !!str\n",
             "p.yaml:2:1: a second YAML document: a policy file holds one\n");
}

TEST(test_text_that_is_not_utf8_is_reported)
{
    s_expect("version: 1\nx: \"\xff\"\n", "p.yaml:2:5: not UTF-8 text: byte 0xff is not allowed "
                                          "here\n");
    s_expect("version: 1\x01\n", "p.yaml:1:11: not UTF-8 text: byte 0x01 is not allowed here\n");
    /* A NUL byte inside a file. */
    Sharebus__PolicyFile file = SHAREBUS__POLICY_FILE__INIT, *list[] = {&file};
    Sharebus__PolicyBundle bundle = SHAREBUS__POLICY_BUNDLE__INIT;
    file.name = "p.yaml";
    file.content.data = (uint8_t *)"version: 1\0x: 1\n";
    file.content.len = 16;
    bundle.files = list;
    bundle.n_files = 1;
    zlistx_t *errors = s_error_list();
    CHECK(!sbi_policy_load_bundle(&bundle, NULL, errors));
    s_collect(errors);
    CHECK_STR(s_out, "p.yaml:1:11: not UTF-8 text: byte 0x00 is not allowed here\n");
    zlistx_destroy(&errors);
}

TEST(test_explicit_keys_are_refused_before_libfyaml_sees_them)
{
    /* libfyaml 0.7.12 (Debian 12) crashes on this one. */
    s_expect("version: 1\n? ?:\t:\n", "p.yaml:2:1: '?' (an explicit YAML key) is not used in "
                                       "policy files: write key: value\n");
    s_expect("version: 1\ndatasets: {? d: x}\n",
             "p.yaml:2:12: '?' (an explicit YAML key) is not used in policy files: write key: "
             "value\n");
    /* In comments and quoted values, '?' is text. */
    sbi_policy_t *policy = s_load_files(NULL, "p.yaml", "version: 1 # really? yes\n", NULL);
    CHECK(policy);
    sbi_policy_destroy(&policy);
}

/* Index of the first of `count` texts in which libfyaml's scanner reads
   an explicit key (a KEY token at a '?'), or on which it crashes or hangs;
   -1 when none.  The texts are scanned in one child process, which never
   destroys a parser: libfyaml crashes there after some errors. */
static int s_libfyaml_key(const char *const *texts, const size_t *sizes, int count)
{
    volatile int *at = mmap(NULL, sizeof *at, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                            -1, 0);
    CHECK(at != MAP_FAILED);
    *at = 0;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(open("/dev/null", O_WRONLY), STDERR_FILENO);
        alarm(60);
        struct fy_parse_cfg cfg = {.flags = FYPCF_QUIET | FYPCF_DEFAULT_VERSION_1_2};
        for (int i = 0; i < count; i++) {
            *at = i;
            struct fy_parser *parser = fy_parser_create(&cfg);
            if (!parser || fy_parser_set_string(parser, texts[i], sizes[i]) != 0)
                _exit(2);
            struct fy_token *token;
            while ((token = fy_scan(parser))) {
                const struct fy_mark *mark = fy_token_start_mark(token);
                if (fy_token_get_type(token) == FYTT_KEY && mark && mark->input_pos < sizes[i]
                    && texts[i][mark->input_pos] == '?')
                    _exit(1);
                fy_scan_token_free(parser, token);
            }
        }
        _exit(0);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    int found = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? -1 : *at;
    munmap((void *) at, sizeof *at);
    return found;
}

static bool s_explicit_key(const char *text, size_t *line, size_t *column)
{
    return sbi_yaml_explicit_key(text, strlen(text), line, column);
}

TEST(test_explicit_keys_after_quotes_in_plain_text_are_refused)
{
    /* Quotes in plain text, or over lines, do not hide the next lines. */
    s_expect("version: 1\nx: it's\n? ?:\t:\n",
             "p.yaml:3:1: '?' (an explicit YAML key) is not used in policy files: write key: "
             "value\n");
    s_expect("version: 1\nx: say \"hi\n? ?:\t:\n",
             "p.yaml:3:1: '?' (an explicit YAML key) is not used in policy files: write key: "
             "value\n");
    s_expect("version: 1\nx: 'a\n  b'\n? ?:\t:\n",
             "p.yaml:4:1: '?' (an explicit YAML key) is not used in policy files: write key: "
             "value\n");
    /* Each of these is an explicit key to libfyaml, one per rule. */
    static const struct {
        const char *text;
        size_t line, column;
    } keys[] = {
        {"x: 1\n? a", 2, 1},                  /* at the start of a line */
        {"x: [a,\n ? k]", 2, 2},              /* ... inside flow too */
        {"{\"a\":? b}", 1, 6},                /* right after a JSON-like ':' */
        {"[a, ? b]", 1, 5},                   /* after a word ending a token: ',' */
        {"[\"a\" ? b]", 1, 6},                /* a closing quote */
        {"[&x ? y]", 1, 5},                   /* an anchor */
        {"[!t ? y]", 1, 5},                   /* a tag */
        {"[*x ? y]", 1, 5},                   /* an alias */
        {"- ? a", 1, 3},                      /* a block entry */
        {"{a: ? b}", 1, 5},                   /* a value */
        {"{\"a\" :!t ? x}", 1, 10},           /* a value starting a word */
        {"x: [ 'a #', ? k: v ]", 1, 13},      /* a '#' before a quote hides nothing */
        {"x: [ 'a\n  ]', ? k ]", 2, 7},       /* a quoted scalar over two lines */
        {"x: [a\n  'b, ? k: v']", 2, 7},      /* a quote in a plain continuation */
        {"x: it's\n? ?:\t:", 2, 1},
        {"{\xc3\xa9: [\"\xc3\xa9\" ? b]}", 1, 10}, /* columns count characters */
    };
    const char *texts[sizeof keys / sizeof keys[0]];
    size_t sizes[sizeof keys / sizeof keys[0]];
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        size_t line = 0, column = 0;
        bool found = s_explicit_key(keys[i].text, &line, &column);
        if (!found || line != keys[i].line || column != keys[i].column)
            fprintf(stderr, "  case %zu: %s at %zu:%zu\n", i, found ? "found" : "missed", line,
                    column);
        CHECK(found && line == keys[i].line && column == keys[i].column);
        /* and libfyaml does read an explicit key in each */
        texts[0] = keys[i].text;
        sizes[0] = strlen(keys[i].text);
        if (s_libfyaml_key(texts, sizes, 1) != 0)
            fprintf(stderr, "  case %zu: libfyaml reads no explicit key\n", i);
        CHECK_EQ(s_libfyaml_key(texts, sizes, 1), 0);
    }
    /* Over-refused, on purpose: a '?' where a token could start. */
    size_t line, column;
    CHECK(s_explicit_key("x: 'a' ? b", &line, &column));
    CHECK(s_explicit_key("x: [a]?", &line, &column));
    CHECK(s_explicit_key("{\"a\":?b}", &line, &column)); /* keys to libfyaml versions */
    CHECK(s_explicit_key("[a,?b]", &line, &column));      /* that take any '?' in flow */
    CHECK(s_explicit_key("%YAML 1.2 ? a", &line, &column));
    CHECK(s_explicit_key("x: b\xc2\x85? c", &line, &column));
    CHECK(s_explicit_key("x: |\n  ? not a key, but refused\n", &line, &column));
}

TEST(test_question_marks_in_text_are_accepted)
{
    static const char *texts[] = {
        "    description: 'Fit to drive? yes'\n",
        "    description: \"Fit to drive? yes\"\n",
        "    description: Fit to drive? yes\n",
        "    description: Fit to drive?\n",
        "    description: Fit to drive ? yes\n",
        "    description: \"Fit to drive ?\"\n",
        "    description: >\n      Fit to drive? Why ? yes\n",
        "    # really? yes\n",
        "    # ? what 'if' it is\n",
        "# ? yes\n",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char text[512];
        snprintf(text, sizeof text, "%s%s", S_DATASET, texts[i]);
        sbi_policy_t *policy = s_load_files(NULL, "p.yaml", text, NULL);
        if (!policy)
            fprintf(stderr, "  case %zu: %s", i, s_out);
        CHECK(policy);
        sbi_policy_destroy(&policy);
    }
    /* A leading byte order mark is skipped, as libfyaml skips it. */
    size_t line, column;
    CHECK(!s_explicit_key("\xef\xbb\xbfx: why?", &line, &column));
    CHECK(s_explicit_key("\xef\xbb\xbf? x", &line, &column));
    CHECK_EQ(column, 2);
}

/* Fragments of YAML that meet at the places explicit keys hide. */
static const char *s_fragments[] = {
    "? ", "?", ":", ": ", ":\t", "\t", "'", "\"", "#", " #", "[", "]", "{", "}", ",", "- ", "|",
    ">", "\n", "\n  ", "a", "b: ", "!t ", "&x ", "\\", "''", "*x ", "--- ", "%YAML 1.2 ", "\r",
    " ", "\"a\" ", " :", "'#'", "\n- ", "|-\n", "\xef\xbb\xbf", "\xc2\x85",
};

static uint64_t s_random(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

TEST(test_libfyaml_reads_no_explicit_key_in_random_text_the_guard_lets_through)
{
    enum { COUNT = 20000, FRAGMENTS = 14, SIZE = 256 };
    char *arena = malloc((size_t) COUNT * SIZE);
    const char **passed = calloc(COUNT, sizeof *passed), **refused = calloc(COUNT, sizeof *refused);
    size_t *passed_size = calloc(COUNT, sizeof *passed_size);
    size_t *refused_size = calloc(COUNT, sizeof *refused_size);
    int n_passed = 0, n_refused = 0;
    uint64_t state = 20240611;
    for (int n = 0; n < COUNT; n++) {
        char *text = arena + (size_t) n * SIZE;
        size_t size = 0;
        for (int f = 1 + (int) (s_random(&state) % FRAGMENTS); f > 0; f--) {
            const char *fragment =
                s_fragments[s_random(&state) % (sizeof s_fragments / sizeof s_fragments[0])];
            memcpy(text + size, fragment, strlen(fragment));
            size += strlen(fragment);
        }
        size_t line, column;
        if (sbi_yaml_explicit_key(text, size, &line, &column)) {
            refused[n_refused] = text;
            refused_size[n_refused++] = size;
        } else {
            passed[n_passed] = text;
            passed_size[n_passed++] = size;
        }
    }
    int missed = s_libfyaml_key(passed, passed_size, n_passed);
    if (missed >= 0) {
        fprintf(stderr, "  libfyaml reads an explicit key in (or fails on) \"");
        for (size_t i = 0; i < passed_size[missed]; i++) {
            unsigned char c = (unsigned char) passed[missed][i];
            fprintf(stderr, isprint(c) && c != '"' && c != '\\' ? "%c" : "\\x%02x", c);
        }
        fprintf(stderr, "\"\n");
    }
    CHECK_EQ(missed, -1);
    /* Enough text passes to mean something, and the refused text does hold
       explicit keys. */
    CHECK(n_passed > COUNT / 2);
    CHECK(s_libfyaml_key(refused, refused_size, n_refused) >= 0);
    free(arena);
    free(passed);
    free(refused);
    free(passed_size);
    free(refused_size);
}

TEST(test_two_escaped_quotes_in_a_row_are_refused)
{
    /* libfyaml 0.7.12 reads 'x''''y' as x''' (and leaks what it allocated):
       refused before any value is read, keys and list items too. */
    s_expect("version: 1\ndatasets:\n  d:\n    provider: nhis\n    subject: none\n"
             "    fields: [a]\n    description: 'x''''y'\n",
             "p.yaml:7:18: two '' in a row in a single-quoted value, which this system's YAML "
             "library misreads: write the value in double quotes\n");
    s_expect("version: 1\n'a''''b': 1\n",
             "p.yaml:2:1: two '' in a row in a single-quoted value, which this system's YAML "
             "library misreads: write the value in double quotes\n");
    /* One escape at a time is read right. */
    sbi_policy_t *policy = s_load_files(NULL, "p.yaml",
                                        "version: 1\ndatasets:\n  d:\n    provider: nhis\n"
                                        "    subject: none\n    fields: [a]\n"
                                        "    description: 'the applicant''s ''fit'' test'\n",
                                        NULL);
    CHECK(policy);
    sbi_policy_destroy(&policy);
}

TEST(test_aliases_are_refused)
{
    s_expect("version: 1\ndatasets:\n  d:\n    provider: &p nhis\n    subject: none\n"
             "    fields: [a]\n  e:\n    provider: *p\n    subject: none\n    fields: [a]\n",
             "p.yaml:8:15: 'provider' must be a single value, not an alias\n");
}

TEST(test_every_error_is_reported_not_just_the_first)
{
    tmp_t tmp;
    s_tmp(&tmp);
    s_write(&tmp, "a.yaml", "version: 1\nrules: [\n");
    s_write(&tmp, "b.yaml", S_DATASET "    colour: red\n" S_RULE "    consnet: none\n");
    s_write(&tmp, "c.yml", "version: 3\n");
    sbi_policy_t *policy = s_load_dir(tmp.path, NULL);
    CHECK(!policy);
    char expected[2048];
    snprintf(expected, sizeof expected,
             "%1$s/a.yaml:3:1: flow sequence without a closing bracket\n"
             "%1$s/b.yaml:7:5: unknown key 'colour' in a dataset (expected provider, subject, "
             "fields, description)\n"
             "%1$s/b.yaml:17:5: unknown key 'consnet' in a rule (expected id, consumer, dataset, "
             "purposes, fields, consent, consent_by, rate, valid)\n"
             "%1$s/c.yml:1:10: version must be 1, not '3'\n",
             tmp.path);
    CHECK_STR(s_out, expected);
    s_rmtmp(&tmp);
}

TEST(test_directory_errors_name_the_directory)
{
    tmp_t tmp;
    s_tmp(&tmp);
    s_write(&tmp, "README.txt", "not a policy\n");
    char expected[256];
    CHECK(!s_load_dir(tmp.path, NULL));
    snprintf(expected, sizeof expected, "%s: no policy files (*.yaml, *.yml)\n", tmp.path);
    CHECK_STR(s_out, expected);
    s_rmtmp(&tmp);
    CHECK(!s_load_dir(tmp.path, NULL));
    snprintf(expected, sizeof expected,
             "%s: cannot read the directory: No such file or directory\n", tmp.path);
    CHECK_STR(s_out, expected);
}

TEST(test_non_yaml_files_and_hidden_files_are_ignored)
{
    tmp_t tmp;
    s_tmp(&tmp);
    s_write(&tmp, "p.yaml", S_DATASET S_RULE);
    s_write(&tmp, "notes.txt", "version: banana\n");
    s_write(&tmp, ".#p.yaml", "version: banana\n");
    s_write(&tmp, "p.yaml~", "version: banana\n");
    sbi_policy_t *policy = s_load_dir(tmp.path, NULL);
    CHECK_STR(s_out, "");
    CHECK(policy && sbi_policy_bundle(policy)->n_files == 1);
    sbi_policy_destroy(&policy);
    s_rmtmp(&tmp);
}

TEST(test_file_name_with_a_control_character_is_reported)
{
    /* The agents refuse a bundle holding such a name: the broker's load of
       the directory must refuse it too, or they would part ways. */
    tmp_t tmp;
    s_tmp(&tmp);
    s_write(&tmp, "p.yaml", S_DATASET S_RULE);
    s_write(&tmp, "old\tp.yaml", "version: 1\n");
    char expected[256];
    sbi_policy_t *policy = s_load_dir(tmp.path, NULL);
    CHECK(!policy);
    sbi_policy_destroy(&policy);
    snprintf(expected, sizeof expected,
             "%s/old?p.yaml:1:1: the file name holds a control character: rename the file\n",
             tmp.path);
    CHECK_STR(s_out, expected);
    s_rmtmp(&tmp);
}

TEST(test_oversized_file_is_reported)
{
    tmp_t tmp;
    s_tmp(&tmp);
    char path[256];
    snprintf(path, sizeof path, "%s/big.yaml", tmp.path);
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0 && ftruncate(fd, SBI_FILE_MAX + 1) == 0);
    close(fd);
    CHECK(!s_load_dir(tmp.path, NULL));
    char expected[512];
    snprintf(expected, sizeof expected, "%s/big.yaml:1:1: file is larger than %d bytes\n", tmp.path,
             SBI_FILE_MAX);
    CHECK_STR(s_out, expected);
    s_rmtmp(&tmp);
}

TEST(test_a_flood_of_errors_stops_at_a_thousand)
{
    size_t size = 64 + 1100 * 6;
    char *text = malloc(size);
    size_t used = (size_t)snprintf(text, size, "version: 1\nrules:\n");
    for (int i = 0; i < 1100; i++)
        used += (size_t)snprintf(text + used, size - used, "  - 3\n");
    zlistx_t *errors = s_error_list();
    Sharebus__PolicyFile file = SHAREBUS__POLICY_FILE__INIT, *list[] = {&file};
    Sharebus__PolicyBundle bundle = SHAREBUS__POLICY_BUNDLE__INIT;
    file.name = "p.yaml";
    file.content.data = (uint8_t *)text;
    file.content.len = used;
    bundle.files = list;
    bundle.n_files = 1;
    CHECK(!sbi_policy_load_bundle(&bundle, NULL, errors));
    CHECK_EQ(zlistx_size(errors), 1001);
    CHECK_STR(zlistx_last(errors), "policy bundle: too many errors; stopped after 1000");
    zlistx_destroy(&errors);
    free(text);
}

/* ------------------------------------------------------------ bundles */

TEST(test_version_hash_is_computed_as_documented)
{
    sbi_policy_t *policy =
        s_load_files(NULL, "b.yaml", S_DATASET, "a.yaml", "version: 1\n" S_RULE, NULL);
    CHECK(policy);
    if (!policy)
        return;
    crypto_generichash_state state;
    crypto_generichash_init(&state, NULL, 0, 32);
    const char *names[] = {"a.yaml", "b.yaml"};
    const char *texts[] = {"version: 1\n" S_RULE, S_DATASET};
    for (int i = 0; i < 2; i++) {
        uint8_t length[8] = {0};
        size_t len = strlen(texts[i]);
        length[6] = (uint8_t)(len >> 8);
        length[7] = (uint8_t)len;
        crypto_generichash_update(&state, (const uint8_t *)names[i], strlen(names[i]) + 1);
        crypto_generichash_update(&state, length, 8);
        crypto_generichash_update(&state, (const uint8_t *)texts[i], len);
    }
    uint8_t expected[32];
    crypto_generichash_final(&state, expected, 32);
    CHECK(memcmp(sbi_policy_version(policy), expected, 32) == 0);
    const Sharebus__PolicyBundle *bundle = sbi_policy_bundle(policy);
    CHECK_EQ(bundle->n_files, 2);
    CHECK_STR(bundle->files[0]->name, "a.yaml");
    CHECK(bundle->version.len == 32 && memcmp(bundle->version.data, expected, 32) == 0);
    sbi_policy_destroy(&policy);
}

TEST(test_bundle_round_trip_gives_the_same_version)
{
    sbi_policy_t *original = s_load_dir(POLICY_EXAMPLES, NULL);
    CHECK(original);
    if (!original)
        return;
    /* Through the wire, as agents receive it. */
    const Sharebus__PolicyBundle *bundle = sbi_policy_bundle(original);
    size_t size = sharebus__policy_bundle__get_packed_size(bundle);
    uint8_t *packed = malloc(size);
    sharebus__policy_bundle__pack(bundle, packed);
    Sharebus__PolicyBundle *unpacked = sharebus__policy_bundle__unpack(NULL, size, packed);
    CHECK(unpacked);
    zlistx_t *errors = s_error_list();
    sbi_policy_t *copy = unpacked ? sbi_policy_load_bundle(unpacked, NULL, errors) : NULL;
    CHECK(copy);
    CHECK_EQ(zlistx_size(errors), 0);
    if (copy) {
        CHECK(memcmp(sbi_policy_version(copy), sbi_policy_version(original), 32) == 0);
        CHECK_EQ(sbi_policy_rule_count(copy), sbi_policy_rule_count(original));
        CHECK_STR(sbi_policy_rule_at(copy, 0)->id, sbi_policy_rule_at(original, 0)->id);
    }
    zlistx_destroy(&errors);
    sbi_policy_destroy(&copy);
    sharebus__policy_bundle__free_unpacked(unpacked, NULL);
    free(packed);
    sbi_policy_destroy(&original);
}

TEST(test_bundle_with_bad_file_names_is_refused)
{
    const char *bad[] = {"../p.yaml", "dir/p.yaml", "p.txt", ".p.yaml", "", "yaml", "a\nb.yaml"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sbi_policy_t *policy = s_load_files(NULL, bad[i], S_DATASET, NULL);
        CHECK(!policy);
        char expected[256];
        snprintf(expected, sizeof expected,
                 "policy bundle: file name '%s' is not a plain *.yaml or *.yml name\n",
                 i == 6 ? "a?b.yaml" : bad[i]);
        CHECK_STR(s_out, expected);
    }
    CHECK(!s_load_files(NULL, "p.yaml", S_DATASET, "p.yaml", S_DATASET, NULL));
    CHECK_STR(s_out, "policy bundle: p.yaml appears twice\n");
    Sharebus__PolicyBundle empty = SHAREBUS__POLICY_BUNDLE__INIT;
    zlistx_t *errors = s_error_list();
    CHECK(!sbi_policy_load_bundle(&empty, NULL, errors));
    CHECK(!sbi_policy_load_bundle(NULL, NULL, errors));
    CHECK_EQ(zlistx_size(errors), 2);
    zlistx_destroy(&errors);
}

TEST(test_bundle_whose_version_does_not_match_is_refused)
{
    sbi_policy_t *policy = s_load_files(NULL, "p.yaml", S_DATASET S_RULE, NULL);
    CHECK(policy);
    if (!policy)
        return;
    Sharebus__PolicyBundle bundle = *sbi_policy_bundle(policy);
    uint8_t version[32];
    memcpy(version, bundle.version.data, 32);
    version[0] ^= 1;
    bundle.version.data = version;
    zlistx_t *errors = s_error_list();
    CHECK(!sbi_policy_load_bundle(&bundle, NULL, errors));
    s_collect(errors);
    CHECK_STR(s_out, "policy bundle: its version does not match its files\n");
    version[0] ^= 1;
    sbi_policy_t *copy = sbi_policy_load_bundle(&bundle, NULL, errors);
    CHECK(copy);
    sbi_policy_destroy(&copy);
    zlistx_destroy(&errors);
    sbi_policy_destroy(&policy);
}

TEST(test_examples_load_cleanly)
{
    sbi_policy_t *policy = s_load_dir(POLICY_EXAMPLES, NULL);
    CHECK_STR(s_out, "");
    CHECK(policy);
    if (!policy)
        return;
    const sbi_rule_t *rule = sbi_policy_rule(policy, "licence-renewal-uses-checkup");
    CHECK(rule && rule->n_fields == 5 && rule->consent_required && rule->rate_count == 50);
    CHECK(sbi_policy_dataset(policy, "health.fit-to-drive"));
    const sbi_topic_t *topic = sbi_policy_topic(policy, "resident.address-changed");
    CHECK(topic && topic->n_subscribers == 3);
    const char *providers[] = {"kidi", "kaia", "knpa"};
    for (size_t i = 0; i < 3; i++) {
        bool found = false;
        for (size_t d = 0; d < sbi_policy_dataset_count(policy); d++)
            found |= strcmp(sbi_policy_dataset_at(policy, d)->provider, providers[i]) == 0;
        CHECK(found);
    }
    sbi_policy_destroy(&policy);
}

/* ----------------------------------------------------------- deciding */

static sbi_policy_t *s_decider(void)
{
    sbi_policy_t *policy = s_load_files(NULL, "p.yaml",
                                        S_DATASET S_RULE "  - id: research\n"
                                                         "    consumer: koroad\n"
                                                         "    dataset: health.checkup\n"
                                                         "    purposes: [road-safety-research]\n"
                                                         "    fields: [blood_pressure]\n"
                                                         "    consent: none\n"
                                                         "    consent_by: []\n",
                                        NULL);
    CHECK(policy);
    return policy;
}

#define S_NOW s_ms("2026-11-26")

TEST(test_allowed_request_names_its_rule_and_fields)
{
    sbi_policy_t *policy = s_decider();
    if (!policy)
        return;
    sbi_decision_t d;
    const char *fields[] = {"vision_left", "exam_date", "vision_left"};
    CHECK_EQ(sbi_policy_decide(policy, "koroad", "health.checkup", "driver-licence-renewal", fields,
                               3, S_NOW, &d),
             SB_OK);
    CHECK_EQ(d.code, SB_OK);
    CHECK(d.rule && strcmp(d.rule->id, "renew") == 0 && d.rule->consent_required);
    CHECK_EQ(d.n_flow, 2);
    CHECK_STR(d.flow[0], "vision_left");
    CHECK_STR(d.flow[1], "exam_date");
    /* No fields asked: every field the rule allows. */
    CHECK_EQ(sbi_policy_decide(policy, "koroad", "health.checkup", "driver-licence-renewal", NULL,
                               0, S_NOW, &d),
             SB_OK);
    CHECK_EQ(d.n_flow, 3);
    CHECK_STR(d.flow[2], "vision_right");
    sbi_policy_destroy(&policy);
}

TEST(test_purpose_not_listed_is_denied_naming_the_allowed_purposes)
{
    sbi_policy_t *policy = s_decider();
    if (!policy)
        return;
    sbi_decision_t d;
    CHECK_EQ(sbi_policy_decide(policy, "koroad", "health.checkup", "marketing", NULL, 0, S_NOW, &d),
             SB_EDENIED);
    CHECK(!d.rule && d.n_flow == 0);
    CHECK_STR(d.reason, "purpose 'marketing' is not allowed for koroad on health.checkup "
                        "(allowed: driver-licence-renewal road-safety-research)");
    sbi_policy_destroy(&policy);
}

TEST(test_field_not_allowed_is_denied_naming_field_and_rule)
{
    sbi_policy_t *policy = s_decider();
    if (!policy)
        return;
    sbi_decision_t d;
    const char *fields[] = {"exam_date", "blood_pressure"};
    CHECK_EQ(sbi_policy_decide(policy, "koroad", "health.checkup", "driver-licence-renewal", fields,
                               2, S_NOW, &d),
             SB_EDENIED);
    CHECK_STR(d.reason, "field 'blood_pressure' is not allowed by rule 'renew'");
    CHECK(!d.rule && d.n_flow == 0);
    sbi_policy_destroy(&policy);
}

TEST(test_rule_outside_its_window_is_denied)
{
    sbi_policy_t *policy = s_decider();
    if (!policy)
        return;
    sbi_decision_t d;
    CHECK_EQ(sbi_policy_decide(policy, "koroad", "health.checkup", "driver-licence-renewal", NULL,
                               0, s_ms("2031-01-01"), &d),
             SB_EDENIED);
    CHECK_STR(d.reason, "rule 'renew' is not valid at this time (valid 2014-03-28..2030-12-31)");
    CHECK_EQ(sbi_policy_decide(policy, "koroad", "health.checkup", "driver-licence-renewal", NULL,
                               0, s_ms("2014-03-27T23:59:59Z"), &d),
             SB_EDENIED);
    /* Until is inclusive to the end of that day. */
    CHECK_EQ(sbi_policy_decide(policy, "koroad", "health.checkup", "driver-licence-renewal", NULL,
                               0, s_ms("2030-12-31T23:59:59Z"), &d),
             SB_OK);
    CHECK_EQ(sbi_policy_decide(policy, "koroad", "health.checkup", "driver-licence-renewal", NULL,
                               0, s_ms("2014-03-28"), &d),
             SB_OK);
    sbi_policy_destroy(&policy);
}

TEST(test_unknown_dataset_and_missing_rule_are_denied)
{
    sbi_policy_t *policy = s_decider();
    if (!policy)
        return;
    sbi_decision_t d;
    CHECK_EQ(sbi_policy_decide(policy, "koroad", "health.other", "driver-licence-renewal", NULL, 0,
                               S_NOW, &d),
             SB_ENODATASET);
    CHECK_STR(d.reason, "dataset 'health.other' is not declared");
    CHECK_EQ(sbi_policy_decide(policy, "nts", "health.checkup", "driver-licence-renewal", NULL, 0,
                               S_NOW, &d),
             SB_EDENIED);
    CHECK_STR(d.reason, "no rule lets nts obtain health.checkup");
    /* Hostile strings are just denied. */
    char longest[512];
    memset(longest, 'a', sizeof longest - 1);
    longest[sizeof longest - 1] = 0;
    CHECK_EQ(sbi_policy_decide(policy, longest, "health.checkup", "x", NULL, 0, S_NOW, &d),
             SB_EDENIED);
    CHECK_EQ(sbi_policy_decide(policy, NULL, NULL, NULL, NULL, 0, S_NOW, &d), SB_ENODATASET);
    const char *many[SBI_FIELDS_MAX + 1];
    for (size_t i = 0; i <= SBI_FIELDS_MAX; i++)
        many[i] = "exam_date";
    CHECK_EQ(sbi_policy_decide(policy, "koroad", "health.checkup", "driver-licence-renewal", many,
                               SBI_FIELDS_MAX + 1, S_NOW, &d),
             SB_EDENIED);
    CHECK_STR(d.reason, "more than 64 fields requested");
    sbi_policy_destroy(&policy);
}

TEST(test_consent_may_be_recorded_by_the_consumer_or_consent_by)
{
    sbi_policy_t *policy = s_load_dir(POLICY_EXAMPLES, NULL);
    if (!policy)
        return;
    const sbi_rule_t *fit = sbi_policy_rule(policy, "licence-renewal-fit-to-drive");
    const sbi_rule_t *checkup = sbi_policy_rule(policy, "licence-renewal-uses-checkup");
    CHECK(fit && checkup);
    if (fit && checkup) {
        CHECK(sbi_rule_consent_recorder(fit, "koroad"));
        CHECK(sbi_rule_consent_recorder(fit, "mois"));
        CHECK(!sbi_rule_consent_recorder(fit, "nhis"));
        CHECK(sbi_rule_consent_recorder(checkup, "koroad"));
        CHECK(!sbi_rule_consent_recorder(checkup, "mois"));
        CHECK(!sbi_rule_consent_recorder(checkup, NULL));
    }
    sbi_policy_destroy(&policy);
}

/* ----------------------------------------------------- trust store */

typedef struct {
    tmp_t tmp;
    sbi_keys_t root;
} trust_fixture_t;

/* A certificate for `agency`, valid from `from_ms` to `until_ms`, saved as
   NAME.cert. */
static void s_issue_valid(trust_fixture_t *f, const char *agency, const char *name,
                          uint64_t serial, uint64_t from_ms, uint64_t until_ms)
{
    sbi_keys_t keys;
    sbi_keys_generate(&keys, SBI_CERT_AGENCY);
    snprintf(keys.cert.agency, sizeof keys.cert.agency, "%s", agency);
    snprintf(keys.cert.name, sizeof keys.cert.name, "%s", agency);
    keys.cert.serial = serial;
    keys.cert.not_before_ms = from_ms;
    keys.cert.not_after_ms = until_ms;
    sbi_cert_sign(&keys.cert, f->root.sign_secret);
    char path[256];
    snprintf(path, sizeof path, "%s/%s.cert", f->tmp.path, name);
    CHECK_EQ(sbi_cert_save(&keys.cert, path), SB_OK);
    sbi_keys_wipe(&keys);
}

static void s_issue(trust_fixture_t *f, const char *agency)
{
    s_issue_valid(f, agency, agency, 1 + (uint64_t)agency[0], 0, 4102444800000ull);
}

static void s_root(trust_fixture_t *f)
{
    s_tmp(&f->tmp);
    sbi_keys_generate(&f->root, SBI_CERT_ROOT);
    strcpy(f->root.cert.agency, "root");
    strcpy(f->root.cert.name, "root");
    f->root.cert.not_after_ms = 4102444800000ull;
    sbi_cert_sign(&f->root.cert, f->root.sign_secret);
    char path[256];
    snprintf(path, sizeof path, "%s/root.cert", f->tmp.path);
    CHECK_EQ(sbi_cert_save(&f->root.cert, path), SB_OK);
}

static sbi_trust_t *s_trust(trust_fixture_t *f)
{
    char err[256];
    s_root(f);
    s_issue(f, "nhis");
    s_issue(f, "koroad");
    sbi_trust_t *trust = sbi_trust_new(f->tmp.path, err, sizeof err);
    CHECK(trust);
    sbi_keys_wipe(&f->root);
    return trust;
}

TEST(test_agency_without_certificate_is_reported_when_a_trust_store_is_given)
{
    trust_fixture_t f;
    sbi_trust_t *trust = s_trust(&f);
    if (!trust)
        return;
    sbi_policy_t *policy = s_load_files(trust, "p.yaml", S_DATASET S_RULE, NULL);
    CHECK_STR(s_out, "");
    CHECK(policy);
    sbi_policy_destroy(&policy);
    policy = s_load_files(trust, "p.yaml",
                          S_DATASET "topics:\n  t:\n    publisher: mois\n    subscribers:\n"
                                    "      - {agency: nts, fields: [a]}\n",
                          NULL);
    CHECK(!policy);
    CHECK_STR(s_out, "p.yaml:9:16: agency 'mois' has no certificate in the trust store\n"
                     "p.yaml:11:18: agency 'nts' has no certificate in the trust store\n");
    /* Without a trust store, any valid id goes. */
    policy = s_load_files(NULL, "p.yaml",
                          S_DATASET "topics:\n  t:\n    publisher: mois\n    subscribers:\n"
                                    "      - {agency: nts, fields: [a]}\n",
                          NULL);
    CHECK(policy);
    sbi_policy_destroy(&policy);
    sbi_trust_destroy(&trust);
    s_rmtmp(&f.tmp);
}

TEST(test_agency_whose_certificates_are_not_valid_now_is_reported)
{
    /* koroad's only certificate has expired, mois's is not valid yet; nts
       has a valid one besides a newer one that is not valid yet (a key
       rotation prepared ahead), which is enough. */
    trust_fixture_t f;
    s_root(&f);
    uint64_t now = sbi_now_ms() / 1000 * 1000, day = 86400000ull; /* saved in seconds */
    s_issue(&f, "nhis");
    s_issue_valid(&f, "koroad", "koroad", 10, now - 30 * day, now - day);
    s_issue_valid(&f, "mois", "mois", 11, now + day, now + 30 * day);
    s_issue_valid(&f, "nts", "nts", 12, now - day, now + 30 * day);
    s_issue_valid(&f, "nts", "nts-next", 13, now + day, now + 60 * day);
    char err[256];
    sbi_trust_t *trust = sbi_trust_new(f.tmp.path, err, sizeof err);
    sbi_keys_wipe(&f.root);
    CHECK(trust);
    if (!trust)
        return;
    sbi_policy_t *policy =
        s_load_files(trust, "p.yaml",
                     S_DATASET S_RULE "topics:\n  t:\n    publisher: mois\n    subscribers:\n"
                                      "      - {agency: nts, fields: [a]}\n",
                     NULL);
    CHECK(!policy);
    CHECK_STR(s_out, "p.yaml:9:15: agency 'koroad' has no certificate valid now in the trust "
                     "store (each has expired, or is not valid yet)\n"
                     "p.yaml:18:16: agency 'mois' has no certificate valid now in the trust "
                     "store (each has expired, or is not valid yet)\n");
    sbi_policy_destroy(&policy);
    sbi_trust_destroy(&trust);
    s_rmtmp(&f.tmp);
}

int main(int argc, char **argv)
{
    sbi_init();
    sbi_log_setup("test-policy", SBI_LOG_ERROR);
    return RUN_TESTS();
}
