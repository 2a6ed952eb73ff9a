/*
 * cm_redis.c - the Redis link: one Redis, or the masters of a Redis Cluster
 * with commands routed by slot; per node a command connection (hiredis
 * async) and, on links that subscribe, a subscribe connection (cm_rsub.c);
 * the reference-counted subscription set.
 */
#include "cm_redis.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cm_backoff.h"
#include "cm_clock.h"
#include "cm_log.h"
#include "cm_redis_int.h"
#include "pr_map.h"

#define LINGER_MS 1000    /* an unused channel stays subscribed this long */
#define RESUB_BATCH 512   /* channels per SUBSCRIBE after a reconnect (one Redis) */
#define REFRESH_GAP_MS 100 /* between two CLUSTER SLOTS */
#define REFRESH_EVERY 10  /* ticks (seconds) between refreshes when all is well */
#define RESEND_MS 1000    /* an unconfirmed SSUBSCRIBE is sent again after this */
#define MAX_REDIRECTS 5   /* MOVED/ASK followed per command */
#define MAX_RETRIES 40    /* TRYAGAIN, CLUSTERDOWN or no node: 50 ms apart */
#define RETRY_MS 50
#define POOL_MAX 64       /* connections per node of a command-only cluster link */
#define ADDRS_MAX 64      /* addresses the control connection tries */
#define CONNECT_MS 3000   /* a connection not up by then is given up (a dead host's
                           * address answers nothing; hiredis 0.14 has no timeout) */

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
    int first; /* the node's cmd[0] */
    redisAsyncContext *ac; /* NULL while down */
    int up;
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
    struct req *prev, *next; /* waiting to be retried */
    uint64_t seq;              /* in the order sent (fences) */
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
    fence *fences, *fences_last;   /* by seq */
};

static void after(cm_redis *r)
{
    if (r->after_cb)
        r->after_cb(r->after_arg);
}

/* ---- channel set ---- */

static pr_view chan_name(const pr_map_entry *e)
{
    const chan *c = (const chan *)e;
    return pr_view_make(c->name, c->len);
}

static chan *chan_find(cm_redis *r, pr_view name)
{
    return (chan *)pr_map_find(&r->chans, name);
}

static void chan_fire(cm_redis *r, chan *c, int ok)
{
    waiter *list = c->waiters;
    c->waiters = c->waiters_last = NULL;
    while (list) {
        waiter *wt = list;
        list = wt->next;
        wt->cb(r, ok, wt->arg);
        pr_free(wt);
    }
}

static void chan_remove(cm_redis *r, chan *c)
{
    pr_map_remove(&r->chans, &c->link);
    chan_fire(r, c, 0);
    pr_free(c);
}

static rnode *node_of_slot(cm_redis *r, unsigned slot)
{
    return r->cluster ? r->slots[slot] : r->nodes;
}

/* (S)SUBSCRIBE or (S)UNSUBSCRIBE names[0..n) on node's subscribe connection
 * (a cluster's sharded verbs take channels of one slot: one at a time). */
static void sub_send(cm_redis *r, rnode *node, int subscribe, const pr_view *names, size_t n)
{
    if (!node || !node->sub || !cm_rsub_up(node->sub) || n == 0)
        return;
    const char *verb = r->cluster ? (subscribe ? "SSUBSCRIBE" : "SUNSUBSCRIBE")
                                  : (subscribe ? "SUBSCRIBE" : "UNSUBSCRIBE");
    size_t per = r->cluster ? 1 : n;
    const char **argv = pr_malloc((per + 1) * sizeof *argv);
    size_t *lens = pr_malloc((per + 1) * sizeof *lens);
    argv[0] = verb;
    lens[0] = strlen(verb);
    for (size_t at = 0; at < n; at += per) {
        size_t k = n - at < per ? n - at : per;
        for (size_t i = 0; i < k; i++) {
            argv[i + 1] = names[at + i].ptr;
            lens[i + 1] = names[at + i].len;
        }
        cm_rsub_send(node->sub, (int)(k + 1), argv, lens);
    }
    pr_free(argv);
    pr_free(lens);
}

/* Subscribes c where its slot lives now (nowhere while that is down). */
static void chan_send(cm_redis *r, chan *c)
{
    rnode *n = node_of_slot(r, c->slot);
    c->confirmed = 0;
    c->node = n && n->sub && cm_rsub_up(n->sub) ? n : NULL;
    c->sent_ms = cm_now_ms();
    pr_view name = chan_name(&c->link);
    sub_send(r, c->node, 1, &name, 1);
}

