/*  bench_audit - how fast the audit log appends, answers and verifies.

    bench-audit [--records N] [--batch B] [--dir DIR] [--keep]
    bench-audit --queries-only [--cold] --dir DIR

    Appends N realistic records (default 1,000,000) in durable commits of B
    (default 100) to DIR/store (default a temporary directory, removed at
    the end unless --keep), growing the map when it fills as the broker
    does; then times queries by subject (100 subjects, counting the pages
    read from the disk, then the same 100 again from the page cache; the
    store opened for random reads, as `sharebus-audit query --subject`
    opens it) and by agency, and a full verify.
    With --queries-only, times the queries alone on the log a --keep run
    left in DIR; with --cold, after evicting its pages from the page cache
    (posix_fadvise) before each kind of query, as for a log larger than the
    machine's memory.
    Prints one JSON object. Run from bench/ on a release build.
*/
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit_int.h"

#define S_AGENCIES 20
#define S_DATASETS 10
#define S_PURPOSES 5
#define S_SUBJECT_QUERIES 100

typedef struct {
    sbi_store_t *store;
    sbi_audit_t *audit;
    uint64_t records, batch, subjects;
    uint64_t base; /* seq of the first record this run adds */
    uint64_t grows;
    bool queries_only;     /* --queries-only: an existing log, queried */
    bool cold;             /* --cold: its pages evicted first */
    json_object *result;
} s_bench_t;

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double s_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void s_put(s_bench_t *b, const char *name, double value)
{
    json_object_object_add(b->result, name, json_object_new_double(value));
}

static void s_subject_ref(uint64_t subject, uint8_t ref[SBI_HASH_SIZE])
{
    uint8_t in[8];
    sbi_be64_put(in, subject);
    crypto_generichash(ref, SBI_HASH_SIZE, in, sizeof in, NULL, 0);
}

static const char *s_agency(uint64_t n)
{
    static char names[S_AGENCIES][16];
    char *name = names[n % S_AGENCIES];
    if (!name[0])
        snprintf(name, 16, "agency-%02u", (unsigned)(n % S_AGENCIES));
    return name;
}

/* Record i: a routed request or its forwarded reply, about as big as the
   broker's (signed header and signature included). */
static void s_fill(Sharebus__AuditRecord *r, uint64_t i, uint8_t *store, char **fields)
{
    static const char *datasets[S_DATASETS] = {"health.checkup.vision-hearing",
                                               "vehicle.registration",
                                               "vehicle.insurance",
                                               "vehicle.repairs",
                                               "resident.address",
                                               "tax.income",
                                               "police.incidents",
                                               "education.degrees",
                                               "employment.insurance",
                                               "welfare.benefits"};
    static const char *purposes[S_PURPOSES] = {"driver-licence-renewal", "tax-audit",
                                               "investigation", "benefit-eligibility",
                                               "vehicle-transfer"};
    uint8_t *id = store, *ref = store + 16, *hash = store + 48, *header = store + 80,
            *sig = store + 336;
    sharebus__audit_record__init(r);
    bool reply = i % 2;
    r->kind = reply ? SHAREBUS__AUDIT_KIND__AUDIT_REPLY_FORWARDED
                    : SHAREBUS__AUDIT_KIND__AUDIT_REQUEST_ROUTED;
    r->time_ms = 1772355600000ull + i;
    sbi_be64_put(id, i);
    r->message_id = (ProtobufCBinaryData){16, id};
    if (reply)
        r->correlation_id = (ProtobufCBinaryData){16, id};
    r->from = (char *)s_agency(reply ? i * 7 + 3 : i * 7);
    r->to = (char *)s_agency(reply ? i * 7 : i * 7 + 3);
    r->dataset = (char *)datasets[(i / 2) % S_DATASETS];
    r->purpose = (char *)purposes[(i / 2) % S_PURPOSES];
    r->subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, ref};
    r->fields_requested = fields;
    r->n_fields_requested = 5;
    r->decision = SHAREBUS__DECISION__DECISION_ALLOW;
    r->rule_id = "licence-renewal-uses-checkup";
    r->consent_id = "c-2026-000123";
    r->payload_hash = (ProtobufCBinaryData){SBI_HASH_SIZE, hash};
    r->header = (ProtobufCBinaryData){256, header};
    r->signature = (ProtobufCBinaryData){64, sig};
}

