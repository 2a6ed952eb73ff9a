/*
 * log.h - one logging function, key=value lines on stderr.
 * The level is checked before formatting. Never log message bodies or tokens.
 */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <time.h>

enum { GW_LOG_DEBUG = 0, GW_LOG_INFO = 1, GW_LOG_WARN = 2, GW_LOG_ERROR = 3 };

extern int gw_log_level;
int gw_log_parse_level(const char *s); /* -1 when unknown */
void gw_log_set_node(const char *node_id);
void gw__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define GW_LOG(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) >= gw_log_level)                                                               \
            gw__log((level), __VA_ARGS__);                                                         \
    } while (0)
#define GW_DEBUG(...) GW_LOG(GW_LOG_DEBUG, __VA_ARGS__)
#define GW_INFO(...) GW_LOG(GW_LOG_INFO, __VA_ARGS__)
#define GW_WARN(...) GW_LOG(GW_LOG_WARN, __VA_ARGS__)
#define GW_ERROR(...) GW_LOG(GW_LOG_ERROR, __VA_ARGS__)

/* For what clients can trigger at will: at most 10 lines per second per call
 * site and thread, then silence until the next second (the metrics count all). */
#define GW_WARN_RATELIMITED(...)                                                                   \
    do {                                                                                           \
        static __thread long gw_rl_second;                                                         \
        static __thread unsigned gw_rl_lines;                                                      \
        long gw_rl_now = (long)time(NULL);                                                         \
        if (gw_rl_now != gw_rl_second) {                                                           \
            gw_rl_second = gw_rl_now;                                                              \
            gw_rl_lines = 0;                                                                       \
        }                                                                                          \
        if (gw_rl_lines++ < 10)                                                                    \
            GW_WARN(__VA_ARGS__);                                                                  \
    } while (0)

#endif
