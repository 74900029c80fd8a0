/*  sharebus - the command-line client, built only on libsharebus, so that
    administrators, scripts and tests use the same path as a back-end.

    sharebus request --agent EP --provider ID --dataset D --purpose P [--subject ID]
                     [--fields a,b] [--timeout MS]
    sharebus serve   --agent EP --dataset D --records FILE [--delay MS]
    sharebus consent grant|revoke|list --agent EP ...
    sharebus publish --agent EP --topic T --subject ID --record FILE|-
    sharebus subscribe --agent EP --topic T [--count N]
*/
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <czmq.h>

#include "sharebus.h"

typedef struct {
    const char *agent;
    const char *provider;
    const char *dataset;
    const char *purpose;
    const char *subject;
    const char *fields;
    const char *records;
    const char *consumer;
    const char *until;
    const char *evidence;
    const char *id;
    const char *reason;
    bool json;
    const char *topic;
    const char *record;
    long count;
    int timeout_ms;
    int delay_ms;
    char **rest;              /* arguments after the command */
    int n_rest;
} args_t;

typedef struct {
    const char *name;
    int (*fn)(args_t *args);
    const char *usage;
} command_t;

static int s_error(sb_client_t *client, int code)
{
    const char *reason = client ? sb_client_reason(client) : "";
    if (*reason)
        fprintf(stderr, "error: %s\n", reason);
    else
        fprintf(stderr, "error: %s: %s\n", sb_errname(code), sb_strerror(code));
    return 1;
}

static sb_client_t *s_connect(const char *endpoint)
{
    sb_client_t *client = sb_client_new(endpoint);
    if (!client)
        fprintf(stderr, "error: invalid: cannot use agent endpoint '%s' (ipc:// or tcp://)\n",
                endpoint);
    return client;
}

/* "a,b,c" into a NULL-terminated array in `buf` (modified in place). */
static size_t s_split(char *buf, const char **items, size_t max)
{
    size_t n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok && n < max;
         tok = strtok_r(NULL, ",", &save))
        items[n++] = tok;
    return n;
}

static int cmd_request(args_t *a)
{
    if (!a->provider || !a->dataset || !a->purpose) {
        fprintf(stderr, "usage: sharebus request --agent EP --provider ID --dataset D "
                        "--purpose P [--subject ID] [--fields a,b] [--timeout MS]\n");
        return 2;
    }
    char fields_buf[64 * 130] = "";    /* 64 names of up to 128 bytes, and commas */
    const char *fields[65];
    if (a->fields && strlen(a->fields) >= sizeof fields_buf) {
        fprintf(stderr, "error: invalid: --fields is longer than 64 field names can be\n");
        return 2;
    }
    snprintf(fields_buf, sizeof fields_buf, "%s", a->fields ? a->fields : "");
    size_t n_fields = s_split(fields_buf, fields, 65);
    if (n_fields > 64) {
        fprintf(stderr, "error: invalid: at most 64 fields in one request\n");
        return 2;
    }
    sb_request_t request = {
        .provider = a->provider, .dataset = a->dataset, .purpose = a->purpose,
        .subject = a->subject, .fields = fields,
        .n_fields = n_fields, .timeout_ms = a->timeout_ms,
    };
    sb_client_t *client = s_connect(a->agent);
    if (!client)
        return 1;
    sb_record_t *record = NULL;
    int rc = sb_request(client, &request, &record);
    if (rc == SB_OK) {
        char *json = sb_record_to_json(record);
        puts(json);
        free(json);
    }
    else
        s_error(client, rc);
    sb_record_destroy(&record);
    sb_client_destroy(&client);
    return rc == SB_OK ? 0 : 1;
}

/* Subject ids compare without spaces and dashes, case-insensitively. */
static void s_normalise(const char *id, char *out, size_t size)
{
    size_t n = 0;
    for (; *id && n + 1 < size; id++)
        if (*id != '-' && !isspace((unsigned char) *id))
            out[n++] = (char) toupper((unsigned char) *id);
    out[n] = 0;
}

typedef struct {
    json_object *records;
    int delay_ms;           /* before each answer */
} s_serve_t;

