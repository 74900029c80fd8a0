/*  provider - the provider back-end of the full-path benchmark: serves
    datasets through libsharebus and answers every request at once with a
    record whose one field, `data`, is a blob padded so that the record
    (its name, type and value, as packed on the wire) is SIZE bytes.

    provider --agent EP --serve DATASET=SIZE [--serve DATASET=SIZE ...]

    Runs until SIGINT or SIGTERM. Prints "serving DATASET" for each once the
    agent accepted it. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <czmq.h>

#include "sharebus.h"

#define S_SERVE_MAX 8
#define S_OVERHEAD 16 /* field name, type and length tags */

typedef struct {
    char *dataset;
    size_t size;
} s_serve_t;

typedef struct {
    s_serve_t serve[S_SERVE_MAX];
    int count;
    uint8_t *padding;
} s_provider_t;

static int s_handler(const sb_incoming_t *request, sb_record_t *reply, void *arg)
{
    s_provider_t *p = arg;
    const char *dataset = sb_incoming_dataset(request);
    for (int i = 0; i < p->count; i++)
        if (strcmp(p->serve[i].dataset, dataset) == 0) {
            size_t size = p->serve[i].size > S_OVERHEAD ? p->serve[i].size - S_OVERHEAD : 1;
            return sb_record_set_blob(reply, "data", p->padding, size);
        }
    return SB_ENOTFOUND;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {{"agent", required_argument, 0, 'a'},
                                            {"serve", required_argument, 0, 's'},
                                            {"help", no_argument, 0, 'h'},
                                            {0, 0, 0, 0}};
    s_provider_t p = {.count = 0};
    const char *agent = NULL;
    size_t largest = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'a': agent = optarg; break;
        case 's': {
            char *eq = strchr(optarg, '=');
            long size = eq ? atol(eq + 1) : 0;
            if (!eq || size <= 0 || size > (1 << 20) - 4096 || p.count == S_SERVE_MAX) {
                fprintf(stderr, "provider: --serve DATASET=SIZE (bytes, under 1 MiB)\n");
                return 2;
            }
            p.serve[p.count].dataset = strndup(optarg, (size_t)(eq - optarg));
            p.serve[p.count++].size = (size_t)size;
            if ((size_t)size > largest)
                largest = (size_t)size;
            break;
        }
        case 'h': puts("usage: provider --agent EP --serve DATASET=SIZE ..."); return 0;
        default: return 2;
        }
    }
    if (!agent || p.count == 0) {
        fprintf(stderr, "usage: provider --agent EP --serve DATASET=SIZE ...\n");
        return 2;
    }
    p.padding = malloc(largest);
    memset(p.padding, 'x', largest);
    sb_client_t *client = sb_client_new(agent);
    int rc = client ? SB_OK : SB_EINVAL;
    for (int i = 0; rc == SB_OK && i < p.count; i++) {
        /* The agent may not have the policy yet: retry for a while. */
        for (int tries = 0; tries < 100; tries++) {
            rc = sb_client_serve(client, p.serve[i].dataset);
            if (rc == SB_OK || zsys_interrupted)
                break;
            zclock_sleep(100);
        }
        if (rc == SB_OK) {
            printf("serving %s\n", p.serve[i].dataset);
            fflush(stdout);
        }
    }
    if (rc == SB_OK)
        rc = sb_client_run(client, s_handler, &p);
    if (rc != SB_OK)
        fprintf(stderr, "provider: %s\n", client ? sb_client_reason(client) : "bad endpoint");
    sb_client_destroy(&client);
    for (int i = 0; i < p.count; i++)
        free(p.serve[i].dataset);
    free(p.padding);
    return rc == SB_OK ? 0 : 1;
}
