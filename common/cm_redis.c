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
#include "cm_rlink.h"

#define LINGER_MS 1000   /* an unused channel stays subscribed this long */
#define RESUB_BATCH 512  /* channels per SUBSCRIBE after a reconnect (one Redis) */
#define REFRESH_EVERY 10 /* ticks (seconds) between refreshes when all is well */
#define RESEND_MS 1000   /* an unconfirmed SSUBSCRIBE is sent again after this */
/* a connection not up (connected, AUTH and SELECT accepted) by then is given
 * up: a dead host's address answers nothing, and hiredis 0.14 has no timeout */
#define CONNECT_MS 3000

void cm__after(cm_redis *r)
{
    if (r->after_cb)
        r->after_cb(r->after_arg);
}

/* ---- channel set ---- */

pr_view cm__chan_name(const pr_map_entry *e)
{
    const chan *c = (const chan *)e;
    return pr_view_make(c->name, c->len);
}

static chan *chan_find(cm_redis *r, pr_view name)
{
    return (chan *)pr_map_find(&r->chans, name);
}

void cm__chan_fire(cm_redis *r, chan *c, int ok)
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

void cm__chan_remove(cm_redis *r, chan *c)
{
    pr_map_remove(&r->chans, &c->link);
    cm__chan_fire(r, c, 0);
    pr_free(c);
}

static rnode *node_of_slot(cm_redis *r, unsigned slot)
{
    return r->cluster ? r->slots[slot] : r->nodes;
}

/* (S)SUBSCRIBE or (S)UNSUBSCRIBE names[0..n) on node's subscribe connection
 * (a cluster's sharded verbs take channels of one slot: one at a time). */
void cm__sub_send(cm_redis *r, rnode *node, int subscribe, const pr_view *names, size_t n)
{
    if (!node || !node->sub || !cm__rsub_up(node->sub) || n == 0)
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
        cm__rsub_send(node->sub, (int)(k + 1), argv, lens);
    }
    pr_free(argv);
    pr_free(lens);
}

/* Subscribes c where its slot lives now (nowhere while that is down). */
void cm__chan_send(cm_redis *r, chan *c)
{
    rnode *n = node_of_slot(r, c->slot);
    c->confirmed = 0;
    c->node = n && n->sub && cm__rsub_up(n->sub) ? n : NULL;
    c->sent_ms = cm_now_ms();
    pr_view name = cm__chan_name(&c->link);
    cm__sub_send(r, c->node, 1, &name, 1);
}

/* ---- readiness ---- */

void cm__update_ready(cm_redis *r)
{
    int ready = r->nodes != NULL && (!r->cluster || r->complete);
    for (rnode *n = r->nodes; n && ready; n = n->next)
        ready = n->cmd[0]->up && (!n->sub || cm__rsub_up(n->sub));
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

/* ---- command connections ---- */

static void cconn_connect(cconn *k);

static void cconn_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cconn_connect(arg);
}

static void cconn_ready(cconn *k);

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
    if (k->handshake == 0)
        cconn_ready(k);
}

/* Connected, and AUTH and SELECT (if any) accepted: only now is the
 * connection up, so a wrong password never makes the link ready, and the
 * backoff keeps growing while Redis refuses it. */
static void cconn_ready(cconn *k)
{
    cm_redis *r = k->r;
    k->up = 1;
    k->failures = 0;
    evtimer_del(k->deadline);
    if (!k->node) {
        if (r->refresh_wanted)
            cm__refresh_send(r);
        return;
    }
    if (k->first)
        r->epoch++;
    cm__update_ready(r);
    cm__after(r);
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
        cm__update_ready(r);
        cm__refresh_soon(r);
    }
    cm__after(r);
}

/* The reply to AUTH or SELECT: refused, the connection is dropped (and
 * tried again with backoff); the last one accepted makes it up. */
static void handshake_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    cconn *k = ac->data;
    redisReply *rep = reply;
    if (!k || !rep)
        return; /* freed, or the connection went first */
    if (rep->type == REDIS_REPLY_ERROR) {
        if (k->failures == 0)
            CM_WARN("event=redis_auth_failed link=%s conn=%s err=\"%s\"", k->r->name,
                    k->node ? "cmd" : "control", rep->str);
        redisAsyncDisconnect(ac);
        return;
    }
    if (--k->handshake == 0)
        cconn_ready(k);
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
    k->handshake = 0;
    if (r->addr.password[0] &&
        redisAsyncCommand(ac, handshake_cb, NULL, "AUTH %s", r->addr.password) == REDIS_OK)
        k->handshake++;
    if (r->addr.db &&
        redisAsyncCommand(ac, handshake_cb, NULL, "SELECT %d", r->addr.db) == REDIS_OK)
        k->handshake++;
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
        CM_WARN("event=redis_connect_timeout link=%s conn=%s", r->name,
                k->node ? "cmd" : "control");
    redisAsyncContext *ac = k->ac;
    k->ac = NULL;
    ac->data = NULL;    /* its callbacks do nothing */
    redisAsyncFree(ac); /* commands queued on it get NULL */
    k->pending = 0;
    if (!k->node && r->naddrs)
        r->addr_next = (r->addr_next + 1) % r->naddrs;
    cm_backoff_arm(k->retry, &k->failures, &r->seed);
}

