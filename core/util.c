/*  util.c - time, ids, names, subject references, files, bounded decoding. */
#include "sbi.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void sbi_init(void)
{
    if (sodium_init() < 0)
        abort();
}

uint64_t sbi_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

const char *sbi_time_format(uint64_t ms, char *buf, size_t size)
{
    time_t secs = (time_t) (ms / 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, size, "?");
    return buf;
}

int sbi_time_parse(const char *text, uint64_t *ms)
{
    struct tm tm = {0};
    const char *end = strptime(text, "%Y-%m-%d", &tm);
    if (end && *end == 'T')
        end = strptime(end, "T%H:%M:%SZ", &tm);
    if (!end || *end || tm.tm_year < 70 || tm.tm_year > 1100)
        return SB_EINVAL;
    /* timegm normalises (2026-02-31 would be 2026-03-03): only a time
       whose fields come back unchanged exists. */
    struct tm given = tm, back;
    time_t secs = timegm(&tm);
    if (secs < 0 || !gmtime_r(&secs, &back) || back.tm_year != given.tm_year
        || back.tm_mon != given.tm_mon || back.tm_mday != given.tm_mday
        || back.tm_hour != given.tm_hour || back.tm_min != given.tm_min
        || back.tm_sec != given.tm_sec)
        return SB_EINVAL;
    *ms = (uint64_t) secs * 1000;
    return SB_OK;
}

void sbi_id_new(uint8_t id[SBI_ID_SIZE])
{
    randombytes_buf(id, SBI_ID_SIZE);
}

char *sbi_hex(const uint8_t *data, size_t size, char *out)
{
    return sodium_bin2hex(out, size * 2 + 1, data, size);
}

bool sbi_agency_valid(const char *id, bool allow_reserved)
{
    size_t len = id ? strlen(id) : 0;
    if (len == 0 || len > SBI_AGENCY_MAX || !isalnum((unsigned char) id[0]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!(islower((unsigned char) id[i]) || isdigit((unsigned char) id[i])
              || id[i] == '-' || id[i] == '.'))
            return false;
    if (!allow_reserved && (strcmp(id, "broker") == 0 || strcmp(id, "root") == 0))
        return false;
    return true;
}

bool sbi_name_valid(const char *name)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > SBI_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (name[i] <= ' ' || name[i] > '~')
            return false;
    return true;
}

int sbi_subject_ref(const uint8_t key[32], const char *national_id,
                    uint8_t ref[SBI_HASH_SIZE])
{
    char norm[128];
    size_t n = 0;
    for (const char *c = national_id; c && *c; c++) {
        if (*c == ' ' || *c == '-' || *c == '\t')
            continue;
        if (n + 1 >= sizeof norm)
            return SB_EINVAL;
        norm[n++] = (char) toupper((unsigned char) *c);
    }
    if (n == 0)
        return SB_EINVAL;
    crypto_generichash(ref, SBI_HASH_SIZE, (const unsigned char *) norm, n, key, 32);
    sodium_memzero(norm, sizeof norm);
    return SB_OK;
}

