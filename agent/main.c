/*  sharebus-agent - one agency's agent.

    sharebus-agent --agency ID --certs DIR --broker tcp://HOST:PORT
                   --listen ENDPOINT --data DDIR [--log-level LEVEL]
*/
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"

static int s_usage(FILE *out, int status)
{
    fprintf(out,
            "usage: sharebus-agent --agency ID --certs DIR --broker tcp://HOST:PORT\n"
            "                      --listen ENDPOINT --data DDIR [--log-level LEVEL]\n"
            "See sharebus-agent(8).\n");
    return status;
}

int main(int argc, char **argv)
{
    sbi_init();
    static const struct option options[] = {
        {"agency", required_argument, 0, 'a'}, {"certs", required_argument, 0, 'c'},
        {"broker", required_argument, 0, 'b'}, {"listen", required_argument, 0, 'l'},
        {"data", required_argument, 0, 'd'},   {"log-level", required_argument, 0, 'L'},
        {"help", no_argument, 0, 'h'},         {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    agent_config_t config = {0};
    sbi_log_level_t level = SBI_LOG_INFO;
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'a': config.agency = optarg; break;
        case 'c': config.certs = optarg; break;
        case 'b': config.broker = optarg; break;
        case 'l': config.listen = optarg; break;
        case 'd': config.data = optarg; break;
        case 'L':
            if (sbi_log_level_parse(optarg, &level) != SB_OK) {
                fprintf(stderr, "sharebus-agent: --log-level: error, warning, notice, info or debug\n");
                return 2;
            }
            break;
        case 'h': return s_usage(stdout, 0);
        case 'V': puts("sharebus-agent " SHAREBUS_VERSION); return 0;
        default: return s_usage(stderr, 2);
        }
    }
    if (optind < argc || !config.agency || !config.certs || !config.broker || !config.listen
        || !config.data)
        return s_usage(stderr, 2);
    if (!sbi_agency_valid(config.agency, false)) {
        fprintf(stderr, "sharebus-agent: invalid agency id '%s'\n", config.agency);
        return 2;
    }
    static char component[64];
    snprintf(component, sizeof component, "sharebus-agent[%s]", config.agency);
    sbi_log_setup(component, level);
    zsys_set_logstream(NULL);
    agent_t *agent = agent_new(&config);
    if (!agent)
        return 1;
    sbi_notice("agent of %s serving back-ends on %s, broker %s", config.agency, config.listen,
               config.broker);
    int rc = agent_run(agent);
    agent_destroy(&agent);
    return rc;
}
