/*  report.c - a citizen's access report: who obtained which of their data,
    from whom, when, for what, under which rule and consent; what was
    refused and why. A routed request and its answer (the reply, refusal or
    timeout whose correlation id is the request's message id) make one line;
    so do an event's publication for one subscriber and its delivery (or
    its withdrawal from the queue), which carry the same message id.
*/
#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* How far outside the period a request's answer (or an answer's request)
   is looked for. The broker answers every request it routes within its
   longest deadline, 60 s (protocol.md, "Deadlines and timeouts"), with a
   reply or a `timeout` record; the rest is room for a late sweep or a
   commit held up by a full store. */
#define S_ANSWER_MARGIN_MS (5 * 60000ull)

typedef struct {
    Sharebus__AuditRecord **records;
    size_t n;
    bool *used;
    uint64_t since_ms, until_ms; /* the period asked for; until_ms 0: open */
} s_history_t;

#define S_ALSO_MAX 3

typedef struct {
    const Sharebus__AuditRecord *record; /* what happened */
    const Sharebus__AuditRecord *answer; /* a request's answer, or NULL */
    uint64_t also[S_ALSO_MAX];           /* later records of that answer: a reply
                                            stopped is told to both agencies */
    size_t n_also;
} s_line_t;

typedef struct {
    char text[1536];
    size_t len;
} s_text_t;

/* What one line says, for both the plain and the JSON report. */
typedef struct {
    const char *event; /* "obtained", "refused", "asked", ... */
    s_text_t headline;
    char *const *fields;
    size_t n_fields;
    Sharebus__ErrorKind error;
    const char *reason;
} s_entry_t;

__attribute__((format(printf, 2, 3))) static void s_add(s_text_t *t, const char *fmt, ...)
{
    if (t->len >= sizeof t->text - 1)
        return;
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(t->text + t->len, sizeof t->text - t->len, fmt, args);
    va_end(args);
    t->len = n < 0 ? t->len : t->len + (size_t)n;
    if (t->len >= sizeof t->text)
        t->len = sizeof t->text - 1;
}

/* ------------------------------------------------------------ collecting */

/* Deep copy, since the query's record lives only during the callback. */
static int s_keep(const Sharebus__AuditRecord *record, void *arg)
{
    s_history_t *h = arg;
    size_t size = sharebus__audit_record__get_packed_size(record);
    uint8_t *bytes = malloc(size ? size : 1);
    assert(bytes);
    sharebus__audit_record__pack(record, bytes);
    Sharebus__AuditRecord *copy = sharebus__audit_record__unpack(NULL, size, bytes);
    free(bytes);
    if (!copy)
        return 1;
    h->records = realloc(h->records, (h->n + 1) * sizeof *h->records);
    assert(h->records);
    h->records[h->n++] = copy;
    return 0;
}

static void s_history_clear(s_history_t *h)
{
    for (size_t i = 0; i < h->n; i++)
        sharebus__audit_record__free_unpacked(h->records[i], NULL);
    free(h->records);
    free(h->used);
}