/* ---- readiness ---- */

static void update_ready(cm_redis *r)
{
    int ready = r->nodes != NULL && (!r->cluster || r->complete);
    for (rnode *n = r->nodes; n && ready; n = n->next)
        ready = n->cmd[0]->up && (!n->sub || cm_rsub_up(n->sub));
    int was = __atomic_exchange_n(&r->ready, ready, __ATOMIC_RELAXED);
    if (ready && !was) {
        CM_INFO("event=redis_ready link=%s host=%s port=%d cluster=%d", r->name, r->addr.host,
                r->addr.port, r->cluster);
        if (r->on_ready)
            r->on_ready(r, r->arg);
    } else if (!ready && was) {
        CM_WARN("event=redis_down link=%s", r->name);
    }
}

static void refresh_soon(cm_redis *r);

/* ---- command connections ---- */

static void cconn_connect(cconn *k);

static void cconn_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cconn_connect(arg);
}

static void refresh_send(cm_redis *r);

static void connect_cb(const redisAsyncContext *ac, int status)
{
    cconn *k = ac->data;
    if (!k)
        return;
    cm_redis *r = k->r;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback; said once per outage */
        if (k->failures == 0)
            CM_WARN("event=redis_connect_failed link=%s conn=%s err=\"%s\"", r->name,
                    k->node ? "cmd" : "control", ac->errstr);
        k->ac = NULL;
        k->pending = 0;
        if (!k->node && r->naddrs)
            r->addr_next = (r->addr_next + 1) % r->naddrs;
        cm_backoff_arm(k->retry, &k->failures, &r->seed);
        return;
    }
    k->up = 1;
    k->failures = 0;
    evtimer_del(k->deadline);
    if (!k->node) {
        if (r->refresh_wanted)
            refresh_send(r);
        return;
    }
    if (k->first)
        r->epoch++;
    update_ready(r);
    after(r);
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    (void)status;
    cconn *k = ac->data;
    if (!k)
        return; /* freed on purpose */
    cm_redis *r = k->r;
    CM_DEBUG("event=redis_disconnected link=%s conn=%s", r->name, k->node ? "cmd" : "control");
    k->ac = NULL;
    k->up = 0;
    k->pending = 0;
    if (!k->node) {
        r->refreshing = 0;
        if (r->naddrs)
            r->addr_next = (r->addr_next + 1) % r->naddrs;
    } else if (!k->first) {
        r->epoch++; /* a command on it may be lost; cmd[0] counts when it is back */
    }
    cm_backoff_arm(k->retry, &k->failures, &r->seed);
    if (k->node) {
        update_ready(r);
        refresh_soon(r);
    }
    after(r);
}

static void cconn_connect(cconn *k)
{
    cm_redis *r = k->r;
    const char *host = k->node ? k->node->host : r->addrs[r->addr_next].host;
    int port = k->node ? k->node->port : r->addrs[r->addr_next].port;
    redisAsyncContext *ac = redisAsyncConnect(host, port);
    if (!ac || ac->err) {
        if (ac)
            redisAsyncFree(ac);
        if (!k->node && r->naddrs)
            r->addr_next = (r->addr_next + 1) % r->naddrs;
        cm_backoff_arm(k->retry, &k->failures, &r->seed);
        return;
    }
    ac->data = k;
    k->ac = ac;
    /* a peer that vanished (host down, cable cut) is noticed by TCP */
    redisEnableKeepAlive(&ac->c);
    redisLibeventAttach(ac, r->base);
    struct timeval tv = {CONNECT_MS / 1000, (CONNECT_MS % 1000) * 1000};
    evtimer_add(k->deadline, &tv);
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    /* queued in order before anything else the connection will carry */
    if (r->addr.password[0])
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s", r->addr.password);
    if (r->addr.db)
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", r->addr.db);
}

/* Not up CONNECT_MS after it began: given up as if refused. */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cconn *k = arg;
    cm_redis *r = k->r;
    if (k->up || !k->ac)
        return;
    if (k->failures == 0)
        CM_WARN("event=redis_connect_timeout link=%s conn=%s", r->name, k->node ? "cmd" : "control");
    redisAsyncContext *ac = k->ac;
    k->ac = NULL;
    ac->data = NULL;    /* its callbacks do nothing */
    redisAsyncFree(ac); /* commands queued on it get NULL */
    k->pending = 0;
    if (!k->node && r->naddrs)
        r->addr_next = (r->addr_next + 1) % r->naddrs;
    cm_backoff_arm(k->retry, &k->failures, &r->seed);
}

