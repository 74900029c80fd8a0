/*  test_log.c - the agent's log thread (log.c): batches handed over commit
    in order and come back; a batch larger than the map grows it and is
    written again; one that cannot fit fails whole, comes back failed, and
    its events are marked again in the open batch. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "testing.h"

typedef struct {
    char dir[64];
    agent_t agent;
} s_fixture_t;

/* An agent with its store, audit chain, events and log thread, nothing
   else: what log.c uses. The store starts at `map` bytes, at most `max`. */
static void s_setup(s_fixture_t *f, size_t map, size_t max)
{
    strcpy(f->dir, "/tmp/sharebus-test-log.XXXXXX");
    if (!mkdtemp(f->dir))
        abort();
    memset(&f->agent, 0, sizeof f->agent);
    agent_t *a = &f->agent;
    char err[256];
    a->store = sbi_store_open(f->dir, 0, map, max, SBI_AUDIT_DBS + 4, err, sizeof err);
    CHECK(a->store != NULL);
    a->audit = a->store ? sbi_audit_open(a->store, err, sizeof err) : NULL;
    CHECK(a->audit != NULL);
    CHECK_EQ(agent_events_open(a), SB_OK);
    CHECK_EQ(agent_log_start(a), 0);
}

static void s_teardown(s_fixture_t *f)
{
    agent_t *a = &f->agent;
    agent_log_stop(a);
    agent_events_close(a);
    sbi_audit_close(&a->audit);
    sbi_store_close(&a->store);
    char command[128];
    snprintf(command, sizeof command, "rm -rf %s", f->dir);
    if (system(command) != 0)
        fprintf(stderr, "cannot remove %s\n", f->dir);
}

/* Appends one record of about `size` bytes of reason text. */
static void s_record(agent_t *a, size_t size)
{
    char *reason = malloc(size + 1);
    memset(reason, 'r', size);
    reason[size] = '\0';
    Sharebus__AuditRecord r = SHAREBUS__AUDIT_RECORD__INIT;
    r.kind = SHAREBUS__AUDIT_KIND__AUDIT_MESSAGE_SENT;
    r.from = "koroad";
    r.to = "nhis";
    r.reason = reason;
    r.time_ms = 1;
    size_t packed = sharebus__audit_record__get_packed_size(&r);
    sharebus__audit_record__pack(&r, agent_log_reserve(a, 'R', packed));
    free(reason);
}

/* An event marked seen in the open batch, to acknowledge once committed. */
static void s_mark(agent_t *a, uint8_t id_byte, const char *hex)
{
    uint8_t *op = agent_log_reserve(a, 'S', SBI_ID_SIZE + 8);
    memset(op, id_byte, SBI_ID_SIZE);
    memset(op + SBI_ID_SIZE, 0, 8);
    zlistx_add_end(agent_log_acks(a), strdup(hex));
    zhashx_update(a->marked, hex, (void *) (uintptr_t) 1);
}

/* Hands the open batch over and waits until every batch is back. */
static void s_commit_and_wait(agent_t *a)
{
    agent_log_commit(a);
    zpoller_t *poller = zpoller_new(a->logger, NULL);
    for (int i = 0; i < 200 && a->in_flight > 0; i++) {
        zpoller_wait(poller, 100);
        agent_log_settle(a);
    }
    zpoller_destroy(&poller);
    CHECK_EQ(a->in_flight, 0);
}

TEST(batches_commit_in_order)
{
    s_fixture_t f;
    s_setup(&f, 0, 0);
    agent_t *a = &f.agent;
    for (int b = 0; b < 3; b++) {
        for (int i = 0; i < 100; i++)
            s_record(a, 100);
        agent_log_commit(a);    /* three batches at the thread at once */
    }
    CHECK(!agent_log_pending(a));
    s_commit_and_wait(a);
    CHECK_EQ(sbi_audit_head(a->audit, NULL), 300);
    s_teardown(&f);
}

TEST(a_batch_larger_than_the_map_grows_it)
{
    s_fixture_t f;
    s_setup(&f, 1 << 20, 64 << 20);     /* 1 MiB, then 2, 4, ... */
    agent_t *a = &f.agent;
    for (int i = 0; i < 600; i++)
        s_record(a, 4000);              /* about 2.4 MiB of records */
    s_commit_and_wait(a);
    CHECK_EQ(sbi_audit_head(a->audit, NULL), 600);
    size_t map, used;
    sbi_store_usage(a->store, &map, &used);
    CHECK(map >= (size_t) 4 << 20);
    s_teardown(&f);
}

TEST(a_batch_that_cannot_fit_fails_and_its_events_are_marked_again)
{
    s_fixture_t f;
    s_setup(&f, 1 << 20, 1 << 20);      /* 1 MiB, never more */
    agent_t *a = &f.agent;
    for (int i = 0; i < 600; i++)
        s_record(a, 4000);
    s_mark(a, 0xab, "abababababababababababababababab");
    s_commit_and_wait(a);
    CHECK_EQ(sbi_audit_head(a->audit, NULL), 0);       /* nothing of it */
    /* The event waits in the open batch, marked again, still seen. */
    CHECK(agent_log_pending(a));
    CHECK_EQ(zlistx_size(agent_log_acks(a)), 1);
    CHECK(zhashx_lookup(a->marked, "abababababababababababababababab") != NULL);
    /* A batch that fits goes through after it. */
    agent_log_drop(a);
    s_record(a, 100);
    s_commit_and_wait(a);
    CHECK_EQ(sbi_audit_head(a->audit, NULL), 1);
    s_teardown(&f);
}

int main(int argc, char **argv)
{
    zsys_init();
    return RUN_TESTS();
}
