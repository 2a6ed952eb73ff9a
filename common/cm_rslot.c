/*
 * cm_rslot.c - Redis Cluster's slot arithmetic: the slot of a key, the key
 * of a command, CLUSTER SLOTS and MOVED/ASK replies. No I/O.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cm_redis_int.h"

/* CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as Redis
 * Cluster's key hashing specifies. */
static unsigned crc16(const char *p, size_t n)
{
    unsigned crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (unsigned)(unsigned char)p[i] << 8;
        for (int b = 0; b < 8; b++)
            crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
}

unsigned cm__rslot_of(pr_view key)
{
    const char *open = memchr(key.ptr, '{', key.len);
    if (open) {
        size_t rest = key.len - (size_t)(open - key.ptr) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1)
            return crc16(open + 1, (size_t)(close - open - 1)) % CM_RSLOTS;
    }
    return crc16(key.ptr, key.len) % CM_RSLOTS;
}

static size_t len_of(const char *const *argv, const size_t *lens, int i)
{
    return lens ? lens[i] : strlen(argv[i]);
}

int cm__rslot_key(int argc, const char *const *argv, const size_t *lens, pr_view *key)
{
    if (argc < 2)
        return PR_ENOTFOUND;
    const char *verb = argv[0];
    int at = 1;
    if (!strcasecmp(verb, "SCRIPT") || !strcasecmp(verb, "PING") || !strcasecmp(verb, "INFO") ||
        !strcasecmp(verb, "CLUSTER") || !strcasecmp(verb, "AUTH") || !strcasecmp(verb, "SELECT")) {
        return PR_ENOTFOUND;
    } else if (!strcasecmp(verb, "XGROUP") || !strcasecmp(verb, "XINFO")) {
        at = 2;
    } else if (!strcasecmp(verb, "XREADGROUP") || !strcasecmp(verb, "XREAD")) {
        at = -1;
        for (int i = 1; i + 1 < argc; i++)
            if (!strcasecmp(argv[i], "STREAMS")) {
                at = i + 1;
                break;
            }
    } else if (!strcasecmp(verb, "EVAL") || !strcasecmp(verb, "EVALSHA")) {
        if (argc < 4 || atoi(argv[2]) < 1)
            return PR_ENOTFOUND;
        at = 3;
    }
    if (at < 0 || at >= argc)
        return PR_ENOTFOUND;
    *key = pr_view_make(argv[at], len_of(argv, lens, at));
    return 0;
}

int cm__rslot_parse(const redisReply *rep, cm_rslot_range *out, size_t max)
{
    if (!rep || rep->type != REDIS_REPLY_ARRAY)
        return PR_EINVAL;
    size_t n = 0;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *r = rep->element[i];
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
            r->element[0]->type != REDIS_REPLY_INTEGER ||
            r->element[1]->type != REDIS_REPLY_INTEGER ||
            r->element[2]->type != REDIS_REPLY_ARRAY || r->element[2]->elements < 2)
            return PR_EINVAL;
        const redisReply *m = r->element[2];
        long long first = r->element[0]->integer, last = r->element[1]->integer;
        if (first < 0 || last < first || last >= CM_RSLOTS ||
            m->element[0]->type != REDIS_REPLY_STRING ||
            m->element[1]->type != REDIS_REPLY_INTEGER || m->element[1]->integer < 1 ||
            m->element[1]->integer > 65535 || m->element[0]->len >= sizeof out->host)
            return PR_EINVAL;
        if (n == max)
            return PR_EINVAL;
        cm_rslot_range *o = &out[n++];
        o->first = (unsigned)first;
        o->last = (unsigned)last;
        /* "?" is Redis' "no endpoint known": the answering node's address */
        const char *h = m->element[0]->str;
        snprintf(o->host, sizeof o->host, "%s", strcmp(h, "?") ? h : "");
        o->port = (int)m->element[1]->integer;
    }
    return (int)n;
}

int cm__rslot_redirect(const char *err, unsigned *slot, char *host, size_t hsize, int *port)
{
    int kind;
    if (!strncmp(err, "MOVED ", 6))
        kind = 1;
    else if (!strncmp(err, "ASK ", 4))
        kind = 2;
    else
        return 0;
    const char *p = strchr(err, ' ') + 1;
    char *e;
    long s = strtol(p, &e, 10);
    if (e == p || *e != ' ' || s < 0 || s >= CM_RSLOTS)
        return 0;
    p = e + 1;
    const char *colon = strrchr(p, ':');
    if (!colon || colon == p || (size_t)(colon - p) >= hsize)
        return 0;
    long pt = strtol(colon + 1, &e, 10);
    if (e == colon + 1 || *e || pt < 1 || pt > 65535)
        return 0;
    memcpy(host, p, (size_t)(colon - p));
    host[colon - p] = '\0';
    *slot = (unsigned)s;
    *port = (int)pt;
    return kind;
}
