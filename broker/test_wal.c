/*  test_wal.c - the write-ahead journal (wal.c): what replay gives back
    after a crash at any point, and what it must not. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"
#include "testing.h"

#define S_RING (64u << 10)    /* 16 blocks: one header, 15 for records */

typedef struct {
    uint64_t first[64], last[64];
    size_t size[64];
    uint8_t byte[64];
    size_t n;
} s_seen_t;

static int s_collect(void *arg, uint64_t first, uint64_t last, uint32_t flags,
                     const uint8_t *body, size_t size)
{
    (void) flags;
    s_seen_t *seen = arg;
    seen->first[seen->n] = first;
    seen->last[seen->n] = last;
    seen->size[seen->n] = size;
    seen->byte[seen->n] = size ? body[0] : 0;
    for (size_t i = 1; i < size; i++)
        if (body[i] != body[0])
            return SB_EINTERNAL;    /* a body came back changed */
    seen->n++;
    return SB_OK;
}

static int s_append(broker_wal_t *wal, uint64_t first, uint64_t last, size_t size, uint8_t byte)
{
    uint8_t *body = malloc(size ? size : 1);
    memset(body, byte, size);
    int rc = broker_wal_append(wal, first, last, 0, body, size, 0);
    free(body);
    return rc;
}

/* A fresh journal file in a new directory: its path. */
static void s_file(char path[64])
{
    char dir[] = "/tmp/sharebus-wal.XXXXXX";
    if (!mkdtemp(dir))
        abort();
    snprintf(path, 64, "%s/wal", dir);
}

static void s_remove(const char *path)
{
    char dir[64];
    snprintf(dir, sizeof dir, "%s", path);
    unlink(path);
    *strrchr(dir, '/') = 0;
    rmdir(dir);
}

/* Opens the file as a new start would, with a new id unless `keep`. */
static broker_wal_t *s_open(const char *path, _Atomic uint64_t *applied, bool reset)
{
    char err[512];
    broker_wal_t *wal = broker_wal_open(path, S_RING, applied, err, sizeof err);
    if (!wal || (reset && broker_wal_reset(wal) != SB_OK))
        abort();
    return wal;
}

static void s_replay(const char *path, _Atomic uint64_t *applied, uint64_t from, s_seen_t *seen)
{
    memset(seen, 0, sizeof *seen);
    broker_wal_t *wal = s_open(path, applied, false);
    size_t n = 0;
    CHECK(broker_wal_replay(wal, from, s_collect, seen, &n) == SB_OK);
    CHECK(n == seen->n);
    broker_wal_close(&wal);
}


TEST(test_unapplied_records_replay_in_order_whole)
{
    char path[64];
    s_file(path);
    _Atomic uint64_t applied = 0;
    broker_wal_t *wal = s_open(path, &applied, true);
    s_seen_t seen;
    size_t n = 99;
    CHECK(broker_wal_replay(wal, 0, s_collect, &seen, &n) == SB_OK);
    CHECK_EQ(n, 0);
    CHECK(s_append(wal, 1, 1, 100, 'a') == SB_OK);
    CHECK(s_append(wal, 2, 4, 5000, 'b') == SB_OK);    /* two blocks */
    CHECK(s_append(wal, 5, 5, 0, 0) == SB_OK);
    broker_wal_close(&wal);
    s_replay(path, &applied, 0, &seen);
    CHECK_EQ(seen.n, 3);
    CHECK(seen.first[0] == 1 && seen.last[0] == 1 && seen.size[0] == 100 && seen.byte[0] == 'a');
    CHECK(seen.first[1] == 2 && seen.last[1] == 4 && seen.size[1] == 5000 && seen.byte[1] == 'b');
    CHECK(seen.first[2] == 5 && seen.size[2] == 0);
    /* Only those after what LMDB applied. */
    s_replay(path, &applied, 4, &seen);
    CHECK(seen.n == 1 && seen.first[0] == 5);
    s_replay(path, &applied, 5, &seen);
    CHECK_EQ(seen.n, 0);
    s_remove(path);
}

