/* redis.c - command and subscription connections with reconnects. */
#include "redis.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"

typedef struct waiter {
    struct waiter *next;
    gw_redis_subscribed_cb cb;
    void *arg;
} waiter;

typedef struct chan {
    struct chan *next;
    unsigned refs;
    int confirmed;       /* Redis acknowledged the SUBSCRIBE on this link */
    uint64_t idle_since; /* refs dropped to 0 then (ms) */
    waiter *waiters;     /* subscribers waiting for the confirmation, in order */
    waiter *waiters_last;
    size_t len;
    char name[];
} chan;

enum { LINK_CMD = 0, LINK_SUB = 1 };

typedef struct {
    gw_redis *r;
    int kind;
    redisAsyncContext *ac; /* NULL while down */
    int up;
    unsigned failures;
    struct event *retry;
} link_t;

struct gw_redis {
    gw_worker *w;
    gw_redis_addr addr;
    link_t link[2];
    int ready; /* atomic: both links up */
    chan **chans;
    size_t nbuckets, nchans;
    gw_redis_message_cb on_message;
    gw_redis_ready_cb on_ready;
    gw_redis_ready_cb on_lost; /* the subscription link went down */
    void *arg;
    unsigned seed;
    struct event *idle_timer; /* unsubscribes channels left idle */
};

/* ---- channel set ---- */

static size_t chan_hash(pr_view v)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < v.len; i++)
        h = (h ^ (unsigned char)v.ptr[i]) * 1099511628211ull;
    return (size_t)h;
}

static chan **chan_slot(gw_redis *r, pr_view name)
{
    chan **pp = &r->chans[chan_hash(name) & (r->nbuckets - 1)];
    while (*pp && !((*pp)->len == name.len && !memcmp((*pp)->name, name.ptr, name.len)))
        pp = &(*pp)->next;
    return pp;
}

static void chan_fire(gw_redis *r, chan *c, int ok)
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

static void chan_remove(gw_redis *r, chan *c)
{
    chan **pp = chan_slot(r, pr_view_make(c->name, c->len));
    if (*pp == c)
        *pp = c->next;
    r->nchans--;
    chan_fire(r, c, 0);
    pr_free(c);
}

static void chan_grow(gw_redis *r)
{
    size_t n = r->nbuckets * 2;
    chan **nb = pr_calloc(n, sizeof *nb);
    for (size_t i = 0; i < r->nbuckets; i++)
        for (chan *c = r->chans[i], *next; c; c = next) {
            next = c->next;
            size_t b = chan_hash(pr_view_make(c->name, c->len)) & (n - 1);
            c->next = nb[b];
            nb[b] = c;
        }
    pr_free(r->chans);
    r->chans = nb;
    r->nbuckets = n;
}

/* ---- links ---- */

static void link_connect(link_t *l);

static void update_ready(gw_redis *r)
{
    int ready = r->link[LINK_CMD].up && r->link[LINK_SUB].up;
    int was = __atomic_exchange_n(&r->ready, ready, __ATOMIC_RELAXED);
    if (ready && !was) {
        GW_INFO("event=redis_ready worker=%d host=%s port=%d", r->w->index, r->addr.host,
                r->addr.port);
        if (r->on_ready)
            r->on_ready(r, r->arg);
    } else if (!ready && was) {
        GW_WARN("event=redis_down worker=%d", r->w->index);
    }
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    link_connect(arg);
}

static void link_schedule_retry(link_t *l)
{
    gw_redis *r = l->r;
    unsigned shift = l->failures < 6 ? l->failures : 6;
    unsigned base = 100u << shift;
    if (base > 5000)
        base = 5000;
    /* jitter: 50..100% of the backoff, so nodes do not reconnect in step */
    unsigned ms = base / 2 + (unsigned)(rand_r(&r->seed) % (base / 2 + 1));
    l->failures++;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(l->retry, &tv);
}

