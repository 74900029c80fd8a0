/*  sharebus-cert - the bus administrator's certificate tool.

    sharebus-cert init   --dir DIR
    sharebus-cert issue  --dir DIR (--agency ID --name NAME | --broker) [--days N] [--replace]
    sharebus-cert revoke --dir DIR (--agency ID | --broker) [--serial N]
    sharebus-cert list   --dir DIR [--json]
    sharebus-cert show   FILE [--dir DIR] [--json]
    sharebus-cert verify FILE --dir DIR [--json]

    Exit status: 0 success, 1 failure (including a certificate that does not
    verify, and `list` finding a file the bus would leave out), 2 bad usage
    (unknown command or option, missing or invalid argument). */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ca.h"

#define S_DAYS_MAX 36500

enum {
    O_DIR = 1 << 0,
    O_AGENCY = 1 << 1,
    O_NAME = 1 << 2,
    O_DAYS = 1 << 3,
    O_SERIAL = 1 << 4,
    O_BROKER = 1 << 5,
    O_REPLACE = 1 << 6,
    O_JSON = 1 << 7,
};

typedef struct {
    const char *dir;
    const char *agency;
    const char *name;
    const char *file;
    int days;
    uint64_t serial;
    bool broker;
    bool replace;
    bool json;
    unsigned given;     /* O_* options on the command line */
} args_t;

typedef struct {
    const char *name;
    int (*fn)(args_t *args);
    unsigned options;   /* O_* options the command accepts */
    bool takes_file;
    const char *usage;
    const char *help;
} command_t;

/* ------------------------------------------------------------ helpers */

static int s_error(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int s_error(int status, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    fputs("sharebus-cert: ", stderr);
    vfprintf(stderr, fmt, args);
    fputc('\n', stderr);
    va_end(args);
    return status;
}

/* Exit status for a CA failure: bad arguments are usage errors. */
static int s_status(int rc)
{
    return rc == SB_EINVAL ? 2 : 1;
}

static const char *s_kind_name(sbi_cert_kind_t kind)
{
    return kind == SBI_CERT_BROKER ? "broker" : kind == SBI_CERT_ROOT ? "root" : "agency";
}

/* A certificate as the bus sees it under a trust store. */
typedef struct {
    char file[4096];
    bool parsed;
    sbi_cert_t cert;
    const char *state;  /* valid, revoked, expired, not-yet-valid, invalid */
    const char *reason; /* for anything but valid */
} s_checked_t;

static void s_check(sbi_trust_t *trust, const char *file, s_checked_t *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->file, sizeof out->file, "%s", file);
    out->state = "invalid";
    int rc = sbi_cert_load(file, &out->cert);
    if (rc != SB_OK) {
        out->reason = rc == SB_EIO        ? strerror(errno)
                      : rc == SB_EMALFORMED ? "not a sharebus certificate"
                                            : sb_strerror(rc);
        return;
    }
    out->parsed = true;
    if (sbi_cert_verify(&out->cert, sbi_trust_root(trust)) != SB_OK) {
        out->reason = "signature does not verify under this root "
                      "(tampered, or issued by another root)";
        return;
    }
    uint64_t now = sbi_now_ms();
    switch (sbi_trust_check(trust, &out->cert, now)) {
    case SB_OK: out->state = "valid"; break;
    case SB_EREVOKED:
        out->state = "revoked";
        out->reason = "certificate revoked";
        break;
    default:
        out->state = now < out->cert.not_before_ms ? "not-yet-valid" : "expired";
        out->reason = now < out->cert.not_before_ms ? "not valid yet" : "certificate expired";
        break;
    }
}

static json_object *s_json(const s_checked_t *c, bool with_state)
{
    char when[32], key[41];
    json_object *obj = json_object_new_object();
    json_object_object_add(obj, "file", json_object_new_string(c->file));
    if (c->parsed) {
        const sbi_cert_t *cert = &c->cert;
        json_object_object_add(obj, "kind", json_object_new_string(s_kind_name(cert->kind)));
        json_object_object_add(obj, "agency", json_object_new_string(cert->agency));
        json_object_object_add(obj, "name", json_object_new_string(cert->name));
        json_object_object_add(obj, "serial", json_object_new_uint64(cert->serial));
        json_object_object_add(obj, "not_before", json_object_new_string(
            sbi_time_format(cert->not_before_ms, when, sizeof when)));
        json_object_object_add(obj, "not_after", json_object_new_string(
            sbi_time_format(cert->not_after_ms, when, sizeof when)));
        zmq_z85_encode(key, cert->sign_public, 32);
        json_object_object_add(obj, "sign_public_key", json_object_new_string(key));
        if (cert->kind != SBI_CERT_ROOT) {
            zmq_z85_encode(key, cert->box_public, 32);
            json_object_object_add(obj, "box_public_key", json_object_new_string(key));
            zmq_z85_encode(key, cert->curve_public, 32);
            json_object_object_add(obj, "curve_public_key", json_object_new_string(key));
        }
    }
    if (with_state) {
        json_object_object_add(obj, "state", json_object_new_string(c->state));
        if (c->reason)
            json_object_object_add(obj, "reason", json_object_new_string(c->reason));
    }
    return obj;
}

