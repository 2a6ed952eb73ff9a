/* cm_cors.c - the --cors-origin matcher. */
#include "cm_cors.h"

#include <string.h>

int cm_cors_listed(const char *list, pr_view origin)
{
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        while (n && p[0] == ' ') {
            p++;
            n--;
        }
        while (n && p[n - 1] == ' ')
            n--;
        if (n == origin.len && !memcmp(p, origin.ptr, n))
            return 1;
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

cm_cors_allow cm_cors_check(const char *list, int credentials, pr_view origin)
{
    if (!list[0] || origin.len == 0)
        return CM_CORS_NONE;
    if (!strcmp(list, "*"))
        return credentials ? CM_CORS_ECHO : CM_CORS_ANY;
    return cm_cors_listed(list, origin) ? CM_CORS_ECHO : CM_CORS_NONE;
}