static bool s_same(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* Whether `r` answers `first`: a reply, refusal or timeout correlated to a
   routed request; a delivery or withdrawal of a published event. */
static bool s_answers(const Sharebus__AuditRecord *first, const Sharebus__AuditRecord *r)
{
    if (first->kind == SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_ROUTED)
        return (r->kind == SHAREBUS__AUDIT_KIND__AUDIT_REPLY_FORWARDED ||
                r->kind == SHAREBUS__AUDIT_KIND__AUDIT_REPLY_REFUSED ||
                r->kind == SHAREBUS__AUDIT_KIND__AUDIT_TIMEOUT) &&
               s_same(&r->correlation_id, &first->message_id);
    if (first->kind == SHAREBUS__AUDIT_KIND__AUDIT_EVENT_PUBLISHED)
        return (r->kind == SHAREBUS__AUDIT_KIND__AUDIT_EVENT_DELIVERED ||
                r->kind == SHAREBUS__AUDIT_KIND__AUDIT_EVENT_REFUSED) &&
               s_same(&r->message_id, &first->message_id) && strcmp(r->to, first->to) == 0;
    return false;
}

/* The line starting at record i, taking its answer (and the records that
   follow it about the same answer) out of the history. */
static s_line_t s_line(s_history_t *h, size_t i)
{
    s_line_t line = {h->records[i], NULL, {0}, 0};
    Sharebus__AuditKind kind = line.record->kind;
    if (line.record->message_id.len == 0 || (kind != SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_ROUTED &&
                                             kind != SHAREBUS__AUDIT_KIND__AUDIT_EVENT_PUBLISHED))
        return line;
    for (size_t j = i + 1; j < h->n && line.n_also < S_ALSO_MAX; j++) {
        const Sharebus__AuditRecord *r = h->records[j];
        if (kind == SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_ROUTED &&
            r->time_ms > line.record->time_ms + S_ANSWER_MARGIN_MS)
            break;      /* in order; a request's answers come within the margin
                           (an event's delivery may come days later) */
        if (h->used[j] || !s_answers(line.record, r))
            continue;
        h->used[j] = true;
        if (!line.answer)
            line.answer = r;
        else
            line.also[line.n_also++] = r->seq;
    }
    return line;
}

/* ------------------------------------------------------------ describing */

typedef struct {
    sbi_trust_t *trust;
    char a[256], b[256], d[256];
    s_text_t f;
} s_names_t;

static void s_fields(char *const *fields, size_t n, s_text_t *t)
{
    char clean[SBI_NAME_MAX + 1];
    t->len = 0;
    t->text[0] = 0;
    for (size_t i = 0; i < n; i++)
        s_add(t, "%s%s", i ? ", " : "", cli_clean(fields[i], clean, sizeof clean));
    if (n == 0)
        s_add(t, "fields not named");
}

static void s_say_error(s_entry_t *e, Sharebus__ErrorKind error, const char *reason)
{
    char clean[512];
    e->error = error;
    e->reason = reason;
    s_add(&e->headline, "%s", error ? sb_strerror(sbi_error_code(error)) : "refused");
    if (reason && *reason)
        s_add(&e->headline, " (%s)", cli_clean(reason, clean, sizeof clean));
}

/* A request and its answer: the consumer is the request's sender. */
static void s_describe_request(const s_line_t *l, s_names_t *n, s_entry_t *e)
{
    const Sharebus__AuditRecord *r = l->record, *a = l->answer;
    cli_agency(n->trust, r->from, n->a, sizeof n->a);
    cli_agency(n->trust, r->to, n->b, sizeof n->b);
    e->fields = r->fields_requested;
    e->n_fields = r->n_fields_requested;
    if (a && a->kind == SHAREBUS__AUDIT_KIND__AUDIT_REPLY_FORWARDED && a->n_fields_delivered) {
        e->fields = a->fields_delivered;
        e->n_fields = a->n_fields_delivered;
    }
    s_fields(e->fields, e->n_fields, &n->f);
    if (a && a->kind == SHAREBUS__AUDIT_KIND__AUDIT_REPLY_FORWARDED) {
        e->event = "obtained";
        s_add(&e->headline, "%s obtained %s (%s) from %s", n->a, n->d, n->f.text, n->b);
        return;
    }
    s_add(&e->headline, "%s asked %s for %s (%s): ", n->a, n->b, n->d, n->f.text);
    if (r->kind == SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED) {
        e->event = "refused";
        s_add(&e->headline, "refused, nothing was shared: ");
        s_say_error(e, r->error, r->reason);
    } else if (!a) {
        e->event = "asked";
        s_add(&e->headline, "passed on; no answer is on record");
    } else if (a->kind == SHAREBUS__AUDIT_KIND__AUDIT_TIMEOUT) {
        e->event = "no-answer";
        s_add(&e->headline, "no answer in time, nothing was shared");
    } else {
        e->event = "refused";
        s_add(&e->headline, "the answer was stopped, nothing was shared: ");
        s_say_error(e, a->error, a->reason);
    }
}

/* An event published for one subscriber, and what became of it. */
static void s_describe_event(const s_line_t *l, s_names_t *n, s_entry_t *e)
{
    const Sharebus__AuditRecord *r = l->record, *a = l->answer;
    bool delivered = a && a->kind == SHAREBUS__AUDIT_KIND__AUDIT_EVENT_DELIVERED;
    e->fields = delivered ? a->fields_delivered : r->fields_delivered;
    e->n_fields = delivered ? a->n_fields_delivered : r->n_fields_delivered;
    s_fields(e->fields, e->n_fields, &n->f);
    if (delivered) {
        e->event = "obtained";
        s_add(&e->headline, "%s received %s (%s) from %s", n->b, n->d, n->f.text, n->a);
        return;
    }
    s_add(&e->headline, "%s published %s about you for %s (%s): ", n->a, n->d, n->b, n->f.text);
    if (a) {
        e->event = "refused";
        s_add(&e->headline, "not delivered, nothing was shared: ");
        s_say_error(e, a->error, a->reason);
    } else {
        e->event = "published";
        s_add(&e->headline, "queued; no delivery is on record");
    }
}

static void s_describe_other(const Sharebus__AuditRecord *r, s_names_t *n, s_entry_t *e)
{
    char id[SBI_NAME_MAX + 1];
    cli_clean(r->consent_id, id, sizeof id);
    e->event = sbi_audit_kind_name(r->kind);
    e->fields = r->fields_delivered;
    e->n_fields = r->n_fields_delivered;
    s_fields(e->fields, e->n_fields, &n->f);
    switch (r->kind) {
    case SHAREBUS__AUDIT_KIND__AUDIT_REPLY_FORWARDED:
        e->event = "obtained";
        s_add(&e->headline, "%s obtained %s (%s) from %s", n->b, n->d, n->f.text, n->a);
        break;
    case SHAREBUS__AUDIT_KIND__AUDIT_CONSENT_GRANTED:
        s_add(&e->headline, "you gave consent %s for %s, recorded by %s", id, n->d, n->a);
        break;
    case SHAREBUS__AUDIT_KIND__AUDIT_CONSENT_REVOKED:
        s_add(&e->headline, "consent %s for %s was withdrawn, recorded by %s", id, n->d, n->a);
        break;
    case SHAREBUS__AUDIT_KIND__AUDIT_CONSENT_EXPIRED:
        s_add(&e->headline, "consent %s for %s expired", id, n->d);
        break;
    case SHAREBUS__AUDIT_KIND__AUDIT_EVENT_DELIVERED:
        e->event = "obtained";
        s_add(&e->headline, "%s received %s (%s) from %s", n->b, n->d, n->f.text, n->a);
        break;
    case SHAREBUS__AUDIT_KIND__AUDIT_MESSAGE_SENT:
    case SHAREBUS__AUDIT_KIND__AUDIT_MESSAGE_RECEIVED:
        s_add(&e->headline, "%s sent %s to %s", n->a, n->d, n->b);
        break;
    default:
        s_add(&e->headline, "%s: %s to %s about %s", sbi_audit_kind_name(r->kind), n->a, n->b,
              n->d);
        if (r->error) {
            e->event = "refused";
            s_add(&e->headline, ": refused, ");
            s_say_error(e, r->error, r->reason);
        }
    }
}

static void s_describe(const s_line_t *l, sbi_trust_t *trust, s_entry_t *e)
{
    s_names_t *n = calloc(1, sizeof *n);
    assert(n);
    n->trust = trust;
    memset(e, 0, sizeof *e);
    const Sharebus__AuditRecord *r = l->record;
    cli_clean(r->dataset, n->d, sizeof n->d);
    if (r->kind == SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_ROUTED ||
        r->kind == SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_REFUSED)
        s_describe_request(l, n, e);
    else {
        cli_agency(trust, r->from, n->a, sizeof n->a);
        cli_agency(trust, r->to, n->b, sizeof n->b);
        if (r->kind == SHAREBUS__AUDIT_KIND__AUDIT_EVENT_PUBLISHED)
            s_describe_event(l, n, e);
        else
            s_describe_other(r, n, e);
    }
    free(n);
}

/* ------------------------------------------------------------- printing */

static const char *s_either(const char *first, const char *second)
{
    return first && *first ? first : second && *second ? second : NULL;
}

static void s_print_line(const s_line_t *l, const s_entry_t *e)
{
    const Sharebus__AuditRecord *r = l->record, *a = l->answer;
    char when[32], clean[SBI_NAME_MAX + 1];
    time_t secs = (time_t)(r->time_ms / 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm) || !strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm))
        strcpy(when, "?");
    printf("%s  %s.\n", when, e->headline.text);
    s_text_t d = {.len = 0};
    const char *purpose = s_either(r->purpose, a ? a->purpose : NULL);
    const char *rule = s_either(r->rule_id, a ? a->rule_id : NULL);
    const char *consent = s_either(r->consent_id, a ? a->consent_id : NULL);
    if (purpose)
        s_add(&d, "purpose: %s; ", cli_clean(purpose, clean, sizeof clean));
    if (rule)
        s_add(&d, "rule: %s; ", cli_clean(rule, clean, sizeof clean));
    if (consent)
        s_add(&d, "consent: %s; ", cli_clean(consent, clean, sizeof clean));
    s_add(&d, "audit record%s %" PRIu64, a ? "s" : "", r->seq);
    for (size_t i = 0; a && i <= l->n_also; i++)
        s_add(&d, "%s%" PRIu64, i == l->n_also ? " and " : ", ", i ? l->also[i - 1] : a->seq);
    printf("%18s%s\n", "", d.text);
}

