/*  consent-load - a million consents in a broker's store, and what a
    consent check costs among them.

    consent-load --data DDIR --certs DIR --agency ID --dataset D --purpose P
                 [--count N] [--days D] [--lookups M]

    Writes N consents (default 1,000,000), for subjects B0000000..B(N-1)
    (the subjects bench/requester --subjects draws from), into the store of
    a broker whose --data is DDIR, in the registry's own layout
    (broker/consent.c: consent.records, consent.match, consent.subject):
    each a Consent signed with ID's key, as a ConsentEntry with its grant
    in the history, exactly what the broker stores for a grant. The broker
    must be stopped while this runs. Audit records of the grants are not
    written: this loads a registry, it does not replay a history.

    Then times M (default 100,000) consent checks at random subjects, with
    the lookup the broker makes for every request whose rule requires
    consent (broker_consent_find: the match index by subject reference,
    consumer, dataset and purpose, then each consent it lists, decoded and
    checked), in one read transaction each. Prints one JSON object. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "stats.h"
#include "store.h"

#define S_BATCH 10000
#define S_ID_LEN 32

typedef struct {
    const char *data, *certs, *agency, *dataset, *purpose;
    long count, days, lookups;
} s_args_t;

typedef struct {
    const s_args_t *a;
    sbi_store_t *store;
    MDB_dbi records, match, subject;
    sbi_keys_t keys;
    uint8_t subject_key[32];
    uint64_t grows;
} s_loader_t;

static size_t s_match_key(uint8_t *key, size_t size, const uint8_t *ref, const char *consumer,
                          const char *dataset, const char *purpose)
{
    int n = snprintf((char *)key + SBI_HASH_SIZE, size - SBI_HASH_SIZE, "%s%c%s%c%s", consumer, 0,
                     dataset, 0, purpose);
    memcpy(key, ref, SBI_HASH_SIZE);
    return SBI_HASH_SIZE + (size_t)n;
}

static void s_subject(long i, char out[24])
{
    snprintf(out, 24, "B%07ld", i);
}

/* Consent `i`, signed and stored as the broker stores a grant. */
static int s_put(s_loader_t *l, MDB_txn *txn, long i, uint64_t now)
{
    const s_args_t *a = l->a;
    char subject[24], id[S_ID_LEN + 1];
    uint8_t ref[SBI_HASH_SIZE], raw[SBI_ID_SIZE];
    s_subject(i, subject);
    if (sbi_subject_ref(l->subject_key, subject, ref) != SB_OK)
        return SB_EINVAL;
    sbi_id_new(raw);
    sbi_hex(raw, SBI_ID_SIZE, id);
    Sharebus__Consent c = SHAREBUS__CONSENT__INIT;
    c.id = id;
    c.subject_ref = (ProtobufCBinaryData){SBI_HASH_SIZE, ref};
    c.consumer = (char *)a->agency;
    c.dataset = (char *)a->dataset;
    c.purpose = (char *)a->purpose;
    c.granted_ms = now;
    c.until_ms = now + (uint64_t)a->days * 86400000;
    c.recorded_by = (char *)a->agency;
    c.evidence = "bench/consent-load";
    uint8_t bytes[1024], signature[crypto_sign_BYTES];
    size_t size = sharebus__consent__pack(&c, bytes);
    crypto_sign_detached(signature, NULL, bytes, size, l->keys.sign_secret);
    Sharebus__SignedConsent sc = SHAREBUS__SIGNED_CONSENT__INIT;
    sc.consent = (ProtobufCBinaryData){size, bytes};
    sc.signature = (ProtobufCBinaryData){sizeof signature, signature};
    Sharebus__ConsentEvent event = SHAREBUS__CONSENT_EVENT__INIT, *history[] = {&event};
    event.state = SHAREBUS__CONSENT_STATE__CONSENT_ACTIVE;
    event.time_ms = now;
    event.by = (char *)a->agency;
    event.reason = "granted";
    Sharebus__ConsentEntry entry = SHAREBUS__CONSENT_ENTRY__INIT;
    entry.signed_ = &sc;
    entry.state = SHAREBUS__CONSENT_STATE__CONSENT_ACTIVE;
    entry.history = history;
    entry.n_history = 1;
    uint8_t packed[2048], kbuf[SBI_HASH_SIZE + 3 * (SBI_NAME_MAX + 1)];
    MDB_val key = {S_ID_LEN, id}, value = {sharebus__consent_entry__pack(&entry, packed), packed};
    MDB_val idval = {S_ID_LEN, id};
    int rc = mdb_put(txn, l->records, &key, &value, MDB_NOOVERWRITE);
    if (rc == 0) {
        MDB_val match = {s_match_key(kbuf, sizeof kbuf, ref, a->agency, a->dataset, a->purpose),
                         kbuf};
        rc = mdb_put(txn, l->match, &match, &idval, 0);
    }
    if (rc == 0) {
        MDB_val subj = {SBI_HASH_SIZE, ref};
        rc = mdb_put(txn, l->subject, &subj, &idval, 0);
    }
    return sbi_store_code(rc);
}