static void cconn_init(cconn *k, cm_redis *r, rnode *node, int first)
{
    k->r = r;
    k->node = node;
    k->first = first;
    k->retry = evtimer_new(r->base, cconn_retry_cb, k);
    k->deadline = evtimer_new(r->base, deadline_cb, k);
    cconn_connect(k);
}

/* Pending callbacks run with NULL replies. */
static void cconn_dispose(cconn *k)
{
    if (!k->retry)
        return;
    event_free(k->retry);
    event_free(k->deadline);
    k->retry = NULL;
    if (k->ac) {
        redisAsyncContext *ac = k->ac;
        k->ac = NULL;
        k->up = 0;
        ac->data = NULL;    /* callbacks of a context freed on purpose do nothing */
        redisAsyncFree(ac); /* pending callbacks run with NULL replies */
    }
}

/* ---- nodes and their subscribe connections ---- */

static void sub_up(cm_rsub *s, void *arg);
static void sub_reply(cm_rsub *s, redisReply *rep, void *arg);
static void sub_down(cm_rsub *s, int was_up, void *arg);
static const cm_rsub_cbs sub_cbs = {sub_up, sub_reply, sub_down};

static void addr_add(cm_redis *r, const char *host, int port)
{
    for (unsigned i = 0; i < r->naddrs; i++)
        if (r->addrs[i].port == port && !strcmp(r->addrs[i].host, host))
            return;
    if (r->naddrs == ADDRS_MAX || strlen(host) >= sizeof r->addrs[0].host)
        return;
    pr_hostport *a = &r->addrs[r->naddrs++];
    snprintf(a->host, sizeof a->host, "%s", host);
    a->port = port;
}

static rnode *node_new(cm_redis *r, const char *host, int port)
{
    rnode *n = pr_calloc(1, sizeof *n);
    n->r = r;
    snprintf(n->host, sizeof n->host, "%s", host);
    n->port = port;
    n->ncmd = 1;
    n->cmd = pr_calloc(1, sizeof *n->cmd);
    n->cmd[0] = pr_calloc(1, sizeof **n->cmd);
    n->next = r->nodes;
    r->nodes = n;
    cconn_init(n->cmd[0], r, n, 1);
    if (r->subscribing)
        n->sub = cm_rsub_new(r->base, r->name, host, port, r->addr.password, r->addr.db, &sub_cbs, n);
    if (r->cluster)
        addr_add(r, host, port);
    return n;
}

static rnode *node_get(cm_redis *r, const char *host, int port)
{
    for (rnode *n = r->nodes; n; n = n->next)
        if (n->port == port && !strcmp(n->host, host))
            return n;
    return node_new(r, host, port);
}

/* The node must be unlinked from r->nodes and named by no slot or chan. */
static void node_free(rnode *n)
{
    cm_rsub_free(n->sub);
    for (unsigned i = 0; i < n->ncmd; i++) {
        cconn_dispose(n->cmd[i]);
        pr_free(n->cmd[i]);
    }
    pr_free(n->cmd);
    pr_free(n);
}

static void sub_up(cm_rsub *s, void *arg)
{
    (void)s;
    rnode *n = arg;
    cm_redis *r = n->r;
    pr_view batch[RESUB_BATCH];
    size_t k = 0;
    uint64_t now = cm_now_ms();
    pr_map_iter it = pr_map_iter_make(&r->chans);
    for (chan *c; (c = (chan *)pr_map_next(&it));) {
        if (node_of_slot(r, c->slot) != n)
            continue;
        c->node = n;
        c->confirmed = 0;
        c->sent_ms = now;
        batch[k++] = chan_name(&c->link);
        if (k == RESUB_BATCH) {
            sub_send(r, n, 1, batch, k);
            k = 0;
        }
    }
    sub_send(r, n, 1, batch, k);
    update_ready(r);
    after(r);
}

/* Channels subscribed on n are not any more: waiters learn it, idle ones
 * need no UNSUBSCRIBE. 1 when a confirmed one was among them. */