static void s_print_json(json_object *obj)
{
    puts(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(obj);
}

/* The trust store of DIR, quietly: the tool reports bad files itself. */
static sbi_trust_t *s_trust(const char *dir)
{
    char err[4200];
    sbi_log_setup("sharebus-cert", SBI_LOG_ERROR);
    sbi_trust_t *trust = sbi_trust_new(dir, err, sizeof err);
    sbi_log_setup("sharebus-cert", SBI_LOG_WARNING);
    if (!trust)
        s_error(1, "%s", err);
    return trust;
}

/* ----------------------------------------------------------- commands */

static int cmd_init(args_t *args)
{
    char err[4200];
    int rc = sbi_ca_init(args->dir, err, sizeof err);
    if (rc != SB_OK)
        return s_error(s_status(rc), "%s", err);
    printf("root of trust created in %s: root.cert, root.key (0600), subject.key (0600)\n"
           "keep root.key offline; copy root.cert to every agent and the broker\n",
           args->dir);
    struct stat st;
    if (stat(args->dir, &st) == 0 && (st.st_mode & 077))
        fprintf(stderr, "sharebus-cert: warning: %s is open to other users (mode %03o): "
                "chmod 700 it\n", args->dir, (unsigned) (st.st_mode & 0777));
    return 0;
}

static int cmd_issue(args_t *args)
{
    if (args->broker == (args->agency != NULL))
        return s_error(2, "issue needs exactly one of --agency ID or --broker");
    if (args->agency && !args->name)
        return s_error(2, "issue --agency needs --name \"Display Name\"");
    const char *agency = args->broker ? "broker" : args->agency;
    const char *name = args->name ? args->name : "sharebus broker";
    char err[4200];
    uint64_t serial = 0;
    int rc = sbi_ca_issue(args->dir, args->broker ? SBI_CERT_BROKER : SBI_CERT_AGENCY, agency,
                          name, args->days, args->replace, &serial, err, sizeof err);
    if (rc != SB_OK)
        return s_error(s_status(rc), "%s", err);
    printf("issued %s/%s.cert (serial %" PRIu64 ", %d days) and %s/%s.key (0600)\n",
           args->dir, agency, serial, args->days, args->dir, agency);
    return 0;
}

static int cmd_revoke(args_t *args)
{
    if (args->broker == (args->agency != NULL))
        return s_error(2, "revoke needs exactly one of --agency ID or --broker");
    const char *agency = args->broker ? "broker" : args->agency;
    char err[4200];
    int rc = sbi_ca_revoke(args->dir, agency, args->serial, err, sizeof err);
    if (rc != SB_OK)
        return s_error(s_status(rc), "%s", err);
    if (args->serial)
        printf("revoked %s serial %" PRIu64, agency, args->serial);
    else
        printf("revoked every certificate of %s", agency);
    printf("; copy %s/revoked.crl to the broker and agents and reload them\n", args->dir);
    return 0;
}

static bool s_is_cert_file(const char *name)
{
    size_t len = strlen(name);
    return len > 5 && strcmp(name + len - 5, ".cert") == 0 && strcmp(name, "root.cert") != 0;
}

static int s_by_serial(const void *a, const void *b)
{
    const s_checked_t *x = a, *y = b;
    if (x->parsed != y->parsed)
        return x->parsed ? -1 : 1;
    if (x->cert.serial != y->cert.serial)
        return x->cert.serial < y->cert.serial ? -1 : 1;
    return strcmp(x->file, y->file);
}

static int cmd_list(args_t *args)
{
    sbi_trust_t *trust = s_trust(args->dir);
    if (!trust)
        return 1;
    DIR *handle = opendir(args->dir);
    if (!handle) {
        sbi_trust_destroy(&trust);
        return s_error(1, "%s: %s", args->dir, strerror(errno));
    }
    s_checked_t *rows = NULL;
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir(handle))) {
        if (!s_is_cert_file(entry->d_name))
            continue;
        s_checked_t *grown = realloc(rows, (count + 1) * sizeof *rows);
        assert(grown);
        rows = grown;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", args->dir, entry->d_name);
        s_check(trust, path, &rows[count++]);
    }
    closedir(handle);
    qsort(rows, count, sizeof *rows, s_by_serial);

    int status = 0;
    json_object *array = args->json ? json_object_new_array() : NULL;
    if (!args->json)
        printf("%-20s %-7s %-7s %-13s %-20s %s\n", "AGENCY", "SERIAL", "KIND", "STATE",
               "NOT AFTER", "NAME");
    for (size_t i = 0; i < count; i++) {
        s_checked_t *row = &rows[i];
        bool invalid = strcmp(row->state, "invalid") == 0;
        if (invalid) {
            /* The trust store of the broker and agents ignores this file. */
            fprintf(stderr, "sharebus-cert: warning: %s left out: %s\n", row->file,
                    row->reason);
            status = 1;
        }
        if (array)
            json_object_array_add(array, s_json(row, true));
        else if (row->parsed) {
            char when[32], serial[24];
            snprintf(serial, sizeof serial, "%" PRIu64, row->cert.serial);
            printf("%-20s %-7s %-7s %-13s %-20s %s\n", row->cert.agency, serial,
                   s_kind_name(row->cert.kind), row->state,
                   sbi_time_format(row->cert.not_after_ms, when, sizeof when),
                   row->cert.name);
        }
        else
            printf("%-20s %-7s %-7s %-13s %-20s %s\n", "?", "?", "?", row->state, "?",
                   row->file);
    }
    if (array)
        s_print_json(array);
    free(rows);
    sbi_trust_destroy(&trust);
    return status;
}