static void s_add_str(json_object *obj, const char *name, const char *value)
{
    json_object_object_add(obj, name, json_object_new_string(value ? value : ""));
}

static json_object *s_line_json(const s_line_t *l, const s_entry_t *e)
{
    const Sharebus__AuditRecord *r = l->record, *a = l->answer;
    char when[32];
    json_object *obj = json_object_new_object();
    s_add_str(obj, "time", sbi_time_format(r->time_ms, when, sizeof when));
    json_object_object_add(obj, "time_ms", json_object_new_uint64(r->time_ms));
    s_add_str(obj, "event", e->event);
    s_add_str(obj, "from", r->from);
    s_add_str(obj, "to", r->to);
    s_add_str(obj, "dataset", r->dataset);
    json_object *fields = json_object_new_array();
    for (size_t i = 0; i < e->n_fields; i++)
        json_object_array_add(fields, json_object_new_string(e->fields[i] ? e->fields[i] : ""));
    json_object_object_add(obj, "fields", fields);
    s_add_str(obj, "purpose", s_either(r->purpose, a ? a->purpose : NULL));
    s_add_str(obj, "rule_id", s_either(r->rule_id, a ? a->rule_id : NULL));
    s_add_str(obj, "consent_id", s_either(r->consent_id, a ? a->consent_id : NULL));
    s_add_str(obj, "error", e->error ? sb_errname(sbi_error_code(e->error)) : "");
    s_add_str(obj, "reason", e->reason);
    s_add_str(obj, "text", e->headline.text);
    json_object *seqs = json_object_new_array();
    json_object_array_add(seqs, json_object_new_uint64(r->seq));
    if (a)
        json_object_array_add(seqs, json_object_new_uint64(a->seq));
    for (size_t i = 0; i < l->n_also; i++)
        json_object_array_add(seqs, json_object_new_uint64(l->also[i]));
    json_object_object_add(obj, "seqs", seqs);
    return obj;
}