static int s_serve_one(const sb_incoming_t *request, sb_record_t *reply, void *arg)
{
    const s_serve_t *serve = arg;
    json_object *records = serve->records;
    char wanted[128], key_norm[128];
    if (serve->delay_ms)
        zclock_sleep(serve->delay_ms);
    s_normalise(sb_incoming_subject(request), wanted, sizeof wanted);
    json_object_object_foreach(records, key, value) {
        s_normalise(key, key_norm, sizeof key_norm);
        if (strcmp(key_norm, wanted) != 0)
            continue;
        sb_record_t *found = sb_record_from_json(json_object_to_json_string(value));
        if (!found)
            return SB_EINTERNAL;
        for (size_t i = 0; i < sb_incoming_field_count(request); i++) {
            const char *name = sb_incoming_field(request, i), *text;
            int64_t integer;
            double real;
            bool flag;
            if (sb_record_text(found, name, &text) == SB_OK)
                sb_record_set_text(reply, name, text);
            else if (sb_record_integer(found, name, &integer) == SB_OK)
                sb_record_set_integer(reply, name, integer);
            else if (sb_record_real(found, name, &real) == SB_OK)
                sb_record_set_real(reply, name, real);
            else if (sb_record_flag(found, name, &flag) == SB_OK)
                sb_record_set_flag(reply, name, flag);
        }
        sb_record_destroy(&found);
        fprintf(stderr, "sharebus serve: answered %s for %s (%s)\n", sb_incoming_dataset(request),
                sb_incoming_consumer(request), sb_incoming_purpose(request));
        return SB_OK;
    }
    fprintf(stderr, "sharebus serve: no record for the subject asked by %s\n",
            sb_incoming_consumer(request));
    return SB_ENOTFOUND;
}

static int cmd_serve(args_t *a)
{
    if (!a->dataset || !a->records) {
        fprintf(stderr, "usage: sharebus serve --agent EP --dataset D --records FILE "
                        "[--delay MS]\n");
        return 2;
    }
    if (access(a->records, R_OK) != 0) {
        fprintf(stderr, "error: invalid: %s: %s\n", a->records, strerror(errno));
        return 1;
    }
    json_object *records = json_object_from_file(a->records);
    if (!records || !json_object_is_type(records, json_type_object)) {
        fprintf(stderr, "error: invalid: %s: not a JSON object of records keyed by subject id\n",
                a->records);
        json_object_put(records);
        return 1;
    }
    sb_client_t *client = s_connect(a->agent);
    if (!client) {
        json_object_put(records);
        return 1;
    }
    int rc = sb_client_serve(client, a->dataset);
    if (rc == SB_OK) {
        fprintf(stderr, "sharebus serve: serving %s (%d records)\n", a->dataset,
                json_object_object_length(records));
        s_serve_t serve = {records, a->delay_ms};
        rc = sb_client_run(client, s_serve_one, &serve);
    }
    if (rc != SB_OK)
        s_error(client, rc);
    sb_client_destroy(&client);
    json_object_put(records);
    return rc == SB_OK ? 0 : 1;
}

/* ---------------------------------------------------------------- consent */

static int consent_grant(args_t *a, sb_client_t *client)
{
    uint64_t until = 0;
    if (!a->subject || !a->consumer || !a->dataset || !a->purpose || !a->until) {
        fprintf(stderr, "usage: sharebus consent grant --agent EP --subject ID --consumer C "
                        "--dataset D --purpose P --until DATE [--evidence TEXT]\n");
        return 2;
    }
    struct tm tm = {0};
    const char *end = strptime(a->until, "%Y-%m-%d", &tm);
    bool whole_day = end && !*end;
    if (end && *end == 'T')
        end = strptime(end, "T%H:%M:%SZ", &tm);
    if (!end || *end) {
        fprintf(stderr, "error: invalid: --until %s: expected YYYY-MM-DD or "
                        "YYYY-MM-DDTHH:MM:SSZ\n", a->until);
        return 2;
    }
    /* strptime takes 2027-02-31 and timegm moves it into March: refuse a
       time that does not come back as written. */
    struct tm written = tm, back;
    time_t seconds = timegm(&tm);
    if (!gmtime_r(&seconds, &back) || back.tm_year != written.tm_year
        || back.tm_mon != written.tm_mon || back.tm_mday != written.tm_mday
        || back.tm_hour != written.tm_hour || back.tm_min != written.tm_min
        || back.tm_sec != written.tm_sec) {
        fprintf(stderr, "error: invalid: --until %s: no such date or time\n", a->until);
        return 2;
    }
    /* A date means through the whole of that day, UTC. */
    until = (uint64_t) seconds * 1000 + (whole_day ? 86400000 - 1 : 0);
    sb_consent_t consent = {a->subject, a->consumer, a->dataset, a->purpose, until, a->evidence};
    char id[SB_CONSENT_ID_SIZE];
    int rc = sb_consent_grant(client, &consent, id);
    if (rc != SB_OK)
        return s_error(client, rc);
    puts(id);
    return 0;
}

