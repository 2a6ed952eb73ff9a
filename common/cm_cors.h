/*
 * cm_cors.h - the --cors-origin rule both HTTP servers follow. The setting
 * is "" (no CORS headers), "*" (any origin) or a comma-separated list of
 * origins (spaces around items ignored). Pure; any thread.
 */
#ifndef CM_CORS_H
#define CM_CORS_H

#include "pr.h"

/* 1 when origin is one of the list's items. "*" is not expanded here: a
 * listed origin is trusted with credentials, any page is not. */
int cm_cors_listed(const char *list, pr_view origin);

/* What Access-Control-Allow-Origin a request from origin earns. */
typedef enum {
    CM_CORS_NONE = 0, /* no CORS headers: no setting, no Origin, or not allowed */
    CM_CORS_ANY,      /* "Access-Control-Allow-Origin: *" */
    CM_CORS_ECHO,     /* the origin itself, and "Vary: Origin" (with credentials
                         the wildcard is not allowed) */
} cm_cors_allow;
cm_cors_allow cm_cors_check(const char *list, int credentials, pr_view origin);

#endif