static int s_load(s_loader_t *l, json_object *out)
{
    int64_t start = bench_now_ns();
    uint64_t now = sbi_now_ms();
    for (long first = 0; first < l->a->count; first += S_BATCH) {
        long last = first + S_BATCH < l->a->count ? first + S_BATCH : l->a->count;
        for (;;) {
            MDB_txn *txn;
            int rc = sbi_store_begin(l->store, true, &txn);
            for (long i = first; rc == SB_OK && i < last; i++)
                rc = s_put(l, txn, i, now);
            if (rc == SB_OK)
                rc = sbi_store_code(mdb_txn_commit(txn));
            else
                mdb_txn_abort(txn);
            if (rc == SB_OK)
                break;
            if (rc != SB_EFULL || sbi_store_grow(l->store) != SB_OK) {
                fprintf(stderr, "consent-load: %s\n", sb_strerror(rc));
                return rc;
            }
            l->grows++;
        }
    }
    double secs = (double)(bench_now_ns() - start) / 1e9;
    json_object_object_add(out, "consents", json_object_new_int64(l->a->count));
    bench_json_put(out, "load_s", secs);
    bench_json_put(out, "load_consents_per_s", (double)l->a->count / secs);
    size_t map, used;
    sbi_store_usage(l->store, &map, &used);
    bench_json_put(out, "store_mib", (double)used / (1 << 20));
    return SB_OK;
}

/* broker_consent_find's lookup, read-only: SB_OK when an active consent
   matches. */
static int s_find(s_loader_t *l, MDB_txn *txn, const uint8_t ref[SBI_HASH_SIZE], uint64_t now)
{
    const s_args_t *a = l->a;
    uint8_t kbuf[SBI_HASH_SIZE + 3 * (SBI_NAME_MAX + 1)];
    MDB_val key = {s_match_key(kbuf, sizeof kbuf, ref, a->agency, a->dataset, a->purpose), kbuf};
    MDB_val value;
    MDB_cursor *cursor;
    if (mdb_cursor_open(txn, l->match, &cursor) != 0)
        return SB_EIO;
    int rc = SB_ENOCONSENT;
    for (int mrc = mdb_cursor_get(cursor, &key, &value, MDB_SET_KEY); mrc == 0 && rc != SB_OK;
         mrc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT_DUP)) {
        MDB_val id = {S_ID_LEN, value.mv_data}, record;
        if (mdb_get(txn, l->records, &id, &record) != 0)
            continue;
        sbi_unpack_t budget;
        Sharebus__ConsentEntry *entry = sharebus__consent_entry__unpack(
            sbi_unpack_init(&budget, record.mv_size), record.mv_size, record.mv_data);
        Sharebus__Consent *c = entry && entry->signed_
                                   ? sharebus__consent__unpack(
                                         sbi_unpack_init(&budget, entry->signed_->consent.len),
                                         entry->signed_->consent.len, entry->signed_->consent.data)
                                   : NULL;
        if (c && entry->state == SHAREBUS__CONSENT_STATE__CONSENT_ACTIVE && c->until_ms >= now &&
            c->granted_ms <= now)
            rc = SB_OK;
        if (c)
            sharebus__consent__free_unpacked(c, NULL);
        if (entry)
            sharebus__consent_entry__free_unpacked(entry, NULL);
    }
    mdb_cursor_close(cursor);
    return rc;
}