static int chans_lost(cm_redis *r, rnode *n)
{
    int lost = 0;
    pr_map_iter it = pr_map_iter_make(&r->chans);
    for (chan *c; (c = (chan *)pr_map_next(&it));) {
        if (c->node != n)
            continue;
        lost |= c->confirmed && c->refs > 0;
        c->confirmed = 0;
        c->node = NULL;
        if (c->refs == 0)
            chan_remove(r, c);
        else
            chan_fire(r, c, 0);
    }
    return lost;
}

static void sub_down(cm_rsub *s, int was_up, void *arg)
{
    (void)s;
    rnode *n = arg;
    cm_redis *r = n->r;
    int lost = chans_lost(r, n);
    if ((was_up || lost) && r->on_lost)
        r->on_lost(r, r->arg);
    update_ready(r);
    refresh_soon(r);
    after(r);
}

static int str_is(const redisReply *e, const char *s)
{
    return e->type == REDIS_REPLY_STRING && !strcmp(e->str, s);
}

static void sub_reply(cm_rsub *s, redisReply *rep, void *arg)
{
    (void)s;
    rnode *n = arg;
    cm_redis *r = n->r;
    if (rep->type == REDIS_REPLY_ERROR) {
        /* a SSUBSCRIBE that reached a node no longer serving the slot: the
         * tick sends it again once the map is fresh */
        CM_WARN_RATELIMITED("event=redis_subscribe_error link=%s err=\"%s\"", r->name, rep->str);
        refresh_soon(r);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[1]->type != REDIS_REPLY_STRING)
        return;
    const redisReply *kind = rep->element[0], *ch = rep->element[1], *msg = rep->element[2];
    pr_view name = pr_view_make(ch->str, ch->len);
    if (str_is(kind, "message") || str_is(kind, "smessage")) {
        if (msg->type == REDIS_REPLY_STRING)
            r->on_message(r, name, pr_view_make(msg->str, msg->len), r->arg);
        after(r);
        return;
    }
    chan *c = chan_find(r, name);
    if (!c || c->node != n)
        return;
    if (str_is(kind, "subscribe") || str_is(kind, "ssubscribe")) {
        if (!c->confirmed) {
            c->confirmed = 1;
            chan_fire(r, c, 1);
            after(r);
        }
    } else if ((str_is(kind, "unsubscribe") || str_is(kind, "sunsubscribe")) && c->confirmed) {
        /* Redis dropped it (its slot moved away); ours were removed first */
        c->confirmed = 0;
        c->node = NULL;
        if (c->refs == 0) {
            chan_remove(r, c);
        } else if (r->on_lost) {
            r->on_lost(r, r->arg);
        }
        refresh_soon(r);
        after(r);
    }
}

/* ---- the slot map (cluster) ---- */

static void apply_map(cm_redis *r, const cm_rslot_range *ranges, int n, const redisReply *rep)
{
    for (rnode *x = r->nodes; x; x = x->next)
        x->mark = 0;
    memset(r->slots, 0, CM_RSLOTS * sizeof *r->slots);
    const char *here = r->addrs[r->addr_next].host;
    for (int i = 0; i < n; i++) {
        rnode *x = node_get(r, ranges[i].host[0] ? ranges[i].host : here, ranges[i].port);
        x->mark = 1;
        for (unsigned s = ranges[i].first; s <= ranges[i].last; s++)
            r->slots[s] = x;
    }
    /* replicas: where the control connection may go when masters are gone */
    for (size_t i = 0; i < rep->elements; i++)
        for (size_t j = 3; j < rep->element[i]->elements; j++) {
            const redisReply *m = rep->element[i]->element[j];
            if (m->type == REDIS_REPLY_ARRAY && m->elements >= 2 &&
                m->element[0]->type == REDIS_REPLY_STRING && m->element[0]->len > 0 &&
                m->element[1]->type == REDIS_REPLY_INTEGER)
                addr_add(r, m->element[0]->str, (int)m->element[1]->integer);
        }
    r->complete = 1;
    for (unsigned s = 0; s < CM_RSLOTS && r->complete; s++)
        r->complete = r->slots[s] != NULL;
    CM_DEBUG("event=redis_cluster_map link=%s ranges=%d complete=%d", r->name, n, r->complete);
    /* channels follow their slot: a confirmed one that moves may have
     * missed messages meanwhile */
    int lost = 0;
    pr_map_iter it = pr_map_iter_make(&r->chans);
    for (chan *c; (c = (chan *)pr_map_next(&it));) {
        rnode *want = r->slots[c->slot];
        if (c->node == want && c->node)
            continue;
        if (c->refs == 0) {
            chan_remove(r, c);
            continue;
        }
        if (c->node) {
            lost |= c->confirmed;
            pr_view name = chan_name(&c->link);
            sub_send(r, c->node, 0, &name, 1);
            chan_fire(r, c, 0);
        }
        chan_send(r, c);
    }
    /* masters no longer in the map go, with NULL for their pending commands */
    for (rnode **pp = &r->nodes; *pp;) {
        rnode *x = *pp;
        if (x->mark) {
            pp = &x->next;
            continue;
        }
        *pp = x->next;
        CM_INFO("event=redis_node_dropped link=%s host=%s port=%d", r->name, x->host, x->port);
        node_free(x);
    }
    if (lost && r->on_lost)
        r->on_lost(r, r->arg);
    update_ready(r);
}