/* A line belongs to the period by its first record: a request with its
   answer, wherever the answer falls. */
static bool s_in_period(const s_history_t *h, const s_line_t *line)
{
    uint64_t t = line->record->time_ms;
    return t >= h->since_ms && (h->until_ms == 0 || t < h->until_ms);
}

/* The lines of the period, each record taken once; NULL-terminated. */
static s_line_t *s_lines(s_history_t *h, size_t *records_p)
{
    s_line_t *lines = calloc(h->n + 1, sizeof *lines);
    assert(lines);
    size_t n = 0;
    *records_p = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (h->used[i])
            continue;
        s_line_t line = s_line(h, i);
        if (!s_in_period(h, &line))
            continue;
        lines[n++] = line;
        *records_p += 1 + (line.answer ? 1 : 0) + line.n_also;
    }
    return lines;
}

static void s_print(cli_args_t *args, s_history_t *h, sbi_trust_t *trust)
{
    char ref[2 * SBI_HASH_SIZE + 1];
    sbi_hex(args->subject_ref, SBI_HASH_SIZE, ref);
    size_t records;
    s_line_t *lines = s_lines(h, &records);
    json_object *root = NULL, *entries = NULL;
    if (args->json) {
        root = json_object_new_object();
        entries = json_object_new_array();
        s_add_str(root, "subject_ref", ref);
        json_object_object_add(root, "records", json_object_new_uint64(records));
    } else {
        printf("Access report for the person with subject reference %.16s...\n", ref);
        printf("%zu audit record(s) in %s/store; times are UTC.\n\n", records, args->data);
        if (records == 0)
            printf("Nothing on record: no agency asked for or received data about this person "
                   "through the bus.\n");
    }
    for (s_line_t *line = lines; line->record; line++) {
        s_entry_t entry;
        s_describe(line, trust, &entry);
        if (entries)
            json_object_array_add(entries, s_line_json(line, &entry));
        else
            s_print_line(line, &entry);
    }
    free(lines);
    if (root) {
        json_object_object_add(root, "entries", entries);
        puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
        json_object_put(root);
    }
}