int sbi_file_read(const char *path, size_t max, char **data_p, size_t *size_p)
{
    /* O_NONBLOCK: a FIFO planted under a certificate's name must not hang
       the reader in open(); it is refused below as not a regular file. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return SB_EIO;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        errno = errno ? errno : EINVAL;
        return SB_EIO;
    }
    if ((size_t) st.st_size > max) {
        close(fd);
        return SB_ETOOBIG;
    }
    char *data = malloc((size_t) st.st_size + 1);
    size_t got = 0;
    while (data && got < (size_t) st.st_size) {
        ssize_t rc = read(fd, data + got, (size_t) st.st_size - got);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            break;
        got += (size_t) rc;
    }
    close(fd);
    if (!data || got != (size_t) st.st_size) {
        free(data);
        return data ? SB_EIO : SB_ENOMEM;
    }
    data[got] = 0;
    *data_p = data;
    if (size_p)
        *size_p = got;
    return SB_OK;
}

/* Makes a new directory entry in the directory of `path` durable. */
static void s_sync_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else if ((size_t) (slash - path) < sizeof dir)
        snprintf(dir, sizeof dir, "%.*s", (int) (slash - path), path);
    else
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int sbi_file_write(const char *path, const void *data, size_t size, int mode,
                   bool exclusive)
{
    if (exclusive && access(path, F_OK) == 0)
        return SB_EEXISTS;
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path) >= (int) sizeof tmp)
        return SB_EINVAL;
    int fd = mkstemp(tmp);
    if (fd < 0)
        return SB_EIO;
    bool ok = fchmod(fd, (mode_t) mode) == 0;
    for (size_t done = 0; ok && done < size;) {
        ssize_t rc = write(fd, (const char *) data + done, size - done);
        if (rc < 0 && errno == EINTR)
            continue;
        ok = rc > 0;
        done += ok ? (size_t) rc : 0;
    }
    ok = ok && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (ok && exclusive) {
        /* link() fails if path appeared meanwhile: no overwrite race. */
        ok = link(tmp, path) == 0;
        int saved = errno;
        unlink(tmp);
        if (ok)
            s_sync_dir(path);
        errno = saved;
        return ok ? SB_OK : (errno == EEXIST ? SB_EEXISTS : SB_EIO);
    }
    if (ok)
        ok = rename(tmp, path) == 0;
    if (!ok) {
        int saved = errno;
        unlink(tmp);
        errno = saved;
        return SB_EIO;
    }
    /* Without this a crash could forget the rename: a serial handed out
       twice, a revocation undone. */
    s_sync_dir(path);
    return SB_OK;
}

static void *s_bounded_alloc(void *data, size_t size)
{
    sbi_unpack_t *self = data;
    if (size > self->budget - self->used)
        return NULL;
    self->used += size;
    return malloc(size);
}

static void s_bounded_free(void *data, void *pointer)
{
    free(pointer);
}

ProtobufCAllocator *sbi_unpack_init(sbi_unpack_t *self, size_t size)
{
    self->allocator.alloc = s_bounded_alloc;
    self->allocator.free = s_bounded_free;
    self->allocator.allocator_data = self;
    self->budget = SBI_UNPACK_BUDGET(size);
    self->used = 0;
    return &self->allocator;
}

bool sbi_text_valid(const char *data, size_t size, size_t *line, size_t *column,
                    unsigned *byte)
{
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    const unsigned char *p = (const unsigned char *) data, *end = p + size;
    *line = *column = 1;
    while (p < end) {
        unsigned b = *p;
        size_t n = b < 0x80 ? 1 : (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3
                 : (b & 0xf8) == 0xf0 ? 4 : 0;
        bool ok = n > 0 && (size_t) (end - p) >= n;
        uint32_t code = n > 1 ? b & (0x7f >> n) : b;
        for (size_t i = 1; ok && i < n; i++) {
            ok = (p[i] & 0xc0) == 0x80;
            code = code << 6 | (p[i] & 0x3f);
        }
        if (ok && n == 1)
            ok = code >= 0x20 ? code != 0x7f : code == '\t' || code == '\n' || code == '\r';
        else if (ok)
            ok = code >= least[n] && code <= 0x10ffff && (code < 0xd800 || code > 0xdfff);
        if (!ok) {
            *byte = b;
            return false;
        }
        *column = b == '\n' ? 1 : *column + 1;
        *line += b == '\n';
        p += n;
    }
    return true;
}

bool sbi_yaml_explicit_key(const char *data, size_t size, size_t *line, size_t *column)
{
    size_t at_line = 1, line_start = 0;
    char quote = 0;
    bool comment = false;
    for (size_t i = 0; i < size; i++) {
        char c = data[i], next = i + 1 < size ? data[i + 1] : '\n';
        bool blank_before = i == line_start || data[i - 1] == ' ' || data[i - 1] == '\t';
        if (c == '\n') {
            at_line++;
            line_start = i + 1;
            comment = false;
        }
        else if (comment)
            continue;
        else if (quote) {
            if (c == quote)
                quote = 0;
            else if (c == '\\' && quote == '"' && next != '\n')
                i++;
        }
        else if (c == '#' && blank_before)
            comment = true;
        else if (c == '"' || c == '\'')
            quote = c;
        else if (c == '?' && (next == ' ' || next == '\t' || next == '\n' || next == '\r')) {
            *line = at_line;
            *column = i - line_start + 1;
            return true;
        }
    }
    return false;
}