/* One batch in one durable commit; on a full map, grow and redo it. */
static int s_batch(s_bench_t *b, uint64_t first, uint64_t n, uint8_t *store, char **fields)
{
    for (;;) {
        MDB_txn *txn = NULL;
        int rc = sbi_store_begin(b->store, true, &txn);
        for (uint64_t i = first; rc == SB_OK && i < first + n; i++) {
            Sharebus__AuditRecord r;
            s_fill(&r, i, store, fields);
            s_subject_ref((i / 2) % b->subjects, store + 16);
            rc = sbi_audit_append(b->audit, txn, &r);
        }
        if (rc == SB_OK)
            rc = sbi_store_code(mdb_txn_commit(txn));
        else if (txn)
            mdb_txn_abort(txn);
        if (rc == SB_OK) {
            sbi_audit_commit(b->audit);
            return SB_OK;
        }
        sbi_audit_abort(b->audit);
        if (rc != SB_EFULL || sbi_store_grow(b->store) != SB_OK)
            return rc;
        b->grows++;
    }
}

static int s_append(s_bench_t *b)
{
    static char *fields[] = {"exam_date", "vision_left", "vision_right", "hearing_left",
                             "hearing_right"};
    uint8_t store[400];
    randombytes_buf(store, sizeof store);
    double start = s_now();
    for (uint64_t done = 0; done < b->records; done += b->batch) {
        uint64_t n = b->records - done < b->batch ? b->records - done : b->batch;
        int rc = s_batch(b, b->base + done, n, store, fields);
        if (rc != SB_OK) {
            fprintf(stderr, "bench-audit: append: %s\n", sb_strerror(rc));
            return rc;
        }
    }
    double secs = s_now() - start;
    s_put(b, "append_s", secs);
    s_put(b, "append_records_per_s", (double)b->records / secs);
    s_put(b, "commits_per_s", (double)((b->records + b->batch - 1) / b->batch) / secs);
    json_object_object_add(b->result, "map_grows", json_object_new_uint64(b->grows));
    return SB_OK;
}

static int s_count(const Sharebus__AuditRecord *record, void *arg)
{
    (void)record;
    (*(uint64_t *)arg)++;
    return 0;
}

static void s_queries_subject(s_bench_t *b)
{
    uint8_t ref[SBI_HASH_SIZE];
    uint32_t subjects[S_SUBJECT_QUERIES];
    for (int q = 0; q < S_SUBJECT_QUERIES; q++)
        subjects[q] = randombytes_uniform((uint32_t)b->subjects);
    /* The same subjects twice: as they come (from the disk, where the
       log's pages are not in memory), then again from the page cache.
       Major faults are the pages the first pass read from the disk. */
    for (int pass = 0; pass < 2; pass++) {
        uint64_t found = 0;
        struct rusage before, after;
        getrusage(RUSAGE_SELF, &before);
        double start = s_now();
        for (int q = 0; q < S_SUBJECT_QUERIES; q++) {
            s_subject_ref(subjects[q], ref);
            sbi_audit_filter_t filter = {.subject_ref = ref};
            if (sbi_audit_query(b->audit, &filter, s_count, &found) != SB_OK)
                fprintf(stderr, "bench-audit: subject query failed\n");
        }
        double ms = (s_now() - start) * 1000 / S_SUBJECT_QUERIES;
        getrusage(RUSAGE_SELF, &after);
        if (pass == 0) {
            s_put(b, "query_subject_ms", ms);
            s_put(b, "query_subject_records", (double)found / S_SUBJECT_QUERIES);
            s_put(b, "query_subject_disk_reads",
                  (double)(after.ru_majflt - before.ru_majflt) / S_SUBJECT_QUERIES);
        } else
            s_put(b, "query_subject_again_ms", ms);
    }
}

