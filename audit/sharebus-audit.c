/*  sharebus-audit - the auditors' tool: read, verify and export the log.

    sharebus-audit query      --data DDIR [filters] [--limit N] [--json]
    sharebus-audit verify     --data DDIR [--certs DIR] [--checkpoint FILE ...] [--json]
    sharebus-audit checkpoint --data DDIR [--out FILE] [--all]
    sharebus-audit report     --data DDIR --subject -|ID --subject-key FILE [--certs DIR]
                              [--since T] [--until T] [--json]
    sharebus-audit export     --data DDIR [filters] [--format jsonl|csv]
    sharebus-audit reindex    --data DDIR

    Filters: --agency A --subject -|ID --subject-key FILE --dataset D
             --purpose P --kind K --since T --until T
    --subject - reads the national id from standard input (one line), so
    that it is not on the command line for other users to read.
    The store is opened read-only, safe while the broker or agent runs;
    except by reindex, which rebuilds the indexes from the log.
*/
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct {
    const char *name;
    int (*fn)(cli_args_t *args);
    const char *options; /* the long options it takes, each followed by a space */
    const char *usage;
} command_t;

#define S_FILTERS "agency subject subject-key dataset purpose kind since until "

/* The audit log of DDIR/store, opened with `flags` (sbi_store_open's). */
static sbi_audit_t *s_open(const cli_args_t *args, unsigned flags, sbi_store_t **store_p)
{
    char path[4096], err[4200];
    *store_p = NULL;
    if (snprintf(path, sizeof path, "%s/store", args->data) >= (int)sizeof path) {
        fprintf(stderr, "sharebus-audit: --data: path too long\n");
        return NULL;
    }
    *store_p = sbi_store_open(path, flags, 0, 0, SBI_AUDIT_DBS, err, sizeof err);
    if (!*store_p) {
        fprintf(stderr, "sharebus-audit: %s\n", err);
        return NULL;
    }
    sbi_audit_t *audit = sbi_audit_open(*store_p, err, sizeof err);
    if (!audit) {
        fprintf(stderr, "sharebus-audit: %s: %s\n", path, err);
        sbi_store_close(store_p);
    }
    return audit;
}

sbi_audit_t *cli_open(const cli_args_t *args, sbi_store_t **store_p)
{
    /* One subject's records are a few pages scattered over the whole log:
       read without read-ahead, which would read megabytes around each. */
    return s_open(args, SBI_STORE_READONLY | (args->filter.subject_ref ? SBI_STORE_RANDOM : 0),
                  store_p);
}

static void s_close(sbi_audit_t **audit_p, sbi_store_t **store_p)
{
    sbi_audit_close(audit_p);
    sbi_store_close(store_p);
}

const char *cli_clean(const char *text, char *buf, size_t size)
{
    if (!text || !*text)
        return "-";
    size_t n = 0;
    for (; text[n] && n + 1 < size; n++)
        buf[n] = (unsigned char)text[n] < 0x20 || text[n] == 0x7f ? '?' : text[n];
    buf[n] = 0;
    return buf;
}

const char *cli_agency(sbi_trust_t *trust, const char *agency, char *buf, size_t size)
{
    char clean[SBI_NAME_MAX + 1], name[SBI_NAME_MAX + 1];
    cli_clean(agency, clean, sizeof clean);
    const sbi_cert_t *cert = trust && agency ? sbi_trust_find(trust, agency) : NULL;
    if (cert && strcmp(cert->name, agency) != 0)
        snprintf(buf, size, "%s (%s)", clean, cli_clean(cert->name, name, sizeof name));
    else
        snprintf(buf, size, "%s", clean);
    return buf;
}

static int s_query_failed(int rc)
{
    if (rc == SB_EMALFORMED)
        fprintf(stderr, "sharebus-audit: some records are damaged and were skipped; "
                        "run sharebus-audit verify\n");
    else
        fprintf(stderr, "sharebus-audit: cannot read the log: %s\n", sb_strerror(rc));
    return 1;
}

/* ---------------------------------------------------------------- query */

static const char *s_outcome(const Sharebus__AuditRecord *r)
{
    if (r->error)
        return sb_errname(sbi_error_code(r->error));
    switch (r->decision) {
    case SHAREBUS__DECISION__DECISION_ALLOW: return "allow";
    case SHAREBUS__DECISION__DECISION_DENY: return "deny";
    default: return "-";
    }
}

