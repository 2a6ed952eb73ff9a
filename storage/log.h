/*
 * log.h - one logging function, key=value lines on stderr.
 * The level is checked before formatting. Never log message bodies or tokens.
 * chat-storage runs one thread, so nothing here is locked.
 */
#ifndef ST_LOG_H
#define ST_LOG_H

#include <time.h>

enum { ST_LOG_DEBUG = 0, ST_LOG_INFO = 1, ST_LOG_WARN = 2, ST_LOG_ERROR = 3 };

extern int st_log_level;
int st_log_parse_level(const char *s); /* -1 when unknown */
void st_log_set_replica(const char *replica_id);
void st__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define ST_LOG(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) >= st_log_level)                                                               \
            st__log((level), __VA_ARGS__);                                                         \
    } while (0)
#define ST_DEBUG(...) ST_LOG(ST_LOG_DEBUG, __VA_ARGS__)
#define ST_INFO(...) ST_LOG(ST_LOG_INFO, __VA_ARGS__)
#define ST_WARN(...) ST_LOG(ST_LOG_WARN, __VA_ARGS__)
#define ST_ERROR(...) ST_LOG(ST_LOG_ERROR, __VA_ARGS__)

/* For what other processes can cause at will (malformed stream entries, a
 * database that keeps failing): at most 10 lines per second per call site,
 * then silence until the next second (the metrics count all). */
#define ST_LOG_RATELIMITED(level, ...)                                                             \
    do {                                                                                           \
        static long st_rl_second;                                                                  \
        static unsigned st_rl_lines;                                                               \
        long st_rl_now = (long)time(NULL);                                                         \
        if (st_rl_now != st_rl_second) {                                                           \
            st_rl_second = st_rl_now;                                                              \
            st_rl_lines = 0;                                                                       \
        }                                                                                          \
        if (st_rl_lines++ < 10)                                                                    \
            ST_LOG((level), __VA_ARGS__);                                                          \
    } while (0)
#define ST_WARN_RATELIMITED(...) ST_LOG_RATELIMITED(ST_LOG_WARN, __VA_ARGS__)

#endif
