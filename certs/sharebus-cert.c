/*  sharebus-cert - the bus administrator's certificate tool.

    sharebus-cert init   --dir DIR
    sharebus-cert issue  --dir DIR (--agency ID --name NAME | --broker) [--days N] [--replace]
    sharebus-cert revoke --dir DIR --agency ID [--serial N]
    sharebus-cert list   --dir DIR [--json]
    sharebus-cert show   FILE [--json]
    sharebus-cert verify FILE --dir DIR
*/
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca.h"

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
} args_t;

typedef struct {
    const char *name;
    int (*fn)(args_t *args);
    const char *usage;
} command_t;

static const char *s_state(sbi_trust_t *trust, const sbi_cert_t *cert)
{
    switch (sbi_trust_check(trust, cert, sbi_now_ms())) {
    case SB_OK: return "valid";
    case SB_EREVOKED: return "revoked";
    default: return sbi_now_ms() < cert->not_before_ms ? "not-yet-valid" : "expired";
    }
}

static json_object *s_cert_json(const sbi_cert_t *cert, const char *state)
{
    char when[32], key[41];
    json_object *obj = json_object_new_object();
    json_object_object_add(obj, "agency", json_object_new_string(cert->agency));
    json_object_object_add(obj, "name", json_object_new_string(cert->name));
    json_object_object_add(obj, "kind", json_object_new_string(
        cert->kind == SBI_CERT_BROKER ? "broker" : cert->kind == SBI_CERT_ROOT ? "root" : "agency"));
    json_object_object_add(obj, "serial", json_object_new_uint64(cert->serial));
    json_object_object_add(obj, "not_before", json_object_new_string(
        sbi_time_format(cert->not_before_ms, when, sizeof when)));
    json_object_object_add(obj, "not_after", json_object_new_string(
        sbi_time_format(cert->not_after_ms, when, sizeof when)));
    if (cert->kind != SBI_CERT_ROOT) {
        zmq_z85_encode(key, cert->curve_public, 32);
        json_object_object_add(obj, "curve_public_key", json_object_new_string(key));
        zmq_z85_encode(key, cert->box_public, 32);
        json_object_object_add(obj, "box_public_key", json_object_new_string(key));
    }
    zmq_z85_encode(key, cert->sign_public, 32);
    json_object_object_add(obj, "sign_public_key", json_object_new_string(key));
    if (state)
        json_object_object_add(obj, "state", json_object_new_string(state));
    return obj;
}

static void s_print_json(json_object *obj)
{
    puts(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN));
    json_object_put(obj);
}

static int cmd_init(args_t *args)
{
    char err[4200];
    if (sbi_ca_init(args->dir, err, sizeof err) != SB_OK) {
        fprintf(stderr, "sharebus-cert: %s\n", err);
        return 1;
    }
    printf("root of trust created in %s (root.cert, root.key 0600, subject.key 0600)\n",
           args->dir);
    return 0;
}

static int cmd_issue(args_t *args)
{
    if (args->broker == (args->agency != NULL)) {
        fprintf(stderr, "sharebus-cert: issue needs exactly one of --agency ID or --broker\n");
        return 2;
    }
    if (args->agency && !args->name) {
        fprintf(stderr, "sharebus-cert: issue --agency needs --name \"Display Name\"\n");
        return 2;
    }
    const char *agency = args->broker ? "broker" : args->agency;
    const char *name = args->name ? args->name : "sharebus broker";
    char err[4200];
    uint64_t serial = 0;
    if (sbi_ca_issue(args->dir, args->broker ? SBI_CERT_BROKER : SBI_CERT_AGENCY, agency,
                     name, args->days, args->replace, &serial, err, sizeof err) != SB_OK) {
        fprintf(stderr, "sharebus-cert: %s\n", err);
        return 1;
    }
    printf("issued %s/%s.cert (serial %" PRIu64 ", %d days) and %s/%s.key (0600)\n",
           args->dir, agency, serial, args->days, args->dir, agency);
    return 0;
}

static int cmd_revoke(args_t *args)
{
    if (!args->agency) {
        fprintf(stderr, "sharebus-cert: revoke needs --agency ID\n");
        return 2;
    }
    char err[4200];
    if (sbi_ca_revoke(args->dir, args->agency, args->serial, err, sizeof err) != SB_OK) {
        fprintf(stderr, "sharebus-cert: %s\n", err);
        return 1;
    }
    printf("revoked %s; reload the broker (sharebus-broker reload) to cut it off\n",
           args->agency);
    return 0;
}

static sbi_trust_t *s_trust(const char *dir)
{
    char err[4200];
    sbi_trust_t *trust = sbi_trust_new(dir, err, sizeof err);
    if (!trust)
        fprintf(stderr, "sharebus-cert: %s\n", err);
    return trust;
}