static int s_print_row(const Sharebus__AuditRecord *r, void *arg)
{
    size_t *count = arg;
    char when[32], from[64], to[64], dataset[160], purpose[160], rule[160], consent[160],
        route[140];
    snprintf(route, sizeof route, "%s>%s", cli_clean(r->from, from, sizeof from),
             cli_clean(r->to, to, sizeof to));
    printf("%8" PRIu64 "  %-20s  %-18s  %-20s  %-30s  %-24s  %-10s  %-28s  %s\n", r->seq,
           sbi_time_format(r->time_ms, when, sizeof when), sbi_audit_kind_name(r->kind), route,
           cli_clean(r->dataset, dataset, sizeof dataset),
           cli_clean(r->purpose, purpose, sizeof purpose), s_outcome(r),
           cli_clean(r->rule_id, rule, sizeof rule),
           cli_clean(r->consent_id, consent, sizeof consent));
    (*count)++;
    return 0;
}

static int s_print_json(const Sharebus__AuditRecord *r, const uint8_t hash[SBI_HASH_SIZE],
                        void *arg)
{
    size_t *count = arg;
    json_object *obj = sbi_audit_record_json(r, hash);
    puts(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN));
    json_object_put(obj);
    (*count)++;
    return 0;
}

static int cmd_query(cli_args_t *args)
{
    sbi_store_t *store;
    sbi_audit_t *audit = cli_open(args, &store);
    if (!audit)
        return 1;
    size_t count = 0;
    int rc;
    if (args->json)
        rc = sbi_audit_query_entries(audit, &args->filter, s_print_json, &count);
    else {
        printf("%8s  %-20s  %-18s  %-20s  %-30s  %-24s  %-10s  %-28s  %s\n", "SEQ", "TIME", "KIND",
               "FROM>TO", "DATASET", "PURPOSE", "DECISION", "RULE", "CONSENT");
        rc = sbi_audit_query(audit, &args->filter, s_print_row, &count);
    }
    s_close(&audit, &store);
    if (rc != SB_OK)
        return s_query_failed(rc);
    if (!args->json)
        fprintf(stderr, "%zu record(s)\n", count);
    return 0;
}

/* --------------------------------------------------------------- export */

static const char *s_columns[] = {"seq",
                                  "time",
                                  "time_ms",
                                  "kind",
                                  "message_id",
                                  "correlation_id",
                                  "from",
                                  "to",
                                  "dataset",
                                  "purpose",
                                  "subject_ref",
                                  "fields_requested",
                                  "fields_delivered",
                                  "decision",
                                  "rule_id",
                                  "consent_id",
                                  "error",
                                  "reason",
                                  "payload_hash",
                                  "header",
                                  "signature",
                                  "batch_path",
                                  "batch_index",
                                  "prev_hash",
                                  "hash",
                                  "detail"};
#define S_NCOLUMNS (sizeof s_columns / sizeof s_columns[0])

/* RFC 4180: quoted when it holds a comma, quote or line break. */
static void s_csv_cell(const char *text, bool last)
{
    if (strpbrk(text, ",\"\r\n")) {
        putchar('"');
        for (const char *c = text; *c; c++) {
            if (*c == '"')
                putchar('"');
            putchar(*c);
        }
        putchar('"');
    } else
        fputs(text, stdout);
    putchar(last ? '\n' : ',');
}

static int s_print_csv(const Sharebus__AuditRecord *r, const uint8_t hash[SBI_HASH_SIZE], void *arg)
{
    size_t *count = arg;
    json_object *obj = sbi_audit_record_json(r, hash);
    for (size_t i = 0; i < S_NCOLUMNS; i++) {
        json_object *value = json_object_object_get(obj, s_columns[i]);
        char *joined = NULL;
        if (json_object_is_type(value, json_type_array)) {
            size_t len = 1;
            for (size_t j = 0; j < json_object_array_length(value); j++)
                len += strlen(json_object_get_string(json_object_array_get_idx(value, j))) + 1;
            joined = calloc(1, len);
            assert(joined);
            for (size_t j = 0; j < json_object_array_length(value); j++) {
                if (j)
                    strcat(joined, ";");
                strcat(joined, json_object_get_string(json_object_array_get_idx(value, j)));
            }
        }
        s_csv_cell(joined  ? joined
                   : value ? json_object_get_string(value)
                           : "",
                   i + 1 == S_NCOLUMNS);
        free(joined);
    }
    json_object_put(obj);
    (*count)++;
    return 0;
}