TEST(test_a_torn_record_stops_the_replay)
{
    char path[64];
    s_file(path);
    _Atomic uint64_t applied = 0;
    broker_wal_t *wal = s_open(path, &applied, true);
    CHECK(s_append(wal, 1, 1, 100, 'a') == SB_OK);
    CHECK(s_append(wal, 2, 2, 100, 'b') == SB_OK);
    broker_wal_close(&wal);
    /* One byte of the first record's body changed on the disk: nothing
       after it was acknowledged, so nothing replays. */
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    CHECK(fseek(f, 4096 + 80 + 7, SEEK_SET) == 0);
    fputc('X', f);
    fclose(f);
    s_seen_t seen;
    s_replay(path, &applied, 0, &seen);
    CHECK_EQ(seen.n, 0);
    s_remove(path);
}

TEST(test_records_of_a_previous_id_are_ignored)
{
    char path[64];
    s_file(path);
    _Atomic uint64_t applied = 0;
    broker_wal_t *wal = s_open(path, &applied, true);
    CHECK(s_append(wal, 1, 1, 100, 'a') == SB_OK);
    broker_wal_close(&wal);
    wal = s_open(path, &applied, true);     /* the next start */
    broker_wal_close(&wal);
    s_seen_t seen;
    s_replay(path, &applied, 0, &seen);
    CHECK_EQ(seen.n, 0);
    s_remove(path);
}

TEST(test_the_ring_wraps_over_applied_records_only)
{
    char path[64];
    s_file(path);
    _Atomic uint64_t applied = 0;
    broker_wal_t *wal = s_open(path, &applied, true);
    /* 15 one-block records fill the ring; the 16th finds no room. */
    for (uint64_t i = 1; i <= 15; i++)
        CHECK(s_append(wal, i, i, 1000, (uint8_t) ('a' + i)) == SB_OK);
    CHECK(s_append(wal, 16, 16, 1000, 'x') == SB_EFULL);
    /* Once ten are applied, ten more wrap over them, then no room. */
    atomic_store(&applied, 10);
    for (uint64_t i = 16; i <= 25; i++)
        CHECK(s_append(wal, i, i, 1000, (uint8_t) ('a' + i)) == SB_OK);
    CHECK(s_append(wal, 26, 26, 1000, 'x') == SB_EFULL);
    broker_wal_close(&wal);
    s_seen_t seen;
    s_replay(path, &applied, 10, &seen);
    CHECK_EQ(seen.n, 15);
    for (size_t i = 0; i < 15 && i < seen.n; i++)
        CHECK(seen.first[i] == 11 + i && seen.byte[i] == 'a' + 11 + i);
    /* Replay starts right after the applied number. */
    s_replay(path, &applied, 12, &seen);
    CHECK(seen.n == 13 && seen.first[0] == 13);
    s_remove(path);
}

TEST(test_a_record_larger_than_the_ring_extends_the_file)
{
    char path[64];
    s_file(path);
    _Atomic uint64_t applied = 30;
    broker_wal_t *wal = s_open(path, &applied, true);
    CHECK(s_append(wal, 31, 31, 3 * S_RING, 'L') == SB_OK);
    broker_wal_close(&wal);
    s_seen_t seen;
    s_replay(path, &applied, 30, &seen);
    CHECK(seen.n == 1 && seen.size[0] == 3 * S_RING && seen.byte[0] == 'L');
    s_remove(path);
}

TEST(test_a_larger_size_keeps_the_records)
{
    char path[64], err[512];
    s_file(path);
    _Atomic uint64_t applied = 0;
    broker_wal_t *wal = s_open(path, &applied, true);
    CHECK(s_append(wal, 1, 1, 100, 'a') == SB_OK);
    broker_wal_close(&wal);
    /* --wal-size raised after a crash: the file grows, the record stays. */
    wal = broker_wal_open(path, 4 * S_RING, &applied, err, sizeof err);
    CHECK(wal != NULL);
    size_t n = 0;
    s_seen_t seen = {0};
    CHECK(wal && broker_wal_replay(wal, 0, s_collect, &seen, &n) == SB_OK);
    CHECK(n == 1 && seen.byte[0] == 'a');
    broker_wal_close(&wal);
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_size == 4 * S_RING);
    s_remove(path);
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
    return RUN_TESTS();
}
