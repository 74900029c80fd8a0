/*  wal.c - the broker's write-ahead journal: DATA/wal.

    A batch is durable when its journal record is on the disk: one pwritev
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
#include <sys/uio.h>
#include <unistd.h>

#include "broker.h"

#define S_BLOCK 4096
#define S_HEAD 80
#define S_MAGIC "SBWALREC"
#define S_FILE_MAGIC "SBWALHDR"

typedef struct {
    uint64_t last;
    size_t at;
} s_span_t;

struct broker_wal_t {
    int fd;                   /* O_DSYNC */
    uint8_t id[16];
    size_t end;               /* of the ring: the file's size */
    size_t at;                /* where the next record goes */
    s_span_t *spans;          /* records not known applied, oldest first */
    size_t n_spans, spans_max;
    const _Atomic uint64_t *applied;
};

static const uint8_t s_zeros[64 << 10];

static size_t s_padded(size_t size)
{
    return (size + S_BLOCK - 1) / S_BLOCK * S_BLOCK;
}

/* pwrite or pread all of `size` bytes at `at`: 0, or -1. */
static int s_pio(int fd, bool write, void *data, size_t size, off_t at)
{
    uint8_t *p = data;
    while (size > 0) {
        ssize_t n = write ? pwrite(fd, p, size, at) : pread(fd, p, size, at);
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

/* A file smaller than asked (--wal-size raised) grows in place, with
   zeros after its end: its records may not be applied yet. */
static int s_extend(const char *path, size_t from, size_t size, char *err, size_t err_size)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    int rc = fd < 0 ? -1 : 0;
    for (size_t at = from; rc == 0 && at < size; at += sizeof s_zeros)
        rc = s_pio(fd, true, (void *) s_zeros, size - at < sizeof s_zeros ? size - at : sizeof s_zeros,
                   (off_t) at);
    if (rc == 0)
        rc = fdatasync(fd);
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
        /* Zeros, written (not a sparse file, nor fallocate's unwritten
           extents, which a first write would convert), synced, renamed
           into place. */
        void *zeros = calloc(1, size);
        assert(zeros);
        int rc = sbi_file_write(path, zeros, size, 0600, false);
        free(zeros);
        if (rc != SB_OK) {
            snprintf(err, err_size, "cannot make %s: %s", path, strerror(errno));
            return NULL;
        }
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
    self->end = (size_t) st.st_size / S_BLOCK * S_BLOCK;
    self->at = S_BLOCK;
    self->applied = applied;
    uint8_t head[S_BLOCK];
    if (s_pio(fd, false, head, sizeof head, 0) == 0 && memcmp(head, S_FILE_MAGIC, 8) == 0)
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
        if (s_pio(self->fd, false, head, S_HEAD, (off_t) at) != 0) {
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
        if (s_pio(self->fd, false, head, S_HEAD, (off_t) found[i].at) != 0)
            rc = SB_EIO;
        memcpy(&flags, head + 40, 4);
        memcpy(&size, head + 44, 4);
        if (rc != SB_OK || found[i].at + S_HEAD + size > self->end)
            break;
        body = realloc(body, size ? size : 1);
        assert(body);
        uint8_t hash[32];
        if (s_pio(self->fd, false, body, size, (off_t) (found[i].at + S_HEAD)) != 0)
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
    return s_pio(self->fd, true, head, sizeof head, 0) == 0 ? SB_OK : SB_EIO;
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
    uint8_t head[S_HEAD];
    uint32_t size32 = (uint32_t) size;
    memcpy(head, S_MAGIC, 8);
    memcpy(head + 8, self->id, 16);
    memcpy(head + 24, &first, 8);
    memcpy(head + 32, &last, 8);
    memcpy(head + 40, &flags, 4);
    memcpy(head + 44, &size32, 4);
    s_hash(head + 48, head, body, size);
    /* Head, body and zeros to the block's end in one write: a short one is
       a torn record, never acknowledged. */
    struct iovec iov[] = {{head, S_HEAD}, {(void *) body, size},
                          {(void *) s_zeros, padded - S_HEAD - size}};
    ssize_t n;
    do
        n = pwritev(self->fd, iov, 3, (off_t) at);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t) padded)
        return SB_EIO;
    if (at + padded > self->end)
        self->end = at + padded;
    self->at = at + padded;
    if (self->n_spans == self->spans_max) {
        self->spans_max = self->spans_max ? 2 * self->spans_max : 64;
        self->spans = realloc(self->spans, self->spans_max * sizeof *self->spans);
        assert(self->spans);
    }
    self->spans[self->n_spans++] = (s_span_t) {last, at};
    return SB_OK;
}
