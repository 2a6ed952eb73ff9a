/*
 * pr_url.c - the Redis URL both processes accept (--redis).
 */
#include <stdlib.h>
#include <string.h>

#include "pr.h"

/* A decimal number from p up to end (exclusive), within [min, max]. */
static int number(const char *p, const char *end, long min, long max, int *out)
{
    if (p == end || *p < '0' || *p > '9')
        return PR_EINVAL;
    char *e;
    long n = strtol(p, &e, 10);
    if (e != end || n < min || n > max)
        return PR_EINVAL;
    *out = (int)n;
    return PR_OK;
}

int pr_redis_url_parse(const char *url, pr_redis_addr *out)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    if (strncmp(url, "redis://", 8) != 0)
        return PR_EINVAL;
    const char *p = url + 8;
    const char *at = strrchr(p, '@');
    if (at) {
        /* [user]:password@ - the user name (Redis 6 ACL) is ignored */
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        size_t n = (size_t)(at - pw);
        if (n >= sizeof out->password)
            return PR_EINVAL;
        memcpy(out->password, pw, n);
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    const char *end = slash ? slash : p + strlen(p);
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *hend = colon ? colon : end;
    if (hend == p || (size_t)(hend - p) >= sizeof out->host)
        return PR_EINVAL;
    memcpy(out->host, p, (size_t)(hend - p));
    if (colon && number(colon + 1, end, 1, 65535, &out->port) != PR_OK)
        return PR_EINVAL;
    if (slash && slash[1] && number(slash + 1, slash + strlen(slash), 0, 1000, &out->db) != PR_OK)
        return PR_EINVAL;
    return PR_OK;
}