static int cmd_show(args_t *args)
{
    s_checked_t checked = {0};
    snprintf(checked.file, sizeof checked.file, "%s", args->file);
    sbi_trust_t *trust = NULL;
    if (args->dir && !(trust = s_trust(args->dir)))
        return 1;
    if (trust)
        s_check(trust, args->file, &checked);
    else {
        int rc = sbi_cert_load(args->file, &checked.cert);
        checked.parsed = rc == SB_OK;
        if (rc != SB_OK)
            return s_error(1, "%s: %s", args->file,
                           rc == SB_EIO         ? strerror(errno)
                           : rc == SB_EMALFORMED ? "not a sharebus certificate"
                                                 : sb_strerror(rc));
    }
    sbi_trust_destroy(&trust);
    if (!checked.parsed)
        return s_error(1, "%s: %s", args->file, checked.reason);
    json_object *obj = s_json(&checked, args->dir != NULL);
    if (args->json)
        s_print_json(obj);
    else {
        json_object_object_foreach(obj, key, value)
            printf("%-17s %s\n", key, json_object_get_string(value));
        json_object_put(obj);
    }
    return 0;
}

static int cmd_verify(args_t *args)
{
    sbi_trust_t *trust = s_trust(args->dir);
    if (!trust)
        return 1;
    s_checked_t checked;
    s_check(trust, args->file, &checked);
    sbi_trust_destroy(&trust);
    bool valid = strcmp(checked.state, "valid") == 0;
    if (args->json)
        s_print_json(s_json(&checked, true));
    else if (valid)
        printf("%s: valid %s certificate of %s (serial %" PRIu64 ")\n", args->file,
               s_kind_name(checked.cert.kind), checked.cert.agency, checked.cert.serial);
    if (!valid)
        s_error(1, "%s: %s", args->file, checked.reason);
    return valid ? 0 : 1;
}

static const command_t s_commands[] = {
    {"init", cmd_init, O_DIR, false, "init --dir DIR",
     "create the root key pair and the subject key"},
    {"issue", cmd_issue, O_DIR | O_AGENCY | O_NAME | O_DAYS | O_BROKER | O_REPLACE, false,
     "issue --dir DIR (--agency ID --name NAME | --broker) [--days N] [--replace]",
     "issue an agency's (or the broker's) certificate and secret keys"},
    {"revoke", cmd_revoke, O_DIR | O_AGENCY | O_BROKER | O_SERIAL, false,
     "revoke --dir DIR (--agency ID | --broker) [--serial N]",
     "add an agency's certificates (or one serial) to the revocation list"},
    {"list", cmd_list, O_DIR | O_JSON, false, "list --dir DIR [--json]",
     "every certificate in DIR with its state"},
    {"show", cmd_show, O_DIR | O_JSON, true, "show FILE [--dir DIR] [--json]",
     "print a certificate's fields (and its state under DIR)"},
    {"verify", cmd_verify, O_DIR | O_JSON, true, "verify FILE --dir DIR [--json]",
     "check a certificate against DIR's root and revocation list"},
};
#define S_NCOMMANDS (sizeof s_commands / sizeof s_commands[0])