static void slots_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    cconn *k = ac->data;
    if (!k)
        return;
    cm_redis *r = k->r;
    r->refreshing = 0;
    redisReply *rep = reply;
    size_t max = rep && rep->type == REDIS_REPLY_ARRAY ? rep->elements : 0;
    cm_rslot_range *ranges = pr_malloc((max ? max : 1) * sizeof *ranges);
    int n = cm_rslot_parse(rep, ranges, max);
    if (n > 0) {
        apply_map(r, ranges, n, rep);
    } else if (rep) {
        CM_WARN_RATELIMITED("event=redis_cluster_slots_failed link=%s err=\"%s\"", r->name,
                            rep->type == REDIS_REPLY_ERROR ? rep->str : "no slots");
        r->refresh_again = 1;
    } else {
        r->refresh_wanted = 1; /* sent again once the control connection is back */
    }
    pr_free(ranges);
    if (r->refresh_again) {
        r->refresh_again = 0;
        refresh_soon(r);
    }
    after(r);
}

static void refresh_send(cm_redis *r)
{
    r->refresh_wanted = 1;
    if (!r->ctl.up || r->refreshing)
        return; /* sent when the control connection is up */
    r->refresh_wanted = 0;
    r->refreshing = 1;
    CM_DEBUG("event=redis_cluster_refresh link=%s via=%s:%d", r->name, r->addrs[r->addr_next].host,
             r->addrs[r->addr_next].port);
    r->last_refresh_ms = cm_now_ms();
    if (redisAsyncCommand(r->ctl.ac, slots_cb, NULL, "CLUSTER SLOTS") != REDIS_OK)
        r->refreshing = 0;
}

static void refresh_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    refresh_send(arg);
}

/* CLUSTER SLOTS again, at most every REFRESH_GAP_MS. */
static void refresh_soon(cm_redis *r)
{
    if (!r->cluster)
        return;
    if (r->refreshing) {
        r->refresh_again = 1;
        return;
    }
    if (evtimer_pending(r->refresh_timer, NULL))
        return;
    uint64_t now = cm_now_ms(), at = r->last_refresh_ms + REFRESH_GAP_MS;
    uint64_t wait = at > now ? at - now : 0;
    struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000};
    evtimer_add(r->refresh_timer, &tv);
}

/* ---- the tick ---- */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cm_redis *r = arg;
    uint64_t now = cm_now_ms();
    pr_map_iter it = pr_map_iter_make(&r->chans);
    for (chan *c; (c = (chan *)pr_map_next(&it));) {
        /* an unconfirmed channel waits: its SUBSCRIBE is still in flight */
        if (c->refs == 0 && c->confirmed && now - c->idle_since >= LINGER_MS) {
            pr_view name = chan_name(&c->link);
            sub_send(r, c->node, 0, &name, 1);
            chan_remove(r, c);
        } else if (r->cluster && c->refs > 0 && !c->confirmed && now - c->sent_ms >= RESEND_MS) {
            chan_send(r, c); /* refused (MOVED) or its node was down */
        }
    }
    if (r->cluster && (++r->ticks % REFRESH_EVERY == 0 || !cm_redis_ready(r)))
        refresh_soon(r);
}

/* ---- commands in cluster mode ---- */

static void req_free(req *q)
{
    if (q->timer)
        event_free(q->timer);
    pr_free(q);
}

static void inflight_unlink(cm_redis *r, req *q)
{
    if (q->iprev)
        q->iprev->inext = q->inext;
    else
        r->inflight = q->inext;
    if (q->inext)
        q->inext->iprev = q->iprev;
    else
        r->inflight_last = q->iprev;
}

