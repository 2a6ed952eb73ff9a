/*
 * cm_redis.c - command and subscribe connections with reconnects, and the
 * reference-counted subscription set.
 */
#include "cm_redis.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <string.h>

#include "cm_backoff.h"
#include "cm_clock.h"
#include "cm_log.h"
#include "pr_map.h"

enum { CONN_CMD = 0, CONN_SUB = 1 };
static const char *const conn_names[] = {"cmd", "sub"};

#define LINGER_MS 1000  /* an unused channel stays subscribed this long */
#define RESUB_BATCH 512 /* channels per SUBSCRIBE after a reconnect */

typedef struct waiter {
    struct waiter *next;
    cm_redis_subscribed_cb cb;
    void *arg;
} waiter;

typedef struct chan {
    pr_map_entry link; /* in cm_redis.chans; first, so an entry is its chan */
    unsigned refs;
    int confirmed;       /* Redis acknowledged the SUBSCRIBE on this connection */
    uint64_t idle_since; /* refs dropped to 0 then (cm_now_ms) */
    waiter *waiters;     /* waiting for the confirmation, in order */
    waiter *waiters_last;
    size_t len;
    char name[];
} chan;

typedef struct {
    cm_redis *r;
    int kind;              /* CONN_* */
    redisAsyncContext *ac; /* NULL while down */
    int up;
    unsigned failures;
    struct event *retry;
} conn;

struct cm_redis {
    struct event_base *base;
    pr_redis_addr addr;
    char name[32];
    conn conn[2];
    int nconns; /* 1, or 2 with a subscribe connection */
    int ready;  /* atomic: every connection up */
    unsigned epoch;
    pr_map chans; /* chan by name */
    cm_redis_message_cb on_message;
    cm_redis_event_cb on_ready;
    cm_redis_event_cb on_lost;
    void *arg;
    void (*after_cb)(void *);
    void *after_arg;
    unsigned seed;
    struct event *idle_timer; /* unsubscribes channels left idle */
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

/* ---- connections ---- */

static void conn_connect(conn *l);

static void update_ready(cm_redis *r)
{
    int ready = 1;
    for (int k = 0; k < r->nconns; k++)
        ready = ready && r->conn[k].up;
    int was = __atomic_exchange_n(&r->ready, ready, __ATOMIC_RELAXED);
    if (ready && !was) {
        CM_INFO("event=redis_ready link=%s host=%s port=%d", r->name, r->addr.host, r->addr.port);
        if (r->on_ready)
            r->on_ready(r, r->arg);
    } else if (!ready && was) {
        CM_WARN("event=redis_down link=%s", r->name);
    }
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_connect(arg);
}

static void sub_message_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    cm_redis *r = ac->data ? ((conn *)ac->data)->r : NULL;
    redisReply *rep = reply;
    if (!r || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
        return;
    redisReply *kind = rep->element[0], *ch = rep->element[1], *msg = rep->element[2];
    if (kind->type != REDIS_REPLY_STRING || ch->type != REDIS_REPLY_STRING)
        return;
    if (!strcmp(kind->str, "subscribe")) {
        chan *c = chan_find(r, pr_view_make(ch->str, ch->len));
        if (c && !c->confirmed) {
            c->confirmed = 1;
            chan_fire(r, c, 1);
            after(r);
        }
        return;
    }
    if (strcmp(kind->str, "message") != 0 || msg->type != REDIS_REPLY_STRING)
        return;
    r->on_message(r, pr_view_make(ch->str, ch->len), pr_view_make(msg->str, msg->len), r->arg);
    after(r);
}

/* SUBSCRIBE or UNSUBSCRIBE a batch of channels on the subscribe connection. */
static void sub_send(cm_redis *r, const char *verb, const pr_view *names, size_t n)
{
    conn *l = &r->conn[CONN_SUB];
    if (r->nconns < 2 || !l->up || n == 0)
        return;
    const char **argv = pr_malloc((n + 1) * sizeof *argv);
    size_t *lens = pr_malloc((n + 1) * sizeof *lens);
    argv[0] = verb;
    lens[0] = strlen(verb);
    for (size_t i = 0; i < n; i++) {
        argv[i + 1] = names[i].ptr;
        lens[i + 1] = names[i].len;
    }
    redisAsyncCommandArgv(l->ac, !strcmp(verb, "SUBSCRIBE") ? sub_message_cb : NULL, NULL,
                          (int)(n + 1), argv, lens);
    pr_free(argv);
    pr_free(lens);
}

static void resubscribe_all(cm_redis *r)
{
    pr_view batch[RESUB_BATCH];
    size_t n = 0;
    pr_map_iter it = pr_map_iter_make(&r->chans);
    for (pr_map_entry *e; (e = pr_map_next(&it));) {
        batch[n++] = chan_name(e);
        if (n == RESUB_BATCH) {
            sub_send(r, "SUBSCRIBE", batch, n);
            n = 0;
        }
    }
    sub_send(r, "SUBSCRIBE", batch, n);
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    conn *l = ac->data;
    if (!l)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback; said once per outage */
        if (l->failures == 0)
            CM_WARN("event=redis_connect_failed link=%s conn=%s err=\"%s\"", l->r->name,
                    conn_names[l->kind], ac->errstr);
        l->ac = NULL;
        cm_backoff_arm(l->retry, &l->failures, &l->r->seed);
        return;
    }
    l->up = 1;
    l->failures = 0;
    if (l->kind == CONN_SUB)
        resubscribe_all(l->r);
    else
        l->r->epoch++;
    update_ready(l->r);
    after(l->r);
}