static void s_queries_agency(s_bench_t *b)
{
    uint64_t found = 0;
    double start;
    sbi_audit_filter_t page = {.agency = s_agency(3), .limit = 100};
    start = s_now();
    if (sbi_audit_query(b->audit, &page, s_count, &found) != SB_OK)
        fprintf(stderr, "bench-audit: agency query failed\n");
    s_put(b, "query_agency_first_100_ms", (s_now() - start) * 1000);
    sbi_audit_filter_t all = {.agency = s_agency(3)};
    found = 0;
    start = s_now();
    if (sbi_audit_query(b->audit, &all, s_count, &found) != SB_OK)
        fprintf(stderr, "bench-audit: agency query failed\n");
    double secs = s_now() - start;
    s_put(b, "query_agency_all_ms", secs * 1000);
    json_object_object_add(b->result, "query_agency_records", json_object_new_uint64(found));
    s_put(b, "query_agency_records_per_s", (double)found / secs);
}

static int s_verify(s_bench_t *b)
{
    sbi_keys_t keys;
    sbi_keys_generate(&keys, SBI_CERT_BROKER);
    strcpy(keys.cert.agency, "broker");
    MDB_txn *txn;
    Sharebus__Checkpoint *cp = NULL;
    int rc = sbi_store_begin(b->store, true, &txn);
    if (rc == SB_OK && (rc = sbi_audit_checkpoint(b->audit, txn, &keys, &cp)) == SB_OK)
        rc = sbi_store_code(mdb_txn_commit(txn));
    else if (rc == SB_OK)
        mdb_txn_abort(txn);
    if (cp)
        sharebus__checkpoint__free_unpacked(cp, NULL);
    sbi_audit_report_t report;
    double start = s_now(), cpu = s_cpu();
    if (rc == SB_OK)
        rc = sbi_audit_verify(b->audit, NULL, NULL, 0, &report); /* earlier runs' keys */
    double secs = s_now() - start;
    cpu = s_cpu() - cpu;
    sbi_keys_wipe(&keys);
    if (rc != SB_OK) {
        fprintf(stderr, "bench-audit: verify: %s (%s at %" PRIu64 ": %s)\n", sb_strerror(rc),
                sbi_audit_fault_name(report.fault), report.seq, report.detail);
        return rc;
    }
    s_put(b, "verify_s", secs);
    s_put(b, "verify_records_per_s", (double)report.records / secs);
    s_put(b, "verify_cpu_s", cpu);
    s_put(b, "verify_records_per_cpu_s", (double)report.records / cpu);
    json_object_object_add(b->result, "total_records", json_object_new_uint64(report.records));
    return SB_OK;
}