/* Fences with nothing before them in flight any more run, in order. */
static void fences_run(cm_redis *r)
{
    while (r->fences && (!r->inflight || r->inflight->seq > r->fences->seq)) {
        fence *f = r->fences;
        r->fences = f->next;
        if (!r->fences)
            r->fences_last = NULL;
        f->cb(r, !f->failed, f->arg);
        pr_free(f);
    }
}

static void req_deliver(req *q, redisReply *reply)
{
    cm_redis *r = q->r;
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        for (fence *f = r->fences; f; f = f->next)
            if (f->seq > q->seq)
                f->failed = 1;
    inflight_unlink(r, q);
    if (q->cb) {
        q->cb(r, reply, q->arg);
        after(r);
    }
    req_free(q);
    fences_run(r);
}

/* The connection of n for one more command: on a command-only link one
 * that carries nothing (blocking commands run side by side), else cmd[0]. */
static cconn *pick_conn(cm_redis *r, rnode *n)
{
    if (r->subscribing)
        return n->cmd[0];
    for (unsigned i = 0; i < n->ncmd; i++)
        if (n->cmd[i]->ac && n->cmd[i]->pending == 0)
            return n->cmd[i];
    if (n->ncmd == POOL_MAX)
        return n->cmd[0];
    n->cmd = pr_realloc(n->cmd, (n->ncmd + 1) * sizeof *n->cmd);
    cconn *k = pr_calloc(1, sizeof *k);
    n->cmd[n->ncmd++] = k;
    cconn_init(k, r, n, 0); /* commands wait in hiredis until it is up */
    return k;
}

static void cluster_cb(redisAsyncContext *ac, void *reply, void *privdata);

static int req_send(req *q, rnode *n, int asking)
{
    if (!n)
        return PR_ECLOSED;
    cconn *k = pick_conn(q->r, n);
    if (!k->ac)
        return PR_ECLOSED;
    if (asking)
        redisAsyncCommand(k->ac, NULL, NULL, "ASKING");
    if (redisAsyncCommandArgv(k->ac, cluster_cb, q, q->argc, q->argv, q->lens) != REDIS_OK)
        return PR_ECLOSED;
    q->conn = k;
    k->pending++;
    return 0;
}

static void retry_later(req *q);

static void retry_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    req *q = arg;
    cm_redis *r = q->r;
    if (q->prev)
        q->prev->next = q->next;
    else
        r->retrying = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
    rnode *n = q->slot >= 0 ? r->slots[q->slot] : r->nodes;
    if (req_send(q, n, 0) == 0)
        return;
    if (q->retries < MAX_RETRIES && !r->freeing)
        retry_later(q); /* no node for the slot yet: a failover under way */
    else
        req_deliver(q, NULL);
}

static void retry_later(req *q)
{
    cm_redis *r = q->r;
    q->retries++;
    if (!q->timer)
        q->timer = evtimer_new(r->base, retry_fire, q);
    q->next = r->retrying;
    q->prev = NULL;
    if (r->retrying)
        r->retrying->prev = q;
    r->retrying = q;
    struct timeval tv = {0, RETRY_MS * 1000};
    evtimer_add(q->timer, &tv);
}

static void cluster_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    req *q = privdata;
    cm_redis *r = q->r;
    if (q->conn->pending)
        q->conn->pending--;
    redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_ERROR && ac->data && !r->freeing) {
        unsigned slot;
        char host[128];
        int port;
        int kind = cm_rslot_redirect(rep->str, &slot, host, sizeof host, &port);
        if (kind && q->redirects < MAX_REDIRECTS) {
            q->redirects++;
            rnode *n = node_get(r, host, port);
            if (kind == 1) { /* MOVED: the slot lives there now */
                r->slots[slot] = n;
                refresh_soon(r);
            }
            if (req_send(q, n, kind == 2) == 0)
                return;
        } else if ((!strncmp(rep->str, "TRYAGAIN", 8) || !strncmp(rep->str, "CLUSTERDOWN", 11)) &&
                   q->retries < MAX_RETRIES) {
            retry_later(q); /* a slot in migration, or a failover under way */
            refresh_soon(r);
            return;
        }
    }
    req_deliver(q, rep);
}

