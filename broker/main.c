/*  sharebus-broker - the bus's central broker.

    sharebus-broker [run] --certs DIR --policy PDIR --data DDIR --bind tcp://HOST:PORT
                          [--skew MS] [--checkpoint-interval MS] [--log-level LEVEL]
                          [--map-max MIB] [--wal-size MIB] [--queue-max N]
                          [--capture DIR] [--metrics HOST:PORT] [--config FILE]
    sharebus-broker reload --data DDIR
    sharebus-broker status --data DDIR [--json]
    sharebus-broker backup --data DDIR --to DIR
*/
#include <getopt.h>
#include <json-c/json.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "config.h"

typedef struct {
    broker_config_t config;
    sbi_log_level_t level;
    bool json;
    const char *to;           /* backup */
    char given[32];           /* the options on the command line, as their getopt values */
} args_t;

typedef int(s_command_fn)(args_t *a);

static int s_usage(FILE *out, int status)
{
    fprintf(out,
            "usage: sharebus-broker [run] --certs DIR --policy PDIR --data DDIR\n"
            "                             --bind tcp://HOST:PORT [--skew MS]\n"
            "                             [--checkpoint-interval MS] [--log-level LEVEL]\n"
            "                             [--map-max MIB] [--wal-size MIB] [--queue-max N]\n"
            "                             [--capture CDIR] [--metrics HOST:PORT] [--config FILE]\n"
            "       sharebus-broker reload --data DDIR\n"
            "       sharebus-broker status --data DDIR [--json]\n"
            "       sharebus-broker backup --data DDIR --to DIR\n"
            "Every command takes --config FILE; flags override the file.\n"
            "See sharebus-broker(8).\n");
    return status;
}

static int cmd_run(args_t *a)
{
    broker_config_t *c = &a->config;
    if (!c->certs || !c->policy || !c->bind)
        return s_usage(stderr, 2);
    sbi_log_setup("sharebus-broker", a->level);
    zsys_set_logstream(NULL);
    /* SIGHUP asks for a reload. It is blocked before any thread exists, so
       in every thread: it never interrupts a poll (which zpoller reports as
       termination) nor stops zauth's actor; the broker's loop takes it. */
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hup, NULL);
    broker_t *broker = broker_new(c);
    if (!broker)
        return 1;
    sbi_notice("broker listening on %s", c->bind);
    int rc = broker_run(broker);
    broker_destroy(&broker);
    return rc;
}

/* Sends one admin command and returns the reply, or NULL after 10 s. */
static zmsg_t *s_admin(const char *data, const char *command)
{
    zsock_t *req = zsock_new(ZMQ_REQ);
    zsock_set_rcvtimeo(req, 10000);
    zsock_set_linger(req, 0);
    zmsg_t *reply = NULL;
    if (zsock_connect(req, "ipc://%s/admin.sock", data) == 0 && zstr_send(req, command) == 0)
        reply = zmsg_recv(req);
    zsock_destroy(&req);
    if (!reply)
        fprintf(stderr, "sharebus-broker: no answer on %s/admin.sock: is the broker running "
                        "with --data %s?\n", data, data);
    return reply;
}

static int cmd_reload(args_t *a)
{
    zmsg_t *reply = s_admin(a->config.data, "RELOAD");
    if (!reply)
        return 1;
    char *status = zmsg_popstr(reply);
    int rc = status && strcmp(status, "OK") == 0 ? 0 : 1;
    char *line;
    if (rc == 0) {
        line = zmsg_popstr(reply);
        printf("policy reloaded: version %s\n", line ? line : "?");
        zstr_free(&line);
    }
    else {
        fprintf(stderr, "sharebus-broker: reload refused, the old policy stays:\n");
        while ((line = zmsg_popstr(reply))) {
            fprintf(stderr, "  %s\n", line);
            zstr_free(&line);
        }
    }
    zstr_free(&status);
    zmsg_destroy(&reply);
    return rc;
}

