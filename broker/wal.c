/*  wal.c - the broker's write-ahead journal: DATA/wal.

    A batch is durable when its journal record is on the disk: one pwrite
    of whole 4 KiB blocks through an O_DSYNC descriptor into a file filled
    with zeros when it was made, so that the write changes no metadata and
    costs one synchronous write. LMDB commits the same batches behind it
    (writer.c) and stores the number of the last batch it applied; at start
    the records after that number are applied again, then the file gets a
    new id and its old records are ignored.

    A file smaller than asked grows in place, so that raising --wal-size
    after a crash loses nothing. The file is a ring: a header block (magic,
    the file's id), then records, each starting on a block boundary:

        0   magic "SBWALREC"
        8   the file's id (16 bytes)
        24  first batch number (8, host order)
        32  last batch number (8)
        40  flags (4)
        44  body size (4)
        48  BLAKE2b-256 of bytes 0..48 and the body
        80  body, then zeros to the block's end

    A record is written where it does not overlap a record LMDB has not
    applied yet; without room it waits for the applier a while, then gives
    up (SB_EFULL). A record larger than the whole ring is written at its start
    once every other record is applied, and extends the file.

    Replay does not trust the layout: it looks at every block boundary for a
    record of this file's id whose hash holds, and applies those that
    continue the applied number without a gap, in order.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker.h"

#define S_BLOCK 4096
#define S_HEAD 80
#define S_MAGIC "SBWALREC"
#define S_FILE_MAGIC "SBWALHDR"

typedef struct {
    uint64_t last;
    size_t at, size;
} s_span_t;

struct broker_wal_t {
    int fd;                   /* O_DSYNC */
    char path[4096];
    uint8_t id[16];
    size_t end;               /* of the ring: the file's size */
    size_t at;                /* where the next record goes */
    s_span_t *spans;          /* records not known applied, oldest first */
    size_t n_spans, spans_max;
    const _Atomic uint64_t *applied;
    uint8_t *buf;             /* one record, padded */
    size_t buf_max;
};

static size_t s_padded(size_t size)
{
    return (size + S_BLOCK - 1) / S_BLOCK * S_BLOCK;
}

static int s_write_all(int fd, const void *data, size_t size, off_t at)
{
    const uint8_t *p = data;
    while (size > 0) {
        ssize_t n = pwrite(fd, p, size, at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        size -= (size_t) n;
        at += n;
    }
    return 0;
}

static int s_read_all(int fd, void *data, size_t size, off_t at)
{
    uint8_t *p = data;
    while (size > 0) {
        ssize_t n = pread(fd, p, size, at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        size -= (size_t) n;
        at += n;
    }
    return 0;
}

/* Writes zeros over [from, to) of `fd` and syncs them. */
static int s_zeros(int fd, size_t from, size_t to)
{
    static const uint8_t zeros[64 << 10];
    int rc = 0;
    for (size_t at = from; rc == 0 && at < to; at += sizeof zeros)
        rc = s_write_all(fd, zeros, to - at < sizeof zeros ? to - at : sizeof zeros, (off_t) at);
    return rc == 0 ? fdatasync(fd) : rc;
}

/* Makes the file: zeros written (not a sparse file, not fallocate's
   unwritten extents, which a first write would convert) and synced, under a
   temporary name renamed into place, so a crash leaves either none or all. */
static int s_create(const char *path, size_t size, char *err, size_t err_size)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, err_size, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    int rc = s_zeros(fd, 0, size);
    if (close(fd) != 0)
        rc = -1;
    if (rc == 0)
        rc = rename(tmp, path);
    if (rc == 0) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = 0;
        int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            rc = fsync(dfd);
            close(dfd);
        }
    }
    if (rc != 0) {
        snprintf(err, err_size, "cannot make %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    return rc;
}

/* A file smaller than asked (--wal-size raised) grows in place, with
   zeros after its end: its records may not be applied yet. */
static int s_extend(const char *path, size_t from, size_t size, char *err, size_t err_size)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    int rc = fd < 0 ? -1 : s_zeros(fd, from, size);
    if (rc != 0)
        snprintf(err, err_size, "cannot extend %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    return rc;
}

broker_wal_t *broker_wal_open(const char *path, size_t size, const _Atomic uint64_t *applied,
                              char *err, size_t err_size)
{
    size = s_padded(size < 2 * S_BLOCK ? 2 * S_BLOCK : size);
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT) {
            snprintf(err, err_size, "%s: %s", path, strerror(errno));
            return NULL;
        }
        if (s_create(path, size, err, err_size) != 0)
            return NULL;
    }
    else if ((size_t) st.st_size < size && s_extend(path, (size_t) st.st_size, size, err, err_size) != 0)
        return NULL;
    int fd = open(path, O_RDWR | O_DSYNC | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    broker_wal_t *self = calloc(1, sizeof *self);
    assert(self);
    self->fd = fd;
    snprintf(self->path, sizeof self->path, "%s", path);
    self->end = (size_t) st.st_size / S_BLOCK * S_BLOCK;
    self->at = S_BLOCK;
    self->applied = applied;
    uint8_t head[S_BLOCK];
    if (s_read_all(fd, head, sizeof head, 0) == 0 && memcmp(head, S_FILE_MAGIC, 8) == 0)
        memcpy(self->id, head + 8, sizeof self->id);
    return self;
}