static int cluster_command(cm_redis *r, cm_redis_reply_cb cb, void *arg, int argc,
                           const char **argv, const size_t *argvlen)
{
    if (r->freeing)
        return PR_ECLOSED;
    pr_view key;
    int slot = cm_rslot_command_key(argc, argv, argvlen, &key) == 0 ? (int)cm_rslot_of(key) : -1;
    int publish = !strcasecmp(argv[0], "PUBLISH");
    size_t bytes = publish; /* SPUBLISH is one byte longer */
    for (int i = 0; i < argc; i++)
        bytes += (argvlen ? argvlen[i] : strlen(argv[i])) + 1;
    if (!strcasecmp(argv[0], "SCRIPT")) {
        /* every master keeps its own script cache: all load it, cb hears
         * from the first */
        for (rnode *n = r->nodes; n; n = n->next)
            if (n != r->nodes && n->cmd[0]->up)
                redisAsyncCommandArgv(n->cmd[0]->ac, NULL, NULL, argc, argv, argvlen);
    }
    rnode *n = slot >= 0 ? r->slots[slot] : r->nodes;
    if (!n || !n->cmd[0]->up)
        return PR_ECLOSED;
    req *q = pr_calloc(1, sizeof *q + (size_t)argc * (sizeof(char *) + sizeof(size_t)) + bytes);
    q->r = r;
    q->cb = cb;
    q->arg = arg;
    q->argc = argc;
    q->slot = slot;
    q->lens = (size_t *)(q + 1);
    q->argv = (const char **)(q->lens + argc);
    char *p = (char *)(q->argv + argc);
    for (int i = 0; i < argc; i++) {
        const char *s = i == 0 && publish ? "SPUBLISH" : argv[i];
        size_t len = i == 0 && publish ? 8 : argvlen ? argvlen[i] : strlen(argv[i]);
        memcpy(p, s, len);
        p[len] = '\0';
        q->argv[i] = p;
        q->lens[i] = len;
        p += len + 1;
    }
    q->seq = r->next_seq++;
    q->iprev = r->inflight_last;
    if (r->inflight_last)
        r->inflight_last->inext = q;
    else
        r->inflight = q;
    r->inflight_last = q;
    if (req_send(q, n, 0) != 0) {
        inflight_unlink(r, q);
        req_free(q);
        return PR_ECLOSED;
    }
    return 0;
}

static void fence_ping_cb(cm_redis *r, redisReply *reply, void *arg)
{
    fence *f = arg;
    f->cb(r, reply && reply->type != REDIS_REPLY_ERROR, f->arg);
    pr_free(f);
}

int cm_redis_fence(cm_redis *r, cm_redis_fence_cb cb, void *arg)
{
    fence *f = pr_calloc(1, sizeof *f);
    f->cb = cb;
    f->arg = arg;
    if (!r->cluster) {
        const char *argv[] = {"PING"};
        int rc = cm_redis_command(r, fence_ping_cb, f, 1, argv, NULL);
        if (rc != 0)
            pr_free(f);
        return rc;
    }
    if (r->freeing) {
        pr_free(f);
        return PR_ECLOSED;
    }
    f->seq = r->next_seq++;
    if (r->fences_last)
        r->fences_last->next = f;
    else
        r->fences = f;
    r->fences_last = f;
    fences_run(r); /* nothing in flight: at once */
    return 0;
}

/* ---- public ---- */

cm_redis *cm_redis_new(struct event_base *base, const pr_redis_addr *addr,
                       const cm_redis_options *o)
{
    cm_redis *r = pr_calloc(1, sizeof *r);
    r->base = base;
    r->addr = *addr;
    snprintf(r->name, sizeof r->name, "%s", o->name ? o->name : "redis");
    r->on_message = o->on_message;
    r->on_ready = o->on_ready;
    r->arg = o->arg;
    r->after_cb = o->after_cb;
    r->after_arg = o->after_arg;
    r->seed = cm_backoff_seed(r);
    r->subscribing = o->on_message != NULL;
    r->cluster = addr->cluster;
    pr_map_init(&r->chans, 256, chan_name);
    if (r->subscribing || r->cluster) {
        r->tick = event_new(base, -1, EV_PERSIST, tick_cb, r);
        struct timeval tv = {1, 0};
        event_add(r->tick, &tv);
    }
    if (!r->cluster) {
        node_new(r, addr->host, addr->port);
        return r;
    }
    r->slots = pr_calloc(CM_RSLOTS, sizeof *r->slots);
    for (unsigned i = 0; i < addr->nseeds; i++)
        addr_add(r, addr->seeds[i].host, addr->seeds[i].port);
    r->refresh_timer = evtimer_new(base, refresh_timer_cb, r);
    r->refresh_wanted = 1;
    cconn_init(&r->ctl, r, NULL, 0);
    return r;
}

