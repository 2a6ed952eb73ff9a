/* cm_settings.c - the settings-table engine: defaults, environment, argv. */
#include "cm_settings.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cm_parse_ull(const char *v, unsigned long long *out)
{
    char *end;
    /* strtoull would take a sign or leading spaces, and wrap "-5" around */
    if (*v < '0' || *v > '9')
        return -1;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end != '\0')
        return -1;
    *out = x;
    return 0;
}

int cm_settings_fail(const cm_settings *t, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s\n", t->program, msg);
    return -1;
}

static int bad(const cm_settings *t, const cm_setting *s, const char *from, const char *val,
               const char *why)
{
    if (s->type == CM_SET_SECRET)
        val = "...";
    return cm_settings_fail(t, "invalid value for --%s (%s): '%s': %s", s->flag, from, val, why);
}

static int enum_has(const char *choices, const char *v)
{
    size_t n = strlen(v);
    const char *p = choices;
    while (*p) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && memcmp(p, v, n) == 0)
            return 1;
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

static int apply(const cm_settings *t, void *cfg, const cm_setting *s, const char *v,
                 const char *from)
{
    char *field = (char *)cfg + s->offset;
    unsigned long long x;
    char why[128];
    switch (s->type) {
    case CM_SET_STR:
    case CM_SET_SECRET:
    case CM_SET_ENUM:
        if (strlen(v) >= s->size)
            return bad(t, s, from, v, "too long");
        if (s->type == CM_SET_ENUM && !enum_has(s->choices, v)) {
            snprintf(why, sizeof why, "expected one of %s", s->choices);
            return bad(t, s, from, v, why);
        }
        memcpy(field, v, strlen(v) + 1);
        return 0;
    case CM_SET_HOSTPORT: {
        const char *colon = strrchr(v, ':');
        if (!colon || colon == v || (size_t)(colon - v) >= s->size)
            return bad(t, s, from, v, "expected HOST:PORT");
        if (cm_parse_ull(colon + 1, &x) != 0 || x > 65535)
            return bad(t, s, from, v, "port must be 0..65535");
        memcpy(field, v, (size_t)(colon - v));
        field[colon - v] = '\0';
        *(int *)(field + s->size) = (int)x;
        return 0;
    }
    case CM_SET_UINT:
    case CM_SET_SIZE:
        if (cm_parse_ull(v, &x) != 0)
            return bad(t, s, from, v, "expected a non-negative integer");
        if (x < s->min || x > s->max) {
            snprintf(why, sizeof why, "must be %llu..%llu", s->min, s->max);
            return bad(t, s, from, v, why);
        }
        if (s->type == CM_SET_UINT) /* int and unsigned fields alike; bounds fit both */
            *(unsigned *)field = (unsigned)x;
        else
            *(size_t *)field = (size_t)x;
        return 0;
    case CM_SET_ONOFF:
        if (!strcmp(v, "on"))
            *(int *)field = 1;
        else if (!strcmp(v, "off"))
            *(int *)field = 0;
        else
            return bad(t, s, from, v, "expected on or off");
        return 0;
    case CM_SET_BOOL:
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on"))
            *(int *)field = 1;
        else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off"))
            *(int *)field = 0;
        else
            return bad(t, s, from, v, "expected true or false");
        return 0;
    }
    return -1;
}

void cm_settings_usage(const cm_settings *t, FILE *out)
{
    fputs(t->usage, out);
    for (size_t i = 0; i < t->nrows; i++) {
        const cm_setting *s = &t->rows[i];
        char flag[64];
        snprintf(flag, sizeof flag, "--%s%s", s->flag, s->type == CM_SET_BOOL ? "" : " VALUE");
        fprintf(out, "  %-28s %s\n  %-28s env %s, default '%s'", flag, s->help, "", s->env, s->def);
        if (s->type == CM_SET_ENUM)
            fprintf(out, ", one of %s", s->choices);
        if (s->type == CM_SET_ONOFF)
            fprintf(out, ", on or off");
        if (s->type == CM_SET_UINT || s->type == CM_SET_SIZE)
            fprintf(out, ", range %llu..%llu", s->min, s->max);
        fputs("\n", out);
    }
    fprintf(out, "  %-28s %s\n", "--help", "print this help and exit");
}

static const cm_setting *find_flag(const cm_settings *t, const char *name, size_t len)
{
    for (size_t i = 0; i < t->nrows; i++)
        if (strlen(t->rows[i].flag) == len && !memcmp(t->rows[i].flag, name, len))
            return &t->rows[i];
    return NULL;
}

int cm_settings_load(const cm_settings *t, void *cfg, int argc, char **argv)
{
    for (size_t i = 0; i < t->nrows; i++)
        if (apply(t, cfg, &t->rows[i], t->rows[i].def, "default") != 0)
            return -1;
    for (size_t i = 0; i < t->nrows; i++) {
        const char *v = getenv(t->rows[i].env);
        if (v && apply(t, cfg, &t->rows[i], v, t->rows[i].env) != 0)
            return -1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cm_settings_usage(t, stdout);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0)
            return cm_settings_fail(t, "unexpected argument '%s' (see --help)", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const cm_setting *s = find_flag(t, name, len);
        if (!s) /* the name only: what follows '=' may be a secret */
            return cm_settings_fail(t, "unknown option '--%.*s' (see --help)", (int)len, name);
        const char *v = eq ? eq + 1 : NULL;
        if (!v && s->type == CM_SET_BOOL)
            v = "true";
        if (!v) {
            if (i + 1 >= argc)
                return cm_settings_fail(t, "option --%s needs a value", s->flag);
            v = argv[++i];
        }
        if (apply(t, cfg, s, v, "command line") != 0)
            return -1;
    }
    return 0;
}