int cli_report(cli_args_t *args)
{
    if (!args->filter.subject_ref) {
        fprintf(stderr, "sharebus-audit: report needs --subject ID --subject-key FILE\n");
        return 2;
    }
    sbi_trust_t *trust = NULL;
    char err[4200];
    if (args->certs && !(trust = sbi_trust_new(args->certs, err, sizeof err))) {
        fprintf(stderr, "sharebus-audit: %s\n", err);
        return 1;
    }
    sbi_store_t *store;
    sbi_audit_t *audit = cli_open(args, &store);
    if (!audit) {
        sbi_trust_destroy(&trust);
        return 1;
    }
    /* Read beyond the period on both sides, so that a request near its
       edge is told with its answer (s_print keeps the period's lines). */
    s_history_t h = {NULL, 0, NULL, args->filter.since_ms, args->filter.until_ms};
    sbi_audit_filter_t filter = {.subject_ref = args->filter.subject_ref};
    if (h.since_ms > S_ANSWER_MARGIN_MS)
        filter.since_ms = h.since_ms - S_ANSWER_MARGIN_MS;
    if (h.until_ms)
        filter.until_ms = h.until_ms + S_ANSWER_MARGIN_MS;
    int rc = sbi_audit_query(audit, &filter, s_keep, &h);
    sbi_audit_close(&audit);
    sbi_store_close(&store);
    h.used = calloc(h.n + 1, sizeof *h.used);
    assert(h.used);
    if (rc == SB_OK || rc == SB_EMALFORMED)
        s_print(args, &h, trust);
    if (rc == SB_EMALFORMED)
        fprintf(stderr, "sharebus-audit: some records are damaged and were left out; run "
                        "sharebus-audit verify\n");
    else if (rc != SB_OK)
        fprintf(stderr, "sharebus-audit: cannot read the log: %s\n", sb_strerror(rc));
    s_history_clear(&h);
    sbi_trust_destroy(&trust);
    return rc == SB_OK ? 0 : 1;
}