void cm__cconn_init(cconn *k, cm_redis *r, rnode *node, int first)
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

void cm__addr_add(cm_redis *r, const char *host, int port)
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
    cm__cconn_init(n->cmd[0], r, n, 1);
    if (r->subscribing)
        n->sub =
            cm__rsub_new(r->base, r->name, host, port, r->addr.password, r->addr.db, &sub_cbs, n);
    if (r->cluster)
        cm__addr_add(r, host, port);
    return n;
}

rnode *cm__node_get(cm_redis *r, const char *host, int port)
{
    for (rnode *n = r->nodes; n; n = n->next)
        if (n->port == port && !strcmp(n->host, host))
            return n;
    return node_new(r, host, port);
}

/* The node must be unlinked from r->nodes and named by no slot or chan. */
void cm__node_free(rnode *n)
{
    cm__rsub_free(n->sub);
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
        batch[k++] = cm__chan_name(&c->link);
        if (k == RESUB_BATCH) {
            cm__sub_send(r, n, 1, batch, k);
            k = 0;
        }
    }
    cm__sub_send(r, n, 1, batch, k);
    cm__update_ready(r);
    cm__after(r);
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
            cm__chan_remove(r, c);
        else
            cm__chan_fire(r, c, 0);
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
    cm__update_ready(r);
    cm__refresh_soon(r);
    cm__after(r);
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
        cm__refresh_soon(r);
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
        cm__after(r);
        return;
    }
    chan *c = chan_find(r, name);
    if (!c || c->node != n)
        return;
    if (str_is(kind, "subscribe") || str_is(kind, "ssubscribe")) {
        if (!c->confirmed) {
            c->confirmed = 1;
            cm__chan_fire(r, c, 1);
            cm__after(r);
        }
    } else if ((str_is(kind, "unsubscribe") || str_is(kind, "sunsubscribe")) && c->confirmed) {
        /* Redis dropped it (its slot moved away); ours were removed first */
        c->confirmed = 0;
        c->node = NULL;
        if (c->refs == 0) {
            cm__chan_remove(r, c);
        } else if (r->on_lost) {
            r->on_lost(r, r->arg);
        }
        cm__refresh_soon(r);
        cm__after(r);
    }
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
            pr_view name = cm__chan_name(&c->link);
            cm__sub_send(r, c->node, 0, &name, 1);
            cm__chan_remove(r, c);
        } else if (r->cluster && c->refs > 0 && !c->confirmed && now - c->sent_ms >= RESEND_MS) {
            cm__chan_send(r, c); /* refused (MOVED) or its node was down */
        }
    }
    if (r->cluster && (++r->ticks % REFRESH_EVERY == 0 || !cm_redis_ready(r)))
        cm__refresh_soon(r);
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
    pr_map_init(&r->chans, 256, cm__chan_name);
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
    r->slot_inflight = pr_calloc(CM_RSLOTS, sizeof *r->slot_inflight);
    r->slot_on = pr_calloc(CM_RSLOTS, sizeof *r->slot_on);
    r->slot_held = pr_calloc(CM_RSLOTS, sizeof *r->slot_held);
    for (unsigned i = 0; i < addr->nseeds; i++)
        cm__addr_add(r, addr->seeds[i].host, addr->seeds[i].port);
    r->refresh_timer = evtimer_new(base, cm__refresh_timer_cb, r);
    r->refresh_wanted = 1;
    cm__cconn_init(&r->ctl, r, NULL, 0);
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
    while (r->held) { /* never sent */
        req *q = r->held;
        r->held = q->hnext;
        cm__req_deliver(q, NULL);
    }
    while (r->retrying) {
        req *q = r->retrying;
        r->retrying = q->next;
        cm__req_deliver(q, NULL);
    }
    while (r->nodes) {
        rnode *n = r->nodes;
        r->nodes = n->next;
        cm__node_free(n);
    }
    while (r->fences) { /* every command was answered (NULL) by now */
        fence *f = r->fences;
        r->fences = f->next;
        f->cb(r, 0, f->arg);
        pr_free(f);
    }
    pr_map_iter it = pr_map_iter_make(&r->chans);
    for (chan *c; (c = (chan *)pr_map_next(&it));) {
        cm__chan_fire(r, c, 0);
        pr_free(c);
    }
    pr_map_dispose(&r->chans);
    pr_free(r->slots);
    pr_free(r->slot_inflight);
    pr_free(r->slot_on);
    pr_free(r->slot_held);
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
    cm__after(x->r);
    pr_free(x);
}

int cm_redis_command(cm_redis *r, cm_redis_reply_cb cb, void *arg, int argc, const char **argv,
                     const size_t *argvlen)
{
    if (r->cluster)
        return cm__cluster_command(r, cb, arg, argc, argv, argvlen);
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
        c->slot = r->cluster ? cm__rslot_of(channel) : 0;
        pr_map_insert(&r->chans, &c->link);
        cm__chan_send(r, c);
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
