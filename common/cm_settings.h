/*
 * cm_settings.h - the settings-table engine of both programs. A program
 * keeps one table of rows (flag, environment variable, type, field, bounds,
 * default, help) for its config struct; the engine fills the struct from the
 * defaults, then the environment, then argv (flags win), prints --help from
 * the rows, and stops at the first bad value with an error naming the
 * setting. Cross-setting checks stay with the program (cm_settings_fail
 * prints them alike).
 *
 * Start-up only, on the main thread; the struct is read-only afterwards.
 */
#ifndef CM_SETTINGS_H
#define CM_SETTINGS_H

#include <stddef.h>
#include <stdio.h>

typedef enum {
    CM_SET_STR,      /* char[size] */
    CM_SET_SECRET,   /* char[size], never shown in errors (it may carry a password) */
    CM_SET_HOSTPORT, /* HOST:PORT: host into char[size], port into an int field that
                        directly follows it (assert it where the struct is declared) */
    CM_SET_UINT,     /* unsigned or int, min..max */
    CM_SET_SIZE,     /* size_t, min..max */
    CM_SET_BOOL,     /* int 0/1: true|false|yes|no|on|off|1|0; the flag alone is true */
    CM_SET_ENUM,     /* char[size], one of choices */
    CM_SET_ONOFF,    /* int 0/1: exactly on|off */
} cm_setting_type;

typedef struct {
    const char *flag; /* without the leading "--" */
    const char *env;
    cm_setting_type type;
    size_t offset; /* of the field in the config struct */
    size_t size;   /* CM_SET_STR/SECRET/ENUM/HOSTPORT: the char buffer's size */
    unsigned long long min, max;
    const char *def;
    const char *choices; /* CM_SET_ENUM: '|' separated */
    const char *help;
} cm_setting;

/* offset and size of a field of struct type T, for a row */
#define CM_SET_FIELD(T, f) offsetof(T, f), sizeof(((T *)0)->f)
/* The layout CM_SET_HOSTPORT needs: T's int port directly after char host[]. */
#define CM_SET_HOSTPORT_ASSERT(T, host, port)                                                      \
    _Static_assert(offsetof(T, port) == offsetof(T, host) + sizeof(((T *)0)->host) &&              \
                       sizeof(((T *)0)->port) == sizeof(int),                                      \
                   #T "." #port " must directly follow " #T "." #host)

typedef struct {
    const char *program; /* "chat-gateway": first word of every error */
    const char *usage;   /* --help text before the list of settings */
    const cm_setting *rows;
    size_t nrows;
} cm_settings;

/*
 * Fills cfg (which the caller zeroed) from the defaults, the environment,
 * then argv (argv[0] is skipped). Returns 0 to run, 1 when --help or -h was given and
 * the usage was printed on stdout (exit 0), -1 on a bad setting or argument
 * (an error naming it was printed on stderr; exit 2).
 */
int cm_settings_load(const cm_settings *t, void *cfg, int argc, char **argv);
void cm_settings_usage(const cm_settings *t, FILE *out);
/* Prints "PROGRAM: " fmt "\n" on stderr and returns -1: for the program's
 * cross-setting checks. */
int cm_settings_fail(const cm_settings *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A decimal integer without sign, spaces or anything after it: 0, else -1
 * (empty, not a number, out of range). */
int cm_parse_ull(const char *v, unsigned long long *out);

#endif