static int cmd_export(cli_args_t *args)
{
    bool csv = args->format && strcmp(args->format, "csv") == 0;
    if (args->format && !csv && strcmp(args->format, "jsonl") != 0) {
        fprintf(stderr, "sharebus-audit: --format is jsonl or csv\n");
        return 2;
    }
    sbi_store_t *store;
    sbi_audit_t *audit = cli_open(args, &store);
    if (!audit)
        return 1;
    if (csv)
        for (size_t i = 0; i < S_NCOLUMNS; i++)
            s_csv_cell(s_columns[i], i + 1 == S_NCOLUMNS);
    size_t count = 0;
    int rc =
        sbi_audit_query_entries(audit, &args->filter, csv ? s_print_csv : s_print_json, &count);
    s_close(&audit, &store);
    if (rc != SB_OK)
        return s_query_failed(rc);
    fprintf(stderr, "exported %zu record(s)\n", count);
    return 0;
}

/* --------------------------------------------------------------- verify */

/* Reads checkpoint files (one JSON checkpoint per line) into `list`. */
static int s_load_checkpoints(cli_args_t *args, Sharebus__Checkpoint ***list_p, size_t *n_p)
{
    Sharebus__Checkpoint **list = NULL;
    size_t n = 0;
    int status = 0;
    for (size_t f = 0; status == 0 && f < args->n_checkpoint_files; f++) {
        const char *path = args->checkpoint_files[f];
        FILE *file = fopen(path, "r");
        if (!file) {
            fprintf(stderr, "sharebus-audit: %s: %s\n", path, strerror(errno));
            status = 1;
            break;
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        for (int lineno = 1; status == 0 && (len = getline(&line, &cap, file)) >= 0; lineno++) {
            if (strspn(line, " \t\r\n") == (size_t)len)
                continue;
            Sharebus__Checkpoint *cp;
            if (len > 4096 || sbi_checkpoint_from_json(line, &cp) != SB_OK) {
                fprintf(stderr, "sharebus-audit: %s:%d: not a sharebus checkpoint\n", path, lineno);
                status = 1;
                break;
            }
            list = realloc(list, (n + 1) * sizeof *list);
            assert(list);
            list[n++] = cp;
        }
        free(line);
        fclose(file);
    }
    *list_p = list;
    *n_p = n;
    return status;
}

static void s_free_checkpoints(Sharebus__Checkpoint **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sharebus__checkpoint__free_unpacked(list[i], NULL);
    free(list);
}

/* When `cert` stopped being good: its expiry, or its revocation. */
static uint64_t s_until(sbi_trust_t *trust, const sbi_cert_t *cert)
{
    const sbi_crl_t *crl = sbi_trust_crl(trust);
    uint64_t until = cert->not_after_ms;
    for (size_t i = 0; i < crl->count; i++)
        if (crl->entries[i].serial == cert->serial && crl->entries[i].revoked_ms < until)
            until = crl->entries[i].revoked_ms;
    return until;
}

/* The signing keys of every certificate `signer` has held, each with the
   time it was good for: a rotated and then revoked broker certificate still
   vouches for the checkpoints it signed before its revocation. */
static int s_signer_keys(cli_args_t *args, sbi_audit_key_t **keys_p, size_t *n_p)
{
    *keys_p = NULL;
    *n_p = 0;
    if (!args->certs)
        return 0;
    char err[4200];
    sbi_trust_t *trust = sbi_trust_new(args->certs, err, sizeof err);
    if (!trust) {
        fprintf(stderr, "sharebus-audit: %s\n", err);
        return 1;
    }
    sbi_audit_key_t *keys = calloc(sbi_trust_count(trust) + 1, sizeof *keys);
    assert(keys);
    size_t n = 0;
    for (size_t i = 0; i < sbi_trust_count(trust); i++) {
        const sbi_cert_t *cert = sbi_trust_at(trust, i);
        if (strcmp(cert->agency, args->signer) != 0)
            continue;
        memcpy(keys[n].sign_public, cert->sign_public, 32);
        keys[n].from_ms = cert->not_before_ms;
        keys[n++].until_ms = s_until(trust, cert);
    }
    sbi_trust_destroy(&trust);
    if (n == 0) {
        fprintf(stderr,
                "sharebus-audit: %s: no certificate of '%s' (expected %s/%s.cert signed by "
                "%s/root.cert)\n",
                args->certs, args->signer, args->certs, args->signer, args->certs);
        free(keys);
        return 1;
    }
    *keys_p = keys;
    *n_p = n;
    return 0;
}

static void s_verify_print(cli_args_t *args, int rc, const sbi_audit_report_t *report)
{
    char hash[2 * SBI_HASH_SIZE + 1];
    sbi_hex(report->head_hash, SBI_HASH_SIZE, hash);
    if (args->json) {
        json_object *obj = json_object_new_object();
        json_object_object_add(obj, "intact", json_object_new_boolean(rc == SB_OK));
        json_object_object_add(obj, "records", json_object_new_uint64(report->records));
        json_object_object_add(obj, "checkpoints", json_object_new_uint64(report->checkpoints));
        json_object_object_add(obj, "head_seq", json_object_new_uint64(report->head_seq));
        json_object_object_add(obj, "head_hash", json_object_new_string(hash));
        json_object_object_add(obj, "signatures_checked",
                               json_object_new_boolean(args->certs != NULL));
        if (rc != SB_OK) {
            json_object_object_add(obj, "fault",
                                   json_object_new_string(sbi_audit_fault_name(report->fault)));
            json_object_object_add(obj, "seq", json_object_new_uint64(report->seq));
            if (report->index)
                json_object_object_add(obj, "index", json_object_new_string(report->index));
            json_object_object_add(obj, "detail", json_object_new_string(report->detail));
        }
        if (rc != SB_OK && report->untrusted_from) {
            json_object_object_add(obj, "untrusted_from",
                                   json_object_new_uint64(report->untrusted_from));
            json_object_object_add(obj, "untrusted_to", json_object_new_uint64(report->seq));
        }
        puts(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN));
        json_object_put(obj);
    } else if (rc == SB_OK)
        printf("intact: %" PRIu64 " records, %" PRIu64 " checkpoints, head %" PRIu64 " %s\n",
               report->records, report->checkpoints, report->head_seq, hash);
    else
        printf("NOT INTACT: %s at seq %" PRIu64 ": %s\n", sbi_audit_fault_name(report->fault),
               report->seq, report->detail);
}