static int cmd_status(args_t *a)
{
    zmsg_t *reply = s_admin(a->config.data, "STATUS");
    if (!reply)
        return 1;
    char *status = zmsg_popstr(reply), *json = zmsg_popstr(reply);
    json_object *obj = json ? json_tokener_parse(json) : NULL;
    int rc = status && obj && strcmp(status, "OK") == 0 ? 0 : 1;
    if (rc == 0 && a->json)
        puts(json);
    else if (rc == 0)
        broker_status_print(stdout, obj);
    else
        fprintf(stderr, "sharebus-broker: the broker's status does not read\n");
    json_object_put(obj);
    zstr_free(&status);
    zstr_free(&json);
    zmsg_destroy(&reply);
    return rc;
}

static int cmd_backup(args_t *a)
{
    if (!a->to)
        return s_usage(stderr, 2);
    return broker_backup(a->config.data, a->to) == SB_OK ? 0 : 1;
}

/* `options`: the getopt values of the flags the command uses; a flag it
   does not use is refused on the command line (a configuration file may
   hold every setting, for every command). */
static const struct {
    const char *name;
    s_command_fn *fn;
    const char *options;
    const char *help;
} s_commands[] = {
    {"run", cmd_run, "cpdbsiLCMQmWF", "run the broker (the default)"},
    {"reload", cmd_reload, "dF", "reload certificates and policy"},
    {"status", cmd_status, "djF", "print the running broker's state"},
    {"backup", cmd_backup, "dtF", "copy the store of the running broker"},
};

static const struct option s_options[] = {
    {"certs", required_argument, 0, 'c'},   {"policy", required_argument, 0, 'p'},
    {"data", required_argument, 0, 'd'},    {"bind", required_argument, 0, 'b'},
    {"skew", required_argument, 0, 's'},    {"checkpoint-interval", required_argument, 0, 'i'},
    {"log-level", required_argument, 0, 'L'}, {"json", no_argument, 0, 'j'},
    {"capture", required_argument, 0, 'C'}, {"map-max", required_argument, 0, 'M'},
    {"queue-max", required_argument, 0, 'Q'}, {"metrics", required_argument, 0, 'm'},
    {"wal-size", required_argument, 0, 'W'},
    {"to", required_argument, 0, 't'},      {"config", required_argument, 0, 'F'},
    {"help", no_argument, 0, 'h'},          {"version", no_argument, 0, 'V'},
    {0, 0, 0, 0}};

static bool s_command_known(const char *name)
{
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++)
        if (strcmp(name, s_commands[i].name) == 0)
            return true;
    return false;
}

/* What a configuration file may not set: per-invocation options. */
static const char *const s_not_in_files[] = {"config", "json", "to", "help", "version", NULL};

