/*  renewal.c - a driver's-licence office back-end on sharebus.

    The licensing office (agency "koroad") renews a licence. At the counter
    the applicant consents to the office reading the vision and hearing
    results of their last national health checkup; this program records
    that consent through the office's agent, then asks the health insurer
    ("nhis") for exactly those fields and prints them.

    Build against the installed library:

        cc renewal.c $(pkg-config --cflags --libs sharebus) -o renewal

    Run it with the endpoint of the office's own agent and the applicant's
    national id:

        ./renewal ipc:///run/sharebus/koroad.sock 900101-1234567

    Exit status: 0 when the results were printed, 1 when they were not
    (the reason is on standard error), 2 on bad arguments.
*/
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include <sharebus.h>

#define DATASET "health.checkup.vision-hearing"
#define PURPOSE "driver-licence-renewal"
#define CONSENT_DAYS 90

/* Prints one field of `record` as "name: value". */
static void print_field(const sb_record_t *record, const char *name)
{
    const char *text;
    int64_t integer;
    double real;
    bool flag;
    const void *data;
    size_t size;
    switch (sb_record_type(record, name)) {
    case SB_FIELD_TEXT:
        if (sb_record_text(record, name, &text) == SB_OK)
            printf("  %-14s %s\n", name, text);
        break;
    case SB_FIELD_INTEGER:
        if (sb_record_integer(record, name, &integer) == SB_OK)
            printf("  %-14s %" PRId64 "\n", name, integer);
        break;
    case SB_FIELD_REAL:
        if (sb_record_real(record, name, &real) == SB_OK)
            printf("  %-14s %.1f\n", name, real);
        break;
    case SB_FIELD_FLAG:
        if (sb_record_flag(record, name, &flag) == SB_OK)
            printf("  %-14s %s\n", name, flag ? "yes" : "no");
        break;
    case SB_FIELD_BLOB:
        if (sb_record_blob(record, name, &data, &size) == SB_OK)
            printf("  %-14s (%zu bytes)\n", name, size);
        break;
    default:
        printf("  %-14s (not returned)\n", name);
    }
}

/* Records the applicant's consent: koroad may obtain DATASET for PURPOSE
   for the next CONSENT_DAYS days. */
static int record_consent(sb_client_t *client, const char *national_id)
{
    sb_consent_t consent = {
        .subject = national_id,
        .consumer = "koroad",
        .dataset = DATASET,
        .purpose = PURPOSE,
        .until_ms = ((uint64_t) time(NULL) + CONSENT_DAYS * 86400ULL) * 1000,
        .evidence = "consent form signed at the licensing counter",
    };
    char id[SB_CONSENT_ID_SIZE];
    int rc = sb_consent_grant(client, &consent, id);
    if (rc == SB_OK)
        printf("consent %s recorded, valid %d days\n", id, CONSENT_DAYS);
    else
        fprintf(stderr, "renewal: consent not recorded: %s\n", sb_client_reason(client));
    return rc;
}

/* Asks nhis for the checkup fields the renewal needs and prints them. */
static int fetch_checkup(sb_client_t *client, const char *national_id)
{
    static const char *const fields[] = {"exam_date", "vision_left", "vision_right",
                                         "hearing_left", "hearing_right"};
    const size_t n_fields = sizeof fields / sizeof fields[0];
    sb_request_t request = {
        .provider = "nhis",
        .dataset = DATASET,
        .purpose = PURPOSE,
        .subject = national_id,
        .fields = fields,
        .n_fields = n_fields,
        .timeout_ms = 3000,
    };
    sb_record_t *record = NULL;
    int rc = sb_request(client, &request, &record);
    switch (rc) {
    case SB_OK:
        printf("checkup results from nhis:\n");
        for (size_t i = 0; i < n_fields; i++)
            print_field(record, fields[i]);
        sb_record_destroy(&record);
        break;
    case SB_ENOTFOUND:
        /* nhis has no checkup for this person: test at the counter. */
        fprintf(stderr, "renewal: no checkup on record (%s): test vision and hearing here\n",
                sb_client_reason(client));
        break;
    case SB_EUNAVAILABLE:
    case SB_ETIMEOUT:
    case SB_ERATE:
        /* Passing conditions: the same request may succeed a little later. */
        fprintf(stderr, "renewal: try again shortly: %s\n", sb_client_reason(client));
        break;
    default:
        /* Refusals (denied, no-consent, ...) do not go away by retrying. */
        fprintf(stderr, "renewal: %s (%s)\n", sb_client_reason(client), sb_strerror(rc));
    }
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: renewal AGENT-ENDPOINT NATIONAL-ID\n");
        return 2;
    }
    sb_client_t *client = sb_client_new(argv[1]);
    if (!client) {
        fprintf(stderr, "renewal: %s: not an ipc:// or tcp:// endpoint\n", argv[1]);
        return 2;
    }
    int rc = record_consent(client, argv[2]);
    if (rc == SB_OK)
        rc = fetch_checkup(client, argv[2]);
    sb_client_destroy(&client);
    return rc == SB_OK ? 0 : 1;
}
