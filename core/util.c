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
    char norm[128];         /* a national id: wiped on every path */
    size_t n = 0;
    int rc = SB_OK;
    for (const char *c = national_id; c && *c && rc == SB_OK; c++) {
        if (*c == ' ' || *c == '-' || *c == '\t')
            continue;
        if (n + 1 >= sizeof norm)
            rc = SB_EINVAL;
        else
            norm[n++] = (char) toupper((unsigned char) *c);
    }
    if (rc == SB_OK && n == 0)
        rc = SB_EINVAL;
    if (rc == SB_OK)
        crypto_generichash(ref, SBI_HASH_SIZE, (const unsigned char *) norm, n, key, 32);
    sodium_memzero(norm, sizeof norm);
    return rc;
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

/* True when libfyaml might break a line or skip a byte where these rules
   do not: at NEL, LS or PS, or at a byte order mark (which it skips at the
   start of any line). */
static bool s_yaml_odd_break(const char *data, size_t size)
{
    static const char *odd[] = {"\xc2\x85", "\xe2\x80\xa8", "\xe2\x80\xa9", "\xef\xbb\xbf"};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++)
        if (size && memmem(data, size, odd[i], strlen(odd[i])))
            return true;
    return false;
}

static bool s_in(const char *set, char c)
{
    return c && strchr(set, c);
}

/* Offset of the first '?' in `line` (which holds no line break) at which
   libfyaml might start a token, or `size` when there is none.

   libfyaml reads '?' as an explicit key only at the start of a token.
   Rather than follow its state, which a scanner this size gets wrong (a
   quote in plain text, a quoted scalar over several lines), these rules
   look only at what precedes a '?' on its line, and report it whenever a
   token might start there:

   1. The first non-blank of a line: a line may start a token.
   2. Right after one of [ ] { } , ' " : -- the only characters after
      which a token starts with no blank between (a flow indicator, a
      quoted scalar's closing quote, a JSON-like value ':').  After any
      other character the '?' is inside the same word: plain text, or a
      tag or anchor, whose names may hold '?'.
   3. After blanks, when the word before them might end a token: it holds
      one of [ ] { } , ' ", or starts with one of - ? : ! & * % (block
      entry, key, value, tag, anchor, alias, directive, "---"), or ends
      with ':' (a value).  After any other word libfyaml is inside a plain
      scalar, which runs on over blanks and a '?' ("Fit to drive ? yes"),
      or inside a quoted scalar, comment or block scalar, where '?' is
      text.
   4. Anywhere on a line that starts with '%': tokens may follow a
      directive on its line ("%YAML 1.2 ? a").

   Only comments hide text: a '#' at the start of a line or after a blank
   (where libfyaml ends a plain scalar) hides the rest of the line, unless
   a ' or " follows on it: the '#' may then be inside a quoted scalar that
   closes on this line, with tokens after it.  (If it closes on a later
   line, the rest of this line is text anyway.)  `every` reports every
   '?' and hides nothing. */
static size_t s_yaml_line_key(const char *line, size_t size, bool every)
{
    const char *last_quote = NULL;
    for (const char *p = line; p < line + size; p++)
        if (*p == '\'' || *p == '"')
            last_quote = p;
    bool seen = false, in_word = false, directive = false, special = false, ends_token = false;
    char first = 0;
    for (size_t i = 0; i < size; i++) {
        char c = line[i];
        bool after_blank = i == 0 || line[i - 1] == ' ' || line[i - 1] == '\t';
        if (c == ' ' || c == '\t') {
            in_word = false;
            continue;
        }
        directive = directive || (!seen && c == '%');
        if (c == '#' && after_blank && !directive && !every && line + i > last_quote)
            return size;
        if (c == '?' && (every || directive || !seen
                         || (in_word ? s_in("[]{},'\":", line[i - 1]) : ends_token)))
            return i;
        if (!in_word) {
            first = c;
            special = false;
        }
        seen = in_word = true;
        special = special || s_in("[]{},'\"", c);
        ends_token = special || s_in("-?:!&*%", first) || c == ':';
    }
    return size;
}

bool sbi_yaml_explicit_key(const char *data, size_t size, size_t *line, size_t *column)
{
    /* libfyaml skips a byte order mark at the start; elsewhere it is odd. */
    size_t start = size >= 3 && !memcmp(data, "\xef\xbb\xbf", 3) ? 3 : 0;
    bool every = s_yaml_odd_break(data + start, size - start);
    for (size_t end = start; start < size; start = ++end) {
        while (end < size && data[end] != '\n' && data[end] != '\r')
            end++;
        size_t at = start + s_yaml_line_key(data + start, end - start, every);
        if (at == end)
            continue;
        *line = *column = 1;
        for (size_t i = 0; i < at; i++) {
            bool newline = data[i] == '\n';
            *line += newline;
            *column = newline ? 1 : *column + ((data[i] & 0xc0) != 0x80);
        }
        return true;
    }
    return false;
}
