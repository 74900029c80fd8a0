/*  log.c - one line per event on stderr, with a level (journald reads it). */
#include "sbi.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *s_component = "sharebus";
static sbi_log_level_t s_level = SBI_LOG_INFO;
static const char *s_names[] = {"error", "warning", "notice", "info", "debug"};

void sbi_log_setup(const char *component, sbi_log_level_t level)
{
    s_component = component;
    s_level = level;
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
    char when[32];
    fprintf(stderr, "%s %s %s: %s\n", sbi_time_format(sbi_now_ms(), when, sizeof when),
            s_names[level], s_component, line);
}
