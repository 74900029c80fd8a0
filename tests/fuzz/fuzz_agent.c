/*  fuzz_agent - hostile frames from a back-end to a live agent.

    A real agent (agent_new: certificates from the CA library, its store,
    its sockets) with the example policy, whose connection to the broker
    leads nowhere, so that whatever it would send fails at once instead of
    queueing. Each input goes to agent_front_message as a frame from a
    back-end, through the decoder and every handler: requests, serving,
    answers, consent grant, revoke and list, publish, subscribe, acks.
    The agent's log transaction is dropped after each input, so the store
    does not grow with the run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent.h"
#include "ca.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char s_dir[64], s_certs[128], s_listen[160], s_data[128];
static agent_t *s_agent;

static void s_cleanup(void)
{
    agent_destroy(&s_agent);
    char command[128];
    snprintf(command, sizeof command, "rm -rf %s", s_dir);
    if (system(command) != 0)
        fprintf(stderr, "fuzz_agent: cannot remove %s\n", s_dir);
}

static void s_copy(const char *from, const char *to)
{
    char *text = NULL;
    size_t size = 0;
    if (sbi_file_read(from, SBI_FILE_MAX, &text, &size) != SB_OK
        || sbi_file_write(to, text, size, 0644, false) != SB_OK)
        abort();
    free(text);
}

static void s_setup(void)
{
    sbi_init();
    sbi_log_setup("fuzz_agent", SBI_LOG_ERROR);
    zsys_set_logstream(NULL);
    strcpy(s_dir, "/tmp/sb-fuzz-agent-XXXXXX");
    if (!mkdtemp(s_dir))
        abort();
    char policy[128], path[256], from[4200], err[512];
    const char *certs = s_certs;
    snprintf(s_certs, sizeof s_certs, "%s/certs", s_dir);
    if (sbi_ca_init(certs, err, sizeof err) != SB_OK
        || sbi_ca_issue(certs, SBI_CERT_BROKER, "broker", "broker", 30, false, NULL, err, sizeof err)
        || sbi_ca_issue(certs, SBI_CERT_AGENCY, "koroad", "koroad", 30, false, NULL, err, sizeof err)
        || sbi_ca_issue(certs, SBI_CERT_AGENCY, "nhis", "nhis", 30, false, NULL, err, sizeof err)
        || sbi_ca_issue(certs, SBI_CERT_AGENCY, "mois", "mois", 30, false, NULL, err, sizeof err)) {
        fprintf(stderr, "fuzz_agent: %s\n", err);
        abort();
    }
    snprintf(policy, sizeof policy, "%s/policy", s_dir);
    mkdir(policy, 0700);
    const char *files[] = {"health.yaml", "events.yaml"};
    for (int i = 0; i < 2; i++) {
        snprintf(from, sizeof from, "%s/policy/examples/%s", SB_SOURCE_ROOT, files[i]);
        snprintf(path, sizeof path, "%s/%s", policy, files[i]);
        s_copy(from, path);
    }
    snprintf(s_listen, sizeof s_listen, "ipc://%s/koroad.sock", s_dir);
    snprintf(s_data, sizeof s_data, "%s/agent", s_dir);
    agent_config_t config = {.agency = "koroad", .certs = s_certs,
                             .broker = "tcp://127.0.0.1:9", .listen = s_listen, .data = s_data};
    s_agent = agent_new(&config);
    if (!s_agent)
        abort();
    zsock_disconnect(s_agent->bus, "tcp://127.0.0.1:9");
    zlistx_t *errors = zlistx_new();
    zlistx_set_destructor(errors, (zlistx_destructor_fn *) zstr_free);
    s_agent->policy = sbi_policy_load(policy, NULL, errors);
    zlistx_destroy(&errors);
    if (!s_agent->policy)
        abort();
    atexit(s_cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!s_agent)
        s_setup();
    if (size > SBI_FRAME_MAX)
        return 0;
    zframe_t *client = zframe_new("back-end", 8), *frame = zframe_new(data, size);
    agent_front_message(s_agent, client, frame);
    zframe_destroy(&client);
    zframe_destroy(&frame);
    agent_log_drop(s_agent);
    agent_front_sweep(s_agent);
    return 0;
}