void broker_wal_close(broker_wal_t **self_p)
{
    broker_wal_t *self = *self_p;
    if (!self)
        return;
    close(self->fd);
    free(self->spans);
    free(self->buf);
    free(self);
    *self_p = NULL;
}

static void s_hash(uint8_t out[32], const uint8_t *head, const uint8_t *body, size_t size)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, head, 48);
    crypto_generichash_update(&st, body, size);
    crypto_generichash_final(&st, out, 32);
}

typedef struct {
    uint64_t first, last;
    size_t at;
} s_found_t;

static int s_by_first(const void *a, const void *b)
{
    const s_found_t *x = a, *y = b;
    return x->first < y->first ? -1 : x->first > y->first;
}

int broker_wal_replay(broker_wal_t *self, uint64_t applied, broker_wal_fn *fn, void *arg,
                      size_t *replayed)
{
    *replayed = 0;
    s_found_t *found = NULL;
    size_t n = 0, max = 0;
    uint8_t head[S_HEAD];
    for (size_t at = S_BLOCK; at + S_HEAD <= self->end; at += S_BLOCK) {
        if (s_read_all(self->fd, head, S_HEAD, (off_t) at) != 0) {
            free(found);
            return SB_EIO;
        }
        if (memcmp(head, S_MAGIC, 8) != 0 || memcmp(head + 8, self->id, 16) != 0)
            continue;
        uint64_t first, last;
        memcpy(&first, head + 24, 8);
        memcpy(&last, head + 32, 8);
        if (last <= applied || first > last)
            continue;
        if (n == max) {
            max = max ? 2 * max : 64;
            found = realloc(found, max * sizeof *found);
            assert(found);
        }
        found[n++] = (s_found_t) {first, last, at};
    }
    if (n > 1)
        qsort(found, n, sizeof *found, s_by_first);
    int rc = SB_OK;
    uint8_t *body = NULL;
    for (size_t i = 0; rc == SB_OK && i < n; i++) {
        if (found[i].first != applied + 1)
            continue;           /* a stale record, or past a gap */
        uint32_t flags, size;
        if (s_read_all(self->fd, head, S_HEAD, (off_t) found[i].at) != 0)
            rc = SB_EIO;
        memcpy(&flags, head + 40, 4);
        memcpy(&size, head + 44, 4);
        if (rc != SB_OK || found[i].at + S_HEAD + size > self->end)
            break;
        body = realloc(body, size ? size : 1);
        assert(body);
        uint8_t hash[32];
        if (s_read_all(self->fd, body, size, (off_t) (found[i].at + S_HEAD)) != 0)
            rc = SB_EIO;
        else {
            s_hash(hash, head, body, size);
            if (sodium_memcmp(hash, head + 48, 32) != 0)
                break;          /* torn: nothing after it was acknowledged */
            rc = fn(arg, found[i].first, found[i].last, flags, body, size);
            if (rc == SB_OK) {
                applied = found[i].last;
                (*replayed)++;
            }
        }
    }
    free(body);
    free(found);
    return rc;
}