static int s_lookups(s_loader_t *l, json_object *out)
{
    bench_stats_t *stats = bench_stats_new();
    long found = 0;
    uint64_t now = sbi_now_ms() + 1;
    int64_t start = bench_now_ns();
    for (long n = 0; n < l->a->lookups; n++) {
        char subject[24];
        uint8_t ref[SBI_HASH_SIZE];
        s_subject((long)randombytes_uniform((uint32_t)l->a->count), subject);
        if (sbi_subject_ref(l->subject_key, subject, ref) != SB_OK)
            return SB_EINVAL;
        int64_t t = bench_now_ns();
        MDB_txn *txn;
        if (sbi_store_begin(l->store, false, &txn) != SB_OK)
            return SB_EIO;
        found += s_find(l, txn, ref, now) == SB_OK;
        mdb_txn_abort(txn);
        bench_stats_add(stats, bench_now_ns() - t);
    }
    double secs = (double)(bench_now_ns() - start) / 1e9;
    json_object *lookup = json_object_new_object();
    json_object_object_add(lookup, "lookups", json_object_new_int64(l->a->lookups));
    json_object_object_add(lookup, "found", json_object_new_int64(found));
    bench_json_put(lookup, "lookups_per_s", (double)l->a->lookups / secs);
    bench_stats_json(stats, lookup);
    json_object_object_add(out, "lookup", lookup);
    bench_stats_destroy(&stats);
    return found == l->a->lookups ? SB_OK : SB_EINTERNAL;
}

static int s_open(s_loader_t *l)
{
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/%s.key", l->a->certs, l->a->agency);
    if (sbi_keys_load(path, &l->keys) != SB_OK) {
        fprintf(stderr, "consent-load: cannot read %s\n", path);
        return SB_EIO;
    }
    snprintf(path, sizeof path, "%s/subject.key", l->a->certs);
    if (sbi_secret_load(path, l->subject_key) != SB_OK) {
        fprintf(stderr, "consent-load: cannot read %s\n", path);
        return SB_EIO;
    }
    snprintf(path, sizeof path, "%s/store", l->a->data);
    l->store = sbi_store_open(path, 0, 0, 0, 32, err, sizeof err);
    if (!l->store) {
        fprintf(stderr, "consent-load: %s: %s\n", path, err);
        return SB_EIO;
    }
    int rc = sbi_store_dbi(l->store, "consent.records", 0, &l->records);
    if (rc == SB_OK)
        rc = sbi_store_dbi(l->store, "consent.match", MDB_DUPSORT | MDB_DUPFIXED, &l->match);
    if (rc == SB_OK)
        rc = sbi_store_dbi(l->store, "consent.subject", MDB_DUPSORT | MDB_DUPFIXED, &l->subject);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"data", required_argument, 0, 'D'},    {"certs", required_argument, 0, 'c'},
        {"agency", required_argument, 0, 'a'},  {"dataset", required_argument, 0, 'd'},
        {"purpose", required_argument, 0, 'p'}, {"count", required_argument, 0, 'n'},
        {"days", required_argument, 0, 'y'},    {"lookups", required_argument, 0, 'l'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    s_args_t a = {.count = 1000000, .days = 30, .lookups = 100000};
    int opt, index = 0;
    while ((opt = getopt_long(argc, argv, "", options, &index)) != -1) {
        const char *name = options[index].name;
        switch (opt) {
        case 'D': a.data = optarg; break;
        case 'c': a.certs = optarg; break;
        case 'a': a.agency = optarg; break;
        case 'd': a.dataset = optarg; break;
        case 'p': a.purpose = optarg; break;
        case 'n': a.count = bench_arg_long("consent-load", name, optarg); break;
        case 'y': a.days = bench_arg_long("consent-load", name, optarg); break;
        case 'l': a.lookups = bench_arg_long("consent-load", name, optarg); break;
        case 'h':
            puts("usage: consent-load --data DDIR --certs DIR --agency ID --dataset D --purpose P\n"
                 "                    [--count N] [--days D] [--lookups M]");
            return 0;
        default: return 2;
        }
    }
    if (!a.data || !a.certs || !a.agency || !a.dataset || !a.purpose || a.count > 9999999) {
        fprintf(stderr, "consent-load: --data, --certs, --agency, --dataset and --purpose are "
                        "required; at most 9,999,999 consents\n");
        return 2;
    }
    sbi_init();
    sbi_log_setup("consent-load", SBI_LOG_WARNING);
    s_loader_t l = {.a = &a};
    json_object *out = json_object_new_object();
    int rc = s_open(&l);
    if (rc == SB_OK)
        rc = s_load(&l, out);
    if (rc == SB_OK)
        rc = s_lookups(&l, out);
    json_object_object_add(out, "map_grows", json_object_new_int64((int64_t)l.grows));
    if (rc == SB_OK)
        puts(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
    json_object_put(out);
    sbi_keys_wipe(&l.keys);
    sodium_memzero(l.subject_key, sizeof l.subject_key);
    sbi_store_close(&l.store);
    return rc == SB_OK ? 0 : 1;
}
