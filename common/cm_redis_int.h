/*
 * cm_redis_int.h - the parts of the Redis link that cm_redis.c builds on:
 * Redis Cluster's slot arithmetic (cm_rslot.c, no I/O) and the subscribe
 * connection (cm_rsub.c). Not for callers outside common/.
 */
#ifndef CM_REDIS_INT_H
#define CM_REDIS_INT_H

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "pr.h"

/* ---- slots (cm_rslot.c) ---- */
#define CM_RSLOTS 16384

/* The slot of a key or channel: CRC16 (XMODEM) of its hash tag (the bytes
 * between the first '{' and the next '}', when not empty), else of all of
 * it, modulo 16384. */
unsigned cm__rslot_of(pr_view key);

/* The key (or channel) that routes a command: argv[1] for most, argv[2] of
 * XGROUP, the first stream after STREAMS of XREAD/XREADGROUP, the first key
 * of EVAL/EVALSHA. 0 and *key set; PR_ENOTFOUND for keyless commands (SCRIPT,
 * PING, EVAL with no keys...). */
int cm__rslot_key(int argc, const char *const *argv, const size_t *lens, pr_view *key);

/* One range of a CLUSTER SLOTS reply: slots [first, last] served by the
 * master host:port (host empty: the node that answered). */
typedef struct {
    unsigned first, last;
    char host[128];
    int port;
} cm_rslot_range;
/* Parses a CLUSTER SLOTS reply into out[0..max): the number of ranges, or
 * PR_EINVAL for anything else (an error, a malformed element). */
int cm__rslot_parse(const redisReply *rep, cm_rslot_range *out, size_t max);

/* "MOVED 3999 127.0.0.1:6381" or "ASK ...": 1 for MOVED, 2 for ASK (slot,
 * host and port set), 0 for any other error. */
int cm__rslot_redirect(const char *err, unsigned *slot, char *host, size_t hsize, int *port);

/* ---- the subscribe connection (cm_rsub.c) ----
 * One TCP connection read with hiredis' reply parser on libevent, for
 * pushes hiredis 0.14's async API does not know (SSUBSCRIBE's smessage).
 * It sends AUTH and SELECT first when the address has them, reconnects by
 * itself with cm_backoff, and hands every other reply to on_reply. */
typedef struct cm_rsub cm_rsub;
typedef struct {
    void (*on_up)(cm_rsub *s, void *arg);
    /* borrowed until it returns; must not free the connection */
    void (*on_reply)(cm_rsub *s, redisReply *rep, void *arg);
    /* lost (was_up) or failed to connect; the retry is armed already */
    void (*on_down)(cm_rsub *s, int was_up, void *arg);
} cm_rsub_cbs;

cm_rsub *cm__rsub_new(struct event_base *base, const char *name, const char *host, int port,
                      const char *password, int db, const cm_rsub_cbs *cbs, void *arg);
void cm__rsub_free(cm_rsub *s); /* no callback runs from it */
int cm__rsub_up(const cm_rsub *s);
/* Writes one command; PR_ECLOSED while down. */
int cm__rsub_send(cm_rsub *s, int argc, const char *const *argv, const size_t *lens);

#endif