static int s_count(const Sharebus__Checkpoint *cp, void *arg)
{
    (void)cp;
    (*(size_t *)arg)++;
    return 0;
}

/* An agent's store that kept checkpoints conflicting with those it held:
   the broker signed two histories. Said on every command that reads them. */
static void s_warn_conflicts(sbi_audit_t *audit, bool exported)
{
    size_t n = 0;
    if (sbi_audit_conflicts(audit, s_count, &n) != SB_OK || n == 0)
        return;
    fprintf(stderr,
            "sharebus-audit: WARNING: this store kept %zu checkpoint(s) from the broker that "
            "name other heads than the checkpoints it holds for the same records: the broker's "
            "key signed two histories; %s\n",
            n,
            exported ? "they are written after the held ones"
                     : "export them with checkpoint --all and verify the broker's log against "
                       "them");
}

static int cmd_verify(cli_args_t *args)
{
    Sharebus__Checkpoint **extra;
    size_t n_extra, n_keys;
    sbi_audit_key_t *keys;
    if (s_load_checkpoints(args, &extra, &n_extra) != 0) {
        s_free_checkpoints(extra, n_extra);
        return 1;
    }
    if (s_signer_keys(args, &keys, &n_keys) != 0) {
        s_free_checkpoints(extra, n_extra);
        return 1;
    }
    if (!args->certs)
        fprintf(stderr, "sharebus-audit: no --certs: checkpoint signatures are not checked, "
                        "only their hashes\n");
    int status = 1;
    sbi_store_t *store;
    sbi_audit_t *audit = cli_open(args, &store);
    if (audit) {
        sbi_audit_report_t report;
        int rc = sbi_audit_verify_keys(audit, keys, n_keys, extra, n_extra, &report);
        s_warn_conflicts(audit, false);
        if (rc == SB_OK || rc == SB_EBADSIG) {
            s_verify_print(args, rc, &report);
            status = rc == SB_OK ? 0 : 1;
        } else
            fprintf(stderr, "sharebus-audit: %s\n", report.detail);
        s_close(&audit, &store);
    }
    free(keys);
    s_free_checkpoints(extra, n_extra);
    return status;
}