static int s_remove(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* Drops the store's pages from the page cache, so that queries read from
   the disk, as on a log larger than the machine's memory. */
static void s_evict(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/store/data.mdb", dir);
    int fd = open(path, O_RDONLY);
    if (fd < 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0)
        fprintf(stderr, "bench-audit: cannot evict %s from the page cache\n", path);
    if (fd >= 0)
        close(fd);
}

/* (Re)opens DIR/store with `flags`, as each sharebus-audit command opens
   it: SBI_STORE_RANDOM for a query by subject. */
static int s_open(s_bench_t *b, const char *dir, unsigned flags)
{
    char path[4096], err[4200];
    sbi_audit_close(&b->audit);
    sbi_store_close(&b->store);
    snprintf(path, sizeof path, "%s/store", dir);
    b->store = sbi_store_open(path, flags, 0, 0, SBI_AUDIT_DBS, err, sizeof err);
    b->audit = b->store ? sbi_audit_open(b->store, err, sizeof err) : NULL;
    if (!b->audit) {
        fprintf(stderr, "bench-audit: %s\n", err);
        sbi_store_close(&b->store);
        return 1;
    }
    return 0;
}

static int s_run(s_bench_t *b, const char *dir)
{
    if (s_open(b, dir, 0) != 0)
        return 1;
    b->base = sbi_audit_head(b->audit, NULL) + 1;
    b->result = json_object_new_object();
    json_object_object_add(b->result, "records", json_object_new_uint64(b->records));
    json_object_object_add(b->result, "batch", json_object_new_uint64(b->batch));
    int rc = SB_OK;
    if (b->queries_only) {
        /* The log of an earlier --keep run: its records and subjects. */
        b->records = sbi_audit_head(b->audit, NULL);
        b->subjects = b->records / 20 ? b->records / 20 : 1;
        if (b->cold)
            s_evict(dir);
    } else
        rc = s_append(b);
    if (rc == SB_OK && (rc = s_open(b, dir, SBI_STORE_RANDOM)) == SB_OK) {
        s_queries_subject(b);
        rc = s_open(b, dir, 0);
    }
    if (rc == SB_OK && b->cold)
        s_evict(dir);       /* the agency's queries from the disk as well */
    if (rc == SB_OK) {
        s_queries_agency(b);
        if (!b->queries_only)
            rc = s_verify(b);
    }
    if (!b->store) {
        json_object_put(b->result);
        return 1;
    }
    size_t map_size, used;
    sbi_store_usage(b->store, &map_size, &used);
    s_put(b, "store_mib", (double)used / (1 << 20));
    if (rc == SB_OK)
        puts(json_object_to_json_string_ext(b->result, JSON_C_TO_STRING_PLAIN));
    json_object_put(b->result);
    sbi_audit_close(&b->audit);
    sbi_store_close(&b->store);
    return rc == SB_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    sbi_init();
    sbi_log_setup("bench-audit", SBI_LOG_WARNING);
    static const struct option options[] = {
        {"records", required_argument, 0, 'n'}, {"batch", required_argument, 0, 'b'},
        {"dir", required_argument, 0, 'd'},     {"keep", no_argument, 0, 'k'},
        {"queries-only", no_argument, 0, 'q'},  {"cold", no_argument, 0, 'c'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    s_bench_t b = {.records = 1000000, .batch = 100};
    const char *dir = NULL;
    bool keep = false;
    int opt;
    char *end;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'n': b.records = strtoull(optarg, &end, 10); break;
        case 'b': b.batch = strtoull(optarg, &end, 10); break;
        case 'd': dir = optarg; break;
        case 'k': keep = true; break;
        case 'q': b.queries_only = true; break;
        case 'c': b.cold = true; break;
        case 'h':
            puts("usage: bench-audit [--records N] [--batch B] [--dir DIR] [--keep]\n"
                 "       bench-audit --queries-only [--cold] --dir DIR   (a log kept by --keep)");
            return 0;
        default: return 2;
        }
        if ((opt == 'n' || opt == 'b') && (*end || !*optarg || strtoll(optarg, NULL, 10) <= 0)) {
            fprintf(stderr, "bench-audit: --%s needs a positive number\n",
                    opt == 'n' ? "records" : "batch");
            return 2;
        }
    }
    b.subjects = b.records / 20 ? b.records / 20 : 1; /* ~10 exchanges each */
    if (b.queries_only && !dir) {
        fputs("bench-audit: --queries-only needs --dir\n", stderr);
        return 2;
    }
    char tmp[] = "/tmp/sb-bench-audit-XXXXXX";
    if (!dir && !(dir = mkdtemp(tmp))) {
        perror("bench-audit: mkdtemp");
        return 1;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        perror(dir);
        return 1;
    }
    int status = s_run(&b, dir);
    if (!keep && dir == tmp)
        nftw(dir, s_remove, 16, FTW_DEPTH | FTW_PHYS);
    return status;
}