int broker_wal_reset(broker_wal_t *self)
{
    uint8_t head[S_BLOCK] = {0};
    memcpy(head, S_FILE_MAGIC, 8);
    randombytes_buf(self->id, sizeof self->id);
    memcpy(head + 8, self->id, sizeof self->id);
    self->at = S_BLOCK;
    self->n_spans = 0;
    return s_write_all(self->fd, head, sizeof head, 0) == 0 ? SB_OK : SB_EIO;
}

/* Forgets the records the applier has committed. */
static void s_release(broker_wal_t *self)
{
    uint64_t applied = atomic_load(self->applied);
    size_t done = 0;
    while (done < self->n_spans && self->spans[done].last <= applied)
        done++;
    if (done > 0) {
        memmove(self->spans, self->spans + done, (self->n_spans - done) * sizeof *self->spans);
        self->n_spans -= done;
    }
}

/* Where `size` bytes can go without overwriting an unapplied record. */
static bool s_place(broker_wal_t *self, size_t size, size_t *at)
{
    size_t ring = self->end - S_BLOCK;
    if (self->n_spans == 0) {
        *at = self->at + size <= self->end ? self->at : S_BLOCK;
        if (size > ring)
            *at = S_BLOCK;      /* alone, extending the file */
        return true;
    }
    if (size > ring)
        return false;
    size_t oldest = self->spans[0].at;
    if (self->at > oldest) {
        if (self->at + size <= self->end) {
            *at = self->at;
            return true;
        }
        *at = S_BLOCK;
        return S_BLOCK + size <= oldest;
    }
    *at = self->at;
    return self->at + size <= oldest;
}

int broker_wal_append(broker_wal_t *self, uint64_t first, uint64_t last, uint32_t flags,
                      const uint8_t *body, size_t size, int64_t wait_us)
{
    if (size > UINT32_MAX - S_HEAD)
        return SB_EFULL;
    size_t padded = s_padded(S_HEAD + size);
    size_t at = 0;
    int64_t deadline = zclock_usecs() + wait_us;
    for (s_release(self); !s_place(self, padded, &at); s_release(self)) {
        if (zclock_usecs() >= deadline)
            return SB_EFULL;
        zclock_sleep(1);
    }
    if (padded > self->buf_max) {
        free(self->buf);
        self->buf_max = padded;
        self->buf = malloc(padded);
        assert(self->buf);
    }
    uint8_t *rec = self->buf;
    uint32_t size32 = (uint32_t) size;
    memcpy(rec, S_MAGIC, 8);
    memcpy(rec + 8, self->id, 16);
    memcpy(rec + 24, &first, 8);
    memcpy(rec + 32, &last, 8);
    memcpy(rec + 40, &flags, 4);
    memcpy(rec + 44, &size32, 4);
    s_hash(rec + 48, rec, body, size);
    memcpy(rec + S_HEAD, body, size);
    memset(rec + S_HEAD + size, 0, padded - S_HEAD - size);
    if (s_write_all(self->fd, rec, padded, (off_t) at) != 0)
        return SB_EIO;
    if (at + padded > self->end)
        self->end = at + padded;
    self->at = at + padded;
    if (self->n_spans == self->spans_max) {
        self->spans_max = self->spans_max ? 2 * self->spans_max : 64;
        self->spans = realloc(self->spans, self->spans_max * sizeof *self->spans);
        assert(self->spans);
    }
    self->spans[self->n_spans++] = (s_span_t) {last, at, padded};
    return SB_OK;
}
