/* cm_log.c - key=value log lines on stderr. */
#include "cm_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int cm_log_level = CM_LOG_INFO;
static char label_key[16] = "node";
static char label_value[64] = "-";

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int cm_log_parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, level_names[i]))
            return i;
    return -1;
}

void cm_log_set_label(const char *key, const char *value)
{
    snprintf(label_key, sizeof label_key, "%s", key);
    snprintf(label_value, sizeof label_value, "%s", value);
}

void cm__log(int level, const char *fmt, ...)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s %s=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level & 3], label_key, label_value);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line - 1)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    /* one write per line so lines from several threads do not interleave */
    fwrite(line, 1, (size_t)n, stderr);
}