static int s_usage(FILE *out, int status)
{
    fprintf(out, "usage: sharebus-cert COMMAND [OPTIONS]\n\n");
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        fprintf(out, "  %s\n      %s\n", s_commands[i].usage, s_commands[i].help);
    fprintf(out, "\n  --help, --version\n\nExit status: 0 ok, 1 failure, 2 bad usage. "
                 "See sharebus-cert(1).\n");
    return status;
}

static const struct option s_options[] = {
    {"dir", required_argument, 0, 'd'},    {"agency", required_argument, 0, 'a'},
    {"name", required_argument, 0, 'n'},   {"days", required_argument, 0, 'D'},
    {"serial", required_argument, 0, 's'}, {"broker", no_argument, 0, 'b'},
    {"replace", no_argument, 0, 'r'},      {"json", no_argument, 0, 'j'},
    {"help", no_argument, 0, 'h'},         {"version", no_argument, 0, 'V'},
    {0, 0, 0, 0}};

static const char *s_option_name(unsigned bit)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{O_DIR, "--dir"},       {O_AGENCY, "--agency"}, {O_NAME, "--name"},
                 {O_DAYS, "--days"},     {O_SERIAL, "--serial"}, {O_BROKER, "--broker"},
                 {O_REPLACE, "--replace"}, {O_JSON, "--json"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].bit & bit)
            return names[i].name;
    return "?";
}

/* A decimal number in [min, max] with nothing around it. */
static bool s_number(const char *text, uint64_t min, uint64_t max, uint64_t *value)
{
    if (!text || *text < '0' || *text > '9')
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *value = v;
    return true;
}

int main(int argc, char **argv)
{
    sbi_init();
    sbi_log_setup("sharebus-cert", SBI_LOG_WARNING);
    args_t args = {.days = 365};
    uint64_t number;
    int opt;
    while ((opt = getopt_long(argc, argv, "", s_options, NULL)) != -1) {
        switch (opt) {
        case 'd': args.dir = optarg; args.given |= O_DIR; break;
        case 'a': args.agency = optarg; args.given |= O_AGENCY; break;
        case 'n': args.name = optarg; args.given |= O_NAME; break;
        case 'D':
            if (!s_number(optarg, 1, S_DAYS_MAX, &number))
                return s_error(2, "--days needs a number of days from 1 to %d", S_DAYS_MAX);
            args.days = (int) number;
            args.given |= O_DAYS;
            break;
        case 's':
            if (!s_number(optarg, 1, UINT64_MAX - 1, &number))
                return s_error(2, "--serial needs a positive serial number");
            args.serial = number;
            args.given |= O_SERIAL;
            break;
        case 'b': args.broker = true; args.given |= O_BROKER; break;
        case 'r': args.replace = true; args.given |= O_REPLACE; break;
        case 'j': args.json = true; args.given |= O_JSON; break;
        case 'h': return s_usage(stdout, 0);
        case 'V': puts("sharebus-cert " SHAREBUS_VERSION); return 0;
        default: return s_usage(stderr, 2);
        }
    }
    if (optind >= argc)
        return s_usage(stderr, 2);
    const char *name = argv[optind++];
    const command_t *command = NULL;
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        if (strcmp(s_commands[i].name, name) == 0)
            command = &s_commands[i];
    if (!command) {
        s_error(2, "unknown command '%s'", name);
        return s_usage(stderr, 2);
    }
    if (args.given & ~command->options)
        return s_error(2, "%s does not take %s\nusage: sharebus-cert %s", command->name,
                       s_option_name(args.given & ~command->options), command->usage);
    if (command->takes_file && optind < argc)
        args.file = argv[optind++];
    if (optind < argc)
        return s_error(2, "unexpected argument '%s'\nusage: sharebus-cert %s", argv[optind],
                       command->usage);
    if (command->takes_file && !args.file)
        return s_error(2, "%s needs a FILE\nusage: sharebus-cert %s", command->name,
                       command->usage);
    if (!args.dir && command->fn != cmd_show)
        return s_error(2, "%s needs --dir DIR\nusage: sharebus-cert %s", command->name,
                       command->usage);
    return command->fn(&args);
}