/* The subscribe connection went away: nothing is confirmed any more,
 * waiters learn it, and idle channels need no UNSUBSCRIBE. */
static void chans_conn_lost(cm_redis *r)
{
    pr_map_iter it = pr_map_iter_make(&r->chans);
    for (chan *c; (c = (chan *)pr_map_next(&it));) {
        c->confirmed = 0;
        if (c->refs == 0)
            chan_remove(r, c);
        else
            chan_fire(r, c, 0);
    }
}

static void idle_cb(evutil_socket_t fd, short what, void *arg)
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
            sub_send(r, "UNSUBSCRIBE", &name, 1);
            chan_remove(r, c);
        }
    }
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    (void)status;
    conn *l = ac->data;
    if (!l)
        return; /* freed on purpose */
    cm_redis *r = l->r;
    CM_DEBUG("event=redis_disconnected link=%s conn=%s", r->name, conn_names[l->kind]);
    int was_up = l->up;
    l->ac = NULL;
    l->up = 0;
    if (l->kind == CONN_SUB) {
        chans_conn_lost(r);
        if (was_up && r->on_lost)
            r->on_lost(r, r->arg);
    }
    update_ready(r);
    cm_backoff_arm(l->retry, &l->failures, &l->r->seed);
    after(r);
}

static void conn_connect(conn *l)
{
    cm_redis *r = l->r;
    redisAsyncContext *ac = redisAsyncConnect(r->addr.host, r->addr.port);
    if (!ac || ac->err) {
        if (ac)
            redisAsyncFree(ac);
        cm_backoff_arm(l->retry, &l->failures, &l->r->seed);
        return;
    }
    ac->data = l;
    l->ac = ac;
    /* a peer that vanished (host down, cable cut) is noticed by TCP */
    redisEnableKeepAlive(&ac->c);
    redisLibeventAttach(ac, r->base);
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    /* queued in order before anything else the connection will carry */
    if (r->addr.password[0])
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s", r->addr.password);
    if (r->addr.db)
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", r->addr.db);
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
    pr_map_init(&r->chans, 256, chan_name);
    r->nconns = o->on_message ? 2 : 1;
    if (r->nconns == 2) {
        r->idle_timer = event_new(base, -1, EV_PERSIST, idle_cb, r);
        struct timeval tv = {1, 0};
        event_add(r->idle_timer, &tv);
    }
    for (int k = 0; k < r->nconns; k++) {
        conn *l = &r->conn[k];
        l->r = r;
        l->kind = k;
        l->retry = evtimer_new(base, retry_cb, l);
        conn_connect(l);
    }
    return r;
}

void cm_redis_free(cm_redis *r)
{
    if (!r)
        return;
    if (r->idle_timer)
        event_free(r->idle_timer);
    for (int k = 0; k < r->nconns; k++) {
        conn *l = &r->conn[k];
        evtimer_del(l->retry);
        event_free(l->retry);
        if (l->ac) {
            redisAsyncContext *ac = l->ac;
            l->ac = NULL;
            l->up = 0;
            ac->data = NULL;    /* callbacks of a context freed on purpose do nothing */
            redisAsyncFree(ac); /* pending callbacks run with NULL replies */
        }
    }
    pr_map_iter it = pr_map_iter_make(&r->chans);
    for (chan *c; (c = (chan *)pr_map_next(&it));) {
        chan_fire(r, c, 0);
        pr_free(c);
    }
    pr_map_dispose(&r->chans);
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
    conn *l = &r->conn[CONN_CMD];
    if (!l->up)
        return PR_ECLOSED;
    cmd_ctx *x = NULL;
    if (cb) {
        x = pr_malloc(sizeof *x);
        x->r = r;
        x->cb = cb;
        x->arg = arg;
    }
    /* fails only when the context is being torn down */
    if (redisAsyncCommandArgv(l->ac, cb ? command_cb : NULL, x, argc, argv, argvlen) != REDIS_OK) {
        pr_free(x);
        return PR_ECLOSED;
    }
    return 0;
}

int cm_redis_subscribe(cm_redis *r, pr_view channel)
{
    if (r->nconns < 2)
        return PR_ESTATE;
    chan *c = chan_find(r, channel);
    if (!c) {
        c = pr_calloc(1, sizeof *c + channel.len);
        c->len = channel.len;
        memcpy(c->name, channel.ptr, channel.len);
        pr_map_insert(&r->chans, &c->link);
        sub_send(r, "SUBSCRIBE", &channel, 1);
    }
    c->refs++;
    return 0;
}

void cm_redis_when_subscribed(cm_redis *r, pr_view channel, cm_redis_subscribed_cb done, void *arg)
{
    chan *c = r->nconns < 2 ? NULL : chan_find(r, channel);
    if (!c || c->confirmed || !r->conn[CONN_SUB].up) {
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
    if (r->nconns < 2)
        return;
    chan *c = chan_find(r, channel);
    if (c && c->refs > 0 && --c->refs == 0)
        c->idle_since = cm_now_ms();
}
