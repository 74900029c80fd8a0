/*  sharebus-broker - the bus's central broker.

    sharebus-broker [run] --certs DIR --policy PDIR --data DDIR --bind tcp://HOST:PORT
                          [--skew MS] [--checkpoint-interval MS] [--log-level LEVEL]
                          [--map-max MIB] [--queue-max N] [--capture DIR]
    sharebus-broker reload --data DDIR
    sharebus-broker status --data DDIR [--json]
*/
#include <getopt.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

typedef struct {
    broker_config_t config;
    sbi_log_level_t level;
    bool json;
} args_t;

static int s_usage(FILE *out, int status)
{
    fprintf(out,
            "usage: sharebus-broker [run] --certs DIR --policy PDIR --data DDIR\n"
            "                             --bind tcp://HOST:PORT [--skew MS]\n"
            "                             [--checkpoint-interval MS] [--log-level LEVEL]\n"
            "                             [--map-max MIB] [--queue-max N] [--capture DIR]\n"
            "       sharebus-broker reload --data DDIR\n"
            "       sharebus-broker status --data DDIR [--json]\n"
            "See sharebus-broker(8).\n");
    return status;
}

static void s_on_hup(int sig)
{
    broker_reload_requested = 1;
}

static int cmd_run(args_t *a)
{
    broker_config_t *c = &a->config;
    if (!c->certs || !c->policy || !c->data || !c->bind)
        return s_usage(stderr, 2);
    sbi_log_setup("sharebus-broker", a->level);
    zsys_set_logstream(NULL);
    struct sigaction hup = {.sa_handler = s_on_hup};
    sigaction(SIGHUP, &hup, NULL);
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
    int rc = status && json && strcmp(status, "OK") == 0 ? 0 : 1;
    if (rc == 0 && a->json)
        puts(json);
    else if (rc == 0) {
        json_object *obj = json_tokener_parse(json);
        json_object_object_foreach(obj, key, value)
            printf("%-20s %s\n", key, json_object_to_json_string_ext(value, JSON_C_TO_STRING_PLAIN));
        json_object_put(obj);
    }
    zstr_free(&status);
    zstr_free(&json);
    zmsg_destroy(&reply);
    return rc;
}

int main(int argc, char **argv)
{
    sbi_init();
    static const struct option options[] = {
        {"certs", required_argument, 0, 'c'},  {"policy", required_argument, 0, 'p'},
        {"data", required_argument, 0, 'd'},   {"bind", required_argument, 0, 'b'},
        {"skew", required_argument, 0, 's'},   {"checkpoint-interval", required_argument, 0, 'i'},
        {"log-level", required_argument, 0, 'L'}, {"json", no_argument, 0, 'j'},
        {"capture", required_argument, 0, 'C'}, {"map-max", required_argument, 0, 'M'},
        {"queue-max", required_argument, 0, 'Q'},
        {"help", no_argument, 0, 'h'},         {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    args_t a = {.config = {.skew_ms = 30000, .checkpoint_ms = 10000, .queue_max = 1000000},
                .level = SBI_LOG_INFO};
    int opt;
    char *end;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'c': a.config.certs = optarg; break;
        case 'p': a.config.policy = optarg; break;
        case 'd': a.config.data = optarg; break;
        case 'b': a.config.bind = optarg; break;
        case 's':
        case 'i': {
            long v = strtol(optarg, &end, 10);
            if (*end || v <= 0 || v > 3600000) {
                fprintf(stderr, "sharebus-broker: --%s needs milliseconds (1..3600000)\n",
                        opt == 's' ? "skew" : "checkpoint-interval");
                return 2;
            }
            *(opt == 's' ? &a.config.skew_ms : &a.config.checkpoint_ms) = (int) v;
            break;
        }
        case 'L':
            if (sbi_log_level_parse(optarg, &a.level) != SB_OK) {
                fprintf(stderr, "sharebus-broker: --log-level: error, warning, notice, info or debug\n");
                return 2;
            }
            break;
        case 'j': a.json = true; break;
        case 'C': a.config.capture = optarg; break;
        case 'Q':
            a.config.queue_max = strtoull(optarg, &end, 10);
            if (*end || a.config.queue_max < 1) {
                fprintf(stderr, "sharebus-broker: --queue-max needs a number of events (>= 1)\n");
                return 2;
            }
            break;
        case 'M': {
            unsigned long long mib = strtoull(optarg, &end, 10);
            if (*end || mib < 1) {
                fprintf(stderr, "sharebus-broker: --map-max needs MiB (>= 1)\n");
                return 2;
            }
            a.config.map_max = (size_t) mib << 20;
            break;
        }
        case 'h': return s_usage(stdout, 0);
        case 'V': puts("sharebus-broker " SHAREBUS_VERSION); return 0;
        default: return s_usage(stderr, 2);
        }
    }
    const char *command = optind < argc ? argv[optind++] : "run";
    if (optind < argc)
        return s_usage(stderr, 2);
    if (strcmp(command, "run") == 0)
        return cmd_run(&a);
    if (!a.config.data)
        return s_usage(stderr, 2);
    if (strcmp(command, "reload") == 0)
        return cmd_reload(&a);
    if (strcmp(command, "status") == 0)
        return cmd_status(&a);
    fprintf(stderr, "sharebus-broker: unknown command '%s'\n", command);
    return s_usage(stderr, 2);
}
