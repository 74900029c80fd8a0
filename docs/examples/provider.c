/*  provider.c - a health insurer's back-end serving checkup results on
    sharebus.

    The health insurer (agency "nhis") provides the dataset
    health.checkup.vision-hearing. This program registers with nhis's agent
    as the dataset's provider and answers every request the broker let
    through, from a small table standing in for the real database, until
    it gets SIGINT or SIGTERM.

    Build against the installed library:

        cc provider.c $(pkg-config --cflags --libs sharebus) -o provider

    Run it with the endpoint of nhis's own agent:

        ./provider ipc:///run/sharebus/nhis.sock

    Exit status: 0 after SIGINT or SIGTERM, 1 on failure, 2 on bad
    arguments.
*/
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <sharebus.h>

#define DATASET "health.checkup.vision-hearing"

/* The "database": one checkup per person, keyed by national id. */
typedef struct {
    const char *national_id;
    const char *exam_date;
    double vision_left, vision_right;
    const char *hearing_left, *hearing_right;
    const char *blood_pressure;
} checkup_t;

static const checkup_t checkups[] = {
    {"900101-1234567", "2025-10-02", 1.0, 0.8, "normal", "normal", "128/84"},
    {"850315-2345678", "2024-11-19", 0.5, 0.6, "normal", "reduced", "141/92"},
};

/* National ids compare without spaces and dashes, case-insensitively, the
   way the agents compare them. */
static void normalise(const char *id, char *out, size_t size)
{
    size_t n = 0;
    for (; *id && n + 1 < size; id++)
        if (*id != '-' && *id != ' ' && *id != '\t')
            out[n++] = (char) toupper((unsigned char) *id);
    out[n] = 0;
}

static const checkup_t *find_checkup(const char *national_id)
{
    char wanted[80], key[80];
    normalise(national_id, wanted, sizeof wanted);
    for (size_t i = 0; i < sizeof checkups / sizeof checkups[0]; i++) {
        normalise(checkups[i].national_id, key, sizeof key);
        if (strcmp(key, wanted) == 0)
            return &checkups[i];
    }
    return NULL;
}

/* Sets field `name` of `reply` from `c`. Unknown names are skipped. */
static int set_field(sb_record_t *reply, const checkup_t *c, const char *name)
{
    if (strcmp(name, "exam_date") == 0)
        return sb_record_set_text(reply, name, c->exam_date);
    if (strcmp(name, "vision_left") == 0)
        return sb_record_set_real(reply, name, c->vision_left);
    if (strcmp(name, "vision_right") == 0)
        return sb_record_set_real(reply, name, c->vision_right);
    if (strcmp(name, "hearing_left") == 0)
        return sb_record_set_text(reply, name, c->hearing_left);
    if (strcmp(name, "hearing_right") == 0)
        return sb_record_set_text(reply, name, c->hearing_right);
    if (strcmp(name, "blood_pressure") == 0)
        return sb_record_set_text(reply, name, c->blood_pressure);
    return SB_OK;
}

/* Answers one request: fills `reply` with the fields the consumer may
   receive, or refuses. The agent would drop any other field anyway; not
   reading what is not asked for is the better habit. The national id is
   never logged. */
static int answer(const sb_incoming_t *request, sb_record_t *reply, void *arg)
{
    (void) arg;
    const checkup_t *c = find_checkup(sb_incoming_subject(request));
    printf("request from %s for %s under rule %s: %s\n", sb_incoming_consumer(request),
           sb_incoming_purpose(request), sb_incoming_rule(request),
           c ? "answered" : "no such person");
    fflush(stdout);
    if (!c)
        return SB_ENOTFOUND;
    for (size_t i = 0; i < sb_incoming_field_count(request); i++) {
        int rc = set_field(reply, c, sb_incoming_field(request, i));
        if (rc != SB_OK)
            return rc;
    }
    return SB_OK;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: provider AGENT-ENDPOINT\n");
        return 2;
    }
    sb_client_t *client = sb_client_new(argv[1]);
    if (!client) {
        fprintf(stderr, "provider: %s: not an ipc:// or tcp:// endpoint\n", argv[1]);
        return 2;
    }
    int rc = sb_client_serve(client, DATASET);
    if (rc == SB_OK) {
        printf("serving %s\n", DATASET);
        fflush(stdout);
        rc = sb_client_run(client, answer, NULL);
    }
    if (rc != SB_OK)
        fprintf(stderr, "provider: %s\n", sb_client_reason(client));
    sb_client_destroy(&client);
    return rc == SB_OK ? 0 : 1;
}