void cm_redis_free(cm_redis *r)
{
    if (!r)
        return;
    /* callbacks run from here with NULL may send: nothing goes out */
    r->freeing = 1;
    if (r->slots)
        memset(r->slots, 0, CM_RSLOTS * sizeof *r->slots);
    if (r->tick)
        event_free(r->tick);
    if (r->refresh_timer)
        event_free(r->refresh_timer);
    cconn_dispose(&r->ctl);
    while (r->retrying) {
        req *q = r->retrying;
        r->retrying = q->next;
        req_deliver(q, NULL);
    }
    while (r->nodes) {
        rnode *n = r->nodes;
        r->nodes = n->next;
        node_free(n);
    }
    while (r->fences) { /* every command was answered (NULL) by now */
        fence *f = r->fences;
        r->fences = f->next;
        f->cb(r, 0, f->arg);
        pr_free(f);
    }
    pr_map_iter it = pr_map_iter_make(&r->chans);
    for (chan *c; (c = (chan *)pr_map_next(&it));) {
        chan_fire(r, c, 0);
        pr_free(c);
    }
    pr_map_dispose(&r->chans);
    pr_free(r->slots);
    pr_free(r);
}

void cm_redis_set_lost_cb(cm_redis *r, cm_redis_event_cb cb)
{
    r->on_lost = cb;
}

int cm_redis_ready(const cm_redis *r)
{
    return __atomic_load_n(&r->ready, __ATOMIC_RELAXED);
}

unsigned cm_redis_epoch(const cm_redis *r)
{
    return r->epoch;
}

int cm_redis_is_cluster(const cm_redis *r)
{
    return r->cluster;
}

typedef struct {
    cm_redis *r;
    cm_redis_reply_cb cb;
    void *arg;
} cmd_ctx;

static void command_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    cmd_ctx *x = privdata;
    x->cb(x->r, reply, x->arg);
    after(x->r);
    pr_free(x);
}

int cm_redis_command(cm_redis *r, cm_redis_reply_cb cb, void *arg, int argc, const char **argv,
                     const size_t *argvlen)
{
    if (r->cluster)
        return cluster_command(r, cb, arg, argc, argv, argvlen);
    cconn *k = r->nodes->cmd[0];
    if (!k->up)
        return PR_ECLOSED;
    cmd_ctx *x = NULL;
    if (cb) {
        x = pr_malloc(sizeof *x);
        x->r = r;
        x->cb = cb;
        x->arg = arg;
    }
    /* fails only when the context is being torn down */
    if (redisAsyncCommandArgv(k->ac, cb ? command_cb : NULL, x, argc, argv, argvlen) != REDIS_OK) {
        pr_free(x);
        return PR_ECLOSED;
    }
    return 0;
}

int cm_redis_subscribe(cm_redis *r, pr_view channel)
{
    if (!r->subscribing)
        return PR_ESTATE;
    chan *c = chan_find(r, channel);
    if (!c) {
        c = pr_calloc(1, sizeof *c + channel.len);
        c->len = channel.len;
        memcpy(c->name, channel.ptr, channel.len);
        c->slot = r->cluster ? cm_rslot_of(channel) : 0;
        pr_map_insert(&r->chans, &c->link);
        chan_send(r, c);
    }
    c->refs++;
    return 0;
}

void cm_redis_when_subscribed(cm_redis *r, pr_view channel, cm_redis_subscribed_cb done, void *arg)
{
    chan *c = r->subscribing ? chan_find(r, channel) : NULL;
    if (!c || c->confirmed || !c->node) {
        done(r, c && c->confirmed, arg);
        return;
    }
    waiter *wt = pr_malloc(sizeof *wt);
    wt->cb = done;
    wt->arg = arg;
    wt->next = NULL;
    /* in the order they came: a socket's sends that wait for a new room's
     * subscription must reach the ingest stream in the order it sent them */
    if (c->waiters_last)
        c->waiters_last->next = wt;
    else
        c->waiters = wt;
    c->waiters_last = wt;
}

void cm_redis_unsubscribe(cm_redis *r, pr_view channel)
{
    if (!r->subscribing)
        return;
    chan *c = chan_find(r, channel);
    if (c && c->refs > 0 && --c->refs == 0)
        c->idle_since = cm_now_ms();
}