static int consent_revoke(args_t *a, sb_client_t *client)
{
    int rc;
    size_t count = 1;
    if (a->id)
        rc = sb_consent_revoke(client, a->id, a->reason);
    else if (a->subject) {
        sb_consent_t match = {a->subject, a->consumer, a->dataset, a->purpose, 0, NULL};
        rc = sb_consent_revoke_matching(client, &match, a->reason, &count);
    }
    else {
        fprintf(stderr, "usage: sharebus consent revoke --agent EP (--id CID | --subject ID "
                        "[--consumer C] [--dataset D] [--purpose P]) [--reason TEXT]\n");
        return 2;
    }
    if (rc != SB_OK)
        return s_error(client, rc);
    printf("revoked %zu consent(s)\n", count);
    return 0;
}

static int consent_list(args_t *a, sb_client_t *client)
{
    if (!a->subject) {
        fprintf(stderr, "usage: sharebus consent list --agent EP --subject ID [--json]\n");
        return 2;
    }
    char *json = NULL;
    int rc = sb_consent_list(client, a->subject, &json);
    if (rc != SB_OK)
        return s_error(client, rc);
    json_object *list = json_tokener_parse(json);
    if (a->json)
        puts(json);
    else {
        printf("%-32s %-8s %-8s %-30s %-26s %-10s %s\n", "ID", "STATE", "CONSUMER", "DATASET",
               "PURPOSE", "UNTIL", "HISTORY");
        for (size_t i = 0; i < json_object_array_length(list); i++) {
            json_object *c = json_object_array_get_idx(list, i), *v, *history;
#define S(key) (json_object_object_get_ex(c, key, &v) ? json_object_get_string(v) : "")
            printf("%-32s %-8s %-8s %-30s %-26s %.10s ", S("id"), S("state"), S("consumer"),
                   S("dataset"), S("purpose"), S("until"));
            json_object_object_get_ex(c, "history", &history);
            for (size_t j = 0; j < json_object_array_length(history); j++) {
                json_object *e = json_object_array_get_idx(history, j), *f, *t, *b;
                json_object_object_get_ex(e, "state", &f);
                json_object_object_get_ex(e, "time", &t);
                json_object_object_get_ex(e, "by", &b);
                printf("%s%s %s by %s", j ? "; " : "", json_object_get_string(f),
                       json_object_get_string(t), json_object_get_string(b));
            }
#undef S
            printf("\n");
        }
    }
    json_object_put(list);
    free(json);
    return 0;
}

static int cmd_consent(args_t *a)
{
    static const struct {
        const char *name;
        int (*fn)(args_t *, sb_client_t *);
    } actions[] = {{"grant", consent_grant}, {"revoke", consent_revoke}, {"list", consent_list}};
    const char *action = a->n_rest == 1 ? a->rest[0] : NULL;
    for (size_t i = 0; action && i < sizeof actions / sizeof actions[0]; i++)
        if (strcmp(actions[i].name, action) == 0) {
            sb_client_t *client = s_connect(a->agent);
            int rc = client ? actions[i].fn(a, client) : 1;
            sb_client_destroy(&client);
            return rc;
        }
    fprintf(stderr, "usage: sharebus consent (grant|revoke|list) --agent EP ...\n");
    return 2;
}

/* ----------------------------------------------------------------- events */

#define S_RECORD_MAX (1 << 20) /* bytes of JSON in one event's record */

