/*
 * pr_url.c - the Redis URL both processes accept (--redis).
 */
#include <stdio.h>
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

/* host[:port] from p to end into host (of size hsize) and *port. */
static int host_port(const char *p, const char *end, char *host, size_t hsize, int *port)
{
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *hend = colon ? colon : end;
    if (hend == p || (size_t)(hend - p) >= hsize)
        return PR_EINVAL;
    memcpy(host, p, (size_t)(hend - p));
    host[hend - p] = '\0';
    *port = 6379;
    if (colon && number(colon + 1, end, 1, 65535, port) != PR_OK)
        return PR_EINVAL;
    return PR_OK;
}

int pr_redis_url_parse(const char *url, pr_redis_addr *out)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    const char *p;
    if (strncmp(url, "redis://", 8) == 0) {
        p = url + 8;
    } else if (strncmp(url, "redis-cluster://", 16) == 0) {
        p = url + 16;
        out->cluster = 1;
    } else {
        return PR_EINVAL;
    }
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
    if (out->cluster) {
        if (slash && slash[1]) /* a cluster has database 0 only */
            return PR_EINVAL;
        while (p < end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *e = comma ? comma : end;
            if (out->nseeds == PR_REDIS_SEEDS_MAX)
                return PR_EINVAL;
            pr_hostport *sd = &out->seeds[out->nseeds++];
            if (host_port(p, e, sd->host, sizeof sd->host, &sd->port) != PR_OK)
                return PR_EINVAL;
            p = comma ? comma + 1 : end;
            if (comma && p == end)
                return PR_EINVAL; /* a trailing comma */
        }
        if (out->nseeds == 0)
            return PR_EINVAL;
        snprintf(out->host, sizeof out->host, "%s", out->seeds[0].host);
        out->port = out->seeds[0].port;
        return PR_OK;
    }
    if (host_port(p, end, out->host, sizeof out->host, &out->port) != PR_OK)
        return PR_EINVAL;
    if (slash && slash[1] && number(slash + 1, slash + strlen(slash), 0, 1000, &out->db) != PR_OK)
        return PR_EINVAL;
    return PR_OK;
}
