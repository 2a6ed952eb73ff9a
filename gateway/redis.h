/*
 * redis.h - a worker's two Redis connections: one for commands, one for
 * subscriptions (a subscribed connection can run nothing else).
 *
 * Owner and thread: one gw_redis per worker, used only on its thread.
 * Both connections reconnect by themselves with jittered exponential backoff
 * (100 ms doubling to 5 s); after a reconnect every channel in the
 * subscription set is subscribed again and on_ready runs, so the caller can
 * re-register what Redis forgot.
 *
 * Callbacks: a command callback runs exactly once if gw_redis_command
 * returned 0: with the reply, or with NULL when the connection is lost first
 * (hiredis' contract). The reply is borrowed until the callback returns.
 * If gw_redis_command fails (not connected) its callback never runs.
 */
#ifndef GW_REDIS_H
#define GW_REDIS_H

#include <hiredis/hiredis.h>

#include "pr.h"

typedef struct gw_redis gw_redis;
typedef struct gw_worker gw_worker;

typedef void (*gw_redis_reply_cb)(gw_redis *r, redisReply *reply, void *arg);
/* A message on a subscribed channel; views are borrowed. */
typedef void (*gw_redis_message_cb)(gw_redis *r, pr_view channel, pr_view message, void *arg);
typedef void (*gw_redis_ready_cb)(gw_redis *r, void *arg);

/* Parsed by pr_redis_url_parse (proto/pr.h). */
typedef pr_redis_addr gw_redis_addr;

gw_redis *gw_redis_new(gw_worker *w, const gw_redis_addr *addr, gw_redis_message_cb on_message,
                       gw_redis_ready_cb on_ready, void *arg);
void gw_redis_free(gw_redis *r);

/* Optional: cb runs when the subscription link, having been up, is lost:
 * messages published from then until the channels are confirmed again are
 * not delivered to this worker. */
void gw_redis_set_lost_cb(gw_redis *r, gw_redis_ready_cb cb);

/* 1 when both connections are up (readable from any thread). */
int gw_redis_ready(const gw_redis *r);

/* Sends a command built from argv; see the contract above. */
int gw_redis_command(gw_redis *r, gw_redis_reply_cb cb, void *arg, int argc, const char **argv,
                     const size_t *argvlen);

/* Runs exactly once per gw_redis_subscribe: ok = 1 once Redis confirmed the
 * subscription (at once when it already had), ok = 0 when the link is down or
 * goes down first. Messages published after ok = 1 reach this worker. */
typedef void (*gw_redis_subscribed_cb)(gw_redis *r, int ok, void *arg);

/*
 * Reference-counted membership of the subscription set: the channel is
 * subscribed on the first add. After the last remove it stays subscribed for
 * about a second (a quick leave and re-join costs nothing and cannot race
 * its own UNSUBSCRIBE), then is unsubscribed.
 */
void gw_redis_subscribe(gw_redis *r, pr_view channel);
void gw_redis_unsubscribe(gw_redis *r, pr_view channel);
/* Calls done once the channel's subscription is confirmed (at once if it is;
 * with ok = 0 at once if the channel is not in the set or the link is down). */
void gw_redis_when_subscribed(gw_redis *r, pr_view channel, gw_redis_subscribed_cb done,
                              void *arg);

#endif