static int cmd_publish(args_t *a)
{
    if (!a->topic || !a->subject || !a->record) {
        fprintf(stderr, "usage: sharebus publish --agent EP --topic T --subject ID --record FILE|-\n");
        return 2;
    }
    FILE *in = strcmp(a->record, "-") == 0 ? stdin : fopen(a->record, "r");
    if (!in) {
        fprintf(stderr, "error: invalid: %s: %s\n", a->record, strerror(errno));
        return 1;
    }
    /* One byte more than the limit tells a record that is too big. */
    char *text = malloc(S_RECORD_MAX + 2);
    size_t size = text ? fread(text, 1, S_RECORD_MAX + 1, in) : 0;
    bool failed = !text || ferror(in);
    if (in != stdin)
        fclose(in);
    if (failed || size > S_RECORD_MAX) {
        if (failed)
            fprintf(stderr, "error: invalid: %s: %s\n", a->record,
                    text ? strerror(errno) : "out of memory");
        else
            fprintf(stderr, "error: too-big: %s: a record is at most 1 MiB of JSON\n", a->record);
        free(text);
        return 1;
    }
    text[size] = 0;
    sb_record_t *record = sb_record_from_json(text);
    free(text);
    if (!record) {
        fprintf(stderr, "error: invalid: %s: not a JSON object of fields\n", a->record);
        return 1;
    }
    sb_client_t *client = s_connect(a->agent);
    int rc = client ? sb_publish(client, a->topic, a->subject, record) : SB_EINVAL;
    if (rc == SB_OK)
        printf("published %s\n", a->topic);
    else if (client)
        s_error(client, rc);
    sb_record_destroy(&record);
    sb_client_destroy(&client);
    return rc == SB_OK ? 0 : 1;
}

static int cmd_subscribe(args_t *a)
{
    if (!a->topic) {
        fprintf(stderr, "usage: sharebus subscribe --agent EP --topic T [--count N]\n");
        return 2;
    }
    sb_client_t *client = s_connect(a->agent);
    if (!client)
        return 1;
    int rc = sb_subscribe(client, a->topic);
    long seen = 0;
    while (rc == SB_OK && !zsys_interrupted && (a->count == 0 || seen < a->count)) {
        sb_event_t *event = NULL;
        rc = sb_event_recv(client, &event, 500);
        if (rc == SB_ETIMEOUT) {
            rc = SB_OK;
            continue;
        }
        if (rc != SB_OK)
            break;
        char *record = sb_record_to_json(sb_event_record(event));
        json_object *line = json_object_new_object();
        json_object_object_add(line, "topic", json_object_new_string(sb_event_topic(event)));
        json_object_object_add(line, "publisher", json_object_new_string(sb_event_publisher(event)));
        json_object_object_add(line, "subject", json_object_new_string(sb_event_subject(event)));
        json_object_object_add(line, "id", json_object_new_string(sb_event_id(event)));
        json_object_object_add(line, "published_ms", json_object_new_uint64(sb_event_time(event)));
        json_object_object_add(line, "record", json_tokener_parse(record));
        /* Acknowledged only once written out: an event that could not be
           (to a full disk, say) stays queued for the next run. */
        bool written = printf("%s\n", json_object_to_json_string_ext(line, JSON_C_TO_STRING_PLAIN))
                           >= 0
                       && fflush(stdout) == 0;
        int write_errno = errno;
        json_object_put(line);
        free(record);
        if (!written) {
            fprintf(stderr, "error: cannot write event %s to standard output (%s): not "
                            "acknowledged\n", sb_event_id(event), strerror(write_errno));
            sb_event_destroy(&event);
            sb_client_destroy(&client);
            return 1;
        }
        rc = sb_event_ack(client, &event);     /* printed and flushed: handled */
        seen++;
    }
    if (rc != SB_OK && !zsys_interrupted)
        s_error(client, rc);
    sb_client_destroy(&client);
    return rc == SB_OK || zsys_interrupted ? 0 : 1;
}