static void sub_message_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    gw_redis *r = ac->data ? ((link_t *)ac->data)->r : NULL;
    redisReply *rep = reply;
    if (!r || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
        return;
    redisReply *kind = rep->element[0], *ch = rep->element[1], *msg = rep->element[2];
    if (kind->type != REDIS_REPLY_STRING || ch->type != REDIS_REPLY_STRING)
        return;
    if (!strcmp(kind->str, "subscribe")) {
        chan *c = *chan_slot(r, pr_view_make(ch->str, ch->len));
        if (c && !c->confirmed) {
            c->confirmed = 1;
            chan_fire(r, c, 1);
            gw__worker_schedule_flush(r->w);
        }
        return;
    }
    if (strcmp(kind->str, "message") != 0 || msg->type != REDIS_REPLY_STRING)
        return;
    r->on_message(r, pr_view_make(ch->str, ch->len), pr_view_make(msg->str, msg->len), r->arg);
    gw__worker_schedule_flush(r->w);
}

/* SUBSCRIBE or UNSUBSCRIBE a batch of channels on the subscription link. */
static void sub_send(gw_redis *r, const char *verb, const pr_view *names, size_t n)
{
    link_t *l = &r->link[LINK_SUB];
    if (!l->up || n == 0)
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

static void resubscribe_all(gw_redis *r)
{
    pr_view batch[512];
    size_t n = 0;
    for (size_t i = 0; i < r->nbuckets; i++)
        for (chan *c = r->chans[i]; c; c = c->next) {
            batch[n++] = pr_view_make(c->name, c->len);
            if (n == 512) {
                sub_send(r, "SUBSCRIBE", batch, n);
                n = 0;
            }
        }
    sub_send(r, "SUBSCRIBE", batch, n);
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    link_t *l = ac->data;
    if (!l)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        GW_DEBUG("event=redis_connect_failed worker=%d link=%d err=\"%s\"", l->r->w->index,
                 l->kind, ac->errstr);
        l->ac = NULL;
        link_schedule_retry(l);
        return;
    }
    l->up = 1;
    l->failures = 0;
    if (l->kind == LINK_SUB)
        resubscribe_all(l->r);
    update_ready(l->r);
}

/* The subscription link went away: nothing is confirmed any more, waiters
 * learn it, and idle channels need no UNSUBSCRIBE. */
