/*
 * cm_rlink.h - the Redis link's state, shared by cm_redis.c (connections,
 * nodes, channels, the public calls) and cm_rcluster.c (Redis Cluster: the
 * slot map, routing, fences). Included by those two files only.
 */
#ifndef CM_RLINK_H
#define CM_RLINK_H

#include <hiredis/async.h>

#include "cm_redis.h"
#include "cm_redis_int.h"
#include "pr_map.h"

#define ADDRS_MAX 64 /* addresses the control connection tries */

typedef struct rnode rnode;

typedef struct waiter {
    struct waiter *next;
    cm_redis_subscribed_cb cb;
    void *arg;
} waiter;

typedef struct chan {
    pr_map_entry link; /* in cm_redis.chans; first, so an entry is its chan */
    unsigned refs;
    unsigned slot;
    int confirmed;       /* Redis acknowledged the SUBSCRIBE on node's connection */
    rnode *node;         /* where the SUBSCRIBE went; NULL: not sent */
    uint64_t sent_ms;    /* when (cm_now_ms) */
    uint64_t idle_since; /* refs dropped to 0 then */
    waiter *waiters;     /* waiting for the confirmation, in order */
    waiter *waiters_last;
    size_t len;
    char name[];
} chan;

/* A command connection; the control connection of a cluster has no node. */
typedef struct {
    cm_redis *r;
    rnode *node;
    int first;             /* the node's cmd[0] */
    redisAsyncContext *ac; /* NULL while down */
    int up;                /* connected, and AUTH and SELECT accepted */
    unsigned handshake;    /* replies of AUTH and SELECT still to come */
    unsigned failures;
    unsigned pending; /* cluster commands sent and not answered */
    struct event *retry;
    struct event *deadline; /* CONNECT_MS after a connect began */
} cconn;

struct rnode {
    cm_redis *r;
    rnode *next;
    char host[128];
    int port;
    cconn **cmd; /* cmd[0]; more on a command-only cluster link (one command each) */
    unsigned ncmd;
    cm_rsub *sub; /* NULL on command-only links */
    int mark;     /* named by the map being applied */
};

/* A command in cluster mode, kept to follow MOVED and ASK. */
typedef struct req {
    cm_redis *r;
    cm_redis_reply_cb cb;
    void *arg;
    int argc;
    int slot; /* -1: keyless */
    unsigned redirects, retries;
    cconn *conn;
    struct event *timer;
    struct req *prev, *next;   /* waiting to be retried */
    uint64_t seq;              /* in the order sent (fences) */
    int counted;               /* in slot_inflight (sent, not answered yet) */
    struct req *hnext;         /* cm_redis.held: waiting for its slot's earlier commands */
    struct req *iprev, *inext; /* cm_redis.inflight, by seq */
    const char **argv;
    size_t *lens;
} req;

/* Waits until every command sent before it was answered (cluster). */
typedef struct fence {
    struct fence *next;
    uint64_t seq;
    int failed;
    cm_redis_fence_cb cb;
    void *arg;
} fence;

struct cm_redis {
    struct event_base *base;
    pr_redis_addr addr;
    char name[32];
    int subscribing; /* a subscribe connection per node */
    int cluster;
    rnode *nodes; /* one Redis: its node; cluster: the masters of the map */
    int ready;    /* atomic: every connection up (and the map whole) */
    unsigned epoch;
    pr_map chans; /* chan by name */
    cm_redis_message_cb on_message;
    cm_redis_event_cb on_ready;
    cm_redis_event_cb on_lost;
    void *arg;
    void (*after_cb)(void *);
    void *after_arg;
    unsigned seed;
    struct event *tick; /* 1 s: linger, resubscribe, refresh */
    unsigned ticks;
    /* cluster */
    rnode **slots; /* CM_RSLOTS */
    int complete;  /* every slot has a node */
    cconn ctl;     /* CLUSTER SLOTS */
    pr_hostport addrs[ADDRS_MAX];
    unsigned naddrs, addr_next;
    int refreshing, refresh_again, refresh_wanted;
    uint64_t last_refresh_ms;
    struct event *refresh_timer;
    req *retrying;
    int freeing;
    uint64_t next_seq;
    req *inflight, *inflight_last; /* every command not answered yet, by seq */
    /* per slot, so that its commands reach Redis in the order sent even
     * while the slot moves: commands in flight, the node they all went to
     * (NULL: several), and commands held until those are answered */
    uint32_t *slot_inflight;
    rnode **slot_on;
    uint32_t *slot_held;
    req *held, *held_last;
    fence *fences, *fences_last; /* by seq */
};

/* cm_redis.c */
void cm__after(cm_redis *r);
pr_view cm__chan_name(const pr_map_entry *e);
void cm__chan_fire(cm_redis *r, chan *c, int ok);
void cm__chan_remove(cm_redis *r, chan *c);
void cm__chan_send(cm_redis *r, chan *c);
void cm__sub_send(cm_redis *r, rnode *node, int subscribe, const pr_view *names, size_t n);
void cm__update_ready(cm_redis *r);
void cm__cconn_init(cconn *k, cm_redis *r, rnode *node, int first);
void cm__addr_add(cm_redis *r, const char *host, int port);
rnode *cm__node_get(cm_redis *r, const char *host, int port);
void cm__node_free(rnode *n);

/* cm_rcluster.c */
void cm__refresh_send(cm_redis *r);
void cm__refresh_soon(cm_redis *r);
void cm__refresh_timer_cb(evutil_socket_t fd, short what, void *arg);
void cm__req_deliver(req *q, redisReply *reply);
int cm__cluster_command(cm_redis *r, cm_redis_reply_cb cb, void *arg, int argc, const char **argv,
                        const size_t *argvlen);

#endif