/* Sets one option from the command line or the configuration file. */
static int s_option(void *arg, int opt, const char *value, char *err, size_t size)
{
    args_t *a = arg;
    char *end;
    switch (opt) {
    case 'c': a->config.certs = value; break;
    case 'p': a->config.policy = value; break;
    case 'd': a->config.data = value; break;
    case 'b': a->config.bind = value; break;
    case 'C': a->config.capture = value; break;
    case 't': a->to = value; break;
    case 'j': a->json = true; break;
    case 's':
    case 'i': {
        long v = strtol(value, &end, 10);
        if (end == value || *end || v <= 0 || v > 3600000) {
            snprintf(err, size, "needs milliseconds (1..3600000)");
            return -1;
        }
        *(opt == 's' ? &a->config.skew_ms : &a->config.checkpoint_ms) = (int) v;
        break;
    }
    case 'L':
        if (sbi_log_level_parse(value, &a->level) != SB_OK) {
            snprintf(err, size, "error, warning, notice, info or debug");
            return -1;
        }
        break;
    case 'Q':
        a->config.queue_max = strtoull(value, &end, 10);
        if (end == value || *end || *value == '-' || a->config.queue_max < 1) {
            snprintf(err, size, "needs a number of events (>= 1)");
            return -1;
        }
        break;
    case 'M': {
        unsigned long long mib = strtoull(value, &end, 10);
        if (end == value || *end || *value == '-' || mib < 1 || mib > (1ull << 30)) {
            snprintf(err, size, "needs MiB (1..1073741824)");
            return -1;
        }
        a->config.map_max = (size_t) mib << 20;
        break;
    }
    case 'W': {
        unsigned long long mib = strtoull(value, &end, 10);
        if (end == value || *end || *value == '-' || mib < 1 || mib > 4096) {
            snprintf(err, size, "needs MiB (1..4096)");
            return -1;
        }
        a->config.wal_size = (size_t) mib << 20;
        break;
    }
    case 'm':
        if (broker_metrics_endpoint(value, NULL, 0) != SB_OK) {
            snprintf(err, size, "needs HOST:PORT, such as 127.0.0.1:9474");
            return -1;
        }
        a->config.metrics = value;
        break;
    default:
        snprintf(err, size, "not a setting");
        return -1;
    }
    return 0;
}

static const char *s_option_name(int opt)
{
    for (const struct option *o = s_options; o->name; o++)
        if (o->val == opt)
            return o->name;
    return "?";
}

/* Options, the configuration file first: 0, or the exit status. */
static int s_parse(int argc, char **argv, args_t *a, sbi_config_t **config_p)
{
    char err[1024];
    const char *path = sbi_config_arg(argc, argv);
    if (path) {
        *config_p = sbi_config_load(path, err, sizeof err);
        if (!*config_p
            || sbi_config_apply(*config_p, s_options, s_not_in_files, s_option, a, err,
                                sizeof err) != 0) {
            fprintf(stderr, "sharebus-broker: %s\n", err);
            return 2;
        }
    }
    int opt;
    while ((opt = getopt_long(argc, argv, "", s_options, NULL)) != -1) {
        switch (opt) {
        case 'F': break;   /* read above */
        case 'h': return s_usage(stdout, 0) + 256;
        case 'V': puts("sharebus-broker " SHAREBUS_VERSION); return 256;
        case '?': return s_usage(stderr, 2);
        default:
            if (s_option(a, opt, optarg, err, sizeof err) != 0) {
                fprintf(stderr, "sharebus-broker: --%s: %s\n", s_option_name(opt), err);
                return 2;
            }
        }
        if (!strchr(a->given, opt) && strlen(a->given) + 1 < sizeof a->given)
            a->given[strlen(a->given)] = (char) opt;
    }
    return 0;
}

int main(int argc, char **argv)
{
    sbi_init();
    args_t a = {.config = {.skew_ms = 30000, .checkpoint_ms = 10000, .queue_max = 1000000},
                .level = SBI_LOG_INFO};
    sbi_config_t *config = NULL;
    int rc = s_parse(argc, argv, &a, &config);
    if (rc != 0) {
        sbi_config_destroy(&config);
        return rc & 255;   /* 256: --help or --version, done */
    }
    const char *command = optind < argc ? argv[optind++] : "run";
    s_command_fn *fn = NULL;
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++)
        if (strcmp(command, s_commands[i].name) == 0) {
            fn = s_commands[i].fn;
            for (const char *o = a.given; fn && *o; o++)
                if (!strchr(s_commands[i].options, *o)) {
                    fprintf(stderr, "sharebus-broker: %s does not take --%s\n", command,
                            s_option_name(*o));
                    fn = NULL;
                }
        }
    if (!fn && !s_command_known(command))
        fprintf(stderr, "sharebus-broker: unknown command '%s'\n", command);
    rc = !fn || optind < argc || !a.config.data ? s_usage(stderr, 2) : fn(&a);
    sbi_config_destroy(&config);
    return rc;
}