/* -------------------------------------------------------------- reindex */

/* The log's records are the truth; the indexes are derived from them and
   can be made again. One write transaction: interrupted, it changes
   nothing. */
static int cmd_reindex(cli_args_t *args)
{
    sbi_store_t *store;
    sbi_audit_t *audit = cli_open(args, &store); /* never make a store or a log */
    if (!audit)
        return 1;
    s_close(&audit, &store);
    if (!(audit = s_open(args, 0, &store)))
        return 1;
    uint64_t records = 0;
    int rc;
    for (;;) {
        MDB_txn *txn;
        rc = sbi_store_begin(store, true, &txn);
        if (rc != SB_OK)
            break;
        rc = sbi_audit_reindex(audit, txn, &records);
        if (rc == SB_OK)
            rc = sbi_store_code(mdb_txn_commit(txn));
        else
            mdb_txn_abort(txn);
        if (rc == SB_OK) {
            sbi_audit_commit(audit);
            break;
        }
        sbi_audit_abort(audit);
        if (rc != SB_EFULL || sbi_store_grow(store) != SB_OK)
            break;
    }
    s_close(&audit, &store);
    if (rc != SB_OK) {
        fprintf(stderr, "sharebus-audit: %s/store: the indexes were not rebuilt: %s\n", args->data,
                sb_strerror(rc));
        return 1;
    }
    printf("reindexed: %" PRIu64 " records\n", records);
    return 0;
}

/* ----------------------------------------------------------- checkpoint */

static int s_append_json(const Sharebus__Checkpoint *cp, void *arg)
{
    char **text = arg;
    char *line = sbi_checkpoint_to_json(cp);
    size_t old = *text ? strlen(*text) : 0;
    *text = realloc(*text, old + strlen(line) + 2);
    assert(*text);
    strcpy(*text + old, line);
    strcat(*text, "\n");
    free(line);
    return 0;
}

/* Received checkpoints (an agent's store) first, else the log's own; with
   `all`, every one, then those kept as conflicting with them. */
static int s_export_checkpoints(sbi_audit_t *audit, bool all, char **text)
{
    for (int received = 1; received >= 0 && !*text; received--) {
        int rc;
        if (all) {
            rc = sbi_audit_checkpoints(audit, received, s_append_json, text);
            if (received && rc == SB_OK)
                rc = sbi_audit_conflicts(audit, s_append_json, text);
        } else {
            Sharebus__Checkpoint *cp;
            rc = sbi_audit_checkpoint_latest(audit, received, &cp);
            if (rc == SB_OK) {
                s_append_json(cp, text);
                sharebus__checkpoint__free_unpacked(cp, NULL);
            }
        }
        if (rc != SB_OK && rc != SB_ENOTFOUND)
            return rc;
    }
    return *text ? SB_OK : SB_ENOTFOUND;
}

static int cmd_checkpoint(cli_args_t *args)
{
    sbi_store_t *store;
    sbi_audit_t *audit = cli_open(args, &store);
    if (!audit)
        return 1;
    char *text = NULL;
    int rc = s_export_checkpoints(audit, args->all, &text);
    s_warn_conflicts(audit, args->all);
    s_close(&audit, &store);
    if (rc != SB_OK) {
        fprintf(stderr, "sharebus-audit: %s/store: %s\n", args->data,
                rc == SB_ENOTFOUND ? "no checkpoint stored" : sb_strerror(rc));
        free(text);
        return 1;
    }
    if (args->out) {
        rc = sbi_file_write(args->out, text, strlen(text), 0644, false);
        if (rc != SB_OK)
            fprintf(stderr, "sharebus-audit: %s: %s\n", args->out, strerror(errno));
    } else
        fputs(text, stdout);
    free(text);
    return rc == SB_OK ? 0 : 1;
}

/* ----------------------------------------------------------------- main */