static int cmd_list(args_t *args)
{
    sbi_trust_t *trust = s_trust(args->dir);
    if (!trust)
        return 1;
    if (!args->json)
        printf("%-20s %-7s %-8s %-13s %-20s %s\n", "AGENCY", "SERIAL", "KIND", "STATE",
               "NOT AFTER", "NAME");
    for (size_t i = 0; i < sbi_trust_count(trust); i++) {
        const sbi_cert_t *cert = sbi_trust_at(trust, i);
        char when[32];
        if (args->json)
            s_print_json(s_cert_json(cert, s_state(trust, cert)));
        else
            printf("%-20s %-7" PRIu64 " %-8s %-13s %-20s %s\n", cert->agency, cert->serial,
                   cert->kind == SBI_CERT_BROKER ? "broker" : "agency", s_state(trust, cert),
                   sbi_time_format(cert->not_after_ms, when, sizeof when), cert->name);
    }
    sbi_trust_destroy(&trust);
    return 0;
}

static int s_load(const char *file, sbi_cert_t *cert)
{
    int rc = sbi_cert_load(file, cert);
    if (rc != SB_OK)
        fprintf(stderr, "sharebus-cert: %s: %s\n", file,
                rc == SB_EIO ? strerror(errno)
                : rc == SB_EMALFORMED ? "not a sharebus certificate" : sb_strerror(rc));
    return rc;
}

static int cmd_show(args_t *args)
{
    sbi_cert_t cert;
    if (s_load(args->file, &cert) != SB_OK)
        return 1;
    json_object *obj = s_cert_json(&cert, NULL);
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
    sbi_cert_t cert;
    if (s_load(args->file, &cert) != SB_OK)
        return 1;
    sbi_trust_t *trust = s_trust(args->dir);
    if (!trust)
        return 1;
    int rc = sbi_cert_verify(&cert, sbi_trust_root(trust));
    if (rc == SB_OK)
        rc = sbi_trust_check(trust, &cert, sbi_now_ms());
    sbi_trust_destroy(&trust);
    if (rc != SB_OK) {
        fprintf(stderr, "sharebus-cert: %s: %s\n", args->file,
                rc == SB_EBADCERT ? "signature does not verify under this root (tampered, "
                                    "or issued by another root)"
                                  : sb_strerror(rc));
        return 1;
    }
    printf("%s: valid certificate of %s (serial %" PRIu64 ")\n", args->file, cert.agency,
           cert.serial);
    return 0;
}

static const command_t s_commands[] = {
    {"init", cmd_init, "init --dir DIR"},
    {"issue", cmd_issue,
     "issue --dir DIR (--agency ID --name NAME | --broker) [--days N] [--replace]"},
    {"revoke", cmd_revoke, "revoke --dir DIR --agency ID [--serial N]"},
    {"list", cmd_list, "list --dir DIR [--json]"},
    {"show", cmd_show, "show FILE [--json]"},
    {"verify", cmd_verify, "verify FILE --dir DIR"},
};
#define S_NCOMMANDS (sizeof s_commands / sizeof s_commands[0])

static int s_usage(FILE *out, int status)
{
    fprintf(out, "usage: sharebus-cert COMMAND [OPTIONS]\n");
    for (size_t i = 0; i < S_NCOMMANDS; i++)
        fprintf(out, "       sharebus-cert %s\n", s_commands[i].usage);
    fprintf(out, "See sharebus-cert(1).\n");
    return status;
}

int main(int argc, char **argv)
{
    sbi_init();
    static const struct option options[] = {
        {"dir", required_argument, 0, 'd'},   {"agency", required_argument, 0, 'a'},
        {"name", required_argument, 0, 'n'},  {"days", required_argument, 0, 'D'},
        {"serial", required_argument, 0, 's'}, {"broker", no_argument, 0, 'b'},
        {"replace", no_argument, 0, 'r'},     {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    args_t args = {.days = 365};
    int opt;
    char *end;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'd': args.dir = optarg; break;
        case 'a': args.agency = optarg; break;
        case 'n': args.name = optarg; break;
        case 'D':
            args.days = (int) strtol(optarg, &end, 10);
            if (*end || args.days <= 0) {
                fprintf(stderr, "sharebus-cert: --days needs a positive number\n");
                return 2;
            }
            break;
        case 's':
            args.serial = strtoull(optarg, &end, 10);
            if (*end || !args.serial) {
                fprintf(stderr, "sharebus-cert: --serial needs a positive number\n");
                return 2;
            }
            break;
        case 'b': args.broker = true; break;
        case 'r': args.replace = true; break;
        case 'j': args.json = true; break;
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
        fprintf(stderr, "sharebus-cert: unknown command '%s'\n", name);
        return s_usage(stderr, 2);
    }
    bool needs_file = command->fn == cmd_show || command->fn == cmd_verify;
    if (needs_file)
        args.file = optind < argc ? argv[optind++] : NULL;
    if (optind < argc || (needs_file && !args.file)
        || (command->fn != cmd_show && !args.dir)) {
        fprintf(stderr, "usage: sharebus-cert %s\n", command->usage);
        return 2;
    }
    return command->fn(&args);
}
