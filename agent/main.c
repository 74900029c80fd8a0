/*  sharebus-agent - one agency's agent.

    sharebus-agent --agency ID --certs DIR --broker tcp://HOST:PORT
                   --listen ENDPOINT --data DDIR [--log-level LEVEL] [--config FILE]

    SIGHUP reloads the certificate directory and moves to a newer
    certificate of the agency (see keys.c).
*/
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "config.h"

typedef struct {
    agent_config_t config;
    sbi_log_level_t level;
} args_t;

static int s_usage(FILE *out, int status)
{
    fprintf(out,
            "usage: sharebus-agent --agency ID --certs DIR --broker tcp://HOST:PORT\n"
            "                      --listen ENDPOINT --data DDIR [--log-level LEVEL]\n"
            "                      [--config FILE]\n"
            "Flags override the settings of --config FILE. SIGHUP reloads certificates.\n"
            "See sharebus-agent(8).\n");
    return status;
}

static const struct option s_options[] = {
    {"agency", required_argument, 0, 'a'}, {"certs", required_argument, 0, 'c'},
    {"broker", required_argument, 0, 'b'}, {"listen", required_argument, 0, 'l'},
    {"data", required_argument, 0, 'd'},   {"log-level", required_argument, 0, 'L'},
    {"config", required_argument, 0, 'F'}, {"help", no_argument, 0, 'h'},
    {"version", no_argument, 0, 'V'},      {0, 0, 0, 0}};

static const char *const s_not_in_files[] = {"config", "help", "version", NULL};

static int s_option(void *arg, int opt, const char *value, char *err, size_t size)
{
    args_t *a = arg;
    switch (opt) {
    case 'a':
        if (!sbi_agency_valid(value, false)) {
            snprintf(err, size, "invalid agency id '%s'", value);
            return -1;
        }
        a->config.agency = value;
        break;
    case 'c': a->config.certs = value; break;
    case 'b': a->config.broker = value; break;
    case 'l': a->config.listen = value; break;
    case 'd': a->config.data = value; break;
    case 'L':
        if (sbi_log_level_parse(value, &a->level) != SB_OK) {
            snprintf(err, size, "error, warning, notice, info or debug");
            return -1;
        }
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

/* Options, the configuration file first: 0, or the exit status + 1. */
static int s_parse(int argc, char **argv, args_t *a, sbi_config_t **config_p)
{
    char err[1024];
    const char *path = sbi_config_arg(argc, argv);
    if (path) {
        *config_p = sbi_config_load(path, err, sizeof err);
        if (!*config_p
            || sbi_config_apply(*config_p, s_options, s_not_in_files, s_option, a, err,
                                sizeof err) != 0) {
            fprintf(stderr, "sharebus-agent: %s\n", err);
            return 3;
        }
    }
    int opt;
    while ((opt = getopt_long(argc, argv, "", s_options, NULL)) != -1) {
        switch (opt) {
        case 'F': break;   /* read above */
        case 'h': return s_usage(stdout, 0) + 1;
        case 'V': puts("sharebus-agent " SHAREBUS_VERSION); return 1;
        case '?': return s_usage(stderr, 2) + 1;
        default:
            if (s_option(a, opt, optarg, err, sizeof err) != 0) {
                fprintf(stderr, "sharebus-agent: --%s: %s\n", s_option_name(opt), err);
                return 3;
            }
        }
    }
    const agent_config_t *c = &a->config;
    if (optind < argc || !c->agency || !c->certs || !c->broker || !c->listen || !c->data)
        return s_usage(stderr, 2) + 1;
    return 0;
}

int main(int argc, char **argv)
{
    sbi_init();
    args_t a = {.level = SBI_LOG_INFO};
    sbi_config_t *config = NULL;
    int rc = s_parse(argc, argv, &a, &config);
    if (rc != 0) {
        sbi_config_destroy(&config);
        return rc - 1;
    }
    static char component[64];
    snprintf(component, sizeof component, "sharebus-agent[%s]", a.config.agency);
    sbi_log_setup(component, a.level);
    zsys_set_logstream(NULL);
    /* SIGHUP asks for a reload. Blocked before any thread exists, so in
       every thread: it never interrupts a poll (which zpoller takes for
       termination); the agent's loop takes it (agent_keys_tick). */
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hup, NULL);
    agent_t *agent = agent_new(&a.config);
    if (agent) {
        sbi_notice("agent of %s serving back-ends on %s, broker %s", a.config.agency,
                   a.config.listen, a.config.broker);
        rc = agent_run(agent);
        agent_destroy(&agent);
    }
    else
        rc = 1;
    sbi_config_destroy(&config);
    return rc;
}
