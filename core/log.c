/*  log.c - one line per event on stderr, with a level.

    Under systemd, when stderr is the journal's stream (JOURNAL_STREAM names
    its device and inode), each line starts with its syslog priority, "<3>"
    for an error to "<7>" for debug, which journald takes as the entry's
    PRIORITY, and the time is left to the journal. */
#include "sbi.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *s_component = "sharebus";
static sbi_log_level_t s_level = SBI_LOG_INFO;
static const char *s_names[] = {"error", "warning", "notice", "info", "debug"};
static const int s_priorities[] = {3, 4, 5, 6, 7};
static bool s_journal;

/* True when stderr is the stream JOURNAL_STREAM ("DEVICE:INODE") names. */
static bool s_stderr_is_journal(void)
{
    const char *stream = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    return stream && sscanf(stream, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0
           && (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void sbi_log_setup(const char *component, sbi_log_level_t level)
{
    s_component = component;
    s_level = level;
    s_journal = s_stderr_is_journal();
}

int sbi_log_level_parse(const char *name, sbi_log_level_t *level)
{
    for (int i = 0; i <= SBI_LOG_DEBUG; i++)
        if (strcmp(name, s_names[i]) == 0) {
            *level = (sbi_log_level_t) i;
            return SB_OK;
        }
    return SB_EINVAL;
}

void sbi_log(sbi_log_level_t level, const char *fmt, ...)
{
    if (level > s_level)
        return;
    char line[1024];
    va_list args;
    va_start(args, fmt);
    vsnprintf(line, sizeof line, fmt, args);
    va_end(args);
    /* One line: a message never breaks the log's shape. */
    for (char *c = line; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    char when[32];
    if (s_journal)
        fprintf(stderr, "<%d>%s %s: %s\n", s_priorities[level], s_names[level], s_component,
                line);
    else
        fprintf(stderr, "%s %s %s: %s\n", sbi_time_format(sbi_now_ms(), when, sizeof when),
                s_names[level], s_component, line);
}
