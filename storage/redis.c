/*
 * redis.c - storage's Redis links (st.h), a thin layer over common's
 * cm_redis that keeps st_redis' callback shapes. Phase 2 of the restructure
 * converts the callers to cm_redis and deletes this file.
 */
#include <string.h>

#include "cm_redis.h"
#include "st.h"

struct st_redis {
    cm_redis *link;
    st_redis_message_cb on_message;
    void *arg;
};

typedef struct {
    st_redis_cb cb;
    void *arg;
} pending;

static void message_cb(cm_redis *link, pr_view channel, pr_view message, void *arg)
{
    (void)link;
    st_redis *r = arg;
    r->on_message(channel, message, r->arg);
}

st_redis *st_redis_new(struct event_base *base, const st_redis_addr *addr, const char *name,
                       st_redis_message_cb on_message, void *arg)
{
    st_redis *r = pr_calloc(1, sizeof *r);
    r->on_message = on_message;
    r->arg = arg;
    cm_redis_options o = {
        .name = name,
        .on_message = on_message ? message_cb : NULL,
        .arg = r,
    };
    r->link = cm_redis_new(base, addr, &o);
    return r;
}

void st_redis_free(st_redis *r)
{
    if (!r)
        return;
    cm_redis_free(r->link);
    pr_free(r);
}

int st_redis_ready(const st_redis *r)
{
    return cm_redis_ready(r->link);
}

unsigned st_redis_epoch(const st_redis *r)
{
    return cm_redis_epoch(r->link);
}

int st_redis_subscribe(st_redis *r, const char *channel)
{
    return cm_redis_subscribe(r->link, pr_view_make(channel, strlen(channel)));
}

static void command_cb(cm_redis *link, redisReply *reply, void *arg)
{
    (void)link;
    pending p = *(pending *)arg;
    pr_free(arg);
    p.cb(reply, p.arg);
}

int st_redis_command(st_redis *r, st_redis_cb cb, void *arg, int argc, const char **argv,
                     const size_t *argvlen)
{
    pending *p = NULL;
    if (cb) {
        p = pr_malloc(sizeof *p);
        p->cb = cb;
        p->arg = arg;
    }
    int rc = cm_redis_command(r->link, cb ? command_cb : NULL, p, argc, argv, argvlen);
    if (rc != 0)
        pr_free(p);
    return rc;
}