static void chans_link_lost(gw_redis *r)
{
    for (size_t i = 0; i < r->nbuckets; i++)
        for (chan *c = r->chans[i], *next; c; c = next) {
            next = c->next;
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
    gw_redis *r = arg;
    uint64_t now = gw__now_ms(r->w);
    for (size_t i = 0; i < r->nbuckets; i++)
        for (chan *c = r->chans[i], *next; c; c = next) {
            next = c->next;
            /* an unconfirmed channel waits: its SUBSCRIBE is still in flight */
            if (c->refs == 0 && c->confirmed && now - c->idle_since >= 1000) {
                pr_view name = pr_view_make(c->name, c->len);
                sub_send(r, "UNSUBSCRIBE", &name, 1);
                chan_remove(r, c);
            }
        }
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    (void)status;
    link_t *l = ac->data;
    if (!l)
        return; /* freed on purpose */
    GW_DEBUG("event=redis_disconnected worker=%d link=%d", l->r->w->index, l->kind);
    int was_up = l->up;
    l->ac = NULL;
    l->up = 0;
    if (l->kind == LINK_SUB) {
        chans_link_lost(l->r);
        if (was_up && l->r->on_lost)
            l->r->on_lost(l->r, l->r->arg);
    }
    update_ready(l->r);
    link_schedule_retry(l);
}

static void link_connect(link_t *l)
{
    gw_redis *r = l->r;
    redisAsyncContext *ac = redisAsyncConnect(r->addr.host, r->addr.port);
    if (!ac || ac->err) {
        if (ac)
            redisAsyncFree(ac);
        link_schedule_retry(l);
        return;
    }
    ac->data = l;
    l->ac = ac;
    redisLibeventAttach(ac, r->w->base);
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    /* queued in order before anything else the link will carry */
    if (r->addr.password[0])
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s", r->addr.password);
    if (r->addr.db)
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", r->addr.db);
}

/* ---- public ---- */

gw_redis *gw_redis_new(gw_worker *w, const gw_redis_addr *addr, gw_redis_message_cb on_message,
                       gw_redis_ready_cb on_ready, void *arg)
{
    gw_redis *r = pr_calloc(1, sizeof *r);
    r->w = w;
    r->addr = *addr;
    r->on_message = on_message;
    r->on_ready = on_ready;
    r->arg = arg;
    r->seed = (unsigned)(w->index * 7919 + (int)gw__now_ms(w));
    r->nbuckets = 256;
    r->chans = pr_calloc(r->nbuckets, sizeof *r->chans);
    r->idle_timer = event_new(w->base, -1, EV_PERSIST, idle_cb, r);
    struct timeval tv = {1, 0};
    event_add(r->idle_timer, &tv);
    for (int k = 0; k < 2; k++) {
        link_t *l = &r->link[k];
        l->r = r;
        l->kind = k;
        l->retry = evtimer_new(w->base, retry_cb, l);
        link_connect(l);
    }
    return r;
}

void gw_redis_free(gw_redis *r)
{
    event_free(r->idle_timer);
    for (int k = 0; k < 2; k++) {
        link_t *l = &r->link[k];
        evtimer_del(l->retry);
        event_free(l->retry);
        if (l->ac) {
            redisAsyncContext *ac = l->ac;
            l->ac = NULL;
            l->up = 0;
            ac->data = NULL; /* callbacks of a context freed on purpose do nothing */
            redisAsyncFree(ac); /* pending callbacks run with NULL replies */
        }
    }
    for (size_t i = 0; i < r->nbuckets; i++)
        for (chan *c = r->chans[i], *next; c; c = next) {
            next = c->next;
            chan_fire(r, c, 0);
            pr_free(c);
        }
    pr_free(r->chans);
    pr_free(r);
}

void gw_redis_set_lost_cb(gw_redis *r, gw_redis_ready_cb cb)
{
    r->on_lost = cb;
}

int gw_redis_ready(const gw_redis *r)
{
    return __atomic_load_n(&r->ready, __ATOMIC_RELAXED);
}

typedef struct {
    gw_redis *r;
    gw_redis_reply_cb cb;
    void *arg;
} cmd_ctx;

static void command_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    cmd_ctx *x = privdata;
    x->cb(x->r, reply, x->arg);
    gw__worker_schedule_flush(x->r->w);
    pr_free(x);
}

int gw_redis_command(gw_redis *r, gw_redis_reply_cb cb, void *arg, int argc, const char **argv,
                     const size_t *argvlen)
{
    link_t *l = &r->link[LINK_CMD];
    if (!l->up)
        return PR_ECLOSED;
    cmd_ctx *x = NULL;
    if (cb) {
        x = pr_malloc(sizeof *x);
        x->r = r;
        x->cb = cb;
        x->arg = arg;
    }
    if (redisAsyncCommandArgv(l->ac, cb ? command_cb : NULL, x, argc, argv, argvlen) != REDIS_OK) {
        pr_free(x);
        return PR_EIO;
    }
    return 0;
}

void gw_redis_subscribe(gw_redis *r, pr_view channel)
{
    chan **pp = chan_slot(r, channel);
    chan *c = *pp;
    if (!c) {
        c = pr_calloc(1, sizeof *c + channel.len);
        c->len = channel.len;
        memcpy(c->name, channel.ptr, channel.len);
        *pp = c;
        if (++r->nchans > r->nbuckets)
            chan_grow(r);
        sub_send(r, "SUBSCRIBE", &channel, 1);
    }
    c->refs++;
}

void gw_redis_when_subscribed(gw_redis *r, pr_view channel, gw_redis_subscribed_cb done,
                              void *arg)
{
    chan *c = *chan_slot(r, channel);
    if (!c || c->confirmed || !r->link[LINK_SUB].up) {
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

void gw_redis_unsubscribe(gw_redis *r, pr_view channel)
{
    chan *c = *chan_slot(r, channel);
    if (c && c->refs > 0 && --c->refs == 0)
        c->idle_since = gw__now_ms(r->w);
}
