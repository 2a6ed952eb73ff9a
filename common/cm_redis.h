/*
 * cm_redis.h - a Redis link of either program on hiredis + libevent: one
 * command connection and, unless the link is command-only, one subscribe
 * connection (a subscribed connection can run nothing else).
 *
 * Owner and thread: whoever created it, on the thread of its event_base;
 * only cm_redis_ready may be read from other threads. Both connections
 * reconnect by themselves with jittered exponential backoff (100 ms
 * doubling to 5 s, each wait 50..100% of that so processes do not reconnect
 * in step); TCP keep-alive notices a peer that vanished. After a reconnect
 * every channel of the subscription set is subscribed again and on_ready
 * runs once every connection is up, so the owner can re-register what Redis
 * forgot.
 *
 * Command-only links exist for blocking commands (XREADGROUP ... BLOCK):
 * nothing else may use such a link while one runs.
 *
 * Redis Cluster (a redis-cluster:// address, docs/scaling.md): the link
 * keeps the slot map (CLUSTER SLOTS on a control connection to a seed or a
 * node it learnt of; again on MOVED, on a lost node, on an unconfirmed
 * subscription, every 10 s) and a command connection (and subscribe
 * connection) per master. A command goes to the master of its key's slot
 * (cm__rslot_key: every key carries a hash tag, so a command's keys
 * share a slot); MOVED and ASK are followed (5 at most), TRYAGAIN and
 * CLUSTERDOWN retried for 2 s; PUBLISH is sent as SPUBLISH and channels are
 * SSUBSCRIBEd on their slot's master, so a message reaches only the node
 * that owns the channel. SCRIPT goes to every master (the callback hears
 * the first). On a command-only cluster link each command in flight has a
 * connection of its own, so blocking reads of streams on different slots
 * run side by side. Readiness: the map covers every slot and every master's
 * connections are up. The lost callback also runs when a subscribed
 * channel's slot moves to another master (Redis unsubscribes it, or the map
 * shows it).
 *
 * Callbacks (libuv's contract): a command callback runs exactly once if
 * cm_redis_command returned 0: with the reply, or with NULL when the
 * connection is lost first or the link is freed (hiredis' contract). The
 * reply and the views of a message are borrowed until the callback returns.
 * If cm_redis_command fails its callback never runs. after_cb, when set,
 * runs after every callback into the owner (the gateway flushes its output
 * then).
 *
 * Errors: PR_ECLOSED when the command connection is down (or going down).
 * PR_ESTATE for subscriptions on a command-only link.
 */
#ifndef CM_REDIS_H
#define CM_REDIS_H

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "pr.h"

typedef struct cm_redis cm_redis;

typedef void (*cm_redis_reply_cb)(cm_redis *r, redisReply *reply, void *arg);
/* A message on a subscribed channel; views are borrowed. */
typedef void (*cm_redis_message_cb)(cm_redis *r, pr_view channel, pr_view message, void *arg);
typedef void (*cm_redis_event_cb)(cm_redis *r, void *arg);
/* ok = 1: Redis confirmed the channel's subscription; 0: it could not be. */
typedef void (*cm_redis_subscribed_cb)(cm_redis *r, int ok, void *arg);

typedef struct {
    const char *name; /* in log lines (link=NAME): "worker-3", "ingest-read" */
    /* NULL: a command-only link. Else also a subscribe connection whose
     * messages come here. */
    cm_redis_message_cb on_message;
    cm_redis_event_cb on_ready;        /* every connection is up (again); may be NULL */
    void *arg;                         /* of on_message, on_ready, on_lost */
    void (*after_cb)(void *after_arg); /* may be NULL */
    void *after_arg;
} cm_redis_options;

/* Starts connecting at once. */
cm_redis *cm_redis_new(struct event_base *base, const pr_redis_addr *addr,
                       const cm_redis_options *o);
/* Pending command callbacks run with NULL, waiting "when subscribed"
 * callbacks with ok = 0, before it returns. NULL is fine. */
void cm_redis_free(cm_redis *r);

/* Optional: cb runs when the subscribe connection, having been up, is lost:
 * messages published from then until the channels are confirmed again are
 * not delivered. */
void cm_redis_set_lost_cb(cm_redis *r, cm_redis_event_cb cb);

/* 1 when every connection is up (readable from any thread). */
int cm_redis_ready(const cm_redis *r);
/* Counts connections of the command connection: a change means commands
 * sent before may have been lost with the old connection. */
unsigned cm_redis_epoch(const cm_redis *r);

/* 1 when the link is to a Redis Cluster (redis-cluster://). */
int cm_redis_is_cluster(const cm_redis *r);

/* Sends a command built from argv on the command connection; cb may be
 * NULL (the reply is dropped). See the contract above. */
int cm_redis_command(cm_redis *r, cm_redis_reply_cb cb, void *arg, int argc, const char **argv,
                     const size_t *argvlen);

/*
 * A fence: cb(r, ok, arg) runs once every command sent on the link before
 * the fence has been answered; ok = 1 when none of them failed (no NULL, no
 * error reply). On a cluster the commands went to different masters, on
 * connections of their own, so the last reply says nothing of the others:
 * chat-storage waits on a fence before it acknowledges a batch's stream
 * entries. On one Redis it is a PING on the command connection (ok: it was
 * answered). cb runs with ok = 0 when the link is freed first; it never runs
 * if cm_redis_fence fails (PR_ECLOSED).
 */
typedef void (*cm_redis_fence_cb)(cm_redis *r, int ok, void *arg);
int cm_redis_fence(cm_redis *r, cm_redis_fence_cb cb, void *arg);

/*
 * Reference-counted membership of the subscription set: the channel is
 * subscribed on the first add, now if the subscribe connection is up, and
 * after every reconnect. After the last remove it stays subscribed for
 * about a second (a quick leave and re-join costs nothing and cannot race
 * its own UNSUBSCRIBE), then is unsubscribed. PR_ESTATE on a command-only
 * link.
 */
int cm_redis_subscribe(cm_redis *r, pr_view channel);
void cm_redis_unsubscribe(cm_redis *r, pr_view channel);
/* Runs done exactly once: ok = 1 once the channel's subscription is
 * confirmed (at once if it is), ok = 0 at once if the channel is not in the
 * set or the subscribe connection is down, or later if it goes down first.
 * Messages published after ok = 1 are delivered. Waiters of one channel run
 * in the order they came. */
void cm_redis_when_subscribed(cm_redis *r, pr_view channel, cm_redis_subscribed_cb done, void *arg);

#endif