static const command_t s_commands[] = {
    {"request", cmd_request,
     "request --agent EP --provider ID --dataset D --purpose P [--subject ID] "
     "[--fields a,b] [--timeout MS]"},
    {"serve", cmd_serve, "serve --agent EP --dataset D --records FILE [--delay MS]"},
    {"consent", cmd_consent,
     "consent grant --agent EP --subject ID --consumer C --dataset D --purpose P "
     "--until DATE [--evidence TEXT]\n"
     "       sharebus consent revoke --agent EP (--id CID | --subject ID [--consumer C] "
     "[--dataset D] [--purpose P]) [--reason TEXT]\n"
     "       sharebus consent list --agent EP --subject ID [--json]"},
    {"publish", cmd_publish, "publish --agent EP --topic T --subject ID --record FILE|-"},
    {"subscribe", cmd_subscribe, "subscribe --agent EP --topic T [--count N]"},
};
#define S_NCOMMANDS (sizeof s_commands / sizeof s_commands[0])

static int s_usage(FILE *out, int status)
{
    fprintf(out, "usage: sharebus COMMAND --agent ENDPOINT [OPTIONS]\n");
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        fprintf(out, "       sharebus %s\n", s_commands[i].usage);
    fprintf(out, "See sharebus(1).\n");
    return status;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"agent", required_argument, 0, 'A'},   {"provider", required_argument, 0, 'p'},
        {"dataset", required_argument, 0, 'd'}, {"purpose", required_argument, 0, 'P'},
        {"subject", required_argument, 0, 's'}, {"fields", required_argument, 0, 'f'},
        {"timeout", required_argument, 0, 't'}, {"records", required_argument, 0, 'r'},
        {"consumer", required_argument, 0, 'c'}, {"until", required_argument, 0, 'u'},
        {"evidence", required_argument, 0, 'e'}, {"id", required_argument, 0, 'i'},
        {"reason", required_argument, 0, 'R'},  {"json", no_argument, 0, 'j'},
        {"topic", required_argument, 0, 'T'},   {"record", required_argument, 0, 'X'},
        {"count", required_argument, 0, 'n'},   {"delay", required_argument, 0, 'D'},
        {"help", no_argument, 0, 'h'},          {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    args_t args = {0};
    int opt;
    char *end;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'A': args.agent = optarg; break;
        case 'p': args.provider = optarg; break;
        case 'd': args.dataset = optarg; break;
        case 'P': args.purpose = optarg; break;
        case 's': args.subject = optarg; break;
        case 'f': args.fields = optarg; break;
        case 'r': args.records = optarg; break;
        case 'c': args.consumer = optarg; break;
        case 'u': args.until = optarg; break;
        case 'e': args.evidence = optarg; break;
        case 'i': args.id = optarg; break;
        case 'R': args.reason = optarg; break;
        case 'j': args.json = true; break;
        case 'T': args.topic = optarg; break;
        case 'X': args.record = optarg; break;
        case 'n':
            args.count = strtol(optarg, &end, 10);
            if (*end || args.count <= 0) {
                fprintf(stderr, "sharebus: --count needs a number > 0\n");
                return 2;
            }
            break;
        case 't': {
            long ms = strtol(optarg, &end, 10);
            if (*end || ms <= 0 || ms > 60000) {
                fprintf(stderr, "sharebus: --timeout needs milliseconds from 1 to 60000\n");
                return 2;
            }
            args.timeout_ms = (int) ms;
            break;
        }
        case 'D': {
            long ms = strtol(optarg, &end, 10);
            if (*end || !*optarg || ms < 0 || ms > 60000) {
                fprintf(stderr, "sharebus: --delay needs milliseconds from 0 to 60000\n");
                return 2;
            }
            args.delay_ms = (int) ms;
            break;
        }
        case 'h': return s_usage(stdout, 0);
        case 'V': puts("sharebus " SHAREBUS_VERSION); return 0;
        default: return s_usage(stderr, 2);
        }
    }
    if (optind >= argc)
        return s_usage(stderr, 2);
    const char *name = argv[optind++];
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        if (strcmp(s_commands[i].name, name) == 0) {
            args.rest = argv + optind;
            args.n_rest = argc - optind;
            bool takes_action = s_commands[i].fn == cmd_consent;
            if ((!takes_action && optind < argc) || !args.agent) {
                fprintf(stderr, "usage: sharebus %s\n", s_commands[i].usage);
                return 2;
            }
            return s_commands[i].fn(&args);
        }
    fprintf(stderr, "sharebus: unknown command '%s'\n", name);
    return s_usage(stderr, 2);
}