static const command_t s_commands[] = {
    {"query", cmd_query, "data " S_FILTERS "limit json ",
     "query --data DDIR [--agency A] [--subject -|ID --subject-key FILE] [--dataset D]\n"
     "                      [--purpose P] [--kind K] [--since T] [--until T] [--limit N] [--json]"},
    {"verify", cmd_verify, "data certs signer checkpoint json ",
     "verify --data DDIR [--certs DIR] [--signer ID] [--checkpoint FILE]... [--json]"},
    {"checkpoint", cmd_checkpoint, "data out all ", "checkpoint --data DDIR [--out FILE] [--all]"},
    {"report", cli_report, "data subject subject-key certs since until json ",
     "report --data DDIR --subject -|ID --subject-key FILE [--certs DIR] [--since T]\n"
     "                      [--until T] [--json]"},
    {"export", cmd_export, "data " S_FILTERS "limit format ",
     "export --data DDIR [--since T] [--until T] [filters] [--limit N] [--format jsonl|csv]"},
    {"reindex", cmd_reindex, "data ", "reindex --data DDIR"},
};
#define S_NCOMMANDS (sizeof s_commands / sizeof s_commands[0])

static int s_usage(FILE *out, int status)
{
    fprintf(out, "usage: sharebus-audit COMMAND [OPTIONS]\n");
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        fprintf(out, "       sharebus-audit %s\n", s_commands[i].usage);
    fprintf(out, "T is YYYY-MM-DD (a whole day for --until) or YYYY-MM-DDTHH:MM:SSZ.\n"
                 "--subject - reads the national id from standard input.\n"
                 "See sharebus-audit(1).\n");
    return status;
}

/* Whether `command` takes the long option `name`. */
static bool s_takes(const command_t *command, const char *name)
{
    size_t len = strlen(name);
    for (const char *o = command->options; *o; o = strchr(o, ' ') + 1)
        if (strncmp(o, name, len) == 0 && o[len] == ' ')
            return true;
    return false;
}

static int s_bad(const char *what)
{
    fprintf(stderr, "sharebus-audit: %s\n", what);
    return 2;
}

/* --until with a bare date means the end of that day. */
static int s_time(const char *text, bool until, uint64_t *ms)
{
    if (sbi_time_parse(text, ms) != SB_OK) {
        char clean[64];
        fprintf(stderr,
                "sharebus-audit: --%s %s: not a date or time (YYYY-MM-DD or "
                "YYYY-MM-DDTHH:MM:SSZ, a day that exists, UTC)\n",
                until ? "until" : "since", cli_clean(text, clean, sizeof clean));
        return 2;
    }
    if (until && !strchr(text, 'T'))
        *ms += 86400000;
    return 0;
}

static int s_option(cli_args_t *args, int opt, const char *arg)
{
    char *end;
    switch (opt) {
    case 'd': args->data = arg; return 0;
    case 'a': args->filter.agency = arg; return 0;
    case 's': args->subject = arg; return 0;
    case 'k': args->subject_key = arg; return 0;
    case 'D': args->filter.dataset = arg; return 0;
    case 'p': args->filter.purpose = arg; return 0;
    case 'c': args->certs = arg; return 0;
    case 'o': args->out = arg; return 0;
    case 'f': args->format = arg; return 0;
    case 'S': args->signer = arg; return 0;
    case 'j': args->json = true; return 0;
    case 'A': args->all = true; return 0;
    case 'K':
        args->filter.kind = sbi_audit_kind_parse(arg);
        return args->filter.kind ? 0 : s_bad("unknown --kind (see sharebus-audit(1))");
    case 'b': return s_time(arg, false, &args->filter.since_ms);
    case 'e': return s_time(arg, true, &args->filter.until_ms);
    case 'l':
        args->filter.limit = strtoull(arg, &end, 10);
        return *end || !*arg || arg[0] == '-' ? s_bad("--limit needs a number") : 0;
    case 'C':
        if (args->n_checkpoint_files == CLI_CHECKPOINTS_MAX)
            return s_bad("too many --checkpoint files");
        args->checkpoint_files[args->n_checkpoint_files++] = arg;
        return 0;
    default: return 2;
    }
}

/* `--subject -`: the national id from the first line of standard input,
   where other users cannot read it (they can read a command line in
   /proc/PID/cmdline). 0, or 2 after a message. */
