/*  load - sustained request traffic through libsharebus, for fault tests.

    load --agent EP --provider ID --dataset D --purpose P --subject ID
         [--fields a,b] [--inflight N] [--count N] [--timeout MS]

    Keeps N requests in flight until --count answers came (0 = until
    SIGTERM), then prints "answers N" and one "KIND COUNT" line per outcome
    ("ok" for records). On SIGTERM it stops sending and waits (up to the
    timeout and two seconds more) for the answers of what it sent, and
    prints "sent N" on stderr: equal to "answers N", no request was lost. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <czmq.h>

#include "sharebus.h"

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"agent", required_argument, 0, 'a'},   {"provider", required_argument, 0, 'p'},
        {"dataset", required_argument, 0, 'd'}, {"purpose", required_argument, 0, 'P'},
        {"subject", required_argument, 0, 's'}, {"fields", required_argument, 0, 'f'},
        {"inflight", required_argument, 0, 'n'}, {"count", required_argument, 0, 'c'},
        {"timeout", required_argument, 0, 't'}, {0, 0, 0, 0}};
    const char *agent = NULL, *fields_arg = NULL;
    sb_request_t request = {.timeout_ms = 2000};
    long inflight = 16, count = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'a': agent = optarg; break;
        case 'p': request.provider = optarg; break;
        case 'd': request.dataset = optarg; break;
        case 'P': request.purpose = optarg; break;
        case 's': request.subject = optarg; break;
        case 'f': fields_arg = optarg; break;
        case 'n': inflight = atol(optarg); break;
        case 'c': count = atol(optarg); break;
        case 't': request.timeout_ms = atoi(optarg); break;
        default: return 2;
        }
    }
    const char *fields[1] = {fields_arg};
    request.fields = fields_arg ? fields : NULL;
    request.n_fields = fields_arg ? 1 : 0;
    sb_client_t *client = agent ? sb_client_new(agent) : NULL;
    if (!client || inflight < 1)
        return 2;
    long outcomes[1 - SB_ERROR_MIN] = {0}, answers = 0, sent = 0;
    while (!zsys_interrupted && (count == 0 || answers < count)) {
        while (sent - answers < inflight && (count == 0 || sent < count)) {
            if (sb_request_send(client, &request, NULL) != SB_OK)
                break;
            sent++;
        }
        sb_result_t result;
        int rc = sb_result_recv(client, &result, 500);
        if (rc == SB_ETIMEOUT)
            continue;
        if (rc != SB_OK)
            break;
        answers++;
        outcomes[-result.code]++;
        sb_record_destroy(&result.record);
    }
    /* Stopped: every request sent gets its answer, or is counted lost. */
    int64_t end = zclock_mono() + request.timeout_ms + 2000;
    while (answers < sent && zclock_mono() < end) {
        sb_result_t result;
        int rc = sb_result_recv(client, &result, 200);
        if (rc == SB_ETIMEOUT || rc == SB_EINTERNAL)
            continue;
        if (rc != SB_OK)
            break;
        answers++;
        outcomes[-result.code]++;
        sb_record_destroy(&result.record);
    }
    printf("answers %ld\n", answers);
    for (int i = 0; i <= -SB_ERROR_MIN; i++)
        if (outcomes[i])
            printf("%s %ld\n", i == 0 ? "ok" : sb_errname(-i), outcomes[i]);
    fprintf(stderr, "sent %ld\n", sent);
    sb_client_destroy(&client);
    return 0;
}
