/*
 * cm_log.h - the one logger of both programs: key=value lines on stderr,
 * "ts=... level=... LABEL=ID " then the caller's fields.
 *
 * The level is checked before formatting. Never log message bodies or
 * tokens. Any thread may log: each line is one write, so lines from several
 * threads do not interleave. Set the level and the label once at start-up,
 * before threads start.
 */
#ifndef CM_LOG_H
#define CM_LOG_H

#include <time.h>

enum { CM_LOG_DEBUG = 0, CM_LOG_INFO = 1, CM_LOG_WARN = 2, CM_LOG_ERROR = 3 };

extern int cm_log_level;
/* "debug", "info", "warn", "error": the level; -1 when unknown. */
int cm_log_parse_level(const char *s);
/* The field that names this process in every line: key "node" (gateways)
 * or "replica" (storage), value its id. Before it is set: node=-. */
void cm_log_set_label(const char *key, const char *value);
void cm__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define CM_LOG(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) >= cm_log_level)                                                               \
            cm__log((level), __VA_ARGS__);                                                         \
    } while (0)
#define CM_DEBUG(...) CM_LOG(CM_LOG_DEBUG, __VA_ARGS__)
#define CM_INFO(...) CM_LOG(CM_LOG_INFO, __VA_ARGS__)
#define CM_WARN(...) CM_LOG(CM_LOG_WARN, __VA_ARGS__)
#define CM_ERROR(...) CM_LOG(CM_LOG_ERROR, __VA_ARGS__)

/* For what peers can cause at will (client misbehaviour, malformed stream
 * entries, a database that keeps failing): at most 10 lines per second per
 * call site and thread, then silence until the next second (the metrics
 * count all). */
#define CM_LOG_RATELIMITED(level, ...)                                                             \
    do {                                                                                           \
        static __thread long cm_rl_second;                                                         \
        static __thread unsigned cm_rl_lines;                                                      \
        long cm_rl_now = (long)time(NULL);                                                         \
        if (cm_rl_now != cm_rl_second) {                                                           \
            cm_rl_second = cm_rl_now;                                                              \
            cm_rl_lines = 0;                                                                       \
        }                                                                                          \
        if (cm_rl_lines++ < 10)                                                                    \
            CM_LOG((level), __VA_ARGS__);                                                          \
    } while (0)
#define CM_WARN_RATELIMITED(...) CM_LOG_RATELIMITED(CM_LOG_WARN, __VA_ARGS__)

#endif