static int s_subject_stdin(char *id, size_t size)
{
    if (!fgets(id, (int)size, stdin))
        return s_bad("--subject -: no national id on standard input");
    size_t len = strcspn(id, "\r\n");
    if (len + 1 == size && id[len] == 0) {
        sodium_memzero(id, size);
        return s_bad("--subject -: the line on standard input is too long for a national id");
    }
    id[len] = 0;
    return 0;
}

static int s_subject(cli_args_t *args)
{
    if (!args->subject)
        return args->subject_key ? s_bad("--subject-key goes with --subject ID") : 0;
    if (!args->subject_key)
        return s_bad("--subject needs --subject-key FILE (the bus's subject key)");
    char id[128];
    bool from_stdin = strcmp(args->subject, "-") == 0;
    if (from_stdin && s_subject_stdin(id, sizeof id) != 0)
        return 2;
    uint8_t key[32];
    char err[2 * 4096 + 128];
    int rc = sbi_secret_read(args->subject_key, key, err, sizeof err);
    if (rc != SB_OK) {
        sodium_memzero(id, sizeof id);
        fprintf(stderr, "sharebus-audit: %s\n", err);
        return 1;
    }
    rc = sbi_subject_ref(key, from_stdin ? id : args->subject, args->subject_ref);
    sodium_memzero(key, sizeof key);
    sodium_memzero(id, sizeof id);
    if (rc != SB_OK)
        return s_bad(from_stdin ? "--subject -: standard input does not hold a national id"
                                : "--subject is not a national id");
    args->filter.subject_ref = args->subject_ref;
    return 0;
}

int main(int argc, char **argv)
{
    sbi_init();
    sbi_log_setup("sharebus-audit", SBI_LOG_WARNING);
    static const struct option options[] = {
        {"data", required_argument, 0, 'd'},    {"agency", required_argument, 0, 'a'},
        {"subject", required_argument, 0, 's'}, {"subject-key", required_argument, 0, 'k'},
        {"dataset", required_argument, 0, 'D'}, {"purpose", required_argument, 0, 'p'},
        {"kind", required_argument, 0, 'K'},    {"since", required_argument, 0, 'b'},
        {"until", required_argument, 0, 'e'},   {"limit", required_argument, 0, 'l'},
        {"certs", required_argument, 0, 'c'},   {"checkpoint", required_argument, 0, 'C'},
        {"signer", required_argument, 0, 'S'},  {"out", required_argument, 0, 'o'},
        {"format", required_argument, 0, 'f'},  {"all", no_argument, 0, 'A'},
        {"json", no_argument, 0, 'j'},          {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},       {0, 0, 0, 0}};
    cli_args_t args = {.signer = "broker"};
    const char *given[sizeof options / sizeof options[0]] = {0}; /* long names used */
    int opt, index = 0;
    while ((opt = getopt_long(argc, argv, "", options, &index)) != -1) {
        if (opt == 'h')
            return s_usage(stdout, 0);
        if (opt == 'V') {
            puts("sharebus-audit " SHAREBUS_VERSION);
            return 0;
        }
        if (opt == '?')
            return s_usage(stderr, 2);
        if (s_option(&args, opt, optarg) != 0)
            return 2;
        given[index] = options[index].name;
    }
    if (optind >= argc)
        return s_usage(stderr, 2);
    const char *name = argv[optind++];
    const command_t *command = NULL;
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        if (strcmp(s_commands[i].name, name) == 0)
            command = &s_commands[i];
    if (!command) {
        fprintf(stderr, "sharebus-audit: unknown command '%s'\n", name);
        return s_usage(stderr, 2);
    }
    for (size_t i = 0; i < sizeof given / sizeof given[0]; i++)
        if (given[i] && !s_takes(command, given[i])) {
            fprintf(stderr, "sharebus-audit: %s does not take --%s\nusage: sharebus-audit %s\n",
                    command->name, given[i], command->usage);
            return 2;
        }
    if (optind < argc || !args.data) {
        fprintf(stderr, "usage: sharebus-audit %s\n", command->usage);
        return 2;
    }
    if (args.filter.until_ms && args.filter.until_ms <= args.filter.since_ms)
        return s_bad("--until must come after --since");
    int status = s_subject(&args);
    return status ? status : command->fn(&args);
}
