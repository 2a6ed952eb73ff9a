/*
 * redis.c - a command link and, when asked for, a subscribe link to Redis,
 * each reconnecting with jittered backoff (hiredis async on the loop).
 */
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "st.h"

enum { LINK_CMD = 0, LINK_SUB = 1 };

typedef struct {
    st_redis *r;
    int kind;
    redisAsyncContext *ac; /* NULL while down */
    int up;
    unsigned failures;
    struct event *retry;
} link_t;

typedef struct chan {
    struct chan *next;
    char name[];
} chan;

struct st_redis {
    struct event_base *base;
    st_redis_addr addr;
    char name[32];
    link_t link[2];
    int nlinks; /* 1, or 2 with a subscribe link */
    chan *chans;
    st_redis_message_cb on_message;
    void *arg;
    unsigned seed;
    unsigned epoch;
    int was_ready;
};

typedef struct {
    st_redis_cb cb;
    void *arg;
} pending;

static void link_connect(link_t *l);

static void note_ready(st_redis *r)
{
    int ready = st_redis_ready(r);
    if (ready && !r->was_ready)
        ST_INFO("event=redis_ready link=%s host=%s port=%d", r->name, r->addr.host, r->addr.port);
    else if (!ready && r->was_ready)
        ST_WARN("event=redis_down link=%s", r->name);
    r->was_ready = ready;
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    link_connect(arg);
}

static void link_schedule_retry(link_t *l)
{
    unsigned shift = l->failures < 6 ? l->failures : 6;
    unsigned base = 100u << shift;
    if (base > 5000)
        base = 5000;
    /* jitter: 50..100% of the backoff, so replicas do not reconnect in step */
    unsigned ms = base / 2 + (unsigned)(rand_r(&l->r->seed) % (base / 2 + 1));
    l->failures++;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(l->retry, &tv);
}

static void sub_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    link_t *l = ac->data;
    redisReply *rep = reply;
    if (!l || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
        return;
    redisReply *kind = rep->element[0], *ch = rep->element[1], *msg = rep->element[2];
    if (kind->type != REDIS_REPLY_STRING || ch->type != REDIS_REPLY_STRING ||
        msg->type != REDIS_REPLY_STRING || strcmp(kind->str, "message") != 0)
        return;
    st_redis *r = l->r;
    r->on_message(pr_view_make(ch->str, ch->len), pr_view_make(msg->str, msg->len), r->arg);
}

static void sub_send(st_redis *r, const char *channel)
{
    link_t *l = &r->link[LINK_SUB];
    if (l->up)
        redisAsyncCommand(l->ac, sub_cb, NULL, "SUBSCRIBE %s", channel);
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    link_t *l = ac->data;
    if (!l)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        if (l->failures == 0)
            ST_WARN("event=redis_connect_failed link=%s%s err=\"%s\"", l->r->name,
                    l->kind == LINK_SUB ? "/sub" : "", ac->errstr);
        l->ac = NULL;
        link_schedule_retry(l);
        return;
    }
    l->up = 1;
    l->failures = 0;
    if (l->kind == LINK_SUB)
        for (chan *c = l->r->chans; c; c = c->next)
            sub_send(l->r, c->name);
    else
        l->r->epoch++;
    note_ready(l->r);
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    (void)status;
    link_t *l = ac->data;
    if (!l)
        return; /* freed on purpose */
    ST_DEBUG("event=redis_disconnected link=%s%s", l->r->name, l->kind == LINK_SUB ? "/sub" : "");
    l->ac = NULL;
    l->up = 0;
    note_ready(l->r);
    link_schedule_retry(l);
}

static void link_connect(link_t *l)
{
    st_redis *r = l->r;
    redisAsyncContext *ac = redisAsyncConnect(r->addr.host, r->addr.port);
    if (!ac || ac->err) {
        if (ac)
            redisAsyncFree(ac);
        link_schedule_retry(l);
        return;
    }
    ac->data = l;
    l->ac = ac;
    /* a peer that vanished (host down, cable cut) is noticed by TCP */
    redisEnableKeepAlive(&ac->c);
    redisLibeventAttach(ac, r->base);
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    /* queued in order before anything else the link will carry */
    if (r->addr.password[0])
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s", r->addr.password);
    if (r->addr.db)
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", r->addr.db);
}

/* ---- public ---- */

st_redis *st_redis_new(struct event_base *base, const st_redis_addr *addr, const char *name,
                       st_redis_message_cb on_message, void *arg)
{
    st_redis *r = pr_calloc(1, sizeof *r);
    r->base = base;
    r->addr = *addr;
    snprintf(r->name, sizeof r->name, "%s", name);
    r->on_message = on_message;
    r->arg = arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    r->seed = (unsigned)(ts.tv_nsec ^ ts.tv_sec);
    r->nlinks = on_message ? 2 : 1;
    for (int k = 0; k < r->nlinks; k++) {
        link_t *l = &r->link[k];
        l->r = r;
        l->kind = k;
        l->retry = evtimer_new(base, retry_cb, l);
        link_connect(l);
    }
    return r;
}

void st_redis_free(st_redis *r)
{
    if (!r)
        return;
    for (int k = 0; k < r->nlinks; k++) {
        link_t *l = &r->link[k];
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
    while (r->chans) {
        chan *c = r->chans;
        r->chans = c->next;
        pr_free(c);
    }
    pr_free(r);
}

int st_redis_ready(const st_redis *r)
{
    for (int k = 0; k < r->nlinks; k++)
        if (!r->link[k].up)
            return 0;
    return 1;
}

unsigned st_redis_epoch(const st_redis *r)
{
    return r->epoch;
}

int st_redis_subscribe(st_redis *r, const char *channel)
{
    if (r->nlinks < 2)
        return PR_ESTATE;
    size_t n = strlen(channel);
    chan *c = pr_malloc(sizeof *c + n + 1);
    memcpy(c->name, channel, n + 1);
    c->next = r->chans;
    r->chans = c;
    sub_send(r, channel);
    return 0;
}

static void command_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    pending *p = privdata;
    p->cb(reply, p->arg);
    pr_free(p);
}

int st_redis_command(st_redis *r, st_redis_cb cb, void *arg, int argc, const char **argv,
                     const size_t *argvlen)
{
    link_t *l = &r->link[LINK_CMD];
    if (!l->up)
        return PR_ECLOSED;
    pending *p = NULL;
    if (cb) {
        p = pr_malloc(sizeof *p);
        p->cb = cb;
        p->arg = arg;
    }
    if (redisAsyncCommandArgv(l->ac, cb ? command_cb : NULL, p, argc, argv, argvlen) != REDIS_OK) {
        pr_free(p);
        return PR_ECLOSED;
    }
    return 0;
}
